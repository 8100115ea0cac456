/* backward_llama.c - the Llama family's block (Llama, Mistral, Qwen2) for backward.c.
 *
 * The training forward makes model.c's llama_block_forward calls in its
 * order, keeping what the backward needs; the backward differentiates each:
 *   - RMSNorm y = x·rstd·w: bi_rmsnorm_back;
 *   - q | k | v projections (Qwen2: with biases) and o_proj: the products
 *     of backward.c, k and v KVD = NKV·HD wide, q and the attention QD = NH·HD;
 *   - the rotation of q and k: a rotation's transpose is the rotation by
 *     the opposite angle, so dq and dk go through kern_par_rope with −sin;
 *   - grouped-query attention: bi_attention_back, which sums a key/value
 *     head's gradient over its query heads in one fixed order;
 *   - SwiGLU h = silu(g)·u: dg = dh·u·silu'(g), du = dh·silu(g);
 *   - LoRA on q k v o, fc1 = gate_proj, fc2 = down_proj (up_proj is never
 *     adapted), as peft.c places them.
 * Prefix keys are captured after the rotation (peft.c) and the attention
 * reads them as they are, so their gradient is the attention's, unrotated.
 *
 * Memory per layer and token: C (block input) + QD + 2 KVD (q | k | v) + QD
 * (attention output) + C (mid-block residual) + 2F (gate and up).
 * Leaves out: nothing of the forward (sliding windows are not in it either).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backward_internal.h"
#include "kernels.h"

hl_status bi_llama_init(backward *bw, hl_err *err)
{
    const model *m = bw->m;
    const model_config *c = &m->cfg;
    if (c->family != MODEL_FAMILY_LLAMA)
        return HL_OK;
    const size_t n = (size_t)c->max_pos * (size_t)(model_head_dim(c) / 2);
    bw->rope_nsin = malloc((n ? n : 1) * sizeof *bw->rope_nsin);
    if (!bw->rope_nsin)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the rotary table");
    for (size_t i = 0; i < n; i++)
        bw->rope_nsin[i] = -m->rope_sin[i];
    return HL_OK;
}

/* Widths and column offsets of q, k, v in a row of qkv (model.c's layout). */
typedef struct llama_dims {
    int C, F, HD, QD, KVD;
    size_t ld; /* QD + 2 KVD */
    int width[3], col[3];
} llama_dims;

static llama_dims dims_of(const model_config *c)
{
    llama_dims d = {.C = c->d_model, .F = c->d_ffn, .HD = model_head_dim(c),
                    .QD = model_q_dim(c), .KVD = model_kv_dim(c)};
    d.ld = (size_t)d.QD + 2 * (size_t)d.KVD;
    d.width[0] = d.QD;
    d.width[1] = d.width[2] = d.KVD;
    d.col[0] = 0;
    d.col[1] = d.QD;
    d.col[2] = d.QD + d.KVD;
    return d;
}

/* q and k of every token rotated by its position's angles; sin_tab =
 * m->rope_sin forward, bw->rope_nsin for the gradients. */
static void rope_qk(backward *bw, float *qkv, const llama_dims *d, const float *sin_tab)
{
    const model *m = bw->m;
    kern_par_rope(m->pool, qkv, d->ld, bw->n_tokens, 0, m->cfg.n_heads, d->HD, bw->pos,
                  m->rope_cos, sin_tab);
    kern_par_rope(m->pool, qkv, d->ld, bw->n_tokens, d->QD, d->KVD / d->HD, d->HD, bw->pos,
                  m->rope_cos, sin_tab);
}

/* ------------------------------------------------------------ forward --- */

void bi_llama_block_forward(backward *bw, int l)
{
    model *m = bw->m;
    const model_config *c = &m->cfg;
    const model_block *b = &m->w.blocks[l];
    pool *p = m->pool;
    const llama_dims d = dims_of(c);
    const size_t N = bw->n_tokens, C = (size_t)d.C, F = (size_t)d.F, NC = N * C;
    const float *x = bw->xs + (size_t)l * NC;
    float *xnext = bw->xs + (size_t)(l + 1) * NC;
    float *qkv = bw->qkv + (size_t)l * N * d.ld, *att = bw->att + (size_t)l * N * d.QD;
    float *mid = bw->mid + (size_t)l * NC;
    float *gate = bw->pre_act + (size_t)l * N * F, *up = bw->up + (size_t)l * N * F;

    /* x += o(attn(rope(q), rope(k), v)), q | k | v of n1 = RMSNorm(x) */
    kern_par_rmsnorm(p, bw->tmp_c, x, b->ln1_w, N, d.C, c->ln_eps);
    for (int k = 0; k < 3; k++) {
        float *out = qkv + d.col[k];
        kern_par_linear(p, out, d.ld, bw->tmp_c, C, b->wqkv[k], (int)N, d.width[k], d.C, 0.0f);
        bi_lora_forward(bw, b, PEFT_SITE_Q + k, out, d.ld, bw->tmp_c, C, N, d.width[k], d.C);
        if (b->bqkv[k])
            kern_par_add_rows(p, out, b->bqkv[k], N, d.width[k], d.ld);
    }
    rope_qk(bw, qkv, &d, m->rope_sin);
    kern_attn_ext ext = {.bidirectional = c->bidirectional, .head_dim = d.HD,
                         .n_kv_heads = c->n_kv_heads};
    if (b->prefix_k) {
        ext.prefix_k = b->prefix_k;
        ext.prefix_v = b->prefix_v;
        ext.n_prefix = m->peft.tokens;
    }
    kern_par_attention_ex(p, att, qkv, bw->batch.seq_start, bw->batch.n_seq, d.C, c->n_heads,
                          1.0f / sqrtf((float)d.HD), bw->scratch, bw->max_T,
                          KERN_ATTENTION_SGEMM_MIN_T, &ext);
    memcpy(mid, x, NC * sizeof(float));
    kern_par_linear(p, mid, C, att, (size_t)d.QD, b->wo, (int)N, d.C, d.QD, 1.0f);
    bi_lora_forward(bw, b, PEFT_SITE_O, mid, C, att, (size_t)d.QD, N, d.C, d.QD);

    /* mid += down(silu(gate(n2))·up(n2)), n2 = RMSNorm(mid) */
    kern_par_rmsnorm(p, bw->tmp_c, mid, b->ln2_w, N, d.C, c->ln_eps);
    kern_par_linear(p, gate, F, bw->tmp_c, C, b->w1, (int)N, d.F, d.C, 0.0f);
    bi_lora_forward(bw, b, PEFT_SITE_FC1, gate, F, bw->tmp_c, C, N, d.F, d.C);
    kern_par_linear(p, up, F, bw->tmp_c, C, b->w_up, (int)N, d.F, d.C, 0.0f);
    memcpy(bw->tmp_f, gate, N * F * sizeof(float));
    kern_par_swiglu(p, bw->tmp_f, up, N * F);
    memcpy(xnext, mid, NC * sizeof(float));
    kern_par_linear(p, xnext, C, bw->tmp_f, F, b->w2, (int)N, d.C, d.F, 1.0f);
    bi_lora_forward(bw, b, PEFT_SITE_FC2, xnext, C, bw->tmp_f, F, N, d.C, d.F);
}

/* ----------------------------------------------------------- backward --- */

typedef struct swiglu_back_job {
    float *d;          /* in dL/dh, out dL/dgate */
    float *du;         /* out dL/dup */
    const float *gate, *up;
    size_t n;
} swiglu_back_job;

/* h = silu(g)·u: dg = dh·u·s(1 + g(1 − s)) with s = sigmoid(g), du = dh·g·s. */
static void swiglu_back_fn(void *arg, int tid, int nt)
{
    swiglu_back_job *j = arg;
    size_t i0, i1;
    pool_range(j->n, tid, nt, 16, &i0, &i1);
    for (size_t i = i0; i < i1; i++) {
        const float g = j->gate[i], s = 1.0f / (1.0f + expf(-g)), dh = j->d[i];
        j->d[i] = dh * j->up[i] * (s * (1.0f + g * (1.0f - s)));
        j->du[i] = dh * (g * s);
    }
}

/* The SwiGLU MLP's backward from dy (gradient of its output): dW of gate,
 * up and down (and their adapters), and bw->dc = gradient of its input in. */
static void swiglu_mlp_back(backward *bw, const model_block *b, model_block *g, const float *dy,
                            const float *gate, const float *up, const float *in)
{
    model *m = bw->m;
    pool *p = m->pool;
    const size_t N = bw->n_tokens, C = (size_t)m->cfg.d_model, F = (size_t)m->cfg.d_ffn;
    float *h = bw->tmp_f, *dg = bw->dffn;
    memcpy(h, gate, N * F * sizeof(float)); /* h recomputed with the forward's kernel */
    kern_par_swiglu(p, h, up, N * F);
    bi_mm_dw(p, g->w2, dy, C, h, F, (int)N, (int)C, (int)F);
    bi_mm_dx(p, dg, F, dy, C, b->w2, (int)N, (int)C, (int)F, 0.0f);
    bi_lora_backward(bw, b, g, PEFT_SITE_FC2, dy, C, h, F, dg, F, N, (int)C, (int)F);
    float *du = h; /* h is read no more */
    swiglu_back_job sj = {.d = dg, .du = du, .gate = gate, .up = up, .n = N * F};
    pool_run(p, swiglu_back_fn, &sj);
    bi_mm_dw(p, g->w1, dg, F, in, C, (int)N, (int)F, (int)C);
    bi_mm_dw(p, g->w_up, du, F, in, C, (int)N, (int)F, (int)C);
    bi_mm_dx(p, bw->dc, C, dg, F, b->w1, (int)N, (int)F, (int)C, 0.0f);
    bi_mm_dx(p, bw->dc, C, du, F, b->w_up, (int)N, (int)F, (int)C, 1.0f);
    bi_lora_backward(bw, b, g, PEFT_SITE_FC1, dg, F, in, C, bw->dc, C, N, (int)F, (int)C);
}

hl_status bi_llama_block_backward(backward *bw, int l)
{
    model *m = bw->m;
    const model_config *c = &m->cfg;
    const model_block *b = &m->w.blocks[l];
    model_block *g = &bw->gw.blocks[l];
    pool *p = m->pool;
    const llama_dims d = dims_of(c);
    const size_t N = bw->n_tokens, C = (size_t)d.C, F = (size_t)d.F, NC = N * C;
    const size_t QD = (size_t)d.QD;
    const float *x = bw->xs + (size_t)l * NC, *mid = bw->mid + (size_t)l * NC;
    const float *qkv = bw->qkv + (size_t)l * N * d.ld, *att = bw->att + (size_t)l * N * QD;
    const float *gate = bw->pre_act + (size_t)l * N * F, *up = bw->up + (size_t)l * N * F;
    const float eps = c->ln_eps;

    /* x_out = mid + MLP(n2), n2 = RMSNorm(mid): dmid = dx + RMSNorm'ᵀ·dn2 */
    kern_par_rmsnorm(p, bw->tmp_c, mid, b->ln2_w, N, d.C, eps);
    swiglu_mlp_back(bw, b, g, bw->dx, gate, up, bw->tmp_c);
    bi_rmsnorm_back(p, bw->dmid, bw->dx, bw->dc, mid, b->ln2_w, g->ln2_w, bw->tmp_c, N, d.C, eps);

    /* mid = x + o(att): datt [N, QD] into dc */
    bi_mm_dw(p, g->wo, bw->dmid, C, att, QD, (int)N, d.C, d.QD);
    bi_mm_dx(p, bw->dc, QD, bw->dmid, C, b->wo, (int)N, d.C, d.QD, 0.0f);
    bi_lora_backward(bw, b, g, PEFT_SITE_O, bw->dmid, C, att, QD, bw->dc, QD, N, d.C, d.QD);
    if (bi_attention_back(bw, b, g, bw->dc, qkv))
        return HL_ERR_NOMEM;
    rope_qk(bw, bw->dqkv, &d, bw->rope_nsin); /* gradients of q, k before the rotation */

    /* q | k | v = n1·Wᵀ (+ b), n1 = RMSNorm(x): dn1 into dc; dx = dmid + RMSNorm'ᵀ·dn1 */
    kern_par_rmsnorm(p, bw->tmp_c, x, b->ln1_w, N, d.C, eps);
    for (int k = 0; k < 3; k++) {
        const float *dy = bw->dqkv + d.col[k];
        bi_mm_dw(p, g->wqkv[k], dy, d.ld, bw->tmp_c, C, (int)N, d.width[k], d.C);
        bi_mm_dx(p, bw->dc, C, dy, d.ld, b->wqkv[k], (int)N, d.width[k], d.C, k ? 1.0f : 0.0f);
        bi_colsum(p, g->bqkv[k], dy, N, d.width[k], d.ld);
        bi_lora_backward(bw, b, g, PEFT_SITE_Q + k, dy, d.ld, bw->tmp_c, C, bw->dc, C, N,
                         d.width[k], d.C);
    }
    bi_rmsnorm_back(p, bw->dx, bw->dmid, bw->dc, x, b->ln1_w, g->ln1_w, bw->tmp_c, N, d.C, eps);
    return HL_OK;
}

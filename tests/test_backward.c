/* test_backward.c - first-order gradients (backward.h) and AdamW (adamw.h).
 *
 * Three oracles for the gradients:
 *  - central finite differences of the inference path's loss (model_nll,
 *    cls_score: code the backward pass shares nothing with above the
 *    kernels) on tiny random models of every variant - OPT pre-LN with an
 *    untied head, OPT post-LN with project_in/out and a tied head, GPT-2,
 *    and OPT without biases or layer-norm parameters - and on the committed
 *    Llama-family fixtures (GQA 2 and 4, Qwen2's biases, head_dim != C/NH,
 *    linear and llama3 RoPE scaling, tied and separate heads), for the LM
 *    loss and both classification paths, at a sample of coordinates in
 *    every layer;
 *  - the float64 PyTorch gradients of tests/ref/grads.py
 *    (tests/fixtures/grads/), every tensor compared;
 *  - the engine itself: gradients bit-identical for 1, 2 and 4 threads,
 *    the training forward bit-identical to model_forward, losses equal to
 *    cls_score's.
 * AdamW: one hand-computed step on 5 elements (decay skipped on a no-decay
 * layer), clipping, the schedule, and save/restore giving a bit-identical
 * continuation.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "adamw.h"
#include "backward.h"
#include "cls.h"
#include "kernels.h"
#include "lm.h"
#include "model.h"
#include "safetensors.h"
#include "testutil.h"

#define GRADDIR HELENE_TESTDIR "/fixtures/grads"
#define MODELDIR HELENE_TESTDIR "/fixtures/models"

/* ----------------------------------------------------------- helpers --- */

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static double urand(void) /* [0, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}

static void randomise(model *m)
{
    for (int i = 0; i < m->params.n_layers; i++) {
        const param_layer *l = &m->params.layers[i];
        float *p = param_layer_data(&m->params, i);
        bool norm_w = l->ndim == 1 && strstr(l->name, ".weight") &&
                      (strstr(l->name, "norm") || strstr(l->name, "Norm") ||
                       strstr(l->name, "ln_"));
        for (size_t k = 0; k < l->size; k++)
            p[k] = norm_w ? (float)(1.0 + 0.2 * (urand() - 0.5)) : (float)(0.6 * (urand() - 0.5));
    }
}

enum { VAR_OPT_PRE, VAR_OPT_POST, VAR_GPT2, VAR_OPT_BARE, VAR_ROBERTA, VAR_COUNT };
static const char *const var_name[VAR_COUNT] = {"opt pre-LN untied", "opt post-LN proj_in/out",
                                                "gpt2", "opt no bias/affine, erf-gelu",
                                                "roberta"};

static model_config variant_config(int v)
{
    model_config c;
    memset(&c, 0, sizeof c);
    c.family = v == VAR_GPT2 ? MODEL_FAMILY_GPT2 : MODEL_FAMILY_OPT;
    c.n_layers = 2;
    c.d_model = 16;
    c.n_heads = 2;
    c.d_ffn = 24;
    c.vocab = 41;
    c.max_pos = 24;
    c.d_embed = 16;
    c.pre_ln = c.final_ln = c.ln_affine = c.bias = c.tied_head = true;
    c.ln_eps = 1e-5f;
    c.bos_id = c.eos_id = 2;
    c.pad_id = 1;
    c.pos_offset = 2;
    c.add_bos = true;
    c.act = MODEL_ACT_RELU;
    switch (v) {
    case VAR_OPT_PRE:
        c.tied_head = false;
        break;
    case VAR_OPT_POST:
        c.pre_ln = c.final_ln = false;
        c.d_embed = 8;
        break;
    case VAR_GPT2:
        c.pos_offset = 0;
        c.add_bos = false;
        c.act = MODEL_ACT_GELU_TANH;
        c.ln_eps = 1e-3f;
        break;
    case VAR_OPT_BARE:
        c.bias = c.ln_affine = false;
        c.act = MODEL_ACT_GELU_ERF;
        break;
    case VAR_ROBERTA: /* masked LM: bidirectional, post-LN, embedding LN, MLM head */
        c.family = MODEL_FAMILY_ROBERTA;
        c.pre_ln = c.final_ln = false;
        c.bidirectional = true;
        c.type_vocab = 2; /* row 1 is never used: its gradient must stay 0 */
        c.act = MODEL_ACT_GELU_ERF;
        c.ln_eps = 1e-3f;
        c.add_bos = false;
        c.bos_id = 0;
        break;
    }
    return c;
}

static void make_model(model *m, int v)
{
    model_config c = variant_config(v);
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(model_init_from_config(m, &c, &err), HL_OK);
    randomise(m);
}

/* The committed Llama-family fixtures, loaded as they are: config.json,
 * rotary tables with their scaling, tied or separate head, and weights of
 * O(0.3) (tests/ref/llama.py), large enough for a wrong gradient to show. */
enum { LLAMA_F32, LLAMA_QWEN2, LLAMA_MISTRAL, LLAMA_BF16, LLAMA_COUNT };
static const char *const llama_dir[LLAMA_COUNT] = {"llama-tiny-f32", "qwen2-tiny-f16",
                                                   "mistral-tiny-f32", "llama-tiny-bf16"};
static const char *const llama_name[LLAMA_COUNT] = {
    "llama GQA 2", "qwen2 GQA 4, q/k/v biases, tied", "mistral head_dim 16 != C/NH, linear rope",
    "llama bf16 shards, tied, llama3 rope"};

static void llama_path(char *out, size_t cap, int f)
{
    snprintf(out, cap, "%s/%s", MODELDIR, llama_dir[f]);
}

static void make_llama(model *m, int f)
{
    char dir[512];
    llama_path(dir, sizeof dir, f);
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(model_load(m, dir, &err), HL_OK);
}

/* three sequences of random ids, packed */
static void make_batch(int32_t *tok, int32_t *starts, const int *lens, int B, int V)
{
    starts[0] = 0;
    for (int b = 0; b < B; b++) {
        for (int t = 0; t < lens[b]; t++)
            tok[starts[b] + t] = (int32_t)(urand() * V);
        starts[b + 1] = starts[b] + lens[b];
    }
}

static double lm_loss(model *m, const model_batch *b)
{
    double s;
    size_t n;
    hl_err err;
    CU_ASSERT_EQUAL(model_nll(m, &s, &n, b, 1, &err), HL_OK);
    return s / (double)n;
}

static double cls_loss(cls_scorer *s, const cls_example *ex, int n)
{
    double losses[16], sum = 0;
    hl_err err;
    CU_ASSERT_EQUAL(cls_score(s, losses, NULL, NULL, ex, n, &err), HL_OK);
    for (int i = 0; i < n; i++)
        sum += losses[i];
    return sum / n;
}

/* -------------------------------------------------- finite differences --- */

typedef double (*loss_fn)(void *ctx);

typedef struct fd_ctx {
    model *m;
    const model_batch *batch;
    cls_scorer *s;
    const cls_example *ex;
    int n;
} fd_ctx;

static double fd_lm(void *ctx)
{
    fd_ctx *c = ctx;
    return lm_loss(c->m, c->batch);
}

static double fd_cls(void *ctx)
{
    fd_ctx *c = ctx;
    return cls_loss(c->s, c->ex, c->n);
}

/* Per layer: the 3 largest |g| and 3 random coordinates; central
 * differences with h = 3e-3 (fp32 losses: noise ~1e-7/h, truncation ~h²).
 * A coordinate passes when |fd − g| <= 2e-2·|g| + 2e-3·max|g| of the
 * layer + 3e-4.  ReLU makes the loss piecewise smooth: when the two
 * one-sided differences disagree by more than half that tolerance, a kink
 * lies within ±h and the coordinate is skipped (this looks at the loss
 * alone, so it cannot hide a wrong gradient; at most 1/4 may be skipped).
 * Returns the number of failures; prints the worst ratio. */
static int fd_check_set(const char *what, param_set *ps, const float *grad, loss_fn f,
                        void *ctx);

static int fd_check(const char *what, model *m, const float *grad, loss_fn f, void *ctx)
{
    return fd_check_set(what, &m->params, grad, f, ctx);
}

/* fd_check over any trainable set (the model's adapters). */
static int fd_check_set(const char *what, param_set *ps, const float *grad, loss_fn f,
                        void *ctx)
{
    const double h = 3e-3;
    int bad = 0, checked = 0, skipped = 0;
    double worst = 0;
    const double l0 = f(ctx);
    for (int i = 0; i < ps->n_layers; i++) {
        const param_layer *l = &ps->layers[i];
        float *p = param_layer_data(ps, i);
        const float *g = grad + l->offset;
        size_t pick[6];
        int np = 0;
        double gmax = 0;
        for (int k = 0; k < 3; k++) { /* top-3 by |g| */
            size_t best = SIZE_MAX;
            for (size_t e = 0; e < l->size; e++) {
                bool used = false;
                for (int q = 0; q < np; q++)
                    used = used || pick[q] == e;
                if (!used && (best == SIZE_MAX || fabsf(g[e]) > fabsf(g[best])))
                    best = e;
            }
            if (best != SIZE_MAX)
                pick[np++] = best;
        }
        for (int k = 0; k < 3; k++)
            pick[np++] = (size_t)(urand() * (double)l->size);
        for (size_t e = 0; e < l->size; e++)
            gmax = fabs(g[e]) > gmax ? fabs(g[e]) : gmax;
        for (int q = 0; q < np; q++) {
            size_t e = pick[q];
            float keep = p[e];
            float up = keep + (float)h, down = keep - (float)h;
            p[e] = up;
            double lp = f(ctx);
            p[e] = down;
            double lminus = f(ctx);
            p[e] = keep;
            double fd = (lp - lminus) / ((double)up - (double)down);
            double tol = 2e-2 * fabs(g[e]) + 2e-3 * gmax + 3e-4;
            double one_sided = fabs((lp - l0) / ((double)up - keep) - (l0 - lminus) / (keep - (double)down));
            if (one_sided > 0.5 * tol) {
                skipped++;
                continue;
            }
            double ratio = fabs(fd - g[e]) / tol;
            worst = ratio > worst ? ratio : worst;
            checked++;
            if (ratio > 1) {
                if (bad < 8)
                    fprintf(stderr, "\n  %s %s[%zu]: backward %.6g, finite difference %.6g", what,
                            l->name, e, (double)g[e], fd);
                bad++;
            }
        }
    }
    fprintf(stderr, "\n  %s: %d coordinates in %d layers (%d skipped at kinks), worst |fd-g|/tol "
            "%.3f", what, checked, ps->n_layers, skipped, worst);
    if (skipped * 3 > checked) {
        fprintf(stderr, "\n  %s: too many kinks", what);
        bad++;
    }
    return bad;
}

/* The LM loss's gradient by finite differences, of the weights of m or
 * (peft given) of the adapters attached to it; frees m. */
static void fd_lm_model(model *m, const int *lens, int B, const char *what, const char *peft)
{
    hl_err err;
    int n = 0;
    for (int b = 0; b < B; b++) {
        n += lens[b];
        CU_ASSERT_FATAL(lens[b] <= m->cfg.max_pos);
    }
    peft_spec ps;
    CU_ASSERT_EQUAL_FATAL(peft_parse(&ps, peft, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(model_peft_attach(m, &ps, 11, &err), HL_OK);
    backward bw;
    CU_ASSERT_EQUAL_FATAL(backward_init(&bw, m, &err), HL_OK);
    CU_ASSERT_EQUAL(bw.grad.n_layers, model_trainable(m)->n_layers);
    int32_t *tok = malloc((size_t)n * sizeof *tok), starts[8];
    make_batch(tok, starts, lens, B, m->cfg.vocab);
    model_batch b = {.tokens = tok, .seq_start = starts, .n_seq = B};
    double sum;
    size_t count;
    CU_ASSERT_EQUAL_FATAL(backward_lm(&bw, &sum, &count, &b, 1, 1.0, &err), HL_OK);
    CU_ASSERT_EQUAL(count, (size_t)(n - B));
    /* the loss is the inference path's, within float rounding */
    double ref = lm_loss(m, &b);
    CU_ASSERT(fabs(sum / (double)count - ref) <= 1e-5 * fabs(ref));
    fd_ctx ctx = {.m = m, .batch = &b};
    CU_ASSERT_EQUAL(fd_check_set(what, model_trainable(m), bw.grad.data, fd_lm, &ctx), 0);
    free(tok);
    backward_free(&bw);
    model_free(m);
}

static void fd_lm_peft(int v, const int *lens, int B, const char *what, const char *peft)
{
    model_config c = variant_config(v);
    for (int b = 0; b < B; b++)
        c.max_pos = lens[b] > c.max_pos ? lens[b] : c.max_pos;
    model m;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(model_init_from_config(&m, &c, &err), HL_OK);
    randomise(&m);
    fd_lm_model(&m, lens, B, what, peft);
}

static void fd_lm_one(int v, const int *lens, int B, const char *what)
{
    fd_lm_peft(v, lens, B, what, "none");
}

static void fd_lm_llama(int f, const int *lens, int B, const char *what, const char *peft)
{
    model m;
    make_llama(&m, f);
    fd_lm_model(&m, lens, B, what, peft);
}

static void test_fd_lm(void)
{
    const int short_lens[3] = {11, 6, 2};
    for (int v = 0; v < VAR_COUNT; v++)
        fd_lm_one(v, short_lens, 3, var_name[v]);
    /* sequences of KERN_ATTENTION_SGEMM_MIN_T tokens or more take the sgemm
     * attention path, forward and backward */
    const int long_lens[3] = {KERN_ATTENTION_SGEMM_MIN_T + 13, KERN_ATTENTION_SGEMM_MIN_T, 5};
    fd_lm_one(VAR_GPT2, long_lens, 3, "gpt2, sgemm attention");
    fd_lm_one(VAR_OPT_POST, long_lens, 3, "opt post-LN, sgemm attention");
    /* the Llama family: RMSNorm, rotary positions, grouped-query attention,
     * SwiGLU; sgemm attention with 4 query heads on one key/value head (one
     * sequence on each path: these models cost more than the variants) */
    for (int f = 0; f < LLAMA_COUNT; f++)
        fd_lm_llama(f, short_lens, 3, llama_name[f], "none");
    const int llama_long[2] = {KERN_ATTENTION_SGEMM_MIN_T, 5};
    fd_lm_llama(LLAMA_QWEN2, llama_long, 2, "qwen2, sgemm attention", "none");
}

/* Both classification paths on model m (freed): losses equal to cls_score's,
 * gradients by finite differences. */
static void cls_fd_model(model *m, const char *name, bool single)
{
    backward bw;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(backward_init(&bw, m, &err), HL_OK);
    int32_t w0[3] = {5, 17, 9}, w1[1] = {30}, w2[2] = {12, 40};
    const int32_t *words[3] = {w0, w1, w2};
    int32_t nw[3] = {single ? 1 : 3, 1, single ? 1 : 2};
    cls_scorer s;
    CU_ASSERT_EQUAL_FATAL(cls_scorer_init(&s, m, words, nw, 3, 4, 12, &err), HL_OK);
    int32_t p[4][12];
    int plen[4] = {9, 4, 12, 6}, labels[4] = {0, 2, -1, 1};
    cls_example ex[4];
    for (int i = 0; i < 4; i++) {
        for (int t = 0; t < plen[i]; t++)
            p[i][t] = (int32_t)(urand() * m->cfg.vocab);
        ex[i] = (cls_example){.prompt = p[i], .n_prompt = plen[i], .label = labels[i],
                              .mask_pos = plen[i] / 2}; /* read by a masked LM only */
    }
    double got[4], want[4];
    CU_ASSERT_EQUAL_FATAL(backward_cls(&bw, got, &s, ex, 4, 1.0, &err), HL_OK);
    CU_ASSERT_EQUAL(cls_score(&s, want, NULL, NULL, ex, 4, &err), HL_OK);
    for (int i = 0; i < 4; i++) {
        if (single)
            CU_ASSERT(got[i] == want[i]); /* same hidden bits, same dot products */
        CU_ASSERT(fabs(got[i] - want[i]) <= 1e-6 * (1 + fabs(want[i])));
    }
    CU_ASSERT(got[2] == 0.0);
    char what[96];
    snprintf(what, sizeof what, "%s, cls %s", name, single ? "1-token" : "multi-token");
    fd_ctx ctx = {.m = m, .s = &s, .ex = ex, .n = 4};
    CU_ASSERT_EQUAL(fd_check(what, m, bw.grad.data, fd_cls, &ctx), 0);
    cls_scorer_free(&s);
    backward_free(&bw);
    model_free(m);
}

static void cls_fd_one(int v, bool single)
{
    model m;
    make_model(&m, v);
    cls_fd_model(&m, var_name[v], single);
}

static void test_fd_cls(void)
{
    for (int v = 0; v < VAR_COUNT; v++) {
        cls_fd_one(v, true);
        if (v != VAR_ROBERTA) /* a masked LM reads one token at <mask> */
            cls_fd_one(v, false);
    }
    /* Llama: both paths on one fixture, the 1-token path on Qwen2's tied head */
    const int fs[3] = {LLAMA_F32, LLAMA_F32, LLAMA_QWEN2};
    for (int i = 0; i < 3; i++) {
        model m;
        make_llama(&m, fs[i]);
        cls_fd_model(&m, llama_name[fs[i]], i != 1);
    }
}

/* RoBERTa's token type embedding: row 0 gets every token's gradient (the
 * sum of the embedding-LN input gradients), row 1 none. */
static void test_roberta_token_type_gradient(void)
{
    model m;
    make_model(&m, VAR_ROBERTA);
    backward bw;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(backward_init(&bw, &m, &err), HL_OK);
    const int lens[2] = {7, 4};
    int32_t tok[11], starts[3];
    make_batch(tok, starts, lens, 2, m.cfg.vocab);
    model_batch b = {.tokens = tok, .seq_start = starts, .n_seq = 2};
    double sum;
    size_t count;
    CU_ASSERT_EQUAL_FATAL(backward_lm(&bw, &sum, &count, &b, 1, 1.0, &err), HL_OK);
    const int C = m.cfg.d_model;
    double r0 = 0, r1 = 0;
    for (int c = 0; c < C; c++) {
        r0 += fabs(bw.gw.tte[c]);
        r1 += fabs(bw.gw.tte[C + c]);
    }
    CU_ASSERT(r0 > 0);
    CU_ASSERT(r1 == 0);
    backward_free(&bw);
    model_free(&m);
}

/* Prefix adapters: the gradients of every block's prefix keys and values by
 * finite differences, causal and bidirectional, loops and sgemm attention. */
static void prefix_fd_one(int v, const int *lens, int B, const char *what)
{
    fd_lm_peft(v, lens, B, what, "prefix:tokens=3");
}

static void test_prefix_gradients(void)
{
    const int short_lens[3] = {11, 6, 2};
    const int long_lens[2] = {KERN_ATTENTION_SGEMM_MIN_T + 7, 9};
    prefix_fd_one(VAR_OPT_PRE, short_lens, 3, "opt pre-LN, prefix");
    prefix_fd_one(VAR_GPT2, short_lens, 3, "gpt2, prefix");
    prefix_fd_one(VAR_ROBERTA, short_lens, 3, "roberta, prefix");
    prefix_fd_one(VAR_OPT_POST, long_lens, 2, "opt post-LN, prefix, sgemm attention");
    prefix_fd_one(VAR_ROBERTA, long_lens, 2, "roberta, prefix, sgemm attention");
    /* Llama: prefix keys as captured (rotated once) and read unrotated; a
     * key/value head's prefix gradient summed over its 4 query heads */
    fd_lm_llama(LLAMA_QWEN2, short_lens, 3, "qwen2, prefix", "prefix:tokens=3");
    fd_lm_llama(LLAMA_F32, long_lens, 2, "llama, prefix, sgemm attention", "prefix:tokens=3");
}

/* ---------------------------------------------------------------- LoRA --- */

/* The base weight a LoRA site adapts, with its [O, K] shape. */
static float *site_weight(const model *m, int l, int k, int *O, int *K)
{
    const model_block *b = &m->w.blocks[l];
    const int C = m->cfg.d_model, F = m->cfg.d_ffn;
    const int QD = model_q_dim(&m->cfg), KVD = model_kv_dim(&m->cfg);
    const int outs[PEFT_SITE_COUNT] = {QD, KVD, KVD, C, F, C};
    const int ins[PEFT_SITE_COUNT] = {C, C, C, QD, C, F};
    *O = outs[k];
    *K = ins[k];
    float *const w[PEFT_SITE_COUNT] = {b->wqkv[0], b->wqkv[1], b->wqkv[2], b->wo, b->w1, b->w2};
    return w[k];
}

/* LoRA's gradients follow from the full gradient G of the merged weight
 * W' = W + s·B·A at the same point (s = alpha/r): dL/dB = s·G·Aᵀ and
 * dL/dA = s·Bᵀ·G.  So the adapted backward must agree with the (finite-
 * difference- and PyTorch-checked) full backward of the merged model, for
 * every site, every block and both losses; and its loss must be the
 * inference path's with the adapters. */
static void lora_case_model(model *m, const char *name, bool cls)
{
    hl_err err;
    peft_spec ps;
    CU_ASSERT_EQUAL_FATAL(peft_parse(&ps, "lora:r=3,alpha=6,targets=q+k+v+o+fc1+fc2", &err),
                          HL_OK);
    CU_ASSERT_EQUAL_FATAL(model_peft_attach(m, &ps, 7, &err), HL_OK);
    for (int l = 0; l < m->peft_params.n_layers; l++) { /* B != 0 too */
        float *d = param_layer_data(&m->peft_params, l);
        for (size_t k = 0; k < m->peft_params.layers[l].size; k++)
            d[k] = (float)(0.4 * (urand() - 0.5));
    }
    const int lens[3] = {9, 5, 3};
    int32_t tok[17], starts[4];
    make_batch(tok, starts, lens, 3, m->cfg.vocab);
    model_batch b = {.tokens = tok, .seq_start = starts, .n_seq = 3};
    int32_t w0[1] = {5}, w1[1] = {30};
    const int32_t *words[2] = {w0, w1};
    int32_t nw[2] = {1, 1};
    cls_example ex[3];
    int labels[3] = {1, 0, 1};
    for (int i = 0; i < 3; i++)
        ex[i] = (cls_example){.prompt = tok + starts[i], .n_prompt = lens[i], .label = labels[i],
                              .mask_pos = lens[i] / 2};
    cls_scorer sc;
    CU_ASSERT_EQUAL_FATAL(cls_scorer_init(&sc, m, words, nw, 2, 3, 12, &err), HL_OK);

    /* the adapted backward: loss = inference loss; gradients of the adapters only */
    backward bw;
    CU_ASSERT_EQUAL_FATAL(backward_init(&bw, m, &err), HL_OK);
    CU_ASSERT_EQUAL(bw.grad.n_layers, m->peft_params.n_layers);
    CU_ASSERT_PTR_NULL(bw.gw.blocks[0].w1); /* frozen base: no gradient */
    double sum = 0, ref;
    size_t count;
    if (cls) {
        double got[3], want[3];
        CU_ASSERT_EQUAL_FATAL(backward_cls(&bw, got, &sc, ex, 3, 1.0, &err), HL_OK);
        CU_ASSERT_EQUAL(cls_score(&sc, want, NULL, NULL, ex, 3, &err), HL_OK);
        for (int i = 0; i < 3; i++)
            CU_ASSERT(got[i] == want[i]); /* the same calls: the same bits */
    } else {
        CU_ASSERT_EQUAL_FATAL(backward_lm(&bw, &sum, &count, &b, 1, 1.0, &err), HL_OK);
        ref = lm_loss(m, &b);
        CU_ASSERT(fabs(sum / (double)count - ref) <= 1e-6 * fabs(ref));
    }
    float *lg = malloc(bw.grad.n * sizeof *lg), *ab = malloc(m->peft_params.n * sizeof *ab);
    memcpy(lg, bw.grad.data, bw.grad.n * sizeof *lg);
    memcpy(ab, m->peft_params.data, m->peft_params.n * sizeof *ab);
    param_set layout = m->peft_params; /* the table, read before the merge frees it */
    param_layer *tab = malloc((size_t)layout.n_layers * sizeof *tab);
    memcpy(tab, layout.layers, (size_t)layout.n_layers * sizeof *tab);
    backward_free(&bw);

    /* the full backward of the merged model */
    const float s = ps.alpha / (float)ps.rank;
    CU_ASSERT_EQUAL_FATAL(model_peft_merge(m, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(backward_init(&bw, m, &err), HL_OK);
    if (cls) {
        double got[3];
        CU_ASSERT_EQUAL_FATAL(backward_cls(&bw, got, &sc, ex, 3, 1.0, &err), HL_OK);
    } else
        CU_ASSERT_EQUAL_FATAL(backward_lm(&bw, &sum, &count, &b, 1, 1.0, &err), HL_OK);
    int bad = 0, at = 0;
    double worst = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int k = 0; k < PEFT_SITE_COUNT; k++, at += 2) {
            int O, K;
            const float *G = backward_grad_of(&bw, site_weight(m, l, k, &O, &K));
            const int r = ps.rank;
            const float *A = ab + tab[at].offset, *B = ab + tab[at + 1].offset;
            const float *dA = lg + tab[at].offset, *dB = lg + tab[at + 1].offset;
            double gmax = 0;
            for (int i = 0; i < O * K; i++)
                gmax = fabs(G[i]) > gmax ? fabs(G[i]) : gmax;
            for (int q = 0; q < r; q++) {
                for (int x = 0; x < K; x++) { /* dA[q, x] = s Σ_o B[o, q] G[o, x] */
                    double want = 0;
                    for (int o = 0; o < O; o++)
                        want += (double)B[o * r + q] * G[o * K + x];
                    want *= s;
                    double e = fabs(dA[q * K + x] - want) / (1e-4 * (1 + gmax));
                    worst = e > worst ? e : worst;
                    bad += e > 1;
                }
                for (int o = 0; o < O; o++) { /* dB[o, q] = s Σ_x G[o, x] A[q, x] */
                    double want = 0;
                    for (int x = 0; x < K; x++)
                        want += (double)G[o * K + x] * A[q * K + x];
                    want *= s;
                    double e = fabs(dB[o * r + q] - want) / (1e-4 * (1 + gmax));
                    worst = e > worst ? e : worst;
                    bad += e > 1;
                }
            }
        }
    fprintf(stderr, "\n  %s, LoRA on every site, %s loss: dA, dB = s Bᵀ G, s G Aᵀ of the merged "
            "model within %.3g of the tolerance", name, cls ? "classification" : "LM",
            worst);
    CU_ASSERT_EQUAL(bad, 0);
    free(lg), free(ab), free(tab);
    backward_free(&bw);
    cls_scorer_free(&sc);
    model_free(m);
}

static void lora_case(int v, bool cls)
{
    model m;
    make_model(&m, v);
    lora_case_model(&m, var_name[v], cls);
}

static void test_lora_gradients(void)
{
    for (int v = 0; v < VAR_COUNT; v++) {
        lora_case(v, false);
        lora_case(v, true);
    }
    /* Llama: q, k, v of different widths (GQA), o_proj reading QD != C
     * (Mistral), fc1 = gate_proj, fc2 = down_proj */
    const int fs[2] = {LLAMA_QWEN2, LLAMA_MISTRAL};
    for (int i = 0; i < 2; i++)
        for (int cls = 0; cls < 2; cls++) {
            model m;
            make_llama(&m, fs[i]);
            lora_case_model(&m, llama_name[fs[i]], cls);
        }
}

/* ------------------------------------------------- PyTorch reference --- */

static int32_t *read_ids(const st_file *f, const char *name, int64_t *n)
{
    const st_tensor *t = st_file_find(f, name);
    *n = 0;
    if (!t || t->dtype != ST_DTYPE_I64 || t->ndim != 1)
        return NULL;
    int32_t *out = malloc((size_t)t->n_elems * sizeof *out + 1);
    for (uint64_t i = 0; i < t->n_elems; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + i * 8, 8);
        out[i] = (int32_t)v;
    }
    *n = (int64_t)t->n_elems;
    return out;
}

/* Largest |value| of the reference tensors PREFIX.* (0 if none). */
static double reference_scale(const st_file *f, const char *prefix)
{
    double mx = 0;
    size_t pl = strlen(prefix);
    for (int32_t i = 0; i < st_file_count(f); i++) {
        const st_tensor *t = st_file_tensor(f, i);
        if (strncmp(t->name, prefix, pl) || t->name[pl] != '.' || t->dtype != ST_DTYPE_F32)
            continue;
        for (uint64_t e = 0; e < t->n_elems; e++) {
            float v;
            memcpy(&v, (const char *)t->data + e * 4, 4);
            mx = fabs(v) > mx ? fabs(v) : mx;
        }
    }
    return mx;
}

/* Every layer's gradient against the reference tensors PREFIX.<name>.
 * Tolerance: 2e-5 of the tensor's largest |reference| + 1e-6 of the largest
 * over all tensors (fp32 lands within ~2e-6 relative; the absolute term is
 * for tensors whose exact gradient is 0, such as k_proj's bias, which the
 * softmax cancels, where fp32 leaves ~1e-7 of rounding). */
static void compare_grads(const char *what, const backward *bw, const st_file *f,
                          const char *prefix)
{
    double worst = 0, worst_zero = 0, global = reference_scale(f, prefix);
    const char *worst_name = "";
    for (int i = 0; i < bw->grad.n_layers; i++) {
        const param_layer *l = &bw->grad.layers[i];
        char name[PARAM_NAME_MAX + 16];
        snprintf(name, sizeof name, "%s.%s", prefix, l->name);
        const st_tensor *t = st_file_find(f, name);
        if (!t || t->n_elems != l->size) {
            fprintf(stderr, "\n  %s: no reference gradient %s", what, name);
            CU_FAIL("missing reference gradient");
            continue;
        }
        float *want = malloc(l->size * sizeof *want);
        hl_err err;
        CU_ASSERT_EQUAL_FATAL(st_tensor_to_f32(t, want, &err), HL_OK);
        double scale = 0, maxd = 0;
        const float *got = bw->grad.data + l->offset;
        for (size_t e = 0; e < l->size; e++) {
            scale = fabs(want[e]) > scale ? fabs(want[e]) : scale;
            double d = fabs((double)got[e] - want[e]);
            maxd = d > maxd ? d : maxd;
        }
        if (scale > 1e-4 * global && maxd / scale > worst) {
            worst = maxd / scale;
            worst_name = l->name;
        } else if (scale <= 1e-4 * global && maxd > worst_zero) {
            worst_zero = maxd;
        }
        CU_ASSERT_EQUAL(
            test_close_floats(name, got, want, l->size, 0.0, 2e-5 * scale + 1e-6 * global), 0);
        free(want);
    }
    fprintf(stderr, "\n  %s: %d tensors, worst max|diff|/max|ref| %.2e (%s); tensors with a "
            "vanishing gradient: max|got| %.1e of max|ref| %.2g", what, bw->grad.n_layers, worst,
            worst_name, worst_zero, global);
}

static void check_reference(const char *name)
{
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s/%s.safetensors", GRADDIR, name);
    snprintf(dir, sizeof dir, "%s/%s-f32", MODELDIR, name);
    hl_err err;
    st_file f;
    CU_ASSERT_EQUAL_FATAL(st_file_open(&f, path, &err), HL_OK);
    lm l;
    CU_ASSERT_EQUAL_FATAL(lm_open(&l, dir, 2, &err), HL_OK);
    backward bw;
    CU_ASSERT_EQUAL_FATAL(backward_init(&bw, &l.model, &err), HL_OK);

    int64_t ntok, nst;
    int32_t *tok = read_ids(&f, "tokens", &ntok), *starts = read_ids(&f, "seq_start", &nst);
    CU_ASSERT_FATAL(tok && starts);
    model_batch b = {.tokens = tok, .seq_start = starts, .n_seq = (int32_t)(nst - 1)};
    double sum;
    size_t count;
    CU_ASSERT_EQUAL_FATAL(backward_lm(&bw, &sum, &count, &b, 1, 1.0, &err), HL_OK);
    const char *ref = st_file_meta(&f, "lm_loss");
    CU_ASSERT_FATAL(ref != NULL);
    double want = strtod(ref, NULL), got = sum / (double)count;
    fprintf(stderr, "\n  %s lm loss %.9f, reference %.9f", name, got, want);
    CU_ASSERT(fabs(got - want) <= 1e-5 * fabs(want));
    char what[64];
    snprintf(what, sizeof what, "%s lm", name);
    compare_grads(what, &bw, &f, "lm");

    int64_t np, nps, nlab;
    int32_t *prompts = read_ids(&f, "cls.prompts", &np);
    if (prompts) { /* classification gradients (opt350-tiny) */
        int32_t *pstart = read_ids(&f, "cls.prompt_start", &nps);
        int32_t *labels = read_ids(&f, "cls.labels", &nlab);
        int64_t nw1, nwm, nws;
        int32_t *w1 = read_ids(&f, "cls1.words", &nw1), *wm = read_ids(&f, "cls.words", &nwm);
        int32_t *wstart = read_ids(&f, "cls.word_start", &nws);
        CU_ASSERT_FATAL(pstart && labels && w1 && wm && wstart && nps == nlab + 1);
        cls_example ex[8];
        int n = (int)nlab;
        CU_ASSERT_FATAL(n <= 8);
        for (int i = 0; i < n; i++)
            ex[i] = (cls_example){.prompt = prompts + pstart[i],
                                  .n_prompt = pstart[i + 1] - pstart[i], .label = labels[i]};
        for (int pass = 0; pass < 2; pass++) {
            const char *tag = pass ? "clsm" : "cls1";
            const int32_t *words[CLS_MAX_CLASSES];
            int32_t nw[CLS_MAX_CLASSES];
            int K = pass ? (int)nws - 1 : (int)nw1;
            for (int c = 0; c < K; c++) {
                words[c] = pass ? wm + wstart[c] : w1 + c;
                nw[c] = pass ? wstart[c + 1] - wstart[c] : 1;
            }
            cls_scorer s;
            CU_ASSERT_EQUAL_FATAL(cls_scorer_init(&s, &l.model, words, nw, K, n, 32, &err), HL_OK);
            backward_zero_grad(&bw);
            double losses[8];
            CU_ASSERT_EQUAL_FATAL(backward_cls(&bw, losses, &s, ex, n, 1.0, &err), HL_OK);
            char key[32];
            snprintf(key, sizeof key, "%s_losses", tag);
            const char *lv = st_file_meta(&f, key);
            CU_ASSERT_FATAL(lv != NULL);
            char *end = (char *)lv;
            for (int i = 0; i < n; i++) {
                double w = strtod(end, &end);
                if (fabs(losses[i] - w) > 1e-5 * (1 + fabs(w)))
                    fprintf(stderr, "\n  %s loss %d: got %.9f want %.9f", tag, i, losses[i], w);
                CU_ASSERT(fabs(losses[i] - w) <= 1e-5 * (1 + fabs(w)));
            }
            snprintf(what, sizeof what, "%s %s", name, tag);
            compare_grads(what, &bw, &f, tag);
            cls_scorer_free(&s);
        }
        free(pstart);
        free(labels);
        free(w1);
        free(wm);
        free(wstart);
        free(prompts);
    }
    free(tok);
    free(starts);
    backward_free(&bw);
    lm_close(&l);
    st_file_close(&f);
}

static void test_reference_gradients(void)
{
    check_reference("opt-tiny");
    check_reference("opt350-tiny");
    check_reference("gpt2-tiny");
}

/* --------------------------------------------------------- determinism --- */

/* 600 tokens and a 2500-word vocabulary: several fixed row chunks in every
 * product and several column/row chunks in the head, so a split that
 * depended on the thread count would show.  After the variants, Qwen2's
 * config (4 query heads summed into one key/value head's gradient). */
static void test_thread_count_does_not_change_gradients(void)
{
    enum { B = 3, T = 200, N = B * T };
    lm_set_blas_threads(1);
    for (int v = 0; v <= VAR_COUNT; v++) {
        model_config c;
        if (v < VAR_COUNT)
            c = variant_config(v);
        else {
            char dir[512];
            hl_err err;
            llama_path(dir, sizeof dir, LLAMA_QWEN2);
            CU_ASSERT_EQUAL_FATAL(model_config_load(&c, dir, &err), HL_OK);
        }
        const char *name = v < VAR_COUNT ? var_name[v] : llama_name[LLAMA_QWEN2];
        c.vocab = 2500;
        c.max_pos = T;
        int32_t *tok = malloc(N * sizeof *tok), starts[B + 1];
        int lens[B] = {T, T - 37, T - 100};
        make_batch(tok, starts, lens, B, c.vocab);
        model_batch b = {.tokens = tok, .seq_start = starts, .n_seq = B};
        float *ref = NULL, *ref_cls = NULL;
        size_t n = 0;
        for (int threads = 1; threads <= 4; threads *= 2) {
            pool p;
            hl_err err;
            CU_ASSERT_EQUAL_FATAL(pool_init(&p, threads, &err), HL_OK);
            model m;
            CU_ASSERT_EQUAL_FATAL(model_init_from_config(&m, &c, &err), HL_OK);
            uint64_t keep = rng_state;
            rng_state = 0x1234567ull + (uint64_t)v;
            randomise(&m);
            rng_state = keep;
            model_set_pool(&m, &p);
            backward bw;
            CU_ASSERT_EQUAL_FATAL(backward_init(&bw, &m, &err), HL_OK);
            double sum;
            size_t count;
            CU_ASSERT_EQUAL_FATAL(backward_lm(&bw, &sum, &count, &b, 1, 1.0, &err), HL_OK);
            /* the training forward is the inference forward, bit for bit */
            CU_ASSERT_EQUAL_FATAL(model_forward(&m, &b, &err), HL_OK);
            CU_ASSERT(memcmp(bw.hidden, m.acts.hidden,
                             (size_t)starts[B] * (size_t)c.d_embed * sizeof(float)) == 0);
            n = bw.grad.n;
            if (!ref) {
                ref = malloc(n * sizeof *ref);
                memcpy(ref, bw.grad.data, n * sizeof *ref);
            } else if (memcmp(ref, bw.grad.data, n * sizeof *ref) != 0) {
                fprintf(stderr, "\n  %s: LM gradients differ with %d threads", name,
                        threads);
                CU_FAIL("LM gradients depend on the thread count");
            }
            /* classification, multi-token path (full head rows) */
            int32_t w0[2] = {7, 2400}, w1[1] = {1999};
            const int32_t *words[2] = {w0, w1};
            int32_t nw[2] = {v == VAR_ROBERTA ? 1 : 2, 1}; /* masked: one token at <mask> */
            cls_scorer s;
            CU_ASSERT_EQUAL_FATAL(cls_scorer_init(&s, &m, words, nw, 2, 3, T - 2, &err), HL_OK);
            cls_example ex[3] = {{tok, T - 2, 1, 0}, {tok + T, 50, 0, 0}, {tok + T + 50, 9, -1, 0}};
            backward_zero_grad(&bw);
            CU_ASSERT_EQUAL_FATAL(backward_cls(&bw, NULL, &s, ex, 3, 1.0, &err), HL_OK);
            if (!ref_cls) {
                ref_cls = malloc(n * sizeof *ref_cls);
                memcpy(ref_cls, bw.grad.data, n * sizeof *ref_cls);
            } else if (memcmp(ref_cls, bw.grad.data, n * sizeof *ref_cls) != 0) {
                fprintf(stderr, "\n  %s: cls gradients differ with %d threads", name,
                        threads);
                CU_FAIL("classification gradients depend on the thread count");
            }
            cls_scorer_free(&s);
            backward_free(&bw);
            model_free(&m);
            pool_free(&p);
        }
        free(ref);
        free(ref_cls);
        free(tok);
    }
}

/* Accumulation: weight w adds w·gradient; two calls add up. */
static void test_accumulation_and_weight(void)
{
    model m;
    make_model(&m, VAR_GPT2);
    backward bw;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(backward_init(&bw, &m, &err), HL_OK);
    int lens[2] = {7, 5};
    int32_t tok[12], starts[3];
    make_batch(tok, starts, lens, 2, m.cfg.vocab);
    model_batch b = {.tokens = tok, .seq_start = starts, .n_seq = 2};
    double sum;
    size_t count;
    CU_ASSERT_EQUAL_FATAL(backward_lm(&bw, &sum, &count, &b, 1, 1.0, &err), HL_OK);
    size_t n = bw.grad.n;
    float *one = malloc(n * sizeof *one);
    memcpy(one, bw.grad.data, n * sizeof *one);
    CU_ASSERT_EQUAL_FATAL(backward_lm(&bw, &sum, &count, &b, 1, 0.5, &err), HL_OK);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += fabsf(bw.grad.data[i] - 1.5f * one[i]) > 1e-6f * (1 + fabsf(one[i]));
    CU_ASSERT_EQUAL(bad, 0);
    backward_zero_grad(&bw);
    for (size_t i = 0; i < n; i++)
        bad += bw.grad.data[i] != 0.0f;
    CU_ASSERT_EQUAL(bad, 0);
    /* first_pred 0 is refused; an empty prediction set leaves grad alone */
    CU_ASSERT_EQUAL(backward_lm(&bw, &sum, &count, &b, 0, 1.0, &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(backward_lm(&bw, &sum, &count, &b, 7, 1.0, &err), HL_OK);
    CU_ASSERT_EQUAL(count, 0);
    for (size_t i = 0; i < n; i++)
        bad += bw.grad.data[i] != 0.0f;
    CU_ASSERT_EQUAL(bad, 0);
    /* tokens outside the vocabulary are refused as model_forward does */
    tok[3] = m.cfg.vocab;
    CU_ASSERT_EQUAL(backward_lm(&bw, &sum, &count, &b, 1, 1.0, &err), HL_ERR_INVALID);
    free(one);
    backward_free(&bw);
    model_free(&m);
}

/* The cosine of the gradient-alignment diagnostic: exact cases, padding
 * ignored, and the mean of K two-point ZO estimates along Gaussian z
 * (what MeZO's projected gradient c·z averages to) aligning with the true
 * gradient as K grows: E[cos] ≈ sqrt(K / (K + d)). */
static double gauss(void)
{
    double u1 = urand() + 1e-300, u2 = urand();
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

static void test_cosine_and_zo_alignment(void)
{
    model_config c = variant_config(VAR_GPT2);
    c.d_model = c.d_embed = 8;
    c.d_ffn = 12;
    c.n_layers = 1;
    c.vocab = 23;
    model m;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(model_init_from_config(&m, &c, &err), HL_OK);
    randomise(&m);
    backward bw;
    CU_ASSERT_EQUAL_FATAL(backward_init(&bw, &m, &err), HL_OK);
    int32_t w0[1] = {3}, w1[1] = {17};
    const int32_t *words[2] = {w0, w1};
    int32_t nw[2] = {1, 1};
    cls_scorer s;
    CU_ASSERT_EQUAL_FATAL(cls_scorer_init(&s, &m, words, nw, 2, 4, 10, &err), HL_OK);
    int32_t p[4][10];
    cls_example ex[4];
    for (int i = 0; i < 4; i++) {
        for (int t = 0; t < 10; t++)
            p[i][t] = (int32_t)(urand() * c.vocab);
        ex[i] = (cls_example){.prompt = p[i], .n_prompt = 6 + i, .label = i % 2};
    }
    CU_ASSERT_EQUAL_FATAL(backward_cls(&bw, NULL, &s, ex, 4, 1.0, &err), HL_OK);
    const size_t n = bw.grad.n, d = param_set_count(&m.params);
    float *o = calloc(n, sizeof *o);
    for (size_t i = 0; i < n; i++)
        o[i] = -2.0f * bw.grad.data[i];
    CU_ASSERT_DOUBLE_EQUAL(backward_cosine(&bw, bw.grad.data), 1.0, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(backward_cosine(&bw, o), -1.0, 1e-12);
    /* padding between layers is not read */
    for (int l = 0; l + 1 < m.params.n_layers; l++) {
        const param_layer *pl = &m.params.layers[l];
        for (size_t i = pl->offset + pl->size; i < m.params.layers[l + 1].offset; i++)
            o[i] = 1e6f;
    }
    CU_ASSERT_DOUBLE_EQUAL(backward_cosine(&bw, o), -1.0, 1e-12);

    /* averaged ZO estimates */
    float *z = malloc(n * sizeof *z), *keep = malloc(n * sizeof *keep);
    memcpy(keep, m.params.data, n * sizeof *keep);
    memset(o, 0, n * sizeof *o);
    const float eps = 1e-3f;
    double cos_small = 0;
    const int K = 4 * (int)d;
    for (int k = 1; k <= K; k++) {
        for (size_t i = 0; i < n; i++)
            z[i] = (float)gauss();
        for (size_t i = 0; i < n; i++)
            m.params.data[i] = keep[i] + eps * z[i];
        double lp = cls_loss(&s, ex, 4);
        for (size_t i = 0; i < n; i++)
            m.params.data[i] = keep[i] - eps * z[i];
        double lminus = cls_loss(&s, ex, 4);
        float proj = (float)((lp - lminus) / (2.0 * eps));
        for (size_t i = 0; i < n; i++)
            o[i] += proj * z[i];
        if (k == 50)
            cos_small = backward_cosine(&bw, o);
    }
    memcpy(m.params.data, keep, n * sizeof *keep);
    double cos_big = backward_cosine(&bw, o);
    fprintf(stderr, "\n  d = %zu: cosine(mean ZO estimate, gradient) %.3f after 50 probes "
            "(expected ~%.2f), %.3f after %d (~%.2f)", d, cos_small, sqrt(50.0 / (50.0 + d)),
            cos_big, K, sqrt((double)K / (K + d)));
    CU_ASSERT(cos_small > 0.05 && cos_small < 0.6);
    CU_ASSERT(cos_big > 0.8);
    free(z);
    free(keep);
    free(o);
    cls_scorer_free(&s);
    backward_free(&bw);
    model_free(&m);
}

/* --------------------------------------------------------------- AdamW --- */

/* Two layers: "w" (decay) = 3 elements, "b" (no decay) = 2. */
static void five_params(param_set *ps)
{
    param_set_init(ps);
    hl_err err;
    int64_t s3[1] = {3}, s2[1] = {2};
    CU_ASSERT_EQUAL_FATAL(param_set_add(ps, "w", 1, s3, true, 0, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(param_set_add(ps, "b", 1, s2, false, 0, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(param_set_alloc(ps, &err), HL_OK);
    const float th[5] = {1.0f, -2.0f, 0.5f, 0.25f, -1.0f};
    memcpy(param_layer_data(ps, 0), th, 3 * sizeof(float));
    memcpy(param_layer_data(ps, 1), th + 3, 2 * sizeof(float));
}

static void test_adamw_one_step_by_hand(void)
{
    param_set ps;
    five_params(&ps);
    float *g = calloc(ps.n, sizeof *g);
    const float gv[5] = {0.1f, -0.2f, 0.0f, 3.0f, -0.5f};
    memcpy(g + ps.layers[0].offset, gv, 3 * sizeof(float));
    memcpy(g + ps.layers[1].offset, gv + 3, 2 * sizeof(float));
    adamw_config c = adamw_config_default();
    c.lr = 0.1;
    c.weight_decay = 0.5;
    adamw a;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(adamw_init(&a, &ps, &c, NULL, &err), HL_OK);
    adamw_stats st;
    CU_ASSERT_EQUAL_FATAL(adamw_step(&a, &st, g, &err), HL_OK);
    /* step 1: m = 0.1 g, v = 0.001 g², m̂ = g, v̂ = g², so the Adam step is
     * lr·g/(|g| + ε) = ±0.1 (0 where g = 0); decay multiplies θ by
     * 1 − 0.1·0.5 = 0.95 on "w" only. */
    const double want[5] = {1.0 * 0.95 - 0.1 * 0.1 / (0.1 + 1e-8),
                            -2.0 * 0.95 + 0.1 * 0.2 / (0.2 + 1e-8), 0.5 * 0.95,
                            0.25 - 0.1 * 3.0 / (3.0 + 1e-8), -1.0 + 0.1 * 0.5 / (0.5 + 1e-8)};
    float got[5];
    memcpy(got, param_layer_data(&ps, 0), 3 * sizeof(float));
    memcpy(got + 3, param_layer_data(&ps, 1), 2 * sizeof(float));
    for (int i = 0; i < 5; i++) {
        if (fabs(got[i] - want[i]) > 1e-6)
            fprintf(stderr, "\n  θ[%d]: got %.8f want %.8f", i, got[i], want[i]);
        CU_ASSERT(fabs(got[i] - want[i]) <= 1e-6);
    }
    CU_ASSERT_DOUBLE_EQUAL(st.lr, 0.1, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(st.grad_norm, sqrt(0.01 + 0.04 + 9.0 + 0.25), 1e-6);
    CU_ASSERT_DOUBLE_EQUAL(st.clip_scale, 1.0, 0);
    CU_ASSERT_DOUBLE_EQUAL(a.m[ps.layers[1].offset], 0.3, 1e-7);
    CU_ASSERT_DOUBLE_EQUAL(a.v[ps.layers[1].offset], 0.009, 1e-8);

    /* step 2 with the same gradient, by the formula in double */
    float th1[5];
    memcpy(th1, got, sizeof th1);
    CU_ASSERT_EQUAL_FATAL(adamw_step(&a, &st, g, &err), HL_OK);
    memcpy(got, param_layer_data(&ps, 0), 3 * sizeof(float));
    memcpy(got + 3, param_layer_data(&ps, 1), 2 * sizeof(float));
    for (int i = 0; i < 5; i++) {
        double gi = gv[i], m = 0.1 * gi * 0.9 + 0.1 * gi, v = 0.001 * gi * gi * 0.999 + 0.001 * gi * gi;
        double mh = m / (1 - 0.81), vh = v / (1 - 0.999 * 0.999);
        double w = (double)th1[i] * (i < 3 ? 0.95 : 1.0) - 0.1 * mh / (sqrt(vh) + 1e-8);
        CU_ASSERT(fabs(got[i] - w) <= 1e-6);
    }
    adamw_free(&a);

    /* clipping to norm 1: the gradient is scaled by 1/‖g‖ before the moments */
    param_set_free(&ps);
    five_params(&ps);
    c.clip_norm = 1.0;
    CU_ASSERT_EQUAL_FATAL(adamw_init(&a, &ps, &c, NULL, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(adamw_step(&a, &st, g, &err), HL_OK);
    double norm = sqrt(9.3);
    CU_ASSERT_DOUBLE_EQUAL(st.clip_scale, 1.0 / (norm + 1e-6), 1e-8);
    CU_ASSERT_DOUBLE_EQUAL(a.m[ps.layers[1].offset], 0.1 * 3.0 / norm, 1e-6);
    /* a non-finite gradient changes nothing */
    float before[5];
    memcpy(before, param_layer_data(&ps, 0), 3 * sizeof(float));
    g[1] = NAN;
    CU_ASSERT_EQUAL(adamw_step(&a, &st, g, &err), HL_ERR_NUMERIC);
    CU_ASSERT(memcmp(before, param_layer_data(&ps, 0), 3 * sizeof(float)) == 0);
    CU_ASSERT_EQUAL(a.step, 1);
    adamw_free(&a);
    free(g);
    param_set_free(&ps);
}

static void test_adamw_schedule(void)
{
    adamw_config c = adamw_config_default();
    c.lr = 1.0;
    c.warmup_steps = 10;
    c.total_steps = 110;
    c.min_lr_ratio = 0.1;
    CU_ASSERT_DOUBLE_EQUAL(adamw_lr_at(&c, 1), 0.1, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(adamw_lr_at(&c, 5), 0.5, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(adamw_lr_at(&c, 10), 1.0, 1e-15);
    CU_ASSERT_DOUBLE_EQUAL(adamw_lr_at(&c, 60), 0.55, 1e-12); /* half-way: (1 + 0.1) / 2 */
    CU_ASSERT_DOUBLE_EQUAL(adamw_lr_at(&c, 110), 0.1, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(adamw_lr_at(&c, 500), 0.1, 1e-12);
    c.total_steps = 0;
    CU_ASSERT_DOUBLE_EQUAL(adamw_lr_at(&c, 500), 1.0, 0);
    adamw a;
    param_set ps;
    five_params(&ps);
    hl_err err;
    c.beta1 = 1.0;
    CU_ASSERT_EQUAL(adamw_init(&a, &ps, &c, NULL, &err), HL_ERR_INVALID);
    param_set_free(&ps);
}

/* 3 steps, save, 2 more == 3 steps, restore into fresh state, 2 more: bits. */
static void test_adamw_resume_is_bit_identical(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/helene-adamw-%ld.safetensors", (long)getpid());
    pool p;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(pool_init(&p, 2, &err), HL_OK);
    param_set ps, ps2;
    five_params(&ps);
    five_params(&ps2);
    float *g = calloc(ps.n, sizeof *g);
    adamw_config c = adamw_config_default();
    c.warmup_steps = 2;
    c.total_steps = 5;
    c.clip_norm = 0.5;
    adamw a, b;
    CU_ASSERT_EQUAL_FATAL(adamw_init(&a, &ps, &c, &p, &err), HL_OK);
    for (int t = 0; t < 5; t++) {
        for (size_t i = 0; i < ps.n; i++)
            g[i] = (float)sin((double)(t * 7 + (int)i));
        CU_ASSERT_EQUAL_FATAL(adamw_step(&a, NULL, g, &err), HL_OK);
        if (t == 2) {
            CU_ASSERT_EQUAL_FATAL(adamw_state_write(&a, path, &err), HL_OK);
            memcpy(ps2.data, ps.data, ps.n * sizeof(float));
        }
    }
    CU_ASSERT_EQUAL_FATAL(adamw_init(&b, &ps2, &c, NULL, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(adamw_state_read(&b, path, &err), HL_OK);
    CU_ASSERT_EQUAL(b.step, 3);
    for (int t = 3; t < 5; t++) {
        for (size_t i = 0; i < ps.n; i++)
            g[i] = (float)sin((double)(t * 7 + (int)i));
        CU_ASSERT_EQUAL_FATAL(adamw_step(&b, NULL, g, &err), HL_OK);
    }
    CU_ASSERT(memcmp(ps.data, ps2.data, ps.n * sizeof(float)) == 0);
    CU_ASSERT(memcmp(a.m, b.m, ps.n * sizeof(float)) == 0);
    CU_ASSERT(memcmp(a.v, b.v, ps.n * sizeof(float)) == 0);
    /* a state file of another layout is refused and changes nothing */
    param_set other;
    param_set_init(&other);
    int64_t s6[1] = {6};
    CU_ASSERT_EQUAL_FATAL(param_set_add(&other, "w", 1, s6, true, 0, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(param_set_alloc(&other, &err), HL_OK);
    adamw o;
    CU_ASSERT_EQUAL_FATAL(adamw_init(&o, &other, &c, NULL, &err), HL_OK);
    CU_ASSERT_EQUAL(adamw_state_read(&o, path, &err), HL_ERR_FORMAT);
    CU_ASSERT_EQUAL(o.step, 0);
    adamw_free(&o);
    param_set_free(&other);
    unlink(path);
    adamw_free(&a);
    adamw_free(&b);
    free(g);
    param_set_free(&ps);
    param_set_free(&ps2);
    pool_free(&p);
}

/* Bits of θ, m and v after 3 steps do not depend on the pool size (layers
 * larger than one norm piece, clipping active). */
static void test_adamw_thread_count_does_not_change_bits(void)
{
    float *ref = NULL;
    size_t n = 0;
    for (int threads = 1; threads <= 3; threads++) {
        param_set ps;
        param_set_init(&ps);
        hl_err err;
        int64_t s1[2] = {200, 301}, s2[1] = {7};
        CU_ASSERT_EQUAL_FATAL(param_set_add(&ps, "w", 2, s1, true, 0, &err), HL_OK);
        CU_ASSERT_EQUAL_FATAL(param_set_add(&ps, "b", 1, s2, false, 0, &err), HL_OK);
        CU_ASSERT_EQUAL_FATAL(param_set_alloc(&ps, &err), HL_OK);
        n = ps.n;
        float *g = calloc(n, sizeof *g);
        for (size_t i = 0; i < n; i++)
            ps.data[i] = (float)sin(0.1 * (double)i);
        pool p;
        CU_ASSERT_EQUAL_FATAL(pool_init(&p, threads, &err), HL_OK);
        adamw_config c = adamw_config_default();
        c.clip_norm = 1.0;
        c.warmup_steps = 2;
        c.total_steps = 3;
        adamw a;
        CU_ASSERT_EQUAL_FATAL(adamw_init(&a, &ps, &c, &p, &err), HL_OK);
        for (int t = 0; t < 3; t++) {
            for (int l = 0; l < ps.n_layers; l++)
                for (size_t i = 0; i < ps.layers[l].size; i++)
                    g[ps.layers[l].offset + i] = (float)cos((double)(i * 3 + (size_t)t));
            CU_ASSERT_EQUAL_FATAL(adamw_step(&a, NULL, g, &err), HL_OK);
        }
        float *all = malloc(3 * n * sizeof *all);
        memcpy(all, ps.data, n * sizeof *all);
        memcpy(all + n, a.m, n * sizeof *all);
        memcpy(all + 2 * n, a.v, n * sizeof *all);
        if (!ref)
            ref = all;
        else {
            CU_ASSERT(memcmp(ref, all, 3 * n * sizeof *all) == 0);
            free(all);
        }
        adamw_free(&a);
        pool_free(&p);
        free(g);
        param_set_free(&ps);
    }
    free(ref);
}

/* ---------------------------------------------------------- register --- */

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("backward", NULL, NULL);
    TEST_ADD(s, test_fd_lm);
    TEST_ADD(s, test_fd_cls);
    TEST_ADD(s, test_reference_gradients);
    TEST_ADD(s, test_thread_count_does_not_change_gradients);
    TEST_ADD(s, test_accumulation_and_weight);
    TEST_ADD(s, test_cosine_and_zo_alignment);
    TEST_ADD(s, test_lora_gradients);
    TEST_ADD(s, test_roberta_token_type_gradient);
    TEST_ADD(s, test_prefix_gradients);
    CU_pSuite a = CU_add_suite("adamw", NULL, NULL);
    TEST_ADD(a, test_adamw_one_step_by_hand);
    TEST_ADD(a, test_adamw_schedule);
    TEST_ADD(a, test_adamw_thread_count_does_not_change_bits);
    TEST_ADD(a, test_adamw_resume_is_bit_identical);
}

TEST_MAIN(register_tests)

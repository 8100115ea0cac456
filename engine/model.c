/* model.c - OPT, GPT-2, RoBERTa and the Llama family: loading into the
 * arena, and the forward (config.json is model_config.c's).
 *
 * Loading happens in three steps so every failure is caught before any
 * weight is read: parse config.json into model_config; declare every weight
 * as a layer of the param_set (this fixes the arena layout and names, which
 * are the Hugging Face names without the optional prefix); then find each
 * layer's tensor in the safetensors file(s), check its shape and convert it
 * into the arena, releasing the file pages as it goes so peak memory stays
 * near the fp32 arena alone.
 *
 * Size (~1,150 lines, issue 19): four families' weight tables and forwards
 * over shared kernels (kernels.c) and one staged-forward driver;
 * config.json parsing is model_config.c, adapters peft.c.
 */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kernels.h"
#include "safetensors.h"

/* -------------------------------------------------------- layer table --- */

/* Declare one weight; the name is the HF name without prefix. */
static hl_status add2(param_set *ps, const char *name, int64_t d0, int64_t d1, bool decay,
                      int32_t block, hl_err *err)
{
    int64_t shape[2] = {d0, d1};
    return param_set_add(ps, name, d1 > 0 ? 2 : 1, shape, decay, block, err);
}

static hl_status declare_layers(param_set *ps, const model_config *c, hl_err *err)
{
    const int64_t C = c->d_model, E = c->d_embed, F = c->d_ffn, V = c->vocab;
    const int64_t P = (int64_t)c->max_pos + c->pos_offset;
    char n[PARAM_NAME_MAX];
    hl_status st = HL_OK;
#define ADD(name, d0, d1, decay, blk)                                                       \
    do {                                                                                    \
        if ((st = add2(ps, (name), (d0), (d1), (decay), (blk), err)))                       \
            return st;                                                                      \
    } while (0)
#define ADDF(d0, d1, decay, blk, ...)                                                       \
    do {                                                                                    \
        snprintf(n, sizeof n, __VA_ARGS__);                                                 \
        ADD(n, d0, d1, decay, blk);                                                         \
    } while (0)

    if (c->family == MODEL_FAMILY_OPT) {
        ADD("decoder.embed_tokens.weight", V, E, true, -1);
        ADD("decoder.embed_positions.weight", P, C, true, -1);
        if (E != C) {
            ADD("decoder.project_in.weight", C, E, true, -1);
            ADD("decoder.project_out.weight", E, C, true, -1);
        }
        for (int32_t i = 0; i < c->n_layers; i++) {
            static const char *const proj[4] = {"q_proj", "k_proj", "v_proj", "out_proj"};
            if (c->ln_affine) {
                ADDF(C, 0, false, i, "decoder.layers.%d.self_attn_layer_norm.weight", i);
                ADDF(C, 0, false, i, "decoder.layers.%d.self_attn_layer_norm.bias", i);
            }
            for (int p = 0; p < 4; p++) {
                ADDF(C, C, true, i, "decoder.layers.%d.self_attn.%s.weight", i, proj[p]);
                if (c->bias)
                    ADDF(C, 0, false, i, "decoder.layers.%d.self_attn.%s.bias", i, proj[p]);
            }
            if (c->ln_affine) {
                ADDF(C, 0, false, i, "decoder.layers.%d.final_layer_norm.weight", i);
                ADDF(C, 0, false, i, "decoder.layers.%d.final_layer_norm.bias", i);
            }
            ADDF(F, C, true, i, "decoder.layers.%d.fc1.weight", i);
            if (c->bias)
                ADDF(F, 0, false, i, "decoder.layers.%d.fc1.bias", i);
            ADDF(C, F, true, i, "decoder.layers.%d.fc2.weight", i);
            if (c->bias)
                ADDF(C, 0, false, i, "decoder.layers.%d.fc2.bias", i);
        }
        if (c->final_ln && c->ln_affine) {
            ADD("decoder.final_layer_norm.weight", C, 0, false, -1);
            ADD("decoder.final_layer_norm.bias", C, 0, false, -1);
        }
    } else if (c->family == MODEL_FAMILY_LLAMA) {
        /* HF names without the "model." prefix */
        const int64_t QD = model_q_dim(c), KVD = model_kv_dim(c);
        ADD("embed_tokens.weight", V, C, true, -1);
        for (int32_t i = 0; i < c->n_layers; i++) {
            static const char *const proj[3] = {"q_proj", "k_proj", "v_proj"};
            ADDF(C, 0, false, i, "layers.%d.input_layernorm.weight", i);
            for (int p = 0; p < 3; p++) {
                ADDF(p ? KVD : QD, C, true, i, "layers.%d.self_attn.%s.weight", i, proj[p]);
                if (c->qkv_bias)
                    ADDF(p ? KVD : QD, 0, false, i, "layers.%d.self_attn.%s.bias", i, proj[p]);
            }
            ADDF(C, QD, true, i, "layers.%d.self_attn.o_proj.weight", i);
            ADDF(C, 0, false, i, "layers.%d.post_attention_layernorm.weight", i);
            ADDF(F, C, true, i, "layers.%d.mlp.gate_proj.weight", i);
            ADDF(F, C, true, i, "layers.%d.mlp.up_proj.weight", i);
            ADDF(C, F, true, i, "layers.%d.mlp.down_proj.weight", i);
        }
        ADD("norm.weight", C, 0, false, -1);
        if (!c->tied_head)
            ADD("lm_head.weight", V, C, true, -1);
        return st;
    } else if (c->family == MODEL_FAMILY_ROBERTA) {
        /* HF names without the "roberta." prefix (lm_head.* has none) */
        ADD("embeddings.word_embeddings.weight", V, C, true, -1);
        ADD("embeddings.position_embeddings.weight", P, C, true, -1);
        ADD("embeddings.token_type_embeddings.weight", c->type_vocab, C, true, -1);
        ADD("embeddings.LayerNorm.weight", C, 0, false, -1);
        ADD("embeddings.LayerNorm.bias", C, 0, false, -1);
        for (int32_t i = 0; i < c->n_layers; i++) {
            static const char *const qkv[3] = {"query", "key", "value"};
            for (int p = 0; p < 3; p++) {
                ADDF(C, C, true, i, "encoder.layer.%d.attention.self.%s.weight", i, qkv[p]);
                ADDF(C, 0, false, i, "encoder.layer.%d.attention.self.%s.bias", i, qkv[p]);
            }
            ADDF(C, C, true, i, "encoder.layer.%d.attention.output.dense.weight", i);
            ADDF(C, 0, false, i, "encoder.layer.%d.attention.output.dense.bias", i);
            ADDF(C, 0, false, i, "encoder.layer.%d.attention.output.LayerNorm.weight", i);
            ADDF(C, 0, false, i, "encoder.layer.%d.attention.output.LayerNorm.bias", i);
            ADDF(F, C, true, i, "encoder.layer.%d.intermediate.dense.weight", i);
            ADDF(F, 0, false, i, "encoder.layer.%d.intermediate.dense.bias", i);
            ADDF(C, F, true, i, "encoder.layer.%d.output.dense.weight", i);
            ADDF(C, 0, false, i, "encoder.layer.%d.output.dense.bias", i);
            ADDF(C, 0, false, i, "encoder.layer.%d.output.LayerNorm.weight", i);
            ADDF(C, 0, false, i, "encoder.layer.%d.output.LayerNorm.bias", i);
        }
        ADD("lm_head.dense.weight", C, C, true, -1);
        ADD("lm_head.dense.bias", C, 0, false, -1);
        ADD("lm_head.layer_norm.weight", C, 0, false, -1);
        ADD("lm_head.layer_norm.bias", C, 0, false, -1);
        ADD("lm_head.bias", V, 0, false, -1);
        if (!c->tied_head)
            ADD("lm_head.decoder.weight", V, C, true, -1);
        return st;
    } else {
        ADD("wte.weight", V, C, true, -1);
        ADD("wpe.weight", P, C, true, -1);
        for (int32_t i = 0; i < c->n_layers; i++) {
            /* Conv1D weights are declared [out, in]: transposed on load. */
            ADDF(C, 0, false, i, "h.%d.ln_1.weight", i);
            ADDF(C, 0, false, i, "h.%d.ln_1.bias", i);
            ADDF(3 * C, C, true, i, "h.%d.attn.c_attn.weight", i);
            ADDF(3 * C, 0, false, i, "h.%d.attn.c_attn.bias", i);
            ADDF(C, C, true, i, "h.%d.attn.c_proj.weight", i);
            ADDF(C, 0, false, i, "h.%d.attn.c_proj.bias", i);
            ADDF(C, 0, false, i, "h.%d.ln_2.weight", i);
            ADDF(C, 0, false, i, "h.%d.ln_2.bias", i);
            ADDF(F, C, true, i, "h.%d.mlp.c_fc.weight", i);
            ADDF(F, 0, false, i, "h.%d.mlp.c_fc.bias", i);
            ADDF(C, F, true, i, "h.%d.mlp.c_proj.weight", i);
            ADDF(C, 0, false, i, "h.%d.mlp.c_proj.bias", i);
        }
        ADD("ln_f.weight", C, 0, false, -1);
        ADD("ln_f.bias", C, 0, false, -1);
    }
    if (!c->tied_head)
        ADD("lm_head.weight", V, E, true, -1);
#undef ADD
#undef ADDF
    return st;
}

static float *layer_ptr(model *m, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static float *layer_ptr(model *m, const char *fmt, ...)
{
    char n[PARAM_NAME_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(n, sizeof n, fmt, ap);
    va_end(ap);
    int idx = param_set_find(&m->params, n);
    return idx < 0 ? NULL : param_layer_data(&m->params, idx);
}

/* Llama's rotary tables: inv_freq_i = theta^(-2i/HD), scaled as HF's
 * rope_scaling says, then cos and sin of pos·inv_freq_i for every position
 * (computed in double, stored in float). */
static hl_status rope_tables(model *m, hl_err *err)
{
    const model_config *c = &m->cfg;
    const int HD = model_head_dim(c), half = HD / 2;
    const size_t n = (size_t)c->max_pos * (size_t)half;
    m->rope_cos = malloc(n * sizeof(float));
    m->rope_sin = malloc(n * sizeof(float));
    double *inv = malloc((size_t)half * sizeof *inv);
    if (!m->rope_cos || !m->rope_sin || !inv) {
        free(inv);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the rotary tables");
    }
    for (int i = 0; i < half; i++) {
        double f = pow(c->rope_theta, -2.0 * i / (double)HD);
        if (c->rope_scaling == MODEL_ROPE_LINEAR)
            f /= c->rope_factor;
        else if (c->rope_scaling == MODEL_ROPE_LLAMA3) {
            /* HF _compute_llama3_parameters */
            const double wavelen = 2.0 * 3.14159265358979323846 / f, old = c->rope_orig_max_pos;
            const double low_wl = old / c->rope_low_freq, high_wl = old / c->rope_high_freq;
            if (wavelen > low_wl)
                f /= c->rope_factor;
            else if (!(wavelen < high_wl)) {
                double smooth = (old / wavelen - c->rope_low_freq) /
                                (c->rope_high_freq - c->rope_low_freq);
                f = (1.0 - smooth) * f / c->rope_factor + smooth * f;
            }
        }
        inv[i] = f;
    }
    for (int32_t p = 0; p < c->max_pos; p++)
        for (int i = 0; i < half; i++) {
            double a = (double)p * inv[i];
            m->rope_cos[(size_t)p * half + i] = (float)cos(a);
            m->rope_sin[(size_t)p * half + i] = (float)sin(a);
        }
    free(inv);
    return HL_OK;
}

/* Resolve the weight pointers once; the arena never moves after alloc. */
static hl_status bind_weights(model *m, hl_err *err)
{
    const model_config *c = &m->cfg;
    model_weights *w = &m->w;
    w->blocks = calloc((size_t)c->n_layers, sizeof *w->blocks);
    if (!w->blocks)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    const size_t C = (size_t)c->d_model;
    if (c->family == MODEL_FAMILY_OPT) {
        w->wte = layer_ptr(m, "decoder.embed_tokens.weight");
        w->wpe = layer_ptr(m, "decoder.embed_positions.weight");
        w->proj_in = layer_ptr(m, "decoder.project_in.weight");
        w->proj_out = layer_ptr(m, "decoder.project_out.weight");
        w->lnf_w = layer_ptr(m, "decoder.final_layer_norm.weight");
        w->lnf_b = layer_ptr(m, "decoder.final_layer_norm.bias");
        for (int i = 0; i < c->n_layers; i++) {
            model_block *b = &w->blocks[i];
            b->ln1_w = layer_ptr(m, "decoder.layers.%d.self_attn_layer_norm.weight", i);
            b->ln1_b = layer_ptr(m, "decoder.layers.%d.self_attn_layer_norm.bias", i);
            b->wqkv[0] = layer_ptr(m, "decoder.layers.%d.self_attn.q_proj.weight", i);
            b->wqkv[1] = layer_ptr(m, "decoder.layers.%d.self_attn.k_proj.weight", i);
            b->wqkv[2] = layer_ptr(m, "decoder.layers.%d.self_attn.v_proj.weight", i);
            b->bqkv[0] = layer_ptr(m, "decoder.layers.%d.self_attn.q_proj.bias", i);
            b->bqkv[1] = layer_ptr(m, "decoder.layers.%d.self_attn.k_proj.bias", i);
            b->bqkv[2] = layer_ptr(m, "decoder.layers.%d.self_attn.v_proj.bias", i);
            b->wo = layer_ptr(m, "decoder.layers.%d.self_attn.out_proj.weight", i);
            b->bo = layer_ptr(m, "decoder.layers.%d.self_attn.out_proj.bias", i);
            b->ln2_w = layer_ptr(m, "decoder.layers.%d.final_layer_norm.weight", i);
            b->ln2_b = layer_ptr(m, "decoder.layers.%d.final_layer_norm.bias", i);
            b->w1 = layer_ptr(m, "decoder.layers.%d.fc1.weight", i);
            b->b1 = layer_ptr(m, "decoder.layers.%d.fc1.bias", i);
            b->w2 = layer_ptr(m, "decoder.layers.%d.fc2.weight", i);
            b->b2 = layer_ptr(m, "decoder.layers.%d.fc2.bias", i);
        }
    } else if (c->family == MODEL_FAMILY_LLAMA) {
        w->wte = layer_ptr(m, "embed_tokens.weight");
        w->lnf_w = layer_ptr(m, "norm.weight");
        for (int i = 0; i < c->n_layers; i++) {
            model_block *b = &w->blocks[i];
            static const char *const proj[3] = {"q_proj", "k_proj", "v_proj"};
            b->ln1_w = layer_ptr(m, "layers.%d.input_layernorm.weight", i);
            for (int k = 0; k < 3; k++) {
                b->wqkv[k] = layer_ptr(m, "layers.%d.self_attn.%s.weight", i, proj[k]);
                b->bqkv[k] = layer_ptr(m, "layers.%d.self_attn.%s.bias", i, proj[k]);
            }
            b->wo = layer_ptr(m, "layers.%d.self_attn.o_proj.weight", i);
            b->ln2_w = layer_ptr(m, "layers.%d.post_attention_layernorm.weight", i);
            b->w1 = layer_ptr(m, "layers.%d.mlp.gate_proj.weight", i);
            b->w_up = layer_ptr(m, "layers.%d.mlp.up_proj.weight", i);
            b->w2 = layer_ptr(m, "layers.%d.mlp.down_proj.weight", i);
        }
        w->head = c->tied_head ? w->wte : layer_ptr(m, "lm_head.weight");
        return rope_tables(m, err);
    } else if (c->family == MODEL_FAMILY_ROBERTA) {
        w->wte = layer_ptr(m, "embeddings.word_embeddings.weight");
        w->wpe = layer_ptr(m, "embeddings.position_embeddings.weight");
        w->tte = layer_ptr(m, "embeddings.token_type_embeddings.weight");
        w->emb_ln_w = layer_ptr(m, "embeddings.LayerNorm.weight");
        w->emb_ln_b = layer_ptr(m, "embeddings.LayerNorm.bias");
        w->mlm_dense_w = layer_ptr(m, "lm_head.dense.weight");
        w->mlm_dense_b = layer_ptr(m, "lm_head.dense.bias");
        w->mlm_ln_w = layer_ptr(m, "lm_head.layer_norm.weight");
        w->mlm_ln_b = layer_ptr(m, "lm_head.layer_norm.bias");
        w->head_bias = layer_ptr(m, "lm_head.bias");
        for (int i = 0; i < c->n_layers; i++) {
            model_block *b = &w->blocks[i];
            static const char *const qkv[3] = {"query", "key", "value"};
            for (int k = 0; k < 3; k++) {
                b->wqkv[k] = layer_ptr(m, "encoder.layer.%d.attention.self.%s.weight", i, qkv[k]);
                b->bqkv[k] = layer_ptr(m, "encoder.layer.%d.attention.self.%s.bias", i, qkv[k]);
            }
            b->wo = layer_ptr(m, "encoder.layer.%d.attention.output.dense.weight", i);
            b->bo = layer_ptr(m, "encoder.layer.%d.attention.output.dense.bias", i);
            /* post-LN: ln1 closes the attention sublayer, ln2 the FFN */
            b->ln1_w = layer_ptr(m, "encoder.layer.%d.attention.output.LayerNorm.weight", i);
            b->ln1_b = layer_ptr(m, "encoder.layer.%d.attention.output.LayerNorm.bias", i);
            b->w1 = layer_ptr(m, "encoder.layer.%d.intermediate.dense.weight", i);
            b->b1 = layer_ptr(m, "encoder.layer.%d.intermediate.dense.bias", i);
            b->w2 = layer_ptr(m, "encoder.layer.%d.output.dense.weight", i);
            b->b2 = layer_ptr(m, "encoder.layer.%d.output.dense.bias", i);
            b->ln2_w = layer_ptr(m, "encoder.layer.%d.output.LayerNorm.weight", i);
            b->ln2_b = layer_ptr(m, "encoder.layer.%d.output.LayerNorm.bias", i);
        }
        w->head = c->tied_head ? w->wte : layer_ptr(m, "lm_head.decoder.weight");
        return HL_OK;
    } else {
        w->wte = layer_ptr(m, "wte.weight");
        w->wpe = layer_ptr(m, "wpe.weight");
        w->lnf_w = layer_ptr(m, "ln_f.weight");
        w->lnf_b = layer_ptr(m, "ln_f.bias");
        for (int i = 0; i < c->n_layers; i++) {
            model_block *b = &w->blocks[i];
            b->ln1_w = layer_ptr(m, "h.%d.ln_1.weight", i);
            b->ln1_b = layer_ptr(m, "h.%d.ln_1.bias", i);
            float *wa = layer_ptr(m, "h.%d.attn.c_attn.weight", i);
            float *ba = layer_ptr(m, "h.%d.attn.c_attn.bias", i);
            for (int k = 0; k < 3; k++) {
                b->wqkv[k] = wa + (size_t)k * C * C;
                b->bqkv[k] = ba + (size_t)k * C;
            }
            b->wo = layer_ptr(m, "h.%d.attn.c_proj.weight", i);
            b->bo = layer_ptr(m, "h.%d.attn.c_proj.bias", i);
            b->ln2_w = layer_ptr(m, "h.%d.ln_2.weight", i);
            b->ln2_b = layer_ptr(m, "h.%d.ln_2.bias", i);
            b->w1 = layer_ptr(m, "h.%d.mlp.c_fc.weight", i);
            b->b1 = layer_ptr(m, "h.%d.mlp.c_fc.bias", i);
            b->w2 = layer_ptr(m, "h.%d.mlp.c_proj.weight", i);
            b->b2 = layer_ptr(m, "h.%d.mlp.c_proj.bias", i);
        }
    }
    w->head = c->tied_head ? w->wte : layer_ptr(m, "lm_head.weight");
    return HL_OK;
}

/* The layer table of cfg, nothing allocated yet. */
static hl_status model_declare(model *m, const model_config *cfg, hl_err *err)
{
    memset(m, 0, sizeof *m);
    m->cfg = *cfg;
    m->attn_sgemm_min_T = KERN_ATTENTION_SGEMM_MIN_T;
    param_set_init(&m->params);
    snprintf(m->storage_dtype, sizeof m->storage_dtype, "F32");
    hl_status st = declare_layers(&m->params, cfg, err);
    if (st)
        model_free(m);
    return st;
}

/* The declared model's arena, and the weight pointers into it. */
static hl_status model_allocate(model *m, hl_err *err)
{
    hl_status st;
    if ((st = param_set_alloc(&m->params, err)) || (st = bind_weights(m, err)))
        model_free(m);
    return st;
}

hl_status model_init_from_config(model *m, const model_config *cfg, hl_err *err)
{
    hl_status st = model_declare(m, cfg, err);
    return st ? st : model_allocate(m, err);
}

void model_set_pool(model *m, pool *p)
{
    m->pool = p;
}

static void acts_free(model_acts *a)
{
    free(a->x);
    free(a->xn);
    free(a->qkv);
    free(a->att);
    free(a->ffn);
    free(a->ffn2);
    free(a->emb);
    free(a->scores);
    free(a->hidden);
    free(a->pos);
    free(a->lora);
    memset(a, 0, sizeof *a);
}

void model_free(model *m)
{
    if (!m)
        return;
    acts_free(&m->acts);
    free(m->stage_x);
    free(m->rope_cos);
    free(m->rope_sin);
    model_peft_detach(m);
    free(m->w.blocks);
    param_set_free(&m->params);
    memset(m, 0, sizeof *m);
}

/* ---------------------------------------------------------- loading --- */

/* Drop the file pages of a converted tensor: they are clean, read-only and
 * never needed again, and keeping them would double peak memory. */
static void release_pages(const st_tensor *t)
{
    if (t->nbytes == 0)
        return;
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)t->data & ~(uintptr_t)(page - 1);
    uintptr_t e = (uintptr_t)t->data + (uintptr_t)t->nbytes;
    madvise((void *)a, e - a, MADV_DONTNEED);
}

/* Find a tensor under the prefixes this family's checkpoints use. */
static const st_tensor *find_tensor(const st_model *sm, const model_config *c, const char *name)
{
    static const char *const opt_prefixes[] = {"model.", "", NULL};
    static const char *const gpt2_prefixes[] = {"transformer.", "", NULL};
    static const char *const roberta_prefixes[] = {"roberta.", "", NULL};
    const char *const *pre = c->family == MODEL_FAMILY_OPT || c->family == MODEL_FAMILY_LLAMA
                                 ? opt_prefixes
                             : c->family == MODEL_FAMILY_GPT2 ? gpt2_prefixes
                                                              : roberta_prefixes;
    if (!strncmp(name, "lm_head.", 8))
        return st_model_find(sm, name);
    char full[PARAM_NAME_MAX + 32];
    for (; *pre; pre++) {
        snprintf(full, sizeof full, "%s%s", *pre, name);
        const st_tensor *t = st_model_find(sm, full);
        if (t)
            return t;
    }
    return NULL;
}

static bool is_gpt2_conv1d(const model_config *c, const char *name)
{
    if (c->family != MODEL_FAMILY_GPT2)
        return false;
    const char *dot = strrchr(name, '.');
    return dot && !strcmp(dot, ".weight") &&
           (strstr(name, ".c_attn.") || strstr(name, ".c_proj.") || strstr(name, ".c_fc."));
}

/* Tensors a checkpoint may carry that no weight uses: GPT-2's cached causal
 * masks, RoBERTa's position_ids buffer and the pooler of RobertaModel (not
 * part of the masked LM). */
static bool is_known_buffer(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcmp(dot, ".masked_bias") ||
                   (!strcmp(dot, ".bias") && strstr(name, ".attn.bias") &&
                    !strstr(name, "c_attn")) ||
                   !strcmp(name, "roberta.embeddings.position_ids") ||
                   !strcmp(name, "embeddings.position_ids") ||
                   !strncmp(name, "roberta.pooler.", 15) || !strncmp(name, "pooler.", 7) ||
                   !strcmp(dot, ".inv_freq"));
}

/* A tensor that repeats a weight of the model byte for byte (a tied head
 * saved twice: lm_head.weight, RoBERTa's lm_head.decoder.weight and .bias). */
static bool same_bytes(const st_tensor *a, const st_tensor *b)
{
    return a && b && a->dtype == b->dtype && a->nbytes == b->nbytes && a->ndim == b->ndim &&
           !memcmp(a->data, b->data, (size_t)a->nbytes);
}

/* The file's tensor for layer i, with the shape config.json implies (GPT-2's
 * Conv1D weights are stored transposed); else an error naming both. */
static hl_status layer_tensor(const model *m, const st_model *sm, int i, const st_tensor **out,
                              hl_err *err)
{
    const model_config *c = &m->cfg;
    const param_layer *l = &m->params.layers[i];
    const st_tensor *t = find_tensor(sm, c, l->name);
    if (!t && c->family == MODEL_FAMILY_ROBERTA && !strncmp(l->name, "lm_head.", 8))
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: missing tensor \"%s\": helene needs the masked-LM head of a "
                          "RobertaForMaskedLM checkpoint (a bare RobertaModel has none)",
                          m->path, l->name);
    if (!t)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: missing tensor \"%s\" (also tried prefix "
                          "\"%s\")", m->path, l->name,
                          c->family == MODEL_FAMILY_GPT2      ? "transformer."
                          : c->family == MODEL_FAMILY_ROBERTA ? "roberta."
                                                              : "model.");
    bool tr = is_gpt2_conv1d(c, l->name);
    bool ok = t->ndim == l->ndim;
    for (int d = 0; ok && d < l->ndim; d++) {
        int64_t want = tr ? l->shape[l->ndim - 1 - d] : l->shape[d];
        ok = t->shape[d] == want;
    }
    if (!ok) {
        char got[96] = "", want[96] = "";
        for (int d = 0; d < t->ndim && d < 4; d++)
            snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", d ? ", " : "",
                     (long long)t->shape[d]);
        for (int d = 0; d < l->ndim; d++)
            snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", d ? ", " : "",
                     (long long)(tr ? l->shape[l->ndim - 1 - d] : l->shape[d]));
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: tensor \"%s\" has shape [%s], config.json implies [%s]", t->path,
                          t->name, got, want);
    }
    *out = t;
    return HL_OK;
}

/* Before anything is allocated: every weight config.json implies is in the
 * file with its shape, the file holds no weight the config leaves out (a
 * smaller num_hidden_layers, enable_bias false with biases present, a tied
 * head with an lm_head: the model would differ from the file), and the
 * fp32 parameters fit in this machine's memory. */
static hl_status check_file(model *m, const st_model *sm, hl_err *err)
{
    const model_config *c = &m->cfg;
    hl_status st;
    for (int i = 0; i < m->params.n_layers; i++) {
        const st_tensor *t;
        if ((st = layer_tensor(m, sm, i, &t, err)))
            return st;
    }
    int32_t n_all = st_model_count(sm);
    for (int32_t k = 0; k < n_all; k++) {
        const st_tensor *t = st_model_tensor(sm, k);
        if (is_known_buffer(t->name))
            continue;
        bool taken = false;
        for (int i = 0; i < m->params.n_layers && !taken; i++)
            taken = find_tensor(sm, c, m->params.layers[i].name) == t;
        if (taken)
            continue;
        if (c->family == MODEL_FAMILY_ROBERTA && !strcmp(t->name, "lm_head.decoder.bias")) {
            /* HF ties the decoder's bias to lm_head.bias and may save both */
            if (same_bytes(t, st_model_find(sm, "lm_head.bias")))
                continue;
            return hl_err_set(err, HL_ERR_FORMAT,
                              "%s: \"lm_head.decoder.bias\" differs from \"lm_head.bias\", "
                              "which HF ties to it",
                              t->path);
        }
        if (c->tied_head && (strstr(t->name, "lm_head.weight") ||
                             strstr(t->name, "lm_head.decoder.weight"))) {
            /* a tied checkpoint may carry the head as a copy of the
             * embeddings (older conversions do): the same bytes are fine */
            if (same_bytes(t, find_tensor(sm, c, m->params.layers[0].name)))
                continue;
            return hl_err_set(err, HL_ERR_FORMAT,
                              "%s: config.json ties the output head to the embeddings "
                              "(tie_word_embeddings), but the file has its own \"%s\", "
                              "different from them",
                              t->path, t->name);
        }
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: the file has tensor \"%s\", which the model config.json "
                          "describes has no place for (num_hidden_layers %d, enable_bias, "
                          "layer_norm_elementwise_affine?): the model would not be the file's",
                          t->path, t->name, (int)c->n_layers);
    }
    size_t bytes = param_set_count(&m->params) * sizeof(float);
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0 && bytes / (size_t)page > (size_t)pages)
        return hl_err_set(err, HL_ERR_NOMEM,
                          "%s/config.json implies %.1f GiB of fp32 parameters; this machine has "
                          "%.1f GiB of memory",
                          m->path, (double)bytes / (1 << 30),
                          (double)pages * (double)page / (1 << 30));
    return HL_OK;
}

static hl_status load_weights(model *m, const st_model *sm, hl_err *err)
{
    const model_config *c = &m->cfg;
    int used = 0;
    unsigned dtypes = 0;
    for (int i = 0; i < m->params.n_layers; i++) {
        const param_layer *l = &m->params.layers[i];
        const st_tensor *t;
        hl_status lt = layer_tensor(m, sm, i, &t, err);
        if (lt)
            return lt;
        bool tr = is_gpt2_conv1d(c, l->name);
    float *dst = param_layer_data(&m->params, i);
        hl_status st = tr ? st_tensor_to_f32_transposed(t, dst, err) : st_tensor_to_f32(t, dst, err);
        if (st)
            return st;
        for (size_t k = 0; k < l->size; k++)
            if (!isfinite(dst[k]))
                return hl_err_set(err, HL_ERR_FORMAT,
                                  "%s: tensor \"%s\" has a non-finite value at index %zu", t->path,
                                  t->name, k);
        release_pages(t);
        dtypes |= 1u << t->dtype;
        used++;
    }
    /* Count what the file has that no weight took: cached masks are expected. */
    int32_t n_all = st_model_count(sm);
    int unused = 0;
    for (int32_t i = 0; i < n_all; i++) {
        const st_tensor *t = st_model_tensor(sm, i);
        if (is_known_buffer(t->name))
            continue;
        if (c->tied_head && (!strcmp(t->name, "lm_head.weight") ||
                             !strcmp(t->name, "lm_head.decoder.weight")))
            continue;
        if (!strcmp(t->name, "lm_head.decoder.bias"))
            continue;
        unused++;
    }
    m->n_unused_tensors = unused - used > 0 ? unused - used : 0;
    if (dtypes == (1u << ST_DTYPE_F32))
        snprintf(m->storage_dtype, sizeof m->storage_dtype, "F32");
    else if (dtypes == (1u << ST_DTYPE_F16))
        snprintf(m->storage_dtype, sizeof m->storage_dtype, "F16");
    else if (dtypes == (1u << ST_DTYPE_BF16))
        snprintf(m->storage_dtype, sizeof m->storage_dtype, "BF16");
    else
        snprintf(m->storage_dtype, sizeof m->storage_dtype, "mixed");
    return HL_OK;
}

hl_status model_load(model *m, const char *dir, hl_err *err)
{
    memset(m, 0, sizeof *m); /* model_free is safe after any failure */
    model_config cfg;
    hl_status st = model_config_load(&cfg, dir, err);
    if (st)
        return st;
    if ((st = model_declare(m, &cfg, err)))
        return st;
    snprintf(m->path, sizeof m->path, "%s", dir);
    st_model sm;
    if ((st = st_model_open(&sm, dir, err))) {
        model_free(m);
        return st;
    }
    /* the file must match the config before the config's arena is
     * allocated: a 200 KB file whose config says vocab 2,000,000 once made
     * helene info zero-fill 16 GB before refusing it */
    if (!(st = check_file(m, &sm, err)) && !(st = model_allocate(m, err)))
        st = load_weights(m, &sm, err);
    st_model_close(&sm);
    if (st)
        model_free(m);
    return st;
}

/* ---------------------------------------------------------- forward --- */

static hl_status acts_reserve(model *m, size_t n_tok, int max_T, hl_err *err)
{
    model_acts *a = &m->acts;
    int threads = pool_size(m->pool);
    const int rank = m->peft.kind == PEFT_LORA ? m->peft.rank : 0;
    const int n_prefix = m->peft.kind == PEFT_PREFIX ? m->peft.tokens : 0;
    if (n_tok <= a->cap_tokens && max_T <= a->cap_seq_len && threads == a->cap_threads &&
        rank == a->cap_rank && n_prefix == a->cap_prefix)
        return HL_OK;
    size_t cap = n_tok > a->cap_tokens ? n_tok : a->cap_tokens;
    int capT = max_T > a->cap_seq_len ? max_T : a->cap_seq_len;
    acts_free(a);
    const size_t C = (size_t)m->cfg.d_model, F = (size_t)m->cfg.d_ffn,
                 E = (size_t)m->cfg.d_embed;
    const size_t QD = (size_t)model_q_dim(&m->cfg), KVD = (size_t)model_kv_dim(&m->cfg);
    a->x = malloc(cap * C * sizeof(float));
    a->xn = malloc(cap * C * sizeof(float));
    a->qkv = malloc(cap * (QD + 2 * KVD) * sizeof(float));
    a->att = malloc(cap * QD * sizeof(float));
    a->ffn = malloc(cap * F * sizeof(float));
    a->ffn2 = m->cfg.gated_mlp ? malloc(cap * F * sizeof(float)) : NULL;
    a->emb = malloc(cap * E * sizeof(float));
    a->hidden = malloc(cap * E * sizeof(float));
    a->scores = malloc((size_t)threads *
                       kern_attention_scratch_ex(capT, model_head_dim(&m->cfg), n_prefix) *
                       sizeof(float));
    a->pos = malloc(cap * sizeof(int32_t));
    a->lora = rank ? malloc(cap * (size_t)rank * sizeof(float)) : NULL;
    if (!a->x || !a->xn || !a->qkv || !a->att || !a->ffn || !a->emb || !a->hidden ||
        !a->scores || !a->pos || (rank && !a->lora) || (m->cfg.gated_mlp && !a->ffn2)) {
        acts_free(a);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for activations of %zu tokens", cap);
    }
    a->cap_tokens = cap;
    a->cap_seq_len = capT;
    a->cap_threads = threads;
    a->cap_rank = rank;
    a->cap_prefix = n_prefix;
    return HL_OK;
}

typedef struct embed_job {
    model *m;
    const int32_t *tokens;
    size_t n;
} embed_job;

/* x[t] = (proj_in?) wte[token] + wpe[pos]: gather rows, add positions. */
static void embed_fn(void *arg, int tid, int nt)
{
    embed_job *j = arg;
    const model *m = j->m;
    const size_t C = (size_t)m->cfg.d_model, E = (size_t)m->cfg.d_embed;
    size_t r0, r1;
    pool_range(j->n, tid, nt, 1, &r0, &r1);
    float *dst = m->w.proj_in ? m->acts.emb : m->acts.x;
    for (size_t r = r0; r < r1; r++)
        memcpy(dst + r * E, m->w.wte + (size_t)j->tokens[r] * E, E * sizeof(float));
    if (m->w.proj_in)
        return; /* positions are added after the projection */
    if (!m->w.wpe)
        return; /* Llama: positions are rotations of q and k, in the blocks */
    for (size_t r = r0; r < r1; r++) /* RoBERTa: token type 0 for every token */
        model_add_position_row(m->acts.x + r * C, m->w.wpe + (size_t)m->acts.pos[r] * C, m->w.tte, C);
}

static void add_pos_fn(void *arg, int tid, int nt)
{
    embed_job *j = arg;
    const model *m = j->m;
    const size_t C = (size_t)m->cfg.d_model;
    size_t r0, r1;
    pool_range(j->n, tid, nt, 1, &r0, &r1);
    for (size_t r = r0; r < r1; r++) /* OPT-350m: after project_in */
        model_add_position_row(m->acts.x + r * C, m->w.wpe + (size_t)m->acts.pos[r] * C, NULL, C);
}

kern_act model_act_kernel(model_act a)
{
    switch (a) {
    case MODEL_ACT_RELU:
        return KERN_ACT_RELU;
    case MODEL_ACT_GELU_TANH:
        return KERN_ACT_GELU_TANH;
    case MODEL_ACT_GELU_ERF:
        return KERN_ACT_GELU_ERF;
    case MODEL_ACT_SILU:
        return KERN_ACT_SILU;
    }
    return KERN_ACT_NONE;
}

/* out[N, O] (leading dim ldo) += alpha/r · (in·Aᵀ)·Bᵀ: a LoRA site's
 * contribution, when the site is adapted. */
static void lora_add(model *m, const model_block *b, int site, float *out, size_t ldo,
                     const float *in, size_t ldi, size_t N, int O, int K)
{
    if (!b->lora_a[site])
        return;
    const int r = m->peft.rank;
    float *t = m->acts.lora;
    kern_par_linear(m->pool, t, (size_t)r, in, ldi, b->lora_a[site], (int)N, r, K, 0.0f);
    const float scale = m->peft.alpha / (float)r;
    for (size_t i = 0; i < N * (size_t)r; i++)
        t[i] *= scale;
    kern_par_linear(m->pool, out, ldo, t, (size_t)r, b->lora_b[site], (int)N, O, r, 1.0f);
}

/* Prefix init: this block's keys and values of the batch's tokens become
 * its prefix (the batch is exactly `tokens` tokens, see peft.c). */
static void capture_prefix(model *m, model_block *b, size_t N)
{
    const size_t QD = (size_t)model_q_dim(&m->cfg), KVD = (size_t)model_kv_dim(&m->cfg);
    const size_t ld = QD + 2 * KVD;
    for (size_t t = 0; t < N && t < (size_t)m->peft.tokens; t++) {
        memcpy(b->prefix_k + t * KVD, m->acts.qkv + t * ld + QD, KVD * sizeof(float));
        memcpy(b->prefix_v + t * KVD, m->acts.qkv + t * ld + QD + KVD, KVD * sizeof(float));
    }
}

/* acts.att = attention over acts.qkv, as the family has it: causal or
 * bidirectional, grouped-query heads (Llama), the block's prefix rows; a
 * prefix-init forward copies the block's keys and values instead and runs
 * without a prefix. */
static void block_attention(model *m, model_block *b, const model_batch *batch, size_t N,
                            int max_T)
{
    const model_config *c = &m->cfg;
    const int HD = model_head_dim(c);
    kern_attn_ext ext = {.bidirectional = c->bidirectional};
    if (c->family == MODEL_FAMILY_LLAMA) {
        ext.head_dim = HD;
        ext.n_kv_heads = c->n_kv_heads;
    }
    if (b->prefix_k && m->peft_capture)
        capture_prefix(m, b, N);
    else if (b->prefix_k) {
        ext.prefix_k = b->prefix_k;
        ext.prefix_v = b->prefix_v;
        ext.n_prefix = m->peft.tokens;
    }
    kern_par_attention_ex(m->pool, m->acts.att, m->acts.qkv, batch->seq_start, batch->n_seq,
                          c->d_model, c->n_heads, 1.0f / sqrtf((float)HD), m->acts.scores, max_T,
                          m->attn_sgemm_min_T, &ext);
}

/* A Llama block: x += o(attn(rope(q, k), v)) of RMSNorm(x), then
 * x += down(silu(gate(n)) * up(n)) of n = RMSNorm(x). */
static void llama_block_forward(model *m, model_block *b, const model_batch *batch, size_t N,
                                int max_T)
{
    const model_config *c = &m->cfg;
    model_acts *a = &m->acts;
    pool *p = m->pool;
    const int C = c->d_model, F = c->d_ffn, HD = model_head_dim(c);
    const int QD = model_q_dim(c), KVD = model_kv_dim(c);
    const size_t ld = (size_t)QD + 2 * (size_t)KVD;
    const int widths[3] = {QD, KVD, KVD}, cols[3] = {0, QD, QD + KVD};

    kern_par_rmsnorm(p, a->xn, a->x, b->ln1_w, N, C, c->ln_eps);
    for (int k = 0; k < 3; k++) {
        kern_par_linear(p, a->qkv + cols[k], ld, a->xn, (size_t)C, b->wqkv[k], (int)N,
                        widths[k], C, 0.0f);
        lora_add(m, b, PEFT_SITE_Q + k, a->qkv + cols[k], ld, a->xn, (size_t)C, N, widths[k], C);
        if (b->bqkv[k])
            kern_par_add_rows(p, a->qkv + cols[k], b->bqkv[k], N, widths[k], ld);
    }
    kern_par_rope(p, a->qkv, ld, N, 0, c->n_heads, HD, a->pos, m->rope_cos, m->rope_sin);
    kern_par_rope(p, a->qkv, ld, N, QD, c->n_kv_heads, HD, a->pos, m->rope_cos, m->rope_sin);
    block_attention(m, b, batch, N, max_T);
    kern_par_linear(p, a->x, (size_t)C, a->att, (size_t)QD, b->wo, (int)N, C, QD, 1.0f);
    lora_add(m, b, PEFT_SITE_O, a->x, (size_t)C, a->att, (size_t)QD, N, C, QD);

    kern_par_rmsnorm(p, a->xn, a->x, b->ln2_w, N, C, c->ln_eps);
    kern_par_linear(p, a->ffn, (size_t)F, a->xn, (size_t)C, b->w1, (int)N, F, C, 0.0f);
    lora_add(m, b, PEFT_SITE_FC1, a->ffn, (size_t)F, a->xn, (size_t)C, N, F, C);
    kern_par_linear(p, a->ffn2, (size_t)F, a->xn, (size_t)C, b->w_up, (int)N, F, C, 0.0f);
    kern_par_swiglu(p, a->ffn, a->ffn2, N * (size_t)F);
    kern_par_linear(p, a->x, (size_t)C, a->ffn, (size_t)F, b->w2, (int)N, C, F, 1.0f);
    lora_add(m, b, PEFT_SITE_FC2, a->x, (size_t)C, a->ffn, (size_t)F, N, C, F);
}

static void block_forward(model *m, model_block *b, const model_batch *batch, size_t N,
                          int max_T)
{
    if (m->cfg.family == MODEL_FAMILY_LLAMA) {
        llama_block_forward(m, b, batch, N, max_T);
        return;
    }
    const model_config *c = &m->cfg;
    model_acts *a = &m->acts;
    pool *p = m->pool;
    const int C = c->d_model, F = c->d_ffn;
    const size_t C3 = 3 * (size_t)C;

    /* attention sublayer */
    const float *in = a->x;
    if (c->pre_ln) {
        kern_par_layernorm(p, a->xn, a->x, b->ln1_w, b->ln1_b, N, C, c->ln_eps);
        in = a->xn;
    }
    for (int k = 0; k < 3; k++) {
        kern_par_linear(m->pool, a->qkv + (size_t)k * C, C3, in, (size_t)C, b->wqkv[k], (int)N, C, C, 0.0f);
        lora_add(m, b, PEFT_SITE_Q + k, a->qkv + (size_t)k * C, C3, in, (size_t)C, N, C, C);
    }
    if (b->bqkv[0]) {
        /* GPT-2's three biases are one contiguous [3C]; OPT's are separate. */
        if (b->bqkv[1] == b->bqkv[0] + C && b->bqkv[2] == b->bqkv[0] + 2 * C)
            kern_par_add_rows(p, a->qkv, b->bqkv[0], N, 3 * C, C3);
        else
            for (int k = 0; k < 3; k++)
                kern_par_add_rows(p, a->qkv + (size_t)k * C, b->bqkv[k], N, C, C3);
    }
    block_attention(m, b, batch, N, max_T);
    /* x += att · Wo^T + bo (residual folded into sgemm's beta) */
    if (b->bo)
        kern_par_add_rows(p, a->x, b->bo, N, C, (size_t)C);
    kern_par_linear(m->pool, a->x, (size_t)C, a->att, (size_t)C, b->wo, (int)N, C, C, 1.0f);
    lora_add(m, b, PEFT_SITE_O, a->x, (size_t)C, a->att, (size_t)C, N, C, C);
    if (!c->pre_ln)
        kern_par_layernorm(p, a->x, a->x, b->ln1_w, b->ln1_b, N, C, c->ln_eps);

    /* FFN sublayer */
    in = a->x;
    if (c->pre_ln) {
        kern_par_layernorm(p, a->xn, a->x, b->ln2_w, b->ln2_b, N, C, c->ln_eps);
        in = a->xn;
    }
    kern_par_linear(m->pool, a->ffn, (size_t)F, in, (size_t)C, b->w1, (int)N, F, C, 0.0f);
    lora_add(m, b, PEFT_SITE_FC1, a->ffn, (size_t)F, in, (size_t)C, N, F, C);
    kern_par_bias_act(p, a->ffn, b->b1, N, F, (size_t)F, model_act_kernel(c->act));
    if (b->b2)
        kern_par_add_rows(p, a->x, b->b2, N, C, (size_t)C);
    kern_par_linear(m->pool, a->x, (size_t)C, a->ffn, (size_t)F, b->w2, (int)N, C, F, 1.0f);
    lora_add(m, b, PEFT_SITE_FC2, a->x, (size_t)C, a->ffn, (size_t)F, N, C, F);
    if (!c->pre_ln)
        kern_par_layernorm(p, a->x, a->x, b->ln2_w, b->ln2_b, N, C, c->ln_eps);
}

int32_t model_stage_count(const model *m)
{
    return m->cfg.n_layers + 2;
}

int32_t model_layer_stage(const model *m, int32_t layer)
{
    const param_set *ps = model_trainable_const(m);
    if (layer < 0 || layer >= ps->n_layers)
        return 0;
    const param_layer *l = &ps->layers[layer];
    if (l->block >= 0)
        return l->block + 1;
    if (strstr(l->name, "project_out"))
        return m->cfg.n_layers + 1;
    /* outside the blocks: below them if declared before the first block */
    for (int32_t k = 0; k < layer; k++)
        if (ps->layers[k].block >= 0)
            return m->cfg.n_layers + 1;
    return 0;
}

/* Keep the residual stream (the input of the next stage) for a later start. */
static hl_status stage_save(model *m, int32_t stage, size_t N, hl_err *err)
{
    const size_t C = (size_t)m->cfg.d_model;
    if (N > m->stage_cap || !m->stage_x) {
        float *x = realloc(m->stage_x, (N ? N : 1) * C * sizeof(float));
        if (!x)
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the saved activations of "
                              "%zu tokens", N);
        m->stage_x = x;
        m->stage_cap = N ? N : 1;
    }
    memcpy(m->stage_x, m->acts.x, N * C * sizeof(float));
    m->stage_saved = stage;
    m->stage_n = N;
    return HL_OK;
}

hl_status model_batch_check(const model_config *c, const model_batch *batch, int *max_T_out,
                            size_t *n_tokens, hl_err *err)
{
    if (batch->n_seq < 0 || batch->seq_start[0] != 0)
        return hl_err_set(err, HL_ERR_INVALID, "batch: seq_start[0] must be 0");
    int max_T = 1;
    for (int32_t b = 0; b < batch->n_seq; b++) {
        int32_t T = batch->seq_start[b + 1] - batch->seq_start[b];
        if (T < 0)
            return hl_err_set(err, HL_ERR_INVALID, "batch: sequence %d has negative length", b);
        if (T > c->max_pos)
            return hl_err_set(err, HL_ERR_INVALID,
                              "sequence %d has %d tokens; the model takes at most %d", b, T,
                              c->max_pos);
        if (T > max_T)
            max_T = T;
    }
    const size_t N = (size_t)batch->seq_start[batch->n_seq];
    for (size_t i = 0; i < N; i++)
        if (batch->tokens[i] < 0 || batch->tokens[i] >= c->vocab)
            return hl_err_set(err, HL_ERR_INVALID, "token id %d at position %zu is outside the "
                              "vocabulary (0..%d)", batch->tokens[i], i, c->vocab - 1);
    *max_T_out = max_T;
    *n_tokens = N;
    return HL_OK;
}

hl_status model_forward(model *m, const model_batch *batch, hl_err *err)
{
    return model_forward_staged(m, batch, 0, 0, err);
}

hl_status model_forward_staged(model *m, const model_batch *batch, int32_t save_stage,
                               int32_t start_stage, hl_err *err)
{
    const model_config *c = &m->cfg;
    const int32_t top = c->n_layers + 1;
    if (save_stage < 0 || save_stage > top || start_stage < 0 || start_stage > top)
        return hl_err_set(err, HL_ERR_INVALID, "forward stages %d/%d outside 0..%d",
                          (int)save_stage, (int)start_stage, (int)top);
    int max_T;
    size_t N;
    hl_status st = model_batch_check(c, batch, &max_T, &N, err);
    if (st)
        return st;
    if ((st = acts_reserve(m, N ? N : 1, max_T, err)))
        return st;
    model_acts *a = &m->acts;
    for (int32_t b = 0; b < batch->n_seq; b++)
        for (int32_t t = batch->seq_start[b]; t < batch->seq_start[b + 1]; t++)
            a->pos[t] = t - batch->seq_start[b] + c->pos_offset;
    if (N == 0)
        return HL_OK;

    const int C = c->d_model, E = c->d_embed;
    if (start_stage > 0) {
        if (m->stage_saved != start_stage || m->stage_n != N)
            return hl_err_set(err, HL_ERR_INVALID, "forward from stage %d: no saved input of "
                              "that stage for this batch", (int)start_stage);
        memcpy(a->x, m->stage_x, N * (size_t)C * sizeof(float));
    } else {
        m->stage_saved = 0;
        embed_job ej = {.m = m, .tokens = batch->tokens, .n = N};
        pool_run(m->pool, embed_fn, &ej);
        if (m->w.proj_in) {
            kern_par_linear(m->pool, a->x, (size_t)C, a->emb, (size_t)E, m->w.proj_in, (int)N, C, E, 0.0f);
            pool_run(m->pool, add_pos_fn, &ej);
        }
        if (m->w.emb_ln_w)
            kern_par_layernorm(m->pool, a->x, a->x, m->w.emb_ln_w, m->w.emb_ln_b, N, C,
                               c->ln_eps);
    }
    for (int l = start_stage > 0 ? start_stage - 1 : 0; l < c->n_layers; l++) {
        if (start_stage == 0 && save_stage == l + 1 && (st = stage_save(m, save_stage, N, err)))
            return st;
        block_forward(m, &m->w.blocks[l], batch, N, max_T);
    }
    if (start_stage == 0 && save_stage == top && (st = stage_save(m, save_stage, N, err)))
        return st;

    float *h = a->x;
    if (c->final_ln && c->rms_norm) {
        kern_par_rmsnorm(m->pool, a->xn, a->x, m->w.lnf_w, N, C, c->ln_eps);
        h = a->xn;
    } else if (c->final_ln) {
        kern_par_layernorm(m->pool, a->xn, a->x, m->w.lnf_w, m->w.lnf_b, N, C, c->ln_eps);
        h = a->xn;
    }
    if (m->w.proj_out)
        kern_par_linear(m->pool, a->hidden, (size_t)E, h, (size_t)C, m->w.proj_out, (int)N, E, C, 0.0f);
    else if (m->w.mlm_dense_w) {
        /* RobertaLMHead before the decoder: LayerNorm(gelu(dense(x))), with
         * the erf GELU whatever hidden_act says (HF calls gelu() there) */
        kern_par_linear(m->pool, a->hidden, (size_t)C, h, (size_t)C, m->w.mlm_dense_w, (int)N, C,
                        C, 0.0f);
        kern_par_bias_act(m->pool, a->hidden, m->w.mlm_dense_b, N, C, (size_t)C,
                          KERN_ACT_GELU_ERF);
        kern_par_layernorm(m->pool, a->hidden, a->hidden, m->w.mlm_ln_w, m->w.mlm_ln_b, N, C,
                           c->ln_eps);
    } else
        memcpy(a->hidden, h, N * (size_t)C * sizeof(float));
    return HL_OK;
}

/* ------------------------------------------------------------- heads --- */

void model_logits_rows(model *m, float *out, const int32_t *rows, size_t n_rows)
{
    const int E = m->cfg.d_embed, V = m->cfg.vocab;
    /* the bias first, folded into sgemm's beta */
    float beta = 0.0f;
    if (m->w.head_bias) {
        for (size_t r = 0; r < n_rows; r++)
            memcpy(out + r * (size_t)V, m->w.head_bias, (size_t)V * sizeof(float));
        beta = 1.0f;
    }
    if (!rows) {
        kern_par_linear(m->pool, out, (size_t)V, m->acts.hidden, (size_t)E, m->w.head, (int)n_rows, V, E, beta);
        return;
    }
    /* Gather the rows into the emb buffer (free after the forward). */
    for (size_t r = 0; r < n_rows; r++)
        memcpy(m->acts.emb + r * (size_t)E, m->acts.hidden + (size_t)rows[r] * E,
               (size_t)E * sizeof(float));
    kern_par_linear(m->pool, out, (size_t)V, m->acts.emb, (size_t)E, m->w.head, (int)n_rows, V, E, beta);
}

void model_logits_select(model *m, float *out, const int32_t *rows, size_t n_rows,
                         const int32_t *ids, size_t n_ids)
{
    const size_t E = (size_t)m->cfg.d_embed;
    for (size_t r = 0; r < n_rows; r++) {
        const float *h = m->acts.hidden + (size_t)(rows ? rows[r] : (int32_t)r) * E;
        for (size_t j = 0; j < n_ids; j++) {
            const float *w = m->w.head + (size_t)ids[j] * E;
            float s = 0.0f;
            for (size_t e = 0; e < E; e++)
                s += h[e] * w[e];
            out[r * n_ids + j] = m->w.head_bias ? s + m->w.head_bias[ids[j]] : s;
        }
    }
}

/* Add the NLL of n (row, target) pairs; logits is [n, V] scratch. */
static double nll_rows(model *m, float *logits, const int32_t *rows, const int32_t *targets,
                       size_t n)
{
    const size_t V = (size_t)m->cfg.vocab;
    model_logits_rows(m, logits, rows, n);
    double sum = 0;
    for (size_t r = 0; r < n; r++) {
        const float *l = logits + r * V;
        float mx;
        double z = kern_row_sumexp(l, V, &mx);
        sum += log(z) + (double)mx - (double)l[targets[r]];
    }
    return sum;
}

hl_status model_nll(model *m, double *out_sum_nll, size_t *out_count, const model_batch *batch,
                    int32_t first_pred, hl_err *err)
{
    if (first_pred < 1)
        return hl_err_set(err, HL_ERR_INVALID, "first predicted position must be >= 1");
    hl_status st = model_forward(m, batch, err);
    if (st)
        return st;
    enum { CHUNK = 32 };
    float *logits = malloc(CHUNK * (size_t)m->cfg.vocab * sizeof(float));
    if (!logits)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for logits");
    int32_t rows[CHUNK], targets[CHUNK];
    double sum = 0;
    size_t count = 0, n = 0;
    for (int32_t b = 0; b < batch->n_seq; b++) {
        int32_t s0 = batch->seq_start[b], s1 = batch->seq_start[b + 1];
        for (int32_t t = s0 + first_pred; t < s1; t++) {
            rows[n] = t - 1;
            targets[n] = batch->tokens[t];
            if (++n == CHUNK) {
                sum += nll_rows(m, logits, rows, targets, n);
                count += n;
                n = 0;
            }
        }
    }
    if (n) {
        sum += nll_rows(m, logits, rows, targets, n);
        count += n;
    }
    free(logits);
    *out_sum_nll = sum;
    *out_count = count;
    return HL_OK;
}

hl_status model_nll_at(model *m, double *out_sum_nll, const model_batch *batch,
                       const int32_t *rows, const int32_t *targets, size_t n, hl_err *err)
{
    hl_status st = model_forward(m, batch, err);
    if (st)
        return st;
    const size_t N = (size_t)batch->seq_start[batch->n_seq];
    for (size_t i = 0; i < n; i++)
        if (rows[i] < 0 || (size_t)rows[i] >= N || targets[i] < 0 ||
            targets[i] >= m->cfg.vocab)
            return hl_err_set(err, HL_ERR_INVALID, "scored pair %zu (row %d, token %d) is "
                              "outside the batch or the vocabulary", i, rows[i], targets[i]);
    enum { CHUNK = 32 };
    float *logits = malloc(CHUNK * (size_t)m->cfg.vocab * sizeof(float));
    if (!logits)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for logits");
    double sum = 0;
    for (size_t i = 0; i < n; i += CHUNK)
        sum += nll_rows(m, logits, rows + i, targets + i, n - i < CHUNK ? n - i : CHUNK);
    free(logits);
    *out_sum_nll = sum;
    return HL_OK;
}

double model_flops_body(const model_config *c, double n_tok, double seq_len)
{
    const double C = c->d_model, F = c->d_ffn, L = c->n_layers;
    const double QD = model_q_dim(c), KVD = model_kv_dim(c);
    /* per token per layer: q, k, v C·(QD + 2 KVD), out QD·C, the MLP 2CF (3CF
     * gated), each 2 flops per MAC; attention: q·k and p·v over on average
     * (T+1)/2 keys (causal), QD each. */
    double mm = 2.0 * (C * (QD + 2.0 * KVD) + QD * C + (c->gated_mlp ? 3.0 : 2.0) * C * F);
    double att = 2.0 * 2.0 * QD * (seq_len + 1.0) / 2.0;
    return L * n_tok * (mm + att);
}

/* ------------------------------------------------- Hugging Face weights --- */

hl_status model_save_hf_weights(const model *m, const char *path, st_dtype dt, bool prefixed,
                                const char *meta_key, const char *meta_value, hl_err *err)
{
    const param_set *ps = &m->params;
    const int L = ps->n_layers;
    st_write_tensor *ts = calloc((size_t)L, sizeof *ts);
    char(*names)[PARAM_NAME_MAX + 16] = calloc((size_t)L, sizeof *names);
    int64_t(*shapes)[2] = calloc((size_t)L, sizeof *shapes);
    hl_status st = HL_OK;
    if (!ts || !names || !shapes) {
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
        goto done;
    }
    const bool gpt2 = m->cfg.family == MODEL_FAMILY_GPT2;
    for (int i = 0; i < L; i++) {
        const param_layer *l = &ps->layers[i];
        const bool conv = gpt2 && l->ndim == 2 && !strncmp(l->name, "h.", 2);
        if (prefixed)
            snprintf(names[i], sizeof names[i], "%s%s",
                     !strcmp(l->name, "lm_head.weight") ? "" : gpt2 ? "transformer." : "model.",
                     l->name);
        else
            model_hf_tensor_name(&m->cfg, l->name, names[i], sizeof names[i]);
        /* GPT-2's Conv1D stores [in, out]: st_write transposes the arena's
         * [out, in] as it writes (no copy of the weights) */
        shapes[i][0] = conv ? l->shape[1] : l->shape[0];
        shapes[i][1] = conv ? l->shape[0] : l->shape[1];
        ts[i] = (st_write_tensor){.name = names[i], .dtype = dt,
                                  .src = conv ? ST_SRC_F32_T : ST_SRC_F32, .ndim = l->ndim,
                                  .shape = shapes[i], .data = param_layer_data(ps, i)};
    }
    const char *meta[4] = {"format", "pt", meta_key, meta_value};
    st = st_write(path, ts, L, meta, meta_key ? 2 : 1, err);
done:
    free(ts);
    free(names);
    free(shapes);
    return st;
}

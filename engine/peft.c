/* peft.c - PEFT specs (peft.h) and their application to a model (model.h:
 * model_peft_*): the adapter layers, their initialisation, and merging LoRA
 * back into the base weights. */
#include "peft.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "rng.h"

/* ------------------------------------------------------------- specs --- */

static const char *const site_names[PEFT_SITE_COUNT] = {"q", "k", "v", "o", "fc1", "fc2"};

const char *peft_site_name(peft_site site)
{
    return (unsigned)site < PEFT_SITE_COUNT ? site_names[site] : "?";
}

double peft_recommended_eps(peft_kind kind)
{
    return kind == PEFT_LORA ? 1e-2 : kind == PEFT_PREFIX ? 1e-1 : 0.0;
}

static hl_status parse_targets(uint32_t *out, const char *v, size_t n, hl_err *err)
{
    uint32_t mask = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && v[j] != '+')
            j++;
        int found = -1;
        for (int s = 0; s < PEFT_SITE_COUNT; s++)
            if (strlen(site_names[s]) == j - i && !memcmp(v + i, site_names[s], j - i))
                found = s;
        if (found < 0)
            return hl_err_set(err, HL_ERR_INVALID,
                              "--peft lora: unknown target \"%.*s\" (targets are q k v o fc1 "
                              "fc2 joined by +, e.g. targets=q+v)",
                              (int)(j - i), v + i);
        mask |= 1u << found;
        i = j + 1;
    }
    if (!mask)
        return hl_err_set(err, HL_ERR_INVALID, "--peft lora: targets is empty");
    *out = mask;
    return HL_OK;
}

static hl_status parse_number(double *out, const char *key, const char *v, size_t n, double lo,
                              double hi, bool integer, hl_err *err)
{
    char buf[64];
    if (n == 0 || n >= sizeof buf)
        return hl_err_set(err, HL_ERR_INVALID, "--peft: %s needs a value", key);
    memcpy(buf, v, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (*end || errno || !(d >= lo && d <= hi) || (integer && d != floor(d)))
        return hl_err_set(err, HL_ERR_INVALID, "--peft: %s=%s must be %s in %g..%g", key, buf,
                          integer ? "an integer" : "a number", lo, hi);
    *out = d;
    return HL_OK;
}

hl_status peft_parse(peft_spec *s, const char *text, hl_err *err)
{
    peft_spec r = {.kind = PEFT_NONE};
    if (!text || !text[0] || !strcmp(text, "none")) {
        *s = r;
        return HL_OK;
    }
    const char *colon = strchr(text, ':');
    size_t kl = colon ? (size_t)(colon - text) : strlen(text);
    if (kl == 4 && !memcmp(text, "lora", 4))
        r = (peft_spec){.kind = PEFT_LORA, .rank = 8, .alpha = 16.0f,
                        .targets = 1u << PEFT_SITE_Q | 1u << PEFT_SITE_V};
    else if (kl == 6 && !memcmp(text, "prefix", 6))
        r = (peft_spec){.kind = PEFT_PREFIX, .tokens = 5};
    else
        return hl_err_set(err, HL_ERR_INVALID,
                          "--peft \"%.60s\": expected none, lora[:r=8,alpha=16,targets=q+v] or "
                          "prefix[:tokens=5]",
                          text);
    const char *p = colon ? colon + 1 : text + kl;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', n);
        if (!eq)
            return hl_err_set(err, HL_ERR_INVALID, "--peft: \"%.*s\" is not KEY=VALUE", (int)n, p);
        size_t klen = (size_t)(eq - p), vlen = n - klen - 1;
        const char *v = eq + 1;
        double d;
        hl_status st = HL_OK;
#define KEY_IS(k) (klen == strlen(k) && !memcmp(p, k, klen))
        if (r.kind == PEFT_LORA && (KEY_IS("r") || KEY_IS("rank"))) {
            if (!(st = parse_number(&d, "r", v, vlen, 1, 4096, true, err)))
                r.rank = (int32_t)d;
        } else if (r.kind == PEFT_LORA && KEY_IS("alpha")) {
            if (!(st = parse_number(&d, "alpha", v, vlen, 1e-6, 1e6, false, err)))
                r.alpha = (float)d;
        } else if (r.kind == PEFT_LORA && KEY_IS("targets")) {
            st = parse_targets(&r.targets, v, vlen, err);
        } else if (r.kind == PEFT_PREFIX && KEY_IS("tokens")) {
            if (!(st = parse_number(&d, "tokens", v, vlen, 1, 1024, true, err)))
                r.tokens = (int32_t)d;
        } else
            return hl_err_set(err, HL_ERR_INVALID,
                              "--peft %s: unknown key \"%.*s\" (%s)",
                              r.kind == PEFT_LORA ? "lora" : "prefix", (int)klen, p,
                              r.kind == PEFT_LORA ? "r, alpha, targets" : "tokens");
#undef KEY_IS
        if (st)
            return st;
        p += n;
        if (*p == ',' && !*++p)
            return hl_err_set(err, HL_ERR_INVALID, "--peft: a KEY=VALUE must follow the last "
                              "comma");
    }
    *s = r;
    return HL_OK;
}

void peft_format(const peft_spec *s, char *out, size_t cap)
{
    if (s->kind == PEFT_LORA) {
        char t[48] = "";
        for (int i = 0; i < PEFT_SITE_COUNT; i++)
            if (s->targets & (1u << i))
                snprintf(t + strlen(t), sizeof t - strlen(t), "%s%s", t[0] ? "+" : "",
                         site_names[i]);
        snprintf(out, cap, "lora:r=%d,alpha=%.9g,targets=%s", (int)s->rank, (double)s->alpha, t);
    } else if (s->kind == PEFT_PREFIX)
        snprintf(out, cap, "prefix:tokens=%d", (int)s->tokens);
    else
        snprintf(out, cap, "none");
}

/* ---------------------------------------------------- model adapters --- */

/* The base weight a LoRA site adapts in block i (name without ".weight"),
 * its [out, in] shape, and its arena pointer.  GPT-2's q, k and v are row
 * ranges of the fused c_attn; they get names of their own. */
static void site_base(const model *m, int32_t i, peft_site s, char *name, size_t cap,
                      int64_t *out_dim, int64_t *in_dim, float **w)
{
    const model_config *c = &m->cfg;
    const model_block *b = &m->w.blocks[i];
    static const char *const opt[PEFT_SITE_COUNT] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj",
        "fc1", "fc2"};
    static const char *const gpt2[PEFT_SITE_COUNT] = {"attn.c_attn.q", "attn.c_attn.k",
                                                      "attn.c_attn.v", "attn.c_proj",
                                                      "mlp.c_fc", "mlp.c_proj"};
    /* Llama: fc1 is gate_proj (up_proj is not adapted), fc2 down_proj */
    static const char *const llama[PEFT_SITE_COUNT] = {
        "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
        "mlp.gate_proj", "mlp.down_proj"};
    static const char *const rob[PEFT_SITE_COUNT] = {
        "attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense", "intermediate.dense", "output.dense"};
    if (c->family == MODEL_FAMILY_OPT)
        snprintf(name, cap, "decoder.layers.%d.%s", (int)i, opt[s]);
    else if (c->family == MODEL_FAMILY_GPT2)
        snprintf(name, cap, "h.%d.%s", (int)i, gpt2[s]);
    else if (c->family == MODEL_FAMILY_LLAMA)
        snprintf(name, cap, "layers.%d.%s", (int)i, llama[s]);
    else
        snprintf(name, cap, "encoder.layer.%d.%s", (int)i, rob[s]);
    const int64_t C = c->d_model, F = c->d_ffn, QD = model_q_dim(c), KVD = model_kv_dim(c);
    const int64_t outs[PEFT_SITE_COUNT] = {QD, KVD, KVD, C, F, C};
    const int64_t ins[PEFT_SITE_COUNT] = {C, C, C, QD, C, F};
    *out_dim = outs[s];
    *in_dim = ins[s];
    float *const ws[PEFT_SITE_COUNT] = {b->wqkv[0], b->wqkv[1], b->wqkv[2], b->wo, b->w1, b->w2};
    *w = ws[s];
}

static hl_status declare(model *m, const peft_spec *s, hl_err *err)
{
    param_set *ps = &m->peft_params;
    const int64_t KVD = model_kv_dim(&m->cfg); /* a prefix row is one token's keys */
    hl_status st = HL_OK;
    char base[PARAM_NAME_MAX - 32], n[PARAM_NAME_MAX];
    for (int32_t i = 0; i < m->cfg.n_layers && !st; i++) {
        if (s->kind == PEFT_PREFIX) {
            int64_t sh[2] = {s->tokens, KVD};
            snprintf(n, sizeof n, "prefix.%d.key", (int)i);
            if ((st = param_set_add(ps, n, 2, sh, false, i, err)))
                break;
            snprintf(n, sizeof n, "prefix.%d.value", (int)i);
            st = param_set_add(ps, n, 2, sh, false, i, err);
            continue;
        }
        for (int k = 0; k < PEFT_SITE_COUNT && !st; k++) {
            if (!(s->targets & (1u << k)))
                continue;
            int64_t o, in;
            float *w;
            site_base(m, i, (peft_site)k, base, sizeof base, &o, &in, &w);
            int64_t sa[2] = {s->rank, in}, sb[2] = {o, s->rank};
            snprintf(n, sizeof n, "%s.lora_A.weight", base);
            if ((st = param_set_add(ps, n, 2, sa, false, i, err)))
                break;
            snprintf(n, sizeof n, "%s.lora_B.weight", base);
            st = param_set_add(ps, n, 2, sb, false, i, err);
        }
    }
    return st;
}

static void bind(model *m)
{
    const param_set *ps = &m->peft_params;
    int at = 0;
    for (int32_t i = 0; i < m->cfg.n_layers; i++) {
        model_block *b = &m->w.blocks[i];
        if (m->peft.kind == PEFT_PREFIX) {
            b->prefix_k = param_layer_data(ps, at++);
            b->prefix_v = param_layer_data(ps, at++);
            continue;
        }
        for (int k = 0; k < PEFT_SITE_COUNT; k++)
            if (m->peft.targets & (1u << k)) {
                b->lora_a[k] = param_layer_data(ps, at++);
                b->lora_b[k] = param_layer_data(ps, at++);
            }
    }
}

/* A ~ U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform_ with a = sqrt(5)), B = 0. */
static void init_lora(model *m, uint64_t seed)
{
    param_set *ps = &m->peft_params;
    uint64_t state = seed ^ 0x4c6f5241ull; /* "LoRA" */
    for (int l = 0; l < ps->n_layers; l++) {
        const param_layer *pl = &ps->layers[l];
        float *d = param_layer_data(ps, l);
        if (strstr(pl->name, ".lora_B.")) {
            memset(d, 0, pl->size * sizeof *d);
            continue;
        }
        double bound = 1.0 / sqrt((double)pl->shape[1]);
        for (size_t k = 0; k < pl->size; k++) {
            double u = (double)(rng_splitmix64(&state) >> 11) * 0x1p-53;
            d[k] = (float)((2.0 * u - 1.0) * bound);
        }
    }
}

/* MeZO's init by real activations: the keys and values that `tokens`
 * random token ids produce in each block become the prefix. */
static hl_status init_prefix(model *m, uint64_t seed, hl_err *err)
{
    const int32_t n = m->peft.tokens;
    if (n > m->cfg.max_pos)
        return hl_err_set(err, HL_ERR_INVALID, "--peft prefix: %d tokens exceed the model's "
                          "context of %d", (int)n, (int)m->cfg.max_pos);
    int32_t *tok = malloc((size_t)n * sizeof *tok);
    if (!tok)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    uint64_t state = seed ^ 0x50726566ull; /* "Pref" */
    for (int32_t i = 0; i < n; i++)
        tok[i] = (int32_t)(rng_splitmix64(&state) % (uint64_t)m->cfg.vocab);
    int32_t starts[2] = {0, n};
    model_batch b = {.tokens = tok, .seq_start = starts, .n_seq = 1};
    m->peft_capture = true; /* block_forward copies k, v; the prefix is off */
    hl_status st = model_forward(m, &b, err);
    m->peft_capture = false;
    free(tok);
    return st;
}

hl_status model_peft_attach(model *m, const peft_spec *s, uint64_t seed, hl_err *err)
{
    if (m->peft.kind != PEFT_NONE)
        return hl_err_set(err, HL_ERR_INVALID, "the model already has adapters");
    if (s->kind == PEFT_NONE)
        return HL_OK;
    if (s->kind == PEFT_LORA && (s->rank < 1 || !(s->alpha > 0) || !s->targets))
        return hl_err_set(err, HL_ERR_INVALID, "--peft lora: r, alpha and targets must be set");
    if (s->kind == PEFT_PREFIX && s->tokens < 1)
        return hl_err_set(err, HL_ERR_INVALID, "--peft prefix: tokens must be >= 1");
    param_set_init(&m->peft_params);
    hl_status st = declare(m, s, err);
    if (!st)
        st = param_set_alloc(&m->peft_params, err);
    if (st) {
        param_set_free(&m->peft_params);
        return st;
    }
    m->peft = *s;
    bind(m);
    if (s->kind == PEFT_LORA)
        init_lora(m, seed);
    else if ((st = init_prefix(m, seed, err)))
        model_peft_detach(m);
    return st;
}

void model_peft_detach(model *m)
{
    if (m->peft.kind == PEFT_NONE)
        return;
    for (int32_t i = 0; i < m->cfg.n_layers; i++) {
        model_block *b = &m->w.blocks[i];
        memset(b->lora_a, 0, sizeof b->lora_a);
        memset(b->lora_b, 0, sizeof b->lora_b);
        b->prefix_k = b->prefix_v = NULL;
    }
    param_set_free(&m->peft_params);
    memset(&m->peft, 0, sizeof m->peft);
}

param_set *model_trainable(model *m)
{
    return m->peft.kind != PEFT_NONE ? &m->peft_params : &m->params;
}

const param_set *model_trainable_const(const model *m)
{
    return m->peft.kind != PEFT_NONE ? &m->peft_params : &m->params;
}

hl_status model_peft_merge(model *m, hl_err *err)
{
    if (m->peft.kind == PEFT_PREFIX)
        return hl_err_set(err, HL_ERR_INVALID,
                          "prefix tuning has no weights to merge into: a plain model cannot hold "
                          "it (export the adapter instead)");
    if (m->peft.kind != PEFT_LORA)
        return HL_OK;
    const float scale = m->peft.alpha / (float)m->peft.rank;
    const int64_t r = m->peft.rank;
    for (int32_t i = 0; i < m->cfg.n_layers; i++)
        for (int k = 0; k < PEFT_SITE_COUNT; k++) {
            const model_block *b = &m->w.blocks[i];
            if (!b->lora_a[k])
                continue;
            char base[PARAM_NAME_MAX];
            int64_t o, in;
            float *w;
            site_base(m, i, (peft_site)k, base, sizeof base, &o, &in, &w);
            /* W[o, in] += scale · Σ_r B[o, r] A[r, in], summed in double */
            for (int64_t y = 0; y < o; y++)
                for (int64_t x = 0; x < in; x++) {
                    double s = 0;
                    for (int64_t q = 0; q < r; q++)
                        s += (double)b->lora_b[k][y * r + q] * b->lora_a[k][q * in + x];
                    w[y * in + x] += (float)(scale * s);
                }
        }
    model_peft_detach(m);
    return HL_OK;
}

void model_peft_site_base(const model *m, int32_t block, int site, char *name, size_t cap)
{
    int64_t o, in;
    float *w;
    site_base(m, block, (peft_site)site, name, cap, &o, &in, &w);
}

hl_status model_peft_attach_text(model *m, const char *spec, const char *want_hash,
                                 uint64_t seed, char *hash_out, size_t hash_cap, hl_err *err)
{
    peft_spec ps;
    hl_status st = peft_parse(&ps, spec, err);
    if (st || ps.kind == PEFT_NONE)
        return st;
    char hash[24];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)param_set_hash(&m->params));
    if (want_hash && want_hash[0] && strcmp(want_hash, hash) != 0)
        return hl_err_set(err, HL_ERR_INVALID,
                          "the adapters were trained on other base weights (hash %s) than "
                          "those in %s (hash %s)",
                          want_hash, m->path, hash);
    if (hash_out)
        snprintf(hash_out, hash_cap, "%s", hash);
    return model_peft_attach(m, &ps, seed, err);
}

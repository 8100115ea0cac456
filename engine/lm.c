/* lm.c - see lm.h. */
#include "lm.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rng.h"

void lm_set_blas_threads(int n)
{
    openblas_set_num_threads(n);
}

bool lm_bundled_path(char *out, size_t cap, const char *rel)
{
    if (!out || cap == 0)
        return false;
    const char *dirs[3] = {getenv("HELENE_DATA_DIR"), HELENE_SRCDATADIR, HELENE_DATADIR};
    for (int i = 0; i < 3; i++) {
        if (!dirs[i] || !dirs[i][0])
            continue;
        snprintf(out, cap, "%s/%s", dirs[i], rel);
        if (access(out, R_OK) == 0)
            return true;
    }
    return false;
}

/* GPT-2's initialisation: N(0, 0.02) for matrices, 1 for norm weights, 0
 * for biases; seeded, so "random:" models are the same everywhere. */
static void init_random(model *m, uint64_t seed)
{
    uint64_t s = seed;
    for (int i = 0; i < m->params.n_layers; i++) {
        const param_layer *pl = &m->params.layers[i];
        float *p = param_layer_data(&m->params, i);
        bool norm = pl->ndim == 1 && (strstr(pl->name, "ln_") || strstr(pl->name, "norm"));
        bool weight = strstr(pl->name, ".weight") != NULL;
        for (size_t k = 0; k < pl->size; k += 2) {
            double u1 = ((double)(rng_splitmix64(&s) >> 11) + 0.5) / 9007199254740992.0;
            double u2 = (double)(rng_splitmix64(&s) >> 11) / 9007199254740992.0;
            double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
            float z0 = (float)(r * cos(a)), z1 = (float)(r * sin(a));
            for (int j = 0; j < 2 && k + (size_t)j < pl->size; j++) {
                float z = j ? z1 : z0;
                p[k + (size_t)j] = pl->ndim > 1 ? 0.02f * z : (norm && weight ? 1.0f : 0.0f);
            }
        }
    }
}

/* "random:NAME": an untrained GPT-2-architecture model with the bundled
 * GPT-2 tokenizer, for the workbench's default until a pretrained bundled
 * model exists.  NAME: tiny (2 x 64), small (4 x 128). */
static hl_status open_random(lm *l, const char *spec, hl_err *err)
{
    const char *name = spec + strlen(LM_RANDOM_PREFIX);
    model_config c;
    memset(&c, 0, sizeof c);
    c.family = MODEL_FAMILY_GPT2;
    if (!strcmp(name, "tiny")) {
        c.n_layers = 2;
        c.d_model = 64;
        c.n_heads = 4;
    } else if (!strcmp(name, "small") || !name[0]) {
        c.n_layers = 4;
        c.d_model = 128;
        c.n_heads = 4;
    } else
        return hl_err_set(err, HL_ERR_INVALID, "%s: unknown random model (random:tiny or "
                          "random:small)", spec);
    c.d_ffn = 4 * c.d_model;
    c.d_embed = c.d_model;
    c.vocab = 50257;
    c.max_pos = 512;
    c.pre_ln = c.final_ln = c.ln_affine = c.bias = c.tied_head = true;
    c.ln_eps = 1e-5f;
    c.act = MODEL_ACT_GELU_TANH;
    c.bos_id = c.eos_id = 50256;
    c.pad_id = -1;
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "float32");
    char vocab[4200], merges[4200];
    if (!lm_bundled_path(vocab, sizeof vocab, "gpt2/vocab.json") ||
        !lm_bundled_path(merges, sizeof merges, "gpt2/merges.txt"))
        return hl_err_set(err, HL_ERR_IO, "the bundled GPT-2 vocabulary (gpt2/vocab.json, "
                          "merges.txt) is not installed; set HELENE_DATA_DIR");
    hl_status st = model_init_from_config(&l->model, &c, err);
    if (st)
        return st;
    init_random(&l->model, 0x48454c454e45ull); /* "HELENE" */
    snprintf(l->model.path, sizeof l->model.path, "%s", spec);
    if ((st = bpe_load(&l->tok, vocab, merges, err))) {
        model_free(&l->model);
        return st;
    }
    return HL_OK;
}

hl_status lm_open(lm *l, const char *dir, int n_threads, hl_err *err)
{
    memset(l, 0, sizeof *l);
    hl_status st = pool_init(&l->pool, n_threads, err);
    if (st)
        return st;
    l->n_threads = n_threads;
    lm_set_blas_threads(1); /* the pool splits every sgemm itself */
    if (!strncmp(dir, LM_RANDOM_PREFIX, strlen(LM_RANDOM_PREFIX))) {
        if ((st = open_random(l, dir, err))) {
            pool_free(&l->pool);
            return st;
        }
        model_set_pool(&l->model, &l->pool);
        return HL_OK;
    }
    char vocab[4200], merges[4200];
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        st = hl_err_set(err, HL_ERR_IO, "%s: %s", dir,
                        stat(dir, &sb) != 0 ? "no such model folder" : "not a folder");
        pool_free(&l->pool);
        return st;
    }
    char tj[4200];
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    snprintf(merges, sizeof merges, "%s/merges.txt", dir);
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    bool pair = access(vocab, F_OK) == 0 && access(merges, F_OK) == 0;
    if (!pair && access(tj, F_OK) != 0) {
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: no tokenizer (vocab.json + merges.txt, or tokenizer.json)", dir);
        pool_free(&l->pool);
        return st;
    }
    if ((st = model_load(&l->model, dir, err))) {
        pool_free(&l->pool);
        return st;
    }
    if ((st = pair ? bpe_load(&l->tok, vocab, merges, err)
                   : bpe_load_tokenizer_json(&l->tok, tj, err))) {
        model_free(&l->model);
        pool_free(&l->pool);
        return st;
    }
    model_config *mc = &l->model.cfg;
    if (!pair && !mc->add_bos_known && l->tok.prepend_id >= 0) {
        mc->add_bos = true; /* tokenizer.json's post-processor prepends it */
        mc->bos_id = l->tok.prepend_id;
    }
    if (bpe_vocab_size(&l->tok) > l->model.cfg.vocab) {
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: the tokenizer has %d tokens but the model's vocab_size is %d",
                        pair ? vocab : tj,
                        bpe_vocab_size(&l->tok), l->model.cfg.vocab);
        lm_close(l);
        return st;
    }
    if (model_is_masked_lm(&l->model.cfg) &&
        (l->tok.id_mask < 0 || l->tok.id_s < 0 || l->tok.id_slash_s < 0)) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: a masked LM's vocabulary needs <s>, </s> and "
                        "<mask>", vocab);
        lm_close(l);
        return st;
    }
    model_set_pool(&l->model, &l->pool);
    return HL_OK;
}

void lm_close(lm *l)
{
    bpe_free(&l->tok);
    model_free(&l->model);
    pool_free(&l->pool);
    memset(l, 0, sizeof *l);
}

hl_status lm_encode(const lm *l, const char *text, size_t len, int32_t **ids, size_t *n,
                    hl_err *err)
{
    int32_t *raw = NULL;
    size_t nraw = 0;
    hl_status st = bpe_encode_alloc(&l->tok, text, len, &raw, &nraw, err);
    if (st)
        return st;
    const model_config *c = &l->model.cfg;
    const bool masked = model_is_masked_lm(c);
    if (!c->add_bos && !masked) {
        *ids = raw;
        *n = nraw;
        return HL_OK;
    }
    int32_t *out = malloc((nraw + 2) * sizeof *out);
    if (!out) {
        free(raw);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    }
    /* OPT: BOS + text; RoBERTa: <s> + text + </s> */
    out[0] = masked ? l->tok.id_s : c->bos_id;
    if (nraw)
        memcpy(out + 1, raw, nraw * sizeof *out);
    if (masked)
        out[nraw + 1] = l->tok.id_slash_s;
    free(raw);
    *ids = out;
    *n = nraw + 1 + (masked ? 1 : 0);
    return HL_OK;
}

/* A masked LM's pseudo-log-likelihood (Salazar et al., 2020): each text token
 * is replaced by <mask> in turn and predicted from the rest of its window,
 * <s> + up to max_pos - 2 text tokens + </s>; long texts are cut into
 * consecutive windows.  One sequence per masked token, 16 to a forward. */
static hl_status score_masked(lm *l, double *out_nll, size_t *out_tokens, const int32_t *raw,
                              size_t nraw, hl_err *err)
{
    const model_config *c = &l->model.cfg;
    const size_t W = (size_t)c->max_pos;
    if (W < 3)
        return hl_err_set(err, HL_ERR_INVALID, "context of %zu tokens is too short to score", W);
    enum { MAX_SEQ = 16 };
    int32_t *buf = malloc(MAX_SEQ * W * sizeof *buf);
    if (!buf)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    int32_t starts[MAX_SEQ + 1], rows[MAX_SEQ], targets[MAX_SEQ];
    double sum = 0;
    size_t count = 0;
    hl_status st = HL_OK;
    for (size_t w0 = 0; w0 < nraw && !st; w0 += W - 2) {
        size_t wn = nraw - w0 < W - 2 ? nraw - w0 : W - 2;
        for (size_t k0 = 0; k0 < wn && !st; k0 += MAX_SEQ) {
            int nseq = 0;
            size_t used = 0;
            starts[0] = 0;
            for (size_t k = k0; k < wn && nseq < MAX_SEQ; k++, nseq++) {
                int32_t *s = buf + used;
                s[0] = l->tok.id_s;
                memcpy(s + 1, raw + w0, wn * sizeof *s);
                s[wn + 1] = l->tok.id_slash_s;
                s[k + 1] = l->tok.id_mask;
                rows[nseq] = (int32_t)(used + k + 1);
                targets[nseq] = raw[w0 + k];
                used += wn + 2;
                starts[nseq + 1] = (int32_t)used;
            }
            model_batch b = {.tokens = buf, .seq_start = starts, .n_seq = nseq};
            double s;
            if (!(st = model_nll_at(&l->model, &s, &b, rows, targets, (size_t)nseq, err))) {
                sum += s;
                count += (size_t)nseq;
            }
        }
    }
    free(buf);
    if (st)
        return st;
    *out_nll = count ? sum / (double)count : 0.0;
    *out_tokens = count;
    return HL_OK;
}

hl_status lm_score_text(lm *l, double *out_nll, size_t *out_tokens, const char *text, size_t len,
                        hl_err *err)
{
    int32_t *raw = NULL;
    size_t nraw = 0;
    hl_status st = bpe_encode_alloc(&l->tok, text, len, &raw, &nraw, err);
    if (st)
        return st;
    const model_config *c = &l->model.cfg;
    if (model_is_masked_lm(c)) {
        st = score_masked(l, out_nll, out_tokens, raw, nraw, err);
        free(raw);
        return st;
    }
    const size_t W = (size_t)c->max_pos;
    const int bos = c->add_bos ? 1 : 0;
    if (W < 2) {
        free(raw);
        return hl_err_set(err, HL_ERR_INVALID, "context of %zu tokens is too short to score", W);
    }
    /* Build windows.  Each window: [BOS] + context token (if any) + new
     * tokens; predicted positions start at first_pred = 1 always: with BOS
     * the first text token is predicted from BOS; without BOS the window
     * starts with the last token of the previous window (or the first
     * token of the text, which nobody predicts). */
    enum { MAX_SEQ = 16 };
    int32_t *buf = malloc(MAX_SEQ * W * sizeof *buf);
    if (!buf) {
        free(raw);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    }
    int32_t starts[MAX_SEQ + 1];
    double sum = 0;
    size_t count = 0, next = 0; /* next text token to predict */
    if (!bos)
        next = 1;
    while (next < nraw) {
        int nseq = 0;
        size_t used = 0;
        starts[0] = 0;
        while (nseq < MAX_SEQ && next < nraw) {
            int32_t *w = buf + used;
            size_t k = 0;
            if (bos)
                w[k++] = c->bos_id;
            else
                w[k++] = raw[next - 1];
            while (k < W && next < nraw)
                w[k++] = raw[next++];
            used += k;
            starts[++nseq] = (int32_t)used;
        }
        model_batch b = {.tokens = buf, .seq_start = starts, .n_seq = nseq};
        double s;
        size_t cnt;
        if ((st = model_nll(&l->model, &s, &cnt, &b, 1, err)))
            break;
        sum += s;
        count += cnt;
    }
    free(buf);
    free(raw);
    if (st)
        return st;
    *out_nll = count ? sum / (double)count : 0.0;
    *out_tokens = count;
    return HL_OK;
}

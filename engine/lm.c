/* lm.c - see lm.h. */
#include "lm.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void lm_set_blas_threads(int n)
{
    openblas_set_num_threads(n);
}

hl_status lm_open(lm *l, const char *dir, int n_threads, hl_err *err)
{
    memset(l, 0, sizeof *l);
    hl_status st = pool_init(&l->pool, n_threads, err);
    if (st)
        return st;
    l->n_threads = n_threads;
    lm_set_blas_threads(1); /* the pool splits every sgemm itself */
    char vocab[4200], merges[4200];
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) {
        st = hl_err_set(err, HL_ERR_IO, "%s: %s", dir,
                        stat(dir, &sb) != 0 ? "no such model folder" : "not a folder");
        pool_free(&l->pool);
        return st;
    }
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    snprintf(merges, sizeof merges, "%s/merges.txt", dir);
    if (access(vocab, F_OK) != 0 || access(merges, F_OK) != 0) {
        char tj[4200];
        snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: no vocab.json + merges.txt tokenizer files%s", dir,
                        access(tj, F_OK) == 0 ? " (tokenizer.json alone is not supported yet)"
                                              : "");
        pool_free(&l->pool);
        return st;
    }
    if ((st = model_load(&l->model, dir, err))) {
        pool_free(&l->pool);
        return st;
    }
    if ((st = bpe_load(&l->tok, vocab, merges, err))) {
        model_free(&l->model);
        pool_free(&l->pool);
        return st;
    }
    if (bpe_vocab_size(&l->tok) > l->model.cfg.vocab) {
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: the tokenizer has %d tokens but the model's vocab_size is %d", vocab,
                        bpe_vocab_size(&l->tok), l->model.cfg.vocab);
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
    if (!c->add_bos) {
        *ids = raw;
        *n = nraw;
        return HL_OK;
    }
    int32_t *out = malloc((nraw + 1) * sizeof *out);
    if (!out) {
        free(raw);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    }
    out[0] = c->bos_id;
    if (nraw)
        memcpy(out + 1, raw, nraw * sizeof *out);
    free(raw);
    *ids = out;
    *n = nraw + 1;
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

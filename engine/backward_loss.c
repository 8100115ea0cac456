/* backward_loss.c - backward.h's losses: causal-LM cross-entropy over the
 * predicted positions (backward_lm) and prompt classification over label
 * words, one token or several (backward_cls).  Each runs the training
 * forward, turns the head's rows into dloss/dlogits in fixed chunks, and
 * hands the hidden rows' gradient to the body's backward (backward.c).
 */
#include "backward.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backward_internal.h"
#include "kernels.h"

/* ------------------------------------------------------- LM cross-entropy --- */

typedef struct ce_job {
    float *logits;          /* [R, V]: in logits, out dloss/dlogits */
    const int32_t *targets; /* [R] */
    double *loss;           /* [R] */
    size_t R;
    int V;
    float scale;
} ce_job;

/* Per row: NLL = log Σ exp(l − max) + max − l[target] (the sum in double),
 * then the row becomes scale·(softmax − onehot).  Not kern_row_sumexp: the
 * exponentials are float, stored in place for the gradient (one exp per
 * logit instead of two, on pretraining's hot path), so the bits differ from
 * the scorers' in the last place (test_backward holds the two within 1e-5
 * relative). */
static void ce_fn(void *arg, int tid, int nt)
{
    ce_job *j = arg;
    size_t r0, r1;
    pool_range(j->R, tid, nt, 1, &r0, &r1);
    const int V = j->V;
    for (size_t r = r0; r < r1; r++) {
        float *l = j->logits + r * (size_t)V;
        float mx = l[0];
        for (int v = 1; v < V; v++)
            mx = l[v] > mx ? l[v] : mx;
        const float lt = l[j->targets[r]];
        double z = 0;
        for (int v = 0; v < V; v++) {
            l[v] = expf(l[v] - mx);
            z += l[v];
        }
        j->loss[r] = log(z) + (double)mx - (double)lt;
        const float k = (float)(1.0 / z) * j->scale;
        for (int v = 0; v < V; v++)
            l[v] *= k;
        l[j->targets[r]] -= j->scale;
    }
}

/* Logits of the R gathered rows in bw->hrows, as model_logits_rows computes
 * them (RoBERTa's lm_head.bias first, folded into sgemm's beta). */
static void head_logits(backward *bw, size_t R)
{
    model *m = bw->m;
    const int V = m->cfg.vocab, E = m->cfg.d_embed;
    float beta = 0.0f;
    if (m->w.head_bias) {
        for (size_t r = 0; r < R; r++)
            memcpy(bw->logits + r * (size_t)V, m->w.head_bias, (size_t)V * sizeof(float));
        beta = 1.0f;
    }
    kern_par_linear(m->pool, bw->logits, (size_t)V, bw->hrows, (size_t)E, m->w.head, (int)R, V, E,
                    beta);
}

/* Gradient of a block of R head rows: drows = dl · head, dhead += dl^T · hrows,
 * dbias += column sums of dl, and dhidden[rows[r]] += drows[r]. */
static void head_back(backward *bw, const float *dl, const float *hrows, const int32_t *rows,
                      size_t R)
{
    model *m = bw->m;
    pool *p = m->pool;
    const int V = m->cfg.vocab, E = m->cfg.d_embed;
    bi_mm_dx(p, bw->drows, (size_t)E, dl, (size_t)V, m->w.head, (int)R, V, E, 0.0f);
    bi_mm_dw(p, bw->gw.head, dl, (size_t)V, hrows, (size_t)E, (int)R, V, E);
    bi_colsum(p, bw->gw.head_bias, dl, R, V, (size_t)V);
    for (size_t r = 0; r < R; r++) {
        float *dst = bw->dhidden + (size_t)rows[r] * E;
        const float *src = bw->drows + r * (size_t)E;
        for (int e = 0; e < E; e++)
            dst[e] += src[e];
    }
}

static double lm_chunk(backward *bw, const int32_t *rows, const int32_t *targets, size_t R,
                       float scale)
{
    model *m = bw->m;
    const int V = m->cfg.vocab, E = m->cfg.d_embed;
    for (size_t r = 0; r < R; r++)
        memcpy(bw->hrows + r * (size_t)E, bw->hidden + (size_t)rows[r] * E,
               (size_t)E * sizeof(float));
    head_logits(bw, R);
    ce_job j = {.logits = bw->logits, .targets = targets, .loss = bw->row_loss, .R = R, .V = V,
                .scale = scale};
    pool_run(m->pool, ce_fn, &j);
    double sum = 0;
    for (size_t r = 0; r < R; r++)
        sum += bw->row_loss[r];
    head_back(bw, bw->logits, bw->hrows, rows, R);
    return sum;
}

hl_status backward_lm(backward *bw, double *out_sum_nll, size_t *out_count,
                      const model_batch *batch, int32_t first_pred, double weight, hl_err *err)
{
    if (first_pred < 1)
        return hl_err_set(err, HL_ERR_INVALID, "first predicted position must be >= 1");
    hl_status st = bi_train_forward(bw, batch, err);
    if (st)
        return st;
    size_t count = 0;
    for (int32_t b = 0; b < batch->n_seq; b++) {
        int32_t n = batch->seq_start[b + 1] - batch->seq_start[b] - first_pred;
        count += n > 0 ? (size_t)n : 0;
    }
    *out_sum_nll = 0;
    *out_count = count;
    if (count == 0)
        return HL_OK;
    const size_t N = bw->n_tokens, E = (size_t)bw->m->cfg.d_embed;
    memset(bw->dhidden, 0, N * E * sizeof(float));
    const float scale = (float)(weight / (double)count);
    int32_t rows[BACKWARD_LOGIT_ROWS], targets[BACKWARD_LOGIT_ROWS];
    double sum = 0;
    size_t n = 0;
    for (int32_t b = 0; b < batch->n_seq; b++)
        for (int32_t t = batch->seq_start[b] + first_pred; t < batch->seq_start[b + 1]; t++) {
            rows[n] = t - 1;
            targets[n] = batch->tokens[t];
            if (++n == BACKWARD_LOGIT_ROWS) {
                sum += lm_chunk(bw, rows, targets, n, scale);
                n = 0;
            }
        }
    if (n)
        sum += lm_chunk(bw, rows, targets, n, scale);
    if ((st = bi_body_backward(bw, err)))
        return st;
    *out_sum_nll = sum;
    return HL_OK;
}

/* ---------------------------------------------------- classification CE --- */

static hl_status cls_reserve(backward *bw, size_t toks, size_t seqs, size_t rows, hl_err *err)
{
    if (toks > bw->cls_cap_tokens) {
        free(bw->cls_tokens);
        bw->cls_tokens = malloc(toks * sizeof *bw->cls_tokens);
        bw->cls_cap_tokens = bw->cls_tokens ? toks : 0;
    }
    if (seqs + 1 > bw->cls_cap_seqs) {
        free(bw->cls_starts);
        bw->cls_starts = malloc((seqs + 1) * sizeof *bw->cls_starts);
        bw->cls_cap_seqs = bw->cls_starts ? seqs + 1 : 0;
    }
    if (rows > bw->cls_cap_rows) {
        free(bw->cls_rows);
        free(bw->cls_targets);
        free(bw->cls_coef);
        bw->cls_rows = malloc(rows * sizeof *bw->cls_rows);
        bw->cls_targets = malloc(rows * sizeof *bw->cls_targets);
        bw->cls_coef = malloc(rows * sizeof *bw->cls_coef);
        bw->cls_cap_rows = bw->cls_rows && bw->cls_targets && bw->cls_coef ? rows : 0;
    }
    if (!bw->cls_tokens || !bw->cls_starts || !bw->cls_rows || !bw->cls_targets ||
        !bw->cls_coef)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for classification gradients");
    return HL_OK;
}

/* softmax over classes of one example: loss and d loss / d score. */
static double class_softmax(double *dscore, const double *sc, int32_t K, int32_t label)
{
    double lz = kern_class_lse(sc, K, NULL);
    for (int32_t c = 0; c < K; c++)
        dscore[c] = label >= 0 ? exp(sc[c] - lz) - (c == label ? 1.0 : 0.0) : 0.0;
    return label >= 0 ? lz - sc[label] : 0.0;
}

/* Every label word one token: score_c = hidden[last prompt row] · head[word_c]. */
static void cls_single(backward *bw, double *losses, const cls_scorer *s, const cls_example *ex,
                       int32_t n, double coef)
{
    const model *m = bw->m;
    const size_t E = (size_t)m->cfg.d_embed;
    const int32_t K = s->n_classes;
    double sc[CLS_MAX_CLASSES], ds[CLS_MAX_CLASSES];
    for (int32_t i = 0; i < n; i++) {
        const float *h = bw->hidden + (size_t)bw->cls_rows[i] * E;
        for (int32_t c = 0; c < K; c++) {
            /* the same loop as model_logits_select, so the scores match cls_score's bits */
            const size_t id = (size_t)s->word[s->word_off[c]];
            const float *w = m->w.head + id * E;
            float acc = 0.0f;
            for (size_t e = 0; e < E; e++)
                acc += h[e] * w[e];
            sc[c] = m->w.head_bias ? acc + m->w.head_bias[id] : acc;
        }
        double loss = class_softmax(ds, sc, K, ex[i].label);
        if (losses)
            losses[i] = loss;
        if (ex[i].label < 0)
            continue;
        float *dh = bw->dhidden + (size_t)bw->cls_rows[i] * E;
        for (int32_t c = 0; c < K; c++) {
            const float g = (float)(ds[c] * coef);
            const size_t id = (size_t)s->word[s->word_off[c]];
            const float *w = m->w.head + id * E;
            float *dw = bw->gw.head ? bw->gw.head + id * E : NULL;
            if (bw->gw.head_bias)
                bw->gw.head_bias[id] += g;
            for (size_t e = 0; e < E; e++)
                dh[e] += g * w[e];
            if (dw)
                for (size_t e = 0; e < E; e++)
                    dw[e] += g * h[e];
        }
    }
}

typedef struct lsm_job {
    float *logits;          /* [R, V]: in logits, out coef[r]·(onehot − softmax) */
    const int32_t *targets;
    const float *coef;
    double *logp;           /* [R] log-softmax of the target, as cls.c computes it */
    size_t R;
    int V;
} lsm_job;

static void lsm_fn(void *arg, int tid, int nt)
{
    lsm_job *j = arg;
    size_t r0, r1;
    pool_range(j->R, tid, nt, 1, &r0, &r1);
    const int V = j->V;
    for (size_t r = r0; r < r1; r++) {
        float *l = j->logits + r * (size_t)V;
        float mx;
        double z = kern_row_sumexp(l, (size_t)V, &mx);
        j->logp[r] = (double)(l[j->targets[r]] - mx) - log(z);
        const double k = j->coef[r];
        for (int v = 0; v < V; v++)
            l[v] = (float)(-k * exp((double)(l[v] - mx)) / z);
        l[j->targets[r]] += (float)k;
    }
}

typedef struct lsm_score_job {
    float *logits;
    const int32_t *targets;
    double *logp;
    size_t R;
    int V;
} lsm_score_job;

static void lsm_score_fn(void *arg, int tid, int nt)
{
    lsm_score_job *j = arg;
    size_t r0, r1;
    pool_range(j->R, tid, nt, 1, &r0, &r1);
    const int V = j->V;
    for (size_t r = r0; r < r1; r++) {
        const float *l = j->logits + r * (size_t)V;
        float mx;
        double z = kern_row_sumexp(l, (size_t)V, &mx);
        j->logp[r] = (double)(l[j->targets[r]] - mx) - log(z);
    }
}

/* Multi-token label words: each (example, class) is a sequence; score_c is
 * the mean log-softmax of the word's tokens.  Two passes over chunks of
 * rows: scores first (the class softmax needs them all), then gradients. */
static hl_status cls_multi(backward *bw, double *losses, const cls_scorer *s,
                           const cls_example *ex, int32_t n, double coef, int32_t nrows)
{
    model *m = bw->m;
    const int V = m->cfg.vocab, E = m->cfg.d_embed;
    const int32_t K = s->n_classes;
    double *logp = malloc((size_t)nrows * sizeof *logp);
    if (!logp)
        return HL_ERR_NOMEM;
    for (int32_t r0 = 0; r0 < nrows; r0 += BACKWARD_LOGIT_ROWS) {
        size_t R = (size_t)(nrows - r0 < BACKWARD_LOGIT_ROWS ? nrows - r0 : BACKWARD_LOGIT_ROWS);
        for (size_t r = 0; r < R; r++)
            memcpy(bw->hrows + r * (size_t)E, bw->hidden + (size_t)bw->cls_rows[r0 + r] * E,
                   (size_t)E * sizeof(float));
        head_logits(bw, R);
        lsm_score_job j = {.logits = bw->logits, .targets = bw->cls_targets + r0,
                           .logp = logp + r0, .R = R, .V = V};
        pool_run(m->pool, lsm_score_fn, &j);
    }
    /* class scores, losses and each row's coefficient d loss / d logp_row */
    double sc[CLS_MAX_CLASSES], ds[CLS_MAX_CLASSES];
    int32_t r = 0;
    for (int32_t i = 0; i < n; i++) {
        int32_t rstart = r;
        for (int32_t c = 0; c < K; c++) {
            int32_t wl = s->word_off[c + 1] - s->word_off[c];
            double sum = 0;
            for (int32_t jw = 0; jw < wl; jw++, r++)
                sum += logp[r];
            sc[c] = sum / wl;
        }
        double loss = class_softmax(ds, sc, K, ex[i].label);
        if (losses)
            losses[i] = loss;
        r = rstart;
        for (int32_t c = 0; c < K; c++) {
            int32_t wl = s->word_off[c + 1] - s->word_off[c];
            for (int32_t jw = 0; jw < wl; jw++, r++)
                bw->cls_coef[r] = (float)(ds[c] * coef / wl);
        }
    }
    free(logp);
    double dummy[BACKWARD_LOGIT_ROWS];
    for (int32_t r0 = 0; r0 < nrows; r0 += BACKWARD_LOGIT_ROWS) {
        size_t R = (size_t)(nrows - r0 < BACKWARD_LOGIT_ROWS ? nrows - r0 : BACKWARD_LOGIT_ROWS);
        for (size_t q = 0; q < R; q++)
            memcpy(bw->hrows + q * (size_t)E, bw->hidden + (size_t)bw->cls_rows[r0 + q] * E,
                   (size_t)E * sizeof(float));
        head_logits(bw, R);
        /* d loss / d logit = coef·(onehot − softmax): lsm_fn with coef negated */
        lsm_job j = {.logits = bw->logits, .targets = bw->cls_targets + r0,
                     .coef = bw->cls_coef + r0, .logp = dummy, .R = R, .V = V};
        pool_run(m->pool, lsm_fn, &j);
        head_back(bw, bw->logits, bw->hrows, bw->cls_rows + r0, R);
    }
    return HL_OK;
}

hl_status backward_cls(backward *bw, double *losses, const cls_scorer *s, const cls_example *ex,
                       int32_t n, double weight, hl_err *err)
{
    if (s->m != bw->m)
        return hl_err_set(err, HL_ERR_INVALID, "the scorer belongs to another model");
    if (n < 1 || n > s->max_batch)
        return hl_err_set(err, HL_ERR_INVALID, "batch of %d examples (1..%d)", n, s->max_batch);
    const int32_t K = s->n_classes;
    hl_status st = cls_check_examples(s, ex, n, err);
    if (st)
        return st;
    size_t toks = 0;
    for (int32_t i = 0; i < n; i++)
        toks += s->single ? (size_t)ex[i].n_prompt
                          : (size_t)K * (size_t)ex[i].n_prompt + (size_t)s->word_off[K];
    size_t seqs = s->single ? (size_t)n : (size_t)n * (size_t)K;
    size_t rows = s->single ? (size_t)n : (size_t)n * (size_t)s->word_off[K];
    if ((st = cls_reserve(bw, toks, seqs, rows, err)))
        return st;
    /* the layout cls_score uses */
    int32_t nseq, nrows;
    cls_pack(s, ex, n, bw->cls_tokens, bw->cls_starts, bw->cls_rows, bw->cls_targets, &nseq,
             &nrows);
    model_batch b = {.tokens = bw->cls_tokens, .seq_start = bw->cls_starts, .n_seq = nseq};
    if ((st = bi_train_forward(bw, &b, err)))
        return st;
    memset(bw->dhidden, 0, bw->n_tokens * (size_t)bw->m->cfg.d_embed * sizeof(float));
    const double coef = weight / (double)n;
    if (s->single)
        cls_single(bw, losses, s, ex, n, coef);
    else if ((st = cls_multi(bw, losses, s, ex, n, coef, nrows)))
        return hl_err_set(err, st, "out of memory for classification gradients");
    return bi_body_backward(bw, err);
}

/* cls.c - see cls.h. */
#include "cls.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void cls_scorer_free(cls_scorer *s)
{
    free(s->word);
    free(s->tokens);
    free(s->starts);
    free(s->rows);
    free(s->targets);
    free(s->logits);
    free(s->cls_scores);
    memset(s, 0, sizeof *s);
}

hl_status cls_scorer_init(cls_scorer *s, model *m, const int32_t *const *words,
                          const int32_t *n_words, int32_t n_classes, int32_t max_batch,
                          int32_t max_prompt, hl_err *err)
{
    memset(s, 0, sizeof *s);
    if (n_classes < 2 || n_classes > CLS_MAX_CLASSES)
        return hl_err_set(err, HL_ERR_INVALID, "%d classes (2..%d supported)", n_classes,
                          CLS_MAX_CLASSES);
    if (max_batch < 1 || max_prompt < 1)
        return hl_err_set(err, HL_ERR_INVALID, "batch and prompt sizes must be positive");
    s->m = m;
    s->n_classes = n_classes;
    s->max_batch = max_batch;
    s->max_prompt = max_prompt;
    s->single = true;
    int32_t total = 0;
    for (int32_t c = 0; c < n_classes; c++) {
        if (n_words[c] < 1)
            return hl_err_set(err, HL_ERR_INVALID, "class %d has an empty label word", c);
        for (int32_t j = 0; j < n_words[c]; j++)
            if (words[c][j] < 0 || words[c][j] >= m->cfg.vocab)
                return hl_err_set(err, HL_ERR_INVALID,
                                  "class %d: label token %d is outside the vocabulary", c,
                                  words[c][j]);
        if (n_words[c] > 1)
            s->single = false;
        if (n_words[c] > s->max_word)
            s->max_word = n_words[c];
        total += n_words[c];
    }
    s->masked = model_is_masked_lm(&m->cfg);
    if (s->masked && !s->single)
        return hl_err_set(err, HL_ERR_INVALID,
                          "a masked LM scores one token at <mask>: every label word must be a "
                          "single token");
    if ((int64_t)max_prompt + (s->single ? 0 : s->max_word) > m->cfg.max_pos)
        return hl_err_set(err, HL_ERR_INVALID,
                          "prompts of %d tokens plus a %d-token label word exceed the model's "
                          "context of %d",
                          max_prompt, s->max_word, m->cfg.max_pos);
    s->word = malloc((size_t)total * sizeof *s->word);
    if (!s->word)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    s->word_off[0] = 0;
    for (int32_t c = 0; c < n_classes; c++) {
        memcpy(s->word + s->word_off[c], words[c], (size_t)n_words[c] * sizeof *s->word);
        s->word_off[c + 1] = s->word_off[c] + n_words[c];
    }
    size_t B = (size_t)max_batch, K = (size_t)n_classes, W = (size_t)s->max_word;
    size_t seqs = s->single ? B : B * K;
    size_t toks = s->single ? B * (size_t)max_prompt : B * K * ((size_t)max_prompt + W);
    size_t rows = s->single ? B : B * K * W;
    size_t cols = s->single ? K : (size_t)m->cfg.vocab;
    s->tokens = malloc(toks * sizeof *s->tokens);
    s->starts = malloc((seqs + 1) * sizeof *s->starts);
    s->rows = malloc(rows * sizeof *s->rows);
    s->targets = malloc(rows * sizeof *s->targets);
    s->logits = malloc(rows * cols * sizeof *s->logits);
    s->cls_scores = malloc(B * K * sizeof *s->cls_scores);
    if (!s->tokens || !s->starts || !s->rows || !s->targets || !s->logits || !s->cls_scores) {
        cls_scorer_free(s);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for classification buffers");
    }
    return HL_OK;
}

/* Mean log-softmax of the target over a row of V logits. */
static double log_prob(const float *l, int32_t V, int32_t target)
{
    float mx;
    double z = kern_row_sumexp(l, (size_t)V, &mx);
    return (double)(l[target] - mx) - log(z);
}

hl_status cls_check_examples(const cls_scorer *s, const cls_example *ex, int32_t n, hl_err *err)
{
    for (int32_t i = 0; i < n; i++) {
        if (ex[i].n_prompt < 1 || ex[i].n_prompt > s->max_prompt)
            return hl_err_set(err, HL_ERR_INVALID, "example %d: prompt of %d tokens (1..%d)", i,
                              ex[i].n_prompt, s->max_prompt);
        if (ex[i].label >= s->n_classes || ex[i].label < -1)
            return hl_err_set(err, HL_ERR_INVALID, "example %d: label %d of %d classes", i,
                              ex[i].label, s->n_classes);
        if (s->masked && (ex[i].mask_pos < 0 || ex[i].mask_pos >= ex[i].n_prompt))
            return hl_err_set(err, HL_ERR_INVALID, "example %d: <mask> at %d of a %d-token "
                              "prompt", i, ex[i].mask_pos, ex[i].n_prompt);
    }
    return HL_OK;
}

void cls_pack(const cls_scorer *s, const cls_example *ex, int32_t n, int32_t *tokens,
              int32_t *starts, int32_t *rows, int32_t *targets, int32_t *n_seq,
              int32_t *n_rows)
{
    int32_t at = 0, nseq = 0, nrows = 0;
    starts[0] = 0;
    for (int32_t i = 0; i < n; i++) {
        if (s->single) {
            memcpy(tokens + at, ex[i].prompt, (size_t)ex[i].n_prompt * sizeof(int32_t));
            rows[nrows++] = s->masked ? at + ex[i].mask_pos : at + ex[i].n_prompt - 1;
            at += ex[i].n_prompt;
            starts[++nseq] = at;
            continue;
        }
        for (int32_t c = 0; c < s->n_classes; c++) {
            int32_t wl = s->word_off[c + 1] - s->word_off[c];
            memcpy(tokens + at, ex[i].prompt, (size_t)ex[i].n_prompt * sizeof(int32_t));
            memcpy(tokens + at + ex[i].n_prompt, s->word + s->word_off[c],
                   (size_t)wl * sizeof(int32_t));
            for (int32_t j = 0; j < wl; j++) {
                rows[nrows] = at + ex[i].n_prompt - 1 + j;
                targets[nrows] = s->word[s->word_off[c] + j];
                nrows++;
            }
            at += ex[i].n_prompt + wl;
            starts[++nseq] = at;
        }
    }
    *n_seq = nseq;
    *n_rows = nrows;
}

hl_status cls_score(cls_scorer *s, double *losses, int32_t *pred, double *scores,
                    const cls_example *ex, int32_t n, hl_err *err)
{
    return cls_score_staged(s, losses, pred, scores, ex, n, 0, 0, err);
}

hl_status cls_score_staged(cls_scorer *s, double *losses, int32_t *pred, double *scores,
                           const cls_example *ex, int32_t n, int32_t save_stage,
                           int32_t start_stage, hl_err *err)
{
    if (n < 0 || n > s->max_batch)
        return hl_err_set(err, HL_ERR_INVALID, "batch of %d examples (at most %d)", n,
                          s->max_batch);
    const int32_t K = s->n_classes;
    hl_status st = cls_check_examples(s, ex, n, err);
    if (st)
        return st;
    int32_t nseq, nrows;
    cls_pack(s, ex, n, s->tokens, s->starts, s->rows, s->targets, &nseq, &nrows);
    model_batch b = {.tokens = s->tokens, .seq_start = s->starts, .n_seq = nseq};
    if ((st = model_forward_staged(s->m, &b, save_stage, start_stage, err)))
        return st;
    if (s->single) {
        int32_t ids[CLS_MAX_CLASSES];
        for (int32_t c = 0; c < K; c++)
            ids[c] = s->word[s->word_off[c]];
        model_logits_select(s->m, s->logits, s->rows, (size_t)n, ids, (size_t)K);
        for (int32_t i = 0; i < n; i++)
            for (int32_t c = 0; c < K; c++)
                s->cls_scores[(size_t)i * K + c] = s->logits[(size_t)i * K + c];
    } else {
        const int32_t V = s->m->cfg.vocab;
        model_logits_rows(s->m, s->logits, s->rows, (size_t)nrows);
        int32_t r = 0;
        for (int32_t i = 0; i < n; i++)
            for (int32_t c = 0; c < K; c++) {
                int32_t wl = s->word_off[c + 1] - s->word_off[c];
                double sum = 0;
                for (int32_t j = 0; j < wl; j++, r++)
                    sum += log_prob(s->logits + (size_t)r * V, V, s->targets[r]);
                s->cls_scores[(size_t)i * K + c] = sum / wl;
            }
    }
    /* softmax over classes: loss, prediction, normalised class scores */
    for (int32_t i = 0; i < n; i++) {
        const double *sc = s->cls_scores + (size_t)i * K;
        int best;
        double lz = kern_class_lse(sc, K, &best);
        if (losses)
            losses[i] = ex[i].label >= 0 ? lz - sc[ex[i].label] : 0.0;
        if (pred)
            pred[i] = best;
        if (scores)
            for (int32_t c = 0; c < K; c++)
                scores[(size_t)i * K + c] = sc[c] - lz;
    }
    return HL_OK;
}

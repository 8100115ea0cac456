/* cls.h - prompt-based classification losses on a causal LM.
 *
 * Each example is a tokenized prompt; each class a tokenized continuation
 * (the label word, e.g. " great").  score_y = mean log-probability of class
 * y's tokens after the prompt; loss = cross-entropy of softmax_y(score_y)
 * against the gold class; prediction = argmax_y score_y (MeZO / LM-BFF).
 * When every continuation is a single token, the vocabulary normaliser
 * cancels in that softmax, so only the label tokens' logits at the last
 * prompt position are computed (2 dot products per class instead of a
 * 50k-wide head).  Otherwise each (example, class) pair is a sequence and
 * the continuation tokens are scored with a full log-softmax.
 *
 * These are the functions an optimizer step calls twice: buffers are sized
 * at init for max_batch examples of at most max_prompt tokens, so scoring
 * never allocates.
 *
 * A masked LM (RoBERTa, LM-BFF / MeZO) reads the label words' logits at the
 * <mask> of the prompt (cls_example.mask_pos) instead of after it; every
 * word must then be a single token.  Leaves out: tokenization (callers pass
 * token ids).
 */
#ifndef HELENE_CLS_H
#define HELENE_CLS_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "model.h"

#define CLS_MAX_CLASSES 32

typedef struct cls_example {
    const int32_t *prompt; /* [n_prompt] token ids, BOS included when the family uses one */
    int32_t n_prompt;      /* >= 1 */
    int32_t label;         /* gold class, or -1 when unknown (loss is then 0) */
    int32_t mask_pos;      /* masked LM only: index of <mask> in prompt (read there) */
} cls_example;

typedef struct cls_scorer {
    model *m;                   /* borrowed */
    int32_t n_classes;
    int32_t *word;              /* continuation tokens of all classes, back to back */
    int32_t word_off[CLS_MAX_CLASSES + 1];
    bool single;                /* every continuation is one token */
    bool masked;                /* masked LM: words are scored at each prompt's <mask> */
    int32_t max_batch, max_prompt, max_word;
    /* preallocated work space */
    int32_t *tokens;            /* packed sequences */
    int32_t *starts;            /* [seqs + 1] */
    int32_t *rows;              /* rows whose logits are needed */
    int32_t *targets;
    float *logits;              /* [rows, n_classes] or [rows, V] */
    double *cls_scores;         /* [max_batch, n_classes] */
} cls_scorer;

/* words[c] = token ids of class c's continuation (n_words[c] >= 1).
 * Checks that max_prompt + the longest word fits the model's context; for
 * a masked LM (model_is_masked_lm) that every word is one token. */
hl_status cls_scorer_init(cls_scorer *s, model *m, const int32_t *const *words,
                          const int32_t *n_words, int32_t n_classes, int32_t max_batch,
                          int32_t max_prompt, hl_err *err);
void cls_scorer_free(cls_scorer *s);

/* Check each example's prompt length and label against s. */
hl_status cls_check_examples(const cls_scorer *s, const cls_example *ex, int32_t n, hl_err *err);

/* The batch layout shared by the loss (cls_score) and its gradient
 * (backward_cls), so the two cannot drift apart.  Single-token words: one
 * sequence per example, rows[i] = its last prompt position (masked LM: its
 * <mask>).  Otherwise one
 * sequence per (example, class) = prompt + the class's word, and one
 * (row, target) per word token: row = the position that predicts it.
 * Buffers are the caller's, large enough for the batch; targets may be NULL
 * for single-token words.  Writes the counts of sequences and rows. */
void cls_pack(const cls_scorer *s, const cls_example *ex, int32_t n, int32_t *tokens,
              int32_t *starts, int32_t *rows, int32_t *targets, int32_t *n_seq,
              int32_t *n_rows);

/* Score n <= max_batch examples.  losses[i] (may be NULL): cross-entropy of
 * the gold class (0 when the label is -1, unknown); pred[i] (may be NULL):
 * argmax class; scores (may be NULL): [n, n_classes] log-probabilities of
 * the classes normalised over the classes (score_y − logsumexp_y score). */
hl_status cls_score(cls_scorer *s, double *losses, int32_t *pred, double *scores,
                    const cls_example *ex, int32_t n, hl_err *err);
/* cls_score whose forward is model_forward_staged(save_stage, start_stage). */
hl_status cls_score_staged(cls_scorer *s, double *losses, int32_t *pred, double *scores,
                           const cls_example *ex, int32_t n, int32_t save_stage,
                           int32_t start_stage, hl_err *err);

#endif

/* taskobj.h - the model + task objective: what fine-tuning optimises.
 *
 * Loads a task definition and its data (a file, a folder with splits, or the
 * task's bundled data), renders every example's prompt, tokenizes it once
 * (left-truncating the input text to the token budget so the template and
 * the label position survive) and keeps token ids per split.  As an
 * objective (objective.h) it draws the batch of step t as a pure function of
 * (seed, t): epoch e = (t-1)·B / n_train uses the permutation seeded by
 * (seed, e), so a resumed run sees the same batches without a cursor.
 * Losses come from cls.h (cross-entropy over the label words).
 *
 * A masked LM (RoBERTa) gets the task's masked_template: <s>, </s> and
 * <mask> become their ids, and each example records where its <mask> is.
 *
 * Ownership: the objective's
 * destroy frees the taskobj; the lm is borrowed and must outlive it.
 */
#ifndef HELENE_TASKOBJ_H
#define HELENE_TASKOBJ_H

#include <stdint.h>
#include <stdio.h>

#include "cls.h"
#include "bpe.h"
#include "err.h"
#include "lm.h"
#include "objective.h"
#include "runcfg.h"

typedef enum taskobj_split {
    TASKOBJ_SPLIT_TRAIN = 0,
    TASKOBJ_SPLIT_DEV,
    TASKOBJ_SPLIT_TEST,
    TASKOBJ_SPLIT_COUNT
} taskobj_split;

typedef struct taskobj taskobj;

/* Build from cfg: task, data, train_size, dev_size, batch_size, max_tokens,
 * seed, data_seed.  Fills *obj (its ctx is the new taskobj). */
hl_status taskobj_create(taskobj **out, objective *obj, lm *l, const runcfg *cfg, hl_err *err);

/* For `helene eval`: only the split to evaluate.  A data FILE is
 * evaluated whole; a folder gives its `split` file; no --data gives the
 * task's bundled folder.  No objective is made. */
hl_status taskobj_create_eval(taskobj **out, lm *l, const runcfg *cfg, taskobj_split split,
                              hl_err *err);

/* For `helene data`: splits and tokens exactly as training would make them,
 * with any tokenizer and no model.  Cannot score. */
hl_status taskobj_create_data(taskobj **out, const bpe *tok, bool masked, bool add_bos,
                              int32_t bos_id, int32_t max_pos, const runcfg *cfg, hl_err *err);
void taskobj_free(taskobj *t); /* for taskobjs made without an objective */

struct task;
const struct task *taskobj_task(const taskobj *t);
/* The prompt of example i of a split, as the model sees it (after truncation). */
hl_status taskobj_render(const taskobj *t, char *out, size_t cap, taskobj_split split,
                         int32_t i, hl_err *err);
/* Tokenized examples of a split (BOS included when the model uses one). */
const cls_example *taskobj_examples(const taskobj *t, taskobj_split split, int32_t *n);

/* Accuracy and mean loss over a whole split.  predictions (may be NULL):
 * one line per example: index, gold, predicted, per-class log-probabilities. */
hl_status taskobj_evaluate(taskobj *t, double *accuracy, double *loss, taskobj_split split,
                           FILE *predictions, hl_err *err);

int32_t taskobj_split_size(const taskobj *t, taskobj_split split);
/* Data lines skipped as malformed (runcfg.skip_bad); the first one's message
 * is copied to first[0, cap). */
int64_t taskobj_bad_lines(const taskobj *t, char *first, size_t cap);
const char *taskobj_task_name(const taskobj *t);
/* The scorer and the batch selected last: what a first-order step
 * differentiates (backward_cls). */
const cls_scorer *taskobj_scorer(const taskobj *t);
const cls_example *taskobj_batch(const taskobj *t, int32_t *n);

/* Tokens in the batch selected last (for tokens/s). */
int64_t taskobj_batch_tokens(const taskobj *t);

#endif

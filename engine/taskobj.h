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
 * Leaves out: masked LMs (RoBERTa, later).  Ownership: the objective's
 * destroy frees the taskobj; the lm is borrowed and must outlive it.
 */
#ifndef HELENE_TASKOBJ_H
#define HELENE_TASKOBJ_H

#include <stdint.h>
#include <stdio.h>

#include "cls.h"
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

/* Accuracy and mean loss over a whole split.  predictions (may be NULL):
 * one line per example: index, gold, predicted, per-class log-probabilities. */
hl_status taskobj_evaluate(taskobj *t, double *accuracy, double *loss, taskobj_split split,
                           FILE *predictions, hl_err *err);

int32_t taskobj_split_size(const taskobj *t, taskobj_split split);
const char *taskobj_task_name(const taskobj *t);
/* Tokens in the batch selected last (for tokens/s). */
int64_t taskobj_batch_tokens(const taskobj *t);

#endif

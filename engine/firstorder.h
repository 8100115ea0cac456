/* firstorder.h - what a run needs backpropagation for: ft-adam, the
 * first-order comparator, and the gradient-alignment diagnostic.
 *
 * Both need a backward pass over the run's model (backward.h); this module
 * owns it, makes it when the first of them is wanted and frees it when the
 * last is released, so a zeroth-order run without the diagnostic never holds
 * a gradient.  ft-adam's AdamW state (adamw.h) is made when the method is
 * chosen and freed when another is.
 *
 * The engine (engine.c) owns one firstorder per run and calls it only from
 * its thread.  Borrowed: the model, the trainable set, the pool, the task
 * objective; they must outlive it.
 * Leaves out: first-order training of analytic objectives (they have no
 * backward), pretraining (pretrain.h has its own loop).
 */
#ifndef HELENE_FIRSTORDER_H
#define HELENE_FIRSTORDER_H

#include <stdbool.h>
#include <stdint.h>

#include "adamw.h"
#include "backward.h"
#include "err.h"
#include "hparams.h"
#include "objective.h"
#include "optim.h"
#include "taskobj.h"

typedef struct firstorder {
    /* borrowed (firstorder_init) */
    model *m;                /* NULL: an analytic objective, nothing to backpropagate */
    param_set *ps;
    pool *workers;
    objective *obj;
    taskobj *task;
    /* the one backward, while adam_ready || align_ready */
    backward bw;
    bool have_bw;
    /* ft-adam */
    bool adam_ready;
    adamw aw;
    double *losses;          /* [obj->max_batch] */
    optim_step_stats stats;  /* the last ft-adam step, as the ZO methods report theirs */
    /* --grad-alignment */
    bool align_ready;
    float *align_est;        /* [ps->n] c·z of the last ZO step */
} firstorder;

void firstorder_init(firstorder *f, model *m, param_set *ps, pool *workers, objective *obj,
                     taskobj *task);
void firstorder_free(firstorder *f);

/* ft-adam: make its AdamW state (and the backward) with hp's settings, or
 * free them.  prepare is a no-op when ready. */
hl_status firstorder_adam_prepare(firstorder *f, const hparams *hp, hl_err *err);
void firstorder_adam_release(firstorder *f);
/* One AdamW step on step t's batch (the batch a ZO step would draw), with
 * hp's current lr, betas, eps and weight decay; f->stats describes it.  The
 * loss is checked before AdamW moves θ, so a non-finite loss changes
 * nothing. */
hl_status firstorder_adam_step(firstorder *f, const hparams *hp, uint64_t t, uint64_t seed,
                               hl_err *err);
/* AdamW's state in DIR/adamw.safetensors (write: only when ready; read:
 * prepares it first). */
hl_status firstorder_adam_write(const firstorder *f, const char *dir, hl_err *err);
hl_status firstorder_adam_read(firstorder *f, const hparams *hp, const char *dir, hl_err *err);

/* The alignment diagnostic: prepare, then around each ZO step t:
 * align_before (the true gradient at θ_t on step t's batch) and, after the
 * step, align_after (cos of c·z, with z regenerated from the step's seed,
 * and that gradient). */
hl_status firstorder_align_prepare(firstorder *f, hl_err *err);
void firstorder_align_release(firstorder *f);
hl_status firstorder_align_before(firstorder *f, uint64_t t, hl_err *err);
double firstorder_align_after(firstorder *f, const optim_step_stats *s);

#endif

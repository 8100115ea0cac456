/* objective.h - what the optimizers optimise: per-example losses on a batch.
 *
 * A zeroth-order optimizer needs nothing but forward evaluations, so the
 * interface is a struct of function pointers over an opaque ctx.  Per step t
 * the optimizer calls select_batch(t) once, then eval() on that same batch 2
 * (3 for HiZOO, more for extra probes) times with the parameters perturbed in
 * place.  Implementations: the analytic objectives (analytic.h) and the
 * model + task objective (taskobj.h: token batches -> forward -> per-example
 * losses); LoRA or prefix parameters would only change the param_set passed in.
 *
 * Contract for implementers:
 *  - select_batch(t) is deterministic in t (and the objective's own seed), so
 *    a resumed or replayed run sees the same batches; it reports B >= 1 and
 *    B <= max_batch.
 *  - eval() reads ps (never writes it), writes losses[0..B) for the selected
 *    batch, and is deterministic: same ps and batch => same bits, whatever
 *    the pool size.  Dropout is off.  It may fail (I/O, bad data, ...): then
 *    it returns an error with err filled and the optimizer restores the
 *    parameters before returning that error.  Non-finite losses are reported
 *    by the optimizer, not here.
 *  - full_loss() (may be NULL) is a reporting value (e.g. the noise-free
 *    objective or a dev-set loss); the optimizers never call it.
 * Leaves out: gradients, evaluation metrics other than the loss.
 */
#ifndef HELENE_OBJECTIVE_H
#define HELENE_OBJECTIVE_H

#include <stdint.h>

#include "err.h"
#include "params.h"
#include "pool.h"

typedef struct objective {
    const char *name;  /* "quadratic", "rosenbrock", "model", ... (static) */
    void *ctx;         /* owned by the objective; freed by destroy */
    int32_t max_batch; /* upper bound on B, for the caller's loss buffers */

    /* Choose the batch for step t (1-based); *batch_size = B. */
    hl_status (*select_batch)(void *ctx, int32_t *batch_size, uint64_t step, hl_err *err);
    /* losses[b] = loss of example b of the selected batch at parameters ps.
     * workers may be used for parallel work (results must not depend on its size). */
    hl_status (*eval)(void *ctx, double *losses, const param_set *ps, pool *workers,
                      hl_err *err);
    /* Optional (NULL): shared work between forwards of one batch whose
     * parameters differ only in later stages (layer-sampled methods).
     * layer_stage(l) = the first stage a change of layer l affects (stages
     * are ordered; 0 = the input end).  eval_staged with start_stage 0 is
     * eval() that also keeps what stage save_stage starts from (0: nothing);
     * with start_stage s > 0 it continues from what the last staged eval of
     * this batch kept for s (an error if it kept something else), and only
     * layers of stages >= s may have changed since.  Losses are bit-identical
     * to eval(). */
    int32_t (*layer_stage)(void *ctx, int32_t layer);
    hl_status (*eval_staged)(void *ctx, double *losses, const param_set *ps, pool *workers,
                             int32_t save_stage, int32_t start_stage, hl_err *err);
    /* Optional (NULL): from now on split each selected batch into `shards`
     * contiguous shards (objective_shard) and let eval and eval_staged
     * evaluate only shards [first, last), each with a forward of its own,
     * writing their losses and leaving the others untouched.  A shard's
     * losses must not depend on who evaluates it, nor on the other shards
     * (dist.h: data-parallel ranks); (1, 0, 1) = the whole batch at once. */
    void (*set_shards)(void *ctx, int32_t shards, int32_t first, int32_t last);
    /* Optional (NULL): the loss to report for ps. */
    hl_status (*full_loss)(void *ctx, double *loss, const param_set *ps, pool *workers,
                           hl_err *err);
    /* Optional (NULL): free ctx. */
    void (*destroy)(void *ctx);
} objective;

/* Shard `part` of `parts` of a batch of B: examples [*lo, *hi), contiguous,
 * sizes differing by at most one, in shard order. */
static inline void objective_shard(int32_t B, int32_t part, int32_t parts, int32_t *lo,
                                   int32_t *hi)
{
    *lo = (int32_t)((int64_t)B * part / parts);
    *hi = (int32_t)((int64_t)B * (part + 1) / parts);
}

/* Convenience wrappers (check for NULL ops and bad batch sizes). */
hl_status objective_select_batch(const objective *obj, int32_t *batch_size, uint64_t step,
                                 hl_err *err);
hl_status objective_eval(const objective *obj, double *losses, const param_set *ps,
                         pool *workers, hl_err *err);
/* The stage of a layer (0 without staged evaluation), and a staged eval
 * (a plain eval when the objective has none and start_stage is 0). */
int32_t objective_layer_stage(const objective *obj, int32_t layer);
hl_status objective_eval_staged(const objective *obj, double *losses, const param_set *ps,
                                pool *workers, int32_t save_stage, int32_t start_stage,
                                hl_err *err);
/* HL_ERR_INVALID when the objective has no full_loss (callers then report
 * the mean of L+ and L-). */
hl_status objective_full_loss(const objective *obj, double *loss, const param_set *ps,
                              pool *workers, hl_err *err);
void objective_destroy(objective *obj);

#endif

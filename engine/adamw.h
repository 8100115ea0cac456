/* adamw.h - AdamW for first-order training (pretraining, FT baselines).
 *
 * Per parameter, with g the (optionally clipped) gradient and t the step
 * (1-based), as torch.optim.AdamW computes it:
 *     m = β1·m + (1 − β1)·g          v = β2·v + (1 − β2)·g²
 *     θ = θ·(1 − lr_t·wd)            (decoupled decay; only layers with decay)
 *     θ = θ − lr_t/(1 − β1^t) · m / (sqrt(v)/sqrt(1 − β2^t) + ε)
 * Weight decay skips every layer whose param_layer.decay is false (biases
 * and norms, as model.c declares them).  Clipping scales g by
 * min(1, clip / ‖g‖) with ‖g‖ the global L2 norm over all layers.  The
 * learning rate follows a linear warm-up to lr over warmup_steps, then a
 * cosine decay to min_lr_ratio·lr at total_steps (constant after).
 *
 * m and v are arenas with the param_set's offsets.  The update runs on the
 * pool split over the arena (elementwise, so any split gives the same bits);
 * the gradient norm is summed in fixed pieces in double, added in piece
 * order, so the whole step is bit-identical for any thread count.
 *
 * Leaves out: AMSGrad, per-layer learning rates, 16-bit state, fused
 * gradient accumulation (the caller accumulates into its gradient arena).
 * Ownership: the param_set and pool are borrowed; m and v are owned.
 */
#ifndef HELENE_ADAMW_H
#define HELENE_ADAMW_H

#include <stdint.h>

#include "err.h"
#include "params.h"
#include "pool.h"

typedef struct adamw_config {
    double lr;            /* peak learning rate (> 0) */
    double beta1, beta2;  /* in [0, 1) */
    double eps;           /* > 0 */
    double weight_decay;  /* >= 0, decoupled */
    double clip_norm;     /* <= 0: no clipping */
    int64_t warmup_steps; /* >= 0 */
    int64_t total_steps;  /* end of the cosine; <= warmup_steps: constant lr after warm-up */
    double min_lr_ratio;  /* lr at total_steps, as a fraction of lr, in [0, 1] */
} adamw_config;

/* lr 1e-3, β (0.9, 0.999), ε 1e-8, wd 0.01, no clipping, no warm-up, constant lr. */
adamw_config adamw_config_default(void);

typedef struct adamw_stats {
    double lr;        /* learning rate used by the step */
    double grad_norm; /* global L2 norm of the gradient before clipping */
    double clip_scale;/* factor applied to the gradient (1 when not clipped) */
} adamw_stats;

typedef struct adamw {
    adamw_config cfg;
    param_set *ps;    /* borrowed: θ, updated in place */
    pool *pool;       /* borrowed, may be NULL */
    float *m, *v;     /* owned, [ps->n] each */
    int64_t step;     /* steps taken */
} adamw;

/* Validate cfg and allocate zero state for ps. */
hl_status adamw_init(adamw *a, param_set *ps, const adamw_config *cfg, pool *p, hl_err *err);
void adamw_free(adamw *a);

/* Learning rate of step t (1-based) under cfg's schedule. */
double adamw_lr_at(const adamw_config *cfg, int64_t t);

/* Global L2 norm of a gradient arena laid out like ps (deterministic). */
double adamw_grad_norm(const param_set *ps, const float *grad, pool *p);

/* One step with grad ([ps->n], same offsets; read only).  A non-finite
 * gradient norm returns HL_ERR_NUMERIC and changes nothing.  stats may be
 * NULL. */
hl_status adamw_step(adamw *a, adamw_stats *stats, const float *grad, hl_err *err);

/* State file: safetensors with tensors "m" and "v" (F32 [n]) and metadata
 * format = "helene-adamw", step, n, n_layers, layer_names_hash.  Reading
 * validates everything before changing the state. */
hl_status adamw_state_write(const adamw *a, const char *path, hl_err *err);
hl_status adamw_state_read(adamw *a, const char *path, hl_err *err);

#endif

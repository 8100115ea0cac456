/* optim.h - zeroth-order optimizers: HELENE, MeZO and the ZO baselines.
 *
 * One optimizer object per trainable set (param_set).  optim_step() runs one
 * step t (1-based) on an objective:
 *   select_batch(t); [HiZOO: forward at θ]; [HELENE blockwise on refresh
 *   steps: one ± probe per block]; for each of n_probes SPSA probes:
 *   θ += εz, forward, θ −= 2εz, forward (the restore +εz is fused into the
 *   update pass for the last probe); then one fused restore + update pass
 *   that also fills the per-layer telemetry.
 * z is regenerated from rng (rng.h), never stored.  Every pass runs on the
 * pool over fixed pieces of the arena (a pure function of the layer table),
 * and every reduction is summed per piece, then pieces in order, so θ,
 * state and telemetry are bit-identical for any thread count.
 *
 * Methods and formulas: the header of each method's file (optim_spsa.c,
 * optim_lnewton.c); man helene, HYPERPARAMETERS, lists the options.  Per-method
 * step counters (HELENE's α_t, refresh schedule, Adam's bias correction)
 * count steps since the method's state was created, so a method switched
 * in mid-run starts like a fresh run (its first step refreshes h).
 *
 * Threads: all calls from one thread (the engine thread), between steps.
 * Ownership: the optimizer borrows ps, workers and the objective; it owns
 * its state arenas (m, h, v: same offsets as θ, allocated only for methods
 * that use them), hyperparameters and telemetry arrays.
 * Leaves out: lr schedules, checkpoint I/O (state is exposed through
 * optim_state_arena / optim_state_arena16 for that).
 */
#ifndef HELENE_OPTIM_H
#define HELENE_OPTIM_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "hparams.h"
#include "objective.h"
#include "params.h"
#include "pool.h"

/* Per-step telemetry (globals). */
typedef struct optim_step_stats {
    uint64_t step;          /* t of the step just done */
    int32_t method;         /* optim_method used */
    int32_t batch;          /* B */
    double loss_plus;       /* L+ = mean_b ℓ+_b (mean over probes) */
    double loss_minus;      /* L− */
    double loss0;           /* HiZOO's ℓ0 = L(θ), NAN otherwise */
    double proj_grad;       /* c = mean_b c_b (mean over probes) */
    double q;               /* mean_b c_b² (mean over probes) */
    double alpha;           /* α_t (HELENE), NAN otherwise */
    double lr;              /* η used */
    bool refresh;           /* HELENE curvature refreshed this step */
    double h_scale;         /* HELENE: factor on h in its denominator and clip test,
                               1/(1 - β2^r) after r refreshes (hess_debias), else 1;
                               NAN for other methods */
    double clip_rate;       /* HELENE: fraction of all tuned elements whose h_scale·h is
                               below their layer's λ; NAN for other methods */
    int32_t forwards;       /* forward passes this step */
    uint64_t forwards_total;/* since optim_init */
    uint64_t seed;          /* step seed of probe 0 */
    int32_t group;          /* layer-newton: the group probed (optim_layer_stats.group), else -1 */
    double group_h;         /* layer-newton: that group's curvature h_l after the step */
    double ms_perturb;      /* wall time in perturbation passes */
    double ms_forward;      /* in objective evaluations */
    double ms_update;       /* in the fused restore + update pass */
} optim_step_stats;

/* Per-layer telemetry, one per layer of the param_set, filled by the update
 * pass.  "state" is h for HELENE, H for HiZOO, v for zo-adam, else 0. */
typedef struct optim_layer_stats {
    float state_mean;       /* mean over the layer of h (after this step; HELENE:
                               times h_scale, the h its update divides by) */
    float state_max;
    float lambda;           /* λ_l used this step (HELENE; 0 otherwise) */
    float clip_rate;        /* fraction of elements with h_scale·h < λ_l */
    float update_rms;       /* sqrt(mean (θ_new − θ_old)²) */
    /* layer-newton: state_mean = state_max = its group's measured curvature h_l,
     * lambda = h_min, clip_rate = 1 when the group's last ĥ fell below h_min */
    float score;            /* layer-newton: the group's s_l; NAN for other methods */
    float probe_share;      /* layer-newton: the group's share of all probes so far */
    int32_t group;          /* layer-newton: the layer's group; -1 for other methods */
} optim_layer_stats;

typedef struct optim optim;

/* After optim_set turned HELENE's precondition or clip on or off mid-run:
 * the update RMS (η·|update|, over all tuned elements, from the current
 * state) with the settings before, with the new settings unscaled, and with
 * the new settings and the per-layer scale that keeps each layer's RMS.
 * False if the last optim_set changed neither (or the method is not HELENE). */
bool optim_ablation_report(const optim *o, double *before, double *raw, double *after);

/* Create an optimizer for ps with default hyperparameters (method helene).
 * run_seed drives every perturbation: seed_t = rng_step_seed(run_seed, t, probe).
 * workers may be NULL (single thread). */
hl_status optim_init(optim **out, param_set *ps, pool *workers, uint64_t run_seed,
                     hl_err *err);
/* The same, starting from hp (copied; its method's state is created) rather
 * than the defaults, so no other method's state is ever allocated. */
hl_status optim_init_hp(optim **out, param_set *ps, pool *workers, uint64_t run_seed,
                        const hparams *hp, hl_err *err);
void optim_free(optim *o);

/* Change one hyperparameter (hparams.h keys) between steps.  Invalid values
 * are rejected with nothing changed.  "optimizer" switches method: θ is kept
 * and the new method's state starts fresh (old state arenas are freed). */
hl_status optim_set(optim *o, const char *key, const char *value, hl_err *err);
hl_status optim_get(const optim *o, char *buf, size_t cap, const char *key, hl_err *err);
/* Probes split across processes (dist.h, --probes-per-rank): from now on
 * the SPSA methods run probe p's two forwards only on rank p mod n; every
 * rank still makes every perturbation (so θ moves identically everywhere),
 * and before the probes' coefficients are computed `fn` must fill the loss
 * rows of the probes other ranks evaluated: lp[p B .. p B + B) and lm[...]
 * for every p not this rank's.  n <= 1 or fn NULL: every probe here.  The
 * result is bit-identical to one process with the same n_probes. */
typedef hl_status (*optim_probe_exchange)(void *ctx, double *lp, double *lm, int32_t n_probes,
                                          int32_t B, hl_err *err);
void optim_share_probes(optim *o, int32_t rank, int32_t n, optim_probe_exchange fn, void *ctx);

const hparams *optim_hparams(const optim *o);

/* One step.  On error (objective failure, non-finite loss, out of memory),
 * θ is restored to its value before the step (within float rounding), the
 * state is unchanged, the step counter does not advance, and err says
 * which phase failed. */
hl_status optim_step(optim *o, const objective *obj, hl_err *err);

uint64_t optim_steps_done(const optim *o);
/* Steps done since the current method's state was created (HELENE's t). */
uint64_t optim_method_steps(const optim *o);
const optim_step_stats *optim_last_stats(const optim *o);
const optim_layer_stats *optim_layer_stats_get(const optim *o); /* [ps->n_layers] */

/* State arena i (0..): its name ("m", "h", "v") and data, or NULL when
 * there is no arena i for the current method.  Only tuned (not frozen)
 * layers have state: layer l's starts at optim_state_offset(o, l), and the
 * arena holds optim_state_size(o) floats (= ps->n when nothing is frozen,
 * with the same offsets as θ). */
float *optim_state_arena(const optim *o, int i, const char **name);
/* 16-bit state (hyperparameter state_bf16): m, h and v kept as bf16 with
 * stochastic rounding (optim_internal.h states the rule), half the memory
 * of fp32 state.  Switching it allocates fresh state (the old is kept on
 * failure); optim_state_arena then returns NULL and optim_state_arena16 the
 * arenas, with the same offsets. */
bool optim_state16(const optim *o);
uint16_t *optim_state_arena16(const optim *o, int i, const char **name);
size_t optim_state_offset(const optim *o, int layer);
size_t optim_state_size(const optim *o);

/* Checkpoint support: write everything a resumed run needs besides θ and
 * the hyperparameters (state arenas, step counters, HELENE's floor
 * bookkeeping) to a safetensors file; read it back after the optimizer was
 * configured with the same method.  Reading validates everything first and
 * changes nothing on error. */
hl_status optim_state_write(const optim *o, const char *path, hl_err *err);
hl_status optim_state_read(optim *o, const char *path, hl_err *err);

/* HELENE's schedule, exposed for the TUI's schedule panel and the tests:
 * α_t = β1 + (1 − β1) exp(−t/T) (1 when anneal is off), refresh when
 * (t − 1) mod k == 0; t counts steps of the current method. */
double optim_helene_alpha(const hparams *hp, uint64_t t);
/* layer-newton's probe scale for a group of d tuned floats. */
double optim_lnewton_eps(const hparams *hp, double d);
bool optim_helene_refresh(const hparams *hp, uint64_t t);

#endif

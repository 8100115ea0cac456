/* analytic.h - objectives with known answers: test oracles and teaching
 * scenarios for the optimizers, no model needed.
 *
 * quadratic: f(θ) = ½ Σ_l a_l ||θ_l||², six layers whose curvatures a_l span
 *   1..1000 and whose sizes span 10..1000 (times size_scale), named like a
 *   small transformer so per-layer telemetry reads naturally.  Example b of
 *   step t is a noisy copy: ℓ_b(θ) = f(θ) − σ Σ_l √a_l ⟨ξ_{t,b,l}, θ_l⟩ with
 *   ξ ~ N(0, I) from the counter RNG, so E ℓ_b = f, per-example gradients
 *   differ (their covariance is σ² diag(a), Fisher-like) and the A-GNB
 *   estimate q = mean_b c_b² differs from c².  Minimum 0 at θ = 0; start
 *   θ ~ N(0, I).
 * rosenbrock: the chained Rosenbrock function over all trainable floats in
 *   layer order, f(x) = Σ_{i<d−1} 100 (x_{i+1} − x_i²)² + (1 − x_i)², split
 *   into three layers (8, 4 and 2 floats, times size_scale); example noise
 *   ℓ_b = f + σ ⟨ξ_{t,b}, x − 1⟩; start x = (−1.2, 1, −1.2, 1, ...); minimum 0
 *   at x = 1.
 * full_loss is the noise-free f.  Everything is deterministic from the seed.
 *
 * Ownership: analytic_init fills a caller-owned param_set (layers + owned
 * arena) and an objective whose ctx it allocates; objective_destroy frees it.
 * Leaves out: other test functions, multi-threaded evaluation (the problems
 * are small).
 */
#ifndef HELENE_ANALYTIC_H
#define HELENE_ANALYTIC_H

#include <stdint.h>

#include "err.h"
#include "objective.h"
#include "params.h"

typedef enum analytic_kind {
    ANALYTIC_KIND_QUADRATIC = 0,
    ANALYTIC_KIND_ROSENBROCK = 1,
} analytic_kind;

/* Variants of the quadratic, to show where layer-wise curvature helps and
 * where it cannot: */
typedef enum analytic_curvature {
    ANALYTIC_CURVATURE_LAYERED = 0, /* a_l from 1 to 1000 by layer (the default) */
    ANALYTIC_CURVATURE_HOMOGENEOUS, /* every a_l = 1 */
    ANALYTIC_CURVATURE_COUPLED,     /* every a_l = 1, plus ½ ρ (Σ_i θ_i)² / d with ρ = 1000:
                                     * one stiff direction shared by all layers */
    ANALYTIC_CURVATURE_COUNT
} analytic_curvature;

typedef struct analytic_config {
    analytic_kind kind;
    uint64_t seed;      /* start point (quadratic) and example noise */
    int32_t batch;      /* B, examples per step (1..1024), default 8 */
    double noise;       /* σ >= 0, default 0.1; 0 makes all examples equal */
    int32_t size_scale; /* multiplies every layer's first dimension, default 1 */
    int32_t curvature;  /* quadratic: analytic_curvature */
} analytic_config;

void analytic_config_default(analytic_config *cfg, analytic_kind kind);

/* ps must be freshly initialised (param_set_init) and empty. */
hl_status analytic_init(objective *obj, param_set *ps, const analytic_config *cfg, hl_err *err);

/* "quadratic" / "rosenbrock" -> kind. */
hl_status analytic_parse_kind(analytic_kind *kind, const char *name, hl_err *err);
const char *analytic_kind_name(analytic_kind kind);

/* Curvature a_l of quadratic layer l (for tests and teaching text), of the
 * default (layered) variant; _of for a variant (coupled: the diagonal part,
 * plus ρ/d, the mean of the shared term's diagonal). */
double analytic_quadratic_curvature(int layer);
double analytic_quadratic_curvature_of(int32_t curvature, int layer, double d);
hl_status analytic_parse_curvature(int32_t *curvature, const char *name, hl_err *err);
const char *analytic_curvature_name(int32_t curvature);

/* Suggested hyperparameters for running `method` on this scenario, as
 * "key=value key=value" (static string, may be ""), tuned with
 * tests/bench_optim.  The spec's defaults target language models, whose
 * scales differ by orders of magnitude from these small problems. */
const char *analytic_preset(analytic_kind kind, const char *method);
/* The learning rate of that preset, or 0 when it has none. */
double analytic_preset_lr(analytic_kind kind, const char *method);

#endif

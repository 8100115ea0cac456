/* analytic.c - see analytic.h. */
#include "analytic.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

/* Probe ids for rng_step_seed that the optimizers never use. */
#define ANALYTIC_INIT_STREAM 0xA0000000u
#define ANALYTIC_EXAMPLE_STREAM 0xB0000000u
#define ANALYTIC_CHUNK 1024

typedef struct quad_layer_def {
    const char *name;
    int64_t rows, cols; /* cols 0: a vector */
    double curvature;
    bool decay;
    int32_t block;
} quad_layer_def;

/* Sizes 1000..10 and curvatures 1..1000 deliberately not monotone in each
 * other: the large embedding is flat, a tiny norm layer is the stiffest. */
static const quad_layer_def quad_layers[] = {
    {"embed.weight", 100, 10, 1.0, true, -1},
    {"blocks.0.attn.weight", 30, 10, 10.0, true, 0},
    {"blocks.0.norm.weight", 10, 0, 1000.0, false, 0},
    {"blocks.1.mlp.weight", 10, 10, 100.0, true, 1},
    {"blocks.1.norm.bias", 30, 0, 316.227766, false, 1},
    {"head.weight", 10, 0, 3.16227766, true, -1},
};
#define QUAD_LAYERS ((int)(sizeof quad_layers / sizeof quad_layers[0]))

static const int64_t rosen_sizes[] = {8, 4, 2};
#define ROSEN_LAYERS 3

typedef struct analytic_ctx {
    analytic_config cfg;
    uint64_t step;   /* selected batch */
    double *x;       /* [d] rosenbrock: gathered point */
    size_t d;
} analytic_ctx;

double analytic_quadratic_curvature(int layer)
{
    return layer >= 0 && layer < QUAD_LAYERS ? quad_layers[layer].curvature : 0.0;
}

#define COUPLED_RHO 1000.0

double analytic_quadratic_curvature_of(int32_t curvature, int layer, double d)
{
    if (layer < 0 || layer >= QUAD_LAYERS)
        return 0.0;
    if (curvature == ANALYTIC_CURVATURE_HOMOGENEOUS)
        return 1.0;
    if (curvature == ANALYTIC_CURVATURE_COUPLED)
        return 1.0 + (d > 0 ? COUPLED_RHO / d : 0.0);
    return quad_layers[layer].curvature;
}

static const char *const curvature_names[ANALYTIC_CURVATURE_COUNT] = {"layered", "homogeneous",
                                                                      "coupled"};

const char *analytic_curvature_name(int32_t curvature)
{
    return curvature >= 0 && curvature < ANALYTIC_CURVATURE_COUNT ? curvature_names[curvature]
                                                                  : "?";
}

hl_status analytic_parse_curvature(int32_t *curvature, const char *name, hl_err *err)
{
    for (int32_t i = 0; i < ANALYTIC_CURVATURE_COUNT; i++)
        if (!strcmp(name, curvature_names[i])) {
            *curvature = i;
            return HL_OK;
        }
    return hl_err_set(err, HL_ERR_INVALID,
                      "unknown curvature '%s' (allowed: layered, homogeneous, coupled)", name);
}

void analytic_config_default(analytic_config *cfg, analytic_kind kind)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->kind = kind;
    cfg->seed = 1;
    cfg->batch = 8;
    cfg->noise = 0.1;
    cfg->size_scale = 1;
}

const char *analytic_kind_name(analytic_kind kind)
{
    return kind == ANALYTIC_KIND_ROSENBROCK ? "rosenbrock" : "quadratic";
}

hl_status analytic_parse_kind(analytic_kind *kind, const char *name, hl_err *err)
{
    if (!strcmp(name, "quadratic"))
        *kind = ANALYTIC_KIND_QUADRATIC;
    else if (!strcmp(name, "rosenbrock"))
        *kind = ANALYTIC_KIND_ROSENBROCK;
    else
        return hl_err_set(err, HL_ERR_INVALID,
                          "unknown objective '%s' (allowed: quadratic, rosenbrock)", name);
    return HL_OK;
}

/* ---- quadratic --------------------------------------------------------- */

static double quad_value(const analytic_ctx *c, const param_set *ps)
{
    double f = 0, sum = 0;
    for (int l = 0; l < ps->n_layers; l++) {
        const float *th = param_layer_data(ps, l);
        double s = 0;
        for (size_t i = 0; i < ps->layers[l].size; i++) {
            s += (double)th[i] * th[i];
            sum += th[i];
        }
        f += 0.5 * analytic_quadratic_curvature_of(c->cfg.curvature, l, 0) * s;
    }
    if (c->cfg.curvature == ANALYTIC_CURVATURE_COUPLED)
        f += 0.5 * COUPLED_RHO * sum * sum / (double)c->d;
    return f;
}

static hl_status quad_eval(void *vctx, double *losses, const param_set *ps, pool *workers,
                           hl_err *err)
{
    (void)workers;
    (void)err;
    analytic_ctx *c = vctx;
    double f = quad_value(c, ps);
    float xi[ANALYTIC_CHUNK];
    for (int32_t b = 0; b < c->cfg.batch; b++) {
        double noise = 0;
        if (c->cfg.noise > 0) {
            uint64_t seed = rng_step_seed(c->cfg.seed, c->step, ANALYTIC_EXAMPLE_STREAM + (uint32_t)b);
            for (int l = 0; l < ps->n_layers; l++) {
                const float *th = param_layer_data(ps, l);
                size_t n = ps->layers[l].size;
                double dot = 0;
                for (size_t i0 = 0; i0 < n; i0 += ANALYTIC_CHUNK) {
                    size_t m = n - i0 < ANALYTIC_CHUNK ? n - i0 : ANALYTIC_CHUNK;
                    rng_normal_fill(xi, seed, (uint32_t)l, i0, m);
                    for (size_t i = 0; i < m; i++)
                        dot += (double)xi[i] * th[i0 + i];
                }
                noise += sqrt(analytic_quadratic_curvature_of(c->cfg.curvature, l, 0)) * dot;
            }
        }
        losses[b] = f - c->cfg.noise * noise;
    }
    return HL_OK;
}

static hl_status quad_full(void *vctx, double *loss, const param_set *ps, pool *workers,
                           hl_err *err)
{
    (void)workers, (void)err;
    *loss = quad_value(vctx, ps);
    return HL_OK;
}

/* ---- rosenbrock -------------------------------------------------------- */

static void rosen_gather(analytic_ctx *c, const param_set *ps)
{
    size_t k = 0;
    for (int l = 0; l < ps->n_layers; l++) {
        const float *th = param_layer_data(ps, l);
        for (size_t i = 0; i < ps->layers[l].size; i++)
            c->x[k++] = th[i];
    }
}

static double rosen_value(const double *x, size_t d)
{
    double f = 0;
    for (size_t i = 0; i + 1 < d; i++) {
        double a = x[i + 1] - x[i] * x[i], b = 1.0 - x[i];
        f += 100.0 * a * a + b * b;
    }
    return f;
}

static hl_status rosen_eval(void *vctx, double *losses, const param_set *ps, pool *workers,
                            hl_err *err)
{
    (void)workers, (void)err;
    analytic_ctx *c = vctx;
    rosen_gather(c, ps);
    double f = rosen_value(c->x, c->d);
    float xi[ANALYTIC_CHUNK];
    for (int32_t b = 0; b < c->cfg.batch; b++) {
        double noise = 0;
        if (c->cfg.noise > 0) {
            uint64_t seed = rng_step_seed(c->cfg.seed, c->step, ANALYTIC_EXAMPLE_STREAM + (uint32_t)b);
            for (size_t i0 = 0; i0 < c->d; i0 += ANALYTIC_CHUNK) {
                size_t m = c->d - i0 < ANALYTIC_CHUNK ? c->d - i0 : ANALYTIC_CHUNK;
                rng_normal_fill(xi, seed, 0, i0, m);
                for (size_t i = 0; i < m; i++)
                    noise += (double)xi[i] * (c->x[i0 + i] - 1.0);
            }
        }
        losses[b] = f + c->cfg.noise * noise;
    }
    return HL_OK;
}

static hl_status rosen_full(void *vctx, double *loss, const param_set *ps, pool *workers,
                            hl_err *err)
{
    (void)workers, (void)err;
    analytic_ctx *c = vctx;
    rosen_gather(c, ps);
    *loss = rosen_value(c->x, c->d);
    return HL_OK;
}

/* ---- shared ------------------------------------------------------------ */

static hl_status analytic_select(void *vctx, int32_t *batch_size, uint64_t step, hl_err *err)
{
    (void)err;
    analytic_ctx *c = vctx;
    c->step = step;
    *batch_size = c->cfg.batch;
    return HL_OK;
}

static void analytic_destroy(void *vctx)
{
    analytic_ctx *c = vctx;
    if (!c)
        return;
    free(c->x);
    free(c);
}

hl_status analytic_init(objective *obj, param_set *ps, const analytic_config *cfg, hl_err *err)
{
    memset(obj, 0, sizeof *obj);
    if (cfg->batch < 1 || cfg->batch > 1024)
        return hl_err_set(err, HL_ERR_INVALID, "analytic batch %d outside 1..1024",
                          (int)cfg->batch);
    if (!(cfg->noise >= 0 && cfg->noise <= 1e3))
        return hl_err_set(err, HL_ERR_INVALID, "analytic noise %g outside 0..1000", cfg->noise);
    if (cfg->size_scale < 1 || cfg->size_scale > 100000)
        return hl_err_set(err, HL_ERR_INVALID, "analytic size_scale %d outside 1..100000",
                          (int)cfg->size_scale);
    if (cfg->curvature < 0 || cfg->curvature >= ANALYTIC_CURVATURE_COUNT)
        return hl_err_set(err, HL_ERR_INVALID, "analytic curvature variant %d unknown",
                          (int)cfg->curvature);
    if (ps->n_layers != 0 || ps->data)
        return hl_err_set(err, HL_ERR_INVALID, "analytic_init needs an empty param_set");
    hl_status st = HL_OK;
    if (cfg->kind == ANALYTIC_KIND_QUADRATIC) {
        for (int l = 0; l < QUAD_LAYERS && st == HL_OK; l++) {
            const quad_layer_def *q = &quad_layers[l];
            int64_t shape[2] = {q->rows * cfg->size_scale, q->cols};
            st = param_set_add(ps, q->name, q->cols ? 2 : 1, shape, q->decay, q->block, err);
        }
    } else {
        for (int l = 0; l < ROSEN_LAYERS && st == HL_OK; l++) {
            char name[32];
            snprintf(name, sizeof name, "x.%d", l);
            int64_t shape[1] = {rosen_sizes[l] * cfg->size_scale};
            st = param_set_add(ps, name, 1, shape, true, l, err);
        }
    }
    if (st == HL_OK)
        st = param_set_alloc(ps, err);
    if (st != HL_OK)
        return st;

    analytic_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the analytic objective");
    c->cfg = *cfg;
    c->d = param_set_count(ps);
    if (cfg->kind == ANALYTIC_KIND_QUADRATIC) {
        uint64_t seed = rng_step_seed(cfg->seed, 0, ANALYTIC_INIT_STREAM);
        for (int l = 0; l < ps->n_layers; l++)
            rng_normal_fill(param_layer_data(ps, l), seed, (uint32_t)l, 0, ps->layers[l].size);
        obj->name = "quadratic";
        obj->eval = quad_eval;
        obj->full_loss = quad_full;
    } else {
        c->x = malloc(c->d * sizeof *c->x);
        if (!c->x) {
            analytic_destroy(c);
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the analytic objective");
        }
        size_t k = 0;
        for (int l = 0; l < ps->n_layers; l++) {
            float *th = param_layer_data(ps, l);
            for (size_t i = 0; i < ps->layers[l].size; i++, k++)
                th[i] = (k % 2 == 0) ? -1.2f : 1.0f;
        }
        obj->name = "rosenbrock";
        obj->eval = rosen_eval;
        obj->full_loss = rosen_full;
    }
    obj->ctx = c;
    obj->max_batch = cfg->batch;
    obj->select_batch = analytic_select;
    obj->destroy = analytic_destroy;
    return HL_OK;
}

/* Learning rates from the grid in tests/bench_optim.c, so every method makes
 * clear progress out of the box.  Mostly the grid's best for reaching 1% of
 * the start loss; zo-sign uses 10x its best (3e-3: faster early, but a
 * constant sign step stalls above 1%), HELENE a third of its best (30: the
 * first floor comes from one probe, so large rates are seed-sensitive). */
static const struct {
    const char *method;
    const char *quadratic, *rosenbrock;
} presets[] = {
    {"mezo", "lr=3e-5", "lr=1e-4"},
    {"zo-sgd-mmt", "lr=3e-6", "lr=1e-5"},
    {"zo-sign", "lr=3e-2", "lr=1e-3"},
    {"zo-adam", "lr=1e-2", "lr=1e-3"},
    {"hizoo", "lr=3e-5", "lr=1e-4"},
    {"helene", "lr=10", "lr=10"},
    {"layer-newton", "lr=1", "lr=0.5"},
};

const char *analytic_preset(analytic_kind kind, const char *method)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].method, method))
            return kind == ANALYTIC_KIND_ROSENBROCK ? presets[i].rosenbrock : presets[i].quadratic;
    return "";
}

double analytic_preset_lr(analytic_kind kind, const char *method)
{
    const char *at = strstr(analytic_preset(kind, method), "lr=");
    return at ? strtod(at + 3, NULL) : 0.0;
}

/* adamw.c - see adamw.h. */
#include "adamw.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define ADAMW_FORMAT "helene-adamw"
#define NORM_PIECE 16384 /* floats per partial sum of the gradient norm */

adamw_config adamw_config_default(void)
{
    adamw_config c = {.lr = 1e-3, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                      .weight_decay = 0.01, .clip_norm = 0, .warmup_steps = 0, .total_steps = 0,
                      .min_lr_ratio = 1.0};
    return c;
}

static hl_status check_config(const adamw_config *c, hl_err *err)
{
    if (!(c->lr > 0) || !isfinite(c->lr))
        return hl_err_set(err, HL_ERR_INVALID, "adamw: lr must be > 0 (got %g)", c->lr);
    if (!(c->beta1 >= 0 && c->beta1 < 1) || !(c->beta2 >= 0 && c->beta2 < 1))
        return hl_err_set(err, HL_ERR_INVALID, "adamw: betas must be in [0, 1) (got %g, %g)",
                          c->beta1, c->beta2);
    if (!(c->eps > 0))
        return hl_err_set(err, HL_ERR_INVALID, "adamw: eps must be > 0");
    if (!(c->weight_decay >= 0) || !isfinite(c->weight_decay))
        return hl_err_set(err, HL_ERR_INVALID, "adamw: weight decay must be >= 0");
    if (!isfinite(c->clip_norm))
        return hl_err_set(err, HL_ERR_INVALID, "adamw: clip norm must be finite");
    if (c->warmup_steps < 0 || c->total_steps < 0)
        return hl_err_set(err, HL_ERR_INVALID, "adamw: step counts must be >= 0");
    if (!(c->min_lr_ratio >= 0 && c->min_lr_ratio <= 1))
        return hl_err_set(err, HL_ERR_INVALID, "adamw: min lr ratio must be in [0, 1]");
    return HL_OK;
}

hl_status adamw_init(adamw *a, param_set *ps, const adamw_config *cfg, pool *p, hl_err *err)
{
    memset(a, 0, sizeof *a);
    hl_status st = check_config(cfg, err);
    if (st)
        return st;
    a->cfg = *cfg;
    a->ps = ps;
    a->pool = p;
    size_t n = ps->n ? ps->n : 1;
    /* written here, page by page, not calloc'd: a read of calloc's zero
     * page followed by a write faults every page in on the first step
     * instead (see optim.c oi_arena_alloc); param_arena_alloc, unlike
     * malloc, is not folded with the memset into a calloc by the compiler */
    void *m = param_arena_alloc(n * sizeof(float)), *v = param_arena_alloc(n * sizeof(float));
    if (m)
        a->m = memset(m, 0, n * sizeof(float));
    if (v)
        a->v = memset(v, 0, n * sizeof(float));
    if (!a->m || !a->v) {
        adamw_free(a);
        return hl_err_set(err, HL_ERR_NOMEM, "adamw: out of memory for %zu MiB of state",
                          2 * n * sizeof(float) >> 20);
    }
    return HL_OK;
}

void adamw_free(adamw *a)
{
    if (!a)
        return;
    free(a->m);
    free(a->v);
    memset(a, 0, sizeof *a);
}

double adamw_lr_at(const adamw_config *c, int64_t t)
{
    if (t < 1)
        t = 1;
    if (t <= c->warmup_steps)
        return c->lr * (double)t / (double)c->warmup_steps;
    if (c->total_steps <= c->warmup_steps)
        return c->lr;
    double prog = (double)(t - c->warmup_steps) / (double)(c->total_steps - c->warmup_steps);
    if (prog > 1)
        prog = 1;
    double lo = c->lr * c->min_lr_ratio;
    return lo + (c->lr - lo) * 0.5 * (1.0 + cos(3.14159265358979323846 * prog));
}

/* --------------------------------------------------------- grad norm --- */

/* Pieces are numbered over the layers in order; piece k of layer i covers
 * [k·NORM_PIECE, (k+1)·NORM_PIECE) of the layer. */
static size_t count_pieces(const param_set *ps)
{
    size_t n = 0;
    for (int i = 0; i < ps->n_layers; i++)
        n += (ps->layers[i].size + NORM_PIECE - 1) / NORM_PIECE;
    return n;
}

typedef struct norm_job {
    const param_set *ps;
    const float *g;
    double *sums;
    size_t n_pieces;
} norm_job;

static void norm_fn(void *arg, int tid, int nt)
{
    norm_job *j = arg;
    size_t p0, p1;
    pool_range(j->n_pieces, tid, nt, 1, &p0, &p1);
    size_t k = 0;
    for (int i = 0; i < j->ps->n_layers && k < p1; i++) {
        const param_layer *l = &j->ps->layers[i];
        size_t np = (l->size + NORM_PIECE - 1) / NORM_PIECE;
        for (size_t q = 0; q < np; q++, k++) {
            if (k < p0 || k >= p1)
                continue;
            if (l->frozen) { /* not tuned: not part of the gradient either */
                j->sums[k] = 0;
                continue;
            }
            size_t a = q * NORM_PIECE, b = a + NORM_PIECE < l->size ? a + NORM_PIECE : l->size;
            const float *g = j->g + l->offset;
            double s = 0;
            for (size_t e = a; e < b; e++)
                s += (double)g[e] * g[e];
            j->sums[k] = s;
        }
    }
}

double adamw_grad_norm(const param_set *ps, const float *grad, pool *p)
{
    size_t n = count_pieces(ps);
    double *sums = calloc(n ? n : 1, sizeof *sums);
    if (!sums) { /* fall back to one serial pass (same order, same value) */
        double s = 0;
        for (int i = 0; i < ps->n_layers; i++) {
            const param_layer *l = &ps->layers[i];
            for (size_t a = 0; a < l->size && !l->frozen; a += NORM_PIECE) {
                size_t b = a + NORM_PIECE < l->size ? a + NORM_PIECE : l->size;
                double ps_ = 0;
                for (size_t e = a; e < b; e++)
                    ps_ += (double)grad[l->offset + e] * grad[l->offset + e];
                s += ps_;
            }
        }
        return sqrt(s);
    }
    norm_job j = {.ps = ps, .g = grad, .sums = sums, .n_pieces = n};
    pool_run(p, norm_fn, &j);
    double s = 0;
    for (size_t k = 0; k < n; k++)
        s += sums[k];
    free(sums);
    return sqrt(s);
}

/* ------------------------------------------------------------ update --- */

typedef struct update_job {
    adamw *a;
    const float *g;
    float gscale;       /* clipping factor */
    float b1, b2, omb1, omb2;
    float step_size;    /* lr / (1 − β1^t) */
    float bc2_sqrt;     /* sqrt(1 − β2^t) */
    float eps;
    float decay;        /* 1 − lr·wd */
} update_job;

static void update_fn(void *arg, int tid, int nt)
{
    update_job *j = arg;
    const param_set *ps = j->a->ps;
    size_t a0, a1;
    pool_range(ps->n, tid, nt, 16, &a0, &a1);
    for (int i = 0; i < ps->n_layers; i++) {
        const param_layer *l = &ps->layers[i];
        size_t lo = l->offset > a0 ? l->offset : a0;
        size_t hi = l->offset + l->size < a1 ? l->offset + l->size : a1;
        if (lo >= hi || l->frozen)
            continue;
        float *th = ps->data, *m = j->a->m, *v = j->a->v;
        const float *g = j->g;
        const float decay = l->decay ? j->decay : 1.0f;
        for (size_t e = lo; e < hi; e++) {
            float gi = g[e] * j->gscale;
            m[e] = j->b1 * m[e] + j->omb1 * gi;
            v[e] = j->b2 * v[e] + j->omb2 * gi * gi;
            float p = th[e] * decay;
            float denom = sqrtf(v[e]) / j->bc2_sqrt + j->eps;
            th[e] = p - j->step_size * (m[e] / denom);
        }
    }
}

hl_status adamw_step(adamw *a, adamw_stats *stats, const float *grad, hl_err *err)
{
    double norm = adamw_grad_norm(a->ps, grad, a->pool);
    if (!isfinite(norm))
        return hl_err_set(err, HL_ERR_NUMERIC, "adamw: the gradient is not finite at step %" PRId64,
                          a->step + 1);
    double scale = 1.0;
    if (a->cfg.clip_norm > 0) {
        double c = a->cfg.clip_norm / (norm + 1e-6);
        if (c < 1)
            scale = c;
    }
    int64_t t = a->step + 1;
    double lr = adamw_lr_at(&a->cfg, t);
    const adamw_config *c = &a->cfg;
    update_job j = {.a = a, .g = grad, .gscale = (float)scale, .b1 = (float)c->beta1,
                    .b2 = (float)c->beta2, .omb1 = (float)(1.0 - c->beta1),
                    .omb2 = (float)(1.0 - c->beta2),
                    .step_size = (float)(lr / (1.0 - pow(c->beta1, (double)t))),
                    .bc2_sqrt = (float)sqrt(1.0 - pow(c->beta2, (double)t)),
                    .eps = (float)c->eps, .decay = (float)(1.0 - lr * c->weight_decay)};
    pool_run(a->pool, update_fn, &j);
    a->step = t;
    if (stats) {
        stats->lr = lr;
        stats->grad_norm = norm;
        stats->clip_scale = scale;
    }
    return HL_OK;
}

/* ------------------------------------------------------------- state --- */

/* FNV-1a over layer names and shapes: the state belongs to this layout. */
static uint64_t layout_hash(const param_set *ps)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < ps->n_layers; i++) {
        const param_layer *l = &ps->layers[i];
        for (const char *s = l->name; *s; s++)
            h = (h ^ (unsigned char)*s) * 1099511628211ull;
        for (int d = 0; d < l->ndim; d++)
            h = (h ^ (uint64_t)l->shape[d]) * 1099511628211ull;
        h = (h ^ (uint64_t)l->offset) * 1099511628211ull;
    }
    return h;
}

hl_status adamw_state_write(const adamw *a, const char *path, hl_err *err)
{
    int64_t shape[1] = {(int64_t)a->ps->n};
    st_write_tensor ts[2] = {
        {.name = "m", .dtype = ST_DTYPE_F32, .src = ST_SRC_RAW, .ndim = 1, .shape = shape,
         .data = a->m},
        {.name = "v", .dtype = ST_DTYPE_F32, .src = ST_SRC_RAW, .ndim = 1, .shape = shape,
         .data = a->v},
    };
    char step[32], n[32], nl[32], hash[32];
    snprintf(step, sizeof step, "%" PRId64, a->step);
    snprintf(n, sizeof n, "%zu", a->ps->n);
    snprintf(nl, sizeof nl, "%d", a->ps->n_layers);
    snprintf(hash, sizeof hash, "%016" PRIx64, layout_hash(a->ps));
    const char *meta[] = {"format", ADAMW_FORMAT, "step", step, "n", n, "n_layers", nl,
                          "layout_hash", hash};
    return st_write(path, ts, 2, meta, 5, err);
}

hl_status adamw_state_read(adamw *a, const char *path, hl_err *err)
{
    st_file f;
    hl_status st = st_file_open(&f, path, err);
    if (st)
        return st;
    const char *fmt = st_file_meta(&f, "format"), *step = st_file_meta(&f, "step");
    const char *n = st_file_meta(&f, "n"), *hash = st_file_meta(&f, "layout_hash");
    char want_n[32], want_hash[32];
    snprintf(want_n, sizeof want_n, "%zu", a->ps->n);
    snprintf(want_hash, sizeof want_hash, "%016" PRIx64, layout_hash(a->ps));
    const st_tensor *tm = st_file_find(&f, "m"), *tv = st_file_find(&f, "v");
    char *end = NULL;
    long long s = -1;
    if (step) {
        errno = 0;
        s = strtoll(step, &end, 10);
    }
    if (!fmt || strcmp(fmt, ADAMW_FORMAT))
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: not an AdamW state file", path);
    else if (!step || errno || !end || *end || s < 0)
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: bad step in the metadata", path);
    else if (!n || strcmp(n, want_n) || !hash || strcmp(hash, want_hash))
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: the optimizer state belongs to another model (layout differs)", path);
    else if (!tm || !tv || tm->dtype != ST_DTYPE_F32 || tv->dtype != ST_DTYPE_F32 ||
             tm->ndim != 1 || tv->ndim != 1 || tm->n_elems != a->ps->n ||
             tv->n_elems != a->ps->n)
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: m and v must be F32 [%zu]", path, a->ps->n);
    if (!st)
        st = st_tensor_to_f32(tm, a->m, err);
    if (!st)
        st = st_tensor_to_f32(tv, a->v, err);
    if (!st)
        a->step = s;
    st_file_close(&f);
    return st;
}

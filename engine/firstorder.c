/* firstorder.c - ft-adam and the gradient-alignment diagnostic (firstorder.h). */
#include "firstorder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"

void firstorder_init(firstorder *f, model *m, param_set *ps, pool *workers, objective *obj,
                     taskobj *task)
{
    memset(f, 0, sizeof *f);
    f->m = m;
    f->ps = ps;
    f->workers = workers;
    f->obj = obj;
    f->task = task;
}

/* The backward and its loss buffer: made by the first user, freed after the
 * last (the only two places that call backward_init / backward_free). */
static hl_status bw_need(firstorder *f, const char *who, hl_err *err)
{
    if (f->have_bw)
        return HL_OK;
    if (!f->m || !f->task)
        return hl_err_set(err, HL_ERR_INVALID, "%s needs a model (backpropagation); analytic "
                          "objectives run the zeroth-order methods", who);
    hl_status st = backward_init(&f->bw, f->m, err);
    if (st)
        return st;
    f->losses = calloc((size_t)(f->obj->max_batch > 0 ? f->obj->max_batch : 1),
                       sizeof *f->losses);
    if (!f->losses) {
        backward_free(&f->bw);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for %s", who);
    }
    f->have_bw = true;
    return HL_OK;
}

static void bw_drop(firstorder *f)
{
    if (!f->have_bw || f->adam_ready || f->align_ready)
        return;
    backward_free(&f->bw);
    free(f->losses);
    f->losses = NULL;
    f->have_bw = false;
}

void firstorder_free(firstorder *f)
{
    firstorder_align_release(f);
    firstorder_adam_release(f);
}

/* ---------------------------------------------------------------- ft-adam --- */

/* AdamW's settings follow the run's hyperparameters (lr, zo-adam's betas and
 * eps, weight decay), so the edit form and SET work for ft-adam too. */
static void adam_config_of(adamw_config *ac, const hparams *hp)
{
    ac->lr = hp->lr;
    ac->beta1 = hp->adam_beta1;
    ac->beta2 = hp->adam_beta2;
    ac->eps = hp->adam_eps;
    ac->weight_decay = hp->weight_decay;
}

hl_status firstorder_adam_prepare(firstorder *f, const hparams *hp, hl_err *err)
{
    if (f->adam_ready)
        return HL_OK;
    hl_status st = bw_need(f, "ft-adam", err);
    if (st)
        return st;
    adamw_config ac = adamw_config_default();
    adam_config_of(&ac, hp);
    if ((st = adamw_init(&f->aw, f->ps, &ac, f->workers, err))) {
        bw_drop(f);
        return st;
    }
    f->adam_ready = true;
    return HL_OK;
}

void firstorder_adam_release(firstorder *f)
{
    if (!f->adam_ready)
        return;
    adamw_free(&f->aw);
    f->adam_ready = false;
    bw_drop(f);
}

/* The true gradient at θ on step t's batch (batches are a pure function of
 * the step) into bw.grad, the per-example losses into f->losses. */
static hl_status true_gradient(firstorder *f, uint64_t t, int32_t *n, hl_err *err)
{
    int32_t B;
    hl_status st = objective_select_batch(f->obj, &B, t, err);
    if (st)
        return st;
    const cls_example *ex = taskobj_batch(f->task, n);
    backward_zero_grad(&f->bw);
    return backward_cls(&f->bw, f->losses, taskobj_scorer(f->task), ex, *n, 1.0, err);
}

static double ms_between(const struct timespec *a, const struct timespec *b)
{
    return ((double)(b->tv_sec - a->tv_sec) + 1e-9 * (double)(b->tv_nsec - a->tv_nsec)) * 1e3;
}

hl_status firstorder_adam_step(firstorder *f, const hparams *hp, uint64_t t, uint64_t seed,
                               hl_err *err)
{
    hl_status st = firstorder_adam_prepare(f, hp, err);
    if (st)
        return st;
    adam_config_of(&f->aw.cfg, hp);
    struct timespec a, b, c;
    int32_t n;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if ((st = true_gradient(f, t, &n, err)))
        return st;
    double mean = 0;
    for (int32_t i = 0; i < n; i++)
        mean += f->losses[i];
    mean = n ? mean / n : 0;
    if (!isfinite(mean))
        return hl_err_set(err, HL_ERR_NUMERIC, "step %llu: non-finite loss %g",
                          (unsigned long long)t, mean);
    clock_gettime(CLOCK_MONOTONIC, &b);
    adamw_stats as;
    if ((st = adamw_step(&f->aw, &as, f->bw.grad.data, err)))
        return st;
    clock_gettime(CLOCK_MONOTONIC, &c);
    optim_step_stats *S = &f->stats;
    uint64_t total = S->forwards_total;
    memset(S, 0, sizeof *S);
    S->step = t;
    S->method = OPTIM_METHOD_FT_ADAM;
    S->batch = n;
    S->loss_plus = S->loss_minus = mean;
    S->loss0 = S->proj_grad = S->q = S->alpha = S->h_scale = S->clip_rate = NAN;
    S->group = -1;
    S->lr = as.lr;
    S->forwards = 1; /* and one backward */
    S->forwards_total = total + 1;
    S->seed = seed;
    S->ms_forward = ms_between(&a, &b);
    S->ms_update = ms_between(&b, &c);
    return HL_OK;
}

hl_status firstorder_adam_write(const firstorder *f, const char *dir, hl_err *err)
{
    if (!f->adam_ready)
        return HL_OK;
    char p[4200];
    snprintf(p, sizeof p, "%s/adamw.safetensors", dir);
    return adamw_state_write(&f->aw, p, err);
}

hl_status firstorder_adam_read(firstorder *f, const hparams *hp, const char *dir, hl_err *err)
{
    hl_status st = firstorder_adam_prepare(f, hp, err);
    if (st)
        return st;
    char p[4200];
    snprintf(p, sizeof p, "%s/adamw.safetensors", dir);
    return adamw_state_read(&f->aw, p, err);
}

/* ---------------------------------------------------- gradient alignment --- */

hl_status firstorder_align_prepare(firstorder *f, hl_err *err)
{
    if (f->align_ready)
        return HL_OK;
    hl_status st = bw_need(f, "grad_alignment", err);
    if (st)
        return st;
    f->align_est = calloc(f->ps->n ? f->ps->n : 1, sizeof *f->align_est);
    if (!f->align_est) {
        bw_drop(f);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the alignment diagnostic");
    }
    f->align_ready = true;
    return HL_OK;
}

void firstorder_align_release(firstorder *f)
{
    if (!f->align_ready)
        return;
    free(f->align_est);
    f->align_est = NULL;
    f->align_ready = false;
    bw_drop(f);
}

/* The true gradient at θ_t on step t's batch (drawn again by the step). */
hl_status firstorder_align_before(firstorder *f, uint64_t t, hl_err *err)
{
    int32_t n;
    return true_gradient(f, t, &n, err);
}

/* cos(c·z, ∇L) with z regenerated exactly as the optimizer drew it:
 * z(seed_t, layer, i) for every element i of every layer. */
double firstorder_align_after(firstorder *f, const optim_step_stats *s)
{
    const param_set *ps = f->ps;
    for (int l = 0; l < ps->n_layers; l++) {
        float *z = f->align_est + ps->layers[l].offset;
        if (ps->layers[l].frozen) { /* neither estimated nor tuned */
            memset(z, 0, ps->layers[l].size * sizeof *z);
            memset(f->bw.grad.data + ps->layers[l].offset, 0, ps->layers[l].size * sizeof *z);
            continue;
        }
        rng_normal_fill(z, s->seed, (uint32_t)l, 0, ps->layers[l].size);
        const float c = (float)s->proj_grad;
        for (size_t i = 0; i < ps->layers[l].size; i++)
            z[i] *= c;
    }
    return backward_cosine(&f->bw, f->align_est);
}

/* optim_lnewton.c - layer-sampled Newton ZO: each step probes one
 * group of layers (a module by default: a Linear's weight + bias, a
 * LayerNorm), measures that group's curvature with a second difference every
 * K of its probes, and takes a Newton-scaled step on it; the group is drawn
 * in proportion to the loss it can still give.
 *
 * Per group l (d_l tuned floats): h_l (curvature), s_l (score), n_l (probes).
 *   l = the first group never probed (warm-up), else drawn with
 *       P(l) = s_l (d_l + 2) / Σ_j s_j (d_j + 2)   (or uniform, or the largest)
 *   z ~ N(0, I) on group l only; ε_l = ε max(1, sqrt(65536 / d_l)) (eps_scale)
 *   L± = L_B(θ ± ε_l z);  c = (L+ − L−) / (2 ε_l)
 *   n_l mod K == 0:  L0 = L_B(θ);  ĥ = max((L+ + L− − 2 L0) / (ε_l² ‖z‖²), h_min)
 *                    h_l = ĥ on the first probe, else β_h h_l + (1 − β_h) ĥ
 *   θ_l ← θ_l − η c z / (h_l (‖z‖² + 2))
 *   ĝ = c² / (h_l (d_l + 2));  s_l = ĝ first, else β_s s_l + (1 − β_s) ĝ
 *   s_l ← s_l (1 − η (2 − η) / (d_l + 2));  n_l += 1
 * Costs: the perturbation and update passes touch d_l floats; when the
 * objective evaluates in stages (a model: embeddings, blocks, top), the first
 * forward of a step keeps the activations at the input of the group's stage
 * and the other forwards of the step start there.  So a step is one full
 * forward plus one (or, on refresh, two) partial ones.
 *
 * The restore of θ − ε_l z and the update are one pass: θ += (ε_l − step) z.
 */
#include "optim_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

#define EPS_SCALE_REF 65536.0 /* groups smaller than this get a larger ε */

typedef struct lnewton {
    int32_t granularity;    /* the grouping this state belongs to */
    int32_t n_groups;
    int64_t shape_g;        /* n_groups, as a tensor shape */
    double *h, *s, *n;      /* [G]; n: probes so far (exact up to 2^53) */
    double *floored;        /* [G] 1 when the last ĥ was below h_min */
    double *d;              /* [G] tuned floats (0: every layer frozen) */
} lnewton;

static void ln_free(void *p)
{
    lnewton *ln = p;
    if (!ln)
        return;
    free(ln->h);
    free(ln->s);
    free(ln->n);
    free(ln->floored);
    free(ln->d);
    free(ln);
}

static hl_status ln_new(const optim *o, void **out, hl_err *err)
{
    lnewton *ln = calloc(1, sizeof *ln);
    if (!ln)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for layer-newton's state");
    const grouping *g = &o->groups[o->hp.groups];
    size_t G = (size_t)g->n_groups;
    ln->granularity = o->hp.groups;
    ln->n_groups = g->n_groups;
    ln->shape_g = g->n_groups;
    ln->h = calloc(G ? G : 1, sizeof(double));
    ln->s = calloc(G ? G : 1, sizeof(double));
    ln->n = calloc(G ? G : 1, sizeof(double));
    ln->floored = calloc(G ? G : 1, sizeof(double));
    ln->d = calloc(G ? G : 1, sizeof(double));
    if (!ln->h || !ln->s || !ln->n || !ln->floored || !ln->d) {
        ln_free(ln);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for layer-newton's state");
    }
    for (int l = 0; l < o->ps->n_layers; l++)
        if (!o->ps->layers[l].frozen)
            ln->d[g->group_of_layer[l]] += (double)o->ps->layers[l].size;
    *out = ln;
    return HL_OK;
}

/* Uniform in [0, 1) from the step's own stream. */
static double step_uniform(const optim *o, uint64_t t)
{
    return (double)(rng_step_seed(o->run_seed, t, PROBE_PICK) >> 11) * 0x1.0p-53;
}

/* The group of step t: warm-up in order, then by the sampling rule.  -1 when
 * every group is frozen. */
static int32_t pick_group(const optim *o, const lnewton *ln, uint64_t t)
{
    int32_t G = ln->n_groups, first = -1, n_active = 0;
    for (int32_t g = 0; g < G; g++) {
        if (ln->d[g] <= 0)
            continue;
        if (ln->n[g] == 0)
            return g;
        if (first < 0)
            first = g;
        n_active++;
    }
    if (first < 0)
        return -1;
    double u = step_uniform(o, t);
    if (o->hp.sampling == GROUP_SAMPLING_PROPORTIONAL || o->hp.sampling == GROUP_SAMPLING_GREEDY) {
        double total = 0, best = -1;
        int32_t arg = first;
        for (int32_t g = 0; g < G; g++) {
            if (ln->d[g] <= 0)
                continue;
            double w = ln->s[g] * (ln->d[g] + 2.0);
            total += w;
            if (w > best)
                best = w, arg = g;
        }
        if (o->hp.sampling == GROUP_SAMPLING_GREEDY)
            return arg;
        if (total > 0 && isfinite(total)) {
            double target = u * total, acc = 0;
            int32_t last = first;
            for (int32_t g = 0; g < G; g++) {
                if (ln->d[g] <= 0)
                    continue;
                acc += ln->s[g] * (ln->d[g] + 2.0);
                last = g;
                if (acc > target)
                    return g;
            }
            return last; /* rounding: the sum fell short of the target */
        }
        /* every score 0 (nothing left to gain, or underflow): uniform */
    }
    int32_t k = (int32_t)(u * n_active);
    k = k < n_active ? k : n_active - 1;
    for (int32_t g = 0; g < G; g++)
        if (ln->d[g] > 0 && k-- == 0)
            return g;
    return first;
}

double optim_lnewton_eps(const hparams *hp, double d)
{
    if (!hp->eps_scale || d <= 0 || d >= EPS_SCALE_REF)
        return hp->eps;
    return hp->eps * sqrt(EPS_SCALE_REF / d);
}

static hl_status ln_step(optim *o, const objective *obj, uint64_t t, uint64_t tl, hl_err *err)
{
    (void)tl;
    lnewton *ln = o->mstate;
    const hparams *hp = &o->hp;
    const grouping *g = &o->groups[ln->granularity];
    const int L = o->ps->n_layers;
    optim_step_stats *S = &o->stats;

    const int32_t gi = pick_group(o, ln, t);
    if (gi < 0)
        return hl_err_set(err, HL_ERR_INVALID, "layer-newton: every layer is frozen");
    const uint32_t *ids = g->ids + g->start[gi];
    const size_t nid = g->start[gi + 1] - g->start[gi];
    const double d = ln->d[gi], eps = optim_lnewton_eps(hp, d);
    const bool refresh = fmod(ln->n[gi], (double)hp->newton_k) == 0;
    /* the forwards share what lies below the group's first stage */
    int32_t stage = INT32_MAX;
    for (int l = 0; l < L; l++)
        if (g->group_of_layer[l] == gi && !o->ps->layers[l].frozen) {
            int32_t s = objective_layer_stage(obj, l);
            stage = s < stage ? s : stage;
        }
    stage = stage == INT32_MAX || !hp->share_forward ? 0 : stage;
    S->refresh = refresh;
    S->group = gi;

    int32_t B;
    hl_status st = oi_select_batch(o, obj, t, &B, err);
    if (st != HL_OK)
        return st;
    double *lp = o->loss_buf, *lm = lp + B, *l0 = lm + B;
    const uint64_t seed = S->seed;
    perturb_state pst = {0};
    double L0 = NAN;
    /* the step's first forward keeps the input of the group's stage (save),
     * the others start there (start); stage 0: full forwards throughout */
    int32_t save = stage, start = 0;

    if (refresh) {
        if ((st = oi_forward_staged(o, obj, l0, B, save, start, "loss at theta", err)) != HL_OK)
            return st;
        save = 0, start = stage;
        L0 = oi_mean_of(l0, B);
    }
    oi_run_perturb(o, &pst, ids, nid, seed, eps, false, true, &S->ms_perturb);
    oi_reduce_to_layers(o, o->zsq_layer, o->piece_zsq, ids, nid);
    double zsq = 0;
    for (int l = 0; l < L; l++)
        zsq += o->zsq_layer[l];
    if ((st = oi_forward_staged(o, obj, lp, B, save, start, "+eps", err)) != HL_OK)
        goto fail;
    start = stage;
    oi_run_perturb(o, &pst, ids, nid, seed, -2.0 * eps, false, false, &S->ms_perturb);
    if ((st = oi_forward_staged(o, obj, lm, B, 0, start, "-eps", err)) != HL_OK)
        goto fail;

    const double Lp = oi_mean_of(lp, B), Lm = oi_mean_of(lm, B);
    const double c = (Lp - Lm) / (2.0 * eps);
    double h = ln->h[gi];
    if (refresh) {
        double hhat = (Lp + Lm - 2.0 * L0) / (eps * eps * zsq);
        ln->floored[gi] = !(hhat >= hp->h_min);
        hhat = hhat >= hp->h_min ? hhat : hp->h_min;
        h = ln->n[gi] == 0 ? hhat : hp->beta_h * h + (1.0 - hp->beta_h) * hhat;
    }
    const double eta = hp->lr;
    const double step = eta * c / (h * (zsq + 2.0));
    /* θ = θ0 − ε z now: restore and update in one pass */
    oi_run_perturb(o, &pst, ids, nid, seed, eps - step, false, false, &S->ms_update);
    const double ghat = c * c / (h * (d + 2.0));
    double s = ln->n[gi] == 0 ? ghat : hp->beta_s * ln->s[gi] + (1.0 - hp->beta_s) * ghat;
    s *= 1.0 - eta * (2.0 - eta) / (d + 2.0);
    ln->h[gi] = h;
    ln->s[gi] = s;
    ln->n[gi] += 1;

    S->loss_plus = Lp;
    S->loss_minus = Lm;
    S->loss0 = L0;
    S->group_h = h;
    S->proj_grad = c;
    S->q = c * c;
    double n_total = 0, n_floored = 0, n_measured = 0;
    for (int32_t q = 0; q < ln->n_groups; q++) {
        n_total += ln->n[q];
        if (ln->n[q] > 0 && ln->d[q] > 0) {
            n_measured++;
            n_floored += ln->floored[q];
        }
    }
    S->clip_rate = n_measured > 0 ? n_floored / n_measured : 0.0;
    for (int l = 0; l < L; l++) {
        int32_t q = g->group_of_layer[l];
        double size = (double)o->ps->layers[l].size;
        optim_layer_stats *ls = &o->lstats[l];
        ls->state_mean = ls->state_max = (float)ln->h[q];
        ls->lambda = (float)hp->h_min;
        ls->clip_rate = ln->n[q] > 0 ? (float)ln->floored[q] : 0.0f;
        ls->update_rms = q == gi ? (float)(fabs(step) * sqrt(o->zsq_layer[l] / size)) : 0.0f;
        ls->score = (float)ln->s[q];
        ls->probe_share = n_total > 0 ? (float)(ln->n[q] / n_total) : 0.0f;
        ls->group = q;
    }
    return HL_OK;

fail:
    oi_restore_perturb(o, &pst, &S->ms_perturb);
    return st;
}

static void ln_tensors(const optim *o, st_write_tensor *ts, int *k, int cap)
{
    const lnewton *ln = o->mstate;
    const double *arrs[4] = {ln->h, ln->s, ln->n, ln->floored};
    static const char *const names[4] = {"group_h", "group_s", "group_n", "group_floored"};
    for (int i = 0; i < 4 && *k < cap; i++)
        ts[(*k)++] = (st_write_tensor){.name = names[i], .dtype = ST_DTYPE_F64,
                                       .src = ST_SRC_RAW, .ndim = 1, .shape = &ln->shape_g,
                                       .data = arrs[i]};
}

/* Element q of an F64 tensor: tensor data in a file need not be aligned. */
static double f64_at(const st_tensor *t, int32_t q)
{
    double x;
    memcpy(&x, (const char *)t->data + (size_t)q * sizeof x, sizeof x);
    return x;
}

static hl_status ln_load(optim *o, const st_file *f, hl_err *err)
{
    lnewton *ln = o->mstate;
    static const char *const names[4] = {"group_h", "group_s", "group_n", "group_floored"};
    const st_tensor *t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = st_file_find(f, names[i]);
        if (!t[i])
            return hl_err_set(err, HL_ERR_FORMAT, "%s: missing optimizer state \"%s\"", f->path,
                              names[i]);
        if (t[i]->dtype != ST_DTYPE_F64 || t[i]->ndim != 1 || t[i]->shape[0] != ln->n_groups)
            return hl_err_set(err, HL_ERR_FORMAT,
                              "%s: optimizer state \"%s\" has the wrong size for %d groups "
                              "(resume with the run's own --groups and --trainable)",
                              f->path, names[i], (int)ln->n_groups);
        for (int32_t q = 0; q < ln->n_groups; q++) {
            double x = f64_at(t[i], q);
            bool ok = isfinite(x) && x >= 0;
            if (i == 2)
                ok = ok && x == floor(x) && x <= 0x1.0p53;
            if (i == 3)
                ok = x == 0 || x == 1;
            if (!ok)
                return hl_err_set(err, HL_ERR_FORMAT, "%s: %s[%d] is %g", f->path, names[i],
                                  (int)q, x);
        }
    }
    for (int32_t q = 0; q < ln->n_groups; q++) {
        double h = f64_at(t[0], q), n = f64_at(t[2], q);
        if (n > 0 && ln->d[q] > 0 && !(h > 0))
            return hl_err_set(err, HL_ERR_FORMAT, "%s: group_h[%d] is %g after %g probes",
                              f->path, (int)q, h, n);
    }
    size_t G = (size_t)ln->n_groups;
    memcpy(ln->h, t[0]->data, G * sizeof(double));
    memcpy(ln->s, t[1]->data, G * sizeof(double));
    memcpy(ln->n, t[2]->data, G * sizeof(double));
    memcpy(ln->floored, t[3]->data, G * sizeof(double));
    return HL_OK;
}

const optim_method_ops optim_ops_lnewton = {
    .step = ln_step,
    .state_new = ln_new,
    .state_free = ln_free,
    .state_tensors = ln_tensors,
    .state_load = ln_load,
};

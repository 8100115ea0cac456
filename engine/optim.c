/* optim.c - see optim.h and optim_internal.h.  Layout of this file: pieces
 * and groups (the fixed work split), the perturbation pass, life cycle and
 * hyperparameters, the step driver, checkpoints.  The methods' steps live in
 * optim_spsa.c and optim_lnewton.c.
 *
 * Why pieces: a pass must give the same bits for any thread count, and so
 * must its reductions.  The arena is cut at multiples of PIECE_FLOATS and at
 * layer boundaries; threads claim short runs of pieces from a shared counter
 * (whichever thread is free), each piece writes its partial sums to its own
 * slot, and the caller adds the slots in piece order.  Inside a piece, sums
 * go to 16 lane accumulators (element i to lane i % 16), again a fixed order.
 *
 * Size (~1,050 lines, issue 19): the object every method shares; the
 * checkpoint state (~300 lines, mostly validation of a file from outside) is
 * the next seam.
 */
#include "optim_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"
#include "safetensors.h"

/* ---- small helpers --------------------------------------------------- */

double oi_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

double optim_helene_alpha(const hparams *hp, uint64_t t)
{
    if (!hp->anneal)
        return 1.0;
    return hp->beta1 + (1.0 - hp->beta1) * exp(-(double)t / hparams_anneal_T(hp));
}

bool optim_helene_refresh(const hparams *hp, uint64_t t)
{
    return t >= 1 && (t - 1) % (uint64_t)hp->hess_interval == 0;
}

const optim_method_ops *optim_method_ops_of(int32_t method)
{
    return method == OPTIM_METHOD_LAYER_NEWTON ? &optim_ops_lnewton : &optim_ops_spsa;
}

static bool method_needs_m(int32_t m)
{
    return m == OPTIM_METHOD_ZO_SGD_MMT || m == OPTIM_METHOD_ZO_ADAM || m == OPTIM_METHOD_HELENE;
}
static bool method_needs_h(int32_t m)
{
    return m == OPTIM_METHOD_HIZOO || m == OPTIM_METHOD_HELENE;
}
static bool method_needs_v(int32_t m)
{
    return m == OPTIM_METHOD_ZO_ADAM;
}

/* A state arena, every page written here: calloc's untouched zero pages
 * would fault on the first update pass instead (a read maps the shared zero
 * page, the write then copies it, with TLB shoot-downs across the compute
 * threads), which made HELENE's first step up to 2,600x a later one (issue
 * 12).  Writing on one thread here costs far less.  Since the pages are
 * resident at once, a run's optimizer is created with the run's own method
 * (optim_init_hp), never with another method's state first. */
float *oi_arena_alloc(size_t n, float fill)
{
    float *a = param_arena_alloc((n ? n : 16) * sizeof(float));
    if (!a)
        return NULL;
    for (size_t i = 0; i < n; i++)
        a[i] = fill;
    return a;
}

/* The same for 16-bit state. */
uint16_t *oi_arena_alloc16(size_t n, uint16_t fill)
{
    uint16_t *a = param_arena_alloc((n ? n : 32) * sizeof(uint16_t));
    if (!a)
        return NULL;
    for (size_t i = 0; i < n; i++)
        a[i] = fill;
    return a;
}

/* ---- pieces and groups ------------------------------------------------ */

/* Two tensors of one module: names equal up to a last ".weight" / ".bias"
 * (a Linear's weight and bias, a LayerNorm's; GPT-2's c_attn is one). */
static bool same_module(const char *a, const char *b)
{
    const char *da = strrchr(a, '.'), *db = strrchr(b, '.');
    size_t la = da ? (size_t)(da - a) : strlen(a), lb = db ? (size_t)(db - b) : strlen(b);
    bool ka = da && (!strcmp(da, ".weight") || !strcmp(da, ".bias"));
    bool kb = db && (!strcmp(db, ".weight") || !strcmp(db, ".bias"));
    return ka && kb && la == lb && !strncmp(a, b, la);
}

static hl_status build_pieces(optim *o, hl_err *err)
{
    const param_set *ps = o->ps;
    size_t n = 0;
    o->soff = malloc((size_t)ps->n_layers * sizeof *o->soff);
    if (!o->soff)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the optimizer work split");
    o->n_state = 0;
    for (int l = 0; l < ps->n_layers; l++) {
        size_t off = ps->layers[l].offset, size = ps->layers[l].size;
        /* frozen layers get neither pieces nor state: no pass ever sees them */
        o->soff[l] = o->n_state;
        if (ps->layers[l].frozen)
            continue;
        o->n_state += param_padded_size(size); /* = ps->n when nothing is frozen */
        size_t first = off / PIECE_FLOATS, last = (off + size - 1) / PIECE_FLOATS;
        n += last - first + 1;
    }
    o->pieces = malloc((n ? n : 1) * sizeof *o->pieces);
    o->all_ids = malloc((n ? n : 1) * sizeof *o->all_ids);
    o->piece_zsq = calloc(n ? n : 1, sizeof *o->piece_zsq);
    o->piece_acc = calloc(n ? n : 1, sizeof *o->piece_acc);
    if (!o->pieces || !o->all_ids || !o->piece_zsq || !o->piece_acc)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the optimizer work split");
    size_t k = 0;
    for (int l = 0; l < ps->n_layers; l++) {
        size_t off = ps->layers[l].offset, size = ps->layers[l].size;
        if (ps->layers[l].frozen)
            continue;
        for (size_t i = 0; i < size;) {
            size_t pos = off + i;
            size_t bound = (pos / PIECE_FLOATS + 1) * PIECE_FLOATS;
            size_t len = bound - pos < size - i ? bound - pos : size - i;
            o->pieces[k] = (piece){.layer = l, .begin = i, .end = i + len};
            o->all_ids[k] = (uint32_t)k;
            k++;
            i += len;
        }
    }
    o->n_pieces = k;
    for (int gr = 0; gr < LAYER_GRANULARITY_COUNT; gr++) {
        grouping *g = &o->groups[gr];
        int L = ps->n_layers;
        g->group_of_layer = malloc((L ? (size_t)L : 1) * sizeof *g->group_of_layer);
        g->start = calloc((size_t)L + 2, sizeof *g->start);
        g->ids = malloc((k ? k : 1) * sizeof *g->ids);
        int32_t *block_ids = malloc((L ? (size_t)L : 1) * sizeof *block_ids);
        if (!g->group_of_layer || !g->start || !g->ids || !block_ids) {
            free(block_ids);
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the optimizer groups");
        }
        int32_t ng = 0;
        for (int l = 0; l < L; l++) {
            if (gr == LAYER_GRANULARITY_TENSOR) {
                g->group_of_layer[l] = ng++;
                continue;
            }
            int32_t found = -1;
            if (gr == LAYER_GRANULARITY_MODULE) { /* block_ids: each group's first layer */
                for (int32_t q = 0; q < ng && found < 0; q++)
                    if (same_module(ps->layers[block_ids[q]].name, ps->layers[l].name))
                        found = q;
                if (found < 0) {
                    block_ids[ng] = l;
                    found = ng++;
                }
                g->group_of_layer[l] = found;
                continue;
            }
            for (int32_t q = 0; q < ng; q++)
                if (block_ids[q] == ps->layers[l].block)
                    found = q;
            if (found < 0) {
                block_ids[ng] = ps->layers[l].block;
                found = ng++;
            }
            g->group_of_layer[l] = found;
        }
        free(block_ids);
        g->n_groups = ng;
        /* counting sort of pieces by group keeps position order inside a group */
        for (size_t p = 0; p < k; p++)
            g->start[g->group_of_layer[o->pieces[p].layer] + 1]++;
        for (int32_t q = 0; q < ng; q++)
            g->start[q + 1] += g->start[q];
        size_t *fill = calloc((size_t)ng + 1, sizeof *fill);
        if (!fill)
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the optimizer groups");
        for (size_t p = 0; p < k; p++) {
            int32_t q = g->group_of_layer[o->pieces[p].layer];
            g->ids[g->start[q] + fill[q]++] = (uint32_t)p;
        }
        free(fill);
    }
    return HL_OK;
}

void oi_reduce_to_layers(const optim *o, double *layer_out, const double *piece_vals,
                             const uint32_t *ids, size_t n_ids)
{
    for (int l = 0; l < o->ps->n_layers; l++)
        layer_out[l] = 0;
    for (size_t k = 0; k < n_ids; k++) {
        uint32_t p = ids[k];
        layer_out[o->pieces[p].layer] += piece_vals[p];
    }
}

double oi_group_mean(const optim *o, const grouping *g, const double *X, int32_t group)
{
    double s = 0, n = 0;
    for (int l = 0; l < o->ps->n_layers; l++)
        if (g->group_of_layer[l] == group && !o->ps->layers[l].frozen) {
            s += X[l];
            n += (double)o->ps->layers[l].size;
        }
    return n > 0 ? s / n : 0.0;
}

/* ---- the perturbation pass -------------------------------------------- */

static inline __attribute__((always_inline)) void axpy_span(float *restrict th,
                                                            const float *restrict z, float s,
                                                            size_t n)
{
    for (size_t i = 0; i < n; i++)
        th[i] += s * z[i];
}

static inline __attribute__((always_inline)) double sumsq_span(const float *restrict z, size_t n)
{
    double acc[ACC_LANES] = {0};
    for (size_t i = 0; i < n; i++)
        acc[i % ACC_LANES] += (double)z[i] * z[i];
    double s = 0;
    for (int j = 0; j < ACC_LANES; j++)
        s += acc[j];
    return s;
}

static void perturb_piece(const pass_job *j, uint32_t p)
{
    const optim *o = j->o;
    const piece *pc = &o->pieces[p];
    double *zsq_out = j->want_zsq ? &o->piece_zsq[p] : NULL;
    float *th = param_layer_data(o->ps, pc->layer);
    const float *H = j->hizoo_scale && o->h ? o->h + o->soff[pc->layer] : NULL;
    const uint16_t *H16 = j->hizoo_scale && o->h16 ? o->h16 + o->soff[pc->layer] : NULL;
    /* HELENE precondition=perturbation: this layer's probe scale */
    const float scale = o->probe_lscale ? j->scale * o->probe_lscale[pc->layer] : j->scale;
    if (!H && !H16 && !zsq_out) {
        /* the common pass: normals straight from registers into θ */
        rng_normal_axpy(th + pc->begin, scale, j->seed, (uint32_t)pc->layer, pc->begin,
                        pc->end - pc->begin);
        return;
    }
    float z[SUB];
    double zsq = 0;
    for (size_t i0 = pc->begin; i0 < pc->end; i0 += SUB) {
        size_t n = pc->end - i0 < SUB ? pc->end - i0 : SUB;
        rng_normal_fill(z, j->seed, (uint32_t)pc->layer, i0, n);
        if (j->want_zsq)
            zsq += n == SUB ? sumsq_span(z, SUB) : sumsq_span(z, n);
        if (H || H16) {
            float rt[SUB], hw[SUB];
            if (H16)
                for (size_t i = 0; i < n; i++)
                    hw[i] = oi_bf16_to_f32(H16[i0 + i]);
            sqrt_span(rt, H16 ? hw : H + i0, n);
            for (size_t i = 0; i < n; i++)
                z[i] = z[i] / rt[i];
        }
        if (n == SUB)
            axpy_span(th + i0, z, scale, SUB);
        else
            axpy_span(th + i0, z, scale, n);
    }
    if (zsq_out)
        *zsq_out = zsq;
}

/* Threads claim runs of CLAIM_PIECES pieces (256 KiB of θ) from a shared
 * counter instead of taking fixed shares: when another process holds one of
 * the cores, or a worker wakes late, a fixed split waits for the slowest
 * thread while claims let the others take more of the pass.  Which thread
 * runs a piece changes nothing: each piece writes only its own elements and
 * its own slot. */
#define CLAIM_PIECES 4

static void pass_thread(void *arg, int tid, int nth)
{
    pass_job *j = arg;
    (void)tid, (void)nth;
    for (;;) {
        size_t b = atomic_fetch_add_explicit(&j->next, CLAIM_PIECES, memory_order_relaxed);
        if (b >= j->n_ids)
            break;
        size_t e = j->n_ids - b < CLAIM_PIECES ? j->n_ids : b + CLAIM_PIECES;
        for (size_t k = b; k < e; k++) {
            j->fn(j, j->ids[k]);
        }
    }
}

void oi_run_pass(optim *o, pass_job *j)
{
    atomic_init(&j->next, 0);
    pool_run(o->workers, pass_thread, j);
}

void oi_run_perturb(optim *o, perturb_state *ps_, const uint32_t *ids, size_t n_ids,
                    uint64_t seed, double scale, bool hizoo, bool want_zsq, double *ms)
{
    double t0 = oi_now_ms();
    pass_job j = {.o = o, .fn = perturb_piece, .ids = ids, .n_ids = n_ids, .seed = seed,
                  .scale = (float)scale, .hizoo_scale = hizoo, .want_zsq = want_zsq};
    oi_run_pass(o, &j);
    if (!ps_->active || ps_->seed != seed || ps_->ids != ids) {
        ps_->active = true;
        ps_->seed = seed;
        ps_->offset = 0;
        ps_->ids = ids;
        ps_->n_ids = n_ids;
        ps_->hizoo = hizoo;
    }
    ps_->offset += scale;
    if (ps_->offset == 0)
        ps_->active = false;
    *ms += oi_now_ms() - t0;
}

/* Undo the perturbation in flight: θ −= offset·z. */
void oi_restore_perturb(optim *o, perturb_state *ps_, double *ms)
{
    if (!ps_->active)
        return;
    /* a 2-element perturbation of −offset, not run_perturb: its bookkeeping
     * would treat this as a new perturbation */
    double t0 = oi_now_ms();
    pass_job j = {.o = o, .fn = perturb_piece, .ids = ps_->ids, .n_ids = ps_->n_ids,
                  .seed = ps_->seed, .scale = (float)(-ps_->offset), .hizoo_scale = ps_->hizoo};
    oi_run_pass(o, &j);
    ps_->active = false;
    *ms += oi_now_ms() - t0;
}

/* ---- life cycle --------------------------------------------------------- */

static void free_state(optim *o)
{
    if (o->mstate)
        optim_method_ops_of(o->state_method)->state_free(o->mstate);
    o->mstate = NULL;
    free(o->m);
    free(o->h);
    free(o->v);
    free(o->m16);
    free(o->h16);
    free(o->v16);
    o->m = o->h = o->v = NULL;
    o->m16 = o->h16 = o->v16 = NULL;
}

/* Allocate fresh state for `method`; on failure the old state is kept. */
static hl_status reset_state(optim *o, int32_t method, hl_err *err)
{
    size_t n = o->n_state ? o->n_state : 16;
    float *m = NULL, *h = NULL, *v = NULL;
    uint16_t *m16 = NULL, *h16 = NULL, *v16 = NULL;
    void *ms = NULL;
    const optim_method_ops *ops = optim_method_ops_of(method);
    if (ops->state_new) {
        hl_status st = ops->state_new(o, &ms, err);
        if (st != HL_OK)
            return st;
    }
    const float h0 = method == OPTIM_METHOD_HIZOO ? 1.0f : 0.0f; /* exact in bf16 */
    if (o->state16) {
        if (method_needs_m(method) && !(m16 = oi_arena_alloc16(n, 0)))
            goto nomem;
        if (method_needs_h(method) && !(h16 = oi_arena_alloc16(n, oi_f32_to_bf16_rne(h0))))
            goto nomem;
        if (method_needs_v(method) && !(v16 = oi_arena_alloc16(n, 0)))
            goto nomem;
    } else {
        if (method_needs_m(method) && !(m = oi_arena_alloc(n, 0.0f)))
            goto nomem;
        if (method_needs_h(method) && !(h = oi_arena_alloc(n, h0)))
            goto nomem;
        if (method_needs_v(method) && !(v = oi_arena_alloc(n, 0.0f)))
            goto nomem;
    }
    free_state(o);
    o->m = m, o->h = h, o->v = v;
    o->m16 = m16, o->h16 = h16, o->v16 = v16;
    o->mstate = ms;
    o->state_method = method;
    o->t_local = 0;
    o->have_first = false;
    o->n_refresh = 0;
    o->eff_precondition = o->eff_clip = true;
    o->last_hb = 1.0f;
    int L = o->ps->n_layers;
    for (int l = 0; l < L; l++) {
        o->first_hhat[l] = o->h_sum[l] = o->rel_mean[l] = 0;
        o->lam[l] = o->lam_on[l] = 0;
        o->ablate_scale[l] = 1.0f;
        o->meas_h[l] = 0;
    }
    o->n_meas = 0;
    o->meas_gran = o->hp.layer_granularity;
    if ((h || h16) && method == OPTIM_METHOD_HIZOO)
        for (int l = 0; l < L; l++)
            o->h_sum[l] = o->ps->layers[l].frozen ? 0.0 : (double)o->ps->layers[l].size;
    return HL_OK;
nomem:
    free(m);
    free(h);
    free(v);
    free(m16);
    free(h16);
    free(v16);
    if (ms)
        ops->state_free(ms);
    return hl_err_set(err, HL_ERR_NOMEM, "cannot allocate %zu MiB of optimizer state for %s",
                      n * (o->state16 ? sizeof(uint16_t) : sizeof(float)) >> 20,
                      optim_method_name(method));
}

void optim_free(optim *o)
{
    if (!o)
        return;
    free_state(o);
    hparams_free(&o->hp);
    free(o->pieces);
    free(o->all_ids);
    free(o->soff);
    for (int g = 0; g < LAYER_GRANULARITY_COUNT; g++) {
        free(o->groups[g].group_of_layer);
        free(o->groups[g].start);
        free(o->groups[g].ids);
    }
    free(o->piece_zsq);
    free(o->piece_acc);
    free(o->hhat_sum);
    free(o->first_hhat);
    free(o->h_sum);
    free(o->rel_mean);
    free(o->lam);
    free(o->lam_on);
    free(o->ablate_scale);
    free(o->zsq_layer);
    free(o->zsq_probe);
    free(o->h_pred);
    free(o->du2_layer);
    free(o->clip_layer);
    free(o->loss_buf);
    free(o->lstats);
    free(o->meas_h);
    free(o->meas_raw);
    free(o->lscale_buf);
    free(o);
}

hl_status optim_init(optim **out, param_set *ps, pool *workers, uint64_t run_seed, hl_err *err)
{
    return optim_init_hp(out, ps, workers, run_seed, NULL, err);
}

hl_status optim_init_hp(optim **out, param_set *ps, pool *workers, uint64_t run_seed,
                        const hparams *hp, hl_err *err)
{
    *out = NULL;
    if (!ps || !ps->data || ps->n_layers < 1)
        return hl_err_set(err, HL_ERR_INVALID, "optimizer needs an allocated param_set with layers");
    optim *o = calloc(1, sizeof *o);
    if (!o)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the optimizer");
    o->ps = ps;
    o->workers = workers;
    o->run_seed = run_seed;
    hparams_init(&o->hp);
    if (hp) {
        hparams tmp;
        if (hparams_copy(&tmp, hp, err) != HL_OK) {
            hparams_free(&o->hp);
            free(o);
            return err ? err->code : HL_ERR_NOMEM;
        }
        hparams_free(&o->hp);
        o->hp = tmp;
    }
    size_t L = (size_t)ps->n_layers;
    o->hhat_sum = calloc(L, sizeof(double));
    o->first_hhat = calloc(L, sizeof(double));
    o->h_sum = calloc(L, sizeof(double));
    o->rel_mean = calloc(L, sizeof(double));
    o->zsq_layer = calloc(L, sizeof(double));
    o->zsq_probe = calloc(L * HPARAMS_MAX_PROBES, sizeof(double));
    o->h_pred = calloc(L, sizeof(double));
    o->du2_layer = calloc(L, sizeof(double));
    o->clip_layer = calloc(L, sizeof(double));
    o->lam = calloc(L, sizeof(float));
    o->lam_on = calloc(L, sizeof(float));
    o->ablate_scale = calloc(L, sizeof(float));
    o->lstats = calloc(L, sizeof *o->lstats);
    o->meas_h = calloc(L, sizeof(double));
    o->meas_raw = calloc(L, sizeof(double));
    o->lscale_buf = calloc(L, sizeof(float));
    hl_status st = HL_OK;
    if (!o->meas_h || !o->meas_raw || !o->lscale_buf || !o->h_pred || !o->du2_layer ||
        !o->clip_layer)
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory for the optimizer");
    if (!o->hhat_sum || !o->first_hhat || !o->h_sum || !o->rel_mean || !o->zsq_layer ||
        !o->zsq_probe ||
        !o->lam || !o->lam_on || !o->ablate_scale || !o->lstats)
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory for the optimizer");
    for (size_t l = 0; st == HL_OK && l < L; l++)
        o->lstats[l] = (optim_layer_stats){.score = NAN, .probe_share = NAN, .group = -1};
    if (st == HL_OK)
        st = build_pieces(o, err);
    o->state16 = o->hp.state_bf16; /* the first state is allocated in its dtype */
    if (st == HL_OK)
        st = reset_state(o, o->hp.method, err);
    if (st != HL_OK) {
        optim_free(o);
        return st;
    }
    o->stats.alpha = NAN;
    o->stats.loss0 = NAN;
    o->stats.group = -1;
    o->stats.group_h = NAN;
    o->ablate_rms_before = NAN;
    *out = o;
    return HL_OK;
}

bool optim_ablation_report(const optim *o, double *before, double *raw, double *after)
{
    if (o->state_method != OPTIM_METHOD_HELENE || isnan(o->ablate_rms_before))
        return false;
    *before = o->ablate_rms_before;
    *raw = o->ablate_rms_raw;
    *after = o->ablate_rms_after;
    return true;
}

hl_status optim_set(optim *o, const char *key, const char *value, hl_err *err)
{
    hparams tmp;
    hl_status st = hparams_copy(&tmp, &o->hp, err);
    if (st != HL_OK)
        return st;
    st = hparams_set(&tmp, key, value, o->ps->n_layers, err);
    /* a new method, new groups for layer-newton or a new state dtype: fresh state */
    const bool was16 = o->state16;
    if (st == HL_OK && (tmp.method != o->state_method || tmp.state_bf16 != o->state16 ||
                        (tmp.method == OPTIM_METHOD_LAYER_NEWTON && tmp.groups != o->hp.groups))) {
        o->state16 = tmp.state_bf16;
        st = reset_state(o, tmp.method, err);
        if (st != HL_OK)
            o->state16 = was16;
    }
    if (st != HL_OK) {
        hparams_free(&tmp);
        return st;
    }
    hparams_free(&o->hp);
    o->hp = tmp;
    o->ablate_rms_before = NAN;
    if (o->state_method == OPTIM_METHOD_HELENE && o->t_local > 0 &&
        ((o->hp.precondition == PRECONDITION_ON) != o->eff_precondition || o->hp.clip != o->eff_clip))
        oi_helene_ablate_apply(o);
    return HL_OK;
}

hl_status optim_get(const optim *o, char *buf, size_t cap, const char *key, hl_err *err)
{
    return hparams_get(&o->hp, buf, cap, key, err);
}

void optim_share_probes(optim *o, int32_t rank, int32_t n, optim_probe_exchange fn, void *ctx)
{
    o->share_rank = rank;
    o->share_n = n > 1 && fn ? n : 1;
    o->share_fn = fn;
    o->share_ctx = ctx;
}

const hparams *optim_hparams(const optim *o)
{
    return &o->hp;
}

uint64_t optim_method_steps(const optim *o)
{
    return o->t_local;
}

uint64_t optim_steps_done(const optim *o)
{
    return o->t;
}

const optim_step_stats *optim_last_stats(const optim *o)
{
    return &o->stats;
}

const optim_layer_stats *optim_layer_stats_get(const optim *o)
{
    return o->lstats;
}

bool optim_state16(const optim *o)
{
    return o->state16;
}

/* Which of m (0), h (1), v (2) is the i-th arena the method keeps (-1:
 * none), and its name. */
static int nth_arena(const optim *o, int i, const char **name)
{
    const bool have[3] = {o->m || o->m16, o->h || o->h16, o->v || o->v16};
    const char *names[3] = {"m", o->state_method == OPTIM_METHOD_HIZOO ? "H" : "h", "v"};
    int k = 0;
    for (int a = 0; a < 3; a++)
        if (have[a] && k++ == i) {
            if (name)
                *name = names[a];
            return a;
        }
    return -1;
}

uint16_t *optim_state_arena16(const optim *o, int i, const char **name)
{
    uint16_t *arenas[3] = {o->m16, o->h16, o->v16};
    int a = o->state16 ? nth_arena(o, i, name) : -1;
    return a < 0 ? NULL : arenas[a];
}

float *optim_state_arena(const optim *o, int i, const char **name)
{
    float *arenas[3] = {o->m, o->h, o->v};
    int a = o->state16 ? -1 : nth_arena(o, i, name);
    return a < 0 ? NULL : arenas[a];
}

size_t optim_state_offset(const optim *o, int layer)
{
    return o->soff[layer];
}

size_t optim_state_size(const optim *o)
{
    return o->n_state;
}

/* ---- the step ------------------------------------------------------------ */

hl_status oi_select_batch(optim *o, const objective *obj, uint64_t t, int32_t *B, hl_err *err)
{
    hl_status st = objective_select_batch(obj, B, t, err);
    if (st != HL_OK)
        return hl_err_prefix(err, "step %llu: select batch", (unsigned long long)t);
    if ((st = oi_ensure_batch(o, *B, err)) != HL_OK)
        return st;
    o->stats.batch = *B;
    return HL_OK;
}

hl_status oi_ensure_batch(optim *o, int32_t B, hl_err *err)
{
    if (B <= o->cap_batch)
        return HL_OK;
    size_t n = (size_t)B * (2 * HPARAMS_MAX_PROBES + 3);
    double *buf = realloc(o->loss_buf, n * sizeof *buf);
    if (!buf)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for %d losses", (int)B);
    o->loss_buf = buf;
    o->cap_batch = B;
    return HL_OK;
}

hl_status oi_forward(optim *o, const objective *obj, double *losses, int32_t B,
                     const char *what, hl_err *err)
{
    return oi_forward_staged(o, obj, losses, B, 0, 0, what, err);
}

hl_status oi_forward_staged(optim *o, const objective *obj, double *losses, int32_t B,
                            int32_t save_stage, int32_t start_stage, const char *what,
                            hl_err *err)
{
    double t0 = oi_now_ms();
    hl_status st = objective_eval_staged(obj, losses, o->ps, o->workers, save_stage,
                                         start_stage, err);
    o->stats.ms_forward += oi_now_ms() - t0;
    o->stats.forwards++;
    o->forwards_total++;
    if (st != HL_OK) {
        hl_err_prefix(err, "step %llu: forward (%s)", (unsigned long long)(o->t + 1), what);
        return st;
    }
    for (int32_t b = 0; b < B; b++)
        if (!isfinite(losses[b]))
            return hl_err_set(err, HL_ERR_NUMERIC,
                              "step %llu: non-finite loss %g for example %d at the %s forward",
                              (unsigned long long)(o->t + 1), losses[b], (int)b, what);
    return HL_OK;
}

double oi_mean_of(const double *x, int32_t n)
{
    double s = 0;
    for (int32_t i = 0; i < n; i++)
        s += x[i];
    return s / n;
}

hl_status optim_step(optim *o, const objective *obj, hl_err *err)
{
    const hparams *hp = &o->hp;
    const int32_t method = hp->method;
    const uint64_t t = o->t + 1, tl = o->t_local + 1;
    if (method >= OPTIM_METHOD_COUNT)
        return hl_err_set(err, HL_ERR_INVALID,
                          "%s is a first-order method: the engine runs it with "
                          "backpropagation, not optim_step",
                          optim_method_name(method));
    if (o->state_method != method) { /* cannot happen through optim_set; be safe */
        hl_status st = reset_state(o, method, err);
        if (st != HL_OK)
            return st;
    }
    optim_step_stats *S = &o->stats;
    memset(S, 0, sizeof *S);
    S->step = t;
    S->method = method;
    S->lr = hp->lr;
    S->alpha = S->h_scale = S->clip_rate = S->loss0 = NAN;
    S->group = -1;
    S->group_h = NAN;
    S->seed = rng_step_seed(o->run_seed, t, 0);
    hl_status st = optim_method_ops_of(method)->step(o, obj, t, tl, err);
    if (st != HL_OK)
        return st;
    o->t = t;
    o->t_local = tl;
    S->forwards_total = o->forwards_total;
    return HL_OK;
}

/* ------------------------------------------------ checkpoint state --- */

/* Which layers are tuned, as hex digits of a bit mask (bit l of the whole
 * string = layer l is frozen; "" when nothing is): a checkpoint's state is
 * only valid for the same set. */
static char *frozen_mask(const param_set *ps)
{
    int nd = (ps->n_layers + 3) / 4;
    char *s = calloc((size_t)nd + 1, 1);
    if (!s)
        return NULL;
    bool any = false;
    for (int d = 0; d < nd; d++) {
        int v = 0;
        for (int b = 0; b < 4; b++) {
            int l = d * 4 + b;
            if (l < ps->n_layers && ps->layers[l].frozen) {
                v |= 1 << b;
                any = true;
            }
        }
        s[d] = "0123456789abcdef"[v];
    }
    if (!any)
        s[0] = '\0';
    return s;
}

/* Everything a resumed run needs besides θ and the hyperparameters: the
 * state arenas, the step counters and HELENE's per-layer floor
 * bookkeeping.  Scratch buffers are not saved: they are rewritten before
 * being read in every step. */
hl_status optim_state_write(const optim *o, const char *path, hl_err *err)
{
    const param_set *ps = o->ps;
    int64_t n = (int64_t)o->n_state, L = ps->n_layers;
    st_write_tensor ts[16];
    int k = 0;
    const void *arenas[3] = {o->m, o->h, o->v};
    if (o->state16) /* bf16 as kept: a resume continues bit for bit */
        arenas[0] = o->m16, arenas[1] = o->h16, arenas[2] = o->v16;
    static const char *const names[3] = {"m", "h", "v"};
    for (int i = 0; i < 3; i++)
        if (arenas[i])
            ts[k++] = (st_write_tensor){.name = names[i],
                                        .dtype = o->state16 ? ST_DTYPE_BF16 : ST_DTYPE_F32,
                                        .src = ST_SRC_RAW, .ndim = 1, .shape = &n,
                                        .data = arenas[i]};
    ts[k++] = (st_write_tensor){.name = "first_hhat", .dtype = ST_DTYPE_F64, .src = ST_SRC_RAW,
                                .ndim = 1, .shape = &L, .data = o->first_hhat};
    ts[k++] = (st_write_tensor){.name = "rel_mean", .dtype = ST_DTYPE_F64, .src = ST_SRC_RAW,
                                .ndim = 1, .shape = &L, .data = o->rel_mean};
    ts[k++] = (st_write_tensor){.name = "h_sum", .dtype = ST_DTYPE_F64, .src = ST_SRC_RAW,
                                .ndim = 1, .shape = &L, .data = o->h_sum};
    ts[k++] = (st_write_tensor){.name = "lam", .dtype = ST_DTYPE_F32, .src = ST_SRC_RAW,
                                .ndim = 1, .shape = &L, .data = o->lam};
    ts[k++] = (st_write_tensor){.name = "lam_on", .dtype = ST_DTYPE_F32, .src = ST_SRC_RAW,
                                .ndim = 1, .shape = &L, .data = o->lam_on};
    ts[k++] = (st_write_tensor){.name = "ablate_scale", .dtype = ST_DTYPE_F32,
                                .src = ST_SRC_RAW, .ndim = 1, .shape = &L,
                                .data = o->ablate_scale};
    if (o->n_meas > 0) /* HELENE's measured layer curvature */
        ts[k++] = (st_write_tensor){.name = "meas_h", .dtype = ST_DTYPE_F64, .src = ST_SRC_RAW,
                                    .ndim = 1, .shape = &L, .data = o->meas_h};
    const optim_method_ops *ops = optim_method_ops_of(o->state_method);
    if (ops->state_tensors)
        ops->state_tensors(o, ts, &k, (int)(sizeof ts / sizeof ts[0]));
    char t[32], tl[32], fw[32], nr[32], eff[8], nm[48];
    snprintf(nm, sizeof nm, "%llu/%d", (unsigned long long)o->n_meas, (int)o->meas_gran);
    snprintf(eff, sizeof eff, "%d%d", o->eff_precondition, o->eff_clip);
    snprintf(nr, sizeof nr, "%llu", (unsigned long long)o->n_refresh);
    snprintf(t, sizeof t, "%llu", (unsigned long long)o->t);
    snprintf(tl, sizeof tl, "%llu", (unsigned long long)o->t_local);
    snprintf(fw, sizeof fw, "%llu", (unsigned long long)o->forwards_total);
    char *fm = frozen_mask(ps);
    if (!fm)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    const char *meta[] = {"format", "helene-optim-state", "method",
                          optim_method_name(o->state_method), "t", t, "t_local", tl,
                          "forwards_total", fw, "have_first", o->have_first ? "1" : "0",
                          "n_refresh", nr, "ablation", eff, "measured", nm,
                          "frozen_layers", fm};
    int n_meta = (int)(sizeof meta / sizeof meta[0] / 2) - (fm[0] ? 0 : 1);
    hl_status st = st_write(path, ts, k, meta, n_meta, err);
    free(fm);
    return st;
}

static hl_status meta_u64(uint64_t *out, const st_file *f, const char *key, hl_err *err)
{
    const char *v = st_file_meta(f, key);
    char *end;
    if (!v || !*v)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: missing \"%s\" in __metadata__", f->path, key);
    /* digits only: strtoull would take " 5", "+5" and "-1" (as 2^64 - 1) */
    if (strspn(v, "0123456789") != strlen(v))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: \"%s\" is not a whole number >= 0: \"%.30s\"",
                          f->path, key, v);
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (*end || errno == ERANGE)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: \"%s\" is out of range: \"%.30s\"", f->path,
                          key, v);
    *out = x;
    return HL_OK;
}

static const st_tensor *state_tensor(const st_file *f, const char *name, st_dtype dt,
                                     int64_t n, bool required, hl_err *err, hl_status *st)
{
    const st_tensor *t = st_file_find(f, name);
    if (!t) {
        if (required)
            *st = hl_err_set(err, HL_ERR_FORMAT, "%s: missing optimizer state \"%s\"", f->path,
                             name);
        return NULL;
    }
    if (t->dtype != dt || t->ndim != 1 || t->shape[0] != n) {
        *st = hl_err_set(err, HL_ERR_FORMAT,
                         "%s: optimizer state \"%s\" has the wrong size for this model and "
                         "trainable set",
                         f->path, name);
        return NULL;
    }
    return t;
}

hl_status optim_state_read(optim *o, const char *path, hl_err *err)
{
    st_file f;
    hl_status st = st_file_open(&f, path, err);
    if (st)
        return st;
    const char *fmt = st_file_meta(&f, "format"), *method = st_file_meta(&f, "method");
    uint64_t t = 0, tl = 0, fw = 0, hf = 0;
    if (!fmt || strcmp(fmt, "helene-optim-state"))
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: not a helene optimizer state", path);
    else if (!method || strcmp(method, optim_method_name(o->state_method)))
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: state of optimizer %s, but the run uses %s (switch with "
                        "--optimizer %s, or resume without changing it)",
                        path, method ? method : "?", optim_method_name(o->state_method),
                        method ? method : "?");
    if (!st)
        st = meta_u64(&t, &f, "t", err);
    if (!st)
        st = meta_u64(&tl, &f, "t_local", err);
    if (!st)
        st = meta_u64(&fw, &f, "forwards_total", err);
    if (!st && !(st = meta_u64(&hf, &f, "have_first", err)) && hf > 1)
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: \"have_first\" must be 0 or 1", path);
    /* n_refresh came with hess_debias; a state written before has none and
     * its h was never corrected, so it resumes as if long warmed up */
    uint64_t nr = UINT64_MAX / 2;
    if (!st && st_file_meta(&f, "n_refresh"))
        st = meta_u64(&nr, &f, "n_refresh", err);
    if (!st) {
        const char *theirs = st_file_meta(&f, "frozen_layers");
        char *ours = frozen_mask(o->ps);
        if (!ours)
            st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
        else if (strcmp(theirs ? theirs : "", ours))
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: the checkpoint tuned a different set of tensors (--trainable); "
                            "resume with the run's own --trainable",
                            path);
        free(ours);
    }
    const int64_t n = (int64_t)o->n_state, L = o->ps->n_layers;
    void *arenas[3] = {o->m, o->h, o->v};
    if (o->state16)
        arenas[0] = o->m16, arenas[1] = o->h16, arenas[2] = o->v16;
    const st_dtype sdt = o->state16 ? ST_DTYPE_BF16 : ST_DTYPE_F32;
    const size_t esz = o->state16 ? sizeof(uint16_t) : sizeof(float);
    static const char *const names[3] = {"m", "h", "v"};
    const st_tensor *at[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3 && !st; i++) {
        if (!arenas[i])
            continue;
        const st_tensor *x = st_file_find(&f, names[i]);
        if (x && x->dtype != sdt && (x->dtype == ST_DTYPE_F32 || x->dtype == ST_DTYPE_BF16))
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: the optimizer state is %s, this run keeps "
                            "it in %s: resume with state_bf16 %s (as the checkpoint's run)",
                            path, x->dtype == ST_DTYPE_BF16 ? "bf16" : "fp32",
                            o->state16 ? "bf16" : "fp32", o->state16 ? "off" : "on");
        else
            at[i] = state_tensor(&f, names[i], sdt, n, true, err, &st);
    }
    const st_tensor *fh = NULL, *rm = NULL, *hs = NULL, *lam = NULL;
    if (!st)
        fh = state_tensor(&f, "first_hhat", ST_DTYPE_F64, L, true, err, &st);
    if (!st)
        rm = state_tensor(&f, "rel_mean", ST_DTYPE_F64, L, true, err, &st);
    if (!st)
        hs = state_tensor(&f, "h_sum", ST_DTYPE_F64, L, true, err, &st);
    if (!st)
        lam = state_tensor(&f, "lam", ST_DTYPE_F32, L, true, err, &st);
    /* lam_on, ablate_scale and "ablation" (precondition, clip in effect)
     * came with the size-keeping ablations; older states have neither */
    const st_tensor *lon = NULL, *asc = NULL;
    if (!st)
        lon = state_tensor(&f, "lam_on", ST_DTYPE_F32, L, false, err, &st);
    if (!st)
        asc = state_tensor(&f, "ablate_scale", ST_DTYPE_F32, L, false, err, &st);
    const char *abl = st_file_meta(&f, "ablation");
    if (!st && abl && (strlen(abl) != 2 || strspn(abl, "01") != 2))
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: \"ablation\" must be two of 0/1, not \"%.20s\"",
                        path, abl);
    /* the per-layer bookkeeping and the state are numbers a step divides
     * by or adds to: a NaN or a negative curvature would poison the run */
    const st_tensor *nonneg[] = {fh, rm, hs, lam, lon};
    static const char *const nonneg_name[] = {"first_hhat", "rel_mean", "h_sum", "lam", "lam_on"};
    for (int k = 0; k < 5 && !st; k++) {
        const st_tensor *bt = nonneg[k];
        for (int64_t l = 0; bt && l < L && !st; l++) {
            double x; /* by memcpy: tensor data in a file need not be aligned */
            if (bt->dtype == ST_DTYPE_F64)
                memcpy(&x, (const char *)bt->data + (size_t)l * sizeof x, sizeof x);
            else {
                float xf;
                memcpy(&xf, (const char *)bt->data + (size_t)l * sizeof xf, sizeof xf);
                x = xf;
            }
            if (!(x >= 0) || !isfinite(x))
                st = hl_err_set(err, HL_ERR_FORMAT, "%s: %s[%lld] is %g, not a finite number >= 0",
                                path, nonneg_name[k], (long long)l, x);
        }
    }
    for (int i = 0; i < 3 && !st; i++) {
        if (!at[i])
            continue;
        const float *a = at[i]->data;
        const uint16_t *a16 = at[i]->data;
        for (int64_t k = 0; k < n && !st; k++) {
            float x = o->state16 ? oi_bf16_to_f32(a16[k]) : a[k];
            if (!isfinite(x) || (i == 1 && x < 0)) /* h and HiZOO's H are >= 0 */
                st = hl_err_set(err, HL_ERR_FORMAT, "%s: optimizer state %s[%lld] is %g", path,
                                names[i], (long long)k, (double)x);
        }
    }
    if (!st && asc)
        for (int64_t l = 0; l < L; l++) {
            float x = ((const float *)asc->data)[l];
            if (!(x > 0) || !isfinite(x)) {
                st = hl_err_set(err, HL_ERR_FORMAT, "%s: ablate_scale[%lld] is %g, not a positive "
                                "number", path, (long long)l, (double)x);
                break;
            }
        }
    /* HELENE's measured layer curvature ("measured" = "n/granularity"), optional */
    const st_tensor *mh = NULL;
    uint64_t n_meas = 0;
    int meas_gran = o->hp.layer_granularity;
    const char *mtxt = st_file_meta(&f, "measured");
    if (!st && mtxt) {
        unsigned long long a = 0;
        int b = 0, used = 0;
        if (sscanf(mtxt, "%llu/%d%n", &a, &b, &used) != 2 || mtxt[used] || b < 0 ||
            b >= LAYER_GRANULARITY_COUNT || strspn(mtxt, "0123456789/") != strlen(mtxt))
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: \"measured\" is \"%.30s\", not COUNT/GROUPING",
                            path, mtxt);
        n_meas = a, meas_gran = b;
    }
    if (!st && n_meas > 0)
        mh = state_tensor(&f, "meas_h", ST_DTYPE_F64, L, true, err, &st);
    for (int64_t l = 0; mh && !st && l < L; l++) {
        double x; /* tensor data in a file need not be aligned */
        memcpy(&x, (const char *)mh->data + (size_t)l * sizeof x, sizeof x);
        if (!(x >= 0) || !isfinite(x))
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: meas_h[%lld] is %g, not a finite number >= 0",
                            path, (long long)l, x);
    }
    /* the method's own state: validated and read last, so an error there
     * leaves everything unchanged too */
    const optim_method_ops *ops = optim_method_ops_of(o->state_method);
    if (!st && ops->state_load)
        st = ops->state_load(o, &f, err);
    if (!st) { /* everything validated: now change the optimizer */
        for (int i = 0; i < 3; i++)
            if (at[i])
                memcpy(arenas[i], at[i]->data, (size_t)n * esz);
        memcpy(o->first_hhat, fh->data, (size_t)L * sizeof(double));
        memcpy(o->rel_mean, rm->data, (size_t)L * sizeof(double));
        memcpy(o->h_sum, hs->data, (size_t)L * sizeof(double));
        memcpy(o->lam, lam->data, (size_t)L * sizeof(float));
        memcpy(o->lam_on, (lon ? lon : lam)->data, (size_t)L * sizeof(float));
        for (int64_t l = 0; l < L; l++)
            o->ablate_scale[l] = asc ? ((const float *)asc->data)[l] : 1.0f;
        o->eff_precondition = abl ? abl[0] == '1' : o->hp.precondition == PRECONDITION_ON;
        o->eff_clip = abl ? abl[1] == '1' : o->hp.clip;
        o->t = t;
        o->t_local = tl;
        o->forwards_total = fw;
        o->have_first = hf != 0;
        o->n_refresh = nr;
        o->n_meas = n_meas;
        o->meas_gran = meas_gran;
        if (mh)
            memcpy(o->meas_h, mh->data, (size_t)L * sizeof(double));
        else
            for (int64_t l = 0; l < L; l++)
                o->meas_h[l] = 0.0;
    }
    st_file_close(&f);
    return st;
}

/* optim.c - see optim.h.  Layout of this file: pieces and groups (the fixed
 * work split), the elementwise passes (perturb, fused restore + update with
 * telemetry), then the step driver with its per-method scalars.
 *
 * Why pieces: a pass must give the same bits for any thread count, and so
 * must its reductions.  The arena is cut at multiples of PIECE_FLOATS and at
 * layer boundaries; threads claim short runs of pieces from a shared counter
 * (whichever thread is free), each piece writes its partial sums to its own
 * slot, and the caller adds the slots in piece order.  Inside a piece, sums
 * go to 16 lane accumulators (element i to lane i % 16), again a fixed order.
 */
#include "optim.h"

#include <errno.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if defined(__SSE__) && defined(__GNUC__)
#include <immintrin.h>
#endif

#include "rng.h"
#include "safetensors.h"

#define PIECE_FLOATS 16384 /* 64 KiB of θ per piece */
#define SUB 256            /* floats per inner block (z buffers live in L1) */
#define ACC_LANES 16
#define PROBE_BLOCK_BASE 0x40000000u /* probe ids of blockwise curvature probes */

typedef struct piece {
    int32_t layer;
    size_t begin, end; /* element range within the layer */
} piece;

/* Groups of layers for floors and blockwise probes (one per tensor, or per
 * transformer block), as CSR lists of piece ids. */
typedef struct grouping {
    int32_t n_groups;
    int32_t *group_of_layer; /* [n_layers] */
    size_t *start;           /* [n_groups + 1] into ids */
    uint32_t *ids;           /* [n_pieces] piece ids ordered by group, then position */
} grouping;

typedef struct piece_acc {
    double state_sum;
    float state_max;
    double clip;
    double du2;
} piece_acc;

struct optim {
    param_set *ps;
    pool *workers;
    uint64_t run_seed;
    hparams hp;

    int32_t state_method; /* method the state arenas belong to */
    uint64_t t;           /* steps done (global) */
    uint64_t t_local;     /* steps done with the current state */
    float *m, *h, *v;     /* [n_state] or NULL */
    size_t *soff;         /* [n_layers] offset of a layer's state: tuned layers only */
    size_t n_state;       /* floats per state arena */

    piece *pieces;
    size_t n_pieces;
    uint32_t *all_ids; /* [n_pieces] 0..n-1 */
    grouping groups[2]; /* by layer_granularity */

    /* per-piece scratch, written by passes, reduced in order */
    double *piece_zsq;    /* [n_pieces] Σ z² of the last perturb pass with zsq on */
    piece_acc *piece_acc; /* [n_pieces] */

    /* HELENE per-layer bookkeeping [n_layers] */
    double *hhat_sum;     /* Σ over the layer of this step's raw ĥ */
    double *first_hhat;   /* Σ of the first raw ĥ after the state was created */
    bool have_first;
    uint64_t n_refresh;   /* curvature refreshes into h since the state was created */
    double *h_sum;        /* Σ h after the last update pass */
    double *rel_mean;     /* group mean of h at the last refresh (× κ = relative λ) */
    float *lam;           /* λ_l used this step */
    float *lam_on;        /* λ_l as it would be with clip on (what a clip toggle restores) */
    /* Ablations (precondition, clip) keep the update size: the update pass
     * multiplies layer l's update by ablate_scale[l], set when a toggle takes
     * effect so the layer's update RMS is what it was just before, and 1 when
     * both are on (the paper's method).  eff_* are the settings the update
     * pass uses: a fresh state's first step runs with both on, to have a
     * size to keep. */
    float *ablate_scale;
    bool eff_precondition, eff_clip;
    float last_hb;        /* h_scale of the last step */
    double ablate_rms_before, ablate_rms_raw, ablate_rms_after; /* of the last toggle */
    double *zsq_layer;    /* scratch: Σ z² per layer */

    double *loss_buf; /* [2 * HPARAMS_MAX_PROBES * cap_batch + 3 * cap_batch] */
    int32_t cap_batch;

    optim_step_stats stats;
    optim_layer_stats *lstats; /* [n_layers] */
    uint64_t forwards_total;
};

/* ---- small helpers --------------------------------------------------- */

static double now_ms(void)
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
static float *arena_alloc(size_t n, float fill)
{
    void *mem = NULL;
    if (posix_memalign(&mem, 64, (n ? n : 16) * sizeof(float)) != 0)
        return NULL;
    float *a = mem;
    for (size_t i = 0; i < n; i++)
        a[i] = fill;
    return a;
}

/* ---- pieces and groups ------------------------------------------------ */

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
    for (int gr = 0; gr < 2; gr++) {
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

/* Σ of per-piece values into per-layer sums, in piece order. */
static void reduce_to_layers(const optim *o, double *layer_out, const double *piece_vals,
                             const uint32_t *ids, size_t n_ids)
{
    for (int l = 0; l < o->ps->n_layers; l++)
        layer_out[l] = 0;
    for (size_t k = 0; k < n_ids; k++) {
        uint32_t p = ids[k];
        layer_out[o->pieces[p].layer] += piece_vals[p];
    }
}

/* Mean over group g of per-layer sums X (Σ X / Σ sizes). */
static double group_mean(const optim *o, const grouping *g, const double *X, int32_t group)
{
    double s = 0, n = 0;
    for (int l = 0; l < o->ps->n_layers; l++)
        if (g->group_of_layer[l] == group && !o->ps->layers[l].frozen) {
            s += X[l];
            n += (double)o->ps->layers[l].size;
        }
    return n > 0 ? s / n : 0.0;
}

/* ---- passes ------------------------------------------------------------ */

typedef enum pass_kind { PASS_KIND_PERTURB = 0, PASS_KIND_UPDATE } pass_kind;

typedef struct upd_scalars {
    int32_t method;
    int32_t nq;                          /* probes */
    uint64_t seeds[HPARAMS_MAX_PROBES];  /* probe seeds */
    float gw[HPARAMS_MAX_PROBES];        /* g = Σ gw_p z_p */
    float hw[HPARAMS_MAX_PROBES];        /* ĥ = Σ hw_p z_p² (helene shared, hizoo) */
    float eps_restore;                   /* restore θ += eps_restore z_last */
    float lr, wd;
    float mu;                            /* zo-sgd-mmt */
    float b1, b2, ma;                    /* helene: m = b1 m + ma g; adam: decays */
    float adam_c1, adam_c2, adam_eps;    /* bias corrections 1/(1-β^t) */
    float hz_alpha;                      /* hizoo */
    bool refresh, blockwise;             /* helene */
    const uint64_t *block_seeds;         /* [n_groups] blockwise probe seeds */
    const float *block_q;                /* [n_groups] */
    const int32_t *group_of_layer;
    const float *lam;                    /* [n_layers] */
    float hb;                            /* helene: h's bias correction 1/(1-β2^r), or 1 */
    const float *ascale;                 /* helene: [n_layers] ablation scale, or NULL */
    float pg, pd, uclip;                 /* den = pg max(hb h, λ) + pd; |u| <= uclip */
} upd_scalars;

typedef struct pass_job {
    optim *o;
    pass_kind kind;
    const uint32_t *ids;
    size_t n_ids;
    /* perturb */
    uint64_t seed;
    float scale;
    bool hizoo_scale; /* θ += scale z / sqrt(H) */
    bool want_zsq;
    /* update */
    const upd_scalars *u;
    atomic_size_t next; /* first id not yet claimed by a thread */
} pass_job;

/* out[i] = sqrtf(x[i]).  Square roots are exact IEEE operations, so the
 * vector instruction gives the same bits as sqrtf, but with errno semantics
 * (and gcc 12 ignores optimize("no-math-errno") for builtins) a sqrtf in a
 * loop stays one scalar call per element and keeps the whole loop scalar:
 * zo-adam's and HiZOO's passes were 2-3x slower than MeZO's for that alone.
 * So the roots are taken here, 4 lanes at a time with SSE (x86-64's
 * baseline), and the loops that use them vectorise. */
static void sqrt_span(float *restrict out, const float *restrict x, size_t n)
{
    size_t i = 0;
#if defined(__SSE__) && defined(__GNUC__)
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(out + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
    for (; i < n; i++)
        out[i] = sqrtf(x[i]);
}

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

static void perturb_piece(const pass_job *j, const piece *pc, double *zsq_out)
{
    const optim *o = j->o;
    float *th = param_layer_data(o->ps, pc->layer);
    const float *H = j->hizoo_scale ? o->h + o->soff[pc->layer] : NULL;
    if (!H && !zsq_out) {
        /* the common pass: normals straight from registers into θ */
        rng_normal_axpy(th + pc->begin, j->scale, j->seed, (uint32_t)pc->layer, pc->begin,
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
        if (H) {
            float rt[SUB];
            sqrt_span(rt, H + i0, n);
            for (size_t i = 0; i < n; i++)
                z[i] = z[i] / rt[i];
        }
        if (n == SUB)
            axpy_span(th + i0, z, j->scale, SUB);
        else
            axpy_span(th + i0, z, j->scale, n);
    }
    if (zsq_out)
        *zsq_out = zsq;
}

/* The update loops are plain C compiled for x86-64's baseline (SSE2, 4
 * lanes); gcc also compiles them for AVX2 and AVX-512 and picks one at load
 * time (mezo's pass 154 -> 117 ms over 125M floats on Zen 5).  The bits are
 * the same in every copy: elementwise IEEE operations, no contraction into
 * FMA (-std=c11), and each telemetry lane accumulates in the same order. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
/* (not under ThreadSanitizer: the clones' load-time resolver would run
 * instrumented before the TSan runtime starts, and crash) */
#define WIDE_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define WIDE_CLONES
#endif

/* One inner block of the fused restore + update: θ, state and the lane
 * accumulators of telemetry. */
WIDE_CLONES static void update_span(const upd_scalars *u, int32_t layer, bool decay, size_t i0,
                                    size_t n, float *restrict th, float *restrict m,
                                    float *restrict h, float *restrict v, double *acc_state,
                                    float *acc_max, double *acc_clip, double *acc_du2)
{
    float g[SUB], zz[SUB], zl[SUB], z[SUB], du[SUB], rt[SUB];
    /* ĥ for HiZOO and HELENE's shared-probe refresh; blockwise makes its own */
    const bool need_zz = u->method == OPTIM_METHOD_HIZOO ||
                         (u->method == OPTIM_METHOD_HELENE && u->refresh && !u->blockwise);
    /* g = Σ gw_p z_p; zz = Σ hw_p z_p²; zl = z of the last probe (to restore) */
    for (int32_t p = 0; p < u->nq; p++) {
        float *zp = p == u->nq - 1 ? zl : z;
        rng_normal_fill(zp, u->seeds[p], (uint32_t)layer, i0, n);
        float gw = u->gw[p], hw = u->hw[p];
        if (p == 0) {
            for (size_t i = 0; i < n; i++)
                g[i] = gw * zp[i];
        } else {
            for (size_t i = 0; i < n; i++)
                g[i] += gw * zp[i];
        }
        if (need_zz && p == 0) {
            for (size_t i = 0; i < n; i++)
                zz[i] = hw * (zp[i] * zp[i]);
        } else if (need_zz) {
            for (size_t i = 0; i < n; i++)
                zz[i] += hw * (zp[i] * zp[i]);
        }
    }
    float lr = u->lr, keep = decay ? 1.0f - u->lr * u->wd : 1.0f, er = u->eps_restore;
    float lam = u->lam ? u->lam[layer] : 0.0f;
    switch (u->method) {
    case OPTIM_METHOD_MEZO:
    case OPTIM_METHOD_ZO_SIGN:
        for (size_t i = 0; i < n; i++) {
            float t0 = th[i] + er * zl[i];
            float t1 = t0 * keep - lr * g[i];
            du[i] = t1 - t0;
            th[i] = t1;
        }
        break;
    case OPTIM_METHOD_ZO_SGD_MMT:
        for (size_t i = 0; i < n; i++) {
            float t0 = th[i] + er * zl[i];
            float b = u->mu * m[i] + g[i];
            m[i] = b;
            float t1 = t0 * keep - lr * b;
            du[i] = t1 - t0;
            th[i] = t1;
        }
        break;
    case OPTIM_METHOD_ZO_ADAM:
        for (size_t i = 0; i < n; i++) {
            float mm = u->b1 * m[i] + (1.0f - u->b1) * g[i];
            float vv = u->b2 * v[i] + (1.0f - u->b2) * (g[i] * g[i]);
            m[i] = mm;
            v[i] = vv;
            du[i] = vv * u->adam_c2; /* scratch: the root's argument */
        }
        sqrt_span(rt, du, n);
        for (size_t i = 0; i < n; i++) {
            float t0 = th[i] + er * zl[i];
            float t1 = t0 * keep - lr * (m[i] * u->adam_c1) / (rt[i] + u->adam_eps);
            du[i] = t1 - t0;
            th[i] = t1;
        }
        break;
    case OPTIM_METHOD_HIZOO:
        sqrt_span(rt, h, n);
        for (size_t i = 0; i < n; i++) {
            float inv = 1.0f / rt[i];
            float t0 = th[i] + er * zl[i] * inv;
            float t1 = t0 * keep - lr * g[i] * inv;
            h[i] = (1.0f - u->hz_alpha) * h[i] + u->hz_alpha * zz[i] * h[i];
            du[i] = t1 - t0;
            th[i] = t1;
        }
        break;
    case OPTIM_METHOD_HELENE: {
        const float as = u->ascale ? u->ascale[layer] : 1.0f;
        if (u->refresh && u->blockwise) {
            int32_t grp = u->group_of_layer[layer];
            rng_normal_fill(z, u->block_seeds[grp], (uint32_t)layer, i0, n);
            float qg = u->block_q[grp];
            for (size_t i = 0; i < n; i++)
                zz[i] = qg * (z[i] * z[i]);
        }
        if (u->refresh)
            for (size_t i = 0; i < n; i++)
                h[i] = u->b2 * h[i] + (1.0f - u->b2) * zz[i];
        for (size_t i = 0; i < n; i++) {
            float t0 = th[i] + er * zl[i];
            float mm = u->b1 * m[i] + u->ma * g[i];
            m[i] = mm;
            float hh = h[i] * u->hb;
            float hc = hh > lam ? hh : lam;
            float q = mm / (u->pg * hc + u->pd) * as;
            q = q > u->uclip ? u->uclip : q;
            q = q < -u->uclip ? -u->uclip : q;
            float t1 = t0 * keep - lr * q;
            du[i] = t1 - t0;
            th[i] = t1;
        }
        break;
    }
    default:
        break;
    }
    /* telemetry: element i0 + i goes to lane (i0 + i) % 16 = i % 16, since
     * pieces start at multiples of 16; whole rows of 16 vectorise */
    const float *st = u->method == OPTIM_METHOD_ZO_ADAM ? v : h;
    const float hb = u->method == OPTIM_METHOD_HELENE ? u->hb : 1.0f; /* clip compares hb h */
    size_t full = n / ACC_LANES * ACC_LANES;
    for (size_t i = 0; i < full; i += ACC_LANES)
        for (int k = 0; k < ACC_LANES; k++)
            acc_du2[k] += (double)du[i + k] * du[i + k];
    for (size_t i = full; i < n; i++)
        acc_du2[i % ACC_LANES] += (double)du[i] * du[i];
    if (!st)
        return;
    for (size_t i = 0; i < full; i += ACC_LANES)
        for (int k = 0; k < ACC_LANES; k++) {
            float x = st[i + k];
            acc_state[k] += x;
            acc_max[k] = x > acc_max[k] ? x : acc_max[k];
            acc_clip[k] += x * hb < lam ? 1.0 : 0.0;
        }
    for (size_t i = full; i < n; i++) {
        size_t k = i % ACC_LANES;
        acc_state[k] += st[i];
        acc_max[k] = st[i] > acc_max[k] ? st[i] : acc_max[k];
        acc_clip[k] += st[i] * hb < lam ? 1.0 : 0.0;
    }
}

static void update_piece(const pass_job *j, const piece *pc, piece_acc *out)
{
    const optim *o = j->o;
    const upd_scalars *u = j->u;
    const param_layer *L = &o->ps->layers[pc->layer];
    float *th = param_layer_data(o->ps, pc->layer);
    const size_t so = o->soff[pc->layer];
    float *m = o->m ? o->m + so : NULL;
    float *h = o->h ? o->h + so : NULL;
    float *v = o->v ? o->v + so : NULL;
    double acc_state[ACC_LANES] = {0}, acc_clip[ACC_LANES] = {0}, acc_du2[ACC_LANES] = {0};
    float acc_max[ACC_LANES];
    for (int k = 0; k < ACC_LANES; k++)
        acc_max[k] = -INFINITY;
    for (size_t i0 = pc->begin; i0 < pc->end; i0 += SUB) {
        size_t n = pc->end - i0 < SUB ? pc->end - i0 : SUB;
        update_span(u, pc->layer, L->decay, i0, n, th + i0, m ? m + i0 : NULL, h ? h + i0 : NULL,
                    v ? v + i0 : NULL, acc_state, acc_max, acc_clip, acc_du2);
    }
    piece_acc r = {0, -INFINITY, 0, 0};
    for (int k = 0; k < ACC_LANES; k++) {
        r.state_sum += acc_state[k];
        r.state_max = acc_max[k] > r.state_max ? acc_max[k] : r.state_max;
        r.clip += acc_clip[k];
        r.du2 += acc_du2[k];
    }
    *out = r;
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
            uint32_t p = j->ids[k];
            const piece *pc = &j->o->pieces[p];
            if (j->kind == PASS_KIND_PERTURB)
                perturb_piece(j, pc, j->want_zsq ? &j->o->piece_zsq[p] : NULL);
            else
                update_piece(j, pc, &j->o->piece_acc[p]);
        }
    }
}

static void run_pass(optim *o, pass_job *j)
{
    atomic_init(&j->next, 0);
    pool_run(o->workers, pass_thread, j);
}

/* ---- perturbation bookkeeping (for restore on failure) ----------------- */

typedef struct perturb_state {
    bool active;
    uint64_t seed;
    double offset; /* θ currently = θ0 + offset·z (HiZOO: z/√H) */
    const uint32_t *ids;
    size_t n_ids;
    bool hizoo;
} perturb_state;

static void run_perturb(optim *o, perturb_state *ps_, const uint32_t *ids, size_t n_ids,
                        uint64_t seed, double scale, bool hizoo, bool want_zsq, double *ms)
{
    double t0 = now_ms();
    pass_job j = {.o = o, .kind = PASS_KIND_PERTURB, .ids = ids, .n_ids = n_ids, .seed = seed,
                  .scale = (float)scale, .hizoo_scale = hizoo, .want_zsq = want_zsq};
    run_pass(o, &j);
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
    *ms += now_ms() - t0;
}

/* Undo the perturbation in flight: θ −= offset·z. */
static void restore_perturb(optim *o, perturb_state *ps_, double *ms)
{
    if (!ps_->active)
        return;
    /* a 2-element perturbation of −offset, not run_perturb: its bookkeeping
     * would treat this as a new perturbation */
    double t0 = now_ms();
    pass_job j = {.o = o, .kind = PASS_KIND_PERTURB, .ids = ps_->ids, .n_ids = ps_->n_ids,
                  .seed = ps_->seed, .scale = (float)(-ps_->offset), .hizoo_scale = ps_->hizoo};
    run_pass(o, &j);
    ps_->active = false;
    *ms += now_ms() - t0;
}

/* ---- life cycle --------------------------------------------------------- */

static void free_state(optim *o)
{
    free(o->m);
    free(o->h);
    free(o->v);
    o->m = o->h = o->v = NULL;
}

/* Allocate fresh state for `method`; on failure the old state is kept. */
static hl_status reset_state(optim *o, int32_t method, hl_err *err)
{
    size_t n = o->n_state ? o->n_state : 16;
    float *m = NULL, *h = NULL, *v = NULL;
    if (method_needs_m(method) && !(m = arena_alloc(n, 0.0f)))
        goto nomem;
    if (method_needs_h(method) && !(h = arena_alloc(n, method == OPTIM_METHOD_HIZOO ? 1.0f : 0.0f)))
        goto nomem;
    if (method_needs_v(method) && !(v = arena_alloc(n, 0.0f)))
        goto nomem;
    free_state(o);
    o->m = m, o->h = h, o->v = v;
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
    }
    if (h && method == OPTIM_METHOD_HIZOO)
        for (int l = 0; l < L; l++)
            o->h_sum[l] = o->ps->layers[l].frozen ? 0.0 : (double)o->ps->layers[l].size;
    return HL_OK;
nomem:
    free(m);
    free(h);
    free(v);
    return hl_err_set(err, HL_ERR_NOMEM, "cannot allocate %zu MiB of optimizer state for %s",
                      n * sizeof(float) >> 20, optim_method_name(method));
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
    for (int g = 0; g < 2; g++) {
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
    free(o->loss_buf);
    free(o->lstats);
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
    o->lam = calloc(L, sizeof(float));
    o->lam_on = calloc(L, sizeof(float));
    o->ablate_scale = calloc(L, sizeof(float));
    o->lstats = calloc(L, sizeof *o->lstats);
    hl_status st = HL_OK;
    if (!o->hhat_sum || !o->first_hhat || !o->h_sum || !o->rel_mean || !o->zsq_layer ||
        !o->lam || !o->lam_on || !o->ablate_scale || !o->lstats)
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory for the optimizer");
    if (st == HL_OK)
        st = build_pieces(o, err);
    if (st == HL_OK)
        st = reset_state(o, o->hp.method, err);
    if (st != HL_OK) {
        optim_free(o);
        return st;
    }
    o->stats.alpha = NAN;
    o->stats.loss0 = NAN;
    o->ablate_rms_before = NAN;
    *out = o;
    return HL_OK;
}

/* A HELENE ablation toggle takes effect: per layer, the update m / den with
 * the new precondition/clip settings is rescaled so its RMS over the layer,
 * from the current m, h and λ, is what the settings in force gave (scale 1
 * when both are on again: the paper's method exactly).  Records the RMS over
 * all tuned elements before, without the scale, and after. */
static void ablate_apply(optim *o)
{
    const hparams *hp = &o->hp;
    const bool p_new = hp->precondition, k_new = hp->clip;
    double all_old = 0, all_raw = 0, all_new = 0, n_all = 0;
    for (int l = 0; l < o->ps->n_layers; l++) {
        const param_layer *ly = &o->ps->layers[l];
        if (ly->frozen || !o->m || !o->h)
            continue;
        const float *m = o->m + o->soff[l], *h = o->h + o->soff[l];
        const float hb = o->last_hb;
        const float lam_old = o->eff_clip ? o->lam_on[l] : 0.0f;
        const float lam_new = k_new ? o->lam_on[l] : 0.0f;
        const float g_old = o->eff_precondition ? (float)hp->gamma : 0.0f;
        const float d_old = o->eff_precondition ? (float)hp->delta : 1.0f;
        const float g_new = p_new ? (float)hp->gamma : 0.0f;
        const float d_new = p_new ? (float)hp->delta : 1.0f;
        double so = 0, sn = 0;
        for (size_t i = 0; i < ly->size; i++) {
            float hh = h[i] * hb;
            double uo = m[i] / (g_old * (hh > lam_old ? hh : lam_old) + d_old);
            double un = m[i] / (g_new * (hh > lam_new ? hh : lam_new) + d_new);
            so += uo * uo;
            sn += un * un;
        }
        so *= (double)o->ablate_scale[l] * o->ablate_scale[l];
        double sc = 1.0;
        if (!(p_new && k_new) && sn > 0 && isfinite(sn) && so > 0 && isfinite(so))
            sc = sqrt(so / sn);
        o->ablate_scale[l] = (float)sc;
        all_old += so;
        all_raw += sn;
        all_new += sc * sc * sn;
        n_all += (double)ly->size;
    }
    n_all = n_all > 0 ? n_all : 1;
    o->ablate_rms_before = sqrt(all_old / n_all) * hp->lr;
    o->ablate_rms_raw = sqrt(all_raw / n_all) * hp->lr;
    o->ablate_rms_after = sqrt(all_new / n_all) * hp->lr;
    o->eff_precondition = p_new;
    o->eff_clip = k_new;
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
    if (st == HL_OK && tmp.method != o->state_method)
        st = reset_state(o, tmp.method, err);
    if (st != HL_OK) {
        hparams_free(&tmp);
        return st;
    }
    hparams_free(&o->hp);
    o->hp = tmp;
    o->ablate_rms_before = NAN;
    if (o->state_method == OPTIM_METHOD_HELENE && o->t_local > 0 &&
        (o->hp.precondition != o->eff_precondition || o->hp.clip != o->eff_clip))
        ablate_apply(o);
    return HL_OK;
}

hl_status optim_get(const optim *o, char *buf, size_t cap, const char *key, hl_err *err)
{
    return hparams_get(&o->hp, buf, cap, key, err);
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

float *optim_state_arena(const optim *o, int i, const char **name)
{
    float *arenas[3] = {o->m, o->h, o->v};
    const char *names[3] = {"m", o->state_method == OPTIM_METHOD_HIZOO ? "H" : "h", "v"};
    int k = 0;
    for (int a = 0; a < 3; a++) {
        if (!arenas[a])
            continue;
        if (k++ == i) {
            if (name)
                *name = names[a];
            return arenas[a];
        }
    }
    return NULL;
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

static hl_status ensure_batch(optim *o, int32_t B, hl_err *err)
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

/* Forward on the current θ; checks finiteness.  what names the phase. */
static hl_status forward(optim *o, const objective *obj, double *losses, int32_t B,
                         const char *what, hl_err *err)
{
    double t0 = now_ms();
    hl_status st = objective_eval(obj, losses, o->ps, o->workers, err);
    o->stats.ms_forward += now_ms() - t0;
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

static double mean_of(const double *x, int32_t n)
{
    double s = 0;
    for (int32_t i = 0; i < n; i++)
        s += x[i];
    return s / n;
}

/* c_b = (ℓ+_b − ℓ−_b)/(2ε): returns c, writes q = mean c_b² (per_example)
 * or B c² (batch). */
static double probe_coeffs(double *q_out, const double *lp, const double *lm, int32_t B,
                           double eps, int32_t estimator)
{
    double c = 0, q = 0;
    for (int32_t b = 0; b < B; b++) {
        double cb = (lp[b] - lm[b]) / (2.0 * eps);
        c += cb;
        q += cb * cb;
    }
    c /= B;
    q /= B;
    *q_out = estimator == HESS_ESTIMATOR_BATCH ? (double)B * c * c : q;
    return c;
}

hl_status optim_step(optim *o, const objective *obj, hl_err *err)
{
    const hparams *hp = &o->hp;
    const int32_t method = hp->method;
    const uint64_t t = o->t + 1, tl = o->t_local + 1;
    const double eps = hp->eps;
    const int32_t nq = hp->n_probes;
    const grouping *grp = &o->groups[hp->layer_granularity];
    const int L = o->ps->n_layers;
    const bool helene = method == OPTIM_METHOD_HELENE;
    const bool refresh = helene && optim_helene_refresh(hp, tl);
    const bool blockwise = helene && refresh && hp->hess_probe == HESS_PROBE_BLOCKWISE;
    const bool hizoo = method == OPTIM_METHOD_HIZOO;

    if (method >= OPTIM_METHOD_COUNT)
        return hl_err_set(err, HL_ERR_INVALID,
                          "%s is a first-order method: the engine runs it with "
                          "backpropagation, not optim_step",
                          optim_method_name(method));
    optim_step_stats *S = &o->stats;
    memset(S, 0, sizeof *S);
    S->step = t;
    S->method = method;
    S->lr = hp->lr;
    S->alpha = helene ? optim_helene_alpha(hp, tl) : NAN;
    S->h_scale = S->clip_rate = NAN;
    S->loss0 = NAN;
    S->refresh = refresh;
    S->seed = rng_step_seed(o->run_seed, t, 0);

    if (o->state_method != method) { /* cannot happen through optim_set; be safe */
        hl_status st = reset_state(o, method, err);
        if (st != HL_OK)
            return st;
    }
    int32_t B;
    hl_status st = objective_select_batch(obj, &B, t, err);
    if (st != HL_OK)
        return hl_err_prefix(err, "step %llu: select batch", (unsigned long long)t);
    if ((st = ensure_batch(o, B, err)) != HL_OK)
        return st;
    S->batch = B;
    double *lp = o->loss_buf;                              /* [nq][B] */
    double *lm = lp + (size_t)HPARAMS_MAX_PROBES * B;      /* [nq][B] */
    double *l0 = lm + (size_t)HPARAMS_MAX_PROBES * B;      /* [B] */
    double *blp = l0 + B, *blm = blp + B;                  /* [B] each */

    perturb_state pst = {0};
    double L0 = NAN;
    float *block_q = NULL;
    uint64_t *block_seeds = NULL;

    /* HiZOO's third forward, at θ. */
    if (hizoo) {
        if ((st = forward(o, obj, l0, B, "hizoo loss at theta", err)) != HL_OK)
            return st;
        L0 = mean_of(l0, B);
        S->loss0 = L0;
    }

    /* HELENE blockwise curvature probes, each on one group at θ. */
    if (blockwise) {
        block_q = malloc((size_t)grp->n_groups * sizeof *block_q);
        block_seeds = malloc((size_t)grp->n_groups * sizeof *block_seeds);
        if (!block_q || !block_seeds) {
            free(block_q);
            free(block_seeds);
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory for blockwise probes");
        }
        for (int l = 0; l < L; l++)
            o->hhat_sum[l] = 0;
        for (int32_t g = 0; g < grp->n_groups; g++) {
            const uint32_t *ids = grp->ids + grp->start[g];
            size_t nid = grp->start[g + 1] - grp->start[g];
            if (nid == 0) { /* every layer of the group is frozen */
                block_seeds[g] = 0;
                block_q[g] = 0;
                continue;
            }
            uint64_t seed = rng_step_seed(o->run_seed, t, PROBE_BLOCK_BASE + (uint32_t)g);
            block_seeds[g] = seed;
            run_perturb(o, &pst, ids, nid, seed, eps, false, true, &S->ms_perturb);
            reduce_to_layers(o, o->zsq_layer, o->piece_zsq, ids, nid);
            if ((st = forward(o, obj, blp, B, "blockwise +eps", err)) != HL_OK)
                goto fail;
            run_perturb(o, &pst, ids, nid, seed, -2.0 * eps, false, false, &S->ms_perturb);
            if ((st = forward(o, obj, blm, B, "blockwise -eps", err)) != HL_OK)
                goto fail;
            run_perturb(o, &pst, ids, nid, seed, eps, false, false, &S->ms_perturb);
            double qg;
            probe_coeffs(&qg, blp, blm, B, eps, hp->hess_estimator);
            block_q[g] = (float)qg;
            for (int l = 0; l < L; l++)
                if (grp->group_of_layer[l] == g)
                    o->hhat_sum[l] = (double)block_q[g] * o->zsq_layer[l];
        }
    }

    /* The SPSA probes. */
    upd_scalars u;
    memset(&u, 0, sizeof u);
    u.nq = nq;
    double c_mean = 0, q_mean = 0, Lp = 0, Lm = 0;
    if (helene && refresh && !blockwise)
        for (int l = 0; l < L; l++)
            o->hhat_sum[l] = 0;
    for (int32_t p = 0; p < nq; p++) {
        uint64_t seed = rng_step_seed(o->run_seed, t, (uint32_t)p);
        u.seeds[p] = seed;
        double *lpp = lp + (size_t)p * B, *lmp = lm + (size_t)p * B;
        bool want_zsq = helene && refresh && !blockwise;
        run_perturb(o, &pst, o->all_ids, o->n_pieces, seed, eps, hizoo, want_zsq,
                    &S->ms_perturb);
        if (want_zsq)
            reduce_to_layers(o, o->zsq_layer, o->piece_zsq, o->all_ids, o->n_pieces);
        if ((st = forward(o, obj, lpp, B, "+eps", err)) != HL_OK)
            goto fail;
        run_perturb(o, &pst, o->all_ids, o->n_pieces, seed, -2.0 * eps, hizoo, false,
                    &S->ms_perturb);
        if ((st = forward(o, obj, lmp, B, "-eps", err)) != HL_OK)
            goto fail;
        if (p < nq - 1) /* the last probe's restore is fused into the update */
            run_perturb(o, &pst, o->all_ids, o->n_pieces, seed, eps, hizoo, false,
                        &S->ms_perturb);
        double q, c = probe_coeffs(&q, lpp, lmp, B, eps, hp->hess_estimator);
        double Lpp = mean_of(lpp, B), Lmp = mean_of(lmp, B);
        c_mean += c / nq;
        q_mean += q / nq;
        Lp += Lpp / nq;
        Lm += Lmp / nq;
        switch (method) {
        case OPTIM_METHOD_ZO_SIGN:
            u.gw[p] = (float)((c > 0 ? 1.0 : c < 0 ? -1.0 : 0.0) / nq);
            break;
        case OPTIM_METHOD_HIZOO:
            u.gw[p] = (float)(c / nq);
            u.hw[p] = (float)(fabs(Lpp + Lmp - 2.0 * L0) / (2.0 * eps * eps) / nq);
            break;
        default:
            u.gw[p] = (float)(c / nq);
            u.hw[p] = (float)(q / nq);
            break;
        }
        if (want_zsq)
            for (int l = 0; l < L; l++)
                o->hhat_sum[l] += (double)u.hw[p] * o->zsq_layer[l];
    }
    S->proj_grad = c_mean;
    S->q = q_mean;
    S->loss_plus = Lp;
    S->loss_minus = Lm;

    /* Scalars of the update. */
    u.method = method;
    u.eps_restore = (float)eps;
    u.lr = (float)hp->lr;
    u.wd = (float)hp->weight_decay;
    u.group_of_layer = grp->group_of_layer;
    switch (method) {
    case OPTIM_METHOD_ZO_SGD_MMT:
        u.mu = (float)hp->momentum;
        break;
    case OPTIM_METHOD_ZO_ADAM:
        u.b1 = (float)hp->adam_beta1;
        u.b2 = (float)hp->adam_beta2;
        u.adam_c1 = (float)(1.0 / (1.0 - pow(hp->adam_beta1, (double)tl)));
        u.adam_c2 = (float)(1.0 / (1.0 - pow(hp->adam_beta2, (double)tl)));
        u.adam_eps = (float)hp->adam_eps;
        break;
    case OPTIM_METHOD_HIZOO:
        u.hz_alpha = (float)hp->hizoo_alpha;
        break;
    case OPTIM_METHOD_HELENE: {
        u.refresh = refresh;
        u.blockwise = blockwise;
        u.block_seeds = block_seeds;
        u.block_q = block_q;
        u.b1 = (float)hp->beta1;
        u.b2 = (float)hp->beta2;
        double a = S->alpha;
        u.ma = (float)(hp->momentum_form == MOMENTUM_FORM_EMA ? (1.0 - hp->beta1) * a : a);
        /* ablations: a fresh state's first step runs the full method, so a
         * toggle given from the start has an update size to keep (below) */
        if (tl == 1) {
            o->eff_precondition = o->eff_clip = true;
            for (int l = 0; l < L; l++)
                o->ablate_scale[l] = 1.0f;
        }
        u.pg = o->eff_precondition ? (float)hp->gamma : 0.0f;
        u.pd = o->eff_precondition ? (float)hp->delta : 1.0f;
        u.ascale = o->ablate_scale;
        u.uclip = hp->update_clip ? 1.0f : INFINITY;
        if (refresh)
            o->n_refresh++;
        u.hb = hp->hess_debias && o->n_refresh > 0
                   ? (float)(1.0 / (1.0 - pow(hp->beta2, (double)o->n_refresh)))
                   : 1.0f;
        S->h_scale = u.hb;
        if (refresh) {
            if (!o->have_first) {
                memcpy(o->first_hhat, o->hhat_sum, (size_t)L * sizeof(double));
                o->have_first = true;
            }
            /* relative: mean of the h this refresh produces, from the sums:
             * Σ h_new = β2 Σ h_old + (1 − β2) Σ ĥ (no extra sweep) */
            double *pred = o->zsq_layer; /* scratch */
            for (int l = 0; l < L; l++)
                pred[l] = hp->beta2 * o->h_sum[l] + (1.0 - hp->beta2) * o->hhat_sum[l];
            for (int l = 0; l < L; l++)
                o->rel_mean[l] = u.hb * group_mean(o, grp, pred, grp->group_of_layer[l]);
        }
        for (int l = 0; l < L; l++) {
            double lam = 0;
            if (hp->lambda_mode == LAMBDA_MODE_CALIBRATED)
                lam = hp->kappa * group_mean(o, grp, o->first_hhat, grp->group_of_layer[l]);
            else if (hp->lambda_mode == LAMBDA_MODE_RELATIVE)
                lam = hp->kappa * o->rel_mean[l];
            else if (hp->n_lambda_abs > 0)
                lam = hp->lambda_abs[hp->n_lambda_abs == L ? l : 0];
            o->lam_on[l] = (float)lam;
            o->lam[l] = o->eff_clip ? (float)lam : 0.0f;
        }
        u.lam = o->lam;
        break;
    }
    default:
        break;
    }

    /* The fused restore + update pass. */
    {
        double t0 = now_ms();
        pass_job j = {.o = o, .kind = PASS_KIND_UPDATE, .ids = o->all_ids, .n_ids = o->n_pieces,
                      .u = &u};
        run_pass(o, &j);
        S->ms_update = now_ms() - t0;
    }
    free(block_q);
    free(block_seeds);

    /* Per-layer telemetry from the piece sums, in piece order. */
    for (int l = 0; l < L; l++) {
        o->lstats[l] = (optim_layer_stats){0, -INFINITY, o->lam[l], 0, 0};
        o->h_sum[l] = 0;
    }
    double *du2 = o->zsq_layer;
    for (int l = 0; l < L; l++)
        du2[l] = 0;
    double *clip = o->hhat_sum; /* scratch now: the step is done with ĥ */
    for (int l = 0; l < L; l++)
        clip[l] = 0;
    for (size_t p = 0; p < o->n_pieces; p++) {
        const piece_acc *a = &o->piece_acc[p];
        int l = o->pieces[p].layer;
        o->h_sum[l] += a->state_sum;
        du2[l] += a->du2;
        clip[l] += a->clip;
        if (a->state_max > o->lstats[l].state_max)
            o->lstats[l].state_max = a->state_max;
    }
    bool has_state = method == OPTIM_METHOD_HELENE || method == OPTIM_METHOD_HIZOO ||
                     method == OPTIM_METHOD_ZO_ADAM;
    for (int l = 0; l < L; l++) {
        double n = (double)o->ps->layers[l].size;
        optim_layer_stats *ls = &o->lstats[l];
        ls->state_mean = has_state ? (float)(o->h_sum[l] / n) : 0.0f;
        if (!has_state)
            ls->state_max = 0;
        if (helene) { /* h as the update sees it: bias-corrected when hess_debias is on */
            ls->state_mean *= u.hb;
            ls->state_max *= u.hb;
        }
        ls->clip_rate = helene ? (float)(clip[l] / n) : 0.0f;
        ls->lambda = helene ? o->lam[l] : 0.0f;
        ls->update_rms = (float)sqrt(du2[l] / n);
    }
    if (helene) {
        o->last_hb = u.hb;
        if (hp->precondition != o->eff_precondition || hp->clip != o->eff_clip)
            ablate_apply(o); /* toggled off from the start: calibrated on this step */
        double clipped = 0, n_tuned = 0;
        for (int l = 0; l < L; l++)
            if (!o->ps->layers[l].frozen) {
                clipped += clip[l];
                n_tuned += (double)o->ps->layers[l].size;
            }
        S->clip_rate = n_tuned > 0 ? clipped / n_tuned : 0.0;
    }
    if (method == OPTIM_METHOD_ZO_ADAM) /* h_sum tracks h (HELENE) and H (HiZOO) only */
        for (int l = 0; l < L; l++)
            o->h_sum[l] = 0;
    o->t = t;
    o->t_local = tl;
    S->forwards_total = o->forwards_total;
    return HL_OK;

fail:
    restore_perturb(o, &pst, &S->ms_perturb);
    free(block_q);
    free(block_seeds);
    return st;
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
    st_write_tensor ts[10];
    int k = 0;
    const float *arenas[3] = {o->m, o->h, o->v};
    static const char *const names[3] = {"m", "h", "v"};
    for (int i = 0; i < 3; i++)
        if (arenas[i])
            ts[k++] = (st_write_tensor){.name = names[i], .dtype = ST_DTYPE_F32,
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
    char t[32], tl[32], fw[32], nr[32], eff[8];
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
                          "n_refresh", nr, "ablation", eff, "frozen_layers", fm};
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
    float *arenas[3] = {o->m, o->h, o->v};
    static const char *const names[3] = {"m", "h", "v"};
    const st_tensor *at[3] = {NULL, NULL, NULL};
    for (int i = 0; i < 3 && !st; i++)
        if (arenas[i])
            at[i] = state_tensor(&f, names[i], ST_DTYPE_F32, n, true, err, &st);
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
            double x = bt->dtype == ST_DTYPE_F64 ? ((const double *)bt->data)[l]
                                                 : ((const float *)bt->data)[l];
            if (!(x >= 0) || !isfinite(x))
                st = hl_err_set(err, HL_ERR_FORMAT, "%s: %s[%lld] is %g, not a finite number >= 0",
                                path, nonneg_name[k], (long long)l, x);
        }
    }
    for (int i = 0; i < 3 && !st; i++) {
        if (!at[i])
            continue;
        const float *a = at[i]->data;
        for (int64_t k = 0; k < n && !st; k++)
            if (!isfinite(a[k]) || (i == 1 && a[k] < 0)) /* h and HiZOO's H are >= 0 */
                st = hl_err_set(err, HL_ERR_FORMAT, "%s: optimizer state %s[%lld] is %g", path,
                                names[i], (long long)k, (double)a[k]);
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
    if (!st) { /* everything validated: now change the optimizer */
        for (int i = 0; i < 3; i++)
            if (at[i])
                memcpy(arenas[i], at[i]->data, (size_t)n * sizeof(float));
        memcpy(o->first_hhat, fh->data, (size_t)L * sizeof(double));
        memcpy(o->rel_mean, rm->data, (size_t)L * sizeof(double));
        memcpy(o->h_sum, hs->data, (size_t)L * sizeof(double));
        memcpy(o->lam, lam->data, (size_t)L * sizeof(float));
        memcpy(o->lam_on, (lon ? lon : lam)->data, (size_t)L * sizeof(float));
        for (int64_t l = 0; l < L; l++)
            o->ablate_scale[l] = asc ? ((const float *)asc->data)[l] : 1.0f;
        o->eff_precondition = abl ? abl[0] == '1' : o->hp.precondition;
        o->eff_clip = abl ? abl[1] == '1' : o->hp.clip;
        o->t = t;
        o->t_local = tl;
        o->forwards_total = fw;
        o->have_first = hf != 0;
        o->n_refresh = nr;
    }
    st_file_close(&f);
    return st;
}

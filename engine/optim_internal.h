/* optim_internal.h - what the optimizer's files share; not a public API.
 *
 * optim.c owns the object, the work split (pieces and groups), the
 * perturbation pass, the step driver and checkpoints; each method family
 * brings a table (optim_method_ops) with its state layout and its step:
 * optim_spsa.c the six methods that probe the whole model (MeZO, ZO-SGD-MMT,
 * ZO-Sign, ZO-Adam, HiZOO, HELENE), optim_lnewton.c layer-sampled Newton ZO.
 * Threads, determinism and ownership: as optim.h says.
 */
#ifndef HELENE_OPTIM_INTERNAL_H
#define HELENE_OPTIM_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#if defined(__SSE__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <math.h>

#include "optim.h"
#include "safetensors.h"

#define PIECE_FLOATS 16384 /* 64 KiB of θ per piece */
#define SUB 256            /* floats per inner block (z buffers live in L1) */
#define ACC_LANES 16
#define PROBE_BLOCK_BASE 0x40000000u /* probe ids of blockwise curvature probes */
#define PROBE_PICK 0x50000000u       /* layer-newton: the draw of a step's group */
#define PROBE_ROUND 0x60000000u      /* 16-bit state: the stochastic rounding's bits */

/* 16-bit optimizer state (optim_set_state16): bf16, the upper half of an
 * fp32.  Widening is exact.  Narrowing rounds stochastically: the 16 bits
 * to drop are added to 16 random bits and the sum truncated, so a value is
 * rounded up with probability (dropped bits) / 2^16: unbiased, E[bf16(x)] = x,
 * and small updates to m and h survive on average instead of being rounded
 * away.  The random bits are a hash of (run seed, step, arena, layer,
 * element), so a run is reproducible for any thread count and resumes bit
 * for bit.  A value whose low half is zero (unchanged since it was
 * narrowed) comes back as it was.  Inf and NaN are truncated (a NaN stays a
 * NaN). */
static inline float oi_bf16_to_f32(uint16_t b)
{
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint32_t oi_hash32(uint32_t x) /* "lowbias32" (C. Wellons) */
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

/* f rounded to bf16 with the random bits r (their low 16 are used). */
static inline uint16_t oi_bf16_round(float f, uint32_t r)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u) /* inf, NaN: keep a NaN a NaN */
        return (uint16_t)((u >> 16) | ((u & 0xffffu) ? 0x40u : 0u));
    return (uint16_t)((u + (r & 0xffffu)) >> 16);
}

/* The part of element i's rounding bits that depends on its high 32 bits
 * (constant over any span that does not cross a multiple of 2^32). */
static inline uint32_t oi_round_hi(uint32_t key, uint64_t i)
{
    return key ^ oi_hash32((uint32_t)(i >> 32) + 0x9e3779b9u);
}

/* The stochastic rounding of element i with key: the bits are
 * hash32(key ^ lo32(i) ^ hash32(hi32(i) + c)). */
static inline uint16_t oi_f32_to_bf16_sr(float f, uint32_t key, uint64_t i)
{
    return oi_bf16_round(f, oi_hash32(oi_round_hi(key, i) ^ (uint32_t)i));
}

/* Round to nearest even (loading fp32 values into 16-bit state). */
static inline uint16_t oi_f32_to_bf16_rne(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7f800000u) == 0x7f800000u)
        return (uint16_t)((u >> 16) | ((u & 0xffffu) ? 0x40u : 0u));
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

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
    float *m, *h, *v;     /* [n_state] or NULL (fp32 state) */
    bool state16;         /* optim_set_state16: m, h, v kept as bf16 in m16, h16, v16 */
    uint16_t *m16, *h16, *v16; /* [n_state] or NULL (16-bit state) */
    size_t *soff;         /* [n_layers] offset of a layer's state: tuned layers only */
    size_t n_state;       /* floats per state arena */

    piece *pieces;
    size_t n_pieces;
    uint32_t *all_ids; /* [n_pieces] 0..n-1 */
    grouping groups[LAYER_GRANULARITY_COUNT]; /* by layer_granularity */

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
    double *zsq_layer;    /* scratch: Σ z² per layer of the last perturbation with zsq */
    double *zsq_probe;    /* scratch [HPARAMS_MAX_PROBES][n_layers]: each probe's zsq_layer */
    /* optim_share_probes: probe p's forwards run on rank p mod share_n only */
    int32_t share_rank, share_n;
    optim_probe_exchange share_fn;
    void *share_ctx;
    double *h_pred;       /* scratch [n_layers]: Σ h a refresh makes, from the sums */
    double *du2_layer;    /* scratch [n_layers]: Σ (θ_new − θ_old)² of the update pass */
    double *clip_layer;   /* scratch [n_layers]: elements under the floor */

    double *loss_buf; /* [2 * HPARAMS_MAX_PROBES * cap_batch + 3 * cap_batch] */
    int32_t cap_batch;

    optim_step_stats stats;
    optim_layer_stats *lstats; /* [n_layers] */
    uint64_t forwards_total;

    void *mstate;         /* the method's own state (optim_method_ops.state_new), or NULL */
    /* HELENE's measured layer curvature (second differences on refresh steps,
     * for lambda_mode=measured, hess_estimator=layer_second_difference and
     * precondition=perturbation), per group of layer_granularity */
    double *meas_h;       /* [n_layers] EMA (β2) of the groups' measured curvature */
    double *meas_raw;     /* [n_layers] this refresh's raw values */
    uint64_t n_meas;      /* measurements into meas_h since the state was created */
    int32_t meas_gran;    /* the granularity meas_h belongs to */
    float *probe_lscale;  /* [n_layers] per-layer probe scale during a step, or NULL */
    float *lscale_buf;    /* [n_layers] storage for it */
};

/* A pass over pieces: fn(job, piece id) for every id, on the pool. */
typedef struct pass_job pass_job;
struct pass_job {
    optim *o;
    void (*fn)(const pass_job *j, uint32_t piece_id);
    const uint32_t *ids;
    size_t n_ids;
    /* perturb */
    uint64_t seed;
    float scale;
    bool hizoo_scale; /* θ += scale z / sqrt(H) */
    bool want_zsq;
    /* the method's update scalars */
    const void *u;
    atomic_size_t next; /* first id not yet claimed by a thread */
};

/* The perturbation in flight (for restore on failure). */
typedef struct perturb_state {
    bool active;
    uint64_t seed;
    double offset; /* θ currently = θ0 + offset·z (HiZOO: z/√H) */
    const uint32_t *ids;
    size_t n_ids;
    bool hizoo;
} perturb_state;

/* A method's table. */
typedef struct optim_method_ops {
    bool needs_m, needs_h, needs_v; /* state arenas (same offsets as θ) */
    float h_init;                   /* what h starts at */
    /* One step t (tl: of the current state).  Fills o->stats (cleared and
     * given step/method/lr/seed by the driver) and o->lstats; on error θ is
     * as before the step and the state unchanged. */
    hl_status (*step)(optim *o, const objective *obj, uint64_t t, uint64_t tl, hl_err *err);
    /* Optional extra state: created fresh, freed, and saved in checkpoints. */
    hl_status (*state_new)(const optim *o, void **out, hl_err *err);
    void (*state_free)(void *mstate);
    /* checkpoint: append its tensors to ts (at most cap), and read them back
     * (validate first, change nothing on error) */
    void (*state_tensors)(const optim *o, st_write_tensor *ts, int *k, int cap);
    hl_status (*state_load)(optim *o, const st_file *f, hl_err *err);
} optim_method_ops;

const optim_method_ops *optim_method_ops_of(int32_t method);
extern const optim_method_ops optim_ops_spsa;    /* optim_spsa.c: the six */
extern const optim_method_ops optim_ops_lnewton; /* optim_lnewton.c */

/* out[i] = sqrtf(x[i]).  Square roots are exact IEEE operations, so the
 * vector instruction gives the same bits as sqrtf, but with errno semantics
 * (and gcc 12 ignores optimize("no-math-errno") for builtins) a sqrtf in a
 * loop stays one scalar call per element and keeps the whole loop scalar:
 * zo-adam's and HiZOO's passes were 2-3x slower than MeZO's for that alone.
 * So the roots are taken here, 4 lanes at a time with SSE (x86-64's
 * baseline), and the loops that use them vectorise. */
static inline void sqrt_span(float *restrict out, const float *restrict x, size_t n)
{
    size_t i = 0;
#if defined(__SSE__) && defined(__GNUC__)
    for (; i + 4 <= n; i += 4)
        _mm_storeu_ps(out + i, _mm_sqrt_ps(_mm_loadu_ps(x + i)));
#endif
    for (; i < n; i++)
        out[i] = sqrtf(x[i]);
}

double oi_now_ms(void);
float *oi_arena_alloc(size_t n, float fill);
uint16_t *oi_arena_alloc16(size_t n, uint16_t fill);
/* Σ of per-piece values into per-layer sums, in piece order. */
void oi_reduce_to_layers(const optim *o, double *layer_out, const double *piece_vals,
                         const uint32_t *ids, size_t n_ids);
/* Mean over group g of per-layer sums X (Σ X / Σ sizes). */
double oi_group_mean(const optim *o, const grouping *g, const double *X, int32_t group);
void oi_run_pass(optim *o, pass_job *j);
/* θ += scale z on the pieces ids (z / sqrt(H) for HiZOO), Σ z² per piece
 * into piece_zsq when want_zsq; ms accumulates the time. */
void oi_run_perturb(optim *o, perturb_state *ps_, const uint32_t *ids, size_t n_ids,
                    uint64_t seed, double scale, bool hizoo, bool want_zsq, double *ms);
void oi_restore_perturb(optim *o, perturb_state *ps_, double *ms);
hl_status oi_ensure_batch(optim *o, int32_t B, hl_err *err);
/* The batch of step t (its size into *B and the stats), with loss buffers
 * for it. */
hl_status oi_select_batch(optim *o, const objective *obj, uint64_t t, int32_t *B, hl_err *err);
/* Forward on the current θ, checked for finite losses; what names the phase. */
hl_status oi_forward(optim *o, const objective *obj, double *losses, int32_t B,
                     const char *what, hl_err *err);
/* The same through objective_eval_staged. */
hl_status oi_forward_staged(optim *o, const objective *obj, double *losses, int32_t B,
                            int32_t save_stage, int32_t start_stage, const char *what,
                            hl_err *err);
double oi_mean_of(const double *x, int32_t n);
/* HELENE's ablation toggles (precondition, clip) take effect keeping each
 * layer's update size (optim_spsa.c). */
void oi_helene_ablate_apply(optim *o);

#endif

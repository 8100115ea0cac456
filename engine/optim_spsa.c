/* optim_spsa.c - the six methods that probe the whole model with one SPSA
 * perturbation per probe: MeZO, ZO-SGD-MMT, ZO-Sign, ZO-Adam, HiZOO and
 * HELENE (arXiv 2411.10696).  Their probe plan is shared: [HiZOO: forward at θ];
 * [HELENE blockwise on refresh steps: one ± probe per block]; for each of
 * n_probes probes θ += εz, forward, θ −= 2εz, forward (the restore +εz is
 * fused into the update pass for the last probe); then one fused restore +
 * update pass whose per-element kernel is the method's, and which fills the
 * per-layer telemetry.
 */
#include "optim_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

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
    bool refresh, blockwise;             /* helene (blockwise: h from the group probes) */
    bool hconst;                         /* helene: ĥ_i = block_q[group], no z² */
    const float *lscale;                 /* helene: [n_layers] probe scale, or NULL */
    const uint64_t *block_seeds;         /* [n_groups] blockwise probe seeds */
    const float *block_q;                /* [n_groups] */
    const int32_t *group_of_layer;
    const float *lam;                    /* [n_layers] */
    float hb;                            /* helene: h's bias correction 1/(1-β2^r), or 1 */
    const float *ascale;                 /* helene: [n_layers] ablation scale, or NULL */
    float pg, pd, uclip;                 /* den = pg max(hb h, λ) + pd; |u| <= uclip */
    uint64_t round_seed;                 /* 16-bit state: this step's rounding bits */
} upd_scalars;

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
    if (u->lscale) { /* the probe was z_l = s_l z: so are the restore and g */
        const float ls = u->lscale[layer];
        er = er * ls;
        for (size_t i = 0; i < n; i++)
            g[i] *= ls;
    }
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
        if (u->refresh && u->blockwise && u->hconst) {
            float qg = u->block_q[u->group_of_layer[layer]];
            for (size_t i = 0; i < n; i++)
                zz[i] = qg;
        } else if (u->refresh && u->blockwise) {
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

/* 16-bit state blocks: widen, and narrow with stochastic rounding (vector
 * clones: the hash is 32-bit multiplies and shifts) */
WIDE_CLONES static void widen_span(float *restrict out, const uint16_t *restrict in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = oi_bf16_to_f32(in[i]);
}

WIDE_CLONES static void narrow_span(uint16_t *restrict out, const float *restrict in, size_t n,
                                    uint32_t key, uint64_t i0)
{
    if (n && (i0 >> 32) != ((i0 + n - 1) >> 32)) { /* crosses 2^32: element by element */
        for (size_t i = 0; i < n; i++)
            out[i] = oi_f32_to_bf16_sr(in[i], key, i0 + i);
        return;
    }
    const uint32_t kh = oi_round_hi(key, i0); /* one hash of the high half per span */
    for (size_t i = 0; i < n; i++)
        out[i] = oi_bf16_round(in[i], oi_hash32(kh ^ (uint32_t)(i0 + i)));
}

static void update_piece(const pass_job *j, uint32_t p)
{
    const optim *o = j->o;
    const piece *pc = &o->pieces[p];
    piece_acc *out = &o->piece_acc[p];
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
    if (o->state16) { /* widen a block of m, h, v; update; narrow what changed */
        uint16_t *m16 = o->m16 ? o->m16 + so : NULL, *h16 = o->h16 ? o->h16 + so : NULL;
        uint16_t *v16 = o->v16 ? o->v16 + so : NULL;
        const bool h_changes = u->method != OPTIM_METHOD_HELENE || u->refresh;
        uint32_t key[3]; /* per arena and layer */
        for (int a = 0; a < 3; a++)
            key[a] = oi_hash32((uint32_t)(u->round_seed >> (a * 11)) ^
                               oi_hash32((uint32_t)pc->layer * 3u + (uint32_t)a + 1u));
        float mb[SUB], hb[SUB], vb[SUB];
        for (size_t i0 = pc->begin; i0 < pc->end; i0 += SUB) {
            size_t n = pc->end - i0 < SUB ? pc->end - i0 : SUB;
            if (m16)
                widen_span(mb, m16 + i0, n);
            if (h16)
                widen_span(hb, h16 + i0, n);
            if (v16)
                widen_span(vb, v16 + i0, n);
            update_span(u, pc->layer, L->decay, i0, n, th + i0, m16 ? mb : NULL,
                        h16 ? hb : NULL, v16 ? vb : NULL, acc_state, acc_max, acc_clip, acc_du2);
            if (m16)
                narrow_span(m16 + i0, mb, n, key[0], i0);
            if (h16 && h_changes)
                narrow_span(h16 + i0, hb, n, key[1], i0);
            if (v16)
                narrow_span(v16 + i0, vb, n, key[2], i0);
        }
    } else {
        for (size_t i0 = pc->begin; i0 < pc->end; i0 += SUB) {
            size_t n = pc->end - i0 < SUB ? pc->end - i0 : SUB;
            update_span(u, pc->layer, L->decay, i0, n, th + i0, m ? m + i0 : NULL,
                        h ? h + i0 : NULL, v ? v + i0 : NULL, acc_state, acc_max, acc_clip,
                        acc_du2);
        }
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

/* A HELENE ablation toggle takes effect: per layer, the update m / den with
 * the new precondition/clip settings is rescaled so its RMS over the layer,
 * from the current m, h and λ, is what the settings in force gave (scale 1
 * when both are on again: the paper's method exactly).  Records the RMS over
 * all tuned elements before, without the scale, and after. */
void oi_helene_ablate_apply(optim *o)
{
    const hparams *hp = &o->hp;
    const bool p_new = hp->precondition == PRECONDITION_ON, k_new = hp->clip;
    double all_old = 0, all_raw = 0, all_new = 0, n_all = 0;
    for (int l = 0; l < o->ps->n_layers; l++) {
        const param_layer *ly = &o->ps->layers[l];
        if (ly->frozen || !((o->m && o->h) || (o->m16 && o->h16)))
            continue;
        const size_t off = o->soff[l];
        const float hb = o->last_hb;
        const float lam_old = o->eff_clip ? o->lam_on[l] : 0.0f;
        const float lam_new = k_new ? o->lam_on[l] : 0.0f;
        const float g_old = o->eff_precondition ? (float)hp->gamma : 0.0f;
        const float d_old = o->eff_precondition ? (float)hp->delta : 1.0f;
        const float g_new = p_new ? (float)hp->gamma : 0.0f;
        const float d_new = p_new ? (float)hp->delta : 1.0f;
        double so = 0, sn = 0;
        for (size_t i = 0; i < ly->size; i++) {
            const float mi = o->m ? o->m[off + i] : oi_bf16_to_f32(o->m16[off + i]);
            const float hi = o->h ? o->h[off + i] : oi_bf16_to_f32(o->h16[off + i]);
            float hh = hi * hb;
            double uo = mi / (g_old * (hh > lam_old ? hh : lam_old) + d_old);
            double un = mi / (g_new * (hh > lam_new ? hh : lam_new) + d_new);
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

/* ---- the step ------------------------------------------------------------ */

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

/* One step's plan, buffers and what must be undone if a forward fails. */
typedef struct spsa_ctx {
    optim *o;
    const objective *obj;
    const hparams *hp;
    const grouping *grp;
    uint64_t t, tl; /* the step, and the step of the current state */
    int L;
    int32_t B;
    bool helene, hizoo;
    bool refresh;       /* helene: h is refreshed this step */
    bool blockwise;     /* helene: one ± probe per group feeds h (hess_probe blockwise) */
    bool measure;       /* helene: one second difference per group (layer curvature) */
    bool groupwise;     /* blockwise || measure: the group probes run */
    bool h_from_groups; /* h's refresh comes from the group probes */
    double *lp, *lm;    /* [nq][B] losses at θ ± εz_p */
    double *l0;         /* [B] at θ */
    double *blp, *blm;  /* [B] a group probe's ± losses */
    double L0;          /* mean of l0, or NaN */
    perturb_state pst;  /* θ's current perturbation (undone on failure) */
    double *meas_save;  /* meas_h before this step's measurement (restored on failure) */
    float *block_q;     /* [n_groups] a group probe's q (or second difference) */
    uint64_t *block_seeds; /* [n_groups] */
} spsa_ctx;

/* HiZOO's third forward, at θ; HELENE's centre of the second differences. */
static hl_status forward_at_theta(spsa_ctx *c, hl_err *err)
{
    optim *o = c->o;
    hl_status st;
    if (c->hizoo) {
        if ((st = oi_forward(o, c->obj, c->l0, c->B, "hizoo loss at theta", err)) != HL_OK)
            return st;
        c->L0 = oi_mean_of(c->l0, c->B);
        o->stats.loss0 = c->L0;
    }
    if (c->helene && o->meas_gran != c->hp->layer_granularity) { /* new groups: measure afresh */
        for (int l = 0; l < c->L; l++)
            o->meas_h[l] = 0;
        o->n_meas = 0;
        o->meas_gran = c->hp->layer_granularity;
    }
    if (c->measure) {
        if ((st = oi_forward(o, c->obj, c->l0, c->B, "loss at theta (layer curvature)", err)) !=
            HL_OK)
            return st;
        c->L0 = oi_mean_of(c->l0, c->B);
        o->stats.loss0 = c->L0;
    }
    return HL_OK;
}

/* HELENE's group probes, each a ± perturbation of one group at θ: blockwise
 * A-GNB's q per group, and (measure) the group's second difference. */
static hl_status probe_groups(spsa_ctx *c, hl_err *err)
{
    optim *o = c->o;
    const hparams *hp = c->hp;
    const grouping *grp = c->grp;
    const int L = c->L;
    const int32_t B = c->B;
    optim_step_stats *S = &o->stats;
    c->block_q = malloc((size_t)grp->n_groups * sizeof *c->block_q);
    c->block_seeds = malloc((size_t)grp->n_groups * sizeof *c->block_seeds);
    if (!c->block_q || !c->block_seeds)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for blockwise probes");
    for (int l = 0; l < L; l++)
        o->hhat_sum[l] = 0;
    for (int32_t g = 0; g < grp->n_groups; g++) {
        const uint32_t *ids = grp->ids + grp->start[g];
        size_t nid = grp->start[g + 1] - grp->start[g];
        if (nid == 0) { /* every layer of the group is frozen */
            c->block_seeds[g] = 0;
            c->block_q[g] = 0;
            continue;
        }
        uint64_t seed = rng_step_seed(o->run_seed, c->t, PROBE_BLOCK_BASE + (uint32_t)g);
        c->block_seeds[g] = seed;
        /* second differences of small groups need a larger ε to stand
         * above rounding (layer-newton's eps_scale rule) */
        double eg = hp->eps;
        if (c->measure) {
            double dg = 0;
            for (int l = 0; l < L; l++)
                if (grp->group_of_layer[l] == g && !o->ps->layers[l].frozen)
                    dg += (double)o->ps->layers[l].size;
            eg = optim_lnewton_eps(hp, dg);
        }
        hl_status st;
        oi_run_perturb(o, &c->pst, ids, nid, seed, eg, false, true, &S->ms_perturb);
        oi_reduce_to_layers(o, o->zsq_layer, o->piece_zsq, ids, nid);
        if ((st = oi_forward(o, c->obj, c->blp, B, "blockwise +eps", err)) != HL_OK)
            return st;
        oi_run_perturb(o, &c->pst, ids, nid, seed, -2.0 * eg, false, false, &S->ms_perturb);
        if ((st = oi_forward(o, c->obj, c->blm, B, "blockwise -eps", err)) != HL_OK)
            return st;
        oi_run_perturb(o, &c->pst, ids, nid, seed, eg, false, false, &S->ms_perturb);
        double qg;
        probe_coeffs(&qg, c->blp, c->blm, B, eg, hp->hess_estimator);
        c->block_q[g] = (float)qg;
        if (c->measure) { /* (L+ + L− − 2 L0) / (ε² ‖z_g‖²), negative ones as 0 */
            double zg = 0;
            for (int l = 0; l < L; l++)
                if (grp->group_of_layer[l] == g)
                    zg += o->zsq_layer[l];
            double sd = (oi_mean_of(c->blp, B) + oi_mean_of(c->blm, B) - 2.0 * c->L0) /
                        (eg * eg * zg);
            o->meas_raw[g] = sd > 0 && isfinite(sd) ? sd : 0.0;
            if (hp->hess_estimator == HESS_ESTIMATOR_LAYER_SD)
                c->block_q[g] = (float)o->meas_raw[g]; /* ĥ_i = the group's value */
        }
        for (int l = 0; l < L; l++)
            if (grp->group_of_layer[l] == g)
                o->hhat_sum[l] = c->measure && hp->hess_estimator == HESS_ESTIMATOR_LAYER_SD
                                     ? (double)c->block_q[g] * (double)o->ps->layers[l].size
                                     : (double)c->block_q[g] * o->zsq_layer[l];
    }
    if (c->measure) { /* kept to undo if a later forward fails */
        if (!(c->meas_save = malloc((size_t)grp->n_groups * sizeof *c->meas_save)))
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory for layer curvature");
        memcpy(c->meas_save, o->meas_h, (size_t)grp->n_groups * sizeof *c->meas_save);
        o->n_meas++;
        for (int32_t g = 0; g < grp->n_groups; g++)
            o->meas_h[g] = hp->beta2 * o->meas_h[g] + (1.0 - hp->beta2) * o->meas_raw[g];
    }
    return HL_OK;
}

/* Means over every tuned element: of per-layer sums (Σ_l sums[l] / Σ_l n_l)
 * and of per-group values (Σ_l n_l v[group of l] / Σ_l n_l); 0 when nothing
 * is tuned.  In layer order, so the bits do not depend on the caller. */
static double tuned_mean_of_sums(const optim *o, const double *sums)
{
    double s = 0, n = 0;
    for (int l = 0; l < o->ps->n_layers; l++)
        if (!o->ps->layers[l].frozen) {
            s += sums[l];
            n += (double)o->ps->layers[l].size;
        }
    return n > 0 ? s / n : 0.0;
}

static double tuned_mean_of_groups(const optim *o, const grouping *grp, const double *v)
{
    double s = 0, n = 0;
    for (int l = 0; l < o->ps->n_layers; l++)
        if (!o->ps->layers[l].frozen) {
            s += (double)o->ps->layers[l].size * v[grp->group_of_layer[l]];
            n += (double)o->ps->layers[l].size;
        }
    return n > 0 ? s / n : 0.0;
}

/* precondition=perturbation: z_l scaled by sqrt(mean h / h_l), within
 * [1/32, 32]. */
static void perturbation_scales(spsa_ctx *c)
{
    optim *o = c->o;
    const grouping *grp = c->grp;
    const double hbar = tuned_mean_of_groups(o, grp, o->meas_h);
    for (int l = 0; l < c->L; l++) {
        double mh = o->meas_h[grp->group_of_layer[l]];
        double sc = hbar > 0 ? sqrt(hbar / (mh > hbar / 1024 ? mh : hbar / 1024)) : 1.0;
        o->lscale_buf[l] = (float)(sc < 1.0 / 32 ? 1.0 / 32 : sc > 32 ? 32 : sc);
    }
    o->probe_lscale = o->lscale_buf;
}

/* The SPSA probes' perturbations and forwards.  Every probe's perturbations
 * run here; its forwards only on the rank that owns it (optim_share_probes),
 * the others' losses arrive through share_fn.  The last probe is left at
 * θ − εz: its restore is fused into the update. */
static hl_status run_probes(spsa_ctx *c, upd_scalars *u, hl_err *err)
{
    optim *o = c->o;
    const int32_t nq = c->hp->n_probes, B = c->B;
    const double eps = c->hp->eps;
    optim_step_stats *S = &o->stats;
    const bool want_zsq = c->helene && c->refresh && !c->h_from_groups;
    const bool shared = o->share_n > 1;
    hl_status st;
    if (want_zsq)
        for (int l = 0; l < c->L; l++)
            o->hhat_sum[l] = 0;
    for (int32_t p = 0; p < nq; p++) {
        uint64_t seed = rng_step_seed(o->run_seed, c->t, (uint32_t)p);
        u->seeds[p] = seed;
        double *lpp = c->lp + (size_t)p * B, *lmp = c->lm + (size_t)p * B;
        const bool mine = !shared || p % o->share_n == o->share_rank;
        oi_run_perturb(o, &c->pst, o->all_ids, o->n_pieces, seed, eps, c->hizoo, want_zsq,
                       &S->ms_perturb);
        if (want_zsq) {
            oi_reduce_to_layers(o, o->zsq_layer, o->piece_zsq, o->all_ids, o->n_pieces);
            memcpy(o->zsq_probe + (size_t)p * c->L, o->zsq_layer, (size_t)c->L * sizeof(double));
        }
        if (mine && (st = oi_forward(o, c->obj, lpp, B, "+eps", err)) != HL_OK)
            return st;
        oi_run_perturb(o, &c->pst, o->all_ids, o->n_pieces, seed, -2.0 * eps, c->hizoo, false,
                       &S->ms_perturb);
        if (mine && (st = oi_forward(o, c->obj, lmp, B, "-eps", err)) != HL_OK)
            return st;
        if (p < nq - 1)
            oi_run_perturb(o, &c->pst, o->all_ids, o->n_pieces, seed, eps, c->hizoo, false,
                           &S->ms_perturb);
    }
    if (shared) {
        if ((st = o->share_fn(o->share_ctx, c->lp, c->lm, nq, B, err)) != HL_OK)
            return st;
        /* the job's forwards: the other ranks' count as this step's too */
        for (int32_t p = 0; p < nq; p++)
            if (p % o->share_n != o->share_rank) {
                S->forwards += 2;
                o->forwards_total += 2;
            }
    }
    return HL_OK;
}

/* The probes' losses into the update's weights: g = Σ gw_p z_p and
 * ĥ = Σ hw_p z_p², the per-layer ĥ sums of a refresh, and the step's
 * stats. */
static hl_status probe_weights(spsa_ctx *c, upd_scalars *u, hl_err *err)
{
    optim *o = c->o;
    const hparams *hp = c->hp;
    const int32_t nq = hp->n_probes, B = c->B;
    const double eps = hp->eps;
    const bool shared = o->share_n > 1;
    const bool hhat = c->helene && c->refresh && !c->h_from_groups;
    double c_mean = 0, q_mean = 0, Lp = 0, Lm = 0;
    for (int32_t p = 0; p < nq; p++) {
        const double *lpp = c->lp + (size_t)p * B, *lmp = c->lm + (size_t)p * B;
        for (int32_t b = 0; b < B && shared; b++) /* (own forwards were checked there) */
            if (!isfinite(lpp[b]) || !isfinite(lmp[b]))
                return hl_err_set(err, HL_ERR_NUMERIC, "step %llu: non-finite loss for "
                                  "example %d of probe %d", (unsigned long long)c->t, (int)b,
                                  (int)p);
        double q, cp = probe_coeffs(&q, lpp, lmp, B, eps, hp->hess_estimator);
        double Lpp = oi_mean_of(lpp, B), Lmp = oi_mean_of(lmp, B);
        c_mean += cp / nq;
        q_mean += q / nq;
        Lp += Lpp / nq;
        Lm += Lmp / nq;
        switch (hp->method) {
        case OPTIM_METHOD_ZO_SIGN:
            u->gw[p] = (float)((cp > 0 ? 1.0 : cp < 0 ? -1.0 : 0.0) / nq);
            break;
        case OPTIM_METHOD_HIZOO:
            u->gw[p] = (float)(cp / nq);
            u->hw[p] = (float)(fabs(Lpp + Lmp - 2.0 * c->L0) / (2.0 * eps * eps) / nq);
            break;
        default:
            u->gw[p] = (float)(cp / nq);
            u->hw[p] = (float)(q / nq);
            break;
        }
        if (hhat)
            for (int l = 0; l < c->L; l++)
                o->hhat_sum[l] += (double)u->hw[p] * o->zsq_probe[(size_t)p * c->L + l];
    }
    o->stats.proj_grad = c_mean;
    o->stats.q = q_mean;
    o->stats.loss_plus = Lp;
    o->stats.loss_minus = Lm;
    return HL_OK;
}

/* The group probes' ĥ in the shared probe's units.  HELENE's lr is set for
 * A-GNB's ĥ, whose mean over the tuned elements is this step's q; the
 * group probes measure on other scales: blockwise's q_g is the squared
 * gradient along one group (its mean about 1/G of q), a second difference
 * is a curvature in the loss's units (1e-3 on the default model, 1 to 1000
 * on the layered quadratic).  At the same lr either would step orders of
 * magnitude further (the default model blew up within 5-50 steps at
 * 3e-3).  So the group values keep their ratios (the shape across layers)
 * and take q's mean: lr keeps its meaning when an option is switched on. */
static void groups_to_probe_units(spsa_ctx *c)
{
    optim *o = c->o;
    const double mean = tuned_mean_of_sums(o, o->hhat_sum);
    if (!(mean > 0)) /* nothing measured a positive value: the floors decide */
        return;
    const double f = o->stats.q / mean;
    for (int32_t g = 0; g < c->grp->n_groups; g++)
        c->block_q[g] = (float)(c->block_q[g] * f);
    for (int l = 0; l < c->L; l++)
        o->hhat_sum[l] *= f;
}

/* HELENE's scalars: annealed momentum, ablations, h's bias correction, and
 * each layer's floor λ_l by lambda_mode. */
static void helene_scalars(spsa_ctx *c, upd_scalars *u)
{
    optim *o = c->o;
    const hparams *hp = c->hp;
    const grouping *grp = c->grp;
    const int L = c->L;
    optim_step_stats *S = &o->stats;
    u->refresh = c->refresh;
    u->blockwise = c->h_from_groups;
    u->hconst = c->measure && hp->hess_estimator == HESS_ESTIMATOR_LAYER_SD;
    u->lscale = o->probe_lscale;
    u->block_seeds = c->block_seeds;
    u->block_q = c->block_q;
    u->b1 = (float)hp->beta1;
    u->b2 = (float)hp->beta2;
    double a = S->alpha;
    u->ma = (float)(hp->momentum_form == MOMENTUM_FORM_EMA ? (1.0 - hp->beta1) * a : a);
    /* ablations: a fresh state's first step runs the full method, so a
     * toggle given from the start has an update size to keep (below) */
    if (c->tl == 1) {
        o->eff_precondition = o->eff_clip = true;
        for (int l = 0; l < L; l++)
            o->ablate_scale[l] = 1.0f;
    }
    u->pg = o->eff_precondition ? (float)hp->gamma : 0.0f;
    u->pd = o->eff_precondition ? (float)hp->delta : 1.0f;
    u->ascale = o->ablate_scale;
    u->uclip = hp->update_clip ? 1.0f : INFINITY;
    if (c->refresh)
        o->n_refresh++;
    u->hb = hp->hess_debias && o->n_refresh > 0
                ? (float)(1.0 / (1.0 - pow(hp->beta2, (double)o->n_refresh)))
                : 1.0f;
    S->h_scale = u->hb;
    const double *pred_sum = o->h_pred; /* on refresh: Σ h this refresh makes */
    if (c->refresh) {
        if (!o->have_first) {
            memcpy(o->first_hhat, o->hhat_sum, (size_t)L * sizeof(double));
            o->have_first = true;
        }
        /* relative: mean of the h this refresh produces, from the sums:
         * Σ h_new = β2 Σ h_old + (1 − β2) Σ ĥ (no extra sweep) */
        double *pred = o->h_pred;
        for (int l = 0; l < L; l++)
            pred[l] = hp->beta2 * o->h_sum[l] + (1.0 - hp->beta2) * o->hhat_sum[l];
        if (hp->hess_estimator == HESS_ESTIMATOR_LAYER_SD) { /* one floor (below) */
            const double mean = tuned_mean_of_sums(o, pred);
            for (int l = 0; l < L; l++)
                o->rel_mean[l] = u->hb * mean;
        } else {
            for (int l = 0; l < L; l++)
                o->rel_mean[l] = u->hb * oi_group_mean(o, grp, pred, grp->group_of_layer[l]);
        }
    }
    /* measured floors in the units of h: κ h̄ max(m_l, m̄/4) / m̄, with h̄ the
     * mean h (as the update sees it) and m̄ the mean measured curvature, both
     * over every tuned element; the measurement gives the shape across
     * layers.  At least a quarter of the mean: a group whose second
     * difference came out negative or tiny (noise, or a flat direction, as
     * many are on a language model) would otherwise have no floor under
     * A-GNB's ĥ_i = q z_i², which reaches 1e-6 q, and its update would blow
     * the model up within a few steps (the default model at lr 3e-3). */
    const bool layer_sd = hp->hess_estimator == HESS_ESTIMATOR_LAYER_SD;
    double meas_unit = 0, meas_mean = 0;
    if (hp->lambda_mode == LAMBDA_MODE_MEASURED) {
        const double hmean = tuned_mean_of_sums(o, c->refresh ? pred_sum : o->h_sum);
        const double mmean = tuned_mean_of_groups(o, grp, o->meas_h);
        if (mmean > 0) {
            meas_unit = hp->kappa * u->hb * hmean / mmean;
            meas_mean = mmean;
        }
    }
    /* layer_second_difference: ĥ is one constant per group, shaped by the
     * group's measurement, so a floor shaped the same way (κ times the
     * group's own first ĥ, its own mean h, or its own measurement) would
     * never bind, and a group whose second difference came out negative,
     * zero or tiny (noise, or a flat direction: common on language models)
     * would divide its update by almost nothing and blow the model up in a
     * step.  Its floor is one for every layer: κ times the mean over every
     * tuned element of the first ĥ (calibrated: κ q, in A-GNB's units), of
     * h (relative, rel_mean above) or of h as the update sees it (measured):
     * stiffer groups step less, flatter ones as the floor allows. */
    const bool blockwise = hp->hess_probe == HESS_PROBE_BLOCKWISE && !layer_sd;
    const double first_mean = (layer_sd || blockwise) && hp->lambda_mode == LAMBDA_MODE_CALIBRATED
                                  ? tuned_mean_of_sums(o, o->first_hhat)
                                  : 0.0;
    for (int l = 0; l < L; l++) {
        const int32_t g = grp->group_of_layer[l];
        double lam = 0;
        if (hp->lambda_mode == LAMBDA_MODE_CALIBRATED)
            lam = hp->kappa * (layer_sd    ? first_mean
                               : blockwise ? fmax(oi_group_mean(o, grp, o->first_hhat, g),
                                                  first_mean / 4)
                                           : oi_group_mean(o, grp, o->first_hhat, g));
        else if (hp->lambda_mode == LAMBDA_MODE_MEASURED)
            lam = meas_unit * (layer_sd ? meas_mean : fmax(o->meas_h[g], meas_mean / 4));
        else if (hp->lambda_mode == LAMBDA_MODE_RELATIVE)
            lam = hp->kappa * o->rel_mean[l];
        else if (hp->n_lambda_abs > 0)
            lam = hp->lambda_abs[hp->n_lambda_abs == L ? l : 0];
        o->lam_on[l] = (float)lam;
        o->lam[l] = o->eff_clip ? (float)lam : 0.0f;
    }
    u->lam = o->lam;
}

/* The update's scalars by method (the probe weights are in already). */
static void update_scalars(spsa_ctx *c, upd_scalars *u)
{
    const hparams *hp = c->hp;
    u->method = hp->method;
    u->round_seed = rng_step_seed(c->o->run_seed, c->t, PROBE_ROUND);
    u->eps_restore = (float)hp->eps;
    u->lr = (float)hp->lr;
    u->wd = (float)hp->weight_decay;
    u->group_of_layer = c->grp->group_of_layer;
    switch (hp->method) {
    case OPTIM_METHOD_ZO_SGD_MMT:
        u->mu = (float)hp->momentum;
        break;
    case OPTIM_METHOD_ZO_ADAM:
        u->b1 = (float)hp->adam_beta1;
        u->b2 = (float)hp->adam_beta2;
        u->adam_c1 = (float)(1.0 / (1.0 - pow(hp->adam_beta1, (double)c->tl)));
        u->adam_c2 = (float)(1.0 / (1.0 - pow(hp->adam_beta2, (double)c->tl)));
        u->adam_eps = (float)hp->adam_eps;
        break;
    case OPTIM_METHOD_HIZOO:
        u->hz_alpha = (float)hp->hizoo_alpha;
        break;
    case OPTIM_METHOD_HELENE:
        helene_scalars(c, u);
        break;
    default:
        break;
    }
}

/* Per-layer telemetry from the update pass's piece sums, in piece order. */
static void layer_telemetry(spsa_ctx *c, const upd_scalars *u)
{
    optim *o = c->o;
    const hparams *hp = c->hp;
    const int L = c->L;
    const int32_t method = hp->method;
    for (int l = 0; l < L; l++) {
        o->lstats[l] = (optim_layer_stats){.state_max = -INFINITY, .lambda = o->lam[l],
                                           .score = NAN, .probe_share = NAN, .group = -1};
        o->h_sum[l] = 0;
    }
    double *du2 = o->du2_layer;
    for (int l = 0; l < L; l++)
        du2[l] = 0;
    double *clip = o->clip_layer;
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
        if (c->helene) { /* h as the update sees it: bias-corrected when hess_debias is on */
            ls->state_mean *= u->hb;
            ls->state_max *= u->hb;
        }
        ls->clip_rate = c->helene ? (float)(clip[l] / n) : 0.0f;
        ls->lambda = c->helene ? o->lam[l] : 0.0f;
        ls->update_rms = (float)sqrt(du2[l] / n);
    }
    if (c->helene) {
        o->last_hb = u->hb;
        if ((hp->precondition == PRECONDITION_ON) != o->eff_precondition ||
            hp->clip != o->eff_clip)
            oi_helene_ablate_apply(o); /* toggled off from the start: calibrated on this step */
        double clipped = 0, n_tuned = 0;
        for (int l = 0; l < L; l++)
            if (!o->ps->layers[l].frozen) {
                clipped += clip[l];
                n_tuned += (double)o->ps->layers[l].size;
            }
        o->stats.clip_rate = n_tuned > 0 ? clipped / n_tuned : 0.0;
    }
    if (method == OPTIM_METHOD_ZO_ADAM) /* h_sum tracks h (HELENE) and H (HiZOO) only */
        for (int l = 0; l < L; l++)
            o->h_sum[l] = 0;
}

/* The step, phase by phase: [forward at θ]; [group probes]; [perturbation
 * scales]; the SPSA probes; their weights; the update's scalars; the fused
 * restore + update pass; telemetry.  A failed forward undoes θ's
 * perturbation and this step's layer measurement. */
static hl_status spsa_step(optim *o, const objective *obj, uint64_t t, uint64_t tl,
                           hl_err *err)
{
    const hparams *hp = &o->hp;
    spsa_ctx c = {.o = o, .obj = obj, .hp = hp, .grp = &o->groups[hp->layer_granularity],
                  .t = t, .tl = tl, .L = o->ps->n_layers, .L0 = NAN};
    c.helene = hp->method == OPTIM_METHOD_HELENE;
    c.hizoo = hp->method == OPTIM_METHOD_HIZOO;
    c.refresh = c.helene && optim_helene_refresh(hp, tl);
    c.blockwise = c.refresh && hp->hess_probe == HESS_PROBE_BLOCKWISE;
    c.measure = c.refresh && (hp->lambda_mode == LAMBDA_MODE_MEASURED ||
                              hp->hess_estimator == HESS_ESTIMATOR_LAYER_SD ||
                              hp->precondition == PRECONDITION_PERTURBATION);
    c.groupwise = c.blockwise || c.measure;
    c.h_from_groups = c.blockwise || (c.measure && hp->hess_estimator == HESS_ESTIMATOR_LAYER_SD);
    optim_step_stats *S = &o->stats;
    S->alpha = c.helene ? optim_helene_alpha(hp, tl) : NAN;
    S->refresh = c.refresh;
    hl_status st = oi_select_batch(o, obj, t, &c.B, err);
    if (st != HL_OK)
        return st;
    c.lp = o->loss_buf;
    c.lm = c.lp + (size_t)HPARAMS_MAX_PROBES * c.B;
    c.l0 = c.lm + (size_t)HPARAMS_MAX_PROBES * c.B;
    c.blp = c.l0 + c.B;
    c.blm = c.blp + c.B;

    upd_scalars u;
    memset(&u, 0, sizeof u);
    u.nq = hp->n_probes;
    if ((st = forward_at_theta(&c, err)) != HL_OK ||
        (c.groupwise && (st = probe_groups(&c, err)) != HL_OK))
        goto fail;
    if (c.helene && hp->precondition == PRECONDITION_PERTURBATION && o->n_meas > 0)
        perturbation_scales(&c);
    if ((st = run_probes(&c, &u, err)) != HL_OK || (st = probe_weights(&c, &u, err)) != HL_OK)
        goto fail;
    if (c.h_from_groups)
        groups_to_probe_units(&c);
    update_scalars(&c, &u);

    double t0 = oi_now_ms();
    pass_job j = {.o = o, .fn = update_piece, .ids = o->all_ids, .n_ids = o->n_pieces, .u = &u};
    oi_run_pass(o, &j);
    S->ms_update = oi_now_ms() - t0;

    layer_telemetry(&c, &u);
    o->probe_lscale = NULL;
    free(c.meas_save);
    free(c.block_q);
    free(c.block_seeds);
    return HL_OK;

fail:
    oi_restore_perturb(o, &c.pst, &S->ms_perturb);
    o->probe_lscale = NULL;
    if (c.meas_save) {
        memcpy(o->meas_h, c.meas_save, (size_t)c.grp->n_groups * sizeof *c.meas_save);
        o->n_meas--;
    }
    free(c.meas_save);
    free(c.block_q);
    free(c.block_seeds);
    return st;
}

const optim_method_ops optim_ops_spsa = {.step = spsa_step};

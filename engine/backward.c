/* backward.c - see backward.h.
 *
 * Layout of the work: the training forward mirrors model_forward call for
 * call (same kernels, same order, same bias-then-sgemm folding) but writes
 * each layer's activations to their own slices instead of overwriting one
 * residual buffer.  The backward pass walks the layers in reverse; per
 * linear layer y = x W^T + b it computes dx = dy W (rows split in fixed
 * chunks), dW += dy^T x (rows of dW split in fixed chunks, the sum over
 * tokens inside one sgemm) and db += column sums of dy (columns split,
 * tokens summed in order).  Layer-norm and activation outputs are
 * recomputed from their saved inputs with the forward's own kernels.
 *
 * Size (~1,700 lines, issue 19): the training forward, the backward of each
 * op and the losses share one activation layout and one set of buffers
 * (struct backward), and each op's backward sits beside the recompute of its
 * forward, as llm.c keeps them; the Llama block, which differs in every op,
 * is backward_llama.c, and the building blocks both use are declared in
 * backward_internal.h; the losses on top (LM and classification cross-
 * entropy) are backward_loss.c.
 */
#include "backward.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backward_internal.h"
#include "kernels.h"

/* ------------------------------------------------------ fixed-chunk sgemm --- */

/* As kernels.c: split points depend on the shapes alone, never on the
 * number of threads, so every thread count makes the same sgemm calls. */
#define MM_ROW_CHUNK 256
#define MM_COL_CHUNK 1024
#define MM_WROW_CHUNK 64  /* rows of a weight gradient per sgemm */
#define MM_WCOL_CHUNK 256 /* columns, when a weight has too few rows to split */

typedef struct mm_job {
    bool trans_a;    /* C += A^T B (weight gradients) instead of C = beta C + A B */
    float *c;
    const float *a, *b;
    int lda, ldb, ldc;
    int M, N, K;     /* C is [M, N]; the reduction runs over K */
    float beta;
} mm_job;

static void mm_fn(void *arg, int tid, int nt)
{
    mm_job *j = arg;
    bool by_rows;
    size_t chunk;
    if (j->trans_a) {
        by_rows = j->M >= 2 * MM_WROW_CHUNK || j->N < 2 * MM_WCOL_CHUNK;
        chunk = by_rows ? MM_WROW_CHUNK : MM_WCOL_CHUNK;
    } else {
        by_rows = j->M >= 2 * MM_ROW_CHUNK || j->N < 2 * MM_COL_CHUNK;
        chunk = by_rows ? MM_ROW_CHUNK : MM_COL_CHUNK;
    }
    const size_t total = by_rows ? (size_t)j->M : (size_t)j->N;
    const size_t n_chunks = (total + chunk - 1) / chunk;
    size_t c0, c1;
    pool_range(n_chunks, tid, nt, 1, &c0, &c1);
    for (size_t c = c0; c < c1; c++) {
        size_t a0 = c * chunk, a1 = a0 + chunk < total ? a0 + chunk : total;
        int len = (int)(a1 - a0);
        if (j->trans_a) {
            /* A is [K, M]: rows a0..a1 of A^T are its columns a0..a1 */
            if (by_rows)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, len, j->N, j->K, 1.0f,
                            j->a + a0, j->lda, j->b, j->ldb, 1.0f, j->c + a0 * (size_t)j->ldc,
                            j->ldc);
            else
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, j->M, len, j->K, 1.0f, j->a,
                            j->lda, j->b + a0, j->ldb, 1.0f, j->c + a0, j->ldc);
        } else {
            if (by_rows)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, len, j->N, j->K, 1.0f,
                            j->a + a0 * (size_t)j->lda, j->lda, j->b, j->ldb, j->beta,
                            j->c + a0 * (size_t)j->ldc, j->ldc);
            else
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, j->M, len, j->K, 1.0f,
                            j->a, j->lda, j->b + a0, j->ldb, j->beta, j->c + a0, j->ldc);
        }
    }
}

/* dx[N, K] (ldx) = beta * dx + dy[N, O] (ldy) · W[O, K]: the input gradient
 * of y = x W^T. */
void bi_mm_dx(pool *p, float *dx, size_t ldx, const float *dy, size_t ldy, const float *W,
              int N, int O, int K, float beta)
{
    if (N <= 0)
        return;
    mm_job j = {.trans_a = false, .c = dx, .a = dy, .b = W, .lda = (int)ldy, .ldb = K,
                .ldc = (int)ldx, .M = N, .N = K, .K = O, .beta = beta};
    pool_run(p, mm_fn, &j);
}

/* dW[O, K] += dy[N, O]^T (ldy) · x[N, K] (ldx): the weight gradient. */
void bi_mm_dw(pool *p, float *dW, const float *dy, size_t ldy, const float *x, size_t ldx,
              int N, int O, int K)
{
    if (N <= 0 || !dW) /* no gradient wanted (a frozen base weight under LoRA) */
        return;
    mm_job j = {.trans_a = true, .c = dW, .a = dy, .b = x, .lda = (int)ldy, .ldb = (int)ldx,
                .ldc = K, .M = O, .N = K, .K = N, .beta = 1.0f};
    pool_run(p, mm_fn, &j);
}

/* -------------------------------------------------------- elementwise --- */

typedef struct colsum_job {
    float *db;
    const float *dy;
    size_t rows, ld;
    int n;
} colsum_job;

/* db[o] += sum over rows of dy[r, o]: columns split, rows summed in order. */
static void colsum_fn(void *arg, int tid, int nt)
{
    colsum_job *j = arg;
    size_t c0, c1;
    pool_range((size_t)j->n, tid, nt, 16, &c0, &c1);
    for (size_t r = 0; r < j->rows; r++) {
        const float *d = j->dy + r * j->ld;
        for (size_t c = c0; c < c1; c++)
            j->db[c] += d[c];
    }
}

void bi_colsum(pool *p, float *db, const float *dy, size_t rows, int n, size_t ld)
{
    if (!db)
        return;
    colsum_job j = {.db = db, .dy = dy, .rows = rows, .ld = ld, .n = n};
    pool_run(p, colsum_fn, &j);
}

/* y = act(x) from a saved pre-activation: the forward's own kernel. */
static void act_recompute(pool *p, float *y, const float *pre, size_t rows, int F,
                          kern_act act)
{
    memcpy(y, pre, rows * (size_t)F * sizeof(float));
    kern_par_bias_act(p, y, NULL, rows, F, (size_t)F, act);
}


typedef struct act_job {
    float *d;
    const float *pre;
    size_t n;
    model_act act;
} act_job;

/* d *= act'(pre).  tanh-GELU as kern_gelu_tanh writes it: x·s with
 * s = 1/(1 + e^(−2u)), u = k(x + 0.044715x³), so the derivative is
 * s + x·s(1−s)·2k(1 + 3·0.044715x²); s(1−s) is computed as a product so
 * that e^(−2u) = inf gives 0, not inf/inf. */
static void act_back_fn(void *arg, int tid, int nt)
{
    act_job *j = arg;
    size_t i0, i1;
    pool_range(j->n, tid, nt, 16, &i0, &i1);
    float *d = j->d;
    const float *x = j->pre;
    switch (j->act) {
    case MODEL_ACT_RELU:
        for (size_t i = i0; i < i1; i++)
            d[i] = x[i] > 0.0f ? d[i] : 0.0f;
        break;
    case MODEL_ACT_GELU_TANH: {
        const float k2 = 1.5957691216057308f; /* 2·sqrt(2/pi) */
        for (size_t i = i0; i < i1; i++) {
            float xi = x[i], x2 = xi * xi;
            float s = 1.0f / (1.0f + expf(-k2 * (xi + 0.044715f * x2 * xi)));
            float g = s + xi * (s * (1.0f - s)) * k2 * (1.0f + 3.0f * 0.044715f * x2);
            d[i] *= g;
        }
        break;
    }
    case MODEL_ACT_GELU_ERF:
        for (size_t i = i0; i < i1; i++) {
            float xi = x[i];
            float g = 0.5f * (1.0f + erff(xi * 0.7071067811865476f)) +
                      xi * 0.3989422804014327f * expf(-0.5f * xi * xi);
            d[i] *= g;
        }
        break;
    case MODEL_ACT_SILU: /* silu' = s (1 + x (1 - s)), s = sigmoid(x) */
        for (size_t i = i0; i < i1; i++) {
            float s = 1.0f / (1.0f + expf(-x[i]));
            d[i] *= s * (1.0f + x[i] * (1.0f - s));
        }
        break;
    }
}

/* ------------------------------------------------------ layer norm back --- */

typedef struct lnb_job {
    float *dx;        /* [rows, C] output */
    const float *acc; /* [rows, C] added to dx (may be dx itself, or NULL) */
    const float *dy, *x, *w;
    float *xhat;      /* [rows, C] scratch: normalised input, for the parameter pass */
    float *dw, *db;
    size_t rows;
    int C;
    float eps;
    bool rms;         /* RMSNorm: no mean, no bias */
} lnb_job;

/* Per row: mean and rstd recomputed exactly as kern_layernorm does, then
 * dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) with g = dy·w.  RMSNorm is the
 * same with the mean taken as 0 (rstd as kern_par_rmsnorm computes it):
 * dx = rstd·(g − x̂·mean(g·x̂)). */
static void lnb_rows_fn(void *arg, int tid, int nt)
{
    lnb_job *j = arg;
    const int C = j->C;
    size_t r0, r1;
    pool_range(j->rows, tid, nt, 1, &r0, &r1);
    for (size_t r = r0; r < r1; r++) {
        const float *xr = j->x + r * (size_t)C, *dy = j->dy + r * (size_t)C;
        float *xh = j->xhat + r * (size_t)C, *dx = j->dx + r * (size_t)C;
        float mean = 0.0f, rstd;
        if (j->rms) {
            float ss = 0.0f;
            for (int i = 0; i < C; i++)
                ss += xr[i] * xr[i];
            rstd = 1.0f / sqrtf(ss / (float)C + j->eps);
        } else {
            float sum = 0.0f;
            for (int i = 0; i < C; i++)
                sum += xr[i];
            mean = sum / (float)C;
            float var = 0.0f;
            for (int i = 0; i < C; i++) {
                float d = xr[i] - mean;
                var += d * d;
            }
            rstd = 1.0f / sqrtf(var / (float)C + j->eps);
        }
        double sg = 0, sgx = 0;
        for (int i = 0; i < C; i++) {
            xh[i] = (xr[i] - mean) * rstd;
            float g = j->w ? dy[i] * j->w[i] : dy[i];
            sg += g;
            sgx += (double)g * xh[i];
        }
        float mg = j->rms ? 0.0f : (float)(sg / C), mgx = (float)(sgx / C);
        const float *acc = j->acc ? j->acc + r * (size_t)C : NULL;
        for (int i = 0; i < C; i++) {
            float g = j->w ? dy[i] * j->w[i] : dy[i];
            float v = rstd * (g - mg - xh[i] * mgx);
            dx[i] = acc ? acc[i] + v : v;
        }
    }
}

static void lnb_params_fn(void *arg, int tid, int nt)
{
    lnb_job *j = arg;
    const size_t C = (size_t)j->C;
    size_t c0, c1;
    pool_range(C, tid, nt, 16, &c0, &c1);
    float *dw = j->dw, *db = j->db;
    for (size_t r = 0; r < j->rows; r++) {
        const float *dy = j->dy + r * C, *xh = j->xhat + r * C;
        if (dw)
            for (size_t c = c0; c < c1; c++)
                dw[c] += dy[c] * xh[c];
        if (db)
            for (size_t c = c0; c < c1; c++)
                db[c] += dy[c];
    }
}

/* dx = acc + d LN(x)/dx · dy; dw += Σ dy·x̂, db += Σ dy (w, dw, db may be
 * NULL: no affine parameters).  xhat is [rows, C] scratch. */
static void layernorm_back(pool *p, float *dx, const float *acc, const float *dy, const float *x,
                           const float *w, float *dw, float *db, float *xhat, size_t rows, int C,
                           float eps)
{
    lnb_job j = {.dx = dx, .acc = acc, .dy = dy, .x = x, .w = w, .xhat = xhat, .dw = dw,
                 .db = db, .rows = rows, .C = C, .eps = eps};
    pool_run(p, lnb_rows_fn, &j);
    if (dw && db)
        pool_run(p, lnb_params_fn, &j);
}

void bi_rmsnorm_back(pool *p, float *dx, const float *acc, const float *dy, const float *x,
                     const float *w, float *dw, float *xhat, size_t rows, int C, float eps)
{
    lnb_job j = {.dx = dx, .acc = acc, .dy = dy, .x = x, .w = w, .xhat = xhat, .dw = dw,
                 .rows = rows, .C = C, .eps = eps, .rms = true};
    pool_run(p, lnb_rows_fn, &j);
    if (dw)
        pool_run(p, lnb_params_fn, &j);
}

/* ---------------------------------------------------- attention back --- */

typedef struct attb_job {
    float *dqkv;             /* [N, QD + 2 KVD] */
    const float *datt;       /* [N, QD] */
    const float *qkv;        /* [N, QD + 2 KVD] */
    const int32_t *seq_start;
    int B, NKV, max_T;
    /* kernels.c's layout: rows q [QD] | k [KVD] | v [KVD] (ld = QD + 2 KVD);
     * query heads g·group .. (g + 1)·group − 1 read key/value head g */
    int HD, QD, KVD, group;
    size_t ld;
    float scale;
    float *scratch;
    size_t scratch_stride;
    bool causal;
    const float *pk, *pv; /* [P, KVD] prefix keys / values, or NULL */
    int P;
    float *pref_part;     /* [B, 2, P, KVD]: sequence b's dK_p, dV_p (its head slices) */
} attb_job;

/* Pointers of (sequence b, query head h): q, its key/value head's k and v,
 * their gradients, dO, the prefix rows and sequence b's share of their
 * gradients (as kernels.c's attn_ptrs). */
typedef struct attb_ptrs {
    const float *q, *k, *v, *dout, *pk, *pv;
    float *dq, *dk, *dv, *dpk, *dpv;
} attb_ptrs;

static attb_ptrs attb_ptrs_of(const attb_job *j, int b, int h)
{
    const size_t row = (size_t)j->seq_start[b] * j->ld;
    const size_t kcol = (size_t)j->QD + (size_t)(h / j->group) * j->HD;
    attb_ptrs r = {.q = j->qkv + row + (size_t)h * j->HD, .k = j->qkv + row + kcol,
                   .dq = j->dqkv + row + (size_t)h * j->HD, .dk = j->dqkv + row + kcol,
                   .dout = j->datt + (size_t)j->seq_start[b] * j->QD + (size_t)h * j->HD};
    r.v = r.k + j->KVD;
    r.dv = r.dk + j->KVD;
    if (j->P) {
        const size_t kv = (size_t)(h / j->group) * j->HD;
        r.pk = j->pk + kv;
        r.pv = j->pv + kv;
        r.dpk = j->pref_part + (size_t)b * 2 * j->P * j->KVD + kv;
        r.dpv = r.dpk + (size_t)j->P * j->KVD;
    }
    return r;
}

/* One (sequence, query head) with direct loops, rows in order: recompute
 * p_i exactly as kernels.c's attention_loops does (prefix scores first),
 * then dv_t += p_it·do_i, ds_it = p_it(dp_it − Σ_t p_it dp_it), dq_i =
 * scale·Σ_t ds_it k_t, dk_t += scale·ds_it q_i, and for the prefix rows the
 * same into this sequence's slice of pref_part.  The first head of a group
 * (`first`) starts dk, dv and the prefix slices at 0, the others add to
 * them.  Scratch: [HD + 2, T] + [2, P]. */
static void attention_back_loops(const attb_job *j, int b, int h, bool first, float *scratch)
{
    const int HD = j->HD, P = j->P, KVD = j->KVD, QD = j->QD;
    const size_t ld = j->ld;
    const int32_t T = j->seq_start[b + 1] - j->seq_start[b];
    const attb_ptrs a = attb_ptrs_of(j, b, h);
    const float *q = a.q, *k = a.k, *v = a.v, *dout = a.dout;
    float *dq = a.dq, *dk = a.dk, *dv = a.dv, *dpk = a.dpk, *dpv = a.dpv;
    float *s = scratch;                 /* [T] probabilities */
    float *dp = scratch + j->max_T;     /* [T] */
    float *kT = scratch + 2 * (size_t)j->max_T; /* [HD, T] */
    float *sp = kT + (size_t)HD * j->max_T;     /* [P] prefix probabilities */
    float *dpp = sp + P;                        /* [P] */
    for (int t = 0; t < T; t++)
        for (int e = 0; e < HD; e++) {
            kT[(size_t)e * T + t] = k[(size_t)t * ld + e];
            if (first)
                dk[(size_t)t * ld + e] = dv[(size_t)t * ld + e] = 0.0f;
        }
    for (int p = 0; p < P && first; p++)
        for (int e = 0; e < HD; e++)
            dpk[(size_t)p * KVD + e] = dpv[(size_t)p * KVD + e] = 0.0f;
    for (int i = 0; i < T; i++) {
        const float *qi = q + (size_t)i * ld;
        const float *doi = dout + (size_t)i * QD;
        const int n = j->causal ? i + 1 : T;
        const float inv = kern_attn_row(s, sp, qi, kT, a.pk, n, T, P, HD, KVD, j->scale);
        double spd = 0;
        for (int p = 0; p < P; p++) {
            sp[p] *= inv;
            const float *vp = a.pv + (size_t)p * KVD;
            float *dvp = dpv + (size_t)p * KVD;
            float d = 0.0f;
            for (int e = 0; e < HD; e++) {
                d += doi[e] * vp[e];
                dvp[e] += sp[p] * doi[e];
            }
            dpp[p] = d;
            spd += (double)sp[p] * d;
        }
        for (int t = 0; t < n; t++) {
            s[t] *= inv;
            const float *vt = v + (size_t)t * ld;
            float *dvt = dv + (size_t)t * ld;
            float d = 0.0f;
            for (int e = 0; e < HD; e++) {
                d += doi[e] * vt[e];
                dvt[e] += s[t] * doi[e];
            }
            dp[t] = d;
            spd += (double)s[t] * d;
        }
        const float fspd = (float)spd;
        float *dqi = dq + (size_t)i * ld;
        for (int e = 0; e < HD; e++)
            dqi[e] = 0.0f;
        for (int t = 0; t < n; t++) {
            const float ds = s[t] * (dp[t] - fspd) * j->scale;
            const float *kt = k + (size_t)t * ld;
            float *dkt = dk + (size_t)t * ld;
            for (int e = 0; e < HD; e++) {
                dqi[e] += ds * kt[e];
                dkt[e] += ds * qi[e];
            }
        }
        for (int p = 0; p < P; p++) {
            const float ds = sp[p] * (dpp[p] - fspd) * j->scale;
            const float *kp = a.pk + (size_t)p * KVD;
            float *dkp = dpk + (size_t)p * KVD;
            for (int e = 0; e < HD; e++) {
                dqi[e] += ds * kp[e];
                dkp[e] += ds * qi[e];
            }
        }
    }
}

/* One (sequence, query head) with sgemm, for the sequences kernels.c's
 * forward also runs through sgemm: S = [prefix | tokens] scores from the
 * same calls and softmax as the forward, dP = dO·[PV | V]ᵀ, dV = P_tokᵀ·dO,
 * dPV = P_preᵀ·dO, dS = P ∘ (dP − rowsum(P ∘ dP)), dQ = scale·(dS_pre·PK +
 * dS_tok·K), dK = scale·dS_tokᵀ·Q, dPK = scale·dS_preᵀ·Q; dK, dV, dPK and
 * dPV are written by the first head of a group (beta 0) and added to by the
 * others.  Shapes depend on the sequence alone.  Scratch: [2, T, P + T]. */
static void attention_back_sgemm(const attb_job *j, int b, int h, bool first, float *scratch)
{
    const int HD = j->HD, P = j->P, KVD = j->KVD, QD = j->QD, ld = (int)j->ld;
    const int32_t T = j->seq_start[b + 1] - j->seq_start[b];
    const int lds = P + T;
    const attb_ptrs a = attb_ptrs_of(j, b, h);
    const float *q = a.q, *k = a.k, *v = a.v, *dout = a.dout, *pk = a.pk, *pv = a.pv;
    float *dq = a.dq, *dk = a.dk, *dv = a.dv, *dpk = a.dpk, *dpv = a.dpv;
    const float acc = first ? 0.0f : 1.0f; /* beta of the key/value gradients */
    float *S = scratch, *dS = scratch + (size_t)T * lds;
    kern_attn_probs(S, q, pk, k, T, P, HD, ld, KVD, j->scale, j->causal); /* as the forward */
    if (P) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, P, HD, 1.0f, dout, QD, pv, KVD,
                    0.0f, dS, lds);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, HD, T, 1.0f, S, lds, dout, QD,
                    acc, dpv, KVD);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, 1.0f, dout, QD, v, ld, 0.0f,
                dS + P, lds);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HD, T, 1.0f, S + P, lds, dout, QD,
                acc, dv, ld);
    for (int i = 0; i < T; i++) {
        const float *pr = S + (size_t)i * lds;
        float *d = dS + (size_t)i * lds;
        const int n = P + (j->causal ? i + 1 : T);
        double spd = 0;
        for (int t = 0; t < n; t++)
            spd += (double)pr[t] * d[t];
        const float fspd = (float)spd;
        for (int t = 0; t < n; t++)
            d[t] = pr[t] * (d[t] - fspd);
        for (int t = n; t < lds; t++)
            d[t] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, j->scale, dS + P, lds, k, ld,
                0.0f, dq, ld);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HD, T, j->scale, dS + P, lds, q, ld,
                acc, dk, ld);
    if (P) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, P, j->scale, dS, lds, pk,
                    KVD, 1.0f, dq, ld);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, HD, T, j->scale, dS, lds, q, ld,
                    acc, dpk, KVD);
    }
}

/* One (sequence, key/value head): its query heads in order, so the sums
 * over a group that make dK and dV run in one fixed order whatever the
 * thread count (and no two tasks write the same columns). */
static void attention_back_task(const attb_job *j, int b, int g, float *scratch)
{
    const int32_t T = j->seq_start[b + 1] - j->seq_start[b];
    for (int h = g * j->group; h < (g + 1) * j->group; h++) {
        const bool first = h == g * j->group;
        if (T >= KERN_ATTENTION_SGEMM_MIN_T)
            attention_back_sgemm(j, b, h, first, scratch);
        else
            attention_back_loops(j, b, h, first, scratch);
    }
}

static void attention_back_fn(void *arg, int tid, int nt)
{
    attb_job *j = arg;
    size_t n_tasks = (size_t)j->B * (size_t)j->NKV, t0, t1;
    pool_range(n_tasks, tid, nt, 1, &t0, &t1);
    float *s = j->scratch + (size_t)tid * j->scratch_stride;
    for (size_t t = t0; t < t1; t++)
        attention_back_task(j, (int)(t / (size_t)j->NKV), (int)(t % (size_t)j->NKV), s);
}

/* Per thread, enough for the forward's kernel and both backward paths. */
static size_t attention_back_scratch(int max_T, int HD, int P)
{
    size_t T = (size_t)max_T;
    size_t loops = T * (size_t)(HD + 2) + 2 * (size_t)P, gemm = 2 * T * (T + (size_t)P);
    size_t fwd = kern_attention_scratch_ex(max_T, HD, P);
    size_t m = loops > gemm ? loops : gemm;
    return m > fwd ? m : fwd;
}

/* ------------------------------------------------------ embedding back --- */

typedef struct scatter_job {
    float *dtable;        /* [rows of the table, width] */
    const float *d;       /* [n, width] */
    const int32_t *index; /* [n] */
    size_t n;
    int width;
} scatter_job;

/* dtable[index[r]] += d[r] for r in order: columns split across threads so
 * repeated tokens add up in the same order for any thread count. */
static void scatter_fn(void *arg, int tid, int nt)
{
    scatter_job *j = arg;
    size_t c0, c1;
    pool_range((size_t)j->width, tid, nt, 16, &c0, &c1);
    for (size_t r = 0; r < j->n; r++) {
        float *dst = j->dtable + (size_t)j->index[r] * (size_t)j->width;
        const float *src = j->d + r * (size_t)j->width;
        for (size_t c = c0; c < c1; c++)
            dst[c] += src[c];
    }
}

static void par_scatter(pool *p, float *dtable, const float *d, const int32_t *index, size_t n,
                        int width)
{
    if (!dtable)
        return;
    scatter_job j = {.dtable = dtable, .d = d, .index = index, .n = n, .width = width};
    pool_run(p, scatter_fn, &j);
}

/* ------------------------------------------------------- init and free --- */

float *backward_grad_of(const backward *bw, const float *p)
{
    const param_set *src = model_trainable_const(bw->m);
    if (!p || p < src->data || p >= src->data + src->n)
        return NULL; /* not part of what is trained (a base weight under LoRA) */
    return bw->grad.data + (p - src->data);
}

static void acts_release(backward *bw)
{
    free(bw->xs);
    free(bw->qkv);
    free(bw->att);
    free(bw->mid);
    free(bw->post2);
    free(bw->pre_act);
    free(bw->up);
    free(bw->emb);
    free(bw->fin);
    free(bw->hidden);
    free(bw->pos);
    free(bw->dx);
    free(bw->dmid);
    free(bw->dc);
    free(bw->dqkv);
    free(bw->dffn);
    free(bw->tmp_c);
    free(bw->tmp_f);
    free(bw->dhidden);
    free(bw->demb);
    free(bw->scratch);
    free(bw->lora_u);
    free(bw->lora_v);
    free(bw->emb_pre);
    free(bw->mlm_pre);
    bw->lora_u = bw->lora_v = bw->emb_pre = bw->mlm_pre = NULL;
    bw->xs = bw->qkv = bw->att = bw->mid = bw->post2 = bw->pre_act = bw->emb = bw->fin = NULL;
    bw->up = NULL;
    bw->hidden = bw->dx = bw->dmid = bw->dc = bw->dqkv = bw->dffn = bw->tmp_c = NULL;
    bw->tmp_f = bw->dhidden = bw->demb = bw->scratch = NULL;
    bw->pos = NULL;
    bw->cap_tokens = 0;
    bw->cap_seq_len = 0;
    bw->cap_threads = 0;
}

void backward_free(backward *bw)
{
    if (!bw)
        return;
    acts_release(bw);
    free(bw->logits);
    free(bw->hrows);
    free(bw->drows);
    free(bw->row_loss);
    free(bw->cls_tokens);
    free(bw->cls_starts);
    free(bw->cls_rows);
    free(bw->cls_targets);
    free(bw->cls_coef);
    free(bw->pref_part);
    free(bw->rope_nsin);
    free(bw->gw.blocks);
    param_set_free(&bw->grad);
    memset(bw, 0, sizeof *bw);
}

hl_status backward_init(backward *bw, model *m, hl_err *err)
{
    memset(bw, 0, sizeof *bw);
    bw->m = m;
    param_set_init(&bw->grad);
    const param_set *src = model_trainable_const(m);
    hl_status st = bi_llama_init(bw, err);
    for (int i = 0; i < src->n_layers && !st; i++) {
        const param_layer *l = &src->layers[i];
        st = param_set_add(&bw->grad, l->name, l->ndim, l->shape, l->decay, l->block, err);
    }
    if (!st)
        st = param_set_alloc(&bw->grad, err);
    if (st) {
        backward_free(bw);
        return st;
    }
    if (bw->grad.n != src->n) { /* same sizes and alignment rule: cannot happen */
        backward_free(bw);
        return hl_err_set(err, HL_ERR_INVALID, "gradient arena layout differs from the model's");
    }
    const model_config *c = &m->cfg;
    const model_weights *w = &m->w;
    model_weights *g = &bw->gw;
    g->blocks = calloc((size_t)c->n_layers, sizeof *g->blocks);
    const size_t V = (size_t)c->vocab, E = (size_t)c->d_embed, R = BACKWARD_LOGIT_ROWS;
    bw->logits = malloc(R * V * sizeof(float));
    bw->hrows = malloc(R * E * sizeof(float));
    bw->drows = malloc(R * E * sizeof(float));
    bw->row_loss = malloc(R * sizeof(double));
    if (!g->blocks || !bw->logits || !bw->hrows || !bw->drows || !bw->row_loss) {
        backward_free(bw);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for gradients");
    }
    g->wte = backward_grad_of(bw, w->wte);
    g->wpe = backward_grad_of(bw, w->wpe);
    g->proj_in = backward_grad_of(bw, w->proj_in);
    g->proj_out = backward_grad_of(bw, w->proj_out);
    g->lnf_w = backward_grad_of(bw, w->lnf_w);
    g->lnf_b = backward_grad_of(bw, w->lnf_b);
    g->head = backward_grad_of(bw, w->head);
    g->tte = backward_grad_of(bw, w->tte);
    g->emb_ln_w = backward_grad_of(bw, w->emb_ln_w);
    g->emb_ln_b = backward_grad_of(bw, w->emb_ln_b);
    g->mlm_dense_w = backward_grad_of(bw, w->mlm_dense_w);
    g->mlm_dense_b = backward_grad_of(bw, w->mlm_dense_b);
    g->mlm_ln_w = backward_grad_of(bw, w->mlm_ln_w);
    g->mlm_ln_b = backward_grad_of(bw, w->mlm_ln_b);
    g->head_bias = backward_grad_of(bw, w->head_bias);
    for (int l = 0; l < c->n_layers; l++) {
        const model_block *b = &w->blocks[l];
        model_block *d = &g->blocks[l];
        d->ln1_w = backward_grad_of(bw, b->ln1_w);
        d->ln1_b = backward_grad_of(bw, b->ln1_b);
        for (int k = 0; k < 3; k++) {
            d->wqkv[k] = backward_grad_of(bw, b->wqkv[k]);
            d->bqkv[k] = backward_grad_of(bw, b->bqkv[k]);
        }
        d->wo = backward_grad_of(bw, b->wo);
        d->bo = backward_grad_of(bw, b->bo);
        d->ln2_w = backward_grad_of(bw, b->ln2_w);
        d->ln2_b = backward_grad_of(bw, b->ln2_b);
        d->w1 = backward_grad_of(bw, b->w1);
        d->w_up = backward_grad_of(bw, b->w_up);
        d->b1 = backward_grad_of(bw, b->b1);
        d->w2 = backward_grad_of(bw, b->w2);
        d->b2 = backward_grad_of(bw, b->b2);
        for (int k = 0; k < PEFT_SITE_COUNT; k++) {
            d->lora_a[k] = backward_grad_of(bw, b->lora_a[k]);
            d->lora_b[k] = backward_grad_of(bw, b->lora_b[k]);
        }
        d->prefix_k = backward_grad_of(bw, b->prefix_k);
        d->prefix_v = backward_grad_of(bw, b->prefix_v);
    }
    return HL_OK;
}

void backward_zero_grad(backward *bw)
{
    memset(bw->grad.data, 0, bw->grad.n * sizeof(float));
}

static hl_status acts_reserve(backward *bw, size_t n_tok, int max_T, hl_err *err)
{
    const model *m = bw->m;
    int threads = pool_size(m->pool);
    if (n_tok <= bw->cap_tokens && max_T <= bw->cap_seq_len && threads == bw->cap_threads)
        return HL_OK;
    size_t cap = n_tok > bw->cap_tokens ? n_tok : bw->cap_tokens;
    int capT = max_T > bw->cap_seq_len ? max_T : bw->cap_seq_len;
    acts_release(bw);
    const model_config *c = &m->cfg;
    const size_t C = (size_t)c->d_model, F = (size_t)c->d_ffn, E = (size_t)c->d_embed;
    const size_t L = (size_t)c->n_layers, NC = cap * C;
    /* attention widths: q and its output QD, k and v KVD each (C elsewhere) */
    const size_t QD = (size_t)model_q_dim(c), QKV = QD + 2 * (size_t)model_kv_dim(c);
    bool ok = true;
#define ALLOC(ptr, count)                                                                   \
    do {                                                                                    \
        (ptr) = malloc((count) * sizeof *(ptr));                                            \
        ok = ok && (ptr);                                                                   \
    } while (0)
    ALLOC(bw->xs, (L + 1) * NC);
    ALLOC(bw->qkv, L * cap * QKV);
    ALLOC(bw->att, L * cap * QD);
    ALLOC(bw->mid, L * NC);
    if (!c->pre_ln)
        ALLOC(bw->post2, L * NC);
    ALLOC(bw->pre_act, L * cap * F);
    if (c->gated_mlp)
        ALLOC(bw->up, L * cap * F);
    if (m->w.proj_in) {
        ALLOC(bw->emb, cap * E);
        ALLOC(bw->demb, cap * E);
    }
    ALLOC(bw->fin, NC);
    if (m->w.emb_ln_w)
        ALLOC(bw->emb_pre, NC);
    if (m->w.mlm_dense_w)
        ALLOC(bw->mlm_pre, NC);
    ALLOC(bw->hidden, cap * E);
    ALLOC(bw->pos, cap);
    ALLOC(bw->dx, NC);
    ALLOC(bw->dmid, NC);
    ALLOC(bw->dc, cap * (QD > C ? QD : C));
    ALLOC(bw->dqkv, cap * QKV);
    ALLOC(bw->dffn, cap * F);
    ALLOC(bw->tmp_c, NC);
    ALLOC(bw->tmp_f, cap * F);
    ALLOC(bw->dhidden, cap * E);
    const size_t HD = (size_t)model_head_dim(c);
    const int P = m->peft.kind == PEFT_PREFIX ? m->peft.tokens : 0;
    ALLOC(bw->scratch, (size_t)threads * attention_back_scratch(capT, (int)HD, P));
    if (m->peft.kind == PEFT_LORA) {
        ALLOC(bw->lora_u, cap * (size_t)m->peft.rank);
        ALLOC(bw->lora_v, cap * (size_t)m->peft.rank);
    }
#undef ALLOC
    if (!ok) {
        acts_release(bw);
        return hl_err_set(err, HL_ERR_NOMEM,
                          "out of memory for the training activations of %zu tokens", cap);
    }
    bw->cap_tokens = cap;
    bw->cap_seq_len = capT;
    bw->cap_threads = threads;
    return HL_OK;
}

/* ------------------------------------------------- embeddings forward --- */

typedef struct embed_job {
    backward *bw;
    const int32_t *tokens;
    size_t n;
} embed_job;

/* As model.c's embed_fn / add_pos_fn, into the saved buffers. */
static void embed_fn(void *arg, int tid, int nt)
{
    embed_job *j = arg;
    backward *bw = j->bw;
    const model *m = bw->m;
    const size_t C = (size_t)m->cfg.d_model, E = (size_t)m->cfg.d_embed;
    size_t r0, r1;
    pool_range(j->n, tid, nt, 1, &r0, &r1);
    float *dst = m->w.proj_in ? bw->emb : bw->xs;
    for (size_t r = r0; r < r1; r++)
        memcpy(dst + r * E, m->w.wte + (size_t)j->tokens[r] * E, E * sizeof(float));
    if (m->w.proj_in || !m->w.wpe) /* positions after project_in; Llama: rotations */
        return;
    for (size_t r = r0; r < r1; r++) /* RoBERTa: token type 0 for every token */
        model_add_position_row(bw->xs + r * C, m->w.wpe + (size_t)bw->pos[r] * C, m->w.tte, C);
}

static void add_pos_fn(void *arg, int tid, int nt)
{
    embed_job *j = arg;
    backward *bw = j->bw;
    const size_t C = (size_t)bw->m->cfg.d_model;
    size_t r0, r1;
    pool_range(j->n, tid, nt, 1, &r0, &r1);
    for (size_t r = r0; r < r1; r++) /* OPT-350m: after project_in */
        model_add_position_row(bw->xs + r * C, bw->m->w.wpe + (size_t)bw->pos[r] * C, NULL, C);
}

/* ------------------------------------------------------------- LoRA --- */

/* out[N, O] += alpha/r · (in·Aᵀ)·Bᵀ at an adapted site: model.c's lora_add,
 * the same calls in the same order. */
void bi_lora_forward(backward *bw, const model_block *b, int site, float *out, size_t ldo,
                     const float *in, size_t ldi, size_t N, int O, int K)
{
    if (!b->lora_a[site])
        return;
    model *m = bw->m;
    const int r = m->peft.rank;
    float *t = bw->lora_u;
    kern_par_linear(m->pool, t, (size_t)r, in, ldi, b->lora_a[site], (int)N, r, K, 0.0f);
    const float scale = m->peft.alpha / (float)r;
    for (size_t i = 0; i < N * (size_t)r; i++)
        t[i] *= scale;
    kern_par_linear(m->pool, out, ldo, t, (size_t)r, b->lora_b[site], (int)N, O, r, 1.0f);
}

/* The backward of a site's adapter, from dy [N, O] (the gradient of the
 * site's output) and its input x [N, K]: with u = s·x·Aᵀ and v = s·dy·B
 * (s = alpha/r), dB += dyᵀ u, dA += vᵀ x and dx += v A. */
void bi_lora_backward(backward *bw, const model_block *b, model_block *g, int site,
                      const float *dy, size_t ldy, const float *x, size_t ldx, float *dx,
                      size_t ldxo, size_t N, int O, int K)
{
    if (!b->lora_a[site])
        return;
    model *m = bw->m;
    pool *p = m->pool;
    const int r = m->peft.rank;
    const float scale = m->peft.alpha / (float)r;
    float *u = bw->lora_u, *v = bw->lora_v;
    kern_par_linear(p, u, (size_t)r, x, ldx, b->lora_a[site], (int)N, r, K, 0.0f);
    bi_mm_dx(p, v, (size_t)r, dy, ldy, b->lora_b[site], (int)N, O, r, 0.0f);
    for (size_t i = 0; i < N * (size_t)r; i++) {
        u[i] *= scale;
        v[i] *= scale;
    }
    bi_mm_dw(p, g->lora_b[site], dy, ldy, u, (size_t)r, (int)N, O, r);
    bi_mm_dw(p, g->lora_a[site], v, (size_t)r, x, ldx, (int)N, r, K);
    bi_mm_dx(p, dx, ldxo, v, (size_t)r, b->lora_a[site], (int)N, r, K, 1.0f);
}

/* ------------------------------------------------------ training forward --- */

static void qkv_forward(backward *bw, const model_block *b, float *qkv, const float *in, size_t N)
{
    pool *p = bw->m->pool;
    const int C = bw->m->cfg.d_model;
    const size_t C3 = 3 * (size_t)C;
    for (int k = 0; k < 3; k++) {
        kern_par_linear(p, qkv + (size_t)k * C, C3, in, (size_t)C, b->wqkv[k], (int)N, C, C, 0.0f);
        bi_lora_forward(bw, b, PEFT_SITE_Q + k, qkv + (size_t)k * C, C3, in, (size_t)C, N, C, C);
    }
    if (b->bqkv[0]) {
        if (b->bqkv[1] == b->bqkv[0] + C && b->bqkv[2] == b->bqkv[0] + 2 * C)
            kern_par_add_rows(p, qkv, b->bqkv[0], N, 3 * C, C3);
        else
            for (int k = 0; k < 3; k++)
                kern_par_add_rows(p, qkv + (size_t)k * C, b->bqkv[k], N, C, C3);
    }
}

static void block_forward(backward *bw, int l)
{
    if (bw->m->cfg.family == MODEL_FAMILY_LLAMA) {
        bi_llama_block_forward(bw, l);
        return;
    }
    model *m = bw->m;
    const model_config *c = &m->cfg;
    const model_block *b = &m->w.blocks[l];
    pool *p = m->pool;
    const size_t N = bw->n_tokens, C = (size_t)c->d_model, F = (size_t)c->d_ffn;
    const size_t NC = N * C;
    const float *x = bw->xs + (size_t)l * NC;
    float *xnext = bw->xs + (size_t)(l + 1) * NC;
    float *qkv = bw->qkv + (size_t)l * 3 * NC, *att = bw->att + (size_t)l * NC;
    float *mid = bw->mid + (size_t)l * NC, *pre = bw->pre_act + (size_t)l * N * F;
    const int HD = c->d_model / c->n_heads;

    /* attention sublayer */
    const float *in = x;
    if (c->pre_ln) {
        kern_par_layernorm(p, bw->tmp_c, x, b->ln1_w, b->ln1_b, N, (int)C, c->ln_eps);
        in = bw->tmp_c;
    }
    qkv_forward(bw, b, qkv, in, N);
    kern_attn_ext ext = {.bidirectional = c->bidirectional};
    if (b->prefix_k) {
        ext.prefix_k = b->prefix_k;
        ext.prefix_v = b->prefix_v;
        ext.n_prefix = m->peft.tokens;
    }
    kern_par_attention_ex(p, att, qkv, bw->batch.seq_start, bw->batch.n_seq, (int)C, c->n_heads,
                          1.0f / sqrtf((float)HD), bw->scratch, bw->max_T,
                          KERN_ATTENTION_SGEMM_MIN_T, &ext);
    memcpy(mid, x, NC * sizeof(float));
    if (b->bo)
        kern_par_add_rows(p, mid, b->bo, N, (int)C, C);
    kern_par_linear(p, mid, C, att, C, b->wo, (int)N, (int)C, (int)C, 1.0f);
    bi_lora_forward(bw, b, PEFT_SITE_O, mid, C, att, C, N, (int)C, (int)C);

    /* FFN sublayer: its input is LN2(mid) (pre-LN) or LN1(mid) (post-LN) */
    if (c->pre_ln)
        kern_par_layernorm(p, bw->tmp_c, mid, b->ln2_w, b->ln2_b, N, (int)C, c->ln_eps);
    else
        kern_par_layernorm(p, bw->tmp_c, mid, b->ln1_w, b->ln1_b, N, (int)C, c->ln_eps);
    kern_par_linear(p, pre, F, bw->tmp_c, C, b->w1, (int)N, (int)F, (int)C, 0.0f);
    bi_lora_forward(bw, b, PEFT_SITE_FC1, pre, F, bw->tmp_c, C, N, (int)F, (int)C);
    kern_par_add_rows(p, pre, b->b1, N, (int)F, F);
    act_recompute(p, bw->tmp_f, pre, N, (int)F, model_act_kernel(c->act));
    float *res = c->pre_ln ? xnext : bw->post2 + (size_t)l * NC;
    memcpy(res, c->pre_ln ? mid : bw->tmp_c, NC * sizeof(float));
    if (b->b2)
        kern_par_add_rows(p, res, b->b2, N, (int)C, C);
    kern_par_linear(p, res, C, bw->tmp_f, F, b->w2, (int)N, (int)C, (int)F, 1.0f);
    bi_lora_forward(bw, b, PEFT_SITE_FC2, res, C, bw->tmp_f, F, N, (int)C, (int)F);
    if (!c->pre_ln)
        kern_par_layernorm(p, xnext, res, b->ln2_w, b->ln2_b, N, (int)C, c->ln_eps);
}

/* The same checks as model_forward, then the forward with everything kept. */
hl_status bi_train_forward(backward *bw, const model_batch *batch, hl_err *err)
{
    model *m = bw->m;
    const model_config *c = &m->cfg;
    int max_T;
    size_t N;
    hl_status st = model_batch_check(c, batch, &max_T, &N, err);
    if (st)
        return st;
    if ((st = acts_reserve(bw, N ? N : 1, max_T, err)))
        return st;
    bw->n_tokens = N;
    bw->max_T = max_T;
    bw->batch = *batch;
    for (int32_t b = 0; b < batch->n_seq; b++)
        for (int32_t t = batch->seq_start[b]; t < batch->seq_start[b + 1]; t++)
            bw->pos[t] = t - batch->seq_start[b] + c->pos_offset;
    if (N == 0)
        return HL_OK;

    const int C = c->d_model, E = c->d_embed;
    embed_job ej = {.bw = bw, .tokens = batch->tokens, .n = N};
    pool_run(m->pool, embed_fn, &ej);
    if (m->w.proj_in) {
        kern_par_linear(m->pool, bw->xs, (size_t)C, bw->emb, (size_t)E, m->w.proj_in, (int)N, C,
                        E, 0.0f);
        pool_run(m->pool, add_pos_fn, &ej);
    }
    if (m->w.emb_ln_w) { /* RoBERTa: LN of the summed embeddings, its input kept */
        memcpy(bw->emb_pre, bw->xs, N * (size_t)C * sizeof(float));
        kern_par_layernorm(m->pool, bw->xs, bw->emb_pre, m->w.emb_ln_w, m->w.emb_ln_b, N, C,
                           c->ln_eps);
    }
    for (int l = 0; l < c->n_layers; l++)
        block_forward(bw, l);
    const float *xl = bw->xs + (size_t)c->n_layers * N * C;
    const float *h = xl;
    if (c->final_ln && c->rms_norm) {
        kern_par_rmsnorm(m->pool, bw->fin, xl, m->w.lnf_w, N, C, c->ln_eps);
        h = bw->fin;
    } else if (c->final_ln) {
        kern_par_layernorm(m->pool, bw->fin, xl, m->w.lnf_w, m->w.lnf_b, N, C, c->ln_eps);
        h = bw->fin;
    }
    if (m->w.proj_out)
        kern_par_linear(m->pool, bw->hidden, (size_t)E, h, (size_t)C, m->w.proj_out, (int)N, E,
                        C, 0.0f);
    else if (m->w.mlm_dense_w) {
        /* RoBERTa's head transform: LN(gelu(dense(x))), the pre-activation kept */
        kern_par_linear(m->pool, bw->mlm_pre, (size_t)C, h, (size_t)C, m->w.mlm_dense_w, (int)N,
                        C, C, 0.0f);
        kern_par_add_rows(m->pool, bw->mlm_pre, m->w.mlm_dense_b, N, C, (size_t)C);
        act_recompute(m->pool, bw->hidden, bw->mlm_pre, N, C, KERN_ACT_GELU_ERF);
        kern_par_layernorm(m->pool, bw->hidden, bw->hidden, m->w.mlm_ln_w, m->w.mlm_ln_b, N, C,
                           c->ln_eps);
    } else
        memcpy(bw->hidden, h, N * (size_t)C * sizeof(float));
    return HL_OK;
}

/* ----------------------------------------------------------- backward --- */

/* q|k|v projections: dW, db and (beta = 0: write, 1: add) dx = Σ_k dq_k W_k. */
static void qkv_back(backward *bw, const model_block *b, model_block *g, const float *in,
                     float *dx, float beta)
{
    pool *p = bw->m->pool;
    const size_t N = bw->n_tokens, C = (size_t)bw->m->cfg.d_model, C3 = 3 * C;
    const float *dq = bw->dqkv;
    bool packed = b->wqkv[1] == b->wqkv[0] + C * C && b->wqkv[2] == b->wqkv[0] + 2 * C * C;
    if (packed) { /* GPT-2's c_attn: one [3C, C] weight */
        bi_mm_dw(p, g->wqkv[0], dq, C3, in, C, (int)N, (int)C3, (int)C);
        bi_mm_dx(p, dx, C, dq, C3, b->wqkv[0], (int)N, (int)C3, (int)C, beta);
    } else {
        for (int k = 0; k < 3; k++) {
            bi_mm_dw(p, g->wqkv[k], dq + (size_t)k * C, C3, in, C, (int)N, (int)C, (int)C);
            bi_mm_dx(p, dx, C, dq + (size_t)k * C, C3, b->wqkv[k], (int)N, (int)C, (int)C,
                  k ? 1.0f : beta);
        }
    }
    for (int k = 0; k < 3; k++) {
        bi_colsum(p, g->bqkv[k], dq + (size_t)k * C, N, (int)C, C3);
        bi_lora_backward(bw, b, g, PEFT_SITE_Q + k, dq + (size_t)k * C, C3, in, C, dx, C, N, (int)C,
                      (int)C);
    }
}

typedef struct pref_sum_job {
    float *dk, *dv;        /* [P, KVD] gradients of the prefix keys / values (may be NULL) */
    const float *part;     /* [B, 2, P, KVD] */
    int B;
    size_t PC;
} pref_sum_job;

/* dK_p += Σ_b part[b].k, dV_p += Σ_b part[b].v, sequences in order. */
static void pref_sum_fn(void *arg, int tid, int nt)
{
    pref_sum_job *j = arg;
    size_t i0, i1;
    pool_range(j->PC, tid, nt, 16, &i0, &i1);
    for (int b = 0; b < j->B; b++) {
        const float *pk = j->part + (size_t)b * 2 * j->PC, *pv = pk + j->PC;
        for (size_t i = i0; i < i1; i++) {
            if (j->dk)
                j->dk[i] += pk[i];
            if (j->dv)
                j->dv[i] += pv[i];
        }
    }
}

/* The attention's backward into bw->dqkv (and block b's prefix gradients),
 * from datt [N, QD]: q, k, v as the attention read them (for Llama, after
 * the rotation). */
hl_status bi_attention_back(backward *bw, const model_block *b, model_block *g,
                            const float *datt, const float *qkv)
{
    model *m = bw->m;
    const model_config *c = &m->cfg;
    const int HD = model_head_dim(c), QD = model_q_dim(c), KVD = model_kv_dim(c);
    const int P = b->prefix_k ? m->peft.tokens : 0;
    attb_job j = {.dqkv = bw->dqkv, .datt = datt, .qkv = qkv, .seq_start = bw->batch.seq_start,
                  .B = bw->batch.n_seq, .NKV = KVD / HD, .max_T = bw->max_T, .HD = HD,
                  .QD = QD, .KVD = KVD, .group = QD / KVD, .ld = (size_t)QD + 2 * (size_t)KVD,
                  .scale = 1.0f / sqrtf((float)HD), .scratch = bw->scratch,
                  .scratch_stride = attention_back_scratch(bw->max_T, HD, P),
                  .causal = !c->bidirectional};
    if (P) {
        size_t need = (size_t)bw->batch.n_seq * 2 * (size_t)P * (size_t)KVD;
        if (need > bw->pref_cap) {
            float *np = realloc(bw->pref_part, need * sizeof *np);
            if (!np)
                return HL_ERR_NOMEM;
            bw->pref_part = np;
            bw->pref_cap = need;
        }
        j.pk = b->prefix_k;
        j.pv = b->prefix_v;
        j.P = P;
        j.pref_part = bw->pref_part;
    }
    pool_run(m->pool, attention_back_fn, &j);
    if (P) {
        pref_sum_job ps = {.dk = g->prefix_k, .dv = g->prefix_v, .part = bw->pref_part,
                           .B = bw->batch.n_seq, .PC = (size_t)P * (size_t)KVD};
        pool_run(m->pool, pref_sum_fn, &ps);
    }
    return HL_OK;
}

/* FFN backward from dy (gradient of its output): dW2, db2, dW1, db1 and
 * bw->dc = gradient of its input `in`. */
static void ffn_back(backward *bw, const model_block *b, model_block *g, const float *dy,
                     const float *pre, const float *in)
{
    model *m = bw->m;
    pool *p = m->pool;
    const size_t N = bw->n_tokens, C = (size_t)m->cfg.d_model, F = (size_t)m->cfg.d_ffn;
    act_recompute(p, bw->tmp_f, pre, N, (int)F, model_act_kernel(m->cfg.act));
    bi_mm_dw(p, g->w2, dy, C, bw->tmp_f, F, (int)N, (int)C, (int)F);
    bi_colsum(p, g->b2, dy, N, (int)C, C);
    bi_mm_dx(p, bw->dffn, F, dy, C, b->w2, (int)N, (int)C, (int)F, 0.0f);
    bi_lora_backward(bw, b, g, PEFT_SITE_FC2, dy, C, bw->tmp_f, F, bw->dffn, F, N, (int)C, (int)F);
    act_job aj = {.d = bw->dffn, .pre = pre, .n = N * F, .act = m->cfg.act};
    pool_run(p, act_back_fn, &aj);
    bi_mm_dw(p, g->w1, bw->dffn, F, in, C, (int)N, (int)F, (int)C);
    bi_colsum(p, g->b1, bw->dffn, N, (int)F, F);
    bi_mm_dx(p, bw->dc, C, bw->dffn, F, b->w1, (int)N, (int)F, (int)C, 0.0f);
    bi_lora_backward(bw, b, g, PEFT_SITE_FC1, bw->dffn, F, in, C, bw->dc, C, N, (int)F, (int)C);
}

typedef struct add_job {
    float *y;
    const float *x;
    size_t n;
} add_job;

static void add_fn(void *arg, int tid, int nt)
{
    add_job *j = arg;
    size_t i0, i1;
    pool_range(j->n, tid, nt, 16, &i0, &i1);
    for (size_t i = i0; i < i1; i++)
        j->y[i] += j->x[i];
}

/* On entry bw->dx = dL/d(output of block l); on exit dL/d(input of block l).
 * Fails only when the prefix gradients' work space cannot grow. */
static hl_status block_backward(backward *bw, int l)
{
    if (bw->m->cfg.family == MODEL_FAMILY_LLAMA)
        return bi_llama_block_backward(bw, l);
    model *m = bw->m;
    const model_config *c = &m->cfg;
    const model_block *b = &m->w.blocks[l];
    model_block *g = &bw->gw.blocks[l];
    pool *p = m->pool;
    const size_t N = bw->n_tokens, C = (size_t)c->d_model, F = (size_t)c->d_ffn, NC = N * C;
    const float *x = bw->xs + (size_t)l * NC;
    const float *qkv = bw->qkv + (size_t)l * 3 * NC, *att = bw->att + (size_t)l * NC;
    const float *mid = bw->mid + (size_t)l * NC, *pre = bw->pre_act + (size_t)l * N * F;
    const float eps = c->ln_eps;

    if (c->pre_ln) {
        /* x_out = mid + FFN(LN2(mid)); mid = x + Attn(LN1(x)) */
        kern_par_layernorm(p, bw->tmp_c, mid, b->ln2_w, b->ln2_b, N, (int)C, eps);
        ffn_back(bw, b, g, bw->dx, pre, bw->tmp_c);
        layernorm_back(p, bw->dmid, bw->dx, bw->dc, mid, b->ln2_w, g->ln2_w, g->ln2_b, bw->tmp_c,
                       N, (int)C, eps);
        bi_mm_dw(p, g->wo, bw->dmid, C, att, C, (int)N, (int)C, (int)C);
        bi_colsum(p, g->bo, bw->dmid, N, (int)C, C);
        bi_mm_dx(p, bw->dc, C, bw->dmid, C, b->wo, (int)N, (int)C, (int)C, 0.0f);
        bi_lora_backward(bw, b, g, PEFT_SITE_O, bw->dmid, C, att, C, bw->dc, C, N, (int)C, (int)C);
        if (bi_attention_back(bw, b, g, bw->dc, qkv))
            return HL_ERR_NOMEM;
        kern_par_layernorm(p, bw->tmp_c, x, b->ln1_w, b->ln1_b, N, (int)C, eps);
        qkv_back(bw, b, g, bw->tmp_c, bw->dc, 0.0f);
        layernorm_back(p, bw->dx, bw->dmid, bw->dc, x, b->ln1_w, g->ln1_w, g->ln1_b, bw->tmp_c, N,
                       (int)C, eps);
    } else {
        /* x_out = LN2(y2), y2 = h + FFN(h), h = LN1(mid), mid = x + Attn(x) */
        const float *y2 = bw->post2 + (size_t)l * NC;
        layernorm_back(p, bw->dmid, NULL, bw->dx, y2, b->ln2_w, g->ln2_w, g->ln2_b, bw->tmp_c, N,
                       (int)C, eps);
        kern_par_layernorm(p, bw->tmp_c, mid, b->ln1_w, b->ln1_b, N, (int)C, eps);
        ffn_back(bw, b, g, bw->dmid, pre, bw->tmp_c);
        add_job aj = {.y = bw->dc, .x = bw->dmid, .n = NC};
        pool_run(p, add_fn, &aj);
        layernorm_back(p, bw->dx, NULL, bw->dc, mid, b->ln1_w, g->ln1_w, g->ln1_b, bw->tmp_c, N,
                       (int)C, eps);
        /* bw->dx = dL/dmid: the residual passes it through to x */
        bi_mm_dw(p, g->wo, bw->dx, C, att, C, (int)N, (int)C, (int)C);
        bi_colsum(p, g->bo, bw->dx, N, (int)C, C);
        bi_mm_dx(p, bw->dc, C, bw->dx, C, b->wo, (int)N, (int)C, (int)C, 0.0f);
        bi_lora_backward(bw, b, g, PEFT_SITE_O, bw->dx, C, att, C, bw->dc, C, N, (int)C, (int)C);
        if (bi_attention_back(bw, b, g, bw->dc, qkv))
            return HL_ERR_NOMEM;
        qkv_back(bw, b, g, x, bw->dx, 1.0f);
    }
    return HL_OK;
}

/* From bw->dhidden (gradient of the head's input) down to the embeddings. */
hl_status bi_body_backward(backward *bw, hl_err *err)
{
    model *m = bw->m;
    const model_config *c = &m->cfg;
    pool *p = m->pool;
    const size_t N = bw->n_tokens, C = (size_t)c->d_model, E = (size_t)c->d_embed;
    const float *xl = bw->xs + (size_t)c->n_layers * N * C;
    const float *h = c->final_ln ? bw->fin : xl;
    if (m->w.proj_out) {
        bi_mm_dw(p, bw->gw.proj_out, bw->dhidden, E, h, C, (int)N, (int)E, (int)C);
        bi_mm_dx(p, bw->dc, C, bw->dhidden, E, m->w.proj_out, (int)N, (int)E, (int)C, 0.0f);
    } else if (m->w.mlm_dense_w) {
        /* hidden = LN(a), a = gelu(u), u = dense(h): a recomputed into dmid */
        act_recompute(p, bw->dmid, bw->mlm_pre, N, (int)C, KERN_ACT_GELU_ERF);
        layernorm_back(p, bw->dc, NULL, bw->dhidden, bw->dmid, m->w.mlm_ln_w, bw->gw.mlm_ln_w,
                       bw->gw.mlm_ln_b, bw->tmp_c, N, (int)C, c->ln_eps);
        act_job aj = {.d = bw->dc, .pre = bw->mlm_pre, .n = N * C, .act = MODEL_ACT_GELU_ERF};
        pool_run(p, act_back_fn, &aj);
        bi_mm_dw(p, bw->gw.mlm_dense_w, bw->dc, C, h, C, (int)N, (int)C, (int)C);
        bi_colsum(p, bw->gw.mlm_dense_b, bw->dc, N, (int)C, C);
        bi_mm_dx(p, bw->dmid, C, bw->dc, C, m->w.mlm_dense_w, (int)N, (int)C, (int)C, 0.0f);
        memcpy(bw->dc, bw->dmid, N * C * sizeof(float));
    } else {
        memcpy(bw->dc, bw->dhidden, N * C * sizeof(float));
    }
    if (c->final_ln && c->rms_norm)
        bi_rmsnorm_back(p, bw->dx, NULL, bw->dc, xl, m->w.lnf_w, bw->gw.lnf_w, bw->tmp_c, N,
                        (int)C, c->ln_eps);
    else if (c->final_ln)
        layernorm_back(p, bw->dx, NULL, bw->dc, xl, m->w.lnf_w, bw->gw.lnf_w, bw->gw.lnf_b,
                       bw->tmp_c, N, (int)C, c->ln_eps);
    else
        memcpy(bw->dx, bw->dc, N * C * sizeof(float));
    for (int l = c->n_layers - 1; l >= 0; l--)
        if (block_backward(bw, l))
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the prefix gradients");
    if (m->w.emb_ln_w) { /* through RoBERTa's embedding LN to the summed embeddings */
        layernorm_back(p, bw->dc, NULL, bw->dx, bw->emb_pre, m->w.emb_ln_w, bw->gw.emb_ln_w,
                       bw->gw.emb_ln_b, bw->tmp_c, N, (int)C, c->ln_eps);
        memcpy(bw->dx, bw->dc, N * C * sizeof(float));
        bi_colsum(p, bw->gw.tte, bw->dx, N, (int)C, C); /* token type 0, every token */
    }
    par_scatter(p, bw->gw.wpe, bw->dx, bw->pos, N, (int)C);
    if (m->w.proj_in) {
        bi_mm_dw(p, bw->gw.proj_in, bw->dx, C, bw->emb, E, (int)N, (int)C, (int)E);
        bi_mm_dx(p, bw->demb, E, bw->dx, C, m->w.proj_in, (int)N, (int)C, (int)E, 0.0f);
        par_scatter(p, bw->gw.wte, bw->demb, bw->batch.tokens, N, (int)E);
    } else {
        par_scatter(p, bw->gw.wte, bw->dx, bw->batch.tokens, N, (int)E);
    }
    return HL_OK;
}

/* ------------------------------------------------------------ cosine --- */

#define COS_PIECE 16384

typedef struct cos_job {
    const param_set *ps;
    const float *a, *b;
    size_t n_pieces;
    double *sums; /* [n_pieces, 3]: a·b, a·a, b·b */
} cos_job;

/* Pieces of COS_PIECE floats numbered over the layers in order (padding
 * between layers is never read). */
static void cos_fn(void *arg, int tid, int nt)
{
    cos_job *j = arg;
    size_t p0, p1, k = 0;
    pool_range(j->n_pieces, tid, nt, 1, &p0, &p1);
    for (int l = 0; l < j->ps->n_layers && k < p1; l++) {
        const param_layer *pl = &j->ps->layers[l];
        for (size_t i0 = 0; i0 < pl->size; i0 += COS_PIECE, k++) {
            if (k < p0 || k >= p1)
                continue;
            size_t i1 = i0 + COS_PIECE < pl->size ? i0 + COS_PIECE : pl->size;
            const float *a = j->a + pl->offset, *b = j->b + pl->offset;
            double ab = 0, aa = 0, bb = 0;
            for (size_t i = i0; i < i1; i++) {
                ab += (double)a[i] * b[i];
                aa += (double)a[i] * a[i];
                bb += (double)b[i] * b[i];
            }
            j->sums[3 * k] = ab;
            j->sums[3 * k + 1] = aa;
            j->sums[3 * k + 2] = bb;
        }
    }
}

double backward_cosine(const backward *bw, const float *other)
{
    size_t n_pieces = 0;
    for (int l = 0; l < bw->grad.n_layers; l++)
        n_pieces += (bw->grad.layers[l].size + COS_PIECE - 1) / COS_PIECE;
    double *sums = calloc(3 * (n_pieces ? n_pieces : 1), sizeof *sums);
    if (!sums)
        return NAN;
    cos_job j = {.ps = &bw->grad, .a = bw->grad.data, .b = other, .n_pieces = n_pieces,
                 .sums = sums};
    pool_run(bw->m->pool, cos_fn, &j);
    double ab = 0, aa = 0, bb = 0;
    for (size_t q = 0; q < n_pieces; q++) {
        ab += sums[3 * q];
        aa += sums[3 * q + 1];
        bb += sums[3 * q + 2];
    }
    free(sums);
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

/* ------------------------------------------------------------- flops --- */

double backward_flops(const model_config *cfg, double n_tok, double seq_len, double n_head_rows)
{
    /* body: dx and dW each cost what the forward's product did (attention's
     * backward about twice its forward); head: logits, dhidden and dhead */
    double body = model_flops_body(cfg, n_tok, seq_len);
    double head = 2.0 * n_head_rows * (double)cfg->vocab * (double)cfg->d_embed;
    double proj = 0;
    if (cfg->d_embed != cfg->d_model)
        proj = 2.0 * 2.0 * n_tok * (double)cfg->d_embed * (double)cfg->d_model;
    return 3.0 * (body + head + proj);
}

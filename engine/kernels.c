/* kernels.c - see kernels.h.  Why the shapes are as they are:
 * - Biases and residuals are folded into passes that exist anyway (bias +
 *   activation in one sweep; residual via sgemm's beta = 1), so the body is
 *   dominated by sgemm.
 * - Attention is direct loops per (sequence, head): for the short prompts
 *   of prompt-based fine-tuning it is < 2% of the FLOPs, and per-task loops
 *   keep results independent of the thread count.
 */
#include "kernels.h"

#include <cblas.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

/* ---------------------------------------------------------------- rows --- */

void kern_layernorm(float *out, const float *x, const float *w, const float *b, size_t r0,
                    size_t r1, int C, size_t ld, float eps)
{
    for (size_t r = r0; r < r1; r++) {
        const float *xr = x + r * ld;
        float *o = out + r * ld;
        float sum = 0.0f;
        for (int i = 0; i < C; i++)
            sum += xr[i];
        float mean = sum / (float)C;
        float var = 0.0f;
        for (int i = 0; i < C; i++) {
            float d = xr[i] - mean;
            var += d * d;
        }
        float rstd = 1.0f / sqrtf(var / (float)C + eps);
        if (w && b) {
            for (int i = 0; i < C; i++)
                o[i] = (xr[i] - mean) * rstd * w[i] + b[i];
        } else {
            for (int i = 0; i < C; i++)
                o[i] = (xr[i] - mean) * rstd;
        }
    }
}

/* 0.5·x·(1 + tanh u) = x / (1 + e^(−2u)): the same function through one
 * expf instead of tanhf, which glibc computes several times slower.  At the
 * extremes e^(−2u) overflows to inf (result −0) or underflows to 0 (x). */
float kern_gelu_tanh(float x)
{
    const float k2 = 1.5957691216057308f; /* 2·sqrt(2/pi) */
    return x / (1.0f + expf(-k2 * (x + 0.044715f * x * x * x)));
}

float kern_gelu_erf(float x)
{
    return 0.5f * x * (1.0f + erff(x * 0.7071067811865476f));
}

void kern_bias_act(float *y, const float *bias, size_t r0, size_t r1, int n, size_t ld,
                   kern_act act)
{
    for (size_t r = r0; r < r1; r++) {
        float *yr = y + r * ld;
        if (bias)
            for (int i = 0; i < n; i++)
                yr[i] += bias[i];
        switch (act) {
        case KERN_ACT_RELU:
            for (int i = 0; i < n; i++)
                yr[i] = yr[i] > 0.0f ? yr[i] : 0.0f;
            break;
        case KERN_ACT_GELU_TANH:
            for (int i = 0; i < n; i++)
                yr[i] = kern_gelu_tanh(yr[i]);
            break;
        case KERN_ACT_SILU:
            for (int i = 0; i < n; i++)
                yr[i] = yr[i] / (1.0f + expf(-yr[i]));
            break;
        case KERN_ACT_GELU_ERF:
            for (int i = 0; i < n; i++)
                yr[i] = kern_gelu_erf(yr[i]);
            break;
        case KERN_ACT_NONE:
            break;
        }
    }
}

void kern_linear(float *out, size_t ldo, const float *in, size_t ldi, const float *W, int N,
                 int O, int K, float beta)
{
    if (N <= 0)
        return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, K, 1.0f, in, (int)ldi, W, K, beta,
                out, (int)ldo);
}

typedef struct linear_job {
    float *out;
    size_t ldo, ldi;
    const float *in, *W;
    int N, O, K;
    float beta;
} linear_job;

/* OpenBLAS gives different bits for the same row when the matrix is split
 * differently (its tail micro-kernels accumulate differently), so the
 * split points depend on the shape alone: fixed chunks of rows (or of
 * output columns for short, wide products such as a classification head),
 * dealt out to the threads.  Any thread count then makes the same calls. */
#define LINEAR_ROW_CHUNK 256
#define LINEAR_COL_CHUNK 1024

static void linear_fn(void *arg, int tid, int nt)
{
    linear_job *j = arg;
    const bool by_rows = j->N >= 2 * LINEAR_ROW_CHUNK || j->O < 2 * LINEAR_COL_CHUNK;
    const size_t total = by_rows ? (size_t)j->N : (size_t)j->O;
    const size_t chunk = by_rows ? LINEAR_ROW_CHUNK : LINEAR_COL_CHUNK;
    const size_t n_chunks = (total + chunk - 1) / chunk;
    size_t c0, c1;
    pool_range(n_chunks, tid, nt, 1, &c0, &c1);
    for (size_t c = c0; c < c1; c++) {
        size_t a0 = c * chunk, a1 = a0 + chunk < total ? a0 + chunk : total;
        if (by_rows)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(a1 - a0), j->O, j->K,
                        1.0f, j->in + a0 * j->ldi, (int)j->ldi, j->W, j->K, j->beta,
                        j->out + a0 * j->ldo, (int)j->ldo);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, j->N, (int)(a1 - a0), j->K,
                        1.0f, j->in, (int)j->ldi, j->W + a0 * (size_t)j->K, j->K, j->beta,
                        j->out + a0, (int)j->ldo);
    }
}

void kern_par_linear(pool *p, float *out, size_t ldo, const float *in, size_t ldi, const float *W,
                     int N, int O, int K, float beta)
{
    if (N <= 0)
        return;
    linear_job j = {.out = out, .ldo = ldo, .ldi = ldi, .in = in, .W = W, .N = N, .O = O, .K = K,
                    .beta = beta};
    pool_run(p, linear_fn, &j);
}

/* ------------------------------------------------------ parallel rows --- */

typedef struct rows_job {
    float *out;
    const float *x, *w, *b;
    size_t rows, ld;
    int n;
    kern_act act;
    float eps;
} rows_job;

static void layernorm_fn(void *arg, int tid, int nt)
{
    rows_job *j = arg;
    size_t r0, r1;
    pool_range(j->rows, tid, nt, 1, &r0, &r1);
    kern_layernorm(j->out, j->x, j->w, j->b, r0, r1, j->n, j->ld, j->eps);
}

void kern_par_layernorm(pool *p, float *out, const float *x, const float *w, const float *b,
                        size_t rows, int C, float eps)
{
    rows_job j = {.out = out, .x = x, .w = w, .b = b, .rows = rows, .ld = (size_t)C, .n = C,
                  .eps = eps};
    pool_run(p, layernorm_fn, &j);
}

static void bias_act_fn(void *arg, int tid, int nt)
{
    rows_job *j = arg;
    size_t r0, r1;
    pool_range(j->rows, tid, nt, 1, &r0, &r1);
    kern_bias_act(j->out, j->b, r0, r1, j->n, j->ld, j->act);
}

void kern_par_bias_act(pool *p, float *y, const float *bias, size_t rows, int n, size_t ld,
                       kern_act act)
{
    rows_job j = {.out = y, .b = bias, .rows = rows, .ld = ld, .n = n, .act = act};
    pool_run(p, bias_act_fn, &j);
}

void kern_par_add_rows(pool *p, float *y, const float *v, size_t rows, int n, size_t ld)
{
    kern_par_bias_act(p, y, v, rows, n, ld, KERN_ACT_NONE);
}

/* ------------------------------------------------------- Llama's rows --- */

static void rmsnorm_fn(void *arg, int tid, int nt)
{
    rows_job *j = arg;
    size_t r0, r1;
    pool_range(j->rows, tid, nt, 1, &r0, &r1);
    const int C = j->n;
    for (size_t r = r0; r < r1; r++) {
        const float *x = j->x + r * j->ld;
        float *o = j->out + r * j->ld;
        float ss = 0.0f;
        for (int i = 0; i < C; i++)
            ss += x[i] * x[i];
        const float rstd = 1.0f / sqrtf(ss / (float)C + j->eps);
        for (int i = 0; i < C; i++)
            o[i] = x[i] * rstd * j->w[i];
    }
}

void kern_par_rmsnorm(pool *p, float *out, const float *x, const float *w, size_t rows, int C,
                      float eps)
{
    rows_job j = {.out = out, .x = x, .w = w, .rows = rows, .ld = (size_t)C, .n = C,
                  .eps = eps};
    pool_run(p, rmsnorm_fn, &j);
}

typedef struct swiglu_job {
    float *g;
    const float *u;
    size_t n;
} swiglu_job;

static void swiglu_fn(void *arg, int tid, int nt)
{
    swiglu_job *j = arg;
    size_t i0, i1;
    pool_range(j->n, tid, nt, 16, &i0, &i1);
    for (size_t i = i0; i < i1; i++)
        j->g[i] = j->g[i] / (1.0f + expf(-j->g[i])) * j->u[i];
}

void kern_par_swiglu(pool *p, float *g, const float *u, size_t n)
{
    swiglu_job j = {.g = g, .u = u, .n = n};
    pool_run(p, swiglu_fn, &j);
}

typedef struct rope_job {
    float *x;
    size_t ld, N;
    int col0, n_heads, hd;
    const int32_t *pos;
    const float *cos_tab, *sin_tab;
} rope_job;

static void rope_fn(void *arg, int tid, int nt)
{
    rope_job *j = arg;
    size_t r0, r1;
    pool_range(j->N, tid, nt, 1, &r0, &r1);
    const int half = j->hd / 2;
    for (size_t r = r0; r < r1; r++) {
        const float *c = j->cos_tab + (size_t)j->pos[r] * (size_t)half;
        const float *s = j->sin_tab + (size_t)j->pos[r] * (size_t)half;
        for (int h = 0; h < j->n_heads; h++) {
            float *x = j->x + r * j->ld + (size_t)j->col0 + (size_t)h * (size_t)j->hd;
            for (int i = 0; i < half; i++) {
                const float a = x[i], b = x[i + half];
                x[i] = a * c[i] - b * s[i];
                x[i + half] = b * c[i] + a * s[i];
            }
        }
    }
}

void kern_par_rope(pool *p, float *x, size_t ld, size_t N, int col0, int n_heads, int hd,
                   const int32_t *pos, const float *cos_tab, const float *sin_tab)
{
    rope_job j = {.x = x, .ld = ld, .N = N, .col0 = col0, .n_heads = n_heads, .hd = hd,
                  .pos = pos, .cos_tab = cos_tab, .sin_tab = sin_tab};
    pool_run(p, rope_fn, &j);
}

/* ---------------------------------------------------------- attention --- */

typedef struct attn_job {
    float *out;
    const float *qkv;
    const int32_t *seq_start;
    int B, C, NH, max_T;
    int sgemm_min_T;
    bool causal;
    const float *pk, *pv; /* [P, KVD] prefix keys and values, or NULL */
    int P;
    float scale;
    float *scratch;
    /* layout: qkv rows are q [QD] | k [KVD] | v [KVD] (ld = QD + 2 KVD), out
     * rows [QD]; query head h reads key/value head h / group (GQA) */
    int HD, QD, KVD, group;
    size_t ld;
} attn_job;

/* Pointers of (sequence b, head h): its q, k, v columns and output columns. */
static void attn_ptrs(const attn_job *j, int b, int h, const float **q, const float **k,
                      const float **v, float **o, const float **pk, const float **pv)
{
    const int32_t t0 = j->seq_start[b];
    const int kvh = h / j->group;
    *q = j->qkv + (size_t)t0 * j->ld + (size_t)h * j->HD;
    *k = j->qkv + (size_t)t0 * j->ld + (size_t)j->QD + (size_t)kvh * j->HD;
    *v = *k + j->KVD;
    *o = j->out + (size_t)t0 * j->QD + (size_t)h * j->HD;
    *pk = j->pk ? j->pk + (size_t)kvh * j->HD : NULL;
    *pv = j->pv ? j->pv + (size_t)kvh * j->HD : NULL;
}

/* One (sequence, head) with direct loops.  K is first copied transposed
 * into scratch so both inner loops are axpy-shaped (s[t] += q[e]·kT[e][t],
 * o[e] += p[t]·v[t][e]): they vectorise without reassociating a reduction.
 * Used for short sequences, where an sgemm call costs more than it saves. */
static void attention_loops(const attn_job *j, int b, int h, float *scratch)
{
    const int HD = j->HD, P = j->P, KVD = j->KVD, QD = j->QD;
    const size_t ld = j->ld;
    const int32_t t0 = j->seq_start[b], T = j->seq_start[b + 1] - t0;
    const float *q, *k, *v, *pkh, *pvh;
    float *o;
    attn_ptrs(j, b, h, &q, &k, &v, &o, &pkh, &pvh);
    float *sp = scratch;                    /* [P] prefix scores, then [T] */
    float *s = scratch + P;                 /* [T] */
    float *kT = scratch + P + j->max_T;     /* [HD, T] */
    for (int t = 0; t < T; t++)
        for (int e = 0; e < HD; e++)
            kT[(size_t)e * T + t] = k[(size_t)t * ld + e];
    for (int i = 0; i < T; i++) {
        const float *qi = q + (size_t)i * ld;
        const int n = j->causal ? i + 1 : T;
        const float inv = kern_attn_row(s, sp, qi, kT, pkh, n, T, P, HD, KVD, j->scale);
        float *oi = o + (size_t)i * QD;
        for (int e = 0; e < HD; e++)
            oi[e] = 0.0f;
        for (int p = 0; p < P; p++) {
            const float *vp = pvh + (size_t)p * KVD;
            const float pp = sp[p] * inv;
            for (int e = 0; e < HD; e++)
                oi[e] += pp * vp[e];
        }
        for (int t = 0; t < n; t++) {
            const float *vt = v + (size_t)t * ld;
            const float pt = s[t] * inv;
            for (int e = 0; e < HD; e++)
                oi[e] += pt * vt[e];
        }
    }
}

float kern_attn_row(float *s, float *sp, const float *qi, const float *kT, const float *pk, int n,
                    int T, int P, int HD, int kvd, float scale)
{
    for (int t = 0; t < n; t++)
        s[t] = 0.0f;
    for (int e = 0; e < HD; e++) {
        const float qe = qi[e] * scale;
        const float *kr = kT + (size_t)e * T;
        for (int t = 0; t < n; t++)
            s[t] += qe * kr[t];
    }
    float mx = -INFINITY;
    for (int p = 0; p < P; p++) {
        const float *kp = pk + (size_t)p * kvd;
        float d = 0.0f;
        for (int e = 0; e < HD; e++)
            d += qi[e] * scale * kp[e];
        sp[p] = d;
        mx = d > mx ? d : mx;
    }
    for (int t = 0; t < n; t++)
        mx = s[t] > mx ? s[t] : mx;
    float sum = 0.0f;
    for (int p = 0; p < P; p++) {
        sp[p] = expf(sp[p] - mx);
        sum += sp[p];
    }
    for (int t = 0; t < n; t++) {
        s[t] = expf(s[t] - mx);
        sum += s[t];
    }
    return 1.0f / sum;
}

void kern_attn_probs(float *S, const float *q, const float *pk, const float *k, int T, int P,
                     int HD, int ld, int kvd, float scale, bool causal)
{
    const int lds = P + T;
    if (P)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, P, HD, scale, q, ld, pk, kvd,
                    0.0f, S, lds);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HD, scale, q, ld, k, ld, 0.0f,
                S + P, lds);
    for (int i = 0; i < T; i++) {
        float *s = S + (size_t)i * lds;
        const int n = P + (causal ? i + 1 : T);
        float mx = -INFINITY;
        for (int t = 0; t < n; t++)
            mx = s[t] > mx ? s[t] : mx;
        float sum = 0.0f;
        for (int t = 0; t < n; t++) {
            s[t] = expf(s[t] - mx);
            sum += s[t];
        }
        const float inv = 1.0f / sum;
        for (int t = 0; t < n; t++)
            s[t] *= inv;
        for (int t = n; t < lds; t++)
            s[t] = 0.0f;
    }
}

/* One (sequence, head) with two sgemm calls: S = scale·Q·Kᵀ [T, T], softmax
 * row by row (causal: only the lower triangle is read), O = P·V.  Each call's
 * shape depends on the sequence alone, so the bits do not depend on which
 * thread runs it.  Scratch: [T, T]. */
static void attention_sgemm(const attn_job *j, int b, int h, float *S)
{
    const int HD = j->HD, P = j->P, KVD = j->KVD, QD = j->QD;
    const int ld = (int)j->ld;
    const int32_t t0 = j->seq_start[b], T = j->seq_start[b + 1] - t0;
    const int lds = P + T; /* S = [prefix scores | token scores], [T, P + T] */
    const float *q, *k, *v, *pkh, *pvh;
    float *o;
    attn_ptrs(j, b, h, &q, &k, &v, &o, &pkh, &pvh);
    kern_attn_probs(S, q, pkh, k, T, P, HD, ld, KVD, j->scale, j->causal);
    if (P)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, P, 1.0f, S, lds, pvh, KVD,
                    0.0f, o, QD);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HD, T, 1.0f, S + P, lds, v, ld,
                P ? 1.0f : 0.0f, o, QD);
}

static void attention_task(const attn_job *j, int b, int h, float *scratch)
{
    const int32_t T = j->seq_start[b + 1] - j->seq_start[b];
    if (T >= j->sgemm_min_T)
        attention_sgemm(j, b, h, scratch);
    else
        attention_loops(j, b, h, scratch);
}

static void attention_fn(void *arg, int tid, int nt)
{
    attn_job *j = arg;
    size_t n_tasks = (size_t)j->B * (size_t)j->NH, t0, t1;
    pool_range(n_tasks, tid, nt, 1, &t0, &t1);
    float *s = j->scratch + (size_t)tid * kern_attention_scratch_ex(j->max_T, j->HD, j->P);
    for (size_t t = t0; t < t1; t++)
        attention_task(j, (int)(t / (size_t)j->NH), (int)(t % (size_t)j->NH), s);
}

size_t kern_attention_scratch(int max_T, int HD)
{
    return kern_attention_scratch_ex(max_T, HD, 0);
}

size_t kern_attention_scratch_ex(int max_T, int HD, int n_prefix)
{
    size_t T = (size_t)max_T, P = (size_t)n_prefix;
    size_t loops = P + T * (size_t)(HD + 1), gemm = T * (P + T);
    return loops > gemm ? loops : gemm;
}

void kern_par_attention(pool *p, float *out, const float *qkv, const int32_t *seq_start, int B,
                        int C, int NH, float scale, float *scratch, int max_T)
{
    kern_par_attention_min(p, out, qkv, seq_start, B, C, NH, scale, scratch, max_T,
                           KERN_ATTENTION_SGEMM_MIN_T);
}

void kern_par_attention_min(pool *p, float *out, const float *qkv, const int32_t *seq_start,
                            int B, int C, int NH, float scale, float *scratch, int max_T,
                            int sgemm_min_T)
{
    kern_par_attention_ex(p, out, qkv, seq_start, B, C, NH, scale, scratch, max_T, sgemm_min_T,
                          NULL);
}

void kern_par_attention_ex(pool *p, float *out, const float *qkv, const int32_t *seq_start,
                           int B, int C, int NH, float scale, float *scratch, int max_T,
                           int sgemm_min_T, const kern_attn_ext *ext)
{
    attn_job j = {.out = out, .qkv = qkv, .seq_start = seq_start, .B = B, .C = C, .NH = NH,
                  .max_T = max_T, .sgemm_min_T = sgemm_min_T, .causal = true, .scale = scale,
                  .scratch = scratch, .HD = C / NH, .QD = C, .KVD = C, .group = 1,
                  .ld = 3 * (size_t)C};
    if (ext && ext->head_dim > 0) { /* Llama: GQA and a head size of its own */
        const int nkv = ext->n_kv_heads > 0 ? ext->n_kv_heads : NH;
        j.HD = ext->head_dim;
        j.QD = NH * j.HD;
        j.KVD = nkv * j.HD;
        j.group = NH / nkv;
        j.ld = (size_t)j.QD + 2 * (size_t)j.KVD;
    }
    if (ext) {
        j.causal = !ext->bidirectional;
        if (ext->prefix_k && ext->prefix_v && ext->n_prefix > 0) {
            j.pk = ext->prefix_k;
            j.pv = ext->prefix_v;
            j.P = ext->n_prefix;
        }
    }
    pool_run(p, attention_fn, &j);
}

/* ------------------------------------------------------ softmax rows --- */

double kern_row_sumexp(const float *l, size_t V, float *mx_out)
{
    float mx = l[0];
    for (size_t v = 1; v < V; v++)
        mx = l[v] > mx ? l[v] : mx;
    double z = 0;
    for (size_t v = 0; v < V; v++)
        z += exp((double)(l[v] - mx));
    *mx_out = mx;
    return z;
}

double kern_class_lse(const double *sc, int K, int *argmax)
{
    double mx = sc[0];
    int best = 0;
    for (int c = 1; c < K; c++)
        if (sc[c] > mx) {
            mx = sc[c];
            best = c;
        }
    double z = 0;
    for (int c = 0; c < K; c++)
        z += exp(sc[c] - mx);
    if (argmax)
        *argmax = best;
    return log(z) + mx;
}

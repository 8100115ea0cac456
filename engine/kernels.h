/* kernels.h - the dense kernels of a transformer forward pass, fp32.
 *
 * Each function works on a contiguous range of rows so callers can split a
 * batch across pool threads; every row's result depends on that row alone,
 * so any split gives the same bits.  Weight matmuls are OpenBLAS sgemm
 * (kern_linear); everything else is plain C written for auto-vectorisation.
 * Leaves out: fp16 compute, fused attention kernels for long sequences.
 */
#ifndef HELENE_KERNELS_H
#define HELENE_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool.h"

/* out[r, :] = LN(x[r, :]) * w + b for rows [r0, r1); w, b may be NULL
 * (elementwise_affine = false). Rows are C wide with stride ld. */
void kern_layernorm(float *out, const float *x, const float *w, const float *b, size_t r0,
                    size_t r1, int C, size_t ld, float eps);

/* The activations kern_bias_act applies. */
typedef enum kern_act {
    KERN_ACT_NONE = 0,
    KERN_ACT_RELU,
    KERN_ACT_GELU_TANH, /* HF "gelu_new" / "gelu_pytorch_tanh" */
    KERN_ACT_GELU_ERF,  /* HF "gelu" */
    KERN_ACT_SILU,      /* x·sigmoid(x) */
} kern_act;

/* y = act(y + bias) in place over n columns per row, rows [r0, r1).  bias
 * may be NULL. */
void kern_bias_act(float *y, const float *bias, size_t r0, size_t r1, int n, size_t ld,
                   kern_act act);

/* out[N, O] (row stride ldo) = beta * out + in[N, K] (stride ldi) * W[O, K]^T.
 * One sgemm call; OpenBLAS threads it. */
void kern_linear(float *out, size_t ldo, const float *in, size_t ldi, const float *W, int N,
                 int O, int K, float beta);

/* As kern_linear, with the rows split across the pool's threads and one
 * single-threaded sgemm per thread (OpenBLAS must be set to 1 thread). */
void kern_par_linear(pool *p, float *out, size_t ldo, const float *in, size_t ldi, const float *W,
                     int N, int O, int K, float beta);

/* Multithreaded helpers over a [rows, n] matrix with the pool. */
void kern_par_layernorm(pool *p, float *out, const float *x, const float *w, const float *b,
                        size_t rows, int C, float eps);
void kern_par_bias_act(pool *p, float *y, const float *bias, size_t rows, int n, size_t ld,
                       kern_act act);
/* Broadcast-add a [n] vector to every row: y[r, :] += v. */
void kern_par_add_rows(pool *p, float *y, const float *v, size_t rows, int n, size_t ld);

/* Causal multi-head attention over packed sequences (see _ex for encoders).
 * qkv [N, 3C] holds q | k | v per token (biases already added); out [N, C].
 * seq_start [B+1]; scale multiplies q·k.  scratch: threads times
 * kern_attention_scratch(max_T, C / NH) floats. */
size_t kern_attention_scratch(int max_T, int HD);
/* Sequences of at least sgemm_min_T tokens use two sgemm calls per head
 * (QKᵀ, then PV); shorter ones direct loops, cheaper than a call there. */
#define KERN_ATTENTION_SGEMM_MIN_T 48
void kern_par_attention(pool *p, float *out, const float *qkv, const int32_t *seq_start, int B,
                        int C, int NH, float scale, float *scratch, int max_T);
/* The same with an explicit threshold (tests compare both paths). */
void kern_par_attention_min(pool *p, float *out, const float *qkv, const int32_t *seq_start,
                            int B, int C, int NH, float scale, float *scratch, int max_T,
                            int sgemm_min_T);
/* What else an attention may do (NULL = causal, no prefix):
 * bidirectional: every token attends to its whole sequence (an encoder's;
 *   packing leaves no padding to mask);
 * prefix: n_prefix key/value rows [n_prefix, C] that every query of every
 *   sequence attends to before its own tokens (prefix tuning). */
typedef struct kern_attn_ext {
    bool bidirectional;
    const float *prefix_k, *prefix_v; /* [n_prefix, n_kv_heads * head_dim] */
    int n_prefix;
    /* Llama: head_dim > 0 gives qkv rows q [NH·HD] | k [NKV·HD] | v [NKV·HD]
     * and out rows [NH·HD]; query head h reads key/value head h / (NH / NKV)
     * (grouped-query attention; n_kv_heads 0 = NH).  0: HD = C / NH, as the
     * other families. */
    int head_dim, n_kv_heads;
} kern_attn_ext;
void kern_par_attention_ex(pool *p, float *out, const float *qkv, const int32_t *seq_start,
                           int B, int C, int NH, float scale, float *scratch, int max_T,
                           int sgemm_min_T, const kern_attn_ext *ext);
/* Scratch floats per thread for kern_par_attention_ex with a prefix. */
size_t kern_attention_scratch_ex(int max_T, int HD, int n_prefix);
/* Attention probabilities of one (sequence, head), the forward's and the
 * backward's recompute alike: S [T, P + T] = row-softmax of scale · [q pkᵀ |
 * q kᵀ], row i reading the P prefix columns and tokens 0..i (causal) or all
 * T; the masked entries are 0.  q and k rows are ld floats apart, pk rows
 * kvd.  The calls' shapes depend on the sequence alone, so the bits do not
 * depend on the thread. */
void kern_attn_probs(float *S, const float *q, const float *pk, const float *k, int T, int P,
                     int HD, int ld, int kvd, float scale, bool causal);
/* The loops path's row i of the same: s[0..n) and sp[0..P) get
 * exp(score - max) for the n visible tokens (keys transposed, kT [HD, T])
 * and the P prefix keys (rows kvd apart); returns 1 / their sum. */
float kern_attn_row(float *s, float *sp, const float *qi, const float *kT, const float *pk, int n,
                    int T, int P, int HD, int kvd, float scale);

/* out[r, :] = x[r, :] / sqrt(mean(x²) + eps) * w (RMSNorm; out may be x). */
void kern_par_rmsnorm(pool *p, float *out, const float *x, const float *w, size_t rows, int C,
                      float eps);

/* SwiGLU: g[i] = silu(g[i]) * u[i] over n floats. */
void kern_par_swiglu(pool *p, float *g, const float *u, size_t n);

/* Rotary position embedding in HF's rotate-half layout, in place: for each
 * of N rows (stride ld) and each of n_heads heads of hd columns starting at
 * col0, with c = cos_tab[pos[r], i], s = sin_tab[pos[r], i], i < hd/2:
 * x[i], x[i + hd/2] <- x[i] c - x[i + hd/2] s, x[i + hd/2] c + x[i] s. */
void kern_par_rope(pool *p, float *x, size_t ld, size_t N, int col0, int n_heads, int hd,
                   const int32_t *pos, const float *cos_tab, const float *sin_tab);

/* Log-softmax parts of one row of V logits: *mx = max l[v] and the return
 * value z = Σ exp(l[v] − mx), each difference in float, the exp and the sum
 * in double, in v order.  log p(t) = (l[t] − mx) − log z.  The scorers
 * (cls.c, model_nll) and classification's backward share it, so training
 * sees the losses evaluation reports, bit for bit.  (The LM backward,
 * pretraining's hot path, keeps its float exp: its bits fix the bundled
 * model.) */
double kern_row_sumexp(const float *l, size_t V, float *mx);

/* Log-sum-exp of K class scores, log Σ exp(sc[c] − mx) + mx (double); the
 * first index of the largest score into *argmax when argmax is not NULL. */
double kern_class_lse(const double *sc, int K, int *argmax);

/* Scalar reference activations (exposed for tests). */
float kern_gelu_tanh(float x);
float kern_gelu_erf(float x);

#endif

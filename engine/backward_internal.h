/* backward_internal.h - what backward.c shares with backward_llama.c and
 * backward_loss.c; not a public API.
 *
 * backward.c owns the object, the training forward and backward drivers,
 * the heads and the building blocks below; backward_llama.c brings the
 * Llama family's block (RMSNorm, rotary positions, grouped-query attention,
 * SwiGLU), built from them.  Determinism and threads: as backward.h says;
 * every function here runs its work on the model's pool in fixed chunks.
 */
#ifndef HELENE_BACKWARD_INTERNAL_H
#define HELENE_BACKWARD_INTERNAL_H

#include "backward.h"

/* dx[N, K] (ldx) = beta·dx + dy[N, O] (ldy)·W[O, K]: the input gradient of y = x Wᵀ. */
void bi_mm_dx(pool *p, float *dx, size_t ldx, const float *dy, size_t ldy, const float *W,
              int N, int O, int K, float beta);
/* dW[O, K] += dy[N, O]ᵀ (ldy)·x[N, K] (ldx): the weight gradient (dW NULL: nothing). */
void bi_mm_dw(pool *p, float *dW, const float *dy, size_t ldy, const float *x, size_t ldx,
              int N, int O, int K);
/* db[o] += Σ_r dy[r, o] over rows of stride ld (db NULL: nothing). */
void bi_colsum(pool *p, float *db, const float *dy, size_t rows, int n, size_t ld);

/* dx = acc + d RMSNorm(x)/dx · dy (acc may be NULL or dx itself); dw += Σ dy·x̂
 * (dw may be NULL).  xhat is [rows, C] scratch. */
void bi_rmsnorm_back(pool *p, float *dx, const float *acc, const float *dy, const float *x,
                     const float *w, float *dw, float *xhat, size_t rows, int C, float eps);

/* LoRA site `site` of block b (nothing when the site is not adapted):
 * out[N, O] += alpha/r·(in·Aᵀ)·Bᵀ as model.c adds it; and its backward from
 * dy [N, O] and the site's input x [N, K]: dA, dB into g, dx += its share. */
void bi_lora_forward(backward *bw, const model_block *b, int site, float *out, size_t ldo,
                     const float *in, size_t ldi, size_t N, int O, int K);
void bi_lora_backward(backward *bw, const model_block *b, model_block *g, int site,
                      const float *dy, size_t ldy, const float *x, size_t ldx, float *dx,
                      size_t ldxo, size_t N, int O, int K);

/* The attention's backward from datt [N, QD] into bw->dqkv [N, QD + 2 KVD],
 * given the q | k | v rows the attention read; block b's prefix gradients
 * into g.  HL_ERR_NOMEM when the prefix work space cannot grow. */
hl_status bi_attention_back(backward *bw, const model_block *b, model_block *g,
                            const float *datt, const float *qkv);

/* The same checks as model_forward, then the forward with every layer's
 * activations kept (backward_loss.c runs it before each loss). */
hl_status bi_train_forward(backward *bw, const model_batch *batch, hl_err *err);
/* From bw->dhidden (gradient of the head's input) down to the embeddings. */
hl_status bi_body_backward(backward *bw, hl_err *err);

/* ---- backward_llama.c ---- */

/* The Llama family's extra state (the rotary table for the backward);
 * nothing for the other families.  Freed by backward_free. */
hl_status bi_llama_init(backward *bw, hl_err *err);

/* Block l of the training forward: bw->xs[l] -> bw->xs[l + 1], keeping
 * qkv (rotated), att, mid, pre_act (gate) and up; the calls of model.c's
 * llama_block_forward in its order, so the bits are the same. */
void bi_llama_block_forward(backward *bw, int l);
/* On entry bw->dx = dL/d(output of block l); on exit dL/d(its input).
 * HL_ERR_NOMEM as bi_attention_back. */
hl_status bi_llama_block_backward(backward *bw, int l);

#endif

/* backward.h - first-order gradients of OPT / GPT-2 / RoBERTa / Llama (and their adapters)
 * by backpropagation.
 *
 * A training forward keeps what the backward pass needs (its own buffers:
 * model_acts stays the lean inference path), then the backward pass
 * differentiates every operation model.c runs: token + position embeddings,
 * project_in / project_out, layer norm (affine or not), causal attention per
 * (sequence, head), ReLU / tanh-GELU / erf-GELU MLP, residuals in pre-LN and
 * post-LN order, the final layer norm and the tied or separate head.  Two
 * losses start it:
 *   - backward_lm:  causal-LM next-token cross-entropy, averaged over the
 *                   predicted tokens (pretraining);
 *   - backward_cls: the prompt-classification cross-entropy of cls.h (the
 *                   loss the ZO optimizers evaluate; for FT baselines and the
 *                   ZO-vs-true-gradient diagnostic).
 * The training forward makes the same kernel calls in the same order as
 * model_forward, so its hidden states - and the losses - are bit-identical
 * to the inference path's.
 *
 * Determinism: every matmul is OpenBLAS sgemm over chunks whose boundaries
 * depend on the shapes alone, and every reduction (weight and bias
 * gradients, layer-norm parameters, embedding scatter-adds, the loss sum,
 * a key/value head's gradient over its query heads) runs in a fixed order;
 * there are no atomics.  Gradients are therefore bit-identical for any pool
 * size (OpenBLAS must run single-threaded, as lm_open sets it).
 *
 * Memory: per layer and token 6C + F floats (7C + F post-LN; Llama 2C +
 * 2QD + 2KVD + 2F) are kept (block input, q|k|v, attention output, the
 * mid-block residual, the FFN pre-activation, Llama's up projection);
 * norm outputs, activations and attention probabilities are recomputed in
 * the backward pass with the forward's own arithmetic (attention: direct
 * loops below KERN_ATTENTION_SGEMM_MIN_T tokens, sgemm per (sequence, head)
 * from there, as kernels.c does).  Logits are computed BACKWARD_LOGIT_ROWS
 * rows at a time, so no [N, V] buffer exists.
 *
 * Legend as in model.h: N packed tokens, B sequences, T a sequence's length,
 * C hidden, E word-embedding size, F FFN size, V vocabulary, L layers,
 * NH heads, HD = C / NH (Llama: head_dim), QD = NH·HD, KVD = NKV·HD.
 *
 * LoRA (model.h's PEFT): when the model carries LoRA adapters the gradient
 * arena is laid out like its adapters (model_trainable) instead of its
 * weights: the forward adds each site's alpha/r (x Aᵀ) Bᵀ as model.c does,
 * and the backward gives dA, dB and the site's input gradient through them;
 * the frozen base weights get no gradient at all.
 *
 * Prefix adapters: every query also attends to the block's P prefix
 * keys/values (as kernels.c does); each (sequence, key/value head) task
 * writes its share of their gradient to a slice of its own, and the shares
 * are summed over sequences in order, so the bits do not depend on the
 * threads.
 *
 * RoBERTa: bidirectional attention, the embedding LayerNorm (token type row
 * 0 gets every token's gradient), the head transform LN(gelu(dense(x))) and
 * lm_head.bias.
 *
 * The Llama family (Llama, Mistral, Qwen2; backward_llama.c): RMSNorm,
 * q/k/v biases (Qwen2), rotary positions (any scaling: the tables are the
 * forward's), grouped-query attention with a head_dim of its own, the
 * SwiGLU MLP; LoRA with fc1 = gate_proj, fc2 = down_proj; prefix keys as
 * the forward reads them (rotated once, at capture).
 *
 * Leaves out: dropout, mixed precision, activation checkpointing beyond the
 * recomputations above.
 *
 * For the engine (`--optimizer ft-adam`, the gradient-alignment diagnostic):
 *     backward bw;  adamw opt;                          once per run
 *     backward_init(&bw, &lm->model, &err);
 *     adamw_init(&opt, &lm->model.params, &cfg, &lm->pool, &err);
 *     backward_zero_grad(&bw);                          every step
 *     backward_cls(&bw, losses, &scorer, batch, n, 1.0, &err);
 *     adamw_step(&opt, &stats, bw.grad.data, &err);
 * The alignment diagnostic materialises the ZO estimate c·z in an arena laid
 * out like model->params and calls backward_cosine(&bw, estimate) after
 * backward_cls on the same batch.  Memory on top of the weights: the
 * gradient arena (1x), AdamW's m and v (2x) and the activations above.
 *
 * Ownership: backward_init borrows the model (it must outlive the backward
 * and its layout must not change); the backward owns its gradient arena and
 * all its buffers, which grow on demand and are reused across calls.
 * Threads: one call at a time; the model's pool does the parallel work.
 */
#ifndef HELENE_BACKWARD_H
#define HELENE_BACKWARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cls.h"
#include "err.h"
#include "model.h"
#include "params.h"

/* Rows of logits held at once by the cross-entropy heads. */
#define BACKWARD_LOGIT_ROWS 64

typedef struct backward {
    model *m;          /* borrowed */
    param_set grad;    /* owned: dLoss/dθ; same layer table, offsets and padding as
                        * model_trainable(m) (m->params, or its LoRA adapters), so
                        * grad.data[i] belongs to that set's data[i] */
    model_weights gw;  /* pointers into grad laid out like m->w (gw.head == gw.wte when
                        * the head is tied; GPT-2's q|k|v rows of one tensor); NULL
                        * for weights without a gradient (frozen under LoRA) */

    /* ---- private: saved activations of the last training forward ---- */
    size_t cap_tokens; /* buffers hold this many tokens */
    int cap_seq_len;
    int cap_threads;
    size_t n_tokens;   /* N of the last forward */
    int max_T;
    model_batch batch; /* the last forward's batch (pointers borrowed from the caller) */
    float *xs;         /* [L + 1, N, C] block inputs; xs[L] = output of the last block */
    float *qkv;        /* [L, N, QD + 2 KVD] q | k | v with biases, q unscaled (Llama:
                        * q and k rotated, as the attention reads them) */
    float *att;        /* [L, N, QD] attention output before out_proj */
    float *mid;        /* [L, N, C] pre-LN: residual after attention (input of LN2);
                        * post-LN: residual before LN1 */
    float *post2;      /* [L, N, C] post-LN only: residual before LN2; NULL for pre-LN */
    float *pre_act;    /* [L, N, F] fc1 output + bias, before the activation (Llama: gate_proj) */
    float *up;         /* [L, N, F] Llama: up_proj output, or NULL */
    float *emb;        /* [N, E] gathered word embeddings (input of project_in) or NULL */
    float *fin;        /* [N, C] after the final layer norm (input of project_out) */
    float *hidden;     /* [N, E] input of the head */
    int32_t *pos;      /* [N] position row per token */
    /* backward work space */
    float *dx;         /* [N, C] gradient of the residual stream */
    float *dmid;       /* [N, C] */
    float *dc;         /* [N, max(C, QD)] gradient of a norm output / attention output */
    float *dqkv;       /* [N, QD + 2 KVD] */
    float *dffn;       /* [N, F] */
    float *tmp_c;      /* [N, C] recomputed layer-norm outputs */
    float *tmp_f;      /* [N, F] recomputed activations */
    float *dhidden;    /* [N, E] */
    float *demb;       /* [N, E] or NULL */
    float *scratch;    /* [threads, attention scratch] */
    float *lora_u, *lora_v; /* [N, r] LoRA's x Aᵀ and dy B (NULL without LoRA) */
    float *emb_pre;    /* [N, C] RoBERTa: the summed embeddings before their LN, or NULL */
    float *mlm_pre;    /* [N, C] RoBERTa: the head's dense output + bias before GELU, or NULL */
    float *pref_part;  /* [B, 2, P, KVD] prefix: each sequence's share of dK_p, dV_p */
    size_t pref_cap;   /* floats in pref_part */
    float *rope_nsin;  /* [max_pos, HD / 2] Llama: −sin of the rotary table (the rotation's
                        * transpose), or NULL */
    /* heads */
    float *logits;     /* [BACKWARD_LOGIT_ROWS, V] */
    float *hrows;      /* [BACKWARD_LOGIT_ROWS, E] gathered hidden rows */
    float *drows;      /* [BACKWARD_LOGIT_ROWS, E] their gradient */
    double *row_loss;  /* [BACKWARD_LOGIT_ROWS] */
    /* classification packing (grown on demand) */
    int32_t *cls_tokens, *cls_starts, *cls_rows, *cls_targets;
    float *cls_coef;   /* [rows] dLoss/dscore_c / |word_c| per logit row */
    size_t cls_cap_tokens, cls_cap_seqs, cls_cap_rows;
} backward;

/* Allocate the gradient arena (zeroed) for m.  The activation buffers are
 * allocated by the first call that needs them.  On failure nothing is left
 * allocated and backward_free is a no-op. */
hl_status backward_init(backward *bw, model *m, hl_err *err);
void backward_free(backward *bw);

/* grad = 0 (every call below adds into grad, so batches can be accumulated). */
void backward_zero_grad(backward *bw);

/* Causal LM on a packed batch: in each sequence b, positions
 * [first_pred, len_b) are predicted from their prefixes (first_pred >= 1).
 * loss = (sum of the NLLs) / count, count = number of predicted tokens.
 * Adds weight * dloss/dθ into bw->grad and returns the summed NLL (double)
 * and count; count == 0 leaves grad unchanged.  The model's weights are
 * read, never written.  weight = 1 for one batch, 1/k for the mean of k
 * equally sized accumulated micro-batches. */
hl_status backward_lm(backward *bw, double *out_sum_nll, size_t *out_count,
                      const model_batch *batch, int32_t first_pred, double weight, hl_err *err);

/* The classification objective of cls.h on n examples (n <= s->max_batch,
 * s built on the same model as bw): loss = (1/n) * sum_i loss_i where loss_i
 * is cls_score's cross-entropy of the gold class over the label words (0
 * for label -1), i.e. exactly the mean the ZO optimizers estimate from
 * cls_score losses.  Adds weight * dloss/dθ into bw->grad.  losses[i] (may
 * be NULL) receives the per-example losses: bit-identical to cls_score's
 * for single-token words, within float rounding (~1e-7) for longer ones,
 * whose head logits are computed BACKWARD_LOGIT_ROWS rows at a time.
 * Single-token label words take the fast path (label logits only); longer
 * words are scored with a full log-softmax, as cls_score does.  Only the
 * scorer's words and sizes are read; its buffers are not touched. */
hl_status backward_cls(backward *bw, double *losses, const cls_scorer *s, const cls_example *ex,
                       int32_t n, double weight, hl_err *err);

/* Cosine similarity between bw->grad and another arena laid out like the
 * model's parameters (e.g. a ZO estimate c·z materialised for the
 * gradient-alignment diagnostic).  Dot product and norms are summed in
 * double over fixed pieces, added in order: the same value for any pool
 * size.  Returns 0 when either arena is all zeros. */
double backward_cosine(const backward *bw, const float *other);

/* The gradient slot of a weight: p points into m->params (e.g. m->w.blocks[0].w1);
 * returns the matching pointer into bw->grad, NULL for NULL. */
float *backward_grad_of(const backward *bw, const float *p);

/* Floating-point operations of forward + backward over n_tok tokens in
 * sequences of seq_len, with n_head_rows rows through the full head (for
 * benchmarks; about 3x the forward). */
double backward_flops(const model_config *cfg, double n_tok, double seq_len, double n_head_rows);

#endif

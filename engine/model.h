/* model.h - transformers (OPT, GPT-2 decoders; RoBERTa encoder): config, weights, forward.
 *
 * A model is a Hugging Face folder: config.json + model.safetensors (or
 * shards).  Loading converts every weight once to fp32 into one param_set
 * arena (see params.h), which is also what the optimizers perturb and update
 * in place: there is no other copy of the weights.  The forward pass runs on
 * packed sequences (no padding tokens are computed at all), with OpenBLAS
 * sgemm for every weight matmul and the thread pool for the rest.
 *
 * Legend for shape comments: N = packed tokens of a batch, B = sequences,
 * T = one sequence's length, C = hidden size, E = word embedding size
 * (OPT's word_embed_proj_dim; = C otherwise), F = FFN size, V = vocabulary,
 * NH = heads, HD = C / NH, P = position rows.
 *
 * RoBERTa (RobertaForMaskedLM) runs through the same blocks: post-LN,
 * bidirectional attention (each packed sequence sees itself whole, so no
 * padding is ever attended to), embeddings + token type row 0 + positions
 * from padding_idx + 1, an embedding LayerNorm, and a masked-LM head
 * (dense, erf GELU, LayerNorm) in the top stage, so acts.hidden is the input
 * of the tied decoder and the logits add lm_head.bias.
 *
 * The Llama family (Llama, Mistral, Qwen2) runs through them too: RMSNorm,
 * rotary positions (rotate-half, rope_theta, linear / llama3 scaling) applied
 * to q and k in place, grouped-query attention (k, v narrower than q), and
 * the SwiGLU MLP; no learned positions.
 *
 * Leaves out: BERT (WordPiece tokenizer), KV caches and generation, dropout
 * (ZO training runs with dropout off), fp16 compute, sliding windows.
 */
#ifndef HELENE_MODEL_H
#define HELENE_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "kernels.h"
#include "params.h"
#include "peft.h"
#include "pool.h"
#include "safetensors.h"

typedef enum model_family {
    MODEL_FAMILY_OPT,
    MODEL_FAMILY_GPT2,
    MODEL_FAMILY_ROBERTA, /* masked LM */
    MODEL_FAMILY_LLAMA,   /* Llama, Mistral, Qwen2 (model_type in cfg.model_type) */
} model_family;

/* Rotary position embedding frequency scaling (HF rope_scaling). */
typedef enum model_rope_scaling {
    MODEL_ROPE_NONE = 0,
    MODEL_ROPE_LINEAR, /* positions / factor */
    MODEL_ROPE_LLAMA3, /* Llama 3.1's smooth per-frequency scaling */
} model_rope_scaling;

typedef enum model_act {
    MODEL_ACT_RELU,
    MODEL_ACT_GELU_TANH, /* HF "gelu_new" / "gelu_pytorch_tanh" */
    MODEL_ACT_GELU_ERF,  /* HF "gelu" */
    MODEL_ACT_SILU,      /* HF "silu" (Llama's gate) */
} model_act;

typedef struct model_config {
    model_family family;
    int32_t n_layers;    /* L */
    int32_t d_model;     /* C */
    int32_t n_heads;     /* NH */
    int32_t d_ffn;       /* F */
    int32_t vocab;       /* V */
    int32_t max_pos;     /* positions a sequence may use (OPT: without the offset of 2) */
    int32_t d_embed;     /* E: OPT word_embed_proj_dim, else C */
    int32_t pos_offset;  /* OPT: 2 (learned positions start at row 2), GPT-2: 0,
                            RoBERTa: padding_idx + 1 */
    int32_t type_vocab;  /* RoBERTa: token type rows (row 0 is added); else 0 */
    bool bidirectional;  /* RoBERTa: every token attends to its whole sequence
                            (false, the default: causal decoder attention) */
    bool pre_ln;         /* layer norm before attention/FFN (false: opt-350m post-LN) */
    bool final_ln;       /* a final layer norm exists */
    bool ln_affine;      /* layer norms have weight and bias */
    bool bias;           /* linear layers have biases */
    bool tied_head;      /* lm_head shares the word embeddings */
    float ln_eps;
    model_act act;
    /* Llama family (0 / false elsewhere) */
    int32_t n_kv_heads;  /* NKV: key/value heads (grouped-query attention) */
    int32_t head_dim;    /* HD (may differ from C / NH) */
    bool rms_norm;       /* RMSNorm (weight only) instead of LayerNorm */
    bool gated_mlp;      /* SwiGLU: down(silu(gate(x)) * up(x)) */
    bool qkv_bias;       /* Qwen2: q, k, v biases (no other linear has one) */
    double rope_theta;
    model_rope_scaling rope_scaling;
    double rope_factor, rope_low_freq, rope_high_freq;
    int32_t rope_orig_max_pos;
    char model_type[16]; /* "llama", "mistral", "qwen2" */
    int32_t bos_id, eos_id, pad_id; /* -1 when absent */
    bool add_bos;        /* tokenizer prepends BOS (OPT: </s>) */
    bool add_bos_known;  /* tokenizer_config.json said so (add_bos_token) */
    char torch_dtype[16];
} model_config;

/* Parse DIR/config.json (and DIR/tokenizer_config.json if present for BOS).
 * Unknown model_type -> error listing the supported ones. */
hl_status model_config_load(model_config *cfg, const char *dir, hl_err *err);

/* The inverse of model_config_load for the families helene pretrains (OPT,
 * GPT-2): config.json text with the keys OPTConfig / GPT2Config write, and
 * tokenizer_config.json (special_map false) or special_tokens_map.json
 * (true) text naming eos (also BOS and unk) and pad (when pad_id >= 0).
 * malloc'ed, caller frees; NULL when out of memory. */
char *model_config_hf_json(const model_config *c, st_dtype dt);
char *model_config_hf_tokenizer_json(const model_config *c, const char *eos, const char *pad,
                                     bool special_map);
const char *model_family_name(model_family f);

/* Pointers into the arena for one block; NULL where the family has none. */
typedef struct model_block {
    float *ln1_w, *ln1_b;  /* [C] self_attn_layer_norm / ln_1 */
    float *wqkv[3];        /* [C, C] each, [out, in]; GPT-2: rows of one [3C, C] */
    float *bqkv[3];        /* [C] each */
    float *wo, *bo;        /* [C, C], [C] */
    float *ln2_w, *ln2_b;  /* [C] final_layer_norm / ln_2 */
    float *w1, *b1;        /* [F, C], [F] */
    float *w2, *b2;        /* [C, F], [C] */
    float *w_up;           /* Llama: [F, C] up_proj (w1 is gate_proj, w2 down_proj) */
    /* PEFT (peft.h), into model.peft_params; NULL when absent */
    float *lora_a[PEFT_SITE_COUNT]; /* [r, in] per site q k v o fc1 fc2 */
    float *lora_b[PEFT_SITE_COUNT]; /* [out, r] */
    float *prefix_k, *prefix_v;     /* [tokens, C] keys and values before every sequence */
} model_block;

typedef struct model_weights {
    float *wte;            /* [V, E] word embeddings */
    float *wpe;            /* [P, C] learned positions (P includes OPT's offset rows) */
    float *proj_in;        /* [C, E] or NULL */
    float *proj_out;       /* [E, C] or NULL */
    float *lnf_w, *lnf_b;  /* [C] or NULL */
    float *head;           /* [V, E]: wte when tied */
    /* RoBERTa; NULL otherwise */
    float *tte;            /* [type_vocab, C] token type embeddings (row 0 used) */
    float *emb_ln_w, *emb_ln_b;   /* [C] embeddings.LayerNorm */
    float *mlm_dense_w, *mlm_dense_b; /* [C, C], [C] lm_head.dense */
    float *mlm_ln_w, *mlm_ln_b;   /* [C] lm_head.layer_norm */
    float *head_bias;      /* [V] lm_head.bias, added to every logit */
    model_block *blocks;   /* [L] */
} model_weights;

/* Activation buffers for up to cap_tokens packed tokens, reused across calls. */
typedef struct model_acts {
    size_t cap_tokens;
    int cap_seq_len;
    float *x;      /* [N, C] residual stream */
    float *xn;     /* [N, C] normalised input of a sublayer */
    float *qkv;    /* [N, 3C] */
    float *att;    /* [N, C] attention output before out_proj */
    float *ffn;    /* [N, F] */
    float *ffn2;   /* [N, F] Llama: the up projection (gated MLP) */
    float *emb;    /* [N, E] embeddings before project_in / hidden after project_out */
    float *scores; /* [threads, kern_attention_scratch] attention scratch */
    int cap_threads;
    float *hidden; /* [N, E] final hidden states, the input of the head */
    int32_t *pos;  /* [N] position row per token */
    float *lora;   /* [N, r] LoRA's x·Aᵀ (when LoRA is attached) */
    int cap_rank, cap_prefix;
} model_acts;

typedef struct model {
    model_config cfg;
    param_set params;      /* owns the fp32 weights */
    model_weights w;
    model_acts acts;
    pool *pool;            /* borrowed; NULL = single-threaded */
    char path[4096];
    char storage_dtype[8]; /* dtype found in the file(s): F32, F16, BF16 or mixed */
    int n_unused_tensors;  /* tensors in the file that no weight used (buffers etc.) */
    int attn_sgemm_min_T;  /* attention uses sgemm from this sequence length on */
    /* model_forward_staged's saved residual stream (not part of acts: growing
     * the activations must not drop it) */
    float *stage_x;        /* [stage_cap, C] */
    size_t stage_cap, stage_n;
    int32_t stage_saved;   /* stage whose input stage_x holds, 0 = none */
    /* Llama: rotary tables [max_pos, HD / 2], from rope_theta and scaling */
    float *rope_cos, *rope_sin;
    /* PEFT: the adapters the optimizers tune instead of params (peft.h) */
    peft_spec peft;        /* kind PEFT_NONE = full-parameter */
    param_set peft_params;
    bool peft_capture;     /* prefix init: blocks copy their k, v into the prefix */
} model;

/* A batch of B sequences packed back to back: tokens[seq_start[b] ..
 * seq_start[b+1]) is sequence b.  No padding exists anywhere. */
typedef struct model_batch {
    const int32_t *tokens;    /* [N] */
    const int32_t *seq_start; /* [B + 1], seq_start[0] = 0, non-decreasing */
    int32_t n_seq;            /* B */
} model_batch;

/* Widths of a block's attention: QD = NH·HD (queries, attention output),
 * KVD = NKV·HD (keys, values); C / NH heads of C / NH for the other families. */
int32_t model_head_dim(const model_config *cfg);
int32_t model_q_dim(const model_config *cfg);
int32_t model_kv_dim(const model_config *cfg);

/* True for masked LMs (RoBERTa): prompts carry <mask>, scores are read there. */
bool model_is_masked_lm(const model_config *cfg);

/* The tensor name a Hugging Face checkpoint of this family uses for arena
 * layer NAME (RoBERTa: "roberta." + name, lm_head.* as is; others: name). */
void model_hf_tensor_name(const model_config *cfg, const char *name, char *out, size_t cap);

/* x[0, C) += tt + p: one token's position row p (and RoBERTa's token type
 * row 0, tt, or NULL), in the one order the forward and the training
 * forward both use. */
static inline void model_add_position_row(float *x, const float *p, const float *tt, size_t C)
{
    if (tt)
        for (size_t i = 0; i < C; i++)
            x[i] += tt[i] + p[i];
    else
        for (size_t i = 0; i < C; i++)
            x[i] += p[i];
}

/* The kernel activation of a model's FFN (kernels.h). */
kern_act model_act_kernel(model_act a);

/* Load a Hugging Face folder.  On error nothing is left allocated and
 * model_free(m) is a no-op. */
hl_status model_load(model *m, const char *dir, hl_err *err);
/* Build an uninitialised (zero) model from a config: for tests and benchmarks
 * with random weights. */
hl_status model_init_from_config(model *m, const model_config *cfg, hl_err *err);
void model_free(model *m);
void model_set_pool(model *m, pool *p);

/* ---- PEFT (peft.c) ---- */

/* Add the adapters of spec s (LoRA or prefix) to a loaded model; their
 * initial values come from seed (LoRA's A) or from a forward of random
 * tokens (prefix).  The base weights are not changed. */
hl_status model_peft_attach(model *m, const peft_spec *s, uint64_t seed, hl_err *err);
/* model_peft_attach from a spec's text ("" or "none": nothing), after
 * checking that the base weights hash to want_hash (hex, from a checkpoint;
 * NULL or "": unchecked).  hash_out (may be NULL) gets this model's hash. */
hl_status model_peft_attach_text(model *m, const char *spec, const char *want_hash,
                                 uint64_t seed, char *hash_out, size_t hash_cap, hl_err *err);
/* Drop the adapters: the model is the base again. */
void model_peft_detach(model *m);
/* What the optimizers tune: the adapters when attached, else the weights. */
param_set *model_trainable(model *m);
const param_set *model_trainable_const(const model *m);
/* Fold LoRA into the base weights (W += alpha/r · B·A) and detach, so the
 * model alone computes what model + adapters did.  Prefix: an error. */
hl_status model_peft_merge(model *m, hl_err *err);
/* The base weight's name (without ".weight") that LoRA site `site` of
 * block `block` adapts, e.g. "decoder.layers.0.self_attn.q_proj". */
void model_peft_site_base(const model *m, int32_t block, int site, char *name, size_t cap);

/* Run the body: fills m->acts.hidden [N, E] for every token.  Validates
 * token ids and lengths (against max_pos) and grows the activation buffers
 * when a batch is larger than any before. */
/* The model's weights as a Hugging Face model.safetensors at path, in dt
 * (GPT-2's Conv1D weights transposed back to [in, out] as they are written,
 * without a copy); names as the
 * loader reads them, or with prefixed the full names transformers saves
 * ("model." / "transformer."); metadata format=pt plus meta_key=meta_value
 * (NULL: none).  `helene export` and `helene pretrain` both write with it. */
hl_status model_save_hf_weights(const model *m, const char *path, st_dtype dt, bool prefixed,
                                const char *meta_key, const char *meta_value, hl_err *err);

/* A batch's sequences and tokens against the model: seq_start[0] = 0,
 * lengths >= 0 and <= max_pos, token ids in the vocabulary; *max_T the
 * longest sequence (at least 1), *n_tokens all tokens.  The forward and the
 * backward's training forward both check with it. */
hl_status model_batch_check(const model_config *c, const model_batch *batch, int *max_T,
                            size_t *n_tokens, hl_err *err);
hl_status model_forward(model *m, const model_batch *batch, hl_err *err);

/* Stages of a forward, in order (layer indexes model_trainable's layers):
 * 0 = the embeddings (and OPT's project_in),
 * 1 + i = transformer block i, n_layers + 1 = the top (final norm and OPT's
 * project_out; the head reads acts.hidden after it).  A change to a layer
 * of stage s leaves the input of stage s, and every stage below, unchanged. */
int32_t model_layer_stage(const model *m, int32_t layer);
int32_t model_stage_count(const model *m); /* n_layers + 2 */

/* model_forward that shares work between forwards of one batch whose
 * parameters differ only from some stage up (layer-sampled optimizers):
 *  - start_stage 0: a full forward; when save_stage >= 1 the residual stream
 *    at the input of save_stage is kept;
 *  - start_stage s >= 1: starts from what the last call saved, which must
 *    be the input of stage s for this same batch (else HL_ERR_INVALID).
 * The result is bit-identical to model_forward on the same parameters. */
hl_status model_forward_staged(model *m, const model_batch *batch, int32_t save_stage,
                               int32_t start_stage, hl_err *err);

/* Logits over the full vocabulary for n_rows rows of acts.hidden:
 * out[r, v] for row rows[r] (rows == NULL: rows 0..n_rows-1).  out is
 * [n_rows, V], owned by the caller. */
void model_logits_rows(model *m, float *out, const int32_t *rows, size_t n_rows);

/* Logits restricted to chosen token ids: out[r, j] = logit of ids[j] at row
 * rows[r].  Costs n_rows * n_ids * E instead of n_rows * V * E. */
void model_logits_select(model *m, float *out, const int32_t *rows, size_t n_rows,
                         const int32_t *ids, size_t n_ids);

/* Mean NLL of each next token: for every sequence b, positions
 * [first_pred, len) are predicted from their prefixes.  Returns the summed
 * NLL and count through out arguments; works in chunks so no [N, V] buffer. */
hl_status model_nll(model *m, double *out_sum_nll, size_t *out_count, const model_batch *batch,
                    int32_t first_pred, hl_err *err);

/* Summed NLL of chosen tokens at chosen rows after one forward of batch:
 * -log softmax(logits[rows[i]])[targets[i]] over the full vocabulary (a
 * masked LM's pseudo-log-likelihood reads the masked rows). */
hl_status model_nll_at(model *m, double *out_sum_nll, const model_batch *batch,
                       const int32_t *rows, const int32_t *targets, size_t n, hl_err *err);

/* Floating-point operations of one forward over n_tok tokens split into
 * sequences of length seq_len (body only, and the head for n_head_rows rows
 * over n_head_cols columns).  For benchmarks. */
double model_flops_body(const model_config *cfg, double n_tok, double seq_len);

#endif

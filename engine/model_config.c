/* model_config.c - model.h's config half: config.json (and
 * tokenizer_config.json) of every family into model_config, with a clear
 * error naming the file and field for anything missing, out of range or not
 * supported; and the small queries on a config (family name, head widths,
 * HF tensor names).  model.c builds and runs the model from it. */
#include "model.h"

#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "jsonval.h"

/* ------------------------------------------------------------- config --- */

const char *model_family_name(model_family f)
{
    switch (f) {
    case MODEL_FAMILY_OPT:
        return "opt";
    case MODEL_FAMILY_GPT2:
        return "gpt2";
    case MODEL_FAMILY_ROBERTA:
        return "roberta";
    case MODEL_FAMILY_LLAMA:
        return "llama";
    }
    return "?";
}

int32_t model_head_dim(const model_config *cfg)
{
    return cfg->head_dim > 0 ? cfg->head_dim : cfg->d_model / cfg->n_heads;
}

int32_t model_q_dim(const model_config *cfg)
{
    return cfg->n_heads * model_head_dim(cfg);
}

int32_t model_kv_dim(const model_config *cfg)
{
    return (cfg->n_kv_heads > 0 ? cfg->n_kv_heads : cfg->n_heads) * model_head_dim(cfg);
}

bool model_is_masked_lm(const model_config *cfg)
{
    return cfg->family == MODEL_FAMILY_ROBERTA;
}

void model_hf_tensor_name(const model_config *cfg, const char *name, char *out, size_t cap)
{
    const char *prefix = strncmp(name, "lm_head.", 8) == 0             ? ""
                         : cfg->family == MODEL_FAMILY_ROBERTA ? "roberta."
                         : cfg->family == MODEL_FAMILY_LLAMA   ? "model."
                                                               : "";
    snprintf(out, cap, "%s%s", prefix, name);
}

/* Integer field: absent -> def (or error when def < -1 marks it required). */
#define CFG_REQUIRED (-2)

static hl_status cfg_int(const cJSON *root, const char *path, const char *const *names,
                         int32_t def, int32_t lo, int32_t hi, int32_t *out, hl_err *err)
{
    for (const char *const *n = names; *n; n++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, *n);
        if (!it || cJSON_IsNull(it))
            continue;
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) ||
            it->valuedouble < lo || it->valuedouble > hi)
            return hl_err_set(err, HL_ERR_FORMAT, "%s: \"%s\" must be an integer in %d..%d", path,
                              *n, lo, hi);
        *out = (int32_t)it->valuedouble;
        return HL_OK;
    }
    if (def == CFG_REQUIRED)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: missing required field \"%s\"", path, names[0]);
    *out = def;
    return HL_OK;
}

static hl_status cfg_bool(const cJSON *root, const char *path, const char *name, bool def,
                          bool *out, hl_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!it || cJSON_IsNull(it)) {
        *out = def;
        return HL_OK;
    }
    if (!cJSON_IsBool(it))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: \"%s\" must be true or false", path, name);
    *out = cJSON_IsTrue(it);
    return HL_OK;
}

static hl_status cfg_float(const cJSON *root, const char *path, const char *name, float def,
                           float *out, hl_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!it || cJSON_IsNull(it)) {
        *out = def;
        return HL_OK;
    }
    if (!cJSON_IsNumber(it) || !(it->valuedouble > 0) || !(it->valuedouble < 1))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: \"%s\" must be a number in (0, 1)", path, name);
    *out = (float)it->valuedouble;
    return HL_OK;
}

static hl_status cfg_act(const cJSON *root, const char *path, const char *name, const char *def,
                         model_act *out, hl_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    const char *s = def;
    if (it && !cJSON_IsNull(it)) {
        if (!cJSON_IsString(it))
            return hl_err_set(err, HL_ERR_FORMAT, "%s: \"%s\" must be a string", path, name);
        s = it->valuestring;
    }
    if (!strcmp(s, "relu"))
        *out = MODEL_ACT_RELU;
    else if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast"))
        *out = MODEL_ACT_GELU_TANH;
    else if (!strcmp(s, "gelu"))
        *out = MODEL_ACT_GELU_ERF;
    else
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: activation_function \"%s\" is not supported (relu, gelu, gelu_new)",
                          path, s);
    return HL_OK;
}

#define NAMES(...) ((const char *const[]){__VA_ARGS__, NULL})
#define DIM_MAX 1000000

static hl_status config_parse_opt(model_config *c, const cJSON *j, const char *path, hl_err *err)
{
    hl_status st;
    c->family = MODEL_FAMILY_OPT;
    if ((st = cfg_int(j, path, NAMES("hidden_size", "d_model"), CFG_REQUIRED, 1, DIM_MAX,
                      &c->d_model, err)) ||
        (st = cfg_int(j, path, NAMES("ffn_dim"), CFG_REQUIRED, 1, DIM_MAX, &c->d_ffn, err)) ||
        (st = cfg_int(j, path, NAMES("num_attention_heads"), CFG_REQUIRED, 1, 4096, &c->n_heads,
                      err)) ||
        (st = cfg_int(j, path, NAMES("num_hidden_layers"), CFG_REQUIRED, 1, 4096, &c->n_layers,
                      err)) ||
        (st = cfg_int(j, path, NAMES("vocab_size"), CFG_REQUIRED, 1, 10000000, &c->vocab, err)) ||
        (st = cfg_int(j, path, NAMES("max_position_embeddings"), CFG_REQUIRED, 1, 1 << 20,
                      &c->max_pos, err)) ||
        (st = cfg_int(j, path, NAMES("word_embed_proj_dim"), c->d_model, 1, DIM_MAX, &c->d_embed,
                      err)) ||
        (st = cfg_bool(j, path, "do_layer_norm_before", true, &c->pre_ln, err)) ||
        (st = cfg_bool(j, path, "enable_bias", true, &c->bias, err)) ||
        (st = cfg_bool(j, path, "layer_norm_elementwise_affine", true, &c->ln_affine, err)) ||
        (st = cfg_bool(j, path, "tie_word_embeddings", true, &c->tied_head, err)) ||
        (st = cfg_act(j, path, "activation_function", "relu", &c->act, err)) ||
        (st = cfg_int(j, path, NAMES("bos_token_id"), 2, -1, 10000000, &c->bos_id, err)) ||
        (st = cfg_int(j, path, NAMES("eos_token_id"), 2, -1, 10000000, &c->eos_id, err)) ||
        (st = cfg_int(j, path, NAMES("pad_token_id"), 1, -1, 10000000, &c->pad_id, err)))
        return st;
    bool remove_final = false;
    if ((st = cfg_bool(j, path, "_remove_final_layer_norm", false, &remove_final, err)))
        return st;
    c->final_ln = c->pre_ln && !remove_final;
    c->pos_offset = 2;
    c->ln_eps = 1e-5f;
    c->add_bos = true;
    return HL_OK;
}

static hl_status config_parse_gpt2(model_config *c, const cJSON *j, const char *path, hl_err *err)
{
    hl_status st;
    c->family = MODEL_FAMILY_GPT2;
    if ((st = cfg_int(j, path, NAMES("n_embd", "hidden_size"), CFG_REQUIRED, 1, DIM_MAX,
                      &c->d_model, err)) ||
        (st = cfg_int(j, path, NAMES("n_head", "num_attention_heads"), CFG_REQUIRED, 1, 4096,
                      &c->n_heads, err)) ||
        (st = cfg_int(j, path, NAMES("n_layer", "num_hidden_layers"), CFG_REQUIRED, 1, 4096,
                      &c->n_layers, err)) ||
        (st = cfg_int(j, path, NAMES("vocab_size"), CFG_REQUIRED, 1, 10000000, &c->vocab, err)) ||
        (st = cfg_int(j, path, NAMES("n_positions", "max_position_embeddings"), CFG_REQUIRED, 1,
                      1 << 20, &c->max_pos, err)) ||
        (st = cfg_int(j, path, NAMES("n_inner"), 4 * c->d_model, 1, DIM_MAX, &c->d_ffn, err)) ||
        (st = cfg_float(j, path, "layer_norm_epsilon", 1e-5f, &c->ln_eps, err)) ||
        (st = cfg_bool(j, path, "tie_word_embeddings", true, &c->tied_head, err)) ||
        (st = cfg_act(j, path, "activation_function", "gelu_new", &c->act, err)) ||
        (st = cfg_int(j, path, NAMES("bos_token_id"), c->vocab > 50256 ? 50256 : -1, -1,
                      10000000, &c->bos_id, err)) ||
        (st = cfg_int(j, path, NAMES("eos_token_id"), c->vocab > 50256 ? 50256 : -1, -1,
                      10000000, &c->eos_id, err)) ||
        (st = cfg_int(j, path, NAMES("pad_token_id"), -1, -1, 10000000, &c->pad_id, err)))
        return st;
    bool by_layer = false, upcast = false, scale = true;
    if ((st = cfg_bool(j, path, "scale_attn_by_inverse_layer_idx", false, &by_layer, err)) ||
        (st = cfg_bool(j, path, "reorder_and_upcast_attn", false, &upcast, err)) ||
        (st = cfg_bool(j, path, "scale_attn_weights", true, &scale, err)))
        return st;
    if (by_layer || !scale)
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: scale_attn_by_inverse_layer_idx / scale_attn_weights=false are not "
                          "supported",
                          path);
    c->d_embed = c->d_model;
    c->pos_offset = 0;
    c->pre_ln = true;
    c->final_ln = true;
    c->ln_affine = true;
    c->bias = true;
    c->add_bos = false;
    return HL_OK;
}

/* RobertaForMaskedLM (HF RobertaConfig). */
static hl_status config_parse_roberta(model_config *c, const cJSON *j, const char *path,
                                      hl_err *err)
{
    hl_status st;
    c->family = MODEL_FAMILY_ROBERTA;
    int32_t n_pos = 0;
    if ((st = cfg_int(j, path, NAMES("hidden_size"), CFG_REQUIRED, 1, DIM_MAX, &c->d_model,
                      err)) ||
        (st = cfg_int(j, path, NAMES("intermediate_size"), CFG_REQUIRED, 1, DIM_MAX, &c->d_ffn,
                      err)) ||
        (st = cfg_int(j, path, NAMES("num_attention_heads"), CFG_REQUIRED, 1, 4096, &c->n_heads,
                      err)) ||
        (st = cfg_int(j, path, NAMES("num_hidden_layers"), CFG_REQUIRED, 1, 4096, &c->n_layers,
                      err)) ||
        (st = cfg_int(j, path, NAMES("vocab_size"), CFG_REQUIRED, 1, 10000000, &c->vocab, err)) ||
        (st = cfg_int(j, path, NAMES("max_position_embeddings"), CFG_REQUIRED, 1, 1 << 20,
                      &n_pos, err)) ||
        (st = cfg_int(j, path, NAMES("type_vocab_size"), 2, 1, 1024, &c->type_vocab, err)) ||
        (st = cfg_float(j, path, "layer_norm_eps", 1e-12f, &c->ln_eps, err)) ||
        (st = cfg_bool(j, path, "tie_word_embeddings", true, &c->tied_head, err)) ||
        (st = cfg_act(j, path, "hidden_act", "gelu", &c->act, err)) ||
        (st = cfg_int(j, path, NAMES("bos_token_id"), 0, -1, 10000000, &c->bos_id, err)) ||
        (st = cfg_int(j, path, NAMES("eos_token_id"), 2, -1, 10000000, &c->eos_id, err)) ||
        (st = cfg_int(j, path, NAMES("pad_token_id"), 1, 0, 10000000, &c->pad_id, err)))
        return st;
    const cJSON *pe = cJSON_GetObjectItemCaseSensitive(j, "position_embedding_type");
    if (pe && !cJSON_IsNull(pe) &&
        (!cJSON_IsString(pe) || strcmp(pe->valuestring, "absolute") != 0))
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: position_embedding_type must be \"absolute\" (relative "
                          "position embeddings are not supported)",
                          path);
    bool decoder = false;
    if ((st = cfg_bool(j, path, "is_decoder", false, &decoder, err)))
        return st;
    if (decoder)
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: is_decoder is true; helene runs RoBERTa as the masked LM "
                          "(RobertaForMaskedLM) only",
                          path);
    /* positions are cumsum(not pad) + padding_idx: the first token uses row
     * padding_idx + 1, so that many rows are never used by a sequence */
    c->pos_offset = c->pad_id + 1;
    c->max_pos = n_pos - c->pos_offset;
    if (c->max_pos < 1)
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: max_position_embeddings %d leaves no positions after "
                          "pad_token_id + 1 = %d",
                          path, n_pos, c->pos_offset);
    c->d_embed = c->d_model;
    c->bidirectional = true;
    c->pre_ln = false;
    c->final_ln = false;
    c->ln_affine = true;
    c->bias = true;
    c->add_bos = false; /* masked templates spell out <s> and </s> */
    return HL_OK;
}

static hl_status cfg_double(const cJSON *root, const char *path, const char *name, double def,
                            double lo, double hi, double *out, hl_err *err)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(root, name);
    if (!it || cJSON_IsNull(it)) {
        *out = def;
        return HL_OK;
    }
    if (!cJSON_IsNumber(it) || !(it->valuedouble >= lo) || !(it->valuedouble <= hi))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: \"%s\" must be a number in [%g, %g]", path,
                          name, lo, hi);
    *out = it->valuedouble;
    return HL_OK;
}

/* rope_scaling: null, {"rope_type"|"type": "linear", "factor"} or
 * {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor",
 * "original_max_position_embeddings"}; anything else is refused by name. */
static hl_status config_parse_rope(model_config *c, const cJSON *j, const char *path,
                                   hl_err *err)
{
    hl_status st;
    if ((st = cfg_double(j, path, "rope_theta", 10000.0, 1.0, 1e12, &c->rope_theta, err)))
        return st;
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    if (!rs || cJSON_IsNull(rs))
        return HL_OK;
    if (!cJSON_IsObject(rs))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: \"rope_scaling\" must be an object or null",
                          path);
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!ty)
        ty = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(ty))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: rope_scaling needs \"rope_type\"", path);
    if ((st = cfg_double(rs, path, "factor", 1.0, 1e-6, 1e6, &c->rope_factor, err)))
        return st;
    if (!strcmp(ty->valuestring, "linear")) {
        c->rope_scaling = MODEL_ROPE_LINEAR;
        return HL_OK;
    }
    if (!strcmp(ty->valuestring, "llama3")) {
        c->rope_scaling = MODEL_ROPE_LLAMA3;
        double omp = 0;
        if ((st = cfg_double(rs, path, "low_freq_factor", 1.0, 1e-6, 1e6, &c->rope_low_freq,
                             err)) ||
            (st = cfg_double(rs, path, "high_freq_factor", 4.0, 1e-6, 1e6, &c->rope_high_freq,
                             err)) ||
            (st = cfg_double(rs, path, "original_max_position_embeddings", 8192, 1, 1 << 24,
                             &omp, err)))
            return st;
        if (!(c->rope_high_freq > c->rope_low_freq))
            return hl_err_set(err, HL_ERR_FORMAT, "%s: rope_scaling: high_freq_factor must "
                              "exceed low_freq_factor", path);
        c->rope_orig_max_pos = (int32_t)omp;
        return HL_OK;
    }
    return hl_err_set(err, HL_ERR_FORMAT,
                      "%s: rope_scaling type \"%.32s\" is not supported (linear, llama3)", path,
                      ty->valuestring);
}

/* LlamaForCausalLM and what reduces to it: MistralForCausalLM (no sliding
 * window), Qwen2ForCausalLM (q/k/v biases). */
static hl_status config_parse_llama(model_config *c, const cJSON *j, const char *path,
                                    const char *type, hl_err *err)
{
    hl_status st;
    c->family = MODEL_FAMILY_LLAMA;
    snprintf(c->model_type, sizeof c->model_type, "%s", type);
    const bool qwen2 = !strcmp(type, "qwen2");
    if ((st = cfg_int(j, path, NAMES("hidden_size"), CFG_REQUIRED, 1, DIM_MAX, &c->d_model,
                      err)) ||
        (st = cfg_int(j, path, NAMES("intermediate_size"), CFG_REQUIRED, 1, DIM_MAX, &c->d_ffn,
                      err)) ||
        (st = cfg_int(j, path, NAMES("num_attention_heads"), CFG_REQUIRED, 1, 4096, &c->n_heads,
                      err)) ||
        (st = cfg_int(j, path, NAMES("num_key_value_heads"), c->n_heads, 1, 4096,
                      &c->n_kv_heads, err)) ||
        (st = cfg_int(j, path, NAMES("num_hidden_layers"), CFG_REQUIRED, 1, 4096, &c->n_layers,
                      err)) ||
        (st = cfg_int(j, path, NAMES("vocab_size"), CFG_REQUIRED, 1, 10000000, &c->vocab, err)) ||
        (st = cfg_int(j, path, NAMES("max_position_embeddings"), CFG_REQUIRED, 1, 1 << 24,
                      &c->max_pos, err)) ||
        (st = cfg_float(j, path, "rms_norm_eps", 1e-6f, &c->ln_eps, err)) ||
        (st = cfg_bool(j, path, "tie_word_embeddings", false, &c->tied_head, err)) ||
        (st = cfg_int(j, path, NAMES("bos_token_id"), -1, -1, 10000000, &c->bos_id, err)) ||
        (st = cfg_int(j, path, NAMES("eos_token_id"), -1, -1, 10000000, &c->eos_id, err)) ||
        (st = cfg_int(j, path, NAMES("pad_token_id"), -1, -1, 10000000, &c->pad_id, err)) ||
        (st = config_parse_rope(c, j, path, err)))
        return st;
    if (c->d_model % c->n_heads != 0 && !cJSON_GetObjectItemCaseSensitive(j, "head_dim"))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: hidden size %d is not a multiple of %d heads "
                          "and no head_dim is given", path, c->d_model, c->n_heads);
    if ((st = cfg_int(j, path, NAMES("head_dim"), c->d_model / c->n_heads, 2, 65536,
                      &c->head_dim, err)))
        return st;
    if (c->head_dim % 2 != 0)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: head_dim %d is odd; rotary embeddings need "
                          "it even", path, c->head_dim);
    if (c->n_heads % c->n_kv_heads != 0)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: %d attention heads are not a multiple of %d "
                          "key/value heads", path, c->n_heads, c->n_kv_heads);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(j, "hidden_act");
    if (act && !cJSON_IsNull(act) && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu")))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: hidden_act must be \"silu\" (SwiGLU)", path);
    bool attn_bias = false, mlp_bias = false;
    if ((st = cfg_bool(j, path, "attention_bias", false, &attn_bias, err)) ||
        (st = cfg_bool(j, path, "mlp_bias", false, &mlp_bias, err)))
        return st;
    if (attn_bias || mlp_bias)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: attention_bias / mlp_bias true are not "
                          "supported", path);
    /* a sliding window only matters beyond its length */
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(j, "sliding_window");
    bool use_sw = !qwen2; /* Qwen2 says use_sliding_window */
    if (qwen2 && (st = cfg_bool(j, path, "use_sliding_window", false, &use_sw, err)))
        return st;
    if (use_sw && sw && cJSON_IsNumber(sw) && sw->valuedouble < c->max_pos)
        c->max_pos = (int32_t)sw->valuedouble; /* within the window attention is full */
    c->qkv_bias = qwen2;
    c->rms_norm = true;
    c->gated_mlp = true;
    c->act = MODEL_ACT_SILU;
    c->d_embed = c->d_model;
    c->pos_offset = 0;
    c->pre_ln = true;
    c->final_ln = true;
    c->ln_affine = true;
    c->bias = false;
    c->add_bos = false; /* tokenizer_config.json or tokenizer.json's post-processor say */
    return HL_OK;
}

hl_status model_config_load(model_config *cfg, const char *dir, hl_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cJSON *j;
    hl_status st = json_read_file(path, 1 << 20, &j, err);
    if (st)
        return st;
    if (!cJSON_IsObject(j)) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: expected a JSON object", path);
        goto done;
    }
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "model_type");
    if (!cJSON_IsString(mt)) {
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: missing \"model_type\" (supported: opt, gpt2, roberta, llama, "
                        "mistral, qwen2)", path);
        goto done;
    }
    if (!strcmp(mt->valuestring, "opt"))
        st = config_parse_opt(cfg, j, path, err);
    else if (!strcmp(mt->valuestring, "gpt2"))
        st = config_parse_gpt2(cfg, j, path, err);
    else if (!strcmp(mt->valuestring, "roberta"))
        st = config_parse_roberta(cfg, j, path, err);
    else if (!strcmp(mt->valuestring, "llama") || !strcmp(mt->valuestring, "mistral") ||
             !strcmp(mt->valuestring, "qwen2"))
        st = config_parse_llama(cfg, j, path, mt->valuestring, err);
    else {
        const char *why = !strcmp(mt->valuestring, "bert")
                              ? " (BERT needs a WordPiece tokenizer, which helene lacks)"
                          : !strcmp(mt->valuestring, "xlm-roberta")
                              ? " (XLM-RoBERTa needs a SentencePiece tokenizer)"
                              : "";
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: model_type \"%.64s\" is not supported%s (supported: opt, gpt2, "
                        "roberta, llama, mistral, qwen2)",
                        path, mt->valuestring, why);
        goto done;
    }
    if (st)
        goto done;
    if (cfg->family != MODEL_FAMILY_LLAMA && cfg->d_model % cfg->n_heads != 0) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: hidden size %d is not a multiple of %d heads",
                        path, cfg->d_model, cfg->n_heads);
        goto done;
    }
    if (cfg->bos_id >= cfg->vocab || cfg->eos_id >= cfg->vocab || cfg->pad_id >= cfg->vocab) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: a special token id is >= vocab_size %d", path,
                        cfg->vocab);
        goto done;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(j, "torch_dtype");
    if (cJSON_IsString(dt))
        snprintf(cfg->torch_dtype, sizeof cfg->torch_dtype, "%s", dt->valuestring);
done:
    cJSON_Delete(j);
    if (st)
        return st;

    /* tokenizer_config.json may say whether BOS is prepended. */
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    if (access(path, F_OK) == 0) {
        cJSON *tj;
        if ((st = json_read_file(path, 1 << 24, &tj, err)))
            return st;
        if (!cJSON_IsObject(tj)) {
            cJSON_Delete(tj);
            return hl_err_set(err, HL_ERR_FORMAT, "%s: not a JSON object", path);
        }
        cfg->add_bos_known = cJSON_GetObjectItemCaseSensitive(tj, "add_bos_token") != NULL;
        st = cfg_bool(tj, path, "add_bos_token", cfg->add_bos, &cfg->add_bos, err);
        cJSON_Delete(tj);
        if (st)
            return st;
    }
    if (cfg->add_bos && cfg->bos_id < 0)
        return hl_err_set(err, HL_ERR_FORMAT, "%s/config.json: BOS is prepended but bos_token_id "
                          "is missing", dir);
    return HL_OK;
}

/* ------------------------------------------------- config.json writers --- */

/* The shortest decimal that reads back as f, as a double: 1e-5f is written
 * "1e-05", as Python writes it, not 9.9999997e-06. */
static double float_as_written(float f)
{
    char b[32];
    for (int p = 1; p < 9; p++) {
        snprintf(b, sizeof b, "%.*g", p, (double)f);
        if ((float)strtod(b, NULL) == f)
            return strtod(b, NULL);
    }
    return (double)f;
}

char *model_config_hf_json(const model_config *c, st_dtype dt)
{
    const char *td = dt == ST_DTYPE_F16 ? "float16" : dt == ST_DTYPE_BF16 ? "bfloat16" : "float32";
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    if (c->family == MODEL_FAMILY_OPT) {
        /* the keys OPTConfig writes (facebook/opt-125m), sorted */
        cJSON_AddStringToObject(j, "_name_or_path", "helene-pretrain");
        cJSON_AddFalseToObject(j, "_remove_final_layer_norm");
        cJSON_AddNumberToObject(j, "activation_dropout", 0.0);
        cJSON_AddStringToObject(j, "activation_function", "relu");
        cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray(
                                                      (const char *const[]){"OPTForCausalLM"}, 1));
        cJSON_AddNumberToObject(j, "attention_dropout", 0.0);
        cJSON_AddNumberToObject(j, "bos_token_id", c->bos_id);
        cJSON_AddBoolToObject(j, "do_layer_norm_before", c->pre_ln);
        cJSON_AddNumberToObject(j, "dropout", 0.0);
        cJSON_AddBoolToObject(j, "enable_bias", c->bias);
        cJSON_AddNumberToObject(j, "eos_token_id", c->eos_id);
        cJSON_AddNumberToObject(j, "ffn_dim", c->d_ffn);
        cJSON_AddNumberToObject(j, "hidden_size", c->d_model);
        cJSON_AddNumberToObject(j, "init_std", 0.02);
        cJSON_AddBoolToObject(j, "layer_norm_elementwise_affine", c->ln_affine);
        cJSON_AddNumberToObject(j, "layerdrop", 0.0);
        cJSON_AddNumberToObject(j, "max_position_embeddings", c->max_pos);
        cJSON_AddStringToObject(j, "model_type", "opt");
        cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
        cJSON_AddNumberToObject(j, "num_hidden_layers", c->n_layers);
        cJSON_AddNumberToObject(j, "pad_token_id", c->pad_id);
        cJSON_AddStringToObject(j, "prefix", "</s>");
        cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_head);
        cJSON_AddStringToObject(j, "torch_dtype", td);
        cJSON_AddStringToObject(j, "transformers_version", "4.36.2");
        cJSON_AddTrueToObject(j, "use_cache");
        cJSON_AddNumberToObject(j, "vocab_size", c->vocab);
        cJSON_AddNumberToObject(j, "word_embed_proj_dim", c->d_embed);
    } else {
        /* the keys GPT2Config writes (gpt2), sorted */
        cJSON_AddStringToObject(j, "activation_function", "gelu_new");
        cJSON_AddItemToObject(j, "architectures", cJSON_CreateStringArray(
                                                      (const char *const[]){"GPT2LMHeadModel"}, 1));
        cJSON_AddNumberToObject(j, "attn_pdrop", 0.0);
        cJSON_AddNumberToObject(j, "bos_token_id", c->bos_id);
        cJSON_AddNumberToObject(j, "embd_pdrop", 0.0);
        cJSON_AddNumberToObject(j, "eos_token_id", c->eos_id);
        cJSON_AddNumberToObject(j, "initializer_range", 0.02);
        cJSON_AddNumberToObject(j, "layer_norm_epsilon", float_as_written(c->ln_eps));
        cJSON_AddStringToObject(j, "model_type", "gpt2");
        cJSON_AddNumberToObject(j, "n_ctx", c->max_pos);
        cJSON_AddNumberToObject(j, "n_embd", c->d_model);
        cJSON_AddNumberToObject(j, "n_head", c->n_heads);
        cJSON_AddNumberToObject(j, "n_inner", c->d_ffn);
        cJSON_AddNumberToObject(j, "n_layer", c->n_layers);
        cJSON_AddNumberToObject(j, "n_positions", c->max_pos);
        cJSON_AddFalseToObject(j, "reorder_and_upcast_attn");
        cJSON_AddNumberToObject(j, "resid_pdrop", 0.0);
        cJSON_AddFalseToObject(j, "scale_attn_by_inverse_layer_idx");
        cJSON_AddTrueToObject(j, "scale_attn_weights");
        cJSON_AddBoolToObject(j, "tie_word_embeddings", c->tied_head);
        cJSON_AddStringToObject(j, "torch_dtype", td);
        cJSON_AddStringToObject(j, "transformers_version", "4.36.2");
        cJSON_AddTrueToObject(j, "use_cache");
        cJSON_AddNumberToObject(j, "vocab_size", c->vocab);
    }
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    return text;
}

char *model_config_hf_tokenizer_json(const model_config *c, const char *eos, const char *pad,
                                     bool special_map)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    if (!special_map) {
        cJSON_AddBoolToObject(j, "add_bos_token", c->add_bos);
        cJSON_AddFalseToObject(j, "add_prefix_space");
    }
    cJSON_AddStringToObject(j, "bos_token", eos);
    cJSON_AddStringToObject(j, "eos_token", eos);
    if (!special_map) {
        cJSON_AddStringToObject(j, "errors", "replace");
        cJSON_AddNumberToObject(j, "model_max_length", c->max_pos);
    }
    if (c->pad_id >= 0)
        cJSON_AddStringToObject(j, "pad_token", pad);
    if (!special_map)
        cJSON_AddStringToObject(j, "tokenizer_class", "GPT2Tokenizer");
    cJSON_AddStringToObject(j, "unk_token", eos);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    return text;
}

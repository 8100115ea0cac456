/* mkmodel.c - write a random-weight model folder of a given shape, for
 * benchmarks that need a real file on disk (load time, peak RSS of
 * `helene score`).  Not a pretrained model: the values are a hash of the
 * index, so every run writes the same bytes.
 * Usage: mkmodel OUT_DIR [opt-125m|opt-350m|opt-1.3b|gpt2-124m|roberta-base|
 *                        roberta-large|smollm2-135m|tiny]
 *                [F16|F32|BF16]
 * Tokenizer files are the bundled GPT-2 vocabulary's (RoBERTa: in its id
 * order, <s> <pad> </s> <unk> first and <mask> last). */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "model.h"
#include "safetensors.h"

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    if (!a || !b) {
        if (a)
            fclose(a);
        if (b)
            fclose(b);
        return -1;
    }
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        fwrite(buf, 1, n, b);
    fclose(a);
    return fclose(b);
}

/* GPT-2's vocab.json re-numbered as RoBERTa's: <s> <pad> </s> <unk> = 0..3,
 * the byte-level tokens from 4 (GPT-2's order), <mask> = vocab - 1. */
static int write_roberta_vocab(const char *from, const char *to, int vocab)
{
    FILE *f = fopen(from, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(text);
        return -1;
    }
    fclose(f);
    text[n] = '\0';
    cJSON *in = cJSON_Parse(text);
    free(text);
    cJSON *out = cJSON_CreateObject();
    static const char *const sp[4] = {"<s>", "<pad>", "</s>", "<unk>"};
    for (int i = 0; i < 4; i++)
        cJSON_AddNumberToObject(out, sp[i], i);
    for (const cJSON *it = in ? in->child : NULL; it; it = it->next)
        if (strcmp(it->string, "<|endoftext|>") != 0)
            cJSON_AddNumberToObject(out, it->string, it->valuedouble + 4);
    cJSON_AddNumberToObject(out, "<mask>", vocab - 1);
    char *j = cJSON_PrintUnformatted(out);
    cJSON_Delete(in);
    cJSON_Delete(out);
    f = j ? fopen(to, "wb") : NULL;
    int rc = f && fputs(j, f) >= 0 ? 0 : -1;
    if (f && fclose(f) != 0)
        rc = -1;
    free(j);
    return rc;
}

/* The bundled GPT-2 vocab.json + merges.txt as one tokenizer.json (model
 * BPE, ByteLevel pre-tokenizer with its regex, as SmolLM's). */
static int write_tokenizer_json(const char *vocab_path, const char *merges_path, const char *to)
{
    FILE *f = fopen(vocab_path, "rb"), *g = fopen(merges_path, "rb");
    char *vt = NULL, *mt = NULL;
    long vn = 0, mn = 0;
    if (f && !fseek(f, 0, SEEK_END) && (vn = ftell(f)) > 0 && !fseek(f, 0, SEEK_SET) &&
        (vt = malloc((size_t)vn + 1)) && fread(vt, 1, (size_t)vn, f) == (size_t)vn)
        vt[vn] = '\0';
    if (g && !fseek(g, 0, SEEK_END) && (mn = ftell(g)) > 0 && !fseek(g, 0, SEEK_SET) &&
        (mt = malloc((size_t)mn + 1)) && fread(mt, 1, (size_t)mn, g) == (size_t)mn)
        mt[mn] = '\0';
    if (f)
        fclose(f);
    if (g)
        fclose(g);
    if (!vt || !mt) {
        free(vt);
        free(mt);
        return -1;
    }
    cJSON *root = cJSON_CreateObject(), *bpe_model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(bpe_model, "type", "BPE");
    cJSON_AddItemToObject(bpe_model, "vocab", cJSON_Parse(vt));
    cJSON *merges = cJSON_AddArrayToObject(bpe_model, "merges");
    char *save = NULL;
    for (char *l = strtok_r(mt, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        if (l[0] != '#' && strchr(l, ' '))
            cJSON_AddItemToArray(merges, cJSON_CreateString(l));
    cJSON_AddNullToObject(root, "normalizer");
    cJSON *pt = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pt, "type", "ByteLevel");
    cJSON_AddBoolToObject(pt, "add_prefix_space", false);
    cJSON_AddBoolToObject(pt, "use_regex", true);
    char *j = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    free(vt);
    free(mt);
    FILE *o = j ? fopen(to, "wb") : NULL;
    int rc = o && fputs(j, o) >= 0 ? 0 : -1;
    if (o && fclose(o) != 0)
        rc = -1;
    free(j);
    return rc;
}

int main(int argc, char **argv)
{
    static const char *const shapes_known[] = {"opt-125m", "opt-350m", "opt-1.3b", "gpt2-124m",
                                               "roberta-base", "roberta-large", "smollm2-135m",
                                               "tiny"};
    const char *usage = "usage: mkmodel OUT_DIR [opt-125m|opt-350m|opt-1.3b|gpt2-124m|"
                        "roberta-base|roberta-large|smollm2-135m|tiny] [F16|F32|BF16]\n";
    if (argc < 2 || argc > 4 || argv[1][0] == '-') {
        fputs(usage, argc >= 2 && !strcmp(argv[1], "--help") ? stdout : stderr);
        return argc >= 2 && !strcmp(argv[1], "--help") ? 0 : 2;
    }
    const char *out = argv[1], *shape = argc > 2 ? argv[2] : "opt-125m";
    const char *dt = argc > 3 ? argv[3] : "F16";
    bool known = false;
    for (size_t i = 0; i < sizeof shapes_known / sizeof shapes_known[0]; i++)
        known = known || !strcmp(shape, shapes_known[i]);
    if (!known || (strcmp(dt, "F16") && strcmp(dt, "F32") && strcmp(dt, "BF16"))) {
        fprintf(stderr, "mkmodel: unknown shape '%s' or dtype '%s'\n%s", shape, dt, usage);
        return 2;
    }
    st_dtype dtype = !strcmp(dt, "F32") ? ST_DTYPE_F32 : !strcmp(dt, "BF16") ? ST_DTYPE_BF16
                                                                             : ST_DTYPE_F16;
    bool rob = !strncmp(shape, "roberta", 7), large = !strcmp(shape, "roberta-large");
    bool llama = !strcmp(shape, "smollm2-135m");
    bool opt = strncmp(shape, "gpt2", 4) != 0 && !rob && !llama;
    bool tiny = !strcmp(shape, "tiny");
    model_config c = {.family = opt ? MODEL_FAMILY_OPT : MODEL_FAMILY_GPT2,
                      .n_layers = tiny ? 2 : 12, .d_model = tiny ? 64 : 768,
                      .n_heads = tiny ? 4 : 12, .d_ffn = tiny ? 256 : 3072,
                      .vocab = opt ? 50272 : 50257, .max_pos = opt ? 2048 : 1024,
                      .d_embed = tiny ? 64 : 768, .pos_offset = opt ? 2 : 0, .pre_ln = true,
                      .final_ln = true, .ln_affine = true, .bias = true, .tied_head = true,
                      .ln_eps = 1e-5f, .act = opt ? MODEL_ACT_RELU : MODEL_ACT_GELU_TANH,
                      .bos_id = opt ? 2 : 50256, .eos_id = opt ? 2 : 50256, .pad_id = 1,
                      .add_bos = opt};
    if (!strcmp(shape, "opt-350m")) { /* post-LN, 512-wide embeddings projected in and out */
        c.n_layers = 24;
        c.d_model = 1024;
        c.n_heads = 16;
        c.d_ffn = 4096;
        c.d_embed = 512;
        c.pre_ln = c.final_ln = false;
    } else if (!strcmp(shape, "opt-1.3b")) { /* the HELENE paper's model */
        c.n_layers = 24;
        c.d_model = c.d_embed = 2048;
        c.n_heads = 32;
        c.d_ffn = 8192;
    }
    if (llama) { /* SmolLM2-135M's shape (GPT-2's vocabulary, not its 49,152) */
        c.family = MODEL_FAMILY_LLAMA;
        snprintf(c.model_type, sizeof c.model_type, "llama");
        c.n_layers = 30;
        c.d_model = c.d_embed = 576;
        c.n_heads = 9;
        c.n_kv_heads = 3;
        c.head_dim = 64;
        c.d_ffn = 1536;
        c.vocab = 50257;
        c.max_pos = 2048;
        c.pos_offset = 0;
        c.rms_norm = c.gated_mlp = true;
        c.bias = false;
        c.act = MODEL_ACT_SILU;
        c.rope_theta = 100000.0;
        c.bos_id = c.eos_id = 50256;
        c.add_bos = false;
    }
    if (rob) { /* RobertaForMaskedLM, roberta-base / roberta-large */
        c.family = MODEL_FAMILY_ROBERTA;
        c.n_layers = large ? 24 : 12;
        c.d_model = c.d_embed = large ? 1024 : 768;
        c.n_heads = large ? 16 : 12;
        c.d_ffn = 4 * c.d_model;
        c.vocab = 50265;
        c.pos_offset = 2;
        c.max_pos = 512;
        c.type_vocab = 1;
        c.bidirectional = true;
        c.pre_ln = c.final_ln = false;
        c.act = MODEL_ACT_GELU_ERF;
        c.bos_id = 0;
        c.add_bos = false;
    }
    model m;
    hl_err err;
    if (model_init_from_config(&m, &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (int i = 0; i < m.params.n_layers; i++) {
        param_layer *l = &m.params.layers[i];
        float *p = param_layer_data(&m.params, i);
        bool norm = l->ndim == 1 && strstr(l->name, "norm") != NULL;
        bool ln_w = norm || (strstr(l->name, "ln_") && strstr(l->name, ".weight"));
        for (size_t k = 0; k < l->size; k++) {
            uint32_t h = (uint32_t)((k + 1) * 2654435761u) ^ (uint32_t)(i * 40503u);
            float u = (float)(h % 2001) / 1000.0f - 1.0f;
            p[k] = ln_w ? 1.0f : 0.04f * u;
        }
    }
    mkdir(out, 0755);
    st_write_tensor *ts = calloc((size_t)m.params.n_layers, sizeof *ts);
    int64_t(*shapes)[2] = calloc((size_t)m.params.n_layers, sizeof *shapes);
    float **tmp = calloc((size_t)m.params.n_layers, sizeof *tmp);
    char(*names)[PARAM_NAME_MAX + 16] = calloc((size_t)m.params.n_layers, sizeof *names);
    for (int i = 0; i < m.params.n_layers; i++) {
        param_layer *l = &m.params.layers[i];
        const float *src = param_layer_data(&m.params, i);
        bool conv = !opt && !rob && !llama && l->ndim == 2 && !strncmp(l->name, "h.", 2);
        shapes[i][0] = conv ? l->shape[1] : l->shape[0];
        shapes[i][1] = conv ? l->shape[0] : l->shape[1];
        if (conv) { /* GPT-2 Conv1D is stored [in, out] */
            tmp[i] = malloc(l->size * sizeof(float));
            for (int64_t r = 0; r < l->shape[0]; r++)
                for (int64_t q = 0; q < l->shape[1]; q++)
                    tmp[i][q * l->shape[0] + r] = src[r * l->shape[1] + q];
            src = tmp[i];
        }
        model_hf_tensor_name(&c, l->name, names[i], sizeof names[i]);
        ts[i] = (st_write_tensor){.name = names[i], .dtype = dtype, .src = ST_SRC_F32,
                                  .ndim = l->ndim, .shape = shapes[i], .data = src};
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    const char *meta[2] = {"format", "pt"};
    if (st_write(path, ts, m.params.n_layers, meta, 1, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    snprintf(path, sizeof path, "%s/config.json", out);
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    if (llama)
        fprintf(f, "{\"model_type\": \"llama\", \"architectures\": [\"LlamaForCausalLM\"], "
                   "\"hidden_size\": %d, \"intermediate_size\": %d, \"num_attention_heads\": %d, "
                   "\"num_key_value_heads\": %d, \"num_hidden_layers\": %d, \"vocab_size\": %d, "
                   "\"max_position_embeddings\": %d, \"rms_norm_eps\": 1e-05, \"rope_theta\": "
                   "100000.0, \"tie_word_embeddings\": true, \"hidden_act\": \"silu\", "
                   "\"bos_token_id\": 50256, \"eos_token_id\": 50256}\n",
                c.d_model, c.d_ffn, c.n_heads, c.n_kv_heads, c.n_layers, c.vocab, c.max_pos);
    else if (rob)
        fprintf(f, "{\"model_type\": \"roberta\", \"architectures\": [\"RobertaForMaskedLM\"], "
                   "\"hidden_size\": %d, \"intermediate_size\": %d, \"num_attention_heads\": %d, "
                   "\"num_hidden_layers\": %d, \"vocab_size\": %d, \"max_position_embeddings\": "
                   "%d, \"type_vocab_size\": 1, \"layer_norm_eps\": 1e-05, \"hidden_act\": "
                   "\"gelu\", \"bos_token_id\": 0, \"eos_token_id\": 2, \"pad_token_id\": 1}\n",
                c.d_model, c.d_ffn, c.n_heads, c.n_layers, c.vocab, c.max_pos + c.pos_offset);
    else if (opt)
        fprintf(f, "{\"model_type\": \"opt\", \"hidden_size\": %d, \"ffn_dim\": %d, "
                   "\"num_attention_heads\": %d, \"num_hidden_layers\": %d, \"vocab_size\": %d, "
                   "\"max_position_embeddings\": %d, \"word_embed_proj_dim\": %d, "
                   "\"do_layer_norm_before\": %s, \"activation_function\": \"relu\", "
                   "\"bos_token_id\": 2, \"eos_token_id\": 2, \"pad_token_id\": 1, "
                   "\"torch_dtype\": \"%s\"}\n",
                c.d_model, c.d_ffn, c.n_heads, c.n_layers, c.vocab, c.max_pos, c.d_embed,
                c.pre_ln ? "true" : "false", dtype == ST_DTYPE_F32 ? "float32" : dtype == ST_DTYPE_F16 ? "float16"
                                                                          : "bfloat16");
    else
        fprintf(f, "{\"model_type\": \"gpt2\", \"n_embd\": %d, \"n_head\": %d, \"n_layer\": %d, "
                   "\"vocab_size\": %d, \"n_positions\": %d, \"n_inner\": %d}\n",
                c.d_model, c.n_heads, c.n_layers, c.vocab, c.max_pos, c.d_ffn);
    fclose(f);
    char from[4096];
    snprintf(from, sizeof from, "%s/gpt2/vocab.json", HELENE_SRCDATADIR);
    int rc;
    if (llama) { /* Llama folders carry tokenizer.json only */
        char merges_from[4096];
        snprintf(merges_from, sizeof merges_from, "%s/gpt2/merges.txt", HELENE_SRCDATADIR);
        snprintf(path, sizeof path, "%s/tokenizer.json", out);
        rc = write_tokenizer_json(from, merges_from, path);
    } else {
        snprintf(path, sizeof path, "%s/vocab.json", out);
        rc = rob ? write_roberta_vocab(from, path, c.vocab) : copy_file(from, path);
        snprintf(from, sizeof from, "%s/gpt2/merges.txt", HELENE_SRCDATADIR);
        snprintf(path, sizeof path, "%s/merges.txt", out);
        rc |= copy_file(from, path);
    }
    for (int i = 0; i < m.params.n_layers; i++)
        free(tmp[i]);
    free(tmp);
    free(shapes);
    free(names);
    free(ts);
    printf("%s: %s %s, %zu parameters\n", out, shape, dt, param_set_count(&m.params));
    model_free(&m);
    return rc ? 1 : 0;
}

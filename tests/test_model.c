/* test_model.c - OPT / GPT-2 loading and forward pass.
 *
 * The oracle is tests/ref/reference.py (hand-written PyTorch models, float64)
 * whose outputs are committed under tests/fixtures/models/: every fixture
 * folder is loaded and its logits compared at every real position, and the
 * score text's NLL compared to the reference's.  Properties that need no
 * oracle (thread-count independence, packing invariance, causality) run on
 * random-weight models.  Malformed config.json and mismatched tensors must
 * give errors that name the file and the tensor.
 */
#include <cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lm.h"
#include "model.h"
#include "safetensors.h"
#include "testutil.h"

#define FIXDIR HELENE_TESTDIR "/fixtures/models"

/* ----------------------------------------------------------- helpers --- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((rng_state >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void randomise(model *m)
{
    for (int i = 0; i < m->params.n_layers; i++) {
        const param_layer *l = &m->params.layers[i];
        float *p = param_layer_data(&m->params, i);
        bool norm_weight = strstr(l->name, "norm.weight") || strstr(l->name, "ln_");
        for (size_t k = 0; k < l->size; k++)
            p[k] = (norm_weight && l->ndim == 1 && strstr(l->name, ".weight"))
                       ? 1.0f + 0.1f * frand()
                       : 0.3f * frand();
    }
}

static model_config tiny_config(model_family fam)
{
    model_config c;
    memset(&c, 0, sizeof c);
    c.family = fam;
    c.n_layers = 2;
    c.d_model = 32;
    c.n_heads = 4;
    c.d_ffn = 64;
    c.vocab = 97;
    c.max_pos = 40;
    c.d_embed = 32;
    c.pre_ln = true;
    c.final_ln = true;
    c.ln_affine = true;
    c.bias = true;
    c.tied_head = true;
    c.ln_eps = 1e-5f;
    c.bos_id = c.eos_id = 2;
    c.pad_id = 1;
    if (fam == MODEL_FAMILY_OPT) {
        c.pos_offset = 2;
        c.act = MODEL_ACT_RELU;
        c.add_bos = true;
    } else {
        c.act = MODEL_ACT_GELU_TANH;
    }
    return c;
}

static bool write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return false;
    fputs(text, f);
    return fclose(f) == 0;
}

/* -------------------------------------------------- fixture comparison --- */

static int64_t read_i64(const st_tensor *t, size_t i)
{
    int64_t v;
    memcpy(&v, (const char *)t->data + i * 8, 8);
    return v;
}

static void check_fixture(const char *name)
{
    char dir[1024], exp_path[1100], score_path[1100];
    if (snprintf(dir, sizeof dir, "%s/%.200s", FIXDIR, name) >= (int)sizeof dir) {
        CU_FAIL("fixture path too long");
        return;
    }
    snprintf(exp_path, sizeof exp_path, "%.1023s/expected.safetensors", dir);
    snprintf(score_path, sizeof score_path, "%.1023s/score.json", dir);
    fprintf(stderr, "\n  fixture %s", name);

    for (int threads = 1; threads <= 2; threads++) {
        lm l;
        hl_err err;
        hl_err_clear(&err);
        if (lm_open(&l, dir, threads, &err) != HL_OK) {
            fprintf(stderr, "\n  %s: %s\n", name, err.msg);
            CU_FAIL("fixture model does not load");
            return;
        }
        st_file ex;
        CU_ASSERT_EQUAL_FATAL(st_file_open(&ex, exp_path, &err), HL_OK);
        const st_tensor *ids = st_file_find(&ex, "input_ids");
        const st_tensor *mask = st_file_find(&ex, "attention_mask");
        const st_tensor *logits = st_file_find(&ex, "logits");
        CU_ASSERT_FATAL(ids && mask && logits && ids->ndim == 2 && logits->ndim == 3);
        const int B = (int)ids->shape[0], T = (int)ids->shape[1];
        const int V = (int)logits->shape[2];
        CU_ASSERT_EQUAL_FATAL(V, l.model.cfg.vocab);
        int32_t *tokens = malloc((size_t)B * T * sizeof *tokens);
        int32_t starts[64];
        CU_ASSERT_FATAL(B < 64);
        starts[0] = 0;
        for (int b = 0; b < B; b++) {
            int len = 0;
            for (int t = 0; t < T; t++)
                if (read_i64(mask, (size_t)b * T + t))
                    tokens[starts[b] + len++] = (int32_t)read_i64(ids, (size_t)b * T + t);
            starts[b + 1] = starts[b] + len;
        }
        model_batch batch = {.tokens = tokens, .seq_start = starts, .n_seq = B};
        CU_ASSERT_EQUAL_FATAL(model_forward(&l.model, &batch, &err), HL_OK);
        size_t N = (size_t)starts[B];
        float *got = malloc(N * V * sizeof *got), *want = malloc(N * V * sizeof *want);
        float *all = malloc((size_t)B * T * V * sizeof *all);
        CU_ASSERT_EQUAL_FATAL(st_tensor_to_f32(logits, all, &err), HL_OK);
        model_logits_rows(&l.model, got, NULL, N);
        for (int b = 0; b < B; b++)
            memcpy(want + (size_t)starts[b] * V, all + (size_t)b * T * V,
                   (size_t)(starts[b + 1] - starts[b]) * V * sizeof(float));
        /* 2e-5 of the largest logit: fp32 lands within ~1e-6, and this still
         * catches the smallest plausible mistake (erf- for tanh-GELU, 2e-4) */
        float scale = 0;
        for (size_t i = 0; i < N * (size_t)V; i++)
            scale = fabsf(want[i]) > scale ? fabsf(want[i]) : scale;
        CU_ASSERT_EQUAL(test_close_floats(name, got, want, N * V, 0.0, 2e-5 * scale), 0);

        /* selected logits agree with the full head */
        int32_t rows[3] = {0, (int32_t)N / 2, (int32_t)N - 1}, sel[3] = {0, 5, V - 1};
        float sl[9];
        model_logits_select(&l.model, sl, rows, 3, sel, 3);
        for (int r = 0; r < 3; r++)
            for (int j = 0; j < 3; j++)
                CU_ASSERT_DOUBLE_EQUAL(sl[r * 3 + j], got[(size_t)rows[r] * V + sel[j]],
                                       1e-5 * (1 + scale));

        /* score the text as `helene score` does */
        FILE *sf = fopen(score_path, "rb");
        CU_ASSERT_PTR_NOT_NULL_FATAL(sf);
        char sbuf[1 << 16];
        size_t sn = fread(sbuf, 1, sizeof sbuf - 1, sf);
        fclose(sf);
        sbuf[sn] = 0;
        cJSON *sj = cJSON_Parse(sbuf);
        CU_ASSERT_PTR_NOT_NULL_FATAL(sj);
        const cJSON *text = cJSON_GetObjectItem(sj, "text");
        const cJSON *nll = cJSON_GetObjectItem(sj, "mean_nll");
        const cJSON *ntok = cJSON_GetObjectItem(sj, "n_predicted");
        const cJSON *tids = cJSON_GetObjectItem(sj, "input_ids"); /* with BOS if any */
        CU_ASSERT_FATAL(cJSON_IsString(text) && cJSON_IsNumber(nll) && cJSON_IsNumber(ntok));
        int32_t *enc = NULL;
        size_t nenc = 0;
        CU_ASSERT_EQUAL(lm_encode(&l, text->valuestring, strlen(text->valuestring), &enc, &nenc,
                                  &err),
                        HL_OK);
        if (cJSON_IsArray(tids)) {
            CU_ASSERT_EQUAL((int)nenc, cJSON_GetArraySize(tids));
            for (int i = 0; i < cJSON_GetArraySize(tids) && i < (int)nenc; i++)
                if (enc[i] != (int32_t)cJSON_GetArrayItem(tids, i)->valuedouble) {
                    fprintf(stderr, "\n  token %d: got %d want %d", i, enc[i],
                            (int)cJSON_GetArrayItem(tids, i)->valuedouble);
                    CU_FAIL("tokenization differs from the reference");
                    break;
                }
        }
        free(enc);
        double got_nll = 0;
        size_t got_n = 0;
        CU_ASSERT_EQUAL(lm_score_text(&l, &got_nll, &got_n, text->valuestring,
                                      strlen(text->valuestring), &err),
                        HL_OK);
        CU_ASSERT_EQUAL(got_n, (size_t)ntok->valuedouble);
        if (fabs(got_nll - nll->valuedouble) > 1e-4 * fabs(nll->valuedouble))
            fprintf(stderr, "\n  nll: got %.8f want %.8f", got_nll, nll->valuedouble);
        CU_ASSERT(fabs(got_nll - nll->valuedouble) <= 1e-4 * fabs(nll->valuedouble));
        cJSON_Delete(sj);
        free(tokens);
        free(got);
        free(want);
        free(all);
        st_file_close(&ex);
        lm_close(&l);
    }
}

static void test_fixtures_match_reference(void)
{
    DIR *d = opendir(FIXDIR);
    CU_ASSERT_PTR_NOT_NULL_FATAL(d);
    int n = 0;
    struct dirent *e;
    char names[64][256];
    while ((e = readdir(d)) && n < 64) {
        if (e->d_name[0] == '.')
            continue;
        char p[1400];
        snprintf(p, sizeof p, "%s/%.200s/expected.safetensors", FIXDIR, e->d_name);
        if (access(p, F_OK) == 0)
            snprintf(names[n++], sizeof names[0], "%.200s", e->d_name);
    }
    closedir(d);
    /* at least OPT pre-LN, OPT post-LN and GPT-2, each in F32/F16/BF16 */
    CU_ASSERT(n >= 9);
    for (int i = 0; i < n; i++)
        check_fixture(names[i]);
}

/* ------------------------------------------------ properties (no oracle) --- */

static float *run_hidden(model *m, const int32_t *tok, const int32_t *starts, int B)
{
    model_batch b = {.tokens = tok, .seq_start = starts, .n_seq = B};
    hl_err err;
    if (model_forward(m, &b, &err) != HL_OK) {
        fprintf(stderr, "forward: %s\n", err.msg);
        return NULL;
    }
    size_t n = (size_t)starts[B] * (size_t)m->cfg.d_embed;
    float *out = malloc(n * sizeof *out);
    memcpy(out, m->acts.hidden, n * sizeof *out);
    return out;
}

static void test_thread_count_does_not_change_bits(void)
{
    /* 600 tokens: more than one fixed sgemm chunk, so the split matters */
    enum { NSEQ = 20, LEN = 30, NTOK = NSEQ * LEN };
    for (int variant = 0; variant < 4; variant++) {
        int fam = variant % 2;
        model_config c = tiny_config((model_family)fam);
        model m;
        hl_err err;
        CU_ASSERT_EQUAL_FATAL(model_init_from_config(&m, &c, &err), HL_OK);
        randomise(&m);
        if (variant >= 2)
            m.attn_sgemm_min_T = 16; /* the sgemm attention path, from pool threads */
        static int32_t tok[NTOK];
        int32_t starts[NSEQ + 1];
        for (int i = 0; i < NTOK; i++)
            tok[i] = (i * 7 + 3) % c.vocab;
        for (int b = 0; b <= NSEQ; b++)
            starts[b] = b * LEN - (b > 0 && b < NSEQ ? b % 3 : 0);
        float *ref = NULL, *ref_logits = NULL;
        for (int threads = 1; threads <= 4; threads++) {
            pool p;
            CU_ASSERT_EQUAL_FATAL(pool_init(&p, threads, &err), HL_OK);
            model_set_pool(&m, &p);
            float *h = run_hidden(&m, tok, starts, NSEQ);
            CU_ASSERT_PTR_NOT_NULL_FATAL(h);
            float *lg = malloc((size_t)NTOK * c.vocab * sizeof *lg);
            model_logits_rows(&m, lg, NULL, NTOK);
            if (!ref) {
                ref = h;
                ref_logits = lg;
            } else {
                CU_ASSERT_EQUAL(memcmp(ref, h, (size_t)NTOK * c.d_embed * sizeof(float)), 0);
                CU_ASSERT_EQUAL(memcmp(ref_logits, lg, (size_t)NTOK * c.vocab * sizeof(float)),
                                0);
                free(h);
                free(lg);
            }
            model_set_pool(&m, NULL);
            pool_free(&p);
        }
        free(ref);
        free(ref_logits);
        model_free(&m);
    }
}

static void test_packing_and_causality(void)
{
    for (int fam = 0; fam < 2; fam++) {
        model_config c = tiny_config((model_family)fam);
        if (fam == 0) { /* exercise the opt-350m shape too */
            c.pre_ln = false;
            c.final_ln = false;
            c.d_embed = 16;
        }
        model m;
        hl_err err;
        CU_ASSERT_EQUAL_FATAL(model_init_from_config(&m, &c, &err), HL_OK);
        randomise(&m);
        int32_t tok[30];
        for (int i = 0; i < 30; i++)
            tok[i] = (i * 11 + 5) % c.vocab;
        int32_t s_alone[2] = {0, 12}, s_batch[4] = {0, 12, 25, 30};
        float *alone = run_hidden(&m, tok, s_alone, 1);
        float *batch = run_hidden(&m, tok, s_batch, 3);
        CU_ASSERT_EQUAL(test_close_floats("packed", batch, alone, 12 * (size_t)c.d_embed, 1e-5,
                                          1e-5),
                        0);
        int32_t s_prefix[2] = {0, 5};
        float *prefix = run_hidden(&m, tok, s_prefix, 1);
        CU_ASSERT_EQUAL(test_close_floats("prefix", prefix, alone, 5 * (size_t)c.d_embed, 1e-5,
                                          1e-5),
                        0);
        /* a second sequence must not see the first: same tokens, same output */
        int32_t tok2[24];
        memcpy(tok2, tok, 12 * sizeof *tok);
        memcpy(tok2 + 12, tok, 12 * sizeof *tok);
        int32_t s2[3] = {0, 12, 24};
        float *two = run_hidden(&m, tok2, s2, 2);
        CU_ASSERT_EQUAL(test_close_floats("second", two + 12 * c.d_embed, alone,
                                          12 * (size_t)c.d_embed, 1e-5, 1e-5),
                        0);
        free(alone);
        free(batch);
        free(prefix);
        free(two);
        model_free(&m);
    }
}

/* Long sequences take the sgemm attention path, short ones the loops: both
 * must give the same result (within rounding) on the same batch. */
static void test_attention_paths_agree(void)
{
    model_config c = tiny_config(MODEL_FAMILY_OPT);
    c.max_pos = 200;
    model m;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(model_init_from_config(&m, &c, &err), HL_OK);
    randomise(&m);
    enum { NTOK = 330 };
    static int32_t tok[NTOK];
    for (int i = 0; i < NTOK; i++)
        tok[i] = (i * 13 + 7) % c.vocab;
    int32_t starts[4] = {0, 200, 260, NTOK}; /* 200, 60 and 70 tokens */
    m.attn_sgemm_min_T = 1 << 30;            /* loops everywhere */
    float *loops = run_hidden(&m, tok, starts, 3);
    m.attn_sgemm_min_T = 1;                  /* sgemm everywhere */
    float *gemm = run_hidden(&m, tok, starts, 3);
    CU_ASSERT_PTR_NOT_NULL_FATAL(loops);
    CU_ASSERT_PTR_NOT_NULL_FATAL(gemm);
    CU_ASSERT_EQUAL(test_close_floats("attention", gemm, loops, (size_t)NTOK * c.d_embed, 1e-4,
                                      1e-5),
                    0);
    free(loops);
    free(gemm);
    model_free(&m);
}

/* ---------------------------------------------------------------- PEFT --- */

static void test_peft_spec_parsing(void)
{
    static const struct {
        const char *in, *canon;
    } ok[] = {
        {"", "none"},
        {"none", "none"},
        {"lora", "lora:r=8,alpha=16,targets=q+v"},
        {"lora:r=4", "lora:r=4,alpha=16,targets=q+v"},
        {"lora:alpha=8,targets=v+q+fc2,rank=2", "lora:r=2,alpha=8,targets=q+v+fc2"},
        {"lora:r=16,alpha=0.5,targets=o+fc1", "lora:r=16,alpha=0.5,targets=o+fc1"},
        {"prefix", "prefix:tokens=5"},
        {"prefix:tokens=12", "prefix:tokens=12"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        peft_spec a, b;
        hl_err err;
        char t[PEFT_SPEC_MAX];
        CU_ASSERT_EQUAL_FATAL(peft_parse(&a, ok[i].in, &err), HL_OK);
        peft_format(&a, t, sizeof t);
        CU_ASSERT_STRING_EQUAL(t, ok[i].canon);
        CU_ASSERT_EQUAL_FATAL(peft_parse(&b, t, &err), HL_OK); /* round trip */
        CU_ASSERT(!memcmp(&a, &b, sizeof a));
    }
    static const struct {
        const char *in, *needle;
    } bad[] = {
        {"lorax", "expected none"},      {"lora:r=0", "r=0"},
        {"lora:r=2.5", "integer"},       {"lora:r", "KEY=VALUE"},
        {"lora:alpha=-1", "alpha"},      {"lora:targets=q+x", "unknown target"},
        {"lora:targets=", "targets"},    {"lora:tokens=3", "unknown key"},
        {"prefix:tokens=0", "tokens"},   {"prefix:r=2", "unknown key"},
        {"prefix:tokens=1e9", "tokens"}, {"lora:r=8,", "KEY=VALUE"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        peft_spec a;
        hl_err err;
        hl_err_clear(&err);
        CU_ASSERT_NOT_EQUAL(peft_parse(&a, bad[i].in, &err), HL_OK);
        if (!strstr(err.msg, bad[i].needle))
            fprintf(stderr, "\n  peft '%s': '%s' lacks '%s'", bad[i].in, err.msg,
                    bad[i].needle);
        CU_ASSERT(strstr(err.msg, bad[i].needle) != NULL);
    }
}

/* LoRA starts as the base (B = 0) bit for bit; with random A and B the
 * adapted model equals the merged one (W + alpha/r B·A), for every family
 * and every site. */
static void test_lora_forward_equals_merged(void)
{
    for (int fam = 0; fam < 4; fam++) {
        model_config c = tiny_config((model_family)fam);
        if (fam == MODEL_FAMILY_ROBERTA) {
            c.pre_ln = c.final_ln = false;
            c.bidirectional = true;
            c.type_vocab = 1;
            c.pos_offset = 2;
            c.act = MODEL_ACT_GELU_ERF;
        }
        if (fam == MODEL_FAMILY_LLAMA) { /* GQA 4 -> 2, head_dim 12 != C/NH */
            c.n_kv_heads = 2;
            c.head_dim = 12;
            c.rms_norm = c.gated_mlp = c.qkv_bias = true;
            c.bias = false;
            c.act = MODEL_ACT_SILU;
            c.rope_theta = 10000.0;
            c.pos_offset = 0;
        }
        model m;
        hl_err err;
        CU_ASSERT_EQUAL_FATAL(model_init_from_config(&m, &c, &err), HL_OK);
        randomise(&m);
        int32_t tok[30];
        for (int i = 0; i < 30; i++)
            tok[i] = (i * 7 + 3) % c.vocab;
        int32_t st[3] = {0, 17, 30};
        float *base = run_hidden(&m, tok, st, 2);
        peft_spec ps;
        CU_ASSERT_EQUAL_FATAL(peft_parse(&ps, "lora:r=3,alpha=6,targets=q+k+v+o+fc1+fc2", &err),
                              HL_OK);
        CU_ASSERT_EQUAL_FATAL(model_peft_attach(&m, &ps, 99, &err), HL_OK);
        CU_ASSERT_EQUAL(m.peft_params.n_layers, 2 * 6 * c.n_layers);
        CU_ASSERT_PTR_EQUAL(model_trainable(&m), &m.peft_params);
        float *start = run_hidden(&m, tok, st, 2);
        CU_ASSERT(!memcmp(start, base, 30 * (size_t)c.d_embed * sizeof *base));
        /* random B too; every adapter layer belongs to its block's stage */
        for (int l = 0; l < m.peft_params.n_layers; l++) {
            float *d = param_layer_data(&m.peft_params, l);
            for (size_t k = 0; k < m.peft_params.layers[l].size; k++)
                d[k] = 0.2f * frand();
            CU_ASSERT_EQUAL(model_layer_stage(&m, l), m.peft_params.layers[l].block + 1);
        }
        float *adapted = run_hidden(&m, tok, st, 2);
        CU_ASSERT(memcmp(adapted, base, 30 * (size_t)c.d_embed * sizeof *base) != 0);
        CU_ASSERT_EQUAL_FATAL(model_peft_merge(&m, &err), HL_OK);
        CU_ASSERT_EQUAL(m.peft.kind, PEFT_NONE);
        CU_ASSERT_PTR_EQUAL(model_trainable(&m), &m.params);
        float *merged = run_hidden(&m, tok, st, 2);
        CU_ASSERT_EQUAL(test_close_floats("lora merged", merged, adapted,
                                          30 * (size_t)c.d_embed, 1e-4, 1e-4),
                        0);
        free(base), free(start), free(adapted), free(merged);
        model_free(&m);
    }
}

/* A prefix of P key/value rows is what the sequence's queries would see if
 * P tokens with those keys and values came first: attention with a prefix
 * equals the rows after P of attention over the longer sequence (causal and
 * bidirectional, loops and sgemm paths). */
static void test_prefix_attention_equals_longer_sequence(void)
{
    enum { C = 24, NH = 3, P = 4, T1 = 9, T2 = 60 };
    const int T[2] = {T1, T2};
    for (int bidir = 0; bidir < 2; bidir++)
        for (int path = 0; path < 2; path++)
            for (int which = 0; which < 2; which++) {
                const int n = T[which], L = P + n;
                float *qkv = malloc((size_t)L * 3 * C * sizeof *qkv);
                float *full = malloc((size_t)L * C * sizeof *full);
                float *pre = malloc((size_t)n * C * sizeof *pre);
                float *pk = malloc((size_t)P * C * sizeof *pk), *pv = malloc((size_t)P * C * sizeof *pv);
                float *scratch = malloc(kern_attention_scratch_ex(L, C / NH, P) * sizeof(float));
                for (int i = 0; i < L * 3 * C; i++)
                    qkv[i] = frand();
                for (int p = 0; p < P; p++) {
                    memcpy(pk + p * C, qkv + (size_t)p * 3 * C + C, C * sizeof *pk);
                    memcpy(pv + p * C, qkv + (size_t)p * 3 * C + 2 * C, C * sizeof *pv);
                }
                int32_t s_full[2] = {0, L}, s_pre[2] = {0, n};
                int min_T = path ? 1 : 1 << 30;
                kern_attn_ext plain = {.bidirectional = bidir};
                kern_attn_ext with = {.bidirectional = bidir, .prefix_k = pk, .prefix_v = pv,
                                      .n_prefix = P};
                kern_par_attention_ex(NULL, full, qkv, s_full, 1, C, NH, 0.3f, scratch, L, min_T,
                                      &plain);
                kern_par_attention_ex(NULL, pre, qkv + (size_t)P * 3 * C, s_pre, 1, C, NH, 0.3f,
                                      scratch, n, min_T, &with);
                char what[64];
                snprintf(what, sizeof what, "prefix %s %s T=%d", bidir ? "bidir" : "causal",
                         path ? "sgemm" : "loops", n);
                CU_ASSERT_EQUAL(test_close_floats(what, pre, full + (size_t)P * C,
                                                  (size_t)n * C, 1e-5, 1e-5),
                                0);
                free(qkv), free(full), free(pre), free(pk), free(pv), free(scratch);
            }
}

static void test_forward_rejects_bad_batches(void)
{
    model_config c = tiny_config(MODEL_FAMILY_GPT2);
    model m;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(model_init_from_config(&m, &c, &err), HL_OK);
    int32_t tok[50] = {0};
    int32_t too_long[2] = {0, 41};
    model_batch b = {.tokens = tok, .seq_start = too_long, .n_seq = 1};
    CU_ASSERT_EQUAL(model_forward(&m, &b, &err), HL_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "at most 40") != NULL);
    tok[3] = 97;
    int32_t ok[2] = {0, 5};
    b.seq_start = ok;
    CU_ASSERT_EQUAL(model_forward(&m, &b, &err), HL_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "vocabulary") != NULL);
    tok[3] = -1;
    CU_ASSERT_EQUAL(model_forward(&m, &b, &err), HL_ERR_INVALID);
    int32_t neg[3] = {0, 5, 3};
    tok[3] = 0;
    b.seq_start = neg;
    b.n_seq = 2;
    CU_ASSERT_EQUAL(model_forward(&m, &b, &err), HL_ERR_INVALID);
    /* empty batch is fine */
    int32_t empty[1] = {0};
    b.seq_start = empty;
    b.n_seq = 0;
    CU_ASSERT_EQUAL(model_forward(&m, &b, &err), HL_OK);
    model_free(&m);
}

/* ------------------------------------------------- malformed inputs --- */

static char tmpdir[256];

static int make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/helene-test-model-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int remove_tmpdir(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static hl_status load_config_text(const char *text, hl_err *err)
{
    char p[400];
    snprintf(p, sizeof p, "%s/config.json", tmpdir);
    write_file(p, text);
    model_config c;
    return model_config_load(&c, tmpdir, err);
}

static void test_config_errors(void)
{
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"[1,2]", "JSON object"},
        {"{not json", "not valid JSON"},
        {"", "not valid JSON"},
        {"{\"model_type\": \"gpt2\", \"n_embd\": 32, \"n_embd\": 64}", "\"n_embd\" appears twice"},
        {"{\"model_type\": \"gpt\\u00002\"}", "NUL character"},
        {"{\"model_type\": \"bert\"}", "supported: opt, gpt2"},
        {"{\"model_type\": 7}", "model_type"},
        {"{\"model_type\": \"gpt2\", \"n_head\": 2, \"n_layer\": 1, \"vocab_size\": 10, "
         "\"n_positions\": 8}",
         "\"n_embd\""},
        {"{\"model_type\": \"gpt2\", \"n_embd\": \"32\", \"n_head\": 2, \"n_layer\": 1, "
         "\"vocab_size\": 10, \"n_positions\": 8}",
         "\"n_embd\" must be an integer"},
        {"{\"model_type\": \"gpt2\", \"n_embd\": 32.5, \"n_head\": 2, \"n_layer\": 1, "
         "\"vocab_size\": 10, \"n_positions\": 8}",
         "integer"},
        {"{\"model_type\": \"gpt2\", \"n_embd\": 1e30, \"n_head\": 2, \"n_layer\": 1, "
         "\"vocab_size\": 10, \"n_positions\": 8}",
         "integer"},
        {"{\"model_type\": \"gpt2\", \"n_embd\": 30, \"n_head\": 4, \"n_layer\": 1, "
         "\"vocab_size\": 10, \"n_positions\": 8}",
         "multiple of 4 heads"},
        {"{\"model_type\": \"opt\", \"hidden_size\": 32, \"ffn_dim\": 64, "
         "\"num_attention_heads\": 4, \"num_hidden_layers\": 1, \"vocab_size\": 10, "
         "\"max_position_embeddings\": 8, \"activation_function\": \"swish\"}",
         "activation_function"},
        {"{\"model_type\": \"opt\", \"hidden_size\": 32, \"ffn_dim\": 64, "
         "\"num_attention_heads\": 4, \"num_hidden_layers\": 1, \"vocab_size\": 10, "
         "\"max_position_embeddings\": 8, \"do_layer_norm_before\": \"yes\"}",
         "true or false"},
        {"{\"model_type\": \"opt\", \"hidden_size\": 32, \"ffn_dim\": 64, "
         "\"num_attention_heads\": 4, \"num_hidden_layers\": 1, \"vocab_size\": 10, "
         "\"max_position_embeddings\": 8, \"pad_token_id\": 10}",
         ">= vocab_size"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hl_err err;
        hl_err_clear(&err);
        hl_status st = load_config_text(cases[i].json, &err);
        CU_ASSERT_NOT_EQUAL(st, HL_OK);
        if (!strstr(err.msg, cases[i].needle) || !strstr(err.msg, "config.json")) {
            fprintf(stderr, "\n  case %zu: message '%s' lacks '%s'", i, err.msg,
                    cases[i].needle);
            CU_FAIL("error message");
        }
    }
    /* old OPT name d_model is accepted */
    hl_err err;
    CU_ASSERT_EQUAL(load_config_text("{\"model_type\": \"opt\", \"d_model\": 32, \"ffn_dim\": 64, "
                                     "\"num_attention_heads\": 4, \"num_hidden_layers\": 1, "
                                     "\"vocab_size\": 10, \"max_position_embeddings\": 8}",
                                     &err),
                    HL_OK);
    /* no config at all */
    char p[400];
    snprintf(p, sizeof p, "%s/config.json", tmpdir);
    unlink(p);
    model_config c;
    CU_ASSERT_EQUAL(model_config_load(&c, tmpdir, &err), HL_ERR_IO);
    CU_ASSERT(strstr(err.msg, "config.json") != NULL);
}

/* Write a tiny GPT-2 folder whose tensors come from a random model, with
 * one tensor optionally dropped or reshaped. */
static hl_status write_gpt2_folder(const char *drop, const char *reshape, hl_err *err)
{
    char p[400];
    snprintf(p, sizeof p, "%s/config.json", tmpdir);
    write_file(p, "{\"model_type\": \"gpt2\", \"n_embd\": 32, \"n_head\": 4, \"n_layer\": 2, "
                  "\"vocab_size\": 97, \"n_positions\": 40, \"n_inner\": 64}");
    model_config c = tiny_config(MODEL_FAMILY_GPT2);
    model m;
    hl_status st = model_init_from_config(&m, &c, err);
    if (st)
        return st;
    randomise(&m);
    st_write_tensor *ts = calloc((size_t)m.params.n_layers, sizeof *ts);
    int64_t(*shapes)[2] = calloc((size_t)m.params.n_layers, sizeof *shapes);
    float **bufs = calloc((size_t)m.params.n_layers, sizeof *bufs);
    int n = 0;
    for (int i = 0; i < m.params.n_layers; i++) {
        const param_layer *l = &m.params.layers[i];
        if (drop && !strcmp(l->name, drop))
            continue;
        bool conv = l->ndim == 2 && strstr(l->name, "h.") == l->name;
        shapes[n][0] = conv ? l->shape[1] : l->shape[0];
        shapes[n][1] = conv ? l->shape[0] : l->shape[1];
        if (reshape && !strcmp(l->name, reshape))
            shapes[n][0] += 1;
        size_t cnt = (size_t)shapes[n][0] * (size_t)(l->ndim == 2 ? shapes[n][1] : 1);
        bufs[n] = calloc(cnt, sizeof(float));
        memcpy(bufs[n], param_layer_data(&m.params, i),
               (cnt < l->size ? cnt : l->size) * sizeof(float));
        ts[n] = (st_write_tensor){.name = l->name, .dtype = ST_DTYPE_F32, .src = ST_SRC_F32,
                                  .ndim = l->ndim, .shape = shapes[n], .data = bufs[n]};
        n++;
    }
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
    st = st_write(p, ts, n, NULL, 0, err);
    for (int i = 0; i < n; i++)
        free(bufs[i]);
    free(bufs);
    free(shapes);
    free(ts);
    model_free(&m);
    return st;
}

/* config.json and tokenizer_config.json as helene pretrain writes them read
 * back to the config they were written from (OPT pre- and post-LN, GPT-2). */
static void test_config_writer_round_trips(void)
{
    static const char *const fixtures[] = {"opt-tiny-f32", "opt350-tiny-f16", "gpt2-tiny-f32"};
    for (size_t f = 0; f < sizeof fixtures / sizeof fixtures[0]; f++) {
        char dir[400], p[500];
        snprintf(dir, sizeof dir, "%s/%s", FIXDIR, fixtures[f]);
        hl_err err;
        model_config a, b;
        CU_ASSERT_EQUAL_FATAL(model_config_load(&a, dir, &err), HL_OK);
        a.add_bos = a.family == MODEL_FAMILY_OPT;
        char *cfg = model_config_hf_json(&a, ST_DTYPE_F16);
        char *tcfg = model_config_hf_tokenizer_json(&a, "</s>", "<pad>", false);
        CU_ASSERT_PTR_NOT_NULL_FATAL(cfg);
        CU_ASSERT_PTR_NOT_NULL_FATAL(tcfg);
        snprintf(p, sizeof p, "%s/config.json", tmpdir);
        CU_ASSERT(write_file(p, cfg));
        snprintf(p, sizeof p, "%s/tokenizer_config.json", tmpdir);
        CU_ASSERT(write_file(p, tcfg));
        free(cfg);
        free(tcfg);
        hl_status st = model_config_load(&b, tmpdir, &err);
        CU_ASSERT_EQUAL(st, HL_OK);
        if (st) {
            fprintf(stderr, "%s: %s\n", fixtures[f], err.msg);
            continue;
        }
        CU_ASSERT_EQUAL(a.family, b.family);
        CU_ASSERT_EQUAL(a.n_layers, b.n_layers);
        CU_ASSERT_EQUAL(a.d_model, b.d_model);
        CU_ASSERT_EQUAL(a.n_heads, b.n_heads);
        CU_ASSERT_EQUAL(a.d_ffn, b.d_ffn);
        CU_ASSERT_EQUAL(a.vocab, b.vocab);
        CU_ASSERT_EQUAL(a.max_pos, b.max_pos);
        CU_ASSERT_EQUAL(a.d_embed, b.d_embed);
        CU_ASSERT_EQUAL(a.pos_offset, b.pos_offset);
        CU_ASSERT_EQUAL(a.pre_ln, b.pre_ln);
        CU_ASSERT_EQUAL(a.final_ln, b.final_ln);
        CU_ASSERT_EQUAL(a.ln_affine, b.ln_affine);
        CU_ASSERT_EQUAL(a.bias, b.bias);
        CU_ASSERT_EQUAL(a.tied_head, b.tied_head);
        CU_ASSERT_EQUAL(a.act, b.act);
        CU_ASSERT_EQUAL(a.ln_eps, b.ln_eps);
        CU_ASSERT_EQUAL(a.bos_id, b.bos_id);
        CU_ASSERT_EQUAL(a.eos_id, b.eos_id);
        CU_ASSERT_EQUAL(a.pad_id, b.pad_id);
        CU_ASSERT_EQUAL(a.add_bos, b.add_bos);
        CU_ASSERT_STRING_EQUAL(b.torch_dtype, "float16");
    }
    char p[500];
    snprintf(p, sizeof p, "%s/tokenizer_config.json", tmpdir);
    unlink(p);
}

static void test_tensor_errors_name_the_tensor(void)
{
    hl_err err;
    model m;
    CU_ASSERT_EQUAL_FATAL(write_gpt2_folder(NULL, NULL, &err), HL_OK);
    if (model_load(&m, tmpdir, &err) != HL_OK) {
        fprintf(stderr, "\n  %s", err.msg);
        CU_FAIL("a well-formed folder must load");
    }
    model_free(&m);

    CU_ASSERT_EQUAL_FATAL(write_gpt2_folder("h.1.mlp.c_fc.bias", NULL, &err), HL_OK);
    CU_ASSERT_EQUAL(model_load(&m, tmpdir, &err), HL_ERR_FORMAT);
    CU_ASSERT(strstr(err.msg, "h.1.mlp.c_fc.bias") && strstr(err.msg, "missing"));

    CU_ASSERT_EQUAL_FATAL(write_gpt2_folder(NULL, "h.0.attn.c_attn.weight", &err), HL_OK);
    CU_ASSERT_EQUAL(model_load(&m, tmpdir, &err), HL_ERR_FORMAT);
    CU_ASSERT(strstr(err.msg, "h.0.attn.c_attn.weight") && strstr(err.msg, "shape"));
    CU_ASSERT(strstr(err.msg, "model.safetensors") != NULL);

    /* pickle-only folder */
    char p[400];
    snprintf(p, sizeof p, "%s/model.safetensors", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/pytorch_model.bin", tmpdir);
    write_file(p, "PK");
    CU_ASSERT_NOT_EQUAL(model_load(&m, tmpdir, &err), HL_OK);
    CU_ASSERT(strstr(err.msg, "pytorch_model.bin") != NULL);
    unlink(p);
}

/* A copy of a fixture folder with one edit of its config.json. */
static void fixture_with_config_edit(const char *fixture, const char *from, const char *to)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s/edited' && cp -r '%s/models/%s' '%s/edited'", tmpdir,
             HELENE_TESTDIR "/fixtures", fixture, tmpdir);
    CU_ASSERT_EQUAL_FATAL(system(cmd), 0);
    char p[400];
    snprintf(p, sizeof p, "%s/edited/config.json", tmpdir);
    FILE *f = fopen(p, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char text[8192], out[8400];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    char *at = strstr(text, from);
    CU_ASSERT_PTR_NOT_NULL_FATAL(at);
    snprintf(out, sizeof out, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
    write_file(p, out);
}

/* config.json that contradicts the tensors (issue 15): the model would not
 * be the file's, so it is refused before anything is allocated. */
static void test_config_contradicting_tensors(void)
{
    static const struct {
        const char *fixture, *from, *to, *needle;
    } cases[] = {
        {"opt-tiny-f32", "\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1", "layers.1."},
        {"opt-tiny-f32", "\"enable_bias\": true", "\"enable_bias\": false", "bias"},
        {"opt-tiny-f32", "\"layer_norm_elementwise_affine\": true",
         "\"layer_norm_elementwise_affine\": false", "layer_norm"},
        {"opt-tiny-f32", "\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true",
         "lm_head"},
        /* a huge vocabulary: refused by shape at once, not after a 16 GB arena */
        {"opt-tiny-f32", "\"vocab_size\": 480", "\"vocab_size\": 2000000", "2000000"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture_with_config_edit(cases[i].fixture, cases[i].from, cases[i].to);
        char dir[400];
        snprintf(dir, sizeof dir, "%s/edited", tmpdir);
        model m;
        hl_err err;
        hl_err_clear(&err);
        hl_status st = model_load(&m, dir, &err);
        CU_ASSERT_NOT_EQUAL(st, HL_OK);
        if (st == HL_OK)
            model_free(&m);
        if (!strstr(err.msg, cases[i].needle))
            fprintf(stderr, "\n  %s -> %s: want '%s' in: %s", cases[i].from, cases[i].to,
                    cases[i].needle, err.msg);
        CU_ASSERT(strstr(err.msg, cases[i].needle) != NULL);
    }
}

/* A tied checkpoint that also carries lm_head.weight as a byte-for-byte copy
 * of the embeddings (older conversions do) loads; a different head does not
 * (the case above). */
static void test_tied_head_copy_is_accepted(void)
{
    fixture_with_config_edit("opt350-tiny-f32", "\"model_type\"", "\"model_type\"");
    char p[400];
    snprintf(p, sizeof p, "%s/edited/model.safetensors", tmpdir);
    st_file f;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(st_file_open(&f, p, &err), HL_OK);
    int n = st_file_count(&f);
    st_write_tensor *w = calloc((size_t)n + 1, sizeof *w);
    const st_tensor *embed = NULL;
    for (int i = 0; i < n; i++) {
        const st_tensor *t = &f.tensors[i];
        w[i] = (st_write_tensor){t->name, t->dtype, ST_SRC_RAW, t->ndim, t->shape, t->data};
        if (strstr(t->name, "embed_tokens.weight"))
            embed = t;
    }
    CU_ASSERT_PTR_NOT_NULL_FATAL(embed);
    w[n] = (st_write_tensor){"lm_head.weight", embed->dtype, ST_SRC_RAW, embed->ndim,
                             embed->shape, embed->data};
    char q[420];
    snprintf(q, sizeof q, "%s.new", p);
    CU_ASSERT_EQUAL_FATAL(st_write(q, w, n + 1, NULL, 0, &err), HL_OK);
    st_file_close(&f);
    free(w);
    CU_ASSERT_EQUAL_FATAL(rename(q, p), 0);
    char dir[400];
    snprintf(dir, sizeof dir, "%s/edited", tmpdir);
    model m;
    hl_status st = model_load(&m, dir, &err);
    if (st)
        fprintf(stderr, "\n  %s", err.msg);
    CU_ASSERT_EQUAL(st, HL_OK);
    if (st == HL_OK)
        model_free(&m);
}

/* A forward that starts at a stage from the saved input of that stage gives
 * the bits of a full forward, for every stage and after the stage's own
 * weights changed; the stages follow the layer table. */
static void test_staged_forward(void)
{
    enum { NSEQ = 3, NTOK = 40 };
    const int32_t starts[NSEQ + 1] = {0, 12, 30, NTOK};
    int32_t tok[NTOK];
    for (int i = 0; i < NTOK; i++)
        tok[i] = (i * 11 + 5) % 97;
    model_batch b = {.tokens = tok, .seq_start = starts, .n_seq = NSEQ};
    for (int fam = 0; fam < 2; fam++) {
        model_config c = tiny_config((model_family)fam);
        model m;
        hl_err err;
        CU_ASSERT_EQUAL_FATAL(model_init_from_config(&m, &c, &err), HL_OK);
        randomise(&m);
        const int32_t top = c.n_layers + 1;
        CU_ASSERT_EQUAL(model_stage_count(&m), top + 1);
        for (int l = 0; l < m.params.n_layers; l++) {
            const param_layer *ly = &m.params.layers[l];
            int32_t want = ly->block >= 0 ? ly->block + 1
                           : (strstr(ly->name, "embed") || strstr(ly->name, "wte") ||
                              strstr(ly->name, "wpe"))
                               ? 0
                               : top;
            CU_ASSERT_EQUAL(model_layer_stage(&m, l), want);
        }
        size_t n = (size_t)NTOK * c.d_embed * sizeof(float);
        for (int32_t s = 1; s <= top; s++) {
            float *full = run_hidden(&m, tok, starts, NSEQ);
            CU_ASSERT_EQUAL_FATAL(model_forward_staged(&m, &b, s, 0, &err), HL_OK);
            CU_ASSERT_EQUAL(memcmp(full, m.acts.hidden, n), 0);
            CU_ASSERT_EQUAL_FATAL(model_forward_staged(&m, &b, 0, s, &err), HL_OK);
            CU_ASSERT_EQUAL(memcmp(full, m.acts.hidden, n), 0);
            /* change a layer of stage s: from the saved input == from scratch */
            int changed = -1;
            for (int l = 0; l < m.params.n_layers && changed < 0; l++)
                if (model_layer_stage(&m, l) == s)
                    changed = l;
            CU_ASSERT_FATAL(changed >= 0);
            param_layer_data(&m.params, changed)[0] += 0.25f;
            CU_ASSERT_EQUAL_FATAL(model_forward_staged(&m, &b, 0, s, &err), HL_OK);
            float *part = malloc(n);
            memcpy(part, m.acts.hidden, n);
            float *again = run_hidden(&m, tok, starts, NSEQ);
            CU_ASSERT_EQUAL(memcmp(part, again, n), 0);
            CU_ASSERT_NOT_EQUAL(memcmp(part, full, n), 0);
            param_layer_data(&m.params, changed)[0] -= 0.25f;
            free(full), free(part), free(again);
        }
        /* a plain forward drops what was saved; a start without it is refused */
        CU_ASSERT_EQUAL(model_forward_staged(&m, &b, 0, 1, &err), HL_ERR_INVALID);
        CU_ASSERT(strstr(err.msg, "no saved input") != NULL);
        CU_ASSERT_EQUAL(model_forward_staged(&m, &b, 2, 0, &err), HL_OK);
        CU_ASSERT_EQUAL(model_forward_staged(&m, &b, 0, 1, &err), HL_ERR_INVALID);
        CU_ASSERT_EQUAL(model_forward_staged(&m, &b, top + 1, 0, &err), HL_ERR_INVALID);
        model_free(&m);
    }
}

static void register_model(void)
{
    CU_pSuite s = CU_add_suite("model", NULL, NULL);
    TEST_ADD(s, test_fixtures_match_reference);
    TEST_ADD(s, test_thread_count_does_not_change_bits);
    TEST_ADD(s, test_packing_and_causality);
    TEST_ADD(s, test_attention_paths_agree);
    TEST_ADD(s, test_forward_rejects_bad_batches);
    TEST_ADD(s, test_staged_forward);
    TEST_ADD(s, test_peft_spec_parsing);
    TEST_ADD(s, test_lora_forward_equals_merged);
    TEST_ADD(s, test_prefix_attention_equals_longer_sequence);
    CU_pSuite bad = CU_add_suite("model_malformed", make_tmpdir, remove_tmpdir);
    TEST_ADD(bad, test_config_errors);
    TEST_ADD(bad, test_config_writer_round_trips);
    TEST_ADD(bad, test_tensor_errors_name_the_tensor);
    TEST_ADD(bad, test_config_contradicting_tensors);
    TEST_ADD(bad, test_tied_head_copy_is_accepted);
}

TEST_MAIN(register_model)

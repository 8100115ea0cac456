/* test_pretrain.c - `helene pretrain` as a library (pretrain.h).
 *
 * Tiny models trained for a few steps on the bundled IMDB sentences (data/
 * sentiment/imdb/train.tsv, 48 KB): the output folder loads with lm_open
 * and scores text below the uniform baseline; a run stopped half-way and
 * resumed (on another thread count) writes the same bytes as an
 * uninterrupted one; GPT-2 with F16 output; the three tokenizer sources
 * (bundled pair, --vocab/--merges pair, derived from a truncated merge
 * list) with the derived ids in make_vocab.py's layout; options, JSON round
 * trips and what resume refuses; the batch order as a pure function of
 * (seed, step); the held-out split.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lm.h"
#include "pretrain.h"
#include "testutil.h"

#define CORPUS HELENE_SRCDATADIR "/sentiment/imdb/train.tsv"

static char tmpdir[128];

static int suite_init(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/helene-test-pretrain-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int suite_clean(void)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void path_in(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/%s", tmpdir, name);
}

/* 1 layer x 32, context 32, 4 sequences per step, 200 merges (V = 460). */
static void tiny_opts(pretrain_opts *o, const char *out)
{
    hl_err err;
    pretrain_opts_default(o);
    const char *kv[][2] = {{"layers", "1"},    {"hidden", "32"},    {"heads", "2"},
                           {"context", "32"},  {"batch", "4"},      {"steps", "12"},
                           {"warmup", "3"},    {"lr", "3e-3"},      {"max_merges", "200"},
                           {"threads", "2"},   {"log_every", "0"},  {"corpus", CORPUS}};
    for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
        CU_ASSERT_EQUAL_FATAL(pretrain_opts_set(o, kv[i][0], kv[i][1], &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(pretrain_opts_set(o, "out", out, &err), HL_OK);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    unsigned char *b = malloc((size_t)len + 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)len;
    return b;
}

static bool same_file(const char *a, const char *b)
{
    size_t na, nb;
    unsigned char *x = slurp(a, &na), *y = slurp(b, &nb);
    bool same = x && y && na == nb && memcmp(x, y, na) == 0;
    free(x);
    free(y);
    return same;
}

/* ------------------------------------------------------------- tests --- */

static void test_pretrain_writes_a_model_that_loads_and_scores(void)
{
    char out[256];
    path_in(out, sizeof out, "tiny-opt");
    pretrain_opts o;
    tiny_opts(&o, out);
    CU_ASSERT_EQUAL_FATAL(pretrain_opts_set(&o, "steps", "40", NULL), HL_OK);
    pretrain_result res;
    hl_err err;
    hl_err_clear(&err);
    hl_status st = pretrain_run(&o, NULL, &res, NULL, NULL, &err);
    if (st)
        fprintf(stderr, "\n  %s", err.msg);
    CU_ASSERT_EQUAL_FATAL(st, HL_OK);
    CU_ASSERT_EQUAL(res.steps_done, 40);
    CU_ASSERT_EQUAL(res.vocab_size, 4 + 256 + 200);
    CU_ASSERT_EQUAL(res.tokens_seen, 40 * 4 * 32);
    /* it learned something: well below the uniform log V = 6.13 */
    fprintf(stderr, "\n  train loss %.3f, held-out loss %.3f (%lld tokens), log V %.3f",
            res.train_loss, res.heldout_nll, (long long)res.heldout_tokens, log(460.0));
    CU_ASSERT(res.train_loss < log(460.0) - 0.5);
    CU_ASSERT(isfinite(res.heldout_nll) && res.heldout_nll < log(460.0) - 0.5);
    CU_ASSERT(res.heldout_tokens > 100);

    lm l;
    CU_ASSERT_EQUAL_FATAL(lm_open(&l, out, 1, &err), HL_OK);
    const model_config *c = &l.model.cfg;
    CU_ASSERT_EQUAL(c->family, MODEL_FAMILY_OPT);
    CU_ASSERT_EQUAL(c->n_layers, 1);
    CU_ASSERT_EQUAL(c->d_model, 32);
    CU_ASSERT_EQUAL(c->max_pos, 32);
    CU_ASSERT_EQUAL(c->vocab, 460);
    CU_ASSERT(c->add_bos && c->bos_id == 2 && c->tied_head && c->pre_ln);
    CU_ASSERT_STRING_EQUAL(l.model.storage_dtype, "F32");
    CU_ASSERT_EQUAL(bpe_vocab_size(&l.tok), 460);
    const char *text = "This movie was very good, and the acting was great.";
    double nll;
    size_t n;
    CU_ASSERT_EQUAL(lm_score_text(&l, &nll, &n, text, strlen(text), &err), HL_OK);
    fprintf(stderr, "; scored text: %.3f over %zu tokens", nll, n);
    CU_ASSERT(n > 10 && isfinite(nll) && nll < log(460.0));
    lm_close(&l);

    /* the output folder is never replaced */
    st = pretrain_run(&o, NULL, &res, NULL, NULL, &err);
    CU_ASSERT_EQUAL(st, HL_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "already exists"));
}

static void test_resume_is_bit_identical(void)
{
    char outa[256], outb[256], ck[256], pa[300], pb[300];
    path_in(outa, sizeof outa, "resume-a");
    path_in(outb, sizeof outb, "resume-b");
    path_in(ck, sizeof ck, "resume-ck");
    pretrain_opts o;
    pretrain_result ra, rb;
    hl_err err;
    hl_err_clear(&err);
    tiny_opts(&o, outa);
    CU_ASSERT_EQUAL_FATAL(pretrain_run(&o, NULL, &ra, NULL, NULL, &err), HL_OK);

    tiny_opts(&o, outb);
    pretrain_opts_set(&o, "save", ck, &err);
    pretrain_opts_set(&o, "stop_at", "5", &err);
    CU_ASSERT_EQUAL_FATAL(pretrain_run(&o, NULL, &rb, NULL, NULL, &err), HL_OK);
    CU_ASSERT(rb.interrupted);
    CU_ASSERT_EQUAL(rb.steps_done, 5);
    CU_ASSERT_STRING_EQUAL(rb.save_dir, ck);
    struct stat sb;
    CU_ASSERT(stat(outb, &sb) != 0); /* no output folder for a stopped run */

    /* what the command does: the checkpoint's options, a changeable key or two */
    pretrain_opts r;
    CU_ASSERT_EQUAL_FATAL(pretrain_checkpoint_opts(&r, ck, &err), HL_OK);
    CU_ASSERT_STRING_EQUAL(r.out, outb);
    CU_ASSERT(strstr(r.corpus[0], "imdb/train.tsv") != NULL && r.corpus[0][0] == '/');
    pretrain_opts_set(&r, "threads", "1", &err);
    pretrain_opts_set(&r, "stop_at", "0", &err);
    hl_status st = pretrain_run(&r, ck, &rb, NULL, NULL, &err);
    if (st)
        fprintf(stderr, "\n  %s", err.msg);
    CU_ASSERT_EQUAL_FATAL(st, HL_OK);
    CU_ASSERT_EQUAL(rb.steps_done, 12);
    CU_ASSERT_EQUAL(rb.tokens_seen, ra.tokens_seen);
    snprintf(pa, sizeof pa, "%s/model.safetensors", outa);
    snprintf(pb, sizeof pb, "%s/model.safetensors", outb);
    CU_ASSERT(same_file(pa, pb));
    CU_ASSERT(rb.heldout_nll == ra.heldout_nll);
    fprintf(stderr, "\n  uninterrupted and resumed runs: held-out loss %.9f / %.9f",
            ra.heldout_nll, rb.heldout_nll);
    /* the checkpoint holds the final step now */
    snprintf(pa, sizeof pa, "%s/pretrain.json", ck);
    CU_ASSERT(access(pa, F_OK) == 0);

    /* a key that fixes the run cannot change; a changed corpus is refused */
    CU_ASSERT_EQUAL_FATAL(pretrain_checkpoint_opts(&r, ck, &err), HL_OK);
    char out2[256];
    path_in(out2, sizeof out2, "resume-c");
    pretrain_opts_set(&r, "out", out2, &err);
    pretrain_opts_set(&r, "steps", "14", &err);
    pretrain_opts_set(&r, "lr", "1e-2", &err);
    CU_ASSERT_EQUAL(pretrain_run(&r, ck, &rb, NULL, NULL, &err), HL_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "'lr'"));
    CU_ASSERT_EQUAL_FATAL(pretrain_checkpoint_opts(&r, ck, &err), HL_OK);
    char other[256];
    path_in(other, sizeof other, "other.txt");
    FILE *f = fopen(other, "w");
    fputs("Some other text entirely, which gives another token stream.\n", f);
    fclose(f);
    r.n_corpus = 0;
    pretrain_opts_set(&r, "corpus", other, &err);
    pretrain_opts_set(&r, "out", out2, &err);
    CU_ASSERT_EQUAL(pretrain_run(&r, ck, &rb, NULL, NULL, &err), HL_ERR_INVALID);
}

static void test_gpt2_f16_output(void)
{
    char out[256];
    path_in(out, sizeof out, "tiny-gpt2");
    pretrain_opts o;
    tiny_opts(&o, out);
    hl_err err;
    pretrain_opts_set(&o, "family", "gpt2", &err);
    pretrain_opts_set(&o, "dtype", "F16", &err);
    pretrain_opts_set(&o, "steps", "3", &err);
    pretrain_result res;
    hl_status st = pretrain_run(&o, NULL, &res, NULL, NULL, &err);
    if (st)
        fprintf(stderr, "\n  %s", err.msg);
    CU_ASSERT_EQUAL_FATAL(st, HL_OK);
    lm l;
    CU_ASSERT_EQUAL_FATAL(lm_open(&l, out, 2, &err), HL_OK);
    CU_ASSERT_EQUAL(l.model.cfg.family, MODEL_FAMILY_GPT2);
    CU_ASSERT_STRING_EQUAL(l.model.storage_dtype, "F16");
    CU_ASSERT(!l.model.cfg.add_bos);
    CU_ASSERT_EQUAL(l.model.cfg.vocab, 256 + 200 + 1);
    CU_ASSERT_EQUAL(l.model.cfg.eos_id, 456); /* <|endoftext|> last */
    CU_ASSERT_EQUAL(l.model.n_unused_tensors, 0);
    double nll;
    size_t n;
    CU_ASSERT_EQUAL(lm_score_text(&l, &nll, &n, "It was great.", 13, &err), HL_OK);
    CU_ASSERT(isfinite(nll));
    lm_close(&l);
}

static void test_tokenizer_sources(void)
{
    hl_err err;
    /* derived (OPT): <s> <pad> </s> <unk>, bytes in byte order, merges */
    char dir[256], v[300], m[300];
    path_in(dir, sizeof dir, "tiny-opt");
    snprintf(v, sizeof v, "%s/vocab.json", dir);
    snprintf(m, sizeof m, "%s/merges.txt", dir);
    bpe t;
    CU_ASSERT_EQUAL_FATAL(bpe_load(&t, v, m, &err), HL_OK);
    CU_ASSERT_EQUAL(t.id_s, 0);
    CU_ASSERT_EQUAL(t.id_pad, 1);
    CU_ASSERT_EQUAL(t.id_slash_s, 2);
    CU_ASSERT_EQUAL(t.id_unk, 3);
    CU_ASSERT_EQUAL(bpe_token_to_id(&t, "A", 1), 4 + 'A');
    CU_ASSERT_EQUAL(bpe_token_to_id(&t, "\n", 1), 4 + '\n');
    CU_ASSERT_EQUAL(bpe_token_to_id(&t, " t", 2), 260); /* GPT-2's first merge: "Ġ t" */
    bpe_free(&t);

    /* that pair given back with --vocab/--merges is used as is */
    char out[256];
    path_in(out, sizeof out, "from-pair");
    pretrain_opts o;
    tiny_opts(&o, out);
    pretrain_opts_set(&o, "max_merges", "0", &err);
    pretrain_opts_set(&o, "vocab", v, &err);
    pretrain_opts_set(&o, "merges", m, &err);
    pretrain_opts_set(&o, "steps", "1", &err);
    pretrain_result res;
    CU_ASSERT_EQUAL_FATAL(pretrain_run(&o, NULL, &res, NULL, NULL, &err), HL_OK);
    CU_ASSERT_EQUAL(res.vocab_size, 460);
    char v2[300];
    snprintf(v2, sizeof v2, "%s/vocab.json", out);
    CU_ASSERT(same_file(v, v2));

    /* the bundled pair: GPT-2's 50257 tokens (checked without training) */
    char bv[1024];
    CU_ASSERT_FATAL(lm_bundled_path(bv, sizeof bv, "gpt2/vocab.json"));
    pretrain_opts_default(&o);
    pretrain_opts_set(&o, "corpus", CORPUS, &err);
    pretrain_opts_set(&o, "out", out, &err);
    CU_ASSERT_EQUAL(pretrain_opts_check(&o, &err), HL_OK);
    /* --vocab without --merges, --max-merges with --vocab */
    pretrain_opts_set(&o, "vocab", v, &err);
    CU_ASSERT_EQUAL(pretrain_opts_check(&o, &err), HL_ERR_INVALID);
    pretrain_opts_set(&o, "merges", m, &err);
    pretrain_opts_set(&o, "max_merges", "10", &err);
    CU_ASSERT_EQUAL(pretrain_opts_check(&o, &err), HL_ERR_INVALID);
    /* more merges asked for than the list has */
    pretrain_opts_default(&o);
    tiny_opts(&o, out);
    pretrain_opts_set(&o, "merges", m, &err);
    pretrain_opts_set(&o, "max_merges", "500", &err);
    CU_ASSERT_EQUAL(pretrain_run(&o, NULL, &res, NULL, NULL, &err), HL_ERR_INVALID);
}

static void test_options(void)
{
    pretrain_opts o, back;
    hl_err err;
    pretrain_opts_default(&o);
    CU_ASSERT_EQUAL(pretrain_opts_set(&o, "nope", "1", &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(pretrain_opts_set(&o, "family", "llama", &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(pretrain_opts_set(&o, "layers", "0", &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(pretrain_opts_set(&o, "lr", "-1", &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(pretrain_opts_set(&o, "dtype", "F8", &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(pretrain_opts_set(&o, "seed", "-3", &err), HL_ERR_INVALID);
    CU_ASSERT(pretrain_key_may_change_on_resume("steps"));
    CU_ASSERT(!pretrain_key_may_change_on_resume("lr"));
    /* no corpus, no output, heads not dividing hidden */
    CU_ASSERT_EQUAL(pretrain_opts_check(&o, &err), HL_ERR_INVALID);
    pretrain_opts_set(&o, "corpus", "a.txt", &err);
    pretrain_opts_set(&o, "corpus", "b.txt", &err);
    CU_ASSERT_EQUAL(pretrain_opts_check(&o, &err), HL_ERR_INVALID);
    pretrain_opts_set(&o, "out", "x", &err);
    CU_ASSERT_EQUAL(pretrain_opts_check(&o, &err), HL_OK);
    pretrain_opts_set(&o, "save", "x", &err);
    CU_ASSERT_EQUAL(pretrain_opts_check(&o, &err), HL_ERR_INVALID);
    pretrain_opts_set(&o, "save", "", &err);
    pretrain_opts_set(&o, "heads", "3", &err);
    CU_ASSERT_EQUAL(pretrain_opts_check(&o, &err), HL_ERR_INVALID);
    pretrain_opts_set(&o, "heads", "8", &err);
    pretrain_opts_set(&o, "family", "gpt2", &err);
    pretrain_opts_set(&o, "lr", "0.000123", &err);
    pretrain_opts_set(&o, "seed", "18446744073709551615", &err);
    pretrain_opts_set(&o, "dtype", "BF16", &err);
    /* JSON round trip through a file */
    char *text = pretrain_opts_to_json(&o);
    CU_ASSERT_PTR_NOT_NULL_FATAL(text);
    char path[256];
    path_in(path, sizeof path, "opts.json");
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    pretrain_opts_default(&back);
    CU_ASSERT_EQUAL(pretrain_opts_load_json(&back, path, &err), HL_OK);
    char *again = pretrain_opts_to_json(&back);
    CU_ASSERT_STRING_EQUAL(text, again);
    CU_ASSERT_EQUAL(back.n_corpus, 2);
    CU_ASSERT_EQUAL(back.family, MODEL_FAMILY_GPT2);
    CU_ASSERT_EQUAL(back.seed, UINT64_MAX);
    CU_ASSERT_EQUAL(back.out_dtype, ST_DTYPE_BF16);
    free(text);
    free(again);
    /* a config file with a bad value names the key */
    f = fopen(path, "w");
    fputs("{\"layers\": 2, \"corpus\": [\"x.txt\"], \"heads\": \"many\"}", f);
    fclose(f);
    CU_ASSERT_EQUAL(pretrain_opts_load_json(&back, path, &err), HL_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "heads"));
}

static void test_batches_are_a_function_of_seed_and_step(void)
{
    enum { NS = 37, B = 5 };
    int64_t perm[NS], perm2[NS], idx[B], idx2[B], cached = -1, cached2 = -1;
    int seen[NS] = {0};
    /* steps 1..7 cover the first epoch's 35 sequences once each */
    for (int64_t t = 1; t <= 7; t++) {
        pretrain_batch_indices(idx, perm, &cached, 9, t, B, NS);
        for (int j = 0; j < B; j++) {
            CU_ASSERT(idx[j] >= 0 && idx[j] < NS);
            seen[idx[j]]++;
        }
    }
    int once = 0;
    for (int i = 0; i < NS; i++) {
        CU_ASSERT(seen[i] <= 1);
        once += seen[i];
    }
    CU_ASSERT_EQUAL(once, 35);
    /* step 12 straight away (a fresh cache) = step 12 after the others */
    for (int64_t t = 8; t <= 12; t++)
        pretrain_batch_indices(idx, perm, &cached, 9, t, B, NS);
    pretrain_batch_indices(idx2, perm2, &cached2, 9, 12, B, NS);
    CU_ASSERT(memcmp(idx, idx2, sizeof idx) == 0);
    /* another seed, another order */
    cached2 = -1;
    pretrain_batch_indices(idx2, perm2, &cached2, 10, 12, B, NS);
    CU_ASSERT(memcmp(idx, idx2, sizeof idx) != 0);
}

static void test_heldout_split(void)
{
    char v[1024], m[1024];
    CU_ASSERT_FATAL(lm_bundled_path(v, sizeof v, "gpt2/vocab.json") &&
                    lm_bundled_path(m, sizeof m, "gpt2/merges.txt"));
    bpe t;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(bpe_load(&t, v, m, &err), HL_OK);
    char files[1][PRETRAIN_PATH_MAX];
    snprintf(files[0], sizeof files[0], "%s", CORPUS);
    pretrain_corpus c, whole;
    CU_ASSERT_EQUAL_FATAL(pretrain_corpus_load(&c, &t, (const char(*)[PRETRAIN_PATH_MAX])files, 1,
                                               NULL, 0.1, &err),
                          HL_OK);
    CU_ASSERT_EQUAL_FATAL(pretrain_corpus_load(&whole, &t,
                                               (const char(*)[PRETRAIN_PATH_MAX])files, 1,
                                               CORPUS, 0.1, &err),
                          HL_OK);
    /* with a held-out file everything trains; without, the last 10% is held out */
    size_t total = whole.n_train;
    CU_ASSERT_EQUAL(whole.n_heldout, total);
    CU_ASSERT_EQUAL(c.n_heldout, (size_t)floor(0.1 * (double)total));
    CU_ASSERT_EQUAL(c.n_train + c.n_heldout, total);
    CU_ASSERT(memcmp(c.train, whole.train, c.n_train * sizeof(int32_t)) == 0);
    CU_ASSERT(memcmp(c.heldout, whole.train + c.n_train, c.n_heldout * sizeof(int32_t)) == 0);
    CU_ASSERT(c.hash != whole.hash);
    pretrain_corpus_free(&c);
    pretrain_corpus_free(&whole);
    /* a missing file is an error naming it */
    snprintf(files[0], sizeof files[0], "%s/missing.txt", tmpdir);
    CU_ASSERT_EQUAL(pretrain_corpus_load(&c, &t, (const char(*)[PRETRAIN_PATH_MAX])files, 1, NULL,
                                         0.01, &err),
                    HL_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "missing.txt"));
    bpe_free(&t);
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("pretrain", suite_init, suite_clean);
    TEST_ADD(s, test_pretrain_writes_a_model_that_loads_and_scores);
    TEST_ADD(s, test_resume_is_bit_identical);
    TEST_ADD(s, test_gpt2_f16_output);
    TEST_ADD(s, test_tokenizer_sources);
    TEST_ADD(s, test_options);
    TEST_ADD(s, test_batches_are_a_function_of_seed_and_step);
    TEST_ADD(s, test_heldout_split);
}

TEST_MAIN(register_tests)

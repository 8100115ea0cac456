/* test_task.c - task definitions, templates, dataset readers, sampling, batching.
 *
 * Malformed inputs are written to a mkdtemp folder per run; valid fixtures
 * live in tests/fixtures/tasks/ and the bundled data in data/.
 */
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "sample.h"
#include "task.h"
#include "testutil.h"

#define FIX HELENE_TESTDIR "/fixtures/tasks"

static char tmpdir[256];

static const char *const builtin_names[] = {"sst2", "sst5", "rte",  "cb",   "boolq",
                                            "wic",  "wsc",  "multirc", "snli", "mnli",
                                            "trec", "imdb", "yelp", "amazon", "source", "default"};
enum { N_BUILTIN = sizeof builtin_names / sizeof *builtin_names };

/* ---------------------------------------------------------------------------
 * helpers
 * ------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static int suite_init(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/helene-test-task-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : 1;
}

static int suite_clean(void)
{
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Write bytes to tmpdir/name (creating folders); the path goes to path. */
static const char *write_tmp(char *path, size_t cap, const char *name, const char *bytes,
                             size_t n)
{
    snprintf(path, cap, "%s/%s", tmpdir, name);
    for (char *slash = path + strlen(tmpdir) + 1; (slash = strchr(slash, '/')) != NULL; slash++) {
        *slash = '\0'; /* mkdir -p of the folders in name */
        mkdir(path, 0700);
        *slash = '/';
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return NULL;
    fwrite(bytes, 1, n, f);
    fclose(f);
    return path;
}

static const char *write_str(char *path, size_t cap, const char *name, const char *s)
{
    return write_tmp(path, cap, name, s, strlen(s));
}

static void load_builtin(task *t, const char *name)
{
    const char *dirs[] = {HELENE_SRCDATADIR};
    hl_err err;
    hl_err_clear(&err);
    hl_status st = task_find_in(t, name, dirs, 1, &err);
    if (st != HL_OK)
        fprintf(stderr, "  %s: %s\n", name, err.msg);
    CU_ASSERT_EQUAL_FATAL(st, HL_OK);
}

/* Render example i of ds (causal, no truncation) into a fresh buffer. */
static char *render(const task *t, task_model kind, const dataset *ds, uint32_t i,
                    task_prompt *info)
{
    size_t cap = task_prompt_max_bytes(t, kind, ds->max_len);
    char *buf = malloc(cap);
    task_example ex;
    dataset_example_view(&ex, ds, i);
    hl_err err;
    task_prompt local;
    hl_status st = task_render_prompt(buf, cap, info ? info : &local, t, kind, &ex, NULL, &err);
    if (st != HL_OK) {
        fprintf(stderr, "  render: %s\n", err.msg);
        free(buf);
        return NULL;
    }
    return buf;
}

static void expect_err(hl_status st, const hl_err *err, const char *a, const char *b)
{
    CU_ASSERT_NOT_EQUAL(st, HL_OK);
    bool ok = (!a || strstr(err->msg, a)) && (!b || strstr(err->msg, b));
    if (!ok)
        fprintf(stderr, "  message \"%s\" lacks \"%s\" / \"%s\"\n", err->msg, a ? a : "",
                b ? b : "");
    CU_ASSERT(ok);
}

/* ---------------------------------------------------------------------------
 * task definitions
 * ------------------------------------------------------------------------- */

static void test_builtins_load(void)
{
    for (int i = 0; i < N_BUILTIN; i++) {
        task t;
        load_builtin(&t, builtin_names[i]);
        CU_ASSERT_STRING_EQUAL(t.name, builtin_names[i]);
        CU_ASSERT(t.has_causal);
        CU_ASSERT(t.n_classes >= 2);
        CU_ASSERT(t.n_inputs >= 1);
        CU_ASSERT_EQUAL(t.model, TASK_MODEL_CAUSAL);
        for (int32_t c = 0; c < t.n_classes; c++) {
            CU_ASSERT_PTR_NOT_NULL(task_class_word(&t, TASK_MODEL_CAUSAL, c));
            CU_ASSERT_EQUAL(t.classes[c].masked[0], ' ');
        }
        task_free(&t);
    }
    /* the masked templates of the spec */
    static const char *const masked[] = {"sst2", "sst5", "rte", "snli", "mnli", "trec", "imdb",
                                         "default"};
    for (size_t i = 0; i < sizeof masked / sizeof *masked; i++) {
        task t;
        load_builtin(&t, masked[i]);
        CU_ASSERT(t.has_masked);
        task_free(&t);
    }
}

static void test_find_and_list(void)
{
    task t;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(task_find(&t, "default", &err), HL_OK);
    CU_ASSERT_PTR_NOT_NULL_FATAL(t.data_dir);
    CU_ASSERT(dataset_is_folder(t.data_dir));
    CU_ASSERT_PTR_NOT_NULL(strstr(t.data_dir, "/source"));
    CU_ASSERT_STRING_EQUAL(t.classes[0].causal, " God");
    CU_ASSERT_PTR_NULL(strstr(t.data_dir, "tasks/.."));
    task_free(&t);

    expect_err(task_find(&t, "sst3", &err), &err, "unknown task \"sst3\"", "sst2, sst5");
    expect_err(task_find(&t, "../evil", &err), &err, "cannot open", NULL);
    expect_err(task_find(&t, "Bad Name", &err), &err, "not a built-in name", NULL);

    char names[1024];
    CU_ASSERT_EQUAL(task_list_builtin(names, sizeof names, &err), HL_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(names, "amazon, boolq, cb, default"));

    /* $HELENE_DATA_DIR comes first */
    char envdir[512], path0[512];
    snprintf(envdir, sizeof envdir, "%s/envdata", tmpdir);
    write_str(path0, sizeof path0, "envdata/tasks/sst2.json",
              "{\"name\": \"sst2\", \"description\": \"override\", \"fields\": [\"s\"], "
              "\"labels\": [{\"value\": \"0\", \"word\": \"x\"}, {\"value\": \"1\", "
              "\"word\": \"y\"}], \"template\": \"{s}\", \"inputs\": [{\"format\": \"tsv\", "
              "\"fields\": {\"s\": \"s\"}, \"label\": \"l\"}]}");
    setenv("HELENE_DATA_DIR", envdir, 1);
    CU_ASSERT_EQUAL(task_find(&t, "sst2", &err), HL_OK);
    CU_ASSERT_STRING_EQUAL(t.description, "override");
    task_free(&t);
    CU_ASSERT_EQUAL(task_find(&t, "rte", &err), HL_OK); /* falls through to the source tree */
    task_free(&t);
    unsetenv("HELENE_DATA_DIR");

    /* a FILE.json path */
    char path[512];
    write_str(path, sizeof path, "mine.json",
              "{\"name\": \"mine\", \"fields\": [\"text\"], \"labels\": [{\"value\": \"a\", "
              "\"word\": \"x\"}, {\"value\": \"b\", \"word\": \"y\"}], \"template\": \"{text} "
              "=\", \"inputs\": [{\"format\": \"tsv\", \"fields\": {\"text\": \"t\"}, \"label\": "
              "\"l\"}], \"data\": \"../x/y\"}");
    CU_ASSERT_EQUAL_FATAL(task_find(&t, path, &err), HL_OK);
    CU_ASSERT_STRING_EQUAL(t.name, "mine");
    CU_ASSERT_STRING_EQUAL(t.classes[1].causal, " y");
    char want[512];
    snprintf(want, sizeof want, "%.*s/x/y", (int)(strrchr(tmpdir, '/') - tmpdir), tmpdir);
    CU_ASSERT_STRING_EQUAL(t.data_dir, want);
    task_free(&t);
}

/* A definition with one key replaced; checks the error names file and key. */
static void expect_bad_task(const char *json, const char *want1, const char *want2)
{
    char path[512];
    write_str(path, sizeof path, "bad.json", json);
    task t;
    hl_err err;
    hl_err_clear(&err);
    hl_status st = task_load_file(&t, path, &err);
    expect_err(st, &err, "bad.json", want1);
    if (want2)
        expect_err(st, &err, want2, NULL);
}

#define T_HEAD "{\"name\": \"x\", \"fields\": [\"premise\", \"hypothesis\"], "
#define T_LABELS "\"labels\": [{\"value\": \"0\", \"word\": \"No\"}, {\"value\": \"1\", \"word\": \"Yes\"}], "
#define T_INPUTS "\"inputs\": [{\"format\": \"jsonl\", \"fields\": {\"premise\": \"p\", \"hypothesis\": \"h\"}, \"label\": \"l\"}]"
#define T_TEMPLATE "\"template\": \"{premise} {hypothesis}\", "

static void test_task_validation(void)
{
    /* a NUL escape would cut the template short; a key twice is ambiguous */
    expect_bad_task(T_HEAD T_LABELS "\"template\": \"{premise}\\u0000 {hypothesis}\", " T_INPUTS "}",
                    "NUL", NULL);
    expect_bad_task(T_HEAD T_LABELS T_TEMPLATE "\"template\": \"{premise}\", " T_INPUTS "}",
                    "\"template\" appears twice", NULL);
    expect_bad_task(T_HEAD T_LABELS T_TEMPLATE T_INPUTS ", \"tempalte\": \"x\"}", "\"tempalte\"",
                    "unknown");
    expect_bad_task(T_HEAD T_TEMPLATE T_INPUTS "}", "\"labels\"", "missing");
    expect_bad_task(T_HEAD "\"labels\": [{\"value\": \"0\", \"word\": \"No\"}, {\"value\": 0, "
                           "\"word\": \"Yes\"}], " T_TEMPLATE T_INPUTS "}",
                    "labels[1].value", "already declared");
    expect_bad_task(T_HEAD "\"labels\": [{\"value\": \"0\", \"word\": \" No\"}, {\"value\": 1, "
                           "\"word\": \"Yes\"}], " T_TEMPLATE T_INPUTS "}",
                    "labels[0].word", "whitespace");
    expect_bad_task(T_HEAD "\"labels\": [{\"value\": \"0\", \"word\": \"No\"}, {\"value\": 1, "
                           "\"word\": \"No\"}], " T_TEMPLATE T_INPUTS "}",
                    "labels[1].word", "already used");
    expect_bad_task(T_HEAD T_LABELS T_TEMPLATE
                    "\"inputs\": [{\"format\": \"jsonl\", \"fields\": {\"premise\": \"p\"}, "
                    "\"label\": \"l\"}]}",
                    "inputs[0].fields.hypothesis", "missing");
    expect_bad_task(T_HEAD T_LABELS T_TEMPLATE
                    "\"inputs\": [{\"format\": \"tsv\", \"fields\": {\"premise\": 0, "
                    "\"hypothesis\": 1}, \"label\": 2}]}",
                    "inputs[0].fields.premise", "header");
    expect_bad_task(T_HEAD T_LABELS T_TEMPLATE
                    "\"inputs\": [{\"format\": \"xml\", \"fields\": {}, \"label\": 2}]}",
                    "inputs[0].format", NULL);
    expect_bad_task(T_HEAD T_LABELS T_TEMPLATE
                    "\"inputs\": [{\"format\": \"jsonl\", \"fields\": {\"premise\": \"a[]b\", "
                    "\"hypothesis\": \"h\"}, \"label\": \"l\"}]}",
                    "inputs[0].fields.premise", "'[]' must end a segment");
    expect_bad_task(T_HEAD T_LABELS T_TEMPLATE
                    "\"inputs\": [{\"format\": \"jsonl\", \"fields\": {\"premise\": \"a[].p\", "
                    "\"hypothesis\": \"b[].h\"}, \"label\": \"l\"}]}",
                    "inputs[0]", "one chain");
    expect_bad_task(T_HEAD T_LABELS T_TEMPLATE T_INPUTS ", \"model\": \"masked\"}", "\"model\"",
                    "masked_template");
    expect_bad_task(T_HEAD T_LABELS T_TEMPLATE T_INPUTS ", \"truncate\": \"nope\"}",
                    "\"truncate\"", NULL);
    expect_bad_task(T_HEAD T_LABELS T_INPUTS "}", "\"template\"", "missing");
    expect_bad_task(T_HEAD T_LABELS "\"template\": \"{premise} {hypo}\", " T_INPUTS "}",
                    "{hypo}", "premise, hypothesis");
    expect_bad_task(T_HEAD T_LABELS "\"template\": \"{premise\", " T_INPUTS "}", "template",
                    "not closed");
    expect_bad_task(T_HEAD T_LABELS "\"template\": \"no fields}\", " T_INPUTS "}", "template",
                    "unmatched");
    expect_bad_task(T_HEAD T_LABELS "\"template\": \"plain\", " T_INPUTS "}", "template",
                    "uses no field");
    expect_bad_task(T_HEAD T_LABELS "\"template\": \"{premise} <mask>\", " T_INPUTS "}",
                    "template", "masked_template");
    expect_bad_task("{\"name\": \"x\",\n \"fields\": [\"a\"],\n oops}", "bad.json:3",
                    "not valid JSON");
    expect_bad_task("[]", "expected a JSON object", NULL);
}

static void test_masked_templates_validate(void)
{
    static const char *const bad[][2] = {
        {"<s> {S1} It was . </s>", "exactly one <mask>"},
        {"<s> {S1} <mask> <mask> </s>", "exactly one <mask>"},
        {"<s> {S1} It was<mask>. </s>", "piece of its own"},
        {"{S1} <s> <mask> </s>", "<s> must come first"},
        {"<s> {S3} <mask> </s>", "{S3}"},
        {"<s> {sentence} <mask> </s>", "{sentence}"},
        {"<s> <mask> </s>", "uses no field"},
        {"<s> {S1} <mask> </s> more", "after </s>"},
    };
    task t;
    load_builtin(&t, "rte");
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        task_template tp;
        memset(&tp, 0, sizeof tp);
        hl_err err;
        hl_err_clear(&err);
        hl_status st = task_template_parse(&tp, &t, TASK_MODEL_MASKED, bad[i][0], &err);
        expect_err(st, &err, "masked_template", bad[i][1]);
        task_template_free(&tp);
    }
    /* good ones parse: LM-BFF's patterns, and named fields */
    static const char *const good[] = {"<s> {S1}? <mask> , {s2} </s>", "<s> <mask> : {S1} </s>",
                                       "{premise} ? <mask> , {Hypothesis}", "<mask> {s1}"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        task_template tp;
        memset(&tp, 0, sizeof tp);
        hl_err err;
        CU_ASSERT_EQUAL(task_template_parse(&tp, &t, TASK_MODEL_MASKED, good[i], &err), HL_OK);
        task_template_free(&tp);
    }
    task_free(&t);
}

/* ---------------------------------------------------------------------------
 * rendering: exact bytes
 * ------------------------------------------------------------------------- */

/* Load task `name`, read `file`, render example i, compare bytes and words. */
static void check_render(const char *name, const char *file, uint32_t i, const char *want,
                         const char *word0, const char *word1)
{
    task t;
    load_builtin(&t, name);
    dataset ds;
    hl_err err;
    hl_status st = dataset_load_file(&ds, &t, file, NULL, &err);
    if (st != HL_OK)
        fprintf(stderr, "  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(st, HL_OK);
    task_prompt info;
    char *got = render(&t, TASK_MODEL_CAUSAL, &ds, i, &info);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    if (strcmp(got, want) != 0)
        fprintf(stderr, "  %s: got\n[%s]\n  want\n[%s]\n", name, got, want);
    CU_ASSERT_STRING_EQUAL(got, want);
    CU_ASSERT_EQUAL(info.len, strlen(want));
    CU_ASSERT_EQUAL(info.mask_at, -1);
    CU_ASSERT_STRING_EQUAL(task_class_word(&t, TASK_MODEL_CAUSAL, 0), word0);
    CU_ASSERT_STRING_EQUAL(task_class_word(&t, TASK_MODEL_CAUSAL, 1), word1);
    free(got);
    dataset_free(&ds);
    task_free(&t);
}

static void test_render_causal_exact(void)
{
    check_render("sst2", FIX "/sst2.tsv", 0, "a gorgeous , witty , seductive movie . It was",
                 " terrible", " great");
    check_render("sst2", FIX "/sst2.tsv", 11, "the humor is forced and the \"jokes\" fall flat . It was",
                 " terrible", " great");
    check_render("rte", FIX "/superglue/rte.jsonl", 1,
                 "Maria sold her bicycle and now walks to work.\nDoes this mean that \"Maria "
                 "drives to work.\" is true? Yes or No?\n",
                 "Yes", "No");
    check_render("cb", FIX "/superglue/cb.jsonl", 0,
                 "Suppose I doubt that the train will be on time. It has been late all week. Can "
                 "we infer that \"the train will be on time\"? Yes, No, or Maybe?\n",
                 "Yes", "No");
    check_render("boolq", FIX "/superglue/boolq.jsonl", 0,
                 "The Sun is the star at the center of the Solar System. It is a nearly perfect "
                 "ball of hot plasma. Is the sun a star?\n",
                 "Yes", "No");
    check_render("wic", FIX "/superglue/wic.jsonl", 0,
                 "Does the word \"bank\" have the same meaning in these two sentences? Yes, No?\n"
                 "She sat on the bank of the river.\nHe deposited the cheque at the bank.\n",
                 "No", "Yes");
    check_render("wsc", FIX "/superglue/wsc.jsonl", 1,
                 "The trophy doesn't fit into the brown suitcase because it is too large.\nIn the "
                 "previous sentence, does the pronoun \"it\" refer to trophy? Yes or No?\n",
                 "No", "Yes");
    check_render("multirc", FIX "/superglue/multirc.jsonl", 2,
                 "Anna planted tomatoes in May. By August the plants were taller than her.\n"
                 "Question: How tall were the plants in August?\nI found this answer \"Taller "
                 "than Anna\". Is that correct? Yes or No?\n",
                 "No", "Yes");
    check_render("sst5", FIX "/sst5-kshot/train.csv", 0, "a tedious, joyless slog . It was",
                 " terrible", " bad");
    check_render("trec", FIX "/sst5-kshot/test.csv", 1, "i wanted my money back . The question is about",
                 " Description", " Entity");
}

static void test_render_masked_exact(void)
{
    task t;
    hl_err err;
    load_builtin(&t, "rte");
    task_example ex = {.text = {"It rains.", "The ground is wet."}, .len = {9, 18}};
    char buf[256];
    task_prompt info;
    CU_ASSERT_EQUAL_FATAL(task_render_prompt(buf, sizeof buf, &info, &t, TASK_MODEL_MASKED, &ex,
                                             NULL, &err),
                          HL_OK);
    CU_ASSERT_STRING_EQUAL(buf, "<s>It rains?<mask>, the ground is wet.</s>");
    CU_ASSERT_EQUAL(info.mask_at, 12);
    CU_ASSERT_STRING_EQUAL(task_class_word(&t, TASK_MODEL_MASKED, 0), " Yes");
    task_free(&t);

    load_builtin(&t, "sst2");
    task_example one = {.text = {"a fine film ."}, .len = {13}};
    CU_ASSERT_EQUAL(task_render_prompt(buf, sizeof buf, &info, &t, TASK_MODEL_MASKED, &one, NULL,
                                       &err),
                    HL_OK);
    CU_ASSERT_STRING_EQUAL(buf, "<s>a fine film . It was<mask>.</s>");
    CU_ASSERT_EQUAL(info.mask_at, (int64_t)strlen("<s>a fine film . It was"));
    task_free(&t);

    load_builtin(&t, "trec");
    task_example q = {.text = {"What is a star ?"}, .len = {16}};
    CU_ASSERT_EQUAL(task_render_prompt(buf, sizeof buf, &info, &t, TASK_MODEL_MASKED, &q, NULL,
                                       &err),
                    HL_OK);
    CU_ASSERT_STRING_EQUAL(buf, "<s><mask>: What is a star ?</s>");
    CU_ASSERT_EQUAL(info.mask_at, 3);
    task_free(&t);

    /* no masked template: clear error */
    load_builtin(&t, "boolq");
    CU_ASSERT_FALSE(task_supports(&t, TASK_MODEL_MASKED));
    expect_err(task_render_prompt(buf, sizeof buf, &info, &t, TASK_MODEL_MASKED, &ex, NULL, &err),
               &err, "no masked-LM template", NULL);
    task_free(&t);
}

static void test_render_placeholders(void)
{
    task t;
    load_builtin(&t, "rte");
    task_template tp;
    memset(&tp, 0, sizeof tp);
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(task_template_parse(&tp, &t, TASK_MODEL_CAUSAL,
                                              "{{{S1}}} {s2} {Premise}|{premise}", &err),
                          HL_OK);
    task_template_free(&t.causal);
    t.causal = tp;
    task_example ex = {.text = {"rain falls", "Wet ground"}, .len = {10, 10}};
    char buf[128];
    task_prompt info;
    CU_ASSERT_EQUAL(task_render_prompt(buf, sizeof buf, &info, &t, TASK_MODEL_CAUSAL, &ex, NULL,
                                       &err),
                    HL_OK);
    CU_ASSERT_STRING_EQUAL(buf, "{rain falls} wet ground Rain falls|rain falls");
    /* too small a buffer is an error, not an overflow */
    expect_err(task_render_prompt(buf, 10, &info, &t, TASK_MODEL_CAUSAL, &ex, NULL, &err), &err,
               "too small", NULL);
    task_free(&t);
}

/* ---------------------------------------------------------------------------
 * truncation
 * ------------------------------------------------------------------------- */

/* Fake tokenizer: one token per whitespace-separated word. */
static int64_t count_words(void *ctx, const char *s, size_t n)
{
    int *calls = ctx;
    if (calls)
        (*calls)++;
    int64_t w = 0;
    bool in = false;
    for (size_t i = 0; i < n; i++) {
        bool sp = s[i] == ' ' || s[i] == '\n' || s[i] == '\t';
        if (!sp && !in)
            w++;
        in = !sp;
    }
    return w;
}

static void test_truncate_left_keeps_template(void)
{
    task t;
    load_builtin(&t, "boolq");
    char passage[4096];
    size_t at = 0;
    for (int i = 0; i < 200; i++)
        at += (size_t)snprintf(passage + at, sizeof passage - at, "%sw%d", i ? " " : "", i);
    task_example ex = {.text = {passage, "is it long"}, .len = {(uint32_t)at, 10}};
    uint32_t max_len[TASK_MAX_FIELDS] = {(uint32_t)at, 10};
    size_t cap = task_prompt_max_bytes(&t, TASK_MODEL_CAUSAL, max_len);
    char *buf = malloc(cap);
    int calls = 0;
    task_fit fit = {.budget = 30, .len_fn = count_words, .ctx = &calls};
    task_prompt info;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(task_render_prompt(buf, cap, &info, &t, TASK_MODEL_CAUSAL, &ex, &fit,
                                             &err),
                          HL_OK);
    /* 30 words: 27 passage words + "Is it long?" (3 words); cut from the left */
    CU_ASSERT_EQUAL(info.tokens, 30);
    CU_ASSERT_EQUAL(count_words(NULL, buf, info.len), 30);
    CU_ASSERT_STRING_EQUAL(buf + info.len - strlen(" w199 Is it long?\n"), " w199 Is it long?\n");
    CU_ASSERT_EQUAL(strncmp(buf, "w173 w174", 9), 0);
    CU_ASSERT(info.cut[0] > 0);
    CU_ASSERT_EQUAL(info.cut[1], 0);
    CU_ASSERT(calls < 40); /* binary search, not word by word */

    /* the budget helper subtracts the longest word */
    CU_ASSERT_EQUAL(task_fit_budget(&t, TASK_MODEL_CAUSAL, 31, count_words, NULL), 30);

    /* only the question is left once the passage is gone */
    fit.budget = 2;
    CU_ASSERT_EQUAL(task_render_prompt(buf, cap, &info, &t, TASK_MODEL_CAUSAL, &ex, &fit, &err),
                    HL_OK);
    CU_ASSERT_STRING_EQUAL(buf, " It long?\n");
    CU_ASSERT_EQUAL(info.cut[0], ex.len[0]);
    /* already short: nothing cut */
    fit.budget = 1000;
    CU_ASSERT_EQUAL(task_render_prompt(buf, cap, &info, &t, TASK_MODEL_CAUSAL, &ex, &fit, &err),
                    HL_OK);
    CU_ASSERT_EQUAL(info.cut[0], 0);
    CU_ASSERT_EQUAL(info.tokens, 203);
    free(buf);
    task_free(&t);

    /* masked: the <mask> survives */
    load_builtin(&t, "sst2");
    ex.text[0] = passage;
    ex.len[0] = (uint32_t)at;
    cap = task_prompt_max_bytes(&t, TASK_MODEL_MASKED, max_len);
    buf = malloc(cap);
    fit.budget = 10;
    CU_ASSERT_EQUAL(task_render_prompt(buf, cap, &info, &t, TASK_MODEL_MASKED, &ex, &fit, &err),
                    HL_OK);
    if (strcmp(buf, "<s>w192 w193 w194 w195 w196 w197 w198 w199 It was<mask>.</s>") != 0)
        fprintf(stderr, "  got [%s]\n", buf);
    CU_ASSERT_STRING_EQUAL(buf, "<s>w192 w193 w194 w195 w196 w197 w198 w199 It was<mask>.</s>");
    CU_ASSERT_EQUAL(info.tokens, 10);
    CU_ASSERT_EQUAL(info.mask_at, (int64_t)(strstr(buf, "<mask>") - buf));
    /* a budget below the template alone is an error */
    fit.budget = 1;
    expect_err(task_render_prompt(buf, cap, &info, &t, TASK_MODEL_CAUSAL, &ex, &fit, &err), &err,
               "template alone", NULL);
    free(buf);
    task_free(&t);
}

/* ---------------------------------------------------------------------------
 * readers
 * ------------------------------------------------------------------------- */

static void test_tsv_fixture(void)
{
    task t;
    load_builtin(&t, "sst2");
    dataset ds;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(dataset_load_file(&ds, &t, FIX "/sst2.tsv", NULL, &err), HL_OK);
    CU_ASSERT_EQUAL(ds.n, 20);
    CU_ASSERT_EQUAL(ds.class_count[0], 10);
    CU_ASSERT_EQUAL(ds.class_count[1], 10);
    CU_ASSERT_EQUAL(ds.ex[0].line, 2);
    CU_ASSERT_EQUAL(ds.ex[19].line, 21);
    CU_ASSERT_EQUAL(ds.ex[0].label, 1);
    CU_ASSERT_EQUAL(ds.n_blank, 0);
    CU_ASSERT_EQUAL(ds.n_lines, 21);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 1, 0),
                           "the plot is nothing but boilerplate clichés from start to finish .");
    dataset_free(&ds);
    task_free(&t);
}

static void test_tsv_crlf_bom_blank_quotes(void)
{
    task t;
    load_builtin(&t, "sst2");
    char path[512];
    const char text[] = "\xEF\xBB\xBFsentence\tlabel\r\n"
                        "  hello there \t1\r\n"
                        "\r\n"
                        "   \t \r\n"
                        "say \"hi\" and \"bye\t0\r\n"
                        "\n"
                        "last line without newline\t 1 ";
    write_tmp(path, sizeof path, "crlf.tsv", text, sizeof text - 1);
    dataset ds;
    hl_err err;
    hl_status st = dataset_load_file(&ds, &t, path, NULL, &err);
    if (st)
        fprintf(stderr, "  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(st, HL_OK);
    CU_ASSERT_EQUAL(ds.n, 3);
    CU_ASSERT_EQUAL(ds.n_blank, 3);
    CU_ASSERT_EQUAL(ds.n_lines, 7);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 0, 0), "hello there");
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 1, 0), "say \"hi\" and \"bye");
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 2, 0), "last line without newline");
    CU_ASSERT_EQUAL(ds.ex[0].line, 2);
    CU_ASSERT_EQUAL(ds.ex[1].line, 5);
    CU_ASSERT_EQUAL(ds.ex[2].line, 7);
    CU_ASSERT_EQUAL(ds.ex[2].label, 1);
    dataset_free(&ds);
    task_free(&t);
}

static void test_tsv_long_line(void)
{
    task t;
    load_builtin(&t, "sst2");
    size_t big = 1u << 20;
    char *text = malloc(big + 64);
    size_t at = (size_t)sprintf(text, "sentence\tlabel\n");
    for (size_t i = 0; i < big; i++)
        text[at++] = i % 8 == 7 ? ' ' : 'a' + (char)(i % 7);
    text[at - 1] = 'z'; /* no trailing space to trim */
    at += (size_t)sprintf(text + at, "\t0\nshort\t1\n");
    char path[512];
    write_tmp(path, sizeof path, "long.tsv", text, at);
    dataset ds;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(dataset_load_file(&ds, &t, path, NULL, &err), HL_OK);
    CU_ASSERT_EQUAL(ds.n, 2);
    uint32_t len;
    dataset_field(&len, &ds, 0, 0);
    CU_ASSERT_EQUAL(len, big);
    CU_ASSERT_EQUAL(ds.max_len[0], big);
    CU_ASSERT_EQUAL(ds.ex[1].line, 3);
    char *p = render(&t, TASK_MODEL_CAUSAL, &ds, 0, NULL);
    CU_ASSERT_PTR_NOT_NULL(p);
    CU_ASSERT_EQUAL(strlen(p), big + strlen(" It was"));
    free(p);
    dataset_free(&ds);
    task_free(&t);
    free(text);
}

/* Load text as `name` with task `tname`; expect failure naming file:line. */
static void expect_bad_data(const char *tname, const char *name, const char *text, size_t n,
                            const char *want1, const char *want2)
{
    task t;
    load_builtin(&t, tname);
    char path[512];
    write_tmp(path, sizeof path, name, text, n);
    dataset ds;
    hl_err err;
    hl_err_clear(&err);
    hl_status st = dataset_load_file(&ds, &t, path, NULL, &err);
    expect_err(st, &err, want1, want2);
    CU_ASSERT_PTR_NULL(ds.ex);
    task_free(&t);
}

#define BAD(tname, name, lit, w1, w2) expect_bad_data(tname, name, lit, sizeof lit - 1, w1, w2)

static void test_tsv_malformed(void)
{
    BAD("sst2", "utf8.tsv", "sentence\tlabel\nok\t1\nbad \xC3\x28 byte\t0\n", "utf8.tsv:3",
        "not valid UTF-8");
    BAD("sst2", "overlong.tsv", "sentence\tlabel\nbad \xC0\xAF\t0\n", "overlong.tsv:2", "UTF-8");
    BAD("sst2", "surrogate.tsv", "sentence\tlabel\nbad \xED\xA0\x80\t0\n", "surrogate.tsv:2",
        "UTF-8");
    BAD("sst2", "label.tsv", "sentence\tlabel\nok\t1\nhmm\t2\n", "label.tsv:3",
        "label \"2\" is not one of \"0\", \"1\"");
    BAD("sst2", "cols.tsv", "sentence\tlabel\nok\t1\ntoo\tmany\t1\n", "cols.tsv:3",
        "3 tab-separated columns, expected 2");
    BAD("sst2", "fewcols.tsv", "sentence\tlabel\nno label here\n", "fewcols.tsv:2",
        "1 tab-separated columns");
    BAD("sst2", "header.tsv", "text\tlabel\nok\t1\n", "header.tsv:1",
        "header has no column \"sentence\"");
    BAD("sst2", "empty.tsv", "", "empty.tsv", "empty file");
    BAD("sst2", "bomonly.tsv", "\xEF\xBB\xBF\n\n", "bomonly.tsv", "empty file");
    BAD("sst2", "headeronly.tsv", "sentence\tlabel\n", "headeronly.tsv", "no examples");
    BAD("sst2", "nul.tsv", "sentence\tlabel\nnul\0here\t1\n", "nul.tsv:2", "NUL");
    /* ambiguous input is refused, not resolved by "first wins" (issue 15) */
    BAD("sst2", "duphead.tsv", "sentence\tlabel\tsentence\nfirst\t1\tsecond\n", "duphead.tsv:1",
        "names column \"sentence\" twice");
    BAD("sst2", "wrongext.csv", "sentence,label\nx,1\n", "does not read csv", "it reads: tsv, jsonl");
    /* a folder is not a file */
    task t;
    load_builtin(&t, "sst2");
    dataset ds;
    hl_err err;
    expect_err(dataset_load_file(&ds, &t, tmpdir, NULL, &err), &err, "is a folder", NULL);
    expect_err(dataset_load_file(&ds, &t, "/nonexistent/x.tsv", NULL, &err), &err,
               "cannot open", NULL);
    task_free(&t);
}

static void test_skip_bad_counts(void)
{
    task t;
    load_builtin(&t, "sst2");
    char path[512];
    const char text[] = "sentence\tlabel\n"
                        "good one\t1\n"
                        "bad label\t7\n"
                        "\n"
                        "good two\t0\n"
                        "bad \xFF utf8\t1\n"
                        "three\tcols\t1\n"
                        "good three\t1\n";
    write_tmp(path, sizeof path, "skip.tsv", text, sizeof text - 1);
    dataset ds;
    hl_err err;
    dataset_opts strict = {.skip_bad = false};
    expect_err(dataset_load_file(&ds, &t, path, &strict, &err), &err, "skip.tsv:3", NULL);
    dataset_opts opts = {.skip_bad = true};
    CU_ASSERT_EQUAL_FATAL(dataset_load_file(&ds, &t, path, &opts, &err), HL_OK);
    CU_ASSERT_EQUAL(ds.n, 3);
    CU_ASSERT_EQUAL(ds.n_bad, 3);
    CU_ASSERT_EQUAL(ds.n_blank, 1);
    CU_ASSERT_EQUAL(ds.n_records, 6);
    CU_ASSERT_PTR_NOT_NULL(strstr(ds.first_bad, "skip.tsv:3: label \"7\""));
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 2, 0), "good three");
    CU_ASSERT_EQUAL(ds.ex[2].line, 8);
    dataset_free(&ds);

    /* all bad: still an error, with the count */
    const char allbad[] = "sentence\tlabel\nx\t5\ny\t6\n";
    write_tmp(path, sizeof path, "allbad.tsv", allbad, sizeof allbad - 1);
    expect_err(dataset_load_file(&ds, &t, path, &opts, &err), &err, "no examples", "2 bad");
    task_free(&t);
}

static void test_csv_quoting(void)
{
    task t;
    load_builtin(&t, "sst5");
    char path[512];
    const char text[] = "3,\"fine, if \"\"uneven\"\" film\"\r\n"
                        "\r\n"
                        "0,\"spans\ntwo lines\"\n"
                        "4,plain text with \"inner\" quotes\n"
                        "2,\"\"\n"
                        "1,last";
    write_tmp(path, sizeof path, "q.csv", text, sizeof text - 1);
    dataset ds;
    hl_err err;
    hl_status st = dataset_load_file(&ds, &t, path, NULL, &err);
    if (st)
        fprintf(stderr, "  %s\n", err.msg);
    CU_ASSERT_EQUAL_FATAL(st, HL_OK);
    CU_ASSERT_EQUAL(ds.n, 5);
    CU_ASSERT_EQUAL(ds.n_blank, 1);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 0, 0), "fine, if \"uneven\" film");
    CU_ASSERT_EQUAL(ds.ex[0].label, 3);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 1, 0), "spans\ntwo lines");
    CU_ASSERT_EQUAL(ds.ex[1].line, 3);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 2, 0), "plain text with \"inner\" quotes");
    CU_ASSERT_EQUAL(ds.ex[2].line, 5);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 3, 0), "");
    CU_ASSERT_EQUAL(ds.ex[4].line, 7);
    CU_ASSERT_EQUAL(ds.ex[4].label, 1);
    dataset_free(&ds);
    task_free(&t);

    BAD("sst5", "open.csv", "1,ok\n2,\"never closed\n3,x\n", "open.csv:2", "never closed");
    BAD("sst5", "junk.csv", "1,ok\n2,\"quoted\"junk\n", "junk.csv:2", "after a closing quote");
    BAD("sst5", "cols.csv", "1,ok\n2,a,b\n", "cols.csv:2", "3 comma-separated columns, expected 2");
    BAD("sst5", "label.csv", "1,ok\n9,x\n", "label.csv:2", "label \"9\"");
    BAD("sst5", "onecol.csv", "1\n", "onecol.csv:1", "reads column 1");
}

static void test_csv_with_header(void)
{
    char path[512];
    write_str(path, sizeof path, "csvh.json",
              "{\"name\": \"csvh\", \"fields\": [\"text\"], \"labels\": [{\"value\": \"neg\", "
              "\"word\": \"bad\"}, {\"value\": \"pos\", \"word\": \"good\"}], \"template\": "
              "\"{text} It was\", \"inputs\": [{\"format\": \"csv\", \"fields\": {\"text\": "
              "\"review\"}, \"label\": \"stars\"}], \"trim\": false}");
    task t;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(task_load_file(&t, path, &err), HL_OK);
    char data[512];
    write_str(data, sizeof data, "h.csv", "id,stars,review\n1,pos,\" keeps spaces \"\n2,neg,meh\n");
    dataset ds;
    CU_ASSERT_EQUAL_FATAL(dataset_load_file(&ds, &t, data, NULL, &err), HL_OK);
    CU_ASSERT_EQUAL(ds.n, 2);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 0, 0), " keeps spaces ");
    CU_ASSERT_EQUAL(ds.ex[0].label, 1);
    dataset_free(&ds);
    task_free(&t);
}

static void test_jsonl_superglue(void)
{
    task t;
    dataset ds;
    hl_err err;
    load_builtin(&t, "boolq");
    CU_ASSERT_EQUAL_FATAL(dataset_load_file(&ds, &t, FIX "/superglue/boolq.jsonl", NULL, &err),
                          HL_OK);
    CU_ASSERT_EQUAL(ds.n, 2);
    CU_ASSERT_EQUAL(ds.ex[0].label, 0); /* true -> Yes */
    CU_ASSERT_EQUAL(ds.ex[1].label, 1);
    dataset_free(&ds);
    task_free(&t);

    load_builtin(&t, "wsc");
    CU_ASSERT_EQUAL_FATAL(dataset_load_file(&ds, &t, FIX "/superglue/wsc.jsonl", NULL, &err),
                          HL_OK);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 0, 1), "Mark");
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 0, 2), "He");
    dataset_free(&ds);
    task_free(&t);

    load_builtin(&t, "multirc");
    CU_ASSERT_EQUAL_FATAL(dataset_load_file(&ds, &t, FIX "/superglue/multirc.jsonl", NULL, &err),
                          HL_OK);
    CU_ASSERT_EQUAL(ds.n, 5);
    CU_ASSERT_EQUAL(ds.input, 0);
    static const int32_t labels[] = {1, 0, 1, 1, 0}, subs[] = {0, 1, 2, 0, 1};
    static const int64_t lines[] = {1, 1, 1, 2, 2};
    for (uint32_t i = 0; i < 5; i++) {
        CU_ASSERT_EQUAL(ds.ex[i].label, labels[i]);
        CU_ASSERT_EQUAL(ds.ex[i].sub, subs[i]);
        CU_ASSERT_EQUAL(ds.ex[i].line, lines[i]);
    }
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 1, 2), "In August");
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 1, 1), "When did Anna plant tomatoes?");
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 4, 0), "The library closes at six on weekdays.");
    dataset_free(&ds);

    /* the flat MultiRC layout is picked when the nested one does not fit */
    char path[512];
    write_str(path, sizeof path, "flat.jsonl",
              "{\"paragraph\": \"P\", \"question\": \"Q\", \"answer\": \"A\", \"label\": 1}\n");
    CU_ASSERT_EQUAL_FATAL(dataset_load_file(&ds, &t, path, NULL, &err), HL_OK);
    CU_ASSERT_EQUAL(ds.input, 1);
    CU_ASSERT_EQUAL(ds.n, 1);
    dataset_free(&ds);
    task_free(&t);

    load_builtin(&t, "rte");
    CU_ASSERT_EQUAL_FATAL(dataset_load_file(&ds, &t, FIX "/superglue/rte.jsonl", NULL, &err),
                          HL_OK);
    CU_ASSERT_EQUAL(ds.n, 4);
    CU_ASSERT_EQUAL(ds.class_count[0], 2);
    dataset_free(&ds);
    /* GLUE TSV layout of the same task */
    write_str(path, sizeof path, "rte.tsv",
              "index\tsentence1\tsentence2\tlabel\n0\tA b.\tC d.\tnot_entailment\n");
    CU_ASSERT_EQUAL_FATAL(dataset_load_file(&ds, &t, path, NULL, &err), HL_OK);
    CU_ASSERT_EQUAL(ds.input, 1);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 0, 1), "C d.");
    CU_ASSERT_EQUAL(ds.ex[0].label, 1);
    dataset_free(&ds);
    task_free(&t);
}

static void test_jsonl_malformed(void)
{
    BAD("rte", "syntax.jsonl", "{\"premise\": \"a\", \"hypothesis\": \"b\", \"label\": \"entailment\"}\n{oops\n",
        "syntax.jsonl:2", "not a JSON object");
    BAD("rte", "missing.jsonl", "{\"premise\": \"a\", \"label\": \"entailment\"}\n", "missing.jsonl:1",
        "missing field \"hypothesis\"");
    BAD("rte", "nulled.jsonl", "{\"premise\": null, \"hypothesis\": \"b\", \"label\": \"entailment\"}\n",
        "nulled.jsonl:1", "missing field \"premise\"");
    BAD("rte", "label.jsonl", "{\"premise\": \"a\", \"hypothesis\": \"b\", \"label\": \"maybe\"}\n",
        "label.jsonl:1", "label \"maybe\" is not one of \"entailment\", \"not_entailment\"");
    BAD("rte", "nolabel.jsonl", "\n\n{\"premise\": \"a\", \"hypothesis\": \"b\"}\n",
        "nolabel.jsonl:3", "missing label");
    BAD("rte", "objfield.jsonl", "{\"premise\": {\"x\": 1}, \"hypothesis\": \"b\", \"label\": \"entailment\"}\n",
        "objfield.jsonl:1", "is an object, expected text");
    BAD("rte", "utf8.jsonl", "{\"premise\": \"a\xE2\x82\", \"hypothesis\": \"b\", \"label\": \"entailment\"}\n",
        "utf8.jsonl:1", "UTF-8");
    BAD("rte", "trailing.jsonl", "{\"premise\": \"a\", \"hypothesis\": \"b\", \"label\": \"entailment\"} x\n",
        "trailing.jsonl:1", "not a JSON object");
    BAD("rte", "array.jsonl", "[{\"premise\": \"a\"}]\n", "array.jsonl:1", "found an array");
    /* a \u0000 would cut the field short; a key given twice is ambiguous */
    BAD("rte", "nulesc.jsonl",
        "{\"premise\": \"a\\u0000hidden\", \"hypothesis\": \"b\", \"label\": \"entailment\"}\n",
        "nulesc.jsonl:1", "NUL");
    BAD("rte", "dupkey.jsonl",
        "{\"premise\": \"a\", \"premise\": \"b\", \"hypothesis\": \"c\", \"label\": "
        "\"entailment\"}\n",
        "dupkey.jsonl:1", "\"premise\" appears twice");
    BAD("rte", "scalar.jsonl", "42\n", "scalar.jsonl:1", "found a scalar");
    BAD("rte", "empty.jsonl", "\n \r\n", "empty.jsonl", "empty file");
    BAD("boolq", "boolstr.jsonl", "{\"passage\": \"p\", \"question\": \"q\", \"label\": \"yes\"}\n",
        "boolstr.jsonl:1", "label \"yes\" is not one of \"true\", \"false\"");
    BAD("multirc", "noanswers.jsonl",
        "{\"passage\": {\"text\": \"t\", \"questions\": [{\"question\": \"q\", \"answers\": []}]}}\n",
        "noanswers.jsonl:1", "is empty");
    BAD("multirc", "badlabel.jsonl",
        "{\"passage\": {\"text\": \"t\", \"questions\": [{\"question\": \"q\", \"answers\": "
        "[{\"text\": \"a\", \"label\": 1}, {\"text\": \"b\", \"label\": 3}]}]}}\n",
        "badlabel.jsonl:1", "label \"3\"");

    /* skip_bad: a bad MultiRC record is dropped whole, nothing partial stays */
    task t;
    load_builtin(&t, "multirc");
    char path[512];
    write_str(path, sizeof path, "mixed.jsonl",
              "{\"passage\": {\"text\": \"t\", \"questions\": [{\"question\": \"q\", \"answers\": "
              "[{\"text\": \"a\", \"label\": 1}, {\"text\": \"b\", \"label\": 3}]}]}}\n"
              "{\"passage\": {\"text\": \"u\", \"questions\": [{\"question\": \"r\", \"answers\": "
              "[{\"text\": \"c\", \"label\": 0}]}]}}\n");
    dataset ds;
    hl_err err;
    dataset_opts opts = {.skip_bad = true};
    CU_ASSERT_EQUAL_FATAL(dataset_load_file(&ds, &t, path, &opts, &err), HL_OK);
    CU_ASSERT_EQUAL(ds.n, 1);
    CU_ASSERT_EQUAL(ds.n_bad, 1);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 0, 2), "c");
    CU_ASSERT_EQUAL(ds.ex[0].line, 2);
    CU_ASSERT_EQUAL(ds.ex[0].sub, 0);
    dataset_free(&ds);
    task_free(&t);
}

static void test_skip_labels_filtered(void)
{
    task t;
    load_builtin(&t, "snli");
    char path[512];
    write_str(path, sizeof path, "snli/dev.tsv",
              "index\tsentence1\tsentence2\tlabel1\tgold_label\n"
              "0\tA man sleeps.\tA person rests.\tentailment\tentailment\n"
              "1\tA dog runs.\tA cat sits.\tneutral\t-\n"
              "2\tKids play.\tNobody plays.\tcontradiction\tcontradiction\n");
    dataset ds;
    hl_err err;
    char dir[512];
    snprintf(dir, sizeof dir, "%s/snli", tmpdir);
    CU_ASSERT_EQUAL_FATAL(dataset_load(&ds, &t, dir, DATASET_SPLIT_DEV, NULL, &err), HL_OK);
    CU_ASSERT_EQUAL(ds.n, 2);
    CU_ASSERT_EQUAL(ds.n_filtered, 1);
    CU_ASSERT_EQUAL(ds.n_bad, 0);
    CU_ASSERT_EQUAL(ds.ex[1].label, 2);
    dataset_free(&ds);
    expect_err(dataset_load(&ds, &t, dir, DATASET_SPLIT_TRAIN, NULL, &err), &err,
               "no train split", "train.tsv, train.jsonl");
    task_free(&t);
}

static void test_folders(void)
{
    task t;
    dataset ds;
    hl_err err;
    load_builtin(&t, "sst5");
    char file[1024];
    CU_ASSERT_EQUAL(dataset_find_split(file, sizeof file, &t, FIX "/sst5-kshot", DATASET_SPLIT_DEV,
                                       &err),
                    HL_OK);
    CU_ASSERT_PTR_NOT_NULL(strstr(file, "sst5-kshot/dev.csv"));
    CU_ASSERT_EQUAL_FATAL(dataset_load(&ds, &t, FIX "/sst5-kshot", DATASET_SPLIT_TRAIN, NULL, &err),
                          HL_OK);
    CU_ASSERT_EQUAL(ds.n, 10);
    for (int c = 0; c < 5; c++)
        CU_ASSERT_EQUAL(ds.class_count[c], 2);
    dataset_free(&ds);
    CU_ASSERT_EQUAL_FATAL(dataset_load(&ds, &t, FIX "/sst5-kshot", DATASET_SPLIT_TEST, NULL, &err),
                          HL_OK);
    CU_ASSERT_EQUAL(ds.n, 3);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 0, 0), "brilliant, moving, unforgettable .");
    dataset_free(&ds);
    /* a file path ignores the split */
    CU_ASSERT_EQUAL_FATAL(dataset_load(&ds, &t, FIX "/sst5-kshot/dev.csv", DATASET_SPLIT_TEST, NULL,
                                       &err),
                          HL_OK);
    CU_ASSERT_EQUAL(ds.n, 10);
    CU_ASSERT_STRING_EQUAL(dataset_field(NULL, &ds, 6, 0), "an enjoyable ride with \"heart\" .");
    dataset_free(&ds);
    task_free(&t);

    dataset_split s;
    CU_ASSERT(dataset_split_parse(&s, "validation") && s == DATASET_SPLIT_DEV);
    CU_ASSERT(dataset_split_parse(&s, "test") && s == DATASET_SPLIT_TEST);
    CU_ASSERT_FALSE(dataset_split_parse(&s, "holdout"));
    CU_ASSERT_STRING_EQUAL(dataset_split_name(DATASET_SPLIT_TRAIN), "train");
}

/* Every bundled data set loads cleanly, in balanced splits of the recorded
 * sizes, and every prompt fits the preallocated bound. */
static void check_bundled(const char *name, int32_t n_classes, const uint32_t per_class[3])
{
    {
        task t;
        load_builtin(&t, name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(t.data_dir);
        CU_ASSERT_EQUAL_FATAL(t.n_classes, n_classes);
        for (int sp = 0; sp < 3; sp++) {
            dataset ds;
            hl_err err;
            hl_status st = dataset_load(&ds, &t, t.data_dir, (dataset_split)sp, NULL, &err);
            if (st)
                fprintf(stderr, "  %s\n", err.msg);
            CU_ASSERT_EQUAL_FATAL(st, HL_OK);
            CU_ASSERT_EQUAL(ds.n, per_class[sp] * (uint32_t)n_classes);
            for (int32_t c = 0; c < n_classes; c++)
                CU_ASSERT_EQUAL(ds.class_count[c], per_class[sp]);
            CU_ASSERT_EQUAL(ds.n_bad + ds.n_blank + ds.n_filtered, 0);
            /* the preallocated bound holds for every prompt */
            size_t cap = task_prompt_max_bytes(&t, TASK_MODEL_CAUSAL, ds.max_len);
            char *buf = malloc(cap);
            for (uint32_t i = 0; i < ds.n; i++) {
                task_example ex;
                task_prompt info;
                dataset_example_view(&ex, &ds, i);
                CU_ASSERT_EQUAL(task_render_prompt(buf, cap, &info, &t, TASK_MODEL_CAUSAL, &ex,
                                                   NULL, &err),
                                HL_OK);
            }
            free(buf);
            dataset_free(&ds);
        }
        task_free(&t);
    }
}

static void test_bundled_sentiment(void)
{
    static const uint32_t per_class[3] = {300, 100, 100};
    check_bundled("imdb", 2, per_class);
    check_bundled("yelp", 2, per_class);
    check_bundled("amazon", 2, per_class);
}

/* The default task is the `source` task (data/source/SOURCES.md's counts). */
static void test_bundled_source(void)
{
    static const uint32_t per_class[3] = {57, 50, 50};
    check_bundled("source", 3, per_class);
    check_bundled("default", 3, per_class);
    task a, b;
    load_builtin(&a, "source");
    load_builtin(&b, "default");
    CU_ASSERT_STRING_EQUAL(a.causal.source, b.causal.source);
    CU_ASSERT_STRING_EQUAL(a.data_dir, b.data_dir);
    for (int32_t c = 0; c < 3; c++)
        CU_ASSERT_STRING_EQUAL(a.classes[c].causal, b.classes[c].causal);
    task_free(&a);
    task_free(&b);
}

/* Property test: random files of "interesting" bytes never crash a reader,
 * and whatever loads is consistent (labels in range, fields valid UTF-8). */
static void test_readers_random_bytes(void)
{
    static const char *const pieces[] = {"\t", ",", "\"", "\n", "\r\n", "0", "1", "2", "a b",
                                         "\xC3\xA9", "\xFF", "\xE2\x82", "{", "}", ":", "[]",
                                         " ", "sentence\tlabel\n", "\"premise\": \"p\", ",
                                         "\"hypothesis\": \"h\", ", "\"label\": \"entailment\"",
                                         "null", "\xEF\xBB\xBF", "\"\"", "\0"};
    static const char *const tasks[][2] = {{"sst2", "r.tsv"}, {"sst5", "r.csv"}, {"rte", "r.jsonl"}};
    enum { NP = sizeof pieces / sizeof *pieces };
    sample_rng r = sample_rng_init(2024);
    char text[4096], path[512];
    int loaded = 0;
    for (int k = 0; k < 3; k++) {
        task t;
        load_builtin(&t, tasks[k][0]);
        for (int it = 0; it < 300; it++) {
            size_t n = 0;
            static const char *const good[] = {
                "sentence\tlabel\nok\t1\n", "1,ok\n",
                "{\"premise\": \"p\", \"hypothesis\": \"h\", \"label\": \"entailment\"}\n"};
            if (it % 2 == 0)
                n += (size_t)sprintf(text, "%s", good[k]);
            int count = (int)sample_rng_below(&r, 60);
            for (int p = 0; p < count; p++) {
                const char *pc = pieces[sample_rng_below(&r, NP)];
                size_t l = pc[0] ? strlen(pc) : 1; /* "\0" is one NUL byte */
                memcpy(text + n, pc, l);
                n += l;
            }
            write_tmp(path, sizeof path, tasks[k][1], text, n);
            for (int skip = 0; skip < 2; skip++) {
                dataset ds;
                hl_err err;
                hl_err_clear(&err);
                dataset_opts o = {.skip_bad = skip == 1};
                hl_status st = dataset_load_file(&ds, &t, path, &o, &err);
                if (st != HL_OK) {
                    CU_ASSERT(err.msg[0] != '\0');
                    CU_ASSERT_PTR_NULL(ds.ex);
                    continue;
                }
                CU_ASSERT(ds.n >= 1);
                loaded++;
                for (uint32_t i = 0; i < ds.n; i++) {
                    CU_ASSERT(ds.ex[i].label >= 0 && ds.ex[i].label < t.n_classes);
                    CU_ASSERT(ds.ex[i].line >= 1 && ds.ex[i].line <= ds.n_lines);
                    for (int32_t f = 0; f < t.n_fields; f++) {
                        uint32_t len;
                        const char *v = dataset_field(&len, &ds, i, f);
                        CU_ASSERT_EQUAL(strlen(v), len);
                        CU_ASSERT(dataset_utf8_valid(NULL, v, len));
                    }
                }
                dataset_free(&ds);
            }
        }
        task_free(&t);
    }
    CU_ASSERT(loaded > 300); /* the invariants were exercised, not just the errors */
}

/* ---------------------------------------------------------------------------
 * sampling
 * ------------------------------------------------------------------------- */

static void test_rng_reference(void)
{
    /* splitmix64's published first outputs for seed 0 */
    sample_rng r = sample_rng_init(0);
    CU_ASSERT_EQUAL(sample_rng_next(&r), 0xE220A8397B1DCDAFull);
    CU_ASSERT_EQUAL(sample_rng_next(&r), 0x6E789E6AA1B965F4ull);
    CU_ASSERT_EQUAL(sample_rng_next(&r), 0x06C45D188009454Full);
    /* the same values data/sentiment/convert.py computes */
    r = sample_rng_init(42);
    uint32_t a[10];
    for (uint32_t i = 0; i < 10; i++)
        a[i] = i;
    sample_shuffle_u32(a, 10, &r);
    static const uint32_t want[10] = {0, 9, 5, 8, 6, 4, 7, 2, 1, 3};
    CU_ASSERT_EQUAL(memcmp(a, want, sizeof a), 0);
    r = sample_rng_init(42);
    static const uint64_t below[5] = {5, 5, 0, 2, 6};
    for (int i = 0; i < 5; i++)
        CU_ASSERT_EQUAL(sample_rng_below(&r, 7), below[i]);
}

static void load_imdb(task *t, dataset *train, dataset *dev, dataset *test)
{
    load_builtin(t, "imdb");
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(dataset_load(train, t, t->data_dir, DATASET_SPLIT_TRAIN, NULL, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(dataset_load(dev, t, t->data_dir, DATASET_SPLIT_DEV, NULL, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(dataset_load(test, t, t->data_dir, DATASET_SPLIT_TEST, NULL, &err), HL_OK);
}

static bool views_equal(const sample_view *a, const sample_view *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->idx, b->idx, a->n * sizeof *a->idx) == 0);
}

static bool views_disjoint(const sample_view *a, const sample_view *b)
{
    for (uint32_t i = 0; i < a->n; i++)
        for (uint32_t j = 0; j < b->n; j++)
            if (a->idx[i] == b->idx[j])
                return false;
    return true;
}

static void test_kshot_determinism(void)
{
    task t;
    dataset tr, dv, te;
    load_imdb(&t, &tr, &dv, &te);
    hl_err err;
    sample_opts o = {.seed = 13, .k_train = 16, .k_dev = 16};
    sample_splits a, b, c;
    CU_ASSERT_EQUAL_FATAL(sample_make_splits(&a, &tr, NULL, &te, &o, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(sample_make_splits(&b, &tr, NULL, &te, &o, &err), HL_OK);
    o.seed = 21;
    CU_ASSERT_EQUAL_FATAL(sample_make_splits(&c, &tr, NULL, &te, &o, &err), HL_OK);
    CU_ASSERT_EQUAL(a.train.n, 32);
    CU_ASSERT_EQUAL(a.dev.n, 32);
    CU_ASSERT_EQUAL(a.test.n, 200);
    uint32_t counts[2];
    sample_view_class_counts(counts, &a.train);
    CU_ASSERT(counts[0] == 16 && counts[1] == 16);
    sample_view_class_counts(counts, &a.dev);
    CU_ASSERT(counts[0] == 16 && counts[1] == 16);
    CU_ASSERT(views_disjoint(&a.train, &a.dev));
    CU_ASSERT(views_equal(&a.train, &b.train));
    CU_ASSERT(views_equal(&a.dev, &b.dev));
    CU_ASSERT_FALSE(views_equal(&a.train, &c.train));
    CU_ASSERT_FALSE(views_equal(&a.dev, &c.dev));
    CU_ASSERT(views_equal(&a.test, &c.test)); /* all of a test source, file order */
    CU_ASSERT_EQUAL(a.test.idx[199], 199);
    sample_splits_free(&a);
    sample_splits_free(&b);
    sample_splits_free(&c);

    /* too many per class */
    o.k_train = 400;
    expect_err(sample_make_splits(&a, &tr, NULL, &te, &o, &err), &err, "class", "k = 400");
    CU_ASSERT_PTR_NULL(a.train.idx);

    /* MeZO's fixed sizes: train and dev from train, test capped */
    sample_opts m = {.seed = 42, .n_train = 300, .n_dev = 100, .n_test = 150, .dev_from_train = true};
    CU_ASSERT_EQUAL_FATAL(sample_make_splits(&a, &tr, &dv, &te, &m, &err), HL_OK);
    CU_ASSERT_EQUAL(a.train.n, 300);
    CU_ASSERT_EQUAL(a.dev.n, 100);
    CU_ASSERT_EQUAL(a.test.n, 150);
    CU_ASSERT_PTR_EQUAL(a.dev.ds, &tr);
    CU_ASSERT(views_disjoint(&a.train, &a.dev));
    sample_splits_free(&a);
    m.n_test = 5000; /* a cap, not a demand */
    CU_ASSERT_EQUAL_FATAL(sample_make_splits(&a, &tr, &dv, &te, &m, &err), HL_OK);
    CU_ASSERT_EQUAL(a.test.n, 200);
    sample_splits_free(&a);
    m.n_train = 550;
    expect_err(sample_make_splits(&a, &tr, &dv, &te, &m, &err), &err, "dev asks for 100", "50");

    /* one file split in three, the rest to train */
    sample_opts one = {.seed = 7, .n_dev = 100, .n_test = 50};
    CU_ASSERT_EQUAL_FATAL(sample_make_splits(&a, &tr, NULL, NULL, &one, &err), HL_OK);
    CU_ASSERT_EQUAL(a.train.n, 450);
    CU_ASSERT_EQUAL(a.dev.n, 100);
    CU_ASSERT_EQUAL(a.test.n, 50);
    CU_ASSERT(views_disjoint(&a.train, &a.test) && views_disjoint(&a.dev, &a.test));
    sample_splits_free(&a);

    /* a prepared folder: everything as is */
    sample_opts all = {.seed = 1};
    CU_ASSERT_EQUAL_FATAL(sample_make_splits(&a, &tr, &dv, &te, &all, &err), HL_OK);
    CU_ASSERT(a.train.n == 600 && a.dev.n == 200 && a.test.n == 200);
    sample_splits_free(&a);

    dataset_free(&tr);
    dataset_free(&dv);
    dataset_free(&te);
    task_free(&t);
}

/* ---------------------------------------------------------------------------
 * batching
 * ------------------------------------------------------------------------- */

static void test_batcher_cursor_roundtrip(void)
{
    enum { N = 37, B = 4, STEPS = 40 };
    uint32_t lens[N];
    for (uint32_t i = 0; i < N; i++)
        lens[i] = (i * 7919u) % 50 + 1;
    sample_batcher b;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(sample_batcher_init(&b, N, B, lens, 4, 99, &err), HL_OK);
    CU_ASSERT_EQUAL(b.n_batches, 10);
    uint32_t rec[STEPS][B], cnt[STEPS];
    sample_cursor cur = {.seed = 99, .step = 0};
    for (int s = 0; s < STEPS; s++)
        cnt[s] = sample_batcher_next(rec[s], &b, &cur);
    CU_ASSERT_EQUAL(cur.step, STEPS);
    /* every epoch visits every position once */
    for (int e = 0; e < STEPS / 10; e++) {
        int seen[N] = {0};
        uint32_t total = 0;
        for (int s = e * 10; s < e * 10 + 10; s++)
            for (uint32_t k = 0; k < cnt[s]; k++)
                seen[rec[s][k]]++, total++;
        CU_ASSERT_EQUAL(total, N);
        for (int i = 0; i < N; i++)
            CU_ASSERT_EQUAL(seen[i], 1);
    }
    /* epochs differ */
    CU_ASSERT_NOT_EQUAL(memcmp(rec[0], rec[10], sizeof rec[0]), 0);

    /* restore a checkpointed cursor into a fresh batcher: same batches */
    sample_batcher b2;
    CU_ASSERT_EQUAL_FATAL(sample_batcher_init(&b2, N, B, lens, 4, 12345, &err), HL_OK);
    sample_cursor saved = {.seed = 99, .step = 13};
    for (int s = 13; s < STEPS; s++) {
        uint32_t out[B];
        uint32_t m = sample_batcher_next(out, &b2, &saved);
        CU_ASSERT_EQUAL(m, cnt[s]);
        CU_ASSERT_EQUAL(memcmp(out, rec[s], m * sizeof *out), 0);
    }
    /* random access is a pure function of (seed, step) */
    uint32_t out[B];
    uint32_t m = sample_batcher_get(out, &b, 25);
    CU_ASSERT(m == cnt[25] && memcmp(out, rec[25], m * sizeof *out) == 0);
    m = sample_batcher_get(out, &b, 3);
    CU_ASSERT(m == cnt[3] && memcmp(out, rec[3], m * sizeof *out) == 0);
    sample_batcher_free(&b2);

    /* grouping by length reduces padding against a plain shuffle */
    sample_batcher plain;
    CU_ASSERT_EQUAL_FATAL(sample_batcher_init(&plain, N, B, NULL, 0, 99, &err), HL_OK);
    uint64_t pad_grouped = 0, pad_plain = 0;
    for (uint64_t s = 0; s < 100; s++) {
        uint32_t o1[B], o2[B];
        uint32_t m1 = sample_batcher_get(o1, &b, s), m2 = sample_batcher_get(o2, &plain, s);
        uint32_t mx = 0;
        for (uint32_t k = 0; k < m1; k++)
            mx = lens[o1[k]] > mx ? lens[o1[k]] : mx;
        for (uint32_t k = 0; k < m1; k++)
            pad_grouped += mx - lens[o1[k]];
        mx = 0;
        for (uint32_t k = 0; k < m2; k++)
            mx = lens[o2[k]] > mx ? lens[o2[k]] : mx;
        for (uint32_t k = 0; k < m2; k++)
            pad_plain += mx - lens[o2[k]];
    }
    CU_ASSERT(pad_grouped * 2 < pad_plain);
    sample_batcher_free(&plain);
    sample_batcher_free(&b);

    /* evaluation order */
    uint32_t order[N], scratch[N];
    sample_order_by_length(order, scratch, lens, N);
    for (uint32_t i = 1; i < N; i++)
        CU_ASSERT(lens[order[i - 1]] < lens[order[i]] ||
                  (lens[order[i - 1]] == lens[order[i]] && order[i - 1] < order[i]));
    CU_ASSERT_EQUAL(sample_batcher_init(&b, 0, 4, NULL, 0, 1, &err), HL_ERR_INVALID);
}

/* ---------------------------------------------------------------------------
 * registration
 * ------------------------------------------------------------------------- */

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("task", suite_init, suite_clean);
    if (!s)
        exit(2);
    TEST_ADD(s, test_builtins_load);
    TEST_ADD(s, test_find_and_list);
    TEST_ADD(s, test_task_validation);
    TEST_ADD(s, test_masked_templates_validate);
    TEST_ADD(s, test_render_causal_exact);
    TEST_ADD(s, test_render_masked_exact);
    TEST_ADD(s, test_render_placeholders);
    TEST_ADD(s, test_truncate_left_keeps_template);
    TEST_ADD(s, test_tsv_fixture);
    TEST_ADD(s, test_tsv_crlf_bom_blank_quotes);
    TEST_ADD(s, test_tsv_long_line);
    TEST_ADD(s, test_tsv_malformed);
    TEST_ADD(s, test_skip_bad_counts);
    TEST_ADD(s, test_csv_quoting);
    TEST_ADD(s, test_csv_with_header);
    TEST_ADD(s, test_jsonl_superglue);
    TEST_ADD(s, test_jsonl_malformed);
    TEST_ADD(s, test_skip_labels_filtered);
    TEST_ADD(s, test_folders);
    TEST_ADD(s, test_bundled_sentiment);
    TEST_ADD(s, test_bundled_source);
    TEST_ADD(s, test_readers_random_bytes);
    TEST_ADD(s, test_rng_reference);
    TEST_ADD(s, test_kshot_determinism);
    TEST_ADD(s, test_batcher_cursor_roundtrip);
}

TEST_MAIN(register_tests)

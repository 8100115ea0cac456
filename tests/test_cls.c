/* test_cls.c - classification losses against the float64 PyTorch reference.
 *
 * tests/ref/task_losses.py wrote tests/fixtures/tasks/expected_losses.json:
 * for several tiny fixture models (OPT pre-LN, OPT post-LN, GPT-2; F32 and
 * rounded F16/BF16 weights) and two tasks on the 20-line SST-2 fixture (the
 * built-in sst2, single-token words, and sst2-multitoken, whose " awful" is 4
 * tokens so the full log-softmax path is used), the tokenized prompts, the
 * label-word tokens, the normalised class log-probabilities, the losses and
 * the predictions.  Here the whole path of `helene eval` - task, data file,
 * rendering, tokenization, cls_score, the predictions file - must reproduce
 * them: prompts exactly, class log-probabilities within 1e-5.  cls_score is
 * also driven directly: a small batch with an unlabelled example, and the
 * size checks.
 */
#include <cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cls.h"
#include "lm.h"
#include "runcfg.h"
#include "task.h"
#include "taskobj.h"
#include "testutil.h"

#define EXPECTED HELENE_TESTDIR "/fixtures/tasks/expected_losses.json"
#define DATA HELENE_TESTDIR "/fixtures/tasks/sst2.tsv"
#define ATOL 1e-5

static cJSON *expected;

static int suite_init(void)
{
    FILE *f = fopen(EXPECTED, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return -1;
    }
    buf[n] = '\0';
    fclose(f);
    expected = cJSON_Parse(buf);
    free(buf);
    return expected ? 0 : -1;
}

static int suite_clean(void)
{
    cJSON_Delete(expected);
    expected = NULL;
    return 0;
}

/* --------------------------------------------------------------- helpers --- */

static int32_t json_len(const cJSON *a)
{
    return cJSON_IsArray(a) ? (int32_t)cJSON_GetArraySize(a) : -1;
}

/* The task value for runcfg: the fixture file when there is one, else the
 * built-in of that name. */
static void task_arg(char *out, size_t cap, const char *name)
{
    snprintf(out, cap, "%s/fixtures/tasks/%s.json", HELENE_TESTDIR, name);
    if (access(out, R_OK) != 0)
        snprintf(out, cap, "%s", name);
}

static bool open_model(lm *l, const char *folder)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/fixtures/models/%s", HELENE_TESTDIR, folder);
    hl_err err;
    if (lm_open(l, dir, 1, &err) != HL_OK) {
        fprintf(stderr, "\n  lm_open %s: %s\n", dir, err.msg);
        return false;
    }
    return true;
}

/* Token ids of a JSON array of integers into out[0, cap); returns the count
 * or -1. */
static int32_t json_ids(int32_t *out, int32_t cap, const cJSON *a)
{
    int32_t n = json_len(a);
    if (n < 0 || n > cap)
        return -1;
    for (int32_t i = 0; i < n; i++)
        out[i] = (int32_t)cJSON_GetArrayItem(a, i)->valuedouble;
    return n;
}

/* Compare the tokenized prompts with prompt_ids; returns mismatches. */
static int check_prompts(const char *what, const cls_example *ex, int32_t n, const cJSON *want)
{
    int bad = 0;
    if (n != json_len(want)) {
        fprintf(stderr, "\n  %s: %d examples, want %d\n", what, n, json_len(want));
        return 1;
    }
    for (int32_t i = 0; i < n; i++) {
        const cJSON *w = cJSON_GetArrayItem(want, i);
        int32_t nw = json_len(w);
        int32_t j = 0;
        while (j < nw && j < ex[i].n_prompt &&
               ex[i].prompt[j] == (int32_t)cJSON_GetArrayItem(w, j)->valuedouble)
            j++;
        if (j == nw && nw == ex[i].n_prompt)
            continue;
        if (bad++ < 3)
            fprintf(stderr,
                    "\n  %s: example %d: prompt of %d tokens, want %d; first difference at "
                    "token %d (got %d, want %d)\n",
                    what, i, ex[i].n_prompt, nw, j, j < ex[i].n_prompt ? ex[i].prompt[j] : -1,
                    j < nw ? (int32_t)cJSON_GetArrayItem(w, j)->valuedouble : -1);
    }
    return bad;
}

/* ------------------------------------------------- the evaluation path --- */

/* One model x one task: taskobj_create_eval + taskobj_evaluate against the
 * reference.  Returns the number of failed checks. */
static int check_task(lm *l, const char *folder, const cJSON *want)
{
    const char *tname = want->string;
    char what[160];
    snprintf(what, sizeof what, "%s/%s", folder, tname);
    const cJSON *w_scores = cJSON_GetObjectItemCaseSensitive(want, "scores");
    const cJSON *w_losses = cJSON_GetObjectItemCaseSensitive(want, "losses");
    const cJSON *w_preds = cJSON_GetObjectItemCaseSensitive(want, "preds");
    const cJSON *w_prompts = cJSON_GetObjectItemCaseSensitive(want, "prompt_ids");
    const cJSON *w_labels = cJSON_GetObjectItemCaseSensitive(want, "labels");
    const int32_t n = json_len(w_preds);
    if (n < 1 || json_len(w_scores) != n || json_len(w_losses) != n ||
        json_len(w_prompts) != n || json_len(w_labels) != n) {
        fprintf(stderr, "\n  %s: malformed expected entry\n", what);
        return 1;
    }
    const int32_t K = json_len(cJSON_GetArrayItem(w_scores, 0));

    runcfg c;
    runcfg_init(&c);
    char targ[512];
    task_arg(targ, sizeof targ, tname);
    hl_err err;
    taskobj *t = NULL;
    int bad = 0;
    if (runcfg_set(&c, "task", targ, &err) || runcfg_set(&c, "data", DATA, &err) ||
        taskobj_create_eval(&t, l, &c, TASKOBJ_SPLIT_DEV, &err)) {
        fprintf(stderr, "\n  %s: %s\n", what, err.msg);
        runcfg_free(&c);
        return 1;
    }
    runcfg_free(&c);
    if (strcmp(taskobj_task_name(t), tname) != 0) {
        fprintf(stderr, "\n  %s: task name %s\n", what, taskobj_task_name(t));
        bad++;
    }
    if (taskobj_task(t)->n_classes != K) {
        fprintf(stderr, "\n  %s: %d classes, want %d\n", what, taskobj_task(t)->n_classes, K);
        taskobj_free(t);
        return bad + 1;
    }

    int32_t n_ex = 0;
    const cls_example *ex = taskobj_examples(t, TASKOBJ_SPLIT_DEV, &n_ex);
    bad += check_prompts(what, ex, n_ex, w_prompts);
    /* masked LM: the label words are read at the template's <mask> */
    const cJSON *w_mask = cJSON_GetObjectItemCaseSensitive(want, "mask_positions");
    if (w_mask) {
        CU_ASSERT_FATAL(json_len(w_mask) == n_ex);
        for (int32_t i = 0; i < n_ex; i++)
            if (ex[i].mask_pos != cJSON_GetArrayItem(w_mask, i)->valueint && bad++ < 3)
                fprintf(stderr, "\n  %s: example %d has <mask> at %d, want %d\n", what, i,
                        ex[i].mask_pos, cJSON_GetArrayItem(w_mask, i)->valueint);
    }
    for (int32_t i = 0; i < n_ex && i < n; i++)
        if (ex[i].label != cJSON_GetArrayItem(w_labels, i)->valueint) {
            if (bad++ < 3)
                fprintf(stderr, "\n  %s: example %d has label %d, want %d\n", what, i,
                        ex[i].label, cJSON_GetArrayItem(w_labels, i)->valueint);
        }

    FILE *pf = tmpfile();
    double acc = 0, loss = 0;
    if (!pf || taskobj_evaluate(t, &acc, &loss, TASKOBJ_SPLIT_DEV, pf, &err)) {
        fprintf(stderr, "\n  %s: evaluate: %s\n", what, pf ? err.msg : "no tmpfile");
        if (pf)
            fclose(pf);
        taskobj_free(t);
        return bad + 1;
    }
    taskobj_free(t);
    rewind(pf);

    float *got = calloc((size_t)n * (size_t)K, sizeof *got);
    float *ref = calloc((size_t)n * (size_t)K, sizeof *ref);
    float *gloss = calloc((size_t)n, sizeof *gloss);
    float *rloss = calloc((size_t)n, sizeof *rloss);
    if (!got || !ref || !gloss || !rloss) {
        free(got), free(ref), free(gloss), free(rloss);
        fclose(pf);
        return bad + 1;
    }
    double want_loss = 0;
    int32_t want_correct = 0, lines = 0;
    char line[1024];
    while (fgets(line, sizeof line, pf)) {
        char *p = line, *end;
        long idx = strtol(p, &end, 10), gold, pred;
        if (end == p || *end != '\t' || idx != lines || idx >= n) {
            fprintf(stderr, "\n  %s: predictions line %d: %s", what, lines, line);
            bad++;
            break;
        }
        gold = strtol(p = end + 1, &end, 10);
        pred = strtol(p = end + 1, &end, 10);
        const int32_t wl = cJSON_GetArrayItem(w_labels, (int)idx)->valueint;
        const int32_t wp = cJSON_GetArrayItem(w_preds, (int)idx)->valueint;
        const cJSON *ws = cJSON_GetArrayItem(w_scores, (int)idx);
        if (gold != wl || pred != wp) {
            if (bad++ < 3)
                fprintf(stderr, "\n  %s: example %ld: gold %ld pred %ld, want gold %d pred %d\n",
                        what, idx, gold, pred, wl, wp);
        }
        for (int32_t k = 0; k < K; k++) {
            double v = strtod(p = end + 1, &end);
            if (end == p) {
                fprintf(stderr, "\n  %s: predictions line %ld: no class %d\n", what, idx, k);
                bad++;
            }
            got[idx * K + k] = (float)v;
            ref[idx * K + k] = (float)cJSON_GetArrayItem(ws, k)->valuedouble;
            if (k == gold && gold >= 0 && gold < K)
                gloss[idx] = (float)-v;
        }
        rloss[idx] = (float)cJSON_GetArrayItem(w_losses, (int)idx)->valuedouble;
        want_loss += cJSON_GetArrayItem(w_losses, (int)idx)->valuedouble;
        want_correct += wp == wl;
        lines++;
    }
    fclose(pf);
    if (lines != n) {
        fprintf(stderr, "\n  %s: %d prediction lines, want %d\n", what, lines, n);
        bad++;
    }
    char name[200];
    snprintf(name, sizeof name, "%s logprob", what);
    bad += test_close_floats(name, got, ref, (size_t)n * (size_t)K, 0, ATOL) != 0;
    snprintf(name, sizeof name, "%s -logprob[gold]", what);
    bad += test_close_floats(name, gloss, rloss, (size_t)n, 0, ATOL) != 0;
    want_loss /= n;
    if (!(fabs(loss - want_loss) <= ATOL)) {
        fprintf(stderr, "\n  %s: mean loss %.8f, want %.8f\n", what, loss, want_loss);
        bad++;
    }
    if (fabs(acc - (double)want_correct / n) > 1e-12) {
        fprintf(stderr, "\n  %s: accuracy %.4f, want %.4f\n", what, acc,
                (double)want_correct / n);
        bad++;
    }
    double maxdiff = 0;
    for (int32_t i = 0; i < n * K; i++)
        maxdiff = fmax(maxdiff, fabs((double)got[i] - (double)ref[i]));
    printf("\n    %-32s %d examples, mean loss %.6f (ref %.6f), accuracy %.2f, max |dlogprob| "
           "%.1e",
           what, n, loss, want_loss, acc, maxdiff);
    free(got), free(ref), free(gloss), free(rloss);
    return bad;
}

static void test_eval_matches_reference(void)
{
    CU_ASSERT_FATAL(cJSON_IsObject(expected));
    int models = 0, tasks = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, expected)
    {
        lm l;
        models++;
        if (!open_model(&l, m->string)) {
            CU_FAIL("lm_open");
            continue;
        }
        const cJSON *tk;
        cJSON_ArrayForEach(tk, m)
        {
            tasks++;
            int bad = check_task(&l, m->string, tk);
            if (bad)
                fprintf(stderr, "\n  %s/%s: %d failed checks\n", m->string, tk->string, bad);
            CU_ASSERT_EQUAL(bad, 0);
        }
        lm_close(&l);
    }
    CU_ASSERT(models >= 4);
    CU_ASSERT(tasks >= 8);
}

/* ------------------------------------------------ cls_score directly --- */

/* Two examples of the reference (the second unlabelled), both tasks, on
 * opt-tiny-f32; then the size checks. */
static void direct_case(lm *l, const cJSON *want)
{
    const char *what = want->string;
    const cJSON *w_words = cJSON_GetObjectItemCaseSensitive(want, "word_ids");
    const cJSON *w_prompts = cJSON_GetObjectItemCaseSensitive(want, "prompt_ids");
    const cJSON *w_scores = cJSON_GetObjectItemCaseSensitive(want, "scores");
    const cJSON *w_losses = cJSON_GetObjectItemCaseSensitive(want, "losses");
    const cJSON *w_preds = cJSON_GetObjectItemCaseSensitive(want, "preds");
    const cJSON *w_labels = cJSON_GetObjectItemCaseSensitive(want, "labels");
    enum { K = 2, MAXW = 16, MAXP = 64 };
    CU_ASSERT_FATAL(json_len(w_words) == K);

    /* the continuations, tokenized by the C tokenizer, are the reference's */
    char task_file[512];
    task_arg(task_file, sizeof task_file, what);
    task tk;
    hl_err err;
    CU_ASSERT_FATAL(task_find(&tk, task_file, &err) == HL_OK);
    int32_t words[K][MAXW], n_words[K];
    const int32_t *wp[K];
    for (int c = 0; c < K; c++) {
        n_words[c] = json_ids(words[c], MAXW, cJSON_GetArrayItem(w_words, c));
        CU_ASSERT_FATAL(n_words[c] >= 1);
        wp[c] = words[c];
        int32_t *ids = NULL;
        size_t n = 0;
        const char *cont = tk.classes[c].causal;
        CU_ASSERT_FATAL(bpe_encode_alloc(&l->tok, cont, strlen(cont), &ids, &n, &err) == HL_OK);
        CU_ASSERT_EQUAL(n, (size_t)n_words[c]);
        if (n == (size_t)n_words[c])
            CU_ASSERT(memcmp(ids, words[c], n * sizeof *ids) == 0);
        free(ids);
    }
    task_free(&tk);

    int32_t prompts[2][MAXP];
    cls_example ex[3];
    int32_t max_prompt = 0;
    for (int i = 0; i < 2; i++) {
        ex[i].n_prompt = json_ids(prompts[i], MAXP, cJSON_GetArrayItem(w_prompts, i));
        CU_ASSERT_FATAL(ex[i].n_prompt >= 1);
        ex[i].prompt = prompts[i];
        ex[i].label = cJSON_GetArrayItem(w_labels, i)->valueint;
        if (ex[i].n_prompt > max_prompt)
            max_prompt = ex[i].n_prompt;
    }
    ex[1].label = -1; /* unknown: no loss */
    ex[2] = ex[0];

    cls_scorer s;
    CU_ASSERT_FATAL(cls_scorer_init(&s, &l->model, wp, n_words, K, 2, max_prompt, &err) ==
                    HL_OK);
    double losses[2] = {-1, -1}, scores[2 * K];
    int32_t pred[2] = {-1, -1};
    CU_ASSERT_FATAL(cls_score(&s, losses, pred, scores, ex, 2, &err) == HL_OK);
    float got[2 * K], ref[2 * K];
    for (int i = 0; i < 2; i++) {
        CU_ASSERT_EQUAL(pred[i], cJSON_GetArrayItem(w_preds, i)->valueint);
        for (int c = 0; c < K; c++) {
            got[i * K + c] = (float)scores[i * K + c];
            ref[i * K + c] =
                (float)cJSON_GetArrayItem(cJSON_GetArrayItem(w_scores, i), c)->valuedouble;
        }
    }
    CU_ASSERT_EQUAL(test_close_floats(what, got, ref, 2 * K, 0, ATOL), 0);
    CU_ASSERT(fabs(losses[0] - cJSON_GetArrayItem(w_losses, 0)->valuedouble) <= ATOL);
    CU_ASSERT_EQUAL(losses[1], 0.0);

    /* NULL outputs are allowed */
    CU_ASSERT_EQUAL(cls_score(&s, NULL, NULL, NULL, ex, 2, &err), HL_OK);

    /* more examples than max_batch; a prompt longer than max_prompt; a label
     * beyond the classes */
    CU_ASSERT_NOT_EQUAL(cls_score(&s, losses, pred, scores, ex, 3, &err), HL_OK);
    int32_t longp[MAXP + 1];
    for (int j = 0; j <= max_prompt; j++)
        longp[j] = j < ex[0].n_prompt ? ex[0].prompt[j] : ex[0].prompt[0];
    cls_example bad[2] = {ex[0], {.prompt = longp, .n_prompt = max_prompt + 1, .label = 0}};
    CU_ASSERT_NOT_EQUAL(cls_score(&s, losses, pred, scores, bad, 2, &err), HL_OK);
    bad[1] = ex[0];
    bad[1].label = K;
    CU_ASSERT_NOT_EQUAL(cls_score(&s, losses, pred, scores, bad, 2, &err), HL_OK);
    cls_scorer_free(&s);

    /* prompt + longest word beyond the context is refused at init (only
     * checked when a word has several tokens; one-token words score the last
     * prompt position) */
    int32_t max_word = n_words[0] > n_words[1] ? n_words[0] : n_words[1];
    if (max_word > 1) {
        CU_ASSERT_NOT_EQUAL(cls_scorer_init(&s, &l->model, wp, n_words, K, 2,
                                            l->model.cfg.max_pos - max_word + 1, &err),
                            HL_OK);
        CU_ASSERT_EQUAL(cls_scorer_init(&s, &l->model, wp, n_words, K, 2,
                                        l->model.cfg.max_pos - max_word, &err),
                        HL_OK);
        cls_scorer_free(&s);
    }
}

static void test_cls_score_direct(void)
{
    CU_ASSERT_FATAL(cJSON_IsObject(expected));
    const char *folder = "opt-tiny-f32";
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(expected, folder);
    CU_ASSERT_FATAL(cJSON_IsObject(m));
    lm l;
    CU_ASSERT_FATAL(open_model(&l, folder));
    const cJSON *tk;
    cJSON_ArrayForEach(tk, m) direct_case(&l, tk);
    lm_close(&l);
}

static void register_tests(void)
{
    CU_pSuite s = CU_add_suite("cls", suite_init, suite_clean);
    TEST_ADD(s, test_eval_matches_reference);
    TEST_ADD(s, test_cls_score_direct);
}

TEST_MAIN(register_tests)

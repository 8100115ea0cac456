/* cmd_task.c - `helene eval` and `helene data`: tasks seen from the shell. */
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint.h"
#include "cli.h"
#include "dataset.h"
#include "commands.h"
#include "lm.h"
#include "task.h"
#include "taskobj.h"

const char cmd_eval_usage[] =
    "usage: helene eval --model DIR | --checkpoint DIR [--task NAME|FILE] [--data PATH]\n"
    "                   [--split dev|test] [--json] [--predictions FILE] [--max-tokens N]\n"
    "                   [--skip-bad] [--threads N]\n"
    "\n"
    "Zero-shot (or fine-tuned) accuracy of a model on a prompt-based task: each\n"
    "example becomes the task's prompt, each class its label word, and the\n"
    "prediction is the label word the model scores highest (a masked LM such as\n"
    "RoBERTa: the word it predicts at the task's <mask>).\n"
    "\n"
    "  --model DIR         model folder\n"
    "  --checkpoint DIR    a checkpoint of helene train --save instead: its model\n"
    "                      with the tuned weights or --peft adapters (--model then\n"
    "                      only says where the base model is now); the task and data\n"
    "                      default to the run's\n"
    "  --task NAME|FILE    built-in task (sst2, sst5, rte, cb, boolq, wic, wsc, multirc,\n"
    "                      snli, mnli, trec, source, imdb, yelp, amazon, default) or a\n"
    "                      task JSON file (default: default, = source: which work a\n"
    "                      passage is from, Bible / Austen / State of the Union)\n"
    "  --data PATH         a data FILE (every example is evaluated) or a dataset\n"
    "                      folder (its dev split, or --split); default: the task's\n"
    "                      bundled data\n"
    "  --split dev|test    which split of a folder (default dev)\n"
    "  --json              print {\"accuracy\", \"n\", \"loss\", \"task\", \"split\"}\n"
    "  --predictions FILE  one line per example: index, gold, predicted, then the\n"
    "                      log-probability of each class (tab-separated)\n"
    "  --max-tokens N      prompt token limit (longer inputs are cut from the left)\n"
    "  --skip-bad          skip malformed data lines (and report how many)\n"
    "  --threads N         compute threads (default: all online CPUs)\n";

const char cmd_data_usage[] =
    "usage: helene data [--task NAME|FILE] [--data PATH] [--model DIR] [--train-size N]\n"
    "                   [--dev-size N] [--k-shot K] [--data-seed S] [--max-tokens N]\n"
    "                   [--skip-bad]\n"
    "\n"
    "Show what a model will see: examples per class and split (as `helene train`\n"
    "draws them with the same flags), prompt token-length percentiles, and three\n"
    "rendered prompts with their label words.  Tokens are counted with DIR's\n"
    "tokenizer; without --model, with the bundled default model's (the model\n"
    "helene train uses without --model), or GPT-2's if that is not installed.\n";

static const char *split_names[3] = {"train", "dev", "test"};

int cmd_eval(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(cmd_eval_usage, stdout);
        return 0;
    }
    const char *model_dir = NULL, *taskname = NULL, *data = NULL, *split = "dev", *pred = NULL;
    const char *ckpt = NULL;
    bool json = false, skip_bad = false;
    long threads = cli_default_threads(), max_tokens = 0;
    cli_flag flags[] = {
        {"model", CLI_KIND_STRING, &model_dir, 0, 0, false},
        {"checkpoint", CLI_KIND_STRING, &ckpt, 0, 0, false},
        {"task", CLI_KIND_STRING, &taskname, 0, 0, false},
        {"data", CLI_KIND_STRING, &data, 0, 0, false},
        {"split", CLI_KIND_STRING, &split, 0, 0, false},
        {"predictions", CLI_KIND_STRING, &pred, 0, 0, false},
        {"json", CLI_KIND_BOOL, &json, 0, 0, false},
        {"skip-bad", CLI_KIND_BOOL, &skip_bad, 0, 0, false},
        {"max-tokens", CLI_KIND_INT, &max_tokens, 1, 1 << 20, false},
        {"threads", CLI_KIND_INT, &threads, 1, POOL_MAX_THREADS, false},
        {NULL, CLI_KIND_BOOL, NULL, 0, 0, false},
    };
    const char *pos[1];
    int npos;
    if (!cli_parse("eval", argc, argv, flags, pos, 0, &npos))
        return 2;
    if (!model_dir && !ckpt) {
        fprintf(stderr, "helene eval: --model DIR or --checkpoint DIR is required (see 'helene "
                        "help eval')\n");
        return 2;
    }
    taskobj_split sp;
    if (!strcmp(split, "dev"))
        sp = TASKOBJ_SPLIT_DEV;
    else if (!strcmp(split, "test"))
        sp = TASKOBJ_SPLIT_TEST;
    else {
        fprintf(stderr, "helene eval: --split must be dev or test, got '%s'\n", split);
        return 2;
    }
    runcfg cfg;
    runcfg_init(&cfg);
    hl_err err;
    hl_err_clear(&err);
    if (ckpt && checkpoint_read_config(&cfg, ckpt, &err)) {
        fprintf(stderr, "helene eval: %s\n", err.msg);
        runcfg_free(&cfg);
        return 1;
    }
    if (ckpt && (cfg.objective != RUNCFG_OBJECTIVE_MODEL || !cfg.model[0])) {
        fprintf(stderr, "helene eval: %s: not a model checkpoint (analytic objective)\n", ckpt);
        runcfg_free(&cfg);
        return 1;
    }
    if (ckpt && !model_dir)
        model_dir = cfg.model;
    if (ckpt && !data && cfg.data[0])
        data = cfg.data;
    if ((taskname && runcfg_set(&cfg, "task", taskname, &err)) ||
        (data && runcfg_set(&cfg, "data", data, &err))) {
        fprintf(stderr, "helene eval: %s\n", err.msg);
        runcfg_free(&cfg);
        return 2;
    }
    if (max_tokens || !ckpt)
        cfg.max_tokens = (int32_t)max_tokens;
    cfg.skip_bad = skip_bad;
    lm l;
    if (lm_open(&l, model_dir, (int)threads, &err)) {
        fprintf(stderr, "helene eval: %s\n", err.msg);
        runcfg_free(&cfg);
        return 1;
    }
    checkpoint_info ci;
    if (ckpt && (model_peft_attach_text(&l.model, cfg.peft, cfg.base_hash, cfg.seed, NULL, 0,
                                        &err) ||
                 checkpoint_load(ckpt, model_trainable(&l.model), NULL, &ci, &err))) {
        fprintf(stderr, "helene eval: %s: %s\n", ckpt, err.msg);
        lm_close(&l);
        runcfg_free(&cfg);
        return 1;
    }
    taskobj *t = NULL;
    int rc = 0;
    FILE *pf = NULL;
    if (taskobj_create_eval(&t, &l, &cfg, sp, &err)) {
        fprintf(stderr, "helene eval: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    if (pred && !(pf = fopen(pred, "w"))) {
        fprintf(stderr, "helene eval: %s: %s\n", pred, strerror(errno));
        rc = 1;
        goto done;
    }
    double acc, loss;
    if (taskobj_evaluate(t, &acc, &loss, sp, pf, &err)) {
        fprintf(stderr, "helene eval: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    int32_t n = taskobj_split_size(t, sp);
    char first_bad[HL_ERR_MSG_MAX];
    int64_t bad = taskobj_bad_lines(t, first_bad, sizeof first_bad);
    if (bad)
        fprintf(stderr, "helene eval: skipped %lld malformed line(s); the first: %s\n",
                (long long)bad, first_bad);
    if (n == 0) {
        fprintf(stderr, "helene eval: no examples to evaluate\n");
        rc = 1;
        goto done;
    }
    if (json) {
        printf("{\"accuracy\":%.6f,\"n\":%d,\"loss\":%.6f,\"task\":\"%s\",\"split\":\"%s\"}\n",
               acc, n, loss, taskobj_task_name(t), split_names[sp]);
    } else {
        printf("task      %s\n", taskobj_task_name(t));
        if (data && !dataset_is_folder(data))
            printf("data      %s (every example)\n", data);
        else
            printf("data      %s (%s split)\n", data ? data : "the task's bundled data",
                   split_names[sp]);
        printf("examples  %d\n", n);
        printf("accuracy  %.4f\n", acc);
        printf("loss      %.4f (mean cross-entropy over the label words)\n", loss);
    }
done:
    if (pf && fclose(pf) != 0) {
        fprintf(stderr, "helene eval: %s: write error\n", pred);
        rc = 1;
    }
    if (t)
        taskobj_free(t);
    lm_close(&l);
    runcfg_free(&cfg);
    return rc;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void print_escaped(const char *s)
{
    for (; *s; s++) {
        if (*s == '\n')
            fputs("\\n", stdout);
        else if (*s == '\t')
            fputs("\\t", stdout);
        else if ((unsigned char)*s < 0x20)
            printf("\\x%02x", (unsigned char)*s);
        else
            putchar(*s);
    }
}

int cmd_data(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(cmd_data_usage, stdout);
        return 0;
    }
    const char *model_dir = NULL, *taskname = NULL, *data = NULL;
    long train_size = 0, dev_size = 0, seed = 13, max_tokens = 0, k_shot = 0;
    bool skip_bad = false;
    cli_flag flags[] = {
        {"model", CLI_KIND_STRING, &model_dir, 0, 0, false},
        {"task", CLI_KIND_STRING, &taskname, 0, 0, false},
        {"data", CLI_KIND_STRING, &data, 0, 0, false},
        {"train-size", CLI_KIND_INT, &train_size, 0, 1e8, false},
        {"k-shot", CLI_KIND_INT, &k_shot, 0, 1000000, false},
        {"dev-size", CLI_KIND_INT, &dev_size, 0, 1e8, false},
        {"data-seed", CLI_KIND_INT, &seed, 0, 9e18, false},
        {"max-tokens", CLI_KIND_INT, &max_tokens, 1, 1 << 20, false},
        {"skip-bad", CLI_KIND_BOOL, &skip_bad, 0, 0, false},
        {NULL, CLI_KIND_BOOL, NULL, 0, 0, false},
    };
    const char *pos[1];
    int npos;
    if (!cli_parse("data", argc, argv, flags, pos, 0, &npos))
        return 2;
    runcfg cfg;
    runcfg_init(&cfg);
    hl_err err;
    hl_err_clear(&err);
    if ((taskname && runcfg_set(&cfg, "task", taskname, &err)) ||
        (data && runcfg_set(&cfg, "data", data, &err))) {
        fprintf(stderr, "helene data: %s\n", err.msg);
        runcfg_free(&cfg);
        return 2;
    }
    cfg.train_size = (int32_t)train_size;
    cfg.k_shot = (int32_t)k_shot;
    cfg.dev_size = (int32_t)dev_size;
    cfg.data_seed = (uint64_t)seed;
    cfg.max_tokens = (int32_t)max_tokens;
    cfg.skip_bad = skip_bad;

    bpe tok;
    memset(&tok, 0, sizeof tok);
    model_config mc;
    char vocab[4200], merges[4200];
    bool add_bos = false, masked = false;
    int32_t bos = -1, max_pos = 1024;
    const char *tok_name = "bundled GPT-2";
    char bundled[4200];
    if (!model_dir && lm_bundled_path(bundled, sizeof bundled, LM_BUNDLED_MODEL "/config.json")) {
        /* as helene train: the bundled model when it is installed */
        char *slash = strrchr(bundled, '/');
        *slash = '\0';
        model_dir = bundled;
    }
    if (model_dir) {
        if (model_config_load(&mc, model_dir, &err)) {
            fprintf(stderr, "helene data: %s\n", err.msg);
            runcfg_free(&cfg);
            return 1;
        }
        snprintf(vocab, sizeof vocab, "%s/vocab.json", model_dir);
        snprintf(merges, sizeof merges, "%s/merges.txt", model_dir);
        add_bos = mc.add_bos;
        masked = model_is_masked_lm(&mc);
        bos = mc.bos_id;
        max_pos = mc.max_pos;
        tok_name = model_dir;
    } else if (!lm_bundled_path(vocab, sizeof vocab, "gpt2/vocab.json") ||
               !lm_bundled_path(merges, sizeof merges, "gpt2/merges.txt")) {
        fprintf(stderr, "helene data: the bundled GPT-2 vocabulary is missing; give --model DIR "
                        "or set HELENE_DATA_DIR\n");
        runcfg_free(&cfg);
        return 1;
    }
    char tjson[4200] = "";
    if (model_dir && (access(vocab, F_OK) != 0 || access(merges, F_OK) != 0))
        snprintf(tjson, sizeof tjson, "%s/tokenizer.json", model_dir);
    if (tjson[0] ? bpe_load_tokenizer_json(&tok, tjson, &err) : bpe_load(&tok, vocab, merges, &err)) {
        fprintf(stderr, "helene data: %s\n", err.msg);
        runcfg_free(&cfg);
        return 1;
    }
    if (tjson[0] && !mc.add_bos_known && tok.prepend_id >= 0) { /* as lm_open decides */
        add_bos = true;
        bos = tok.prepend_id;
    }
    taskobj *t = NULL;
    int rc = 0;
    if (taskobj_create_data(&t, &tok, masked, add_bos, bos, max_pos, &cfg, &err)) {
        fprintf(stderr, "helene data: %s\n", err.msg);
        rc = 1;
        goto done;
    }
    const task *tk = taskobj_task(t);
    printf("task       %s: %s\n", tk->name, tk->description ? tk->description : "");
    const task_model kind = masked ? TASK_MODEL_MASKED : TASK_MODEL_CAUSAL;
    const task_template *tpl = masked ? &tk->masked : &tk->causal;
    printf("template   \"");
    print_escaped(tpl->source ? tpl->source : "");
    printf("\"%s\nwords     ", masked ? " (masked LM)" : "");
    for (int c = 0; c < tk->n_classes; c++) {
        printf(" \"");
        print_escaped(task_class_word(tk, kind, c));
        printf("\" (%s)", tk->classes[c].value);
    }
    printf("\ndata       %s\ntokenizer  %s\n\n", data ? data : (tk->data_dir ? tk->data_dir : "?"),
           tok_name);
    printf("%-6s %8s", "split", "examples");
    for (int c = 0; c < tk->n_classes; c++)
        printf(" %10.10s", tk->classes[c].word);
    printf("   tokens: p50   p90   p99   max\n");
    for (int s = 0; s < 3; s++) {
        int32_t n;
        const cls_example *ex = taskobj_examples(t, (taskobj_split)s, &n);
        if (n == 0)
            continue;
        int64_t counts[CLS_MAX_CLASSES] = {0};
        int32_t *lens = malloc((size_t)n * sizeof *lens);
        if (!lens) {
            rc = 1;
            goto done;
        }
        for (int32_t i = 0; i < n; i++) {
            if (ex[i].label >= 0)
                counts[ex[i].label]++;
            lens[i] = ex[i].n_prompt;
        }
        qsort(lens, (size_t)n, sizeof *lens, cmp_i32);
        printf("%-6s %8d", split_names[s], n);
        for (int c = 0; c < tk->n_classes; c++)
            printf(" %10lld", (long long)counts[c]);
        printf("          %5d %5d %5d %5d\n", lens[(n - 1) / 2], lens[(int)(0.9 * (n - 1))],
               lens[(int)(0.99 * (n - 1))], lens[n - 1]);
        free(lens);
    }
    char first_bad[HL_ERR_MSG_MAX];
    int64_t bad = taskobj_bad_lines(t, first_bad, sizeof first_bad);
    if (bad)
        printf("\nskipped    %lld malformed line(s); the first: %s\n", (long long)bad,
               first_bad);
    printf("\nFirst three training prompts (the model scores each label word %s):\n",
           masked ? "at <mask>" : "after it");
    char *buf = malloc(1 << 16);
    int32_t ntr;
    const cls_example *tr = taskobj_examples(t, TASKOBJ_SPLIT_TRAIN, &ntr);
    for (int32_t i = 0; buf && i < 3 && i < ntr; i++) {
        if (taskobj_render(t, buf, 1 << 16, TASKOBJ_SPLIT_TRAIN, i, &err))
            snprintf(buf, 1 << 16, "(cannot render: %s)", err.msg);
        printf("  [%d] \"", i + 1);
        print_escaped(buf);
        printf("\"\n      gold: \"");
        print_escaped(tr[i].label >= 0 ? task_class_word(tk, kind, tr[i].label) : "?");
        printf("\"  (%d tokens)\n", tr[i].n_prompt);
    }
    free(buf);
done:
    if (t)
        taskobj_free(t);
    bpe_free(&tok);
    runcfg_free(&cfg);
    return rc;
}

/* cmd_run.c - `helene train` (headless runs) and `helene export`.
 *
 * A run is described by a runcfg built in one order everywhere: defaults,
 * then (with --resume) the checkpoint's own configuration, then --config
 * FILE, then the flags.  Every `--key value` goes through runcfg_set, so
 * the flags, the JSON config and the TUI's edits accept exactly the same
 * keys and values.  The headless runner drives the same engine API as the
 * TUI: it only starts it, prints progress and events, and handles signals.
 */
#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "analytic.h"
#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "dist.h"
#include "engine.h"
#include "fileio.h"
#include "model.h"
#include "runargs.h"
#include "safetensors.h"

const char cmd_train_usage[] =
    "usage: helene train [--model DIR --task NAME|FILE [--data PATH] | --objective NAME]\n"
    "                    [--trainable REGEX] [--optimizer NAME] [--steps N]\n"
    "                    [--time-limit D] [--seed S] [--KEY VALUE ...]\n"
    "                    [--eval-every N] [--save DIR] [--checkpoint-every N]\n"
    "                    [--resume DIR] [--log FILE.jsonl] [--config RUN.json]\n"
    "                    [--print-config] [--threads N] [--headless]\n"
    "\n"
    "Fine-tune with a zeroth-order optimizer (forward passes only).  Without\n"
    "--headless on a terminal this opens the workbench (as `helene tui`); with\n"
    "--headless, or when stdout is not a terminal, progress goes to stderr and a\n"
    "summary to stdout.\n"
    "\n"
    "What to train:\n"
    "  --model DIR          Hugging Face folder (OPT, GPT-2, RoBERTa, or Llama,\n"
    "                       Mistral, Qwen2; see helene info); a masked LM reads the\n"
    "                       label word at the task's <mask> (masked_template)\n"
    "  --task NAME|FILE     built-in task or task JSON (default: default)\n"
    "  --data PATH          data FILE (split with --data-seed into train and dev) or\n"
    "                       a folder with train/dev/test files (default: the task's\n"
    "                       bundled data)\n"
    "  --train-size N       training examples to draw (default 0 = all)\n"
    "  --dev-size N         dev examples (default: all of a dev file; for one FILE or a\n"
    "                       folder without dev: a fifth of train, at most 500)\n"
    "  --k-shot K           LM-BFF / MeZO k-shot: K per class for train and K per class\n"
    "                       for dev, both from the training data; test = the test or\n"
    "                       dev file (else the rest), at most 1000 examples\n"
    "  --data-seeds LIST    run once per data seed (e.g. 13,21,42,87,100, MeZO's) and\n"
    "                       print each run's dev and test accuracy and their mean (std);\n"
    "                       headless; --save DIR gets DIR/seed-S\n"
    "  --peft SPEC          tune adapters instead of the weights: lora[:r=8,alpha=16,\n"
    "                       targets=q+v] (targets from q k v o fc1 fc2) or\n"
    "                       prefix[:tokens=5]; eps defaults to 1e-2 (LoRA) / 1e-1\n"
    "                       (prefix) as in MeZO; checkpoints hold only the adapters\n"
    "  --trainable REGEX    tune only the tensors whose names match this POSIX\n"
    "                       extended regex and freeze the rest (default: all);\n"
    "                       e.g. 'q_proj|v_proj', 'layers\\.3\\.', 'bias|norm'.  Frozen\n"
    "                       tensors are never perturbed or updated and get no\n"
    "                       optimizer state; 'helene info --trainable REGEX' shows\n"
    "                       what a pattern selects\n"
    "  --objective NAME     quadratic or rosenbrock: analytic objectives, no model\n"
    "                       (their scenario-tuned presets apply unless --no-preset)\n"
    "  --curvature KIND     quadratic: layered (default), homogeneous or coupled\n"
    "\n";

/* the rest of train's help (one literal would exceed C's 4095 bytes) */
static const char train_usage_how[] =
    "How:\n"
    "  --optimizer NAME     helene (default), mezo, zo-sgd-mmt, zo-sign, zo-adam, hizoo,\n"
    "                       layer-newton, ft-adam (man helene: what each is)\n"
    "  --steps N            total steps (default 1000); resuming a checkpoint taken at\n"
    "                       step N with --steps 2N runs N more steps\n"
    "  --time-limit D       also stop after D of running time: 600, 90s, 10m, 1.5h,\n"
    "                       1h30m (default 0 = none); steps, evaluations and\n"
    "                       checkpoints count, loading and pauses do not, and a\n"
    "                       resumed run starts a new count.  The run ends at --steps\n"
    "                       or D, whichever comes first, with the usual final\n"
    "                       evaluation, test accuracy and --save checkpoint\n"
    "  --batch-size B       examples per step (default 16)\n"
    "  --seed S             run seed: perturbations and batch order (default 42)\n"
    "  --data-seed S        sampling and splits (default 13)\n"
    "  --KEY VALUE          any hyperparameter of the table below (lr, eps, kappa, ...)\n"
    "\n"
    "Runs:\n"
    "  --eval-every N       evaluate on dev every N steps (default 100; 0 = at the end)\n"
    "  --save DIR           checkpoint folder of the last step (also on Ctrl-C);\n"
    "                       without it, Ctrl-C (and c in the workbench) use a run\n"
    "                       folder runs/<task>-<method>-<UTC time>/\n"
    "  --checkpoint-every N periodic checkpoints in DIR/step-N (keep --keep-last, 3)\n"
    "  --resume DIR         continue a checkpoint bit-identically\n"
    "  --log FILE.jsonl     journal: one JSON line per step and per event\n"
    "  --config RUN.json    settings as a JSON object; flags override it\n"
    "  --print-config       print the resolved configuration as JSON and exit\n"
    "  --threads N          compute threads (default: all online CPUs)\n"
    "  --skip-bad           skip malformed data lines instead of stopping\n"
    "  --headless           never open the workbench\n"
    "\n"
    "More than one process (a build configured --with-mpi):\n"
    "  mpirun -np N helene train --headless ...   N ranks, each the whole model and\n"
    "                       its shards of every batch; rank 0 prints and saves\n"
    "  --shards S           batch shards, one forward each (default: one per rank);\n"
    "                       runs with the same S are bit-identical for any N\n"
    "  --probes-per-rank true  ranks split the probes instead: N probes a step\n"
    "  --check-every K      compare the ranks' parameters every K steps (50)\n"
    "\n"
    "Exit status: 0 finished, 1 failed, 2 bad usage, 130/143/129 interrupted by\n"
    "SIGINT/SIGTERM/SIGHUP after writing a checkpoint (the message says how to resume).\n";

const char cmd_export_usage[] =
    "usage: helene export --checkpoint DIR --out MODEL_DIR [--dtype F32|F16|BF16]\n"
    "                     [--adapter]\n"
    "\n"
    "Write a fine-tuned checkpoint as a Hugging Face model folder (config.json,\n"
    "tokenizer files and model.safetensors) that helene score / eval / train load.\n"
    "The checkpoint must come from a model run; MODEL_DIR must not exist yet.\n"
    "A LoRA run (--peft lora) is merged into the base weights (W + alpha/r B A);\n"
    "with --adapter, a --peft run writes only its adapters in the PEFT library's\n"
    "layout instead (adapter_model.safetensors + adapter_config.json; prefix\n"
    "tuning can only be exported so).\n"
    "\n"
    "  --checkpoint DIR  a checkpoint folder written by helene train --save\n"
    "  --out MODEL_DIR   the folder to create\n"
    "  --dtype T         storage type of the weights (default F32)\n"
    "  --adapter         write the PEFT adapter instead of a merged model\n";

/* ------------------------------------------------------------ signals --- */

static volatile sig_atomic_t g_signal; /* set by the handler, read by the loop */

static void on_signal(int sig)
{
    g_signal = sig;
}

/* ------------------------------------------------------------ running --- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void print_events(engine *e, uint64_t *after, bool tty)
{
    engine_event ev[32];
    int n;
    while ((n = engine_events(e, ev, 32, *after)) > 0) {
        for (int i = 0; i < n; i++) {
            *after = ev[i].seq;
            const char *tag = NULL;
            switch (ev[i].kind) {
            case ENGINE_EVENT_EVAL:
                tag = "eval";
                break;
            case ENGINE_EVENT_CHECKPOINT:
                tag = "checkpoint";
                break;
            case ENGINE_EVENT_WARNING:
                tag = "warning";
                break;
            case ENGINE_EVENT_ERROR:
                tag = "error";
                break;
            case ENGINE_EVENT_INFO:
                tag = "info";
                break;
            default:
                break;
            }
            if (tag)
                fprintf(stderr, "%s[step %llu] %s: %s\n", tty ? "\r\033[K" : "",
                        (unsigned long long)ev[i].step, tag, ev[i].text);
        }
    }
}

static void print_progress(const engine_telemetry *t, bool tty)
{
    char dev[32] = "";
    if (!isnan(t->dev_accuracy))
        snprintf(dev, sizeof dev, " dev %.4g", t->dev_accuracy);
    char eta[32] = "";
    if (t->eta_s > 0 && t->eta_s < 1e8)
        snprintf(eta, sizeof eta, " ETA %dm%02ds", (int)(t->eta_s / 60), (int)t->eta_s % 60);
    fprintf(stderr, "%sstep %llu/%llu loss %.6g%s %.1f steps/s%s%s", tty ? "\r\033[K" : "",
            (unsigned long long)t->step, (unsigned long long)t->total_steps, t->loss, dev,
            t->steps_per_s, eta, tty ? "" : "\n");
    fflush(stderr);
}

/* What a finished run reports (NAN where it has none). */
typedef struct run_result {
    double best_dev, test_final, test_best;
    uint64_t steps, best_dev_step;
} run_result;

/* Run headless to the end (or a signal).  Returns the exit status; res
 * (may be NULL) gets the run's results. */
static int run_headless(engine *e, const runcfg *cfg, run_result *res)
{
    hl_err err;
    engine_telemetry t;
    if (engine_snapshot_alloc(e, &t, &err)) {
        fprintf(stderr, "helene train: %s\n", err.msg);
        return 1;
    }
    /* under mpirun the leader prints and decides; followers stay silent and
     * leave a signal to the leader, which ends the run for every rank */
    const bool quiet = !dist_leader();
    bool tty = isatty(STDERR_FILENO);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = quiet ? SIG_IGN : on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (engine_start(e, false, &err)) {
        fprintf(stderr, "helene train: %s\n", err.msg);
        engine_snapshot_free(&t);
        return 1;
    }
    uint64_t after = 0;
    double last_line = 0;
    int rc = 0;
    engine_state s = ENGINE_STATE_RUNNING;
    for (;;) {
        s = engine_wait(e, s, 250);
        engine_snapshot(e, &t);
        s = t.state;
        if (!quiet)
            print_events(e, &after, tty);
        double now = now_s();
        if (!quiet && (now - last_line >= (tty ? 0.25 : 10.0) || s != ENGINE_STATE_RUNNING)) {
            if (t.step > 0)
                print_progress(&t, tty);
            last_line = now;
        }
        if (g_signal) {
            int sig = g_signal;
            if (tty)
                fputc('\n', stderr);
            fprintf(stderr, "helene train: %s: finishing the current step and writing a "
                            "checkpoint\n",
                    runargs_signal_name(sig));
            char dir[RUNCFG_PATH_MAX];
            bool saved = runargs_checkpoint_and_quit(e, dir, sizeof dir);
            print_events(e, &after, false);
            engine_snapshot(e, &t);
            if (saved)
                fprintf(stderr,
                        "helene train: stopped at step %llu; resume with:\n"
                        "  helene train --resume %s --steps %llu --headless\n",
                        (unsigned long long)t.step, dir, (unsigned long long)cfg->steps);
            else
                fprintf(stderr, "helene train: stopped at step %llu; the checkpoint failed "
                                "(see above)\n",
                        (unsigned long long)t.step);
            rc = 128 + sig;
            break;
        }
        if (s == ENGINE_STATE_FINISHED || s == ENGINE_STATE_ERROR ||
            (s == ENGINE_STATE_PAUSED && t.reason[0])) {
            if (tty)
                fputc('\n', stderr);
            if (s != ENGINE_STATE_FINISHED) {
                fprintf(stderr, "helene train: %s\n", t.reason);
                rc = 1;
            }
            engine_cmd q = {.kind = ENGINE_CMD_QUIT};
            engine_post(e, &q, NULL, &err);
            engine_join(e);
            if (!quiet)
                print_events(e, &after, false);
            engine_snapshot(e, &t);
            break;
        }
    }
    if (rc == 0 && !quiet) {
        printf("steps          %llu\n", (unsigned long long)t.step);
        printf("running time   %.1f s%s\n", t.run_s,
               t.time_limit > 0 && t.step < t.total_steps ? " (stopped by --time-limit)" : "");
        printf("optimizer      %s\n", optim_method_name(t.method));
        printf("final loss     %.6g (mean of L+ and L- of the last step)\n", t.loss);
        if (!isnan(t.best_dev_accuracy))
            printf("%s %.6g at step %llu\n",
                   cfg->objective == RUNCFG_OBJECTIVE_MODEL ? "best dev acc  " : "best loss     ",
                   t.best_dev_accuracy, (unsigned long long)t.best_dev_step);
        if (!isnan(t.test_final))
            printf("test acc       %.6g of the final state\n", t.test_final);
        if (!isnan(t.test_best))
            printf("test acc       %.6g of the best dev state (step %llu)\n", t.test_best,
                   (unsigned long long)t.best_dev_step);
        printf("forwards       %llu\n", (unsigned long long)t.last.forwards_total);
        if (cfg->save[0])
            printf("saved          %s\n", cfg->save);
    }
    if (res)
        *res = (run_result){.best_dev = t.best_dev_accuracy, .test_final = t.test_final,
                            .test_best = t.test_best, .steps = t.step,
                            .best_dev_step = t.best_dev_step};
    engine_snapshot_free(&t);
    return rc;
}

/* mean and population standard deviation (numpy's default, as LM-BFF's and
 * MeZO's tables) of the finite values of x */
static void mean_std(const double *x, int n, double *mean, double *std)
{
    double s = 0, q = 0;
    int k = 0;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]))
            s += x[i], k++;
    *mean = k ? s / k : NAN;
    for (int i = 0; i < n; i++)
        if (!isnan(x[i]))
            q += (x[i] - *mean) * (x[i] - *mean);
    *std = k ? sqrt(q / k) : NAN;
}

#define SWEEP_MAX 32

/* helene train --data-seeds 13,21,42,87,100 ...: one headless run per data
 * seed (--save DIR -> DIR/seed-S), then a table of their accuracies. */
static int train_sweep(int argc, char **argv, int at)
{
    const char *list = argv[at][13] == '=' ? argv[at] + 14 : (at + 1 < argc ? argv[at + 1] : NULL);
    int skip = argv[at][13] == '=' ? 1 : 2;
    if (!list || !list[0]) {
        fprintf(stderr, "helene train: --data-seeds needs a list, e.g. 13,21,42,87,100\n");
        return 2;
    }
    unsigned long long seeds[SWEEP_MAX];
    int n = 0;
    for (const char *p = list; *p;) {
        char *end;
        errno = 0;
        if (*p < '0' || *p > '9' || n == SWEEP_MAX)
            goto bad;
        seeds[n++] = strtoull(p, &end, 10);
        if (errno || (*end && *end != ','))
            goto bad;
        p = *end ? end + 1 : end;
        if (*end && !*p)
            goto bad;
    }
    /* argv without --data-seeds; --data-seed S and --save DIR/seed-S per run */
    char **av = calloc((size_t)argc + 4, sizeof *av);
    if (!av)
        return 1;
    int ac = 0, save_at = -1, save_eq = 0;
    for (int i = 0; i < argc; i++) {
        if (i == at) {
            i += skip - 1;
            continue;
        }
        if (!strcmp(argv[i], "--data-seed") || !strncmp(argv[i], "--data-seed=", 12)) {
            fprintf(stderr, "helene train: give --data-seeds or --data-seed, not both\n");
            free(av);
            return 2;
        }
        if (!strcmp(argv[i], "--save") && i + 1 < argc)
            save_at = ac + 1;
        else if (!strncmp(argv[i], "--save=", 7))
            save_at = ac, save_eq = 1;
        av[ac++] = argv[i];
    }
    char seed_arg[32], save_arg[RUNCFG_PATH_MAX + 32];
    const char *save_dir = save_at >= 0 ? av[save_at] + (save_eq ? 7 : 0) : NULL;
    av[ac] = "--data-seed";
    av[ac + 1] = seed_arg;
    av[ac + 2] = "--headless";
    double dev[SWEEP_MAX], test_best[SWEEP_MAX], test_final[SWEEP_MAX];
    int rc = 0;
    for (int k = 0; k < n && !rc; k++) {
        snprintf(seed_arg, sizeof seed_arg, "%llu", seeds[k]);
        char *saved_save = save_at >= 0 ? av[save_at] : NULL;
        if (save_dir) {
            snprintf(save_arg, sizeof save_arg, "%s%s/seed-%llu", save_eq ? "--save=" : "",
                     save_dir, seeds[k]);
            av[save_at] = save_arg;
        }
        fprintf(stderr, "helene train: data seed %llu (%d of %d)\n", seeds[k], k + 1, n);
        runargs ra;
        rc = runargs_parse(&ra, "train", ac + 3, av);
        if (save_dir)
            av[save_at] = saved_save;
        if (rc) {
            runargs_free(&ra);
            break;
        }
        engine *e;
        hl_err err;
        if (engine_create(&e, &ra.cfg, &err)) {
            fprintf(stderr, "helene train: data seed %llu: %s\n", seeds[k], err.msg);
            runargs_free(&ra);
            rc = 1;
            break;
        }
        run_result r;
        rc = run_headless(e, &ra.cfg, &r);
        engine_free(e);
        runargs_free(&ra);
        dev[k] = r.best_dev;
        /* the best dev state is the final one when no separate test was made */
        test_best[k] = isnan(r.test_best) ? r.test_final : r.test_best;
        test_final[k] = r.test_final;
        if (g_signal)
            break;
    }
    free(av);
    if (rc)
        return rc;
    printf("\n%-12s %14s %16s %14s\n", "data seed", "best dev %", "test % (best)",
           "test % (final)");
    for (int k = 0; k < n; k++)
        printf("%-12llu %14.1f %16.1f %14.1f\n", seeds[k], 100 * dev[k], 100 * test_best[k],
               100 * test_final[k]);
    double m[3], sd[3];
    mean_std(dev, n, &m[0], &sd[0]);
    mean_std(test_best, n, &m[1], &sd[1]);
    mean_std(test_final, n, &m[2], &sd[2]);
    char a[3][40];
    for (int i = 0; i < 3; i++)
        snprintf(a[i], sizeof a[i], "%.1f (%.1f)", 100 * m[i], 100 * sd[i]);
    printf("%-12s %14s %16s %14s\n", "mean (std)", a[0], a[1], a[2]);
    return 0;
bad:
    fprintf(stderr, "helene train: --data-seeds '%s': expected up to %d comma-separated "
                    "non-negative integers, e.g. 13,21,42,87,100\n",
            list, SWEEP_MAX);
    return 2;
}

static int train_ranks(int argc, char **argv);

int cmd_train(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(cmd_train_usage, stdout);
        fputs(train_usage_how, stdout);
        runargs_print_hparams(stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--data-seeds") || !strncmp(argv[i], "--data-seeds=", 13)) {
            if (dist_launched_size() > 1) {
                fprintf(stderr, "helene train: --data-seeds runs one process; under mpirun, "
                                "start one job per data seed\n");
                return 2;
            }
            return train_sweep(argc, argv, i);
        }
    if (dist_launched_size() > 1)
        return train_ranks(argc, argv);
    runargs ra;
    int rc = runargs_parse(&ra, "train", argc, argv);
    if (rc) {
        runargs_free(&ra); /* parsing may have filled part of it */
        return rc;
    }
    if (ra.print_config) {
        char *j = runcfg_to_json(&ra.cfg);
        puts(j ? j : "{}");
        free(j);
        runargs_free(&ra);
        return 0;
    }
    if (!ra.headless && isatty(STDOUT_FILENO) && isatty(STDIN_FILENO)) {
        rc = runargs_run_tui(&ra);
        runargs_free(&ra);
        return rc;
    }
    engine *e;
    hl_err err;
    hl_err_clear(&err);
    if (engine_create(&e, &ra.cfg, &err)) {
        fprintf(stderr, "helene train: %s\n", err.msg);
        runargs_free(&ra);
        return 1;
    }
    rc = run_headless(e, &ra.cfg, NULL);
    engine_free(e);
    runargs_free(&ra);
    return rc;
}

/* Under mpirun (dist.h): one headless run on every rank, each with its
 * shards of every batch; the leader (rank 0) prints, journals and saves.
 * Every stage that can fail on one rank ends with a check that all ranks
 * passed it, so no rank waits for a rank that has given up. */
static int train_ranks(int argc, char **argv)
{
    hl_err err;
    hl_err_clear(&err);
    if (dist_init(&argc, &argv, &err)) {
        fprintf(stderr, "helene train: %s\n", err.msg);
        return 2;
    }
    const bool leader = dist_leader();
    runargs ra;
    engine *e = NULL;
    char *json = NULL;
    int rc = runargs_parse(&ra, "train", argc, argv);
    if (!rc && (ra.print_config || !ra.headless)) {
        if (leader)
            fprintf(stderr, "helene train: under mpirun, give --headless (the workbench and "
                            "--print-config run in one process)\n");
        rc = 2;
    }
    if (!dist_all_ok(rc == 0)) {
        rc = rc ? rc : 2; /* another rank's options were refused (it said why) */
        goto out;
    }
    /* the same run everywhere (thread counts may differ: the bits do not) */
    runcfg same;
    if (!runcfg_copy(&same, &ra.cfg, &err)) {
        same.threads = 0;
        json = runcfg_to_json(&same);
        runcfg_free(&same);
    }
    if (!dist_all_ok(json != NULL)) {
        rc = 1;
        goto out;
    }
    if (!dist_same_text(json, "configuration (its options)", &err)) {
        if (leader)
            fprintf(stderr, "helene train: %s\n", err.msg);
        rc = 2;
        goto out;
    }
    if (engine_create(&e, &ra.cfg, &err)) {
        fprintf(stderr, "helene train (rank %d): %s\n", dist_rank(), err.msg);
        rc = 1;
    }
    if (!dist_all_ok(rc == 0)) { /* every rank starts, or none */
        rc = 1;
        goto out;
    }
    if (leader)
        fprintf(stderr, "helene train: %d ranks, each evaluating %s of every batch of %d\n",
                dist_size(), ra.cfg.shards > 0 ? "its shards" : "one shard", ra.cfg.batch_size);
    rc = run_headless(e, &ra.cfg, NULL);
out:
    if (e)
        engine_free(e);
    free(json);
    runargs_free(&ra);
    dist_finalize();
    return rc;
}

/* ------------------------------------------------------------- export --- */

static int copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb");
    if (!a)
        return -1;
    FILE *b = fopen(to, "wb");
    if (!b) {
        fclose(a);
        return -1;
    }
    char buf[1 << 15];
    size_t n;
    int rc = 0;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n)
            rc = -1;
    if (ferror(a))
        rc = -1;
    fclose(a);
    if (fclose(b) != 0)
        rc = -1;
    return rc;
}

/* The model's weights under their Hugging Face names in STAGE/model.safetensors
 * (GPT-2's Conv1D weights back to [in, out]). */
static hl_status write_weights(const char *stage, const model *m, st_dtype dt, hl_err *err)
{
    char p[4400];
    snprintf(p, sizeof p, "%s/model.safetensors", stage);
    return model_save_hf_weights(m, p, dt, false, "exported_by", "helene " PACKAGE_VERSION, err);
}

/* The module path of a LoRA site in the HF model class, as the PEFT library
 * names it ("model.decoder.layers.0.self_attn.q_proj").  False where PEFT
 * names it differently (GPT-2's fused c_attn holds q, k and v in one). */
static bool adapter_module(const model *m, int32_t block, int site, char *path, size_t cap)
{
    char base[PARAM_NAME_MAX];
    model_peft_site_base(m, block, site, base, sizeof base);
    if (m->cfg.family == MODEL_FAMILY_GPT2)
        return false;
    snprintf(path, cap, "%s%s", m->cfg.family == MODEL_FAMILY_ROBERTA ? "roberta." : "model.",
             base);
    return true;
}

/* The adapters in the PEFT library's layout: adapter_model.safetensors and
 * adapter_config.json, loadable with PeftModel.from_pretrained(base, DIR). */
static hl_status write_adapter(const char *stage, const model *m, const runcfg *cfg,
                               st_dtype dt, hl_err *err)
{
    const param_set *ps = &m->peft_params;
    const model_config *c = &m->cfg;
    const int L = c->n_layers;
    char p[4400];
    cJSON *j = cJSON_CreateObject();
    hl_status st = HL_OK;
    st_write_tensor *ts = calloc((size_t)ps->n_layers, sizeof *ts);
    char(*names)[PARAM_NAME_MAX * 2] = calloc((size_t)ps->n_layers, sizeof *names);
    float *pe = NULL;
    int64_t pe_shape[2]; /* the prefix's prompt_embeddings, alive until st_write */
    if (!j || !ts || !names) {
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
        goto done;
    }
    const char *task_type = model_is_masked_lm(c) ? NULL : "CAUSAL_LM";
    if (task_type)
        cJSON_AddStringToObject(j, "task_type", task_type);
    else
        cJSON_AddNullToObject(j, "task_type");
    cJSON_AddStringToObject(j, "base_model_name_or_path", cfg->model);
    cJSON_AddBoolToObject(j, "inference_mode", true);
    cJSON_AddStringToObject(j, "revision", "");
    int n = 0;
    if (m->peft.kind == PEFT_LORA) {
        if (c->family == MODEL_FAMILY_GPT2) {
            st = hl_err_set(err, HL_ERR_INVALID,
                            "GPT-2 keeps q, k and v in one module (c_attn), which the PEFT "
                            "library adapts as a whole; export the merged model instead");
            goto done;
        }
        cJSON_AddStringToObject(j, "peft_type", "LORA");
        cJSON_AddNumberToObject(j, "r", m->peft.rank);
        cJSON_AddNumberToObject(j, "lora_alpha", m->peft.alpha);
        cJSON_AddNumberToObject(j, "lora_dropout", 0.0);
        cJSON_AddStringToObject(j, "bias", "none");
        cJSON_AddBoolToObject(j, "fan_in_fan_out", false);
        cJSON_AddBoolToObject(j, "init_lora_weights", true);
        /* full module paths: PEFT matches a target by name or by suffix,
         * and RoBERTa's "output.dense" is a suffix of "attention.output.dense" */
        cJSON *tm = cJSON_AddArrayToObject(j, "target_modules");
        for (int32_t b = 0; b < L; b++)
            for (int k = 0; k < PEFT_SITE_COUNT; k++) {
                if (!(m->peft.targets & (1u << k)))
                    continue;
                char path[PARAM_NAME_MAX + 16];
                adapter_module(m, b, k, path, sizeof path);
                cJSON_AddItemToArray(tm, cJSON_CreateString(path));
                for (int ab = 0; ab < 2; ab++, n++) {
                    snprintf(names[n], sizeof names[n], "base_model.model.%s.lora_%c.weight", path,
                             ab ? 'B' : 'A');
                    const param_layer *l = &ps->layers[n];
                    ts[n] = (st_write_tensor){.name = names[n], .dtype = dt, .src = ST_SRC_F32,
                                              .ndim = l->ndim, .shape = l->shape,
                                              .data = param_layer_data(ps, n)};
                }
            }
    } else {
        /* PREFIX_TUNING without projection: prompt_embeddings [tokens, L·2·C],
         * row t = layer 0's key, layer 0's value, layer 1's key, ... */
        const int64_t T = m->peft.tokens, C = c->d_model;
        pe = malloc((size_t)(T * L * 2 * C) * sizeof *pe);
        if (!pe) {
            st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (int64_t t = 0; t < T; t++)
            for (int32_t b = 0; b < L; b++)
                for (int kv = 0; kv < 2; kv++)
                    memcpy(pe + (t * L * 2 + b * 2 + kv) * C,
                           param_layer_data(ps, b * 2 + kv) + t * C, (size_t)C * sizeof *pe);
        pe_shape[0] = T;
        pe_shape[1] = (int64_t)L * 2 * C;
        snprintf(names[0], sizeof names[0], "prompt_embeddings");
        ts[0] = (st_write_tensor){.name = names[0], .dtype = dt, .src = ST_SRC_F32, .ndim = 2,
                                  .shape = pe_shape, .data = pe};
        n = 1;
        cJSON_AddStringToObject(j, "peft_type", "PREFIX_TUNING");
        cJSON_AddNumberToObject(j, "num_virtual_tokens", (double)T);
        cJSON_AddNumberToObject(j, "token_dim", (double)C);
        cJSON_AddNumberToObject(j, "num_transformer_submodules", 1);
        cJSON_AddNumberToObject(j, "num_attention_heads", c->n_heads);
        cJSON_AddNumberToObject(j, "num_layers", L);
        cJSON_AddNumberToObject(j, "encoder_hidden_size", (double)C);
        cJSON_AddBoolToObject(j, "prefix_projection", false);
    }
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", stage);
    const char *meta[4] = {"format", "pt", "exported_by", "helene " PACKAGE_VERSION};
    if ((st = st_write(p, ts, n, meta, 2, err)))
        goto done;
    char *text = cJSON_Print(j);
    snprintf(p, sizeof p, "%s/adapter_config.json", stage);
    FILE *f = text ? fopen(p, "wb") : NULL;
    bool ok = f && fputs(text, f) >= 0 && fputc('\n', f) != EOF;
    if (f && fclose(f) != 0)
        ok = false;
    free(text);
    if (!ok)
        st = hl_err_set(err, HL_ERR_IO, "%s: cannot write", p);
done:
    cJSON_Delete(j);
    free(ts);
    free(names);
    free(pe);
    return st;
}

int cmd_export(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(cmd_export_usage, stdout);
        return 0;
    }
    const char *ckpt = NULL, *out = NULL, *dtype = "F32";
    bool adapter = false;
    cli_flag flags[] = {
        {"checkpoint", CLI_KIND_STRING, &ckpt, 0, 0, false},
        {"out", CLI_KIND_STRING, &out, 0, 0, false},
        {"dtype", CLI_KIND_STRING, &dtype, 0, 0, false},
        {"adapter", CLI_KIND_BOOL, &adapter, 0, 0, false},
        {NULL, CLI_KIND_BOOL, NULL, 0, 0, false},
    };
    const char *pos[1];
    int npos;
    if (!cli_parse("export", argc, argv, flags, pos, 0, &npos))
        return 2;
    if (!ckpt || !out) {
        fprintf(stderr, "helene export: --checkpoint DIR and --out MODEL_DIR are required\n");
        return 2;
    }
    st_dtype dt;
    if (!strcmp(dtype, "F32"))
        dt = ST_DTYPE_F32;
    else if (!strcmp(dtype, "F16"))
        dt = ST_DTYPE_F16;
    else if (!strcmp(dtype, "BF16"))
        dt = ST_DTYPE_BF16;
    else {
        fprintf(stderr, "helene export: --dtype must be F32, F16 or BF16\n");
        return 2;
    }
    struct stat sb;
    if (stat(out, &sb) == 0) {
        fprintf(stderr, "helene export: %s already exists; nothing written\n", out);
        return 1;
    }
    runcfg cfg;
    runcfg_init(&cfg);
    hl_err err;
    hl_err_clear(&err);
    int rc = 1;
    bool staged = false;
    char stage_dir[4200] = "";
    model m;
    memset(&m, 0, sizeof m);
    peft_spec ps;
    if (checkpoint_read_config(&cfg, ckpt, &err) || peft_parse(&ps, cfg.peft, &err))
        goto fail;
    if (cfg.objective != RUNCFG_OBJECTIVE_MODEL || !cfg.model[0]) {
        hl_err_set(&err, HL_ERR_INVALID, "%s: not a model checkpoint (analytic objective)", ckpt);
        goto fail;
    }
    if (adapter && ps.kind == PEFT_NONE) {
        hl_err_set(&err, HL_ERR_INVALID, "%s: a full-parameter run has no adapter (--adapter is "
                   "for --peft runs)", ckpt);
        goto fail;
    }
    if (!adapter && ps.kind == PEFT_PREFIX) {
        hl_err_set(&err, HL_ERR_INVALID, "%s: prefix tuning cannot be merged into a plain model; "
                   "export it with --adapter", ckpt);
        goto fail;
    }
    checkpoint_info ci;
    if (model_load(&m, cfg.model, &err))
        goto fail;
    if (model_peft_attach_text(&m, cfg.peft, cfg.base_hash, cfg.seed, NULL, 0, &err) ||
        checkpoint_load(ckpt, model_trainable(&m), NULL, &ci, &err)) {
        hl_err_prefix(&err, "%s", ckpt);
        goto fail;
    }
    size_t n_written = param_set_count(model_trainable(&m));
    if (!adapter && model_peft_merge(&m, &err))
        goto fail;
    /* everything goes into a staging folder beside OUT, renamed to OUT only
     * when complete: a failed export leaves nothing behind */
    char stage[4200];
    if (file_stage_dir(stage, sizeof stage, out, &err))
        goto fail;
    staged = true;
    snprintf(stage_dir, sizeof stage_dir, "%s", stage);
    if (adapter ? write_adapter(stage, &m, &cfg, dt, &err) : write_weights(stage, &m, dt, &err))
        goto fail;
    if (!adapter)
        n_written = param_set_count(&m.params);
    char p[4400], q[4400];
    static const char *const files[] = {"config.json", "vocab.json", "merges.txt",
                                        "tokenizer.json", "tokenizer_config.json",
                                        "special_tokens_map.json", "generation_config.json"};
    for (size_t i = 0; !adapter && i < sizeof files / sizeof files[0]; i++) {
        snprintf(p, sizeof p, "%s/%s", cfg.model, files[i]);
        snprintf(q, sizeof q, "%s/%s", stage, files[i]);
        if (access(p, F_OK) == 0 && copy_file(p, q) != 0) {
            hl_err_set(&err, HL_ERR_IO, "cannot copy %s into the export", p);
            goto fail;
        }
    }
    /* publish: OUT must still not exist (no replacing what appeared meanwhile) */
    if (file_publish_dir(stage, out, false, NULL, &err)) /* (removes the stage) */
        goto fail;
    staged = false;
    printf("exported %s (step %llu) to %s: %zu parameters%s, %s\n", ckpt,
           (unsigned long long)ci.step, out, n_written,
           adapter                  ? " of adapters (PEFT library layout)"
           : ps.kind == PEFT_LORA ? " (LoRA merged into the base weights)"
                                  : "",
           dtype);
    rc = 0;
fail:
    if (rc)
        fprintf(stderr, "helene export: %s%s\n", err.msg, staged ? "; nothing written" : "");
    if (staged)
        file_remove_tree(stage_dir);
    model_free(&m);
    runcfg_free(&cfg);
    return rc;
}

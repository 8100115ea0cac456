/* cmd_race.c - `helene race`: optimizers side by side on identical data and
 * probes, headless.
 *
 * Each arm is an engine of its own (its own parameters, optimizer state and
 * journal), built from the same run settings except the arm's method and
 * hyperparameters, so every arm starts from the same parameters and sees the
 * same batch sequence and the same probe seeds: both derive from the run's
 * seeds alone.  The arms advance in lock-step, one step each in turn, so they
 * share the machine alike and each arm's time is its own steps' time.  At
 * the end the arms' journals are merged into --log (each line tagged
 * "arm": INDEX) and a summary table compares them.
 *
 * Ctrl-C or SIGTERM checkpoints every arm (into --save DIR/arm-N, or a run
 * folder each); since an arm equals the same run alone, each can go on with
 * helene train --resume; a race saved with --save DIR also resumes as a race
 * (--resume DIR: each arm from DIR/arm-N, its journal DIR/arm-N.jsonl
 * continued).  On a terminal the live race view (ui/race.h) drives the same
 * rounds from a thread of its own while it draws.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>

#include "cli.h"
#include "commands.h"
#include "engine.h"
#include "app.h"
#include "fileio.h"
#include "lockstep.h"
#include "race.h"
#include "runargs.h"

#define RACE_MAX_ARMS 4

const char cmd_race_usage[] =
    "usage: helene race --arm METHOD[:KEY=VALUE,...] --arm ... [--target-acc A] [--json]\n"
    "                   [helene train options] --headless\n"
    "\n"
    "Race 2 to 4 optimizers on the same model and task: every arm starts from the\n"
    "same parameters and sees the same batches and the same probe seeds, so the\n"
    "only difference is the optimizer.  The arms take one step each in turn\n"
    "(lock-step), and each arm's time counts its own steps.  Every other option\n"
    "means what it means for helene train (model, task, objective, steps, seed,\n"
    "eval-every, log, threads, ...); a hyperparameter given outside --arm applies\n"
    "to every arm, one inside applies to that arm.  Without a learning rate an\n"
    "arm takes its method's default.\n"
    "\n"
    "  --arm SPEC       METHOD, then optionally ':' and KEY=VALUE pairs separated\n"
    "                   by ',', e.g. --arm helene:lr=3e-3,kappa=1 --arm mezo\n"
    "  --target-acc A   the finish line: steps, forwards and seconds each arm needs\n"
    "                   to reach dev accuracy A (0..1; analytic objectives: exact\n"
    "                   loss A or below).  Default: the best of the slowest arm\n"
    "  --json           print the summary as JSON instead of a markdown table\n"
    "  --log FILE       one journal for the race: every line carries \"arm\": INDEX\n"
    "                   (0-based, in --arm order)\n"
    "  --save DIR       each arm's final checkpoint in DIR/arm-INDEX, its journal in\n"
    "                   DIR/arm-INDEX.jsonl\n"
    "  --resume DIR     continue a race saved with --save DIR (the arms come from\n"
    "                   its checkpoints; give --steps), bit for bit as if it had run\n"
    "                   through (give HELENE's --anneal-horizon in both, or --steps\n"
    "                   stretches it, as for helene train)\n"
    "  --max-memory M   refuse to start when the arms would need more than M MiB\n"
    "                   (default: the machine's available memory)\n"
    "\n"
    "On a terminal (without --headless) the race runs in the live race view: one\n"
    "header line per arm, loss and dev accuracy of every arm overlaid, the finish\n"
    "line, the selected arm's layers (Tab or 1-4 selects; ? lists the keys).\n"
    "Exit status: 0 finished, 1 failed, 2 bad usage, 130/143 interrupted.\n";

static volatile sig_atomic_t race_signal;

static void race_on_signal(int sig)
{
    race_signal = sig;
}

typedef struct arm {
    char spec[256];
    runcfg cfg;
    engine *e;
    engine_telemetry t;
    bool have_t;
    char log[600];
    /* from its journal, after the race */
    double best, test;
    uint64_t best_step;
    uint64_t steps_to, forwards_to;
    double secs_to, secs;
    bool reached;
    double mib; /* what creating this arm (model, state, data) added to RSS */
    bool keep_log; /* its journal is the race's record (beside --save), not a temp file */
} arm;

static double mem_available_mib(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f)
        return 0;
    char line[256];
    double kib = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1)
            break;
    fclose(f);
    return kib / 1024.0;
}

/* Apply "METHOD[:k=v,k=v]" to an arm's config.  Without a learning rate on
 * the command line, the arm takes its method's own: the analytic preset, or
 * the method's default. */
static int apply_spec(runcfg *c, const char *spec, bool user_lr)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%.255s", spec);
    char *colon = strchr(buf, ':');
    if (colon)
        *colon = '\0';
    hl_err err;
    if (runcfg_set(c, "optimizer", buf, &err)) {
        fprintf(stderr, "helene race: --arm %s: %s\n", spec, err.msg);
        return 2;
    }
    if (!user_lr) {
        double lr = runcfg_method_lr(c, c->hp.method, NULL);
        char v[64];
        snprintf(v, sizeof v, "%.17g", lr);
        runcfg_set(c, "lr", v, NULL);
    }
    for (char *kv = colon ? strtok(colon + 1, ",") : NULL; kv; kv = strtok(NULL, ",")) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            fprintf(stderr, "helene race: --arm %s: '%s' is not KEY=VALUE\n", spec, kv);
            return 2;
        }
        *eq = '\0';
        for (char *p = kv; *p; p++)
            if (*p == '-')
                *p = '_';
        if (runcfg_set(c, kv, eq + 1, &err)) {
            fprintf(stderr, "helene race: --arm %s: %s\n", spec, err.msg);
            return 2;
        }
    }
    return 0;
}

/* One step of every arm, in turn; false when an arm failed or stopped. */
static bool step_all(arm *arms, int n, bool finish)
{
    engine *e[RACE_MAX_ARMS];
    engine_telemetry *t[RACE_MAX_ARMS];
    for (int i = 0; i < n; i++)
        e[i] = arms[i].e, t[i] = &arms[i].t;
    char why[ENGINE_TEXT_MAX];
    int bad = lockstep_round(e, t, n, finish, why, sizeof why);
    if (bad >= 0)
        fprintf(stderr, "helene race: arm %d (%s) stopped: %s\n", bad, arms[bad].spec, why);
    return bad < 0;
}

/* Read an arm's journal: best dev, test of the final state, and the steps,
 * forwards and seconds (its own step times) to reach target. */
static void arm_results(arm *a, double target, bool accuracy)
{
    a->best = NAN, a->test = NAN, a->reached = false, a->secs = 0;
    FILE *f = fopen(a->log, "rb");
    if (!f)
        return;
    char *line = NULL;
    size_t cap = 0;
    uint64_t fw = 0;
    double secs = 0;
    while (getline(&line, &cap, f) > 0) {
        cJSON *o = cJSON_Parse(line);
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "event");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(o, "step");
        uint64_t step = cJSON_IsNumber(st) ? (uint64_t)st->valuedouble : 0;
        if (!ev && cJSON_IsNumber(st)) {
            static const char *const ms[3] = {"ms_perturb", "ms_forward", "ms_update"};
            for (int k = 0; k < 3; k++) {
                const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, ms[k]);
                secs += cJSON_IsNumber(v) ? v->valuedouble / 1000.0 : 0;
            }
            const cJSON *fwd = cJSON_GetObjectItemCaseSensitive(o, "forwards");
            fw += cJSON_IsNumber(fwd) ? (uint64_t)fwd->valuedouble : 0;
        } else if (cJSON_IsString(ev) && !strcmp(ev->valuestring, "eval")) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, accuracy ? "dev_accuracy"
                                                                           : "exact_loss");
            double x = cJSON_IsNumber(v) ? v->valuedouble : NAN;
            if (isfinite(x) && (isnan(a->best) || (accuracy ? x > a->best : x < a->best))) {
                a->best = x;
                a->best_step = step;
            }
            if (isfinite(x) && !a->reached && (accuracy ? x >= target : x <= target)) {
                a->reached = true;
                a->steps_to = step;
                a->forwards_to = fw;
                a->secs_to = secs;
            }
        } else if (cJSON_IsString(ev) && !strcmp(ev->valuestring, "test")) {
            const cJSON *w = cJSON_GetObjectItemCaseSensitive(o, "state");
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "test_accuracy");
            if (cJSON_IsString(w) && !strcmp(w->valuestring, "final") && cJSON_IsNumber(v))
                a->test = v->valuedouble;
        }
        cJSON_Delete(o);
    }
    a->secs = secs;
    free(line);
    fclose(f);
}

/* Merge the arms' journals into out, one chunk (the lines up to and
 * including a step line) of each arm in turn, each line tagged "arm". */
static int merge_journals(arm *arms, int n, const char *out)
{
    FILE *in[RACE_MAX_ARMS] = {0};
    FILE *o = fopen(out, "wb");
    if (!o) {
        fprintf(stderr, "helene race: %s: cannot write the journal\n", out);
        return 1;
    }
    for (int i = 0; i < n; i++)
        in[i] = fopen(arms[i].log, "rb");
    char *line = NULL;
    size_t cap = 0;
    for (bool more = true; more;) {
        more = false;
        for (int i = 0; i < n; i++) {
            ssize_t len;
            while (in[i] && (len = getline(&line, &cap, in[i])) > 0) {
                more = true;
                if (line[0] == '{')
                    fprintf(o, "{\"arm\":%d,%s", i, line + 1);
                else
                    fputs(line, o);
                if (!strstr(line, "\"event\"")) /* a step line ends the chunk */
                    break;
            }
        }
    }
    free(line);
    for (int i = 0; i < n; i++)
        if (in[i])
            fclose(in[i]);
    return fclose(o) == 0 ? 0 : 1;
}

int cmd_race(int argc, char **argv)
{
    if (cli_wants_help(argc, argv)) {
        fputs(cmd_race_usage, stdout);
        runargs_print_hparams(stdout);
        return 0;
    }
    /* take out what only a race has: --arm, --target-acc, --json, --max-memory */
    arm arms[RACE_MAX_ARMS];
    memset(arms, 0, sizeof arms);
    int n = 0;
    double target = NAN, max_mib = 0;
    char resume_dir[RUNCFG_PATH_MAX - 16] = "";
    bool json = false;
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    if (!rest)
        return 1;
    int nr = 0;
    bool user_lr = false;
    const char *merged_log = NULL; /* the race's journal: only a --log given here */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--lr") || !strncmp(argv[i], "--lr=", 5))
            user_lr = true;
        if (!strcmp(argv[i], "--log") && i + 1 < argc)
            merged_log = argv[i + 1];
        else if (!strncmp(argv[i], "--log=", 6))
            merged_log = argv[i] + 6;
    }
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        const char *names[] = {"--arm", "--target-acc", "--max-memory", "--resume"};
        int which = -1;
        for (int k = 0; k < 4 && which < 0; k++) {
            size_t l = strlen(names[k]);
            if (i > 0 && !strncmp(a, names[k], l) && (a[l] == '\0' || a[l] == '=')) {
                which = k;
                val = a[l] == '=' ? a + l + 1 : (i + 1 < argc ? argv[++i] : NULL);
            }
        }
        if (which < 0) {
            if (i > 0 && !strcmp(a, "--json"))
                json = true;
            else
                rest[nr++] = argv[i];
            continue;
        }
        char *end = NULL;
        if (!val) {
            fprintf(stderr, "helene race: %s needs a value\n", names[which]);
            free(rest);
            return 2;
        }
        if (which == 0) {
            if (n == RACE_MAX_ARMS) {
                fprintf(stderr, "helene race: at most %d arms\n", RACE_MAX_ARMS);
                free(rest);
                return 2;
            }
            snprintf(arms[n++].spec, sizeof arms[0].spec, "%s", val);
        } else if (which == 1) {
            target = strtod(val, &end);
            if (!end || *end || !isfinite(target)) {
                fprintf(stderr, "helene race: --target-acc: '%s' is not a number\n", val);
                free(rest);
                return 2;
            }
        } else if (which == 3) {
            snprintf(resume_dir, sizeof resume_dir, "%s", val);
        } else {
            max_mib = strtod(val, &end);
            if (!end || *end || !(max_mib > 0)) {
                fprintf(stderr, "helene race: --max-memory: '%s' is not a size in MiB\n", val);
                free(rest);
                return 2;
            }
        }
    }
    if (resume_dir[0]) { /* the arms are the checkpoints' */
        if (n) {
            fprintf(stderr, "helene race: --resume takes the arms from the race's checkpoints; "
                            "give no --arm\n");
            free(rest);
            return 2;
        }
        for (; n < RACE_MAX_ARMS; n++) {
            char p[RUNCFG_PATH_MAX + 32];
            snprintf(p, sizeof p, "%s/arm-%d/checkpoint.json", resume_dir, n);
            if (access(p, F_OK))
                break;
        }
        if (n < 2) {
            fprintf(stderr, "helene race: %s holds no race (arm-0/, arm-1/, ... written by "
                            "helene race --save)\n",
                    resume_dir);
            free(rest);
            return 2;
        }
    }
    if (n < 2) {
        fprintf(stderr, "helene race: give 2 to %d arms, e.g. --arm helene --arm mezo\n",
                RACE_MAX_ARMS);
        free(rest);
        return 2;
    }
    /* the shared settings; resuming, each arm's own come from its checkpoint
     * (the flags given here still apply on top, as for helene train) */
    runargs ra, arm_ra[RACE_MAX_ARMS];
    int rc = 0;
    char arm_dir[RACE_MAX_ARMS][RUNCFG_PATH_MAX];
    if (resume_dir[0]) {
        int parsed = 0;
        for (int i = 0; i < n && !rc; i++) {
            snprintf(arm_dir[i], sizeof arm_dir[i], "%s/arm-%d", resume_dir, i);
            rest[nr] = "--resume";
            rest[nr + 1] = arm_dir[i];
            if ((rc = runargs_parse(&arm_ra[i], "race", nr + 2, rest)) != 0)
                runargs_free(&arm_ra[i]);
            else
                parsed++;
        }
        /* the shared settings: the last arm's, with the flags given here */
        if (!rc && (rc = runargs_parse(&ra, "race", nr + 2, rest)) != 0)
            runargs_free(&ra);
        for (int k = 0; rc && k < parsed; k++)
            runargs_free(&arm_ra[k]);
    } else if ((rc = runargs_parse(&ra, "race", nr, rest)) != 0)
        runargs_free(&ra);
    free(rest);
    if (rc)
        return rc;
    const bool live = !ra.headless && isatty(STDOUT_FILENO) && isatty(STDIN_FILENO);
    if (ra.cfg.time_limit > 0) {
        fprintf(stderr, "helene race: --time-limit does not apply to a race (the arms run the "
                        "same steps; the summary gives each arm's own time)\n");
        runargs_free(&ra);
        for (int k = 0; resume_dir[0] && k < n; k++)
            runargs_free(&arm_ra[k]);
        return 2;
    }
    struct stat lsb;
    if (merged_log && !resume_dir[0] && stat(merged_log, &lsb) == 0 && lsb.st_size > 0) {
        fprintf(stderr, "helene race: %s already holds a journal: choose another --log (a "
                        "resumed race, --resume DIR, rewrites its own)\n",
                merged_log);
        runargs_free(&ra);
        return 1;
    }
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%s/helene-race-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmp)) {
        fprintf(stderr, "helene race: cannot make a temporary folder\n");
        runargs_free(&ra);
        for (int k = 0; resume_dir[0] && k < n; k++)
            runargs_free(&arm_ra[k]);
        return 1;
    }
    hl_err err;
    double avail = max_mib > 0 ? max_mib : mem_available_mib(), first_mib = 0;
    for (int i = 0; i < n && !rc; i++) {
        arm *a = &arms[i];
        if (runcfg_copy(&a->cfg, resume_dir[0] ? &arm_ra[i].cfg : &ra.cfg, &err)) {
            fprintf(stderr, "helene race: %s\n", err.msg);
            rc = 1;
            break;
        }
        if (resume_dir[0]) {
            /* its checkpoint has its method and hyperparameters; its journal
             * and folder are the race's, whatever --log / --save say here */
            snprintf(a->spec, sizeof a->spec, "%s (resumed)", optim_method_name(a->cfg.hp.method));
            snprintf(a->log, sizeof a->log, "%.500s/arm-%d.jsonl", resume_dir, i);
            snprintf(a->cfg.log, sizeof a->cfg.log, "%s", a->log);
            a->cfg.log_append = false;
            snprintf(a->cfg.save, sizeof a->cfg.save, "%.4000s/arm-%d",
                     ra.cfg.save[0] && strcmp(ra.cfg.save, arm_dir[n - 1]) ? ra.cfg.save
                                                                           : resume_dir,
                     i);
            a->keep_log = true;
        } else {
            if ((rc = apply_spec(&a->cfg, a->spec, user_lr)))
                break;
            /* with --save, each arm's journal lives beside its checkpoint, so a
             * resumed race continues it; else in a temporary folder */
            if (ra.cfg.save[0]) {
                mkdir(ra.cfg.save, 0777);
                snprintf(a->log, sizeof a->log, "%.500s/arm-%d.jsonl", ra.cfg.save, i);
                a->keep_log = true;
            } else
                snprintf(a->log, sizeof a->log, "%s/arm-%d.jsonl", tmp, i);
            snprintf(a->cfg.log, sizeof a->cfg.log, "%s", a->log);
            a->cfg.log_append = false;
            if (ra.cfg.save[0] &&
                snprintf(a->cfg.save, sizeof a->cfg.save, "%.4000s/arm-%d", ra.cfg.save, i) >=
                    (int)sizeof a->cfg.save) {
                fprintf(stderr, "helene race: --save: path too long\n");
                rc = 2;
                break;
            }
        }
        /* memory: the first arm measures what one costs, the rest must fit */
        if (i == 1 && first_mib > 0 && avail > 0 && first_mib * (n - 1) > avail) {
            fprintf(stderr,
                    "helene race: %d more arms need about %.0f MiB (the first took %.0f MiB), "
                    "more than the %.0f MiB %s; race fewer arms or a smaller model\n",
                    n - 1, first_mib * (n - 1), first_mib, avail,
                    max_mib > 0 ? "--max-memory allows" : "available");
            rc = 1;
            break;
        }
        double rss0 = engine_process_rss_mib();
        if (engine_create(&a->e, &a->cfg, &err)) {
            fprintf(stderr, "helene race: arm %d (%s): %s\n", i, a->spec, err.msg);
            rc = 1;
            break;
        }
        if (engine_snapshot_alloc(a->e, &a->t, &err) || engine_start(a->e, true, &err)) {
            fprintf(stderr, "helene race: %s\n", err.msg);
            rc = 1;
            break;
        }
        a->have_t = true;
        a->mib = engine_process_rss_mib() - rss0; /* its parameters, state and data; not activations */
        if (i == 0) { /* RSS of the process with one arm loaded: one arm's cost */
            engine_snapshot(a->e, &a->t);
            first_mib = a->t.rss_mib;
        }
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = race_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    uint64_t steps = ra.cfg.steps, start = 0;
    for (int i = 0; !rc && i < n; i++) { /* a resumed race: every arm at the same step */
        engine_snapshot(arms[i].e, &arms[i].t);
        if (i == 0)
            start = arms[i].t.step;
        else if (arms[i].t.step != start) {
            fprintf(stderr, "helene race: the arms' checkpoints are at different steps (%llu, "
                            "%llu): not one race\n",
                    (unsigned long long)start, (unsigned long long)arms[i].t.step);
            rc = 1;
        }
    }
    bool view_done = false; /* the live view ran the race (or the user left it) */
    if (!rc && live) {
        race_view_arm va[RACE_MAX_ARMS];
        for (int i = 0; i < n; i++)
            va[i] = (race_view_arm){arms[i].e, arms[i].spec, arms[i].mib};
        const char *nc = getenv("NO_COLOR");
        race_view_opts vo = {.color = !ra.no_color && !(nc && *nc),
                             .total_steps = steps,
                             .target = target,
                             .max_rate = ra.cfg.objective == RUNCFG_OBJECTIVE_MODEL
                                             ? 0
                                             : APP_ANALYTIC_RATE};
        race_view_end how = RACE_VIEW_QUIT;
        char why[ENGINE_TEXT_MAX + 64] = "";
        if (race_view_run(va, n, &vo, &how, why, sizeof why, &err)) {
            fprintf(stderr, "helene race: %s\n", err.msg);
            rc = 1;
        } else if (how == RACE_VIEW_SIGNAL) {
            race_signal = app_caught_signal();
            rc = 128 + race_signal;
        } else if (how == RACE_VIEW_FAILED) {
            fprintf(stderr, "helene race: %s\n", why);
            rc = 1;
        } else if (how == RACE_VIEW_QUIT)
            fprintf(stderr, "helene race: left at step %llu of %llu; the summary covers the "
                            "steps run\n",
                    (unsigned long long)(arms[0].have_t ? (engine_snapshot(arms[0].e, &arms[0].t),
                                                           arms[0].t.step)
                                                        : 0),
                    (unsigned long long)steps);
        view_done = true;
    }
    time_t last = time(NULL); /* progress every 10 s: whole seconds will do */
    for (uint64_t s = start; !rc && !view_done && s < steps; s++) {
        if (race_signal) { /* between rounds: every arm at the same step */
            rc = 128 + race_signal;
            break;
        }
        if (!step_all(arms, n, false)) {
            rc = race_signal ? 128 + race_signal : 1;
            break;
        }
        if (s == start || time(NULL) - last >= 10 || s + 1 == steps) {
            last = time(NULL);
            fprintf(stderr, "step %llu/%llu", (unsigned long long)s + 1,
                    (unsigned long long)steps);
            for (int i = 0; i < n; i++)
                fprintf(stderr, "  [%d %s] loss %.4g", i, optim_method_name(arms[i].t.method),
                        arms[i].t.loss);
            fputc('\n', stderr);
        }
    }
    if (!rc && !view_done && race_signal)
        rc = 128 + race_signal;
    if (!rc && !view_done && !step_all(arms, n, true)) /* the final evaluation, test, checkpoints */
        rc = race_signal ? 128 + race_signal : 1;
    if (race_signal)
        fprintf(stderr, "helene race: %s: checkpointing every arm\n",
                runargs_signal_name(race_signal));
    for (int i = 0; i < n; i++)
        if (arms[i].e) {
            if (race_signal && arms[i].have_t) {
                /* each arm equals the same run alone: it can go on alone */
                char dir[RUNCFG_PATH_MAX];
                if (runargs_checkpoint_and_quit(arms[i].e, dir, sizeof dir))
                    fprintf(stderr, "  arm %d (%s): %s; continue it with helene train --resume "
                                    "%s --steps %llu\n",
                            i, arms[i].spec, dir, dir, (unsigned long long)ra.cfg.steps);
            } else {
                engine_cmd q = {.kind = ENGINE_CMD_QUIT};
                engine_post(arms[i].e, &q, NULL, NULL);
                engine_join(arms[i].e);
            }
            if (arms[i].have_t)
                engine_snapshot(arms[i].e, &arms[i].t);
        }
    if (rc == 0 || rc >= 128) {
        bool accuracy = ra.cfg.objective == RUNCFG_OBJECTIVE_MODEL;
        if (isnan(target)) { /* the best of the slowest arm */
            for (int i = 0; i < n; i++) {
                arm_results(&arms[i], accuracy ? INFINITY : -INFINITY, accuracy);
                if (isfinite(arms[i].best) &&
                    (isnan(target) || (accuracy ? arms[i].best < target : arms[i].best > target)))
                    target = arms[i].best;
            }
        }
        for (int i = 0; i < n; i++)
            arm_results(&arms[i], target, accuracy);
        if (merged_log && merge_journals(arms, n, merged_log))
            rc = rc ? rc : 1;
        double rss = arms[0].have_t ? arms[0].t.rss_mib : 0;
        if (json) {
            cJSON *o = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(o, "arms");
            cJSON_AddNumberToObject(o, "target", target);
            cJSON_AddStringToObject(o, "target_is", accuracy ? "dev_accuracy" : "exact_loss");
            cJSON_AddNumberToObject(o, "steps", (double)steps);
            cJSON_AddNumberToObject(o, "peak_rss_mib", rss);
            for (int i = 0; i < n; i++) {
                arm *a = &arms[i];
                cJSON *x = cJSON_CreateObject();
                cJSON_AddNumberToObject(x, "arm", i);
                cJSON_AddStringToObject(x, "spec", a->spec);
                cJSON_AddStringToObject(x, "method", optim_method_name(a->t.method));
                cJSON_AddNumberToObject(x, "lr", a->t.hp.lr);
                cJSON_AddNumberToObject(x, "best_dev", a->best);
                cJSON_AddNumberToObject(x, "best_dev_step", (double)a->best_step);
                if (a->reached) {
                    cJSON_AddNumberToObject(x, "steps_to_target", (double)a->steps_to);
                    cJSON_AddNumberToObject(x, "forwards_to_target", (double)a->forwards_to);
                    cJSON_AddNumberToObject(x, "seconds_to_target", a->secs_to);
                } else
                    cJSON_AddNullToObject(x, "steps_to_target");
                cJSON_AddNumberToObject(x, "test_final", a->test);
                cJSON_AddNumberToObject(x, "seconds", a->secs);
                cJSON_AddNumberToObject(x, "arm_mib", a->mib);
                cJSON_AddItemToArray(list, x);
            }
            char *txt = cJSON_PrintUnformatted(o);
            puts(txt ? txt : "{}");
            free(txt);
            cJSON_Delete(o);
        } else {
            printf("| arm | optimizer | lr | best %s | to %s %.4g: steps | forwards | seconds "
                   "| final test | step time | memory |\n",
                   accuracy ? "dev" : "loss", accuracy ? "dev" : "loss", target);
            printf("|---|---|---|---|---|---|---|---|---|---|\n");
            for (int i = 0; i < n; i++) {
                arm *a = &arms[i];
                char to[96];
                if (a->reached)
                    snprintf(to, sizeof to, "%llu | %llu | %.1f", (unsigned long long)a->steps_to,
                             (unsigned long long)a->forwards_to, a->secs_to);
                else
                    snprintf(to, sizeof to, "not reached | | ");
                char test[32] = "-";
                if (!isnan(a->test))
                    snprintf(test, sizeof test, "%.4g", a->test);
                printf("| %d | %s | %.3g | %.4g @%llu | %s | %s | %.1f ms | %.0f MiB |\n", i,
                       a->spec, a->t.hp.lr, a->best, (unsigned long long)a->best_step, to, test,
                       a->t.step ? 1e3 * a->secs / (double)a->t.step : 0.0, a->mib);
            }
            printf("\nmemory: what creating each arm added (parameters, optimizer state, data);"
                   " the race's resident memory at the end %.0f MiB; %llu of %llu steps; seed "
                   "%llu\n",
                   rss, (unsigned long long)arms[0].t.step, (unsigned long long)steps,
                   (unsigned long long)ra.cfg.seed);
        }
    }
    for (int i = 0; i < n; i++) {
        if (arms[i].have_t)
            engine_snapshot_free(&arms[i].t);
        if (arms[i].e)
            engine_free(arms[i].e);
        runcfg_free(&arms[i].cfg);
        if (!arms[i].keep_log)
            unlink(arms[i].log);
        if (resume_dir[0])
            runargs_free(&arm_ra[i]);
    }
    rmdir(tmp);
    runargs_free(&ra);
    return rc;
}

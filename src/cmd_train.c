/* cmd_train.c - `helene train`: parse flags and an optional JSON run config,
 * build the objective and the optimizer, run the steps, report progress on
 * stderr and one JSON line per step in --log.
 *
 * Precedence: hyperparameter table defaults < the scenario's suggested
 * settings (analytic_preset, unless --no-preset) < --config file < flags.
 * Leaves out: the TUI (not built yet: every run is headless), models and
 * tasks (the training-runs issue adds --model/--task beside --objective),
 * checkpoints and resume.
 */
#include "cmd_train.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "analytic.h"
#include "hparams.h"
#include "optim.h"
#include "pool.h"

const char cmd_train_usage[] =
    "usage: helene train [--objective quadratic|rosenbrock] [--optimizer NAME]\n"
    "                    [--steps N] [--seed S] [--threads N] [--log FILE.jsonl]\n"
    "                    [--headless] [--config FILE.json] [--KEY VALUE ...]\n"
    "\n"
    "Fine-tune with a zeroth-order optimizer.  For now the objective is one of\n"
    "the analytic scenarios that ship with the engine (models come later):\n"
    "  quadratic    f = 1/2 sum_l a_l |theta_l|^2, 6 layers, curvatures 1..1000,\n"
    "               sizes 10..1000; each example is a noisy copy of f\n"
    "  rosenbrock   chained Rosenbrock over 3 layers (14 floats), start (-1.2, 1, ...)\n"
    "\n"
    "Run options:\n"
    "  --objective NAME   quadratic (default) or rosenbrock\n"
    "  --optimizer NAME   mezo, zo-sgd-mmt, zo-sign, zo-adam, hizoo, helene (default)\n"
    "  --steps N          steps to run, 1..1e12 (default 1000); also sets total_steps\n"
    "  --seed S           run seed: perturbations and the objective (default 1)\n"
    "  --threads N        worker threads, 1..64 (default 1: the analytic problems are small)\n"
    "  --batch B          examples per step, 1..1024 (default 8)\n"
    "  --noise X          per-example noise sigma, 0..1000 (default 0.1)\n"
    "  --size-scale N     multiply every layer's first dimension, 1..100000 (default 1)\n"
    "  --log FILE         append one JSON line per step (step, loss, loss_plus, loss_minus,\n"
    "                     proj_grad, q, lr, alpha and refresh for helene, forwards, ms_*);\n"
    "                     the first line is {\"event\":\"start\",...} with the run config\n"
    "  --log-layers       add per-layer telemetry (h mean/max, lambda, clip rate, update\n"
    "                     RMS) to every log line\n"
    "  --progress N       progress line on stderr every N steps (default steps/20, 0 = off)\n"
    "  --config FILE      JSON run config: {\"objective\":..., \"optimizer\":..., \"steps\":...,\n"
    "                     \"seed\":..., \"threads\":..., \"lr\":..., any hyperparameter}\n"
    "  --print-config     print the resolved run config as JSON and exit\n"
    "  --no-preset        start from the table defaults (tuned for language models)\n"
    "                     instead of the scenario's suggested settings\n"
    "  --headless         no TUI (the only mode until the TUI lands)\n"
    "  --help             this text and the hyperparameter table\n"
    "\n"
    "Hyperparameters (--KEY VALUE or --KEY=VALUE; '-' and '_' are interchangeable):\n"
    "  all methods  lr eps weight_decay n_probes total_steps\n"
    "  zo-sgd-mmt   momentum\n"
    "  zo-adam      adam_beta1 adam_beta2 adam_eps\n"
    "  hizoo        hizoo_alpha\n"
    "  helene       beta1 beta2 anneal_horizon hess_interval gamma delta kappa\n"
    "               momentum_form hess_estimator hess_probe lambda_mode lambda_abs\n"
    "               layer_granularity anneal precondition clip update_clip\n"
    "'helene train --help' lists each with its range, default and meaning.\n"
    "\n"
    "Exit status: 0 when the run finished, 1 when it failed, 2 on bad usage.\n";

typedef struct train_opts {
    const char *objective;
    const char *optimizer;
    long long steps;
    unsigned long long seed;
    long threads;
    long batch;
    double noise;
    long size_scale;
    const char *log_path;
    bool log_layers;
    long long progress; /* -1: default */
    const char *config_path;
    bool print_config;
    bool no_preset;
    /* hyperparameter flags in order: key, value pairs into argv */
    const char **hp_kv;
    int n_hp;
} train_opts;

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "helene train: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\nRun 'helene train --help' for the options.\n");
    va_end(ap);
    return 2;
}

static void print_hparam_table(FILE *f)
{
    fprintf(f, "\n%-18s %-10s %-34s %s\n", "KEY", "DEFAULT", "RANGE", "METHODS: MEANING");
    for (int i = 0; i < hparams_count(); i++) {
        const hparam_info *in = hparams_info_at(i);
        char range[128];
        hparams_range_text(range, sizeof range, in);
        fprintf(f, "%-18s %-10s %-34s %s: %s\n", in->key, in->def, range, in->methods, in->help);
    }
}

static bool parse_ll(long long *out, const char *s, long long lo, long long hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end); /* accepts 1e5 */
    if (!*s || *end || errno || !isfinite(v) || v != floor(v) || v < (double)lo || v > (double)hi)
        return false;
    *out = (long long)v;
    return true;
}

static bool parse_dbl(double *out, const char *s, double lo, double hi)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v) || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

/* Normalise "--size-scale" / "--lr" to "size_scale" / "lr" in buf. */
static void flag_key(char *buf, size_t cap, const char *flag)
{
    snprintf(buf, cap, "%s", flag + 2);
    for (char *p = buf; *p; p++)
        if (*p == '-')
            *p = '_';
}

static int parse_args(train_opts *o, int argc, char **argv, const char **hp_kv)
{
    o->hp_kv = hp_kv;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strncmp(arg, "--", 2) != 0 || !arg[2])
            return usage_error("unexpected argument '%s'", arg);
        char key[128];
        flag_key(key, sizeof key, arg);
        const char *val = NULL;
        char *eq = strchr(key, '=');
        if (eq) {
            *eq = '\0';
            val = strchr(arg, '=') + 1;
        }
        /* switches */
        bool *sw = !strcmp(key, "headless")       ? &(bool){0}
                   : !strcmp(key, "log_layers")   ? &o->log_layers
                   : !strcmp(key, "print_config") ? &o->print_config
                   : !strcmp(key, "no_preset")    ? &o->no_preset
                                                  : NULL;
        if (sw) {
            if (val)
                return usage_error("--%s takes no value", key);
            *sw = true;
            continue;
        }
        if (!val) {
            if (i + 1 >= argc)
                return usage_error("--%s needs a value", key);
            val = argv[++i];
        }
        long long ll;
        if (!strcmp(key, "objective")) {
            o->objective = val;
        } else if (!strcmp(key, "optimizer")) {
            o->optimizer = val;
        } else if (!strcmp(key, "log")) {
            o->log_path = val;
        } else if (!strcmp(key, "config")) {
            o->config_path = val;
        } else if (!strcmp(key, "steps")) {
            if (!parse_ll(&o->steps, val, 1, 1000000000000LL))
                return usage_error("--steps: bad value '%s' (an integer in 1..1e12)", val);
        } else if (!strcmp(key, "seed")) {
            if (!parse_ll(&ll, val, 0, 9007199254740992LL))
                return usage_error("--seed: bad value '%s' (an integer in 0..2^53)", val);
            o->seed = (unsigned long long)ll;
        } else if (!strcmp(key, "threads")) {
            if (!parse_ll(&ll, val, 1, POOL_MAX_THREADS))
                return usage_error("--threads: bad value '%s' (an integer in 1..64)", val);
            o->threads = (long)ll;
        } else if (!strcmp(key, "batch")) {
            if (!parse_ll(&ll, val, 1, 1024))
                return usage_error("--batch: bad value '%s' (an integer in 1..1024)", val);
            o->batch = (long)ll;
        } else if (!strcmp(key, "size_scale")) {
            if (!parse_ll(&ll, val, 1, 100000))
                return usage_error("--size-scale: bad value '%s' (an integer in 1..100000)", val);
            o->size_scale = (long)ll;
        } else if (!strcmp(key, "noise")) {
            if (!parse_dbl(&o->noise, val, 0, 1000))
                return usage_error("--noise: bad value '%s' (a number in [0, 1000])", val);
        } else if (!strcmp(key, "progress")) {
            if (!parse_ll(&o->progress, val, 0, 1000000000000LL))
                return usage_error("--progress: bad value '%s' (an integer >= 0)", val);
        } else if (hparams_find(key)) {
            o->hp_kv[2 * o->n_hp] = arg; /* the flag as typed, normalised later */
            o->hp_kv[2 * o->n_hp + 1] = val;
            o->n_hp++;
        } else {
            return usage_error("unknown option '%s'", arg);
        }
    }
    return 0;
}

static char *read_file(const char *path, char *why, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(why, cap, "%s", strerror(errno));
        return NULL;
    }
    size_t n = 0, capb = 4096;
    char *buf = malloc(capb);
    while (buf) {
        size_t got = fread(buf + n, 1, capb - n - 1, f);
        n += got;
        if (got == 0)
            break;
        if (n + 1 == capb) {
            if (capb > (64u << 20)) {
                snprintf(why, cap, "larger than 64 MiB");
                free(buf);
                buf = NULL;
                break;
            }
            char *nb = realloc(buf, capb * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            capb *= 2;
        }
    }
    fclose(f);
    if (buf)
        buf[n] = '\0';
    else if (!why[0])
        snprintf(why, cap, "out of memory");
    return buf;
}

/* The run config as JSON (owned by the caller). */
static cJSON *config_json(const train_opts *o, const optim *opt)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "objective", o->objective);
    cJSON_AddNumberToObject(c, "steps", (double)o->steps);
    cJSON_AddNumberToObject(c, "seed", (double)o->seed);
    cJSON_AddNumberToObject(c, "threads", (double)o->threads);
    cJSON_AddNumberToObject(c, "batch", (double)o->batch);
    cJSON_AddNumberToObject(c, "noise", o->noise);
    cJSON_AddNumberToObject(c, "size_scale", (double)o->size_scale);
    for (int i = 0; i < hparams_count(); i++) {
        const hparam_info *in = hparams_info_at(i);
        char v[4096];
        if (optim_get(opt, v, sizeof v, in->key, NULL) != HL_OK)
            continue;
        if (in->type == HPARAM_TYPE_FLOAT || in->type == HPARAM_TYPE_INT)
            cJSON_AddNumberToObject(c, in->key, atof(v));
        else
            cJSON_AddStringToObject(c, in->key, v);
    }
    return c;
}

/* Run-level keys of a config file fill opts unless a flag set them;
 * hyperparameters are applied to the optimizer.  Returns 0 or an exit code. */
static int apply_config_run(train_opts *o, const cJSON *root, const train_opts *flags_seen)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        const char *k = it->string;
        if (!strcmp(k, "objective") && cJSON_IsString(it) && !flags_seen->objective)
            o->objective = it->valuestring;
        else if (!strcmp(k, "optimizer") && cJSON_IsString(it) && !flags_seen->optimizer)
            o->optimizer = it->valuestring;
        else if (!strcmp(k, "steps") && cJSON_IsNumber(it) && !flags_seen->steps)
            o->steps = (long long)it->valuedouble;
        else if (!strcmp(k, "seed") && cJSON_IsNumber(it) && !flags_seen->seed)
            o->seed = (unsigned long long)it->valuedouble;
        else if (!strcmp(k, "threads") && cJSON_IsNumber(it) && !flags_seen->threads)
            o->threads = (long)it->valuedouble;
        else if (!strcmp(k, "batch") && cJSON_IsNumber(it) && !flags_seen->batch)
            o->batch = (long)it->valuedouble;
        else if (!strcmp(k, "noise") && cJSON_IsNumber(it) && flags_seen->noise < 0)
            o->noise = it->valuedouble;
        else if (!strcmp(k, "size_scale") && cJSON_IsNumber(it) && !flags_seen->size_scale)
            o->size_scale = (long)it->valuedouble;
        else if (!strcmp(k, "objective") || !strcmp(k, "optimizer") || !strcmp(k, "steps") ||
                 !strcmp(k, "seed") || !strcmp(k, "threads") || !strcmp(k, "batch") ||
                 !strcmp(k, "noise") || !strcmp(k, "size_scale"))
            if (!(cJSON_IsString(it) || cJSON_IsNumber(it)))
                return usage_error("--config: '%s' has the wrong type", k);
    }
    if (o->steps < 1 || o->threads < 1 || o->threads > POOL_MAX_THREADS || o->batch < 1 ||
        o->batch > 1024 || !(o->noise >= 0 && o->noise <= 1000) || o->size_scale < 1 ||
        o->size_scale > 100000)
        return usage_error("--config: a run value (steps, threads, batch, noise, size_scale) is "
                           "out of range");
    return 0;
}

static hl_status apply_preset(optim *opt, const char *preset, hl_err *err)
{
    char buf[512];
    snprintf(buf, sizeof buf, "%s", preset);
    char *save = NULL;
    for (char *tok = strtok_r(buf, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            continue;
        *eq = '\0';
        hl_status st = optim_set(opt, tok, eq + 1, err);
        if (st != HL_OK)
            return st;
    }
    return HL_OK;
}

static void log_step(FILE *f, const optim *opt, const param_set *ps, double loss, bool layers)
{
    const optim_step_stats *s = optim_last_stats(opt);
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "step", (double)s->step);
    cJSON_AddNumberToObject(j, "loss", loss);
    cJSON_AddNumberToObject(j, "loss_plus", s->loss_plus);
    cJSON_AddNumberToObject(j, "loss_minus", s->loss_minus);
    cJSON_AddNumberToObject(j, "proj_grad", s->proj_grad);
    cJSON_AddNumberToObject(j, "q", s->q);
    cJSON_AddNumberToObject(j, "lr", s->lr);
    if (s->method == OPTIM_METHOD_HELENE) {
        cJSON_AddNumberToObject(j, "alpha", s->alpha);
        cJSON_AddBoolToObject(j, "refresh", s->refresh);
    }
    if (s->method == OPTIM_METHOD_HIZOO)
        cJSON_AddNumberToObject(j, "loss0", s->loss0);
    cJSON_AddNumberToObject(j, "forwards", s->forwards);
    char seed[32];
    snprintf(seed, sizeof seed, "%016llx", (unsigned long long)s->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "ms_perturb", s->ms_perturb);
    cJSON_AddNumberToObject(j, "ms_forward", s->ms_forward);
    cJSON_AddNumberToObject(j, "ms_update", s->ms_update);
    if (layers) {
        const optim_layer_stats *ls = optim_layer_stats_get(opt);
        cJSON *arr = cJSON_AddArrayToObject(j, "layers");
        for (int l = 0; l < ps->n_layers; l++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "name", ps->layers[l].name);
            cJSON_AddNumberToObject(o, "h_mean", ls[l].state_mean);
            cJSON_AddNumberToObject(o, "h_max", ls[l].state_max);
            cJSON_AddNumberToObject(o, "lambda", ls[l].lambda);
            cJSON_AddNumberToObject(o, "clip_rate", ls[l].clip_rate);
            cJSON_AddNumberToObject(o, "update_rms", ls[l].update_rms);
            cJSON_AddItemToArray(arr, o);
        }
    }
    char *line = cJSON_PrintUnformatted(j);
    if (line) {
        fputs(line, f);
        fputc('\n', f);
        free(line);
    }
    cJSON_Delete(j);
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cmd_train(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(cmd_train_usage, stdout);
            print_hparam_table(stdout);
            return 0;
        }
    train_opts o = {.objective = NULL, .optimizer = NULL, .steps = 0, .seed = 0, .threads = 0,
                    .batch = 0, .noise = -1, .size_scale = 0, .progress = -1};
    const char **hp_kv = calloc((size_t)argc * 2 + 2, sizeof *hp_kv);
    if (!hp_kv) {
        fprintf(stderr, "helene train: out of memory\n");
        return 1;
    }
    int rc = parse_args(&o, argc, argv, hp_kv);
    if (rc) {
        free(hp_kv);
        return rc;
    }
    train_opts seen = o; /* what the flags set explicitly */
    if (!o.objective)
        o.objective = "quadratic";
    if (!o.optimizer)
        o.optimizer = "helene";
    if (!o.steps)
        o.steps = 1000;
    if (!o.threads)
        o.threads = 1;
    if (!o.batch)
        o.batch = 8;
    if (o.noise < 0)
        o.noise = 0.1;
    if (!o.size_scale)
        o.size_scale = 1;
    bool seed_flag = false;
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--seed") || !strncmp(argv[i], "--seed=", 7))
            seed_flag = true;
    if (!seed_flag)
        o.seed = 1;
    seen.seed = seed_flag;

    cJSON *config = NULL;
    char *config_text = NULL;
    param_set ps;
    param_set_init(&ps);
    objective obj;
    memset(&obj, 0, sizeof obj);
    optim *opt = NULL;
    pool workers;
    bool have_pool = false;
    FILE *logf = NULL;
    hl_err err;
    hl_err_clear(&err);
    rc = 1;

    if (o.config_path) {
        char why[256] = "";
        config_text = read_file(o.config_path, why, sizeof why);
        if (!config_text) {
            fprintf(stderr, "helene train: --config %s: %s\n", o.config_path, why);
            goto out;
        }
        config = cJSON_Parse(config_text);
        if (!config || !cJSON_IsObject(config)) {
            fprintf(stderr, "helene train: --config %s: not a JSON object\n", o.config_path);
            rc = 2;
            goto out;
        }
        if ((rc = apply_config_run(&o, config, &seen)) != 0)
            goto out;
        rc = 1;
    }

    analytic_kind kind;
    if (analytic_parse_kind(&kind, o.objective, &err) != HL_OK) {
        fprintf(stderr, "helene train: --objective: %s\n", err.msg);
        rc = 2;
        goto out;
    }
    int32_t method;
    if (optim_method_parse(&method, o.optimizer, &err) != HL_OK) {
        fprintf(stderr, "helene train: --%s\n", err.msg);
        rc = 2;
        goto out;
    }
    analytic_config acfg;
    analytic_config_default(&acfg, kind);
    acfg.seed = o.seed;
    acfg.batch = (int32_t)o.batch;
    acfg.noise = o.noise;
    acfg.size_scale = (int32_t)o.size_scale;
    if (analytic_init(&obj, &ps, &acfg, &err) != HL_OK) {
        fprintf(stderr, "helene train: %s\n", err.msg);
        goto out;
    }
    if (o.threads > 1) {
        if (pool_init(&workers, (int)o.threads, &err) != HL_OK) {
            fprintf(stderr, "helene train: %s\n", err.msg);
            goto out;
        }
        have_pool = true;
    }
    if (optim_init(&opt, &ps, have_pool ? &workers : NULL, o.seed, &err) != HL_OK) {
        fprintf(stderr, "helene train: %s\n", err.msg);
        goto out;
    }
    char steps_txt[32];
    snprintf(steps_txt, sizeof steps_txt, "%lld", o.steps);
    if (optim_set(opt, "optimizer", o.optimizer, &err) != HL_OK ||
        optim_set(opt, "total_steps", steps_txt, &err) != HL_OK) {
        fprintf(stderr, "helene train: %s\n", err.msg);
        rc = 2;
        goto out;
    }
    const char *preset = o.no_preset ? "" : analytic_preset(kind, o.optimizer);
    if (apply_preset(opt, preset, &err) != HL_OK) {
        fprintf(stderr, "helene train: preset: %s\n", err.msg);
        goto out;
    }
    if (config) {
        const cJSON *it;
        cJSON_ArrayForEach(it, config)
        {
            if (!hparams_find(it->string) || !strcmp(it->string, "optimizer") ||
                !strcmp(it->string, "total_steps"))
                continue;
            char v[64];
            const char *val = v;
            if (cJSON_IsNumber(it))
                snprintf(v, sizeof v, "%.17g", it->valuedouble);
            else if (cJSON_IsString(it))
                val = it->valuestring;
            else if (cJSON_IsBool(it))
                val = cJSON_IsTrue(it) ? "on" : "off";
            else
                val = "(not a number or string)";
            if (optim_set(opt, it->string, val, &err) != HL_OK) {
                fprintf(stderr, "helene train: --config %s: %s\n", o.config_path, err.msg);
                rc = 2;
                goto out;
            }
        }
    }
    for (int i = 0; i < o.n_hp; i++) {
        char key[128];
        flag_key(key, sizeof key, hp_kv[2 * i]);
        char *eq = strchr(key, '=');
        if (eq)
            *eq = '\0';
        if (!strcmp(key, "total_steps"))
            fprintf(stderr, "helene train: note: --total-steps overrides --steps for the "
                            "annealing horizon only\n");
        if (optim_set(opt, key, hp_kv[2 * i + 1], &err) != HL_OK) {
            fprintf(stderr, "helene train: --%s\n", err.msg);
            rc = 2;
            goto out;
        }
    }
    if (o.print_config) {
        cJSON *c = config_json(&o, opt);
        char *s = cJSON_Print(c);
        if (s)
            puts(s);
        free(s);
        cJSON_Delete(c);
        rc = 0;
        goto out;
    }
    if (o.log_path) {
        logf = fopen(o.log_path, "w");
        if (!logf) {
            fprintf(stderr, "helene train: --log %s: %s\n", o.log_path, strerror(errno));
            goto out;
        }
        cJSON *start = cJSON_CreateObject();
        cJSON_AddStringToObject(start, "event", "start");
        cJSON_AddItemToObject(start, "config", config_json(&o, opt));
        cJSON *layers = cJSON_AddArrayToObject(start, "layers");
        for (int l = 0; l < ps.n_layers; l++)
            cJSON_AddItemToArray(layers, cJSON_CreateString(ps.layers[l].name));
        char *s = cJSON_PrintUnformatted(start);
        if (s)
            fprintf(logf, "%s\n", s);
        free(s);
        cJSON_Delete(start);
    }

    double f0 = NAN;
    objective_full_loss(&obj, &f0, &ps, NULL, &err);
    long long every = o.progress >= 0 ? o.progress : (o.steps >= 20 ? o.steps / 20 : 1);
    char lr_txt[64];
    optim_get(opt, lr_txt, sizeof lr_txt, "lr", NULL);
    fprintf(stderr,
            "helene train: %s on %s (%zu parameters in %d layers), %lld steps, lr %s, "
            "seed %llu, %ld thread%s%s%s\n",
            o.optimizer, o.objective, param_set_count(&ps), ps.n_layers, o.steps, lr_txt, o.seed,
            o.threads, o.threads == 1 ? "" : "s", preset[0] ? ", scenario preset: " : "", preset);
    fprintf(stderr, "step 0: loss %.6g\n", f0);
    double t_start = wall_s();
    for (long long s = 1; s <= o.steps; s++) {
        if (optim_step(opt, &obj, &err) != HL_OK) {
            fprintf(stderr, "helene train: %s\n", err.msg);
            goto out;
        }
        double loss;
        if (objective_full_loss(&obj, &loss, &ps, NULL, &err) != HL_OK) {
            const optim_step_stats *st = optim_last_stats(opt);
            loss = 0.5 * (st->loss_plus + st->loss_minus);
        }
        if (!isfinite(loss)) {
            fprintf(stderr, "helene train: step %lld: the loss is not finite (%g); stopping\n", s,
                    loss);
            goto out;
        }
        if (logf)
            log_step(logf, opt, &ps, loss, o.log_layers);
        if (every > 0 && (s % every == 0 || s == o.steps)) {
            const optim_step_stats *st = optim_last_stats(opt);
            double el = wall_s() - t_start;
            fprintf(stderr,
                    "step %lld/%lld: loss %.6g (%.3g%% of start)  L+ %.6g  L- %.6g  c %.4g",
                    s, o.steps, loss, 100.0 * loss / f0, st->loss_plus, st->loss_minus,
                    st->proj_grad);
            if (st->method == OPTIM_METHOD_HELENE)
                fprintf(stderr, "  alpha %.4f", st->alpha);
            fprintf(stderr, "  %.0f steps/s\n", el > 0 ? (double)s / el : 0.0);
        }
    }
    rc = 0;
out:
    if (logf && fclose(logf) != 0 && rc == 0) {
        fprintf(stderr, "helene train: --log %s: %s\n", o.log_path, strerror(errno));
        rc = 1;
    }
    optim_free(opt);
    if (have_pool)
        pool_free(&workers);
    objective_destroy(&obj);
    param_set_free(&ps);
    cJSON_Delete(config);
    free(config_text);
    free(hp_kv);
    return rc;
}

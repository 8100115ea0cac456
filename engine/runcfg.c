/* runcfg.c - see runcfg.h.  One table of keys drives parsing, JSON output
 * and help, so the three never disagree. */
#include "runcfg.h"

#include "analytic.h"
#include "fileio.h"
#include "jsonval.h"
#include "peft.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum key_kind {
    KEY_STR,
    KEY_I32,
    KEY_U64,
    KEY_BOOL,
    KEY_F64,
    KEY_DURATION, /* seconds, written as 90, 90s, 10m, 1.5h or 1h30m */
    KEY_OBJECTIVE,
    KEY_CURVATURE, /* analytic_curvature by name */
    KEY_PEFT,      /* a PEFT spec (peft.h), stored in canonical form */
} key_kind;

typedef struct key_def {
    runcfg_key pub;
    key_kind kind;
    size_t offset;
    double lo, hi;
} key_def;

#define OFF(f) offsetof(runcfg, f)
static const key_def keys[] = {
    {{"objective", "model (a model folder + task) | quadratic | rosenbrock"}, KEY_OBJECTIVE,
     OFF(objective), 0, 0},
    {{"model", "model folder (config.json, model.safetensors, vocab.json, merges.txt)"}, KEY_STR,
     OFF(model), 0, 0},
    {{"task", "built-in task name or task FILE.json (default: the bundled default task)"},
     KEY_STR, OFF(task), 0, 0},
    {{"data", "data file or folder (default: the task's bundled data)"}, KEY_STR, OFF(data), 0,
     0},
    {{"trainable",
      "POSIX extended regex: tune only tensors whose name matches it, freeze the rest "
      "(\"\" = all; helene info --tensors lists the names)"},
     KEY_STR, OFF(trainable), 0, 0},
    {{"peft",
      "parameter-efficient tuning: none | lora[:r=8,alpha=16,targets=q+v] | prefix[:tokens=5] "
      "(tunes only the adapters; targets: q k v o fc1 fc2)"},
     KEY_PEFT, OFF(peft), 0, 0},
    {{"base_hash",
      "written by helene for --peft runs: a hash of the base weights the adapters were "
      "trained on (a resume checks it; \"\" = unknown)"},
     KEY_STR, OFF(base_hash), 0, 0},
    {{"k_shot",
      "k examples per class for train and k per class for dev, drawn from the training data "
      "with data_seed (LM-BFF / MeZO's k-shot protocol: 16 or 512, data seeds 13 21 42 87 "
      "100); test: the data's test or dev file, or the rest, at most 1000 (0 = off)"},
     KEY_I32, OFF(k_shot), 0, 1000000},
    {{"train_size", "training examples to draw (0 = all)"}, KEY_I32, OFF(train_size), 0, 1e8},
    {{"dev_size", "dev examples to evaluate on (0 = all)"}, KEY_I32, OFF(dev_size), 0, 1e8},
    {{"batch_size", "examples per step (B)"}, KEY_I32, OFF(batch_size), 1, 4096},
    {{"max_tokens", "prompt token limit (0 = the task's and model's)"}, KEY_I32, OFF(max_tokens),
     0, 1 << 20},
    {{"skip_bad", "skip and count bad data lines instead of stopping (true/false)"}, KEY_BOOL,
     OFF(skip_bad), 0, 0},
    {{"grad_alignment",
      "every ZO step also backpropagates to report cos(c·z, true gradient) (models, n_probes 1)"},
     KEY_BOOL, OFF(grad_alignment), 0, 0},
    {{"steps", "total steps of the run"}, KEY_U64, OFF(steps), 0, 1e12},
    {{"time_limit",
      "stop after this much running time (90, 90s, 10m, 1.5h, 1h30m; 0 = none; pauses and "
      "loading do not count; a resumed run starts a new count)"},
     KEY_DURATION, OFF(time_limit), 0, 1e7},
    {{"seed", "run seed: perturbations and batch order"}, KEY_U64, OFF(seed), 0, 1.8e19},
    {{"data_seed", "seed for sampling and splitting data"}, KEY_U64, OFF(data_seed), 0, 1.8e19},
    {{"eval_every", "evaluate on dev every N steps (0 = at the end only)"}, KEY_U64,
     OFF(eval_every), 0, 1e12},
    {{"save", "folder for the final checkpoint (periodic ones go to DIR/step-N)"}, KEY_STR,
     OFF(save), 0, 0},
    {{"checkpoint_every", "write a checkpoint every N steps (0 = none)"}, KEY_U64,
     OFF(checkpoint_every), 0, 1e12},
    {{"shards",
      "evaluate each batch as this many contiguous shards, one forward each (0 = one per "
      "mpirun rank, 1 in one process); runs with the same shards are bit-identical whatever "
      "the number of ranks"},
     KEY_I32, OFF(shards), 0, 4096},
    {{"probes_per_rank",
      "under mpirun: each rank probes the whole batch with its own seed instead of "
      "evaluating a shard, and every rank applies every probe: n_probes (default: the number "
      "of ranks) probes a step for the time of one (true/false)"},
     KEY_BOOL, OFF(probes_per_rank), 0, 0},
    {{"check_every",
      "under mpirun: compare a hash of the parameters across ranks every N steps and stop "
      "the job if they differ (0 = never)"},
     KEY_U64, OFF(check_every), 0, 1e12},
    {{"keep_last", "periodic checkpoints to keep"}, KEY_I32, OFF(keep_last), 1, 1000},
    {{"resume", "continue from this checkpoint folder"}, KEY_STR, OFF(resume), 0, 0},
    {{"log", "JSONL journal file (one holding another run is refused unless --resume "
              "continues it or log_append is on)"},
     KEY_STR, OFF(log), 0, 0},
    {{"log_append", "add this run to a --log file that already holds another run (true/false)"},
     KEY_BOOL, OFF(log_append), 0, 0},
    {{"threads", "compute threads (0 = all online CPUs)"}, KEY_I32, OFF(threads), 0, 64},
    {{"noise", "analytic objectives: per-example noise sigma"}, KEY_F64, OFF(noise), 0, 1000},
    {{"size_scale", "analytic objectives: multiply every layer's size"}, KEY_I32,
     OFF(size_scale), 1, 100000},
    {{"curvature", "quadratic: layered (curvatures 1..1000 by layer) | homogeneous (all 1) | "
                   "coupled (all 1 plus one stiff direction across every layer)"},
     KEY_CURVATURE, OFF(curvature), 0, 0},
};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

void runcfg_init(runcfg *c)
{
    memset(c, 0, sizeof *c);
    c->objective = RUNCFG_OBJECTIVE_MODEL;
    c->batch_size = 16;
    c->steps = 1000;
    c->check_every = 50;
    c->seed = 42;
    c->data_seed = 13;
    c->eval_every = 100;
    c->keep_last = 3;
    c->noise = 0.1;
    c->size_scale = 1;
    hparams_init(&c->hp);
    c->hp.total_steps = (int64_t)c->steps;
}

void runcfg_free(runcfg *c)
{
    hparams_free(&c->hp);
}

hl_status runcfg_copy(runcfg *dst, const runcfg *src, hl_err *err)
{
    hparams hp;
    hl_status st = hparams_copy(&hp, &src->hp, err);
    if (st)
        return st;
    *dst = *src;
    dst->hp = hp;
    return HL_OK;
}

static void normalise_key(char *out, size_t cap, const char *key)
{
    size_t i = 0;
    for (; key[i] && i + 1 < cap; i++)
        out[i] = key[i] == '-' ? '_' : key[i];
    out[i] = '\0';
}

static const key_def *find_key(const char *k)
{
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].pub.key, k))
            return &keys[i];
    return NULL;
}

/* "90", "90s", "10m", "1.5h", "1h30m": a sum of numbers, each with an
 * optional unit s, m or h (seconds without one). */
static hl_status parse_duration(double *out, const key_def *d, const char *v, hl_err *err)
{
    double total = 0;
    const char *p = v;
    if (!*p)
        goto bad;
    while (*p) {
        if (!(*p >= '0' && *p <= '9') && *p != '.')
            goto bad;
        char *end;
        errno = 0;
        double x = strtod(p, &end);
        if (errno || end == p || !isfinite(x))
            goto bad;
        p = end;
        double unit = 1;
        if (*p == 's')
            p++;
        else if (*p == 'm')
            unit = 60, p++;
        else if (*p == 'h')
            unit = 3600, p++;
        else if (*p)
            goto bad;
        total += x * unit;
    }
    if (total < d->lo || total > d->hi)
        return hl_err_set(err, HL_ERR_INVALID, "%s: '%s' is out of range (0 to %.0f seconds)",
                          d->pub.key, v, d->hi);
    *out = total;
    return HL_OK;
bad:
    return hl_err_set(err, HL_ERR_INVALID,
                      "%s: expected a duration such as 600, 90s, 10m, 1.5h or 1h30m, got '%s'",
                      d->pub.key, v);
}

static hl_status parse_number(double *out, const key_def *d, const char *v, hl_err *err)
{
    char *end;
    errno = 0;
    /* integers: reject fractions and exponents that hide them */
    unsigned long long x = strtoull(v, &end, 10);
    if (errno || end == v || *end || v[0] == '-')
        return hl_err_set(err, HL_ERR_INVALID, "%s: expected a non-negative integer, got '%s'",
                          d->pub.key, v);
    if ((double)x < d->lo || (double)x > d->hi)
        return hl_err_set(err, HL_ERR_INVALID, "%s: %llu is out of range (%.0f..%.0f)",
                          d->pub.key, x, d->lo, d->hi);
    *out = (double)x;
    return HL_OK;
}

bool runcfg_key_is_bool(const char *key_in)
{
    char key[128];
    normalise_key(key, sizeof key, key_in);
    const key_def *d = find_key(key);
    return d && d->kind == KEY_BOOL;
}

hl_status runcfg_set(runcfg *c, const char *key_in, const char *value, hl_err *err)
{
    char key[128];
    normalise_key(key, sizeof key, key_in);
    const key_def *d = find_key(key);
    if (!d) {
        if (!strcmp(key, "optimizer") || hparams_find(key)) {
            hl_status st = hparams_set(&c->hp, key, value, 0, err);
            return st;
        }
        return hl_err_set(err, HL_ERR_INVALID, "unknown setting '%s'", key_in);
    }
    char *field = (char *)c + d->offset;
    switch (d->kind) {
    case KEY_STR:
        if (strlen(value) >= RUNCFG_PATH_MAX)
            return hl_err_set(err, HL_ERR_INVALID, "%s: value is too long", key);
        strcpy(field, value);
        return HL_OK;
    case KEY_F64: {
        char *end;
        errno = 0;
        double x = strtod(value, &end);
        if (errno || end == value || *end || !isfinite(x) || x < d->lo || x > d->hi)
            return hl_err_set(err, HL_ERR_INVALID, "%s: expected a number in [%g, %g], got '%s'",
                              key, d->lo, d->hi, value);
        *(double *)field = x;
        return HL_OK;
    }
    case KEY_DURATION:
        return parse_duration((double *)field, d, value, err);
    case KEY_BOOL:
        if (!strcmp(value, "true") || !strcmp(value, "on") || !strcmp(value, "1"))
            *(bool *)field = true;
        else if (!strcmp(value, "false") || !strcmp(value, "off") || !strcmp(value, "0"))
            *(bool *)field = false;
        else
            return hl_err_set(err, HL_ERR_INVALID, "%s: expected true or false, got '%s'", key,
                              value);
        return HL_OK;
    case KEY_OBJECTIVE:
        if (!strcmp(value, "model"))
            c->objective = RUNCFG_OBJECTIVE_MODEL;
        else if (!strcmp(value, "quadratic"))
            c->objective = RUNCFG_OBJECTIVE_QUADRATIC;
        else if (!strcmp(value, "rosenbrock"))
            c->objective = RUNCFG_OBJECTIVE_ROSENBROCK;
        else
            return hl_err_set(err, HL_ERR_INVALID,
                              "objective: '%s' is not one of model, quadratic, rosenbrock", value);
        return HL_OK;
    case KEY_CURVATURE:
        return analytic_parse_curvature((int32_t *)field, value, err);
    case KEY_PEFT: {
        peft_spec ps;
        hl_status st = peft_parse(&ps, value, err);
        if (st)
            return st;
        peft_format(&ps, field, RUNCFG_PATH_MAX);
        return HL_OK;
    }
    case KEY_I32: {
        double x = 0;
        hl_status st = parse_number(&x, d, value, err);
        if (st)
            return st;
        *(int32_t *)field = (int32_t)x;
        return HL_OK;
    }
    case KEY_U64: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(value, &end, 10);
        if (errno || end == value || *end || value[0] == '-')
            return hl_err_set(err, HL_ERR_INVALID, "%s: expected a non-negative integer, got '%s'",
                              key, value);
        if ((double)x < d->lo || (double)x > d->hi)
            return hl_err_set(err, HL_ERR_INVALID, "%s: %llu is out of range (%.0f..%.0g)", key,
                              x, d->lo, d->hi);
        if (!strcmp(key, "steps")) {
            char buf[32];
            snprintf(buf, sizeof buf, "%llu", x);
            hl_status st = hparams_set(&c->hp, "total_steps", buf, 0, err);
            if (st)
                return st;
        }
        *(uint64_t *)field = (uint64_t)x;
        return HL_OK;
    }
    }
    return HL_ERR_INVALID;
}

/* One JSON value as the text runcfg_set takes; false with err set when it
 * has no such text (null, an object, a list of non-numbers, too long). */
static bool json_setting_text(char *val, size_t cap, const cJSON *it, const char *where,
                              hl_err *err)
{
    if (cJSON_IsString(it)) {
        size_t n = strlen(it->valuestring);
        if (n >= cap) {
            hl_err_set(err, HL_ERR_FORMAT, "%s: \"%s\" is too long (%zu bytes; at most %zu)",
                       where, it->string, n, cap - 1);
            return false;
        }
        memcpy(val, it->valuestring, n + 1);
        return true;
    }
    if (cJSON_IsBool(it)) {
        snprintf(val, cap, "%s", cJSON_IsTrue(it) ? "true" : "false");
        return true;
    }
    if (cJSON_IsNumber(it)) {
        /* %.17g: a double read back bit for bit (checkpoints resume exactly) */
        double x = it->valuedouble;
        if (x == floor(x) && fabs(x) < 9e15)
            snprintf(val, cap, "%.0f", x);
        else
            snprintf(val, cap, "%.17g", x);
        return true;
    }
    if (cJSON_IsArray(it)) {
        size_t at = 0;
        val[0] = '\0';
        for (const cJSON *e = it->child; e; e = e->next) {
            if (!cJSON_IsNumber(e)) {
                hl_err_set(err, HL_ERR_FORMAT, "%s: \"%s\" must be a list of numbers", where,
                           it->string);
                return false;
            }
            at += (size_t)snprintf(val + at, cap - at, "%s%.17g", at ? "," : "", e->valuedouble);
            if (at >= cap) {
                hl_err_set(err, HL_ERR_FORMAT, "%s: \"%s\" is too long", where, it->string);
                return false;
            }
        }
        return true;
    }
    hl_err_set(err, HL_ERR_FORMAT, "%s: \"%s\" is %s, not a setting's value%s", where,
               it->string, cJSON_IsNull(it) ? "null" : "an object",
               cJSON_IsNull(it) ? " (leave the key out for its default)" : "");
    return false;
}

hl_status runcfg_apply_json(runcfg *c, const cJSON *obj, const char *where, hl_err *err)
{
    if (!cJSON_IsObject(obj))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: expected a JSON object of settings", where);
    const char *dup = json_duplicate_key(obj);
    if (dup)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: key \"%.60s\" appears twice", where, dup);
    runcfg tmp;
    hl_status st = runcfg_copy(&tmp, c, err);
    if (st)
        return st;
    for (const cJSON *it = obj->child; it && !st; it = it->next) {
        char val[RUNCFG_PATH_MAX];
        if (!json_setting_text(val, sizeof val, it, where, err))
            st = err ? err->code : HL_ERR_FORMAT;
        else if ((st = runcfg_set(&tmp, it->string, val, err)))
            hl_err_prefix(err, "%s", where);
    }
    if (st) {
        runcfg_free(&tmp);
        return st;
    }
    runcfg_free(c);
    *c = tmp;
    return HL_OK;
}

hl_status runcfg_load_json(runcfg *c, const char *path, hl_err *err)
{
    cJSON *j;
    hl_status st = json_read_file(path, 1 << 24, &j, err);
    if (!st)
        st = runcfg_apply_json(c, j, path, err);
    cJSON_Delete(j);
    return st;
}

char *runcfg_to_json(const runcfg *c)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < N_KEYS; i++) {
        const key_def *d = &keys[i];
        const char *field = (const char *)c + d->offset;
        switch (d->kind) {
        case KEY_STR:
        case KEY_PEFT:
            cJSON_AddStringToObject(o, d->pub.key, field);
            break;
        case KEY_BOOL:
            cJSON_AddBoolToObject(o, d->pub.key, *(const bool *)field);
            break;
        case KEY_F64:
        case KEY_DURATION: {
            char buf[40];
            snprintf(buf, sizeof buf, "%.17g", *(const double *)field);
            cJSON_AddItemToObject(o, d->pub.key, cJSON_CreateRaw(buf));
            break;
        }
        case KEY_OBJECTIVE:
            cJSON_AddStringToObject(o, d->pub.key,
                                    c->objective == RUNCFG_OBJECTIVE_MODEL       ? "model"
                                    : c->objective == RUNCFG_OBJECTIVE_QUADRATIC ? "quadratic"
                                                                                 : "rosenbrock");
            break;
        case KEY_CURVATURE:
            cJSON_AddStringToObject(o, d->pub.key,
                                    analytic_curvature_name(*(const int32_t *)field));
            break;
        case KEY_I32:
            cJSON_AddNumberToObject(o, d->pub.key, *(const int32_t *)field);
            break;
        case KEY_U64:
            /* JSON numbers are doubles: seeds above 2^53 keep their bits as strings */
            if (*(const uint64_t *)field > (1ull << 53)) {
                char buf[32];
                snprintf(buf, sizeof buf, "%llu", (unsigned long long)*(const uint64_t *)field);
                cJSON_AddStringToObject(o, d->pub.key, buf);
            } else
                cJSON_AddNumberToObject(o, d->pub.key, (double)*(const uint64_t *)field);
            break;
        }
    }
    cJSON_AddStringToObject(o, "optimizer", optim_method_name(c->hp.method));
    for (int i = 0; i < hparams_count(); i++) {
        const hparam_info *h = hparams_info_at(i);
        if (!strcmp(h->key, "optimizer") || !strcmp(h->key, "total_steps"))
            continue;
        char buf[4096];
        if (hparams_get(&c->hp, buf, sizeof buf, h->key, NULL))
            continue;
        switch (h->type) {
        case HPARAM_TYPE_BOOL:
            cJSON_AddBoolToObject(o, h->key, !strcmp(buf, "on") || !strcmp(buf, "true"));
            break;
        case HPARAM_TYPE_FLOAT:
        case HPARAM_TYPE_INT: {
            /* keep the exact text so the value round-trips bit for bit */
            cJSON *num = cJSON_CreateRaw(buf);
            cJSON_AddItemToObject(o, h->key, num);
            break;
        }
        default:
            cJSON_AddStringToObject(o, h->key, buf);
            break;
        }
    }
    char *s = cJSON_Print(o);
    cJSON_Delete(o);
    return s;
}

int runcfg_key_count(void)
{
    return N_KEYS;
}

const runcfg_key *runcfg_key_at(int i)
{
    return i >= 0 && i < N_KEYS ? &keys[i].pub : NULL;
}

/* Learning rates for adapters, where a method's full-parameter default is
 * far off: the loss moves much less per unit of LoRA's A and B, and far
 * less per unit of a prefix, than per unit of the weights, so the SGD-like
 * methods need about 100x (LoRA) and 10^4-10^5x (prefix) their rate; the
 * adaptive ones (Adam, sign steps) 10-300x; HELENE's preconditioned step
 * none.  The best of a sweep on the default model and task, 300 steps
 * (BENCHMARKS.md); other models may want others (--lr). */
static double peft_lr(int32_t method, peft_kind kind)
{
    static const struct {
        int32_t method;
        double lora, prefix;
    } t[] = {
        {OPTIM_METHOD_MEZO, 3e-3, 1.0},        {OPTIM_METHOD_ZO_SGD_MMT, 3e-4, 0.1},
        {OPTIM_METHOD_HIZOO, 3e-3, 1.0},       {OPTIM_METHOD_ZO_SIGN, 3e-3, 0.1},
        {OPTIM_METHOD_ZO_ADAM, 3e-3, 0.1},     {OPTIM_METHOD_FT_ADAM, 1e-4, 1e-2},
        {OPTIM_METHOD_HELENE, 3e-3, 3e-3},     {OPTIM_METHOD_LAYER_NEWTON, 0.5, 1.0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
        if (t[i].method == method)
            return kind == PEFT_LORA ? t[i].lora : kind == PEFT_PREFIX ? t[i].prefix : 0;
    return 0;
}

double runcfg_method_lr(const runcfg *c, int32_t method, bool *preset)
{
    double lr = 0;
    if (c->objective != RUNCFG_OBJECTIVE_MODEL)
        lr = analytic_preset_lr(c->objective == RUNCFG_OBJECTIVE_QUADRATIC
                                    ? ANALYTIC_KIND_QUADRATIC
                                    : ANALYTIC_KIND_ROSENBROCK,
                                optim_method_name(method));
    peft_spec ps;
    if (c->objective == RUNCFG_OBJECTIVE_MODEL && peft_parse(&ps, c->peft, NULL) == HL_OK)
        lr = peft_lr(method, ps.kind);
    if (preset)
        *preset = lr > 0;
    return lr > 0 ? lr : hparams_default_lr(method);
}

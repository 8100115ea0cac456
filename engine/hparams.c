/* hparams.c - see hparams.h.  One table drives parsing, validation, help
 * and listing; a value is parsed into a scratch copy and written only after
 * every check passed. */
#include "hparams.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

typedef struct hparam_entry {
    hparam_info info;
    size_t offset; /* field in hparams */
} hparam_entry;

#define F(field) offsetof(hparams, field)
#define BIG 1e12

static const hparam_entry table[] = {
    {{"optimizer", HPARAM_TYPE_ENUM, 0, 0, false, false,
      "mezo|zo-sgd-mmt|zo-sign|zo-adam|hizoo|helene|layer-newton|ft-adam", "helene", "all",
      "method; switching keeps the parameters and starts its state fresh"},
     F(method)},
    {{"lr", HPARAM_TYPE_FLOAT, 0, 1e6, true, false, NULL, "per method", "all",
      "learning rate; defaults tuned on the bundled model: helene 3e-3, mezo/hizoo 3e-5, "
      "zo-sgd-mmt 3e-6, zo-sign/zo-adam 3e-4, ft-adam 1e-5 (real models: MeZO's paper used "
      "1e-6..1e-7); layer-newton: eta, the fraction of a Newton step, 0.5 (stable below 2)"},
     F(lr)},
    {{"eps", HPARAM_TYPE_FLOAT, 0, 1, true, false, NULL, "1e-3", "all",
      "SPSA probe scale (1e-3 full fine-tuning, 1e-2 LoRA, 1e-1 prefix)"},
     F(eps)},
    {{"weight_decay", HPARAM_TYPE_FLOAT, 0, 10, false, false, NULL, "0",
      "mezo zo-sgd-mmt zo-sign zo-adam hizoo helene ft-adam",
      "decoupled weight decay, not on bias/norm layers"},
     F(weight_decay)},
    {{"n_probes", HPARAM_TYPE_INT, 1, HPARAMS_MAX_PROBES, false, false, NULL, "1",
      "mezo zo-sgd-mmt zo-sign zo-adam hizoo helene",
      "SPSA probes averaged per step (2 forwards each)"},
     F(n_probes)},
    {{"state_bf16", HPARAM_TYPE_BOOL, 0, 1, false, false, NULL, "off",
      "zo-sgd-mmt zo-adam hizoo helene",
      "keep the optimizer state (m, h, v) in bf16 with stochastic rounding: half its memory; "
      "switching starts the state fresh"},
     F(state_bf16)},
    {{"total_steps", HPARAM_TYPE_INT, 0, BIG, false, false, NULL, "0", "all",
      "run length in steps, 0 = open-ended (sets the default of anneal_horizon)"},
     F(total_steps)},
    {{"momentum", HPARAM_TYPE_FLOAT, 0, 1, false, true, NULL, "0.9", "zo-sgd-mmt",
      "heavy-ball momentum mu: b <- mu b + c z"},
     F(momentum)},
    {{"adam_beta1", HPARAM_TYPE_FLOAT, 0, 1, false, true, NULL, "0.9", "zo-adam ft-adam",
      "Adam first-moment decay"},
     F(adam_beta1)},
    {{"adam_beta2", HPARAM_TYPE_FLOAT, 0, 1, false, true, NULL, "0.999", "zo-adam ft-adam",
      "Adam second-moment decay"},
     F(adam_beta2)},
    {{"adam_eps", HPARAM_TYPE_FLOAT, 0, 1, true, false, NULL, "1e-8", "zo-adam ft-adam",
      "Adam denominator constant"},
     F(adam_eps)},
    {{"hizoo_alpha", HPARAM_TYPE_FLOAT, 0, 1, false, false, NULL, "1e-8", "hizoo",
      "Hessian EMA rate alpha"},
     F(hizoo_alpha)},
    {{"beta1", HPARAM_TYPE_FLOAT, 0, 1, false, true, NULL, "0.9", "helene",
      "momentum decay; alpha_t anneals from 1 to beta1"},
     F(beta1)},
    {{"beta2", HPARAM_TYPE_FLOAT, 0, 1, false, true, NULL, "0.99", "helene",
      "curvature EMA decay"},
     F(beta2)},
    {{"anneal_horizon", HPARAM_TYPE_INT, 0, BIG, false, false, NULL, "0", "helene",
      "T, annealing horizon in steps; 0 = total_steps/10 (1000 if open-ended)"},
     F(anneal_horizon)},
    {{"hess_interval", HPARAM_TYPE_INT, 1, 1000000, false, false, NULL, "10", "helene",
      "k, curvature refresh interval in steps"},
     F(hess_interval)},
    {{"gamma", HPARAM_TYPE_FLOAT, 0, 1e12, true, false, NULL, "1", "helene",
      "curvature scale in the denominator"},
     F(gamma)},
    {{"delta", HPARAM_TYPE_FLOAT, 0, 1, true, false, NULL, "1e-8", "helene",
      "denominator constant"},
     F(delta)},
    {{"kappa", HPARAM_TYPE_FLOAT, 0, 1e12, true, false, NULL, "0.5", "helene",
      "floor scale for lambda_mode calibrated/relative (0.5: half the first mean h-hat)"},
     F(kappa)},
    {{"momentum_form", HPARAM_TYPE_ENUM, 0, 0, false, false, "heavy_ball|ema", "heavy_ball",
      "helene", "m <- b1 m + a c z (heavy_ball) or m <- b1 m + (1-b1) a c z (ema)"},
     F(momentum_form)},
    {{"hess_estimator", HPARAM_TYPE_ENUM, 0, 0, false, false,
      "per_example|batch|layer_second_difference", "per_example", "helene",
      "q = mean_b c_b^2 (per_example, A-GNB), B c^2 (batch, Sophia), or one second "
      "difference per layer group, scaled to q's mean (extra forwards on refresh steps)"},
     F(hess_estimator)},
    {{"hess_probe", HPARAM_TYPE_ENUM, 0, 0, false, false, "shared|blockwise", "shared",
      "helene", "curvature from the step's probe, or one extra probe per block on refresh "
      "(scaled to the shared probe's mean: lr keeps its meaning)"},
     F(hess_probe)},
    {{"lambda_mode", HPARAM_TYPE_ENUM, 0, 0, false, false,
      "calibrated|relative|absolute|measured", "calibrated", "helene",
      "layer floor: kappa x first mean h-hat (fixed), kappa x mean h, lambda_abs, or kappa x "
      "the group's curvature measured by second differences"},
     F(lambda_mode)},
    {{"lambda_abs", HPARAM_TYPE_FLOAT_LIST, 0, 1e12, false, false, NULL, "1e-3", "helene",
      "absolute floors (lambda_mode absolute), in h's units: the layer table's mean h "
      "column (hundreds on the default model; a floor far below it is no floor, and HELENE "
      "without floors diverges); one value, or a comma list with one per layer"},
     F(lambda_abs)},
    {{"layer_granularity", HPARAM_TYPE_ENUM, 0, 0, false, false, "tensor|block|module",
      "tensor", "helene", "what a 'layer' is for floors and blockwise probes"},
     F(layer_granularity)},
    {{"anneal", HPARAM_TYPE_BOOL, 0, 1, false, false, NULL, "on", "helene",
      "annealed momentum (off: alpha_t = 1)"},
     F(anneal)},
    {{"precondition", HPARAM_TYPE_ENUM, 0, 0, false, false, "off|on|perturbation", "on",
      "helene",
      "divide by the clipped curvature (on), not at all (off), or shape the probe instead: "
      "z_l x sqrt(mean h / h_l) with h_l measured per layer group (perturbation)"},
     F(precondition)},
    {{"clip", HPARAM_TYPE_BOOL, 0, 1, false, false, NULL, "on", "helene",
      "layer-wise floor lambda (off: lambda = 0)"},
     F(clip)},
    {{"hess_debias", HPARAM_TYPE_BOOL, 0, 1, false, false, NULL, "on", "helene",
      "divide h by 1 - beta2^r (r refreshes so far), as Adam does; off: the raw EMA from 0"},
     F(hess_debias)},
    {{"groups", HPARAM_TYPE_ENUM, 0, 0, false, false, "tensor|block|module", "module",
      "layer-newton",
      "a group: one tensor, one transformer block, or one module (a Linear's weight + bias, "
      "a LayerNorm)"},
     F(groups)},
    {{"newton_k", HPARAM_TYPE_INT, 1, 1000000, false, false, NULL, "10", "layer-newton",
      "K: a group's curvature is re-measured (one extra forward) every K of its probes"},
     F(newton_k)},
    {{"beta_h", HPARAM_TYPE_FLOAT, 0, 1, false, true, NULL, "0.9", "layer-newton",
      "EMA decay of a group's measured curvature h_l"},
     F(beta_h)},
    {{"beta_s", HPARAM_TYPE_FLOAT, 0, 1, false, true, NULL, "0.7", "layer-newton",
      "EMA decay of a group's score s_l (the loss it can still give)"},
     F(beta_s)},
    {{"h_min", HPARAM_TYPE_FLOAT, 0, 1e12, true, false, NULL, "1e-2", "layer-newton",
      "floor on a group's curvature h_l (HELENE's clip in the units of h)"},
     F(h_min)},
    {{"sampling", HPARAM_TYPE_ENUM, 0, 0, false, false, "proportional|uniform|greedy",
      "proportional", "layer-newton",
      "which group a step probes: P ~ s_l (d_l + 2), uniform, or always the largest"},
     F(sampling)},
    {{"eps_scale", HPARAM_TYPE_BOOL, 0, 1, false, false, NULL, "on", "layer-newton",
      "eps_l = eps max(1, sqrt(65536 / d_l)): second differences of small groups above "
      "rounding"},
     F(eps_scale)},
    {{"share_forward", HPARAM_TYPE_BOOL, 0, 1, false, false, NULL, "on", "layer-newton",
      "a step's forwards reuse the activations below the probed group (off: full forwards, "
      "the same numbers, for measuring the saving)"},
     F(share_forward)},
    {{"update_clip", HPARAM_TYPE_BOOL, 0, 1, false, false, NULL, "off", "helene",
      "Sophia's elementwise clip of m/den to [-1, 1]"},
     F(update_clip)},
};
#define TABLE_N ((int)(sizeof table / sizeof table[0]))

static const char *const method_names[OPTIM_METHOD_ALL] = {
    "mezo", "zo-sgd-mmt", "zo-sign", "zo-adam", "hizoo", "helene", "layer-newton", "ft-adam"};

const char *optim_method_name(int32_t method)
{
    return method >= 0 && method < OPTIM_METHOD_ALL ? method_names[method] : "?";
}

hl_status optim_method_parse(int32_t *method, const char *name, hl_err *err)
{
    for (int i = 0; i < OPTIM_METHOD_ALL; i++)
        if (!strcmp(name, method_names[i])) {
            *method = i;
            return HL_OK;
        }
    return hl_err_set(err, HL_ERR_INVALID,
                      "optimizer: unknown method '%s' (allowed: mezo|zo-sgd-mmt|zo-sign|"
                      "zo-adam|hizoo|helene|layer-newton|ft-adam)",
                      name);
}

/* Each method's default learning rate: its best on the bundled default model
 * and task (tests/bench_defaults.sh grid: the fewest steps to 95% dev
 * accuracy, ties to the smaller rate, final dev within 2 points of the
 * best).  Real models want far smaller rates (MeZO's paper: 1e-6 to 1e-7 for
 * OPT); the man page says so. */
double hparams_default_lr(int32_t method)
{
    switch (method) {
    case OPTIM_METHOD_MEZO: return 3e-5;
    case OPTIM_METHOD_ZO_SGD_MMT: return 3e-6;
    case OPTIM_METHOD_ZO_SIGN: return 3e-4;
    case OPTIM_METHOD_ZO_ADAM: return 3e-4;
    case OPTIM_METHOD_HIZOO: return 3e-5;
    case OPTIM_METHOD_FT_ADAM: return 1e-5;
    case OPTIM_METHOD_HELENE: return 3e-3;
    /* η, a fraction of a Newton step: 1 is the spec's (and the quadratic
     * preset's); on the bundled model 1 climbs fastest but wobbles, 0.5 is
     * steady (BENCHMARKS.md) */
    case OPTIM_METHOD_LAYER_NEWTON: return 0.5;
    default: return 1e-4;
    }
}

double hparams_anneal_T(const hparams *hp)
{
    if (hp->anneal_horizon > 0)
        return (double)hp->anneal_horizon;
    if (hp->total_steps > 0) {
        double T = (double)hp->total_steps / 10.0;
        return T < 1 ? 1 : T;
    }
    return 1000.0;
}

int hparams_count(void)
{
    return TABLE_N;
}

const hparam_info *hparams_info_at(int i)
{
    return i >= 0 && i < TABLE_N ? &table[i].info : NULL;
}

static const hparam_entry *find_entry(const char *key)
{
    for (int i = 0; i < TABLE_N; i++)
        if (!strcmp(table[i].info.key, key))
            return &table[i];
    return NULL;
}

const hparam_info *hparams_find(const char *key)
{
    const hparam_entry *e = find_entry(key);
    return e ? &e->info : NULL;
}

void hparams_range_text(char *buf, size_t cap, const hparam_info *info)
{
    switch (info->type) {
    case HPARAM_TYPE_ENUM: snprintf(buf, cap, "%s", info->choices); break;
    case HPARAM_TYPE_BOOL: snprintf(buf, cap, "on|off"); break;
    case HPARAM_TYPE_INT: snprintf(buf, cap, "%.0f..%.0f", info->min, info->max); break;
    case HPARAM_TYPE_FLOAT:
    case HPARAM_TYPE_FLOAT_LIST:
        snprintf(buf, cap, "%s%g, %g%s", info->min_open ? "(" : "[", info->min, info->max,
                 info->max_open ? ")" : "]");
        break;
    }
}

/* Apply one parsed default through the same path as user values. */
void hparams_init(hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    for (int i = 0; i < TABLE_N; i++) {
        const hparam_info *in = &table[i].info;
        if (!strcmp(in->key, "lr"))
            continue;
        hl_status st = hparams_set(hp, in->key, in->def, 0, NULL);
        (void)st; /* the defaults are valid by construction (tested) */
    }
    hp->lr = hparams_default_lr(hp->method);
    hp->lr_explicit = false;
}

void hparams_free(hparams *hp)
{
    free(hp->lambda_abs);
    hp->lambda_abs = NULL;
    hp->n_lambda_abs = 0;
}

hl_status hparams_copy(hparams *dst, const hparams *src, hl_err *err)
{
    double *list = NULL;
    if (src->n_lambda_abs > 0) {
        list = malloc((size_t)src->n_lambda_abs * sizeof *list);
        if (!list)
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory copying hyperparameters");
        memcpy(list, src->lambda_abs, (size_t)src->n_lambda_abs * sizeof *list);
    }
    *dst = *src;
    dst->lambda_abs = list;
    return HL_OK;
}

static bool in_range(const hparam_info *in, double v)
{
    if (!isfinite(v))
        return false;
    if (in->min_open ? !(v > in->min) : !(v >= in->min))
        return false;
    if (in->max_open ? !(v < in->max) : !(v <= in->max))
        return false;
    return true;
}

static hl_status reject(hl_err *err, const hparam_info *in, const char *value, const char *why)
{
    char range[128];
    hparams_range_text(range, sizeof range, in);
    return hl_err_set(err, HL_ERR_INVALID, "%s: bad value '%.80s' (%s; allowed %s)", in->key,
                      value, why, range);
}

static bool parse_double(double *out, const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    if (!*s)
        return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    while (*end == ' ' || *end == '\t')
        end++;
    if (*end || errno == ERANGE)
        return false;
    *out = v;
    return true;
}

hl_status hparams_set(hparams *hp, const char *key, const char *value, int32_t n_layers,
                      hl_err *err)
{
    if (!key || !value)
        return hl_err_set(err, HL_ERR_INVALID, "hyperparameter key and value are required");
    const hparam_entry *e = find_entry(key);
    if (!e)
        return hl_err_set(err, HL_ERR_INVALID,
                          "unknown hyperparameter '%.80s' (see 'helene help train')", key);
    const hparam_info *in = &e->info;
    char *field = (char *)hp + e->offset;
    switch (in->type) {
    case HPARAM_TYPE_FLOAT: {
        double v;
        if (!parse_double(&v, value))
            return reject(err, in, value, "not a number");
        if (!isfinite(v))
            return reject(err, in, value, "not finite");
        if (!in_range(in, v))
            return reject(err, in, value, "out of range");
        memcpy(field, &v, sizeof v);
        if (!strcmp(key, "lr"))
            hp->lr_explicit = true;
        return HL_OK;
    }
    case HPARAM_TYPE_INT: {
        double v;
        if (!parse_double(&v, value) || v != floor(v))
            return reject(err, in, value, "not an integer");
        if (!in_range(in, v))
            return reject(err, in, value, "out of range");
        if (in->max > 2147483647.0) {
            int64_t iv = (int64_t)v;
            memcpy(field, &iv, sizeof iv);
        } else {
            int32_t iv = (int32_t)v;
            memcpy(field, &iv, sizeof iv);
        }
        return HL_OK;
    }
    case HPARAM_TYPE_BOOL: {
        bool b;
        if (!strcasecmp(value, "on") || !strcasecmp(value, "true") || !strcmp(value, "1") ||
            !strcasecmp(value, "yes"))
            b = true;
        else if (!strcasecmp(value, "off") || !strcasecmp(value, "false") ||
                 !strcmp(value, "0") || !strcasecmp(value, "no"))
            b = false;
        else
            return reject(err, in, value, "not a switch");
        memcpy(field, &b, sizeof b);
        return HL_OK;
    }
    case HPARAM_TYPE_ENUM: {
        /* choices are "a|b|c"; the index is the enum value */
        const char *c = in->choices;
        size_t vl = strlen(value);
        for (int32_t idx = 0; *c; idx++) {
            const char *bar = strchr(c, '|');
            size_t len = bar ? (size_t)(bar - c) : strlen(c);
            /* on/off choices also take the switch words of booleans */
            if (!strncmp(in->choices, "off|on|", 7) && idx < 2) {
                static const char *const syn[2][3] = {{"false", "no", "0"}, {"true", "yes", "1"}};
                for (int k = 0; k < 3; k++)
                    if (!strcasecmp(value, syn[idx][k])) {
                        memcpy(field, &idx, sizeof idx);
                        return HL_OK;
                    }
            }
            if (len == vl && !strncmp(c, value, len)) {
                memcpy(field, &idx, sizeof idx);
                if (!strcmp(key, "optimizer") && !hp->lr_explicit)
                    hp->lr = hparams_default_lr(idx);
                return HL_OK;
            }
            c += len + (bar ? 1 : 0);
        }
        return reject(err, in, value, "not one of the choices");
    }
    case HPARAM_TYPE_FLOAT_LIST: {
        int32_t n = 1;
        for (const char *p = value; *p; p++)
            n += *p == ',';
        if (n > 1000000)
            return reject(err, in, value, "too many values");
        double *list = malloc((size_t)n * sizeof *list);
        if (!list)
            return hl_err_set(err, HL_ERR_NOMEM, "out of memory for %s", key);
        const char *p = value;
        for (int32_t k = 0; k < n; k++) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            char item[64];
            double v;
            if (len >= sizeof item) {
                free(list);
                return reject(err, in, value, "item too long");
            }
            memcpy(item, p, len);
            item[len] = '\0';
            if (!parse_double(&v, item) || !in_range(in, v)) {
                free(list);
                char why[160];
                snprintf(why, sizeof why, "item %d '%s' is not a number in range", (int)k + 1,
                         item);
                return reject(err, in, value, why);
            }
            list[k] = v;
            p = comma ? comma + 1 : p + len;
        }
        if (n_layers > 0 && n != 1 && n != n_layers) {
            free(list);
            char why[96];
            snprintf(why, sizeof why, "%d values, need 1 or %d (one per layer)", (int)n,
                     (int)n_layers);
            return reject(err, in, value, why);
        }
        free(hp->lambda_abs);
        hp->lambda_abs = list;
        hp->n_lambda_abs = n;
        return HL_OK;
    }
    }
    return hl_err_set(err, HL_ERR_INVALID, "%s: unsupported type", key);
}

hl_status hparams_get(const hparams *hp, char *buf, size_t cap, const char *key, hl_err *err)
{
    const hparam_entry *e = find_entry(key);
    if (!e)
        return hl_err_set(err, HL_ERR_INVALID, "unknown hyperparameter '%.80s'", key);
    const char *field = (const char *)hp + e->offset;
    switch (e->info.type) {
    case HPARAM_TYPE_FLOAT: {
        double v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, cap, "%.9g", v);
        break;
    }
    case HPARAM_TYPE_INT:
        if (e->info.max > 2147483647.0) {
            int64_t v;
            memcpy(&v, field, sizeof v);
            snprintf(buf, cap, "%lld", (long long)v);
        } else {
            int32_t v;
            memcpy(&v, field, sizeof v);
            snprintf(buf, cap, "%d", (int)v);
        }
        break;
    case HPARAM_TYPE_BOOL: {
        bool v;
        memcpy(&v, field, sizeof v);
        snprintf(buf, cap, "%s", v ? "on" : "off");
        break;
    }
    case HPARAM_TYPE_ENUM: {
        int32_t v;
        memcpy(&v, field, sizeof v);
        const char *c = e->info.choices;
        for (int32_t i = 0; i < v && c; i++) {
            c = strchr(c, '|');
            if (c)
                c++;
        }
        size_t len = c ? (strchr(c, '|') ? (size_t)(strchr(c, '|') - c) : strlen(c)) : 1;
        snprintf(buf, cap, "%.*s", (int)len, c ? c : "?");
        break;
    }
    case HPARAM_TYPE_FLOAT_LIST: {
        size_t at = 0;
        buf[0] = '\0';
        for (int32_t i = 0; i < hp->n_lambda_abs && at + 1 < cap; i++) {
            int w = snprintf(buf + at, cap - at, "%s%.17g", i ? "," : "", hp->lambda_abs[i]);
            if (w < 0)
                break;
            at += (size_t)w;
        }
        break;
    }
    }
    return HL_OK;
}

/* pretrain_opts.c - pretrain.h's options: one table of keys drives
 * parsing (flags, --config files, a checkpoint's record), the JSON record,
 * what a resume may change and the command's flag names; then the checks
 * run before any work.  The run itself is pretrain.c. */
#include "pretrain.h"

#include <cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "jsonval.h"

/* ------------------------------------------------------------- options --- */

void pretrain_opts_default(pretrain_opts *o)
{
    memset(o, 0, sizeof *o);
    o->family = MODEL_FAMILY_OPT;
    o->n_layers = 4;
    o->d_model = 256;
    o->n_heads = 4;
    o->d_ffn = 0;
    o->context = 128;
    o->heldout_fraction = 0.01;
    o->batch = 16;
    o->micro_batch = 0;
    o->steps = 1000;
    o->adamw = adamw_config_default();
    o->adamw.lr = 1e-3;
    o->adamw.beta2 = 0.95;
    o->adamw.weight_decay = 0.1;
    o->adamw.clip_norm = 1.0;
    o->adamw.warmup_steps = 100;
    o->adamw.min_lr_ratio = 0.1;
    o->seed = 1;
    o->threads = 1;
    o->log_every = 10;
    o->out_dtype = ST_DTYPE_F32;
}

/* One table of the options, in the order of the JSON record: parsing
 * (pretrain_opts_set), the record (pretrain_opts_to_json), what a resume may
 * change and the command's flags (pretrain_opt_name) all read it, so a new
 * option is one line here. */
typedef enum opt_kind {
    OPT_I32,    /* int32_t in [lo, hi] */
    OPT_I64,    /* int64_t in [lo, hi] */
    OPT_F64,    /* finite double in [lo, hi] ((lo, hi] with open_lo) */
    OPT_U64,    /* uint64_t, written as a string (JSON numbers are exact only to 2^53) */
    OPT_PATH,   /* char[PRETRAIN_PATH_MAX] */
    OPT_CORPUS, /* appends a file to corpus[] */
    OPT_FAMILY, /* opt | gpt2 */
    OPT_DTYPE,  /* F32 | F16 | BF16 */
} opt_kind;

typedef struct opt_def {
    const char *name;
    opt_kind kind;
    size_t offset;
    double lo, hi; /* OPT_I32, OPT_I64 (exact: every bound is below 2^53), OPT_F64 */
    bool open_lo;  /* OPT_F64: lo itself is refused */
    bool resume;   /* may differ from the checkpoint's value on resume */
} opt_def;

#define OFF(f) offsetof(pretrain_opts, f)
#define BIG ((double)(INT64_C(1) << 40))
static const opt_def opt_defs[] = {
    {"family", OPT_FAMILY, OFF(family), 0, 0, false, false},
    {"layers", OPT_I32, OFF(n_layers), 1, 1024, false, false},
    {"hidden", OPT_I32, OFF(d_model), 8, 65536, false, false},
    {"heads", OPT_I32, OFF(n_heads), 1, 1024, false, false},
    {"ffn", OPT_I32, OFF(d_ffn), 0, 1 << 20, false, false},
    {"context", OPT_I32, OFF(context), 2, 1 << 16, false, false},
    {"vocab", OPT_PATH, OFF(vocab), 0, 0, false, false},
    {"merges", OPT_PATH, OFF(merges), 0, 0, false, false},
    {"max_merges", OPT_I32, OFF(max_merges), 0, 10000000, false, false},
    {"corpus", OPT_CORPUS, OFF(corpus), 0, 0, false, false},
    {"heldout", OPT_PATH, OFF(heldout), 0, 0, false, false},
    {"heldout_fraction", OPT_F64, OFF(heldout_fraction), 0.0, 0.5, true, false},
    {"batch", OPT_I32, OFF(batch), 1, 1 << 20, false, false},
    {"micro_batch", OPT_I32, OFF(micro_batch), 0, 1 << 20, false, false},
    {"steps", OPT_I64, OFF(steps), 1, BIG, false, true},
    {"lr", OPT_F64, OFF(adamw.lr), 0.0, 10.0, true, false},
    {"min_lr_ratio", OPT_F64, OFF(adamw.min_lr_ratio), 0.0, 1.0, false, false},
    {"warmup", OPT_I64, OFF(adamw.warmup_steps), 0, BIG, false, false},
    {"weight_decay", OPT_F64, OFF(adamw.weight_decay), 0.0, 10.0, false, false},
    {"clip", OPT_F64, OFF(adamw.clip_norm), 0.0, 1e9, false, false},
    {"beta1", OPT_F64, OFF(adamw.beta1), 0.0, 0.999999, false, false},
    {"beta2", OPT_F64, OFF(adamw.beta2), 0.0, 0.999999, false, false},
    {"eps", OPT_F64, OFF(adamw.eps), 0.0, 1.0, true, false},
    {"seed", OPT_U64, OFF(seed), 0, 0, false, false},
    {"threads", OPT_I32, OFF(threads), 1, POOL_MAX_THREADS, false, true},
    {"eval_every", OPT_I64, OFF(eval_every), 0, BIG, false, true},
    {"eval_seqs", OPT_I64, OFF(eval_seqs), 0, BIG, false, true},
    {"checkpoint_every", OPT_I64, OFF(checkpoint_every), 0, BIG, false, true},
    {"log_every", OPT_I64, OFF(log_every), 0, BIG, false, true},
    {"stop_at", OPT_I64, OFF(stop_at), 0, BIG, false, true},
    {"save", OPT_PATH, OFF(save), 0, 0, false, true},
    {"out", OPT_PATH, OFF(out), 0, 0, false, true},
    {"dtype", OPT_DTYPE, OFF(out_dtype), 0, 0, false, true},
};
#undef BIG
#undef OFF
#define N_OPT_DEFS ((int)(sizeof opt_defs / sizeof opt_defs[0]))
_Static_assert(sizeof opt_defs / sizeof opt_defs[0] == PRETRAIN_N_OPTS,
               "PRETRAIN_N_OPTS must count opt_defs");

static const opt_def *opt_find(const char *key)
{
    for (int i = 0; i < N_OPT_DEFS; i++)
        if (!strcmp(opt_defs[i].name, key))
            return &opt_defs[i];
    return NULL;
}

const char *pretrain_opt_name(int i)
{
    return i >= 0 && i < N_OPT_DEFS ? opt_defs[i].name : NULL;
}

static hl_status parse_i64(const char *key, const char *v, int64_t lo, int64_t hi, int64_t *out,
                           hl_err *err)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end)
        return hl_err_set(err, HL_ERR_INVALID, "%s: expected an integer, got '%s'", key, v);
    if (x < lo || x > hi)
        return hl_err_set(err, HL_ERR_INVALID, "%s: %lld is out of range (%" PRId64 "..%" PRId64
                          ")", key, x, lo, hi);
    *out = x;
    return HL_OK;
}

static hl_status parse_f64(const char *key, const char *v, double lo, double hi, bool open_lo,
                           double *out, hl_err *err)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x))
        return hl_err_set(err, HL_ERR_INVALID, "%s: expected a number, got '%s'", key, v);
    if (x < lo || x > hi || (open_lo && x == lo))
        return hl_err_set(err, HL_ERR_INVALID, "%s: %g is out of range %s%g..%g]", key, x,
                          open_lo ? "(" : "[", lo, hi);
    *out = x;
    return HL_OK;
}

static hl_status set_path(char *dst, const char *key, const char *v, hl_err *err)
{
    if (strlen(v) >= PRETRAIN_PATH_MAX)
        return hl_err_set(err, HL_ERR_INVALID, "%s: path too long", key);
    snprintf(dst, PRETRAIN_PATH_MAX, "%s", v);
    return HL_OK;
}

hl_status pretrain_opts_set(pretrain_opts *o, const char *key, const char *v, hl_err *err)
{
    const opt_def *d = opt_find(key);
    if (!d)
        return hl_err_set(err, HL_ERR_INVALID, "unknown pretrain option '%s'", key);
    void *field = (char *)o + d->offset;
    hl_status st;
    switch (d->kind) {
    case OPT_I32:
    case OPT_I64: {
        int64_t i = 0;
        if ((st = parse_i64(key, v, (int64_t)d->lo, (int64_t)d->hi, &i, err)))
            return st;
        if (d->kind == OPT_I32)
            *(int32_t *)field = (int32_t)i;
        else
            *(int64_t *)field = i;
        return HL_OK;
    }
    case OPT_F64:
        return parse_f64(key, v, d->lo, d->hi, d->open_lo, (double *)field, err);
    case OPT_U64: {
        char *end;
        errno = 0;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end || v[0] == '-')
            return hl_err_set(err, HL_ERR_INVALID, "%s: expected a non-negative integer, got "
                              "'%s'", key, v);
        *(uint64_t *)field = x;
        return HL_OK;
    }
    case OPT_PATH:
        return set_path(field, key, v, err);
    case OPT_CORPUS:
        if (o->n_corpus >= PRETRAIN_MAX_FILES)
            return hl_err_set(err, HL_ERR_INVALID, "corpus: at most %d files",
                              PRETRAIN_MAX_FILES);
        if ((st = set_path(o->corpus[o->n_corpus], key, v, err)))
            return st;
        o->n_corpus++;
        return HL_OK;
    case OPT_FAMILY:
        if (!strcmp(v, "opt"))
            o->family = MODEL_FAMILY_OPT;
        else if (!strcmp(v, "gpt2"))
            o->family = MODEL_FAMILY_GPT2;
        else
            return hl_err_set(err, HL_ERR_INVALID, "family: '%s' (opt or gpt2)", v);
        return HL_OK;
    case OPT_DTYPE:
        if (!strcmp(v, "F32"))
            o->out_dtype = ST_DTYPE_F32;
        else if (!strcmp(v, "F16"))
            o->out_dtype = ST_DTYPE_F16;
        else if (!strcmp(v, "BF16"))
            o->out_dtype = ST_DTYPE_BF16;
        else
            return hl_err_set(err, HL_ERR_INVALID, "dtype: '%s' (F32, F16 or BF16)", v);
        return HL_OK;
    }
    return hl_err_set(err, HL_ERR_INVALID, "%s: internal error: option kind", key);
}

bool pretrain_key_may_change_on_resume(const char *key)
{
    const opt_def *d = opt_find(key);
    return d && d->resume;
}

char *pretrain_opts_to_json(const pretrain_opts *o)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    bool ok = true;
    for (int i = 0; i < N_OPT_DEFS && ok; i++) {
        const opt_def *d = &opt_defs[i];
        const void *field = (const char *)o + d->offset;
        char num[64];
        cJSON *v = NULL;
        switch (d->kind) {
        case OPT_I32:
            snprintf(num, sizeof num, "%" PRId32, *(const int32_t *)field);
            v = cJSON_CreateRaw(num);
            break;
        case OPT_I64:
            snprintf(num, sizeof num, "%" PRId64, *(const int64_t *)field);
            v = cJSON_CreateRaw(num);
            break;
        case OPT_F64:
            snprintf(num, sizeof num, "%.17g", *(const double *)field);
            v = cJSON_CreateRaw(num);
            break;
        case OPT_U64:
            snprintf(num, sizeof num, "%" PRIu64, *(const uint64_t *)field);
            v = cJSON_CreateString(num);
            break;
        case OPT_PATH:
            v = cJSON_CreateString(field);
            break;
        case OPT_CORPUS:
            v = cJSON_CreateArray();
            for (int c = 0; v && c < o->n_corpus; c++)
                ok = cJSON_AddItemToArray(v, cJSON_CreateString(o->corpus[c])) && ok;
            break;
        case OPT_FAMILY:
            v = cJSON_CreateString(model_family_name(o->family));
            break;
        case OPT_DTYPE:
            v = cJSON_CreateString(st_dtype_name(o->out_dtype));
            break;
        }
        if (!v || !cJSON_AddItemToObject(j, d->name, v)) {
            cJSON_Delete(v);
            ok = false;
        }
    }
    char *text = ok ? cJSON_Print(j) : NULL;
    cJSON_Delete(j);
    return text;
}

hl_status pretrain_opts_apply_json(pretrain_opts *o, const cJSON *j, const char *where,
                                   hl_err *err)
{
    if (!cJSON_IsObject(j))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: expected a JSON object", where);
    hl_status st = HL_OK;
    for (const cJSON *it = j->child; it && !st; it = it->next) {
        char val[PRETRAIN_PATH_MAX];
        if (!strcmp(it->string, "corpus")) {
            o->n_corpus = 0;
            if (cJSON_IsString(it)) {
                st = pretrain_opts_set(o, "corpus", it->valuestring, err);
            } else if (cJSON_IsArray(it)) {
                for (const cJSON *e = it->child; e && !st; e = e->next)
                    st = cJSON_IsString(e)
                             ? pretrain_opts_set(o, "corpus", e->valuestring, err)
                             : hl_err_set(err, HL_ERR_FORMAT, "corpus: expected file names");
            } else {
                st = hl_err_set(err, HL_ERR_FORMAT, "corpus: expected a file name or a list");
            }
            continue;
        }
        if (cJSON_IsString(it)) {
            snprintf(val, sizeof val, "%s", it->valuestring);
        } else if (cJSON_IsNumber(it)) {
            char *t = cJSON_PrintUnformatted(it);
            snprintf(val, sizeof val, "%s", t ? t : "");
            free(t);
        } else {
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: expected a string or a number", it->string);
            continue;
        }
        st = pretrain_opts_set(o, it->string, val, err);
    }
    if (st)
        hl_err_prefix(err, "%s", where);
    return st;
}

hl_status pretrain_opts_load_json(pretrain_opts *o, const char *path, hl_err *err)
{
    cJSON *j;
    hl_status st = json_read_file(path, 1 << 24, &j, err);
    if (st)
        return st;
    st = pretrain_opts_apply_json(o, j, path, err);
    cJSON_Delete(j);
    return st;
}

hl_status pretrain_opts_check(const pretrain_opts *o, hl_err *err)
{
    if (o->n_corpus < 1)
        return hl_err_set(err, HL_ERR_INVALID, "no corpus: give --corpus TEXT_FILE...");
    if (o->d_model % o->n_heads)
        return hl_err_set(err, HL_ERR_INVALID, "hidden %d is not a multiple of heads %d",
                          o->d_model, o->n_heads);
    if (o->vocab[0] && !o->merges[0])
        return hl_err_set(err, HL_ERR_INVALID, "--vocab needs --merges (the pair is used as is)");
    if (o->vocab[0] && o->max_merges > 0)
        return hl_err_set(err, HL_ERR_INVALID,
                          "--max-merges derives a vocabulary: give --merges without --vocab");
    if (o->family == MODEL_FAMILY_OPT && o->context < 3)
        return hl_err_set(err, HL_ERR_INVALID, "context must be >= 3 (OPT sequences start with "
                          "BOS)");
    if (!o->out[0])
        return hl_err_set(err, HL_ERR_INVALID, "no output folder: give --out MODEL_DIR");
    if (!strcmp(o->out, o->save))
        return hl_err_set(err, HL_ERR_INVALID, "--save and --out must be different folders");
    adamw_config a = o->adamw;
    a.total_steps = o->steps;
    adamw tmp;
    param_set ps;
    param_set_init(&ps);
    hl_status st = adamw_init(&tmp, &ps, &a, NULL, err); /* validates the hyperparameters */
    adamw_free(&tmp);
    return st;
}

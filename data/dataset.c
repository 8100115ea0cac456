/* dataset.c - TSV/CSV/JSONL readers and folder split lookup.  See dataset.h.
 *
 * A file is read whole into memory and parsed in place (CSV unquoting only
 * ever shrinks a field); the kept field bytes are copied into one arena and
 * the file buffer is freed.  Nothing here has a fixed line length.
 *
 * Leaves out: streaming huge files, unlabeled examples, sampling.
 */
#include "dataset.h"

#include <cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "jsonval.h"

/* ---------------------------------------------------------------------------
 * basics
 * ------------------------------------------------------------------------- */

void dataset_init(dataset *ds)
{
    memset(ds, 0, sizeof *ds);
}

void dataset_free(dataset *ds)
{
    free(ds->path);
    free(ds->ex);
    free(ds->field_off);
    free(ds->field_len);
    free(ds->text);
    dataset_init(ds);
}

const char *dataset_split_name(dataset_split split)
{
    switch (split) {
    case DATASET_SPLIT_TRAIN:
        return "train";
    case DATASET_SPLIT_DEV:
        return "dev";
    case DATASET_SPLIT_TEST:
        return "test";
    }
    return "?";
}

bool dataset_split_parse(dataset_split *out, const char *name)
{
    if (!strcmp(name, "train"))
        *out = DATASET_SPLIT_TRAIN;
    else if (!strcmp(name, "dev") || !strcmp(name, "val") || !strcmp(name, "validation"))
        *out = DATASET_SPLIT_DEV;
    else if (!strcmp(name, "test"))
        *out = DATASET_SPLIT_TEST;
    else
        return false;
    return true;
}

void dataset_example_view(task_example *out, const dataset *ds, uint32_t i)
{
    memset(out, 0, sizeof *out);
    for (int32_t f = 0; f < ds->n_fields; f++) {
        size_t k = (size_t)i * (size_t)ds->n_fields + (size_t)f;
        out->text[f] = ds->text + ds->field_off[k];
        out->len[f] = ds->field_len[k];
    }
    out->label = ds->ex[i].label;
}

const char *dataset_field(uint32_t *len, const dataset *ds, uint32_t i, int32_t f)
{
    size_t k = (size_t)i * (size_t)ds->n_fields + (size_t)f;
    if (len)
        *len = ds->field_len[k];
    return ds->text + ds->field_off[k];
}

bool dataset_is_folder(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

bool dataset_utf8_valid(size_t *bad_at, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = p[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
        if (c >= 0xC2 && c <= 0xDF)
            need = 1;
        else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            if (c == 0xF4)
                hi = 0x8F; /* > U+10FFFF */
        } else {
            if (bad_at)
                *bad_at = i;
            return false;
        }
        if (n - i <= need || p[i + 1] < lo || p[i + 1] > hi) {
            if (bad_at)
                *bad_at = i;
            return false;
        }
        for (size_t k = 2; k <= need; k++)
            if ((p[i + k] & 0xC0) != 0x80) {
                if (bad_at)
                    *bad_at = i;
                return false;
            }
        i += need + 1;
    }
    return true;
}

static bool is_blank_byte(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

static bool is_trim_byte(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}


/* ---------------------------------------------------------------------------
 * the loader: example storage, bad-record policy
 * ------------------------------------------------------------------------- */

typedef struct span {
    char *p;
    size_t n;
} span;

typedef struct loader {
    dataset *ds;
    const task *t;
    const task_input *in;
    const char *path;
    bool skip_bad;
    hl_err *err;
    uint32_t cap_ex;
    /* TSV/CSV record state */
    span *cols;
    size_t n_cols, cap_cols;
    int32_t col_of[TASK_MAX_FIELDS + 1]; /* resolved column per field, label last */
    size_t expect_cols;                  /* from the header or the first record */
    char *cur, *end;                     /* parse position */
    int64_t line;                        /* line of cur */
} loader;

/* A record is bad: fail, or (skip_bad) count it and keep the first message. */
static hl_status rec_bad(loader *L, int64_t line, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static hl_status rec_bad(loader *L, int64_t line, const char *fmt, ...)
{
    char what[700]; /* leaves room for "path:line: " in first_bad */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (L->skip_bad) {
        if (L->ds->n_bad++ == 0)
            snprintf(L->ds->first_bad, sizeof L->ds->first_bad, "%s:%lld: %s", L->path,
                     (long long)line, what);
        return HL_OK;
    }
    return hl_err_set(L->err, HL_ERR_FORMAT, "%s:%lld: %s", L->path, (long long)line, what);
}

static hl_status store_text(loader *L, const char *s, size_t n, uint64_t *off)
{
    dataset *ds = L->ds;
    if (ds->text_len + n + 1 > ds->text_cap) {
        size_t cap = ds->text_cap ? ds->text_cap : 1 << 16;
        while (cap < ds->text_len + n + 1) {
            if (cap > SIZE_MAX / 2)
                return hl_err_set(L->err, HL_ERR_NOMEM, "%s: text too large", L->path);
            cap *= 2;
        }
        char *nt = realloc(ds->text, cap);
        if (!nt)
            return hl_err_set(L->err, HL_ERR_NOMEM, "%s: out of memory for text", L->path);
        ds->text = nt;
        ds->text_cap = cap;
    }
    memcpy(ds->text + ds->text_len, s, n);
    ds->text[ds->text_len + n] = '\0';
    *off = ds->text_len;
    ds->text_len += n + 1;
    return HL_OK;
}

static hl_status grow_examples(loader *L)
{
    dataset *ds = L->ds;
    if (ds->n < L->cap_ex)
        return HL_OK;
    if (ds->n >= UINT32_MAX / 2)
        return hl_err_set(L->err, HL_ERR_FORMAT, "%s: more than %u examples", L->path,
                          UINT32_MAX / 2);
    uint32_t cap = L->cap_ex ? L->cap_ex * 2 : 1024;
    size_t nf = (size_t)ds->n_fields;
    dataset_example *ex = realloc(ds->ex, (size_t)cap * sizeof *ex);
    if (ex)
        ds->ex = ex;
    uint64_t *off = realloc(ds->field_off, (size_t)cap * nf * sizeof *off);
    if (off)
        ds->field_off = off;
    uint32_t *len = realloc(ds->field_len, (size_t)cap * nf * sizeof *len);
    if (len)
        ds->field_len = len;
    if (!ex || !off || !len)
        return hl_err_set(L->err, HL_ERR_NOMEM, "%s: out of memory for examples", L->path);
    L->cap_ex = cap;
    return HL_OK;
}

/* Label text -> class.  Returns the class, -2 when the task filters it out,
 * -1 when bad (message in why). */
static int32_t label_class(loader *L, const char *s, size_t n, char *why, size_t why_cap)
{
    while (n > 0 && is_trim_byte(*s))
        s++, n--;
    while (n > 0 && is_trim_byte(s[n - 1]))
        n--;
    int32_t c = task_class_index(L->t, s, n);
    if (c >= 0)
        return c;
    for (int32_t k = 0; k < L->t->n_skip_labels; k++)
        if (strlen(L->t->skip_labels[k]) == n && memcmp(L->t->skip_labels[k], s, n) == 0)
            return -2;
    size_t at = 0;
    int w = snprintf(why, why_cap, "label \"%.*s\" is not one of ", (int)(n > 60 ? 60 : n), s);
    at = w > 0 ? (size_t)w : 0;
    for (int32_t k = 0; k < L->t->n_classes && at < why_cap; k++) {
        w = snprintf(why + at, why_cap - at, "%s\"%s\"", k ? ", " : "", L->t->classes[k].value);
        at += w > 0 ? (size_t)w : 0;
    }
    return -1;
}

/* Trim, check and store field f of the example being built.  A bad value
 * returns HL_OK with the reason in why (otherwise why is ""). */
static hl_status put_field(loader *L, int32_t f, const char *s, size_t n, char *why,
                           size_t why_cap)
{
    why[0] = '\0';
    if (L->t->trim) {
        while (n > 0 && is_trim_byte(*s))
            s++, n--;
        while (n > 0 && is_trim_byte(s[n - 1]))
            n--;
    }
    size_t at;
    const char *fname = L->t->fields[f];
    if (memchr(s, '\0', n)) {
        snprintf(why, why_cap, "field \"%s\" contains a NUL byte", fname);
        return HL_OK;
    }
    if (!dataset_utf8_valid(&at, s, n)) {
        snprintf(why, why_cap, "field \"%s\" is not valid UTF-8 (byte %zu of the value is 0x%02x)",
                 fname, at, (unsigned)(unsigned char)s[at]);
        return HL_OK;
    }
    if (n >= UINT32_MAX) {
        snprintf(why, why_cap, "field \"%s\" is longer than 4 GiB", fname);
        return HL_OK;
    }
    dataset *ds = L->ds;
    size_t k = (size_t)ds->n * (size_t)ds->n_fields + (size_t)f;
    uint64_t off = 0;
    hl_status st = store_text(L, s, n, &off);
    if (st != HL_OK)
        return st;
    ds->field_off[k] = off;
    ds->field_len[k] = (uint32_t)n;
    return HL_OK;
}

/* ---------------------------------------------------------------------------
 * TSV / CSV records
 * ------------------------------------------------------------------------- */

static hl_status push_col(loader *L, char *p, size_t n)
{
    if (L->n_cols == L->cap_cols) {
        size_t cap = L->cap_cols ? L->cap_cols * 2 : 32;
        span *nc = realloc(L->cols, cap * sizeof *nc);
        if (!nc)
            return hl_err_set(L->err, HL_ERR_NOMEM, "%s: out of memory", L->path);
        L->cols = nc;
        L->cap_cols = cap;
    }
    L->cols[L->n_cols].p = p;
    L->cols[L->n_cols].n = n;
    L->n_cols++;
    return HL_OK;
}

/* Next TSV line into L->cols.  *got = false at end of input; *blank when the
 * line has nothing but spaces, tabs and CR. */
static hl_status tsv_next(loader *L, bool *got, bool *blank, int64_t *line)
{
    L->n_cols = 0;
    *got = *blank = false;
    if (L->cur >= L->end)
        return HL_OK;
    *got = true;
    *line = L->line;
    char *p = L->cur;
    char *nl = memchr(p, '\n', (size_t)(L->end - p));
    char *e = nl ? nl : L->end;
    L->cur = nl ? nl + 1 : L->end;
    L->line++;
    if (e > p && e[-1] == '\r')
        e--;
    *blank = true;
    for (char *q = p; q < e && *blank; q++)
        *blank = is_blank_byte(*q);
    if (*blank)
        return HL_OK;
    char *s = p;
    for (char *q = p;; q++) {
        if (q == e || *q == '\t') {
            hl_status st = push_col(L, s, (size_t)(q - s));
            if (st != HL_OK)
                return st;
            if (q == e)
                break;
            s = q + 1;
        }
    }
    return HL_OK;
}

/* Next CSV record (RFC 4180) into L->cols, unquoting in place.  A record
 * may span lines inside quotes; *line is where it starts.  Junk after a
 * closing quote is reported as *why (the record is bad); an unterminated
 * quote is fatal. */
static hl_status csv_next(loader *L, bool *got, bool *blank, int64_t *line, const char **why)
{
    L->n_cols = 0;
    *got = *blank = false;
    *why = NULL;
    if (L->cur >= L->end)
        return HL_OK;
    *got = true;
    *line = L->line;
    char *p = L->cur, *end = L->end;
    /* blank line? */
    char *q = p;
    while (q < end && is_blank_byte(*q))
        q++;
    if (q == end || *q == '\n') {
        *blank = true;
        L->cur = q < end ? q + 1 : end;
        L->line++;
        return HL_OK;
    }
    for (;;) {
        char *start = p, *w = p;
        if (p < end && *p == '"') {
            int64_t open_line = L->line;
            p++;
            for (;;) {
                if (p >= end)
                    return hl_err_set(L->err, HL_ERR_FORMAT,
                                      "%s:%lld: quoted field is never closed (expected a "
                                      "closing '\"')",
                                      L->path, (long long)open_line);
                if (*p == '"') {
                    if (p + 1 < end && p[1] == '"') {
                        *w++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                if (*p == '\n')
                    L->line++;
                *w++ = *p++;
            }
            /* after the closing quote: a separator, the record end, or junk */
            char *after = p;
            if (after < end && *after == '\r' && (after + 1 == end || after[1] == '\n'))
                after++;
            if (after < end && *after != ',' && *after != '\n') {
                *why = "unexpected character after a closing quote (expected ',' or the end "
                       "of the line; write \"\" for a quote inside a quoted field)";
                char *nl = memchr(p, '\n', (size_t)(end - p));
                L->cur = nl ? nl + 1 : end;
                L->line++;
                return HL_OK;
            }
            p = after;
        } else {
            while (p < end && *p != ',' && *p != '\n')
                p++;
            w = p;
            if (w > start && w[-1] == '\r' && (p == end || *p == '\n'))
                w--;
        }
        hl_status st = push_col(L, start, (size_t)(w - start));
        if (st != HL_OK)
            return st;
        if (p < end && *p == ',') {
            p++;
            continue;
        }
        /* end of record */
        if (p < end && *p == '\n')
            p++;
        L->cur = p;
        L->line++;
        return HL_OK;
    }
}

static hl_status rec_next(loader *L, bool *got, bool *blank, int64_t *line, const char **why)
{
    *why = NULL;
    if (L->in->format == TASK_FORMAT_CSV)
        return csv_next(L, got, blank, line, why);
    return tsv_next(L, got, blank, line);
}

/* Pick the layout and resolve columns from the first record (the header, or
 * the first data row for column numbers).  Returns true if that record was a
 * header (consumed). */
static hl_status resolve_columns(loader *L, const task_input *cands[], int n_cands, int64_t line,
                                 bool *was_header)
{
    const task *t = L->t;
    *was_header = false;
    for (int c = 0; c < n_cands; c++) {
        const task_input *in = cands[c];
        if (!in->header) {
            L->in = in;
            L->expect_cols = L->n_cols;
            int32_t need = in->label_col;
            for (int f = 0; f < t->n_fields; f++)
                if (in->field_col[f] > need)
                    need = in->field_col[f];
            if ((size_t)need >= L->n_cols)
                return hl_err_set(L->err, HL_ERR_FORMAT,
                                  "%s:%lld: %zu columns, but task %s reads column %d (0-based)",
                                  L->path, (long long)line, L->n_cols, t->name, (int)need);
            for (int f = 0; f < t->n_fields; f++)
                L->col_of[f] = in->field_col[f];
            L->col_of[t->n_fields] = in->label_col;
            return HL_OK;
        }
        bool all = true;
        for (int f = 0; f <= t->n_fields && all; f++) {
            const char *want = f < t->n_fields ? in->field_name[f] : in->label_name;
            L->col_of[f] = -1;
            for (size_t k = 0; k < L->n_cols; k++) {
                span sp = L->cols[k];
                while (sp.n > 0 && is_trim_byte(sp.p[sp.n - 1]))
                    sp.n--;
                if (strlen(want) == sp.n && memcmp(want, sp.p, sp.n) == 0) {
                    if (L->col_of[f] >= 0) /* which of the two is meant? */
                        return hl_err_set(L->err, HL_ERR_FORMAT,
                                          "%s:%lld: the header names column \"%s\" twice "
                                          "(columns %d and %zu)",
                                          L->path, (long long)line, want, (int)L->col_of[f] + 1,
                                          k + 1);
                    L->col_of[f] = (int32_t)k;
                }
            }
            all = L->col_of[f] >= 0;
        }
        if (all) {
            L->in = in;
            L->expect_cols = L->n_cols;
            *was_header = true;
            return HL_OK;
        }
    }
    /* explain with the first layout */
    const task_input *in = cands[0];
    char cols[400];
    size_t at = 0;
    cols[0] = '\0';
    for (size_t k = 0; k < L->n_cols && k < 20 && at < sizeof cols; k++) {
        int w = snprintf(cols + at, sizeof cols - at, "%s\"%.*s\"", k ? ", " : "",
                         (int)(L->cols[k].n > 40 ? 40 : L->cols[k].n), L->cols[k].p);
        at += w > 0 ? (size_t)w : 0;
    }
    const char *missing = in->label_name;
    for (int f = 0; f < t->n_fields; f++) {
        bool found = false;
        for (size_t k = 0; k < L->n_cols && !found; k++)
            found = strlen(in->field_name[f]) == L->cols[k].n &&
                    memcmp(in->field_name[f], L->cols[k].p, L->cols[k].n) == 0;
        if (!found) {
            missing = in->field_name[f];
            break;
        }
    }
    return hl_err_set(L->err, HL_ERR_FORMAT,
                      "%s:%lld: header has no column \"%s\" needed by task %s (header: %s)",
                      L->path, (long long)line, missing, t->name, cols);
}

static hl_status load_delimited(loader *L, const task_input *cands[], int n_cands)
{
    dataset *ds = L->ds;
    const task *t = L->t;
    const char *sep_name = cands[0]->format == TASK_FORMAT_CSV ? "comma" : "tab";
    bool resolved = false;
    L->in = cands[0];
    for (;;) {
        bool got, blank;
        int64_t line = 0;
        const char *why;
        hl_status st = rec_next(L, &got, &blank, &line, &why);
        if (st != HL_OK)
            return st;
        if (!got)
            break;
        if (blank) {
            ds->n_blank++;
            continue;
        }
        if (why) {
            if (resolved)
                ds->n_records++;
            if ((st = rec_bad(L, line, "%s", why)) != HL_OK)
                return st;
            continue;
        }
        if (!resolved) {
            bool was_header;
            if ((st = resolve_columns(L, cands, n_cands, line, &was_header)) != HL_OK)
                return st;
            resolved = true;
            ds->input = (int32_t)(L->in - t->inputs);
            if (was_header)
                continue;
        }
        ds->n_records++;
        if (L->n_cols != L->expect_cols) {
            if ((st = rec_bad(L, line, "%zu %s-separated columns, expected %zu as in %s",
                              L->n_cols, sep_name, L->expect_cols,
                              L->in->header ? "the header" : "the first line")) != HL_OK)
                return st;
            continue;
        }
        span lab = L->cols[L->col_of[t->n_fields]];
        char why_buf[600];
        int32_t cls = label_class(L, lab.p, lab.n, why_buf, sizeof why_buf);
        if (cls == -2) {
            ds->n_filtered++;
            continue;
        }
        if (cls < 0) {
            if ((st = rec_bad(L, line, "%s", why_buf)) != HL_OK)
                return st;
            continue;
        }
        if ((st = grow_examples(L)) != HL_OK)
            return st;
        size_t saved_text = ds->text_len;
        why_buf[0] = '\0';
        for (int32_t f = 0; f < t->n_fields && !why_buf[0]; f++) {
            span v = L->cols[L->col_of[f]];
            if ((st = put_field(L, f, v.p, v.n, why_buf, sizeof why_buf)) != HL_OK)
                return st;
        }
        if (why_buf[0]) {
            ds->text_len = saved_text;
            if ((st = rec_bad(L, line, "%s", why_buf)) != HL_OK)
                return st;
            continue;
        }
        ds->ex[ds->n].label = cls;
        ds->ex[ds->n].sub = 0;
        ds->ex[ds->n].line = line;
        ds->n++;
    }
    if (!resolved)
        return hl_err_set(L->err, HL_ERR_FORMAT, "%s: empty file (expected %s)", L->path,
                          cands[0]->header ? "a header line, then one example per line"
                                           : "one example per line");
    return HL_OK;
}

/* ---------------------------------------------------------------------------
 * JSONL
 * ------------------------------------------------------------------------- */

/* Follow a dotted path ("" = the node itself). */
static const cJSON *json_walk(const cJSON *node, const char *path)
{
    const char *p = path;
    while (*p && node) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        const cJSON *next = NULL;
        if (cJSON_IsObject(node))
            for (const cJSON *c = node->child; c; c = c->next)
                if (c->string && strlen(c->string) == n && memcmp(c->string, p, n) == 0) {
                    next = c;
                    break;
                }
        node = next;
        p += n + (dot ? 1 : 0);
    }
    return node;
}

/* Scalar JSON -> text in buf (or a pointer to the string).  False if not scalar. */
static bool json_scalar(const cJSON *v, const char **s, size_t *n, char *buf, size_t cap)
{
    if (cJSON_IsString(v) && v->valuestring) {
        *s = v->valuestring;
        *n = strlen(v->valuestring);
        return true;
    }
    int w;
    if (cJSON_IsBool(v))
        w = snprintf(buf, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (isfinite(d) && d == floor(d) && fabs(d) <= 9007199254740992.0)
            w = snprintf(buf, cap, "%lld", (long long)d);
        else
            w = snprintf(buf, cap, "%.17g", d);
    } else
        return false;
    *s = buf;
    *n = w > 0 ? (size_t)w : 0;
    return true;
}

static const char *json_kind(const cJSON *v)
{
    if (!v || cJSON_IsNull(v))
        return "null";
    if (cJSON_IsObject(v))
        return "an object";
    if (cJSON_IsArray(v))
        return "an array";
    return "a value";
}

typedef struct jsonl_rec {
    const cJSON *ctx[TASK_MAX_DEPTH + 1];
    int64_t line;
    int32_t sub;
    char why[700];
    bool bad;
    bool filtered_all;
    int32_t n_filtered;
} jsonl_rec;

static const char *source_name(const task_input *in, const task *t, int32_t f)
{
    return f < t->n_fields ? in->field_name[f] : in->label_name;
}

/* Emit one example from the current contexts. */
static hl_status jsonl_emit(loader *L, jsonl_rec *R)
{
    dataset *ds = L->ds;
    const task *t = L->t;
    const task_input *in = L->in;
    char numbuf[64];
    const char *s;
    size_t n;
    const cJSON *lv = json_walk(R->ctx[in->label_level], in->label_rel);
    if (!lv || cJSON_IsNull(lv)) {
        snprintf(R->why, sizeof R->why, "missing label \"%s\"", in->label_name);
        R->bad = true;
        return HL_OK;
    }
    if (!json_scalar(lv, &s, &n, numbuf, sizeof numbuf)) {
        snprintf(R->why, sizeof R->why, "label \"%s\" is %s, expected a string, number or "
                 "true/false", in->label_name, json_kind(lv));
        R->bad = true;
        return HL_OK;
    }
    int32_t cls = label_class(L, s, n, R->why, sizeof R->why);
    if (cls == -2) {
        R->n_filtered++;
        return HL_OK;
    }
    if (cls < 0) {
        R->bad = true;
        return HL_OK;
    }
    hl_status st = grow_examples(L);
    if (st != HL_OK)
        return st;
    for (int32_t f = 0; f < t->n_fields; f++) {
        const cJSON *v = json_walk(R->ctx[in->field_level[f]], in->field_rel[f]);
        if (!v || cJSON_IsNull(v)) {
            snprintf(R->why, sizeof R->why, "missing field \"%s\" (for %s)",
                     source_name(in, t, f), t->fields[f]);
            R->bad = true;
            return HL_OK;
        }
        if (!json_scalar(v, &s, &n, numbuf, sizeof numbuf)) {
            snprintf(R->why, sizeof R->why, "field \"%s\" is %s, expected text",
                     source_name(in, t, f), json_kind(v));
            R->bad = true;
            return HL_OK;
        }
        if ((st = put_field(L, f, s, n, R->why, sizeof R->why)) != HL_OK)
            return st;
        if (R->why[0]) {
            R->bad = true;
            return HL_OK;
        }
    }
    ds->ex[ds->n].label = cls;
    ds->ex[ds->n].sub = R->sub++;
    ds->ex[ds->n].line = R->line;
    ds->n++;
    return HL_OK;
}

static hl_status jsonl_expand(loader *L, jsonl_rec *R, int level)
{
    const task_input *in = L->in;
    if (level == in->depth)
        return jsonl_emit(L, R);
    const cJSON *arr = json_walk(R->ctx[level], in->array_path[level]);
    if (!cJSON_IsArray(arr)) {
        snprintf(R->why, sizeof R->why, "\"%s\" is %s, expected an array", in->array_path[level],
                 arr ? json_kind(arr) : "missing");
        R->bad = true;
        return HL_OK;
    }
    if (cJSON_GetArraySize(arr) == 0) {
        snprintf(R->why, sizeof R->why, "array \"%s\" is empty (no examples in this record)",
                 in->array_path[level]);
        R->bad = true;
        return HL_OK;
    }
    for (const cJSON *el = arr->child; el && !R->bad; el = el->next) {
        R->ctx[level + 1] = el;
        hl_status st = jsonl_expand(L, R, level + 1);
        if (st != HL_OK)
            return st;
    }
    return HL_OK;
}

/* Extract all examples of one record with layout L->in; on a bad record the
 * partial examples are rolled back and R->bad says why. */
static hl_status jsonl_record(loader *L, jsonl_rec *R, const cJSON *root)
{
    dataset *ds = L->ds;
    uint32_t saved_n = ds->n;
    size_t saved_text = ds->text_len;
    R->ctx[0] = root;
    R->sub = 0;
    R->bad = false;
    R->n_filtered = 0;
    hl_status st = jsonl_expand(L, R, 0);
    if (st != HL_OK)
        return st;
    if (R->bad) {
        ds->n = saved_n;
        ds->text_len = saved_text;
    }
    return HL_OK;
}

static hl_status load_jsonl(loader *L, const task_input *cands[], int n_cands)
{
    dataset *ds = L->ds;
    bool resolved = n_cands == 1;
    L->in = cands[0];
    ds->input = (int32_t)(L->in - L->t->inputs);
    bool any = false;
    while (L->cur < L->end) {
        int64_t line = L->line++;
        char *p = L->cur;
        char *nl = memchr(p, '\n', (size_t)(L->end - p));
        char *e = nl ? nl : L->end;
        L->cur = nl ? nl + 1 : L->end;
        if (e > p && e[-1] == '\r')
            e--;
        bool blank = true;
        for (char *q = p; q < e && blank; q++)
            blank = is_blank_byte(*q);
        if (blank) {
            ds->n_blank++;
            continue;
        }
        any = true;
        ds->n_records++;
        size_t n = (size_t)(e - p), at;
        hl_status st;
        if (!dataset_utf8_valid(&at, p, n)) {
            if ((st = rec_bad(L, line, "not valid UTF-8 at byte %zu (0x%02x)", at,
                              (unsigned)(unsigned char)p[at])) != HL_OK)
                return st;
            continue;
        }
        const char *endp = NULL;
        cJSON *root = cJSON_ParseWithLengthOpts(p, n, &endp, false);
        if (root && endp) {
            const char *q = endp;
            while (q < e && is_blank_byte(*q))
                q++;
            if (q < e) {
                cJSON_Delete(root);
                root = NULL;
            }
        }
        if (!root) {
            size_t off = endp && endp >= p && endp <= e ? (size_t)(endp - p) : 0;
            if ((st = rec_bad(L, line, "not a JSON object (JSON error near byte %zu)", off)) !=
                HL_OK)
                return st;
            continue;
        }
        const char *dup = cJSON_IsObject(root) ? json_duplicate_key(root) : NULL;
        if (dup || json_text_has_nul_escape(p, n)) {
            char key[64];
            snprintf(key, sizeof key, "%.40s", dup ? dup : "");
            cJSON_Delete(root);
            if ((st = dup ? rec_bad(L, line, "key \"%s\" appears twice (which one is meant?)",
                                    key)
                          : rec_bad(L, line, "a string holds a NUL character (\\u0000)")) !=
                HL_OK)
                return st;
            continue;
        }
        if (!cJSON_IsObject(root)) {
            const char *kind = cJSON_IsArray(root) ? "an array" : "a scalar";
            cJSON_Delete(root);
            if ((st = rec_bad(L, line, "expected a JSON object (JSON lines: one per line), "
                              "found %s", kind)) != HL_OK)
                return st;
            continue;
        }
        jsonl_rec R;
        memset(&R, 0, sizeof R);
        R.line = line;
        st = HL_OK;
        if (!resolved) {
            /* first good record decides the layout: the first one that fits */
            char first_why[sizeof R.why] = "";
            for (int c = 0; c < n_cands; c++) {
                L->in = cands[c];
                if ((st = jsonl_record(L, &R, root)) != HL_OK)
                    break;
                if (!R.bad) {
                    resolved = true;
                    ds->input = (int32_t)(L->in - L->t->inputs);
                    break;
                }
                if (c == 0)
                    memcpy(first_why, R.why, sizeof first_why);
            }
            if (!resolved) {
                L->in = cands[0];
                memcpy(R.why, first_why, sizeof R.why);
            }
        } else {
            st = jsonl_record(L, &R, root);
        }
        cJSON_Delete(root);
        if (st != HL_OK)
            return st;
        ds->n_filtered += R.bad ? 0 : R.n_filtered;
        if (R.bad && (st = rec_bad(L, line, "%s", R.why)) != HL_OK)
            return st;
    }
    if (!any)
        return hl_err_set(L->err, HL_ERR_FORMAT, "%s: empty file (expected one JSON object per "
                          "line)", L->path);
    return HL_OK;
}

/* ---------------------------------------------------------------------------
 * entry points
 * ------------------------------------------------------------------------- */

static const char *format_name(task_format f)
{
    return f == TASK_FORMAT_CSV ? "csv" : f == TASK_FORMAT_JSONL ? "jsonl" : "tsv";
}

static bool ext_format(const char *path, task_format *out)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (!dot)
        return false;
    if (!strcmp(dot, ".tsv"))
        *out = TASK_FORMAT_TSV;
    else if (!strcmp(dot, ".csv"))
        *out = TASK_FORMAT_CSV;
    else if (!strcmp(dot, ".jsonl") || !strcmp(dot, ".json"))
        *out = TASK_FORMAT_JSONL;
    else
        return false;
    return true;
}

hl_status dataset_load_file(dataset *ds, const task *t, const char *path,
                            const dataset_opts *opts, hl_err *err)
{
    dataset_init(ds);
    if (t->n_inputs < 1 || t->n_fields < 1)
        return hl_err_set(err, HL_ERR_INVALID, "task %s has no input layout", t->name);
    task_format fmt;
    if (!ext_format(path, &fmt))
        fmt = t->inputs[0].format;
    const task_input *cands[TASK_MAX_INPUTS];
    int n_cands = 0;
    for (int i = 0; i < t->n_inputs; i++)
        if (t->inputs[i].format == fmt)
            cands[n_cands++] = &t->inputs[i];
    if (n_cands == 0) {
        char fmts[64] = "";
        size_t at = 0;
        for (int i = 0; i < t->n_inputs && at < sizeof fmts; i++) {
            int w = snprintf(fmts + at, sizeof fmts - at, "%s%s", i ? ", " : "",
                             format_name(t->inputs[i].format));
            at += w > 0 ? (size_t)w : 0;
        }
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: task %s does not read %s files (it reads: %s)", path, t->name,
                          format_name(fmt), fmts);
    }
    char *buf = NULL;
    size_t n = 0;
    hl_status st = file_read(path, SIZE_MAX / 2, &buf, &n, err);
    if (st != HL_OK)
        return st;
    loader L = {.ds = ds, .t = t, .path = path, .skip_bad = opts && opts->skip_bad, .err = err,
                .cur = buf, .end = buf + n, .line = 1};
    ds->n_fields = t->n_fields;
    ds->n_classes = t->n_classes;
    ds->path = malloc(strlen(path) + 1);
    if (!ds->path) {
        free(buf);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    }
    strcpy(ds->path, path);
    if (n >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        L.cur += 3;
    for (const char *q = buf; q < L.end; q++)
        ds->n_lines += *q == '\n';
    if (n > 0 && buf[n - 1] != '\n')
        ds->n_lines++;

    if (fmt == TASK_FORMAT_JSONL)
        st = load_jsonl(&L, cands, n_cands);
    else
        st = load_delimited(&L, cands, n_cands);
    free(buf);
    free(L.cols);
    if (st == HL_OK && ds->n == 0) {
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: no examples (%lld records, %lld blank lines, %lld filtered by "
                        "label, %lld bad%s%s)",
                        path, (long long)ds->n_records, (long long)ds->n_blank,
                        (long long)ds->n_filtered, (long long)ds->n_bad,
                        ds->n_bad ? "; first: " : "", ds->first_bad);
    }
    if (st != HL_OK) {
        dataset_free(ds);
        return st;
    }
    for (uint32_t i = 0; i < ds->n; i++) {
        ds->class_count[ds->ex[i].label]++;
        for (int32_t f = 0; f < ds->n_fields; f++) {
            uint32_t l = ds->field_len[(size_t)i * (size_t)ds->n_fields + (size_t)f];
            if (l > ds->max_len[f])
                ds->max_len[f] = l;
        }
    }
    return HL_OK;
}

hl_status dataset_find_split(char *out, size_t cap, const task *t, const char *dir,
                             dataset_split split, hl_err *err)
{
    static const char *const train[] = {"train", NULL};
    static const char *const dev[] = {"dev", "dev_matched", "val", "validation", NULL};
    static const char *const test[] = {"test", "test_matched", NULL};
    const char *const *names = split == DATASET_SPLIT_TRAIN ? train
                               : split == DATASET_SPLIT_DEV ? dev
                                                            : test;
    const char *exts[TASK_MAX_INPUTS + 1];
    int n_ext = 0;
    for (int i = 0; i < t->n_inputs; i++) {
        const char *e = format_name(t->inputs[i].format);
        bool seen = false;
        for (int k = 0; k < n_ext; k++)
            seen = seen || !strcmp(exts[k], e);
        if (!seen)
            exts[n_ext++] = e;
    }
    if (!out || cap == 0)
        return hl_err_set(err, HL_ERR_INVALID, "dataset_find_split: no output buffer");
    if (!dataset_is_folder(dir))
        return hl_err_set(err, HL_ERR_IO, "%s: not a folder", dir);
    char tried[512];
    size_t at = 0;
    tried[0] = '\0';
    for (int i = 0; names[i]; i++)
        for (int k = 0; k < n_ext; k++) {
            int w = snprintf(out, cap, "%s/%s.%s", dir, names[i], exts[k]);
            if (w < 0 || (size_t)w >= cap)
                return hl_err_set(err, HL_ERR_INVALID, "%s: path too long", dir);
            struct stat sb;
            if (stat(out, &sb) == 0 && S_ISREG(sb.st_mode))
                return HL_OK;
            if (at < sizeof tried) {
                w = snprintf(tried + at, sizeof tried - at, "%s%s.%s", at ? ", " : "", names[i],
                             exts[k]);
                at += w > 0 ? (size_t)w : 0;
            }
        }
    out[0] = '\0';
    return hl_err_set(err, HL_ERR_IO, "%s: no %s split (looked for %s)", dir,
                      dataset_split_name(split), tried);
}

hl_status dataset_load(dataset *ds, const task *t, const char *path, dataset_split split,
                       const dataset_opts *opts, hl_err *err)
{
    dataset_init(ds);
    if (!dataset_is_folder(path))
        return dataset_load_file(ds, t, path, opts, err);
    char file[PATH_MAX];
    hl_status st = dataset_find_split(file, sizeof file, t, path, split, err);
    if (st != HL_OK)
        return st;
    return dataset_load_file(ds, t, file, opts, err);
}

/* task.c - task definitions (JSON), template parsing and prompt rendering.
 * See task.h for the contract and data/tasks/README.md for the JSON schema.
 *
 * Leaves out: reading data files (dataset.c) and anything model-specific.
 */
#include "task.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fileio.h"
#include "jsonval.h"

#ifndef HELENE_SRCDATADIR
#define HELENE_SRCDATADIR ""
#endif
#ifndef HELENE_DATADIR
#define HELENE_DATADIR ""
#endif

#define TASK_FILE_MAX (16u << 20) /* a definition is a few hundred bytes */

/* ---------------------------------------------------------------------------
 * small helpers
 * ------------------------------------------------------------------------- */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static char *dup_mem(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
static bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }


/* ---------------------------------------------------------------------------
 * init / free
 * ------------------------------------------------------------------------- */

void task_init(task *t)
{
    memset(t, 0, sizeof *t);
    t->truncate_field = -1;
    t->trim = true;
}

void task_template_free(task_template *tp)
{
    free(tp->source);
    free(tp->lit);
    memset(tp, 0, sizeof *tp);
}

static void input_free(task_input *in)
{
    for (int f = 0; f < TASK_MAX_FIELDS; f++) {
        free(in->field_name[f]);
        free(in->field_rel[f]);
    }
    for (int k = 0; k < TASK_MAX_DEPTH; k++)
        free(in->array_path[k]);
    free(in->label_name);
    free(in->label_rel);
    memset(in, 0, sizeof *in);
}

void task_free(task *t)
{
    free(t->path);
    free(t->description);
    for (int f = 0; f < TASK_MAX_FIELDS; f++)
        free(t->fields[f]);
    for (int c = 0; c < TASK_MAX_CLASSES; c++) {
        free(t->classes[c].value);
        free(t->classes[c].word);
        free(t->classes[c].causal);
        free(t->classes[c].masked);
        free(t->skip_labels[c]);
    }
    task_template_free(&t->causal);
    task_template_free(&t->masked);
    for (int i = 0; i < TASK_MAX_INPUTS; i++)
        input_free(&t->inputs[i]);
    free(t->data_dir);
    task_init(t);
}

/* ---------------------------------------------------------------------------
 * queries
 * ------------------------------------------------------------------------- */

int32_t task_field_index(const task *t, const char *name)
{
    for (int32_t f = 0; f < t->n_fields; f++)
        if (strcmp(t->fields[f], name) == 0)
            return f;
    return -1;
}

int32_t task_class_index(const task *t, const char *value, size_t len)
{
    for (int32_t c = 0; c < t->n_classes; c++) {
        const char *v = t->classes[c].value;
        if (strlen(v) == len && memcmp(v, value, len) == 0)
            return c;
    }
    return -1;
}

bool task_supports(const task *t, task_model kind)
{
    return kind == TASK_MODEL_MASKED ? t->has_masked : t->has_causal;
}

const char *task_class_word(const task *t, task_model kind, int32_t c)
{
    if (c < 0 || c >= t->n_classes)
        return NULL;
    return kind == TASK_MODEL_MASKED ? t->classes[c].masked : t->classes[c].causal;
}

static const task_template *template_of(const task *t, task_model kind)
{
    return kind == TASK_MODEL_MASKED ? &t->masked : &t->causal;
}

size_t task_prompt_max_bytes(const task *t, task_model kind, const uint32_t *max_len)
{
    const task_template *tp = template_of(t, kind);
    size_t n = (size_t)tp->fixed_bytes + 1;
    for (int f = 0; f < t->n_fields; f++)
        n += (size_t)tp->uses[f] * (max_len ? max_len[f] : 0);
    return n;
}

int64_t task_fit_budget(const task *t, task_model kind, int64_t max_tokens,
                        task_token_len_fn len_fn, void *ctx)
{
    int64_t longest = 0;
    for (int32_t c = 0; c < t->n_classes; c++) {
        const char *w = task_class_word(t, kind, c);
        int64_t n = len_fn(ctx, w, strlen(w));
        if (n < 0)
            return n;
        if (n > longest)
            longest = n;
    }
    return max_tokens - longest;
}

/* ---------------------------------------------------------------------------
 * templates
 *
 * Causal: literal text with {placeholders}; "{{" and "}}" are literal braces.
 * Masked: whitespace-separated pieces.  "<s>", "</s>" and "<mask>" are pieces
 * of their own; other pieces are text with placeholders.  Rendering joins a
 * piece to the previous one with one space, except after "<s>", before
 * "</s>" and "<mask>" (the word at the mask carries its own space, as in
 * LM-BFF), and before a piece starting with punctuation (. , : ; ? ! )).
 * A field directly followed by . ? or ! in the same piece loses its own final
 * . ? or ! first ("{S1}?" = LM-BFF's *sent-_0*?).
 *
 * Placeholders: {name} a field verbatim; {Name} the field with its first
 * letter upper-cased; {S1}, {S2}.. the 1st, 2nd.. field verbatim; {s1}, {s2}..
 * with the first letter lower-cased (LM-BFF's sentl).
 * ------------------------------------------------------------------------- */

typedef struct tpl_builder {
    task_template *tp;
    const task *t;
    const char *what; /* "template" or "masked_template", for messages */
    size_t lit_used, lit_cap;
    hl_err *err;
} tpl_builder;

static hl_status tpl_add_seg(tpl_builder *b, task_segment s)
{
    task_template *tp = b->tp;
    if (tp->n_seg >= TASK_MAX_SEGMENTS)
        return hl_err_set(b->err, HL_ERR_FORMAT, "%s: more than %d pieces", b->what,
                          TASK_MAX_SEGMENTS);
    tp->seg[tp->n_seg++] = s;
    return HL_OK;
}

/* Append literal bytes, merging with a preceding literal segment. */
static hl_status tpl_add_text(tpl_builder *b, const char *s, size_t n)
{
    if (n == 0)
        return HL_OK;
    task_template *tp = b->tp;
    if (b->lit_used + n > b->lit_cap)
        return hl_err_set(b->err, HL_ERR_INVALID, "%s: internal literal overflow", b->what);
    char *dst = tp->lit + b->lit_used;
    memcpy(dst, s, n);
    b->lit_used += n;
    tp->fixed_bytes += (uint32_t)n;
    if (tp->n_seg > 0) {
        task_segment *last = &tp->seg[tp->n_seg - 1];
        if (last->kind == TASK_SEG_TEXT && last->text + last->len == dst) {
            last->len += (uint32_t)n;
            return HL_OK;
        }
    }
    task_segment seg = {.kind = TASK_SEG_TEXT, .text = dst, .len = (uint32_t)n};
    return tpl_add_seg(b, seg);
}

static hl_status tpl_resolve(tpl_builder *b, const char *name, size_t n, task_segment *seg)
{
    char buf[TASK_NAME_MAX];
    if (n == 0 || n >= sizeof buf)
        return hl_err_set(b->err, HL_ERR_FORMAT, "%s: empty or over-long placeholder {%.*s}",
                          b->what, (int)(n > 40 ? 40 : n), name);
    memcpy(buf, name, n);
    buf[n] = '\0';
    memset(seg, 0, sizeof *seg);
    seg->kind = TASK_SEG_FIELD;
    int32_t f = task_field_index(b->t, buf);
    if (f >= 0) {
        seg->field = f;
        seg->fcase = TASK_CASE_KEEP;
        return HL_OK;
    }
    if ((buf[0] == 'S' || buf[0] == 's') && n >= 2) {
        bool digits = true;
        for (size_t i = 1; i < n; i++)
            digits = digits && is_digit(buf[i]);
        long k = digits ? strtol(buf + 1, NULL, 10) : 0;
        if (digits && k >= 1 && k <= b->t->n_fields) {
            seg->field = (int32_t)k - 1;
            seg->fcase = buf[0] == 'S' ? TASK_CASE_KEEP : TASK_CASE_LOWER_FIRST;
            return HL_OK;
        }
    }
    if (is_upper(buf[0])) {
        buf[0] = (char)(buf[0] - 'A' + 'a');
        f = task_field_index(b->t, buf);
        if (f >= 0) {
            seg->field = f;
            seg->fcase = TASK_CASE_UPPER_FIRST;
            return HL_OK;
        }
    }
    char fields[512];
    size_t at = 0;
    fields[0] = '\0';
    for (int32_t i = 0; i < b->t->n_fields && at < sizeof fields; i++)
        at += (size_t)snprintf(fields + at, sizeof fields - at, "%s%s", i ? ", " : "",
                               b->t->fields[i]);
    return hl_err_set(b->err, HL_ERR_FORMAT,
                      "%s: placeholder {%.*s} names no declared field (fields: %s; or S1..S%d)",
                      b->what, (int)n, name, fields, (int)b->t->n_fields);
}

/* Parse text with placeholders: src[0, n). */
static hl_status tpl_parse_text(tpl_builder *b, const char *src, size_t n, bool masked)
{
    size_t i = 0;
    while (i < n) {
        char c = src[i];
        if ((c == '{' || c == '}') && i + 1 < n && src[i + 1] == c) {
            hl_status st = tpl_add_text(b, src + i, 1);
            if (st != HL_OK)
                return st;
            i += 2;
        } else if (c == '}') {
            return hl_err_set(b->err, HL_ERR_FORMAT,
                              "%s: unmatched '}' at byte %zu (write }} for a literal brace)",
                              b->what, i);
        } else if (c == '{') {
            size_t j = i + 1;
            while (j < n && src[j] != '}' && src[j] != '{')
                j++;
            if (j >= n || src[j] != '}')
                return hl_err_set(b->err, HL_ERR_FORMAT,
                                  "%s: '{' at byte %zu is not closed (write {{ for a literal "
                                  "brace)",
                                  b->what, i);
            task_segment seg;
            hl_status st = tpl_resolve(b, src + i + 1, j - i - 1, &seg);
            if (st != HL_OK)
                return st;
            /* masked "{S1}?": the field loses its own final punctuation */
            if (masked && j + 1 < n && (src[j + 1] == '.' || src[j + 1] == '?' || src[j + 1] == '!'))
                seg.strip_punct = 1;
            st = tpl_add_seg(b, seg);
            if (st != HL_OK)
                return st;
            b->tp->uses[seg.field]++;
            i = j + 1;
        } else {
            size_t j = i;
            while (j < n && src[j] != '{' && src[j] != '}')
                j++;
            hl_status st = tpl_add_text(b, src + i, j - i);
            if (st != HL_OK)
                return st;
            i = j;
        }
    }
    return HL_OK;
}

static const char *find_special(const char *s, size_t n)
{
    static const char *const specials[] = {"<mask>", "<s>", "</s>"};
    for (size_t k = 0; k < sizeof specials / sizeof *specials; k++) {
        size_t m = strlen(specials[k]);
        for (size_t i = 0; i + m <= n; i++)
            if (memcmp(s + i, specials[k], m) == 0)
                return specials[k];
    }
    return NULL;
}

static bool piece_is(const char *s, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(s, lit, n) == 0;
}

static hl_status tpl_parse_masked(tpl_builder *b, const char *src)
{
    task_template *tp = b->tp;
    size_t n = strlen(src), i = 0;
    int n_mask = 0, n_pieces = 0;
    int32_t prev_kind = -1;
    while (i < n) {
        while (i < n && is_space(src[i]))
            i++;
        if (i >= n)
            break;
        size_t j = i;
        while (j < n && !is_space(src[j]))
            j++;
        const char *p = src + i;
        size_t len = j - i;
        hl_status st = HL_OK;
        if (piece_is(p, len, "<s>")) {
            if (n_pieces != 0)
                return hl_err_set(b->err, HL_ERR_FORMAT, "%s: <s> must come first", b->what);
            task_segment seg = {.kind = TASK_SEG_BOS};
            st = tpl_add_seg(b, seg);
            tp->fixed_bytes += 3;
            prev_kind = TASK_SEG_BOS;
        } else if (piece_is(p, len, "</s>")) {
            task_segment seg = {.kind = TASK_SEG_EOS};
            st = tpl_add_seg(b, seg);
            tp->fixed_bytes += 4;
            prev_kind = TASK_SEG_EOS;
        } else if (piece_is(p, len, "<mask>")) {
            task_segment seg = {.kind = TASK_SEG_MASK};
            st = tpl_add_seg(b, seg);
            tp->fixed_bytes += 6;
            n_mask++;
            prev_kind = TASK_SEG_MASK;
        } else {
            const char *sp = find_special(p, len);
            if (sp)
                return hl_err_set(b->err, HL_ERR_FORMAT,
                                  "%s: write %s as a piece of its own, separated by spaces "
                                  "(found in \"%.*s\")",
                                  b->what, sp, (int)len, p);
            if (prev_kind == TASK_SEG_EOS)
                return hl_err_set(b->err, HL_ERR_FORMAT, "%s: text after </s>", b->what);
            bool punct = strchr(".,:;?!)", p[0]) != NULL;
            if (n_pieces > 0 && prev_kind != TASK_SEG_BOS && !punct)
                st = tpl_add_text(b, " ", 1);
            if (st == HL_OK)
                st = tpl_parse_text(b, p, len, true);
            prev_kind = TASK_SEG_TEXT;
        }
        if (st != HL_OK)
            return st;
        n_pieces++;
        i = j;
    }
    if (n_mask != 1)
        return hl_err_set(b->err, HL_ERR_FORMAT, "%s: must contain exactly one <mask>, found %d",
                          b->what, n_mask);
    bool any_field = false;
    for (int f = 0; f < TASK_MAX_FIELDS; f++)
        any_field = any_field || tp->uses[f] > 0;
    if (!any_field)
        return hl_err_set(b->err, HL_ERR_FORMAT, "%s: uses no field", b->what);
    return HL_OK;
}

hl_status task_template_parse(task_template *tp, const task *t, task_model kind,
                              const char *src, hl_err *err)
{
    task_template_free(tp);
    size_t n = strlen(src);
    tp->source = dup_str(src);
    /* masked rendering adds at most one space per piece */
    size_t cap = 2 * n + 16;
    tp->lit = malloc(cap);
    if (!tp->source || !tp->lit) {
        task_template_free(tp);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for a template");
    }
    tpl_builder b = {.tp = tp, .t = t, .lit_cap = cap, .err = err,
                     .what = kind == TASK_MODEL_MASKED ? "masked_template" : "template"};
    hl_status st;
    if (kind == TASK_MODEL_MASKED) {
        st = tpl_parse_masked(&b, src);
    } else {
        const char *sp = find_special(src, n);
        if (sp && strcmp(sp, "<mask>") == 0)
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "template: contains <mask>; masked-LM templates go under "
                            "\"masked_template\"");
        else
            st = tpl_parse_text(&b, src, n, false);
        if (st == HL_OK) {
            bool any_field = false;
            for (int f = 0; f < TASK_MAX_FIELDS; f++)
                any_field = any_field || tp->uses[f] > 0;
            if (!any_field)
                st = hl_err_set(err, HL_ERR_FORMAT, "template: uses no field");
        }
    }
    if (st != HL_OK)
        task_template_free(tp);
    return st;
}

/* True when a causal prompt ends in whitespace, so the word needs no space. */
static bool template_ends_in_space(const task_template *tp)
{
    if (tp->n_seg == 0)
        return false;
    const task_segment *s = &tp->seg[tp->n_seg - 1];
    return s->kind == TASK_SEG_TEXT && s->len > 0 && is_space(s->text[s->len - 1]);
}

/* ---------------------------------------------------------------------------
 * JSONL paths: "a.b[].c[].d" -> arrays "a.b", "c" and the rest "d"
 * ------------------------------------------------------------------------- */

typedef struct path_parts {
    int depth;
    char prefix[TASK_MAX_DEPTH][256]; /* full text up to and including the k-th "[]" */
    char array_rel[TASK_MAX_DEPTH][256];
    char rest[256];
} path_parts;

static bool path_split(path_parts *pp, const char *path, char *why, size_t why_cap)
{
    memset(pp, 0, sizeof *pp);
    size_t n = strlen(path);
    if (n == 0 || n >= 255) {
        snprintf(why, why_cap, "empty or longer than 254 bytes");
        return false;
    }
    if (path[0] == '.' || path[n - 1] == '.' || strstr(path, "..")) {
        snprintf(why, why_cap, "empty path segment in \"%s\"", path);
        return false;
    }
    size_t seg_start = 0;
    for (size_t i = 0; i < n; i++) {
        if (path[i] == '[') {
            if (i + 1 >= n || path[i + 1] != ']' || (i + 2 < n && path[i + 2] != '.')) {
                snprintf(why, why_cap, "\"%s\": '[]' must end a segment (e.g. \"a.b[].c\")",
                         path);
                return false;
            }
            if (pp->depth >= TASK_MAX_DEPTH) {
                snprintf(why, why_cap, "\"%s\": more than %d nested arrays", path,
                         TASK_MAX_DEPTH);
                return false;
            }
            if (i == seg_start) {
                snprintf(why, why_cap, "\"%s\": '[]' needs a key before it", path);
                return false;
            }
            memcpy(pp->prefix[pp->depth], path, i + 2);
            memcpy(pp->array_rel[pp->depth], path + seg_start, i - seg_start);
            pp->depth++;
            i += 2; /* at '.' or end */
            seg_start = i + 1;
        } else if (path[i] == ']') {
            snprintf(why, why_cap, "\"%s\": stray ']'", path);
            return false;
        }
    }
    if (seg_start < n)
        memcpy(pp->rest, path + seg_start, n - seg_start);
    return true;
}

/* ---------------------------------------------------------------------------
 * loading
 * ------------------------------------------------------------------------- */

typedef struct loader {
    task *t;
    const char *path;
    hl_err *err;
} loader;

static hl_status bad(loader *L, const char *key, const char *what)
{
    return hl_err_set(L->err, HL_ERR_FORMAT, "%s: key \"%s\": %s", L->path, key, what);
}

static const char *const known_keys[] = {
    "name",   "description", "comment", "fields",    "labels", "skip_labels", "template",
    "masked_template", "model", "inputs", "max_tokens", "truncate", "trim", "data", NULL};

/* Text of a label value: string as is, true/false, or an integer. */
static bool json_value_text(char *out, size_t cap, const cJSON *v)
{
    if (cJSON_IsString(v) && v->valuestring) {
        if (strlen(v->valuestring) >= cap)
            return false;
        strcpy(out, v->valuestring);
        return true;
    }
    if (cJSON_IsBool(v)) {
        snprintf(out, cap, "%s", cJSON_IsTrue(v) ? "true" : "false");
        return true;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (!isfinite(d) || d != floor(d) || fabs(d) > 9007199254740992.0)
            return false;
        snprintf(out, cap, "%lld", (long long)d);
        return true;
    }
    return false;
}

static bool valid_name(const char *s, size_t max, bool allow_dot_dash)
{
    size_t n = strlen(s);
    if (n == 0 || n >= max || !(is_lower(s[0]) || is_digit(s[0])))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(is_lower(c) || is_digit(c) || c == '_' ||
              (allow_dot_dash && (c == '-' || c == '.'))))
            return false;
    }
    return true;
}

static hl_status load_fields(loader *L, const cJSON *root)
{
    task *t = L->t;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "fields");
    if (!a)
        return bad(L, "fields", "missing (a list of text field names, e.g. [\"sentence\"])");
    if (!cJSON_IsArray(a))
        return bad(L, "fields", "expected an array of field names");
    int n = cJSON_GetArraySize(a);
    if (n < 1 || n > TASK_MAX_FIELDS)
        return hl_err_set(L->err, HL_ERR_FORMAT, "%s: key \"fields\": %d names (1..%d allowed)",
                          L->path, n, TASK_MAX_FIELDS);
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, a)
    {
        if (!cJSON_IsString(it) || !valid_name(it->valuestring, TASK_NAME_MAX, false) ||
            !is_lower(it->valuestring[0]))
            return hl_err_set(L->err, HL_ERR_FORMAT,
                              "%s: key \"fields[%d]\": expected a name of a-z, 0-9 and _ "
                              "starting with a letter",
                              L->path, i);
        for (int j = 0; j < i; j++)
            if (strcmp(t->fields[j], it->valuestring) == 0)
                return hl_err_set(L->err, HL_ERR_FORMAT, "%s: key \"fields[%d]\": \"%s\" twice",
                                  L->path, i, it->valuestring);
        if ((t->fields[i] = dup_str(it->valuestring)) == NULL)
            return hl_err_set(L->err, HL_ERR_NOMEM, "out of memory");
        i++;
        t->n_fields = i;
    }
    return HL_OK;
}

static hl_status load_labels(loader *L, const cJSON *root)
{
    task *t = L->t;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "labels");
    if (!a)
        return bad(L, "labels", "missing (e.g. [{\"value\": \"0\", \"word\": \"terrible\"}, ...])");
    if (!cJSON_IsArray(a))
        return bad(L, "labels", "expected an array of {\"value\": ..., \"word\": ...}");
    int n = cJSON_GetArraySize(a);
    if (n < 2 || n > TASK_MAX_CLASSES)
        return hl_err_set(L->err, HL_ERR_FORMAT, "%s: key \"labels\": %d classes (2..%d allowed)",
                          L->path, n, TASK_MAX_CLASSES);
    const cJSON *it;
    int c = 0;
    cJSON_ArrayForEach(it, a)
    {
        char key[64];
        snprintf(key, sizeof key, "labels[%d]", c);
        if (!cJSON_IsObject(it))
            return bad(L, key, "expected an object {\"value\": ..., \"word\": ...}");
        for (const cJSON *k = it->child; k; k = k->next)
            if (strcmp(k->string, "value") != 0 && strcmp(k->string, "word") != 0)
                return hl_err_set(L->err, HL_ERR_FORMAT,
                                  "%s: key \"%s.%s\": unknown (expected value, word)", L->path,
                                  key, k->string);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(it, "value");
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(it, "word");
        char vt[256];
        snprintf(key, sizeof key, "labels[%d].value", c);
        if (!v || !json_value_text(vt, sizeof vt, v) || vt[0] == '\0')
            return bad(L, key, "expected a non-empty string, true/false or an integer");
        snprintf(key, sizeof key, "labels[%d].word", c);
        if (!w || !cJSON_IsString(w) || w->valuestring[0] == '\0')
            return bad(L, key, "expected a non-empty string");
        if (is_space(w->valuestring[0]))
            return bad(L, key,
                       "starts with whitespace; write the word without it (rendering adds the "
                       "space, see data/tasks/README.md)");
        for (int d = 0; d < c; d++) {
            if (strcmp(t->classes[d].value, vt) == 0)
                return hl_err_set(L->err, HL_ERR_FORMAT,
                                  "%s: key \"labels[%d].value\": \"%s\" already declared",
                                  L->path, c, vt);
            if (strcmp(t->classes[d].word, w->valuestring) == 0)
                return hl_err_set(L->err, HL_ERR_FORMAT,
                                  "%s: key \"labels[%d].word\": \"%s\" already used by class %d",
                                  L->path, c, w->valuestring, d);
        }
        task_class *cl = &t->classes[c];
        size_t wl = strlen(w->valuestring);
        cl->value = dup_str(vt);
        cl->word = dup_str(w->valuestring);
        cl->masked = malloc(wl + 2);
        if (!cl->value || !cl->word || !cl->masked)
            return hl_err_set(L->err, HL_ERR_NOMEM, "out of memory");
        cl->masked[0] = ' ';
        memcpy(cl->masked + 1, w->valuestring, wl + 1);
        c++;
        t->n_classes = c;
    }

    const cJSON *s = cJSON_GetObjectItemCaseSensitive(root, "skip_labels");
    if (s) {
        if (!cJSON_IsArray(s) || cJSON_GetArraySize(s) > TASK_MAX_CLASSES)
            return bad(L, "skip_labels", "expected an array of label values");
        int i = 0;
        cJSON_ArrayForEach(it, s)
        {
            char vt[256], key[64];
            snprintf(key, sizeof key, "skip_labels[%d]", i);
            if (!json_value_text(vt, sizeof vt, it))
                return bad(L, key, "expected a string, true/false or an integer");
            if (task_class_index(t, vt, strlen(vt)) >= 0)
                return bad(L, key, "is also a declared label value");
            if ((t->skip_labels[i] = dup_str(vt)) == NULL)
                return hl_err_set(L->err, HL_ERR_NOMEM, "out of memory");
            t->n_skip_labels = ++i;
        }
    }
    return HL_OK;
}

/* One "fields"/"label" source of an input: a name/path (string) or a column. */
static hl_status load_source(loader *L, task_input *in, const char *key, const cJSON *v,
                             char **name, int32_t *col)
{
    *name = NULL;
    *col = -1;
    if (cJSON_IsString(v) && v->valuestring[0]) {
        if (in->format != TASK_FORMAT_JSONL && !in->header)
            return bad(L, key, "names need \"header\": true; give a 0-based column number");
        if ((*name = dup_str(v->valuestring)) == NULL)
            return hl_err_set(L->err, HL_ERR_NOMEM, "out of memory");
        return HL_OK;
    }
    if (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble < 100000 &&
        v->valuedouble == floor(v->valuedouble)) {
        if (in->format == TASK_FORMAT_JSONL)
            return bad(L, key, "JSONL fields are named by key paths, not column numbers");
        if (in->header)
            return bad(L, key, "column numbers need \"header\": false; give the column name");
        *col = (int32_t)v->valuedouble;
        return HL_OK;
    }
    return bad(L, key, "expected a column name / JSON path (string) or a 0-based column number");
}

/* Split JSONL paths at "[]" and check they form one chain of arrays. */
static hl_status input_split_paths(loader *L, task_input *in, int idx)
{
    int n = L->t->n_fields;
    path_parts parts[TASK_MAX_FIELDS + 1];
    memset(parts, 0, sizeof parts);
    const char *src[TASK_MAX_FIELDS + 1];
    for (int f = 0; f <= n; f++) {
        src[f] = f < n ? in->field_name[f] : in->label_name;
        char why[400];
        if (!path_split(&parts[f], src[f], why, sizeof why)) {
            char key[128];
            if (f < n)
                snprintf(key, sizeof key, "inputs[%d].fields.%s", idx, L->t->fields[f]);
            else
                snprintf(key, sizeof key, "inputs[%d].label", idx);
            return bad(L, key, why);
        }
    }
    int deepest = 0;
    for (int f = 1; f <= n; f++)
        if (parts[f].depth > parts[deepest].depth)
            deepest = f;
    for (int f = 0; f <= n; f++)
        for (int k = 0; k < parts[f].depth; k++)
            if (strcmp(parts[f].prefix[k], parts[deepest].prefix[k]) != 0) {
                char key[128], why[700];
                snprintf(key, sizeof key, "inputs[%d]", idx);
                snprintf(why, sizeof why,
                         "paths \"%s\" and \"%s\" iterate different arrays; all \"[]\" "
                         "paths must share one chain of arrays",
                         src[f], src[deepest]);
                return bad(L, key, why);
            }
    in->depth = parts[deepest].depth;
    for (int k = 0; k < in->depth; k++)
        if ((in->array_path[k] = dup_str(parts[deepest].array_rel[k])) == NULL)
            return hl_err_set(L->err, HL_ERR_NOMEM, "out of memory");
    for (int f = 0; f <= n; f++) {
        char *rel = dup_str(parts[f].rest);
        if (!rel)
            return hl_err_set(L->err, HL_ERR_NOMEM, "out of memory");
        if (f < n) {
            in->field_rel[f] = rel;
            in->field_level[f] = parts[f].depth;
        } else {
            in->label_rel = rel;
            in->label_level = parts[f].depth;
        }
    }
    return HL_OK;
}

static hl_status load_inputs(loader *L, const cJSON *root)
{
    task *t = L->t;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "inputs");
    if (!a)
        return bad(L, "inputs",
                   "missing (e.g. [{\"format\": \"tsv\", \"fields\": {\"sentence\": "
                   "\"sentence\"}, \"label\": \"label\"}])");
    int n = cJSON_IsArray(a) ? cJSON_GetArraySize(a) : 0;
    if (n < 1 || n > TASK_MAX_INPUTS)
        return hl_err_set(L->err, HL_ERR_FORMAT,
                          "%s: key \"inputs\": expected an array of 1..%d input layouts", L->path,
                          TASK_MAX_INPUTS);
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, a)
    {
        task_input *in = &t->inputs[i];
        char key[128];
        snprintf(key, sizeof key, "inputs[%d]", i);
        if (!cJSON_IsObject(it))
            return bad(L, key, "expected an object");
        for (const cJSON *k = it->child; k; k = k->next)
            if (strcmp(k->string, "format") && strcmp(k->string, "header") &&
                strcmp(k->string, "fields") && strcmp(k->string, "label")) {
                snprintf(key, sizeof key, "inputs[%d].%s", i, k->string);
                return bad(L, key, "unknown (expected format, header, fields, label)");
            }
        const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(it, "format");
        snprintf(key, sizeof key, "inputs[%d].format", i);
        const char *fs = cJSON_IsString(fmt) ? fmt->valuestring : "";
        if (!strcmp(fs, "tsv"))
            in->format = TASK_FORMAT_TSV;
        else if (!strcmp(fs, "csv"))
            in->format = TASK_FORMAT_CSV;
        else if (!strcmp(fs, "jsonl"))
            in->format = TASK_FORMAT_JSONL;
        else
            return bad(L, key, "expected \"tsv\", \"csv\" or \"jsonl\"");
        const cJSON *hdr = cJSON_GetObjectItemCaseSensitive(it, "header");
        in->header = in->format != TASK_FORMAT_JSONL;
        if (hdr) {
            snprintf(key, sizeof key, "inputs[%d].header", i);
            if (!cJSON_IsBool(hdr))
                return bad(L, key, "expected true or false");
            if (in->format == TASK_FORMAT_JSONL)
                return bad(L, key, "only for tsv and csv");
            in->header = cJSON_IsTrue(hdr);
        }
        const cJSON *fields = cJSON_GetObjectItemCaseSensitive(it, "fields");
        snprintf(key, sizeof key, "inputs[%d].fields", i);
        if (!cJSON_IsObject(fields))
            return bad(L, key, "expected an object mapping each field to its source");
        for (const cJSON *k = fields->child; k; k = k->next)
            if (task_field_index(t, k->string) < 0) {
                snprintf(key, sizeof key, "inputs[%d].fields.%s", i, k->string);
                return bad(L, key, "not a declared field (see \"fields\")");
            }
        for (int f = 0; f < t->n_fields; f++) {
            snprintf(key, sizeof key, "inputs[%d].fields.%s", i, t->fields[f]);
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(fields, t->fields[f]);
            if (!v)
                return bad(L, key, "missing: every declared field needs a source");
            hl_status st = load_source(L, in, key, v, &in->field_name[f], &in->field_col[f]);
            if (st != HL_OK)
                return st;
        }
        snprintf(key, sizeof key, "inputs[%d].label", i);
        const cJSON *lab = cJSON_GetObjectItemCaseSensitive(it, "label");
        if (!lab)
            return bad(L, key, "missing");
        hl_status st = load_source(L, in, key, lab, &in->label_name, &in->label_col);
        if (st != HL_OK)
            return st;
        t->n_inputs = ++i;
        if (in->format == TASK_FORMAT_JSONL && (st = input_split_paths(L, in, i - 1)) != HL_OK)
            return st;
    }
    return HL_OK;
}

/* The directory of path joined with rel; leading "../" of rel pop the
 * directory's last component lexically, so built-ins report tidy paths. */
static char *join_relative(const char *path, const char *rel)
{
    if (rel[0] == '/')
        return dup_str(rel);
    size_t n = strlen(path), r = strlen(rel);
    char *dir = malloc(n + r + 4);
    if (!dir)
        return NULL;
    const char *slash = strrchr(path, '/');
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else
        memcpy(dir, path, (size_t)(slash - path)), dir[slash - path] = '\0';
    while (strncmp(rel, "../", 3) == 0) {
        char *last = strrchr(dir, '/');
        const char *comp = last ? last + 1 : dir;
        if (!strcmp(dir, "/") || !strcmp(comp, "..") || !strcmp(comp, "."))
            break;
        if (!last)
            strcpy(dir, ".");
        else if (last == dir)
            dir[1] = '\0';
        else
            *last = '\0';
        rel += 3;
    }
    size_t dl = strlen(dir);
    if (dir[dl - 1] != '/')
        dir[dl++] = '/';
    strcpy(dir + dl, rel);
    return dir;
}

static hl_status load_root(loader *L, const cJSON *root)
{
    task *t = L->t;
    if (!cJSON_IsObject(root))
        return hl_err_set(L->err, HL_ERR_FORMAT, "%s: expected a JSON object", L->path);
    for (const cJSON *k = root->child; k; k = k->next) {
        bool known = false;
        for (int i = 0; known_keys[i]; i++)
            known = known || strcmp(k->string, known_keys[i]) == 0;
        if (!known)
            return bad(L, k->string,
                       "unknown (known: name, description, comment, fields, labels, "
                       "skip_labels, template, masked_template, model, inputs, max_tokens, "
                       "truncate, trim, data)");
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "name");
    if (!v || !cJSON_IsString(v) || !valid_name(v->valuestring, TASK_NAME_MAX, true))
        return bad(L, "name", "expected a name of a-z, 0-9, _, - and . (at most 63 bytes)");
    strcpy(t->name, v->valuestring);
    v = cJSON_GetObjectItemCaseSensitive(root, "description");
    if (v && !cJSON_IsString(v))
        return bad(L, "description", "expected a string");
    if ((t->description = dup_str(v ? v->valuestring : "")) == NULL)
        return hl_err_set(L->err, HL_ERR_NOMEM, "out of memory");
    v = cJSON_GetObjectItemCaseSensitive(root, "comment");
    if (v && !cJSON_IsString(v) && !cJSON_IsArray(v))
        return bad(L, "comment", "expected a string or an array of strings");

    hl_status st = load_fields(L, root);
    if (st == HL_OK)
        st = load_labels(L, root);
    if (st != HL_OK)
        return st;

    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "template");
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(root, "masked_template");
    if (tc && (!cJSON_IsString(tc) || !tc->valuestring[0]))
        return bad(L, "template", "expected a non-empty string");
    if (tm && (!cJSON_IsString(tm) || !tm->valuestring[0]))
        return bad(L, "masked_template", "expected a non-empty string");
    if (!tc && !tm)
        return bad(L, "template", "missing (give \"template\", \"masked_template\" or both)");
    if (tc) {
        if ((st = task_template_parse(&t->causal, t, TASK_MODEL_CAUSAL, tc->valuestring,
                                      L->err)) != HL_OK)
            return hl_err_prefix(L->err, "%s", L->path);
        t->has_causal = true;
    }
    if (tm) {
        if ((st = task_template_parse(&t->masked, t, TASK_MODEL_MASKED, tm->valuestring,
                                      L->err)) != HL_OK)
            return hl_err_prefix(L->err, "%s", L->path);
        t->has_masked = true;
    }
    bool glue = template_ends_in_space(&t->causal);
    for (int32_t c = 0; c < t->n_classes; c++) {
        task_class *cl = &t->classes[c];
        cl->causal = glue ? dup_str(cl->word) : dup_str(cl->masked);
        if (!cl->causal)
            return hl_err_set(L->err, HL_ERR_NOMEM, "out of memory");
    }

    v = cJSON_GetObjectItemCaseSensitive(root, "model");
    t->model = t->has_causal ? TASK_MODEL_CAUSAL : TASK_MODEL_MASKED;
    if (v) {
        const char *m = cJSON_IsString(v) ? v->valuestring : "";
        if (!strcmp(m, "causal"))
            t->model = TASK_MODEL_CAUSAL;
        else if (!strcmp(m, "masked"))
            t->model = TASK_MODEL_MASKED;
        else
            return bad(L, "model", "expected \"causal\" or \"masked\"");
        if (!task_supports(t, t->model))
            return bad(L, "model",
                       t->model == TASK_MODEL_CAUSAL ? "\"causal\" needs a \"template\""
                                                     : "\"masked\" needs a \"masked_template\"");
    }

    if ((st = load_inputs(L, root)) != HL_OK)
        return st;

    v = cJSON_GetObjectItemCaseSensitive(root, "max_tokens");
    t->max_tokens = 512;
    if (v) {
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) ||
            v->valuedouble < 8 || v->valuedouble > 1048576)
            return bad(L, "max_tokens", "expected an integer in 8..1048576");
        t->max_tokens = (int32_t)v->valuedouble;
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "truncate");
    if (v) {
        if (!cJSON_IsString(v) || (t->truncate_field = task_field_index(t, v->valuestring)) < 0)
            return bad(L, "truncate", "expected the name of a declared field");
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "trim");
    if (v) {
        if (!cJSON_IsBool(v))
            return bad(L, "trim", "expected true or false");
        t->trim = cJSON_IsTrue(v);
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (v) {
        if (!cJSON_IsString(v) || !v->valuestring[0])
            return bad(L, "data", "expected a folder path relative to this file");
        if ((t->data_dir = join_relative(L->path, v->valuestring)) == NULL)
            return hl_err_set(L->err, HL_ERR_NOMEM, "out of memory");
    }
    return HL_OK;
}

hl_status task_load_file(task *t, const char *path, hl_err *err)
{
    task_init(t);
    cJSON *root;
    hl_status st = json_read_file(path, TASK_FILE_MAX, &root, err);
    if (st != HL_OK)
        return st;
    loader L = {.t = t, .path = path, .err = err};
    if ((t->path = dup_str(path)) == NULL)
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    else
        st = load_root(&L, root);
    cJSON_Delete(root);
    if (st != HL_OK)
        task_free(t);
    return st;
}

/* ---------------------------------------------------------------------------
 * finding built-ins
 * ------------------------------------------------------------------------- */

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static bool dir_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Comma-separated sorted names of dir/tasks/ *.json. */
static void list_names(char *out, size_t cap, const char *dir)
{
    out[0] = '\0';
    char tdir[PATH_MAX];
    if ((size_t)snprintf(tdir, sizeof tdir, "%s/tasks", dir) >= sizeof tdir)
        return;
    DIR *d = opendir(tdir);
    if (!d)
        return;
    enum { MAXN = 256 };
    char *names[MAXN];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < MAXN) {
        size_t l = strlen(e->d_name);
        if (l > 5 && strcmp(e->d_name + l - 5, ".json") == 0 && e->d_name[0] != '.')
            if ((names[n] = dup_mem(e->d_name, l - 5)) != NULL)
                n++;
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        if (at < cap) {
            int w = snprintf(out + at, cap - at, "%s%s", i ? ", " : "", names[i]);
            at += w > 0 ? (size_t)w : 0;
        }
        free(names[i]);
    }
}

hl_status task_find_in(task *t, const char *name, const char *const *dirs, int32_t n_dirs,
                       hl_err *err)
{
    task_init(t);
    size_t n = strlen(name);
    if (strchr(name, '/') || (n > 5 && strcmp(name + n - 5, ".json") == 0))
        return task_load_file(t, name, err);
    if (!valid_name(name, TASK_NAME_MAX, true))
        return hl_err_set(err, HL_ERR_INVALID,
                          "task \"%.64s\": not a built-in name (a-z, 0-9, _ - .) nor a "
                          "FILE.json",
                          name);
    const char *first_dir = NULL;
    for (int32_t i = 0; i < n_dirs; i++) {
        if (!dirs[i] || !dirs[i][0])
            continue;
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/tasks/%s.json", dirs[i], name) >=
            sizeof path)
            continue;
        if (file_exists(path))
            return task_load_file(t, path, err);
        char tdir[PATH_MAX];
        snprintf(tdir, sizeof tdir, "%s/tasks", dirs[i]);
        if (!first_dir && dir_exists(tdir))
            first_dir = dirs[i];
    }
    char names[600];
    names[0] = '\0';
    if (first_dir)
        list_names(names, sizeof names, first_dir);
    if (!names[0])
        return hl_err_set(err, HL_ERR_IO,
                          "task \"%s\": no built-in task folder found (looked in "
                          "$HELENE_DATA_DIR, %s, %s); give a FILE.json",
                          name, HELENE_SRCDATADIR, HELENE_DATADIR);
    return hl_err_set(err, HL_ERR_INVALID,
                      "unknown task \"%s\" (built-ins: %s; or give a FILE.json)", name, names);
}

static int default_dirs(const char *dirs[3])
{
    int n = 0;
    const char *env = getenv("HELENE_DATA_DIR");
    if (env && env[0])
        dirs[n++] = env;
    dirs[n++] = HELENE_SRCDATADIR;
    dirs[n++] = HELENE_DATADIR;
    return n;
}

hl_status task_find(task *t, const char *name, hl_err *err)
{
    const char *dirs[3];
    int n = default_dirs(dirs);
    return task_find_in(t, name, dirs, n, err);
}

hl_status task_list_builtin(char *out, size_t cap, hl_err *err)
{
    if (cap == 0)
        return hl_err_set(err, HL_ERR_INVALID, "task_list_builtin: empty buffer");
    const char *dirs[3];
    int n = default_dirs(dirs);
    for (int i = 0; i < n; i++) {
        list_names(out, cap, dirs[i]);
        if (out[0])
            return HL_OK;
    }
    return hl_err_set(err, HL_ERR_IO, "no built-in task folder found");
}

/* ---------------------------------------------------------------------------
 * rendering
 * ------------------------------------------------------------------------- */

/* Render with the given left cuts.  Returns false when cap is too small. */
static bool render_once(char *out, size_t cap, size_t *len, int64_t *mask_at,
                        const task_template *tp, const task_example *ex, const uint32_t *cut)
{
    size_t at = 0;
    *mask_at = -1;
    for (int32_t s = 0; s < tp->n_seg; s++) {
        const task_segment *sg = &tp->seg[s];
        const char *src = NULL;
        size_t n = 0;
        switch (sg->kind) {
        case TASK_SEG_TEXT:
            src = sg->text, n = sg->len;
            break;
        case TASK_SEG_BOS:
            src = "<s>", n = 3;
            break;
        case TASK_SEG_EOS:
            src = "</s>", n = 4;
            break;
        case TASK_SEG_MASK:
            *mask_at = (int64_t)at;
            src = "<mask>", n = 6;
            break;
        default: {
            uint32_t c = cut[sg->field];
            uint32_t fl = ex->len[sg->field];
            src = ex->text[sg->field] + (c < fl ? c : fl);
            n = c < fl ? fl - c : 0;
            if (sg->strip_punct && n > 0 &&
                (src[n - 1] == '.' || src[n - 1] == '?' || src[n - 1] == '!'))
                n--;
            break;
        }
        }
        if (n >= cap - at)
            return false;
        memcpy(out + at, src, n);
        if (sg->kind == TASK_SEG_FIELD && n > 0) {
            char *first = out + at;
            if (sg->fcase == TASK_CASE_UPPER_FIRST && is_lower(*first))
                *first = (char)(*first - 'a' + 'A');
            else if (sg->fcase == TASK_CASE_LOWER_FIRST && is_upper(*first))
                *first = (char)(*first - 'A' + 'a');
        }
        at += n;
    }
    out[at] = '\0';
    *len = at;
    return true;
}

/* Smallest cut >= p that starts a word (or a code point, when no word start
 * is near), so truncation does not leave half words or broken UTF-8. */
static uint32_t snap_cut(const char *s, uint32_t len, uint32_t p)
{
    if (p >= len)
        return len;
    if (p > 0 && is_space(s[p - 1]) && !is_space(s[p]))
        return p;
    uint32_t lim = len - p > 64 ? p + 64 : len;
    for (uint32_t q = p + 1; q < lim; q++)
        if (is_space(s[q - 1]) && !is_space(s[q]))
            return q;
    while (p < len && ((unsigned char)s[p] & 0xC0) == 0x80)
        p++;
    while (p < len && is_space(s[p]))
        p++;
    return p;
}

typedef struct fitter {
    char *out;
    size_t cap;
    task_prompt *info;
    const task_template *tp;
    const task_example *ex;
    const task_fit *fit;
    hl_err *err;
} fitter;

/* Render with info->cut and count tokens into info->tokens. */
static hl_status fit_measure(fitter *F)
{
    if (!render_once(F->out, F->cap, &F->info->len, &F->info->mask_at, F->tp, F->ex,
                     F->info->cut))
        return hl_err_set(F->err, HL_ERR_INVALID,
                          "prompt buffer of %zu bytes too small (see task_prompt_max_bytes)",
                          F->cap);
    int64_t n = F->fit->len_fn(F->fit->ctx, F->out, F->info->len);
    if (n < 0)
        return hl_err_set(F->err, HL_ERR_FORMAT, "token-length callback failed (%lld)",
                          (long long)n);
    F->info->tokens = n;
    return HL_OK;
}

hl_status task_render_prompt(char *out, size_t cap, task_prompt *info, const task *t,
                             task_model kind, const task_example *ex, const task_fit *fit,
                             hl_err *err)
{
    memset(info, 0, sizeof *info);
    info->tokens = -1;
    info->mask_at = -1;
    if (!task_supports(t, kind))
        return hl_err_set(err, HL_ERR_INVALID, "task %s has no %s template", t->name,
                          kind == TASK_MODEL_MASKED ? "masked-LM" : "causal-LM");
    if (!out || cap == 0)
        return hl_err_set(err, HL_ERR_INVALID, "no prompt buffer");
    const task_template *tp = template_of(t, kind);
    if (!fit) {
        if (!render_once(out, cap, &info->len, &info->mask_at, tp, ex, info->cut))
            return hl_err_set(err, HL_ERR_INVALID,
                              "prompt buffer of %zu bytes too small (see task_prompt_max_bytes)",
                              cap);
        return HL_OK;
    }
    if (!fit->len_fn)
        return hl_err_set(err, HL_ERR_INVALID, "task_fit without a length callback");
    fitter F = {.out = out, .cap = cap, .info = info, .tp = tp, .ex = ex, .fit = fit,
                .err = err};
    hl_status st = fit_measure(&F);
    if (st != HL_OK)
        return st;
    while (info->tokens > fit->budget) {
        /* the field to cut: the task's choice while it has text, else the longest */
        int32_t f = -1, tf = t->truncate_field;
        if (tf >= 0 && tp->uses[tf] > 0 && info->cut[tf] < ex->len[tf]) {
            f = tf;
        } else {
            uint32_t most = 0;
            for (int32_t g = 0; g < t->n_fields; g++)
                if (tp->uses[g] > 0 && ex->len[g] - info->cut[g] > most)
                    most = ex->len[g] - info->cut[g], f = g;
        }
        if (f < 0) {
            return hl_err_set(err, HL_ERR_INVALID,
                              "task %s: the template alone needs %lld tokens, over the budget "
                              "of %lld",
                              t->name, (long long)info->tokens, (long long)fit->budget);
        }
        const char *s = ex->text[f];
        uint32_t L = ex->len[f];
        uint32_t lo = info->cut[f], hi = L;
        info->cut[f] = L;
        if ((st = fit_measure(&F)) != HL_OK)
            return st;
        if (info->tokens > fit->budget)
            continue; /* this field alone cannot make it fit: drop it, cut the next */
        /* invariant: cut snap(lo) does not fit, snap(hi) fits */
        while (hi - lo > 1) {
            uint32_t mid = lo + (hi - lo) / 2;
            info->cut[f] = snap_cut(s, L, mid);
            if ((st = fit_measure(&F)) != HL_OK)
                return st;
            if (info->tokens <= fit->budget)
                hi = mid;
            else
                lo = mid;
        }
        info->cut[f] = snap_cut(s, L, hi);
        if ((st = fit_measure(&F)) != HL_OK)
            return st;
    }
    return HL_OK;
}

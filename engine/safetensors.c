/* safetensors.c - see safetensors.h.
 *
 * Order of business when opening: size checks on the raw bytes, then the
 * header is copied, checked for NUL bytes and UTF-8, parsed with cJSON, and
 * every entry is validated; only then are offsets sorted and checked to tile
 * the data buffer exactly.  Nothing is read from the data buffer at open time.
 * Leaves out: lazy/partial header parsing and any repair of broken files.
 *
 * Size (~1,500 lines, issue 19): one file format, hostile-input validation
 * first (about half the file), then dtype conversion, the writer and the
 * sharded-folder index; they share the validated header types.  The index
 * reader (model.safetensors.index.json) is the natural next file.
 */
#include "safetensors.h"

#include <cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host (safetensors data is little-endian)"
#endif

/* Largest integer a JSON number (a double in cJSON) holds exactly. */
#define ST_JSON_INT_MAX 9007199254740992.0 /* 2^53 */

/* ===================================================================== dtypes */

static const struct {
    const char *name;
    size_t size;
} dtype_info[ST_DTYPE_COUNT] = {
    [ST_DTYPE_F64] = {"F64", 8}, [ST_DTYPE_F32] = {"F32", 4}, [ST_DTYPE_F16] = {"F16", 2},
    [ST_DTYPE_BF16] = {"BF16", 2}, [ST_DTYPE_I64] = {"I64", 8}, [ST_DTYPE_I32] = {"I32", 4},
    [ST_DTYPE_I16] = {"I16", 2}, [ST_DTYPE_I8] = {"I8", 1}, [ST_DTYPE_U8] = {"U8", 1},
    [ST_DTYPE_BOOL] = {"BOOL", 1},
};

size_t st_dtype_size(st_dtype dt)
{
    return (unsigned)dt < ST_DTYPE_COUNT ? dtype_info[dt].size : 0;
}

const char *st_dtype_name(st_dtype dt)
{
    return (unsigned)dt < ST_DTYPE_COUNT ? dtype_info[dt].name : "?";
}

int st_dtype_from_name(const char *s)
{
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(s, dtype_info[i].name) == 0)
            return i;
    return -1;
}

static bool dtype_is_float(st_dtype dt)
{
    return dt == ST_DTYPE_F64 || dt == ST_DTYPE_F32 || dt == ST_DTYPE_F16 || dt == ST_DTYPE_BF16;
}

/* ======================================================= scalar conversions */

static inline uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float f32_from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Branch-free so the bulk loop can be vectorised: compute the normal result,
 * then patch inf/NaN (exponent 31 -> 255) and zero/subnormal (mantissa *
 * 2^-24, exact as a float since the mantissa has 10 bits) with masks. */
static inline uint32_t f16_to_f32_bits(uint32_t h)
{
    uint32_t sign = (h & 0x8000u) << 16;
    uint32_t em = h & 0x7fffu;
    uint32_t normal = (em << 13) + 0x38000000u; /* rebias exponent 15 -> 127 */
    uint32_t infnan = -(uint32_t)(em >= 0x7c00u);
    uint32_t small = -(uint32_t)(em < 0x0400u);
    uint32_t sub = f32_bits((float)(int32_t)em * 0x1p-24f);
    uint32_t bits = normal + (infnan & 0x38000000u);
    bits = (bits & ~small) | (sub & small);
    return bits | sign;
}

float st_f16_to_f32(uint16_t h)
{
    return f32_from_bits(f16_to_f32_bits(h));
}

float st_bf16_to_f32(uint16_t h)
{
    return f32_from_bits((uint32_t)h << 16);
}

/* Pure integer rounding, so the result does not depend on the FPU's
 * flush-to-zero or rounding mode. */
uint16_t st_f32_to_f16(float f)
{
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: keep it quiet and keep the top payload bits */
        return sign | 0x7e00u | (uint16_t)((ax >> 13) & 0x3ffu);
    if (ax >= 0x477ff000u) /* >= 65520 rounds (ties to even) to infinity */
        return sign | 0x7c00u;
    if (ax >= 0x38800000u) { /* >= 2^-14: normal half */
        uint32_t r = ax - 0x38000000u;
        r += 0x0fffu + ((r >> 13) & 1u);
        return sign | (uint16_t)(r >> 13);
    }
    uint32_t e = ax >> 23;
    if (e < 102) /* below 2^-25: rounds to zero */
        return sign;
    /* value = m * 2^(e-150); in units of 2^-24 that is m >> (126 - e). */
    uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e; /* 14 .. 24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u)))
        q++; /* may carry into the smallest normal, which is the right encoding */
    return sign | (uint16_t)q;
}

uint16_t st_f32_to_bf16(float f)
{
    uint32_t x = f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x0040u); /* quiet NaN; never rounds to inf */
    x += 0x7fffu + ((x >> 16) & 1u);
    return (uint16_t)(x >> 16);
}

/* ================================================================== helpers */

static uint64_t read_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static bool mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (a != 0 && b > UINT64_MAX / a)
        return false;
    *out = a * b;
    return true;
}

/* Offset of the first byte that is not part of valid UTF-8 (no overlongs, no
 * surrogates, nothing past U+10FFFF), or n if the whole string is valid. */
static size_t utf8_check(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1fu, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0fu, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07u, min = 0x10000;
        } else {
            return i;
        }
        if (n - i < len)
            return i;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return i;
            cp = cp << 6 | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return i;
        i += len;
    }
    return n;
}

static char *str_dup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* "dir/name", malloc'd. */
static char *path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p)
        return NULL;
    memcpy(p, dir, a);
    size_t at = a;
    if (a > 0 && dir[a - 1] != '/')
        p[at++] = '/';
    memcpy(p + at, name, b + 1);
    return p;
}

/* Shape as "[2, 3]" for messages. */
static const char *shape_str(char *buf, size_t cap, int32_t ndim, const int64_t *shape)
{
    size_t at = 0;
    at += (size_t)snprintf(buf, cap, "[");
    for (int32_t d = 0; d < ndim && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, d ? ", %" PRId64 : "%" PRId64, shape[d]);
    if (at < cap)
        snprintf(buf + at, cap - at, "]");
    return buf;
}

/* A JSON number that is an integer in [0, 2^53]. */
static bool json_uint(const cJSON *v, uint64_t *out)
{
    if (!cJSON_IsNumber(v))
        return false;
    double d = v->valuedouble;
    if (!(d >= 0 && d <= ST_JSON_INT_MAX))
        return false;
    uint64_t u = (uint64_t)d;
    if ((double)u != d)
        return false;
    *out = u;
    return true;
}

/* Short description of a JSON value's type for messages. */
static const char *json_type(const cJSON *v)
{
    if (cJSON_IsString(v))
        return "a string";
    if (cJSON_IsNumber(v))
        return "a number";
    if (cJSON_IsArray(v))
        return "an array";
    if (cJSON_IsObject(v))
        return "an object";
    if (cJSON_IsBool(v))
        return "a boolean";
    if (cJSON_IsNull(v))
        return "null";
    return "invalid";
}

/* Names come from the file: replace control bytes in a finished message so a
 * hostile name cannot inject terminal escapes or fake lines into the UI. */
static hl_status msg_sanitize(hl_err *err, hl_status st)
{
    if (err && st != HL_OK)
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f)
                *p = '?';
    return st;
}

/* ============================================================ header parse */

typedef struct span {
    uint64_t begin, end;
    int32_t idx;
} span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return 0;
}

typedef struct name_idx {
    const char *name;
    int32_t idx;
} name_idx;

static int name_idx_cmp(const void *a, const void *b)
{
    const name_idx *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return (x->idx > y->idx) - (x->idx < y->idx);
}

static char *arena_put(char **at, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = *at;
    memcpy(d, s, n);
    *at += n;
    return d;
}

/* Validate one tensor entry and fill t (name already set). */
static hl_status parse_entry(const st_file *f, const cJSON *e, st_tensor *t, hl_err *err)
{
    const char *path = f->path, *name = t->name;
    if (!cJSON_IsObject(e))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: tensor '%s': entry is %s, not an object", path,
                          name, json_type(e));
    const cJSON *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const cJSON *k = e->child; k; k = k->next) {
        const cJSON **slot = strcmp(k->string, "dtype") == 0          ? &dtype
                             : strcmp(k->string, "shape") == 0        ? &shape
                             : strcmp(k->string, "data_offsets") == 0 ? &offs
                                                                      : NULL;
        if (!slot)
            continue; /* unknown keys are ignored, as the reference reader does */
        if (*slot)
            return hl_err_set(err, HL_ERR_FORMAT, "%s: tensor '%s': key '%s' appears twice", path,
                              name, k->string);
        *slot = k;
    }
    if (!dtype || !shape || !offs)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: tensor '%s': missing '%s'", path, name,
                          !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

    if (!cJSON_IsString(dtype))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: tensor '%s': dtype is %s, not a string", path,
                          name, json_type(dtype));
    int dt = st_dtype_from_name(dtype->valuestring);
    if (dt < 0)
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: tensor '%s' has dtype '%.40s', which is not supported "
                          "(known: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)",
                          path, name, dtype->valuestring);
    t->dtype = (st_dtype)dt;

    if (!cJSON_IsArray(shape))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: tensor '%s': shape is %s, not an array", path,
                          name, json_type(shape));
    int nd = cJSON_GetArraySize(shape);
    if (nd > ST_MAX_DIMS)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: tensor '%s' has %d dimensions (at most %d)",
                          path, name, nd, ST_MAX_DIMS);
    t->ndim = nd;
    uint64_t n_elems = 1;
    bool overflow = false;
    int d = 0;
    for (const cJSON *v = shape->child; v; v = v->next, d++) {
        uint64_t dim;
        if (!json_uint(v, &dim)) {
            if (cJSON_IsNumber(v))
                return hl_err_set(err, HL_ERR_FORMAT,
                                  "%s: tensor '%s': shape[%d] = %.17g is not an integer in "
                                  "[0, 2^53]",
                                  path, name, d, v->valuedouble);
            return hl_err_set(err, HL_ERR_FORMAT, "%s: tensor '%s': shape[%d] is %s, not an integer",
                              path, name, d, json_type(v));
        }
        t->shape[d] = (int64_t)dim;
        if (!mul_u64(n_elems, dim, &n_elems))
            overflow = true; /* keep scanning: a later 0 dim does not rescue this */
    }
    uint64_t nbytes = 0;
    char sbuf[256];
    if (overflow || !mul_u64(n_elems, st_dtype_size(t->dtype), &nbytes))
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: tensor '%s': shape %s of %s overflows 64-bit byte counts", path,
                          name, shape_str(sbuf, sizeof sbuf, t->ndim, t->shape),
                          st_dtype_name(t->dtype));
    t->n_elems = n_elems;
    t->nbytes = nbytes;

    uint64_t begin, end;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &begin) ||
        !json_uint(offs->child->next, &end))
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets must be two non-negative integers "
                          "[begin, end]",
                          path, name);
    if (begin > end)
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] end before begin",
                          path, name, begin, end);
    if (end > f->buffer_size)
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                          "] run past the %" PRIu64 "-byte data buffer",
                          path, name, begin, end, f->buffer_size);
    if (end - begin != nbytes)
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
                          " bytes but shape %s of %s needs %" PRIu64,
                          path, name, begin, end, end - begin,
                          shape_str(sbuf, sizeof sbuf, t->ndim, t->shape), st_dtype_name(t->dtype),
                          nbytes);
    t->offset = begin;
    t->data = f->buffer + begin;
    t->path = f->path;
    return HL_OK;
}

/* Tensors sorted by offset must tile [0, buffer_size) with no hole or overlap. */
static hl_status check_coverage(st_file *f, hl_err *err)
{
    const char *path = f->path;
    int32_t n = f->n_tensors;
    span *s = malloc((size_t)(n ? n : 1) * sizeof *s);
    if (!s)
        return hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", path);
    for (int32_t i = 0; i < n; i++)
        s[i] = (span){f->tensors[i].offset, f->tensors[i].offset + f->tensors[i].nbytes, i};
    qsort(s, (size_t)n, sizeof *s, span_cmp);
    uint64_t at = 0;
    hl_status st = HL_OK;
    for (int32_t i = 0; i < n && st == HL_OK; i++) {
        const char *name = f->tensors[s[i].idx].name;
        if (s[i].begin > at)
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: bytes [%" PRIu64 ", %" PRIu64 ") of the data buffer belong to no "
                            "tensor (hole before tensor '%s')",
                            path, at, s[i].begin, name);
        else if (s[i].begin < at)
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: tensor '%s' data_offsets [%" PRIu64 ", %" PRIu64
                            "] overlap tensor '%s'",
                            path, name, s[i].begin, s[i].end, f->tensors[s[i - 1].idx].name);
        at = s[i].end;
    }
    if (st == HL_OK && at != f->buffer_size)
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: %" PRIu64 " trailing bytes after the last tensor%s%s%s (the data "
                        "buffer is %" PRIu64 " bytes)",
                        path, f->buffer_size - at, n ? " '" : "",
                        n ? f->tensors[s[n - 1].idx].name : "", n ? "'" : "", f->buffer_size);
    free(s);
    return st;
}

static hl_status parse_metadata(st_file *f, const cJSON *meta, char **arena, hl_err *err)
{
    if (!cJSON_IsObject(meta))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: __metadata__ is %s, not an object", f->path,
                          json_type(meta));
    int n = cJSON_GetArraySize(meta);
    f->meta = malloc((size_t)(n ? 2 * n : 1) * sizeof *f->meta);
    if (!f->meta)
        return hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", f->path);
    for (const cJSON *kv = meta->child; kv; kv = kv->next) {
        if (!cJSON_IsString(kv))
            return hl_err_set(err, HL_ERR_FORMAT,
                              "%s: __metadata__ value for key '%s' is %s, not a string", f->path,
                              kv->string, json_type(kv));
        f->meta[2 * f->n_meta] = arena_put(arena, kv->string);
        f->meta[2 * f->n_meta + 1] = arena_put(arena, kv->valuestring);
        f->n_meta++;
    }
    /* Sort pairs by key with a small insertion sort: metadata is a handful of keys. */
    for (int32_t i = 1; i < f->n_meta; i++)
        for (int32_t j = i; j > 0 && strcmp(f->meta[2 * j - 2], f->meta[2 * j]) > 0; j--) {
            const char *k = f->meta[2 * j], *v = f->meta[2 * j + 1];
            f->meta[2 * j] = f->meta[2 * j - 2], f->meta[2 * j + 1] = f->meta[2 * j - 1];
            f->meta[2 * j - 2] = k, f->meta[2 * j - 1] = v;
        }
    for (int32_t i = 1; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i - 2], f->meta[2 * i]) == 0)
            return hl_err_set(err, HL_ERR_FORMAT, "%s: __metadata__ key '%s' appears twice",
                              f->path, f->meta[2 * i]);
    return HL_OK;
}

/* Sum of strlen + 1 over every key (and string value) the tables will keep. */
static size_t header_string_bytes(const cJSON *root)
{
    size_t total = 0;
    for (const cJSON *e = root->child; e; e = e->next) {
        total += strlen(e->string) + 1;
        if (strcmp(e->string, "__metadata__") == 0 && cJSON_IsObject(e))
            for (const cJSON *kv = e->child; kv; kv = kv->next)
                total += strlen(kv->string) + 1 +
                         (cJSON_IsString(kv) ? strlen(kv->valuestring) + 1 : 0);
    }
    return total;
}

static hl_status parse_header(st_file *f, hl_err *err)
{
    const char *path = f->path;
    size_t n = (size_t)f->header_len;
    const uint8_t *raw = f->map + 8;
    if (memchr(raw, 0, n))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: header contains a NUL byte at offset %zu", path,
                          (size_t)((const uint8_t *)memchr(raw, 0, n) - raw));
    size_t bad = utf8_check(raw, n);
    if (bad != n)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: header is not valid UTF-8 at byte %zu", path,
                          bad);
    /* cJSON gets a NUL-terminated private copy: it never reads the mapping. */
    char *text = malloc(n + 1);
    if (!text)
        return hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory for a %zu-byte header", path, n);
    memcpy(text, raw, n);
    text[n] = '\0';
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    hl_status st = HL_OK;
    if (!root) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: header is not valid JSON (error near byte %zu)",
                        path, end ? (size_t)(end - text) : (size_t)0);
        goto out;
    }
    for (const char *p = end; p < text + n; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: unexpected bytes after the header's JSON object at byte %zu",
                            path, (size_t)(p - text));
            goto out;
        }
    if (!cJSON_IsObject(root)) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: header is %s, not a JSON object", path,
                        json_type(root));
        goto out;
    }

    int n_entries = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)(n_entries ? n_entries : 1), sizeof *f->tensors);
    f->strings = malloc(header_string_bytes(root) + 1);
    if (!f->tensors || !f->strings) {
        st = hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory for %d header entries", path,
                        n_entries);
        goto out;
    }
    char *arena = f->strings;
    const cJSON *meta = NULL;
    for (const cJSON *e = root->child; e; e = e->next) {
        if (strcmp(e->string, "__metadata__") == 0) {
            if (meta) {
                st = hl_err_set(err, HL_ERR_FORMAT, "%s: __metadata__ appears twice", path);
                goto out;
            }
            meta = e;
            if ((st = parse_metadata(f, e, &arena, err)) != HL_OK)
                goto out;
            continue;
        }
        st_tensor *t = &f->tensors[f->n_tensors];
        t->name = arena_put(&arena, e->string);
        if ((st = parse_entry(f, e, t, err)) != HL_OK)
            goto out;
        f->n_tensors++;
    }

    /* Lookup table by name; adjacent equal names are duplicates (cJSON keeps them). */
    name_idx *ni = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *ni);
    f->by_name = malloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *f->by_name);
    if (!ni || !f->by_name) {
        free(ni);
        st = hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    for (int32_t i = 0; i < f->n_tensors; i++)
        ni[i] = (name_idx){f->tensors[i].name, i};
    qsort(ni, (size_t)f->n_tensors, sizeof *ni, name_idx_cmp);
    for (int32_t i = 0; i < f->n_tensors; i++) {
        if (i > 0 && strcmp(ni[i - 1].name, ni[i].name) == 0) {
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: tensor '%s' appears twice in the header",
                            path, ni[i].name);
            break;
        }
        f->by_name[i] = ni[i].idx;
    }
    free(ni);
    if (st == HL_OK)
        st = check_coverage(f, err);
out:
    cJSON_Delete(root);
    free(text);
    return st;
}

/* ================================================================ st_file */

void st_file_close(st_file *f)
{
    if (f->map)
        munmap((void *)f->map, f->map_size);
    free(f->path);
    free(f->tensors);
    free(f->by_name);
    free(f->meta);
    free(f->strings);
    memset(f, 0, sizeof *f);
}

hl_status st_file_open(st_file *f, const char *path, hl_err *err)
{
    memset(f, 0, sizeof *f);
    f->path = str_dup(path);
    if (!f->path)
        return hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", path);
    hl_status st = HL_OK;
    /* O_NONBLOCK: a FIFO under a model file's name must not hang the open
     * (it is then rejected as not regular); regular files ignore the flag. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        st = hl_err_set(err, HL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        st = hl_err_set(err, HL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        close(fd);
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        st = hl_err_set(err, HL_ERR_IO, "%s: not a regular file", path);
        close(fd);
        goto fail;
    }
    if (sb.st_size < 8) {
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: file is %lld bytes, too short for the 8-byte header length "
                        "(not a safetensors file?)",
                        path, (long long)sb.st_size);
        close(fd);
        goto fail;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        st = hl_err_set(err, HL_ERR_IO, "%s: file too large to map", path);
        close(fd);
        goto fail;
    }
    size_t size = (size_t)sb.st_size;
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (map == MAP_FAILED) {
        st = hl_err_set(err, HL_ERR_IO, "%s: cannot mmap: %s", path, strerror(map_errno));
        goto fail;
    }
    f->map = map;
    f->map_size = size;

    uint64_t hlen = read_le64(f->map);
    if (hlen > ST_HEADER_MAX) {
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: header length %" PRIu64 " exceeds the limit of %" PRIu64
                        " bytes (not a safetensors file?)",
                        path, hlen, ST_HEADER_MAX);
        goto fail;
    }
    if (hlen > (uint64_t)size - 8) {
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s: header length %" PRIu64 " runs past the end of the %zu-byte file "
                        "(truncated?)",
                        path, hlen, size);
        goto fail;
    }
    if (hlen == 0 || f->map[8] != '{') {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: header does not start with '{'", path);
        goto fail;
    }
    f->header_len = hlen;
    f->buffer = f->map + 8 + hlen;
    f->buffer_size = (uint64_t)size - 8 - hlen;
    if ((st = parse_header(f, err)) != HL_OK)
        goto fail;
    return HL_OK;
fail:
    st_file_close(f);
    return msg_sanitize(err, st);
}

static int find_cmp(const void *key, const void *elem, const st_file *f)
{
    return strcmp(key, f->tensors[*(const int32_t *)elem].name);
}

const st_tensor *st_file_find(const st_file *f, const char *name)
{
    int32_t lo = 0, hi = f->n_tensors;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int c = find_cmp(name, &f->by_name[mid], f);
        if (c == 0)
            return &f->tensors[f->by_name[mid]];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const char *st_file_meta(const st_file *f, const char *key)
{
    for (int32_t i = 0; i < f->n_meta; i++)
        if (strcmp(f->meta[2 * i], key) == 0)
            return f->meta[2 * i + 1];
    return NULL;
}

/* ============================================================ conversions */

/* Element loops over a fixed block length: at -O2 GCC only vectorises loops
 * that need no scalar epilogue, so the bulk goes through blocks of
 * CVT_BLOCK and the remainder through the same body one element at a time. */
#define CVT_BLOCK 32

static inline void f16_block(float *restrict out, const uint8_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, sizeof h);
        out[i] = f32_from_bits(f16_to_f32_bits(h));
    }
}

static inline void bf16_block(float *restrict out, const uint8_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, sizeof h);
        out[i] = f32_from_bits((uint32_t)h << 16);
    }
}

static inline void f64_block(float *restrict out, const uint8_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        double d;
        memcpy(&d, src + 8 * i, sizeof d);
        out[i] = (float)d;
    }
}

/* Convert n elements of a float dtype starting at src (any alignment). */
static void convert_run(float *restrict out, const uint8_t *restrict src, size_t n, st_dtype dt)
{
    size_t i = 0, nb = n / CVT_BLOCK * CVT_BLOCK;
    switch (dt) {
    case ST_DTYPE_F32:
        memcpy(out, src, n * sizeof *out);
        break;
    case ST_DTYPE_F16:
        for (; i < nb; i += CVT_BLOCK)
            f16_block(out + i, src + 2 * i, CVT_BLOCK);
        f16_block(out + i, src + 2 * i, n - i);
        break;
    case ST_DTYPE_BF16:
        for (; i < nb; i += CVT_BLOCK)
            bf16_block(out + i, src + 2 * i, CVT_BLOCK);
        bf16_block(out + i, src + 2 * i, n - i);
        break;
    case ST_DTYPE_F64:
        for (; i < nb; i += CVT_BLOCK)
            f64_block(out + i, src + 8 * i, CVT_BLOCK);
        f64_block(out + i, src + 8 * i, n - i);
        break;
    default:
        break; /* callers check dtype_is_float first */
    }
}

static hl_status check_convertible(const st_tensor *t, hl_err *err)
{
    if (!dtype_is_float(t->dtype))
        return hl_err_set(err, HL_ERR_INVALID,
                          "%s: tensor '%s' is %s; only F32, F16, BF16 and F64 convert to fp32",
                          t->path ? t->path : "?", t->name, st_dtype_name(t->dtype));
    if (t->n_elems > SIZE_MAX / sizeof(float))
        return hl_err_set(err, HL_ERR_INVALID, "%s: tensor '%s' too large for memory",
                          t->path ? t->path : "?", t->name);
    return HL_OK;
}

hl_status st_tensor_to_f32(const st_tensor *t, float *out, hl_err *err)
{
    hl_status st = check_convertible(t, err);
    if (st != HL_OK)
        return st;
    if (t->n_elems)
        convert_run(out, t->data, (size_t)t->n_elems, t->dtype);
    return HL_OK;
}

hl_status st_tensor_to_f32_transposed(const st_tensor *t, float *out, hl_err *err)
{
    hl_status st = check_convertible(t, err);
    if (st != HL_OK)
        return st;
    if (t->ndim != 2)
        return hl_err_set(err, HL_ERR_INVALID,
                          "%s: tensor '%s' has %d dimensions; transposing needs 2",
                          t->path ? t->path : "?", t->name, t->ndim);
    /* Tiles keep both the source rows and the destination rows in cache; a
     * tile row is one CVT_BLOCK, so it converts with the vectorised loop. */
    enum { TB = CVT_BLOCK };
    size_t R = (size_t)t->shape[0], C = (size_t)t->shape[1], es = st_dtype_size(t->dtype);
    const uint8_t *src = t->data;
    float tile[TB * TB];
    for (size_t r0 = 0; r0 < R; r0 += TB) {
        size_t rn = R - r0 < TB ? R - r0 : TB;
        for (size_t c0 = 0; c0 < C; c0 += TB) {
            size_t cn = C - c0 < TB ? C - c0 : TB;
            for (size_t r = 0; r < rn; r++)
                convert_run(tile + r * TB, src + ((r0 + r) * C + c0) * es, cn, t->dtype);
            for (size_t c = 0; c < cn; c++) {
                float *o = out + (c0 + c) * R + r0;
                for (size_t r = 0; r < rn; r++)
                    o[r] = tile[r * TB + c];
            }
        }
    }
    return HL_OK;
}

/* ================================================================= models */

static int entry_cmp(const void *a, const void *b)
{
    const st_model_entry *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c)
        return c;
    return (x->file > y->file) - (x->file < y->file);
}

void st_model_close(st_model *m)
{
    for (int32_t i = 0; i < m->n_files; i++)
        st_file_close(&m->files[i]);
    free(m->files);
    free(m->entries);
    free(m->dir);
    memset(m, 0, sizeof *m);
}

/* Fill m->entries from every open file and reject a name in two files. */
static hl_status model_index_tensors(st_model *m, const char *what, hl_err *err)
{
    int64_t total = 0;
    for (int32_t i = 0; i < m->n_files; i++)
        total += m->files[i].n_tensors;
    if (total > INT32_MAX)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: too many tensors", what);
    m->entries = malloc((size_t)(total ? total : 1) * sizeof *m->entries);
    if (!m->entries)
        return hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", what);
    for (int32_t i = 0; i < m->n_files; i++)
        for (int32_t j = 0; j < m->files[i].n_tensors; j++)
            m->entries[m->n_entries++] = (st_model_entry){m->files[i].tensors[j].name, i, j};
    qsort(m->entries, (size_t)m->n_entries, sizeof *m->entries, entry_cmp);
    for (int32_t i = 1; i < m->n_entries; i++)
        if (strcmp(m->entries[i - 1].name, m->entries[i].name) == 0)
            return hl_err_set(err, HL_ERR_FORMAT, "%s: tensor '%s' is in two shards: %s and %s",
                              what, m->entries[i].name, m->files[m->entries[i - 1].file].path,
                              m->files[m->entries[i].file].path);
    return HL_OK;
}

/* Read a whole (small) file into a NUL-terminated buffer. */
static hl_status read_small_file(const char *path, size_t limit, char **out, size_t *len,
                                 hl_err *err)
{
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return hl_err_set(err, HL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size > limit) {
        close(fd);
        return hl_err_set(err, HL_ERR_IO, "%s: not a regular file of at most %zu bytes", path,
                          limit);
    }
    size_t n = (size_t)sb.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", path);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : 0;
            close(fd);
            free(buf);
            return hl_err_set(err, HL_ERR_IO, "%s: read failed: %s", path,
                              e ? strerror(e) : "file shrank while reading");
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return HL_OK;
}

typedef struct map_pair {
    const char *tensor;
    const char *shard;
    int32_t file;
} map_pair;

static int pair_by_shard(const void *a, const void *b)
{
    return strcmp(((const map_pair *)a)->shard, ((const map_pair *)b)->shard);
}

static int pair_by_tensor(const void *a, const void *b)
{
    return strcmp(((const map_pair *)a)->tensor, ((const map_pair *)b)->tensor);
}

static const st_model_entry *model_lookup(const st_model *m, const char *name)
{
    int32_t lo = 0, hi = m->n_entries;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, m->entries[mid].name);
        if (c == 0)
            return &m->entries[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

static hl_status model_open_index(st_model *m, const char *ipath, hl_err *err)
{
    char *text = NULL;
    size_t len = 0;
    hl_status st = read_small_file(ipath, (size_t)ST_HEADER_MAX, &text, &len, err);
    if (st != HL_OK)
        return st;
    cJSON *root = NULL;
    map_pair *pairs = NULL;
    size_t bad = utf8_check((const uint8_t *)text, len);
    if (bad != len || memchr(text, 0, len)) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: not valid UTF-8 text", ipath);
        goto out;
    }
    const char *end = NULL;
    root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    if (!root) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: not valid JSON (error near byte %zu)", ipath,
                        end ? (size_t)(end - text) : (size_t)0);
        goto out;
    }
    for (const char *p = end; p < text + len; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r') {
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: unexpected bytes after the JSON object",
                            ipath);
            goto out;
        }
    const cJSON *wm = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map")
                                           : NULL;
    if (!cJSON_IsObject(wm)) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: no \"weight_map\" object", ipath);
        goto out;
    }
    int n = cJSON_GetArraySize(wm);
    pairs = malloc((size_t)(n ? n : 1) * sizeof *pairs);
    if (!pairs) {
        st = hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", ipath);
        goto out;
    }
    int np = 0;
    for (const cJSON *e = wm->child; e; e = e->next) {
        if (!cJSON_IsString(e)) {
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: weight_map entry for tensor '%s' is %s, not a file name", ipath,
                            e->string, json_type(e));
            goto out;
        }
        const char *s = e->valuestring;
        if (!*s || strchr(s, '/') || strcmp(s, ".") == 0 || strcmp(s, "..") == 0) {
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: tensor '%s' maps to shard '%s', which is not a plain file name "
                            "in the model folder",
                            ipath, e->string, s);
            goto out;
        }
        pairs[np++] = (map_pair){e->string, s, -1};
    }

    /* One st_file per distinct shard name. */
    qsort(pairs, (size_t)np, sizeof *pairs, pair_by_shard);
    int n_shards = 0;
    for (int i = 0; i < np; i++)
        if (i == 0 || strcmp(pairs[i - 1].shard, pairs[i].shard) != 0)
            n_shards++;
    m->files = calloc((size_t)(n_shards ? n_shards : 1), sizeof *m->files);
    if (!m->files) {
        st = hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", ipath);
        goto out;
    }
    for (int i = 0; i < np; i++) {
        if (i == 0 || strcmp(pairs[i - 1].shard, pairs[i].shard) != 0) {
            char *sp = path_join(m->dir, pairs[i].shard);
            if (!sp) {
                st = hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", ipath);
                goto out;
            }
            st = st_file_open(&m->files[m->n_files], sp, err);
            free(sp);
            if (st != HL_OK) {
                hl_err_prefix(err, "%s: shard '%s'", ipath, pairs[i].shard);
                goto out;
            }
            m->n_files++;
        }
        pairs[i].file = m->n_files - 1;
    }
    if ((st = model_index_tensors(m, ipath, err)) != HL_OK)
        goto out;

    /* The map and the shards must agree both ways. */
    qsort(pairs, (size_t)np, sizeof *pairs, pair_by_tensor);
    for (int i = 0; i < np; i++) {
        if (i > 0 && strcmp(pairs[i - 1].tensor, pairs[i].tensor) == 0) {
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: tensor '%s' is listed twice in weight_map",
                            ipath, pairs[i].tensor);
            goto out;
        }
        const st_model_entry *me = model_lookup(m, pairs[i].tensor);
        if (!me) {
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: weight_map puts tensor '%s' in %s, which does not contain it",
                            ipath, pairs[i].tensor, m->files[pairs[i].file].path);
            goto out;
        }
        if (me->file != pairs[i].file) {
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: weight_map puts tensor '%s' in %s, but it is in %s", ipath,
                            pairs[i].tensor, m->files[pairs[i].file].path, m->files[me->file].path);
            goto out;
        }
    }
    if (m->n_entries != np) { /* every pair matched a distinct entry, so some entry is unlisted */
        for (int32_t i = 0; i < m->n_entries; i++) {
            map_pair key = {m->entries[i].name, NULL, 0};
            if (!bsearch(&key, pairs, (size_t)np, sizeof *pairs, pair_by_tensor)) {
                st = hl_err_set(err, HL_ERR_FORMAT,
                                "%s: tensor '%s' in %s is not listed in weight_map", ipath,
                                m->entries[i].name, m->files[m->entries[i].file].path);
                goto out;
            }
        }
    }
out:
    free(pairs);
    cJSON_Delete(root);
    free(text);
    return st;
}

/* 1 if path exists, 0 if it does not, -1 (err filled) if stat failed otherwise. */
static int path_exists(const char *path, hl_err *err)
{
    struct stat sb;
    if (stat(path, &sb) == 0)
        return 1;
    if (errno == ENOENT || errno == ENOTDIR)
        return 0;
    hl_err_set(err, HL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    return -1;
}

hl_status st_model_open(st_model *m, const char *dir, hl_err *err)
{
    memset(m, 0, sizeof *m);
    struct stat sb;
    if (stat(dir, &sb) != 0)
        return hl_err_set(err, HL_ERR_IO, "%s: cannot open model folder: %s", dir,
                          strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return hl_err_set(err, HL_ERR_IO, "%s: not a folder", dir);
    m->dir = str_dup(dir);
    char *single = path_join(dir, "model.safetensors");
    char *index = path_join(dir, "model.safetensors.index.json");
    char *pickle = path_join(dir, "pytorch_model.bin");
    char *pickle_index = path_join(dir, "pytorch_model.bin.index.json");
    hl_status st = HL_OK;
    int have;
    if (!m->dir || !single || !index || !pickle || !pickle_index) {
        st = hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", dir);
    } else if ((have = path_exists(single, err)) != 0) {
        if (have < 0) {
            st = HL_ERR_IO;
        } else if (!(m->files = calloc(1, sizeof *m->files))) {
            st = hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", dir);
        } else if ((st = st_file_open(&m->files[0], single, err)) == HL_OK) {
            m->n_files = 1;
            st = model_index_tensors(m, single, err);
        }
    } else if ((have = path_exists(index, err)) != 0) {
        st = have < 0 ? HL_ERR_IO : model_open_index(m, index, err);
    } else if (path_exists(pickle, NULL) > 0 || path_exists(pickle_index, NULL) > 0) {
        st = hl_err_set(err, HL_ERR_INVALID,
                        "%s: only a pickle checkpoint (pytorch_model.bin) is here; pickle files "
                        "can run code and are never loaded. Convert it once with Python: "
                        "`import torch; from safetensors.torch import save_file; "
                        "save_file(torch.load('pytorch_model.bin'), 'model.safetensors')` "
                        "(shared tensors may need .clone()), or in transformers: "
                        "`model.save_pretrained(dir, safe_serialization=True)`",
                        dir);
    } else {
        st = hl_err_set(err, HL_ERR_IO,
                        "%s: no model.safetensors or model.safetensors.index.json in this folder",
                        dir);
    }
    free(single);
    free(index);
    free(pickle);
    free(pickle_index);
    if (st != HL_OK)
        st_model_close(m);
    return msg_sanitize(err, st);
}

const st_tensor *st_model_find(const st_model *m, const char *name)
{
    const st_model_entry *e = model_lookup(m, name);
    return e ? &m->files[e->file].tensors[e->tensor] : NULL;
}

const st_tensor *st_model_tensor(const st_model *m, int32_t i)
{
    const st_model_entry *e = &m->entries[i];
    return &m->files[e->file].tensors[e->tensor];
}

/* ================================================================= writer */

typedef struct strbuf {
    char *s;
    size_t len, cap;
    bool nomem;
} strbuf;

static void sb_put(strbuf *b, const char *s, size_t n)
{
    if (b->nomem)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->nomem = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void sb_str(strbuf *b, const char *s)
{
    sb_put(b, s, strlen(s));
}

static void sb_u64(strbuf *b, uint64_t v)
{
    char tmp[24];
    int n = snprintf(tmp, sizeof tmp, "%" PRIu64, v);
    sb_put(b, tmp, (size_t)n);
}

/* A JSON string literal; the input is valid UTF-8 (checked by the caller). */
static void sb_json_str(strbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sb_put(b, esc, 2);
        } else if (c < 0x20) {
            char esc[8];
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_put(b, esc, 6);
        } else {
            sb_put(b, p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static bool valid_text(const char *s)
{
    size_t n = strlen(s);
    return utf8_check((const uint8_t *)s, n) == n;
}

static int cstr_cmp(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Check the arguments and compute each tensor's byte size. */
static hl_status write_validate(const char *path, const st_write_tensor *tensors, int n,
                                const char *const *meta_kv, int n_meta, uint64_t *sizes,
                                hl_err *err)
{
    for (int i = 0; i < n; i++) {
        const st_write_tensor *t = &tensors[i];
        const char *name = t->name ? t->name : "(null)";
        if (!t->name || !*t->name || !valid_text(t->name) || strcmp(t->name, "__metadata__") == 0)
            return hl_err_set(err, HL_ERR_INVALID, "%s: tensor %d has an invalid name '%s'", path,
                              i, name);
        if ((unsigned)t->dtype >= ST_DTYPE_COUNT)
            return hl_err_set(err, HL_ERR_INVALID, "%s: tensor '%s': invalid dtype %d", path,
                              name, (int)t->dtype);
        if (t->src != ST_SRC_RAW &&
            !((t->src == ST_SRC_F32 || (t->src == ST_SRC_F32_T && t->ndim == 2)) &&
              dtype_is_float(t->dtype)))
            return hl_err_set(err, HL_ERR_INVALID,
                              "%s: tensor '%s': cannot write %s from this source type", path,
                              name, st_dtype_name(t->dtype));
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS || (t->ndim > 0 && !t->shape))
            return hl_err_set(err, HL_ERR_INVALID, "%s: tensor '%s': bad ndim %d", path, name,
                              (int)t->ndim);
        uint64_t ne = 1, nb;
        for (int32_t d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0 || !mul_u64(ne, (uint64_t)t->shape[d], &ne))
                return hl_err_set(err, HL_ERR_INVALID, "%s: tensor '%s': bad shape", path, name);
        if (!mul_u64(ne, st_dtype_size(t->dtype), &nb) || ne > SIZE_MAX / sizeof(float))
            return hl_err_set(err, HL_ERR_INVALID, "%s: tensor '%s': too large", path, name);
        if (nb && !t->data)
            return hl_err_set(err, HL_ERR_INVALID, "%s: tensor '%s': no data", path, name);
        sizes[i] = nb;
    }
    for (int i = 0; i < 2 * n_meta; i++)
        if (!meta_kv[i] || !valid_text(meta_kv[i]))
            return hl_err_set(err, HL_ERR_INVALID, "%s: metadata %s %d is missing or not UTF-8",
                              path, i % 2 ? "value" : "key", i / 2);

    /* Duplicates: sort copies of the name pointers. */
    int most = n > n_meta ? n : n_meta;
    const char **names = malloc((size_t)(most ? most : 1) * sizeof *names);
    if (!names)
        return hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", path);
    hl_status st = HL_OK;
    for (int pass = 0; pass < 2 && st == HL_OK; pass++) {
        int cnt = pass == 0 ? n : n_meta;
        for (int i = 0; i < cnt; i++)
            names[i] = pass == 0 ? tensors[i].name : meta_kv[2 * i];
        qsort(names, (size_t)cnt, sizeof *names, cstr_cmp);
        for (int i = 1; i < cnt; i++)
            if (strcmp(names[i - 1], names[i]) == 0) {
                st = hl_err_set(err, HL_ERR_INVALID, "%s: %s '%s' given twice", path,
                                pass == 0 ? "tensor" : "metadata key", names[i]);
                break;
            }
    }
    free(names);
    return st;
}

static bool write_all(int fd, const void *buf, size_t n)
{
    const uint8_t *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            if (w == 0)
                errno = EIO;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Write one tensor's bytes, converting from fp32 through buf if asked. */
static bool write_tensor_data(int fd, const st_write_tensor *t, uint64_t nbytes, uint8_t *buf,
                              size_t buf_size)
{
    if (nbytes == 0)
        return true;
    if (t->src == ST_SRC_RAW || (t->src == ST_SRC_F32 && t->dtype == ST_DTYPE_F32))
        return write_all(fd, t->data, (size_t)nbytes);
    const float *src = t->data;
    const bool trans = t->src == ST_SRC_F32_T;
    const size_t rows = trans ? (size_t)t->shape[0] : 0, cols = trans ? (size_t)t->shape[1] : 0;
    size_t es = st_dtype_size(t->dtype), n = (size_t)(nbytes / es), per = buf_size / es;
    for (size_t i = 0; i < n; i += per) {
        size_t cnt = n - i < per ? n - i : per;
        for (size_t j = 0; j < cnt; j++) {
            /* transposed: the file's element (r, c) is the source's (c, r) */
            size_t k = i + j, at = trans ? (k % cols) * rows + k / cols : k;
            float v;
            memcpy(&v, src + at, sizeof v);
            if (t->dtype == ST_DTYPE_F32) {
                memcpy(buf + 4 * j, &v, 4);
            } else if (t->dtype == ST_DTYPE_F64) {
                double d = v;
                memcpy(buf + 8 * j, &d, 8);
            } else {
                uint16_t h = t->dtype == ST_DTYPE_F16 ? st_f32_to_f16(v) : st_f32_to_bf16(v);
                memcpy(buf + 2 * j, &h, 2);
            }
        }
        if (!write_all(fd, buf, cnt * es))
            return false;
    }
    return true;
}

/* The directory holding path ("." for a bare name), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return str_dup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = '\0';
    }
    return d;
}

hl_status st_write(const char *path, const st_write_tensor *tensors, int n,
                   const char *const *meta_kv, int n_meta, hl_err *err)
{
    if (n < 0 || n_meta < 0 || (n > 0 && !tensors) || (n_meta > 0 && !meta_kv))
        return hl_err_set(err, HL_ERR_INVALID, "%s: bad tensor or metadata count", path);
    uint64_t *sizes = malloc((size_t)(n ? n : 1) * sizeof *sizes);
    if (!sizes)
        return hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", path);
    strbuf hb = {0};
    char *tmp = NULL, *dir = NULL;
    uint8_t *cbuf = NULL;
    int fd = -1;
    hl_status st = write_validate(path, tensors, n, meta_kv, n_meta, sizes, err);
    if (st != HL_OK)
        goto out;

    /* Header: __metadata__ first, then tensors in order with contiguous offsets. */
    sb_str(&hb, "{");
    if (n_meta > 0) {
        sb_str(&hb, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i)
                sb_str(&hb, ",");
            sb_json_str(&hb, meta_kv[2 * i]);
            sb_str(&hb, ":");
            sb_json_str(&hb, meta_kv[2 * i + 1]);
        }
        sb_str(&hb, "}");
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        const st_write_tensor *t = &tensors[i];
        if (i || n_meta > 0)
            sb_str(&hb, ",");
        sb_json_str(&hb, t->name);
        sb_str(&hb, ":{\"dtype\":\"");
        sb_str(&hb, st_dtype_name(t->dtype));
        sb_str(&hb, "\",\"shape\":[");
        for (int32_t d = 0; d < t->ndim; d++) {
            if (d)
                sb_str(&hb, ",");
            sb_u64(&hb, (uint64_t)t->shape[d]);
        }
        sb_str(&hb, "],\"data_offsets\":[");
        sb_u64(&hb, at);
        sb_str(&hb, ",");
        if (sizes[i] > UINT64_MAX - at) {
            st = hl_err_set(err, HL_ERR_INVALID, "%s: total size overflows", path);
            goto out;
        }
        at += sizes[i];
        sb_u64(&hb, at);
        sb_str(&hb, "]}");
    }
    sb_str(&hb, "}");
    while (!hb.nomem && hb.len % 8 != 0)
        sb_str(&hb, " ");
    if (hb.nomem) {
        st = hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory for the header", path);
        goto out;
    }
    if (hb.len > ST_HEADER_MAX) {
        st = hl_err_set(err, HL_ERR_INVALID, "%s: header of %zu bytes exceeds the limit", path,
                        hb.len);
        goto out;
    }

    enum { CBUF = 1 << 16 };
    size_t tlen = strlen(path) + 32;
    tmp = malloc(tlen);
    dir = dir_of(path);
    cbuf = malloc(CBUF);
    if (!tmp || !dir || !cbuf) {
        st = hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", path);
        goto out;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    unlink(tmp); /* a stale temp from a crashed run that had our pid */
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        st = hl_err_set(err, HL_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        free(tmp); /* nothing to remove */
        tmp = NULL;
        goto out;
    }
    uint8_t len8[8];
    for (int i = 0; i < 8; i++)
        len8[i] = (uint8_t)((uint64_t)hb.len >> (8 * i));
    bool ok = write_all(fd, len8, 8) && write_all(fd, hb.s, hb.len);
    for (int i = 0; ok && i < n; i++)
        ok = write_tensor_data(fd, &tensors[i], sizes[i], cbuf, CBUF);
    if (!ok) {
        st = hl_err_set(err, HL_ERR_IO, "%s: writing %s failed: %s", path, tmp, strerror(errno));
        goto out;
    }
    if (fsync(fd) != 0) {
        st = hl_err_set(err, HL_ERR_IO, "%s: fsync of %s failed: %s", path, tmp, strerror(errno));
        goto out;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        st = hl_err_set(err, HL_ERR_IO, "%s: closing %s failed: %s", path, tmp, strerror(errno));
        goto out;
    }
    if (rename(tmp, path) != 0) {
        st = hl_err_set(err, HL_ERR_IO, "%s: cannot rename %s over it: %s", path, tmp,
                        strerror(errno));
        goto out;
    }
    free(tmp);
    tmp = NULL; /* renamed: nothing to clean up any more */
    /* Make the rename itself durable.  The new file is in place either way.
     * Some file systems cannot fsync a directory (EINVAL): nothing to do there. */
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || (fsync(dfd) != 0 && errno != EINVAL && errno != ENOTSUP))
        st = hl_err_set(err, HL_ERR_IO, "%s: written, but fsync of directory %s failed: %s",
                        path, dir, strerror(errno));
    if (dfd >= 0)
        close(dfd);
out:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        unlink(tmp);
        free(tmp);
    }
    free(dir);
    free(cbuf);
    free(hb.s);
    free(sizes);
    return st;
}

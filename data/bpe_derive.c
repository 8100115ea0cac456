/* bpe_derive.c - a byte-level BPE vocabulary from a merge list (bpe_derive.h). */
#include "bpe_derive.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "fileio.h"

void bpe_files_free(bpe_files *t)
{
    free(t->vocab);
    free(t->merges);
    memset(t, 0, sizeof *t);
}

/* Growable text buffer. */
typedef struct sbuf {
    char *s;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *p, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *ns = realloc(b->s, cap);
        if (!ns) {
            b->oom = true;
            return;
        }
        b->s = ns;
        b->cap = cap;
    }
    memcpy(b->s + b->n, p, n);
    b->n += n;
    b->s[b->n] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* A JSON string literal of UTF-8 text (byte-level tokens never hold
 * control characters, but escape them anyway). */
static void sb_json_string(sbuf *b, const char *s, size_t n)
{
    sb_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            sb_add(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            sb_add(b, esc, 6);
        } else {
            sb_add(b, (const char *)&c, 1);
        }
    }
    sb_add(b, "\"", 1);
}

static size_t utf8_put(char *out, int cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* Open-addressing set of token strings (FNV-1a), for merge results. */
typedef struct strset {
    const char **key;
    size_t *len;
    size_t cap;
} strset;

static uint64_t fnv(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* true if inserted, false if already present (the table never fills: it
 * is sized for every string the caller adds). */
static bool strset_add(strset *t, const char *s, size_t n)
{
    size_t i = (size_t)fnv(s, n) & (t->cap - 1);
    while (t->key[i]) {
        if (t->len[i] == n && !memcmp(t->key[i], s, n))
            return false;
        i = (i + 1) & (t->cap - 1);
    }
    t->key[i] = s;
    t->len[i] = n;
    return true;
}

hl_status bpe_derive(bpe_files *tf, const char *merges_path, int32_t max_merges,
                     const char *const *first, int n_first, const char *last, hl_err *err)
{
    size_t len;
    char *text;
    hl_status rst = file_read(merges_path, (size_t)1 << 28, &text, &len, err);
    if (rst)
        return rst;
    /* split into lines in place */
    size_t n_lines = 0, cap_lines = 1024;
    char **lines = malloc(cap_lines * sizeof *lines);
    for (char *p = text, *e; lines && p < text + len; p = e + 1) {
        e = memchr(p, '\n', (size_t)(text + len - p));
        if (!e)
            e = text + len;
        *e = '\0';
        size_t l = strlen(p);
        if (l && p[l - 1] == '\r')
            p[--l] = '\0';
        if (!l || (n_lines == 0 && p == text && !strncmp(p, "#version", 8)))
            continue;
        if (max_merges > 0 && (int64_t)n_lines >= max_merges)
            break;
        if (n_lines == cap_lines) {
            char **nl = realloc(lines, 2 * cap_lines * sizeof *lines);
            if (!nl) {
                free(lines);
                lines = NULL;
                break;
            }
            lines = nl;
            cap_lines *= 2;
        }
        lines[n_lines++] = p;
    }
    if (!lines) {
        free(text);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory reading %s", merges_path);
    }
    if (max_merges > 0 && (int64_t)n_lines < max_merges) {
        free(lines);
        free(text);
        return hl_err_set(err, HL_ERR_INVALID, "%s has %zu merges, fewer than --max-merges %d",
                          merges_path, n_lines, max_merges);
    }
    sbuf v = {0}, mg = {0};
    strset set = {0};
    set.cap = 1;
    while (set.cap < 2 * (n_lines + 300 + (size_t)n_first))
        set.cap *= 2;
    set.key = calloc(set.cap, sizeof *set.key);
    set.len = calloc(set.cap, sizeof *set.len);
    /* merged token strings live in one arena so the set can point at them */
    char *arena = malloc(len + 1);
    char bytes[256][2];
    size_t blen[256];
    hl_status st = HL_OK;
    if (!set.key || !set.len || !arena) {
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory deriving the vocabulary");
        goto done;
    }
    int32_t id = 0;
    char num[32];
    sb_str(&v, "{");
    for (int k = 0; k < n_first; k++) {
        sb_json_string(&v, first[k], strlen(first[k]));
        snprintf(num, sizeof num, ": %d, ", id++);
        sb_str(&v, num);
        strset_add(&set, first[k], strlen(first[k]));
    }
    for (int b = 0; b < 256; b++) {
        blen[b] = utf8_put(bytes[b], bpe_byte_codepoint(b));
        strset_add(&set, bytes[b], blen[b]);
        sb_json_string(&v, bytes[b], blen[b]);
        snprintf(num, sizeof num, ": %d, ", id++);
        sb_str(&v, num);
    }
    sb_str(&mg, "#version: 0.2\n");
    size_t at = 0;
    for (size_t i = 0; i < n_lines; i++) {
        const char *sp = strchr(lines[i], ' ');
        if (!sp || strchr(sp + 1, ' ') || sp == lines[i] || !sp[1]) {
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: merge %zu is not two parts: '%.60s'",
                            merges_path, i + 1, lines[i]);
            goto done;
        }
        size_t la = (size_t)(sp - lines[i]), lb = strlen(sp + 1);
        memcpy(arena + at, lines[i], la);
        memcpy(arena + at + la, sp + 1, lb);
        if (strset_add(&set, arena + at, la + lb)) {
            sb_json_string(&v, arena + at, la + lb);
            snprintf(num, sizeof num, ": %d, ", id++);
            sb_str(&v, num);
        }
        at += la + lb;
        sb_str(&mg, lines[i]);
        sb_str(&mg, "\n");
    }
    if (last) {
        sb_json_string(&v, last, strlen(last));
        snprintf(num, sizeof num, ": %d", id++);
        sb_str(&v, num);
    } else {
        v.n -= 2; /* the last ", " */
    }
    sb_str(&v, "}\n");
    if (v.oom || mg.oom) {
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory deriving the vocabulary");
        goto done;
    }
    tf->vocab = v.s;
    tf->vocab_len = v.n;
    tf->merges = mg.s;
    tf->merges_len = mg.n;
    v.s = mg.s = NULL;
done:
    free(v.s);
    free(mg.s);
    free(set.key);
    free(set.len);
    free(arena);
    free(lines);
    free(text);
    return st;
}


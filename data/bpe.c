/* bpe.c - GPT-2 byte-level BPE: loading vocab.json/merges.txt, the
 * pre-tokenizer, merges by rank, decoding.  See bpe.h for the contract.
 *
 * Data structures: every token is stored as its raw bytes (the byte-level
 * alphabet undone), so encoding works on bytes and never converts to the
 * "Ġ"-style strings.  Two open-addressing hash tables: token bytes -> id and
 * (left id, right id) -> (rank, merged id).  A pre-token is merged with a
 * linked list of symbols and a min-heap of candidate pairs keyed by
 * (rank, position), O(n log n) per piece, so long runs without spaces stay
 * cheap.  A small word cache lives for one bpe_encode call (long texts repeat
 * words); deliberately none is shared between calls: that would need a lock.
 */
#include "bpe.h"

#include <cJSON.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"
#include "unicode_classes.h"

#define BPE_NO_TOKEN UINT32_MAX
#define BPE_EMPTY_PAIR UINT64_MAX
#define BPE_MAX_FILE (1u << 30)  /* 1 GiB: far above any real vocab or merges file */
#define BPE_BAD_CP UINT32_MAX    /* code point of one byte of invalid UTF-8 */
#define BPE_ALPHABET_CPS 324     /* byte-level alphabet code points are < 256 + 68 */

/* ---------------------------------------------------------------------------
 * Byte-level alphabet (GPT-2's bytes_to_unicode)
 *
 * Printable Latin-1 bytes stand for themselves; the other 68 bytes (controls,
 * space, 0x7F-0xA0, 0xAD) are mapped in byte order to U+0100, U+0101, ... so
 * every token is a printable string in vocab.json ("Ġ" = U+0120 = space).
 */

int bpe_byte_codepoint(int b)
{
    /* the 68 others, in byte order: 0x00-0x20 (33), 0x7F-0xA0 (34), 0xAD */
    if (b <= 0x20)
        return 256 + b;
    if (b >= 0x7F && b <= 0xA0)
        return 256 + 33 + (b - 0x7F);
    if (b == 0xAD)
        return 256 + 33 + 34;
    return b;
}

/* byte_of_cp[cp] = byte the alphabet code point cp stands for, or -1. */
static void alphabet_init(int16_t byte_of_cp[BPE_ALPHABET_CPS])
{
    for (int i = 0; i < BPE_ALPHABET_CPS; i++)
        byte_of_cp[i] = -1;
    for (int b = 0; b < 256; b++)
        byte_of_cp[bpe_byte_codepoint(b)] = (int16_t)b;
}

/* ---------------------------------------------------------------------------
 * UTF-8 and code point classes
 */

/* Decode the code point at s[i] (i < len).  Returns its length in bytes; an
 * invalid, overlong, surrogate or truncated sequence yields BPE_BAD_CP and
 * length 1, so every byte of bad input is its own "other" code point. */
static size_t utf8_decode(const unsigned char *s, size_t len, size_t i, uint32_t *cp)
{
    unsigned c = s[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0; /* no overlongs */
        else if (c == 0xED)
            hi = 0x9F; /* no surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F; /* <= U+10FFFF */
    } else {
        *cp = BPE_BAD_CP;
        return 1;
    }
    if (len - i < n || s[i + 1] < lo || s[i + 1] > hi) {
        *cp = BPE_BAD_CP;
        return 1;
    }
    for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xC0) != 0x80) {
            *cp = BPE_BAD_CP;
            return 1;
        }
        v = (v << 6) | (s[i + k] & 0x3F);
    }
    *cp = v;
    return n;
}

/* Class of the code point at s[i]; *n = its length.  ASCII is decided here
 * (the common case); the rest goes through the generated table. */
static unicode_class class_at(const unsigned char *s, size_t len, size_t i, size_t *n)
{
    unsigned c = s[i];
    if (c < 0x80) {
        *n = 1;
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
            return UNICODE_CLASS_LETTER;
        if (c >= '0' && c <= '9')
            return UNICODE_CLASS_NUMBER;
        if (c == ' ' || (c >= '\t' && c <= '\r'))
            return UNICODE_CLASS_SPACE;
        return UNICODE_CLASS_OTHER;
    }
    uint32_t cp;
    *n = utf8_decode(s, len, i, &cp);
    return cp == BPE_BAD_CP ? UNICODE_CLASS_OTHER : unicode_get_class(cp);
}

/* ---------------------------------------------------------------------------
 * Pre-tokenizer: GPT-2's regex, one alternative at a time
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Returns the end of the piece that starts at p (p < len).
 */
static size_t pretok_next(const unsigned char *s, size_t len, size_t p)
{
    if (s[p] == '\'' && p + 1 < len) {
        unsigned c1 = s[p + 1];
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
            return p + 2;
        if (p + 2 < len) {
            unsigned c2 = s[p + 2];
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                return p + 3;
        }
    }
    size_t n;
    unicode_class c = class_at(s, len, p, &n);
    size_t q = p;
    if (s[p] == ' ' && p + 1 < len) { /* " ?" then a letter, number or other run */
        unicode_class c1 = class_at(s, len, p + 1, &n);
        if (c1 != UNICODE_CLASS_SPACE) {
            c = c1;
            q = p + 1;
        }
    }
    if (c != UNICODE_CLASS_SPACE) {
        size_t e = q;
        while (e < len && class_at(s, len, e, &n) == c)
            e += n;
        return e;
    }
    /* \s+(?!\S): the whole run at the end of text, else the run without its
     * last code point (which then prefixes the next word); \s+ if that is
     * empty. */
    size_t e = p, last = p;
    while (e < len && class_at(s, len, e, &n) == UNICODE_CLASS_SPACE) {
        last = e;
        e += n;
    }
    return (e == len || last == p) ? e : last;
}

/* Llama 3's (max_digits 3) and Qwen2's (1) pre-tokenizer regex, one
 * alternative at a time, in the regex's order:
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,MAX}|
 *    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static size_t run_of(const unsigned char *s, size_t len, size_t e, unicode_class c)
{
    size_t n;
    while (e < len && class_at(s, len, e, &n) == c)
        e += n;
    return e;
}

static bool is_crlf(unsigned char c)
{
    return c == '\r' || c == '\n';
}

static size_t pretok_next_llama3(const unsigned char *s, size_t len, size_t p, int max_digits)
{
    if (s[p] == '\'' && p + 1 < len) { /* contractions, any case */
        unsigned c1 = s[p + 1] | 0x20;
        if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
            return p + 2;
        if (p + 2 < len) {
            unsigned c2 = s[p + 2] | 0x20;
            if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
                return p + 3;
        }
    }
    size_t n0, n1;
    unicode_class c0 = class_at(s, len, p, &n0);
    if (c0 == UNICODE_CLASS_LETTER) /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        return run_of(s, len, p, UNICODE_CLASS_LETTER);
    if (c0 != UNICODE_CLASS_NUMBER && !is_crlf(s[p]) && p + n0 < len &&
        class_at(s, len, p + n0, &n1) == UNICODE_CLASS_LETTER)
        return run_of(s, len, p + n0, UNICODE_CLASS_LETTER);
    if (c0 == UNICODE_CLASS_NUMBER) { /* \p{N}{1,max} */
        size_t e = p;
        for (int k = 0; k < max_digits && e < len &&
                        class_at(s, len, e, &n1) == UNICODE_CLASS_NUMBER;
             k++)
            e += n1;
        return e;
    }
    size_t q = p; /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    unicode_class c = c0;
    if (s[p] == ' ' && p + 1 < len && class_at(s, len, p + 1, &n1) == UNICODE_CLASS_OTHER) {
        q = p + 1;
        c = UNICODE_CLASS_OTHER;
    }
    if (c == UNICODE_CLASS_OTHER) {
        size_t e = run_of(s, len, q, UNICODE_CLASS_OTHER);
        while (e < len && is_crlf(s[e]))
            e++;
        return e;
    }
    /* whitespace: \s*[\r\n]+ ends after the run's last CR/LF */
    size_t e = p, last = p, crlf_end = 0;
    while (e < len && class_at(s, len, e, &n1) == UNICODE_CLASS_SPACE) {
        last = e;
        if (is_crlf(s[e]))
            crlf_end = e + 1;
        e += n1;
    }
    if (crlf_end)
        return crlf_end;
    return (e == len || last == p) ? e : last; /* \s+(?!\S), else \s+ */
}

static size_t pretok_split(const bpe *t, const unsigned char *s, size_t len, size_t p);

size_t bpe_pretok_end(const bpe *t, const char *text, size_t len, size_t p)
{
    return pretok_split(t, (const unsigned char *)text, len, p);
}

static size_t pretok_split(const bpe *t, const unsigned char *s, size_t len, size_t p)
{
    switch (t->pretok) {
    case BPE_PRETOK_LLAMA3:
        return pretok_next_llama3(s, len, p, 3);
    case BPE_PRETOK_QWEN2:
        return pretok_next_llama3(s, len, p, 1);
    default:
        return pretok_next(s, len, p);
    }
}

/* ---------------------------------------------------------------------------
 * Hash tables
 */

static uint32_t hash_bytes(const unsigned char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * 16777619u;
    return h ^ (h >> 15);
}

static uint32_t hash_pair(uint64_t key)
{
    key *= 0x9E3779B97F4A7C15ull;
    return (uint32_t)(key >> 32);
}

static uint64_t pair_key(int32_t a, int32_t b)
{
    return (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
}

/* Table sizes; n is at most 2 * BPE_MAX_ID here, so this cannot overflow. */
static uint32_t pow2_at_least(size_t n)
{
    uint32_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

/* Slot holding the token with these bytes, or the empty slot where it goes. */
static uint32_t tok_slot(const bpe *t, const char *bytes, size_t len)
{
    uint32_t mask = t->tok_cap - 1;
    for (uint32_t i = hash_bytes((const unsigned char *)bytes, len) & mask;; i = (i + 1) & mask) {
        int32_t id = t->tok_table[i];
        if (id < 0)
            return i;
        if (t->tok_len[id] == len && memcmp(t->pool + t->tok_off[id], bytes, len) == 0)
            return i;
    }
}

static const bpe_merge *merge_find(const bpe *t, int32_t a, int32_t b)
{
    uint64_t key = pair_key(a, b);
    uint32_t mask = t->merge_cap - 1;
    for (uint32_t i = hash_pair(key) & mask;; i = (i + 1) & mask) {
        if (t->merges[i].pair == key)
            return &t->merges[i];
        if (t->merges[i].pair == BPE_EMPTY_PAIR)
            return NULL;
    }
}

/* ---------------------------------------------------------------------------
 * Loading
 */

/* Copy a token for an error message: quotes, backslashes and control bytes
 * escaped, cut after about 40 bytes. */
static const char *token_for_msg(char dst[64], const char *src, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o < 52; i++) {
        unsigned c = (unsigned char)src[i];
        if (c < 0x20 || c == 0x7F || c == '"' || c == '\\')
            o += (size_t)snprintf(dst + o, 64 - o, "\\x%02X", c);
        else if (i >= 40 && (c & 0xC0) != 0x80) {
            o += (size_t)snprintf(dst + o, 64 - o, "...");
            break;
        } else
            dst[o++] = (char)c;
    }
    dst[o] = '\0';
    return dst;
}

/* Turn a vocab.json/merges.txt string (byte-level alphabet) into raw bytes.
 * Returns the byte count (at most n), or -1 if a character is outside the
 * alphabet.  out NULL: only check and count, write nothing. */
static long alphabet_to_bytes(const int16_t byte_of_cp[BPE_ALPHABET_CPS], const char *str,
                              size_t n, char *out)
{
    const unsigned char *s = (const unsigned char *)str;
    size_t o = 0;
    if (!byte_of_cp) { /* SentencePiece vocabularies: tokens are their UTF-8 */
        if (out)
            memcpy(out, str, n);
        return (long)n;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        i += utf8_decode(s, n, i, &cp);
        if (cp >= BPE_ALPHABET_CPS || byte_of_cp[cp] < 0)
            return -1;
        if (out)
            out[o] = (char)byte_of_cp[cp];
        o++;
    }
    return (long)o;
}

static hl_status vocab_from_json(bpe *t, const char *path, const cJSON *root,
                                 const int16_t byte_of_cp[BPE_ALPHABET_CPS], hl_err *err);

/* vocab.json's text: parsed, then read as tokenizer.json's model.vocab is. */
static hl_status vocab_parse(bpe *t, const char *path, const char *text, size_t text_len,
                             const int16_t byte_of_cp[BPE_ALPHABET_CPS], hl_err *err)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, text_len, &end, 0);
    if (!root) {
        size_t line = 1;
        for (const char *c = text; end && c < end && c < text + text_len; c++)
            line += *c == '\n';
        return hl_err_set(err, HL_ERR_FORMAT, "%s:%zu: invalid JSON", path, line);
    }
    hl_status st = vocab_from_json(t, path, root, byte_of_cp, err);
    cJSON_Delete(root);
    return st;
}

/* A JSON object mapping tokens to ids (byte_of_cp NULL: tokens are plain
 * UTF-8, SentencePiece-style) into the token table. */
static hl_status vocab_from_json(bpe *t, const char *path, const cJSON *root,
                                 const int16_t byte_of_cp[BPE_ALPHABET_CPS], hl_err *err)
{
    char m1[64], m2[64];
    hl_status st = HL_OK;
    const cJSON **owner = NULL;
    if (!cJSON_IsObject(root)) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: expected a JSON object mapping tokens to ids",
                        path);
        goto done;
    }
    /* Pass 1: ids valid, V, pool size. */
    int32_t max_id = -1, n = 0;
    size_t pool_len = 0;
    for (const cJSON *it = root->child; it; it = it->next) {
        double v = it->valuedouble;
        size_t klen = strlen(it->string);
        if (!cJSON_IsNumber(it) || !(v >= 0 && v < BPE_MAX_ID) || v != (double)(int32_t)v) {
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: token \"%s\": id must be an integer in [0, %d)", path,
                            token_for_msg(m1, it->string, klen), BPE_MAX_ID);
            goto done;
        }
        if ((int32_t)v > max_id)
            max_id = (int32_t)v;
        pool_len += klen;
        n++;
        if (pool_len >= BPE_MAX_FILE || n >= BPE_MAX_ID) {
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: too many tokens", path);
            goto done;
        }
    }
    if (n == 0) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: no tokens", path);
        goto done;
    }
    t->n_ids = max_id + 1;
    t->n_tokens = n;
    t->tok_cap = pow2_at_least((size_t)n * 2);
    t->pool = malloc(pool_len + 1);
    t->tok_off = malloc(sizeof *t->tok_off * (size_t)t->n_ids);
    t->tok_len = malloc(sizeof *t->tok_len * (size_t)t->n_ids);
    t->tok_table = malloc(sizeof *t->tok_table * t->tok_cap);
    owner = calloc((size_t)t->n_ids, sizeof *owner);
    if (!t->pool || !t->tok_off || !t->tok_len || !t->tok_table || !owner) {
        st = hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory for %d tokens", path, n);
        goto done;
    }
    for (int32_t i = 0; i < t->n_ids; i++)
        t->tok_len[i] = BPE_NO_TOKEN;
    memset(t->tok_table, 0xFF, sizeof *t->tok_table * t->tok_cap); /* all -1 */

    /* Pass 2: byte-level tokens, keyed by their bytes; a repeat is an error.
     * Pass 3: literal tokens (characters outside the alphabet), keyed by their
     * UTF-8 only where no byte-level token already has those bytes. */
    size_t used = 0;
    for (int pass = 2; pass <= 3; pass++) {
        for (const cJSON *it = root->child; it; it = it->next) {
            int32_t id = (int32_t)it->valuedouble;
            size_t klen = strlen(it->string);
            /* Pass 3 only checks: its byte-level tokens are in the pool
             * already, and converting one again at the pool's end could run
             * past it (the pool holds each token once). */
            long blen = alphabet_to_bytes(byte_of_cp, it->string, klen,
                                          pass == 2 ? t->pool + used : NULL);
            if ((pass == 2) != (blen >= 0))
                continue;
            if (owner[id]) {
                st = hl_err_set(err, HL_ERR_FORMAT, "%s: id %d is used by \"%s\" and \"%s\"", path,
                                id, token_for_msg(m1, owner[id]->string, strlen(owner[id]->string)),
                                token_for_msg(m2, it->string, klen));
                goto done;
            }
            owner[id] = it;
            if (blen < 0) {
                memcpy(t->pool + used, it->string, klen);
                blen = (long)klen;
            }
            uint32_t slot = tok_slot(t, t->pool + used, (size_t)blen);
            if (t->tok_table[slot] >= 0 && pass == 2) {
                st = hl_err_set(err, HL_ERR_FORMAT, "%s: token \"%s\" appears twice (ids %d and %d)",
                                path, token_for_msg(m1, it->string, klen), t->tok_table[slot], id);
                goto done;
            }
            t->tok_off[id] = (uint32_t)used;
            t->tok_len[id] = (uint32_t)blen;
            if (t->tok_table[slot] < 0)
                t->tok_table[slot] = id;
            used += (size_t)blen;
        }
    }
    for (int b = 0; b < 256 && !byte_of_cp; b++) { /* SentencePiece: <0xXX> tokens */
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        t->fallback_id[b] = t->tok_table[tok_slot(t, name, 6)];
        char c = (char)b;
        t->byte_id[b] = t->tok_table[tok_slot(t, &c, 1)];
    }
    for (int b = 0; b < 256 && byte_of_cp; b++) {
        char c = (char)b;
        t->byte_id[b] = t->tok_table[tok_slot(t, &c, 1)];
        if (t->byte_id[b] < 0) {
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: no token for byte 0x%02X (byte-level BPE needs all 256)", path, b);
            goto done;
        }
    }
done:
    free(owner);
    return st;
}

/* The merge table, open-addressed, sized for n merges. */
static hl_status merges_alloc(bpe *t, const char *path, size_t n, hl_err *err)
{
    if (n > BPE_MAX_ID)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: more than %d merges", path, BPE_MAX_ID);
    t->merge_cap = pow2_at_least(n * 2 + 1);
    t->merges = malloc(sizeof *t->merges * t->merge_cap);
    if (!t->merges)
        return hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", path);
    for (uint32_t i = 0; i < t->merge_cap; i++)
        t->merges[i] = (bpe_merge){BPE_EMPTY_PAIR, 0, 0};
    return HL_OK;
}

/* Add merge "a b" with the next rank: both parts and their concatenation
 * must be tokens.  `alpha` maps GPT-2's byte alphabet (NULL: plain UTF-8);
 * `joined` is scratch of at least na + nb bytes; `where` names the merge in
 * messages (a line of merges.txt, an index of tokenizer.json's list). */
static hl_status merge_add(bpe *t, const char *path, const char *where, const char *a, size_t na,
                           const char *b, size_t nb, const int16_t *alpha, char *joined,
                           int32_t *rank, hl_err *err)
{
    char m1[64], m2[64], m3[64];
    long ba = alphabet_to_bytes(alpha, a, na, joined);
    long bb = ba < 0 ? -1 : alphabet_to_bytes(alpha, b, nb, joined + ba);
    int32_t ia = -1, ib = -1, ir = -1;
    if (ba >= 0 && bb >= 0) {
        ia = t->tok_table[tok_slot(t, joined, (size_t)ba)];
        ib = t->tok_table[tok_slot(t, joined + ba, (size_t)bb)];
        ir = t->tok_table[tok_slot(t, joined, (size_t)(ba + bb))];
    }
    if (ia < 0 || ib < 0 || ir < 0) {
        char cat[80]; /* a + b as written (each cut at 40 bytes), for the message */
        size_t ka = na < 40 ? na : 40, kb = nb < 40 ? nb : 40;
        memcpy(cat, a, ka);
        memcpy(cat + ka, b, kb);
        const char *what = ia < 0 ? token_for_msg(m3, a, na)
                         : ib < 0 ? token_for_msg(m3, b, nb)
                                  : token_for_msg(m3, cat, ka + kb);
        return hl_err_set(err, HL_ERR_FORMAT, "%s:%s: merge \"%s %s\": %s \"%s\" is not in the vocab",
                          path, where, token_for_msg(m1, a, na), token_for_msg(m2, b, nb),
                          ia < 0 || ib < 0 ? "token" : "their concatenation", what);
    }
    uint64_t key = pair_key(ia, ib);
    uint32_t mask = t->merge_cap - 1, i = hash_pair(key) & mask;
    while (t->merges[i].pair != BPE_EMPTY_PAIR && t->merges[i].pair != key)
        i = (i + 1) & mask;
    if (t->merges[i].pair == BPE_EMPTY_PAIR)
        t->n_merges++;
    t->merges[i] = (bpe_merge){key, (*rank)++, ir}; /* a repeat takes the later rank */
    return HL_OK;
}

/* A merge written "a b": split at its one space (as merges.txt and the
 * tokenizers library do), then merge_add. */
static hl_status merge_add_text(bpe *t, const char *path, const char *where, const char *s,
                                size_t n, const int16_t *alpha, char *joined, int32_t *rank,
                                hl_err *err)
{
    char m1[64];
    const char *sp = memchr(s, ' ', n);
    size_t na = sp ? (size_t)(sp - s) : n, nb = sp ? n - na - 1 : 0;
    if (!sp || na == 0 || nb == 0 || memchr(sp + 1, ' ', nb))
        return hl_err_set(err, HL_ERR_FORMAT, "%s:%s: expected two tokens separated by one space, "
                          "got \"%s\"", path, where, token_for_msg(m1, s, n));
    return merge_add(t, path, where, s, na, sp + 1, nb, alpha, joined, rank, err);
}

/* merges.txt: one "a b" a line, an optional "#version" first line, CRLF
 * tolerated. */
static hl_status merges_parse(bpe *t, const char *path, char *text, size_t text_len,
                              const int16_t byte_of_cp[BPE_ALPHABET_CPS], hl_err *err)
{
    size_t n_lines = 1;
    for (size_t i = 0; i < text_len; i++)
        n_lines += text[i] == '\n';
    hl_status st = merges_alloc(t, path, n_lines, err);
    if (st)
        return st;
    /* joined: scratch for "a" + "b" as bytes; never longer than the line */
    char *joined = malloc(text_len + 1);
    if (!joined)
        return hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", path);
    char where[32];
    int32_t rank = 0;
    size_t line_no = 0;
    for (size_t pos = 0; pos < text_len && !st;) {
        char *line = text + pos;
        char *nl = memchr(line, '\n', text_len - pos);
        size_t n = nl ? (size_t)(nl - line) : text_len - pos;
        pos += n + 1;
        line_no++;
        if (n > 0 && line[n - 1] == '\r')
            n--;
        if (n == 0 || (line_no == 1 && n >= 8 && memcmp(line, "#version", 8) == 0))
            continue;
        snprintf(where, sizeof where, "%zu", line_no);
        st = merge_add_text(t, path, where, line, n, byte_of_cp, joined, &rank, err);
    }
    free(joined);
    return st;
}

/* tokenizer.json's model.merges: check every entry's shape (before the
 * vocabulary is read, so a malformed list is named first); *n merges, the
 * longest "a" + "b" in bytes. */
static hl_status merges_json_shape(const char *path, const cJSON *merges, size_t *n_out,
                                   size_t *longest_out, hl_err *err)
{
    size_t n = 0, longest = 0;
    for (const cJSON *m = merges->child; m; m = m->next, n++) {
        const cJSON *a = cJSON_GetArrayItem(m, 0), *b = cJSON_GetArrayItem(m, 1);
        size_t len;
        if (cJSON_IsString(m))
            len = strlen(m->valuestring);
        else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(a) &&
                 cJSON_IsString(b))
            len = strlen(a->valuestring) + strlen(b->valuestring);
        else
            return hl_err_set(err, HL_ERR_FORMAT, "%s: merge %zu is neither \"a b\" nor "
                              "[\"a\", \"b\"]", path, n);
        longest = len > longest ? len : longest;
    }
    *n_out = n;
    *longest_out = longest;
    return HL_OK;
}

/* The merges of tokenizer.json (shape checked): "a b" strings split at their
 * one space, as the tokenizers library does, or ["a", "b"] pairs (whose parts
 * may hold spaces).  Parts are taken as they are: a "\r" token is a token. */
static hl_status merges_from_json(bpe *t, const char *path, const cJSON *merges, size_t n,
                                  size_t longest, const int16_t *alpha, hl_err *err)
{
    hl_status st = merges_alloc(t, path, n, err);
    if (st)
        return st;
    char *joined = malloc(longest + 1);
    if (!joined)
        return hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", path);
    char where[40];
    int32_t rank = 0;
    size_t k = 0;
    for (const cJSON *m = merges->child; m && !st; m = m->next, k++) {
        snprintf(where, sizeof where, " merge %zu", k);
        if (cJSON_IsString(m)) {
            st = merge_add_text(t, path, where, m->valuestring, strlen(m->valuestring), alpha,
                                joined, &rank, err);
        } else {
            const char *a = cJSON_GetArrayItem(m, 0)->valuestring;
            const char *b = cJSON_GetArrayItem(m, 1)->valuestring;
            if (!*a || !*b)
                st = hl_err_set(err, HL_ERR_FORMAT, "%s:%s: an empty token", path, where);
            else
                st = merge_add(t, path, where, a, strlen(a), b, strlen(b), alpha, joined, &rank,
                               err);
        }
    }
    free(joined);
    return st;
}

/* The special tokens' ids, -1 for those the vocabulary lacks. */
static void find_specials(bpe *t)
{
    t->id_s = bpe_token_to_id(t, "<s>", 3);
    t->id_slash_s = bpe_token_to_id(t, "</s>", 4);
    t->id_pad = bpe_token_to_id(t, "<pad>", 5);
    t->id_unk = bpe_token_to_id(t, "<unk>", 5);
    t->id_endoftext = bpe_token_to_id(t, "<|endoftext|>", 13);
    t->id_mask = bpe_token_to_id(t, "<mask>", 6);
}

hl_status bpe_load(bpe *t, const char *vocab_json_path, const char *merges_path, hl_err *err)
{
    memset(t, 0, sizeof *t);
    t->id_s = t->id_slash_s = t->id_pad = t->id_unk = t->id_endoftext = t->id_mask = -1;
    t->prepend_id = t->unk_id = -1;
    if (!vocab_json_path || !merges_path)
        return hl_err_set(err, HL_ERR_INVALID, "bpe_load: NULL path");
    int16_t byte_of_cp[BPE_ALPHABET_CPS];
    alphabet_init(byte_of_cp);
    char *text;
    size_t len;
    hl_status st = file_read(vocab_json_path, BPE_MAX_FILE, &text, &len, err);
    if (st != HL_OK)
        return st;
    st = vocab_parse(t, vocab_json_path, text, len, byte_of_cp, err);
    free(text);
    if (st == HL_OK)
        st = file_read(merges_path, BPE_MAX_FILE, &text, &len, err);
    if (st == HL_OK) {
        st = merges_parse(t, merges_path, text, len, byte_of_cp, err);
        free(text);
    }
    if (st != HL_OK) {
        bpe_free(t);
        return st;
    }
    find_specials(t);
    return HL_OK;
}

/* A SentencePiece-style file: "▁" + text with spaces replaced, as the
 * normalizer Sequence [Prepend, Replace] (Llama 2) or a Metaspace
 * pre-tokenizer that neither splits nor prepends to later sections. */
static hl_status tj_spm(bpe *t, const char *path, const cJSON *norm, const cJSON *pt,
                        hl_err *err)
{
    static const char meta[] = "\xe2\x96\x81"; /* ▁ */
    const cJSON *nty = cJSON_GetObjectItemCaseSensitive(norm, "type");
    const cJSON *pty = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (cJSON_IsString(nty) && !strcmp(nty->valuestring, "Sequence") && (!pt || cJSON_IsNull(pt))) {
        const cJSON *ns = cJSON_GetObjectItemCaseSensitive(norm, "normalizers");
        const cJSON *a = cJSON_GetArrayItem(ns, 0), *b = cJSON_GetArrayItem(ns, 1);
        const cJSON *aty = cJSON_GetObjectItemCaseSensitive(a, "type");
        const cJSON *pre = cJSON_GetObjectItemCaseSensitive(a, "prepend");
        const cJSON *bty = cJSON_GetObjectItemCaseSensitive(b, "type");
        const cJSON *pat = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(b, "pattern"), "String");
        const cJSON *con = cJSON_GetObjectItemCaseSensitive(b, "content");
        if (cJSON_GetArraySize(ns) == 2 && cJSON_IsString(aty) &&
            !strcmp(aty->valuestring, "Prepend") && cJSON_IsString(pre) &&
            !strcmp(pre->valuestring, meta) && cJSON_IsString(bty) &&
            !strcmp(bty->valuestring, "Replace") && cJSON_IsString(pat) &&
            !strcmp(pat->valuestring, " ") && cJSON_IsString(con) && !strcmp(con->valuestring, meta))
            return HL_OK;
    }
    if ((!norm || cJSON_IsNull(norm)) && cJSON_IsString(pty) &&
        !strcmp(pty->valuestring, "Metaspace")) {
        const cJSON *rep = cJSON_GetObjectItemCaseSensitive(pt, "replacement");
        const cJSON *ps = cJSON_GetObjectItemCaseSensitive(pt, "prepend_scheme");
        const cJSON *split = cJSON_GetObjectItemCaseSensitive(pt, "split");
        if (cJSON_IsString(rep) && !strcmp(rep->valuestring, meta) && cJSON_IsFalse(split) &&
            (!ps || (cJSON_IsString(ps) && (!strcmp(ps->valuestring, "first") ||
                                            !strcmp(ps->valuestring, "always"))))) {
            t->spm_metaspace = true;
            return HL_OK;
        }
    }
    return hl_err_set(err, HL_ERR_FORMAT,
                      "%s: a SentencePiece-style BPE (byte_fallback) is supported with the "
                      "normalizer Sequence [Prepend \"\xe2\x96\x81\", Replace \" \" -> "
                      "\"\xe2\x96\x81\"] and no pre-tokenizer, or a Metaspace pre-tokenizer "
                      "(prepend first, split false) and no normalizer",
                      path);
}

/* tokenizer.json's pre_tokenizer: which regex, or an error naming it. */
static hl_status tj_pretok(bpe *t, const char *path, const cJSON *pt, hl_err *err)
{
    static const char llama3_re[] =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    static const char qwen2_re[] =
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
        "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(pt, "type");
    if (!cJSON_IsString(ty))
        return hl_err_set(err, HL_ERR_FORMAT, "%s: pre_tokenizer has no \"type\"", path);
    if (!strcmp(ty->valuestring, "ByteLevel")) {
        const cJSON *ur = cJSON_GetObjectItemCaseSensitive(pt, "use_regex");
        const cJSON *ap = cJSON_GetObjectItemCaseSensitive(pt, "add_prefix_space");
        if (cJSON_IsTrue(ap))
            return hl_err_set(err, HL_ERR_FORMAT, "%s: pre_tokenizer ByteLevel with "
                              "add_prefix_space true is not supported", path);
        if (ur && !cJSON_IsTrue(ur))
            return hl_err_set(err, HL_ERR_FORMAT, "%s: pre_tokenizer ByteLevel without its "
                              "regex (use_regex false) alone is not supported", path);
        t->pretok = BPE_PRETOK_GPT2;
        return HL_OK;
    }
    if (strcmp(ty->valuestring, "Sequence") != 0)
        return hl_err_set(err, HL_ERR_FORMAT, "%s: pre_tokenizer \"%.40s\" is not supported "
                          "(ByteLevel, or Split + ByteLevel)", path, ty->valuestring);
    const cJSON *seq = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    const cJSON *split = cJSON_GetArrayItem(seq, 0), *bl = cJSON_GetArrayItem(seq, 1);
    const cJSON *sty = cJSON_GetObjectItemCaseSensitive(split, "type");
    const cJSON *bty = cJSON_GetObjectItemCaseSensitive(bl, "type");
    const cJSON *pat = cJSON_GetObjectItemCaseSensitive(split, "pattern");
    const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
    const cJSON *beh = cJSON_GetObjectItemCaseSensitive(split, "behavior");
    if (!cJSON_IsArray(seq) || cJSON_GetArraySize(seq) != 2 || !cJSON_IsString(sty) ||
        strcmp(sty->valuestring, "Split") || !cJSON_IsString(bty) ||
        strcmp(bty->valuestring, "ByteLevel") || !cJSON_IsString(re) || !cJSON_IsString(beh) ||
        strcmp(beh->valuestring, "Isolated") ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(split, "invert")) ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(bl, "use_regex")) ||
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(bl, "add_prefix_space")))
        return hl_err_set(err, HL_ERR_FORMAT,
                          "%s: pre_tokenizer Sequence is supported only as Split (a Regex, "
                          "Isolated) then ByteLevel without regex or prefix space",
                          path);
    if (!strcmp(re->valuestring, llama3_re))
        t->pretok = BPE_PRETOK_LLAMA3;
    else if (!strcmp(re->valuestring, qwen2_re))
        t->pretok = BPE_PRETOK_QWEN2;
    else
        return hl_err_set(err, HL_ERR_FORMAT, "%s: the pre-tokenizer regex \"%.60s...\" is not "
                          "one helene implements (Llama 3's, Qwen2's)", path, re->valuestring);
    return HL_OK;
}

hl_status bpe_load_tokenizer_json(bpe *t, const char *path, hl_err *err)
{
    memset(t, 0, sizeof *t);
    t->id_s = t->id_slash_s = t->id_pad = t->id_unk = t->id_endoftext = t->id_mask = -1;
    t->prepend_id = t->unk_id = -1;
    int16_t byte_of_cp[BPE_ALPHABET_CPS];
    alphabet_init(byte_of_cp);
    char *text = NULL;
    size_t len;
    hl_status st = file_read(path, BPE_MAX_FILE, &text, &len, err);
    if (st)
        return st;
    cJSON *root = cJSON_ParseWithLength(text, len);
    free(text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return hl_err_set(err, HL_ERR_FORMAT, "%s: not a JSON object", path);
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *mty = cJSON_GetObjectItemCaseSensitive(model, "type");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
    const cJSON *norm = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
    if (!cJSON_IsString(mty) || strcmp(mty->valuestring, "BPE") != 0) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: model type \"%.32s\" is not supported (byte-level "
                        "BPE only; no Unigram or WordPiece)", path,
                        cJSON_IsString(mty) ? mty->valuestring : "?");
        goto done;
    }
    t->spm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback"));
    t->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));
    if (t->spm) {
        if ((st = tj_spm(t, path, norm, pt, err)))
            goto done;
    } else {
        const cJSON *nty = cJSON_GetObjectItemCaseSensitive(norm, "type");
        if (norm && !cJSON_IsNull(norm) &&
            !(cJSON_IsString(nty) && !strcmp(nty->valuestring, "NFC"))) {
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: normalizer \"%.32s\" is not supported (none, "
                            "or NFC)", path, cJSON_IsString(nty) ? nty->valuestring : "?");
            goto done;
        }
        if (!pt || cJSON_IsNull(pt)) {
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: no pre_tokenizer (byte-level BPE needs one)",
                            path);
            goto done;
        }
        if ((st = tj_pretok(t, path, pt, err)))
            goto done;
    }
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) {
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: model.vocab must be an object and model.merges "
                        "an array", path);
        goto done;
    }
    /* the vocabulary with the added tokens (ids of their own), in place */
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next) {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(a, "id");
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(a, "content");
        if (!cJSON_IsNumber(id) || !cJSON_IsString(ct)) {
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: an added token lacks \"id\" or \"content\"",
                            path);
            goto done;
        }
        if (!cJSON_GetObjectItemCaseSensitive(vocab, ct->valuestring) &&
            !cJSON_AddNumberToObject((cJSON *)vocab, ct->valuestring, id->valuedouble)) {
            st = hl_err_set(err, HL_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
    }
    size_t n_merges = 0, longest = 0;
    if ((st = merges_json_shape(path, merges, &n_merges, &longest, err)))
        goto done;
    const int16_t *alpha = t->spm ? NULL : byte_of_cp; /* SentencePiece: plain UTF-8 */
    if ((st = vocab_from_json(t, path, vocab, alpha, err)) ||
        (st = merges_from_json(t, path, merges, n_merges, longest, alpha, err)))
        goto done;
    find_specials(t);
    const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
    t->unk_id = cJSON_IsString(unk) ? bpe_token_to_id(t, unk->valuestring,
                                                      strlen(unk->valuestring))
                                    : -1;
    /* a TemplateProcessing post-processor whose single-text template starts
     * with a special token prepends it (Llama 3's BOS) */
    const cJSON *pp = cJSON_GetObjectItemCaseSensitive(root, "post_processor");
    const cJSON *ppt = cJSON_GetObjectItemCaseSensitive(pp, "type");
    if (cJSON_IsString(ppt) && !strcmp(ppt->valuestring, "Sequence")) { /* Llama 3.1 */
        const cJSON *pr;
        cJSON_ArrayForEach(pr, cJSON_GetObjectItemCaseSensitive(pp, "processors"))
        {
            const cJSON *ty = cJSON_GetObjectItemCaseSensitive(pr, "type");
            if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "TemplateProcessing")) {
                pp = pr;
                ppt = ty;
            }
        }
    }
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(pp, "single"), 0);
    const cJSON *sp = cJSON_GetObjectItemCaseSensitive(first, "SpecialToken");
    const cJSON *spid = cJSON_GetObjectItemCaseSensitive(sp, "id");
    if (cJSON_IsString(ppt) && !strcmp(ppt->valuestring, "TemplateProcessing") &&
        cJSON_IsString(spid))
        t->prepend_id = bpe_token_to_id(t, spid->valuestring, strlen(spid->valuestring));
done:
    if (st)
        bpe_free(t);
    cJSON_Delete(root);
    return st;
}

void bpe_free(bpe *t)
{
    if (!t)
        return;
    free(t->pool);
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_table);
    free(t->merges);
    memset(t, 0, sizeof *t);
    t->id_s = t->id_slash_s = t->id_pad = t->id_unk = t->id_endoftext = t->id_mask = -1;
    t->prepend_id = t->unk_id = -1;
}

/* ---------------------------------------------------------------------------
 * Lookups
 */

int32_t bpe_token_to_id(const bpe *t, const char *bytes, size_t len)
{
    if (!t || !t->tok_table || (!bytes && len))
        return -1;
    return t->tok_table[tok_slot(t, bytes ? bytes : "", len)];
}

const char *bpe_id_to_token(const bpe *t, int32_t id, size_t *len)
{
    if (!t || id < 0 || id >= t->n_ids || t->tok_len[id] == BPE_NO_TOKEN)
        return NULL;
    if (len)
        *len = t->tok_len[id];
    return t->pool + t->tok_off[id];
}

int32_t bpe_vocab_size(const bpe *t)
{
    return t ? t->n_ids : 0;
}

/* ---------------------------------------------------------------------------
 * Encoding: merges within one pre-token
 */

typedef struct bpe_cand {
    uint64_t key;    /* rank << 32 | position of the left symbol's first byte */
    int32_t end;     /* position just past the right symbol when queued */
    int32_t result;  /* merged id */
} bpe_cand;

/* Per-call scratch for one piece of n bytes; symbol i starts at byte i. */
typedef struct bpe_scratch {
    int32_t *sym;     /* [cap] id of the symbol starting at byte i, -1 once merged away */
    int32_t *next;    /* [cap] start of the next live symbol, -1 at the end */
    int32_t *prev;    /* [cap] start of the previous live symbol, -1 at the start */
    size_t cap;
    bpe_cand *heap;   /* [heap_cap] min-heap of candidate pairs by key */
    bpe_cand *batch;  /* [heap_cap] the candidates of the rank being applied */
    size_t heap_cap, heap_n;
} bpe_scratch;

typedef struct bpe_out {
    int32_t *ids;
    size_t cap, n;
} bpe_out;

/* A per-call cache of recent pieces -> ids, direct mapped, one cache line a
 * slot.  Worth it for long texts, where most words repeat; it lives only for
 * one bpe_encode call, so threads never share it. */
#define BPE_CACHE_WORD 26 /* longest piece cached, bytes */
#define BPE_CACHE_IDS 8   /* most ids a cached piece may have */
#define BPE_CACHE_MIN_TEXT 2048

typedef struct bpe_cache_slot {
    uint32_t hash;
    uint8_t len;      /* 0 = empty (pieces in the cache have >= 2 bytes) */
    uint8_t n_ids;
    char word[BPE_CACHE_WORD];
    int32_t ids[BPE_CACHE_IDS];
} bpe_cache_slot;

typedef struct bpe_cache {
    bpe_cache_slot *slots; /* [mask + 1], NULL = no cache for this call */
    uint32_t mask;
} bpe_cache;

static void scratch_free(bpe_scratch *sc)
{
    free(sc->sym);
    free(sc->next);
    free(sc->prev);
    free(sc->heap);
    free(sc->batch);
    memset(sc, 0, sizeof *sc);
}

static bool grow(void **p, size_t elem, size_t n)
{
    void *q = realloc(*p, elem * n);
    if (!q)
        return false;
    *p = q;
    return true;
}

/* Room for a piece of n bytes (n - 1 initial candidates; the heap grows
 * further on demand, up to 3n: one more per merge on each side). */
static bool scratch_reserve(bpe_scratch *sc, size_t n)
{
    if (n > sc->cap) {
        size_t cap = sc->cap ? sc->cap : 64;
        while (cap < n)
            cap *= 2;
        if (!grow((void **)&sc->sym, sizeof *sc->sym, cap) ||
            !grow((void **)&sc->next, sizeof *sc->next, cap) ||
            !grow((void **)&sc->prev, sizeof *sc->prev, cap))
            return false;
        sc->cap = cap;
    }
    if (n > sc->heap_cap) {
        if (!grow((void **)&sc->heap, sizeof *sc->heap, sc->cap) ||
            !grow((void **)&sc->batch, sizeof *sc->batch, sc->cap))
            return false;
        sc->heap_cap = sc->cap;
    }
    return true;
}

static bool heap_push(bpe_scratch *sc, bpe_cand c)
{
    if (sc->heap_n == sc->heap_cap) {
        size_t cap = sc->heap_cap * 2;
        if (!grow((void **)&sc->heap, sizeof *sc->heap, cap) ||
            !grow((void **)&sc->batch, sizeof *sc->batch, cap))
            return false;
        sc->heap_cap = cap;
    }
    bpe_cand *h = sc->heap;
    size_t i = sc->heap_n++;
    while (i > 0 && h[(i - 1) / 2].key > c.key) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = c;
    return true;
}

static bpe_cand heap_pop(bpe_scratch *sc)
{
    bpe_cand *h = sc->heap;
    bpe_cand top = h[0], last = h[--sc->heap_n];
    size_t i = 0, m = sc->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m)
            break;
        if (c + 1 < m && h[c + 1].key < h[c].key)
            c++;
        if (h[c].key >= last.key)
            break;
        h[i] = h[c];
        i = c;
    }
    if (m > 0)
        h[i] = last;
    return top;
}

/* Queue the pair starting at symbol p (if p >= 0 has a right neighbour and
 * the pair is a merge).  False only when out of memory. */
static bool queue_pair(const bpe *t, bpe_scratch *sc, int32_t p, int32_t n)
{
    if (p < 0 || sc->next[p] < 0)
        return true;
    int32_t q = sc->next[p];
    const bpe_merge *m = merge_find(t, sc->sym[p], sc->sym[q]);
    if (!m)
        return true;
    int32_t end = sc->next[q] < 0 ? n : sc->next[q];
    return heap_push(sc, (bpe_cand){(uint64_t)(uint32_t)m->rank << 32 | (uint32_t)p, end,
                                    m->result});
}

static void emit(bpe_out *o, int32_t id)
{
    if (o->n < o->cap)
        o->ids[o->n] = id;
    o->n++;
}

/* BPE one piece of n >= 2 bytes: repeatedly take the lowest-ranked pair and
 * merge all its occurrences left to right, as encoder.py does.  Candidates
 * created while a rank is being applied wait for the next round.
 *
 * A symbol is identified by its byte span, so a queued pair is still the same
 * pair iff its left symbol is alive and the symbol after it still ends at the
 * recorded end: any merge touching either symbol moves one of those bounds.
 * False only when out of memory. */
static bool merge_symbols(const bpe *t, bpe_scratch *sc, int32_t n);

static bool merge_piece(const bpe *t, const unsigned char *s, int32_t n, bpe_scratch *sc,
                        bpe_cache *cache, bpe_out *o)
{
    bpe_cache_slot *slot = NULL;
    uint32_t hash = 0;
    if (cache->slots && n <= BPE_CACHE_WORD) {
        hash = hash_bytes(s, (size_t)n);
        slot = &cache->slots[hash & cache->mask];
        if (slot->hash == hash && slot->len == n && memcmp(slot->word, s, (size_t)n) == 0) {
            for (int k = 0; k < slot->n_ids; k++)
                emit(o, slot->ids[k]);
            return true;
        }
    }
    for (int32_t i = 0; i < n; i++)
        sc->sym[i] = t->byte_id[s[i]];
    if (!merge_symbols(t, sc, n))
        return false;
    size_t n_ids = 0;
    for (int32_t i = 0; i >= 0; i = sc->next[i]) {
        emit(o, sc->sym[i]);
        n_ids++;
    }
    if (slot && n_ids <= BPE_CACHE_IDS) {
        slot->hash = hash;
        slot->len = (uint8_t)n;
        slot->n_ids = (uint8_t)n_ids;
        memcpy(slot->word, s, (size_t)n);
        n_ids = 0;
        for (int32_t i = 0; i >= 0; i = sc->next[i])
            slot->ids[n_ids++] = sc->sym[i];
    }
    return true;
}

/* The merges over n initial symbols sc->sym[0, n): lowest rank first, every
 * occurrence of that pair left to right.  The survivors are linked by
 * sc->next from 0. */
static bool merge_symbols(const bpe *t, bpe_scratch *sc, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        sc->prev[i] = i - 1;
        sc->next[i] = i + 1 < n ? i + 1 : -1;
    }
    sc->heap_n = 0;
    for (int32_t i = 0; i + 1 < n; i++)
        if (!queue_pair(t, sc, i, n))
            return false;
    while (sc->heap_n > 0) {
        uint64_t rank = sc->heap[0].key >> 32;
        size_t nb = 0;
        while (sc->heap_n > 0 && sc->heap[0].key >> 32 == rank)
            sc->batch[nb++] = heap_pop(sc); /* ascending position */
        for (size_t k = 0; k < nb; k++) {
            const bpe_cand *c = &sc->batch[k];
            int32_t p = (int32_t)(uint32_t)c->key, q = sc->next[p];
            if (sc->sym[p] < 0 || q < 0 || (sc->next[q] < 0 ? n : sc->next[q]) != c->end)
                continue; /* stale */
            sc->sym[p] = c->result;
            sc->sym[q] = -1;
            sc->next[p] = sc->next[q];
            if (sc->next[q] >= 0)
                sc->prev[sc->next[q]] = p;
            if (!queue_pair(t, sc, sc->prev[p], n) || !queue_pair(t, sc, p, n))
                return false;
        }
    }
    return true;
}

/* SentencePiece-style BPE: "▁" + text with spaces as "▁" is one piece; its
 * characters are the initial symbols (bytes as <0xXX> where a character has
 * no token, unk where neither exists, consecutive unks fused). */
static hl_status spm_encode(const bpe *t, const unsigned char *s, size_t len, bpe_scratch *sc,
                            bpe_out *o, hl_err *err)
{
    if (len == 0)
        return HL_OK;
    size_t spaces = 0;
    for (size_t i = 0; i < len; i++)
        spaces += s[i] == ' ';
    size_t n = len + 2 * spaces + 3; /* each space grows by 2 bytes; the prefix is 3 */
    if (n > INT32_MAX / 4)
        return hl_err_set(err, HL_ERR_INVALID, "bpe_encode: a %zu-byte text is too long", len);
    unsigned char *w = malloc(n);
    if (!w || !scratch_reserve(sc, n)) {
        free(w);
        return hl_err_set(err, HL_ERR_NOMEM, "bpe_encode: out of memory (%zu bytes)", n);
    }
    /* Prepend "▁", then Replace " " -> "▁"; Metaspace prepends only where the
     * text does not start with a space already */
    size_t k = 0;
    if (!(t->spm_metaspace && s[0] == ' ')) {
        memcpy(w, "\xe2\x96\x81", 3);
        k = 3;
    }
    for (size_t i = 0; i < len; i++)
        if (s[i] == ' ') {
            memcpy(w + k, "\xe2\x96\x81", 3);
            k += 3;
        } else
            w[k++] = s[i];
    int32_t m = 0;
    for (size_t i = 0; i < k;) {
        uint32_t cp;
        size_t cl = utf8_decode(w, k, i, &cp);
        int32_t id = t->tok_table[tok_slot(t, (const char *)w + i, cl)];
        if (id >= 0)
            sc->sym[m++] = id;
        else
            for (size_t b = 0; b < cl; b++) {
                int32_t f = t->fallback_id[w[i + b]];
                if (f < 0 && m > 0 && sc->sym[m - 1] == t->unk_id)
                    continue; /* fuse_unk */
                sc->sym[m++] = f >= 0 ? f : t->unk_id;
            }
        i += cl;
    }
    free(w);
    if (m > 0 && !merge_symbols(t, sc, m))
        return hl_err_set(err, HL_ERR_NOMEM, "bpe_encode: out of memory");
    for (int32_t i = 0; m > 0 && i >= 0; i = sc->next[i])
        emit(o, sc->sym[i]);
    return HL_OK;
}

hl_status bpe_encode(const bpe *t, const char *text, size_t len, int32_t *ids, size_t cap,
                     size_t *n_out, hl_err *err)
{
    if (n_out)
        *n_out = 0;
    if (!t || !t->tok_table || !n_out || (!text && len) || (!ids && cap))
        return hl_err_set(err, HL_ERR_INVALID, "bpe_encode: invalid arguments");
    const unsigned char *s = (const unsigned char *)text;
    bpe_out o = {ids, ids ? cap : 0, 0};
    bpe_scratch sc = {0};
    bpe_cache cache = {NULL, 0};
    if (t->spm) {
        hl_status st = spm_encode(t, s, len, &sc, &o, err);
        scratch_free(&sc);
        if (st)
            return st;
        *n_out = o.n;
        if (ids && o.n > cap)
            return hl_err_set(err, HL_ERR_INVALID,
                              "bpe_encode: text needs %zu ids, buffer holds %zu", o.n, cap);
        return HL_OK;
    }
    if (len >= BPE_CACHE_MIN_TEXT) { /* about one slot per 16 bytes, 128..4096 slots */
        uint32_t n_slots = pow2_at_least(len / 16 < 4096 ? len / 16 : 4096);
        cache.slots = calloc(n_slots, sizeof *cache.slots); /* NULL: run without */
        cache.mask = n_slots - 1;
    }
    for (size_t p = 0; p < len;) {
        size_t e = pretok_split(t, s, len, p);
        size_t n = e - p;
        int32_t whole = -1;
        if (t->ignore_merges && n > 1) {
            int32_t id = t->tok_table[tok_slot(t, text + p, n)];
            whole = id >= 0 ? id : -1;
        }
        if (n == 1) {
            emit(&o, t->byte_id[s[p]]);
        } else if (whole >= 0) {
            emit(&o, whole);
        } else {
            if (n > INT32_MAX / 4) {
                free(cache.slots);
                scratch_free(&sc);
                return hl_err_set(err, HL_ERR_INVALID,
                                  "bpe_encode: a %zu-byte run without spaces is too long", n);
            }
            if (!scratch_reserve(&sc, n)) {
                free(cache.slots);
                scratch_free(&sc);
                return hl_err_set(err, HL_ERR_NOMEM, "bpe_encode: out of memory (%zu bytes)", n);
            }
            if (!merge_piece(t, s + p, (int32_t)n, &sc, &cache, &o)) {
                free(cache.slots);
                scratch_free(&sc);
                return hl_err_set(err, HL_ERR_NOMEM, "bpe_encode: out of memory (%zu bytes)", n);
            }
        }
        p = e;
    }
    free(cache.slots);
    scratch_free(&sc);
    *n_out = o.n;
    if (ids && o.n > cap)
        return hl_err_set(err, HL_ERR_INVALID, "bpe_encode: text needs %zu ids, buffer holds %zu",
                          o.n, cap);
    return HL_OK;
}

hl_status bpe_encode_alloc(const bpe *t, const char *text, size_t len, int32_t **ids_out,
                           size_t *n_out, hl_err *err)
{
    if (ids_out)
        *ids_out = NULL;
    if (!ids_out)
        return hl_err_set(err, HL_ERR_INVALID, "bpe_encode_alloc: NULL output");
    size_t n;
    hl_status st = bpe_encode(t, text, len, NULL, 0, &n, err);
    if (st != HL_OK)
        return st;
    *n_out = n;
    if (n == 0)
        return HL_OK;
    int32_t *ids = malloc(sizeof *ids * n);
    if (!ids)
        return hl_err_set(err, HL_ERR_NOMEM, "bpe_encode_alloc: out of memory for %zu ids", n);
    st = bpe_encode(t, text, len, ids, n, n_out, err);
    if (st != HL_OK) {
        free(ids);
        return st;
    }
    *ids_out = ids;
    return HL_OK;
}

/* ---------------------------------------------------------------------------
 * Decoding
 */

/* Check every id and count the bytes they decode to. */
/* A token's decoded bytes into out (NULL: count only): its bytes, except
 * for SentencePiece-style vocabularies, where "▁" is a space, the text's
 * leading one (the prepended "▁") is dropped, and <0xXX> is that byte. */
static size_t decode_token(const bpe *t, int32_t id, bool first, char *out)
{
    const char *b = t->pool + t->tok_off[id];
    size_t n = t->tok_len[id];
    if (!t->spm) {
        if (out)
            memcpy(out, b, n);
        return n;
    }
    unsigned v;
    if (n == 6 && !memcmp(b, "<0x", 3) && b[5] == '>' && sscanf(b + 3, "%2x", &v) == 1 &&
        t->fallback_id[v] == id) { /* a byte-fallback token: its byte */
        if (out)
            out[0] = (char)v;
        return 1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (n - i >= 3 && !memcmp(b + i, "\xe2\x96\x81", 3)) {
            if (!(first && i == 0)) {
                if (out)
                    out[o] = ' ';
                o++;
            }
            i += 3;
        } else {
            if (out)
                out[o] = b[i];
            o++;
            i++;
        }
    }
    return o;
}

static hl_status decode_len(const bpe *t, const int32_t *ids, size_t n, size_t *len, hl_err *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_ids || t->tok_len[id] == BPE_NO_TOKEN)
            return hl_err_set(err, HL_ERR_INVALID,
                              "bpe_decode: unknown token id %d at position %zu", (int)id, i);
        total += decode_token(t, id, i == 0, NULL);
    }
    *len = total;
    return HL_OK;
}

hl_status bpe_decode(const bpe *t, const int32_t *ids, size_t n, char *out, size_t cap,
                     size_t *len_out, hl_err *err)
{
    if (len_out)
        *len_out = 0;
    if (!t || !t->tok_len || !len_out || (!ids && n) || (!out && cap))
        return hl_err_set(err, HL_ERR_INVALID, "bpe_decode: invalid arguments");
    size_t len = 0;
    hl_status st = decode_len(t, ids, n, &len, err);
    if (st != HL_OK)
        return st;
    *len_out = len;
    if (len >= cap)
        return hl_err_set(err, HL_ERR_INVALID,
                          "bpe_decode: text needs %zu bytes + NUL, buffer holds %zu", len, cap);
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += decode_token(t, ids[i], i == 0, out + o);
    out[o] = '\0';
    return HL_OK;
}

hl_status bpe_decode_alloc(const bpe *t, const int32_t *ids, size_t n, char **out,
                           size_t *len_out, hl_err *err)
{
    if (out)
        *out = NULL;
    if (len_out)
        *len_out = 0;
    if (!t || !t->tok_len || !out || !len_out || (!ids && n))
        return hl_err_set(err, HL_ERR_INVALID, "bpe_decode_alloc: invalid arguments");
    size_t len = 0;
    hl_status st = decode_len(t, ids, n, &len, err);
    if (st != HL_OK)
        return st;
    char *buf = malloc(len + 1);
    if (!buf)
        return hl_err_set(err, HL_ERR_NOMEM, "bpe_decode_alloc: out of memory for %zu bytes", len);
    st = bpe_decode(t, ids, n, buf, len + 1, len_out, err);
    if (st != HL_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return HL_OK;
}

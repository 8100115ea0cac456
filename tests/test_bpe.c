/* test_bpe.c - the GPT-2 byte-level BPE tokenizer: golden encodings (64
 * gpt-tokenizer cases + gpt2_extra.jsonl), round trips over random bytes and
 * invalid UTF-8, label words, special ids, concurrent encoding, and clear
 * errors for malformed vocab.json / merges.txt.  Leaves out speed (see
 * bench_bpe). */
#include <cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpe.h"
#include "err.h"
#include "testutil.h"
#include "unicode_classes.h"

#define VOCAB_PATH HELENE_SRCDATADIR "/gpt2/vocab.json"
#define MERGES_PATH HELENE_SRCDATADIR "/gpt2/merges.txt"
#define TESTPLANS_PATH HELENE_TESTDIR "/fixtures/gpt2_testplans.txt"
#define EXTRA_PATH HELENE_TESTDIR "/fixtures/gpt2_extra.jsonl"

static bpe gpt2; /* loaded once for the suite */

/* ---- helpers ------------------------------------------------------------ */

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, got;
    char *buf = malloc(cap + 1);
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (buf) {
        buf[n] = '\0';
        *len = n;
    }
    return buf;
}

/* Compare an encoding with the expected ids; print the first difference. */
static bool ids_match(const char *what, const int32_t *got, size_t n_got, const int32_t *want,
                      size_t n_want)
{
    if (n_got == n_want && (n_got == 0 || memcmp(got, want, n_got * sizeof *got) == 0))
        return true;
    size_t i = 0;
    while (i < n_got && i < n_want && got[i] == want[i])
        i++;
    fprintf(stderr, "  %s: %zu ids, want %zu; first difference at [%zu]: got %d want %d\n", what,
            n_got, n_want, i, i < n_got ? (int)got[i] : -1, i < n_want ? (int)want[i] : -1);
    return false;
}

/* Encode, compare with want, decode back and compare with the text. */
static void check_golden(const char *label, const char *text, size_t len, const int32_t *want,
                         size_t n_want)
{
    int32_t *ids = NULL;
    size_t n = 0;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(bpe_encode_alloc(&gpt2, text, len, &ids, &n, &err), HL_OK);
    CU_ASSERT(ids_match(label, ids, n, want, n_want));
    char *back = NULL;
    size_t blen = 0;
    CU_ASSERT_EQUAL(bpe_decode_alloc(&gpt2, ids, n, &back, &blen, &err), HL_OK);
    CU_ASSERT(back && blen == len && memcmp(back, text, len) == 0);
    free(back);
    free(ids);
}

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* ---- golden encodings --------------------------------------------------- */

/* tests/fixtures/gpt2_testplans.txt: blank-line separated records of
 * "EncodingName: X", "Sample: <text>", "Encoded: [ids]"; we take r50k_base. */
static void test_golden_testplans(void)
{
    size_t len;
    char *buf = slurp(TESTPLANS_PATH, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    static char long_text[3 * 16384];
    static int32_t long_want[3 * 8192];
    size_t long_len = 0, long_n = 0;
    int cases = 0;
    char *save = NULL;
    char *lines[3] = {NULL, NULL, NULL};
    int at = 0, line_no = 0;
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        line_no++;
        lines[0] = lines[1];
        lines[1] = lines[2];
        lines[2] = l;
        at++;
        if (at < 3 || strcmp(lines[0], "EncodingName: r50k_base") != 0)
            continue;
        CU_ASSERT_FATAL(strncmp(lines[1], "Sample: ", 8) == 0);
        CU_ASSERT_FATAL(strncmp(lines[2], "Encoded: [", 10) == 0);
        const char *text = lines[1] + 8;
        int32_t want[1024];
        size_t n_want = 0;
        for (char *p = lines[2] + 10; *p && *p != ']';) {
            char *end;
            long v = strtol(p, &end, 10);
            CU_ASSERT_FATAL(end != p && n_want < 1024);
            want[n_want++] = (int32_t)v;
            p = end;
            while (*p == ',' || *p == ' ')
                p++;
        }
        char label[64];
        snprintf(label, sizeof label, "testplans record %d (line %d)", cases + 1, line_no);
        check_golden(label, text, strlen(text), want, n_want);
        /* Also into one long text: each non-empty sample (none starts or ends
         * with whitespace) then "\n" (id 198), three times over, so the
         * per-call word cache serves repeats; the ids must simply concatenate. */
        if (*text && cases < 64) {
            size_t tl = strlen(text);
            CU_ASSERT_FATAL(long_len + tl + 1 <= sizeof long_text / 3);
            memcpy(long_text + long_len, text, tl);
            long_len += tl;
            long_text[long_len++] = '\n';
            CU_ASSERT_FATAL(long_n + n_want + 1 <= sizeof long_want / sizeof long_want[0] / 3);
            memcpy(long_want + long_n, want, n_want * sizeof *want);
            long_n += n_want;
            long_want[long_n++] = 198;
        }
        cases++;
    }
    CU_ASSERT_EQUAL(cases, 64);
    for (int r = 1; r < 3; r++) {
        memcpy(long_text + (size_t)r * long_len, long_text, long_len);
        memcpy(long_want + (size_t)r * long_n, long_want, long_n * sizeof *long_want);
    }
    CU_ASSERT(3 * long_len > 4096);
    check_golden("testplans samples joined", long_text, 3 * long_len, long_want, 3 * long_n);
    free(buf);
}

/* tests/fixtures/gpt2_extra.jsonl: {"text": ..., "ids": [...]} per line. */
static void test_golden_extra(void)
{
    size_t len;
    char *buf = slurp(EXTRA_PATH, &len);
    CU_ASSERT_PTR_NOT_NULL_FATAL(buf);
    int cases = 0;
    char *save = NULL;
    for (char *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        cJSON *o = cJSON_Parse(l);
        CU_ASSERT_PTR_NOT_NULL_FATAL(o);
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
        const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "ids");
        CU_ASSERT_FATAL(cJSON_IsString(text) && cJSON_IsArray(ids));
        int32_t want[1024];
        size_t n_want = 0;
        const cJSON *v;
        cJSON_ArrayForEach(v, ids)
        {
            CU_ASSERT_FATAL(n_want < 1024);
            want[n_want++] = (int32_t)v->valuedouble;
        }
        char label[64];
        snprintf(label, sizeof label, "gpt2_extra line %d", cases + 1);
        check_golden(label, text->valuestring, strlen(text->valuestring), want, n_want);
        cJSON_Delete(o);
        cases++;
    }
    CU_ASSERT(cases >= 40);
    free(buf);
}

/* ---- round trips and invalid UTF-8 -------------------------------------- */

static void check_roundtrip(const char *text, size_t len)
{
    hl_err err;
    int32_t *ids = NULL;
    size_t n = 0, n_count = 0;
    CU_ASSERT_EQUAL_FATAL(bpe_encode_alloc(&gpt2, text, len, &ids, &n, &err), HL_OK);
    CU_ASSERT_EQUAL(bpe_encode(&gpt2, text, len, NULL, 0, &n_count, &err), HL_OK);
    CU_ASSERT_EQUAL(n, n_count);
    CU_ASSERT(n <= len);
    char *back = NULL;
    size_t blen = 0;
    CU_ASSERT_EQUAL_FATAL(bpe_decode_alloc(&gpt2, ids, n, &back, &blen, &err), HL_OK);
    bool same = blen == len && memcmp(back, text, len) == 0;
    if (!same) {
        fprintf(stderr, "  round trip failed for %zu bytes:", len);
        for (size_t i = 0; i < len && i < 32; i++)
            fprintf(stderr, " %02X", (unsigned char)text[i]);
        fprintf(stderr, "\n");
    }
    CU_ASSERT(same);
    free(back);
    free(ids);
}

static void test_roundtrip_random_bytes(void)
{
    static const char *frags[] = {"a", "Z", "7", " ", "  ", "\n", "\t", "'s", "'", "\xc3\xa9",
                                  "\xe4\xb8\xad", "\xf0\x9f\x98\x80", "\xc2\xa0", "\xe3\x80\x80",
                                  "\xcc\x81", "\xc2\xb2", "!", "..."};
    uint64_t s = 0x9E3779B97F4A7C15ull;
    char buf[512];
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = 0, want = rng_next(&s) % 300;
        int mode = iter % 3;
        while (len < want) {
            uint64_t r = rng_next(&s);
            if (mode == 0) { /* any bytes, NUL and invalid UTF-8 included */
                buf[len++] = (char)(r & 0xFF);
            } else { /* valid fragments with stray bytes mixed in */
                if (mode == 2 && r % 5 == 0) {
                    buf[len++] = (char)(0x80 | ((r >> 8) & 0x7F));
                    continue;
                }
                const char *f = frags[(r >> 16) % (sizeof frags / sizeof frags[0])];
                size_t fl = strlen(f);
                if (len + fl > sizeof buf)
                    break;
                memcpy(buf + len, f, fl);
                len += fl;
            }
        }
        check_roundtrip(buf, len);
    }
    for (size_t i = 0; i < 64; i++)
        buf[i] = 'a';
    check_roundtrip(buf, 64);
    check_roundtrip("", 0);
}

static void test_invalid_utf8(void)
{
    /* A bad byte is its own "other" code point: it splits letter runs. */
    static const struct {
        const char *s;
        size_t n;
    } bad[] = {
        {"a\xff" "b", 3},     {"caf\xc3", 4},          {"\xc0\xaf", 2},       {"\xed\xa0\x80", 3},
        {"\xf4\x90\x80\x80", 4}, {"\xe4\xb8", 2},      {"\x80\x80 x", 4},     {"x\0y", 3},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_roundtrip(bad[i].s, bad[i].n);
    hl_err err;
    int32_t ids[8];
    size_t n;
    CU_ASSERT_EQUAL(bpe_encode(&gpt2, "a\xff" "b", 3, ids, 8, &n, &err), HL_OK);
    CU_ASSERT_EQUAL(n, 3);
    CU_ASSERT_EQUAL(ids[0], 64);
    CU_ASSERT_EQUAL(ids[1], bpe_token_to_id(&gpt2, "\xff", 1));
    CU_ASSERT_EQUAL(ids[2], 65);
}

/* ---- lookups and special ids -------------------------------------------- */

static void test_label_words_and_specials(void)
{
    CU_ASSERT_EQUAL(bpe_vocab_size(&gpt2), 50257);
    CU_ASSERT_EQUAL(gpt2.id_endoftext, 50256);
    CU_ASSERT_EQUAL(gpt2.id_s, -1);
    CU_ASSERT_EQUAL(gpt2.id_slash_s, -1);
    CU_ASSERT_EQUAL(gpt2.id_pad, -1);
    CU_ASSERT_EQUAL(gpt2.id_unk, -1);
    static const char *words[] = {" great", " terrible", " good", " bad", " positive", " negative"};
    hl_err err;
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        int32_t id = bpe_token_to_id(&gpt2, words[i], strlen(words[i]));
        CU_ASSERT(id >= 0);
        int32_t ids[4];
        size_t n;
        CU_ASSERT_EQUAL(bpe_encode(&gpt2, words[i], strlen(words[i]), ids, 4, &n, &err), HL_OK);
        CU_ASSERT_EQUAL(n, 1);
        CU_ASSERT_EQUAL(ids[0], id);
        size_t tl;
        const char *tok = bpe_id_to_token(&gpt2, id, &tl);
        CU_ASSERT(tok && tl == strlen(words[i]) && memcmp(tok, words[i], tl) == 0);
    }
    CU_ASSERT_EQUAL(bpe_token_to_id(&gpt2, " great", 6), 1049);
    CU_ASSERT_EQUAL(bpe_token_to_id(&gpt2, " terrible", 9), 7818);
    CU_ASSERT_EQUAL(bpe_token_to_id(&gpt2, " notawordatall", 14), -1);
    CU_ASSERT_EQUAL(bpe_token_to_id(&gpt2, "", 0), -1);
    CU_ASSERT_PTR_NULL(bpe_id_to_token(&gpt2, 50257, NULL));
    CU_ASSERT_PTR_NULL(bpe_id_to_token(&gpt2, -1, NULL));
    /* Special token text is ordinary text for encode. */
    int32_t ids[16];
    size_t n;
    CU_ASSERT_EQUAL(bpe_encode(&gpt2, "<|endoftext|>", 13, ids, 16, &n, &err), HL_OK);
    CU_ASSERT(n > 1);
}

static void test_buffer_limits(void)
{
    hl_err err;
    int32_t ids[3] = {-7, -7, -7};
    size_t n = 0;
    const char *text = "Hello, World! How are you today?"; /* 9 ids */
    CU_ASSERT_EQUAL(bpe_encode(&gpt2, text, strlen(text), ids, 2, &n, &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(n, 9);
    CU_ASSERT_EQUAL(ids[0], 15496);
    CU_ASSERT_EQUAL(ids[1], 11);
    CU_ASSERT_EQUAL(ids[2], -7);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "9"));
    CU_ASSERT_EQUAL(bpe_encode(&gpt2, NULL, 5, ids, 3, &n, &err), HL_ERR_INVALID);

    char out[8];
    size_t len = 0;
    int32_t hello[2] = {15496, 11};
    CU_ASSERT_EQUAL(bpe_decode(&gpt2, hello, 2, out, sizeof out, &len, &err), HL_OK);
    CU_ASSERT_STRING_EQUAL(out, "Hello,");
    CU_ASSERT_EQUAL(bpe_decode(&gpt2, hello, 2, out, 6, &len, &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(len, 6);
    int32_t unknown[3] = {11, 50257, 11};
    CU_ASSERT_EQUAL(bpe_decode(&gpt2, unknown, 3, out, sizeof out, &len, &err), HL_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "50257"));
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "position 1"));
    int32_t negative = -1;
    char *s = NULL;
    CU_ASSERT_EQUAL(bpe_decode_alloc(&gpt2, &negative, 1, &s, &len, &err), HL_ERR_INVALID);
    CU_ASSERT_PTR_NULL(s);
    CU_ASSERT_EQUAL(bpe_decode_alloc(&gpt2, NULL, 0, &s, &len, &err), HL_OK);
    CU_ASSERT(s && s[0] == '\0' && len == 0);
    free(s);
}

static void test_unicode_classes(void)
{
    for (uint32_t c = 0; c < 128; c++) {
        unicode_class want = UNICODE_CLASS_OTHER;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            want = UNICODE_CLASS_LETTER;
        else if (c >= '0' && c <= '9')
            want = UNICODE_CLASS_NUMBER;
        else if (c == ' ' || (c >= 9 && c <= 13))
            want = UNICODE_CLASS_SPACE;
        CU_ASSERT_EQUAL(unicode_get_class(c), want);
    }
    CU_ASSERT_EQUAL(unicode_get_class(0x1C), UNICODE_CLASS_OTHER); /* isspace() yes, \s no */
    CU_ASSERT_EQUAL(unicode_get_class(0x85), UNICODE_CLASS_SPACE);
    CU_ASSERT_EQUAL(unicode_get_class(0xA0), UNICODE_CLASS_SPACE);
    CU_ASSERT_EQUAL(unicode_get_class(0x3000), UNICODE_CLASS_SPACE);
    CU_ASSERT_EQUAL(unicode_get_class(0x200B), UNICODE_CLASS_OTHER);
    CU_ASSERT_EQUAL(unicode_get_class(0xE9), UNICODE_CLASS_LETTER);
    CU_ASSERT_EQUAL(unicode_get_class(0x4E2D), UNICODE_CLASS_LETTER);
    CU_ASSERT_EQUAL(unicode_get_class(0x2C6), UNICODE_CLASS_LETTER); /* Lm */
    CU_ASSERT_EQUAL(unicode_get_class(0xB2), UNICODE_CLASS_NUMBER);  /* No */
    CU_ASSERT_EQUAL(unicode_get_class(0x216B), UNICODE_CLASS_NUMBER); /* Nl */
    CU_ASSERT_EQUAL(unicode_get_class(0x661), UNICODE_CLASS_NUMBER);
    CU_ASSERT_EQUAL(unicode_get_class(0x301), UNICODE_CLASS_OTHER);  /* Mn */
    CU_ASSERT_EQUAL(unicode_get_class(0x1F600), UNICODE_CLASS_OTHER);
    CU_ASSERT_EQUAL(unicode_get_class(0x3134A), UNICODE_CLASS_LETTER);
    CU_ASSERT_EQUAL(unicode_get_class(0xD800), UNICODE_CLASS_OTHER);
    CU_ASSERT_EQUAL(unicode_get_class(0x10FFFF), UNICODE_CLASS_OTHER);
    CU_ASSERT_EQUAL(unicode_get_class(0xFFFFFFFFu), UNICODE_CLASS_OTHER);
}

/* ---- concurrency -------------------------------------------------------- */

typedef struct enc_job {
    const char *const *texts;
    int n_texts;
    const size_t *want_n;
    const int32_t *const *want;
    int mismatches;
} enc_job;

static void *encode_many(void *arg)
{
    enc_job *j = arg;
    hl_err err;
    for (int rep = 0; rep < 20; rep++)
        for (int i = 0; i < j->n_texts; i++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (bpe_encode_alloc(&gpt2, j->texts[i], strlen(j->texts[i]), &ids, &n, &err) != HL_OK ||
                n != j->want_n[i] || (n && memcmp(ids, j->want[i], n * sizeof *ids) != 0))
                j->mismatches++;
            free(ids);
        }
    return NULL;
}

static void test_concurrent_encode(void)
{
    static const char *texts[] = {
        "The quick brown fox jumps over 13 lazy dogs.",
        "It's a truly great film; I wouldn't call it terrible at all!!!",
        "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf\xe3\x80\x81 world \xf0\x9f\x8c\x8d",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa   \n\n\tend",
    };
    enum { NT = 4, NTHREADS = 4 };
    int32_t *want[NT];
    size_t want_n[NT];
    hl_err err;
    for (int i = 0; i < NT; i++)
        CU_ASSERT_EQUAL_FATAL(
            bpe_encode_alloc(&gpt2, texts[i], strlen(texts[i]), &want[i], &want_n[i], &err), HL_OK);
    pthread_t th[NTHREADS];
    enc_job jobs[NTHREADS];
    for (int t = 0; t < NTHREADS; t++) {
        jobs[t] = (enc_job){texts, NT, want_n, (const int32_t *const *)want, 0};
        CU_ASSERT_EQUAL_FATAL(pthread_create(&th[t], NULL, encode_many, &jobs[t]), 0);
    }
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        CU_ASSERT_EQUAL(jobs[t].mismatches, 0);
    }
    for (int i = 0; i < NT; i++)
        free(want[i]);
}

/* ---- malformed and small vocabularies ----------------------------------- */

static char tmpdir[64];

static const char *tmp_write(const char *name, const char *content)
{
    static char path[2][160];
    static int which;
    char *p = path[which++ & 1];
    snprintf(p, sizeof path[0], "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fputs(content, f);
        fclose(f);
    }
    return p;
}

/* A RoBERTa-style vocab: <s>=0 <pad>=1 </s>=2 <unk>=3, the 256 bytes at
 * 4..259 in byte order, then extra entries (JSON text without braces). */
static char *small_vocab(const char *extra)
{
    size_t cap = 256 * 16 + strlen(extra) + 128, o = 0;
    char *v = malloc(cap);
    o += (size_t)snprintf(v + o, cap - o, "{\"<s>\": 0, \"<pad>\": 1, \"</s>\": 2, \"<unk>\": 3");
    int extra_cp = 0;
    for (int b = 0; b < 256; b++) {
        bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int cp = printable ? b : 256 + extra_cp++;
        o += (size_t)snprintf(v + o, cap - o, ", \"\\u%04X\": %d", cp, 4 + b);
    }
    snprintf(v + o, cap - o, "%s%s}", *extra ? ", " : "", extra);
    return v;
}

/* Load vocab (JSON text) + merges; return the status and leave err filled. */
static hl_status try_load(const char *vocab, const char *merges, bpe *t, hl_err *err)
{
    const char *vp = tmp_write("vocab.json", vocab);
    const char *mp = tmp_write("merges.txt", merges);
    return bpe_load(t, vp, mp, err);
}

static void expect_error(const char *vocab, const char *merges, hl_status code, const char *file,
                         const char *needle)
{
    bpe t;
    hl_err err;
    hl_err_clear(&err);
    hl_status st = try_load(vocab, merges, &t, &err);
    CU_ASSERT_EQUAL(st, code);
    bool named = strstr(err.msg, file) != NULL && strstr(err.msg, tmpdir) != NULL;
    bool has = strstr(err.msg, needle) != NULL;
    if (st != code || !named || !has)
        fprintf(stderr, "  want %s and \"%s\" in: %s\n", file, needle, err.msg);
    CU_ASSERT(named);
    CU_ASSERT(has);
    bpe_free(&t);
}

static void test_small_vocab_any_order(void)
{
    /* merges: "h e" (rank 0), "Ġ t" (1), "Ġt he" (2); results at sparse ids. */
    char *v = small_vocab("\"he\": 700, \"\\u0120t\": 300, \"\\u0120the\": 1000");
    bpe t;
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(try_load(v, "#version: 0.2\r\nh e\r\n\r\n\\u0120 t\n", &t, &err),
                          HL_ERR_FORMAT); /* "\u0120" is not JSON-decoded in merges.txt */
    CU_ASSERT_EQUAL_FATAL(try_load(v, "#version: 0.2\r\nh e\r\n\r\n\xc4\xa0 t\n\xc4\xa0t he", &t,
                                   &err),
                          HL_OK);
    CU_ASSERT_EQUAL(t.id_s, 0);
    CU_ASSERT_EQUAL(t.id_pad, 1);
    CU_ASSERT_EQUAL(t.id_slash_s, 2);
    CU_ASSERT_EQUAL(t.id_unk, 3);
    CU_ASSERT_EQUAL(t.id_endoftext, -1);
    CU_ASSERT_EQUAL(bpe_vocab_size(&t), 1001);
    int32_t ids[8];
    size_t n;
    CU_ASSERT_EQUAL(bpe_encode(&t, " the", 4, ids, 8, &n, &err), HL_OK);
    CU_ASSERT(n == 1 && ids[0] == 1000);
    CU_ASSERT_EQUAL(bpe_encode(&t, "the", 3, ids, 8, &n, &err), HL_OK);
    CU_ASSERT(n == 2 && ids[0] == 4 + 't' && ids[1] == 700);
    CU_ASSERT_EQUAL(bpe_encode(&t, "<s>", 3, ids, 8, &n, &err), HL_OK);
    CU_ASSERT_EQUAL(n, 3); /* special text is not special */
    char out[16];
    size_t len;
    int32_t dec[3] = {0, 1000, 2};
    CU_ASSERT_EQUAL(bpe_decode(&t, dec, 3, out, sizeof out, &len, &err), HL_OK);
    CU_ASSERT_STRING_EQUAL(out, "<s> the</s>");
    int32_t hole = 500;
    CU_ASSERT_EQUAL(bpe_decode(&t, &hole, 1, out, sizeof out, &len, &err), HL_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "500"));
    bpe_free(&t);
    free(v);
}

static void test_malformed_vocab(void)
{
    const char *m = "#version: 0.2\n";
    expect_error("[1, 2]", m, HL_ERR_FORMAT, "vocab.json", "object");
    expect_error("{\"a\": 1.5}", m, HL_ERR_FORMAT, "vocab.json", "\"a\"");
    expect_error("{\"a\": \"1\"}", m, HL_ERR_FORMAT, "vocab.json", "integer");
    expect_error("{\"a\": -1}", m, HL_ERR_FORMAT, "vocab.json", "\"a\"");
    expect_error("{\"a\": 10000000}", m, HL_ERR_FORMAT, "vocab.json", "\"a\"");
    expect_error("{}", m, HL_ERR_FORMAT, "vocab.json", "no tokens");
    expect_error("{\"a\": 1,\n \"b\": }", m, HL_ERR_FORMAT, "vocab.json:2", "JSON");
    expect_error("{\"a\": 0}", m, HL_ERR_FORMAT, "vocab.json", "byte 0x00");
    char *v = small_vocab("\"dup\": 7");
    expect_error(v, m, HL_ERR_FORMAT, "vocab.json", "id 7");
    free(v);
    v = small_vocab("\"ab\": 300, \"ab\": 301");
    expect_error(v, m, HL_ERR_FORMAT, "vocab.json", "\"ab\" appears twice");
    free(v);

    /* A literal token (a space is outside the byte alphabet) before a long
     * byte-level token: pass 3 once converted the long token again at the
     * pool's end and wrote past it (heap overflow, issue 15; ASan sees it). */
    {
        char extra[400];
        int o = snprintf(extra, sizeof extra, "\"a b\": 300, \"");
        for (int i = 0; i < 300; i++)
            extra[o++] = 'x';
        snprintf(extra + o, sizeof extra - (size_t)o, "\": 301");
        v = small_vocab(extra);
        bpe t;
        hl_err err;
        CU_ASSERT_EQUAL(try_load(v, m, &t, &err), HL_OK);
        int32_t ids[4];
        size_t n;
        CU_ASSERT_EQUAL(bpe_encode(&t, "a b", 3, ids, 4, &n, &err), HL_OK);
        bpe_free(&t);
        free(v);
    }

    bpe t;
    hl_err err;
    char missing[160];
    snprintf(missing, sizeof missing, "%s/no-such-vocab.json", tmpdir);
    CU_ASSERT_EQUAL(bpe_load(&t, missing, MERGES_PATH, &err), HL_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no-such-vocab.json"));
    CU_ASSERT_EQUAL(bpe_vocab_size(&t), 0);
    bpe_free(&t); /* harmless after a failed load */
}

static void test_malformed_merges(void)
{
    char *v = small_vocab("\"ab\": 300");
    expect_error(v, "#version: 0.2\na b\nab\n", HL_ERR_FORMAT, "merges.txt:3", "two tokens");
    expect_error(v, "a b c\n", HL_ERR_FORMAT, "merges.txt:1", "two tokens");
    expect_error(v, "a  b\n", HL_ERR_FORMAT, "merges.txt:1", "two tokens");
    expect_error(v, "a b\nb c\n", HL_ERR_FORMAT, "merges.txt:2", "concatenation");
    expect_error(v, "a b\nxyz c\n", HL_ERR_FORMAT, "merges.txt:2", "\"xyz\" is not in");
    expect_error(v, "#version: 0.2\n#version: 0.2\n", HL_ERR_FORMAT, "merges.txt:2", "is not in");
    bpe t;
    hl_err err;
    char missing[160];
    snprintf(missing, sizeof missing, "%s/no-such-merges.txt", tmpdir);
    CU_ASSERT_EQUAL(bpe_load(&t, tmp_write("vocab.json", v), missing, &err), HL_ERR_IO);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "no-such-merges.txt"));
    /* An empty merges file is a valid byte-only tokenizer. */
    CU_ASSERT_EQUAL_FATAL(try_load(v, "", &t, &err), HL_OK);
    int32_t ids[4];
    size_t n;
    CU_ASSERT_EQUAL(bpe_encode(&t, "ab", 2, ids, 4, &n, &err), HL_OK);
    CU_ASSERT(n == 2 && ids[0] == 4 + 'a' && ids[1] == 4 + 'b');
    bpe_free(&t);
    free(v);
}

/* ---- suite -------------------------------------------------------------- */

/* ---- tokenizer.json ------------------------------------------------------ */

/* GPT-2's own files as one tokenizer.json (ByteLevel pre-tokenizer with its
 * regex, merges as "a b" strings or ["a", "b"] pairs, one added token): it
 * must encode every golden text exactly as vocab.json + merges.txt do. */
static char *gpt2_tokenizer_json(bool pairs, const char *pre_tokenizer)
{
    size_t vl, ml;
    char *vt = slurp(VOCAB_PATH, &vl), *mt = slurp(MERGES_PATH, &ml);
    cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddItemToObject(model, "vocab", cJSON_Parse(vt));
    cJSON *merges = cJSON_AddArrayToObject(model, "merges");
    char *save = NULL;
    for (char *l = strtok_r(mt, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] == '#')
            continue;
        char *sp = strchr(l, ' ');
        if (!sp)
            continue;
        if (pairs) {
            *sp = '\0';
            cJSON *pr = cJSON_CreateArray();
            cJSON_AddItemToArray(pr, cJSON_CreateString(l));
            cJSON_AddItemToArray(pr, cJSON_CreateString(sp + 1));
            cJSON_AddItemToArray(merges, pr);
        } else
            cJSON_AddItemToArray(merges, cJSON_CreateString(l));
    }
    cJSON_AddBoolToObject(model, "byte_fallback", false);
    cJSON_AddNullToObject(root, "normalizer");
    cJSON_AddItemToObject(root, "pre_tokenizer", cJSON_Parse(pre_tokenizer));
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    cJSON *a = cJSON_CreateObject();
    cJSON_AddNumberToObject(a, "id", 50257);
    cJSON_AddStringToObject(a, "content", "<|begin_of_text|>");
    cJSON_AddBoolToObject(a, "special", true);
    cJSON_AddItemToArray(added, a);
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    free(vt);
    free(mt);
    return out;
}

static void test_tokenizer_json_equals_vocab_merges(void)
{
    static const char *const texts[] = {
        "The movie was great. It was fun to watch, and the music was good.",
        "I'd see it again with my 2 friends, but the ending wasn't terrible!\n\n  Really?",
        "  leading spaces, tabs\tand 12345 numbers; caf\xc3\xa9 \xe6\x97\xa5\xe6\x9c\xac",
    };
    for (int pairs = 0; pairs < 2; pairs++) {
        char *j = gpt2_tokenizer_json(pairs, "{\"type\": \"ByteLevel\", \"add_prefix_space\": "
                                              "false, \"trim_offsets\": true, \"use_regex\": true}");
        const char *p = tmp_write("tokenizer.json", j);
        free(j);
        bpe t;
        hl_err err;
        CU_ASSERT_EQUAL_FATAL(bpe_load_tokenizer_json(&t, p, &err), HL_OK);
        CU_ASSERT_EQUAL(bpe_token_to_id(&t, "<|begin_of_text|>", 17), 50257);
        CU_ASSERT_EQUAL(bpe_vocab_size(&t), 50258);
        CU_ASSERT_EQUAL(t.prepend_id, -1);
        for (size_t k = 0; k < sizeof texts / sizeof texts[0]; k++) {
            int32_t *a = NULL, *b = NULL;
            size_t na = 0, nb = 0;
            CU_ASSERT_EQUAL(bpe_encode_alloc(&t, texts[k], strlen(texts[k]), &a, &na, &err), HL_OK);
            CU_ASSERT_EQUAL(bpe_encode_alloc(&gpt2, texts[k], strlen(texts[k]), &b, &nb, &err),
                            HL_OK);
            CU_ASSERT(ids_match("tokenizer.json vs vocab.json", a, na, b, nb));
            free(a);
            free(b);
        }
        bpe_free(&t);
    }
}

/* Llama 3's and Qwen2's Split regex: where they cut differently from GPT-2's
 * (digit runs of at most 3 or 1, a non-letter glued to a word, newline runs
 * on their own, case-insensitive contractions), seen through merges that
 * would cross those cuts. */
static void test_tokenizer_json_llama3_split(void)
{
    static const char llama3[] =
        "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
        "{\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|"
        "\\\\p{N}{1,3}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|"
        "\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, "
        "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": true, "
        "\"use_regex\": false}]}";
    char *j = gpt2_tokenizer_json(false, llama3);
    const char *p = tmp_write("tokenizer.json", j);
    free(j);
    bpe t;
    hl_err err;
    if (bpe_load_tokenizer_json(&t, p, &err) != HL_OK)
        fprintf(stderr, "\n  %s", err.msg);
    CU_ASSERT_EQUAL_FATAL(t.pretok, BPE_PRETOK_LLAMA3);
    /* text -> the pieces each regex makes: GPT-2's, Llama 3's, Qwen2's */
    static const struct {
        const char *text;
        const char *pieces[3][8];
    } splits[] = {
        {"12345", {{"12345"}, {"123", "45"}, {"1", "2", "3", "4", "5"}}},
        {"hello,world", {{"hello", ",", "world"}, {"hello", ",world"}, {"hello", ",world"}}},
        {"a\n\n  b", {{"a", "\n\n ", " b"}, {"a", "\n\n", " ", " b"}, {"a", "\n\n", " ", " b"}}},
        {"I'M here", {{"I", "'", "M", " here"}, {"I", "'M", " here"}, {"I", "'M", " here"}}},
        {"x!!\n\ny", {{"x", "!!", "\n", "\n", "y"}, {"x", "!!\n\n", "y"}, {"x", "!!\n\n", "y"}}},
        {"end   ", {{"end", "   "}, {"end", "   "}, {"end", "   "}}},
        {" 42x", {{" 42", "x"}, {" ", "42", "x"}, {" ", "4", "2", "x"}}},
        {"caf\xc3\xa9-\xc3\xa9t\xc3\xa9", {{"caf\xc3\xa9", "-", "\xc3\xa9t\xc3\xa9"},
                                            {"caf\xc3\xa9", "-\xc3\xa9t\xc3\xa9"},
                                            {"caf\xc3\xa9", "-\xc3\xa9t\xc3\xa9"}}},
    };
    for (int re = 0; re < 3; re++) {
        bpe probe = t;
        probe.pretok = re == 0 ? BPE_PRETOK_GPT2 : re == 1 ? BPE_PRETOK_LLAMA3 : BPE_PRETOK_QWEN2;
        for (size_t k = 0; k < sizeof splits / sizeof splits[0]; k++) {
            const char *x = splits[k].text;
            size_t len = strlen(x), at = 0;
            int q = 0;
            bool ok = true;
            while (at < len) {
                size_t e = bpe_pretok_end(&probe, x, len, at);
                const char *want = splits[k].pieces[re][q++];
                ok = ok && want && strlen(want) == e - at && !memcmp(want, x + at, e - at);
                at = e;
            }
            ok = ok && !splits[k].pieces[re][q];
            if (!ok)
                fprintf(stderr, "\n  regex %d splits \"%s\" differently", re, x);
            CU_ASSERT(ok);
        }
    }
    /* the same through encode: pieces BPE-encoded one by one */
    static const struct {
        const char *text;
        const char *pieces[8];
    } cases[] = {
        {"12345", {"123", "45"}},
        {"a\n\n  b", {"a", "\n\n", " ", " b"}},
        {"x!!\n\ny", {"x", "!!\n\n", "y"}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int32_t want[64], *got = NULL;
        size_t nw = 0, ng = 0;
        for (int q = 0; q < 8 && cases[k].pieces[q]; q++) {
            size_t n = 0;
            CU_ASSERT_EQUAL_FATAL(bpe_encode(&gpt2, cases[k].pieces[q], strlen(cases[k].pieces[q]),
                                             want + nw, 64 - nw, &n, &err),
                                  HL_OK);
            nw += n;
        }
        CU_ASSERT_EQUAL(bpe_encode_alloc(&t, cases[k].text, strlen(cases[k].text), &got, &ng, &err),
                        HL_OK);
        char label[64];
        snprintf(label, sizeof label, "llama3 split case %zu", k);
        CU_ASSERT(ids_match(label, got, ng, want, nw));
        free(got);
    }
    bpe_free(&t);
}

/* SentencePiece-style BPE (Llama 2's layout and the Metaspace one): a tiny
 * model trained with Debian's sentencepiece and converted as HF does; every
 * golden encoding is sentencepiece's own (tests/fixtures/tokenizers). */
static void test_tokenizer_json_sentencepiece(void)
{
    static const char *const files[] = {
        HELENE_TESTDIR "/fixtures/tokenizers/spm-bpe/tokenizer.json",
        HELENE_TESTDIR "/fixtures/tokenizers/spm-bpe-metaspace/tokenizer.json"};
    static const char *const goldens[] = {
        HELENE_TESTDIR "/fixtures/tokenizers/spm-bpe/golden.jsonl",
        HELENE_TESTDIR "/fixtures/tokenizers/spm-bpe-metaspace/golden.jsonl"};
    for (int f = 0; f < 2; f++) {
        size_t glen;
        char *golden = slurp(goldens[f], &glen);
        CU_ASSERT_PTR_NOT_NULL_FATAL(golden);
        bpe t;
        hl_err err;
        if (bpe_load_tokenizer_json(&t, files[f], &err) != HL_OK)
            fprintf(stderr, "\n  %s", err.msg);
        CU_ASSERT_FATAL(t.spm);
        char *copy = strdup(golden), *save = NULL;
        int cases = 0, fallback = 0;
        for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
            cJSON *o = cJSON_Parse(l);
            CU_ASSERT_PTR_NOT_NULL_FATAL(o);
            const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
            const cJSON *ids = cJSON_GetObjectItemCaseSensitive(o, "ids");
            CU_ASSERT_FATAL(cJSON_IsString(text) && cJSON_IsArray(ids));
            int32_t want[2048];
            size_t nw = 0;
            const cJSON *v;
            cJSON_ArrayForEach(v, ids)
            {
                CU_ASSERT_FATAL(nw < 2048);
                want[nw] = (int32_t)v->valuedouble;
                for (int b = 0; b < 256; b++)
                    fallback += t.fallback_id[b] == want[nw];
                nw++;
            }
            int32_t *got = NULL;
            size_t ng = 0;
            CU_ASSERT_EQUAL(bpe_encode_alloc(&t, text->valuestring, strlen(text->valuestring),
                                             &got, &ng, &err),
                            HL_OK);
            char label[96];
            snprintf(label, sizeof label, "sentencepiece %s golden %d", f ? "metaspace" : "legacy",
                     cases + 1);
            CU_ASSERT(ids_match(label, got, ng, want, nw));
            /* and back: "▁" is a space, <0xXX> its byte, the leading "▁" dropped */
            char *back = NULL;
            size_t nb = 0;
            if (ng && bpe_decode_alloc(&t, got, ng, &back, &nb, &err) == HL_OK &&
                strcmp(back, text->valuestring) != 0 && text->valuestring[0] != ' ')
                fprintf(stderr, "\n  %s: decodes to \"%s\"", label, back);
            free(back);
            free(got);
            cJSON_Delete(o);
            cases++;
        }
        fprintf(stderr, "\n  %s: %d goldens, %d byte-fallback tokens", files[f], cases, fallback);
        CU_ASSERT(cases >= 15);
        CU_ASSERT(fallback > 0);
        free(copy);
        free(golden);
        bpe_free(&t);
    }
}

/* Merges are read from tokenizer.json as they are: Llama 2's vocabulary has a
 * literal "\r" token (merge "; \r"), and the pair form's parts may hold
 * spaces.  Both were lost when the list was turned into merges.txt lines. */
static void test_tokenizer_json_merge_parts(void)
{
    static const char json[] =
        "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"unk_token\": \"<unk>\","
        " \"vocab\": {\"<unk>\": 0, \"\\u2581\": 1, \";\": 2, \"\\r\": 3, \";\\r\": 4,"
        " \"\\u2581;\\r\": 5, \"x\": 6, \"x\\u2581\": 7, \"x \": 8},"
        " \"merges\": [\"; \\r\", \"\\u2581 ;\\r\", [\"x\", \"\\u2581\"]]},"
        " \"normalizer\": {\"type\": \"Sequence\", \"normalizers\": ["
        "{\"type\": \"Prepend\", \"prepend\": \"\\u2581\"},"
        " {\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\\u2581\"}]}}";
    const char *p = tmp_write("tokenizer.json", json);
    bpe t;
    hl_err err;
    hl_err_clear(&err);
    hl_status st = bpe_load_tokenizer_json(&t, p, &err);
    if (st != HL_OK)
        fprintf(stderr, "\n  %s", err.msg);
    CU_ASSERT_EQUAL_FATAL(st, HL_OK);
    CU_ASSERT_EQUAL(t.n_merges, 3);
    int32_t *got = NULL;
    size_t ng = 0;
    CU_ASSERT_EQUAL(bpe_encode_alloc(&t, ";\r", 2, &got, &ng, &err), HL_OK);
    CU_ASSERT(ids_match("\";\\r\"", got, ng, (const int32_t[]){5}, 1));
    free(got);
    bpe_free(&t);
    /* a pair whose part holds a space is a merge of its own */
    static const char pair[] =
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a b\": 0, \"c\": 1, \"a bc\": 2},"
        " \"merges\": [[\"a b\", \"c\"]]}, \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}";
    p = tmp_write("tokenizer.json", pair);
    st = bpe_load_tokenizer_json(&t, p, &err);
    /* byte-level BPE needs all 256 bytes, so the load stops at the vocabulary,
     * not at the merge: the pair's shape was accepted */
    CU_ASSERT_NOT_EQUAL(st, HL_OK);
    CU_ASSERT_PTR_NULL(strstr(err.msg, "merge"));
}

static void test_tokenizer_json_refusals(void)
{
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"[1]", "not a JSON object"},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": []}}", "Unigram"},
        {"{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {}, "
         "\"merges\": []}}",
         "SentencePiece"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"normalizer\": "
         "{\"type\": \"NFKC\"}}",
         "normalizer"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", "pre_tokenizer"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"pre_tokenizer\": "
         "{\"type\": \"Metaspace\"}}",
         "Metaspace"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"pre_tokenizer\": "
         "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": "
         "{\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}}",
         "regex"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": [7]}, \"pre_tokenizer\": "
         "{\"type\": \"ByteLevel\"}}",
         "merge"},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}, \"pre_tokenizer\": "
         "{\"type\": \"ByteLevel\"}, \"added_tokens\": [{\"content\": \"x\"}]}",
         "added token"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *p = tmp_write("tokenizer.json", cases[i].json);
        bpe t;
        hl_err err;
        hl_err_clear(&err);
        CU_ASSERT_NOT_EQUAL(bpe_load_tokenizer_json(&t, p, &err), HL_OK);
        bool named = strstr(err.msg, "tokenizer.json") != NULL;
        bool has = strstr(err.msg, cases[i].needle) != NULL;
        if (!named || !has)
            fprintf(stderr, "\n  case %zu: want \"%s\" in: %s", i, cases[i].needle, err.msg);
        CU_ASSERT(named && has);
    }
}

static int suite_init(void)
{
    hl_err err;
    if (bpe_load(&gpt2, VOCAB_PATH, MERGES_PATH, &err) != HL_OK) {
        fprintf(stderr, "cannot load GPT-2 tokenizer: %s\n", err.msg);
        return 1;
    }
    snprintf(tmpdir, sizeof tmpdir, "/tmp/helene-test-bpe-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : 1;
}

static int suite_clean(void)
{
    bpe_free(&gpt2);
    char p[160];
    snprintf(p, sizeof p, "%s/vocab.json", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/merges.txt", tmpdir);
    unlink(p);
    snprintf(p, sizeof p, "%s/tokenizer.json", tmpdir);
    unlink(p);
    rmdir(tmpdir);
    return 0;
}

/* The byte alphabet against GPT-2's bytes_to_unicode as its source builds it:
 * the printable ranges keep their byte, the rest take 256, 257, ... in byte
 * order; space is U+0120 ("Ġ"); every byte a different code point. */
static void test_byte_alphabet(void)
{
    int next = 256;
    bool seen[324] = {false};
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
        int want = keep ? b : next++;
        CU_ASSERT_EQUAL(bpe_byte_codepoint(b), want);
        int cp = bpe_byte_codepoint(b);
        CU_ASSERT_FATAL(cp >= 0 && cp < 324);
        CU_ASSERT(!seen[cp]);
        seen[cp] = true;
    }
    CU_ASSERT_EQUAL(next, 256 + 68);
    CU_ASSERT_EQUAL(bpe_byte_codepoint(' '), 0x120);
}

static void register_bpe(void)
{
    CU_pSuite s = CU_add_suite("bpe", suite_init, suite_clean);
    TEST_ADD(s, test_golden_testplans);
    TEST_ADD(s, test_byte_alphabet);
    TEST_ADD(s, test_golden_extra);
    TEST_ADD(s, test_roundtrip_random_bytes);
    TEST_ADD(s, test_invalid_utf8);
    TEST_ADD(s, test_label_words_and_specials);
    TEST_ADD(s, test_buffer_limits);
    TEST_ADD(s, test_unicode_classes);
    TEST_ADD(s, test_concurrent_encode);
    TEST_ADD(s, test_small_vocab_any_order);
    TEST_ADD(s, test_malformed_vocab);
    TEST_ADD(s, test_malformed_merges);
    TEST_ADD(s, test_tokenizer_json_equals_vocab_merges);
    TEST_ADD(s, test_tokenizer_json_llama3_split);
    TEST_ADD(s, test_tokenizer_json_sentencepiece);
    TEST_ADD(s, test_tokenizer_json_merge_parts);
    TEST_ADD(s, test_tokenizer_json_refusals);
}

TEST_MAIN(register_bpe)

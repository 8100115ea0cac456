/* ltjs_golden.c - Llama 2's tokenizer against the goldens of npm
 * llama-tokenizer-js@1.2.2.
 *
 * Usage: ltjs_golden PATH/llama-tokenizer.js SCRATCH_DIR
 *
 * That package is an independent JavaScript implementation of Llama 2's
 * tokenizer; it ships Meta's vocabulary (base64 of the tokens joined by '\n',
 * in id order) and merges (base64 of little-endian uint16 id pairs, in
 * priority order), both taken from Llama 2's tokenizer.json, and a list of
 * testCase("text", [ids]) goldens.  The vocabulary is under Meta's licence,
 * so it is never committed: tests/test_llama2_tokenizer.sh fetches the
 * package at test time and runs this program on it.
 *
 * This program rebuilds Llama 2's tokenizer.json in the layout Hugging Face
 * ships (the Prepend + Replace normalizer, byte fallback, the <s> template),
 * loads it with bpe_load_tokenizer_json, and checks every golden: <s> first
 * (the post-processor's prepend_id), then the encoding, then that decoding
 * gives the text back.  Exit status 0 = all pass, 1 = a mismatch, 2 = the
 * package is not what this program expects.
 */
#include "bpe.h"
#include "fileio.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int b64val(int c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decode the base64 string literal that follows `const NAME = "` in js.
 * Returns a malloc'd buffer (NUL-terminated) and its length, or NULL. */
static unsigned char *js_base64_const(const char *js, const char *name, size_t *len)
{
    char key[128];
    snprintf(key, sizeof key, "const %s = \"", name);
    const char *p = strstr(js, key);
    if (!p)
        return NULL;
    p += strlen(key);
    const char *end = strchr(p, '"');
    if (!end)
        return NULL;
    unsigned char *out = malloc((size_t)(end - p) / 4 * 3 + 4);
    if (!out)
        return NULL;
    size_t n = 0;
    unsigned acc = 0;
    int bits = 0;
    for (; p < end; p++) {
        if (*p == '=')
            break;
        int v = b64val((unsigned char)*p);
        if (v < 0) {
            free(out);
            return NULL;
        }
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[n++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    out[n] = '\0';
    *len = n;
    return out;
}

static size_t put_utf8(char *o, unsigned long cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Parse a JavaScript string literal at *pp ('...' or "..."): the escapes the
 * package uses and \uXXXX (with surrogate pairs).  Returns a malloc'd UTF-8
 * string, *pp past the closing quote; NULL if malformed. */
static char *js_string(const char **pp)
{
    const char *p = *pp;
    char q = *p++;
    if (q != '"' && q != '\'')
        return NULL;
    const char *end = p;
    while (*end && *end != q)
        end += (*end == '\\' && end[1]) ? 2 : 1;
    if (*end != q)
        return NULL;
    char *out = malloc((size_t)(end - p) * 2 + 1), *o = out;
    if (!out)
        return NULL;
    while (p < end) {
        if (*p != '\\') {
            *o++ = *p++;
            continue;
        }
        p++;
        char c = *p++;
        switch (c) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'u': {
            unsigned long cp = strtoul((char[5]){p[0], p[1], p[2], p[3], 0}, NULL, 16);
            p += 4;
            if (cp >= 0xD800 && cp < 0xDC00 && p[0] == '\\' && p[1] == 'u') {
                unsigned long lo = strtoul((char[5]){p[2], p[3], p[4], p[5], 0}, NULL, 16);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            o += put_utf8(o, cp);
            break;
        }
        default: *o++ = c; break; /* \\ \" \' */
        }
    }
    *o = '\0';
    *pp = end + 1;
    return out;
}

/* Hugging Face's Llama 2 tokenizer.json without its vocabulary and merges. */
static const char skeleton[] =
    "{\"version\":\"1.0\",\"truncation\":null,\"padding\":null,"
    "\"added_tokens\":["
    "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true},"
    "{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true},"
    "{\"id\":2,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,"
    "\"normalized\":false,\"special\":true}],"
    "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":["
    "{\"type\":\"Prepend\",\"prepend\":\"\xe2\x96\x81\"},"
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xe2\x96\x81\"}]},"
    "\"pre_tokenizer\":null,"
    "\"post_processor\":{\"type\":\"TemplateProcessing\","
    "\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],"
    "\"pair\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
    "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}},"
    "{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":1}},"
    "{\"Sequence\":{\"id\":\"B\",\"type_id\":1}}],"
    "\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],\"tokens\":[\"<s>\"]}}},"
    "\"decoder\":{\"type\":\"Sequence\",\"decoders\":["
    "{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xe2\x96\x81\"},\"content\":\" \"},"
    "{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},"
    "{\"type\":\"Strip\",\"content\":\" \",\"start\":1,\"stop\":0}]},"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\","
    "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":true,"
    "\"byte_fallback\":true}}";

/* Write SCRATCH/tokenizer.json from the package's vocabulary and merges. */
static int write_tokenizer_json(const char *js, const char *path, int *nvocab, int *nmerges)
{
    size_t vlen, mlen;
    unsigned char *vocab = js_base64_const(js, "llama_vocab_base64", &vlen);
    unsigned char *merges = js_base64_const(js, "llama_merges_binary", &mlen);
    if (!vocab || !merges || mlen % 4) {
        fprintf(stderr, "ltjs_golden: the vocabulary or merges constant is missing or bad\n");
        free(vocab);
        free(merges);
        return 2;
    }
    /* tokens by id: split on '\n' in place */
    size_t cap = 40000, n = 0;
    char **tok = malloc(cap * sizeof *tok);
    char *s = (char *)vocab;
    for (;;) {
        if (n == cap)
            break;
        tok[n++] = s;
        char *nl = strchr(s, '\n');
        if (!nl)
            break;
        *nl = '\0';
        s = nl + 1;
    }
    cJSON *root = cJSON_Parse(skeleton);
    cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    cJSON *v = cJSON_AddObjectToObject(model, "vocab");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToObject(v, tok[i], cJSON_CreateNumber((double)i));
    cJSON *m = cJSON_AddArrayToObject(model, "merges");
    size_t nm = mlen / 4;
    int rc = 0;
    for (size_t i = 0; i < nm && !rc; i++) {
        unsigned a = merges[4 * i] | (unsigned)merges[4 * i + 1] << 8;
        unsigned b = merges[4 * i + 2] | (unsigned)merges[4 * i + 3] << 8;
        if (a >= n || b >= n) {
            fprintf(stderr, "ltjs_golden: merge %zu names token %u of %zu\n", i, a > b ? a : b, n);
            rc = 2;
            break;
        }
        size_t la = strlen(tok[a]), lb = strlen(tok[b]);
        char *pair = malloc(la + lb + 2);
        memcpy(pair, tok[a], la);
        pair[la] = ' ';
        memcpy(pair + la + 1, tok[b], lb + 1);
        cJSON_AddItemToArray(m, cJSON_CreateString(pair));
        free(pair);
    }
    char *text = rc ? NULL : cJSON_PrintUnformatted(root);
    if (text) {
        FILE *f = fopen(path, "wb");
        if (!f || fputs(text, f) == EOF || fclose(f) != 0) {
            fprintf(stderr, "ltjs_golden: cannot write %s: %s\n", path, strerror(errno));
            rc = 2;
        }
    }
    *nvocab = (int)n;
    *nmerges = (int)nm;
    free(text);
    cJSON_Delete(root);
    free(tok);
    free(vocab);
    free(merges);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: ltjs_golden PATH/llama-tokenizer.js SCRATCH_DIR\n");
        return 2;
    }
    char *js;
    hl_err err;
    if (file_read(argv[1], (size_t)64 << 20, &js, NULL, &err)) {
        fprintf(stderr, "ltjs_golden: %s\n", err.msg);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/tokenizer.json", argv[2]);
    int nvocab = 0, nmerges = 0;
    int rc = write_tokenizer_json(js, path, &nvocab, &nmerges);
    if (rc) {
        free(js);
        return rc;
    }
    printf("llama-tokenizer-js: %d tokens, %d merges -> %s\n", nvocab, nmerges, path);

    bpe t;
    if (bpe_load_tokenizer_json(&t, path, &err) != HL_OK) {
        fprintf(stderr, "ltjs_golden: %s\n", err.msg);
        free(js);
        return 1;
    }
    if (!t.spm || t.prepend_id != 1) {
        fprintf(stderr, "ltjs_golden: loaded as %s with prepend id %d (want SentencePiece BPE, <s> = 1)\n",
                t.spm ? "SentencePiece BPE" : "byte-level BPE", (int)t.prepend_id);
        rc = 1;
    }

    /* the goldens: testCase(<string>, [<ids>]) outside the function's own
     * definition (`function testCase(`) */
    int cases = 0, failed = 0;
    for (const char *p = js; (p = strstr(p, "testCase(")) != NULL;) {
        if (p >= js + 9 && strncmp(p - 9, "function ", 9) == 0) {
            p += 9;
            continue;
        }
        p += 9;
        char *text = js_string(&p);
        const char *lb = text ? strchr(p, '[') : NULL;
        const char *rb = lb ? strchr(lb, ']') : NULL;
        if (!text || !rb) {
            fprintf(stderr, "ltjs_golden: cannot parse golden %d\n", cases + 1);
            free(text);
            rc = 2;
            break;
        }
        int32_t want[4096];
        size_t nw = 0;
        for (const char *q = lb + 1; q < rb && nw < 4096;) {
            char *e;
            long id = strtol(q, &e, 10);
            if (e == q) {
                q++;
                continue;
            }
            want[nw++] = (int32_t)id;
            q = e;
        }
        p = rb + 1;
        cases++;

        int32_t *got = NULL;
        size_t ng = 0;
        int ok = bpe_encode_alloc(&t, text, strlen(text), &got, &ng, &err) == HL_OK;
        ok = ok && nw == ng + 1 && want[0] == t.prepend_id &&
             (ng == 0 || memcmp(got, want + 1, ng * sizeof *got) == 0);
        char *back = NULL;
        size_t nb = 0;
        int round = ok && bpe_decode_alloc(&t, got, ng, &back, &nb, &err) == HL_OK &&
                    nb == strlen(text) && memcmp(back, text, nb) == 0;
        char shown[64]; /* the text with \n \t \r spelled out, cut at ~40 bytes */
        size_t k = 0;
        for (const char *c = text; *c && k < 40; c++) {
            const char *esc = *c == '\n' ? "\\n" : *c == '\t' ? "\\t" : *c == '\r' ? "\\r" : NULL;
            if (esc) {
                memcpy(shown + k, esc, 2);
                k += 2;
            } else
                shown[k++] = *c;
        }
        while (k > 0 && k < strlen(text) && ((unsigned char)shown[k] & 0xC0) == 0x80)
            k--; /* do not cut a character */
        shown[k] = '\0';
        printf("%s golden %2d: %3zu tokens%s  \"%s%s\"\n", ok && round ? "ok  " : "FAIL", cases,
               nw, ok && !round ? " (decode differs)" : "", shown, text[k] && k >= 40 ? "..." : "");
        if (!ok) {
            printf("   want:");
            for (size_t i = 0; i < nw && i < 24; i++)
                printf(" %d", (int)want[i]);
            printf("\n   got:  %d", (int)t.prepend_id);
            for (size_t i = 0; i < ng && i < 23; i++)
                printf(" %d", (int)got[i]);
            printf("\n");
        }
        failed += !(ok && round);
        free(back);
        free(got);
        free(text);
    }
    bpe_free(&t);
    free(js);
    printf("%d goldens, %d failed\n", cases, failed);
    if (cases < 12) {
        fprintf(stderr, "ltjs_golden: expected 12 goldens in the package, found %d\n", cases);
        return 2;
    }
    return rc ? rc : failed ? 1 : 0;
}

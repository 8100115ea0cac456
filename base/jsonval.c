/* jsonval.c - see jsonval.h. */
#include "jsonval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fileio.h"

#define JSON_EXACT_MAX 9007199254740992.0 /* 2^53 */

bool json_u64(const cJSON *it, uint64_t max, uint64_t *out)
{
    if (!cJSON_IsNumber(it))
        return false;
    double v = it->valuedouble;
    double lim = (double)max < JSON_EXACT_MAX ? (double)max : JSON_EXACT_MAX;
    if (!isfinite(v) || v < 0 || v > lim || v != floor(v))
        return false;
    *out = (uint64_t)v;
    return true;
}

bool json_text_has_nul_escape(const char *text, size_t n)
{
    for (size_t i = 0; i + 1 < n; i++) {
        if (text[i] != '\\')
            continue;
        if (text[i + 1] == 'u' && i + 5 < n && !memcmp(text + i + 2, "0000", 4))
            return true;
        i++; /* skip the escaped character: "\\u0000" is text, not a NUL */
    }
    return false;
}

const char *json_duplicate_key(const cJSON *it)
{
    if (!it)
        return NULL;
    for (const cJSON *a = it->child; a; a = a->next) {
        if (cJSON_IsObject(it) && a->string)
            for (const cJSON *b = a->next; b; b = b->next)
                if (b->string && !strcmp(a->string, b->string))
                    return a->string;
        const char *d = json_duplicate_key(a);
        if (d)
            return d;
    }
    return NULL;
}

hl_status json_read_file(const char *path, size_t max, cJSON **out, hl_err *err)
{
    *out = NULL;
    char *text;
    size_t n;
    hl_status st = file_read(path, max, &text, &n, err);
    if (st)
        return st;
    if (memchr(text, '\0', n)) {
        free(text);
        return hl_err_set(err, HL_ERR_FORMAT, "%s: contains a NUL byte; not a JSON file", path);
    }
    /* n + 1: cJSON checks the terminating NUL when asked to refuse trailing text */
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(text, n + 1, &end, true);
    if (!j) {
        size_t at = end && end >= text && end <= text + n ? (size_t)(end - text) : 0;
        int line = 1;
        for (size_t i = 0; i < at; i++)
            line += text[i] == '\n';
        free(text);
        return hl_err_set(err, HL_ERR_FORMAT, "%s:%d: not valid JSON (near byte %zu)", path, line,
                          at);
    }
    bool nul = json_text_has_nul_escape(text, n);
    free(text);
    const char *dup = json_duplicate_key(j);
    if (nul || dup) {
        if (nul)
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: a string holds a NUL character (\\u0000), "
                            "which would cut it short", path);
        else
            st = hl_err_set(err, HL_ERR_FORMAT, "%s: key \"%.60s\" appears twice", path, dup);
        cJSON_Delete(j);
        return st;
    }
    *out = j;
    return HL_OK;
}

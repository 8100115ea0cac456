/* jsonval.c - see jsonval.h. */
#include "jsonval.h"

#include <math.h>
#include <string.h>

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

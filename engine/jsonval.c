/* jsonval.c - see jsonval.h. */
#include "jsonval.h"

#include <math.h>

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

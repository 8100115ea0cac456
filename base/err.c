/* err.c - see err.h. */
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

hl_status hl_err_set(hl_err *err, hl_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

hl_status hl_err_prefix(hl_err *err, const char *fmt, ...)
{
    if (!err)
        return HL_ERR_INVALID;
    char prefix[HL_ERR_MSG_MAX], old[HL_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    /* Truncation is fine here: keep as much of both parts as fits. */
    size_t np = strlen(prefix), no = strlen(old), cap = sizeof err->msg - 1;
    if (np > cap)
        np = cap;
    memcpy(err->msg, prefix, np);
    size_t at = np;
    for (const char *sep = ": "; *sep && at < cap; sep++)
        err->msg[at++] = *sep;
    if (no > cap - at)
        no = cap - at;
    memcpy(err->msg + at, old, no);
    err->msg[at + no] = '\0';
    return err->code;
}

void hl_err_clear(hl_err *err)
{
    if (err) {
        err->code = HL_OK;
        err->msg[0] = '\0';
    }
}

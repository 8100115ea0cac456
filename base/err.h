/* err.h - error reporting for library code.
 *
 * Library functions never print or exit: they return an hl_status and, on
 * failure, fill an hl_err with a one-line message that names the file, tensor
 * or field involved.  Only main() decides what to do with it.  Deliberately no
 * error stacks or allocation: a fixed buffer is enough for one clear sentence.
 */
#ifndef HELENE_ERR_H
#define HELENE_ERR_H

#include <stddef.h>

typedef enum hl_status {
    HL_OK = 0,
    HL_ERR_IO = -1,      /* open/read/write/mmap failed */
    HL_ERR_FORMAT = -2,  /* malformed input file or value */
    HL_ERR_NOMEM = -3,   /* allocation failed */
    HL_ERR_INVALID = -4, /* bad argument or unsupported request */
    HL_ERR_NUMERIC = -5, /* non-finite loss or parameter */
} hl_status;

#define HL_ERR_MSG_MAX 1024

typedef struct hl_err {
    hl_status code;
    char msg[HL_ERR_MSG_MAX];
} hl_err;

/* Fill err (may be NULL) and return code, so callers can write
 * `return hl_err_set(err, HL_ERR_FORMAT, "%s: bad header", path);`. */
hl_status hl_err_set(hl_err *err, hl_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Prefix an existing message: "context: old message". Returns err->code. */
hl_status hl_err_prefix(hl_err *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

void hl_err_clear(hl_err *err);

#endif

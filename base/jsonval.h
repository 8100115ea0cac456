/* jsonval.h - integers read from JSON, checked before any cast.
 *
 * cJSON keeps every number as a double.  Casting a huge, negative, NaN or
 * fractional double to an integer type is undefined behaviour or a silent
 * truncation, so every integer that comes from a file (checkpoint steps,
 * offsets, counts; journal steps) goes through here.  Also: the two
 * things cJSON accepts silently that a reader must not, a NUL escape in a
 * string and a key given twice.  Leaves out: numbers
 * beyond 2^53, which a double cannot hold exactly (refused).
 */
#ifndef HELENE_JSONVAL_H
#define HELENE_JSONVAL_H

#include <cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* True, with *out set, when it is a JSON number that is a whole number in
 * [0, max] (max is capped at 2^53).  False for anything else: missing,
 * not a number, negative, fractional, too large, not finite. */
bool json_u64(const cJSON *it, uint64_t max, uint64_t *out);

/* True when the JSON text holds a \u0000 escape: cJSON keeps strings
 * NUL-terminated, so such a string would be cut short silently. */
bool json_text_has_nul_escape(const char *text, size_t n);

/* The first key that appears twice in one object anywhere in the tree
 * (cJSON keeps both, and lookups find the first), or NULL. */
const char *json_duplicate_key(const cJSON *it);

/* Read and parse a JSON file of at most max bytes into *out (caller
 * cJSON_Deletes it): the one way helene opens a JSON file it is given.
 * Errors name the file: unreadable (HL_ERR_IO, from file_read); a NUL byte,
 * "PATH:LINE: not valid JSON (near byte N)" (trailing text included), a
 * NUL escape, a key given twice (HL_ERR_FORMAT).  The top-level type is
 * the caller's to check.  The duplicate check is quadratic in an object's
 * size: for configs and task files, not for tokenizer.json's vocabularies
 * (bpe.c checks those with its table). */
hl_status json_read_file(const char *path, size_t max, cJSON **out, hl_err *err);

#endif

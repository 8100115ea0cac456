/* unicode_classes.h - the four code point classes GPT-2's pre-tokenizer regex
 * needs: letters (\p{L}), numbers (\p{N}), White_Space (\s) and the rest.
 *
 * The table behind it (unicode_classes.c) is generated from Python's
 * unicodedata by data/gen_unicode_classes.py; see that script to regenerate.
 * Leaves out every other Unicode property and all normalization.  No memory
 * is allocated; the table is constant.
 */
#ifndef HELENE_UNICODE_CLASSES_H
#define HELENE_UNICODE_CLASSES_H

#include <stdint.h>

typedef enum unicode_class {
    UNICODE_CLASS_OTHER = 0,  /* anything else, incl. unassigned, surrogates, > U+10FFFF */
    UNICODE_CLASS_LETTER = 1, /* general category L* */
    UNICODE_CLASS_NUMBER = 2, /* general category N* */
    UNICODE_CLASS_SPACE = 3,  /* White_Space property (the regex module's \s) */
} unicode_class;

/* Class of one code point; any uint32_t is accepted. */
unicode_class unicode_get_class(uint32_t cp);

/* Unicode version the table was generated from, e.g. "14.0.0". */
extern const char unicode_classes_version[];

#endif

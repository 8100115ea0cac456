/* fuzz_util.h - shared by the libFuzzer targets in tests/fuzz/.
 *
 * helene's readers take paths, so each target writes the input to a file in
 * a private temporary folder (made once per process) and calls the reader on
 * it.  A reader must refuse bad input with an error, never crash, leak or
 * hang; ASan, UBSan and libFuzzer's leak and timeout checks see to that.
 */
#ifndef HELENE_FUZZ_UTIL_H
#define HELENE_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The process's scratch folder, e.g. /tmp/helene-fuzz-XXXXXX. */
static inline const char *fuzz_dir(void)
{
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/helene-fuzz-XXXXXX",
                 getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        if (!mkdtemp(dir))
            abort();
    }
    return dir;
}

/* fuzz_dir()/name as a path in a static buffer (one of 4, reused). */
static inline const char *fuzz_path(const char *name)
{
    static char buf[4][256];
    static int at;
    char *p = buf[at++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", fuzz_dir(), name);
    return p;
}

static inline void fuzz_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (n && fwrite(data, 1, n, f) != n)
        abort();
    fclose(f);
}

/* Copy a file (a fixture) once into the scratch folder. */
static inline void fuzz_copy(const char *from, const char *to)
{
    FILE *f = fopen(from, "rb");
    if (!f)
        abort();
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    fuzz_write(to, buf, n);
}

/* Split the input at the first byte 0xFF: part a before, part b after. */
static inline void fuzz_split(const uint8_t *d, size_t n, const uint8_t **a, size_t *na,
                              const uint8_t **b, size_t *nb)
{
    const uint8_t *cut = memchr(d, 0xFF, n);
    *a = d;
    *na = cut ? (size_t)(cut - d) : n;
    *b = cut ? cut + 1 : d + n;
    *nb = cut ? n - *na - 1 : 0;
}

#endif

/* fuzz_bpe.c - vocab.json (before the first 0xFF) and merges.txt (after);
 * what loads is used to encode and decode a sample. */
#include "fuzz_util.h"

#include "bpe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *a, *b;
    size_t na, nb;
    fuzz_split(data, size, &a, &na, &b, &nb);
    const char *v = fuzz_path("vocab.json"), *m = fuzz_path("merges.txt");
    fuzz_write(v, a, na);
    fuzz_write(m, b, nb);
    bpe t;
    hl_err err;
    if (bpe_load(&t, v, m, &err) == HL_OK) {
        static const char text[] = "Hello, world! It's 2026: the café costs 3.50.";
        int32_t ids[256];
        size_t n = 0;
        if (bpe_encode(&t, text, sizeof text - 1, ids, 256, &n, &err) == HL_OK) {
            char out[1024];
            size_t len;
            (void)bpe_decode(&t, ids, n, out, sizeof out, &len, &err);
        }
        bpe_free(&t);
    }
    return 0;
}

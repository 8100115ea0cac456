/* fuzz_tokenizer_json.c - a tokenizer.json (Hugging Face tokenizers format);
 * what loads is used to encode and decode a sample, through whichever
 * pre-tokenizer regex the file selects. */
#include "fuzz_util.h"

#include "bpe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fuzz_path("tokenizer.json");
    fuzz_write(p, data, size);
    bpe t;
    hl_err err;
    if (bpe_load_tokenizer_json(&t, p, &err) == HL_OK) {
        static const char text[] = "Hello, world! It's 2026:\n\n  the caf\xc3\xa9 costs 3.50.";
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

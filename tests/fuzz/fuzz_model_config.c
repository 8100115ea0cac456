/* fuzz_model_config.c - config.json (input before the first 0xFF) and
 * tokenizer_config.json (after it) of a model folder. */
#include "fuzz_util.h"

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *a, *b;
    size_t na, nb;
    fuzz_split(data, size, &a, &na, &b, &nb);
    fuzz_write(fuzz_path("config.json"), a, na);
    if (nb)
        fuzz_write(fuzz_path("tokenizer_config.json"), b, nb);
    else
        unlink(fuzz_path("tokenizer_config.json"));
    model_config cfg;
    hl_err err;
    (void)model_config_load(&cfg, fuzz_dir(), &err);
    return 0;
}

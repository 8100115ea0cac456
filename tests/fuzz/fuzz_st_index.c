/* fuzz_st_index.c - a sharded model folder: model.safetensors.index.json
 * (the input's first part) and one shard (the second part). */
#include "fuzz_util.h"

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *a, *b;
    size_t na, nb;
    fuzz_split(data, size, &a, &na, &b, &nb);
    fuzz_write(fuzz_path("model.safetensors.index.json"), a, na);
    fuzz_write(fuzz_path("model-00001-of-00001.safetensors"), b, nb);
    st_model m;
    hl_err err;
    if (st_model_open(&m, fuzz_dir(), &err) == HL_OK)
        st_model_close(&m);
    return 0;
}

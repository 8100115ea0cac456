/* fuzz_safetensors.c - a safetensors file: header, offsets, dtypes, data. */
#include "fuzz_util.h"

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fuzz_path("model.safetensors");
    fuzz_write(p, data, size);
    st_file f;
    hl_err err;
    if (st_file_open(&f, p, &err) == HL_OK) {
        /* read every tensor the way a loader does */
        for (int32_t i = 0; i < st_file_count(&f); i++) {
            const st_tensor *t = &f.tensors[i];
            if (t->n_elems > 0 && t->n_elems < (1u << 16)) {
                float *out = malloc(t->n_elems * sizeof(float));
                if (out && st_tensor_to_f32(t, out, &err) == HL_OK)
                    (void)out[0];
                free(out);
            }
        }
        st_file_close(&f);
    }
    return 0;
}

/* fuzz_runcfg.c - a run configuration JSON (--config). */
#include "fuzz_util.h"

#include "runcfg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fuzz_path("run.json");
    fuzz_write(p, data, size);
    runcfg c;
    runcfg_init(&c);
    hl_err err;
    if (runcfg_load_json(&c, p, &err) == HL_OK) {
        char *json = runcfg_to_json(&c);
        free(json);
    }
    runcfg_free(&c);
    return 0;
}

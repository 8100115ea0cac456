/* fuzz_task.c - a task definition JSON. */
#include "fuzz_util.h"

#include "task.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fuzz_path("task.json");
    fuzz_write(p, data, size);
    task t;
    hl_err err;
    if (task_load_file(&t, p, &err) == HL_OK)
        task_free(&t);
    return 0;
}

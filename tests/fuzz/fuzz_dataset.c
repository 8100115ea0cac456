/* fuzz_dataset.c - the TSV, CSV and JSONL readers: the first byte picks the
 * task and format (sst2 .tsv, sst5 .csv, rte .jsonl, multirc .jsonl with
 * nested arrays), the rest is the file; every example that loads is
 * rendered as a prompt. */
#include "fuzz_util.h"

#include "dataset.h"
#include "task.h"

static const char *const tasks[4][2] = {
    {"sst2", "d.tsv"}, {"sst5", "d.csv"}, {"rte", "d.jsonl"}, {"multirc", "d.jsonl"}};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static task t[4];
    static int loaded;
    hl_err err;
    if (!loaded) {
        for (int i = 0; i < 4; i++)
            if (task_find(&t[i], tasks[i][0], &err) != HL_OK)
                abort();
        loaded = 1;
    }
    int k = data[0] & 3;
    const char *p = fuzz_path(tasks[k][1]);
    fuzz_write(p, data + 1, size - 1);
    dataset ds;
    dataset_opts o = {.skip_bad = (data[0] & 4) != 0};
    if (dataset_load_file(&ds, &t[k], p, &o, &err) == HL_OK) {
        size_t cap = task_prompt_max_bytes(&t[k], TASK_MODEL_CAUSAL, ds.max_len);
        char *buf = malloc(cap);
        for (uint32_t i = 0; buf && i < ds.n; i++) {
            task_example ex;
            task_prompt info;
            dataset_example_view(&ex, &ds, i);
            (void)task_render_prompt(buf, cap, &info, &t[k], TASK_MODEL_CAUSAL, &ex, NULL, &err);
        }
        free(buf);
        dataset_free(&ds);
    }
    return 0;
}

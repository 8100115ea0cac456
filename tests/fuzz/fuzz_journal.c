/* fuzz_journal.c - a run journal (JSONL), scanned as a resume does. */
#include "fuzz_util.h"

#include "journal.h"

static void visit(void *ctx, bool is_eval, uint64_t step, double loss, double lp, double lmi,
                  double c, double alpha, double lr, double dev)
{
    (void)is_eval, (void)loss, (void)lp, (void)lmi, (void)c, (void)alpha, (void)lr, (void)dev;
    *(uint64_t *)ctx += step;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fuzz_path("journal.jsonl");
    fuzz_write(p, data, size);
    uint64_t sum = 0;
    hl_err err;
    (void)journal_scan(p, 1000000, visit, &sum, &err);
    return 0;
}

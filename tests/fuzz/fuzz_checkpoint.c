/* fuzz_checkpoint.c - a checkpoint folder: the first byte picks the file the
 * rest replaces (checkpoint.json, optim.safetensors or params.safetensors);
 * the other two come from a valid checkpoint of a small HELENE run, written
 * once.  The folder is read as --resume reads it. */
#include "fuzz_util.h"

#include <sys/stat.h>

#include "checkpoint.h"
#include "optim.h"
#include "params.h"

static param_set ps;
static optim *opt;
static char dirs[3][256];
static const char *const files[3] = {"checkpoint.json", "optim.safetensors",
                                     "params.safetensors"};

static void setup(void)
{
    hl_err err;
    param_set_init(&ps);
    int64_t s1[2] = {3, 5}, s2[1] = {7};
    if (param_set_add(&ps, "w", 2, s1, true, -1, &err) ||
        param_set_add(&ps, "b", 1, s2, false, -1, &err) || param_set_alloc(&ps, &err) ||
        optim_init(&opt, &ps, NULL, 1, &err))
        abort();
    for (size_t i = 0; i < 22; i++)
        ps.data[i] = (float)i * 0.1f;
    char tmpl[300];
    snprintf(tmpl, sizeof tmpl, "%s/template", fuzz_dir());
    runcfg r;
    runcfg_init(&r);
    if (checkpoint_save(tmpl, &r, &ps, opt, 3, "", 0, &err))
        abort();
    runcfg_free(&r);
    for (int k = 0; k < 3; k++) {
        snprintf(dirs[k], sizeof dirs[k], "%s/ck%d", fuzz_dir(), k);
        mkdir(dirs[k], 0755);
        for (int j = 0; j < 3; j++) {
            char from[600], to[600];
            snprintf(from, sizeof from, "%s/%s", tmpl, files[j]);
            snprintf(to, sizeof to, "%s/%s", dirs[k], files[j]);
            fuzz_copy(from, to);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (!opt)
        setup();
    int k = data[0] % 3;
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dirs[k], files[k]);
    fuzz_write(p, data + 1, size - 1);
    hl_err err;
    runcfg r;
    runcfg_init(&r);
    if (checkpoint_read_config(&r, dirs[k], &err) == HL_OK) {
        checkpoint_info ci;
        (void)checkpoint_load(dirs[k], &ps, opt, &ci, &err);
    }
    runcfg_free(&r);
    /* put the valid file back for the next input of the other kinds */
    char from[600];
    snprintf(from, sizeof from, "%s/template/%s", fuzz_dir(), files[k]);
    fuzz_copy(from, p);
    return 0;
}

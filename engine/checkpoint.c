/* checkpoint.c - see checkpoint.h. */
#include "checkpoint.h"

#include <cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fileio.h"
#include "jsonval.h"
#include "safetensors.h"

/* ------------------------------------------------------------ params --- */

hl_status checkpoint_write_params(const char *path, const param_set *ps, hl_err *err)
{
    st_write_tensor *ts = calloc((size_t)ps->n_layers, sizeof *ts);
    if (!ts)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    for (int i = 0; i < ps->n_layers; i++) {
        const param_layer *l = &ps->layers[i];
        ts[i] = (st_write_tensor){.name = l->name, .dtype = ST_DTYPE_F32, .src = ST_SRC_RAW,
                                  .ndim = l->ndim, .shape = l->shape,
                                  .data = param_layer_data(ps, i)};
    }
    const char *meta[2] = {"format", CHECKPOINT_FORMAT};
    hl_status st = st_write(path, ts, ps->n_layers, meta, 1, err);
    free(ts);
    return st;
}

/* Validate every layer first, then copy: a mismatch changes nothing. */
hl_status checkpoint_read_params(const char *path, param_set *ps, hl_err *err)
{
    st_file f;
    hl_status st = st_file_open(&f, path, err);
    if (st)
        return st;
    for (int i = 0; i < ps->n_layers && !st; i++) {
        const param_layer *l = &ps->layers[i];
        const st_tensor *t = st_file_find(&f, l->name);
        if (!t) {
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: no tensor \"%s\": the checkpoint is of another model", path,
                            l->name);
            break;
        }
        bool same = t->dtype == ST_DTYPE_F32 && t->ndim == l->ndim;
        for (int d = 0; same && d < l->ndim; d++)
            same = t->shape[d] == l->shape[d];
        if (!same)
            st = hl_err_set(err, HL_ERR_FORMAT,
                            "%s: tensor \"%s\" has another shape or dtype than the model's", path,
                            l->name);
    }
    if (!st && st_file_count(&f) != ps->n_layers)
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: %d tensors, the model has %d", path,
                        st_file_count(&f), ps->n_layers);
    for (int i = 0; i < ps->n_layers && !st; i++)
        st = st_tensor_to_f32(st_file_find(&f, ps->layers[i].name), param_layer_data(ps, i), err);
    st_file_close(&f);
    return st;
}

/* ------------------------------------------------------- folder swap --- */

/* Make dir's parent folders (mkdir -p), so --save a/b/c works. */
static hl_status make_parents(const char *dir, hl_err *err)
{
    char p[RUNCFG_PATH_MAX];
    snprintf(p, sizeof p, "%s", dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return hl_err_set(err, HL_ERR_IO, "%s: %s", p, strerror(errno));
        *s = '/';
    }
    return HL_OK;
}

hl_status checkpoint_save(const char *dir, const runcfg *cfg, const param_set *ps,
                          const optim *opt, uint64_t step, const char *journal_path,
                          uint64_t journal_offset, hl_err *err)
{
    return checkpoint_save_with(dir, cfg, ps, opt, step, journal_path, journal_offset, NULL, NULL,
                                err);
}

/* Periodic step-N folders live inside the --save folder: a new final
 * checkpoint takes them over from the one it replaces. */
static void carry_step_folders(const char *old, const char *now)
{
    DIR *d = opendir(old);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, "step-", 5))
            continue;
        char from[RUNCFG_PATH_MAX + 400], to[RUNCFG_PATH_MAX + 400];
        snprintf(from, sizeof from, "%s/%s", old, e->d_name);
        snprintf(to, sizeof to, "%s/%s", now, e->d_name);
        rename(from, to);
    }
    if (d)
        closedir(d);
}

hl_status checkpoint_save_with(const char *dir, const runcfg *cfg, const param_set *ps,
                               const optim *opt, uint64_t step, const char *journal_path,
                               uint64_t journal_offset, checkpoint_extra_fn extra,
                               void *extra_ctx, hl_err *err)
{
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    if (dl == 0 || dl + 64 >= RUNCFG_PATH_MAX)
        return hl_err_set(err, HL_ERR_INVALID, "bad checkpoint folder '%s'", dir);
    char target[RUNCFG_PATH_MAX], tmp[RUNCFG_PATH_MAX + 64], p[RUNCFG_PATH_MAX + 128];
    snprintf(target, sizeof target, "%.*s", (int)dl, dir);
    struct stat sb;
    if (stat(target, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode))
            return hl_err_set(err, HL_ERR_INVALID, "%s exists and is not a folder", target);
        snprintf(p, sizeof p, "%s/checkpoint.json", target);
        DIR *d = opendir(target);
        bool empty = true;
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
                strncmp(e->d_name, "step-", 5))
                empty = false;
        if (d)
            closedir(d);
        /* never replace a folder that holds something other than a checkpoint */
        if (!empty && access(p, F_OK) != 0)
            return hl_err_set(err, HL_ERR_INVALID,
                              "%s is not empty and holds no checkpoint: refusing to replace it",
                              target);
    }
    hl_status st = make_parents(target, err);
    if (st)
        return st;
    if ((st = file_stage_dir(tmp, sizeof tmp, target, err)))
        return st;

    snprintf(p, sizeof p, "%s/params.safetensors", tmp);
    if ((st = checkpoint_write_params(p, ps, err)))
        goto fail;
    snprintf(p, sizeof p, "%s/optim.safetensors", tmp);
    if ((st = optim_state_write(opt, p, err)))
        goto fail;
    if (extra && (st = extra(extra_ctx, tmp, err)))
        goto fail;

    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "format", CHECKPOINT_FORMAT);
    cJSON_AddNumberToObject(o, "version", CHECKPOINT_VERSION);
    char num[32];
    snprintf(num, sizeof num, "%llu", (unsigned long long)step);
    cJSON_AddItemToObject(o, "step", cJSON_CreateRaw(num));
    cJSON_AddNumberToObject(o, "n_params", (double)param_set_count(ps));
    cJSON_AddNumberToObject(o, "layers", ps->n_layers);
    cJSON *jr = cJSON_AddObjectToObject(o, "journal");
    cJSON_AddStringToObject(jr, "path", journal_path ? journal_path : "");
    snprintf(num, sizeof num, "%llu", (unsigned long long)journal_offset);
    cJSON_AddItemToObject(jr, "offset", cJSON_CreateRaw(num));
    char *run = runcfg_to_json(cfg);
    cJSON *runj = run ? cJSON_Parse(run) : NULL;
    free(run);
    if (!runj) {
        cJSON_Delete(o);
        st = hl_err_set(err, HL_ERR_NOMEM, "cannot serialise the run configuration");
        goto fail;
    }
    /* resuming must not resume again, nor start from the step it ends at */
    cJSON_DeleteItemFromObject(runj, "resume");
    cJSON_AddItemToObject(o, "run", runj);
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    snprintf(p, sizeof p, "%s/checkpoint.json", tmp);
    st = text ? file_write_all(p, text, strlen(text), err) : hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    free(text);
    if (st)
        goto fail;
    file_fsync_parent(p);

    /* swap into place, keeping the periodic step-N folders of the old one */
    return file_publish_dir(tmp, target, true, carry_step_folders, err);
fail:
    file_remove_tree(tmp);
    return st;
}

/* --------------------------------------------------------- reading --- */

static cJSON *read_meta(const char *dir, hl_err *err)
{
    char p[RUNCFG_PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/checkpoint.json", dir);
    cJSON *o;
    hl_status st = json_read_file(p, 1 << 24, &o, err);
    if (st) {
        if (st == HL_ERR_IO && err) {
            char why[HL_ERR_MSG_MAX];
            snprintf(why, sizeof why, "%s", err->msg);
            hl_err_set(err, HL_ERR_IO, "%.900s (not a helene checkpoint folder?)", why);
        }
        return NULL;
    }
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(o, "format");
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(o, "version");
    const cJSON *step = cJSON_GetObjectItemCaseSensitive(o, "step");
    const cJSON *run = cJSON_GetObjectItemCaseSensitive(o, "run");
    if (!cJSON_IsObject(o) || !cJSON_IsString(fmt) || strcmp(fmt->valuestring, CHECKPOINT_FORMAT) ||
        !cJSON_IsNumber(ver) || !json_u64(step, UINT64_MAX, &(uint64_t){0}) ||
        !cJSON_IsObject(run)) {
        cJSON_Delete(o);
        hl_err_set(err, HL_ERR_FORMAT,
                   "%s: not a valid helene checkpoint (needs format, version, a whole "
                   "non-negative step, run)",
                   p);
        return NULL;
    }
    if (ver->valuedouble != CHECKPOINT_VERSION) {
        double v = ver->valuedouble; /* read before o (and ver with it) is freed */
        cJSON_Delete(o);
        hl_err_set(err, HL_ERR_FORMAT, "%s: checkpoint version %g, this helene reads %d", p, v,
                   CHECKPOINT_VERSION);
        return NULL;
    }
    return o;
}

hl_status checkpoint_read_config(runcfg *cfg, const char *dir, hl_err *err)
{
    cJSON *o = read_meta(dir, err);
    if (!o)
        return err ? err->code : HL_ERR_FORMAT;
    char where[RUNCFG_PATH_MAX + 64];
    snprintf(where, sizeof where, "%s/checkpoint.json: run", dir);
    runcfg fresh;
    runcfg_init(&fresh);
    hl_status st = runcfg_apply_json(&fresh, cJSON_GetObjectItemCaseSensitive(o, "run"), where,
                                     err);
    cJSON_Delete(o);
    if (st) {
        runcfg_free(&fresh);
        return st;
    }
    runcfg_free(cfg);
    *cfg = fresh;
    snprintf(cfg->resume, sizeof cfg->resume, "%s", dir);
    return HL_OK;
}

hl_status checkpoint_load(const char *dir, param_set *ps, optim *opt, checkpoint_info *info,
                          hl_err *err)
{
    cJSON *o = read_meta(dir, err);
    if (!o)
        return err ? err->code : HL_ERR_FORMAT;
    checkpoint_info ci;
    memset(&ci, 0, sizeof ci);
    json_u64(cJSON_GetObjectItemCaseSensitive(o, "step"), UINT64_MAX, &ci.step); /* checked */
    const cJSON *np = cJSON_GetObjectItemCaseSensitive(o, "n_params");
    const cJSON *jr = cJSON_GetObjectItemCaseSensitive(o, "journal");
    const cJSON *jp = cJSON_GetObjectItemCaseSensitive(jr, "path");
    const cJSON *jo = cJSON_GetObjectItemCaseSensitive(jr, "offset");
    if (cJSON_IsString(jp))
        snprintf(ci.journal_path, sizeof ci.journal_path, "%s", jp->valuestring);
    hl_status st = HL_OK;
    uint64_t n_params = 0;
    if (jo && !json_u64(jo, (uint64_t)INT64_MAX, &ci.journal_offset))
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s/checkpoint.json: journal.offset must be a whole number of bytes >= 0",
                        dir);
    else if (!json_u64(np, UINT64_MAX, &n_params))
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s/checkpoint.json: n_params must be a whole number >= 0", dir);
    else if (n_params != param_set_count(ps))
        st = hl_err_set(err, HL_ERR_FORMAT,
                        "%s/checkpoint.json: %llu parameters, the model has %zu: the checkpoint "
                        "is of another model",
                        dir, (unsigned long long)n_params, param_set_count(ps));
    cJSON_Delete(o);
    if (st)
        return st;
    char p[RUNCFG_PATH_MAX + 64];
    /* the optimizer state is validated and staged before θ changes */
    if (opt) {
        snprintf(p, sizeof p, "%s/optim.safetensors", dir);
        if ((st = optim_state_read(opt, p, err)))
            return st;
    }
    snprintf(p, sizeof p, "%s/params.safetensors", dir);
    if ((st = checkpoint_read_params(p, ps, err)))
        return st;
    if (info)
        *info = ci;
    return HL_OK;
}

/* --------------------------------------------------------- pruning --- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

void checkpoint_prune(const char *save_dir, int keep_last)
{
    DIR *d = opendir(save_dir);
    if (!d)
        return;
    uint64_t steps[4096];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 4096) {
        char *end;
        if (strncmp(e->d_name, "step-", 5))
            continue;
        unsigned long long s = strtoull(e->d_name + 5, &end, 10);
        if (*end == '\0' && end != e->d_name + 5)
            steps[n++] = s;
    }
    closedir(d);
    qsort(steps, (size_t)n, sizeof steps[0], cmp_u64);
    for (int i = 0; i + keep_last < n; i++) {
        char p[RUNCFG_PATH_MAX + 64];
        snprintf(p, sizeof p, "%s/step-%llu", save_dir, (unsigned long long)steps[i]);
        file_remove_tree(p);
    }
}

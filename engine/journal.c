/* journal.c - see journal.h. */
#include "journal.h"

#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fileio.h"
#include "jsonval.h"

#define FLUSH_EVERY 64

hl_status journal_open(journal *j, const char *path, uint64_t resume_offset, hl_err *err)
{
    memset(j, 0, sizeof *j);
    if (!path || !path[0])
        return HL_OK;
    if (resume_offset > 0) {
        FILE *probe = fopen(path, "rb");
        if (probe) {
            fseek(probe, 0, SEEK_END);
            long size = ftell(probe);
            fclose(probe);
            if (size >= 0 && (uint64_t)size > resume_offset && truncate(path, (off_t)resume_offset))
                return hl_err_set(err, HL_ERR_IO, "%s: cannot cut the journal to the checkpoint: "
                                  "%s", path, strerror(errno));
        }
    }
    j->f = fopen(path, "ab");
    if (!j->f)
        return hl_err_set(err, HL_ERR_IO, "%s: %s", path, strerror(errno));
    return HL_OK;
}

void journal_flush(journal *j)
{
    if (j->f) {
        fflush(j->f);
        j->lines_since_flush = 0;
    }
}

void journal_close(journal *j)
{
    if (j->f)
        fclose(j->f);
    memset(j, 0, sizeof *j);
}

uint64_t journal_offset(journal *j)
{
    if (!j->f)
        return 0;
    fflush(j->f);
    long off = ftell(j->f);
    return off > 0 ? (uint64_t)off : 0;
}

/* JSON has no NaN or infinity: write null. */
static void put_num(FILE *f, const char *key, double v)
{
    if (isfinite(v))
        fprintf(f, ",\"%s\":%.9g", key, v);
    else
        fprintf(f, ",\"%s\":null", key);
}

static void end_line(journal *j, bool flush)
{
    fputs("}\n", j->f);
    if (flush || ++j->lines_since_flush >= FLUSH_EVERY)
        journal_flush(j);
}

void journal_step(journal *j, const optim_step_stats *s, double loss, double grad_cosine)
{
    if (!j->f)
        return;
    fprintf(j->f, "{\"step\":%llu,\"seed\":%llu", (unsigned long long)s->step,
            (unsigned long long)s->seed);
    put_num(j->f, "loss", loss);
    put_num(j->f, "loss_plus", s->loss_plus);
    put_num(j->f, "loss_minus", s->loss_minus);
    put_num(j->f, "proj_grad", s->proj_grad);
    put_num(j->f, "q", s->q);
    put_num(j->f, "lr", s->lr);
    if (!isnan(s->alpha))
        put_num(j->f, "alpha", s->alpha);
    if (!isnan(s->clip_rate)) {
        put_num(j->f, "clip_rate", s->clip_rate);
        put_num(j->f, "h_scale", s->h_scale);
    }
    if (s->group >= 0) { /* layer-newton: the group probed and its curvature after the step */
        fprintf(j->f, ",\"group\":%d", (int)s->group);
        put_num(j->f, "group_h", s->group_h);
    }
    fprintf(j->f, ",\"method\":\"%s\",\"refresh\":%s,\"forwards\":%d,\"batch\":%d",
            optim_method_name(s->method), s->refresh ? "true" : "false", s->forwards, s->batch);
    put_num(j->f, "ms_perturb", s->ms_perturb);
    put_num(j->f, "ms_forward", s->ms_forward);
    put_num(j->f, "ms_update", s->ms_update);
    if (!isnan(grad_cosine))
        put_num(j->f, "grad_cosine", grad_cosine);
    end_line(j, false);
}

static void put_str(FILE *f, const char *key, const char *v)
{
    cJSON *s = cJSON_CreateString(v);
    char *txt = s ? cJSON_PrintUnformatted(s) : NULL;
    fprintf(f, ",\"%s\":%s", key, txt ? txt : "\"\"");
    free(txt);
    cJSON_Delete(s);
}

void journal_run(journal *j, uint64_t step, bool resumed, const char *version,
                 const char *config_json)
{
    if (!j->f)
        return;
    fprintf(j->f, "{\"event\":\"run\",\"step\":%llu,\"resumed\":%s", (unsigned long long)step,
            resumed ? "true" : "false");
    put_str(j->f, "version", version);
    /* the config is JSON already: re-printed unformatted, on one line */
    cJSON *c = config_json ? cJSON_Parse(config_json) : NULL;
    char *txt = c ? cJSON_PrintUnformatted(c) : NULL;
    fprintf(j->f, ",\"config\":%s", txt ? txt : "null");
    free(txt);
    cJSON_Delete(c);
    end_line(j, true);
}

void journal_event(journal *j, uint64_t step, const char *event, const char *key,
                   const char *value)
{
    if (!j->f)
        return;
    fprintf(j->f, "{\"event\":\"%s\",\"step\":%llu", event, (unsigned long long)step);
    if (key)
        put_str(j->f, "key", key);
    if (value)
        put_str(j->f, "value", value);
    end_line(j, true);
}

void journal_eval(journal *j, uint64_t step, double acc, double loss, bool is_accuracy)
{
    if (!j->f)
        return;
    fprintf(j->f, "{\"event\":\"eval\",\"step\":%llu", (unsigned long long)step);
    put_num(j->f, is_accuracy ? "dev_accuracy" : "exact_loss", acc);
    put_num(j->f, "dev_loss", loss);
    end_line(j, true);
}

void journal_test(journal *j, uint64_t step, const char *which, double acc, double loss)
{
    if (!j->f)
        return;
    fprintf(j->f, "{\"event\":\"test\",\"step\":%llu,\"state\":\"%s\"", (unsigned long long)step,
            which);
    put_num(j->f, "test_accuracy", acc);
    put_num(j->f, "test_loss", loss);
    end_line(j, true);
}

void journal_layer_names(journal *j, uint64_t step, const char *const *names, int n)
{
    if (!j->f)
        return;
    fprintf(j->f, "{\"event\":\"layer_names\",\"step\":%llu,\"names\":[",
            (unsigned long long)step);
    for (int i = 0; i < n; i++) {
        cJSON *s = cJSON_CreateString(names[i]);
        char *txt = s ? cJSON_PrintUnformatted(s) : NULL;
        fprintf(j->f, "%s%s", i ? "," : "", txt ? txt : "\"\"");
        cJSON_free(txt);
        cJSON_Delete(s);
    }
    fputs("]", j->f);
    end_line(j, false);
}

void journal_layers(journal *j, uint64_t step, const float *h, const bool *frozen, int n)
{
    if (!j->f)
        return;
    bool any = false;
    for (int i = 0; i < n; i++)
        any |= !frozen[i] && h[i] != 0;
    if (!any)
        return;
    fprintf(j->f, "{\"event\":\"layers\",\"step\":%llu,\"h\":[", (unsigned long long)step);
    for (int i = 0; i < n; i++) {
        if (frozen[i] || !isfinite(h[i]))
            fprintf(j->f, "%snull", i ? "," : "");
        else
            fprintf(j->f, "%s%.6g", i ? "," : "", (double)h[i]);
    }
    fputs("]", j->f);
    end_line(j, false);
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : NAN;
}

hl_status journal_scan(const char *path, uint64_t max_step, journal_visit_fn fn, void *ctx,
                       hl_err *err)
{
    FILE *f;
    hl_status ost = file_open_read(path, &f, err);
    if (ost)
        return ost;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        cJSON *o = cJSON_ParseWithLength(line, (size_t)len);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o); /* a torn last line after a crash: skip it */
            continue;
        }
        uint64_t step;
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "event");
        /* a step that is not a whole number >= 0 is not ours: skip the line */
        if (json_u64(cJSON_GetObjectItemCaseSensitive(o, "step"), max_step, &step)) {
            if (!ev)
                fn(ctx, false, step, num(o, "loss"), num(o, "loss_plus"),
                   num(o, "loss_minus"), num(o, "proj_grad"), num(o, "alpha"), num(o, "lr"),
                   NAN);
            else if (cJSON_IsString(ev) && !strcmp(ev->valuestring, "eval")) {
                double d = num(o, "dev_accuracy");
                if (isnan(d))
                    d = num(o, "exact_loss");
                fn(ctx, true, step, NAN, NAN, NAN, NAN, NAN, NAN, d);
            }
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    return HL_OK;
}

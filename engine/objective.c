/* objective.c - checked wrappers around an objective's function pointers. */
#include "objective.h"

#include <math.h>

hl_status objective_select_batch(const objective *obj, int32_t *batch_size, uint64_t step,
                                 hl_err *err)
{
    if (!obj || !obj->select_batch || !obj->eval)
        return hl_err_set(err, HL_ERR_INVALID, "objective has no select_batch/eval");
    *batch_size = 0;
    hl_status st = obj->select_batch(obj->ctx, batch_size, step, err);
    if (st != HL_OK)
        return st;
    if (*batch_size < 1 || *batch_size > obj->max_batch)
        return hl_err_set(err, HL_ERR_INVALID, "%s: batch size %d for step %llu outside 1..%d",
                          obj->name ? obj->name : "objective", (int)*batch_size,
                          (unsigned long long)step, (int)obj->max_batch);
    return HL_OK;
}

hl_status objective_eval(const objective *obj, double *losses, const param_set *ps,
                         pool *workers, hl_err *err)
{
    if (!obj || !obj->eval)
        return hl_err_set(err, HL_ERR_INVALID, "objective has no eval");
    return obj->eval(obj->ctx, losses, ps, workers, err);
}

int32_t objective_layer_stage(const objective *obj, int32_t layer)
{
    return obj && obj->layer_stage && obj->eval_staged ? obj->layer_stage(obj->ctx, layer) : 0;
}

hl_status objective_eval_staged(const objective *obj, double *losses, const param_set *ps,
                                pool *workers, int32_t save_stage, int32_t start_stage,
                                hl_err *err)
{
    if (!obj || !obj->eval)
        return hl_err_set(err, HL_ERR_INVALID, "objective has no eval");
    if (!obj->eval_staged) {
        if (start_stage > 0)
            return hl_err_set(err, HL_ERR_INVALID, "%s cannot start a forward at a stage",
                              obj->name ? obj->name : "objective");
        return obj->eval(obj->ctx, losses, ps, workers, err);
    }
    return obj->eval_staged(obj->ctx, losses, ps, workers, save_stage, start_stage, err);
}

hl_status objective_full_loss(const objective *obj, double *loss, const param_set *ps,
                              pool *workers, hl_err *err)
{
    if (!obj || !obj->full_loss)
        return hl_err_set(err, HL_ERR_INVALID, "%s has no full loss",
                          obj && obj->name ? obj->name : "objective");
    *loss = NAN;
    return obj->full_loss(obj->ctx, loss, ps, workers, err);
}

void objective_destroy(objective *obj)
{
    if (obj && obj->destroy)
        obj->destroy(obj->ctx);
    if (obj)
        obj->ctx = NULL;
}

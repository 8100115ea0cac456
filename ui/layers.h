/* layers.h - the workbench's per-layer table: one row per tensor with the
 * optimizer's curvature statistics (mean and max h, floor, clip rate, update
 * RMS; layer-newton: its group's h, score, floor and share of the probes), an
 * analytic objective's exact curvature beside them, and a bar of h on a log
 * scale shared by the layers; sortable.  Built on widgets.h's table.
 */
#ifndef HELENE_LAYERS_H
#define HELENE_LAYERS_H

#include <stdbool.h>

#include "canvas.h"
#include "optim.h"
#include "params.h"
#include "widgets.h"

/* The per-layer panel. */
typedef enum layers_sort {
    LAYERS_SORT_MODEL = 0, /* layer-table order */
    LAYERS_SORT_NAME,      /* by name, numbers compared as numbers */
    LAYERS_SORT_CURVATURE, /* mean h, largest first */
    LAYERS_SORT_CLIP,      /* clip rate, largest first */
    LAYERS_SORT_COUNT
} layers_sort;

typedef struct layers_view {
    layers_sort sort;
    bool reverse;
    int selected; /* row (position in sorted order) under the cursor */
    int scroll;   /* first visible row */
} layers_view;

const char *layers_sort_name(layers_sort s);
/* order[n] = layer indices in the view's order (stable). */
void layers_sort_order(int *order, const param_layer *layers, const optim_layer_stats *st,
                       int n, layers_sort sort, bool reverse);
/* Table with name, mean h, max h, λ, clip, update RMS and a bar of mean h
 * (log scale shared by all layers, λ_ℓ as a marker).  order must come from
 * layers_sort_order.  mark_layer (-1 none) is flagged as the heat-strip
 * layer.  true_curv (NULL: no column) adds "true a", the exact curvature of
 * an analytic objective's layers, beside what the optimizer estimates.
 * Returns the visible row count. */
int widgets_layers(canvas *c, ui_rect r, const layers_view *v, const int *order,
                   const param_layer *layers, const optim_layer_stats *st, int n,
                   int mark_layer, bool focused,
                   const float *true_curv, bool newton);
/* newton (layer-newton's table): the group's measured curvature "h", its
 * "score" s_l, the floor h_min, its share of all probes "probes" (instead of
 * max h and clip), update RMS, [true a], the bar of h. */

#endif

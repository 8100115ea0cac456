/* layers.c - see layers.h. */
#include "layers.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- per-layer table */

static const char *const sort_names[LAYERS_SORT_COUNT] = {"model order", "name", "curvature",
                                                          "clip rate"};

const char *layers_sort_name(layers_sort s)
{
    return s >= 0 && s < LAYERS_SORT_COUNT ? sort_names[s] : "?";
}

typedef struct sort_item {
    int idx;
    layers_sort mode;
    float key;
    const char *name;
} sort_item;

/* Compare names with digit runs as numbers: layers.2 < layers.10. */
static int natural_cmp(const char *a, const char *b)
{
    while (*a && *b) {
        if (isdigit((unsigned char)*a) && isdigit((unsigned char)*b)) {
            while (*a == '0')
                a++;
            while (*b == '0')
                b++;
            size_t la = 0, lb = 0;
            while (isdigit((unsigned char)a[la]))
                la++;
            while (isdigit((unsigned char)b[lb]))
                lb++;
            if (la != lb)
                return la < lb ? -1 : 1;
            int d = strncmp(a, b, la);
            if (d)
                return d;
            a += la;
            b += lb;
        } else {
            if (*a != *b)
                return (unsigned char)*a < (unsigned char)*b ? -1 : 1;
            a++;
            b++;
        }
    }
    return *a ? 1 : *b ? -1 : 0;
}

static int sort_item_cmp(const void *pa, const void *pb)
{
    const sort_item *a = pa, *b = pb;
    int d = 0;
    switch (a->mode) {
    case LAYERS_SORT_NAME: d = natural_cmp(a->name, b->name); break;
    case LAYERS_SORT_CURVATURE:
    case LAYERS_SORT_CLIP: {
        bool fa = isfinite(a->key), fb = isfinite(b->key);
        if (fa != fb)
            d = fa ? -1 : 1; /* unknown values last */
        else if (fa && a->key != b->key)
            d = a->key > b->key ? -1 : 1;
        break;
    }
    default: break;
    }
    return d ? d : (a->idx > b->idx) - (a->idx < b->idx);
}

void layers_sort_order(int *order, const param_layer *layers, const optim_layer_stats *st,
                       int n, layers_sort sort, bool reverse)
{
    sort_item *it = malloc((size_t)(n > 0 ? n : 1) * sizeof *it);
    if (!it) { /* fall back to model order */
        for (int i = 0; i < n; i++)
            order[i] = reverse ? n - 1 - i : i;
        return;
    }
    for (int i = 0; i < n; i++) {
        it[i].idx = i;
        it[i].mode = sort;
        it[i].name = layers[i].name;
        it[i].key = !st                            ? NAN
                    : sort == LAYERS_SORT_CURVATURE ? st[i].state_mean
                    : sort == LAYERS_SORT_CLIP      ? st[i].clip_rate
                                                    : 0;
    }
    qsort(it, (size_t)n, sizeof *it, sort_item_cmp);
    for (int i = 0; i < n; i++)
        order[i] = it[reverse ? n - 1 - i : i].idx;
    free(it);
}

typedef struct layers_ctx {
    const int *order;
    const param_layer *layers;
    const optim_layer_stats *st;
    int mark_layer;
    log_scale scale;
    const float *true_curv; /* [n] the objective's exact curvature, or NULL */
    bool newton;            /* layer-newton's columns */
} layers_ctx;


/* Too long: keep the head up to its first dot (the block index) and as much
 * of the tail as fits: "11.…q_proj.weight". */
static void draw_name(canvas *c, int x, int y, int w, const char *name, uint16_t attr)
{
    int len = canvas_text_width(name);
    if (len <= w || w < 4) {
        canvas_text(c, x, y, w, attr, name);
        return;
    }
    int head = (int)strcspn(name, ".") + 1;
    if (head > (w - 1) / 3)
        head = (w - 1) / 3;
    int tail = w - 1 - head;
    int n = canvas_text(c, x, y, head, attr, name);
    canvas_put(c, x + n, y, canvas_sym(c, "…", "~"), attr | CANVAS_ATTR_DIM);
    const char *p = name;
    for (int skip = len - tail; skip > 0 && *p; skip--) {
        p++;
        while ((*p & 0xc0) == 0x80)
            p++;
    }
    canvas_text(c, x + n + 1, y, tail, attr, p);
}

/* The bar of a layer's mean h on the shared log scale, λ as a marker. */
static void draw_layer_bar(canvas *c, int x, int y, int w, const layers_ctx *ctx,
                           const optim_layer_stats *s)
{
    double mf = s->lambda > 0 ? log_scale_fraction(&ctx->scale, s->lambda) : -1;
    widgets_bar(c, x, y, w, log_scale_fraction(&ctx->scale, s->state_mean), CANVAS_COLOR_BAR, mf,
                CANVAS_COLOR_FLOOR);
}

static void layers_cell(canvas *c, int x, int y, int w, int row, int col, void *vctx)
{
    layers_ctx *ctx = vctx;
    if (row < 0) { /* the bar column's header: its log axis */
        char lo[16], hi[16];
        snprintf(lo, sizeof lo, "1e%.0f", ctx->scale.lo);
        snprintf(hi, sizeof hi, "1e%.0f", ctx->scale.hi);
        if (!ctx->scale.valid || canvas_text_width(lo) + canvas_text_width(hi) + 1 > w) {
            canvas_text(c, x, y, w, CANVAS_ATTR_BOLD, "mean h");
            return;
        }
        canvas_text(c, x, y, w, CANVAS_ATTR_BOLD, lo);
        canvas_text_right(c, x + w, y, w, CANVAS_ATTR_BOLD, hi);
        return;
    }
    int li = ctx->order[row];
    const optim_layer_stats *s = &ctx->st[li];
    char buf[32];
    double v;
    switch (col) {
    case 0: {
        bool mark = li == ctx->mark_layer;
        canvas_put(c, x, y, mark ? canvas_sym(c, "▸", ">") : " ", CANVAS_COLOR_MARKER);
        char shortname[PARAM_NAME_MAX];
        widgets_short_layer_name(shortname, sizeof shortname, ctx->layers[li].name);
        draw_name(c, x + 1, y, w - 1, shortname, ctx->layers[li].frozen ? CANVAS_ATTR_DIM : 0);
        return;
    }
    }
    if (ctx->layers[li].frozen) { /* --trainable left it out: no numbers to show */
        if (col == 1)
            canvas_text_right(c, x + w, y, w, CANVAS_ATTR_DIM, "frozen");
        return;
    }
    switch (col) {
    case 1: v = s->state_mean; break;
    case 2: v = ctx->newton ? s->score : s->state_max; break;
    case 3: v = s->lambda; break;
    case 4: { /* clip rate; layer-newton: the group's share of all probes (floored groups
               * warn either way) */
        float pct = ctx->newton ? s->probe_share : s->clip_rate;
        if (isfinite(pct))
            snprintf(buf, sizeof buf, "%3.0f%%", (double)pct * 100.0);
        else
            snprintf(buf, sizeof buf, "-");
        canvas_text_right(c, x + w, y, w,
                          s->clip_rate > 0.5f ? CANVAS_COLOR_WARN : CANVAS_COLOR_DEFAULT, buf);
        return;
    }
    case 5: v = s->update_rms; break;
    case 6:
        if (ctx->true_curv) { /* without the true-curvature column, 6 is the bar */
            v = ctx->true_curv[li];
            break;
        }
        draw_layer_bar(c, x, y, w, ctx, s);
        return;
    default: draw_layer_bar(c, x, y, w, ctx, s); return;
    }
    widgets_fmt_num(buf, sizeof buf, w, v);
    canvas_text_right(c, x + w, y, w, 0, buf);
}

int widgets_layers(canvas *c, ui_rect r, const layers_view *v, const int *order,
                   const param_layer *layers, const optim_layer_stats *st, int n,
                   int mark_layer, bool focused, const float *true_curv, bool newton)
{
    layers_ctx ctx = {order, layers, st, mark_layer, {0, 0, false}, true_curv, newton};
    for (int i = 0; i < n; i++) {
        log_scale_add(&ctx.scale, &st[i].state_mean, 1);
        log_scale_add(&ctx.scale, &st[i].lambda, 1);
    }
    log_scale_finish(&ctx.scale);
    table_column cols[8] = {
        {" layer", 0, 16, 28, TABLE_ALIGN_LEFT, 0},
        {"mean h", 6, 0, 0, TABLE_ALIGN_RIGHT, 0},
        {"max h", 6, 0, 0, TABLE_ALIGN_RIGHT, 4},
        {canvas_sym(c, "λ", "lambda"), 6, 0, 0, TABLE_ALIGN_RIGHT, 2},
        {"clip", 4, 0, 0, TABLE_ALIGN_RIGHT, 1},
        {"upd rms", 7, 0, 0, TABLE_ALIGN_RIGHT, 3},
        {"true a", 6, 0, 0, TABLE_ALIGN_RIGHT, 2}, /* analytic: the exact curvature */
        {NULL, 0, 10, 0, TABLE_ALIGN_LEFT, 5}, /* bar of mean h, header = log axis */
    };
    if (newton) { /* per group: measured h, score, floor, share of the probes */
        cols[1].title = "h";
        cols[2].title = "score";
        cols[2].priority = 1;
        cols[3].title = "h_min";
        cols[4].title = "probes";
        cols[4].width = 6;
    }
    if (!true_curv) { /* no such column: the bar moves up */
        cols[6] = cols[7];
        return widgets_table(c, r, cols, 7, n, v->scroll, focused ? v->selected : -1,
                             layers_cell, &ctx);
    }
    return widgets_table(c, r, cols, 8, n, v->scroll, focused ? v->selected : -1, layers_cell,
                         &ctx);
}


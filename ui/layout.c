/* layout.c - see layout.h.
 *
 *   row 0-1      header (full width)
 *   band 1       loss chart (left half) | dev chart over gradient chart
 *   band 2       per-layer table over heat strip (left 3/5) | schedule over events
 *   last row     status / key line
 *
 * Band 1 takes 45% of the body (at least 10 rows), band 2 the rest (at least
 * 11).  The per-layer table gets 3/5 of the width because its columns are
 * the widest content on the screen.
 */
#include "layout.h"

#include <stddef.h>

static const char *const panel_names[LAYOUT_PANEL_COUNT] = {
    "header", "loss", "dev", "grad", "layers", "heat", "schedule", "events", "status",
};

/* Sizes at 80x24; every formula below only grows from these. */
static const int min_w[LAYOUT_PANEL_COUNT] = {80, 40, 40, 40, 48, 48, 32, 32, 80};
static const int min_h[LAYOUT_PANEL_COUNT] = {2, 10, 5, 5, 8, 3, 5, 6, 1};

const char *layout_panel_name(layout_panel p)
{
    return p >= 0 && p < LAYOUT_PANEL_COUNT ? panel_names[p] : "?";
}

void layout_min_size(int *w, int *h, layout_panel p)
{
    *w = (p >= 0 && p < LAYOUT_PANEL_COUNT) ? min_w[p] : 0;
    *h = (p >= 0 && p < LAYOUT_PANEL_COUNT) ? min_h[p] : 0;
}

static ui_rect rect(int x, int y, int w, int h)
{
    ui_rect r = {x, y, w, h};
    return r;
}

void layout_compute(ui_layout *out, int cols, int rows)
{
    *out = (ui_layout){0};
    out->cols = cols;
    out->rows = rows;
    if (cols < LAYOUT_MIN_COLS || rows < LAYOUT_MIN_ROWS) {
        out->too_small = true;
        return;
    }
    out->panel[LAYOUT_PANEL_HEADER] = rect(0, 0, cols, 2);
    out->panel[LAYOUT_PANEL_STATUS] = rect(0, rows - 1, cols, 1);

    int body_y = 2, body_h = rows - 3;
    int band1 = body_h * 9 / 20;
    if (band1 < 10)
        band1 = 10;
    int band2 = body_h - band1;

    /* band 1: charts */
    int half = cols / 2;
    int dev_h = band1 / 2;
    out->panel[LAYOUT_PANEL_LOSS] = rect(0, body_y, half, band1);
    out->panel[LAYOUT_PANEL_DEV] = rect(half, body_y, cols - half, dev_h);
    out->panel[LAYOUT_PANEL_GRAD] = rect(half, body_y + dev_h, cols - half, band1 - dev_h);

    /* band 2: layers + heat | schedule + events */
    int y2 = body_y + band1;
    int left = cols * 3 / 5;
    int heat_h = band2 >= 20 ? 4 : 3;
    out->panel[LAYOUT_PANEL_LAYERS] = rect(0, y2, left, band2 - heat_h);
    out->panel[LAYOUT_PANEL_HEAT] = rect(0, y2 + band2 - heat_h, left, heat_h);
    int sched_h = band2 * 2 / 5;
    if (sched_h < 5)
        sched_h = 5;
    if (sched_h > 14)
        sched_h = 14;
    out->panel[LAYOUT_PANEL_SCHEDULE] = rect(left, y2, cols - left, sched_h);
    out->panel[LAYOUT_PANEL_EVENTS] = rect(left, y2 + sched_h, cols - left, band2 - sched_h);
}

bool ui_rect_overlaps(ui_rect a, ui_rect b)
{
    if (a.w <= 0 || a.h <= 0 || b.w <= 0 || b.h <= 0)
        return false;
    return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

bool ui_rect_inside(ui_rect inner, ui_rect outer)
{
    return inner.x >= outer.x && inner.y >= outer.y && inner.w >= 0 && inner.h >= 0 &&
           inner.x + inner.w <= outer.x + outer.w && inner.y + inner.h <= outer.y + outer.h;
}

ui_rect layout_center(ui_rect r, int w, int h)
{
    if (w > r.w)
        w = r.w;
    if (h > r.h)
        h = r.h;
    if (w < 0)
        w = 0;
    if (h < 0)
        h = 0;
    return rect(r.x + (r.w - w) / 2, r.y + (r.h - h) / 2, w, h);
}

ui_rect ui_rect_inner(ui_rect r)
{
    if (r.w < 2 || r.h < 2)
        return rect(r.x, r.y, 0, 0);
    return rect(r.x + 1, r.y + 1, r.w - 2, r.h - 2);
}

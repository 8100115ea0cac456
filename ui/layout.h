/* layout.h - where each workbench panel goes, as pure functions of the
 * terminal size.
 *
 * layout_compute() maps (cols, rows) to one rectangle per panel: a header,
 * three charts (loss, dev accuracy, projected gradient), the per-layer panel
 * with its heat strip under it, the schedule panel, the event log and the
 * status/key line.  Below LAYOUT_MIN_COLS x LAYOUT_MIN_ROWS the layout is
 * "too small" and every rectangle is empty: the app then shows only a
 * message.  Guarantees (tested for every size up to 300x100): rectangles
 * never overlap, stay inside the screen, and are at least layout_min_size().
 *
 * Leaves out: drawing, overlays (help, form, choosers: they float over the
 * panels and are centred with layout_center()).  No state, no allocation.
 */
#ifndef HELENE_LAYOUT_H
#define HELENE_LAYOUT_H

#include <stdbool.h>

#define LAYOUT_MIN_COLS 80
#define LAYOUT_MIN_ROWS 24

typedef struct ui_rect {
    int x, y; /* top-left cell, 0-based */
    int w, h; /* size in cells; 0 = empty */
} ui_rect;

typedef enum layout_panel {
    LAYOUT_PANEL_HEADER = 0,
    LAYOUT_PANEL_LOSS,
    LAYOUT_PANEL_DEV,
    LAYOUT_PANEL_GRAD,
    LAYOUT_PANEL_LAYERS,
    LAYOUT_PANEL_HEAT,
    LAYOUT_PANEL_SCHEDULE,
    LAYOUT_PANEL_EVENTS,
    LAYOUT_PANEL_STATUS,
    LAYOUT_PANEL_COUNT
} layout_panel;

typedef struct ui_layout {
    int cols, rows;
    bool too_small;                 /* below the minimum: panels are all empty */
    ui_rect panel[LAYOUT_PANEL_COUNT];
} ui_layout;

void layout_compute(ui_layout *out, int cols, int rows);

/* The smallest size panel p ever gets (its size at 80x24). */
void layout_min_size(int *w, int *h, layout_panel p);

const char *layout_panel_name(layout_panel p);

/* Rectangle helpers. */
bool ui_rect_overlaps(ui_rect a, ui_rect b);
bool ui_rect_inside(ui_rect inner, ui_rect outer);
/* A w x h rectangle centred in r, clipped to r. */
ui_rect layout_center(ui_rect r, int w, int h);
/* r shrunk by one cell on every side (the inside of a box). */
ui_rect ui_rect_inner(ui_rect r);

#endif

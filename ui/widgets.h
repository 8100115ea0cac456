/* widgets.h - the drawing blocks of the workbench, each drawing into a canvas.
 *
 *   - number formatting that fits a column width;
 *   - line chart: several series of (step, value) points, braille dots (2x4
 *     per cell) on a UTF-8 canvas or one mark per cell in ASCII, axes
 *     labelled with the value min/max and the step range, an optional
 *     vertical marker;
 *   - bar on a log scale shared by a set of values, with an optional marker
 *     (the per-layer floor λ_ℓ on the curvature bar);
 *   - table: columns that drop by priority when narrow, a scroll offset and
 *     a selected row (the per-layer table built on it is layers.h);
 *   - heat strip: one series over time as shades on a log scale;
 *   - event log: a bounded ring of lines, scrolled from the bottom;
 *   - list chooser and text dialog (help, confirmations).
 * The hyperparameter form is in form.h.
 *
 * Everything here is pure drawing and state: no curses, no engine calls, no
 * clocks, so it is tested by rendering into canvases.  Keys are ui_key codes
 * (the app translates curses keys).  Ownership: callers own every array they
 * pass; ui_log owns its storage (free with ui_log_free).
 */
#ifndef HELENE_WIDGETS_H
#define HELENE_WIDGETS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "canvas.h"
#include "err.h"

/* ---------------------------------------------------------------- keys */

/* Printable ASCII keys are their own codes; the rest: */
typedef enum ui_key {
    UI_KEY_NONE = 0,
    UI_KEY_CTRL_U = 21,
    UI_KEY_TAB = 9,
    UI_KEY_ENTER = 10,
    UI_KEY_ESC = 27,
    UI_KEY_BACKSPACE = 127,
    UI_KEY_UP = 0x1000,
    UI_KEY_DOWN,
    UI_KEY_LEFT,
    UI_KEY_RIGHT,
    UI_KEY_PGUP,
    UI_KEY_PGDN,
    UI_KEY_HOME,
    UI_KEY_END,
    UI_KEY_BTAB,
    UI_KEY_DELETE,
    UI_KEY_RESIZE,
} ui_key;

/* ---------------------------------------------------------------- formatting */

/* v in at most `width` characters: fixed point when it reads well, else a
 * compact exponent ("1.2e-5"); "-" for NaN. */
void widgets_fmt_num(char *buf, size_t cap, int width, double v);
/* "42s", "12m05s", "3h07m", "2d04h"; "--" when unknown. */
void widgets_fmt_duration(char *buf, size_t cap, double seconds);

/* Exponential moving average with bias correction (out may equal in);
 * non-finite inputs are skipped (the average carries over). */
void widgets_ema(float *out, const float *in, int n, double beta);

/* ---------------------------------------------------------------- chart */

typedef struct chart_series {
    const char *label;
    int n;
    const uint64_t *x;  /* [n] steps, non-decreasing */
    const float *y;     /* [n] values; non-finite points break the line */
    uint16_t attr;
    char ascii_mark;    /* glyph in ASCII mode */
} chart_series;

typedef struct chart_opts {
    bool y_fixed;       /* use y_min/y_max instead of the data's range */
    double y_min, y_max;
    bool x_fixed;       /* use x_min/x_max (the schedule spans the whole run) */
    double x_min, x_max;
    bool marker;        /* a vertical line at marker_x */
    double marker_x;
    bool lines;         /* connect consecutive points */
    bool percent;       /* y labels as percentages */
    bool log_y;         /* log10 y axis: non-positive values are not drawn */
    const char *x_label;/* centred under the plot, e.g. "step" */
} chart_opts;

/* Default options: auto ranges, lines on, x label "step". */
chart_opts chart_opts_default(void);

/* Plot inside r (no border): y labels in a 7-column gutter, an axis column,
 * the plot, and one row of x labels at the bottom.  Draws "no data yet"
 * when no series has a finite point.  Braille when c->utf8. */
void widgets_chart(canvas *c, ui_rect r, const chart_series *s, int n_series,
                   const chart_opts *o);

/* ---------------------------------------------------------------- bars */

/* A log10 range covering a set of positive values, widened to whole
 * decades (lo < hi). */
typedef struct log_scale {
    double lo, hi; /* log10 bounds */
    bool valid;    /* at least one positive finite value */
} log_scale;

/* Fold n values into s (non-positive and non-finite values are ignored);
 * start with s->valid = false. */
void log_scale_add(log_scale *s, const float *v, int n);
/* Finish: round to whole decades. */
void log_scale_finish(log_scale *s);
/* Position of v in [0, 1] (0 for v <= 0 or an invalid scale). */
double log_scale_fraction(const log_scale *s, double v);

/* A bar of w cells filled to frac (eighths in UTF-8, '#' in ASCII); a marker
 * glyph at marker_frac when it is in [0, 1]. */
void widgets_bar(canvas *c, int x, int y, int w, double frac, uint16_t attr,
                 double marker_frac, uint16_t marker_attr);

/* ---------------------------------------------------------------- table */

typedef enum table_align { TABLE_ALIGN_LEFT = 0, TABLE_ALIGN_RIGHT } table_align;

typedef struct table_column {
    const char *title; /* NULL: the cell function draws the header (row -1) */
    int width;        /* fixed width; 0 = flexible, takes what is left */
    int min_width;    /* flexible columns: at least this */
    int want_width;   /* flexible columns: grow to this first (0 = no limit) */
    table_align align;
    int priority;     /* when space is short, the highest numbers go first */
} table_column;

/* Draw cell (row, col) at (x, y), w columns wide. */
typedef void (*table_cell_fn)(canvas *c, int x, int y, int w, int row, int col, void *ctx);

/* Header row + rows [scroll, scroll + visible) of nrows; the selected row
 * (-1: none) is shown reversed.  Returns the number of body rows visible. */
int widgets_table(canvas *c, ui_rect r, const table_column *cols, int ncols, int nrows,
                  int scroll, int selected, table_cell_fn cell, void *ctx);

/* Which columns fit in width w: shown[i] set, widths[i] assigned. */
void table_fit_columns(bool *shown, int *widths, const table_column *cols, int ncols, int w);

/* Scrolling shared by every list: move *selected by a key, keep it visible
 * in a window of `visible` rows by adjusting *scroll.  Returns true when
 * the key was a scrolling key. */
bool list_scroll_key(int *selected, int *scroll, int n, int visible, int key);
/* Clamp both after n or visible changed. */
void list_scroll_clamp(int *selected, int *scroll, int n, int visible);

/* A layer name for narrow columns: common prefixes ("model.decoder.",
 * "transformer.") dropped, "layers.3." -> "3.", "self_attn." -> "attn.". */
void widgets_short_layer_name(char *buf, size_t cap, const char *name);

/* ---------------------------------------------------------------- heat strip */

/* values[n] at steps[n] across r.w columns (each column the mean of its
 * points), shaded on the log scale of the values; returns the scale used. */
log_scale widgets_heat(canvas *c, ui_rect r, const float *values, const uint64_t *steps, int n);

/* ---------------------------------------------------------------- event log */

#define UI_LOG_TEXT_MAX 256

typedef struct ui_log_line {
    char text[UI_LOG_TEXT_MAX];
    uint16_t attr;
} ui_log_line;

typedef struct ui_log {
    ui_log_line *lines; /* ring of cap lines */
    int cap, n, head;   /* head = index of the oldest line */
} ui_log;

hl_status ui_log_init(ui_log *l, int cap, hl_err *err);
void ui_log_free(ui_log *l);
void ui_log_add(ui_log *l, uint16_t attr, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Line i, 0 = oldest. */
const ui_log_line *ui_log_at(const ui_log *l, int i);

/* The newest lines that fit, `scroll` entries up from the newest (clamped);
 * long lines wrap with an indent of 2. */
void widgets_log(canvas *c, ui_rect r, const ui_log *l, int scroll);

/* ---------------------------------------------------------------- overlays */

/* A bordered list of items centred in screen; selected shown reversed. */
void widgets_list(canvas *c, ui_rect screen, const char *title, const char *const *items,
                  int n, int selected, int scroll, const char *footer);
/* Clear a w x h box centred in screen, draw its border and title, and
 * return its inside (the overlays' frame). */
ui_rect widgets_clear_box(canvas *c, ui_rect screen, int w, int h, const char *title);
/* A bordered box of text lines centred in screen. */
void widgets_dialog(canvas *c, ui_rect screen, const char *title, const char *const *lines,
                    int n, uint16_t attr);

#endif

/* plot.h - figures of runs for reports and slides (`helene plot`).
 *
 * One figure, four panels sharing the step axis: the training loss (an EMA
 * of the step losses, raw points faint behind it), dev accuracy (or an
 * analytic objective's exact loss), HELENE's annealing coefficient alpha_t
 * and its clip rate (the share of elements at the layer floor).  Every run
 * is one colour with a dash pattern of its own, so the curves stay apart in
 * print without colour; a legend names the runs.  Drawn with cairo into PNG,
 * SVG or PDF, chosen by the file name's extension, written atomically.
 *
 * plot_journal_read turns a journal (engine/journal.h) into runs: each "run"
 * event starts one (a file written with --log-append holds several), labelled
 * by its method and learning rate.
 *
 * When a run's journal has per-layer curvature ("layers" lines, written at
 * every evaluation), a fifth panel across the bottom draws each layer's
 * curvature over time for the first such run (log axis, a colour ramp from
 * the first layer to the last, the highest and lowest named).
 *
 * Leaves out: the terminal (ui/widgets.h draws the live charts).
 */
#ifndef HELENE_PLOT_H
#define HELENE_PLOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum plot_panel {
    PLOT_LOSS = 0,
    PLOT_DEV,
    PLOT_ALPHA,
    PLOT_CLIP,
    PLOT_PANELS,
    PLOT_LAYERS = PLOT_PANELS /* the optional per-layer panel (not in s[]) */
} plot_panel;

typedef struct plot_series {
    size_t n, cap;
    double *x, *y;
} plot_series;

typedef struct plot_run {
    char label[160];
    bool dev_is_accuracy;             /* models: accuracy in %; analytic: exact loss */
    plot_series s[PLOT_PANELS];       /* step -> value */
    int n_layers;                     /* per-layer curvature, or 0 */
    char (*layer_name)[96];           /* [n_layers] */
    plot_series *layer_h;             /* [n_layers] step -> mean curvature */
} plot_run;

typedef struct plot_runs {
    plot_run *run;
    int n, cap;
} plot_runs;

void plot_runs_free(plot_runs *r);

/* Append the runs of one journal.  name labels runs whose journal has no
 * run event (older journals); the label of each run is "NAME: METHOD lr X".
 * (just "METHOD lr X" when NAME is the method).  Errors name the file:
 * unreadable, or not one step line in it. */
hl_status plot_journal_read(plot_runs *r, const char *path, const char *name, hl_err *err);

/* Draw the runs into path (.png, .svg or .pdf), width x height pixels (PNG)
 * or points (SVG, PDF), with a title (may be NULL or ""). */
hl_status plot_write(const char *path, const plot_runs *r, const char *title, int width,
                     int height, hl_err *err);

/* The drawing area of panel p in a width x height figure (for tests): the
 * plot rectangle inside the axes, in pixels from the top left. */
void plot_panel_rect(int width, int height, plot_panel p, double *x, double *y, double *w,
                     double *h);
/* The same for a figure of n_runs runs with the per-layer panel or not. */
void plot_panel_rect_ex(int width, int height, int n_runs, bool layers, plot_panel p, double *x,
                        double *y, double *w, double *h);

/* The run the per-layer panel draws (the first with per-layer data), or
 * NULL: then the figure has the four panels only. */
const plot_run *plot_layers_run(const plot_runs *r);

/* Colour of run i as 0..255 RGB (for tests). */
void plot_run_rgb(int i, uint8_t rgb[3]);

#endif

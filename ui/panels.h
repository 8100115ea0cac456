/* panels.h - the workbench's panels, drawn from one telemetry snapshot.
 *
 * Each function fills one layout rectangle of a canvas from an
 * engine_telemetry (engine.h) using the widgets: header, the three charts,
 * the per-layer table and its heat strip, the schedule, the event log, the
 * status line, the help overlay and the "too small" screen.  They read the
 * snapshot and the view state the app passes in, and nothing else, so a
 * whole screen can be rendered and checked in a test from a telemetry
 * struct filled by hand.
 *
 * Leaves out: curses, the engine thread, key handling (app.c).  Ownership:
 * nothing is kept between calls; the snapshot is borrowed.
 */
#ifndef HELENE_PANELS_H
#define HELENE_PANELS_H

#include <stdbool.h>

#include "canvas.h"
#include "engine.h"
#include "layers.h"
#include "widgets.h"

/* Name shown for a state: "RUNNING", "PAUSED", ... */
const char *panels_state_name(engine_state s);

/* True for analytic objectives (no model, "dev" is the exact loss). */
bool panels_is_analytic(const engine_telemetry *t);

/* Two rows: model, task, optimizer and its key hyperparameters; step/total,
 * steps/s, tokens/s, ETA, RSS and the state with its reason. */
void panels_header(canvas *c, ui_rect r, const engine_telemetry *t);

/* L+, L−, their mean and an EMA of the mean. */
void panels_loss(canvas *c, ui_rect r, const engine_telemetry *t, bool log_y);
/* Dev accuracy at eval steps (the exact loss for analytic objectives). */
void panels_dev(canvas *c, ui_rect r, const engine_telemetry *t, bool log_y);
/* The projected gradient c. */
void panels_grad(canvas *c, ui_rect r, const engine_telemetry *t);

/* The per-layer table; clamps v to the layer count and the rows that fit.
 * Returns the number of visible rows (for paging). */
int panels_layers(canvas *c, ui_rect r, const engine_telemetry *t, layers_view *v,
                  int heat_layer, bool focused);
/* The layer shown at the cursor row of v (-1 when there are no layers). */
int panels_layer_at_cursor(const engine_telemetry *t, const layers_view *v);

/* Curvature (state mean) of one layer over time. */
void panels_heat(canvas *c, ui_rect r, const engine_telemetry *t, int layer);

/* α_t over the whole run from the current hyperparameters (so it redraws
 * when T, β1 or η change), η's history, a marker at the current step and
 * the curvature refresh ticks around it. */
void panels_schedule(canvas *c, ui_rect r, const engine_telemetry *t);

/* Event log; scroll = lines up from the newest. */
void panels_events(canvas *c, ui_rect r, const ui_log *log, int scroll, bool focused);

/* ---- the race view (helene race on a terminal) ---- */

#define PANELS_RACE_MAX 4

/* What the race view knows of one arm. */
typedef struct race_arm_info {
    const engine_telemetry *t;
    const char *label;      /* its --arm spec */
    double mib;             /* memory creating it added */
    bool reached;           /* the finish line, once crossed: */
    uint64_t steps_to, forwards_to;
    double secs_to;         /* its own running time then */
} race_arm_info;

/* Arm i's colour role and its glyph (UTF-8 and ASCII), the same in every
 * panel, so arms stay apart without colour too. */
uint16_t panels_race_attr(int arm);
const char *panels_race_glyph(const canvas *c, int arm);

/* Row 0: the race (model, task, step, state); then one row per arm: glyph,
 * number, method, η, step, steps/s, best dev and memory; sel is marked. */
void panels_race_header(canvas *c, ui_rect r, const race_arm_info *a, int n, int sel,
                        const char *state);
/* The loss EMA of every arm, overlaid, with a legend. */
void panels_race_loss(canvas *c, ui_rect r, const race_arm_info *a, int n, bool log_y,
                      bool mono);
/* Dev accuracy (analytic: the exact loss) of every arm, overlaid, with the
 * target as a reference line. */
void panels_race_dev(canvas *c, ui_rect r, const race_arm_info *a, int n, bool log_y,
                     double target, bool mono);
/* (mono: no colours, so the charts draw each arm with its own ASCII glyph
 * instead of braille dots, which would all look alike) */
/* The finish line: steps, forwards and seconds each arm needed to reach the
 * target, as each crosses it. */
void panels_race_finish(canvas *c, ui_rect r, const race_arm_info *a, int n, double target,
                        bool target_given);

/* Key hints on the left; message (or pending changes) and redraw rate on
 * the right. */
void panels_status(canvas *c, ui_rect r, const char *message, uint16_t message_attr,
                   const char *pending, int redraw_hz);

/* The whole canvas: "terminal too small" and the sizes. */
void panels_too_small(canvas *c);

/* Help overlay listing every key. */
void panels_help(canvas *c, ui_rect screen, int page);

#endif

/* app.h - the workbench's main loop: curses, keys, and the live engine.
 *
 * app_run() takes over the terminal (it alone calls curses, on the calling
 * thread), polls the engine's telemetry and events at a steady redraw rate,
 * draws the panels (panels.h) into a canvas and copies it to the screen,
 * and turns keys into engine commands.  Key bursts are drained before each
 * redraw and coalesced (pause toggles and switch toggles net out, one step
 * runs at a time, one evaluation or checkpoint is in flight at a time), so a
 * held key never queues unbounded work.  The terminal is restored on every
 * way out: normal quit, error, SIGINT/SIGTERM/SIGHUP (a flag set by the
 * handler, acted on by the loop) and process exit (an atexit guard).
 *
 * Leaves out: argument parsing and engine creation (src/cmd_tui.c), mouse
 * input.  Ownership: the engine is borrowed; app_run posts QUIT before it
 * returns (except after a signal: then the caller asks for a checkpoint
 * first and posts QUIT itself), the caller joins and frees the engine.
 */
#ifndef HELENE_APP_H
#define HELENE_APP_H

#include <stdbool.h>

#include "engine.h"
#include "err.h"

#define APP_REDRAW_HZ_DEFAULT 10
#define APP_ANALYTIC_RATE 30 /* steps/s the workbench runs analytic objectives at */

typedef struct app_options {
    bool color;    /* false: monochrome (--no-color, NO_COLOR) */
    int redraw_hz; /* initial redraw rate; `+`/`-` change it */
} app_options;

/* Run until the user quits, a signal arrives or the engine stops.  Returns
 * HL_OK, or an error (no terminal, curses failed) with err filled and the
 * terminal left as it was. */
hl_status app_run(engine *e, const app_options *opt, hl_err *err);

/* The signal that ended the last app_run (SIGINT, SIGTERM, SIGHUP), or 0. */
int app_caught_signal(void);

/* For other full-screen views (the race view): take the terminal as app_run
 * does (curses, the signal flags app_caught_signal reports, an atexit
 * guard), with colours when want_color and the terminal has them; give it
 * back; and map a curses key to a UI_KEY_ code. */
hl_status app_term_start(bool want_color, bool *color, hl_err *err);
void app_term_end(void);
int app_map_key(int ch);

/* The step-rate limits `<` / `>` step through (1, 3, 10, 30, 100, 300, 1000,
 * then 0 = none), and the next one in direction dir from rate. */
double app_next_max_rate(double rate, int dir);

/* The redraw rates `+`/`-` step through, and the next one in direction dir. */
int app_next_redraw_hz(int hz, int dir);

#endif

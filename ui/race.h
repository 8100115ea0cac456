/* race.h - the live race view: 2 to 4 engines (a race's arms) side by side.
 *
 * race_view_run() takes the terminal (as the workbench does) and drives the
 * arms in lock-step from a thread of its own (lockstep.h), so the screen
 * stays live while a round runs.  It shows one header line per arm (method,
 * η, step, steps/s, best dev, memory), the loss EMA and dev accuracy of every
 * arm overlaid in one chart each (a colour and a glyph per arm), the finish
 * line (steps, forwards and seconds each arm needed to reach the target), and
 * the selected arm's layer table and events.
 *
 * Keys: Space pause/resume, s one round while paused, v evaluate, c
 * checkpoint (all arms); Tab or 1-4 select an arm; a/p/k toggle annealing,
 * preconditioning, clipping of the selected arm; < > the round-rate cap; g
 * log loss axis; ? help; q quit (asks when progress is unsaved).
 *
 * Ownership: the engines are borrowed, started paused; race_view_run
 * returns with no round in flight, the engines still alive (the caller
 * quits, checkpoints and frees them).  Threads: call from the main thread.
 */
#ifndef HELENE_RACE_H
#define HELENE_RACE_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "err.h"

typedef struct race_view_arm {
    engine *e;
    const char *label; /* the --arm spec */
    double mib;        /* what creating the arm added to resident memory */
} race_view_arm;

typedef struct race_view_opts {
    bool color;
    uint64_t total_steps;
    double target;     /* finish line (dev accuracy, or exact loss); NAN: the slowest
                        * arm's best dev so far */
    double max_rate;   /* rounds per second, 0 = as fast as they go */
} race_view_opts;

/* How the view ended. */
typedef enum race_view_end {
    RACE_VIEW_FINISHED = 0, /* every arm reached the total steps (final evaluations done) */
    RACE_VIEW_QUIT,         /* the user quit before (after checkpointing, if asked) */
    RACE_VIEW_SIGNAL,       /* SIGINT/SIGTERM/SIGHUP: app_caught_signal() says which */
    RACE_VIEW_FAILED,       /* an arm failed; the message was shown and is in why */
} race_view_end;

hl_status race_view_run(const race_view_arm *arms, int n, const race_view_opts *opt,
                        race_view_end *end, char *why, size_t why_cap, hl_err *err);

#endif

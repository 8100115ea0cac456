/* runargs.h - the run flags shared by `helene train` and `helene tui`.
 *
 * The configuration is assembled in one order: defaults; with --resume DIR,
 * the checkpoint's own configuration; --config FILE; for analytic
 * objectives the scenario's preset (unless --no-preset); then every other
 * `--key value` through runcfg_set.  Flags that are not run settings
 * (--headless, --print-config, --no-preset, --no-color, --paused) are
 * collected here.  Leaves out: running the engine headless (cmd_run.c).
 */
#ifndef HELENE_RUNARGS_H
#define HELENE_RUNARGS_H

#include <stdbool.h>
#include <stdio.h>

#include "runcfg.h"

typedef struct runargs {
    runcfg cfg;
    bool headless, print_config, no_preset, no_color, paused;
} runargs;

/* Parse argv[1..argc).  Returns 0, or the exit status (2 bad usage, 1 a
 * file could not be read) after printing "helene CMD: message". */
int runargs_parse(runargs *ra, const char *cmd, int argc, char **argv);
void runargs_free(runargs *ra);

/* The hyperparameter table (key, range, default, methods, help). */
void runargs_print_hparams(FILE *f);

/* Open the workbench on ra->cfg; returns the exit status (128 + the signal
 * after SIGINT, SIGTERM or SIGHUP, which checkpoint the run first). */
int runargs_run_tui(runargs *ra);

/* After a signal: ask the running engine for a checkpoint (into --save, or
 * the run folder the engine chooses) and to quit, and join it.  True when
 * the checkpoint was written; dir gets its folder.  Messages go to stderr. */
typedef struct engine engine;
bool runargs_checkpoint_and_quit(engine *e, char *dir, size_t cap);
/* "interrupted" (SIGINT), "terminated" (SIGTERM), "hung up" (SIGHUP) */
const char *runargs_signal_name(int sig);

#endif

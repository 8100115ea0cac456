/* lockstep.h - advance several engines (a race's arms) one step each in turn.
 *
 * Every engine was started paused; a round posts STEP_ONCE to each in turn
 * and waits until its step counter moves, so the arms share the machine
 * alike and each arm's journal times only its own steps.  Used by `helene
 * race` headless and by the live race view's driver thread.
 *
 * Threads: call from one thread; *t[i] are the caller's snapshots (engine_
 * snapshot_alloc'd), refreshed here in place.  Leaves out: scheduling policy (pause,
 * rate limits) and output, which the callers own.
 */
#ifndef HELENE_LOCKSTEP_H
#define HELENE_LOCKSTEP_H

#include <stdbool.h>
#include <stddef.h>

#include "engine.h"

/* One step of every engine (finish: instead wait for each to reach FINISHED,
 * its final evaluation and checkpoint done).  Returns -1 when every engine
 * did it, else the index of an engine that failed or stopped, with why (its
 * reason).  A round always completes, so the arms stay at one step: callers
 * look at signals and quit requests between rounds. */
int lockstep_round(engine *const *e, engine_telemetry *const *t, int n, bool finish,
                   char *why, size_t cap);

#endif

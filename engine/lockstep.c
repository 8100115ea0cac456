/* lockstep.c - see lockstep.h. */
#include "lockstep.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int lockstep_round(engine *const *e, engine_telemetry *const *t, int n, bool finish,
                   char *why, size_t cap)
{
    for (int i = 0; i < n; i++) {
        engine_snapshot(e[i], t[i]);
        uint64_t before = t[i]->step;
        engine_cmd c = {.kind = ENGINE_CMD_STEP_ONCE};
        hl_err err;
        if (engine_post(e[i], &c, NULL, &err)) {
            snprintf(why, cap, "%s", err.msg);
            return i;
        }
        for (;;) {
            engine_snapshot(e[i], t[i]);
            engine_state s = t[i]->state;
            if (finish ? s == ENGINE_STATE_FINISHED : t[i]->step > before)
                break;
            /* a failed step pauses its engine with the reason (engine.c) */
            bool failed = s == ENGINE_STATE_PAUSED && strstr(t[i]->reason, " failed: ");
            if (failed || s == ENGINE_STATE_ERROR || s == ENGINE_STATE_QUIT ||
                (!finish && s == ENGINE_STATE_FINISHED)) {
                snprintf(why, cap, "%s", t[i]->reason[0] ? t[i]->reason : engine_state_name(s));
                return i;
            }
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
        }
    }
    return -1;
}

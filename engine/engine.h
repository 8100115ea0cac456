/* engine.h - one training run on its own thread, driven by commands.
 *
 * The engine owns everything a run needs: the objective (a model + task, or
 * an analytic function), the trainable param_set, the optimizer, the worker
 * pool, the journal and the checkpoints.  engine_start() launches its
 * thread; from then on the caller (the TUI or the headless runner) talks to
 * it only through:
 *   - commands (engine_post): a bounded queue drained between steps, never
 *     mid-step (a probe leaves θ perturbed).  Every command is answered by an
 *     event that says the step it applied at, or why it was rejected;
 *   - telemetry (engine_snapshot): a copy of the latest per-step scalars,
 *     per-layer arrays and chart histories, published under a mutex with a
 *     generation counter.  Publishing never waits for a reader: the engine
 *     holds the lock only to copy a few KB;
 *   - events (engine_events): an append-only log (commands, evaluations,
 *     checkpoints, warnings) readable from any sequence number.
 * The engine thread never exits the process and never prints: failures
 * become the ERROR state or a PAUSED state with a reason.
 *
 * Leaves out: drawing (ui/), argument parsing (src/).  Thread safety: every
 * function here may be called from any one controlling thread while the
 * engine runs; engine_free only after engine_join.
 */
#ifndef HELENE_ENGINE_H
#define HELENE_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "hparams.h"
#include "optim.h"
#include "runcfg.h"

typedef enum engine_state {
    ENGINE_STATE_LOADING = 0, /* building the objective, loading a checkpoint */
    ENGINE_STATE_RUNNING,
    ENGINE_STATE_PAUSED,      /* by the user, or with a reason (non-finite loss ...) */
    ENGINE_STATE_FINISHED,    /* reached total steps; still answers EVAL/CHECKPOINT/QUIT */
    ENGINE_STATE_ERROR,       /* could not start or continue; reason says why */
    ENGINE_STATE_QUIT,        /* thread has ended */
} engine_state;

const char *engine_state_name(engine_state s);

typedef enum engine_cmd_kind {
    ENGINE_CMD_PAUSE = 0,
    ENGINE_CMD_RESUME,
    ENGINE_CMD_STEP_ONCE,  /* while paused: exactly one step, then paused again */
    ENGINE_CMD_SET,        /* key = hyperparameter name (hparams.h) or "steps"/"eval_every" */
    ENGINE_CMD_SWITCH,     /* value = method name; θ kept, new state fresh */
    ENGINE_CMD_EVAL,       /* evaluate on dev now */
    ENGINE_CMD_CHECKPOINT, /* value = folder ("" = the run's --save folder) */
    ENGINE_CMD_ROLLBACK,   /* reload the last checkpoint written or resumed */
    ENGINE_CMD_QUIT,       /* stop after the current step */
} engine_cmd_kind;

#define ENGINE_KEY_MAX 64
#define ENGINE_VALUE_MAX 1024
#define ENGINE_TEXT_MAX 512

typedef struct engine_cmd {
    engine_cmd_kind kind;
    char key[ENGINE_KEY_MAX];
    char value[ENGINE_VALUE_MAX];
} engine_cmd;

typedef enum engine_event_kind {
    ENGINE_EVENT_APPLIED = 0, /* a command took effect at `step` */
    ENGINE_EVENT_REJECTED,    /* a command was refused; text says why */
    ENGINE_EVENT_EVAL,        /* value = dev accuracy (or loss for analytic objectives) */
    ENGINE_EVENT_CHECKPOINT,  /* text = folder written */
    ENGINE_EVENT_WARNING,
    ENGINE_EVENT_ERROR,
    ENGINE_EVENT_INFO,
    ENGINE_EVENT_FINISHED,    /* the run reached its total steps; text sums it up */
} engine_event_kind;

typedef struct engine_event {
    uint64_t seq;       /* 1, 2, ... in order */
    uint64_t cmd_id;    /* the command it answers, 0 if none */
    uint64_t step;      /* step at which it happened / applied */
    engine_event_kind kind;
    double value;
    char text[ENGINE_TEXT_MAX];
} engine_event;

/* Chart history: up to ENGINE_HIST_CAP points per series; when full, every
 * other point is dropped and the stride doubles, so a series always spans
 * the whole run with bounded memory. */
#define ENGINE_HIST_CAP 1024
#define ENGINE_COSINE_WINDOW 50

typedef enum engine_series {
    ENGINE_SERIES_LOSS = 0,   /* (L+ + L−) / 2, or the objective's full loss */
    ENGINE_SERIES_LOSS_PLUS,
    ENGINE_SERIES_LOSS_MINUS,
    ENGINE_SERIES_PROJ_GRAD,  /* c */
    ENGINE_SERIES_ALPHA,      /* α_t (HELENE) */
    ENGINE_SERIES_LR,         /* η */
    ENGINE_SERIES_DEV,        /* dev accuracy at eval steps */
    ENGINE_SERIES_GROUP,      /* layer-newton: the group the step probed (NAN otherwise;
                               * steps replayed from a resumed run's journal: NAN) */
    ENGINE_SERIES_COUNT
} engine_series;

typedef struct engine_hist {
    int32_t n;                   /* points stored */
    uint64_t stride;             /* steps per point */
    uint64_t step[ENGINE_HIST_CAP];
    float value[ENGINE_HIST_CAP];
} engine_hist;

/* What the UI reads.  Sized once by engine_snapshot_alloc for the run's
 * layer count; engine_snapshot copies into it. */
typedef struct engine_telemetry {
    uint64_t generation;         /* changes whenever anything below changes */
    engine_state state;
    char reason[ENGINE_TEXT_MAX]; /* why PAUSED/ERROR/FINISHED, "" otherwise */

    /* what is running */
    char model_name[256];        /* model folder or objective name */
    char task_name[128];
    int32_t method;              /* optim_method */
    hparams hp;                  /* current hyperparameters (copy) */
    uint64_t step, total_steps;
    double run_s, time_limit;    /* running time so far (pauses excluded); limit, 0 = none */
    uint64_t method_step;        /* steps of the current method (α_t's t; restarts on switch) */
    bool dev_is_accuracy;        /* the DEV series: accuracy (models) or exact loss (analytic) */
    bool unsaved;                /* steps done since the last checkpoint */
    char save_dir[RUNCFG_PATH_MAX]; /* where checkpoints go: --save, or the run folder
                                  * chosen at the first checkpoint; "" = none yet */

    /* the last step */
    optim_step_stats last;
    double loss;                 /* reported loss of the last step */
    double steps_per_s, tokens_per_s, eta_s; /* steps_per_s: the compute speed */
    double max_steps_per_s;      /* the rate limit (engine_set_max_rate), 0 = none */
    double dev_accuracy, best_dev_accuracy; /* NAN until the first eval */
    uint64_t best_dev_step;
    double test_final, test_best; /* test accuracy of the final and of the best-dev state,
                                   * after the run finished (NAN: none; test_best is NAN
                                   * too when the best dev state is the final one) */
    double rss_mib;
    double grad_cosine;          /* --grad-alignment: cos(c·z, ∇L) of the last step, else NAN */
    double grad_cosine_avg;      /* its mean over the last ENGINE_COSINE_WINDOW steps */

    /* per layer: names from the layer table, stats from the optimizer */
    int32_t n_layers;
    const param_layer *layers;   /* borrowed from the engine; valid until engine_free */
    optim_layer_stats *layer;    /* [n_layers] */
    float *layer_hist;           /* [n_layers][ENGINE_HIST_CAP] state_mean over time,
                                  * same steps as hist[ENGINE_SERIES_LOSS] */
    engine_hist hist[ENGINE_SERIES_COUNT];
    const float *true_curvature; /* [n_layers] the objective's exact curvature per layer
                                  * (the quadratic), or NULL; borrowed like layers */
    uint64_t refresh_steps[ENGINE_HIST_CAP]; /* recent curvature refresh steps */
    int32_t n_refresh;
} engine_telemetry;

typedef struct engine engine;

/* The run folder a run without --save checkpoints into:
 * runs/<task>-<method>-<UTC yyyymmdd-hhmmss>/ (task = the task's or the
 * analytic objective's name). */
void engine_default_run_dir(char *out, size_t cap, const char *task, const char *method);

/* Build the run described by cfg (model/task or analytic objective,
 * optimizer, resume) on the calling thread, so errors surface before any
 * thread starts.  cfg is copied. */
hl_status engine_create(engine **out, const runcfg *cfg, hl_err *err);
/* Resident memory of this process now, MiB (/proc/self/statm; 0 if unknown). */
double engine_process_rss_mib(void);

/* Limit the run to steps_per_s steps per second (0: as fast as it goes).
 * The workbench slows analytic objectives (10,000+ steps/s) to a rate
 * people can watch; headless runs never call it.  Any thread. */
void engine_set_max_rate(engine *e, double steps_per_s);
/* Start the thread.  start_paused: wait for RESUME or STEP_ONCE first. */
hl_status engine_start(engine *e, bool start_paused, hl_err *err);
/* Queue a command; *cmd_id (may be NULL) identifies its answer event.
 * HL_ERR_INVALID when the queue is full (the UI shows "busy") or the
 * engine has quit. */
hl_status engine_post(engine *e, const engine_cmd *cmd, uint64_t *cmd_id, hl_err *err);
/* Wait for the thread to end (after QUIT, or after FINISHED when the run
 * was started with exit_when_done). */
void engine_join(engine *e);
void engine_free(engine *e);

hl_status engine_snapshot_alloc(const engine *e, engine_telemetry *t, hl_err *err);
void engine_snapshot_free(engine_telemetry *t);
/* Copy the latest telemetry if its generation differs from t->generation.
 * Returns true when t changed. */
bool engine_snapshot(engine *e, engine_telemetry *t);

/* Copy up to max events with seq > after into out; returns the count. */
int engine_events(engine *e, engine_event *out, int max, uint64_t after);

/* Block until the state differs from `state` or timeout_ms passes; returns
 * the current state.  For the headless runner and tests. */
engine_state engine_wait(engine *e, engine_state state, int timeout_ms);

/* The resolved run configuration (defaults filled in) as JSON text,
 * malloc'ed, owned by the caller. */
char *engine_config_json(const engine *e);

#endif

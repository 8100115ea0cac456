/* runcfg.h - the run configuration: everything that defines a training run.
 *
 * One struct, with a default for every value, that a JSON file (--config),
 * command-line flags and a checkpoint's saved config all fill the same way:
 * runcfg_set(key, value) is the single place where a value is parsed and
 * validated, so a bad value gets the same message from any source.  Keys
 * are the flag names without "--" (e.g. "model", "steps", "lr"); optimizer
 * hyperparameters are delegated to hparams.h.
 *
 * Leaves out: running anything (engine.h).  Ownership: a runcfg owns its
 * hparams (free with runcfg_free); strings are fixed buffers.
 */
#ifndef HELENE_RUNCFG_H
#define HELENE_RUNCFG_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "hparams.h"

#define RUNCFG_PATH_MAX 4096

typedef enum runcfg_objective {
    RUNCFG_OBJECTIVE_MODEL = 0, /* a model folder + a task */
    RUNCFG_OBJECTIVE_QUADRATIC, /* analytic, heterogeneous layers */
    RUNCFG_OBJECTIVE_ROSENBROCK,
} runcfg_objective;

typedef struct runcfg {
    runcfg_objective objective;
    char model[RUNCFG_PATH_MAX];  /* model folder ("" = none) */
    char task[RUNCFG_PATH_MAX];   /* built-in name or FILE.json ("" = default) */
    char data[RUNCFG_PATH_MAX];   /* data file or folder ("" = the task's bundled data) */
    char trainable[RUNCFG_PATH_MAX]; /* regex of tuned tensor names ("" = all) */
    char peft[RUNCFG_PATH_MAX];   /* PEFT spec in canonical form ("" or "none" = full) */
    char base_hash[RUNCFG_PATH_MAX]; /* PEFT: hash of the base weights ("" = unknown) */
    int32_t k_shot;               /* > 0: k examples per class for train and for dev
                                     (LM-BFF / MeZO k-shot), test up to 1000 */
    int32_t train_size;           /* examples drawn for training (0 = all) */
    int32_t dev_size;             /* examples for dev evaluation (0 = all of dev) */
    int32_t batch_size;           /* B */
    int32_t max_tokens;           /* prompt token limit (0 = the task's / model's) */
    bool skip_bad;                /* skip and count bad data lines instead of failing */
    bool grad_alignment;          /* diagnostic: cosine of c·z with the true gradient */
    uint64_t steps;               /* total steps of the run (resume counts from its step) */
    double time_limit;            /* seconds of running time before the run ends (0 = none) */
    uint64_t seed;                /* run seed: perturbations and batch order */
    uint64_t data_seed;           /* sampling and splits */
    uint64_t eval_every;          /* 0 = only at the end */
    char save[RUNCFG_PATH_MAX];   /* final checkpoint folder ("" = none) */
    uint64_t checkpoint_every;    /* 0 = none; periodic ones go to save/step-N */
    int32_t shards;               /* batch shards, one forward each (0 = one per rank) */
    bool probes_per_rank;         /* mpirun: ranks split the probes, not the batch */
    uint64_t check_every;         /* mpirun: compare θ's hash across ranks every N steps */
    int32_t keep_last;            /* periodic checkpoints kept */
    char resume[RUNCFG_PATH_MAX]; /* checkpoint folder to continue from */
    char log[RUNCFG_PATH_MAX];    /* JSONL journal path ("" = none) */
    bool log_append;              /* add this run to a log that holds another */
    int32_t threads;              /* 0 = all online CPUs */
    double noise;                 /* analytic objectives: per-example noise σ */
    int32_t size_scale;           /* analytic objectives: multiplies layer sizes */
    int32_t curvature;            /* quadratic: analytic_curvature (layered by default) */
    hparams hp;                   /* optimizer and its hyperparameters */
} runcfg;

void runcfg_init(runcfg *c);
void runcfg_free(runcfg *c);
hl_status runcfg_copy(runcfg *dst, const runcfg *src, hl_err *err);

/* The learning rate a method takes in this run when the user gave none for
 * it: an analytic objective's preset for that method, or its rate for the
 * run's --peft adapters, else the method's default (hparams_default_lr).
 * *preset (may be NULL) says whether it is one of the former. */
double runcfg_method_lr(const runcfg *c, int32_t method, bool *preset);

/* Set one key from text.  Unknown key, bad or out-of-range value -> error
 * naming the key, the value and what is allowed; c is unchanged. */
hl_status runcfg_set(runcfg *c, const char *key, const char *value, hl_err *err);

/* True for on/off settings (skip_bad, grad_alignment), which command lines
 * may give as a bare --flag. */
bool runcfg_key_is_bool(const char *key);

/* Apply a JSON object of key: value pairs (strings, numbers, booleans, lists
 * of numbers) to c, all or nothing; where names the source in errors.  A key
 * given twice, null, an object or a string too long for its setting is an
 * error, never skipped or cut silently. */
typedef struct cJSON cJSON;
hl_status runcfg_apply_json(runcfg *c, const cJSON *obj, const char *where, hl_err *err);

/* Apply a JSON object of key: value pairs (numbers, strings, booleans). */
hl_status runcfg_load_json(runcfg *c, const char *path, hl_err *err);

/* The full resolved configuration as a JSON object text (malloc'ed). */
char *runcfg_to_json(const runcfg *c);

/* Key listing for --help and the docs. */
typedef struct runcfg_key {
    const char *key;
    const char *help;
} runcfg_key;
int runcfg_key_count(void);
const runcfg_key *runcfg_key_at(int i);

#endif

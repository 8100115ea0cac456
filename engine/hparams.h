/* hparams.h - the optimizer hyperparameters as a validated, self-describing set.
 *
 * Every value has a key, a type, a range, a default and a help string in one
 * table; the CLI (--key value), the run config (JSON) and the TUI form all go
 * through hparams_set(), which parses, validates and either applies the value
 * or rejects it with a message naming the key, the bad value and the allowed
 * range, changing nothing.  hparams_count()/hparams_info_at() iterate the
 * table.  Values may change between any two steps; the optimizer reads them
 * at the start of each step.
 *
 * Ownership: hparams owns lambda_abs (freed by hparams_free; hparams_copy
 * deep-copies).  Leaves out: schedules for lr (constant for now).
 */
#ifndef HELENE_HPARAMS_H
#define HELENE_HPARAMS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef enum optim_method {
    OPTIM_METHOD_MEZO = 0,
    OPTIM_METHOD_ZO_SGD_MMT,
    OPTIM_METHOD_ZO_SIGN,
    OPTIM_METHOD_ZO_ADAM,
    OPTIM_METHOD_HIZOO,
    OPTIM_METHOD_HELENE,
    OPTIM_METHOD_LAYER_NEWTON,            /* one layer group per step, Newton-scaled */
    OPTIM_METHOD_COUNT,                   /* the zeroth-order methods above */
    OPTIM_METHOD_FT_ADAM = OPTIM_METHOD_COUNT, /* first-order comparator: backprop +
                                           * AdamW, run by the engine on models */
    OPTIM_METHOD_ALL                      /* every method a run may use */
} optim_method;

typedef enum momentum_form { MOMENTUM_FORM_HEAVY_BALL = 0, MOMENTUM_FORM_EMA } momentum_form;
typedef enum hess_estimator {
    HESS_ESTIMATOR_PER_EXAMPLE = 0,
    HESS_ESTIMATOR_BATCH,
    HESS_ESTIMATOR_LAYER_SD /* layer_second_difference: one measured curvature per group */
} hess_estimator;
/* HELENE's preconditioning: off, by the clipped curvature in the update's
 * denominator (on, the paper), or by shaping the perturbation (z_l scaled by
 * sqrt(mean h / h_l) with h_l the measured layer curvature; no denominator) */
typedef enum precondition_mode {
    PRECONDITION_OFF = 0,
    PRECONDITION_ON,
    PRECONDITION_PERTURBATION
} precondition_mode;
typedef enum hess_probe { HESS_PROBE_SHARED = 0, HESS_PROBE_BLOCKWISE } hess_probe;
typedef enum lambda_mode {
    LAMBDA_MODE_CALIBRATED = 0,
    LAMBDA_MODE_RELATIVE,
    LAMBDA_MODE_ABSOLUTE,
    LAMBDA_MODE_MEASURED /* kappa x the group's measured curvature (second differences) */
} lambda_mode;
typedef enum layer_granularity {
    LAYER_GRANULARITY_TENSOR = 0,
    LAYER_GRANULARITY_BLOCK,
    LAYER_GRANULARITY_MODULE, /* a Linear's weight + bias, a LayerNorm's weight + bias */
    LAYER_GRANULARITY_COUNT
} layer_granularity;
/* layer-newton: how the group of a step is chosen */
typedef enum group_sampling {
    GROUP_SAMPLING_PROPORTIONAL = 0, /* P(l) ∝ s_l (d_l + 2): where loss per probe is */
    GROUP_SAMPLING_UNIFORM,
    GROUP_SAMPLING_GREEDY            /* the largest s_l (d_l + 2), ties to the first */
} group_sampling;

#define HPARAMS_MAX_PROBES 32

typedef struct hparams {
    int32_t method;          /* optim_method */
    /* every method */
    double lr;               /* η; default depends on the method */
    double eps;              /* ε, probe scale */
    double weight_decay;     /* λ_wd, decoupled, decay layers only */
    int32_t n_probes;        /* q, SPSA probes averaged per step */
    int64_t total_steps;     /* run length, 0 = open-ended (sets T's default) */
    /* zo-sgd-mmt */
    double momentum;         /* μ */
    /* zo-adam */
    double adam_beta1, adam_beta2, adam_eps;
    /* hizoo */
    double hizoo_alpha;      /* α, Hessian EMA rate */
    /* helene */
    double beta1, beta2;     /* momentum and curvature EMA decays */
    int64_t anneal_horizon;  /* T; 0 = total_steps/10, or 1000 if open-ended */
    int32_t hess_interval;   /* k, curvature refresh interval */
    double gamma;            /* γ, curvature scale */
    double delta;            /* δ, denominator constant */
    double kappa;            /* κ, floor scale for calibrated/relative */
    int32_t momentum_form;   /* momentum_form */
    int32_t hess_estimator;  /* hess_estimator */
    int32_t hess_probe;      /* hess_probe */
    int32_t lambda_mode;     /* lambda_mode */
    int32_t layer_granularity; /* layer_granularity */
    bool anneal, clip, update_clip;
    bool state_bf16;         /* m, h, v in bf16 with stochastic rounding */
    int32_t precondition;    /* precondition_mode */
    bool hess_debias; /* h / (1 - β2^r) in the denominator and the floor's comparison */
    /* layer-newton (optim_lnewton.c); its η is lr, a fraction of a Newton step */
    int32_t groups;          /* layer_granularity of its groups (module by default) */
    int32_t newton_k;        /* K: a group's curvature is re-measured every K of its probes */
    double beta_h, beta_s;   /* EMA decays of the group curvature h_l and score s_l */
    double h_min;            /* floor on h_l */
    int32_t sampling;        /* group_sampling */
    bool eps_scale;          /* ε_l = ε max(1, sqrt(65536 / d_l)) for small groups */
    bool share_forward;      /* a step's forwards share the activations below its group */
    double *lambda_abs;      /* [n_lambda_abs] absolute floors, 1 or one per layer */
    int32_t n_lambda_abs;
    bool lr_explicit;        /* lr was set by the user: keep it across method switches */
} hparams;

typedef enum hparam_type {
    HPARAM_TYPE_FLOAT = 0,
    HPARAM_TYPE_INT,
    HPARAM_TYPE_BOOL,
    HPARAM_TYPE_ENUM,
    HPARAM_TYPE_FLOAT_LIST
} hparam_type;

typedef struct hparam_info {
    const char *key;       /* "lr", "beta1", ... (also the CLI flag --key) */
    hparam_type type;
    double min, max;       /* numeric range (ints, floats, list items) */
    bool min_open, max_open; /* exclusive bounds */
    const char *choices;   /* enums: "heavy_ball|ema" */
    const char *def;       /* default as text ("per method" for lr) */
    const char *methods;   /* "all" or the methods that read it */
    const char *help;      /* one line */
} hparam_info;

void hparams_init(hparams *hp);   /* all defaults, method helene */
void hparams_free(hparams *hp);
hl_status hparams_copy(hparams *dst, const hparams *src, hl_err *err);

int hparams_count(void);
const hparam_info *hparams_info_at(int i);
const hparam_info *hparams_find(const char *key);

/* Parse and validate `value` for `key`; on success apply it, else leave hp
 * unchanged and explain.  n_layers > 0 checks lambda_abs's length (1 or
 * n_layers).  Setting "optimizer" also resets lr to the new method's default
 * unless lr was set explicitly. */
hl_status hparams_set(hparams *hp, const char *key, const char *value, int32_t n_layers,
                      hl_err *err);
/* Current value as text (buf of cap bytes). */
hl_status hparams_get(const hparams *hp, char *buf, size_t cap, const char *key, hl_err *err);
/* "[0, 1)", "1..32", "heavy_ball|ema", ... for messages and forms. */
void hparams_range_text(char *buf, size_t cap, const hparam_info *info);

const char *optim_method_name(int32_t method);
hl_status optim_method_parse(int32_t *method, const char *name, hl_err *err);
double hparams_default_lr(int32_t method);
/* T in effect: anneal_horizon, or its default. */
double hparams_anneal_T(const hparams *hp);

#endif

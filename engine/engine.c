/* engine.c - see engine.h.
 *
 * Locking: one mutex (mu) guards the command queue, the event ring, the
 * shared state word and the published telemetry copy.  The engine thread
 * works on its private telemetry (work) without the lock and publishes it
 * at most every PUBLISH_MS (and on every state change), so a UI copying
 * snapshots never slows training and training never waits for the UI
 * beyond a memcpy.
 *
 * Size (~1,400 lines, issue 19): the engine thread's state machine
 * (commands, stepping, evaluation, checkpoints, telemetry) over one struct
 * that every part reads; ft-adam and the alignment diagnostic are
 * firstorder.c, data-parallel ranks dist.c.  The command handlers
 * (apply_command, ~200 lines) are the next seam.
 */
#include "engine.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "analytic.h"
#include "checkpoint.h"
#include "dist.h"
#include "firstorder.h"
#include "journal.h"
#include "lm.h"
#include "rng.h"
#include "taskobj.h"

#define ENGINE_QUEUE_CAP 64
#define ENGINE_EVENTS_CAP 1024
#define PUBLISH_MS 50.0

struct engine {
    runcfg cfg;

    /* the objective and what it trains */
    objective obj;
    bool have_obj;
    lm lm;
    bool have_lm;
    taskobj *task;           /* obj.ctx when the objective is a model */
    param_set analytic_ps;
    float *true_curv;              /* [n_layers] the quadratic's exact curvature, or NULL */
    param_set *ps;
    pool pool;               /* analytic objectives; models use lm.pool */
    bool have_pool;
    pool *workers;
    optim *opt;
    journal jr;
    /* ft-adam and --grad-alignment: the backward and what needs it */
    firstorder fo;
    optim_layer_stats *no_layer_stats; /* [n_layers] zeros: ft-adam has no curvature */
    double cos_ring[ENGINE_COSINE_WINDOW];
    int cos_n, cos_at;
    /* the learning rate the user set for each method in this run (0 = none):
     * a switch takes it back, or the new method's default */
    double lr_user[OPTIM_METHOD_ALL];

    /* thread and shared state (mu) */
    pthread_t thread;
    bool started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    engine_cmd queue[ENGINE_QUEUE_CAP];
    uint64_t queue_id[ENGINE_QUEUE_CAP];
    int q_head, q_len;
    uint64_t next_cmd_id;
    engine_event events[ENGINE_EVENTS_CAP];
    uint64_t next_event_seq;
    engine_telemetry pub;
    engine_state shared_state;

    /* engine-thread private */
    engine_telemetry work;
    bool step_once;
    bool quit;
    uint64_t step;
    uint64_t last_ckpt_step;
    char last_ckpt[RUNCFG_PATH_MAX];
    double last_publish;
    double step_ema_s;       /* smoothed seconds per step */
    double max_rate;         /* steps per second at most, 0 = as fast as possible
                              * (engine_set_max_rate; guarded by mu) */
    double rate_now;         /* the engine thread's copy of max_rate */
    double run_s;            /* running time of this run: steps, evaluations, checkpoints */
    double tokens_ema;
    uint64_t hist_pending;   /* steps accumulated into the next history point */
    char best_path[RUNCFG_PATH_MAX + 64]; /* θ of the best dev evaluation */
    char tmp_dir[RUNCFG_PATH_MAX];
};

/* The run ends at its step count or when its running time reaches the
 * time limit, whichever comes first. */
static bool run_is_over(const engine *e)
{
    return e->step >= e->cfg.steps || (e->cfg.time_limit > 0 && e->run_s >= e->cfg.time_limit);
}

const char *engine_state_name(engine_state s)
{
    static const char *const names[] = {"LOADING", "RUNNING", "PAUSED", "FINISHED", "ERROR",
                                        "QUIT"};
    return (unsigned)s < sizeof names / sizeof names[0] ? names[s] : "?";
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double engine_process_rss_mib(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return (double)resident * (double)sysconf(_SC_PAGESIZE) / (1024.0 * 1024.0);
}

/* ----------------------------------------------------------- history --- */

static void hist_push(engine_hist *h, uint64_t step, float v)
{
    if (h->stride == 0)
        h->stride = 1;
    if (h->n == ENGINE_HIST_CAP) {
        for (int i = 0; i < ENGINE_HIST_CAP / 2; i++) {
            h->step[i] = h->step[2 * i + 1];
            h->value[i] = h->value[2 * i + 1];
        }
        h->n = ENGINE_HIST_CAP / 2;
        h->stride *= 2;
    }
    h->step[h->n] = step;
    h->value[h->n] = v;
    h->n++;
}

/* Per-layer history follows the loss series' decimation exactly. */
static void layer_hist_push(engine_telemetry *t, const engine_hist *loss_before)
{
    int n = loss_before->n;
    if (n == ENGINE_HIST_CAP) {
        for (int l = 0; l < t->n_layers; l++) {
            float *row = t->layer_hist + (size_t)l * ENGINE_HIST_CAP;
            for (int i = 0; i < ENGINE_HIST_CAP / 2; i++)
                row[i] = row[2 * i + 1];
        }
        n = ENGINE_HIST_CAP / 2;
    }
    for (int l = 0; l < t->n_layers; l++)
        t->layer_hist[(size_t)l * ENGINE_HIST_CAP + n] = t->layer[l].state_mean;
}

/* ------------------------------------------------------------ events --- */

static void emit(engine *e, engine_event_kind kind, uint64_t cmd_id, double value,
                 const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;
static void emit(engine *e, engine_event_kind kind, uint64_t cmd_id, double value,
                 const char *fmt, ...)
{
    pthread_mutex_lock(&e->mu);
    uint64_t seq = ++e->next_event_seq;
    engine_event *ev = &e->events[(seq - 1) % ENGINE_EVENTS_CAP];
    ev->seq = seq;
    ev->cmd_id = cmd_id;
    ev->step = e->step;
    ev->kind = kind;
    ev->value = value;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->text, sizeof ev->text, fmt, ap);
    va_end(ap);
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

int engine_events(engine *e, engine_event *out, int max, uint64_t after)
{
    pthread_mutex_lock(&e->mu);
    uint64_t last = e->next_event_seq;
    uint64_t first = last > ENGINE_EVENTS_CAP ? last - ENGINE_EVENTS_CAP + 1 : 1;
    if (after + 1 > first)
        first = after + 1;
    int n = 0;
    for (uint64_t s = first; s <= last && n < max; s++)
        out[n++] = e->events[(s - 1) % ENGINE_EVENTS_CAP];
    pthread_mutex_unlock(&e->mu);
    return n;
}

/* --------------------------------------------------------- telemetry --- */

static hl_status telemetry_alloc(engine_telemetry *t, int n_layers, hl_err *err)
{
    memset(t, 0, sizeof *t);
    t->n_layers = n_layers;
    size_t nl = n_layers > 0 ? (size_t)n_layers : 1;
    t->layer = calloc(nl, sizeof *t->layer);
    t->layer_hist = calloc(nl * ENGINE_HIST_CAP, sizeof *t->layer_hist);
    hparams_init(&t->hp);
    if (!t->layer || !t->layer_hist) {
        engine_snapshot_free(t);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for telemetry");
    }
    return HL_OK;
}

void engine_snapshot_free(engine_telemetry *t)
{
    free(t->layer);
    free(t->layer_hist);
    hparams_free(&t->hp);
    memset(t, 0, sizeof *t);
}

hl_status engine_snapshot_alloc(const engine *e, engine_telemetry *t, hl_err *err)
{
    hl_status st = telemetry_alloc(t, e->ps->n_layers, err);
    t->generation = UINT64_MAX; /* force the first copy */
    return st;
}

/* Copy src into dst (same layer count); dst keeps its own arrays. */
static void telemetry_copy(engine_telemetry *dst, const engine_telemetry *src)
{
    optim_layer_stats *layer = dst->layer;
    float *lh = dst->layer_hist;
    hparams hp = dst->hp;
    *dst = *src;
    dst->layer = layer;
    dst->layer_hist = lh;
    size_t nl = (size_t)src->n_layers;
    memcpy(dst->layer, src->layer, nl * sizeof *layer);
    memcpy(dst->layer_hist, src->layer_hist, nl * ENGINE_HIST_CAP * sizeof *lh);
    /* hparams owns a list: copy into dst's own (failure keeps the old list) */
    dst->hp = hp;
    hparams tmp;
    if (hparams_copy(&tmp, &src->hp, NULL) == HL_OK) {
        hparams_free(&dst->hp);
        dst->hp = tmp;
    }
}

static void publish(engine *e, bool force)
{
    double t = now_s();
    if (!force && (t - e->last_publish) * 1e3 < PUBLISH_MS)
        return;
    e->last_publish = t;
    engine_telemetry *w = &e->work;
    w->rss_mib = engine_process_rss_mib();
    w->generation++;
    hparams_free(&w->hp);
    hparams_copy(&w->hp, optim_hparams(e->opt), NULL);
    w->method = w->hp.method;
    w->method_step = optim_method_steps(e->opt);
    pthread_mutex_lock(&e->mu);
    telemetry_copy(&e->pub, w);
    e->shared_state = w->state;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

bool engine_snapshot(engine *e, engine_telemetry *t)
{
    pthread_mutex_lock(&e->mu);
    bool changed = t->generation != e->pub.generation;
    if (changed)
        telemetry_copy(t, &e->pub);
    pthread_mutex_unlock(&e->mu);
    return changed;
}

static void set_state(engine *e, engine_state s, const char *reason)
{
    e->work.state = s;
    snprintf(e->work.reason, sizeof e->work.reason, "%s", reason ? reason : "");
    publish(e, true);
}

engine_state engine_wait(engine *e, engine_state state, int timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (dl.tv_nsec >= 1000000000L) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&e->mu);
    while (e->shared_state == state)
        if (pthread_cond_timedwait(&e->cv, &e->mu, &dl) == ETIMEDOUT)
            break;
    engine_state s = e->shared_state;
    pthread_mutex_unlock(&e->mu);
    return s;
}

/* ---------------------------------------------------------- creation --- */

/* --peft: the adapters become what the optimizer tunes.  A resumed run's
 * adapters must meet the base weights they were trained on. */
static hl_status attach_peft(engine *e, hl_err *err)
{
    hl_status st = model_peft_attach_text(&e->lm.model, e->cfg.peft,
                                          e->cfg.resume[0] ? e->cfg.base_hash : NULL,
                                          e->cfg.seed, e->cfg.base_hash,
                                          sizeof e->cfg.base_hash, err);
    return st ? hl_err_prefix(err, "%s", e->cfg.resume[0] ? e->cfg.resume : "--peft") : st;
}

static hl_status build_objective(engine *e, hl_err *err)
{
    const runcfg *c = &e->cfg;
    int threads = c->threads > 0 ? c->threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (threads < 1)
        threads = 1;
    if (threads > POOL_MAX_THREADS)
        threads = POOL_MAX_THREADS;
    hl_status st;
    if (c->objective == RUNCFG_OBJECTIVE_MODEL) {
        if (!c->model[0])
            return hl_err_set(err, HL_ERR_INVALID,
                              "no model: give --model DIR, or --objective quadratic|rosenbrock");
        if ((st = lm_open(&e->lm, c->model, threads, err)))
            return st;
        e->have_lm = true;
        e->workers = &e->lm.pool;
        if ((st = attach_peft(e, err)))
            return st;
        e->ps = model_trainable(&e->lm.model);
        if ((st = taskobj_create(&e->task, &e->obj, &e->lm, c, err)))
            return st;
        e->have_obj = true;
        /* mpirun: each rank its shards, or (probes_per_rank) the whole batch */
        if (c->probes_per_rank && c->shards > 1)
            return hl_err_set(err, HL_ERR_INVALID, "--probes-per-rank evaluates whole batches; "
                              "leave --shards out");
        if (!c->probes_per_rank && (st = dist_wrap_objective(&e->obj, c->shards, err)))
            return st;
        snprintf(e->work.model_name, sizeof e->work.model_name, "%.255s", c->model);
        snprintf(e->work.task_name, sizeof e->work.task_name, "%s",
                 taskobj_task_name(e->task));
        return HL_OK;
    }
    if (c->peft[0] && strcmp(c->peft, "none") != 0)
        return hl_err_set(err, HL_ERR_INVALID, "--peft adapts a model; the %s objective has no "
                          "weights to adapt", c->objective == RUNCFG_OBJECTIVE_QUADRATIC
                                                  ? "quadratic" : "rosenbrock");
    if ((st = pool_init(&e->pool, threads, err)))
        return st;
    e->have_pool = true;
    e->workers = &e->pool;
    analytic_config ac;
    analytic_kind kind =
        c->objective == RUNCFG_OBJECTIVE_QUADRATIC ? ANALYTIC_KIND_QUADRATIC : ANALYTIC_KIND_ROSENBROCK;
    analytic_config_default(&ac, kind);
    ac.seed = c->data_seed;
    ac.batch = c->batch_size;
    ac.noise = c->noise;
    ac.size_scale = c->size_scale;
    ac.curvature = c->curvature;
    param_set_init(&e->analytic_ps);
    if ((st = analytic_init(&e->obj, &e->analytic_ps, &ac, err)))
        return st;
    e->have_obj = true;
    if ((st = dist_wrap_objective(&e->obj, c->shards, err))) /* (whole on every rank) */
        return st;
    e->ps = &e->analytic_ps;
    snprintf(e->work.model_name, sizeof e->work.model_name, "%s (analytic)",
             analytic_kind_name(kind));
    snprintf(e->work.task_name, sizeof e->work.task_name, "%s", analytic_kind_name(kind));
    return HL_OK;
}

static bool method_is_fo(const engine *e)
{
    return optim_hparams(e->opt)->method == OPTIM_METHOD_FT_ADAM;
}

static hl_status fo_write_state(void *ctx, const char *tmp_dir, hl_err *err)
{
    const engine *e = ctx;
    return firstorder_adam_write(&e->fo, tmp_dir, err);
}

/* After θ and the ZO state were loaded from dir: ft-adam's own state. */
static hl_status fo_read_state(engine *e, const char *dir, hl_err *err)
{
    if (!method_is_fo(e)) {
        firstorder_adam_release(&e->fo);
        return HL_OK;
    }
    return firstorder_adam_read(&e->fo, optim_hparams(e->opt), dir, err);
}

static void engine_release(engine *e)
{
    firstorder_free(&e->fo);
    free(e->no_layer_stats);
    if (e->opt)
        optim_free(e->opt);
    if (e->have_obj)
        objective_destroy(&e->obj);
    if (e->have_lm)
        lm_close(&e->lm);
    param_set_free(&e->analytic_ps);
    free(e->true_curv);
    if (e->have_pool)
        pool_free(&e->pool);
    journal_close(&e->jr);
    engine_snapshot_free(&e->work);
    engine_snapshot_free(&e->pub);
    if (e->tmp_dir[0]) {
        char p[RUNCFG_PATH_MAX + 32];
        snprintf(p, sizeof p, "%s/best.safetensors", e->tmp_dir);
        unlink(p);
        rmdir(e->tmp_dir);
    }
    runcfg_free(&e->cfg);
}

/* Rebuild chart history from the journal of a resumed run. */
static void replay_visit(void *ctx, bool is_eval, uint64_t step, double loss, double lp,
                         double lmi, double c, double alpha, double lr, double dev)
{
    engine *e = ctx;
    engine_telemetry *w = &e->work;
    if (is_eval) {
        hist_push(&w->hist[ENGINE_SERIES_DEV], step, (float)dev);
        w->dev_accuracy = dev;
        /* the best so far, for the title (its state is not on disk: the
         * best-dev test covers evaluations after the resume) */
        bool better = e->task ? dev > w->best_dev_accuracy : dev < w->best_dev_accuracy;
        if (isfinite(dev) && (better || isnan(w->best_dev_accuracy))) {
            w->best_dev_accuracy = dev;
            w->best_dev_step = step;
        }
        return;
    }
    /* the last step before the checkpoint is what the header shows first */
    w->loss = loss;
    w->last.loss_plus = lp;
    w->last.loss_minus = lmi;
    w->last.proj_grad = c;
    w->last.alpha = alpha;
    w->last.lr = lr;
    engine_hist *lh = &w->hist[ENGINE_SERIES_LOSS];
    if (++e->hist_pending < (lh->stride ? lh->stride : 1))
        return;
    e->hist_pending = 0;
    engine_hist before = *lh;
    layer_hist_push(w, &before);
    hist_push(lh, step, (float)loss);
    hist_push(&w->hist[ENGINE_SERIES_LOSS_PLUS], step, (float)lp);
    hist_push(&w->hist[ENGINE_SERIES_LOSS_MINUS], step, (float)lmi);
    hist_push(&w->hist[ENGINE_SERIES_PROJ_GRAD], step, (float)c);
    hist_push(&w->hist[ENGINE_SERIES_ALPHA], step, (float)alpha);
    hist_push(&w->hist[ENGINE_SERIES_LR], step, (float)lr);
    hist_push(&w->hist[ENGINE_SERIES_GROUP], step, NAN);
}

hl_status engine_create(engine **out, const runcfg *cfg_in, hl_err *err)
{
    *out = NULL;
    const double t_create = now_s();
    engine *e = calloc(1, sizeof *e);
    if (!e)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    hl_status st = runcfg_copy(&e->cfg, cfg_in, err);
    if (st) {
        free(e);
        return st;
    }
    if (dist_active() && !dist_leader()) { /* rank 0 keeps the run's records */
        e->cfg.log[0] = '\0';
        e->cfg.save[0] = '\0';
        e->cfg.eval_every = 0;
        e->cfg.checkpoint_every = 0;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    hparams_init(&e->work.hp);
    hparams_init(&e->pub.hp);
    param_set_init(&e->analytic_ps);

    /* A resumed run's cfg was built by the caller from the checkpoint's own
     * configuration (checkpoint_read_config) plus the flags given now. */
    if ((st = build_objective(e, err)))
        goto fail;
    if ((st = param_set_select(e->ps, e->cfg.trainable, err)))
        goto fail;
    hparams_free(&e->work.hp);
    hparams_free(&e->pub.hp);
    if ((st = telemetry_alloc(&e->work, e->ps->n_layers, err)) ||
        (st = telemetry_alloc(&e->pub, e->ps->n_layers, err)))
        goto fail;
    snprintf(e->work.model_name, sizeof e->work.model_name, "%.255s",
             e->cfg.objective == RUNCFG_OBJECTIVE_MODEL ? e->cfg.model : e->obj.name);
    snprintf(e->work.task_name, sizeof e->work.task_name, "%s",
             e->task ? taskobj_task_name(e->task) : e->obj.name);
    e->work.layers = e->ps->layers;
    e->pub.layers = e->ps->layers;
    if (e->cfg.objective == RUNCFG_OBJECTIVE_QUADRATIC &&
        (e->true_curv = malloc((size_t)e->ps->n_layers * sizeof *e->true_curv))) {
        for (int l = 0; l < e->ps->n_layers; l++)
            e->true_curv[l] = (float)analytic_quadratic_curvature_of(
                e->cfg.curvature, l, (double)param_set_count(e->ps));
        e->work.true_curvature = e->pub.true_curvature = e->true_curv;
    }
    e->work.dev_accuracy = e->work.best_dev_accuracy = NAN;
    e->work.test_final = e->work.test_best = NAN;

    if (e->cfg.probes_per_rank && dist_active()) { /* one probe per rank, or n_probes */
        if (e->cfg.hp.method == OPTIM_METHOD_LAYER_NEWTON || e->cfg.hp.method == OPTIM_METHOD_FT_ADAM) {
            st = hl_err_set(err, HL_ERR_INVALID, "--probes-per-rank splits the SPSA probes of "
                            "mezo, helene, zo-sgd-mmt, zo-sign, zo-adam and hizoo; %s has none",
                            optim_method_name(e->cfg.hp.method));
            goto fail;
        }
        if (e->cfg.hp.n_probes == 1)
            e->cfg.hp.n_probes = dist_size() < HPARAMS_MAX_PROBES ? dist_size()
                                                                  : HPARAMS_MAX_PROBES;
        if (e->cfg.hp.n_probes < dist_size()) {
            st = hl_err_set(err, HL_ERR_INVALID, "--probes-per-rank with %d ranks needs "
                            "n_probes >= %d (got %d)", dist_size(), dist_size(),
                            (int)e->cfg.hp.n_probes);
            goto fail;
        }
    }
    if ((st = optim_init_hp(&e->opt, e->ps, e->workers, e->cfg.seed, &e->cfg.hp, err)))
        goto fail;
    if (e->cfg.probes_per_rank && dist_active())
        optim_share_probes(e->opt, dist_rank(), dist_size(), dist_exchange_probes, NULL);
    /* apply the run's hyperparameters through the validated path */
    for (int i = 0; i < hparams_count(); i++) {
        const hparam_info *h = hparams_info_at(i);
        char buf[4096];
        if (hparams_get(&e->cfg.hp, buf, sizeof buf, h->key, NULL))
            continue;
        if (!strcmp(h->key, "lr") && !e->cfg.hp.lr_explicit)
            continue;
        if ((st = optim_set(e->opt, h->key, buf, err))) {
            hl_err_prefix(err, "hyperparameter %s", h->key);
            goto fail;
        }
    }
    if (e->cfg.hp.lr_explicit && e->cfg.hp.method >= 0 && e->cfg.hp.method < OPTIM_METHOD_ALL)
        e->lr_user[e->cfg.hp.method] = e->cfg.hp.lr;
    if (e->cfg.trainable[0]) {
        int k;
        size_t tuned = param_set_count_trainable(e->ps, &k), all = param_set_count(e->ps);
        emit(e, ENGINE_EVENT_INFO, 0, 0,
             "tuning %zu of %zu parameters (%.2f%%) in %d of %d tensors (trainable '%.200s'); "
             "the rest is frozen",
             tuned, all, 100.0 * (double)tuned / (double)(all ? all : 1), k, e->ps->n_layers,
             e->cfg.trainable);
    }
    if (e->have_lm && e->lm.model.peft.kind != PEFT_NONE) {
        int k;
        size_t tuned = param_set_count_trainable(e->ps, &k);
        size_t base = param_set_count(&e->lm.model.params);
        emit(e, ENGINE_EVENT_INFO, 0, 0,
             "peft %s: tuning %zu adapter parameters in %d tensors (%.3f%% of the model's %zu); "
             "the base weights are frozen",
             e->cfg.peft, tuned, k, 100.0 * (double)tuned / (double)(base ? base : 1), base);
    }
    e->no_layer_stats = calloc((size_t)e->ps->n_layers, sizeof *e->no_layer_stats);
    if (!e->no_layer_stats) {
        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (int l = 0; l < e->ps->n_layers; l++)
        e->no_layer_stats[l] = (optim_layer_stats){.score = NAN, .probe_share = NAN, .group = -1};
    if (dist_active() && (method_is_fo(e) || e->cfg.grad_alignment)) {
        st = hl_err_set(err, HL_ERR_INVALID, "%s runs in one process only: under mpirun the "
                        "ranks share zeroth-order probes, not gradients",
                        method_is_fo(e) ? "ft-adam" : "grad_alignment");
        goto fail;
    }
    firstorder_init(&e->fo, e->have_lm ? &e->lm.model : NULL, e->ps, e->workers, &e->obj,
                    e->task);
    if (method_is_fo(e) && (st = firstorder_adam_prepare(&e->fo, optim_hparams(e->opt), err)))
        goto fail;
    if (e->cfg.grad_alignment && (st = firstorder_align_prepare(&e->fo, err)))
        goto fail;
    e->work.grad_cosine = e->work.grad_cosine_avg = NAN;
    uint64_t cut = 0;
    bool continues_log = false; /* resuming the run this --log already holds */
    if (e->cfg.resume[0]) {
        checkpoint_info ci;
        if ((st = checkpoint_load(e->cfg.resume, e->ps, e->opt, &ci, err)) ||
            (st = fo_read_state(e, e->cfg.resume, err)))
            goto fail;
        e->step = ci.step;
        snprintf(e->last_ckpt, sizeof e->last_ckpt, "%s", e->cfg.resume);
        e->last_ckpt_step = e->step;
        /* the same journal continues from where the checkpoint was taken */
        if (e->cfg.log[0] && !strcmp(ci.journal_path, e->cfg.log)) {
            cut = ci.journal_offset;
            continues_log = true;
        }
        if (e->cfg.log[0] && access(e->cfg.log, F_OK) == 0)
            journal_scan(e->cfg.log, e->step, replay_visit, e, NULL);
    }
    if (e->cfg.log[0] && !continues_log && !e->cfg.log_append) {
        /* a journal is one run's record: mixing two makes both unreadable */
        struct stat sb;
        if (stat(e->cfg.log, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0) {
            st = hl_err_set(err, HL_ERR_INVALID,
                            "%s already holds a run's journal: continue that run with --resume "
                            "CHECKPOINT, add this run to it with --log-append, or choose "
                            "another --log",
                            e->cfg.log);
            goto fail;
        }
    }
    if (e->cfg.log[0] && (st = journal_open(&e->jr, e->cfg.log, cut, err)))
        goto fail;
    {
        char *json = runcfg_to_json(&e->cfg);
        journal_run(&e->jr, e->step, e->cfg.resume[0] != 0, PACKAGE_VERSION, json);
        char secs[32]; /* loading the model, data and state (benchmarks read it) */
        snprintf(secs, sizeof secs, "%.3f", now_s() - t_create);
        journal_event(&e->jr, e->step, "loaded", "seconds", secs);
        free(json);
        const char **names = malloc((size_t)e->ps->n_layers * sizeof *names);
        if (names) {
            for (int l = 0; l < e->ps->n_layers; l++)
                names[l] = e->ps->layers[l].name;
            journal_layer_names(&e->jr, e->step, names, e->ps->n_layers);
            free(names);
        }
    }
    e->work.step = e->step;
    e->work.method_step = optim_method_steps(e->opt);
    e->work.dev_is_accuracy = e->task != NULL;
    e->work.total_steps = e->cfg.steps;
    snprintf(e->work.save_dir, sizeof e->work.save_dir, "%s", e->cfg.save);
    e->work.time_limit = e->cfg.time_limit;
    e->work.state = ENGINE_STATE_LOADING;
    publish(e, true);
    *out = e;
    return HL_OK;
fail:
    engine_release(e);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
    return st;
}

void engine_free(engine *e)
{
    if (!e)
        return;
    engine_release(e);
    pthread_mutex_destroy(&e->mu);
    pthread_cond_destroy(&e->cv);
    free(e);
}

char *engine_config_json(const engine *e)
{
    return runcfg_to_json(&e->cfg);
}

/* ---------------------------------------------------------- commands --- */

hl_status engine_post(engine *e, const engine_cmd *cmd, uint64_t *cmd_id, hl_err *err)
{
    pthread_mutex_lock(&e->mu);
    if (e->shared_state == ENGINE_STATE_QUIT) {
        pthread_mutex_unlock(&e->mu);
        return hl_err_set(err, HL_ERR_INVALID, "the engine has stopped");
    }
    if (e->q_len == ENGINE_QUEUE_CAP) {
        pthread_mutex_unlock(&e->mu);
        return hl_err_set(err, HL_ERR_INVALID, "busy: %d commands are waiting",
                          ENGINE_QUEUE_CAP);
    }
    int slot = (e->q_head + e->q_len) % ENGINE_QUEUE_CAP;
    e->queue[slot] = *cmd;
    e->queue[slot].key[ENGINE_KEY_MAX - 1] = '\0';
    e->queue[slot].value[ENGINE_VALUE_MAX - 1] = '\0';
    uint64_t id = ++e->next_cmd_id;
    e->queue_id[slot] = id;
    e->q_len++;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
    if (cmd_id)
        *cmd_id = id;
    return HL_OK;
}

static bool pop_command(engine *e, engine_cmd *cmd, uint64_t *id)
{
    pthread_mutex_lock(&e->mu);
    bool have = e->q_len > 0;
    if (have) {
        *cmd = e->queue[e->q_head];
        *id = e->queue_id[e->q_head];
        e->q_head = (e->q_head + 1) % ENGINE_QUEUE_CAP;
        e->q_len--;
    }
    pthread_mutex_unlock(&e->mu);
    return have;
}

static hl_status do_eval(engine *e, hl_err *err);
static hl_status do_checkpoint(engine *e, const char *dir, hl_err *err);

static void apply_command(engine *e, const engine_cmd *c, uint64_t id)
{
    hl_err err;
    hl_err_clear(&err);
    engine_state s = e->work.state;
    switch (c->kind) {
    case ENGINE_CMD_PAUSE:
        if (s == ENGINE_STATE_RUNNING) {
            set_state(e, ENGINE_STATE_PAUSED, "paused by the user");
            journal_event(&e->jr, e->step, "pause", NULL, NULL);
            emit(e, ENGINE_EVENT_APPLIED, id, 0, "paused at step %llu",
                 (unsigned long long)e->step);
        } else
            emit(e, ENGINE_EVENT_REJECTED, id, 0, "not running (%s)", engine_state_name(s));
        break;
    case ENGINE_CMD_RESUME:
        if (s == ENGINE_STATE_PAUSED) {
            set_state(e, ENGINE_STATE_RUNNING, NULL);
            journal_event(&e->jr, e->step, "resume", NULL, NULL);
            emit(e, ENGINE_EVENT_APPLIED, id, 0, "running from step %llu",
                 (unsigned long long)e->step);
        } else
            emit(e, ENGINE_EVENT_REJECTED, id, 0, "not paused (%s)", engine_state_name(s));
        break;
    case ENGINE_CMD_STEP_ONCE:
        if (s == ENGINE_STATE_PAUSED) {
            e->step_once = true;
            emit(e, ENGINE_EVENT_APPLIED, id, 0, "one step from step %llu",
                 (unsigned long long)e->step);
        } else
            emit(e, ENGINE_EVENT_REJECTED, id, 0, "step-once needs a paused run (%s)",
                 engine_state_name(s));
        break;
    case ENGINE_CMD_SET: {
        char key[ENGINE_KEY_MAX];
        snprintf(key, sizeof key, "%s", c->key);
        for (char *p = key; *p; p++)
            if (*p == '-')
                *p = '_';
        hl_status st;
        if (!strcmp(key, "steps") || !strcmp(key, "eval_every") ||
            !strcmp(key, "checkpoint_every") || !strcmp(key, "time_limit")) {
            runcfg tmp;
            st = runcfg_copy(&tmp, &e->cfg, &err);
            if (!st && !(st = runcfg_set(&tmp, key, c->value, &err))) {
                if (!strcmp(key, "steps"))
                    st = optim_set(e->opt, "total_steps", c->value, &err);
                if (!st) {
                    runcfg_free(&e->cfg);
                    e->cfg = tmp;
                    e->work.total_steps = e->cfg.steps;
                    e->work.time_limit = e->cfg.time_limit;
                    if (e->work.state == ENGINE_STATE_FINISHED && !run_is_over(e))
                        set_state(e, ENGINE_STATE_PAUSED,
                                  !strcmp(key, "time_limit") ? "more time added"
                                                             : "more steps added");
                } else
                    runcfg_free(&tmp);
            } else if (!st)
                runcfg_free(&tmp);
        } else if (!strcmp(key, "optimizer")) {
            st = hl_err_set(&err, HL_ERR_INVALID, "use the switch command to change optimizer");
        } else {
            st = optim_set(e->opt, key, c->value, &err);
            if (!st)
                st = runcfg_set(&e->cfg, key, c->value, &err);
            if (!st && !strcmp(key, "lr"))
                e->lr_user[optim_hparams(e->opt)->method] = optim_hparams(e->opt)->lr;
        }
        if (st) {
            emit(e, ENGINE_EVENT_REJECTED, id, 0, "%s", err.msg);
        } else {
            journal_event(&e->jr, e->step, "set", key, c->value);
            double before, raw, after;
            if (optim_ablation_report(e->opt, &before, &raw, &after))
                emit(e, ENGINE_EVENT_APPLIED, id, 0,
                     "%s = %s from step %llu: update RMS %.3g before, %.3g after (%.3g, x%.3g, "
                     "without the per-layer scale that keeps the size)",
                     key, c->value, (unsigned long long)e->step + 1, before, after, raw,
                     before > 0 ? raw / before : 0.0);
            else
                emit(e, ENGINE_EVENT_APPLIED, id, 0, "%s = %s from step %llu", key, c->value,
                     (unsigned long long)e->step + 1);
            publish(e, true);
        }
        break;
    }
    case ENGINE_CMD_SWITCH: {
        hl_status st = HL_OK;
        if (!strcmp(c->value, "ft-adam") && !e->task)
            st = hl_err_set(&err, HL_ERR_INVALID,
                            "ft-adam needs a model (backpropagation); analytic objectives run "
                            "the zeroth-order methods");
        if (!st)
            st = optim_set(e->opt, "optimizer", c->value, &err);
        /* η: what the user set for this method earlier in the run, else the
         * method's own default (an η meant for another method can be off by
         * orders of magnitude: HELENE's 3e-3 sends MeZO's loss to 1e14) */
        char lr_buf[64] = "", lr_why[96] = "";
        if (!st) {
            int32_t m = optim_hparams(e->opt)->method;
            double lr = e->lr_user[m];
            bool preset = false;
            if (lr > 0)
                snprintf(lr_why, sizeof lr_why, "the one you set for %s earlier",
                         optim_method_name(m));
            else {
                lr = runcfg_method_lr(&e->cfg, m, &preset);
                snprintf(lr_why, sizeof lr_why, "%s's %s", optim_method_name(m),
                         preset ? "preset for this objective" : "default");
            }
            snprintf(lr_buf, sizeof lr_buf, "%.6g", lr);
            st = optim_set(e->opt, "lr", lr_buf, &err);
            if (!st)
                runcfg_set(&e->cfg, "lr", lr_buf, NULL);
        }
        if (!st && method_is_fo(e)) {
            firstorder_adam_release(&e->fo); /* a switch starts the method's state fresh */
            st = firstorder_adam_prepare(&e->fo, optim_hparams(e->opt), &err);
        } else if (!st)
            firstorder_adam_release(&e->fo);
        if (!st)
            runcfg_set(&e->cfg, "optimizer", c->value, NULL);
        if (st)
            emit(e, ENGINE_EVENT_REJECTED, id, 0, "%s", err.msg);
        else {
            journal_event(&e->jr, e->step, "switch", "optimizer", c->value);
            journal_event(&e->jr, e->step, "set", "lr", lr_buf);
            emit(e, ENGINE_EVENT_APPLIED, id, 0,
                 "optimizer %s from step %llu (fresh state), lr %s: %s (e edits it)", c->value,
                 (unsigned long long)e->step + 1, lr_buf, lr_why);
            publish(e, true);
        }
        break;
    }
    case ENGINE_CMD_EVAL:
        if (do_eval(e, &err))
            emit(e, ENGINE_EVENT_REJECTED, id, 0, "evaluation failed: %s", err.msg);
        else
            emit(e, ENGINE_EVENT_APPLIED, id, e->work.dev_accuracy, "evaluated at step %llu",
                 (unsigned long long)e->step);
        break;
    case ENGINE_CMD_CHECKPOINT: {
        if (!c->value[0] && !e->cfg.save[0]) {
            /* the first checkpoint of a run without --save picks its folder */
            char dir[RUNCFG_PATH_MAX];
            engine_default_run_dir(dir, sizeof dir, e->work.task_name,
                                   optim_method_name(optim_hparams(e->opt)->method));
            if (mkdir("runs", 0777) != 0 && errno != EEXIST) {
                emit(e, ENGINE_EVENT_REJECTED, id, 0,
                     "checkpoint failed: cannot create the folder runs: %s (start the run with "
                     "--save DIR)",
                     strerror(errno));
                break;
            }
            snprintf(e->cfg.save, sizeof e->cfg.save, "%s", dir);
            snprintf(e->work.save_dir, sizeof e->work.save_dir, "%s", dir);
            emit(e, ENGINE_EVENT_INFO, 0, 0,
                 "run folder %s (no --save was given): its checkpoints go there", dir);
        }
        const char *dir = c->value[0] ? c->value : e->cfg.save;
        if (do_checkpoint(e, dir, &err))
            emit(e, ENGINE_EVENT_REJECTED, id, 0, "checkpoint failed: %s", err.msg);
        else
            emit(e, ENGINE_EVENT_APPLIED, id, 0, "checkpoint %s at step %llu", dir,
                 (unsigned long long)e->step);
        break;
    }
    case ENGINE_CMD_ROLLBACK: {
        if (!e->last_ckpt[0]) {
            emit(e, ENGINE_EVENT_REJECTED, id, 0, "no checkpoint to roll back to");
            break;
        }
        checkpoint_info ci;
        if (checkpoint_load(e->last_ckpt, e->ps, e->opt, &ci, &err) ||
            fo_read_state(e, e->last_ckpt, &err)) {
            emit(e, ENGINE_EVENT_REJECTED, id, 0, "rollback failed: %s", err.msg);
            break;
        }
        uint64_t step = ci.step;
        e->step = step;
        e->work.step = step;
        journal_event(&e->jr, e->step, "rollback", "checkpoint", e->last_ckpt);
        set_state(e, ENGINE_STATE_PAUSED, "rolled back; press resume to continue");
        emit(e, ENGINE_EVENT_APPLIED, id, 0, "rolled back to %s (step %llu)", e->last_ckpt,
             (unsigned long long)step);
        break;
    }
    case ENGINE_CMD_QUIT:
        e->quit = true;
        emit(e, ENGINE_EVENT_APPLIED, id, 0, "quit at step %llu", (unsigned long long)e->step);
        break;
    default:
        emit(e, ENGINE_EVENT_REJECTED, id, 0, "unknown command %d", (int)c->kind);
        break;
    }
}

/* ------------------------------------------------- eval, checkpoints --- */

void engine_default_run_dir(char *out, size_t cap, const char *task, const char *method)
{
    time_t now = time(NULL);
    struct tm tm;
    char when[32] = "now";
    if (gmtime_r(&now, &tm))
        strftime(when, sizeof when, "%Y%m%d-%H%M%S", &tm);
    /* a task given as a path: its name is the file's, without folders */
    const char *base = strrchr(task, '/');
    base = base ? base + 1 : task;
    snprintf(out, cap, "runs/%s-%s-%s", *base ? base : "run", method, when);
    for (char *p = out + 5; *p; p++) /* one path component */
        if (*p == '/' || *p == ' ')
            *p = '_';
}

/* Each layer's curvature at an evaluation, for plots. */
static void journal_eval_layers(engine *e)
{
    int L = e->ps->n_layers;
    float *h = malloc((size_t)L * sizeof *h);
    bool *fz = malloc((size_t)L * sizeof *fz);
    if (h && fz && e->step > 0) {
        for (int l = 0; l < L; l++) {
            h[l] = e->work.layer[l].state_mean;
            fz[l] = e->ps->layers[l].frozen;
        }
        journal_layers(&e->jr, e->step, h, fz, L);
    }
    free(h);
    free(fz);
}

static hl_status do_eval(engine *e, hl_err *err)
{
    double acc = NAN, loss = NAN;
    hl_status st;
    if (e->task) {
        if ((st = taskobj_evaluate(e->task, &acc, &loss, TASKOBJ_SPLIT_DEV, NULL, err)))
            return st;
    } else {
        if ((st = objective_full_loss(&e->obj, &loss, e->ps, e->workers, err)))
            return st;
        acc = loss; /* analytic objectives: the "dev" series is the exact loss */
    }
    engine_telemetry *w = &e->work;
    w->dev_accuracy = acc;
    bool better = e->task ? !(acc <= w->best_dev_accuracy) : !(acc >= w->best_dev_accuracy);
    if (better || isnan(w->best_dev_accuracy)) {
        w->best_dev_accuracy = acc;
        w->best_dev_step = e->step;
        if (e->task) { /* keep θ of the best dev accuracy on disk for the final test */
            if (!e->tmp_dir[0]) {
                snprintf(e->tmp_dir, sizeof e->tmp_dir, "%s/helene-best-XXXXXX",
                         getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
                if (!mkdtemp(e->tmp_dir))
                    e->tmp_dir[0] = '\0';
            }
            if (e->tmp_dir[0]) {
                snprintf(e->best_path, sizeof e->best_path, "%s/best.safetensors", e->tmp_dir);
                if (checkpoint_write_params(e->best_path, e->ps, err))
                    e->best_path[0] = '\0';
            }
        }
    }
    hist_push(&w->hist[ENGINE_SERIES_DEV], e->step, (float)acc);
    journal_eval(&e->jr, e->step, acc, loss, e->task != NULL);
    journal_eval_layers(e);
    if (e->task)
        emit(e, ENGINE_EVENT_EVAL, 0, acc, "dev accuracy %.4f, loss %.4f at step %llu", acc, loss,
             (unsigned long long)e->step);
    else
        emit(e, ENGINE_EVENT_EVAL, 0, acc, "exact loss %.6g at step %llu", loss,
             (unsigned long long)e->step);
    publish(e, true);
    return HL_OK;
}

static hl_status do_checkpoint(engine *e, const char *dir, hl_err *err)
{
    uint64_t off = journal_offset(&e->jr);
    hl_status st = checkpoint_save_with(dir, &e->cfg, e->ps, e->opt, e->step, e->cfg.log, off,
                                        fo_write_state, e, err);
    if (st)
        return st;
    snprintf(e->last_ckpt, sizeof e->last_ckpt, "%s", dir);
    e->last_ckpt_step = e->step;
    e->work.unsaved = false;
    journal_event(&e->jr, e->step, "checkpoint", "path", dir);
    emit(e, ENGINE_EVENT_CHECKPOINT, 0, 0, "%s", dir);
    return HL_OK;
}

static void periodic_checkpoint(engine *e)
{
    const runcfg *c = &e->cfg;
    if (!c->checkpoint_every || !c->save[0] || e->step % c->checkpoint_every)
        return;
    char dir[RUNCFG_PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/step-%llu", c->save, (unsigned long long)e->step);
    hl_err err;
    if (do_checkpoint(e, dir, &err)) {
        emit(e, ENGINE_EVENT_WARNING, 0, 0, "periodic checkpoint failed: %s", err.msg);
        return;
    }
    checkpoint_prune(c->save, c->keep_last);
}

/* ---------------------------------------------------------- stepping --- */

static void record_step(engine *e, double seconds)
{
    engine_telemetry *w = &e->work;
    const bool fo = method_is_fo(e);
    const optim_step_stats *s = fo ? &e->fo.stats : optim_last_stats(e->opt);
    w->last = *s;
    w->step = e->step;
    w->method_step = optim_method_steps(e->opt);
    w->loss = 0.5 * (s->loss_plus + s->loss_minus);
    w->unsaved = true;
    e->step_ema_s = e->step_ema_s > 0 ? 0.9 * e->step_ema_s + 0.1 * seconds : seconds;
    w->steps_per_s = e->step_ema_s > 0 ? 1.0 / e->step_ema_s : 0;
    if (e->task) {
        double tok = (double)taskobj_batch_tokens(e->task) * s->forwards;
        e->tokens_ema = e->tokens_ema > 0 ? 0.9 * e->tokens_ema + 0.1 * tok : tok;
        w->tokens_per_s = e->tokens_ema * w->steps_per_s;
    }
    double per_step = e->step_ema_s;
    if (e->rate_now > 0 && per_step < 1.0 / e->rate_now)
        per_step = 1.0 / e->rate_now; /* throttled: the wall clock, not the compute */
    w->eta_s = w->total_steps > e->step ? (double)(w->total_steps - e->step) * per_step : 0;
    if (e->cfg.time_limit > 0 && e->cfg.time_limit - e->run_s < w->eta_s)
        w->eta_s = e->cfg.time_limit > e->run_s ? e->cfg.time_limit - e->run_s : 0;
    const optim_layer_stats *ls = fo ? e->no_layer_stats : optim_layer_stats_get(e->opt);
    memcpy(w->layer, ls, (size_t)w->n_layers * sizeof *ls);
    if (s->refresh) {
        if (w->n_refresh == ENGINE_HIST_CAP) {
            memmove(w->refresh_steps, w->refresh_steps + 1,
                    (ENGINE_HIST_CAP - 1) * sizeof w->refresh_steps[0]);
            w->n_refresh--;
        }
        w->refresh_steps[w->n_refresh++] = e->step;
    }
    /* one history point per `stride` steps (the loss series' stride) */
    engine_hist *lh = &w->hist[ENGINE_SERIES_LOSS];
    if (++e->hist_pending >= (lh->stride ? lh->stride : 1)) {
        e->hist_pending = 0;
        engine_hist before = *lh;
        layer_hist_push(w, &before);
        hist_push(lh, e->step, (float)w->loss);
        hist_push(&w->hist[ENGINE_SERIES_LOSS_PLUS], e->step, (float)s->loss_plus);
        hist_push(&w->hist[ENGINE_SERIES_LOSS_MINUS], e->step, (float)s->loss_minus);
        hist_push(&w->hist[ENGINE_SERIES_PROJ_GRAD], e->step, (float)s->proj_grad);
        hist_push(&w->hist[ENGINE_SERIES_ALPHA], e->step, (float)s->alpha);
        hist_push(&w->hist[ENGINE_SERIES_LR], e->step, (float)s->lr);
        hist_push(&w->hist[ENGINE_SERIES_GROUP], e->step, s->group >= 0 ? (float)s->group : NAN);
    }
    journal_step(&e->jr, s, w->loss, w->grad_cosine);
}

static void finish(engine *e)
{
    hl_err err;
    const bool timed_out = e->step < e->cfg.steps;
    if (do_eval(e, &err))
        emit(e, ENGINE_EVENT_WARNING, 0, 0, "final evaluation failed: %s", err.msg);
    if (e->task && taskobj_split_size(e->task, TASKOBJ_SPLIT_TEST) > 0) {
        double acc, loss;
        if (!taskobj_evaluate(e->task, &acc, &loss, TASKOBJ_SPLIT_TEST, NULL, &err)) {
            journal_test(&e->jr, e->step, "final", acc, loss);
            e->work.test_final = acc;
            emit(e, ENGINE_EVENT_INFO, 0, acc, "test accuracy %.4f of the final state", acc);
        }
        if (e->best_path[0] && e->work.best_dev_step != e->step) {
            /* evaluate the best-dev θ, then put the final θ back */
            char final_path[RUNCFG_PATH_MAX + 32];
            snprintf(final_path, sizeof final_path, "%s/final.safetensors", e->tmp_dir);
            if (!checkpoint_write_params(final_path, e->ps, &err) &&
                !checkpoint_read_params(e->best_path, e->ps, &err)) {
                if (!taskobj_evaluate(e->task, &acc, &loss, TASKOBJ_SPLIT_TEST, NULL, &err)) {
                    journal_test(&e->jr, e->work.best_dev_step, "best_dev", acc, loss);
                    e->work.test_best = acc;
                    emit(e, ENGINE_EVENT_INFO, 0, acc,
                         "test accuracy %.4f of the best dev state (step %llu)", acc,
                         (unsigned long long)e->work.best_dev_step);
                }
                checkpoint_read_params(final_path, e->ps, &err);
            }
            unlink(final_path);
        }
    }
    if (e->cfg.save[0]) {
        if (do_checkpoint(e, e->cfg.save, &err))
            emit(e, ENGINE_EVENT_ERROR, 0, 0, "final checkpoint failed: %s", err.msg);
    }
    char why[256], limit[96] = "";
    if (timed_out)
        snprintf(limit, sizeof limit, " (time limit of %.0f s reached after %.0f s)",
                 e->cfg.time_limit, e->run_s);
    if (isnan(e->work.best_dev_accuracy))
        snprintf(why, sizeof why, "finished %llu steps%s", (unsigned long long)e->step, limit);
    else
        snprintf(why, sizeof why, "finished %llu steps%s; best %s %.4g at step %llu",
                 (unsigned long long)e->step, limit, e->task ? "dev accuracy" : "exact loss",
                 e->work.best_dev_accuracy, (unsigned long long)e->work.best_dev_step);
    emit(e, ENGINE_EVENT_FINISHED, 0, e->work.best_dev_accuracy, "%s", why);
    /* the status line gets the short form; Events has the whole sentence */
    char brief[128];
    if (isnan(e->work.best_dev_accuracy))
        snprintf(brief, sizeof brief, "%llu steps%s", (unsigned long long)e->step,
                 timed_out ? ", time limit" : "");
    else if (e->task)
        snprintf(brief, sizeof brief, "%llu steps%s, best dev %.1f%% @%llu",
                 (unsigned long long)e->step, timed_out ? ", time limit" : "",
                 100.0 * e->work.best_dev_accuracy, (unsigned long long)e->work.best_dev_step);
    else
        snprintf(brief, sizeof brief, "%llu steps%s, best loss %.4g @%llu",
                 (unsigned long long)e->step, timed_out ? ", time limit" : "",
                 e->work.best_dev_accuracy, (unsigned long long)e->work.best_dev_step);
    set_state(e, ENGINE_STATE_FINISHED, brief);
}

/* With a rate limit (engine_set_max_rate), wait until the step that started
 * at t0 has taken 1/rate seconds; a command ends the wait at once.  The
 * wait is not running time (--time-limit, run_s). */
static void throttle(engine *e, double t0)
{
    pthread_mutex_lock(&e->mu);
    e->rate_now = e->max_rate;
    e->work.max_steps_per_s = e->rate_now;
    while (e->max_rate > 0 && e->q_len == 0 && !e->quit) {
        double left = t0 + 1.0 / e->max_rate - now_s();
        if (left <= 0)
            break;
        struct timespec dl;
        clock_gettime(CLOCK_REALTIME, &dl);
        double at = (double)dl.tv_sec + 1e-9 * (double)dl.tv_nsec + left;
        dl.tv_sec = (time_t)at;
        dl.tv_nsec = (long)((at - (double)dl.tv_sec) * 1e9);
        pthread_cond_timedwait(&e->cv, &e->mu, &dl);
    }
    pthread_mutex_unlock(&e->mu);
}

/* Under mpirun every rank must take the same steps; a failed step cannot be
 * paused and rolled back on one rank alone, so it ends the job. */
static void dist_step_failed(const engine *e, const hl_err *err)
{
    char msg[HL_ERR_MSG_MAX + 64];
    snprintf(msg, sizeof msg, "step %llu failed: %s", (unsigned long long)e->step + 1, err->msg);
    dist_abort(1, msg);
}

/* Every check_every steps, under mpirun: the ranks' θ agree, or the job ends. */
static void dist_check(engine *e)
{
    hl_err err;
    if (dist_active() && e->cfg.check_every && e->step % e->cfg.check_every == 0 &&
        !dist_params_agree(e->ps, e->step, &err))
        dist_abort(1, dist_leader() ? err.msg : NULL); /* every rank knows; the leader says */
}

/* Under mpirun, before the first step: every rank loaded the same θ (the
 * same model file, checkpoint and adapters), else the job ends at once. */
static void dist_check_start(engine *e)
{
    hl_err err;
    if (dist_active() && !dist_params_agree(e->ps, e->step, &err)) {
        char msg[HL_ERR_MSG_MAX + 160];
        snprintf(msg, sizeof msg, "%s: before the first step, so the ranks loaded different "
                 "weights (is --model or --resume the same file on every machine?)", err.msg);
        dist_abort(1, dist_leader() ? msg : NULL);
    }
}

/* A follower rank (mpirun, rank > 0): take a step whenever the leader says
 * so, with the same objective, seed and hyperparameters, and nothing else. */
static void *engine_follow(engine *e)
{
    dist_check_start(e);
    while (dist_next_step(false)) {
        double t0 = now_s();
        hl_err err;
        hl_err_clear(&err);
        if (optim_step(e->opt, &e->obj, &err))
            dist_step_failed(e, &err);
        e->step++;
        const double step_s = now_s() - t0;
        e->run_s += step_s;
        record_step(e, step_s);
        dist_check(e);
        e->work.run_s = e->run_s;
        publish(e, false);
    }
    set_state(e, ENGINE_STATE_FINISHED, "the leader ended the run");
    return NULL;
}

static void *engine_main(void *arg)
{
    engine *e = arg;
    if (dist_active() && !dist_leader())
        return engine_follow(e);
    dist_check_start(e);
    /* The zero-shot point: a fresh run evaluates dev before its first step,
     * so every dev chart and journal starts where fine-tuning started. */
    if (e->step == 0 && e->cfg.eval_every > 0) {
        hl_err err;
        hl_err_clear(&err);
        double t0 = now_s();
        if (do_eval(e, &err))
            emit(e, ENGINE_EVENT_WARNING, 0, 0, "zero-shot evaluation failed: %s", err.msg);
        e->run_s += now_s() - t0;
        e->work.run_s = e->run_s;
    }
    while (!e->quit) {
        engine_cmd cmd;
        uint64_t id;
        while (!e->quit && pop_command(e, &cmd, &id))
            apply_command(e, &cmd, id);
        if (e->quit)
            break;
        engine_state s = e->work.state;
        bool want_step = (s == ENGINE_STATE_RUNNING) || (s == ENGINE_STATE_PAUSED && e->step_once);
        if (want_step && run_is_over(e)) {
            e->step_once = false;
            finish(e);
            continue;
        }
        if (!want_step) {
            publish(e, true);
            pthread_mutex_lock(&e->mu);
            if (e->q_len == 0) {
                struct timespec dl;
                clock_gettime(CLOCK_REALTIME, &dl);
                dl.tv_nsec += 200000000L;
                if (dl.tv_nsec >= 1000000000L) {
                    dl.tv_sec++;
                    dl.tv_nsec -= 1000000000L;
                }
                pthread_cond_timedwait(&e->cv, &e->mu, &dl);
            }
            pthread_mutex_unlock(&e->mu);
            continue;
        }
        dist_next_step(true); /* the followers take this step too */
        double t0 = now_s();
        hl_err err;
        hl_err_clear(&err);
        const bool align = e->fo.align_ready && !method_is_fo(e) &&
                           optim_hparams(e->opt)->n_probes == 1;
        hl_status st = align ? firstorder_align_before(&e->fo, e->step + 1, &err) : HL_OK;
        if (!st)
            st = method_is_fo(e) ? firstorder_adam_step(&e->fo, optim_hparams(e->opt),
                                                        e->step + 1, e->cfg.seed, &err)
                                 : optim_step(e->opt, &e->obj, &err);
        double cosine = NAN;
        if (!st && align) {
            cosine = firstorder_align_after(&e->fo, optim_last_stats(e->opt));
            e->cos_ring[e->cos_at] = cosine;
            e->cos_at = (e->cos_at + 1) % ENGINE_COSINE_WINDOW;
            if (e->cos_n < ENGINE_COSINE_WINDOW)
                e->cos_n++;
            double sum = 0;
            for (int i = 0; i < e->cos_n; i++)
                sum += e->cos_ring[i];
            e->work.grad_cosine_avg = sum / e->cos_n;
        }
        e->work.grad_cosine = cosine;
        if (st && dist_active())
            dist_step_failed(e, &err);
        if (st) {
            char why[ENGINE_TEXT_MAX];
            snprintf(why, sizeof why, "step %llu failed: %.400s%s",
                     (unsigned long long)e->step + 1, err.msg,
                     e->last_ckpt[0] ? " (rollback to the last checkpoint is available)" : "");
            journal_event(&e->jr, e->step, "error", "message", err.msg);
            emit(e, ENGINE_EVENT_ERROR, 0, 0, "%s", why);
            e->step_once = false;
            /* θ is restored by the optimizer: pausing keeps the run alive */
            set_state(e, ENGINE_STATE_PAUSED, why);
            continue;
        }
        e->step++;
        const double step_s = now_s() - t0;
        e->run_s += step_s;
        record_step(e, step_s);
        dist_check(e);
        if (e->step_once) {
            e->step_once = false;
            publish(e, true);
        }
        double t1 = now_s();
        /* the final evaluation is finish()'s */
        if (e->cfg.eval_every && e->step % e->cfg.eval_every == 0 && !run_is_over(e)) {
            if (do_eval(e, &err))
                emit(e, ENGINE_EVENT_WARNING, 0, 0, "evaluation failed: %s", err.msg);
        }
        periodic_checkpoint(e);
        e->run_s += now_s() - t1;
        e->work.run_s = e->run_s;
        publish(e, false);
        throttle(e, t0);
    }
    dist_next_step(false); /* the followers' run ends with the leader's */
    journal_flush(&e->jr);
    set_state(e, ENGINE_STATE_QUIT, "quit");
    return NULL;
}

void engine_set_max_rate(engine *e, double steps_per_s)
{
    pthread_mutex_lock(&e->mu);
    e->max_rate = steps_per_s > 0 && isfinite(steps_per_s) ? steps_per_s : 0;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

hl_status engine_start(engine *e, bool start_paused, hl_err *err)
{
    if (e->started)
        return hl_err_set(err, HL_ERR_INVALID, "engine already started");
    e->work.state = start_paused ? ENGINE_STATE_PAUSED : ENGINE_STATE_RUNNING;
    snprintf(e->work.reason, sizeof e->work.reason, "%s",
             start_paused ? "paused at start: press space to run" : "");
    publish(e, true);
    if (pthread_create(&e->thread, NULL, engine_main, e) != 0)
        return hl_err_set(err, HL_ERR_IO, "cannot start the engine thread");
    e->started = true;
    return HL_OK;
}

void engine_join(engine *e)
{
    if (e->started) {
        pthread_join(e->thread, NULL);
        e->started = false;
    }
}

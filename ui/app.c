/* app.c - see app.h.
 *
 * One loop iteration: wait for a key at most until the next frame is due,
 * drain every key that is already there (bounded), turn the batch into at
 * most a few engine commands, read new events and the latest snapshot, and
 * redraw when anything changed or a frame is due.  Nothing here blocks on
 * the engine except the final QUIT, after curses has been shut down.
 */
#include "app.h"

#include <curses.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "canvas.h"
#include "layout.h"
#include "panels.h"
#include "form.h"
#include "widgets.h"

/* ================================================================ process-wide guards */

/* Set by the signal handler, read by the loop: nothing else happens in the
 * handler (curses is not async-signal-safe). */
static volatile sig_atomic_t app_signal;
/* True between newterm and endwin, so the atexit guard knows to restore. */
static bool app_curses_active;
static bool app_atexit_registered;

static void app_on_signal(int sig)
{
    app_signal = sig;
}

static const double app_rates[] = {1, 3, 10, 30, 100, 300, 1000};
enum { APP_N_RATES = sizeof app_rates / sizeof app_rates[0] };

double app_next_max_rate(double rate, int dir)
{
    /* the ladder, with 0 (no limit) above its top */
    int at = APP_N_RATES; /* 0 = unlimited */
    for (int i = 0; i < APP_N_RATES; i++)
        if (rate > 0 && rate <= app_rates[i]) {
            at = i;
            break;
        }
    at += dir > 0 ? 1 : -1;
    if (at < 0)
        at = 0;
    return at >= APP_N_RATES ? 0 : app_rates[at];
}

int app_caught_signal(void)
{
    return (int)app_signal;
}

static void app_restore_terminal(void)
{
    if (app_curses_active) {
        app_curses_active = false;
        endwin();
    }
}

/* ================================================================ state */

typedef enum app_mode {
    APP_MODE_MAIN = 0,
    APP_MODE_HELP,
    APP_MODE_FORM,
    APP_MODE_OPTIMIZER,
    APP_MODE_LAYER,
    APP_MODE_CONFIRM_QUIT,
} app_mode;

#define APP_PENDING_MAX 64
#define APP_MAX_STEPS_QUEUED 100
#define APP_KEYS_PER_FRAME 256

typedef struct pending_cmd {
    uint64_t id;
    engine_cmd_kind kind;
    char key[ENGINE_KEY_MAX];
    char value[64];
    char label[96]; /* "lr=0.001", "pause", "checkpoint" */
} pending_cmd;

typedef struct app {
    engine *e;
    engine_telemetry t;
    bool have_t;
    engine_state last_state;
    char last_reason[ENGINE_TEXT_MAX];

    ui_log log;
    uint64_t last_seq;
    pending_cmd pending[APP_PENDING_MAX];
    int n_pending;

    canvas cv;
    ui_layout lay;
    bool color;
    int redraw_hz;
    int help_page;    /* 0 keys, 1 what the screen shows */
    double max_rate;  /* engine step-rate limit, 0 = none (`<` / `>`) */
    bool log_loss;    /* loss (and exact-loss) charts on a log axis (`g`) */
    app_mode mode;

    form form;
    bool form_open;
    int chooser_sel, chooser_scroll;
    char (*layer_names)[PARAM_NAME_MAX]; /* the layer chooser's items */
    const char **layer_items;

    layers_view lv;
    int layers_visible;
    int heat_layer;
    bool focus_events;
    int log_scroll;

    char message[ENGINE_TEXT_MAX + 64];
    uint16_t message_attr;
    double message_until;

    /* the current key batch, turned into commands by flush_batch() */
    int pause_flips;
    int toggle_flips[3]; /* anneal, precondition, clip */
    int steps_queued;    /* `s` presses waiting for the step in flight */
    uint64_t step_wait;  /* a STEP_ONCE applied at this step; 0 = none in flight */
    bool quit_after_checkpoint;
    bool quit;
    bool dirty;
} app;

static const char *const toggle_keys[3] = {"anneal", "precondition", "clip"};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void app_flash(app *a, uint16_t attr, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
static void app_flash(app *a, uint16_t attr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(a->message, sizeof a->message, fmt, ap);
    va_end(ap);
    a->message_attr = attr;
    a->message_until = now_s() + 6.0;
    a->dirty = true;
}

int app_next_redraw_hz(int hz, int dir)
{
    static const int rates[] = {1, 2, 5, 10, 20, 30, 60};
    const int n = (int)(sizeof rates / sizeof rates[0]);
    int i = 0;
    while (i < n - 1 && rates[i] < hz)
        i++;
    i += dir > 0 ? 1 : dir < 0 ? -1 : 0;
    if (i < 0)
        i = 0;
    if (i >= n)
        i = n - 1;
    return rates[i];
}

/* ================================================================ commands */

/* Bounded copy, silently truncating (labels and echoes only; the engine
 * validates the values themselves). */
static void copy_str(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

static pending_cmd *find_pending_kind(app *a, engine_cmd_kind kind)
{
    for (int i = 0; i < a->n_pending; i++)
        if (a->pending[i].kind == kind)
            return &a->pending[i];
    return NULL;
}

/* The newest pending SET of key, if any. */
static pending_cmd *find_pending_set(app *a, const char *key)
{
    for (int i = a->n_pending - 1; i >= 0; i--)
        if (a->pending[i].kind == ENGINE_CMD_SET && !strcmp(a->pending[i].key, key))
            return &a->pending[i];
    return NULL;
}

static bool post(app *a, engine_cmd_kind kind, const char *key, const char *value,
                 const char *label)
{
    engine_cmd cmd;
    memset(&cmd, 0, sizeof cmd);
    cmd.kind = kind;
    copy_str(cmd.key, sizeof cmd.key, key ? key : "");
    copy_str(cmd.value, sizeof cmd.value, value ? value : "");
    hl_err err;
    hl_err_clear(&err);
    uint64_t id = 0;
    if (engine_post(a->e, &cmd, &id, &err) != HL_OK) {
        app_flash(a, CANVAS_COLOR_WARN, "%s: %s", label, err.msg);
        return false;
    }
    if (a->n_pending == APP_PENDING_MAX) { /* forget the oldest label; the engine still answers */
        memmove(a->pending, a->pending + 1, sizeof a->pending[0] * (APP_PENDING_MAX - 1));
        a->n_pending--;
    }
    pending_cmd *p = &a->pending[a->n_pending++];
    memset(p, 0, sizeof *p);
    p->id = id;
    p->kind = kind;
    copy_str(p->key, sizeof p->key, cmd.key);
    copy_str(p->value, sizeof p->value, cmd.value);
    copy_str(p->label, sizeof p->label, label);
    a->dirty = true;
    return true;
}

static void post_set(app *a, const char *key, const char *value)
{
    char label[ENGINE_KEY_MAX + ENGINE_VALUE_MAX];
    snprintf(label, sizeof label, "%s=%s", key, value);
    post(a, ENGINE_CMD_SET, key, value, label);
}

/* Paused as far as the user can tell: the engine's state, or where the
 * newest pending pause/resume will take it. */
static bool effective_paused(app *a)
{
    for (int i = a->n_pending - 1; i >= 0; i--) {
        if (a->pending[i].kind == ENGINE_CMD_PAUSE)
            return true;
        if (a->pending[i].kind == ENGINE_CMD_RESUME)
            return false;
    }
    return a->t.state != ENGINE_STATE_RUNNING;
}

static bool current_toggle(app *a, int i)
{
    pending_cmd *p = find_pending_set(a, toggle_keys[i]);
    if (p)
        return !strcmp(p->value, "true") || !strcmp(p->value, "on");
    return i == 0 ? a->t.hp.anneal : i == 1 ? a->t.hp.precondition : a->t.hp.clip;
}

/* Turn the key batch into commands: toggles net out, steps go one at a
 * time (the next one only once the previous step has run). */
static void flush_batch(app *a)
{
    if (a->pause_flips % 2) {
        engine_state s = a->t.state;
        if (s == ENGINE_STATE_FINISHED || s == ENGINE_STATE_ERROR)
            app_flash(a, CANVAS_COLOR_WARN, "the run is %s: nothing to pause or resume",
                  panels_state_name(s));
        else if (effective_paused(a))
            post(a, ENGINE_CMD_RESUME, NULL, NULL, "resume");
        else
            post(a, ENGINE_CMD_PAUSE, NULL, NULL, "pause");
    }
    a->pause_flips = 0;
    for (int i = 0; i < 3; i++) {
        if (a->toggle_flips[i] % 2) {
            bool v = !current_toggle(a, i);
            post_set(a, toggle_keys[i], v ? "true" : "false");
            if (a->t.method != OPTIM_METHOD_HELENE)
                app_flash(a, CANVAS_COLOR_WARN, "%s only changes HELENE (the optimizer is %s)",
                      toggle_keys[i], optim_method_name(a->t.method));
        }
        a->toggle_flips[i] = 0;
    }
    /* one step in flight at a time: wait for the previous to be answered and run */
    bool in_flight = find_pending_kind(a, ENGINE_CMD_STEP_ONCE) != NULL ||
                     (a->step_wait && a->t.step < a->step_wait &&
                      a->t.state == ENGINE_STATE_PAUSED);
    if (!in_flight)
        a->step_wait = 0;
    if (a->steps_queued > 0 && !in_flight) {
        if (post(a, ENGINE_CMD_STEP_ONCE, NULL, NULL, "step"))
            a->steps_queued--;
        else
            a->steps_queued = 0;
    }
}

/* ================================================================ events */

static void remove_pending(app *a, int i)
{
    memmove(a->pending + i, a->pending + i + 1, sizeof a->pending[0] * (size_t)(a->n_pending - i - 1));
    a->n_pending--;
}

static void handle_event(app *a, const engine_event *ev)
{
    pending_cmd cmd;
    bool answered = false;
    for (int i = 0; i < a->n_pending; i++)
        if (ev->cmd_id && a->pending[i].id == ev->cmd_id) {
            cmd = a->pending[i];
            answered = true;
            remove_pending(a, i);
            break;
        }
    unsigned long long step = (unsigned long long)ev->step;
    /* the engine's texts usually name their step already ("... at step N") */
    char prefix[32] = "";
    if (!strstr(ev->text, "step"))
        snprintf(prefix, sizeof prefix, "%llu: ", step);
    switch (ev->kind) {
    case ENGINE_EVENT_APPLIED:
        /* a checkpoint's own CHECKPOINT event says where; skip the echo */
        if (!(answered && cmd.kind == ENGINE_CMD_CHECKPOINT))
            ui_log_add(&a->log, 0, "%s%s", prefix, ev->text);
        if (answered && cmd.kind == ENGINE_CMD_STEP_ONCE)
            a->step_wait = ev->step + 1;
        if (answered && cmd.kind == ENGINE_CMD_EVAL)
            app_flash(a, CANVAS_COLOR_DEV, "evaluated at step %llu: %.4g", step, ev->value);
        if (answered && cmd.kind == ENGINE_CMD_CHECKPOINT && a->quit_after_checkpoint)
            a->quit = true;
        break;
    case ENGINE_EVENT_REJECTED:
        ui_log_add(&a->log, CANVAS_COLOR_WARN, "%llu: rejected %s: %s", step,
                   answered ? cmd.label : "command", ev->text);
        app_flash(a, CANVAS_COLOR_WARN, "%s rejected: %s", answered ? cmd.label : "command",
              ev->text);
        if (answered && cmd.kind == ENGINE_CMD_CHECKPOINT)
            a->quit_after_checkpoint = false;
        break;
    case ENGINE_EVENT_EVAL:
        ui_log_add(&a->log, CANVAS_COLOR_DEV, "%s%s", prefix, ev->text);
        break;
    case ENGINE_EVENT_CHECKPOINT:
        ui_log_add(&a->log, CANVAS_COLOR_GOOD, "%llu: checkpoint saved to %s", step, ev->text);
        app_flash(a, CANVAS_COLOR_GOOD, "checkpoint saved to %s", ev->text);
        break;
    case ENGINE_EVENT_WARNING:
        ui_log_add(&a->log, CANVAS_COLOR_WARN, "%swarning: %s", prefix, ev->text);
        app_flash(a, CANVAS_COLOR_WARN, "%s", ev->text);
        break;
    case ENGINE_EVENT_ERROR:
        ui_log_add(&a->log, CANVAS_COLOR_BAD | CANVAS_ATTR_BOLD, "%serror: %s", prefix, ev->text);
        app_flash(a, CANVAS_COLOR_BAD, "%s", ev->text);
        break;
    case ENGINE_EVENT_INFO:
        ui_log_add(&a->log, 0, "%s%s", prefix, ev->text);
        break;
    case ENGINE_EVENT_FINISHED:
        /* logged with the state change below, which also covers ERROR */
        app_flash(a, CANVAS_COLOR_GOOD, "%s", ev->text);
        break;
    }
    a->dirty = true;
}

static void poll_engine(app *a)
{
    engine_event evs[32];
    int n;
    while ((n = engine_events(a->e, evs, 32, a->last_seq)) > 0) {
        for (int i = 0; i < n; i++)
            handle_event(a, &evs[i]);
        a->last_seq = evs[n - 1].seq;
    }
    if (engine_snapshot(a->e, &a->t)) {
        a->have_t = true;
        a->dirty = true;
        if (a->t.state != a->last_state || strcmp(a->t.reason, a->last_reason) != 0) {
            /* finishing and failing are logged here, once per change
             * (pauses are answered by their commands' events) */
            if (a->t.state == ENGINE_STATE_FINISHED || a->t.state == ENGINE_STATE_ERROR)
                ui_log_add(&a->log,
                           a->t.state == ENGINE_STATE_ERROR ? CANVAS_COLOR_BAD : CANVAS_COLOR_WARN,
                           "%llu: %s%s%s", (unsigned long long)a->t.step,
                           panels_state_name(a->t.state), a->t.reason[0] ? ": " : "",
                           a->t.reason);
            a->last_state = a->t.state;
            snprintf(a->last_reason, sizeof a->last_reason, "%s", a->t.reason);
        }
        if (a->heat_layer >= a->t.n_layers)
            a->heat_layer = a->t.n_layers - 1;
    }
}

/* ================================================================ overlays */

static void open_form(app *a)
{
    hl_err err;
    hl_err_clear(&err);
    if (form_init(&a->form, &a->t.hp, a->t.n_layers, &err) != HL_OK) {
        app_flash(a, CANVAS_COLOR_BAD, "cannot open the form: %s", err.msg);
        return;
    }
    a->form_open = true;
    a->mode = APP_MODE_FORM;
}

static void close_form(app *a)
{
    if (a->form_open)
        form_free(&a->form);
    a->form_open = false;
    a->mode = APP_MODE_MAIN;
}

static void close_layer_chooser(app *a)
{
    free(a->layer_names);
    free(a->layer_items);
    a->layer_names = NULL;
    a->layer_items = NULL;
    a->mode = APP_MODE_MAIN;
}

static void open_layer_chooser(app *a)
{
    int n = a->t.n_layers;
    if (n <= 0 || !a->t.layers) {
        app_flash(a, CANVAS_COLOR_WARN, "no layers to choose from");
        return;
    }
    a->layer_names = malloc(sizeof *a->layer_names * (size_t)n);
    a->layer_items = malloc(sizeof *a->layer_items * (size_t)n);
    if (!a->layer_names || !a->layer_items) {
        close_layer_chooser(a);
        app_flash(a, CANVAS_COLOR_BAD, "out of memory");
        return;
    }
    for (int i = 0; i < n; i++) {
        snprintf(a->layer_names[i], PARAM_NAME_MAX, "%s", a->t.layers[i].name);
        a->layer_items[i] = a->layer_names[i];
    }
    a->chooser_sel = a->heat_layer >= 0 ? a->heat_layer : 0;
    a->chooser_scroll = 0;
    a->mode = APP_MODE_LAYER;
}

/* Rows a centred chooser can show (as widgets_list sizes itself). */
static int chooser_rows(const app *a, int n)
{
    int rows = a->lay.rows - 5;
    return n < rows ? n : rows < 1 ? 1 : rows;
}

static const char *const method_items[OPTIM_METHOD_ALL] = {
    "mezo         MeZO: SPSA with SGD",
    "zo-sgd-mmt   ZO-SGD with heavy-ball momentum",
    "zo-sign      ZO-SGD on the sign of the projected gradient",
    "zo-adam      ZO-Adam",
    "hizoo        HiZOO: diagonal Hessian from extra forwards",
    "helene       HELENE: annealed momentum, clipped A-GNB curvature",
    "layer-newton one layer group per step, Newton-scaled",
    "ft-adam      first-order AdamW by backprop (models; more memory)",
};

/* ================================================================ keys */

int app_map_key(int ch)
{
    switch (ch) {
    case KEY_UP: return UI_KEY_UP;
    case KEY_DOWN: return UI_KEY_DOWN;
    case KEY_LEFT: return UI_KEY_LEFT;
    case KEY_RIGHT: return UI_KEY_RIGHT;
    case KEY_PPAGE: return UI_KEY_PGUP;
    case KEY_NPAGE: return UI_KEY_PGDN;
    case KEY_HOME: return UI_KEY_HOME;
    case KEY_END: return UI_KEY_END;
    case KEY_BTAB: return UI_KEY_BTAB;
    case KEY_DC: return UI_KEY_DELETE;
    case KEY_RESIZE: return UI_KEY_RESIZE;
    case KEY_ENTER:
    case '\r':
    case '\n': return UI_KEY_ENTER;
    case KEY_BACKSPACE:
    case 8:
    case 127: return UI_KEY_BACKSPACE;
    default: return ch;
    }
}

static void key_main(app *a, int k)
{
    switch (k) {
    case ' ': a->pause_flips++; break;
    case 's':
        if (!effective_paused(a))
            app_flash(a, CANVAS_COLOR_WARN, "s steps once while paused: press Space first");
        else if (a->steps_queued < APP_MAX_STEPS_QUEUED)
            a->steps_queued++;
        break;
    case 'e':
        if (a->have_t)
            open_form(a);
        break;
    case 'a': a->toggle_flips[0]++; break;
    case 'p': a->toggle_flips[1]++; break;
    case 'k': a->toggle_flips[2]++; break;
    case 'o':
        a->mode = APP_MODE_OPTIMIZER;
        a->chooser_sel = a->t.method >= 0 && a->t.method < OPTIM_METHOD_ALL ? a->t.method : 0;
        a->chooser_scroll = 0;
        break;
    case 'v':
        if (find_pending_kind(a, ENGINE_CMD_EVAL))
            app_flash(a, 0, "an evaluation is already on its way");
        else
            post(a, ENGINE_CMD_EVAL, NULL, NULL, "evaluate");
        break;
    case 'c':
        if (find_pending_kind(a, ENGINE_CMD_CHECKPOINT))
            app_flash(a, 0, "a checkpoint is already on its way");
        else
            post(a, ENGINE_CMD_CHECKPOINT, NULL, "", "checkpoint");
        break;
    case 'l': open_layer_chooser(a); break;
    case 'g':
        a->log_loss = !a->log_loss;
        app_flash(a, 0, "loss chart: %s scale", a->log_loss ? "log" : "linear");
        break;
    case '>':
    case '.':
    case '<':
    case ',': {
        a->max_rate = app_next_max_rate(a->max_rate, k == '>' || k == '.' ? +1 : -1);
        engine_set_max_rate(a->e, a->max_rate);
        if (a->max_rate > 0)
            app_flash(a, 0, "at most %g steps/s (> faster, < slower)", a->max_rate);
        else
            app_flash(a, 0, "full speed (< slows down)");
        break;
    }
    case '+':
    case '=': a->redraw_hz = app_next_redraw_hz(a->redraw_hz, +1); break;
    case '-':
    case '_': a->redraw_hz = app_next_redraw_hz(a->redraw_hz, -1); break;
    case '?':
        a->mode = APP_MODE_HELP;
        a->help_page = 0;
        break;
    case 'q':
    case 'Q':
        if (a->t.unsaved)
            a->mode = APP_MODE_CONFIRM_QUIT;
        else
            a->quit = true;
        break;
    case UI_KEY_TAB: a->focus_events = !a->focus_events; break;
    case '1':
    case '2':
    case '3':
    case '4': {
        layers_sort s = (layers_sort)(k - '1');
        a->lv.reverse = a->lv.sort == s ? !a->lv.reverse : false;
        a->lv.sort = s;
        break;
    }
    case UI_KEY_ENTER: {
        int li = panels_layer_at_cursor(&a->t, &a->lv);
        if (li >= 0)
            a->heat_layer = li;
        break;
    }
    case UI_KEY_ESC: a->message[0] = '\0'; break;
    default:
        if (a->focus_events) {
            /* the log scrolls in entries, from the newest */
            int page = a->lay.panel[LAYOUT_PANEL_EVENTS].h > 3 ? a->lay.panel[LAYOUT_PANEL_EVENTS].h - 3 : 1;
            switch (k) {
            case UI_KEY_UP: a->log_scroll++; break;
            case UI_KEY_DOWN: a->log_scroll--; break;
            case UI_KEY_PGUP: a->log_scroll += page; break;
            case UI_KEY_PGDN: a->log_scroll -= page; break;
            case UI_KEY_HOME: a->log_scroll = a->log.n; break;
            case UI_KEY_END: a->log_scroll = 0; break;
            default: break;
            }
            if (a->log_scroll > a->log.n - 1)
                a->log_scroll = a->log.n - 1;
            if (a->log_scroll < 0)
                a->log_scroll = 0;
        } else {
            list_scroll_key(&a->lv.selected, &a->lv.scroll, a->t.n_layers,
                            a->layers_visible > 0 ? a->layers_visible : 1, k);
        }
        break;
    }
}

static void key_form(app *a, int k)
{
    form_result r = form_key(&a->form, k);
    if (r == FORM_RESULT_CANCEL) {
        close_form(a);
        app_flash(a, 0, "edit cancelled: nothing changed");
    } else if (r == FORM_RESULT_CONFIRM) {
        int idx[64];
        int n = form_changed(&a->form, idx, 64);
        if (n > 64)
            n = 64;
        for (int i = 0; i < n; i++)
            post_set(a, a->form.fields[idx[i]].info->key, a->form.fields[idx[i]].value);
        if (n == 0)
            app_flash(a, 0, "no changes");
        close_form(a);
    }
}

static void key_chooser(app *a, int k, int n)
{
    if (k == UI_KEY_ESC || k == 'q') {
        if (a->mode == APP_MODE_LAYER)
            close_layer_chooser(a);
        a->mode = APP_MODE_MAIN;
        return;
    }
    if (k == UI_KEY_ENTER) {
        if (a->mode == APP_MODE_OPTIMIZER) {
            const char *name = optim_method_name(a->chooser_sel);
            if (a->chooser_sel == a->t.method)
                app_flash(a, 0, "already %s", name);
            else {
                char label[64];
                snprintf(label, sizeof label, "optimizer=%s", name);
                post(a, ENGINE_CMD_SWITCH, NULL, name, label);
            }
            a->mode = APP_MODE_MAIN;
        } else {
            a->heat_layer = a->chooser_sel;
            close_layer_chooser(a);
        }
        return;
    }
    list_scroll_key(&a->chooser_sel, &a->chooser_scroll, n, chooser_rows(a, n), k);
}

static void key_confirm_quit(app *a, int k)
{
    switch (k) {
    case 'y':
    case 'Y': a->quit = true; break;
    case 'c':
    case 'C':
        if (post(a, ENGINE_CMD_CHECKPOINT, NULL, "", "checkpoint"))
            a->quit_after_checkpoint = true;
        a->mode = APP_MODE_MAIN;
        break;
    case 'n':
    case 'N':
    case 'q':
    case UI_KEY_ESC: a->mode = APP_MODE_MAIN; break;
    default: break;
    }
}

static void handle_key(app *a, int k)
{
    a->dirty = true;
    if (k == UI_KEY_RESIZE)
        return; /* re-laid out before the next draw */
    if (a->lay.too_small && a->mode == APP_MODE_MAIN) {
        if (k == 'q' || k == 'Q')
            key_main(a, k);
        return;
    }
    switch (a->mode) {
    case APP_MODE_MAIN: key_main(a, k); break;
    case APP_MODE_HELP:
        if (k == '?' || k == UI_KEY_RIGHT || k == UI_KEY_LEFT)
            a->help_page = !a->help_page; /* two pages: keys, and what the screen shows */
        else
            a->mode = APP_MODE_MAIN;
        break;
    case APP_MODE_FORM: key_form(a, k); break;
    case APP_MODE_OPTIMIZER: key_chooser(a, k, OPTIM_METHOD_ALL); break;
    case APP_MODE_LAYER: key_chooser(a, k, a->t.n_layers); break;
    case APP_MODE_CONFIRM_QUIT: key_confirm_quit(a, k); break;
    }
}

/* ================================================================ drawing */

static void pending_text(const app *a, char *buf, size_t cap)
{
    buf[0] = '\0';
    size_t at = 0;
    int shown = 0;
    for (int i = 0; i < a->n_pending && at + 1 < cap; i++) {
        int w = snprintf(buf + at, cap - at, "%s%s", shown ? ", " : "pending: ",
                         a->pending[i].label);
        if (w < 0)
            break;
        at += (size_t)w;
        shown++;
    }
    if (a->steps_queued > 0 && at + 1 < cap)
        snprintf(buf + at, cap - at, "%s%d step%s queued", shown ? ", " : "", a->steps_queued,
                 a->steps_queued == 1 ? "" : "s");
}

static void draw(app *a)
{
    canvas *c = &a->cv;
    canvas_clear(c);
    if (a->lay.too_small) {
        panels_too_small(c);
    } else if (!a->have_t) {
        canvas_text(c, 1, 1, c->w - 2, CANVAS_ATTR_BOLD, "helene: waiting for the engine...");
    } else {
        ui_rect p[LAYOUT_PANEL_COUNT];
        memcpy(p, a->lay.panel, sizeof p);
        if (a->t.method == OPTIM_METHOD_LAYER_NEWTON) {
            /* the probe-allocation chart needs rows: half of the layer band,
             * at most what its rows use (groups, else blocks) */
            ui_rect *L = &p[LAYOUT_PANEL_LAYERS], *H = &p[LAYOUT_PANEL_HEAT];
            int band = L->h + H->h, want = band / 2 > 12 ? 12 : band / 2;
            if (want > H->h && band - want >= 5) {
                L->h = band - want;
                H->y = L->y + L->h;
                H->h = want;
            }
        }
        panels_header(c, p[LAYOUT_PANEL_HEADER], &a->t);
        panels_loss(c, p[LAYOUT_PANEL_LOSS], &a->t, a->log_loss);
        panels_dev(c, p[LAYOUT_PANEL_DEV], &a->t, a->log_loss);
        panels_grad(c, p[LAYOUT_PANEL_GRAD], &a->t);
        a->layers_visible = panels_layers(c, p[LAYOUT_PANEL_LAYERS], &a->t, &a->lv,
                                          a->heat_layer, !a->focus_events);
        panels_heat(c, p[LAYOUT_PANEL_HEAT], &a->t, a->heat_layer);
        panels_schedule(c, p[LAYOUT_PANEL_SCHEDULE], &a->t);
        panels_events(c, p[LAYOUT_PANEL_EVENTS], &a->log, a->log_scroll, a->focus_events);
        char pend[512];
        pending_text(a, pend, sizeof pend);
        bool fresh = a->message[0] && now_s() < a->message_until;
        panels_status(c, p[LAYOUT_PANEL_STATUS], fresh ? a->message : "", a->message_attr, pend,
                      a->redraw_hz);

        ui_rect screen = {0, 0, c->w, c->h};
        switch (a->mode) {
        case APP_MODE_HELP: panels_help(c, screen, a->help_page); break;
        case APP_MODE_FORM: form_draw(c, screen, &a->form); break;
        case APP_MODE_OPTIMIZER:
            list_scroll_clamp(&a->chooser_sel, &a->chooser_scroll, OPTIM_METHOD_ALL,
                              chooser_rows(a, OPTIM_METHOD_ALL));
            widgets_list(c, screen, "Switch optimizer", method_items, OPTIM_METHOD_ALL,
                         a->chooser_sel, a->chooser_scroll,
                         "Enter switch (parameters kept, fresh state)  Esc cancel");
            break;
        case APP_MODE_LAYER:
            list_scroll_clamp(&a->chooser_sel, &a->chooser_scroll, a->t.n_layers,
                              chooser_rows(a, a->t.n_layers));
            widgets_list(c, screen, "Plot the curvature of", a->layer_items, a->t.n_layers,
                         a->chooser_sel, a->chooser_scroll, "Enter choose  Esc cancel");
            break;
        case APP_MODE_CONFIRM_QUIT: {
            char l0[128];
            snprintf(l0, sizeof l0, "Progress since the last checkpoint is not saved (step %llu).",
                     (unsigned long long)a->t.step);
            const char *lines[] = {l0, "", "y  quit anyway", "c  checkpoint, then quit",
                                   "n  keep working"};
            widgets_dialog(c, screen, "Quit anyway?", lines, 5, 0);
            break;
        }
        case APP_MODE_MAIN: break;
        }
    }
    canvas_blit(c, (ui_rect){0, 0, c->w, c->h}, stdscr, 0, 0, a->color);
    wnoutrefresh(stdscr);
    doupdate();
    a->dirty = false;
}

static void relayout(app *a)
{
    int rows, cols;
    getmaxyx(stdscr, rows, cols);
    if (rows < 0)
        rows = 0;
    if (cols < 0)
        cols = 0;
    layout_compute(&a->lay, cols, rows);
    if (a->cv.w != cols || a->cv.h != rows) {
        if (canvas_resize(&a->cv, cols, rows, NULL) != HL_OK)
            layout_compute(&a->lay, 0, 0); /* keeps "too small" until memory returns */
        clearok(curscr, TRUE);
    }
}

/* ================================================================ loop */

hl_status app_term_start(bool want_color, bool *color, hl_err *err)
{
    if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO))
        return hl_err_set(err, HL_ERR_INVALID,
                          "the workbench needs a terminal (for scripts use 'helene train')");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = app_on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    if (!app_atexit_registered) {
        atexit(app_restore_terminal);
        app_atexit_registered = true;
    }
    /* newterm, unlike initscr, reports failure instead of exiting */
    SCREEN *scr = newterm(NULL, stdout, stdin);
    if (!scr)
        return hl_err_set(err, HL_ERR_INVALID, "cannot drive this terminal (TERM=%s)",
                          getenv("TERM") ? getenv("TERM") : "unset");
    set_term(scr);
    app_curses_active = true;
    cbreak();
    noecho();
    nonl();
    keypad(stdscr, TRUE);
    intrflush(stdscr, FALSE);
    set_escdelay(25);
    curs_set(0);
    *color = canvas_curses_colors(want_color);
    app_signal = 0;
    return HL_OK;
}

void app_term_end(void)
{
    app_restore_terminal();
}

hl_status app_run(engine *e, const app_options *opt, hl_err *err)
{
    app *a = calloc(1, sizeof *a);
    if (!a)
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory");
    a->e = e;
    a->redraw_hz = opt->redraw_hz > 0 ? app_next_redraw_hz(opt->redraw_hz, 0)
                                      : APP_REDRAW_HZ_DEFAULT;
    a->last_state = (engine_state)-1;
    hl_status st = engine_snapshot_alloc(e, &a->t, err);
    if (st) {
        free(a);
        return st;
    }
    if ((st = ui_log_init(&a->log, 1000, err)) ||
        (st = canvas_init(&a->cv, 0, 0, canvas_locale_is_utf8(), err)) ||
        (st = app_term_start(opt->color, &a->color, err))) {
        canvas_free(&a->cv);
        ui_log_free(&a->log);
        engine_snapshot_free(&a->t);
        free(a);
        return st;
    }
    app_signal = 0;
    /* analytic objectives run 10,000+ steps/s: slow them to a rate people
     * can watch, on a log loss axis (their loss falls by decades) */
    engine_telemetry t0;
    if (engine_snapshot_alloc(e, &t0, NULL) == HL_OK) {
        engine_snapshot(e, &t0);
        if (panels_is_analytic(&t0)) {
            a->max_rate = APP_ANALYTIC_RATE;
            a->log_loss = true;
            engine_set_max_rate(e, a->max_rate);
        }
        engine_snapshot_free(&t0);
    }
    relayout(a);
    double next_frame = 0;
    while (!a->quit) {
        if (app_signal) /* the caller checkpoints, then quits (app_caught_signal) */
            break;
        double now = now_s();
        int wait_ms = (int)((next_frame - now) * 1000.0);
        timeout(wait_ms < 0 ? 0 : wait_ms > 1000 ? 1000 : wait_ms);
        int ch = getch();
        int nkeys = 0;
        /* drain what is already typed, bounded, then act on the batch once */
        while (ch != ERR && nkeys < APP_KEYS_PER_FRAME) {
            int k = app_map_key(ch);
            if (k == UI_KEY_RESIZE)
                relayout(a);
            handle_key(a, k);
            nkeys++;
            if (a->quit)
                break;
            timeout(0);
            ch = getch();
        }
        poll_engine(a);
        flush_batch(a);
        if (a->have_t && a->t.state == ENGINE_STATE_QUIT) {
            app_flash(a, 0, "the engine stopped");
            a->quit = true;
        }
        now = now_s();
        if (nkeys > 0 || now >= next_frame) {
            if (a->dirty || now >= next_frame)
                draw(a);
            if (now >= next_frame)
                next_frame = now + 1.0 / a->redraw_hz;
        }
    }
    /* Say goodbye on screen, ask the engine to stop after its current step,
     * and give the terminal back; the caller joins the engine thread.  After
     * a signal the caller asks for a checkpoint first, then QUIT; after
     * SIGHUP the terminal is gone, so nothing is drawn. */
    if (!app_signal) {
        engine_cmd q;
        memset(&q, 0, sizeof q);
        q.kind = ENGINE_CMD_QUIT;
        engine_post(e, &q, NULL, NULL);
    }
    if (app_signal != SIGHUP && !a->lay.too_small && a->cv.w > 0) {
        app_flash(a, CANVAS_ATTR_BOLD, "stopping after the current step...");
        a->mode = APP_MODE_MAIN;
        draw(a);
    }
    close_form(a);
    close_layer_chooser(a);
    app_restore_terminal();
    canvas_free(&a->cv);
    ui_log_free(&a->log);
    engine_snapshot_free(&a->t);
    free(a);
    return HL_OK;
}

/* race.c - see race.h.  The main thread draws and reads keys; a driver
 * thread runs lock-step rounds whenever the race runs (or a step was asked
 * for), so a slow round never freezes the screen. */
#include "race.h"

#include <curses.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "canvas.h"
#include "layout.h"
#include "lockstep.h"
#include "panels.h"
#include "widgets.h"

#define RACE_REDRAW_HZ 10
#define RACE_STEPS_QUEUED_MAX 100
#define RACE_KEYS_PER_FRAME 256

typedef struct driver {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    engine *e[PANELS_RACE_MAX];
    engine_telemetry t[PANELS_RACE_MAX]; /* the driver's own snapshots */
    engine_telemetry *tp[PANELS_RACE_MAX]; /* &t[i], as lockstep_round takes them */
    int n;
    uint64_t step, total;
    /* under mu */
    bool paused, quit, in_round, done, failed;
    int steps_queued;
    double max_rate;
    char why[ENGINE_TEXT_MAX + 64];
} driver;

typedef struct finish_rec { /* an arm's evaluations as they were seen */
    int n;
    uint64_t step[ENGINE_HIST_CAP];
    uint64_t forwards[ENGINE_HIST_CAP];
    double secs[ENGINE_HIST_CAP];
} finish_rec;

typedef struct view {
    const race_view_arm *arms;
    int n, sel;
    engine_telemetry t[PANELS_RACE_MAX];
    race_arm_info info[PANELS_RACE_MAX];
    finish_rec *rec; /* [n] */
    uint64_t last_seq[PANELS_RACE_MAX];
    ui_log log;
    canvas cv;
    bool color, log_y, help, confirm_quit, quit, checkpointed;
    uint64_t unsaved_from; /* step of the last checkpoint of every arm */
    double target;
    bool target_given;
    race_view_end end;
    char message[256];
    double message_until;
    layers_view lv;
} view;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---------------------------------------------------------------- driver */

static void *driver_main(void *arg)
{
    driver *d = arg;
    double last_round = 0;
    for (;;) {
        pthread_mutex_lock(&d->mu);
        while (!d->quit && !d->done && !d->failed && d->paused && d->steps_queued == 0)
            pthread_cond_wait(&d->cv, &d->mu);
        if (d->quit || d->done || d->failed) {
            pthread_mutex_unlock(&d->mu);
            break;
        }
        if (d->paused)
            d->steps_queued--;
        d->in_round = true;
        const bool finish = d->step >= d->total;
        const double rate = d->max_rate;
        pthread_mutex_unlock(&d->mu);

        if (rate > 0 && !finish) { /* the cap, so analytic races stay watchable */
            double wait = last_round + 1.0 / rate - now_s();
            if (wait > 0) {
                struct timespec ts = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
                nanosleep(&ts, NULL);
            }
        }
        last_round = now_s();
        char why[ENGINE_TEXT_MAX];
        int bad = lockstep_round(d->e, d->tp, d->n, finish, why, sizeof why);

        pthread_mutex_lock(&d->mu);
        d->in_round = false;
        if (bad >= 0) {
            d->failed = true;
            snprintf(d->why, sizeof d->why, "arm %d stopped: %s", bad + 1, why);
        } else if (finish)
            d->done = true;
        else
            d->step++;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
    }
    return NULL;
}

/* ---------------------------------------------------------------- view */

static void race_flash(view *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void race_flash(view *v, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->message, sizeof v->message, fmt, ap);
    va_end(ap);
    v->message_until = now_s() + 4;
}

static void post_all(view *v, engine_cmd_kind kind)
{
    for (int i = 0; i < v->n; i++) {
        engine_cmd c = {.kind = kind};
        engine_post(v->arms[i].e, &c, NULL, NULL);
    }
}

/* Events of every arm into the log, tagged with the arm; evaluations are
 * also recorded with the arm's forwards and time, for the finish line. */
static void poll_events(view *v)
{
    engine_event ev[32];
    for (int i = 0; i < v->n; i++) {
        int k;
        while ((k = engine_events(v->arms[i].e, ev, 32, v->last_seq[i])) > 0) {
            for (int j = 0; j < k; j++) {
                v->last_seq[i] = ev[j].seq;
                uint16_t at = ev[j].kind == ENGINE_EVENT_ERROR     ? CANVAS_COLOR_BAD
                              : ev[j].kind == ENGINE_EVENT_WARNING ? CANVAS_COLOR_WARN
                                                                   : panels_race_attr(i);
                if (ev[j].kind == ENGINE_EVENT_APPLIED && strstr(ev[j].text, "one step"))
                    continue; /* the driver's STEP_ONCE, every arm every round: noise */
                ui_log_add(&v->log, at, "%d %s: %s", i + 1,
                           optim_method_name(v->t[i].method), ev[j].text);
                finish_rec *r = &v->rec[i];
                if (ev[j].kind == ENGINE_EVENT_EVAL && r->n < ENGINE_HIST_CAP) {
                    r->step[r->n] = ev[j].step;
                    r->forwards[r->n] = v->t[i].last.forwards_total;
                    r->secs[r->n] = v->t[i].run_s;
                    r->n++;
                }
                if (ev[j].kind == ENGINE_EVENT_CHECKPOINT)
                    v->checkpointed = true;
            }
        }
    }
}

/* The finish line: the given target, else the best of the slowest arm; an
 * arm reached it at its first evaluation at or past it. */
static void update_finish(view *v)
{
    const bool acc = !panels_is_analytic(&v->t[0]);
    double target = v->target;
    if (!v->target_given) {
        target = NAN;
        for (int i = 0; i < v->n; i++) {
            double b = v->t[i].best_dev_accuracy;
            if (isfinite(b) && (isnan(target) || (acc ? b < target : b > target)))
                target = b;
        }
    }
    for (int i = 0; i < v->n; i++) {
        race_arm_info *a = &v->info[i];
        a->t = &v->t[i];
        a->label = v->arms[i].label;
        a->mib = v->arms[i].mib;
        a->reached = false;
        const engine_hist *h = &v->t[i].hist[ENGINE_SERIES_DEV];
        for (int k = 0; isfinite(target) && k < h->n && !a->reached; k++) {
            double x = h->value[k];
            /* the history holds floats: compare within their precision */
            if (!(acc ? x >= target - 1e-6 : x <= target + 1e-6 * fabs(target)))
                continue;
            a->reached = true;
            a->steps_to = h->step[k];
            a->forwards_to = 0;
            a->secs_to = 0;
            const finish_rec *r = &v->rec[i];
            for (int j = 0; j < r->n; j++) /* what the arm had done by then, as seen */
                if (r->step[j] == h->step[k]) {
                    a->forwards_to = r->forwards[j];
                    a->secs_to = r->secs[j];
                    break;
                }
        }
    }
    v->target = target;
}

static const char *race_state(driver *d, char *buf, size_t cap)
{
    pthread_mutex_lock(&d->mu);
    if (d->failed)
        snprintf(buf, cap, "STOPPED");
    else if (d->done)
        snprintf(buf, cap, "FINISHED");
    else if (d->paused)
        snprintf(buf, cap, d->in_round ? "PAUSING" : "PAUSED");
    else
        snprintf(buf, cap, "RUNNING");
    pthread_mutex_unlock(&d->mu);
    return buf;
}

static void draw(view *v, driver *d)
{
    canvas *c = &v->cv;
    canvas_clear(c);
    if (c->w < LAYOUT_MIN_COLS || c->h < LAYOUT_MIN_ROWS) {
        panels_too_small(c);
    } else {
        update_finish(v);
        char st[32];
        const int n = v->n, W = c->w, H = c->h;
        ui_rect head = {0, 0, W, n + 1};
        panels_race_header(c, head, v->info, n, v->sel, race_state(d, st, sizeof st));
        int y0 = n + 1, ch = (H - y0 - 1) * 9 / 20;
        ch = ch < 8 ? 8 : ch;
        int half = W / 2;
        bool mono = !v->color;
        panels_race_loss(c, (ui_rect){0, y0, half, ch}, v->info, n, v->log_y, mono);
        panels_race_dev(c, (ui_rect){half, y0, W - half, ch}, v->info, n, v->log_y, v->target,
                        mono);
        int y1 = y0 + ch, bh = H - 1 - y1, left = W * 3 / 5;
        panels_layers(c, (ui_rect){0, y1, left, bh}, &v->t[v->sel], &v->lv, -1, false);
        int fh = n + 3 < bh - 3 ? n + 3 : bh - 3;
        panels_race_finish(c, (ui_rect){left, y1, W - left, fh}, v->info, n, v->target,
                           v->target_given);
        panels_events(c, (ui_rect){left, y1 + fh, W - left, bh - fh}, &v->log, 0, false);
        bool fresh = v->message[0] && now_s() < v->message_until;
        ui_rect status = {0, H - 1, W, 1};
        canvas_fill(c, status, " ", 0);
        int x = canvas_text(c, 0, H - 1, W, 0,
                            "Space pause  s step  v eval  c ckpt  Tab/1-4 arm  a/p/k toggles "
                            "(arm)  ? help  q quit");
        if (fresh)
            canvas_text_right(c, W, H - 1, W - x - 1, CANVAS_COLOR_PENDING, v->message);
        ui_rect screen = {0, 0, W, H};
        if (v->help) {
            static const char *const lines[] = {
                "Every arm starts from the same parameters and sees the same batches",
                "and probe seeds: the only difference is the optimizer.  The arms step",
                "in turn (lock-step); each arm's time counts only its own steps.",
                "",
                "Space      pause / resume the race      s   one round while paused",
                "v          evaluate every arm on dev    c   checkpoint every arm",
                "Tab, 1-4   select the arm whose layers show below",
                "a / p / k  toggle annealing / preconditioning / clipping (selected arm)",
                "< / >      slower / faster rounds (cap)  g  log / linear loss axis",
                "q          quit (asks when progress is unsaved)",
                "",
                "Finish line: steps, forwards and seconds each arm needed to reach the",
                "target (--target-acc, else the best dev of the slowest arm so far).",
                "",
                "any key closes this help"};
            widgets_dialog(c, screen, "Race view", lines, (int)(sizeof lines / sizeof lines[0]),
                           0);
        } else if (v->confirm_quit) {
            static const char *const lines[] = {"Progress since the last checkpoint is not saved.",
                                                "", "y  quit anyway",
                                                "c  checkpoint every arm, then quit",
                                                "n  keep racing"};
            widgets_dialog(c, screen, "Quit the race?", lines, 5, 0);
        }
    }
    canvas_blit(c, (ui_rect){0, 0, c->w, c->h}, stdscr, 0, 0, v->color);
    wnoutrefresh(stdscr);
    doupdate();
}

static void toggle(view *v, const char *key)
{
    const engine_telemetry *t = &v->t[v->sel];
    if (t->method != OPTIM_METHOD_HELENE) {
        race_flash(v, "%s: a HELENE switch (arm %d is %s)", key, v->sel + 1,
              optim_method_name(t->method));
        return;
    }
    bool on = !strcmp(key, "anneal") ? t->hp.anneal
              : !strcmp(key, "clip") ? t->hp.clip
                                     : t->hp.precondition != PRECONDITION_OFF;
    engine_cmd c = {.kind = ENGINE_CMD_SET};
    snprintf(c.key, sizeof c.key, "%s", key);
    snprintf(c.value, sizeof c.value, "%s", on ? "false" : "true");
    engine_post(v->arms[v->sel].e, &c, NULL, NULL);
    race_flash(v, "arm %d: %s %s", v->sel + 1, key, on ? "off" : "on");
}

static void set_rate(driver *d, view *v, int dir)
{
    pthread_mutex_lock(&d->mu);
    d->max_rate = app_next_max_rate(d->max_rate, dir);
    double r = d->max_rate;
    pthread_mutex_unlock(&d->mu);
    if (r > 0)
        race_flash(v, "at most %.0f rounds/s", r);
    else
        race_flash(v, "rounds as fast as they go");
}

static void key(view *v, driver *d, int k)
{
    if (v->help) {
        v->help = false;
        return;
    }
    if (v->confirm_quit) {
        if (k == 'y' || k == 'Y') {
            v->quit = true;
            v->end = RACE_VIEW_QUIT;
        } else if (k == 'c' || k == 'C') {
            post_all(v, ENGINE_CMD_CHECKPOINT);
            v->quit = true;
            v->end = RACE_VIEW_QUIT;
        }
        v->confirm_quit = false;
        return;
    }
    switch (k) {
    case ' ':
        pthread_mutex_lock(&d->mu);
        d->paused = !d->paused;
        d->steps_queued = 0;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        break;
    case 's':
        pthread_mutex_lock(&d->mu);
        if (d->paused && d->steps_queued < RACE_STEPS_QUEUED_MAX)
            d->steps_queued++;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        break;
    case 'v': post_all(v, ENGINE_CMD_EVAL); break;
    case 'c':
        post_all(v, ENGINE_CMD_CHECKPOINT);
        race_flash(v, "checkpointing every arm");
        break;
    case UI_KEY_TAB: v->sel = (v->sel + 1) % v->n; break;
    case UI_KEY_BTAB: v->sel = (v->sel + v->n - 1) % v->n; break;
    case '1': case '2': case '3': case '4':
        if (k - '1' < v->n)
            v->sel = k - '1';
        break;
    case 'a': toggle(v, "anneal"); break;
    case 'p': toggle(v, "precondition"); break;
    case 'k': toggle(v, "clip"); break;
    case '<': set_rate(d, v, -1); break;
    case '>': set_rate(d, v, +1); break;
    case 'g': v->log_y = !v->log_y; break;
    case UI_KEY_UP: v->lv.selected = v->lv.selected > 0 ? v->lv.selected - 1 : 0; break;
    case UI_KEY_DOWN: v->lv.selected++; break;
    case '?': v->help = true; break;
    case 'q':
    case 'Q': {
        pthread_mutex_lock(&d->mu);
        bool over = d->done || d->failed;
        pthread_mutex_unlock(&d->mu);
        bool unsaved = false;
        for (int i = 0; i < v->n; i++)
            unsaved |= v->t[i].unsaved;
        if (over || !unsaved) {
            v->quit = true;
            v->end = over && !d->failed ? RACE_VIEW_FINISHED : RACE_VIEW_QUIT;
        } else
            v->confirm_quit = true;
        break;
    }
    default: break;
    }
}

hl_status race_view_run(const race_view_arm *arms, int n, const race_view_opts *opt,
                        race_view_end *end, char *why, size_t why_cap, hl_err *err)
{
    if (n < 2 || n > PANELS_RACE_MAX)
        return hl_err_set(err, HL_ERR_INVALID, "a race has 2 to %d arms", PANELS_RACE_MAX);
    view *v = calloc(1, sizeof *v);
    driver *d = calloc(1, sizeof *d);
    if (!v || !d || !(v->rec = calloc((size_t)n, sizeof *v->rec))) {
        if (v)
            free(v->rec);
        free(v);
        free(d);
        return hl_err_set(err, HL_ERR_NOMEM, "out of memory for the race view");
    }
    v->arms = arms;
    v->n = n;
    v->target = opt->target;
    v->target_given = isfinite(opt->target);
    v->end = RACE_VIEW_QUIT;
    d->n = n;
    d->total = opt->total_steps;
    d->max_rate = opt->max_rate;
    hl_status st = HL_OK;
    int made = 0;
    for (int i = 0; i < n && !st; i++) {
        d->e[i] = arms[i].e;
        d->tp[i] = &d->t[i];
        if ((st = engine_snapshot_alloc(arms[i].e, &v->t[i], err)))
            break;
        if ((st = engine_snapshot_alloc(arms[i].e, &d->t[i], err))) {
            engine_snapshot_free(&v->t[i]);
            break;
        }
        made++;
        engine_snapshot(arms[i].e, &v->t[i]);
    }
    if (!st) {
        d->step = v->t[0].step;
        v->log_y = panels_is_analytic(&v->t[0]);
        setlocale(LC_CTYPE, ""); /* UTF-8 glyphs when the terminal's locale has them */
        if (!(st = ui_log_init(&v->log, 1000, err)) &&
            !(st = canvas_init(&v->cv, 0, 0, canvas_locale_is_utf8(), err)))
            st = app_term_start(opt->color, &v->color, err);
    }
    bool thread = false;
    if (!st) {
        pthread_mutex_init(&d->mu, NULL);
        pthread_cond_init(&d->cv, NULL);
        if (pthread_create(&d->thread, NULL, driver_main, d) != 0)
            st = hl_err_set(err, HL_ERR_IO, "cannot start the race driver thread");
        else
            thread = true;
    }
    double next = 0;
    bool was_done = false;
    while (!st && !v->quit) {
        if (app_caught_signal()) {
            v->end = RACE_VIEW_SIGNAL;
            break;
        }
        double now = now_s();
        int wait_ms = (int)((next - now) * 1000);
        timeout(wait_ms < 0 ? 0 : wait_ms > 1000 ? 1000 : wait_ms);
        int ch = getch(), nk = 0;
        while (ch != ERR && nk < RACE_KEYS_PER_FRAME && !v->quit) {
            int k = app_map_key(ch);
            if (k == UI_KEY_RESIZE) {
                int rows, cols;
                getmaxyx(stdscr, rows, cols);
                canvas_resize(&v->cv, cols > 0 ? cols : 0, rows > 0 ? rows : 0, NULL);
                clearok(curscr, TRUE);
            } else
                key(v, d, k);
            nk++;
            timeout(0);
            ch = getch();
        }
        if (v->cv.w == 0) {
            int rows, cols;
            getmaxyx(stdscr, rows, cols);
            canvas_resize(&v->cv, cols > 0 ? cols : 0, rows > 0 ? rows : 0, NULL);
        }
        for (int i = 0; i < n; i++)
            engine_snapshot(arms[i].e, &v->t[i]);
        poll_events(v);
        pthread_mutex_lock(&d->mu);
        bool done = d->done, failed = d->failed;
        if (failed && why)
            snprintf(why, why_cap, "%s", d->why);
        pthread_mutex_unlock(&d->mu);
        if (done && !was_done)
            race_flash(v, "the race is over: q leaves (the summary follows)");
        if (failed && !was_done)
            race_flash(v, "%s", d->why);
        was_done = done || failed;
        if (failed)
            v->end = RACE_VIEW_FAILED;
        now = now_s();
        if (nk > 0 || now >= next) {
            draw(v, d);
            next = now + 1.0 / RACE_REDRAW_HZ;
        }
    }
    if (thread) { /* let a round in flight finish, so the arms stay at one step */
        pthread_mutex_lock(&d->mu);
        d->quit = true;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
        pthread_mutex_destroy(&d->mu);
        pthread_cond_destroy(&d->cv);
        if (d->done && v->end != RACE_VIEW_SIGNAL)
            v->end = RACE_VIEW_FINISHED;
    }
    app_term_end();
    *end = v->end;
    for (int i = 0; i < made; i++) {
        engine_snapshot_free(&v->t[i]);
        engine_snapshot_free(&d->t[i]);
    }
    canvas_free(&v->cv);
    ui_log_free(&v->log);
    free(v->rec);
    free(v);
    free(d);
    return st;
}

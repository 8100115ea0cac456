/* plot.c - see plot.h. */
#include "plot.h"

#include <cairo-pdf.h>
#include <cairo-svg.h>
#include <cairo.h>
#include <cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "fileio.h"

/* ================================================================ data */

static bool series_push(plot_series *s, double x, double y)
{
    if (!isfinite(x) || !isfinite(y))
        return true; /* a gap, not an error */
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        double *nx = realloc(s->x, cap * sizeof *nx);
        if (!nx)
            return false;
        s->x = nx;
        double *ny = realloc(s->y, cap * sizeof *ny);
        if (!ny)
            return false;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n] = y;
    s->n++;
    return true;
}

static void run_free(plot_run *run)
{
    for (int p = 0; p < PLOT_PANELS; p++) {
        free(run->s[p].x);
        free(run->s[p].y);
    }
    for (int l = 0; l < run->n_layers; l++) {
        free(run->layer_h[l].x);
        free(run->layer_h[l].y);
    }
    free(run->layer_h);
    free(run->layer_name);
    run->n_layers = 0;
}

void plot_runs_free(plot_runs *r)
{
    for (int i = 0; i < r->n; i++)
        run_free(&r->run[i]);
    free(r->run);
    memset(r, 0, sizeof *r);
}

static plot_run *run_new(plot_runs *r, const char *label)
{
    if (r->n == r->cap) {
        int cap = r->cap ? r->cap * 2 : 4;
        plot_run *nr = realloc(r->run, (size_t)cap * sizeof *nr);
        if (!nr)
            return NULL;
        r->run = nr;
        r->cap = cap;
    }
    plot_run *run = &r->run[r->n++];
    memset(run, 0, sizeof *run);
    snprintf(run->label, sizeof run->label, "%s", label);
    run->dev_is_accuracy = true;
    return run;
}

static double num(const cJSON *o, const char *k)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(it) ? it->valuedouble : NAN;
}

hl_status plot_journal_read(plot_runs *r, const char *path, const char *name, hl_err *err)
{
    FILE *f;
    hl_status ost = file_open_read(path, &f, err);
    if (ost)
        return ost;
    int first = r->n;
    plot_run *cur = NULL;
    int arm_run[8]; /* a race's journal: run index of each arm ("arm": i) */
    for (int k = 0; k < 8; k++)
        arm_run[k] = -1;
    char *line = NULL;
    size_t cap = 0, steps = 0;
    ssize_t len;
    hl_status st = HL_OK;
    while (!st && (len = getline(&line, &cap, f)) > 0) {
        cJSON *o = cJSON_ParseWithLength(line, (size_t)len);
        if (!cJSON_IsObject(o)) { /* a torn last line after a crash */
            cJSON_Delete(o);
            continue;
        }
        const cJSON *ev = cJSON_GetObjectItemCaseSensitive(o, "event");
        double step = num(o, "step"), armf = num(o, "arm");
        int arm = armf >= 0 && armf < 8 && armf == floor(armf) ? (int)armf : -1;
        if (arm >= 0 && arm_run[arm] >= 0)
            cur = &r->run[arm_run[arm]]; /* the line belongs to its arm's run */
        if (cJSON_IsString(ev) && !strcmp(ev->valuestring, "run")) {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "config");
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(c, "optimizer");
            const cJSON *res = cJSON_GetObjectItemCaseSensitive(o, "resumed");
            char label[160];
            const char *method = cJSON_IsString(m) ? m->valuestring : "?";
            if (!strcmp(name, method)) /* a journal named for its method */
                snprintf(label, sizeof label, "%s lr %g", method, num(c, "lr"));
            else
                snprintf(label, sizeof label, "%s: %s lr %g", name, method, num(c, "lr"));
            /* a resume continues the run it resumes: same curves */
            if (!(cJSON_IsTrue(res) && cur && (arm < 0 || arm_run[arm] >= 0))) {
                if (arm >= 0) /* a race arm: "arm N: method lr" */
                    snprintf(label, sizeof label, "arm %d: %s lr %g", arm, method, num(c, "lr"));
                if (!(cur = run_new(r, label)))
                    st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
                else if (arm >= 0)
                    arm_run[arm] = r->n - 1;
            }
        } else if (!ev && isfinite(step)) {
            if (!cur && !(cur = run_new(r, name)))
                st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
            else if (!series_push(&cur->s[PLOT_LOSS], step, num(o, "loss")) ||
                     !series_push(&cur->s[PLOT_ALPHA], step, num(o, "alpha")) ||
                     !series_push(&cur->s[PLOT_CLIP], step, 100.0 * num(o, "clip_rate")))
                st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
            steps++;
        } else if (cJSON_IsString(ev) && !strcmp(ev->valuestring, "layer_names") && cur &&
                   cur->n_layers == 0) {
            const cJSON *names = cJSON_GetObjectItemCaseSensitive(o, "names");
            int nl = cJSON_IsArray(names) ? cJSON_GetArraySize(names) : 0;
            if (nl > 0 && nl <= 100000) {
                cur->layer_name = calloc((size_t)nl, sizeof *cur->layer_name);
                cur->layer_h = calloc((size_t)nl, sizeof *cur->layer_h);
                if (!cur->layer_name || !cur->layer_h) {
                    free(cur->layer_name), free(cur->layer_h);
                    cur->layer_name = NULL, cur->layer_h = NULL;
                    st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
                } else {
                    int k = 0;
                    const cJSON *it;
                    cJSON_ArrayForEach(it, names) {
                        snprintf(cur->layer_name[k++], sizeof cur->layer_name[0], "%s",
                                 cJSON_IsString(it) ? it->valuestring : "?");
                    }
                    cur->n_layers = nl;
                }
            }
        } else if (cJSON_IsString(ev) && !strcmp(ev->valuestring, "layers") && cur &&
                   cur->n_layers > 0 && isfinite(step)) {
            const cJSON *hv = cJSON_GetObjectItemCaseSensitive(o, "h");
            if (cJSON_IsArray(hv) && cJSON_GetArraySize(hv) == cur->n_layers) {
                int k = 0;
                const cJSON *it;
                cJSON_ArrayForEach(it, hv) {
                    if (cJSON_IsNumber(it) && it->valuedouble > 0 &&
                        !series_push(&cur->layer_h[k], step, it->valuedouble))
                        st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
                    k++;
                }
            }
        } else if (cJSON_IsString(ev) && !strcmp(ev->valuestring, "eval") && isfinite(step)) {
            if (!cur && !(cur = run_new(r, name)))
                st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
            else {
                double acc = num(o, "dev_accuracy");
                if (isnan(acc)) {
                    cur->dev_is_accuracy = false;
                    acc = num(o, "exact_loss");
                } else
                    acc *= 100.0;
                if (!series_push(&cur->s[PLOT_DEV], step, acc))
                    st = hl_err_set(err, HL_ERR_NOMEM, "out of memory");
            }
        }
        cJSON_Delete(o);
    }
    free(line);
    fclose(f);
    if (!st && steps == 0)
        st = hl_err_set(err, HL_ERR_FORMAT, "%s: no step lines: not a helene journal (--log)",
                        path);
    if (st) { /* this journal's runs are dropped, earlier ones kept */
        for (int i = first; i < r->n; i++)
            run_free(&r->run[i]);
        r->n = first;
    }
    return st;
}

/* ================================================================ layout */

#define TITLE_H 44.0
#define LEGEND_ROW_H 22.0
#define PAD_L 72.0  /* y tick labels */
#define PAD_R 18.0
#define PAD_T 26.0  /* panel title */
#define PAD_B 38.0  /* x tick labels and "step" */

static double legend_h(int n_runs)
{
    return LEGEND_ROW_H * (double)((n_runs + 1) / 2) + 6.0;
}

/* Two columns of two panels; with the per-layer panel, a third row with it
 * across the whole width. */
void plot_panel_rect_ex(int width, int height, int n_runs, bool layers, plot_panel p, double *x,
                        double *y, double *w, double *h)
{
    double top = TITLE_H + legend_h(n_runs);
    double rows = layers ? 3.0 : 2.0;
    double cw = width / 2.0, ch = (height - top) / rows;
    double cx = (p % 2) * cw, cy = top + (p / 2) * ch;
    if (p == PLOT_LAYERS)
        cx = 0, cw = width;
    *x = cx + PAD_L;
    *y = cy + PAD_T;
    *w = cw - PAD_L - PAD_R;
    *h = ch - PAD_T - PAD_B;
}

void plot_panel_rect(int width, int height, plot_panel p, double *x, double *y, double *w,
                     double *h)
{
    plot_panel_rect_ex(width, height, 1, false, p, x, y, w, h);
}

/* The run whose layers the per-layer panel draws: the first with data. */
const plot_run *plot_layers_run(const plot_runs *r)
{
    for (int i = 0; i < r->n; i++)
        for (int l = 0; l < r->run[i].n_layers; l++)
            if (r->run[i].layer_h[l].n > 0)
                return &r->run[i];
    return NULL;
}

static const uint8_t palette[8][3] = {
    {0, 114, 178},  /* blue */
    {213, 94, 0},   /* vermillion */
    {0, 158, 115},  /* green */
    {204, 121, 167}, /* purple */
    {230, 159, 0},  /* orange */
    {86, 180, 233}, /* sky */
    {120, 120, 120}, /* grey */
    {0, 0, 0},
};

void plot_run_rgb(int i, uint8_t rgb[3])
{
    memcpy(rgb, palette[i % 8], 3);
}

static void set_run_style(cairo_t *cr, int i, double alpha)
{
    const uint8_t *c = palette[i % 8];
    cairo_set_source_rgba(cr, c[0] / 255.0, c[1] / 255.0, c[2] / 255.0, alpha);
    /* a dash pattern per run, so curves stay apart without colour */
    static const double dashes[4][2] = {{0, 0}, {8, 4}, {2, 3}, {10, 3}};
    int d = i % 4;
    if (d == 0)
        cairo_set_dash(cr, NULL, 0, 0);
    else
        cairo_set_dash(cr, dashes[d], 2, 0);
}

/* 1-2-5 tick step for a span covered by about n ticks. */
static double nice_step(double span, int n)
{
    double raw = span / n, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * mag;
}

static void fmt_tick(char *buf, size_t cap, double v, double step)
{
    if (fabs(v) < step * 1e-6)
        v = 0;
    if (fabs(v) >= 1e5 || (fabs(v) < 1e-3 && v != 0))
        snprintf(buf, cap, "%.2g", v);
    else {
        int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
        snprintf(buf, cap, "%.*f", dec > 6 ? 6 : dec, v);
    }
}

typedef struct axes {
    double x0, x1, y0, y1;
    bool log_y;
    double px, py, pw, ph; /* plot rectangle */
} axes;

static double ax_x(const axes *a, double x)
{
    return a->px + (x - a->x0) / (a->x1 - a->x0) * a->pw;
}

static double ax_y(const axes *a, double y)
{
    double v = a->log_y ? log10(y) : y;
    return a->py + a->ph - (v - a->y0) / (a->y1 - a->y0) * a->ph;
}

static void text_at(cairo_t *cr, double x, double y, const char *s, double align_x,
                    double align_y)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - align_x * e.width - e.x_bearing, y - align_y * e.height - e.y_bearing);
    cairo_show_text(cr, s);
}

static void draw_axes(cairo_t *cr, const axes *a, const char *title, const char *ylabel_unit)
{
    cairo_set_dash(cr, NULL, 0, 0);
    cairo_set_line_width(cr, 1.0);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 11.0);
    /* grid and ticks */
    char buf[48];
    double xs = nice_step(a->x1 - a->x0, 6);
    for (double v = ceil(a->x0 / xs) * xs; v <= a->x1 + xs * 1e-9; v += xs) {
        double x = ax_x(a, v);
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, x, a->py);
        cairo_line_to(cr, x, a->py + a->ph);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
        fmt_tick(buf, sizeof buf, v, xs);
        text_at(cr, x, a->py + a->ph + 6, buf, 0.5, 0.0);
    }
    if (a->log_y) {
        for (double d = floor(a->y0); d <= a->y1 + 1e-9; d += 1) {
            if (d < a->y0 - 1e-9)
                continue;
            double y = ax_y(a, pow(10.0, d));
            cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
            cairo_move_to(cr, a->px, y);
            cairo_line_to(cr, a->px + a->pw, y);
            cairo_stroke(cr);
            cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
            snprintf(buf, sizeof buf, "1e%.0f", d);
            text_at(cr, a->px - 6, y, buf, 1.0, 0.5);
        }
    } else {
        double ys = nice_step(a->y1 - a->y0, 5);
        for (double v = ceil(a->y0 / ys) * ys; v <= a->y1 + ys * 1e-9; v += ys) {
            double y = ax_y(a, v);
            cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
            cairo_move_to(cr, a->px, y);
            cairo_line_to(cr, a->px + a->pw, y);
            cairo_stroke(cr);
            cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
            fmt_tick(buf, sizeof buf, v, ys);
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s", ylabel_unit);
            text_at(cr, a->px - 6, y, buf, 1.0, 0.5);
        }
    }
    /* frame, title, x label */
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    cairo_rectangle(cr, a->px, a->py, a->pw, a->ph);
    cairo_stroke(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 13.0);
    text_at(cr, a->px, a->py - 8, title, 0.0, 1.0);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, 11.0);
    text_at(cr, a->px + a->pw, a->py + a->ph + 22, "step", 1.0, 0.0);
}

static void draw_series(cairo_t *cr, const axes *a, const double *x, const double *y, size_t n,
                        int run, double alpha, double width)
{
    set_run_style(cr, run, alpha);
    cairo_set_line_width(cr, width);
    bool pen = false;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(y[i]) || (a->log_y && !(y[i] > 0))) {
            pen = false;
            continue;
        }
        double px = ax_x(a, x[i]), py = ax_y(a, y[i]);
        if (pen)
            cairo_line_to(cr, px, py);
        else
            cairo_move_to(cr, px, py);
        pen = true;
    }
    cairo_stroke(cr);
    if (n == 1) { /* a single point: a dot */
        cairo_arc(cr, ax_x(a, x[0]), ax_y(a, y[0]), 2.5 * width, 0, 2 * M_PI);
        cairo_fill(cr);
    }
}

/* EMA of a series (the loss is noisy: one batch per step). */
static double *ema_of(const plot_series *s)
{
    double *e = malloc((s->n ? s->n : 1) * sizeof *e);
    if (!e)
        return NULL;
    double beta = s->n > 2000 ? 0.99 : 0.9, m = 0;
    for (size_t i = 0; i < s->n; i++) {
        m = i ? beta * m + (1 - beta) * s->y[i] : s->y[i];
        e[i] = m;
    }
    return e;
}

static void draw_panel(cairo_t *cr, const plot_runs *r, plot_panel p, int width, int height)
{
    axes a;
    plot_panel_rect_ex(width, height, r->n, plot_layers_run(r) != NULL, p, &a.px, &a.py, &a.pw, &a.ph);
    bool acc = r->n > 0 && r->run[0].dev_is_accuracy;
    static const char *const titles[PLOT_PANELS] = {
        "Training loss (EMA; raw steps faint)", "Dev accuracy", "alpha_t (HELENE momentum annealing)",
        "Clip rate (HELENE: share of elements at the layer floor)"};
    const char *title = p == PLOT_DEV && !acc ? "Exact loss (analytic objective)" : titles[p];
    a.x0 = INFINITY, a.x1 = -INFINITY, a.y0 = INFINITY, a.y1 = -INFINITY;
    a.log_y = false;
    double ypos_min = INFINITY;
    for (int i = 0; i < r->n; i++) {
        const plot_series *s = &r->run[i].s[p];
        for (size_t k = 0; k < s->n; k++) {
            a.x0 = fmin(a.x0, s->x[k]);
            a.x1 = fmax(a.x1, s->x[k]);
            a.y0 = fmin(a.y0, s->y[k]);
            a.y1 = fmax(a.y1, s->y[k]);
            if (s->y[k] > 0)
                ypos_min = fmin(ypos_min, s->y[k]);
        }
    }
    if (!(a.x1 >= a.x0)) { /* no data in any run */
        a.x0 = 0, a.x1 = 1, a.y0 = 0, a.y1 = 1;
        draw_axes(cr, &a, title, "");
        cairo_set_source_rgb(cr, 0.5, 0.5, 0.5);
        text_at(cr, a.px + a.pw / 2, a.py + a.ph / 2,
                p == PLOT_ALPHA || p == PLOT_CLIP ? "no HELENE run" : "no data", 0.5, 0.5);
        return;
    }
    /* losses spanning decades go on a log axis */
    if ((p == PLOT_LOSS || (p == PLOT_DEV && !acc)) && ypos_min > 0 && a.y0 > 0 &&
        a.y1 / ypos_min > 100) {
        a.log_y = true;
        a.y0 = floor(log10(ypos_min));
        a.y1 = ceil(log10(a.y1));
    } else {
        double pad = (a.y1 - a.y0) * 0.05;
        if (!(pad > 0))
            pad = a.y1 != 0 ? fabs(a.y1) * 0.1 : 1;
        a.y0 -= pad;
        a.y1 += pad;
        if (p == PLOT_CLIP || (p == PLOT_DEV && acc)) { /* percentages */
            a.y0 = fmax(a.y0, 0);
            a.y1 = fmin(a.y1, 100);
        }
    }
    if (!(a.x1 > a.x0))
        a.x1 = a.x0 + 1;
    if (!(a.y1 > a.y0))
        a.y1 = a.y0 + 1;
    draw_axes(cr, &a, title, (p == PLOT_CLIP || (p == PLOT_DEV && acc)) ? "%" : "");
    cairo_save(cr);
    cairo_rectangle(cr, a.px, a.py, a.pw, a.ph);
    cairo_clip(cr);
    for (int i = 0; i < r->n; i++) {
        const plot_series *s = &r->run[i].s[p];
        if (!s->n)
            continue;
        if (p == PLOT_LOSS) {
            draw_series(cr, &a, s->x, s->y, s->n, i, 0.18, 0.8);
            double *e = ema_of(s);
            if (e)
                draw_series(cr, &a, s->x, e, s->n, i, 1.0, 2.2);
            free(e);
        } else {
            draw_series(cr, &a, s->x, s->y, s->n, i, 1.0, 2.0);
        }
    }
    cairo_restore(cr);
}

/* Each layer's curvature over time, one line per layer on a log axis,
 * coloured from blue (the first layer) to red (the last); the layers with
 * the highest and the lowest final curvature are named at their lines. */
static void draw_layers_panel(cairo_t *cr, const plot_run *run, int n_runs, int width,
                              int height)
{
    axes a;
    plot_panel_rect_ex(width, height, n_runs, true, PLOT_LAYERS, &a.px, &a.py, &a.pw, &a.ph);
    a.x0 = INFINITY, a.x1 = -INFINITY, a.y0 = INFINITY, a.y1 = -INFINITY;
    int hi = -1, lo = -1;
    for (int l = 0; l < run->n_layers; l++) {
        const plot_series *s = &run->layer_h[l];
        for (size_t k = 0; k < s->n; k++) {
            a.x0 = fmin(a.x0, s->x[k]);
            a.x1 = fmax(a.x1, s->x[k]);
            a.y0 = fmin(a.y0, s->y[k]);
            a.y1 = fmax(a.y1, s->y[k]);
        }
        if (s->n > 0) {
            double last = s->y[s->n - 1];
            if (hi < 0 || last > run->layer_h[hi].y[run->layer_h[hi].n - 1])
                hi = l;
            if (lo < 0 || last < run->layer_h[lo].y[run->layer_h[lo].n - 1])
                lo = l;
        }
    }
    a.log_y = true; /* whole decades, with room so no line sits on the frame */
    a.y0 = floor(log10(a.y0) - 0.05);
    a.y1 = ceil(log10(a.y1) + 0.05);
    if (!(a.y1 > a.y0))
        a.y1 = a.y0 + 1;
    if (!(a.x1 > a.x0))
        a.x1 = a.x0 + 1;
    char title[256];
    snprintf(title, sizeof title,
             "Curvature by layer (mean h; %.120s): blue = first layer, red = last", run->label);
    draw_axes(cr, &a, title, "");
    cairo_save(cr);
    cairo_rectangle(cr, a.px, a.py, a.pw, a.ph);
    cairo_clip(cr);
    cairo_set_line_width(cr, 1.4);
    cairo_set_dash(cr, NULL, 0, 0);
    for (int l = 0; l < run->n_layers; l++) {
        const plot_series *s = &run->layer_h[l];
        if (s->n == 0)
            continue;
        double f = run->n_layers > 1 ? (double)l / (run->n_layers - 1) : 0;
        cairo_set_source_rgba(cr, 0.1 + 0.8 * f, 0.25, 0.9 - 0.8 * f, 0.85);
        for (size_t k = 0; k < s->n; k++) {
            double px = ax_x(&a, s->x[k]), py = ax_y(&a, s->y[k]);
            if (k == 0)
                cairo_move_to(cr, px, py);
            else
                cairo_line_to(cr, px, py);
        }
        if (s->n == 1)
            cairo_rectangle(cr, ax_x(&a, s->x[0]) - 1.5, ax_y(&a, s->y[0]) - 1.5, 3, 3);
        cairo_stroke(cr);
    }
    cairo_restore(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_set_font_size(cr, 11.0);
    for (int k = 0; k < 2; k++) {
        int l = k ? lo : hi;
        if (l < 0 || (k && lo == hi))
            continue;
        const plot_series *s = &run->layer_h[l];
        double py = ax_y(&a, s->y[s->n - 1]);
        text_at(cr, a.px + a.pw - 4, py + (k ? 8 : -8), run->layer_name[l], 1.0, 0.5);
    }
}

static void draw_figure(cairo_t *cr, const plot_runs *r, const char *title, int width, int height)
{
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 18.0);
    text_at(cr, width / 2.0, 12, title && *title ? title : "helene run", 0.5, 0.0);
    /* legend: two columns of swatch + label */
    cairo_set_font_size(cr, 12.0);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    for (int i = 0; i < r->n; i++) {
        double x = PAD_L + (i % 2) * (width / 2.0), y = TITLE_H + (i / 2) * LEGEND_ROW_H + 8;
        set_run_style(cr, i, 1.0);
        cairo_set_line_width(cr, 3.0);
        cairo_move_to(cr, x, y);
        cairo_line_to(cr, x + 34, y);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
        text_at(cr, x + 42, y, r->run[i].label, 0.0, 0.5);
    }
    for (int p = 0; p < PLOT_PANELS; p++)
        draw_panel(cr, r, (plot_panel)p, width, height);
    const plot_run *lr = plot_layers_run(r);
    if (lr)
        draw_layers_panel(cr, lr, r->n, width, height);
}

static const char *ext_of(const char *path)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    return dot && (!slash || dot > slash) ? dot + 1 : "";
}

hl_status plot_write(const char *path, const plot_runs *r, const char *title, int width,
                     int height, hl_err *err)
{
    const char *ext = ext_of(path);
    int kind = !strcasecmp(ext, "png") ? 0 : !strcasecmp(ext, "svg") ? 1
                                           : !strcasecmp(ext, "pdf") ? 2 : -1;
    if (kind < 0)
        return hl_err_set(err, HL_ERR_INVALID,
                          "%s: the file name must end in .png, .svg or .pdf (it picks the format)",
                          path);
    if (width < 320 || height < 240 || width > 10000 || height > 10000)
        return hl_err_set(err, HL_ERR_INVALID, "size %dx%d outside 320x240..10000x10000", width,
                          height);
    if (r->n < 1)
        return hl_err_set(err, HL_ERR_INVALID, "no runs to plot");
    char tmp[4200];
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof tmp)
        return hl_err_set(err, HL_ERR_INVALID, "%s: path too long", path);
    cairo_surface_t *sf = kind == 0 ? cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height)
                        : kind == 1 ? cairo_svg_surface_create(tmp, width, height)
                                    : cairo_pdf_surface_create(tmp, width, height);
    if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) {
        hl_status st = hl_err_set(err, HL_ERR_IO, "%s: %s", path,
                                  cairo_status_to_string(cairo_surface_status(sf)));
        cairo_surface_destroy(sf);
        unlink(tmp);
        return st;
    }
    cairo_t *cr = cairo_create(sf);
    draw_figure(cr, r, title, width, height);
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    if (cs == CAIRO_STATUS_SUCCESS && kind == 0)
        cs = cairo_surface_write_to_png(sf, tmp);
    cairo_surface_finish(sf);
    if (cs == CAIRO_STATUS_SUCCESS)
        cs = cairo_surface_status(sf);
    cairo_surface_destroy(sf);
    if (cs != CAIRO_STATUS_SUCCESS) {
        unlink(tmp);
        return hl_err_set(err, HL_ERR_IO, "%s: %s", path, cairo_status_to_string(cs));
    }
    if (rename(tmp, path) != 0) {
        hl_status st = hl_err_set(err, HL_ERR_IO, "%s: %s", path, strerror(errno));
        unlink(tmp);
        return st;
    }
    return HL_OK;
}

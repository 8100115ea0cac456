/* panels.c - see panels.h.  Every panel is a box whose title carries the
 * latest value, so a glance at the borders answers "how is it going". */
#include "panels.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "analytic.h"
#include "optim.h"

/* ================================================================ helpers */

const char *panels_state_name(engine_state s)
{
    switch (s) {
    case ENGINE_STATE_LOADING: return "LOADING";
    case ENGINE_STATE_RUNNING: return "RUNNING";
    case ENGINE_STATE_PAUSED: return "PAUSED";
    case ENGINE_STATE_FINISHED: return "FINISHED";
    case ENGINE_STATE_ERROR: return "ERROR";
    case ENGINE_STATE_QUIT: return "STOPPED";
    }
    return "?";
}

/* Draw a box and return its inside. */
static ui_rect panel_box(canvas *c, ui_rect r, const char *title, bool focused)
{
    canvas_box(c, r, title,
               focused ? (CANVAS_COLOR_TITLE | CANVAS_ATTR_BOLD) : CANVAS_COLOR_BORDER);
    return ui_rect_inner(r);
}

typedef struct legend_item {
    const char *utf8, *ascii; /* marker glyph */
    const char *label;
    uint16_t attr;
} legend_item;

/* Legend on a box's top border, right-aligned. */
static void draw_legend(canvas *c, ui_rect box, const legend_item *it, int n)
{
    char buf[128];
    int total = 0;
    for (int i = 0; i < n; i++)
        total += 1 + canvas_text_width(it[i].label) + 2;
    int x = box.x + box.w - 1 - total;
    int title_end = box.x + 2;
    while (title_end < box.x + box.w && strcmp(canvas_glyph(c, title_end, box.y),
                                               canvas_sym(c, "─", "-")) != 0)
        title_end++;
    if (x <= title_end)
        return; /* no room beside the title */
    for (int i = 0; i < n; i++) {
        canvas_put(c, x, box.y, " ", CANVAS_COLOR_BORDER);
        canvas_put(c, x + 1, box.y, canvas_sym(c, it[i].utf8, it[i].ascii), it[i].attr);
        snprintf(buf, sizeof buf, "%s", it[i].label);
        int w = canvas_text(c, x + 2, box.y, -1, it[i].attr, buf);
        canvas_put(c, x + 2 + w, box.y, " ", CANVAS_COLOR_BORDER);
        x += 3 + w;
    }
}

static const engine_hist *hist(const engine_telemetry *t, engine_series s)
{
    return &t->hist[s];
}

static chart_series series_of(const engine_hist *h, const char *label, uint16_t attr, char mark)
{
    chart_series s = {label, h->n, h->step, h->value, attr, mark};
    return s;
}

/* ================================================================ header */

typedef struct seg {
    char text[80];
    uint16_t attr;
    int prio; /* dropped highest first when the row is short */
} seg;

static int seg_add(seg *s, int n, int prio, uint16_t attr, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 5, 6)))
#endif
    ;

static int seg_add(seg *s, int n, int prio, uint16_t attr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s[n].text, sizeof s[n].text, fmt, ap);
    va_end(ap);
    s[n].attr = attr;
    s[n].prio = prio;
    return n + 1;
}

/* Draw the segments that fit from x (separated by two spaces); returns the
 * columns used. */
static int seg_draw(canvas *c, int x, int y, int w, seg *s, int n)
{
    bool keep[32];
    for (int i = 0; i < n; i++)
        keep[i] = true;
    for (;;) {
        int need = 0, shown = 0;
        for (int i = 0; i < n; i++)
            if (keep[i]) {
                need += canvas_text_width(s[i].text) + (shown ? 2 : 0);
                shown++;
            }
        if (need <= w || shown <= 1)
            break;
        int drop = -1;
        for (int i = 0; i < n; i++)
            if (keep[i] && (drop < 0 || s[i].prio > s[drop].prio))
                drop = i;
        keep[drop] = false;
    }
    int at = 0;
    for (int i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        if (at)
            at += 2;
        at += canvas_text(c, x + at, y, w - at, s[i].attr, s[i].text);
    }
    return at;
}

static void fmt_hp(char *buf, size_t cap, double v)
{
    widgets_fmt_num(buf, cap, 7, v);
}

void panels_header(canvas *c, ui_rect r, const engine_telemetry *t)
{
    if (r.h < 1)
        return;
    canvas_fill(c, r, " ", 0);
    const hparams *hp = &t->hp;
    seg s[32];
    int n = 0;
    char a[32], b[32];
    n = seg_add(s, n, 0, CANVAS_COLOR_TITLE | CANVAS_ATTR_BOLD, "helene");
    if (panels_is_analytic(t))
        n = seg_add(s, n, 1, 0, "objective %s", t->model_name);
    else {
        /* a model folder: its last component names it */
        const char *m = t->model_name;
        size_t len = strlen(m);
        while (len > 1 && m[len - 1] == '/')
            len--;
        size_t base = len;
        while (base > 0 && m[base - 1] != '/')
            base--;
        /* the built-in "random:SIZE" models are untrained: say so */
        n = seg_add(s, n, 1, 0, "model %.*s%s", (int)(len - base), len ? m + base : "-",
                    strncmp(m, "random:", 7) ? "" : " (untrained)");
        n = seg_add(s, n, 2, 0, "task %s", t->task_name[0] ? t->task_name : "-");
    }
    n = seg_add(s, n, 0, CANVAS_ATTR_BOLD, "%s", optim_method_name(t->method));
    fmt_hp(a, sizeof a, hp->lr);
    n = seg_add(s, n, 0, 0, "%s=%s", canvas_sym(c, "η", "lr"), a);
    fmt_hp(a, sizeof a, hp->eps);
    n = seg_add(s, n, 3, 0, "%s=%s", canvas_sym(c, "ε", "eps"), a);
    switch (t->method) {
    case OPTIM_METHOD_ZO_SGD_MMT:
        fmt_hp(a, sizeof a, hp->momentum);
        n = seg_add(s, n, 4, 0, "%s=%s", canvas_sym(c, "μ", "mu"), a);
        break;
    case OPTIM_METHOD_ZO_ADAM:
        fmt_hp(a, sizeof a, hp->adam_beta1);
        fmt_hp(b, sizeof b, hp->adam_beta2);
        n = seg_add(s, n, 4, 0, "%s=%s,%s", canvas_sym(c, "β", "beta"), a, b);
        break;
    case OPTIM_METHOD_HIZOO:
        fmt_hp(a, sizeof a, hp->hizoo_alpha);
        n = seg_add(s, n, 4, 0, "%s=%s", canvas_sym(c, "α", "alpha"), a);
        break;
    case OPTIM_METHOD_HELENE:
        fmt_hp(a, sizeof a, hp->beta1);
        n = seg_add(s, n, 4, 0, "%s=%s", canvas_sym(c, "β1", "b1"), a);
        fmt_hp(a, sizeof a, hp->beta2);
        n = seg_add(s, n, 7, 0, "%s=%s", canvas_sym(c, "β2", "b2"), a);
        n = seg_add(s, n, 5, 0, "T=%.0f", hparams_anneal_T(hp));
        n = seg_add(s, n, 5, 0, "k=%d", (int)hp->hess_interval);
        n = seg_add(s, n, 3, hp->anneal ? CANVAS_COLOR_GOOD : CANVAS_COLOR_WARN, "anneal:%s",
                    hp->anneal ? "on" : "off");
        n = seg_add(s, n, 3, hp->precondition ? CANVAS_COLOR_GOOD : CANVAS_COLOR_WARN,
                    "precond:%s", hp->precondition == PRECONDITION_PERTURBATION ? "probe"
                                  : hp->precondition ? "on" : "off");
        n = seg_add(s, n, 3, hp->clip ? CANVAS_COLOR_GOOD : CANVAS_COLOR_WARN, "clip:%s",
                    hp->clip ? "on" : "off");
        break;
    default: break;
    }
    seg_draw(c, r.x, r.y, r.w, s, n);
    if (r.h < 2)
        return;

    /* row 2: progress on the left, state on the right */
    char state[ENGINE_TEXT_MAX + 32];
    uint16_t sattr = CANVAS_ATTR_BOLD;
    switch (t->state) {
    case ENGINE_STATE_RUNNING: sattr |= CANVAS_COLOR_GOOD; break;
    case ENGINE_STATE_PAUSED: sattr |= CANVAS_COLOR_WARN; break;
    case ENGINE_STATE_FINISHED: sattr |= CANVAS_COLOR_GOOD; break;
    case ENGINE_STATE_ERROR: sattr |= CANVAS_COLOR_BAD; break;
    default: sattr = CANVAS_ATTR_DIM; break;
    }
    if (t->reason[0])
        snprintf(state, sizeof state, "%s (%s)", panels_state_name(t->state), t->reason);
    else
        snprintf(state, sizeof state, "%s", panels_state_name(t->state));
    n = 0;
    if (t->total_steps)
        n = seg_add(s, n, 0, CANVAS_ATTR_BOLD, "step %llu/%llu", (unsigned long long)t->step,
                    (unsigned long long)t->total_steps);
    else
        n = seg_add(s, n, 0, CANVAS_ATTR_BOLD, "step %llu", (unsigned long long)t->step);
    if (t->max_steps_per_s > 0 && t->steps_per_s > t->max_steps_per_s)
        n = seg_add(s, n, 1, CANVAS_COLOR_WARN, "%g steps/s (capped: > faster)",
                    t->max_steps_per_s);
    else
        n = seg_add(s, n, 1, 0, "%.1f steps/s", t->steps_per_s);
    if (t->tokens_per_s > 0)
        n = seg_add(s, n, 4, 0, "%.0f tok/s", t->tokens_per_s);
    widgets_fmt_duration(a, sizeof a, t->eta_s);
    n = seg_add(s, n, 2, 0, "ETA %s", a);
    if (t->time_limit > 0) {
        widgets_fmt_duration(a, sizeof a, t->run_s);
        widgets_fmt_duration(b, sizeof b, t->time_limit);
        n = seg_add(s, n, 3, 0, "time %s/%s", a, b);
    }
    n = seg_add(s, n, 3, 0, "RSS %.0f MiB", t->rss_mib);
    if (!isnan(t->grad_cosine_avg))
        n = seg_add(s, n, 3, 0, "cos(%s,%s) %.3g", canvas_sym(c, "ĝ", "g_zo"),
                    canvas_sym(c, "∇", "grad"), t->grad_cosine_avg); /* ~1e-4: %.3g */
    if (t->unsaved)
        n = seg_add(s, n, 5, CANVAS_ATTR_DIM, "unsaved");
    if (t->save_dir[0])
        n = seg_add(s, n, 2, CANVAS_ATTR_DIM, "ckpt %s", t->save_dir);
    int sw = canvas_text_width(state);
    int max_state = r.w * 2 / 3;
    if (sw > max_state)
        sw = max_state;
    int used = seg_draw(c, r.x, r.y + 1, r.w - sw - 2, s, n);
    (void)used;
    canvas_text_right(c, r.x + r.w, r.y + 1, sw, sattr, state);
}

/* ================================================================ charts */

void panels_loss(canvas *c, ui_rect r, const engine_telemetry *t, bool log_y)
{
    char title[96], v[32];
    widgets_fmt_num(v, sizeof v, 8, t->loss);
    snprintf(title, sizeof title, "Loss %s%s", v, log_y ? "  log" : "");
    ui_rect in = panel_box(c, r, title, false);
    const engine_hist *mean = hist(t, ENGINE_SERIES_LOSS);
    float *ema = malloc(sizeof(float) * ENGINE_HIST_CAP);
    if (!ema)
        return;
    widgets_ema(ema, mean->value, mean->n, 0.9);
    chart_series s[4] = {
        series_of(hist(t, ENGINE_SERIES_LOSS_PLUS), "L+", CANVAS_COLOR_LOSS_PLUS, '+'),
        series_of(hist(t, ENGINE_SERIES_LOSS_MINUS), "L-", CANVAS_COLOR_LOSS_MINUS, '-'),
        series_of(mean, "mean", CANVAS_COLOR_LOSS_MEAN, '.'),
        {"ema", mean->n, mean->step, ema, CANVAS_COLOR_SMOOTH | CANVAS_ATTR_BOLD, '*'},
    };
    chart_opts o = chart_opts_default();
    o.log_y = log_y;
    widgets_chart(c, in, s, 4, &o);
    free(ema);
    legend_item lg[4] = {
        {"•", "+", "L+", CANVAS_COLOR_LOSS_PLUS},
        {"•", "-", "L−", CANVAS_COLOR_LOSS_MINUS},
        {"•", ".", "mean", CANVAS_COLOR_LOSS_MEAN},
        {"•", "*", "ema", CANVAS_COLOR_SMOOTH | CANVAS_ATTR_BOLD},
    };
    if (!c->utf8)
        lg[1].label = "L-";
    draw_legend(c, r, lg, 4);
}

bool panels_is_analytic(const engine_telemetry *t)
{
    return !t->dev_is_accuracy;
}

void panels_dev(canvas *c, ui_rect r, const engine_telemetry *t, bool log_y)
{
    const engine_hist *h = hist(t, ENGINE_SERIES_DEV);
    bool pct = !panels_is_analytic(t);
    char title[160], v[32], best[32];
    const char *what = pct ? "Dev accuracy" : "Exact loss";
    if (isnan(t->dev_accuracy))
        snprintf(title, sizeof title, "%s (v evaluates now)", what);
    else if (isnan(t->best_dev_accuracy)) /* e.g. resumed: history, no best yet */
        snprintf(title, sizeof title, pct ? "%s %.1f%%" : "%s %.6g", what,
                 pct ? t->dev_accuracy * 100.0 : t->dev_accuracy);
    else if (pct)
        snprintf(title, sizeof title, "%s %.1f%%  best %.1f%% @%llu", what,
                 t->dev_accuracy * 100.0, t->best_dev_accuracy * 100.0,
                 (unsigned long long)t->best_dev_step);
    else {
        widgets_fmt_num(v, sizeof v, 8, t->dev_accuracy);
        widgets_fmt_num(best, sizeof best, 8, t->best_dev_accuracy);
        snprintf(title, sizeof title, "%s %s  best %s @%llu", what, v, best,
                 (unsigned long long)t->best_dev_step);
    }
    ui_rect in = panel_box(c, r, title, false);
    chart_series s = series_of(h, "dev", CANVAS_COLOR_DEV | CANVAS_ATTR_BOLD, 'o');
    chart_opts o = chart_opts_default();
    o.percent = pct;
    o.log_y = log_y && !pct; /* accuracy stays linear */
    widgets_chart(c, in, &s, 1, &o);
}

void panels_grad(canvas *c, ui_rect r, const engine_telemetry *t)
{
    char title[96], v[32];
    widgets_fmt_num(v, sizeof v, 8, t->last.proj_grad);
    snprintf(title, sizeof title, "Projected gradient c %s", v);
    ui_rect in = panel_box(c, r, title, false);
    chart_series s = series_of(hist(t, ENGINE_SERIES_PROJ_GRAD), "c", CANVAS_COLOR_GRAD, '*');
    chart_opts o = chart_opts_default();
    widgets_chart(c, in, &s, 1, &o);
}

/* ================================================================ layers */

int panels_layer_at_cursor(const engine_telemetry *t, const layers_view *v)
{
    int n = t->n_layers;
    if (n <= 0 || !t->layers || !t->layer)
        return -1;
    int *order = malloc(sizeof(int) * (size_t)n);
    if (!order)
        return -1;
    layers_sort_order(order, t->layers, t->layer, n, v->sort, v->reverse);
    int sel = v->selected < 0 ? 0 : v->selected >= n ? n - 1 : v->selected;
    int li = order[sel];
    free(order);
    return li;
}

int panels_layers(canvas *c, ui_rect r, const engine_telemetry *t, layers_view *v,
                  int heat_layer, bool focused)
{
    int n = t->n_layers > 0 && t->layers && t->layer ? t->n_layers : 0;
    char title[128], tuned[32] = "";
    int n_tuned = 0;
    for (int i = 0; i < n; i++)
        n_tuned += !t->layers[i].frozen;
    if (n_tuned < n)
        snprintf(tuned, sizeof tuned, " (%d tuned)", n_tuned);
    snprintf(title, sizeof title, "Layers %d%s  sort %s%s", n, tuned, layers_sort_name(v->sort),
             v->sort == LAYERS_SORT_MODEL || v->sort == LAYERS_SORT_NAME
                 ? (v->reverse ? canvas_sym(c, " ↑", " (rev)") : "")
                 : (v->reverse ? canvas_sym(c, " ↑", " (asc)") : canvas_sym(c, " ↓", "")));
    ui_rect in = panel_box(c, r, title, focused);
    if (n == 0) {
        canvas_text(c, in.x, in.y, in.w, CANVAS_ATTR_DIM, "no layers yet");
        return 0;
    }
    int visible = in.h - 1;
    list_scroll_clamp(&v->selected, &v->scroll, n, visible);
    int *order = malloc(sizeof(int) * (size_t)n);
    if (!order)
        return visible;
    layers_sort_order(order, t->layers, t->layer, n, v->sort, v->reverse);
    /* the quadratic's exact per-layer curvature a_l beside the estimate */
    widgets_layers(c, in, v, order, t->layers, t->layer, n, heat_layer, focused,
                   t->true_curvature, t->method == OPTIM_METHOD_LAYER_NEWTON);
    free(order);
    if (n > visible) {
        char pos[48];
        int last = v->scroll + visible < n ? v->scroll + visible : n;
        snprintf(pos, sizeof pos, " %d-%d/%d ", v->scroll + 1, last, n);
        canvas_text_right(c, r.x + r.w - 1, r.y + r.h - 1, r.w - 2, CANVAS_COLOR_BORDER, pos);
    }
    return visible;
}

/* The label of row key k of the probe-allocation chart: a group (its first
 * layer's short name without .weight/.bias) or, when the groups do not fit,
 * a transformer block ("embed" and "top" for what lies outside the blocks). */
static void alloc_label(char *buf, size_t cap, const engine_telemetry *t, int key, bool by_block)
{
    if (by_block) {
        if (key == -2)
            snprintf(buf, cap, "embed");
        else if (key == INT32_MAX)
            snprintf(buf, cap, "top");
        else
            snprintf(buf, cap, "block %d", key);
        return;
    }
    for (int l = 0; l < t->n_layers; l++)
        if (t->layer[l].group == key) {
            widgets_short_layer_name(buf, cap, t->layers[l].name);
            char *dot = strrchr(buf, '.');
            if (dot && (!strcmp(dot, ".weight") || !strcmp(dot, ".bias")))
                *dot = '\0';
            return;
        }
    snprintf(buf, cap, "group %d", key);
}

/* Row key of layer l: its group, or its block (embeddings before the first
 * block are -2, everything after the blocks INT32_MAX). */
static int alloc_key(const engine_telemetry *t, int l, bool by_block)
{
    if (!by_block)
        return t->layer[l].group;
    if (t->layers[l].block >= 0)
        return t->layers[l].block;
    for (int k = 0; k < l; k++)
        if (t->layers[k].block >= 0)
            return INT32_MAX;
    return -2;
}

/* layer-newton: where the probes went over time.  One row per group (per
 * block when the groups do not fit), time across; a cell's shade is the
 * share of that time slice's probes that went to the row. */
static void panels_probe_alloc(canvas *c, ui_rect r, const engine_telemetry *t)
{
    ui_rect in = panel_box(c, r, "Probes per group over time", false);
    const engine_hist *gh = hist(t, ENGINE_SERIES_GROUP);
    int n_groups = 0;
    for (int l = 0; l < t->n_layers; l++)
        n_groups = t->layer[l].group + 1 > n_groups ? t->layer[l].group + 1 : n_groups;
    int rows_avail = in.h - 1;
    if (n_groups == 0 || gh->n == 0 || rows_avail < 1 || in.w < 12) {
        canvas_text(c, in.x, in.y, in.w, CANVAS_ATTR_DIM, "no probes yet");
        return;
    }
    const bool by_block = n_groups > rows_avail;
    /* rows in model order: the distinct keys of the layers, first seen first */
    int *row_key = malloc(sizeof(int) * (size_t)t->n_layers);
    int *row_of_group = malloc(sizeof(int) * (size_t)n_groups);
    if (!row_key || !row_of_group) {
        free(row_key);
        free(row_of_group);
        return;
    }
    int n_rows = 0;
    for (int g = 0; g < n_groups; g++)
        row_of_group[g] = -1;
    for (int l = 0; l < t->n_layers; l++) {
        int g = t->layer[l].group;
        if (g < 0 || t->layers[l].frozen)
            continue;
        int key = alloc_key(t, l, by_block), row = -1;
        for (int k = 0; k < n_rows && row < 0; k++)
            if (row_key[k] == key)
                row = k;
        if (row < 0) {
            row = n_rows;
            row_key[n_rows++] = key;
        }
        if (row_of_group[g] < 0)
            row_of_group[g] = row;
    }
    int shown = n_rows < rows_avail ? n_rows : rows_avail;
    int lw = in.w / 4 < 16 ? in.w / 4 : 16;
    int cols = in.w - lw - 1;
    int *cnt = calloc((size_t)shown * (size_t)cols, sizeof *cnt);
    int *tot = calloc((size_t)cols, sizeof *tot);
    if (!cnt || !tot || cols < 1) {
        free(cnt), free(tot), free(row_key), free(row_of_group);
        return;
    }
    uint64_t s0 = gh->step[0], s1 = gh->step[gh->n - 1];
    int current = -1;
    for (int i = 0; i < gh->n; i++) {
        float v = gh->value[i];
        if (!isfinite(v) || v < 0 || v >= (float)n_groups)
            continue;
        int col = s1 > s0 ? (int)((double)(gh->step[i] - s0) / (double)(s1 - s0 + 1) * cols) : 0;
        col = col < 0 ? 0 : col >= cols ? cols - 1 : col;
        int row = row_of_group[(int)v];
        tot[col]++;
        if (row >= 0 && row < shown)
            cnt[(size_t)row * cols + col]++;
        if (i == gh->n - 1)
            current = row;
    }
    static const char *const shades_u[4] = {"░", "▒", "▓", "█"};
    static const char *const shades_a[4] = {".", ":", "+", "#"};
    for (int row = 0; row < shown; row++) {
        char label[PARAM_NAME_MAX];
        alloc_label(label, sizeof label, t, row_key[row], by_block);
        bool cur = row == current;
        canvas_put(c, in.x, in.y + row, cur ? canvas_sym(c, "▸", ">") : " ", CANVAS_COLOR_MARKER);
        canvas_text(c, in.x + 1, in.y + row, lw - 1, cur ? CANVAS_ATTR_BOLD : 0, label);
        for (int x = 0; x < cols; x++) {
            if (!tot[x] || !cnt[(size_t)row * cols + x])
                continue;
            double share = (double)cnt[(size_t)row * cols + x] / tot[x];
            /* shares 0..1 in four levels, square-root spaced so a few
             * percent still shows */
            int lev = (int)(sqrt(share) * 4.0);
            lev = lev < 0 ? 0 : lev > 3 ? 3 : lev;
            uint16_t a = lev <= 1 ? CANVAS_COLOR_HEAT_LOW : lev == 2 ? CANVAS_COLOR_HEAT_MID
                                                                    : CANVAS_COLOR_HEAT_HIGH;
            canvas_put(c, in.x + lw + 1 + x, in.y + row, c->utf8 ? shades_u[lev] : shades_a[lev],
                       a);
        }
    }
    char buf[64];
    snprintf(buf, sizeof buf, "step %llu", (unsigned long long)s0);
    int at = canvas_text(c, in.x + lw + 1, in.y + in.h - 1, cols, CANVAS_COLOR_AXIS, buf);
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)s1);
    if (at + 1 + canvas_text_width(buf) <= cols)
        canvas_text_right(c, in.x + in.w, in.y + in.h - 1, cols, CANVAS_COLOR_AXIS, buf);
    if (shown < n_rows) {
        snprintf(buf, sizeof buf, " %d of %d rows ", shown, n_rows);
        canvas_text_right(c, r.x + r.w - 1, r.y + r.h - 1, r.w - 2, CANVAS_COLOR_BORDER, buf);
    }
    free(cnt), free(tot), free(row_key), free(row_of_group);
}

void panels_heat(canvas *c, ui_rect r, const engine_telemetry *t, int layer)
{
    if (t->method == OPTIM_METHOD_LAYER_NEWTON) {
        panels_probe_alloc(c, r, t);
        return;
    }
    bool ok = layer >= 0 && layer < t->n_layers && t->layers && t->layer_hist;
    char title[PARAM_NAME_MAX + 64];
    snprintf(title, sizeof title, "Curvature over time: %s", ok ? t->layers[layer].name : "-");
    ui_rect in = panel_box(c, r, title, false);
    if (!ok) {
        canvas_text(c, in.x, in.y, in.w, CANVAS_ATTR_DIM, "no layer selected (l chooses)");
        return;
    }
    const engine_hist *h = hist(t, ENGINE_SERIES_LOSS);
    const float *vals = t->layer_hist + (size_t)layer * ENGINE_HIST_CAP;
    log_scale sc = widgets_heat(c, in, vals, h->step, h->n);
    if (sc.valid) {
        char range[48];
        snprintf(range, sizeof range, " log 1e%.0f..1e%.0f ", sc.lo, sc.hi);
        canvas_text_right(c, r.x + r.w - 1, r.y + r.h - 1, r.w - 2, CANVAS_COLOR_BORDER, range);
    }
}

/* ================================================================ schedule */

static bool refreshed_at(const engine_telemetry *t, uint64_t s)
{
    for (int i = 0; i < t->n_refresh && i < ENGINE_HIST_CAP; i++)
        if (t->refresh_steps[i] == s)
            return true;
    return false;
}

/* One step per column around the current step: '|' where the curvature was
 * (or will be) refreshed, a marker at the current step. */
static void draw_refresh_ticks(canvas *c, int x, int y, int w, const engine_telemetry *t)
{
    const hparams *hp = &t->hp;
    char lab[48];
    int lw = snprintf(lab, sizeof lab, "refresh k=%d ", (int)hp->hess_interval);
    canvas_text(c, x, y, w, CANVAS_COLOR_AXIS, lab);
    x += lw;
    w -= lw;
    if (w <= 2)
        return;
    uint64_t now = t->step;
    uint64_t last = 0;
    for (int i = 0; i < t->n_refresh && i < ENGINE_HIST_CAP; i++)
        if (t->refresh_steps[i] <= now && t->refresh_steps[i] > last)
            last = t->refresh_steps[i];
    uint64_t k = hp->hess_interval > 0 ? (uint64_t)hp->hess_interval : 1;
    int64_t start = (int64_t)now - w / 2;
    if (start < 1)
        start = 1;
    for (int j = 0; j < w; j++) {
        uint64_t s = (uint64_t)start + (uint64_t)j;
        bool tick;
        if (s <= now)
            tick = t->n_refresh > 0 ? refreshed_at(t, s) : optim_helene_refresh(hp, s);
        else
            tick = last > 0 ? (s - last) % k == 0 : optim_helene_refresh(hp, s);
        const char *g = tick ? "|" : canvas_sym(c, "·", ".");
        uint16_t a = tick ? CANVAS_COLOR_ALPHA : CANVAS_COLOR_AXIS;
        if (s > now)
            a |= CANVAS_ATTR_DIM;
        if (s == now) {
            g = canvas_sym(c, "▲", "^");
            a = CANVAS_COLOR_MARKER | CANVAS_ATTR_BOLD;
        }
        canvas_put(c, x + j, y, g, a);
    }
}

void panels_schedule(canvas *c, ui_rect r, const engine_telemetry *t)
{
    const hparams *hp = &t->hp;
    bool helene = t->method == OPTIM_METHOD_HELENE;
    char title[160], lr[32];
    widgets_fmt_num(lr, sizeof lr, 8, hp->lr);
    double T = hparams_anneal_T(hp);
    if (helene) {
        snprintf(title, sizeof title, "Schedule %s T=%.0f %s=%g %s=%s%s",
                 canvas_sym(c, "α_t", "alpha_t"), T, canvas_sym(c, "β1", "b1"), hp->beta1,
                 canvas_sym(c, "η", "lr"), lr, hp->anneal ? "" : " (anneal off)");
        if (canvas_text_width(title) > r.w - 4) /* narrow: drop the panel's name */
            snprintf(title, sizeof title, "%s T=%.0f %s=%g %s=%s%s",
                     canvas_sym(c, "α_t", "alpha_t"), T, canvas_sym(c, "β1", "b1"), hp->beta1,
                     canvas_sym(c, "η", "lr"), lr, hp->anneal ? "" : " (off)");
    } else
        snprintf(title, sizeof title, "Schedule %s=%s (%s: HELENE only)", canvas_sym(c, "η", "lr"),
                 lr, canvas_sym(c, "α_t", "alpha_t"));
    ui_rect in = panel_box(c, r, title, false);
    if (in.w <= 0 || in.h <= 0)
        return;
    bool ticks = helene && in.h >= 4;
    ui_rect plot = in;
    if (ticks)
        plot.h--;

    uint64_t total = t->total_steps;
    if (total == 0) { /* open-ended: show past the current step and 3T */
        double span = fmax((double)t->step * 1.5, 3 * T);
        total = (uint64_t)span;
    }
    if (total < 2)
        total = 2;
    enum { M = 512 };
    uint64_t *xs = malloc(sizeof(uint64_t) * M);
    float *ys = malloc(sizeof(float) * M);
    if (!xs || !ys) {
        free(xs);
        free(ys);
        return;
    }
    chart_opts o = chart_opts_default();
    o.x_fixed = true;
    o.x_min = 0;
    o.x_max = (double)total;
    o.marker = true;
    o.marker_x = (double)t->step;
    if (helene) {
        int m = in.w * 2 < M ? in.w * 2 : M;
        if (m < 2)
            m = 2;
        for (int j = 0; j < m; j++) {
            xs[j] = 1 + (uint64_t)llround((double)j * (double)(total - 1) / (double)(m - 1));
            /* α_t counts the current method's steps: shift by the steps
             * run before the last switch */
            uint64_t off = t->step > t->method_step ? t->step - t->method_step : 0;
            ys[j] = (float)optim_helene_alpha(hp, xs[j] > off ? xs[j] - off : 1);
        }
        chart_series s[2] = {{"alpha", m, xs, ys, CANVAS_COLOR_ALPHA | CANVAS_ATTR_BOLD, '*'},
                             {"lr", 0, NULL, NULL, CANVAS_COLOR_LR, 'e'}};
        /* α_t lives in [β1, 1]; a fixed axis keeps the curve's shape honest */
        o.y_fixed = true;
        o.y_min = hp->beta1 < 1 ? hp->beta1 : 0;
        o.y_max = 1;
        if (!(o.y_max > o.y_min))
            o.y_min = 0;
        /* η only when it changed during the run (a constant is in the
         * title): its history scaled onto the α axis, then the current η */
        const engine_hist *h = hist(t, ENGINE_SERIES_LR);
        double lo = hp->lr, hi = hp->lr;
        for (int i = 0; i < h->n; i++)
            if (isfinite(h->value[i]) && h->value[i] > 0) {
                lo = fmin(lo, h->value[i]);
                hi = fmax(hi, h->value[i]);
            }
        uint64_t *ex = NULL;
        float *ey = NULL;
        if (hi > lo * 1.0001 && (ex = malloc(sizeof(uint64_t) * (size_t)(h->n + 2))) &&
            (ey = malloc(sizeof(float) * (size_t)(h->n + 2)))) {
            int k = 0;
            double span = o.y_max - o.y_min;
            for (int i = 0; i < h->n; i++) {
                ex[k] = h->step[i];
                ey[k++] = (float)(o.y_min + span * h->value[i] / hi);
            }
            ex[k] = t->step;
            ey[k++] = (float)(o.y_min + span * hp->lr / hi);
            ex[k] = total;
            ey[k++] = (float)(o.y_min + span * hp->lr / hi);
            s[1].n = k;
            s[1].x = ex;
            s[1].y = ey;
        }
        widgets_chart(c, plot, s, s[1].n ? 2 : 1, &o);
        free(ex);
        free(ey);
    } else {
        /* η over the run: its history, then the current value to the end */
        const engine_hist *h = hist(t, ENGINE_SERIES_LR);
        int m = 0;
        for (int i = 0; i < h->n && m < M - 2; i++, m++) {
            xs[m] = h->step[i];
            ys[m] = h->value[i];
        }
        xs[m] = t->step;
        ys[m++] = (float)hp->lr;
        xs[m] = total;
        ys[m++] = (float)hp->lr;
        chart_series s = {"lr", m, xs, ys, CANVAS_COLOR_LR | CANVAS_ATTR_BOLD, '*'};
        widgets_chart(c, plot, &s, 1, &o);
    }
    free(xs);
    free(ys);
    if (ticks)
        draw_refresh_ticks(c, in.x, in.y + in.h - 1, in.w, t);
}

/* ================================================================ events, status */

void panels_events(canvas *c, ui_rect r, const ui_log *log, int scroll, bool focused)
{
    ui_rect in = panel_box(c, r, "Events", focused);
    widgets_log(c, in, log, scroll);
    if (scroll > 0 && log->n > 1) {
        char buf[48];
        snprintf(buf, sizeof buf, " %s%d newer ", canvas_sym(c, "↓", "v "),
                 scroll < log->n - 1 ? scroll : log->n - 1);
        canvas_text_right(c, r.x + r.w - 1, r.y + r.h - 1, r.w - 2, CANVAS_COLOR_BORDER, buf);
    }
}

/* ================================================================ race */

static const uint16_t race_attr[PANELS_RACE_MAX] = {CANVAS_COLOR_DEV, CANVAS_COLOR_LOSS_PLUS,
                                                    CANVAS_COLOR_ALPHA, CANVAS_COLOR_GRAD};
static const char *const race_glyph_u[PANELS_RACE_MAX] = {"●", "▲", "■", "◆"};
static const char *const race_glyph_a[PANELS_RACE_MAX] = {"o", "x", "+", "#"};

uint16_t panels_race_attr(int arm)
{
    return race_attr[arm & 3];
}

const char *panels_race_glyph(const canvas *c, int arm)
{
    return canvas_sym(c, race_glyph_u[arm & 3], race_glyph_a[arm & 3]);
}

void panels_race_header(canvas *c, ui_rect r, const race_arm_info *a, int n, int sel,
                        const char *state)
{
    if (r.h < 1 || n < 1)
        return;
    canvas_fill(c, r, " ", 0);
    const engine_telemetry *t0 = a[0].t;
    char where[320];
    if (panels_is_analytic(t0))
        snprintf(where, sizeof where, "objective %.200s", t0->model_name);
    else {
        const char *m = strrchr(t0->model_name, '/');
        m = m && m[1] ? m + 1 : t0->model_name;
        snprintf(where, sizeof where, "model %.140s  task %.120s", m,
                 t0->task_name[0] ? t0->task_name : "-");
    }
    int x = canvas_text(c, r.x, r.y, r.w, CANVAS_COLOR_TITLE | CANVAS_ATTR_BOLD, "helene race");
    x += canvas_printf(c, r.x + x, r.y, r.w - x, 0, "  %s  %d arms, lock-step  step %llu/%llu",
                       where, n, (unsigned long long)t0->step,
                       (unsigned long long)t0->total_steps);
    canvas_text_right(c, r.x + r.w, r.y, r.w - x - 1, CANVAS_ATTR_BOLD, state);
    const bool acc = !panels_is_analytic(t0);
    for (int i = 0; i < n && i + 1 < r.h; i++) {
        const engine_telemetry *t = a[i].t;
        int y = r.y + 1 + i;
        uint16_t at = panels_race_attr(i);
        canvas_put(c, r.x, y, i == sel ? canvas_sym(c, "▸", ">") : " ", CANVAS_COLOR_MARKER);
        canvas_put(c, r.x + 1, y, panels_race_glyph(c, i), at | CANVAS_ATTR_BOLD);
        char lr[32], best[48], rate[32];
        widgets_fmt_num(lr, sizeof lr, 7, t->hp.lr);
        if (isnan(t->best_dev_accuracy))
            snprintf(best, sizeof best, "-");
        else if (acc)
            snprintf(best, sizeof best, "%.1f%% @%llu", 100.0 * t->best_dev_accuracy,
                     (unsigned long long)t->best_dev_step);
        else
            snprintf(best, sizeof best, "%.4g @%llu", t->best_dev_accuracy,
                     (unsigned long long)t->best_dev_step);
        widgets_fmt_num(rate, sizeof rate, 6, t->steps_per_s);
        canvas_printf(c, r.x + 3, y, r.w - 3, i == sel ? CANVAS_ATTR_BOLD : 0,
                      "%d %-13.13s %s=%-7s step %-7llu %6s steps/s  best %s %-14s %5.0f MiB  %s",
                      i + 1, a[i].label, canvas_sym(c, "η", "lr"), lr,
                      (unsigned long long)t->step, rate, acc ? "dev" : "loss", best, a[i].mib,
                      t->state == ENGINE_STATE_ERROR ? "ERROR" : "");
    }
}

/* Draw series into in; without colours through an ASCII canvas, so each
 * arm keeps its own glyph. */
static void race_chart(canvas *c, ui_rect in, const chart_series *s, int n,
                       const chart_opts *o, bool mono)
{
    if (!mono || !c->utf8 || in.w < 1 || in.h < 1) {
        widgets_chart(c, in, s, n, o);
        return;
    }
    canvas tmp;
    if (canvas_init(&tmp, in.w, in.h, false, NULL) != HL_OK)
        return;
    widgets_chart(&tmp, (ui_rect){0, 0, in.w, in.h}, s, n, o);
    for (int y = 0; y < in.h; y++)
        for (int x = 0; x < in.w; x++)
            canvas_put(c, in.x + x, in.y + y, canvas_glyph(&tmp, x, y), canvas_attr(&tmp, x, y));
    canvas_free(&tmp);
}

static void race_legend(canvas *c, ui_rect box, const race_arm_info *a, int n)
{
    legend_item lg[PANELS_RACE_MAX];
    char labels[PANELS_RACE_MAX][24];
    for (int i = 0; i < n && i < PANELS_RACE_MAX; i++) {
        snprintf(labels[i], sizeof labels[i], "%d %.16s", i + 1,
                 optim_method_name(a[i].t->method));
        lg[i] = (legend_item){race_glyph_u[i], race_glyph_a[i], labels[i],
                              panels_race_attr(i) | CANVAS_ATTR_BOLD};
    }
    draw_legend(c, box, lg, n);
}

void panels_race_loss(canvas *c, ui_rect r, const race_arm_info *a, int n, bool log_y,
                      bool mono)
{
    ui_rect in = panel_box(c, r, log_y ? "Loss (EMA)  log" : "Loss (EMA)", false);
    float *ema = malloc(sizeof(float) * ENGINE_HIST_CAP * PANELS_RACE_MAX);
    if (!ema)
        return;
    chart_series s[PANELS_RACE_MAX];
    for (int i = 0; i < n && i < PANELS_RACE_MAX; i++) {
        const engine_hist *h = hist(a[i].t, ENGINE_SERIES_LOSS);
        widgets_ema(ema + (size_t)i * ENGINE_HIST_CAP, h->value, h->n, 0.9);
        s[i] = (chart_series){optim_method_name(a[i].t->method), h->n, h->step,
                              ema + (size_t)i * ENGINE_HIST_CAP,
                              panels_race_attr(i) | CANVAS_ATTR_BOLD, race_glyph_a[i][0]};
    }
    chart_opts o = chart_opts_default();
    o.log_y = log_y;
    race_chart(c, in, s, n, &o, mono);
    free(ema);
    race_legend(c, r, a, n);
}

void panels_race_dev(canvas *c, ui_rect r, const race_arm_info *a, int n, bool log_y,
                     double target, bool mono)
{
    const bool acc = !panels_is_analytic(a[0].t);
    char title[96];
    if (isfinite(target))
        snprintf(title, sizeof title, acc ? "Dev accuracy  target %.1f%%" : "Exact loss  target %.4g",
                 acc ? 100.0 * target : target);
    else
        snprintf(title, sizeof title, acc ? "Dev accuracy" : "Exact loss");
    ui_rect in = panel_box(c, r, title, false);
    chart_series s[PANELS_RACE_MAX + 1];
    uint64_t tx[2] = {0, 0};
    float ty[2] = {(float)target, (float)target};
    int k = 0;
    for (int i = 0; i < n && i < PANELS_RACE_MAX; i++) {
        const engine_hist *h = hist(a[i].t, ENGINE_SERIES_DEV);
        s[k++] = (chart_series){optim_method_name(a[i].t->method), h->n, h->step, h->value,
                                panels_race_attr(i) | CANVAS_ATTR_BOLD, race_glyph_a[i][0]};
        if (h->n > 0 && h->step[h->n - 1] > tx[1])
            tx[1] = h->step[h->n - 1];
    }
    if (isfinite(target) && tx[1] > 0) /* the finish line, dim, under the arms */
        s[k++] = (chart_series){"target", 2, tx, ty, CANVAS_COLOR_AXIS | CANVAS_ATTR_DIM, '.'};
    chart_opts o = chart_opts_default();
    o.percent = acc;
    o.log_y = log_y && !acc;
    race_chart(c, in, s, k, &o, mono);
    race_legend(c, r, a, n);
}

void panels_race_finish(canvas *c, ui_rect r, const race_arm_info *a, int n, double target,
                        bool target_given)
{
    const bool acc = !panels_is_analytic(a[0].t);
    char title[96];
    if (!isfinite(target))
        snprintf(title, sizeof title, "Finish line");
    else if (acc)
        snprintf(title, sizeof title, "Finish line: dev %.1f%%%s", 100.0 * target,
                 target_given ? "" : " (slowest arm's best)");
    else
        snprintf(title, sizeof title, "Finish line: loss %.4g%s", target,
                 target_given ? "" : " (slowest arm's best)");
    ui_rect in = panel_box(c, r, title, false);
    if (in.h < 1)
        return;
    canvas_printf(c, in.x, in.y, in.w, CANVAS_ATTR_BOLD, "  arm            %7s %9s %8s",
                  "steps", "forwards", "seconds");
    for (int i = 0; i < n && i + 1 < in.h; i++) {
        int y = in.y + 1 + i;
        canvas_put(c, in.x, y, panels_race_glyph(c, i), panels_race_attr(i) | CANVAS_ATTR_BOLD);
        if (a[i].reached)
            canvas_printf(c, in.x + 2, y, in.w - 2, CANVAS_COLOR_GOOD,
                          "%d %-12.12s %7llu %9llu %8.3g", i + 1,
                          optim_method_name(a[i].t->method),
                          (unsigned long long)a[i].steps_to, (unsigned long long)a[i].forwards_to,
                          a[i].secs_to);
        else
            canvas_printf(c, in.x + 2, y, in.w - 2, CANVAS_ATTR_DIM, "%d %-12.12s %7s", i + 1,
                          optim_method_name(a[i].t->method), "...");
    }
}

void panels_status(canvas *c, ui_rect r, const char *message, uint16_t message_attr,
                   const char *pending, int redraw_hz)
{
    if (r.h < 1)
        return;
    canvas_fill(c, r, " ", CANVAS_ATTR_REVERSE);
    char right[64];
    snprintf(right, sizeof right, " %dHz ", redraw_hz);
    int rw = canvas_text_width(right);
    canvas_text_right(c, r.x + r.w, r.y, rw, CANVAS_ATTR_REVERSE, right);
    int avail = r.w - rw;
    int x = r.x;
    if (message && *message) {
        x += canvas_text(c, x, r.y, avail, message_attr | CANVAS_ATTR_REVERSE | CANVAS_ATTR_BOLD,
                         message);
        x += canvas_text(c, x, r.y, avail - (x - r.x), CANVAS_ATTR_REVERSE, "  ");
    }
    if (pending && *pending) {
        x += canvas_text(c, x, r.y, avail - (x - r.x),
                         CANVAS_COLOR_PENDING | CANVAS_ATTR_REVERSE | CANVAS_ATTR_BOLD, pending);
        x += canvas_text(c, x, r.y, avail - (x - r.x), CANVAS_ATTR_REVERSE, "  ");
    }
    static const char *const hints[] = {
        "Space pause/resume  s step  e edit  a/p/k anneal/precond/clip  o optimizer  v eval  "
        "c checkpoint  l layer  ? help  q quit",
        "Space pause  s step  e edit  a/p/k toggles  o opt  v eval  c ckpt  ? help  q quit",
        "Space pause  s step  e edit  ? help  q quit",
        "? help  q quit",
    };
    int left = avail - (x - r.x);
    for (size_t i = 0; i < sizeof hints / sizeof hints[0]; i++)
        if (canvas_text_width(hints[i]) <= left || i + 1 == sizeof hints / sizeof hints[0]) {
            canvas_text(c, x, r.y, left, CANVAS_ATTR_REVERSE, hints[i]);
            break;
        }
}

void panels_too_small(canvas *c)
{
    canvas_clear(c);
    char a[96], b[96];
    snprintf(a, sizeof a, "Terminal too small: %dx%d", c->w, c->h);
    snprintf(b, sizeof b, "helene needs at least %dx%d", LAYOUT_MIN_COLS, LAYOUT_MIN_ROWS);
    const char *lines[3] = {a, b, "enlarge the window, or press q to quit"};
    int y0 = c->h / 2 - 1;
    for (int i = 0; i < 3; i++) {
        int w = canvas_text_width(lines[i]);
        int x = (c->w - w) / 2;
        canvas_text(c, x < 0 ? 0 : x, y0 + i, c->w, i == 0 ? CANVAS_ATTR_BOLD : 0, lines[i]);
    }
}

void panels_help(canvas *c, ui_rect screen, int page)
{
    static const char *const keys[] = {
        "Space      pause / resume training",
        "s          one step (while paused)",
        "e          edit hyperparameters (validated form, Esc cancels)",
        "a / p / k  toggle annealing / preconditioning / clipping (HELENE);",
        "           p and k keep each layer's update size (Events shows it)",
        "o          switch optimizer (keeps the parameters, takes its own lr)",
        "v          evaluate on dev now",
        "c          checkpoint now (--save, or a run folder runs/...)",
        "l          choose the layer whose curvature is plotted",
        "Enter      plot the layer under the cursor",
        "1 2 3 4    sort layers: model order / name / curvature / clip rate",
        "Tab        move the arrows between the layer table and events",
        "Up Down PgUp PgDn Home End   scroll",
        "g          loss chart: log / linear scale",
        "< / >      at most fewer / more steps per second (analytic: 30)",
        "+ / -      redraw rate faster / slower",
        "q          quit (asks first when progress is unsaved)",
        "",
        "? or Right: what the screen shows.  Any other key closes.",
    };
    static const char *const screen_lines[] = {
        "Loss     L+ and L- (the two probes), their mean and its average",
        "Dev      dev accuracy at each evaluation; step 0 is zero-shot",
        "Proj. gradient  c = (L+ - L-) / 2 eps, the slope along this step's",
        "         random direction: its sign picks the way, its size the step",
        "Layers (HELENE), one row per tensor:",
        " mean h, max h  curvature estimate h (EMA of q z^2, bias-corrected).",
        "         The same in every layer: a shared probe cannot tell them apart",
        " lambda  the layer's floor: h below it counts as lambda (the clip)",
        " clip    share of elements at the floor. High: the floor, not h, sets",
        "         the step. It rises as gradients shrink late in a run",
        " upd rms size of the last update.  true a: the exact curvature",
        "         (quadratic objective only), to compare with h",
        " bar     mean h on a log scale shared by the layers, lambda marked",
        "Schedule alpha_t (momentum annealing, 1 -> beta1 over T steps) and",
        "         the refresh ticks: h is re-estimated every k steps",
        "Curvature over time  the chosen layer's mean h (l picks the layer)",
        "Events   what the engine did, at which step",
        "",
        "? or Left: the keys.  Any other key closes.",
    };
    if (page == 0)
        widgets_dialog(c, screen, "Keys (1/2)", keys, (int)(sizeof keys / sizeof keys[0]), 0);
    else
        widgets_dialog(c, screen, "What the screen shows (2/2)", screen_lines,
                       (int)(sizeof screen_lines / sizeof screen_lines[0]), 0);
}

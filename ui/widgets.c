/* widgets.c - see widgets.h.  Every widget draws only inside the rectangle
 * it is given, so panels can be composed by the layout without clipping. */
#include "widgets.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ================================================================ formatting */

/* "1.5e-05" -> "1.5e-5", "3.0e+07" -> "3.0e7": exponents without sign
 * padding keep columns narrow. */
static void compact_exponent(char *s)
{
    char *e = strchr(s, 'e');
    if (!e)
        return;
    char *src = e + 1, *dst = e + 1;
    if (*src == '+')
        src++;
    else if (*src == '-')
        *dst++ = *src++;
    while (*src == '0' && src[1])
        src++;
    memmove(dst, src, strlen(src) + 1);
}

static void strip_zeros(char *s)
{
    if (!strchr(s, '.'))
        return;
    size_t n = strlen(s);
    while (n > 0 && s[n - 1] == '0')
        s[--n] = '\0';
    if (n > 0 && s[n - 1] == '.')
        s[--n] = '\0';
}

/* "1.50e-5" -> "1.5e-5", "1.00e6" -> "1e6". */
static void strip_mantissa_zeros(char *s)
{
    char *e = strchr(s, 'e');
    char *dot = strchr(s, '.');
    if (!e || !dot || dot > e)
        return;
    char *z = e;
    while (z > dot + 1 && z[-1] == '0')
        z--;
    if (z == dot + 1)
        z = dot;
    memmove(z, e, strlen(e) + 1);
}

void widgets_fmt_num(char *buf, size_t cap, int width, double v)
{
    if (cap == 0)
        return;
    char tmp[64];
    if (isnan(v)) {
        snprintf(buf, cap, "-");
        return;
    }
    if (isinf(v)) {
        snprintf(buf, cap, "%s", v > 0 ? "inf" : "-inf");
        return;
    }
    if (v == 0) {
        snprintf(buf, cap, "0");
        return;
    }
    double a = fabs(v);
    if (a >= 1e-3 && a < 1e6) {
        for (int p = 4; p >= 0; p--) {
            snprintf(tmp, sizeof tmp, "%.*f", p, v);
            strip_zeros(tmp);
            /* keep two significant digits for small values */
            if (a < 0.1 && p < 3)
                break;
            if ((int)strlen(tmp) <= width) {
                snprintf(buf, cap, "%s", tmp);
                return;
            }
        }
    }
    for (int p = 2; p >= 0; p--) {
        snprintf(tmp, sizeof tmp, "%.*e", p, v);
        compact_exponent(tmp);
        strip_mantissa_zeros(tmp);
        if ((int)strlen(tmp) <= width || p == 0) {
            snprintf(buf, cap, "%s", tmp);
            return;
        }
    }
}

void widgets_fmt_duration(char *buf, size_t cap, double s)
{
    if (!isfinite(s) || s < 0) {
        snprintf(buf, cap, "--");
        return;
    }
    long long t = (long long)(s + 0.5);
    if (t < 60)
        snprintf(buf, cap, "%llds", t);
    else if (t < 3600)
        snprintf(buf, cap, "%lldm%02llds", t / 60, t % 60);
    else if (t < 86400)
        snprintf(buf, cap, "%lldh%02lldm", t / 3600, (t % 3600) / 60);
    else
        snprintf(buf, cap, "%lldd%02lldh", t / 86400, (t % 86400) / 3600);
}

void widgets_ema(float *out, const float *in, int n, double beta)
{
    double m = 0, corr = 1;
    bool any = false;
    float last = NAN;
    for (int i = 0; i < n; i++) {
        if (isfinite(in[i])) {
            m = beta * m + (1 - beta) * in[i];
            corr *= beta;
            any = true;
            last = (float)(m / (1 - corr));
        }
        out[i] = any ? last : NAN;
    }
}

/* ================================================================ chart */

#define CHART_GUTTER 7

chart_opts chart_opts_default(void)
{
    chart_opts o = {0};
    o.lines = true;
    o.x_label = "step";
    return o;
}

typedef struct dot_grid {
    int cw, ch;      /* cells */
    int sx, sy;      /* dots per cell: 2x4 braille, 1x1 ASCII */
    uint8_t *bits;   /* [ch][cw] braille bits, or 1 for an ASCII mark */
    uint16_t *attr;  /* [ch][cw] */
    char *mark;      /* [ch][cw] ASCII glyph */
} dot_grid;

static void grid_dot(dot_grid *g, int dx, int dy, uint16_t attr, char mark)
{
    if (dx < 0 || dy < 0 || dx >= g->cw * g->sx || dy >= g->ch * g->sy)
        return;
    size_t i = (size_t)(dy / g->sy) * (size_t)g->cw + (size_t)(dx / g->sx);
    g->bits[i] |= g->sx == 2 ? canvas_braille_bit(dx % 2, dy % 4) : 1;
    g->attr[i] = attr;
    g->mark[i] = mark;
}

static void grid_line(dot_grid *g, int x0, int y0, int x1, int y1, uint16_t attr, char mark)
{
    int dx = abs(x1 - x0), sx = x0 < x1 ? 1 : -1;
    int dy = -abs(y1 - y0), sy = y0 < y1 ? 1 : -1;
    int e = dx + dy;
    for (;;) {
        grid_dot(g, x0, y0, attr, mark);
        if (x0 == x1 && y0 == y1)
            break;
        int e2 = 2 * e;
        if (e2 >= dy) {
            e += dy;
            x0 += sx;
        }
        if (e2 <= dx) {
            e += dx;
            y0 += sy;
        }
    }
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

static void fmt_label(char *buf, size_t cap, double v, bool percent)
{
    if (percent)
        snprintf(buf, cap, "%.0f%%", v * 100.0);
    else
        widgets_fmt_num(buf, cap, CHART_GUTTER, v);
}

/* A series value on the chart's y axis: itself, or log10 of it (NAN for
 * values a log axis cannot show). */
static double chart_y(const chart_opts *o, float y)
{
    if (!isfinite(y))
        return NAN;
    if (!o->log_y)
        return y;
    return y > 0 ? log10((double)y) : NAN;
}

void widgets_chart(canvas *c, ui_rect r, const chart_series *s, int n_series,
                   const chart_opts *o)
{
    chart_opts def = chart_opts_default();
    if (!o)
        o = &def;
    if (r.w < CHART_GUTTER + 4 || r.h < 2)
        return;
    int pw = r.w - CHART_GUTTER - 1, ph = r.h - 1;
    int px0 = r.x + CHART_GUTTER + 1;

    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    bool any = false;
    for (int k = 0; k < n_series; k++)
        for (int i = 0; i < s[k].n; i++) {
            double y = chart_y(o, s[k].y[i]);
            if (isnan(y))
                continue;
            any = true;
            double x = (double)s[k].x[i];
            xmin = fmin(xmin, x);
            xmax = fmax(xmax, x);
            ymin = fmin(ymin, y);
            ymax = fmax(ymax, y);
        }
    if (!any) {
        const char *msg = "no data yet";
        int w = canvas_text_width(msg);
        canvas_text(c, r.x + (r.w - w) / 2, r.y + r.h / 2, r.w, CANVAS_ATTR_DIM, msg);
        return;
    }
    if (o->x_fixed) {
        xmin = o->x_min;
        xmax = o->x_max;
    }
    if (o->y_fixed) {
        ymin = o->log_y ? log10(o->y_min) : o->y_min;
        ymax = o->log_y ? log10(o->y_max) : o->y_max;
    }
    if (!(xmax > xmin))
        xmax = xmin + 1;
    if (!(ymax > ymin)) {
        double pad = ymin == 0 ? 1 : fabs(ymin) * 0.1;
        ymin -= pad;
        ymax += pad;
    }

    dot_grid g = {pw, ph, c->utf8 ? 2 : 1, c->utf8 ? 4 : 1, NULL, NULL, NULL};
    size_t cells = (size_t)pw * (size_t)ph;
    g.bits = calloc(cells, 1);
    g.attr = calloc(cells, sizeof *g.attr);
    g.mark = calloc(cells, 1);
    if (!g.bits || !g.attr || !g.mark)
        goto out;
    int dw = pw * g.sx, dh = ph * g.sy;

    if (o->marker && o->marker_x >= xmin && o->marker_x <= xmax) {
        int mx = (int)lround((o->marker_x - xmin) / (xmax - xmin) * (dw - 1));
        for (int dy = 0; dy < dh; dy++)
            grid_dot(&g, mx, dy, CANVAS_COLOR_MARKER, '|');
    }
    for (int k = 0; k < n_series; k++) {
        bool have_prev = false;
        int lx = 0, ly = 0;
        for (int i = 0; i < s[k].n; i++) {
            double y = chart_y(o, s[k].y[i]);
            if (isnan(y)) {
                have_prev = false;
                continue;
            }
            double fx = ((double)s[k].x[i] - xmin) / (xmax - xmin);
            double fy = (ymax - y) / (ymax - ymin);
            int dx = clampi((int)lround(fx * (dw - 1)), 0, dw - 1);
            int dy = clampi((int)lround(fy * (dh - 1)), 0, dh - 1);
            if (have_prev && o->lines)
                grid_line(&g, lx, ly, dx, dy, s[k].attr, s[k].ascii_mark);
            else
                grid_dot(&g, dx, dy, s[k].attr, s[k].ascii_mark);
            lx = dx;
            ly = dy;
            have_prev = true;
        }
    }
    for (int cy = 0; cy < ph; cy++)
        for (int cx = 0; cx < pw; cx++) {
            size_t i = (size_t)cy * (size_t)pw + (size_t)cx;
            if (!g.bits[i])
                continue;
            char glyph[CANVAS_GLYPH_MAX];
            if (g.sx == 2)
                canvas_braille_glyph(glyph, g.bits[i]);
            else {
                glyph[0] = g.mark[i] ? g.mark[i] : '*';
                glyph[1] = '\0';
            }
            canvas_put(c, px0 + cx, r.y + cy, glyph, g.attr[i]);
        }

    /* y axis: labels at the top and bottom plot rows */
    char lab[32];
    uint16_t ax = CANVAS_COLOR_AXIS;
    for (int cy = 0; cy < ph; cy++) {
        bool labelled = cy == 0 || cy == ph - 1;
        canvas_put(c, px0 - 1, r.y + cy,
                   labelled ? canvas_sym(c, "┤", "+") : canvas_sym(c, "│", "|"), ax);
    }
    fmt_label(lab, sizeof lab, o->log_y ? pow(10.0, ymax) : ymax, o->percent);
    canvas_text_right(c, r.x + CHART_GUTTER, r.y, CHART_GUTTER, ax, lab);
    if (ph > 1) {
        fmt_label(lab, sizeof lab, o->log_y ? pow(10.0, ymin) : ymin, o->percent);
        canvas_text_right(c, r.x + CHART_GUTTER, r.y + ph - 1, CHART_GUTTER, ax, lab);
    }
    /* x axis: step range */
    int yb = r.y + ph;
    canvas_put(c, px0 - 1, yb, canvas_sym(c, "└", "+"), ax);
    char left[32], right[32];
    snprintf(left, sizeof left, "%.0f", xmin);
    snprintf(right, sizeof right, "%.0f", xmax);
    int lw = canvas_text(c, px0, yb, pw, ax, left);
    int rw = canvas_text_width(right);
    if (lw + 1 + rw <= pw)
        canvas_text_right(c, px0 + pw, yb, rw, ax, right);
    if (o->x_label) {
        int xl = canvas_text_width(o->x_label);
        int mid = px0 + (pw - xl) / 2;
        if (mid > px0 + lw && mid + xl < px0 + pw - rw)
            canvas_text(c, mid, yb, xl, ax | CANVAS_ATTR_DIM, o->x_label);
    }
out:
    free(g.bits);
    free(g.attr);
    free(g.mark);
}

/* ================================================================ bars */

void log_scale_add(log_scale *s, const float *v, int n)
{
    for (int i = 0; i < n; i++) {
        if (!(v[i] > 0) || !isfinite(v[i]))
            continue;
        double l = log10((double)v[i]);
        if (!s->valid) {
            s->lo = s->hi = l;
            s->valid = true;
        } else {
            s->lo = fmin(s->lo, l);
            s->hi = fmax(s->hi, l);
        }
    }
}

void log_scale_finish(log_scale *s)
{
    if (!s->valid) {
        s->lo = 0;
        s->hi = 1;
        return;
    }
    /* the smallest value still shows a sliver: lo strictly below it */
    double lo = floor(s->lo - 1e-9), hi = ceil(s->hi);
    if (hi <= lo)
        hi = lo + 1;
    s->lo = lo;
    s->hi = hi;
}

double log_scale_fraction(const log_scale *s, double v)
{
    if (!s->valid || !(v > 0) || !isfinite(v))
        return 0;
    double f = (log10(v) - s->lo) / (s->hi - s->lo);
    return f < 0 ? 0 : f > 1 ? 1 : f;
}

void widgets_bar(canvas *c, int x, int y, int w, double frac, uint16_t attr,
                 double marker_frac, uint16_t marker_attr)
{
    static const char *const eighths[8] = {" ", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
    if (w <= 0)
        return;
    if (!(frac >= 0))
        frac = 0;
    if (frac > 1)
        frac = 1;
    if (c->utf8) {
        long e = lround(frac * w * 8);
        for (int i = 0; i < w; i++) {
            long cell = e - (long)i * 8;
            const char *g = cell >= 8 ? "█" : cell > 0 ? eighths[cell] : " ";
            canvas_put(c, x + i, y, g, attr);
        }
    } else {
        long full = lround(frac * w);
        for (int i = 0; i < w; i++)
            canvas_put(c, x + i, y, i < full ? "#" : " ", attr);
    }
    if (marker_frac >= 0 && marker_frac <= 1) {
        int mx = (int)(marker_frac * w + 1e-6); /* 1e-4f is a hair below 1e-4 */
        if (mx >= w)
            mx = w - 1;
        canvas_put(c, x + mx, y, canvas_sym(c, "│", "|"), marker_attr);
    }
}

/* ================================================================ table */

void table_fit_columns(bool *shown, int *widths, const table_column *cols, int ncols, int w)
{
    for (int i = 0; i < ncols; i++) {
        shown[i] = true;
        widths[i] = cols[i].width > 0 ? cols[i].width : cols[i].min_width;
    }
    for (;;) {
        int need = 0, nshown = 0;
        for (int i = 0; i < ncols; i++)
            if (shown[i]) {
                need += widths[i];
                nshown++;
            }
        need += nshown > 0 ? nshown - 1 : 0;
        if (need <= w || nshown == 0) {
            int extra = w - need;
            /* flexible columns grow to their wanted width in order, the last takes the rest */
            int last_flex = -1;
            for (int i = 0; i < ncols; i++) {
                if (!shown[i] || cols[i].width > 0)
                    continue;
                last_flex = i;
                int want = cols[i].want_width > 0 ? cols[i].want_width - widths[i] : 0;
                if (want > extra)
                    want = extra;
                if (want > 0) {
                    widths[i] += want;
                    extra -= want;
                }
            }
            if (last_flex >= 0 && extra > 0)
                widths[last_flex] += extra;
            return;
        }
        int drop = -1;
        for (int i = 0; i < ncols; i++)
            if (shown[i] && (drop < 0 || cols[i].priority > cols[drop].priority))
                drop = i;
        if (nshown == 1) {
            widths[drop] = w; /* one column left: give it what there is */
            return;
        }
        shown[drop] = false;
    }
}

int widgets_table(canvas *c, ui_rect r, const table_column *cols, int ncols, int nrows,
                  int scroll, int selected, table_cell_fn cell, void *ctx)
{
    enum { MAXC = 16 };
    if (r.w <= 0 || r.h <= 0 || ncols <= 0 || ncols > MAXC)
        return 0;
    bool shown[MAXC];
    int widths[MAXC];
    table_fit_columns(shown, widths, cols, ncols, r.w);
    int x = r.x;
    for (int i = 0; i < ncols; i++) {
        if (!shown[i])
            continue;
        if (!cols[i].title)
            cell(c, x, r.y, widths[i], -1, i, ctx);
        else if (cols[i].align == TABLE_ALIGN_RIGHT)
            canvas_text_right(c, x + widths[i], r.y, widths[i], CANVAS_ATTR_BOLD, cols[i].title);
        else
            canvas_text(c, x, r.y, widths[i], CANVAS_ATTR_BOLD, cols[i].title);
        x += widths[i] + 1;
    }
    int visible = r.h - 1;
    for (int k = 0; k < visible && scroll + k < nrows; k++) {
        int row = scroll + k, y = r.y + 1 + k;
        x = r.x;
        for (int i = 0; i < ncols; i++) {
            if (!shown[i])
                continue;
            cell(c, x, y, widths[i], row, i, ctx);
            x += widths[i] + 1;
        }
        if (row == selected)
            canvas_add_flags(c, (ui_rect){r.x, y, r.w, 1}, CANVAS_ATTR_REVERSE);
    }
    return visible < 0 ? 0 : visible;
}

void list_scroll_clamp(int *selected, int *scroll, int n, int visible)
{
    if (visible < 1)
        visible = 1;
    if (*selected >= n)
        *selected = n - 1;
    if (*selected < 0)
        *selected = 0;
    if (*scroll > *selected)
        *scroll = *selected;
    if (*selected >= *scroll + visible)
        *scroll = *selected - visible + 1;
    int max_scroll = n - visible > 0 ? n - visible : 0;
    if (*scroll > max_scroll)
        *scroll = max_scroll;
    if (*scroll < 0)
        *scroll = 0;
}

bool list_scroll_key(int *selected, int *scroll, int n, int visible, int key)
{
    int page = visible > 1 ? visible - 1 : 1;
    switch (key) {
    case UI_KEY_UP: (*selected)--; break;
    case UI_KEY_DOWN: (*selected)++; break;
    case UI_KEY_PGUP: *selected -= page; break;
    case UI_KEY_PGDN: *selected += page; break;
    case UI_KEY_HOME: *selected = 0; break;
    case UI_KEY_END: *selected = n - 1; break;
    default: return false;
    }
    list_scroll_clamp(selected, scroll, n, visible);
    return true;
}

void widgets_short_layer_name(char *buf, size_t cap, const char *name)
{
    static const char *const prefixes[] = {"base_model.", "model.", "decoder.", "transformer.",
                                           "gpt_neox."};
    for (bool again = true; again;) {
        again = false;
        for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
            size_t n = strlen(prefixes[i]);
            if (!strncmp(name, prefixes[i], n) && name[n]) {
                name += n;
                again = true;
            }
        }
    }
    /* "layers.3.x" / "h.3.x" -> "3.x": the block index leads */
    if (!strncmp(name, "layers.", 7) && isdigit((unsigned char)name[7]))
        name += 7;
    else if (!strncmp(name, "h.", 2) && isdigit((unsigned char)name[2]))
        name += 2;
    size_t at = 0;
    while (*name && at + 1 < cap) {
        if (!strncmp(name, "self_attn.", 10)) {
            name += 10;
            snprintf(buf + at, cap - at, "attn.");
            at += strlen(buf + at);
            continue;
        }
        buf[at++] = *name++;
    }
    buf[at] = '\0';
}

/* ================================================================ heat strip */

log_scale widgets_heat(canvas *c, ui_rect r, const float *values, const uint64_t *steps, int n)
{
    log_scale sc = {0, 0, false};
    log_scale_add(&sc, values, n);
    log_scale_finish(&sc);
    if (r.w <= 0 || r.h <= 0)
        return sc;
    if (!sc.valid) {
        canvas_text(c, r.x, r.y, r.w, CANVAS_ATTR_DIM, "no curvature history yet");
        return sc;
    }
    static const char *const shades_u[4] = {"░", "▒", "▓", "█"};
    static const char *const shades_a[4] = {".", ":", "+", "#"};
    double *sum = calloc((size_t)r.w, sizeof *sum);
    int *cnt = calloc((size_t)r.w, sizeof *cnt);
    if (!sum || !cnt) {
        free(sum);
        free(cnt);
        return sc;
    }
    uint64_t s0 = n > 0 ? steps[0] : 0, s1 = n > 0 ? steps[n - 1] : 0;
    for (int i = 0; i < n; i++) {
        if (!(values[i] > 0) || !isfinite(values[i]))
            continue;
        int col = s1 > s0 ? (int)lround((double)(steps[i] - s0) / (double)(s1 - s0) * (r.w - 1))
                          : 0;
        col = clampi(col, 0, r.w - 1);
        sum[col] += values[i];
        cnt[col]++;
    }
    /* columns between sparse points repeat the previous value */
    double carry = NAN;
    for (int x = 0; x < r.w; x++) {
        double v = cnt[x] ? sum[x] / cnt[x] : carry;
        carry = v;
        if (!isfinite(v))
            continue;
        int lev = (int)(log_scale_fraction(&sc, v) * 3.999);
        lev = clampi(lev, 0, 3);
        uint16_t a = lev <= 1 ? CANVAS_COLOR_HEAT_LOW : lev == 2 ? CANVAS_COLOR_HEAT_MID
                                                                : CANVAS_COLOR_HEAT_HIGH;
        for (int y = 0; y < (r.h > 1 ? r.h - 1 : 1); y++)
            canvas_put(c, r.x + x, r.y + y, c->utf8 ? shades_u[lev] : shades_a[lev], a);
    }
    free(sum);
    free(cnt);
    if (r.h > 1) {
        char buf[64];
        snprintf(buf, sizeof buf, "step %llu", (unsigned long long)s0);
        int lw = canvas_text(c, r.x, r.y + r.h - 1, r.w, CANVAS_COLOR_AXIS, buf);
        snprintf(buf, sizeof buf, "%llu", (unsigned long long)s1);
        if (lw + 1 + canvas_text_width(buf) <= r.w)
            canvas_text_right(c, r.x + r.w, r.y + r.h - 1, r.w, CANVAS_COLOR_AXIS, buf);
    }
    return sc;
}

/* ================================================================ event log */

hl_status ui_log_init(ui_log *l, int cap, hl_err *err)
{
    *l = (ui_log){0};
    if (cap < 1)
        return hl_err_set(err, HL_ERR_INVALID, "ui_log: capacity %d", cap);
    l->lines = calloc((size_t)cap, sizeof *l->lines);
    if (!l->lines)
        return hl_err_set(err, HL_ERR_NOMEM, "ui_log: out of memory");
    l->cap = cap;
    return HL_OK;
}

void ui_log_free(ui_log *l)
{
    free(l->lines);
    *l = (ui_log){0};
}

void ui_log_add(ui_log *l, uint16_t attr, const char *fmt, ...)
{
    if (!l->lines)
        return;
    int slot;
    if (l->n < l->cap) {
        slot = (l->head + l->n) % l->cap;
        l->n++;
    } else {
        slot = l->head;
        l->head = (l->head + 1) % l->cap;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->lines[slot].text, sizeof l->lines[slot].text, fmt, ap);
    va_end(ap);
    /* one line per entry: newlines from messages become spaces */
    for (char *p = l->lines[slot].text; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    l->lines[slot].attr = attr;
}

const ui_log_line *ui_log_at(const ui_log *l, int i)
{
    if (i < 0 || i >= l->n)
        return NULL;
    return &l->lines[(l->head + i) % l->cap];
}

/* Rows a line takes when wrapped to w columns (continuations indented 2). */
static int wrapped_rows(const char *text, int w)
{
    int len = canvas_text_width(text);
    if (len <= w || w <= 3)
        return 1;
    return 1 + (len - w + (w - 2) - 1) / (w - 2);
}

/* Skip n characters of UTF-8 text. */
static const char *skip_chars(const char *p, int n)
{
    while (n-- > 0 && *p) {
        p++;
        while ((*p & 0xc0) == 0x80)
            p++;
    }
    return p;
}

void widgets_log(canvas *c, ui_rect r, const ui_log *l, int scroll)
{
    if (r.h <= 0 || r.w <= 0)
        return;
    if (l->n == 0) {
        canvas_text(c, r.x, r.y, r.w, CANVAS_ATTR_DIM, "no events yet");
        return;
    }
    scroll = clampi(scroll, 0, l->n - 1);
    /* fill from the bottom: newest (after scrolling) last */
    int y = r.y + r.h;
    for (int i = l->n - 1 - scroll; i >= 0 && y > r.y; i--) {
        const ui_log_line *ln = ui_log_at(l, i);
        int rows = wrapped_rows(ln->text, r.w);
        y -= rows;
        const char *p = ln->text;
        for (int k = 0; k < rows; k++) {
            int x = k ? 2 : 0, w = r.w - x;
            if (y + k >= r.y)
                canvas_text(c, r.x + x, y + k, w, ln->attr, p);
            p = skip_chars(p, w);
        }
    }
}

/* ================================================================ overlays */

ui_rect widgets_clear_box(canvas *c, ui_rect screen, int w, int h, const char *title)
{
    ui_rect box = layout_center(screen, w, h);
    canvas_fill(c, box, " ", 0);
    canvas_box(c, box, title, CANVAS_COLOR_BORDER);
    return box;
}

void widgets_list(canvas *c, ui_rect screen, const char *title, const char *const *items,
                  int n, int selected, int scroll, const char *footer)
{
    int w = canvas_text_width(title ? title : "") + 6;
    for (int i = 0; i < n; i++) {
        int iw = canvas_text_width(items[i]) + 4;
        if (iw > w)
            w = iw;
    }
    if (footer && canvas_text_width(footer) + 4 > w)
        w = canvas_text_width(footer) + 4;
    int rows = n < screen.h - 5 ? n : screen.h - 5;
    if (rows < 1)
        rows = 1;
    ui_rect box = widgets_clear_box(c, screen, w, rows + 2 + (footer ? 1 : 0), title);
    ui_rect in = ui_rect_inner(box);
    for (int k = 0; k < rows && scroll + k < n && k < in.h; k++) {
        int i = scroll + k;
        canvas_text(c, in.x + 1, in.y + k, in.w - 1, 0, items[i]);
        if (i == selected)
            canvas_add_flags(c, (ui_rect){in.x, in.y + k, in.w, 1}, CANVAS_ATTR_REVERSE);
    }
    if (footer)
        canvas_text(c, in.x + 1, in.y + in.h - 1, in.w - 1, CANVAS_ATTR_DIM, footer);
}

void widgets_dialog(canvas *c, ui_rect screen, const char *title, const char *const *lines,
                    int n, uint16_t attr)
{
    int w = canvas_text_width(title ? title : "") + 6;
    for (int i = 0; i < n; i++) {
        int lw = canvas_text_width(lines[i]) + 4;
        if (lw > w)
            w = lw;
    }
    ui_rect box = widgets_clear_box(c, screen, w, n + 2, title);
    ui_rect in = ui_rect_inner(box);
    for (int i = 0; i < n && i < in.h; i++)
        canvas_text(c, in.x + 1, in.y + i, in.w - 1, attr, lines[i]);
}

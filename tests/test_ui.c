/* test_ui.c - the workbench without a terminal: layout properties for every
 * size, and widgets and panels rendered into canvases, compared with exact
 * expected text (charts in ASCII and braille, log-scale bars, the per-layer
 * table sorted and scrolled, the hyperparameter form's validation). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "canvas.h"
#include "engine.h"
#include "layout.h"
#include "panels.h"
#include "testutil.h"
#include "form.h"
#include "widgets.h"

/* Compare a canvas (or a region) with expected text; print both on mismatch. */
static void expect_text(const canvas *c, ui_rect r, const char *want, const char *what)
{
    char *got = canvas_to_text(c, r);
    CU_ASSERT_PTR_NOT_NULL_FATAL(got);
    if (strcmp(got, want) != 0) {
        fprintf(stderr, "\n  %s: canvas differs\n--- got\n%s\n--- want\n%s\n---\n", what, got,
                want);
        CU_FAIL("canvas text differs");
    }
    free(got);
}

static bool canvas_contains(const canvas *c, const char *needle)
{
    char *got = canvas_to_text(c, (ui_rect){0, 0, 0, 0});
    bool found = got && strstr(got, needle) != NULL;
    free(got);
    return found;
}

static const ui_rect ALL = {0, 0, 0, 0};

/* ================================================================ layout */

static void test_layout_every_size(void)
{
    int failures = 0;
    for (int cols = LAYOUT_MIN_COLS; cols <= 300; cols++)
        for (int rows = LAYOUT_MIN_ROWS; rows <= 100; rows++) {
            ui_layout l;
            layout_compute(&l, cols, rows);
            ui_rect screen = {0, 0, cols, rows};
            bool ok = !l.too_small;
            long area = 0;
            for (int p = 0; p < LAYOUT_PANEL_COUNT && ok; p++) {
                ui_rect r = l.panel[p];
                int mw, mh;
                layout_min_size(&mw, &mh, (layout_panel)p);
                if (!ui_rect_inside(r, screen) || r.w < mw || r.h < mh) {
                    fprintf(stderr, "  %dx%d: %s is %d,%d %dx%d (min %dx%d)\n", cols, rows,
                            layout_panel_name((layout_panel)p), r.x, r.y, r.w, r.h, mw, mh);
                    ok = false;
                }
                for (int q = p + 1; q < LAYOUT_PANEL_COUNT && ok; q++)
                    if (ui_rect_overlaps(r, l.panel[q])) {
                        fprintf(stderr, "  %dx%d: %s overlaps %s\n", cols, rows,
                                layout_panel_name((layout_panel)p),
                                layout_panel_name((layout_panel)q));
                        ok = false;
                    }
                area += (long)r.w * r.h;
            }
            /* the panels tile the screen: no cell left undrawn */
            if (ok && area != (long)cols * rows) {
                fprintf(stderr, "  %dx%d: panels cover %ld of %ld cells\n", cols, rows, area,
                        (long)cols * rows);
                ok = false;
            }
            if (!ok && ++failures > 5)
                goto done;
        }
done:
    CU_ASSERT_EQUAL(failures, 0);
}

static void test_layout_too_small(void)
{
    const int sizes[][2] = {{79, 24}, {80, 23}, {60, 20}, {0, 0}, {1, 1}, {300, 10}, {10, 100}};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        ui_layout l;
        layout_compute(&l, sizes[i][0], sizes[i][1]);
        CU_ASSERT(l.too_small);
        for (int p = 0; p < LAYOUT_PANEL_COUNT; p++)
            CU_ASSERT(l.panel[p].w == 0 && l.panel[p].h == 0);
    }
    ui_layout l;
    layout_compute(&l, 80, 24);
    CU_ASSERT(!l.too_small);
}

static void test_layout_center(void)
{
    ui_rect r = layout_center((ui_rect){0, 0, 80, 24}, 20, 10);
    CU_ASSERT(r.x == 30 && r.y == 7 && r.w == 20 && r.h == 10);
    r = layout_center((ui_rect){5, 5, 10, 4}, 40, 40); /* clipped to the area */
    CU_ASSERT(r.x == 5 && r.y == 5 && r.w == 10 && r.h == 4);
}

/* ================================================================ canvas */

static void test_canvas_text_and_box(void)
{
    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 12, 3, false, NULL), HL_OK);
    canvas_box(&c, (ui_rect){0, 0, 12, 3}, "Hi", 0);
    canvas_text(&c, 1, 1, 10, 0, "αβ ok");
    expect_text(&c, ALL, "+ Hi ------+\n|?? ok     |\n+----------+", "ascii box");
    canvas_free(&c);

    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 12, 3, true, NULL), HL_OK);
    canvas_box(&c, (ui_rect){0, 0, 12, 3}, "Hi", 0);
    canvas_text(&c, 1, 1, 10, 0, "αβ ok\x01");
    canvas_text(&c, 8, 1, 10, 0, "clipped"); /* stops at the right edge */
    expect_text(&c, ALL, "┌ Hi ──────┐\n│αβ ok? clip\n└──────────┘", "utf8 box");
    CU_ASSERT_EQUAL(canvas_text_width("αβ ok"), 5);
    canvas_free(&c);
}

static void test_canvas_braille_bits(void)
{
    char g[CANVAS_GLYPH_MAX];
    canvas_braille_glyph(g, 0);
    CU_ASSERT_STRING_EQUAL(g, "⠀");
    canvas_braille_glyph(g, 0xff);
    CU_ASSERT_STRING_EQUAL(g, "⣿");
    canvas_braille_glyph(g, canvas_braille_bit(0, 3)); /* dot 7 */
    CU_ASSERT_STRING_EQUAL(g, "⡀");
    canvas_braille_glyph(g, canvas_braille_bit(1, 0)); /* dot 4 */
    CU_ASSERT_STRING_EQUAL(g, "⠈");
    uint8_t all = 0;
    for (int x = 0; x < 2; x++)
        for (int y = 0; y < 4; y++)
            all |= canvas_braille_bit(x, y);
    CU_ASSERT_EQUAL(all, 0xff);
}

/* ================================================================ formatting */

static void test_fmt_num(void)
{
    const struct {
        double v;
        int w;
        const char *want;
    } cases[] = {
        {0, 6, "0"},         {1, 6, "1"},           {0.5, 6, "0.5"},       {1e-4, 6, "1e-4"},
        {1.234e-5, 6, "1.2e-5"}, {123.456, 6, "123.46"}, {0.0123, 6, "0.0123"}, {1e6, 6, "1e6"},
        {-0.25, 6, "-0.25"}, {NAN, 6, "-"},         {12345678, 6, "1.23e7"}, {0.001, 6, "0.001"},
        {INFINITY, 6, "inf"}, {0.6931, 7, "0.6931"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char buf[32];
        widgets_fmt_num(buf, sizeof buf, cases[i].w, cases[i].v);
        if (strcmp(buf, cases[i].want))
            fprintf(stderr, "  fmt %g: got '%s' want '%s'\n", cases[i].v, buf, cases[i].want);
        CU_ASSERT_STRING_EQUAL(buf, cases[i].want);
    }
    char buf[32];
    widgets_fmt_duration(buf, sizeof buf, 42);
    CU_ASSERT_STRING_EQUAL(buf, "42s");
    widgets_fmt_duration(buf, sizeof buf, 3725);
    CU_ASSERT_STRING_EQUAL(buf, "1h02m");
    widgets_fmt_duration(buf, sizeof buf, NAN);
    CU_ASSERT_STRING_EQUAL(buf, "--");
}

static void test_ema(void)
{
    float in[4] = {1, NAN, 3, 3}, out[4];
    widgets_ema(out, in, 4, 0.5);
    CU_ASSERT_DOUBLE_EQUAL(out[0], 1.0, 1e-6); /* bias-corrected: the first value itself */
    CU_ASSERT_DOUBLE_EQUAL(out[1], 1.0, 1e-6); /* NaN carries the average */
    /* m = 0.5*0.5 + 0.5*3 = 1.75 over 1 - 0.25 = 0.75 -> 2.3333 */
    CU_ASSERT_DOUBLE_EQUAL(out[2], 1.75 / 0.75, 1e-6);
}

/* ================================================================ chart */

static const uint64_t diag_x[5] = {0, 1, 2, 3, 4};
static const float diag_y[5] = {0, 1, 2, 3, 4};

static void test_chart_ascii(void)
{
    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 20, 6, false, NULL), HL_OK);
    chart_series s = {"d", 5, diag_x, diag_y, 0, '*'};
    chart_opts o = chart_opts_default();
    o.lines = false;
    widgets_chart(&c, (ui_rect){0, 0, 20, 6}, &s, 1, &o);
    /* 12 plot columns x 5 rows: x = 0..4 -> columns 0, 3, 6, 8, 11 */
    expect_text(&c, ALL,
                "      4+           *\n"
                "       |        *\n"
                "       |      *\n"
                "       |   *\n"
                "      0+*\n"
                "       +0   step   4",
                "ascii chart");
    canvas_free(&c);
}

static void test_chart_braille(void)
{
    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 20, 6, true, NULL), HL_OK);
    chart_series s = {"d", 5, diag_x, diag_y, 0, '*'};
    chart_opts o = chart_opts_default();
    o.lines = false;
    widgets_chart(&c, (ui_rect){0, 0, 20, 6}, &s, 1, &o);
    /* 24x20 dots: (0,19) (6,14) (12,10) (17,5) (23,0) */
    expect_text(&c, ALL,
                "      4┤           ⠈\n"
                "       │        ⠐\n"
                "       │      ⠄\n"
                "       │   ⠄\n"
                "      0┤⡀\n"
                "       └0   step   4",
                "braille chart");
    canvas_clear(&c);
    o.lines = true;
    widgets_chart(&c, (ui_rect){0, 0, 20, 6}, &s, 1, &o);
    expect_text(&c, ALL,
                "      4┤         ⢀⠤⠊\n"
                "       │       ⢀⠔⠁\n"
                "       │     ⣀⠔⠁\n"
                "       │  ⢀⠔⠊\n"
                "      0┤⡠⠊⠁\n"
                "       └0   step   4",
                "braille lines");
    canvas_free(&c);
}

static void test_chart_several_series_and_marker(void)
{
    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 20, 4, false, NULL), HL_OK);
    const uint64_t x[2] = {0, 10};
    const float hi[2] = {2, 2}, lo[2] = {1, 1};
    chart_series s[2] = {{"hi", 2, x, hi, CANVAS_COLOR_LOSS_PLUS, '+'},
                         {"lo", 2, x, lo, CANVAS_COLOR_LOSS_MINUS, '-'}};
    chart_opts o = chart_opts_default();
    o.marker = true;
    o.marker_x = 5;
    o.x_label = NULL;
    widgets_chart(&c, (ui_rect){0, 0, 20, 4}, s, 2, &o);
    /* 3 rows: 2 at the top, 1 at the bottom, the marker between them at
     * column round(5/10 * 11) = 6 */
    expect_text(&c, ALL,
                "      2+++++++++++++\n"
                "       |      |\n"
                "      1+------------\n"
                "       +0         10",
                "two series and a marker");
    CU_ASSERT_EQUAL(canvas_attr(&c, 8, 0), CANVAS_COLOR_LOSS_PLUS);
    CU_ASSERT_EQUAL(canvas_attr(&c, 14, 1), CANVAS_COLOR_MARKER);
    canvas_free(&c);

    /* nothing finite yet */
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 20, 3, false, NULL), HL_OK);
    const float nan2[2] = {NAN, NAN};
    chart_series e = {"e", 2, x, nan2, 0, '*'};
    widgets_chart(&c, (ui_rect){0, 0, 20, 3}, &e, 1, NULL);
    CU_ASSERT(canvas_contains(&c, "no data yet"));
    canvas_free(&c);
}

/* ================================================================ bars */

static void test_bars_log_scale(void)
{
    log_scale sc = {0, 0, false};
    const float v[3] = {1e-4f, 1e-2f, 0}; /* zero is ignored */
    log_scale_add(&sc, v, 3);
    log_scale_finish(&sc);
    CU_ASSERT(sc.valid);
    CU_ASSERT_DOUBLE_EQUAL(sc.lo, -5, 1e-12); /* below 1e-4 so it still shows */
    CU_ASSERT_DOUBLE_EQUAL(sc.hi, -2, 1e-12);
    CU_ASSERT_DOUBLE_EQUAL(log_scale_fraction(&sc, 1e-3), 2.0 / 3.0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(log_scale_fraction(&sc, 0), 0, 0);
    CU_ASSERT_DOUBLE_EQUAL(log_scale_fraction(&sc, 1), 1, 0);

    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 6, 3, true, NULL), HL_OK);
    widgets_bar(&c, 0, 0, 6, log_scale_fraction(&sc, 1e-4), 0, -1, 0);
    widgets_bar(&c, 0, 1, 6, log_scale_fraction(&sc, pow(10, -3.25)), 0, -1, 0);
    widgets_bar(&c, 0, 2, 6, log_scale_fraction(&sc, 1e-2), 0,
                log_scale_fraction(&sc, pow(10, -3.5)), CANVAS_COLOR_FLOOR);
    /* 1/3 of 48 eighths = 2 cells; 7/12 = 28 eighths = 3.5 cells; full with a marker at 1/2 */
    expect_text(&c, ALL, "██\n███▌\n███│██", "utf8 bars");
    CU_ASSERT_EQUAL(canvas_attr(&c, 3, 2), CANVAS_COLOR_FLOOR);
    canvas_free(&c);

    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 6, 2, false, NULL), HL_OK);
    widgets_bar(&c, 0, 0, 6, log_scale_fraction(&sc, 1e-3), 0, -1, 0);
    widgets_bar(&c, 0, 1, 6, 0.5, 0, 0.0, 0);
    expect_text(&c, ALL, "####\n|##", "ascii bars");
    canvas_free(&c);
}

/* ================================================================ table */

static param_layer test_layers[5];
static const optim_layer_stats test_stats[5] = {
    /* mean h, max h, lambda, clip rate, update rms */
    {1e-3f, 2e-3f, 1e-4f, 0.00f, 1e-5f, NAN, NAN, -1}, /* layers.10 */
    {1e-2f, 5e-2f, 1e-4f, 0.25f, 2e-5f, NAN, NAN, -1}, /* layers.2 */
    {1e-5f, 1e-4f, 1e-4f, 0.90f, 3e-5f, NAN, NAN, -1}, /* embed_tokens */
    {1e-4f, 1e-3f, 1e-4f, 0.50f, 4e-5f, NAN, NAN, -1}, /* layers.1 */
    {3e-3f, 4e-3f, 1e-4f, 0.10f, 5e-5f, NAN, NAN, -1}, /* lm_head */
};

static void setup_layers(void)
{
    const char *names[5] = {"model.decoder.layers.10.fc1.weight",
                            "model.decoder.layers.2.self_attn.q_proj.weight",
                            "model.decoder.embed_tokens.weight",
                            "model.decoder.layers.1.fc1.weight", "lm_head.weight"};
    memset(test_layers, 0, sizeof test_layers);
    for (int i = 0; i < 5; i++)
        snprintf(test_layers[i].name, sizeof test_layers[i].name, "%s", names[i]);
}

static void expect_order(layers_sort s, bool rev, const int want[5])
{
    int got[5];
    layers_sort_order(got, test_layers, test_stats, 5, s, rev);
    for (int i = 0; i < 5; i++)
        if (got[i] != want[i]) {
            fprintf(stderr, "  sort %s%s: position %d is %d, want %d\n", layers_sort_name(s),
                    rev ? " reversed" : "", i, got[i], want[i]);
            CU_FAIL("sort order");
            return;
        }
}

static void test_table_sorting(void)
{
    setup_layers();
    expect_order(LAYERS_SORT_MODEL, false, (const int[5]){0, 1, 2, 3, 4});
    expect_order(LAYERS_SORT_NAME, false, (const int[5]){4, 2, 3, 1, 0}); /* 1 < 2 < 10 */
    expect_order(LAYERS_SORT_CURVATURE, false, (const int[5]){1, 4, 0, 3, 2});
    expect_order(LAYERS_SORT_CLIP, false, (const int[5]){2, 3, 1, 4, 0});
    expect_order(LAYERS_SORT_CLIP, true, (const int[5]){0, 4, 1, 3, 2});
}

static void test_table_render_scrolled(void)
{
    setup_layers();
    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 66, 4, true, NULL), HL_OK);
    int order[5];
    layers_sort_order(order, test_layers, test_stats, 5, LAYERS_SORT_CURVATURE, false);
    layers_view v = {LAYERS_SORT_CURVATURE, false, 2, 1}; /* cursor on row 2, first row 1 */
    int visible = widgets_layers(&c, (ui_rect){0, 0, 66, 4}, &v, order, test_layers, test_stats,
                                 5, 2, true, NULL, false);
    CU_ASSERT_EQUAL(visible, 3);
    /* scale 1e-6..1e-2 (embed's 1e-5 is the minimum), bars of 10 cells, the
     * floor 1e-4 at the middle: lm_head 3e-3 fills 0.869 (70 eighths), 1e-3
     * fills 3/4 (60 eighths), 1e-4 half; names lose "model.decoder.layers." */
    expect_text(&c, ALL,
                " layer                mean h  max h      λ clip upd rms 1e-6  1e-2\n"
                " lm_head.weight        0.003  0.004   1e-4  10%    5e-5 █████│██▊\n"
                " 10.fc1.weight         0.001  0.002   1e-4   0%    1e-5 █████│█▌\n"
                " 1.fc1.weight           1e-4  0.001   1e-4  50%    4e-5 █████│",
                "layers by curvature, scrolled");
    /* the cursor row (row 2 = layers.10.w) is reversed, the others are not */
    CU_ASSERT(canvas_attr(&c, 3, 2) & CANVAS_ATTR_REVERSE);
    CU_ASSERT(!(canvas_attr(&c, 3, 1) & CANVAS_ATTR_REVERSE));
    canvas_free(&c);

    /* narrow and ASCII: the bar, then max h drop out; by name "lm_head" sorts
     * before "model.*"; a long name keeps its head and tail around a '~' */
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 46, 3, false, NULL), HL_OK);
    layers_sort_order(order, test_layers, test_stats, 5, LAYERS_SORT_NAME, false);
    layers_view n = {LAYERS_SORT_NAME, false, 0, 0};
    widgets_layers(&c, (ui_rect){0, 0, 46, 3}, &n, order, test_layers, test_stats, 5, 2, false,
                   NULL, false);
    expect_text(&c, ALL,
                " layer              mean h lambda clip upd rms\n"
                " lm_head.weight      0.003   1e-4  10%    5e-5\n"
                ">embed~okens.weight   1e-5   1e-4  90%    3e-5",
                "narrow ascii table");
    canvas_free(&c);
}

static void test_list_scrolling(void)
{
    int sel = 0, scroll = 0;
    const int n = 10, vis = 4;
    CU_ASSERT(list_scroll_key(&sel, &scroll, n, vis, UI_KEY_DOWN));
    CU_ASSERT(sel == 1 && scroll == 0);
    for (int i = 0; i < 4; i++)
        list_scroll_key(&sel, &scroll, n, vis, UI_KEY_DOWN);
    CU_ASSERT(sel == 5 && scroll == 2); /* cursor stays on the last visible row */
    list_scroll_key(&sel, &scroll, n, vis, UI_KEY_END);
    CU_ASSERT(sel == 9 && scroll == 6);
    list_scroll_key(&sel, &scroll, n, vis, UI_KEY_DOWN);
    CU_ASSERT(sel == 9 && scroll == 6);
    list_scroll_key(&sel, &scroll, n, vis, UI_KEY_PGUP);
    CU_ASSERT(sel == 6 && scroll == 6);
    list_scroll_key(&sel, &scroll, n, vis, UI_KEY_UP);
    CU_ASSERT(sel == 5 && scroll == 5);
    list_scroll_key(&sel, &scroll, n, vis, UI_KEY_HOME);
    CU_ASSERT(sel == 0 && scroll == 0);
    list_scroll_key(&sel, &scroll, n, vis, UI_KEY_PGDN);
    CU_ASSERT(sel == 3 && scroll == 0);
    CU_ASSERT(!list_scroll_key(&sel, &scroll, n, vis, 'x'));
    /* the list shrinks under the cursor */
    sel = 9;
    scroll = 6;
    list_scroll_clamp(&sel, &scroll, 3, vis);
    CU_ASSERT(sel == 2 && scroll == 0);
}

/* ================================================================ heat, log */

static void test_heat_strip(void)
{
    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 8, 2, false, NULL), HL_OK);
    const float v[4] = {1e-3f, 1e-2f, 1e-1f, 1.0f};
    const uint64_t st[4] = {10, 20, 30, 40};
    log_scale sc = widgets_heat(&c, (ui_rect){0, 0, 8, 2}, v, st, 4);
    CU_ASSERT(sc.valid);
    /* scale 1e-4..1e0 -> levels 0..3; points at columns round(7 (s - 10) / 30)
     * = 0, 2, 5, 7; the columns between repeat the value on their left */
    expect_text(&c, ALL, "..:::++#\nstep 10", "heat strip");
    canvas_free(&c);
}

static void test_event_log(void)
{
    ui_log l;
    CU_ASSERT_EQUAL_FATAL(ui_log_init(&l, 3, NULL), HL_OK);
    for (int i = 1; i <= 5; i++)
        ui_log_add(&l, 0, "event %d\nsecond line", i);
    CU_ASSERT_EQUAL(l.n, 3);
    CU_ASSERT_STRING_EQUAL(ui_log_at(&l, 0)->text, "event 3 second line");
    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 20, 2, false, NULL), HL_OK);
    widgets_log(&c, (ui_rect){0, 0, 20, 2}, &l, 0);
    expect_text(&c, ALL, "event 4 second line\nevent 5 second line", "newest at the bottom");
    canvas_clear(&c);
    widgets_log(&c, (ui_rect){0, 0, 20, 2}, &l, 99); /* clamped to the oldest entry */
    expect_text(&c, ALL, "\nevent 3 second line", "scrolled up");
    canvas_free(&c);
    /* narrow: long lines wrap with an indent instead of being cut */
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 10, 4, false, NULL), HL_OK);
    widgets_log(&c, (ui_rect){0, 0, 10, 4}, &l, 0);
    expect_text(&c, ALL, "  e\nevent 5 se\n  cond lin\n  e", "wrapped");
    canvas_free(&c);
    ui_log_free(&l);
}

/* ================================================================ form */

static void type(form *f, const char *s)
{
    for (; *s; s++)
        form_key(f, (unsigned char)*s);
}

static void test_form_validation(void)
{
    hparams hp;
    hparams_init(&hp);
    form f;
    CU_ASSERT_EQUAL_FATAL(form_init(&f, &hp, 4, NULL), HL_OK);
    CU_ASSERT_EQUAL(form_find(&f, "optimizer"), -1); /* switched with its own chooser */
    CU_ASSERT_EQUAL(f.n, hparams_count() - 1);
    int lr = form_find(&f, "lr");
    CU_ASSERT_EQUAL_FATAL(lr, 0);
    /* HELENE's own knobs come before other methods' (which are dimmed) */
    CU_ASSERT(form_find(&f, "beta1") < form_find(&f, "momentum"));
    CU_ASSERT(f.fields[form_find(&f, "clip")].applies);
    CU_ASSERT(!f.fields[form_find(&f, "adam_beta1")].applies);
    CU_ASSERT(form_valid(&f));
    CU_ASSERT_EQUAL(form_changed(&f, NULL, 0), 0);

    /* an invalid value: the message names the key, Enter is refused */
    type(&f, "-1");
    CU_ASSERT_STRING_EQUAL(f.fields[lr].value, "-1"); /* the first key replaced the value */
    CU_ASSERT(f.fields[lr].error[0] != '\0');
    CU_ASSERT_PTR_NOT_NULL(strstr(f.fields[lr].error, "lr"));
    CU_ASSERT(!form_valid(&f));
    CU_ASSERT_EQUAL(form_key(&f, UI_KEY_ENTER), FORM_RESULT_NONE);
    CU_ASSERT_PTR_NOT_NULL(strstr(f.message, "cannot apply"));

    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 100, 40, false, NULL), HL_OK);
    form_draw(&c, (ui_rect){0, 0, 100, 40}, &f);
    CU_ASSERT(canvas_contains(&c, "Edit hyperparameters (helene)"));
    CU_ASSERT(canvas_contains(&c, f.fields[lr].error));
    CU_ASSERT(canvas_contains(&c, "(0, 1e+06]")); /* the allowed range */
    CU_ASSERT(canvas_contains(&c, "!lr"));
    CU_ASSERT(canvas_contains(&c, "cannot apply: lr is invalid"));

    /* then a valid one */
    form_key(&f, UI_KEY_CTRL_U);
    type(&f, "0.001");
    CU_ASSERT_STRING_EQUAL(f.fields[lr].error, "");
    CU_ASSERT(form_valid(&f));
    canvas_clear(&c);
    form_draw(&c, (ui_rect){0, 0, 100, 40}, &f);
    CU_ASSERT(canvas_contains(&c, "*lr"));
    CU_ASSERT(canvas_contains(&c, "Enter apply 1 change"));
    CU_ASSERT_EQUAL(form_key(&f, UI_KEY_ENTER), FORM_RESULT_CONFIRM);
    int idx[4];
    CU_ASSERT_EQUAL_FATAL(form_changed(&f, idx, 4), 1);
    CU_ASSERT_EQUAL(idx[0], lr);
    CU_ASSERT_STRING_EQUAL(f.fields[idx[0]].value, "0.001");
    /* nothing was applied to the caller's values */
    CU_ASSERT_DOUBLE_EQUAL(hp.lr, hparams_default_lr(OPTIM_METHOD_HELENE), 1e-12);
    canvas_free(&c);
    form_free(&f);
    hparams_free(&hp);
}

static void test_form_choices_and_cancel(void)
{
    hparams hp;
    hparams_init(&hp);
    form f;
    CU_ASSERT_EQUAL_FATAL(form_init(&f, &hp, 4, NULL), HL_OK);
    int clip = form_find(&f, "clip");
    CU_ASSERT_FATAL(clip > 0);
    while (f.cur != clip)
        form_key(&f, UI_KEY_DOWN);
    CU_ASSERT_STRING_EQUAL(f.fields[clip].value, "on");
    form_key(&f, UI_KEY_RIGHT);
    CU_ASSERT_STRING_EQUAL(f.fields[clip].value, "off");
    int mf = form_find(&f, "momentum_form");
    f.cur = mf;
    form_key(&f, UI_KEY_RIGHT);
    CU_ASSERT_STRING_EQUAL(f.fields[mf].value, "ema");
    form_key(&f, UI_KEY_RIGHT);
    CU_ASSERT_STRING_EQUAL(f.fields[mf].value, "heavy_ball");
    /* an integer out of range, then backspace to a valid one */
    int k = form_find(&f, "hess_interval");
    f.cur = k;
    f.fresh = true;
    type(&f, "0");
    CU_ASSERT(f.fields[k].error[0] != '\0');
    form_key(&f, UI_KEY_BACKSPACE);
    type(&f, "20");
    CU_ASSERT_STRING_EQUAL(f.fields[k].value, "20");
    CU_ASSERT(form_valid(&f));
    CU_ASSERT_EQUAL(form_changed(&f, NULL, 0), 2); /* clip and hess_interval */
    CU_ASSERT_EQUAL(form_key(&f, UI_KEY_ESC), FORM_RESULT_CANCEL);
    form_free(&f);
    hparams_free(&hp);
}

/* ================================================================ panels */

/* A telemetry snapshot filled by hand: what the engine would publish after
 * 200 steps of HELENE on 3 layers. */
static engine_telemetry *fake_telemetry(void)
{
    engine_telemetry *t = calloc(1, sizeof *t);
    static param_layer layers[3];
    static optim_layer_stats st[3];
    static float lh[3 * ENGINE_HIST_CAP];
    const char *names[3] = {"embed.weight", "layers.0.fc1.weight", "head.weight"};
    for (int i = 0; i < 3; i++) {
        snprintf(layers[i].name, sizeof layers[i].name, "%s", names[i]);
        st[i] = (optim_layer_stats){1e-4f * (float)(i + 1), 1e-3f, 2e-4f, 0.3f * (float)i,
                                    1e-5f, NAN, NAN, -1};
    }
    hparams_init(&t->hp);
    t->hp.total_steps = 1000;
    t->state = ENGINE_STATE_PAUSED;
    snprintf(t->reason, sizeof t->reason, "paused by the user");
    snprintf(t->model_name, sizeof t->model_name, "tests/fixtures/models/opt-tiny-f32/");
    t->dev_is_accuracy = true;
    snprintf(t->task_name, sizeof t->task_name, "sst2");
    t->method = OPTIM_METHOD_HELENE;
    t->step = 200;
    t->total_steps = 1000;
    t->loss = 0.5;
    t->steps_per_s = 123.4;
    t->eta_s = 65;
    t->rss_mib = 12;
    t->dev_accuracy = 0.75;
    t->best_dev_accuracy = 0.8;
    t->best_dev_step = 100;
    t->n_layers = 3;
    t->layers = layers;
    t->layer = st;
    t->layer_hist = lh;
    for (int s = 0; s < ENGINE_SERIES_COUNT; s++) {
        engine_hist *h = &t->hist[s];
        h->stride = 1;
        int n = s == ENGINE_SERIES_DEV ? 2 : 200;
        for (int i = 0; i < n; i++) {
            h->step[i] = s == ENGINE_SERIES_DEV ? (uint64_t)(i + 1) * 100 : (uint64_t)i + 1;
            h->value[i] = s == ENGINE_SERIES_DEV ? 0.7f + 0.05f * (float)i
                                                 : 1.0f / (1.0f + 0.01f * (float)i);
        }
        h->n = n;
    }
    for (int l = 0; l < 3; l++)
        for (int i = 0; i < 200; i++)
            lh[l * ENGINE_HIST_CAP + i] = 1e-4f * (float)(l + 1) * (1.0f + (float)i / 50.0f);
    for (int i = 0; i < 20; i++)
        t->refresh_steps[i] = (uint64_t)(1 + 10 * i);
    t->n_refresh = 20;
    return t;
}

/* layer-newton: the layer table's columns, and the probe-allocation chart
 * (group 0 probed for the first 100 steps, group 2 after) with rows per
 * group, the current group marked, the shares as shades. */
static void test_layer_newton_panels(void)
{
    engine_telemetry *t = fake_telemetry();
    t->method = OPTIM_METHOD_LAYER_NEWTON;
    static optim_layer_stats st[3];
    for (int i = 0; i < 3; i++)
        st[i] = (optim_layer_stats){.state_mean = 0.5f * (float)(i + 1),
                                    .state_max = 0.5f * (float)(i + 1), .lambda = 0.01f,
                                    .clip_rate = 0, .update_rms = 1e-4f,
                                    .score = 1e-3f * (float)(i + 1),
                                    .probe_share = i == 1 ? 0.0f : 0.5f, .group = i};
    t->layer = st;
    engine_hist *g = &t->hist[ENGINE_SERIES_GROUP];
    for (int i = 0; i < 200; i++)
        g->value[i] = i < 100 ? 0.0f : 2.0f;
    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 40, 6, false, NULL), HL_OK);
    panels_heat(&c, (ui_rect){0, 0, 40, 6}, t, 1);
    expect_text(&c, ALL,
                "+ Probes per group over time ----------+\n"
                "| embed    ##############              |\n"
                "| 0.fc1                                |\n"
                "|>head                   ##############|\n"
                "|          step 1                   200|\n"
                "+--------------------------------------+",
                "probe allocation, ascii");
    canvas_free(&c);
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 66, 5, true, NULL), HL_OK);
    int order[3] = {0, 1, 2};
    layers_view v = {LAYERS_SORT_MODEL, false, 0, 0};
    widgets_layers(&c, (ui_rect){0, 0, 66, 5}, &v, order, t->layers, st, 3, -1, false, NULL,
                   true);
    CU_ASSERT(canvas_contains(&c, " score "));
    CU_ASSERT(canvas_contains(&c, "h_min probes"));
    CU_ASSERT(canvas_contains(&c, "  50%"));
    CU_ASSERT(!canvas_contains(&c, "clip"));
    canvas_free(&c);
    hparams_free(&t->hp);
    free(t);
}

/* The race view's panels: a header line per arm with its glyph, the legend
 * of the overlaid charts, and the finish line as each arm crosses it. */
static void test_race_panels(void)
{
    engine_telemetry *t[2] = {fake_telemetry(), fake_telemetry()};
    t[1]->method = OPTIM_METHOD_MEZO;
    t[1]->hp.lr = 3e-5;
    t[1]->best_dev_accuracy = 0.9;
    t[1]->best_dev_step = 200;
    for (int i = 0; i < t[1]->hist[ENGINE_SERIES_LOSS].n; i++) /* apart from arm 1's */
        t[1]->hist[ENGINE_SERIES_LOSS].value[i] *= 0.5f;
    race_arm_info a[2] = {
        {t[0], "helene", 63, true, 100, 200, 12.5},
        {t[1], "mezo:lr=3e-5", 39, false, 0, 0, 0},
    };
    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 100, 30, false, NULL), HL_OK);
    panels_race_header(&c, (ui_rect){0, 0, 100, 3}, a, 2, 1, "RUNNING");
    CU_ASSERT(canvas_contains(&c, "helene race"));
    CU_ASSERT(canvas_contains(&c, "2 arms, lock-step  step 200/1000"));
    CU_ASSERT(canvas_contains(&c, " o 1 helene"));
    CU_ASSERT(canvas_contains(&c, ">x 2 mezo:lr=3e-5"));
    CU_ASSERT(canvas_contains(&c, "best dev 90.0% @200"));
    CU_ASSERT(canvas_contains(&c, "39 MiB"));
    panels_race_loss(&c, (ui_rect){0, 3, 50, 12}, a, 2, false, true);
    CU_ASSERT(canvas_contains(&c, "o1 helene  x2 mezo"));
    panels_race_dev(&c, (ui_rect){50, 3, 50, 12}, a, 2, false, 0.8, true);
    CU_ASSERT(canvas_contains(&c, "Dev accuracy  target 80.0%"));
    panels_race_finish(&c, (ui_rect){0, 15, 50, 5}, a, 2, 0.8, false);
    CU_ASSERT(canvas_contains(&c, "Finish line: dev 80.0% (slowest arm's best)"));
    CU_ASSERT(canvas_contains(&c, "o 1 helene           100       200     12.5"));
    CU_ASSERT(canvas_contains(&c, "x 2 mezo             ..."));
    /* every arm's own glyph is in the charts: ASCII canvas, so the marks */
    char *txt = canvas_to_text(&c, (ui_rect){1, 4, 48, 10});
    CU_ASSERT(txt && strchr(txt, 'o') && strchr(txt, 'x'));
    free(txt);
    canvas_free(&c);
    for (int i = 0; i < 2; i++) {
        hparams_free(&t[i]->hp);
        free(t[i]);
    }
}

static void render_screen(canvas *c, const engine_telemetry *t, ui_log *log)
{
    ui_layout l;
    layout_compute(&l, c->w, c->h);
    canvas_clear(c);
    if (l.too_small) {
        panels_too_small(c);
        return;
    }
    layers_view v = {LAYERS_SORT_MODEL, false, 0, 0};
    panels_header(c, l.panel[LAYOUT_PANEL_HEADER], t);
    panels_loss(c, l.panel[LAYOUT_PANEL_LOSS], t, false);
    panels_dev(c, l.panel[LAYOUT_PANEL_DEV], t, false);
    panels_grad(c, l.panel[LAYOUT_PANEL_GRAD], t);
    panels_layers(c, l.panel[LAYOUT_PANEL_LAYERS], t, &v, 1, true);
    panels_heat(c, l.panel[LAYOUT_PANEL_HEAT], t, 1);
    panels_schedule(c, l.panel[LAYOUT_PANEL_SCHEDULE], t);
    panels_events(c, l.panel[LAYOUT_PANEL_EVENTS], log, 0, false);
    panels_status(c, l.panel[LAYOUT_PANEL_STATUS], "", 0, "pending: lr=0.001", 10);
}

static bool all_ascii(const canvas *c)
{
    for (int y = 0; y < c->h; y++)
        for (int x = 0; x < c->w; x++)
            for (const char *g = canvas_glyph(c, x, y); *g; g++)
                if ((unsigned char)*g >= 0x80)
                    return false;
    return true;
}

static void test_panels_full_screen(void)
{
    engine_telemetry *t = fake_telemetry();
    ui_log log;
    CU_ASSERT_EQUAL_FATAL(ui_log_init(&log, 16, NULL), HL_OK);
    ui_log_add(&log, 0, "step 12  lr = 0.001 from step 13");
    const int sizes[][2] = {{80, 24}, {100, 30}, {300, 100}, {60, 20}};
    for (int u = 0; u < 2; u++)
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
            canvas c;
            CU_ASSERT_EQUAL_FATAL(canvas_init(&c, sizes[i][0], sizes[i][1], u == 1, NULL), HL_OK);
            render_screen(&c, t, &log);
            if (getenv("TEST_UI_DUMP")) { /* eyeball the screens: TEST_UI_DUMP=1 */
                char *txt = canvas_to_text(&c, ALL);
                fprintf(stderr, "\n%dx%d %s:\n%s\n", c.w, c.h, u ? "utf8" : "ascii", txt);
                free(txt);
            }
            if (sizes[i][0] < LAYOUT_MIN_COLS) {
                CU_ASSERT(canvas_contains(&c, "Terminal too small: 60x20"));
                CU_ASSERT(!canvas_contains(&c, "Loss"));
            } else {
                CU_ASSERT(canvas_contains(&c, "helene"));
                CU_ASSERT(canvas_contains(&c, "step 200/1000"));
                CU_ASSERT(canvas_contains(&c, "PAUSED (paused by the user)"));
                CU_ASSERT(canvas_contains(&c, "Loss 0.5"));
                CU_ASSERT(canvas_contains(&c, "model opt-tiny-f32"));
                CU_ASSERT(canvas_contains(&c, "Dev accuracy 75.0%  best 80.0% @100"));
                CU_ASSERT(canvas_contains(&c, "Layers 3"));
                CU_ASSERT(canvas_contains(&c, "Curvature over time: layers.0.fc1.weight"));
                CU_ASSERT(canvas_contains(&c, "T=100"));
                CU_ASSERT(canvas_contains(&c, "lr = 0.001 from step"));
                CU_ASSERT(canvas_contains(&c, "pending: lr=0.001"));
                CU_ASSERT(canvas_contains(&c, "clip:on"));
            }
            if (u == 0)
                CU_ASSERT(all_ascii(&c));
            canvas_free(&c);
        }
    /* the built-in random model is labelled as untrained */
    canvas h;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&h, 100, 2, false, NULL), HL_OK);
    snprintf(t->model_name, sizeof t->model_name, "random:small");
    t->dev_is_accuracy = true;
    panels_header(&h, (ui_rect){0, 0, 100, 2}, t);
    CU_ASSERT(canvas_contains(&h, "model random:small (untrained)  task sst2"));
    canvas_free(&h);
    /* the schedule follows the hyperparameters: another T, another curve */
    canvas a, b;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&a, 40, 6, true, NULL), HL_OK);
    CU_ASSERT_EQUAL_FATAL(canvas_init(&b, 40, 6, true, NULL), HL_OK);
    panels_schedule(&a, (ui_rect){0, 0, 40, 6}, t);
    t->hp.anneal_horizon = 500;
    panels_schedule(&b, (ui_rect){0, 0, 40, 6}, t);
    char *ta = canvas_to_text(&a, ALL), *tb = canvas_to_text(&b, ALL);
    CU_ASSERT(strcmp(ta, tb) != 0);
    CU_ASSERT_PTR_NOT_NULL(strstr(tb, "T=500"));
    CU_ASSERT_PTR_NOT_NULL(strstr(tb, "refresh k=10"));
    free(ta);
    free(tb);
    canvas_free(&a);
    canvas_free(&b);
    ui_log_free(&log);
    hparams_free(&t->hp);
    free(t);
}

static void test_help_lists_every_key(void)
{
    canvas c;
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 100, 30, false, NULL), HL_OK);
    panels_help(&c, (ui_rect){0, 0, 100, 30}, 0);
    const char *keys[] = {"Space", "s  ", "e  ", "a / p / k", "o  ", "v  ", "c  ", "l  ",
                          "+ / -", "< / >", "g  ", "PgUp", "Home", "? or Right", "q  "};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (!canvas_contains(&c, keys[i])) {
            fprintf(stderr, "  help lacks '%s'\n", keys[i]);
            CU_FAIL("help lists every key");
        }
    /* the second page explains every panel and every column of the layer table,
     * and fits the smallest screen (80x24) */
    canvas_free(&c);
    CU_ASSERT_EQUAL_FATAL(canvas_init(&c, 80, 24, false, NULL), HL_OK);
    panels_help(&c, (ui_rect){0, 0, 80, 24}, 1);
    const char *what[] = {"Loss", "Dev", "Proj. gradient", "mean h, max h", "lambda", "clip",
                          "upd rms", "true a", "bar", "Schedule", "Curvature over time",
                          "Events", "? or Left"};
    for (size_t i = 0; i < sizeof what / sizeof what[0]; i++)
        if (!canvas_contains(&c, what[i])) {
            fprintf(stderr, "  help page 2 lacks '%s'\n", what[i]);
            CU_FAIL("help explains every panel");
        }
    canvas_free(&c);
}

static void register_suites(void)
{
    CU_pSuite s = CU_add_suite("ui", NULL, NULL);
    TEST_ADD(s, test_layout_every_size);
    TEST_ADD(s, test_layout_too_small);
    TEST_ADD(s, test_layout_center);
    TEST_ADD(s, test_canvas_text_and_box);
    TEST_ADD(s, test_canvas_braille_bits);
    TEST_ADD(s, test_fmt_num);
    TEST_ADD(s, test_ema);
    TEST_ADD(s, test_chart_ascii);
    TEST_ADD(s, test_chart_braille);
    TEST_ADD(s, test_chart_several_series_and_marker);
    TEST_ADD(s, test_bars_log_scale);
    TEST_ADD(s, test_table_sorting);
    TEST_ADD(s, test_table_render_scrolled);
    TEST_ADD(s, test_list_scrolling);
    TEST_ADD(s, test_heat_strip);
    TEST_ADD(s, test_event_log);
    TEST_ADD(s, test_form_validation);
    TEST_ADD(s, test_form_choices_and_cancel);
    TEST_ADD(s, test_panels_full_screen);
    TEST_ADD(s, test_layer_newton_panels);
    TEST_ADD(s, test_race_panels);
    TEST_ADD(s, test_help_lists_every_key);
}

TEST_MAIN(register_suites)

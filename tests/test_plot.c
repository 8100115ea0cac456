/* test_plot.c - figures of runs (ui/plot.h): journals read into runs (one per
 * run event, resumes continued), PNG/SVG/PDF written by extension, and the
 * curves drawn where the data says (pixels of a rendered PNG). */
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "plot.h"
#include "testutil.h"

static char dir[] = "/tmp/helene-test-plot-XXXXXX";

static int suite_init(void)
{
    return mkdtemp(dir) ? 0 : 1;
}

static int suite_clean(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : 1;
}

static const char *path_in(const char *name)
{
    static char buf[4][256];
    static int at;
    char *p = buf[at++ & 3];
    snprintf(p, sizeof buf[0], "%s/%s", dir, name);
    return p;
}

static void write_text(const char *p, const char *text)
{
    FILE *f = fopen(p, "wb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    fputs(text, f);
    fclose(f);
}

/* A journal: run A (helene, 4 steps, resumed after step 2), then run B
 * (mezo) appended with --log-append; a torn last line. */
static const char journal[] =
    "{\"event\":\"run\",\"step\":0,\"resumed\":false,\"version\":\"0.1.0\","
    "\"config\":{\"optimizer\":\"helene\",\"lr\":0.003}}\n"
    "{\"event\":\"eval\",\"step\":0,\"dev_accuracy\":0.6,\"dev_loss\":0.6}\n"
    "{\"step\":1,\"seed\":1,\"loss\":0.8,\"alpha\":0.99,\"clip_rate\":0.5,\"method\":\"helene\"}\n"
    "{\"step\":2,\"seed\":2,\"loss\":0.6,\"alpha\":0.98,\"clip_rate\":0.6,\"method\":\"helene\"}\n"
    "{\"event\":\"run\",\"step\":2,\"resumed\":true,\"version\":\"0.1.0\","
    "\"config\":{\"optimizer\":\"helene\",\"lr\":0.003}}\n"
    "{\"step\":3,\"seed\":3,\"loss\":0.4,\"alpha\":0.97,\"clip_rate\":0.7,\"method\":\"helene\"}\n"
    "{\"step\":4,\"seed\":4,\"loss\":0.2,\"alpha\":0.96,\"clip_rate\":0.8,\"method\":\"helene\"}\n"
    "{\"event\":\"eval\",\"step\":4,\"dev_accuracy\":0.95,\"dev_loss\":0.2}\n"
    "{\"event\":\"run\",\"step\":0,\"resumed\":false,\"version\":\"0.1.0\","
    "\"config\":{\"optimizer\":\"mezo\",\"lr\":3e-05}}\n"
    "{\"step\":1,\"seed\":1,\"loss\":0.9,\"method\":\"mezo\"}\n"
    "{\"step\":2,\"seed\":2,\"loss\":0.7,\"method\":\"mezo\"}\n"
    "{\"step\":3,\"se";

static void test_journal_runs(void)
{
    const char *p = path_in("j.jsonl");
    write_text(p, journal);
    plot_runs r;
    memset(&r, 0, sizeof r);
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(plot_journal_read(&r, p, "j", &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(r.n, 2); /* the resume continues run A */
    CU_ASSERT_STRING_EQUAL(r.run[0].label, "j: helene lr 0.003");
    CU_ASSERT_STRING_EQUAL(r.run[1].label, "j: mezo lr 3e-05");
    CU_ASSERT_EQUAL(r.run[0].s[PLOT_LOSS].n, 4);
    CU_ASSERT_DOUBLE_EQUAL(r.run[0].s[PLOT_LOSS].y[3], 0.2, 1e-12);
    CU_ASSERT_EQUAL(r.run[0].s[PLOT_DEV].n, 2);
    CU_ASSERT_DOUBLE_EQUAL(r.run[0].s[PLOT_DEV].y[1], 95.0, 1e-9);
    CU_ASSERT_DOUBLE_EQUAL(r.run[0].s[PLOT_CLIP].y[0], 50.0, 1e-9);
    CU_ASSERT_EQUAL(r.run[1].s[PLOT_LOSS].n, 2);
    CU_ASSERT_EQUAL(r.run[1].s[PLOT_ALPHA].n, 0); /* MeZO has no alpha_t */
    /* a file with no step line is refused, and the runs read before stay */
    const char *q = path_in("notes.txt");
    write_text(q, "hello\n{\"event\":\"pause\",\"step\":3}\n");
    CU_ASSERT_EQUAL(plot_journal_read(&r, q, "notes", &err), HL_ERR_FORMAT);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, "notes.txt"));
    CU_ASSERT_EQUAL(r.n, 2);
    CU_ASSERT_EQUAL(plot_journal_read(&r, path_in("missing.jsonl"), "m", &err), HL_ERR_IO);
    plot_runs_free(&r);
}

/* Two runs: a falling loss (run 0) and a flat one (run 1), 200 steps. */
static void make_runs(plot_runs *r)
{
    memset(r, 0, sizeof *r);
    r->n = r->cap = 2;
    r->run = calloc(2, sizeof *r->run);
    for (int i = 0; i < 2; i++) {
        plot_run *run = &r->run[i];
        snprintf(run->label, sizeof run->label, "run %d", i);
        run->dev_is_accuracy = true;
        for (int p = 0; p < PLOT_PANELS; p++) {
            plot_series *s = &run->s[p];
            s->n = s->cap = 200;
            s->x = malloc(200 * sizeof(double));
            s->y = malloc(200 * sizeof(double));
            for (int k = 0; k < 200; k++) {
                s->x[k] = k + 1;
                s->y[k] = i == 0 ? 1.0 - 0.9 * k / 199.0 : 0.5; /* loss-like */
                if (p == PLOT_DEV || p == PLOT_CLIP)
                    s->y[k] *= 100;
            }
        }
    }
}

static bool near_rgb(const uint8_t *px, const uint8_t rgb[3])
{
    /* ARGB32 little-endian: B, G, R, A; anti-aliasing blends, so a margin */
    return abs(px[2] - rgb[0]) < 40 && abs(px[1] - rgb[1]) < 40 && abs(px[0] - rgb[2]) < 40;
}

/* Rows of column x inside the loss panel where run i's colour is. */
static double mean_row_of(cairo_surface_t *img, double x, double py, double ph, int run)
{
    uint8_t rgb[3];
    plot_run_rgb(run, rgb);
    const uint8_t *data = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    double sum = 0;
    int n = 0;
    for (int y = (int)py + 2; y < (int)(py + ph) - 2; y++)
        for (int dx = -2; dx <= 2; dx++)
            if (near_rgb(data + (size_t)y * stride + 4 * ((int)x + dx), rgb)) {
                sum += y;
                n++;
            }
    return n ? sum / n : -1;
}

static void test_png_curves_where_the_data_says(void)
{
    plot_runs r;
    make_runs(&r);
    hl_err err;
    const char *p = path_in("fig.png");
    CU_ASSERT_EQUAL_FATAL(plot_write(p, &r, "test", 1200, 800, &err), HL_OK);
    FILE *f = fopen(p, "rb");
    unsigned char sig[8];
    CU_ASSERT_EQUAL_FATAL(fread(sig, 1, 8, f), 8);
    fclose(f);
    CU_ASSERT_EQUAL(memcmp(sig, "\x89PNG\r\n\x1a\n", 8), 0);
    cairo_surface_t *img = cairo_image_surface_create_from_png(p);
    CU_ASSERT_EQUAL_FATAL(cairo_surface_status(img), CAIRO_STATUS_SUCCESS);
    CU_ASSERT_EQUAL(cairo_image_surface_get_width(img), 1200);
    CU_ASSERT_EQUAL(cairo_image_surface_get_height(img), 800);
    cairo_surface_flush(img);
    /* (one legend row holds two runs, so this figure's panels are where
     * plot_panel_rect puts a one-run figure's) */
    double px, py, pw, ph;
    plot_panel_rect(1200, 800, PLOT_DEV, &px, &py, &pw, &ph);
    /* dev panel: run 0 falls from 100% to 10%: high at the left, low at the
     * right; run 1 is flat in the middle */
    double left = mean_row_of(img, px + 8, py, ph, 0), right = mean_row_of(img, px + pw - 8, py, ph, 0);
    if (!(left > 0 && right > 0 && left < right - ph / 3))
        fprintf(stderr, "\n  run 0 rows: left %.1f right %.1f (panel y %.0f..%.0f)", left, right,
                py, py + ph);
    CU_ASSERT(left > 0 && right > 0 && left < right - ph / 3);
    double flat_l = mean_row_of(img, px + 8, py, ph, 1), flat_r = mean_row_of(img, px + pw - 8, py, ph, 1);
    CU_ASSERT(flat_l > 0 && fabs(flat_l - flat_r) < 6);
    /* and nothing of run 0's colour left of the plot (the y labels' gutter) */
    CU_ASSERT(mean_row_of(img, px - 40, py, ph, 0) < 0);
    cairo_surface_destroy(img);
    plot_runs_free(&r);
}

static void test_svg_pdf_and_errors(void)
{
    plot_runs r;
    make_runs(&r);
    hl_err err;
    const char *s = path_in("fig.svg"), *d = path_in("fig.PDF");
    CU_ASSERT_EQUAL_FATAL(plot_write(s, &r, NULL, 800, 600, &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(plot_write(d, &r, NULL, 800, 600, &err), HL_OK);
    char head[256] = "";
    FILE *f = fopen(s, "rb");
    size_t n = fread(head, 1, sizeof head - 1, f);
    head[n] = '\0';
    fclose(f);
    CU_ASSERT_PTR_NOT_NULL(strstr(head, "<svg"));
    f = fopen(d, "rb");
    n = fread(head, 1, 5, f);
    fclose(f);
    CU_ASSERT(n == 5 && !memcmp(head, "%PDF-", 5));
    CU_ASSERT_EQUAL(plot_write(path_in("fig.jpg"), &r, NULL, 800, 600, &err), HL_ERR_INVALID);
    CU_ASSERT_PTR_NOT_NULL(strstr(err.msg, ".png, .svg or .pdf"));
    CU_ASSERT_EQUAL(plot_write(path_in("fig.png"), &r, NULL, 10, 10, &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(plot_write("/nonexistent/dir/fig.png", &r, NULL, 800, 600, &err),
                    HL_ERR_IO);
    CU_ASSERT_EQUAL(access(path_in("fig.jpg"), F_OK), -1); /* nothing half-written */
    plot_runs_free(&r);
}

/* A race's journal: every line tagged "arm", arms interleaved. */
static void test_race_journal(void)
{
    const char *p = path_in("race.jsonl");
    write_text(p,
               "{\"arm\":0,\"event\":\"run\",\"step\":0,\"config\":{\"optimizer\":\"helene\",\"lr\":10}}\n"
               "{\"arm\":1,\"event\":\"run\",\"step\":0,\"config\":{\"optimizer\":\"mezo\",\"lr\":3e-05}}\n"
               "{\"arm\":0,\"step\":1,\"loss\":5,\"alpha\":0.99,\"clip_rate\":0.5}\n"
               "{\"arm\":1,\"step\":1,\"loss\":6}\n"
               "{\"arm\":0,\"step\":2,\"loss\":4,\"alpha\":0.98,\"clip_rate\":0.4}\n"
               "{\"arm\":0,\"event\":\"eval\",\"step\":2,\"exact_loss\":3.5}\n"
               "{\"arm\":1,\"step\":2,\"loss\":5.5}\n");
    plot_runs r;
    memset(&r, 0, sizeof r);
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(plot_journal_read(&r, p, "race", &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(r.n, 2);
    CU_ASSERT_STRING_EQUAL(r.run[0].label, "arm 0: helene lr 10");
    CU_ASSERT_STRING_EQUAL(r.run[1].label, "arm 1: mezo lr 3e-05");
    CU_ASSERT_EQUAL(r.run[0].s[PLOT_LOSS].n, 2);
    CU_ASSERT_EQUAL(r.run[1].s[PLOT_LOSS].n, 2);
    CU_ASSERT_DOUBLE_EQUAL(r.run[1].s[PLOT_LOSS].y[1], 5.5, 1e-12);
    CU_ASSERT_EQUAL(r.run[0].s[PLOT_DEV].n, 1);
    CU_ASSERT_FALSE(r.run[0].dev_is_accuracy);
    CU_ASSERT_EQUAL(r.run[1].s[PLOT_DEV].n, 0);
    plot_runs_free(&r);
}

/* Per-layer curvature: read from "layer_names" and "layers" lines (a
 * frozen layer's null skipped), drawn as a fifth panel across the bottom
 * where the data says: the first layer (blue) rising, the last (red) flat. */
static void test_layers_panel(void)
{
    const char *p = path_in("layers.jsonl");
    write_text(p,
               "{\"event\":\"run\",\"step\":0,\"resumed\":false,\"config\":{\"optimizer\":"
               "\"layer-newton\",\"lr\":0.5}}\n"
               "{\"event\":\"layer_names\",\"step\":0,\"names\":[\"a.weight\",\"b.weight\","
               "\"c.weight\"]}\n"
               "{\"step\":1,\"seed\":1,\"loss\":0.9}\n"
               "{\"event\":\"layers\",\"step\":10,\"h\":[0.001,null,0.01]}\n"
               "{\"event\":\"layers\",\"step\":20,\"h\":[0.01,null,0.01]}\n"
               "{\"event\":\"layers\",\"step\":30,\"h\":[0.1,null,0.01]}\n"
               "{\"event\":\"layers\",\"step\":40,\"h\":[0.1,2]}\n" /* wrong length: skipped */
               "{\"step\":2,\"seed\":2,\"loss\":0.8}\n");
    plot_runs r;
    memset(&r, 0, sizeof r);
    hl_err err;
    CU_ASSERT_EQUAL_FATAL(plot_journal_read(&r, p, "l", &err), HL_OK);
    CU_ASSERT_EQUAL_FATAL(r.run[0].n_layers, 3);
    CU_ASSERT_STRING_EQUAL(r.run[0].layer_name[2], "c.weight");
    CU_ASSERT_EQUAL(r.run[0].layer_h[0].n, 3);
    CU_ASSERT_EQUAL(r.run[0].layer_h[1].n, 0);
    CU_ASSERT_DOUBLE_EQUAL(r.run[0].layer_h[0].y[2], 0.1, 1e-12);
    CU_ASSERT_PTR_EQUAL(plot_layers_run(&r), &r.run[0]);
    const char *png = path_in("layers.png");
    CU_ASSERT_EQUAL_FATAL(plot_write(png, &r, "layers", 1200, 1100, &err), HL_OK);
    cairo_surface_t *img = cairo_image_surface_create_from_png(png);
    CU_ASSERT_EQUAL_FATAL(cairo_surface_status(img), CAIRO_STATUS_SUCCESS);
    cairo_surface_flush(img);
    double px, py, pw, ph;
    plot_panel_rect_ex(1200, 1100, 1, true, PLOT_LAYERS, &px, &py, &pw, &ph);
    const uint8_t *data = cairo_image_surface_get_data(img);
    int stride = cairo_image_surface_get_stride(img);
    /* mean row of the first layer's blue and the last layer's red, in a column */
    double rows[2][2];
    for (int c = 0; c < 2; c++)
        for (int side = 0; side < 2; side++) {
            int x = (int)(side ? px + pw - 6 : px + 6);
            double sum = 0;
            int n = 0;
            for (int y = (int)py; y < (int)(py + ph); y++) {
                const uint8_t *q = data + (size_t)y * stride + 4 * x; /* B G R A */
                bool blue = q[0] > 150 && q[2] < 110, red = q[2] > 150 && q[0] < 110;
                if (c == 0 ? blue : red) {
                    sum += y;
                    n++;
                }
            }
            rows[c][side] = n ? sum / n : -1;
        }
    /* blue rises by two decades: lower (larger row) at the left */
    CU_ASSERT(rows[0][0] > 0 && rows[0][1] > 0 && rows[0][0] > rows[0][1] + ph / 4);
    /* red is flat */
    CU_ASSERT(rows[1][0] > 0 && fabs(rows[1][0] - rows[1][1]) < 6);
    cairo_surface_destroy(img);
    plot_runs_free(&r);
    /* the four-panel layout is unchanged without per-layer data */
    double a[4], b[4];
    plot_panel_rect(1200, 800, PLOT_DEV, &a[0], &a[1], &a[2], &a[3]);
    plot_panel_rect_ex(1200, 800, 1, false, PLOT_DEV, &b[0], &b[1], &b[2], &b[3]);
    CU_ASSERT(memcmp(a, b, sizeof a) == 0);
}

static void register_plot(void)
{
    CU_pSuite s = CU_add_suite("plot", suite_init, suite_clean);
    TEST_ADD(s, test_journal_runs);
    TEST_ADD(s, test_race_journal);
    TEST_ADD(s, test_png_curves_where_the_data_says);
    TEST_ADD(s, test_svg_pdf_and_errors);
    TEST_ADD(s, test_layers_panel);
}

TEST_MAIN(register_plot)

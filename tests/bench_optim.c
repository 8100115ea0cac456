/* bench_optim.c - speed of the optimizer passes and convergence of every
 * method on the heterogeneous quadratic.  Prints numbers and the machine;
 * asserts nothing.
 *
 * Part 1 (passes): over N floats (default 125M), the plain read-modify-write
 * a += c b (the memory's practical limit), the Gaussian generator alone, one
 * perturbation pass, and each method's fused restore + update pass, timed
 * through optim_step on an objective that costs nothing (ms_perturb / 2 and
 * ms_update of the step stats).  Median of 5; the plain pass is timed again
 * right before each perturbation, so load from other processes hits both
 * sides of the ratio alike.  State arenas are touched before timing (zero
 * arenas are fresh calloc pages: the first pass would time page faults).
 * Without --threads, part 1 runs with 1 thread and then with every online
 * CPU (the engine's default): the plain pass is memory-bound and hardly
 * scales, the generator is compute-bound and does.
 * Part 2 (convergence): for each method (and HELENE's options), the best lr
 * of a log grid around the scenario preset, by the number of steps until the
 * noise-free loss is <= 1% of its start (capped at --max-steps).
 *
 * usage: bench_optim [--floats N] [--threads N] [--max-steps N] [--passes-only]
 *                    [--convergence-only] [--only LABEL-SUBSTRING]
 * (--threads 0, the default: part 1 with 1 thread and with every online CPU;
 * part 2 always runs single-threaded.)
 * Leaves out: models (their forward dominates a real step; see bench_forward).
 */
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#include "analytic.h"
#include "optim.h"
#include "pool.h"
#include "rng.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define REPS 5

static double median(double *v)
{
    qsort(v, REPS, sizeof *v, cmp_double);
    return v[REPS / 2];
}

/* threads 0: part 1 runs with 1 and with nmax threads. */
static void print_machine(int threads, int nmax)
{
    struct utsname u;
    char cpu[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                snprintf(cpu, sizeof cpu, "%s", c + 2);
                cpu[strcspn(cpu, "\n")] = '\0';
            }
            break;
        }
    if (f)
        fclose(f);
    uname(&u);
    char used[32];
    if (threads || nmax == 1)
        snprintf(used, sizeof used, "%d", threads ? threads : 1);
    else
        snprintf(used, sizeof used, "1 and %d", nmax);
    printf("machine: %s %s %s; cpu: %s; %ld online cpus; threads used: %s; rng kernel: %s\n",
           u.sysname, u.release, u.machine, cpu, sysconf(_SC_NPROCESSORS_ONLN), used,
           rng_kernel_level() == 2 ? "avx512" : rng_kernel_level() == 1 ? "avx2" : "generic");
}

/* ---- part 1: passes ---------------------------------------------------- */

/* Threads claim CLAIM floats at a time from a shared counter, as the
 * optimizer's passes claim runs of pieces (4 x 16384 floats), so both sides of
 * the ratio share out the work the same way. */
#define CLAIM 65536

static int claim(atomic_size_t *next, size_t n, size_t *b, size_t *e)
{
    *b = atomic_fetch_add_explicit(next, CLAIM, memory_order_relaxed);
    if (*b >= n)
        return 0;
    *e = n - *b < CLAIM ? n : *b + CLAIM;
    return 1;
}

typedef struct plain_job {
    float *a;
    const float *b;
    size_t n;
    float c;
    atomic_size_t next;
} plain_job;

static void plain_fn(void *arg, int tid, int nth)
{
    plain_job *j = arg;
    (void)tid, (void)nth;
    float *restrict a = j->a;
    const float *restrict x = j->b;
    size_t b, e;
    while (claim(&j->next, j->n, &b, &e))
        for (size_t i = b; i < e; i++)
            a[i] += j->c * x[i];
}

typedef struct rng_job {
    size_t n;
    atomic_size_t next;
    float sink[64];
} rng_job;

static void rng_fn(void *arg, int tid, int nth)
{
    rng_job *j = arg;
    (void)nth;
    float buf[4096];
    float s = 0;
    size_t b, e;
    while (claim(&j->next, j->n, &b, &e))
        for (size_t i = b; i < e; i += 4096) {
            size_t m = e - i < 4096 ? e - i : 4096;
            rng_normal_fill(buf, 77, 0, i, m);
            s += buf[0];
        }
    j->sink[tid % 64] = s;
}

static hl_status null_select(void *ctx, int32_t *B, uint64_t step, hl_err *err)
{
    (void)ctx, (void)step, (void)err;
    *B = 1;
    return HL_OK;
}

static hl_status null_eval(void *ctx, double *losses, const param_set *ps, pool *w, hl_err *err)
{
    (void)ctx, (void)ps, (void)w, (void)err;
    losses[0] = 1.0;
    return HL_OK;
}

/* Write every page of the method's state arenas once, outside the timing. */
static void touch_state(optim *o, size_t n)
{
    for (int i = 0; i < 4; i++) {
        const char *name;
        volatile float *a = optim_state_arena(o, i, &name);
        for (size_t k = 0; a && k < n; k += 1024)
            a[k] = a[k];
    }
}

static void plain_pass(pool *p, float *a, const float *b, size_t n, double *t)
{
    plain_job j = {.a = a, .b = b, .n = n, .c = 1e-3f};
    atomic_init(&j.next, 0);
    double t0 = now_s();
    pool_run(p, plain_fn, &j);
    *t = now_s() - t0;
}

/* Returns perturbation / plain. */
static double bench_passes(size_t n_floats, int threads)
{
    hl_err err;
    pool p;
    if (pool_init(&p, threads, &err) != HL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    /* 12 layers like a small transformer's tensors, ~n_floats in total */
    param_set ps;
    param_set_init(&ps);
    for (int l = 0; l < 12; l++) {
        char name[32];
        snprintf(name, sizeof name, "layer.%d.weight", l);
        int64_t shape[1] = {(int64_t)(n_floats / 12)};
        param_set_add(&ps, name, 1, shape, true, l, &err);
    }
    if (param_set_alloc(&ps, &err) != HL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    size_t n = ps.n;
    float *b = malloc(n * sizeof *b);
    if (!b) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (size_t i = 0; i < n; i++)
        b[i] = (float)(i % 7) * 0.1f, ps.data[i] = 1.0f;
    printf("\n== passes over %zu floats (%.0f MB per arena), %d thread%s, median of %d\n", n,
           n * 4.0 / 1e6, threads, threads == 1 ? "" : "s", REPS);

    double t[REPS], tplain[REPS];
    for (int r = 0; r < REPS; r++) {
        rng_job j = {.n = n};
        atomic_init(&j.next, 0);
        double t0 = now_s();
        pool_run(&p, rng_fn, &j);
        t[r] = now_s() - t0;
    }
    double gen = median(t);
    printf("%-34s %8.1f ms  %6.0f M samples/s\n", "gaussian generator alone", gen * 1e3,
           n / gen / 1e6);

    objective obj = {.name = "null", .max_batch = 1, .select_batch = null_select,
                     .eval = null_eval};
    static const char *methods[] = {"mezo", "zo-sgd-mmt", "zo-sign", "zo-adam", "hizoo",
                                    "helene"};
    static const double state_arenas[] = {0, 1, 0, 2, 1, 2};
    double perturb = 0, plain = 0;
    for (int m = 0; m < 6; m++) {
        optim *o;
        if (optim_init(&o, &ps, &p, 1, &err) != HL_OK ||
            optim_set(o, "optimizer", methods[m], &err) != HL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        double tu[REPS], tp[REPS], tu2[REPS];
        for (int r = 0; r < REPS; r++) {
            touch_state(o, n);
            if (m == 0)
                plain_pass(&p, ps.data, b, n, &tplain[r]);
            optim_step(o, &obj, &err); /* HELENE: a refresh step (h updated) */
            tu[r] = optim_last_stats(o)->ms_update / 1e3;
            tp[r] = optim_last_stats(o)->ms_perturb / 2e3;
            if (!strcmp(methods[m], "helene")) {
                optim_step(o, &obj, &err); /* and a plain one */
                tu2[r] = optim_last_stats(o)->ms_update / 1e3;
            }
            optim_set(o, "optimizer", "mezo", &err); /* fresh state: next is a refresh */
            optim_set(o, "optimizer", methods[m], &err);
        }
        double upd = median(tu), per = median(tp);
        if (m == 0) {
            plain = median(tplain);
            perturb = per;
            printf("%-34s %8.1f ms  %6.1f GB/s\n", "plain a += c*b (rw a, r b)", plain * 1e3,
                   12.0 * n / plain / 1e9);
            printf("%-34s %8.1f ms  %6.1f GB/s  %6.0f M samples/s  = %.2f x plain\n",
                   "perturbation pass (rw theta)", per * 1e3, 8.0 * n / per / 1e9, n / per / 1e6,
                   per / plain);
        }
        double bytes = 8.0 * n * (1 + state_arenas[m]);
        char label[64];
        snprintf(label, sizeof label, "update pass %s%s", methods[m],
                 !strcmp(methods[m], "helene") ? " (refresh)" : "");
        printf("%-34s %8.1f ms  %6.1f GB/s  %6.0f M samples/s  = %.2f x plain\n", label,
               upd * 1e3, bytes / upd / 1e9, n / upd / 1e6, upd / plain);
        if (!strcmp(methods[m], "helene")) {
            double u2 = median(tu2);
            printf("%-34s %8.1f ms  %6.1f GB/s  %6.0f M samples/s  = %.2f x plain\n",
                   "update pass helene (no refresh)", u2 * 1e3, bytes / u2 / 1e9, n / u2 / 1e6,
                   u2 / plain);
        }
        optim_free(o);
    }
    printf("goal: perturbation pass <= 3 x plain pass: %s (%.2f x)\n",
           perturb <= 3 * plain ? "met" : "NOT met", perturb / plain);
    free(b);
    param_set_free(&ps);
    pool_free(&p);
    return perturb / plain;
}

/* ---- part 2: convergence ------------------------------------------------- */

/* Steps until f <= 1% of f0 (0 if not reached in max_steps); *final = f/f0. */
static int32_t g_curvature = ANALYTIC_CURVATURE_LAYERED;

static long run_to_target(const char *method, const char *const *opts, double lr,
                          long max_steps, double *final, uint64_t *forwards)
{
    hl_err err;
    param_set ps;
    param_set_init(&ps);
    objective obj;
    analytic_config cfg;
    analytic_config_default(&cfg, ANALYTIC_KIND_QUADRATIC);
    cfg.curvature = g_curvature;
    if (analytic_init(&obj, &ps, &cfg, &err) != HL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    optim *o;
    char lrs[32], steps[32];
    snprintf(lrs, sizeof lrs, "%.6g", lr);
    snprintf(steps, sizeof steps, "%ld", max_steps);
    if (optim_init(&o, &ps, NULL, 1, &err) != HL_OK ||
        optim_set(o, "optimizer", method, &err) != HL_OK ||
        optim_set(o, "lr", lrs, &err) != HL_OK ||
        optim_set(o, "total_steps", steps, &err) != HL_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    for (int i = 0; opts && opts[i]; i += 2)
        if (optim_set(o, opts[i], opts[i + 1], &err) != HL_OK) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
    double f0, f = 0;
    objective_full_loss(&obj, &f0, &ps, NULL, &err);
    long reached = 0;
    for (long s = 1; s <= max_steps; s++) {
        if (optim_step(o, &obj, &err) != HL_OK)
            break;
        if (s % 10 == 0 || s < 10) {
            objective_full_loss(&obj, &f, &ps, NULL, &err);
            if (!(f <= 10 * f0))
                break; /* diverged */
            if (f <= 0.01 * f0) {
                reached = s;
                break;
            }
        }
    }
    objective_full_loss(&obj, &f, &ps, NULL, &err);
    *final = f / f0;
    *forwards = optim_last_stats(o)->forwards_total;
    optim_free(o);
    objective_destroy(&obj);
    param_set_free(&ps);
    return reached;
}

typedef struct conv_case {
    const char *label;
    const char *method;
    const char *opts[8];
    double base; /* grid centre; 0: the scenario preset's lr */
} conv_case;

static void bench_convergence(long max_steps, const char *only)
{
    static const conv_case cases[] = {
        {"mezo", "mezo", {NULL}, 0},
        {"zo-sgd-mmt", "zo-sgd-mmt", {NULL}, 0},
        {"zo-sign", "zo-sign", {NULL}, 0},
        {"zo-adam", "zo-adam", {NULL}, 0},
        {"hizoo", "hizoo", {NULL}, 0},
        {"helene (defaults)", "helene", {NULL}, 0},
        /* these change the step's scale by orders of magnitude: own grid centres */
        {"helene hess_probe=blockwise", "helene", {"hess_probe", "blockwise", NULL}, 0},
        {"helene lambda_mode=relative", "helene", {"lambda_mode", "relative", NULL}, 0.1},
        {"helene momentum_form=ema", "helene", {"momentum_form", "ema", NULL}, 0},
        {"helene anneal=off", "helene", {"anneal", "off", NULL}, 0},
        /* the ablations keep the update size (issue 12): HELENE's own centre */
        {"helene precondition=off", "helene", {"precondition", "off", NULL}, 0},
        {"helene clip=off", "helene", {"clip", "off", NULL}, 0},
        {"helene update_clip=on", "helene", {"update_clip", "on", NULL}, 0},
        /* HELENE with measured layer curvature (issue 13): one second
         * difference per layer on refresh steps, used three ways */
        {"helene lambda_mode=measured", "helene", {"lambda_mode", "measured", NULL}, 0},
        {"helene hess_est=layer_sd", "helene",
         {"hess_estimator", "layer_second_difference", NULL}, 0},
        {"helene precondition=perturbation", "helene", {"precondition", "perturbation", NULL}, 0},
        /* layer-newton: η is a fraction of a Newton step, stable below 2 */
        {"layer-newton", "layer-newton", {NULL}, 0},
        {"layer-newton sampling=uniform", "layer-newton", {"sampling", "uniform", NULL}, 0},
        {"layer-newton sampling=greedy", "layer-newton", {"sampling", "greedy", NULL}, 0},
    };
    /* the other variants are less stiff than the layered one (trace of the
     * curvature 1,450 or 2,450 against 21,700), so their rates may be higher:
     * the grid reaches 300 x the centre there */
    static const double grid_wide[] = {0.03, 0.1, 0.3, 1, 3, 10, 30, 100, 300};
    static const double grid_layered[] = {0.03, 0.1, 0.3, 1, 3, 10, 30};
    const bool wide = g_curvature != ANALYTIC_CURVATURE_LAYERED;
    const double *grid = wide ? grid_wide : grid_layered;
    const int n_grid = wide ? 9 : 7;
    static const double grid_newton[] = {0.125, 0.25, 0.5, 1, 1.5, 1.9};
    printf("\n== convergence on the quadratic, curvature %s (1450 floats, sizes 10..1000,\n"
           "   B = 8, noise 0.1, seed 1): steps to 1%% of the start loss, best lr of\n"
           "   centre x {0.03 .. 30 (300 for homogeneous and coupled)} (half-decade grid;\n"
           "   centre = the scenario preset unless\n"
           "   noted; layer-newton: eta in {1/8 .. 1.9}), at most %ld steps\n",
           analytic_curvature_name(g_curvature), max_steps);
    printf("%-30s %10s %10s %10s %9s %12s\n", "method", "best lr", "steps", "forwards",
           "x mezo", "final/start");
    long mezo_steps = 0;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        if (only && !strstr(cases[c].label, only))
            continue;
        const char *preset = analytic_preset(ANALYTIC_KIND_QUADRATIC, cases[c].method);
        double base = cases[c].base > 0 ? cases[c].base : atof(strchr(preset, '=') + 1);
        long best = 0;
        uint64_t best_fw = 0;
        double best_lr = 0, best_final = INFINITY;
        const bool newton = !strcmp(cases[c].method, "layer-newton");
        const double *gr = newton ? grid_newton : grid;
        const int G = newton ? (int)(sizeof grid_newton / sizeof grid_newton[0]) : n_grid;
        for (int g = 0; g < G; g++) {
            double fin, lr = newton ? gr[g] : base * gr[g];
            uint64_t fw;
            long s = run_to_target(cases[c].method, cases[c].opts, lr, max_steps, &fin, &fw);
            if (s > 0) {
                if (best == 0 || s < best)
                    best = s, best_lr = lr, best_final = fin, best_fw = fw;
            } else if (best == 0 && fin < best_final) {
                best_lr = lr, best_final = fin;
            }
        }
        char steps[32];
        if (best > 0)
            snprintf(steps, sizeof steps, "%ld", best);
        else
            snprintf(steps, sizeof steps, ">%ld", max_steps);
        if (c == 0)
            mezo_steps = best;
        char ratio[16] = "-", fws[24] = "-";
        if (mezo_steps > 0 && best > 0)
            snprintf(ratio, sizeof ratio, "%.2f", (double)best / (double)mezo_steps);
        if (best > 0)
            snprintf(fws, sizeof fws, "%llu", (unsigned long long)best_fw);
        printf("%-30s %10.3g %10s %10s %9s %12.4f\n", cases[c].label, best_lr, steps, fws, ratio,
               best_final);
        fflush(stdout);
    }
}

int main(int argc, char **argv)
{
    size_t n_floats = 125000000;
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN), threads = 0; /* 0: 1 and ncpu */
    long max_steps = 60000;
    int passes = 1, conv = 1;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--floats") && i + 1 < argc)
            n_floats = (size_t)atof(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--max-steps") && i + 1 < argc)
            max_steps = atol(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i], passes = 0;
        else if (!strcmp(argv[i], "--passes-only"))
            conv = 0;
        else if (!strcmp(argv[i], "--convergence-only"))
            passes = 0;
        else if (!strcmp(argv[i], "--curvature") && i + 1 < argc) {
            hl_err err;
            if (analytic_parse_curvature(&g_curvature, argv[++i], &err) != HL_OK) {
                fprintf(stderr, "bench_optim: %s\n", err.msg);
                return 2;
            }
        }
        else {
            fprintf(stderr, "usage: bench_optim [--floats N] [--threads N] [--max-steps N] "
                            "[--passes-only] [--convergence-only] [--only LABEL]\n"
                            "                   [--curvature layered|homogeneous|coupled]\n");
            return 2;
        }
    }
    if (threads < 0 || threads > POOL_MAX_THREADS || n_floats < 1200 || max_steps < 1) {
        fprintf(stderr, "bench_optim: bad arguments\n");
        return 2;
    }
    int nmax = ncpu < POOL_MAX_THREADS ? ncpu : POOL_MAX_THREADS;
    print_machine(threads, nmax);
    if (passes && threads) {
        bench_passes(n_floats, threads);
    } else if (passes) {
        double r1 = bench_passes(n_floats, 1), rn = nmax > 1 ? bench_passes(n_floats, nmax) : r1;
        printf("\nperturbation / plain: %.2f x with 1 thread, %.2f x with %d threads\n", r1, rn,
               nmax);
    }
    if (conv)
        bench_convergence(max_steps, only);
    return 0;
}

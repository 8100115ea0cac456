/* test_core.c - errors, the fork-join pool and the parameter arena. */
#include <string.h>

#include "err.h"
#include "params.h"
#include "pool.h"
#include "testutil.h"

static void test_err_set_and_prefix(void)
{
    hl_err e;
    hl_err_clear(&e);
    CU_ASSERT_EQUAL(hl_err_set(&e, HL_ERR_FORMAT, "bad %s", "header"), HL_ERR_FORMAT);
    CU_ASSERT_STRING_EQUAL(e.msg, "bad header");
    hl_err_prefix(&e, "%s", "model.safetensors");
    CU_ASSERT_STRING_EQUAL(e.msg, "model.safetensors: bad header");
    CU_ASSERT_EQUAL(e.code, HL_ERR_FORMAT);
    CU_ASSERT_EQUAL(hl_err_set(NULL, HL_ERR_IO, "ignored"), HL_ERR_IO);
}

static void test_pool_range_covers_exactly(void)
{
    for (size_t total = 0; total < 300; total += 7)
        for (int n = 1; n <= 5; n++)
            for (size_t align = 1; align <= 16; align *= 4) {
                size_t expect = 0;
                for (int t = 0; t < n; t++) {
                    size_t b, e;
                    pool_range(total, t, n, align, &b, &e);
                    CU_ASSERT_EQUAL(b, expect);
                    CU_ASSERT(e >= b);
                    if (e < total)
                        CU_ASSERT_EQUAL(e % align, 0);
                    expect = e;
                }
                CU_ASSERT_EQUAL(expect, total);
            }
}

typedef struct sum_job {
    const double *x;
    size_t n;
    double partial[8];
} sum_job;

static void sum_fn(void *arg, int tid, int n)
{
    sum_job *j = arg;
    size_t b, e;
    pool_range(j->n, tid, n, 1, &b, &e);
    double s = 0;
    for (size_t i = b; i < e; i++)
        s += j->x[i];
    j->partial[tid] = s;
}

static void test_pool_runs_every_thread(void)
{
    enum { N = 10000 };
    static double x[N];
    for (int i = 0; i < N; i++)
        x[i] = i;
    for (int threads = 1; threads <= 4; threads++) {
        pool p;
        hl_err err;
        CU_ASSERT_EQUAL_FATAL(pool_init(&p, threads, &err), HL_OK);
        CU_ASSERT_EQUAL(pool_size(&p), threads);
        for (int rep = 0; rep < 50; rep++) {
            sum_job j = {.x = x, .n = N};
            pool_run(&p, sum_fn, &j);
            double s = 0;
            for (int t = 0; t < threads; t++)
                s += j.partial[t];
            CU_ASSERT_DOUBLE_EQUAL(s, (double)N * (N - 1) / 2, 0.0);
        }
        pool_free(&p);
    }
    hl_err err;
    pool p;
    CU_ASSERT_EQUAL(pool_init(&p, 0, &err), HL_ERR_INVALID);
    CU_ASSERT_EQUAL(pool_init(&p, POOL_MAX_THREADS + 1, &err), HL_ERR_INVALID);
}

static void test_params_layout(void)
{
    param_set ps;
    hl_err err;
    param_set_init(&ps);
    int64_t s1[2] = {3, 5}, s2[1] = {7};
    CU_ASSERT_EQUAL(param_set_add(&ps, "a.weight", 2, s1, true, 0, &err), HL_OK);
    CU_ASSERT_EQUAL(param_set_add(&ps, "a.bias", 1, s2, false, 0, &err), HL_OK);
    CU_ASSERT_EQUAL(param_set_alloc(&ps, &err), HL_OK);
    CU_ASSERT_EQUAL(ps.n_layers, 2);
    CU_ASSERT_EQUAL(ps.layers[0].offset, 0);
    CU_ASSERT_EQUAL(ps.layers[0].size, 15);
    CU_ASSERT_EQUAL(ps.layers[1].offset, 16);
    CU_ASSERT_EQUAL((uintptr_t)param_layer_data(&ps, 1) % 64, 0);
    CU_ASSERT_EQUAL(param_set_count(&ps), 22);
    CU_ASSERT_EQUAL(param_set_find(&ps, "a.bias"), 1);
    CU_ASSERT_EQUAL(param_set_find(&ps, "nope"), -1);
    CU_ASSERT_FALSE(ps.layers[1].decay);
    int64_t bad[1] = {0};
    param_set s2set;
    param_set_init(&s2set);
    CU_ASSERT_EQUAL(param_set_add(&s2set, "zero", 1, bad, true, 0, &err), HL_ERR_INVALID);
    CU_ASSERT(strstr(err.msg, "zero") != NULL);
    param_set_free(&s2set);
    param_set_free(&ps);
}

static void register_core(void)
{
    CU_pSuite s = CU_add_suite("core", NULL, NULL);
    TEST_ADD(s, test_err_set_and_prefix);
    TEST_ADD(s, test_pool_range_covers_exactly);
    TEST_ADD(s, test_pool_runs_every_thread);
    TEST_ADD(s, test_params_layout);
}

TEST_MAIN(register_core)

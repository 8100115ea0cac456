/* test_rng.c - the counter-based Gaussian generator: Philox known answers,
 * the documented reference vector, independence of how a range is split,
 * identical bits from every compiled kernel, and sample statistics. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "rng.h"
#include "testutil.h"

static void test_philox_known_answers(void)
{
    /* Random123's kat_vectors for philox4x32-10 */
    static const uint32_t ctr[3][4] = {{0, 0, 0, 0},
                                       {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                                       {0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u}};
    static const uint32_t key[3][2] = {{0, 0}, {0xffffffffu, 0xffffffffu}, {0xa4093822u, 0x299f31d0u}};
    static const uint32_t want[3][4] = {{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u},
                                        {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu},
                                        {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}};
    for (int k = 0; k < 3; k++) {
        uint32_t out[4];
        rng_philox4x32(out, ctr[k], key[k]);
        for (int w = 0; w < 4; w++)
            CU_ASSERT_EQUAL(out[w], want[k][w]);
    }
}

/* The definition in rng.h, written with libm: element i of (seed, layer). */
static double reference_normal(uint64_t seed, uint32_t layer, uint64_t i)
{
    uint64_t b = i / 64, j = i % 16, w = (i % 64) / 16, c = 16 * b + j;
    uint32_t ctr[4] = {(uint32_t)c, (uint32_t)(c >> 32), layer, 0};
    uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t x[4];
    rng_philox4x32(x, ctr, key);
    uint32_t wu = w < 2 ? x[0] : x[2], wa = w < 2 ? x[1] : x[3];
    double u = ((double)(wu >> 9) + 0.5) / 8388608.0;
    double r = sqrt(-2.0 * log(u));
    double a = ((double)((wa >> 7) & 0x7fffffu) - 4194303.5) * (M_PI / 2) / 8388608.0;
    double ang = (double)(wa >> 30) * (M_PI / 2) + a;
    return (w % 2 == 0) ? r * cos(ang) : r * sin(ang);
}

static void test_reference_vector(void)
{
    uint64_t seed = rng_step_seed(42, 1, 0);
    /* The documented vector (rng.h): seed and z[0..7] of layer 0. */
    static const float want[8] = {RNG_REF_Z0, RNG_REF_Z1, RNG_REF_Z2, RNG_REF_Z3,
                                  RNG_REF_Z4, RNG_REF_Z5, RNG_REF_Z6, RNG_REF_Z7};
    CU_ASSERT_EQUAL(seed, RNG_REF_SEED);
    float z[8];
    rng_normal_fill(z, seed, 0, 0, 8);
    for (int i = 0; i < 8; i++)
        CU_ASSERT_EQUAL(memcmp(&z[i], &want[i], sizeof(float)), 0);
    /* the polynomials agree with libm's definition to ~1e-6 */
    enum { N = 4096 };
    static float zz[N];
    rng_normal_fill(zz, seed, 3, 1000, N);
    double maxerr = 0;
    for (int i = 0; i < N; i++) {
        double ref = reference_normal(seed, 3, 1000 + (uint64_t)i);
        double e = fabs(zz[i] - ref) / (1.0 + fabs(ref));
        if (e > maxerr)
            maxerr = e;
    }
    CU_ASSERT(maxerr < 2e-6);
    if (maxerr >= 2e-6)
        fprintf(stderr, "  max relative error vs libm reference %.3g\n", maxerr);
}

static void test_split_independence(void)
{
    enum { N = 3000 };
    static float whole[N], parts[N];
    uint64_t seed = rng_step_seed(7, 123, 2);
    rng_normal_fill(whole, seed, 5, 77, N);
    /* odd-sized pieces starting anywhere */
    size_t at = 0, step = 1;
    while (at < N) {
        size_t n = step < N - at ? step : N - at;
        rng_normal_fill(parts + at, seed, 5, 77 + at, n);
        at += n;
        step = step * 3 % 101 + 1;
    }
    CU_ASSERT_EQUAL(memcmp(whole, parts, sizeof whole), 0);
    for (int i = 0; i < N; i += 97) {
        float one = rng_normal_at(seed, 5, 77 + (uint64_t)i);
        CU_ASSERT_EQUAL(memcmp(&one, &whole[i], sizeof one), 0);
    }
}

static void test_kernel_levels_identical(void)
{
    enum { N = 1 << 14 };
    static float a[N], b[N];
    uint64_t seed = rng_step_seed(99, 5, 0);
    rng_normal_fill_level(a, seed, 2, 13, N, 0);
    for (int level = 1; level <= rng_kernel_level(); level++) {
        rng_normal_fill_level(b, seed, 2, 13, N, level);
        CU_ASSERT_EQUAL(memcmp(a, b, sizeof a), 0);
    }
    fprintf(stderr, "  (kernel level on this CPU: %d)\n", rng_kernel_level());
}

/* rng_normal_axpy (the perturbation pass) == fill + th += scale z, bit for
 * bit, at every kernel level, for ranges starting and ending mid-block. */
static void test_axpy_matches_fill(void)
{
    enum { N = 3000 };
    static float z[N], want[N], got[N], th0[N];
    uint64_t seed = rng_step_seed(11, 4, 0);
    const float scale = -2e-3f;
    for (int i = 0; i < N; i++)
        th0[i] = 0.01f * (float)(i % 97) - 0.3f;
    static const size_t starts[] = {0, 5, 64, 77, 1000003}, lens[] = {N, 1, 63, 130, 2049};
    for (int level = 0; level <= rng_kernel_level(); level++)
        for (size_t c = 0; c < sizeof starts / sizeof starts[0]; c++) {
            size_t n = lens[c];
            rng_normal_fill(z, seed, 3, starts[c], n);
            for (size_t i = 0; i < n; i++)
                want[i] = th0[i] + scale * z[i];
            memcpy(got, th0, n * sizeof *got);
            rng_normal_axpy_level(got, scale, seed, 3, starts[c], n, level);
            CU_ASSERT_EQUAL(memcmp(got, want, n * sizeof *got), 0);
        }
    memcpy(got, th0, sizeof got);
    rng_normal_axpy(got, scale, seed, 3, 77, N);
    rng_normal_fill(z, seed, 3, 77, N);
    for (int i = 0; i < N; i++)
        want[i] = th0[i] + scale * z[i];
    CU_ASSERT_EQUAL(memcmp(got, want, sizeof got), 0);
}

static void test_statistics(void)
{
    enum { N = 1 << 20 };
    static float z[N];
    rng_normal_fill(z, rng_step_seed(1, 1, 0), 0, 0, N);
    double s = 0, s2 = 0, s4 = 0;
    size_t tail2 = 0, neg = 0;
    double maxabs = 0;
    for (int i = 0; i < N; i++) {
        double v = z[i];
        s += v, s2 += v * v, s4 += v * v * v * v;
        tail2 += fabs(v) > 2.0;
        neg += v < 0;
        maxabs = fabs(v) > maxabs ? fabs(v) : maxabs;
    }
    CU_ASSERT(maxabs < 6.0);
    double mean = s / N, var = s2 / N - mean * mean, kurt = s4 / N / (var * var);
    CU_ASSERT(fabs(mean) < 5.0 / sqrt(N));
    CU_ASSERT(fabs(var - 1.0) < 0.01);
    CU_ASSERT(fabs(kurt - 3.0) < 0.05);
    CU_ASSERT(fabs((double)tail2 / N - 0.0455) < 0.002);
    CU_ASSERT(fabs((double)neg / N - 0.5) < 0.003);
    /* lag-1 correlation inside and across the 16-lane words */
    double c1 = 0, c16 = 0;
    for (int i = 0; i + 16 < N; i++) {
        c1 += (double)z[i] * z[i + 1];
        c16 += (double)z[i] * z[i + 16];
    }
    CU_ASSERT(fabs(c1 / N) < 0.005);
    CU_ASSERT(fabs(c16 / N) < 0.005);
}

static void test_streams_differ(void)
{
    float a[64], b[64], c[64];
    uint64_t s1 = rng_step_seed(5, 1, 0), s2 = rng_step_seed(5, 2, 0), s3 = rng_step_seed(5, 1, 1);
    CU_ASSERT(s1 != s2 && s1 != s3 && s2 != s3);
    CU_ASSERT(rng_step_seed(5, 1, 0) == s1);
    CU_ASSERT(rng_step_seed(6, 1, 0) != s1);
    rng_normal_fill(a, s1, 0, 0, 64);
    rng_normal_fill(b, s1, 1, 0, 64);
    rng_normal_fill(c, s2, 0, 0, 64);
    int same_ab = 0, same_ac = 0;
    for (int i = 0; i < 64; i++) {
        same_ab += a[i] == b[i];
        same_ac += a[i] == c[i];
    }
    CU_ASSERT(same_ab < 2);
    CU_ASSERT(same_ac < 2);
}

static void register_rng(void)
{
    CU_pSuite s = CU_add_suite("rng", NULL, NULL);
    TEST_ADD(s, test_philox_known_answers);
    TEST_ADD(s, test_reference_vector);
    TEST_ADD(s, test_split_independence);
    TEST_ADD(s, test_kernel_levels_identical);
    TEST_ADD(s, test_axpy_matches_fill);
    TEST_ADD(s, test_statistics);
    TEST_ADD(s, test_streams_differ);
}

TEST_MAIN(register_rng)

/* rng.c - see rng.h.  The block kernel is one always-inline function compiled
 * several times (generic, AVX2, AVX-512) so the vectoriser targets each ISA;
 * IEEE +, -, *, / and sqrt round the same way in every copy, and the build is
 * ISO C (-std=c11, so no FMA contraction), which keeps the bits identical. */
#include "rng.h"

#include <string.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u
#define LANES 16

void rng_philox4x32(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2])
{
    uint32_t x0 = ctr[0], x1 = ctr[1], x2 = ctr[2], x3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * x0, p1 = (uint64_t)PHILOX_M1 * x2;
        uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1 ^ k0, y1 = (uint32_t)p1;
        uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3 ^ k1, y3 = (uint32_t)p0;
        x0 = y0, x1 = y1, x2 = y2, x3 = y3;
        k0 += PHILOX_W0, k1 += PHILOX_W1;
    }
    out[0] = x0, out[1] = x1, out[2] = x2, out[3] = x3;
}

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t rng_step_seed(uint64_t run_seed, uint64_t t, uint32_t probe)
{
    uint64_t s = mix64(run_seed + 0x9E3779B97F4A7C15ull);
    s = mix64(s ^ (t * 0xD1B54A32D192ED03ull));
    return mix64(s ^ ((uint64_t)probe * 0x8CB92BA72F3D8DD7ull + 0x632BE59BD9B4E019ull));
}

/* Bit casts that the vectoriser turns into no-ops. */
static inline __attribute__((always_inline)) float as_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static inline __attribute__((always_inline)) uint32_t as_u32(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* r = sqrt(-2 ln u) for a 23-bit word, and (cos, sin) of the angle word,
 * written as the lane bodies of the block kernel. */
static inline __attribute__((always_inline)) void box_muller(float *zc, float *zs, uint32_t wu,
                                                              uint32_t wa)
{
    /* u in (0,1): exact in fp32 because (2k+1) < 2^24. */
    float u = ((float)(int32_t)(wu >> 9) + 0.5f) * (1.0f / 8388608.0f);
    /* ln u = e ln2 + ln m with m in [sqrt(1/2), sqrt(2)) (musl's split,
     * branch-free); ln m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172. */
    uint32_t ix = as_u32(u) + (0x3f800000u - 0x3f3504f3u);
    int32_t e = (int32_t)(ix >> 23) - 0x7f;
    float m = as_f32((ix & 0x007fffffu) + 0x3f3504f3u);
    float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    float p = 1.0f / 9.0f;
    p = p * s2 + 1.0f / 7.0f;
    p = p * s2 + 1.0f / 5.0f;
    p = p * s2 + 1.0f / 3.0f;
    p = p * s2 + 1.0f;
    float lnu = (float)e * 0.693147182f + 2.0f * s * p;
    /* sqrt by Newton on 1/sqrt: sqrtf keeps an errno branch that stops the
     * vectoriser (x > 1e-7 always, so the bit-trick start is safe). */
    float x = -2.0f * lnu;
    float y = as_f32(0x5f375a86u - (as_u32(x) >> 1));
    float hx = 0.5f * x;
    y = y * (1.5f - hx * y * y);
    y = y * (1.5f - hx * y * y);
    y = y * (1.5f - hx * y * y);
    float r = x * y;
    /* angle = k pi/2 + a, a in [-pi/4, pi/4]. */
    uint32_t k = wa >> 30;
    float a = ((float)(int32_t)((wa >> 7) & 0x7fffffu) - 4194303.5f) * (1.57079637f / 8388608.0f);
    float a2 = a * a;
    float sn = -1.0f / 362880.0f;
    sn = sn * a2 + 1.0f / 5040.0f;
    sn = sn * a2 - 1.0f / 120.0f;
    sn = sn * a2 + 1.0f / 6.0f;
    sn = a - a * a2 * sn;
    float cs = 1.0f / 3628800.0f;
    cs = cs * a2 - 1.0f / 40320.0f;
    cs = cs * a2 + 1.0f / 720.0f;
    cs = cs * a2 - 1.0f / 24.0f;
    cs = cs * a2 + 0.5f;
    cs = 1.0f - a2 * cs;
    uint32_t odd = 0u - (k & 1u); /* all ones when k is odd: swap sin and cos */
    uint32_t cb = (as_u32(sn) & odd) | (as_u32(cs) & ~odd);
    uint32_t sb = (as_u32(cs) & odd) | (as_u32(sn) & ~odd);
    float c = as_f32(cb ^ (((k + 1u) & 2u) << 30)); /* negate for k = 1, 2 */
    float sv = as_f32(sb ^ ((k & 2u) << 30));       /* negate for k = 2, 3 */
    *zc = r * c;
    *zs = r * sv;
}

/* Block b of layer `layer`: out[0..63]. */
static inline __attribute__((always_inline)) void normal_block(float *restrict out, uint32_t key0,
                                                                uint32_t key1, uint32_t layer,
                                                                uint64_t b)
{
    uint32_t x0[LANES], x1[LANES], x2[LANES], x3[LANES];
    uint64_t c = b * LANES;
    for (int j = 0; j < LANES; j++) {
        x0[j] = (uint32_t)(c + (uint64_t)j);
        x1[j] = (uint32_t)((c + (uint64_t)j) >> 32);
        x2[j] = layer;
        x3[j] = 0;
    }
    uint32_t k0 = key0, k1 = key1;
    /* fully unrolled: at -O3 gcc otherwise keeps the round loop and
     * vectorises worse (2.3x slower with AVX-512, measured) */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 10
#endif
    for (int r = 0; r < 10; r++) {
        for (int j = 0; j < LANES; j++) {
            uint64_t p0 = (uint64_t)PHILOX_M0 * x0[j], p1 = (uint64_t)PHILOX_M1 * x2[j];
            uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1[j] ^ k0, y1 = (uint32_t)p1;
            uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3[j] ^ k1, y3 = (uint32_t)p0;
            x0[j] = y0, x1[j] = y1, x2[j] = y2, x3[j] = y3;
        }
        k0 += PHILOX_W0, k1 += PHILOX_W1;
    }
    for (int j = 0; j < LANES; j++) {
        float a, s;
        box_muller(&a, &s, x0[j], x1[j]);
        out[j] = a, out[LANES + j] = s;
        box_muller(&a, &s, x2[j], x3[j]);
        out[2 * LANES + j] = a, out[3 * LANES + j] = s;
    }
}

static inline __attribute__((always_inline)) void fill_body(float *out, uint64_t seed,
                                                             uint32_t layer, uint64_t i0, size_t n)
{
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    float tmp[RNG_BLOCK];
    while (n > 0) {
        uint64_t b = i0 / RNG_BLOCK;
        size_t off = (size_t)(i0 % RNG_BLOCK);
        size_t take = RNG_BLOCK - off < n ? RNG_BLOCK - off : n;
        if (off == 0 && take == RNG_BLOCK) {
            normal_block(out, k0, k1, layer, b);
        } else {
            normal_block(tmp, k0, k1, layer, b);
            memcpy(out, tmp + off, take * sizeof *out);
        }
        out += take, i0 += take, n -= take;
    }
}

static void fill_generic(float *out, uint64_t seed, uint32_t layer, uint64_t i0, size_t n)
{
    fill_body(out, seed, layer, i0, n);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define RNG_HAVE_X86 1
__attribute__((target("avx2"))) static void fill_avx2(float *out, uint64_t seed, uint32_t layer,
                                                      uint64_t i0, size_t n)
{
    fill_body(out, seed, layer, i0, n);
}
__attribute__((target("avx512f,avx512dq,avx512bw,avx512vl"))) static void
fill_avx512(float *out, uint64_t seed, uint32_t layer, uint64_t i0, size_t n)
{
    fill_body(out, seed, layer, i0, n);
}
#endif

int rng_kernel_level(void)
{
#ifdef RNG_HAVE_X86
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
        return 2;
    if (__builtin_cpu_supports("avx2"))
        return 1;
#endif
    return 0;
}

void rng_normal_fill_level(float *out, uint64_t seed, uint32_t layer, uint64_t i0, size_t n,
                           int level)
{
    int have = rng_kernel_level();
    if (level > have)
        level = have;
#ifdef RNG_HAVE_X86
    if (level == 2) {
        fill_avx512(out, seed, layer, i0, n);
        return;
    }
    if (level == 1) {
        fill_avx2(out, seed, layer, i0, n);
        return;
    }
#endif
    fill_generic(out, seed, layer, i0, n);
}

void rng_normal_fill(float *out, uint64_t seed, uint32_t layer, uint64_t i0, size_t n)
{
    rng_normal_fill_level(out, seed, layer, i0, n, 2);
}

float rng_normal_at(uint64_t seed, uint32_t layer, uint64_t i)
{
    float z;
    rng_normal_fill_level(&z, seed, layer, i, 1, 0);
    return z;
}

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

uint64_t rng_splitmix64(uint64_t *state)
{
    return mix64(*state += 0x9E3779B97F4A7C15ull);
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
#include <immintrin.h>

/* ---- hand-vectorised x86 kernels ---------------------------------------
 * The same definition with intrinsics (gcc's own vectorisation of the
 * generic lane body widened every Philox product to a 64-bit multiply and
 * shuffled twice per round: 1.3 ns per normal on Zen 5, now 0.44).  Philox
 * keeps each 32-bit word in the low half of a 64-bit lane, so one vpmuludq
 * gives the whole 32x32->64 product; the high halves may hold garbage, since
 * multiplies read only the low halves and the words are packed to 32-bit
 * lanes once, after round 10.  Box-Muller repeats the generic lane body
 * operation for operation (same constants, same order, multiply and add kept
 * separate, no FMA); where an operation differs it is exact in both forms:
 * u = (2k+1) 2^-24 comes from the integer 2k+1 and an exponent change,
 * 2s = s + s, hx = 0.5 x = -ln u is a sign flip, x = hx + hx, and
 * a = (j - 4194303.5) C = (2j - 8388607) (C/2).  So every IEEE result, and
 * thus every bit, equals the generic kernel's: checked exhaustively over all
 * 2^23 radius inputs and 2^25 angle inputs for both kernels when this was
 * written, and tests/test_rng.c compares the kernels on every run. */

#define RNG_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl")))
#define RNG_AVX2 __attribute__((target("avx2")))
#define RNG_INLINE static inline __attribute__((always_inline))

/* Philox round keys (k0, k1) of rounds 0..9. */
static void round_keys(uint32_t rk[20], uint64_t seed)
{
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        rk[2 * r] = k0, rk[2 * r + 1] = k1;
        k0 += PHILOX_W0, k1 += PHILOX_W1;
    }
}

/* -- AVX-512: 16 lanes per register -- */

#define F16(x) _mm512_set1_ps(x)
#define I16(x) _mm512_set1_epi32((int)(x))

/* Blocks per group: the group's Philox halves step through the rounds side
 * by side, and its Box-Muller registers go statement by statement, so the
 * long dependency chains (division, polynomials, Newton steps) of independent
 * lanes sit next to each other in the instruction stream.  On Zen 5 one
 * block at a time ran at 0.63 ns per normal, groups of 2 at 0.54 and of 4 at
 * 0.44 (6 and 8 spill too much: 0.54, 0.58). */
#define GROUP 4
#define QL(stmt)                                                                                   \
    for (int q = 0; q < Q; q++) {                                                                  \
        stmt;                                                                                      \
    }

/* Radius r = sqrt(-2 ln u) of Q x 16 wu words. */
RNG_INLINE RNG_AVX512 void bm_radius16(__m512 *r, const __m512i *wu, int Q)
{
    __m512 s[2 * GROUP], s2[2 * GROUP], p[2 * GROUP], hx[2 * GROUP], x[2 * GROUP], y[2 * GROUP];
    __m512i ix[2 * GROUP];
    __m512 ef[2 * GROUP], m[2 * GROUP];
    QL(ix[q] = _mm512_add_epi32(_mm512_castps_si512(_mm512_cvtepi32_ps(
                                    _mm512_or_si512(_mm512_srli_epi32(wu[q], 8), I16(1)))),
                                I16(0x3f800000u - 0x3f3504f3u - (24u << 23))))
    QL(ef[q] = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_srli_epi32(ix[q], 23), I16(0x7f))))
    QL(m[q] = _mm512_castsi512_ps(
           _mm512_add_epi32(_mm512_and_si512(ix[q], I16(0x007fffffu)), I16(0x3f3504f3u))))
    QL(s[q] = _mm512_div_ps(_mm512_sub_ps(m[q], F16(1.0f)), _mm512_add_ps(m[q], F16(1.0f))))
    QL(s2[q] = _mm512_mul_ps(s[q], s[q]))
    QL(p[q] = _mm512_add_ps(_mm512_mul_ps(F16(1.0f / 9.0f), s2[q]), F16(1.0f / 7.0f)))
    QL(p[q] = _mm512_add_ps(_mm512_mul_ps(p[q], s2[q]), F16(1.0f / 5.0f)))
    QL(p[q] = _mm512_add_ps(_mm512_mul_ps(p[q], s2[q]), F16(1.0f / 3.0f)))
    QL(p[q] = _mm512_add_ps(_mm512_mul_ps(p[q], s2[q]), F16(1.0f)))
    QL(hx[q] = _mm512_add_ps(_mm512_mul_ps(ef[q], F16(0.693147182f)),
                             _mm512_mul_ps(_mm512_add_ps(s[q], s[q]), p[q])))
    QL(hx[q] = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(hx[q]), I16(0x80000000u))))
    QL(x[q] = _mm512_add_ps(hx[q], hx[q]))
    QL(y[q] = _mm512_castsi512_ps(
           _mm512_sub_epi32(I16(0x5f375a86u), _mm512_srli_epi32(_mm512_castps_si512(x[q]), 1))))
    for (int it = 0; it < 3; it++)
        QL(y[q] = _mm512_mul_ps(
               y[q], _mm512_sub_ps(F16(1.5f), _mm512_mul_ps(_mm512_mul_ps(hx[q], y[q]), y[q]))))
    QL(r[q] = _mm512_mul_ps(x[q], y[q]))
}

/* (cos, sin) of Q x 16 angle words, quadrant applied. */
RNG_INLINE RNG_AVX512 void bm_angle16(__m512 *c, __m512 *sv, const __m512i *wa, int Q)
{
    __m512 a[2 * GROUP], a2[2 * GROUP], sn[2 * GROUP], cs[2 * GROUP];
    QL(a[q] = _mm512_mul_ps(
           _mm512_cvtepi32_ps(_mm512_sub_epi32(
               _mm512_and_si512(_mm512_srli_epi32(wa[q], 6), I16(0xfffffeu)), I16(8388607))),
           F16(1.57079637f / 16777216.0f)))
    QL(a2[q] = _mm512_mul_ps(a[q], a[q]))
    QL(sn[q] = _mm512_add_ps(_mm512_mul_ps(F16(-1.0f / 362880.0f), a2[q]), F16(1.0f / 5040.0f)))
    QL(cs[q] = _mm512_sub_ps(_mm512_mul_ps(F16(1.0f / 3628800.0f), a2[q]), F16(1.0f / 40320.0f)))
    QL(sn[q] = _mm512_sub_ps(_mm512_mul_ps(sn[q], a2[q]), F16(1.0f / 120.0f)))
    QL(cs[q] = _mm512_add_ps(_mm512_mul_ps(cs[q], a2[q]), F16(1.0f / 720.0f)))
    QL(sn[q] = _mm512_add_ps(_mm512_mul_ps(sn[q], a2[q]), F16(1.0f / 6.0f)))
    QL(cs[q] = _mm512_sub_ps(_mm512_mul_ps(cs[q], a2[q]), F16(1.0f / 24.0f)))
    QL(sn[q] = _mm512_sub_ps(a[q], _mm512_mul_ps(_mm512_mul_ps(a[q], a2[q]), sn[q])))
    QL(cs[q] = _mm512_add_ps(_mm512_mul_ps(cs[q], a2[q]), F16(0.5f)))
    QL(cs[q] = _mm512_sub_ps(F16(1.0f), _mm512_mul_ps(a2[q], cs[q])))
    for (int q = 0; q < Q; q++) {
        __mmask16 odd = _mm512_test_epi32_mask(wa[q], I16(0x40000000u));
        __m512i cb = _mm512_castps_si512(_mm512_mask_blend_ps(odd, cs[q], sn[q]));
        __m512i sb = _mm512_castps_si512(_mm512_mask_blend_ps(odd, sn[q], cs[q]));
        __m512i sign = I16(0x80000000u);
        cb = _mm512_xor_si512(
            cb, _mm512_and_si512(_mm512_xor_si512(wa[q], _mm512_slli_epi32(wa[q], 1)), sign));
        sb = _mm512_xor_si512(sb, _mm512_and_si512(wa[q], sign));
        c[q] = _mm512_castsi512_ps(cb);
        sv[q] = _mm512_castsi512_ps(sb);
    }
}

/* Philox of blocks b .. b + nb - 1: words w[q][0..3], lane j of block b + q
 * = counter 16(b + q) + j.  Lanes 0..7 run in x[2q], 8..15 in x[2q + 1], as
 * 64-bit lanes; all halves step through the rounds side by side. */
RNG_INLINE RNG_AVX512 void philox16(__m512i w[][4], const uint32_t *rk, uint32_t layer, uint64_t b,
                                    int nb)
{
    __m512i x0[2 * GROUP], x1[2 * GROUP], x2[2 * GROUP], x3[2 * GROUP];
    for (int q = 0; q < nb; q++) {
        uint64_t c = (b + (uint64_t)q) * LANES; /* (c + j) >> 32 is the same for j < 16 */
        __m512i lo = _mm512_add_epi64(_mm512_set1_epi64((long long)(uint32_t)c),
                                      _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0));
        x0[2 * q] = lo, x0[2 * q + 1] = _mm512_add_epi64(lo, _mm512_set1_epi64(8));
        x1[2 * q] = x1[2 * q + 1] = _mm512_set1_epi64((long long)(c >> 32));
        x2[2 * q] = x2[2 * q + 1] = _mm512_set1_epi64((long long)layer);
        x3[2 * q] = x3[2 * q + 1] = _mm512_setzero_si512();
    }
    const __m512i M0 = _mm512_set1_epi64(PHILOX_M0), M1 = _mm512_set1_epi64(PHILOX_M1);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 10
#endif
    for (int r = 0; r < 10; r++) {
        __m512i K0 = I16(rk[2 * r]), K1 = I16(rk[2 * r + 1]);
        __m512i p0[2 * GROUP], p1[2 * GROUP];
        for (int h = 0; h < 2 * nb; h++)
            p0[h] = _mm512_mul_epu32(x0[h], M0), p1[h] = _mm512_mul_epu32(x2[h], M1);
        /* hi(p) to the low half by a dword swap, which unlike a shift does
         * not compete with the float adds for execution ports; the high
         * halves may hold anything.  Then a three-way xor. */
        for (int h = 0; h < 2 * nb; h++) {
            x0[h] = _mm512_ternarylogic_epi32(_mm512_shuffle_epi32(p1[h], _MM_PERM_CDAB), x1[h], K0,
                                              0x96);
            x2[h] = _mm512_ternarylogic_epi32(_mm512_shuffle_epi32(p0[h], _MM_PERM_CDAB), x3[h], K1,
                                              0x96);
            x1[h] = p1[h], x3[h] = p0[h];
        }
    }
    const __m512i pack =
        _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    for (int q = 0; q < nb; q++) {
        w[q][0] = _mm512_permutex2var_epi32(x0[2 * q], pack, x0[2 * q + 1]);
        w[q][1] = _mm512_permutex2var_epi32(x1[2 * q], pack, x1[2 * q + 1]);
        w[q][2] = _mm512_permutex2var_epi32(x2[2 * q], pack, x2[2 * q + 1]);
        w[q][3] = _mm512_permutex2var_epi32(x3[2 * q], pack, x3[2 * q + 1]);
    }
}

/* out = z, or out += scale z (the perturbation pass without a buffer). */
RNG_INLINE RNG_AVX512 void put16(float *p, __m512 z, __m512 scale, int axpy)
{
    if (axpy)
        _mm512_storeu_ps(p, _mm512_add_ps(_mm512_loadu_ps(p), _mm512_mul_ps(scale, z)));
    else
        _mm512_storeu_ps(p, z);
}

/* nb (<= GROUP) whole blocks b .. b + nb - 1 into out[0 .. 64 nb - 1]. */
RNG_INLINE RNG_AVX512 void blocks16(float *out, const uint32_t *rk, uint32_t layer, uint64_t b,
                                    int nb, __m512 scale, int axpy)
{
    __m512i w[GROUP][4];
    philox16(w, rk, layer, b, nb);
    __m512i wu[2 * GROUP], wa[2 * GROUP];
    for (int q = 0; q < nb; q++)
        for (int h = 0; h < 2; h++)
            wu[2 * q + h] = w[q][2 * h], wa[2 * q + h] = w[q][2 * h + 1];
    __m512 r[2 * GROUP], c[2 * GROUP], sv[2 * GROUP];
    bm_radius16(r, wu, 2 * nb);
    bm_angle16(c, sv, wa, 2 * nb);
    for (int k = 0; k < 2 * nb; k++) {
        put16(out + 2 * k * LANES, _mm512_mul_ps(r[k], c[k]), scale, axpy);
        put16(out + (2 * k + 1) * LANES, _mm512_mul_ps(r[k], sv[k]), scale, axpy);
    }
}

RNG_INLINE RNG_AVX512 void body_avx512(float *out, uint64_t seed, uint32_t layer, uint64_t i0,
                                       size_t n, float scale, int axpy)
{
    uint32_t rk[20];
    round_keys(rk, seed);
    __m512 sc = _mm512_set1_ps(scale);
    float tmp[RNG_BLOCK];
    while (n > 0) {
        uint64_t b = i0 / RNG_BLOCK;
        size_t off = (size_t)(i0 % RNG_BLOCK);
        size_t take = RNG_BLOCK - off < n ? RNG_BLOCK - off : n;
        if (off == 0 && n >= GROUP * RNG_BLOCK) {
            blocks16(out, rk, layer, b, GROUP, sc, axpy);
            take = GROUP * RNG_BLOCK;
        } else if (off == 0 && take == RNG_BLOCK) {
            blocks16(out, rk, layer, b, 1, sc, axpy);
        } else {
            blocks16(tmp, rk, layer, b, 1, sc, 0);
            for (size_t k = 0; k < take; k++)
                out[k] = axpy ? out[k] + scale * tmp[off + k] : tmp[off + k];
        }
        out += take, i0 += take, n -= take;
    }
}

RNG_AVX512 static void fill_avx512(float *out, uint64_t seed, uint32_t layer, uint64_t i0, size_t n)
{
    body_avx512(out, seed, layer, i0, n, 0.0f, 0);
}

RNG_AVX512 static void axpy_avx512(float *th, float scale, uint64_t seed, uint32_t layer,
                                   uint64_t i0, size_t n)
{
    body_avx512(th, seed, layer, i0, n, scale, 1);
}

/* -- AVX2: 8 lanes per register, the same operations -- */

#define F8(x) _mm256_set1_ps(x)
#define I8(x) _mm256_set1_epi32((int)(x))

RNG_INLINE RNG_AVX2 __m256 bm_radius8(__m256i wu)
{
    __m256 u1 = _mm256_cvtepi32_ps(_mm256_or_si256(_mm256_srli_epi32(wu, 8), I8(1)));
    __m256i ix =
        _mm256_add_epi32(_mm256_castps_si256(u1), I8(0x3f800000u - 0x3f3504f3u - (24u << 23)));
    __m256 ef = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(ix, 23), I8(0x7f)));
    __m256 m = _mm256_castsi256_ps(
        _mm256_add_epi32(_mm256_and_si256(ix, I8(0x007fffffu)), I8(0x3f3504f3u)));
    __m256 s = _mm256_div_ps(_mm256_sub_ps(m, F8(1.0f)), _mm256_add_ps(m, F8(1.0f)));
    __m256 s2 = _mm256_mul_ps(s, s);
    __m256 p = F8(1.0f / 9.0f);
    p = _mm256_add_ps(_mm256_mul_ps(p, s2), F8(1.0f / 7.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, s2), F8(1.0f / 5.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, s2), F8(1.0f / 3.0f));
    p = _mm256_add_ps(_mm256_mul_ps(p, s2), F8(1.0f));
    __m256 lnu =
        _mm256_add_ps(_mm256_mul_ps(ef, F8(0.693147182f)), _mm256_mul_ps(_mm256_add_ps(s, s), p));
    __m256 hx = _mm256_castsi256_ps(_mm256_xor_si256(_mm256_castps_si256(lnu), I8(0x80000000u)));
    __m256 x = _mm256_add_ps(hx, hx);
    __m256 y = _mm256_castsi256_ps(
        _mm256_sub_epi32(I8(0x5f375a86u), _mm256_srli_epi32(_mm256_castps_si256(x), 1)));
    for (int it = 0; it < 3; it++)
        y = _mm256_mul_ps(y, _mm256_sub_ps(F8(1.5f), _mm256_mul_ps(_mm256_mul_ps(hx, y), y)));
    return _mm256_mul_ps(x, y);
}

RNG_INLINE RNG_AVX2 void bm_angle8(__m256 *c, __m256 *sv, __m256i wa)
{
    __m256i j2 = _mm256_and_si256(_mm256_srli_epi32(wa, 6), I8(0xfffffeu));
    __m256 a = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(j2, I8(8388607))),
                             F8(1.57079637f / 16777216.0f));
    __m256 a2 = _mm256_mul_ps(a, a);
    __m256 sn = F8(-1.0f / 362880.0f);
    sn = _mm256_add_ps(_mm256_mul_ps(sn, a2), F8(1.0f / 5040.0f));
    sn = _mm256_sub_ps(_mm256_mul_ps(sn, a2), F8(1.0f / 120.0f));
    sn = _mm256_add_ps(_mm256_mul_ps(sn, a2), F8(1.0f / 6.0f));
    sn = _mm256_sub_ps(a, _mm256_mul_ps(_mm256_mul_ps(a, a2), sn));
    __m256 cs = F8(1.0f / 3628800.0f);
    cs = _mm256_sub_ps(_mm256_mul_ps(cs, a2), F8(1.0f / 40320.0f));
    cs = _mm256_add_ps(_mm256_mul_ps(cs, a2), F8(1.0f / 720.0f));
    cs = _mm256_sub_ps(_mm256_mul_ps(cs, a2), F8(1.0f / 24.0f));
    cs = _mm256_add_ps(_mm256_mul_ps(cs, a2), F8(0.5f));
    cs = _mm256_sub_ps(F8(1.0f), _mm256_mul_ps(a2, cs));
    __m256i wa1 = _mm256_slli_epi32(wa, 1); /* sign bit = wa's bit 30: k odd */
    __m256 odd = _mm256_castsi256_ps(wa1);
    __m256i cb = _mm256_castps_si256(_mm256_blendv_ps(cs, sn, odd));
    __m256i sb = _mm256_castps_si256(_mm256_blendv_ps(sn, cs, odd));
    __m256i sign = I8(0x80000000u);
    cb = _mm256_xor_si256(cb, _mm256_and_si256(_mm256_xor_si256(wa, wa1), sign));
    sb = _mm256_xor_si256(sb, _mm256_and_si256(wa, sign));
    *c = _mm256_castsi256_ps(cb);
    *sv = _mm256_castsi256_ps(sb);
}

/* Philox of lanes 8h .. 8h + 7 of block b.  Register a holds lanes
 * {0, 1, 4, 5} and b lanes {2, 3, 6, 7} (of the eight) as 64-bit lanes, so
 * one shufps packs them in order. */
RNG_INLINE RNG_AVX2 void philox8(__m256i w[4], const uint32_t *rk, uint32_t layer, uint64_t b,
                                 int h)
{
    uint64_t c = b * LANES + 8u * (unsigned)h;
    __m256i base = _mm256_set1_epi64x((long long)(uint32_t)c);
    __m256i a0 = _mm256_add_epi64(base, _mm256_set_epi64x(5, 4, 1, 0));
    __m256i b0 = _mm256_add_epi64(base, _mm256_set_epi64x(7, 6, 3, 2));
    __m256i a1 = _mm256_set1_epi64x((long long)(c >> 32)), b1 = a1;
    __m256i a2 = _mm256_set1_epi64x((long long)layer), b2 = a2;
    __m256i a3 = _mm256_setzero_si256(), b3 = a3;
    const __m256i M0 = _mm256_set1_epi64x(PHILOX_M0), M1 = _mm256_set1_epi64x(PHILOX_M1);
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC unroll 10
#endif
    for (int r = 0; r < 10; r++) {
        __m256i K0 = I8(rk[2 * r]), K1 = I8(rk[2 * r + 1]);
        __m256i p0 = _mm256_mul_epu32(a0, M0), p1 = _mm256_mul_epu32(a2, M1);
        __m256i q0 = _mm256_mul_epu32(b0, M0), q1 = _mm256_mul_epu32(b2, M1);
        a0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), a1), K0);
        a2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), a3), K1);
        b0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(q1, 32), b1), K0);
        b2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(q0, 32), b3), K1);
        a1 = p1, a3 = p0, b1 = q1, b3 = q0;
    }
#define PACK8(x, y)                                                                                \
    _mm256_castps_si256(_mm256_shuffle_ps(_mm256_castsi256_ps(x), _mm256_castsi256_ps(y), 0x88))
    w[0] = PACK8(a0, b0);
    w[1] = PACK8(a1, b1);
    w[2] = PACK8(a2, b2);
    w[3] = PACK8(a3, b3);
#undef PACK8
}

RNG_INLINE RNG_AVX2 void put8(float *p, __m256 z, __m256 scale, int axpy)
{
    if (axpy)
        _mm256_storeu_ps(p, _mm256_add_ps(_mm256_loadu_ps(p), _mm256_mul_ps(scale, z)));
    else
        _mm256_storeu_ps(p, z);
}

RNG_INLINE RNG_AVX2 void block8(float *out, const uint32_t *rk, uint32_t layer, uint64_t b,
                                __m256 scale, int axpy)
{
    for (int h = 0; h < 2; h++) {
        __m256i w[4];
        philox8(w, rk, layer, b, h);
        for (int g = 0; g < 2; g++) {
            __m256 r = bm_radius8(w[2 * g]), c, sv;
            bm_angle8(&c, &sv, w[2 * g + 1]);
            put8(out + 2 * g * LANES + 8 * h, _mm256_mul_ps(r, c), scale, axpy);
            put8(out + (2 * g + 1) * LANES + 8 * h, _mm256_mul_ps(r, sv), scale, axpy);
        }
    }
}

RNG_INLINE RNG_AVX2 void body_avx2(float *out, uint64_t seed, uint32_t layer, uint64_t i0, size_t n,
                                   float scale, int axpy)
{
    uint32_t rk[20];
    round_keys(rk, seed);
    __m256 sc = _mm256_set1_ps(scale);
    float tmp[RNG_BLOCK];
    while (n > 0) {
        uint64_t b = i0 / RNG_BLOCK;
        size_t off = (size_t)(i0 % RNG_BLOCK);
        size_t take = RNG_BLOCK - off < n ? RNG_BLOCK - off : n;
        if (off == 0 && take == RNG_BLOCK) {
            block8(out, rk, layer, b, sc, axpy);
        } else {
            block8(tmp, rk, layer, b, sc, 0);
            for (size_t k = 0; k < take; k++)
                out[k] = axpy ? out[k] + scale * tmp[off + k] : tmp[off + k];
        }
        out += take, i0 += take, n -= take;
    }
}

RNG_AVX2 static void fill_avx2(float *out, uint64_t seed, uint32_t layer, uint64_t i0, size_t n)
{
    body_avx2(out, seed, layer, i0, n, 0.0f, 0);
}

RNG_AVX2 static void axpy_avx2(float *th, float scale, uint64_t seed, uint32_t layer, uint64_t i0,
                               size_t n)
{
    body_avx2(th, seed, layer, i0, n, scale, 1);
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

void rng_normal_axpy_level(float *th, float scale, uint64_t seed, uint32_t layer, uint64_t i0,
                           size_t n, int level)
{
    int have = rng_kernel_level();
    if (level > have)
        level = have;
#ifdef RNG_HAVE_X86
    if (level == 2) {
        axpy_avx512(th, scale, seed, layer, i0, n);
        return;
    }
    if (level == 1) {
        axpy_avx2(th, scale, seed, layer, i0, n);
        return;
    }
#endif
    float z[4 * RNG_BLOCK];
    while (n > 0) {
        size_t m = n < 4 * RNG_BLOCK ? n : 4 * RNG_BLOCK;
        fill_generic(z, seed, layer, i0, m);
        for (size_t k = 0; k < m; k++)
            th[k] += scale * z[k];
        th += m, i0 += m, n -= m;
    }
}

void rng_normal_axpy(float *th, float scale, uint64_t seed, uint32_t layer, uint64_t i0, size_t n)
{
    rng_normal_axpy_level(th, scale, seed, layer, i0, n, 2);
}

float rng_normal_at(uint64_t seed, uint32_t layer, uint64_t i)
{
    float z;
    rng_normal_fill_level(&z, seed, layer, i, 1, 0);
    return z;
}

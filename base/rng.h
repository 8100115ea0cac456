/* rng.h - counter-based Gaussian numbers for zeroth-order perturbations.
 *
 * A perturbation z is never stored: every pass regenerates it, so element i
 * of layer l at step t must be a pure function of (run seed, t, probe, l, i),
 * whatever thread computes it and whatever block it sits in.
 *
 * Definition (the reference the code and tests follow):
 *   seed_t = rng_step_seed(run_seed, t, probe), a splitmix64-style mix.
 *   Philox4x32-10 (Salmon et al., SC'11), key = (lo32(seed_t), hi32(seed_t)).
 *   Normals come in blocks of 64: element i lies in block b = i / 64, lane
 *   j = i % 16, word w = (i % 64) / 16.  Philox of counter
 *   (16b + j mod 2^32, (16b + j) >> 32, l, 0) gives words x0..x3;
 *   words (x0, x1) make elements w = 0, 1 and (x2, x3) make w = 2, 3 by
 *   Box-Muller: u = ((x0 >> 9) + 0.5) / 2^23 in (0, 1), r = sqrt(-2 ln u);
 *   quadrant k = x1 >> 30, a = (((x1 >> 7) & 0x7fffff) - 4194303.5) * (pi/2) / 2^23,
 *   angle = k*pi/2 + a; z_w0 = r cos(angle), z_w1 = r sin(angle).
 *   ln, sin and cos are short polynomials (atanh series, Taylor), evaluated
 *   in fp32 without FMA, so every code path gives the same bits.  |z| <= 5.8.
 *
 * Reference vector (checked bit for bit by tests/test_rng.c):
 *   rng_step_seed(42, 1, 0) = 0x4de9808be2678523, and z(that seed, layer 0,
 *   i = 0..7) = -1.96544516 -0.238914177 -0.765912294 -0.681370795
 *   -0.837502301 0.648462594 0.925497115 -0.510516942 (exact hex below).
 *
 * Speed: the block kernel is branch-free over 16 lanes; gcc vectorises the
 * generic copy, and on x86-64 hand-vectorised AVX2 / AVX-512 copies (same
 * bits) are chosen at run time: ~0.44 ns per normal with AVX-512 on Zen 5.
 * rng_normal_axpy adds the normals to an array straight from registers.
 * Leaves out: other distributions, streams longer than 2^64 per layer.
 */
#ifndef HELENE_RNG_H
#define HELENE_RNG_H

#include <stddef.h>
#include <stdint.h>

#define RNG_REF_SEED UINT64_C(0x4de9808be2678523)
#define RNG_REF_Z0 -0x1.f7276ap+0f
#define RNG_REF_Z1 -0x1.e94bd6p-3f
#define RNG_REF_Z2 -0x1.8825a8p-1f
#define RNG_REF_Z3 -0x1.5cdca2p-1f
#define RNG_REF_Z4 -0x1.accd1ap-1f
#define RNG_REF_Z5 0x1.4c034ap-1f
#define RNG_REF_Z6 0x1.d9dac2p-1f
#define RNG_REF_Z7 -0x1.05627ap-1f

/* Normals per generated block; fills that start or end inside a block
 * compute the whole block and copy the part asked for. */
#define RNG_BLOCK 64

/* One Philox4x32-10 evaluation (the reference; the fills use a lane-parallel
 * copy of it). */
void rng_philox4x32(uint32_t out[4], const uint32_t ctr[4], const uint32_t key[2]);

/* The step seed: a 64-bit mix of (run_seed, t, probe).  Probes of one step
 * (n_probes > 1, blockwise curvature probes) use distinct probe ids. */
uint64_t rng_step_seed(uint64_t run_seed, uint64_t t, uint32_t probe);
/* splitmix64 (Steele, Lea & Flood 2014): advance *state and return the next
 * output.  The one copy: data sampling, random models and pretraining use it. */
uint64_t rng_splitmix64(uint64_t *state);

/* out[k] = z(seed, layer, i0 + k) for k in [0, n). */
void rng_normal_fill(float *out, uint64_t seed, uint32_t layer, uint64_t i0, size_t n);

/* th[k] += scale * z(seed, layer, i0 + k) for k in [0, n): the perturbation
 * pass, with the normals kept in registers instead of a buffer.  Same bits
 * as rng_normal_fill into a buffer followed by th[k] += scale * buf[k]. */
void rng_normal_axpy(float *th, float scale, uint64_t seed, uint32_t layer, uint64_t i0, size_t n);

/* One element, for tests and reference computations (slow). */
float rng_normal_at(uint64_t seed, uint32_t layer, uint64_t i);

/* Which compiled kernel rng_normal_fill uses on this machine:
 * 0 generic, 1 AVX2, 2 AVX-512. */
int rng_kernel_level(void);

/* Same as rng_normal_fill but forcing a kernel level (clamped to what the
 * CPU supports); lets the tests check that every copy gives the same bits. */
void rng_normal_fill_level(float *out, uint64_t seed, uint32_t layer, uint64_t i0, size_t n,
                           int level);
void rng_normal_axpy_level(float *th, float scale, uint64_t seed, uint32_t layer, uint64_t i0,
                           size_t n, int level);

#endif

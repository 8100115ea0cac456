/* bench_forward.c - forward pass speed on an OPT-125m-shaped model.
 *
 * Prints, in one run on one machine: OpenBLAS sgemm GFLOP/s at the body's
 * matmul shapes (the practical ceiling), the transformer body's GFLOP/s,
 * and the time of a forward with full-vocabulary logits and with
 * classification logits (2 label ids at the last position of each
 * sequence).  Random weights: speed does not depend on the values.
 * Usage: bench_forward [threads=2] [batch=16] [seq=64] [reps=5]
 */
#include <cblas.h>
#include <math.h>

#include "bench_util.h"
#include "lm.h"
#include "model.h"

static double time_sgemm(int M, int N, int K, int reps)
{
    float *a = malloc((size_t)M * K * sizeof(float)), *b = malloc((size_t)N * K * sizeof(float));
    float *c = malloc((size_t)M * N * sizeof(float));
    for (size_t i = 0; i < (size_t)M * K; i++)
        a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++)
        b[i] = (float)(i % 5) * 0.1f;
    double t[16];
    for (int r = 0; r <= reps; r++) {
        double t0 = bench_now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c,
                    N);
        t[r] = bench_now() - t0;
    }
    free(a);
    free(b);
    free(c);
    return 2.0 * M * N * K / bench_median(t + 1, reps) / 1e9;
}

static int run_shape(const char *tag, const model_config *cfg, pool *pl, int N, int B, int T,
                     int reps, double sgemm_gflops);

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int B = argc > 2 ? atoi(argv[2]) : 16;
    int T = argc > 3 ? atoi(argv[3]) : 64;
    int reps = argc > 4 ? atoi(argv[4]) : 5;
    if (threads < 1 || B < 1 || T < 2 || reps < 1 || reps > 15) {
        fprintf(stderr, "usage: bench_forward [threads] [batch] [seq] [reps<=15]\n");
        return 2;
    }
    bench_print_machine("forward pass, OPT-125m shape (12 x 768, 12 heads, FFN 3072, V 50272)");
    printf("# threads %d, batch %d x %d tokens, median of %d\n", threads, B, T, reps);
    pool p;
    hl_err err;
    if (pool_init(&p, threads, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const int N = B * T;
    lm_set_blas_threads(threads); /* the ceiling: OpenBLAS's own threading */
    double g1 = time_sgemm(N, 768, 768, reps), g2 = time_sgemm(N, 3072, 768, reps),
           g3 = time_sgemm(N, 768, 3072, reps);
    /* weight the three shapes as the body uses them: 4 C², C·F, F·C */
    double body_flops = 2.0 * N * (4.0 * 768 * 768 + 2.0 * 768 * 3072);
    double sg_time = 2.0 * N * 4.0 * 768 * 768 / (g1 * 1e9) + 2.0 * N * 768 * 3072 / (g2 * 1e9) +
                     2.0 * N * 768 * 3072 / (g3 * 1e9);
    double sgemm_gflops = body_flops / sg_time / 1e9;
    printf("sgemm_gflops_%dx768x768   %.1f\n", N, g1);
    printf("sgemm_gflops_%dx3072x768  %.1f\n", N, g2);
    printf("sgemm_gflops_%dx768x3072  %.1f\n", N, g3);
    printf("sgemm_gflops_body_mix     %.1f\n", sgemm_gflops);

    lm_set_blas_threads(1); /* the model splits sgemm across its own pool */
    model_config c = {.family = MODEL_FAMILY_OPT, .n_layers = 12, .d_model = 768, .n_heads = 12,
                      .d_ffn = 3072, .vocab = 50272, .max_pos = 2048, .d_embed = 768,
                      .pos_offset = 2, .pre_ln = true, .final_ln = true, .ln_affine = true,
                      .bias = true, .tied_head = true, .ln_eps = 1e-5f, .act = MODEL_ACT_RELU,
                      .bos_id = 2, .eos_id = 2, .pad_id = 1, .add_bos = true};
    int rc = run_shape("", &c, &p, N, B, T, reps, sgemm_gflops);
    /* SmolLM2-135M's shape: 30 layers of 576, GQA 9 -> 3 heads of 64, SwiGLU
     * 1536, RMSNorm, rotary positions, tied head over its 49,152 tokens */
    model_config l = {.family = MODEL_FAMILY_LLAMA, .n_layers = 30, .d_model = 576, .n_heads = 9,
                      .n_kv_heads = 3, .head_dim = 64, .d_ffn = 1536, .vocab = 49152,
                      .max_pos = 2048, .d_embed = 576, .pre_ln = true, .final_ln = true,
                      .ln_affine = true, .tied_head = true, .ln_eps = 1e-5f,
                      .act = MODEL_ACT_SILU, .rms_norm = true, .gated_mlp = true,
                      .rope_theta = 100000.0, .bos_id = 1, .eos_id = 2, .pad_id = -1};
    if (!rc)
        rc = run_shape("smollm2_", &l, &p, N, B, T, reps, sgemm_gflops);
    pool_free(&p);
    return rc;
}

/* One model shape: body, full-vocabulary and classification forwards. */
static int run_shape(const char *tag, const model_config *cfg, pool *pl, int N, int B, int T,
                     int reps, double sgemm_gflops)
{
    hl_err err;
    model_config c = *cfg;
    model m;
    if (model_init_from_config(&m, &c, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < m.params.n; i++)
        m.params.data[i] = (float)((i * 2654435761u) % 1000) * 1e-4f - 0.05f;
    model_set_pool(&m, pl);
    int32_t *tok = malloc((size_t)N * sizeof *tok), *starts = malloc((size_t)(B + 1) * 4);
    for (int i = 0; i < N; i++)
        tok[i] = (i * 7919) % c.vocab;
    for (int b = 0; b <= B; b++)
        starts[b] = b * T;
    model_batch batch = {.tokens = tok, .seq_start = starts, .n_seq = B};
    float *logits = malloc((size_t)N * c.vocab * sizeof(float));
    int32_t *last = malloc((size_t)B * 4), ids[2] = {6587, 372};
    for (int b = 0; b < B; b++)
        last[b] = starts[b + 1] - 1;
    float cls[64];
    double tb[16], tf[16], tc[16];
    for (int r = 0; r <= reps; r++) {
        double t0 = bench_now();
        model_forward(&m, &batch, &err);
        double t1 = bench_now();
        model_logits_rows(&m, logits, NULL, (size_t)N);
        double t2 = bench_now();
        model_logits_select(&m, cls, last, (size_t)(B < 32 ? B : 32), ids, 2);
        double t3 = bench_now();
        tb[r] = t1 - t0;
        tf[r] = t2 - t0;
        tc[r] = (t1 - t0) + (t3 - t2);
    }
    double body = bench_median(tb + 1, reps), full = bench_median(tf + 1, reps),
           clsf = bench_median(tc + 1, reps);
    double flops = model_flops_body(&c, N, T);
    char k[64];
#define OUT(name, fmt, v) (snprintf(k, sizeof k, "%s%s", tag, name), printf("%-32s" fmt "\n", k, v))
    OUT("body_ms", "%.1f", body * 1e3);
    OUT("body_gflops", "%.1f", flops / body / 1e9);
    OUT("body_vs_sgemm", "%.2f", flops / body / 1e9 / sgemm_gflops);
    OUT("forward_full_logits_ms", "%.1f", full * 1e3);
    OUT("forward_class_logits_ms", "%.1f", clsf * 1e3);
    OUT("tokens_per_s_class", "%.0f", N / clsf);
    OUT("peak_rss_mib", "%.0f", bench_peak_rss_mib());
#undef OUT
    free(tok);
    free(starts);
    free(logits);
    free(last);
    model_free(&m);
    return 0;
}

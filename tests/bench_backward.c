/* bench_backward.c - speed of one first-order training step on a small model.
 *
 * One step = training forward + backward of the causal-LM loss over a batch
 * (backward_lm, full-vocabulary head on every predicted token) + an AdamW
 * update of every parameter.  Prints the time of each part, tokens/s of the
 * whole step, the GFLOP/s of forward + backward (backward_flops), the
 * inference forward's time on the same batch for comparison, and peak RSS.
 * The default shape is the size of model `helene pretrain` is meant for
 * (OPT, 4 x 256, FFN 1024, 8192-token vocabulary, 16 x 128 tokens).
 * Random weights: speed does not depend on the values.
 * Usage: bench_backward [threads=2] [layers=4] [hidden=256] [vocab=8192] [batch=16] [seq=128]
 *                       [reps=3]
 */
#include <math.h>

#include "adamw.h"
#include "backward.h"
#include "bench_util.h"
#include "lm.h"
#include "model.h"

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    int L = argc > 2 ? atoi(argv[2]) : 4;
    int C = argc > 3 ? atoi(argv[3]) : 256;
    int V = argc > 4 ? atoi(argv[4]) : 8192;
    int B = argc > 5 ? atoi(argv[5]) : 16;
    int T = argc > 6 ? atoi(argv[6]) : 128;
    int reps = argc > 7 ? atoi(argv[7]) : 3;
    if (threads < 1 || L < 1 || C < 8 || C % 4 || V < 16 || B < 1 || T < 2 || reps < 1 ||
        reps > 15) {
        fprintf(stderr, "usage: bench_backward [threads] [layers] [hidden] [vocab] [batch] [seq] "
                        "[reps<=15]\n");
        return 2;
    }
    char what[256];
    snprintf(what, sizeof what,
             "first-order training step: OPT %d x %d, %d heads, FFN %d, V %d, tied head", L, C,
             C / 64 > 0 ? C / 64 : 1, 4 * C, V);
    bench_print_machine(what);
    printf("# threads %d, batch %d x %d tokens, median of %d\n", threads, B, T, reps);
    pool p;
    hl_err err;
    if (pool_init(&p, threads, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    lm_set_blas_threads(1); /* the engine splits sgemm across its own pool */
    model_config c = {.family = MODEL_FAMILY_OPT, .n_layers = L, .d_model = C,
                      .n_heads = C / 64 > 0 ? C / 64 : 1, .d_ffn = 4 * C, .vocab = V,
                      .max_pos = T, .d_embed = C, .pos_offset = 2, .pre_ln = true,
                      .final_ln = true, .ln_affine = true, .bias = true, .tied_head = true,
                      .ln_eps = 1e-5f, .act = MODEL_ACT_RELU, .bos_id = 2, .eos_id = 2,
                      .pad_id = 1, .add_bos = true};
    model m;
    backward bw;
    adamw opt;
    adamw_config ac = adamw_config_default();
    if (model_init_from_config(&m, &c, &err) || backward_init(&bw, &m, &err) ||
        adamw_init(&opt, &m.params, &ac, &p, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    for (size_t i = 0; i < m.params.n; i++)
        m.params.data[i] = (float)((i * 2654435761u) % 1000) * 4e-5f - 0.02f;
    model_set_pool(&m, &p);
    const int N = B * T;
    int32_t *tok = malloc((size_t)N * sizeof *tok), *starts = malloc((size_t)(B + 1) * 4);
    for (int i = 0; i < N; i++)
        tok[i] = (int32_t)(((unsigned)i * 7919u) % (unsigned)V);
    for (int b = 0; b <= B; b++)
        starts[b] = b * T;
    model_batch batch = {.tokens = tok, .seq_start = starts, .n_seq = B};
    double tf[16], tb[16], ta[16];
    double loss = 0;
    for (int r = 0; r <= reps; r++) {
        double t0 = bench_now();
        if (model_forward(&m, &batch, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double t1 = bench_now();
        backward_zero_grad(&bw);
        double sum;
        size_t count;
        if (backward_lm(&bw, &sum, &count, &batch, 1, 1.0, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double t2 = bench_now();
        if (adamw_step(&opt, NULL, bw.grad.data, &err)) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        double t3 = bench_now();
        tf[r] = t1 - t0;
        tb[r] = t2 - t1;
        ta[r] = t3 - t2;
        loss = sum / (double)count;
    }
    double fwd = bench_median(tf + 1, reps), fb = bench_median(tb + 1, reps),
           ad = bench_median(ta + 1, reps);
    double rows = (double)B * (T - 1);
    double flops = backward_flops(&c, N, T, rows);
    printf("params                     %zu\n", param_set_count(&m.params));
    printf("inference_body_ms          %.1f\n", fwd * 1e3);
    printf("forward_backward_ms        %.1f\n", fb * 1e3);
    printf("adamw_ms                   %.1f\n", ad * 1e3);
    printf("step_ms                    %.1f\n", (fb + ad) * 1e3);
    printf("tokens_per_s               %.0f\n", N / (fb + ad));
    printf("forward_backward_gflops    %.1f\n", flops / fb / 1e9);
    printf("loss                       %.4f\n", loss);
    printf("peak_rss_mib               %.0f\n", bench_peak_rss_mib());
    free(tok);
    free(starts);
    adamw_free(&opt);
    backward_free(&bw);
    model_free(&m);
    pool_free(&p);
    return 0;
}

/* cpu_loss.c — softmax cross-entropy over vocabulary rows for the CPU backend: the max, then the
 * max-shifted exponentials in fp32 and their sum in double (V is 129,280 for DeepSeek-V3, where a
 * float sum would lose ~4 digits), lse = max + log(sum) in double. The max, the exponentials and
 * the sum are common/vexp.h's (AVX2 or the portable path, same bits), the same functions the
 * rollout sampler uses for the logprobs it records, so the two agree bit for bit. One row, one
 * thread: batch-invariant.
 *
 * With a gradient the sum pass writes e_i = exp(x_i − max) over the logits (the row is then
 * rewritten in place as grad_scale · (e_i / sum − [i == target])), so each exponential is
 * computed once. */
#include <math.h>

#include "common/vexp.h"
#include "cpu_internal.h"

/* x[v] = (float)(gs · (x[v] · inv)), all in double: elementwise IEEE operations, so any vector
 * width gives the same bits; the AVX2 clone only runs them 4 doubles at a time. */
static inline __attribute__((always_inline)) void scale_row(float *x, int64_t V, double inv,
                                                            double gs) {
    for (int64_t v = 0; v < V; v++) x[v] = (float)(gs * ((double)x[v] * inv));
}
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
__attribute__((target("avx2"))) static void scale_row_avx2(float *x, int64_t V, double inv,
                                                           double gs) {
    scale_row(x, V, inv, gs);
}
#define V3_CE_AVX2 1
#endif

void cpu_cross_entropy(v3_kctx *ctx, float *logits, int64_t ld, float *loss,
                       const int32_t *targets, int64_t T, int64_t V, float grad_scale) {
    int bad = 0;
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (T * V > 16384)
    for (int64_t t = 0; t < T; t++) {
        float *x = logits + t * ld;
        int32_t y = targets[t];
        if (y >= V) {
#pragma omp atomic write
            bad = 1;
            y = -1;
        }
        if (y < 0) { /* ignored target */
            if (loss) loss[t] = 0.0f;
            if (grad_scale != 0.0f)
                for (int64_t v = 0; v < V; v++) x[v] = 0.0f;
            continue;
        }
        const float mx = v3_max_f32(x, V), xy = x[y];
        const double sum = grad_scale != 0.0f ? v3_exp_store(x, V, 1.0f, mx, x, NULL)
                                              : v3_sum_exp(x, V, mx);
        double lse = (double)mx + log(sum);
        if (loss) loss[t] = (float)(lse - (double)xy);
        if (grad_scale != 0.0f) { /* x[v] holds e_v now */
            const double inv = 1.0 / sum, gs = (double)grad_scale;
            const float ey = x[y];
#ifdef V3_CE_AVX2
            if (v3_vexp_uses_avx2()) scale_row_avx2(x, V, inv, gs);
            else
#endif
                scale_row(x, V, inv, gs);
            x[y] = (float)(gs * ((double)ey * inv - 1.0));
        }
    }
    if (bad) v3k_fail(ctx, V3_ERANGE, "cross_entropy: a target is >= V = %lld (row ignored)",
                      (long long)V);
}

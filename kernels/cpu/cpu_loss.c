/* cpu_loss.c — softmax cross-entropy over vocabulary rows for the CPU backend: max-shifted
 * exponentials in fp32, their sum and the log in double (V is 129,280 for DeepSeek-V3, where a
 * float sum would lose ~4 digits). One row, one thread: batch-invariant. */
#include <math.h>

#include "cpu_internal.h"

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
        float mx = -INFINITY;
        for (int64_t v = 0; v < V; v++)
            if (x[v] > mx) mx = x[v];
        double sum = 0;
        for (int64_t v = 0; v < V; v++) sum += expf(x[v] - mx);
        double lse = (double)mx + log(sum);
        if (loss) loss[t] = (float)(lse - (double)x[y]);
        if (grad_scale != 0.0f) {
            double inv = 1.0 / sum;
            for (int64_t v = 0; v < V; v++) {
                double pr = (double)expf(x[v] - mx) * inv;
                x[v] = (float)((double)grad_scale * (v == y ? pr - 1.0 : pr));
            }
        }
    }
    if (bad) v3k_fail(ctx, V3_ERANGE, "cross_entropy: a target is >= V = %lld (row ignored)",
                      (long long)V);
}

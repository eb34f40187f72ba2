/* cu_loss.cu — softmax cross-entropy over vocabulary rows (fp32 logits, in-place gradient), with
 * the CPU backend's arithmetic: max-shifted exponentials in fp32, their sum and the log in
 * double. One block per row, fixed-tree reductions: a row's result does not depend on the other
 * rows (batch invariance) and is the same run to run. */
#include <math.h>

#include "kernels/cuda/cuda_common.cuh"

__global__ void __launch_bounds__(CU_RED_THREADS)
k_cross_entropy(float *logits, int64_t ld, float *loss, const int32_t *targets, int64_t V,
                float grad_scale, int *flags) {
    __shared__ double shd[CU_RED_THREADS];
    __shared__ float shf[CU_RED_THREADS];
    int64_t t = blockIdx.x;
    float *x = logits + t * ld;
    int32_t y = targets[t];
    if (y >= V) { /* out of range: reported, then treated as ignored (as the CPU backend) */
        if (threadIdx.x == 0) cu_flag(flags, CU_FLAG_CE_TARGET);
        y = -1;
    }
    if (y < 0) {
        if (loss && threadIdx.x == 0) loss[t] = 0.0f;
        if (grad_scale != 0.0f)
            for (int64_t v = threadIdx.x; v < V; v += blockDim.x) x[v] = 0.0f;
        return;
    }
    float mx = -INFINITY;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) mx = fmaxf(mx, x[v]);
    mx = cu_block_max(mx, shf);
    double sum = 0;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) sum += (double)expf(x[v] - mx);
    sum = cu_block_sum_d(sum, shd);
    double lse = (double)mx + log(sum);
    float xy = x[y];
    if (loss && threadIdx.x == 0) loss[t] = (float)(lse - (double)xy);
    if (grad_scale == 0.0f) return;
    __syncthreads(); /* every thread has read x[y] before the row is overwritten */
    double inv = 1.0 / sum;
    for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
        double pr = (double)expf(x[v] - mx) * inv;
        x[v] = (float)((double)grad_scale * (v == y ? pr - 1.0 : pr));
    }
}

extern "C" void cu_cross_entropy(v3_kctx *ctx, float *logits, int64_t ld, float *loss,
                                 const int32_t *targets, int64_t T, int64_t V, float grad_scale) {
    if (T <= 0 || V <= 0) return;
    if (T > 2147483647) {
        v3k_fail(ctx, V3_EUNSUPPORTED, "cross_entropy: %lld rows", (long long)T);
        return;
    }
    k_cross_entropy<<<(unsigned)T, CU_RED_THREADS, 0, cu_stream(ctx)>>>(
        logits, ld, loss, targets, V, grad_scale, cu_state(ctx)->flags);
    CU_LAUNCH_CHECK(ctx, "k_cross_entropy");
}

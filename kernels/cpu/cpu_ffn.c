/* cpu_ffn.c — SwiGLU activation forward/backward (model-spec §5) for the CPU backend. */
#include <math.h>

#include "cpu_internal.h"

static inline float sigmoidf_(float g) { return 1.0f / (1.0f + expf(-g)); }

void cpu_swiglu_fwd(v3_kctx *ctx, float *out, const float *in, int64_t ld_in, int64_t u_off,
                    int64_t rows, int64_t cols) {
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (rows * cols > 16384)
    for (int64_t r = 0; r < rows; r++) {
        const float *g = in + r * ld_in, *u = g + u_off;
        float *o = out + r * cols;
        for (int64_t j = 0; j < cols; j++) o[j] = g[j] * sigmoidf_(g[j]) * u[j];
    }
}

/* d silu(g)/dg = σ(g)·(1 + g·(1 − σ(g))) */
void cpu_swiglu_bwd(v3_kctx *ctx, float *din, const float *dout, const float *in, int64_t ld_in,
                    int64_t u_off, int64_t rows, int64_t cols) {
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (rows * cols > 16384)
    for (int64_t r = 0; r < rows; r++) {
        const float *g = in + r * ld_in, *u = g + u_off, *d = dout + r * cols;
        float *dg = din + r * ld_in, *du = dg + u_off;
        for (int64_t j = 0; j < cols; j++) {
            float s = sigmoidf_(g[j]);
            float gj = g[j], uj = u[j]; /* read before writing: din may alias in */
            dg[j] = d[j] * uj * (s * (1.0f + gj * (1.0f - s)));
            du[j] = d[j] * (gj * s);
        }
    }
}

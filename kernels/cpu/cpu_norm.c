/* cpu_norm.c — RMSNorm forward/backward and interleaved-pair RoPE for the CPU backend.
 * Row statistics are summed in double in index order: one row's result never depends on the
 * other rows of the batch. */
#include <math.h>

#include "cpu_internal.h"

void cpu_rmsnorm_fwd(v3_kctx *ctx, float *out, int64_t ldo, float *rstd, const float *x,
                     int64_t ldx, const float *w, int64_t T, int64_t C, float eps) {
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (T * C > 16384)
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * ldx;
        double ss = 0;
        for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
        float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
        float *o = out + t * ldo;
        for (int64_t c = 0; c < C; c++) o[c] = w[c] * (xr[c] * r);
        if (rstd) rstd[t] = r;
    }
}

/* dx = rstd·(g − x̂·mean(g ⊙ x̂)) with g = w ⊙ dout and x̂ = x·rstd: the exact derivative of
 * w ⊙ x·(mean(x²)+eps)^(-1/2). dw is reduced over tokens per column, in token order. */
void cpu_rmsnorm_bwd(v3_kctx *ctx, float *dx, int64_t lddx, float *dw, const float *dout,
                     int64_t ldd, const float *x, int64_t ldx, const float *w, const float *rstd,
                     int64_t T, int64_t C, int accumulate) {
    int nt = cpu_threads(ctx);
#pragma omp parallel for num_threads(nt) if (T * C > 16384)
    for (int64_t t = 0; t < T; t++) {
        const float *xr = x + t * ldx, *dr = dout + t * ldd;
        double r = rstd[t], dot = 0;
        for (int64_t c = 0; c < C; c++) dot += (double)w[c] * dr[c] * xr[c] * r;
        double mean = dot / (double)C;
        float *o = dx + t * lddx;
        for (int64_t c = 0; c < C; c++) {
            float v = (float)(r * ((double)w[c] * dr[c] - (double)xr[c] * r * mean));
            o[c] = accumulate ? o[c] + v : v;
        }
    }
    if (!dw) return;
    enum { CB = 64 }; /* column blocks keep the token loop reading contiguous memory */
    int64_t nblk = (C + CB - 1) / CB;
#pragma omp parallel for num_threads(nt) if (T * C > 16384)
    for (int64_t b = 0; b < nblk; b++) {
        int64_t c0 = b * CB, c1 = c0 + CB < C ? c0 + CB : C;
        double acc[CB] = {0};
        for (int64_t t = 0; t < T; t++) {
            const float *xr = x + t * ldx, *dr = dout + t * ldd;
            double r = rstd[t];
            for (int64_t c = c0; c < c1; c++) acc[c - c0] += (double)dr[c] * xr[c] * r;
        }
        /* one rounding and one add per call: running the backward twice doubles dw exactly */
        for (int64_t c = c0; c < c1; c++) dw[c] += (float)acc[c - c0];
    }
}

static void rope(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                 int64_t d_rope, const int32_t *pos, const float *inv_freq, float sign) {
    int64_t np = d_rope / 2;
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (T * H * d_rope > 16384)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < np; i++) {
            /* angle in fp32 as the reference implementation does; cos/sin correctly rounded */
            float ang = (float)pos[t] * inv_freq[i];
            float c = (float)cos((double)ang), s = sign * (float)sin((double)ang);
            for (int64_t h = 0; h < H; h++) {
                float *p = x + t * st + h * sh + 2 * i;
                float a = p[0], b = p[1];
                p[0] = a * c - b * s;
                p[1] = a * s + b * c;
            }
        }
    }
}

void cpu_rope_fwd(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                  int64_t d_rope, const int32_t *pos, const float *inv_freq) {
    rope(ctx, x, T, H, st, sh, d_rope, pos, inv_freq, 1.0f);
}

void cpu_rope_bwd(v3_kctx *ctx, float *x, int64_t T, int64_t H, int64_t st, int64_t sh,
                  int64_t d_rope, const int32_t *pos, const float *inv_freq) {
    rope(ctx, x, T, H, st, sh, d_rope, pos, inv_freq, -1.0f);
}

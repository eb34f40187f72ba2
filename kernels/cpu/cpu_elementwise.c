/* cpu_elementwise.c — AdamW, the squared-norm reduction and the small vector ops
 * (scale, axpy, add, strided 3-D copy) for the CPU backend. */
#include <math.h>
#include <stdlib.h>

#include "cpu_internal.h"

enum { PAR_MIN = 32768 }; /* below this many elements a parallel region costs more than it saves */

/* PyTorch's single-tensor AdamW, operation by operation and in its fp32 rounding order:
 *   p.mul_(1 − lr·wd); m.lerp_(g, 1 − b1); v.mul_(b2).addcmul_(g, g, value = 1 − b2);
 *   denom = v.sqrt() / sqrt(bc2) + eps; p.addcdiv_(m, denom, value = −lr/bc1).
 * Scalars are formed in double (Python floats) and rounded to fp32 once, as torch does for a
 * float tensor. lerp is torch's two-sided formula (weight < 0.5 ? a + w(b−a) : b − (b−a)(1−w)). */
void cpu_adamw(v3_kctx *ctx, float *p, const float *grad, float *m, float *v, int64_t n, float lr,
               float beta1, float beta2, float eps, float weight_decay, float bc1, float bc2,
               float grad_scale) {
    float decay = (float)(1.0 - (double)lr * weight_decay);
    float w1 = (float)(1.0 - (double)beta1);
    float w2 = (float)(1.0 - (double)beta2);
    float step = (float)(-(double)lr / (double)bc1);
    float bc2s = (float)sqrt((double)bc2);
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float g = grad_scale * grad[i];
        float pi = p[i] * decay;
        float mi = m[i];
        mi = w1 < 0.5f ? mi + w1 * (g - mi) : g - (g - mi) * (1.0f - w1);
        float vi = v[i] * beta2 + w2 * g * g;
        float denom = sqrtf(vi) / bc2s + eps;
        p[i] = pi + step * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}

/* Fixed blocks of 4096 elements summed in double, partial sums added in block order: the
 * result does not depend on the thread count. */
void cpu_sumsq(v3_kctx *ctx, const float *x, int64_t n, double *out) {
    enum { BLK = 4096 };
    int64_t nb = (n + BLK - 1) / BLK;
    double stackp[64];
    double *part = nb <= 64 ? stackp : malloc((size_t)nb * sizeof(double));
    if (!part) {
        v3k_fail(ctx, V3_ENOMEM, "sumsq: out of memory");
        *out = NAN;
        return;
    }
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (n > PAR_MIN)
    for (int64_t b = 0; b < nb; b++) {
        int64_t i1 = (b + 1) * BLK < n ? (b + 1) * BLK : n;
        double s = 0;
        for (int64_t i = b * BLK; i < i1; i++) s += (double)x[i] * x[i];
        part[b] = s;
    }
    double s = 0;
    for (int64_t b = 0; b < nb; b++) s += part[b];
    if (part != stackp) free(part);
    *out = s;
}

void cpu_scale(v3_kctx *ctx, float *x, int64_t n, float s) {
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) x[i] *= s;
}

void cpu_axpy(v3_kctx *ctx, float *y, const float *x, int64_t n, float a) {
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

void cpu_add(v3_kctx *ctx, float *out, const float *a, const float *b, int64_t n) {
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (n > PAR_MIN)
    for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

/* With accumulate and ds1 == 0 the n1 sources of one destination are summed first (increasing
 * j) and added once, so no two threads touch a destination and a repeated backward doubles it
 * exactly. Parallel over i only when distinct i have distinct destinations. */
void cpu_copy_3d(v3_kctx *ctx, float *dst, int64_t ds0, int64_t ds1, const float *src, int64_t ss0,
                 int64_t ss1, int64_t n0, int64_t n1, int64_t n2, int accumulate) {
    int reduce = accumulate && ds1 == 0 && n1 > 1;
    int par = (ds0 != 0 || n0 == 1) && n0 * n1 * n2 > PAR_MIN;
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (par)
    for (int64_t i = 0; i < n0; i++) {
        if (reduce) {
            float *d = dst + i * ds0;
            for (int64_t c = 0; c < n2; c++) {
                float acc = src[i * ss0 + c];
                for (int64_t j = 1; j < n1; j++) acc += src[i * ss0 + j * ss1 + c];
                d[c] += acc;
            }
            continue;
        }
        for (int64_t j = 0; j < n1; j++) {
            float *d = dst + i * ds0 + j * ds1;
            const float *s = src + i * ss0 + j * ss1;
            if (accumulate)
                for (int64_t c = 0; c < n2; c++) d[c] += s[c];
            else
                for (int64_t c = 0; c < n2; c++) d[c] = s[c];
        }
    }
}

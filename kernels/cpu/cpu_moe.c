/* cpu_moe.c — MoE dispatch plan, row gather/scatter and the weighted combine for the CPU
 * backend. Sums over rows that meet in one destination are formed first (in increasing row
 * order) and added once, so a backward run twice doubles its result exactly. */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

void cpu_moe_plan(v3_kctx *ctx, const int32_t *topk_idx, int64_t T, int64_t K, int64_t E,
                  int64_t *counts, int32_t *row_of, int32_t *src_of) {
    int64_t *next = calloc((size_t)(E > 0 ? E : 1), sizeof(int64_t));
    if (!next) {
        v3k_fail(ctx, V3_ENOMEM, "moe_plan: out of memory");
        return;
    }
    for (int64_t e = 0; e < E; e++) counts[e] = 0;
    for (int64_t i = 0; i < T * K; i++) {
        int32_t e = topk_idx[i];
        if (e < 0 || e >= E) {
            v3k_fail(ctx, V3_ERANGE, "moe_plan: pair %lld routes to expert %d of %lld",
                     (long long)i, e, (long long)E);
            free(next);
            return;
        }
        counts[e]++;
    }
    for (int64_t e = 0, off = 0; e < E; e++) {
        next[e] = off;
        off += counts[e];
    }
    /* visiting pairs in (t, k) order keeps each expert's rows in token order (stable) */
    for (int64_t i = 0; i < T * K; i++) {
        int64_t r = next[topk_idx[i]]++;
        row_of[i] = (int32_t)r;
        src_of[r] = (int32_t)(i / K);
    }
    free(next);
}

void cpu_gather_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx, int64_t R,
                     int64_t C) {
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (R * C > 16384)
    for (int64_t r = 0; r < R; r++)
        memcpy(dst + r * C, src + (int64_t)idx[r] * C, (size_t)C * sizeof(float));
}

void cpu_scatter_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx, int64_t R,
                      int64_t C) {
    for (int64_t r = 0; r < R; r++)
        if (idx[r] < 0) {
            v3k_fail(ctx, V3_ERANGE, "scatter_rows: row %lld has index %d", (long long)r, idx[r]);
            return;
        }
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (R * C > 16384)
    for (int64_t r = 0; r < R; r++)
        memcpy(dst + (int64_t)idx[r] * C, src + r * C, (size_t)C * sizeof(float));
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

void cpu_scatter_add_rows(v3_kctx *ctx, float *dst, const float *src, const int32_t *idx,
                          int64_t R, int64_t C) {
    if (R <= 0 || C <= 0) return;
    /* order rows by (destination, r): each destination is then owned by one thread */
    int64_t *key = malloc((size_t)R * sizeof(int64_t));
    int64_t *start = malloc((size_t)(R + 1) * sizeof(int64_t));
    if (!key || !start) {
        free(key);
        free(start);
        v3k_fail(ctx, V3_ENOMEM, "scatter_add_rows: out of memory");
        return;
    }
    for (int64_t r = 0; r < R; r++) {
        if (idx[r] < 0) {
            v3k_fail(ctx, V3_ERANGE, "scatter_add_rows: row %lld has index %d", (long long)r, idx[r]);
            free(key);
            free(start);
            return;
        }
        key[r] = ((int64_t)idx[r] << 32) | r;
    }
    qsort(key, (size_t)R, sizeof(int64_t), cmp_i64);
    int64_t ng = 0;
    for (int64_t i = 0; i < R; i++)
        if (i == 0 || (key[i] >> 32) != (key[i - 1] >> 32)) start[ng++] = i;
    start[ng] = R;
    int failed = 0;
#pragma omp parallel num_threads(cpu_threads(ctx)) if (R * C > 16384)
    {
        float *acc = malloc((size_t)C * sizeof(float));
        if (!acc) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 8)
        for (int64_t g = 0; g < ng; g++) {
            if (!acc) continue;
            int64_t d = key[start[g]] >> 32;
            for (int64_t i = start[g]; i < start[g + 1]; i++) {
                const float *s = src + (key[i] & 0xffffffff) * C;
                if (i == start[g]) memcpy(acc, s, (size_t)C * sizeof(float));
                else
                    for (int64_t c = 0; c < C; c++) acc[c] += s[c];
            }
            float *o = dst + d * C;
            for (int64_t c = 0; c < C; c++) o[c] += acc[c];
        }
        free(acc);
    }
    free(key);
    free(start);
    if (failed) v3k_fail(ctx, V3_ENOMEM, "scatter_add_rows: out of memory");
}

void cpu_moe_combine_fwd(v3_kctx *ctx, float *y, const float *yperm, const int32_t *row_of,
                         const float *w, int64_t T, int64_t K, int64_t C) {
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (T * K * C > 16384)
    for (int64_t t = 0; t < T; t++) {
        float *yt = y + t * C;
        for (int64_t c = 0; c < C; c++) {
            float acc = 0.0f;
            for (int64_t k = 0; k < K; k++)
                acc += w[t * K + k] * yperm[(int64_t)row_of[t * K + k] * C + c];
            yt[c] += acc;
        }
    }
}

void cpu_moe_combine_bwd(v3_kctx *ctx, float *dyperm, float *dw, const float *dy,
                         const float *yperm, const int32_t *row_of, const float *w, int64_t T,
                         int64_t K, int64_t C) {
#pragma omp parallel for num_threads(cpu_threads(ctx)) if (T * K * C > 16384)
    for (int64_t t = 0; t < T; t++) {
        const float *d = dy + t * C;
        for (int64_t k = 0; k < K; k++) {
            int64_t r = row_of[t * K + k];
            const float *yp = yperm + r * C;
            float *g = dyperm + r * C;
            float wk = w[t * K + k];
            double dot = 0;
            for (int64_t c = 0; c < C; c++) {
                g[c] = wk * d[c];
                dot += (double)d[c] * yp[c];
            }
            dw[t * K + k] = (float)dot;
        }
    }
}

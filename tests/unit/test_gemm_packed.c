/* test_gemm_packed.c — the backend's optional prepacked-B GEMM (pack_nt + gemm_nt_packed, used by
 * the rollout engine for the lm_head): C = A · Bᵀ from the packed B must equal gemm(0, 1, ...) on
 * the plain B bit for bit, for every row count the kernels special-case (1..5 few-row tiles, six-row
 * groups, their mix), widths that leave a partial last strip, K over one block and over several
 * (K-blocking), the leading strips of a wider packed B (MTP drafts over the first token ids), one
 * and two threads, and the AVX2 and portable kernels. */
#include <stdlib.h>
#include <string.h>

#include "kernels/cpu/cpu_internal.h"
#include "kernels/kernels.h"
#include "testutil.h"

static int64_t n_cases, n_bad;

static void one(v3_kctx *ctx, v3_rng *r, int64_t M, int64_t N, int64_t Npack, int64_t K) {
    const v3_backend *be = ctx->be;
    float *A = malloc(sizeof(float) * (size_t)(M * K));
    float *B = malloc(sizeof(float) * (size_t)(Npack * K));
    float *Bp = malloc(sizeof(float) * (size_t)V3_PACKED_NT_FLOATS(Npack, K));
    float *C0 = malloc(sizeof(float) * (size_t)(M * N)), *C1 = malloc(sizeof(float) * (size_t)(M * N));
    if (!A || !B || !Bp || !C0 || !C1) {
        CHECK(0, "out of memory");
        goto out;
    }
    t_fill_normal(r, A, M * K, 1.0f);
    t_fill_normal(r, B, Npack * K, 1.0f);
    for (int64_t i = 0; i < M * N; i++) C1[i] = (float)i; /* overwritten: beta is 0 */
    be->gemm(ctx, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C0, N);
    be->pack_nt(ctx, Bp, B, K, Npack, K);
    be->gemm_nt_packed(ctx, M, N, K, A, K, Bp, C1, N);
    n_cases++;
    if (memcmp(C0, C1, sizeof(float) * (size_t)(M * N))) {
        n_bad++;
        int64_t i = 0;
        while (C0[i] == C1[i]) i++;
        CHECK(0, "M %lld N %lld (packed %lld) K %lld: C[%lld, %lld] %.9g, packed %.9g", (long long)M,
              (long long)N, (long long)Npack, (long long)K, (long long)(i / N), (long long)(i % N),
              C0[i], C1[i]);
    }
out:
    free(A), free(B), free(Bp), free(C0), free(C1);
}

static void sweep(v3_kctx *ctx, v3_rng *r, const char *what) {
    static const int64_t Ms[] = {1, 2, 3, 4, 5, 6, 7, 13, 100};
    static const int64_t Ns[][2] = {{16, 16}, {37, 37}, {130, 130}, {300, 517}, {64, 100}};
    static const int64_t Ks[] = {1, 8, 100, 700, 1300};
    int64_t bad0 = n_bad, c0 = n_cases;
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
            for (size_t k = 0; k < sizeof Ks / sizeof *Ks; k++) one(ctx, r, Ms[a], Ns[b][0], Ns[b][1], Ks[k]);
    printf("%s: %lld cases, %lld differ\n", what, (long long)(n_cases - c0), (long long)(n_bad - bad0));
}

int main(void) {
    v3_err err;
    v3_rng r;
    v3_rng_seed(&r, t_seed("test_gemm_packed"));
    const v3_backend *be = v3_backend_cpu();
    CHECK(be->pack_nt && be->gemm_nt_packed, "the CPU backend has the prepacked GEMM");
    if (!be->pack_nt || !be->gemm_nt_packed) return t_finish("test_gemm_packed");
    for (int threads = 1; threads <= 2; threads++) {
        v3_kctx ctx;
        if (v3_kctx_init(&ctx, be, threads, &err)) {
            CHECK(0, "cpu backend: %s", err.msg);
            break;
        }
        char what[64];
        snprintf(what, sizeof what, "%d thread%s", threads, threads > 1 ? "s" : "");
        sweep(&ctx, &r, what);
        cpu_gemm_force_scalar(1);
        snprintf(what, sizeof what, "%d thread%s, portable kernels", threads, threads > 1 ? "s" : "");
        sweep(&ctx, &r, what);
        cpu_gemm_force_scalar(0);
        v3_kctx_free(&ctx);
    }
    CHECK(n_cases == 4 * 9 * 5 * 5, "%lld cases run", (long long)n_cases);
    return t_finish("test_gemm_packed");
}

/* test_gemm_packed.c — the CPU backend's packed weight copies (pack_nt, read by gemm and
 * gemm_grouped through v3_kctx.wpacks; the rollout engine's decode path): C = A · Bᵀ with B's
 * copy registered must equal gemm(0, 1, ...) on the plain B bit for bit, as fp32 strips and as
 * bf16 strips (B's values rounded to bf16 first, as a bf16 checkpoint's are), for every row count
 * the kernels special-case (1..5 few-row tiles, six-row groups, their mix: bf16 copies serve only
 * M < 6, the rest read B), widths that leave a partial last strip, K over one block and over
 * several (K-blocking), the leading rows of a wider B (MTP drafts over the first token ids), one
 * and two threads, and the AVX2 and portable kernels. A copy made from ANOTHER matrix,
 * registered under B, shows that the copy is what is read (and when it is not). pack_nt refuses
 * bf16 for a matrix with one value off the bf16 grid. Grouped calls find each expert's copy. */
#include <stdlib.h>
#include <string.h>

#include "common/dtype.h"
#include "kernels/cpu/cpu_internal.h"
#include "kernels/kernels.h"
#include "testutil.h"

static int64_t n_cases, n_bad;

static void round_bf16(float *x, int64_t n) { /* to nearest even, as checkpoints store it */
    for (int64_t i = 0; i < n; i++) x[i] = v3_bf16_to_f32(v3_f32_to_bf16(x[i]));
}

/* C = A · Bᵀ [M, N] with ctx->wpacks = {w = B, copy of `src`} (or none when src is NULL) */
static void product(v3_kctx *ctx, int64_t M, int64_t N, int64_t Npack, int64_t K, const float *A,
                    const float *B, const void *copy, int bf16, float *C) {
    v3_wpack e = {B, Npack, K, copy, bf16};
    v3_wpacks w = {&e, 1};
    ctx->wpacks = copy ? &w : NULL;
    for (int64_t i = 0; i < M * N; i++) C[i] = (float)i; /* overwritten: beta is 0 */
    ctx->be->gemm(ctx, 0, 1, M, N, K, 1.0f, A, K, B, K, 0.0f, C, N);
    ctx->wpacks = NULL;
}

static int differ(const float *x, const float *y, int64_t n) {
    return memcmp(x, y, sizeof(float) * (size_t)n) != 0;
}

static void one(v3_kctx *ctx, v3_rng *r, int64_t M, int64_t N, int64_t Npack, int64_t K, int bf16,
                int decoy) {
    const v3_backend *be = ctx->be;
    float *A = malloc(sizeof(float) * (size_t)(M * K));
    float *B = malloc(sizeof(float) * (size_t)(Npack * K)), *B2 = malloc(sizeof(float) * (size_t)(Npack * K));
    void *Bp = malloc(V3_PACKED_NT_BYTES(Npack, K, 0));
    float *C0 = malloc(sizeof(float) * (size_t)(M * N)), *C1 = malloc(sizeof(float) * (size_t)(M * N));
    if (!A || !B || !B2 || !Bp || !C0 || !C1) {
        CHECK(0, "out of memory");
        goto out;
    }
    t_fill_normal(r, A, M * K, 1.0f);
    t_fill_normal(r, B, Npack * K, 1.0f);
    t_fill_normal(r, B2, Npack * K, 1.0f);
    if (bf16) round_bf16(B, Npack * K), round_bf16(B2, Npack * K);
    const float *src = decoy ? B2 : B;
    int got = be->pack_nt(ctx, Bp, src, K, Npack, K, bf16);
    n_cases++;
    int used = !bf16 || M < 6; /* a bf16 copy serves the few-row kernels only */
    product(ctx, M, N, Npack, K, A, B, Bp, got, C1);
    product(ctx, M, N, Npack, K, A, decoy && used ? B2 : B, NULL, 0, C0);
    if (got != bf16 || differ(C0, C1, M * N)) {
        n_bad++;
        int64_t i = 0;
        while (i < M * N - 1 && C0[i] == C1[i]) i++;
        CHECK(0, "M %lld N %lld (packed %lld) K %lld %s%s: pack_nt returned %d; C[%lld, %lld] %.9g, "
              "packed %.9g", (long long)M, (long long)N, (long long)Npack, (long long)K,
              bf16 ? "bf16" : "fp32", decoy ? " (decoy copy)" : "", got, (long long)(i / N),
              (long long)(i % N), C0[i], C1[i]);
    }
out:
    free(A), free(B), free(B2), free(Bp), free(C0), free(C1);
}

static void sweep(v3_kctx *ctx, v3_rng *r, const char *what) {
    static const int64_t Ms[] = {1, 2, 3, 4, 5, 6, 7, 13, 100};
    static const int64_t Ns[][2] = {{16, 16}, {37, 37}, {130, 130}, {300, 517}, {64, 100}};
    static const int64_t Ks[] = {1, 8, 100, 700, 1300};
    int64_t bad0 = n_bad, c0 = n_cases;
    for (int bf16 = 0; bf16 <= 1; bf16++)
        for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
            for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
                for (size_t k = 0; k < sizeof Ks / sizeof *Ks; k++)
                    one(ctx, r, Ms[a], Ns[b][0], Ns[b][1], Ks[k], bf16, 0);
    /* decoys: the registered copy is another matrix's, so the result follows whichever was read */
    for (int bf16 = 0; bf16 <= 1; bf16++)
        for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++) one(ctx, r, Ms[a], 130, 130, 700, bf16, 1);
    printf("%s: %lld cases, %lld differ\n", what, (long long)(n_cases - c0), (long long)(n_bad - bad0));
}

/* one value off the bf16 grid: pack_nt packs fp32 (returns 0), and the product is still exact */
static void not_bf16(v3_kctx *ctx, v3_rng *r) {
    enum { M = 1, N = 40, K = 24 };
    float A[M * K], B[N * K], C0[M * N], C1[M * N];
    static float Bp[V3_PACKED_NT_BYTES(N, K, 0) / sizeof(float)];
    t_fill_normal(r, A, M * K, 1.0f);
    t_fill_normal(r, B, N * K, 1.0f);
    round_bf16(B, N * K);
    B[N * K - 1] += 1e-5f;
    int got = ctx->be->pack_nt(ctx, Bp, B, K, N, K, 1);
    CHECK(got == 0, "pack_nt took a matrix with a non-bf16 value as bf16");
    product(ctx, M, N, N, K, A, B, Bp, got, C1);
    product(ctx, M, N, N, K, A, B, NULL, 0, C0);
    CHECK(!differ(C0, C1, M * N), "fp32 fallback copy differs");
}

/* gemm_grouped (the routed experts): three experts' weights registered, rows 1, 0 and 3 */
static void grouped(v3_kctx *ctx, v3_rng *r, int bf16) {
    enum { E = 3, N = 48, K = 80, R = 4 };
    static const int64_t rows[E] = {1, 0, 3};
    float *W = malloc(sizeof(float) * E * N * K), *X = malloc(sizeof(float) * R * K);
    float *Y0 = malloc(sizeof(float) * R * N), *Y1 = malloc(sizeof(float) * R * N);
    char *P = malloc(E * V3_PACKED_NT_BYTES(N, K, 0));
    if (!W || !X || !Y0 || !Y1 || !P) {
        CHECK(0, "out of memory");
        goto out;
    }
    t_fill_normal(r, W, E * N * K, 1.0f);
    t_fill_normal(r, X, R * K, 1.0f);
    if (bf16) round_bf16(W, E * N * K);
    v3_wpack e[E];
    v3_gemm_desc d[E];
    int64_t off = 0;
    for (int x = 0; x < E; x++) {
        void *cp = P + x * V3_PACKED_NT_BYTES(N, K, 0);
        int got = ctx->be->pack_nt(ctx, cp, W + x * N * K, K, N, K, bf16);
        CHECK(got == bf16, "expert %d packed as %d", x, got);
        e[x] = (v3_wpack){W + x * N * K, N, K, cp, got};
        d[x] = (v3_gemm_desc){rows[x], N, K, X + off * K, W + x * N * K, NULL};
        off += rows[x];
    }
    v3_wpacks w = {e, E};
    for (int pass = 0; pass < 2; pass++) {
        float *Y = pass ? Y1 : Y0;
        off = 0;
        for (int x = 0; x < E; x++) d[x].C = Y + off * N, off += rows[x];
        ctx->wpacks = pass ? &w : NULL;
        ctx->be->gemm_grouped(ctx, 0, 1, 1.0f, 0.0f, E, d);
        ctx->wpacks = NULL;
    }
    n_cases++;
    if (differ(Y0, Y1, R * N)) {
        n_bad++;
        CHECK(0, "grouped (%s copies) differs from the plain grouped GEMM", bf16 ? "bf16" : "fp32");
    }
out:
    free(W), free(X), free(Y0), free(Y1), free(P);
}

int main(void) {
    v3_err err;
    v3_rng r;
    v3_rng_seed(&r, t_seed("test_gemm_packed"));
    const v3_backend *be = v3_backend_cpu();
    CHECK(be->pack_nt != NULL, "the CPU backend packs weights");
    if (!be->pack_nt) return t_finish("test_gemm_packed");
    for (int threads = 1; threads <= 2; threads++) {
        v3_kctx ctx;
        if (v3_kctx_init(&ctx, be, threads, &err)) {
            CHECK(0, "cpu backend: %s", err.msg);
            break;
        }
        char what[64];
        for (int scalar = 0; scalar <= 1; scalar++) {
            cpu_gemm_force_scalar(scalar);
            snprintf(what, sizeof what, "%d thread%s%s", threads, threads > 1 ? "s" : "",
                     scalar ? ", portable kernels" : "");
            sweep(&ctx, &r, what);
            not_bf16(&ctx, &r);
            grouped(&ctx, &r, 0);
            grouped(&ctx, &r, 1);
        }
        cpu_gemm_force_scalar(0);
        v3_kctx_free(&ctx);
    }
    CHECK(n_cases == 4 * (2 * 9 * 5 * 5 + 2 * 9 + 2), "%lld cases run", (long long)n_cases);
    return t_finish("test_gemm_packed");
}

/* opcheck.h — the machinery of the op parity harness (test_ops.c), in the pattern of ggml's
 * test-backend-ops: buffers in a backend's memory with guard words past their end, one runner per
 * op that works on any backend, thread-count and cross-backend comparison of the runner's output,
 * central finite differences in double, and the per-op coverage table.
 * Header-only (static functions) because it serves only the harness (opcases.h) and its two
 * programs, test_ops.c and test_gpu_ops.c. */
#ifndef V3_OPCHECK_H
#define V3_OPCHECK_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "testutil.h"

/* ---- op identities, from the contract's X-list ---- */
#define OC_ENUM(n) OP_##n,
enum { V3_OP_LIST(OC_ENUM) N_OPS };
#define OC_NAME(n) #n,
static const char *const oc_names[N_OPS] = {V3_OP_LIST(OC_NAME)};
#define OC_SLOT(n) offsetof(v3_backend, n),
static const size_t oc_slot[N_OPS] = {V3_OP_LIST(OC_SLOT)};

static int oc_has(const v3_backend *be, int op) {
    void *fn;
    memcpy(&fn, (const char *)be + oc_slot[op], sizeof fn);
    return fn != NULL;
}

/* Status of a (backend, op) cell of the coverage table. */
enum { ST_UNTESTED, ST_OK, ST_FAIL, ST_MISSING, ST_SKIPPED };
static const char *const st_text[] = {"untested", "ok", "FAIL", "missing", "skipped (no device)"};

typedef struct oc_env {
    v3_kctx cpu;   /* default thread count: the reference output */
    v3_kctx cpu1;  /* 1 thread and 3 threads: outputs must be bitwise identical to cpu */
    v3_kctx cpu3;
    v3_kctx dev;   /* another compiled backend, when its device is present */
    const v3_backend *dev_be; /* compiled other backend, or NULL */
    int dev_ok;    /* dev initialised */
    const char *dev_label;    /* its column's title in the table; NULL: dev_be's name */
    v3_rng rng;
    int st_cpu[N_OPS], st_dev[N_OPS];
    int dev_fails; /* failed checks of the other backend: not charged to the CPU's column */
} oc_env;

/* ---- backend buffers with guards ---- */
enum { GUARD_WORDS = 16 };
static const uint32_t guard_word = 0x7fa5a5a5u; /* a NaN payload no op produces */

typedef struct oc_bufs {
    v3_kctx *ctx;
    int n;
    void *p[32];
    size_t bytes[32];
    const char *what;
} oc_bufs;

static void *oc_put(oc_bufs *b, const void *host, size_t bytes) {
    v3_kctx *ctx = b->ctx;
    if (b->n >= 32) abort(); /* harness bug, not a test outcome */
    char *p = ctx->be->alloc(ctx, bytes + sizeof(uint32_t) * GUARD_WORDS);
    if (!p) {
        fprintf(stderr, "%s: backend allocation of %zu bytes failed\n", b->what, bytes);
        abort();
    }
    uint32_t g[GUARD_WORDS];
    for (int i = 0; i < GUARD_WORDS; i++) g[i] = guard_word;
    if (host && bytes) ctx->be->to_device(ctx, p, host, bytes);
    ctx->be->to_device(ctx, p + bytes, g, sizeof g);
    b->p[b->n] = p;
    b->bytes[b->n++] = bytes;
    return p;
}
static float *oc_putf(oc_bufs *b, const float *h, int64_t n) { return oc_put(b, h, (size_t)n * 4); }
static int32_t *oc_puti(oc_bufs *b, const int32_t *h, int64_t n) { return oc_put(b, h, (size_t)n * 4); }
static void oc_get(oc_bufs *b, void *host, const void *dev, size_t bytes) {
    b->ctx->be->to_host(b->ctx, host, dev, bytes);
}
/* Checks every buffer's guard words (an op that wrote past any buffer fails), then frees. */
static void oc_done(oc_bufs *b) {
    v3_kctx *ctx = b->ctx;
    ctx->be->sync(ctx);
    for (int i = 0; i < b->n; i++) {
        uint32_t g[GUARD_WORDS];
        ctx->be->to_host(ctx, g, (char *)b->p[i] + b->bytes[i], sizeof g);
        int ok = 1;
        for (int j = 0; j < GUARD_WORDS; j++) ok &= g[j] == guard_word;
        CHECK(ok, "%s [%s]: write past the end of buffer %d (%zu bytes)", b->what, ctx->be->name,
              i, b->bytes[i]);
        ctx->be->free(ctx, b->p[i]);
    }
    v3_err e = {0};
    CHECK(v3k_check(ctx, &e) == 0, "%s [%s]: backend error: %s", b->what, ctx->be->name, e.msg);
    b->n = 0;
}

/* ---- runners and comparisons ----
 * A runner executes one test case on one backend and writes all its outputs, concatenated, into
 * out (integers as exact floats); it returns how many floats it wrote. */
typedef int64_t (*oc_runner)(v3_kctx *ctx, const void *cs, float *out);

static int oc_has_nan(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (isnan(x[i])) return 1;
    return 0;
}

/* Runs a case on the CPU with the default, 1 and 3 threads (bitwise equality required), then on
 * the other backend (normalised error <= dev_tol; bitwise when dev_tol is 0). Returns the CPU
 * output (caller frees). */
static float *oc_run(oc_env *E, int op, const char *name, oc_runner fn, const void *cs,
                     int64_t cap, double dev_tol, int64_t *n_out) {
    float *out = malloc((size_t)cap * 4), *o2 = malloc((size_t)cap * 4);
    int64_t n = fn(&E->cpu, cs, out);
    CHECK(n <= cap, "%s: runner overflow", name);
    CHECK(!oc_has_nan(out, n), "%s: NaN in the CPU output", name);
    for (int pass = 0; pass < 2; pass++) {
        v3_kctx *c = pass ? &E->cpu3 : &E->cpu1;
        int64_t n2 = fn(c, cs, o2);
        CHECK(n2 == n && memcmp(out, o2, (size_t)n * 4) == 0,
              "%s: output with %d thread(s) differs bitwise from the default thread count", name,
              c->n_threads);
    }
    if (E->dev_be) {
        if (!oc_has(E->dev_be, op)) E->st_dev[op] = ST_MISSING;
        else if (!E->dev_ok) E->st_dev[op] = ST_SKIPPED;
        else {
            int f0 = t_failures;
            int64_t n2 = fn(&E->dev, cs, o2);
            /* dev_tol == 0: integer outputs (plans, indices) must match exactly */
            double err = dev_tol == 0 ? (memcmp(o2, out, (size_t)n * 4) ? INFINITY : 0)
                                      : t_rel_err(o2, out, n);
            CHECK(n2 == n && !oc_has_nan(o2, n2) && err <= dev_tol,
                  "%s: %s vs cpu normalised error %.3g > %.3g", name, E->dev_be->name, err, dev_tol);
            if (t_failures > f0) {
                E->st_dev[op] = ST_FAIL;
                E->dev_fails += t_failures - f0;
            }
            else if (E->st_dev[op] != ST_FAIL) E->st_dev[op] = ST_OK;
        }
    }
    free(o2);
    if (n_out) *n_out = n;
    return out;
}

/* ‖got − ref‖ / ‖ref‖ in double (absolute when ref is 0). */
static double oc_err(const float *got, const double *ref, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)got[i] - ref[i];
        if (isnan(got[i])) return INFINITY;
        num += d * d;
        den += ref[i] * ref[i];
    }
    return den > 1e-300 ? sqrt(num / den) : sqrt(num);
}

/* ---- finite differences ----
 * Central differences of a double loss L(x) at up to max_coords coordinates (all when n is
 * small), compared with the analytic gradient; returns the normalised error over the sample. */
typedef double (*oc_loss)(const double *x, const void *cs);

static double oc_fd(oc_env *E, oc_loss L, const void *cs, double *x, int64_t n,
                    const float *analytic, double h, int64_t max_coords) {
    double num = 0, den = 0;
    int64_t m = n < max_coords ? n : max_coords;
    for (int64_t s = 0; s < m; s++) {
        int64_t i = n <= max_coords ? s : (int64_t)v3_rng_below(&E->rng, (uint64_t)n);
        double x0 = x[i];
        x[i] = x0 + h;
        double lp = L(x, cs);
        x[i] = x0 - h;
        double lm = L(x, cs);
        x[i] = x0;
        double fd = (lp - lm) / (2 * h);
        double d = analytic[i] - fd;
        if (isnan(analytic[i])) return INFINITY;
        num += d * d;
        den += fd * fd;
    }
    return den > 1e-300 ? sqrt(num / den) : sqrt(num);
}

/* ---- random inputs (never all zeros) ---- */
static float *oc_randn(oc_env *E, int64_t n, float std) {
    float *x = malloc((size_t)(n > 0 ? n : 1) * 4);
    t_fill_normal(&E->rng, x, n, std);
    return x;
}
static double *oc_tod(const float *x, int64_t n) {
    double *d = malloc((size_t)(n > 0 ? n : 1) * 8);
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* A test function takes f0 = oc_begin(E) first, then marks the ops it covered: the CPU column
 * fails if any CPU check failed since. */
static int oc_begin(const oc_env *E) { return t_failures - E->dev_fails; }
static void oc_mark(oc_env *E, int op, int f0) {
    if (t_failures - E->dev_fails > f0) E->st_cpu[op] = ST_FAIL;
    else if (E->st_cpu[op] != ST_FAIL) E->st_cpu[op] = ST_OK;
    if (!oc_has(E->cpu.be, op)) E->st_cpu[op] = ST_MISSING;
}

/* ---- the environment's lifetime ----
 * oc_env_new seeds the RNG (fresh per run, printed) and opens the three CPU contexts; the caller
 * then sets dev_be, dev and dev_ok. oc_env_free closes what is open; it accepts NULL. */
static oc_env *oc_env_new(const char *test_name) {
    oc_env *E = calloc(1, sizeof *E);
    if (!E) abort(); /* one small struct: no test can run without it */
    v3_rng_seed(&E->rng, t_seed(test_name));
    v3_err err = {0};
    CHECK_OK(v3_kctx_init(&E->cpu, v3_backend_cpu(), 0, &err), &err);
    CHECK_OK(v3_kctx_init(&E->cpu1, v3_backend_cpu(), 1, &err), &err);
    CHECK_OK(v3_kctx_init(&E->cpu3, v3_backend_cpu(), 3, &err), &err);
    return E;
}

static void oc_env_free(oc_env *E) {
    if (!E) return;
    if (E->dev_ok) v3_kctx_free(&E->dev);
    v3_kctx_free(&E->cpu);
    v3_kctx_free(&E->cpu1);
    v3_kctx_free(&E->cpu3);
    free(E);
}

static void oc_table(const oc_env *E) {
    const char *dn = E->dev_label ? E->dev_label : E->dev_be ? E->dev_be->name : "cuda";
    printf("\n%-22s | %-10s | %s\n", "op", "cpu", dn);
    printf("-----------------------+------------+---------------------\n");
    for (int i = 0; i < N_OPS; i++)
        printf("%-22s | %-10s | %s\n", oc_names[i], st_text[E->st_cpu[i]],
               E->dev_be ? st_text[E->st_dev[i]] : "not compiled");
    printf("\n");
}

#endif

/* test_gpu_model.c — the whole model's forward and backward on the device (CUDA; see gpucheck.h)
 * against the CPU backend and against Hugging Face, on the golden configurations of
 * test_model_golden.c (tests/golden/gen_model.py: a, b, c; the packed two-document batch with
 * ignored targets; MTP on in config a), each in the plain and the absorbed (latent) MLA form.
 * Same weights, same batch on both backends. Compared, device vs CPU and device vs HF:
 *   logits, per-token losses, the loss (and MTP logits, MTP loss, total loss): relative error
 *   ‖a−b‖/‖b‖ ≤ 1e-5, the bound the CPU meets against HF (test_model_golden.c); both backends
 *   are fp32 — cuBLAS in pedantic mode (no TF32), fixed reduction orders — so they differ only
 *   in summation order, ~1e-7 relative per op, far inside it;
 *   the gradient of every parameter: ≤ 1e-4 each (a backward chains several times more ops, and
 *   small gradients such as the router's lose relative digits to cancellation);
 *   a second forward+backward without zero_grad doubles every device gradient (≤ 1e-6, as on
 *   the CPU: contributions summed in another order), so a kernel that assigns where it should
 *   accumulate fails.
 * Then the same comparisons with the device in BF16 math (kernels.h V3_MATH_BF16: both operands
 * of every GEMM and attention product rounded to bf16, fp32 accumulation and storage): forward
 * ≤ 3e-2 and gradients ≤ 1e-1 relative — bf16 rounding is 2^-9 per operand, ~1.6e-3 rms per
 * product sum, compounded over a few layers (~5e-3 expected on the logits); gradients of small,
 * cancelling parameters (the router's) lose more. These bounds are first estimates, to be
 * replaced by the measured errors of the first GPU run (printed per configuration).
 * One line per configuration gives the worst errors. Exit 77 without a device. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden.h"
#include "gpucheck.h"
#include "kernels/kernels.h"
#include "model/model.h"
#include "model/params.h"
#include "testutil.h"

#define TOL_FWD 1e-5
#define TOL_GRAD 1e-4
#define TOL_TWICE 1e-6
#define TOL_FWD_BF16 3e-2
#define TOL_GRAD_BF16 1e-1

/* the bounds of the current pass (fp32 or bf16 device math) */
static double tol_fwd = TOL_FWD, tol_grad = TOL_GRAD;

/* One backend's results on a golden batch (host copies). */
typedef struct result {
    double loss;                /* total: CE + λ·MTP */
    double loss_main, loss_mtp;
    float *logits, *mtp_logits; /* [N, V]; mtp_logits NULL without MTP */
    float *tok_loss;            /* [N] */
    float *grads;               /* [table.total] */
    float *grads2;              /* [table.total] after a second forward+backward (device only) */
} result;

static void result_free(result *r) {
    free(r->logits);
    free(r->mtp_logits);
    free(r->tok_loss);
    free(r->grads);
    free(r->grads2);
    memset(r, 0, sizeof *r);
}

/* Forward and backward of golden g on ctx with options o (parameters laid out as t); twice: run
 * them a second time without zero_grad into r->grads2. Returns 0, or non-zero after a failed
 * CHECK (r may hold buffers either way: result_free). */
static int run(v3_kctx *ctx, const golden *g, const v3_model_options *o, const v3_param_table *t,
               int twice, result *r) {
    memset(r, 0, sizeof *r);
    v3_err err = {0};
    int64_t N = g->N, V = g->cfg.vocab_size;
    v3_model m;
    int rc = v3_model_init(&m, &g->cfg, ctx, N, o, &err);
    CHECK_OK(rc, &err);
    if (rc) return rc;
    rc = v3_model_load(&m, g->dir, &err);
    CHECK_OK(rc, &err);
    if (!rc && m.table.total != t->total) {
        CHECK(0, "%s: model table of %lld floats, expected %lld", ctx->be->name,
              (long long)m.table.total, (long long)t->total);
        rc = 1;
    }
    size_t gbytes = (size_t)m.table.total * sizeof(float);
    r->logits = calloc((size_t)(N * V), sizeof(float));
    r->mtp_logits = o->mtp ? calloc((size_t)(N * V), sizeof(float)) : NULL;
    r->tok_loss = calloc((size_t)N, sizeof(float));
    r->grads = malloc(gbytes);
    r->grads2 = twice ? malloc(gbytes) : NULL;
    v3_batch b = {.N = N, .tokens = g->tokens, .targets = g->targets, .positions = g->positions,
                  .doc_start = g->doc_start, .token_loss = r->tok_loss, .logits = r->logits,
                  .mtp_logits = r->mtp_logits};
    v3_model_zero_grad(&m);
    if (!rc) CHECK_OK(rc = v3_model_forward(&m, &b, &r->loss, &err), &err);
    if (!rc) CHECK_OK(rc = v3_model_backward(&m, &err), &err);
    if (!rc) {
        r->loss_main = m.loss_main;
        r->loss_mtp = m.loss_mtp;
        ctx->be->to_host(ctx, r->grads, m.grads, gbytes);
    }
    if (!rc && twice) {
        CHECK_OK(rc = v3_model_forward(&m, &b, NULL, &err), &err);
        if (!rc) CHECK_OK(rc = v3_model_backward(&m, &err), &err);
        if (!rc) ctx->be->to_host(ctx, r->grads2, m.grads, gbytes);
    }
    if (!rc) CHECK_OK(rc = v3k_check(ctx, &err), &err);
    v3_model_free(&m);
    return rc;
}

/* ‖a−b‖/‖b‖ over the rows t with valid[t] (the MTP logits of rows that have a target two ahead) */
static double rel_err_rows(const float *a, const float *b, const int32_t *valid, int64_t N,
                           int64_t V) {
    double num = 0, den = 0;
    for (int64_t t = 0; t < N; t++) {
        if (!valid[t]) continue;
        for (int64_t v = 0; v < V; v++) {
            double d = (double)a[t * V + v] - b[t * V + v];
            if (isnan(a[t * V + v])) return INFINITY;
            num += d * d;
            den += (double)b[t * V + v] * b[t * V + v];
        }
    }
    return den > 1e-300 ? sqrt(num / den) : sqrt(num);
}

static double rel1(double a, double b) { return fabs(a - b) / fabs(b); }

/* Worst forward error of one comparison (device against cpu or HF), and its worst gradient. */
typedef struct worst {
    double fwd, grad;
    char fwd_what[32], grad_what[128];
} worst;

static void note_fwd(worst *w, const char *cfg, const char *vs, const char *what, double e) {
    CHECK(e <= tol_fwd, "%s: %s vs %s rel err %.3e > %.0e", cfg, what, vs, e, tol_fwd);
    if (!(e <= w->fwd)) { /* NaN counts as worst */
        w->fwd = e;
        snprintf(w->fwd_what, sizeof w->fwd_what, "%s", what);
    }
}

static void note_grad(worst *w, const char *cfg, const char *vs, const char *name, double e) {
    CHECK(e <= tol_grad, "%s: grad %s vs %s rel err %.3e > %.0e", cfg, name, vs, e, tol_grad);
    if (!(e <= w->grad)) {
        w->grad = e;
        snprintf(w->grad_what, sizeof w->grad_what, "%s", name);
    }
}

static void run_config(v3_kctx *cpu, v3_kctx *dev, const gpu_dev *d, const char *name, int mtp,
                       int absorb) {
    golden g;
    if (golden_open(&g, name)) return;
    char cfg[64];
    snprintf(cfg, sizeof cfg, "%s%s%s%s", name, mtp ? " mtp" : "", absorb ? " absorb" : "",
             dev->math == V3_MATH_BF16 ? " bf16" : "");
    int64_t N = g.N, V = g.cfg.vocab_size;
    v3_model_options o = v3_model_default_options();
    o.mtp = mtp;
    o.absorb = absorb;
    o.loss_chunk = 7; /* several chunks, the last one partial (as test_model_golden.c) */
    if (mtp) {
        float *lam = golden_f32(&g, "mtp.lambda", NULL);
        o.mtp_lambda = lam ? lam[0] : 0.3f;
        free(lam);
    }
    v3_err err = {0};
    v3_param_table t;
    int rc = v3_params_build(&t, &g.cfg, mtp, &err);
    CHECK_OK(rc, &err);
    result r_cpu = {0}, r_dev = {0};
    if (rc || run(cpu, &g, &o, &t, 0, &r_cpu) || run(dev, &g, &o, &t, 1, &r_dev)) {
        result_free(&r_cpu);
        result_free(&r_dev);
        if (!rc) v3_params_free(&t);
        golden_close(&g);
        return;
    }

    /* ---- forward ---- */
    worst wc = {0}, wh = {0}; /* device vs cpu, device vs HF */
    float *ref_logits = golden_f32(&g, "logits", NULL), *ref_loss = golden_f32(&g, "loss", NULL);
    CHECK(ref_logits && ref_loss, "%s: reference logits/loss missing", cfg);
    note_fwd(&wc, cfg, "cpu", "logits", t_rel_err(r_dev.logits, r_cpu.logits, N * V));
    note_fwd(&wc, cfg, "cpu", "token losses", t_rel_err(r_dev.tok_loss, r_cpu.tok_loss, N));
    note_fwd(&wc, cfg, "cpu", "loss", rel1(r_dev.loss_main, r_cpu.loss_main));
    if (ref_logits && ref_loss) {
        note_fwd(&wh, cfg, "HF", "logits", t_rel_err(r_dev.logits, ref_logits, N * V));
        note_fwd(&wh, cfg, "HF", "loss", rel1(r_dev.loss_main, ref_loss[0]));
    }
    if (mtp) {
        int32_t *valid = golden_i32(&g, "mtp.valid", NULL);
        float *rl = golden_f32(&g, "mtp.logits", NULL), *rml = golden_f32(&g, "mtp.loss", NULL);
        float *rtot = golden_f32(&g, "mtp.total", NULL);
        CHECK(valid && rl && rml && rtot, "%s: reference MTP outputs missing", cfg);
        if (valid && rl && rml && rtot) {
            note_fwd(&wc, cfg, "cpu", "mtp logits",
                     rel_err_rows(r_dev.mtp_logits, r_cpu.mtp_logits, valid, N, V));
            note_fwd(&wc, cfg, "cpu", "mtp loss", rel1(r_dev.loss_mtp, r_cpu.loss_mtp));
            note_fwd(&wc, cfg, "cpu", "total loss", rel1(r_dev.loss, r_cpu.loss));
            note_fwd(&wh, cfg, "HF", "mtp logits", rel_err_rows(r_dev.mtp_logits, rl, valid, N, V));
            note_fwd(&wh, cfg, "HF", "mtp loss", rel1(r_dev.loss_mtp, rml[0]));
            note_fwd(&wh, cfg, "HF", "total loss", rel1(r_dev.loss, rtot[0]));
        }
        free(valid), free(rl), free(rml), free(rtot);
    }

    /* ---- every parameter's gradient ---- */
    double twice = 0;
    int compared = 0;
    for (int i = 0; i < t.n; i++) {
        const v3_param_info *p = &t.p[i];
        const float *gd = r_dev.grads + p->offset, *gc = r_cpu.grads + p->offset;
        note_grad(&wc, cfg, "cpu", p->name, t_rel_err(gd, gc, p->numel));
        char key[160];
        snprintf(key, sizeof key, "grad.%s", p->name);
        int64_t n = 0;
        float *ref = golden_f32(&g, key, &n);
        if (ref && n == p->numel) {
            note_grad(&wh, cfg, "HF", p->name, t_rel_err(gd, ref, n));
            compared++;
        } else {
            /* no gradient by design (test_model_golden.c): the router bias, and the MTP module's
             * physical copies of the shared embedding/head */
            int none = !ref && (p->kind == V3_PK_BIAS || (p->layer >= g.cfg.n_layer &&
                                                          (p->kind == V3_PK_EMBED || p->kind == V3_PK_HEAD)));
            CHECK(none, "%s: no usable reference gradient for %s", cfg, p->name);
            double s = 0;
            for (int64_t j = 0; j < p->numel; j++) s += fabs(gd[j]);
            CHECK(s == 0, "%s: %s on %s should get no gradient (|g|₁ = %g)", cfg, p->name, d->label, s);
        }
        free(ref);
        /* second backward: exactly the first one's contributions again, summed in another order */
        float *dbl = malloc((size_t)p->numel * sizeof *dbl);
        for (int64_t j = 0; j < p->numel; j++) dbl[j] = 2.0f * gd[j];
        double e2 = t_rel_err(r_dev.grads2 + p->offset, dbl, p->numel);
        CHECK(e2 <= TOL_TWICE, "%s: second backward on %s: %s not doubled (rel err %.3e)", cfg,
              d->label, p->name, e2);
        if (!(e2 <= twice)) twice = e2;
        free(dbl);
    }
    printf("  %-14s vs cpu: fwd %.2e (%s) grad %.2e (%s) | vs HF: fwd %.2e (%s) grad %.2e (%s, %d "
           "grads) | 2x bwd %.1e\n",
           cfg, wc.fwd, wc.fwd_what[0] ? wc.fwd_what : "-", wc.grad, wc.grad_what[0] ? wc.grad_what : "-",
           wh.fwd, wh.fwd_what[0] ? wh.fwd_what : "-", wh.grad, wh.grad_what[0] ? wh.grad_what : "-",
           compared, twice);

    free(ref_logits);
    free(ref_loss);
    result_free(&r_cpu);
    result_free(&r_dev);
    v3_params_free(&t);
    golden_close(&g);
}

int main(void) {
    gpu_dev d;
    v3_kctx dev, cpu;
    int rc = gpu_open(&d, &dev, "test_gpu_model");
    if (rc) return rc;
    v3_err err = {0};
    if (v3_kctx_init(&cpu, v3_backend_cpu(), 0, &err)) {
        fprintf(stderr, "test_gpu_model: cpu backend: %s\n", err.msg);
        v3_kctx_free(&dev);
        return 1;
    }
    /* the golden set of test_model_golden.c: MTP in config a, both attention forms everywhere;
     * fp32 (exact) then bf16 device math */
    for (int bf16 = 0; bf16 <= 1; bf16++) {
        dev.math = bf16 ? V3_MATH_BF16 : V3_MATH_FP32;
        tol_fwd = bf16 ? TOL_FWD_BF16 : TOL_FWD;
        tol_grad = bf16 ? TOL_GRAD_BF16 : TOL_GRAD;
        for (int absorb = 0; absorb <= 1; absorb++) {
            run_config(&cpu, &dev, &d, "a", 1, absorb);
            run_config(&cpu, &dev, &d, "b", 0, absorb);
            run_config(&cpu, &dev, &d, "c", 0, absorb);
        }
    }
    v3_kctx_free(&cpu);
    v3_kctx_free(&dev);
    return t_finish("test_gpu_model");
}

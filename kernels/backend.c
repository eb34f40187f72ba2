/* backend.c — backend lookup and the execution context's lifetime and sticky error. */
#include "kernels.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#ifndef V3_HAVE_CUDA
const v3_backend *v3_backend_cuda(void) { return NULL; }
#endif

const v3_backend *v3_backend_by_name(const char *name) {
    if (!name) return NULL;
    if (strcmp(name, "cpu") == 0) return v3_backend_cpu();
    if (strcmp(name, "cuda") == 0) return v3_backend_cuda();
    return NULL;
}

int v3_math_by_name(const char *name) {
    static const char *const names[] = {"fp32", "tf32", "bf16"};
    for (int i = 0; name && i < 3; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

const char *v3_math_name(int math) {
    return math == V3_MATH_FP32 ? "fp32" : math == V3_MATH_TF32 ? "tf32" : math == V3_MATH_BF16 ? "bf16" : "?";
}

int v3_kctx_init(v3_kctx *ctx, const v3_backend *be, int n_threads, v3_err *err) {
    memset(ctx, 0, sizeof *ctx);
    if (!be) return v3_errf(err, V3_EUNSUPPORTED, "backend not compiled into this build");
    ctx->be = be;
    ctx->n_threads = n_threads;
    if (be->init) {
        int rc = be->init(ctx, err);
        if (rc) {
            memset(ctx, 0, sizeof *ctx);
            return rc;
        }
    }
    return V3_OK;
}

int v3_kctx_open(v3_kctx *ctx, const char *device, const char *math, int n_threads, v3_err *err) {
    const char *dev = device ? device : "auto";
    const char *mt = math ? math : "auto";
    int want = strcmp(mt, "auto") == 0 ? -2 : v3_math_by_name(mt);
    if (want == -1)
        return v3_errf(err, V3_EINVAL, "math \"%s\": expected auto, fp32, tf32 or bf16", mt);
    if (strcmp(dev, "auto") && strcmp(dev, "cpu") && strcmp(dev, "cuda"))
        return v3_errf(err, V3_EINVAL, "device \"%s\": expected auto, cpu or cuda", dev);
    int rc;
    const v3_backend *cuda = strcmp(dev, "cpu") ? v3_backend_cuda() : NULL;
    if (cuda) {
        v3_err e2;
        rc = v3_kctx_init(ctx, cuda, n_threads, &e2);
        if (rc && !strcmp(dev, "cuda")) return v3_errf(err, V3_EDEVICE, "device cuda: %s", e2.msg);
        if (!rc) {
            ctx->math = want == -2 ? V3_MATH_BF16 : want;
            return V3_OK;
        }
    } else if (!strcmp(dev, "cuda")) {
        return v3_errf(err, V3_EUNSUPPORTED, "device cuda: this build has no CUDA backend");
    }
    rc = v3_kctx_init(ctx, v3_backend_cpu(), n_threads, err);
    if (!rc) ctx->math = V3_MATH_FP32; /* the CPU computes in fp32 whatever was asked */
    return rc;
}

void v3_kctx_free(v3_kctx *ctx) {
    if (!ctx || !ctx->be) return;
    if (ctx->be->fini) ctx->be->fini(ctx);
    memset(ctx, 0, sizeof *ctx);
}

int v3k_check(v3_kctx *ctx, v3_err *err) {
    if (ctx->be && ctx->be->sync) ctx->be->sync(ctx);
    int code = ctx->err.code;
    if (code) {
        if (err) *err = ctx->err;
        memset(&ctx->err, 0, sizeof ctx->err);
    }
    return code;
}

void v3k_fail(v3_kctx *ctx, int code, const char *fmt, ...) {
    if (ctx->err.code) return; /* keep the first failure: later ones are usually its echoes */
    va_list ap;
    va_start(ap, fmt);
    v3_verrf(&ctx->err, code, fmt, ap);
    va_end(ap);
}

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

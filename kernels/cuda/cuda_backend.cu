/* cuda_backend.cu — the CUDA backend's table: device memory, synchronisation and the sticky
 * error; the numeric ops come from kernels/cuda/cu_*.cu through v3_cuda_fill_table, and the
 * device state (stream, cuBLAS handles, workspace) from cu_state.cu. Memory ops run on the legacy
 * default stream and the op stream is a blocking one, so the two stay ordered. */
#include <cuda_runtime.h>

#include <stdio.h>
#include <stdlib.h>

#include "kernels/cuda/cuda_ops.h"

/* Records a failed CUDA call in the context with the statement, file and line. */
#define CU_CHECK(ctx, call)                                                                   \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess)                                                                \
            v3k_fail((ctx), V3_EDEVICE, "%s:%d: %s: %s", __FILE__, __LINE__, #call,          \
                     cudaGetErrorString(e_));                                                 \
    } while (0)

/* zero-filled, as the contract asks; NULL on failure (the caller reports it) */
static void *cuda_alloc(v3_kctx *ctx, size_t bytes) {
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 64) != cudaSuccess) {
        cudaGetLastError(); /* clear the non-sticky allocation error */
        return NULL;
    }
    if (cudaMemset(p, 0, bytes) != cudaSuccess) {
        cudaFree(p);
        v3k_fail(ctx, V3_EDEVICE, "cudaMemset after cudaMalloc(%zu) failed", bytes);
        return NULL;
    }
    return p;
}

static void cuda_free(v3_kctx *ctx, void *p) {
    if (p) CU_CHECK(ctx, cudaFree(p));
}

static void cuda_to_device(v3_kctx *ctx, void *dst, const void *src, size_t n) {
    if (n) CU_CHECK(ctx, cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice));
}

static void cuda_to_host(v3_kctx *ctx, void *dst, const void *src, size_t n) {
    if (n) CU_CHECK(ctx, cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost));
}

/* device to device; unlike the CPU backend's memmove, overlapping ranges are not supported */
static void cuda_copy(v3_kctx *ctx, void *dst, const void *src, size_t n) {
    if (n) CU_CHECK(ctx, cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice));
}

static void cuda_memset0(v3_kctx *ctx, void *p, size_t n) {
    if (n) CU_CHECK(ctx, cudaMemset(p, 0, n));
}

/* surfaces asynchronous kernel failures into the sticky error */
static void cuda_sync(v3_kctx *ctx) {
    if (ctx->impl) v3_cuda_state_check(ctx); /* bad indices flagged by kernels */
    CU_CHECK(ctx, cudaDeviceSynchronize());
    CU_CHECK(ctx, cudaGetLastError());
}

static v3_backend make_cuda_backend(void) {
    v3_backend b = {};
    b.name = "cuda";
    b.init = v3_cuda_state_init;
    b.fini = v3_cuda_state_free;
    b.alloc = cuda_alloc;
    b.free = cuda_free;
    b.to_device = cuda_to_device;
    b.to_host = cuda_to_host;
    b.copy = cuda_copy;
    b.memset0 = cuda_memset0;
    b.sync = cuda_sync;
    v3_cuda_fill_table(&b);
    return b;
}

static const v3_backend cuda_backend = make_cuda_backend();

extern "C" const v3_backend *v3_backend_cuda(void) { return &cuda_backend; }

/* cpu_backend.c — the CPU backend's table: host memory and the fp32 reference ops.
 * (Ops are filled in by the other files of kernels/cpu; a NULL entry is reported by the parity harness.) */
#include <stdlib.h>
#include <string.h>

#include "../kernels.h"

static void *cpu_alloc(v3_kctx *ctx, size_t bytes) {
    (void)ctx;
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    memset(p, 0, bytes);
    return p;
}
static void cpu_free(v3_kctx *ctx, void *p) { (void)ctx; free(p); }
static void cpu_copy(v3_kctx *ctx, void *dst, const void *src, size_t n) { (void)ctx; memmove(dst, src, n); }
static void cpu_memset0(v3_kctx *ctx, void *p, size_t n) { (void)ctx; memset(p, 0, n); }
static void cpu_sync(v3_kctx *ctx) { (void)ctx; }

static const v3_backend cpu_backend = {
    .name = "cpu",
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
    .memset0 = cpu_memset0,
    .sync = cpu_sync,
};

const v3_backend *v3_backend_cpu(void) { return &cpu_backend; }

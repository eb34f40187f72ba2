/* cpu_backend.c — the CPU backend's table: host memory and the fp32 reference ops, which live in
 * the other files of kernels/cpu (declared in cpu_internal.h). */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cpu_internal.h"

/* Buffers of 2 MiB and more (parameters, gradients, the activation arena, the logits chunk) are
 * 2 MiB-aligned and advised as transparent huge pages: the GEMMs pack strips of B from rows at a
 * stride of a few KiB and walk weights and gradients of over a GiB per step, and with 4 KiB pages
 * the page walks cost ~12 % of a small:512 training step on the 2-core VM (3.26-3.46 s against
 * 3.68-4.19 s, alternated runs; bench/RESULTS.md). Debian's default THP mode is "madvise", so
 * without the advice the kernel never backs them with huge pages. Only the placement changes,
 * never a value: the same bits. */
static void *cpu_alloc(v3_kctx *ctx, size_t bytes) {
    (void)ctx;
    void *p = NULL;
    size_t align = 64, huge = (size_t)2 << 20, n = bytes ? bytes : 64;
    if (bytes >= huge) {
        align = huge;
        n = (bytes + huge - 1) / huge * huge; /* whole huge pages: no 4 KiB tail */
    }
    if (posix_memalign(&p, align, n) != 0) return NULL;
#ifdef MADV_HUGEPAGE
    if (align == huge) (void)madvise(p, n, MADV_HUGEPAGE); /* advice: failure only costs speed */
#endif
    memset(p, 0, bytes);
    return p;
}
static void cpu_free(v3_kctx *ctx, void *p) { (void)ctx; free(p); }
static void cpu_copy(v3_kctx *ctx, void *dst, const void *src, size_t n) { (void)ctx; memmove(dst, src, n); }
static void cpu_memset0(v3_kctx *ctx, void *p, size_t n) { (void)ctx; memset(p, 0, n); }
static void cpu_sync(v3_kctx *ctx) { (void)ctx; }

static const v3_backend cpu_backend = {
    .name = "cpu",
    .host_visible = 1,
    .alloc = cpu_alloc,
    .free = cpu_free,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .copy = cpu_copy,
    .memset0 = cpu_memset0,
    .sync = cpu_sync,

    .gemm = cpu_gemm,
    .gemm_strided_batched = cpu_gemm_strided_batched,
    .gemm_grouped = cpu_gemm_grouped,
    .rmsnorm_fwd = cpu_rmsnorm_fwd,
    .rmsnorm_bwd = cpu_rmsnorm_bwd,
    .rope_fwd = cpu_rope_fwd,
    .rope_bwd = cpu_rope_bwd,
    .attention_fwd = cpu_attention_fwd,
    .attention_bwd = cpu_attention_bwd,
    .swiglu_fwd = cpu_swiglu_fwd,
    .swiglu_bwd = cpu_swiglu_bwd,
    .router_fwd = cpu_router_fwd,
    .router_bwd = cpu_router_bwd,
    .router_balance = cpu_router_balance,
    .moe_plan = cpu_moe_plan,
    .gather_rows = cpu_gather_rows,
    .scatter_rows = cpu_scatter_rows,
    .scatter_add_rows = cpu_scatter_add_rows,
    .moe_combine_fwd = cpu_moe_combine_fwd,
    .moe_combine_bwd = cpu_moe_combine_bwd,
    .cross_entropy = cpu_cross_entropy,
    .adamw = cpu_adamw,
    .sumsq = cpu_sumsq,
    .scale = cpu_scale,
    .axpy = cpu_axpy,
    .add = cpu_add,
    .copy_3d = cpu_copy_3d,
    .pack_nt = cpu_pack_nt,
};

const v3_backend *v3_backend_cpu(void) { return &cpu_backend; }

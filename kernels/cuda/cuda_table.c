/* cuda_table.c — puts the CUDA numeric ops into a backend table. Plain C, so the compiler checks
 * every cu_* signature against its member of struct v3_backend (kernels.h). */
#include "kernels/cuda/cuda_ops.h"

void v3_cuda_fill_table(v3_backend *be) {
    be->gemm = cu_gemm;
    be->gemm_strided_batched = cu_gemm_strided_batched;
    be->gemm_grouped = cu_gemm_grouped;
    be->rmsnorm_fwd = cu_rmsnorm_fwd;
    be->rmsnorm_bwd = cu_rmsnorm_bwd;
    be->rope_fwd = cu_rope_fwd;
    be->rope_bwd = cu_rope_bwd;
    be->attention_fwd = cu_attention_fwd;
    be->attention_bwd = cu_attention_bwd;
    be->swiglu_fwd = cu_swiglu_fwd;
    be->swiglu_bwd = cu_swiglu_bwd;
    be->router_fwd = cu_router_fwd;
    be->router_bwd = cu_router_bwd;
    be->router_balance = cu_router_balance;
    be->moe_plan = cu_moe_plan;
    be->gather_rows = cu_gather_rows;
    be->scatter_rows = cu_scatter_rows;
    be->scatter_add_rows = cu_scatter_add_rows;
    be->moe_combine_fwd = cu_moe_combine_fwd;
    be->moe_combine_bwd = cu_moe_combine_bwd;
    be->cross_entropy = cu_cross_entropy;
    be->adamw = cu_adamw;
    be->sumsq = cu_sumsq;
    be->scale = cu_scale;
    be->axpy = cu_axpy;
    be->add = cu_add;
    be->copy_3d = cu_copy_3d;
}

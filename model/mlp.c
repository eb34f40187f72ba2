/* mlp.c — the SwiGLU feed-forward block (model-spec §5) used by the dense layers and the shared
 * experts: out = down( silu(x·gateᵀ) ⊙ (x·upᵀ) ). gate_proj and up_proj are adjacent in the
 * parameter table, so they form one [2I, C] matrix and one GEMM (gate columns first, as HF's
 * fused gate_up_proj). */
#include "model_internal.h"

void v3_mlp_forward(v3_kctx *c, const float *x, const float *gate_up, const float *down, int64_t N,
                    int64_t C, int64_t I, float *gu, float *act, float *out, float beta) {
    v3_linear_fwd(c, gu, x, gate_up, N, C, 2 * I, 0.0f);       /* gu  [N, 2I] */
    v3k(c, swiglu_fwd, act, gu, 2 * I, I, N, I);                /* act [N, I] */
    v3_linear_fwd(c, out, act, down, N, I, C, beta);            /* out [N, C] */
}

void v3_mlp_backward(v3_kctx *c, const float *x, const float *gate_up, const float *down,
                     float *g_gate_up, float *g_down, int64_t N, int64_t C, int64_t I,
                     const float *gu, const float *act, const float *dout, float *dgu,
                     float *dact, float *dx, float beta_dx) {
    v3_linear_bwd_x(c, dact, dout, down, N, I, C, 0.0f);        /* dact [N, I] */
    v3_linear_bwd_w(c, g_down, dout, act, N, I, C);
    v3k(c, swiglu_bwd, dgu, dact, gu, 2 * I, I, N, I);          /* dgu [N, 2I] */
    v3_linear_bwd_x(c, dx, dgu, gate_up, N, C, 2 * I, beta_dx);
    v3_linear_bwd_w(c, g_gate_up, dgu, x, N, C, 2 * I);
}

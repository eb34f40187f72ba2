/* test_gpu_ops.c — the op parity harness (opcases.h, the cases test_ops.c runs) with the device
 * required: every op of the CUDA backend must exist and match the CPU on every case, where
 * test_ops.c accepts "skipped (no device)". No CUDA backend or no device: exit 77
 * (V3_GPU_TEST_BACKEND=cpu: a CPU context with another thread count stands in; see gpucheck.h).
 * Every case runs three times, with the device in each math mode (kernels.h V3_MATH_*).
 * Tolerance: each case's own, from opcases.h — DEV_TOL = 1e-4 normalised error for fp32 results
 * summed in another order (cuBLAS in pedantic fp32 mode, no TF32), exact for integer outputs
 * (plans, indices); the GEMMs and attention in TF32 / BF16 mode: TF32_TOL / BF16_TOL. The CPU-only checks (references, finite differences, thread counts) run too:
 * they are the same cases. Inputs are fresh each run (t_seed); replay with V3_TEST_SEED. */
#include "gpucheck.h"
#include "opcases.h"

/* One pass of every case with the device in `math`; returns the ops that matched. */
static int run_mode(int math) {
    gpu_dev d;
    v3_kctx dev;
    int rc = gpu_open(&d, &dev, "test_gpu_ops");
    if (rc) return -rc;
    dev.math = math;
    printf("test_gpu_ops: math %s (products: tolerance %g)\n", v3_math_name(math), oc_math_tol(math));
    oc_env *E = oc_env_new("test_gpu_ops");
    E->dev_be = d.be;
    E->dev = dev;
    E->dev_ok = 1;
    E->dev_label = d.label;
    oc_run_cases(E);
    oc_table(E);
    int dev_ok = 0;
    for (int i = 0; i < N_OPS; i++) {
        CHECK(E->st_cpu[i] == ST_OK, "op %s: cpu %s", oc_names[i], st_text[E->st_cpu[i]]);
        /* missing, failed or never exercised: all fail here */
        CHECK(E->st_dev[i] == ST_OK, "op %s: %s (math %s) %s", oc_names[i], d.label,
              v3_math_name(math), st_text[E->st_dev[i]]);
        dev_ok += E->st_dev[i] == ST_OK;
    }
    printf("test_gpu_ops: %d of %d ops of %s (math %s) match the cpu\n", dev_ok, N_OPS, d.label,
           v3_math_name(math));
    oc_env_free(E);
    return dev_ok;
}

int main(void) {
    /* fp32 first: the exact mode; then the fast modes with their product tolerances */
    const int modes[] = {V3_MATH_FP32, V3_MATH_TF32, V3_MATH_BF16};
    for (int i = 0; i < 3; i++) {
        int r = run_mode(modes[i]);
        if (r < 0) return -r; /* 77: no device (skipped); 1: a bad V3_GPU_TEST_BACKEND */
    }
    return t_finish("test_gpu_ops");
}

/* test_gpu_ops.c — the op parity harness (opcases.h, the cases test_ops.c runs) with the device
 * required: every op of the CUDA backend must exist and match the CPU on every case, where
 * test_ops.c accepts "skipped (no device)". No CUDA backend or no device: exit 77
 * (V3_GPU_TEST_BACKEND=cpu: a CPU context with another thread count stands in; see gpucheck.h).
 * Tolerance: each case's own, from opcases.h — DEV_TOL = 1e-4 normalised error for fp32 results
 * summed in another order (cuBLAS in pedantic fp32 mode, no TF32), exact for integer outputs
 * (plans, indices). The CPU-only checks (references, finite differences, thread counts) run too:
 * they are the same cases. Inputs are fresh each run (t_seed); replay with V3_TEST_SEED. */
#include "gpucheck.h"
#include "opcases.h"

int main(void) {
    gpu_dev d;
    v3_kctx dev;
    int rc = gpu_open(&d, &dev, "test_gpu_ops");
    if (rc) return rc;
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
        CHECK(E->st_dev[i] == ST_OK, "op %s: %s %s", oc_names[i], d.label, st_text[E->st_dev[i]]);
        dev_ok += E->st_dev[i] == ST_OK;
    }
    printf("test_gpu_ops: %d of %d ops of %s match the cpu\n", dev_ok, N_OPS, d.label);
    oc_env_free(E);
    return t_finish("test_gpu_ops");
}

/* test_ops.c — the op parity harness (opcases.h) on the CPU, and on the CUDA backend when it is
 * compiled and its device is present. Without a device its column of the coverage table reads
 * "skipped (no device)" and the test still passes; test_gpu_ops.c runs the same cases but
 * requires the device. Inputs are fresh each run (t_seed); replay a failure with V3_TEST_SEED. */
#include "opcases.h"

int main(void) {
    oc_env *E = oc_env_new("test_ops");
    v3_err err = {0};
    E->dev_be = v3_backend_cuda();
    if (E->dev_be) {
        E->dev_ok = v3_kctx_init(&E->dev, E->dev_be, 0, &err) == 0;
        if (!E->dev_ok) printf("%s backend: %s — its cases are skipped\n", E->dev_be->name, err.msg);
    }
    oc_run_cases(E);
    oc_table(E);
    for (int i = 0; i < N_OPS; i++) {
        CHECK(E->st_cpu[i] == ST_OK, "op %s: cpu %s", oc_names[i], st_text[E->st_cpu[i]]);
        if (E->dev_be && !E->dev_ok) /* with no device every case must be reported skipped/missing */
            CHECK(E->st_dev[i] == ST_SKIPPED || E->st_dev[i] == ST_MISSING,
                  "op %s: %s status %s without a device", oc_names[i], E->dev_be->name,
                  st_text[E->st_dev[i]]);
    }
    oc_env_free(E);
    return t_finish("test_ops");
}

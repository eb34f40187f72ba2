/* gpucheck.h — the device of the gpu-labelled tests (test_gpu_*.c), which compare it with the CPU
 * backend, the reference.
 *
 * Normally the device is the CUDA backend, and a build without it or a machine without a GPU
 * skips the test (exit 77, "no CUDA device: skipped"), so `ctest -L gpu` passes on a CPU box.
 * V3_GPU_TEST_BACKEND=cpu puts a second CPU context with another thread count in its place: a
 * dry run of each test's comparisons, tolerances and reports on a machine without a GPU. The CPU
 * backend does not depend on its thread count, so there the two sides agree bit for bit; the
 * dry run proves the plumbing, not the CUDA numerics.
 * Header-only (static functions), as opcheck.h: it serves only the test_gpu_*.c programs. */
#ifndef V3_GPUCHECK_H
#define V3_GPUCHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* Threads of the stand-in device: another count than the reference's (0 = all cores, 2 on the
 * usual build machine), so that a result depending on it would show. */
#define GPU_FAKE_THREADS 3

typedef struct gpu_dev {
    const v3_backend *be;  /* the device's backend */
    int n_threads;         /* its context's thread count (CPU stand-in only; 0 on CUDA) */
    int fake;              /* 1: V3_GPU_TEST_BACKEND=cpu */
    char label[64];        /* for reports: "cuda", or "cpu x3 (V3_GPU_TEST_BACKEND=cpu)" */
} gpu_dev;

/* Chooses the device and opens ctx on it. Returns 0, or the code main should exit with: 77 when
 * there is no CUDA device (after printing why), 1 when V3_GPU_TEST_BACKEND is neither "cpu" nor
 * "cuda" or the stand-in cannot start. ctx is written only on success. */
static int gpu_open(gpu_dev *d, v3_kctx *ctx, const char *test_name) {
    memset(d, 0, sizeof *d);
    const char *want = getenv("V3_GPU_TEST_BACKEND");
    if (want && *want && strcmp(want, "cuda") != 0) {
        if (strcmp(want, "cpu") != 0) {
            fprintf(stderr, "%s: V3_GPU_TEST_BACKEND=%s: expected cpu or cuda\n", test_name, want);
            return 1;
        }
        d->be = v3_backend_cpu();
        d->n_threads = GPU_FAKE_THREADS;
        d->fake = 1;
        snprintf(d->label, sizeof d->label, "cpu x%d (V3_GPU_TEST_BACKEND=cpu)", GPU_FAKE_THREADS);
    } else {
        d->be = v3_backend_cuda();
        snprintf(d->label, sizeof d->label, "cuda");
        if (!d->be) {
            printf("%s: no CUDA device: skipped (this build has no CUDA backend)\n", test_name);
            return 77;
        }
    }
    v3_err err = {0};
    v3_kctx c;
    if (v3_kctx_init(&c, d->be, d->n_threads, &err)) {
        if (d->fake) {
            fprintf(stderr, "%s: %s: %s\n", test_name, d->label, err.msg);
            return 1;
        }
        printf("%s: no CUDA device: skipped (%s)\n", test_name, err.msg);
        return 77;
    }
    *ctx = c;
    printf("%s: device %s against the cpu backend\n", test_name, d->label);
    return 0;
}

#endif

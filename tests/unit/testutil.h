/* testutil.h — tiny test harness: checks that count failures, relative errors, fresh seeds.
 * A test's main returns t_finish(), which is non-zero when any check failed (ctest sees it). */
#ifndef V3_TESTUTIL_H
#define V3_TESTUTIL_H

#include <stdint.h>
#include <stdio.h>

#include "common/err.h"
#include "common/rng.h"

extern int t_failures; /* tests are single-translation-unit programs; this is their one global */
extern int t_checks;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        t_checks++;                                                           \
        if (!(cond)) {                                                        \
            t_failures++;                                                     \
            fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);   \
            fprintf(stderr, __VA_ARGS__);                                     \
            fputc('\n', stderr);                                              \
        }                                                                     \
    } while (0)

/* CHECK that a v3 call returned V3_OK, printing its message otherwise. */
#define CHECK_OK(expr, errp)                                                            \
    do {                                                                                \
        int rc_ = (expr);                                                               \
        const v3_err *e_ = (errp);                                                      \
        CHECK(rc_ == 0, "returned %d: %s", rc_, e_ ? e_->msg : "");                     \
    } while (0)

/* ‖a−b‖ / max(‖b‖, tiny) over n floats (double accumulation). */
double t_rel_err(const float *a, const float *b, int64_t n);
double t_max_abs_diff(const float *a, const float *b, int64_t n);
/* A fresh seed per run (time ^ pid), printed so a failure can be replayed with V3_TEST_SEED. */
uint64_t t_seed(const char *test_name);
void t_fill_normal(v3_rng *r, float *x, int64_t n, float std);
void t_fill_uniform(v3_rng *r, float *x, int64_t n, float lo, float hi);
/* ../shared/data path (from V3_SHARED_DATA, else relative to the source dir) joined with rel. */
const char *t_data_path(const char *rel, char *buf, size_t n);
/* Path under the source tree (V3_SOURCE_DIR). */
const char *t_source_path(const char *rel, char *buf, size_t n);
/* A fresh private scratch directory (removed by the caller if wanted). */
const char *t_tmpdir(char *buf, size_t n);
/* Prints "N checks, F failed" and returns the exit code. */
int t_finish(const char *test_name);

#endif

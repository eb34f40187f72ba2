/* testutil.c — implementation of the test helpers. */
#include "testutil.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int t_failures = 0;
int t_checks = 0;

double t_rel_err(const float *a, const float *b, int64_t n) {
    double num = 0, den = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        num += d * d;
        den += (double)b[i] * b[i];
        if (isnan(a[i]) != isnan(b[i])) return INFINITY;
    }
    if (den < 1e-300) return sqrt(num);
    return sqrt(num / den);
}

double t_max_abs_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d; /* NaN propagates */
    }
    return m;
}

uint64_t t_seed(const char *test_name) {
    const char *s = getenv("V3_TEST_SEED");
    uint64_t seed = s ? strtoull(s, NULL, 0)
                      : ((uint64_t)time(NULL) * 2654435761u) ^ ((uint64_t)getpid() << 16);
    fprintf(stderr, "%s: seed %llu (replay with V3_TEST_SEED=%llu)\n", test_name,
            (unsigned long long)seed, (unsigned long long)seed);
    return seed;
}

void t_fill_normal(v3_rng *r, float *x, int64_t n, float std) {
    for (int64_t i = 0; i < n; i++) x[i] = std * v3_rng_normal(r);
}

void t_fill_uniform(v3_rng *r, float *x, int64_t n, float lo, float hi) {
    for (int64_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * v3_rng_uniform(r);
}

const char *t_data_path(const char *rel, char *buf, size_t n) {
    const char *d = getenv("V3_SHARED_DATA");
    if (d) snprintf(buf, n, "%s/%s", d, rel);
    else snprintf(buf, n, "%s/../shared/data/%s", V3_SOURCE_DIR, rel);
    return buf;
}

const char *t_source_path(const char *rel, char *buf, size_t n) {
    const char *d = getenv("V3_SOURCE_DIR");
    snprintf(buf, n, "%s/%s", d ? d : V3_SOURCE_DIR, rel);
    return buf;
}

const char *t_tmpdir(char *buf, size_t n) {
    const char *base = getenv("TMPDIR");
    snprintf(buf, n, "%s/v3test.XXXXXX", base ? base : "/tmp");
    if (!mkdtemp(buf)) {
        perror("mkdtemp");
        abort();
    }
    return buf;
}

int t_finish(const char *test_name) {
    printf("%s: %d checks, %d failed\n", test_name, t_checks, t_failures);
    return t_failures ? 1 : 0;
}

/* judge_internal.h — what judge.c (set-up, callbacks) and judge_run.c (a batch's event loop)
 * share. Not for use outside rewards/judge*.c. */
#ifndef V3_REWARDS_JUDGE_INTERNAL_H
#define V3_REWARDS_JUDGE_INTERNAL_H

#include <stdint.h>
#include <time.h>

#include <curl/curl.h>

#include "common/rng.h"
#include "rewards/judge.h"

/* One transfer slot: a reusable easy handle and what its current attempt received. */
typedef struct xfer {
    CURL *easy;
    int req;               /* request being sent, -1 when the slot is free */
    char *buf;             /* response body */
    size_t n, cap, max;
    int truncated;
    double retry_after_s;  /* from the response's headers; < 0 when none */
    char errbuf[CURL_ERROR_SIZE];
} xfer;

/* The judge: options after defaults, the key, the multi handle and max_in_flight slots. */
struct v3_judge {
    char *endpoint, *model, *key;
    struct curl_slist *headers;
    int max_in_flight, max_retries;
    long timeout_ms, connect_ms;
    double backoff_base_s, backoff_max_s, retry_after_max_s;
    size_t max_body;
    v3_rng rng;
    CURLM *multi;
    xfer *x;
    int curl_ready; /* curl_global_init succeeded (paired with curl_global_cleanup) */
    v3_judge_stats stats;
};

static inline int64_t v3_judge_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#endif

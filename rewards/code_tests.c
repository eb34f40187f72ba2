/* code_tests.c — v3_code_run_tests: writes the harness file (payload + code_harness.c's text),
 * runs it with v3_code_run under a fresh nonce, and turns the harness's fd-3 lines into per-test
 * verdicts. Lines without the nonce are ignored, so a program that prints "pass 0" on fd 3
 * without having read the nonce counts for nothing; a test that reported nothing failed. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "rewards/code_exec.h"

#define TESTS_OUT_CAP (256u << 10) /* holds V3_CODE_MAX_TESTS failure lines */

typedef struct sbuf {
    char *p;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* 'hex' of s's bytes, or None. */
static void sb_hex(sbuf *b, const char *s) {
    static const char digits[] = "0123456789abcdef";
    if (!s) {
        sb_str(b, "None");
        return;
    }
    char chunk[512];
    size_t k = 0;
    sb_str(b, "'");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        chunk[k++] = digits[*p >> 4];
        chunk[k++] = digits[*p & 15];
        if (k == sizeof chunk) sb_add(b, chunk, k), k = 0;
    }
    sb_add(b, chunk, k);
    sb_str(b, "'");
}

static void build_source(sbuf *b, const v3_code_tests *t, int64_t test_ms) {
    sb_str(b, "_V3_PROGRAM = ");
    sb_hex(b, t->program);
    sb_str(b, "\n_V3_SETUP = ");
    sb_hex(b, t->setup);
    sb_str(b, "\n_V3_CHECK = ");
    sb_hex(b, t->check);
    sb_str(b, "\n_V3_ENTRY = ");
    sb_hex(b, t->check ? t->entry_point : NULL);
    sb_str(b, "\n_V3_TESTS = [");
    for (int i = 0; i < t->n_tests; i++) {
        if (i) sb_str(b, ", ");
        sb_hex(b, t->tests[i]);
    }
    char tail[64];
    snprintf(tail, sizeof tail, "]\n_V3_TEST_TIMEOUT = %.3f\n", (double)test_ms / 1000.0);
    sb_str(b, tail);
    sb_str(b, v3_code_harness_source());
}

static void make_nonce(char *out /* 33 */) {
    unsigned char r[16];
    if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
        /* no getrandom: the time and the address of a stack variable; weaker, still unknown to
         * the program, which never sees it before reading stdin */
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t a = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30), c = (uint64_t)(uintptr_t)&ts;
        memcpy(r, &a, 8);
        memcpy(r + 8, &c, 8);
    }
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", r[i]);
}

/* The last non-empty line of s (stderr's last traceback line), cut to n-1 bytes. */
static void last_line(const char *s, char *out, size_t n) {
    out[0] = 0;
    if (!s) return;
    const char *end = s + strlen(s);
    while (end > s && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' ')) end--;
    const char *start = end;
    while (start > s && start[-1] != '\n') start--;
    snprintf(out, n, "%.*s", (int)(end - start), start);
}

/* Reads the harness's lines from aux into rep; returns 1 when the harness said "done". */
static int parse_lines(const char *aux, const char *nonce, int fallback_total, v3_code_report *rep) {
    size_t nl = strlen(nonce);
    int done = 0;
    rep->total = -1;
    for (const char *p = aux ? aux : ""; *p;) {
        const char *e = strchr(p, '\n');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        char line[600];
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        p += len + (e != NULL);
        if (strncmp(line, nonce, nl) != 0 || line[nl] != ' ') continue;
        char *w = line + nl + 1;
        int i;
        if (sscanf(w, "total %d", &i) == 1 && rep->total < 0) {
            rep->total = i > 0 ? (i < V3_CODE_MAX_TESTS ? i : V3_CODE_MAX_TESTS) : 0;
        } else if (strncmp(w, "error ", 6) == 0 && !rep->error[0]) {
            snprintf(rep->error, sizeof rep->error, "%s", w + 6);
        } else if (sscanf(w, "pass %d", &i) == 1) {
            if (i >= 0 && i < rep->total) rep->results[i] = 1;
        } else if (sscanf(w, "fail %d", &i) == 1) {
            char *msg = strchr(w + 5, ' ');
            if (!rep->failure[0] && i >= 0 && i < rep->total)
                snprintf(rep->failure, sizeof rep->failure, "test %d: %s", i + 1, msg ? msg + 1 : "failed");
        } else if (strcmp(w, "done") == 0) {
            done = 1;
        }
    }
    if (rep->total < 0) rep->total = fallback_total;
    return done;
}

int v3_code_run_tests(const v3_code_opts *o, const v3_code_tests *t, v3_code_report *rep,
                      v3_err *err) {
    memset(rep, 0, sizeof *rep);
    if (!t->program) return v3_errf(err, V3_EINVAL, "code: no program");
    if (t->n_tests < 0 || t->n_tests > V3_CODE_MAX_TESTS)
        return v3_errf(err, V3_ERANGE, "code: %d tests (at most %d)", t->n_tests, V3_CODE_MAX_TESTS);
    if (t->check && !t->entry_point) return v3_errf(err, V3_EINVAL, "code: check without entry_point");
    if (!t->n_tests && !t->check) return v3_errf(err, V3_EINVAL, "code: no tests");
    for (int i = 0; i < t->n_tests; i++)
        if (!t->tests[i]) return v3_errf(err, V3_EINVAL, "code: test %d is NULL", i + 1);
    int64_t test_ms = t->test_timeout_ms > 0 ? t->test_timeout_ms : V3_CODE_DEFAULT_TEST_TIMEOUT_MS;

    sbuf src = {0};
    build_source(&src, t, test_ms);
    if (src.oom) {
        free(src.p);
        return v3_errf(err, V3_ENOMEM, "code: out of memory building the test program");
    }
    char nonce[33], stdin_line[40];
    make_nonce(nonce);
    snprintf(stdin_line, sizeof stdin_line, "%s\n", nonce);
    v3_code_opts ro = *o;
    ro.stdin_data = stdin_line;
    ro.stdin_len = strlen(stdin_line);
    ro.aux = 1;
    ro.filename = "main.py";
    if (ro.out_cap < TESTS_OUT_CAP) ro.out_cap = TESTS_OUT_CAP;
    v3_code_result r;
    int rc = v3_code_run(&ro, src.p, src.n, &r, err);
    free(src.p);
    if (rc != V3_OK) return rc;

    int done = parse_lines(r.aux.data, nonce, t->n_tests + (t->check ? 1 : 0), rep);
    for (int i = 0; i < rep->total; i++) rep->passed += rep->results[i];
    rep->timed_out = r.timed_out;
    rep->cpu_exceeded = r.cpu_exceeded;
    rep->truncated = r.out.total > r.out.len || r.err.total > r.err.len;
    rep->exit_code = r.exit_code;
    rep->signal = r.signal;
    rep->isolation = r.isolation;
    rep->wall_ms = r.wall_ms;
    if (!done && !rep->error[0]) {
        char tail[200];
        last_line(r.err.data, tail, sizeof tail);
        int64_t timeout = o->timeout_ms > 0 ? o->timeout_ms : V3_CODE_DEFAULT_TIMEOUT_MS;
        if (r.timed_out)
            snprintf(rep->error, sizeof rep->error, "timed out after %lld ms", (long long)timeout);
        else if (r.cpu_exceeded)
            snprintf(rep->error, sizeof rep->error, "CPU time limit exceeded");
        else if (r.signal)
            snprintf(rep->error, sizeof rep->error, "killed by signal %d (%s)%s%s", r.signal,
                     strsignal(r.signal), tail[0] ? ": " : "", tail);
        else
            snprintf(rep->error, sizeof rep->error, "exited with code %d before the tests finished%s%s",
                     r.exit_code, tail[0] ? ": " : "", tail);
    }
    v3_code_result_free(&r);
    return V3_OK;
}

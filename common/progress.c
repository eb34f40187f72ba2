/* progress.c — live or periodic progress lines (see progress.h). */
#include "progress.h"

#include <time.h>
#include <unistd.h>

double v3_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void v3_progress_init(v3_progress *p, FILE *f, int tty, const char *label, uint64_t total_bytes) {
    p->f = f;
    p->tty = tty >= 0 ? tty : (f && isatty(fileno(f)));
    p->label = label;
    p->total_bytes = total_bytes;
    p->t0 = p->last = v3_now();
    p->period = 10.0;
    p->drawn = 0;
}

static void line(v3_progress *p, uint64_t items, uint64_t bytes, double now, int final) {
    double dt = now - p->t0 > 1e-6 ? now - p->t0 : 1e-6;
    double rate = (double)items / dt, mbs = (double)bytes / dt / 1e6;
    char tail[64] = "";
    if (p->total_bytes && !final) {
        double frac = (double)bytes / (double)p->total_bytes;
        if (frac > 1) frac = 1;
        double eta = bytes > 0 ? dt * (1 - frac) / frac : 0;
        snprintf(tail, sizeof tail, " %5.1f%% ETA %.0fs", 100 * frac, eta);
    }
    fprintf(p->f, "%s%llu %s, %.0f %s/s, %.1f MB/s, %.1fs%s%s", p->tty ? "\r\033[K" : "",
            (unsigned long long)items, p->label, rate, p->label, mbs, dt, tail,
            p->tty && !final ? "" : "\n");
    fflush(p->f);
}

void v3_progress_update(v3_progress *p, uint64_t items, uint64_t bytes) {
    if (!p->f) return;
    double now = v3_now();
    if (now - p->last < (p->tty ? 0.2 : p->period)) return;
    p->last = now;
    line(p, items, bytes, now, 0);
    p->drawn = p->tty;
}

void v3_progress_done(v3_progress *p, uint64_t items, uint64_t bytes) {
    if (!p->f) return;
    line(p, items, bytes, v3_now(), 1);
    p->drawn = 0;
}

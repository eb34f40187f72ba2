/* progress.h — a progress line for long jobs on stderr. On a terminal it redraws one live line
 * (items/s, MB/s, percent and ETA) at most 5 times a second; otherwise (a log file, CI) it prints
 * a plain line every `period` seconds, so logs stay readable. No threads: the caller updates it. */
#ifndef V3_PROGRESS_H
#define V3_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

typedef struct v3_progress {
    FILE *f;           /* NULL = silent */
    int tty;           /* redraw in place */
    const char *label; /* "rows", "docs", ... */
    uint64_t total_bytes; /* 0 = unknown (no percent/ETA) */
    double t0, last;   /* monotonic seconds */
    double period;     /* seconds between plain lines */
    int drawn;         /* a live line is on screen */
} v3_progress;

/* f: the stream (usually stderr); tty: -1 = ask isatty(f), 0/1 = force. */
void v3_progress_init(v3_progress *p, FILE *f, int tty, const char *label, uint64_t total_bytes);
/* Reports `items` done and `bytes` consumed so far; draws when enough time has passed. */
void v3_progress_update(v3_progress *p, uint64_t items, uint64_t bytes);
/* Final line (always printed when f is set), ending the live line. */
void v3_progress_done(v3_progress *p, uint64_t items, uint64_t bytes);
/* Monotonic clock in seconds. */
double v3_now(void);

#endif

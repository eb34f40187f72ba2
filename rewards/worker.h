/* worker.h — one reward worker process: how the host starts and stops it, the pipe framing both
 * sides speak, and the worker's own main loop (rewards/worker.c, rewards/worker_lua.c).
 *
 * Wire (a socketpair, used like a pair of pipes; a socketpair lets the parent write with
 * MSG_NOSIGNAL, so a dead worker is an EPIPE and not a SIGPIPE):
 *   frame     = u32 little-endian length, then that many bytes
 *   hello     worker -> parent once after start: JSON {"ok":true,"funcs":[{"name","weight",
 *             "fallback"}...]} or {"ok":false,"error":"..."}
 *   request   parent -> worker: u32 LE function index, then the sample as JSON (rewards/sample.h)
 *   response  worker -> parent: JSON {"st":0|1|2,"score":x,"error":"...","extra":"{...}"}
 *             (st: V3_REWARD_OK / SKIP / ERROR; the parent applies the fallback) */
#ifndef V3_REWARDS_WORKER_H
#define V3_REWARDS_WORKER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"
#include "lua/sandbox.h"

#define V3_REWARD_MAX_FRAME (64u << 20)

/* What a worker needs; the child gets it by fork (nothing is sent). All borrowed. */
typedef struct v3_reward_worker_cfg {
    int n_funcs;
    const char *const *texts; /* script bytes */
    const size_t *lens;
    const char *const *chunknames; /* "@path" */
    const char *const *names;      /* configured names (NULL: the module's or the base name) */
    v3_sandbox_limits limits;      /* per function state; fault must be NULL */
    const char *const *reward_dirs;
    int n_reward_dirs;
    size_t extra_as;               /* RLIMIT_AS headroom over the parent's address space */
} v3_reward_worker_cfg;

typedef struct v3_reward_worker {
    pid_t pid; /* 0 when not running */
    int fd;    /* the parent's end; -1 when closed */
} v3_reward_worker;

/* Forks a worker. The child closes every inherited descriptor but its end of the socket and
 * stderr, sets its rlimits, loads the modules and sends its hello; the parent does not wait for
 * it (v3_reward_worker_recv_frame does). */
int v3_reward_worker_spawn(v3_reward_worker *w, const v3_reward_worker_cfg *cfg, v3_err *err);
/* SIGKILLs (if running) and reaps the worker, closes the socket. Returns the wait status, or -1. */
int v3_reward_worker_kill(v3_reward_worker *w);

/* Writes one whole frame (blocking; MSG_NOSIGNAL). V3_EIO on failure (the worker is gone). */
int v3_reward_frame_write(int fd, const void *a, size_t alen, const void *b, size_t blen,
                          v3_err *err);

/* The child's side: never returns (_exit). */
void v3_reward_worker_main(int fd, const v3_reward_worker_cfg *cfg) __attribute__((noreturn));

#endif

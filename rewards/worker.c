/* worker.c — reward worker processes: fork, confinement (descriptors, rlimits), the framing on the
 * socket, and the child's request loop. The child is the one place where _exit ends a process. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "rewards/host.h"
#include "rewards/worker.h"
#include "rewards/worker_lua.h"

/* The child keeps its socket end at this descriptor (after stdin, stdout, stderr). */
#define CHILD_FD 3

/* ---- framing ---- */

static int send_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
        if (k < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

int v3_reward_frame_write(int fd, const void *a, size_t alen, const void *b, size_t blen,
                          v3_err *err) {
    size_t total = alen + blen;
    if (total > V3_REWARD_MAX_FRAME)
        return v3_errf(err, V3_ERANGE, "reward frame of %zu bytes exceeds %u", total,
                       (unsigned)V3_REWARD_MAX_FRAME);
    unsigned char hdr[4] = {(unsigned char)total, (unsigned char)(total >> 8),
                            (unsigned char)(total >> 16), (unsigned char)(total >> 24)};
    if (send_all(fd, hdr, 4) || (alen && send_all(fd, a, alen)) || (blen && send_all(fd, b, blen)))
        return v3_errf(err, V3_EIO, "reward worker socket: %s", strerror(errno));
    return V3_OK;
}

/* Child side: blocking read of exactly n bytes; 0 ok, -1 EOF or error. */
static int read_all(int fd, void *p, size_t n) {
    char *c = p;
    while (n) {
        ssize_t k = read(fd, c, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        c += k;
        n -= (size_t)k;
    }
    return 0;
}

/* ---- spawn / kill ---- */

#if !defined(__SANITIZE_ADDRESS__)
static size_t address_space_now(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f) {
        if (fscanf(f, "%lu", &pages) != 1) pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}
#endif

static void set_limit(int res, rlim_t soft, rlim_t hard) {
    struct rlimit rl;
    if (getrlimit(res, &rl) != 0) return;
    if (hard != RLIM_INFINITY && (rl.rlim_max == RLIM_INFINITY || hard < rl.rlim_max)) rl.rlim_max = hard;
    rl.rlim_cur = soft < rl.rlim_max ? soft : rl.rlim_max;
    setrlimit(res, &rl); /* best effort: a limit we cannot set is backed by the parent's kill */
}

/* Confines the freshly forked child: only stdin (/dev/null), stdout (-> stderr, so a script can
 * never write into a command's output), stderr and the socket stay open; rlimits are set. */
static void confine_child(int fd, const v3_reward_worker_cfg *cfg) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the parent */
    /* the parent's handlers (a trainer's SIGTERM checkpointing, say) must not run in a worker */
    static const int dfl[] = {SIGPIPE, SIGTERM, SIGHUP, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM, SIGXCPU};
    for (size_t i = 0; i < sizeof dfl / sizeof dfl[0]; i++) signal(dfl[i], SIG_DFL);
    signal(SIGINT, SIG_IGN); /* the parent decides what a Ctrl-C ends */
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (fd != CHILD_FD) {
        if (dup2(fd, CHILD_FD) < 0) _exit(120);
        close(fd);
    }
    int devnull = open("/dev/null", O_RDONLY);
    if (devnull >= 0 && devnull != 0) {
        dup2(devnull, 0);
        if (devnull != CHILD_FD) close(devnull);
    }
    dup2(2, 1);
    if (close_range(CHILD_FD + 1, ~0U, 0) != 0) {
        for (int i = CHILD_FD + 1; i < 65536; i++) close(i);
    }
    /* Soft limits only: Lua cannot raise them (no os/io), and the code reward's sandbox
     * (rewards/code_exec.c) raises its own soft limits up to these hard ones for the clone of
     * the program it runs, which then gets its own, tighter limits. */
    set_limit(RLIMIT_NOFILE, 32, RLIM_INFINITY); /* `require` opens one file at a time */
    set_limit(RLIMIT_NPROC, 0, RLIM_INFINITY);   /* no fork (not enforced for root) */
    set_limit(RLIMIT_CORE, 0, 0);
#if !defined(__SANITIZE_ADDRESS__)
    /* Address space: what the forked parent already maps, plus the states' caps and headroom
     * (sanitizer builds reserve terabytes of shadow memory, so no cap there). */
    size_t as = address_space_now() + cfg->extra_as;
    set_limit(RLIMIT_AS, (rlim_t)as, RLIM_INFINITY);
#endif
}

int v3_reward_worker_spawn(v3_reward_worker *w, const v3_reward_worker_cfg *cfg, v3_err *err) {
    int sv[2];
    w->pid = 0;
    w->fd = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return v3_errf(err, V3_EIO, "reward worker: socketpair: %s", strerror(errno));
    fflush(NULL); /* nothing buffered may be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        return v3_errf(err, V3_EIO, "reward worker: fork: %s", strerror(e));
    }
    if (pid == 0) {
        close(sv[0]);
        /* CLOEXEC does not matter (no exec), and the dup2 in confine_child clears it */
        confine_child(sv[1], cfg);
        v3_reward_worker_main(CHILD_FD, cfg);
    }
    close(sv[1]);
    w->pid = pid;
    w->fd = sv[0];
    return V3_OK;
}

int v3_reward_worker_kill(v3_reward_worker *w) {
    int status = -1;
    if (w->pid > 0) {
        kill(w->pid, SIGKILL);
        while (waitpid(w->pid, &status, 0) < 0 && errno == EINTR) {
        }
    }
    if (w->fd >= 0) close(w->fd);
    w->pid = 0;
    w->fd = -1;
    return status;
}

/* ---- the child ---- */

static void send_json(int fd, json_t *j) {
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    v3_err e;
    if (!s || v3_reward_frame_write(fd, s, strlen(s), NULL, 0, &e) != V3_OK) _exit(3);
    free(s);
    json_decref(j);
}

/* A JSON string of s with bytes that are not valid UTF-8 replaced by '?' (jansson refuses invalid
 * UTF-8, and Lua error messages can quote any bytes a script had). */
static json_t *safe_string(const char *s) {
    size_t n = strlen(s);
    char *c = malloc(n + 1);
    if (!c) return json_string("(out of memory)");
    size_t i = 0;
    while (i < n) {
        size_t k = v3_utf8_seq((const unsigned char *)s + i, n - i);
        if (k == 0) c[i++] = '?';
        else memcpy(c + i, s + i, k), i += k;
    }
    c[n] = 0;
    json_t *j = json_string(c);
    free(c);
    return j;
}

/* RLIMIT_CPU is cumulative, so before each call its soft limit is moved to the CPU time used so
 * far plus the call's deadline and a margin: a script spinning in C past the deadline gets SIGXCPU
 * even if the parent's kill came late. */
static void arm_cpu_limit(const v3_reward_worker_cfg *cfg) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return;
    rlim_t used = (rlim_t)ru.ru_utime.tv_sec + (rlim_t)ru.ru_stime.tv_sec + 1;
    rlim_t budget = cfg->limits.deadline_ms > 0 ? (rlim_t)(cfg->limits.deadline_ms / 1000) + 2 : 60;
    struct rlimit rl;
    if (getrlimit(RLIMIT_CPU, &rl) != 0) return;
    rl.rlim_cur = used + budget;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_cur > rl.rlim_max) rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_CPU, &rl);
}

static const char *base_name(const char *chunkname) {
    const char *p = chunkname[0] == '@' ? chunkname + 1 : chunkname;
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

void v3_reward_worker_main(int fd, const v3_reward_worker_cfg *cfg) {
    int n = cfg->n_funcs;
    v3_reward_fn *fns = calloc((size_t)n, sizeof *fns);
    if (!fns) _exit(4);
    json_t *hello = json_object();
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        v3_reward_fn *fn = &fns[i];
        fn->text = cfg->texts[i];
        fn->len = cfg->lens[i];
        fn->chunkname = cfg->chunknames[i];
        fn->limits = cfg->limits;
        fn->mod.reward_dirs = cfg->reward_dirs;
        fn->mod.n_reward_dirs = cfg->n_reward_dirs;
        char defname[128];
        snprintf(defname, sizeof defname, "%s", cfg->names[i] ? cfg->names[i] : base_name(fn->chunkname));
        char *dot = cfg->names[i] ? NULL : strrchr(defname, '.');
        if (dot && strcmp(dot, ".lua") == 0) *dot = 0;
        v3_err e;
        if (v3_reward_fn_load(fn, defname, &e) != V3_OK) {
            json_object_set_new(hello, "ok", json_false());
            json_object_set_new(hello, "error", safe_string(e.msg));
            json_decref(arr);
            send_json(fd, hello);
            _exit(0);
        }
        json_t *f = json_object();
        json_object_set_new(f, "name", safe_string(fn->mod_name));
        if (fn->has_weight) json_object_set_new(f, "weight", json_real(fn->weight));
        if (fn->has_fallback) json_object_set_new(f, "fallback", json_real(fn->fallback));
        json_array_append_new(arr, f);
    }
    json_object_set_new(hello, "ok", json_true());
    json_object_set_new(hello, "funcs", arr);
    send_json(fd, hello);

    char *buf = NULL;
    size_t cap = 0;
    for (;;) {
        unsigned char hdr[4];
        if (read_all(fd, hdr, 4)) _exit(0); /* EOF: the host is done with us */
        size_t len = (size_t)hdr[0] | (size_t)hdr[1] << 8 | (size_t)hdr[2] << 16 | (size_t)hdr[3] << 24;
        if (len < 4 || len > V3_REWARD_MAX_FRAME) _exit(5);
        if (len + 1 > cap) {
            free(buf);
            cap = len + 1;
            buf = malloc(cap);
            if (!buf) _exit(4);
        }
        if (read_all(fd, buf, len)) _exit(0);
        uint32_t fi = (uint32_t)(unsigned char)buf[0] | (uint32_t)(unsigned char)buf[1] << 8 |
                      (uint32_t)(unsigned char)buf[2] << 16 | (uint32_t)(unsigned char)buf[3] << 24;
        json_t *resp = json_object();
        json_error_t je;
        json_t *sample = json_loadb(buf + 4, len - 4, 0, &je);
        if (fi >= (uint32_t)n || !json_is_object(sample)) {
            json_object_set_new(resp, "st", json_integer(V3_REWARD_ERROR));
            json_object_set_new(resp, "error", json_string(sample ? "bad request" : je.text));
        } else {
            v3_reward_call c;
            arm_cpu_limit(cfg);
            v3_reward_fn_call(&fns[fi], sample, &c);
            json_object_set_new(resp, "st", json_integer(c.status));
            if (c.status == V3_REWARD_OK) json_object_set_new(resp, "score", json_real(c.score));
            if (c.status == V3_REWARD_ERROR) json_object_set_new(resp, "error", safe_string(c.err.msg));
            if (c.extra) json_object_set_new(resp, "extra", safe_string(c.extra));
            free(c.extra);
        }
        json_decref(sample);
        send_json(fd, resp);
    }
}

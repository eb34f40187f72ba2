/* code_exec.c — v3_code_run, the parent's side of the code sandbox (see code_exec.h): find the
 * interpreter, start the child (in namespaces when the machine allows, else in a host temp
 * directory), give it its id maps and rlimits, collect its output under the byte caps until it
 * ends or the wall clock runs out, kill what it left, clean up. The child's side is
 * code_child.c. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rewards/code_exec.h"

/* After the child ends, how long its pipes may stay open (leftovers are being killed). */
#define DRAIN_NS 300000000LL
#define NS_FLAGS (CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS | CLONE_NEWIPC)

static const char *const python_args[] = {"-I", "-B"};

void v3_code_opts_default(v3_code_opts *o) { memset(o, 0, sizeof *o); }

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

const char *v3_code_isolation_str(unsigned bits, char *buf, size_t n) {
    static const char *const names[] = {"userns", "netns",  "pidns", "ipcns",   "tmpfs", "rofs",
                                        "proc",   "nobody", "nocaps", "seccomp", "tmpdir"};
    size_t at = 0;
    if (n) buf[0] = 0;
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(bits & (1u << i))) continue;
        int k = snprintf(buf + at, n > at ? n - at : 0, "%s%s", at ? "," : "", names[i]);
        if (k > 0) at += (size_t)k;
        if (at >= n) break;
    }
    if (n && !buf[0]) snprintf(buf, n, "none");
    return buf;
}

/* ---- the interpreter ---- */

static int executable(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

static int resolve(const char *name, char *out, size_t n, v3_err *err) {
    if (!name[0]) return v3_errf(err, V3_EINVAL, "code: empty interpreter name");
    if (strchr(name, '/')) {
        if (!executable(name)) return v3_errf(err, V3_ENOTFOUND, "code: interpreter %s: not an executable file", name);
        snprintf(out, n, "%s", name);
        return V3_OK;
    }
    const char *p = V3_CODE_PATH;
    while (*p) {
        size_t dl = strcspn(p, ":");
        int k = snprintf(out, n, "%.*s/%s", (int)dl, p, name);
        if (k > 0 && (size_t)k < n && executable(out)) return V3_OK;
        p += dl + (p[dl] == ':');
    }
    return v3_errf(err, V3_ENOTFOUND, "code: interpreter %s not found in %s", name, V3_CODE_PATH);
}

/* ---- the host temp directory (no namespaces) ---- */

static int chmod_entry(const char *path, const struct stat *sb, int type, struct FTW *f) {
    if (type == FTW_D || type == FTW_DNR) chmod(path, 0700);
    return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *f) {
    if (type == FTW_DP || type == FTW_D || type == FTW_DNR) rmdir(path);
    else unlink(path);
    return 0;
}

static void rm_tree(const char *dir) {
    nftw(dir, chmod_entry, 16, FTW_PHYS); /* a directory the program made unreadable */
    nftw(dir, rm_entry, 16, FTW_PHYS | FTW_DEPTH);
}

/* ---- one attempt ---- */

typedef struct run_ctx {
    const v3_code_opts *o;
    const char *interp;
    char **argv;
    char *envp[2];
    const char *src;
    size_t len;
    int64_t deadline;
    size_t cap, mem, fsize;
    int nproc, nofile, cpu_s;
    char tmpfs_opts[96];
} run_ctx;

static int write_file(const char *path, const char *s) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t n = strlen(s);
    ssize_t k = write(fd, s, n);
    int e = errno;
    close(fd);
    errno = e;
    return k == (ssize_t)n ? 0 : -1;
}

static int write_map(pid_t pid, const char *file, unsigned id) {
    char path[64], map[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    snprintf(map, sizeof map, "0 %u 1\n", id);
    return write_file(path, map);
}

/* The child is uid/gid 0 in its namespace: nobody outside for a root parent (where nobody exists
 * in the parent's own namespace), else the caller. Returns 1 when it is nobody, 0 when it is the
 * caller, -1 on failure. */
static int write_id_maps(pid_t pid) {
    uid_t u = geteuid();
    if (u == 0 && write_map(pid, "uid_map", V3_CODE_NOBODY) == 0 &&
        write_map(pid, "gid_map", V3_CODE_NOBODY) == 0)
        return 1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/setgroups", (int)pid);
    if (write_file(path, "deny") != 0 && errno != ENOENT) return -1;
    if (write_map(pid, "uid_map", (unsigned)u) != 0 || write_map(pid, "gid_map", (unsigned)getegid()) != 0)
        return -1;
    return 0;
}

/* Sets the child's limit to v; where v is above its hard limit and that cannot be raised (not
 * root), to the hard limit. */
static void limit(pid_t pid, int res, rlim_t v) {
    struct rlimit cur, nl = {v, v};
    if (prlimit(pid, res, &nl, NULL) == 0 || prlimit(pid, res, NULL, &cur) != 0) return;
    if (cur.rlim_max != RLIM_INFINITY && v > cur.rlim_max) {
        nl.rlim_cur = nl.rlim_max = cur.rlim_max;
        prlimit(pid, res, &nl, NULL);
    }
}

/* Raises only the hard limit (the child lowers the soft one itself). */
static void raise_hard(pid_t pid, int res, rlim_t v) {
    struct rlimit cur;
    if (prlimit(pid, res, NULL, &cur) != 0 || cur.rlim_max == RLIM_INFINITY || cur.rlim_max >= v) return;
    struct rlimit nl = {cur.rlim_cur, v};
    prlimit(pid, res, &nl, NULL);
}

static void set_limits(pid_t pid, const run_ctx *x) {
    limit(pid, RLIMIT_CPU, (rlim_t)x->cpu_s);
    limit(pid, RLIMIT_FSIZE, (rlim_t)x->fsize);
    limit(pid, RLIMIT_NPROC, (rlim_t)x->nproc);
    limit(pid, RLIMIT_NOFILE, (rlim_t)x->nofile);
    limit(pid, RLIMIT_CORE, 0);
    limit(pid, RLIMIT_MEMLOCK, 0);
    limit(pid, RLIMIT_MSGQUEUE, 0);
    raise_hard(pid, RLIMIT_AS, (rlim_t)x->mem);
}

typedef struct chan {
    int fd;
    v3_code_buf *b; /* NULL: the status pipe */
} chan;

/* Reads what fd has now. 0 while open, 1 at EOF (fd closed). Bytes past cap are dropped. */
static int drain(chan *c, size_t cap, v3_code_status *st, int *nst) {
    char tmp[65536];
    for (;;) {
        ssize_t k = read(c->fd, tmp, sizeof tmp);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (k <= 0) {
            close(c->fd);
            c->fd = -1;
            return 1;
        }
        if (!c->b) { /* status records: the child writes whole ones (< PIPE_BUF) */
            for (ssize_t i = 0; i + (ssize_t)sizeof *st <= k && *nst < 4; i += (ssize_t)sizeof *st)
                memcpy(&st[(*nst)++], tmp + i, sizeof *st);
            continue;
        }
        v3_code_buf *b = c->b;
        b->total += (uint64_t)k;
        size_t keep = b->len < cap ? cap - b->len : 0;
        if ((size_t)k < keep) keep = (size_t)k;
        if (!keep) continue;
        if (!b->data) {
            b->data = malloc(cap + 1);
            if (!b->data) continue; /* out of memory: drop, still counted */
        }
        memcpy(b->data + b->len, tmp, keep);
        b->len += keep;
        b->data[b->len] = 0;
    }
}

static void close_pair(int p[2]) {
    for (int i = 0; i < 2; i++)
        if (p[i] >= 0) close(p[i]), p[i] = -1;
}

/* Without a pid namespace, the group's other processes were SIGKILLed but may not have died
 * yet. As the caller is a child subreaper then, they come back to it as they die: reap them (up
 * to a second), so that the caller finds the machine as it was, with no zombie waiting for a
 * slow init. (With a pid namespace the kernel does all this before the first process can be
 * reaped.) */
static void reap_group(pid_t pgid) {
    for (int i = 0; i < 1000; i++) {
        kill(-pgid, SIGKILL);
        pid_t w;
        while ((w = waitpid(-pgid, NULL, WNOHANG)) > 0) {
        }
        if (w < 0 && errno == ECHILD && kill(-pgid, 0) != 0) return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static const char *stage_name(int s) {
    switch (s) {
    case V3_CODE_STAGE_SYNC: return "waiting for the parent";
    case V3_CODE_STAGE_IDS: return "changing ids";
    case V3_CODE_STAGE_MOUNT: return "mounting";
    case V3_CODE_STAGE_CHDIR: return "entering the work directory";
    case V3_CODE_STAGE_WRITE: return "writing the program file";
    case V3_CODE_STAGE_FDS: return "arranging descriptors";
    case V3_CODE_STAGE_EXEC: return "exec";
    default: return "setup";
    }
}

static pid_t raw_clone(unsigned long flags) {
    /* raw: glibc's clone() wants a stack, fork() cannot take namespace flags */
    return (pid_t)syscall(SYS_clone, flags, NULL, NULL, NULL, NULL);
}

/* clone, and when a soft RLIMIT_NPROC below the hard one refuses it (a reward worker keeps its
 * soft limit at 0 so that nothing it runs can fork), again with the soft limit raised to the hard
 * one for that one call. The child starts with the raised limit; the parent sets its own. */
static pid_t clone_child(unsigned long flags) {
    pid_t pid = raw_clone(flags);
    struct rlimit rl;
    if (pid >= 0 || errno != EAGAIN || getrlimit(RLIMIT_NPROC, &rl) != 0 || rl.rlim_cur >= rl.rlim_max) return pid;
    struct rlimit up = {rl.rlim_max, rl.rlim_max};
    if (setrlimit(RLIMIT_NPROC, &up) != 0) {
        errno = EAGAIN;
        return -1;
    }
    pid = raw_clone(flags);
    if (pid == 0) return 0;
    int e = errno;
    setrlimit(RLIMIT_NPROC, &rl);
    errno = e;
    return pid;
}

/* Runs the child once, in namespaces (ns) or not. *retry is set when the namespaces could not be
 * had and the caller should try again without. */
static int attempt(const run_ctx *x, int ns, v3_code_result *r, int *retry, v3_err *err) {
    const v3_code_opts *o = x->o;
    int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1}, paux[2] = {-1, -1},
        psync[2] = {-1, -1}, pst[2] = {-1, -1};
    char tmpdir[PATH_MAX] = "", workdir[PATH_MAX + 8] = "";
    int rc = V3_OK;
    *retry = 0;
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC) ||
        (o->aux && pipe2(paux, O_CLOEXEC)) || pipe2(pst, O_CLOEXEC) ||
        /* a socket, so that telling a child that died early is an EPIPE and not a SIGPIPE */
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, psync)) {
        rc = v3_errf(err, V3_EIO, "code: pipe: %s", strerror(errno));
        goto out;
    }
    /* stdin is small: it fits the pipe before the child exists, so no write can block or
     * raise SIGPIPE */
    if (o->stdin_len && write(pin[1], o->stdin_data, o->stdin_len) != (ssize_t)o->stdin_len) {
        rc = v3_errf(err, V3_EIO, "code: writing stdin: %s", strerror(errno));
        goto out;
    }
    close(pin[1]);
    pin[1] = -1;
    /* bigger pipes: fewer wake-ups while a flood is read and dropped (best effort) */
    fcntl(pout[0], F_SETPIPE_SZ, 1 << 20);
    fcntl(perr[0], F_SETPIPE_SZ, 1 << 20);
    if (!ns) {
        /* TMP/v3code-XXXXXX (the caller's, mode 0711) holds work/ (the child's cwd): a root
         * caller's child runs as nobody and so cannot write next to its cwd */
        const char *base = o->tmp_base ? o->tmp_base : "/tmp";
        struct stat bst;
        if (geteuid() == 0 && stat(base, &bst) == 0 && !(bst.st_mode & S_IXOTH)) {
            /* the interpreter, as nobody, opens its file by absolute path */
            rc = v3_errf(err, V3_EINVAL, "code: %s must be searchable by others (the program runs as nobody)", base);
            goto out;
        }
        snprintf(tmpdir, sizeof tmpdir, "%s/v3code-XXXXXX", base);
        if (!mkdtemp(tmpdir)) {
            rc = v3_errf(err, V3_EIO, "code: mkdtemp %s: %s", tmpdir, strerror(errno));
            tmpdir[0] = 0;
            goto out;
        }
        snprintf(workdir, sizeof workdir, "%s/work", tmpdir);
        if (chmod(tmpdir, 0711) != 0 || mkdir(workdir, 0700) != 0 ||
            (geteuid() == 0 && chown(workdir, V3_CODE_NOBODY, V3_CODE_NOBODY) != 0)) {
            rc = v3_errf(err, V3_EIO, "code: temp directory %s: %s", workdir, strerror(errno));
            goto out;
        }
    }
    v3_code_child c = {
        .ns = ns, .to_nobody = !ns && geteuid() == 0,
        .fd_in = pin[0], .fd_out = pout[1], .fd_err = perr[1], .fd_aux = paux[1],
        .fd_sync = psync[0], .fd_status = pst[1],
        .interp = x->interp, .argv = x->argv, .envp = x->envp,
        .workdir = ns ? "/tmp" : workdir,
        .filename = o->filename ? o->filename : "main.py",
        .src = x->src, .len = x->len, .tmpfs_opts = x->tmpfs_opts, .mem_bytes = x->mem,
        .seccomp = !(o->flags & V3_CODE_NO_SECCOMP),
    };
    /* without a pid namespace, orphans of the program must come back to us (see reap_group) */
    if (!ns) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    unsigned long flags = SIGCHLD | (ns ? (unsigned long)NS_FLAGS : 0);
    pid_t pid = clone_child(flags);
    if (pid < 0) {
        int e = errno;
        if (ns && e != EAGAIN && e != ENOMEM) {
            *retry = 1;
            goto out;
        }
        rc = v3_errf(err, V3_EIO, "code: fork: %s%s", strerror(e),
                     e == EAGAIN ? " (the calling process's RLIMIT_NPROC forbids new processes)" : "");
        goto out;
    }
    if (pid == 0) v3_code_child_main(&c);
    close(pin[0]), pin[0] = -1;
    close(pout[1]), pout[1] = -1;
    close(perr[1]), perr[1] = -1;
    if (paux[1] >= 0) close(paux[1]), paux[1] = -1;
    close(psync[0]), psync[0] = -1;
    close(pst[1]), pst[1] = -1;

    int64_t t0 = now_ns();
    r->pid = pid;
    int nobody = ns ? write_id_maps(pid) : 0;
    if (nobody < 0) {
        close_pair(psync); /* the child reads EOF and leaves */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        *retry = 1;
        goto out;
    }
    set_limits(pid, x);
    if (send(psync[1], "g", 1, MSG_NOSIGNAL) != 1) kill(pid, SIGKILL);
    close_pair(psync);

    chan ch[4] = {{pout[0], &r->out}, {perr[0], &r->err}, {paux[0], &r->aux}, {pst[0], NULL}};
    pout[0] = perr[0] = paux[0] = pst[0] = -1;
    for (int i = 0; i < 4; i++)
        if (ch[i].fd >= 0) fcntl(ch[i].fd, F_SETFL, fcntl(ch[i].fd, F_GETFL) | O_NONBLOCK);
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    v3_code_status st[4];
    int nst = 0, exited = 0, killed = 0;
    int64_t drain_until = 0;
    for (;;) {
        int64_t now = now_ns();
        if (!exited) {
            siginfo_t si;
            memset(&si, 0, sizeof si);
            int w = waitid(P_PID, (id_t)pid, &si, WEXITED | WNOHANG | WNOWAIT);
            if ((w == 0 && si.si_pid == pid) || (w < 0 && errno == ECHILD)) {
                exited = 1;
                kill(-pid, SIGKILL); /* what it left in its group (the zombie keeps the id) */
                if (!drain_until) drain_until = now + DRAIN_NS;
            }
        }
        if (!exited && !killed && now >= x->deadline) {
            killed = 1;
            r->timed_out = 1;
            kill(pid, SIGKILL);  /* in a pid namespace, this ends every process in it */
            kill(-pid, SIGKILL); /* its process group */
            drain_until = now + DRAIN_NS;
        }
        int open_fds = 0;
        for (int i = 0; i < 4; i++) open_fds += ch[i].fd >= 0;
        if (exited && (open_fds == 0 || now >= drain_until)) break;
        struct pollfd pf[5];
        int np = 0, idx[5];
        for (int i = 0; i < 4; i++)
            if (ch[i].fd >= 0) pf[np] = (struct pollfd){ch[i].fd, POLLIN, 0}, idx[np++] = i;
        if (!exited && pidfd >= 0) pf[np] = (struct pollfd){pidfd, POLLIN, 0}, idx[np++] = -1;
        int64_t until = exited || killed ? drain_until : x->deadline;
        int64_t ms = (until - now) / 1000000 + 1;
        if (!exited && pidfd < 0 && ms > 10) ms = 10;
        if (killed && !exited && ms > 10) ms = 10;
        if (ms < 0) ms = 0;
        int k = poll(pf, (nfds_t)np, (int)ms);
        if (k < 0 && errno != EINTR) break;
        for (int j = 0; k > 0 && j < np; j++)
            if (idx[j] >= 0 && (pf[j].revents & (POLLIN | POLLHUP | POLLERR)))
                drain(&ch[idx[j]], x->cap, st, &nst);
    }
    for (int i = 0; i < 4; i++)
        if (ch[i].fd >= 0) close(ch[i].fd);
    if (pidfd >= 0) close(pidfd);
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    while (wait4(pid, &status, 0, &ru) < 0 && errno == EINTR) {
    }
    if (!ns) reap_group(pid);
    r->wall_ms = (double)(now_ns() - t0) / 1e6;
    r->cpu_ms = (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 +
                (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
    if (WIFEXITED(status)) r->exited = 1, r->exit_code = WEXITSTATUS(status);
    if (WIFSIGNALED(status)) r->signal = WTERMSIG(status);
    r->cpu_exceeded = !r->timed_out && (r->signal == SIGXCPU ||
                                        (r->signal == SIGKILL && r->cpu_ms >= x->cpu_s * 750.0));
    r->truncated = r->out.total > r->out.len || r->err.total > r->err.len || r->aux.total > r->aux.len;

    const v3_code_status *last = nst ? &st[nst - 1] : NULL;
    if (last && last->stage == V3_CODE_STAGE_READY) {
        r->isolation = last->iso;
        if (ns) {
            r->isolation |= V3_CODE_ISO_USERNS | V3_CODE_ISO_NETNS | V3_CODE_ISO_PIDNS | V3_CODE_ISO_IPCNS;
            if (nobody) r->isolation |= V3_CODE_ISO_NOBODY;
        }
    } else if (!r->timed_out) {
        /* the child failed before exec: in the namespaces, mounting or ids may be refused (an
         * LSM, a locked-down /tmp); then the plain way is tried */
        int stage = last ? last->stage : V3_CODE_STAGE_SYNC;
        if (ns && stage != V3_CODE_STAGE_EXEC && stage != V3_CODE_STAGE_WRITE) {
            *retry = 1;
        } else {
            rc = v3_errf(err, V3_EIO, "code: %s %s: %s", stage_name(stage),
                         stage == V3_CODE_STAGE_EXEC ? x->interp : "",
                         last ? strerror(last->err) : "the child died before reporting");
        }
    } else {
        rc = v3_errf(err, V3_EIO, "code: the child did not start within the time limit");
    }
out:
    close_pair(pin);
    close_pair(pout);
    close_pair(perr);
    close_pair(paux);
    close_pair(psync);
    close_pair(pst);
    if (tmpdir[0]) rm_tree(tmpdir);
    return rc;
}

int v3_code_run(const v3_code_opts *o, const char *src, size_t len, v3_code_result *r, v3_err *err) {
    memset(r, 0, sizeof *r);
    if (o->stdin_len > V3_CODE_MAX_STDIN)
        return v3_errf(err, V3_EINVAL, "code: stdin of %zu bytes exceeds %d", o->stdin_len, V3_CODE_MAX_STDIN);
    run_ctx x;
    memset(&x, 0, sizeof x);
    x.o = o;
    x.src = src;
    x.len = len;
    int64_t timeout = o->timeout_ms > 0 ? o->timeout_ms : V3_CODE_DEFAULT_TIMEOUT_MS;
    x.deadline = now_ns() + timeout * 1000000LL;
    x.cpu_s = o->cpu_s > 0 ? o->cpu_s : (int)((timeout + 999) / 1000) + 1;
    x.mem = o->mem_bytes ? o->mem_bytes : V3_CODE_DEFAULT_MEM;
    x.fsize = o->fsize_bytes ? o->fsize_bytes : V3_CODE_DEFAULT_FSIZE;
    x.nproc = o->nproc > 0 ? o->nproc : V3_CODE_DEFAULT_NPROC;
    x.nofile = o->nofile > 0 ? o->nofile : V3_CODE_DEFAULT_NOFILE;
    if (x.nofile < 16) x.nofile = 16; /* the child parks its pipes at 10.. before arranging them */
    x.cap = o->out_cap ? o->out_cap : V3_CODE_DEFAULT_OUT_CAP;
    const char *fname = o->filename ? o->filename : "main.py";
    if (!fname[0] || strchr(fname, '/') || !strcmp(fname, ".") || !strcmp(fname, ".."))
        return v3_errf(err, V3_EINVAL, "code: the program's file name must be a plain name (got '%s')", fname);
    if (len > x.fsize)
        return v3_errf(err, V3_EINVAL, "code: program of %zu bytes exceeds the file size limit %zu", len, x.fsize);
    snprintf(x.tmpfs_opts, sizeof x.tmpfs_opts, "size=%zu,nr_inodes=4096,mode=0700", x.fsize);

    char interp[PATH_MAX];
    const char *name = o->interpreter ? o->interpreter : "python3";
    int rc = resolve(name, interp, sizeof interp, err);
    if (rc != V3_OK) return rc;
    x.interp = interp;
    const char *const *args = o->args;
    int n_args = o->n_args;
    if (!args && !o->interpreter) args = python_args, n_args = 2;
    x.argv = calloc((size_t)n_args + 3, sizeof *x.argv);
    if (!x.argv) return v3_errf(err, V3_ENOMEM, "code: out of memory");
    x.argv[0] = (char *)name;
    for (int i = 0; i < n_args; i++) x.argv[i + 1] = (char *)args[i];
    x.argv[n_args + 1] = (char *)(o->filename ? o->filename : "main.py");
    x.envp[0] = (char *)"PATH=/usr/local/bin:/usr/bin:/bin";

    int retry = 0;
    if (!(o->flags & V3_CODE_NO_NAMESPACES)) rc = attempt(&x, 1, r, &retry, err);
    if (rc == V3_OK && (retry || (o->flags & V3_CODE_NO_NAMESPACES))) {
        v3_code_result_free(r);
        rc = attempt(&x, 0, r, &retry, err);
    }
    free(x.argv);
    if (rc != V3_OK) v3_code_result_free(r);
    return rc;
}

void v3_code_result_free(v3_code_result *r) {
    if (!r) return;
    free(r->out.data);
    free(r->err.data);
    free(r->aux.data);
    memset(r, 0, sizeof *r);
}

/* code_exec.h — run untrusted code (a model's completion) in a confined child process, and score
 * it against a dataset row's tests. Used by the `v3.code` Lua module of reward workers
 * (rewards/code_lua.c, rewards/code.lua); see docs/rewards-code.md.
 *
 * Layer 1, v3_code_run (rewards/code_exec.c, code_child.c, code_seccomp.c): one program text, one
 * interpreter (python3 by default), one child process, no shell (execve with an argv, environment
 * cleared but for PATH). The child is confined by whatever of the following the machine allows;
 * v3_code_result.isolation says which were in force:
 *   namespaces  clone(CLONE_NEWUSER|NEWPID|NEWNET|NEWNS|NEWIPC): no network at all (an empty
 *               network namespace), its own pid namespace (when its first process ends the kernel
 *               kills every other), the whole file system read-only but for a private size-capped
 *               tmpfs on /tmp that is its cwd and vanishes with it, a fresh /proc; as uid 0 of the
 *               namespace, mapped to nobody (65534) outside when the caller is root, with every
 *               capability dropped before exec. Without them (no unprivileged user namespaces, or
 *               V3_CODE_NO_NAMESPACES) the child runs in a fresh host temp directory
 *               (mkdtemp, removed afterwards) as nobody when the caller is root.
 *   seccomp     a BPF filter: no sockets but AF_UNIX (so no network even without a namespace), no
 *               ptrace, mount, namespaces, setsid/setpgid (the process group stays whole), bpf,
 *               perf, io_uring, keyrings, modules, kexec, reboot; other architectures' syscalls kill.
 *   rlimits     CPU seconds (hard = soft: SIGKILL), address space, file size, processes, open
 *               files, no core dumps. The parent sets them with prlimit, so a root parent can give
 *               the child limits above its own (a reward worker runs with RLIMIT_NPROC 0).
 *   wall clock  the parent SIGKILLs the child's process group (and its pid namespace) at the
 *               deadline, and after the child exits, whatever it left in its group.
 * Output: stdout, stderr and the optional aux channel (fd 3) are read as they come and kept up to
 * a byte cap each; the rest is read and dropped (so a 1 GB print never lands in memory or on disk).
 *
 * Layer 2, v3_code_run_tests (rewards/code_tests.c, code_harness.c): a Python program plus test
 * snippets, run in one v3_code_run by a harness that reports each test's verdict on fd 3; the score
 * is the fraction of tests passed. HumanEval's `check(candidate)` is split into one test per
 * top-level assert statement of its body. */
#ifndef V3_REWARDS_CODE_EXEC_H
#define V3_REWARDS_CODE_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

/* Defaults used when an option is 0. */
#define V3_CODE_DEFAULT_TIMEOUT_MS 10000       /* wall clock of one run */
#define V3_CODE_DEFAULT_MEM (512u << 20)       /* RLIMIT_AS of the interpreter */
#define V3_CODE_DEFAULT_FSIZE (16u << 20)      /* RLIMIT_FSIZE, and the size of the private /tmp */
#define V3_CODE_DEFAULT_NPROC 16               /* processes and threads (per namespace) */
#define V3_CODE_DEFAULT_NOFILE 64
#define V3_CODE_DEFAULT_OUT_CAP (64u << 10)    /* bytes kept of stdout, of stderr, of aux */
#define V3_CODE_MAX_STDIN 4096                 /* stdin is written before the child starts */
#define V3_CODE_PATH "/usr/local/bin:/usr/bin:/bin" /* where an interpreter name is looked up */
#define V3_CODE_NOBODY 65534                   /* the outside uid/gid when the caller is root */

/* Isolation in force for a run (bits of v3_code_result.isolation). */
enum {
    V3_CODE_ISO_USERNS = 1u << 0,  /* own user namespace */
    V3_CODE_ISO_NETNS = 1u << 1,   /* own (empty) network namespace: no network */
    V3_CODE_ISO_PIDNS = 1u << 2,   /* own pid namespace */
    V3_CODE_ISO_IPCNS = 1u << 3,   /* own System V IPC namespace */
    V3_CODE_ISO_TMPFS = 1u << 4,   /* private tmpfs /tmp as cwd (own mount namespace) */
    V3_CODE_ISO_ROFS = 1u << 5,    /* everything else mounted read-only */
    V3_CODE_ISO_PROC = 1u << 6,    /* a /proc of its own pid namespace */
    V3_CODE_ISO_NOBODY = 1u << 7,  /* runs as uid/gid 65534 outside */
    V3_CODE_ISO_NOCAPS = 1u << 8,  /* capability sets and bounding set empty, no_new_privs */
    V3_CODE_ISO_SECCOMP = 1u << 9, /* the seccomp filter */
    V3_CODE_ISO_TMPDIR = 1u << 10, /* a host temp directory as cwd (no private tmpfs) */
};

/* Things not to try (tests use them to check each protection alone). */
enum {
    V3_CODE_NO_NAMESPACES = 1u << 0,
    V3_CODE_NO_SECCOMP = 1u << 1,
};

typedef struct v3_code_opts {
    const char *interpreter;      /* NULL: "python3"; a name without '/' is looked up in V3_CODE_PATH */
    const char *const *args;      /* arguments before the file name; NULL: "-I -B" (python) */
    int n_args;
    const char *filename;         /* name of the program file in the cwd; NULL: "main.py" */
    const char *stdin_data;       /* what the child reads on stdin (<= V3_CODE_MAX_STDIN), then EOF */
    size_t stdin_len;
    int aux;                      /* open fd 3 as a third captured output channel */
    int64_t timeout_ms;           /* wall clock; 0 = default */
    int cpu_s;                    /* RLIMIT_CPU; 0 = timeout rounded up + 1 */
    size_t mem_bytes;             /* RLIMIT_AS; 0 = default */
    size_t fsize_bytes;           /* RLIMIT_FSIZE and private /tmp size; 0 = default */
    int nproc;                    /* RLIMIT_NPROC; 0 = default */
    int nofile;                   /* RLIMIT_NOFILE; 0 = default */
    size_t out_cap;               /* bytes kept per channel; 0 = default */
    const char *tmp_base;         /* where a host temp directory goes; NULL: "/tmp" */
    unsigned flags;               /* V3_CODE_NO_* */
} v3_code_opts;

/* One captured channel. */
typedef struct v3_code_buf {
    char *data;     /* malloc'd, NUL-terminated, len bytes kept; NULL when nothing came */
    size_t len;
    uint64_t total; /* bytes the child wrote, kept or not */
} v3_code_buf;

typedef struct v3_code_result {
    int exited;        /* 1: exit_code is valid */
    int exit_code;
    int signal;        /* killing signal, or 0 */
    int timed_out;     /* the wall clock ran out and the parent killed it */
    int cpu_exceeded;  /* killed by RLIMIT_CPU */
    int truncated;     /* some channel went past out_cap */
    unsigned isolation;/* V3_CODE_ISO_* in force */
    double wall_ms, cpu_ms;
    int pid;           /* the child (also its process group id, reaped and killed by now) */
    v3_code_buf out, err, aux;
} v3_code_result;

void v3_code_opts_default(v3_code_opts *o);

/* Writes src[0..len) as the program file in a fresh private directory and runs the interpreter on
 * it with the confinement above. What the program does (errors, crashes, timeouts, being killed)
 * is reported in *r, not as a failure of the call. Fails (r zeroed) only when nothing could be
 * run: the interpreter is not found (V3_ENOTFOUND), bad options (V3_EINVAL), or pipes/fork/temp
 * directory fail (V3_EIO; a fork refused by RLIMIT_NPROC says so). Thread-safe; the calling thread
 * must outlive the call (the child's parent-death signal is tied to it). Free r with
 * v3_code_result_free. */
int v3_code_run(const v3_code_opts *o, const char *src, size_t len, v3_code_result *r, v3_err *err);
void v3_code_result_free(v3_code_result *r);

/* "userns,netns,..." for isolation bits (or "none") into buf; returns buf. */
const char *v3_code_isolation_str(unsigned bits, char *buf, size_t n);

/* ---- tests (rewards/code_tests.c) ---- */

#define V3_CODE_MAX_TESTS 1024
#define V3_CODE_DEFAULT_TEST_TIMEOUT_MS 1000

typedef struct v3_code_tests {
    const char *program;           /* the solution (Python) */
    const char *const *tests;      /* snippets, each one test, run in the solution's globals */
    int n_tests;
    const char *check;             /* HumanEval `test` source defining check(candidate), or NULL */
    const char *entry_point;       /* the candidate's name in the solution (with check) */
    const char *setup;             /* run after the program, before the tests (MBPP imports), or NULL */
    int64_t test_timeout_ms;       /* each test, and the program's top level; 0 = default */
} v3_code_tests;

/* The verdicts of one run. Fixed size, so that a Lua binding can hold it in a userdata. */
typedef struct v3_code_report {
    int total;                                 /* tests (check's asserts counted one by one) */
    int passed;
    unsigned char results[V3_CODE_MAX_TESTS];  /* 1 passed; [0..total) */
    char error[512];    /* why no test could pass (program raised, timed out, crashed), or "" */
    char failure[512];  /* the first failed test's message, or "" */
    int timed_out, cpu_exceeded, truncated, exit_code, signal;
    unsigned isolation;
    double wall_ms;
} v3_code_report;

/* Runs the program and its tests in one confined interpreter (o as for v3_code_run; its stdin,
 * aux and filename are the harness's). Tests that report nothing (the run died, timed out or
 * exited early) count as failed. Fails only as v3_code_run does, or on bad input (more than
 * V3_CODE_MAX_TESTS tests, V3_ERANGE). */
int v3_code_run_tests(const v3_code_opts *o, const v3_code_tests *t, v3_code_report *rep,
                      v3_err *err);

/* ---- Lua (rewards/code_lua.c) ---- */

struct v3_sandbox;
/* Adds v3.code (run) to the `v3` table of a sandboxed state; reward workers call it after
 * v3_v3mod_open. Runs protected (v3_sandbox_cpcall). */
int v3_code_lua_open(struct v3_sandbox *sb, v3_err *err);

/* ---- internal: shared by code_exec.c, code_child.c, code_seccomp.c, code_harness.c ---- */

/* What the child needs, prepared by the parent (the child calls no malloc). */
typedef struct v3_code_child {
    int ns;                      /* in the namespaces: wait for the id maps, mount /tmp, /proc */
    int to_nobody;               /* no namespaces, root parent: become 65534 */
    int fd_in, fd_out, fd_err, fd_aux; /* child ends (fd_aux -1: none) */
    int fd_sync;                 /* read: one byte 'g' when the parent is ready */
    int fd_status;               /* write: v3_code_status records; CLOEXEC tells exec worked */
    const char *interp;          /* absolute path */
    char *const *argv, *const *envp;
    const char *workdir;         /* ns: "/tmp"; else the host temp directory */
    const char *filename;
    const char *src;
    size_t len;
    const char *tmpfs_opts;      /* "size=...,nr_inodes=...,mode=0700" */
    size_t mem_bytes;            /* RLIMIT_AS, set by the child itself just before exec */
    int seccomp;                 /* install the filter */
} v3_code_child;

/* Child -> parent, before exec (stage 0: the isolation it reached) or on a failure. */
typedef struct v3_code_status {
    int stage; /* V3_CODE_STAGE_* */
    int err;   /* errno */
    unsigned iso;
} v3_code_status;

enum {
    V3_CODE_STAGE_READY = 0,  /* about to exec; iso valid */
    V3_CODE_STAGE_SYNC,
    V3_CODE_STAGE_IDS,
    V3_CODE_STAGE_MOUNT,
    V3_CODE_STAGE_CHDIR,
    V3_CODE_STAGE_WRITE,
    V3_CODE_STAGE_FDS,
    V3_CODE_STAGE_EXEC,
};

/* The child's side (code_child.c): never returns. */
void v3_code_child_main(const v3_code_child *c) __attribute__((noreturn));
/* Installs the seccomp filter (code_seccomp.c): 0, or -1 with errno (no_new_privs must be set). */
int v3_code_seccomp_install(void);
/* The Python harness of v3_code_run_tests (code_harness.c), a constant text. */
const char *v3_code_harness_source(void);

#endif

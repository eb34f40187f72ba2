/* code_child.c — the code sandbox's child between clone and exec (see code_exec.h). Only
 * async-signal-safe calls and no allocation: the parent may have other threads, whose locks
 * (malloc's among them) the child inherits in whatever state they were.
 *
 * No glibc wrapper that assumes the parent's threads exist (setresuid & co.) is used either.
 *
 * Order matters: wait for the parent (id maps, rlimits) -> ids -> mounts -> cwd, program file ->
 * process group -> descriptors -> capabilities -> address-space limit -> seccomp (last, as it
 * forbids mount and setpgid) -> report -> exec. */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/mount.h>
#include <linux/securebits.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rewards/code_exec.h"

static void report(int fd, int stage, int e, unsigned iso) {
    v3_code_status s = {stage, e, iso};
    ssize_t k;
    do k = write(fd, &s, sizeof s);
    while (k < 0 && errno == EINTR);
}

static void __attribute__((noreturn)) fail_at(int fd, int stage) {
    report(fd, stage, errno, 0);
    _exit(126);
}

static void __attribute__((noreturn)) fail(const v3_code_child *c, int stage) { fail_at(c->fd_status, stage); }

/* Raw id changes. glibc's setresuid & co. broadcast the change to every thread the parent had
 * (its setxid protocol), which in a child made by a raw clone waits for threads that are not
 * there, or for a lock one of them held: a hang. The child has one thread; the raw call is what
 * it needs. */
static long sys_setgroups0(void) { return syscall(SYS_setgroups, 0, NULL); }
static long sys_setresgid(gid_t g) { return syscall(SYS_setresgid, g, g, g); }
static long sys_setresuid(uid_t u) { return syscall(SYS_setresuid, u, u, u); }

static void reset_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP) sigaction(s, &sa, NULL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void drop_bounding_set(void) {
    for (int cap = 0; cap < 64; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 && errno == EINVAL) break;
}

/* Empties every capability set and locks "root gets no capabilities at exec". 1 when the
 * effective and permitted sets are verifiably empty. */
static int drop_caps(void) {
    prctl(PR_SET_SECUREBITS,
          SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
              SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED,
          0, 0, 0); /* needs CAP_SETPCAP; without it there is nothing to drop */
    drop_bounding_set();
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d) != 0) return 0;
    memset(d, 0xff, sizeof d);
    if (syscall(SYS_capget, &h, d) != 0) return 0;
    return (d[0].effective | d[0].permitted | d[1].effective | d[1].permitted) == 0;
}

static void write_program(const v3_code_child *c) {
    int fd = open(c->filename, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) fail(c, V3_CODE_STAGE_WRITE);
    const char *p = c->src;
    size_t n = c->len;
    while (n) {
        ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) fail(c, V3_CODE_STAGE_WRITE);
        p += k;
        n -= (size_t)k;
    }
    if (close(fd) != 0) fail(c, V3_CODE_STAGE_WRITE);
}

/* Puts stdin/stdout/stderr/[aux] at 0..3 and the status pipe right after them (close-on-exec);
 * closes everything else. Returns the status descriptor. */
static int arrange_fds(const v3_code_child *c) {
    int src[5] = {c->fd_in, c->fd_out, c->fd_err, c->fd_aux, c->fd_status};
    int hi[5];
    for (int i = 0; i < 5; i++) {
        hi[i] = -1;
        if (src[i] < 0) continue;
        hi[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 10);
        if (hi[i] < 0) fail(c, V3_CODE_STAGE_FDS);
    }
    /* from here on the original numbers may be overwritten: failures go to the copy */
    int next = 0;
    for (int i = 0; i < 4; i++) {
        if (hi[i] < 0) continue;
        if (dup2(hi[i], next) < 0) fail_at(hi[4], V3_CODE_STAGE_FDS);
        next++;
    }
    int st = next;
    if (dup3(hi[4], st, O_CLOEXEC) < 0) fail_at(hi[4], V3_CODE_STAGE_FDS);
    if (syscall(SYS_close_range, (unsigned)st + 1, ~0U, 0) != 0)
        for (int i = st + 1; i < 1024; i++) close(i);
    return st;
}

void v3_code_child_main(const v3_code_child *c) {
    unsigned iso = 0;
    prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    reset_signals();
    char go = 0;
    ssize_t k;
    do k = read(c->fd_sync, &go, 1);
    while (k < 0 && errno == EINTR);
    if (k != 1 || go != 'g') _exit(125); /* the parent gave up (or is gone) */

    if (c->ns) {
        sys_setgroups0(); /* refused when the parent had to deny setgroups; then moot */
        if (sys_setresgid(0) != 0 || sys_setresuid(0) != 0) fail(c, V3_CODE_STAGE_IDS);
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0); /* an id change cleared it */
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) fail(c, V3_CODE_STAGE_MOUNT);
#ifdef SYS_mount_setattr
        struct mount_attr ma;
        memset(&ma, 0, sizeof ma);
        ma.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID; /* not nodev: /dev/null stays usable */
        if (syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &ma, sizeof ma) == 0)
            iso |= V3_CODE_ISO_ROFS;
#endif
        if (mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, c->tmpfs_opts) != 0)
            fail(c, V3_CODE_STAGE_MOUNT);
        iso |= V3_CODE_ISO_TMPFS;
        if (mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) == 0)
            iso |= V3_CODE_ISO_PROC;
    } else if (c->to_nobody) {
        /* enter the directory as root: nobody may lack search permission on its ancestors */
        if (chdir(c->workdir) != 0) fail(c, V3_CODE_STAGE_CHDIR);
        drop_bounding_set();
        if (sys_setgroups0() != 0 || sys_setresgid(V3_CODE_NOBODY) != 0 ||
            sys_setresuid(V3_CODE_NOBODY) != 0)
            fail(c, V3_CODE_STAGE_IDS);
        prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
        iso |= V3_CODE_ISO_NOBODY;
    }
    if (!c->to_nobody && chdir(c->workdir) != 0) fail(c, V3_CODE_STAGE_CHDIR);
    if (!c->ns) iso |= V3_CODE_ISO_TMPDIR;
    write_program(c);
    setpgid(0, 0);
    int st = arrange_fds(c);

    if (drop_caps() && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0) iso |= V3_CODE_ISO_NOCAPS;
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    /* RLIMIT_AS is set here, last, and not by the parent: under what the forked image already
     * maps, its next stack growth would fail. The parent raised the hard limit where it could. */
    struct rlimit as;
    if (getrlimit(RLIMIT_AS, &as) == 0) {
        rlim_t want = (rlim_t)c->mem_bytes;
        if (as.rlim_max != RLIM_INFINITY && want > as.rlim_max) want = as.rlim_max;
        as.rlim_cur = as.rlim_max = want;
        setrlimit(RLIMIT_AS, &as);
    }
    if (c->seccomp && v3_code_seccomp_install() == 0) iso |= V3_CODE_ISO_SECCOMP;
    report(st, V3_CODE_STAGE_READY, 0, iso);
    execve(c->interp, c->argv, c->envp);
    report(st, V3_CODE_STAGE_EXEC, errno, iso);
    _exit(127);
}

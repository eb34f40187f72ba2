/* code_seccomp.c — the seccomp filter of the code sandbox (see code_exec.h). Built on the stack
 * with no allocation: it runs in the forked child, just before exec.
 *
 * Policy: the default is allow (an interpreter needs a broad set of syscalls); denied are the
 * syscalls that reach out of the sandbox or widen it:
 *   - socket() of any family but AF_UNIX: EACCES (no network even without a network namespace;
 *     socketpair stays, multiprocessing pipes use it);
 *   - clone() with CLONE_NEW* flags, unshare, setns, clone3 (ENOSYS, so libc falls back to the
 *     inspectable clone): no new namespaces;
 *   - setsid, setpgid: processes cannot leave the process group the parent kills;
 *   - ptrace and process_vm_*, mount and the new mount API, pivot_root, chroot, bpf,
 *     perf_event_open, io_uring (its operations bypass seccomp), userfaultfd, keyrings, kernel
 *     modules, kexec, reboot, swap, acct, quotactl, syslog, open_by_handle_at: EPERM;
 *   - a syscall of another ABI (x32, or i386 via int 0x80): the process is killed. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rewards/code_exec.h"

#if defined(__x86_64__)
#define CODE_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define CODE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifdef CODE_AUDIT_ARCH

#define MAX_INSNS 128

typedef struct prog {
    struct sock_filter f[MAX_INSNS];
    int n;
} prog;

static void emit(prog *p, unsigned short code, unsigned int k, unsigned char jt, unsigned char jf) {
    if (p->n < MAX_INSNS) p->f[p->n++] = (struct sock_filter){code, jt, jf, k};
}

/* Syscalls answered with EPERM. */
static const long denied[] = {
    SYS_unshare, SYS_setns, SYS_setsid, SYS_setpgid, SYS_ptrace, SYS_process_vm_readv,
    SYS_process_vm_writev, SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chroot, SYS_bpf,
    SYS_perf_event_open, SYS_userfaultfd, SYS_keyctl, SYS_add_key, SYS_request_key,
    SYS_init_module, SYS_finit_module, SYS_delete_module, SYS_kexec_load, SYS_reboot,
    SYS_swapon, SYS_swapoff, SYS_acct, SYS_quotactl, SYS_syslog, SYS_open_by_handle_at,
    SYS_name_to_handle_at,
#ifdef SYS_kexec_file_load
    SYS_kexec_file_load,
#endif
#ifdef SYS_io_uring_setup
    SYS_io_uring_setup, SYS_io_uring_enter, SYS_io_uring_register,
#endif
#ifdef SYS_mount_setattr
    SYS_mount_setattr,
#endif
#ifdef SYS_open_tree
    SYS_open_tree, SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick,
#endif
#ifdef SYS_iopl
    SYS_iopl, SYS_ioperm,
#endif
};

#define NS_FLAGS                                                                                   \
    (CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS |    \
     CLONE_NEWCGROUP)

/* Layout (jumps are forward only and relative, hence the fixed tail):
 *   arch check, load nr, [x32 check], one JEQ per denied syscall -> EPERM,
 *   JEQ socket -> SOCK, JEQ clone -> CLONE, JEQ clone3 -> ENOSYS, ALLOW,
 *   EPERM: ret, ENOSYS: ret, KILL: ret,
 *   SOCK: load arg0, JEQ AF_UNIX ? ALLOW2 : EACCES,
 *   CLONE: load arg0, JSET NS_FLAGS ? EPERM2 : ALLOW2,
 *   ALLOW2, EACCES, EPERM2. */
static void build(prog *p) {
    const int nd = (int)(sizeof denied / sizeof denied[0]);
#if defined(__x86_64__)
    const int x32 = 1;
#else
    const int x32 = 0;
#endif
    /* indices of the fixed tail */
    int head = 3 + x32;           /* after arch check (2), kill-jump uses KILL, load nr (1) */
    int jeqs = head + nd;         /* first of socket/clone/clone3 */
    int allow = jeqs + 3;
    int r_eperm = allow + 1, r_enosys = allow + 2, r_kill = allow + 3;
    int sock = allow + 4, cl = sock + 2, allow2 = cl + 2, r_eacces = allow2 + 1,
        r_eperm2 = allow2 + 2;
    p->n = 0;
    emit(p, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch), 0, 0);
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, CODE_AUDIT_ARCH, 0, (unsigned char)(r_kill - 2));
    emit(p, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr), 0, 0);
    if (x32) emit(p, BPF_JMP | BPF_JGE | BPF_K, 0x40000000u, (unsigned char)(r_kill - 4), 0);
    for (int i = 0; i < nd; i++)
        emit(p, BPF_JMP | BPF_JEQ | BPF_K, (unsigned int)denied[i],
             (unsigned char)(r_eperm - (head + i) - 1), 0);
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_socket, (unsigned char)(sock - jeqs - 1), 0);
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, (unsigned char)(cl - jeqs - 2), 0);
#ifdef SYS_clone3
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, (unsigned char)(r_enosys - jeqs - 3), 0);
#else
    emit(p, BPF_JMP | BPF_JA, 0, 0, 0);
#endif
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM, 0, 0);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS, 0, 0);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS, 0, 0);
    /* socket(domain, ...): the low word of args[0] (little-endian) */
    emit(p, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]), 0, 0);
    emit(p, BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, (unsigned char)(allow2 - sock - 2),
         (unsigned char)(r_eacces - sock - 2));
    /* clone(flags, ...) on both architectures takes the flags first */
    emit(p, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]), 0, 0);
    emit(p, BPF_JMP | BPF_JSET | BPF_K, NS_FLAGS, (unsigned char)(r_eperm2 - cl - 2),
         (unsigned char)(allow2 - cl - 2));
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ALLOW, 0, 0);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EACCES, 0, 0);
    emit(p, BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM, 0, 0);
}

int v3_code_seccomp_install(void) {
    prog p;
    build(&p);
    if (p.n >= MAX_INSNS) {
        errno = E2BIG;
        return -1;
    }
    struct sock_fprog fp = {(unsigned short)p.n, p.f};
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fp, 0, 0) == 0 ? 0 : -1;
}

#else

int v3_code_seccomp_install(void) {
    errno = ENOSYS; /* no filter for this architecture */
    return -1;
}

#endif

// clone3 into a cgroup2 group; see include/csystem.h and docs/ARCHITECTURE.md, "Spawning children".
#define _GNU_SOURCE
#include "csystem.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <sched.h>
#include <sys/mman.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

int sz_clone3_available(void) {
    // A NULL argument block of size 0 is refused with EINVAL by a kernel that has clone3.
    long rc = syscall(SYS_clone3, NULL, 0);
    return !(rc == -1 && errno == ENOSYS);
}

// Child side: raw async-signal-safe calls only. Reports errno on `report` (close-on-exec) and exits 127.
static void child_fail(int report, int code) {
    ssize_t ignored = write(report, &code, sizeof code);
    (void)ignored;
    _exit(127);
}

static void close_from(int low, int keep) {
    // Everything >= low except `keep` (the error pipe, which is close-on-exec and goes at execve).
    if (keep > low) syscall(SYS_close_range, (unsigned)low, (unsigned)(keep - 1), 0u);
    syscall(SYS_close_range, (unsigned)(keep + 1), ~0u, 0u);
}

static void child(const sz_spawn_request *r, int report, pid_t parent) {
    // Default dispositions for every signal (as POSIX_SPAWN_SETSIGDEF with a full set). glibc refuses its
    // two internal signals; their dispositions are reset by execve anyway.
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int s = 1; s < NSIG; s++) (void)sigaction(s, &dfl, NULL);

    if (setsid() < 0) child_fail(report, errno);
    if (r->death_signal > 0) {
        if (prctl(PR_SET_PDEATHSIG, (unsigned long)r->death_signal, 0, 0, 0) < 0) child_fail(report, errno);
        // The parent died before the prctl: nothing will send it. Pending (every signal is blocked here)
        // until the mask is emptied right before execve, where its default action ends the child.
        if (getppid() != parent) (void)kill(getpid(), r->death_signal);
    }

    // Move the error pipe above the stdio range first, so dup2 onto 0..2 cannot clobber it.
    if (report < 3) {
        int moved = fcntl(report, F_DUPFD_CLOEXEC, 3);
        if (moved < 0) _exit(127);
        report = moved;
    }
    int out = r->stdout_fd;
    if (out >= 0 && out < 3) {
        out = fcntl(out, F_DUPFD_CLOEXEC, 3);
        if (out < 0) child_fail(report, errno);
    }
    int in = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (in < 0) child_fail(report, errno);
    // dup2 onto itself keeps close-on-exec: clear it when the descriptor is already the right one (the
    // parent had 0, 1 or 2 closed).
    if (in == 0) { if (fcntl(0, F_SETFD, 0) < 0) child_fail(report, errno); }
    else if (dup2(in, 0) < 0) child_fail(report, errno);
    if (out < 0) {
        out = open(r->stdout_path ? r->stdout_path : "/dev/null", O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (out < 0) child_fail(report, errno);
    }
    if (out == 1) { if (fcntl(1, F_SETFD, 0) < 0) child_fail(report, errno); }
    else if (dup2(out, 1) < 0) child_fail(report, errno);
    if (dup2(1, 2) < 0) child_fail(report, errno);
    close_from(3, report);
    if (r->working_directory && chdir(r->working_directory) < 0) child_fail(report, errno);

    sigset_t empty;
    sigemptyset(&empty);
    if (sigprocmask(SIG_SETMASK, &empty, NULL) < 0) child_fail(report, errno);
    execve(r->executable, r->argv, r->envp);
    child_fail(report, errno);
}

struct shared_child { const sz_spawn_request *request; int report; int unused; pid_t parent; };

static int shared_child_entry(void *p) {
    struct shared_child *c = p;
    close(c->unused);
    child(c->request, c->report, c->parent);  // does not return
    return 127;
}

// The child's stack for CLONE_VM: its own mapping (the parent's stack is the parent's), freed after the
// child has exec'd or exited (CLONE_VFORK: the parent resumes only then).
enum { shared_child_stack = 256 * 1024 };

pid_t sz_spawn_into_cgroup(const sz_spawn_request *request, int *pidfd, int *error, int *in_child) {
    *pidfd = -1;
    *error = 0;
    *in_child = 0;
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) { *error = errno; return -1; }

    // Block every signal across the clone, so no handler of the parent's runs in the child before its
    // dispositions are reset (posix_spawn does the same).
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);

    int fd = -1;
    pid_t parent = getpid();
    long pid;
    int cloneErrno;
    if (request->cgroup_fd >= 0) {
        // Into a cgroup: clone3, the only call with CLONE_INTO_CGROUP; no CLONE_VM (a raw clone3 child
        // cannot start on a stack of its own), so it works on a copy of the parent's memory.
        struct clone_args args;
        memset(&args, 0, sizeof args);
        args.flags = CLONE_VFORK | CLONE_PIDFD | CLONE_INTO_CGROUP;
        args.pidfd = (uint64_t)(uintptr_t)&fd;
        args.exit_signal = SIGCHLD;
        args.cgroup = (uint64_t)request->cgroup_fd;
        pid = syscall(SYS_clone3, &args, sizeof args);
        if (pid == 0) {
            close(pipefd[0]);
            child(request, pipefd[1], parent);  // does not return
            _exit(127);
        }
        cloneErrno = errno;
    } else {
        // No cgroup: glibc's clone with CLONE_VM | CLONE_VFORK and a stack of its own, as posix_spawn does
        // (no copy of the parent's page tables: about 0.7 ms a spawn here against 2 ms without CLONE_VM).
        // The child shares our memory while we wait: it only makes system calls and writes its own stack.
        void *stack = mmap(NULL, shared_child_stack, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
        if (stack == MAP_FAILED) {
            cloneErrno = errno;
            pid = -1;
        } else {
            struct shared_child c = { request, pipefd[1], pipefd[0], parent };
            pid = clone(shared_child_entry, (char *)stack + shared_child_stack,
                        CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &c, &fd);
            cloneErrno = errno;
            munmap(stack, shared_child_stack);
        }
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    close(pipefd[1]);
    if (pid < 0) {
        close(pipefd[0]);
        *error = cloneErrno;
        return -1;
    }
    // CLONE_VFORK: the child has exec'd or exited by now. Any bytes are the errno of its failed step.
    int code = 0;
    ssize_t n;
    do { n = read(pipefd[0], &code, sizeof code); } while (n < 0 && errno == EINTR);
    close(pipefd[0]);
    if (n == (ssize_t)sizeof code) {
        int status;
        while (waitpid((pid_t)pid, &status, 0) < 0 && errno == EINTR) {}
        if (fd >= 0) close(fd);
        *error = code;
        *in_child = 1;
        return -1;
    }
    *pidfd = fd;
    return (pid_t)pid;
}

int sz_set_parent_death_signal(int signal) {
    return prctl(PR_SET_PDEATHSIG, (unsigned long)signal, 0, 0, 0);
}

int sz_set_xattr(const char *path, const char *name, const char *value) {
    return setxattr(path, name, value, strlen(value), 0);
}

long sz_get_xattr(const char *path, const char *name, char *buffer, unsigned long size) {
    if (size == 0) { errno = ERANGE; return -1; }
    ssize_t n = getxattr(path, name, buffer, size - 1);
    if (n >= 0) buffer[n] = 0;
    return (long)n;
}

int sz_pipe2(int fds[2], int flags) { return pipe2(fds, flags); }

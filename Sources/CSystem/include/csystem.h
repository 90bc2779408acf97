// Linux calls the Swift Glibc module cannot express: clone3 into a cgroup2 group, a child with a parent-death
// signal; prctl and xattrs; pipe2, pidfds, the GNU posix_spawn file actions, epoll, eventfd, signalfd and
// ioctl(FIONREAD). The glibc version guards are decided when this is built (against that glibc's headers).
#ifndef SZ_CSYSTEM_H
#define SZ_CSYSTEM_H

#include <sys/types.h>

/// 1 when the kernel has clone3 (Linux 5.3+; CLONE_INTO_CGROUP needs 5.7+), 0 when it answers ENOSYS.
int sz_clone3_available(void);

/// What the child is started with: the same inputs as Spawner's posix_spawn file actions and attributes.
typedef struct {
    const char *executable;        // absolute path, execve'd (no PATH search)
    char *const *argv;             // NULL-terminated
    char *const *envp;             // NULL-terminated, the complete environment
    int stdout_fd;                 // >= 0: dup2'ed onto 1 and 2 (a log pipe, an open log file)
    const char *stdout_path;       // used when stdout_fd < 0: opened O_WRONLY|O_APPEND|O_CREAT 0644 ("/dev/null" when NULL)
    const char *working_directory; // NULL: the parent's
    int cgroup_fd;                 // an O_DIRECTORY fd of the cgroup2 group the child starts in; -1: no cgroup
    int death_signal;              // > 0: PR_SET_PDEATHSIG in the child (sent when the spawning thread ends)
} sz_spawn_request;

/// clone3(CLONE_VFORK | CLONE_INTO_CGROUP | CLONE_PIDFD): the child is a member of the group from its
/// first instruction, so nothing it forks can start outside it. With cgroup_fd -1: glibc's
/// clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD) on a stack mapped for the child, as posix_spawn does (no
/// copy of the parent's page tables). In the child, only async-signal-safe system calls: default dispositions for every signal, setsid,
/// the parent-death signal (then, against the race with a parent that died before it, the signal to itself
/// when the parent is already gone: it is delivered when the mask is emptied), stdin from /dev/null,
/// stdout and stderr to the log, every other descriptor closed, chdir, an empty signal mask, execve.
/// Returns the PID and stores the pidfd (close-on-exec) in *pidfd; on failure returns -1 with the errno in
/// *error, and *in_child 0 when clone3 itself failed (no process was made: the cgroup or the kernel said no)
/// or 1 when a step of the child before execve failed (the child exited 127 and was reaped).
pid_t sz_spawn_into_cgroup(const sz_spawn_request *request, int *pidfd, int *error, int *in_child);

/// prctl(PR_SET_PDEATHSIG, signal) for the calling process (prctl is variadic: Swift cannot call it). 0 or -1/errno.
int sz_set_parent_death_signal(int signal);

/// setxattr(2) of a NUL-terminated value (the Glibc module does not import <sys/xattr.h>). 0 or -1/errno.
int sz_set_xattr(const char *path, const char *name, const char *value);
/// getxattr(2) into `buffer` (NUL-terminated); the length, or -1/errno.
long sz_get_xattr(const char *path, const char *name, char *buffer, unsigned long size);

/// pipe2(2) (the Glibc module does not import it): both ends made with `flags` (O_CLOEXEC, O_NONBLOCK)
/// atomically, so no child spawned by another thread meanwhile inherits them. 0 or -1/errno.
int sz_pipe2(int fds[2], int flags);

/// pidfd_open(pid, 0) (no glibc wrapper before 2.36, none imported): a close-on-exec fd naming exactly this
/// process, readable when it exits. The fd or -1/errno.
int sz_pidfd_open(pid_t pid);
/// pidfd_send_signal(pidfd, signal, NULL, 0): signals the very process the pidfd names. 0 or -1/errno.
int sz_pidfd_send_signal(int pidfd, int signal);

/// posix_spawn_file_actions_addclosefrom_np (glibc 2.34+) on a `posix_spawn_file_actions_t *`: close every fd
/// >= low_fd in the child. 0, or an error number (ENOSYS on an older glibc).
int sz_spawn_add_close_from(void *actions, int low_fd);
/// posix_spawn_file_actions_addchdir_np (glibc 2.29+). 0, or an error number (ENOSYS on an older glibc).
int sz_spawn_add_chdir(void *actions, const char *path);

/// ioctl(fd, FIONREAD): the bytes waiting to be read in a pipe or socket, or -1/errno (ioctl is variadic).
int sz_unread_bytes(int fd);

/// epoll, eventfd and signalfd, close-on-exec (the fds non-blocking where it applies). `event(s)` point at
/// `struct epoll_event`s, packed on x86_64: read and written by `sz_epoll_event_size` and `sz_epoll_data_offset`.
int sz_epoll_create(void);
int sz_epoll_ctl(int epfd, int op, int fd, void *event);
int sz_epoll_wait(int epfd, void *events, int max_events, int timeout_ms);
int sz_epoll_event_size(void);
int sz_epoll_data_offset(void);
int sz_eventfd(void);
/// `set`: a `sigset_t *` whose signals are blocked in every thread.
int sz_signalfd(const void *set);

#endif

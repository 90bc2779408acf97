// Linux calls the Swift Glibc module does not import (variadic, GNU-only or missing from its module map):
// one fixed-arity C function each, so Swift calls them without dlsym. See include/csystem.h.
#define _GNU_SOURCE
#include "csystem.h"

#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

int sz_pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

int sz_pidfd_send_signal(int pidfd, int signal) {
    return (int)syscall(SYS_pidfd_send_signal, pidfd, signal, NULL, 0);
}

int sz_spawn_add_close_from(void *actions, int low_fd) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return posix_spawn_file_actions_addclosefrom_np((posix_spawn_file_actions_t *)actions, low_fd);
#else
    (void)actions; (void)low_fd;
    return ENOSYS;
#endif
}

int sz_spawn_add_chdir(void *actions, const char *path) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 29))
    return posix_spawn_file_actions_addchdir_np((posix_spawn_file_actions_t *)actions, path);
#else
    (void)actions; (void)path;
    return ENOSYS;
#endif
}

int sz_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int sz_epoll_ctl(int epfd, int op, int fd, void *event) {
    return epoll_ctl(epfd, op, fd, (struct epoll_event *)event);
}

int sz_epoll_wait(int epfd, void *events, int max_events, int timeout_ms) {
    return epoll_wait(epfd, (struct epoll_event *)events, max_events, timeout_ms);
}

int sz_epoll_event_size(void) { return (int)sizeof(struct epoll_event); }

int sz_epoll_data_offset(void) { return (int)__builtin_offsetof(struct epoll_event, data); }

int sz_eventfd(void) { return eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC); }

int sz_signalfd(const void *set) { return signalfd(-1, (const sigset_t *)set, SFD_NONBLOCK | SFD_CLOEXEC); }

int sz_unread_bytes(int fd) {
    int n = 0;
    return ioctl(fd, FIONREAD, &n) < 0 ? -1 : n;
}

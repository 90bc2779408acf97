#ifndef SZ_CZEROMQ_SHIM_H
#define SZ_CZEROMQ_SHIM_H
#include <zmq.h>
#include <errno.h>

/* errno values that Swift cannot see as macros because libzmq defines them in an expression. */
static inline int sz_zmq_efsm(void) { return EFSM; }
static inline int sz_zmq_eterm(void) { return ETERM; }
static inline int sz_zmq_enocompatproto(void) { return ENOCOMPATPROTO; }
static inline int sz_zmq_emthread(void) { return EMTHREAD; }
#endif

#ifndef SZ_ZMQ_BASELINE_H
#define SZ_ZMQ_BASELINE_H
/* Raw libzmq from C: the baselines the benchmarks compare the Swift code against, measured in the same run. */
#include <stdint.h>

/* A REP echo server on its own thread (answers every frame with the same bytes). */
typedef struct szb_echo_server szb_echo_server;
/* Binds `endpoint` (e.g. "tcp://127.0.0.1:*"); writes the real endpoint into `bound` (size `bound_len`). */
szb_echo_server *szb_echo_start(const char *endpoint, char *bound, int bound_len);
/* Stops the thread, closes the socket, terminates the context; returns the number of requests answered. */
uint64_t szb_echo_stop(szb_echo_server *server);

/* A REP server on its own thread that answers every request with the fixed bytes `reply` (copied), as a
   handler answers with its own reply rather than an echo. Same binding and stop as the echo server. */
szb_echo_server *szb_reply_start(const char *endpoint, const char *reply, char *bound, int bound_len);

/* A C `zmq_proxy(router, dealer, NULL)` hop on its own thread and context: a ROUTER bound at `front` for REQ
   clients, a DEALER connected to `upstream` (a REP server). Writes the real front endpoint into `bound`. */
typedef struct szb_hop szb_hop;
szb_hop *szb_hop_start(const char *front, const char *upstream, char *bound, int bound_len);
/* Shuts the context down (zmq_proxy returns), joins the thread, closes both sockets. */
void szb_hop_stop(szb_hop *hop);

/* `iterations` REQ/REP round trips of `payload` on one socket; returns the total nanoseconds, or -1. */
int64_t szb_roundtrips_ns(const char *endpoint, const char *payload, int iterations);

/* `iterations` times: new REQ socket, linger 0, connect, round trip, close. The floor of a recovery step.
   Returns the total nanoseconds, or -1. */
int64_t szb_reopen_roundtrips_ns(const char *endpoint, const char *payload, int iterations);
/* A REQ client that stays connected, so samples can be interleaved finely without reconnecting. */
typedef struct szb_client szb_client;
szb_client *szb_client_open(const char *endpoint);
/* `iterations` round trips of `payload`; returns the nanoseconds they took, or -1. */
int64_t szb_client_roundtrips_ns(szb_client *client, const char *payload, int iterations);
void szb_client_close(szb_client *client);

/* `clients` threads, each with its own REQ socket, each doing `iterations` round trips at once.
   Returns the wall-clock nanoseconds until all finished, or -1 if any round trip failed. */
int64_t szb_parallel_roundtrips_ns(const char *endpoint, const char *payload, int iterations, int clients);
#endif

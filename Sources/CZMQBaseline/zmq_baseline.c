#define _GNU_SOURCE
#include "zmq_baseline.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

struct szb_echo_server {
    void *ctx;
    void *sock;
    pthread_t thread;
    volatile int stop;
    uint64_t answered;
    char *reply;      /* NULL: echo the request */
    size_t reply_len;
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *echo_loop(void *arg) {
    szb_echo_server *s = arg;
    zmq_msg_t msg;
    while (!s->stop) {
        zmq_pollitem_t item = {s->sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 20) <= 0) continue;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, s->sock, 0) < 0) { zmq_msg_close(&msg); continue; }
        if (s->reply) {
            zmq_msg_close(&msg);
            zmq_send(s->sock, s->reply, s->reply_len, 0);
        } else {
            zmq_msg_send(&msg, s->sock, 0); /* takes ownership on success */
            zmq_msg_close(&msg);
        }
        s->answered++;
    }
    return NULL;
}

szb_echo_server *szb_echo_start(const char *endpoint, char *bound, int bound_len) {
    return szb_reply_start(endpoint, NULL, bound, bound_len);
}

szb_echo_server *szb_reply_start(const char *endpoint, const char *reply, char *bound, int bound_len) {
    szb_echo_server *s = calloc(1, sizeof *s);
    if (reply) {
        s->reply_len = strlen(reply);
        s->reply = malloc(s->reply_len + 1);
        memcpy(s->reply, reply, s->reply_len + 1);
    }
    s->ctx = zmq_ctx_new();
    s->sock = zmq_socket(s->ctx, ZMQ_REP);
    int linger = 0;
    zmq_setsockopt(s->sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(s->sock, endpoint) != 0) {
        zmq_close(s->sock);
        zmq_ctx_term(s->ctx);
        free(s->reply);
        free(s);
        return NULL;
    }
    size_t len = (size_t)bound_len;
    zmq_getsockopt(s->sock, ZMQ_LAST_ENDPOINT, bound, &len);
    pthread_create(&s->thread, NULL, echo_loop, s);
    return s;
}

uint64_t szb_echo_stop(szb_echo_server *s) {
    if (!s) return 0;
    s->stop = 1;
    pthread_join(s->thread, NULL);
    zmq_close(s->sock);
    zmq_ctx_term(s->ctx);
    uint64_t n = s->answered;
    free(s->reply);
    free(s);
    return n;
}

static int roundtrip(void *sock, const char *payload, size_t n, char *buf, size_t cap) {
    if (zmq_send(sock, payload, n, 0) < 0) return -1;
    return zmq_recv(sock, buf, cap, 0) < 0 ? -1 : 0;
}

int64_t szb_roundtrips_ns(const char *endpoint, const char *payload, int iterations) {
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_REQ);
    int linger = 0, timeout = 5000;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_connect(sock, endpoint);
    char buf[4096];
    size_t n = strlen(payload);
    int64_t t0 = now_ns(), result;
    int ok = 0;
    for (int i = 0; i < iterations; i++) {
        if (roundtrip(sock, payload, n, buf, sizeof buf) != 0) { ok = -1; break; }
    }
    result = ok == 0 ? now_ns() - t0 : -1;
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return result;
}

int64_t szb_reopen_roundtrips_ns(const char *endpoint, const char *payload, int iterations) {
    void *ctx = zmq_ctx_new();
    char buf[4096];
    size_t n = strlen(payload);
    int linger = 0, timeout = 5000;
    int64_t t0 = now_ns();
    for (int i = 0; i < iterations; i++) {
        void *sock = zmq_socket(ctx, ZMQ_REQ);
        zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
        zmq_connect(sock, endpoint);
        int rc = roundtrip(sock, payload, n, buf, sizeof buf);
        zmq_close(sock);
        if (rc != 0) { zmq_ctx_term(ctx); return -1; }
    }
    int64_t total = now_ns() - t0;
    zmq_ctx_term(ctx);
    return total;
}

struct load_arg {
    void *ctx;
    const char *endpoint;
    const char *payload;
    int iterations;
    int failed;
};

static void *load_loop(void *raw) {
    struct load_arg *a = raw;
    void *sock = zmq_socket(a->ctx, ZMQ_REQ);
    int linger = 0, timeout = 5000;
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_connect(sock, a->endpoint);
    char buf[4096];
    size_t n = strlen(a->payload);
    for (int i = 0; i < a->iterations; i++) {
        if (roundtrip(sock, a->payload, n, buf, sizeof buf) != 0) { a->failed = 1; break; }
    }
    zmq_close(sock);
    return NULL;
}

int64_t szb_parallel_roundtrips_ns(const char *endpoint, const char *payload, int iterations, int clients) {
    if (clients < 1 || clients > 64) return -1;
    void *ctx = zmq_ctx_new();
    pthread_t threads[64];
    struct load_arg args[64];
    int64_t t0 = now_ns();
    for (int c = 0; c < clients; c++) {
        args[c] = (struct load_arg){ctx, endpoint, payload, iterations, 0};
        pthread_create(&threads[c], NULL, load_loop, &args[c]);
    }
    int failed = 0;
    for (int c = 0; c < clients; c++) {
        pthread_join(threads[c], NULL);
        failed |= args[c].failed;
    }
    int64_t total = now_ns() - t0;
    zmq_ctx_term(ctx);
    return failed ? -1 : total;
}

struct szb_client {
    void *ctx;
    void *sock;
};

szb_client *szb_client_open(const char *endpoint) {
    szb_client *c = calloc(1, sizeof *c);
    c->ctx = zmq_ctx_new();
    c->sock = zmq_socket(c->ctx, ZMQ_REQ);
    int linger = 0, timeout = 5000;
    zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(c->sock, ZMQ_RCVTIMEO, &timeout, sizeof timeout);
    zmq_connect(c->sock, endpoint);
    return c;
}

int64_t szb_client_roundtrips_ns(szb_client *c, const char *payload, int iterations) {
    char buf[4096];
    size_t n = strlen(payload);
    int64_t t0 = now_ns();
    for (int i = 0; i < iterations; i++) {
        if (roundtrip(c->sock, payload, n, buf, sizeof buf) != 0) return -1;
    }
    return now_ns() - t0;
}

void szb_client_close(szb_client *c) {
    if (!c) return;
    zmq_close(c->sock);
    zmq_ctx_term(c->ctx);
    free(c);
}

struct szb_hop {
    void *ctx;
    void *front;
    void *back;
    pthread_t thread;
};

static void *hop_loop(void *arg) {
    szb_hop *h = arg;
    zmq_proxy(h->front, h->back, NULL); /* returns when the context is shut down */
    return NULL;
}

szb_hop *szb_hop_start(const char *front, const char *upstream, char *bound, int bound_len) {
    szb_hop *h = calloc(1, sizeof *h);
    h->ctx = zmq_ctx_new();
    h->front = zmq_socket(h->ctx, ZMQ_ROUTER);
    h->back = zmq_socket(h->ctx, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt(h->front, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(h->back, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(h->front, front) != 0 || zmq_connect(h->back, upstream) != 0) {
        zmq_close(h->front);
        zmq_close(h->back);
        zmq_ctx_term(h->ctx);
        free(h);
        return NULL;
    }
    size_t len = (size_t)bound_len;
    zmq_getsockopt(h->front, ZMQ_LAST_ENDPOINT, bound, &len);
    pthread_create(&h->thread, NULL, hop_loop, h);
    pthread_setname_np(h->thread, "szb-hop");
    return h;
}

void szb_hop_stop(szb_hop *h) {
    if (!h) return;
    zmq_ctx_shutdown(h->ctx);
    pthread_join(h->thread, NULL);
    zmq_close(h->front);
    zmq_close(h->back);
    zmq_ctx_term(h->ctx);
    free(h);
}

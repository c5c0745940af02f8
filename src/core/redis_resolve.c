/* redis_resolve.c -- getaddrinfo bounded by a deadline.
 *
 * getaddrinfo cannot be interrupted, so it runs in a detached helper thread
 * and the caller waits on a condition variable until its deadline.  The
 * request holds everything the thread uses (its own copy of the host name)
 * and is freed by whichever of caller and thread lets go of it last, so a
 * caller that gave up may free its connection at once. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "redis_conn.h"

struct cb_resolve_req {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;          /* caller and thread */
    int done;
    int gai;           /* getaddrinfo's result */
    int sys;           /* errno for EAI_SYSTEM */
    cb_addrs addrs;
    cb_resolve_fn fn;
    void *ud;
    int port;
    char service[8];
    char host[256];
};

static int default_resolve(void *ud, const char *host, const char *service,
                           const struct addrinfo *hints, struct addrinfo **res) {
    (void)ud;
    return getaddrinfo(host, service, hints, res);
}

static void unref(cb_resolve_req *q) {
    pthread_mutex_lock(&q->mu);
    int left = --q->refs;
    pthread_mutex_unlock(&q->mu);
    if (left) return;
    pthread_cond_destroy(&q->cv);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* The IPv4 and IPv6 addresses of `res`, at most CB_ADDRS_MAX. */
static void take(const struct addrinfo *res, cb_addrs *a) {
    a->n = 0;
    for (const struct addrinfo *ai = res; ai && a->n < CB_ADDRS_MAX; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof a->a[0].sa)
            continue;
        memcpy(&a->a[a->n].sa, ai->ai_addr, ai->ai_addrlen);
        a->a[a->n].len = ai->ai_addrlen;
        a->n++;
    }
}

int cb_resolve_numeric(const char *host, int port, cb_addrs *out) {
    char service[8];
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;  /* never asks a name server */
    snprintf(service, sizeof service, "%d", port);
    if (getaddrinfo(host, service, &hints, &res) != 0) return 0;
    take(res, out);
    freeaddrinfo(res);
    return out->n > 0;
}

static void *run(void *arg) {
    cb_resolve_req *q = arg;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG;
    int gai = q->fn(q->ud, q->host, q->service, &hints, &res);
    int sys = errno;
    cb_addrs a;
    a.n = 0;
    if (gai == 0) take(res, &a);
    if (res) freeaddrinfo(res);
    pthread_mutex_lock(&q->mu);
    q->gai = gai;
    q->sys = sys;
    q->addrs = a;
    q->done = 1;
    pthread_cond_broadcast(&q->cv);
    pthread_mutex_unlock(&q->mu);
    unref(q);
    return NULL;
}

cb_resolve_req *cb_resolve_start(const char *host, int port, cb_resolve_fn fn, void *ud) {
    if (strlen(host) >= sizeof ((cb_resolve_req *)0)->host) {
        errno = ENAMETOOLONG;
        return NULL;
    }
    cb_resolve_req *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);  /* deadlines are monotonic */
    int e = pthread_cond_init(&q->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (e) {
        free(q);
        errno = e;
        return NULL;
    }
    pthread_mutex_init(&q->mu, NULL);
    q->refs = 2;
    q->fn = fn ? fn : default_resolve;
    q->ud = ud;
    q->port = port;
    snprintf(q->service, sizeof q->service, "%d", port);
    strcpy(q->host, host);

    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    /* The helper takes no signal: SIGPIPE, SIGINT and the like stay with the
     * application's own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    e = pthread_create(&t, &at, run, q);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&at);
    if (e) {
        q->refs = 1;
        unref(q);
        errno = e;
        return NULL;
    }
    return q;
}

int cb_resolve_wait(cb_resolve_req *q, double deadline, cb_addrs *out, char *err,
                    size_t errcap) {
    double secs = deadline < 0 ? 0 : deadline;
    struct timespec ts;
    ts.tv_sec = (time_t)secs;
    ts.tv_nsec = (long)((secs - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
    pthread_mutex_lock(&q->mu);
    while (!q->done)
        if (pthread_cond_timedwait(&q->cv, &q->mu, &ts) == ETIMEDOUT) break;
    int done = q->done, gai = q->gai, sys = q->sys;
    if (done && gai == 0) *out = q->addrs;
    pthread_mutex_unlock(&q->mu);
    if (!done) return 0;
    if (gai == 0 && out->n > 0) return 1;
    if (gai == 0) snprintf(err, errcap, "resolve %s: no IPv4 or IPv6 address", q->host);
    else if (gai == EAI_SYSTEM) snprintf(err, errcap, "resolve %s: %s", q->host, strerror(sys));
    else snprintf(err, errcap, "resolve %s: %s", q->host, gai_strerror(gai));
    return -1;
}

int cb_resolve_is_for(const cb_resolve_req *q, const char *host, int port) {
    return q && q->port == port && strcmp(q->host, host) == 0;  /* both fixed at start */
}

void cb_resolve_release(cb_resolve_req *q) {
    if (q) unref(q);
}

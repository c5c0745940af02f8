/* bench_store.c -- the cost of an attached store on the C hot path:
 * cb_breaker_allow + cb_breaker_record with a broadcast store attached, vs
 * the same breaker alone, measured in the same run.
 *
 *   build/bench/bench_store [redis://127.0.0.1:6379/0] [iterations]
 *
 * Without a reachable server the store is disconnected, which measures the
 * hot path all the same (it does no I/O either way). */
#include <stdio.h>
#include <stdlib.h>

#include "cbreaker_redis.h"

static double loop(cb_breaker *b, long n) {
    double t0 = cb_clock_monotonic(NULL);
    for (long i = 0; i < n; i++)
        if (cb_breaker_allow(b) == CB_ALLOWED) cb_breaker_record(b, CB_SUCCESS, -1, 0);
    return cb_clock_monotonic(NULL) - t0;
}

int main(int argc, char **argv) {
    cb_store_opts so;
    cb_store_opts_init(&so);
    if (argc > 1) so.url = argv[1];
    long n = argc > 2 ? atol(argv[2]) : 5000000;
    cb_store *s = cb_store_new(&so);
    if (!s || s->err == CB_STORE_EOPTS) {
        fprintf(stderr, "bench_store: %s\n", s ? s->errstr : "out of memory");
        return 1;
    }
    cb_store_health h;
    cb_store_get_health(s, &h);
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    o.name = "svc";
    cb_breaker *plain = cb_breaker_new(&o), *attached = cb_breaker_new(&o);
    if (!plain || !attached || cb_store_attach(s, attached) != CB_OK) return 1;
    double best_plain = 1e9, best_store = 1e9;
    for (int r = 0; r < 15; r++) {  /* interleaved, best of each */
        double t = loop(plain, n);
        if (t < best_plain) best_plain = t;
        t = loop(attached, n);
        if (t < best_store) best_store = t;
    }
    printf("C allow+record (%s): without store %.1f M/s, with store %.1f M/s, ratio %.3f\n",
           h.connected ? "connected" : "disconnected", n / best_plain / 1e6,
           n / best_store / 1e6, best_plain / best_store);
    cb_breaker_free(plain);
    cb_breaker_free(attached);
    cb_store_free(s);
    return 0;
}

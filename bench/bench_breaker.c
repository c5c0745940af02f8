/* bench_breaker.c -- allow()+record() from C, against an empty loop through
 * a function pointer (what any call costs).
 *   build/bench/bench_breaker [N] */
#include <stdio.h>
#include <stdlib.h>

#include "cbreaker.h"

static volatile int sink;

static void empty(cb_breaker *b) {
    (void)b;
    sink++;
}

static void pair(cb_breaker *b) {
    if (cb_breaker_allow(b) == CB_ALLOWED) cb_breaker_record(b, CB_SUCCESS, -1, 0);
}

static void rejected(cb_breaker *b) {
    sink += cb_breaker_allow(b) != CB_ALLOWED;
}

static double best_ns(void (*volatile fn)(cb_breaker *), cb_breaker *b, long n) {
    double best = 1e30;
    for (int r = 0; r < 7; r++) {
        double t0 = cb_clock_monotonic(NULL);
        for (long i = 0; i < n; i++) fn(b);
        double ns = (cb_clock_monotonic(NULL) - t0) * 1e9 / (double)n;
        if (ns < best) best = ns;
    }
    return best;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 20000000;
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    o.name = "bench";
    cb_breaker *b = cb_breaker_new(&o);
    o.failure_threshold = 1;
    o.reset_timeout = 1e6;
    cb_breaker *open = cb_breaker_new(&o);
    cb_breaker_record(open, CB_FAILURE, -1, 0);
    cb_breaker_opts_init(&o);
    o.failure_rate = 0.5;
    cb_breaker *rated = cb_breaker_new(&o);

    double base = best_ns(empty, b, n);
    double p = best_ns(pair, b, n);
    double pw = best_ns(pair, rated, n);
    double rj = best_ns(rejected, open, n);
    printf("C breaker benchmark, N = %ld, best of 7 rounds\n", n);
    printf("%-46s %6.2f ns\n", "empty call through a function pointer", base);
    printf("%-46s %6.2f ns  (goal < 10 ns)\n", "allow()+record() pair", p);
    printf("%-46s %6.2f ns\n", "allow()+record() pair, failure-rate window", pw);
    printf("%-46s %6.2f ns  (reads the clock)\n", "rejected allow() on an open breaker", rj);
    cb_breaker_free(b);
    cb_breaker_free(open);
    cb_breaker_free(rated);
    return 0;
}

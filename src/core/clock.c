/* clock.c -- the monotonic clock and the manual clock for tests. */
#include <time.h>

#include "cbreaker.h"

double cb_clock_monotonic(void *ud) {
    struct timespec ts;
    (void)ud;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double cb_clock_read(const cb_clock *c) {
    return c->now ? c->now(c->ud) : cb_clock_monotonic(NULL);
}

double cb_manual_clock_now(void *ud) {
    return ((const cb_manual_clock *)ud)->now;
}

/* clock.c -- the monotonic clock and the manual clock for tests. */
#define _GNU_SOURCE  /* CLOCK_MONOTONIC_COARSE */
#include <time.h>

#include "cbreaker.h"
#include "clock.h"

/* The coarse clock lags the precise one by at most one tick: <= 10 ms for
 * any kernel HZ >= 100. */
#define CB_COARSE_LAG 0.010

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

double cb_clock_upper_bound(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + CB_COARSE_LAG;
}

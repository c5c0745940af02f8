/* clock.h -- private clock helpers of the core. */
#ifndef CB_CLOCK_H
#define CB_CLOCK_H

/* A time no earlier than what cb_clock_monotonic() would return now, read
 * from CLOCK_MONOTONIC_COARSE in a few ns (the precise clock costs ~30 ns on
 * some virtual machines).  Lets an open breaker prove a rejection cheaply. */
double cb_clock_upper_bound(void);

#endif

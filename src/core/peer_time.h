/* peer_time.h -- the time stamps other languages write into the shared
 * per-field keys (`<prefix>:<name>:opened_at`), read back as epoch ms.
 * Internal to the core (tests/test_peer_time.c uses it); never installed. */
#ifndef CB_PEER_TIME_H
#define CB_PEER_TIME_H

#include <stddef.h>

/* Parses s[len] as one of:
 *  - epoch seconds, a decimal with an optional fraction ("1764749116",
 *    "1764749116.25"; at most 15 digits before the point and 9 after),
 *    below 1e11 (pybreaker's own Redis storage, Python's
 *    `datetime.timestamp()`);
 *  - epoch milliseconds, the same form from 1e11 up to 1e14 (older cbreaker);
 *  - ISO-8601 as Python's `datetime.isoformat()` writes it:
 *    YYYY-MM-DD{T| }HH:MM[:SS[.f{1,9}]][Z|+HH:MM|-HH:MM|+HHMM|+HH], from
 *    1970 and before 1e14 ms (year 5138, the bound on numbers too);
 *    without an offset the time is taken as UTC.
 * The store's script (store_script.h, epoch_ms) applies the same rule:
 * tests/test_peer_time.c runs both over the same cases.
 * Stores the instant in *ms (ms since the epoch, UTC) and returns 0, or
 * returns -1 and leaves *ms alone when the text is none of these or names
 * an impossible date (a 31st of April, a 25th hour).  Pure: thread-safe. */
int cb_peer_time_parse(const char *s, size_t len, double *ms);

#endif

/* test_breaker.c -- the breaker core from plain C, no Lua. */
#include <string.h>

#include "cbreaker.h"
#include "alloc_count.h"
#include "test.h"

typedef struct changes {
    int n;
    cb_state last_from, last_to;
    cb_reason last_reason;
} changes;

static void on_change(void *ud, cb_breaker *b, cb_state from, cb_state to, cb_reason r) {
    changes *c = ud;
    (void)b;
    c->n++;
    c->last_from = from;
    c->last_to = to;
    c->last_reason = r;
}

static cb_breaker *make(cb_manual_clock *mc, cb_breaker_opts *o) {
    o->clock.now = cb_manual_clock_now;
    o->clock.ud = mc;
    return cb_breaker_new(o);
}

static void fail(cb_breaker *b, int n) {
    for (int i = 0; i < n; i++) {
        cb_breaker_allow(b);
        cb_breaker_record(b, CB_FAILURE, -1, 0);
    }
}

int main(void) {
    cb_manual_clock mc = {100};
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    o.name = "c-svc";

    test("defaults are pybreaker's: 5 failures, 30 s, 2 successes");
    test_cond(o.failure_threshold == 5 && o.reset_timeout == 30 && o.success_threshold == 2);

    cb_breaker *b = make(&mc, &o);
    changes ch = {0};
    cb_breaker_on_change(b, on_change, &ch);

    test("new breaker is closed and named");
    test_cond(b && cb_breaker_state(b) == CB_CLOSED && strcmp(cb_breaker_name(b), "c-svc") == 0);

    fail(b, 5);
    test("five failures open it, with a reason");
    test_cond(cb_breaker_state(b) == CB_OPEN && ch.n == 1 && ch.last_reason == CB_REASON_FAILURES);

    test("an open breaker rejects and counts it");
    cb_breaker_stats st;
    cb_verdict v = cb_breaker_allow(b);
    cb_breaker_get_stats(b, &st);
    test_cond(v == CB_REJECT_OPEN && st.rejections == 1 && st.opens == 1);

    test("retry_after counts down on the clock");
    mc.now += 10;
    test_near(cb_breaker_retry_after(b), 20);

    mc.now += 20;
    test("half-open after the timeout, one permit at a time");
    v = cb_breaker_allow(b);
    test_cond(v == CB_ALLOWED && cb_breaker_allow(b) == CB_REJECT_HALF_OPEN);

    cb_breaker_record(b, CB_SUCCESS, 1, 0);
    cb_breaker_allow(b);
    cb_breaker_record(b, CB_SUCCESS, 1, 0);
    test("two probe successes close it");
    test_cond(cb_breaker_state(b) == CB_CLOSED && ch.last_reason == CB_REASON_PROBE_SUCCESS);

    test("options are checked and name the bad one");
    cb_breaker_opts bad;
    cb_breaker_opts_init(&bad);
    bad.failure_rate = NAN;
    const char *msg = cb_breaker_opts_check(&bad);
    test_cond(msg && strstr(msg, "failure_rate") && cb_breaker_new(&bad) == NULL);

    test("configure keeps state and takes new thresholds");
    fail(b, 2);
    cb_breaker_opts o2;
    cb_breaker_get_opts(b, &o2);
    o2.failure_threshold = 3;
    int rc = cb_breaker_configure(b, &o2);
    fail(b, 1);
    test_cond(rc == CB_OK && cb_breaker_state(b) == CB_OPEN);

    test("a failure-rate window on a configured breaker");
    cb_breaker_reset(b);
    o2.failure_threshold = 0;
    o2.failure_rate = 0.5;
    o2.window = 4;
    o2.min_calls = 4;
    cb_breaker_configure(b, &o2);
    cb_breaker_record(b, CB_SUCCESS, -1, 0);
    cb_breaker_record(b, CB_FAILURE, -1, 0);
    cb_breaker_record(b, CB_SUCCESS, -1, 0);
    cb_breaker_record(b, CB_FAILURE, -1, 0);
    test_cond(cb_breaker_state(b) == CB_OPEN && ch.last_reason == CB_REASON_FAILURE_RATE);

    test("force_open rejects forever, reset restores");
    cb_breaker_force_open(b);
    v = cb_breaker_allow(b);
    double ra = cb_breaker_retry_after(b);
    cb_breaker_reset(b);
    test_cond(v == CB_REJECT_FORCED_OPEN && isinf(ra) && cb_breaker_allow(b) == CB_ALLOWED);

    test(COUNTS_ALLOCATIONS ? "allow/record/state do not allocate, window or not"
                            : "allow/record/state (allocation count needs a plain build)");
    {
        cb_breaker_opts w;
        cb_breaker_opts_init(&w);
        w.failure_rate = 0.9;
        w.window_seconds = 10;
        w.clock.now = cb_manual_clock_now;
        w.clock.ud = &mc;
        cb_breaker *wb = cb_breaker_new(&w);
        unsigned long before = allocations;
        for (int i = 0; i < 100000; i++) {
            cb_breaker *x = i % 2 ? wb : b;
            if (cb_breaker_allow(x) == CB_ALLOWED)
                cb_breaker_record(x, i % 3 ? CB_SUCCESS : CB_FAILURE, i % 50, 0);
            cb_breaker_state(x);
            mc.now += 0.01;
        }
        test_cond(allocations == before);
        cb_breaker_free(wb);
    }

    test("the allocation counter sees allocations");
    {
        unsigned long before = allocations;
        cb_breaker *tmp = cb_breaker_new(&o);
        test_cond(!COUNTS_ALLOCATIONS || allocations > before);
        cb_breaker_free(tmp);
    }

    test("free(NULL) is a no-op");
    cb_breaker_free(NULL);
    test_cond(1);

    cb_breaker_free(b);

    test("rng: same seed, same stream; uniform in [0, 1)");
    cb_rng r1, r2;
    cb_rng_seed(&r1, 42);
    cb_rng_seed(&r2, 42);
    int same = 1, inrange = 1;
    for (int i = 0; i < 1000; i++) {
        double u = cb_rng_uniform(&r1);
        same &= u == cb_rng_uniform(&r2);
        inrange &= u >= 0 && u < 1;
    }
    test_cond(same && inrange);

    test("monotonic clock moves forward");
    double t0 = cb_clock_monotonic(NULL), t1 = cb_clock_monotonic(NULL);
    test_cond(t1 >= t0 && t0 > 0);

    return test_report();
}

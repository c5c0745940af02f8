/* test_window.c -- the sliding window's time mode at the edges of the clock. */
#include "test.h"
#include "window.h"

int main(void) {
    /* Bucket numbers clamp to the int64 range; the gap between two clamped
     * numbers must not overflow into a walk of 2^64 buckets. */
    test("time window: a jump from the lowest to the highest bucket number is bounded");
    {
        cb_window *w = cb_window_new(0, 10);
        cb_window_add(w, -1e300, 1, 0);
        cb_window_add(w, 1e300, 0, 0);     /* would loop ~2^64 times */
        test_cond(w->calls == 1 && w->failures == 0);
        cb_window_free(w);
    }

    test("time window: a clock that steps back keeps counting in the newest bucket");
    {
        cb_window *w = cb_window_new(0, 10);
        cb_window_add(w, 100, 1, 0);
        cb_window_add(w, 50, 1, 0);
        test_cond(w->calls == 2 && w->failures == 2);
        cb_window_free(w);
    }

    test("time window: outcomes older than the window leave it");
    {
        cb_window *w = cb_window_new(0, 10);
        cb_window_add(w, 0, 1, 0);
        cb_window_add(w, 5, 1, 1);
        cb_window_expire(w, 10.5);
        test_cond(w->calls == 1 && w->slow == 1);
        cb_window_expire(w, 1e18);
        test_cond(w->calls == 0 && w->failures == 0 && w->slow == 0);
        cb_window_free(w);
    }
    return test_report();
}

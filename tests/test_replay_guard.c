/* test_replay_guard.c -- replay_guard.c: one origin's messages per name in
 * order, replays refused, a flood past the table's size forgets nothing it
 * would have to refuse, and entries out of the window go first. */
#include <stdio.h>
#include <stdlib.h>

#include "replay_guard.h"
#include "test.h"

#define W 30000.0  /* replay window, ms */

int main(void) {
    cb_replay_guard *g = cb_replay_guard_new();
    double now = 1.8e12;
    char name[32];

    test("a first message is new, the same again a replay");
    int a = cb_replay_guard_accept(g, "ops", "svc", 10, now);
    int b = cb_replay_guard_accept(g, "ops", "svc", 10, now);
    test_cond(a == 1 && b == 0);

    test("newer from the same origin is new, older is not");
    test_cond(cb_replay_guard_accept(g, "ops", "svc", 11, now) == 1 &&
              cb_replay_guard_accept(g, "ops", "svc", 9, now) == 0);

    test("origins and names are apart (also across the NUL between them)");
    test_cond(cb_replay_guard_accept(g, "op", "ssvc", 1, now) == 1 &&
              cb_replay_guard_accept(g, "other", "svc", 1, now) == 1 &&
              cb_replay_guard_accept(g, "ops", "svc2", 1, now) == 1);

    /* 20000 live (origin, name) pairs, 4096 slots: every one of them,
     * replayed, is refused, remembered or forgotten. */
    int refused = 0;
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "n%d", i);
        cb_replay_guard_accept(g, "flood", name, 100 + i, now + i * 0.001);
    }
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "n%d", i);
        refused += cb_replay_guard_accept(g, "flood", name, 100 + i, now + i * 0.001) == 0;
    }
    test("a flood past the table's size: every replay is still refused");
    test_cond(refused == 20000);

    test("a message newer than the flood is still new");
    test_cond(cb_replay_guard_accept(g, "fresh", "x", 1, now + 100) == 1);
    free(g);

    /* Entries out of the window make room: newer pairs keep coming in. */
    g = cb_replay_guard_new();
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "old%d", i);
        cb_replay_guard_accept(g, "a", name, 1, now);
    }
    double later = now + 2 * W;  /* every entry above has left the window */
    int fresh = 1;
    for (int i = 0; i < 20000; i++) {
        snprintf(name, sizeof name, "new%d", i);
        fresh &= cb_replay_guard_accept(g, "b", name, 1, later - W / 2 + i * 0.001);
    }
    test("entries out of the window make room without refusing new pairs");
    test_cond(fresh);
    free(g);
    return test_report();
}

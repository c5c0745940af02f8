/* test_registry.c -- the per-session breaker map, from C. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "alloc_count.h"
#include "breaker_impl.h"
#include "test.h"

#define S(s) (s), strlen(s)

static cb_manual_clock mc;

static cb_registry *new_reg(size_t max_entries, size_t max_per_tenant) {
    cb_registry_opts o;
    cb_registry_opts_init(&o);
    o.max_entries = max_entries;
    o.max_per_tenant = max_per_tenant;
    o.seed = 42;
    o.clock.now = cb_manual_clock_now;
    o.clock.ud = &mc;
    return cb_registry_new(&o);
}

static cb_breaker *get(cb_registry *r, const char *t, const char *k) {
    return cb_registry_get(r, S(t), S(k), NULL, NULL);
}

static void trip(cb_breaker *b) {
    for (int i = 0; i < 5; i++) cb_breaker_record(b, CB_FAILURE, -1, 0);
}

static void count_removed(void *ud, cb_breaker *b) {
    (void)b;
    (*(int *)ud)++;
}

static void test_isolation(void) {
    printf("-- %s\n", "session A trips, session B still works");
    cb_registry *r = new_reg(1000, 0);
    cb_breaker *a = get(r, "tenant1", "session-A");
    trip(a);
    cb_breaker *b = get(r, "tenant1", "session-B");
    check("A is open", cb_breaker_state(a) == CB_OPEN);
    check("B allows", cb_breaker_allow(b) == CB_ALLOWED);
    check("same key, same breaker", get(r, "tenant1", "session-A") == a);
    unsigned long before = allocations;
    for (int i = 0; i < 1000; i++) cb_breaker_allow(get(r, "tenant1", i & 1 ? "session-A" : "session-B"));
    if (COUNTS_ALLOCATIONS)
        check("a get of an existing key does not allocate", allocations == before);
    check("name is the key", strcmp(cb_breaker_name(b), "session-B") == 0);
    check("two entries", cb_registry_size(r) == 2);
    cb_registry_free(r);
    cb_registry_free(NULL);
}

static void test_keys(void) {
    printf("-- %s\n", "keys are binary-safe, tenant and key do not run together");
    cb_registry *r = new_reg(0, 0);
    cb_breaker *x = cb_registry_get(r, "ab", 2, "c", 1, NULL, NULL);
    cb_breaker *y = cb_registry_get(r, "a", 1, "bc", 2, NULL, NULL);
    check("(ab,c) is not (a,bc)", x && y && x != y);
    cb_breaker *z1 = cb_registry_get(r, "t", 1, "k\0a", 3, NULL, NULL);
    cb_breaker *z2 = cb_registry_get(r, "t", 1, "k\0b", 3, NULL, NULL);
    check("zeros inside keys count", z1 && z2 && z1 != z2);
    check("peek finds it", cb_registry_peek(r, "t", 1, "k\0b", 3) == z2);
    cb_breaker *e = cb_registry_get(r, "", 0, "", 0, NULL, NULL);
    check("empty tenant and key", e && cb_registry_peek(r, "", 0, "", 0) == e);
    char big[CB_REGISTRY_MAX_KEY + 1];
    memset(big, 'x', sizeof big);
    cb_registry_status why = CB_REG_OK;
    check("a key at the limit", cb_registry_get(r, "t", 1, big, CB_REGISTRY_MAX_KEY, NULL, &why));
    check("one byte more is refused",
              !cb_registry_get(r, "t", 1, big, sizeof big, NULL, &why) && why == CB_REG_KEY_TOO_LONG);
    check("a long tenant too",
              !cb_registry_get(r, big, sizeof big, "k", 1, NULL, &why) && why == CB_REG_KEY_TOO_LONG);
    cb_registry_free(r);
}

static void test_lru(void) {
    printf("-- %s\n", "the hard cap evicts the least recently used closed breaker");
    cb_registry *r = new_reg(3, 0);
    get(r, "t", "a");
    mc.now += 1;
    get(r, "t", "b");
    mc.now += 1;
    get(r, "t", "c");
    mc.now += 1;
    get(r, "t", "a");  /* a is now the newest */
    mc.now += 1;
    check("d fits", get(r, "t", "d") != NULL);
    check("b went", !cb_registry_peek(r, S("t"), S("b")));
    check("a, c, d stay", cb_registry_peek(r, S("t"), S("a")) &&
                                  cb_registry_peek(r, S("t"), S("c")) &&
                                  cb_registry_peek(r, S("t"), S("d")));
    mc.now += 1;
    cb_registry_touch(r, cb_registry_peek(r, S("t"), S("c")));  /* as a get of c */
    mc.now += 1;
    get(r, "t", "e");
    check("touch counts as use: a went, c stayed",
          !cb_registry_peek(r, S("t"), S("a")) && cb_registry_peek(r, S("t"), S("c")));
    cb_registry_stats st;
    cb_registry_get_stats(r, &st);
    check("two evictions", st.evicted == 2 && st.size == 3);
    cb_registry_free(r);
}

static void test_never_evict_open(void) {
    printf("-- %s\n", "open, half-open and forced-open breakers are never evicted");
    cb_registry *r = new_reg(3, 0);
    cb_breaker *a = get(r, "t", "a"), *b = get(r, "t", "b"), *c = get(r, "t", "c");
    trip(a);
    trip(b);
    mc.now += 31;  /* b goes half-open; a too */
    cb_breaker_force_open(c);
    check("b half-open", cb_breaker_state(b) == CB_HALF_OPEN);
    cb_registry_status why = CB_REG_OK;
    check("full", !cb_registry_get(r, S("t"), S("d"), NULL, &why) && why == CB_REG_FULL);
    check("still full", !cb_registry_get(r, S("t"), S("e"), NULL, &why) && why == CB_REG_FULL);
    check("states kept", cb_breaker_state(a) == CB_HALF_OPEN &&
                                 cb_breaker_state(b) == CB_HALF_OPEN &&
                                 cb_breaker_state(c) == CB_FORCED_OPEN);
    cb_registry_stats st;
    cb_registry_get_stats(r, &st);
    check("all three set aside", st.pinned == 3);
    cb_breaker_reset(c);  /* closed again: evictable */
    check("c evicted for d", get(r, "t", "d") && !cb_registry_peek(r, S("t"), S("c")));
    cb_registry_free(r);
}

static int state_calls;
static void count_changes(void *ud, cb_breaker *b, cb_state from, cb_state to, cb_reason why) {
    (void)ud; (void)b; (void)from; (void)to; (void)why;
    state_calls++;
}

static int retrip_half_open(void *ud, const char *t, size_t tl, const char *k, size_t kl,
                            cb_breaker *b) {
    (void)ud; (void)t; (void)tl; (void)k; (void)kl;
    if (cb_breaker_state(b) == CB_HALF_OPEN && cb_breaker_allow(b) == CB_ALLOWED)
        cb_breaker_record(b, CB_FAILURE, -1, 0);
    return 0;
}

static void test_bounded_eviction(void) {
    printf("-- %s\n", "a full registry of tripped breakers refuses in bounded work");
    cb_registry *r = new_reg(5000, 0);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "s%d", i);
        cb_breaker *b = get(r, "t", key);
        trip(b);
        cb_breaker_on_change(b, count_changes, NULL);
    }
    mc.now += 31;  /* every one would go half-open when looked at */
    state_calls = 0;
    cb_registry_status why = CB_REG_OK;
    check("refused", !cb_registry_get(r, S("t"), S("new"), NULL, &why) && why == CB_REG_FULL);
    check("looked at 64 breakers, not 5000", state_calls == 64);
    cb_registry_foreach(r, retrip_half_open, NULL);  /* the 64 set aside open again */
    mc.now += 61;  /* now any breaker looked at changes state */
    state_calls = 0;
    check("refused again", !cb_registry_get(r, S("t"), S("new2"), NULL, &why) && why == CB_REG_FULL);
    check("again 64 looked at, none of those set aside twice", state_calls == 64);
    cb_registry_free(r);
}

static void test_tenant_cap(void) {
    printf("-- %s\n", "a tenant at its cap recycles its own breakers or is refused");
    cb_registry *r = new_reg(100, 2);
    cb_breaker *x1 = get(r, "X", "1");
    mc.now += 1;
    cb_breaker *x2 = get(r, "X", "2");
    mc.now += 1;
    cb_breaker *y1 = get(r, "Y", "1");
    trip(y1);
    mc.now += 1;
    (void)x1;
    cb_breaker *x3 = get(r, "X", "3");
    check("x3 made by recycling x1", x3 && !cb_registry_peek(r, S("X"), S("1")));
    check("Y untouched", cb_registry_peek(r, S("Y"), S("1")) == y1 &&
                                 cb_breaker_state(y1) == CB_OPEN);
    trip(x2);
    trip(x3);
    cb_registry_status why = CB_REG_OK;
    check("X refused", !cb_registry_get(r, S("X"), S("4"), NULL, &why) &&
                               why == CB_REG_TENANT_FULL);
    check("Y still gets new ones", get(r, "Y", "2") != NULL);
    cb_registry_stats st;
    cb_registry_get_stats(r, &st);
    check("stats", st.refused_tenant == 1 && st.tenants == 2 && st.size == 4);
    cb_registry_free(r);
}

static void test_full_evicts_tenants_last(void) {
    printf("-- %s\n", "a full map that evicts a tenant's last breaker for that tenant's new one");
    cb_registry *r = new_reg(1, 10);
    cb_breaker *a1 = get(r, "A", "1");
    mc.now += 1;
    cb_breaker *a2 = get(r, "A", "2");  /* A's only entry goes, and A's record with it */
    check("a1 recycled", a1 && a2 && !cb_registry_peek(r, S("A"), S("1")));
    check("a2 counted under A", cb_registry_peek(r, S("A"), S("2")) == a2);
    mc.now += 1;
    check("A's record serves the next one", get(r, "A", "3") != NULL);
    cb_registry_stats st;
    cb_registry_get_stats(r, &st);
    check("one tenant, one entry", st.tenants == 1 && st.size == 1 && st.evicted == 2);
    cb_registry_free(r);
}

static void test_tenant_lru(void) {
    printf("-- %s\n", "a tenant at its cap recycles its own oldest, whatever others hold");
    cb_registry *r = new_reg(0, 300);
    char key[32];
    for (int i = 0; i < 300; i++) {  /* older than all of B's */
        snprintf(key, sizeof key, "a%d", i);
        get(r, "A", key);
        mc.now += 0.001;
    }
    cb_breaker *b1 = get(r, "B", "b1");
    trip(b1);
    cb_breaker *b2 = get(r, "B", "b2");
    cb_breaker_force_open(b2);
    for (int i = 3; i <= 300; i++) {
        mc.now += 0.001;
        snprintf(key, sizeof key, "b%d", i);
        get(r, "B", key);
    }
    mc.now += 1;
    cb_breaker_on_change(b1, count_changes, NULL);
    state_calls = 0;
    cb_registry_status why = CB_REG_OK;
    cb_breaker *b = cb_registry_get(r, S("B"), S("new1"), NULL, &why);
    check("B at its cap behind 300 older sessions of A gets a breaker", b && why == CB_REG_OK);
    check("by recycling its oldest closed one, b3", !cb_registry_peek(r, S("B"), S("b3")) &&
                                                        cb_registry_peek(r, S("B"), S("b4")));
    get(r, "B", "new2");
    get(r, "B", "new3");
    check("then b4, then b5", !cb_registry_peek(r, S("B"), S("b4")) &&
                                  !cb_registry_peek(r, S("B"), S("b5")));
    check("B's open and forced-open breakers stay",
          cb_registry_peek(r, S("B"), S("b1")) == b1 && cb_breaker_state(b1) == CB_OPEN &&
              cb_registry_peek(r, S("B"), S("b2")) == b2 &&
              cb_breaker_state(b2) == CB_FORCED_OPEN);
    cb_registry_stats st;
    cb_registry_get_stats(r, &st);
    check("A untouched", st.size == 600 && st.evicted == 3 && st.tenants == 2 &&
                             cb_registry_peek(r, S("A"), S("a0")));
    int refused = 1;
    for (int i = 6; i <= 300; i++) {
        snprintf(key, sizeof key, "b%d", i);
        trip(get(r, "B", key));
    }
    for (int i = 1; i <= 3; i++) {
        snprintf(key, sizeof key, "new%d", i);
        if ((b = get(r, "B", key))) trip(b);  /* NULL when the cap refused it */
    }
    for (int i = 0; i < 10; i++) {  /* 64 looked at a time: progress, never a scan */
        snprintf(key, sizeof key, "new%d", 4 + i);
        refused &= !cb_registry_get(r, S("B"), S(key), NULL, &why) && why == CB_REG_TENANT_FULL;
    }
    check("all of B's tripped: tenant full, nothing of A's taken",
          refused && cb_registry_size(r) == 600 && cb_registry_peek(r, S("A"), S("a0")));
    check("none of B's recycled", cb_registry_peek(r, S("B"), S("b1")) == b1 &&
                                      cb_breaker_state(b1) == CB_OPEN);
    check("b1 was looked at without changing state", state_calls == 0);
    cb_breaker_reset(b2);  /* closed again, still set aside: recyclable */
    int tries = 1;
    while (!get(r, "B", "new20") && tries < 100) tries++;
    check("a reset one is recycled, within 300/64 gets",
          tries <= 5 && !cb_registry_peek(r, S("B"), S("b2")));
    for (int i = 0; i < 300; i++) {
        snprintf(key, sizeof key, "a%d", i);
        cb_registry_remove(r, S("A"), S(key));
    }
    cb_registry_get_stats(r, &st);
    check("a tenant's record goes with its last entry", st.tenants == 1 && st.size == 300);
    cb_registry_free(r);
}

static void test_tenant_flood(void) {
    printf("-- %s\n", "a flood of distinct tenants under caps leaves no records behind");
    cb_registry *r = new_reg(100, 2);
    char key[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "tenant-%d", i);
        get(r, key, "s1");
        get(r, key, "s2");
        get(r, key, "s3");  /* recycles s1 */
    }
    cb_registry_stats st;
    cb_registry_get_stats(r, &st);
    check("size and tenants bounded", st.size == 100 && st.tenants == 50);
    check("each tenant kept its two newest",
          cb_registry_peek(r, S("tenant-9999"), S("s2")) &&
              cb_registry_peek(r, S("tenant-9999"), S("s3")) &&
              !cb_registry_peek(r, S("tenant-9999"), S("s1")));
    cb_registry_free(r);
    r = new_reg(0, 1);  /* recycling a tenant's only entry frees its record first */
    cb_breaker *a1 = get(r, "T", "a");
    cb_breaker *b1 = get(r, "T", "b");
    cb_registry_get_stats(r, &st);
    check("a cap of one swaps the entry", a1 && b1 && !cb_registry_peek(r, S("T"), S("a")) &&
                                             st.size == 1 && st.tenants == 1);
    trip(b1);
    cb_registry_status why = CB_REG_OK;
    check("and refuses when it is open",
          !cb_registry_get(r, S("T"), S("c"), NULL, &why) && why == CB_REG_TENANT_FULL);
    cb_registry_free(r);
}

static void test_cleanup(void) {
    printf("-- %s\n", "cleanup removes closed idle breakers, unused ones sooner");
    cb_registry_opts o;
    cb_registry_opts_init(&o);
    o.idle_ttl = 60;
    o.unused_ttl = 5;
    o.cleanup_every = 0;
    o.seed = 1;
    o.clock.now = cb_manual_clock_now;
    o.clock.ud = &mc;
    cb_registry *r = cb_registry_new(&o);
    int removed = 0;
    cb_registry_on_remove(r, count_removed, &removed);
    char key[32];
    for (int i = 0; i < 150; i++) {
        snprintf(key, sizeof key, "session-%d", i);
        cb_breaker *b = get(r, "tenant1", key);
        if (i < 100) cb_breaker_record(b, CB_SUCCESS, -1, 0);
        if (i == 0) trip(b);
    }
    check("none idle yet", cb_registry_cleanup(r) == 0);
    mc.now += 6;
    check("the 50 unused go", cb_registry_cleanup(r) == 50 && cb_registry_size(r) == 100);
    mc.now += 60;
    check("the idle closed go, the open one stays",
              cb_registry_cleanup(r) == 99 && cb_registry_size(r) == 1);
    check("hook saw each", removed == 149);
    cb_registry_free(r);
    check("and the last at free", removed == 150);
}

static void test_cadence(void) {
    printf("-- %s\n", "a sweep step every cleanup_every calls, bounded");
    cb_registry_opts o;
    cb_registry_opts_init(&o);
    o.idle_ttl = 10;
    o.cleanup_every = 10;
    o.max_entries = 0;
    o.seed = 2;
    o.clock.now = cb_manual_clock_now;
    o.clock.ud = &mc;
    cb_registry *r = cb_registry_new(&o);
    char key[32];
    for (int i = 0; i < 200; i++) {
        snprintf(key, sizeof key, "s%d", i);
        get(r, "t", key);
    }
    /* 200 calls: 20 sweep steps ran, nothing idle */
    check("200 live", cb_registry_size(r) == 200);
    mc.now += 11;
    for (int i = 0; i < 9; i++) get(r, "t", "hot");
    check("no sweep before the 10th call", cb_registry_size(r) == 201);
    get(r, "t", "hot");
    size_t after = cb_registry_size(r);
    check("one bounded step removed some, not all", after < 201 && after > 1);
    for (int i = 0; i < 200; i++) get(r, "t", "hot");  /* 16 a step at most */
    check("later steps finish the job", cb_registry_size(r) == 1);
    cb_registry_free(r);
}

static void test_flood(void) {
    printf("-- %s\n", "a flood of new keys keeps tripped breakers of another tenant");
    cb_registry *r = new_reg(1000, 0);
    cb_breaker *a = get(r, "victim", "tripped");
    cb_breaker *h = get(r, "victim", "half");
    trip(a);
    trip(h);
    mc.now += 31;
    check("half-open", cb_breaker_state(h) == CB_HALF_OPEN);
    check("probe allowed", cb_breaker_allow(h) == CB_ALLOWED);
    cb_breaker_record(h, CB_SUCCESS, -1, 0);  /* one of two successes */
    a = get(r, "victim", "tripped");
    check("a probe", cb_breaker_allow(a) == CB_ALLOWED);
    cb_breaker_record(a, CB_FAILURE, -1, 0);  /* the probe fails: open again */
    char key[32];
    size_t refused = 0;
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof key, "flood-%d", i);
        if (!get(r, "attacker", key)) refused++;
    }
    check("flood was served", refused == 0);
    check("size capped", cb_registry_size(r) == 1000);
    check("tripped kept", cb_registry_peek(r, S("victim"), S("tripped")) == a &&
                                  cb_breaker_state(a) == CB_OPEN);
    cb_breaker_stats st;
    cb_breaker_get_stats(h, &st);
    check("half-open kept with its progress",
              cb_registry_peek(r, S("victim"), S("half")) == h &&
                  st.state == CB_HALF_OPEN && st.half_open_successes == 1);
    cb_registry_free(r);
}

static void test_growth(void) {
    printf("-- %s\n", "the table grows incrementally and finds everything");
    cb_registry *r = new_reg(0, 0);
    char key[32];
    int ok = 1;
    cb_breaker *first = NULL;
    for (int i = 0; i < 100000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        cb_breaker *b = get(r, "t", key);
        if (!first) first = b;
        ok &= b != NULL;
    }
    for (int i = 0; i < 100000; i += 7) {
        snprintf(key, sizeof key, "k%d", i);
        ok &= cb_registry_peek(r, S("t"), S(key)) != NULL;
    }
    check("all found", ok && cb_registry_size(r) == 100000);
    check("pointers are stable", get(r, "t", "k0") == first);
    for (int i = 0; i < 100000; i += 2) {
        snprintf(key, sizeof key, "k%d", i);
        ok &= cb_registry_remove(r, S("t"), S(key)) == CB_OK;
    }
    check("removed half", ok && cb_registry_size(r) == 50000);
    check("remove of a missing key", cb_registry_remove(r, S("t"), S("k0")) == CB_ERR);
    cb_registry_free(r);
}

static void test_bytes(void) {
    printf("-- %s\n", "bytes counts the entries made and gives them back");
    for (size_t cap = 0; cap <= 1000; cap += 1000) {  /* without and with max_per_tenant */
        cb_registry *r = new_reg(0, cap);
        size_t empty = cb_registry_bytes(r);
        char key[32];
        for (int i = 0; i < 1000; i++) {
            snprintf(key, sizeof key, "k%04d", i);  /* 5 bytes */
            get(r, i % 100 ? "tenant" : "other", key);
        }
        cb_registry_stats st;
        cb_registry_get_stats(r, &st);
        size_t grown = cb_registry_bytes(r) - empty, least = 1000 * (sizeof(cb_breaker) + 6 + 5);
        check("each entry counts its breaker and key at least",
              grown >= least + st.buckets * sizeof(void *));
        check("and its links, not much more", grown <= least + 1000 * 96 + st.buckets * 2 * sizeof(void *));
        for (int i = 0; i < 1000; i++) {
            snprintf(key, sizeof key, "k%04d", i);
            const char *t = i % 100 ? "tenant" : "other";
            cb_registry_remove(r, S(t), S(key));
        }
        size_t left = cb_registry_bytes(r) - empty;  /* a wrapped count would be huge */
        check("removing them gives all back but the grown tables",
              cb_registry_size(r) == 0 && left <= st.buckets * 2 * sizeof(void *) + 1024);
        cb_registry_free(r);
    }
}

static void test_clock_at_infinity(void) {
    printf("-- %s\n", "a clock at infinity: idleness is NaN, a get never sweeps what it found");
    cb_registry *r = new_reg(0, 0);
    mc.now = 0;
    cb_breaker *a = get(r, "t", "a");
    cb_breaker_record(a, CB_SUCCESS, -1, 0);  /* used: the idle_ttl list */
    mc.now = INFINITY;
    int ok = 1;
    for (int i = 0; i < 300; i++)  /* past cleanup_every: sweeps run */
        ok &= get(r, "t", "a") == a && cb_breaker_state(a) == CB_CLOSED;
    check("the entry stays and is the same", ok && cb_registry_size(r) == 1);
    cb_registry_free(r);
    mc.now = 0;
}

static void test_per_key_opts(void) {
    printf("-- %s\n", "per-key options, checked before use");
    cb_registry *r = new_reg(10, 0);
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    o.failure_threshold = 1;
    cb_breaker *b = cb_registry_get(r, S("t"), S("fragile"), &o, NULL);
    cb_breaker_record(b, CB_FAILURE, -1, 0);
    check("one failure opens it", cb_breaker_state(b) == CB_OPEN);
    cb_breaker *d = get(r, "t", "sturdy");
    cb_breaker_record(d, CB_FAILURE, -1, 0);
    check("defaults elsewhere", cb_breaker_state(d) == CB_CLOSED);
    o.failure_rate = 2;
    cb_registry_status why = CB_REG_OK;
    check("bad options refused",
              !cb_registry_get(r, S("t"), S("bad"), &o, &why) && why == CB_REG_BAD_OPTS);
    cb_registry_opts ro;
    cb_registry_opts_init(&ro);
    ro.idle_ttl = 0;
    check("bad registry options named",
              cb_registry_opts_check(&ro) && strstr(cb_registry_opts_check(&ro), "idle_ttl") &&
                  !cb_registry_new(&ro));
    cb_registry_free(r);
}

int main(void) {
    printf("sizeof(cb_breaker) = %zu\n", sizeof(cb_breaker));
    test_isolation();
    test_keys();
    test_lru();
    test_never_evict_open();
    test_bounded_eviction();
    test_tenant_cap();
    test_full_evicts_tenants_last();
    test_tenant_lru();
    test_tenant_flood();
    test_cleanup();
    test_cadence();
    test_flood();
    test_growth();
    test_per_key_opts();
    test_bytes();
    test_clock_at_infinity();
    return test_report();
}

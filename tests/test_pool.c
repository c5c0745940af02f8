/* test_pool.c -- the provider pool from plain C: which provider may take a
 * call, how long until one may, permits, exclusion, learning, discounts. */
#include <string.h>

#include "cbreaker_pool.h"
#include "breaker_impl.h"
#include "alloc_count.h"
#include "test.h"

static cb_manual_clock mc = {1000};

/* A pool of `n` providers "p0".."p<n-1>" on the manual clock. */
static cb_pool *make(int n, cb_pool_strategy s, uint64_t seed, uint32_t failures) {
    static const char *const names[] = {"p0", "p1", "p2", "p3", "p4", "p5"};
    cb_pool_opts po;
    cb_pool_opts_init(&po);
    po.strategy = s;
    po.bandit.seed = seed;
    cb_pool *p = cb_pool_new(&po);
    for (int i = 0; i < n; i++) {
        cb_breaker_opts o;
        cb_breaker_opts_init(&o);
        o.name = names[i];
        o.failure_threshold = failures;
        o.reset_timeout = 10 * (i + 1);  /* p0 10 s, p1 20 s, ... */
        o.clock.now = cb_manual_clock_now;
        o.clock.ud = &mc;
        if (cb_pool_add(p, &o) != i) return NULL;
    }
    return p;
}

static void fail_until_open(cb_pool *p, int i) {
    cb_breaker *b = cb_pool_breaker(p, i);
    while (cb_breaker_state(b) != CB_OPEN) {
        cb_breaker_allow(b);
        cb_pool_record(p, i, CB_FAILURE, -1, 0);
    }
}

static cb_bandit_arm_stats arm(cb_pool *p, int i) {
    cb_bandit_arm_stats st;
    cb_bandit_get_stats(cb_pool_bandit(p), i, &st);
    return st;
}

/* A store's probe lease, refused: what makes allow() say no while
 * retry_after() says 0. */
static int refuse(void *ud, cb_breaker *b) {
    (void)b;
    ++*(int *)ud;
    return 0;
}

static const cb_breaker_hook refusing = {NULL, NULL, NULL, refuse, NULL, NULL};

int main(void) {
    cb_pool_opts po;
    cb_pool_opts_init(&po);
    check("defaults: Thompson, discount 0.5, a uniform prior",
          po.strategy == CB_POOL_THOMPSON && po.discount == 0.5 &&
          po.bandit.prior_alpha == 1 && po.bandit.prior_beta == 1);
    po.discount = 1.5;
    const char *msg = cb_pool_opts_check(&po);
    check("a bad discount is named", msg && strstr(msg, "discount") && !cb_pool_new(&po));
    cb_pool_opts_init(&po);
    po.bandit.decay = 0;
    msg = cb_pool_opts_check(&po);
    check("bad bandit options are named", msg && strstr(msg, "decay"));

    /* ---- providers ---- */
    cb_pool *p = make(3, CB_POOL_THOMPSON, 7, 5);
    check("providers get indexes in order and are found by name",
          p && cb_pool_size(p) == 3 && cb_pool_find(p, "p2") == 2 &&
          cb_pool_find(p, "nope") == CB_ERR &&
          strcmp(cb_breaker_name(cb_pool_breaker(p, 1)), "p1") == 0 &&
          cb_pool_breaker(p, 3) == NULL && cb_pool_breaker(p, -1) == NULL);
    cb_breaker_opts bo;
    cb_breaker_opts_init(&bo);
    bo.name = "p1";
    int dup = cb_pool_add(p, &bo);
    bo.name = "";
    int empty = cb_pool_add(p, &bo);
    bo.name = "bad";
    bo.failure_rate = 2;
    int bad = cb_pool_add(p, &bo);
    check("a duplicate, empty or invalid provider is refused, nothing added",
          dup == CB_ERR && empty == CB_ERR && bad == CB_ERR && cb_pool_size(p) == 3 &&
          cb_bandit_arm_count(cb_pool_bandit(p)) == 3);

    /* ---- choosing ---- */
    int seen[3] = {0};
    for (int k = 0; k < 300; k++) seen[cb_pool_pick(p, 0, NULL)]++;
    check("all closed: Thompson picks each provider some of the time",
          seen[0] > 30 && seen[1] > 30 && seen[2] > 30);
    cb_breaker_stats bs;
    cb_breaker_get_stats(cb_pool_breaker(p, 0), &bs);
    check("pick takes no permit and records nothing", bs.calls == 0 && bs.rejections == 0);

    fail_until_open(p, 0);
    int picked0 = 0;
    for (int k = 0; k < 300; k++) picked0 += cb_pool_pick(p, 0, NULL) == 0;
    check("an open provider is never picked", picked0 == 0);

    int ex = 0;
    for (int k = 0; k < 100; k++) ex += cb_pool_pick(p, (uint64_t)1 << 1, NULL) != 2;
    check("an excluded provider is never picked: the lone candidate is", ex == 0);

    double ra = -1;
    int r = cb_pool_pick(p, (uint64_t)1 << 1 | (uint64_t)1 << 2, &ra);
    check("only an open one left: none, and its time left", r == CB_ERR && fabs(ra - 10) < 1e-9);

    fail_until_open(p, 1);
    fail_until_open(p, 2);
    mc.now += 4;
    r = cb_pool_pick(p, 0, &ra);
    check("all open: retry_after is the soonest, counted down", r == CB_ERR && fabs(ra - 6) < 1e-9);
    r = cb_pool_pick(p, 1, &ra);
    check("... among the providers not excluded", r == CB_ERR && fabs(ra - 16) < 1e-9);
    r = cb_pool_pick(p, 7, &ra);
    check("everything excluded: INFINITY", r == CB_ERR && isinf(ra));

    /* ---- half-open permits ---- */
    mc.now += 6;  /* p0's timeout is over */
    r = cb_pool_pick(p, 0, &ra);
    check("half-open with a free permit: picked", r == 0 &&
          cb_breaker_state(cb_pool_breaker(p, 0)) == CB_HALF_OPEN);
    uint64_t tried = 0;
    r = cb_pool_acquire(p, &tried, &ra);
    cb_breaker_get_stats(cb_pool_breaker(p, 0), &bs);
    check("acquire takes its one probe permit and marks it tried",
          r == 0 && bs.permits_out == 1 && tried == 1);
    r = cb_pool_pick(p, 0, &ra);
    check("its permit out: not picked, retry_after is the permit's lapse",
          r == CB_ERR && fabs(ra - 10) < 1e-9);
    cb_pool_record(p, 0, CB_SUCCESS, 1, 0);
    cb_breaker_get_stats(cb_pool_breaker(p, 0), &bs);
    check("record gives the permit back: picked again",
          bs.permits_out == 0 && cb_pool_pick(p, 0, NULL) == 0);
    cb_pool_stats ps;
    cb_pool_get_stats(p, 0, &ps);
    check("stats count acquired permits", ps.acquired == 1 && ps.refused == 0);

    cb_breaker_force_open(cb_pool_breaker(p, 0));
    cb_breaker_force_open(cb_pool_breaker(p, 1));
    cb_breaker_force_open(cb_pool_breaker(p, 2));
    r = cb_pool_pick(p, 0, &ra);
    check("all forced open: none, retry_after INFINITY", r == CB_ERR && isinf(ra));
    tried = 0;
    r = cb_pool_acquire(p, &tried, &ra);
    check("acquire: the same, nothing tried", r == CB_ERR && isinf(ra) && tried == 0);
    cb_pool_free(p);

    cb_pool *empty_pool = make(0, CB_POOL_THOMPSON, 1, 5);
    r = cb_pool_pick(empty_pool, 0, &ra);
    check("an empty pool: none, INFINITY", r == CB_ERR && isinf(ra));
    cb_pool_free(empty_pool);

    /* ---- acquire when a breaker refuses ---- */
    p = make(2, CB_POOL_ROUND_ROBIN, 0, 1);  /* in turn: p0 is chosen first */
    fail_until_open(p, 0);
    fail_until_open(p, 1);
    mc.now += 1000;  /* both half-open-able */
    int refusals = 0;
    cb_breaker_set_hook(cb_pool_breaker(p, 0), &refusing, &refusals);
    tried = 0;
    r = cb_pool_acquire(p, &tried, &ra);
    cb_pool_get_stats(p, 0, &ps);
    check("a refusing provider is left out, the other acquired",
          r == 1 && tried == 3 && ps.refused == (uint64_t)refusals && refusals == 1);
    cb_breaker_set_hook(cb_pool_breaker(p, 1), &refusing, &refusals);
    cb_pool_record(p, 1, CB_IGNORE, -1, 0);  /* its permit back */
    tried = 0;
    r = cb_pool_acquire(p, &tried, &ra);
    check("both refuse: none, each tried once", r == CB_ERR && tried == 3);
    cb_breaker_set_hook(cb_pool_breaker(p, 0), NULL, NULL);
    cb_breaker_set_hook(cb_pool_breaker(p, 1), NULL, NULL);
    cb_pool_free(p);

    /* ---- learning and discounts ---- */
    p = make(2, CB_POOL_THOMPSON, 11, 0);  /* failures never open */
    for (int k = 0; k < 50; k++) {
        cb_pool_record(p, 0, CB_SUCCESS, -1, 0);
        cb_pool_record(p, 1, CB_FAILURE, -1, 0);
    }
    int best = 0;
    for (int k = 0; k < 200; k++) best += cb_pool_pick(p, 0, NULL) == 0;
    check("Thompson routes to the provider that succeeds", best > 190);
    cb_pool_record(p, 0, CB_IGNORE, -1, 0);
    check("an ignored outcome teaches the bandit nothing", arm(p, 0).updates == 50);
    check("record refuses a bad index or outcome",
          cb_pool_record(p, 2, CB_SUCCESS, -1, 0) == CB_ERR &&
          cb_pool_record(p, -1, CB_SUCCESS, -1, 0) == CB_ERR &&
          cb_pool_record(p, 0, (cb_outcome)7, -1, 0) == CB_ERR && arm(p, 0).updates == 50);
    cb_pool_free(p);

    p = make(2, CB_POOL_THOMPSON, 5, 2);
    for (int k = 0; k < 4; k++) cb_pool_record(p, 0, CB_SUCCESS, -1, 0);
    cb_pool_record(p, 0, CB_FAILURE, -1, 0);
    cb_pool_record(p, 0, CB_FAILURE, -1, 0);  /* opens: S 4, F 2 before the discount */
    cb_bandit_arm_stats as = arm(p, 0);
    check("an opening halves the evidence, the failure that opened it counted first",
          cb_breaker_state(cb_pool_breaker(p, 0)) == CB_OPEN &&
          fabs(as.alpha - 3) < 1e-9 && fabs(as.beta - 2) < 1e-9);
    cb_pool_record(p, 1, CB_SUCCESS, -1, 0);
    cb_pool_record(p, 1, CB_SUCCESS, -1, 0);
    cb_breaker_force_open(cb_pool_breaker(p, 1));  /* an operator, outside the pool */
    as = arm(p, 1);
    check("an opening outside the pool is not seen before the pool looks",
          fabs(as.alpha - 3) < 1e-9);
    cb_pool_pick(p, 0, NULL);
    as = arm(p, 1);
    cb_pool_get_stats(p, 1, &ps);
    check("... and discounted once at the next pick", fabs(as.alpha - 2) < 1e-9 &&
          ps.discounts == 1);
    cb_pool_pick(p, 0, NULL);
    cb_pool_get_stats(p, 1, &ps);
    check("a forced-open state is discounted once, not at every look",
          ps.discounts == 1 && fabs(arm(p, 1).alpha - 2) < 1e-9);
    cb_breaker_reset(cb_pool_breaker(p, 0));
    cb_breaker_record(cb_pool_breaker(p, 0), CB_FAILURE, -1, 0);
    cb_breaker_record(cb_pool_breaker(p, 0), CB_FAILURE, -1, 0);
    cb_breaker_reset(cb_pool_breaker(p, 0));
    cb_breaker_record(cb_pool_breaker(p, 0), CB_FAILURE, -1, 0);
    cb_breaker_record(cb_pool_breaker(p, 0), CB_FAILURE, -1, 0);
    cb_pool_pick(p, 0, NULL);
    as = arm(p, 0);
    check("two openings between looks: two discounts", fabs(as.alpha - 1.5) < 1e-9 &&
          fabs(as.beta - 1.25) < 1e-9);

    cb_breaker_reset(cb_pool_breaker(p, 1));
    cb_breaker_force_open(cb_pool_breaker(p, 1));  /* reset and forced again, unseen */
    cb_pool_pick(p, 0, NULL);
    cb_pool_get_stats(p, 1, &ps);
    check("a reset and a new forced opening between looks: discounted again",
          ps.discounts == 2 && fabs(arm(p, 1).alpha - 1.5) < 1e-9);

    cb_pool_get_opts(p, &po);
    po.discount = 1;
    po.bandit.seed = 99;
    int c1 = cb_pool_configure(p, &po);
    cb_pool_get_opts(p, &po);
    check("configure changes the discount, keeps the seed", c1 == CB_OK &&
          po.discount == 1 && po.bandit.seed == 5);
    po.strategy = CB_POOL_ROUND_ROBIN;
    check("configure refuses another strategy", cb_pool_configure(p, &po) == CB_ERR);
    cb_breaker_reset(cb_pool_breaker(p, 1));
    cb_breaker_force_open(cb_pool_breaker(p, 1));
    cb_pool_pick(p, 0, NULL);
    cb_pool_get_stats(p, 1, &ps);
    check("discount 1: openings counted, evidence kept",
          ps.discounts == 3 && fabs(arm(p, 1).alpha - 1.5) < 1e-9);
    cb_pool_free(p);

    /* ---- reproducible for a seed ---- */
    cb_pool *a = make(4, CB_POOL_THOMPSON, 42, 5);
    cb_pool *b = make(4, CB_POOL_THOMPSON, 42, 5);
    cb_pool *c = make(4, CB_POOL_THOMPSON, 43, 5);
    int same = 1, differ = 0;
    for (int k = 0; k < 200; k++) {
        int x = cb_pool_pick(a, 0, NULL), y = cb_pool_pick(b, 0, NULL), z = cb_pool_pick(c, 0, NULL);
        same &= x == y;
        differ |= x != z;
        cb_outcome o = k % 3 ? CB_SUCCESS : CB_FAILURE;
        cb_pool_record(a, x, o, -1, 0);
        cb_pool_record(b, y, o, -1, 0);
        cb_pool_record(c, z, o, -1, 0);
    }
    check("one seed, one sequence of picks; another seed, another", same && differ);
    cb_pool_free(a);
    cb_pool_free(b);
    cb_pool_free(c);

    /* ---- round robin ---- */
    p = make(3, CB_POOL_ROUND_ROBIN, 0, 5);
    int seq[6];
    for (int k = 0; k < 6; k++) seq[k] = cb_pool_pick(p, 0, NULL);
    check("round robin goes in turn", seq[0] == 0 && seq[1] == 1 && seq[2] == 2 &&
          seq[3] == 0 && seq[4] == 1 && seq[5] == 2);
    r = cb_pool_pick(p, 3, NULL);
    int after = cb_pool_pick(p, 0, NULL);
    check("a lone candidate does not move the turn", r == 2 && after == 0);
    for (int k = 0; k < 20; k++) cb_pool_record(p, 0, CB_SUCCESS, -1, 0);
    check("round robin teaches the bandit nothing", arm(p, 0).updates == 0);
    cb_pool_free(p);

    /* ---- on the system clock: open proved by the coarse clock ---- */
    cb_pool_opts_init(&po);
    p = cb_pool_new(&po);
    for (int i = 0; i < 2; i++) {
        cb_breaker_opts o;
        cb_breaker_opts_init(&o);
        o.name = i ? "sys1" : "sys0";
        o.failure_threshold = 1;
        o.reset_timeout = 1000 * (i + 1);
        cb_pool_add(p, &o);
    }
    fail_until_open(p, 0);
    int sys0 = 0;
    for (int k = 0; k < 100; k++) sys0 += cb_pool_pick(p, 0, NULL) == 0;
    fail_until_open(p, 1);
    r = cb_pool_pick(p, 0, &ra);
    check("system clock: an open provider is skipped; all open, the soonest's time left",
          sys0 == 0 && r == CB_ERR && ra > 999 && ra <= 1000);
    cb_pool_free(p);

    /* ---- the hot path does not allocate ---- */
    p = make(4, CB_POOL_THOMPSON, 9, 3);
    cb_pool_pick(p, 0, NULL);
    unsigned long before = allocations;
    for (int k = 0; k < 20000; k++) {
        uint64_t t = 0;
        int i = cb_pool_acquire(p, &t, &ra);
        if (i == CB_ERR) {
            mc.now += ra;
            continue;
        }
        cb_pool_record(p, i, k % 4 == i ? CB_FAILURE : CB_SUCCESS, 1, 0);  /* some open */
        cb_pool_pick(p, (uint64_t)1 << (k & 3), NULL);
    }
    cb_pool_get_stats(p, 0, &ps);
    check("acquire, record, pick and discounts allocate nothing",
          (!COUNTS_ALLOCATIONS || allocations == before) && ps.discounts > 0);
    cb_pool_free(p);
    cb_pool_free(NULL);
    return test_report();
}

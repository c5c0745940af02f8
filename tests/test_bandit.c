/* test_bandit.c -- Thompson sampling in the C core, no Lua: options, arms,
 * the Beta draws' moments, learning, decay, discount and reproducibility. */
#include <string.h>

#include "cbreaker.h"
#include "alloc_count.h"
#include "test.h"

static int near(double a, double b, double tol) {
    return fabs(a - b) <= tol;
}

static cb_bandit *make(double pa, double pb, double decay, uint64_t seed) {
    cb_bandit_opts o;
    cb_bandit_opts_init(&o);
    o.prior_alpha = pa;
    o.prior_beta = pb;
    o.decay = decay;
    o.seed = seed;
    return cb_bandit_new(&o);
}

static void add_arms(cb_bandit *b, int n) {
    static const char *const names[] = {"a", "b", "c", "d", "e", "f", "g", "h"};
    for (int i = 0; i < n; i++) cb_bandit_add_arm(b, names[i]);
}

static cb_bandit_arm_stats stats(cb_bandit *b, int arm) {
    cb_bandit_arm_stats st;
    memset(&st, 0, sizeof st);
    cb_bandit_get_stats(b, arm, &st);
    return st;
}

static void test_options(void) {
    cb_bandit_opts o;
    cb_bandit_opts_init(&o);
    test("options: defaults are a uniform prior, no decay");
    test_cond(o.prior_alpha == 1 && o.prior_beta == 1 && o.decay == 1 && o.half_life == 0 &&
              cb_bandit_opts_check(&o) == NULL);

    test("options: decay must be in (0, 1], and the message names it");
    int ok = 1;
    const double bad_decay[] = {0, -0.5, 1.5, NAN};
    for (int i = 0; i < 4; i++) {
        o.decay = bad_decay[i];
        const char *msg = cb_bandit_opts_check(&o);
        ok &= msg && strstr(msg, "decay") && cb_bandit_new(&o) == NULL;
    }
    test_cond(ok);

    test("options: priors and half_life are checked by name");
    cb_bandit_opts_init(&o);
    o.prior_alpha = 0;
    const char *m1 = cb_bandit_opts_check(&o);
    cb_bandit_opts_init(&o);
    o.prior_beta = INFINITY;
    const char *m2 = cb_bandit_opts_check(&o);
    cb_bandit_opts_init(&o);
    o.half_life = -1;
    const char *m3 = cb_bandit_opts_check(&o);
    test_cond(m1 && strstr(m1, "prior") && m2 && strstr(m2, "prior") && m3 &&
              strstr(m3, "half_life"));

    test("free(NULL) is a no-op");
    cb_bandit_free(NULL);
    test_cond(1);
}

static void test_arms(void) {
    cb_bandit *b = make(1, 1, 1, 0);
    test("arms: none at first, and select has nothing to pick");
    test_cond(b && cb_bandit_arm_count(b) == 0 && cb_bandit_select(b, NULL, 0) == CB_ERR);

    test("arms: indices in order of addition, found by name");
    int a = cb_bandit_add_arm(b, "a"), bb = cb_bandit_add_arm(b, "b");
    test_cond(a == 0 && bb == 1 && cb_bandit_find_arm(b, "b") == 1 &&
              cb_bandit_find_arm(b, "c") == CB_ERR && cb_bandit_find_arm(b, NULL) == CB_ERR &&
              strcmp(cb_bandit_arm_name(b, 0), "a") == 0);

    test("arms: duplicates, empty names and NULL are refused");
    test_cond(cb_bandit_add_arm(b, "a") == CB_ERR && cb_bandit_add_arm(b, "") == CB_ERR &&
              cb_bandit_add_arm(b, NULL) == CB_ERR && cb_bandit_arm_count(b) == 2);

    test("arms: no name for an index out of range");
    test_cond(cb_bandit_arm_name(b, 2) == NULL && cb_bandit_arm_name(b, -1) == NULL);

    test("arms: at most CB_BANDIT_MAX_ARMS");
    char name[16];
    int ok = 1;
    for (int i = 2; i < CB_BANDIT_MAX_ARMS; i++) {
        snprintf(name, sizeof name, "arm%d", i);
        ok &= cb_bandit_add_arm(b, name) == i;
    }
    int all = cb_bandit_select(b, NULL, 0);
    test_cond(ok && cb_bandit_add_arm(b, "one too many") == CB_ERR &&
              cb_bandit_arm_count(b) == CB_BANDIT_MAX_ARMS && all >= 0 &&
              all < CB_BANDIT_MAX_ARMS);
    cb_bandit_free(b);
}

static void test_update(void) {
    cb_bandit *b = make(1, 1, 1, 0);
    add_arms(b, 1);
    test("update: fractional rewards move alpha by r and beta by 1 - r");
    int ok = cb_bandit_update(b, 0, 0.3) == CB_OK && cb_bandit_update(b, 0, 1) == CB_OK &&
             cb_bandit_update(b, 0, 0) == CB_OK;
    cb_bandit_arm_stats st = stats(b, 0);
    test_cond(ok && near(st.alpha, 2.3, 1e-12) && near(st.beta, 2.7, 1e-12) &&
              near(st.mean, 2.3 / 5, 1e-12) && st.updates == 3 && st.selections == 0 &&
              near(st.rewards, 1.3, 1e-12));

    test("update: NaN, < 0, > 1 and unknown arms are refused and change nothing");
    test_cond(cb_bandit_update(b, 0, NAN) == CB_ERR && cb_bandit_update(b, 0, -0.01) == CB_ERR &&
              cb_bandit_update(b, 0, 1.01) == CB_ERR && cb_bandit_update(b, 1, 1) == CB_ERR &&
              cb_bandit_update(b, -1, 1) == CB_ERR && stats(b, 0).updates == 3 &&
              near(stats(b, 0).alpha, 2.3, 1e-12));

    test("stats and sample of an unknown arm fail");
    cb_bandit_arm_stats none;
    test_cond(cb_bandit_get_stats(b, 1, &none) == CB_ERR && isnan(cb_bandit_sample(b, 1)));
    cb_bandit_free(b);
}

/* Mean, variance and skewness of N draws against Beta(a, b)'s: the first
 * two within 5 standard errors (the variance's from the sample's fourth
 * moment), the skewness loosely (it checks the shape). */
static void check_moments(double a, double c) {
    enum { N = 200000 };
    static double x[N];
    cb_bandit *b = make(a, c, 1, 12345);
    add_arms(b, 1);
    double sum = 0;
    int out = 0;
    for (int i = 0; i < N; i++) {
        x[i] = cb_bandit_sample(b, 0);
        if (!(x[i] >= 0 && x[i] <= 1)) out++;
        sum += x[i];
    }
    double m = sum / N, m2 = 0, m3 = 0, m4 = 0;
    for (int i = 0; i < N; i++) {
        double d = x[i] - m;
        m2 += d * d;
        m3 += d * d * d;
        m4 += d * d * d * d;
    }
    m2 /= N;
    m3 /= N;
    m4 /= N;
    double mean = a / (a + c);
    double var = a * c / ((a + c) * (a + c) * (a + c + 1));
    double skew = 2 * (c - a) * sqrt(a + c + 1) / ((a + c + 2) * sqrt(a * c));
    double se_mean = sqrt(var / N), se_var = sqrt((m4 - m2 * m2) / N);
    double g = m3 / pow(m2, 1.5);
    char name[160];
    snprintf(name, sizeof name,
             "sample: Beta(%g, %g) over 2e5 draws: mean %.5f (%.5f), var %.6f (%.6f), "
             "skewness %.4f (%.4f)", a, c, m, mean, m2, var, g, skew);
    test(name);
    test_cond(out == 0 && near(m, mean, 5 * se_mean) && near(m2, var, 5 * se_var) &&
              near(g, skew, 0.03 + 0.02 * fabs(skew)));
    cb_bandit_free(b);
}

/* A simulated world with its own generator, apart from the bandit's. */
static int bernoulli(cb_rng *world, double p) {
    return cb_rng_uniform(world) < p;
}

/* Runs `rounds` picks on arms with success rates p[], rewarding the bandit,
 * and adds to picks[] how often each arm was picked from round `from` on. */
static void simulate(cb_bandit *b, cb_rng *world, const double *p, int rounds, int from,
                     int *picks) {
    for (int r = 0; r < rounds; r++) {
        int i = cb_bandit_select(b, NULL, 0);
        if (r >= from) picks[i]++;
        cb_bandit_update(b, i, bernoulli(world, p[i]));
    }
}

static void test_learning(void) {
    const double p[] = {0.9, 0.6, 0.3};
    cb_bandit *b = make(1, 1, 1, 7);
    add_arms(b, 3);
    cb_rng world;
    cb_rng_seed(&world, 99);
    int picks[3] = {0};
    simulate(b, &world, p, 2000, 200, picks);
    char name[120];
    snprintf(name, sizeof name, "select: 0.9 / 0.6 / 0.3, the best arm's share after warm-up"
             " is %.3f (> 0.85)", picks[0] / 1800.0);
    test(name);
    cb_bandit_arm_stats st = stats(b, 0);
    test_cond(picks[0] / 1800.0 > 0.85 && st.selections > 1800 && near(st.mean, 0.9, 0.03));
    cb_bandit_free(b);
}

static void test_reproducible(void) {
    int seq[3][500];
    const uint64_t seeds[3] = {42, 42, 43};
    for (int t = 0; t < 3; t++) {
        cb_bandit *b = make(1, 1, 1, seeds[t]);
        add_arms(b, 4);
        for (int r = 0; r < 500; r++) {
            seq[t][r] = cb_bandit_select(b, NULL, 0);
            cb_bandit_update(b, seq[t][r], (r % 3) / 2.0);
        }
        cb_bandit_free(b);
    }
    test("select: the same seed gives the same picks, another seed others");
    test_cond(memcmp(seq[0], seq[1], sizeof seq[0]) == 0 &&
              memcmp(seq[0], seq[2], sizeof seq[0]) != 0);
}

static void test_eligible(void) {
    cb_bandit *b = make(1, 1, 1, 3);
    add_arms(b, 4);
    for (int r = 0; r < 50; r++) cb_bandit_update(b, 0, 1);  /* a is far ahead */
    const int some[] = {1, 3, 3, 1};
    int count[4] = {0};
    for (int r = 0; r < 1000; r++) count[cb_bandit_select(b, some, 4)]++;
    test("select: only eligible arms, a repeated one drawn once");
    test_cond(count[0] == 0 && count[2] == 0 && count[1] > 300 && count[3] > 300);

    test("select: an unknown index or an empty list draws nothing");
    const int bad[] = {1, 4};
    uint64_t before = stats(b, 1).selections;
    test_cond(cb_bandit_select(b, bad, 2) == CB_ERR && cb_bandit_select(b, some, 0) == CB_ERR &&
              stats(b, 1).selections == before);

    test("select: a single eligible arm is chosen");
    const int only[] = {2};
    test_cond(cb_bandit_select(b, only, 1) == 2);
    cb_bandit_free(b);
}

static void test_decay(void) {
    cb_bandit *b = make(1, 1, 0.5, 0);
    add_arms(b, 2);
    cb_bandit_update(b, 0, 1);
    double a1 = stats(b, 0).alpha;
    cb_bandit_update(b, 1, 0);  /* every arm fades, a too */
    test("decay: every arm's evidence fades at each update, then the reward is added");
    test_cond(near(a1, 2, 1e-12) && near(stats(b, 0).alpha, 1.5, 1e-12) &&
              near(stats(b, 1).beta, 2, 1e-12));

    test("decay: 5000 updates fold the scale without overflow (1 + 1 + 1/2 + ...)");
    for (int r = 0; r < 5000; r++) cb_bandit_update(b, 0, 1);
    test_cond(near(stats(b, 0).alpha, 3, 1e-9) && near(stats(b, 1).beta, 1, 1e-12));
    cb_bandit_free(b);
}

static void test_half_life(void) {
    cb_manual_clock mc = {100};
    cb_bandit_opts o;
    cb_bandit_opts_init(&o);
    o.half_life = 10;
    o.clock.now = cb_manual_clock_now;
    o.clock.ud = &mc;
    cb_bandit *b = cb_bandit_new(&o);
    add_arms(b, 1);
    for (int r = 0; r < 4; r++) cb_bandit_update(b, 0, 1);
    mc.now += 10;
    double one = stats(b, 0).alpha;
    mc.now += 20;
    double three = stats(b, 0).alpha;
    test("half_life: evidence halves per half-life on the clock");
    test_cond(near(one, 3, 1e-12) && near(three, 1.5, 1e-12));

    test("half_life: after 10^4 half-lives all is forgotten, and updates still work");
    mc.now += 1e5;
    cb_bandit_arm_stats st = stats(b, 0);
    cb_bandit_update(b, 0, 0);
    cb_bandit_arm_stats after = stats(b, 0);
    test_cond(st.alpha == 1 && st.beta == 1 && near(after.beta, 2, 1e-12) &&
              near(after.alpha, 1, 1e-12) && after.updates == 5);
    cb_bandit_free(b);
}

/* An arm that was best goes bad for a while, then recovers.  Counts its
 * picks during the outage, in the 300 rounds after it recovers, and in the
 * last 500. */
static void flaky_run(double decay, int *outage, int *early, int *late) {
    const double phases[3][2] = {{0.9, 0.6}, {0.1, 0.6}, {0.9, 0.6}};
    cb_bandit *b = make(1, 1, decay, 11);
    add_arms(b, 2);
    cb_rng world;
    cb_rng_seed(&world, 5);
    int picks[2] = {0};
    simulate(b, &world, phases[0], 1000, 0, picks);
    picks[0] = 0;
    simulate(b, &world, phases[1], 1000, 0, picks);
    *outage = picks[0];
    picks[0] = 0;
    simulate(b, &world, phases[2], 300, 0, picks);
    *early = picks[0];
    picks[0] = 0;
    simulate(b, &world, phases[2], 1000, 500, picks);
    *late = picks[0];
    cb_bandit_free(b);
}

static void test_recovery(void) {
    int o1, e1, l1, o0, e0, l0;
    flaky_run(0.98, &o1, &e1, &l1);
    flaky_run(1, &o0, &e0, &l0);
    char name[200];
    snprintf(name, sizeof name, "decay 0.98: traffic leaves an outage (%d vs %d picks of 1000"
             " without decay)", o1, o0);
    test(name);
    test_cond(o1 < 150 && o1 * 2 < o0);
    snprintf(name, sizeof name, "decay 0.98: a recovered arm is found again (%d vs %d of the"
             " next 300, %d of the last 500)", e1, e0, l1);
    test(name);
    test_cond(e1 > 150 && e1 > e0 && l1 > 400);
}

static void test_discount_reset(void) {
    cb_bandit *b = make(2, 3, 1, 0);
    add_arms(b, 1);
    for (int r = 0; r < 8; r++) cb_bandit_update(b, 0, r < 6);
    test("discount: shrinks the evidence, not the prior or the counters");
    int rc = cb_bandit_discount(b, 0, 0.5);
    cb_bandit_arm_stats st = stats(b, 0);
    test_cond(rc == CB_OK && near(st.alpha, 2 + 3, 1e-12) && near(st.beta, 3 + 1, 1e-12) &&
              st.updates == 8);

    test("discount: a bad factor or arm is refused");
    test_cond(cb_bandit_discount(b, 0, 1.5) == CB_ERR && cb_bandit_discount(b, 0, NAN) == CB_ERR &&
              cb_bandit_discount(b, 0, -1) == CB_ERR && cb_bandit_discount(b, 1, 0.5) == CB_ERR);

    test("discount 0: the prior again");
    cb_bandit_discount(b, 0, 0);
    st = stats(b, 0);
    test_cond(st.alpha == 2 && st.beta == 3);

    test("reset: evidence and counters gone");
    cb_bandit_update(b, 0, 1);
    cb_bandit_select(b, NULL, 0);
    rc = cb_bandit_reset(b, 0);
    st = stats(b, 0);
    test_cond(rc == CB_OK && st.alpha == 2 && st.beta == 3 && st.updates == 0 &&
              st.selections == 0 && st.rewards == 0 && cb_bandit_reset(b, 3) == CB_ERR);
    cb_bandit_free(b);
}

static void test_configure(void) {
    cb_bandit *b = make(1, 1, 0.5, 0);
    add_arms(b, 1);
    cb_bandit_update(b, 0, 1);
    cb_bandit_update(b, 0, 1);  /* evidence 1.5 */
    cb_bandit_opts o;
    cb_bandit_get_opts(b, &o);
    o.prior_alpha = 2;
    o.decay = 1;
    int rc = cb_bandit_configure(b, &o);
    cb_bandit_update(b, 0, 1);
    test("configure: a new prior and decay keep the evidence");
    test_cond(rc == CB_OK && near(stats(b, 0).alpha, 2 + 2.5, 1e-12));

    test("configure: bad options change nothing");
    o.decay = 0;
    rc = cb_bandit_configure(b, &o);
    cb_bandit_get_opts(b, &o);
    test_cond(rc == CB_ERR && o.decay == 1 && o.prior_alpha == 2);
    cb_bandit_free(b);
}

static void test_no_allocation(void) {
    cb_bandit_opts o;
    cb_bandit_opts_init(&o);
    o.decay = 0.5;  /* folds the scale along the way */
    cb_bandit *b = cb_bandit_new(&o);
    add_arms(b, 8);
    const int some[] = {0, 2, 4, 6};
    unsigned long before = allocations;
    for (int r = 0; r < 2000; r++) {
        int i = cb_bandit_select(b, r % 2 ? some : NULL, 4);
        cb_bandit_update(b, i, (r % 5) / 4.0);
        cb_bandit_sample(b, r % 8);
    }
    cb_bandit_discount(b, 1, 0.5);
    test("select, update, sample and discount make no allocation");
    test_cond(allocations == before);

    test("the counter counts (add_arm allocates)");
    before = allocations;
    cb_bandit_add_arm(b, "ninth");
    test_cond(!COUNTS_ALLOCATIONS || allocations > before);
    cb_bandit_free(b);
}

int main(void) {
    test_options();
    test_arms();
    test_update();
    check_moments(1, 1);
    check_moments(2, 5);
    check_moments(0.5, 0.5);
    check_moments(0.2, 3);
    check_moments(4, 0.7);
    check_moments(30, 20);
    check_moments(500, 1500);
    test_learning();
    test_reproducible();
    test_eligible();
    test_decay();
    test_half_life();
    test_recovery();
    test_discount_reset();
    test_configure();
    test_no_allocation();
    return test_report();
}

/* test_bandit.c -- Thompson sampling in the C core: options, arms, the
 * Beta draws' moments, learning, decay, discount and reproducibility. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cbreaker.h"

static int failures;

#define test_cond(c) \
    do { \
        if (!(c)) { \
            failures++; \
            fprintf(stderr, "%s:%d: failed: %s\n", __FILE__, __LINE__, #c); \
        } \
    } while (0)

#define test(name) printf("  %s\n", name)

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

/* A simulated world with its own generator, apart from the bandit's. */
static int bernoulli(cb_rng *world, double p) {
    return cb_rng_uniform(world) < p;
}

static void test_options(void) {
    test("options: defaults and checks");
    cb_bandit_opts o;
    cb_bandit_opts_init(&o);
    test_cond(o.prior_alpha == 1 && o.prior_beta == 1 && o.decay == 1 && o.half_life == 0);
    test_cond(cb_bandit_opts_check(&o) == NULL);
    o.decay = 0;
    test_cond(strstr(cb_bandit_opts_check(&o), "decay") != NULL);
    o.decay = 1.5;
    test_cond(cb_bandit_opts_check(&o) != NULL);
    o.decay = NAN;
    test_cond(cb_bandit_opts_check(&o) != NULL);
    test_cond(cb_bandit_new(&o) == NULL);
    cb_bandit_opts_init(&o);
    o.prior_alpha = 0;
    test_cond(strstr(cb_bandit_opts_check(&o), "prior alpha") != NULL);
    cb_bandit_opts_init(&o);
    o.prior_beta = INFINITY;
    test_cond(strstr(cb_bandit_opts_check(&o), "prior beta") != NULL);
    cb_bandit_opts_init(&o);
    o.half_life = -1;
    test_cond(strstr(cb_bandit_opts_check(&o), "half_life") != NULL);
    cb_bandit_free(NULL);  /* a no-op */
}

static void test_arms(void) {
    test("arms: add, find, duplicates, the bound");
    cb_bandit *b = make(1, 1, 1, 0);
    test_cond(cb_bandit_arm_count(b) == 0);
    test_cond(cb_bandit_select(b, NULL, 0) == CB_ERR);  /* no arms */
    test_cond(cb_bandit_add_arm(b, "a") == 0);
    test_cond(cb_bandit_add_arm(b, "b") == 1);
    test_cond(cb_bandit_add_arm(b, "a") == CB_ERR);
    test_cond(cb_bandit_add_arm(b, "") == CB_ERR);
    test_cond(cb_bandit_add_arm(b, NULL) == CB_ERR);
    test_cond(cb_bandit_find_arm(b, "b") == 1);
    test_cond(cb_bandit_find_arm(b, "c") == CB_ERR);
    test_cond(strcmp(cb_bandit_arm_name(b, 0), "a") == 0);
    test_cond(cb_bandit_arm_name(b, 2) == NULL && cb_bandit_arm_name(b, -1) == NULL);
    char name[16];
    for (int i = 2; i < CB_BANDIT_MAX_ARMS; i++) {
        snprintf(name, sizeof name, "arm%d", i);
        test_cond(cb_bandit_add_arm(b, name) == i);
    }
    test_cond(cb_bandit_add_arm(b, "one too many") == CB_ERR);
    test_cond(cb_bandit_arm_count(b) == CB_BANDIT_MAX_ARMS);
    int all = cb_bandit_select(b, NULL, 0);
    test_cond(all >= 0 && all < CB_BANDIT_MAX_ARMS);
    cb_bandit_free(b);
}

static void test_update(void) {
    test("update: fractional rewards, bad rewards change nothing");
    cb_bandit *b = make(1, 1, 1, 0);
    cb_bandit_add_arm(b, "a");
    cb_bandit_arm_stats st;
    test_cond(cb_bandit_update(b, 0, 0.3) == CB_OK);
    test_cond(cb_bandit_update(b, 0, 1) == CB_OK);
    test_cond(cb_bandit_update(b, 0, 0) == CB_OK);
    test_cond(cb_bandit_update(b, 0, NAN) == CB_ERR);
    test_cond(cb_bandit_update(b, 0, -0.01) == CB_ERR);
    test_cond(cb_bandit_update(b, 0, 1.01) == CB_ERR);
    test_cond(cb_bandit_update(b, 1, 1) == CB_ERR);
    test_cond(cb_bandit_update(b, -1, 1) == CB_ERR);
    test_cond(cb_bandit_get_stats(b, 0, &st) == CB_OK);
    test_cond(near(st.alpha, 1 + 1.3, 1e-12) && near(st.beta, 1 + 1.7, 1e-12));
    test_cond(near(st.mean, 2.3 / 5, 1e-12));
    test_cond(st.updates == 3 && st.selections == 0 && near(st.rewards, 1.3, 1e-12));
    test_cond(cb_bandit_get_stats(b, 1, &st) == CB_ERR);
    test_cond(isnan(cb_bandit_sample(b, 1)));
    cb_bandit_free(b);
}

/* Mean and variance of N draws against Beta(a, b)'s, within 5 standard
 * errors (the variance's error from the sample's fourth moment). */
static void check_moments(double a, double c) {
    enum { N = 200000 };
    static double x[N];
    cb_bandit *b = make(a, c, 1, 12345);
    cb_bandit_add_arm(b, "x");
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
    printf("    Beta(%g, %g): mean %.5f (%.5f), var %.6f (%.6f), skewness %.4f (%.4f)\n",
           a, c, m, mean, m2, var, g, skew);
    test_cond(out == 0);
    test_cond(near(m, mean, 5 * se_mean));
    test_cond(near(m2, var, 5 * se_var));
    test_cond(near(g, skew, 0.03 + 0.02 * fabs(skew)));  /* the shape, loosely */
    cb_bandit_free(b);
}

static void test_moments(void) {
    test("sample: mean and variance of Beta(a, b) over 2e5 draws");
    check_moments(1, 1);
    check_moments(2, 5);
    check_moments(0.5, 0.5);
    check_moments(0.2, 3);
    check_moments(4, 0.7);
    check_moments(30, 20);
    check_moments(500, 1500);
}

/* Runs `rounds` picks on arms with success rates p[], rewarding the bandit,
 * and returns how often each arm was picked from round `from` on. */
static void simulate(cb_bandit *b, cb_rng *world, const double *p, int rounds,
                     int from, int *picks) {
    for (int r = 0; r < rounds; r++) {
        int i = cb_bandit_select(b, NULL, 0);
        if (r >= from) picks[i]++;
        cb_bandit_update(b, i, bernoulli(world, p[i]));
    }
}

static void test_learning(void) {
    test("select: the 0.9 / 0.6 / 0.3 problem");
    const double p[] = {0.9, 0.6, 0.3};
    cb_bandit *b = make(1, 1, 1, 7);
    for (int i = 0; i < 3; i++) cb_bandit_add_arm(b, (const char *[]){"good", "fair", "bad"}[i]);
    cb_rng world;
    cb_rng_seed(&world, 99);
    int picks[3] = {0};
    simulate(b, &world, p, 2000, 200, picks);
    double share = picks[0] / 1800.0;
    printf("    best arm share after warm-up: %.3f\n", share);
    test_cond(share > 0.85);
    cb_bandit_arm_stats st;
    cb_bandit_get_stats(b, 0, &st);
    test_cond(st.selections > 1800 && near(st.mean, 0.9, 0.03));
    cb_bandit_free(b);
}

static void test_reproducible(void) {
    test("select: the same seed gives the same picks");
    int seq[3][500];
    const uint64_t seeds[3] = {42, 42, 43};
    for (int t = 0; t < 3; t++) {
        cb_bandit *b = make(1, 1, 1, seeds[t]);
        for (int i = 0; i < 4; i++) cb_bandit_add_arm(b, (const char *[]){"a", "b", "c", "d"}[i]);
        for (int r = 0; r < 500; r++) {
            seq[t][r] = cb_bandit_select(b, NULL, 0);
            cb_bandit_update(b, seq[t][r], (r % 3) / 2.0);
        }
        cb_bandit_free(b);
    }
    test_cond(memcmp(seq[0], seq[1], sizeof seq[0]) == 0);
    test_cond(memcmp(seq[0], seq[2], sizeof seq[0]) != 0);
}

static void test_eligible(void) {
    test("select: only eligible arms, bad lists draw nothing");
    cb_bandit *b = make(1, 1, 1, 3);
    for (int i = 0; i < 4; i++) cb_bandit_add_arm(b, (const char *[]){"a", "b", "c", "d"}[i]);
    for (int r = 0; r < 50; r++) cb_bandit_update(b, 0, 1);  /* a is far ahead */
    const int some[] = {1, 3, 3, 1};
    int count[4] = {0};
    for (int r = 0; r < 1000; r++) count[cb_bandit_select(b, some, 4)]++;
    test_cond(count[0] == 0 && count[2] == 0 && count[1] > 300 && count[3] > 300);
    const int bad[] = {1, 4};
    cb_bandit_arm_stats before, after;
    cb_bandit_get_stats(b, 1, &before);
    test_cond(cb_bandit_select(b, bad, 2) == CB_ERR);
    test_cond(cb_bandit_select(b, some, 0) == CB_ERR);
    cb_bandit_get_stats(b, 1, &after);
    test_cond(before.selections == after.selections);
    const int only[] = {2};
    test_cond(cb_bandit_select(b, only, 1) == 2);
    cb_bandit_free(b);
}

static void test_decay(void) {
    test("decay: per update, folded without overflow");
    cb_bandit *b = make(1, 1, 0.5, 0);
    cb_bandit_add_arm(b, "a");
    cb_bandit_add_arm(b, "b");
    cb_bandit_arm_stats st;
    cb_bandit_update(b, 0, 1);
    cb_bandit_get_stats(b, 0, &st);
    test_cond(near(st.alpha, 2, 1e-12));
    cb_bandit_update(b, 1, 0);  /* every arm fades, a too */
    cb_bandit_get_stats(b, 0, &st);
    test_cond(near(st.alpha, 1.5, 1e-12) && near(st.beta, 1, 1e-12));
    cb_bandit_get_stats(b, 1, &st);
    test_cond(near(st.beta, 2, 1e-12));
    for (int r = 0; r < 5000; r++) cb_bandit_update(b, 0, 1);  /* scale folds many times */
    cb_bandit_get_stats(b, 0, &st);
    test_cond(near(st.alpha, 3, 1e-9));  /* 1 + (1 + 1/2 + 1/4 + ...) */
    cb_bandit_get_stats(b, 1, &st);
    test_cond(near(st.beta, 1, 1e-12) && isfinite(st.beta));
    cb_bandit_free(b);
}

static void test_half_life(void) {
    test("half_life: evidence halves per half-life on the clock");
    cb_manual_clock mc = {100};
    cb_bandit_opts o;
    cb_bandit_opts_init(&o);
    o.half_life = 10;
    o.clock.now = cb_manual_clock_now;
    o.clock.ud = &mc;
    cb_bandit *b = cb_bandit_new(&o);
    cb_bandit_add_arm(b, "a");
    cb_bandit_arm_stats st;
    for (int r = 0; r < 4; r++) cb_bandit_update(b, 0, 1);
    mc.now += 10;
    cb_bandit_get_stats(b, 0, &st);
    test_cond(near(st.alpha, 3, 1e-12));
    mc.now += 20;
    cb_bandit_get_stats(b, 0, &st);
    test_cond(near(st.alpha, 1.5, 1e-12));
    mc.now += 1e5;  /* 10^4 half-lives: all forgotten, and no overflow after */
    cb_bandit_get_stats(b, 0, &st);
    test_cond(st.alpha == 1 && st.beta == 1);
    cb_bandit_update(b, 0, 0);
    cb_bandit_get_stats(b, 0, &st);
    test_cond(near(st.beta, 2, 1e-12) && near(st.alpha, 1, 1e-12));
    test_cond(st.updates == 5);
    cb_bandit_free(b);
}

/* An arm that was best goes bad for a while, then recovers.  Counts its
 * picks during the outage, in the 300 rounds after it recovers, and in the
 * last 500. */
static void flaky_run(double decay, int *outage, int *early, int *late) {
    const double phases[3][2] = {{0.9, 0.6}, {0.1, 0.6}, {0.9, 0.6}};
    cb_bandit *b = make(1, 1, decay, 11);
    cb_bandit_add_arm(b, "flaky");
    cb_bandit_add_arm(b, "steady");
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
    test("decay: traffic leaves an outage and a recovered arm is found again");
    int o1, e1, l1, o0, e0, l0;
    flaky_run(0.98, &o1, &e1, &l1);
    flaky_run(1, &o0, &e0, &l0);
    printf("    flaky arm's picks: outage (of 1000) %d vs %d without decay, "
           "first 300 after recovery %d vs %d, last 500 %d vs %d\n",
           o1, o0, e1, e0, l1, l0);
    test_cond(o1 < 150 && o1 * 2 < o0);  /* leaves the outage fast */
    test_cond(e1 > 150 && e1 > e0);      /* comes back fast */
    test_cond(l1 > 400);
}

static void test_discount_reset(void) {
    test("discount and reset");
    cb_bandit *b = make(2, 3, 1, 0);
    cb_bandit_add_arm(b, "a");
    cb_bandit_arm_stats st;
    for (int r = 0; r < 8; r++) cb_bandit_update(b, 0, r < 6);
    test_cond(cb_bandit_discount(b, 0, 0.5) == CB_OK);
    cb_bandit_get_stats(b, 0, &st);
    test_cond(near(st.alpha, 2 + 3, 1e-12) && near(st.beta, 3 + 1, 1e-12));
    test_cond(cb_bandit_discount(b, 0, 1.5) == CB_ERR);
    test_cond(cb_bandit_discount(b, 0, NAN) == CB_ERR);
    test_cond(cb_bandit_discount(b, 1, 0.5) == CB_ERR);
    test_cond(cb_bandit_discount(b, 0, 0) == CB_OK);
    cb_bandit_get_stats(b, 0, &st);
    test_cond(st.alpha == 2 && st.beta == 3 && st.updates == 8);
    cb_bandit_update(b, 0, 1);
    cb_bandit_select(b, NULL, 0);
    test_cond(cb_bandit_reset(b, 0) == CB_OK);
    cb_bandit_get_stats(b, 0, &st);
    test_cond(st.alpha == 2 && st.beta == 3 && st.updates == 0 && st.selections == 0);
    test_cond(cb_bandit_reset(b, 3) == CB_ERR);
    cb_bandit_free(b);
}

static void test_configure(void) {
    test("configure: new prior and decay keep the evidence");
    cb_bandit *b = make(1, 1, 0.5, 0);
    cb_bandit_add_arm(b, "a");
    cb_bandit_update(b, 0, 1);
    cb_bandit_update(b, 0, 1);  /* evidence 1.5 */
    cb_bandit_opts o;
    cb_bandit_get_opts(b, &o);
    o.prior_alpha = 2;
    o.decay = 1;
    test_cond(cb_bandit_configure(b, &o) == CB_OK);
    cb_bandit_update(b, 0, 1);
    cb_bandit_arm_stats st;
    cb_bandit_get_stats(b, 0, &st);
    test_cond(near(st.alpha, 2 + 2.5, 1e-12));
    o.decay = 0;
    test_cond(cb_bandit_configure(b, &o) == CB_ERR);
    cb_bandit_get_opts(b, &o);
    test_cond(o.decay == 1 && o.prior_alpha == 2);
    cb_bandit_free(b);
}

int main(void) {
    printf("test_bandit\n");
    test_options();
    test_arms();
    test_update();
    test_moments();
    test_learning();
    test_reproducible();
    test_eligible();
    test_decay();
    test_half_life();
    test_recovery();
    test_discount_reset();
    test_configure();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("all passed\n");
    return 0;
}

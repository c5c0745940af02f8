/* bench_bandit.c -- ns per cb_bandit_select over 8 arms in C, against the
 * floor of any such sampler measured in the same run: the 32 uniform draws
 * (two Gamma variates per arm, each needing about a normal and a uniform)
 * that the random numbers alone cost.
 *
 *   build/bench/bench_bandit [selects] */
#include <stdio.h>
#include <stdlib.h>

#include "cbreaker.h"

static double run_select(cb_bandit *b, long n) {
    long acc = 0;
    for (long i = 0; i < n; i++) acc += cb_bandit_select(b, NULL, 0);
    return (double)acc;
}

static const int eight[] = {7, 6, 5, 4, 3, 2, 1, 0};

static double run_select_list(cb_bandit *b, long n) {
    long acc = 0;
    for (long i = 0; i < n; i++) acc += cb_bandit_select(b, eight, 8);
    return (double)acc;
}

static double run_update(cb_bandit *b, long n) {
    for (long i = 0; i < n; i++) cb_bandit_update(b, (int)(i & 7), (double)(i & 1));
    return 0;
}

static double run_uniforms(cb_bandit *b, long n) {
    (void)b;
    cb_rng r;
    cb_rng_seed(&r, 1);
    double acc = 0;
    for (long i = 0; i < n; i++)
        for (int k = 0; k < 32; k++) acc += cb_rng_uniform(&r);
    return acc;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 500000;
    if (n < 10) n = 10;
    static const char *const names[] = {"openai", "anthropic", "mistral", "google",
                                        "cohere", "groq", "deepseek", "local"};
    static const double rates[] = {0.9, 0.85, 0.8, 0.7, 0.6, 0.95, 0.5, 0.75};
    cb_bandit_opts o;
    cb_bandit_opts_init(&o);
    o.seed = 1;
    cb_bandit *b = cb_bandit_new(&o);
    if (!b) return 1;
    cb_rng world;
    cb_rng_seed(&world, 2);
    for (int i = 0; i < 8; i++) cb_bandit_add_arm(b, names[i]);
    for (int r = 0; r < 200; r++)  /* a few hundred observations per arm */
        for (int i = 0; i < 8; i++) cb_bandit_update(b, i, cb_rng_uniform(&world) < rates[i]);

    /* The variants run in turns, round after round, each keeping its best
     * round: a busy moment on a shared machine hits all of them alike. */
    enum { ROUNDS = 7, NV = 4 };
    double (*const fns[NV])(cb_bandit *, long) = {run_select, run_select_list, run_uniforms,
                                                  run_update};
    double best[NV];
    for (int v = 0; v < NV; v++) {
        fns[v](b, n / 10);  /* warm up */
        best[v] = 1e300;
    }
    for (int r = 0; r < ROUNDS; r++) {
        for (int v = 0; v < NV; v++) {
            double t0 = cb_clock_monotonic(NULL);
            volatile double sink = fns[v](b, n);
            (void)sink;
            double ns = (cb_clock_monotonic(NULL) - t0) / (double)n * 1e9;
            if (ns < best[v]) best[v] = ns;
        }
    }
    printf("cb_bandit_select over 8 arms, best of %d interleaved rounds of %ld\n", ROUNDS, n);
    printf("  select(NULL)          %7.1f ns\n", best[0]);
    printf("  select(list of 8)     %7.1f ns\n", best[1]);
    printf("  32 uniforms (floor)   %7.1f ns\n", best[2]);
    printf("  select / floor        %7.2fx\n", best[1] / best[2]);
    printf("  update                %7.1f ns\n", best[3]);
    cb_bandit_free(b);
    return 0;
}

/* bench_pool.c -- ns per routed request through a provider pool in C
 * (cb_pool_acquire + cb_pool_record), with 4 providers (all closed, and
 * one of them open) and with 1, against
 * what the same request costs from the parts called one by one in the same
 * run: a retry_after per provider, cb_bandit_select over the candidates,
 * cb_breaker_allow, cb_breaker_record and cb_bandit_update.  The bare
 * bandit select and the bare breaker allow+record pair are baselines too.
 *
 *   build/bench/bench_pool [requests] */
#include <stdio.h>
#include <stdlib.h>

#include "cbreaker_pool.h"

enum { NP = 4 };

typedef struct setup {
    cb_pool *pool4, *pool1, *pool4o;  /* pool4o: the last provider open */
    cb_breaker *br[NP];  /* the parts, for the by-hand baseline */
    cb_breaker *bro[NP]; /* the same, the last one open */
    cb_bandit *bandit;
    int all[NP];
} setup;

static volatile long sink;

static double routed(cb_pool *p, long n) {
    long acc = 0;
    for (long k = 0; k < n; k++) {
        int i = cb_pool_acquire(p, NULL, NULL);
        cb_pool_record(p, i, CB_SUCCESS, -1, 0);
        acc += i;
    }
    return (double)acc;
}

static double run_pool4(setup *s, long n) {
    return routed(s->pool4, n);
}

static double run_pool4o(setup *s, long n) {
    return routed(s->pool4o, n);
}

static double run_pool1(setup *s, long n) {
    long acc = 0;
    for (long k = 0; k < n; k++) {
        int i = cb_pool_acquire(s->pool1, NULL, NULL);
        cb_pool_record(s->pool1, i, CB_SUCCESS, -1, 0);
        acc += i;
    }
    return (double)acc;
}

static double run_pick4(setup *s, long n) {
    long acc = 0;
    for (long k = 0; k < n; k++) acc += cb_pool_pick(s->pool4, 0, NULL);
    return (double)acc;
}

/* What the pool replaces: the same steps through the public parts. */
static double by_hand(setup *s, cb_breaker **br, long n) {
    long acc = 0;
    for (long k = 0; k < n; k++) {
        int list[NP], m = 0;
        for (int i = 0; i < NP; i++)
            if (cb_breaker_retry_after(br[i]) == 0) list[m++] = i;
        int i = m == 1 ? list[0] : cb_bandit_select(s->bandit, list, (size_t)m);
        if (cb_breaker_allow(br[i]) == CB_ALLOWED) {
            cb_bandit_update(s->bandit, i, 1);
            cb_breaker_record(br[i], CB_SUCCESS, -1, 0);
        }
        acc += i;
    }
    return (double)acc;
}

static double run_parts4(setup *s, long n) {
    return by_hand(s, s->br, n);
}

static double run_parts4o(setup *s, long n) {
    return by_hand(s, s->bro, n);
}

static double run_parts1(setup *s, long n) {
    long acc = 0;
    for (long k = 0; k < n; k++)
        if (cb_breaker_retry_after(s->br[0]) == 0 && cb_breaker_allow(s->br[0]) == CB_ALLOWED) {
            cb_bandit_update(s->bandit, 0, 1);
            cb_breaker_record(s->br[0], CB_SUCCESS, -1, 0);
            acc++;
        }
    return (double)acc;
}

static double run_select4(setup *s, long n) {
    long acc = 0;
    for (long k = 0; k < n; k++) acc += cb_bandit_select(s->bandit, s->all, NP);
    return (double)acc;
}

static double run_pair(setup *s, long n) {
    long acc = 0;
    for (long k = 0; k < n; k++)
        if (cb_breaker_allow(s->br[0]) == CB_ALLOWED) {
            cb_breaker_record(s->br[0], CB_SUCCESS, -1, 0);
            acc++;
        }
    return (double)acc;
}

static cb_pool *new_pool(int n, const char *const *names) {
    cb_pool_opts po;
    cb_pool_opts_init(&po);
    po.bandit.seed = 1;
    cb_pool *p = cb_pool_new(&po);
    for (int i = 0; p && i < n; i++) {
        cb_breaker_opts o;
        cb_breaker_opts_init(&o);
        o.name = names[i];
        o.reset_timeout = 1e6;
        if (cb_pool_add(p, &o) != i) return NULL;
    }
    return p;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    if (n < 10) n = 10;
    static const char *const names[NP] = {"openai", "anthropic", "mistral", "local"};
    setup s;
    s.pool4 = new_pool(NP, names);
    s.pool1 = new_pool(1, names);
    s.pool4o = new_pool(NP, names);
    cb_bandit_opts bo;
    cb_bandit_opts_init(&bo);
    bo.seed = 1;
    s.bandit = cb_bandit_new(&bo);
    if (!s.pool4 || !s.pool1 || !s.pool4o || !s.bandit) return 1;
    for (int i = 0; i < NP; i++) {
        cb_breaker_opts o;
        cb_breaker_opts_init(&o);
        o.name = names[i];
        o.reset_timeout = 1e6;
        s.br[i] = cb_breaker_new(&o);
        s.bro[i] = cb_breaker_new(&o);
        if (!s.br[i] || !s.bro[i] || cb_bandit_add_arm(s.bandit, names[i]) != i) return 1;
        s.all[i] = i;
    }
    for (int k = 0; k < 5; k++) {  /* the default 5 failures open them, for 1e6 s */
        cb_pool_record(s.pool4o, NP - 1, CB_FAILURE, -1, 0);
        cb_breaker_record(s.bro[NP - 1], CB_FAILURE, -1, 0);
    }
    if (cb_breaker_state(s.bro[NP - 1]) != CB_OPEN ||
        cb_breaker_state(cb_pool_breaker(s.pool4o, NP - 1)) != CB_OPEN)
        return 1;

    /* Round after round, each variant in turn keeping its best round: a busy
     * moment on a shared machine hits all of them alike. */
    enum { ROUNDS = 7, NV = 9 };
    double (*const fns[NV])(setup *, long) = {run_pool4, run_parts4, run_pick4, run_select4,
                                              run_pool1, run_parts1, run_pair, run_pool4o,
                                              run_parts4o};
    double best[NV];
    for (int v = 0; v < NV; v++) {
        sink += (long)fns[v](&s, n / 10);  /* warm up */
        best[v] = 1e300;
    }
    for (int r = 0; r < ROUNDS; r++) {
        for (int v = 0; v < NV; v++) {
            double t0 = cb_clock_monotonic(NULL);
            sink += (long)fns[v](&s, n);
            double ns = (cb_clock_monotonic(NULL) - t0) / (double)n * 1e9;
            if (ns < best[v]) best[v] = ns;
        }
    }
    printf("C provider pool, best of %d interleaved rounds of %ld requests\n", ROUNDS, n);
    printf("%-44s %7.1f ns   %-30s %7.1f ns   ratio %5.2fx\n",
           "pool acquire+record, 4 providers", best[0], "the same by hand (parts)", best[1],
           best[0] / best[1]);
    printf("%-44s %7.1f ns   %-30s %7.1f ns   ratio %5.2fx\n",
           "pool acquire+record, 4 providers, 1 open", best[7], "the same by hand (parts)",
           best[8], best[7] / best[8]);
    printf("%-44s %7.1f ns   %-30s %7.1f ns   ratio %5.2fx\n",
           "pool pick, 4 providers", best[2], "cb_bandit_select over 4", best[3],
           best[2] / best[3]);
    printf("%-44s %7.1f ns   %-30s %7.1f ns   ratio %5.2fx\n",
           "pool acquire+record, 1 provider", best[4], "the same by hand (parts)", best[5],
           best[4] / best[5]);
    printf("%-44s %7.1f ns   %-30s %7.1f ns   ratio %5.2fx\n",
           "pool acquire+record, 1 provider", best[4], "breaker allow()+record()", best[6],
           best[4] / best[6]);
    cb_pool_free(s.pool4);
    cb_pool_free(s.pool1);
    cb_pool_free(s.pool4o);
    cb_bandit_free(s.bandit);
    for (int i = 0; i < NP; i++) {
        cb_breaker_free(s.br[i]);
        cb_breaker_free(s.bro[i]);
    }
    return 0;
}

/* bench_registry.c -- the per-session breaker map from C:
 *  1. get()+allow()+record() on an existing key, against allow()+record() on
 *     a lone breaker, in the same run;
 *  2. bytes per entry with N live sessions (RSS delta / N, key bytes off),
 *     without and with max_per_tenant (its per-tenant LRU links);
 *  3. the longest single get() during a churn on an N-entry map, once
 *     driven by the cap (evictions), once by idle time (sweeps), once by
 *     256 tenants each at its max_per_tenant (recycling its own): max and
 *     p99.9 in microseconds, per kind of call;
 *  4. the same growth into uthash (what the issue suggested): its pause when
 *     the table doubles, and its handle size.  Only when uthash.h was found
 *     at configure time (Debian: uthash-dev, not a build dependency).
 *   build/bench/bench_registry [N]   (N live sessions, default 1000000) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if CB_HAVE_UTHASH
#include <uthash.h>
#endif

#include "cbreaker.h"

static long rss_kb(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = 0;
        fclose(f);
    }
    return resident * 4;  /* 4 KiB pages */
}

static double now(void) {
    return cb_clock_monotonic(NULL);
}

/* ---- 1. the hot path --------------------------------------------------------- */

static void bench_hot(void) {
    long n = 5000000;
    cb_registry_opts ro;
    cb_registry_opts_init(&ro);
    cb_registry *r = cb_registry_new(&ro);
    char keys[1000][24];
    for (int i = 0; i < 1000; i++) {
        snprintf(keys[i], sizeof keys[i], "session-%07d", i);
        cb_registry_get(r, "tenant-1", 8, keys[i], strlen(keys[i]), NULL, NULL);
    }
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    cb_breaker *lone = cb_breaker_new(&o);
    double best_pair = 1e30, best_get = 1e30, best_rot = 1e30;
    for (int round = 0; round < 7; round++) {  /* interleaved: a busy machine skews all alike */
        double t0 = now();
        for (long i = 0; i < n; i++)
            if (cb_breaker_allow(lone) == CB_ALLOWED) cb_breaker_record(lone, CB_SUCCESS, -1, 0);
        double t1 = now();
        for (long i = 0; i < n; i++) {
            cb_breaker *b = cb_registry_get(r, "tenant-1", 8, keys[7], 15, NULL, NULL);
            if (cb_breaker_allow(b) == CB_ALLOWED) cb_breaker_record(b, CB_SUCCESS, -1, 0);
        }
        double t2 = now();
        for (long i = 0; i < n; i++) {
            cb_breaker *b = cb_registry_get(r, "tenant-1", 8, keys[i % 1000], 15, NULL, NULL);
            if (cb_breaker_allow(b) == CB_ALLOWED) cb_breaker_record(b, CB_SUCCESS, -1, 0);
        }
        double t3 = now();
        if ((t1 - t0) < best_pair) best_pair = t1 - t0;
        if ((t2 - t1) < best_get) best_get = t2 - t1;
        if ((t3 - t2) < best_rot) best_rot = t3 - t2;
    }
    double pair = best_pair * 1e9 / (double)n, get = best_get * 1e9 / (double)n;
    double rot = best_rot * 1e9 / (double)n;
    printf("1. hot path, N = %ld, best of 7 interleaved rounds\n", n);
    printf("   %-52s %7.1f ns\n", "allow()+record() on a lone breaker", pair);
    printf("   %-52s %7.1f ns   ratio %.2fx\n", "get()+allow()+record(), one existing key", get, get / pair);
    printf("   %-52s %7.1f ns   ratio %.2fx\n", "get()+allow()+record(), 1000 keys in turn", rot, rot / pair);
    cb_breaker_free(lone);
    cb_registry_free(r);
}

/* ---- 2. memory per entry ----------------------------------------------------- */

/* N live sessions of tenant "tenant-1" and keys of `klen` bytes; with
 * `per_tenant`, max_per_tenant is set (to N: nothing recycled). */
static void bench_memory(long n, int klen, int per_tenant) {
    cb_registry_opts o;
    cb_registry_opts_init(&o);
    o.max_entries = 0;
    o.max_per_tenant = per_tenant ? (size_t)n : 0;
    char key[64];
    long before = rss_kb();
    cb_registry *r = cb_registry_new(&o);
    double key_bytes = 0;
    for (long i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%0*ld", klen, i);  /* zero-padded to klen */
        cb_registry_get(r, "tenant-1", 8, key, (size_t)klen, NULL, NULL);
        key_bytes += 8 + klen;
    }
    for (int i = 0; i < 64; i++) cb_registry_get(r, "t", 1, "x", 1, NULL, NULL);  /* finish growing */
    cb_registry_stats st;
    cb_registry_get_stats(r, &st);
    long after = rss_kb();
    double per = (double)(after - before) * 1024 / (double)n;
    printf("2. %ld live sessions, tenant 8 bytes + key %d bytes%s: RSS %ld -> %ld KiB\n", n,
           klen, per_tenant ? ", max_per_tenant set" : "", before, after);
    printf("   %.1f bytes/entry, %.1f beyond the %.0f key bytes (goal < 200); buckets %.1f of it\n",
           per, per - key_bytes / (double)n, key_bytes / (double)n,
           (double)st.buckets * 8 / (double)n);
    cb_registry_free(r);
}

/* 200k created and dropped, twice: the second round reuses the memory. */
static void bench_flat(void) {
    cb_registry_opts o;
    cb_registry_opts_init(&o);
    o.max_entries = 0;
    char key[32];
    for (int round = 0; round < 2; round++) {
        long b0 = rss_kb();
        cb_registry *q = cb_registry_new(&o);
        for (long i = 0; i < 200000; i++) {
            int kl = snprintf(key, sizeof key, "s%ld", i);
            cb_registry_get(q, "t", 1, key, (size_t)kl, NULL, NULL);
        }
        cb_registry_free(q);
        printf("   200k created and freed, round %d: RSS %+ld KiB\n", round + 1, rss_kb() - b0);
    }
}

/* ---- 3. latency under churn --------------------------------------------------- */

#define HIST_US 1000
#define HIST_N 10000   /* HIST_US / HIST_STEP */
#define HIST_STEP 0.1  /* microseconds per bucket */

enum { K_HIT, K_CREATE, K_EVICT, K_SWEEP, K_COUNT };
static const char *const kind_names[] = {
    "hit", "create", "create + evict", "sweep step (any)"};

typedef struct lat {
    unsigned hist[HIST_N + 1];
    long calls, over50;
    double worst;
} lat;

static void lat_add(lat *l, double us) {
    l->calls++;
    if (us > l->worst) l->worst = us;
    if (us > 50) l->over50++;
    l->hist[us >= HIST_US ? HIST_N : (int)(us / HIST_STEP)]++;
}

static double lat_quantile(const lat *l, double q) {
    unsigned long long seen = 0;
    for (int i = 0; i <= HIST_N; i++) {
        seen += l->hist[i];
        if ((double)seen >= q * (double)l->calls) return (i + 1) * HIST_STEP;
    }
    return HIST_US;
}

static void lat_print(const char *what, const lat *l) {
    printf("   %-18s %8ld calls   p99 <= %5.1f us   p99.9 <= %5.1f us   max %7.1f us   > 50 us: %ld\n",
           what, l->calls, lat_quantile(l, 0.99), lat_quantile(l, 0.999), l->worst, l->over50);
}

#define CHURN_TENANTS 256

/* With `tenants`, the sessions spread over CHURN_TENANTS tenants, each
 * capped at its share of N. */
static void bench_churn(long n, double idle_ttl, int tenants) {
    lat *all = calloc(K_COUNT + 1, sizeof *all), *kind = all + 1;
    cb_manual_clock mc = {0};
    cb_registry_opts o;
    cb_registry_opts_init(&o);
    o.max_entries = (size_t)n;
    o.max_per_tenant = tenants ? (size_t)n / CHURN_TENANTS : 0;
    o.idle_ttl = idle_ttl;  /* clock seconds; the loop advances 1 s per 10k calls */
    o.cleanup_every = 100;
    o.clock.now = cb_manual_clock_now;
    o.clock.ud = &mc;
    cb_registry *r = cb_registry_new(&o);
    long calls = 3 * n;
    char key[32], tenant[16] = "tenant-1";
    unsigned long long x = 88172645463325252ULL;  /* xorshift: which key */
    for (long i = 0; i < calls; i++) {
        if (i % 10000 == 0) mc.now += 1;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        /* half the calls revisit one of 64k hot sessions, half are new ones;
         * the map fills to the cap (evictions) before idle ones are swept */
        long id = (x & 1) ? (long)((x >> 1) % 65536) : 1000000 + i;
        int kl = snprintf(key, sizeof key, "session-%07ld", id);
        if (tenants) snprintf(tenant, sizeof tenant, "tenant-%03ld", id % CHURN_TENANTS);
        cb_registry_stats s0, s1;
        cb_registry_get_stats(r, &s0);
        double t0 = now();
        cb_breaker *b = cb_registry_get(r, tenant, strlen(tenant), key, (size_t)kl, NULL, NULL);
        double us = (now() - t0) * 1e6;
        cb_registry_get_stats(r, &s1);
        int k = s1.sweeps != s0.sweeps ? K_SWEEP : s1.evicted != s0.evicted ? K_EVICT
              : s1.created != s0.created ? K_CREATE : K_HIT;
        lat_add(all, us);
        lat_add(&kind[k], us);
        if (b) {
            /* one in 500 fails hard: tripped breakers the caps must step over */
            cb_outcome out = (x >> 20) % 500 == 0 ? CB_FAILURE : CB_SUCCESS;
            for (int j = 0; j < (out == CB_FAILURE ? 5 : 1); j++)
                if (cb_breaker_allow(b) == CB_ALLOWED) cb_breaker_record(b, out, -1, 0);
        }
    }
    cb_registry_stats st;
    cb_registry_get_stats(r, &st);
    printf("3. churn: %ld get() calls, cap %ld, half of them new sessions, idle_ttl = %.0fk calls",
           calls, n, idle_ttl * 10);
    if (tenants) printf(",\n   %d tenants, max_per_tenant %zu", CHURN_TENANTS, o.max_per_tenant);
    printf("\n   evicted %llu, swept %llu, sweep steps %llu, pinned %zu, refused %llu, size %zu\n",
           (unsigned long long)st.evicted, (unsigned long long)st.swept,
           (unsigned long long)st.sweeps, st.pinned,
           (unsigned long long)(st.refused_full + st.refused_tenant), st.size);
    lat_print("all", all);
    for (int k = 0; k < K_COUNT; k++) lat_print(kind_names[k], &kind[k]);
    printf("   (goal: longest < 50 us; plain hits do no housekeeping beyond a rehash step,\n"
           "    so their outliers measure the machine, not the registry)\n");
    cb_registry_free(r);
    free(all);
}

/* ---- 4. uthash, for comparison ------------------------------------------------ */

#if CB_HAVE_UTHASH
static volatile int sink;  /* keeps uthash's lookups from being optimised away */

typedef struct uentry {
    UT_hash_handle hh;
    char key[32];
} uentry;

static void bench_uthash(long n) {
    uentry *table = NULL;
    double worst = 0;
    char key[32];
    for (long i = 0; i < n; i++) {
        uentry *e = calloc(1, sizeof *e);
        snprintf(e->key, sizeof e->key, "session-%07ld", i);
        double t0 = now();
        HASH_ADD_STR(table, key, e);
        double us = (now() - t0) * 1e6;
        if (us > worst) worst = us;
    }
    uentry *found = NULL;
    snprintf(key, sizeof key, "session-%07ld", n / 2);
    HASH_FIND_STR(table, key, found);
    sink += found != NULL;
    printf("4. uthash: UT_hash_handle is %zu bytes; longest single insert growing to %ld: %.0f us"
           " (a full rehash when it doubles)\n", sizeof(UT_hash_handle), n, worst);
    uentry *e, *tmp;
    HASH_ITER(hh, table, e, tmp) {
        HASH_DEL(table, e);
        free(e);
    }
}
#else
static void bench_uthash(long n) {
    (void)n;
    printf("4. uthash: skipped (uthash.h was not found when this was configured;"
           " apt-get install uthash-dev, then reconfigure)\n");
}
#endif

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    if (n < 1000) n = 1000;
    printf("cbreaker %s registry benchmark\n", CB_VERSION);
    bench_memory(n, 15, 0);  /* first, on a fresh heap */
    if (argc > 2 && strcmp(argv[2], "memory") == 0) return 0;  /* bench/registry_rss.lua's baseline */
    bench_memory(n, 36, 0);  /* a UUID */
    bench_memory(n, 15, 1);
    bench_memory(n, 36, 1);
    bench_flat();
    bench_hot();
    bench_churn(n, 250, 0);  /* fills to the cap: evictions */
    bench_churn(n, 20, 0);   /* idle sessions: the sweep removes them */
    bench_churn(n, 250, 1);  /* tenants at their caps: each recycles its own */
    bench_uthash(n);
    return 0;
}

/* optspec.c -- the option schema of every options struct (see optspec.h).
 *
 * Durations are 0 (where 0 means off or at once) or at least a millisecond:
 * the clocks read here tell nothing shorter apart (the registry's coarse
 * clock ticks in milliseconds, the store writes epoch milliseconds), and a
 * value such as 1e-300 would only turn divisions by it into infinities.
 * They are at most 1e9 s (~31 years, "never" in practice), which keeps every
 * deadline far inside a double's exact range. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cbreaker_pool.h"
#include "optspec.h"
#if CB_WITH_REDIS
#include "cbreaker_redis.h"
#endif

#define U32_MAX 4294967295.0
#define INT_MAX63 9223372036854775807.0  /* a Lua integer's largest */

#define ENTRY(st, field, kind, flags, lo, hi, what)                              \
    {#field, kind, flags, offsetof(st, field), 0, lo, hi, what, #field " must be " what, NULL}

/* ---- breaker ------------------------------------------------------------------ */

#define B(field, kind, flags, lo, hi, what) ENTRY(cb_breaker_opts, field, kind, flags, lo, hi, what)
static const cb_optspec breaker_f[] = {
    B(name, CB_OPT_STRING, CB_OPT_TOP | CB_OPT_NOZERO, 0, 0, "a string without zero bytes"),
    B(failure_threshold, CB_OPT_U32, 0, 0, U32_MAX, "a whole number of failures >= 0"),
    B(reset_timeout, CB_OPT_NUMBER, CB_OPT_ZERO, 1e-3, 1e9,
      "0 or a number of seconds in [0.001, 1e9]"),
    B(success_threshold, CB_OPT_U32, 0, 1, U32_MAX, "a whole number >= 1"),
    B(half_open_max_calls, CB_OPT_U32, 0, 1, U32_MAX, "a whole number >= 1"),
    B(probe_timeout, CB_OPT_NUMBER, CB_OPT_ZERO, 1e-3, 1e9,
      "0 (reset_timeout) or a number of seconds in [0.001, 1e9]"),
    B(failure_rate, CB_OPT_NUMBER, 0, 0, 1, "a number in [0, 1]"),
    B(slow_call_ms, CB_OPT_NUMBER, CB_OPT_ZERO, 1e-3, 1e12,
      "0 (off) or a number of milliseconds in [0.001, 1e12]"),
    B(slow_call_rate, CB_OPT_NUMBER, CB_OPT_LO_OPEN, 0, 1, "a number in (0, 1]"),
    B(window, CB_OPT_U32, 0, 1, 1e6, "a number of calls in [1, 1000000]"),
    B(window_seconds, CB_OPT_NUMBER, CB_OPT_ZERO, 1e-3, 1e6,
      "0 (a count window) or a number of seconds in [0.001, 1e6]"),
    B(min_calls, CB_OPT_U32, 0, 1, U32_MAX, "a whole number >= 1"),
    B(backoff_factor, CB_OPT_NUMBER, 0, 1, 1000, "a number in [1, 1000]"),
    B(max_reset_timeout, CB_OPT_NUMBER, CB_OPT_ZERO, 1e-3, 1e9,
      "0 (no cap) or a number of seconds in [0.001, 1e9]"),
    B(jitter, CB_OPT_NUMBER, 0, 0, 1, "a number in [0, 1]"),
    B(seed, CB_OPT_SEED, 0, -INT_MAX63, INT_MAX63, "an integer"),
    B(clock, CB_OPT_CLOCK, CB_OPT_TOP | CB_OPT_NEW, 0, 0, "a cbreaker.manual_clock"),
};
#undef B

/* ---- registry ----------------------------------------------------------------- */

#define R(field, kind, flags, lo, hi, what) ENTRY(cb_registry_opts, field, kind, flags, lo, hi, what)
static const cb_optspec registry_f[] = {
    {"defaults", CB_OPT_OPTS, 0, offsetof(cb_registry_opts, defaults), 0, 0, 0,
     "a table", "defaults must be valid breaker options", &cb_breaker_schema},
    R(max_entries, CB_OPT_SIZE, 0, 0, INT_MAX63, "a whole number >= 0 (0: no cap)"),
    R(max_per_tenant, CB_OPT_SIZE, 0, 0, INT_MAX63, "a whole number >= 0 (0: no cap)"),
    R(idle_ttl, CB_OPT_NUMBER, CB_OPT_INF, 1e-3, 1e9,
      "a number of seconds in [0.001, 1e9] (math.huge: never)"),
    R(unused_ttl, CB_OPT_NUMBER, CB_OPT_ZERO, 1e-3, 1e9,
      "0 (idle_ttl) or a number of seconds in [0.001, 1e9]"),
    R(cleanup_every, CB_OPT_U32, 0, 0, U32_MAX, "a whole number >= 0 (0: only on request)"),
    R(seed, CB_OPT_SEED, 0, 0, INT_MAX63, "an integer >= 0 (0: random)"),
    R(clock, CB_OPT_CLOCK, 0, 0, 0, "a cbreaker.manual_clock"),
};
#undef R

/* ---- bandit ------------------------------------------------------------------- */

#define D(field, kind, flags, lo, hi, what) ENTRY(cb_bandit_opts, field, kind, flags, lo, hi, what)
static const cb_optspec bandit_f[] = {
    /* below 0.001 the gamma sampler's log(U)/a loses all precision */
    {"prior", CB_OPT_PAIR, 0, offsetof(cb_bandit_opts, prior_alpha),
     offsetof(cb_bandit_opts, prior_beta), 1e-3, 1e6, "a number in [0.001, 1e6]",
     "prior must be {alpha, beta}, each a number in [0.001, 1e6]", NULL},
    D(decay, CB_OPT_NUMBER, CB_OPT_LO_OPEN, 0, 1, "a number in (0, 1]"),
    D(half_life, CB_OPT_NUMBER, CB_OPT_ZERO, 1e-3, 1e9,
      "0 (off) or a number of seconds in [0.001, 1e9]"),
    D(seed, CB_OPT_SEED, CB_OPT_NEW, -INT_MAX63, INT_MAX63, "an integer"),
    D(clock, CB_OPT_CLOCK, 0, 0, 0, "a cbreaker.manual_clock"),
};
#undef D

/* ---- pool --------------------------------------------------------------------- */

static const cb_optspec pool_f[] = {
    {"strategy", CB_OPT_ENUM, CB_OPT_NEW, offsetof(cb_pool_opts, strategy), 0, 0, 0,
     "one of 'thompson', 'round_robin'", "strategy must be \"thompson\" or \"round_robin\"",
     cb_pool_strategy_names},
    {"bandit", CB_OPT_OPTS, 0, offsetof(cb_pool_opts, bandit), 0, 0, 0, "a table",
     "bandit must be valid bandit options", &cb_bandit_schema},
    ENTRY(cb_pool_opts, discount, CB_OPT_NUMBER, 0, 0, 1, "a number in [0, 1]"),
};

/* ---- store -------------------------------------------------------------------- */

#if CB_WITH_REDIS

#define S(field, kind, flags, lo, hi, what) ENTRY(cb_store_opts, field, kind, flags, lo, hi, what)
static const cb_optspec store_f[] = {
    S(url, CB_OPT_STRING, 0, 0, 0, "a string"),
    S(prefix, CB_OPT_STRING, 0, 0, 0, "a string"),
    S(hash_tag, CB_OPT_BOOL, 0, 0, 0, "a boolean"),
    S(channel, CB_OPT_STRING, 0, 0, 0, "a string"),
    S(password, CB_OPT_STRING, 0, 0, 0, "a string"),
    S(username, CB_OPT_STRING, 0, 0, 0, "a string"),
    S(id, CB_OPT_STRING, 0, 0, 0, "a string"),
    S(secret, CB_OPT_STRING, CB_OPT_NOZERO, 0, 0, "a string without zero bytes"),
    {"mode", CB_OPT_ENUM, 0, offsetof(cb_store_opts, mode), 0, 0, 0,
     "one of 'broadcast', 'shared'", "mode must be \"broadcast\" or \"shared\"",
     cb_store_mode_names},
    S(timeout_ms, CB_OPT_NUMBER, 0, 1, 60000, "a number of milliseconds in [1, 60000]"),
    S(quorum, CB_OPT_U32, 0, 0, 10000, "a whole number in [0, 10000]"),
    S(ttl, CB_OPT_NUMBER, 0, 1, 1e8, "a number of seconds in [1, 1e8]"),
    S(backoff_min, CB_OPT_NUMBER, 0, 1e-3, 3600, "a number of seconds in [0.001, 3600]"),
    S(backoff_max, CB_OPT_NUMBER, 0, 1e-3, 86400, "a number of seconds in [0.001, 86400]"),
    S(replay_window_ms, CB_OPT_NUMBER, 0, 1000, 86400000,
      "a number of milliseconds in [1000, 86400000]"),
    S(peer_read_ms, CB_OPT_NUMBER, CB_OPT_ZERO, 10, 3600000,
      "0 (off) or a number of milliseconds in [10, 3600000]"),
    S(clock, CB_OPT_CLOCK, 0, 0, 0, "a cbreaker.manual_clock"),
    {"tls", CB_OPT_OPTS, 0, offsetof(cb_store_opts, tls), 0, 0, 0, "a table",
     "tls must be valid TLS options", &cb_store_tls_schema},
};
#undef S

#define T(field, kind, flags, what) ENTRY(struct cb_store_tls_opts, field, kind, flags, 0, 0, what)
static const cb_optspec store_tls_f[] = {
    T(enabled, CB_OPT_BOOL, 0, "a boolean"),
    T(ca_file, CB_OPT_STRING, CB_OPT_NOZERO, "a path"),
    T(ca_path, CB_OPT_STRING, CB_OPT_NOZERO, "a path"),
    T(cert_file, CB_OPT_STRING, CB_OPT_NOZERO, "a path"),
    T(key_file, CB_OPT_STRING, CB_OPT_NOZERO, "a path"),
    T(server_name, CB_OPT_STRING, CB_OPT_NOZERO, "a host name"),
    T(verify, CB_OPT_BOOL, 0, "a boolean"),
};
#undef T

_Static_assert(sizeof(cb_store_mode) == sizeof(int), "CB_OPT_ENUM reads an int");
#endif

_Static_assert(sizeof(cb_pool_strategy) == sizeof(int), "CB_OPT_ENUM reads an int");

#define SCHEMA(kind, f) {kind, f, sizeof f / sizeof f[0]}
const cb_optschema cb_breaker_schema = SCHEMA("breaker", breaker_f);
const cb_optschema cb_registry_schema = SCHEMA("registry", registry_f);
const cb_optschema cb_bandit_schema = SCHEMA("bandit", bandit_f);
const cb_optschema cb_pool_schema = SCHEMA("pool", pool_f);
#if CB_WITH_REDIS
const cb_optschema cb_store_schema = SCHEMA("redis", store_f);
const cb_optschema cb_store_tls_schema = SCHEMA("redis.tls", store_tls_f);
#endif

const cb_optspec *cb_optschema_find(const cb_optschema *s, const char *name) {
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->f[i].name, name) == 0) return &s->f[i];
    return NULL;
}

int cb_optspec_in_range(const cb_optspec *f, double v) {
    if ((f->flags & CB_OPT_ZERO) && v == 0) return 1;
    if ((f->flags & CB_OPT_INF) && v == INFINITY) return 1;
    if ((f->flags & CB_OPT_LO_OPEN) && v == f->lo) return 0;
    return v >= f->lo && v <= f->hi;  /* false for NaN */
}

static double number_at(const void *o, size_t offset) {
    double v;
    memcpy(&v, (const char *)o + offset, sizeof v);
    return v;
}

const char *cb_optschema_check(const cb_optschema *s, const void *o) {
    const char *p = o;
    for (size_t i = 0; i < s->n; i++) {
        const cb_optspec *f = &s->f[i];
        int ok = 1;
        switch (f->kind) {
        case CB_OPT_NUMBER:
            ok = cb_optspec_in_range(f, number_at(o, f->offset));
            break;
        case CB_OPT_PAIR:
            ok = cb_optspec_in_range(f, number_at(o, f->offset)) &&
                 cb_optspec_in_range(f, number_at(o, f->offset2));
            break;
        case CB_OPT_U32: {
            uint32_t v;
            memcpy(&v, p + f->offset, sizeof v);
            ok = cb_optspec_in_range(f, (double)v);
            break;
        }
        case CB_OPT_SIZE: {
            size_t v;
            memcpy(&v, p + f->offset, sizeof v);
            ok = cb_optspec_in_range(f, (double)v);
            break;
        }
        case CB_OPT_ENUM: {
            int v;
            memcpy(&v, p + f->offset, sizeof v);
            const char *const *names = f->sub;
            int n = 0;
            while (names[n]) n++;
            ok = v >= 0 && v < n;
            break;
        }
        case CB_OPT_OPTS: {
            const char *bad = cb_optschema_check(f->sub, p + f->offset);
            if (bad) return bad;
            break;
        }
        default:
            break;
        }
        if (!ok) return f->msg;
    }
    return NULL;
}

/*
 * cbreaker.h -- circuit breakers, per-session breaker maps, Thompson
 * sampling for C programs.  The Redis store is in cbreaker_redis.h; this
 * header needs nothing beyond the C library.
 *
 * Conventions (hiredis / Redis style):
 *  - `*_new` returns NULL only when out of memory; `*_free(NULL)` is a no-op.
 *  - Functions that can fail return CB_OK or CB_ERR.
 *  - Times are seconds as `double`, read through a `cb_clock` the caller can
 *    replace.  The default clock is CLOCK_MONOTONIC.
 *  - Thread safety: no object locks itself.  One object (and everything
 *    attached to it: a registry's breakers, a store's breakers) must be used
 *    from one thread at a time.  Distinct objects are independent, there is
 *    no global state.
 */
#ifndef CBREAKER_H
#define CBREAKER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define CB_API __attribute__((visibility("default")))
#else
#define CB_API
#endif

#define CB_VERSION "0.1.0"

#define CB_OK 0
#define CB_ERR (-1)

/* ---- clock ----------------------------------------------------------- */

/* Returns the current time in seconds.  Must be monotonic. */
typedef double (*cb_clock_fn)(void *ud);

typedef struct cb_clock {
    cb_clock_fn now;  /* NULL means the monotonic system clock */
    void *ud;
} cb_clock;

/* Seconds from CLOCK_MONOTONIC, with nanosecond resolution.  Thread-safe. */
CB_API double cb_clock_monotonic(void *ud);

/* Reads `c`, falling back to the monotonic clock when c->now is NULL. */
CB_API double cb_clock_read(const cb_clock *c);

/* Test aid: a manual clock, time moves only when the caller sets `now`.
 * Pass `cb_manual_clock_now` and a pointer to the struct as a cb_clock.  It
 * is public because it is the C side of the Lua API's cb.manual_clock, and
 * C programs test their own timeouts with it the same way. */
typedef struct cb_manual_clock {
    double now;
} cb_manual_clock;

CB_API double cb_manual_clock_now(void *ud);

/* ---- random numbers ---------------------------------------------------- */

/* xoshiro256** state.  Owned by whoever embeds it; not thread-safe. */
typedef struct cb_rng {
    uint64_t s[4];
} cb_rng;

/* Seeds `r` from `seed` through splitmix64 (any seed, 0 included, is fine). */
CB_API void cb_rng_seed(cb_rng *r, uint64_t seed);
/* Next 64 random bits. */
CB_API uint64_t cb_rng_next(cb_rng *r);
/* Uniform double in [0, 1). */
CB_API double cb_rng_uniform(cb_rng *r);

/* ---- breaker ----------------------------------------------------------- */

typedef enum cb_state {
    CB_CLOSED = 0,
    CB_OPEN,
    CB_HALF_OPEN,
    CB_FORCED_OPEN,
    CB_DISABLED
} cb_state;

/* Names in enum order, NULL-terminated: "closed", "open", "half-open",
 * "forced-open", "disabled" (pybreaker's spelling). */
CB_API extern const char *const cb_state_names[];

/* Why a transition happened.  Names in cb_reason_names, same order. */
typedef enum cb_reason {
    CB_REASON_FAILURES = 0,     /* consecutive failures reached the threshold */
    CB_REASON_FAILURE_RATE,     /* failure rate over the window */
    CB_REASON_SLOW_CALL_RATE,   /* slow-call rate over the window */
    CB_REASON_RETRY_AFTER,      /* the classifier asked for a pause */
    CB_REASON_TIMEOUT,          /* open timeout elapsed: open -> half-open */
    CB_REASON_PROBE_FAILURE,    /* a half-open probe failed */
    CB_REASON_PROBE_SUCCESS,    /* enough half-open probes succeeded */
    CB_REASON_RESET,            /* cb_breaker_reset */
    CB_REASON_FORCE_OPEN,       /* cb_breaker_force_open */
    CB_REASON_DISABLE,          /* cb_breaker_disable */
    CB_REASON_PEER              /* a peer's state, via a store */
} cb_reason;

CB_API extern const char *const cb_reason_names[];

/* What allow() answers. */
typedef enum cb_verdict {
    CB_ALLOWED = 0,
    CB_REJECT_OPEN,         /* open, timeout not yet elapsed */
    CB_REJECT_FORCED_OPEN,  /* forced open by an operator or a peer */
    CB_REJECT_HALF_OPEN     /* half-open and every probe permit is out */
} cb_verdict;

CB_API extern const char *const cb_verdict_names[];

/* Outcome of one protected call. */
typedef enum cb_outcome {
    CB_SUCCESS = 0,
    CB_FAILURE,
    CB_IGNORE  /* neither: not counted (a cancelled call, a 404 ...) */
} cb_outcome;

CB_API extern const char *const cb_outcome_names[];

typedef struct cb_breaker cb_breaker;

/* Called after every state change, once the breaker is consistent again.
 * The callback may call any cb_breaker_* function on `b`, except free. */
typedef void (*cb_change_fn)(void *ud, cb_breaker *b, cb_state from,
                             cb_state to, cb_reason reason);

typedef struct cb_breaker_opts {
    const char *name;             /* copied; "" when NULL */
    uint32_t failure_threshold;   /* consecutive failures to open; 0 = off (5) */
    double reset_timeout;         /* seconds open before half-open (30) */
    uint32_t success_threshold;   /* half-open successes to close (2) */
    uint32_t half_open_max_calls; /* probe permits out at once (1) */
    double probe_timeout;         /* an unreported permit lapses after this;
                                     0 = reset_timeout (0) */
    double failure_rate;          /* trip at this failure rate; 0 = off (0) */
    double slow_call_ms;          /* a call this slow is slow; 0 = off (0) */
    double slow_call_rate;        /* trip at this slow-call rate (1) */
    uint32_t window;              /* count window: last N calls (100) */
    double window_seconds;        /* > 0: time window instead of count (0) */
    uint32_t min_calls;           /* rates count once this many calls (10) */
    double backoff_factor;        /* open timeout *= this per re-open (1) */
    double max_reset_timeout;     /* cap for the backed-off timeout; 0 = none */
    double jitter;                /* 0..1: timeout * (1 - jitter * U[0,1)) */
    uint64_t seed;                /* for jitter (0) */
    cb_clock clock;               /* copied; {NULL} = monotonic */
} cb_breaker_opts;

/* Fills `o` with the defaults above. */
CB_API void cb_breaker_opts_init(cb_breaker_opts *o);

/* Checks `o`.  Returns NULL when valid, else a static message that names the
 * offending option, e.g. "failure_rate must be in [0, 1]". */
CB_API const char *cb_breaker_opts_check(const cb_breaker_opts *o);

/* Creates a closed breaker.  Returns NULL when out of memory or when `o` is
 * invalid (check with cb_breaker_opts_check first).  The caller owns it. */
CB_API cb_breaker *cb_breaker_new(const cb_breaker_opts *o);

/* Frees `b`.  No-op on NULL. */
CB_API void cb_breaker_free(cb_breaker *b);

/* Replaces the options of a live breaker, keeping its state and counters
 * (a hot reload).  The count window is cleared when its size changes.
 * Returns CB_ERR (and changes nothing) when `o` is invalid or out of memory.
 * The name is kept. */
CB_API int cb_breaker_configure(cb_breaker *b, const cb_breaker_opts *o);

CB_API const char *cb_breaker_name(const cb_breaker *b);

/* Copies the options `b` runs with into `o` (o->name points into `b`). */
CB_API void cb_breaker_get_opts(const cb_breaker *b, cb_breaker_opts *o);

/* The time on `b`'s clock, in seconds. */
CB_API double cb_breaker_now(const cb_breaker *b);

/* Current state.  An open breaker whose timeout elapsed becomes half-open
 * here (and calls the change callback). */
CB_API cb_state cb_breaker_state(cb_breaker *b);

/* Asks for permission to call.  CB_ALLOWED, or why not.  A half-open
 * breaker hands out at most half_open_max_calls permits; a permit is given
 * back by the next record.  Does not allocate. */
CB_API cb_verdict cb_breaker_allow(cb_breaker *b);

/* Records the outcome of a call allowed earlier.  `ms` is its latency in
 * milliseconds (< 0: unknown); `retry_after` > 0 keeps the breaker open at
 * least that many seconds from now (opening it if closed or half-open),
 * capped at 1e9 s like every duration (infinity too).  Does not allocate. */
CB_API void cb_breaker_record(cb_breaker *b, cb_outcome outcome, double ms,
                              double retry_after);

/* Seconds until a call may be allowed again: 0 when closed, half-open with a
 * free permit, or disabled; the time left when open; INFINITY when forced
 * open. */
CB_API double cb_breaker_retry_after(cb_breaker *b);

/* The clock time until which `b` refuses calls, as things stand and without
 * reading the clock (so without moving an open breaker whose timeout has
 * passed): the end of the open timeout when open, when the permits out lapse
 * when half-open with none free, INFINITY when forced open, 0 otherwise.
 * cb_breaker_retry_after is this minus now, once refreshed. */
CB_API double cb_breaker_refused_until(const cb_breaker *b);

/* Operator controls.  reset: closed, counters and back-off cleared.
 * force_open: rejects everything until reset.  disable: allows everything and
 * records nothing until reset. */
CB_API void cb_breaker_reset(cb_breaker *b);
CB_API void cb_breaker_force_open(cb_breaker *b);
CB_API void cb_breaker_disable(cb_breaker *b);

/* Sets the change callback (NULL to remove).  Returns CB_ERR, and changes
 * nothing, when out of memory (a breaker's first callback or store costs
 * one small allocation). */
CB_API int cb_breaker_on_change(cb_breaker *b, cb_change_fn fn, void *ud);

typedef struct cb_breaker_stats {
    cb_state state;
    uint64_t calls;          /* recorded outcomes, ignored ones excluded */
    uint64_t successes;
    uint64_t failures;
    uint64_t slow_calls;
    uint64_t ignored;
    uint64_t rejections;
    uint64_t opens;          /* times it went open (forced excluded) */
    uint32_t consecutive_failures;
    uint32_t half_open_successes;
    uint32_t permits_out;    /* half-open probe permits not yet reported */
    uint32_t window_calls;   /* calls, failures, slow calls in the window */
    uint32_t window_failures;
    uint32_t window_slow;
    double failure_rate;     /* window_failures / window_calls (0 if empty) */
    double slow_call_rate;
    double open_timeout;     /* the current (backed-off) open timeout, s */
    double retry_after;      /* as cb_breaker_retry_after */
    double last_change;      /* clock time of the last transition */
} cb_breaker_stats;

/* Fills `st`.  May move open to half-open, as cb_breaker_state. */
CB_API void cb_breaker_get_stats(cb_breaker *b, cb_breaker_stats *st);

/* ---- registry ---------------------------------------------------------- */

/* A map of breakers keyed by (tenant, key): one breaker per session, so one
 * session's failures never trip another's.  Breakers made
 * from the defaults share one copy of the options, so an entry costs its
 * breaker state, its key bytes and a few links.
 *
 * Bounded work per call: the hash table grows incrementally (a bucket per
 * call, as Redis's dict), idle breakers are swept every `cleanup_every`
 * calls a few at a time, and the caps search a bounded number of entries
 * (the tenant cap only the tenant's own, on its own LRU list).
 *
 * Thread safety: none.  A registry and its breakers belong to one thread at
 * a time. */

typedef struct cb_registry cb_registry;

#define CB_REGISTRY_MAX_KEY 1024  /* bytes, for a tenant and for a key */

typedef struct cb_registry_opts {
    cb_breaker_opts defaults;  /* options of new breakers; name and clock unused */
    size_t max_entries;        /* hard cap; 0 = none (1000) */
    size_t max_per_tenant;     /* cap per tenant; 0 = none (0).  Set, each
                                  tenant keeps its own LRU lists: 24 bytes
                                  more per entry, 48 per tenant */
    double idle_ttl;           /* a closed breaker not got for this long is
                                  swept; INFINITY = never (600 s) */
    double unused_ttl;         /* the same for one that never recorded an
                                  outcome; 0 = idle_ttl, capped at it (0) */
    uint32_t cleanup_every;    /* a sweep step every N calls; 0 = only
                                  cb_registry_cleanup (100) */
    uint64_t seed;             /* hash seed; 0 = from /dev/urandom (0) */
    cb_clock clock;            /* the registry's and its breakers' clock */
} cb_registry_opts;

/* Why cb_registry_get returned NULL. */
typedef enum cb_registry_status {
    CB_REG_OK = 0,
    CB_REG_FULL,         /* max_entries reached, nothing evictable found */
    CB_REG_TENANT_FULL,  /* the tenant is at max_per_tenant, none of its own
                            breakers could be recycled */
    CB_REG_KEY_TOO_LONG, /* tenant or key longer than CB_REGISTRY_MAX_KEY */
    CB_REG_BAD_OPTS,     /* the per-key options are invalid */
    CB_REG_NOMEM
} cb_registry_status;

/* Called with each breaker just before the registry frees it (removed,
 * evicted, swept, or the registry freed).  It must not call the registry;
 * it may read `b`.  Bindings use it to invalidate their handles. */
typedef void (*cb_registry_remove_fn)(void *ud, cb_breaker *b);

/* Fills `o` with the defaults above (and cb_breaker_opts_init's). */
CB_API void cb_registry_opts_init(cb_registry_opts *o);

/* Returns NULL when `o` is valid, else a static message naming the offending
 * option ("idle_ttl must be > 0"); breaker defaults are checked too. */
CB_API const char *cb_registry_opts_check(const cb_registry_opts *o);

/* Creates an empty registry.  Returns NULL when out of memory or when `o` is
 * invalid.  The caller owns it. */
CB_API cb_registry *cb_registry_new(const cb_registry_opts *o);

/* Frees the registry and every breaker in it (calling the remove hook for
 * each).  No-op on NULL. */
CB_API void cb_registry_free(cb_registry *r);

/* Copies the options `r` was made with into `o` (defaults.name is NULL). */
CB_API void cb_registry_get_opts(const cb_registry *r, cb_registry_opts *o);

/* Sets the remove hook (NULL to remove it). */
CB_API void cb_registry_on_remove(cb_registry *r, cb_registry_remove_fn fn, void *ud);

/* Returns the breaker of (tenant, key), creating it closed when missing, and
 * marks it used now.  Tenant and key are byte strings of tlen and klen bytes
 * (zeros allowed).  `o` (NULL: the registry's defaults) is used only when
 * the breaker is created; its name and clock are ignored.  Creating may
 * evict the least recently used closed breaker (never an open, half-open or
 * forced-open one).  A tenant at max_per_tenant recycles its own least
 * recently used closed breaker, found on its own list whatever the other
 * tenants hold, and never takes another tenant's; it is refused
 * (CB_REG_TENANT_FULL) when none of its breakers is closed.  Each cap looks
 * at no more than 64 breakers a call and sets aside the open ones it finds,
 * so the next call starts past them: behind more than 64 tripped ones, a
 * closed breaker may be found only by a later call.  On NULL `*why` (if not NULL) tells why and nothing was
 * created.  The breaker belongs to the registry: valid until it is removed,
 * evicted, swept or the registry freed (see cb_registry_on_remove).  Its
 * name is `key` (up to its first zero byte). */
CB_API cb_breaker *cb_registry_get(cb_registry *r, const void *tenant, size_t tlen,
                                   const void *key, size_t klen,
                                   const cb_breaker_opts *o, cb_registry_status *why);

/* Marks `b`, a breaker of `r`, used now and does a get's housekeeping, as a
 * get that found it would: for bindings that cache their lookups.  `b` must
 * be in `r` (removed breakers are told to the remove hook). */
CB_API void cb_registry_touch(cb_registry *r, cb_breaker *b);

/* The breaker of (tenant, key) or NULL, without creating it, marking it used
 * or doing any housekeeping. */
CB_API cb_breaker *cb_registry_peek(cb_registry *r, const void *tenant, size_t tlen,
                                    const void *key, size_t klen);

/* Removes and frees the breaker of (tenant, key).  CB_OK when it was there,
 * CB_ERR when not. */
CB_API int cb_registry_remove(cb_registry *r, const void *tenant, size_t tlen,
                              const void *key, size_t klen);

/* Number of breakers held. */
CB_API size_t cb_registry_size(const cb_registry *r);

/* Bytes the registry has allocated: its entries (breaker, key, links), its
 * tenant records and its hash tables, as requested from malloc (malloc's
 * own overhead is not counted).  What a binding reports to its garbage
 * collector as the memory behind its handles. */
CB_API size_t cb_registry_bytes(const cb_registry *r);

/* A full sweep: removes every closed breaker idle for idle_ttl (unused_ttl
 * when it never recorded an outcome).  Returns how many were removed.  Takes
 * time in proportion to the size; the automatic sweep is incremental. */
CB_API size_t cb_registry_cleanup(cb_registry *r);

/* Calls fn for each breaker, least recently used first.  fn must not change
 * the registry (get, remove, cleanup); it may use the breaker.  Iteration
 * stops when fn returns non-zero. */
typedef int (*cb_registry_each_fn)(void *ud, const char *tenant, size_t tlen,
                                   const char *key, size_t klen, cb_breaker *b);
CB_API void cb_registry_foreach(cb_registry *r, cb_registry_each_fn fn, void *ud);

typedef struct cb_registry_stats {
    size_t size;               /* breakers held */
    size_t tenants;            /* tenants with at least one */
    size_t pinned;             /* found open/half-open by a scan, set aside */
    size_t buckets;            /* hash table size (both tables while growing) */
    uint64_t hits;             /* gets that found their breaker */
    uint64_t created;
    uint64_t evicted;          /* by max_entries or max_per_tenant */
    uint64_t swept;            /* removed as idle (automatic and full sweeps) */
    uint64_t removed;          /* by cb_registry_remove */
    uint64_t refused_full;     /* gets refused: CB_REG_FULL */
    uint64_t refused_tenant;   /* gets refused: CB_REG_TENANT_FULL */
    uint64_t sweeps;           /* incremental sweep steps run */
} cb_registry_stats;

CB_API void cb_registry_get_stats(const cb_registry *r, cb_registry_stats *st);


/* ---- bandit ------------------------------------------------------------ */

/* Beta-Bernoulli Thompson sampling over named arms (to pick the provider
 * most likely to answer).  Each arm's posterior is Beta(prior_alpha + S, prior_beta + F)
 * where S and F are the (decayed) sums of rewards and of 1 - reward.
 * Randomness comes only from the bandit's own cb_rng.  update, sample and
 * select never allocate.  Not thread-safe: one thread at a time. */

#define CB_BANDIT_MAX_ARMS 256

typedef struct cb_bandit cb_bandit;

typedef struct cb_bandit_opts {
    double prior_alpha;  /* Beta prior, both in [0.001, 1e6] (1) */
    double prior_beta;   /* (1) */
    double decay;        /* per-update discount in (0, 1]: at every update
                            every arm's evidence (S, F) is multiplied by it
                            before the reward is added; 1 = off (1) */
    double half_life;    /* seconds for every arm's evidence to halve, read
                            on `clock`; 0 = off (0).  Composes with decay. */
    uint64_t seed;       /* seeds the generator (0) */
    cb_clock clock;      /* copied; {NULL} = monotonic; used by half_life */
} cb_bandit_opts;

/* Fills `o` with the defaults above. */
CB_API void cb_bandit_opts_init(cb_bandit_opts *o);

/* Checks `o`.  Returns NULL when valid, else a static message naming the
 * offending option, e.g. "decay must be in (0, 1]". */
CB_API const char *cb_bandit_opts_check(const cb_bandit_opts *o);

/* Creates a bandit with no arms.  Returns NULL when out of memory or when `o`
 * is invalid (check with cb_bandit_opts_check first).  The caller owns it. */
CB_API cb_bandit *cb_bandit_new(const cb_bandit_opts *o);

/* Frees `b` and its arm names.  No-op on NULL. */
CB_API void cb_bandit_free(cb_bandit *b);

/* Replaces priors, decay, half-life and clock, keeping arms and evidence (a
 * hot reload; the generator is not reseeded).  Returns CB_ERR and changes
 * nothing when `o` is invalid. */
CB_API int cb_bandit_configure(cb_bandit *b, const cb_bandit_opts *o);

/* Copies the options `b` runs with into `o`. */
CB_API void cb_bandit_get_opts(const cb_bandit *b, cb_bandit_opts *o);

/* Adds an arm named `name` (copied) with no evidence.  Returns its index
 * (0, 1, ... in order of addition), or CB_ERR when `name` is NULL or empty,
 * already an arm, CB_BANDIT_MAX_ARMS arms exist, or out of memory; nothing
 * is changed then.  May allocate. */
CB_API int cb_bandit_add_arm(cb_bandit *b, const char *name);

/* The index of the arm named `name`, or CB_ERR.  Linear in the arm count. */
CB_API int cb_bandit_find_arm(const cb_bandit *b, const char *name);

/* Number of arms. */
CB_API int cb_bandit_arm_count(const cb_bandit *b);

/* The name of arm `arm` (owned by `b`, valid until it is freed), or NULL
 * when there is no such arm. */
CB_API const char *cb_bandit_arm_name(const cb_bandit *b, int arm);

/* Records a reward in [0, 1] for `arm` (1 = success, 0 = failure, between:
 * a partial success).  Applies decay first.  Returns CB_ERR, changing
 * nothing, when `arm` does not exist or `reward` is NaN or outside [0, 1]. */
CB_API int cb_bandit_update(cb_bandit *b, int arm, double reward);

/* One draw from `arm`'s posterior Beta distribution, in [0, 1].  Returns NaN
 * when `arm` does not exist.  Advances the generator; not counted as a
 * selection. */
CB_API double cb_bandit_sample(cb_bandit *b, int arm);

/* Thompson sampling: draws once from the posterior of each arm in
 * `eligible[0..n)` (NULL: all arms, `n` ignored) and returns the index of
 * the largest draw (the first on a tie), counting it as a selection.  An
 * arm listed twice is drawn once.  Returns CB_ERR, drawing nothing, when
 * there is no eligible arm or an index does not exist. */
CB_API int cb_bandit_select(cb_bandit *b, const int *eligible, size_t n);

/* Shrinks `arm`'s evidence (S, F) by `factor` in [0, 1]: 0 forgets it all
 * (the posterior is the prior again), 1 changes nothing.  Used when a
 * provider's breaker opens, so stale wins do not route traffic back into an
 * outage.  Returns CB_ERR when `arm` does not exist or `factor` is bad. */
CB_API int cb_bandit_discount(cb_bandit *b, int arm, double factor);

/* Forgets `arm`'s evidence and zeroes its counters.  CB_ERR when there is
 * no such arm. */
CB_API int cb_bandit_reset(cb_bandit *b, int arm);

/* cb_bandit_reset on every arm. */
CB_API void cb_bandit_reset_all(cb_bandit *b);

typedef struct cb_bandit_arm_stats {
    const char *name;     /* owned by the bandit */
    double alpha, beta;   /* the posterior now: prior + decayed evidence */
    double mean;          /* alpha / (alpha + beta) */
    uint64_t updates;     /* rewards recorded */
    uint64_t selections;  /* times select chose it */
    double rewards;       /* sum of the rewards recorded, not decayed */
} cb_bandit_arm_stats;

/* Fills `st` for `arm`.  Returns CB_ERR when there is no such arm. */
CB_API int cb_bandit_get_stats(cb_bandit *b, int arm, cb_bandit_arm_stats *st);

/* ---- peers ------------------------------------------------------------- */

/* A breaker mirrored elsewhere (the Redis store of cbreaker_redis.h, or any
 * other transport) hears its peers' states through this. */

/* What a peer says about a breaker (a channel message or its keys). */
typedef enum cb_peer_state {
    CB_PEER_OPEN = 0,      /* opened: open for `open_for`, the later deadline wins */
    CB_PEER_FORCED_OPEN,   /* forced open */
    CB_PEER_CLOSED,        /* closed by a probe: never clears a forced-open */
    CB_PEER_RECOVERED      /* reset by an operator: clears everything */
} cb_peer_state;

/* Applies a peer's state to `b` through the normal transitions (on_change
 * sees reason CB_REASON_PEER).  `open_for` (seconds, CB_PEER_OPEN only; < 0:
 * b's own open timeout).  A disabled breaker ignores peers.  Does not
 * allocate; not thread-safe (as any cb_breaker_* call). */
CB_API void cb_breaker_apply_peer(cb_breaker *b, cb_peer_state peer, double open_for);

#ifdef __cplusplus
}
#endif

#endif /* CBREAKER_H */

/*
 * cbreaker_pool.h -- a provider pool: one breaker per provider plus a
 * Thompson-sampling bandit over them, addressed by index, so routing a
 * request is one call ("which provider now, or how long until one is
 * available") and recording its outcome another.
 *
 * Conventions are cbreaker.h's.  The pool owns its breakers and its bandit;
 * both stay reachable (cb_pool_breaker, cb_pool_bandit) for what the pool
 * does not wrap: stats, operator controls, a store, a change callback, a
 * hot reload.  pick, acquire and record never allocate and do work bounded
 * by the number of providers.
 *
 * A breaker's change callback may run inside pick, acquire and record (an
 * open timeout ending, a probe's outcome); it may call the pool, but must
 * not free it.
 *
 * Thread safety: none.  A pool, its breakers and its bandit belong to one
 * thread at a time.
 */
#ifndef CBREAKER_POOL_H
#define CBREAKER_POOL_H

#include "cbreaker.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Exclusion sets are one uint64_t: bit i stands for provider i. */
#define CB_POOL_MAX_PROVIDERS 64

typedef struct cb_pool cb_pool;

/* How a provider is chosen among those that may take a call. */
typedef enum cb_pool_strategy {
    CB_POOL_THOMPSON = 0,  /* Thompson sampling on the bandit */
    CB_POOL_ROUND_ROBIN    /* in turn over the current candidates; no learning */
} cb_pool_strategy;

/* Names in enum order, NULL-terminated: "thompson", "round_robin". */
CB_API extern const char *const cb_pool_strategy_names[];

typedef struct cb_pool_opts {
    cb_pool_strategy strategy;  /* (CB_POOL_THOMPSON) */
    cb_bandit_opts bandit;      /* priors, decay, half-life, seed, clock of the
                                   bandit (cb_bandit_opts_init's) */
    double discount;            /* in [0, 1]: a provider's evidence is
                                   multiplied by this each time its breaker
                                   opens or is forced open, so wins from
                                   before an outage do not route traffic back
                                   into it; 1 = off (0.5) */
} cb_pool_opts;

/* Fills `o` with the defaults above. */
CB_API void cb_pool_opts_init(cb_pool_opts *o);

/* Checks `o`.  Returns NULL when valid, else a static message naming the
 * offending option, e.g. "discount must be in [0, 1]". */
CB_API const char *cb_pool_opts_check(const cb_pool_opts *o);

/* Creates a pool with no providers.  Returns NULL when out of memory or when
 * `o` is invalid (check with cb_pool_opts_check first).  The caller owns it. */
CB_API cb_pool *cb_pool_new(const cb_pool_opts *o);

/* Frees `p`, its breakers and its bandit.  No-op on NULL. */
CB_API void cb_pool_free(cb_pool *p);

/* Replaces the discount and the bandit's priors, decay, half-life and clock,
 * keeping providers, breaker states and evidence (a hot reload; the
 * generator is not reseeded, bandit.seed is ignored).  Returns CB_ERR, and
 * changes nothing, when `o` is invalid or names another strategy. */
CB_API int cb_pool_configure(cb_pool *p, const cb_pool_opts *o);

/* Copies the options `p` runs with into `o`. */
CB_API void cb_pool_get_opts(const cb_pool *p, cb_pool_opts *o);

/* Adds a provider: a closed breaker made from `o` and a bandit arm, both
 * named o->name.  Returns its index (0, 1, ... in order of addition), or
 * CB_ERR when `o` is invalid, its name is NULL, empty or already a
 * provider's, CB_POOL_MAX_PROVIDERS exist, or out of memory; nothing is
 * changed then.  May allocate. */
CB_API int cb_pool_add(cb_pool *p, const cb_breaker_opts *o);

/* Number of providers. */
CB_API int cb_pool_size(const cb_pool *p);

/* The index of the provider named `name`, or CB_ERR.  Linear in the size. */
CB_API int cb_pool_find(const cb_pool *p, const char *name);

/* Provider `i`'s breaker, or NULL when there is no such provider.  Owned by
 * the pool, valid until cb_pool_free.  Any cb_breaker_* call may be made on
 * it except cb_breaker_free.  Its openings are discounted whatever caused
 * them (a record, an operator, a peer through a store): those made outside
 * the pool at its next pick, acquire or record. */
CB_API cb_breaker *cb_pool_breaker(cb_pool *p, int i);

/* The pool's bandit (arm i is provider i).  Owned by the pool, valid until
 * cb_pool_free.  Use it for stats, reset and configure; adding arms to it or
 * freeing it breaks the pool. */
CB_API cb_bandit *cb_pool_bandit(cb_pool *p);

/* Chooses a provider that may take a call now, without taking a permit:
 * among those not in `excluded` (bit i: provider i) whose breaker would
 * allow a call (cb_breaker_retry_after is 0: closed, disabled, or half-open
 * with a probe permit free), one by the strategy; a lone candidate is
 * returned without a draw.  Returns its index.  When there is none, returns
 * CB_ERR and sets `*retry_after` (if not NULL) to the seconds until the
 * soonest of the providers not excluded may allow a call: INFINITY when
 * each is forced open or excluded, or the pool is empty.  May move open
 * breakers to half-open (their change callbacks run).  Does not allocate. */
CB_API int cb_pool_pick(cb_pool *p, uint64_t excluded, double *retry_after);

/* cb_pool_pick, then cb_breaker_allow on the chosen provider: returns the
 * index of a provider whose permit is now taken (the caller owes it one
 * cb_pool_record).  A provider that refuses (a store withholding a probe
 * lease) is left out and the choice made again, at most once per provider.
 * `*tried` (NULL: none) is the exclusion set on entry and gains every
 * provider chosen here, so a fallback passes it to the next acquire.
 * When none allows a call, returns CB_ERR and sets `*retry_after` as
 * cb_pool_pick does.  Does not allocate. */
CB_API int cb_pool_acquire(cb_pool *p, uint64_t *tried, double *retry_after);

/* Records the outcome of a call to provider `i`: a bandit update (1 for a
 * success, 0 for a failure, nothing for CB_IGNORE; Thompson only), then
 * cb_breaker_record with `ms` and `retry_after` as there, then the discount
 * if the breaker opened.  The update comes first, so a failure that opens
 * the breaker counts in full before the discount.  Returns CB_ERR, changing
 * nothing, when there is no provider `i` or `outcome` is not a cb_outcome.
 * Does not allocate. */
CB_API int cb_pool_record(cb_pool *p, int i, cb_outcome outcome, double ms,
                          double retry_after);

typedef struct cb_pool_stats {
    uint64_t picked;     /* times pick or acquire chose it */
    uint64_t acquired;   /* permits acquire took on it */
    uint64_t refused;    /* chosen by acquire, refused by its breaker */
    uint64_t discounts;  /* openings seen, each shrinking its evidence */
} cb_pool_stats;

/* Fills `st` for provider `i`.  Returns CB_ERR when there is no such
 * provider. */
CB_API int cb_pool_get_stats(const cb_pool *p, int i, cb_pool_stats *st);

#ifdef __cplusplus
}
#endif

#endif /* CBREAKER_POOL_H */

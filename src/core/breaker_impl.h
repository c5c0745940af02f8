/* breaker_impl.h -- the breaker's insides, shared with the parts of the core
 * that embed breakers (the registry, the store).  Never installed. */
#ifndef CB_BREAKER_IMPL_H
#define CB_BREAKER_IMPL_H

#include "cbreaker.h"
#include "window.h"

/* Validated options, shared by every breaker made from them (a registry's
 * breakers share one), so a breaker costs only its state. */
typedef struct cb_conf {
    cb_breaker_opts o;  /* o.name is not used */
    unsigned refs;
    int tracks_window;  /* a failure-rate or slow-call trip is on */
    cb_rng rng;         /* jitter */
} cb_conf;

/* Returns a conf with one reference, or NULL when `o` is invalid or out of
 * memory. */
cb_conf *cb_conf_new(const cb_breaker_opts *o);
cb_conf *cb_conf_ref(cb_conf *c);
void cb_conf_unref(cb_conf *c);

/* What a store (or anything that mirrors breakers elsewhere) is told, apart
 * from the user's on_change callback.  Any member may be NULL.  The hooks
 * must not change the breaker's state, except `tick`, which runs before
 * allow/record look at it. */
typedef struct cb_breaker_hook {
    /* every transition, before the on_change callback */
    void (*change)(void *ud, cb_breaker *b, cb_state from, cb_state to, cb_reason why);
    /* every cb_breaker_reset, also when already closed: peers must hear of it */
    void (*reset)(void *ud, cb_breaker *b);
    /* every outcome recorded, after the local state machine ran */
    void (*record)(void *ud, cb_breaker *b, cb_outcome outcome);
    /* half-open, about to hand out a probe permit: 0 refuses it */
    int (*admit)(void *ud, cb_breaker *b);
    /* every CB_HOOK_TICK allow calls: a cadence for polling */
    void (*tick)(void *ud, cb_breaker *b);
    /* the breaker is being destroyed: forget it */
    void (*gone)(void *ud, cb_breaker *b);
} cb_breaker_hook;

#define CB_HOOK_TICK 64u  /* a power of two */

/* The cap on every duration, seconds (~31 years): what a breaker keeps and
 * what a store publishes, so a peer never reads an unbounded one. */
#define CB_MAX_TIMEOUT 1e9

/* What is attached to a breaker: the user's change callback and a store's
 * hook.  Allocated on first use, so the breakers of a registry that have
 * neither pay one pointer. */
typedef struct cb_breaker_ext {
    cb_change_fn on_change;
    void *change_ud;
    const cb_breaker_hook *hook;  /* a store's, or NULL */
    void *hook_ud;
    uint32_t ops;                 /* allow calls, for hook->tick */
} cb_breaker_ext;

struct cb_breaker {  /* ordered to pack: a registry holds a million of these */
    cb_conf *conf;
    char *name;
    cb_window *win;         /* NULL unless conf->tracks_window */
    cb_breaker_ext *ext;    /* NULL until a callback or a hook is set */
    double open_until;
    double permit_expiry;   /* permits out lapse at this time */
    double open_timeout;    /* current back-off timeout */
    double last_change;
    uint64_t successes, failures, slow_calls, ignored, rejections, opens;
    uint32_t consecutive_failures;
    uint32_t half_open_successes;
    uint32_t permits_out;
    uint32_t reopens;       /* opens since the last close, for back-off */
    uint32_t forced_opens;  /* times forced open (wraps), for a pool to notice */
    uint8_t state;          /* cb_state */
    uint8_t owns_name;
    uint8_t hook_records;   /* ext->hook->record is set: one flag on the hot path */
};

/* The hook set on `b` and its user data, or NULL. */
static inline const cb_breaker_hook *cb_breaker_hook_of(const cb_breaker *b) {
    return b->ext ? b->ext->hook : NULL;
}

static inline void *cb_breaker_hook_ud(const cb_breaker *b) {
    return b->ext ? b->ext->hook_ud : NULL;
}

/* Initialises a breaker in place with a new reference to `conf`.  `name` is
 * taken as is; it is freed by cb_breaker_destroy only when owns_name.
 * Returns CB_ERR when out of memory (nothing to destroy then). */
int cb_breaker_init(cb_breaker *b, cb_conf *conf, char *name, int owns_name);
/* Releases what cb_breaker_init acquired; `b` itself is the caller's. */
void cb_breaker_destroy(cb_breaker *b);
/* Points `b` at another conf (a hot reload), keeping its state. */
int cb_breaker_set_conf(cb_breaker *b, cb_conf *conf);
/* Sets the hook (NULL to remove).  Returns CB_ERR when another one is set
 * or out of memory. */
int cb_breaker_set_hook(cb_breaker *b, const cb_breaker_hook *hook, void *ud);
/* allow calls seen since a hook was set (the tick count). */
uint32_t cb_breaker_ops(const cb_breaker *b);

#endif

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

struct cb_breaker {  /* ordered to pack: a registry holds a million of these */
    cb_conf *conf;
    char *name;
    cb_window *win;         /* NULL unless conf->tracks_window */
    cb_change_fn on_change;
    void *change_ud;
    double open_until;
    double permit_expiry;   /* permits out lapse at this time */
    double open_timeout;    /* current back-off timeout */
    double last_change;
    uint64_t successes, failures;
    uint32_t slow_calls, ignored, rejections, opens;  /* secondary counters */
    uint32_t consecutive_failures;
    uint32_t half_open_successes;
    uint32_t permits_out;
    uint32_t reopens;       /* opens since the last close, for back-off */
    uint8_t state;          /* cb_state */
    uint8_t owns_name;
};

/* Initialises a breaker in place with a new reference to `conf`.  `name` is
 * taken as is; it is freed by cb_breaker_destroy only when owns_name.
 * Returns CB_ERR when out of memory (nothing to destroy then). */
int cb_breaker_init(cb_breaker *b, cb_conf *conf, char *name, int owns_name);
/* Releases what cb_breaker_init acquired; `b` itself is the caller's. */
void cb_breaker_destroy(cb_breaker *b);
/* Points `b` at another conf (a hot reload), keeping its state. */
int cb_breaker_set_conf(cb_breaker *b, cb_conf *conf);

#endif

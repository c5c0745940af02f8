/* breaker.c -- the circuit-breaker state machine.
 *
 * closed --(failures / rates / retry-after)--> open --(timeout)--> half-open
 * half-open --(success_threshold successes)--> closed
 * half-open --(a failure)--> open, with the timeout backed off
 * forced-open and disabled are left only by reset.
 *
 * allow() and record() never allocate, and read the clock only when the
 * state or a time window needs it. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "breaker_impl.h"
#include "clock.h"
#include "optspec.h"

const char *const cb_state_names[] = {
    "closed", "open", "half-open", "forced-open", "disabled", NULL};

const char *const cb_reason_names[] = {
    "failures", "failure_rate", "slow_call_rate", "retry_after", "timeout",
    "probe_failure", "probe_success", "reset", "force_open", "disable", "peer",
    NULL};

const char *const cb_verdict_names[] = {
    "allowed", "open", "forced-open", "half-open", NULL};

const char *const cb_outcome_names[] = {"success", "failure", "ignore", NULL};

#define CB_MAX_WINDOW 1000000  /* calls or seconds */

void cb_breaker_opts_init(cb_breaker_opts *o) {
    memset(o, 0, sizeof *o);
    o->failure_threshold = 5;  /* pybreaker's shape: 5 failures, 30 s, 2 successes */
    o->reset_timeout = 30;
    o->success_threshold = 2;
    o->half_open_max_calls = 1;
    o->slow_call_rate = 1;
    o->window = 100;
    o->min_calls = 10;
    o->backoff_factor = 1;
}

const char *cb_breaker_opts_check(const cb_breaker_opts *o) {
    return cb_optschema_check(&cb_breaker_schema, o);  /* ranges: optspec.c */
}

/* ---- conf ----------------------------------------------------------------- */

cb_conf *cb_conf_new(const cb_breaker_opts *o) {
    if (cb_breaker_opts_check(o)) return NULL;
    cb_conf *c = malloc(sizeof *c);
    if (!c) return NULL;
    c->o = *o;
    c->o.name = NULL;
    c->refs = 1;
    c->tracks_window = o->failure_rate > 0 || o->slow_call_ms > 0;
    cb_rng_seed(&c->rng, o->seed);
    return c;
}

cb_conf *cb_conf_ref(cb_conf *c) {
    c->refs++;
    return c;
}

void cb_conf_unref(cb_conf *c) {
    if (c && --c->refs == 0) free(c);
}

/* ---- life cycle ------------------------------------------------------------- */

static double now_of(const cb_breaker *b) {
    return cb_clock_read(&b->conf->o.clock);
}

/* A window of the conf's shape, or the one `b` has when it already fits. */
static int fit_window(cb_breaker *b, const cb_conf *c) {
    const cb_breaker_opts *o = &c->o;
    if (!c->tracks_window) {
        cb_window_free(b->win);
        b->win = NULL;
        return CB_OK;
    }
    if (b->win) {
        int same = o->window_seconds > 0
            ? b->win->buckets && b->win->bucket_width * b->win->size == o->window_seconds
            : b->win->slots && b->win->size == o->window;
        if (same) return CB_OK;
    }
    cb_window *w = cb_window_new(o->window, o->window_seconds);
    if (!w) return CB_ERR;
    cb_window_free(b->win);
    b->win = w;
    return CB_OK;
}

int cb_breaker_init(cb_breaker *b, cb_conf *conf, char *name, int owns_name) {
    memset(b, 0, sizeof *b);
    if (fit_window(b, conf) != CB_OK) return CB_ERR;
    b->conf = cb_conf_ref(conf);
    b->name = name;
    b->owns_name = (uint8_t)(owns_name != 0);
    b->state = CB_CLOSED;
    b->open_timeout = conf->o.reset_timeout;
    return CB_OK;
}

void cb_breaker_destroy(cb_breaker *b) {
    const cb_breaker_hook *h = cb_breaker_hook_of(b);
    if (h && h->gone) h->gone(b->ext->hook_ud, b);  /* a store forgets it */
    free(b->ext);
    b->ext = NULL;
    b->hook_records = 0;
    cb_window_free(b->win);
    b->win = NULL;
    cb_conf_unref(b->conf);
    b->conf = NULL;
    if (b->owns_name) free(b->name);
    b->name = NULL;
}

int cb_breaker_set_conf(cb_breaker *b, cb_conf *conf) {
    if (fit_window(b, conf) != CB_OK) return CB_ERR;
    cb_conf *old = b->conf;
    b->conf = cb_conf_ref(conf);
    cb_conf_unref(old);
    if (b->state == CB_CLOSED && b->reopens == 0)
        b->open_timeout = conf->o.reset_timeout;
    return CB_OK;
}

cb_breaker *cb_breaker_new(const cb_breaker_opts *o) {
    cb_conf *c = cb_conf_new(o);
    if (!c) return NULL;
    const char *src = o->name ? o->name : "";
    size_t len = strlen(src);
    char *name = malloc(len + 1);
    cb_breaker *b = malloc(sizeof *b);
    if (!name || !b || cb_breaker_init(b, c, name, 1) != CB_OK) {
        free(name);
        free(b);
        cb_conf_unref(c);
        return NULL;
    }
    memcpy(name, src, len + 1);
    cb_conf_unref(c);  /* the breaker holds its own reference */
    return b;
}

void cb_breaker_free(cb_breaker *b) {
    if (!b) return;
    cb_breaker_destroy(b);
    free(b);
}

int cb_breaker_configure(cb_breaker *b, const cb_breaker_opts *o) {
    cb_conf *c = cb_conf_new(o);
    if (!c) return CB_ERR;
    int r = cb_breaker_set_conf(b, c);
    cb_conf_unref(c);
    return r;
}

const char *cb_breaker_name(const cb_breaker *b) {
    return b->name;
}

void cb_breaker_get_opts(const cb_breaker *b, cb_breaker_opts *o) {
    *o = b->conf->o;
    o->name = b->name;
}

double cb_breaker_now(const cb_breaker *b) {
    return now_of(b);
}

/* b->ext, allocated when `needed` and missing; NULL when out of memory. */
static cb_breaker_ext *ext_of(cb_breaker *b, int needed) {
    if (!b->ext && needed) b->ext = calloc(1, sizeof *b->ext);
    return b->ext;
}

int cb_breaker_on_change(cb_breaker *b, cb_change_fn fn, void *ud) {
    cb_breaker_ext *x = ext_of(b, fn != NULL);
    if (!x) return fn ? CB_ERR : CB_OK;
    x->on_change = fn;
    x->change_ud = fn ? ud : NULL;
    return CB_OK;
}

int cb_breaker_set_hook(cb_breaker *b, const cb_breaker_hook *hook, void *ud) {
    const cb_breaker_hook *old = cb_breaker_hook_of(b);
    if (hook && old && (old != hook || b->ext->hook_ud != ud)) return CB_ERR;
    cb_breaker_ext *x = ext_of(b, hook != NULL);
    if (!x) return hook ? CB_ERR : CB_OK;
    x->hook = hook;
    x->hook_ud = hook ? ud : NULL;
    b->hook_records = (uint8_t)(hook && hook->record);
    return CB_OK;
}

uint32_t cb_breaker_ops(const cb_breaker *b) {
    return b->ext ? b->ext->ops : 0;
}

/* A store polls its peers' messages every CB_HOOK_TICK allow calls
 * (store_redis.c); one increment and a mask when a hook is set. */
static inline void tick(cb_breaker *b) {
    cb_breaker_ext *x = b->ext;
    if (x && x->hook && __builtin_expect((++x->ops & (CB_HOOK_TICK - 1)) == 0, 0) &&
        x->hook->tick)
        x->hook->tick(x->hook_ud, b);
}

/* ---- transitions ------------------------------------------------------------ */

/* Moves to `to` and tells the callback.  The callback runs last: whatever it
 * does to the breaker, callers must not touch the state after this. */
static void transition(cb_breaker *b, cb_state to, cb_reason why, double now) {
    cb_state from = (cb_state)b->state;
    b->state = (uint8_t)to;
    b->last_change = now;
    b->consecutive_failures = 0;
    b->half_open_successes = 0;
    b->permits_out = 0;
    if (to == CB_CLOSED) {
        b->reopens = 0;
        b->open_timeout = b->conf->o.reset_timeout;
        if (b->win) cb_window_clear(b->win);
    }
    if (to == CB_OPEN) b->opens++;
    if (to == CB_FORCED_OPEN) b->forced_opens++;
    cb_breaker_ext *x = b->ext;
    if (!x) return;
    if (x->hook && x->hook->change) x->hook->change(x->hook_ud, b, from, to, why);
    if (x->on_change) x->on_change(x->change_ud, b, from, to, why);
}

/* The open timeout for the next opening: exponential back-off over the
 * openings since the last close, capped, then jittered downwards so the cap
 * stays a cap. */
static double next_timeout(cb_breaker *b) {
    cb_conf *c = b->conf;
    const cb_breaker_opts *o = &c->o;
    double t = o->reset_timeout;
    if (o->backoff_factor > 1 && b->reopens > 0)
        t *= pow(o->backoff_factor, (double)b->reopens);
    double cap = o->max_reset_timeout > 0 ? o->max_reset_timeout : CB_MAX_TIMEOUT;
    if (!(t <= cap)) t = cap;
    if (o->jitter > 0) t *= 1 - o->jitter * cb_rng_uniform(&c->rng);
    return t;
}

/* Opens for the (backed-off) timeout, or `min_pause` if longer; a deadline
 * already further away is kept. */
static void trip(cb_breaker *b, cb_reason why, double now, double min_pause) {
    double t = next_timeout(b);
    double until = now + (t > min_pause ? t : min_pause);
    if (b->open_until > until) until = b->open_until;
    b->open_timeout = t;
    b->open_until = until;
    if (b->reopens < UINT32_MAX) b->reopens++;
    transition(b, CB_OPEN, why, now);
}

/* Lazy time-driven changes: open -> half-open, lapsed probe permits. */
static void refresh(cb_breaker *b, double now) {
    if (b->state == CB_OPEN && now >= b->open_until)
        transition(b, CB_HALF_OPEN, CB_REASON_TIMEOUT, now);
    if (b->state == CB_HALF_OPEN && b->permits_out > 0 && now >= b->permit_expiry)
        b->permits_out = 0;  /* probes never reported must not wedge it */
}

static int time_driven(const cb_breaker *b) {
    return b->state == CB_OPEN || (b->state == CB_HALF_OPEN && b->permits_out > 0);
}

cb_state cb_breaker_state(cb_breaker *b) {
    if (time_driven(b)) refresh(b, now_of(b));
    return (cb_state)b->state;
}

cb_verdict cb_breaker_allow(cb_breaker *b) {
    tick(b);
    switch ((cb_state)b->state) {
    case CB_CLOSED:
    case CB_DISABLED:
        return CB_ALLOWED;
    case CB_FORCED_OPEN:
        b->rejections++;
        return CB_REJECT_FORCED_OPEN;
    case CB_OPEN:
        if (!b->conf->o.clock.now && cb_clock_upper_bound() < b->open_until) {
            b->rejections++;  /* surely still open: no precise clock read */
            return CB_REJECT_OPEN;
        }
        break;
    case CB_HALF_OPEN:
        break;
    }
    double now = now_of(b);
    refresh(b, now);
    if (b->state != CB_HALF_OPEN) {
        if (b->state == CB_OPEN) {
            b->rejections++;
            return CB_REJECT_OPEN;
        }
        return cb_breaker_allow(b);  /* a callback moved it elsewhere */
    }
    if (b->permits_out >= b->conf->o.half_open_max_calls ||
        (b->ext && b->ext->hook && b->ext->hook->admit &&
         !b->ext->hook->admit(b->ext->hook_ud, b))) {  /* a fleet's probe lease */
        b->rejections++;
        return CB_REJECT_HALF_OPEN;
    }
    b->permits_out++;
    double pt = b->conf->o.probe_timeout;
    b->permit_expiry = now + (pt > 0 ? pt : b->conf->o.reset_timeout);
    return CB_ALLOWED;
}

/* Counts one outcome while closed; trips when a threshold is reached. */
static void record_closed(cb_breaker *b, int failed, int slow) {
    const cb_breaker_opts *o = &b->conf->o;
    b->consecutive_failures = failed ? b->consecutive_failures + 1 : 0;
    double now = 0;
    int have_now = 0;
    cb_window *w = b->win;
    if (w) {
        if (w->buckets) { now = now_of(b); have_now = 1; }
        cb_window_add(w, now, failed, slow);
    }
    cb_reason why;
    if (o->failure_threshold && b->consecutive_failures >= o->failure_threshold)
        why = CB_REASON_FAILURES;
    else if (w && w->calls >= o->min_calls && o->failure_rate > 0 &&
             w->failures >= o->failure_rate * w->calls)
        why = CB_REASON_FAILURE_RATE;
    else if (w && w->calls >= o->min_calls && o->slow_call_ms > 0 &&
             w->slow >= o->slow_call_rate * w->calls)
        why = CB_REASON_SLOW_CALL_RATE;
    else
        return;
    trip(b, why, have_now ? now : now_of(b), 0);
}

void cb_breaker_record(cb_breaker *b, cb_outcome outcome, double ms,
                       double retry_after) {
    if (outcome == CB_SUCCESS && b->state == CB_CLOSED && !b->win && !b->hook_records &&
        !(retry_after > 0)) {  /* a shared store sees every outcome */
        b->successes++;  /* the common case; no window means no slow tracking */
        b->consecutive_failures = 0;
        return;
    }
    if (b->state == CB_DISABLED) {
        b->ignored++;
        return;
    }
    if (outcome == CB_IGNORE) {
        b->ignored++;
        if (b->state == CB_HALF_OPEN && b->permits_out > 0) b->permits_out--;
    } else {
        const cb_breaker_opts *o = &b->conf->o;
        int failed = outcome == CB_FAILURE;
        int slow = o->slow_call_ms > 0 && ms >= o->slow_call_ms;
        if (failed) b->failures++; else b->successes++;
        if (slow) b->slow_calls++;
        switch ((cb_state)b->state) {
        case CB_CLOSED:
            record_closed(b, failed, slow);
            break;
        case CB_HALF_OPEN:
            if (b->permits_out > 0) b->permits_out--;
            if (failed || slow)  /* a slow probe is no sign of recovery */
                trip(b, CB_REASON_PROBE_FAILURE, now_of(b), 0);
            else if (++b->half_open_successes >= o->success_threshold)
                transition(b, CB_CLOSED, CB_REASON_PROBE_SUCCESS, now_of(b));
            break;
        default:  /* open: a call allowed before it opened; counted only */
            break;
        }
    }
    if (retry_after > 0 && retry_after == retry_after) {
        if (retry_after > CB_MAX_TIMEOUT) retry_after = CB_MAX_TIMEOUT;  /* inf too */
        double now = now_of(b);
        if (b->state == CB_OPEN) {
            double until = now + retry_after;
            if (until > b->open_until) b->open_until = until;  /* never earlier */
        } else if (b->state == CB_CLOSED || b->state == CB_HALF_OPEN) {
            trip(b, CB_REASON_RETRY_AFTER, now, retry_after);
        }
    }
    if (b->hook_records && outcome != CB_IGNORE)  /* shared counting */
        b->ext->hook->record(b->ext->hook_ud, b, outcome);
}

double cb_breaker_retry_after(cb_breaker *b) {
    double now;
    switch ((cb_state)b->state) {
    case CB_CLOSED:
    case CB_DISABLED:
        return 0;
    case CB_FORCED_OPEN:
        return INFINITY;
    default:
        now = now_of(b);
        refresh(b, now);
        break;
    }
    if (b->state == CB_OPEN) return b->open_until - now;
    if (b->state == CB_HALF_OPEN)
        return b->permits_out >= b->conf->o.half_open_max_calls ? b->permit_expiry - now : 0;
    return cb_breaker_retry_after(b);  /* a callback moved it elsewhere */
}

double cb_breaker_refused_until(const cb_breaker *b) {
    switch ((cb_state)b->state) {
    case CB_FORCED_OPEN:
        return INFINITY;
    case CB_OPEN:
        return b->open_until;
    case CB_HALF_OPEN:
        return b->permits_out >= b->conf->o.half_open_max_calls ? b->permit_expiry : 0;
    default:
        return 0;
    }
}

void cb_breaker_reset(cb_breaker *b) {
    b->open_until = 0;
    b->reopens = 0;
    if (b->state == CB_CLOSED) {  /* no transition, but forget the past */
        b->consecutive_failures = 0;
        if (b->win) cb_window_clear(b->win);
    } else {
        transition(b, CB_CLOSED, CB_REASON_RESET, now_of(b));
    }
    /* A reset is announced even when already closed, so peers
     * drop a stale forced-open of theirs. */
    const cb_breaker_hook *h = cb_breaker_hook_of(b);
    if (h && h->reset) h->reset(b->ext->hook_ud, b);
}

/* A peer's channel message, as a state machine input.  Transitions go
 * through transition() with CB_REASON_PEER, so on_change sees them like any
 * other; a store never re-publishes them (that echo keeps a fleet stuck open). */
void cb_breaker_apply_peer(cb_breaker *b, cb_peer_state peer, double open_for) {
    cb_state s = (cb_state)b->state;
    if (s == CB_DISABLED) return;  /* a local operator's choice; peers never change it */
    double now = now_of(b);
    switch (peer) {
    case CB_PEER_RECOVERED:  /* authoritative: clears everything, forced-open included */
        b->open_until = 0;
        b->reopens = 0;
        if (s == CB_CLOSED) {
            b->consecutive_failures = 0;
            if (b->win) cb_window_clear(b->win);
            return;
        }
        transition(b, CB_CLOSED, CB_REASON_PEER, now);
        return;
    case CB_PEER_CLOSED:  /* never clears a forced-open */
        if (s == CB_OPEN || s == CB_HALF_OPEN) {
            b->open_until = 0;
            b->reopens = 0;
            transition(b, CB_CLOSED, CB_REASON_PEER, now);
        }
        return;
    case CB_PEER_FORCED_OPEN:
        if (s != CB_FORCED_OPEN) transition(b, CB_FORCED_OPEN, CB_REASON_PEER, now);
        return;
    case CB_PEER_OPEN: {
        if (!(open_for >= 0) || open_for > CB_MAX_TIMEOUT) open_for = b->open_timeout;
        double until = now + open_for;
        if (s == CB_FORCED_OPEN) return;
        if (until > b->open_until) b->open_until = until;  /* the later deadline wins */
        if (s == CB_OPEN || now >= b->open_until) return;
        transition(b, CB_OPEN, CB_REASON_PEER, now);
        return;
    }
    }
}

void cb_breaker_force_open(cb_breaker *b) {
    if (b->state != CB_FORCED_OPEN)
        transition(b, CB_FORCED_OPEN, CB_REASON_FORCE_OPEN, now_of(b));
}

void cb_breaker_disable(cb_breaker *b) {
    if (b->state != CB_DISABLED)
        transition(b, CB_DISABLED, CB_REASON_DISABLE, now_of(b));
}

void cb_breaker_get_stats(cb_breaker *b, cb_breaker_stats *st) {
    memset(st, 0, sizeof *st);
    st->retry_after = cb_breaker_retry_after(b);  /* refreshes first */
    st->state = (cb_state)b->state;
    st->successes = b->successes;
    st->failures = b->failures;
    st->calls = b->successes + b->failures;
    st->slow_calls = b->slow_calls;
    st->ignored = b->ignored;
    st->rejections = b->rejections;
    st->opens = b->opens;
    st->consecutive_failures = b->consecutive_failures;
    st->half_open_successes = b->half_open_successes;
    st->permits_out = b->permits_out;
    if (b->win) {
        if (b->win->buckets) cb_window_expire(b->win, now_of(b));
        st->window_calls = b->win->calls;
        st->window_failures = b->win->failures;
        st->window_slow = b->win->slow;
        if (b->win->calls) {
            st->failure_rate = (double)b->win->failures / b->win->calls;
            st->slow_call_rate = (double)b->win->slow / b->win->calls;
        }
    }
    st->open_timeout = b->open_timeout;
    st->last_change = b->last_change;
}

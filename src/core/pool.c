/* pool.c -- a provider pool: breakers and a bandit addressed by index.
 *
 * A breaker's openings are noticed by comparing its counts of openings and
 * forced openings with what the pool saw last, at every pick, acquire and
 * record, rather than through its change callback: that callback belongs to
 * the pool's user (a binding queues its events there), and an opening caused
 * elsewhere (an operator, a peer through a store) must be discounted too.
 *
 * The providers live in a fixed array of CB_POOL_MAX_PROVIDERS, so nothing
 * moves while a breaker's change callback runs inside a pick. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cbreaker_pool.h"
#include "breaker_impl.h"
#include "clock.h"
#include "optspec.h"

const char *const cb_pool_strategy_names[] = {"thompson", "round_robin", NULL};

typedef struct provider {
    cb_breaker *b;
    uint64_t opens_seen;  /* b->opens when last looked at */
    uint32_t forced_seen; /* b->forced_opens when last looked at */
    cb_pool_stats st;
} provider;

struct cb_pool {
    cb_pool_opts o;
    cb_bandit *bandit;
    int n;
    uint32_t rr;  /* round robin: the next position among the candidates */
    provider prov[CB_POOL_MAX_PROVIDERS];
};

void cb_pool_opts_init(cb_pool_opts *o) {
    memset(o, 0, sizeof *o);
    o->strategy = CB_POOL_THOMPSON;
    cb_bandit_opts_init(&o->bandit);
    o->discount = 0.5;  /* the engine's policy default */
}

const char *cb_pool_opts_check(const cb_pool_opts *o) {
    return cb_optschema_check(&cb_pool_schema, o);  /* the bandit's too: optspec.c */
}

cb_pool *cb_pool_new(const cb_pool_opts *o) {
    if (cb_pool_opts_check(o)) return NULL;
    cb_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->o = *o;
    p->bandit = cb_bandit_new(&o->bandit);
    if (!p->bandit) {
        free(p);
        return NULL;
    }
    return p;
}

void cb_pool_free(cb_pool *p) {
    if (!p) return;
    for (int i = 0; i < p->n; i++) cb_breaker_free(p->prov[i].b);
    cb_bandit_free(p->bandit);
    free(p);
}

int cb_pool_configure(cb_pool *p, const cb_pool_opts *o) {
    if (cb_pool_opts_check(o) || o->strategy != p->o.strategy) return CB_ERR;
    if (cb_bandit_configure(p->bandit, &o->bandit) != CB_OK) return CB_ERR;
    uint64_t seed = p->o.bandit.seed;
    p->o = *o;
    p->o.bandit.seed = seed;  /* the generator runs on from the first seed */
    return CB_OK;
}

void cb_pool_get_opts(const cb_pool *p, cb_pool_opts *o) {
    *o = p->o;
}

/* ---- providers ---------------------------------------------------------------- */

int cb_pool_add(cb_pool *p, const cb_breaker_opts *o) {
    if (p->n >= CB_POOL_MAX_PROVIDERS || !o->name || !*o->name) return CB_ERR;
    if (cb_bandit_find_arm(p->bandit, o->name) != CB_ERR) return CB_ERR;
    cb_breaker *b = cb_breaker_new(o);
    if (!b) return CB_ERR;
    if (cb_bandit_add_arm(p->bandit, o->name) != p->n) {  /* arms are added here only */
        cb_breaker_free(b);
        return CB_ERR;
    }
    provider *v = &p->prov[p->n];
    memset(v, 0, sizeof *v);
    v->b = b;
    return p->n++;
}

int cb_pool_size(const cb_pool *p) {
    return p->n;
}

int cb_pool_find(const cb_pool *p, const char *name) {
    return cb_bandit_find_arm(p->bandit, name);
}

static int valid(const cb_pool *p, int i) {
    return i >= 0 && i < p->n;
}

cb_breaker *cb_pool_breaker(cb_pool *p, int i) {
    return valid(p, i) ? p->prov[i].b : NULL;
}

cb_bandit *cb_pool_bandit(cb_pool *p) {
    return p->bandit;
}

int cb_pool_get_stats(const cb_pool *p, int i, cb_pool_stats *st) {
    if (!valid(p, i)) return CB_ERR;
    *st = p->prov[i].st;
    return CB_OK;
}

/* ---- choosing ----------------------------------------------------------------- */

/* Discounts provider i's evidence once for each of `news` openings. */
static void discount(cb_pool *p, int i, uint64_t news) {
    provider *v = &p->prov[i];
    v->opens_seen = v->b->opens;
    v->forced_seen = v->b->forced_opens;
    v->st.discounts += news;
    if (p->o.strategy != CB_POOL_THOMPSON || p->o.discount == 1) return;
    double f = news == 1 ? p->o.discount : pow(p->o.discount, (double)news);
    cb_bandit_discount(p->bandit, i, f);
}

/* Looks for openings since the last look: the breaker counts its openings
 * and its forced openings. */
static inline void observe(cb_pool *p, int i) {
    const provider *v = &p->prov[i];
    uint64_t news = (v->b->opens - v->opens_seen) + (uint32_t)(v->b->forced_opens - v->forced_seen);
    if (__builtin_expect(news != 0, 0)) discount(p, i, news);
}

/* Seconds until provider i may allow a call; 0 now.  The closed case is
 * read in place: it is every provider, nearly always.  An open breaker on
 * the system clock that the coarse clock proves still open answers -1: not
 * a candidate, its time left read only if no provider is one. */
static double wait_of(provider *v) {
    cb_breaker *b = v->b;
    if (b->state == CB_CLOSED || b->state == CB_DISABLED) return 0;
    if (b->state == CB_OPEN && !b->conf->o.clock.now && cb_clock_upper_bound() < b->open_until)
        return -1;
    return cb_breaker_retry_after(b);
}

/* cb_pool_pick, inlined into acquire. */
static inline int choose(cb_pool *p, uint64_t excluded, double *retry_after) {
    int list[CB_POOL_MAX_PROVIDERS];
    int n = 0;
    uint64_t unread = 0;  /* surely open, time left not read */
    double soonest = INFINITY;
    for (int i = 0; i < p->n; i++) {
        if (excluded & ((uint64_t)1 << i)) {
            observe(p, i);
            continue;
        }
        double w = wait_of(&p->prov[i]);
        observe(p, i);  /* after: a timeout may have run a change callback */
        if (w == 0)
            list[n++] = i;
        else if (w < 0)
            unread |= (uint64_t)1 << i;
        else if (w < soonest)
            soonest = w;
    }
    int chosen;
    if (n == 0) {
        for (int i = 0; unread; i++, unread >>= 1) {
            if (!(unread & 1)) continue;
            double w = cb_breaker_retry_after(p->prov[i].b);
            if (w < soonest) soonest = w;
        }
        if (retry_after) *retry_after = soonest;
        return CB_ERR;
    }
    if (n == 1) {
        chosen = list[0];  /* no draw for a lone candidate */
    } else if (p->o.strategy == CB_POOL_ROUND_ROBIN) {
        uint32_t k = p->rr % (uint32_t)n;
        p->rr = k + 1;
        chosen = list[k];
    } else {
        chosen = cb_bandit_select(p->bandit, list, (size_t)n);
    }
    p->prov[chosen].st.picked++;
    return chosen;
}

int cb_pool_pick(cb_pool *p, uint64_t excluded, double *retry_after) {
    return choose(p, excluded, retry_after);
}

int cb_pool_acquire(cb_pool *p, uint64_t *tried, double *retry_after) {
    uint64_t excluded = tried ? *tried : 0;
    int i;
    while ((i = choose(p, excluded, retry_after)) != CB_ERR) {
        excluded |= (uint64_t)1 << i;  /* at most one try per provider */
        if (cb_breaker_allow(p->prov[i].b) == CB_ALLOWED) {
            p->prov[i].st.acquired++;
            break;
        }
        p->prov[i].st.refused++;
    }
    if (tried) *tried = excluded;
    return i;
}

/* ---- learning ----------------------------------------------------------------- */

int cb_pool_record(cb_pool *p, int i, cb_outcome outcome, double ms, double retry_after) {
    if (!valid(p, i) || (outcome != CB_SUCCESS && outcome != CB_FAILURE && outcome != CB_IGNORE))
        return CB_ERR;
    if (p->o.strategy == CB_POOL_THOMPSON && outcome != CB_IGNORE)
        cb_bandit_update(p->bandit, i, outcome == CB_SUCCESS ? 1 : 0);
    cb_breaker_record(p->prov[i].b, outcome, ms, retry_after);
    observe(p, i);
    return CB_OK;
}

/* registry.c -- per-session breaker maps: one breaker per (tenant, key),
 * bounded in memory, so one session in an error loop is stopped without
 * touching the others.
 *
 * An entry is one allocation: links, an embedded breaker sharing the
 * registry's options, and the tenant and key bytes.  Entries sit in the
 * core's hash table (hashtab.c: it grows a bucket per call, never stopping
 * a call for a full rehash), keyed by SipHash-1-3 of (tenant, key) with a
 * per-registry random key, so crafted keys cannot pile into one chain.
 *
 * Each entry is on one of three lists, newest first:
 *  - FRESH:  created, no outcome recorded yet;
 *  - USED:   has recorded outcomes (both ordered by last get: LRU);
 *  - PINNED: found open, half-open or forced open by a scan.  Such breakers
 *    are never evicted or swept, and setting them aside keeps later scans
 *    from stepping over them again and again.  A get moves an entry back.
 * The sweep and the evictions start at the oldest ends, so an idle entry is
 * found in a few steps and a sweep stops at the first entry still in use.
 *
 * With max_per_tenant, each tenant also keeps its own two lists, mirroring
 * the three: LIVE (its FRESH and USED entries, by last get) and PINNED.  A
 * tenant at its cap recycles the oldest closed entry of its LIVE list, in a
 * step or two whatever the other tenants hold.  The links for these (and a
 * pointer to the tenant) sit in a prefix allocated with the entry, and the
 * list heads in one allocated with the tenant record, only when the cap is
 * set: without it, an entry costs nothing more. */
#define _DEFAULT_SOURCE  /* CLOCK_MONOTONIC_COARSE */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "breaker_impl.h"
#include "hashtab.h"
#include "optspec.h"
#include "siphash.h"

#define EVICT_SCAN 64         /* entries max_entries looks at to evict one */
#define TENANT_SCAN 64        /* of its own entries, a tenant at its cap looks at */
#define SWEEP_SCAN 64         /* entries a sweep step looks at */
#define SWEEP_REMOVE 16       /* and removes at most: ~0.5 us each, cold in a big map */
#define PINNED_SCAN 4         /* pinned entries a sweep step re-checks */

/* ---- entries, tenants, lists ------------------------------------------------- */

enum { L_FRESH, L_USED, L_PINNED, L_COUNT };

typedef struct entry {
    cb_hnode h;                 /* first: the table links entries as nodes */
    struct entry *prev, *next;  /* prev is newer, next older */
    cb_breaker b;
    float last_used;            /* registry clock, seconds since its epoch */
    unsigned tlen : 11, klen : 11, list : 2;
    char bytes[];               /* tenant, key, '\0' (the breaker's name) */
} entry;

typedef struct tenant_rec {
    cb_hnode h;
    size_t count;  /* its entries */
    size_t len;
    char bytes[];
} tenant_rec;

typedef struct list {
    entry *head, *tail;  /* newest, oldest */
    size_t len;
} list;

enum { T_LIVE, T_PINNED, T_COUNT };  /* a tenant's lists: FRESH+USED, PINNED */

/* With max_per_tenant: allocated just before each entry... */
typedef struct tlink {
    entry *prev, *next;  /* on its tenant's list, as entry's own links */
    tenant_rec *tn;
} tlink;

/* ...and just before each tenant record. */
typedef struct tlists {
    list l[T_COUNT];
} tlists;

_Static_assert(sizeof(tlink) % _Alignof(entry) == 0, "an entry after its tlink stays aligned");
_Static_assert(sizeof(tlists) % _Alignof(tenant_rec) == 0, "a tenant after its tlists too");

struct cb_registry {
    cb_htab entries, tenants;
    list lists[L_COUNT];
    cb_conf *conf;           /* the defaults, shared by their breakers */
    cb_registry_opts o;
    double unused_ttl;       /* effective */
    double epoch;            /* last_used counts from here */
    uint64_t k0, k1;         /* SipHash key */
    uint32_t ops;            /* calls since the last sweep step */
    cb_registry_remove_fn on_remove;
    void *remove_ud;
    cb_registry_stats st;    /* the counters; sizes are filled on demand */
    size_t block_bytes;      /* of the entry and tenant blocks held */
};

/* The registry's time, for last use and idleness only.  The default clock
 * is read coarse (a few ms resolution, the same epoch as CLOCK_MONOTONIC):
 * five times cheaper than a precise read, which would be a third of a get.
 * The breakers themselves keep the precise clock. */
static double reg_now(const cb_registry *r) {
#ifdef CLOCK_MONOTONIC_COARSE
    struct timespec ts;
    if (!r->o.clock.now && clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) == 0)
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
#endif
    return cb_clock_read(&r->o.clock);
}

static entry *entry_of(cb_breaker *b) {
    return (entry *)(void *)((char *)b - offsetof(entry, b));
}

/* The per-tenant prefixes; only with max_per_tenant (both structs are a
 * multiple of 8 bytes: what follows stays aligned). */
static int capped(const cb_registry *r) {
    return r->o.max_per_tenant != 0;
}

static tlink *tlink_of(entry *e) {
    return (tlink *)(void *)e - 1;
}

static tlists *tlists_of(tenant_rec *tn) {
    return (tlists *)(void *)tn - 1;
}

static void *entry_block(const cb_registry *r, entry *e) {
    return capped(r) ? (void *)tlink_of(e) : (void *)e;
}

/* The sizes of an entry's and a tenant record's blocks, as allocated. */
static size_t entry_bytes(const cb_registry *r, size_t tl, size_t kl) {
    return (capped(r) ? sizeof(tlink) : 0) + offsetof(entry, bytes) + tl + kl + 1;
}

static size_t tenant_bytes(const cb_registry *r, size_t tl) {
    return (capped(r) ? sizeof(tlists) : 0) + offsetof(tenant_rec, bytes) + tl + 1;
}

static void *tenant_block(const cb_registry *r, tenant_rec *tn) {
    return capped(r) ? (void *)tlists_of(tn) : (void *)tn;
}

static uint64_t key_hash(const cb_registry *r, const void *t, size_t tl,
                         const void *k, size_t kl) {
    unsigned char buf[2 + 2 * CB_REGISTRY_MAX_KEY];
    buf[0] = (unsigned char)(tl & 0xff);  /* ("ab","c") is not ("a","bc") */
    buf[1] = (unsigned char)(tl >> 8);
    memcpy(buf + 2, t, tl);
    memcpy(buf + 2 + tl, k, kl);
    return cb_siphash13(buf, 2 + tl + kl, r->k0, r->k1);
}

static uint64_t tenant_hash(const cb_registry *r, const void *t, size_t tl) {
    return cb_siphash13(t, tl, r->k1, r->k0);  /* the key swapped: another domain */
}

static uint64_t entry_rehash(const void *ud, const cb_hnode *n) {
    const cb_registry *r = ud;
    const entry *e = (const entry *)n;
    return key_hash(r, e->bytes, e->tlen, e->bytes + e->tlen, e->klen);
}

static uint64_t tenant_rehash(const void *ud, const cb_hnode *n) {
    const cb_registry *r = ud;
    const tenant_rec *tn = (const tenant_rec *)n;
    return tenant_hash(r, tn->bytes, tn->len);
}

static entry *find(const cb_registry *r, uint64_t h, const char *t, size_t tl,
                   const char *k, size_t kl) {
    for (int i = 0; i < 2; i++) {
        cb_hnode **chain = cb_htab_chain(&r->entries, i, h);
        for (cb_hnode *n = chain ? *chain : NULL; n; n = n->next) {
            entry *e = (entry *)n;
            if (e->klen == kl && e->tlen == tl && memcmp(e->bytes + tl, k, kl) == 0 &&
                memcmp(e->bytes, t, tl) == 0)
                return e;
        }
    }
    return NULL;
}

static tenant_rec *tenant_find(const cb_registry *r, uint64_t h, const char *t, size_t tl) {
    for (int i = 0; i < 2; i++) {
        cb_hnode **chain = cb_htab_chain(&r->tenants, i, h);
        for (cb_hnode *n = chain ? *chain : NULL; n; n = n->next) {
            tenant_rec *tn = (tenant_rec *)n;
            if (tn->len == tl && memcmp(tn->bytes, t, tl) == 0) return tn;
        }
    }
    return NULL;
}

static void tenant_drop(cb_registry *r, uint64_t h, tenant_rec *tn) {
    cb_htab_unlink(&r->tenants, &tn->h, h);
    r->block_bytes -= tenant_bytes(r, tn->len);
    free(tenant_block(r, tn));
}

/* The global lists link entries through e->prev/next, a tenant's through
 * its tlink: `own` picks the links, so one pair of functions serves both. */
static entry **link_prev(entry *e, int own) {
    return own ? &tlink_of(e)->prev : &e->prev;
}

static entry **link_next(entry *e, int own) {
    return own ? &tlink_of(e)->next : &e->next;
}

static void raw_unlink(list *l, entry *e, int own) {
    entry *p = *link_prev(e, own), *n = *link_next(e, own);
    if (p) *link_next(p, own) = n; else l->head = n;
    if (n) *link_prev(n, own) = p; else l->tail = p;
    l->len--;
}

static void raw_push(list *l, entry *e, int own, int at_tail) {
    if (at_tail) {
        *link_next(e, own) = NULL;
        *link_prev(e, own) = l->tail;
        if (l->tail) *link_next(l->tail, own) = e; else l->head = e;
        l->tail = e;
    } else {
        *link_prev(e, own) = NULL;
        *link_next(e, own) = l->head;
        if (l->head) *link_prev(l->head, own) = e; else l->tail = e;
        l->head = e;
    }
    l->len++;
}

/* The tenant's list that mirrors global list `which`. */
static list *tenant_list(entry *e, int which) {
    return &tlists_of(tlink_of(e)->tn)->l[which == L_PINNED ? T_PINNED : T_LIVE];
}

static void list_unlink(cb_registry *r, entry *e) {
    raw_unlink(&r->lists[e->list], e, 0);
    if (capped(r)) raw_unlink(tenant_list(e, e->list), e, 1);
}

static void list_push(cb_registry *r, entry *e, int which, int at_tail) {
    e->list = (unsigned)which;
    raw_push(&r->lists[which], e, 0, at_tail);
    if (capped(r)) raw_push(tenant_list(e, which), e, 1, at_tail);
}

static void list_move(cb_registry *r, entry *e, int which, int at_tail) {
    int from = e->list;
    raw_unlink(&r->lists[from], e, 0);
    e->list = (unsigned)which;
    raw_push(&r->lists[which], e, 0, at_tail);
    if (!capped(r)) return;
    list *tf = tenant_list(e, from), *tt = tenant_list(e, which);
    if (tf == tt && at_tail) return;  /* FRESH to USED by a sweep: not a use, keep its place */
    raw_unlink(tf, e, 1);
    raw_push(tt, e, 1, at_tail);
}

static int is_used(const entry *e) {
    const cb_breaker *b = &e->b;
    return (b->successes | b->failures) != 0 || (b->ignored | b->rejections) != 0;
}

/* `now` as a last_used: rounded up, so an entry used now is idle for 0 s
 * or less, never for part of a float's step (0.06 s once the registry is
 * 11 days old), and the sweep of the get that used it cannot take it. */
static float stamp(const cb_registry *r, double now) {
    double t = now - r->epoch;
    float f = (float)t;
    return (double)f < t ? nextafterf(f, INFINITY) : f;
}

static double idle_of(const cb_registry *r, const entry *e, double now) {
    return (now - r->epoch) - (double)e->last_used;
}

static int is_closed(entry *e) {
    return cb_breaker_state(&e->b) == CB_CLOSED;  /* may move open to half-open */
}

/* Frees `e`, telling the hook first, and its tenant record with its last. */
static void destroy(cb_registry *r, entry *e) {
    if (r->on_remove) r->on_remove(r->remove_ud, &e->b);
    cb_htab_unlink(&r->entries, &e->h, entry_rehash(r, &e->h));
    list_unlink(r, e);
    tenant_rec *tn = capped(r) ? tlink_of(e)->tn : NULL;
    uint64_t th = tenant_hash(r, e->bytes, e->tlen);
    if (!tn) tn = tenant_find(r, th, e->bytes, e->tlen);
    if (tn && --tn->count == 0) tenant_drop(r, th, tn);
    cb_breaker_destroy(&e->b);
    r->block_bytes -= entry_bytes(r, e->tlen, e->klen);
    free(entry_block(r, e));
}

/* ---- sweeping and evicting ------------------------------------------------- */

/* Walks FRESH and USED from their oldest ends, merged by last use.  The
 * cursor moves before the caller changes the entry it got. */
typedef struct walk {
    entry *c[2];
} walk;

static entry *walk_next(walk *w) {
    entry *f = w->c[0], *u = w->c[1];
    if (!f && !u) return NULL;
    int i = !f ? 1 : !u ? 0 : u->last_used <= f->last_used;
    entry *e = w->c[i];
    w->c[i] = e->prev;
    return e;
}

/* Evicts the least recently used closed breaker, of tenant `tn` when tn is
 * not NULL (then only its own lists are looked at), looking at no more than
 * `budget` entries.  Returns 1 when it did. */
static int evict(cb_registry *r, tenant_rec *tn, unsigned budget) {
    list *live = tn ? &tlists_of(tn)->l[T_LIVE] : NULL;
    walk w = {{r->lists[L_FRESH].tail, r->lists[L_USED].tail}};  /* when tn is NULL */
    entry *e;
    unsigned looked = 0;
    while (looked < budget && (e = tn ? live->tail : walk_next(&w))) {
        looked++;
        if (!is_closed(e)) {
            list_move(r, e, L_PINNED, 0);  /* never evicted: set it aside */
            continue;
        }
        destroy(r, e);
        r->st.evicted++;
        return 1;
    }
    /* Pinned breakers that closed since (a reset, a kept handle's successes)
     * are evictable again; the rest rotate, so each look makes progress.  A
     * tenant's pinned entries rotate on both its list and the global one. */
    list *p = tn ? &tlists_of(tn)->l[T_PINNED] : &r->lists[L_PINNED];
    for (size_t n = p->len; looked < budget && n > 0; n--, looked++) {
        e = p->tail;
        if (is_closed(e)) {
            destroy(r, e);
            r->st.evicted++;
            return 1;
        }
        list_move(r, e, L_PINNED, 0);
    }
    return 0;
}

/* Sweeps list `which` from its oldest end until an entry idle for less than
 * `ttl`, within `budget` entries looked at and `*removals` removed; returns
 * the budget left. */
static unsigned sweep_list(cb_registry *r, int which, double ttl, double now,
                           unsigned budget, unsigned *removals) {
    entry *e;
    while (budget > 0 && *removals > 0 && (e = r->lists[which].tail)) {
        budget--;
        double idle = idle_of(r, e, now);
        if (!(idle >= ttl)) break;  /* the rest is newer; NaN (a clock at inf) stops too */
        if (!is_closed(e))
            list_move(r, e, L_PINNED, 0);
        else if (which == L_FRESH && is_used(e) && idle < r->o.idle_ttl)
            list_move(r, e, L_USED, 1);  /* used through a kept handle */
        else {
            destroy(r, e);
            r->st.swept++;
            --*removals;
        }
    }
    return budget;
}

static void sweep_step(cb_registry *r, double now) {
    r->st.sweeps++;
    unsigned removals = SWEEP_REMOVE;
    unsigned budget = sweep_list(r, L_FRESH, r->unused_ttl, now, SWEEP_SCAN, &removals);
    sweep_list(r, L_USED, r->o.idle_ttl, now, budget, &removals);
    /* Pinned breakers that closed without a get (a kept handle) go back. */
    list *p = &r->lists[L_PINNED];
    for (size_t i = 0; i < PINNED_SCAN && i < p->len; i++) {
        entry *e = p->tail;
        if (is_closed(e))
            list_move(r, e, is_used(e) ? L_USED : L_FRESH, 1);
        else
            list_move(r, e, L_PINNED, 0);
    }
}

/* Work every call does: a rehash step, and a sweep step every cleanup_every. */
static void housekeeping(cb_registry *r, double now) {
    cb_htab_step(&r->entries, r, entry_rehash);
    cb_htab_step(&r->tenants, r, tenant_rehash);
    if (r->o.cleanup_every && ++r->ops >= r->o.cleanup_every) {
        r->ops = 0;
        sweep_step(r, now);
    }
}

/* ---- public ------------------------------------------------------------------- */

void cb_registry_opts_init(cb_registry_opts *o) {
    memset(o, 0, sizeof *o);
    cb_breaker_opts_init(&o->defaults);
    o->max_entries = 1000;   /* a hard cap: memory stays bounded */
    o->idle_ttl = 600;
    o->cleanup_every = 100;  /* a cleanup step every 100 calls */
}

const char *cb_registry_opts_check(const cb_registry_opts *o) {
    return cb_optschema_check(&cb_registry_schema, o);  /* defaults too: optspec.c */
}

static uint64_t random_seed(const void *salt) {
    uint64_t s = 0;
    FILE *f = fopen("/dev/urandom", "rb");
    if (f) {
        if (fread(&s, sizeof s, 1, f) != 1) s = 0;
        fclose(f);
    }
    if (!s)  /* no /dev/urandom: address and time, better than a constant */
        s = (uint64_t)(uintptr_t)salt ^ (uint64_t)(cb_clock_monotonic(NULL) * 1e9);
    return s;
}

cb_registry *cb_registry_new(const cb_registry_opts *o) {
    if (cb_registry_opts_check(o)) return NULL;
    cb_registry *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->o = *o;
    r->o.defaults.name = NULL;
    r->o.defaults.clock = o->clock;  /* one clock for the map and its breakers */
    r->unused_ttl = o->unused_ttl > 0 && o->unused_ttl < o->idle_ttl ? o->unused_ttl
                                                                      : o->idle_ttl;
    int ok_e = cb_htab_init(&r->entries) == CB_OK;
    int ok_t = cb_htab_init(&r->tenants) == CB_OK;
    r->conf = cb_conf_new(&r->o.defaults);
    if (!ok_e || !ok_t || !r->conf) {
        cb_htab_release(&r->entries);
        cb_htab_release(&r->tenants);
        cb_conf_unref(r->conf);
        free(r);
        return NULL;
    }
    cb_rng rng;
    cb_rng_seed(&rng, o->seed ? o->seed : random_seed(r));
    r->k0 = cb_rng_next(&rng);
    r->k1 = cb_rng_next(&rng);
    r->epoch = reg_now(r);
    return r;
}

void cb_registry_free(cb_registry *r) {
    if (!r) return;
    for (int i = 0; i < L_COUNT; i++)
        while (r->lists[i].tail) destroy(r, r->lists[i].tail);
    cb_htab_release(&r->entries);
    cb_htab_release(&r->tenants);
    cb_conf_unref(r->conf);
    free(r);
}

void cb_registry_get_opts(const cb_registry *r, cb_registry_opts *o) {
    *o = r->o;
}

void cb_registry_on_remove(cb_registry *r, cb_registry_remove_fn fn, void *ud) {
    r->on_remove = fn;
    r->remove_ud = fn ? ud : NULL;
}

static cb_breaker *create(cb_registry *r, uint64_t h, const char *t, size_t tl,
                          const char *k, size_t kl, const cb_breaker_opts *o,
                          double now, cb_registry_status *why) {
    cb_conf *own = NULL;
    if (o) {  /* per-key options: checked before anything is evicted */
        cb_breaker_opts oo = *o;
        oo.name = NULL;
        oo.clock = r->o.clock;
        if (cb_breaker_opts_check(&oo)) {
            *why = CB_REG_BAD_OPTS;
            return NULL;
        }
        if (!(own = cb_conf_new(&oo))) {
            *why = CB_REG_NOMEM;
            return NULL;
        }
    }
    uint64_t th = tenant_hash(r, t, tl);
    tenant_rec *tn = tenant_find(r, th, t, tl);
    if (capped(r) && tn && tn->count >= r->o.max_per_tenant) {
        if (!evict(r, tn, TENANT_SCAN)) {  /* only its own breakers */
            r->st.refused_tenant++;
            *why = CB_REG_TENANT_FULL;
            cb_conf_unref(own);
            return NULL;
        }
    } else if (r->o.max_entries && r->entries.count >= r->o.max_entries) {
        if (!evict(r, NULL, EVICT_SCAN)) {
            r->st.refused_full++;
            *why = CB_REG_FULL;
            cb_conf_unref(own);
            return NULL;
        }
    }
    /* Either eviction may have taken the tenant's last breaker, and its
     * record with it. */
    tn = tenant_find(r, th, t, tl);
    size_t tpre = capped(r) ? sizeof(tlists) : 0, epre = capped(r) ? sizeof(tlink) : 0;
    char *block;
    if (!tn && (block = malloc(tenant_bytes(r, tl)))) {
        r->block_bytes += tenant_bytes(r, tl);
        tn = (tenant_rec *)(void *)(block + tpre);
        if (tpre) memset(tlists_of(tn), 0, sizeof(tlists));
        tn->count = 0;
        tn->len = tl;
        memcpy(tn->bytes, t, tl);
        tn->bytes[tl] = '\0';
        cb_htab_insert(&r->tenants, &tn->h, th);
    }
    block = tn ? malloc(entry_bytes(r, tl, kl)) : NULL;
    entry *e = block ? (entry *)(void *)(block + epre) : NULL;
    if (!e || cb_breaker_init(&e->b, own ? own : r->conf, e->bytes + tl, 0) != CB_OK) {
        free(block);
        if (tn && tn->count == 0) tenant_drop(r, th, tn);
        cb_conf_unref(own);
        *why = CB_REG_NOMEM;
        return NULL;
    }
    cb_conf_unref(own);  /* the breaker holds its own reference */
    r->block_bytes += entry_bytes(r, tl, kl);
    memcpy(e->bytes, t, tl);
    memcpy(e->bytes + tl, k, kl);
    e->bytes[tl + kl] = '\0';
    e->tlen = (unsigned)tl;
    e->klen = (unsigned)kl;
    e->last_used = stamp(r, now);
    tn->count++;
    if (epre) tlink_of(e)->tn = tn;
    cb_htab_insert(&r->entries, &e->h, h);
    list_push(r, e, L_FRESH, 0);
    r->st.created++;
    return &e->b;
}

/* A get that found `e`: to the head of its list (and its tenant's), used now. */
static void hit(cb_registry *r, entry *e, double now) {
    int to = is_used(e) ? L_USED : L_FRESH;
    if (r->lists[to].head != e || (capped(r) && tenant_list(e, to)->head != e))
        list_move(r, e, to, 0);
    e->last_used = stamp(r, now);
    r->st.hits++;
    housekeeping(r, now);  /* cannot sweep e: it was used just now */
}

void cb_registry_touch(cb_registry *r, cb_breaker *b) {
    hit(r, entry_of(b), reg_now(r));
}

cb_breaker *cb_registry_get(cb_registry *r, const void *tenant, size_t tlen,
                            const void *key, size_t klen, const cb_breaker_opts *o,
                            cb_registry_status *why) {
    cb_registry_status ignored;
    if (!why) why = &ignored;
    *why = CB_REG_OK;
    if (tlen > CB_REGISTRY_MAX_KEY || klen > CB_REGISTRY_MAX_KEY) {
        *why = CB_REG_KEY_TOO_LONG;
        return NULL;
    }
    const char *t = tlen ? tenant : "", *k = klen ? key : "";
    double now = reg_now(r);
    uint64_t h = key_hash(r, t, tlen, k, klen);
    entry *e = find(r, h, t, tlen, k, klen);
    if (e) {
        hit(r, e, now);
        return &e->b;
    }
    housekeeping(r, now);
    return create(r, h, t, tlen, k, klen, o, now, why);
}

cb_breaker *cb_registry_peek(cb_registry *r, const void *tenant, size_t tlen,
                             const void *key, size_t klen) {
    if (tlen > CB_REGISTRY_MAX_KEY || klen > CB_REGISTRY_MAX_KEY) return NULL;
    const char *t = tlen ? tenant : "", *k = klen ? key : "";
    entry *e = find(r, key_hash(r, t, tlen, k, klen), t, tlen, k, klen);
    return e ? &e->b : NULL;
}

int cb_registry_remove(cb_registry *r, const void *tenant, size_t tlen,
                       const void *key, size_t klen) {
    cb_breaker *b = cb_registry_peek(r, tenant, tlen, key, klen);
    if (b) {
        destroy(r, entry_of(b));
        r->st.removed++;
    }
    housekeeping(r, reg_now(r));
    return b ? CB_OK : CB_ERR;
}

size_t cb_registry_size(const cb_registry *r) {
    return r->entries.count;
}

size_t cb_registry_bytes(const cb_registry *r) {
    size_t buckets = r->entries.size[0] + r->entries.size[1] +
                     r->tenants.size[0] + r->tenants.size[1];
    return sizeof *r + r->block_bytes + buckets * sizeof(cb_hnode *);
}

size_t cb_registry_cleanup(cb_registry *r) {
    double now = reg_now(r);
    size_t n = 0;
    for (int i = 0; i < L_COUNT; i++) {
        for (entry *e = r->lists[i].tail, *newer; e; e = newer) {
            newer = e->prev;
            double ttl = is_used(e) ? r->o.idle_ttl : r->unused_ttl;
            if (idle_of(r, e, now) >= ttl && is_closed(e)) {
                destroy(r, e);
                n++;
            }
        }
    }
    r->st.swept += n;
    return n;
}

void cb_registry_foreach(cb_registry *r, cb_registry_each_fn fn, void *ud) {
    walk w = {{r->lists[L_FRESH].tail, r->lists[L_USED].tail}};
    entry *e;
    while ((e = walk_next(&w)))
        if (fn(ud, e->bytes, e->tlen, e->bytes + e->tlen, e->klen, &e->b)) return;
    for (e = r->lists[L_PINNED].tail; e; e = e->prev)
        if (fn(ud, e->bytes, e->tlen, e->bytes + e->tlen, e->klen, &e->b)) return;
}

void cb_registry_get_stats(const cb_registry *r, cb_registry_stats *st) {
    *st = r->st;
    st->size = r->entries.count;
    st->tenants = r->tenants.count;
    st->pinned = r->lists[L_PINNED].len;
    st->buckets = r->entries.size[0] + r->entries.size[1];
}

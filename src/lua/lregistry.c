/* lregistry.c -- cbreaker.Registry: cb.registry{...}, one breaker per
 * (tenant, session).
 *
 * A session costs what the core's entry costs: no Lua object exists for an
 * entry unless Lua code holds its breaker.  A box (cb_lua_newbox, borrowed)
 * is made when reg:get, peek or entries() hands the breaker out and is
 * collected once Lua drops it; reg:get returns the same box while one
 * lives.  Three tables in the registry's user values, keyed by the
 * breaker's address, keep this straight:
 *   UV_BOXES   weak values: the live box to hand out again;
 *   UV_LIVE    every box of the breaker not yet finalized, as a list of
 *              raw pointers (lbreaker.next), strongly keyed but holding no
 *              box: when the core frees the entry its remove hook closes
 *              each of them ("attempt to use a removed registry breaker").
 *              A weak table alone cannot do that: the collector clears a
 *              weak entry before the box's finalizer runs, and a finalizer
 *              may bring the box back and use it.  A box leaves the list in
 *              its __gc, before its memory goes;
 *   UV_PINNED  the boxes that hold state of Lua's (an on_change callback,
 *              a classifier, a store): kept as long as the entry, so that
 *              state outlives Lua dropping the box.
 * Each box keeps the registry alive (CB_UV_OWNER).
 *
 * get() first looks in a small direct-mapped cache keyed by the addresses
 * of its two strings (Lua interns short strings, so equal short strings are
 * one object; the bandit's arm cache does the same).  The cache keeps its
 * strings and the box in an array in the registry's user value, so an
 * address cannot be reused by another string while its slot holds it (the
 * cache holds at most CACHE_SLOTS boxes).  A hit skips the hash lookup:
 * cb_registry_touch does the rest of a get.  The remove hook clears the
 * slots of a removed breaker.
 *
 * No raw pointer the core hands out (a breaker, a key) is held across a
 * Lua allocation, which may run a finalizer that removes the entry or
 * closes the registry: a new entry's box is made before the core call
 * (UV_SPARE, refilled when the method is done with core pointers), and
 * every method checks the registry is open after reading its arguments.
 * Raw table writes (lua_rawset*) allocate but never run a finalizer.
 *
 * The hook runs inside core frames: it uses only raw table accesses, which
 * neither run Lua code nor raise.  It finds the registry's tables through
 * the registry at lr->at on lr->L's stack: index 1 in every method that can
 * remove entries (get, remove, cleanup, close, __gc), an upvalue's
 * pseudo-index in the engine's call (cb_lua_registry_cached). */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "lcbreaker.h"

#define CACHE_SLOTS 2048  /* a power of two; about 180 KB a registry with its anchors */

typedef struct cslot {
    const char *t, *k;  /* the strings' addresses, anchored in UV_CACHE */
    cb_breaker *b;      /* NULL: empty */
    void *box;          /* b's box, anchored in UV_CACHE */
    uint32_t used;      /* lregistry.gets at its last hit */
} cslot;

/* A slot is taken over only when empty or unused for this many gets, so
 * two hot sessions sharing a slot do not evict each other on every call. */
#define CACHE_AGE (2 * CACHE_SLOTS)

typedef struct lregistry {
    cb_registry *r;  /* NULL once closed */
    lua_State *L;    /* the thread of the running method, for the hook */
    int at;          /* where on L's stack the hook finds the registry */
    cb_lua_module *m;
    uint32_t gets;   /* a clock for the cache */
    size_t bytes;    /* cb_registry_bytes when last paced */
    size_t unpaced;  /* bytes made since, not yet reported to the collector */
    cslot cache[CACHE_SLOTS];
} lregistry;

/* User values of a registry. */
enum { UV_BOXES = 1, UV_CACHE, UV_CLOCK, UV_SPARE, UV_LIVE, UV_PINNED, UV_COUNT = 6 };

/* UV_CACHE holds slot i's tenant, key and box at 3i+1, 3i+2, 3i+3; a
 * cached box knows its slot (lbreaker.cached), so a breaker has at most
 * one and its removal clears it.  (A table from breaker to slot, one key
 * set and one cleared per new session, made that session cost 24-27 us,
 * nearly all of it in lua_rawsetp on the table.)
 * A pair of strings may sit in either of two slots (two choices: far
 * fewer hot sessions go without a slot than in a direct-mapped cache). */
static uint64_t slot_hash(const char *t, const char *k) {
    return ((uint64_t)(uintptr_t)t ^ ((uint64_t)(uintptr_t)k * 0x9e3779b97f4a7c15ULL))
           * 0x9e3779b97f4a7c15ULL;  /* Fibonacci hashing */
}

static unsigned slot_first(uint64_t h) { return (unsigned)(h >> 40) & (CACHE_SLOTS - 1); }
static unsigned slot_second(uint64_t h) { return (unsigned)(h >> 20) & (CACHE_SLOTS - 1); }

/* The cache slot that holds the pair (t, k), by their strings' addresses
 * (hashed `h`), or -1. */
static inline int cache_find(const lregistry *lr, uint64_t h, const char *t, const char *k) {
    unsigned at[2] = {slot_first(h), slot_second(h)};
    for (int n = 0; n < 2; n++) {
        const cslot *s = &lr->cache[at[n]];
        if (s->t == t && s->k == k && s->b) return (int)at[n];
    }
    return -1;
}

/* A hit in slot i of the registry at `reg`, at get count `now`: its entry
 * touched (the registry's hook must find it at lr->at), the cache table
 * and the box pushed, the box on top; 0, nothing pushed, when the touch's
 * sweep took the entry (the hook has cleared the slot then). */
static inline int cache_push(lua_State *L, lregistry *lr, int reg, unsigned i, uint32_t now) {
    cslot *slot = &lr->cache[i];
    slot->used = now;
    cb_registry_touch(lr->r, slot->b);  /* its sweep may remove others, never this one */
    if (!slot->b) return 0;
    lua_getiuservalue(L, reg, UV_CACHE);
    lua_rawgeti(L, -1, 3 * (lua_Integer)i + 3);
    cb_lua_rememberself(lr->m, CB_CLASS_BREAKER, slot->box);
    return 1;
}

/* Upvalues of every method after the class (CB_UP_CLASS): get's refusals. */
enum { UP_FULL = CB_UP_FIRST, UP_TENANT_FULL, UP_COUNT = 2 };

#define GONE "removed registry"  /* "attempt to use a removed registry breaker" */

/* Raises for a closed registry.  Methods call it again after reading their
 * arguments: converting one allocates, and a finalizer may close it. */
static lregistry *live(lua_State *L, lregistry *lr) {
    if (!lr->r) luaL_error(L, "attempt to use a closed registry");
    lr->L = L;
    lr->at = 1;  /* self */
    return lr;
}

/* `self` of a method: a live registry. */
static lregistry *self(lua_State *L) {
    return live(L, cb_lua_checkself(L));
}

/* ---- boxes ------------------------------------------------------------------ */

/* Forgets the cache slot of `box`, if it has one (its anchors in UV_CACHE
 * stay until the slot is taken again). */
static void forget_slot(lregistry *lr, lbreaker *box) {
    if (box->cached && lr->cache[box->cached - 1].box == box)
        lr->cache[box->cached - 1] = (cslot){NULL, NULL, NULL, NULL, 0};
    box->cached = 0;
}

/* Sets t[b] = nil in the table at user value `uv` of the registry at `reg`
 * (clearing a key never allocates). */
static void clear_key(lua_State *L, int reg, int uv, const void *b) {
    if (lua_getiuservalue(L, reg, uv) == LUA_TTABLE) {
        lua_pushnil(L);
        lua_rawsetp(L, -2, b);
    }
    lua_pop(L, 1);
}

/* The core's remove hook: forgets `b`'s cache slot, closes its boxes. */
static void on_remove(void *ud, cb_breaker *b) {
    lregistry *lr = ud;
    lua_State *L = lr->L;
    int top = lua_gettop(L);
    lbreaker *box = NULL;
    if (lua_getiuservalue(L, lr->at, UV_LIVE) == LUA_TTABLE &&
        lua_rawgetp(L, -1, b) == LUA_TLIGHTUSERDATA)  /* live, head */
        box = lua_touserdata(L, -1);
    lua_settop(L, top);
    while (box) {
        lbreaker *next = box->next;
        forget_slot(lr, box);  /* a cached box is listed: b leaves the cache */
        box->next = NULL;
        box->listed = 0;
        cb_lua_box_close(L, box, GONE);
        box = next;
    }
    clear_key(L, lr->at, UV_LIVE, b);
    clear_key(L, lr->at, UV_BOXES, b);
    clear_key(L, lr->at, UV_PINNED, b);
}

void cb_lua_registry_unlist(lua_State *L, int idx, lbreaker *box) {
    idx = lua_absindex(L, idx);
    cb_breaker *b = box->b;
    box->listed = 0;
    if (!b || lua_getiuservalue(L, idx, CB_UV_OWNER) != LUA_TUSERDATA) {
        lua_pop(L, 1);
        return;  /* closed: the hook took it off already */
    }
    int reg = lua_gettop(L);
    lregistry *lr = lua_touserdata(L, reg);
    forget_slot(lr, box);  /* a cached box is not collected; be sure */
    if (lua_getiuservalue(L, reg, UV_LIVE) == LUA_TTABLE &&
        lua_rawgetp(L, -1, b) == LUA_TLIGHTUSERDATA) {  /* reg, live, head */
        lbreaker *head = lua_touserdata(L, -1);
        if (head == box) {
            if (box->next) lua_pushlightuserdata(L, box->next); else lua_pushnil(L);
            lua_rawsetp(L, reg + 1, b);  /* an existing key: no allocation */
        } else {
            for (lbreaker *p = head; p; p = p->next)
                if (p->next == box) {
                    p->next = box->next;
                    break;
                }
        }
    }
    box->next = NULL;
    lua_settop(L, reg - 1);
}

void cb_lua_registry_pin(lua_State *L, int idx, lbreaker *box) {
    idx = lua_absindex(L, idx);
    lua_getiuservalue(L, idx, CB_UV_OWNER);
    if (lua_getiuservalue(L, -1, UV_PINNED) != LUA_TTABLE) {  /* registry closed */
        lua_pop(L, 2);
        return;
    }
    int t = lua_rawgetp(L, -1, box->b);
    if (t == LUA_TUSERDATA && lua_touserdata(L, -1) != box)
        luaL_error(L, "another box of registry breaker '%s' holds its callbacks",
                   cb_breaker_name(box->b));
    lua_pop(L, 1);
    if (t == LUA_TNIL) {
        lua_pushvalue(L, idx);
        lua_rawsetp(L, -2, box->b);  /* allocates, runs no finalizer */
    }
    lua_pop(L, 2);
}

/* Reports the memory new sessions took in C to Lua's collector, a step
 * per KB, so that it collects the boxes Lua dropped as fast as sessions
 * are made.  Unpaced, the incremental collector let a cycle's garbage
 * boxes pile up between the entries, and the holes they left stayed in
 * RSS: 286 B a session from Lua instead of the core's 217 (see
 * bench/registry_rss.lua).  A stopped collector stays stopped, and
 * inside a finalizer Lua refuses the step.  The step may run finalizers:
 * call it where an allocation could, before fill_spare. */
static void pace(lua_State *L, lregistry *lr) {
    size_t bytes = cb_registry_bytes(lr->r);
    if (bytes > lr->bytes) lr->unpaced += bytes - lr->bytes;
    lr->bytes = bytes;
    if (lr->unpaced < 1024) return;
    int kb = lr->unpaced / 1024 > INT_MAX ? INT_MAX : (int)(lr->unpaced / 1024);
    lr->unpaced %= 1024;
    if (lua_gc(L, LUA_GCISRUNNING)) lua_gc(L, LUA_GCSTEP, kb);
}

/* Makes sure the registry at `reg` has a spare box for push_box.  May
 * allocate: call it before the core call whose breaker push_box gets, and
 * check the registry is still open after it. */
static void fill_spare(lua_State *L, int reg) {
    if (lua_getiuservalue(L, reg, UV_SPARE) == LUA_TNIL) {
        lua_pop(L, 1);
        cb_lua_newbox(L, 0);
        lua_pushvalue(L, reg);
        lua_setiuservalue(L, -2, CB_UV_OWNER);
        lua_setiuservalue(L, reg, UV_SPARE);
        return;
    }
    lua_pop(L, 1);
}

/* Pushes a box of `b`: its live one, or the spare box (no allocation that
 * could run a finalizer: `b` stays valid).  The registry is at `reg`; its
 * spare must be filled.  A raised memory error leaves every box either
 * listed with its breaker or spare and closed. */
static void push_box(lua_State *L, int reg, cb_breaker *b) {
    lua_getiuservalue(L, reg, UV_BOXES);  /* boxes */
    if (lua_rawgetp(L, -1, b) == LUA_TUSERDATA) {  /* boxes, box */
        lua_remove(L, -2);
        return;
    }
    lua_pop(L, 1);
    lua_getiuservalue(L, reg, UV_LIVE);   /* boxes, live */
    lbreaker *head = lua_rawgetp(L, -1, b) == LUA_TLIGHTUSERDATA ? lua_touserdata(L, -1) : NULL;
    lua_pop(L, 1);
    lua_getiuservalue(L, reg, UV_SPARE);  /* boxes, live, box (closed) */
    lbreaker *box = lua_touserdata(L, -1);
    lua_pushlightuserdata(L, box);
    lua_rawsetp(L, -3, b);  /* may raise (memory): then nothing changed */
    box->next = head;
    box->listed = 1;
    cb_lua_box_set(box, b);
    lua_pushnil(L);
    lua_setiuservalue(L, reg, UV_SPARE);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, -4, b);  /* may raise: the box is listed, only not handed out again */
    lua_replace(L, -3);
    lua_pop(L, 1);  /* box */
}

/* ---- options ---------------------------------------------------------------- */

static int registry_new(lua_State *L) {
    cb_registry_opts o;
    cb_registry_opts_init(&o);
    if (lua_isnoneornil(L, 1)) lua_newtable(L);
    else luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    /* The userdata first, closed: a raised error below leaks nothing. */
    lregistry *lr = lua_newuserdatauv(L, sizeof *lr, UV_COUNT);
    lr->r = NULL;
    lr->L = L;
    lr->at = lua_gettop(L);
    lr->m = cb_lua_module_get(L);
    luaL_setmetatable(L, CB_REGISTRY_MT);
    memset(lr->cache, 0, sizeof lr->cache);
    lr->gets = 0;  /* the cache clock (valgrind: read before set) */
    lr->bytes = lr->unpaced = 0;
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "v");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setiuservalue(L, 2, UV_BOXES);
    lua_newtable(L);
    lua_setiuservalue(L, 2, UV_LIVE);
    lua_newtable(L);
    lua_setiuservalue(L, 2, UV_PINNED);
    lua_createtable(L, 3 * CACHE_SLOTS, 0);  /* sized now: filling never allocates */
    for (int i = 1; i <= 3 * CACHE_SLOTS; i++) {
        lua_pushboolean(L, 0);
        lua_rawseti(L, -2, i);
    }
    lua_setiuservalue(L, 2, UV_CACHE);
    fill_spare(L, 2);
    static const int clock_uv = UV_CLOCK;  /* the registry keeps its clock alive */
    cb_lua_optread r = {"cbreaker.registry", "", cb_lua_keep_uv, (void *)&clock_uv, 0, 0, NULL, 0};
    cb_lua_read_opts(L, 1, &cb_registry_schema, &o, &r);
    const char *bad = cb_registry_opts_check(&o);
    if (bad) return luaL_error(L, "cbreaker.registry: %s", bad);
    lr->r = cb_registry_new(&o);
    if (!lr->r) return luaL_error(L, "cbreaker.registry: out of memory");
    cb_registry_on_remove(lr->r, on_remove, lr);
    lr->bytes = cb_registry_bytes(lr->r);  /* the empty tables are not a session's */
    return 1;
}

static int registry_close(lua_State *L) {
    lregistry *lr = cb_lua_checkself(L);
    if (lr->r) {
        cb_registry *r = lr->r;
        lr->r = NULL;
        lr->L = L;
        lr->at = 1;  /* self */
        cb_registry_free(r);  /* the hook closes every box */
        memset(lr->cache, 0, sizeof lr->cache);
        for (int uv = UV_BOXES; uv <= UV_COUNT; uv++) {  /* their memory goes now */
            if (uv == UV_CLOCK) continue;
            lua_pushnil(L);
            lua_setiuservalue(L, 1, uv);
        }
    }
    cb_lua_forgetself(L, lr);  /* as __gc: the memory goes next */
    return 0;
}

static int registry_gc(lua_State *L) {
    registry_close(L);
    cb_lua_finalized(L, lua_touserdata(L, 1));
    return 0;
}

static int registry_tostring(lua_State *L) {
    lregistry *lr = cb_lua_checkself(L);
    if (!lr->r)
        lua_pushliteral(L, "cbreaker.Registry (closed)");
    else
        lua_pushfstring(L, "cbreaker.Registry (%I entries)",
                        (LUAI_UACINT)cb_registry_size(lr->r));
    return 1;
}

/* ---- methods ---------------------------------------------------------------- */

static const char *checkkey(lua_State *L, int idx, size_t *len, const char *what) {
    const char *s = lua_tolstring(L, idx, len);  /* a number becomes a string */
    if (!s) luaL_typeerror(L, idx, "string");
    if (*len > CB_REGISTRY_MAX_KEY)
        luaL_argerror(L, idx, lua_pushfstring(L, "%s is %I bytes long, more than %d", what,
                                              (LUAI_UACINT)*len, CB_REGISTRY_MAX_KEY));
    return s;
}

/* reg:get(tenant, key [, opts]) -> breaker | nil, "registry full" | nil,
 * "tenant full".  opts (breaker options over the defaults) apply only when
 * the breaker is created. */
static int registry_get(lua_State *L) {
    lregistry *lr = self(L);
    size_t tl, kl;
    const char *t = checkkey(L, 2, &tl, "tenant");
    const char *k = checkkey(L, 3, &kl, "key");
    live(L, lr);
    uint64_t h = slot_hash(t, k);
    uint32_t now = ++lr->gets;
    int hit = cache_find(lr, h, t, k);
    if (hit >= 0 && cache_push(L, lr, 1, (unsigned)hit, now)) return cb_lua_finish(L, lr->m, 1);
    unsigned i = slot_first(h), j = slot_second(h);
    cslot *slot = &lr->cache[i], *other = &lr->cache[j];
    if (!other->b || (slot->b && (int32_t)(slot->used - other->used) > 0))
        slot = other, i = j;  /* the place to take: empty, or the one unused longer */
    cb_breaker_opts o, *op = NULL;
    if (lua_gettop(L) >= 4 && !lua_isnil(L, 4) && !cb_registry_peek(lr->r, t, tl, k, kl)) {
        luaL_checktype(L, 4, LUA_TTABLE);
        cb_registry_opts ro;
        cb_registry_get_opts(lr->r, &ro);
        o = ro.defaults;
        cb_lua_optread r = {"registry:get", "", NULL, NULL, 1, 0, CB_LUA_NAMED_BY_KEY, 0};
        cb_lua_read_opts(L, 4, &cb_breaker_schema, &o, &r);
        const char *bad = cb_breaker_opts_check(&o);
        if (bad) return luaL_error(L, "registry:get: %s", bad);
        op = &o;
    }
    pace(L, live(L, lr));  /* the reader may have run Lua code */
    fill_spare(L, 1);
    live(L, lr);  /* pace and fill_spare may run Lua code */
    cb_registry_status why;
    cb_breaker *b = cb_registry_get(lr->r, t, tl, k, kl, op, &why);
    if (!b) {
        if (why != CB_REG_FULL && why != CB_REG_TENANT_FULL)
            return luaL_error(L, "registry:get: out of memory");
        lua_pushnil(L);
        lua_pushvalue(L, lua_upvalueindex(why == CB_REG_FULL ? UP_FULL : UP_TENANT_FULL));
        return cb_lua_finish(L, lr->m, 2);
    }
    push_box(L, 1, b);  /* ..., box */
    void *box = lua_touserdata(L, -1);
    cb_lua_rememberself(lr->m, CB_CLASS_BREAKER, box);
    if (slot->b && now - slot->used < CACHE_AGE) {  /* the slot is in use */
        return cb_lua_finish(L, lr->m, 1);
    }
    /* One slot per breaker: forget b's old slot and the slot's old breaker. */
    forget_slot(lr, box);
    if (slot->b) forget_slot(lr, slot->box);  /* anchored in UV_CACHE till now */
    lua_getiuservalue(L, 1, UV_CACHE);  /* box, cache */
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 3 * (lua_Integer)i + 1);
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, 3 * (lua_Integer)i + 2);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 3 * (lua_Integer)i + 3);
    lua_pop(L, 1);
    *slot = (cslot){t, k, b, box, now};  /* its strings and box are anchored now */
    ((lbreaker *)box)->cached = (uint16_t)(i + 1);
    return cb_lua_finish(L, lr->m, 1);
}

int cb_lua_registry_cached(lua_State *L, int reg, const char *t, const char *k) {
    lregistry *lr = lua_touserdata(L, reg);
    if (!lr->r) return 0;  /* get says it is closed */
    lr->L = L;
    lr->at = reg;
    int i = cache_find(lr, slot_hash(t, k), t, k);
    if (i < 0 || !cache_push(L, lr, reg, (unsigned)i, ++lr->gets)) return 0;
    lua_replace(L, -2);  /* the box alone */
    return 1;
}

/* reg:peek(tenant, key) -> the breaker, or nil; creates and touches nothing. */
static int registry_peek(lua_State *L) {
    lregistry *lr = self(L);
    size_t tl, kl;
    const char *t = checkkey(L, 2, &tl, "tenant");
    const char *k = checkkey(L, 3, &kl, "key");
    fill_spare(L, 1);
    cb_breaker *b = cb_registry_peek(live(L, lr)->r, t, tl, k, kl);
    if (b) push_box(L, 1, b); else lua_pushnil(L);
    return 1;
}

/* reg:remove(tenant, key) -> true when it was there, false when not. */
static int registry_remove(lua_State *L) {
    lregistry *lr = self(L);
    size_t tl, kl;
    const char *t = checkkey(L, 2, &tl, "tenant");
    const char *k = checkkey(L, 3, &kl, "key");
    int found = cb_registry_remove(live(L, lr)->r, t, tl, k, kl) == CB_OK;
    lua_pushboolean(L, found);
    return cb_lua_finish(L, lr->m, 1);
}

static int registry_size(lua_State *L) {
    lua_pushinteger(L, (lua_Integer)cb_registry_size(self(L)->r));
    return 1;
}

static int registry_cleanup(lua_State *L) {
    lregistry *lr = self(L);
    size_t n = cb_registry_cleanup(lr->r);
    lua_pushinteger(L, (lua_Integer)n);
    return cb_lua_finish(L, lr->m, 1);
}

#define SETINT(field) (lua_pushinteger(L, (lua_Integer)st.field), lua_setfield(L, -2, #field))

static int registry_stats(lua_State *L) {
    cb_registry_stats st;
    const cb_registry *r = self(L)->r;
    cb_registry_get_stats(r, &st);
    size_t bytes = cb_registry_bytes(r);  /* read before allocating: a finalizer may close it */
    lua_createtable(L, 0, 13);
    SETINT(size); SETINT(tenants); SETINT(pinned); SETINT(buckets);
    SETINT(hits); SETINT(created); SETINT(evicted); SETINT(swept);
    SETINT(removed); SETINT(refused_full); SETINT(refused_tenant); SETINT(sweeps);
    lua_pushinteger(L, (lua_Integer)bytes);
    lua_setfield(L, -2, "bytes");
    return 1;
}

/* ---- iteration ------------------------------------------------------------ */

/* The keys of every entry, copied into one buffer as the core lists them
 * (no Lua inside core frames, and no pointer into an entry held across the
 * allocations that follow: a finalizer may remove entries there). */
typedef struct collect {
    char *buf;          /* tenant, key, tenant, key..., each with its length */
    size_t len, cap;    /* bytes used, and room; len > cap: it did not fit */
    size_t n;           /* entries copied */
} collect;

static int collect_one(void *ud, const char *t, size_t tl, const char *k, size_t kl,
                       cb_breaker *b) {
    collect *c = ud;
    (void)b;
    size_t need = 2 * sizeof(size_t) + tl + kl;
    if (c->len + need > c->cap) {
        c->len += need;  /* counted, for the next try's size */
        return 0;
    }
    char *p = c->buf + c->len;
    memcpy(p, &tl, sizeof tl);
    memcpy(p + sizeof tl, t, tl);
    memcpy(p + sizeof tl + tl, &kl, sizeof kl);
    memcpy(p + 2 * sizeof tl + tl, k, kl);
    c->len += need;
    c->n++;
    return 0;
}

/* Iterator of reg:entries(): tenant, key, breaker.  Entries removed since
 * the snapshot are skipped. */
static int entries_next(lua_State *L) {
    lregistry *lr = lua_touserdata(L, lua_upvalueindex(1));
    lua_Integer i = lua_tointeger(L, lua_upvalueindex(3));
    for (;; i += 2) {
        lua_settop(L, 0);
        if (!lr->r) return luaL_error(L, "attempt to use a closed registry");
        if (lua_rawgeti(L, lua_upvalueindex(2), i + 1) == LUA_TNIL) return 0;
        lua_rawgeti(L, lua_upvalueindex(2), i + 2);  /* tenant, key */
        lua_pushvalue(L, lua_upvalueindex(1));  /* tenant, key, reg */
        fill_spare(L, 3);  /* may run a finalizer: the registry is checked after */
        if (!lr->r) return luaL_error(L, "attempt to use a closed registry");
        size_t tl, kl;
        const char *t = lua_tolstring(L, 1, &tl), *k = lua_tolstring(L, 2, &kl);
        cb_breaker *b = cb_registry_peek(lr->r, t, tl, k, kl);
        if (!b) continue;
        push_box(L, 3, b);  /* tenant, key, reg, box */
        lua_remove(L, 3);
        lua_pushinteger(L, i + 2);
        lua_replace(L, lua_upvalueindex(3));
        return 3;
    }
}

/* reg:entries() -> an iterator over tenant, key, breaker, least recently
 * used first, over a snapshot of the keys: the loop may get or remove. */
static int registry_entries(lua_State *L) {
    lregistry *lr = self(L);
    lua_settop(L, 1);
    collect c = {NULL, 0, 0, 0};
    size_t cap = cb_registry_size(lr->r) * (2 * sizeof(size_t) + 16) + 64;
    do {  /* again when entries grew meanwhile (a finalizer's get) */
        lua_settop(L, 1);
        c = (collect){lua_newuserdatauv(L, cap, 0), 0, cap, 0};  /* reg, buf */
        live(L, lr);
        cb_registry_foreach(lr->r, collect_one, &c);
        cap = c.len;
    } while (c.len > c.cap);
    lua_createtable(L, (int)(2 * c.n), 0);  /* reg, buf, keys */
    const char *p = lua_touserdata(L, 2);   /* anchored at 2 */
    for (size_t i = 0; i < 2 * c.n; i++) {
        size_t len;
        memcpy(&len, p, sizeof len);
        lua_pushlstring(L, p + sizeof len, len);
        lua_rawseti(L, -2, (lua_Integer)i + 1);
        p += sizeof len + len;
    }
    lua_pushvalue(L, 1);
    lua_insert(L, -2);       /* reg, buf, reg, keys */
    lua_pushinteger(L, 0);
    lua_pushcclosure(L, entries_next, 3);
    return 1;
}

static const luaL_Reg registry_methods[] = {
    {"get", registry_get},
    {"peek", registry_peek},
    {"remove", registry_remove},
    {"size", registry_size},
    {"cleanup", registry_cleanup},
    {"stats", registry_stats},
    {"entries", registry_entries},
    {"close", registry_close},
    {NULL, NULL}
};

static const luaL_Reg registry_meta[] = {
    {"__gc", registry_gc},
    {"__close", registry_close},
    {"__tostring", registry_tostring},
    {"__len", registry_size},
    {NULL, NULL}
};

static const luaL_Reg registry_funcs[] = {
    {"registry", registry_new},
    {NULL, NULL}
};

void cb_lua_open_registry(lua_State *L) {
    lua_pushliteral(L, "registry full");
    lua_pushliteral(L, "tenant full");
    cb_lua_newclass(L, CB_CLASS_REGISTRY, CB_REGISTRY_MT, registry_methods, registry_meta, UP_COUNT);
    luaL_setfuncs(L, registry_funcs, 0);
}

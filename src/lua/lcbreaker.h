/* lcbreaker.h -- what the binding's files share.  The only place outside
 * src/lua/ that sees Lua is the host. */
#ifndef LCBREAKER_H
#define LCBREAKER_H

#include <math.h>
#include <stdint.h>

#include <lauxlib.h>
#include <lua.h>

#include "cbreaker.h"
#include "../core/optspec.h"  /* the option schema the core owns */

/* The module's entry point (lcore.c), the one symbol core.so exports. */
CB_API int luaopen_cbreaker_core(lua_State *L);

/* Metatable names (`__name` gives error messages and tostring for free). */
#define CB_BREAKER_MT "cbreaker.Breaker"
#define CB_CLOCK_MT "cbreaker.ManualClock"
#define CB_REJECTION_MT "cbreaker.Rejection"
#define CB_BANDIT_MT "cbreaker.Bandit"
#define CB_POOL_MT "cbreaker.Pool"
#define CB_REGISTRY_MT "cbreaker.Registry"
#define CB_STORE_MT "cbreaker.Store"
#define CB_MODULE_KEY "cbreaker.module"  /* registry key of the module state */
#define CB_BOXES_KEY "cbreaker.boxes"    /* weak table: box pointer -> box */

/* ---- classes ------------------------------------------------------------------ */

/* Upvalues of every method and metamethod of a class. */
enum {
    CB_UP_CLASS = 1,  /* the class's metatable */
    CB_UP_LAST,       /* a light userdata: the class's row of
                         cb_lua_module.last, in the module state */
    CB_UP_FIRST       /* the first of the class's own upvalues */
};

/* The classes whose methods check `self` (slots of cb_lua_module.last). */
enum { CB_CLASS_BREAKER, CB_CLASS_REGISTRY, CB_CLASS_BANDIT, CB_CLASS_STORE,
       CB_CLASS_CLOCK, CB_CLASS_REJECTION, CB_CLASS_POOL, CB_CLASS_COUNT };

/* Builds class `id` named `name`: its metatable (luaL_newmetatable) holding
 * the metamethods `meta`, and an __index table of `methods` (may be NULL).
 * Every method and metamethod gets CB_UP_CLASS and CB_UP_LAST; the methods
 * also get the `nup` values on top of the stack (popped) as upvalues
 * CB_UP_FIRST on.  Leaves the stack as it was below them. */
void cb_lua_newclass(lua_State *L, int id, const char *name, const luaL_Reg *methods,
                     const luaL_Reg *meta, int nup);

/* `self` (argument 1) of a method or metamethod, of the running function's
 * class; raises "bad argument #1 to 'f' (cbreaker.X expected, got Y)" for
 * anything else.
 *
 * The proof is the metatable, compared with CB_UP_CLASS.  As that costs
 * as much as the rest of a hot method, the class remembers the selves it
 * proved last (CB_UP_LAST, a small table indexed by address) and a call on
 * one of them skips the comparison.  A remembered box is ours as long as it
 * lives, and its __gc forgets it (cb_lua_forgetself) before its memory can
 * be reused. */
#define CB_SELF_SLOTS 16  /* per class and lua_State */

static inline unsigned cb_lua_selfslot(const void *p) {
    return (unsigned)(((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL) >> 60);  /* Fibonacci */
}

void *cb_lua_checkself_slow(lua_State *L);

static inline void *cb_lua_checkself(lua_State *L) {
    void *const *last = lua_touserdata(L, lua_upvalueindex(CB_UP_LAST));
    void *p = lua_touserdata(L, 1);
    return p && last[cb_lua_selfslot(p)] == p ? p : cb_lua_checkself_slow(L);
}

/* For close: self may be finalized, forget it. */
void cb_lua_forgetself(lua_State *L, void *self);

/* For __gc (self at 1): forgets self and drops its metatable, so that a
 * resurrected object is never proved and remembered again (it is freed
 * without another __gc).  Using one raises "X expected, got userdata". */
void cb_lua_finalized(lua_State *L, void *self);

/* ---- module state ---------------------------------------------------------- */

/* State changes are queued by the core's callback and handed to Lua once the
 * core function has returned, so Lua never runs inside a core frame.  An
 * event names its box by address and by serial: the address finds the box
 * (in CB_BOXES_KEY), the serial proves it is still the box the event was
 * queued for and not a later one at a reused address. */
typedef struct cb_lua_event {
    void *box;          /* the lbreaker whose breaker changed */
    uint64_t serial;    /* its lbreaker.serial */
    unsigned char from, to, reason;
} cb_lua_event;

#define CB_LUA_EVENTS_MIN 64  /* the queue's first size; it doubles as needed */

typedef struct cb_lua_module {
    void *last[CB_CLASS_COUNT][CB_SELF_SLOTS];  /* selves each class proved (lclass.c) */
    /* A FIFO ring of the events not yet handed to Lua.  It grows (plain
     * malloc: the core's callback cannot run Lua allocations) so that no
     * transition is lost however many one core call makes; it is drained
     * by the next dispatch, so its size is bounded by one call's changes. */
    cb_lua_event *events;
    size_t head, count, cap;
    unsigned long dropped; /* events lost to an out-of-memory growth */
    uint64_t serials;      /* the last serial given to a box */
    int closed;            /* the state is closing: queue nothing */
} cb_lua_module;

/* Remembers `p`, a userdata just made or fetched with class `id`'s
 * metatable, as a proved self of that class (see cb_lua_checkself): the
 * breakers a registry hands out pass their next method call cheaply. */
static inline void cb_lua_rememberself(cb_lua_module *m, int id, void *p) {
    m->last[id][cb_lua_selfslot(p)] = p;
}

/* The module state of this lua_State (created by luaopen_cbreaker_core). */
cb_lua_module *cb_lua_module_get(lua_State *L);

/* Queues a change of the breaker of `box` (an lbreaker; from the core's
 * callback: allocates no Lua memory, never raises). */
void cb_lua_queue(cb_lua_module *m, void *box, uint64_t serial, int from, int to, int reason);

/* How a method ends: `return cb_lua_finish(L, m, n)` with its n results on
 * top runs the Lua callbacks of the queued events, then returns the n
 * results.  The callbacks may yield (the method resumes the rest of them
 * afterwards).  An error raised by one is re-raised once every other has
 * run.  Call it last in any method whose core call can change a breaker's
 * state; with nothing queued it costs one test. */
int cb_lua_finish_k(lua_State *L, int status, lua_KContext ctx);

static inline int cb_lua_finish(lua_State *L, cb_lua_module *m, int n) {
    return m->count ? cb_lua_finish_k(L, LUA_OK, (lua_KContext)n << 1) : n;
}

/* The dispatch loop for a C function that has more to do afterwards (a
 * continuation of its own): runs the callbacks with lua_pcallk(..., ctx,
 * k), so after a callback that yielded k is resumed with (status, ctx) and
 * must call this again with them.  `kept` values on top are preserved;
 * bit 0 of ctx is this loop's (the first error, kept below them); the
 * caller's own context lives in the bits above.  Returns with the queue
 * empty; then cb_lua_events_raise raises a callback's error if one
 * failed. */
void cb_lua_events(lua_State *L, int status, lua_KContext *ctx, int kept, lua_KFunction k);
void cb_lua_events_raise(lua_State *L, lua_KContext ctx, int kept);

/* Runs the queued callbacks where they cannot yield (a function that must
 * go on in C afterwards and has no continuation).  Prefer cb_lua_finish. */
void cb_lua_dispatch(lua_State *L, cb_lua_module *m);

static inline void cb_lua_flush(lua_State *L, cb_lua_module *m) {
    if (m->count) cb_lua_dispatch(L, m);
}

/* ---- breaker box ------------------------------------------------------------ */

typedef struct lbreaker {
    cb_breaker *b;        /* NULL once closed or removed from its registry */
    cb_lua_module *m;
    uint64_t serial;      /* unique in the lua_State: events find their box by it */
    unsigned char owned;  /* frees b on close; a registry's breaker is borrowed */
    unsigned char measure;  /* call() times fn (slow-call tracking is on) */
    unsigned char classify; /* call() runs a classifier (CB_UV_CLASSIFY) */
    unsigned char rej_verdict;  /* CB_UV_REJECTION's verdict (CB_ALLOWED: none) */
    unsigned char notifies;     /* the core calls back for b with this box */
    unsigned char listed;       /* a registry's: in its list of b's boxes (lregistry.c) */
    uint16_t cached;            /* a registry's: 1 + its get cache slot, 0: none */
    double rej_until;     /* and the time it lasts until */
    struct lbreaker *next;  /* the next box of the same registry breaker */
    const char *gone;     /* why b is NULL: "closed" or "removed" */
} lbreaker;

/* User values of a breaker box. */
enum { CB_UV_ON_CHANGE = 1, CB_UV_CLASSIFY, CB_UV_CLOCK, CB_UV_OWNER, CB_UV_STORE,
       CB_UV_REJECTION,  /* its last rejection, handed out again while it holds */
       CB_UV_COUNT = 6 };

/* 1 when the value at `idx` can be called: a function, or a value whose
 * metatable has __call (br:call's and pool:run's fn). */
int cb_lua_callable(lua_State *L, int idx);

/* Returns the live breaker at `idx`, raising a clear error for anything else. */
lbreaker *cb_lua_checkbox(lua_State *L, int idx);

/* Pushes a new box for `b`: owned (freed with the box) or borrowed (from a
 * registry, whose userdata should be stored in CB_UV_OWNER).  It allocates:
 * a finalizer may run and free a borrowed `b` before the box holds it;
 * prefer cb_lua_newbox before the core call and cb_lua_box_set after. */
lbreaker *cb_lua_pushbreaker(lua_State *L, cb_breaker *b, int owned);

/* Pushes a new closed box ("closed"), to hold a breaker later. */
lbreaker *cb_lua_newbox(lua_State *L, int owned);

/* Makes `box` (from cb_lua_newbox) hold `b`.  Allocates nothing. */
void cb_lua_box_set(lbreaker *box, cb_breaker *b);

/* A registry's boxes live only while Lua holds them (lregistry.c).  Its
 * box's __gc takes it off the registry's list of the boxes of its breaker
 * (the list the registry closes when it frees the breaker). */
void cb_lua_registry_unlist(lua_State *L, int idx, lbreaker *box);

/* reg:get(tenant, key) when its cache holds the pair (the engine's call,
 * lpool.c), for the registry at `reg` (an upvalue's pseudo-index will do:
 * its remove hook runs in this frame): pushes the breaker's box and
 * returns 1; else 0, nothing pushed (call get).  t and k are the strings
 * of Lua values on the stack (the cache knows them by address). */
int cb_lua_registry_cached(lua_State *L, int reg, const char *t, const char *k);

/* Makes the registry keep box `idx` (live) as long as its breaker: called
 * when the box gets state of Lua's (on_change, classify, a store), which
 * must outlive Lua dropping the box.  Raises when another box of the same
 * breaker holds that state (a box brought back by a finalizer).  Runs no
 * finalizer. */
void cb_lua_registry_pin(lua_State *L, int idx, lbreaker *box);

/* Closes the box: frees an owned breaker, detaches a borrowed one.  `why`
 * is shown by methods called later ("closed", "removed from its registry"). */
void cb_lua_box_close(lua_State *L, lbreaker *box, const char *why);

/* ---- options ----------------------------------------------------------------- */

/* How to read one options table (lopts.c, against the core's schema). */
typedef struct cb_lua_optread {
    const char *ctx;   /* prefixes messages ("cbreaker.new"); "" for none */
    const char *path;  /* prefixes option names ("providers.openai"); "" for none */
    /* Called with a clock or a host value (a callback, a store, the arms) at
     * the top, once checked: the caller keeps it.  May be NULL (check only). */
    void (*keep)(lua_State *L, int which, void *ud);
    void *ud;
    int nested;        /* a registry's breaker options: no name, clock or host values */
    int configure;     /* a hot reload: options that only creation sets are refused */
    const char *deny;  /* nested: why name and clock cannot be set */
    int extra;         /* 0, or the stack index of a table of names the caller
                          handles (true: skipped, and suggested) or refuses
                          (false: unknown, and never suggested) */
} cb_lua_optread;

/* Why a registry's breaker options cannot hold a name or a clock. */
#define CB_LUA_NAMED_BY_KEY "a registry breaker is named by its key and uses the registry's clock"

/* `which` of keep: the clock, or a host value (the order of lopts.c's tables). */
enum { CB_KEEP_CLOCK = -1, CB_KEEP_CLASSIFY = 0, CB_KEEP_ON_CHANGE, CB_KEEP_STORE,
       CB_KEEP_ARMS = 0 };

/* Reads the options table at `idx` into `o` (which holds the defaults)
 * against schema `s`: raises on an unknown key (naming the closest valid
 * one), a wrong type or a value out of range, naming the option's path.
 * Rules between options are left to the core's *_opts_check. */
void cb_lua_read_opts(lua_State *L, int idx, const cb_optschema *s, void *o,
                      const cb_lua_optread *r);

/* A keep for objects whose only kept option is the clock: it goes to user
 * value *(const int *)ud of the object being built, at stack index 2.  Host
 * values (cb.redis's sentinels, master, cluster) are checked by the reader
 * and left to the caller. */
void cb_lua_keep_uv(lua_State *L, int which, void *ud);

/* The closest of `names` (NULL-terminated) to `s`, or NULL when none is
 * close enough to be a typo. */
const char *cb_lua_closest(const char *s, const char *const *names);

/* ---- messages ---------------------------------------------------------------- */

/* Pushes value `idx` as text for a message (luaL_tolstring's), and returns
 * it.  A __tostring that raises, yields or returns no string does not stop
 * the caller: the text then names the value's type. */
const char *cb_lua_describe(lua_State *L, int idx);

/* ---- module parts ---------------------------------------------------------- */

/* Each adds its functions to the module table at the top of the stack. */
void cb_lua_open_opts(lua_State *L);
void cb_lua_open_clock(lua_State *L);
void cb_lua_open_breaker(lua_State *L);
void cb_lua_open_rejection(lua_State *L);
void cb_lua_open_bandit(lua_State *L);
void cb_lua_open_pool(lua_State *L);
void cb_lua_open_registry(lua_State *L);
void cb_lua_open_store(lua_State *L);

/* Attaches the breaker of box `bidx` to the store at `sidx` (raising, with
 * `ctx`, when it cannot), keeps the store alive in the box's CB_UV_STORE and
 * runs the callbacks of what the boot import changed. */
void cb_lua_store_attach(lua_State *L, int sidx, int bidx, const char *ctx);

/* Pushes a bandit arm's stats table from a copy (lbandit.c; the pool's
 * stats too). */
void cb_lua_pusharmstats(lua_State *L, const cb_bandit_arm_stats *st);

/* ---- rejections ---------------------------------------------------------- */

/* A breaker's rejection (lrejection.c): a small userdata that holds what
 * the refusal was, not the breaker, and computes its fields when read.  A
 * refusal is told apart from the next by its verdict and the clock time it
 * lasts until, so a box hands out the same rejection again while those are
 * unchanged, and a refused call allocates nothing. */
typedef struct lrejection {
    double until;         /* refused until this time on `clock` (INFINITY: no wait helps) */
    double frozen;        /* >= 0: retry_after as made (no clock could be kept); < 0: live */
    cb_clock clock;       /* the breaker's, its Lua object kept by the rejection */
    unsigned char verdict;
} lrejection;

/* Pushes box `idx`'s last rejection when its breaker (live, just refused
 * with `v`) still refuses the same way, and returns 1; returns 0 having
 * pushed nothing otherwise.  Allocates nothing. */
static inline int cb_lua_lastrejection(lua_State *L, int idx, lbreaker *box, cb_verdict v) {
    double until = v == CB_REJECT_FORCED_OPEN ? INFINITY  /* as refused_until says, no call */
                                               : cb_breaker_refused_until(box->b);
    if (box->rej_verdict != v || box->rej_until != until) return 0;
    lua_getiuservalue(L, idx, CB_UV_REJECTION);  /* the box's copy of its key says it fits */
    return 1;
}

/* Pushes a new rejection for the live breaker of box `idx`, refused with
 * `v`, and keeps it as the box's last. */
void cb_lua_newrejection(lua_State *L, int idx, cb_verdict v);

/* Pushes box `idx`'s rejection for a refusal `v` of its live breaker. */
static inline void cb_lua_pushboxrejection(lua_State *L, int idx, lbreaker *box, cb_verdict v) {
    if (!cb_lua_lastrejection(L, idx, box, v)) cb_lua_newrejection(L, idx, v);
}

/* Pushes a rejection for `b` refused with `v`, without a box: its
 * retry_after is fixed when made unless `b` runs on the monotonic clock. */
void cb_lua_pushrejection(lua_State *L, cb_breaker *b, cb_verdict v);

#endif

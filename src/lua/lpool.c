/* lpool.c -- cbreaker.Pool: core.pool{...}, a provider pool (breakers plus
 * a bandit, by index; include/cbreaker_pool.h) for the engine's routing.
 *
 * Providers are numbered from 1 in Lua (the C index plus one).  Each
 * provider's breaker is handed to Lua as a borrowed box, like a registry's:
 * the pool keeps the boxes (a list in its user value) and closes every one
 * before it frees its breakers, so a box never outlives its breaker.  A box
 * keeps the pool alive (CB_UV_OWNER).
 *
 * State changes inside acquire, pick and record are dispatched to the
 * boxes' on_change callbacks once the core call has returned; the
 * callbacks may yield.  When one of them raises inside acquire, the permit
 * just taken is given back (recorded as ignored) before the error goes on,
 * so a raising callback never leaks a permit.
 *
 * pool:caller makes the engine's `call`: the session's permit, the
 * provider's, fn and the outcomes in one C function (engine_call).
 *
 * No raw pointer is kept across a Lua allocation or a callback: a finalizer
 * or a callback may close the pool there, so `lp->p` is read again after
 * each. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cbreaker_pool.h"
#include "lcbreaker.h"

typedef struct lpool {
    cb_pool *p;  /* NULL once closed */
    cb_lua_module *m;
    lua_Integer ran_ok, ran_error;  /* pool:run's calls, by fn's result */
    int fast;                       /* pool:caller's function runs calls itself */
} lpool;

/* User values of a pool: the providers' boxes and names, by index. */
enum { UV_BOXES = 1, UV_CLOCK, UV_NAMES, UV_COUNT = 3 };

/* Upvalues of every method after the class: the outcome names, so record
 * tells them apart by identity (short strings are interned), and the
 * breakers' metatable, which proves a session breaker for run. */
enum { UP_SUCCESS = CB_UP_FIRST, UP_FAILURE, UP_IGNORE, UP_BREAKER_MT, UP_COUNT = 4 };

static lpool *self(lua_State *L) {
    lpool *lp = cb_lua_checkself(L);
    if (!lp->p) luaL_error(L, "attempt to use a closed pool");
    return lp;
}

/* The provider at `idx` (1-based in Lua) as a C index; raises for none. */
static int checkprovider(lua_State *L, lpool *lp, int idx) {
    int isint = 0;
    lua_Integer i = lua_tointegerx(L, idx, &isint);
    if (!isint) luaL_typeerror(L, idx, "provider index");
    if (i < 1 || i > cb_pool_size(lp->p))
        luaL_argerror(L, idx, lua_pushfstring(L, "no provider %I (the pool has %d)",
                                              (LUAI_UACINT)i, cb_pool_size(lp->p)));
    return (int)i - 1;
}

/* An exclusion set (bit i - 1: provider i); nil is the empty set. */
static uint64_t optset(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx)) return 0;
    int isint = 0;
    lua_Integer v = lua_tointegerx(L, idx, &isint);
    if (!isint) luaL_typeerror(L, idx, "integer bit set");
    return (uint64_t)v;
}

/* ---- callbacks ---------------------------------------------------------------- */

/* The end of acquire with its two results on top: runs the queued
 * callbacks (they may yield).  When one raised, the permit acquire took is
 * given back (recorded as ignored) before the error goes on.  ctx: bit 0
 * is cb_lua_events'; above it, the chosen C index plus one (0: none). */
static int acquire_k(lua_State *L, int status, lua_KContext ctx) {
    cb_lua_events(L, status, &ctx, 2, acquire_k);
    if (ctx & 1) {
        int i = (int)(ctx >> 1) - 1;
        lpool *lp = lua_touserdata(L, 1);  /* self: on the stack, so alive */
        if (i >= 0 && lp->p) cb_pool_record(lp->p, i, CB_IGNORE, -1, 0);  /* read anew: a
                                                       callback may have closed the pool */
        cb_lua_events_raise(L, ctx, 2);
    }
    return 2;
}

/* ---- life cycle --------------------------------------------------------------- */

/* Keeps the bandit's clock alive: options.bandit.clock, read raw after the
 * reader checked it. */
static void keep_clock(lua_State *L, int opts, int pool) {
    lua_pushliteral(L, "bandit");
    if (lua_rawget(L, opts) == LUA_TTABLE) {
        lua_pushliteral(L, "clock");
        lua_rawget(L, -2);
        lua_setiuservalue(L, pool, UV_CLOCK);
    }
    lua_pop(L, 1);
}

/* core.pool{strategy=, discount=, bandit = {prior=, decay=, half_life=,
 * seed=, clock=}} -> an empty pool; providers come with pool:add. */
static int pool_new(lua_State *L) {
    const char *ctx = "cbreaker.pool";
    if (lua_isnoneornil(L, 1)) lua_newtable(L);
    else luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    /* The userdata first, closed: a raised error below leaks nothing. */
    lpool *lp = lua_newuserdatauv(L, sizeof *lp, UV_COUNT);
    lp->p = NULL;
    lp->m = cb_lua_module_get(L);
    lp->ran_ok = lp->ran_error = 0;
    lp->fast = 0;
    luaL_setmetatable(L, CB_POOL_MT);
    lua_newtable(L);
    lua_setiuservalue(L, 2, UV_BOXES);
    lua_newtable(L);
    lua_setiuservalue(L, 2, UV_NAMES);
    cb_pool_opts o;
    cb_pool_opts_init(&o);
    cb_lua_optread r = {ctx, "", NULL, NULL, 0, 0, NULL, 0};
    cb_lua_read_opts(L, 1, &cb_pool_schema, &o, &r);
    const char *bad = cb_pool_opts_check(&o);
    if (bad) return luaL_error(L, "%s: %s", ctx, bad);
    keep_clock(L, 1, 2);
    lp->p = cb_pool_new(&o);
    if (!lp->p) return luaL_error(L, "%s: out of memory", ctx);
    return 1;
}

static int pool_close(lua_State *L) {
    lpool *lp = cb_lua_checkself(L);
    if (lp->p) {
        cb_pool *p = lp->p;
        lp->p = NULL;
        lua_getiuservalue(L, 1, UV_BOXES);  /* boxes */
        lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
        for (lua_Integer k = 1; k <= n; k++) {  /* closing allocates nothing */
            if (lua_rawgeti(L, -1, k) == LUA_TUSERDATA)
                cb_lua_box_close(L, lua_touserdata(L, -1), "closed");
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
        cb_pool_free(p);  /* no box points at its breakers now */
    }
    cb_lua_forgetself(L, lp);
    return 0;
}

static int pool_gc(lua_State *L) {
    pool_close(L);
    cb_lua_finalized(L, lua_touserdata(L, 1));  /* the memory goes next */
    return 0;
}

static int pool_tostring(lua_State *L) {
    lpool *lp = cb_lua_checkself(L);
    if (!lp->p) lua_pushliteral(L, "cbreaker.Pool (closed)");
    else lua_pushfstring(L, "cbreaker.Pool (%d providers)", cb_pool_size(lp->p));
    return 1;
}

/* ---- providers ------------------------------------------------------------------ */

/* Keeps what pool:add's reader found in the box at stack index 3: the
 * classifier and the clock in its user values; a callback or a store is
 * noted (*ud) and set once the breaker exists. */
static void keep_add(lua_State *L, int which, void *ud) {
    if (which == CB_KEEP_ON_CHANGE || which == CB_KEEP_STORE) {
        *(int *)ud |= which == CB_KEEP_ON_CHANGE ? 1 : 2;
        return;
    }
    if (which == CB_KEEP_CLASSIFY) ((lbreaker *)lua_touserdata(L, 3))->classify = 1;  /* br:call runs it */
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 3, which == CB_KEEP_CLASSIFY ? CB_UV_CLASSIFY : CB_UV_CLOCK);
}

/* pool:add{name=, <cb.new options>} -> index, breaker: a provider with a
 * closed breaker made from the options and a bandit arm.  The breaker is
 * the pool's (closed with it); its on_change, classify and store options
 * act as cb.new's. */
static int pool_add(lua_State *L) {
    const char *ctx = "pool:add";
    self(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    lbreaker *box = cb_lua_newbox(L, 0);  /* pool, opts, box: closed until it holds one */
    lua_pushvalue(L, 1);
    lua_setiuservalue(L, 3, CB_UV_OWNER);  /* the box keeps the pool alive */
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    o.name = NULL;
    int later = 0;
    cb_lua_optread r = {ctx, "", keep_add, &later, 0, 0, NULL, 0};
    cb_lua_read_opts(L, 2, &cb_breaker_schema, &o, &r);
    if (!o.name || !*o.name) return luaL_error(L, "%s: option 'name' must be a non-empty string", ctx);
    const char *bad = cb_breaker_opts_check(&o);
    if (bad) return luaL_error(L, "%s: %s", ctx, bad);
    lpool *lp = self(L);  /* again: the reader allocated */
    if (cb_pool_find(lp->p, o.name) >= 0)
        return luaL_error(L, "%s: provider '%s' is added twice", ctx, o.name);
    int n = cb_pool_size(lp->p);
    if (n >= CB_POOL_MAX_PROVIDERS)
        return luaL_error(L, "%s: too many providers (at most %d)", ctx, CB_POOL_MAX_PROVIDERS);
    lua_getiuservalue(L, 1, UV_NAMES);  /* pool, opts, box, names */
    lua_pushstring(L, o.name);
    lua_rawseti(L, 4, n + 1);  /* the name for run's fn, kept first: it may allocate */
    lua_pop(L, 1);
    lua_getiuservalue(L, 1, UV_BOXES);  /* pool, opts, box, boxes */
    lua_pushvalue(L, 3);
    lua_rawseti(L, 4, n + 1);  /* listed while closed: may allocate */
    lp = self(L);
    int i = cb_pool_add(lp->p, &o);  /* no Lua code runs from here ... */
    if (i < 0) {
        lua_pushnil(L);
        lua_rawseti(L, 4, n + 1);
        return luaL_error(L, "%s: out of memory", ctx);
    }
    cb_lua_box_set(box, cb_pool_breaker(lp->p, i));  /* ... to here: live and listed */
    if (later & 1) {  /* br:on_change(fn), the breaker's own way to set it */
        lua_getfield(L, 3, "on_change");
        lua_pushvalue(L, 3);
        lua_getfield(L, 2, "on_change");
        lua_call(L, 2, 0);
    }
    if (later & 2) {  /* raises when it cannot attach: the provider stays, detached */
        lua_getfield(L, 2, "store");
        cb_lua_store_attach(L, -1, 3, ctx);
        lua_pop(L, 1);
    }
    lua_pushinteger(L, i + 1);
    lua_pushvalue(L, 3);
    return 2;
}

/* pool:breaker(i) -> provider i's breaker. */
static int pool_breaker(lua_State *L) {
    lpool *lp = self(L);
    int i = checkprovider(L, lp, 2);
    lua_getiuservalue(L, 1, UV_BOXES);
    lua_rawgeti(L, -1, i + 1);
    return 1;
}

static int pool_size(lua_State *L) {
    lua_pushinteger(L, cb_pool_size(self(L)->p));
    return 1;
}

/* pool:find(name) -> the index of provider `name`, or nil. */
static int pool_find(lua_State *L) {
    lpool *lp = self(L);
    int i = cb_pool_find(lp->p, luaL_checkstring(L, 2));
    if (i < 0) lua_pushnil(L); else lua_pushinteger(L, i + 1);
    return 1;
}

/* ---- hot path ------------------------------------------------------------------- */

/* pool:acquire([tried]) -> i, tried (a permit of provider i is taken: one
 * record is owed), or nil, retry_after.  `tried` is a bit set (bit i - 1:
 * provider i) left out of the choice; the one returned adds every provider
 * chosen, for the next attempt of the same call. */
static int pool_acquire(lua_State *L) {
    lpool *lp = self(L);
    uint64_t tried = optset(L, 2);
    double ra = 0;
    int i = cb_pool_acquire(lp->p, &tried, &ra);
    if (i < 0) {
        lua_pushnil(L);
        lua_pushnumber(L, ra);
    } else {
        lua_pushinteger(L, i + 1);
        lua_pushinteger(L, (lua_Integer)tried);
    }
    return lp->m->count ? acquire_k(L, LUA_OK, (lua_KContext)(i + 1) << 1) : 2;
}

/* pool:pick([excluded]) -> i, or nil, retry_after.  Takes no permit. */
static int pool_pick(lua_State *L) {
    lpool *lp = self(L);
    double ra = 0;
    int i = cb_pool_pick(lp->p, optset(L, 2), &ra);
    if (i < 0) {
        lua_pushnil(L);
        lua_pushnumber(L, ra);
        return cb_lua_finish(L, lp->m, 2);
    }
    lua_pushinteger(L, i + 1);
    return cb_lua_finish(L, lp->m, 1);
}

/* The outcome at `idx`: a name, or a boolean (true: success). */
static cb_outcome checkoutcome(lua_State *L, int idx) {
    if (lua_rawequal(L, idx, lua_upvalueindex(UP_SUCCESS))) return CB_SUCCESS;
    if (lua_rawequal(L, idx, lua_upvalueindex(UP_FAILURE))) return CB_FAILURE;
    if (lua_rawequal(L, idx, lua_upvalueindex(UP_IGNORE))) return CB_IGNORE;
    if (lua_isboolean(L, idx)) return lua_toboolean(L, idx) ? CB_SUCCESS : CB_FAILURE;
    return (cb_outcome)luaL_checkoption(L, idx, NULL, cb_outcome_names);
}

static double optnumber(lua_State *L, int idx, double none, const char *what) {
    if (lua_isnoneornil(L, idx)) return none;
    double v = luaL_checknumber(L, idx);
    if (!(v >= 0) || isinf(v)) luaL_argerror(L, idx, what);
    return v;
}

/* pool:record(i, outcome [, ms [, retry_after]]): the outcome of a call to
 * provider i ("success", "failure", "ignore", or a boolean for the first
 * two), with its latency and the retry-after a refusal announced. */
static int pool_record(lua_State *L) {
    lpool *lp = self(L);
    int i = checkprovider(L, lp, 2);
    cb_outcome outcome = checkoutcome(L, 3);
    double ms = optnumber(L, 4, -1, "latency must be a finite number of ms >= 0");
    double ra = optnumber(L, 5, 0, "retry_after must be a finite number of seconds >= 0");
    cb_pool_record(lp->p, i, outcome, ms, ra);
    return cb_lua_finish(L, lp->m, 0);  /* the callbacks may yield */
}

/* fn (at `fn`) has returned (ok) or raised: the outcome recorded on
 * provider i (t0: when it started, -1 when not timed) and on the
 * session's breaker (a box or false at `session`), both read anew: fn may
 * have closed the pool or removed the session.  A fn that was not
 * callable is misuse: both permits are given back and the error raised. */
static void record_ran(lua_State *L, lpool *lp, int i, int session, double t0, int ok, int fn) {
    int misuse = !ok && !cb_lua_callable(L, fn);  /* first: it pushes a string */
    lbreaker *sbox = lua_touserdata(L, session);
    cb_breaker *sb = sbox ? sbox->b : NULL;
    int live = lp->p && i < cb_pool_size(lp->p);
    if (misuse) {  /* not a provider failure */
        if (live) cb_pool_record(lp->p, i, CB_IGNORE, -1, 0);
        if (sb) cb_breaker_record(sb, CB_IGNORE, -1, 0);
        cb_lua_flush(L, lp->m);
        luaL_error(L, "bad argument #3 to 'call' (function expected, got %s)", luaL_typename(L, fn));
    }
    if (live) {
        double ms = t0 >= 0 ? (cb_breaker_now(cb_pool_breaker(lp->p, i)) - t0) * 1000 : -1;
        cb_pool_record(lp->p, i, ok ? CB_SUCCESS : CB_FAILURE, ms >= 0 ? ms : -1, 0);
        if (ok) lp->ran_ok++; else lp->ran_error++;
    }
    if (sb) cb_breaker_record(sb, ok ? CB_SUCCESS : CB_FAILURE, -1, 0);
}

/* fn has returned or raised (status). */
static int run_k(lua_State *L, int status, lua_KContext ctx) {
    (void)ctx;
    lpool *lp = lua_touserdata(L, 1);  /* self: on the stack, so alive */
    int ok = status == LUA_OK || status == LUA_YIELD;
    record_ran(L, lp, (int)lua_tointeger(L, 2) - 1, 3, lua_tonumber(L, 4), ok, 5);
    lua_pushboolean(L, ok);
    lua_replace(L, 5);  /* pool, i, session, t0, ok, results... */
    return cb_lua_finish(L, lp->m, lua_gettop(L) - 4);
}

/* pool:run from fn on: the stack is pool, i, session, fn, fn's arguments. */
static int run_from(lua_State *L, int i) {
    int nargs = lua_gettop(L) - 4;  /* fn's own, after the name */
    luaL_checkstack(L, 4, "pool:run");
    lua_getiuservalue(L, 1, UV_BOXES);
    lua_rawgeti(L, -1, i + 1);
    lbreaker *box = lua_touserdata(L, -1);
    double t0 = box && box->b && box->measure ? cb_breaker_now(box->b) : -1;
    lua_pop(L, 2);
    lua_pushnumber(L, t0);
    lua_insert(L, 4);  /* pool, i, session, t0, fn, args... */
    lua_pushvalue(L, 5);  /* fn, kept at 5 for the misuse check */
    lua_getiuservalue(L, 1, UV_NAMES);
    lua_rawgeti(L, -1, i + 1);
    lua_remove(L, -2);
    lua_rotate(L, 6, 2);  /* pool, i, session, t0, fn, fn, name, args... */
    return run_k(L, lua_pcallk(L, nargs + 1, LUA_MULTRET, 0, 0, run_k), 0);
}

/* pool:run(i, session, fn, ...) -> ok, ...: the rest of a call once
 * acquire gave provider i a permit, in one C call: fn(name of i, ...) in
 * protected mode; its outcome (success unless it raised) recorded on
 * provider i, with the latency when its breaker tracks slow calls, and
 * on `session` (a breaker that gave a permit, or false); then the
 * callbacks of what that changed.  fn and the callbacks may yield.  A
 * provider or session closed or removed while fn ran is not recorded on.
 * A fn that is not callable is misuse: both permits are given back
 * (recorded as ignored) and the error raised.  Counted by pool:ran().
 *
 * The stack, once fn is running: pool, i, session, t0, fn, fn's results. */
static int pool_run(lua_State *L) {
    lpool *lp = self(L);
    int i = checkprovider(L, lp, 2);
    if (lua_toboolean(L, 3)) {  /* a live breaker: the session's */
        lbreaker *sb = lua_touserdata(L, 3);
        if (!sb || !lua_getmetatable(L, 3) || !lua_rawequal(L, -1, lua_upvalueindex(UP_BREAKER_MT)))
            return luaL_typeerror(L, 3, "cbreaker.Breaker or false");
        lua_pop(L, 1);
        if (!sb->b) {  /* removed since its permit (by a callback of its allow): */
            lua_pushboolean(L, 0);  /* the call goes on without it, as when fn removes it */
            lua_replace(L, 3);
        }
    } else {
        lua_pushboolean(L, 0);
        lua_replace(L, 3);
    }
    luaL_checkany(L, 4);
    return run_from(L, i);
}

/* ---- the engine's call ------------------------------------------------------------ */

/* Upvalues of the function pool:caller makes. */
enum { EC_ENGINE = 1, EC_POOL, EC_SLOW, EC_NONE, EC_REFUSED, EC_REST, EC_GET, EC_SESSIONS,
       EC_NAMES, EC_BOXES, EC_COUNT = EC_BOXES };

/* A fast call's stack, in place: nothing is moved, as lua_insert and
 * lua_remove cost a rotation each.  It starts as engine, tenant, session,
 * fn, args; the engine is an upvalue too, so once the session's breaker is
 * known it takes slot 1 (S_SESSION: the breaker, or false), and when the
 * chosen provider times its calls the start takes the tenant's (S_T0); fn
 * is called with copies of the arguments pushed above them, and its
 * results end up last.  The continuation's context says the rest: the
 * number of arguments, the provider and whether it was timed. */
enum { S_SESSION = 1, S_T0 = 2, S_FN = 4, S_ARGS = 5 };
#define CTX_NARGS(c) ((int)((c) & 0xffff))
#define CTX_INDEX(c) ((int)(((c) >> 16) & 0xff))
#define CTX_TIMED ((lua_KContext)1 << 24)
_Static_assert(CB_POOL_MAX_PROVIDERS <= 0x100, "a provider's index fits the context's byte");

/* call_chosen's `i` when the session said no; call_acquired's when the
 * provider is still to be chosen, after the session's callbacks. */
enum { SESSION_REFUSED = -2, PROVIDER_NEXT = -3 };

/* All that a Lua function called last returned. */
static int all_k(lua_State *L, int status, lua_KContext ctx) {
    (void)status;
    (void)ctx;
    return lua_gettop(L);
}

/* Calls the Lua function at upvalue `up` with the stack as its arguments
 * (it may yield); returns all it returns. */
static int call_up(lua_State *L, int up) {
    lua_pushvalue(L, lua_upvalueindex(up));
    lua_insert(L, 1);
    lua_callk(L, lua_gettop(L) - 1, LUA_MULTRET, 0, all_k);
    return lua_gettop(L);
}

/* engine:call through the engine's Lua function, with the arguments as
 * given (slot 1 still the engine). */
static int call_slow(lua_State *L) {
    return call_up(L, EC_SLOW);
}

/* fn has returned or raised (status); ctx as call_provider made it. */
static int fast_ran(lua_State *L, int status, lua_KContext ctx) {
    lpool *lp = lua_touserdata(L, lua_upvalueindex(EC_POOL));  /* an upvalue: alive */
    int ok = status == LUA_OK || status == LUA_YIELD, nargs = CTX_NARGS(ctx);
    record_ran(L, lp, CTX_INDEX(ctx), S_SESSION, ctx & CTX_TIMED ? lua_tonumber(L, S_T0) : -1,
               ok, S_FN);
    lua_pushboolean(L, ok);
    lua_replace(L, S_FN + nargs);  /* fn's slot, or its last argument's: ok, results */
    return cb_lua_finish(L, lp->m, lua_gettop(L) - (S_FN - 1) - nargs);
}

/* Provider i runs fn(name of i, args...) in protected mode (as pool:run). */
static int call_provider(lua_State *L, lpool *lp, int i) {
    if (!lp->p || i >= cb_pool_size(lp->p)) return luaL_error(L, "attempt to use a closed pool");
    int nargs = lua_gettop(L) - S_FN;
    if (nargs > LUA_MINSTACK - 8) luaL_checkstack(L, nargs + 3, "engine:call");
    lua_KContext ctx = (lua_KContext)nargs | (lua_KContext)i << 16;
    lua_rawgeti(L, lua_upvalueindex(EC_BOXES), i + 1);
    lbreaker *box = lua_touserdata(L, -1);
    if (box && box->b && box->measure) {
        lua_pushnumber(L, cb_breaker_now(box->b));
        lua_replace(L, S_T0);
        ctx |= CTX_TIMED;
    }
    lua_pushvalue(L, S_FN);  /* over the box: fn, name, args */
    lua_replace(L, -2);
    lua_rawgeti(L, lua_upvalueindex(EC_NAMES), i + 1);
    for (int k = S_ARGS; k < S_ARGS + nargs; k++) lua_pushvalue(L, k);
    return fast_ran(L, lua_pcallk(L, nargs + 1, LUA_MULTRET, 0, ctx, fast_ran), ctx);
}

/* After the permits and their callbacks: provider i takes fn, or when none
 * may (-1, retry_after `ra`) the engine's `none`(engine, sbr, ra, tenant,
 * session, fn, ...) answers, or when the session refused the engine's
 * `refused`(engine, sbr, tenant, session).  The stack: sbr (the session's
 * breaker, or false), tenant, session, fn, args. */
static int call_chosen(lua_State *L, lpool *lp, int i, double ra) {
    if (i >= 0) return call_provider(L, lp, i);
    if (i == SESSION_REFUSED) {
        lua_settop(L, 3);
    } else {
        lua_pushnumber(L, ra);
        lua_insert(L, 2);
    }
    lua_pushvalue(L, lua_upvalueindex(EC_ENGINE));
    lua_insert(L, 1);
    return call_up(L, i == SESSION_REFUSED ? EC_REFUSED : EC_NONE);
}

static int call_acquire(lua_State *L, lpool *lp);

/* The callbacks of the session's allow, then of the acquire (they may
 * yield; when one raises, the permits taken are given back first), with
 * i + 1 (0: none, SESSION_REFUSED + 1: refused, PROVIDER_NEXT + 1: not
 * chosen yet) and retry_after on top of the stack; then call_chosen, or
 * the acquire. */
static int call_acquired(lua_State *L, int status, lua_KContext ctx) {
    lpool *lp = lua_touserdata(L, lua_upvalueindex(EC_POOL));  /* an upvalue: alive */
    cb_lua_events(L, status, &ctx, 2, call_acquired);
    int i = (int)lua_tointeger(L, -2) - 1;
    double ra = lua_tonumber(L, -1);
    if (ctx & 1) {  /* read anew: a callback may have closed the pool or the session */
        if (lp->p && i >= 0 && i < cb_pool_size(lp->p)) cb_pool_record(lp->p, i, CB_IGNORE, -1, 0);
        lbreaker *sb = lua_touserdata(L, S_SESSION);
        if (sb && sb->b && i != SESSION_REFUSED) cb_breaker_record(sb->b, CB_IGNORE, -1, 0);
        cb_lua_events_raise(L, ctx, 2);
    }
    lua_pop(L, 2);
    return i == PROVIDER_NEXT ? call_acquire(L, lp) : call_chosen(L, lp, i, ra);
}

/* Runs the callbacks queued so far (see call_acquired), then goes on with
 * `i`, as call_acquired says. */
static int call_events(lua_State *L, lpool *lp, int i, double ra) {
    if (!lp->m->count) return i == PROVIDER_NEXT ? call_acquire(L, lp) : call_chosen(L, lp, i, ra);
    lua_pushinteger(L, i + 1);
    lua_pushnumber(L, ra);
    return call_acquired(L, LUA_OK, 0);
}

/* The provider's permit.  The session's callbacks may have closed the
 * pool: then its permit is given back, and the call raises; or changed
 * the policy: then the engine's `rest`(engine, sbr, tenant, session, fn,
 * ...) goes on with it. */
static int call_acquire(lua_State *L, lpool *lp) {
    if (!lp->p) {
        lbreaker *sb = lua_touserdata(L, S_SESSION);
        if (sb && sb->b) cb_breaker_record(sb->b, CB_IGNORE, -1, 0);
        return luaL_error(L, "attempt to use a closed pool");
    }
    if (!lp->fast) {
        lua_pushvalue(L, lua_upvalueindex(EC_ENGINE));
        lua_insert(L, 1);
        return call_up(L, EC_REST);
    }
    uint64_t tried = 0;
    double ra = 0;
    int i = cb_pool_acquire(lp->p, &tried, &ra);
    return call_events(L, lp, i, ra);
}

/* The session's permit (when there is a session breaker) and its
 * callbacks, then the provider's, as the Lua call takes them. */
static int call_permits(lua_State *L, lpool *lp) {
    lbreaker *sb = lua_touserdata(L, S_SESSION);
    if (!sb) return call_acquire(L, lp);
    return call_events(L, lp,  /* sb->b: checked by session_got and the cache */
                       cb_breaker_allow(sb->b) == CB_ALLOWED ? PROVIDER_NEXT : SESSION_REFUSED, 0);
}

/* The registry's get has answered (it may have run callbacks, which may
 * yield): the session's breaker and nil, or nil and why not (full: the
 * engine's `refused` answers). */
static int session_got(lua_State *L, int status, lua_KContext ctx) {
    (void)status;
    (void)ctx;
    lpool *lp = lua_touserdata(L, lua_upvalueindex(EC_POOL));
    lbreaker *sb = lua_touserdata(L, -2);
    if (lua_isnil(L, -2) && lp->fast && lp->p) {  /* full: said without asking twice */
        lua_replace(L, S_FN);  /* why, over fn */
        lua_settop(L, S_FN);   /* engine, tenant, session, why */
        lua_pushboolean(L, 0);
        lua_insert(L, 2);
        return call_up(L, EC_REFUSED);
    }
    if (!sb || !sb->b || !lp->fast || !lp->p) {  /* a callback may have removed it */
        lua_pop(L, 2);
        return call_slow(L);
    }
    lua_pop(L, 1);
    lua_replace(L, S_SESSION);
    return call_permits(L, lp);
}

/* engine:call(tenant, session, fn, ...) for the engine of pool:caller:
 * while the pool is set fast (pool:caller's engine: one attempt, no
 * classifier, no provider hook, open), the session's permit, the
 * provider's, fn and both outcomes in one C call; anything else, a
 * misuse or a key the registry cannot take included, goes to the
 * engine's Lua function. */
static int engine_call(lua_State *L) {
    lpool *lp = lua_touserdata(L, lua_upvalueindex(EC_POOL));
    if (!lp->fast || !lp->p || !lua_rawequal(L, 1, lua_upvalueindex(EC_ENGINE))) {
        if (!lua_getmetatable(L, 1) || !lua_getmetatable(L, lua_upvalueindex(EC_ENGINE)) ||
            !lua_rawequal(L, -1, -2))  /* not an engine: said here, at the caller's line */
            return luaL_error(L, "engine:call: self must be a cbreaker.Engine (got %s)",
                              luaL_typename(L, 1));
        if (!lp->p && lua_rawequal(L, 1, lua_upvalueindex(EC_ENGINE)))  /* a kept `call` */
            return luaL_error(L, "engine:call: the engine is closed");
        lua_settop(L, lua_gettop(L) - 2);
        return call_slow(L);
    }
    int top = lua_gettop(L);
    if (top < S_FN) lua_settop(L, S_FN);  /* no fn: misuse, found once pcall fails */
    else if (top - S_FN > CTX_NARGS(-1)) return call_slow(L);  /* past the context */
    int sessions = !lua_isnil(L, lua_upvalueindex(EC_SESSIONS));
    for (int k = 2; k <= 3; k++)  /* as Engine.call says it, at the caller's line */
        if (sessions ? lua_type(L, k) != LUA_TSTRING : lua_isnil(L, k))
            return luaL_error(L, "%s must be a string (got %s)", k == 2 ? "tenant" : "session",
                              luaL_typename(L, k));
    if (!sessions) {
        lua_pushboolean(L, 0);  /* no session breaker */
        lua_replace(L, S_SESSION);
        return call_permits(L, lp);
    }
    size_t tl, kl;
    const char *t = lua_tolstring(L, 2, &tl), *k = lua_tolstring(L, 3, &kl);
    if (tl > CB_REGISTRY_MAX_KEY || kl > CB_REGISTRY_MAX_KEY)
        return call_slow(L);  /* the Lua call's refusal: "key too long" */
    if (cb_lua_registry_cached(L, lua_upvalueindex(EC_SESSIONS), t, k)) {  /* get's answer */
        lua_replace(L, S_SESSION);
        return call_permits(L, lp);
    }
    lua_pushvalue(L, lua_upvalueindex(EC_GET));
    lua_pushvalue(L, lua_upvalueindex(EC_SESSIONS));
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 3);
    lua_callk(L, 3, 2, 0, session_got);
    return session_got(L, LUA_OK, 0);
}

/* pool:caller(engine, slow, none, refused, rest[, sessions]) -> the
 * engine's `call` (see engine_call): slow(engine, tenant, session, fn,
 * ...) is the engine's Lua call, none its answer when no provider may take
 * a fast call, refused(engine, sbr, tenant, session[, why]) when the
 * session's breaker sbr does not or the registry is full (sbr false, why:
 * get's reason), rest(engine, sbr, tenant, session, fn, ...) the Lua call
 * past the session's permit; sessions the engine's registry, when it has
 * one.  Fast calls wait for pool:fast(true). */
static int pool_caller(lua_State *L) {
    self(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    for (int k = 3; k <= 6; k++) luaL_checktype(L, k, LUA_TFUNCTION);
    int sessions = !lua_isnoneornil(L, 7);
    if (sessions) luaL_checkudata(L, 7, CB_REGISTRY_MT);
    lua_settop(L, 7);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, 1);
    for (int k = 3; k <= 6; k++) lua_pushvalue(L, k);
    if (sessions) lua_getfield(L, 7, "get");
    else lua_pushnil(L);
    lua_pushvalue(L, 7);
    lua_getiuservalue(L, 1, UV_NAMES);  /* the pool's tables, for its life */
    lua_getiuservalue(L, 1, UV_BOXES);
    lua_pushcclosure(L, engine_call, EC_COUNT);
    return 1;
}

/* pool:fast(on): whether pool:caller's function runs calls itself (the
 * engine says so whenever its policy or state changes). */
static int pool_fast(lua_State *L) {
    lpool *lp = self(L);
    luaL_checktype(L, 2, LUA_TBOOLEAN);
    lp->fast = lua_toboolean(L, 2);
    return 0;
}

/* pool:ran() -> ok, error: how many of pool:run's calls returned and
 * raised (calls made while the pool was closed are not counted). */
static int pool_ran(lua_State *L) {
    lpool *lp = self(L);
    lua_pushinteger(L, lp->ran_ok);
    lua_pushinteger(L, lp->ran_error);
    return 2;
}

/* ---- the rest ------------------------------------------------------------------- */

/* Pushes provider i's stats.  Everything is read before the first
 * allocation: a finalizer run there may close the pool. */
static void push_stats(lua_State *L, lpool *lp, int i) {
    cb_pool_stats st;
    cb_pool_get_stats(lp->p, i, &st);
    cb_pool_opts o;
    cb_pool_get_opts(lp->p, &o);
    cb_bandit_arm_stats arm;
    int thompson = o.strategy == CB_POOL_THOMPSON;
    if (thompson) cb_bandit_get_stats(cb_pool_bandit(lp->p), i, &arm);
    lua_pushstring(L, cb_breaker_name(cb_pool_breaker(lp->p, i)));  /* copied, then collects */
    lua_createtable(L, 0, 6);  /* name, st */
    lua_insert(L, -2);
    lua_setfield(L, -2, "name");
    lua_pushinteger(L, (lua_Integer)st.picked);
    lua_setfield(L, -2, "picked");
    lua_pushinteger(L, (lua_Integer)st.acquired);
    lua_setfield(L, -2, "acquired");
    lua_pushinteger(L, (lua_Integer)st.refused);
    lua_setfield(L, -2, "refused");
    lua_pushinteger(L, (lua_Integer)st.discounts);
    lua_setfield(L, -2, "discounts");
    if (thompson) {
        cb_lua_pusharmstats(L, &arm);
        lua_setfield(L, -2, "bandit");
    }
}

/* pool:stats(i) -> {name=, picked=, acquired=, refused=, discounts=,
 * bandit = {alpha=, beta=, ...} (Thompson)}; pool:stats() -> a list of
 * them, by index. */
static int pool_stats(lua_State *L) {
    lpool *lp = self(L);
    if (!lua_isnoneornil(L, 2)) {
        int i = checkprovider(L, lp, 2);
        push_stats(L, lp, i);
        return 1;
    }
    lua_createtable(L, cb_pool_size(lp->p), 0);
    /* self again before each provider: a finalizer run by the last
     * allocation may have closed the pool */
    for (int i = 0; i < cb_pool_size((lp = self(L))->p); i++) {
        push_stats(L, lp, i);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

/* pool:reset(i): a fresh start for provider i's bandit evidence (the
 * breaker is the caller's to reset). */
static int pool_reset(lua_State *L) {
    lpool *lp = self(L);
    cb_bandit_reset(cb_pool_bandit(lp->p), checkprovider(L, lp, 2));
    return 0;
}

/* pool:configure{discount=, bandit = {prior=, decay=, half_life=, clock=}}:
 * a hot reload; what is not given keeps its value. */
static int pool_configure(lua_State *L) {
    const char *ctx = "pool:configure";
    lpool *lp = self(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    cb_pool_opts o;
    cb_pool_get_opts(lp->p, &o);
    cb_lua_optread r = {ctx, "", NULL, NULL, 0, 1, NULL, 0};
    cb_lua_read_opts(L, 2, &cb_pool_schema, &o, &r);
    const char *bad = cb_pool_opts_check(&o);
    if (bad) return luaL_error(L, "%s: %s", ctx, bad);
    lp = self(L);
    if (cb_pool_configure(lp->p, &o) != CB_OK) return luaL_error(L, "%s: invalid options", ctx);
    lua_pushliteral(L, "bandit");
    if (lua_rawget(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "clock");
        if (lua_rawget(L, -2) != LUA_TNIL) lua_setiuservalue(L, 1, UV_CLOCK);  /* now in use */
    }
    return 0;
}

/* pool:options() -> {strategy=, discount=, bandit = {prior=, decay=,
 * half_life=, seed=}}. */
static int pool_options(lua_State *L) {
    cb_pool_opts o;
    cb_pool_get_opts(self(L)->p, &o);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, cb_pool_strategy_names[o.strategy]);
    lua_setfield(L, -2, "strategy");
    lua_pushnumber(L, o.discount);
    lua_setfield(L, -2, "discount");
    lua_createtable(L, 0, 4);
    lua_createtable(L, 2, 0);
    lua_pushnumber(L, o.bandit.prior_alpha);
    lua_rawseti(L, -2, 1);
    lua_pushnumber(L, o.bandit.prior_beta);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "prior");
    lua_pushnumber(L, o.bandit.decay);
    lua_setfield(L, -2, "decay");
    lua_pushnumber(L, o.bandit.half_life);
    lua_setfield(L, -2, "half_life");
    lua_pushinteger(L, (lua_Integer)o.bandit.seed);
    lua_setfield(L, -2, "seed");
    lua_setfield(L, -2, "bandit");
    return 1;
}

static const luaL_Reg pool_methods[] = {
    {"acquire", pool_acquire},
    {"record", pool_record},
    {"pick", pool_pick},
    {"run", pool_run},
    {"ran", pool_ran},
    {"caller", pool_caller},
    {"fast", pool_fast},
    {"add", pool_add},
    {"breaker", pool_breaker},
    {"size", pool_size},
    {"find", pool_find},
    {"stats", pool_stats},
    {"reset", pool_reset},
    {"configure", pool_configure},
    {"options", pool_options},
    {"close", pool_close},
    {NULL, NULL}
};

static const luaL_Reg pool_meta[] = {
    {"__gc", pool_gc},
    {"__close", pool_close},
    {"__tostring", pool_tostring},
    {NULL, NULL}
};

static const luaL_Reg pool_funcs[] = {
    {"pool", pool_new},
    {NULL, NULL}
};

void cb_lua_open_pool(lua_State *L) {
    lua_pushstring(L, cb_outcome_names[CB_SUCCESS]);
    lua_pushstring(L, cb_outcome_names[CB_FAILURE]);
    lua_pushstring(L, cb_outcome_names[CB_IGNORE]);
    luaL_getmetatable(L, CB_BREAKER_MT);
    cb_lua_newclass(L, CB_CLASS_POOL, CB_POOL_MT, pool_methods, pool_meta, UP_COUNT);
    luaL_setfuncs(L, pool_funcs, 0);
}

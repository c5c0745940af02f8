/* lbreaker.c -- cbreaker.Breaker: cb.new{...} and the breaker's methods.
 *
 * The hot methods (allow, success, failure, call) find their metatable and
 * their result strings in upvalues instead of the registry, which keeps a
 * guarded call close to the cost of the method call itself. */
#include <math.h>
#include <string.h>

#include "lcbreaker.h"

/* Upvalues of every method after the class (CB_UP_CLASS): the rejection
 * reasons. */
enum { UP_OPEN = CB_UP_FIRST, UP_FORCED, UP_HALF, UP_COUNT = 3 };

/* Raises for a box whose breaker is gone.  Methods call it after reading
 * their arguments: converting one (a number to a string) allocates, and a
 * finalizer run there may close the breaker. */
static lbreaker *checkopen(lua_State *L, lbreaker *box) {
    if (!box->b) luaL_error(L, "attempt to use a %s breaker", box->gone);
    return box;
}

/* A breaker argument of another class's function (store:attach): what
 * that object keeps of it must outlive Lua dropping a registry's box. */
lbreaker *cb_lua_checkbox(lua_State *L, int idx) {
    lbreaker *box = checkopen(L, luaL_checkudata(L, idx, CB_BREAKER_MT));
    if (box->listed) cb_lua_registry_pin(L, idx, box);
    return box;
}

/* `self` of a method: a live breaker. */
static lbreaker *self(lua_State *L) {
    return checkopen(L, cb_lua_checkself(L));
}

static double optlatency(lua_State *L, int idx) {
    if (lua_gettop(L) < idx || lua_isnil(L, idx)) return -1;  /* gettop is cheapest */
    double ms = luaL_checknumber(L, idx);
    if (!(ms >= 0) || isinf(ms)) luaL_argerror(L, idx, "latency must be a finite number of ms >= 0");
    return ms;
}

/* ---- life cycle ------------------------------------------------------------- */

static void change_cb(void *ud, cb_breaker *b, cb_state from, cb_state to,
                      cb_reason reason) {
    lbreaker *box = ud;
    (void)b;
    cb_lua_queue(box->m, box, box->serial, (int)from, (int)to, (int)reason);
}

/* Sets (function) or clears (nil) the on_change callback of the box at idx. */
static void set_on_change(lua_State *L, int idx, lbreaker *box, int fn) {
    idx = lua_absindex(L, idx);
    fn = lua_absindex(L, fn);
    int on = !lua_isnil(L, fn);
    if (on && box->listed) cb_lua_registry_pin(L, idx, box);
    if (cb_breaker_on_change(box->b, on ? change_cb : NULL, on ? box : NULL) != CB_OK)
        luaL_error(L, "on_change: out of memory");
    box->notifies = (unsigned char)on;
    lua_pushvalue(L, fn);
    lua_setiuservalue(L, idx, CB_UV_ON_CHANGE);
    lua_getfield(L, LUA_REGISTRYINDEX, CB_BOXES_KEY);
    if (on) lua_pushvalue(L, idx); else lua_pushnil(L);
    lua_rawsetp(L, -2, box);
    lua_pop(L, 1);
}

lbreaker *cb_lua_newbox(lua_State *L, int owned) {
    lbreaker *box = lua_newuserdatauv(L, sizeof *box, CB_UV_COUNT);
    box->b = NULL;
    box->m = cb_lua_module_get(L);
    box->serial = ++box->m->serials;
    box->owned = (unsigned char)(owned != 0);
    box->measure = 0;
    box->classify = 0;
    box->rej_verdict = CB_ALLOWED;
    box->rej_until = 0;
    box->notifies = 0;
    box->listed = 0;
    box->cached = 0;
    box->next = NULL;
    box->gone = "closed";
    luaL_setmetatable(L, CB_BREAKER_MT);
    return box;
}

void cb_lua_box_set(lbreaker *box, cb_breaker *b) {
    cb_breaker_opts o;
    cb_breaker_get_opts(b, &o);
    box->measure = o.slow_call_ms > 0;
    box->b = b;
}

lbreaker *cb_lua_pushbreaker(lua_State *L, cb_breaker *b, int owned) {
    lbreaker *box = cb_lua_newbox(L, owned);
    cb_lua_box_set(box, b);
    return box;
}

void cb_lua_box_close(lua_State *L, lbreaker *box, const char *why) {
    if (!box->b) return;
    cb_breaker *b = box->b;
    box->b = NULL;
    box->gone = why;
    lua_getfield(L, LUA_REGISTRYINDEX, CB_BOXES_KEY);
    lua_pushnil(L);
    lua_rawsetp(L, -2, box);
    lua_pop(L, 1);
    if (box->owned) cb_breaker_free(b);
    else if (box->notifies) cb_breaker_on_change(b, NULL, NULL);  /* the registry keeps it */
    box->notifies = 0;
}

/* Keeps what cb.new's reader found: callbacks and the clock in the box's
 * user values (the box at stack index 2), a store to attach once the
 * breaker exists. */
static void keep_new(lua_State *L, int which, void *ud) {
    if (which == CB_KEEP_STORE) {
#if !CB_WITH_REDIS
        cb_lua_store_attach(L, -1, 2, "cbreaker.new");  /* raises: no Redis support */
#endif
        *(int *)ud = 1;
        return;
    }
    if (which == CB_KEEP_CLASSIFY) ((lbreaker *)lua_touserdata(L, 2))->classify = 1;
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 2, which == CB_KEEP_CLASSIFY ? CB_UV_CLASSIFY
                          : which == CB_KEEP_ON_CHANGE ? CB_UV_ON_CHANGE : CB_UV_CLOCK);
}

static int breaker_new(lua_State *L) {
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    o.name = "breaker";
    if (lua_isnoneornil(L, 1)) lua_newtable(L);
    else luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    /* The box first, closed: a raised error below leaks nothing. */
    lbreaker *box = cb_lua_newbox(L, 1);
    int store = 0;
    cb_lua_optread r = {"cbreaker.new", "", keep_new, &store, 0, 0, NULL, 0};
    cb_lua_read_opts(L, 1, &cb_breaker_schema, &o, &r);
    const char *bad = cb_breaker_opts_check(&o);
    if (bad) return luaL_error(L, "cbreaker.new: %s", bad);
    box->b = cb_breaker_new(&o);
    if (!box->b) return luaL_error(L, "cbreaker.new: out of memory");
    box->measure = o.slow_call_ms > 0;
    if (lua_getiuservalue(L, 2, CB_UV_ON_CHANGE) == LUA_TFUNCTION)
        set_on_change(L, 2, box, -1);
    lua_pop(L, 1);
    if (store) {
        lua_getfield(L, 1, "store");
        cb_lua_store_attach(L, -1, 2, "cbreaker.new");
        lua_pop(L, 1);
    }
    return cb_lua_finish(L, box->m, 1);  /* what the store's boot import changed */
}

/* br:close() and <close>.  A registry's breaker belongs to its registry
 * (every reg:get of its key returns the same box): closing it would leave
 * a dead box there, so it is refused; reg:remove drops it. */
static int breaker_close(lua_State *L) {
    lbreaker *box = cb_lua_checkself(L);
    if (box->b && !box->owned)
        return luaL_error(L, "cannot close a registry breaker: it belongs to its registry "
                          "(reg:remove(tenant, key) drops it)");
    cb_lua_box_close(L, box, "closed");
    cb_lua_forgetself(L, box);  /* as __gc: the memory goes next */
    return 0;
}

static int breaker_gc(lua_State *L) {
    lbreaker *box = cb_lua_checkself(L);
    if (box->listed) cb_lua_registry_unlist(L, 1, box);
    cb_lua_box_close(L, box, "closed");
    cb_lua_finalized(L, box);  /* the memory goes next */
    return 0;
}

static int breaker_tostring(lua_State *L) {
    lbreaker *box = cb_lua_checkself(L);
    if (!box->b)
        lua_pushfstring(L, "cbreaker.Breaker (%s)", box->gone);
    else
        lua_pushfstring(L, "cbreaker.Breaker '%s' (%s)", cb_breaker_name(box->b),
                        cb_state_names[cb_breaker_state(box->b)]);
    return 1;
}

/* ---- hot path --------------------------------------------------------------- */

static int push_verdict(lua_State *L, cb_verdict v) {
    if (v == CB_ALLOWED) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_pushvalue(L, lua_upvalueindex(UP_OPEN + (int)v - CB_REJECT_OPEN));
    return 2;
}

/* The end of an allow whose callbacks ran (they may yield; its results on
 * top).  When one raised, the permit the allow gave, if it gave one, is
 * given back (recorded as ignored) before the error goes on: a caller
 * that sees the error owes no record.  ctx: bit 0 is cb_lua_events'; bit
 * 1, a permit was given (one result, true; else false and the reason). */
static int allow_k(lua_State *L, int status, lua_KContext ctx) {
    int n = ctx & 2 ? 1 : 2;
    cb_lua_events(L, status, &ctx, n, allow_k);
    if (ctx & 1) {
        lbreaker *box = lua_touserdata(L, 1);  /* self: on the stack, so alive */
        if ((ctx & 2) && box->b) cb_breaker_record(box->b, CB_IGNORE, -1, 0);  /* read anew */
        cb_lua_events_raise(L, ctx, n);
    }
    return n;
}

static int breaker_allow(lua_State *L) {
    lbreaker *box = self(L);
    cb_verdict v = cb_breaker_allow(box->b);
    int n = push_verdict(L, v);
    return box->m->count ? allow_k(L, LUA_OK, v == CB_ALLOWED ? 2 : 0) : n;
}

static int breaker_success(lua_State *L) {
    lbreaker *box = self(L);
    cb_breaker_record(box->b, CB_SUCCESS, optlatency(L, 2), 0);
    return cb_lua_finish(L, box->m, 0);
}

static int breaker_failure(lua_State *L) {
    lbreaker *box = self(L);
    cb_breaker_record(box->b, CB_FAILURE, optlatency(L, 2), 0);
    return cb_lua_finish(L, box->m, 0);
}

/* A retry-after in seconds; the core caps it like every other duration. */
static double optretry(lua_State *L, int idx) {
    if (lua_isnoneornil(L, idx)) return 0;
    double ra = luaL_checknumber(L, idx);
    if (!(ra >= 0)) luaL_argerror(L, idx, "retry_after must be a number of seconds >= 0");
    return ra;
}

static int breaker_record(lua_State *L) {
    lbreaker *box = cb_lua_checkself(L);
    int outcome = luaL_checkoption(L, 2, NULL, cb_outcome_names);  /* may allocate */
    double ms = optlatency(L, 3);
    double ra = optretry(L, 4);
    cb_breaker_record(checkopen(L, box)->b, (cb_outcome)outcome, ms, ra);
    return cb_lua_finish(L, box->m, 0);
}

/* The classifier contract, one implementation for the breaker and the
 * engine: classify(ok, ...) -> "success" | "failure" | "ignore" [,
 * retry_after].  Reads the answer of a classifier run by lua_pcall(k) with
 * two results, `status` its status: returns the outcome, with *retry_after
 * set (-1 when none was given), or -1 with the message of what went wrong
 * pushed (the caller records a failure). */
static int classify_answer(lua_State *L, int status, double *retry_after) {
    *retry_after = -1;
    if (status != LUA_OK && status != LUA_YIELD) {
        lua_pushfstring(L, "classify failed: %s", cb_lua_describe(L, -1));
        return -1;
    }
    int outcome = -1;
    if (lua_type(L, -2) == LUA_TSTRING) {
        const char *s = lua_tostring(L, -2);
        for (int i = 0; cb_outcome_names[i]; i++)
            if (strcmp(s, cb_outcome_names[i]) == 0) outcome = i;
    }
    if (outcome < 0) {
        lua_pushfstring(L, "classify must return \"success\", \"failure\" or \"ignore\" (got %s)",
                        cb_lua_describe(L, -2));
        return -1;
    }
    if (!lua_isnil(L, -1)) {  /* the core caps it like every other duration */
        double ra = lua_tonumber(L, -1);
        if (lua_type(L, -1) != LUA_TNUMBER || !(ra >= 0)) {
            lua_pushliteral(L, "classify: retry_after must be a number of seconds >= 0");
            return -1;
        }
        *retry_after = ra;
    }
    return outcome;
}

static int core_classify_k(lua_State *L, int status, lua_KContext ctx) {
    (void)ctx;
    double ra;
    int outcome = classify_answer(L, status, &ra);
    if (outcome < 0) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);  /* false, message */
        return 2;
    }
    lua_pushstring(L, cb_outcome_names[outcome]);
    if (ra >= 0) lua_pushnumber(L, ra); else lua_pushnil(L);
    return 2;
}

/* core.classify(fn, ok, ...) -> outcome, retry_after (or nil), or false and
 * a message when fn raised or answered nonsense; with fn nil, ok's outcome.
 * fn may yield. */
static int core_classify(lua_State *L) {
    if (lua_isnil(L, 1)) {
        lua_pushstring(L, cb_outcome_names[lua_toboolean(L, 2) ? CB_SUCCESS : CB_FAILURE]);
        return 1;
    }
    luaL_checktype(L, 1, LUA_TFUNCTION);
    return core_classify_k(L, lua_pcallk(L, lua_gettop(L) - 1, 2, 0, 0, core_classify_k), 0);
}

/* br:call(fn, ...) runs in steps, each a continuation, so that fn, the
 * classifier and the on_change callbacks may all yield.  Nothing but the
 * stack survives a yield: every step finds the box at 1 and re-reads its
 * breaker, which a callback or another coroutine may have closed or
 * removed meanwhile (then the outcome is dropped and call returns what
 * pcall(fn, ...) would).  The stack, from the fn step on:
 *   self, t0 (then ms), fn, args...  ->  self, ms, ok, results...
 * The context: bit 0 is cb_lua_events'; bits 1-3 the step; bit 4 set when
 * the classifier failed (its message is on top); the rest, the top of
 * "self, ms, ok, results...".
 *
 * The common call (no timing, no classifier) takes a shorter way, the
 * CALL_PLAIN step: self, fn, args... -> self, ok, results... */
enum { CALL_DISPATCHED, CALL_RAN, CALL_CLASSIFIED, CALL_RECORDED, CALL_PLAIN };

#define CALL_CTX(step, bad, top) \
    ((lua_KContext)(top) << 5 | (lua_KContext)(bad) << 4 | (lua_KContext)(step) << 1)

static int call_k(lua_State *L, int status, lua_KContext ctx);

/* Records `outcome` and ends the call: fn's results, or the classifier's
 * message raised, after the callbacks of what the record changed. */
static int call_record(lua_State *L, cb_outcome outcome, double ra, int bad, int top) {
    lbreaker *box = lua_touserdata(L, 1);
    if (box->b) cb_breaker_record(box->b, outcome, lua_tonumber(L, 2), ra);
    if (box->m->count) return call_k(L, LUA_OK, CALL_CTX(CALL_RECORDED, bad, top));
    return bad ? lua_error(L) : top - 2;
}

/* Runs fn: the stack is self, fn, args... */
static int call_run(lua_State *L) {
    lbreaker *box = lua_touserdata(L, 1);
    if (!box->measure && !box->classify)
        return call_k(L, lua_pcallk(L, lua_gettop(L) - 2, LUA_MULTRET, 0,
                                    CALL_CTX(CALL_PLAIN, 0, 0), call_k),
                      CALL_CTX(CALL_PLAIN, 0, 0));
    lua_pushnumber(L, box->b && box->measure ? cb_breaker_now(box->b) : -1);  /* t0 */
    lua_insert(L, 2);
    return call_k(L, lua_pcallk(L, lua_gettop(L) - 3, LUA_MULTRET, 0,
                                CALL_CTX(CALL_RAN, 0, 0), call_k),
                  CALL_CTX(CALL_RAN, 0, 0));
}

static int call_k(lua_State *L, int status, lua_KContext ctx) {
    lbreaker *box = lua_touserdata(L, 1);
    int step = (int)(ctx >> 1) & 7, bad = (int)(ctx >> 4) & 1, top = (int)(ctx >> 5);
    switch (step) {
    case CALL_PLAIN: {
        int ok = status == LUA_OK || status == LUA_YIELD;
        lua_pushboolean(L, ok);
        lua_insert(L, 2);  /* self, ok, results... */
        if (box->b) cb_breaker_record(box->b, ok ? CB_SUCCESS : CB_FAILURE, -1, 0);
        top = lua_gettop(L);
        if (!box->m->count) return top - 1;
        /* CALL_RECORDED returns its top - 2 values: here, without the ms slot */
        return call_k(L, LUA_OK, CALL_CTX(CALL_RECORDED, 0, top + 1));
    }
    case CALL_DISPATCHED:  /* the callbacks of what allow() changed */
        cb_lua_events(L, status, &ctx, 0, call_k);
        if (ctx & 1) {  /* one failed: give the permit back, run nothing */
            if (box->b) cb_breaker_record(box->b, CB_IGNORE, -1, 0);
            cb_lua_events_raise(L, ctx, 0);
        }
        return call_run(L);
    case CALL_RAN: {
        int ok = status == LUA_OK || status == LUA_YIELD;
        double t0 = lua_tonumber(L, 2);
        lua_pushnumber(L, t0 >= 0 && box->b ? (cb_breaker_now(box->b) - t0) * 1000 : -1);
        lua_replace(L, 2);  /* ms */
        lua_pushboolean(L, ok);
        lua_insert(L, 3);  /* self, ms, ok, results... (or self, ms, false, err) */
        top = lua_gettop(L);
        if (!box->b) return top - 2;  /* closed or removed meanwhile: nothing to record */
        if (lua_getiuservalue(L, 1, CB_UV_CLASSIFY) == LUA_TNIL) {
            lua_pop(L, 1);
            return call_record(L, ok ? CB_SUCCESS : CB_FAILURE, 0, 0, top);
        }
        luaL_checkstack(L, top, "classify");
        for (int i = 3; i <= top; i++) lua_pushvalue(L, i);
        ctx = CALL_CTX(CALL_CLASSIFIED, 0, top);
        return call_k(L, lua_pcallk(L, top - 2, 2, 0, ctx, call_k), ctx);
    }
    case CALL_CLASSIFIED: {
        double ra;
        int outcome = classify_answer(L, status, &ra);
        if (outcome < 0) {  /* recorded as a failure; its message raised after */
            lua_replace(L, top + 1);
            lua_settop(L, top + 1);
            return call_record(L, CB_FAILURE, 0, 1, top);
        }
        lua_settop(L, top);
        return call_record(L, (cb_outcome)outcome, ra < 0 ? 0 : ra, 0, top);
    }
    default: {  /* CALL_RECORDED: the callbacks of what the record changed */
        int kept = bad ? 1 : top - 2;
        cb_lua_events(L, status, &ctx, kept, call_k);
        cb_lua_events_raise(L, ctx, kept);
        return bad ? lua_error(L) : top - 2;
    }
    }
}

int cb_lua_callable(lua_State *L, int idx) {
    if (lua_type(L, idx) == LUA_TFUNCTION) return 1;
    if (luaL_getmetafield(L, idx, "__call") == LUA_TNIL) return 0;  /* raw: runs no Lua */
    lua_pop(L, 1);
    return 1;
}

static int breaker_call(lua_State *L) {
    lbreaker *box = cb_lua_checkself(L);
    luaL_argexpected(L, cb_lua_callable(L, 2), 2, "function");  /* misuse: raised, not recorded */
    cb_verdict v = cb_breaker_allow(checkopen(L, box)->b);
    if (v != CB_ALLOWED) {
        lua_pushboolean(L, 0);
        cb_lua_pushboxrejection(L, 1, box, v);
        return cb_lua_finish(L, box->m, 2);
    }
    if (box->m->count) return call_k(L, LUA_OK, CALL_CTX(CALL_DISPATCHED, 0, 0));
    return call_run(L);
}

/* ---- the rest --------------------------------------------------------------- */

static int breaker_state(lua_State *L) {
    lbreaker *box = self(L);
    cb_state s = cb_breaker_state(box->b);
    lua_pushstring(L, cb_state_names[s]);
    return cb_lua_finish(L, box->m, 1);
}

static int breaker_name(lua_State *L) {
    lua_pushstring(L, cb_breaker_name(self(L)->b));
    return 1;
}

static int breaker_retry_after(lua_State *L) {
    lbreaker *box = self(L);
    double ra = cb_breaker_retry_after(box->b);
    lua_pushnumber(L, ra);
    return cb_lua_finish(L, box->m, 1);
}

static int breaker_reset(lua_State *L) {
    lbreaker *box = self(L);
    cb_breaker_reset(box->b);
    return cb_lua_finish(L, box->m, 0);
}

static int breaker_force_open(lua_State *L) {
    lbreaker *box = self(L);
    cb_breaker_force_open(box->b);
    return cb_lua_finish(L, box->m, 0);
}

static int breaker_disable(lua_State *L) {
    lbreaker *box = self(L);
    cb_breaker_disable(box->b);
    return cb_lua_finish(L, box->m, 0);
}

#define SETNUM(field) (lua_pushnumber(L, (lua_Number)st.field), lua_setfield(L, -2, #field))
#define SETINT(field) (lua_pushinteger(L, (lua_Integer)st.field), lua_setfield(L, -2, #field))

static int breaker_stats(lua_State *L) {
    lbreaker *box = self(L);
    cb_breaker_stats st;
    cb_breaker_get_stats(box->b, &st);
    lua_pushstring(L, cb_breaker_name(box->b));  /* box->b is not used after an allocation */
    lua_createtable(L, 0, 20);
    lua_insert(L, -2);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, cb_state_names[st.state]);
    lua_setfield(L, -2, "state");
    SETINT(calls); SETINT(successes); SETINT(failures); SETINT(slow_calls);
    SETINT(ignored); SETINT(rejections); SETINT(opens);
    SETINT(consecutive_failures); SETINT(half_open_successes); SETINT(permits_out);
    SETINT(window_calls); SETINT(window_failures); SETINT(window_slow);
    SETNUM(failure_rate); SETNUM(slow_call_rate); SETNUM(open_timeout);
    SETNUM(retry_after); SETNUM(last_change);
    return cb_lua_finish(L, box->m, 1);
}

static int breaker_on_change(lua_State *L) {
    lbreaker *box = self(L);
    if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_settop(L, 2);
    set_on_change(L, 1, box, 2);
    return 0;
}

/* br:configure{...}: a hot reload.  Options not given keep their values;
 * state and counters are kept. */
static int breaker_configure(lua_State *L) {
    lbreaker *box = self(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    cb_breaker_opts o;
    cb_breaker_get_opts(box->b, &o);
    /* The reader runs Lua code (allocations, __index): o's strings must not
     * point into the breaker, which that code may reconfigure or close. */
    lua_pushstring(L, o.name);  /* 3 */
    o.name = lua_tostring(L, 3);
    cb_lua_optread r = {"configure", "", NULL, NULL, 0, 1, NULL, 0};
    cb_lua_read_opts(L, 2, &cb_breaker_schema, &o, &r);
    const char *bad = cb_breaker_opts_check(&o);
    if (bad) return luaL_error(L, "configure: %s", bad);
    if (strcmp(o.name, lua_tostring(L, 3)) != 0)
        return luaL_error(L, "configure: a breaker's name cannot change");
    int classify = lua_getfield(L, 2, "classify") != LUA_TNIL;  /* checked by the reader */
    checkopen(L, box);  /* the reader's Lua code may have closed it */
    if (classify && box->listed) cb_lua_registry_pin(L, 1, box);
    if (classify) {
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, 1, CB_UV_CLASSIFY);
        box->classify = 1;
    }
    if (cb_breaker_configure(box->b, &o) != CB_OK) return luaL_error(L, "configure: out of memory");
    box->measure = o.slow_call_ms > 0;
    return 0;
}

static int breaker_options(lua_State *L) {
    lbreaker *box = self(L);
    cb_breaker_opts o;
    cb_breaker_get_opts(box->b, &o);
    lua_pushstring(L, o.name);  /* o.name points into the breaker: copied first */
    lua_createtable(L, 0, 16);
    lua_insert(L, -2);
    lua_setfield(L, -2, "name");
#define OPTI(f) (lua_pushinteger(L, (lua_Integer)o.f), lua_setfield(L, -2, #f))
#define OPTN(f) (lua_pushnumber(L, o.f), lua_setfield(L, -2, #f))
    OPTI(failure_threshold); OPTN(reset_timeout); OPTI(success_threshold);
    OPTI(half_open_max_calls); OPTN(probe_timeout); OPTN(failure_rate);
    OPTN(slow_call_ms); OPTN(slow_call_rate); OPTI(window); OPTN(window_seconds);
    OPTI(min_calls); OPTN(backoff_factor); OPTN(max_reset_timeout); OPTN(jitter);
#undef OPTI
#undef OPTN
    return 1;
}

static const luaL_Reg breaker_methods[] = {
    {"allow", breaker_allow},
    {"success", breaker_success},
    {"failure", breaker_failure},
    {"record", breaker_record},
    {"call", breaker_call},
    {"state", breaker_state},
    {"name", breaker_name},
    {"retry_after", breaker_retry_after},
    {"reset", breaker_reset},
    {"force_open", breaker_force_open},
    {"disable", breaker_disable},
    {"stats", breaker_stats},
    {"on_change", breaker_on_change},
    {"configure", breaker_configure},
    {"options", breaker_options},
    {"close", breaker_close},
    {NULL, NULL}
};

static const luaL_Reg breaker_meta[] = {
    {"__gc", breaker_gc},
    {"__close", breaker_close},
    {"__tostring", breaker_tostring},
    {NULL, NULL}
};

static const luaL_Reg breaker_funcs[] = {
    {"new", breaker_new},
    {"classify", core_classify},
    {NULL, NULL}
};

void cb_lua_open_breaker(lua_State *L) {
    lua_pushstring(L, cb_verdict_names[CB_REJECT_OPEN]);
    lua_pushstring(L, cb_verdict_names[CB_REJECT_FORCED_OPEN]);
    lua_pushstring(L, cb_verdict_names[CB_REJECT_HALF_OPEN]);
    cb_lua_newclass(L, CB_CLASS_BREAKER, CB_BREAKER_MT, breaker_methods, breaker_meta, UP_COUNT);
    luaL_setfuncs(L, breaker_funcs, 0);
}

/* lrejection.c -- cbreaker.Rejection, the one error value of a refused
 * call, a breaker's (br:call) or the engine's (core.rejection{...}).  Its
 * metatable tells it apart from errors raised by the protected function.
 * Its fields:
 *   reason        why: a breaker's verdict ("open", "forced-open",
 *                 "half-open") or the engine's ("session open", "all
 *                 providers open", "registry full", "tenant full")
 *   retry_after   seconds until a call may pass (math.huge: not by waiting)
 *   message       what tostring gives
 *   name, state   the refusing breaker's name and state, when one refused
 *   provider, tenant, session   the engine call's, when known
 *
 * The engine's is a table of those fields.  A breaker's is an lrejection
 * (lcbreaker.h): a refused call is the path an outage runs on, so it
 * allocates nothing and formats nothing.  The userdata holds what the
 * refusal was (the verdict, the clock time it lasts until, the breaker's
 * name and clock) and computes the fields when they are read; a box hands
 * the same one out again while its breaker refuses with the same verdict
 * until the same time.  So a rejection kept and read later still shows its
 * own refusal: that breaker's name, the state and reason it refused in,
 * and retry_after counted down to that refusal's end (0 once it passed) --
 * never a later state of the breaker, nor another breaker.  It cannot be
 * written to. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lcbreaker.h"

/* The string fields core.rejection copies, besides reason and message. */
static const char *const optional_fields[] = {"name", "state", "provider", "tenant", "session",
                                              NULL};

/* User values of a breaker's rejection: the breaker's name, and the Lua
 * object of its clock (a manual clock), which `clock.ud` points into. */
enum { RUV_NAME = 1, RUV_CLOCK, RUV_COUNT = 2 };

/* Pushes "<what> (retry in N.NNNs)", or `what` alone when retry_after is
 * infinite (no wait helps). */
static void push_message(lua_State *L, const char *what, double ra) {
    if (isinf(ra)) {
        lua_pushstring(L, what);
        return;
    }
    char secs[32];  /* lua_pushfstring has no precision */
    snprintf(secs, sizeof secs, "%.3f", ra);
    lua_pushfstring(L, "%s (retry in %ss)", what, secs);
}

/* ---- a breaker's rejection ------------------------------------------------ */

/* Keeps the Lua object of the clock `ud` in the rejection at `rej`: the
 * clock of box `box`, or one of its owner's (a registry's, a pool's).
 * Returns 0 when none of them is it.  Allocates nothing. */
static int keep_clock(lua_State *L, int box, int rej, const void *ud) {
    if (lua_getiuservalue(L, box, CB_UV_CLOCK) == LUA_TUSERDATA && lua_touserdata(L, -1) == ud) {
        lua_setiuservalue(L, rej, RUV_CLOCK);
        return 1;
    }
    lua_pop(L, 1);
    if (lua_getiuservalue(L, box, CB_UV_OWNER) == LUA_TUSERDATA) {
        int owner = lua_gettop(L);
        for (int n = 1;; n++) {
            int t = lua_getiuservalue(L, owner, n);
            if (t == LUA_TNONE) break;
            if (t == LUA_TUSERDATA && lua_touserdata(L, -1) == ud) {
                lua_setiuservalue(L, rej, RUV_CLOCK);
                lua_pop(L, 1);
                return 1;
            }
            lua_pop(L, 1);
        }
    }
    lua_pop(L, 2);  /* the owner (or nil), and the last nil read */
    return 0;
}

/* Pushes a rejection of `b`, refused with `v`; `box` is its box's stack
 * index, 0 when there is none. */
static lrejection *make(lua_State *L, int box, cb_breaker *b, cb_verdict v) {
    cb_breaker_opts o;
    cb_breaker_get_opts(b, &o);
    lrejection made = {cb_breaker_refused_until(b), -1, o.clock, (unsigned char)v};
    double frozen = isinf(made.until) ? made.until : made.until - cb_clock_read(&o.clock);
    if (!(frozen > 0)) frozen = 0;
    /* Any allocation may run a finalizer that frees b: all is read above. */
    lua_pushstring(L, cb_breaker_name(b));
    lrejection *r = lua_newuserdatauv(L, sizeof *r, RUV_COUNT);
    *r = made;
    lua_insert(L, -2);
    lua_setiuservalue(L, -2, RUV_NAME);
    if (made.clock.now && !(box && keep_clock(L, box, lua_gettop(L), made.clock.ud))) {
        r->frozen = frozen;  /* a clock it cannot keep alive is not read later */
        r->clock = (cb_clock){NULL, NULL};
    }
    luaL_setmetatable(L, CB_REJECTION_MT);
    return r;
}

void cb_lua_newrejection(lua_State *L, int idx, cb_verdict v) {
    idx = lua_absindex(L, idx);
    lbreaker *box = lua_touserdata(L, idx);
    lrejection *r = make(L, idx, box->b, v);
    if (r->frozen < 0) {  /* it stays true: the box may hand it out again */
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, idx, CB_UV_REJECTION);
        box->rej_verdict = r->verdict;
        box->rej_until = r->until;
    }
}

void cb_lua_pushrejection(lua_State *L, cb_breaker *b, cb_verdict v) {
    make(L, 0, b, v);
}

/* The lrejection at idx, or NULL for the engine's table. */
static const lrejection *torej(lua_State *L, int idx) {
    if (lua_type(L, idx) != LUA_TUSERDATA || lua_rawlen(L, idx) != sizeof(lrejection)) return NULL;
    return lua_touserdata(L, idx);
}

static double retry_after(const lrejection *r) {
    if (r->frozen >= 0 || isinf(r->until)) return r->frozen >= 0 ? r->frozen : r->until;
    double ra = r->until - cb_clock_read(&r->clock);
    return ra > 0 ? ra : 0;
}

static cb_state state_of(cb_verdict v) {
    return v == CB_REJECT_FORCED_OPEN ? CB_FORCED_OPEN
         : v == CB_REJECT_HALF_OPEN ? CB_HALF_OPEN : CB_OPEN;
}

static void push_breaker_message(lua_State *L, int idx, const lrejection *r) {
    double ra = retry_after(r);
    lua_getiuservalue(L, idx, RUV_NAME);
    const char *what = lua_pushfstring(L, "circuit '%s' is %s", lua_tostring(L, -1),
                                       cb_verdict_names[r->verdict]);
    push_message(L, what, ra);
    lua_replace(L, -3);
    lua_pop(L, 1);
}

/* A breaker rejection's fields, computed when read; for the engine's
 * table, a field it does not have (nil). */
static int rejection_index(lua_State *L) {
    const lrejection *r = torej(L, 1);
    if (!r || lua_type(L, 2) != LUA_TSTRING) return 0;
    const char *k = lua_tostring(L, 2);
    if (strcmp(k, "reason") == 0)
        lua_pushstring(L, cb_verdict_names[r->verdict]);
    else if (strcmp(k, "retry_after") == 0)
        lua_pushnumber(L, retry_after(r));
    else if (strcmp(k, "name") == 0)
        lua_getiuservalue(L, 1, RUV_NAME);
    else if (strcmp(k, "state") == 0)
        lua_pushstring(L, cb_state_names[state_of((cb_verdict)r->verdict)]);
    else if (strcmp(k, "message") == 0)
        push_breaker_message(L, 1, r);
    else
        return 0;
    return 1;
}

/* core.rejection{reason=, retry_after= [, message=, name=, state=,
 * provider=, tenant=, session=]} -> a cbreaker.Rejection.  The message
 * defaults to "<reason> (retry in N.NNNs)". */
static int rejection_new(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_createtable(L, 0, 6);  /* t, r */
    if (lua_getfield(L, 1, "reason") != LUA_TSTRING)
        return luaL_error(L, "rejection: field 'reason' must be a string (got %s)",
                          luaL_typename(L, -1));
    const char *reason = lua_tostring(L, -1);
    lua_setfield(L, 2, "reason");
    int isnum = 0;
    lua_getfield(L, 1, "retry_after");
    double ra = lua_tonumberx(L, -1, &isnum);
    if (!isnum || !(ra >= 0))
        return luaL_error(L, "rejection: field 'retry_after' must be a number of seconds >= 0 "
                          "(math.huge: never)");
    lua_pushnumber(L, ra);
    lua_setfield(L, 2, "retry_after");
    lua_pop(L, 1);
    for (const char *const *f = optional_fields; *f; f++) {
        int t = lua_getfield(L, 1, *f);
        if (t != LUA_TNIL && t != LUA_TSTRING)
            return luaL_error(L, "rejection: field '%s' must be a string (got %s)", *f,
                              luaL_typename(L, -1));
        lua_setfield(L, 2, *f);
    }
    int t = lua_getfield(L, 1, "message");
    if (t != LUA_TNIL && t != LUA_TSTRING)
        return luaL_error(L, "rejection: field 'message' must be a string (got %s)",
                          luaL_typename(L, -1));
    if (t == LUA_TNIL) push_message(L, reason, ra);
    lua_setfield(L, 2, "message");
    lua_pop(L, 1);
    luaL_setmetatable(L, CB_REJECTION_MT);
    return 1;
}

static int rejection_tostring(lua_State *L) {
    const lrejection *r = torej(L, 1);
    if (r) push_breaker_message(L, 1, r);
    else lua_getfield(L, 1, "message");
    return 1;
}

/* cb.is_rejection(v) -> true for a cbreaker.Rejection, the breaker's or
 * the engine's, and false for anything else. */
static int is_rejection(lua_State *L) {
    int yes = 0;
    if (lua_getmetatable(L, 1)) {
        luaL_getmetatable(L, CB_REJECTION_MT);
        yes = lua_rawequal(L, -1, -2);
    }
    lua_pushboolean(L, yes);
    return 1;
}

static const luaL_Reg rejection_funcs[] = {
    {"is_rejection", is_rejection},
    {"rejection", rejection_new},
    {NULL, NULL}
};

static const luaL_Reg rejection_meta[] = {
    {"__tostring", rejection_tostring},
    {"__index", rejection_index},
    {NULL, NULL}
};

void cb_lua_open_rejection(lua_State *L) {
    cb_lua_newclass(L, CB_CLASS_REJECTION, CB_REJECTION_MT, NULL, rejection_meta, 0);
    luaL_setfuncs(L, rejection_funcs, 0);
}

/* lrejection.c -- cbreaker.Rejection, the one error value of a refused
 * call, a breaker's (br:call) or the engine's (core.rejection{...}): a
 * table whose metatable tells it apart from errors raised by the protected
 * function.  Its fields:
 *   reason        why: a breaker's verdict ("open", "forced-open",
 *                 "half-open") or the engine's ("session open", "all
 *                 providers open", "registry full", "tenant full")
 *   retry_after   seconds until a call may pass (math.huge: not by waiting)
 *   message       what tostring gives
 *   name, state   the refusing breaker's name and state, when one refused
 *   provider, tenant, session   the engine call's, when known */
#include <math.h>
#include <stdio.h>

#include "lcbreaker.h"

/* The string fields core.rejection copies, besides reason and message. */
static const char *const optional_fields[] = {"name", "state", "provider", "tenant", "session",
                                              NULL};

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

void cb_lua_pushrejection(lua_State *L, cb_breaker *b, cb_verdict v) {
    double ra = cb_breaker_retry_after(b);
    cb_state state = cb_breaker_state(b);
    /* Any allocation may run a finalizer that frees b: read it first. */
    lua_pushstring(L, cb_breaker_name(b));
    int name = lua_gettop(L);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, cb_verdict_names[v]);
    lua_setfield(L, -2, "reason");
    lua_pushnumber(L, ra);
    lua_setfield(L, -2, "retry_after");
    lua_pushvalue(L, name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, cb_state_names[state]);
    lua_setfield(L, -2, "state");
    push_message(L, lua_pushfstring(L, "circuit '%s' is %s", lua_tostring(L, name),
                                    cb_verdict_names[v]), ra);
    lua_setfield(L, -3, "message");
    lua_pop(L, 1);  /* the subject */
    luaL_setmetatable(L, CB_REJECTION_MT);
    lua_remove(L, name);
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
    lua_getfield(L, 1, "message");
    return 1;
}

/* cb.is_rejection(v) -> true for a cbreaker.Rejection, the breaker's or
 * the engine's, and false for anything else. */
static int is_rejection(lua_State *L) {
    int yes = 0;
    if (lua_type(L, 1) == LUA_TTABLE && lua_getmetatable(L, 1)) {
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
    {NULL, NULL}
};

void cb_lua_open_rejection(lua_State *L) {
    cb_lua_newclass(L, CB_CLASS_REJECTION, CB_REJECTION_MT, NULL, rejection_meta, 0);
    luaL_setfuncs(L, rejection_funcs, 0);
}

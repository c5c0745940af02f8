/* lrejection.c -- cbreaker.Rejection, the error value of a call the breaker
 * refused: a table {name, state, retry_after, message} whose metatable tells
 * it apart from errors raised by the protected function. */
#include <math.h>
#include <stdio.h>

#include "lcbreaker.h"

void cb_lua_pushrejection(lua_State *L, cb_breaker *b, cb_verdict v) {
    double ra = cb_breaker_retry_after(b);
    const char *state = cb_state_names[cb_breaker_state(b)];
    lua_createtable(L, 0, 4);
    lua_pushstring(L, cb_breaker_name(b));
    lua_setfield(L, -2, "name");
    lua_pushstring(L, state);
    lua_setfield(L, -2, "state");
    lua_pushnumber(L, ra);
    lua_setfield(L, -2, "retry_after");
    if (isinf(ra)) {
        lua_pushfstring(L, "circuit '%s' is %s", cb_breaker_name(b), cb_verdict_names[v]);
    } else {
        char secs[32];  /* lua_pushfstring has no precision */
        snprintf(secs, sizeof secs, "%.3f", ra);
        lua_pushfstring(L, "circuit '%s' is %s (retry in %ss)", cb_breaker_name(b),
                        cb_verdict_names[v], secs);
    }
    lua_setfield(L, -2, "message");
    luaL_setmetatable(L, CB_REJECTION_MT);
}

static int rejection_tostring(lua_State *L) {
    lua_getfield(L, 1, "message");
    return 1;
}

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

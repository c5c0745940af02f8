/* lclock.c -- cbreaker.ManualClock, the clock tests drive by hand, and
 * cb.now(), the default monotonic clock. */
#include <math.h>

#include "lcbreaker.h"

static cb_manual_clock *self(lua_State *L) {
    return cb_lua_checkself(L);
}

static double checktime(lua_State *L, int idx, const char *what) {
    double t = luaL_checknumber(L, idx);
    if (!isfinite(t)) luaL_argerror(L, idx, lua_pushfstring(L, "%s must be finite", what));
    return t;
}

static int clock_new(lua_State *L) {
    double t0 = luaL_opt(L, luaL_checknumber, 1, 0);
    if (!isfinite(t0)) luaL_argerror(L, 1, "start time must be finite");
    cb_manual_clock *mc = lua_newuserdatauv(L, sizeof *mc, 0);
    mc->now = t0;
    luaL_setmetatable(L, CB_CLOCK_MT);
    return 1;
}

static int clock_now(lua_State *L) {
    lua_pushnumber(L, self(L)->now);
    return 1;
}

static int clock_advance(lua_State *L) {
    cb_manual_clock *mc = self(L);
    double dt = checktime(L, 2, "seconds");
    if (dt < 0) luaL_argerror(L, 2, "a monotonic clock cannot go back");
    if (!isfinite(mc->now + dt)) luaL_argerror(L, 2, "the clock would pass the largest finite time");
    mc->now += dt;
    lua_pushnumber(L, mc->now);
    return 1;
}

static int clock_set(lua_State *L) {
    cb_manual_clock *mc = self(L);
    double t = checktime(L, 2, "time");
    if (t < mc->now) luaL_argerror(L, 2, "a monotonic clock cannot go back");
    mc->now = t;
    return 0;
}

static int clock_tostring(lua_State *L) {
    lua_pushfstring(L, "cbreaker.ManualClock (%f)", self(L)->now);
    return 1;
}

static int monotonic_now(lua_State *L) {
    lua_pushnumber(L, cb_clock_monotonic(NULL));
    return 1;
}

static const luaL_Reg clock_methods[] = {
    {"now", clock_now},
    {"advance", clock_advance},
    {"set", clock_set},
    {NULL, NULL}
};

/* A clock owns nothing; its __gc only keeps self() honest. */
static int clock_gc(lua_State *L) {
    cb_lua_finalized(L, lua_touserdata(L, 1));
    return 0;
}

static const luaL_Reg clock_meta[] = {
    {"__gc", clock_gc},
    {"__tostring", clock_tostring},
    {NULL, NULL}
};

static const luaL_Reg clock_funcs[] = {
    {"manual_clock", clock_new},
    {"now", monotonic_now},
    {NULL, NULL}
};

void cb_lua_open_clock(lua_State *L) {
    cb_lua_newclass(L, CB_CLASS_CLOCK, CB_CLOCK_MT, clock_methods, clock_meta, 0);
    luaL_setfuncs(L, clock_funcs, 0);
}

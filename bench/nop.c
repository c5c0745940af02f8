/* nop.c -- the baselines for the Lua benchmarks: a userdata whose method
 * `o:nop()` is an empty C function reached through the metatable, and two
 * floors, the least a method can do through Lua's C API:
 * - `o:reject_floor()`, a rejected allow(): prove its self against a
 *   remembered set (two lua_touserdata, as cb_lua_checkself), read the
 *   coarse clock (an open breaker may be due for half-open), and return
 *   false and a reason (two pushes);
 * - `o:get_floor(tenant, key)`, a registry get that hits: prove its self,
 *   take its two strings' addresses, read the coarse clock (the entry's
 *   last use),
 *   and push a userdata kept in a user value's array (the registry's
 *   cache), here o itself.
 * Neither holds a breaker: what a method costs beyond its floor is the
 * library's. */
#define _GNU_SOURCE  /* CLOCK_MONOTONIC_COARSE */
#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>
#include <time.h>

__attribute__((visibility("default"))) int luaopen_nop(lua_State *L);

#define SLOTS 16  /* as CB_SELF_SLOTS */

static unsigned slot_of(const void *p) {
    return (unsigned)(((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL) >> 60);
}

static int nop(lua_State *L) {
    (void)L;
    return 0;
}

/* Upvalues: 1, the remembered selves; 2, the reason. */
static int reject_floor(lua_State *L) {
    void *const *last = lua_touserdata(L, lua_upvalueindex(1));
    void *p = lua_touserdata(L, 1);
    if (!p || last[slot_of(p)] != p) return luaL_error(L, "o:reject_floor(): not proved");
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    if (ts.tv_sec < 0) return 0;  /* never: the clock is read, and used */
    lua_pushboolean(L, 0);
    lua_pushvalue(L, lua_upvalueindex(2));
    return 2;
}

/* Upvalue 1, the remembered selves. */
static int get_floor(lua_State *L) {
    void *const *last = lua_touserdata(L, lua_upvalueindex(1));
    void *p = lua_touserdata(L, 1);
    if (!p || last[slot_of(p)] != p) return luaL_error(L, "o:get_floor(): not proved");
    const char *t = lua_tolstring(L, 2, NULL), *k = lua_tolstring(L, 3, NULL);
    if (!t || !k) return luaL_error(L, "o:get_floor(tenant, key): two strings");
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    if (ts.tv_sec < 0) return 0;
    lua_getiuservalue(L, 1, 1);
    lua_rawgeti(L, -1, 1);
    return 1;
}

static int new_nop(lua_State *L) {
    void **last = lua_touserdata(L, lua_upvalueindex(1));
    void *p = lua_newuserdatauv(L, 1, 1);
    luaL_setmetatable(L, "bench.Nop");
    lua_createtable(L, 1, 0);  /* o, {o}: what get_floor pushes */
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, 1);
    lua_setiuservalue(L, -2, 1);
    last[slot_of(p)] = p;  /* a bench object is never collected while measured */
    return 1;
}

int luaopen_nop(lua_State *L) {
    void **last = lua_newuserdatauv(L, SLOTS * sizeof(void *), 0);  /* last */
    for (int i = 0; i < SLOTS; i++) last[i] = NULL;
    luaL_newmetatable(L, "bench.Nop");  /* last, mt */
    lua_newtable(L);
    lua_pushcfunction(L, nop);
    lua_setfield(L, -2, "nop");
    lua_pushvalue(L, -3);
    lua_pushliteral(L, "open");
    lua_pushcclosure(L, reject_floor, 2);
    lua_setfield(L, -2, "reject_floor");
    lua_pushvalue(L, -3);
    lua_pushcclosure(L, get_floor, 1);
    lua_setfield(L, -2, "get_floor");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);  /* last */
    lua_pushcclosure(L, new_nop, 1);
    return 1;
}

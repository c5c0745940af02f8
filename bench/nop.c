/* nop.c -- the baseline for the Lua benchmarks: a userdata whose method
 * `o:nop()` is an empty C function reached through the metatable. */
#include <lauxlib.h>
#include <lua.h>

__attribute__((visibility("default"))) int luaopen_nop(lua_State *L);

static int nop(lua_State *L) {
    (void)L;
    return 0;
}

static int new_nop(lua_State *L) {
    lua_newuserdatauv(L, 1, 0);
    luaL_setmetatable(L, "bench.Nop");
    return 1;
}

int luaopen_nop(lua_State *L) {
    luaL_newmetatable(L, "bench.Nop");
    lua_newtable(L);
    lua_pushcfunction(L, nop);
    lua_setfield(L, -2, "nop");
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    lua_pushcfunction(L, new_nop);
    return 1;
}

/* lstore_disabled.c -- the store binding of a build configured with
 * -DCB_WITH_REDIS=OFF (CMake compiles it instead of lstore.c): cb.redis
 * exists and says why it cannot work, so a policy or script asking for
 * Redis fails with a clear message instead of "attempt to call a nil value". */
#include "lcbreaker.h"

#define CB_NO_REDIS "built without Redis support (configure with -DCB_WITH_REDIS=ON)"

static int store_new(lua_State *L) {
    return luaL_error(L, "cbreaker.redis: " CB_NO_REDIS);
}

void cb_lua_store_attach(lua_State *L, int sidx, int bidx, const char *ctx) {
    (void)sidx;
    (void)bidx;
    luaL_error(L, "%s: option 'store': " CB_NO_REDIS, ctx);
}

static const luaL_Reg store_funcs[] = {
    {"redis", store_new},
    {NULL, NULL}
};

void cb_lua_open_store(lua_State *L) {
    luaL_setfuncs(L, store_funcs, 0);
}

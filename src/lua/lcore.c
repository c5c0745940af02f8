/* lcore.c -- luaopen_cbreaker_core: the module table, the module state and
 * the hand-over of state changes from the core to Lua callbacks. */
#include <string.h>

#include "lcbreaker.h"

cb_lua_module *cb_lua_module_get(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, CB_MODULE_KEY);
    cb_lua_module *m = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return m;
}

void cb_lua_dispatch(lua_State *L, cb_lua_module *m) {
    int failed = 0;
    lua_getfield(L, LUA_REGISTRYINDEX, CB_BOXES_KEY);  /* boxes */
    while (m->count) {
        cb_lua_event e = m->events[m->head];
        m->head = (m->head + 1) % CB_LUA_MAX_EVENTS;
        m->count--;
        if (lua_rawgetp(L, -1, e.box) != LUA_TUSERDATA) {  /* box collected */
            lua_pop(L, 1);
            continue;
        }
        lbreaker *box = lua_touserdata(L, -1);
        lua_getiuservalue(L, -1, CB_UV_ON_CHANGE);  /* boxes, ud, fn */
        if (!box->b || lua_type(L, -1) != LUA_TFUNCTION) {
            lua_pop(L, 2);
            continue;
        }
        lua_pushstring(L, cb_breaker_name(box->b));
        lua_pushstring(L, cb_state_names[e.from]);
        lua_pushstring(L, cb_state_names[e.to]);
        lua_pushstring(L, cb_reason_names[e.reason]);
        if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
            if (!failed) {  /* keep the first error, run the other callbacks */
                failed = 1;
                lua_insert(L, -3);  /* err, boxes, ud */
            } else {
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);  /* ud */
    }
    lua_pop(L, 1);  /* boxes */
    if (failed) {
        const char *msg = lua_tostring(L, -1);
        luaL_error(L, "on_change callback failed: %s", msg ? msg : "(error object)");
    }
}

static const luaL_Reg module_funcs[] = {
    {NULL, NULL}
};

CB_API int luaopen_cbreaker_core(lua_State *L) {
    luaL_checkversion(L);
    /* Opened twice (a host's preload and a cpath copy), boxes of the first
     * opening must keep pointing at live module state: reuse it. */
    if (lua_getfield(L, LUA_REGISTRYINDEX, CB_MODULE_KEY) != LUA_TUSERDATA) {
        cb_lua_module *m = lua_newuserdatauv(L, sizeof *m, 0);
        memset(m->last, 0, sizeof m->last);  /* no self proved yet */
        m->head = m->count = 0;
        m->dropped = 0;
        lua_setfield(L, LUA_REGISTRYINDEX, CB_MODULE_KEY);
        lua_newtable(L);  /* boxes with callbacks, by address; weak values */
        lua_newtable(L);
        lua_pushliteral(L, "v");
        lua_setfield(L, -2, "__mode");
        lua_setmetatable(L, -2);
        lua_setfield(L, LUA_REGISTRYINDEX, CB_BOXES_KEY);
    }
    lua_pop(L, 1);

    luaL_newlib(L, module_funcs);
    lua_pushliteral(L, CB_VERSION);
    lua_setfield(L, -2, "_VERSION");
    cb_lua_open_opts(L);
    cb_lua_open_clock(L);
    cb_lua_open_rejection(L);
    cb_lua_open_breaker(L);
    cb_lua_open_bandit(L);
    cb_lua_open_pool(L);
    cb_lua_open_registry(L);
    cb_lua_open_store(L);
    return 1;
}

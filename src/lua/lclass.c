/* lclass.c -- one way to build a userdata class and to check `self`, as
 * liolib's createmeta and LuaSocket's auxiliar do (see lcbreaker.h). */
#include "lcbreaker.h"

void cb_lua_newclass(lua_State *L, int id, const char *name, const luaL_Reg *methods,
                     const luaL_Reg *meta, int nup) {
    int ups = lua_gettop(L) - nup + 1;  /* the methods' own upvalues */
    cb_lua_module *m = cb_lua_module_get(L);
    luaL_newmetatable(L, name);         /* ups, mt */
    int mt = lua_gettop(L);
    lua_pushvalue(L, mt);
    lua_pushlightuserdata(L, m->last[id]);
    luaL_setfuncs(L, meta, 2);
    if (methods) {
        int n = 0;
        while (methods[n].name) n++;
        lua_createtable(L, 0, n);  /* ups, mt, methods */
        lua_pushvalue(L, mt);
        lua_pushlightuserdata(L, m->last[id]);
        for (int i = 0; i < nup; i++) lua_pushvalue(L, ups + i);
        luaL_setfuncs(L, methods, nup + 2);
        lua_setfield(L, mt, "__index");
    }
    /* getmetatable answers with a copy of the names Lua code reads
     * (__name, __index): the real metatable stays out of reach, so no
     * script can take its __gc away and have an object freed unclosed. */
    lua_createtable(L, 0, 2);
    lua_getfield(L, mt, "__name");
    lua_setfield(L, -2, "__name");
    lua_getfield(L, mt, "__index");
    lua_setfield(L, -2, "__index");
    lua_setfield(L, mt, "__metatable");
    lua_settop(L, ups - 1);
}

void *cb_lua_checkself_slow(lua_State *L) {
    void *p = lua_touserdata(L, 1);
    if (p && lua_type(L, 1) == LUA_TUSERDATA && lua_getmetatable(L, 1)) {
        int same = lua_rawequal(L, -1, lua_upvalueindex(CB_UP_CLASS));
        lua_pop(L, 1);
        if (same) {
            void **last = lua_touserdata(L, lua_upvalueindex(CB_UP_LAST));
            last[cb_lua_selfslot(p)] = p;
            return p;
        }
    }
    const char *name = "object";
    if (lua_getfield(L, lua_upvalueindex(CB_UP_CLASS), "__name") == LUA_TSTRING)
        name = lua_tostring(L, -1);
    luaL_typeerror(L, 1, name);
    return NULL;
}

void cb_lua_forgetself(lua_State *L, void *self) {
    void **last = lua_touserdata(L, lua_upvalueindex(CB_UP_LAST));
    if (last[cb_lua_selfslot(self)] == self) last[cb_lua_selfslot(self)] = NULL;
}

/* A finalized userdata can be brought back (a finalizer that stores it) and
 * is then freed later without a second __gc: were it proved and remembered
 * again, its address, once reused, would pass for a proved self of the
 * class.  Without its metatable it can never be proved again. */
void cb_lua_finalized(lua_State *L, void *self) {
    cb_lua_forgetself(L, self);
    lua_pushnil(L);
    lua_setmetatable(L, 1);
}

/* lcore.c -- luaopen_cbreaker_core: the module table, the module state and
 * the hand-over of state changes from the core to Lua callbacks. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lcbreaker.h"

cb_lua_module *cb_lua_module_get(lua_State *L) {
    lua_getfield(L, LUA_REGISTRYINDEX, CB_MODULE_KEY);
    cb_lua_module *m = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return m;
}

static int describe_unprotected(lua_State *L) {
    luaL_tolstring(L, 1, NULL);
    return 1;
}

const char *cb_lua_describe(lua_State *L, int idx) {
    idx = lua_absindex(L, idx);
    lua_pushcfunction(L, describe_unprotected);
    lua_pushvalue(L, idx);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {  /* runs __tostring where it cannot yield */
        lua_pop(L, 1);
        return lua_pushfstring(L, "(a %s whose __tostring failed)", luaL_typename(L, idx));
    }
    return lua_tostring(L, -1);
}

void cb_lua_queue(cb_lua_module *m, void *box, uint64_t serial, int from, int to, int reason) {
    if (m->closed) return;
    if (m->count == m->cap) {  /* grow, keeping the order */
        size_t cap = m->cap ? 2 * m->cap : CB_LUA_EVENTS_MIN;
        cb_lua_event *ev = cap <= SIZE_MAX / sizeof *ev ? malloc(cap * sizeof *ev) : NULL;
        if (!ev) {
            m->dropped++;
            return;
        }
        for (size_t i = 0; i < m->count; i++) ev[i] = m->events[(m->head + i) % m->cap];
        free(m->events);
        m->events = ev;
        m->head = 0;
        m->cap = cap;
    }
    cb_lua_event *e = &m->events[(m->head + m->count) % m->cap];
    e->box = box;
    e->serial = serial;
    e->from = (unsigned char)from;
    e->to = (unsigned char)to;
    e->reason = (unsigned char)reason;
    m->count++;
}

/* The first error of a dispatch is kept below the `kept` values; later
 * ones are dropped. */
static void note_error(lua_State *L, lua_KContext *ctx, int kept) {
    if (!(*ctx & 1)) {
        *ctx |= 1;
        lua_insert(L, -(kept + 1));
    } else {
        lua_pop(L, 1);
    }
}

void cb_lua_events(lua_State *L, int status, lua_KContext *ctx, int kept, lua_KFunction k) {
    if (status != LUA_OK && status != LUA_YIELD) note_error(L, ctx, kept);  /* k's resume */
    cb_lua_module *m = cb_lua_module_get(L);
    luaL_checkstack(L, 8, "on_change dispatch");
    while (m->count) {
        cb_lua_event e = m->events[m->head];  /* taken first: a callback may dispatch too */
        m->head = (m->head + 1) % m->cap;
        m->count--;
        lua_getfield(L, LUA_REGISTRYINDEX, CB_BOXES_KEY);
        if (lua_rawgetp(L, -1, e.box) != LUA_TUSERDATA) {  /* box collected */
            lua_pop(L, 2);
            continue;
        }
        lbreaker *box = lua_touserdata(L, -1);
        if (box->serial != e.serial || !box->b) {  /* another box at a reused address */
            lua_pop(L, 2);
            continue;
        }
        if (lua_getiuservalue(L, -1, CB_UV_ON_CHANGE) != LUA_TFUNCTION) {
            lua_pop(L, 3);
            continue;
        }
        lua_replace(L, -3);
        lua_pop(L, 1);  /* fn */
        lua_pushstring(L, cb_breaker_name(box->b));  /* box is not used after this */
        lua_pushstring(L, cb_state_names[e.from]);
        lua_pushstring(L, cb_state_names[e.to]);
        lua_pushstring(L, cb_reason_names[e.reason]);
        if (lua_pcallk(L, 4, 0, 0, *ctx, k) != LUA_OK) note_error(L, ctx, kept);
    }
    if (m->cap > CB_LUA_EVENTS_MIN) {  /* a storm is over: give its memory back */
        cb_lua_event *ev = malloc(CB_LUA_EVENTS_MIN * sizeof *ev);
        if (ev) {
            free(m->events);
            m->events = ev;
            m->head = 0;
            m->cap = CB_LUA_EVENTS_MIN;
        }
    }
}

void cb_lua_events_raise(lua_State *L, lua_KContext ctx, int kept) {
    if (!(ctx & 1)) return;
    /* no position: the error is the callback's, not the line that ran it */
    lua_pushfstring(L, "on_change callback failed: %s", cb_lua_describe(L, -(kept + 1)));
    lua_error(L);
}

int cb_lua_finish_k(lua_State *L, int status, lua_KContext ctx) {
    int n = (int)(ctx >> 1);
    cb_lua_events(L, status, &ctx, n, cb_lua_finish_k);
    cb_lua_events_raise(L, ctx, n);
    return n;
}

void cb_lua_dispatch(lua_State *L, cb_lua_module *m) {
    (void)m;
    lua_KContext ctx = 0;
    cb_lua_events(L, LUA_OK, &ctx, 0, NULL);  /* no continuation: lua_pcall */
    cb_lua_events_raise(L, ctx, 0);
}

/* __gc of the module state, when the lua_State closes. */
static int module_gc(lua_State *L) {
    cb_lua_module *m = lua_touserdata(L, 1);
    free(m->events);
    m->events = NULL;
    m->head = m->count = m->cap = 0;
    m->closed = 1;  /* finalizers that run later change breakers unheard */
    return 0;
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
        memset(m, 0, sizeof *m);  /* no self proved yet, no event */
        lua_createtable(L, 0, 1);
        lua_pushcfunction(L, module_gc);
        lua_setfield(L, -2, "__gc");
        lua_setmetatable(L, -2);
        m->events = malloc(CB_LUA_EVENTS_MIN * sizeof *m->events);
        if (!m->events) return luaL_error(L, "cbreaker: out of memory");
        m->cap = CB_LUA_EVENTS_MIN;
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

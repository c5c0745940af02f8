/* lstore.c -- cbreaker.Store: cb.redis{...}, a Redis store breakers attach
 * to with `cb.new{store = s}` or `s:attach(br)`. */
#include <math.h>
#include <string.h>

#include "cbreaker_redis.h"
#include "lcbreaker.h"

typedef struct lstore {
    cb_store *s;  /* NULL once closed */
    cb_lua_module *m;
} lstore;

enum { UV_CLOCK = 1, UV_COUNT = 1 };

/* `self` of a method: a live store. */
static lstore *self(lua_State *L) {
    lstore *box = cb_lua_checkself(L);
    if (!box->s) luaL_error(L, "attempt to use a closed store");
    return box;
}

/* ---- cb.redis{...} ---------------------------------------------------------- */

static int store_new(lua_State *L) {
    cb_store_opts o;
    cb_store_opts_init(&o);
    if (lua_isnoneornil(L, 1)) lua_newtable(L);
    else luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lstore *box = lua_newuserdatauv(L, sizeof *box, UV_COUNT);  /* closed first */
    box->s = NULL;
    box->m = cb_lua_module_get(L);
    luaL_setmetatable(L, CB_STORE_MT);
    static const int clock_uv = UV_CLOCK;  /* the store keeps its clock alive */
    cb_lua_optread r = {"cbreaker.redis", "", cb_lua_keep_uv, (void *)&clock_uv, 0, 0, NULL, 0};
    cb_lua_read_opts(L, 1, &cb_store_schema, &o, &r);  /* strings stay in the table */
    cb_store *s = cb_store_new(&o);
    if (!s) return luaL_error(L, "cbreaker.redis: out of memory");
    if (s->err == CB_STORE_EOPTS) {
        lua_pushfstring(L, "cbreaker.redis: %s", s->errstr);
        cb_store_free(s);
        return lua_error(L);
    }
    box->s = s;  /* unreachable Redis is no error: the store retries by itself */
    return 1;
}

/* ---- attaching ---------------------------------------------------------------- */

void cb_lua_store_attach(lua_State *L, int sidx, int bidx, const char *ctx) {
    sidx = lua_absindex(L, sidx);
    bidx = lua_absindex(L, bidx);
    lstore *st = luaL_testudata(L, sidx, CB_STORE_MT);
    if (!st || !st->s) luaL_error(L, "%s: the store is closed", ctx);
    lbreaker *br = cb_lua_checkbox(L, bidx);
    if (cb_store_attach(st->s, br->b) != CB_OK)
        luaL_error(L, "%s: cannot attach breaker '%s' (already attached to a store, a name "
                   "of 256 bytes or more, or out of memory)", ctx, cb_breaker_name(br->b));
    lua_pushvalue(L, sidx);
    lua_setiuservalue(L, bidx, CB_UV_STORE);  /* the breaker keeps its store alive */
    cb_lua_flush(L, st->m);  /* what the boot import changed */
}

static int store_attach(lua_State *L) {
    self(L);
    cb_lua_store_attach(L, 1, 2, "attach");
    lua_settop(L, 2);
    return 1;
}

static int store_detach(lua_State *L) {
    lstore *st = self(L);
    lbreaker *br = cb_lua_checkbox(L, 2);
    cb_store_detach(st->s, br->b);
    lua_pushnil(L);
    lua_setiuservalue(L, 2, CB_UV_STORE);
    return 0;
}

/* ---- methods --------------------------------------------------------------- */

static int store_poll(lua_State *L) {
    lstore *st = self(L);
    int n = cb_store_poll(st->s);
    cb_lua_flush(L, st->m);
    if (n == CB_ERR) {
        cb_store_health h;
        cb_store_get_health(st->s, &h);
        lua_pushnil(L);
        lua_pushfstring(L, "not connected: %s", h.last_error);
        return 2;
    }
    lua_pushinteger(L, n);
    return 1;
}

/* store:wait(ms): true when the subscription has something for poll,
 * false on timeout, nil, "not connected". */
static int store_wait(lua_State *L) {
    lstore *st = self(L);
    double ms = luaL_checknumber(L, 2);
    if (!(ms >= 0)) luaL_argerror(L, 2, "milliseconds must be >= 0");
    int r = cb_store_wait(st->s, ms);
    if (r == CB_ERR) {
        lua_pushnil(L);
        lua_pushliteral(L, "not connected");
        return 2;
    }
    lua_pushboolean(L, r);
    return 1;
}

static void add_name(void *ud, const char *name) {
    lua_State *L = ud;  /* the names table is on top */
    lua_pushstring(L, name);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* store:names() -> the names in the boot-recovery hash, sorted, or nil, msg. */
static int store_names(lua_State *L) {
    lstore *st = self(L);
    lua_newtable(L);
    lua_checkstack(L, 4);
    if (cb_store_names(st->s, add_name, L) == CB_ERR) {
        cb_store_health h;
        cb_store_get_health(st->s, &h);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot list breakers: %s", h.connected ? "Redis failed" : h.last_error);
        return 2;
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    return 1;
}

static void add_entry(void *ud, const char *name, const char *source) {
    lua_State *L = ud;  /* the list is on top */
    lua_createtable(L, 0, 2);
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    lua_pushstring(L, source);
    lua_setfield(L, -2, "source");
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
}

/* store:list() -> { {name=, source="cbreaker"|"keys"}, ... }: every breaker
 * held open, announced by an instance or only in its per-field keys (a peer
 * that never publishes), or nil, msg. */
static int store_list(lua_State *L) {
    lstore *st = self(L);
    lua_newtable(L);
    lua_checkstack(L, 4);
    if (cb_store_list(st->s, add_entry, L) == CB_ERR) {
        cb_store_health h;
        cb_store_get_health(st->s, &h);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot list breakers: %s", h.connected ? "Redis failed" : h.last_error);
        return 2;
    }
    return 1;
}

static int store_fd(lua_State *L) {
    int fd = cb_store_fd(self(L)->s);
    if (fd < 0) {
        lua_pushnil(L);
        lua_pushliteral(L, "not connected");
        return 2;
    }
    lua_pushinteger(L, fd);
    return 1;
}

#define SETINT(f) (lua_pushinteger(L, (lua_Integer)h.f), lua_setfield(L, -2, #f))
#define SETNUM(f) (lua_pushnumber(L, h.f), lua_setfield(L, -2, #f))

static int store_health(lua_State *L) {
    lstore *st = self(L);
    cb_store_health h;
    cb_store_get_health(st->s, &h);
    lua_createtable(L, 0, 20);
    lua_pushboolean(L, h.connected);
    lua_setfield(L, -2, "connected");
    lua_pushstring(L, h.last_error);
    lua_setfield(L, -2, "last_error");
    lua_pushstring(L, h.id);
    lua_setfield(L, -2, "id");
    SETINT(reconnects); SETINT(failures); SETINT(published); SETINT(received);
    SETINT(applied); SETINT(own); SETINT(malformed); SETINT(dropped); SETINT(attached);
    SETINT(unsigned_msgs); SETINT(bad_signature); SETINT(stale); SETINT(peer_unparsed);
    SETINT(replayed);
    SETNUM(backoff); SETNUM(retry_in);
    return 1;
}

static int store_close(lua_State *L) {
    lstore *st = cb_lua_checkself(L);
    cb_store *s = st->s;
    st->s = NULL;
    cb_store_free(s);  /* detaches its breakers */
    cb_lua_forgetself(L, st);  /* as __gc: the memory goes next */
    return 0;
}

static int store_tostring(lua_State *L) {
    lstore *st = cb_lua_checkself(L);
    if (!st->s) {
        lua_pushliteral(L, "cbreaker.Store (closed)");
    } else {
        cb_store_health h;
        cb_store_get_health(st->s, &h);
        lua_pushfstring(L, "cbreaker.Store (%s)", h.connected ? "connected" : "disconnected");
    }
    return 1;
}

static const luaL_Reg store_methods[] = {
    {"poll", store_poll},
    {"wait", store_wait},
    {"fd", store_fd},
    {"names", store_names},
    {"list", store_list},
    {"health", store_health},
    {"attach", store_attach},
    {"detach", store_detach},
    {"close", store_close},
    {NULL, NULL}
};

static const luaL_Reg store_meta[] = {
    {"__gc", store_close},
    {"__close", store_close},
    {"__tostring", store_tostring},
    {NULL, NULL}
};

static const luaL_Reg store_funcs[] = {
    {"redis", store_new},
    {NULL, NULL}
};

void cb_lua_open_store(lua_State *L) {
    cb_lua_newclass(L, CB_CLASS_STORE, CB_STORE_MT, store_methods, store_meta, 0);
    luaL_setfuncs(L, store_funcs, 0);
}

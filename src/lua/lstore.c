/* lstore.c -- cbreaker.Store: cb.redis{...}, a Redis store breakers attach
 * to with `cb.new{store = s}` or `s:attach(br)`. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
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

/* A node's "host:port" or a master's name goes into a URL: none of the
 * URL's separators, no space, not empty. */
static int url_safe(const char *v, size_t len) {
    return len > 0 && strlen(v) == len && strcspn(v, ",/@?# \t\r\n") == len;
}

/* The list option `field` (at index `at`) of "host:port" strings, added to
 * the URL in `b` comma-separated. */
static void add_nodes(lua_State *L, luaL_Buffer *b, int at, const char *field) {
    const char *ctx = "cbreaker.redis";
    lua_Integer n = lua_type(L, at) == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, at) : 0;
    if (n == 0)
        luaL_error(L, "%s: option '%s' must be a list of \"host:port\" (got %s)", ctx, field,
                   lua_type(L, at) == LUA_TTABLE ? "an empty table" : luaL_typename(L, at));
    for (lua_Integer i = 1; i <= n; i++) {
        if (i > 1) luaL_addchar(b, ',');
        size_t len;
        int t = lua_rawgeti(L, at, i);
        const char *v = t == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
        if (!v || !url_safe(v, len))
            luaL_error(L, "%s: option '%s[%d]' must be \"host:port\" (got %s)", ctx, field,
                       (int)i, v ? "a string with '/', ',', '@', a space or a zero byte"
                                 : lua_typename(L, t));
        luaL_addvalue(b);
    }
}

/* sentinels = {"host:port", ...} with master = "name", or cluster =
 * {"host:port", ...} (options at 1): the table forms of redis+sentinel://
 * and redis+cluster:// URLs.  Pushes that URL and points o.url at it (it
 * must stay on the stack), or pushes nothing when none is given.  The
 * buffer is built above the three options, which stay where they are. */
static void seeds_url(lua_State *L, cb_store_opts *o, int url_given) {
    const char *ctx = "cbreaker.redis";
    int top = lua_gettop(L);
    lua_pushliteral(L, "sentinels");  /* raw, as the option reader reads */
    int ts = lua_rawget(L, 1);
    lua_pushliteral(L, "master");
    int tm = lua_rawget(L, 1);
    lua_pushliteral(L, "cluster");
    int tc = lua_rawget(L, 1);
    if (ts == LUA_TNIL && tm == LUA_TNIL && tc == LUA_TNIL) {
        lua_settop(L, top);
        return;
    }
    if (tc != LUA_TNIL && (ts != LUA_TNIL || tm != LUA_TNIL))
        luaL_error(L, "%s: give 'sentinels' and 'master', or 'cluster', not both", ctx);
    size_t len = 0;
    const char *master = tm == LUA_TSTRING ? lua_tolstring(L, top + 2, &len) : NULL;
    if (tc == LUA_TNIL && (!master || !url_safe(master, len)))
        luaL_error(L, "%s: option 'master' must be the name the sentinels monitor (got %s)",
                   ctx, master ? "a name with '/', ',', '@', a space or a zero byte"
                               : lua_typename(L, tm));
    if (tc == LUA_TNIL && ts == LUA_TNIL)
        luaL_error(L, "%s: option 'master' needs 'sentinels', a list of \"host:port\"", ctx);
    if (url_given)
        luaL_error(L, "%s: give %s, or 'url', not both", ctx,
                   tc != LUA_TNIL ? "'cluster'" : "'sentinels' and 'master'");
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    if (tc != LUA_TNIL) {
        luaL_addstring(&b, o->tls.enabled ? "rediss+cluster://" : "redis+cluster://");
        add_nodes(L, &b, top + 3, "cluster");
    } else {
        luaL_addstring(&b, o->tls.enabled ? "rediss+sentinel://" : "redis+sentinel://");
        add_nodes(L, &b, top + 1, "sentinels");
        luaL_addchar(&b, '/');
        luaL_addstring(&b, master);
    }
    luaL_pushresult(&b);
    o->url = lua_tostring(L, -1);
}

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
    cb_lua_read_opts(L, 1, &cb_store_schema, &o, &r);  /* strings stay in the table; the
                                      sentinels, master and cluster types checked */
    lua_pushliteral(L, "url");
    int url_given = lua_rawget(L, 1) != LUA_TNIL;
    lua_pop(L, 1);
    seeds_url(L, &o, url_given);  /* the URL stays on the stack while o.url points at it */
    cb_store *s = cb_store_new(&o);
    if (!s) return luaL_error(L, "cbreaker.redis: out of memory");
    if (s->err == CB_STORE_EOPTS) {
        lua_pushfstring(L, "cbreaker.redis: %s", s->errstr);
        cb_store_free(s);
        return lua_error(L);
    }
    box->s = s;  /* unreachable Redis is no error: the store retries by itself */
    lua_settop(L, 2);  /* the box */
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
}

static int store_attach(lua_State *L) {
    lstore *st = self(L);
    cb_lua_store_attach(L, 1, 2, "attach");
    lua_settop(L, 2);
    return cb_lua_finish(L, st->m, 1);  /* what the boot import changed */
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

/* Results first, callbacks last: a callback may close the store. */
static int store_poll(lua_State *L) {
    lstore *st = self(L);
    int n = cb_store_poll(st->s);
    if (n == CB_ERR) {
        cb_store_health h;
        cb_store_get_health(st->s, &h);
        lua_pushnil(L);
        lua_pushfstring(L, "not connected: %s", h.last_error);
        return cb_lua_finish(L, st->m, 2);
    }
    lua_pushinteger(L, n);
    return cb_lua_finish(L, st->m, 1);
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

/* What store:names() and store:list() collect: the core hands strings out
 * inside its frames, where no Lua may run (a Lua allocation can run a
 * finalizer that closes the store), so they are copied here first, NUL
 * separated, in memory a userdata owns (freed by its __gc if a push raises). */
#define STRBUF_MT "cbreaker.StoreStrings"

typedef struct strbuf {
    char *p;
    size_t len, cap;
    int oom;
} strbuf;

static int strbuf_gc(lua_State *L) {
    strbuf *sb = lua_touserdata(L, 1);
    free(sb->p);
    sb->p = NULL;
    return 0;
}

static strbuf *push_strbuf(lua_State *L) {
    strbuf *sb = lua_newuserdatauv(L, sizeof *sb, 0);
    *sb = (strbuf){NULL, 0, 0, 0};
    luaL_setmetatable(L, STRBUF_MT);
    return sb;
}

static void strbuf_add(strbuf *sb, const char *s) {
    size_t n = strlen(s) + 1;
    if (sb->oom) return;
    if (n > sb->cap - sb->len) {
        size_t cap = sb->cap ? sb->cap : 256;
        while (cap - sb->len < n) {
            if (cap > SIZE_MAX / 2) { sb->oom = 1; return; }
            cap *= 2;
        }
        char *p = realloc(sb->p, cap);
        if (!p) { sb->oom = 1; return; }
        sb->p = p;
        sb->cap = cap;
    }
    memcpy(sb->p + sb->len, s, n);
    sb->len += n;
}

static void add_name(void *ud, const char *name) {
    strbuf_add(ud, name);
}

static void add_entry(void *ud, const char *name, const char *source) {
    strbuf_add(ud, name);
    strbuf_add(ud, source);
}

/* Pushes the error of a failed listing. */
static int list_failed(lua_State *L, lstore *st) {
    cb_store_health h;
    cb_store_get_health(st->s, &h);
    lua_pushnil(L);
    lua_pushfstring(L, "cannot list breakers: %s", h.connected ? "Redis failed" : h.last_error);
    return 2;
}

/* store:names() -> the names in the boot-recovery hash, sorted, or nil, msg. */
static int store_names(lua_State *L) {
    lstore *st = self(L);
    strbuf *sb = push_strbuf(L);
    if (!st->s) return luaL_error(L, "attempt to use a closed store");  /* a finalizer */
    if (cb_store_names(st->s, add_name, sb) == CB_ERR) return list_failed(L, st);
    if (sb->oom) return luaL_error(L, "names: out of memory");
    lua_newtable(L);
    lua_Integer i = 0;
    for (size_t off = 0; off < sb->len; off += strlen(sb->p + off) + 1) {
        lua_pushstring(L, sb->p + off);  /* sb is anchored below */
        lua_rawseti(L, -2, ++i);
    }
    lua_getglobal(L, "table");
    lua_getfield(L, -1, "sort");
    lua_pushvalue(L, -3);
    lua_call(L, 1, 0);
    lua_pop(L, 1);
    return 1;
}

/* store:list() -> { {name=, source="cbreaker"|"keys"}, ... }: every breaker
 * held open, announced by an instance or only in its per-field keys (a peer
 * that never publishes), or nil, msg. */
static int store_list(lua_State *L) {
    lstore *st = self(L);
    strbuf *sb = push_strbuf(L);
    if (!st->s) return luaL_error(L, "attempt to use a closed store");  /* a finalizer */
    if (cb_store_list(st->s, add_entry, sb) == CB_ERR) return list_failed(L, st);
    if (sb->oom) return luaL_error(L, "list: out of memory");
    lua_newtable(L);
    lua_Integer i = 0;
    for (size_t off = 0; off < sb->len;) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, sb->p + off);
        lua_setfield(L, -2, "name");
        off += strlen(sb->p + off) + 1;
        lua_pushstring(L, sb->p + off);
        lua_setfield(L, -2, "source");
        off += strlen(sb->p + off) + 1;
        lua_rawseti(L, -2, ++i);
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
    /* h's strings point into the store, which a finalizer run by an
     * allocation may close: each is read again after the one before. */
    cb_store_get_health(st->s, &h);
    lua_pushstring(L, h.last_error);
    if (!st->s) return luaL_error(L, "attempt to use a closed store");
    cb_store_get_health(st->s, &h);
    lua_pushstring(L, h.id);
    lua_createtable(L, 0, 20);  /* last_error, id, t */
    lua_insert(L, -3);
    lua_setfield(L, -3, "id");
    lua_setfield(L, -2, "last_error");
    lua_pushboolean(L, h.connected);
    lua_setfield(L, -2, "connected");
    SETINT(reconnects); SETINT(failures); SETINT(published); SETINT(received);
    SETINT(applied); SETINT(own); SETINT(malformed); SETINT(dropped); SETINT(attached);
    SETINT(unsigned_msgs); SETINT(bad_signature); SETINT(stale); SETINT(peer_unparsed);
    SETINT(replayed); SETINT(peer_wrongtype);
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

static int store_gc(lua_State *L) {
    store_close(L);
    cb_lua_finalized(L, lua_touserdata(L, 1));
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
    {"__gc", store_gc},
    {"__close", store_close},
    {"__tostring", store_tostring},
    {NULL, NULL}
};

static const luaL_Reg store_funcs[] = {
    {"redis", store_new},
    {NULL, NULL}
};

void cb_lua_open_store(lua_State *L) {
    if (luaL_newmetatable(L, STRBUF_MT)) {
        lua_pushcfunction(L, strbuf_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    cb_lua_newclass(L, CB_CLASS_STORE, CB_STORE_MT, store_methods, store_meta, 0);
    luaL_setfuncs(L, store_funcs, 0);
}

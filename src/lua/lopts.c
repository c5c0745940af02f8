/* lopts.c -- the one reader of option tables.  Every options table of the
 * binding (cb.new, br:configure, cb.registry and its defaults, reg:get,
 * cb.bandit, b:configure, cb.redis) and every policy section
 * (core.check_options) goes through read_table against the core's schema
 * (src/core/optspec.c), as lua-cjson routes every option through one
 * reader: every key is known, every value has the right type and range, a
 * misspelt key gets the closest valid name, and errors name the full path. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cbreaker_pool.h"
#include "lcbreaker.h"
#if CB_WITH_REDIS
#include "cbreaker_redis.h"
#endif

/* ---- host values: options the core's structs do not hold ------------------------ */

typedef struct lhost {
    const char *name;
    int flags;       /* CB_OPT_NEW: not by configure */
    int type;        /* LUA_TFUNCTION, LUA_TTABLE, LUA_TUSERDATA or LUA_TNONE (any) */
    const char *mt;  /* LUA_TUSERDATA: its metatable name */
    const char *what;
    const char *hint;  /* why configure cannot set it, or NULL */
} lhost;

/* In the order of CB_KEEP_* (lcbreaker.h). */
static const lhost breaker_host[] = {
    {"classify", 0, LUA_TFUNCTION, NULL, "a function", NULL},
    {"on_change", CB_OPT_NEW, LUA_TFUNCTION, NULL, "a function", " (use br:on_change)"},
    /* without Redis any value: keeping it raises why there is no store */
    {"store", CB_OPT_NEW, CB_WITH_REDIS ? LUA_TUSERDATA : LUA_TNONE, CB_STORE_MT,
     "a cbreaker.Store", " (use store:attach)"},
    {NULL, 0, 0, NULL, NULL, NULL}
};

static const lhost bandit_host[] = {
    {"arms", CB_OPT_NEW, LUA_TTABLE, NULL, "a list of names", " (use add_arm)"},
    {NULL, 0, 0, NULL, NULL, NULL}
};

#if CB_WITH_REDIS
/* What cb.redis reads itself (lstore.c): the table forms of a Sentinel or
 * Cluster URL.  Here so that check_options and policies know them. */
static const lhost store_host[] = {
    {"sentinels", CB_OPT_NEW, LUA_TTABLE, NULL, "a list of \"host:port\"", NULL},
    {"master", CB_OPT_NEW, LUA_TSTRING, NULL, "the name the sentinels monitor", NULL},
    {"cluster", CB_OPT_NEW, LUA_TTABLE, NULL, "a list of \"host:port\"", NULL},
    {NULL, 0, 0, NULL, NULL, NULL}
};
#endif

static const lhost no_host[] = {{NULL, 0, 0, NULL, NULL, NULL}};

typedef struct lschema {
    const cb_optschema *core;
    const lhost *host;
} lschema;

static const lschema schemas[] = {
    {&cb_breaker_schema, breaker_host},
    {&cb_registry_schema, no_host},
    {&cb_bandit_schema, bandit_host},
    {&cb_pool_schema, no_host},
#if CB_WITH_REDIS
    {&cb_store_schema, store_host},
    {&cb_store_tls_schema, no_host},  /* nested: after the kinds check_options names */
#endif
};

static const lschema *schema_of(const cb_optschema *core) {
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++)
        if (schemas[i].core == core) return &schemas[i];
    return NULL;
}

/* ---- did you mean --------------------------------------------------------------- */

/* Edit distance, capped: names are short. */
static size_t distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return (size_t)-1;
    size_t row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

typedef struct nearest {
    const char *s, *best;
    size_t d;
} nearest;

static void consider(nearest *n, const char *name) {
    size_t d = distance(n->s, name);
    if (d < n->d) { n->d = d; n->best = name; }
}

static const char *nearest_result(const nearest *n) {
    size_t limit = strlen(n->s) / 3 + 1;  /* a typo, not another word */
    return n->d <= (limit > 3 ? 3 : limit) ? n->best : NULL;
}

const char *cb_lua_closest(const char *s, const char *const *names) {
    nearest n = {s, NULL, (size_t)-1};
    for (; names && *names; names++) consider(&n, *names);
    return nearest_result(&n);
}

/* ---- the reader ------------------------------------------------------------------ */

/* Pushes the full name of option `key` ("providers.openai.window"). */
static const char *pushpath(lua_State *L, const cb_lua_optread *r, const char *key) {
    if (r->path && r->path[0]) return lua_pushfstring(L, "%s.%s", r->path, key);
    return lua_pushstring(L, key);
}

/* Raises "CTX: MSG"; CTX is left out when empty (core.check_options). */
static int opterror(lua_State *L, const cb_lua_optread *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    const char *msg = lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    if (r->ctx && r->ctx[0]) return luaL_error(L, "%s: %s", r->ctx, msg);
    return luaL_error(L, "%s", msg);
}

/* Raises "option 'PATH' must be WHAT (got X)" for the value at the top:
 * X is its type, or the value itself when `show` (a number out of range). */
static int badvalue(lua_State *L, const cb_lua_optread *r, const char *key,
                    const char *what, int show) {
    const char *path = pushpath(L, r, key);
    const char *got;
    if (!show) got = luaL_typename(L, -2);
    else got = luaL_tolstring(L, -2, NULL);
    return opterror(L, r, "option '%s' must be %s (got %s)", path, what, got);
}

/* What the caller's table of names says of `name`: 1 handled, 0 refused,
 * -1 nothing. */
static int extra_of(lua_State *L, const cb_lua_optread *r, const char *name) {
    if (!r->extra) return -1;
    int t = lua_getfield(L, r->extra, name);
    int v = t == LUA_TNIL ? -1 : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static int unknown(lua_State *L, const cb_lua_optread *r, const lschema *s,
                   const char *key) {
    nearest n = {key, NULL, (size_t)-1};
    for (size_t i = 0; i < s->core->n; i++) {
        const cb_optspec *f = &s->core->f[i];
        if (!(r->nested && (f->flags & CB_OPT_TOP)) && extra_of(L, r, f->name) != 0)
            consider(&n, f->name);
    }
    if (!r->nested)
        for (const lhost *h = s->host; h->name; h++)
            if (extra_of(L, r, h->name) != 0) consider(&n, h->name);
    if (r->extra) {
        lua_pushnil(L);
        while (lua_next(L, r->extra)) {  /* the strings stay in the table */
            if (lua_type(L, -2) == LUA_TSTRING && lua_toboolean(L, -1))
                consider(&n, lua_tostring(L, -2));
            lua_pop(L, 1);
        }
    }
    const char *near = nearest_result(&n);
    const char *path = pushpath(L, r, key);
    if (near) return opterror(L, r, "unknown option '%s' (did you mean '%s'?)", path, near);
    return opterror(L, r, "unknown option '%s'", path);
}

/* The number at the top as an integer in range, else raises. */
static lua_Integer checkinteger(lua_State *L, const cb_lua_optread *r, const cb_optspec *f) {
    if (lua_type(L, -1) != LUA_TNUMBER) badvalue(L, r, f->name, f->what, 0);
    int isint = 0;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || !cb_optspec_in_range(f, (double)v)) badvalue(L, r, f->name, f->what, 1);
    return v;
}

static double checknumber(lua_State *L, const cb_lua_optread *r, const cb_optspec *f,
                          const char *name) {
    if (lua_type(L, -1) != LUA_TNUMBER) badvalue(L, r, name, f->what, 0);
    double v = lua_tonumber(L, -1);
    if (!cb_optspec_in_range(f, v)) badvalue(L, r, name, f->what, 1);
    return v;
}

static void read_table(lua_State *L, int idx, const lschema *s, void *o,
                       const cb_lua_optread *r);

/* Reads the value at the top into the field `f` of `o`. */
static void read_field(lua_State *L, const cb_optspec *f, void *o, const cb_lua_optread *r) {
    char *p = (char *)o + f->offset;
    switch (f->kind) {
    case CB_OPT_STRING: {
        if (lua_type(L, -1) != LUA_TSTRING) badvalue(L, r, f->name, f->what, 0);
        size_t len;
        const char *v = lua_tolstring(L, -1, &len);  /* lives as long as the table */
        if ((f->flags & CB_OPT_NOZERO) && strlen(v) != len) badvalue(L, r, f->name, f->what, 0);
        memcpy(p, &v, sizeof v);
        break;
    }
    case CB_OPT_NUMBER: {
        double v = checknumber(L, r, f, f->name);
        memcpy(p, &v, sizeof v);
        break;
    }
    case CB_OPT_U32:
    case CB_OPT_SIZE:
    case CB_OPT_SEED: {  /* in range, so each conversion is exact */
        lua_Integer v = checkinteger(L, r, f);
        uint32_t u32 = (uint32_t)v;
        size_t size = (size_t)v;
        uint64_t u64 = (uint64_t)v;  /* a negative seed wraps, as two's complement */
        if (f->kind == CB_OPT_U32) memcpy(p, &u32, sizeof u32);
        else if (f->kind == CB_OPT_SIZE) memcpy(p, &size, sizeof size);
        else memcpy(p, &u64, sizeof u64);
        break;
    }
    case CB_OPT_ENUM: {
        const char *const *names = f->sub;
        const char *v = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
        int i = 0;
        while (v && names[i] && strcmp(names[i], v) != 0) i++;
        if (!v || !names[i]) {
            const char *near = v ? cb_lua_closest(v, names) : NULL;
            const char *path = pushpath(L, r, f->name);
            if (near)
                opterror(L, r, "option '%s' must be %s (got '%s'; did you mean '%s'?)", path,
                         f->what, v, near);
            opterror(L, r, "option '%s' must be %s (got %s)", path, f->what,
                     v ? lua_pushfstring(L, "'%s'", v) : luaL_typename(L, -2));
        }
        memcpy(p, &i, sizeof i);
        break;
    }
    case CB_OPT_PAIR: {
        if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 2)
            badvalue(L, r, f->name, "{alpha, beta}, two numbers", 0);
        lua_pushnil(L);
        while (lua_next(L, -2)) {  /* pair, k, v */
            lua_Integer k = lua_tointeger(L, -2);
            if (lua_type(L, -2) != LUA_TNUMBER || (k != 1 && k != 2)) {
                const char *path = pushpath(L, r, f->name);
                opterror(L, r, "option '%s' must be {alpha, beta}, two numbers (got key %s)",
                         path, cb_lua_describe(L, -3));
            }
            lua_pop(L, 1);
        }
        double v[2];
        for (int k = 0; k < 2; k++) {
            lua_rawgeti(L, -1, k + 1);
            const char *name = lua_pushfstring(L, "%s[%d]", f->name, k + 1);
            lua_insert(L, -2);  /* pair, name, v */
            v[k] = checknumber(L, r, f, name);
            lua_pop(L, 2);
        }
        memcpy(p, &v[0], sizeof v[0]);
        memcpy((char *)o + f->offset2, &v[1], sizeof v[1]);
        break;
    }
    case CB_OPT_BOOL: {
        if (!lua_isboolean(L, -1)) badvalue(L, r, f->name, f->what, 0);
        int v = lua_toboolean(L, -1);
        memcpy(p, &v, sizeof v);
        break;
    }
    case CB_OPT_CLOCK: {
        cb_manual_clock *mc = luaL_testudata(L, -1, CB_CLOCK_MT);
        if (!mc) badvalue(L, r, f->name, f->what, 0);
        cb_clock c = {cb_manual_clock_now, mc};
        memcpy(p, &c, sizeof c);
        if (r->keep) r->keep(L, CB_KEEP_CLOCK, r->ud);  /* the caller keeps it alive */
        break;
    }
    case CB_OPT_OPTS: {
        if (!lua_istable(L, -1)) badvalue(L, r, f->name, f->what, 0);
        cb_lua_optread sub = *r;
        sub.path = pushpath(L, r, f->name);
        sub.nested = 1;
        sub.deny = CB_LUA_NAMED_BY_KEY;
        sub.keep = NULL;
        sub.extra = 0;
        read_table(L, -2, schema_of(f->sub), p, &sub);
        lua_pop(L, 1);  /* the path */
        break;
    }
    default:
        break;
    }
}

static void read_host(lua_State *L, const lschema *s, const lhost *h,
                      const cb_lua_optread *r) {
    int t = lua_type(L, -1);
    int ok = h->type == LUA_TNONE ? 1
           : h->type == LUA_TFUNCTION ? lua_isfunction(L, -1)
           : h->type == LUA_TUSERDATA ? luaL_testudata(L, -1, h->mt) != NULL
           : t == h->type;
    if (!ok) badvalue(L, r, h->name, h->what, 0);
    if (r->keep) r->keep(L, (int)(h - s->host), r->ud);
}

static void read_table(lua_State *L, int idx, const lschema *s, void *o,
                       const cb_lua_optread *r) {
    idx = lua_absindex(L, idx);
    luaL_checkstack(L, 8, "options");
    lua_pushnil(L);
    while (lua_next(L, idx)) {  /* key, value */
        if (lua_type(L, -2) != LUA_TSTRING) {
            if (r->path && r->path[0])
                opterror(L, r, "option names in '%s' must be strings (got %s)", r->path,
                         luaL_typename(L, -2));
            opterror(L, r, "option names must be strings (got %s)", luaL_typename(L, -2));
        }
        const char *key = lua_tostring(L, -2);
        int handled = extra_of(L, r, key);
        if (handled == 1) {  /* the caller's own */
            lua_pop(L, 1);
            continue;
        }
        if (handled == 0) unknown(L, r, s, key);
        const cb_optspec *f = cb_optschema_find(s->core, key);
        const lhost *h = NULL;
        if (!f)
            for (h = s->host; h->name && strcmp(h->name, key) != 0; h++) {}
        int flags = f ? f->flags : h->name ? h->flags : 0;
        if (!f && (!h->name || r->nested)) unknown(L, r, s, key);
        if (r->nested && (flags & CB_OPT_TOP))
            opterror(L, r, "option '%s' cannot be set here: %s", pushpath(L, r, key), r->deny);
        if (r->configure && (flags & CB_OPT_NEW))
            opterror(L, r, "option '%s' cannot be changed here%s", pushpath(L, r, key),
                     h && h->hint ? h->hint : "");
        if (f) read_field(L, f, o, r);
        else read_host(L, s, h, r);
        lua_pop(L, 1);  /* value; the key stays for lua_next */
    }
}

void cb_lua_keep_uv(lua_State *L, int which, void *ud) {
    if (which != CB_KEEP_CLOCK) return;  /* a host value: its reader reads it itself */
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, 2, *(const int *)ud);
}

void cb_lua_read_opts(lua_State *L, int idx, const cb_optschema *s, void *o,
                      const cb_lua_optread *r) {
    read_table(L, idx, schema_of(s), o, r);
}

/* core.check_options(kind, t [, path [, names]]) -> t: checks the options
 * table `t` of cb.new ("breaker"), cb.registry ("registry"), cb.bandit
 * ("bandit"), a provider pool ("pool") or cb.redis ("redis") without
 * building anything; errors name
 * options as `path.name`.  `names` maps keys the caller handles itself to
 * true (skipped here, suggested for typos) and keys it refuses to false.
 * The policy layer checks its sections with it. */
static int check_options(lua_State *L) {
    static const char *const kinds[] = {"breaker", "registry", "bandit", "pool", "redis", NULL};
    int k = luaL_checkoption(L, 1, NULL, kinds);
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *path = luaL_optstring(L, 3, "");
    if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
    union {
        cb_breaker_opts b;
        cb_registry_opts r;
        cb_bandit_opts d;
        cb_pool_opts p;
#if CB_WITH_REDIS
        cb_store_opts s;
#endif
    } o;
    switch (k) {
    case 0: cb_breaker_opts_init(&o.b); break;
    case 1: cb_registry_opts_init(&o.r); break;
    case 2: cb_bandit_opts_init(&o.d); break;
    case 3: cb_pool_opts_init(&o.p); break;
    default:
#if CB_WITH_REDIS
        cb_store_opts_init(&o.s);
#else
        return luaL_error(L, "check_options: built without Redis support");
#endif
        break;
    }
    cb_lua_optread r = {"", path, NULL, NULL, 0, 0, NULL, lua_istable(L, 4) ? 4 : 0};
    read_table(L, 2, &schemas[k], &o, &r);
    lua_settop(L, 2);
    return 1;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* cb.closest(name, names) -> the closest of `names` (a list of strings, or
 * a set: string keys) to `name`, or nil when none is close enough to be a
 * typo.  The Lua layer's "did you mean" uses the same rule as the C one. */
static int closest(lua_State *L) {
    const char *s = luaL_checkstring(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_Unsigned n = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_pop(L, 1);
        n++;
    }
    const char **names = lua_newuserdatauv(L, (n + 1) * sizeof *names, 0);
    size_t k = 0;
    lua_pushnil(L);
    while (lua_next(L, 2)) {  /* the strings stay alive in the table */
        if (lua_type(L, -1) == LUA_TSTRING) names[k++] = lua_tostring(L, -1);
        else if (lua_type(L, -2) == LUA_TSTRING) names[k++] = lua_tostring(L, -2);
        lua_pop(L, 1);
    }
    qsort(names, k, sizeof *names, compare_names);  /* ties break the same way every run */
    names[k] = NULL;
    const char *near = cb_lua_closest(s, names);
    if (near) lua_pushstring(L, near); else lua_pushnil(L);
    return 1;
}

static const luaL_Reg opts_funcs[] = {
    {"closest", closest},
    {"check_options", check_options},
    {NULL, NULL}
};

void cb_lua_open_opts(lua_State *L) {
    luaL_setfuncs(L, opts_funcs, 0);
}

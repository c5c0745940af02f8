/* lbandit.c -- cbreaker.Bandit: cb.bandit{...}, Thompson sampling over
 * named arms.
 *
 * Arms are named in Lua and numbered in C.  The box keeps, as user values,
 * the names as Lua strings (index -> name) and the reverse map (name ->
 * index), so select() returns the chosen name with one rawgeti: no string or
 * table is created per call.  To turn the eligible names into indices,
 * select() first looks up each string's address in a small table in the box:
 * Lua 5.4 interns short strings, so a name equal to an arm's is the very
 * string the names table keeps alive.  A miss (a long string, which is not
 * interned) falls back to the reverse map, so the cache is never wrong. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "lcbreaker.h"

#define SLOTS (2 * CB_BANDIT_MAX_ARMS)  /* a power of two, at most half full */

/* About 5 KB a bandit: a few per program, each consulted on every select. */
typedef struct lbandit {
    cb_bandit *b;              /* NULL once closed */
    const char *key[SLOTS];    /* an arm name's string address, or NULL */
    uint16_t arm[SLOTS];       /* its arm index */
} lbandit;

static unsigned slot_of(const char *s) {
    uint64_t h = (uint64_t)(uintptr_t)s * 0x9e3779b97f4a7c15ULL;  /* Fibonacci hashing */
    return (unsigned)(h >> 55) & (SLOTS - 1);
}

static void cache_arm(lbandit *box, const char *s, int i) {
    unsigned k = slot_of(s);
    while (box->key[k]) k = (k + 1) & (SLOTS - 1);
    box->key[k] = s;
    box->arm[k] = (uint16_t)i;
}

/* The arm whose name string is at `s`, or -1 (then ask the reverse map). */
static int cached_arm(const lbandit *box, const char *s) {
    for (unsigned k = slot_of(s); box->key[k]; k = (k + 1) & (SLOTS - 1))
        if (box->key[k] == s) return box->arm[k];
    return -1;
}

/* User values of a bandit box. */
enum { UV_NAMES = 1, UV_INDEX, UV_CLOCK, UV_COUNT = 3 };

/* Upvalues of every method after the class (CB_UP_CLASS). */
enum { UP_NONE = CB_UP_FIRST, UP_COUNT = 1 };

#define NO_ARMS "no eligible arms"

/* `self` of a method: a live bandit. */
static lbandit *self_box(lua_State *L) {
    lbandit *box = cb_lua_checkself(L);
    if (!box->b) luaL_error(L, "attempt to use a closed bandit");
    return box;
}

static cb_bandit *self(lua_State *L) {
    return self_box(L)->b;
}

/* Raises "CTX: unknown arm 'NAME' (did you mean 'ARM'?)". */
static int unknown_arm(lua_State *L, cb_bandit *b, const char *ctx, const char *name) {
    const char *names[CB_BANDIT_MAX_ARMS + 1];
    int n = cb_bandit_arm_count(b);
    for (int i = 0; i < n; i++) names[i] = cb_bandit_arm_name(b, i);
    names[n] = NULL;
    const char *near = cb_lua_closest(name, names);
    if (near) return luaL_error(L, "%s: unknown arm '%s' (did you mean '%s'?)", ctx, name, near);
    return luaL_error(L, "%s: unknown arm '%s'", ctx, name);
}

/* The index of the arm named by the string at `idx`. */
static int checkarm(lua_State *L, cb_bandit *b, int idx, const char *ctx) {
    if (lua_type(L, idx) != LUA_TSTRING) luaL_typeerror(L, idx, "arm name");
    lua_getiuservalue(L, 1, UV_INDEX);
    lua_pushvalue(L, idx);
    if (lua_rawget(L, -2) != LUA_TNUMBER)  /* index, i */
        unknown_arm(L, b, ctx, lua_tostring(L, idx));
    int i = (int)lua_tointeger(L, -1) - 1;
    lua_pop(L, 2);
    return i;
}

static double checkfraction(lua_State *L, int idx, const char *what) {
    if (lua_type(L, idx) != LUA_TNUMBER) luaL_typeerror(L, idx, "number in [0, 1]");
    double v = lua_tonumber(L, idx);
    if (!(v >= 0 && v <= 1))  /* NaN too */
        luaL_argerror(L, idx, lua_pushfstring(L, "%s must be in [0, 1], got %s", what,
                                              isnan(v) ? "nan" : lua_tostring(L, idx)));
    return v;
}

/* ---- options ------------------------------------------------------------------ */

/* Keeps the arms list and the clock in the stack slots `ud` points at. */
static void keep_opt(lua_State *L, int which, void *ud) {
    int arms = *(int *)ud;
    lua_pushvalue(L, -1);
    lua_replace(L, which == CB_KEEP_ARMS ? arms : arms + 1);
}

/* Reads the options table at `idx` into `o`, and pushes the arms list and
 * the clock given (each or nil): the caller keeps the clock alive once the
 * options are in use.  Arms and seed can be given only when creating. */
static void read_opts(lua_State *L, int idx, cb_bandit_opts *o, const char *ctx,
                      int creating) {
    idx = lua_absindex(L, idx);
    lua_pushnil(L);  /* the arms list, when given */
    int arms = lua_gettop(L);
    lua_pushnil(L);  /* the clock */
    cb_lua_optread r = {ctx, "", keep_opt, &arms, 0, !creating, NULL, 0};
    cb_lua_read_opts(L, idx, &cb_bandit_schema, o, &r);
    const char *bad = cb_bandit_opts_check(o);
    if (bad) luaL_error(L, "%s: %s", ctx, bad);
}

/* Adds the arm named by the value at the top of the stack (popped), keeping
 * the names and index tables (box user values) in step. */
static void add_arm(lua_State *L, int box, lbandit *lb, const char *ctx, const char *what) {
    cb_bandit *b = lb->b;  /* read anew per arm: the last one's tables allocated */
    if (!b) luaL_error(L, "%s: the bandit was closed meanwhile", ctx);
    size_t len;
    if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "%s: %s must be a name (got %s)", ctx, what, luaL_typename(L, -1));
    const char *name = lua_tolstring(L, -1, &len);
    if (len == 0 || strlen(name) != len)
        luaL_error(L, "%s: %s must be a non-empty name without zero bytes", ctx, what);
    if (cb_bandit_find_arm(b, name) >= 0) luaL_error(L, "%s: arm '%s' is listed twice", ctx, name);
    if (cb_bandit_arm_count(b) >= CB_BANDIT_MAX_ARMS)
        luaL_error(L, "%s: too many arms (at most %d)", ctx, CB_BANDIT_MAX_ARMS);
    int i = cb_bandit_add_arm(b, name);
    if (i < 0) luaL_error(L, "%s: out of memory", ctx);
    lua_getiuservalue(L, box, UV_NAMES);  /* name, names */
    cache_arm(lb, name, i);  /* `name` is the string the names table keeps */
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, i + 1);
    lua_getiuservalue(L, box, UV_INDEX);  /* name, names, index */
    lua_pushvalue(L, -3);
    lua_pushinteger(L, i + 1);
    lua_rawset(L, -3);
    lua_pop(L, 3);
}

/* ---- life cycle ----------------------------------------------------------------- */

static int bandit_new(lua_State *L) {
    const char *ctx = "cbreaker.bandit";
    if (lua_isnoneornil(L, 1)) lua_newtable(L);
    else luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    /* The box first, closed: a raised error below leaks nothing. */
    lbandit *box = lua_newuserdatauv(L, sizeof *box, UV_COUNT);
    box->b = NULL;
    memset(box->key, 0, sizeof box->key);
    luaL_setmetatable(L, CB_BANDIT_MT);
    lua_newtable(L);
    lua_setiuservalue(L, 2, UV_NAMES);
    lua_newtable(L);
    lua_setiuservalue(L, 2, UV_INDEX);
    cb_bandit_opts o;
    cb_bandit_opts_init(&o);
    read_opts(L, 1, &o, ctx, 1);  /* opts, box, arms, clock */
    lua_setiuservalue(L, 2, UV_CLOCK);  /* keeps the clock alive */
    box->b = cb_bandit_new(&o);
    if (!box->b) return luaL_error(L, "%s: out of memory", ctx);
    if (!lua_isnil(L, 3)) {
        lua_Unsigned n = lua_rawlen(L, 3), keys = 0;
        lua_pushnil(L);
        while (lua_next(L, 3)) {
            keys++;
            lua_pop(L, 1);
        }
        if (keys != n) return luaL_error(L, "%s: option 'arms' must be a list of names", ctx);
        char what[32];
        for (lua_Unsigned k = 1; k <= n; k++) {
            snprintf(what, sizeof what, "arms[%u]", (unsigned)k);
            lua_rawgeti(L, 3, (lua_Integer)k);
            add_arm(L, 2, box, ctx, what);
        }
    }
    lua_settop(L, 2);
    return 1;
}

static int bandit_close(lua_State *L) {
    lbandit *box = cb_lua_checkself(L);
    cb_bandit_free(box->b);  /* idempotent: free(NULL) is a no-op */
    box->b = NULL;
    cb_lua_forgetself(L, box);  /* as __gc: the memory goes next */
    return 0;
}

static int bandit_gc(lua_State *L) {
    bandit_close(L);
    cb_lua_finalized(L, lua_touserdata(L, 1));  /* the memory goes next */
    return 0;
}

static int bandit_tostring(lua_State *L) {
    lbandit *box = cb_lua_checkself(L);
    if (!box->b) lua_pushliteral(L, "cbreaker.Bandit (closed)");
    else lua_pushfstring(L, "cbreaker.Bandit (%d arms)", cb_bandit_arm_count(box->b));
    return 1;
}

/* ---- hot path ------------------------------------------------------------------- */

static int bandit_update(lua_State *L) {
    cb_bandit *b = self(L);
    int i = checkarm(L, b, 2, "bandit:update");
    cb_bandit_update(b, i, checkfraction(L, 3, "reward"));
    return 0;
}

static int bandit_sample(lua_State *L) {
    cb_bandit *b = self(L);
    lua_pushnumber(L, cb_bandit_sample(b, checkarm(L, b, 2, "bandit:sample")));
    return 1;
}

/* b:select([names]) -> the chosen name, or nil, "no eligible arms". */
static int bandit_select(lua_State *L) {
    lbandit *box = self_box(L);
    cb_bandit *b = box->b;
    int chosen, list = lua_type(L, 2);
    if (list == LUA_TNONE || list == LUA_TNIL) {
        chosen = cb_bandit_select(b, NULL, 0);
    } else {
        if (list != LUA_TTABLE) return luaL_typeerror(L, 2, "list of arm names");
        lua_Unsigned len = lua_rawlen(L, 2);
        if (len > 12) luaL_checkstack(L, 40, NULL);  /* names pile up 32 at a time */
        int idx[CB_BANDIT_MAX_ARMS];
        uint64_t seen[CB_BANDIT_MAX_ARMS / 64] = {0};  /* keeps n within idx */
        size_t n = 0;
        int piled = 0;  /* names left on the stack */
        for (lua_Unsigned k = 1; k <= len; k++) {
            if (lua_rawgeti(L, 2, (lua_Integer)k) != LUA_TSTRING)
                return luaL_argerror(L, 2, lua_pushfstring(L, "eligible[%d] must be an arm name, got %s",
                                                           (int)k, luaL_typename(L, -1)));
            const char *name = lua_tolstring(L, -1, NULL);
            int i = cached_arm(box, name);
            if (i < 0) {  /* not an interned arm name: ask the reverse map */
                lua_getiuservalue(L, 1, UV_INDEX);
                lua_pushvalue(L, -2);
                if (lua_rawget(L, -2) != LUA_TNUMBER)
                    return unknown_arm(L, b, "bandit:select", name);
                i = (int)lua_tointeger(L, -1) - 1;
                lua_pop(L, piled + 3);  /* the names, this one, the map, its answer */
                piled = 0;
            } else if (++piled == 32) {
                lua_pop(L, piled);  /* one pop for many names */
                piled = 0;
            }
            uint64_t bit = (uint64_t)1 << (i & 63);
            if (!(seen[i >> 6] & bit)) {
                seen[i >> 6] |= bit;
                idx[n++] = i;
            }
        }
        chosen = n ? cb_bandit_select(b, idx, n) : CB_ERR;
    }
    if (chosen < 0) {  /* an empty list, or no arms at all */
        lua_pushnil(L);
        lua_pushvalue(L, lua_upvalueindex(UP_NONE));
        return 2;
    }
    lua_getiuservalue(L, 1, UV_NAMES);
    lua_rawgeti(L, -1, chosen + 1);
    return 1;
}

/* ---- the rest ------------------------------------------------------------------- */

/* Pushes an arm's stats table from a copy (the pool's stats too). */
void cb_lua_pusharmstats(lua_State *L, const cb_bandit_arm_stats *st) {
    lua_createtable(L, 0, 6);
    lua_pushnumber(L, st->alpha);
    lua_setfield(L, -2, "alpha");
    lua_pushnumber(L, st->beta);
    lua_setfield(L, -2, "beta");
    lua_pushnumber(L, st->mean);
    lua_setfield(L, -2, "mean");
    lua_pushinteger(L, (lua_Integer)st->updates);
    lua_setfield(L, -2, "updates");
    lua_pushinteger(L, (lua_Integer)st->selections);
    lua_setfield(L, -2, "selections");
    lua_pushnumber(L, st->rewards);
    lua_setfield(L, -2, "rewards");
}

static void push_stats(lua_State *L, cb_bandit *b, int i) {
    cb_bandit_arm_stats st;
    cb_bandit_get_stats(b, i, &st);  /* a copy: the allocations below may run finalizers */
    cb_lua_pusharmstats(L, &st);
}

/* b:stats() -> {name = {alpha=, beta=, ...}, ...}; b:stats(arm) -> one. */
static int bandit_stats(lua_State *L) {
    cb_bandit *b = self(L);
    if (!lua_isnoneornil(L, 2)) {
        push_stats(L, b, checkarm(L, b, 2, "bandit:stats"));
        return 1;
    }
    int n = cb_bandit_arm_count(b);
    lua_getiuservalue(L, 1, UV_NAMES);  /* names */
    lua_createtable(L, 0, n);           /* names, stats */
    for (int i = 0; i < n; i++) {
        lua_rawgeti(L, -2, i + 1);
        push_stats(L, self(L), i);  /* again: a finalizer run by the last allocation may close it */
        lua_rawset(L, -3);
    }
    return 1;
}

static int bandit_discount(lua_State *L) {
    cb_bandit *b = self(L);
    int i = checkarm(L, b, 2, "bandit:discount");
    cb_bandit_discount(b, i, checkfraction(L, 3, "factor"));
    return 0;
}

static int bandit_reset(lua_State *L) {
    cb_bandit *b = self(L);
    if (lua_isnoneornil(L, 2)) cb_bandit_reset_all(b);
    else cb_bandit_reset(b, checkarm(L, b, 2, "bandit:reset"));
    return 0;
}

static int bandit_arms(lua_State *L) {
    cb_bandit *b = self(L);
    int n = cb_bandit_arm_count(b);
    lua_getiuservalue(L, 1, UV_NAMES);
    lua_createtable(L, n, 0);  /* a copy: the caller may change it */
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, -2, i);
        lua_rawseti(L, -2, i);
    }
    return 1;
}

static int bandit_add_arm(lua_State *L) {
    lbandit *box = self_box(L);
    lua_settop(L, 2);
    add_arm(L, 1, box, "bandit:add_arm", "arm");
    return 0;
}

/* b:configure{prior=, decay=, half_life=, clock=}: a hot reload; options
 * not given keep their values, arms and evidence are kept. */
static int bandit_configure(lua_State *L) {
    cb_bandit *b = self(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    cb_bandit_opts o;
    cb_bandit_get_opts(b, &o);
    lua_settop(L, 2);
    read_opts(L, 2, &o, "bandit:configure", 0);  /* self, opts, nil, clock */
    b = self(L);  /* again: reading allocated, a finalizer may have closed it */
    if (cb_bandit_configure(b, &o) != CB_OK)
        return luaL_error(L, "bandit:configure: invalid options");  /* checked above */
    if (!lua_isnil(L, 4)) lua_setiuservalue(L, 1, UV_CLOCK);  /* the new clock in use */
    return 0;
}

static int bandit_options(lua_State *L) {
    cb_bandit *b = self(L);
    cb_bandit_opts o;
    cb_bandit_get_opts(b, &o);
    lua_createtable(L, 0, 4);
    lua_createtable(L, 2, 0);
    lua_pushnumber(L, o.prior_alpha);
    lua_rawseti(L, -2, 1);
    lua_pushnumber(L, o.prior_beta);
    lua_rawseti(L, -2, 2);
    lua_setfield(L, -2, "prior");
    lua_pushnumber(L, o.decay);
    lua_setfield(L, -2, "decay");
    lua_pushnumber(L, o.half_life);
    lua_setfield(L, -2, "half_life");
    lua_pushinteger(L, (lua_Integer)o.seed);
    lua_setfield(L, -2, "seed");
    return 1;
}

static const luaL_Reg bandit_methods[] = {
    {"update", bandit_update},
    {"sample", bandit_sample},
    {"select", bandit_select},
    {"stats", bandit_stats},
    {"discount", bandit_discount},
    {"reset", bandit_reset},
    {"arms", bandit_arms},
    {"add_arm", bandit_add_arm},
    {"configure", bandit_configure},
    {"options", bandit_options},
    {"close", bandit_close},
    {NULL, NULL}
};

static const luaL_Reg bandit_meta[] = {
    {"__gc", bandit_gc},
    {"__close", bandit_close},
    {"__tostring", bandit_tostring},
    {NULL, NULL}
};

static const luaL_Reg bandit_funcs[] = {
    {"bandit", bandit_new},
    {NULL, NULL}
};

void cb_lua_open_bandit(lua_State *L) {
    lua_pushliteral(L, NO_ARMS);
    cb_lua_newclass(L, CB_CLASS_BANDIT, CB_BANDIT_MT, bandit_methods, bandit_meta, UP_COUNT);
    luaL_setfuncs(L, bandit_funcs, 0);
}

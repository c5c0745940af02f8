/* lopts.c -- strict option tables: every key is known, every value has the
 * right type and range, and a misspelt key gets the closest valid name. */
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "lcbreaker.h"

enum { OPT_COUNT, OPT_NUMBER, OPT_STRING, OPT_SEED };

typedef struct optfield {
    const char *name;
    int kind;
    size_t offset;
} optfield;

#define F(name, kind) {#name, kind, offsetof(cb_breaker_opts, name)}
static const optfield breaker_fields[] = {
    F(name, OPT_STRING),
    F(failure_threshold, OPT_COUNT),
    F(reset_timeout, OPT_NUMBER),
    F(success_threshold, OPT_COUNT),
    F(half_open_max_calls, OPT_COUNT),
    F(probe_timeout, OPT_NUMBER),
    F(failure_rate, OPT_NUMBER),
    F(slow_call_ms, OPT_NUMBER),
    F(slow_call_rate, OPT_NUMBER),
    F(window, OPT_COUNT),
    F(window_seconds, OPT_NUMBER),
    F(min_calls, OPT_COUNT),
    F(backoff_factor, OPT_NUMBER),
    F(max_reset_timeout, OPT_NUMBER),
    F(jitter, OPT_NUMBER),
    F(seed, OPT_SEED),
};
#undef F
#define NFIELDS (sizeof breaker_fields / sizeof breaker_fields[0])

static const char *const breaker_names[] = {
    "name", "failure_threshold", "reset_timeout", "success_threshold",
    "half_open_max_calls", "probe_timeout", "failure_rate", "slow_call_ms",
    "slow_call_rate", "window", "window_seconds", "min_calls", "backoff_factor",
    "max_reset_timeout", "jitter", "seed", NULL};

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

static void closest_in(const char *s, const char *const *names, const char **best,
                       size_t *bestd) {
    for (; names && *names; names++) {
        size_t d = distance(s, *names);
        if (d < *bestd) { *bestd = d; *best = *names; }
    }
}

const char *cb_lua_closest(const char *s, const char *const *names,
                           const char *const *extra) {
    const char *best = NULL;
    size_t bestd = (size_t)-1;
    closest_in(s, names, &best, &bestd);
    closest_in(s, extra, &best, &bestd);
    size_t limit = strlen(s) / 3 + 1;  /* a typo, not another word */
    return bestd <= (limit > 3 ? 3 : limit) ? best : NULL;
}

int cb_lua_unknown_option(lua_State *L, const char *ctx, const char *key,
                          const char *const *names, const char *const *extra) {
    const char *near = cb_lua_closest(key, names, extra);
    if (near)
        return luaL_error(L, "%s: unknown option '%s' (did you mean '%s'?)", ctx, key, near);
    return luaL_error(L, "%s: unknown option '%s'", ctx, key);
}

static void read_field(lua_State *L, const optfield *f, cb_breaker_opts *o,
                       const char *ctx) {
    char *p = (char *)o + f->offset;
    switch (f->kind) {
    case OPT_STRING:
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "%s: option '%s' must be a string (got %s)", ctx, f->name,
                       luaL_typename(L, -1));
        *(const char **)p = lua_tostring(L, -1);
        break;
    case OPT_NUMBER: {
        if (lua_type(L, -1) != LUA_TNUMBER)
            luaL_error(L, "%s: option '%s' must be a number (got %s)", ctx, f->name,
                       luaL_typename(L, -1));
        double v = lua_tonumber(L, -1);
        if (!isfinite(v))
            luaL_error(L, "%s: option '%s' must be finite (got %f)", ctx, f->name, v);
        *(double *)p = v;
        break;
    }
    case OPT_COUNT:
    case OPT_SEED: {
        int isint = 0;
        lua_Integer v = lua_tointegerx(L, -1, &isint);
        if (lua_type(L, -1) != LUA_TNUMBER || !isint) {
            double d = lua_tonumber(L, -1);
            luaL_error(L, "%s: option '%s' must be an integer (got %s)", ctx, f->name,
                       lua_type(L, -1) != LUA_TNUMBER ? luaL_typename(L, -1)
                       : !isfinite(d) ? "a non-finite number"
                       : d == floor(d) ? "a number out of range" : "a fraction");
        }
        if (f->kind == OPT_SEED) {
            *(uint64_t *)p = (uint64_t)v;
        } else {
            if (v < 0 || v > (lua_Integer)UINT32_MAX)
                luaL_error(L, "%s: option '%s' must be in [0, %I] (got %I)", ctx, f->name,
                           (LUAI_UACINT)UINT32_MAX, (LUAI_UACINT)v);
            *(uint32_t *)p = (uint32_t)v;
        }
        break;
    }
    }
}

void cb_lua_read_breaker_opts(lua_State *L, int idx, cb_breaker_opts *o,
                              const char *ctx, cb_lua_optfn other, void *ud,
                              const char *const *extra) {
    idx = lua_absindex(L, idx);
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_pushnil(L);
    while (lua_next(L, idx)) {  /* key, value */
        if (lua_type(L, -2) != LUA_TSTRING)
            luaL_error(L, "%s: option names must be strings (got %s)", ctx,
                       luaL_typename(L, -2));
        const char *key = lua_tostring(L, -2);
        size_t i;
        for (i = 0; i < NFIELDS; i++)
            if (strcmp(key, breaker_fields[i].name) == 0) break;
        if (i < NFIELDS)
            read_field(L, &breaker_fields[i], o, ctx);
        else if (!other || !other(L, key, ud))
            cb_lua_unknown_option(L, ctx, key, breaker_names, extra);
        lua_pop(L, 1);  /* value; the key stays for lua_next */
    }
    const char *bad = cb_breaker_opts_check(o);
    if (bad) luaL_error(L, "%s: %s", ctx, bad);
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
    const char *near = cb_lua_closest(s, names, NULL);
    if (near) lua_pushstring(L, near); else lua_pushnil(L);
    return 1;
}

static const luaL_Reg opts_funcs[] = {
    {"closest", closest},
    {NULL, NULL}
};

void cb_lua_open_opts(lua_State *L) {
    luaL_setfuncs(L, opts_funcs, 0);
}

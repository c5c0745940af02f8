/* embed.c -- a C application that embeds Lua 5.4, loads a cbreaker policy
 * and routes its requests through the engine.
 *
 *   cbreaker_embed POLICY.lua [REQUESTS]
 *
 * The backends are C functions (here: "gamma" is down, the others answer).
 * Every request goes through engine:call, which picks a backend, runs the C
 * function under that backend's breaker and falls back to another when it
 * fails.  Prints each backend's state and traffic; exits 0 when every
 * request was answered and the failing backend cost only a few calls. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "cbreaker.h"

/* The module's entry point, linked in from the binding's objects; declared
 * here as Lua's own linit.c declares the libraries it opens. */
int luaopen_cbreaker_core(lua_State *L);

#ifndef CB_SOURCE_LUADIR
#define CB_SOURCE_LUADIR "lua"
#endif

/* A backend: answers, or raises the way a failed HTTP call would. */
static int backend_call(lua_State *L) {
    const char *provider = luaL_checkstring(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    if (strcmp(provider, "gamma") == 0)
        return luaL_error(L, "gamma: 503 Service Unavailable");
    lua_pushfstring(L, "%s answered request %I", provider, (LUAI_UACINT)id);
    return 1;
}

/* Makes require("cbreaker") work: the C module is linked in, the Lua files
 * come from CB_LUADIR or the source tree. */
static void setup(lua_State *L) {
    const char *dir = getenv("CB_LUADIR");
    if (!dir || !*dir) dir = CB_SOURCE_LUADIR;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", dir, dir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_cbreaker_core);
    lua_setfield(L, -2, "cbreaker.core");
    lua_pop(L, 2);
}

/* cb.engine(path), kept in the registry. */
static int new_engine(lua_State *L, const char *policy, int *ref) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cbreaker");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) return 0;
    lua_getfield(L, -1, "engine");
    lua_pushstring(L, policy);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) return 0;
    *ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pop(L, 1);  /* the module */
    return 1;
}

/* engine:call(tenant, session, backend_call, id): 1 when answered.  The
 * reply, or the error, is printed for the first few requests. */
static int route(lua_State *L, int engine, const char *tenant, const char *session,
                 lua_Integer id, int verbose) {
    int top = lua_gettop(L);
    lua_rawgeti(L, LUA_REGISTRYINDEX, engine);
    lua_getfield(L, -1, "call");
    lua_insert(L, -2);  /* call, engine */
    lua_pushstring(L, tenant);
    lua_pushstring(L, session);
    lua_pushcfunction(L, backend_call);
    lua_pushinteger(L, id);
    if (lua_pcall(L, 5, 2, 0) != LUA_OK) {  /* misuse: the engine raised */
        fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
        exit(1);
    }
    int ok = lua_toboolean(L, -2);
    if (verbose)
        printf("request %3lld: %s %s\n", (long long)id, ok ? "ok   " : "error",
               luaL_tolstring(L, -1, NULL));
    lua_settop(L, top);
    return ok;
}

/* Prints engine:stats() per provider; stores the calls `watch` took and
 * how many failed. */
static int report(lua_State *L, int engine, const char *watch, long long *calls,
                  long long *failures) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, engine);
    lua_getfield(L, -1, "stats");
    lua_insert(L, -2);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) return 0;
    lua_getfield(L, -1, "providers");  /* stats, providers */
    lua_getfield(L, -2, "names");      /* stats, providers, names */
    printf("%-8s %-11s %8s %8s\n", "backend", "state", "calls", "failures");
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
        const char *name = lua_tostring(L, -1);
        lua_getfield(L, -3, name);  /* ..., name, provider stats */
        lua_getfield(L, -1, "state");
        lua_getfield(L, -2, "selected");
        lua_getfield(L, -3, "failures");
        printf("%-8s %-11s %8lld %8lld\n", name, lua_tostring(L, -3),
               (long long)lua_tointeger(L, -2), (long long)lua_tointeger(L, -1));
        if (strcmp(name, watch) == 0) {
            *calls = lua_tointeger(L, -2);
            *failures = lua_tointeger(L, -1);
        }
        lua_pop(L, 5);
    }
    lua_pop(L, 4);  /* nil, names, providers, stats */
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s POLICY.lua [REQUESTS]\n", argv[0]);
        return 2;
    }
    long requests = argc == 3 ? strtol(argv[2], NULL, 10) : 200;
    if (requests <= 0) {
        fprintf(stderr, "embed: REQUESTS must be a positive number (got '%s')\n", argv[2]);
        return 2;
    }
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "embed: out of memory\n");
        return 1;
    }
    luaL_openlibs(L);
    setup(L);
    int engine, status = 1;
    if (!new_engine(L, argv[1], &engine)) {
        fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
        lua_close(L);
        return 1;
    }
    long answered = 0;
    char session[32];
    long long calls = -1, failures = -1;
    for (long i = 1; i <= requests; i++) {
        snprintf(session, sizeof session, "session-%ld", i % 7);
        answered += route(L, engine, "tenant-1", session, i, i <= 5);
    }
    if (report(L, engine, "gamma", &calls, &failures)) {
        printf("answered %ld of %ld requests; gamma, which is down, took %lld call(s)\n",
               answered, requests, calls);
        status = answered == requests && calls == failures && calls <= 10 ? 0 : 1;
    } else {
        fprintf(stderr, "embed: %s\n", lua_tostring(L, -1));
    }
    luaL_unref(L, LUA_REGISTRYINDEX, engine);
    lua_close(L);
    return status;
}

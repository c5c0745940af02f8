/* main.c -- the `cbreaker` host: a Lua 5.4 interpreter with the cbreaker
 * module built in.
 *
 *   cbreaker SCRIPT.lua [args]   run a script (arg as lua.c sets it)
 *   cbreaker COMMAND [args]      demo, status, reset, force-open, check, ...
 *
 * The installed host finds its Lua files beside itself
 * (PREFIX/bin/../share/lua/5.4); run from the build tree it uses the source
 * tree's.  cbreaker.core is linked in and preloaded, so no LUA_CPATH is
 * needed. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lcbreaker.h"  /* luaopen_cbreaker_core */

static int exists(const char *path) {
    return access(path, R_OK) == 0;
}

/* The installation prefix: the directory above the one holding the host. */
static void find_prefix(char *out, size_t n) {
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    out[0] = '\0';
    if (len <= 0) return;
    exe[len] = '\0';
    for (int up = 0; up < 2; up++) {  /* strip "/cbreaker", then "/bin" */
        char *slash = strrchr(exe, '/');
        if (!slash) return;
        *slash = '\0';
    }
    snprintf(out, n, "%s", exe);
}

/* Sets package.path, the preload of cbreaker.core, and cbreaker.host (where
 * the examples are). */
static void setup_paths(lua_State *L) {
    char prefix[PATH_MAX], luadir[PATH_MAX + 32], probe[PATH_MAX + 64];
    char examples[PATH_MAX + 32];
    find_prefix(prefix, sizeof prefix);
    snprintf(luadir, sizeof luadir, "%s/share/lua/5.4", prefix);
    snprintf(probe, sizeof probe, "%s/cbreaker/init.lua", luadir);
    if (!prefix[0] || !exists(probe)) snprintf(luadir, sizeof luadir, "%s", CB_SOURCE_LUADIR);
    snprintf(examples, sizeof examples, "%s/share/cbreaker/examples", prefix);
    if (!prefix[0] || !exists(examples))
        snprintf(examples, sizeof examples, "%s", CB_SOURCE_EXAMPLESDIR);

    lua_getglobal(L, "package");
    lua_getfield(L, -1, "path");
    lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s", luadir, luadir, lua_tostring(L, -1));
    lua_setfield(L, -3, "path");
    lua_pop(L, 1);
    lua_getfield(L, -1, "preload");
    lua_pushcfunction(L, luaopen_cbreaker_core);
    lua_setfield(L, -2, "cbreaker.core");
    lua_pop(L, 1);
    lua_getfield(L, -1, "loaded");
    lua_createtable(L, 0, 3);
    lua_pushstring(L, luadir);
    lua_setfield(L, -2, "luadir");
    lua_pushstring(L, examples);
    lua_setfield(L, -2, "examples");
    lua_pushliteral(L, CB_VERSION);
    lua_setfield(L, -2, "version");
    lua_setfield(L, -2, "cbreaker.host");
    lua_pop(L, 2);
}

/* arg as lua.c builds it: arg[0] the script, arg[1..] its arguments. */
static void set_arg(lua_State *L, char **argv, int argc, int script) {
    lua_createtable(L, argc - script - 1, script + 1);
    for (int i = 0; i < argc; i++) {
        lua_pushstring(L, argv[i]);
        lua_rawseti(L, -2, i - script);
    }
    lua_setglobal(L, "arg");
}

static int traceback(lua_State *L) {
    const char *msg = lua_tostring(L, 1);
    if (!msg) {
        if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
        msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
    luaL_traceback(L, L, msg, 1);
    return 1;
}

/* Calls the function below its nargs arguments; prints the error. */
static int docall(lua_State *L, int nargs) {
    int base = lua_gettop(L) - nargs;
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    int status = lua_pcall(L, nargs, 1, base);
    lua_remove(L, base);
    if (status != LUA_OK) {
        fprintf(stderr, "cbreaker: %s\n", lua_tostring(L, -1));
        fflush(stderr);
        return 1;
    }
    /* A command's main may return an exit status. */
    int code = lua_isinteger(L, -1) ? (int)lua_tointeger(L, -1) : 0;
    if (lua_type(L, -1) == LUA_TBOOLEAN) code = lua_toboolean(L, -1) ? 0 : 1;
    lua_pop(L, 1);
    return code;
}

static int run_script(lua_State *L, char **argv, int argc, int script) {
    set_arg(L, argv, argc, script);
    const char *path = strcmp(argv[script], "-") == 0 ? NULL : argv[script];
    if (luaL_loadfile(L, path) != LUA_OK) {
        fprintf(stderr, "cbreaker: %s\n", lua_tostring(L, -1));
        return 1;
    }
    int n = argc - script - 1;
    luaL_checkstack(L, n, "too many arguments");
    for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
    return docall(L, n);
}

/* `cbreaker COMMAND args`: cbreaker.cli's main(command, args...). */
static int run_command(lua_State *L, char **argv, int argc) {
    set_arg(L, argv, argc, 0);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cbreaker.cli");
    if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
        fprintf(stderr, "cbreaker: %s\n", lua_tostring(L, -1));
        return 1;
    }
    lua_getfield(L, -1, "main");
    lua_remove(L, -2);
    luaL_checkstack(L, argc, "too many arguments");
    for (int i = 1; i < argc; i++) lua_pushstring(L, argv[i]);
    return docall(L, argc - 1);
}

int main(int argc, char **argv) {
    lua_State *L = luaL_newstate();
    if (!L) {
        fprintf(stderr, "cbreaker: cannot create Lua state: out of memory\n");
        return 1;
    }
    luaL_openlibs(L);
    setup_paths(L);
    int status;
    size_t n = argc >= 2 ? strlen(argv[1]) : 0;
    int script = argc >= 2 && (strchr(argv[1], '/') || strcmp(argv[1], "-") == 0 ||
                               (n > 4 && strcmp(argv[1] + n - 4, ".lua") == 0));
    if (script)
        status = run_script(L, argv, argc, 1);
    else
        status = run_command(L, argv, argc);
    lua_close(L);
    return status;
}

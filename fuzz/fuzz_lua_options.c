/* fuzz_lua_options.c -- option tables and arguments through the Lua API:
 * a fresh interpreter per input, cbreaker.core loaded by its luaopen, and
 * lua_options.lua (next to this file) turning the bytes into calls of every
 * public function and method under pcall.  A Lua error is the expected
 * answer to bad input; anything the sanitizers see is a bug. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "lcbreaker.h"  /* luaopen_cbreaker_core */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Tight enough that a table of 1e9 slots fails fast instead of swapping. */
#define MEM_LIMIT ((size_t)256 << 20)

static size_t in_use;

static void *alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
    (void)ud;
    if (!ptr) osize = 0;
    if (nsize == 0) {
        free(ptr);
        in_use -= osize;
        return NULL;
    }
    if (nsize > osize && in_use + (nsize - osize) > MEM_LIMIT) return NULL;
    void *p = realloc(ptr, nsize);
    if (p) in_use = in_use - osize + nsize;
    return p;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 4096) return 0;
    in_use = 0;
    lua_State *L = lua_newstate(alloc, NULL);
    if (!L) return 0;
    luaL_openlibs(L);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_cbreaker_core);
    lua_setfield(L, -2, "cbreaker.core");
    lua_pop(L, 1);
    lua_getglobal(L, "package");
    lua_pushstring(L, CB_FUZZ_LUADIR "/?.lua;" CB_FUZZ_LUADIR "/?/init.lua;" CB_FUZZ_DIR "/?.lua");
    lua_setfield(L, -2, "path");
    lua_pushstring(L, "");
    lua_setfield(L, -2, "cpath");
    lua_pop(L, 1);
    if (luaL_dostring(L, "return (require('lua_options'))") != LUA_OK) {
        fprintf(stderr, "fuzz_lua_options: %s\n", lua_tostring(L, -1));
        abort();  /* the harness itself is broken */
    }
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "fuzz_lua_options: the driver raised: %s\n", lua_tostring(L, -1));
        abort();  /* every call in the driver is under pcall */
    }
    lua_close(L);
    return 0;
}

#!/bin/sh
# install_test.sh BUILD_DIR [SOURCE_DIR] -- installs into a temporary prefix and checks the
# layout DESIGN.md promises: the installed host finds its own module without
# LUA_PATH/LUA_CPATH, stock lua5.4 loads the installed module, a C program
# builds against the installed library through pkg-config, shared and
# static (pkg-config --static), core.so exports luaopen_cbreaker_core only,
# libcbreaker.so only the cb_* functions the installed headers declare, and
# cbreaker.h pulls in none of the store's libraries.  With SOURCE_DIR, also
# `luarocks make` (cbreaker-scm-1.rockspec) into a temporary rocks tree, and
# stock lua5.4 requires cbreaker from that tree's paths only.
set -eu
build=$1
src=${2:-}
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null

for f in lib/lua/5.4/cbreaker/core.so share/lua/5.4/cbreaker/init.lua bin/cbreaker \
         share/lua/5.4/cbreaker/demo.lua share/cbreaker/examples/walkthrough.lua \
         include/cbreaker.h include/cbreaker_redis.h lib/libcbreaker.so lib/libcbreaker.a lib/pkgconfig/cbreaker.pc; do
    [ -e "$prefix/$f" ] || { echo "missing: $f"; exit 1; }
done

cat > "$prefix/t.lua" <<'LUA'
local cb = require("cbreaker")
local br = cb.new{ name = "installed", failure_threshold = 1 }
br:failure()
assert(br:state() == "open")
print("ok " .. cb._VERSION)
LUA
# The host, from somewhere else, with no Lua paths in the environment.
(cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 \
    "$prefix/bin/cbreaker" "$prefix/t.lua")
# The bundled commands, from the installed files only.
(cd / && "$prefix/bin/cbreaker" demo --requests 400 >/dev/null)
(cd / && "$prefix/bin/cbreaker" walkthrough | grep -q "half-open -> closed")
# Stock lua5.4 with the install's paths.
LUA_PATH="$prefix/share/lua/5.4/?.lua;$prefix/share/lua/5.4/?/init.lua;;" \
LUA_CPATH="$prefix/lib/lua/5.4/?.so;;" lua5.4 "$prefix/t.lua"

# A C program through pkg-config.
cat > "$prefix/t.c" <<'C'
#include <cbreaker.h>
#include <stdio.h>
int main(void) {
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    cb_breaker *b = cb_breaker_new(&o);
    int ok = b && cb_breaker_allow(b) == CB_ALLOWED;
    cb_breaker_free(b);
    puts(ok ? "ok C" : "failed C");
    return !ok;
}
C
PKG_CONFIG_PATH="$prefix/lib/pkgconfig" cc -o "$prefix/t" "$prefix/t.c" \
    $(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags --libs cbreaker) \
    -Wl,-rpath,"$prefix/lib" ${CB_TEST_LDFLAGS:-}
"$prefix/t"

# Exports: the module only its luaopen; the library only its public API.
exports=$(nm -D --defined-only "$prefix/lib/lua/5.4/cbreaker/core.so" | awk '{print $3}')
[ "$exports" = luaopen_cbreaker_core ] ||
    { echo "core.so exports more than luaopen_cbreaker_core:"; echo "$exports" | head; exit 1; }
nm -D --defined-only "$prefix/lib/libcbreaker.so" | awk '{print $3}' | sort >"$prefix/exported"
sed -n 's/^CB_API[^(;]*[ *]\([a-z_][a-z0-9_]*\) *[(;[].*/\1/p' "$prefix"/include/cbreaker*.h |
    sort -u >"$prefix/declared"
extra=$(comm -23 "$prefix/exported" "$prefix/declared")
[ -z "$extra" ] || { echo "libcbreaker.so exports undeclared symbols:"; echo "$extra"; exit 1; }
missing=$(comm -13 "$prefix/exported" "$prefix/declared")
[ -z "$missing" ] || { echo "declared but not exported:"; echo "$missing"; exit 1; }
grep -q '^cb_breaker_new$' "$prefix/exported" || { echo "no cb_breaker_new exported"; exit 1; }

# cbreaker.h alone: no hiredis, cJSON or OpenSSL header behind it.
deps=$(echo '#include <cbreaker.h>' | cc -std=c11 -M -x c - -I"$prefix/include")
if echo "$deps" | grep -Eq 'hiredis|cjson|openssl|lua'; then
    echo "cbreaker.h includes a store or Lua header:"; echo "$deps"; exit 1
fi

# Statically against libcbreaker.a: the store pulls in HMAC (libcrypto),
# cJSON and hiredis, which only pkg-config --static names.
pc() { PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config "$@"; }
pc --static --libs cbreaker | grep -q -- -lcrypto ||
    { echo "cbreaker.pc: --static does not list libcrypto: $(pc --static --libs cbreaker)"; exit 1; }
cat > "$prefix/s.c" <<'C'
#include <cbreaker_redis.h>
#include <stdio.h>
int main(void) {
    cb_store_opts o;
    cb_store_opts_init(&o);
    o.url = "unix:///nonexistent/cbreaker-install-test.sock";
    o.secret = "0123456789abcdef";  /* signing: HMAC-SHA256 from libcrypto */
    cb_store *s = cb_store_new(&o);
    int ok = s && s->err == CB_STORE_EIO;  /* nothing listens there */
    cb_store_free(s);
    puts(ok ? "ok C static" : "failed C static");
    return !ok;
}
C
cc -o "$prefix/s" "$prefix/s.c" $(pc --cflags cbreaker) \
    $(pc --static --libs cbreaker | sed 's/-lcbreaker\b/-l:libcbreaker.a/') ${CB_TEST_LDFLAGS:-}
if readelf -d "$prefix/s" | grep -q 'libcbreaker\.so'; then
    echo "the static test program needs libcbreaker.so"; exit 1
fi
"$prefix/s"

# LuaRocks: `luarocks make` from a copy of the sources (its build directory
# lands next to the rockspec) into a temporary tree.
if [ -n "$src" ]; then
    mkdir "$prefix/rock"
    cp -r "$src/CMakeLists.txt" "$src/cmake" "$src/include" "$src/src" "$src/lua" \
        "$src/cbreaker-scm-1.rockspec" "$prefix/rock/"
    tree=$prefix/tree
    (cd "$prefix/rock" && luarocks --lua-version 5.4 make --tree "$tree" >"$prefix/rock.log" 2>&1) ||
        { cat "$prefix/rock.log"; echo "luarocks make failed"; exit 1; }
    for f in share/lua/5.4/cbreaker/init.lua share/lua/5.4/cbreaker/engine.lua \
             lib/lua/5.4/cbreaker/core.so; do
        [ -e "$tree/$f" ] || { echo "luarocks tree misses $f"; exit 1; }
    done
    # Only the tree's own entries of `luarocks path` (it adds ~/.luarocks
    # and /usr/local), and no default path (no ";;").
    only_tree() { tr ';' '\n' | grep "^$tree/" | paste -sd';'; }
    lpath=$(luarocks --lua-version 5.4 --tree "$tree" path --lr-path | only_tree)
    cpath=$(luarocks --lua-version 5.4 --tree "$tree" path --lr-cpath | only_tree)
    (cd / && env -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_PATH="$lpath" LUA_CPATH="$cpath" TREE="$tree" \
        lua5.4 -e 'local cb = require"cbreaker"
            local tree = os.getenv("TREE") .. "/"
            assert(package.searchpath("cbreaker", package.path):find(tree, 1, true) == 1)
            assert(package.searchpath("cbreaker.core", package.cpath):find(tree, 1, true) == 1)
            local br = cb.new{ failure_threshold = 1 }
            br:failure()
            assert(br:state() == "open")
            print("ok luarocks " .. cb._VERSION)' ||
        { echo "require\"cbreaker\" failed with the rocks tree's paths"; exit 1; })
    exports=$(nm -D --defined-only "$tree/lib/lua/5.4/cbreaker/core.so" | awk '{print $3}')
    [ "$exports" = luaopen_cbreaker_core ] || { echo "the rock's core.so exports more"; exit 1; }
fi

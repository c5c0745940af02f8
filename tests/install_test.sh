#!/bin/sh
# install_test.sh BUILD_DIR -- installs into a temporary prefix and checks the
# layout DESIGN.md promises: the installed host finds its own module without
# LUA_PATH/LUA_CPATH, stock lua5.4 loads the installed module, and a C program
# builds against the installed library through pkg-config.
set -eu
build=$1
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null

for f in lib/lua/5.4/cbreaker/core.so share/lua/5.4/cbreaker/init.lua bin/cbreaker \
         share/lua/5.4/cbreaker/demo.lua share/cbreaker/examples/walkthrough.lua \
         include/cbreaker.h lib/libcbreaker.so lib/libcbreaker.a lib/pkgconfig/cbreaker.pc; do
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

#!/bin/sh
# without_redis_test.sh SOURCE_DIR BUILD_DIR C_COMPILER -- configures and
# builds BUILD_DIR/without-redis with -DCB_WITH_REDIS=OFF (library, Lua
# module and host only) and checks that none of them needs hiredis, cJSON or
# libcrypto, and that asking for Redis raises a clear error.
set -eu
src=$1
dir=$2/without-redis
cmake -S "$src" -B "$dir" -DCB_WITH_REDIS=OFF -DCB_WERROR=ON -DCMAKE_C_COMPILER="$3" >/dev/null
cmake --build "$dir" -j2 --target cbreaker cbreaker_static cbreaker_lua cbreaker_host >/dev/null

for f in libcbreaker.so lua/cbreaker/core.so cbreaker; do
    if readelf -d "$dir/$f" | grep -E 'NEEDED.*(hiredis|cjson|crypto)'; then
        echo "$f links a store library without Redis"; exit 1
    fi
done
if nm -u "$dir/libcbreaker.a" | grep -E 'redis|cJSON|HMAC|EVP_'; then
    echo "libcbreaker.a refers to a store library without Redis"; exit 1
fi

cat > "$dir/t.lua" <<'LUA'
local cb = require("cbreaker")
local br = cb.new{ name = "local", failure_threshold = 1 }
br:failure()
assert(br:state() == "open")
local function fails(want, f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "no error")
  assert(tostring(err):find(want, 1, true), "wrong error: " .. tostring(err))
end
local no = "built without Redis support"
fails("cbreaker.redis: " .. no, cb.redis, { url = "redis://127.0.0.1:6379/0" })
fails("cbreaker.new: option 'store': " .. no, cb.new, { name = "x", store = {} })
fails(no, cb.engine, { providers = { a = {} }, redis = { url = "redis://127.0.0.1:6379/0" } })
print("ok without Redis")
LUA
"$dir/cbreaker" "$dir/t.lua"
LUA_PATH="$src/lua/?.lua;$src/lua/?/init.lua;;" LUA_CPATH="$dir/lua/?.so;;" lua5.4 "$dir/t.lua"

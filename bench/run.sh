#!/bin/sh
# bench/run.sh [BUILD_DIR] -- runs every benchmark; each prints its figures
# beside a baseline measured in the same run.  bench/redis.lua starts its
# own redis-server.
set -eu
build=${1:-build}
export CB_BUILD_DIR="$build"
run() { printf '\n$ %s\n' "$*"; "$@"; }
run "$build/bench/bench_breaker"
run "$build/cbreaker" bench/breaker.lua
run "$build/bench/bench_registry"
run "$build/cbreaker" bench/registry.lua
run "$build/cbreaker" bench/registry_rss.lua
run "$build/bench/bench_bandit"
run "$build/cbreaker" bench/bandit.lua
run "$build/cbreaker" bench/engine.lua
run "$build/cbreaker" bench/redis.lua
run "$build/bench/bench_pool"
run "$build/cbreaker" bench/peers.lua

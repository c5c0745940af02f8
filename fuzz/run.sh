#!/bin/sh
# fuzz/run.sh [SECONDS] [BUILD_DIR] -- runs every libFuzzer target for
# SECONDS (default 30) each, from its committed seed corpus, in a scratch
# copy (the committed corpus stays small).  Builds BUILD_DIR (default
# build-fuzz) with clang and CB_FUZZ=ON first.  Exits non-zero on the first
# crash, leak or sanitizer report; the reproducer is left in the scratch
# directory and its path printed.
set -eu
secs=${1:-30}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${2:-$root/build-fuzz}
CC=${CC:-clang} cmake -S "$root" -B "$build" -DCB_FUZZ=ON -DCB_WERROR=ON >/dev/null
cmake --build "$build" -j2 >/dev/null
scratch=$(mktemp -d /tmp/cbreaker-fuzz.XXXXXX)
status=0
for t in fuzz_message fuzz_redis_url fuzz_store_reply fuzz_peer_time fuzz_conn_reply fuzz_lua_options; do
  mkdir -p "$scratch/$t"
  cp "$here/corpus/$t/"* "$scratch/$t/"
  start=$(date +%s)
  if (cd "$scratch" && "$build/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=1024 \
        -max_len=4096 -print_final_stats=1 "$scratch/$t" >"$scratch/$t.log" 2>&1); then
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$scratch/$t.log" | tail -1 || true)
    echo "$t: ok, $runs runs in $(( $(date +%s) - start )) s, $cov"
  else
    echo "$t: FAILED (log and reproducer in $scratch)"
    tail -40 "$scratch/$t.log"
    status=1
  fi
done
[ "$status" -eq 0 ] && rm -rf "$scratch"
exit "$status"

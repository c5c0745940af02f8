#!/bin/sh
# scripts/valgrind.sh [BUILD_DIR] -- valgrind memcheck over the C tests and
# the specs (run by the host, the binary under test).  Any memcheck error or
# definite/indirect leak fails (--error-exitcode=1); no suppressions are
# needed (Lua 5.4, hiredis, cJSON, libcrypto and glibc run clean).  Timed
# fault specs get CB_TIME_SLACK_MS of extra margin: valgrind runs code
# ~30x slower, which is no fault of the store; stress loops run 5% of their
# rounds (CB_SPEC_SCALE), enough to reach every path.  Builds BUILD_DIR (default
# build-valgrind) without sanitizers first.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$root/build-valgrind}
cmake -S "$root" -B "$build" -DCB_WERROR=ON >/dev/null
cmake --build "$build" -j2 >/dev/null
vg="valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect --show-leak-kinds=definite,indirect"
cd "$root"

# Two lanes, one per core (valgrind runs a program on one): every other
# spec file in one, the C tests and the rest of the specs in the other.  Each
# lane prints its own lines and leaves a status file.
c_tests() {
  for t in "$build"/tests/test_*; do
    [ -x "$t" ] || continue
    start=$(date +%s)
    if $vg "$t" >"$build/valgrind-$(basename "$t").log" 2>&1; then
      echo "valgrind $(basename "$t"): clean ($(( $(date +%s) - start )) s)"
    else
      echo "valgrind $(basename "$t"): FAILED"; tail -40 "$build/valgrind-$(basename "$t").log"; return 1
    fi
  done
}

specs() {  # lane, spec files...
  lane=$1; shift
  log="$build/valgrind-specs-$lane.log"
  start=$(date +%s)
  if CB_SPEC_SCALE=${CB_SPEC_SCALE:-0.05} CB_TIME_SLACK_MS=${CB_TIME_SLACK_MS:-1500} \
      $vg "$build/cbreaker" "$(command -v busted)" --cpath= -o TAP "$@" >"$log" 2>&1; then
    echo "valgrind specs ($lane): clean, $(grep -c '^ok' "$log") specs ($(( $(date +%s) - start )) s)"
  else
    echo "valgrind specs ($lane): FAILED"; grep -v '^ok' "$log" | tail -60; return 1
  fi
}

odd="" even="" n=0
for f in spec/*_spec.lua; do
  n=$((n + 1))
  if [ $((n % 2)) -eq 1 ]; then odd="$odd $f"; else even="$even $f"; fi
done
rm -f "$build/valgrind-lane-"*
# shellcheck disable=SC2086  # the lists are file names without spaces
( specs a $odd && touch "$build/valgrind-lane-a.ok" ) &
( { c_tests && specs b $even; } && touch "$build/valgrind-lane-b.ok" ) &
wait
[ -e "$build/valgrind-lane-a.ok" ] && [ -e "$build/valgrind-lane-b.ok" ]

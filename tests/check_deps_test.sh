#!/bin/sh
# check_deps_test.sh SOURCE_DIR -- scripts/check_deps must fail on the tree
# as it was before uthash.h was made optional (bench_registry.c including it,
# no CB_OPTIONAL_HEADERS) and on a script calling an undeclared command,
# naming both; and accept the same tree once uthash.h is declared optional.
set -eu
src=$1
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
mkdir -p "$t/scripts" "$t/bench" "$t/tests"
cp "$src/scripts/check_deps" "$src/scripts/shell_commands.awk" "$t/scripts/"
grep -v '^CB_OPTIONAL_HEADERS=' "$src/scripts/common.sh" >"$t/scripts/common.sh"
cp "$src/bench/bench_registry.c" "$t/bench/"
printf '#include <lua.h>\n' >"$t/bench/declared.c"
printf '#!/bin/sh\nlua5.4 -v\njq . x.json | cut -c1-3\n' >"$t/tests/undeclared.sh"

if bash "$t/scripts/check_deps" "$t" >"$t/out" 2>&1; then
    cat "$t/out"; echo "check_deps accepted an undeclared header and command"; exit 1
fi
cat "$t/out"
grep -q '<uthash.h> (bench/bench_registry.c)' "$t/out" || { echo "uthash.h not named"; exit 1; }
grep -q 'command jq (tests/undeclared.sh)' "$t/out" || { echo "jq not named"; exit 1; }
! grep -q 'lua.h\|lua5.4\|cut' "$t/out" || { echo "a declared one was refused"; exit 1; }

echo 'CB_OPTIONAL_HEADERS="uthash.h:uthash-dev"' >>"$t/scripts/common.sh"
rm "$t/tests/undeclared.sh"
bash "$t/scripts/check_deps" "$t"

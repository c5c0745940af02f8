#!/bin/sh
# soak/soak.sh [SECONDS] [WORKERS] -- several host processes (soak/worker.lua)
# against one private redis-server for SECONDS (default 60), with faults
# injected while they run: kill -9 and restart, SIGSTOP for 1 s, CLIENT KILL
# of every connection, maxmemory refusing writes for 1 s.  Samples each
# worker's RSS and open fds from /proc every 2 s; after a warm-up (the first
# third) RSS may grow at most RSS_SLACK_KB (default 4096) and the fd count
# may not grow (it may end lower: a sample can land while a worker's store
# connection is closed between reconnect attempts); no call may take longer
# than SLOW_MS (150: the workers' 50 ms store timeout plus a margin).  Prints the samples and a
# verdict; exits non-zero on a leak, a crash, a slow call or a worker
# failure.  The last quarter runs without faults.  Needs the host built in
# BUILD_DIR (default build) and redis-server.
set -u
secs=${1:-60}
workers=${2:-4}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
build=${BUILD_DIR:-$root/build}
host=$build/cbreaker
slack=${RSS_SLACK_KB:-4096}
dir=$(mktemp -d /tmp/cbreaker-soak.XXXXXX)
port=$(( 20000 + $$ % 30000 ))
url="redis://127.0.0.1:$port/0"

redis_up() {
  redis-server --port "$port" --bind 127.0.0.1 --daemonize yes --dir "$dir" \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save '' --appendonly no
  for _ in $(seq 1 100); do
    redis-cli -p "$port" ping >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  echo "soak: redis-server did not start on port $port"; tail -5 "$dir/redis.log"; return 1
}
redis_kill() {  # kill -9 and wait until it is gone (the port is free)
  p=$(cat "$dir/redis.pid" 2>/dev/null)
  [ -n "$p" ] || return 0
  kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null
  for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  rm -f "$dir/redis.pid"
}
redis_pid() { cat "$dir/redis.pid" 2>/dev/null; }
cleanup() {
  redis_kill
  for w in $pids; do kill -9 "$w" 2>/dev/null; done
  rm -rf "$dir"
}
pids=""
trap cleanup EXIT INT TERM
redis_up || exit 1

i=0
while [ "$i" -lt "$workers" ]; do
  (cd "$root" && LUA_PATH="$root/lua/?.lua;$root/lua/?/init.lua;;" \
    exec "$host" "$here/worker.lua" "$url" "$((secs + 4))" "w$i") >"$dir/w$i.out" 2>&1 &
  pids="$pids $!"
  i=$((i + 1))
done

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
sample() {  # t, then rss/fds per worker
  line="$1"
  for w in $pids; do line="$line $(rss "$w")/$(fds "$w")"; done
  echo "$line" >>"$dir/samples"
  echo "$line"
}

echo "t_s $(for w in $pids; do printf 'rss_kB/fds '; done)"
start=$(date +%s)
t=0
warm=$((secs / 3))
step=2
fault_at() {  # once, when t first passes $1 percent of the run
  [ "$t" -ge $(( secs * $1 / 100 )) ] && [ ! -f "$dir/fault$1" ] && touch "$dir/fault$1"
}
while [ "$t" -lt "$secs" ]; do
  sample "$t"
  [ "$t" -ge "$warm" ] && [ ! -f "$dir/warm" ] && cp "$dir/samples" "$dir/warm"
  if [ "$t" -ge $(( secs * 75 / 100 )) ]; then
    :  # the last quarter runs clean: every worker reconnected at the end
  elif fault_at 35; then
    echo "# fault: kill -9 redis-server, restart (empty dataset)"
    redis_kill; redis_up || status_fault=1
  elif fault_at 45; then
    echo "# fault: SIGSTOP redis-server for 1 s"
    kill -STOP "$(redis_pid)"; sleep 1; kill -CONT "$(redis_pid)"
  elif fault_at 55; then
    echo "# fault: CLIENT KILL of every connection"
    redis-cli -p "$port" client kill type pubsub >/dev/null
    redis-cli -p "$port" client kill type normal >/dev/null
  elif fault_at 65; then
    echo "# fault: maxmemory 1 (writes refused) for 1 s"
    redis-cli -p "$port" config set maxmemory-policy noeviction >/dev/null
    redis-cli -p "$port" config set maxmemory 1 >/dev/null
    sleep 1
    redis-cli -p "$port" config set maxmemory 0 >/dev/null
  fi
  sleep "$step"
  t=$(( $(date +%s) - start ))  # real time: the faults' sleeps count
done
sample "$t"  # the workers run 4 s longer: they are still there
final=$(tail -1 "$dir/samples")
base=$(tail -1 "$dir/warm" 2>/dev/null || head -1 "$dir/samples")
status=${status_fault:-0}
for w in $pids; do
  wait "$w" || { echo "soak: worker $w exited with $?"; status=1; }
done
cat "$dir"/w*.out
echo "warm-up sample: $base"
echo "last sample:    $final"
n=2
for w in $pids; do
  b=$(echo "$base" | cut -d' ' -f$n); f=$(echo "$final" | cut -d' ' -f$n)
  brss=${b%/*}; bfd=${b#*/}; frss=${f%/*}; ffd=${f#*/}
  grow=$((frss - brss))
  echo "worker $((n - 2)): RSS $brss -> $frss kB (+$grow, bound $slack), fds $bfd -> $ffd"
  [ "$grow" -gt "$slack" ] && { echo "soak: RSS grew beyond the bound"; status=1; }
  [ "$ffd" -gt "$bfd" ] && { echo "soak: fd count grew"; status=1; }
  n=$((n + 1))
done
grep -q "calls=" "$dir"/w*.out || status=1
# no engine call slower than the store's timeout (50 ms) plus a margin
slow=$(grep -ho 'slowest_ms=[0-9.]*' "$dir"/w*.out | cut -d= -f2 | sort -n | tail -1)
echo "slowest call: ${slow:-?} ms (bound ${SLOW_MS:-150})"
awk -v s="${slow:-999999}" -v b="${SLOW_MS:-150}" 'BEGIN { exit !(s <= b) }' || status=1
[ "$status" -eq 0 ] && echo "soak: PASS" || echo "soak: FAIL"
exit "$status"

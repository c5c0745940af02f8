# common.sh -- sourced by scripts/demo, scripts/test and scripts/check_deps.
# Installs what is missing (Debian 12 packages), builds, runs redis-server.
# CB_PACKAGES is the project's one list of Debian packages: scripts/check_deps
# fails when a header or command comes from a package that is not in it.

CB_PACKAGES="cmake make gcc pkg-config lua5.4 liblua5.4-dev libhiredis-dev
libcjson-dev libssl-dev openssl lua-cjson lua-busted redis-server
clang libclang-rt-14-dev valgrind luarocks python3 python3-redis
redis-sentinel redis-tools"

# Headers the build uses only when present (header:package): not installed
# here; CMake checks for each and says what it skips.
CB_OPTIONAL_HEADERS="uthash.h:uthash-dev"

cb_log() { printf '==> %s  [%s]\n' "$*" "$(date +%T)" >&2; }

# Installs the packages of CB_PACKAGES that are not installed yet.
cb_install_deps() {
    local missing="" p
    for p in $CB_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    cb_log "installing:$missing"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing >/dev/null
}

# cb_build DIR [cmake options...]: configures and builds into DIR.
cb_build() {
    local dir=$1; shift
    cmake -S . -B "$dir" -DCB_WERROR=ON "$@" >/dev/null
    cmake --build "$dir" -j"$(nproc)" >/dev/null
}

# Starts a private redis-server on a free loopback port; sets CB_TEST_REDIS_URL
# and CB_REDIS_PIDFILE.  cb_stop_redis stops it.
cb_start_redis() {
    local port i
    CB_REDIS_DIR=$(mktemp -d)
    for i in $(seq 1 50); do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 30000 ))
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && continue  # taken
        redis-server --port "$port" --bind 127.0.0.1 --daemonize yes \
            --dir "$CB_REDIS_DIR" --pidfile "$CB_REDIS_DIR/redis.pid" \
            --logfile "$CB_REDIS_DIR/redis.log" --save "" --appendonly no >/dev/null || continue
        for i in $(seq 1 50); do
            redis-cli -p "$port" ping 2>/dev/null | grep -q PONG && break
            sleep 0.1
        done
        if redis-cli -p "$port" ping 2>/dev/null | grep -q PONG; then
            export CB_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
            CB_REDIS_PIDFILE="$CB_REDIS_DIR/redis.pid"
            cb_log "redis-server on 127.0.0.1:$port"
            return 0
        fi
    done
    cb_log "could not start redis-server"
    return 1
}

cb_stop_redis() {
    if [ -n "${CB_REDIS_PIDFILE:-}" ] && [ -f "$CB_REDIS_PIDFILE" ]; then
        kill "$(cat "$CB_REDIS_PIDFILE")" 2>/dev/null || true
    fi
    [ -n "${CB_REDIS_DIR:-}" ] && rm -rf "$CB_REDIS_DIR"
    return 0
}

/* redis_servers.h -- real Redis servers for the transport's C tests
 * (test_redis_conn.c, test_redis_sentinel.c, test_redis_cluster.c): a temp
 * dir, free loopback ports, redis-server started daemonized with a pidfile,
 * and every process killed at exit, on SIGTERM/SIGINT and on the run's own
 * alarm, whatever failed (hiredis's test.sh does the same).  Waits for a
 * server poll a condition with a bound; they never sleep blindly. */
#ifndef CB_REDIS_SERVERS_H
#define CB_REDIS_SERVERS_H

#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"
#include "test.h"

#define CB_UNUSED __attribute__((unused))  /* each test uses some of these */

#define TIMEOUT 0.2  /* seconds: the timeout_ms every connection gets */
#define SLACK 0.15   /* scheduling on a loaded 2-core machine; & "at once" */

static char dir[64];

/* ---- processes and files ---------------------------------------------------- */

static CB_UNUSED double now(void) {
    return cb_clock_monotonic(NULL);
}

static CB_UNUSED void nap(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static CB_UNUSED int sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static CB_UNUSED int have(const char *prog) {
    return sh("command -v %s >/dev/null 2>&1", prog) == 0;
}

/* 1 when nobody listens on `port` now. */
static CB_UNUSED int port_free(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* A free port in [lo, hi) whose port + bus is free too (bus 0: none).
 * The ranges keep clear of the kernel's ephemeral ports (32768-60999) and
 * of the 20000-60000 the Lua specs' servers take at random, which run at
 * the same time under ctest -j. */
static CB_UNUSED int free_port_in(int lo, int hi, int bus) {
    static unsigned x;
    if (!x) x = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL);
    for (int i = 0; i < 1000; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;  /* xorshift32 */
        int p = lo + (int)(x % (unsigned)(hi - lo));
        if (port_free(p) && (!bus || port_free(p + bus))) return p;
    }
    fprintf(stderr, "no free port in %d-%d\n", lo, hi);
    exit(2);
}

static CB_UNUSED int free_port(void) {
    return free_port_in(61000, 65535, 0);
}

/* A cluster node's port: its bus port (+10000) must exist and be free. */
static CB_UNUSED int free_cluster_port(void) {
    return free_port_in(1100, 9999, 10000);  /* bus ports 11100-19999: clear too */
}

static CB_UNUSED void kill_all(void) {
    if (!dir[0]) return;
    sh("for f in %s/*.pid; do [ -f \"$f\" ] && kill -9 $(cat \"$f\") 2>/dev/null; done; "
       "rm -rf %s", dir, dir);
}

/* ctest's timeout (SIGTERM), ^C or our own alarm: the servers go too.  Not
 * async-signal-safe, and it need not be: the process ends here. */
static CB_UNUSED void on_signal(int sig) {
    kill_all();
    _exit(128 + sig);
}

static CB_UNUSED pid_t pid_of(const char *name) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s.pid", dir, name);
    for (int i = 0; i < 200; i++) {  /* bounded: 2 s */
        FILE *f = fopen(path, "r");
        int pid = 0;
        if (f) {
            if (fscanf(f, "%d", &pid) != 1) pid = 0;
            fclose(f);
        }
        if (pid > 0) return pid;
        nap(0.01);
    }
    return 0;
}

static CB_UNUSED int have_ipv6_loopback(void) {
    FILE *f = fopen("/proc/net/if_inet6", "r");
    char line[256];
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f))
        found = strncmp(line, "00000000000000000000000000000001", 32) == 0;
    if (f) fclose(f);
    return found;
}

/* A plain connection to 127.0.0.1:port (or a TLS one with `tls`). */
static CB_UNUSED cb_conn *conn_to(const char *host, int port, const cb_tls_opts *tls) {
    cb_conn_opts o;
    cb_conn_opts_init(&o);
    o.host = host;
    o.port = port;
    if (tls) o.tls = *tls;
    cb_conn *c = cb_conn_new(&o);
    if (!c) exit(3);
    return c;
}

static CB_UNUSED redisReply *cmd(cb_conn *c, const char *a0, const char *a1,
                                 const char *a2, const char *a3) {
    const char *argv[] = {a0, a1, a2, a3};
    int argc = a3 ? 4 : a2 ? 3 : a1 ? 2 : 1;
    return cb_conn_command(c, now() + 2 * TIMEOUT, argc, argv, NULL);
}

/* 1 when `c` gets `want` (a status or string) for the command. */
static CB_UNUSED int says(cb_conn *c, const char *want, const char *a0, const char *a1,
                          const char *a2, const char *a3) {
    redisReply *r = cmd(c, a0, a1, a2, a3);
    int ok = r && (!want[0] ? r->type != REDIS_REPLY_ERROR  /* "": any answer but an error */
                            : (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING ||
                               r->type == REDIS_REPLY_ERROR) &&
                                  strncmp(r->str, want, strlen(want)) == 0);
    if (!ok) {
        fprintf(stderr, "  %s: got %s\n", a0, !r ? c->errstr : r->str ? r->str : "(no string)");
    }
    if (r) freeReplyObject(r);
    return ok;
}

/* Waits (bounded) until a plain server on port answers PING. */
static CB_UNUSED int wait_ping(int port, const cb_tls_opts *tls, const char *password) {
    for (int i = 0; i < 300; i++) {  /* 3 s */
        cb_conn_opts o;
        cb_conn_opts_init(&o);
        o.host = "127.0.0.1";
        o.port = port;
        o.password = password;
        if (tls) o.tls = *tls;
        cb_conn *c = cb_conn_new(&o);
        int ok = cb_conn_connect(c, now() + 0.5) == CB_OK;
        redisReply *r = ok ? cmd(c, "PING", NULL, NULL, NULL) : NULL;
        ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        if (r) freeReplyObject(r);
        cb_conn_free(c);
        if (ok) return 1;
        nap(0.01);
    }
    return 0;
}

static CB_UNUSED int start_redis(const char *name, int port, const char *extra) {
    int r = sh("redis-server --port %d --bind 127.0.0.1 --daemonize yes --dir %s "
               "--pidfile %s/%s.pid --logfile %s/%s.log --save '' --appendonly no %s",
               port, dir, dir, name, dir, name, extra);
    return r == 0 && pid_of(name) > 0;
}

/* When a server did not come up: the end of every log, to say why. */
static CB_UNUSED void show_logs(void) {
    sh("for f in %s/*.log; do echo \"== $f\"; tail -5 \"$f\"; done >&2", dir);
}

/* Makes the temp dir and the clean-up guards; exits when a program is
 * missing (`progs`: space-separated), naming the Debian packages. */
static CB_UNUSED void servers_init(const char *progs, const char *packages) {
    char list[256], *save = NULL;
    snprintf(list, sizeof list, "%s", progs);
    for (char *p = strtok_r(list, " ", &save); p; p = strtok_r(NULL, " ", &save))
        if (!have(p)) {
            fprintf(stderr, "%s not found: install the Debian packages %s\n", p, packages);
            exit(1);
        }
    snprintf(dir, sizeof dir, "/tmp/cbreaker-conn.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(1);
    }
    atexit(kill_all);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGALRM, on_signal);
    alarm(110);  /* a hang in here ends, servers killed, before ctest's 120 s */
    signal(SIGPIPE, SIG_DFL);  /* a write may not raise it: the default kills */
}

#endif

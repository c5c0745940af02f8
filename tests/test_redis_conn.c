/* test_redis_conn.c -- the store's transport against real servers that this
 * test starts and stops: redis-server over TCP, a unix socket and TLS (with
 * certificates made by the openssl command), an ACL user, a Sentinel group
 * failing over, and servers of our own that hang or lie.  Everything lives
 * in a temp dir on loopback ports; every process started is killed at
 * exit, whatever failed.  Timeouts are real (they are what is tested);
 * waits for servers poll a condition with a bound, never sleep blindly. */
#define _GNU_SOURCE  /* mkdtemp */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"
#include "test.h"

#define TIMEOUT 0.2  /* seconds: the timeout_ms every connection gets */
#define SLACK 0.15   /* scheduling on a loaded 2-core machine; & "at once" */

static char dir[64];
static char sentinel_bin[64];

/* ---- processes and files ---------------------------------------------------- */

static double now(void) {
    return cb_clock_monotonic(NULL);
}

static void nap(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

static int sh(const char *fmt, ...) {
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int have(const char *prog) {
    return sh("command -v %s >/dev/null 2>&1", prog) == 0;
}

/* A port nobody listens on now (the kernel's choice). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) ||
        getsockname(fd, (struct sockaddr *)&a, &len)) {
        perror("free_port");
        exit(2);
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* 1 when nobody listens on `port` now. */
static int port_free(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons((uint16_t)port)};
    int ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    return ok;
}

/* A free port whose cluster bus port (+10000) is free too. */
static int free_cluster_port(void) {
    for (int i = 0; i < 100; i++) {
        int p = free_port();
        if (p <= 55535 && port_free(p + 10000)) return p;
        p = 20000 + (p % 30000);
        if (port_free(p) && port_free(p + 10000)) return p;
    }
    fprintf(stderr, "no free cluster port\n");
    exit(2);
}

static void kill_all(void) {
    if (!dir[0]) return;
    sh("for f in %s/*.pid; do [ -f \"$f\" ] && kill -9 $(cat \"$f\") 2>/dev/null; done; "
       "rm -rf %s", dir, dir);
}

/* ctest's timeout (SIGTERM), ^C or our own alarm: the servers go too.  Not
 * async-signal-safe, and it need not be: the process ends here. */
static void on_signal(int sig) {
    kill_all();
    _exit(128 + sig);
}

static pid_t pid_of(const char *name) {
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

static int have_ipv6_loopback(void) {
    FILE *f = fopen("/proc/net/if_inet6", "r");
    char line[256];
    int found = 0;
    while (f && !found && fgets(line, sizeof line, f))
        found = strncmp(line, "00000000000000000000000000000001", 32) == 0;
    if (f) fclose(f);
    return found;
}

/* A plain connection to 127.0.0.1:port (or a TLS one with `tls`). */
static cb_conn *conn_to(const char *host, int port, const cb_tls_opts *tls) {
    cb_conn_opts o;
    cb_conn_opts_init(&o);
    o.host = host;
    o.port = port;
    if (tls) o.tls = *tls;
    cb_conn *c = cb_conn_new(&o);
    if (!c) exit(3);
    return c;
}

static redisReply *cmd(cb_conn *c, const char *a0, const char *a1, const char *a2,
                       const char *a3) {
    const char *argv[] = {a0, a1, a2, a3};
    int argc = a3 ? 4 : a2 ? 3 : a1 ? 2 : 1;
    return cb_conn_command(c, now() + 2 * TIMEOUT, argc, argv, NULL);
}

/* 1 when `c` gets `want` (a status or string) for the command. */
static int says(cb_conn *c, const char *want, const char *a0, const char *a1, const char *a2,
                const char *a3) {
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
static int wait_ping(int port, const cb_tls_opts *tls, const char *password) {
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

static int start_redis(const char *name, int port, const char *extra) {
    int r = sh("redis-server --port %d --bind 127.0.0.1 --daemonize yes --dir %s "
               "--pidfile %s/%s.pid --logfile %s/%s.log --save '' --appendonly no %s",
               port, dir, dir, name, dir, name, extra);
    return r == 0 && pid_of(name) > 0;
}

/* ---- certificates ------------------------------------------------------------- */

static int make_certs(void) {
    const char *key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    return sh("cd %s && exec >openssl.log 2>&1 && "
              "openssl req -x509 %s -keyout ca.key -out ca.crt -days 2 "
              "-subj '/CN=cbreaker test CA' && "
              "openssl req -x509 %s -keyout other-ca.key -out other-ca.crt -days 2 "
              "-subj '/CN=another CA' && "
              "openssl req %s -keyout server.key -out server.csr -subj '/CN=localhost' && "
              "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' >server.ext && "
              "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
              "-out server.crt -days 2 -extfile server.ext && "
              "openssl req %s -keyout client.key -out client.csr -subj '/CN=cbreaker client' && "
              "openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial "
              "-out client.crt -days 2",
              dir, key, key, key, key) == 0;
}

/* ---- servers of our own: hung, lying ---------------------------------------------- */

typedef struct fake {
    int lfd, port;
    const char *send;   /* written once a client connects */
    size_t send_len;
    size_t stream;      /* then this many more bytes of 'x' */
    int hang_up;        /* then close at once (else wait for the client to) */
    pthread_t t;
} fake;

static void *fake_run(void *arg) {
    fake *f = arg;
    int fd = accept(f->lfd, NULL, NULL);
    if (fd < 0) return NULL;
    char buf[4096];
    if (recv(fd, buf, sizeof buf, 0) <= 0) goto out;  /* the request: a close then is no reset */
    if (f->send_len && send(fd, f->send, f->send_len, MSG_NOSIGNAL) < 0) goto out;
    memset(buf, 'x', sizeof buf);
    for (size_t sent = 0; sent < f->stream;) {
        ssize_t n = send(fd, buf, sizeof buf, MSG_NOSIGNAL);
        if (n <= 0) goto out;
        sent += (size_t)n;
    }
    if (!f->hang_up)
        while (recv(fd, buf, sizeof buf, 0) > 0) {}  /* until the client closes */
out:
    close(fd);
    return NULL;
}

/* A listening socket; with `accepting`, a thread that plays `f`'s part for
 * one client, else nobody ever accepts (the kernel completes the connect). */
static void fake_start(fake *f, int accepting) {
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (f->lfd < 0 || bind(f->lfd, (struct sockaddr *)&a, sizeof a) || listen(f->lfd, 8) ||
        getsockname(f->lfd, (struct sockaddr *)&a, &len)) {
        perror("fake");
        exit(2);
    }
    f->port = ntohs(a.sin_port);
    if (accepting && pthread_create(&f->t, NULL, fake_run, f)) exit(2);
}

static void fake_stop(fake *f, int accepting) {
    if (accepting) pthread_join(f->t, NULL);
    close(f->lfd);
}

/* Connects to a fake that sends `payload`, sends PING, returns the reply
 * (NULL) and the time it took in *took. */
static cb_conn *against_fake(fake *f, const char *payload, size_t stream, int hang_up,
                             size_t max_reply_bytes, double *took) {
    f->send = payload;
    f->send_len = strlen(payload);
    f->stream = stream;
    f->hang_up = hang_up;
    fake_start(f, 1);
    cb_conn_opts o;
    cb_conn_opts_init(&o);
    o.host = "127.0.0.1";
    o.port = f->port;
    if (max_reply_bytes) o.max_reply_bytes = max_reply_bytes;
    cb_conn *c = cb_conn_new(&o);
    double t0 = now();
    if (cb_conn_connect(c, t0 + TIMEOUT) == CB_OK) {
        redisReply *r = cb_conn_command(c, t0 + TIMEOUT, 1, (const char *[]){"PING"}, NULL);
        if (r) {
            fprintf(stderr, "  unexpected reply type %d\n", r->type);
            freeReplyObject(r);
        }
    }
    *took = now() - t0;
    cb_conn_close(c);  /* the fake's thread sees EOF and ends */
    fake_stop(f, 1);
    return c;
}

/* ---- a resolver that takes its time -------------------------------------------------- */

static atomic_int slow_calls, slow_done;

static int slow_resolve(void *ud, const char *host, const char *service,
                        const struct addrinfo *hints, struct addrinfo **res) {
    atomic_fetch_add(&slow_calls, 1);
    nap(*(double *)ud);
    int r = getaddrinfo(host, service, hints, res);
    atomic_fetch_add(&slow_done, 1);
    return r;
}

/* ---- the tests ------------------------------------------------------------------------- */

static void test_plain(int port) {
    cb_conn *c = conn_to("127.0.0.1", port, NULL);
    test("plain TCP: connect and PING");
    test_cond(cb_conn_connect(c, now() + TIMEOUT) == CB_OK && says(c, "PONG", "PING", 0, 0, 0));

    test("pipelined: 200 commands appended, one flush, 200 replies in order");
    int ok = 1;
    for (int i = 0; i < 200 && ok; i++) {
        char v[16];
        snprintf(v, sizeof v, "%d", i);
        ok = cb_conn_append(c, 2, (const char *[]){"ECHO", v}, NULL) == CB_OK;
    }
    ok = ok && cb_conn_want_write(c) > 0 && cb_conn_flush_until(c, now() + TIMEOUT) == CB_OK;
    for (int i = 0; i < 200 && ok; i++) {
        redisReply *r = cb_conn_read_reply(c, now() + TIMEOUT);
        ok = r && r->type == REDIS_REPLY_STRING && atoi(r->str) == i;
        if (r) freeReplyObject(r);
    }
    test_cond(ok && cb_conn_want_write(c) == 0);

    test("a subscription: cb_conn_read returns at once with nothing there, then the message");
    cb_conn *sub = conn_to("127.0.0.1", port, NULL);
    redisReply *r = NULL;
    ok = cb_conn_connect(sub, now() + TIMEOUT) == CB_OK &&
         (r = cmd(sub, "SUBSCRIBE", "conn:events", 0, 0)) && r->type == REDIS_REPLY_ARRAY;
    if (r) freeReplyObject(r);
    double t0 = now();
    long n = ok ? cb_conn_read(sub) : -1;
    redisReply *m = NULL;
    ok = ok && n == 0 && now() - t0 < 0.05 && cb_conn_get_reply(sub, &m) == CB_OK && !m;
    ok = ok && says(c, "", "PUBLISH", "conn:events", "hello", 0);
    for (double until = now() + TIMEOUT; ok && !m && now() < until;) {
        if (cb_conn_read(sub) < 0 || cb_conn_get_reply(sub, &m) != CB_OK) break;
        if (!m) nap(0.001);
    }
    test_cond(ok && m && m->type == REDIS_REPLY_ARRAY && m->elements == 3 &&
              strcmp(m->element[2]->str, "hello") == 0 && cb_conn_fd(sub) >= 0);
    if (m) freeReplyObject(m);
    cb_conn_free(sub);

    test("SELECT db: a key set in db 3 is not in db 0");
    cb_conn_opts o;
    cb_conn_opts_init(&o);
    o.host = "127.0.0.1";
    o.port = port;
    o.db = 3;
    cb_conn *c3 = cb_conn_new(&o);
    ok = cb_conn_connect(c3, now() + TIMEOUT) == CB_OK && says(c3, "OK", "SET", "conn:db", "3", 0);
    r = cmd(c, "EXISTS", "conn:db", 0, 0);
    test_cond(ok && r && r->type == REDIS_REPLY_INTEGER && r->integer == 0);
    if (r) freeReplyObject(r);
    cb_conn_free(c3);

    test("a name, resolved in the helper thread: localhost");
    cb_conn *l = conn_to("localhost", port, NULL);
    test_cond(cb_conn_connect(l, now() + TIMEOUT) == CB_OK && says(l, "PONG", "PING", 0, 0, 0));
    cb_conn_free(l);

    test("an IPv6 literal: [::1]");
    if (have_ipv6_loopback()) {
        cb_conn *v6 = conn_to("::1", port, NULL);
        char where[32];
        snprintf(where, sizeof where, "[::1]:%d", port);
        test_cond(cb_conn_connect(v6, now() + TIMEOUT) == CB_OK &&
                  strcmp(cb_conn_where(v6), where) == 0 && says(v6, "PONG", "PING", 0, 0, 0));
        cb_conn_free(v6);
    } else {
        printf("skipped (this machine has no ::1)\n");
        tests_run--;
    }

    test("nobody listening: a clear error, at once");
    cb_conn *d = conn_to("127.0.0.1", free_port(), NULL);
    t0 = now();
    test_cond(cb_conn_connect(d, now() + TIMEOUT) == CB_ERR && d->err == CB_CONN_ECONNECT &&
              strstr(d->errstr, "Connection refused") && now() - t0 < TIMEOUT);
    cb_conn_free(d);

    test("a command on a closed connection: an error, no crash");
    cb_conn_close(c);
    test_cond(!cmd(c, "PING", 0, 0, 0) && c->err == CB_CONN_ECLOSED && cb_conn_fd(c) == -1);
    cb_conn_free(c);
}

static void test_unix(void) {
    char path[128];
    snprintf(path, sizeof path, "%s/redis.sock", dir);
    cb_conn_opts o;
    cb_conn_opts_init(&o);
    o.path = path;
    cb_conn *c = cb_conn_new(&o);
    test("unix socket: connect and PING");
    test_cond(cb_conn_connect(c, now() + TIMEOUT) == CB_OK && says(c, "PONG", "PING", 0, 0, 0));
    cb_conn_free(c);

    test("unix socket that does not exist: a clear error");
    snprintf(path, sizeof path, "%s/nothing.sock", dir);
    c = cb_conn_new(&o);
    test_cond(cb_conn_connect(c, now() + TIMEOUT) == CB_ERR &&
              strstr(c->errstr, "No such file or directory"));
    cb_conn_free(c);
}

static void test_acl(int port) {
    cb_conn *admin = conn_to("127.0.0.1", port, NULL);
    test("ACL user limited to ~cbacl:* and &cbacl:events (set up)");
    test_cond(cb_conn_connect(admin, now() + TIMEOUT) == CB_OK &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser",
                   "on") &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser", ">s3cret pass") &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser", "resetkeys") &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser", "~cbacl:*") &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser", "resetchannels") &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser", "&cbacl:events") &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser", "-@all") &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser", "+get") &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser", "+set") &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser", "+publish") &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser", "+subscribe") &&
              says(admin, "OK", "ACL", "SETUSER", "cbuser", "+ping"));
    cb_conn_free(admin);

    cb_conn_opts o;
    cb_conn_opts_init(&o);
    o.host = "127.0.0.1";
    o.port = port;
    o.user = "cbuser";
    o.password = "s3cret pass";
    cb_conn *c = cb_conn_new(&o);
    test("AUTH user password: its keys and channel, nothing else");
    test_cond(cb_conn_connect(c, now() + TIMEOUT) == CB_OK &&
              says(c, "OK", "SET", "cbacl:x", "1", 0) &&
              says(c, "NOPERM", "SET", "other:x", "1", 0) &&
              says(c, "", "PUBLISH", "cbacl:events", "m", 0) &&
              says(c, "NOPERM", "PUBLISH", "other:events", "m", 0) &&
              says(c, "NOPERM", "FLUSHALL", 0, 0, 0) &&
              says(c, "NOPERM", "SUBSCRIBE", "other:events", 0, 0) &&
              says(c, "", "SUBSCRIBE", "cbacl:events", 0, 0));
    cb_conn_free(c);

    test("a wrong password: a clear error naming AUTH, and no password in it");
    o.password = "wrong-password";
    c = cb_conn_new(&o);
    test_cond(cb_conn_connect(c, now() + TIMEOUT) == CB_ERR && c->err == CB_CONN_EAUTH &&
              strstr(c->errstr, "AUTH: WRONGPASS") && !strstr(c->errstr, "wrong-password") &&
              cb_conn_fd(c) == -1);
    cb_conn_free(c);
}

static void test_tls(int port) {
    char ca[128], other_ca[128], cert[128], key[128];
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    snprintf(other_ca, sizeof other_ca, "%s/other-ca.crt", dir);
    snprintf(cert, sizeof cert, "%s/client.crt", dir);
    snprintf(key, sizeof key, "%s/client.key", dir);
    cb_tls_opts t = {.enabled = 1, .ca_file = ca, .cert_file = cert, .key_file = key, .verify = 1};
    cb_conn_opts o;
    cb_conn_opts_init(&o);
    o.host = "127.0.0.1";
    o.port = port;
    o.password = "tls-pass";  /* AUTH with one argument */
    o.tls = t;

    test("TLS: certificate and IP address verified, AUTH, PING, pipelined");
    cb_conn *c = cb_conn_new(&o);
    int ok = cb_conn_connect(c, now() + TIMEOUT) == CB_OK && says(c, "PONG", "PING", 0, 0, 0);
    for (int i = 0; i < 50 && ok; i++)
        ok = cb_conn_append(c, 3, (const char *[]){"SET", "tls:k", "v"}, NULL) == CB_OK;
    ok = ok && cb_conn_flush_until(c, now() + TIMEOUT) == CB_OK;
    for (int i = 0; i < 50 && ok; i++) {
        redisReply *r = cb_conn_read_reply(c, now() + TIMEOUT);
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
    }
    test_cond(ok);
    if (!ok) fprintf(stderr, "  %s\n", c->errstr);

    test("TLS: a 1 MB value both ways (partial TLS writes and reads)");
    size_t big = 1 << 20;
    char *v = malloc(big);
    memset(v, 'v', big);
    redisReply *r = cb_conn_command(c, now() + 4 * TIMEOUT, 3,
                                    (const char *[]){"SET", "tls:big", v},
                                    (const size_t[]){3, 7, big});
    ok = r && r->type == REDIS_REPLY_STATUS;
    if (r) freeReplyObject(r);
    r = ok ? cmd(c, "GET", "tls:big", 0, 0) : NULL;
    test_cond(r && r->type == REDIS_REPLY_STRING && r->len == big && memcmp(r->str, v, big) == 0);
    if (r) freeReplyObject(r);
    free(v);
    cb_conn_free(c);

    test("TLS by name: localhost is in the certificate (DNS SAN and SNI)");
    o.host = "localhost";
    c = cb_conn_new(&o);
    test_cond(cb_conn_connect(c, now() + TIMEOUT) == CB_OK && says(c, "PONG", "PING", 0, 0, 0));
    cb_conn_free(c);
    o.host = "127.0.0.1";

    /* Redis sends its CA along with its certificate (OpenSSL builds the
     * chain from tls-ca-cert-file), so the verifier meets a self-signed
     * CA it does not trust; a leaf alone gives "unable to get local
     * issuer certificate". */
    test("TLS, wrong CA: certificate verify failed, naming the untrusted chain");
    o.tls.ca_file = other_ca;
    c = cb_conn_new(&o);
    test_cond(cb_conn_connect(c, now() + TIMEOUT) == CB_ERR && c->err == CB_CONN_ETLS &&
              (strstr(c->errstr, "TLS: certificate verify failed: self-signed certificate in "
                                 "certificate chain") ||
               strstr(c->errstr, "TLS: certificate verify failed: unable to get local issuer")));
    fprintf(stderr, "  (%s)\n", c->errstr);
    cb_conn_free(c);

    test("TLS, wrong host name: certificate verify failed: hostname mismatch");
    o.tls.ca_file = ca;
    o.tls.server_name = "redis.wrong.example";
    c = cb_conn_new(&o);
    test_cond(cb_conn_connect(c, now() + TIMEOUT) == CB_ERR && c->err == CB_CONN_ETLS &&
              strstr(c->errstr, "TLS: certificate verify failed: hostname mismatch"));
    fprintf(stderr, "  (%s)\n", c->errstr);
    cb_conn_free(c);

    test("TLS, an IP address not in the certificate: IP address mismatch");
    o.tls.server_name = "127.0.0.9";  /* verified as an IP address: no SNI */
    c = cb_conn_new(&o);
    test_cond(cb_conn_connect(c, now() + TIMEOUT) == CB_ERR &&
              strstr(c->errstr, "TLS: certificate verify failed: IP address mismatch"));
    cb_conn_free(c);

    test("TLS, verify = false: the wrong CA and name are accepted");
    o.tls.ca_file = other_ca;
    o.tls.server_name = "redis.wrong.example";
    o.tls.verify = 0;
    c = cb_conn_new(&o);
    test_cond(cb_conn_connect(c, now() + TIMEOUT) == CB_OK && says(c, "PONG", "PING", 0, 0, 0));
    cb_conn_free(c);
    o.tls = t;

    test("TLS without the client certificate the server requires: an error, bounded");
    o.tls.cert_file = o.tls.key_file = NULL;
    c = cb_conn_new(&o);
    double t0 = now();
    ok = cb_conn_connect(c, now() + TIMEOUT) == CB_ERR;  /* TLS 1.3: the alert comes after */
    test_cond(ok && now() - t0 < TIMEOUT + SLACK && strstr(c->errstr, "TLS"));
    fprintf(stderr, "  (%s)\n", c->errstr);
    cb_conn_free(c);
    o.tls = t;

    test("TLS, a CA file that does not exist: an options error naming it");
    o.tls.ca_file = "/nonexistent/ca.crt";
    c = cb_conn_new(&o);
    test_cond(c->err == CB_CONN_EOPTS &&
              strstr(c->errstr, "ca_file '/nonexistent/ca.crt': No such file or directory") &&
              cb_conn_connect(c, now() + TIMEOUT) == CB_ERR && c->err == CB_CONN_EOPTS);
    cb_conn_free(c);

    test("TLS, a key that is not the certificate's: an options error");
    o.tls = t;
    o.tls.key_file = key;
    o.tls.cert_file = ca;
    c = cb_conn_new(&o);
    test_cond(c->err == CB_CONN_EOPTS && strstr(c->errstr, "TLS: "));
    fprintf(stderr, "  (%s)\n", c->errstr);
    cb_conn_free(c);

    test("TLS to a plain server: an error within the deadline, not a hang");
    o.tls = t;
    o.port = free_port();
    fake f = {0};
    f.send = "-ERR not TLS\r\n";
    f.send_len = strlen(f.send);
    f.hang_up = 1;
    fake_start(&f, 1);
    o.port = f.port;
    c = cb_conn_new(&o);
    t0 = now();
    test_cond(cb_conn_connect(c, now() + TIMEOUT) == CB_ERR && c->err == CB_CONN_ETLS &&
              now() - t0 < TIMEOUT + SLACK);
    fprintf(stderr, "  (%s)\n", c->errstr);
    cb_conn_free(c);
    fake_stop(&f, 1);
}

static void test_bounds(void) {
    fake f;
    double took;
    cb_conn *c;

    test("a hung server (listening, never answering): PING bounded by the timeout");
    memset(&f, 0, sizeof f);
    fake_start(&f, 0);
    c = conn_to("127.0.0.1", f.port, NULL);
    double t0 = now();
    int ok = cb_conn_connect(c, t0 + TIMEOUT) == CB_OK &&
             !cb_conn_command(c, t0 + TIMEOUT, 1, (const char *[]){"PING"}, NULL);
    took = now() - t0;
    test_cond(ok && c->err == CB_CONN_ETIMEOUT && took >= TIMEOUT - 0.01 &&
              took < TIMEOUT + SLACK);
    cb_conn_free(c);

    test("a hung server and TLS: the handshake is bounded by the timeout");
    cb_tls_opts t = {.enabled = 1, .verify = 0};
    c = conn_to("127.0.0.1", f.port, &t);
    t0 = now();
    ok = cb_conn_connect(c, t0 + TIMEOUT) == CB_ERR;
    took = now() - t0;
    test_cond(ok && c->err == CB_CONN_ETLS && strstr(c->errstr, "handshake") &&
              took >= TIMEOUT - 0.01 && took < TIMEOUT + SLACK);
    cb_conn_free(c);
    fake_stop(&f, 0);

    test("*2000000000 then hang-up: refused before allocating, at once");
    memset(&f, 0, sizeof f);
    c = against_fake(&f, "*2000000000\r\n", 0, 1, 0, &took);
    test_cond(c->err == CB_CONN_EPROTOCOL && strstr(c->errstr, "announces over") && took < SLACK);
    fprintf(stderr, "  (%s)\n", c->errstr);
    cb_conn_free(c);

    test("*2000000000 then silence: refused at once, no wait for the rest");
    memset(&f, 0, sizeof f);
    c = against_fake(&f, "*2000000000\r\n", 0, 0, 0, &took);
    test_cond(c->err == CB_CONN_EPROTOCOL && took < SLACK);
    cb_conn_free(c);

    test("nested arrays: the bound is on all levels together");
    memset(&f, 0, sizeof f);
    c = against_fake(&f, "*1000000\r\n*1000000\r\n", 0, 1, 0, &took);
    test_cond(c->err == CB_CONN_EPROTOCOL && strstr(c->errstr, "announces over"));
    cb_conn_free(c);

    test("a negative array length: a protocol error");
    memset(&f, 0, sizeof f);
    c = against_fake(&f, "*-5\r\n", 0, 1, 0, &took);
    test_cond(c->err == CB_CONN_EPROTOCOL);
    cb_conn_free(c);

    test("$2000000000 then hang-up: EOF, at once");
    memset(&f, 0, sizeof f);
    c = against_fake(&f, "$2000000000\r\n", 0, 1, 0, &took);
    test_cond(c->err == CB_CONN_EEOF && took < SLACK);
    cb_conn_free(c);

    test("$2000000000 then a stream of bytes: stopped at max_reply_bytes");
    memset(&f, 0, sizeof f);
    c = against_fake(&f, "$2000000000\r\n", 4 << 20, 0, 65536, &took);
    test_cond(c->err == CB_CONN_EPROTOCOL && strstr(c->errstr, "a reply over 65536 bytes"));
    cb_conn_free(c);

    test("many strings in one reply: their bytes count against max_reply_bytes");
    memset(&f, 0, sizeof f);
    static char many[64 + 40 * 1024];
    int len = snprintf(many, sizeof many, "*1000\r\n");
    for (int i = 0; i < 1000 && len + 40 < (int)sizeof many; i++)
        len += snprintf(many + len, sizeof many - (size_t)len, "$30\r\n%030d\r\n", i);
    c = against_fake(&f, many, 0, 0, 4096, &took);
    test_cond(c->err == CB_CONN_EPROTOCOL && strstr(c->errstr, "a reply over 4096 bytes"));
    cb_conn_free(c);

    test("not RESP at all: a protocol error");
    memset(&f, 0, sizeof f);
    c = against_fake(&f, "HTTP/1.1 400 Bad Request\r\n", 0, 0, 0, &took);
    test_cond(c->err == CB_CONN_EPROTOCOL && took < SLACK);
    cb_conn_free(c);

    test("the output buffer is bounded (a server that never reads)");
    cb_conn_opts o;
    cb_conn_opts_init(&o);
    o.host = "127.0.0.1";
    o.port = 1;
    o.max_out_bytes = 1000;
    c = cb_conn_new(&o);
    char v[600];
    memset(v, 'v', sizeof v - 1);
    v[sizeof v - 1] = '\0';
    test_cond(cb_conn_append(c, 2, (const char *[]){"ECHO", v}, NULL) == CB_OK &&
              cb_conn_append(c, 2, (const char *[]){"ECHO", v}, NULL) == CB_ERR &&
              c->err == CB_CONN_EOOM);
    cb_conn_free(c);
}

static void test_resolve(int port) {
    double slow = 1.0;
    cb_conn_opts o;
    cb_conn_opts_init(&o);
    o.host = "localhost";
    o.port = port;
    o.resolve = slow_resolve;
    o.resolve_ud = &slow;

    test("a slow name server: connect fails within the timeout, naming the host");
    cb_conn *c = cb_conn_new(&o);
    double t0 = now();
    int ok = cb_conn_connect(c, t0 + TIMEOUT) == CB_ERR;
    double took = now() - t0;
    test_cond(ok && c->err == CB_CONN_ERESOLVE && strstr(c->errstr, "resolve localhost") &&
              took < TIMEOUT + SLACK);
    fprintf(stderr, "  (%s)\n", c->errstr);

    test("connecting again waits on the same lookup instead of starting another");
    ok = cb_conn_connect(c, now() + TIMEOUT) == CB_ERR && atomic_load(&slow_calls) == 1;
    test_cond(ok);

    test("freed while its lookup runs: the thread finishes alone (ASan: no use after free)");
    cb_conn_free(c);
    for (int i = 0; i < 300 && atomic_load(&slow_done) < 1; i++) nap(0.01);
    test_cond(atomic_load(&slow_done) == 1);

    test("once answered, the name is cached: a slow name server no longer stops connects");
    slow = 0.0;
    c = cb_conn_new(&o);
    ok = cb_conn_connect(c, now() + TIMEOUT) == CB_OK;
    slow = 2.0;  /* the next lookup is slow: the cached answer serves */
    t0 = now();
    ok = ok && cb_conn_connect(c, t0 + TIMEOUT) == CB_OK && says(c, "PONG", "PING", 0, 0, 0);
    test_cond(ok && now() - t0 < TIMEOUT + SLACK);
    cb_conn_free(c);
    for (int i = 0; i < 400 && atomic_load(&slow_done) < 3; i++) nap(0.01);

    test("an unresolvable name: a clear error within the timeout");
    o.host = "no-such-host.invalid";
    o.resolve = NULL;
    c = cb_conn_new(&o);
    t0 = now();
    ok = cb_conn_connect(c, t0 + TIMEOUT) == CB_ERR;
    test_cond(ok && c->err == CB_CONN_ERESOLVE && strstr(c->errstr, "no-such-host.invalid") &&
              now() - t0 < TIMEOUT + SLACK);
    fprintf(stderr, "  (%s)\n", c->errstr);
    cb_conn_free(c);
}

/* ---- Sentinel ----------------------------------------------------------------------- */

static int start_sentinel(const char *name, int port, int master_port) {
    char conf[128];
    snprintf(conf, sizeof conf, "%s/%s.conf", dir, name);
    FILE *f = fopen(conf, "w");
    if (!f) return 0;
    fprintf(f, "port %d\nbind 127.0.0.1\ndaemonize yes\ndir %s\npidfile %s/%s.pid\n"
               "logfile %s/%s.log\nsentinel monitor cbmaster 127.0.0.1 %d 2\n"
               "sentinel down-after-milliseconds cbmaster 500\n"
               "sentinel failover-timeout cbmaster 2000\n"
               "sentinel parallel-syncs cbmaster 1\n",
            port, dir, dir, name, dir, name, master_port);
    fclose(f);
    return sh("%s %s >/dev/null", sentinel_bin, conf) == 0 && pid_of(name) > 0;
}

/* The integer field `key` of SENTINEL MASTER cbmaster on a sentinel, or -1. */
static long long sentinel_field(int port, const char *key) {
    cb_conn *c = conn_to("127.0.0.1", port, NULL);
    long long v = -1;
    redisReply *r = NULL;
    if (cb_conn_connect(c, now() + TIMEOUT) == CB_OK &&
        (r = cmd(c, "SENTINEL", "MASTER", "cbmaster", 0)) && r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < r->elements; i += 2)
            if (strcmp(r->element[i]->str, key) == 0) v = atoll(r->element[i + 1]->str);
    if (r) freeReplyObject(r);
    cb_conn_free(c);
    return v;
}

static void test_sentinel(void) {
    int mport = free_port(), rport = free_port(), dead = free_port();
    int sports[3] = {free_port(), free_port(), free_port()};
    char extra[128];
    snprintf(extra, sizeof extra, "--replicaof 127.0.0.1 %d", mport);
    test("sentinel group: a master, a replica in sync, three sentinels that see each other");
    int ok = start_redis("master", mport, "") && start_redis("replica", rport, extra) &&
             wait_ping(mport, NULL, NULL) && wait_ping(rport, NULL, NULL);
    for (int i = 0; ok && i < 500; i++) {  /* the replica's link: up within 5 s */
        cb_conn *c = conn_to("127.0.0.1", rport, NULL);
        redisReply *r = NULL;
        int up = cb_conn_connect(c, now() + TIMEOUT) == CB_OK && (r = cmd(c, "ROLE", 0, 0, 0)) &&
                 r->type == REDIS_REPLY_ARRAY && r->elements >= 4 &&
                 strcmp(r->element[3]->str, "connected") == 0;
        if (r) freeReplyObject(r);
        cb_conn_free(c);
        if (up) break;
        if (i == 499) ok = 0;
        nap(0.01);
    }
    for (int i = 0; ok && i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "sentinel%d", i);
        ok = start_sentinel(name, sports[i], mport);
    }
    /* A failover needs the sentinels to know the replica and each other
     * (hello messages every 2 s): bounded at 15 s. */
    for (int i = 0; ok && i < 1500; i++) {
        int ready = 1;
        for (int k = 0; k < 3 && ready; k++)
            ready = sentinel_field(sports[k], "num-other-sentinels") == 2 &&
                    sentinel_field(sports[k], "num-slaves") == 1;
        if (ready) break;
        if (i == 1499) ok = 0;
        nap(0.01);
    }
    test_cond(ok);
    if (!ok) return;

    cb_sentinel_opts so;
    cb_sentinel_opts_init(&so);
    so.n = 4;  /* the first one is down: asked first, skipped */
    const char *lo = "127.0.0.1";
    so.hosts[0] = so.hosts[1] = so.hosts[2] = so.hosts[3] = lo;
    so.ports[0] = dead;
    for (int i = 0; i < 3; i++) so.ports[i + 1] = sports[i];
    so.master = "cbmaster";
    cb_sentinel *s = cb_sentinel_new(&so);
    cb_conn_opts o;
    cb_conn_opts_init(&o);  /* no host: the sentinels name it */
    cb_conn *c = cb_conn_new(&o);
    test("a connection without a host yet: connecting says so");
    test_cond(c->err == 0 && cb_conn_connect(c, now() + TIMEOUT) == CB_ERR &&
              strstr(c->errstr, "no host yet"));

    test("discovery: a dead sentinel skipped, the master found, ROLE master, writable");
    double t0 = now();
    ok = cb_sentinel_connect(s, c, t0 + 4 * TIMEOUT) == CB_OK;
    char where[32];
    snprintf(where, sizeof where, "127.0.0.1:%d", mport);
    test_cond(ok && strcmp(cb_conn_where(c), where) == 0 && says(c, "OK", "SET", "sn:k", "1", 0));
    if (!ok) fprintf(stderr, "  %s\n", s->errstr);

    test("a master name no sentinel knows: a clear error");
    so.master = "nosuchmaster";
    cb_sentinel *s2 = cb_sentinel_new(&so);
    char host[64];
    int port;
    ok = cb_sentinel_master_addr(s2, now() + 4 * TIMEOUT, host, sizeof host, &port) == CB_ERR;
    test_cond(ok && strstr(s2->errstr, "does not know master 'nosuchmaster'"));
    fprintf(stderr, "  (%s)\n", s2->errstr);
    cb_sentinel_free(s2);

    test("a replica named as master (stale answer) is refused by the ROLE check");
    so.master = "cbmaster";
    cb_conn *rc = conn_to("127.0.0.1", rport, NULL);
    redisReply *r = NULL;
    ok = cb_conn_connect(rc, now() + TIMEOUT) == CB_OK && (r = cmd(rc, "ROLE", 0, 0, 0)) &&
         strcmp(r->element[0]->str, "slave") == 0;
    if (r) freeReplyObject(r);
    test_cond(ok);
    cb_conn_free(rc);

    /* Follow +switch-master on one sentinel (the next round's push path). */
    cb_conn *sub = conn_to("127.0.0.1", sports[0], NULL);
    r = NULL;
    ok = cb_conn_connect(sub, now() + TIMEOUT) == CB_OK &&
         (r = cmd(sub, "SUBSCRIBE", "+switch-master", 0, 0)) != NULL;
    if (r) freeReplyObject(r);

    test("failover: the master killed; re-discovery finds the promoted replica");
    pid_t mpid = pid_of("master");
    kill(mpid, SIGKILL);
    char mpidfile[128];
    snprintf(mpidfile, sizeof mpidfile, "%s/master.pid", dir);
    unlink(mpidfile);
    t0 = now();
    int found = 0, attempts = 0;
    double worst = 0;
    while (!found && now() - t0 < 30) {  /* the sentinels' failover, polled */
        double a = now();
        found = cb_sentinel_connect(s, c, a + 2 * TIMEOUT) == CB_OK;
        double took = now() - a;
        if (took > worst) worst = took;
        attempts++;
        if (!found) nap(0.05);
    }
    snprintf(where, sizeof where, "127.0.0.1:%d", rport);
    test_cond(found && strcmp(cb_conn_where(c), where) == 0 &&
              says(c, "OK", "SET", "sn:k", "2", 0));
    fprintf(stderr, "  (failover seen after %.2f s, %d attempts)\n", now() - t0, attempts);

    test("no re-discovery attempt outlasted its deadline during the failover");
    test_cond(worst < 2 * TIMEOUT + SLACK);

    test("+switch-master from the subscription names the new master");
    redisReply *m = NULL;
    int sw = 0;
    for (double until = now() + 5; ok && !sw && now() < until;) {
        if (cb_conn_read(sub) < 0) break;
        while (!sw && cb_conn_get_reply(sub, &m) == CB_OK && m) {
            sw = cb_sentinel_parse_switch(s, m, host, sizeof host, &port);
            freeReplyObject(m);
        }
        if (!sw) nap(0.01);
    }
    test_cond(sw && port == rport && strcmp(host, "127.0.0.1") == 0);
    cb_conn_free(sub);

    test("parse_switch ignores other masters and other messages");
    redisReply fake_el[3], *els[3] = {&fake_el[0], &fake_el[1], &fake_el[2]};
    redisReply fr = {.type = REDIS_REPLY_ARRAY, .elements = 3, .element = els};
    char a0[] = "message", a1[] = "+switch-master", a2[] = "other 1.2.3.4 1 5.6.7.8 2";
    char *strs[3] = {a0, a1, a2};
    for (int i = 0; i < 3; i++) {
        memset(&fake_el[i], 0, sizeof fake_el[i]);
        fake_el[i].type = REDIS_REPLY_STRING;
        fake_el[i].str = strs[i];
        fake_el[i].len = strlen(strs[i]);
    }
    int other = cb_sentinel_parse_switch(s, &fr, host, sizeof host, &port);
    char a3[] = "cbmaster 1.2.3.4 1 5.6.7.8 70000";
    fake_el[2].str = a3;
    fake_el[2].len = strlen(a3);
    int badport = cb_sentinel_parse_switch(s, &fr, host, sizeof host, &port);
    test_cond(other == 0 && badport == 0 && !cb_sentinel_parse_switch(s, NULL, host, 64, &port));

    cb_conn_free(c);
    cb_sentinel_free(s);

    test("sentinel options: none, or no master name, are errors");
    so.n = 0;
    s = cb_sentinel_new(&so);
    ok = s->err == CB_CONN_EOPTS;
    cb_sentinel_free(s);
    so.n = 1;
    so.master = "";
    s = cb_sentinel_new(&so);
    test_cond(ok && s->err == CB_CONN_EOPTS &&
              cb_sentinel_master_addr(s, now() + TIMEOUT, host, sizeof host, &port) == CB_ERR);
    cb_sentinel_free(s);
}

/* ---- Cluster: key slots and redirections ---------------------------------------------- */

static redisReply *cmdv(cb_conn *c, int argc, const char **argv) {
    return cb_conn_command(c, now() + 2 * TIMEOUT, argc, argv, NULL);
}

/* 1 when `CLUSTER INFO` on port says cluster_state:ok. */
static int cluster_ok(int port) {
    cb_conn *c = conn_to("127.0.0.1", port, NULL);
    redisReply *r = NULL;
    int ok = cb_conn_connect(c, now() + TIMEOUT) == CB_OK &&
             (r = cmd(c, "CLUSTER", "INFO", 0, 0)) && r->type == REDIS_REPLY_STRING &&
             strstr(r->str, "cluster_state:ok");
    if (r) freeReplyObject(r);
    cb_conn_free(c);
    return ok;
}

static void test_cluster(void) {
    int pa = free_cluster_port(), pb = free_cluster_port();
    char extra[256];
    test("two cluster nodes, half the slots each, met");
    snprintf(extra, sizeof extra, "--cluster-enabled yes --cluster-config-file %s/nodes-a.conf "
             "--cluster-node-timeout 2000", dir);
    int ok = start_redis("cluster-a", pa, extra);
    snprintf(extra, sizeof extra, "--cluster-enabled yes --cluster-config-file %s/nodes-b.conf "
             "--cluster-node-timeout 2000", dir);
    ok = ok && start_redis("cluster-b", pb, extra) && wait_ping(pa, NULL, NULL) &&
         wait_ping(pb, NULL, NULL);
    cb_conn *a = conn_to("127.0.0.1", pa, NULL), *b = conn_to("127.0.0.1", pb, NULL);
    char pbs[8];
    snprintf(pbs, sizeof pbs, "%d", pb);
    ok = ok && cb_conn_connect(a, now() + TIMEOUT) == CB_OK &&
         cb_conn_connect(b, now() + TIMEOUT) == CB_OK &&
         says(a, "OK", "CLUSTER", "ADDSLOTSRANGE", "0", "8191") &&
         says(b, "OK", "CLUSTER", "ADDSLOTSRANGE", "8192", "16383") &&
         says(a, "OK", "CLUSTER", "MEET", "127.0.0.1", pbs);
    for (int i = 0; ok && i < 1000 && !(cluster_ok(pa) && cluster_ok(pb)); i++) nap(0.01);
    test_cond(ok && cluster_ok(pa) && cluster_ok(pb));
    if (!ok) goto out;

    test("cb_cluster_keyslot agrees with CLUSTER KEYSLOT (tags, empty tags, 300 keys)");
    const char *keys[] = {"123456789", "foo", "{user1000}.following", "{user1000}.followers",
                          "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{}", "{", "}{x}",
                          "", "circuit_breaker:{openai}:state", "circuit_breaker:states"};
    int agree = cb_cluster_keyslot("123456789", 9) == 12739;  /* the specification's example */
    for (int i = 0; i < 313 && agree; i++) {
        char k[64];
        const char *key = i < 13 ? keys[i] : k;
        if (i >= 13) snprintf(k, sizeof k, "cb:%d:{t%d}x%d", i * 7919, i % 17, i);
        redisReply *r = cmd(a, "CLUSTER", "KEYSLOT", key, 0);
        agree = r && r->type == REDIS_REPLY_INTEGER &&
                r->integer == (long long)cb_cluster_keyslot(key, strlen(key));
        if (!agree) fprintf(stderr, "  key '%s'\n", key);
        if (r) freeReplyObject(r);
    }
    test_cond(agree);

    test("MOVED from the node that does not own the slot: slot and owner parsed");
    const char *kb = "k5";  /* find a key of b's half */
    char kbuf[16];
    for (int i = 0; cb_cluster_keyslot(kb, strlen(kb)) < 8192; i++) {
        snprintf(kbuf, sizeof kbuf, "k%d", i);
        kb = kbuf;
    }
    redisReply *r = cmd(a, "GET", kb, 0, 0);
    int slot = -1, port = 0;
    char host[64];
    test_cond(cb_cluster_redirect(r, &slot, host, sizeof host, &port) == CB_CLUSTER_MOVED &&
              slot == (int)cb_cluster_keyslot(kb, strlen(kb)) && port == pb &&
              strcmp(host, "127.0.0.1") == 0);
    if (r) freeReplyObject(r);

    test("ASK while a slot migrates; ASKING on the target serves the key");
    char ka[16];
    int i = 0;
    do snprintf(ka, sizeof ka, "a%d", i++);
    while (cb_cluster_keyslot(ka, strlen(ka)) >= 8192);
    char sa[8], ida[64] = "", idb[64] = "";
    snprintf(sa, sizeof sa, "%u", cb_cluster_keyslot(ka, strlen(ka)));
    redisReply *ia = cmd(a, "CLUSTER", "MYID", 0, 0), *ib = cmd(b, "CLUSTER", "MYID", 0, 0);
    if (ia && ia->type == REDIS_REPLY_STRING) snprintf(ida, sizeof ida, "%s", ia->str);
    if (ib && ib->type == REDIS_REPLY_STRING) snprintf(idb, sizeof idb, "%s", ib->str);
    if (ia) freeReplyObject(ia);
    if (ib) freeReplyObject(ib);
    ok = ida[0] && idb[0];
    redisReply *x = cmdv(b, 5, (const char *[]){"CLUSTER", "SETSLOT", sa, "IMPORTING", ida});
    redisReply *y = cmdv(a, 5, (const char *[]){"CLUSTER", "SETSLOT", sa, "MIGRATING", idb});
    ok = ok && x && x->type == REDIS_REPLY_STATUS && y && y->type == REDIS_REPLY_STATUS;
    if (x) freeReplyObject(x);
    if (y) freeReplyObject(y);
    r = ok ? cmd(a, "GET", ka, 0, 0) : NULL;  /* not on a: ask b */
    ok = ok && cb_cluster_redirect(r, &slot, host, sizeof host, &port) == CB_CLUSTER_ASK &&
         slot == atoi(sa) && port == pb;
    if (r) freeReplyObject(r);
    r = ok ? cmd(b, "GET", ka, 0, 0) : NULL;  /* b without ASKING: back to a */
    ok = ok && cb_cluster_redirect(r, &slot, host, sizeof host, &port) == CB_CLUSTER_MOVED &&
         port == pa;
    if (r) freeReplyObject(r);
    ok = ok && cb_conn_append(b, 1, (const char *[]){"ASKING"}, NULL) == CB_OK &&
         cb_conn_append(b, 2, (const char *[]){"GET", ka}, NULL) == CB_OK &&
         cb_conn_flush_until(b, now() + TIMEOUT) == CB_OK;
    redisReply *r1 = ok ? cb_conn_read_reply(b, now() + TIMEOUT) : NULL;
    redisReply *r2 = r1 ? cb_conn_read_reply(b, now() + TIMEOUT) : NULL;
    test_cond(ok && r1 && r1->type == REDIS_REPLY_STATUS && r2 && r2->type == REDIS_REPLY_NIL);
    if (r1) freeReplyObject(r1);
    if (r2) freeReplyObject(r2);

    test("cb_cluster_redirect: IPv6 and empty hosts; anything else is no redirection");
    redisReply e = {.type = REDIS_REPLY_ERROR};
    char m1[] = "MOVED 3999 ::1:7001", m2[] = "ASK 12 :7002", m3[] = "MOVED 16384 h:1",
         m4[] = "MOVED 1 h:0", m5[] = "ERR MOVED 1 h:1", m6[] = "MOVED 1 h";
    e.str = m1, e.len = strlen(m1);
    ok = cb_cluster_redirect(&e, &slot, host, sizeof host, &port) == CB_CLUSTER_MOVED &&
         slot == 3999 && strcmp(host, "::1") == 0 && port == 7001;
    e.str = m2, e.len = strlen(m2);
    ok = ok && cb_cluster_redirect(&e, &slot, host, sizeof host, &port) == CB_CLUSTER_ASK &&
         host[0] == '\0' && port == 7002;
    char *bad[] = {m3, m4, m5, m6};
    for (int k = 0; k < 4; k++) {
        e.str = bad[k], e.len = strlen(bad[k]);
        ok = ok && cb_cluster_redirect(&e, &slot, host, sizeof host, &port) == 0;
    }
    test_cond(ok && cb_cluster_redirect(NULL, &slot, host, sizeof host, &port) == 0);
out:
    cb_conn_free(a);
    cb_conn_free(b);
}

int main(void) {
    if (!have("redis-server") || !have("openssl")) {
        fprintf(stderr, "test_redis_conn needs redis-server and openssl (Debian packages "
                        "redis-server, openssl)\n");
        return 1;
    }
    /* Debian's redis-sentinel package, else the same binary in sentinel mode */
    snprintf(sentinel_bin, sizeof sentinel_bin, "%s",
             have("redis-sentinel") ? "redis-sentinel" : "redis-server --sentinel");
    snprintf(dir, sizeof dir, "/tmp/cbreaker-conn.XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    atexit(kill_all);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGALRM, on_signal);
    alarm(110);  /* a hang in here ends, servers killed, before ctest's 120 s */
    signal(SIGPIPE, SIG_DFL);  /* a write may not raise it: the default kills */

    test("certificates made with openssl (CA, server with SANs, another CA, client)");
    test_cond(make_certs());

    int plain = free_port(), tls = free_port();
    char extra[1024];
    snprintf(extra, sizeof extra, "--unixsocket %s/redis.sock --unixsocketperm 700 "
             "--bind 127.0.0.1 -::1", dir);  /* '-': ::1 when the machine has it */
    test("redis-server: plain with a unix socket");
    test_cond(start_redis("plain", plain, extra) && wait_ping(plain, NULL, NULL));
    snprintf(extra, sizeof extra,
             "--port 0 --tls-port %d --tls-cert-file %s/server.crt --tls-key-file %s/server.key "
             "--tls-ca-cert-file %s/ca.crt --tls-auth-clients yes --requirepass tls-pass",
             tls, dir, dir, dir);
    char ca[128], cert[128], key[128];
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    snprintf(cert, sizeof cert, "%s/client.crt", dir);
    snprintf(key, sizeof key, "%s/client.key", dir);
    cb_tls_opts t = {.enabled = 1, .ca_file = ca, .cert_file = cert, .key_file = key, .verify = 1};
    test("redis-server: TLS only, client certificates required, requirepass");
    /* --port 0 after --port: the last one wins */
    test_cond(start_redis("tls", 0, extra) && wait_ping(tls, &t, "tls-pass"));

    test_plain(plain);
    test_unix();
    test_acl(plain);
    test_tls(tls);
    test_bounds();
    test_resolve(plain);
    test_sentinel();
    test_cluster();
    return test_report();
}

/* test_redis_conn.c -- the store's transport against real servers that
 * this test starts and stops (redis_servers.h): redis-server over TCP, a
 * unix socket and TLS (with certificates made by the openssl command), an
 * ACL user, and servers of our own that hang or lie.  Timeouts are real
 * (they are what is tested). */
#include "redis_servers.h"

#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>

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


/* A server that dies and comes back on the same port: the same cb_conn
 * reports the loss clearly and reconnects. */
static void test_reconnect(void) {
    int port = free_port();
    test("reconnect: a killed server is an error at once, a restarted one is reached again");
    int ok = start_redis("restart", port, "") && wait_ping(port, NULL, NULL);
    cb_conn *c = conn_to("localhost", port, NULL);  /* a name: the cache serves again */
    ok = ok && cb_conn_connect(c, now() + TIMEOUT) == CB_OK && says(c, "PONG", "PING", 0, 0, 0);
    pid_t pid = pid_of("restart");
    char pidfile[128];
    snprintf(pidfile, sizeof pidfile, "%s/restart.pid", dir);
    ok = ok && pid > 0 && kill(pid, SIGKILL) == 0;
    unlink(pidfile);
    for (int i = 0; ok && i < 200 && kill(pid, 0) == 0; i++) nap(0.01);  /* gone */
    double t0 = now();
    redisReply *r = ok ? cmd(c, "PING", 0, 0, 0) : NULL;
    ok = ok && !r && (c->err == CB_CONN_EEOF || c->err == CB_CONN_EIO) && now() - t0 < SLACK &&
         cb_conn_fd(c) == -1;
    if (r) freeReplyObject(r);
    ok = ok && cb_conn_connect(c, now() + TIMEOUT) == CB_ERR && c->err == CB_CONN_ECONNECT;
    ok = ok && start_redis("restart", port, "") && wait_ping(port, NULL, NULL) &&
         cb_conn_connect(c, now() + TIMEOUT) == CB_OK && says(c, "PONG", "PING", 0, 0, 0);
    test_cond(ok);
    if (!ok) fprintf(stderr, "  %s\n", c->errstr);
    cb_conn_free(c);
}

int main(void) {
    servers_init("redis-server openssl", "redis-server, openssl");

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
    if (tests_failed) show_logs();

    test_plain(plain);
    test_unix();
    test_acl(plain);
    test_tls(tls);
    test_bounds();
    test_resolve(plain);
    test_reconnect();
    return test_report();
}

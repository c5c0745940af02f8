/* redis_tls.c -- TLS for a Redis connection, through OpenSSL's libssl.
 *
 * Verification is on unless the user turns it off: the chain against the
 * given CA (or the system's store), and the host name or IP address against
 * the certificate's subjectAltName.  A failure names its cause in the words
 * of OpenSSL's verifier ("TLS: certificate verify failed: hostname
 * mismatch").  The socket is driven through a small BIO of our own that
 * sends with MSG_NOSIGNAL: OpenSSL's socket BIO uses write(2), which raises
 * SIGPIPE on a connection the server dropped. */
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "redis_conn.h"

struct cb_tls_ctx {
    SSL_CTX *ctx;
    int verify;
    char server_name[256];  /* "" when the host is verified */
};

struct cb_tls {
    SSL *ssl;
    BIO_METHOD *bm;  /* shared: see bio_method() */
};

/* ---- the BIO: recv/send on a non-blocking socket ------------------------- */

static int bio_write(BIO *b, const char *buf, int n) {
    BIO_clear_retry_flags(b);
    ssize_t w = send(BIO_get_fd(b, NULL), buf, (size_t)n, MSG_NOSIGNAL);
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)w;
}

static int bio_read(BIO *b, char *buf, int n) {
    BIO_clear_retry_flags(b);
    ssize_t r = recv(BIO_get_fd(b, NULL), buf, (size_t)n, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)r;
}

static int bio_puts(BIO *b, const char *s) {
    return bio_write(b, s, (int)strlen(s));
}

/* Built once per process and never freed (like OpenSSL's own methods):
 * libssl's initialisation is thread-safe, and so is this through
 * CRYPTO_THREAD_run_once. */
static BIO_METHOD *the_method;
static CRYPTO_ONCE method_once = CRYPTO_ONCE_STATIC_INIT;

static void make_method(void) {
    const BIO_METHOD *sock = BIO_s_socket();
    int type = BIO_get_new_index();
    if (type == -1) return;
    BIO_METHOD *m = BIO_meth_new(type | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR,
                                 "cbreaker socket");
    if (!m) return;
    BIO_meth_set_write(m, bio_write);
    BIO_meth_set_read(m, bio_read);
    BIO_meth_set_puts(m, bio_puts);
    /* fd bookkeeping, flush and the rest as the socket BIO does them */
    BIO_meth_set_ctrl(m, BIO_meth_get_ctrl(sock));
    BIO_meth_set_create(m, BIO_meth_get_create(sock));
    BIO_meth_set_destroy(m, BIO_meth_get_destroy(sock));
    the_method = m;
}

static BIO_METHOD *bio_method(void) {
    if (!CRYPTO_THREAD_run_once(&method_once, make_method)) return NULL;
    return the_method;
}

/* ---- errors ---------------------------------------------------------------- */

/* The reason of the newest OpenSSL error, or `fallback`. */
static const char *ssl_reason(const char *fallback) {
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : fallback;
}

/* A file OpenSSL could not use: the system's reason (no such file) when
 * there is one, else OpenSSL's newest (no certificate in it ...). */
static int file_error(const char *what, const char *path, char *err, size_t errcap) {
    const char *why = "cannot be loaded";
    int sys = 0;
    for (unsigned long e; (e = ERR_get_error()) != 0;) {
        if (ERR_GET_LIB(e) == ERR_LIB_SYS && !sys) sys = ERR_GET_REASON(e);
        else if (ERR_reason_error_string(e)) why = ERR_reason_error_string(e);
    }
    snprintf(err, errcap, "TLS: %s '%s': %s", what, path, sys ? strerror(sys) : why);
    return CB_ERR;
}

/* ---- context ---------------------------------------------------------------- */

static int load(SSL_CTX *ctx, const cb_tls_opts *o, char *err, size_t errcap) {
    ERR_clear_error();
    if (o->ca_file || o->ca_path) {
        if (o->ca_file && !SSL_CTX_load_verify_file(ctx, o->ca_file))
            return file_error("ca_file", o->ca_file, err, errcap);
        if (o->ca_path && !SSL_CTX_load_verify_dir(ctx, o->ca_path))
            return file_error("ca_path", o->ca_path, err, errcap);
    } else if (o->verify && !SSL_CTX_set_default_verify_paths(ctx)) {
        snprintf(err, errcap, "TLS: cannot load the system's CA store: %s",
                 ssl_reason("unknown error"));
        return CB_ERR;
    }
    if ((o->cert_file != NULL) != (o->key_file != NULL)) {
        snprintf(err, errcap, "TLS: cert_file and key_file go together");
        return CB_ERR;
    }
    if (o->cert_file) {
        if (!SSL_CTX_use_certificate_chain_file(ctx, o->cert_file))
            return file_error("cert_file", o->cert_file, err, errcap);
        if (!SSL_CTX_use_PrivateKey_file(ctx, o->key_file, SSL_FILETYPE_PEM))
            return file_error("key_file", o->key_file, err, errcap);
        if (!SSL_CTX_check_private_key(ctx)) {
            snprintf(err, errcap, "TLS: key_file does not match cert_file");
            return CB_ERR;
        }
    }
    return CB_OK;
}

cb_tls_ctx *cb_tls_ctx_new(const cb_tls_opts *o, char *err, size_t errcap) {
    if (o->server_name && strlen(o->server_name) >= sizeof ((cb_tls_ctx *)0)->server_name) {
        snprintf(err, errcap, "TLS: server_name too long");
        return NULL;
    }
    cb_tls_ctx *x = calloc(1, sizeof *x);
    if (!x || !bio_method() || !(x->ctx = SSL_CTX_new(TLS_client_method()))) {
        snprintf(err, errcap, "TLS: out of memory");
        free(x);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(x->ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(x->ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);  /* Redis closes so */
    SSL_CTX_set_mode(x->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                             SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(x->ctx, o->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    x->verify = o->verify;
    if (o->server_name) strcpy(x->server_name, o->server_name);
    if (load(x->ctx, o, err, errcap) != CB_OK) {
        cb_tls_ctx_free(x);
        return NULL;
    }
    return x;
}

void cb_tls_ctx_free(cb_tls_ctx *x) {
    if (!x) return;
    SSL_CTX_free(x->ctx);
    free(x);
}

/* ---- one connection --------------------------------------------------------- */

static int is_ip(const char *s) {
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

cb_tls *cb_tls_new(cb_tls_ctx *x, int fd, const char *host, char *err, size_t errcap) {
    const char *name = x->server_name[0] ? x->server_name : host;
    cb_tls *t = calloc(1, sizeof *t);
    BIO *b = NULL;
    ERR_clear_error();
    if (!t || !(t->ssl = SSL_new(x->ctx)) || !(b = BIO_new(bio_method()))) goto oom;
    BIO_set_fd(b, fd, BIO_NOCLOSE);
    SSL_set_bio(t->ssl, b, b);
    if (!is_ip(name) && !SSL_set_tlsext_host_name(t->ssl, name)) goto oom;  /* SNI: names only */
    if (x->verify) {
        /* The name the certificate must carry: an IP address is matched
         * against IP SANs, a name against DNS SANs (wildcards allowed). */
        int ok = is_ip(name) ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name)
                             : SSL_set1_host(t->ssl, name);
        if (!ok) goto oom;
        SSL_set_hostflags(t->ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    }
    SSL_set_connect_state(t->ssl);
    return t;
oom:
    snprintf(err, errcap, "TLS: %s", ssl_reason("out of memory"));
    if (t && t->ssl) SSL_free(t->ssl);
    else if (b) BIO_free(b);
    free(t);
    return NULL;
}

void cb_tls_free(cb_tls *t) {
    if (!t) return;
    SSL_free(t->ssl);  /* no close_notify: the socket is closed right after */
    free(t);
}

/* Says what went wrong in an SSL call that returned `r`. */
static void describe(cb_tls *t, int r, const char *during, char *err, size_t errcap) {
    int e = SSL_get_error(t->ssl, r);
    long v = SSL_get_verify_result(t->ssl);
    if (v != X509_V_OK)
        snprintf(err, errcap, "TLS: certificate verify failed: %s",
                 X509_verify_cert_error_string(v));
    else if (e == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0)
        snprintf(err, errcap, "TLS: %s: %s", during,
                 errno && r < 0 ? strerror(errno) : "connection closed by the server");
    else
        snprintf(err, errcap, "TLS: %s: %s", during, ssl_reason("protocol error"));
    ERR_clear_error();
}

int cb_tls_handshake(cb_tls *t, double deadline, char *err, size_t errcap) {
    int fd = SSL_get_fd(t->ssl);
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int r = SSL_do_handshake(t->ssl);
        if (r == 1) return CB_OK;
        int e = SSL_get_error(t->ssl, r);
        if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
            describe(t, r, "handshake", err, errcap);
            return CB_ERR;
        }
        int w = cb_wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline);
        if (w <= 0) {
            snprintf(err, errcap, "TLS: handshake: %s",
                     w == 0 ? "no answer before the deadline" : strerror(errno));
            return CB_ERR;
        }
    }
}

static long io_result(cb_tls *t, int r, int *want_write, const char *during, char *err,
                      size_t errcap) {
    int e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *want_write = e == SSL_ERROR_WANT_WRITE;
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) return -1;  /* close_notify */
    if (e == SSL_ERROR_SYSCALL && ERR_peek_last_error() == 0 && (r == 0 || errno == 0))
        return -1;  /* EOF without close_notify: Redis closes that way */
    describe(t, r, during, err, errcap);
    return -2;
}

long cb_tls_read(cb_tls *t, char *buf, size_t n, int *want_write, char *err, size_t errcap) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_read(t->ssl, buf, n > 1 << 30 ? 1 << 30 : (int)n);
    if (r > 0) return r;
    return io_result(t, r, want_write, "read", err, errcap);
}

long cb_tls_write(cb_tls *t, const char *buf, size_t n, int *want_write, char *err,
                  size_t errcap) {
    ERR_clear_error();
    errno = 0;
    int r = SSL_write(t->ssl, buf, n > 1 << 30 ? 1 << 30 : (int)n);
    if (r > 0) return r;
    long v = io_result(t, r, want_write, "write", err, errcap);
    if (v == -1) {  /* no EOF on a write: the peer went away */
        snprintf(err, errcap, "TLS: write: connection closed by the server");
        return -2;
    }
    return v;
}

int cb_tls_pending(const cb_tls *t) {
    return SSL_pending(t->ssl) > 0;
}

/* redis_conn.c -- one connection to Redis: the socket, deadlines, the
 * handshake; hiredis encodes and parses, redis_tls.c encrypts,
 * redis_resolve.c resolves.  See redis_conn.h for the API. */
#include <errno.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"

#define READ_CHUNK 16384
#define READ_MAX 65536  /* bytes per cb_conn_read: bounded work per call */

typedef struct cb_conn_priv {
    cb_conn_opts o;            /* its strings point at the copies below */
    char *host, *path, *user, *password;
    char *ca_file, *ca_path, *cert_file, *key_file, *server_name;
    char where[300];           /* "host:port" or the path, for messages */
    char opts_err[128];        /* why the options cannot work, "" when they can */

    int fd;                    /* -1: closed */
    cb_tls_ctx *tls_ctx;
    cb_tls *tls;
    int read_wants_write;      /* TLS: SSL_read waits for POLLOUT */
    int write_wants_read;      /* TLS: SSL_write waits for POLLIN */
    int eof;                   /* EOF seen after bytes that are still to parse */
    unsigned long long skip;   /* bytes of a dropped string still to read and throw away */

    redisReader *reader;
    redisReplyObjectFunctions fns;   /* the defaults, bounded */
    redisReplyObjectFunctions base;  /* hiredis's defaults */
    size_t announced;          /* array elements announced by the reply in progress */
    size_t string_bytes;       /* string bytes in the reply in progress */
    char limit_msg[96];        /* why the reader was stopped, "" when it was not */

    char *out;                 /* encoded commands not yet written */
    size_t out_pos, out_len, out_cap;

    cb_resolve_req *inflight;  /* a lookup still running from an earlier connect */
    cb_addrs cache;            /* the last answer */
} cb_conn_priv;

static double mono(void) {
    return cb_clock_monotonic(NULL);
}

void cb_conn_opts_init(cb_conn_opts *o) {
    memset(o, 0, sizeof *o);
    o->port = 6379;
    o->tls.verify = 1;
    o->max_elements = 1u << 20;
    o->max_reply_bytes = 64u << 20;
    o->max_out_bytes = 8u << 20;
}

/* ---- errors ------------------------------------------------------------------ */

static void set_err(cb_conn *c, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    c->err = code;
    vsnprintf(c->errstr, sizeof c->errstr, fmt, ap);
    va_end(ap);
}

/* Sets the error and closes: what every I/O failure does. */
#define FAIL(c, code, ...) (set_err((c), (code), __VA_ARGS__), cb_conn_close(c), CB_ERR)

/* ---- construction -------------------------------------------------------------- */

static int dup_opt(char **dst, const char *src) {
    *dst = NULL;
    if (!src) return 1;
    *dst = strdup(src);
    return *dst != NULL;
}

cb_conn *cb_conn_new(const cb_conn_opts *o) {
    cb_conn *c = calloc(1, sizeof *c);
    cb_conn_priv *p = calloc(1, sizeof *p);
    if (!c || !p) goto oom;
    c->priv = p;
    p->fd = -1;
    p->o = *o;
    const cb_tls_opts *t = &o->tls;
    if (!dup_opt(&p->host, o->host) || !dup_opt(&p->path, o->path) ||
        !dup_opt(&p->user, o->user && o->user[0] ? o->user : NULL) ||
        !dup_opt(&p->password, o->password && o->password[0] ? o->password : NULL) ||
        !dup_opt(&p->ca_file, t->ca_file) || !dup_opt(&p->ca_path, t->ca_path) ||
        !dup_opt(&p->cert_file, t->cert_file) || !dup_opt(&p->key_file, t->key_file) ||
        !dup_opt(&p->server_name, t->server_name))
        goto oom;
    p->o.host = p->host;
    p->o.path = p->path;
    p->o.user = p->user;
    p->o.password = p->password;
    p->o.tls.ca_file = p->ca_file;
    p->o.tls.ca_path = p->ca_path;
    p->o.tls.cert_file = p->cert_file;
    p->o.tls.key_file = p->key_file;
    p->o.tls.server_name = p->server_name;
    if (p->o.port == 0) p->o.port = 6379;
    if (!p->o.max_elements) p->o.max_elements = 1u << 20;
    if (!p->o.max_reply_bytes) p->o.max_reply_bytes = 64u << 20;
    if (!p->o.max_out_bytes) p->o.max_out_bytes = 8u << 20;

    /* Without a host (a master Sentinel will name), cb_conn_set_endpoint
     * must give one before cb_conn_connect. */
    if (p->path) {
        snprintf(p->where, sizeof p->where, "%s", p->path);
        if (strlen(p->path) >= sizeof ((struct sockaddr_un *)0)->sun_path)
            snprintf(p->opts_err, sizeof p->opts_err, "unix socket path too long");
        else if (t->enabled)
            snprintf(p->opts_err, sizeof p->opts_err, "TLS: not over a unix socket");
    } else if (p->host && (!p->host[0] || strlen(p->host) > 255)) {
        snprintf(p->opts_err, sizeof p->opts_err, "a host name of 1 to 255 bytes is needed");
    } else if (p->o.port < 1 || p->o.port > 65535) {
        snprintf(p->opts_err, sizeof p->opts_err, "port %d is not in 1-65535", p->o.port);
    } else {
        if (p->host)
            snprintf(p->where, sizeof p->where, strchr(p->host, ':') ? "[%s]:%d" : "%s:%d",
                     p->host, p->o.port);
        else
            snprintf(p->where, sizeof p->where, "(no host yet)");
        if (t->enabled)
            p->tls_ctx = cb_tls_ctx_new(&p->o.tls, p->opts_err, sizeof p->opts_err);
    }
    if (p->opts_err[0]) set_err(c, CB_CONN_EOPTS, "%s", p->opts_err);
    return c;
oom:
    if (c && p) {
        cb_conn_free(c);
        return NULL;
    }
    free(p);
    free(c);
    return NULL;
}

void cb_conn_free(cb_conn *c) {
    if (!c) return;
    cb_conn_priv *p = c->priv;
    cb_conn_close(c);
    cb_resolve_release(p->inflight);
    cb_tls_ctx_free(p->tls_ctx);
    free(p->out);
    free(p->host);
    free(p->path);
    free(p->user);
    if (p->password) {
        memset(p->password, 0, strlen(p->password));  /* do not leave it in freed memory */
        free(p->password);
    }
    free(p->ca_file);
    free(p->ca_path);
    free(p->cert_file);
    free(p->key_file);
    free(p->server_name);
    free(p);
    free(c);
}

void cb_conn_close(cb_conn *c) {
    cb_conn_priv *p = c->priv;
    cb_tls_free(p->tls);
    p->tls = NULL;
    if (p->fd >= 0) close(p->fd);
    p->fd = -1;
    if (p->reader) redisReaderFree(p->reader);
    p->reader = NULL;
    p->out_pos = p->out_len = 0;
    p->read_wants_write = p->write_wants_read = p->eof = 0;
    p->skip = 0;
}

int cb_conn_set_endpoint(cb_conn *c, const char *host, int port) {
    cb_conn_priv *p = c->priv;
    if (p->path || !host || !host[0] || strlen(host) > 255 || port < 1 || port > 65535)
        return CB_ERR;
    if (p->host && strcmp(host, p->host) == 0 && port == p->o.port) return CB_OK;
    char *h = strdup(host);
    if (!h) return CB_ERR;
    free(p->host);
    p->o.host = p->host = h;
    p->o.port = port;
    p->cache.n = 0;  /* another name's answer */
    snprintf(p->where, sizeof p->where, strchr(h, ':') ? "[%s]:%d" : "%s:%d", h, port);
    return CB_OK;
}

int cb_conn_connected(const cb_conn *c) {
    return c->priv->fd >= 0;
}

int cb_conn_fd(const cb_conn *c) {
    return c->priv->fd;
}

size_t cb_conn_want_write(const cb_conn *c) {
    const cb_conn_priv *p = c->priv;
    return p->fd < 0 ? 0 : (p->out_len - p->out_pos) + (size_t)p->read_wants_write;
}

int cb_conn_pending(const cb_conn *c) {
    const cb_conn_priv *p = c->priv;
    return p->fd >= 0 && (p->eof || (p->tls && cb_tls_pending(p->tls)));
}

const char *cb_conn_where(const cb_conn *c) {
    return c->priv->where;
}

const char *cb_conn_host(const cb_conn *c) {
    return c->priv->path ? NULL : c->priv->host;
}

int cb_conn_port(const cb_conn *c) {
    return c->priv->path || !c->priv->host ? 0 : c->priv->o.port;
}

/* ---- waiting -------------------------------------------------------------------- */

int cb_wait_fd(int fd, short ev, double deadline) {
    for (;;) {
        double left = deadline - mono();
        if (left <= 0) return 0;
        struct pollfd pf = {fd, ev, 0};
        int r = poll(&pf, 1, (int)ceil(left * 1000));
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* ---- the reader, bounded ----------------------------------------------------------
 * hiredis 0.14's reader has no maxelements: "*2000000000" makes it calloc
 * 16 GB at once.  Its object functions see each announcement before
 * anything is allocated, so they count and refuse. */

#if HIREDIS_MAJOR >= 1
typedef size_t nelem_t;  /* 1.x counts elements in a size_t */
#else
typedef int nelem_t;
#endif

static void *bounded_array(const redisReadTask *task, nelem_t elements) {
    cb_conn_priv *p = task->privdata;
    if ((long long)elements < 0) {
        snprintf(p->limit_msg, sizeof p->limit_msg, "a reply announces %lld elements",
                 (long long)elements);
        return NULL;  /* the reader stops with an error */
    }
    if ((size_t)elements > p->o.max_elements - p->announced) {
        snprintf(p->limit_msg, sizeof p->limit_msg,
                 "a reply announces over %zu array elements", p->o.max_elements);
        return NULL;
    }
    p->announced += (size_t)elements;
    return p->base.createArray(task, elements);
}

static void *bounded_string(const redisReadTask *task, char *str, size_t len) {
    cb_conn_priv *p = task->privdata;
    if (len > p->o.max_reply_bytes - p->string_bytes) {
        snprintf(p->limit_msg, sizeof p->limit_msg, "a reply over %zu bytes",
                 p->o.max_reply_bytes);
        return NULL;
    }
    p->string_bytes += len;
    return p->base.createString(task, str, len);
}

static int new_reader(cb_conn_priv *p) {
    p->reader = redisReaderCreate();
    if (!p->reader) return CB_ERR;
    p->base = *p->reader->fn;
    p->fns = p->base;
    p->fns.createArray = bounded_array;
    p->fns.createString = bounded_string;
    p->reader->fn = &p->fns;
    p->reader->privdata = p;
    p->announced = p->string_bytes = 0;
    p->limit_msg[0] = '\0';
    return CB_OK;
}

int cb_conn_get_reply(cb_conn *c, redisReply **out) {
    cb_conn_priv *p = c->priv;
    *out = NULL;
    if (!p->reader) {
        set_err(c, CB_CONN_ECLOSED, "%s: not connected", p->where);
        return CB_ERR;
    }
    void *r = NULL;
    if (redisReaderGetReply(p->reader, &r) != REDIS_OK) {
        if (p->limit_msg[0]) return FAIL(c, CB_CONN_EPROTOCOL, "%s: %s", p->where, p->limit_msg);
        return FAIL(c, CB_CONN_EPROTOCOL, "%s: %s", p->where, p->reader->errstr);
    }
    if (r) {
        p->announced = p->string_bytes = 0;
        *out = r;
        return CB_OK;
    }
    /* What is left is one reply in progress: hiredis keeps a bulk string
     * whole until its last byte. */
    if (p->reader->len - p->reader->pos > p->o.max_reply_bytes)
        return FAIL(c, CB_CONN_EPROTOCOL, "%s: a reply over %zu bytes", p->where,
                    p->o.max_reply_bytes);
    return CB_OK;
}

int cb_conn_drop_big_string(cb_conn *c, size_t limit) {
    cb_conn_priv *p = c->priv;
    redisReader *rd = p->reader;
    if (!rd || rd->len - rd->pos <= limit) return 0;
    /* hiredis has taken the type byte: the task says what it was, and its
     * length ("<len>\r\n") is next */
    if (rd->ridx < 0 || rd->ridx >= 9 || rd->rstack[rd->ridx].type != REDIS_REPLY_STRING)
        return FAIL(c, CB_CONN_EPROTOCOL, "%s: a reply over %zu bytes that is no string",
                    p->where, limit);
    const char *b = rd->buf + rd->pos, *end = rd->buf + rd->len, *d = b;
    unsigned long long len = 0;
    for (; d < end && *d >= '0' && *d <= '9' && d - b < 11; d++)
        len = len * 10 + (unsigned long long)(*d - '0');
    if (d + 1 >= end || d == b || d[0] != '\r' || d[1] != '\n')
        return FAIL(c, CB_CONN_EPROTOCOL, "%s: a string of unreadable length", p->where);
    unsigned long long total = (unsigned long long)(d + 2 - b) + len + 2,
                       have = (unsigned long long)(end - b);
    if (have >= total)  /* whole, yet hiredis did not take it */
        return FAIL(c, CB_CONN_EPROTOCOL, "%s: a string the reader did not take", p->where);
    p->reader = NULL;
    if (new_reader(p) != CB_OK) {  /* hiredis frees the half-built reply with its reader */
        p->reader = rd;
        return FAIL(c, CB_CONN_EOOM, "%s: out of memory", p->where);
    }
    redisReaderFree(rd);
    p->skip = total - have;
    return 1;
}

/* ---- reading and writing -------------------------------------------------------- */

long cb_conn_read(cb_conn *c) {
    cb_conn_priv *p = c->priv;
    if (p->fd < 0) {
        set_err(c, CB_CONN_ECLOSED, "%s: not connected", p->where);
        return CB_ERR;
    }
    if (p->eof) return FAIL(c, CB_CONN_EEOF, "%s: connection closed by the server", p->where);
    char buf[READ_CHUNK];
    long total = 0;
    p->read_wants_write = 0;
    while (total < READ_MAX) {
        long n;
        if (p->tls) {
            int ww = 0;
            char e[128];
            n = cb_tls_read(p->tls, buf, sizeof buf, &ww, e, sizeof e);
            if (n == 0) {
                p->read_wants_write = ww;
                break;
            }
            if (n == -2) return FAIL(c, CB_CONN_EIO, "%s: %s", p->where, e);
        } else {
            n = recv(p->fd, buf, sizeof buf, 0);
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (n < 0) return FAIL(c, CB_CONN_EIO, "%s: read: %s", p->where, strerror(errno));
            if (n == 0) n = -1;
        }
        if (n == -1) {  /* EOF: what came before it is still parsed */
            if (total > 0) {
                p->eof = 1;
                break;
            }
            return FAIL(c, CB_CONN_EEOF, "%s: connection closed by the server", p->where);
        }
        size_t drop = (unsigned long long)n < p->skip ? (size_t)n : (size_t)p->skip;
        p->skip -= drop;  /* the rest of a dropped string */
        if ((size_t)n > drop && redisReaderFeed(p->reader, buf + drop, (size_t)n - drop) != REDIS_OK)
            return FAIL(c, CB_CONN_EOOM, "%s: out of memory", p->where);
        total += n;
        if (!p->tls && (size_t)n < sizeof buf) break;  /* drained */
    }
    return total;
}

int cb_conn_append(cb_conn *c, int argc, const char **argv, const size_t *lens) {
    cb_conn_priv *p = c->priv;
    char *cmd = NULL;
    long long n = redisFormatCommandArgv(&cmd, argc, argv, lens);  /* int in 0.14 */
    if (n < 0) {
        set_err(c, CB_CONN_EOOM, "%s: out of memory", p->where);
        return CB_ERR;
    }
    size_t len = (size_t)n;
    if (p->out_len - p->out_pos + len > p->o.max_out_bytes) {
        free(cmd);
        set_err(c, CB_CONN_EOOM, "%s: over %zu bytes not yet written", p->where,
                p->o.max_out_bytes);
        return CB_ERR;
    }
    if (p->out_pos > 0 && p->out_pos == p->out_len) p->out_pos = p->out_len = 0;
    if (p->out_len + len > p->out_cap) {
        if (p->out_pos > p->out_cap / 2) {  /* compact before growing */
            memmove(p->out, p->out + p->out_pos, p->out_len - p->out_pos);
            p->out_len -= p->out_pos;
            p->out_pos = 0;
        }
        size_t cap = p->out_cap ? p->out_cap : 1024;
        while (cap < p->out_len + len) cap *= 2;
        if (cap != p->out_cap) {
            char *o = realloc(p->out, cap);
            if (!o) {
                free(cmd);
                set_err(c, CB_CONN_EOOM, "%s: out of memory", p->where);
                return CB_ERR;
            }
            p->out = o;
            p->out_cap = cap;
        }
    }
    memcpy(p->out + p->out_len, cmd, len);
    p->out_len += len;
    free(cmd);
    return CB_OK;
}

int cb_conn_flush(cb_conn *c, int *done) {
    cb_conn_priv *p = c->priv;
    *done = 0;
    if (p->fd < 0) {
        set_err(c, CB_CONN_ECLOSED, "%s: not connected", p->where);
        return CB_ERR;
    }
    p->write_wants_read = 0;
    while (p->out_pos < p->out_len) {
        long n;
        size_t left = p->out_len - p->out_pos;
        if (p->tls) {
            int ww = 0;
            char e[128];
            n = cb_tls_write(p->tls, p->out + p->out_pos, left, &ww, e, sizeof e);
            if (n == 0) {
                p->write_wants_read = !ww;
                break;
            }
            if (n < 0) return FAIL(c, CB_CONN_EIO, "%s: %s", p->where, e);
        } else {
            n = send(p->fd, p->out + p->out_pos, left, MSG_NOSIGNAL);  /* no SIGPIPE */
            if (n < 0 && errno == EINTR) continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
            if (n < 0) return FAIL(c, CB_CONN_EIO, "%s: write: %s", p->where, strerror(errno));
        }
        p->out_pos += (size_t)n;
    }
    if (p->out_pos == p->out_len) {
        p->out_pos = p->out_len = 0;
        *done = 1;
    }
    return CB_OK;
}

int cb_conn_flush_until(cb_conn *c, double deadline) {
    cb_conn_priv *p = c->priv;
    for (;;) {
        int done;
        if (cb_conn_flush(c, &done) != CB_OK) return CB_ERR;
        if (done) return CB_OK;
        int w = cb_wait_fd(p->fd, p->write_wants_read ? POLLIN : POLLOUT, deadline);
        if (w == 0)
            return FAIL(c, CB_CONN_ETIMEOUT, "%s: write: no room before the deadline", p->where);
        if (w < 0) return FAIL(c, CB_CONN_EIO, "%s: poll: %s", p->where, strerror(errno));
    }
}

redisReply *cb_conn_read_reply(cb_conn *c, double deadline) {
    cb_conn_priv *p = c->priv;
    for (;;) {
        redisReply *r;
        if (cb_conn_get_reply(c, &r) != CB_OK) return NULL;
        if (r) return r;
        if (!cb_conn_pending(c)) {
            int w = cb_wait_fd(p->fd, p->read_wants_write ? POLLOUT : POLLIN, deadline);
            if (w == 0) {
                (void)FAIL(c, CB_CONN_ETIMEOUT, "%s: no reply before the deadline", p->where);
                return NULL;
            }
            if (w < 0) {
                (void)FAIL(c, CB_CONN_EIO, "%s: poll: %s", p->where, strerror(errno));
                return NULL;
            }
        }
        if (cb_conn_read(c) < 0) return NULL;
    }
}

redisReply *cb_conn_command(cb_conn *c, double deadline, int argc, const char **argv,
                            const size_t *lens) {
    if (c->priv->fd < 0) {
        set_err(c, CB_CONN_ECLOSED, "%s: not connected", c->priv->where);
        return NULL;
    }
    if (cb_conn_append(c, argc, argv, lens) != CB_OK) return NULL;
    if (cb_conn_flush_until(c, deadline) != CB_OK) return NULL;
    return cb_conn_read_reply(c, deadline);
}

/* ---- connecting --------------------------------------------------------------------- */

/* An address for `host` by `deadline`: a numeric one at once, a name through
 * the resolver thread.  A lookup that outlives one connect is waited on
 * again by the next instead of starting another. */
static int resolve(cb_conn *c, double deadline, cb_addrs *out) {
    cb_conn_priv *p = c->priv;
    if (cb_resolve_numeric(p->host, p->o.port, out)) return CB_OK;
    if (p->inflight && !cb_resolve_is_for(p->inflight, p->host, p->o.port)) {
        cb_resolve_release(p->inflight);
        p->inflight = NULL;
    }
    if (!p->inflight) p->inflight = cb_resolve_start(p->host, p->o.port, p->o.resolve,
                                                     p->o.resolve_ud);
    if (!p->inflight) {
        if (p->cache.n) goto cached;
        set_err(c, CB_CONN_ERESOLVE, "resolve %s: %s", p->host, strerror(errno));
        return CB_ERR;
    }
    /* With an earlier answer at hand, a slow name server gets half the time
     * and the connect the rest. */
    double now = mono();
    double until = p->cache.n ? now + (deadline - now) / 2 : deadline;
    char e[128];
    int w = cb_resolve_wait(p->inflight, until, out, e, sizeof e);
    if (w != 0) {
        cb_resolve_release(p->inflight);
        p->inflight = NULL;
    }
    if (w == 1) {
        p->cache = *out;
        return CB_OK;
    }
    if (p->cache.n) goto cached;
    if (w == 0) set_err(c, CB_CONN_ERESOLVE, "resolve %s: no answer before the deadline", p->host);
    else set_err(c, CB_CONN_ERESOLVE, "%s", e);
    return CB_ERR;
cached:
    *out = p->cache;
    return CB_OK;
}

/* A non-blocking socket connected to `sa` by `deadline`, or -1 with the
 * reason in *why (an errno value; ETIMEDOUT for the deadline). */
static int connect_one(const struct sockaddr *sa, socklen_t len, double deadline, int *why) {
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *why = errno;
        return -1;
    }
    if (sa->sa_family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  /* one round trip */
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    }
    int r;
    do r = connect(fd, sa, len);
    while (r < 0 && errno == EINTR);
    if (r == 0) return fd;
    if (errno != EINPROGRESS) {
        *why = errno;
        close(fd);
        return -1;
    }
    int w = cb_wait_fd(fd, POLLOUT, deadline), soerr = 0;
    socklen_t sl = sizeof soerr;
    if (w > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) == 0 && soerr == 0)
        return fd;
    *why = w == 0 ? ETIMEDOUT : soerr ? soerr : errno;
    close(fd);
    return -1;
}

static int open_socket(cb_conn *c, double deadline) {
    cb_conn_priv *p = c->priv;
    int why = 0;
    if (p->path) {
        struct sockaddr_un un;
        memset(&un, 0, sizeof un);
        un.sun_family = AF_UNIX;
        strcpy(un.sun_path, p->path);  /* length checked in cb_conn_new */
        p->fd = connect_one((struct sockaddr *)&un, sizeof un, deadline, &why);
    } else {
        cb_addrs a;
        if (!p->host) {
            set_err(c, CB_CONN_ECONNECT, "connect: no host yet (set_endpoint gives one)");
            return CB_ERR;
        }
        if (resolve(c, deadline, &a) != CB_OK) return CB_ERR;
        /* Each address gets an equal share of the time left, so one that
         * drops packets does not starve the next. */
        for (int i = 0; i < a.n && p->fd < 0; i++) {
            double now = mono();
            p->fd = connect_one((struct sockaddr *)&a.a[i].sa, a.a[i].len,
                                now + (deadline - now) / (a.n - i), &why);
        }
    }
    if (p->fd >= 0) return CB_OK;
    set_err(c, CB_CONN_ECONNECT, "connect %s: %s", p->where,
            why == ETIMEDOUT ? "no answer before the deadline" : strerror(why));
    return CB_ERR;
}

/* AUTH [user] password and SELECT db, pipelined: one round trip. */
static int handshake(cb_conn *c, double deadline) {
    cb_conn_priv *p = c->priv;
    int n = 0;
    char db[16];
    const char *what[2];
    if (p->password || p->user) {
        const char *argv[] = {"AUTH", p->user, p->password ? p->password : ""};
        if (p->user) cb_conn_append(c, 3, argv, NULL);
        else cb_conn_append(c, 2, (const char *[]){"AUTH", p->password}, NULL);
        what[n++] = "AUTH";
    }
    if (p->o.db > 0) {
        snprintf(db, sizeof db, "%d", p->o.db);
        cb_conn_append(c, 2, (const char *[]){"SELECT", db}, NULL);
        what[n++] = "SELECT";
    }
    if (c->err == CB_CONN_EOOM) return FAIL(c, CB_CONN_EOOM, "%s: out of memory", p->where);
    if (n == 0) return CB_OK;
    if (cb_conn_flush_until(c, deadline) != CB_OK) return CB_ERR;
    int ok = 1;
    for (int i = 0; i < n; i++) {
        redisReply *r = cb_conn_read_reply(c, deadline);
        if (!r) return CB_ERR;
        if (r->type == REDIS_REPLY_ERROR && ok) {
            set_err(c, CB_CONN_EAUTH, "%s: %s", what[i], r->str);
            ok = 0;
        }
        freeReplyObject(r);
    }
    if (!ok) cb_conn_close(c);
    return ok ? CB_OK : CB_ERR;
}

int cb_conn_connect(cb_conn *c, double deadline) {
    cb_conn_priv *p = c->priv;
    cb_conn_close(c);
    if (p->opts_err[0]) {
        set_err(c, CB_CONN_EOPTS, "%s", p->opts_err);
        return CB_ERR;
    }
    c->err = 0;
    c->errstr[0] = '\0';
    if (open_socket(c, deadline) != CB_OK) return CB_ERR;
    if (new_reader(p) != CB_OK) return FAIL(c, CB_CONN_EOOM, "%s: out of memory", p->where);
    if (p->tls_ctx) {
        char e[128];
        p->tls = cb_tls_new(p->tls_ctx, p->fd, p->host, e, sizeof e);
        if (!p->tls) return FAIL(c, CB_CONN_ETLS, "%s: %s", p->where, e);
        if (cb_tls_handshake(p->tls, deadline, e, sizeof e) != CB_OK)
            return FAIL(c, CB_CONN_ETLS, "%s: %s", p->where, e);
    }
    return handshake(c, deadline);
}

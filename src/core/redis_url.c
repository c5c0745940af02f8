/* redis_url.c -- redis://, rediss://, unix://, redis+sentinel:// and
 * redis+cluster:// URLs.
 * Error messages quote the parts of the URL they complain about but never
 * the password. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

#define FAIL(...) do { snprintf(err, errcap, __VA_ARGS__); return CB_ERR; } while (0)

/* Parses a decimal integer in [lo, hi] from s[0..n). */
static int parse_int(const char *s, size_t n, long lo, long hi, int *out) {
    if (n == 0 || n > 9) return 0;
    long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return 0;
        v = v * 10 + (s[i] - '0');
    }
    if (v < lo || v > hi) return 0;
    *out = (int)v;
    return 1;
}

/* Where user info at p ends: the last '@' before the first '/', as
 * Python's urllib splits it (a password may hold '@': "redis://:p@ss@host"
 * is host "host"); NULL when there is none. */
static const char *userinfo_end(const char *p) {
    const char *at = NULL;
    for (; *p && *p != '/'; p++)
        if (*p == '@') at = p;
    return at;
}

/* [user]:password@ -- user is a Redis 6 ACL user (AUTH user password);
 * without it AUTH password authenticates the default user. */
static int take_userinfo(const char **p, cb_redis_url *u, char *err, size_t errcap) {
    const char *at = userinfo_end(*p);
    if (!at) return CB_OK;
    const char *colon = memchr(*p, ':', (size_t)(at - *p));
    if (!colon) FAIL("url: user info needs a password (redis://:PASSWORD@host)");
    size_t un = (size_t)(colon - *p);
    if (un >= sizeof u->user) FAIL("url: user name too long");
    size_t n = (size_t)(at - colon - 1);
    if (n >= sizeof u->password) FAIL("url: password too long");
    memcpy(u->user, *p, un);
    u->user[un] = '\0';
    memcpy(u->password, colon + 1, n);
    u->password[n] = '\0';
    *p = at + 1;
    return CB_OK;
}

/* host[:port] or [ipv6][:port], ending at one of `stop` (or the end). */
static int take_hostport(const char **pp, char *host, size_t hostcap, int *port,
                         const char *stop, char *err, size_t errcap) {
    const char *p = *pp, *h = p, *h_end;
    if (*p == '[') {  /* [ipv6] */
        h = p + 1;
        h_end = strchr(h, ']');
        if (!h_end) FAIL("url: unterminated '[' in host");
        p = h_end + 1;
    } else {
        char set[8];
        snprintf(set, sizeof set, ":%s", stop);
        h_end = p + strcspn(p, set);
        p = h_end;
    }
    size_t hn = (size_t)(h_end - h);
    if (hn == 0) FAIL("url: missing host (redis://host:port/db)");
    if (hn >= hostcap) FAIL("url: host too long");
    memcpy(host, h, hn);
    host[hn] = '\0';
    if (*p == ':') {
        p++;
        size_t n = strcspn(p, stop);
        if (!parse_int(p, n, 1, 65535, port))
            FAIL("url: bad port '%.*s' (want 1-65535)", (int)(n > 16 ? 16 : n), p);
        p += n;
    }
    *pp = p;
    return CB_OK;
}

static int parse_tcp(const char *p, cb_redis_url *u, char *err, size_t errcap) {
    if (take_userinfo(&p, u, err, errcap) != CB_OK) return CB_ERR;
    if (take_hostport(&p, u->host, sizeof u->host, &u->port, "/?", err, errcap) != CB_OK)
        return CB_ERR;
    if (*p == '/') {
        p++;
        size_t n = strcspn(p, "?");
        if (n && !parse_int(p, n, 0, 1000000, &u->db))
            FAIL("url: bad database '%.*s' (want a number)", (int)(n > 16 ? 16 : n), p);
        p += n;
    }
    if (*p) FAIL("url: unexpected '%.*s' after the database", 16, p);
    return CB_OK;
}

static int parse_unix(const char *p, cb_redis_url *u, char *err, size_t errcap) {
    if (*p == ':') {  /* unix://:password@/path */
        const char *at = userinfo_end(p);
        if (!at) FAIL("url: expected unix://:PASSWORD@/path");
        size_t n = (size_t)(at - p - 1);
        if (n >= sizeof u->password) FAIL("url: password too long");
        memcpy(u->password, p + 1, n);
        u->password[n] = '\0';
        p = at + 1;
    }
    if (*p != '/') FAIL("url: a unix socket path must be absolute (unix:///path/to/socket)");
    size_t n = strcspn(p, "?");
    if (n >= sizeof u->path) FAIL("url: unix socket path too long");
    memcpy(u->path, p, n);
    u->path[n] = '\0';
    p += n;
    if (*p == '?') {
        p++;
        if (strncmp(p, "db=", 3) != 0) FAIL("url: unknown parameter '%.*s' (only db=N)", 16, p);
        p += 3;
        if (!parse_int(p, strlen(p), 0, 1000000, &u->db))
            FAIL("url: bad database '%.*s' (want a number)", 16, p);
    }
    return CB_OK;
}

/* host[:port][,host[:port]...] after the user info, each port `port` when
 * absent; stops at the first '/' or '?'. */
static int take_seeds(const char **pp, cb_redis_url *u, int port, const char *what, char *err,
                      size_t errcap) {
    if (take_userinfo(pp, u, err, errcap) != CB_OK) return CB_ERR;
    for (;;) {
        if (u->nseeds == CB_URL_SEEDS_MAX) FAIL("url: more than %d %s", CB_URL_SEEDS_MAX, what);
        u->seeds[u->nseeds].port = port;
        if (take_hostport(pp, u->seeds[u->nseeds].host, sizeof u->seeds[0].host,
                          &u->seeds[u->nseeds].port, ",/?", err, errcap) != CB_OK)
            return CB_ERR;
        u->nseeds++;
        if (**pp != ',') return CB_OK;
        (*pp)++;
    }
}

/* host[:port][,host[:port]...]/master[/db], after the scheme. */
static int parse_sentinel(const char *p, cb_redis_url *u, char *err, size_t errcap) {
    if (take_seeds(&p, u, 26379, "sentinels", err, errcap) != CB_OK) return CB_ERR;
    if (*p != '/' || p[1] == '\0' || p[1] == '/')
        FAIL("url: missing master name (redis+sentinel://host:port,host:port/MASTER[/db])");
    p++;
    size_t n = strcspn(p, "/?");
    if (n >= sizeof u->master) FAIL("url: master name too long");
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] <= ' ' || p[i] == 0x7f)
            FAIL("url: bad character in the master name");
    memcpy(u->master, p, n);
    u->master[n] = '\0';
    p += n;
    if (*p == '/') {
        p++;
        n = strcspn(p, "?");
        if (n && !parse_int(p, n, 0, 1000000, &u->db))
            FAIL("url: bad database '%.*s' (want a number)", (int)(n > 16 ? 16 : n), p);
        p += n;
    }
    if (*p) FAIL("url: unexpected '%.*s' after the master name", 16, p);
    return CB_OK;
}

/* host[:port][,host[:port]...][/], after the scheme: a cluster has one
 * database, 0. */
static int parse_cluster(const char *p, cb_redis_url *u, char *err, size_t errcap) {
    u->cluster = 1;
    if (take_seeds(&p, u, 6379, "cluster nodes", err, errcap) != CB_OK) return CB_ERR;
    if (strcmp(p, "/0") == 0 || strcmp(p, "/") == 0) p += strlen(p);
    if (*p) FAIL("url: unexpected '%.*s' after the cluster nodes (a cluster has database 0 "
                 "only)", 16, p);
    return CB_OK;
}

static int parse(const char *url, cb_redis_url *u, char *err, size_t errcap) {
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (!url) FAIL("url: missing");
    if (strlen(url) > 1024) FAIL("url: longer than 1024 bytes");
    if (strncmp(url, "redis://", 8) == 0) return parse_tcp(url + 8, u, err, errcap);
    if (strncmp(url, "rediss://", 9) == 0) {
        u->tls = 1;
        return parse_tcp(url + 9, u, err, errcap);
    }
    if (strncmp(url, "unix://", 7) == 0) {
        u->unix_socket = 1;
        return parse_unix(url + 7, u, err, errcap);
    }
    if (strncmp(url, "redis+sentinel://", 17) == 0) return parse_sentinel(url + 17, u, err, errcap);
    if (strncmp(url, "rediss+sentinel://", 18) == 0) {
        u->tls = 1;
        return parse_sentinel(url + 18, u, err, errcap);
    }
    if (strncmp(url, "redis+cluster://", 16) == 0) return parse_cluster(url + 16, u, err, errcap);
    if (strncmp(url, "rediss+cluster://", 17) == 0) {
        u->tls = 1;
        return parse_cluster(url + 17, u, err, errcap);
    }
    const char *colon = strstr(url, "://");
    if (colon && colon - url < 20)
        FAIL("url: unsupported scheme '%.*s' (use redis://, rediss://, unix://, "
             "redis+sentinel:// or redis+cluster://)", (int)(colon - url), url);
    FAIL("url: expected redis://host:port/db or unix:///path/to/socket");
}

/* 1 when the user info may hold more than the parser took: a '/' or an
 * '@' before the last '@'. */
static int ambiguous(const char *url) {
    if (!url) return 0;
    const char *rest = strstr(url, "://");
    rest = rest ? rest + 3 : url;
    const char *last = strrchr(rest, '@');
    if (!last) return 0;
    size_t n = (size_t)(last - rest);
    return memchr(rest, '/', n) != NULL || memchr(rest, '@', n) != NULL;
}

int cb_redis_url_parse(const char *url, cb_redis_url *u, char *err, size_t errcap) {
    if (parse(url, u, err, errcap) == CB_OK) return CB_OK;
    /* Which part of a URL with user info is the password is a guess when
     * it holds '/' or '@' ("redis://:pa/ss@host" reads as host ":pa"), and
     * the password may be written again later ("redis://:pw@h/pw"): quote
     * nothing of such a URL. */
    char *quote;
    if ((ambiguous(url) || (u->password[0] && strstr(err, u->password))) && errcap > 0 &&
        (quote = strstr(err, " '")) != NULL)
        snprintf(quote, errcap - (size_t)(quote - err), " (not quoted: the URL has user info)");
    return CB_ERR;
}

/* redis_url.c -- redis:// and unix:// URLs.  Error messages quote the parts
 * of the URL they complain about but never the password. */
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

/* [user]:password@ -- Redis 6 ACL users are accepted and ignored: AUTH with
 * the password alone authenticates the default user. */
static int take_userinfo(const char **p, cb_redis_url *u, char *err, size_t errcap) {
    const char *at = strchr(*p, '@');
    const char *slash = strchr(*p, '/');
    if (!at || (slash && slash < at)) return CB_OK;
    const char *colon = memchr(*p, ':', (size_t)(at - *p));
    if (!colon) FAIL("url: user info needs a password (redis://:PASSWORD@host)");
    size_t n = (size_t)(at - colon - 1);
    if (n >= sizeof u->password) FAIL("url: password too long");
    memcpy(u->password, colon + 1, n);
    u->password[n] = '\0';
    *p = at + 1;
    return CB_OK;
}

static int parse_tcp(const char *p, cb_redis_url *u, char *err, size_t errcap) {
    if (take_userinfo(&p, u, err, errcap) != CB_OK) return CB_ERR;
    const char *host = p, *host_end;
    if (*p == '[') {  /* [ipv6] */
        host = p + 1;
        host_end = strchr(host, ']');
        if (!host_end) FAIL("url: unterminated '[' in host");
        p = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/?");
        p = host_end;
    }
    size_t hn = (size_t)(host_end - host);
    if (hn == 0) FAIL("url: missing host (redis://host:port/db)");
    if (hn >= sizeof u->host) FAIL("url: host too long");
    memcpy(u->host, host, hn);
    u->host[hn] = '\0';
    if (*p == ':') {
        p++;
        size_t n = strcspn(p, "/?");
        if (!parse_int(p, n, 1, 65535, &u->port))
            FAIL("url: bad port '%.*s' (want 1-65535)", (int)(n > 16 ? 16 : n), p);
        p += n;
    }
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
        const char *at = strchr(p, '@');
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

int cb_redis_url_parse(const char *url, cb_redis_url *u, char *err, size_t errcap) {
    memset(u, 0, sizeof *u);
    u->port = 6379;
    if (!url) FAIL("url: missing");
    if (strlen(url) > 1024) FAIL("url: longer than 1024 bytes");
    if (strncmp(url, "redis://", 8) == 0) return parse_tcp(url + 8, u, err, errcap);
    if (strncmp(url, "unix://", 7) == 0) {
        u->unix_socket = 1;
        return parse_unix(url + 7, u, err, errcap);
    }
    const char *colon = strstr(url, "://");
    if (colon && colon - url < 16)
        FAIL("url: unsupported scheme '%.*s' (use redis:// or unix://)", (int)(colon - url), url);
    FAIL("url: expected redis://host:port/db or unix:///path/to/socket");
}

/* redis_sentinel.c -- finding the master through Redis Sentinel, the way
 * the Sentinel client guidelines describe: ask each sentinel in turn
 * SENTINEL get-master-addr-by-name, connect to the address, check ROLE;
 * the sentinel that answered goes to the front of the list. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"

typedef struct cb_sentinel_priv {
    int n;
    cb_conn *conns[CB_SENTINELS_MAX];
    int order[CB_SENTINELS_MAX];  /* whom to ask first */
    char master[256];
} cb_sentinel_priv;

void cb_sentinel_opts_init(cb_sentinel_opts *o) {
    memset(o, 0, sizeof *o);
    o->tls.verify = 1;
}

static void set_err(cb_sentinel *s, int code, const char *msg) {
    s->err = code;
    snprintf(s->errstr, sizeof s->errstr, "%s", msg);
}

cb_sentinel *cb_sentinel_new(const cb_sentinel_opts *o) {
    cb_sentinel *s = calloc(1, sizeof *s);
    cb_sentinel_priv *p = calloc(1, sizeof *p);
    if (!s || !p) {
        free(s);
        free(p);
        return NULL;
    }
    s->priv = p;
    if (o->n < 1 || o->n > CB_SENTINELS_MAX) {
        snprintf(s->errstr, sizeof s->errstr, "sentinel: want 1 to %d sentinels, got %d",
                 CB_SENTINELS_MAX, o->n);
        s->err = CB_CONN_EOPTS;
        return s;
    }
    if (!o->master || !o->master[0] || strlen(o->master) >= sizeof p->master) {
        set_err(s, CB_CONN_EOPTS, "sentinel: a master name (up to 255 bytes) is needed");
        return s;
    }
    strcpy(p->master, o->master);
    for (int i = 0; i < o->n; i++) {
        cb_conn_opts co;
        cb_conn_opts_init(&co);
        co.host = o->hosts[i];
        co.port = o->ports[i] ? o->ports[i] : 26379;
        co.user = o->user;
        co.password = o->password;
        co.tls = o->tls;
        co.resolve = o->resolve;
        co.resolve_ud = o->resolve_ud;
        co.max_elements = 64;       /* a sentinel's answers are small */
        co.max_reply_bytes = 65536;
        p->conns[i] = cb_conn_new(&co);
        p->order[i] = i;
        p->n = i + 1;
        if (!p->conns[i]) {
            cb_sentinel_free(s);
            return NULL;
        }
        if (p->conns[i]->err && !s->err) {
            s->err = CB_CONN_EOPTS;
            snprintf(s->errstr, sizeof s->errstr, "sentinel %d: %.100s", i + 1,
                     p->conns[i]->errstr);
        }
    }
    return s;
}

void cb_sentinel_free(cb_sentinel *s) {
    if (!s) return;
    for (int i = 0; i < s->priv->n; i++) cb_conn_free(s->priv->conns[i]);
    free(s->priv);
    free(s);
}

/* The port in r (a string of digits in 1-65535), or 0. */
static int port_of(const redisReply *r) {
    if (r->type != REDIS_REPLY_STRING || r->len < 1 || r->len > 5) return 0;
    int v = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9') return 0;
        v = v * 10 + (r->str[i] - '0');
    }
    return v >= 1 && v <= 65535 ? v : 0;
}

int cb_sentinel_master_addr(cb_sentinel *s, double deadline, char *host, size_t hostcap,
                            int *port) {
    cb_sentinel_priv *p = s->priv;
    if (s->err == CB_CONN_EOPTS) return CB_ERR;
    char last[128] = "";
    for (int i = 0; i < p->n; i++) {
        int k = p->order[i];
        cb_conn *c = p->conns[k];
        double now = cb_clock_monotonic(NULL);
        if (now >= deadline) break;
        double until = now + (deadline - now) / (p->n - i);  /* a fair share each */
        if (cb_conn_connect(c, until) != CB_OK) {
            snprintf(last, sizeof last, "%s", c->errstr);
            continue;
        }
        const char *argv[] = {"SENTINEL", "get-master-addr-by-name", p->master};
        redisReply *r = cb_conn_command(c, until, 3, argv, NULL);
        if (!r) {
            snprintf(last, sizeof last, "%s", c->errstr);
            continue;
        }
        cb_conn_close(c);  /* asked again only after the next failure */
        int ok = r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
                 r->element[0]->type == REDIS_REPLY_STRING && r->element[0]->len > 0 &&
                 r->element[0]->len < hostcap &&
                 !memchr(r->element[0]->str, '\0', r->element[0]->len) &&
                 port_of(r->element[1]);
        if (ok) {
            memcpy(host, r->element[0]->str, r->element[0]->len + 1);
            *port = port_of(r->element[1]);
            for (int j = i; j > 0; j--) p->order[j] = p->order[j - 1];
            p->order[0] = k;
        } else if (r->type == REDIS_REPLY_NIL) {
            snprintf(last, sizeof last, "%s does not know master '%.40s'", cb_conn_where(c),
                     p->master);
        } else {
            snprintf(last, sizeof last, "%s: %s", cb_conn_where(c),
                     r->type == REDIS_REPLY_ERROR ? r->str : "an answer that is no address");
        }
        freeReplyObject(r);
        if (ok) {
            s->err = 0;
            s->errstr[0] = '\0';
            return CB_OK;
        }
    }
    s->err = CB_CONN_EROLE;
    snprintf(s->errstr, sizeof s->errstr, "sentinel: no master address: %.96s",
             last[0] ? last : "no time left");
    return CB_ERR;
}

int cb_sentinel_connect(cb_sentinel *s, cb_conn *c, double deadline) {
    char host[256];
    int port;
    cb_conn_close(c);
    if (cb_sentinel_master_addr(s, deadline, host, sizeof host, &port) != CB_OK) return CB_ERR;
    return cb_sentinel_connect_at(s, c, host, port, deadline);
}

int cb_sentinel_connect_at(cb_sentinel *s, cb_conn *c, const char *host, int port,
                           double deadline) {
    cb_conn_close(c);
    if (cb_conn_set_endpoint(c, host, port) != CB_OK) {
        set_err(s, CB_CONN_EOPTS, "sentinel: the master is not reached over TCP");
        return CB_ERR;
    }
    if (cb_conn_connect(c, deadline) != CB_OK) {
        s->err = c->err;
        snprintf(s->errstr, sizeof s->errstr, "sentinel: master %.100s", c->errstr);
        return CB_ERR;
    }
    /* A sentinel's answer can be stale (a failover under way): the
     * server itself must say it is the master. */
    redisReply *r = cb_conn_command(c, deadline, 1, (const char *[]){"ROLE"}, NULL);
    if (!r) {
        s->err = c->err;
        snprintf(s->errstr, sizeof s->errstr, "sentinel: master %.100s", c->errstr);
        return CB_ERR;
    }
    int ok = r->type == REDIS_REPLY_ARRAY && r->elements >= 1 &&
             r->element[0]->type == REDIS_REPLY_STRING && strcmp(r->element[0]->str, "master") == 0;
    if (!ok) {
        s->err = CB_CONN_EROLE;
        if (r->type == REDIS_REPLY_ERROR)
            snprintf(s->errstr, sizeof s->errstr, "sentinel: ROLE on %s: %s", cb_conn_where(c),
                     r->str);
        else
            snprintf(s->errstr, sizeof s->errstr, "sentinel: %s is not a master (yet)",
                     cb_conn_where(c));
        cb_conn_close(c);
    }
    freeReplyObject(r);
    return ok ? CB_OK : CB_ERR;
}

int cb_sentinel_parse_switch(const cb_sentinel *s, const redisReply *r, char *host,
                             size_t hostcap, int *port) {
    /* ["message", "+switch-master", "<name> <old ip> <old port> <new ip> <new port>"] */
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3) return 0;
    for (int i = 0; i < 3; i++)
        if (r->element[i]->type != REDIS_REPLY_STRING) return 0;
    if (strcmp(r->element[0]->str, "message") != 0 ||
        strcmp(r->element[1]->str, "+switch-master") != 0 || r->element[2]->len > 1024)
        return 0;
    char name[256], oldh[256], newh[256];
    int oldp, newp;
    if (sscanf(r->element[2]->str, "%255s %255s %d %255s %d", name, oldh, &oldp, newh,
               &newp) != 5 ||
        strcmp(name, s->priv->master) != 0 || newp < 1 || newp > 65535 ||
        strlen(newh) >= hostcap)
        return 0;
    strcpy(host, newh);
    *port = newp;
    return 1;
}

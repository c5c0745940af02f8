/* redis_cluster.c -- routing in a Redis Cluster: the hash slot of a key
 * (CRC16/XMODEM mod 16384 of the key or of its first non-empty {tag}, as
 * the cluster specification defines it), the master that serves a slot
 * (CLUSTER SLOTS, asked of the seeds in turn), and the MOVED / ASK
 * redirections a node answers with. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"

/* CRC16, polynomial 0x1021, initial value 0 (XMODEM), bit by bit: keys
 * are short and this runs once per command, not per byte of traffic. */
static unsigned crc16(const char *s, size_t n) {
    unsigned crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (unsigned)(unsigned char)s[i] << 8;
        for (int k = 0; k < 8; k++) crc = crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1;
        crc &= 0xffff;
    }
    return crc;
}

unsigned cb_cluster_keyslot(const char *key, size_t len) {
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t from = (size_t)(open - key) + 1;
        const char *close = memchr(open + 1, '}', len - from);
        if (close && close > open + 1)  /* "{}" is no tag: the whole key counts */
            return crc16(open + 1, (size_t)(close - open - 1)) & 16383;
    }
    return crc16(key, len) & 16383;
}

int cb_cluster_redirect(const redisReply *r, int *slot, char *host, size_t hostcap, int *port) {
    /* "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>"; the host
     * may be an IPv6 address (the port follows the last ':') or empty (the
     * node that answered). */
    if (!r || r->type != REDIS_REPLY_ERROR || r->len > 600) return 0;
    int kind = strncmp(r->str, "MOVED ", 6) == 0 ? CB_CLUSTER_MOVED
               : strncmp(r->str, "ASK ", 4) == 0 ? CB_CLUSTER_ASK : 0;
    if (!kind) return 0;
    const char *p = r->str + (kind == CB_CLUSTER_MOVED ? 6 : 4);
    char *end;
    long s = strtol(p, &end, 10);
    if (end == p || *end != ' ' || s < 0 || s > 16383) return 0;
    const char *addr = end + 1, *colon = strrchr(addr, ':');
    if (!colon) return 0;
    long pt = strtol(colon + 1, &end, 10);
    size_t hn = (size_t)(colon - addr);
    if (end == colon + 1 || *end != '\0' || pt < 1 || pt > 65535 || hn >= hostcap ||
        memchr(addr, ' ', hn))
        return 0;
    memcpy(host, addr, hn);
    host[hn] = '\0';
    *slot = (int)s;
    *port = (int)pt;
    return kind;
}

/* ---- the slot's master ---------------------------------------------------------- */

void cb_cluster_init(cb_cluster *k) {
    memset(k, 0, sizeof *k);
}

int cb_cluster_add_seed(cb_cluster *k, const char *host, int port) {
    if (k->n == CB_CLUSTER_SEEDS_MAX || !host || strlen(host) >= sizeof k->seeds[0].host)
        return CB_ERR;
    strcpy(k->seeds[k->n].host, host);  /* length checked above */
    k->seeds[k->n].port = port;
    k->n++;
    return CB_OK;
}

/* err = code, errstr = "cluster: " what [": " detail], cut to fit. */
static void set_err(cb_cluster *k, int code, const char *what, const char *detail) {
    char buf[2 * sizeof k->errstr];
    k->err = code;
    snprintf(buf, sizeof buf, "cluster: %s%s%s", what, detail ? ": " : "", detail ? detail : "");
    snprintf(k->errstr, sizeof k->errstr, "%.*s", (int)sizeof k->errstr - 1, buf);
}

/* The master of `slot` in a CLUSTER SLOTS reply, asked of `c`:
 * [[first, last, [host, port, id, ...], replicas...], ...].  A host ""
 * is c's own; "?" (no known endpoint) is none. */
static int slot_master(const redisReply *r, unsigned slot, const cb_conn *c, char *host,
                       size_t hostcap, int *port) {
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            (long long)slot < e->element[0]->integer || (long long)slot > e->element[1]->integer)
            continue;
        const redisReply *m = e->element[2];
        if (m->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
            m->element[0]->type != REDIS_REPLY_STRING || m->element[1]->type != REDIS_REPLY_INTEGER ||
            m->element[1]->integer < 1 || m->element[1]->integer > 65535)
            return 0;
        const redisReply *a = m->element[0];
        if (memchr(a->str, '\0', a->len)) return 0;
        const char *h = a->len ? a->str : cb_conn_host(c);
        if (!h || strcmp(h, "?") == 0 || strlen(h) >= hostcap) return 0;
        strcpy(host, h);
        *port = (int)m->element[1]->integer;
        return 1;
    }
    return 0;
}

/* Asks the seed `i` which master serves `slot`, by `until`. */
static int ask_seed(cb_cluster *k, int i, cb_conn *c, unsigned slot, double until, char *host,
                    size_t hostcap, int *port) {
    if (cb_conn_set_endpoint(c, k->seeds[i].host, k->seeds[i].port) != CB_OK) {
        set_err(k, CB_CONN_EOOM, "out of memory", NULL);
        return CB_ERR;
    }
    if (cb_conn_connect(c, until) != CB_OK) {
        set_err(k, c->err, c->errstr, NULL);
        return CB_ERR;
    }
    redisReply *r = cb_conn_command(c, until, 2, (const char *[]){"CLUSTER", "SLOTS"}, NULL);
    if (!r) {
        set_err(k, c->err, c->errstr, NULL);
        return CB_ERR;
    }
    int ok = r->type == REDIS_REPLY_ARRAY && slot_master(r, slot, c, host, hostcap, port);
    if (!ok) {
        char what[128];
        snprintf(what, sizeof what, "CLUSTER SLOTS on %s", cb_conn_where(c));
        set_err(k, CB_CONN_EROLE, what,
                r->type == REDIS_REPLY_ERROR ? r->str : "no master serves the slot (cluster down?)");
    }
    freeReplyObject(r);
    return ok ? CB_OK : CB_ERR;
}

int cb_cluster_connect(cb_cluster *k, cb_conn *c, unsigned slot, double deadline) {
    cb_conn_close(c);
    k->err = 0;
    k->errstr[0] = '\0';
    if (k->owner.port && k->guesses > 0) {  /* a wrong guess answers MOVED or fails */
        k->guesses--;
        double now = cb_clock_monotonic(NULL);
        if (cb_conn_set_endpoint(c, k->owner.host, k->owner.port) == CB_OK &&
            cb_conn_connect(c, now + (deadline - now) / 2) == CB_OK) {
            k->err = 0;
            return CB_OK;
        }
        set_err(k, c->err, c->errstr, NULL);
        k->owner.port = 0;
    }
    k->guesses = 0;
    for (int i = 0; i < k->n; i++) {
        double now = cb_clock_monotonic(NULL);
        if (now >= deadline) break;
        char host[256];
        int port;
        if (ask_seed(k, i, c, slot, now + (deadline - now) / (k->n - i), host, sizeof host,
                     &port) != CB_OK)
            continue;
        k->moved = 0;
        cb_cluster_node answered = k->seeds[i];  /* asked first next time */
        memmove(&k->seeds[1], &k->seeds[0], (size_t)i * sizeof k->seeds[0]);
        k->seeds[0] = answered;
        if (strcmp(host, answered.host) != 0 || port != answered.port) {
            if (cb_conn_set_endpoint(c, host, port) != CB_OK || cb_conn_connect(c, deadline) != CB_OK) {
                set_err(k, c->err ? c->err : CB_CONN_EOPTS, "the slot's master",
                        c->err ? c->errstr : "an address that is no host");
                cb_conn_close(c);
                return CB_ERR;
            }
        }
        strcpy(k->owner.host, host);
        k->owner.port = port;
        k->guesses = 1;  /* the attempt's other connection */
        k->err = 0;
        k->errstr[0] = '\0';
        return CB_OK;
    }
    if (!k->err) set_err(k, CB_CONN_ETIMEOUT, "no seed answered", "no time left");
    cb_conn_close(c);
    return CB_ERR;
}

void cb_cluster_moved(cb_cluster *k, const cb_conn *c, const char *host, int port) {
    const char *h = host && host[0] ? host : cb_conn_host(c);
    if (h && k->guesses == 2 && k->owner.port == port && strcmp(k->owner.host, h) == 0)
        return;  /* another reply of the same batch: one redirection */
    k->guesses = 0;
    if (!h || strlen(h) >= sizeof k->owner.host || ++k->moved > CB_CLUSTER_MOVED_MAX) return;
    strcpy(k->owner.host, h);
    k->owner.port = port;
    k->guesses = 2;  /* both connections of the next attempt */
}

redisReply *cb_cluster_asking(cb_conn *via, const cb_conn *from, const char *host, int port,
                              double deadline, int argc, const char **argv, const size_t *lens) {
    const char *h = host && host[0] ? host : cb_conn_host(from);
    cb_conn_close(via);
    if (!h || cb_conn_set_endpoint(via, h, port) != CB_OK) {
        via->err = CB_CONN_EOPTS;
        snprintf(via->errstr, sizeof via->errstr, "ASK named no usable node");
        return NULL;
    }
    redisReply *asking = NULL, *r = NULL;
    if (cb_conn_connect(via, deadline) == CB_OK &&  /* pipelined: one round trip */
        cb_conn_append(via, 1, (const char *[]){"ASKING"}, NULL) == CB_OK &&
        cb_conn_append(via, argc, argv, lens) == CB_OK &&
        cb_conn_flush_until(via, deadline) == CB_OK &&
        (asking = cb_conn_read_reply(via, deadline)) != NULL)
        r = cb_conn_read_reply(via, deadline);
    if (r && asking->type == REDIS_REPLY_ERROR) {  /* NOPERM: the user lacks +asking */
        freeReplyObject(r);
        r = asking;
        asking = NULL;
    }
    freeReplyObject(asking);
    cb_conn_close(via);  /* one-shot: a migration is short, and the slot's owner is elsewhere */
    return r;
}

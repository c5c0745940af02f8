/* redis_cluster.c -- what routing in a Redis Cluster rests on: the hash
 * slot of a key (CRC16/XMODEM mod 16384 of the key or of its first
 * non-empty {tag}, as the cluster specification defines it) and the
 * MOVED / ASK redirections a node answers with. */
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

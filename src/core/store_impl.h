/* store_impl.h -- the store's pure parts, apart from any connection: the
 * channel message codec (message.c) and the URL parser (redis_url.c).
 * Internal to the core (tests/test_store.c uses them too); never installed. */
#ifndef CB_STORE_IMPL_H
#define CB_STORE_IMPL_H

#include <stddef.h>

#include "cbreaker_redis.h"

/* ---- channel messages (the JSON existing services publish) -----------------
 * {"serviceId":"x","state":"open"|"closed","ts":<ms>,"forcedOpen":bool,
 *  "recovered":bool} plus our own optional fields: "origin" (the instance
 * that sent it, to skip one's own messages) and "retryAfterMs" (how long an
 * open state has left, so a peer opens for as long, not for its own timeout)
 * and "seq" (orders one origin's messages, so a replayed one is refused).
 * Other fields are allowed and ignored, as existing services send them. */

#define CB_MESSAGE_MAX 4096  /* bytes; a longer channel message is malformed */
#define CB_NAME_MAX 256      /* a serviceId this long or longer is malformed */
#define CB_ORIGIN_MAX 64

typedef struct cb_message {
    char service_id[CB_NAME_MAX];
    char origin[CB_ORIGIN_MAX];  /* "" when absent (another service's message) */
    unsigned char open;          /* state "open" (else "closed") */
    unsigned char forced_open;
    unsigned char recovered;
    double ts;                   /* ms since the epoch on the sender's clock; 0 if absent */
    double retry_after_ms;       /* < 0 when absent */
    double seq;                  /* grows with every message of its origin (epoch us, or
                                    one more than the last); 0 when absent */
} cb_message;

/* Encodes `m` as JSON into buf (NUL-terminated).  Returns the length, or -1
 * when it does not fit or out of memory. */
int cb_message_encode(const cb_message *m, char *buf, size_t cap);

/* Decodes `len` bytes at `s` into `m`.  Returns NULL, or a static message
 * saying why the input is malformed ("not JSON", "serviceId missing" ...). */
const char *cb_message_decode(const char *s, size_t len, cb_message *m);

/* ---- signatures ------------------------------------------------------------
 * With a shared secret, a message is the unsigned JSON `B` (ending in '}')
 * with `,"sig":"<64 hex>"` inserted before that last '}', the hex being
 * HMAC-SHA256(secret, B) over B's exact bytes.  An unsigned peer reads it as
 * the plain JSON with one extra field, which that format allows. */

#define CB_SIG_SUFFIX_LEN 74  /* strlen(",\"sig\":\"<64 hex>\"}"), replacing the body's "}" */

/* Signs the message json[len] in place (json must end in '}' and have
 * room for CB_SIG_SUFFIX_LEN more bytes and the NUL in cap).  Returns the
 * new length, or -1 when it does not fit or libcrypto failed. */
int cb_message_sign(char *json, size_t len, size_t cap, const unsigned char *key,
                    size_t keylen);

typedef enum cb_sig_check {
    CB_SIG_OK = 0,
    CB_SIG_MISSING,  /* no trailing "sig" field */
    CB_SIG_BAD       /* a "sig" that does not match */
} cb_sig_check;

/* Checks the signature of s[len] in constant time over the hex. */
cb_sig_check cb_message_verify(const char *s, size_t len, const unsigned char *key,
                               size_t keylen);

/* What a message asks of a peer's breaker. */
cb_peer_state cb_message_peer_state(const cb_message *m);

/* ---- URLs --------------------------------------------------------------------
 * redis://[[user]:password@]host[:port][/db]   (host may be [ipv6])
 * rediss://...                                 the same over TLS
 * unix://[:password@]/path/to/socket[?db=N]
 * redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db]
 * rediss+sentinel://...                        sentinels and master over TLS
 * redis+cluster://[[user]:password@]host[:port][,host[:port]...][/]
 * rediss+cluster://...                         a Redis Cluster's seed nodes
 * (the sentinel form is the one Python's redis-sentinel-url and Prefect
 * spell; sentinel ports default to 26379, cluster nodes' to 6379; user and
 * password are the master's, or every cluster node's).                       */

#define CB_URL_SEEDS_MAX 8

typedef struct cb_redis_url {
    int unix_socket;
    char host[256];
    int port;               /* 6379 when absent */
    char path[108];         /* unix socket path (sun_path's size) */
    int db;                 /* 0 when absent */
    char password[256];     /* "" when absent */
    char user[128];         /* ACL user, "" when absent (AUTH password alone) */
    int tls;                /* rediss://, rediss+sentinel:// or rediss+cluster:// */
    int cluster;            /* redis+cluster://: the seeds are cluster nodes */
    int nseeds;             /* > 0: the sentinels, or the cluster's seed nodes; host
                               and port unused */
    struct {
        char host[256];
        int port;
    } seeds[CB_URL_SEEDS_MAX];
    char master[128];       /* the name the sentinels monitor */
} cb_redis_url;

/* Parses `url` into `u`, every form above.  Returns CB_OK, or CB_ERR with a
 * message in `err` that never contains the password. */
int cb_redis_url_parse(const char *url, cb_redis_url *u, char *err, size_t errcap);


/* ---- replies ------------------------------------------------------------------
 * What the store makes of a Redis reply, apart from the connection that got
 * it: for the fuzzer (fuzz/fuzz_store_reply.c) and the C tests. */

struct redisReply;

typedef enum cb_reply_kind {
    CB_REPLY_SUBSCRIPTION = 0,  /* a reply on the subscription (["message", ch, payload]) */
    CB_REPLY_BOOT_HASH,         /* HGETALL of the boot-recovery hash, on (re)connecting */
    CB_REPLY_BOOT_ENTRY,        /* HGET of one name's entry, on attaching */
    CB_REPLY_FLEET,             /* the script's {state, ms left} for breaker b (shared) */
    CB_REPLY_KIND_COUNT
} cb_reply_kind;

/* Interprets `r` as a reply of `kind` would be, applying what it says to
 * the attached breakers (b: the one the reply is for, CB_REPLY_FLEET only).
 * Returns the messages applied, or CB_ERR (bad options, NULL r, b not
 * attached).  Does no I/O of its own: disconnected, what breakers publish in
 * response is kept to send after reconnecting, as usual. */
int cb_store_interpret(cb_store *s, cb_reply_kind kind, const struct redisReply *r,
                       cb_breaker *b);

#endif

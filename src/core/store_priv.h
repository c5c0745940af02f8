/* store_priv.h -- what the store's files share (store_redis.c: options,
 * attachments, publishing, applying peers' messages, connecting and
 * polling; store_peers.c: reading peers that never publish; store_shared.c:
 * shared mode's script client).  Private to them; the transport is
 * redis_conn.h, the wire formats store_impl.h. */
#ifndef CB_STORE_PRIV_H
#define CB_STORE_PRIV_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "breaker_impl.h"
#include "cbreaker_redis.h"
#include "hashtab.h"
#include "redis_conn.h"
#include "replay_guard.h"
#include "store_impl.h"

#define KEY_MAX (128 + CB_NAME_MAX + 16)  /* prefix, name, field */
#define MAX_PENDING 1024   /* replies owed on cmd before Redis counts as stuck */
#define POLL_EVERY 0.05    /* seconds between automatic polls */
#define READS_PER_POLL 16  /* bounded work per poll */
#define SUB_BUF_MAX 65536  /* unparsed subscription bytes: one message can be 4 KiB */
#define SECRET_MIN 16
#define SECRET_MAX 1024
#define READ_NAMES_MAX 1024  /* names per peer read: bounded work per tick */
#define SUB_SKEW_MS 1000     /* clock skew allowed to a message sent as we subscribed */

enum { UNSENT_NONE = 0, UNSENT_STATE, UNSENT_RECOVERED };
enum { INFLIGHT_READ = UNSENT_RECOVERED + 1 };  /* a peer read, not an event */

typedef struct attach {
    cb_hnode h;           /* first: the table links attachments as nodes */
    cb_breaker *b;
    struct cb_store_priv *p;
    uint64_t hash;        /* of the breaker's name */
    uint8_t from_peer;    /* its current open state was a peer's */
    uint8_t unsent;       /* a local event not yet published (UNSENT_*) */
    uint8_t seen;         /* reconcile: named in the boot hash */
    uint8_t from_keys;    /* ... and learnt from the per-field keys alone */
    double own_until;     /* open_until (epoch ms) our last open wrote, to know it read back */
    uint64_t seq;         /* the store's seq at this breaker's last transition */
} attach;

/* A read of the per-field keys of some names (peers that never publish,
 * such as a pybreaker service): sent as one script call, applied once its reply
 * came, by poll, never halfway through another breaker's call. */
typedef struct peer_read {
    struct peer_read *next;  /* the ready list */
    uint64_t seq;            /* the store's seq when sent: later transitions win */
    int tick;                /* the periodic read (else an attach's) */
    size_t n;                /* names */
    struct redisReply *reply;
    char names[];            /* n NUL-terminated names */
} peer_read;

/* A write whose reply is still owed: if it fails, or the connection drops
 * before the reply, the event is sent again after reconnecting (at least
 * once: a `recovered` lost with a dying server must not leave peers stuck). */
typedef struct inflight {
    attach *a;      /* NULL once detached */
    peer_read *rd;  /* INFLIGHT_READ: owned here until its reply comes */
    uint8_t what;   /* UNSENT_*, INFLIGHT_READ */
} inflight;

typedef struct cb_store_priv {
    cb_store *pub;
    cb_store_mode mode;
    cb_redis_url url;
    char *prefix, *channel; /* prefix: "{prefix}" with hash_tag */
    unsigned char *secret;  /* NULL: plain, unsigned messages */
    size_t secret_len;
    double replay_window;   /* ms */
    cb_replay_guard *guard; /* with a secret: the last message applied per origin and name */
    double subscribed_at;   /* wall ms of the last SUBSCRIBE: pub/sub keeps no backlog */
    double last_seq;        /* the seq of our last message */
    uint64_t replayed;
    char id[CB_ORIGIN_MAX];
    double timeout, ttl, backoff_min, backoff_max;  /* seconds */
    uint32_t quorum;
    cb_clock clock;
    cb_conn *cmd, *sub;     /* made once, (re)connected by try_connect */
    cb_conn *asking;        /* url.cluster: a command that met ASK, sent where it names */
    cb_sentinel *sentinel;  /* redis+sentinel://: asked for the master on every connect */
    cb_cluster cluster;     /* url.cluster: cmd and sub go to the owner of `slot` */
    unsigned slot;          /* the hash slot of the prefix: every key's */
    unsigned pending;     /* replies owed on cmd: the inflight ring's length */
    unsigned head;        /* the ring's first entry */
    inflight ring[MAX_PENDING];
    int unflushed;        /* cmd has bytes the socket did not take yet */
    int broken;           /* an error reply to a write asks for a reconnect */
    int connected, ever_connected, in_poll;
    double backoff, next_attempt, last_poll;
    const cb_breaker *budget_b;  /* the breaker call whose I/O shares one deadline */
    uint64_t budget_seq;
    double budget_deadline;
    char sha[41];
    cb_htab attached;     /* attach, by name: several may share one */
    uint64_t k0, k1;      /* its SipHash key */
    char last_error[128];
    uint64_t reconnects, failures, published, received, applied, own, malformed,
        dropped, unsigned_msgs, bad_signature, stale;
    /* peer reads */
    double peer_read, last_read;  /* seconds between reads (0: off); last one sent */
    int reading;                  /* a tick's read awaits its reply */
    size_t read_cursor;           /* bucket the next tick's read starts at */
    uint64_t seq;                 /* bumped on every transition of an attached breaker */
    peer_read *ready;             /* replies to apply */
    uint64_t peer_unparsed;       /* per-field values ignored: not a state or time */
    uint64_t peer_wrongtype;      /* per-field keys of another type than string */
    int applying_keys;            /* apply_keys is changing a breaker */
    char read_sha[41];            /* the peer read's script */
} cb_store_priv;

enum { K_STATE, K_COUNTER, K_OPENED_AT, K_OPEN_UNTIL, K_SUCCESSES, K_LEASE, K_TRIPPED,
       K_FORCED, K_STATES, K_FORCED_NAMES, K_COUNT };
extern const char *const store_key_fields[];  /* the per-field keys' last part, by K_ */

/* EVALSHA sha 10, the ten keys, then op name ttl channel and the op's own. */
typedef struct script_call {
    const char *argv[32];
    size_t lens[32];
    int argc;
    char keys[K_COUNT][KEY_MAX];
    char ttl[32];
} script_call;

/* ---- store_redis.c ----------------------------------------------------------- */

double store_now_of(const cb_store_priv *p);
double store_wall_ms(void);
uint64_t store_hash_name(const cb_store_priv *p, const char *s);
void store_note_error(cb_store_priv *p, const char *what, const char *detail);
void store_ring_pop(cb_store_priv *p, int ok);
void store_drop(cb_store_priv *p);
redisReply *store_command(cb_store_priv *p, cb_conn *c, double deadline, int argc,
                          const char **argv, const size_t *lens);
int store_command_async(cb_store_priv *p, attach *a, int what, int argc, const char **argv,
                        const size_t *lens);
attach *store_first_named(cb_store_priv *p, const char *name, uint64_t h);
void store_each_named(cb_store_priv *p, const char *name, uint64_t h,
                      void (*fn)(cb_store_priv *p, attach *a, void *ud), void *ud);
void store_call_init(cb_store_priv *p, script_call *sc, const char *op, const char *name);
void store_call_arg(script_call *sc, const char *s);
void store_call_lens(script_call *sc);
void store_announce(cb_store_priv *p, attach *a, int what);
int store_authentic(cb_store_priv *p, const redisReply *v);
double store_call_deadline(cb_store_priv *p, const cb_breaker *b, uint64_t seq);
uint64_t store_allow_seq(const cb_breaker *b);
uint64_t store_record_seq(const cb_breaker *b);

/* ---- store_peers.c: reading peers that never publish ------------------------------ */

/* A peer read's values for one name, in its reply. */
enum { RV_STATE, RV_OPENED_AT, RV_OPEN_UNTIL, RV_FORCED, RV_ENTRY, RV_COUNT };

/* What one name's per-field keys say. */
typedef enum keys_say {
    KEYS_CLOSED,  /* closed, or no state: the keys are gone */
    KEYS_NONE,    /* nothing to apply: a probe, an open already over, a value we cannot read */
    KEYS_OWN,     /* the open this store itself wrote last */
    KEYS_OPEN,
    KEYS_FORCED
} keys_say;

void store_free_reads(cb_store_priv *p);
int store_read_reply_ok(cb_store_priv *p, const redisReply *r, size_t n);
void store_read_done(cb_store_priv *p, redisReply *r);
const char **store_read_argv(cb_store_priv *p, const char *names, size_t n, int *argc,
                             char *numkeys, size_t numkeys_cap);
void store_read_tick(cb_store_priv *p);
int store_force_signed(cb_store_priv *p, const char *name, const redisReply *entry);
keys_say store_keys_verdict(cb_store_priv *p, const char *name, const redisReply *const *v,
                            double timeout, double own_until, double *left_s);
void store_apply_reads(cb_store_priv *p);
void store_read_one(cb_store_priv *p, const char *name);

/* ---- store_shared.c: shared mode --------------------------------------------------- */

void store_follow_fleet(attach *a, const redisReply *r);
void store_shared_trip(cb_store_priv *p, attach *a);
void store_hook_record(void *ud, cb_breaker *b, cb_outcome outcome);
int store_hook_admit(void *ud, cb_breaker *b);

#endif

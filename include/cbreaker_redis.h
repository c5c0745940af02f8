/*
 * cbreaker_redis.h -- the Redis store: breaker state shared between
 * processes.  Needs hiredis, cJSON and libcrypto at link time (pkg-config
 * --static --libs cbreaker lists them); absent from a build configured with
 * -DCB_WITH_REDIS=OFF.  Conventions as in cbreaker.h.
 */
#ifndef CBREAKER_REDIS_H
#define CBREAKER_REDIS_H

#include "cbreaker.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- store ------------------------------------------------------------- */

/* A store shares breaker state between processes through Redis.  Attached
 * breakers keep working on local state whatever Redis does; no store call
 * blocks longer than the timeout, and after a failure no call blocks again
 * until a back-off has elapsed.
 *
 * Keys: <prefix>:<name>:state|counter|opened_at|open_until|successes|lease|
 * tripped|forced, the boot-recovery hash <prefix>:states (field = name,
 * value = the channel message) and the set <prefix>:forced, all with a TTL
 * but a force's: it lasts until a reset (so does the hash while it holds
 * one).  Channel messages are the pub/sub manager's JSON, so services that
 * speak it share the channel:
 * {"serviceId","state":"open"|"closed","ts","forcedOpen","recovered"} plus
 * "origin" (the sending instance), "retryAfterMs" and "seq" (grows with
 * every message of one origin).
 *
 * The rules that keep a fleet from re-opening itself: only local decisions
 * are published (a state applied from a peer never is, so no instance
 * re-publishes a stale force-open);
 * cb_breaker_reset always publishes `recovered` and deletes the boot entry,
 * also when the breaker was closed already; `recovered` clears a peer's
 * state, forced-open included; a plain `closed` never clears a forced-open.
 * Writes that fail or find Redis down are sent again after reconnecting.
 *
 * A peer cannot grow an instance's memory: messages are applied to attached
 * breakers only (nothing is kept for other names), at most 4096 bytes each,
 * and a channel message over 64 KiB is dropped as it arrives (counted
 * malformed; the connection is kept, so publishing huge messages cannot
 * disconnect anyone).  With
 * a secret, messages carry "sig" (see opts.secret); in shared mode the
 * script, which never sees the secret, then publishes nothing itself and
 * the instance whose call changed the fleet's state announces it, signed.
 *
 * Thread safety: a store and its attached breakers are one object: use them
 * from one thread at a time. */

typedef enum cb_store_mode {
    CB_STORE_BROADCAST = 0,  /* local counting; transitions published, no I/O on the hot path */
    CB_STORE_SHARED          /* the fleet's counts and transitions in Redis (its TIME), one
                                EVALSHA round trip per recorded outcome; half-open admits one
                                probe fleet-wide (a SET NX PX lease); each instance still
                                trips on its own counts */
} cb_store_mode;

CB_API extern const char *const cb_store_mode_names[];  /* "broadcast", "shared", NULL */

typedef struct cb_store_opts {
    const char *url;          /* redis://[[user]:pw@]host:port/db, rediss://... (TLS),
                                 unix:///path[?db=N] or
                                 redis+sentinel://[[user]:pw@]host:port,.../master[/db]
                                 or redis+cluster://[[user]:pw@]host:port,... (seed
                                 nodes; needs hash_tag)
                                 ("redis://127.0.0.1:6379/0"); a host name is
                                 resolved in a helper thread, bounded by timeout_ms */
    const char *password;     /* overrides the URL's; NULL = the URL's */
    const char *username;     /* Redis 6 ACL user, sent as AUTH username password;
                                 overrides the URL's (redis://user:pw@host); NULL =
                                 the URL's; none = AUTH password (the default user) */
    const char *prefix;       /* key prefix ("circuit_breaker") */
    int hash_tag;             /* keys "{prefix}:<name>:state", "{prefix}:states": all in
                                 one Redis Cluster hash slot, so the store's script
                                 stays atomic on one master; needed with a cluster,
                                 and peers must use the same names (0) */
    const char *channel;      /* pub/sub channel ("circuit_breaker:events") */
    cb_store_mode mode;       /* (CB_STORE_BROADCAST) */
    double timeout_ms;        /* longest a call may block on Redis (100) */
    uint32_t quorum;          /* shared: instances that must report a trip
                                 before the fleet opens; 0/1 = fleet-wide
                                 counting (0) */
    double ttl;               /* seconds every written key lives (3600) */
    double backoff_min;       /* first reconnect delay, seconds (0.1) */
    double backoff_max;       /* longest reconnect delay, seconds (5) */
    const char *id;           /* this instance's origin id; NULL = host:pid:random */
    const char *secret;       /* shared secret, 16 to 1024 bytes: channel and boot-hash
                                 messages are signed with HMAC-SHA256 and unsigned or
                                 badly signed ones rejected; NULL = plain, unsigned JSON */
    double replay_window_ms;  /* with a secret: a channel message whose ts is further
                                 than this from our wall clock is rejected (30000); one
                                 published before we subscribed, or not newer than the
                                 last applied from its origin for its name, too (a replay:
                                 4096 origin-name pairs remembered, a fixed table).
                                 Clocks must agree within 1 s: a message whose ts is
                                 older than our last SUBSCRIBE by more is refused */
    cb_clock clock;           /* back-off and poll cadence; {NULL} = monotonic */
    double peer_read_ms;      /* an explicit cb_store_poll reads the attached names'
                                 per-field keys this often, to notice peers that never
                                 publish (a pybreaker service), 1024 names a read in
                                 turn (N names within ceil(N/1024) reads), 65 bytes of
                                 each value; 0 = off, else [10, 3600000] (1000).  An
                                 open learnt from them alone lasts at most
                                 reset_timeout and is read again; with a secret a
                                 `forced` key counts only beside a signed boot entry */
    struct cb_store_tls_opts {  /* TLS to Redis; a rediss:// URL turns it on */
        int enabled;          /* (0) */
        const char *ca_file;  /* CA bundle (PEM); with no CA given, the system's */
        const char *ca_path;  /* hashed CA directory */
        const char *cert_file, *key_file;  /* a client certificate (tls-auth-clients) */
        const char *server_name;  /* SNI and the name verified; NULL = the URL's host */
        int verify;           /* the certificate chain and host name (1); 0 trusts any
                                 server: for tests only */
    } tls;
} cb_store_opts;

/* Fills `o` with the defaults above. */
CB_API void cb_store_opts_init(cb_store_opts *o);

#define CB_STORE_EOPTS 1  /* invalid options: the store is unusable */
#define CB_STORE_EIO 2    /* Redis unreachable or failing: retried after a back-off */

/* As hiredis's redisContext: err is 0 or one of the above, errstr says what
 * (never a password).  An I/O error clears once reconnected. */
typedef struct cb_store {
    int err;
    char errstr[128];
    struct cb_store_priv *priv;  /* the rest is private */
} cb_store;

/* Creates a store and tries to connect once (blocking at most timeout_ms).
 * Returns NULL only when out of memory.  Check s->err: CB_STORE_EOPTS with
 * s->errstr naming the bad option (every call then fails), CB_STORE_EIO when
 * Redis could not be reached (the store retries by itself).  Strings are
 * copied.  The caller owns the store. */
CB_API cb_store *cb_store_new(const cb_store_opts *o);

/* Detaches every breaker, closes the connections, frees `s`.  No-op on NULL. */
CB_API void cb_store_free(cb_store *s);

/* Attaches `b`: its transitions are published and persisted, its peers'
 * messages applied to it by poll, its open or forced-open state in the
 * boot-recovery hash imported now (when connected; else on reconnect).
 * Several breakers may share a name.  The import costs one round trip
 * (at most timeout_ms).  Returns CB_ERR when `b` is attached
 * elsewhere, its name has 256 bytes or more, out of memory, or s->err is
 * CB_STORE_EOPTS.  The store does not
 * own `b`; destroying `b` detaches it. */
CB_API int cb_store_attach(cb_store *s, cb_breaker *b);

/* Detaches `b` (no-op when it is not attached to `s`). */
CB_API void cb_store_detach(cb_store *s, cb_breaker *b);

/* Applies the peers' messages waiting on the subscription, reads
 * outstanding replies, reconnects when the back-off has elapsed, and sends
 * and applies the peer reads (peer_read_ms).  Does not block, except for a
 * reconnect (at most timeout_ms).  A lighter one, without the peer reads,
 * is run by attached breakers every 64th cb_breaker_allow once 50 ms have
 * passed on the store's clock (or, disconnected, once the back-off has
 * elapsed).  Returns the
 * number of messages applied, or CB_ERR when not connected.
 *
 * The budget of cb_breaker_allow on an attached breaker: no I/O but a
 * non-blocking read of what the sockets have, except (shared mode) the
 * half-open lease, and, disconnected, one reconnect attempt per back-off
 * (backoff_min doubling to backoff_max): connect, AUTH, SELECT, SUBSCRIBE,
 * SCRIPT LOAD and HGETALL of the boot hash all under one deadline of
 * timeout_ms, shared with that call's lease.  Nothing a peer publishes
 * makes the store disconnect, so no one on the channel can make allow()
 * pay that again and again; a caller that wants none of it on its hot path
 * calls poll (or waits on fd) from its event loop, which then does the
 * reconnecting before allow would. */
CB_API int cb_store_poll(cb_store *s);

/* Waits at most `ms` milliseconds (capped at 10 s) for the subscription to
 * have something for poll.  Returns 1 when it has, 0 on timeout, CB_ERR when
 * not connected.  Blocks by design: for a thread with nothing else to do,
 * and for tests. */
CB_API int cb_store_wait(cb_store *s, double ms);

typedef void (*cb_store_name_fn)(void *ud, const char *name);

/* Calls fn(ud, name) for every breaker held open, as cb_store_list. */
CB_API int cb_store_names(cb_store *s, cb_store_name_fn fn, void *ud);

typedef void (*cb_store_list_fn)(void *ud, const char *name, const char *source);

/* Calls fn(ud, name, source) for every breaker held open (what `cbreaker
 * status` lists): each name with an entry in the boot-recovery hash
 * <prefix>:states (source "cbreaker": an instance announced it open or
 * forced open and nobody reset it since), then each name whose
 * <prefix>:<name>:state key is open without such an entry (source "keys": a
 * peer that writes only the per-field keys, as a pybreaker service does),
 * found with SCAN (held open as a breaker attached now would be: forced,
 * or open with time left; 65 bytes of each value read).  When the scan
 * stops at its cap (10 M keys) before the end, fn is called once more
 * with name "" and source "partial".  Each round trip blocks at most
 * timeout_ms.  Returns how many, or CB_ERR when not connected or Redis
 * failed (fn may have been called).  `name` and `source` live only during the call. */
CB_API int cb_store_list(cb_store *s, cb_store_list_fn fn, void *ud);

/* The subscription's file descriptor, readable when poll has work; -1 while
 * disconnected (it changes across reconnects). */
CB_API int cb_store_fd(const cb_store *s);

typedef struct cb_store_health {
    int connected;
    const char *last_error;   /* points into the store; "" if none; never a password */
    const char *id;           /* this instance's origin id */
    uint64_t reconnects;      /* successful connections after the first */
    uint64_t failures;        /* connection failures and errors */
    uint64_t published;       /* messages published */
    uint64_t received;        /* channel messages received */
    uint64_t applied;         /* ... applied to an attached breaker */
    uint64_t own;             /* ... skipped as our own */
    uint64_t malformed;       /* ... ignored: not the channel's JSON or too long */
    uint64_t unsigned_msgs;   /* ... rejected (secret set): no signature */
    uint64_t bad_signature;   /* ... rejected (secret set): a signature that does not match */
    uint64_t stale;           /* ... rejected (secret set): ts outside replay_window_ms,
                                 or a replay (below) */
    uint64_t replayed;        /* ... rejected (secret set): sent before we subscribed, or not
                                 newer ("seq") than the last applied from its origin for its
                                 name */
    uint64_t peer_unparsed;   /* per-field key values ignored: no state or time we read,
                                 or a key of another type than string (below too) */
    uint64_t peer_wrongtype;  /* per-field keys of another type than string (a hash
                                 opened_at ...): read as absent, replaced when written */
    uint64_t dropped;         /* events that found Redis down (sent after reconnecting) */
    uint64_t attached;        /* breakers attached */
    double backoff;           /* current reconnect delay, seconds (0 when connected) */
    double retry_in;          /* seconds until the next reconnect attempt */
} cb_store_health;

/* Fills `h`.  Pointers in it live until the next call on `s`. */
CB_API void cb_store_get_health(const cb_store *s, cb_store_health *h);

#ifdef __cplusplus
}
#endif

#endif /* CBREAKER_REDIS_H */

/* store_redis.c -- breaker state shared through Redis: per-field keys other
 * services read and write, a boot-recovery hash and a pub/sub channel.
 *
 * Two connections on the store's own transport (redis_conn.h: plain TCP,
 * a unix socket or TLS; hiredis only encodes and parses), driven by
 * poll(2) with a deadline, so nothing waits longer than timeout_ms:
 *  - cmd: EVALSHA of the store's script (store_script.h).  Broadcast mode
 *    appends a transition's EVALSHA and writes what the socket takes; the
 *    reply is read by a later poll.  Shared mode waits for each reply (one
 *    round trip per record).
 *  - sub: SUBSCRIBE to the channel; poll() reads what is there and applies
 *    peers' messages through cb_breaker_apply_peer.
 * A failure drops both and schedules a reconnect after an exponential
 * back-off; reconnecting re-subscribes, then reconciles (publishes what was
 * lost, republishes our own open states, re-imports the boot hash).
 *
 * A fleet cannot keep itself stuck open (a force-open echoed back and forth
 * between peers, re-imported after every recovery): a state applied from a
 * peer is never published again (only local decisions are), reset() always
 * publishes `recovered` and clears the boot entry, and on reconnect a state
 * that came from a peer is dropped when the boot hash no longer has it. */
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <openssl/crypto.h>

#include "breaker_impl.h"
#include "hashtab.h"
#include "optspec.h"
#include "redis_conn.h"
#include "replay_guard.h"
#include "siphash.h"
#include "store_impl.h"
#include "store_priv.h"
#include "store_script.h"

const char *const cb_store_mode_names[] = {"broadcast", "shared", NULL};



/* ---- small things --------------------------------------------------------- */

static double mono(void) {
    return cb_clock_monotonic(NULL);  /* I/O deadlines are real time */
}

double store_now_of(const cb_store_priv *p) {
    return cb_clock_read(&p->clock);
}

double store_wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000 + (double)(ts.tv_nsec / 1000000);
}

/* A seq for our next message: epoch microseconds, or one more than the
 * last when the clock did not move (or went back). */
static double next_seq(cb_store_priv *p) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double us = (double)ts.tv_sec * 1e6 + (double)(ts.tv_nsec / 1000);
    p->last_seq = us > p->last_seq ? us : p->last_seq + 1;
    return p->last_seq;
}

/* The key prefix: with hash_tag, "{prefix}", the hash tag that puts every
 * key of the store in one Cluster slot. */
static char *hash_tagged(const char *prefix, int hash_tag) {
    size_t n = strlen(prefix);
    char *s = malloc(n + 3);
    if (s) snprintf(s, n + 3, hash_tag ? "{%s}" : "%s", prefix);
    return s;
}

static char *dupstr(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

uint64_t store_hash_name(const cb_store_priv *p, const char *s) {
    return cb_siphash13(s, strlen(s), p->k0, p->k1);
}

static uint64_t attach_rehash(const void *ud, const cb_hnode *n) {
    (void)ud;
    return ((const attach *)n)->hash;
}

/* Keeps the first I/O error of a failure for health(); the password can
 * only come back in a server's error text, and is cut out there. */
void store_note_error(cb_store_priv *p, const char *what, const char *detail) {
    char buf[sizeof p->last_error];
    snprintf(buf, sizeof buf, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    const char *pw = p->url.password;
    char *hit;
    if (pw[0] && (hit = strstr(buf, pw)) != NULL) {
        size_t n = strlen(pw);
        memmove(hit + 3, hit + n, strlen(hit + n) + 1);
        memcpy(hit, "***", 3);
    }
    memcpy(p->last_error, buf, sizeof buf);
    p->pub->err = CB_STORE_EIO;
    memcpy(p->pub->errstr, buf, sizeof p->pub->errstr);
}

/* Records an event to (re)send: a reset's `recovered` is kept over a later
 * close, a later trip replaces it. */
static void mark_unsent(attach *a, int what) {
    if (what == UNSENT_RECOVERED || a->unsent != UNSENT_RECOVERED) a->unsent = (uint8_t)what;
    else if (a->b->state != CB_CLOSED) a->unsent = UNSENT_STATE;
}

/* The oldest write owed a reply; its event is re-marked unless it succeeded. */
void store_ring_pop(cb_store_priv *p, int ok) {
    inflight *e = &p->ring[p->head];
    if (e->what == INFLIGHT_READ) {
        if (e->rd && e->rd->tick) p->reading = 0;
        free(e->rd);
        e->rd = NULL;
    } else if (!ok && e->a) mark_unsent(e->a, e->what);
    p->head = (p->head + 1) % MAX_PENDING;
    p->pending--;
}

/* Drops both connections and schedules the next attempt. */
void store_drop(cb_store_priv *p) {
    while (p->pending) store_ring_pop(p, 0);  /* unknown fate: send again */
    store_free_reads(p);  /* a reconnect reconciles, then reads afresh */
    if (p->cmd) cb_conn_close(p->cmd);
    if (p->sub) cb_conn_close(p->sub);
    p->connected = 0;
    p->unflushed = 0;
    p->broken = 0;
    p->failures++;
    p->backoff = p->backoff > 0 ? p->backoff * 2 : p->backoff_min;
    if (p->backoff > p->backoff_max) p->backoff = p->backoff_max;
    p->next_attempt = store_now_of(p) + p->backoff;
}

static void fail(cb_store_priv *p, const char *what, const char *detail) {
    store_note_error(p, what, detail);
    store_drop(p);
}

/* ---- I/O with a deadline (redis_conn.c does the socket) ------------------- */

/* Notes why `c` failed (its errstr names the server and the cause). */
static void conn_error(cb_store_priv *p, const cb_conn *c) {
    store_note_error(p, c->errstr[0] ? c->errstr : "connection lost", NULL);
}

static int flush_until(cb_store_priv *p, cb_conn *c, double deadline) {
    if (cb_conn_flush_until(c, deadline) == CB_OK) return CB_OK;
    conn_error(p, c);
    return CB_ERR;
}

static redisReply *read_reply(cb_store_priv *p, cb_conn *c, double deadline) {
    redisReply *r = cb_conn_read_reply(c, deadline);
    if (!r) {
        if (c->err == CB_CONN_ETIMEOUT) {
            char msg[64];
            snprintf(msg, sizeof msg, "no reply within %.0f ms", p->timeout * 1000);
            store_note_error(p, msg, NULL);
        } else {
            conn_error(p, c);
        }
    }
    return r;
}

/* A MOVED or ASK answer (our slot moved, or is moving, to another node):
 * CB_CLUSTER_MOVED, with the node it names tried first by the reconnect
 * that follows, or CB_CLUSTER_ASK, with the node it names in *to (when
 * given); else 0.  An ASK's node is not remembered: the slot is still
 * served where it was. */
static int redirected(cb_store_priv *p, const cb_conn *c, const redisReply *r,
                      cb_cluster_node *to) {
    cb_cluster_node node;
    int slot;
    int kind = p->url.cluster
                   ? cb_cluster_redirect(r, &slot, node.host, sizeof node.host, &node.port)
                   : 0;
    if (kind == CB_CLUSTER_MOVED) cb_cluster_moved(&p->cluster, c, node.host, node.port);
    if (kind == CB_CLUSTER_ASK && to) *to = node;
    return kind;
}

/* The slot is being migrated and an ASK answer on c named `to`, the node
 * that has the key already: the command is asked there, after ASKING.
 * Its reply, unless that is TRYAGAIN or a redirection: Redis answers
 * TRYAGAIN to a command over several keys not all moved yet, which every
 * write of the store is (one script over the breaker's keys), so those are
 * sent again after the back-off, until MOVED names the new owner.  NULL
 * then, or when the node could not be asked (noted). */
static redisReply *ask_there(cb_store_priv *p, const cb_conn *c, const cb_cluster_node *to,
                             double deadline, int argc, const char **argv, const size_t *lens) {
    redisReply *r =
        cb_cluster_asking(p->asking, c, to->host, to->port, deadline, argc, argv, lens);
    if (!r) {
        store_note_error(p, "ASK", p->asking->errstr);
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR &&
        (strncmp(r->str, "TRYAGAIN", 8) == 0 || redirected(p, p->asking, r, NULL))) {
        store_note_error(p, "redis", r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

/* The reply to the oldest async write: errors are kept for health, and
 * the event is sent again. */
static void settle(cb_store_priv *p, redisReply *r) {
    /* Its error reconnects: to the node a MOVED names.  An ASK is not
     * followed here: the write is a script over several keys, which the
     * node migrated to answers TRYAGAIN (ask_there); it is sent again. */
    redirected(p, p->cmd, r, NULL);
    if (p->ring[p->head].what == INFLIGHT_READ) {
        store_read_done(p, r);
        return;
    }
    int ok = !(r && r->type == REDIS_REPLY_ERROR);
    if (!ok) {
        /* NOSCRIPT (flushed: reload), OOM (maxmemory), READONLY (a
         * replica): the event is sent again by the reconnect's reconcile,
         * after a back-off, so a refusing server is not retried in a loop. */
        store_note_error(p, "redis", r->str);
        p->broken = 1;
    }
    inflight *e = &p->ring[p->head];
    if (ok && e->a && e->what == UNSENT_STATE && r && r->type == REDIS_REPLY_INTEGER &&
        r->integer > 1)
        e->a->own_until = (double)r->integer;  /* an open's open_until: ours when read back */
    store_ring_pop(p, ok);
    freeReplyObject(r);
}

/* Sends a command on `c` and waits for its reply, reading first the replies
 * owed to earlier writes on cmd.  NULL after a failure (the connection is
 * then dropped); an error reply is returned as such. */
redisReply *store_command(cb_store_priv *p, cb_conn *c, double deadline, int argc,
                          const char **argv, const size_t *lens) {
    if (cb_conn_append(c, argc, argv, lens) != CB_OK) {
        fail(p, c->errstr, NULL);
        return NULL;
    }
    int owed = c == p->cmd;  /* async replies come first */
    if (flush_until(p, c, deadline) != CB_OK) {
        store_drop(p);
        return NULL;
    }
    p->unflushed = 0;
    for (;;) {
        redisReply *r = read_reply(p, c, deadline);
        if (!r) {
            store_drop(p);
            return NULL;
        }
        if (!owed || p->pending == 0) {
            cb_cluster_node to;
            int kind = redirected(p, c, r, &to);
            if (!kind) return r;
            redisReply *there = kind == CB_CLUSTER_ASK && c == p->cmd  /* no keys: no ASK */
                                    ? ask_there(p, c, &to, deadline, argc, argv, lens)
                                    : NULL;
            if (!there && (kind == CB_CLUSTER_MOVED || c != p->cmd))
                store_note_error(p, "redis", r->str);
            freeReplyObject(r);
            if (!there) store_drop(p);  /* reconnects (to the node MOVED named), resends */
            return there;
        }
        settle(p, r);
    }
}

/* Appends a command on cmd and writes what the socket takes now; its reply
 * is settled by a later poll or command. */
int store_command_async(cb_store_priv *p, attach *a, int what, int argc, const char **argv,
                        const size_t *lens) {
    if (p->pending >= MAX_PENDING) {
        fail(p, "redis is not keeping up", NULL);
        return CB_ERR;
    }
    if (cb_conn_append(p->cmd, argc, argv, lens) != CB_OK) {
        fail(p, p->cmd->errstr, NULL);
        return CB_ERR;
    }
    inflight *e = &p->ring[(p->head + p->pending) % MAX_PENDING];
    e->a = a;
    e->rd = NULL;
    e->what = (uint8_t)what;
    p->pending++;
    int done = 0;
    if (cb_conn_flush(p->cmd, &done) != CB_OK) {
        fail(p, p->cmd->errstr, NULL);
        return CB_ERR;
    }
    p->unflushed = !done;
    return CB_OK;
}

/* Connects `c`: resolve, connect, TLS, AUTH and SELECT (redis_conn.c).
 * Through Sentinel, the master is asked for first, on every (re)connect:
 * after a failover the dropped connections come back to the promoted
 * replica, within the one deadline.  `first`, when connected, is the
 * other connection of this attempt: c goes to the master it found (ROLE
 * checked again), without asking the sentinels twice. */
static int open_conn(cb_store_priv *p, cb_conn *c, const cb_conn *first, double deadline) {
    if (p->url.cluster) {
        if (cb_cluster_connect(&p->cluster, c, p->slot, deadline) == CB_OK) return CB_OK;
        store_note_error(p, p->cluster.errstr, NULL);
        return CB_ERR;
    }
    if (p->sentinel) {
        int found = first && cb_conn_connected(first);
        if ((found ? cb_sentinel_connect_at(p->sentinel, c, cb_conn_host(first),
                                            cb_conn_port(first), deadline)
                   : cb_sentinel_connect(p->sentinel, c, deadline)) == CB_OK)
            return CB_OK;
        store_note_error(p, p->sentinel->errstr, NULL);
        return CB_ERR;
    }
    if (cb_conn_connect(c, deadline) == CB_OK) return CB_OK;
    conn_error(p, c);
    return CB_ERR;
}

/* ---- attachments ----------------------------------------------------------- */

/* The attachments named `name` (hashed `h`) are in the chain of each table
 * (while the table grows, some may still be in the old one). */
attach *store_first_named(cb_store_priv *p, const char *name, uint64_t h) {
    for (int i = 0; i < 2; i++) {
        cb_hnode **chain = cb_htab_chain(&p->attached, i, h);
        for (cb_hnode *n = chain ? *chain : NULL; n; n = n->next) {
            attach *a = (attach *)n;
            if (a->hash == h && strcmp(a->b->name, name) == 0) return a;
        }
    }
    return NULL;
}

/* Calls fn(p, a, ud) for every attachment named `name` (hashed `h`). */
void store_each_named(cb_store_priv *p, const char *name, uint64_t h,
                      void (*fn)(cb_store_priv *p, attach *a, void *ud), void *ud) {
    for (int i = 0; i < 2; i++) {
        cb_hnode **chain = cb_htab_chain(&p->attached, i, h);
        for (cb_hnode *n = chain ? *chain : NULL; n; n = n->next) {
            attach *a = (attach *)n;
            if (a->hash == h && strcmp(a->b->name, name) == 0) fn(p, a, ud);
        }
    }
}

static void unlink_attach(cb_store_priv *p, attach *a) {
    cb_htab_unlink(&p->attached, &a->h, a->hash);
    cb_htab_step(&p->attached, NULL, attach_rehash);
}

/* ---- publishing ------------------------------------------------------------ */

const char *const store_key_fields[] = {"state", "counter", "opened_at", "open_until",
                                        "successes", "lease", "tripped", "forced"};


void store_call_init(cb_store_priv *p, script_call *sc, const char *op, const char *name) {
    static const char nkeys[] = "10";
    sc->argc = 0;
    sc->argv[sc->argc++] = "EVALSHA";
    sc->argv[sc->argc++] = p->sha;
    sc->argv[sc->argc++] = nkeys;
    for (int k = 0; k < K_STATES; k++) {
        snprintf(sc->keys[k], KEY_MAX, "%s:%s:%s", p->prefix, name, store_key_fields[k]);
        sc->argv[sc->argc++] = sc->keys[k];
    }
    snprintf(sc->keys[K_STATES], KEY_MAX, "%s:states", p->prefix);
    sc->argv[sc->argc++] = sc->keys[K_STATES];
    snprintf(sc->keys[K_FORCED_NAMES], KEY_MAX, "%s:forced", p->prefix);
    sc->argv[sc->argc++] = sc->keys[K_FORCED_NAMES];
    snprintf(sc->ttl, sizeof sc->ttl, "%.0f", p->ttl * 1000);
    sc->argv[sc->argc++] = op;
    sc->argv[sc->argc++] = name;
    sc->argv[sc->argc++] = sc->ttl;
    sc->argv[sc->argc++] = p->channel;
}

void store_call_arg(script_call *sc, const char *s) {
    sc->argv[sc->argc++] = s;
}

void store_call_lens(script_call *sc) {
    for (int i = 0; i < sc->argc; i++) sc->lens[i] = strlen(sc->argv[i]);
}

/* Publishes and persists what `a`'s breaker is now (broadcast, and operator
 * actions in shared mode).  Disconnected: remembered and sent on reconnect. */
void store_announce(cb_store_priv *p, attach *a, int what) {
    mark_unsent(a, what);
    if (!p->connected) {
        p->dropped++;
        return;
    }
    cb_breaker *b = a->b;
    cb_message m;
    memset(&m, 0, sizeof m);
    m.retry_after_ms = -1;
    const char *op;
    double left_ms = 0;
    if (a->unsent == UNSENT_RECOVERED) {
        op = "recovered";
        m.recovered = 1;
    } else if (b->state == CB_FORCED_OPEN) {
        op = "forced";
        m.open = m.forced_open = 1;
    } else if (b->state == CB_OPEN) {
        op = "open";
        m.open = 1;
        left_ms = (b->open_until - cb_breaker_now(b)) * 1000;
        if (!(left_ms > 0)) left_ms = 0;
        if (left_ms > CB_MAX_TIMEOUT * 1000) left_ms = CB_MAX_TIMEOUT * 1000;  /* JSON has no inf */
        m.retry_after_ms = left_ms;
    } else if (b->state == CB_CLOSED) {
        op = "closed";
    } else {
        a->unsent = UNSENT_NONE;  /* half-open and disabled are local matters */
        return;
    }
    snprintf(m.service_id, sizeof m.service_id, "%s", b->name);
    snprintf(m.origin, sizeof m.origin, "%s", p->id);
    m.ts = store_wall_ms();
    m.seq = next_seq(p);
    char json[CB_MESSAGE_MAX + 1], left[32];
    int jlen = cb_message_encode(&m, json, sizeof json);
    if (jlen > 0 && p->secret)
        jlen = cb_message_sign(json, (size_t)jlen, sizeof json, p->secret, p->secret_len);
    if (jlen < 0) return;  /* cannot happen: bounded */
    snprintf(left, sizeof left, "%.0f", ceil(left_ms));
    script_call sc;
    store_call_init(p, &sc, op, b->name);
    store_call_arg(&sc, json);
    store_call_arg(&sc, left);
    for (int i = 7; i <= 10; i++) store_call_arg(&sc, "");  /* record's arguments */
    store_call_arg(&sc, p->secret ? "1" : "0");             /* signed: see store_script.h */
    store_call_lens(&sc);
    what = a->unsent;
    a->unsent = UNSENT_NONE;
    if (store_command_async(p, a, what, sc.argc, sc.argv, sc.lens) == CB_OK) p->published++;
}

/* ---- applying peers' state ------------------------------------------------ */

typedef struct peer_apply {
    cb_peer_state ps;
    double open_for;
} peer_apply;

static void apply_one(cb_store_priv *p, attach *a, void *ud) {
    const peer_apply *pa = ud;
    (void)p;
    a->seen = 1;
    cb_breaker_apply_peer(a->b, pa->ps, pa->open_for);
}

/* Applies `m` to every breaker named m->service_id.  `boot`: from the hash,
 * where ts dates the open deadline. */
static int apply_message(cb_store_priv *p, const cb_message *m, int boot) {
    uint64_t h = store_hash_name(p, m->service_id);
    if (!store_first_named(p, m->service_id, h)) return 0;
    cb_peer_state ps = cb_message_peer_state(m);
    double open_for = m->retry_after_ms >= 0 ? m->retry_after_ms / 1000 : -1;
    if (boot && m->ts > 0 && ps != CB_PEER_FORCED_OPEN) {  /* a force lasts until a reset */
        double age = (store_wall_ms() - m->ts) / 1000;
        if (age > p->ttl) return 0;  /* the hash outlives its entries: a stale one */
        if (m->retry_after_ms >= 0) {
            open_for -= age > 0 ? age : 0;
            if (open_for <= 0) return 0;  /* that opening is over */
        }
    }
    peer_apply pa = {ps, open_for};
    store_each_named(p, m->service_id, h, apply_one, &pa);
    return 1;
}

/* With a secret: 1 when `v` carries a valid signature (else counted). */
int store_authentic(cb_store_priv *p, const redisReply *v) {
    if (!p->secret) return 1;
    switch (cb_message_verify(v->str, v->len, p->secret, p->secret_len)) {
    case CB_SIG_OK: return 1;
    case CB_SIG_MISSING: p->unsigned_msgs++; return 0;
    default: p->bad_signature++; return 0;
    }
}

/* With a secret: 1 when the signed message `m` is new, not a replay.  One
 * published before we subscribed cannot be a delivery (pub/sub keeps no
 * backlog: what we missed, the boot import covers), and one not newer than
 * the last applied from its origin for its name is a replay or stale. */
static int is_new(cb_store_priv *p, const cb_message *m) {
    if (m->ts < p->subscribed_at - SUB_SKEW_MS) return 0;
    double order = m->seq > 0 ? m->seq : m->ts * 1000;  /* an older sender: its ts */
    return cb_replay_guard_accept(p->guard, m->origin, m->service_id, order, m->ts);
}

/* A message from the subscription: ["message", channel, payload]. */
static int on_sub_reply(cb_store_priv *p, const redisReply *r) {
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "message") != 0)
        return 0;  /* subscribe confirmations */
    const redisReply *payload = r->element[2];
    if (payload->type == REDIS_REPLY_STRING && payload->len > SUB_BUF_MAX) {
        p->malformed++;  /* junk that came whole before it could be dropped: as if dropped */
        return 0;
    }
    p->received++;
    cb_message m;
    if (payload->type != REDIS_REPLY_STRING ||
        cb_message_decode(payload->str, payload->len, &m) != NULL) {
        p->malformed++;
        return 0;
    }
    if (!store_authentic(p, payload)) return 0;
    if (p->secret && !(fabs(store_wall_ms() - m.ts) <= p->replay_window)) {
        p->stale++;  /* a replay of an old signed message, or a clock far off */
        return 0;
    }
    if (strcmp(m.origin, p->id) == 0) {
        p->own++;
        return 0;
    }
    if (p->guard && !is_new(p, &m)) {
        p->stale++;
        p->replayed++;
        return 0;
    }
    int n = apply_message(p, &m, 0);
    p->applied += (uint64_t)n;
    return n;
}

/* ---- connecting and reconciling -------------------------------------------- */

/* Imports the boot hash and drops peer states it no longer holds (their
 * `recovered` may have been lost while we were away). */
static int clear_seen(cb_hnode *n, void *ud) {
    (void)ud;
    ((attach *)n)->seen = 0;
    return 0;
}

/* A peer's open state the boot hash no longer holds is dropped. */
static int drop_unseen(cb_hnode *n, void *ud) {
    attach *a = (attach *)n;
    cb_state s = (cb_state)a->b->state;
    (void)ud;
    if (a->from_peer && !a->seen && s != CB_CLOSED)
        cb_breaker_apply_peer(a->b, s == CB_FORCED_OPEN ? CB_PEER_RECOVERED : CB_PEER_CLOSED, 0);
    return 0;
}

static void import(cb_store_priv *p, const redisReply *all) {
    cb_htab_foreach(&p->attached, clear_seen, NULL);
    for (size_t i = 0; all && i + 1 < all->elements; i += 2) {
        redisReply *v = all->element[i + 1];
        cb_message m;
        if (v->type != REDIS_REPLY_STRING || cb_message_decode(v->str, v->len, &m) ||
            !store_authentic(p, v))
            continue;
        if (strcmp(m.origin, p->id) == 0 || !m.open || m.recovered) continue;
        apply_message(p, &m, 1);
    }
    cb_htab_foreach(&p->attached, drop_unseen, NULL);
}

/* Sends what was not sent, and our own open states again; stops when the
 * connection drops. */
static int republish(cb_hnode *n, void *ud) {
    cb_store_priv *p = ud;
    attach *a = (attach *)n;
    cb_state s = (cb_state)a->b->state;
    if (a->unsent) store_announce(p, a, a->unsent);
    else if (!a->from_peer && (s == CB_OPEN || s == CB_FORCED_OPEN))
        store_announce(p, a, UNSENT_STATE);
    return !p->connected;
}

static void reconcile(cb_store_priv *p, redisReply *all) {
    import(p, all);
    if (p->connected) cb_htab_foreach(&p->attached, republish, p);
}

/* One attempt, at most timeout_ms: subscribe first, so nothing published
 * between the import and the subscription is missed. */
static void try_connect(cb_store_priv *p, double deadline) {
    if (open_conn(p, p->sub, NULL, deadline) != CB_OK) goto failed;
    const char *subscribe[] = {"SUBSCRIBE", p->channel};
    redisReply *r = store_command(p, p->sub, deadline, 2, subscribe, NULL);
    if (!r) return;
    int ok = r->type == REDIS_REPLY_ARRAY;
    if (!ok) store_note_error(p, "subscribe", r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
    freeReplyObject(r);
    if (!ok) goto failed;
    p->subscribed_at = store_wall_ms();

    if (open_conn(p, p->cmd, p->sub, deadline) != CB_OK) goto failed;
    char states[KEY_MAX];
    snprintf(states, sizeof states, "%s:states", p->prefix);
    const char *load[] = {"SCRIPT", "LOAD", cb_store_script};
    const char *load_read[] = {"SCRIPT", "LOAD", cb_read_script};
    const char *hgetall[] = {"HGETALL", states};
    if (cb_conn_append(p->cmd, 3, load, NULL) != CB_OK ||  /* pipelined: one round trip */
        cb_conn_append(p->cmd, 3, load_read, NULL) != CB_OK ||
        cb_conn_append(p->cmd, 2, hgetall, NULL) != CB_OK) {
        conn_error(p, p->cmd);
        goto failed;
    }
    if (flush_until(p, p->cmd, deadline) != CB_OK) goto failed;
    for (int i = 0; i < 2; i++) {
        r = read_reply(p, p->cmd, deadline);
        if (!r) goto failed;
        ok = r->type == REDIS_REPLY_STRING && r->len == 40;
        if (ok) memcpy(i == 0 ? p->sha : p->read_sha, r->str, 41);
        else
            store_note_error(p, "script load", r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
        freeReplyObject(r);
        if (!ok) goto failed;
    }
    r = read_reply(p, p->cmd, deadline);
    if (!r) goto failed;
    cb_cluster_node to;
    if (redirected(p, p->cmd, r, &to) == CB_CLUSTER_ASK) {  /* migrating: the hash may be there */
        redisReply *there = ask_there(p, p->cmd, &to, deadline, 2, hgetall, NULL);
        freeReplyObject(r);
        if (!(r = there)) goto failed;
    }
    if (r->type != REDIS_REPLY_ARRAY) {  /* a MOVED is remembered above */
        store_note_error(p, "hgetall", r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
        freeReplyObject(r);
        goto failed;
    }
    p->connected = 1;
    if (p->ever_connected) p->reconnects++;
    p->ever_connected = 1;
    p->backoff = 0;
    p->last_read = store_now_of(p) - p->peer_read;  /* read peers' keys at the next poll */
    p->pub->err = 0;
    p->pub->errstr[0] = '\0';
    reconcile(p, r);
    freeReplyObject(r);
    return;
failed:
    store_drop(p);
}

/* ---- hooks ------------------------------------------------------------------- */

/* One breaker call may do I/O twice (allow: a reconnect from the tick, then
 * the probe lease; record: a quorum vote, then the record): both share one
 * deadline, so the call as a whole blocks at most timeout_ms.  `seq` names
 * the call: allow's op count, or the recorded-outcome count. */
double store_call_deadline(cb_store_priv *p, const cb_breaker *b, uint64_t seq) {
    if (p->budget_b != b || p->budget_seq != seq) {
        p->budget_b = b;
        p->budget_seq = seq;
        p->budget_deadline = mono() + p->timeout;
    }
    return p->budget_deadline;
}

uint64_t store_allow_seq(const cb_breaker *b) {
    return (uint64_t)cb_breaker_ops(b) << 1;
}

uint64_t store_record_seq(const cb_breaker *b) {
    return ((b->successes + b->failures) << 1) | 1;
}

static int poll_until(cb_store_priv *p, double deadline, int explicit);

/* Transitions the shared script decides for the fleet.  A Retry-After is
 * not among them: the server asked every caller to wait, so it is
 * announced like an operator's action. */
static int is_local_count(cb_reason why) {
    return why == CB_REASON_FAILURES || why == CB_REASON_FAILURE_RATE ||
           why == CB_REASON_SLOW_CALL_RATE || why == CB_REASON_PROBE_FAILURE ||
           why == CB_REASON_PROBE_SUCCESS;
}


static void hook_change(void *ud, cb_breaker *b, cb_state from, cb_state to, cb_reason why) {
    attach *a = ud;
    cb_store_priv *p = a->p;
    (void)b;
    (void)from;
    a->seq = ++p->seq;  /* a peer read sent before this is stale for it */
    if (why == CB_REASON_PEER) {  /* never echoed: an echo keeps a fleet stuck open */
        a->from_peer = to != CB_CLOSED;
        a->from_keys = p->applying_keys && to != CB_CLOSED;
        return;
    }
    if (why == CB_REASON_TIMEOUT) return;  /* half-open is local */
    a->from_peer = a->from_keys = 0;
    if (why == CB_REASON_RESET || to == CB_DISABLED) return;  /* hook_reset announces */
    if (p->mode == CB_STORE_SHARED && is_local_count(why)) {
        /* The fleet's transitions are the script's; with a quorum this
         * instance's own trip is one vote. */
        if (p->quorum > 1 && to == CB_OPEN && why != CB_REASON_PROBE_FAILURE)
            store_shared_trip(p, a);
        return;
    }
    store_announce(p, a, UNSENT_STATE);
}

static void hook_reset(void *ud, cb_breaker *b) {
    attach *a = ud;
    (void)b;
    a->seq = ++a->p->seq;
    a->from_peer = a->from_keys = 0;
    store_announce(a->p, a, UNSENT_RECOVERED);
}

static void hook_tick(void *ud, cb_breaker *b) {
    attach *a = ud;
    cb_store_priv *p = a->p;
    double now = store_now_of(p);
    if (p->connected ? now - p->last_poll >= POLL_EVERY : now >= p->next_attempt)
        poll_until(p, store_call_deadline(p, b, store_allow_seq(b)), 0);
}

static void forget_inflight(cb_store_priv *p, attach *a) {
    for (unsigned i = 0; i < p->pending; i++) {
        inflight *e = &p->ring[(p->head + i) % MAX_PENDING];
        if (e->a == a) e->a = NULL;
    }
}

static void hook_gone(void *ud, cb_breaker *b) {
    attach *a = ud;
    forget_inflight(a->p, a);
    if (a->p->budget_b == b) a->p->budget_b = NULL;  /* its address may come back */
    unlink_attach(a->p, a);
    free(a);
}

static const cb_breaker_hook broadcast_hook = {
    hook_change, hook_reset, NULL, NULL, hook_tick, hook_gone};
static const cb_breaker_hook shared_hook = {
    hook_change, hook_reset, store_hook_record, store_hook_admit, hook_tick, hook_gone};

/* ---- public ------------------------------------------------------------------ */

void cb_store_opts_init(cb_store_opts *o) {
    memset(o, 0, sizeof *o);
    o->url = "redis://127.0.0.1:6379/0";
    o->prefix = "circuit_breaker";
    o->channel = "circuit_breaker:events";
    o->mode = CB_STORE_BROADCAST;
    o->timeout_ms = 100;
    o->ttl = 3600;
    o->backoff_min = 0.1;
    o->backoff_max = 5;
    o->replay_window_ms = 30000;
    o->peer_read_ms = 1000;
    o->tls.verify = 1;
}

static const char *check_opts(const cb_store_opts *o, cb_redis_url *u, char *err, size_t cap) {
    if (cb_redis_url_parse(o->url, u, err, cap) != CB_OK) return err;
    if (o->password) {
        if (strlen(o->password) >= sizeof u->password) return "password too long";
        memcpy(u->password, o->password, strlen(o->password) + 1);
    }
    if (o->username) {
        if (strlen(o->username) >= sizeof u->user) return "username too long";
        memcpy(u->user, o->username, strlen(o->username) + 1);
    }
    if (u->user[0] && !u->password[0]) return "username needs a password";
    if (o->tls.enabled) u->tls = 1;
    if (u->tls && u->unix_socket) return "tls: not over a unix socket";
    if (!u->tls && (o->tls.ca_file || o->tls.ca_path || o->tls.cert_file || o->tls.key_file ||
                    o->tls.server_name))
        return "tls options need tls.enabled or a rediss:// URL";
    if (!o->tls.cert_file != !o->tls.key_file) return "tls: cert_file and key_file go together";
    if (!o->prefix || !o->prefix[0] || strlen(o->prefix) > 128)
        return "prefix must be a non-empty string of at most 128 bytes";
    if (o->hash_tag && strpbrk(o->prefix, "{}"))
        return "hash_tag: the prefix is the hash tag '{prefix}' and cannot hold '{' or '}'";
    if (u->cluster && !o->hash_tag)
        return "a cluster needs hash_tag = true (the keys become '{prefix}:...', one hash slot: "
               "see the README)";
    if (!o->channel || !o->channel[0] || strlen(o->channel) > 256)
        return "channel must be a non-empty string of at most 256 bytes";
    const char *bad = cb_optschema_check(&cb_store_schema, o);  /* ranges: optspec.c */
    if (bad) return bad;
    if (o->backoff_max < o->backoff_min) return "backoff_max must be at least backoff_min";
    if (o->quorum > 1 && o->mode != CB_STORE_SHARED) return "quorum needs mode \"shared\"";
    if (o->id && (!o->id[0] || strlen(o->id) >= CB_ORIGIN_MAX))
        return "id must be a non-empty string shorter than 64 bytes";
    if (o->secret && (strlen(o->secret) < SECRET_MIN || strlen(o->secret) > SECRET_MAX))
        return "secret must be a string of 16 to 1024 bytes";
    return NULL;
}

/* A generator seeded by the time, the process and the address: the table's
 * hash key and the default origin id differ between stores. */
static void seed_rng(cb_rng *rng, const cb_store_priv *p) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cb_rng_seed(rng, (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 30) ^
                         ((uint64_t)getpid() << 16) ^ (uint64_t)(uintptr_t)p);
}

static void make_id(cb_store_priv *p, cb_rng *rng) {
    char host[33] = "host";
    gethostname(host, sizeof host - 1);
    host[sizeof host - 1] = '\0';
    snprintf(p->id, sizeof p->id, "%s:%ld:%08x", host, (long)getpid(),
             (unsigned)(cb_rng_next(rng) >> 32));
}

static int free_attach(cb_hnode *n, void *ud) {
    attach *a = (attach *)n;
    (void)ud;
    cb_breaker_set_hook(a->b, NULL, NULL);
    free(a);
    return 0;
}

cb_store *cb_store_new(const cb_store_opts *o) {
    cb_store *s = calloc(1, sizeof *s);
    cb_store_priv *p = calloc(1, sizeof *p);
    if (!s || !p) {
        free(s);
        free(p);
        return NULL;
    }
    s->priv = p;
    p->pub = s;
    char err[128];
    const char *why = check_opts(o, &p->url, err, sizeof err);
    if (why) {
        s->err = CB_STORE_EOPTS;
        snprintf(s->errstr, sizeof s->errstr, "%s", why);
        return s;
    }
    cb_conn_opts co;
    cb_conn_opts_init(&co);
    if (p->url.unix_socket) co.path = p->url.path;
    else co.host = p->url.host, co.port = p->url.port;
    co.user = p->url.user;
    co.password = p->url.password;
    co.db = p->url.db;
    co.tls.enabled = p->url.tls;
    co.tls.ca_file = o->tls.ca_file;
    co.tls.ca_path = o->tls.ca_path;
    co.tls.cert_file = o->tls.cert_file;
    co.tls.key_file = o->tls.key_file;
    co.tls.server_name = o->tls.server_name;
    co.tls.verify = o->tls.verify;
    if (p->url.nseeds) co.host = NULL;  /* the sentinels or the cluster name it */
    if (p->url.cluster) {
        cb_cluster_init(&p->cluster);
        _Static_assert(CB_URL_SEEDS_MAX <= CB_CLUSTER_SEEDS_MAX &&
                           sizeof p->url.seeds[0].host <= sizeof p->cluster.seeds[0].host,
                       "every URL seed fits the cluster's list");
        for (int i = 0; i < p->url.nseeds; i++)
            cb_cluster_add_seed(&p->cluster, p->url.seeds[i].host, p->url.seeds[i].port);
    } else if (p->url.nseeds) {
        cb_sentinel_opts so;
        cb_sentinel_opts_init(&so);
        so.n = p->url.nseeds;
        for (int i = 0; i < so.n; i++) {
            so.hosts[i] = p->url.seeds[i].host;
            so.ports[i] = p->url.seeds[i].port;
        }
        so.master = p->url.master;
        so.tls = co.tls;
        p->sentinel = cb_sentinel_new(&so);
    }
    p->cmd = cb_conn_new(&co);
    if (p->url.cluster) p->asking = cb_conn_new(&co);
    co.db = 0;  /* channels are not per database */
    p->sub = cb_conn_new(&co);
    const char *bad = p->cmd && p->cmd->err == CB_CONN_EOPTS ? p->cmd->errstr  /* a TLS file */
                    : p->sentinel && p->sentinel->err == CB_CONN_EOPTS ? p->sentinel->errstr
                    : NULL;
    if (bad) {
        s->err = CB_STORE_EOPTS;
        snprintf(s->errstr, sizeof s->errstr, "%s", bad);
        cb_conn_free(p->cmd);
        cb_conn_free(p->sub);
        cb_conn_free(p->asking);
        cb_sentinel_free(p->sentinel);
        p->cmd = p->sub = p->asking = NULL;
        p->sentinel = NULL;
        return s;
    }
    p->prefix = hash_tagged(o->prefix, o->hash_tag);
    if (p->prefix) p->slot = cb_cluster_keyslot(p->prefix, strlen(p->prefix));
    p->channel = dupstr(o->channel);
    int table_ok = cb_htab_init(&p->attached) == CB_OK;
    if (o->secret) {
        p->secret_len = strlen(o->secret);
        p->secret = (unsigned char *)dupstr(o->secret);
        p->guard = cb_replay_guard_new();
    }
    p->replay_window = o->replay_window_ms;
    if (!p->cmd || !p->sub || (p->url.cluster && !p->asking) ||
        (p->url.nseeds && !p->url.cluster && !p->sentinel) || !p->prefix ||
        !p->channel || !table_ok ||
        (o->secret && (!p->secret || !p->guard))) {
        cb_store_free(s);
        return NULL;
    }
    p->mode = o->mode;
    p->timeout = o->timeout_ms / 1000;
    p->ttl = o->ttl;
    p->backoff_min = o->backoff_min;
    p->backoff_max = o->backoff_max;
    p->quorum = o->quorum;
    p->clock = o->clock;
    p->peer_read = o->peer_read_ms / 1000;
    cb_rng rng;
    seed_rng(&rng, p);
    p->k0 = cb_rng_next(&rng);
    p->k1 = cb_rng_next(&rng);
    if (o->id) snprintf(p->id, sizeof p->id, "%s", o->id);
    else make_id(p, &rng);
    p->last_poll = store_now_of(p);
    try_connect(p, mono() + p->timeout);
    return s;
}

void cb_store_free(cb_store *s) {
    if (!s) return;
    cb_store_priv *p = s->priv;
    if (p) {
        cb_htab_foreach(&p->attached, free_attach, NULL);
        while (p->pending) store_ring_pop(p, 1);  /* frees the reads in flight */
        store_free_reads(p);
        cb_conn_free(p->cmd);
        cb_conn_free(p->sub);
        cb_conn_free(p->asking);
        cb_sentinel_free(p->sentinel);
        cb_htab_release(&p->attached);
        free(p->prefix);
        free(p->channel);
        if (p->secret) OPENSSL_cleanse(p->secret, p->secret_len);
        free(p->secret);
        free(p->guard);
        free(p);
    }
    free(s);
}

/* The boot-hash entry HGET found for a breaker being attached (r may be
 * NULL).  Our own entries too: a process restarted with a fixed id imports
 * what its previous life published (a reconnect does not: see import). */
static void import_one(cb_store_priv *p, const redisReply *r) {
    cb_message m;
    if (r && r->type == REDIS_REPLY_STRING && !cb_message_decode(r->str, r->len, &m) &&
        store_authentic(p, r) && m.open && !m.recovered) {
        p->in_poll = 1;
        apply_message(p, &m, 1);
        p->in_poll = 0;
    }
}

int cb_store_attach(cb_store *s, cb_breaker *b) {
    if (s->err == CB_STORE_EOPTS) return CB_ERR;
    cb_store_priv *p = s->priv;
    if (strlen(b->name) >= CB_NAME_MAX) return CB_ERR;
    if (cb_breaker_hook_of(b)) return CB_ERR;
    attach *a = calloc(1, sizeof *a);
    if (!a) return CB_ERR;
    a->b = b;
    a->p = p;
    a->hash = store_hash_name(p, b->name);
    if (cb_breaker_set_hook(b, p->mode == CB_STORE_SHARED ? &shared_hook : &broadcast_hook,
                            a) != CB_OK) {
        free(a);
        return CB_ERR;
    }
    cb_htab_insert(&p->attached, &a->h, a->hash);
    cb_htab_step(&p->attached, NULL, attach_rehash);
    if (p->connected && !p->in_poll) {  /* boot import of this name, and its keys */
        char states[KEY_MAX];
        snprintf(states, sizeof states, "%s:states", p->prefix);
        const char *argv[] = {"HGET", states, b->name};
        store_read_one(p, b->name);  /* pipelined: one round trip */
        redisReply *r = p->connected ? store_command(p, p->cmd, mono() + p->timeout, 3, argv, NULL)
                                     : NULL;
        store_apply_reads(p);
        import_one(p, r);
        freeReplyObject(r);
    }
    return CB_OK;
}

void cb_store_detach(cb_store *s, cb_breaker *b) {
    cb_store_priv *p = s->priv;
    const cb_breaker_hook *h = cb_breaker_hook_of(b);
    if (!p || (h != &broadcast_hook && h != &shared_hook)) return;
    attach *a = cb_breaker_hook_ud(b);
    if (a->p != p) return;
    cb_breaker_set_hook(b, NULL, NULL);
    forget_inflight(p, a);
    if (p->budget_b == b) p->budget_b = NULL;
    unlink_attach(p, a);
    free(a);
}

/* The names of `hkeys` (HKEYS of the boot hash) hold `name`? */
static int in_reply(const redisReply *hkeys, const char *name, size_t len) {
    for (size_t i = 0; i < hkeys->elements; i++) {
        const redisReply *e = hkeys->element[i];
        if (e->type == REDIS_REPLY_STRING && e->len == len && memcmp(e->str, name, len) == 0)
            return 1;
    }
    return 0;
}

/* The names of the SCAN round's `keys` (<prefix>:<name>:state) that are
 * breaker names the boot hash does not hold, NUL-separated into `buf`
 * (cap bytes); how many. */
static size_t key_names(cb_store_priv *p, const redisReply *keys, const redisReply *hkeys,
                        char *buf, size_t cap) {
    size_t plen = strlen(p->prefix), used = 0, n = 0, tail = strlen(":state");
    for (size_t i = 0; i < keys->elements; i++) {
        const redisReply *k = keys->element[i];
        if (k->type != REDIS_REPLY_STRING || k->len <= plen + 1 + tail) continue;
        size_t len = k->len - plen - 1 - tail;  /* MATCH made it longer */
        const char *name = k->str + plen + 1;
        if (len >= CB_NAME_MAX || memchr(name, '\0', len) || in_reply(hkeys, name, len) ||
            used + len + 1 > cap)
            continue;
        memcpy(buf + used, name, len);
        buf[used + len] = '\0';
        used += len + 1;
        n++;
    }
    return n;
}

/* SCAN MATCH <prefix>:*:state, then the read script over the names found
 * that the boot hash does not hold (a peer that writes only the per-field
 * keys): calls fn for each the keys hold open as a breaker attached now
 * would be (forced, or open with time left at the default reset_timeout),
 * reading a few bytes of each value whatever its size.  Returns how many,
 * or CB_ERR when Redis failed.  After SCAN_ROUNDS_MAX rounds it stops and
 * says so: fn(ud, "", "partial"). */
#define SCAN_ROUNDS_MAX 10000  /* of COUNT 1000: about 10 M keys */
static int list_key_only(cb_store_priv *p, const redisReply *hkeys, cb_store_list_fn fn,
                         void *ud) {
    char pattern[2 * 128 + 16], cursor[32] = "0";
    size_t w = 0;
    for (const char *c = p->prefix; *c; c++) {  /* the prefix is no glob */
        if (strchr("*?[]\\", *c)) pattern[w++] = '\\';
        pattern[w++] = *c;
    }
    snprintf(pattern + w, sizeof pattern - w, ":*:state");
    cb_breaker_opts dflt;
    cb_breaker_opts_init(&dflt);
    int n = 0;
    for (int round = 0; round < SCAN_ROUNDS_MAX; round++) {
        const char *scan[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        redisReply *r = store_command(p, p->cmd, mono() + p->timeout, 6, scan, NULL);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
            r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(r);
            return CB_ERR;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        const redisReply *keys = r->element[1];
        size_t cap = keys->elements * CB_NAME_MAX + 1;
        char *names = malloc(cap);
        if (!names) {
            freeReplyObject(r);
            return CB_ERR;
        }
        size_t found = key_names(p, keys, hkeys, names, cap);
        redisReply *v = NULL;
        if (found > 0) {
            char numkeys[32];
            int argc = 0;
            const char **argv = store_read_argv(p, names, found, &argc, numkeys, sizeof numkeys);
            if (argv) v = store_command(p, p->cmd, mono() + p->timeout, argc, argv, NULL);
            free(argv);
            if (!store_read_reply_ok(p, v, found)) {
                freeReplyObject(v);
                freeReplyObject(r);
                free(names);
                return CB_ERR;
            }
        }
        const char *name = names;
        for (size_t i = 0; i < found; i++, name += strlen(name) + 1) {
            double left;
            const redisReply *const *vals =
                (const redisReply *const *)v->element + i * RV_COUNT;
            keys_say k = store_keys_verdict(p, name, vals, dflt.reset_timeout, 0, &left);
            if (k != KEYS_OPEN && k != KEYS_FORCED) continue;
            fn(ud, name, "keys");
            n++;
        }
        free(names);
        freeReplyObject(v);
        freeReplyObject(r);
        if (strcmp(cursor, "0") == 0) return n;
    }
    fn(ud, "", "partial");
    return n;
}

int cb_store_list(cb_store *s, cb_store_list_fn fn, void *ud) {
    cb_store_priv *p = s->priv;
    if (s->err == CB_STORE_EOPTS || !p->connected || p->in_poll) return CB_ERR;
    char states[KEY_MAX];
    snprintf(states, sizeof states, "%s:states", p->prefix);
    const char *argv[] = {"HKEYS", states};
    redisReply *r = store_command(p, p->cmd, mono() + p->timeout, 2, argv, NULL);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        freeReplyObject(r);
        return CB_ERR;
    }
    int n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING || memchr(e->str, '\0', e->len)) continue;
        fn(ud, e->str, "cbreaker");  /* hiredis terminates bulk strings */
        n++;
    }
    int more = list_key_only(p, r, fn, ud);
    freeReplyObject(r);
    return more == CB_ERR ? CB_ERR : n + more;
}

typedef struct names_ud {
    cb_store_name_fn fn;
    void *ud;
} names_ud;

static void name_only(void *ud, const char *name, const char *source) {
    names_ud *n = ud;
    (void)source;
    n->fn(n->ud, name);
}

int cb_store_names(cb_store *s, cb_store_name_fn fn, void *ud) {
    names_ud n = {fn, ud};
    return cb_store_list(s, name_only, &n);
}

int cb_store_poll(cb_store *s) {
    if (s->err == CB_STORE_EOPTS) return CB_ERR;
    cb_htab_step(&s->priv->attached, NULL, attach_rehash);  /* growth ends without attaches */
    return poll_until(s->priv, mono() + s->priv->timeout, 1);
}

/* cb_store_poll, a reconnect bounded by `deadline`.  Not `explicit` (a
 * breaker call's tick): no peer-read work, neither sending a read nor
 * parsing or applying its reply (up to READ_NAMES_MAX names), so allow()
 * stays cheap whatever is attached; an explicit poll does it. */
static int poll_until(cb_store_priv *p, double deadline, int explicit) {
    if (p->in_poll) return 0;  /* an on_change callback polled again */
    p->in_poll = 1;
    p->last_poll = store_now_of(p);
    int applied = 0;
    if (!p->connected && p->last_poll >= p->next_attempt) try_connect(p, deadline);
    /* a read's reply waits for an explicit poll, unless writes pile up behind it */
    int reads = explicit || p->pending > MAX_PENDING / 2;
    for (int round = 0; p->connected && round < READS_PER_POLL; round++) {
        int read_next = p->pending && p->ring[p->head].what == INFLIGHT_READ;
        short cmd_ev = (short)((reads || !read_next ? POLLIN : 0) |
                               (p->unflushed || cb_conn_want_write(p->cmd) ? POLLOUT : 0));
        struct pollfd pf[2] = {{cb_conn_fd(p->cmd), cmd_ev, 0}, {cb_conn_fd(p->sub), POLLIN, 0}};
        /* TLS may hold decrypted bytes that poll cannot see */
        int cmd_buffered = cb_conn_pending(p->cmd), sub_buffered = cb_conn_pending(p->sub);
        if (poll(pf, 2, 0) <= 0 && !cmd_buffered && !sub_buffered) break;
        if ((pf[0].revents & (POLLIN | POLLHUP | POLLERR)) || (cmd_buffered && (cmd_ev & POLLIN))) {
            if (cb_conn_read(p->cmd) < 0) {
                fail(p, "read", p->cmd->errstr);
                break;
            }
            redisReply *r = NULL;
            while (p->pending && (reads || p->ring[p->head].what != INFLIGHT_READ) &&
                   cb_conn_get_reply(p->cmd, &r) == CB_OK && r) {
                settle(p, r);
                r = NULL;
            }
            if (!cb_conn_connected(p->cmd)) {  /* a reply over the limits */
                fail(p, "read", p->cmd->errstr);
                break;
            }
            if (p->broken) {
                store_drop(p);
                break;
            }
        }
        if (pf[0].revents & POLLOUT) {
            int done = 0;
            if (cb_conn_flush(p->cmd, &done) != CB_OK) {
                fail(p, "write", p->cmd->errstr);
                break;
            }
            p->unflushed = !done;
        }
        if ((pf[1].revents & (POLLIN | POLLHUP | POLLERR)) || sub_buffered) {
            if (cb_conn_read(p->sub) < 0) {
                fail(p, "subscription", p->sub->errstr);
                break;
            }
            redisReply *r = NULL;
            while (p->connected && cb_conn_get_reply(p->sub, &r) == CB_OK && r) {
                applied += on_sub_reply(p, r);
                freeReplyObject(r);
                r = NULL;
            }
            /* What is left is one reply in progress: hiredis keeps a bulk
             * string whole, so a huge one published by a peer would.  It
             * is dropped as it comes, never answered by disconnecting. */
            int dropped = p->connected ? cb_conn_drop_big_string(p->sub, SUB_BUF_MAX) : 0;
            if (dropped > 0) p->malformed++;
            if (p->connected && !cb_conn_connected(p->sub)) {
                fail(p, "subscription", p->sub->errstr);
                break;
            }
        }
    }
    if (p->connected && explicit) store_read_tick(p);
    p->in_poll = 0;
    if (explicit) store_apply_reads(p);
    return p->connected ? applied : (applied ? applied : CB_ERR);
}

int cb_store_wait(cb_store *s, double ms) {
    cb_store_priv *p = s->priv;
    if (s->err == CB_STORE_EOPTS || !p->connected) return CB_ERR;
    if (!(ms >= 0)) ms = 0;
    if (ms > 10000) ms = 10000;
    if (cb_conn_pending(p->sub)) return 1;
    int r = cb_wait_fd(cb_conn_fd(p->sub), POLLIN, mono() + ms / 1000);
    return r < 0 ? CB_ERR : r;
}

int cb_store_fd(const cb_store *s) {
    const cb_store_priv *p = s->priv;
    return p && p->connected ? cb_conn_fd(p->sub) : -1;
}

void cb_store_get_health(const cb_store *s, cb_store_health *h) {
    const cb_store_priv *p = s->priv;
    memset(h, 0, sizeof *h);
    h->last_error = s->err == CB_STORE_EOPTS ? s->errstr : "";
    h->id = "";
    if (!p || s->err == CB_STORE_EOPTS) return;
    h->connected = p->connected;
    h->last_error = p->last_error;
    h->id = p->id;
    h->reconnects = p->reconnects;
    h->failures = p->failures;
    h->published = p->published;
    h->received = p->received;
    h->applied = p->applied;
    h->own = p->own;
    h->malformed = p->malformed;
    h->dropped = p->dropped;
    h->unsigned_msgs = p->unsigned_msgs;
    h->bad_signature = p->bad_signature;
    h->stale = p->stale;
    h->replayed = p->replayed;
    h->peer_unparsed = p->peer_unparsed;
    h->peer_wrongtype = p->peer_wrongtype;
    h->attached = p->attached.count;
    h->backoff = p->connected ? 0 : p->backoff;
    double left = p->next_attempt - store_now_of(p);
    h->retry_in = p->connected || left < 0 ? 0 : left;
}

/* ---- replies from elsewhere (store_impl.h) ----------------------------------- */

int cb_store_interpret(cb_store *s, cb_reply_kind kind, const struct redisReply *r,
                       cb_breaker *b) {
    cb_store_priv *p = s->priv;
    if (s->err == CB_STORE_EOPTS || !r) return CB_ERR;
    int n = 0;
    p->in_poll = 1;  /* as in poll: callbacks polling again are no-ops */
    switch (kind) {
    case CB_REPLY_SUBSCRIPTION: n = on_sub_reply(p, r); break;
    case CB_REPLY_BOOT_HASH: import(p, r); break;
    case CB_REPLY_BOOT_ENTRY: p->in_poll = 0; import_one(p, r); break;
    case CB_REPLY_FLEET:
        if (!b || (cb_breaker_hook_of(b) != &broadcast_hook &&
                   cb_breaker_hook_of(b) != &shared_hook) ||
            ((attach *)cb_breaker_hook_ud(b))->p != p)
            n = CB_ERR;
        else store_follow_fleet(cb_breaker_hook_ud(b), r);
        break;
    default: n = CB_ERR;
    }
    p->in_poll = 0;
    return n;
}

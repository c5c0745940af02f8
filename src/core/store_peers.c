/* store_peers.c -- the store reads the per-field keys of peers that never
 * publish (a pybreaker service).  See store_priv.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "peer_time.h"
#include "store_priv.h"
#include "store_script.h"

/* ---- reading peers that never publish ------------------------------------------
 * A pybreaker service writes `state`, `counter` and `opened_at` and nothing
 * else: no channel message, no boot-hash entry.  Every peer_read_ms, an
 * explicit poll (never a breaker call: allow() does no such work) runs the
 * read script (store_script.h) over the attached names, READ_NAMES_MAX at a
 * time round robin, so N names are all read within ceil(N / READ_NAMES_MAX)
 * ticks, and a later poll applies the reply; attaching reads its own name
 * in the same round trip as the boot-hash import.  A reply is bounded: 65
 * bytes a value, a boot entry of at most 4200. */

enum { READ_KEYS = 4 };  /* per name: state, opened_at, open_until, forced */
static const int read_fields[READ_KEYS] = {K_STATE, K_OPENED_AT, K_OPEN_UNTIL, K_FORCED};

void store_free_reads(cb_store_priv *p) {
    while (p->ready) {
        peer_read *rd = p->ready;
        p->ready = rd->next;
        freeReplyObject(rd->reply);
        free(rd);
    }
}

/* The read script's last element: keys of another type, counted. */
int store_read_reply_ok(cb_store_priv *p, const redisReply *r, size_t n) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != n * RV_COUNT + 1) return 0;
    const redisReply *w = r->element[r->elements - 1];
    if (w->type == REDIS_REPLY_INTEGER && w->integer > 0) {
        p->peer_wrongtype += (uint64_t)w->integer;
        p->peer_unparsed += (uint64_t)w->integer;
    }
    return 1;
}

/* The reply to the oldest write on cmd was a read's: kept for poll. */
void store_read_done(cb_store_priv *p, redisReply *r) {
    inflight *e = &p->ring[p->head];
    peer_read *rd = e->rd;
    e->rd = NULL;
    if (rd && rd->tick) p->reading = 0;
    store_ring_pop(p, 1);
    if (!rd || !store_read_reply_ok(p, r, rd->n)) {
        if (r && r->type == REDIS_REPLY_ERROR) {
            store_note_error(p, "redis", r->str);
            p->broken = 1;  /* NOSCRIPT (flushed): a reconnect loads it again */
        }
        freeReplyObject(r);
        free(rd);
        return;
    }
    rd->reply = r;
    peer_read **tail = &p->ready;
    while (*tail) tail = &(*tail)->next;
    *tail = rd;
}

/* The read script's call for the n names at `names` (NUL-separated):
 * EVALSHA sha numkeys, four keys a name, the boot hash, the names.  Fills
 * *argv (malloc'd, with the keys after it); NULL when out of memory. */
const char **store_read_argv(cb_store_priv *p, const char *names, size_t n, int *argc,
                             char *numkeys, size_t numkeys_cap) {
    size_t plen = strlen(p->prefix), bytes = plen + sizeof ":states";
    const char *name = names;
    for (size_t i = 0; i < n; i++, name += strlen(name) + 1)
        for (int f = 0; f < READ_KEYS; f++)
            bytes += plen + strlen(name) + strlen(store_key_fields[read_fields[f]]) + 3;
    size_t count = 3 + n * (READ_KEYS + 1) + 1;
    const char **argv = malloc(count * sizeof *argv + bytes);
    if (!argv) return NULL;
    char *k = (char *)(argv + count);
    snprintf(numkeys, numkeys_cap, "%zu", n * READ_KEYS + 1);
    argv[0] = "EVALSHA";
    argv[1] = p->read_sha;
    argv[2] = numkeys;
    size_t a = 3;
    name = names;
    for (size_t i = 0; i < n; i++, name += strlen(name) + 1) {
        for (int f = 0; f < READ_KEYS; f++) {
            argv[a++] = k;
            k += sprintf(k, "%s:%s:%s", p->prefix, name, store_key_fields[read_fields[f]]) + 1;
        }
    }
    argv[a++] = k;
    sprintf(k, "%s:states", p->prefix);
    name = names;
    for (size_t i = 0; i < n; i++, name += strlen(name) + 1) argv[a++] = name;
    *argc = (int)a;
    return argv;
}

/* Appends rd's read on cmd; its reply comes back through settle. */
static int read_send(cb_store_priv *p, peer_read *rd) {
    char numkeys[32];
    int argc = 0, ok = CB_ERR;
    const char **argv = store_read_argv(p, rd->names, rd->n, &argc, numkeys, sizeof numkeys);
    if (argv) {
        ok = store_command_async(p, NULL, INFLIGHT_READ, argc, argv, NULL);
        if (ok == CB_OK) p->ring[(p->head + p->pending - 1) % MAX_PENDING].rd = rd;
    }
    free(argv);
    if (ok != CB_OK) free(rd);
    return ok;
}
/* A read of the names of up to READ_NAMES_MAX attached breakers, starting
 * at bucket *cursor (moved past the last bucket taken); NULL when none or
 * out of memory. */
static peer_read *read_collect(cb_store_priv *p, size_t *cursor) {
    const cb_htab *h = &p->attached;
    size_t nb = cb_htab_buckets(h), start = *cursor < nb ? *cursor : 0, taken = 0, n = 0, bytes = 0;
    for (; taken < nb && n < READ_NAMES_MAX; taken++) {  /* whole buckets */
        for (cb_hnode *e = cb_htab_bucket(h, (start + taken) % nb); e; e = e->next) {
            attach *a = (attach *)e;
            if (store_first_named(p, a->b->name, a->hash) != a) continue;  /* a name once */
            n++;
            bytes += strlen(a->b->name) + 1;
        }
    }
    *cursor = (start + taken) % nb;
    if (n == 0) return NULL;
    peer_read *rd = calloc(1, sizeof *rd + bytes);
    if (!rd) return NULL;
    char *w = rd->names;
    for (size_t k = 0; k < taken; k++) {
        for (cb_hnode *e = cb_htab_bucket(h, (start + k) % nb); e; e = e->next) {
            attach *a = (attach *)e;
            if (store_first_named(p, a->b->name, a->hash) != a) continue;
            size_t len = strlen(a->b->name) + 1;
            memcpy(w, a->b->name, len);
            w += len;
            rd->n++;
        }
    }
    rd->seq = p->seq;
    return rd;
}

/* Sends the periodic read when it is due (from poll, connected). */
void store_read_tick(cb_store_priv *p) {
    if (!(p->peer_read > 0) || p->reading || store_now_of(p) - p->last_read < p->peer_read) return;
    p->last_read = store_now_of(p);
    peer_read *rd = read_collect(p, &p->read_cursor);
    if (!rd) return;
    rd->tick = 1;
    if (read_send(p, rd) == CB_OK) p->reading = 1;
}

/* A value of the reply: its text, or NULL when the key is absent. */
static const char *read_value(const redisReply *v, size_t *len) {
    if (v->type != REDIS_REPLY_STRING) return NULL;
    *len = v->len;
    return v->str;
}

/* 1 when s[len] is exactly `word`: "open\0..." or "open " is not open. */
static int is_word(const char *s, size_t len, const char *word) {
    return s && len == strlen(word) && memcmp(s, word, len) == 0;
}

/* When the open that `opened_at`/`open_until` describe ends, in epoch ms;
 * 0 when neither says.  open_until is a cbreaker's; an opened_at after it
 * is a later open by a peer that writes no open_until, which lasts
 * `timeout` s, as that peer times it.  *from_until: open_until decided. */
static double open_deadline(cb_store_priv *p, double timeout, const redisReply *opened,
                            const redisReply *until, int *from_until) {
    double at = 0, end = 0;
    size_t len = 0;
    const char *v;
    int have_at = 0, have_end = 0;
    *from_until = 0;
    if ((v = read_value(opened, &len)) != NULL) {
        have_at = cb_peer_time_parse(v, len, &at) == 0;
        if (!have_at) p->peer_unparsed++;
    }
    if ((v = read_value(until, &len)) != NULL) {
        have_end = cb_peer_time_parse(v, len, &end) == 0;
        if (!have_end) p->peer_unparsed++;
    }
    if (have_at && (!have_end || at > end)) return at + timeout * 1000;
    *from_until = have_end;
    return have_end ? end : 0;
}

/* With a secret, a `forced` key counts only beside the name's boot entry,
 * signed, saying forcedOpen: anyone may write the keys (and must be able
 * to, for a pybreaker peer), only an instance with the secret can force.
 * Without one counted as unsigned or badly signed. */
int store_force_signed(cb_store_priv *p, const char *name, const redisReply *entry) {
    if (!p->secret) return 1;
    cb_message m;
    if (entry->type != REDIS_REPLY_STRING || cb_message_decode(entry->str, entry->len, &m)) {
        p->unsigned_msgs++;
        return 0;
    }
    return store_authentic(p, entry) && m.forced_open && strcmp(m.service_id, name) == 0;
}

/* What one name's keys say (v: the read's RV_COUNT values).  An open has
 * *left_s seconds left, at most `timeout` (an open learnt from keys alone
 * is re-read at each read, never trusted far ahead: a far-future opened_at
 * or a peer's clock ahead holds it only while the keys say open). */
keys_say store_keys_verdict(cb_store_priv *p, const char *name, const redisReply *const *v,
                            double timeout, double own_until, double *left_s) {
    size_t len = 0;
    const char *st = read_value(v[RV_STATE], &len);
    int forced = v[RV_FORCED]->type == REDIS_REPLY_INTEGER && v[RV_FORCED]->integer == 1;
    *left_s = 0;
    if (!st || is_word(st, len, "closed")) return KEYS_CLOSED;
    if (is_word(st, len, "half-open")) return KEYS_NONE;  /* a peer's probe: its outcome tells */
    if (is_word(st, len, "forced-open")) forced = 1;  /* as cbreaker 0.x wrote a force */
    else if (!is_word(st, len, "open")) {
        p->peer_unparsed++;
        return KEYS_NONE;
    }
    if (forced && store_force_signed(p, name, v[RV_ENTRY])) return KEYS_FORCED;
    int from_until;
    double end = open_deadline(p, timeout, v[RV_OPENED_AT], v[RV_OPEN_UNTIL], &from_until);
    if (from_until && own_until > 0 && end == own_until) return KEYS_OWN;
    double left = (end - store_wall_ms()) / 1000;
    if (!(left > 0)) return KEYS_NONE;  /* the peer probes next */
    *left_s = left < timeout ? left : timeout;
    return KEYS_OPEN;
}

/* Applies one name's per-field keys to `a`'s breaker.  Only what a key
 * says better than our own state: a peer's open or force over our closed
 * or half-open, a peer's close over an open that was a peer's; a force
 * learnt from the keys alone ends when they no longer say it.  One change
 * at most: a callback may detach the breaker. */
static void apply_keys(cb_store_priv *p, attach *a, const redisReply *const *v) {
    cb_breaker *b = a->b;
    cb_state local = (cb_state)b->state;
    if (local == CB_DISABLED) return;
    double left;
    keys_say k = store_keys_verdict(p, b->name, v, b->conf->o.reset_timeout, a->own_until, &left);
    if (local == CB_FORCED_OPEN && !a->from_peer) {
        if (k != KEYS_FORCED)
            store_announce(p, a, UNSENT_STATE);  /* ours, lost or expired: again */
        return;
    }
    cb_peer_state ps;
    if (local == CB_FORCED_OPEN)
        ps = a->from_keys && k != KEYS_FORCED ? CB_PEER_RECOVERED : CB_PEER_FORCED_OPEN;
    else if (k == KEYS_FORCED) ps = CB_PEER_FORCED_OPEN;
    else if (k == KEYS_CLOSED && a->from_peer && (local == CB_OPEN || local == CB_HALF_OPEN))
        ps = CB_PEER_CLOSED;
    else if (k == KEYS_OPEN && (local != CB_OPEN || a->from_peer)) ps = CB_PEER_OPEN;
    else return;
    if (ps == CB_PEER_FORCED_OPEN && local == CB_FORCED_OPEN) return;
    p->applying_keys = 1;
    cb_breaker_apply_peer(b, ps, left);  /* an open from a peer's keys: later deadline wins */
    p->applying_keys = 0;
}

typedef struct read_apply {
    uint64_t seq;
    const redisReply *const *v;
} read_apply;

static void apply_read(cb_store_priv *p, attach *a, void *ud) {
    const read_apply *ra = ud;
    if (a->seq <= ra->seq) apply_keys(p, a, ra->v);
}

/* Applies the reads whose replies came, to every breaker of each name
 * that did not change since the read was sent. */
void store_apply_reads(cb_store_priv *p) {
    int was = p->in_poll;
    p->in_poll = 1;  /* callbacks polling again are no-ops */
    while (p->ready) {
        peer_read *rd = p->ready;
        p->ready = rd->next;
        const char *name = rd->names;
        for (size_t i = 0; i < rd->n; i++, name += strlen(name) + 1) {
            const redisReply *const *v =
                (const redisReply *const *)rd->reply->element + i * RV_COUNT;
            read_apply ra = {rd->seq, v};
            store_each_named(p, name, store_hash_name(p, name), apply_read, &ra);
        }
        freeReplyObject(rd->reply);
        free(rd);
    }
    p->in_poll = was;
}

/* A read of one name, for attaching: appended before the boot import. */
void store_read_one(cb_store_priv *p, const char *name) {
    size_t len = strlen(name) + 1;
    peer_read *rd = calloc(1, sizeof *rd + len);
    if (!rd) return;
    memcpy(rd->names, name, len);
    rd->n = 1;
    rd->seq = p->seq;
    read_send(p, rd);
}

/* store_shared.c -- shared mode: each recorded outcome is one EVALSHA of
 * the store's script, which keeps the fleet's counts and transitions in
 * Redis; the answer moves the local breaker.  See store_priv.h. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store_priv.h"
#include "store_script.h"

/* Applies the fleet's answer {state, ms left, ...} to the local breaker.
 * An open lasts at most the longer of our timeouts from now: the keys it
 * was read from are unsigned, and every record asks again (a longer open
 * that an instance announced reaches us on the channel). */
void store_follow_fleet(attach *a, const redisReply *r) {
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 2 || r->elements > 5 ||
        r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_INTEGER)
        return;
    const char *st = r->element[0]->str;
    cb_state local = (cb_state)a->b->state;
    double cap = a->b->conf->o.reset_timeout;
    if (a->b->open_timeout > cap) cap = a->b->open_timeout;
    if (strcmp(st, "open") == 0) {
        double left = (double)r->element[1]->integer / 1000;
        cb_breaker_apply_peer(a->b, CB_PEER_OPEN, left < cap ? left : cap);
    }
    else if (strcmp(st, "forced-open") == 0 && local != CB_FORCED_OPEN)
        cb_breaker_apply_peer(a->b, CB_PEER_FORCED_OPEN, 0);
    else if (strcmp(st, "closed") == 0 &&
             (local == CB_HALF_OPEN || (local == CB_OPEN && a->from_peer)))
        cb_breaker_apply_peer(a->b, CB_PEER_CLOSED, 0);  /* a local trip protects on */
}

/* follow_fleet, marking what it applies as learnt from the keys (a force
 * so learnt ends when a peer read finds the keys no longer say it). */
static void follow_fleet_keys(attach *a, const redisReply *r) {
    a->p->applying_keys = 1;
    store_follow_fleet(a, r);
    a->p->applying_keys = 0;
}

/* The script's answer says forced-open on the strength of a boot entry
 * (with a secret): 1 when that entry is not signed, or not a force of
 * this name (counted). */
static int force_forged(cb_store_priv *p, const char *name, const redisReply *r) {
    if (!p->secret || !r || r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_STRING || strcmp(r->element[0]->str, "forced-open"))
        return 0;
    return !(r->elements == 5 && store_force_signed(p, name, r->element[4]));
}

/* Keys of another type than string the script met, counted. */
static void count_wrongtype(cb_store_priv *p, const redisReply *r) {
    if (r && r->type == REDIS_REPLY_ARRAY && r->elements >= 4 &&
        r->element[3]->type == REDIS_REPLY_INTEGER && r->element[3]->integer > 0) {
        p->peer_wrongtype += (uint64_t)r->element[3]->integer;
        p->peer_unparsed += (uint64_t)r->element[3]->integer;
    }
}

static redisReply *shared_call_once(cb_store_priv *p, attach *a, const char *op,
                                    const char *outcome, int no_force) {
    double deadline = store_call_deadline(p, a->b, store_record_seq(a->b));
    char fth[16], sth[16], tmo[32], quorum[16];
    const cb_breaker_opts *o = &a->b->conf->o;
    snprintf(fth, sizeof fth, "%u", o->failure_threshold ? o->failure_threshold : UINT32_MAX);
    snprintf(sth, sizeof sth, "%u", o->success_threshold);
    snprintf(tmo, sizeof tmo, "%.0f", ceil(a->b->open_timeout * 1000));
    snprintf(quorum, sizeof quorum, "%u", p->quorum);
    script_call sc;
    store_call_init(p, &sc, op, a->b->name);
    store_call_arg(&sc, outcome);
    store_call_arg(&sc, p->id);
    store_call_arg(&sc, fth);
    store_call_arg(&sc, sth);
    store_call_arg(&sc, tmo);
    store_call_arg(&sc, quorum);
    store_call_arg(&sc, p->secret ? "1" : "0");  /* signed: the script cannot sign or verify */
    store_call_arg(&sc, no_force ? "1" : "0");
    store_call_lens(&sc);
    redisReply *r = store_command(p, p->cmd, deadline, sc.argc, sc.argv, sc.lens);
    if (r && r->type == REDIS_REPLY_ERROR) {
        int noscript = strncmp(r->str, "NOSCRIPT", 8) == 0;
        store_note_error(p, "redis", r->str);
        freeReplyObject(r);
        if (noscript) store_drop(p);  /* counts the failure */
        else p->failures++;     /* a refused round trip (NOPERM, OOM, READONLY) is one too */
        return NULL;
    }
    count_wrongtype(p, r);
    return r;
}

/* A record or trip: asked again without the force when the entry behind a
 * forced-open answer is not signed, so unsigned keys never force. */
static redisReply *shared_call(cb_store_priv *p, attach *a, const char *op, const char *outcome) {
    redisReply *r = shared_call_once(p, a, op, outcome, 0);
    if (!force_forged(p, a->b->name, r)) return r;
    freeReplyObject(r);
    return p->connected ? shared_call_once(p, a, op, outcome, 1) : NULL;
}

/* 1 when the script's answer says this call changed the fleet's state. */
static int fleet_changed(const redisReply *r) {
    return r && r->type == REDIS_REPLY_ARRAY && r->elements >= 3 &&
           r->element[2]->type == REDIS_REPLY_INTEGER && r->element[2]->integer == 1;
}

/* With a secret the script is quiet: the instance whose call changed the
 * fleet announces the change, signed, as broadcast mode would. */
static void announce_fleet(cb_store_priv *p, attach *a, const redisReply *r) {
    if (!p->secret || !fleet_changed(r) || !p->connected ||
        r->element[0]->type != REDIS_REPLY_STRING)
        return;
    /* Only what the local breaker now agrees with: a local trip that
     * protects on must not overwrite the fleet's `closed`. */
    cb_state s = (cb_state)a->b->state;
    const char *fleet = r->element[0]->str;
    if ((strcmp(fleet, "open") == 0 && s == CB_OPEN) ||
        (strcmp(fleet, "closed") == 0 && s == CB_CLOSED)) {
        a->from_peer = a->from_keys = 0;  /* ours to republish after a reconnect */
        store_announce(p, a, UNSENT_STATE);
    }
}

void store_shared_trip(cb_store_priv *p, attach *a) {
    if (!p->connected) return;
    redisReply *r = shared_call(p, a, "trip", "failure");
    announce_fleet(p, a, r);  /* the local breaker is open already */
    freeReplyObject(r);
}

void store_hook_record(void *ud, cb_breaker *b, cb_outcome outcome) {
    attach *a = ud;
    cb_store_priv *p = a->p;
    (void)b;
    if (!p->connected) return;  /* local counting until Redis is back */
    redisReply *r = shared_call(p, a, "record", cb_outcome_names[outcome]);
    follow_fleet_keys(a, r);
    announce_fleet(p, a, r);
    freeReplyObject(r);
}

/* Half-open in shared mode: one probe fleet-wide, through an expiring lease. */
int store_hook_admit(void *ud, cb_breaker *b) {
    attach *a = ud;
    cb_store_priv *p = a->p;
    if (!p->connected) return 1;  /* alone, the local permits decide */
    char key[KEY_MAX], px[32];
    snprintf(key, sizeof key, "%s:%s:lease", p->prefix, b->name);
    double pt = b->conf->o.probe_timeout > 0 ? b->conf->o.probe_timeout : b->conf->o.reset_timeout;
    snprintf(px, sizeof px, "%.0f", pt * 1000 > 1 ? ceil(pt * 1000) : 1);
    const char *argv[] = {"SET", key, p->id, "NX", "PX", px};
    double deadline = store_call_deadline(p, b, store_allow_seq(b));
    redisReply *r = store_command(p, p->cmd, deadline, 6, argv, NULL);
    if (!r) return 1;
    int got = r->type == REDIS_REPLY_STATUS;  /* OK; nil when another holds it */
    freeReplyObject(r);
    return got;
}

/* replay_guard.c -- the last message accepted per (origin, name), in a
 * fixed table (see replay_guard.h). */
#include <stdlib.h>

#include "replay_guard.h"

typedef struct seen {
    uint64_t key;  /* hash of origin and name; 0: empty */
    double order;  /* the last accepted message's order key */
    double ts;     /* ... and its ts, ms */
} seen;

typedef struct seen_set {
    seen e[CB_REPLAY_WAYS];
    double floor_ts;  /* an unknown key's message must be newer than this (ms) */
} seen_set;

struct cb_replay_guard {
    seen_set sets[CB_REPLAY_SETS];
};

cb_replay_guard *cb_replay_guard_new(void) {
    return calloc(1, sizeof(cb_replay_guard));
}

static uint64_t key_of(const char *origin, const char *name) {
    uint64_t h = 14695981039346656037u;  /* FNV-1a 64 over origin, NUL, name */
    for (const char *s = origin; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    h *= 1099511628211u;
    for (const char *s = name; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h ? h : 1;
}

int cb_replay_guard_accept(cb_replay_guard *g, const char *origin, const char *name,
                           double order, double ts) {
    uint64_t key = key_of(origin, name);
    seen_set *set = &g->sets[(key ^ (key >> 32)) & (CB_REPLAY_SETS - 1)];
    seen *victim = NULL;
    for (int i = 0; i < CB_REPLAY_WAYS; i++) {
        seen *e = &set->e[i];
        if (e->key == key) {
            if (!(order > e->order)) return 0;  /* not newer: a replay */
            e->order = order;
            e->ts = ts;
            return 1;
        }
        if (!victim || (victim->key && (!e->key || e->ts < victim->ts))) victim = e;
    }
    if (!(ts > set->floor_ts)) return 0;  /* as old as what this set forgot */
    /* Forgetting an entry raises the set's floor to its ts: a replay of
     * what it held is refused still.  One out of the window costs nothing
     * (every message accepted is newer than now - window). */
    if (victim->key && victim->ts > set->floor_ts) set->floor_ts = victim->ts;
    victim->key = key;
    victim->order = order;
    victim->ts = ts;
    return 1;
}

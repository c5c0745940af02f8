/* replay_guard.h -- which signed channel messages are new: a message is
 * applied only when it is newer than the last one applied from the same
 * origin for the same name, so a replayed message (a force-open replayed
 * after a reset) is refused.  Bounded memory whatever the flood: a fixed
 * set-associative table; when a set is full its oldest entry goes, and the
 * set then refuses unknown pairs whose message is not newer than the one it
 * forgot (an entry out of the replay window costs nothing: every message
 * accepted is newer).  Internal to the core. */
#ifndef CB_REPLAY_GUARD_H
#define CB_REPLAY_GUARD_H

#include <stddef.h>
#include <stdint.h>

#define CB_REPLAY_SETS 1024  /* a power of two */
#define CB_REPLAY_WAYS 4     /* so 4096 (origin, name) pairs remembered at once */

typedef struct cb_replay_guard cb_replay_guard;

/* Returns a guard, or NULL when out of memory.  Free with free(). */
cb_replay_guard *cb_replay_guard_new(void);

/* The message from `origin` about `name` with order key `order` (a number
 * that grows with every message of one origin) and `ts` (ms on the
 * sender's clock, already checked to be within the replay window of now):
 * returns 1 when it is newer than what was accepted from that origin for
 * that name (it is then remembered), 0 for a replay or a reordering.  Under
 * a flood of more pairs than the table holds inside the window, a message
 * of a pair not remembered must also be newer (ts) than the newest its set
 * forgot. */
int cb_replay_guard_accept(cb_replay_guard *g, const char *origin, const char *name,
                           double order, double ts);

#endif

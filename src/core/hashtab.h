/* hashtab.h -- the core's one hash table: chained, intrusive (a node is a
 * link inside the caller's struct, no allocation per entry), growing
 * incrementally as Redis's dict does: while it grows, each call moves one
 * bucket to the new table, so a million-entry table never stops a call
 * for a full rehash.  The table stores no hashes: growth asks the caller
 * to hash a node again.  Not thread-safe. */
#ifndef CB_HASHTAB_H
#define CB_HASHTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct cb_hnode {
    struct cb_hnode *next;
} cb_hnode;

typedef struct cb_htab {
    cb_hnode **t[2];  /* t[1] only while growing */
    size_t size[2];   /* 0 or a power of two */
    size_t count;
    size_t rehash;    /* next bucket of t[0] to move; SIZE_MAX when not growing */
} cb_htab;

/* The hash of node `n` again (growth moves nodes by it). */
typedef uint64_t (*cb_htab_hash_fn)(const void *ud, const cb_hnode *n);

/* An empty table.  Returns CB_ERR when out of memory. */
int cb_htab_init(cb_htab *h);

/* Frees the buckets, not the nodes.  Safe on a table init failed on. */
void cb_htab_release(cb_htab *h);

/* The chain of table `i` (0 or 1) where a node hashed `hash` would be, or
 * NULL when that table is absent.  A lookup walks both:
 *   for (int i = 0; i < 2; i++) for (n = chain ? *chain : NULL; ...) */
static inline cb_hnode **cb_htab_chain(const cb_htab *h, int i, uint64_t hash) {
    return h->size[i] ? &h->t[i][hash & (h->size[i] - 1)] : NULL;
}

/* The buckets of both tables, and bucket k of them (the old table's, then
 * the new one's): a cursor that resumes a walk where it stopped. */
static inline size_t cb_htab_buckets(const cb_htab *h) {
    return h->size[0] + h->size[1];
}

static inline cb_hnode *cb_htab_bucket(const cb_htab *h, size_t k) {
    return k < h->size[0] ? h->t[0][k] : h->t[1][k - h->size[0]];
}

/* Links `n`; starts growing once there are more nodes than buckets (out of
 * memory, chains just get longer).  Never fails. */
void cb_htab_insert(cb_htab *h, cb_hnode *n, uint64_t hash);

/* Unlinks `n`, hashed `hash`; no-op when it is not there. */
void cb_htab_unlink(cb_htab *h, cb_hnode *n, uint64_t hash);

/* While growing, moves one bucket (skipping at most a few empty ones) to the
 * new table.  Call it once per operation on the table. */
void cb_htab_step(cb_htab *h, const void *ud, cb_htab_hash_fn hf);

/* Calls fn(n, ud) for every node until it returns non-zero; fn may unlink
 * or free the node it is given, nothing else.  Returns fn's last answer. */
int cb_htab_foreach(cb_htab *h, int (*fn)(cb_hnode *n, void *ud), void *ud);

#endif

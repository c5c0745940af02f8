/* hashtab.c -- the core's one hash table (see hashtab.h). */
#include <stdlib.h>
#include <string.h>

#include "cbreaker.h"  /* CB_OK, CB_ERR */
#include "hashtab.h"

#define HT_MIN 16           /* buckets of a new table */
#define HT_EMPTY_VISITS 10  /* empty buckets a rehash step may skip */

int cb_htab_init(cb_htab *h) {
    memset(h, 0, sizeof *h);
    h->rehash = SIZE_MAX;
    h->t[0] = calloc(HT_MIN, sizeof *h->t[0]);
    h->size[0] = h->t[0] ? HT_MIN : 0;
    return h->t[0] ? CB_OK : CB_ERR;
}

void cb_htab_release(cb_htab *h) {
    free(h->t[0]);
    free(h->t[1]);
    h->t[0] = h->t[1] = NULL;
    h->size[0] = h->size[1] = 0;
}

void cb_htab_insert(cb_htab *h, cb_hnode *n, uint64_t hash) {
    cb_hnode **chain = cb_htab_chain(h, h->rehash != SIZE_MAX, hash);
    n->next = *chain;
    *chain = n;
    h->count++;
    if (h->rehash == SIZE_MAX && h->count > h->size[0]) {
        /* Start growing; calloc of a large table maps zero pages, so it is
         * cheap.  Each call moves a bucket, so growth ends long before the
         * new table fills.  Out of memory, chains just get longer. */
        cb_hnode **t = calloc(h->size[0] * 2, sizeof *t);
        if (t) {
            h->t[1] = t;
            h->size[1] = h->size[0] * 2;
            h->rehash = 0;
        }
    }
}

void cb_htab_unlink(cb_htab *h, cb_hnode *n, uint64_t hash) {
    for (int i = 0; i < 2; i++) {
        cb_hnode **pp = cb_htab_chain(h, i, hash);
        for (; pp && *pp; pp = &(*pp)->next) {
            if (*pp == n) {
                *pp = n->next;
                h->count--;
                return;
            }
        }
    }
}

void cb_htab_step(cb_htab *h, const void *ud, cb_htab_hash_fn hf) {
    if (h->rehash == SIZE_MAX) return;
    for (int visits = HT_EMPTY_VISITS; !h->t[0][h->rehash];) {
        if (++h->rehash == h->size[0]) goto done;
        if (--visits == 0) return;
    }
    for (cb_hnode *n = h->t[0][h->rehash], *next; n; n = next) {
        next = n->next;
        cb_hnode **chain = cb_htab_chain(h, 1, hf(ud, n));
        n->next = *chain;
        *chain = n;
    }
    h->t[0][h->rehash] = NULL;
    if (++h->rehash < h->size[0]) return;
done:
    free(h->t[0]);
    h->t[0] = h->t[1];
    h->size[0] = h->size[1];
    h->t[1] = NULL;
    h->size[1] = 0;
    h->rehash = SIZE_MAX;
}

int cb_htab_foreach(cb_htab *h, int (*fn)(cb_hnode *n, void *ud), void *ud) {
    for (int i = 0; i < 2; i++) {
        for (size_t k = 0; k < h->size[i]; k++) {
            for (cb_hnode *n = h->t[i][k], *next; n; n = next) {
                next = n->next;  /* fn may unlink or free n */
                int r = fn(n, ud);
                if (r) return r;
            }
        }
    }
    return 0;
}

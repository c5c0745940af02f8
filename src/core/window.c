/* window.c -- count-based ring of outcomes, or time-based ring of buckets.
 * Both keep running totals, so reading a rate is O(1); expiring time buckets
 * touches at most `size` buckets per call. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "window.h"

enum { CB_SLOT_USED = 1, CB_SLOT_FAILED = 2, CB_SLOT_SLOW = 4 };
enum { CB_MAX_BUCKETS = 64 };

cb_window *cb_window_new(uint32_t calls, double seconds) {
    cb_window *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    if (seconds > 0) {
        /* One bucket per second up to CB_MAX_BUCKETS, wider buckets beyond. */
        double n = ceil(seconds);
        w->size = n > CB_MAX_BUCKETS ? CB_MAX_BUCKETS : (uint32_t)n;
        if (w->size < 1) w->size = 1;
        w->bucket_width = seconds / w->size;
        w->buckets = calloc(w->size, sizeof *w->buckets);
        if (!w->buckets) { free(w); return NULL; }
        w->head_epoch = INT64_MIN;
    } else {
        w->size = calls ? calls : 1;
        w->slots = calloc(w->size, 1);
        if (!w->slots) { free(w); return NULL; }
    }
    return w;
}

void cb_window_free(cb_window *w) {
    if (!w) return;
    free(w->slots);
    free(w->buckets);
    free(w);
}

void cb_window_clear(cb_window *w) {
    if (w->slots) memset(w->slots, 0, w->size);
    if (w->buckets) memset(w->buckets, 0, w->size * sizeof *w->buckets);
    w->head = 0;
    w->calls = w->failures = w->slow = 0;
    w->head_epoch = INT64_MIN;
}

static cb_bucket *bucket_at(cb_window *w, int64_t epoch) {
    int64_t i = epoch % (int64_t)w->size;
    return &w->buckets[i < 0 ? i + w->size : i];
}

static void drop_bucket(cb_window *w, cb_bucket *b) {
    w->calls -= b->calls;
    w->failures -= b->failures;
    w->slow -= b->slow;
    b->calls = b->failures = b->slow = 0;
}

void cb_window_expire(cb_window *w, double now) {
    if (!w->buckets) return;
    double e = floor(now / w->bucket_width);
    /* Clamp before converting: a huge clock value must not overflow. */
    int64_t epoch = e > 9e18 ? INT64_MAX : e < -9e18 ? INT64_MIN + 1 : (int64_t)e;
    /* The gap is taken unsigned: two clamped bucket numbers are 2^64 apart. */
    if (w->head_epoch == INT64_MIN ||
        (epoch > w->head_epoch &&
         (uint64_t)epoch - (uint64_t)w->head_epoch >= w->size)) {
        for (uint32_t i = 0; i < w->size; i++) drop_bucket(w, &w->buckets[i]);
        w->head_epoch = epoch;
        return;
    }
    while (w->head_epoch < epoch) {  /* at most size - 1 steps */
        w->head_epoch++;
        drop_bucket(w, bucket_at(w, w->head_epoch));
    }
}

void cb_window_add(cb_window *w, double now, int failed, int slow) {
    if (w->buckets) {
        cb_window_expire(w, now);
        cb_bucket *b = bucket_at(w, w->head_epoch);
        b->calls++;
        b->failures += failed != 0;
        b->slow += slow != 0;
    } else {
        uint8_t *s = &w->slots[w->head];
        if (*s & CB_SLOT_USED) {  /* the oldest outcome leaves the ring */
            w->calls--;
            w->failures -= (*s & CB_SLOT_FAILED) != 0;
            w->slow -= (*s & CB_SLOT_SLOW) != 0;
        }
        *s = (uint8_t)(CB_SLOT_USED | (failed ? CB_SLOT_FAILED : 0) |
                       (slow ? CB_SLOT_SLOW : 0));
        if (++w->head == w->size) w->head = 0;
    }
    w->calls++;
    w->failures += failed != 0;
    w->slow += slow != 0;
}

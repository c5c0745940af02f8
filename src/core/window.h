/* window.h -- the sliding window of recent outcomes behind the failure-rate
 * and slow-call-rate trips.  Private to the core. */
#ifndef CB_WINDOW_H
#define CB_WINDOW_H

#include <stdint.h>

typedef struct cb_bucket {
    uint32_t calls, failures, slow;
} cb_bucket;

typedef struct cb_window {
    uint32_t size;        /* slots (count mode) or buckets (time mode) */
    uint32_t head;        /* next slot to write (count mode) */
    uint32_t calls, failures, slow;  /* totals over the window */
    double bucket_width;  /* seconds per bucket; 0 in count mode */
    int64_t head_epoch;   /* bucket number of the newest bucket (time mode) */
    uint8_t *slots;       /* count mode: CB_SLOT_* bits per call */
    cb_bucket *buckets;   /* time mode */
} cb_window;

/* Allocates a count window of `calls` slots, or a time window spanning
 * `seconds` when seconds > 0.  Returns NULL when out of memory. */
cb_window *cb_window_new(uint32_t calls, double seconds);
void cb_window_free(cb_window *w);
/* Forgets every outcome. */
void cb_window_clear(cb_window *w);
/* Drops what fell out of a time window by `now` (no-op in count mode). */
void cb_window_expire(cb_window *w, double now);
/* Adds one outcome at `now`. */
void cb_window_add(cb_window *w, double now, int failed, int slow);

#endif

/* rng_impl.h -- xoshiro256** (Blackman & Vigna) as inline functions, so the
 * core's hot loops (a bandit select draws some 32 numbers) pay no call per
 * draw.  rng.c exports the same generator as cb_rng_next / cb_rng_uniform.
 * Never installed. */
#ifndef CB_RNG_IMPL_H
#define CB_RNG_IMPL_H

#include "cbreaker.h"

static inline uint64_t cb_rotl64(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

static inline uint64_t cb_rng_next_inline(cb_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = cb_rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = cb_rotl64(s[3], 45);
    return result;
}

/* Uniform double in [0, 1): the top 53 bits. */
static inline double cb_rng_uniform_inline(cb_rng *r) {
    return (double)(cb_rng_next_inline(r) >> 11) * 0x1.0p-53;
}

#endif

/* rng.c -- xoshiro256** (Blackman & Vigna), seeded through splitmix64 so
 * that any 64-bit seed, 0 included, gives a well-mixed state. */
#include "rng_impl.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void cb_rng_seed(cb_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

uint64_t cb_rng_next(cb_rng *r) {
    return cb_rng_next_inline(r);
}

double cb_rng_uniform(cb_rng *r) {
    return cb_rng_uniform_inline(r);
}

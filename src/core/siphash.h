/* siphash.h -- SipHash-1-3 (Aumasson & Bernstein), the keyed hash of the
 * core's hash tables: with a per-table random key, crafted keys cannot
 * pile into one chain.  Redis hashes its dict with the same function. */
#ifndef CB_SIPHASH_H
#define CB_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

/* The hash of `len` bytes at `in` under the key (k0, k1).  In native byte
 * order: a hash is never stored or sent anywhere. */
uint64_t cb_siphash13(const void *in, size_t len, uint64_t k0, uint64_t k1);

#endif

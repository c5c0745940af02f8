/* fuzz_peer_time.c -- opened_at as a peer in another language wrote it:
 * any bytes a Redis key can hold.  An accepted value is an instant from
 * 1970 to 9999 (ms); a rejected one leaves the output alone. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "peer_time.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    double ms = -7;
    if (cb_peer_time_parse((const char *)data, size, &ms) == 0) {
        if (!isfinite(ms) || ms < 0 || ms >= 253402300800000.0) __builtin_trap();
        /* what a reader does with it: a deadline in whole ms */
        volatile long long whole = (long long)floor(ms);
        (void)whole;
    } else if (ms != -7) {
        __builtin_trap();
    }
    return 0;
}

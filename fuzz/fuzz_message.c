/* fuzz_message.c -- the channel message decoder and signature check: any
 * bytes from the channel.  A decoded message must encode again and decode
 * to the same; a signed one must verify, and not with another key. */
#include <stdint.h>
#include <string.h>

#include "store_impl.h"

static const unsigned char key[] = "fuzzing-secret-0123456789";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cb_message m, again;
    (void)cb_message_verify((const char *)data, size, key, sizeof key - 1);
    if (cb_message_decode((const char *)data, size, &m) != NULL) return 0;
    char buf[CB_MESSAGE_MAX + 1];
    int n = cb_message_encode(&m, buf, sizeof buf);
    if (n < 0) return 0;  /* a number cJSON prints longer than it read */
    if (cb_message_decode(buf, (size_t)n, &again) != NULL ||
        strcmp(again.service_id, m.service_id) != 0 || strcmp(again.origin, m.origin) != 0 ||
        again.open != m.open || again.forced_open != m.forced_open ||
        again.recovered != m.recovered)
        __builtin_trap();
    int s = cb_message_sign(buf, (size_t)n, sizeof buf, key, sizeof key - 1);
    if (s > 0 && (cb_message_verify(buf, (size_t)s, key, sizeof key - 1) != CB_SIG_OK ||
                  cb_message_verify(buf, (size_t)s, (const unsigned char *)"x", 1) == CB_SIG_OK ||
                  cb_message_decode(buf, (size_t)s, &again) != NULL))
        __builtin_trap();
    return 0;
}

/* fuzz_store_reply.c -- what the store makes of Redis replies: the bytes
 * are RESP, read by hiredis's reader as the store's connections would, and
 * each reply is interpreted as a subscription reply, the boot hash, one
 * boot entry or the shared script's answer, by stores with and without a
 * secret, to attached breakers named as the pub/sub manager's messages name
 * them.
 * No network: the stores' URL is a socket path that does not exist. */
#include <stdint.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cb_store *store(cb_manual_clock *clock, cb_store_mode mode, const char *secret) {
    cb_store_opts o;
    cb_store_opts_init(&o);
    o.url = "unix:///nonexistent/cbreaker-fuzz.sock";
    o.id = "me";
    o.mode = mode;
    o.secret = secret;
    o.clock = (cb_clock){cb_manual_clock_now, clock};
    return cb_store_new(&o);
}

static cb_breaker *breaker(cb_manual_clock *clock, const char *name) {
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    o.name = name;
    o.failure_threshold = 2;
    o.reset_timeout = 10;
    o.clock = (cb_clock){cb_manual_clock_now, clock};
    return cb_breaker_new(&o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    /* hiredis allocates a multi-bulk's element array as its header says,
     * before the elements come: "*1000000000" from the server itself is out
     * of scope (a peer on the channel only chooses a bulk string). */
    for (size_t i = 1; i + 5 < size; i++)
        if (data[i] == '*' && data[i + 1] >= '0' && data[i + 1] <= '9' &&
            data[i + 2] >= '0' && data[i + 2] <= '9' && data[i + 3] >= '0' &&
            data[i + 3] <= '9' && data[i + 4] >= '0' && data[i + 4] <= '9')
            return 0;
    cb_manual_clock clock = {1000};
    cb_store *plain = store(&clock, CB_STORE_BROADCAST, NULL);
    cb_store *signed_ = store(&clock, CB_STORE_SHARED, "fuzzing-secret-0123456789");
    static const char *const names[] = {"svc", "svc", "a", "deepseek::deepseek-chat"};
    cb_breaker *b[8];
    for (int i = 0; i < 8; i++) {
        b[i] = breaker(&clock, names[i % 4]);
        cb_store_attach(i < 4 ? plain : signed_, b[i]);
    }
    if (data[0] & 0x80) cb_breaker_force_open(b[0]);
    if (data[0] & 0x40) cb_breaker_force_open(b[4]);

    redisReader *rd = redisReaderCreate();
    redisReaderFeed(rd, (const char *)data + 1, size - 1);
    void *r = NULL;
    for (int k = 0; k < 64 && redisReaderGetReply(rd, &r) == REDIS_OK && r; k++) {
        cb_reply_kind kind = (cb_reply_kind)((data[0] + k) % CB_REPLY_KIND_COUNT);
        cb_store_interpret(plain, kind, r, b[k % 4]);
        cb_store_interpret(signed_, kind, r, b[4 + k % 4]);
        for (int i = 0; i < 8; i++) {
            cb_state s = cb_breaker_state(b[i]);
            if (s != CB_CLOSED && s != CB_OPEN && s != CB_HALF_OPEN && s != CB_FORCED_OPEN)
                __builtin_trap();
            (void)cb_breaker_allow(b[i]);
        }
        freeReplyObject(r);
        r = NULL;
        clock.now += 1;
    }
    redisReaderFree(rd);
    for (int i = 0; i < 8; i += 2) cb_breaker_free(b[i]);  /* some detach by dying */
    cb_store_free(plain);
    cb_store_free(signed_);
    for (int i = 1; i < 8; i += 2) cb_breaker_free(b[i]);
    return 0;
}

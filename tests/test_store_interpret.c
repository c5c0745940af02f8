/* test_store_interpret.c -- the store's reading of Redis replies, apart
 * from any connection (cb_store_interpret, the fuzzer's entry): what a
 * subscription reply, a boot entry and the shared script's answer do to an
 * attached breaker, with and without a secret. */
#include <stdio.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "store_impl.h"
#include "test.h"

static cb_manual_clock clock_ = {1000};

static cb_store *store(const char *secret) {
    cb_store_opts o;
    cb_store_opts_init(&o);
    o.url = "unix:///nonexistent/cbreaker-test.sock";  /* never connects */
    o.id = "me";
    o.secret = secret;
    o.clock = (cb_clock){cb_manual_clock_now, &clock_};
    return cb_store_new(&o);
}

static cb_breaker *breaker(void) {
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    o.name = "svc";
    o.clock = (cb_clock){cb_manual_clock_now, &clock_};
    return cb_breaker_new(&o);
}

/* One reply parsed from RESP text. */
static redisReply *reply(const char *resp) {
    redisReader *rd = redisReaderCreate();
    void *r = NULL;
    redisReaderFeed(rd, resp, strlen(resp));
    if (redisReaderGetReply(rd, &r) != REDIS_OK) r = NULL;
    redisReaderFree(rd);
    return r;
}

static redisReply *message(const char *json) {
    char resp[1024];
    snprintf(resp, sizeof resp, "*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n$%zu\r\n%s\r\n", strlen(json),
             json);
    return reply(resp);
}

static redisReply *bulk(const char *json) {
    char resp[1024];
    snprintf(resp, sizeof resp, "$%zu\r\n%s\r\n", strlen(json), json);
    return reply(resp);
}

static int interpret(cb_store *s, cb_reply_kind kind, redisReply *r, cb_breaker *b) {
    int n = cb_store_interpret(s, kind, r, b);
    freeReplyObject(r);
    return n;
}

int main(void) {
    cb_store *plain = store(NULL), *signed_ = store("0123456789abcdef-shared");
    cb_breaker *b = breaker(), *c = breaker();
    cb_store_attach(plain, b);
    cb_store_attach(signed_, c);
    const char *forced = "{\"serviceId\":\"svc\",\"state\":\"open\",\"forcedOpen\":true}";
    const char *closed = "{\"serviceId\":\"svc\",\"state\":\"closed\"}";
    const char *recovered = "{\"serviceId\":\"svc\",\"state\":\"closed\",\"recovered\":true}";

    test("a forced-open on the channel forces the attached breaker open");
    test_cond(interpret(plain, CB_REPLY_SUBSCRIPTION, message(forced), b) == 1 &&
              cb_breaker_state(b) == CB_FORCED_OPEN);

    test("a plain closed does not clear it; recovered does");
    interpret(plain, CB_REPLY_SUBSCRIPTION, message(closed), b);
    int still = cb_breaker_state(b) == CB_FORCED_OPEN;
    interpret(plain, CB_REPLY_SUBSCRIPTION, message(recovered), b);
    test_cond(still && cb_breaker_state(b) == CB_CLOSED);

    test("another name, a subscribe confirmation and junk change nothing");
    interpret(plain, CB_REPLY_SUBSCRIPTION,
              message("{\"serviceId\":\"other\",\"state\":\"open\",\"forcedOpen\":true}"), b);
    interpret(plain, CB_REPLY_SUBSCRIPTION, reply("*3\r\n$9\r\nsubscribe\r\n$4\r\nchan\r\n:1\r\n"), b);
    interpret(plain, CB_REPLY_SUBSCRIPTION, reply("*3\r\n$7\r\nmessage\r\n$4\r\nchan\r\n:7\r\n"), b);
    interpret(plain, CB_REPLY_SUBSCRIPTION, message("{\"serviceId\":"), b);
    cb_store_health h;
    cb_store_get_health(plain, &h);
    test_cond(cb_breaker_state(b) == CB_CLOSED && h.received == 6 && h.malformed == 2);

    test("with a secret an unsigned message is refused and counted");
    interpret(signed_, CB_REPLY_SUBSCRIPTION, message(forced), c);
    cb_store_get_health(signed_, &h);
    test_cond(cb_breaker_state(c) == CB_CLOSED && h.unsigned_msgs == 1 && h.applied == 0);

    test("an open boot entry is imported; a recovered one or none is not");
    interpret(plain, CB_REPLY_BOOT_ENTRY, bulk("{\"serviceId\":\"svc\",\"state\":\"open\"}"), b);
    int imported = cb_breaker_state(b) == CB_OPEN;
    cb_breaker_reset(b);
    interpret(plain, CB_REPLY_BOOT_ENTRY, bulk(recovered), b);
    interpret(plain, CB_REPLY_BOOT_ENTRY, reply("$-1\r\n"), b);
    test_cond(imported && cb_breaker_state(b) == CB_CLOSED);

    test("the fleet's answer {open, ms} opens for that long; a malformed one is ignored");
    interpret(plain, CB_REPLY_FLEET, reply("*2\r\n$4\r\nopen\r\n$4\r\n5000\r\n"), b);
    int ignored = cb_breaker_state(b) == CB_CLOSED;
    interpret(plain, CB_REPLY_FLEET, reply("*2\r\n$4\r\nopen\r\n:5000\r\n"), b);
    test_cond(ignored && cb_breaker_state(b) == CB_OPEN && cb_breaker_retry_after(b) > 4.9 &&
              cb_breaker_retry_after(b) <= 5);

    test("a NULL reply, a breaker of another store or none is refused");
    test_cond(cb_store_interpret(plain, CB_REPLY_SUBSCRIPTION, NULL, b) == CB_ERR &&
              interpret(plain, CB_REPLY_FLEET, reply(":1\r\n"), NULL) == CB_ERR &&
              interpret(plain, CB_REPLY_FLEET, reply("*2\r\n$4\r\nopen\r\n:5000\r\n"), c) ==
                  CB_ERR &&
              cb_breaker_state(c) == CB_CLOSED);

    test("every breaker sharing a name gets the message while the store's table grows");
    enum { SHARED = 150, OTHERS = 150 };
    cb_breaker *same[SHARED], *others[OTHERS];
    cb_store *big = store(NULL);
    int attached = 1;
    for (int i = 0; i < SHARED; i++) {  /* inserts and lookups interleave with growth */
        same[i] = breaker();
        attached &= cb_store_attach(big, same[i]) == CB_OK;
        char name[16];
        snprintf(name, sizeof name, "n%d", i);
        cb_breaker_opts o;
        cb_breaker_opts_init(&o);
        o.name = name;
        o.clock = (cb_clock){cb_manual_clock_now, &clock_};
        others[i] = cb_breaker_new(&o);
        attached &= cb_store_attach(big, others[i]) == CB_OK;
    }
    int applied = interpret(big, CB_REPLY_SUBSCRIPTION, message(forced), same[0]);
    int all_forced = 1;
    for (int i = 0; i < SHARED; i++) all_forced &= cb_breaker_state(same[i]) == CB_FORCED_OPEN;
    interpret(big, CB_REPLY_SUBSCRIPTION,
              message("{\"serviceId\":\"n77\",\"state\":\"open\",\"forcedOpen\":true}"), NULL);
    int only_n77 = 1;
    for (int i = 0; i < OTHERS; i++)
        only_n77 &= (cb_breaker_state(others[i]) == CB_FORCED_OPEN) == (i == 77);
    for (int i = 0; i < SHARED; i += 2) cb_store_detach(big, same[i]);  /* unlinks */
    cb_store_get_health(big, &h);
    test_cond(attached && applied == 1 && all_forced && only_n77 &&
              h.attached == SHARED / 2 + OTHERS);
    for (int i = 0; i < SHARED; i++) cb_breaker_free(same[i]);  /* the rest detach as freed */
    cb_store_free(big);
    for (int i = 0; i < OTHERS; i++) cb_breaker_free(others[i]);

    cb_breaker_free(b);
    cb_store_free(plain);
    cb_store_free(signed_);
    cb_breaker_free(c);
    return test_report();
}

/* test_store.c -- the store's parts that need no server: URL parsing, the
 * channel message codec (the Redis pub/sub manager's JSON), the rules for
 * what a peer's message does to a breaker, and a store
 * whose Redis is unreachable (it must keep the breakers working). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "breaker_impl.h"
#include "store_impl.h"
#include "test.h"
#include "alloc_count.h"

/* Many checks per topic: each is one numbered test named after its topic. */
static const char *topic = "";
#define section(name) (topic = (name))

static void test_urls(void) {
    cb_redis_url u;
    char err[128];
    section("redis:// URLs");
    check(topic, cb_redis_url_parse("redis://127.0.0.1:6380/2", &u, err, sizeof err) == CB_OK);
    check(topic, !u.unix_socket && strcmp(u.host, "127.0.0.1") == 0 && u.port == 6380 && u.db == 2);
    check(topic, cb_redis_url_parse("redis://localhost", &u, err, sizeof err) == CB_OK);
    check(topic, u.port == 6379 && u.db == 0 && u.password[0] == '\0');
    check(topic, cb_redis_url_parse("redis://:s3cret@h:1/0", &u, err, sizeof err) == CB_OK);
    check(topic, strcmp(u.password, "s3cret") == 0 && strcmp(u.host, "h") == 0 && u.port == 1);
    check(topic, cb_redis_url_parse("redis://user:pw@h/3", &u, err, sizeof err) == CB_OK);
    check(topic, strcmp(u.password, "pw") == 0 && u.db == 3);
    check(topic, cb_redis_url_parse("redis://[::1]:7000/1", &u, err, sizeof err) == CB_OK);
    check(topic, strcmp(u.host, "::1") == 0 && u.port == 7000 && u.db == 1);

    section("unix:// URLs");
    check(topic, cb_redis_url_parse("unix:///tmp/r.sock?db=4", &u, err, sizeof err) == CB_OK);
    check(topic, u.unix_socket && strcmp(u.path, "/tmp/r.sock") == 0 && u.db == 4);
    check(topic, cb_redis_url_parse("unix://:pw@/tmp/r.sock", &u, err, sizeof err) == CB_OK);
    check(topic, strcmp(u.password, "pw") == 0 && strcmp(u.path, "/tmp/r.sock") == 0);

    section("bad URLs name the problem and never the password");
    check(topic, cb_redis_url_parse("http://x", &u, err, sizeof err) == CB_ERR);
    check(topic, strstr(err, "unsupported scheme 'http'") != NULL);
    check(topic, cb_redis_url_parse("redis://h:99999/0", &u, err, sizeof err) == CB_ERR);
    check(topic, strstr(err, "bad port '99999'") != NULL);
    check(topic, cb_redis_url_parse("redis://:hunter2@h:x/0", &u, err, sizeof err) == CB_ERR);
    check(topic, strstr(err, "bad port") != NULL && strstr(err, "hunter2") == NULL);
    check(topic, cb_redis_url_parse("redis://:hunter2@h/zz", &u, err, sizeof err) == CB_ERR);
    check(topic, strstr(err, "bad database 'zz'") != NULL && strstr(err, "hunter2") == NULL);
    check(topic, cb_redis_url_parse("redis://", &u, err, sizeof err) == CB_ERR);
    check(topic, strstr(err, "missing host") != NULL);
    check(topic, cb_redis_url_parse("unix://relative", &u, err, sizeof err) == CB_ERR);
    check(topic, strstr(err, "absolute") != NULL);
    check(topic, cb_redis_url_parse("localhost:6379", &u, err, sizeof err) == CB_ERR);
    check(topic, cb_redis_url_parse(NULL, &u, err, sizeof err) == CB_ERR);
}

static const char *decode(const char *s, cb_message *m) {
    return cb_message_decode(s, strlen(s), m);
}

static void test_messages(void) {
    cb_message m, d;
    char buf[CB_MESSAGE_MAX + 1];
    section("pub/sub manager messages round-trip");
    memset(&m, 0, sizeof m);
    strcpy(m.service_id, "deepseek::deepseek-chat");
    strcpy(m.origin, "host:1:abcd");
    m.open = m.forced_open = 1;
    m.ts = 1746524520123.0;
    m.retry_after_ms = -1;
    int n = cb_message_encode(&m, buf, sizeof buf);
    check(topic, n > 0 && (size_t)n == strlen(buf));
    check(topic, strstr(buf, "\"serviceId\":\"deepseek::deepseek-chat\"") != NULL);
    check(topic, strstr(buf, "\"state\":\"open\"") && strstr(buf, "\"forcedOpen\":true"));
    check(topic, strstr(buf, "\"recovered\":false") && strstr(buf, "\"ts\":1746524520123"));
    check(topic, strstr(buf, "retryAfterMs") == NULL);
    check(topic, decode(buf, &d) == NULL);
    check(topic, strcmp(d.service_id, m.service_id) == 0 && strcmp(d.origin, m.origin) == 0);
    check(topic, d.open && d.forced_open && !d.recovered && d.ts == m.ts && d.retry_after_ms < 0);
    check(topic, cb_message_peer_state(&d) == CB_PEER_FORCED_OPEN);
    check(topic, cb_message_encode(&m, buf, 20) == -1);  /* does not fit */

    section("the manager's own reset message (no origin, extra fields) is understood");
    check(topic, decode("{\"serviceId\":\"a\",\"state\":\"closed\",\"ts\":1,\"forcedOpen\":false,"
                        "\"recovered\":true,\"extra\":[1,2]}", &d) == NULL);
    check(topic, d.recovered && !d.open && d.origin[0] == '\0');
    check(topic, cb_message_peer_state(&d) == CB_PEER_RECOVERED);
    check(topic, decode("{\"serviceId\":\"a\",\"state\":\"closed\"}", &d) == NULL);
    check(topic, cb_message_peer_state(&d) == CB_PEER_CLOSED);
    check(topic, decode("{\"serviceId\":\"a\",\"state\":\"open\",\"retryAfterMs\":1500}", &d) == NULL);
    check(topic, cb_message_peer_state(&d) == CB_PEER_OPEN && d.retry_after_ms == 1500);

    section("malformed messages are refused with a reason");
    check(topic, decode("not json", &d) != NULL);
    check(topic, decode("[1,2]", &d) != NULL);
    check(topic, decode("{\"state\":\"open\"}", &d) != NULL);
    check(topic, decode("{\"serviceId\":\"\",\"state\":\"open\"}", &d) != NULL);
    check(topic, decode("{\"serviceId\":7,\"state\":\"open\"}", &d) != NULL);
    check(topic, decode("{\"serviceId\":\"a\",\"state\":\"half\"}", &d) != NULL);
    check(topic, decode("{\"serviceId\":\"a\",\"state\":\"open\",\"forcedOpen\":\"yes\"}", &d) != NULL);
    check(topic, decode("{\"serviceId\":\"a\",\"state\":\"open\",\"ts\":-4}", &d) != NULL);
    check(topic, decode("{\"serviceId\":\"a\",\"state\":\"open\"} trailing", &d) != NULL);
    check(topic, cb_message_decode("{\"serviceId\":\"a\"\0,\"state\":\"open\"}", 33, &d) != NULL);
    char big[CB_MESSAGE_MAX + 64];
    memset(big, ' ', sizeof big);
    memcpy(big, "{\"serviceId\":\"a\",\"state\":\"open\"}", 32);
    check(topic, cb_message_decode(big, sizeof big, &d) != NULL);  /* oversized */
    char longname[400];
    snprintf(longname, sizeof longname, "{\"serviceId\":\"%0300d\",\"state\":\"open\"}", 0);
    check(topic, decode(longname, &d) != NULL);
}

static void test_peer_rules(void) {
    cb_manual_clock mc = {100};
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    o.name = "svc";
    o.clock.now = cb_manual_clock_now;
    o.clock.ud = &mc;
    cb_breaker *b = cb_breaker_new(&o);

    section("a plain closed never clears a forced-open; recovered does");
    cb_breaker_apply_peer(b, CB_PEER_FORCED_OPEN, 0);
    check(topic, cb_breaker_state(b) == CB_FORCED_OPEN);
    cb_breaker_apply_peer(b, CB_PEER_CLOSED, 0);
    check(topic, cb_breaker_state(b) == CB_FORCED_OPEN);
    cb_breaker_apply_peer(b, CB_PEER_OPEN, 5);
    check(topic, cb_breaker_state(b) == CB_FORCED_OPEN);
    cb_breaker_apply_peer(b, CB_PEER_RECOVERED, 0);
    check(topic, cb_breaker_state(b) == CB_CLOSED);

    section("open: the later deadline wins");
    cb_breaker_apply_peer(b, CB_PEER_OPEN, 10);
    check(topic, cb_breaker_state(b) == CB_OPEN && fabs(cb_breaker_retry_after(b) - 10) < 1e-9);
    cb_breaker_apply_peer(b, CB_PEER_OPEN, 3);
    check(topic, fabs(cb_breaker_retry_after(b) - 10) < 1e-9);
    cb_breaker_apply_peer(b, CB_PEER_OPEN, 20);
    check(topic, fabs(cb_breaker_retry_after(b) - 20) < 1e-9);
    mc.now += 20;
    check(topic, cb_breaker_state(b) == CB_HALF_OPEN);
    cb_breaker_apply_peer(b, CB_PEER_CLOSED, 0);
    check(topic, cb_breaker_state(b) == CB_CLOSED);
    cb_breaker_apply_peer(b, CB_PEER_OPEN, -1);  /* no deadline: our own timeout */
    check(topic, fabs(cb_breaker_retry_after(b) - 30) < 1e-9);

    section("a disabled breaker ignores peers");
    cb_breaker_disable(b);
    cb_breaker_apply_peer(b, CB_PEER_FORCED_OPEN, 0);
    check(topic, cb_breaker_state(b) == CB_DISABLED);
    cb_breaker_free(b);
}

static void test_unreachable(void) {
    section("options are checked and named");
    cb_store_opts so;
    cb_store_opts_init(&so);
    so.url = "redis://:topsecret@127.0.0.1:notaport/0";
    cb_store *s = cb_store_new(&so);
    check(topic, s && s->err == CB_STORE_EOPTS && strstr(s->errstr, "bad port"));
    check(topic, strstr(s->errstr, "topsecret") == NULL);
    check(topic, cb_store_poll(s) == CB_ERR);
    cb_store_free(s);
    cb_store_opts_init(&so);
    so.quorum = 2;
    s = cb_store_new(&so);
    check(topic, s && s->err == CB_STORE_EOPTS && strstr(s->errstr, "quorum"));
    cb_store_free(s);
    cb_store_free(NULL);

    section("Redis unreachable: breakers keep working, reconnects back off");
    cb_manual_clock mc = {0};
    cb_store_opts_init(&so);
    so.url = "redis://:topsecret@127.0.0.1:1/0";  /* nothing listens on port 1 */
    so.timeout_ms = 50;
    so.clock.now = cb_manual_clock_now;
    so.clock.ud = &mc;
    s = cb_store_new(&so);
    check(topic, s && s->err == CB_STORE_EIO);
    cb_store_health h;
    cb_store_get_health(s, &h);
    check(topic, !h.connected && h.failures == 1 && h.last_error[0] != '\0');
    check(topic, strstr(h.last_error, "topsecret") == NULL && fabs(h.backoff - 0.1) < 1e-9);
    check(topic, cb_store_fd(s) == -1);
    cb_breaker_opts o;
    cb_breaker_opts_init(&o);
    o.name = "svc";
    cb_breaker *b = cb_breaker_new(&o);
    check(topic, cb_store_attach(s, b) == CB_OK);
    check(topic, cb_store_attach(s, b) == CB_ERR);  /* once */
    for (int i = 0; i < 5; i++) {
        check(topic, cb_breaker_allow(b) == CB_ALLOWED);
        cb_breaker_record(b, CB_FAILURE, -1, 0);
    }
    check(topic, cb_breaker_state(b) == CB_OPEN);
    check(topic, cb_store_poll(s) == CB_ERR);  /* within the back-off: no attempt */

    section(COUNTS_ALLOCATIONS ? "an attached breaker's allow/record/trip/reset do not allocate"
                               : "attached hot path (allocation count needs a plain build)");
    {
        unsigned long before = allocations;
        for (int i = 0; i < 1000; i++) {  /* ticks included: every 64 allows */
            cb_breaker_allow(b);
            cb_breaker_record(b, i % 7 ? CB_SUCCESS : CB_FAILURE, 1, 0);
        }
        cb_breaker_force_open(b);
        cb_breaker_reset(b);
        check(topic, allocations == before);
    }
    for (int i = 0; i < 5; i++) cb_breaker_record(b, CB_FAILURE, -1, 0);
    cb_store_get_health(s, &h);
    check(topic, h.failures == 1 && h.dropped == 4 && h.attached == 1);
    mc.now += 0.1;
    check(topic, cb_store_poll(s) == CB_ERR);  /* one attempt, failed: back-off doubles */
    cb_store_get_health(s, &h);
    check(topic, h.failures == 2 && fabs(h.backoff - 0.2) < 1e-9);
    cb_breaker_free(b);  /* detaches itself */
    cb_store_get_health(s, &h);
    check(topic, h.attached == 0);
    cb_store_free(s);
}

int main(void) {
    test_urls();
    test_messages();
    test_peer_rules();
    test_unreachable();
    return test_report();
}

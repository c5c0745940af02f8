/* test_redis_url.c -- the URL forms of the new transport: rediss://, ACL
 * users, redis+sentinel://; and the store's parser refusing TLS and
 * Sentinel until the store uses the new transport. */
#include <string.h>

#include "store_impl.h"
#include "test.h"

int main(void) {
    cb_redis_url u;
    char err[128];

    test("rediss:// is TLS, with an ACL user and a password");
    test_cond(cb_redis_url_parse("rediss://cbuser:s3cret@redis.example:6380/2", &u, err,
                                     sizeof err) == CB_OK &&
              u.tls && !u.nsentinels && strcmp(u.user, "cbuser") == 0 &&
              strcmp(u.password, "s3cret") == 0 && strcmp(u.host, "redis.example") == 0 &&
              u.port == 6380 && u.db == 2);

    test("redis://user:password@host keeps the user; :password@ has none");
    test_cond(cb_redis_url_parse("redis://app:pw@h", &u, err, sizeof err) == CB_OK &&
              !u.tls && strcmp(u.user, "app") == 0 && strcmp(u.password, "pw") == 0 &&
              cb_redis_url_parse("redis://:pw@h", &u, err, sizeof err) == CB_OK &&
              u.user[0] == '\0' && strcmp(u.password, "pw") == 0);

    test("redis+sentinel://: sentinels (26379 by default, [ipv6]), master, db");
    test_cond(cb_redis_url_parse("redis+sentinel://u:p@s1:26380,[::1],s3/mymaster/4", &u,
                                     err, sizeof err) == CB_OK &&
              !u.tls && u.nsentinels == 3 && strcmp(u.sentinels[0].host, "s1") == 0 &&
              u.sentinels[0].port == 26380 && strcmp(u.sentinels[1].host, "::1") == 0 &&
              u.sentinels[1].port == 26379 && strcmp(u.sentinels[2].host, "s3") == 0 &&
              u.sentinels[2].port == 26379 && strcmp(u.master, "mymaster") == 0 && u.db == 4 &&
              strcmp(u.user, "u") == 0 && strcmp(u.password, "p") == 0);

    test("rediss+sentinel:// is TLS; the db is optional");
    test_cond(cb_redis_url_parse("rediss+sentinel://s1/m", &u, err, sizeof err) == CB_OK &&
              u.tls && u.nsentinels == 1 && strcmp(u.master, "m") == 0 && u.db == 0);

    test("a sentinel URL without a master name: an error saying so");
    test_cond(cb_redis_url_parse("redis+sentinel://s1:1,s2:2", &u, err, sizeof err) ==
                  CB_ERR && strstr(err, "missing master name") &&
              cb_redis_url_parse("redis+sentinel://s1//0", &u, err, sizeof err) == CB_ERR);

    test("a bad sentinel port, an empty sentinel, too many sentinels: errors");
    test_cond(cb_redis_url_parse("redis+sentinel://s1:0/m", &u, err, sizeof err) == CB_ERR &&
              strstr(err, "bad port '0'") &&
              cb_redis_url_parse("redis+sentinel://s1,,s2/m", &u, err, sizeof err) ==
                  CB_ERR && strstr(err, "missing host") &&
              cb_redis_url_parse("redis+sentinel://a,b,c,d,e,f,g,h,i/m", &u, err,
                                     sizeof err) == CB_ERR && strstr(err, "more than 8"));

    test("the password is never quoted in a sentinel URL's error");
    test_cond(cb_redis_url_parse("redis+sentinel://:hunter2@s1:hunter2/m", &u, err,
                                     sizeof err) == CB_ERR && !strstr(err, "hunter2"));

    test("an unknown scheme lists the supported ones");
    test_cond(cb_redis_url_parse("redis-sentinel://s1/m", &u, err, sizeof err) == CB_ERR &&
              strstr(err, "unsupported scheme 'redis-sentinel'") && strstr(err, "rediss://"));

    return test_report();
}

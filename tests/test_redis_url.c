/* test_redis_url.c -- the URL forms of the transport: rediss://, ACL
 * users, redis+sentinel://, redis+cluster://, and the errors that name
 * what is wrong (never the password). */
#include <string.h>

#include "store_impl.h"
#include "test.h"

int main(void) {
    cb_redis_url u;
    char err[128];

    test("rediss:// is TLS, with an ACL user and a password");
    test_cond(cb_redis_url_parse("rediss://cbuser:s3cret@redis.example:6380/2", &u, err,
                                     sizeof err) == CB_OK &&
              u.tls && !u.nseeds && strcmp(u.user, "cbuser") == 0 &&
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
              !u.tls && u.nseeds == 3 && strcmp(u.seeds[0].host, "s1") == 0 &&
              u.seeds[0].port == 26380 && strcmp(u.seeds[1].host, "::1") == 0 &&
              u.seeds[1].port == 26379 && strcmp(u.seeds[2].host, "s3") == 0 &&
              u.seeds[2].port == 26379 && strcmp(u.master, "mymaster") == 0 && u.db == 4 &&
              strcmp(u.user, "u") == 0 && strcmp(u.password, "p") == 0 && !u.cluster);

    test("rediss+sentinel:// is TLS; the db is optional");
    test_cond(cb_redis_url_parse("rediss+sentinel://s1/m", &u, err, sizeof err) == CB_OK &&
              u.tls && u.nseeds == 1 && strcmp(u.master, "m") == 0 && u.db == 0);

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

    test("redis+cluster://: seed nodes (6379 by default), database 0 at most");
    test_cond(cb_redis_url_parse("redis+cluster://u:p@n1:7000,[::1],n3/", &u, err, sizeof err) ==
                  CB_OK &&
              u.cluster && !u.tls && u.nseeds == 3 && strcmp(u.seeds[0].host, "n1") == 0 &&
              u.seeds[0].port == 7000 && strcmp(u.seeds[1].host, "::1") == 0 &&
              u.seeds[1].port == 6379 && u.seeds[2].port == 6379 && u.db == 0 &&
              strcmp(u.user, "u") == 0 && strcmp(u.password, "p") == 0 &&
              cb_redis_url_parse("rediss+cluster://n1:7000/0", &u, err, sizeof err) == CB_OK &&
              u.cluster && u.tls && u.nseeds == 1);

    test("a cluster URL with another database or a master name: an error naming it");
    test_cond(cb_redis_url_parse("redis+cluster://n1/2", &u, err, sizeof err) == CB_ERR &&
              strstr(err, "database 0 only") &&
              cb_redis_url_parse("redis+cluster://n1/master", &u, err, sizeof err) == CB_ERR &&
              cb_redis_url_parse("redis+cluster://a,b,c,d,e,f,g,h,i", &u, err, sizeof err) ==
                  CB_ERR && strstr(err, "more than 8 cluster nodes"));

    test("a password with '@' ends at the last '@' before the path (nothing of it in the host)");
    test_cond(cb_redis_url_parse("redis://:p@ss@127.0.0.1:1/0", &u, err, sizeof err) == CB_OK &&
              strcmp(u.password, "p@ss") == 0 && strcmp(u.host, "127.0.0.1") == 0 &&
              u.port == 1 &&
              cb_redis_url_parse("redis+cluster://u:p@ss@n1:7000,n2", &u, err, sizeof err) ==
                  CB_OK &&
              strcmp(u.user, "u") == 0 && strcmp(u.password, "p@ss") == 0 &&
              strcmp(u.seeds[0].host, "n1") == 0 && u.nseeds == 2);

    test("an unknown scheme lists the supported ones");
    test_cond(cb_redis_url_parse("redis-sentinel://s1/m", &u, err, sizeof err) == CB_ERR &&
              strstr(err, "unsupported scheme 'redis-sentinel'") && strstr(err, "rediss://"));

    return test_report();
}

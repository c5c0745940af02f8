/* test_url_quoting.c -- regressions from fuzz/fuzz_redis_url.c: an error
 * about a URL whose user info holds '/' or '@' quotes nothing of it, as
 * which part is the password is then a guess. */
#include <string.h>

#include "store_impl.h"
#include "test.h"

static int leaks(const char *url, const char *secret) {
    cb_redis_url u;
    char err[128];
    if (cb_redis_url_parse(url, &u, err, sizeof err) == CB_OK) return -1;
    return strstr(err, secret) != NULL || strchr(err, '\'') != NULL;
}

int main(void) {
    test("a password with '/' is not quoted as a port");
    test_cond(leaks("redis://:pa/ss1234@host", "ss1234") == 0 &&
              leaks("redis://:hunter2/x@h:1/0", "hunter2") == 0);
    test("a password with '@' is not quoted as a host");
    test_cond(leaks("redis://:p@ssw0rd@:99999/0", "ssw0rd") == 0);
    test("a password written again after the host is not quoted (fuzz crash-74368d3b)");
    test_cond(leaks("redis://:ser::@][/:ser::", "ser::") == 0);
    test("unix user info is not quoted");
    test_cond(leaks("unix://:unix@:///:", "unix@") == 0);
    test("a URL with plain user info, or none, still quotes the bad part");
    cb_redis_url u;
    char err[128];
    test_cond(cb_redis_url_parse("redis://host:99999/0", &u, err, sizeof err) == CB_ERR &&
              strstr(err, "'99999'") != NULL &&
              cb_redis_url_parse("redis://:hunter2@h:99999/0", &u, err, sizeof err) == CB_ERR &&
              strstr(err, "'99999'") != NULL);
    return test_report();
}

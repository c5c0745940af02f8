/* fuzz_redis_url.c -- the Redis URL parser: any string a user configures.
 * What it accepts fits its fields; an error message never quotes a URL
 * that has a password. */
#define _GNU_SOURCE  /* memmem */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *url = malloc(size + 1);
    if (!url) return 0;
    memcpy(url, data, size);
    url[size] = '\0';
    cb_redis_url u;
    char err[128];
    memset(&u, 0xAA, sizeof u);
    if (cb_redis_url_parse(url, &u, err, sizeof err) == CB_OK) {
        if (strlen(u.host) >= sizeof u.host || strlen(u.path) >= sizeof u.path ||
            strlen(u.password) >= sizeof u.password || strlen(u.user) >= sizeof u.user ||
            strlen(u.master) >= sizeof u.master || u.port < 0 || u.port > 65535 || u.db < 0 ||
            u.nseeds < 0 || u.nseeds > CB_URL_SEEDS_MAX ||
            (u.nseeds && !u.cluster && !u.master[0]) || (u.cluster && (!u.nseeds || u.db)))
            __builtin_trap();
        for (int i = 0; i < u.nseeds; i++)
            if (!u.seeds[i].host[0] || strlen(u.seeds[i].host) >= sizeof u.seeds[i].host ||
                u.seeds[i].port < 1 || u.seeds[i].port > 65535)
                __builtin_trap();
    } else {
        if (memchr(err, '\0', sizeof err) == NULL) __builtin_trap();
        /* Quoted parts of the URL never hold the password the parser took
         * (4 bytes or more: shorter ones match other text by accident)... */
        size_t pwn = strlen(u.password);
        for (const char *q = strchr(err, '\''); q && pwn >= 4; q = strchr(q + 1, '\''))
            if (strncmp(q + 1, u.password, pwn) == 0 || memmem(q, strcspn(q + 1, "'") + 1,
                                                               u.password, pwn))
                __builtin_trap();
        /* ...nor any part of a URL whose user info holds '/' or '@', where
         * the parser's password may be only part of the user's. */
        const char *rest = strstr(url, "://");
        rest = rest ? rest + 3 : url;
        const char *last = strrchr(rest, '@');
        if (last && (memchr(rest, '/', (size_t)(last - rest)) ||
                     memchr(rest, '@', (size_t)(last - rest))) && strchr(err, '\''))
            __builtin_trap();
    }
    free(url);
    return 0;
}

/* store_impl.h -- the store's pure parts, apart from any connection: the
 * channel message codec (message.c) and the URL parser (redis_url.c).
 * Internal to the core (tests/test_store.c uses them too); never installed. */
#ifndef CB_STORE_IMPL_H
#define CB_STORE_IMPL_H

#include <stddef.h>

#include "cbreaker.h"

/* ---- channel messages (seed 002) -------------------------------------------
 * {"serviceId":"x","state":"open"|"closed","ts":<ms>,"forcedOpen":bool,
 *  "recovered":bool} plus our own optional fields: "origin" (the instance
 * that sent it, to skip one's own messages) and "retryAfterMs" (how long an
 * open state has left, so a peer opens for as long, not for its own timeout).
 * Other fields are allowed and ignored, as the seed's services send them. */

#define CB_MESSAGE_MAX 4096  /* bytes; a longer channel message is malformed */
#define CB_NAME_MAX 256      /* a serviceId this long or longer is malformed */
#define CB_ORIGIN_MAX 64

typedef struct cb_message {
    char service_id[CB_NAME_MAX];
    char origin[CB_ORIGIN_MAX];  /* "" when absent (another service's message) */
    unsigned char open;          /* state "open" (else "closed") */
    unsigned char forced_open;
    unsigned char recovered;
    double ts;                   /* ms since the epoch on the sender's clock; 0 if absent */
    double retry_after_ms;       /* < 0 when absent */
} cb_message;

/* Encodes `m` as JSON into buf (NUL-terminated).  Returns the length, or -1
 * when it does not fit or out of memory. */
int cb_message_encode(const cb_message *m, char *buf, size_t cap);

/* Decodes `len` bytes at `s` into `m`.  Returns NULL, or a static message
 * saying why the input is malformed ("not JSON", "serviceId missing" ...). */
const char *cb_message_decode(const char *s, size_t len, cb_message *m);

/* What a message asks of a peer's breaker. */
cb_peer_state cb_message_peer_state(const cb_message *m);

/* ---- URLs --------------------------------------------------------------------
 * redis://[[user]:password@]host[:port][/db]   (host may be [ipv6])
 * unix://[:password@]/path/to/socket[?db=N]                                 */

typedef struct cb_redis_url {
    int unix_socket;
    char host[256];
    int port;               /* 6379 when absent */
    char path[108];         /* unix socket path (sun_path's size) */
    int db;                 /* 0 when absent */
    char password[256];     /* "" when absent */
} cb_redis_url;

/* Parses `url` into `u`.  Returns CB_OK, or CB_ERR with a message in `err`
 * that never contains the password. */
int cb_redis_url_parse(const char *url, cb_redis_url *u, char *err, size_t errcap);

#endif

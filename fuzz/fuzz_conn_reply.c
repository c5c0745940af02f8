/* fuzz_conn_reply.c -- what a server (or anything posing as one) sends the
 * store's transport: the input is written by a peer on a unix socket, then
 * the peer hangs up; the connection reads replies until it fails.  It must
 * end with a clear error (EOF, protocol, a limit), never crash, and never
 * hand out a reply over its limits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ELEMENTS 1000
#define MAX_BYTES 65536

static int listener = -1;
static char path[108];

static void cleanup(void) {
    if (path[0]) unlink(path);
}

static void setup(void) {
    snprintf(path, sizeof path, "/tmp/cbreaker-fuzz-conn.%d.sock", (int)getpid());
    unlink(path);
    struct sockaddr_un un;
    memset(&un, 0, sizeof un);
    un.sun_family = AF_UNIX;
    strcpy(un.sun_path, path);
    listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&un, sizeof un) ||
        listen(listener, 4)) {
        perror("fuzz_conn_reply");
        abort();
    }
    atexit(cleanup);
}

/* Elements in r and below it. */
static size_t count(const redisReply *r) {
    size_t n = 0;
    if (r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < r->elements; i++) n += 1 + count(r->element[i]);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (listener < 0) setup();
    if (size > 60000) return 0;  /* what one socket buffer takes without a reader */
    cb_conn_opts o;
    cb_conn_opts_init(&o);
    o.path = path;
    o.max_elements = MAX_ELEMENTS;
    o.max_reply_bytes = MAX_BYTES;
    cb_conn *c = cb_conn_new(&o);
    if (!c) return 0;
    double deadline = cb_clock_monotonic(NULL) + 5;
    if (cb_conn_connect(c, deadline) != CB_OK) abort();
    int peer = accept(listener, NULL, NULL);
    if (peer < 0) abort();
    if (size && send(peer, data, size, MSG_NOSIGNAL) != (ssize_t)size) abort();
    close(peer);  /* then EOF */
    for (int i = 0; i < 100000; i++) {
        redisReply *r = cb_conn_read_reply(c, deadline);
        if (!r) break;
        if (count(r) > MAX_ELEMENTS) abort();
        freeReplyObject(r);
    }
    if (c->err != CB_CONN_EEOF && c->err != CB_CONN_EPROTOCOL && c->err != CB_CONN_EIO)
        abort();  /* a timeout here would be a parser waiting for bytes after EOF */
    if (!memchr(c->errstr, '\0', sizeof c->errstr) || !c->errstr[0]) abort();
    cb_conn_free(c);
    return 0;
}

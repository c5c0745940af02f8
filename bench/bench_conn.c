/* bench_conn.c -- what TLS costs the store's transport, plain vs TLS in the
 * same run:
 *  - append: cb_conn_append of a broadcast-sized PUBLISH, the only call a
 *    broadcast transition makes (timed alone; the batches are flushed and
 *    their replies read outside the timing);
 *  - round trip: one SET and its reply, what shared mode pays per record.
 *
 *   build/bench/bench_conn PORT TLS_PORT CA_FILE [CERT_FILE KEY_FILE]
 *
 * with redis-server on 127.0.0.1:PORT and with --tls-port TLS_PORT. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "redis_conn.h"

#define BATCH 1000

static double now(void) {
    return cb_clock_monotonic(NULL);
}

/* Seconds spent in cb_conn_append for n commands. */
static double appends(cb_conn *c, long n) {
    static const char msg[] =
        "{\"serviceId\":\"openai\",\"state\":\"open\",\"ts\":1733212345678,"
        "\"forcedOpen\":false,\"recovered\":false,\"origin\":\"a1b2c3d4\"}";
    const char *argv[] = {"PUBLISH", "circuit_breaker:events", msg};
    double spent = 0;
    for (long done = 0; done < n; done += BATCH) {
        double t0 = now();
        for (int i = 0; i < BATCH; i++)
            if (cb_conn_append(c, 3, argv, NULL) != CB_OK) return -1;
        spent += now() - t0;
        if (cb_conn_flush_until(c, now() + 5) != CB_OK) return -1;
        for (int i = 0; i < BATCH; i++) {
            redisReply *r = cb_conn_read_reply(c, now() + 5);
            if (!r) return -1;
            freeReplyObject(r);
        }
    }
    return spent;
}

static double round_trips(cb_conn *c, long n) {
    const char *argv[] = {"SET", "bench:conn", "closed"};
    double t0 = now();
    for (long i = 0; i < n; i++) {
        redisReply *r = cb_conn_command(c, now() + 5, 3, argv, NULL);
        if (!r) return -1;
        freeReplyObject(r);
    }
    return now() - t0;
}

int main(int argc, char **argv) {
    if (argc != 4 && argc != 6) {
        fprintf(stderr, "usage: bench_conn PORT TLS_PORT CA_FILE [CERT_FILE KEY_FILE]\n");
        return 2;
    }
    cb_conn_opts o;
    cb_conn_opts_init(&o);
    o.host = "127.0.0.1";
    o.port = atoi(argv[1]);
    cb_conn *plain = cb_conn_new(&o);
    o.port = atoi(argv[2]);
    o.tls.enabled = 1;
    o.tls.ca_file = argv[3];
    if (argc == 6) {
        o.tls.cert_file = argv[4];
        o.tls.key_file = argv[5];
    }
    cb_conn *tls = cb_conn_new(&o);
    if (!plain || !tls || cb_conn_connect(plain, now() + 1) != CB_OK ||
        cb_conn_connect(tls, now() + 1) != CB_OK) {
        fprintf(stderr, "bench_conn: %s%s\n", plain ? plain->errstr : "out of memory",
                tls ? tls->errstr : "");
        return 1;
    }
    long na = 200000, nr = 20000;
    double best[4] = {1e9, 1e9, 1e9, 1e9};
    for (int r = 0; r < 5; r++) {  /* interleaved, best of each */
        double t[4] = {appends(plain, na), appends(tls, na), round_trips(plain, nr),
                       round_trips(tls, nr)};
        for (int k = 0; k < 4; k++) {
            if (t[k] < 0) {
                fprintf(stderr, "bench_conn: %s%s\n", plain->errstr, tls->errstr);
                return 1;
            }
            if (t[k] < best[k]) best[k] = t[k];
        }
    }
    printf("append (broadcast transition)  plain %7.1f ns   tls %7.1f ns\n",
           best[0] / na * 1e9, best[1] / na * 1e9);
    printf("round trip (shared record)     plain %7.1f us   tls %7.1f us\n",
           best[2] / nr * 1e6, best[3] / nr * 1e6);
    cb_conn_free(plain);
    cb_conn_free(tls);
    return 0;
}

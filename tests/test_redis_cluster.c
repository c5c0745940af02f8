/* test_redis_cluster.c -- key slots, finding a slot's master
 * (cb_cluster_connect) and MOVED/ASK redirections against two real cluster
 * nodes that this test starts (redis_servers.h). */
#include "redis_servers.h"

static redisReply *cmdv(cb_conn *c, int argc, const char **argv) {
    return cb_conn_command(c, now() + 2 * TIMEOUT, argc, argv, NULL);
}

/* 1 when `CLUSTER INFO` on port says cluster_state:ok. */
static int cluster_ok(int port) {
    cb_conn *c = conn_to("127.0.0.1", port, NULL);
    redisReply *r = NULL;
    int ok = cb_conn_connect(c, now() + TIMEOUT) == CB_OK &&
             (r = cmd(c, "CLUSTER", "INFO", 0, 0)) && r->type == REDIS_REPLY_STRING &&
             strstr(r->str, "cluster_state:ok");
    if (r) freeReplyObject(r);
    cb_conn_free(c);
    return ok;
}

static void test_cluster(void) {
    int pa = free_cluster_port(), pb = free_cluster_port();
    char extra[256];
    test("two cluster nodes, half the slots each, met");
    snprintf(extra, sizeof extra, "--cluster-enabled yes --cluster-config-file %s/nodes-a.conf "
             "--cluster-node-timeout 2000", dir);
    int ok = start_redis("cluster-a", pa, extra);
    snprintf(extra, sizeof extra, "--cluster-enabled yes --cluster-config-file %s/nodes-b.conf "
             "--cluster-node-timeout 2000", dir);
    ok = ok && start_redis("cluster-b", pb, extra) && wait_ping(pa, NULL, NULL) &&
         wait_ping(pb, NULL, NULL);
    cb_conn *a = conn_to("127.0.0.1", pa, NULL), *b = conn_to("127.0.0.1", pb, NULL);
    char pbs[8];
    snprintf(pbs, sizeof pbs, "%d", pb);
    ok = ok && cb_conn_connect(a, now() + TIMEOUT) == CB_OK &&
         cb_conn_connect(b, now() + TIMEOUT) == CB_OK &&
         says(a, "OK", "CLUSTER", "ADDSLOTSRANGE", "0", "8191") &&
         says(b, "OK", "CLUSTER", "ADDSLOTSRANGE", "8192", "16383") &&
         says(a, "OK", "CLUSTER", "MEET", "127.0.0.1", pbs);
    for (int i = 0; ok && i < 1000 && !(cluster_ok(pa) && cluster_ok(pb)); i++) nap(0.01);
    test_cond(ok && cluster_ok(pa) && cluster_ok(pb));
    if (!ok) {
        show_logs();
        goto out;
    }

    test("cb_cluster_keyslot agrees with CLUSTER KEYSLOT (tags, empty tags, 300 keys)");
    const char *keys[] = {"123456789", "foo", "{user1000}.following", "{user1000}.followers",
                          "foo{}{bar}", "foo{{bar}}zap", "foo{bar}{zap}", "{}", "{", "}{x}",
                          "", "circuit_breaker:{openai}:state", "circuit_breaker:states"};
    int agree = cb_cluster_keyslot("123456789", 9) == 12739;  /* the specification's example */
    for (int i = 0; i < 313 && agree; i++) {
        char k[64];
        const char *key = i < 13 ? keys[i] : k;
        if (i >= 13) snprintf(k, sizeof k, "cb:%d:{t%d}x%d", i * 7919, i % 17, i);
        redisReply *r = cmd(a, "CLUSTER", "KEYSLOT", key, 0);
        agree = r && r->type == REDIS_REPLY_INTEGER &&
                r->integer == (long long)cb_cluster_keyslot(key, strlen(key));
        if (!agree) fprintf(stderr, "  key '%s'\n", key);
        if (r) freeReplyObject(r);
    }
    test_cond(agree);

    test("cb_cluster_connect: a dead seed skipped, the slot's master found, the seed that "
         "answered asked first next time");
    cb_cluster kc;
    cb_cluster_init(&kc);
    cb_cluster_add_seed(&kc, "127.0.0.1", free_port());  /* nobody there */
    cb_cluster_add_seed(&kc, "127.0.0.1", pa);
    cb_conn *c = conn_to("127.0.0.1", pa, NULL), *c2 = conn_to("127.0.0.1", pa, NULL);
    ok = cb_cluster_connect(&kc, c, 10000, now() + 2 * TIMEOUT) == CB_OK &&
         cb_conn_port(c) == pb && kc.seeds[0].port == pa && kc.owner.port == pb && kc.guesses == 1;
    test_cond(ok);

    test("... its answer serves one more connection, then the seeds are asked again");
    ok = cb_cluster_connect(&kc, c2, 10000, now() + 2 * TIMEOUT) == CB_OK &&
         cb_conn_port(c2) == pb && kc.guesses == 0 &&
         cb_cluster_connect(&kc, c2, 100, now() + 2 * TIMEOUT) == CB_OK && cb_conn_port(c2) == pa;
    test_cond(ok);

    test("a MOVED names the owner for the next attempt's two connections, twice in a row at most");
    cb_cluster_moved(&kc, c, "127.0.0.1", pb);
    cb_cluster_moved(&kc, c, "127.0.0.1", pb);  /* the same batch's next reply: no more */
    ok = kc.guesses == 2 && kc.owner.port == pb && kc.moved == 1;
    cb_cluster_moved(&kc, c, "", pa);  /* "": the node that answered, c's */
    ok = ok && kc.guesses == 2 && kc.owner.port == pa && strcmp(kc.owner.host, "127.0.0.1") == 0;
    cb_cluster_moved(&kc, c, "127.0.0.1", pb);
    test_cond(ok && kc.guesses == 0);  /* a third: the seeds decide */
    cb_conn_free(c);
    cb_conn_free(c2);

    test("MOVED from the node that does not own the slot: slot and owner parsed");
    const char *kb = "k5";  /* find a key of b's half */
    char kbuf[16];
    for (int i = 0; cb_cluster_keyslot(kb, strlen(kb)) < 8192; i++) {
        snprintf(kbuf, sizeof kbuf, "k%d", i);
        kb = kbuf;
    }
    redisReply *r = cmd(a, "GET", kb, 0, 0);
    int slot = -1, port = 0;
    char host[64];
    test_cond(cb_cluster_redirect(r, &slot, host, sizeof host, &port) == CB_CLUSTER_MOVED &&
              slot == (int)cb_cluster_keyslot(kb, strlen(kb)) && port == pb &&
              strcmp(host, "127.0.0.1") == 0);
    if (r) freeReplyObject(r);

    test("ASK while a slot migrates; the target, not asked with ASKING, says MOVED");
    char ka[16];
    int i = 0;
    do snprintf(ka, sizeof ka, "a%d", i++);
    while (cb_cluster_keyslot(ka, strlen(ka)) >= 8192);
    char sa[8], ida[64] = "", idb[64] = "";
    snprintf(sa, sizeof sa, "%u", cb_cluster_keyslot(ka, strlen(ka)));
    redisReply *ia = cmd(a, "CLUSTER", "MYID", 0, 0), *ib = cmd(b, "CLUSTER", "MYID", 0, 0);
    if (ia && ia->type == REDIS_REPLY_STRING) snprintf(ida, sizeof ida, "%s", ia->str);
    if (ib && ib->type == REDIS_REPLY_STRING) snprintf(idb, sizeof idb, "%s", ib->str);
    if (ia) freeReplyObject(ia);
    if (ib) freeReplyObject(ib);
    ok = ida[0] && idb[0];
    redisReply *x = cmdv(b, 5, (const char *[]){"CLUSTER", "SETSLOT", sa, "IMPORTING", ida});
    redisReply *y = cmdv(a, 5, (const char *[]){"CLUSTER", "SETSLOT", sa, "MIGRATING", idb});
    ok = ok && x && x->type == REDIS_REPLY_STATUS && y && y->type == REDIS_REPLY_STATUS;
    if (x) freeReplyObject(x);
    if (y) freeReplyObject(y);
    r = ok ? cmd(a, "GET", ka, 0, 0) : NULL;  /* not on a: ask b */
    ok = ok && cb_cluster_redirect(r, &slot, host, sizeof host, &port) == CB_CLUSTER_ASK &&
         slot == atoi(sa) && port == pb;
    if (r) freeReplyObject(r);
    r = ok ? cmd(b, "GET", ka, 0, 0) : NULL;  /* b without ASKING: back to a */
    ok = ok && cb_cluster_redirect(r, &slot, host, sizeof host, &port) == CB_CLUSTER_MOVED &&
         port == pa;
    if (r) freeReplyObject(r);
    test_cond(ok);

    test("cb_cluster_asking: the one command after ASKING (TRYAGAIN for keys not all there), closed after");
    cb_conn *via = conn_to("127.0.0.1", pa, NULL);  /* its endpoint is the ASK's: "" is a's host */
    const char *get[] = {"GET", ka}, *two[] = {"MGET", ka, "other"};
    r = cb_cluster_asking(via, a, "", pb, now() + TIMEOUT, 2, get, NULL);
    ok = r && r->type == REDIS_REPLY_NIL && !cb_conn_connected(via) &&
         strcmp(cb_conn_where(via), cb_conn_where(b)) == 0;
    if (r) freeReplyObject(r);
    char kx[80];  /* a second key of the slot: several keys, none there yet */
    snprintf(kx, sizeof kx, "{%s}x", ka);
    two[2] = kx;
    r = ok ? cb_cluster_asking(via, a, "127.0.0.1", pb, now() + TIMEOUT, 3, two, NULL) : NULL;
    ok = ok && r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "TRYAGAIN", 8) == 0;
    if (r) freeReplyObject(r);
    int dead = free_cluster_port();  /* nothing listens there */
    r = ok ? cb_cluster_asking(via, a, "127.0.0.1", dead, now() + TIMEOUT, 2, get, NULL) : NULL;
    ok = ok && !r && via->err && strstr(via->errstr, "127.0.0.1") && !cb_conn_connected(via);
    if (r) freeReplyObject(r);
    cb_conn_free(via);
    test_cond(ok);

    test("cb_cluster_redirect: IPv6 and empty hosts; anything else is no redirection");
    redisReply e = {.type = REDIS_REPLY_ERROR};
    char m1[] = "MOVED 3999 ::1:7001", m2[] = "ASK 12 :7002", m3[] = "MOVED 16384 h:1",
         m4[] = "MOVED 1 h:0", m5[] = "ERR MOVED 1 h:1", m6[] = "MOVED 1 h";
    e.str = m1, e.len = strlen(m1);
    ok = cb_cluster_redirect(&e, &slot, host, sizeof host, &port) == CB_CLUSTER_MOVED &&
         slot == 3999 && strcmp(host, "::1") == 0 && port == 7001;
    e.str = m2, e.len = strlen(m2);
    ok = ok && cb_cluster_redirect(&e, &slot, host, sizeof host, &port) == CB_CLUSTER_ASK &&
         host[0] == '\0' && port == 7002;
    char *bad[] = {m3, m4, m5, m6};
    for (int k = 0; k < 4; k++) {
        e.str = bad[k], e.len = strlen(bad[k]);
        ok = ok && cb_cluster_redirect(&e, &slot, host, sizeof host, &port) == 0;
    }
    test_cond(ok && cb_cluster_redirect(NULL, &slot, host, sizeof host, &port) == 0);
out:
    cb_conn_free(a);
    cb_conn_free(b);
}

int main(void) {
    servers_init("redis-server", "redis-server");
    test_cluster();
    return test_report();
}

/* test_redis_sentinel.c -- Sentinel discovery against a real group that
 * this test starts (redis_servers.h): one master, one replica, three
 * sentinels on loopback with short timeouts; the master is killed and
 * re-discovery must find the promoted replica, polled, each attempt within
 * its deadline, and +switch-master must name it. */
#include "redis_servers.h"

static char sentinel_bin[64];

static int start_sentinel(const char *name, int port, int master_port) {
    char conf[128];
    snprintf(conf, sizeof conf, "%s/%s.conf", dir, name);
    FILE *f = fopen(conf, "w");
    if (!f) return 0;
    fprintf(f, "port %d\nbind 127.0.0.1\ndaemonize yes\ndir %s\npidfile %s/%s.pid\n"
               "logfile %s/%s.log\nsentinel monitor cbmaster 127.0.0.1 %d 2\n"
               "sentinel down-after-milliseconds cbmaster 500\n"
               "sentinel failover-timeout cbmaster 2000\n"
               "sentinel parallel-syncs cbmaster 1\n",
            port, dir, dir, name, dir, name, master_port);
    fclose(f);
    return sh("%s %s >/dev/null", sentinel_bin, conf) == 0 && pid_of(name) > 0;
}

/* The integer field `key` of SENTINEL MASTER cbmaster on a sentinel, or -1. */
static long long sentinel_field(int port, const char *key) {
    cb_conn *c = conn_to("127.0.0.1", port, NULL);
    long long v = -1;
    redisReply *r = NULL;
    if (cb_conn_connect(c, now() + TIMEOUT) == CB_OK &&
        (r = cmd(c, "SENTINEL", "MASTER", "cbmaster", 0)) && r->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i + 1 < r->elements; i += 2)
            if (strcmp(r->element[i]->str, key) == 0) v = atoll(r->element[i + 1]->str);
    if (r) freeReplyObject(r);
    cb_conn_free(c);
    return v;
}

static void test_sentinel(void) {
    int mport = free_port(), rport = free_port(), dead = free_port();
    int sports[3] = {free_port(), free_port(), free_port()};
    char extra[128];
    snprintf(extra, sizeof extra, "--replicaof 127.0.0.1 %d", mport);
    test("sentinel group: a master, a replica in sync, three sentinels that see each other");
    int ok = start_redis("master", mport, "") && start_redis("replica", rport, extra) &&
             wait_ping(mport, NULL, NULL) && wait_ping(rport, NULL, NULL);
    for (int i = 0; ok && i < 500; i++) {  /* the replica's link: up within 5 s */
        cb_conn *c = conn_to("127.0.0.1", rport, NULL);
        redisReply *r = NULL;
        int up = cb_conn_connect(c, now() + TIMEOUT) == CB_OK && (r = cmd(c, "ROLE", 0, 0, 0)) &&
                 r->type == REDIS_REPLY_ARRAY && r->elements >= 4 &&
                 strcmp(r->element[3]->str, "connected") == 0;
        if (r) freeReplyObject(r);
        cb_conn_free(c);
        if (up) break;
        if (i == 499) ok = 0;
        nap(0.01);
    }
    for (int i = 0; ok && i < 3; i++) {
        char name[16];
        snprintf(name, sizeof name, "sentinel%d", i);
        ok = start_sentinel(name, sports[i], mport);
    }
    /* A failover needs the sentinels to know the replica and each other
     * (hello messages every 2 s): bounded at 30 s, as under valgrind on a
     * loaded machine 15 s was once not enough. */
    enum { polls = 3000 };  /* 10 ms apart */
    for (int i = 0; ok && i < polls; i++) {
        int ready = 1;
        for (int k = 0; k < 3 && ready; k++)
            ready = sentinel_field(sports[k], "num-other-sentinels") == 2 &&
                    sentinel_field(sports[k], "num-slaves") == 1;
        if (ready) break;
        if (i == polls - 1) ok = 0;
        nap(0.01);
    }
    test_cond(ok);
    if (!ok) {
        show_logs();
        return;
    }

    cb_sentinel_opts so;
    cb_sentinel_opts_init(&so);
    so.n = 4;  /* the first one is down: asked first, skipped */
    const char *lo = "127.0.0.1";
    so.hosts[0] = so.hosts[1] = so.hosts[2] = so.hosts[3] = lo;
    so.ports[0] = dead;
    for (int i = 0; i < 3; i++) so.ports[i + 1] = sports[i];
    so.master = "cbmaster";
    cb_sentinel *s = cb_sentinel_new(&so);
    cb_conn_opts o;
    cb_conn_opts_init(&o);  /* no host: the sentinels name it */
    cb_conn *c = cb_conn_new(&o);
    test("a connection without a host yet: connecting says so");
    test_cond(c->err == 0 && cb_conn_connect(c, now() + TIMEOUT) == CB_ERR &&
              strstr(c->errstr, "no host yet"));

    test("discovery: a dead sentinel skipped, the master found, ROLE master, writable");
    double t0 = now();
    ok = cb_sentinel_connect(s, c, t0 + 4 * TIMEOUT) == CB_OK;
    char where[32];
    snprintf(where, sizeof where, "127.0.0.1:%d", mport);
    test_cond(ok && strcmp(cb_conn_where(c), where) == 0 && says(c, "OK", "SET", "sn:k", "1", 0));
    if (!ok) fprintf(stderr, "  %s\n", s->errstr);

    test("a hung sentinel first: its share of the time, then the next one answers");
    int hung = socket(AF_INET, SOCK_STREAM, 0);  /* listens, never answers */
    struct sockaddr_in ha = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t hl = sizeof ha;
    ok = hung >= 0 && bind(hung, (struct sockaddr *)&ha, sizeof ha) == 0 && listen(hung, 8) == 0 &&
         getsockname(hung, (struct sockaddr *)&ha, &hl) == 0;
    cb_sentinel_opts ho = so;
    ho.n = 2;
    ho.ports[0] = ntohs(ha.sin_port);
    ho.ports[1] = sports[0];
    cb_sentinel *hs = cb_sentinel_new(&ho);
    char hhost[64];
    int hport = 0;
    t0 = now();
    ok = ok && cb_sentinel_master_addr(hs, t0 + 4 * TIMEOUT, hhost, sizeof hhost, &hport) == CB_OK;
    double first = now() - t0;
    test_cond(ok && hport == mport && first >= 2 * TIMEOUT - 0.01 && first < 4 * TIMEOUT + SLACK);

    test("the sentinel that answered is asked first next time: no wait for the hung one");
    t0 = now();
    ok = cb_sentinel_master_addr(hs, t0 + 4 * TIMEOUT, hhost, sizeof hhost, &hport) == CB_OK;
    test_cond(ok && hport == mport && now() - t0 < SLACK);
    cb_sentinel_free(hs);
    close(hung);

    test("a master name no sentinel knows: a clear error");
    so.master = "nosuchmaster";
    cb_sentinel *s2 = cb_sentinel_new(&so);
    char host[64];
    int port;
    ok = cb_sentinel_master_addr(s2, now() + 4 * TIMEOUT, host, sizeof host, &port) == CB_ERR;
    test_cond(ok && strstr(s2->errstr, "does not know master 'nosuchmaster'"));
    fprintf(stderr, "  (%s)\n", s2->errstr);
    cb_sentinel_free(s2);

    test("a replica named as master (stale answer) is refused by the ROLE check");
    so.master = "cbmaster";
    cb_conn *rc = conn_to("127.0.0.1", rport, NULL);
    redisReply *r = NULL;
    ok = cb_conn_connect(rc, now() + TIMEOUT) == CB_OK && (r = cmd(rc, "ROLE", 0, 0, 0)) &&
         strcmp(r->element[0]->str, "slave") == 0;
    if (r) freeReplyObject(r);
    test_cond(ok);
    cb_conn_free(rc);

    /* Follow +switch-master on one sentinel (the next round's push path). */
    cb_conn *sub = conn_to("127.0.0.1", sports[0], NULL);
    r = NULL;
    ok = cb_conn_connect(sub, now() + TIMEOUT) == CB_OK &&
         (r = cmd(sub, "SUBSCRIBE", "+switch-master", 0, 0)) != NULL;
    if (r) freeReplyObject(r);

    test("failover: the master killed; re-discovery finds the promoted replica");
    pid_t mpid = pid_of("master");
    kill(mpid, SIGKILL);
    char mpidfile[128];
    snprintf(mpidfile, sizeof mpidfile, "%s/master.pid", dir);
    unlink(mpidfile);
    t0 = now();
    int found = 0, attempts = 0;
    double worst = 0;
    while (!found && now() - t0 < 30) {  /* the sentinels' failover, polled */
        double a = now();
        found = cb_sentinel_connect(s, c, a + 2 * TIMEOUT) == CB_OK;
        double took = now() - a;
        if (took > worst) worst = took;
        attempts++;
        if (!found) nap(0.05);
    }
    snprintf(where, sizeof where, "127.0.0.1:%d", rport);
    test_cond(found && strcmp(cb_conn_where(c), where) == 0 &&
              says(c, "OK", "SET", "sn:k", "2", 0));
    fprintf(stderr, "  (failover seen after %.2f s, %d attempts)\n", now() - t0, attempts);

    test("no re-discovery attempt outlasted its deadline during the failover");
    test_cond(worst < 2 * TIMEOUT + SLACK);

    test("+switch-master from the subscription names the new master");
    redisReply *m = NULL;
    int sw = 0;
    for (double until = now() + 5; ok && !sw && now() < until;) {
        if (cb_conn_read(sub) < 0) break;
        while (!sw && cb_conn_get_reply(sub, &m) == CB_OK && m) {
            sw = cb_sentinel_parse_switch(s, m, host, sizeof host, &port);
            freeReplyObject(m);
        }
        if (!sw) nap(0.01);
    }
    test_cond(sw && port == rport && strcmp(host, "127.0.0.1") == 0);
    cb_conn_free(sub);

    test("parse_switch ignores other masters and other messages");
    redisReply fake_el[3], *els[3] = {&fake_el[0], &fake_el[1], &fake_el[2]};
    redisReply fr = {.type = REDIS_REPLY_ARRAY, .elements = 3, .element = els};
    char a0[] = "message", a1[] = "+switch-master", a2[] = "other 1.2.3.4 1 5.6.7.8 2";
    char *strs[3] = {a0, a1, a2};
    for (int i = 0; i < 3; i++) {
        memset(&fake_el[i], 0, sizeof fake_el[i]);
        fake_el[i].type = REDIS_REPLY_STRING;
        fake_el[i].str = strs[i];
        fake_el[i].len = strlen(strs[i]);
    }
    int other = cb_sentinel_parse_switch(s, &fr, host, sizeof host, &port);
    char a3[] = "cbmaster 1.2.3.4 1 5.6.7.8 70000";
    fake_el[2].str = a3;
    fake_el[2].len = strlen(a3);
    int badport = cb_sentinel_parse_switch(s, &fr, host, sizeof host, &port);
    test_cond(other == 0 && badport == 0 && !cb_sentinel_parse_switch(s, NULL, host, 64, &port));

    cb_conn_free(c);
    cb_sentinel_free(s);

    test("sentinel options: none, or no master name, are errors");
    so.n = 0;
    s = cb_sentinel_new(&so);
    ok = s->err == CB_CONN_EOPTS;
    cb_sentinel_free(s);
    so.n = 1;
    so.master = "";
    s = cb_sentinel_new(&so);
    test_cond(ok && s->err == CB_CONN_EOPTS &&
              cb_sentinel_master_addr(s, now() + TIMEOUT, host, sizeof host, &port) == CB_ERR);
    cb_sentinel_free(s);
}

int main(void) {
    servers_init("redis-server", "redis-server (and redis-sentinel)");
    /* Debian's redis-sentinel package, else the same binary in sentinel mode */
    snprintf(sentinel_bin, sizeof sentinel_bin, "%s",
             have("redis-sentinel") ? "redis-sentinel" : "redis-server --sentinel");
    test_sentinel();
    return test_report();
}

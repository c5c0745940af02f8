/* test_store_hostile_server.c -- a "server" that announces a reply of two
 * billion elements and hangs up.  The store must refuse the announcement
 * before allocating for it: hiredis alone reserves room for the announced
 * count and walks it when the reply is freed (seconds, or an abort under
 * ASan), far past timeout_ms. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "cbreaker_redis.h"
#include "clock.h"
#include "test.h"

typedef struct server {
    int fd;
    const char *answer;
    int stop;
} server;

/* Answers every connection's first bytes with `answer`, then closes it. */
static void *serve(void *ud) {
    server *sv = ud;
    while (!sv->stop) {
        int c = accept(sv->fd, NULL, NULL);
        if (c < 0) break;
        char buf[512];
        if (read(c, buf, sizeof buf) > 0) {
            ssize_t w = write(c, sv->answer, strlen(sv->answer));
            (void)w;
        }
        close(c);
    }
    return NULL;
}

static int listen_any(int *port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 8) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0)
        return -1;
    *port = ntohs(a.sin_port);
    return fd;
}

/* Seconds a store takes to be created and polled against `answer`. */
static double against(const char *answer, cb_store_health *h) {
    server sv = {.answer = answer};
    int port;
    sv.fd = listen_any(&port);
    if (sv.fd < 0) return -1;
    pthread_t t;
    pthread_create(&t, NULL, serve, &sv);
    char url[64];
    snprintf(url, sizeof url, "redis://127.0.0.1:%d/0", port);
    cb_store_opts o;
    cb_store_opts_init(&o);
    o.url = url;
    o.timeout_ms = 100;
    o.backoff_min = 0.001;  /* every poll reconnects */
    double t0 = cb_clock_monotonic(NULL);
    cb_store *s = cb_store_new(&o);
    for (int i = 0; i < 3; i++) {
        nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);  /* the back-off */
        cb_store_poll(s);
    }
    double spent = cb_clock_monotonic(NULL) - t0;
    cb_store_get_health(s, h);
    static char last[128];
    snprintf(last, sizeof last, "%s", h->last_error);
    h->last_error = last;
    cb_store_free(s);
    sv.stop = 1;
    shutdown(sv.fd, SHUT_RDWR);
    close(sv.fd);
    pthread_join(t, NULL);
    return spent;
}

int main(void) {
    cb_store_health h;
    double spent = against("*2000000000\r\n", &h);
    test("a reply announcing 2e9 elements then a hang-up: refused at once");
    test_cond(spent >= 0 && spent < 1.0);
    test("... and the refusal is named");
    test_cond(strstr(h.last_error, "elements") != NULL);
    printf("    (%.3f s, last error: %s)\n", spent, h.last_error);

    spent = against("*3\r\n*2000000000\r\n", &h);
    test("the same announcement nested in an array: refused at once");
    test_cond(spent >= 0 && spent < 1.0);
    return test_report();
}

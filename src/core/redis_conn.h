/* redis_conn.h -- one connection to a Redis server, Sentinel discovery and
 * Cluster slots: the store's transport.  Internal to the core; never
 * installed.
 *
 * hiredis is kept for the protocol only: redisFormatCommandArgv encodes,
 * redisReader parses (with a bound on what a reply may announce, checked
 * before anything is allocated).  This layer owns the socket: TCP or unix,
 * a non-blocking connect with a deadline, reads and writes bounded by a
 * deadline with poll(2), TLS through OpenSSL (redis_tls.c), and name
 * resolution that cannot block past the deadline (redis_resolve.c).
 *
 * What the store uses:
 *
 *   cb_conn_opts o; cb_conn_opts_init(&o); o.host = ...; o.tls.enabled = 1;
 *   cb_conn *c = cb_conn_new(&o);            no I/O; bad TLS files -> c->err
 *   cb_conn_connect(c, deadline)             (re)connect: resolve, connect,
 *                                            TLS handshake, AUTH, SELECT
 *   cb_conn_command(c, deadline, argc, argv, lens)     one round trip
 *   cb_conn_append(c, ...) x N                pipelined send: encode only, no
 *   cb_conn_flush(c, &done)                   I/O; flush writes what the
 *   cb_conn_flush_until(c, deadline)          socket takes, or all of it
 *   cb_conn_read(c) + cb_conn_get_reply(c, &r)    a subscription: read what
 *                                            is there (never waits), then
 *                                            take the complete replies
 *   cb_conn_read_reply(c, deadline)           the next reply, waiting
 *   cb_conn_fd(c), cb_conn_want_write(c), cb_conn_pending(c)  event loops
 *   cb_conn_set_endpoint(c, host, port)       a new address (Sentinel, Cluster)
 *   cb_sentinel_connect(s, c, deadline)       re-discovery: on an error, on
 *                                            reconnect, or when a sentinel
 *                                            says +switch-master
 *   cb_sentinel_parse_switch(s, reply, ...)   that message, read with
 *                                            cb_conn_read on a sentinel
 *   cb_cluster_connect(k, c, slot, deadline)  the master of a hash slot
 *   cb_cluster_keyslot, cb_cluster_redirect   routing (see the Cluster part)
 *
 * Every call that waits takes an absolute deadline on cb_clock_monotonic's
 * clock and returns by then; a failure leaves err/errstr set (like
 * redisContext) and the connection closed, ready for cb_conn_connect.
 *
 * TLS and the broadcast hot path: a transition in broadcast mode only calls
 * cb_conn_append, which encodes the command into this connection's output
 * buffer and makes no system call and no OpenSSL call.  Encryption and the
 * write happen in cb_conn_flush, which the store runs from its poll (at a
 * bounded cadence, or when the caller drives the fd), so TLS adds no I/O
 * and no crypto to the hot path.  (The store today writes what the socket
 * takes right after appending; on this transport it leaves that to poll.)
 * Shared mode pays one TLS write and one TLS read per record, as it pays
 * one round trip without TLS.
 *
 * A cb_conn is used by one thread at a time.  The only thread it starts is
 * the resolver's (redis_resolve.c), which touches nothing of the cb_conn. */
#ifndef CB_REDIS_CONN_H
#define CB_REDIS_CONN_H

#include <stddef.h>
#include <sys/socket.h>

#include "cbreaker.h"  /* CB_OK, cb_clock_monotonic */

struct addrinfo;
struct redisReply;

/* ---- errors (cb_conn.err, cb_sentinel.err) --------------------------------- */
enum {
    CB_CONN_EOK = 0,
    CB_CONN_EOPTS,      /* bad options: a TLS file that cannot be loaded ... */
    CB_CONN_ERESOLVE,   /* the host name did not resolve (in time) */
    CB_CONN_ECONNECT,   /* connect failed or timed out */
    CB_CONN_ETLS,       /* TLS handshake, certificate or host name */
    CB_CONN_EAUTH,      /* the server refused AUTH or SELECT */
    CB_CONN_EIO,        /* read or write failed */
    CB_CONN_EEOF,       /* the server closed the connection */
    CB_CONN_ETIMEOUT,   /* no reply (or no room to write) before the deadline */
    CB_CONN_EPROTOCOL,  /* not RESP, or a reply over the limits */
    CB_CONN_EOOM,
    CB_CONN_ECLOSED,    /* used while not connected */
    CB_CONN_EROLE,      /* Sentinel: no sentinel named a master that says so;
                           Cluster: no seed named the slot's master */
};

/* 1 when fd is ready for `events` (POLLIN, POLLOUT) before `deadline` (on
 * cb_clock_monotonic's clock), 0 on timeout, -1 on error.  EINTR is
 * retried.  In redis_conn.c. */
int cb_wait_fd(int fd, short events, double deadline);

/* ---- name resolution (redis_resolve.c) -------------------------------------
 * getaddrinfo runs in a detached helper thread; the caller waits for it on a
 * condition variable until its deadline.  Why a thread: glibc's
 * getaddrinfo_a is glibc-only and its cancellation is best-effort, and a
 * hand-written DNS client would skip /etc/hosts and nsswitch.  The request
 * is reference-counted between caller and thread, so a caller that gave up
 * (or freed its connection) leaves the thread a request of its own to
 * finish and free: no thread ever touches freed memory. */

#define CB_ADDRS_MAX 8

typedef struct cb_addrs {
    int n;
    struct {
        struct sockaddr_storage sa;
        socklen_t len;
    } a[CB_ADDRS_MAX];
} cb_addrs;

/* getaddrinfo's shape, plus a user pointer (tests use it to be slow).  The
 * result is freed with freeaddrinfo. */
typedef int (*cb_resolve_fn)(void *ud, const char *host, const char *service,
                             const struct addrinfo *hints, struct addrinfo **res);

typedef struct cb_resolve_req cb_resolve_req;

/* 1 with the address in *out when host is a numeric IPv4 or IPv6 address
 * (no name server is asked), else 0. */
int cb_resolve_numeric(const char *host, int port, cb_addrs *out);

/* Starts resolving host:port in a helper thread.  NULL when out of memory or
 * no thread could be started (errno tells which). */
cb_resolve_req *cb_resolve_start(const char *host, int port, cb_resolve_fn fn, void *ud);

/* Waits for `q` until `deadline`.  1 with the answer in *out (n >= 1), 0 on
 * timeout (q still running: wait again later, or release it), -1 when the
 * name did not resolve (the reason in err). */
int cb_resolve_wait(cb_resolve_req *q, double deadline, cb_addrs *out, char *err,
                    size_t errcap);

/* 1 when q resolves `host` (a pending request can be waited on again). */
int cb_resolve_is_for(const cb_resolve_req *q, const char *host, int port);

/* Drops the caller's reference; the thread frees q if it is still running.
 * NULL is a no-op. */
void cb_resolve_release(cb_resolve_req *q);

/* ---- TLS (redis_tls.c) ----------------------------------------------------- */
typedef struct cb_tls_opts {
    int enabled;
    const char *ca_file;      /* CA bundle (PEM); neither: the system's store */
    const char *ca_path;      /* hashed CA directory */
    const char *cert_file;    /* client certificate chain, for tls-auth-clients */
    const char *key_file;
    const char *server_name;  /* SNI and the name verified; NULL: the host */
    int verify;               /* 1 (default): certificate chain and host name */
} cb_tls_opts;

typedef struct cb_tls_ctx cb_tls_ctx;  /* an SSL_CTX: trust store, client cert */
typedef struct cb_tls cb_tls;          /* an SSL on one socket */

/* A context for `o`.  NULL with a message in err ("TLS: ca_file '/x': No
 * such file or directory") when a file cannot be used, or out of memory. */
cb_tls_ctx *cb_tls_ctx_new(const cb_tls_opts *o, char *err, size_t errcap);
void cb_tls_ctx_free(cb_tls_ctx *x);

/* A TLS client on the connected socket fd, verifying `host` (an IP address
 * or a DNS name) unless o.verify is 0.  NULL with a message in err. */
cb_tls *cb_tls_new(cb_tls_ctx *x, int fd, const char *host, char *err, size_t errcap);
void cb_tls_free(cb_tls *t);

/* The handshake, bounded by `deadline`.  CB_OK, or CB_ERR with the cause in
 * err: "TLS: certificate verify failed: hostname mismatch" ... */
int cb_tls_handshake(cb_tls *t, double deadline, char *err, size_t errcap);

/* Non-blocking.  Bytes moved (> 0), 0 when the socket must become ready
 * first (*want_write says for what: 1 POLLOUT, 0 POLLIN), -1 on EOF (read
 * only) and -2 on an error (message in err). */
long cb_tls_read(cb_tls *t, char *buf, size_t n, int *want_write, char *err, size_t errcap);
long cb_tls_write(cb_tls *t, const char *buf, size_t n, int *want_write, char *err,
                  size_t errcap);

/* Decrypted bytes buffered inside OpenSSL, which poll(2) cannot see. */
int cb_tls_pending(const cb_tls *t);

/* ---- the connection --------------------------------------------------------- */
typedef struct cb_conn_opts {
    const char *host;            /* TCP: a name or an address (IPv4, IPv6); NULL
                                    until cb_conn_set_endpoint (Sentinel) */
    int port;                    /* 6379 */
    const char *path;            /* a unix socket instead of host:port */
    const char *user;            /* ACL user: AUTH user password */
    const char *password;        /* AUTH password; NULL or "": no AUTH */
    int db;                      /* SELECT db when > 0 */
    cb_tls_opts tls;             /* TCP only */
    size_t max_elements;         /* array elements one reply may announce, all
                                    levels together (1 Mi) */
    size_t max_reply_bytes;      /* bytes of one reply in progress (64 MiB) */
    size_t max_out_bytes;        /* unsent output (8 MiB): a stuck server
                                    cannot make us buffer without end */
    cb_resolve_fn resolve;       /* NULL: getaddrinfo */
    void *resolve_ud;
} cb_conn_opts;

void cb_conn_opts_init(cb_conn_opts *o);

typedef struct cb_conn {
    int err;                     /* CB_CONN_E*, 0 when none */
    char errstr[128];
    struct cb_conn_priv *priv;
} cb_conn;

/* A connection for `o` (strings are copied), not yet connected: no I/O.
 * NULL only when out of memory; a TLS file that cannot be loaded sets
 * err = CB_CONN_EOPTS, and connecting then fails with the same message. */
cb_conn *cb_conn_new(const cb_conn_opts *o);

/* Closes the socket and frees everything.  NULL is a no-op. */
void cb_conn_free(cb_conn *c);

/* (Re)connects by `deadline`: closes any current socket, resolves (a name
 * is resolved again on each call, the last answer serving when the name
 * server is slow), connects, does the TLS handshake, AUTH [user] password
 * and SELECT db.  CB_OK, or CB_ERR with err/errstr set and nothing open. */
int cb_conn_connect(cb_conn *c, double deadline);

/* Closes the socket and drops what was buffered either way.  Idempotent. */
void cb_conn_close(cb_conn *c);

/* A new address for the next cb_conn_connect (a discovered master); the
 * cached resolution is dropped when it changes.  CB_ERR when host is too
 * long (nothing changes). */
int cb_conn_set_endpoint(cb_conn *c, const char *host, int port);

/* 1 when connected. */
int cb_conn_connected(const cb_conn *c);

/* The socket, or -1 when not connected: for an event loop.  Wait for
 * POLLIN, and POLLOUT while cb_conn_want_write; call cb_conn_read when
 * cb_conn_pending says bytes are ready that poll cannot see. */
int cb_conn_fd(const cb_conn *c);
size_t cb_conn_want_write(const cb_conn *c);
int cb_conn_pending(const cb_conn *c);

/* "host:port" or the socket path, for messages. */
const char *cb_conn_where(const cb_conn *c);

/* The host and port it connects to; NULL (and 0) over a unix socket or
 * before one is set. */
const char *cb_conn_host(const cb_conn *c);
int cb_conn_port(const cb_conn *c);

/* Encodes a command into the output buffer: no I/O, no OpenSSL call.
 * CB_ERR (err set, the connection stays) when out of memory or over
 * max_out_bytes. */
int cb_conn_append(cb_conn *c, int argc, const char **argv, const size_t *lens);

/* Writes what the socket takes now, without waiting; *done = 1 when the
 * output buffer is empty.  CB_ERR closes the connection. */
int cb_conn_flush(cb_conn *c, int *done);

/* Writes all of the output buffer by `deadline`.  CB_ERR closes. */
int cb_conn_flush_until(cb_conn *c, double deadline);

/* Reads what the socket has now, at most 64 KiB, without waiting.  The
 * bytes read (0: nothing there), or CB_ERR (EOF or an error: closed). */
long cb_conn_read(cb_conn *c);

/* Takes the next complete reply from what was read, without I/O: CB_OK
 * with *r (the caller frees it with freeReplyObject) or *r = NULL when
 * none is complete; CB_ERR (closed) on a protocol error or a reply over
 * the limits. */
int cb_conn_get_reply(cb_conn *c, struct redisReply **r);

/* For a subscription, where a peer may publish anything: when the reply
 * in progress holds over `limit` unparsed bytes and is a string (a
 * message's payload), drops it: the message is lost, the connection kept,
 * and the rest of its bytes are thrown away as cb_conn_read reads them.
 * 1 when it dropped one, 0 when nothing is over `limit`, CB_ERR (closed)
 * when what is over it is no string. */
int cb_conn_drop_big_string(cb_conn *c, size_t limit);

/* The next reply, reading until `deadline`.  NULL (closed, err set) on a
 * failure or timeout; an error reply is returned as such. */
struct redisReply *cb_conn_read_reply(cb_conn *c, double deadline);

/* One round trip: append, flush and read the next reply by `deadline`.
 * The next reply is this command's only when no earlier reply is owed. */
struct redisReply *cb_conn_command(cb_conn *c, double deadline, int argc, const char **argv,
                                   const size_t *lens);

/* ---- Sentinel (redis_sentinel.c) ---------------------------------------------
 * Ask the sentinels, in turn, for the master's address; connect to it; ask
 * it ROLE; a sentinel that named a non-master is skipped.  The sentinel that
 * answered moves to the front of the list, as the Sentinel client
 * guidelines say. */

#define CB_SENTINELS_MAX 8

typedef struct cb_sentinel_opts {
    int n;                        /* sentinels */
    const char *hosts[CB_SENTINELS_MAX];
    int ports[CB_SENTINELS_MAX];  /* 26379 when 0 */
    const char *master;           /* the name the sentinels monitor */
    const char *user;             /* the sentinels' own ACL user/password */
    const char *password;
    cb_tls_opts tls;              /* for the sentinels (usually the master's) */
    cb_resolve_fn resolve;
    void *resolve_ud;
} cb_sentinel_opts;

void cb_sentinel_opts_init(cb_sentinel_opts *o);

typedef struct cb_sentinel {
    int err;
    char errstr[128];
    struct cb_sentinel_priv *priv;
} cb_sentinel;

/* NULL only when out of memory; bad options (no sentinel, no master name,
 * a TLS file) set err = CB_CONN_EOPTS. */
cb_sentinel *cb_sentinel_new(const cb_sentinel_opts *o);
void cb_sentinel_free(cb_sentinel *s);

/* The master's address by `deadline`: CB_OK with host (NUL-terminated)
 * and *port, or CB_ERR with err/errstr naming what each sentinel said.
 * Each sentinel gets an equal share of the time left. */
int cb_sentinel_master_addr(cb_sentinel *s, double deadline, char *host, size_t hostcap,
                            int *port);

/* Discovers the master, points `c` at it and connects (cb_conn_connect),
 * then checks that ROLE says "master".  CB_OK, or CB_ERR with the cause in
 * s->err/errstr (c closed).  The store calls this to connect and again
 * after any error, instead of cb_conn_connect. */
int cb_sentinel_connect(cb_sentinel *s, cb_conn *c, double deadline);

/* The same at host:port, a master a sentinel named moments ago (the
 * store's second connection): no sentinel asked, ROLE checked. */
int cb_sentinel_connect_at(cb_sentinel *s, cb_conn *c, const char *host, int port,
                           double deadline);

/* A pub/sub reply from a sentinel's "+switch-master" channel: 1 when it
 * moves our master, with the new address in host/port; 0 otherwise. */
int cb_sentinel_parse_switch(const cb_sentinel *s, const struct redisReply *r, char *host,
                             size_t hostcap, int *port);

/* ---- Cluster (redis_cluster.c) ------------------------------------------------
 * The store keeps all its keys in one hash slot (the prefix is the hash
 * tag: "{<prefix>}:<name>:state", "{<prefix>}:states"), so it talks to one
 * master at a time, the slot's owner:
 *   cb_cluster_connect(k, c, slot, deadline)  CLUSTER SLOTS asked of each
 *       seed in turn; c ends up connected to the slot's master.  The owner
 *       found, or the one a MOVED named, is used without asking for the
 *       connections of one attempt only: a node that still accepts
 *       connections but no longer serves the slot is not tried for ever
 *   cb_cluster_redirect(reply, ...)  a MOVED or ASK answer, parsed;
 *   cb_cluster_moved(k, c, host, port) remembers the owner it names, for
 *       the reconnect that follows (twice in a row at most: then the seeds
 *       are asked, so two nodes that name each other cannot hold the store)
 *   cb_cluster_asking(via, c, host, port, ...) follows an ASK: the one
 *       command, after ASKING, on a connection of its own
 * PUBLISH reaches every node's subscribers, so the subscription may stay
 * on any node; the store keeps it on the owner too. */

#define CB_CLUSTER_SEEDS_MAX 8
#define CB_CLUSTER_MOVED_MAX 2  /* MOVED followed in a row without asking the seeds */

typedef struct cb_cluster_node {
    char host[256];
    int port;
} cb_cluster_node;

typedef struct cb_cluster {
    int err;                        /* CB_CONN_E*: why the last connect failed */
    char errstr[128];
    int n;                          /* seeds */
    cb_cluster_node seeds[CB_CLUSTER_SEEDS_MAX];  /* the one that answered last first */
    cb_cluster_node owner;          /* the slot's master when known, else port 0 */
    int guesses;                    /* connects left to `owner` before asking again */
    int moved;                      /* MOVED followed since the seeds last answered */
} cb_cluster;

/* A cluster with no seed and no owner known. */
void cb_cluster_init(cb_cluster *k);

/* CB_ERR when there are CB_CLUSTER_SEEDS_MAX already or the host is too long. */
int cb_cluster_add_seed(cb_cluster *k, const char *host, int port);

/* Points `c` at the master of `slot` and connects it by `deadline`:
 * CB_OK, or CB_ERR with the cause in k->err/errstr (c closed). */
int cb_cluster_connect(cb_cluster *k, cb_conn *c, unsigned slot, double deadline);

/* A MOVED answer on `c` named host:port (host "" is c's host): the next
 * connect goes there first. */
void cb_cluster_moved(cb_cluster *k, const cb_conn *c, const char *host, int port);

/* An ASK answer on `from` named host:port (host "" is from's host): the
 * slot is being migrated there.  Sends ASKING and the command on `via`,
 * connected for this one command and closed after, by `deadline`: the
 * command's reply (an error reply as such, e.g. TRYAGAIN for a command
 * over several keys not all moved yet), or NULL with via->err/errstr. */
struct redisReply *cb_cluster_asking(cb_conn *via, const cb_conn *from, const char *host,
                                     int port, double deadline, int argc, const char **argv,
                                     const size_t *lens);

enum { CB_CLUSTER_MOVED = 1, CB_CLUSTER_ASK = 2 };

/* The hash slot (0..16383) of key[len]: CRC16 of the first non-empty
 * {tag} when there is one, else of the whole key. */
unsigned cb_cluster_keyslot(const char *key, size_t len);

/* An error reply "MOVED slot host:port" or "ASK slot host:port": returns
 * CB_CLUSTER_MOVED or CB_CLUSTER_ASK with slot, host (may be "": the node
 * that answered) and port; 0 for any other reply. */
int cb_cluster_redirect(const struct redisReply *r, int *slot, char *host, size_t hostcap,
                        int *port);

#endif

/* pgconn.h: one PostgreSQL connection on the libuv loop. libpq runs in non-blocking pipeline
 * mode with its socket in a uv_poll, so a slow or absent database never holds the loop. A
 * request is one or more statements sent together and run as one implicit transaction; its
 * callback comes from the loop, in submission order. Connecting is lazy and starts again after
 * a loss when the next request comes (the caller's retry policy paces it). */
#ifndef ASSETD_PGCONN_H
#define ASSETD_PGCONN_H

#include <libpq-fe.h>
#include <stddef.h>
#include <uv.h>

typedef struct pgconn pgconn;
typedef struct pgconn_req pgconn_req;

typedef void (*pgconn_done_cb)(pgconn_req *req, void *ud);
typedef void (*pgconn_notify_cb)(const char *channel, const char *payload, int pid, void *ud);

/* CONNINFO is libpq's (a postgres:// URL or key=value pairs). A connection attempt that takes
 * longer than CONNECT_TIMEOUT_MS fails (libpq's own connect_timeout binds only its blocking
 * calls). NOTIFY receives every notification of the channels listened to. */
pgconn *pgconn_new(uv_loop_t *loop, const char *conninfo, unsigned connect_timeout_ms,
                   pgconn_notify_cb notify, void *ud);
/* Fails what is pending with "connection closed" (callbacks run, from inside this call) and
 * frees the connection once its handles are closed. Safe from inside a callback. */
void pgconn_free(pgconn *c);

/* A request of NSTMTS statements; each is set once with pgconn_req_set (PARAMS are text, NULL
 * for SQL NULL, copied). The connection owns a submitted request until its callback, which
 * frees it with pgconn_req_free. */
pgconn_req *pgconn_req_new(size_t nstmts);
int pgconn_req_set(pgconn_req *r, size_t i, const char *sql, int nparams, const char *const *params);
void pgconn_req_free(pgconn_req *r);
/* 0, or -1 when the connection is closing (nothing is queued, no callback comes). */
int pgconn_submit(pgconn *c, pgconn_req *r, pgconn_done_cb cb, void *ud);
/* The caller no longer waits: no callback comes and the connection frees R when it is done. */
void pgconn_req_abandon(pgconn_req *r);

size_t pgconn_req_count(const pgconn_req *r);
/* Statement I's result (NULL when it failed or the request failed before it). */
const PGresult *pgconn_req_result(const pgconn_req *r, size_t i);
/* NULL on success; else the first failure, and its SQLSTATE ("" for a lost connection). */
const char *pgconn_req_error(const pgconn_req *r);
const char *pgconn_req_sqlstate(const pgconn_req *r);

/* Listen on CHANNEL from now on, on this connection and every later one (0, or -1: no memory). */
int pgconn_listen(pgconn *c, const char *channel);

enum pgconn_state { PGCONN_IDLE, PGCONN_CONNECTING, PGCONN_READY, PGCONN_DOWN };
enum pgconn_state pgconn_state(const pgconn *c);
const char *pgconn_state_name(enum pgconn_state s);
/* The server process of the connection now (0 while not connected): notifications carry the
 * sender's, so a client can tell its own changes from others'. */
int pgconn_backend_pid(const pgconn *c);
/* Why the latest attempt or connection failed ("" if none has). */
const char *pgconn_last_error(const pgconn *c);

#endif

/* pgconn.c: a PostgreSQL connection driven by the libuv loop (pgconn.h). Requests wait in
 * `queue` until the connection is ready, then go out pipelined (each ended by a Sync, so each
 * is its own implicit transaction) and wait in `sent` for their results, which come in order.
 * All sending and every callback happen from loop callbacks, never inside pgconn_submit. */
#include "pgconn.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct pgconn_stmt {
    char *sql;
    int nparams;
    char **params;
} pgconn_stmt;

struct pgconn_req {
    pgconn_req *next;
    size_t n, cur;               /* statements; the one whose results come next */
    int cur_seen;                /* statement CUR has given a result (its NULL ends it) */
    pgconn_stmt *stmts;
    PGresult **res;
    char *err;
    char sqlstate[6];
    int abandoned;
    pgconn_done_cb cb;
    void *ud;
};

typedef struct reqlist { pgconn_req *head, *tail; } reqlist;

struct pgconn {
    uv_loop_t *loop;
    char *conninfo;
    unsigned connect_timeout_ms;
    PGconn *pg;
    enum pgconn_state st;
    uv_poll_t *poll;             /* on PQsocket(pg); its own allocation, freed when closed */
    int poll_fd, poll_events;
    uv_timer_t kick;             /* sends and completes from the loop, never inside submit */
    uv_timer_t ctimer;           /* the connect timeout */
    int handles_open;
    reqlist queue, sent;
    char **channels;
    size_t nchannels;
    pgconn_notify_cb notify;
    void *ud;
    int depth, freeing;          /* inside a callback; pgconn_free asked for meanwhile */
    char err[256];
};

static void push(reqlist *l, pgconn_req *r) {
    r->next = NULL;
    if (l->tail) l->tail->next = r; else l->head = r;
    l->tail = r;
}

static pgconn_req *pop(reqlist *l) {
    pgconn_req *r = l->head;
    if (r && !(l->head = r->next)) l->tail = NULL;
    return r;
}

pgconn_req *pgconn_req_new(size_t nstmts) {
    pgconn_req *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->n = nstmts;
    r->stmts = calloc(nstmts ? nstmts : 1, sizeof *r->stmts);
    r->res = calloc(nstmts ? nstmts : 1, sizeof *r->res);
    if (!r->stmts || !r->res) { pgconn_req_free(r); return NULL; }
    return r;
}

int pgconn_req_set(pgconn_req *r, size_t i, const char *sql, int nparams, const char *const *params) {
    if (i >= r->n || r->stmts[i].sql || nparams < 0) return -1;
    pgconn_stmt *s = &r->stmts[i];
    if (!(s->sql = strdup(sql))) return -1;
    if (nparams && !(s->params = calloc((size_t)nparams, sizeof *s->params))) return -1;
    s->nparams = nparams;
    for (int k = 0; k < nparams; k++)
        if (params[k] && !(s->params[k] = strdup(params[k]))) return -1;
    return 0;
}

void pgconn_req_free(pgconn_req *r) {
    if (!r) return;
    for (size_t i = 0; r->stmts && i < r->n; i++) {
        for (int k = 0; k < r->stmts[i].nparams; k++) free(r->stmts[i].params[k]);
        free(r->stmts[i].params);
        free(r->stmts[i].sql);
    }
    for (size_t i = 0; r->res && i < r->n; i++) PQclear(r->res[i]);
    free(r->stmts);
    free(r->res);
    free(r->err);
    free(r);
}

void pgconn_req_abandon(pgconn_req *r) { r->abandoned = 1; }
size_t pgconn_req_count(const pgconn_req *r) { return r->n; }
const PGresult *pgconn_req_result(const pgconn_req *r, size_t i) { return i < r->n ? r->res[i] : NULL; }
const char *pgconn_req_error(const pgconn_req *r) { return r->err; }
const char *pgconn_req_sqlstate(const pgconn_req *r) { return r->sqlstate; }
enum pgconn_state pgconn_state(const pgconn *c) { return c->st; }
const char *pgconn_last_error(const pgconn *c) { return c->err; }
int pgconn_backend_pid(const pgconn *c) { return c->pg && c->st == PGCONN_READY ? PQbackendPID(c->pg) : 0; }

const char *pgconn_state_name(enum pgconn_state s) {
    static const char *const names[] = {"idle", "connecting", "ready", "down"};
    return names[s];
}

/* libpq's messages end in a newline; ours do not. */
static void set_err(char *dst, size_t cap, const char *msg) {
    snprintf(dst, cap, "%s", msg && *msg ? msg : "unknown error");
    size_t n = strlen(dst);
    while (n && (dst[n - 1] == '\n' || dst[n - 1] == ' ')) dst[--n] = '\0';
}

static void req_fail(pgconn_req *r, const char *msg, const char *sqlstate) {
    if (r->err) return;                       /* the first failure is the one that counts */
    char buf[512];
    set_err(buf, sizeof buf, msg);
    r->err = strdup(buf);
    snprintf(r->sqlstate, sizeof r->sqlstate, "%s", sqlstate ? sqlstate : "");
}

static void req_done(pgconn *c, pgconn_req *r) {
    if (r->abandoned || !r->cb) { pgconn_req_free(r); return; }
    c->depth++;
    r->cb(r, r->ud);
    c->depth--;
}

static void really_free(pgconn *c);

static void handle_closed(uv_handle_t *h) {
    pgconn *c = h->data;
    if (--c->handles_open == 0) {
        free(c->conninfo);
        for (size_t i = 0; i < c->nchannels; i++) free(c->channels[i]);
        free(c->channels);
        free(c);
    }
}

static void poll_closed(uv_handle_t *h) { free(h); }

static void poll_drop(pgconn *c) {
    if (!c->poll) return;
    if (!uv_is_closing((uv_handle_t *)c->poll)) uv_close((uv_handle_t *)c->poll, poll_closed);
    c->poll = NULL;
    c->poll_fd = -1;
    c->poll_events = 0;
}

static void on_poll(uv_poll_t *p, int status, int events);

/* Watch the connection's socket for EVENTS, following a new socket when libpq changed it. */
static int poll_want(pgconn *c, int events) {
    int fd = PQsocket(c->pg);
    if (fd < 0) return -1;
    if (c->poll && c->poll_fd != fd) poll_drop(c);
    if (!c->poll) {
        if (!(c->poll = malloc(sizeof *c->poll))) return -1;
        if (uv_poll_init(c->loop, c->poll, fd) != 0) { free(c->poll); c->poll = NULL; return -1; }
        c->poll->data = c;
        c->poll_fd = fd;
        c->poll_events = 0;
    }
    if (events == c->poll_events) return 0;
    c->poll_events = events;
    return uv_poll_start(c->poll, events, on_poll);
}

static void on_kick(uv_timer_t *t);

static void kick_soon(pgconn *c) {
    if (!c->freeing) uv_timer_start(&c->kick, on_kick, 0, 0);
}

/* The connection is gone: every request sent or waiting fails (whether a sent one committed
 * is unknown: the caller's retry must be safe to repeat, as every store write is). */
static void conn_lost(pgconn *c, const char *why) {
    int never = c->st != PGCONN_READY;       /* the attempt failed, nothing was lost */
    set_err(c->err, sizeof c->err, why);
    poll_drop(c);
    uv_timer_stop(&c->ctimer);
    if (c->pg) PQfinish(c->pg);
    c->pg = NULL;
    c->st = PGCONN_DOWN;
    reqlist failed = c->sent;
    if (failed.tail) failed.tail->next = c->queue.head; else failed.head = c->queue.head;
    if (c->queue.tail) failed.tail = c->queue.tail;
    c->sent.head = c->sent.tail = c->queue.head = c->queue.tail = NULL;
    char msg[300];
    snprintf(msg, sizeof msg, "%s: %s", never ? "cannot connect to the database" : "database connection lost", c->err);
    for (pgconn_req *r; (r = pop(&failed));) {
        req_fail(r, msg, "");
        req_done(c, r);
    }
}

static int send_one(pgconn *c, pgconn_req *r) {
    for (size_t i = 0; i < r->n; i++) {
        const pgconn_stmt *s = &r->stmts[i];
        if (!s->sql || !PQsendQueryParams(c->pg, s->sql, s->nparams, NULL,
                                         (const char *const *)s->params, NULL, NULL, 0))
            return -1;
    }
    return PQpipelineSync(c->pg) ? 0 : -1;
}

static void flush_out(pgconn *c) {
    int rc = PQflush(c->pg);
    if (rc < 0) { conn_lost(c, PQerrorMessage(c->pg)); return; }
    if (poll_want(c, UV_READABLE | (rc ? UV_WRITABLE : 0)) != 0) conn_lost(c, "cannot watch the socket");
}

static void send_queued(pgconn *c) {
    if (c->st != PGCONN_READY) return;
    for (pgconn_req *r; (r = pop(&c->queue));) {
        push(&c->sent, r);
        if (send_one(c, r) != 0) { conn_lost(c, PQerrorMessage(c->pg)); return; }
    }
    flush_out(c);
}

static void take_result(pgconn_req *r, PGresult *res) {
    ExecStatusType st = PQresultStatus(res);
    if (st == PGRES_FATAL_ERROR)
        req_fail(r, PQresultErrorMessage(res), PQresultErrorField(res, PG_DIAG_SQLSTATE));
    else if (st == PGRES_PIPELINE_ABORTED)
        req_fail(r, "statement skipped: an earlier one of the request failed", "");
    else if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK && st != PGRES_EMPTY_QUERY)
        req_fail(r, "unsupported result (COPY is not supported)", "");
    r->cur_seen = 1;
    if (r->cur < r->n && !r->res[r->cur] && (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)) {
        r->res[r->cur] = res;
        return;
    }
    PQclear(res);
}

/* Hand out every complete result: a request ends at its Sync. */
static void read_results(pgconn *c) {
    int idle_nulls = 0;                       /* a NULL may follow a Sync, never two in a row */
    while (c->pg && c->sent.head && !PQisBusy(c->pg)) {
        pgconn_req *r = c->sent.head;
        PGresult *res = PQgetResult(c->pg);
        if (!res) {                           /* the end of one statement's results */
            if (!r->cur_seen) {
                if (++idle_nulls > 1) break;
                continue;
            }
            r->cur++;
            r->cur_seen = 0;
            continue;
        }
        idle_nulls = 0;
        if (PQresultStatus(res) == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            pop(&c->sent);
            req_done(c, r);
            continue;
        }
        take_result(r, res);
    }
}

static void read_notifies(pgconn *c) {
    for (PGnotify *n; c->pg && (n = PQnotifies(c->pg));) {
        if (c->notify && !c->freeing) {
            c->depth++;
            c->notify(n->relname, n->extra, n->be_pid, c->ud);
            c->depth--;
        }
        PQfreemem(n);
    }
}

/* LISTEN again on a new connection: a request of its own, first in line, with no callback. */
static void relisten(pgconn *c) {
    if (!c->nchannels) return;
    pgconn_req *r = pgconn_req_new(c->nchannels);
    if (!r) return;
    for (size_t i = 0; i < c->nchannels; i++) {
        char sql[160];
        snprintf(sql, sizeof sql, "LISTEN \"%s\"", c->channels[i]);
        pgconn_req_set(r, i, sql, 0, NULL);
    }
    r->next = c->queue.head;
    c->queue.head = r;
    if (!c->queue.tail) c->queue.tail = r;
}

static void became_ready(pgconn *c) {
    uv_timer_stop(&c->ctimer);
    if (PQsetnonblocking(c->pg, 1) != 0 || !PQenterPipelineMode(c->pg)) {
        conn_lost(c, PQerrorMessage(c->pg));
        return;
    }
    c->st = PGCONN_READY;
    c->err[0] = '\0';
    relisten(c);
    send_queued(c);
}

static void connect_step(pgconn *c) {
    switch (PQconnectPoll(c->pg)) {
    case PGRES_POLLING_READING:
        if (poll_want(c, UV_READABLE) != 0) conn_lost(c, "cannot watch the socket");
        return;
    case PGRES_POLLING_WRITING:
        if (poll_want(c, UV_WRITABLE) != 0) conn_lost(c, "cannot watch the socket");
        return;
    case PGRES_POLLING_OK:
        became_ready(c);
        return;
    default:
        conn_lost(c, PQerrorMessage(c->pg));
    }
}

static void on_connect_timeout(uv_timer_t *t) {
    pgconn *c = t->data;
    char msg[64];
    snprintf(msg, sizeof msg, "no connection within %u ms", c->connect_timeout_ms);
    if (c->st == PGCONN_CONNECTING) conn_lost(c, msg);
}

/* The server's notices (NOTICE: relation exists, skipping) are for a person at psql; libpq
 * would print them on stderr, between our log lines. */
static void on_notice(void *arg, const char *message) {
    char msg[300];
    set_err(msg, sizeof msg, message);
    log_event(LOG_DEBUG, "database notice", "notice", msg, NULL);
}

static void start_connect(pgconn *c) {
    c->pg = PQconnectStart(c->conninfo);
    if (!c->pg) { conn_lost(c, "out of memory"); return; }
    PQsetNoticeProcessor(c->pg, on_notice, NULL);
    if (PQstatus(c->pg) == CONNECTION_BAD) { conn_lost(c, PQerrorMessage(c->pg)); return; }
    c->st = PGCONN_CONNECTING;
    if (c->connect_timeout_ms) uv_timer_start(&c->ctimer, on_connect_timeout, c->connect_timeout_ms, 0);
    /* libpq: behave as if PQconnectPoll last answered PGRES_POLLING_WRITING */
    if (poll_want(c, UV_WRITABLE) != 0) conn_lost(c, "cannot watch the socket");
}

static void after_callbacks(pgconn *c) {
    if (c->freeing && c->depth == 0) really_free(c);
}

static void on_poll(uv_poll_t *p, int status, int events) {
    pgconn *c = p->data;
    c->depth++;
    if (c->st == PGCONN_CONNECTING) {
        connect_step(c);
    } else if (c->st == PGCONN_READY) {
        if (status < 0 || ((events & UV_READABLE) && !PQconsumeInput(c->pg)))
            conn_lost(c, status < 0 ? uv_strerror(status) : PQerrorMessage(c->pg));
        else {
            if (events & UV_WRITABLE) flush_out(c);
            read_results(c);
            read_notifies(c);
            if (c->pg && PQstatus(c->pg) == CONNECTION_BAD) conn_lost(c, PQerrorMessage(c->pg));
        }
    }
    c->depth--;
    after_callbacks(c);
}

static void on_kick(uv_timer_t *t) {
    pgconn *c = t->data;
    c->depth++;
    if ((c->st == PGCONN_IDLE || c->st == PGCONN_DOWN) && c->queue.head) start_connect(c);
    else send_queued(c);
    c->depth--;
    after_callbacks(c);
}

pgconn *pgconn_new(uv_loop_t *loop, const char *conninfo, unsigned connect_timeout_ms,
                   pgconn_notify_cb notify, void *ud) {
    pgconn *c = calloc(1, sizeof *c);
    if (!c || !(c->conninfo = strdup(conninfo))) { free(c); return NULL; }
    c->loop = loop;
    c->connect_timeout_ms = connect_timeout_ms;
    c->notify = notify;
    c->ud = ud;
    c->poll_fd = -1;
    uv_timer_init(loop, &c->kick);
    uv_timer_init(loop, &c->ctimer);
    c->kick.data = c->ctimer.data = c;
    c->handles_open = 2;
    return c;
}

static void close_handle(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, handle_closed);
}

/* What is pending fails; the handles were closed by pgconn_free already. */
static void really_free(pgconn *c) {
    c->depth++;                               /* callbacks from here must not free again */
    conn_lost(c, "connection closed");
    c->depth--;
}

/* The handles close now, even from inside a callback (libuv allows it, and an embedder that
 * stops the loop meanwhile must find them closing); failing the requests waits for the
 * callback to return. The memory goes when both timers have closed, on a later iteration. */
void pgconn_free(pgconn *c) {
    if (!c || c->freeing) return;
    c->freeing = 1;
    uv_timer_stop(&c->kick);
    uv_timer_stop(&c->ctimer);
    close_handle((uv_handle_t *)&c->kick);
    close_handle((uv_handle_t *)&c->ctimer);
    if (c->depth == 0) really_free(c);
}

int pgconn_submit(pgconn *c, pgconn_req *r, pgconn_done_cb cb, void *ud) {
    if (c->freeing) return -1;
    r->cb = cb;
    r->ud = ud;
    push(&c->queue, r);
    kick_soon(c);
    return 0;
}

int pgconn_listen(pgconn *c, const char *channel) {
    for (size_t i = 0; i < c->nchannels; i++)
        if (strcmp(c->channels[i], channel) == 0) return 0;
    char **ch = realloc(c->channels, (c->nchannels + 1) * sizeof *ch);
    if (!ch) return -1;
    c->channels = ch;
    if (!(ch[c->nchannels] = strdup(channel))) return -1;
    c->nchannels++;
    pgconn_req *r = pgconn_req_new(1);
    char sql[160];
    snprintf(sql, sizeof sql, "LISTEN \"%s\"", channel);
    if (!r || pgconn_req_set(r, 0, sql, 0, NULL) != 0) { pgconn_req_free(r); return -1; }
    return pgconn_submit(c, r, NULL, NULL);
}

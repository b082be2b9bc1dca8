/* httpd.c: libmicrohttpd in external-epoll mode on the libuv loop. MHD owns the sockets and
 * HTTP parsing; this file owns the loop integration (one uv_poll on MHD's epoll fd, one
 * uv_timer from MHD_get_timeout and the read deadlines), the body buffer with its limit, the
 * read deadlines of each connection, and the answer helpers (a buffer, a file, a stream). */
#include "httpd.h"
#include "bytebuf.h"
#include "log.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* One per TCP connection (MHD's socket context): the time by which what it is reading now, a
 * request head or a body, must have arrived. MHD's own timeout is an idle timeout that every
 * byte resets, so a client sending a byte a second would hold its connection for ever. */
typedef struct httpd_conn {
    struct httpd_conn *prev, *next;
    struct MHD_Connection *conn;
    uint64_t deadline;           /* uv_now milliseconds; 0 while answering (no read pending) */
    int cut;                     /* shut down past its deadline; MHD closes it on its next run */
} httpd_conn;

struct httpd {
    struct MHD_Daemon *mhd;
    uv_poll_t poll;
    uv_timer_t timer;
    int open_handles;            /* freed when both handles have closed */
    int closed;                  /* httpd_close was called: no handler call, no new timer */
    int in_run;                  /* inside MHD_run: MHD_stop_daemon must wait for its return */
    int port;
    struct httpd_config cfg;
    httpd_conn *conns;           /* every open connection, for the deadline sweep */
    httpd_stream *streams;       /* every stream answering a connection: resumed before MHD stops */
    httpd_req *deferred;         /* suspended until their owner answers: resumed before MHD stops */
    int wake;                    /* a stream was written during MHD_run: run MHD again at once */
};

struct httpd_stream {
    httpd_stream *prev, *next;   /* in server->streams while answering */
    httpd *server;               /* NULL until it answers, and again once MHD is done with it */
    struct MHD_Connection *conn;
    bytebuf buf;                 /* written, not yet sent: from off to buf.len */
    size_t off, cap;
    int refs;                    /* the owner's, and the answer's while MHD holds it */
    int ended, gone, overflow, suspended;
};

struct httpd_req {
    httpd *server;
    struct MHD_Connection *conn;
    const char *method, *path;
    bytebuf body;
    int too_large, answered;
    void *defer_data;            /* the owner's, while it answers later (httpd_req_defer) */
    void (*defer_gone)(void *data);
    int suspended;
    httpd_req *dprev, *dnext;    /* in server->deferred while suspended */
    char remote[64], local[64];
    int local_port;
};

static void httpd_pump(httpd *h);
static void on_timer(uv_timer_t *t);

/* MHD closes its connections (on_completed frees their requests) and its epoll fd, which the
 * poll must no longer be watching. */
static void stop_mhd(httpd *h) {
    /* MHD must not be stopped with a connection suspended: each stream ends and is resumed, and
     * MHD_stop_daemon then closes its connection (and drops it from the list) */
    for (httpd_stream *st = h->streams; st; st = st->next) {
        st->ended = 1;
        if (st->suspended) MHD_resume_connection(st->conn);
        st->suspended = 0;
    }
    while (h->deferred) httpd_req_resume(h->deferred);
    if (h->mhd) MHD_stop_daemon(h->mhd);
    h->mhd = NULL;
}

static void on_timer(uv_timer_t *t) {
    httpd_pump(t->data);
}

static void on_poll(uv_poll_t *p, int status, int events) {
    httpd_pump(p->data);
}

static uint64_t now_ms(const httpd *h) { return uv_now(h->timer.loop); }

static void conn_set_deadline(httpd *h, httpd_conn *c, unsigned seconds) {
    if (c) c->deadline = seconds ? now_ms(h) + 1000u * (uint64_t)seconds : 0;
}

static httpd_conn *conn_of(struct MHD_Connection *conn) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    return ci ? ci->socket_context : NULL;
}

/* Shut down every connection past its read deadline and return the milliseconds to the next
 * deadline (UINT64_MAX: none). shutdown, not close: the descriptor stays MHD's, which sees the
 * end of the stream on its next run and closes the connection itself. */
static uint64_t sweep_deadlines(httpd *h) {
    uint64_t now = now_ms(h), next = UINT64_MAX;
    for (httpd_conn *c = h->conns; c; c = c->next) {
        if (!c->deadline || c->cut) continue;
        if (c->deadline > now) {
            if (c->deadline - now < next) next = c->deadline - now;
            continue;
        }
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (ci) shutdown(ci->connect_fd, SHUT_RDWR);
        c->cut = 1;
        log_event(LOG_DEBUG, "http connection too slow; closed", NULL);
    }
    return next;
}

/* Run MHD, then arm the timer for the next time it must run even without socket activity:
 * MHD's own timeout or the next read deadline, whichever comes first. */
static void httpd_pump(httpd *h) {
    MHD_UNSIGNED_LONG_LONG ms = 0;
    sweep_deadlines(h);
    h->wake = 0;
    h->in_run = 1;
    MHD_run(h->mhd);
    h->in_run = 0;
    if (h->closed) {
        stop_mhd(h);                 /* a handler closed the server, too early for MHD */
        return;
    }
    uint64_t wait = sweep_deadlines(h);
    if (MHD_get_timeout(h->mhd, &ms) == MHD_YES && ms < wait) wait = ms;
    if (h->wake) wait = 0;       /* a connection resumed after MHD looked at them */
    if (wait != UINT64_MAX) uv_timer_start(&h->timer, on_timer, wait, 0);
    else uv_timer_stop(&h->timer);
}

static void on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
                          enum MHD_ConnectionNotificationCode toe) {
    httpd *h = cls;
    httpd_conn *c = *socket_context;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        c = calloc(1, sizeof *c);
        if (!c) return;              /* untracked: MHD's idle timeout still bounds it */
        c->conn = conn;
        c->next = h->conns;
        if (h->conns) h->conns->prev = c;
        h->conns = c;
        conn_set_deadline(h, c, h->cfg.header_timeout_s);
        *socket_context = c;
        return;
    }
    if (!c) return;
    if (c->prev) c->prev->next = c->next;
    else h->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    free(c);
    *socket_context = NULL;
}

/* ---- requests ------------------------------------------------------------------------- */

/* SA's address as text into OUT ("" for another family); its port, 0 when none. */
static int addr_name(const struct sockaddr *sa, char *out, size_t cap) {
    out[0] = '\0';
    if (sa && sa->sa_family == AF_INET) {
        uv_ip4_name((const struct sockaddr_in *)sa, out, cap);
        return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    }
    if (sa && sa->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)sa, out, cap);
        return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    }
    return 0;
}

/* The client's address, and ours as this connection reached it (for a wildcard listen, the
 * interface the client used), which the routes compare with the Host header. */
static void req_addresses(httpd_req *r) {
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    addr_name(ci ? ci->client_addr : NULL, r->remote, sizeof r->remote);
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    ci = MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (ci && getsockname(ci->connect_fd, (struct sockaddr *)&ss, &len) == 0)
        r->local_port = addr_name((struct sockaddr *)&ss, r->local, sizeof r->local);
    else
        r->local[0] = '\0';
}

static int append_body(httpd_req *r, const char *data, size_t n) {
    if (r->body.len + n > r->server->cfg.max_body) {
        r->too_large = 1;                    /* the rest is discarded; 413 at the end */
        return 0;
    }
    return bytebuf_append(&r->body, data, n, r->server->cfg.max_body);
}

static enum MHD_Result respond_error(httpd_req *r, int status, const char *code, const char *msg) {
    char body[256];
    int n = snprintf(body, sizeof body, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
    static const char *const hdrs[] = {"Content-Type", "application/json", "Connection", "close", NULL};
    return httpd_respond(r, status, hdrs, body, (size_t)n) == 0 ? MHD_YES : MHD_NO;
}

static enum MHD_Result find_bad_byte(void *cls, enum MHD_ValueKind kind, const char *k, size_t klen,
                                     const char *v, size_t vlen) {
    int *found = cls;
    *found = strlen(k) != klen || (v && strlen(v) != vlen) ||
             (kind == MHD_HEADER_KIND && v && strpbrk(v, "\r\n") != NULL);
    return *found ? MHD_NO : MHD_YES;
}

/* A NUL inside a header or query value would cut the C string every later reader sees:
 * "Bearer <token>\0junk" would read as the token alone. A bare CR in a header value is what
 * RFC 9112 2.2 says to refuse (libmicrohttpd passes it on), so no handler or log sees one. */
static int holds_bad_byte(httpd_req *r) {
    int found = 0;
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND | MHD_GET_ARGUMENT_KIND, find_bad_byte, &found);
    return found;
}

static int declared_too_large(httpd_req *r) {
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    return cl && strtoull(cl, NULL, 10) > r->server->cfg.max_body;
}

static void suspend(httpd_req *r) {
    httpd *h = r->server;
    conn_set_deadline(h, conn_of(r->conn), 0);   /* all read: the owner's answer is what waits */
    MHD_suspend_connection(r->conn);
    r->suspended = 1;
    r->dprev = NULL;
    r->dnext = h->deferred;
    if (h->deferred) h->deferred->dprev = r;
    h->deferred = r;
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload,
                                 size_t *upload_size, void **con_cls) {
    httpd *h = cls;
    httpd_req *r = *con_cls;
    if (!r) {
        r = calloc(1, sizeof *r);
        if (!r) return MHD_NO;
        r->server = h;
        r->conn = conn;
        r->method = method;
        r->path = url;
        req_addresses(r);
        *con_cls = r;
        conn_set_deadline(h, conn_of(conn), h->cfg.body_timeout_s);     /* the head is in */
        if (holds_bad_byte(r))
            return respond_error(r, 400, "invalid_header", "a request header holds a NUL, CR or LF byte, or a query value a NUL");
        if (declared_too_large(r)) return respond_error(r, 413, "payload_too_large", "request body over the limit");
        return MHD_YES;
    }
    if (*upload_size) {
        if (!r->too_large && append_body(r, upload, *upload_size) < 0) return MHD_NO;
        *upload_size = 0;
        return MHD_YES;                              /* over the limit: discarded, 413 at the end */
    }
    if (r->answered) return MHD_YES;
    if (r->too_large) return respond_error(r, 413, "payload_too_large", "request body over the limit");
    /* closed earlier in this MHD_run: the handler's owner may be gone */
    if (h->closed) return respond_error(r, 503, "unavailable", "the server is closing");
    h->cfg.handler(r, h->cfg.ud);
    if (!r->answered && r->defer_data) {
        if (!r->suspended) suspend(r);
        return MHD_YES;
    }
    if (!r->answered) return respond_error(r, 500, "internal", "no answer");
    return MHD_YES;
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    httpd *h = cls;
    httpd_req *r = *con_cls;
    conn_set_deadline(h, conn_of(conn), h->cfg.header_timeout_s);   /* a kept-alive connection's next head */
    if (!r) return;
    if (r->defer_data && r->defer_gone) r->defer_gone(r->defer_data);
    bytebuf_free(&r->body);
    free(r);
    *con_cls = NULL;
}

void httpd_req_defer(httpd_req *r, void *data, void (*gone)(void *data)) {
    r->defer_data = data;
    r->defer_gone = gone;
}

void *httpd_req_deferred(const httpd_req *r) { return r->defer_data; }

/* MHD_resume_connection's doc: in external polling, run MHD after it, or the connection may
 * wait for other network activity. */
void httpd_req_resume(httpd_req *r) {
    if (!r->suspended) return;
    httpd *h = r->server;
    if (r->dprev) r->dprev->dnext = r->dnext; else h->deferred = r->dnext;
    if (r->dnext) r->dnext->dprev = r->dprev;
    r->dprev = r->dnext = NULL;
    r->suspended = 0;
    MHD_resume_connection(r->conn);
    if (h->closed) return;
    h->wake = 1;
    if (!h->in_run) uv_timer_start(&h->timer, on_timer, 0, 0);
}

const char *httpd_req_method(const httpd_req *r) { return r->method; }
const char *httpd_req_path(const httpd_req *r) { return r->path; }
const char *httpd_req_remote(const httpd_req *r) { return r->remote; }
const char *httpd_req_local(const httpd_req *r, int *port) {
    *port = r->local_port;
    return r->local;
}

const char *httpd_req_body(const httpd_req *r, size_t *len) {
    *len = r->body.len;
    return r->body.p ? r->body.p : "";
}

struct pair_iter {
    httpd_pair_cb cb;
    void *ud;
};

static enum MHD_Result pair_iter(void *cls, enum MHD_ValueKind kind, const char *k, const char *v) {
    struct pair_iter *it = cls;
    it->cb(k, v ? v : "", it->ud);
    return MHD_YES;
}

void httpd_req_foreach(httpd_req *r, enum httpd_kind kind, httpd_pair_cb cb, void *ud) {
    struct pair_iter it = {cb, ud};
    MHD_get_connection_values(r->conn, kind == HTTPD_HEADER ? MHD_HEADER_KIND : MHD_GET_ARGUMENT_KIND,
                              pair_iter, &it);
}

static int queue(httpd_req *r, int status, const char *const *headers, struct MHD_Response *resp) {
    if (!resp) return -1;
    for (const char *const *p = headers; p && p[0] && p[1]; p += 2) MHD_add_response_header(resp, p[0], p[1]);
    enum MHD_Result ok = MHD_queue_response(r->conn, (unsigned)status, resp);
    MHD_destroy_response(resp);
    r->answered = ok == MHD_YES;      /* refused (a status HTTP cannot carry): on_access answers 500 */
    if (r->answered) conn_set_deadline(r->server, conn_of(r->conn), 0);  /* nothing left to read */
    return ok == MHD_YES ? 0 : -1;
}

int httpd_respond(httpd_req *r, int status, const char *const *headers, const char *body, size_t len) {
    if (r->answered) return -1;
    return queue(r, status, headers,
                 MHD_create_response_from_buffer(len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY));
}

int httpd_respond_fd(httpd_req *r, int status, const char *const *headers, int fd, uint64_t off, uint64_t len) {
    if (r->answered) {
        close(fd);
        return -1;
    }
    struct MHD_Response *resp = MHD_create_response_from_fd_at_offset64(len, fd, off);
    if (!resp) close(fd);
    return queue(r, status, headers, resp);
}

/* ---- streams -------------------------------------------------------------------------- */

httpd_stream *httpd_stream_new(size_t cap) {
    httpd_stream *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    st->cap = cap;
    st->refs = 1;
    return st;
}

static void stream_unref(httpd_stream *st) {
    if (--st->refs > 0) return;
    bytebuf_free(&st->buf);
    free(st);
}

/* Something to send (or the end): a suspended connection is resumed, and MHD run soon, from
 * the timer outside MHD_run or right after it inside (MHD_resume_connection's doc: run MHD
 * after it in external polling, or the connection may wait for other network activity). */
static void stream_wake(httpd_stream *st) {
    if (st->suspended) {
        MHD_resume_connection(st->conn);
        st->suspended = 0;
    }
    httpd *h = st->server;
    if (!h || h->closed) return;
    h->wake = 1;
    if (!h->in_run) uv_timer_start(&h->timer, on_timer, 0, 0);
}

int httpd_stream_is_open(const httpd_stream *st) { return !st->ended && !st->gone && !st->overflow; }

int httpd_stream_write(httpd_stream *st, const char *p, size_t n) {
    if (!httpd_stream_is_open(st)) return -1;
    if (st->off) {                       /* what was sent goes; the rest moves to the front */
        memmove(st->buf.p, st->buf.p + st->off, st->buf.len - st->off);
        st->buf.len -= st->off;
        st->off = 0;
    }
    if (bytebuf_append(&st->buf, p, n, st->cap) < 0) {
        st->overflow = 1;                /* the client stopped reading: cut it (the reader) */
        stream_wake(st);
        return -1;
    }
    stream_wake(st);
    return 0;
}

void httpd_stream_end(httpd_stream *st) {
    if (st->ended) return;
    st->ended = 1;
    stream_wake(st);
}

void httpd_stream_release(httpd_stream *st) {
    if (!st) return;
    httpd_stream_end(st);
    stream_unref(st);
}

/* MHD asks for more body: what is buffered, the end, or nothing yet, and then the connection
 * is suspended until a write, so MHD neither spins on it nor times it out meanwhile. */
static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    httpd_stream *st = cls;
    if (st->overflow) return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t avail = st->buf.len - st->off;
    if (avail) {
        size_t n = avail < max ? avail : max;
        memcpy(out, st->buf.p + st->off, n);
        st->off += n;
        if (st->off == st->buf.len) st->off = st->buf.len = 0;
        return (ssize_t)n;
    }
    if (st->ended) return MHD_CONTENT_READER_END_OF_STREAM;
    MHD_suspend_connection(st->conn);
    st->suspended = 1;
    return 0;
}

/* MHD is done with the answer (the client went, the body ended, or the server stopped). */
static void stream_done(void *cls) {
    httpd_stream *st = cls;
    httpd *h = st->server;
    if (h) {
        if (st->prev) st->prev->next = st->next;
        else h->streams = st->next;
        if (st->next) st->next->prev = st->prev;
    }
    st->prev = st->next = NULL;
    st->server = NULL;
    st->conn = NULL;
    st->gone = 1;
    st->suspended = 0;
    stream_unref(st);
}

int httpd_respond_stream(httpd_req *r, int status, const char *const *headers, httpd_stream *st) {
    if (r->answered || st->server || st->gone) return -1;
    struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_done);
    if (!resp) return -1;
    st->refs++;                          /* the answer's, dropped by stream_done */
    st->server = r->server;
    st->conn = r->conn;
    st->next = r->server->streams;
    if (st->next) st->next->prev = st;
    r->server->streams = st;
    return queue(r, status, headers, resp);   /* refused: MHD_destroy_response calls stream_done */
}

/* ---- the server ----------------------------------------------------------------------- */

/* HOST:PORT with HOST an IPv4 or IPv6 address ([::1]) or "localhost" (127.0.0.1: no resolver
 * runs on the loop). Each mistake gets its own message. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, char *err, size_t errlen) {
    char host[256];
    const char *colon = strrchr(listen, ':');
    const char *h = listen;
    size_t hl = colon ? (size_t)(colon - listen) : 0;
    if (!colon || hl == 0 || hl >= sizeof host) {
        snprintf(err, errlen, "listen address '%s' is not HOST:PORT (an IP address, [IPv6] or localhost, ':', a port)", listen);
        return -1;
    }
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { h++; hl -= 2; }
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || port < 0 || port > 65535) {
        snprintf(err, errlen, "listen address '%s': the port '%s' is not a number from 0 to 65535", listen, colon + 1);
        return -1;
    }
    if (strcmp(host, "localhost") == 0) snprintf(host, sizeof host, "127.0.0.1");
    if (uv_ip4_addr(host, (int)port, (struct sockaddr_in *)ss) == 0) return 0;
    if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6 *)ss) == 0) return 0;
    snprintf(err, errlen, "listen address '%s': the host is not an IP address or localhost (give the "
             "address to listen on, e.g. 0.0.0.0 or [::])", listen);
    return -1;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    msg[strcspn(msg, "\n")] = '\0';
    log_event(LOG_DEBUG, "http server", "detail", msg, NULL);
}

static void handle_closed(uv_handle_t *hd) {
    httpd *h = hd->data;
    if (--h->open_handles == 0) free(h);
}

int httpd_start(uv_loop_t *loop, const struct httpd_config *cfg, httpd **out, char *err, size_t errlen) {
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    if (parse_listen(cfg->listen, &ss, err, errlen) != 0) return -1;
    httpd *h = calloc(1, sizeof *h);
    if (!h) return -1;
    h->cfg = *cfg;
    /* suspend/resume for streams; it brings MHD's inter-thread channel, one more descriptor in
     * its epoll set that a resume makes readable */
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME |
                     (ss.ss_family == AF_INET6 ? MHD_USE_IPv6 : 0);
    h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_access, h,
                              MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                              MHD_OPTION_CONNECTION_LIMIT, cfg->max_conns,
                              MHD_OPTION_PER_IP_CONNECTION_LIMIT, cfg->per_ip,
                              MHD_OPTION_CONNECTION_TIMEOUT, cfg->timeout_s,
                              MHD_OPTION_CONNECTION_MEMORY_LIMIT, cfg->conn_memory,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                              MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                              MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
                              MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
                              MHD_OPTION_END);
    if (!h->mhd) {
        snprintf(err, errlen, "cannot listen on %s (address in use, or not an address of this host)", cfg->listen);
        free(h);
        return -1;
    }
    const union MHD_DaemonInfo *fd = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
    h->port = port ? port->port : 0;
    if (!fd || uv_poll_init(loop, &h->poll, fd->epoll_fd) != 0) {
        snprintf(err, errlen, "cannot watch the HTTP server's epoll descriptor");
        MHD_stop_daemon(h->mhd);
        free(h);
        return -1;
    }
    uv_timer_init(loop, &h->timer);
    h->poll.data = h->timer.data = h;
    h->open_handles = 2;
    uv_poll_start(&h->poll, UV_READABLE, on_poll);
    httpd_pump(h);
    *out = h;
    return 0;
}

int httpd_port(const httpd *h) { return h->port; }

/* Both handles are ours alone (the owner closes us before the loop's stop closes what is left),
 * so each is closed here once and H is freed by the second close callback. Inside MHD_run (a
 * handler closing its own server) MHD cannot be stopped: that would free the connection the
 * handler is answering; httpd_pump stops it when MHD_run returns. */
void httpd_close(httpd *h) {
    if (!h) return;
    h->closed = 1;
    uv_close((uv_handle_t *)&h->poll, handle_closed);   /* stops watching the epoll fd */
    uv_close((uv_handle_t *)&h->timer, handle_closed);
    if (!h->in_run) stop_mhd(h);
}

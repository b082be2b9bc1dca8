/* httpd.h: the HTTP server on the libuv loop. libmicrohttpd runs in external-epoll mode (its
 * epoll fd in a uv_poll, MHD_run on readiness and on a uv_timer from MHD_get_timeout), so
 * requests are handled on the loop's thread with no locks. The handler sees a complete request
 * (body included, up to max_body) and answers it before returning, or defers it. */
#ifndef ASSETD_HTTPD_H
#define ASSETD_HTTPD_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct httpd httpd;
typedef struct httpd_req httpd_req;
typedef void (*httpd_handler)(httpd_req *req, void *ud);

struct httpd_config {
    const char *listen;          /* "HOST:PORT" or "[V6]:PORT"; port 0 picks one */
    size_t max_body;             /* larger bodies get 413 without reaching the handler */
    unsigned max_conns, per_ip, timeout_s;
    /* Read deadlines, from the connection's start or its previous answer: the request head
     * must arrive within header_timeout_s, then its body within body_timeout_s (0: none). */
    unsigned header_timeout_s, body_timeout_s;
    size_t conn_memory;          /* per-connection buffer: bounds the request header size */
    httpd_handler handler;
    void *ud;
};

int httpd_start(uv_loop_t *loop, const struct httpd_config *cfg, httpd **out, char *err, size_t errlen);
int httpd_port(const httpd *h);
/* Stop listening and free the server; once, by its one owner, while the loop still runs (the
 * memory is freed from the handles' close callbacks). A handler may close its own server. The
 * handler is not called again: a request read in the same pass gets 503. */
void httpd_close(httpd *h);

enum httpd_kind { HTTPD_HEADER, HTTPD_QUERY };
const char *httpd_req_method(const httpd_req *r);
const char *httpd_req_path(const httpd_req *r);
const char *httpd_req_body(const httpd_req *r, size_t *len);
const char *httpd_req_remote(const httpd_req *r);
/* The address and port this connection reached the server on. */
const char *httpd_req_local(const httpd_req *r, int *port);
typedef void (*httpd_pair_cb)(const char *name, const char *value, void *ud);
void httpd_req_foreach(httpd_req *r, enum httpd_kind kind, httpd_pair_cb cb, void *ud);

/* For a handler that answers later: with DATA set, an unanswered request is suspended when the
 * handler returns (no timeout runs meanwhile); httpd_req_resume then calls the handler again
 * for R, which must answer it now (httpd_req_deferred gives DATA back) and clear DATA. GONE(DATA)
 * is called if the connection ends before (the server stopping); R is freed right after. */
void httpd_req_defer(httpd_req *r, void *data, void (*gone)(void *data));
void *httpd_req_deferred(const httpd_req *r);
void httpd_req_resume(httpd_req *r);

/* Answer the request once. HEADERS is name, value, ..., NULL. A file answer takes FD (the
 * server closes it) and sends LEN bytes from OFF without reading them into memory. */
int httpd_respond(httpd_req *r, int status, const char *const *headers, const char *body, size_t len);
int httpd_respond_fd(httpd_req *r, int status, const char *const *headers, int fd, uint64_t off,
                     uint64_t len);

/* A body written over time (Server-Sent Events): what the owner writes is sent as it comes,
 * chunked, until the owner ends it or the client goes. While nothing is buffered the
 * connection is suspended (no busy loop, no idle timeout); a write resumes it. The owner's
 * reference comes from httpd_stream_new and goes with httpd_stream_release; an answer holds
 * another until libmicrohttpd is done with the connection. */
typedef struct httpd_stream httpd_stream;
httpd_stream *httpd_stream_new(size_t cap);   /* CAP: bytes buffered at most for a slow client */
/* 0, or -1 (nothing kept) once the stream is over: ended, its client gone, or CAP passed (the
 * connection is then cut, so a client that stopped reading costs no more memory). */
int httpd_stream_write(httpd_stream *s, const char *p, size_t n);
void httpd_stream_end(httpd_stream *s);       /* the body ends after what was written */
int httpd_stream_is_open(const httpd_stream *s);
void httpd_stream_release(httpd_stream *s);   /* the owner's reference; ends an open stream */
int httpd_respond_stream(httpd_req *r, int status, const char *const *headers, httpd_stream *s);

#endif

/* repl.c: the REPL's sessions in the daemon. The terminal session (-i) reads through lineio;
 * attach sessions come through the unix socket and speak the framing described in repl.h.
 * Each session hands its lines one at a time to the handler l_repl.c sets (its Lua session,
 * lua/assetd/repl.lua, runs them as tasks and answers with output and a prompt); this file
 * touches no Lua state. Ctrl-C or an ETX line asks the handler to interrupt the running
 * chunk. A timer drops attach clients that leave their output unread. */
#include "repl.h"
#include "bytebuf.h"
#include "lineio.h"
#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define REPL_BUDGET_MS 10000          /* by default, REPL code may hold the loop this long */
#define REPL_MAX_INPUT (1u << 20)     /* a client's unread input, beyond which it is dropped */
#define REPL_MAX_QUEUED (16u << 20)   /* unread output a client may leave untouched ... */
#define REPL_STALL_MS 2000            /* ... for this long (one watch) before it is dropped */
#define REPL_MAX_BACKLOG (4 * REPL_MAX_FRAME) /* unread output beyond which output is refused */

struct repl_session {
    int is_term;
    void *user;                /* the handler's, from its open until its close */
    int ready;                 /* a prompt was given and no line taken since */
    int eof, closing, doomed;
    int refusing;              /* output is being refused (over REPL_MAX_BACKLOG): said once */
    int interrupt;             /* an interrupt was asked and not yet taken */
    uv_pipe_t pipe;            /* attach sessions */
    uv_shutdown_t shutdown;
    bytebuf in;                /* attach input: complete lines up to `scanned`, then a tail */
    size_t scanned;
    size_t watched;            /* unread output at the last watch, plus what was queued since */
    unsigned uid;
    repl *r;                   /* the REPL it belongs to */
    struct repl_session *next;
};

/* One daemon's REPL, owned by the embedder (repl_new): every callback finds it through the
 * session or the handle it is given, as libuv handles carry their data. */
struct repl {
    rt_runtime *rt;
    const repl_handler *handler;
    void *handler_ud;
    repl_session *sessions;
    repl_session term;
    uv_pipe_t server;          /* data: this repl */
    uv_timer_t watch;          /* drops attach clients that do not read their output; data: this repl */
    int listening, pump_scheduled;
    unsigned budget_ms;        /* 0: REPL_BUDGET_MS */
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
};

static void session_close(repl_session *s, const char *why);
static void on_pipe_closed(uv_handle_t *h);

const char *repl_session_kind(const repl_session *s) { return s->is_term ? "terminal" : "attach"; }

/* Closing sessions count until they are freed: a session that never finishes closing shows. */
int repl_session_count(const repl *r) {
    int n = 0;
    for (repl_session *s = r->sessions; s; s = s->next) n++;
    return n;
}

int repl_new(rt_runtime *rt, repl **out) {
    repl *r = calloc(1, sizeof *r);
    if (!r) return UV_ENOMEM;
    r->rt = rt;
    r->server.data = r->watch.data = r;
    *out = r;
    return 0;
}

void repl_free(repl *r) { free(r); }

/* ---- to the handler ------------------------------------------------------------------- */

void repl_set_handler(repl *r, const repl_handler *h, void *ud) {
    r->handler = h;
    r->handler_ud = ud;
}

void **repl_session_user(repl_session *s) { return &s->user; }

static void call_input(repl_session *s, const char *what, const char *line, size_t n) {
    repl *r = s->r;
    if (!s->user || r->rt->stopping) return;
    r->handler->input(r->handler_ud, s, what, line, n);
}

static int call_open(repl_session *s) {
    repl *r = s->r;
    return r->handler && r->handler->open(r->handler_ud, s) == 0 ? 0 : -1;
}

static void call_close(repl_session *s) {
    if (s->user) s->r->handler->close(s->r->handler_ud, s);
    s->user = NULL;
}

unsigned repl_budget(repl *r, unsigned ms) {
    if (ms) r->budget_ms = ms;
    return r->budget_ms ? r->budget_ms : REPL_BUDGET_MS;
}

int repl_session_take_interrupt(repl_session *s) {
    int asked = s->interrupt || (s->is_term && lineio_take_interrupt());
    s->interrupt = 0;
    return asked;
}

/* The running chunk is stopped at its next instruction (the handler's hook) and its task
 * canceled (the Lua session, told "interrupt"). */
static void session_interrupt(repl_session *s) {
    s->interrupt = 1;
    if (s->user) s->r->handler->interrupt(s->r->handler_ud, s);
    call_input(s, "interrupt", NULL, 0);
}

/* ---- the line pump: lines go to Lua from the loop, never from inside a Lua call ---------- */

static void session_pump(repl_session *s) {
    while (s->ready && !s->closing && !s->is_term) {
        char *nl = s->scanned ? memchr(s->in.p, '\n', s->scanned) : NULL;
        if (!nl) {
            if (s->eof && s->in.len == 0) session_close(s, NULL);
            return;
        }
        size_t n = (size_t)(nl - s->in.p);
        char *line = malloc(n + 1);
        if (!line) { session_close(s, "out of memory"); return; }
        memcpy(line, s->in.p, n);
        line[n] = '\0';
        memmove(s->in.p, nl + 1, s->in.len - n - 1);
        s->in.len -= n + 1;
        s->scanned -= n + 1;
        s->ready = 0;
        call_input(s, "line", line, n);
        free(line);
    }
}

static void pump_all(void *arg) {
    repl *r = arg;
    r->pump_scheduled = 0;
    if (r->rt->stopping) return;
    repl_session *next;
    for (repl_session *s = r->sessions; s; s = next) {
        next = s->next;                   /* a closed session is freed only by its close callback */
        if (s->doomed) session_close(s, NULL);
        else session_pump(s);
    }
}

static void schedule_pump(repl *r) {
    if (r->pump_scheduled || r->rt->stopping) return;
    if (rt_defer(r->rt, pump_all, r) == 0) r->pump_scheduled = 1;
}

/* ---- output ------------------------------------------------------------------------------ */

typedef struct frame_req {
    uv_write_t req;
    char data[];
} frame_req;

/* The session is closed from the loop, never from inside Lua, and its unsent output dropped. */
static void session_doom(repl_session *s, const char *why) {
    if (why) log_event(LOG_WARN, why, NULL);
    s->doomed = 1;
    schedule_pump(s->r);
}

static void on_written(uv_write_t *req, int status) {
    repl_session *s = req->data;
    free(req);
    if (status < 0 && status != UV_ECANCELED && !s->closing) session_doom(s, NULL);
}

/* One frame of at most REPL_MAX_FRAME bytes: the client refuses a larger one. */
static int send_one_frame(repl_session *s, char kind, const char *p, size_t n) {
    char hdr[32];
    int h = snprintf(hdr, sizeof hdr, "%c %zu\n", kind, n);
    frame_req *f = malloc(sizeof *f + (size_t)h + n);
    if (!f) return UV_ENOMEM;
    memcpy(f->data, hdr, (size_t)h);
    memcpy(f->data + h, p, n);
    f->req.data = s;
    uv_buf_t b = uv_buf_init(f->data, (unsigned)((size_t)h + n));
    int rc = uv_write(&f->req, (uv_stream_t *)&s->pipe, &b, 1, on_written);
    if (rc != 0) free(f);
    else s->watched += (size_t)h + n;
    return rc;
}

/* Output that would leave more than REPL_MAX_BACKLOG unread is refused, with one notice
 * until output fits again, so that one turn of the loop (a huge value, a printing loop that
 * never yields) cannot make the daemon hold gigabytes for a client however fast it reads. */
static int refuse_output(repl_session *s, size_t n) {
    size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&s->pipe);
    if (queued + n <= REPL_MAX_BACKLOG) {
        s->refusing = 0;
        return 0;
    }
    if (!s->refusing) {
        char msg[160];
        int m = snprintf(msg, sizeof msg, "assetd: %zu bytes of output not sent: over %u MiB would wait "
                         "for this client (write large values to a file)\n", n, REPL_MAX_BACKLOG >> 20);
        s->refusing = 1;
        send_one_frame(s, 'e', msg, (size_t)m);
    }
    return 1;
}

static void send_frame(repl_session *s, char kind, const char *p, size_t n) {
    if (s->doomed || uv_is_closing((uv_handle_t *)&s->pipe)) return;
    if (kind != 'x' && refuse_output(s, n)) return;
    /* Output larger than a frame goes in several: the client shows the payloads one after
     * the other, so the split does not show. */
    do {
        size_t part = n < REPL_MAX_FRAME ? n : REPL_MAX_FRAME;
        if (send_one_frame(s, kind, p, part) != 0) {
            session_doom(s, NULL);
            return;
        }
        p += part;
        n -= part;
    } while (n > 0);
}

/* A client with over REPL_MAX_QUEUED of output waiting that took none of it since the last
 * watch does not read. The size alone says nothing: output queued in one turn of the loop
 * (one large value, a burst of prints) waits there even for a client that reads well. A
 * closing session waits in its shutdown for its output to be taken: one that took none of it
 * since the last watch is closed, its output dropped (a client that half-closed and left). */
static void on_watch(uv_timer_t *t) {
    repl *r = t->data;
    for (repl_session *s = r->sessions; s; s = s->next) {
        if (s->is_term || s->doomed || uv_is_closing((uv_handle_t *)&s->pipe)) continue;
        size_t queued = uv_stream_get_write_queue_size((uv_stream_t *)&s->pipe);
        int stalled = queued > 0 && queued >= s->watched;
        if (s->closing && stalled) uv_close((uv_handle_t *)&s->pipe, on_pipe_closed);
        else if (!s->closing && stalled && queued > REPL_MAX_QUEUED)
            session_doom(s, "repl client not reading its output; dropping it");
        s->watched = queued;
    }
}

void repl_session_write(repl_session *s, enum repl_out kind, const char *p, size_t n) {
    if (s->is_term) {
        if (kind == REPL_INFO && !lineio_is_tty()) return;
        lineio_write(kind == REPL_ERR ? stderr : stdout, p, n);
        return;
    }
    send_frame(s, kind == REPL_OUT ? 'o' : kind == REPL_ERR ? 'e' : 'i', p, n);
}

void repl_session_prompt(repl_session *s, const char *prompt) {
    if (s->closing) return;
    s->interrupt = 0;
    s->ready = 1;
    if (s->is_term) {
        if (!s->eof) lineio_prompt(prompt);
        else session_close(s, NULL);
        return;
    }
    send_frame(s, 'p', prompt, strlen(prompt));
    schedule_pump(s->r);
}

/* ---- closing ----------------------------------------------------------------------------- */

static void unlink_session(repl_session *s) {
    for (repl_session **p = &s->r->sessions; *p; p = &(*p)->next)
        if (*p == s) { *p = s->next; return; }
}

/* An attach session stays listed (closing) until its handle is closed, so that a stop in
 * between still finds and frees it. */
static void on_pipe_closed(uv_handle_t *h) {
    repl_session *s = h->data;
    unlink_session(s);
    bytebuf_free(&s->in);
    free(s);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
    if (!uv_is_closing((uv_handle_t *)req->handle)) uv_close((uv_handle_t *)req->handle, on_pipe_closed);
}

static void session_close(repl_session *s, const char *why) {
    if (s->closing) return;
    call_input(s, "close", NULL, 0);     /* Lua cancels the running chunk, says goodbye */
    s->closing = 1;
    if (why && !s->is_term) send_frame(s, 'x', why, strlen(why));
    call_close(s);
    if (s->is_term) {
        unlink_session(s);
        if (!s->r->rt->stopping) {
            log_event(LOG_INFO, "stopping", "reason", "the REPL's input ended", NULL);
            rt_stop(s->r->rt, 0);
        }
        return;
    }
    log_event(LOG_INFO, "repl detached", NULL);
    uv_read_stop((uv_stream_t *)&s->pipe);
    /* A shutdown waits for the queued output to be written, which a doomed client (gone, or
     * not reading) never takes: it is closed at once and its queued output dropped. */
    if (s->doomed || uv_shutdown(&s->shutdown, (uv_stream_t *)&s->pipe, on_shutdown) != 0)
        uv_close((uv_handle_t *)&s->pipe, on_pipe_closed);
}

/* ---- the terminal session ---------------------------------------------------------------- */

static void term_line(void *ud, const char *line, size_t n) {
    repl_session *s = ud;
    s->ready = 0;
    call_input(s, "line", line, n);
}

static void term_eof(void *ud) {
    repl_session *s = ud;
    s->eof = 1;
    if (s->ready) session_close(s, NULL);
}

static void term_interrupt(void *ud) { session_interrupt(ud); }

static void term_log(const char *line, size_t n) { lineio_write(stderr, line, n); }

int repl_start_terminal(repl *r) {
    static const lineio_callbacks cb = {term_line, term_eof, term_interrupt};
    char history[4096];
    const char *home = getenv("HOME");
    repl_session *s = &r->term;
    memset(s, 0, sizeof *s);
    s->is_term = 1;
    s->r = r;
    if (home && *home) snprintf(history, sizeof history, "%s/.assetd_history", home);
    int err = lineio_start(r->rt->loop, home && *home ? history : NULL, &cb, s);
    if (err) return err;
    if (lineio_is_tty()) log_set_sink(term_log);
    s->next = r->sessions;
    r->sessions = s;
    if (call_open(s) != 0) {
        unlink_session(s);                /* the caller stops the daemon with status 1 */
        log_set_sink(NULL);
        lineio_stop();
        return UV_EINVAL;
    }
    return 0;
}

/* ---- attach sessions --------------------------------------------------------------------- */

/* Complete lines that hold only ETX are interrupts: taken out of the queue, acted on now. */
static void scan_input(repl_session *s) {
    size_t i = s->scanned;
    char *nl;
    while (i < s->in.len && (nl = memchr(s->in.p + i, '\n', s->in.len - i)) != NULL) {
        size_t end = (size_t)(nl - s->in.p) + 1;
        if (end - i == 2 && s->in.p[i] == '\003') {
            memmove(s->in.p + i, s->in.p + end, s->in.len - end);
            s->in.len -= 2;
            s->scanned = i;
            session_interrupt(s);
            if (s->closing) return;
            continue;
        }
        i = end;
    }
    s->scanned = i;
}

static int append_input(repl_session *s, const char *p, size_t n) {
    return bytebuf_append(&s->in, p, n, REPL_MAX_INPUT);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    static char slab[65536];              /* one thread; each read is consumed at once */
    *buf = uv_buf_init(slab, sizeof slab);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    repl_session *s = stream->data;
    if (s->closing) return;
    if (nread > 0 && append_input(s, buf->base, (size_t)nread) != 0) {
        session_close(s, "input line too long (1 MiB at most)");
        return;
    }
    if (nread < 0 && nread != UV_EOF) {     /* the client is gone: stop what it started */
        session_close(s, NULL);
        return;
    }
    if (nread < 0) {                         /* half-closed: run what it sent, then close */
        s->eof = 1;
        uv_read_stop(stream);
        if (s->in.len > s->scanned && s->in.p[s->in.len - 1] != '\n' && append_input(s, "\n", 1) != 0)
            s->in.len = s->scanned;
    }
    scan_input(s);
    if (!s->closing) session_pump(s);
}

static int peer_uid(uv_pipe_t *p, unsigned *uid) {
    uv_os_fd_t fd;
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (uv_fileno((uv_handle_t *)p, &fd) != 0) return -1;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -1;
    *uid = (unsigned)cred.uid;
    return 0;
}

static void on_connection(uv_stream_t *server, int status) {
    repl *r = server->data;
    if (status < 0) return;
    repl_session *s = calloc(1, sizeof *s);
    if (!s) return;
    s->r = r;
    s->pipe.data = s;
    if (uv_pipe_init(server->loop, &s->pipe, 0) != 0) { free(s); return; }
    if (uv_accept(server, (uv_stream_t *)&s->pipe) != 0) {
        uv_close((uv_handle_t *)&s->pipe, on_pipe_closed);
        return;
    }
    s->next = r->sessions;
    r->sessions = s;
    char uid[16];
    if (peer_uid(&s->pipe, &s->uid) != 0 || s->uid != (unsigned)geteuid()) {
        snprintf(uid, sizeof uid, "%u", s->uid);
        log_event(LOG_WARN, "attach refused", "peer_uid", uid, NULL);
        session_close(s, "assetd: attach refused: the daemon runs as another user\n");
        return;
    }
    snprintf(uid, sizeof uid, "%u", s->uid);
    log_event(LOG_INFO, "repl attached", "peer_uid", uid, NULL);
    if (call_open(s) != 0) {
        session_close(s, "assetd: cannot start a REPL session (the daemon's log says why)\n");
        return;
    }
    if (uv_read_start((uv_stream_t *)&s->pipe, on_alloc, on_read) != 0) session_close(s, NULL);
}

/* Whether a daemon answers on PATH (a connect that is not refused). */
static int socket_answers(const char *path) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
    int answers = rc == 0 || errno == EAGAIN || errno == EINPROGRESS;
    close(fd);
    return answers;
}

/* Bind and listen at PATH and start the watch on the clients; on failure nothing stays open. */
static int open_socket(repl *r, uv_loop_t *loop, const char *path) {
    int rc = uv_pipe_init(loop, &r->server, 0);
    if (rc != 0) return rc;
    mode_t old = umask(0177);             /* the socket is born 0600, never open to others */
    rc = uv_pipe_bind(&r->server, path);
    umask(old);
    if (rc == 0) rc = uv_listen((uv_stream_t *)&r->server, 16, on_connection);
    if (rc == 0 && (rc = uv_timer_init(loop, &r->watch)) == 0 &&
        (rc = uv_timer_start(&r->watch, on_watch, REPL_STALL_MS, REPL_STALL_MS)) != 0)
        uv_close((uv_handle_t *)&r->watch, NULL);
    if (rc != 0) {
        uv_close((uv_handle_t *)&r->server, NULL);
        unlink(path);
        return rc;
    }
    uv_unref((uv_handle_t *)&r->server);   /* attach alone does not keep the daemon running */
    uv_unref((uv_handle_t *)&r->watch);
    return 0;
}

int repl_listen(repl *r, const char *path, char *err, size_t cap) {
    struct stat st;
    int rc;
    if (r->listening) return snprintf(err, cap, "the attach socket is already open at %s", r->path), -1;
    if (strlen(path) >= sizeof r->path)
        return snprintf(err, cap, "attach socket path too long (%zu bytes, %zu at most): %s",
                        strlen(path), sizeof r->path - 1, path), -1;
    if (lstat(path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode)) return snprintf(err, cap, "%s exists and is not a socket", path), -1;
        if (socket_answers(path))
            return snprintf(err, cap, "another daemon answers on %s", path), -1;
        unlink(path);                     /* left by a daemon that did not stop cleanly */
    }
    if ((rc = open_socket(r, r->rt->loop, path)) != 0)
        return snprintf(err, cap, "attach socket %s: %s", path, uv_strerror(rc)), -1;
    snprintf(r->path, sizeof r->path, "%s", path);
    r->listening = 1;
    return 0;
}

void repl_shutdown(repl *r) {
    static const char msg[] = "assetd: the daemon is stopping\n";
    char bye[64];
    if (!r) return;
    log_set_sink(NULL);
    uv_buf_t b = uv_buf_init(bye, (unsigned)snprintf(bye, sizeof bye, "x %zu\n%s", sizeof msg - 1, msg));
    for (repl_session *s = r->sessions; s; s = s->next) {
        if (s->is_term || uv_is_closing((uv_handle_t *)&s->pipe)) continue;
        if (!s->closing) uv_try_write((uv_stream_t *)&s->pipe, &b, 1);
        s->closing = 1;
        call_close(s);
        uv_close((uv_handle_t *)&s->pipe, on_pipe_closed);
    }
    if (r->term.is_term) {
        r->term.closing = 1;
        call_close(&r->term);
        unlink_session(&r->term);
    }
    lineio_stop();
    if (r->listening) {
        uv_close((uv_handle_t *)&r->server, NULL);
        uv_close((uv_handle_t *)&r->watch, NULL);
        unlink(r->path);
        r->listening = 0;
    }
}

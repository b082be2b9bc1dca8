/* attach.c: `assetd attach [SOCKET | --data DIR]`, the client end of the attach socket. It
 * sends what is typed (libedit on a terminal) or piped, one line per prompt the daemon sends,
 * and shows the daemon's answers; the framing is described in repl.h. Exit status: 0 when
 * the input ended, 1 when the daemon refused or dropped the session, 2 on bad usage. */
#include "lineio.h"
#include "repl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <signal.h>

static const char attach_usage[] =
    "usage: assetd attach [SOCKET | --data DIR]\n"
    "Opens the Lua REPL of a running daemon through its attach socket (default\n"
    "./.assetd/" REPL_SOCKET_NAME "). When stdin is not a terminal, its lines are run in\n"
    "order and the command exits at the end of the input.\n";

static struct {
    uv_loop_t *loop;
    uv_pipe_t pipe;
    uv_connect_t connect;
    uv_shutdown_t shutdown;
    uv_signal_t sigterm, sighup;
    char *buf;                   /* received bytes not yet making a whole frame */
    size_t len, cap;
    int code, sent_eof, finished;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
} C;

static void close_handle(uv_handle_t *h) {
    if (uv_is_closing(h)) return;
    uv_close(h, NULL);
}

static void finish(int code) {
    if (C.finished) return;
    C.finished = 1;
    if (code > C.code) C.code = code;
    lineio_stop();
    close_handle((uv_handle_t *)&C.pipe);
    close_handle((uv_handle_t *)&C.sigterm);
    close_handle((uv_handle_t *)&C.sighup);
}

/* ---- to the daemon ----------------------------------------------------------------------- */

typedef struct send_req {
    uv_write_t req;
    char data[];
} send_req;

static void on_sent(uv_write_t *req, int status) {
    free(req);
    if (status < 0 && status != UV_ECANCELED) {
        fprintf(stderr, "assetd: attach: %s\n", uv_strerror(status));
        finish(1);
    }
}

static void send_bytes(const char *p, size_t n) {
    if (C.finished || C.sent_eof) return;
    send_req *r = malloc(sizeof *r + n);
    if (!r) { finish(1); return; }
    memcpy(r->data, p, n);
    uv_buf_t b = uv_buf_init(r->data, (unsigned)n);
    if (uv_write(&r->req, (uv_stream_t *)&C.pipe, &b, 1, on_sent) != 0) {
        free(r);
        finish(1);
    }
}

static void on_line(void *ud, const char *line, size_t n) {
    char *l = malloc(n + 1);
    if (!l) { finish(1); return; }
    memcpy(l, line, n);
    l[n] = '\n';
    send_bytes(l, n + 1);
    free(l);
}

/* Nothing to do once the half-close is sent: the daemon answers by closing, which on_read sees. */
static void on_shutdown(uv_shutdown_t *req, int status) {
}

static void on_eof(void *ud) {
    if (C.sent_eof || C.finished) return;
    C.sent_eof = 1;                       /* the daemon runs what it has, then closes */
    if (uv_shutdown(&C.shutdown, (uv_stream_t *)&C.pipe, on_shutdown) != 0) finish(0);
}

static void on_interrupt(void *ud) {
    send_bytes("\003\n", 2);
}

/* ---- from the daemon --------------------------------------------------------------------- */

static void on_frame(char kind, const char *p, size_t n) {
    char prompt[64];
    switch (kind) {
    case 'i': if (lineio_is_tty()) lineio_write(stdout, p, n); break;
    case 'o': lineio_write(stdout, p, n); break;
    case 'e': lineio_write(stderr, p, n); break;
    case 'x': lineio_write(stderr, p, n); C.code = 1; break;
    case 'p':
        snprintf(prompt, sizeof prompt, "%.*s", (int)(n < sizeof prompt ? n : sizeof prompt - 1), p);
        lineio_prompt(prompt);
        break;
    default:
        fprintf(stderr, "assetd: attach: unknown frame '%c' from the daemon\n", kind);
        finish(1);
    }
}

/* Take every whole frame off the buffer; -1 on a malformed header. */
static int parse_frames(void) {
    size_t off = 0;
    while (!C.finished && off < C.len) {
        char *nl = memchr(C.buf + off, '\n', C.len - off);
        if (!nl) {
            if (C.len - off > 32) return -1;
            break;                            /* a header cut by the read: keep it, drop the rest */
        }
        char kind;
        unsigned long long n;
        char *end;
        if (nl - (C.buf + off) < 3 || C.buf[off + 1] != ' ') return -1;
        kind = C.buf[off];
        n = strtoull(C.buf + off + 2, &end, 10);
        if (end != nl || n > REPL_MAX_FRAME) return -1;
        size_t start = (size_t)(nl - C.buf) + 1;
        if (C.len - start < n) break;
        on_frame(kind, C.buf + start, (size_t)n);
        off = start + (size_t)n;
    }
    memmove(C.buf, C.buf + off, C.len - off);
    C.len -= off;
    return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    if (C.cap - C.len < 65536) {
        size_t cap = C.cap ? C.cap * 2 : 131072;
        char *b = realloc(C.buf, cap);
        if (!b) { *buf = uv_buf_init(NULL, 0); return; }
        C.buf = b;
        C.cap = cap;
    }
    *buf = uv_buf_init(C.buf + C.len, (unsigned)(C.cap - C.len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
    if (nread > 0) {
        C.len += (size_t)nread;
        if (parse_frames() != 0) {
            fprintf(stderr, "assetd: attach: malformed data from the daemon\n");
            finish(1);
        }
        return;
    }
    if (nread == 0) return;
    if (!C.sent_eof && C.code == 0) {
        lineio_write(stderr, "assetd: the daemon closed the session\n", 38);
        C.code = 1;
    }
    finish(0);
}

/* ---- start ------------------------------------------------------------------------------- */

static void on_connect(uv_connect_t *req, int status) {
    static const lineio_callbacks cb = {on_line, on_eof, on_interrupt};
    if (status < 0) {
        fprintf(stderr, "assetd: cannot attach to %s: %s (is a daemon running with this data "
                        "directory?)\n", C.path, uv_strerror(status));
        finish(1);
        return;
    }
    char history[4096];
    const char *home = getenv("HOME");
    if (home && *home) snprintf(history, sizeof history, "%s/.assetd_history", home);
    int err = uv_read_start((uv_stream_t *)&C.pipe, on_alloc, on_read);
    if (err == 0) err = lineio_start(C.loop, home && *home ? history : NULL, &cb, NULL);
    if (err) {
        fprintf(stderr, "assetd: attach: %s\n", uv_strerror(err));
        finish(1);
    }
}

static void on_signal(uv_signal_t *h, int signum) {
    finish(1);                            /* leaves the terminal as it was found */
}

static int socket_path(int argc, char **argv) {
    const char *arg = NULL, *data = NULL;
    struct stat st;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) data = argv[++i];
        else if (argv[i][0] == '-' || arg) return -1;
        else arg = argv[i];
    }
    if (arg && data) return -1;
    int n;
    if (arg && (stat(arg, &st) != 0 || !S_ISDIR(st.st_mode))) n = snprintf(C.path, sizeof C.path, "%s", arg);
    else n = snprintf(C.path, sizeof C.path, "%s/" REPL_SOCKET_NAME, arg ? arg : data ? data : "./.assetd");
    if (n < 0 || (size_t)n >= sizeof C.path) {
        fprintf(stderr, "assetd: attach: socket path too long (%zu bytes at most)\n", sizeof C.path - 1);
        return -2;
    }
    return 0;
}

int attach_main(int argc, char **argv) {
    if (argc > 1 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        fputs(attach_usage, stdout);
        return 0;
    }
    int rc = socket_path(argc, argv);
    if (rc == -1) fputs(attach_usage, stderr);
    if (rc != 0) return 2;
    signal(SIGPIPE, SIG_IGN);
    C.loop = uv_default_loop();
    if (uv_pipe_init(C.loop, &C.pipe, 0) != 0 || uv_signal_init(C.loop, &C.sigterm) != 0 ||
        uv_signal_init(C.loop, &C.sighup) != 0) {
        fprintf(stderr, "assetd: attach: cannot start the event loop\n");
        return 1;
    }
    uv_signal_start(&C.sigterm, on_signal, SIGTERM);
    uv_signal_start(&C.sighup, on_signal, SIGHUP);
    uv_unref((uv_handle_t *)&C.sigterm);
    uv_unref((uv_handle_t *)&C.sighup);
    uv_pipe_connect(&C.connect, &C.pipe, C.path, on_connect);
    uv_run(C.loop, UV_RUN_DEFAULT);
    finish(0);
    while (uv_loop_close(C.loop) == UV_EBUSY) uv_run(C.loop, UV_RUN_DEFAULT);
    free(C.buf);
    return C.code;
}

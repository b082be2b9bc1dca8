/* lineio.c: line input on the libuv loop. A terminal gets libedit's readline-compatible
 * callback interface on a uv_poll of stdin (history, Ctrl-C, Ctrl-D); anything else is read
 * as plain lines, through a uv_poll when the fd can be polled and by plain reads otherwise
 * (a regular file never blocks). Lines are handed over one at a time, from the loop. */
#include "lineio.h"

#include <editline/readline.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct {
    uv_loop_t *loop;
    lineio_callbacks cb;
    void *ud;
    int active, tty, editing, want, pollable, polling, eof_seen, eof_key;
    uv_poll_t poll;            /* stdin readiness (terminal, pipe, socket) */
    uv_idle_t pump;            /* hands over a queued plain line from the loop */
    uv_async_t sigint;         /* the SIGINT handler's wake-up */
    struct sigaction old_int;
    char history[4096];
    char *buf;                 /* plain mode: bytes read and not yet handed over */
    size_t len, cap;
} io;

static volatile sig_atomic_t pending_interrupt;

int lineio_is_tty(void) { return io.active && io.tty; }

int lineio_stdin_is_terminal(void) { return isatty(STDIN_FILENO) && isatty(STDOUT_FILENO); }

int lineio_take_interrupt(void) {
    if (!pending_interrupt) return 0;
    pending_interrupt = 0;
    return 1;
}

/* ---- output ------------------------------------------------------------------------------ */

void lineio_write(FILE *to, const char *s, size_t n) {
    int redraw = io.active && io.tty && io.editing;
    if (redraw) {
        fputs("\r\033[K", stdout);          /* erase the prompt line; it is redrawn below */
        fflush(stdout);
    }
    fwrite(s, 1, n, to);
    if (redraw && n > 0 && s[n - 1] != '\n') fputc('\n', to);
    fflush(to);
    if (redraw) rl_forced_update_display();
}

/* ---- terminal: libedit ------------------------------------------------------------------- */

/* Characters come through here: an EOF key on an empty line is noted, since not every libedit
 * reports it in callback mode (older readline.c leave it "notyet"), and a non-blocking fd
 * (uv_poll makes it one) is waited on instead of failing the read. */
static int tty_getc(FILE *f) {
    unsigned char c;
    for (;;) {
        ssize_t n = read(fileno(f), &c, 1);
        if (n == 1) break;
        if (n == 0) { io.eof_key = 1; return EOF; }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) { io.eof_key = 1; return EOF; }
        /* the rest of an escape sequence, which a terminal sends in one write: this runs on
         * the loop thread, so a lone ESC may hold it only briefly (it held it 1 s) */
        struct pollfd p = {fileno(f), POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) return EOF;
    }
    if (c == 4 && rl_end == 0) io.eof_key = 1;
    return c;
}

static void stop_editing(void) {
    io.editing = 0;
    if (io.polling) uv_poll_stop(&io.poll);
    io.polling = 0;
}

static void on_tty_line(char *line) {
    stop_editing();
    if (line == NULL) {                 /* Ctrl-D, when this libedit reports it */
        io.eof_key = 0;
        fputc('\n', stdout);
        fflush(stdout);
        io.cb.eof(io.ud);
        return;
    }
    if (line[0] != '\0') add_history(line);
    io.cb.line(io.ud, line, strlen(line));
    free(line);
}

static void on_tty_readable(uv_poll_t *h, int status, int events) {
    if (!io.editing) return;
    if (status >= 0) rl_callback_read_char();
    if (io.eof_key || status < 0) {
        io.eof_key = 0;
        if (!io.editing) return;         /* the line was taken first */
        rl_callback_handler_remove();
        fputc('\n', stdout);
        fflush(stdout);
        stop_editing();
        io.cb.eof(io.ud);
    }
}

static void on_sigint(int sig) {
    pending_interrupt = 1;
    uv_async_send(&io.sigint);          /* async-signal-safe */
}

static void on_interrupt(uv_async_t *h) {
    if (!lineio_take_interrupt()) return;   /* a Lua hook took it first */
    if (io.editing) {
        rl_replace_line("", 0);
        rl_callback_handler_remove();
        fputc('\n', stdout);
        fflush(stdout);
        stop_editing();
    }
    io.cb.interrupt(io.ud);
}

static int start_tty(void) {
    rl_readline_name = "assetd";
    rl_catch_signals = 0;
    rl_getc_function = tty_getc;
    using_history();
    stifle_history(1000);
    if (io.history[0]) read_history(io.history);
    rl_parse_and_bind("bind ^I ed-insert");      /* Tab indents; no file-name completion */
    int err = uv_poll_init(io.loop, &io.poll, STDIN_FILENO);
    if (err == 0) err = uv_async_init(io.loop, &io.sigint, on_interrupt);
    if (err) return err;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    return sigaction(SIGINT, &sa, &io.old_int) == 0 ? 0 : -errno;
}

/* ---- plain lines ------------------------------------------------------------------------- */

static int read_more(void) {
    if (io.cap - io.len < 4096) {
        size_t cap = io.cap ? io.cap * 2 : 8192;
        char *b = realloc(io.buf, cap);
        if (!b) return UV_ENOMEM;
        io.buf = b;
        io.cap = cap;
    }
    ssize_t n = read(STDIN_FILENO, io.buf + io.len, io.cap - io.len - 1);
    if (n > 0) io.len += (size_t)n;
    else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) io.eof_seen = 1;
    return 0;
}

/* Hand over one line if one is there; else say whether more input is needed. */
static int deliver_plain(void) {
    char *nl = io.len ? memchr(io.buf, '\n', io.len) : NULL;
    if (!nl && !io.eof_seen) return 0;
    io.want = 0;
    uv_idle_stop(&io.pump);
    if (!nl && io.len == 0) {
        io.cb.eof(io.ud);
        return 1;
    }
    size_t n = nl ? (size_t)(nl - io.buf) : io.len;
    char *line = malloc(n + 1);
    if (!line) { io.eof_seen = 1; io.len = 0; io.cb.eof(io.ud); return 1; }
    memcpy(line, io.buf, n);
    line[n] = '\0';
    if (n > 0 && line[n - 1] == '\r') line[--n] = '\0';
    size_t used = nl ? (size_t)(nl - io.buf) + 1 : io.len;
    memmove(io.buf, io.buf + used, io.len - used);
    io.len -= used;
    io.cb.line(io.ud, line, n);
    free(line);
    return 1;
}

static void on_plain_readable(uv_poll_t *h, int status, int events) {
    if (status < 0) io.eof_seen = 1;
    else if (read_more() != 0) io.eof_seen = 1;
    if (io.eof_seen || (io.len && memchr(io.buf, '\n', io.len))) {
        uv_poll_stop(&io.poll);
        io.polling = 0;
    }
    if (io.want) deliver_plain();
}

static void on_pump(uv_idle_t *h) {
    if (!io.want) { uv_idle_stop(&io.pump); return; }
    if (deliver_plain()) return;
    if (io.pollable) {                      /* wait for the fd; the poll callback delivers */
        uv_idle_stop(&io.pump);
        if (!io.polling) uv_poll_start(&io.poll, UV_READABLE, on_plain_readable);
        io.polling = 1;
        return;
    }
    if (read_more() != 0) io.eof_seen = 1;  /* a regular file: a read never blocks */
}

/* ---- the interface ----------------------------------------------------------------------- */

int lineio_start(uv_loop_t *loop, const char *history, const lineio_callbacks *cb, void *ud) {
    memset(&io, 0, sizeof io);
    io.loop = loop;
    io.cb = *cb;
    io.ud = ud;
    io.tty = lineio_stdin_is_terminal();
    if (history) snprintf(io.history, sizeof io.history, "%s", history);
    int err = uv_idle_init(loop, &io.pump);
    if (err) return err;
    io.active = 1;
    if (io.tty) return start_tty();
    io.pollable = uv_poll_init(loop, &io.poll, STDIN_FILENO) == 0;
    return 0;
}

void lineio_prompt(const char *prompt) {
    if (!io.active) return;
    if (!io.tty) {
        io.want = 1;
        uv_idle_start(&io.pump, on_pump);
        return;
    }
    io.editing = 1;
    rl_callback_handler_install(prompt, on_tty_line);
    if (!io.polling) uv_poll_start(&io.poll, UV_READABLE, on_tty_readable);
    io.polling = 1;
}

static void close_handle(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, NULL);
}

void lineio_stop(void) {
    if (!io.active) return;
    io.active = 0;
    if (io.tty) {
        if (io.editing) {
            rl_callback_handler_remove();
            fputc('\n', stdout);
            fflush(stdout);
        }
        if (io.history[0]) write_history(io.history);
        sigaction(SIGINT, &io.old_int, NULL);
        close_handle((uv_handle_t *)&io.sigint);
    }
    if (io.tty || io.pollable) {
        close_handle((uv_handle_t *)&io.poll);
        int fl = fcntl(STDIN_FILENO, F_GETFL);      /* uv_poll made the shared fd non-blocking */
        if (fl >= 0) fcntl(STDIN_FILENO, F_SETFL, fl & ~O_NONBLOCK);
    }
    close_handle((uv_handle_t *)&io.pump);
    io.editing = io.want = io.polling = 0;
    free(io.buf);
    io.buf = NULL;
    io.len = io.cap = 0;
}

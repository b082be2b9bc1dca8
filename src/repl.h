/* repl.h: the REPL's mechanisms in the daemon: sessions on the terminal (-i) and on the attach
 * socket, each feeding lines to a Lua session (lua/assetd/repl.lua) and carrying its output
 * back, and the guard that interrupts REPL code hogging the loop. The attach client is in
 * attach.c; both ends speak the protocol below.
 *
 * The attach protocol, on the unix stream socket {data}/assetd.sock (mode 0600; a peer whose
 * uid differs from the daemon's, by SO_PEERCRED, is refused):
 *   client -> daemon  input lines, each ended by LF. A line holding only ETX (0x03) asks for
 *                     an interrupt: cancel the running chunk, or drop an unfinished one.
 *                     Half-closing the socket ends the session once the lines sent before
 *                     have run.
 *   daemon -> client  frames: a header "K LEN\n" and then LEN bytes of payload, K being
 *                     i  greeting, shown by interactive clients only
 *                     o  output, for stdout
 *                     e  error text, for stderr
 *                     p  prompt: the daemon waits for the next line; the payload ("> " or
 *                        ">> ") is the prompt to show
 *                     x  the session is refused or ends with this error (the client exits 1)
 *                     LEN is at most REPL_MAX_FRAME, which the client enforces; longer output
 *                     comes as several frames of its kind, meant to be shown back to back.
 *                     A client that takes none of its output for 2 s while more than 16 MiB
 *                     waits is dropped. Output that would leave over 4 frames' worth unread
 *                     is not sent; an `e` frame says so once.
 *   The daemon reads a client's lines ahead, but runs them one at a time: the next line is
 *   taken after the prompt for it is sent. */
#ifndef ASSETD_REPL_H
#define ASSETD_REPL_H

#include "runtime.h"

#include <stddef.h>

#define REPL_SOCKET_NAME "assetd.sock"
#define REPL_MAX_FRAME (64u << 20)   /* payload bytes in one frame, on both ends */

typedef struct repl repl;
typedef struct repl_session repl_session;

/* One daemon's REPL: its sessions, the attach socket, the handler. The embedder owns it
 * (main.c keeps it in rt->repl, where l_repl.c finds it): made once RT is initialised, shut
 * down at the stop, freed after the loop is closed (its handles live in it). */
int repl_new(rt_runtime *rt, repl **out);
void repl_free(repl *r);
/* -i: a session on the terminal (or on piped stdin); its end (Ctrl-D) stops the daemon. */
int repl_start_terminal(repl *r);
/* The attach socket at PATH; an existing socket nobody answers on is replaced. */
int repl_listen(repl *r, const char *path, char *err, size_t cap);
/* At the daemon's stop: close the sessions and the socket, restore the terminal. */
void repl_shutdown(repl *r);

/* What runs the sessions' lines (l_repl.c, with its Lua session), each called with the UD
 * given to repl_set_handler. OPEN a new session (0, or -1 to refuse it; it may keep its
 * state in *repl_session_user), INPUT "line" (LINE, N), "interrupt" or "close", INTERRUPT
 * the chunk running now, CLOSE: the session is going. */
typedef struct repl_handler {
    int (*open)(void *ud, repl_session *s);
    void (*input)(void *ud, repl_session *s, const char *what, const char *line, size_t n);
    void (*interrupt)(void *ud, repl_session *s);
    void (*close)(void *ud, repl_session *s);
} repl_handler;
void repl_set_handler(repl *r, const repl_handler *h, void *ud);
void **repl_session_user(repl_session *s);

/* For the handler. */
enum repl_out { REPL_OUT, REPL_ERR, REPL_INFO };
void repl_session_write(repl_session *s, enum repl_out kind, const char *p, size_t n);
void repl_session_prompt(repl_session *s, const char *prompt);
const char *repl_session_kind(const repl_session *s);
/* Whether an interrupt was asked (Ctrl-C on the terminal, ETX from a client) since the last
 * call; it is taken. */
int repl_session_take_interrupt(repl_session *s);
/* How long REPL code may hold the loop before it is interrupted; MS (if not 0) sets it. */
unsigned repl_budget(repl *r, unsigned ms);
int repl_session_count(const repl *r);

/* attach.c: `assetd attach [SOCKET | --data DIR]`; returns the exit status. */
int attach_main(int argc, char **argv);

#endif

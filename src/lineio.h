/* lineio.h: line input on the libuv loop for the REPL (the daemon's -i and the attach client):
 * libedit on a terminal, plain lines from a pipe or a file. One line is handed over at a
 * time; the next waits until lineio_prompt asks for it. One instance per process, because
 * libedit's readline interface is global. */
#ifndef ASSETD_LINEIO_H
#define ASSETD_LINEIO_H

#include <stddef.h>
#include <stdio.h>
#include <uv.h>

typedef struct lineio_callbacks {
    void (*line)(void *ud, const char *line, size_t len);  /* without its LF; NUL-terminated */
    void (*eof)(void *ud);                                 /* Ctrl-D on an empty line, or end of input */
    void (*interrupt)(void *ud);                           /* Ctrl-C (terminal only) */
} lineio_callbacks;

/* Whether stdin and stdout are a terminal: libedit is used then, plain lines otherwise. */
int lineio_stdin_is_terminal(void);
/* Read stdin. HISTORY (may be NULL) is the history file, used on a terminal. */
int lineio_start(uv_loop_t *loop, const char *history, const lineio_callbacks *cb, void *ud);
int lineio_is_tty(void);
/* Ready for the next line: show PROMPT on a terminal, deliver a queued line otherwise.
 * Lines are delivered from the loop, never from inside this call. */
void lineio_prompt(const char *prompt);
/* Write output without breaking the line being edited (it is redrawn below the output). */
void lineio_write(FILE *to, const char *s, size_t n);
/* A Ctrl-C the loop has not handled yet: take it (for a Lua hook interrupting busy code). */
int lineio_take_interrupt(void);
/* Restore the terminal, save the history, close the handles. */
void lineio_stop(void);

#endif

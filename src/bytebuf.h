/* bytebuf.h: a growable byte buffer with a hard limit, kept NUL-terminated so text can be read
 * from it directly. One owner frees it with bytebuf_free. */
#ifndef ASSETD_BYTEBUF_H
#define ASSETD_BYTEBUF_H

#include <stddef.h>

typedef struct bytebuf {
    char *p;
    size_t len, cap;
} bytebuf;

/* Append N bytes of P; -1 with nothing appended when LEN would pass LIMIT or memory runs out. */
int bytebuf_append(bytebuf *b, const void *p, size_t n, size_t limit);
void bytebuf_free(bytebuf *b);

#endif

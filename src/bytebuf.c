/* bytebuf.c: the one growable buffer (memory sinks and response headers in fetch.c, request
 * bodies in httpd.c, attach input in repl.c): doubling growth, a hard limit, a NUL after the
 * last byte. */
#include "bytebuf.h"

#include <stdlib.h>
#include <string.h>

int bytebuf_append(bytebuf *b, const void *p, size_t n, size_t limit) {
    if (n > limit || b->len > limit - n) return -1;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n + 1) cap *= 2;
        if (cap > limit + 1) cap = limit + 1;
        char *m = realloc(b->p, cap);
        if (!m) return -1;
        b->p = m;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

void bytebuf_free(bytebuf *b) {
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

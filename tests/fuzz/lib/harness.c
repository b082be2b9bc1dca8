/* harness.c: property failures and input splitting for every fuzz target. */
#include "harness.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fuzz_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "\n==fuzz== property failed at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();                 /* libFuzzer's deadly-signal handler saves the input */
}

char *fuzz_field(fuzz_in *in, uint8_t sep, size_t *len) {
    const uint8_t *end = in->n ? memchr(in->p, sep, in->n) : NULL;
    size_t n = end ? (size_t)(end - in->p) : in->n;
    char *s = malloc(n + 1);
    if (!s) abort();
    if (n) memcpy(s, in->p, n);
    s[n] = '\0';
    if (len) *len = n;
    in->p += n + (end != NULL);
    in->n -= n + (end != NULL);
    return s;
}

char *fuzz_rest(fuzz_in *in, size_t *len) {
    char *s = malloc(in->n + 1);
    if (!s) abort();
    if (in->n) memcpy(s, in->p, in->n);
    s[in->n] = '\0';
    if (len) *len = in->n;
    in->p += in->n;
    in->n = 0;
    return s;
}

uint64_t fuzz_u64(fuzz_in *in, size_t bytes) {
    uint64_t v = 0;
    for (size_t i = 0; i < bytes && in->n > 0; i++, in->p++, in->n--) v |= (uint64_t)in->p[0] << (8 * i);
    return v;
}

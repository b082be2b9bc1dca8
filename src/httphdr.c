/* httphdr.c: Content-Range, Retry-After and header-line parsing for the download engine.
 * Kept free of libcurl and Lua so the unit tests can feed it every odd input. */
#include "httphdr.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *skip_ws(const char *s) {
    while (*s == ' ' || *s == '\t') s++;
    return s;
}

static int parse_i64(const char **sp, int64_t *out) {
    const char *s = *sp;
    if (!isdigit((unsigned char)*s)) return -1;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno == ERANGE) return -1;
    *out = v;
    *sp = end;
    return 0;
}

/* "bytes" and the space RFC 9110 puts after it ("bytes0-1/2" is not a range); the rest. */
static const char *after_unit(const char *v) {
    const char *s = skip_ws(v);
    if (strncasecmp(s, "bytes", 5) != 0 || (s[5] != ' ' && s[5] != '\t')) return NULL;
    return skip_ws(s + 5);
}

int httphdr_content_range(const char *v, int64_t *start, int64_t *end, int64_t *total) {
    const char *s = after_unit(v);
    if (!s) return -1;
    if (parse_i64(&s, start) || *s++ != '-' || parse_i64(&s, end) || *s++ != '/') return -1;
    if (*s == '*') { *total = -1; s++; }
    else if (parse_i64(&s, total)) return -1;
    if (*skip_ws(s) != '\0') return -1;
    if (*end < *start) return -1;
    if (*total >= 0 && *end >= *total) return -1;
    return 0;
}

int httphdr_unsatisfied_range(const char *v, int64_t *total) {
    const char *s = after_unit(v);
    if (!s) return -1;
    if (*s++ != '*' || *s++ != '/' || parse_i64(&s, total)) return -1;
    return *skip_ws(s) == '\0' ? 0 : -1;
}

static double bounded_wait(double secs) {
    return secs < 0 ? 0 : secs > HTTPHDR_RETRY_AFTER_MAX ? HTTPHDR_RETRY_AFTER_MAX : secs;
}

double httphdr_retry_after(const char *v, double now) {
    const char *s = skip_ws(v);
    if (isdigit((unsigned char)*s)) {           /* delta-seconds = 1*DIGIT, nothing else */
        int64_t secs;
        if (parse_i64(&s, &secs) != 0 || *skip_ws(s) != '\0') return -1;
        return bounded_wait((double)secs);
    }
    /* IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT" */
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (rest == NULL || *skip_ws(rest) != '\0') return -1;
    return bounded_wait((double)timegm(&tm) - now);
}

int httphdr_split(const char *line, size_t len, char *name, size_t name_cap, char *value,
                  size_t value_cap) {
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || colon == line || name_cap == 0 || value_cap == 0) return -1;
    size_t nlen = (size_t)(colon - line);
    if (nlen >= name_cap) return -1;
    for (size_t i = 0; i < nlen; i++) {
        unsigned char c = (unsigned char)line[i];
        if (c <= ' ' || c >= 0x7f) return -1;
        name[i] = (char)tolower(c);
    }
    name[nlen] = '\0';
    const char *v = colon + 1, *e = line + len;
    while (v < e && (*v == ' ' || *v == '\t')) v++;
    while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t')) e--;
    size_t vlen = (size_t)(e - v);
    /* RFC 9110 5.5: a NUL, CR or LF inside a value is refused, not read as its end (a C
     * string would stop at "bytes 0-1/2\0junk"); checked before the cut below hides it */
    if (memchr(v, '\0', vlen) || memchr(v, '\r', vlen) || memchr(v, '\n', vlen)) return -1;
    if (vlen >= value_cap) vlen = value_cap - 1;
    memcpy(value, v, vlen);
    value[vlen] = '\0';
    return 0;
}

int httphdr_add(bytebuf *b, const char *name, const char *value, size_t cap) {
    size_t mark = b->len;
    if (bytebuf_append(b, name, strlen(name) + 1, cap) == 0 &&
        bytebuf_append(b, value, strlen(value) + 1, cap) == 0)
        return 0;
    b->len = mark;
    return -1;
}

size_t httphdr_next(const bytebuf *b, size_t off, const char **name, const char **value) {
    if (off >= b->len) return 0;
    *name = b->p + off;
    *value = *name + strlen(*name) + 1;
    return (size_t)(*value + strlen(*value) + 1 - b->p);
}

const char *httphdr_get(const bytebuf *b, const char *name) {
    const char *n, *v, *found = NULL;
    for (size_t off = 0; (off = httphdr_next(b, off, &n, &v)) != 0;)
        if (strcmp(n, name) == 0) found = v;
    return found;
}

/* fuzz_httphdr: every parser in src/httphdr.c on one input. The input is a header line as
 * libcurl hands it over ("Name: value\r\n"); its value also goes to the Content-Range,
 * 416-range and Retry-After parsers, and the split pairs into the header store.
 * Properties: an accepted Content-Range is within bounds, agrees with an independent
 * reference scan and round-trips through its canonical form; a Retry-After delay is never
 * negative, never past HTTPHDR_RETRY_AFTER_MAX, and equals the number given; a split name is
 * a lowercase token, the value the line's trimmed value (cut at the cap, never at a NUL or
 * line break); the header store gives back the last value added under a name. */
#include "harness.h"
#include "httphdr.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Reference scan of "bytes SP first-last/(total|*)" with SP/HTAB around: -1 when not of that
 * shape; else 0 with the three numbers' digits' spans (an overflow is the caller's to check). */
struct span { const char *p; size_t n; };
static int ref_digits(const char **s, struct span *d) {
    d->p = *s;
    while (**s >= '0' && **s <= '9') (*s)++;
    d->n = (size_t)(*s - d->p);
    return d->n ? 0 : -1;
}
static const char *ref_ws(const char *s) { while (*s == ' ' || *s == '\t') s++; return s; }
static int ref_content_range(const char *v, struct span d[3], int *star) {
    const char *s = ref_ws(v);
    if (strncasecmp(s, "bytes", 5) != 0 || (s[5] != ' ' && s[5] != '\t')) return -1;
    s = ref_ws(s + 5);
    if (ref_digits(&s, &d[0]) || *s++ != '-' || ref_digits(&s, &d[1]) || *s++ != '/') return -1;
    *star = *s == '*';
    if (*star) s++;
    else if (ref_digits(&s, &d[2])) return -1;
    return *ref_ws(s) == '\0' ? 0 : -1;
}

/* Whether span D spells V in decimal (leading zeros allowed). */
static int spells(struct span d, int64_t v) {
    char buf[32];
    while (d.n > 1 && d.p[0] == '0') { d.p++; d.n--; }
    int n = snprintf(buf, sizeof buf, "%" PRId64, v);
    return (size_t)n == d.n && memcmp(buf, d.p, d.n) == 0;
}

static void check_content_range(const char *v) {
    int64_t s, e, t, s2, e2, t2;
    struct span d[3];
    int star = 0;
    int ref = ref_content_range(v, d, &star);
    if (httphdr_content_range(v, &s, &e, &t) != 0) {
        /* the reference shape with bounds that hold and numbers that fit must be accepted */
        FUZZ_CHECK(ref != 0 || d[0].n > 18 || d[1].n > 18 || (!star && d[2].n > 18) ||
                       strtoll(d[1].p, NULL, 10) < strtoll(d[0].p, NULL, 10) ||
                       (!star && strtoll(d[1].p, NULL, 10) >= strtoll(d[2].p, NULL, 10)),
                   "Content-Range \"%s\" refused, but it is well-formed and within bounds", v);
        return;
    }
    FUZZ_CHECK(ref == 0, "Content-Range \"%s\" accepted; the reference says it is malformed", v);
    FUZZ_CHECK(spells(d[0], s) && spells(d[1], e) && (star ? t == -1 : spells(d[2], t)),
               "Content-Range \"%s\" parsed as %" PRId64 "-%" PRId64 "/%" PRId64, v, s, e, t);
    FUZZ_CHECK(s >= 0 && s <= e && (t == -1 || e < t), "Content-Range \"%s\" out of bounds", v);
    char canon[96];
    if (t < 0) snprintf(canon, sizeof canon, "bytes %" PRId64 "-%" PRId64 "/*", s, e);
    else snprintf(canon, sizeof canon, "bytes %" PRId64 "-%" PRId64 "/%" PRId64, s, e, t);
    FUZZ_CHECK(httphdr_content_range(canon, &s2, &e2, &t2) == 0 && s2 == s && e2 == e && t2 == t,
               "Content-Range \"%s\" does not round-trip through \"%s\"", v, canon);
}

static void check_unsatisfied(const char *v) {
    int64_t t, t2;
    if (httphdr_unsatisfied_range(v, &t) != 0) return;
    FUZZ_CHECK(t >= 0, "416 Content-Range \"%s\" gave a negative total", v);
    char canon[48];
    snprintf(canon, sizeof canon, "bytes */%" PRId64, t);
    FUZZ_CHECK(httphdr_unsatisfied_range(canon, &t2) == 0 && t2 == t,
               "416 Content-Range \"%s\" does not round-trip through \"%s\"", v, canon);
}

static void check_retry_after(const char *v, double now) {
    double r = httphdr_retry_after(v, now);
    FUZZ_CHECK(r == -1 || (r >= 0 && r <= HTTPHDR_RETRY_AFTER_MAX),
               "Retry-After \"%s\" at %.0f gave %g", v, now, r);
    FUZZ_CHECK(httphdr_retry_after(v, now) == r, "Retry-After \"%s\": two parses differ", v);
    const char *s = ref_ws(v);
    struct span d;
    if (ref_digits(&s, &d) == 0 && *ref_ws(s) == '\0' && d.n <= 18) {
        double want = strtod(d.p, NULL);
        if (want > HTTPHDR_RETRY_AFTER_MAX) want = HTTPHDR_RETRY_AFTER_MAX;
        FUZZ_CHECK(r == want, "Retry-After \"%s\" gave %g, not %g", v, r, want);
    }
}

static int is_trim(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

static void check_split(const char *line, size_t len, size_t name_cap, size_t value_cap) {
    char *name = malloc(name_cap ? name_cap : 1), *value = malloc(value_cap ? value_cap : 1);
    if (!name || !value) abort();
    if (httphdr_split(line, len, name, name_cap, value, value_cap) == 0) {
        size_t nlen = strlen(name);
        FUZZ_CHECK(nlen > 0 && nlen < name_cap && line[nlen] == ':' && strncasecmp(name, line, nlen) == 0,
                   "split name \"%s\" is not the line's name", name);
        for (size_t i = 0; i < nlen; i++)
            FUZZ_CHECK(name[i] > ' ' && name[i] < 0x7f && !isupper((unsigned char)name[i]),
                       "split name has byte 0x%02x", (unsigned char)name[i]);
        /* the reference value: after the colon, trimmed of SP/HTAB before and CR/LF/SP/HTAB after */
        const char *b = line + nlen + 1, *e = line + len;
        while (b < e && (*b == ' ' || *b == '\t')) b++;
        while (e > b && is_trim(e[-1])) e--;
        size_t full = (size_t)(e - b), want = full < value_cap ? full : value_cap - 1;
        FUZZ_CHECK(memchr(b, '\0', full) == NULL && memchr(b, '\r', full) == NULL && memchr(b, '\n', full) == NULL,
                   "a value with a NUL, CR or LF inside was accepted");
        FUZZ_CHECK(strlen(value) == want && memcmp(value, b, want) == 0, "split value is not the line's value");
    }
    free(name);
    free(value);
}

/* Pairs added to a capped store come back: the last value under a name, every whole pair in
 * order, and a refused pair leaves no trace. */
static void check_store(const char *name, const char *value, size_t cap) {
    bytebuf b = {0};
    const char *names[3] = {name, "x", name}, *values[3] = {"1", value, value};
    int added[3], count = 0;
    for (int i = 0; i < 3; i++) {
        size_t before = b.len;
        added[i] = httphdr_add(&b, names[i], values[i], cap) == 0;
        FUZZ_CHECK(added[i] || b.len == before, "a refused pair changed the store");
        FUZZ_CHECK(b.len <= cap, "the store grew past its cap");
        count += added[i];
    }
    const char *last = NULL;
    for (int i = 0; i < 3; i++)
        if (added[i] && strcmp(names[i], name) == 0) last = values[i];
    const char *got = httphdr_get(&b, name);
    FUZZ_CHECK(last ? got && strcmp(got, last) == 0 : got == NULL, "get(\"%s\") is not the last value", name);
    const char *n, *v;
    int seen = 0;
    for (size_t off = 0; (off = httphdr_next(&b, off, &n, &v)) != 0;) seen++;
    FUZZ_CHECK(seen == count, "%d pairs iterated, %d added", seen, count);
    bytebuf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_in in = {data, size};
    double now = (double)fuzz_u64(&in, 4) + 1.7e9;         /* around today, give or take */
    size_t name_cap = (size_t)fuzz_u64(&in, 1), value_cap = (size_t)fuzz_u64(&in, 2);
    size_t len;
    char *line = fuzz_rest(&in, &len);         /* the line with any NULs a hostile peer sends */
    check_split(line, len, name_cap, value_cap);
    char name[128], value[4096];                           /* fetch.c's buffers */
    if (httphdr_split(line, len, name, sizeof name, value, sizeof value) == 0) {
        check_content_range(value);
        check_unsatisfied(value);
        check_retry_after(value, now);
        check_store(name, value, 64 + (value_cap & 0xff));
    }
    check_content_range(line);                             /* the raw bytes as a value too */
    check_retry_after(line, now);
    free(line);
    return 0;
}

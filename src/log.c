/* log.c: structured event lines on stderr. One event is formatted into one buffer and written
 * with one call, so lines never interleave. Fields whose name says they hold a secret are
 * masked here, the one place every log line passes through. */
#include "log.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <time.h>

static enum log_level cur_level = LOG_INFO;
static enum log_format cur_format = LOG_LOGFMT;
static FILE *cur_out;
static void (*cur_sink)(const char *line, size_t n);

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int log_parse_level(const char *s, enum log_level *out) {
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0) { *out = (enum log_level)i; return 0; }
    return -1;
}

int log_parse_format(const char *s, enum log_format *out) {
    if (strcmp(s, "logfmt") == 0) *out = LOG_LOGFMT;
    else if (strcmp(s, "json") == 0) *out = LOG_JSON;
    else return -1;
    return 0;
}

void log_configure(enum log_level level, enum log_format format, FILE *out) {
    cur_level = level;
    cur_format = format;
    cur_out = out;
}

void log_set_sink(void (*sink)(const char *line, size_t n)) { cur_sink = sink; }

int log_enabled(enum log_level level) { return level >= cur_level; }
const char *log_level_name(enum log_level level) { return level_names[level]; }

int log_is_secret_key(const char *key) {
    static const char *const words[] = {"token", "secret", "password", "authorization", "api_key",
                                        "api-key", "apikey", "cookie", "signature", NULL};
    for (int i = 0; words[i]; i++)
        if (strcasestr(key, words[i])) return 1;
    return 0;
}

/* The environment variables that hold secrets (design.md): their values are redacted wherever
 * they appear, since upstream error bodies and user hooks may quote them. */
static const char *const secret_env[] = {"OPENAI_API_KEY", "NOTION_TOKEN", "OPENAI_WEBHOOK_SECRET",
                                         "ASSETD_API_TOKEN", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                         "PGPASSWORD", NULL};

const char *const *log_secret_env(void) { return secret_env; }

#define REDACTED "[redacted]"

/* The end of a URL's authority from S (after "://"), and the '@' ending its user:password if
 * it has one. */
static const char *userinfo_end(const char *s) {
    return memrchr(s, '@', strcspn(s, "/?# \t\r\n\"'<>"));
}

/* A libpq password given as a keyword (`password=x` in a conninfo, `?password=x` in a URL):
 * the length of its value, quoted or not, when S starts with the keyword; else 0. */
static size_t password_value(const char *s, size_t *keylen) {
    static const char kw[] = "password=";
    if (strncasecmp(s, kw, sizeof kw - 1) != 0) return 0;
    const char *v = s + sizeof kw - 1;
    *keylen = sizeof kw - 1;
    if (*v == '\'') {
        const char *e = v + 1;
        while (*e && *e != '\'') e += (*e == '\\' && e[1]) ? 2 : 1;
        return (size_t)(e - v) + (*e ? 1 : 0);
    }
    return strcspn(v, " \t\r\n&#\"");
}

size_t log_redact_into(const char *s, char *out, size_t cap) {
    const char *vals[sizeof secret_env / sizeof *secret_env];
    size_t lens[sizeof secret_env / sizeof *secret_env], nv = 0, n = 0;
    for (int i = 0; secret_env[i]; i++) {
        const char *v = getenv(secret_env[i]);
        if (v && strlen(v) >= 4) vals[nv] = v, lens[nv++] = strlen(v);   /* shorter: too common */
    }
#define EMIT(p, k) do { for (size_t j_ = 0; j_ < (k); j_++, n++) if (out && n + 1 < cap) out[n] = (p)[j_]; } while (0)
    while (*s) {
        const char *at = strncmp(s, "://", 3) == 0 ? userinfo_end(s + 3) : NULL;
        if (at) {                                  /* scheme://user:password@host */
            EMIT("://" REDACTED, 3 + sizeof REDACTED - 1);
            s = at;
            continue;
        }
        size_t kl = 0, pv = password_value(s, &kl);
        if (pv) {
            EMIT(s, kl);
            EMIT(REDACTED, sizeof REDACTED - 1);
            s += kl + pv;
            continue;
        }
        size_t i = 0;
        while (i < nv && strncmp(s, vals[i], lens[i]) != 0) i++;
        if (i < nv) {
            EMIT(REDACTED, sizeof REDACTED - 1);
            s += lens[i];
            continue;
        }
        EMIT(s, 1);
        s++;
    }
#undef EMIT
    if (out && cap) out[n < cap ? n : cap - 1] = '\0';
    return n;
}

char *log_redact(const char *s) {
    size_t n = log_redact_into(s, NULL, 0);
    char *out = malloc(n + 1);
    if (out) log_redact_into(s, out, n + 1);
    return out;
}

/* A growing line buffer with a fixed cap: an enormous field is cut, never allocated. */
typedef struct { char buf[8192]; size_t len; int full; } line_t;

/* Kept free for what closes a line (a value's quote, the JSON object's brace, the newline),
 * so that a cut line is still a whole line, and valid JSON. */
#define CLOSE_ROOM 8

/* Append, or once the line is full, cut: a short piece (an escape, one character) whole or
 * not at all, a long one before a UTF-8 character it would split. */
static void put(line_t *l, const char *s, size_t n) {
    size_t room = sizeof l->buf - CLOSE_ROOM - l->len;
    if (l->full) return;
    if (n > room) {
        l->full = 1;
        if (n <= 8) return;
        for (n = room; n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80; n--) {}
    }
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

static void put_close(line_t *l, const char *s) {
    size_t n = strlen(s);
    memcpy(l->buf + l->len, s, n);
    l->len += n;
}

/* The length of the valid UTF-8 character at S, or 0. */
static size_t utf8_len(const unsigned char *s) {
    size_t n = s[0] >= 0xF0 && s[0] <= 0xF4 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return n;
}

void log_utf8_copy(char *out, size_t cap, const char *s) {
    size_t n = 0;
    if (cap == 0) return;
    while (*s) {
        size_t k = (unsigned char)*s < 0x80 ? 1 : utf8_len((const unsigned char *)s);
        const char *c = k ? s : "\xef\xbf\xbd";
        size_t w = k ? k : 3;
        if (n + w >= cap) break;               /* between characters, never inside one */
        memcpy(out + n, c, w);
        n += w;
        s += k ? k : 1;
    }
    out[n] = '\0';
}

static void puts_(line_t *l, const char *s) { put(l, s, strlen(s)); }

static void put_escaped(line_t *l, const char *s, int json) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        char tmp[8];
        if (c == '"' || c == '\\') { tmp[0] = '\\'; tmp[1] = (char)c; put(l, tmp, 2); }
        else if (c == '\n') put(l, "\\n", 2);
        else if (c == '\t') put(l, "\\t", 2);
        else if (c == '\r') put(l, "\\r", 2);
        else if (c < 0x20) put(l, tmp, (size_t)snprintf(tmp, sizeof tmp, json ? "\\u%04x" : "\\x%02x", c));
        else if (c < 0x80) put(l, (const char *)&c, 1);
        else {                               /* JSON is UTF-8: a broken byte becomes U+FFFD */
            size_t k = utf8_len((const unsigned char *)s);
            if (k) { put(l, s, k); s += k - 1; }
            else put(l, json ? "\\ufffd" : "\xef\xbf\xbd", json ? 6 : 3);
        }
    }
}

static int needs_quotes(const char *s) {
    if (*s == '\0') return 1;
    for (; *s; s++)
        if (*s <= ' ' || *s == '"' || *s == '=' || *s == '\\' || (unsigned char)*s >= 0x7f) return 1;
    return 0;
}

static void put_time(line_t *l) {
    struct timeval tv;
    struct tm tm;
    char tmp[40];
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(tmp + n, sizeof tmp - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    put(l, tmp, n);
}

static void put_pair(line_t *l, const char *key, const char *val, int raw) {
    char red[sizeof l->buf];
    if (log_is_secret_key(key)) { val = REDACTED; raw = 0; }
    else if (!raw) { log_redact_into(val, red, sizeof red); val = red; }
    /* a number JSON cannot carry (nan, inf) goes as a string */
    if (raw && (strstr(val, "nan") || strstr(val, "inf"))) raw = 0;
    size_t start = l->len;
    if (cur_format == LOG_JSON) {
        puts_(l, ",\"");
        put_escaped(l, key, 1);
        puts_(l, raw ? "\":" : "\":\"");
    } else {
        puts_(l, " ");
        put_escaped(l, key, 0);
        puts_(l, "=");
        if (!raw && needs_quotes(val)) puts_(l, "\"");
        else raw = 1;
    }
    if (l->full) { l->len = start; return; }        /* no half a key */
    if (raw) puts_(l, val);
    else put_escaped(l, val, cur_format == LOG_JSON);
    if (raw && l->full) { l->len = start; return; }  /* no half a number */
    if (!raw) put_close(l, "\"");
}

void log_fields(enum log_level level, const char *msg, const log_field *f, size_t n) {
    if (!log_enabled(level)) return;
    line_t l = {.len = 0};
    if (cur_format == LOG_JSON) {
        puts_(&l, "{\"ts\":\"");
        put_time(&l);
        puts_(&l, "\",\"level\":\"");
        puts_(&l, level_names[level]);
        char red[sizeof l.buf];
        log_redact_into(msg, red, sizeof red);
        puts_(&l, "\",\"msg\":\"");
        put_escaped(&l, red, 1);
        put_close(&l, "\"");
    } else {
        puts_(&l, "ts=");
        put_time(&l);
        puts_(&l, " level=");
        puts_(&l, level_names[level]);
        put_pair(&l, "msg", msg, 0);
    }
    for (size_t i = 0; i < n; i++) put_pair(&l, f[i].key, f[i].val ? f[i].val : "", f[i].raw);
    if (cur_format == LOG_JSON) put_close(&l, "}");
    l.buf[l.len++] = '\n';
    if (cur_sink) {
        cur_sink(l.buf, l.len);
        return;
    }
    FILE *out = cur_out ? cur_out : stderr;
    fwrite(l.buf, 1, l.len, out);
    fflush(out);
}

void log_event(enum log_level level, const char *msg, ...) {
    log_field f[16];
    size_t n = 0;
    va_list ap;
    va_start(ap, msg);
    for (const char *k; n < 16 && (k = va_arg(ap, const char *)) != NULL; n++) {
        f[n].key = k;
        f[n].val = va_arg(ap, const char *);
        f[n].raw = 0;
    }
    va_end(ap);
    log_fields(level, msg, f, n);
}

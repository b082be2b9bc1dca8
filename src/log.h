/* log.h: one event a line on stderr, logfmt or JSON lines, with secret-looking fields masked. */
#ifndef ASSETD_LOG_H
#define ASSETD_LOG_H

#include <stddef.h>
#include <stdio.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_LOGFMT, LOG_JSON };

typedef struct log_field {
    const char *key;
    const char *val;
    int raw;            /* a number or boolean: unquoted in JSON */
} log_field;

int log_parse_level(const char *s, enum log_level *out);
int log_parse_format(const char *s, enum log_format *out);
void log_configure(enum log_level level, enum log_format format, FILE *out);
/* Hand each finished line (with its LF) to SINK instead of writing it (NULL: write again);
 * the terminal REPL uses it to keep log lines from breaking the line being edited. */
void log_set_sink(void (*sink)(const char *line, size_t n));
int log_enabled(enum log_level level);
const char *log_level_name(enum log_level level);
/* Whether a field of this name must never be written as it is. */
int log_is_secret_key(const char *key);
/* The names of the environment variables holding secrets, NULL-terminated. */
const char *const *log_secret_env(void);
/* S with the values of those variables (of 4 bytes or more) and every URL's user:password
 * replaced by "[redacted]": into OUT (at most CAP bytes with the NUL; OUT may be NULL to
 * measure), returning the whole length; or as a new string the caller frees (NULL: no memory). */
size_t log_redact_into(const char *s, char *out, size_t cap);
char *log_redact(const char *s);
/* S into OUT (CAP bytes with the NUL) as valid UTF-8: a broken byte becomes U+FFFD and a cut
 * falls between characters, so text from outside (an upstream error body) can go into JSON. */
void log_utf8_copy(char *out, size_t cap, const char *s);

void log_fields(enum log_level level, const char *msg, const log_field *f, size_t n);
/* Convenience: key, value string pairs ended by NULL. */
void log_event(enum log_level level, const char *msg, ...);

#endif

/* httphdr.h: parsing of the few HTTP header values the engine acts on, and a response's
 * headers kept as "name\0value\0" pairs in one buffer. */
#ifndef ASSETD_HTTPHDR_H
#define ASSETD_HTTPHDR_H

#include "bytebuf.h"

#include <stddef.h>
#include <stdint.h>

/* "bytes START-END/TOTAL" (TOTAL may be "*", then *total = -1), START <= END < TOTAL.
 * 0 on success. */
int httphdr_content_range(const char *v, int64_t *start, int64_t *end, int64_t *total);
/* The "bytes *\/TOTAL" value of a 416 answer. 0 on success. */
int httphdr_unsatisfied_range(const char *v, int64_t *total);
/* The longest wait a Retry-After gives: a day, far past any download window, so a server's
 * "wait for ever" (or a date in the year 9999) is still a number every caller can add to. */
#define HTTPHDR_RETRY_AFTER_MAX 86400.0
/* Retry-After as delta-seconds or an HTTP date, relative to NOW (unix seconds).
 * Returns seconds to wait (0 .. HTTPHDR_RETRY_AFTER_MAX), or -1 when V is not a valid value. */
double httphdr_retry_after(const char *v, double now);
/* Split a raw header line "Name: value\r\n" into a lowercased name and a trimmed value
 * written into the caller's buffers (a value past VALUE_CAP is cut). Returns 0 for a header
 * line, -1 otherwise: no colon, a name that is empty, holds a control byte or space or does
 * not fit, or a value with a NUL, CR or LF inside. */
int httphdr_split(const char *line, size_t len, char *name, size_t name_cap, char *value,
                  size_t value_cap);

/* Append a pair, whole or not at all: -1 when B would pass CAP bytes. */
int httphdr_add(bytebuf *b, const char *name, const char *value, size_t cap);
/* The pair at OFF; returns the offset of the next one, or 0 at the end. */
size_t httphdr_next(const bytebuf *b, size_t off, const char **name, const char **value);
/* The last value of NAME (lowercase), or NULL. */
const char *httphdr_get(const bytebuf *b, const char *name);

#endif

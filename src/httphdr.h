/* httphdr.h: parsing of the few HTTP header values the engine acts on. Pure functions. */
#ifndef ASSETD_HTTPHDR_H
#define ASSETD_HTTPHDR_H

#include <stddef.h>
#include <stdint.h>

/* "bytes START-END/TOTAL" (TOTAL may be "*", then *total = -1). 0 on success. */
int httphdr_content_range(const char *v, int64_t *start, int64_t *end, int64_t *total);
/* The "bytes *\/TOTAL" value of a 416 answer. 0 on success. */
int httphdr_unsatisfied_range(const char *v, int64_t *total);
/* Retry-After as delta-seconds or an HTTP date, relative to NOW (unix seconds).
 * Returns seconds to wait (>= 0), or -1 when V is not a valid value. */
double httphdr_retry_after(const char *v, double now);
/* Split a raw header line "Name: value\r\n" into a lowercased name and a trimmed value
 * written into the caller's buffers. Returns 0 for a header line, -1 otherwise. */
int httphdr_split(const char *line, size_t len, char *name, size_t name_cap, char *value,
                  size_t value_cap);

#endif

/* fetch.h: the download engine. libcurl's multi interface driven by the libuv loop, streaming
 * bodies to a `.part` file (or a capped memory buffer) with SHA-256 computed on the way,
 * scheduled earliest-deadline-first under global and per-host limits; uploads stream a range
 * of a file as the request body, in a lane of their own. A transfer is opaque:
 * its owner fills its request, submits it and reads its result through the functions below. */
#ifndef ASSETD_FETCH_H
#define ASSETD_FETCH_H

#include "formats.h"

#include <curl/curl.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fetch_engine fetch_engine;
typedef struct fetch_xfer fetch_xfer;

typedef void (*fetch_done_cb)(fetch_xfer *x, void *ud);
typedef void (*fetch_progress_cb)(fetch_xfer *x, void *ud);

typedef struct fetch_limits {
    unsigned max_active;        /* file downloads running at once (default 8); calls into
                                   memory are not counted, only per_host bounds them */
    unsigned per_host;          /* transfers per host name, of either kind (default 8) */
    double max_bytes_per_sec;   /* overall download cap, 0 = none */
    unsigned max_uploads;       /* uploads running at once (default 4), a lane of their own */
    int fifo;                   /* start in arrival order, deadlines ignored (for comparison:
                                   what aria2c -j does); 0: earliest deadline first */
} fetch_limits;

/* A file download as the scheduler sees it (fetch_each_download). */
typedef struct fetch_info {
    uint64_t id;                /* the engine's, for fetch_hold */
    const char *state;          /* "active", "queued" or "held" */
    double deadline;            /* INFINITY when none */
    int64_t bytes, total;       /* total -1 while unknown */
    int holdable;               /* fetch_hold can stop it without losing its bytes */
    int64_t tag;                /* the request's tag */
} fetch_info;

/* What the caller asks for. Its strings and header list are malloc'd by the caller and freed
 * with the transfer. */
typedef struct fetch_request {
    char *url, *method, *path;
    char *body;
    size_t body_len;
    struct curl_slist *headers;
    int64_t max_bytes;          /* 0 = default (memory sink: 16 MiB; file sink: none) */
    int resume;
    int direct;                 /* file sink: whole blocks with O_DIRECT where possible */
    double deadline;            /* unix seconds, scheduling only; INFINITY when none */
    long timeout_ms, connect_timeout_ms;
    long low_speed_bytes, low_speed_secs;
    int to_memory;
    int check;                  /* file sink: validate the file before the rename, */
    formats_sig sig;            /* by this signature (all zero: only that it is not empty), */
    int64_t expect_size;        /* and its size (-1 when unknown) */
    int exists_skip;            /* file sink: a file already under the name is the result */
    int deny_private;           /* never connect to (or send on a connection to) a private address */
    int64_t tag;                /* the caller's, reported in fetch_info (a job id, say); 0: none */
    /* An upload: the body is upload_length bytes of the file upload_path from upload_offset,
     * read as libcurl sends them (never whole); the answer goes to memory. */
    char *upload_path;
    int64_t upload_offset, upload_length;
    /* SigV4 signing by libcurl (CURLOPT_AWS_SIGV4: "aws:amz:REGION:SERVICE") with this key
     * pair; the secret is wiped when the transfer is freed. */
    char *aws_sigv4, *aws_key, *aws_secret;
} fetch_request;

/* What came back. `category` is NULL on success. */
typedef struct fetch_result {
    const char *category;       /* "network" | "http" | "disk" | "timeout" | "canceled" |
                                   "validation" | "integrity" | "exists" | "config" */
    char message[600];
    const char *cause;          /* what a network or timeout failure was at the socket: "dns",
                                   "connect", "tls", "reset", "timeout", "short body"; or NULL */
    long status;
    double retry_after;         /* seconds, -1 when absent */
    int64_t bytes;              /* body bytes, including a resumed prefix */
    int64_t resumed_from;       /* bytes already in the .part when the transfer started */
    char sha256[65];
    double elapsed;
    const char *http_version;
    int skipped;                /* exists_skip: the file was there; no request was made */
    int64_t total;              /* the whole body's size (its length plus a resumed prefix)
                                   once the answer says it, -1 when it does not */
    int64_t uploaded;           /* request body bytes sent (an upload) */
} fetch_result;

/* Whether ADDR (4 bytes for AF_INET, 16 for AF_INET6) is loopback, link-local, private,
 * unspecified, multicast or reserved, also inside an IPv4-mapped, -compatible, NAT64 or 6to4
 * IPv6 address: what deny_private refuses. */
int fetch_private_address(int family, const unsigned char *addr);

int fetch_engine_new(uv_loop_t *loop, fetch_engine **out);
/* Cancel everything without callbacks and release the multi handle and loop handles. */
void fetch_engine_close(fetch_engine *e);
void fetch_set_limits(fetch_engine *e, const fetch_limits *l);
fetch_limits fetch_get_limits(const fetch_engine *e);
void fetch_stats(const fetch_engine *e, unsigned *active, unsigned *queued);

/* Every file download not yet finishing: running, waiting or held. */
void fetch_each_download(fetch_engine *e, void (*fn)(const fetch_info *i, void *ud), void *ud);
/* Hold (ON) or release the download ID: a held one leaves its slot and receives nothing (a
 * running one is stopped, its .part kept open); released, it waits for a slot again by its
 * deadline and goes on with Range + If-Range from the bytes it has. 0, or -1 when there is
 * no such download or it cannot be held (see fetch_info.holdable). */
int fetch_hold(fetch_engine *e, uint64_t id, int on);

fetch_xfer *fetch_xfer_new(void);
/* Free a transfer that was never submitted. */
void fetch_xfer_free(fetch_xfer *x);
/* X's request, to fill before fetch_submit and read at any time. */
fetch_request *fetch_xfer_request(fetch_xfer *x);
/* What came back: bytes and total while it runs (from the progress callback), all of it in
 * the done callback. */
const fetch_result *fetch_xfer_result(const fetch_xfer *x);
/* The memory sink's body, or the start of a non-2xx answer's body (the first 4 KiB), with its
 * length in *LEN; NUL-terminated, NULL when there is none. */
const char *fetch_xfer_body(const fetch_xfer *x, size_t *len);
/* Queue X; DONE is called exactly once from the loop (never from inside this call), after
 * which the engine frees X. Returns 0, or a negative errno-style code (X not queued). */
int fetch_submit(fetch_engine *e, fetch_xfer *x, fetch_done_cb done, fetch_progress_cb progress,
                 void *ud);
/* Ask X to stop; its DONE callback comes later with category "canceled" (or its real result
 * when it had already finished). The .part file is kept for a resume. */
void fetch_cancel(fetch_xfer *x);
/* Iterate the final response's headers: returns the offset after the pair, or 0 at the end. */
size_t fetch_header_next(const fetch_xfer *x, size_t off, const char **name, const char **value);
const char *fetch_header(const fetch_xfer *x, const char *name);

#endif

/* fetch_internal.h: the transfer's record and the calls between the engine's own files, for
 * src/fetch*.c only: fetch.c (queue, limits, life cycle), fetch_easy.c (the request as a curl
 * handle) and fetch_body.c (the response: status, sink, checks, commit). */
#ifndef ASSETD_FETCH_INTERNAL_H
#define ASSETD_FETCH_INTERNAL_H

#include "bytebuf.h"
#include "digest.h"
#include "fetch.h"
#include "partfile.h"
#include "ratecap.h"

#include <curl/curl.h>
#include <openssl/evp.h>
#include <uv.h>

/* HELD: stopped by fetch_hold, out of the queue and the slots, its .part still open */
enum fetch_state { FETCH_NEW, FETCH_QUEUED, FETCH_ACTIVE, FETCH_HELD, FETCH_FINISHING, FETCH_DONE };

struct fetch_xfer {
    fetch_request req;
    fetch_result res;
    /* headers of the final response as "name\0value\0" pairs */
    bytebuf hdrs;
    /* memory sink, or the error body of a non-2xx answer */
    bytebuf mem;
    /* the rest is the engine's */
    fetch_engine *engine;
    ratecap *rate;              /* the engine's bandwidth cap */
    CURL *easy;
    uint64_t id;                /* the engine's, for fetch_hold */
    char *host;
    partfile pf;
    int state, status_checked, http_error, paused, cancel_requested, part_complete;
    int blocked;                /* paused until the .part's busy block is written */
    int settle_pending;         /* finished, waiting for that block (or abandoned: freed then) */
    int sys_errno;
    const char *failed_step;    /* "write" or "commit": which part of the commit sys_errno is from */
    char invalid[320];          /* why validation refused the file ("": it did not) */
    int sniff;                  /* no length: the file's own structure must prove it whole */
    char validator[256];        /* of the answer the .part's bytes came from ("": none) */
    int64_t range_from;         /* the byte this request asks from (a resume's or a held one's) */
    int if_range_sent;          /* If-Range is on the header list (once, however many resumes) */
    unsigned char want_sha[DIGEST_SHA256_LEN];  /* what the server's digest header says */
    const char *digest_from;    /* the header it came from, NULL when none */
    int digest_mismatch;
    EVP_MD_CTX *sha;
    double started, last_progress;
    fetch_done_cb done;
    fetch_progress_cb progress;
    void *ud;
    fetch_xfer *next_done;      /* engine lists */
    uv_work_t work;
    char errbuf[CURL_ERROR_SIZE];
    char refused[64];           /* deny_private: the address refused, "" when none */
    int upload_fd;              /* an upload's file, -1 when none */
};

/* fetch_result.c. The first failure is the cause: later ones leave the result as it is. */
void fetch_fail(fetch_xfer *x, const char *category, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A "disk" failure: WHAT (an action) on the request's path, and ERR's text and name. */
void fetch_fail_errno(fetch_xfer *x, const char *what, int err);

/* fetch_easy.c */
/* The host name of URL (malloc'd), NULL when it has none. */
char *fetch_url_host(const char *url);
/* X's curl handle from its request (and, for a resume, Range and If-Range): 0 or -1. */
int fetch_easy_setup(fetch_xfer *x);

/* fetch_upload.c: an upload's request body, read from its file as libcurl asks */
/* Open the file and check the range lies inside it: 0, or -1 with X failed ("disk"). */
int fetch_upload_open(fetch_xfer *x);
size_t fetch_upload_read(char *buf, size_t size, size_t n, void *ud);
int fetch_upload_seek(void *ud, curl_off_t offset, int origin);

/* fetch_body.c: the curl callbacks fetch_easy_setup installs */
size_t fetch_body_header(char *buf, size_t size, size_t n, void *ud);
size_t fetch_body_write(char *p, size_t size, size_t n, void *ud);
/* Open X's .part (X->pf set up by the engine): 0, 1 when its target is there and
 * exists = "skip" makes that the result (fetch_body_skip_work reports it), -1 on a failure. */
int fetch_body_open(fetch_xfer *x);
/* A held transfer about to go on: the next answer is judged afresh, from the bytes it has. */
void fetch_body_again(fetch_xfer *x);
/* Whether X can be stopped now and go on later without losing bytes (a validator for
 * If-Range, or nothing received yet). */
int fetch_body_resumable(const fetch_xfer *x);
/* Call X's progress callback, at most four times a second unless FORCE. */
void fetch_body_progress(fetch_xfer *x, int force);
/* What the ended transfer's answer means for its result (curl's RC, the status, the length,
 * the digest of a memory body). */
void fetch_body_end(fetch_xfer *x, CURLcode rc);
/* On the thread pool (X in w->data): the last block, the checks, fsync and rename; or the
 * result of the file already under the target name. */
void fetch_body_commit_work(uv_work_t *w);
void fetch_body_skip_work(uv_work_t *w);
/* Back on the loop: the result of either work (STATUS is libuv's: nonzero when canceled). */
void fetch_body_committed(fetch_xfer *x, int status);

#endif

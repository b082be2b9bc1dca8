/* fetch_body.c: a transfer's response. What its status means (a resume continued, started
 * over or refused), the body into the .part or memory, the checks of what arrived (length,
 * structure, the server's digest) and, on the thread pool, the commit of the file. */
#include "fetch_internal.h"

#include "clock.h"
#include "formats.h"
#include "httphdr.h"
#include "log.h"
#include "sha256.h"

#include <sys/stat.h>
#include <unistd.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MEMORY_DEFAULT_CAP ((int64_t)16 << 20)
#define ERROR_BODY_CAP 4096
#define ERROR_BODY_SHOWN 300       /* bytes of an error body a message quotes */
/* A transfer to a filesystem with less room than this fails at once as ENOSPC, without a
 * request: while the disk stays full every try would stream bytes only to drop them. */
#define MIN_FREE ((int64_t)64 << 10)
#define HEADERS_CAP (64 << 10)
#define PROGRESS_INTERVAL 0.25

/* A URL for messages: scheme, host and path, never the query (signed URLs carry tokens). */
static void url_for_message(const char *url, char *out, size_t cap) {
    size_t n = strcspn(url, "?#");
    if (n >= cap) n = cap - 1;
    memcpy(out, url, n);
    out[n] = '\0';
}

/* ---- headers --------------------------------------------------------------------------- */

size_t fetch_header_next(const fetch_xfer *x, size_t off, const char **name, const char **value) {
    return httphdr_next(&x->hdrs, off, name, value);
}

const char *fetch_header(const fetch_xfer *x, const char *name) { return httphdr_get(&x->hdrs, name); }

size_t fetch_body_header(char *buf, size_t size, size_t n, void *ud) {
    fetch_xfer *x = ud;
    size_t len = size * n;
    char name[128], value[4096];
    if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        x->hdrs.len = 0;                    /* a new response (redirect, 100-continue) */
        return len;
    }
    if (httphdr_split(buf, len, name, sizeof name, value, sizeof value) == 0 &&
        httphdr_add(&x->hdrs, name, value, HEADERS_CAP) != 0)
        return 0;                           /* absurd header volume: abort */
    return len;
}

/* ---- the .part ------------------------------------------------------------------------- */

/* Throw away what was resumed: the server sent the whole body again, or it cannot be trusted
 * to continue these bytes. */
static int restart_part(fetch_xfer *x) {
    int err = partfile_restart(&x->pf);
    if (err) return err;
    x->res.bytes = 0;
    x->res.resumed_from = 0;
    x->range_from = 0;
    return 0;
}

/* A .part is resumed only with the validator of the answer its bytes came from, sent as
 * If-Range: without one, a changed object's tail would be appended to the old prefix. So
 * without a validator it starts again from 0. */
static int load_validator(fetch_xfer *x) {
    int err = partfile_get_validator(&x->pf, x->validator, sizeof x->validator);
    if (err == 0) return 0;
    x->validator[0] = '\0';
    if (err != ENODATA && err != ENOTSUP && err != ERANGE) {
        fetch_fail_errno(x, "read the validator of", err);
        return -1;
    }
    if ((err = restart_part(x)) != 0) {
        fetch_fail_errno(x, "truncate .part of", err);
        return -1;
    }
    return 0;
}

static int check_room(fetch_xfer *x) {
    int64_t avail;
    if (partfile_free_space(&x->pf, &avail) != 0 || avail >= MIN_FREE) return 0;
    fetch_fail(x, "disk", "no room for %s: %s (ENOSPC), %lld bytes free; not fetched", x->req.path,
               strerror(ENOSPC), (long long)avail);
    return -1;
}

int fetch_body_open(fetch_xfer *x) {
    const char *what;
    int flags = PARTFILE_NEW | (x->req.resume ? PARTFILE_RESUME : 0) | (x->req.direct ? PARTFILE_DIRECT : 0);
    int err = partfile_open(&x->pf, x->req.path, flags, &x->res.resumed_from, &what);
    if (err == EEXIST && !x->req.exists_skip) {
        fetch_fail(x, "exists", "%s exists; not fetched again (exists = \"skip\" returns it as it is)",
                   x->req.path);
        return -1;
    }
    if (err == EEXIST) return 1;
    if (err) {
        fetch_fail_errno(x, what, err);
        return -1;
    }
    if (x->res.resumed_from > 0 && load_validator(x) != 0) return -1;
    if (check_room(x) != 0) return -1;
    x->res.bytes = x->range_from = x->res.resumed_from;
    return 0;
}

void fetch_body_again(fetch_xfer *x) {
    x->range_from = x->res.bytes;
    x->status_checked = 0;
    x->hdrs.len = 0;
    x->errbuf[0] = '\0';
}

int fetch_body_resumable(const fetch_xfer *x) {
    if (x->http_error || x->part_complete || x->res.category || x->pf.fd < 0) return 0;
    return x->res.bytes == 0 || x->validator[0];
}

/* ---- response checks ------------------------------------------------------------------- */

static const char *header_or_empty(const fetch_xfer *x, const char *name) {
    const char *v = fetch_header(x, name);
    return v ? v : "";
}

/* The validator this answer's bytes can be resumed with: a strong ETag, else Last-Modified
 * (If-Range takes no weak ETag). NULL when it has neither (or one too long to keep). */
static const char *answer_validator(const fetch_xfer *x) {
    const char *v = fetch_header(x, "etag");
    if (!v || v[0] != '"') v = fetch_header(x, "last-modified");
    return v && strlen(v) < sizeof x->validator ? v : NULL;
}

/* Kept with the .part before its first byte, so that whatever of the body reaches the disk
 * can be resumed; none recorded (or a filesystem without xattrs) means a later try starts
 * from 0. */
static int record_validator(fetch_xfer *x) {
    int err = partfile_set_validator(&x->pf, answer_validator(x));
    if (err == 0 || err == ENOTSUP) return 0;
    fetch_fail_errno(x, "record the validator of", err);
    return -1;
}

/* A 206 naming another strong ETag than the .part's: a server that ignored If-Range. */
static int validator_changed(const fetch_xfer *x) {
    const char *etag = fetch_header(x, "etag");
    return etag && etag[0] == '"' && x->validator[0] == '"' && strcmp(etag, x->validator) != 0;
}

/* Decide, at the first body byte (or at the end for an empty body), what the answer means. */
static int check_status(fetch_xfer *x) {
    long status = 0;
    curl_off_t clen = -1;
    x->status_checked = 1;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(x->easy, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &clen);
    x->res.status = status;
    int64_t from = x->range_from, total;
    if (status == 416 && from > 0 &&
        httphdr_unsatisfied_range(header_or_empty(x, "content-range"), &total) == 0 && total == from) {
        x->part_complete = 1;              /* a previous attempt got every byte: keep them */
        x->res.total = from;
        return 0;
    }
    if (status < 200 || status >= 300) {
        x->http_error = 1;
        return 0;
    }
    if (x->pf.fd >= 0 && from > 0) {
        int64_t s, e;
        if (status == 200) {
            int err = restart_part(x);
            if (err) { fetch_fail_errno(x, "truncate .part of", err); return -1; }
            from = 0;
        } else if (status != 206 ||
                   httphdr_content_range(header_or_empty(x, "content-range"), &s, &e, &total) != 0 ||
                   s != from || validator_changed(x)) {
            /* a range we did not ask for, or of another object: start over next time rather
             * than splice bytes */
            int err = restart_part(x);
            if (err) fetch_fail_errno(x, "truncate .part of", err);
            fetch_fail(x, "http", "unexpected partial answer (HTTP %ld, Content-Range \"%s\", ETag %s, "
                       "If-Range %s) when resuming at byte %lld; the .part was reset", status,
                       header_or_empty(x, "content-range"), header_or_empty(x, "etag"), x->validator,
                       (long long)from);
            return -1;
        }
    }
    if (x->pf.fd >= 0 && from == 0) {
        if (record_validator(x) != 0) return -1;
        /* kept in memory too: a held transfer goes on with it as If-Range */
        const char *v = answer_validator(x);
        snprintf(x->validator, sizeof x->validator, "%s", v ? v : "");
    }
    /* a HEAD's Content-Length is the object's, whose body it leaves out */
    int head = x->req.method && strcmp(x->req.method, "HEAD") == 0;
    x->res.total = clen >= 0 && !head ? from + clen : -1;
    return 0;
}

/* ---- the body -------------------------------------------------------------------------- */

void fetch_body_progress(fetch_xfer *x, int force) {
    if (!x->progress) return;
    double t = clock_now();
    if (!force && t - x->last_progress < PROGRESS_INTERVAL) return;
    x->last_progress = t;
    x->progress(x, x->ud);
}

size_t fetch_body_write(char *p, size_t size, size_t n, void *ud) {
    fetch_xfer *x = ud;
    size_t len = size * n;
    if (x->cancel_requested) return 0;
    if (!x->status_checked && check_status(x) != 0) return 0;
    if (x->part_complete) return len;
    if (x->http_error) {
        /* keep the start of an error body for the message; drop the rest */
        size_t room = ERROR_BODY_CAP - x->mem.len;
        bytebuf_append(&x->mem, p, len < room ? len : room, ERROR_BODY_CAP);
        return len;
    }
    int64_t cap = x->req.max_bytes > 0 ? x->req.max_bytes : (x->req.to_memory ? MEMORY_DEFAULT_CAP : 0);
    if (cap > 0 && x->res.bytes + (int64_t)len > cap) {
        fetch_fail(x, "http", "response body larger than max_bytes (%lld)", (long long)cap);
        return 0;
    }
    if (x->pf.fd >= 0 && partfile_full(&x->pf, len)) {
        x->blocked = 1;                       /* the disk is behind: wait for its block */
        return CURL_WRITEFUNC_PAUSE;
    }
    if (!ratecap_take(x->rate, len)) {
        x->paused = 1;                    /* the cap's refill (fetch.c) unpauses it */
        return CURL_WRITEFUNC_PAUSE;
    }
    if (x->pf.fd >= 0) {
        int err = partfile_write(&x->pf, p, len);
        if (err) {
            fetch_fail_errno(x, "write .part for", err);
            return 0;
        }
    } else if (bytebuf_append(&x->mem, p, len, (size_t)cap) != 0) {
        fetch_fail(x, "network", "out of memory buffering the response");
        return 0;
    } else {
        EVP_DigestUpdate(x->sha, p, len);     /* a file's blocks are hashed on the thread pool */
    }
    x->res.bytes += (int64_t)len;
    fetch_body_progress(x, 0);
    return len;
}

/* ---- the end of the transfer ----------------------------------------------------------- */

/* The SHA-256 the server vouches for, when it sends one for what is hashed: the whole
 * representation. Repr-Digest (RFC 9530) describes it in a 206 too; Content-Digest and S3's
 * x-amz-checksum-sha256 only a 200's full body. None under a content coding: the digests
 * cover the coded bytes, libcurl hands over decoded ones. */
static void expect_digest(fetch_xfer *x) {
    const char *ce = fetch_header(x, "content-encoding"), *v;
    long st = x->res.status;
    if ((ce && strcasecmp(ce, "identity") != 0) || (st != 200 && st != 206)) return;
    /* a HEAD's digest is of the body it leaves out, an upload's of what was sent: neither is
     * of the bytes received here */
    if (x->req.upload_path || (x->req.method && strcmp(x->req.method, "HEAD") == 0)) return;
    if ((v = fetch_header(x, "repr-digest")) && digest_parse_rfc9530(v, x->want_sha) == 0)
        x->digest_from = "Repr-Digest";
    else if (st != 200) return;
    else if ((v = fetch_header(x, "content-digest")) && digest_parse_rfc9530(v, x->want_sha) == 0)
        x->digest_from = "Content-Digest";
    else if ((v = fetch_header(x, "x-amz-checksum-sha256")) && digest_parse_base64(v, x->want_sha) == 0)
        x->digest_from = "x-amz-checksum-sha256";
}

/* Whether the body hashed to what the server vouched for (when it did). */
static int digest_matches(fetch_xfer *x) {
    char want[2 * DIGEST_SHA256_LEN + 1];
    if (!x->digest_from) return 1;
    digest_hex(x->want_sha, want);
    x->digest_mismatch = strcmp(want, x->res.sha256) != 0;
    return !x->digest_mismatch;
}

static void finish_ok(fetch_xfer *x) {
    if (!x->status_checked && check_status(x) != 0) return;
    if (x->http_error || x->part_complete) return;
    if (x->res.total >= 0 && x->res.bytes != x->res.total) {
        if (!x->res.category) x->res.cause = "short body";
        fetch_fail(x, "network", "short body: got %lld of %lld bytes", (long long)x->res.bytes,
                   (long long)x->res.total);
        return;
    }
    x->sniff = x->res.total < 0;        /* a closed connection is all that ended it */
    expect_digest(x);
}

static void describe_http_error(fetch_xfer *x) {
    char url[512];
    url_for_message(x->req.url, url, sizeof url);
    const char *ra = fetch_header(x, "retry-after");
    if (ra) x->res.retry_after = httphdr_retry_after(ra, clock_now());
    /* redacted before the cut, which falls between characters: see fetch_fail() */
    char body[ERROR_BODY_SHOWN + 1] = "";
    char *red = x->mem.p ? log_redact(x->mem.p) : NULL;
    if (red) log_utf8_copy(body, sizeof body, red);
    free(red);
    fetch_fail(x, "http", "HTTP %ld from %s %s%s%s", x->res.status, x->req.method ? x->req.method : "GET",
               url, body[0] ? ": " : "", body);
}

/* What a failed transfer met, in the words people search logs for. */
static const char *curl_cause(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_HOST: case CURLE_COULDNT_RESOLVE_PROXY: return "dns";
    case CURLE_COULDNT_CONNECT: return "connect";
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_SSL_CONNECT_ERROR: case CURLE_PEER_FAILED_VERIFICATION: case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER: case CURLE_SSL_CACERT_BADFILE: case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH: case CURLE_SSL_INVALIDCERTSTATUS: return "tls";
    case CURLE_RECV_ERROR: case CURLE_SEND_ERROR: case CURLE_GOT_NOTHING: case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2: case CURLE_HTTP2_STREAM: return "reset";
    default: return NULL;
    }
}

void fetch_body_end(fetch_xfer *x, CURLcode rc) {
    long ver = 0;
    curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &ver);
    x->res.http_version = ver == CURL_HTTP_VERSION_2_0 ? "2" : ver == CURL_HTTP_VERSION_3 ? "3"
                        : ver == CURL_HTTP_VERSION_1_0 ? "1.0" : "1.1";
    if (x->cancel_requested) fetch_fail(x, "canceled", "transfer canceled");
    if (rc == CURLE_OK) finish_ok(x);
    if (x->refused[0])
        fetch_fail(x, "config", "refused to connect to %s: a loopback, link-local or private address",
                   x->refused);
    const char *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc);
    int failed_before = x->res.category != NULL;
    if (x->http_error) describe_http_error(x);
    else if (rc == CURLE_OPERATION_TIMEDOUT) fetch_fail(x, "timeout", "%s", why);
    else if (rc != CURLE_OK) fetch_fail(x, "network", "%s", why);
    if (!failed_before && !x->http_error && rc != CURLE_OK) x->res.cause = curl_cause(rc);
    if (!x->res.category && x->pf.fd < 0) {          /* a memory body: hashed on the way */
        sha256_hex(x->sha, x->res.sha256);
        if (!digest_matches(x))
            fetch_fail(x, "integrity", "the body's SHA-256 is %s but the server's %s does not match it",
                       x->res.sha256, x->digest_from);
    }
}

/* ---- the commit ------------------------------------------------------------------------ */

/* The signature the file must prove itself whole by: CHECK's, and for a body that came
 * without a length and a check that names no structure, whichever structure its first bytes
 * announce (a connection that closed early looks like a finished body). */
static formats_sig sig_to_check(const fetch_xfer *x) {
    formats_sig s = x->req.sig;
    if (!x->req.check) memset(&s, 0, sizeof s);
    if (x->sniff && s.structure == FORMATS_NONE) s.structure = FORMATS_SNIFF;
    return s;
}

/* Write the last block, validate, fsync, rename and fsync the directory: on the thread pool,
 * like the hashing and writing of every block before it. */
void fetch_body_commit_work(uv_work_t *w) {
    fetch_xfer *x = w->data;
    x->failed_step = "write";
    /* a write that failed (ENOSPC) keeps what reached the disk, to be resumed */
    if ((x->sys_errno = partfile_finish(&x->pf)) != 0) return;
    sha256_hex(x->sha, x->res.sha256);
    formats_sig s = sig_to_check(x);
    int bad = (x->req.check || !formats_sig_empty(&s)) &&
              formats_check_fd(x->pf.fd, &s, x->req.check ? x->req.expect_size : -1, x->invalid,
                               sizeof x->invalid) != 0;
    if (!bad) bad = !digest_matches(x);     /* after: "truncated" says more than "differs" */
    if (bad) {
        partfile_discard(&x->pf);          /* bad content must not be resumed from */
        return;
    }
    x->failed_step = "commit";
    /* nothing is left behind a failed commit: a taken name stays taken, and after a failed
     * fsync the kernel's copy of the bytes is not to be trusted */
    if ((x->sys_errno = partfile_commit(&x->pf)) != 0) partfile_discard(&x->pf);
}

/* exists_skip: the result of the file already under the name, as it is (no format check: the
 * engine checked it when it committed it, and a file put there by hand is the caller's word). */
void fetch_body_skip_work(uv_work_t *w) {
    fetch_xfer *x = w->data;
    struct stat st;
    int fd;
    x->res.skipped = 1;
    x->failed_step = "read existing file";
    if ((x->sys_errno = partfile_open_target(&x->pf, &fd)) != 0) return;
    if (fstat(fd, &st) != 0) {
        x->sys_errno = errno;
    } else {
        x->res.bytes = st.st_size;
        x->sys_errno = sha256_fd(fd, x->res.sha256);
    }
    close(fd);
}

void fetch_body_committed(fetch_xfer *x, int status) {
    if (x->res.skipped) x->res.elapsed = clock_now() - x->started;
    if (status != 0) fetch_fail(x, "canceled", "canceled before the file was committed");
    else if (x->digest_mismatch) {
        char want[2 * DIGEST_SHA256_LEN + 1];
        digest_hex(x->want_sha, want);
        fetch_fail(x, "integrity", "%s: the body's SHA-256 is %s but the server's %s says %s; the .part "
                   "was discarded", x->req.path, x->res.sha256, x->digest_from, want);
    } else if (x->invalid[0]) fetch_fail(x, "validation", "%s: %s", x->req.path, x->invalid);
    else if (x->sys_errno == EEXIST)
        fetch_fail(x, "disk", "commit %s: a file with that name exists; not replaced (the .part was removed)",
                   x->req.path);
    else if (x->sys_errno) fetch_fail_errno(x, x->failed_step, x->sys_errno);
}

/* fetch.c: the download engine. One libcurl multi handle driven by libuv (a uv_poll per
 * socket, one uv_timer, curl_multi_socket_action: see curluv.c), transfers started in the
 * order admit.c decides, bodies handed to partfile.c, whose blocks are hashed (SHA-256) and
 * written on the thread pool, then fsynced and renamed there too, so neither hashing nor a
 * slow disk stalls the loop. */
#include "fetch.h"

#include "admit.h"
#include "clock.h"
#include "curluv.h"
#include "digest.h"
#include "formats.h"
#include "httphdr.h"
#include "log.h"
#include "partfile.h"
#include "sha256.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <errno.h>
#include <stdarg.h>
#include <math.h>
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

enum xfer_state { X_NEW, X_QUEUED, X_ACTIVE, X_FINISHING, X_DONE };

struct fetch_engine {
    uv_loop_t *loop;
    curluv *cu;                /* the multi handle on the loop */
    uv_idle_t idle;            /* scheduling, deliveries and cancellations outside callbacks */
    uv_timer_t refill;         /* bandwidth cap: unpauses transfers */
    fetch_limits limits;
    admit adm;                 /* queued transfers, and the counts under the limits */
    fetch_xfer *done_head, *done_tail;   /* finished, callback not yet delivered */
    fetch_xfer **live;                   /* active transfers (for cancel and unpause) */
    size_t nlive, live_cap;
    double tokens, tokens_at;
    int closing, kicked;
    unsigned open_handles;     /* E is freed when these and the commits in flight are 0 */
    unsigned committing;
};

static int lane_of(const fetch_xfer *x) { return x->req.to_memory ? ADMIT_CALLS : ADMIT_FILES; }
static void kick(fetch_engine *e);

/* ---- results --------------------------------------------------------------------------- */

/* A URL for messages: scheme, host and path, never the query (signed URLs carry tokens). */
static void url_for_message(const char *url, char *out, size_t cap) {
    size_t n = strcspn(url, "?#");
    if (n >= cap) n = cap - 1;
    memcpy(out, url, n);
    out[n] = '\0';
}

static void fail(fetch_xfer *x, const char *category, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(fetch_xfer *x, const char *category, const char *fmt, ...) {
    if (x->res.category) return;           /* the first failure is the cause */
    char *raw = NULL, *red = NULL;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&raw, fmt, ap);
    va_end(ap);
    /* upstream bodies may quote a key, and URLs may carry user:password: redacted whole, then
     * cut between characters (a cut first could leave half a key that no longer matches) */
    if (n >= 0) red = log_redact(raw);
    log_utf8_copy(x->res.message, sizeof x->res.message, red ? red : "out of memory describing a failure");
    free(raw);
    free(red);
    x->res.category = category;
}

static void fail_errno(fetch_xfer *x, const char *what, int err) {
    const char *name = strerrorname_np(err);
    fail(x, "disk", "%s %s: %s (%s)", what, x->req.path ? x->req.path : "", strerror(err),
         name ? name : "?");
}

/* ---- headers --------------------------------------------------------------------------- */

size_t fetch_header_next(const fetch_xfer *x, size_t off, const char **name, const char **value) {
    return httphdr_next(&x->hdrs, off, name, value);
}

const char *fetch_header(const fetch_xfer *x, const char *name) { return httphdr_get(&x->hdrs, name); }

static size_t on_header(char *buf, size_t size, size_t n, void *ud) {
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

/* ---- sinks ----------------------------------------------------------------------------- */

static void on_block_written(void *ud);

/* Throw away what was resumed: the server sent the whole body again, or it cannot be trusted
 * to continue these bytes. */
static int restart_part(fetch_xfer *x) {
    int err = partfile_restart(&x->pf);
    if (err) return err;
    x->res.bytes = 0;
    x->res.resumed_from = 0;
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
        fail_errno(x, "read the validator of", err);
        return -1;
    }
    if ((err = restart_part(x)) != 0) {
        fail_errno(x, "truncate .part of", err);
        return -1;
    }
    return 0;
}

static int check_room(fetch_xfer *x) {
    int64_t avail;
    if (partfile_free_space(&x->pf, &avail) != 0 || avail >= MIN_FREE) return 0;
    fail(x, "disk", "no room for %s: %s (ENOSPC), %lld bytes free; not fetched", x->req.path,
         strerror(ENOSPC), (long long)avail);
    return -1;
}

static void skip_work(uv_work_t *w);
static void commit_done(uv_work_t *w, int status);

/* The target is there already: an error at once, or with exists_skip its result, hashed on
 * the thread pool. Returns 1 when that work is queued, -1 on a failure. */
static int target_exists(fetch_xfer *x) {
    if (!x->req.exists_skip) {
        fail(x, "exists", "%s exists; not fetched again (exists = \"skip\" returns it as it is)", x->req.path);
        return -1;
    }
    x->work.data = x;
    if (uv_queue_work(x->engine->loop, &x->work, skip_work, commit_done) != 0) {
        fail(x, "disk", "cannot queue the reading of %s", x->req.path);
        return -1;
    }
    x->engine->committing++;
    return 1;
}

/* Open the .part, or find the target there. Returns 0, 1 (target_exists queued) or -1. */
static int open_part(fetch_xfer *x) {
    const char *what;
    x->pf.loop = x->engine->loop;
    x->pf.sha = x->sha;
    x->pf.ready = on_block_written;
    x->pf.ud = x;
    int flags = PARTFILE_NEW | (x->req.resume ? PARTFILE_RESUME : 0) | (x->req.direct ? PARTFILE_DIRECT : 0);
    int err = partfile_open(&x->pf, x->req.path, flags, &x->res.resumed_from, &what);
    if (err == EEXIST) return target_exists(x);
    if (err) {
        fail_errno(x, what, err);
        return -1;
    }
    if (x->res.resumed_from > 0 && load_validator(x) != 0) return -1;
    if (check_room(x) != 0) return -1;
    x->res.bytes = x->res.resumed_from;
    return 0;
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
    fail_errno(x, "record the validator of", err);
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
    int64_t from = x->res.resumed_from, total;
    if (status == 416 && from > 0 &&
        httphdr_unsatisfied_range(header_or_empty(x, "content-range"), &total) == 0 && total == from) {
        x->part_complete = 1;              /* a previous attempt got every byte: keep them */
        x->expect_total = from;
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
            if (err) { fail_errno(x, "truncate .part of", err); return -1; }
            from = 0;
        } else if (status != 206 ||
                   httphdr_content_range(header_or_empty(x, "content-range"), &s, &e, &total) != 0 ||
                   s != from || validator_changed(x)) {
            /* a range we did not ask for, or of another object: start over next time rather
             * than splice bytes */
            int err = restart_part(x);
            if (err) fail_errno(x, "truncate .part of", err);
            fail(x, "http", "unexpected partial answer (HTTP %ld, Content-Range \"%s\", ETag %s, "
                 "If-Range %s) when resuming at byte %lld; the .part was reset", status,
                 header_or_empty(x, "content-range"), header_or_empty(x, "etag"), x->validator,
                 (long long)from);
            return -1;
        }
    }
    if (x->pf.fd >= 0 && from == 0 && record_validator(x) != 0) return -1;
    x->expect_total = clen >= 0 ? from + clen : -1;
    return 0;
}

/* ---- bandwidth cap --------------------------------------------------------------------- */

static void on_refill(uv_timer_t *h);

static int take_tokens(fetch_engine *e, fetch_xfer *x, size_t len) {
    if (e->limits.max_bytes_per_sec <= 0) return 1;
    double t = clock_now(), cap = e->limits.max_bytes_per_sec;
    e->tokens += (t - e->tokens_at) * cap;
    e->tokens_at = t;
    if (e->tokens > cap / 4) e->tokens = cap / 4;     /* burst of a quarter second */
    if (e->tokens <= 0) {
        x->paused = 1;
        if (!uv_is_active((uv_handle_t *)&e->refill))
            uv_timer_start(&e->refill, on_refill, (uint64_t)(-e->tokens / cap * 1000) + 5, 0);
        return 0;
    }
    e->tokens -= (double)len;
    return 1;
}

static void finish(fetch_engine *e, fetch_xfer *x, CURLcode rc);

/* Resume X from a pause. Its write callback may run at once and refuse the data that waited
 * (a failed block, max_bytes); the transfer then ends here, as libcurl would not report it.
 * Returns whether it ended. */
static int unpause(fetch_engine *e, fetch_xfer *x) {
    CURLcode rc = x->res.category ? CURLE_WRITE_ERROR : curluv_unpause(e->cu, x->easy);
    if (rc == CURLE_OK) return 0;
    finish(e, x, rc);
    return 1;
}

static void on_refill(uv_timer_t *h) {
    fetch_engine *e = h->data;
    for (size_t i = 0; i < e->nlive;) {
        fetch_xfer *x = e->live[i];
        if (x->paused) {
            x->paused = 0;
            if (unpause(e, x)) continue;         /* removed from live */
        }
        i++;
    }
    kick(e);
}

/* ---- the write callback ---------------------------------------------------------------- */

static void maybe_progress(fetch_xfer *x, int force) {
    if (!x->progress) return;
    double t = clock_now();
    if (!force && t - x->last_progress < PROGRESS_INTERVAL) return;
    x->last_progress = t;
    x->progress(x, x->ud);
}

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
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
        fail(x, "http", "response body larger than max_bytes (%lld)", (long long)cap);
        return 0;
    }
    if (x->pf.fd >= 0 && partfile_full(&x->pf, len)) {
        x->blocked = 1;                       /* the disk is behind: wait for its block */
        return CURL_WRITEFUNC_PAUSE;
    }
    if (!take_tokens(x->engine, x, len)) return CURL_WRITEFUNC_PAUSE;
    if (x->pf.fd >= 0) {
        int err = partfile_write(&x->pf, p, len);
        if (err) {
            fail_errno(x, "write .part for", err);
            return 0;
        }
    } else if (bytebuf_append(&x->mem, p, len, (size_t)cap) != 0) {
        fail(x, "network", "out of memory buffering the response");
        return 0;
    } else {
        EVP_DigestUpdate(x->sha, p, len);     /* a file's blocks are hashed on the thread pool */
    }
    x->res.bytes += (int64_t)len;
    maybe_progress(x, 0);
    return len;
}

/* ---- starting and finishing transfers -------------------------------------------------- */

static char *url_host(const char *url) {
    CURLU *u = curl_url();
    char *host = NULL, *out = NULL;
    if (u && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK)
        out = strdup(host);
    curl_free(host);
    curl_url_cleanup(u);
    return out;
}

static int live_add(fetch_engine *e, fetch_xfer *x) {
    if (e->nlive == e->live_cap) {
        size_t cap = e->live_cap ? e->live_cap * 2 : 16;
        fetch_xfer **l = realloc(e->live, cap * sizeof *l);
        if (!l) return -1;
        e->live = l;
        e->live_cap = cap;
    }
    e->live[e->nlive++] = x;
    return 0;
}

static void live_remove(fetch_engine *e, fetch_xfer *x) {
    for (size_t i = 0; i < e->nlive; i++)
        if (e->live[i] == x) { e->live[i] = e->live[--e->nlive]; return; }
}

static void deliver(fetch_xfer *x) {
    fetch_engine *e = x->engine;
    x->state = X_DONE;
    x->next_done = NULL;
    if (e->done_tail) e->done_tail->next_done = x;
    else e->done_head = x;
    e->done_tail = x;
    kick(e);
}

static void release_slot(fetch_xfer *x) {
    fetch_engine *e = x->engine;
    admit_ended(&e->adm, lane_of(x), x->host);
    live_remove(e, x);
}

/* Resume only the same object: a server whose object changed answers 200 with all of it. */
static int add_if_range(fetch_xfer *x) {
    char line[sizeof x->validator + 16];
    snprintf(line, sizeof line, "If-Range: %s", x->validator);
    struct curl_slist *l = curl_slist_append(x->req.headers, line);
    if (!l) return -1;
    x->req.headers = l;
    return 0;
}

/* ---- deny_private ---------------------------------------------------------------------- */

static int private_v4(const unsigned char *a) {
    return a[0] == 0 || a[0] == 10 || a[0] == 127 || a[0] >= 224 ||          /* this net, RFC 1918, loopback, multicast, reserved */
           (a[0] == 100 && (a[1] & 0xc0) == 64) ||                         /* shared (CGNAT) 100.64/10 */
           (a[0] == 169 && a[1] == 254) || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
           (a[0] == 192 && a[1] == 168) || (a[0] == 192 && a[1] == 0 && a[2] == 0) ||
           (a[0] == 198 && (a[1] & 0xfe) == 18);
}

int fetch_private_address(int family, const unsigned char *a) {
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const unsigned char nat64[12] = {0, 0x64, 0xff, 0x9b};
    static const unsigned char zero[12];
    if (family == AF_INET) return private_v4(a);
    if (family != AF_INET6) return 1;
    /* an IPv4 address inside an IPv6 one reaches that IPv4 host: judged as it (:: and ::1 too) */
    if (!memcmp(a, mapped, 12) || !memcmp(a, nat64, 12) || !memcmp(a, zero, 12)) return private_v4(a + 12);
    if (a[0] == 0x20 && a[1] == 0x02) return private_v4(a + 2);                      /* 6to4 */
    return (a[0] & 0xfe) == 0xfc || a[0] == 0xff ||                                   /* ULA, multicast */
           (a[0] == 0xfe && (a[1] & 0xc0) == 0x80) || (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0);  /* link-, site-local */
}

/* Records the first refused address, for the error message. */
static int refuse(fetch_xfer *x, int family, const unsigned char *addr) {
    if (!fetch_private_address(family, addr)) return 0;
    if (!x->refused[0]) inet_ntop(family, addr, x->refused, sizeof x->refused);
    return 1;
}

/* Before connecting: a private address is never connected to, whatever the name resolved to
 * (a DNS-rebinding name included), also after a redirect. */
static curl_socket_t open_socket(void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
    fetch_xfer *x = ud;
    const struct sockaddr *sa = &a->addr;
    if (purpose == CURLSOCKTYPE_IPCXN && sa->sa_family == AF_INET &&
        refuse(x, AF_INET, (const unsigned char *)&((const struct sockaddr_in *)sa)->sin_addr))
        return CURL_SOCKET_BAD;
    if (purpose == CURLSOCKTYPE_IPCXN && sa->sa_family == AF_INET6 &&
        refuse(x, AF_INET6, (const unsigned char *)&((const struct sockaddr_in6 *)sa)->sin6_addr))
        return CURL_SOCKET_BAD;
    return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

/* Before each request, on a new or a reused connection (which open_socket never saw: another
 * transfer may have opened it): the address it is actually connected to. */
static int before_request(void *ud, char *ip, char *local_ip, int port, int local_port) {
    fetch_xfer *x = ud;
    unsigned char a[16];
    int family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    (void)local_ip;
    (void)port;
    (void)local_port;
    if (inet_pton(family, ip, a) != 1) {
        snprintf(x->refused, sizeof x->refused, "%s", ip);
        return CURL_PREREQFUNC_ABORT;
    }
    return refuse(x, family, a) ? CURL_PREREQFUNC_ABORT : CURL_PREREQFUNC_OK;
}

static void set_deny_private(CURL *c, fetch_xfer *x) {
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_socket);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, x);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, before_request);
    curl_easy_setopt(c, CURLOPT_PREREQDATA, x);
}

static int setup_easy(fetch_xfer *x) {
    if (x->res.resumed_from > 0 && add_if_range(x) != 0) return -1;
    CURL *c = x->easy = curl_easy_init();
    if (!c) return -1;
    const fetch_request *r = &x->req;
    curl_easy_setopt(c, CURLOPT_URL, r->url);
    curl_easy_setopt(c, CURLOPT_PRIVATE, x);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, x->errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, x);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    /* libcurl hands over at most this much at once, which partfile_write requires */
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, (long)PARTFILE_BLOCK);
    curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "assetd/" ASSETD_VERSION);
    if (r->deny_private) set_deny_private(c, x);
    if (r->headers) curl_easy_setopt(c, CURLOPT_HTTPHEADER, r->headers);
    if (r->method) curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, r->method);
    if (r->method && strcmp(r->method, "HEAD") == 0) curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    if (r->body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->body_len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, r->body);
    }
    if (r->timeout_ms > 0) curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, r->timeout_ms);
    if (r->connect_timeout_ms > 0) curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, r->connect_timeout_ms);
    if (r->low_speed_secs > 0) {
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, r->low_speed_bytes);
        curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, r->low_speed_secs);
    }
    if (x->res.resumed_from > 0) {
        char range[64];
        snprintf(range, sizeof range, "%lld-", (long long)x->res.resumed_from);
        curl_easy_setopt(c, CURLOPT_RANGE, range);
    }
    return 0;
}

static void start(fetch_engine *e, fetch_xfer *x) {
    x->state = X_ACTIVE;
    x->started = clock_now();
    admit_started(&e->adm, lane_of(x), x->host);
    if (live_add(e, x) != 0) { fail(x, "network", "out of memory"); goto failed; }
    if (!x->req.to_memory) {
        int r = open_part(x);
        if (r < 0) goto failed;
        if (r > 0) {                       /* the file is there: skip_work reports it */
            x->state = X_FINISHING;
            release_slot(x);
            return;
        }
    }
    if (setup_easy(x) != 0) { fail(x, "network", "cannot create a curl handle"); goto failed; }
    CURLMcode mc = curluv_add(e->cu, x->easy);
    if (mc != CURLM_OK) { fail(x, "network", "curl_multi_add_handle: %s", curl_multi_strerror(mc)); goto failed; }
    return;
failed:
    release_slot(x);
    deliver(x);
}

/* Start queued transfers while the limits allow (admit.c decides the order). */
static void schedule(fetch_engine *e) {
    void *x;
    int lane;
    while (admit_next(&e->adm, &x, &lane) == 0) start(e, x);
}

/* Write the last block, validate, fsync, rename and fsync the directory: on the thread pool,
 * like the hashing and writing of every block before it. */
/* The format the file must prove itself whole in: CHECK's, and for a body that came without
 * a length whatever its first bytes announce; ANY with nothing to check. */
static formats_format format_to_check(const fetch_xfer *x) {
    formats_format f = x->req.check ? x->req.format : FORMATS_ANY;
    return f == FORMATS_ANY && x->sniff ? FORMATS_SNIFF : f;
}

static int digest_matches(fetch_xfer *x) {
    char want[2 * DIGEST_SHA256_LEN + 1];
    if (!x->digest_from) return 1;
    digest_hex(x->want_sha, want);
    x->digest_mismatch = strcmp(want, x->res.sha256) != 0;
    return !x->digest_mismatch;
}

static void commit_work(uv_work_t *w) {
    fetch_xfer *x = w->data;
    x->failed_step = "write";
    /* a write that failed (ENOSPC) keeps what reached the disk, to be resumed */
    if ((x->sys_errno = partfile_finish(&x->pf)) != 0) return;
    sha256_hex(x->sha, x->res.sha256);
    formats_format f = format_to_check(x);
    int bad = (x->req.check || f != FORMATS_ANY) &&
              formats_check_fd(x->pf.fd, f, x->req.check ? x->req.expect_size : -1, &x->invalid) != 0;
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
static void skip_work(uv_work_t *w) {
    fetch_xfer *x = w->data;
    struct stat st;
    int fd;
    x->res.skipped = 1;
    x->failed_step = "read existing file";
    if ((x->sys_errno = partfile_open_target(&x->pf, &fd)) != 0) return;
    if (fstat(fd, &st) != 0) x->sys_errno = errno;
    else x->sys_errno = sha256_fd(fd, x->res.sha256);
    x->res.bytes = st.st_size;
    close(fd);
}

static void maybe_free_engine(fetch_engine *e) {
    if (e->closing && e->open_handles == 0 && e->committing == 0) free(e);
}

static void commit_done(uv_work_t *w, int status) {
    fetch_xfer *x = w->data;
    fetch_engine *e = x->engine;
    e->committing--;
    if (x->res.skipped) x->res.elapsed = clock_now() - x->started;
    if (status != 0) fail(x, "canceled", "canceled before the file was committed");
    else if (x->digest_mismatch) {
        char want[2 * DIGEST_SHA256_LEN + 1];
        digest_hex(x->want_sha, want);
        fail(x, "integrity", "%s: the body's SHA-256 is %s but the server's %s says %s; the .part "
             "was discarded", x->req.path, x->res.sha256, x->digest_from, want);
    } else if (x->invalid) fail(x, "validation", "%s: %s", x->req.path, x->invalid);
    else if (x->sys_errno == EEXIST)
        fail(x, "disk", "commit %s: a file with that name exists; not replaced (the .part was removed)",
             x->req.path);
    else if (x->sys_errno) fail_errno(x, x->failed_step, x->sys_errno);
    partfile_close(&x->pf);
    if (!e->closing) {
        deliver(x);
        return;
    }
    if (x->done) x->done(x, x->ud);     /* the loop is winding down: report, then free */
    fetch_xfer_free(x);
    maybe_free_engine(e);
}

/* The SHA-256 the server vouches for, when it sends one for what is hashed: the whole
 * representation. Repr-Digest (RFC 9530) describes it in a 206 too; Content-Digest and S3's
 * x-amz-checksum-sha256 only a 200's full body. None under a content coding: the digests
 * cover the coded bytes, libcurl hands over decoded ones. */
static void expect_digest(fetch_xfer *x) {
    const char *ce = fetch_header(x, "content-encoding"), *v;
    long st = x->res.status;
    if ((ce && strcasecmp(ce, "identity") != 0) || (st != 200 && st != 206)) return;
    if ((v = fetch_header(x, "repr-digest")) && digest_parse_rfc9530(v, x->want_sha) == 0)
        x->digest_from = "Repr-Digest";
    else if (st != 200) return;
    else if ((v = fetch_header(x, "content-digest")) && digest_parse_rfc9530(v, x->want_sha) == 0)
        x->digest_from = "Content-Digest";
    else if ((v = fetch_header(x, "x-amz-checksum-sha256")) && digest_parse_base64(v, x->want_sha) == 0)
        x->digest_from = "x-amz-checksum-sha256";
}

static void finish_ok(fetch_xfer *x) {
    if (!x->status_checked && check_status(x) != 0) return;
    if (x->http_error || x->part_complete) return;
    if (x->expect_total >= 0 && x->res.bytes != x->expect_total) {
        fail(x, "network", "short body: got %lld of %lld bytes", (long long)x->res.bytes,
             (long long)x->expect_total);
        return;
    }
    x->sniff = x->expect_total < 0;        /* a closed connection is all that ended it */
    expect_digest(x);
}

static void describe_http_error(fetch_xfer *x) {
    char url[512];
    url_for_message(x->req.url, url, sizeof url);
    const char *ra = fetch_header(x, "retry-after");
    if (ra) x->res.retry_after = httphdr_retry_after(ra, clock_now());
    /* redacted before the cut, which falls between characters: see fail() */
    char body[ERROR_BODY_SHOWN + 1] = "";
    char *red = x->mem.p ? log_redact(x->mem.p) : NULL;
    if (red) log_utf8_copy(body, sizeof body, red);
    free(red);
    fail(x, "http", "HTTP %ld from %s %s%s%s", x->res.status, x->req.method ? x->req.method : "GET",
         url, body[0] ? ": " : "", body);
}

static void settle(fetch_engine *e, fetch_xfer *x);

static void finish(fetch_engine *e, fetch_xfer *x, CURLcode rc) {
    curluv_remove(e->cu, x->easy);
    release_slot(x);
    x->res.elapsed = clock_now() - x->started;
    long ver = 0;
    curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &ver);
    x->res.http_version = ver == CURL_HTTP_VERSION_2_0 ? "2" : ver == CURL_HTTP_VERSION_3 ? "3"
                        : ver == CURL_HTTP_VERSION_1_0 ? "1.0" : "1.1";
    if (x->cancel_requested) fail(x, "canceled", "transfer canceled");
    if (rc == CURLE_OK) finish_ok(x);
    if (x->refused[0])
        fail(x, "config", "refused to connect to %s: a loopback, link-local or private address", x->refused);
    if (x->http_error) describe_http_error(x);
    else if (rc == CURLE_OPERATION_TIMEDOUT) fail(x, "timeout", "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    else if (rc != CURLE_OK) fail(x, "network", "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(rc));
    if (!x->res.category) {
        if (x->pf.fd < 0) {
            sha256_hex(x->sha, x->res.sha256);
            if (!digest_matches(x))
                fail(x, "integrity", "the body's SHA-256 is %s but the server's %s does not match it",
                     x->res.sha256, x->digest_from);
        }
        maybe_progress(x, 1);
    }
    x->state = X_FINISHING;
    if (partfile_busy(&x->pf)) {
        x->settle_pending = 1;            /* on_block_written settles it */
        e->committing++;
        return;
    }
    settle(e, x);
}

/* A finished transfer's file, once no block is being written: commit it, or keep it for a
 * resume, then report. */
static void settle(fetch_engine *e, fetch_xfer *x) {
    if (!x->res.category && x->pf.fd >= 0) {
        x->work.data = x;
        if (uv_queue_work(e->loop, &x->work, commit_work, commit_done) == 0) {
            e->committing++;
            return;
        }
        fail(x, "disk", "cannot queue the commit of %s", x->req.path);
    }
    partfile_close(&x->pf);
    deliver(x);
}

static void abandon(fetch_xfer *x);

static void on_block_written(void *ud) {
    fetch_xfer *x = ud;
    fetch_engine *e = x->engine;
    if (x->settle_pending) {
        x->settle_pending = 0;
        e->committing--;
        if (!e->closing) settle(e, x);
        else abandon(x);
        maybe_free_engine(e);
    } else if (x->blocked && x->easy) {
        x->blocked = 0;
        if (x->pf.err) fail_errno(x, "write .part for", x->pf.err);
        unpause(e, x);
    }
}

/* curluv's report of a finished transfer. */
static void on_curl_done(CURL *easy, CURLcode result, void *ud) {
    fetch_xfer *x = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
    finish(ud, x, result);
}

/* Deferred work: cancellations of running transfers, scheduling, then deliveries. */
static void on_idle(uv_idle_t *h) {
    fetch_engine *e = h->data;
    e->kicked = 0;
    for (size_t i = 0; i < e->nlive;) {
        fetch_xfer *x = e->live[i];
        if (x->cancel_requested && x->state == X_ACTIVE && x->easy) {
            finish(e, x, CURLE_ABORTED_BY_CALLBACK);     /* removes x from live */
            continue;
        }
        i++;
    }
    schedule(e);
    fetch_xfer *d = e->done_head;
    e->done_head = e->done_tail = NULL;
    while (d) {
        fetch_xfer *next = d->next_done;
        if (d->done) d->done(d, d->ud);
        fetch_xfer_free(d);
        d = next;
    }
    if (!e->kicked) uv_idle_stop(h);       /* unless a callback above asked for more */
}

static void kick(fetch_engine *e) {
    if (e->closing) return;
    e->kicked = 1;
    uv_idle_start(&e->idle, on_idle);
}

/* ---- public ---------------------------------------------------------------------------- */

/* The limits, and the caps admit.c applies, which follow from them. */
static void set_limits(fetch_engine *e, const fetch_limits *l) {
    e->limits = *l;
    if (e->limits.max_active == 0) e->limits.max_active = 1;
    e->adm.lane[ADMIT_FILES].max = e->limits.max_active;
    e->adm.per_host = e->limits.per_host;
}

int fetch_engine_new(uv_loop_t *loop, fetch_engine **out) {
    fetch_engine *e = calloc(1, sizeof *e);
    if (!e) return UV_ENOMEM;
    e->loop = loop;
    admit_init(&e->adm);
    set_limits(e, &(fetch_limits){8, 8, 0});
    if (curluv_new(loop, on_curl_done, e, &e->cu) != 0) { free(e); return UV_ENOMEM; }
    uv_idle_init(loop, &e->idle);
    uv_timer_init(loop, &e->refill);
    e->idle.data = e->refill.data = e;
    e->open_handles = 3;
    e->tokens_at = clock_now();
    *out = e;
    return 0;
}

void fetch_set_limits(fetch_engine *e, const fetch_limits *l) {
    set_limits(e, l);
    kick(e);
}

fetch_limits fetch_get_limits(const fetch_engine *e) { return e->limits; }

void fetch_stats(const fetch_engine *e, unsigned *active, unsigned *queued) {
    admit_stats(&e->adm, active, queued);
}

fetch_xfer *fetch_xfer_new(void) {
    fetch_xfer *x = calloc(1, sizeof *x);
    if (!x) return NULL;
    partfile_init(&x->pf);
    x->req.expect_size = -1;
    x->req.deadline = INFINITY;
    x->res.retry_after = -1;
    return x;
}

void fetch_xfer_free(fetch_xfer *x) {
    if (!x) return;
    partfile_close(&x->pf);
    if (x->easy) curl_easy_cleanup(x->easy);
    EVP_MD_CTX_free(x->sha);
    curl_slist_free_all(x->req.headers);
    free(x->req.url);
    free(x->req.method);
    free(x->req.path);
    free(x->req.body);
    bytebuf_free(&x->hdrs);
    bytebuf_free(&x->mem);
    free(x->host);
    free(x);
}

int fetch_submit(fetch_engine *e, fetch_xfer *x, fetch_done_cb done, fetch_progress_cb progress, void *ud) {
    if (e->closing) return UV_ECANCELED;
    if (!x->req.url || (!x->req.to_memory && !x->req.path)) return UV_EINVAL;
    x->host = url_host(x->req.url);
    if (!x->host) return UV_EINVAL;
    x->sha = EVP_MD_CTX_new();
    if (!x->sha || EVP_DigestInit_ex(x->sha, EVP_sha256(), NULL) != 1) return UV_ENOMEM;
    x->engine = e;
    x->done = done;
    x->progress = progress;
    x->ud = ud;
    if (admit_push(&e->adm, lane_of(x), x->host, x->req.deadline, x) != 0) return UV_ENOMEM;
    x->state = X_QUEUED;
    kick(e);
    return 0;
}

void fetch_cancel(fetch_xfer *x) {
    if (x->cancel_requested || x->state == X_DONE) return;
    x->cancel_requested = 1;
    if (x->state == X_QUEUED) {
        admit_remove(&x->engine->adm, lane_of(x), x->host, x);
        fail(x, "canceled", "transfer canceled before it started");
        deliver(x);
        return;
    }
    kick(x->engine);         /* an active one is removed from the idle callback */
}

static void closed(void *ud) {
    fetch_engine *e = ud;
    e->open_handles--;
    maybe_free_engine(e);
}

static void handle_closed(uv_handle_t *h) { closed(h->data); }

static void close_handle(uv_handle_t *h) {
    if (!uv_is_closing(h)) uv_close(h, handle_closed);
}

/* At shutdown every transfer still gets its one callback, so its owner can release what it
 * holds; the callback sees "canceled" unless the transfer had already finished. */
static void abandon(fetch_xfer *x) {
    if (x->state != X_DONE) fail(x, "canceled", "the daemon is stopping");
    partfile_close(&x->pf);
    if (x->done) x->done(x, x->ud);
    fetch_xfer_free(x);
}

void fetch_engine_close(fetch_engine *e) {
    if (!e) return;
    e->closing = 1;
    for (size_t i = 0; i < e->nlive; i++) {
        fetch_xfer *x = e->live[i];
        if (x->easy) curluv_remove(e->cu, x->easy);
        if (!partfile_busy(&x->pf)) {
            abandon(x);
            continue;
        }
        x->settle_pending = 1;                /* abandoned by on_block_written */
        e->committing++;
    }
    e->nlive = 0;
    void *queued;
    while (admit_drain(&e->adm, &queued) == 0) abandon(queued);
    for (fetch_xfer *d = e->done_head, *n; d; d = n) { n = d->next_done; abandon(d); }
    e->done_head = e->done_tail = NULL;
    curluv_close(e->cu, closed, e);        /* counted like the engine's own handles */
    admit_free(&e->adm);
    free(e->live);
    close_handle((uv_handle_t *)&e->idle);
    close_handle((uv_handle_t *)&e->refill);
    /* E is freed by the last close callback (or the last commit in flight) */
}

/* fetch.c: the download engine's life cycle. Transfers are queued and started in the order
 * admit.c decides, under the limits and the bandwidth cap, on one libcurl multi handle that
 * curluv.c drives on the loop; each finished one is settled (its file committed on the thread
 * pool by fetch_body.c) and delivered from an idle callback, never from inside libcurl. */
#include "fetch_internal.h"

#include "admit.h"
#include "clock.h"
#include "curluv.h"

#include <openssl/crypto.h>
#include <unistd.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fetch_engine {
    uv_loop_t *loop;
    curluv *cu;                /* the multi handle on the loop */
    uv_idle_t idle;            /* scheduling, deliveries and cancellations outside callbacks */
    ratecap rate;              /* the bandwidth cap; its timer unpauses transfers */
    fetch_limits limits;
    admit adm;                 /* queued transfers, and the counts under the limits */
    fetch_xfer *done_head, *done_tail;   /* finished, callback not yet delivered */
    fetch_xfer **live;                   /* active transfers (for cancel and unpause) */
    size_t nlive, live_cap;
    int closing, kicked;
    unsigned open_handles;     /* E is freed when these and the commits in flight are 0 */
    unsigned committing;
    uint64_t next_id;          /* fetch_xfer.id */
};

static int lane_of(const fetch_xfer *x) {
    return x->req.upload_path ? ADMIT_UPLOADS : x->req.to_memory ? ADMIT_CALLS : ADMIT_FILES;
}
static void kick(fetch_engine *e);

/* The key admit.c orders by: the deadline, or with order = "fifo" none (arrival order). */
static double order_key(const fetch_engine *e, const fetch_xfer *x) {
    return e->limits.fifo ? 0 : x->req.deadline;
}

static void on_refill(uv_timer_t *h);

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

/* ---- starting and finishing transfers -------------------------------------------------- */

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
    x->state = FETCH_DONE;
    x->next_done = NULL;
    if (e->done_tail) e->done_tail->next_done = x;
    else e->done_head = x;
    e->done_tail = x;
    kick(e);
}

static void release_slot(fetch_xfer *x) {
    fetch_engine *e = x->engine;
    if (x->state != FETCH_HELD) admit_ended(&e->adm, lane_of(x), x->host);   /* a held one gave it back */
    live_remove(e, x);
}

static void on_block_written(void *ud);
static void commit_done(uv_work_t *w, int status);

/* Open X's .part, or with exists = "skip" queue the reading of the file already under its
 * name. Returns 0 (go on with the request), 1 (the reading is queued) or -1 (failed). */
static int open_sink(fetch_engine *e, fetch_xfer *x) {
    x->pf.loop = e->loop;
    x->pf.sha = x->sha;
    x->pf.ready = on_block_written;
    x->pf.ud = x;
    int r = fetch_body_open(x);
    if (r <= 0) return r;
    x->work.data = x;
    if (uv_queue_work(e->loop, &x->work, fetch_body_skip_work, commit_done) != 0) {
        fetch_fail(x, "disk", "cannot queue the reading of %s", x->req.path);
        return -1;
    }
    e->committing++;
    return 1;
}

static void finish(fetch_engine *e, fetch_xfer *x, CURLcode rc);

/* A held transfer's turn again: a new request from the bytes it has, into the same .part. A
 * failure ends it through finish(), as a block of its may still be on the thread pool. */
static void go_on(fetch_engine *e, fetch_xfer *x) {
    fetch_body_again(x);
    if (fetch_easy_setup(x) != 0) fetch_fail(x, "network", "cannot create a curl handle");
    CURLMcode mc = x->res.category ? CURLM_OK : curluv_add(e->cu, x->easy);
    if (mc != CURLM_OK) fetch_fail(x, "network", "curl_multi_add_handle: %s", curl_multi_strerror(mc));
    if (x->res.category) finish(e, x, CURLE_FAILED_INIT);
}

static void start(fetch_engine *e, fetch_xfer *x) {
    int again = x->easy != NULL;          /* held before, with its .part open */
    x->state = FETCH_ACTIVE;
    admit_started(&e->adm, lane_of(x), x->host);
    if (live_add(e, x) != 0) { fetch_fail(x, "network", "out of memory"); goto failed; }
    if (again) { go_on(e, x); return; }
    x->started = clock_now();
    if (x->req.upload_path && fetch_upload_open(x) != 0) goto failed;
    if (!x->req.to_memory) {
        int r = open_sink(e, x);
        if (r < 0) goto failed;
        if (r > 0) {                       /* the file is there: fetch_body_skip_work reports it */
            x->state = FETCH_FINISHING;
            release_slot(x);
            return;
        }
    }
    if (fetch_easy_setup(x) != 0) { fetch_fail(x, "network", "cannot create a curl handle"); goto failed; }
    CURLMcode mc = curluv_add(e->cu, x->easy);
    if (mc != CURLM_OK) {
        fetch_fail(x, "network", "curl_multi_add_handle: %s", curl_multi_strerror(mc));
        goto failed;
    }
    return;
failed:
    if (again) { finish(e, x, CURLE_FAILED_INIT); return; }
    release_slot(x);
    deliver(x);
}

/* Start queued transfers while the limits allow (admit.c decides the order). */
static void schedule(fetch_engine *e) {
    void *x;
    int lane;
    while (admit_next(&e->adm, &x, &lane) == 0) start(e, x);
}

static void maybe_free_engine(fetch_engine *e) {
    if (e->closing && e->open_handles == 0 && e->committing == 0) free(e);
}

static void commit_done(uv_work_t *w, int status) {
    fetch_xfer *x = w->data;
    fetch_engine *e = x->engine;
    e->committing--;
    fetch_body_committed(x, status);
    partfile_close(&x->pf);
    if (!e->closing) {
        deliver(x);
        return;
    }
    if (x->done) x->done(x, x->ud);     /* the loop is winding down: report, then free */
    fetch_xfer_free(x);
    maybe_free_engine(e);
}

static void settle(fetch_engine *e, fetch_xfer *x);

static void finish(fetch_engine *e, fetch_xfer *x, CURLcode rc) {
    curluv_remove(e->cu, x->easy);
    release_slot(x);
    x->res.elapsed = clock_now() - x->started;
    fetch_body_end(x, rc);
    if (!x->res.category) fetch_body_progress(x, 1);
    x->state = FETCH_FINISHING;
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
        if (uv_queue_work(e->loop, &x->work, fetch_body_commit_work, commit_done) == 0) {
            e->committing++;
            return;
        }
        fetch_fail(x, "disk", "cannot queue the commit of %s", x->req.path);
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
    } else if (x->blocked && x->state == FETCH_ACTIVE) {
        x->blocked = 0;
        if (x->pf.err) fetch_fail_errno(x, "write .part for", x->pf.err);
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
        if (x->cancel_requested && (x->state == FETCH_ACTIVE || x->state == FETCH_HELD) && x->easy) {
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
    ratecap_set(&e->rate, (double)l->max_bytes_per_sec);
    if (e->limits.max_active == 0) e->limits.max_active = 1;
    if (e->limits.max_uploads == 0) e->limits.max_uploads = 1;
    e->adm.lane[ADMIT_FILES].max = e->limits.max_active;
    e->adm.lane[ADMIT_UPLOADS].max = e->limits.max_uploads;
    e->adm.per_host = e->limits.per_host;
}

/* ---- holding: the mechanism of preemptive scheduling (lua/assetd/preempt.lua decides) ---- */

static fetch_xfer *live_by_id(const fetch_engine *e, uint64_t id) {
    for (size_t i = 0; i < e->nlive; i++)
        if (e->live[i]->id == id) return e->live[i];
    return NULL;
}

typedef struct find_ctx { uint64_t id; fetch_xfer *found; } find_ctx;

static void find_queued(void *item, void *ud) {
    find_ctx *f = ud;
    if (((fetch_xfer *)item)->id == f->id) f->found = item;
}

static fetch_xfer *download_by_id(fetch_engine *e, uint64_t id) {
    fetch_xfer *x = live_by_id(e, id);
    if (x) return lane_of(x) == ADMIT_FILES ? x : NULL;
    find_ctx f = {id, NULL};
    admit_each(&e->adm, ADMIT_FILES, find_queued, &f);
    return f.found;
}

static int holdable(const fetch_xfer *x) {
    if (x->cancel_requested) return 0;
    if (x->state == FETCH_QUEUED || x->state == FETCH_HELD) return 1;
    return x->state == FETCH_ACTIVE && fetch_body_resumable(x);
}

/* Out of the queue or off the multi handle, its slot given back; kept in live for cancel and
 * shutdown. What libcurl had buffered is dropped: the next request asks from res.bytes. */
static int hold(fetch_engine *e, fetch_xfer *x) {
    if (x->state == FETCH_QUEUED) {
        if (live_add(e, x) != 0) return -1;
        admit_remove(&e->adm, ADMIT_FILES, x->host, x);
    } else {
        curluv_remove(e->cu, x->easy);
        admit_ended(&e->adm, ADMIT_FILES, x->host);
        x->paused = x->blocked = 0;
    }
    x->state = FETCH_HELD;
    kick(e);                               /* its slot may start another */
    return 0;
}

static int release(fetch_engine *e, fetch_xfer *x) {
    if (admit_push(&e->adm, ADMIT_FILES, x->host, order_key(e, x), x) != 0) return -1;
    live_remove(e, x);                     /* start() adds it again */
    x->state = FETCH_QUEUED;
    kick(e);
    return 0;
}

int fetch_hold(fetch_engine *e, uint64_t id, int on) {
    fetch_xfer *x = download_by_id(e, id);
    if (!x || !holdable(x)) return -1;
    if (on) return x->state == FETCH_HELD ? 0 : hold(e, x);
    return x->state == FETCH_HELD ? release(e, x) : 0;
}

typedef struct each_ctx {
    void (*fn)(const fetch_info *i, void *ud);
    void *ud;
} each_ctx;

static void report(const fetch_xfer *x, const each_ctx *c) {
    static const char *names[] = {[FETCH_QUEUED] = "queued", [FETCH_ACTIVE] = "active", [FETCH_HELD] = "held"};
    fetch_info i = {x->id, names[x->state], x->req.deadline, x->res.bytes, x->res.total, holdable(x), x->req.tag};
    c->fn(&i, c->ud);
}

static void report_queued(void *item, void *ud) { report(item, ud); }

void fetch_each_download(fetch_engine *e, void (*fn)(const fetch_info *i, void *ud), void *ud) {
    each_ctx c = {fn, ud};
    for (size_t i = 0; i < e->nlive; i++) {
        const fetch_xfer *x = e->live[i];
        if (lane_of(x) == ADMIT_FILES && (x->state == FETCH_ACTIVE || x->state == FETCH_HELD)) report(x, &c);
    }
    admit_each(&e->adm, ADMIT_FILES, report_queued, &c);
}

int fetch_engine_new(uv_loop_t *loop, fetch_engine **out) {
    fetch_engine *e = calloc(1, sizeof *e);
    if (!e) return UV_ENOMEM;
    e->loop = loop;
    admit_init(&e->adm);
    set_limits(e, &(fetch_limits){8, 8, 0, 4, 0});
    if (curluv_new(loop, on_curl_done, e, &e->cu) != 0) { free(e); return UV_ENOMEM; }
    uv_idle_init(loop, &e->idle);
    ratecap_init(&e->rate, loop, on_refill, e);
    e->idle.data = e;
    e->open_handles = 3;
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
    x->upload_fd = -1;
    x->req.expect_size = -1;
    x->req.deadline = INFINITY;
    x->res.retry_after = -1;
    x->res.total = -1;
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
    free(x->req.upload_path);
    free(x->req.aws_sigv4);
    free(x->req.aws_key);
    if (x->req.aws_secret) OPENSSL_cleanse(x->req.aws_secret, strlen(x->req.aws_secret));
    free(x->req.aws_secret);
    if (x->upload_fd >= 0) close(x->upload_fd);
    bytebuf_free(&x->hdrs);
    bytebuf_free(&x->mem);
    free(x->host);
    free(x);
}

int fetch_submit(fetch_engine *e, fetch_xfer *x, fetch_done_cb done, fetch_progress_cb progress, void *ud) {
    if (e->closing) return UV_ECANCELED;
    if (!x->req.url || (!x->req.to_memory && !x->req.path)) return UV_EINVAL;
    x->host = fetch_url_host(x->req.url);
    if (!x->host) return UV_EINVAL;
    x->sha = EVP_MD_CTX_new();
    if (!x->sha || EVP_DigestInit_ex(x->sha, EVP_sha256(), NULL) != 1) return UV_ENOMEM;
    x->engine = e;
    x->rate = &e->rate;
    x->done = done;
    x->progress = progress;
    x->ud = ud;
    x->id = ++e->next_id;
    if (admit_push(&e->adm, lane_of(x), x->host, order_key(e, x), x) != 0) return UV_ENOMEM;
    x->state = FETCH_QUEUED;
    kick(e);
    return 0;
}

fetch_request *fetch_xfer_request(fetch_xfer *x) { return &x->req; }

const fetch_result *fetch_xfer_result(const fetch_xfer *x) { return &x->res; }

const char *fetch_xfer_body(const fetch_xfer *x, size_t *len) {
    *len = x->mem.len;
    return x->mem.p;
}

void fetch_cancel(fetch_xfer *x) {
    if (x->cancel_requested || x->state == FETCH_DONE) return;
    x->cancel_requested = 1;
    /* held before it ever started: nothing is open, as for a queued one */
    int unstarted = x->state == FETCH_QUEUED || (x->state == FETCH_HELD && !x->easy);
    if (unstarted) {
        if (x->state == FETCH_QUEUED) admit_remove(&x->engine->adm, lane_of(x), x->host, x);
        else live_remove(x->engine, x);
        fetch_fail(x, "canceled", "transfer canceled before it started");
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
    if (x->state != FETCH_DONE) fetch_fail(x, "canceled", "the daemon is stopping");
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
    close_handle((uv_handle_t *)&e->rate.timer);
    /* E is freed by the last close callback (or the last commit in flight) */
}

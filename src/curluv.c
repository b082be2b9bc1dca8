/* curluv.c: the libcurl + libuv bridge. Follows curl's multi-uv example, without its
 * shortcuts: every CURLMcode and uv_* return is checked, poll errors are passed on as
 * CURL_CSELECT_ERR, and completions are drained after every action, whether or not other
 * transfers still run. */
#include "curluv.h"

#include "log.h"

#include <stdlib.h>

struct curluv {
    uv_loop_t *loop;
    CURLM *multi;                /* NULL once closing */
    uv_timer_t timer;            /* libcurl's timeout */
    curluv_done_cb done;
    void *ud;
    void (*closed)(void *ud);
    void *closed_ud;
};

typedef struct poll_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    curluv *c;
} poll_ctx;

/* Every finished transfer, to the owner. What a message points to is gone once its handle is
 * removed, which the callback may do: it is read first. */
static void drain(curluv *c) {
    CURLMsg *m;
    int left;
    while (c->multi && (m = curl_multi_info_read(c->multi, &left)) != NULL) {
        if (m->msg != CURLMSG_DONE) continue;
        CURL *easy = m->easy_handle;
        CURLcode result = m->data.result;
        c->done(easy, result, c->ud);
    }
}

static void socket_action(curluv *c, curl_socket_t fd, int flags) {
    int running;
    CURLMcode mc = curl_multi_socket_action(c->multi, fd, flags, &running);
    if (mc != CURLM_OK)
        log_event(LOG_ERROR, "curl_multi_socket_action failed", "error", curl_multi_strerror(mc), NULL);
    drain(c);
}

static void on_poll(uv_poll_t *h, int status, int events) {
    poll_ctx *p = h->data;
    int flags = status < 0 ? CURL_CSELECT_ERR : 0;
    if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
    socket_action(p->c, p->fd, flags);
}

static void on_timeout(uv_timer_t *h) {
    socket_action(h->data, CURL_SOCKET_TIMEOUT, 0);
}

static void free_poll(uv_handle_t *h) { free(h->data); }

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
    curluv *c = userp;
    poll_ctx *p = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (p) {
            uv_poll_stop(&p->poll);
            uv_close((uv_handle_t *)&p->poll, free_poll);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    if (!p) {
        p = calloc(1, sizeof *p);
        if (!p) return -1;
        if (uv_poll_init_socket(c->loop, &p->poll, s) != 0) { free(p); return -1; }
        p->fd = s;
        p->c = c;
        p->poll.data = p;
        curl_multi_assign(c->multi, s, p);
    }
    int events = ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
    return uv_poll_start(&p->poll, events, on_poll) == 0 ? 0 : -1;
}

CURLcode curluv_unpause(curluv *c, CURL *easy) {
    CURLcode rc = curl_easy_pause(easy, CURLPAUSE_CONT);
    uv_timer_start(&c->timer, on_timeout, 0, 0);
    return rc;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
    curluv *c = userp;
    if (timeout_ms < 0) return uv_timer_stop(&c->timer) == 0 ? 0 : -1;
    /* 0 means "as soon as possible": never call socket_action from inside this callback */
    return uv_timer_start(&c->timer, on_timeout, timeout_ms ? (uint64_t)timeout_ms : 1, 0) == 0 ? 0 : -1;
}

int curluv_new(uv_loop_t *loop, curluv_done_cb done, void *ud, curluv **out) {
    curluv *c = calloc(1, sizeof *c);
    if (!c) return UV_ENOMEM;
    c->loop = loop;
    c->done = done;
    c->ud = ud;
    c->multi = curl_multi_init();
    if (!c->multi) { free(c); return UV_ENOMEM; }
    if (curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer) != CURLM_OK ||
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) != CURLM_OK) {
        curl_multi_cleanup(c->multi);
        free(c);
        return UV_EINVAL;
    }
    int err = uv_timer_init(loop, &c->timer);
    if (err) { curl_multi_cleanup(c->multi); free(c); return err; }
    c->timer.data = c;
    *out = c;
    return 0;
}

CURLMcode curluv_add(curluv *c, CURL *easy) { return curl_multi_add_handle(c->multi, easy); }

void curluv_remove(curluv *c, CURL *easy) {
    CURLMcode mc = curl_multi_remove_handle(c->multi, easy);
    if (mc != CURLM_OK)
        log_event(LOG_ERROR, "curl_multi_remove_handle failed", "error", curl_multi_strerror(mc), NULL);
}

static void timer_closed(uv_handle_t *h) {
    curluv *c = h->data;
    void (*closed)(void *) = c->closed;
    void *ud = c->closed_ud;
    free(c);
    if (closed) closed(ud);
}

void curluv_close(curluv *c, void (*closed)(void *ud), void *ud) {
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    c->closed = closed;
    c->closed_ud = ud;
    uv_close((uv_handle_t *)&c->timer, timer_closed);
}

/* curluv.h: libcurl's multi interface driven by a libuv loop, as curl documents it: a
 * uv_poll per socket, one uv_timer, curl_multi_socket_action on readiness, and a callback
 * after every action so the owner can drain completed transfers. */
#ifndef ASSETD_CURLUV_H
#define ASSETD_CURLUV_H

#include <curl/curl.h>
#include <uv.h>

typedef struct curluv {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;            /* libcurl's timeout; closed by the owner */
    void (*after_action)(void *ud);
    void *ud;
} curluv;

int curluv_init(curluv *c, uv_loop_t *loop, void (*after_action)(void *ud), void *ud);
/* Resume a transfer paused from its write callback. libcurl 7.88 does not always ask for a
 * timeout after curl_easy_pause, and with no other socket busy nothing would run it again.
 * Returns what curl_easy_pause returns: an error when the write callback refused the data. */
CURLcode curluv_unpause(curluv *c, CURL *easy);
/* Release the multi handle (its sockets' polls close themselves); the timer stays for the
 * owner to uv_close. */
void curluv_cleanup(curluv *c);

#endif

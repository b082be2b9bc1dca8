/* curluv.h: libcurl's multi interface driven by a libuv loop, as curl documents it: a
 * uv_poll per socket, one uv_timer, curl_multi_socket_action on readiness, and every finished
 * transfer drained after each action and handed to the owner's callback. The multi handle is
 * curluv's own: transfers come and go through curluv_add and curluv_remove. */
#ifndef ASSETD_CURLUV_H
#define ASSETD_CURLUV_H

#include <curl/curl.h>
#include <uv.h>

typedef struct curluv curluv;

/* EASY finished with RESULT. Called from the loop after the action that finished it, never
 * from inside a libcurl call; it may remove EASY and add or remove others. */
typedef void (*curluv_done_cb)(CURL *easy, CURLcode result, void *ud);

int curluv_new(uv_loop_t *loop, curluv_done_cb done, void *ud, curluv **out);
CURLMcode curluv_add(curluv *c, CURL *easy);
/* Take EASY off the multi handle (finished or not); it is never reported after this. */
void curluv_remove(curluv *c, CURL *easy);
/* Resume a transfer paused from its write callback. libcurl 7.88 does not always ask for a
 * timeout after curl_easy_pause, and with no other socket busy nothing would run it again.
 * Returns what curl_easy_pause returns: an error when the write callback refused the data. */
CURLcode curluv_unpause(curluv *c, CURL *easy);
/* Release the multi handle (its sockets' polls close themselves; transfers still on it are
 * dropped unreported), then close the timer. C is freed once that is closed, and CLOSED(UD)
 * is called from the loop then, so the owner can count it among its own handles. */
void curluv_close(curluv *c, void (*closed)(void *ud), void *ud);

#endif

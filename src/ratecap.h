/* ratecap.h: the engine's bandwidth cap, a token bucket over all transfers with a burst of a
 * quarter second. Its timer calls REFILL (given at init) when paused transfers may go on. */
#ifndef ASSETD_RATECAP_H
#define ASSETD_RATECAP_H

#include <stddef.h>
#include <uv.h>

typedef struct ratecap {
    double per_sec;            /* 0: no cap */
    double tokens, at;
    uv_timer_t timer;          /* its data is the init's DATA */
    uv_timer_cb refill;
} ratecap;

void ratecap_init(ratecap *r, uv_loop_t *loop, uv_timer_cb refill, void *data);
void ratecap_set(ratecap *r, double per_sec);
/* 1: take LEN bytes now; 0: pause until the refill callback (its timer is started). */
int ratecap_take(ratecap *r, size_t len);

#endif

/* ratecap.c: the bandwidth cap (limits.max_bytes_per_sec) as a token bucket. Transfers ask it
 * before taking bytes (fetch_body.c) and pause when it says no; its one timer tells the
 * engine (fetch.c) when to unpause them. */
#include "ratecap.h"

#include "clock.h"

#include <stdint.h>

void ratecap_init(ratecap *r, uv_loop_t *loop, uv_timer_cb refill, void *data) {
    r->per_sec = r->tokens = 0;
    r->at = clock_now();
    r->refill = refill;
    uv_timer_init(loop, &r->timer);
    r->timer.data = data;
}

void ratecap_set(ratecap *r, double per_sec) { r->per_sec = per_sec > 0 ? per_sec : 0; }

int ratecap_take(ratecap *r, size_t len) {
    if (r->per_sec <= 0) return 1;
    double t = clock_now();
    r->tokens += (t - r->at) * r->per_sec;
    r->at = t;
    if (r->tokens > r->per_sec / 4) r->tokens = r->per_sec / 4;     /* burst of a quarter second */
    if (r->tokens <= 0) {
        if (!uv_is_active((uv_handle_t *)&r->timer))
            uv_timer_start(&r->timer, r->refill, (uint64_t)(-r->tokens / r->per_sec * 1000) + 5, 0);
        return 0;
    }
    r->tokens -= (double)len;
    return 1;
}

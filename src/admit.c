/* admit.c: the start order of transfers. File downloads and calls answered into memory wait
 * in separate lanes, so a Notion PATCH or a status poll never queues behind a batch of
 * videos; within a lane the earliest deadline goes first; a host at its cap is skipped
 * without losing its place. */
#include "admit.h"

#include <stdlib.h>
#include <string.h>

void admit_init(admit *a) {
    memset(a, 0, sizeof *a);
    for (int i = 0; i < ADMIT_LANES; i++) deadline_queue_init(&a->lane[i].queue);
}

void admit_free(admit *a) {
    for (int i = 0; i < ADMIT_LANES; i++) deadline_queue_free(&a->lane[i].queue);
    for (size_t i = 0; i < a->nhosts; i++) free(a->hosts[i].name);
    free(a->hosts);
    a->hosts = NULL;
    a->nhosts = 0;
}

static admit_host *host(admit *a, const char *name, int create) {
    for (size_t i = 0; i < a->nhosts; i++)
        if (strcmp(a->hosts[i].name, name) == 0) return &a->hosts[i];
    if (!create) return NULL;
    admit_host *h = realloc(a->hosts, (a->nhosts + 1) * sizeof *h);
    if (!h) return NULL;
    a->hosts = h;
    h = &a->hosts[a->nhosts];
    if (!(h->name = strdup(name))) return NULL;
    h->n = 0;
    a->nhosts++;
    return h;
}

static int host_has_room(admit *a, const char *name) {
    admit_host *h = host(a, name, 0);
    return !h || a->per_host == 0 || h->n < a->per_host;
}

int admit_push(admit *a, int lane, double deadline, void *item) {
    return deadline_queue_push(&a->lane[lane].queue, deadline, item);
}

int admit_remove(admit *a, int lane, void *item) {
    return deadline_queue_remove(&a->lane[lane].queue, item);
}

static int next_in(admit *a, int lane, const char *(*host_of)(void *), void **item) {
    deadline_item held[64], it;
    size_t nheld = 0;
    int found = -1;
    unsigned max = a->lane[lane].max;
    if (max && a->lane[lane].active >= max) return -1;
    while (nheld < sizeof held / sizeof held[0] && deadline_queue_pop(&a->lane[lane].queue, &it) == 0) {
        if (host_has_room(a, host_of(it.data))) {
            *item = it.data;
            found = 0;
            break;
        }
        held[nheld++] = it;
    }
    for (size_t i = 0; i < nheld; i++) deadline_queue_restore(&a->lane[lane].queue, &held[i]);
    return found;
}

int admit_next(admit *a, const char *(*host_of)(void *), void **item, int *lane) {
    for (int l = ADMIT_LANES - 1; l >= 0; l--) {      /* calls first */
        if (next_in(a, l, host_of, item) == 0) {
            *lane = l;
            return 0;
        }
    }
    return -1;
}

int admit_drain(admit *a, void **item) {
    deadline_item it;
    for (int l = 0; l < ADMIT_LANES; l++) {
        if (deadline_queue_pop(&a->lane[l].queue, &it) == 0) {
            *item = it.data;
            return 0;
        }
    }
    return -1;
}

void admit_started(admit *a, int lane, const char *name) {
    a->lane[lane].active++;
    admit_host *h = host(a, name, 1);
    if (h) h->n++;
}

void admit_ended(admit *a, int lane, const char *name) {
    admit_host *h = name ? host(a, name, 0) : NULL;
    if (h && h->n) h->n--;
    if (a->lane[lane].active) a->lane[lane].active--;
}

void admit_stats(const admit *a, unsigned *active, unsigned *queued) {
    *active = *queued = 0;
    for (int l = 0; l < ADMIT_LANES; l++) {
        *active += a->lane[l].active;
        *queued += (unsigned)deadline_queue_len(&a->lane[l].queue);
    }
}

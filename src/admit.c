/* admit.c: the start order of transfers. File downloads, calls answered into memory and
 * uploads wait in separate lanes, so a Notion PATCH or a status poll never queues behind a
 * batch of videos, nor a download behind the uploads of the last batch; within a lane the earliest deadline goes first. Each host keeps its own queues, so
 * a host at its cap is skipped in one step and a transfer to another host never waits behind
 * however many of its transfers are queued. */
#include "admit.h"

#include <stdlib.h>
#include <string.h>

void admit_init(admit *a) { memset(a, 0, sizeof *a); }

static void free_host(admit_host *h) {
    for (int l = 0; l < ADMIT_LANES; l++) deadline_queue_free(&h->queue[l]);
    free(h->name);
    free(h);
}

/* A host with nothing running or waiting is forgotten: signed URLs may name a new host for
 * every asset, and each admit_next looks at every host kept. */
static void forget_if_idle(admit *a, admit_host *h) {
    if (h->n) return;
    for (int l = 0; l < ADMIT_LANES; l++)
        if (deadline_queue_len(&h->queue[l])) return;
    for (size_t i = 0; i < a->nhosts; i++)
        if (a->hosts[i] == h) {
            a->hosts[i] = a->hosts[--a->nhosts];
            free_host(h);
            return;
        }
}

void admit_free(admit *a) {
    for (size_t i = 0; i < a->nhosts; i++) free_host(a->hosts[i]);
    free(a->hosts);
    a->hosts = NULL;
    a->nhosts = 0;
}

static admit_host *new_host(admit *a, const char *name) {
    admit_host **hosts = realloc(a->hosts, (a->nhosts + 1) * sizeof *hosts);
    if (!hosts) return NULL;
    a->hosts = hosts;
    admit_host *h = calloc(1, sizeof *h);
    if (!h || !(h->name = strdup(name))) { free(h); return NULL; }
    for (int l = 0; l < ADMIT_LANES; l++) deadline_queue_init(&h->queue[l]);
    return a->hosts[a->nhosts++] = h;
}

static admit_host *host(const admit *a, const char *name) {
    for (size_t i = 0; i < a->nhosts; i++)
        if (strcmp(a->hosts[i]->name, name) == 0) return a->hosts[i];
    return NULL;
}

static admit_host *host_or_new(admit *a, const char *name) {
    admit_host *h = host(a, name);
    return h ? h : new_host(a, name);
}

static int has_room(const admit *a, const admit_host *h) { return a->per_host == 0 || h->n < a->per_host; }

int admit_push(admit *a, int lane, const char *name, double deadline, void *item) {
    admit_host *h = host_or_new(a, name);
    if (!h) return -1;
    /* the admit-wide sequence, not the host queue's own, so that equal deadlines on
     * different hosts still start in arrival order */
    deadline_item it = {deadline, a->seq, item};
    if (deadline_queue_restore(&h->queue[lane], &it) != 0) return -1;
    a->seq++;
    return 0;
}

int admit_remove(admit *a, int lane, const char *name, void *item) {
    admit_host *h = host(a, name);
    if (!h || deadline_queue_remove(&h->queue[lane], item) != 0) return -1;
    forget_if_idle(a, h);
    return 0;
}

static int earlier(const deadline_item *x, const deadline_item *y) {
    return x->deadline < y->deadline || (x->deadline == y->deadline && x->seq < y->seq);
}

/* The host with room whose first waiting item in LANE comes first; NULL when none. */
static admit_host *next_host(const admit *a, int lane) {
    admit_host *best = NULL;
    const deadline_item *first = NULL;
    for (size_t i = 0; i < a->nhosts; i++) {
        admit_host *h = a->hosts[i];
        const deadline_item *head = deadline_queue_peek(&h->queue[lane]);
        if (head && has_room(a, h) && (!first || earlier(head, first))) best = h, first = head;
    }
    return best;
}

int admit_next(admit *a, void **item, int *lane) {
    for (int l = ADMIT_LANES - 1; l >= 0; l--) {      /* calls first, uploads last */
        if (a->lane[l].max && a->lane[l].active >= a->lane[l].max) continue;
        admit_host *h = next_host(a, l);
        deadline_item it;
        if (h && deadline_queue_pop(&h->queue[l], &it) == 0) {
            *item = it.data;
            *lane = l;
            return 0;
        }
    }
    return -1;
}

int admit_drain(admit *a, void **item) {
    deadline_item it;
    for (size_t i = 0; i < a->nhosts; i++)
        for (int l = 0; l < ADMIT_LANES; l++)
            if (deadline_queue_pop(&a->hosts[i]->queue[l], &it) == 0) {
                *item = it.data;
                return 0;
            }
    return -1;
}

void admit_started(admit *a, int lane, const char *name) {
    a->lane[lane].active++;
    admit_host *h = host_or_new(a, name);
    if (h) h->n++;
}

void admit_ended(admit *a, int lane, const char *name) {
    admit_host *h = name ? host(a, name) : NULL;
    if (a->lane[lane].active) a->lane[lane].active--;
    if (!h) return;
    if (h->n) h->n--;
    forget_if_idle(a, h);
}

void admit_stats(const admit *a, unsigned *active, unsigned *queued) {
    *active = *queued = 0;
    for (int l = 0; l < ADMIT_LANES; l++) *active += a->lane[l].active;
    for (size_t i = 0; i < a->nhosts; i++)
        for (int l = 0; l < ADMIT_LANES; l++) *queued += (unsigned)deadline_queue_len(&a->hosts[i]->queue[l]);
}

void admit_each(const admit *a, int lane, void (*fn)(void *item, void *ud), void *ud) {
    for (size_t i = 0; i < a->nhosts; i++) {
        const deadline_queue *q = &a->hosts[i]->queue[lane];
        for (size_t j = 0; j < q->len; j++) fn(q->items[j].data, ud);
    }
}

/* admit.h: which queued transfer starts next. Three lanes, each with its own cap on running
 * transfers; within a lane the earliest deadline among the hosts that have room goes first,
 * one count per host under a shared cap. Pure bookkeeping: the engine says what started and
 * what ended. */
#ifndef ASSETD_ADMIT_H
#define ASSETD_ADMIT_H

#include "deadline.h"

/* In the order admit_next serves them, last first: calls, then downloads, then uploads, so an
 * upload (no deadline) never takes the place of a download (one), nor a call of either. */
enum { ADMIT_UPLOADS, ADMIT_FILES, ADMIT_CALLS, ADMIT_LANES };

/* A host's running transfers (both lanes) and its waiting ones, a queue per lane: a host at
 * its cap is passed over as a whole, however many of its transfers wait. */
typedef struct admit_host {
    char *name;
    unsigned n;
    deadline_queue queue[ADMIT_LANES];
} admit_host;

typedef struct admit {
    struct {
        unsigned active, max;    /* max 0: no cap */
    } lane[ADMIT_LANES];
    unsigned per_host;           /* 0: no cap */
    admit_host **hosts;
    size_t nhosts;
    uint64_t seq;                /* arrival order across hosts, for equal deadlines */
} admit;

void admit_init(admit *a);
void admit_free(admit *a);
int admit_push(admit *a, int lane, const char *host, double deadline, void *item); /* -1: ENOMEM */
int admit_remove(admit *a, int lane, const char *host, void *item);   /* 0 if it was queued */
/* Pop the next item whose lane and host have room, calls lane first, uploads last; the caller then
 * reports admit_started (or nothing, if it drops the item). -1 when none can start. An item
 * whose host is full keeps its place. */
int admit_next(admit *a, void **item, int *lane);
/* Pop anything queued, ignoring the caps (shutdown). -1 when empty. */
int admit_drain(admit *a, void **item);
void admit_started(admit *a, int lane, const char *host);  /* a host it cannot count is not capped */
void admit_ended(admit *a, int lane, const char *host);
void admit_stats(const admit *a, unsigned *active, unsigned *queued);
/* Call FN for every item waiting in LANE, in no particular order (the scheduler's view of
 * what waits; FN must not push or pop). */
void admit_each(const admit *a, int lane, void (*fn)(void *item, void *ud), void *ud);

#endif

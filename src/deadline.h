/* deadline.h: an earliest-deadline-first queue (binary min-heap on (deadline, sequence)),
 * so equal deadlines leave in the order they arrived. Pure data structure. */
#ifndef ASSETD_DEADLINE_H
#define ASSETD_DEADLINE_H

#include <stddef.h>
#include <stdint.h>

typedef struct deadline_item {
    double deadline;     /* unix seconds; +inf when none */
    uint64_t seq;        /* set by push */
    void *data;
} deadline_item;

typedef struct deadline_queue {
    deadline_item *items;
    size_t len, cap;
    uint64_t next_seq;
} deadline_queue;

void deadline_queue_init(deadline_queue *q);
void deadline_queue_free(deadline_queue *q);
int deadline_queue_push(deadline_queue *q, double deadline, void *data); /* -1 on ENOMEM */
int deadline_queue_pop(deadline_queue *q, deadline_item *out);           /* -1 when empty */
/* Put back a popped item with its original sequence, so it keeps its place. */
int deadline_queue_restore(deadline_queue *q, const deadline_item *it);
const deadline_item *deadline_queue_peek(const deadline_queue *q);
/* Remove the item holding DATA (linear search; used for cancellation). 0 if found. */
int deadline_queue_remove(deadline_queue *q, void *data);
size_t deadline_queue_len(const deadline_queue *q);

#endif

/* deadline.c: the earliest-deadline-first queue behind transfer scheduling (and, later,
 * the expiry timers). A binary heap ordered by deadline, then by arrival. */
#include "deadline.h"

#include <stdlib.h>

static int before(const deadline_item *a, const deadline_item *b) {
    if (a->deadline != b->deadline) return a->deadline < b->deadline;
    return a->seq < b->seq;
}

static void swap(deadline_item *a, deadline_item *b) {
    deadline_item t = *a;
    *a = *b;
    *b = t;
}

static void sift_up(deadline_queue *q, size_t i) {
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(&q->items[i], &q->items[p])) return;
        swap(&q->items[i], &q->items[p]);
        i = p;
    }
}

static void sift_down(deadline_queue *q, size_t i) {
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < q->len && before(&q->items[l], &q->items[m])) m = l;
        if (r < q->len && before(&q->items[r], &q->items[m])) m = r;
        if (m == i) return;
        swap(&q->items[i], &q->items[m]);
        i = m;
    }
}

void deadline_queue_init(deadline_queue *q) {
    q->items = NULL;
    q->len = q->cap = 0;
    q->next_seq = 0;
}

void deadline_queue_free(deadline_queue *q) {
    free(q->items);
    deadline_queue_init(q);
}

int deadline_queue_restore(deadline_queue *q, const deadline_item *it) {
    if (q->len == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 16;
        deadline_item *n = realloc(q->items, cap * sizeof *n);
        if (n == NULL) return -1;
        q->items = n;
        q->cap = cap;
    }
    q->items[q->len] = *it;
    sift_up(q, q->len++);
    return 0;
}

int deadline_queue_push(deadline_queue *q, double deadline, void *data) {
    deadline_item it = {deadline, q->next_seq, data};
    if (deadline_queue_restore(q, &it) != 0) return -1;
    q->next_seq++;
    return 0;
}

const deadline_item *deadline_queue_peek(const deadline_queue *q) {
    return q->len ? &q->items[0] : NULL;
}

static void remove_at(deadline_queue *q, size_t i) {
    q->items[i] = q->items[--q->len];
    if (i < q->len) {
        sift_down(q, i);
        sift_up(q, i);
    }
}

int deadline_queue_pop(deadline_queue *q, deadline_item *out) {
    if (q->len == 0) return -1;
    *out = q->items[0];
    remove_at(q, 0);
    return 0;
}

int deadline_queue_remove(deadline_queue *q, void *data) {
    for (size_t i = 0; i < q->len; i++)
        if (q->items[i].data == data) { remove_at(q, i); return 0; }
    return -1;
}

size_t deadline_queue_len(const deadline_queue *q) { return q->len; }

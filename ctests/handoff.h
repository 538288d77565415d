/* Blocks handed between threads: a mutex-guarded ring of (pointer, size, pattern tag) items,
 * and the checked free that ends a handed-over block's life. Shared by the threaded C tests.
 * The includer defines QCAP (ring capacity) before including. */
#ifndef CTESTS_HANDOFF_H
#define CTESTS_HANDOFF_H

#include "common.h"
#include <pthread.h>

typedef struct { void *p; size_t n; uint64_t tag; } item;

typedef struct {
    pthread_mutex_t lock;
    item items[QCAP];
    int head, len;
} queue;

/* Appends `it`; returns 0 (and keeps nothing) when the ring is full. */
static int push(queue *q, item it) {
    pthread_mutex_lock(&q->lock);
    int ok = q->len < QCAP;
    if (ok) q->items[(q->head + q->len++) % QCAP] = it;
    pthread_mutex_unlock(&q->lock);
    return ok;
}

/* Takes the oldest item; returns 0 when the ring is empty. */
static int pop(queue *q, item *it) {
    pthread_mutex_lock(&q->lock);
    int ok = q->len > 0;
    if (ok) { *it = q->items[q->head]; q->head = (q->head + 1) % QCAP; q->len--; }
    pthread_mutex_unlock(&q->lock);
    return ok;
}

/* Checks a block's pattern, then frees it. */
static void release(item it) {
    CHECK_PATTERN(it.p, it.n, it.tag);
    pymalloc_free(it.p);
}

#endif

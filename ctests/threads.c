/* Several threads churn at once; a quarter of the blocks they free are handed to another
 * thread through a queue and freed there. Every block carries a pattern checked before its
 * free. Threads exit leaving blocks behind, which the main thread checks and frees; a second
 * generation of threads then adopts the exited threads' heaps. */
#include "common.h"
#include <pthread.h>

enum { THREADS = 4, SLOTS = 2000, OPS = 200000, LEFT = 100 };
#define QCAP 4096
#include "handoff.h"

static queue queues[THREADS];
static item leftovers[THREADS][LEFT];

static void drain(int self) {
    item it;
    while (pop(&queues[self], &it)) release(it);
}

static void *worker(void *arg) {
    int self = (int)(intptr_t)arg;
    uint64_t seed = 0x1234567ULL * (uint64_t)(self + 1), tag = (uint64_t)self << 48;
    static __thread item slots[SLOTS];
    for (long op = 0; op < OPS; op++) {
        uint64_t r = rng_next(&seed);
        item *s = &slots[r % SLOTS];
        if (s->p) {
            int to = (int)((r >> 20) % THREADS);
            if ((r >> 30) % 4 == 0 && to != self && push(&queues[to], *s)) {
                /* handed over */
            } else {
                release(*s);
            }
            s->p = NULL;
        } else {
            size_t n = 1 + (r >> 40) % 512;
            s->p = pymalloc_malloc(n);
            CHECK(s->p != NULL && pymalloc_owns(s->p));
            s->n = n;
            fill(s->p, n, s->tag = ++tag);
        }
        if (op % 64 == 0) drain(self);
    }
    /* Leave some blocks behind for the main thread; free the rest. */
    int left = 0;
    for (int i = 0; i < SLOTS; i++) {
        if (!slots[i].p) continue;
        if (left < LEFT) leftovers[self][left++] = slots[i];
        else release(slots[i]);
        slots[i].p = NULL;
    }
    return NULL;
}

static void generation(void) {
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(t[i], NULL) == 0);
    for (int i = 0; i < THREADS; i++) drain(i);
    CHECK(pymalloc_check() == 0);
    for (int i = 0; i < THREADS; i++)
        for (int j = 0; j < LEFT; j++)
            if (leftovers[i][j].p) { release(leftovers[i][j]); leftovers[i][j].p = NULL; }
    CHECK(pymalloc_check() == 0);
}

int main(void) {
    for (int i = 0; i < THREADS; i++) pthread_mutex_init(&queues[i].lock, NULL);
    generation();
    generation();
    printf("ok\n");
    return 0;
}

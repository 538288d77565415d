/* Many-thread stress: phases of 2, 4, 8 and 16 threads (on however few cores) doing random
 * churn of sizes 1..512; a quarter of the blocks are handed through a queue to a random other
 * thread and freed there. Every block carries a pattern checked before its free; the
 * invariant walker runs after each phase, once every thread is joined and every queue
 * drained. */
#include "common.h"
#include <pthread.h>

enum { MAX_THREADS = 16, SLOTS = 512 };
#define QCAP 1024
#include "handoff.h"

static queue queues[MAX_THREADS];
static int nthreads;
static long ops_per_thread;

static void drain(int self) {
    item it;
    while (pop(&queues[self], &it)) release(it);
}

static void *worker(void *arg) {
    int self = (int)(intptr_t)arg;
    uint64_t seed = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)(self + 1) * 0x1234567ULL);
    uint64_t tag = ((uint64_t)nthreads << 56) | ((uint64_t)self << 48);
    item slots[SLOTS];
    memset(slots, 0, sizeof slots);
    for (long op = 0; op < ops_per_thread; op++) {
        uint64_t r = rng_next(&seed);
        item *s = &slots[r % SLOTS];
        if (s->p) {
            int to = (int)((r >> 20) % (uint64_t)nthreads);
            if (!((r >> 30) % 4 == 0 && to != self && push(&queues[to], *s))) release(*s);
            s->p = NULL;
        } else {
            size_t n = 1 + (r >> 40) % 512;
            s->p = pymalloc_malloc(n);
            CHECK(s->p != NULL && pymalloc_owns(s->p));
            s->n = n;
            fill(s->p, n, s->tag = ++tag);
        }
        if (op % 32 == 0) drain(self);
    }
    for (int i = 0; i < SLOTS; i++)
        if (slots[i].p) release(slots[i]);
    drain(self);
    return NULL;
}

int main(void) {
    const int counts[] = {2, 4, 8, 16};
    long total = getenv("CTESTS_UNDER_VALGRIND") ? 300000 : 1600000; /* operations per phase */
    for (int i = 0; i < MAX_THREADS; i++) pthread_mutex_init(&queues[i].lock, NULL);
    for (int c = 0; c < 4; c++) {
        nthreads = counts[c];
        ops_per_thread = total / nthreads;
        pthread_t t[MAX_THREADS];
        for (int i = 0; i < nthreads; i++)
            CHECK(pthread_create(&t[i], NULL, worker, (void *)(intptr_t)i) == 0);
        for (int i = 0; i < nthreads; i++) CHECK(pthread_join(t[i], NULL) == 0);
        for (int i = 0; i < nthreads; i++) drain(i);
        CHECK(pymalloc_check() == 0);
        printf("%d threads: ok\n", nthreads);
    }
    return 0;
}

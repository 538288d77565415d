/* Thread lifetimes: 1,000 threads created and joined one after another, each allocating
 * blocks of all sizes, freeing most and leaving a few to the main thread. The blocks left
 * behind stay intact and freeable; the exited threads' heaps are adopted by later threads,
 * so the address space mapped does not grow with the number of threads that lived. */
#include "common.h"
#include <pthread.h>

enum { THREADS = 1000, WARMUP = 50, PER_THREAD = 200, LEFT = 5 };

typedef struct { void *p; size_t n; uint64_t tag; } item;

static item left[THREADS + WARMUP][LEFT];

static void *worker(void *arg) {
    int self = (int)(intptr_t)arg;
    item mine[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++) {
        size_t n = 1 + (size_t)(i * 13 + self) % 512;
        mine[i] = (item){ pymalloc_malloc(n), n, ((uint64_t)self << 16) | (uint64_t)i };
        CHECK(mine[i].p != NULL && pymalloc_owns(mine[i].p));
        fill(mine[i].p, n, mine[i].tag);
    }
    for (int i = 0; i < PER_THREAD - LEFT; i++) {
        CHECK_PATTERN(mine[i].p, mine[i].n, mine[i].tag);
        pymalloc_free(mine[i].p);
    }
    for (int i = 0; i < LEFT; i++) left[self][i] = mine[PER_THREAD - LEFT + i];
    return NULL;
}

static void run(int self) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, worker, (void *)(intptr_t)self) == 0);
    CHECK(pthread_join(t, NULL) == 0);
}

static void release_left(int from, int to) {
    for (int s = from; s < to; s++)
        for (int i = 0; i < LEFT; i++) {
            CHECK_PATTERN(left[s][i].p, left[s][i].n, left[s][i].tag);
            pymalloc_free(left[s][i].p);
        }
}

/* Address space mapped, in bytes (first field of /proc/self/statm). */
static size_t mapped_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0;
    CHECK(f != NULL && fscanf(f, "%ld", &pages) == 1);
    fclose(f);
    return (size_t)pages * 4096;
}

int main(void) {
    for (int s = 0; s < WARMUP; s++) run(s);
    release_left(0, WARMUP);
    CHECK(pymalloc_check() == 0);
    size_t before = mapped_bytes();
    int done = WARMUP;
    for (int s = WARMUP; s < WARMUP + THREADS; s++) {
        run(s);
        if (s + 1 - done >= 60) { /* the main thread frees leftovers as it goes */
            release_left(done, s + 1);
            done = s + 1;
        }
    }
    release_left(done, WARMUP + THREADS);
    CHECK(pymalloc_check() == 0);
    size_t after = mapped_bytes();
    if (!getenv("CTESTS_UNDER_VALGRIND") && after > before + 2u * 1024 * 1024) {
        fprintf(stderr, "mapped memory grew with threads that lived: %zu -> %zu\n", before, after);
        return 1;
    }
    printf("ok\n");
    return 0;
}

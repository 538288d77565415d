/* expect-abort: double free
 * A block freed twice in a row by a thread that does not own its pool: the second free
 * finds the block already at the head of the pool's remote list and aborts, instead of
 * linking the block to itself (which would hand it out on every later allocation). */
#include "common.h"
#include <pthread.h>

static void *free_twice(void *p) {
    pymalloc_free(p);
    pymalloc_free(p);
    return NULL;
}

int main(void) {
    void *keep = pymalloc_malloc(64); /* keeps the pool alive and not full */
    void *p = pymalloc_malloc(64);
    pthread_t t;
    pthread_create(&t, NULL, free_twice, p);
    pthread_join(t, NULL);
    printf("not reached %p\n", keep);
    return 0;
}

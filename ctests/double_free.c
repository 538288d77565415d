/* expect-abort: double free
 * Release mode catches a double free of the most recently freed block of a pool and
 * aborts with a message instead of corrupting the free list. */
#include "common.h"

int main(void) {
    void *keep = pymalloc_malloc(64); /* keeps the pool alive */
    void *p = pymalloc_malloc(64);
    pymalloc_free(p);
    pymalloc_free(p);
    printf("not reached %p\n", keep);
    return 0;
}

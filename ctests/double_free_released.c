/* expect-abort: its pool holds no live block
 * A block freed again after its pool emptied and went back to its arena: the pool now
 * belongs to no heap, and the free aborts with a message instead of touching it. */
#include "common.h"

enum { PER_POOL = 8 }; /* 512-byte blocks in a 4 KiB pool (its header is in the arena's table) */

int main(void) {
    void *first[PER_POOL];
    for (int i = 0; i < PER_POOL; i++) first[i] = pymalloc_malloc(512);
    void *keep = pymalloc_malloc(512); /* a second pool of the class, so the first can go */
    for (int i = 0; i < PER_POOL; i++) pymalloc_free(first[i]);
    pymalloc_free(first[0]);
    printf("not reached %p\n", keep);
    return 0;
}

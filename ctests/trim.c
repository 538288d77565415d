/* RSS comes back after a large free: pymalloc_trim returns at once, without waiting for
 * the decay, every empty arena and every free pool in live arenas. */
#include "common.h"

enum { N = 400000 };
static void *blocks[N];

int main(void) {
    /* Warm up the C library, the allocator and our own array (3 MiB of RSS once touched)
     * so that the baseline is stable. */
    pymalloc_free(pymalloc_malloc(8));
    memset(blocks, 0, sizeof blocks);
    size_t before = rss_bytes();
    for (int i = 0; i < N; i++) {
        blocks[i] = pymalloc_malloc(1 + (size_t)i * 7919 % 512);
        CHECK(blocks[i] != NULL);
        memset(blocks[i], 0x5A, 1 + (size_t)i * 7919 % 512);
    }
    size_t peak = rss_bytes();
    CHECK(peak > before + 64u * 1024 * 1024);
    /* Free all but every 4000th block, so some arenas stay alive with free pools in them. */
    for (int i = 0; i < N; i++)
        if (i % 4000 != 0) pymalloc_free(blocks[i]);
    CHECK(pymalloc_check() == 0);
    pymalloc_trim();
    CHECK(pymalloc_check() == 0);
    size_t after = rss_bytes();
    printf("rss before %zu KiB, peak %zu KiB, after free + trim %zu KiB\n",
           before / 1024, peak / 1024, after / 1024);
    /* Under Valgrind RSS is Valgrind's own (shadow memory), so the bound means nothing. */
    if (!getenv("CTESTS_UNDER_VALGRIND")) CHECK(after < before + 4u * 1024 * 1024);
    for (int i = 0; i < N; i += 4000) pymalloc_free(blocks[i]);
    pymalloc_trim();
    CHECK(pymalloc_check() == 0);
    printf("ok\n");
    return 0;
}

/* Under an address-space limit (RLIMIT_AS set at run time to what the process already
 * uses plus 1 MiB), new arenas soon cannot be mapped: small requests must still return
 * usable memory (from the fallback, as CPython's pymalloc does), every block must keep its
 * contents and free correctly, exhaustion must give NULL (never a crash), and memory freed
 * must be usable again. Run plain and with PYMALLOC_DEBUG=1 by tests/limits.rs; debug mode
 * must not report a correct free of a block it served from the fallback. */
#include "common.h"
#include <sys/resource.h>

enum { MAX_BLOCKS = 1 << 20 };
static void *blocks[MAX_BLOCKS];

int main(void) {
    /* Start-up work before the limit: the thread's heap, a first arena, and room at the
     * top of the C library's heap for the fallback blocks (freed, not trimmed: < 128 KiB). */
    void *first = pymalloc_malloc(16);
    CHECK(first != NULL);
    free(malloc(100000));
    size_t limit = statm_bytes(0) + (1 << 20);
    struct rlimit rl = {limit, limit};
    CHECK(setrlimit(RLIMIT_AS, &rl) == 0);

    size_t n = 0, fallback = 0;
    for (; n < MAX_BLOCKS; n++) {
        size_t size = 1 + n % 512;
        void *p = pymalloc_malloc(size);
        if (p == NULL) break;
        fill(p, size, n);
        blocks[n] = p;
        if (!pymalloc_owns(p)) fallback++;
    }
    CHECK(n < MAX_BLOCKS); /* the limit was reached: NULL, not a crash */
    CHECK(fallback > 0);   /* and before that the fallback served what arenas could not */

    /* Every block intact; free the even ones, then the odd ones. */
    for (int parity = 0; parity < 2; parity++) {
        for (size_t i = (size_t)parity; i < n; i += 2) {
            CHECK_PATTERN(blocks[i], 1 + i % 512, i);
            pymalloc_free(blocks[i]);
        }
    }
    pymalloc_free(first);

    /* Nothing lost: the memory is there again. */
    for (size_t i = 0; i < n / 2; i++) {
        size_t size = 1 + i % 512;
        blocks[i] = pymalloc_malloc(size);
        CHECK(blocks[i] != NULL);
        fill(blocks[i], size, i);
    }
    for (size_t i = 0; i < n / 2; i++) {
        CHECK_PATTERN(blocks[i], 1 + i % 512, i);
        pymalloc_free(blocks[i]);
    }
    printf("%zu blocks before NULL, %zu from the fallback\n", n, fallback);
    return 0;
}

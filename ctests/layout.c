/* Every size 1..512: 16-byte alignment, usable_size, no two live blocks overlapping, and
 * contents kept across realloc in every direction. */
#include "common.h"

typedef struct { uintptr_t start, end; } span;

static int by_start(const void *a, const void *b) {
    const span *x = a, *y = b;
    return (x->start > y->start) - (x->start < y->start);
}

int main(void) {
    enum { ROUNDS = 8, N = 512 * ROUNDS };
    static void *blocks[N];
    static span spans[N];
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t n = 1; n <= 512; n++) {
            int i = r * 512 + (int)(n - 1);
            void *p = pymalloc_malloc(n);
            CHECK(p != NULL);
            CHECK(((uintptr_t)p & 15) == 0);
            CHECK(pymalloc_owns(p));
            CHECK(pymalloc_usable_size(p) == ((n + 15) & ~(size_t)15));
            fill(p, pymalloc_usable_size(p), (uint64_t)i);
            blocks[i] = p;
            spans[i].start = (uintptr_t)p;
            spans[i].end = (uintptr_t)p + pymalloc_usable_size(p);
        }
    }
    qsort(spans, N, sizeof(span), by_start);
    for (int i = 1; i < N; i++) CHECK(spans[i - 1].end <= spans[i].start);
    for (int i = 0; i < N; i++) CHECK_PATTERN(blocks[i], pymalloc_usable_size(blocks[i]), (uint64_t)i);

    /* realloc every block to a random new size, inside the pools and out, and back. */
    uint64_t seed = 42;
    for (int i = 0; i < N; i++) {
        size_t old = pymalloc_usable_size(blocks[i]);
        size_t n = 1 + rng_next(&seed) % 700;
        void *q = pymalloc_realloc(blocks[i], n);
        CHECK(q != NULL);
        size_t kept = old < n ? old : n;
        CHECK_PATTERN(q, kept, (uint64_t)i);
        if (n <= 512) {
            CHECK(pymalloc_owns(q) && ((uintptr_t)q & 15) == 0);
            CHECK(pymalloc_usable_size(q) >= n);
        } else {
            CHECK(!pymalloc_owns(q));
        }
        fill(q, n, (uint64_t)i + N);
        void *back = pymalloc_realloc(q, 1 + (size_t)(rng_next(&seed) % 512));
        CHECK(back != NULL);
        blocks[i] = back;
    }
    for (int i = 0; i < N; i++) pymalloc_free(blocks[i]);
    CHECK(pymalloc_check() == 0);
    printf("ok\n");
    return 0;
}

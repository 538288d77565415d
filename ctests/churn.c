/* One million operations of malloc/calloc/realloc/free over all size classes, with a
 * pattern written into every block and checked before its free; the invariant walker runs
 * between phases. */
#include "common.h"

enum { SLOTS = 100000, OPS = 1000000 };

static void *slot_ptr[SLOTS];
static size_t slot_size[SLOTS];
static uint64_t slot_tag[SLOTS];

int main(void) {
    uint64_t seed = 0x9E3779B97F4A7C15ULL, tag = 1;
    for (int phase = 0; phase < 2; phase++) {
        for (long op = 0; op < OPS; op++) {
            uint64_t r = rng_next(&seed);
            int s = (int)(r % SLOTS);
            if (slot_ptr[s] != NULL) {
                CHECK_PATTERN(slot_ptr[s], slot_size[s], slot_tag[s]);
                if ((r >> 32) % 8 == 0) {
                    size_t n = 1 + (r >> 40) % 512;
                    void *q = pymalloc_realloc(slot_ptr[s], n);
                    CHECK(q != NULL);
                    size_t kept = slot_size[s] < n ? slot_size[s] : n;
                    CHECK_PATTERN(q, kept, slot_tag[s]);
                    slot_ptr[s] = q;
                    slot_size[s] = n;
                    fill(q, n, slot_tag[s] = tag++);
                    continue;
                }
                pymalloc_free(slot_ptr[s]);
                slot_ptr[s] = NULL;
                continue;
            }
            size_t n = 1 + (r >> 40) % 512;
            void *p;
            if ((r >> 32) % 16 == 0) {
                p = pymalloc_calloc(1, n);
                CHECK(p != NULL);
                for (size_t i = 0; i < n; i++) CHECK(((unsigned char *)p)[i] == 0);
            } else {
                p = pymalloc_malloc(n);
                CHECK(p != NULL);
            }
            CHECK(pymalloc_owns(p) && ((uintptr_t)p & 15) == 0);
            slot_ptr[s] = p;
            slot_size[s] = n;
            fill(p, n, slot_tag[s] = tag++);
        }
        CHECK(pymalloc_check() == 0);
        /* Free every other slot between phases, so the second phase reuses holes. */
        for (int s = phase; s < SLOTS; s += 2) {
            if (slot_ptr[s]) {
                CHECK_PATTERN(slot_ptr[s], slot_size[s], slot_tag[s]);
                pymalloc_free(slot_ptr[s]);
                slot_ptr[s] = NULL;
            }
        }
        CHECK(pymalloc_check() == 0);
    }
    for (int s = 0; s < SLOTS; s++) {
        if (slot_ptr[s]) {
            CHECK_PATTERN(slot_ptr[s], slot_size[s], slot_tag[s]);
            pymalloc_free(slot_ptr[s]);
        }
    }
    CHECK(pymalloc_check() == 0);
    printf("ok\n");
    return 0;
}

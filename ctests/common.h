/* Shared helpers for the C test programs: checks that name the failing line, a small
 * deterministic RNG, byte patterns written into blocks and verified before their free,
 * and the process's resident set size and address space. */
#ifndef CTESTS_COMMON_H
#define CTESTS_COMMON_H

#include "pymalloc.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond)                                                              \
    do {                                                                         \
        if (!(cond)) {                                                           \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

/* xorshift64*: deterministic, seedable, good enough for workloads. */
static inline uint64_t rng_next(uint64_t *s) {
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1DULL;
}

/* The byte at offset i of a block tagged `tag`. */
static inline unsigned char pattern_byte(uint64_t tag, size_t i) {
    return (unsigned char)((tag * 131u + i * 7u) ^ (tag >> 8));
}

static inline void fill(void *p, size_t n, uint64_t tag) {
    unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = pattern_byte(tag, i);
}

/* Returns the first offset whose byte is wrong, or n if all are right. */
static inline size_t verify(const void *p, size_t n, uint64_t tag) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        if (b[i] != pattern_byte(tag, i)) return i;
    return n;
}

#define CHECK_PATTERN(p, n, tag)                                                 \
    do {                                                                         \
        size_t at_ = verify((p), (n), (tag));                                    \
        if (at_ != (size_t)(n)) {                                                \
            fprintf(stderr, "%s:%d: block %p (%zu bytes) corrupt at offset %zu\n", \
                    __FILE__, __LINE__, (void *)(p), (size_t)(n), at_);          \
            exit(1);                                                             \
        }                                                                        \
    } while (0)

/* Field 0 (address space) or 1 (resident set) of /proc/self/statm, in bytes. */
static inline size_t statm_bytes(int field) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages[2] = {0, 0};
    CHECK(f != NULL);
    CHECK(fscanf(f, "%ld %ld", &pages[0], &pages[1]) == 2);
    fclose(f);
    return (size_t)pages[field] * 4096;
}

/* Resident set size in bytes. */
static inline size_t rss_bytes(void) { return statm_bytes(1); }

#endif

/* The occupancy statistics against a layout built by hand: five pools of the 64-byte class
 * filled, then thinned to 64, 1, 7, 32 and 45 blocks in use; the per-class occupancy
 * tenths, blocks and stranded bytes, the totals, and the text report's row must say so,
 * and pymalloc_attribute() must count the kept blocks by group (an interior byte too). */
#include "common.h"
#include <unistd.h>

enum { SIZE = 64, PER_POOL = 4096 / SIZE, POOLS = 5 };

int main(void) {
    static void *blocks[POOLS * PER_POOL];
    static const int keep[POOLS] = {64, 1, 7, 32, 45};
    uintptr_t page[POOLS] = {0};
    int kept[POOLS] = {0};
    for (int i = 0; i < POOLS * PER_POOL; i++) {
        blocks[i] = pymalloc_malloc(SIZE);
        CHECK(blocks[i] != NULL && pymalloc_owns(blocks[i]));
    }
    /* The first process allocation of the class: one pool at a time, filled in turn. */
    for (int i = 0; i < POOLS * PER_POOL; i++) {
        uintptr_t p = (uintptr_t)blocks[i] & ~(uintptr_t)4095;
        int k = i / PER_POOL;
        if (i % PER_POOL == 0) page[k] = p;
        CHECK(p == page[k]);
    }
    for (int i = 0; i < POOLS * PER_POOL; i++) {
        int k = i / PER_POOL;
        if (kept[k] < keep[k]) {
            kept[k]++;
        } else {
            pymalloc_free(blocks[i]);
            blocks[i] = NULL;
        }
    }

    pymalloc_stats s;
    pymalloc_get_stats(&s);
    const pymalloc_class_stats *c = &s.classes[SIZE / 16 - 1];
    uint64_t in_use = 0;
    for (int k = 0; k < POOLS; k++) in_use += (uint64_t)keep[k];
    CHECK(c->size == SIZE);
    /* The heap may keep empty pools of the class for reuse: in `pools`, not in `occupancy`. */
    CHECK(c->pools >= POOLS && c->pools - POOLS <= s.pools_cached);
    CHECK(c->blocks_in_use == in_use);
    CHECK(c->blocks_free == c->pools * PER_POOL - in_use);
    /* 64/64 -> tenth 9, 1/64 -> 0, 7/64 -> 1, 32/64 -> 5, 45/64 -> 7. */
    static const uint64_t tenths[10] = {1, 1, 0, 0, 0, 1, 0, 1, 0, 1};
    for (int k = 0; k < 10; k++) CHECK(c->occupancy[k] == tenths[k]);
    CHECK(c->bytes_stranded == POOLS * 4096 - in_use * SIZE);
    /* No other class serves from a pool. */
    uint64_t serving = 0;
    for (int i = 0; i < 32; i++) {
        for (int k = 0; k < 10; k++) serving += s.classes[i].occupancy[k];
        if (i == SIZE / 16 - 1) continue;
        CHECK(s.classes[i].bytes_stranded == 0);
    }
    CHECK(serving == POOLS && s.pools_in_use == POOLS + s.pools_cached);
    CHECK(s.bytes_in_use == in_use * SIZE);
    CHECK(s.bytes_resident ==
          (s.pools_in_use + s.pools_free - s.pools_returned + s.arenas_current) * 4096);
    CHECK(s.bytes_stranded == s.bytes_resident - s.bytes_in_use);

    /* The text report's occupancy row for the class. */
    FILE *f = tmpfile();
    CHECK(f != NULL);
    pymalloc_print_stats(fileno(f));
    rewind(f);
    char line[512], want[256];
    snprintf(want, sizeof want,
             "    3     64           5      1     1     0     0     0     1     0     1     0"
             "     1 %16llu\n",
             (unsigned long long)(POOLS * 4096 - in_use * SIZE));
    int found = 0, stranded_line = 0;
    while (fgets(line, sizeof line, f)) {
        if (strcmp(line, want) == 0) found = 1;
        if (strncmp(line, "# bytes stranded in pools in use", 32) == 0) stranded_line = 1;
    }
    fclose(f);
    CHECK(found && stranded_line);

    /* pymalloc_attribute: group 0 holds the kept blocks of pools 0-2, group 1 those of
     * pools 3-4, group 2 the last byte of pool 1's block; then a repeat of a group 0
     * address, an address of nobody's pool (the stack) and one whose group is out of
     * range. */
    enum { ROWS = POOLS * PER_POOL + 4 };
    static const void *addrs[ROWS];
    static uint32_t group[ROWS];
    static uint64_t scratch[2 * ROWS];
    size_t n = 0;
    for (int i = 0; i < POOLS * PER_POOL; i++) {
        if (blocks[i] == NULL) continue;
        addrs[n] = blocks[i];
        group[n++] = i / PER_POOL < 3 ? 0 : 1;
        if (i / PER_POOL == 1) {
            addrs[n] = (const char *)blocks[i] + SIZE - 1;
            group[n++] = 2;
        }
    }
    addrs[n] = blocks[0], group[n++] = 0; /* a repeat: counts once */
    addrs[n] = &n, group[n++] = 0;
    addrs[n] = blocks[0], group[n++] = 3;
    pymalloc_group_stats g[3];
    memset(g, 0, sizeof g);
    CHECK(pymalloc_attribute(addrs, group, n, scratch, g, 3) == in_use + 1);
    pymalloc_group_stats want_g[3];
    memset(want_g, 0, sizeof want_g);
    for (int k = 0; k < POOLS; k++) {
        pymalloc_group_stats *w = &want_g[k < 3 ? 0 : 1];
        w->objects += (uint64_t)keep[k];
        w->live_bytes += (uint64_t)keep[k] * SIZE;
        w->pools += 2 * keep[k] <= PER_POOL;
        w->stranded_bytes += 4096.0 - keep[k] * SIZE; /* the whole pool's: all in group */
    }
    want_g[2].objects = 1, want_g[2].live_bytes = SIZE, want_g[2].pools = 1;
    want_g[2].stranded_bytes = 4096.0 - SIZE; /* pool 1 holds one block */
    for (int k = 0; k < 3; k++) {
        CHECK(g[k].objects == want_g[k].objects && g[k].live_bytes == want_g[k].live_bytes);
        CHECK(g[k].pools == want_g[k].pools);
        CHECK(g[k].stranded_bytes > want_g[k].stranded_bytes - 0.5 &&
              g[k].stranded_bytes < want_g[k].stranded_bytes + 0.5);
    }
    CHECK(pymalloc_attribute(addrs, group, 0, scratch, g, 3) == 0);
    CHECK(pymalloc_attribute(addrs, group, n, NULL, g, 3) == 0);

    for (int i = 0; i < POOLS * PER_POOL; i++) pymalloc_free(blocks[i]);
    return 0;
}

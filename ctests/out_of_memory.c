/* Statistics and the walker when memory has run out: under an address-space limit, 64-byte
 * blocks are allocated until pymalloc_malloc returns NULL (the C library's malloc, its
 * fallback, has failed too); then pymalloc_get_stats, pymalloc_print_stats and
 * pymalloc_check must still return (not abort): the statistics whole, the report
 * written, the check saying it could not be made (-2). Once the blocks are freed, the check
 * passes again. Skipped under Valgrind, whose own memory the limit would cut off. */
#include "common.h"
#include <sys/resource.h>
#include <unistd.h>

/* Headroom over the address space in use at the start: the blocks fill it. */
enum { HEADROOM = 64 << 20 };

int main(void) {
    if (getenv("CTESTS_UNDER_VALGRIND")) return 0;
    /* The report goes into a pipe, opened before memory runs out (it fits the pipe). */
    int fds[2];
    CHECK(pipe(fds) == 0);
    struct rlimit limit = { statm_bytes(0) + HEADROOM, RLIM_INFINITY };
    CHECK(setrlimit(RLIMIT_AS, &limit) == 0);

    /* The blocks form a list through their first word. */
    void **head = NULL;
    size_t n = 0;
    for (;;) {
        void **b = pymalloc_malloc(64);
        if (!b) break;
        *b = head;
        head = b;
        n++;
    }
    CHECK(n > 100000);

    pymalloc_stats s;
    memset(&s, 0, sizeof s);
    pymalloc_get_stats(&s);
    /* (When no arena could be mapped, the last blocks came from the fallback.) */
    CHECK(s.classes[3].size == 64 && s.classes[3].blocks_in_use + s.large_in_use >= n);
    CHECK(s.pools_in_use > 0 && s.heaps >= 1);

    pymalloc_print_stats(fds[1]);
    close(fds[1]);
    static char text[1 << 16];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof text - 1 && (r = read(fds[0], text + got, sizeof text - 1 - got)) > 0)
        got += (size_t)r;
    text[got] = 0;
    CHECK(strstr(text, "# bytes in allocated blocks") != NULL);

    CHECK(pymalloc_check() == -2);

    while (head) {
        void **next = *head;
        pymalloc_free(head);
        head = next;
    }
    CHECK(pymalloc_check() == 0);
    return 0;
}

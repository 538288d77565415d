/* Debug mode's faults, one per run: argv[1] names the fault to commit. Run with
 * PYMALLOC_DEBUG=1; each fault must be reported and abort (tests/debug.rs). "ok" exercises
 * the debug allocator without a fault and must exit 0; "large-churn" frees large blocks
 * over and over and prints its peak RSS; "check-after-free" writes to a freed block and
 * says whether pymalloc_check saw it. */
#include "pymalloc.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *f = argv[1];
    char *p = pymalloc_malloc(20);
    if (!strcmp(f, "ok")) {
        char *big = pymalloc_malloc(1000);
        memset(big, 1, 1000);
        big = pymalloc_realloc(big, 10);
        for (int i = 0; i < 10; i++) if (big[i] != 1) return 1;
        pymalloc_free(big);
        memset(p, 2, 20);
        p = pymalloc_realloc(p, 300);
        for (int i = 0; i < 20; i++) if (p[i] != 2) return 1;
        pymalloc_free(p);
        unsigned char *c = pymalloc_calloc(3, 7);
        for (int i = 0; i < 21; i++) if (c[i] != 0) return 1;
        pymalloc_free(c);
        if (pymalloc_usable_size(c = pymalloc_malloc(33)) != 33) return 1;
        pymalloc_free(c);
        for (int i = 0; i < 5000; i++) pymalloc_free(pymalloc_malloc((size_t)i % 700));
        pymalloc_free(NULL);
        printf("ok\n");
        return 0;
    }
    if (!strcmp(f, "large-churn")) {
        /* 8 MiB blocks (beyond the quarantine's byte budget) and 1 MiB ones (within it). */
        for (int i = 0; i < 64; i++) {
            size_t n = i % 2 ? (size_t)1 << 20 : (size_t)8 << 20;
            char *b = pymalloc_malloc(n);
            if (!b) return 1;
            memset(b, 1, n);
            pymalloc_free(b);
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("maxrss %ld\n", ru.ru_maxrss);
        return 0;
    }
    if (!strcmp(f, "check-after-free")) {
        pymalloc_free(p);
        p[3] = 1;
        printf(pymalloc_check() ? "caught by pymalloc_check\n" : "not caught by pymalloc_check\n");
        return 0;
    }
    if (!strcmp(f, "overrun")) { p[20] = 'x'; pymalloc_free(p); }
    if (!strcmp(f, "underrun")) { p[-1] = 'x'; pymalloc_free(p); }
    if (!strcmp(f, "double-free")) { pymalloc_free(p); pymalloc_free(p); }
    if (!strcmp(f, "use-after-free")) {
        pymalloc_free(p);
        p[3] = 1;
        for (int i = 0; i < 2000; i++) pymalloc_free(pymalloc_malloc(8)); /* push it out of quarantine */
    }
    if (!strcmp(f, "wild")) { int x; pymalloc_free(&x); }
    if (!strcmp(f, "interior")) { pymalloc_free(p + 16); }
    if (!strcmp(f, "realloc-freed")) { pymalloc_free(p); p = pymalloc_realloc(p, 10); }
    if (!strcmp(f, "large-overrun")) { char *b = pymalloc_malloc(1000); b[1001] = 1; pymalloc_free(b); }
    /* A stray write over the stored size (the header word 32 bytes before the data). */
    if (!strcmp(f, "damaged-size")) { memset(p - 32, 0x41, 8); pymalloc_free(p); }
    if (!strcmp(f, "shrunk-size")) { size_t one = 1; memcpy(p - 32, &one, sizeof one); pymalloc_free(p); }
    if (!strcmp(f, "large-damaged-size")) {
        char *b = pymalloc_malloc(1000);
        memset(b - 32, 0x41, 8);
        pymalloc_free(b);
    }
    printf("fault %s not caught\n", f);
    return 0;
}

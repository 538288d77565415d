/* A realloc that keeps the block in place (110 bytes in the 112-byte class the 100-byte
 * block came from) makes all 110 bytes usable: memcheck, with the library built with the
 * `valgrind` feature, must stay quiet, and still see a read past the new size. */
#include "pymalloc.h"
#include <stdio.h>
#include <string.h>

int main(void) {
    unsigned char *p = pymalloc_malloc(100);
    memset(p, 1, 100);
    unsigned char *q = pymalloc_realloc(p, 110);
    if (q != p) {
        printf("moved\n");
        return 1;
    }
    memset(q, 2, 110);
    volatile unsigned char past = q[110];
    printf("read %d\n", past);
    pymalloc_free(q);
    return 0;
}

/* Reads one byte past a 40-byte pool block (inside its 48-byte class): memcheck, with the
 * library built with the `valgrind` feature, must report an invalid read. */
#include "pymalloc.h"
#include <stdio.h>
#include <string.h>

int main(void) {
    unsigned char *p = pymalloc_malloc(40);
    memset(p, 7, 40);
    volatile unsigned char past = p[40];
    printf("read %d\n", past);
    pymalloc_free(p);
    return 0;
}

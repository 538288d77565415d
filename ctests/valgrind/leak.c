/* Leaks one pool block: memcheck, with the library built with the `valgrind` feature,
 * must report it as definitely lost. */
#include "pymalloc.h"
#include <stdio.h>
#include <string.h>

int main(void) {
    for (int i = 0; i < 100; i++) pymalloc_free(pymalloc_malloc(48));
    char *p = pymalloc_malloc(48);
    memset(p, 1, 48);
    p = NULL;
    printf("leaked\n");
    return 0;
}

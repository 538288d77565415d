/* A stand-in for a free-threaded CPython (3.13t and later), whose garbage collector walks
 * mimalloc's heaps: the preloaded library must leave it alone. It exports what the library
 * looks at (PyMem_GetAllocator, PyMem_SetAllocator, Py_GetVersion, and, built with
 * -DMERGE_SYMBOL, _Py_MergeZeroLocalRefcount) and counts the PyMem_SetAllocator calls.
 * -DVERSION="..." chooses what Py_GetVersion says. Built with -rdynamic, so that
 * dlsym(RTLD_DEFAULT) finds these, as it finds a static interpreter's, and linked to the
 * library, whose constructor runs before main as it does when preloaded.
 * Prints how often PyMem_SetAllocator was called by the constructor, then what
 * pymalloc_install() returned and the count after it. */
#include <stddef.h>
#include <stdio.h>
#include "pymalloc.h"

#ifndef VERSION
#define VERSION "3.14.0 free-threading build (main, Oct 7 2025, 00:00:00) [GCC 15.2.0]"
#endif

typedef struct {
    void *ctx;
    void *(*malloc)(void *, size_t);
    void *(*calloc)(void *, size_t, size_t);
    void *(*realloc)(void *, void *, size_t);
    void (*free)(void *, void *);
} PyMemAllocatorEx;

static int set_calls;
/* The domains' allocators (RAW, MEM, OBJ), as an interpreter keeps them. */
static PyMemAllocatorEx domains[3];

void PyMem_GetAllocator(int domain, PyMemAllocatorEx *out) { *out = domains[domain]; }

void PyMem_SetAllocator(int domain, PyMemAllocatorEx *in) {
    domains[domain] = *in;
    set_calls++;
}

const char *Py_GetVersion(void) { return VERSION; }

#ifdef MERGE_SYMBOL
void _Py_MergeZeroLocalRefcount(void *op) { (void)op; }
#endif

int main(void) {
    int at_start = set_calls;
    int installed = pymalloc_install();
    printf("set_allocator calls: %d; pymalloc_install: %d; set_allocator calls: %d; "
           "domains: %u\n",
           at_start, installed, set_calls, pymalloc_installed_domains());
    return 0;
}

/* An embedder: installs pymalloc-rs by hand with PyMem_SetAllocator before Py_Initialize,
 * runs Python code, checks that our pools served it, finalizes; then initializes again
 * (3.12+ restores the default allocators there) and re-installs with pymalloc_install(). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "pymalloc.h"
#include "served.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "embed.c:%d: %s\n", __LINE__, #c); return 1; } } while (0)

static const char *code =
    "import json, gc\n"
    "d = {str(i): [i, str(i) * 2] for i in range(50000)}\n"
    "assert json.loads(json.dumps(d)) == d\n"
    "class C: pass\n"
    "for i in range(1000):\n"
    "    a = C(); a.me = a\n"
    "gc.collect()\n";

static int run_and_check(void) {
    CHECK(PyRun_SimpleString(code) == 0);
    /* bytes have no free list, so this is a fresh block: 3.14's free list of ints may
     * hand back an int allocated before the re-install. */
    PyObject *o = PyBytes_FromStringAndSize(NULL, 100);
    CHECK(served_by_pymalloc_rs(o));
    Py_DECREF(o);
    return 0;
}

int main(void) {
    pymalloc_allocator_ex mine = pymalloc_allocator();
    PyMemAllocatorEx ex = {mine.ctx, mine.malloc, mine.calloc, mine.realloc, mine.free};
    PyMem_SetAllocator(PYMEM_DOMAIN_OBJ, &ex);
    PyMem_SetAllocator(PYMEM_DOMAIN_MEM, &ex);
    Py_Initialize();
    if (run_and_check()) return 1;
    CHECK(Py_FinalizeEx() == 0);

    Py_Initialize();
    CHECK(pymalloc_install() == 0);
    if (run_and_check()) return 1;
    CHECK(Py_FinalizeEx() == 0);
    printf("embedded ok\n");
    return 0;
}

/* Every row of CPython's allocation semantics (the README's C function table and `src/api.rs`), through both the native and the CPython-shaped names. */
#include "common.h"
#include <stddef.h>

typedef struct {
    const char *name;
    void *(*malloc)(size_t);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void (*free)(void *);
} api;

static void run(const api *a) {
    const size_t ssize_max = (size_t)PTRDIFF_MAX;
    printf("semantics via %s\n", a->name);

    /* malloc(0), calloc(0, x): unique non-NULL pointers (the system allocator's). */
    void *z1 = a->malloc(0), *z2 = a->malloc(0);
    CHECK(z1 != NULL && z2 != NULL && z1 != z2);
    CHECK(!pymalloc_owns(z1) && pymalloc_usable_size(z1) == 0);
    void *c1 = a->calloc(0, 8), *c2 = a->calloc(8, 0);
    CHECK(c1 != NULL && c2 != NULL && c1 != c2);
    a->free(z1); a->free(z2); a->free(c1); a->free(c2);

    /* Above PY_SSIZE_T_MAX: NULL. */
    CHECK(a->malloc(ssize_max + 1) == NULL);
    CHECK(a->malloc(SIZE_MAX) == NULL);

    /* calloc overflow, or a product above PY_SSIZE_T_MAX: NULL. */
    CHECK(a->calloc(SIZE_MAX / 2 + 1, 2) == NULL);
    CHECK(a->calloc(2, SIZE_MAX / 2 + 1) == NULL);
    CHECK(a->calloc(ssize_max / 2 + 1, 2) == NULL);
    CHECK(a->calloc(SIZE_MAX, SIZE_MAX) == NULL);

    /* calloc zeroes, recycled blocks too. */
    for (size_t n = 1; n <= 512; n += 17) {
        unsigned char *dirty = a->malloc(n);
        memset(dirty, 0xAB, n);
        a->free(dirty);
        unsigned char *c = a->calloc(1, n);
        CHECK(c != NULL && pymalloc_owns(c));
        for (size_t i = 0; i < n; i++) CHECK(c[i] == 0);
        a->free(c);
    }
    unsigned char *c4 = a->calloc(4, 16);
    for (int i = 0; i < 64; i++) CHECK(c4[i] == 0);
    a->free(c4);
    unsigned char *big = a->calloc(1000, 3);
    CHECK(big != NULL && !pymalloc_owns(big));
    for (int i = 0; i < 3000; i++) CHECK(big[i] == 0);
    a->free(big);

    /* realloc(NULL, n) is malloc(n). */
    void *r0 = a->realloc(NULL, 40);
    CHECK(r0 != NULL && pymalloc_owns(r0) && pymalloc_usable_size(r0) == 48);
    a->free(r0);

    /* The 3/4 shrink rule: 112 -> 90 stays, 112 -> 84 moves. */
    void *p = a->malloc(112);
    fill(p, 112, 1);
    CHECK(a->realloc(p, 90) == p);
    CHECK(a->realloc(p, 112) == p);
    void *q = a->realloc(p, 84);
    CHECK(q != NULL && q != p && pymalloc_owns(q) && pymalloc_usable_size(q) == 96);
    CHECK_PATTERN(q, 84, 1);

    /* Growing inside the pools moves to the bigger class, contents kept. */
    void *g = a->realloc(q, 300);
    CHECK(g != NULL && pymalloc_owns(g) && pymalloc_usable_size(g) == 304);
    CHECK_PATTERN(g, 84, 1);

    /* realloc(p, 0): a valid non-NULL block, p released. */
    void *r = a->realloc(g, 0);
    CHECK(r != NULL);
    a->free(r);

    /* Small -> larger than 512 moves to the system allocator, copying the class size. */
    void *s = a->malloc(100);
    fill(s, 100, 2);
    void *l = a->realloc(s, 1000);
    CHECK(l != NULL && !pymalloc_owns(l));
    CHECK_PATTERN(l, 100, 2);

    /* Large -> any size stays with the system realloc, never back into a pool. */
    void *l2 = a->realloc(l, 10);
    CHECK(l2 != NULL && !pymalloc_owns(l2));
    CHECK_PATTERN(l2, 10, 2);
    void *l3 = a->realloc(l2, 0);
    CHECK(l3 != NULL && !pymalloc_owns(l3));
    a->free(l3);

    /* A failed realloc leaves the block untouched. */
    void *keep = a->malloc(64);
    fill(keep, 64, 3);
    CHECK(a->realloc(keep, ssize_max + 1) == NULL);
    CHECK(a->realloc(keep, SIZE_MAX) == NULL);
    CHECK_PATTERN(keep, 64, 3);
    a->free(keep);

    /* free(NULL) is a no-op. */
    a->free(NULL);

    /* Foreign pointers: libc blocks go to the system allocator; the stack is not ours. */
    void *libc_block = malloc(100);
    CHECK(!pymalloc_owns(libc_block) && pymalloc_usable_size(libc_block) == 0);
    fill(libc_block, 100, 4);
    void *moved = a->realloc(libc_block, 5000);
    CHECK(moved != NULL && !pymalloc_owns(moved));
    CHECK_PATTERN(moved, 100, 4);
    a->free(moved);
    a->free(malloc(16));
    int on_stack = 0;
    CHECK(!pymalloc_owns(&on_stack) && pymalloc_usable_size(&on_stack) == 0);
    CHECK(!pymalloc_owns(NULL) && pymalloc_usable_size(NULL) == 0);
    CHECK(!pymalloc_owns((void *)UINTPTR_MAX));
}

int main(void) {
    const api native = {"pymalloc_*", pymalloc_malloc, pymalloc_calloc, pymalloc_realloc, pymalloc_free};
    const api cpython = {"PyObject_*", PyObject_Malloc, PyObject_Calloc, PyObject_Realloc, PyObject_Free};
    run(&native);
    run(&cpython);

    pymalloc_allocator_ex ex = pymalloc_allocator();
    void *p = ex.malloc(ex.ctx, 24);
    CHECK(p != NULL && pymalloc_owns(p));
    p = ex.realloc(ex.ctx, p, 200);
    CHECK(p != NULL && pymalloc_usable_size(p) == 208);
    ex.free(ex.ctx, p);
    void *c = ex.calloc(ex.ctx, 3, 5);
    CHECK(c != NULL && pymalloc_owns(c));
    ex.free(ex.ctx, c);

    CHECK(pymalloc_check() == 0);
    printf("ok\n");
    return 0;
}

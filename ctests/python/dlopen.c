/* An embedder that loads libpython with dlopen (as PyInstaller's bootloader and plugin hosts
 * do): our constructor ran before any interpreter was there, so it installed nothing. After
 * loading libpython RTLD_GLOBAL, pymalloc_install() before Py_Initialize takes over the
 * allocator and routes the exported PyObject_* names to the interpreter's.
 * Usage: dlopen LIBPYTHON (PYTHONHOME set to its prefix). */
#include <dlfcn.h>
#include <stdio.h>
#include "pymalloc.h"
#include "served.h"

#define CHECK(c) do { if (!(c)) { fprintf(stderr, "dlopen.c:%d: %s\n", __LINE__, #c); return 1; } } while (0)

typedef void (*init_fn)(void);
typedef int (*finalize_fn)(void);
typedef int (*run_fn)(const char *);
typedef void *(*long_fn)(long);
typedef void (*decref_fn)(void *);

#define SYM(type, name) type name = (type)dlsym(py, #name); CHECK(name != NULL)

int main(int argc, char **argv) {
    CHECK(argc == 2);
    CHECK(pymalloc_installed_domains() == 0);
    CHECK(pymalloc_install() == -1); /* no interpreter yet */
    void *py = dlopen(argv[1], RTLD_NOW | RTLD_GLOBAL);
    CHECK(py != NULL);
    SYM(init_fn, Py_Initialize);
    SYM(finalize_fn, Py_FinalizeEx);
    SYM(run_fn, PyRun_SimpleString);
    SYM(long_fn, PyLong_FromLong);
    SYM(decref_fn, Py_DecRef);
    CHECK(pymalloc_install() == 0);
    CHECK(pymalloc_installed_domains() == 3);
    Py_Initialize();
    CHECK(PyRun_SimpleString("import json\n"
                             "d = {str(i): [i, str(i) * 2] for i in range(50000)}\n"
                             "assert json.loads(json.dumps(d)) == d\n") == 0);
    void *o = PyLong_FromLong(123456789);
    CHECK(served_by_pymalloc_rs(o));
    Py_DecRef(o);
    CHECK(Py_FinalizeEx() == 0);
    printf("dlopen ok\n");
    return 0;
}

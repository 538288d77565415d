/* Shared by the embedding programs: whether an object just made by the interpreter came
 * from our pools, with the statistics showing arenas and blocks in use. */
#ifndef CTESTS_PYTHON_SERVED_H
#define CTESTS_PYTHON_SERVED_H

#include "pymalloc.h"

static int served_by_pymalloc_rs(const void *o) {
    pymalloc_stats st;
    pymalloc_get_stats(&st);
    return o != NULL && pymalloc_owns(o) && st.arenas_current > 0 && st.bytes_in_use > 0;
}

#endif

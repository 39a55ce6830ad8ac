// glibc's malloc settings, whose header Swift's Glibc module does not import.
#ifndef DTF_MALLOC_H
#define DTF_MALLOC_H

#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>

/// Keeps up to `bytes` of freed memory at the top of each malloc arena instead of giving it back to
/// the kernel, and serves blocks up to that size from the arenas rather than from mmap. Returns
/// whether glibc took both settings.
static inline int dtf_malloc_keep_freed(int bytes) {
    return mallopt(M_MMAP_THRESHOLD, bytes) == 1 && mallopt(M_TRIM_THRESHOLD, bytes) == 1;
}
#endif

#endif

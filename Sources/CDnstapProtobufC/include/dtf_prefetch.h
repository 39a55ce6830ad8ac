// A cache prefetch hint, which Swift has no spelling for.
#ifndef DTF_PREFETCH_H
#define DTF_PREFETCH_H

/// Asks the CPU to bring the cache line of `address` in for writing, without waiting for it.
static inline void dtf_prefetch_for_write(const void *address) { __builtin_prefetch(address, 1, 3); }

#endif

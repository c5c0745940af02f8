/* alloc_count.h -- counts allocations in a C test, to check that hot paths
 * do not allocate.  Include from exactly one file of a test executable: it
 * defines malloc, calloc and realloc. */
#ifndef CB_ALLOC_COUNT_H
#define CB_ALLOC_COUNT_H

#include <stddef.h>

/* Counts allocations by interposing malloc (glibc's __libc_* do the work).
 * ASan brings its own malloc, so a sanitizer build skips the count. */
#if defined(__SANITIZE_ADDRESS__) || defined(__clang__)
#define COUNTS_ALLOCATIONS 0
static unsigned long allocations;
#else
#define COUNTS_ALLOCATIONS 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static unsigned long allocations;
void *malloc(size_t n);
void *calloc(size_t n, size_t m);
void *realloc(void *p, size_t n);
void *malloc(size_t n) { allocations++; return __libc_malloc(n); }
void *calloc(size_t n, size_t m) { allocations++; return __libc_calloc(n, m); }
void *realloc(void *p, size_t n) { allocations++; return __libc_realloc(p, n); }
#endif

#endif

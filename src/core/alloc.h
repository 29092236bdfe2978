/* Internal allocation wrappers. Every allocation in the library goes through these so that tests can
 * make the Nth one fail (cq_debug_fail_alloc_after) and check that the failure is handled. */
#ifndef CQ_CORE_ALLOC_H
#define CQ_CORE_ALLOC_H

#include <stddef.h>

/* cq_malloc and cq_calloc return CQ_ALLOC_ALIGN-byte aligned blocks (a whole AVX-512 vector or
 * cache line), cq_realloc only malloc's alignment (it serves arrays of pointers and records). */
#define CQ_ALLOC_ALIGN 64

void *cq_malloc(size_t size);
void *cq_calloc(size_t count, size_t size);
void *cq_realloc(void *ptr, size_t size);
void cq_free(void *ptr);

/* Allocates and records "out of memory allocating N bytes for WHAT" on failure. */
void *cq_malloc_for(size_t size, const char *what);
void *cq_calloc_for(size_t count, size_t size, const char *what);

/* Packed weights: blocks the kernels stream over and over (see alloc.c). Same contract as
 * cq_malloc_for (64-byte aligned, failures recorded); free them with cq_free_weights only. */
void *cq_malloc_weights(size_t size, const char *what);
void cq_free_weights(void *ptr);

#endif

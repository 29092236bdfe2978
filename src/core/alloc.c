#define _POSIX_C_SOURCE 200112L /* posix_memalign */
#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cquant/status.h"
#include "cquant/tensor.h"

/* Countdown to an injected failure; negative = never fail. */
static long fail_countdown = -1;

void cq_debug_fail_alloc_after(long n) { fail_countdown = n; }

static int injected_failure(void) {
  if (fail_countdown < 0) return 0;
  if (fail_countdown == 0) return 1;
  fail_countdown--;
  return 0;
}

/* malloc's 16-byte alignment would make 3 of 4 full-vector loads from these arrays straddle two
 * cache lines (per-channel constants read for every output vector: the channels-in-lanes depthwise
 * kernel ran 20% slower on them). */
static void *aligned_block(size_t size) {
  void *p = NULL;
  return posix_memalign(&p, CQ_ALLOC_ALIGN, size ? size : 1) == 0 ? p : NULL;
}

void *cq_malloc(size_t size) {
  if (injected_failure()) return NULL;
  return aligned_block(size);
}

void *cq_calloc(size_t count, size_t size) {
  if (injected_failure()) return NULL;
  if (count == 0 || size == 0) return aligned_block(1);
  if (count > SIZE_MAX / size) return NULL;
  void *p = aligned_block(count * size);
  if (p) memset(p, 0, count * size);
  return p;
}

void *cq_realloc(void *ptr, size_t size) {
  if (injected_failure()) return NULL;
  return realloc(ptr, size ? size : 1);
}

void cq_free(void *ptr) { free(ptr); }

void *cq_malloc_for(size_t size, const char *what) {
  void *p = cq_malloc(size);
  if (!p) cq_fail(CQ_ENOMEM, "out of memory allocating %zu bytes for %s", size, what);
  return p;
}

void *cq_calloc_for(size_t count, size_t size, const char *what) {
  if (size && count > SIZE_MAX / size) {
    cq_fail(CQ_ENOMEM, "allocation of %zu x %zu bytes for %s overflows", count, size, what);
    return NULL;
  }
  void *p = cq_calloc(count, size);
  if (!p) cq_fail(CQ_ENOMEM, "out of memory allocating %zu bytes for %s", count * size, what);
  return p;
}

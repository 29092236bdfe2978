#include "core/alloc.h"

#include <stdint.h>
#include <stdlib.h>

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

void *cq_malloc(size_t size) {
  if (injected_failure()) return NULL;
  return malloc(size ? size : 1);
}

void *cq_calloc(size_t count, size_t size) {
  if (injected_failure()) return NULL;
  if (count == 0 || size == 0) return calloc(1, 1);
  return calloc(count, size);
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

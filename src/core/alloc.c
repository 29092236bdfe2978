#define _DEFAULT_SOURCE /* posix_memalign, madvise */
#include "core/alloc.h"

#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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

/* ---- packed weights ------------------------------------------------------------------------ */

/* A GEMM with one or a few rows streams its packed weights from L2 once per call, and with 4 KiB
 * pages a 1 MiB matrix spans 256 of them: the TLB misses cost ~15% of a 1 x 1024 x 1024 linear
 * layer next to the same weights on one 2 MiB page. So packed weights live in 2 MiB-aligned
 * blocks that the kernel may back with transparent huge pages (MADV_HUGEPAGE; where THP is off
 * they are ordinary memory). Weights up to a block share the current block (bump allocation:
 * a model's weights end up side by side and the waste is at most one partly used block); a block
 * is freed when its last allocation is. Larger weights get blocks of their own, rounded up to
 * whole huge pages. Each block starts with its header, so a pointer finds its block by masking. */
#define WEIGHT_BLOCK ((size_t)2 << 20)
#define WEIGHT_HEAD ((size_t)CQ_ALLOC_ALIGN)

typedef struct weight_block {
  size_t live; /* allocations not yet freed */
  size_t used; /* bytes handed out, header included */
} weight_block;

static pthread_mutex_t weight_lock = PTHREAD_MUTEX_INITIALIZER;
static weight_block *weight_current; /* the block small weights are cut from, or NULL */

static weight_block *new_weight_block(size_t bytes) {
  void *p = NULL;
  if (posix_memalign(&p, WEIGHT_BLOCK, bytes) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  (void)madvise(p, bytes, MADV_HUGEPAGE); /* advice only: without THP the block still works */
#endif
  weight_block *b = p;
  b->live = 0;
  b->used = WEIGHT_HEAD;
  return b;
}

void *cq_malloc_weights(size_t size, const char *what) {
  const size_t need = (size + CQ_ALLOC_ALIGN - 1) & ~(size_t)(CQ_ALLOC_ALIGN - 1);
  void *out = NULL;
  if (size <= SIZE_MAX - 2 * WEIGHT_BLOCK && !injected_failure()) {
    pthread_mutex_lock(&weight_lock);
    if (need > WEIGHT_BLOCK - WEIGHT_HEAD) {
      weight_block *b = new_weight_block((WEIGHT_HEAD + need + WEIGHT_BLOCK - 1) &
                                         ~(WEIGHT_BLOCK - 1));
      if (b) {
        b->live = 1;
        out = (char *)b + WEIGHT_HEAD;
      }
    } else {
      if (!weight_current || WEIGHT_BLOCK - weight_current->used < need) {
        weight_block *b = new_weight_block(WEIGHT_BLOCK);
        if (b) {
          /* the old block stays until its last allocation is freed */
          weight_current = b;
        }
      }
      if (weight_current && WEIGHT_BLOCK - weight_current->used >= need) {
        out = (char *)weight_current + weight_current->used;
        weight_current->used += need;
        weight_current->live++;
      }
    }
    pthread_mutex_unlock(&weight_lock);
  }
  if (!out) cq_fail(CQ_ENOMEM, "out of memory allocating %zu bytes for %s", size, what);
  return out;
}

void cq_free_weights(void *ptr) {
  if (!ptr) return;
  weight_block *b = (weight_block *)((uintptr_t)ptr & ~(uintptr_t)(WEIGHT_BLOCK - 1));
  pthread_mutex_lock(&weight_lock);
  if (--b->live == 0) {
    if (b == weight_current) weight_current = NULL;
    free(b);
  }
  pthread_mutex_unlock(&weight_lock);
}

/* A small pthread pool with a statically partitioned parallel-for.
 *
 * cq_parallel_for(tp, n, max_threads, fn, ctx) splits the items [0, n) into T contiguous ranges,
 * T = min(n, threads of the pool, max_threads), range t = [t*n/T, (t+1)*n/T), and runs
 * fn(ctx, t, begin, end) once per non-empty range, on whichever thread claims range t first: the
 * caller claims ranges as well as the workers, so a worker whose core is busy elsewhere when the
 * job starts costs its share of the work rather than a wait. No two calls with the same t overlap,
 * so per-range scratch may be indexed by t (t < T <= the pool's threads). It returns when all
 * ranges are done. The partition depends only on (n, T) and each item is processed by exactly one
 * call, so kernels that compute every output element inside one item (no split reductions) give
 * bit-identical results for any thread count.
 *
 * Idle workers spin briefly (so back-to-back layers do not pay a wake-up each), then sleep on a
 * condition variable. A pool must not be used by two callers at the same time, and fn must not call
 * cq_parallel_for on the same pool. tp == NULL runs everything on the caller (T = 1). */
#ifndef CQ_CORE_THREADPOOL_H
#define CQ_CORE_THREADPOOL_H

#include <stdint.h>

#include "cquant/status.h"

typedef struct cq_threadpool cq_threadpool;

/* t: the range's index (see above), begin / end: its items */
typedef void (*cq_parallel_fn)(void *ctx, int t, int64_t begin, int64_t end);

/* nthreads = total threads including the caller (nthreads - 1 workers are started); 0 means the
 * number of online CPUs. CQ_EINVAL for nthreads < 0 or > 1024, CQ_ENOMEM / CQ_EIO (thread creation
 * failed, with the reason) otherwise. On failure *out is NULL and nothing is left running. */
cq_status cq_threadpool_create(int nthreads, cq_threadpool **out);

/* Stops and joins the workers. NULL is a no-op. */
void cq_threadpool_destroy(cq_threadpool *tp);

/* Total threads of the pool (1 for NULL). */
int cq_threadpool_threads(const cq_threadpool *tp);

/* See the top of this file. max_threads <= 0 means no limit. n <= 0 does nothing. */
void cq_parallel_for(cq_threadpool *tp, int64_t n, int max_threads, cq_parallel_fn fn, void *ctx);

/* The pool set by cq_set_num_threads (include/cquant/threads.h); NULL when it is one thread. */
cq_threadpool *cq_default_threadpool(void);

/* The range of part t of T over [0, n): [t*n/T, (t+1)*n/T). */
static inline void cq_partition(int64_t n, int parts, int t, int64_t *begin, int64_t *end) {
  *begin = (int64_t)((__int128)n * t / parts);
  *end = (int64_t)((__int128)n * (t + 1) / parts);
}

#endif

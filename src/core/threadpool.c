#include "core/threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cq_cpu_relax() _mm_pause()
#else
#define cq_cpu_relax() ((void)0)
#endif

/* Pause iterations a worker spins before it sleeps (a pause is ~40-140 cycles: tens of us). */
#define CQ_POOL_SPIN 4000

/* The job state, one 64-bit word so that a claim is a single compare-and-swap: the job's
 * generation (bits 32-63), its number of ranges (16-31) and the next unclaimed range (0-15). */
#define STATE(gen, parts, next) (((uint64_t)(gen) << 32) | ((uint64_t)(parts) << 16) | (next))
#define STATE_GEN(s) ((unsigned)((s) >> 32))
#define STATE_PARTS(s) ((int)(((s) >> 16) & 0xffff))
#define STATE_NEXT(s) ((int)((s) & 0xffff))

struct cq_threadpool {
  int nthreads;
  pthread_t *workers;
  int started;
  pthread_mutex_t mutex;
  pthread_cond_t wake;
  _Atomic uint64_t state;
  atomic_int sleepers;
  atomic_int done; /* ranges of the current job finished */
  atomic_int stop; /* set before the generation that tells the workers to exit */
  /* the current job, written before `state` is published and unchanged until it is done */
  cq_parallel_fn fn;
  void *ctx;
  int64_t n;
};

/* Claims and runs ranges of job `gen` until none is left (or a newer job replaced it). A range is
 * claimed by exactly one thread; the job's fields are stable while any range is unfinished. */
static void take_parts(cq_threadpool *tp, unsigned gen) {
  uint64_t s = atomic_load_explicit(&tp->state, memory_order_acquire);
  while (STATE_GEN(s) == gen && STATE_NEXT(s) < STATE_PARTS(s)) {
    if (!atomic_compare_exchange_weak_explicit(&tp->state, &s, s + 1, memory_order_acq_rel,
                                               memory_order_acquire)) {
      continue; /* s was reloaded */
    }
    const int t = STATE_NEXT(s);
    int64_t begin, end;
    cq_partition(tp->n, STATE_PARTS(s), t, &begin, &end);
    if (begin < end) tp->fn(tp->ctx, t, begin, end);
    atomic_fetch_add_explicit(&tp->done, 1, memory_order_release);
    s = atomic_load_explicit(&tp->state, memory_order_acquire);
  }
}

/* Waits for a job newer than `seen` and returns its generation. */
static unsigned wait_for_job(cq_threadpool *tp, unsigned seen) {
  for (int i = 0; i < CQ_POOL_SPIN; i++) {
    unsigned g = STATE_GEN(atomic_load_explicit(&tp->state, memory_order_acquire));
    if (g != seen) return g;
    cq_cpu_relax();
  }
  pthread_mutex_lock(&tp->mutex);
  atomic_fetch_add(&tp->sleepers, 1);
  unsigned g;
  while ((g = STATE_GEN(atomic_load(&tp->state))) == seen) pthread_cond_wait(&tp->wake, &tp->mutex);
  atomic_fetch_sub(&tp->sleepers, 1);
  pthread_mutex_unlock(&tp->mutex);
  return g;
}

static void *worker_main(void *p) {
  cq_threadpool *tp = p;
  unsigned seen = 0;
  for (;;) {
    seen = wait_for_job(tp, seen);
    if (atomic_load_explicit(&tp->stop, memory_order_relaxed)) break;
    take_parts(tp, seen);
  }
  return NULL;
}

/* Publishes a job of `parts` ranges (0: the stop flag) as the next generation and wakes sleeping
 * workers; returns the generation. */
static unsigned publish(cq_threadpool *tp, int parts) {
  const unsigned gen = STATE_GEN(atomic_load_explicit(&tp->state, memory_order_relaxed)) + 1;
  atomic_store(&tp->state, STATE(gen, parts, 0));
  if (atomic_load(&tp->sleepers) > 0) {
    pthread_mutex_lock(&tp->mutex);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mutex);
  }
  return gen;
}

static void stop_workers(cq_threadpool *tp) {
  atomic_store_explicit(&tp->stop, 1, memory_order_relaxed); /* published by the state store */
  publish(tp, 0);
  for (int i = 0; i < tp->started; i++) pthread_join(tp->workers[i], NULL);
  tp->started = 0;
}

cq_status cq_threadpool_create(int nthreads, cq_threadpool **out) {
  *out = NULL;
  if (nthreads < 0 || nthreads > 1024) {
    return cq_fail(CQ_EINVAL, "thread count %d must be between 0 (all CPUs) and 1024", nthreads);
  }
  if (nthreads == 0) {
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    nthreads = cpus > 0 ? (cpus > 1024 ? 1024 : (int)cpus) : 1;
  }
  cq_threadpool *tp = cq_calloc_for(1, sizeof *tp, "thread pool");
  if (!tp) return CQ_ENOMEM;
  tp->nthreads = nthreads;
  pthread_mutex_init(&tp->mutex, NULL);
  pthread_cond_init(&tp->wake, NULL);
  atomic_init(&tp->state, STATE(0, 0, 0));
  atomic_init(&tp->sleepers, 0);
  atomic_init(&tp->done, 0);
  atomic_init(&tp->stop, 0);
  cq_status st = CQ_OK;
  if (nthreads > 1) {
    tp->workers = cq_calloc_for((size_t)nthreads - 1, sizeof *tp->workers, "thread pool workers");
    if (!tp->workers) {
      st = CQ_ENOMEM;
      goto fail;
    }
    for (int i = 0; i < nthreads - 1; i++) {
      int err = pthread_create(&tp->workers[i], NULL, worker_main, tp);
      if (err != 0) {
        st = cq_fail(CQ_EIO, "cannot start thread %d of %d: %s", i + 2, nthreads, strerror(err));
        goto fail;
      }
      tp->started++;
    }
  }
  *out = tp;
  return CQ_OK;
fail:
  stop_workers(tp);
  pthread_cond_destroy(&tp->wake);
  pthread_mutex_destroy(&tp->mutex);
  cq_free(tp->workers);
  cq_free(tp);
  return st;
}

void cq_threadpool_destroy(cq_threadpool *tp) {
  if (!tp) return;
  stop_workers(tp);
  pthread_cond_destroy(&tp->wake);
  pthread_mutex_destroy(&tp->mutex);
  cq_free(tp->workers);
  cq_free(tp);
}

int cq_threadpool_threads(const cq_threadpool *tp) { return tp ? tp->nthreads : 1; }

void cq_parallel_for(cq_threadpool *tp, int64_t n, int max_threads, cq_parallel_fn fn, void *ctx) {
  if (n <= 0) return;
  int parts = cq_threadpool_threads(tp);
  if (max_threads > 0 && parts > max_threads) parts = max_threads;
  if (parts > n) parts = (int)n;
  if (parts <= 1) {
    fn(ctx, 0, 0, n);
    return;
  }
  tp->fn = fn;
  tp->ctx = ctx;
  tp->n = n;
  atomic_store_explicit(&tp->done, 0, memory_order_relaxed);
  /* the caller takes ranges too: a worker that is slow to wake (its core busy with another
   * process) costs its share of the work, not a wait */
  take_parts(tp, publish(tp, parts));
  while (atomic_load_explicit(&tp->done, memory_order_acquire) < parts) cq_cpu_relax();
}

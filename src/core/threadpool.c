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

struct cq_threadpool {
  int nthreads;
  pthread_t *workers;
  int started;
  pthread_mutex_t mutex;
  pthread_cond_t wake;
  atomic_uint generation; /* incremented once per job (and to stop) */
  atomic_int sleepers;
  atomic_int remaining;   /* workers still running the current job */
  int stop;
  /* the current job, written before `generation` is published */
  cq_parallel_fn fn;
  void *ctx;
  int64_t n;
  int parts;
};

typedef struct worker_arg {
  cq_threadpool *tp;
  int index;
} worker_arg;

static void run_part(cq_threadpool *tp, int t) {
  int64_t begin, end;
  cq_partition(tp->n, tp->parts, t, &begin, &end);
  if (begin < end) tp->fn(tp->ctx, t, begin, end);
}

static unsigned wait_for_job(cq_threadpool *tp, unsigned seen) {
  for (int i = 0; i < CQ_POOL_SPIN; i++) {
    unsigned g = atomic_load_explicit(&tp->generation, memory_order_acquire);
    if (g != seen) return g;
    cq_cpu_relax();
  }
  pthread_mutex_lock(&tp->mutex);
  atomic_fetch_add(&tp->sleepers, 1);
  unsigned g;
  while ((g = atomic_load(&tp->generation)) == seen) pthread_cond_wait(&tp->wake, &tp->mutex);
  atomic_fetch_sub(&tp->sleepers, 1);
  pthread_mutex_unlock(&tp->mutex);
  return g;
}

static void *worker_main(void *p) {
  worker_arg *arg = p;
  cq_threadpool *tp = arg->tp;
  int index = arg->index;
  unsigned seen = 0;
  for (;;) {
    seen = wait_for_job(tp, seen);
    if (tp->stop) break;
    if (index < tp->parts) run_part(tp, index);
    atomic_fetch_sub_explicit(&tp->remaining, 1, memory_order_release);
  }
  cq_free(arg);
  return NULL;
}

/* Publishes the job (or the stop flag) and wakes sleeping workers. */
static void publish(cq_threadpool *tp) {
  atomic_fetch_add(&tp->generation, 1);
  if (atomic_load(&tp->sleepers) > 0) {
    pthread_mutex_lock(&tp->mutex);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mutex);
  }
}

static void stop_workers(cq_threadpool *tp) {
  tp->stop = 1;
  publish(tp);
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
  atomic_init(&tp->generation, 0);
  atomic_init(&tp->sleepers, 0);
  atomic_init(&tp->remaining, 0);
  cq_status st = CQ_OK;
  if (nthreads > 1) {
    tp->workers = cq_calloc_for((size_t)nthreads - 1, sizeof *tp->workers, "thread pool workers");
    if (!tp->workers) {
      st = CQ_ENOMEM;
      goto fail;
    }
    for (int i = 0; i < nthreads - 1; i++) {
      worker_arg *arg = cq_malloc_for(sizeof *arg, "thread pool worker");
      if (!arg) {
        st = CQ_ENOMEM;
        goto fail;
      }
      arg->tp = tp;
      arg->index = i + 1;
      int err = pthread_create(&tp->workers[i], NULL, worker_main, arg);
      if (err != 0) {
        cq_free(arg);
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
  tp->parts = parts;
  /* every worker acknowledges every job (also those with no part) so none misses the next one */
  atomic_store_explicit(&tp->remaining, tp->nthreads - 1, memory_order_relaxed);
  publish(tp);
  run_part(tp, 0);
  while (atomic_load_explicit(&tp->remaining, memory_order_acquire) > 0) cq_cpu_relax();
}

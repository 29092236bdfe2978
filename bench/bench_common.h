/* Timing helpers shared by the benchmarks in bench/ (each benchmark source is its own program):
 * clocks, median and minimum of repetitions, and the batch calibration that makes one timed batch
 * last about --min-ms. */
#ifndef CQ_BENCH_COMMON_H
#define CQ_BENCH_COMMON_H

#include <math.h>
#include <stdlib.h>
#include <time.h>

static inline double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* The calling thread's CPU time: leaves out the time it was not running (one-thread figures on a
 * machine shared with other jobs). */
static inline double thread_cpu_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A 64-byte aligned buffer (free with free): how cquant allocates tensors and oneDNN its own
 * memory, so neither library meets rows that straddle cache lines only because of the harness. */
static inline void *bench_alloc(size_t bytes) {
  return aligned_alloc(64, (bytes + 63) / 64 * 64 + 64);
}

static inline int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static inline double minimum(const double *v, int n) {
  double m = v[0];
  for (int i = 1; i < n; i++) m = v[i] < m ? v[i] : m;
  return m;
}

/* sorts v */
static inline double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static inline void pause_ms(int ms) {
  struct timespec t = {0, ms * 1000000L};
  nanosleep(&t, NULL);
}

typedef void (*call_fn)(void *ctx);

/* Calls per batch so that one batch lasts about min_ms. */
static inline long calibrate(call_fn fn, void *ctx, double min_ms) {
  long calls = 1;
  for (;;) {
    double t0 = now_s();
    for (long i = 0; i < calls; i++) fn(ctx);
    double dt = (now_s() - t0) * 1e3;
    if (dt >= min_ms * 0.5 || calls > (1L << 24)) {
      long want = (long)ceil((double)calls * min_ms / (dt > 1e-6 ? dt : 1e-6));
      return want < 1 ? 1 : want;
    }
    calls *= 4;
  }
}

/* Milliseconds per call, wall clock; *cpu_ms (if not NULL) gets the calling thread's CPU time per
 * call. */
static inline double time_batch_cpu(call_fn fn, void *ctx, long calls, double *cpu_ms) {
  const double c0 = thread_cpu_s(), t0 = now_s();
  for (long i = 0; i < calls; i++) fn(ctx);
  const double t1 = now_s(), c1 = thread_cpu_s();
  if (cpu_ms) *cpu_ms = (c1 - c0) * 1e3 / (double)calls;
  return (t1 - t0) * 1e3 / (double)calls;
}

static inline double time_batch(call_fn fn, void *ctx, long calls) {
  return time_batch_cpu(fn, ctx, calls, NULL);
}

#endif

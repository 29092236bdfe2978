/* Timing helpers shared by the benchmarks in bench/ (each benchmark source is its own program):
 * clocks, median and minimum of repetitions, and the batch calibration that makes one timed batch
 * last about --min-ms. */
#ifndef CQ_BENCH_COMMON_H
#define CQ_BENCH_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

/* ---- the weight-streaming floor ---------------------------------------------------------------
 * One pass of plain vector loads over `bytes` of weights (every byte read once, nothing computed):
 * no GEMM that reads each weight once can run faster than this on one core. With few rows
 * (M = 1, 16) GEMMs stream their weights from L2, so the floor bounds the ratio any
 * implementation can reach against another. Returns a sum of the bytes, for a sink. */
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static inline uint64_t bench_stream_avx512(const uint8_t *w,
                                                                             size_t bytes) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  size_t i = 0;
  for (; i + 256 <= bytes; i += 256) {
    a0 = _mm512_add_epi32(a0, _mm512_load_si512((const void *)(w + i)));
    a1 = _mm512_add_epi32(a1, _mm512_load_si512((const void *)(w + i + 64)));
    a2 = _mm512_add_epi32(a2, _mm512_load_si512((const void *)(w + i + 128)));
    a3 = _mm512_add_epi32(a3, _mm512_load_si512((const void *)(w + i + 192)));
  }
  uint64_t s = (uint64_t)_mm512_reduce_add_epi32(
      _mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)));
  for (; i < bytes; i++) s += w[i];
  return s;
}
#endif

static inline uint64_t bench_weights_read(const uint8_t *w, size_t bytes) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("avx512f")) return bench_stream_avx512(w, bytes);
#endif
  uint64_t s = 0;
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t v;
    memcpy(&v, w + i, 8);
    s += v;
  }
  for (; i < bytes; i++) s += w[i];
  return s;
}

#endif

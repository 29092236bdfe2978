/* Timing loops shared by the bench command's modes (bench_timing.h). */
#include "bench_timing.h"

#include <math.h>
#include <stdlib.h>
#include <time.h>

double bench_now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static double time_calls(bench_call_fn call, void *ctx, const cq_status *failed, long calls) {
  const double t0 = bench_now_s();
  for (long i = 0; i < calls && *failed == CQ_OK; i++) call(ctx);
  return (bench_now_s() - t0) * 1e3 / (double)calls;
}

cq_status bench_loop(bench_call_fn call, void *ctx, const cq_status *failed, int reps,
                     double min_ms, double *median_ms, double *min_out, long *calls_out) {
  call(ctx); /* warm-up */
  long calls = 1;
  for (;;) {
    const double ms = time_calls(call, ctx, failed, calls) * (double)calls;
    if (*failed != CQ_OK || ms >= min_ms * 0.5 || calls > (1L << 24)) {
      const long want = (long)ceil((double)calls * min_ms / (ms > 1e-6 ? ms : 1e-6));
      calls = want < 1 ? 1 : want;
      break;
    }
    calls *= 4;
  }
  double *times = malloc(sizeof(double) * (size_t)reps);
  if (!times) return cq_fail(CQ_ENOMEM, "out of memory");
  for (int i = 0; i < reps; i++) times[i] = time_calls(call, ctx, failed, calls);
  qsort(times, (size_t)reps, sizeof *times, cmp_double);
  *median_ms = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
  *min_out = times[0];
  *calls_out = calls;
  free(times);
  return *failed;
}


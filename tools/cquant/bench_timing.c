/* Timing loops shared by the bench command's modes (bench_timing.h). */
#include "bench_timing.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

int bench_timing_option(int argc, char **argv, int *i, bench_timing *t) {
  const char *a = argv[*i];
  if (strcmp(a, "--threads") && strcmp(a, "--reps") && strcmp(a, "--min-ms")) return -1;
  if (*i + 1 >= argc) return cli_usage_error("bench", "%s needs a value", a);
  const char *v = argv[++*i];
  char *end;
  if (!strcmp(a, "--threads")) {
    const long n = strtol(v, &end, 10);
    if (*end || end == v || n < 1 || n > 1024) {
      return cli_usage_error("bench", "--threads must be 1..1024");
    }
    t->threads = (int)n;
  } else if (!strcmp(a, "--reps")) {
    const long n = strtol(v, &end, 10);
    if (*end || end == v || n < 1 || n > 10000) {
      return cli_usage_error("bench", "--reps must be 1..10000");
    }
    t->reps = (int)n;
  } else {
    const double ms = strtod(v, &end);
    if (*end || end == v || !(ms >= 0.0 && ms <= 60000.0)) {
      return cli_usage_error("bench", "--min-ms must be a number of milliseconds in [0, 60000]");
    }
    t->min_ms = ms;
  }
  return CLI_OK;
}

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


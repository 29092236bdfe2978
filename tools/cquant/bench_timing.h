/* Timing for `cquant bench`: calls per repetition chosen so that one repetition lasts at least
 * min_ms, then the median and minimum milliseconds per call over the repetitions. */
#ifndef CQ_TOOL_BENCH_TIMING_H
#define CQ_TOOL_BENCH_TIMING_H

#include "cquant/status.h"

/* The options every bench mode takes: --threads T (1..1024), --reps R (1..10000), --min-ms MS
 * (0..60000). */
typedef struct bench_timing {
  int threads, reps;
  double min_ms;
} bench_timing;

/* When argv[*i] is one of those options: reads its value (advancing *i) into *t and returns CLI_OK,
 * or prints the usage error and returns CLI_USAGE; -1 when argv[*i] is something else. */
int bench_timing_option(int argc, char **argv, int *i, bench_timing *t);

/* One call of the timed operation; records a failure in the status its context points to. */
typedef void (*bench_call_fn)(void *ctx);

double bench_now_s(void);
/* Warm-up call, calibration of the calls per repetition, then `reps` timed repetitions. Returns
 * *failed (the first failure of a call) or CQ_ENOMEM. */
cq_status bench_loop(bench_call_fn call, void *ctx, const cq_status *failed, int reps,
                     double min_ms, double *median_ms, double *min_out, long *calls_out);

#endif

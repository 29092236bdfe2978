/* Timing for `cquant bench`: calls per repetition chosen so that one repetition lasts at least
 * min_ms, then the median and minimum milliseconds per call over the repetitions. */
#ifndef CQ_TOOL_BENCH_TIMING_H
#define CQ_TOOL_BENCH_TIMING_H

#include "cquant/status.h"

/* One call of the timed operation; records a failure in the status its context points to. */
typedef void (*bench_call_fn)(void *ctx);

double bench_now_s(void);
/* Warm-up call, calibration of the calls per repetition, then `reps` timed repetitions. Returns
 * *failed (the first failure of a call) or CQ_ENOMEM. */
cq_status bench_loop(bench_call_fn call, void *ctx, const cq_status *failed, int reps,
                     double min_ms, double *median_ms, double *min_out, long *calls_out);

#endif

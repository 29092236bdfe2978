/* Latency and size of a demo variant.
 *
 * Latency: one forward() on a fixed batch of test images (the input tensor wraps the images, so
 * the time covers what the model does: quantizing the input, every layer, dequantizing the
 * logits). Each repetition times a group of calls lasting at least 2 ms (a batch-1 forward can be
 * far below the clock's useful resolution), and the median over the repetitions is reported.
 *
 * The clock: with one thread (the default; the float GEMM's OpenBLAS is held to one thread too,
 * cmd_demo.c) all the work runs on the calling thread, and its CPU time is what the forward costs
 * on a core of its own. Wall-clock time would add whatever the other processes of a shared machine
 * take: on a busy two-core machine a 2 ms forward is preempted on most calls, so even the median
 * measures the neighbours, and it does so unevenly (a short int8 call fits between preemptions, a
 * long float call does not). With several threads the work is spread over threads and the wall
 * clock is used. */
#include <stdlib.h>
#include <time.h>

#include "demo.h"

#define MIN_GROUP_SECONDS 2e-3

static clockid_t latency_clock(void) {
  return cq_get_num_threads() == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
}

const char *demo_latency_clock_name(void) {
  return latency_clock() == CLOCK_MONOTONIC ? "wall" : "thread_cpu";
}

static double now_seconds(clockid_t clock) {
  struct timespec t;
  clock_gettime(clock, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static cq_status forward_n(cq_module *model, cq_ctx *ctx, cq_tensor *x, int64_t calls) {
  for (int64_t i = 0; i < calls; i++) {
    cq_tensor *y = NULL;
    cq_status st = cq_module_forward1(model, ctx, x, &y);
    cq_ctx_reset(ctx);
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

cq_status demo_latency_ms(demo_model_kind kind, cq_module *model, cq_ctx *ctx, const demo_split *s,
                          int64_t batch, int reps, double *ms) {
  if (batch > s->n) {
    return cq_fail(CQ_EINVAL, "demo: latency at batch %lld needs as many test images (have %lld)",
                   (long long)batch, (long long)s->n);
  }
  cq_tensor *x = NULL;
  double *times = malloc(sizeof(double) * (size_t)(reps > 0 ? reps : 1));
  cq_status st = times ? CQ_OK : cq_fail(CQ_ENOMEM, "demo: out of memory timing");
  if (st == CQ_OK) st = demo_input(kind, s, 0, batch, &x);
  cq_module_train(model, 0);
  cq_ctx_set_grad(ctx, 0);
  /* Warm-up (caches, lazily packed weights), which also sizes the group of calls per repetition. */
  const clockid_t clock = latency_clock();
  int64_t calls = 1;
  double t0 = now_seconds(clock);
  if (st == CQ_OK) st = forward_n(model, ctx, x, 2);
  double one = (now_seconds(clock) - t0) / 2;
  if (one < MIN_GROUP_SECONDS) calls = (int64_t)(MIN_GROUP_SECONDS / (one > 1e-7 ? one : 1e-7)) + 1;
  for (int r = 0; r < reps && st == CQ_OK; r++) {
    t0 = now_seconds(clock);
    st = forward_n(model, ctx, x, calls);
    times[r] = (now_seconds(clock) - t0) * 1e3 / (double)calls;
  }
  if (st == CQ_OK) {
    qsort(times, (size_t)reps, sizeof(double), compare_double);
    *ms = reps % 2 ? times[reps / 2] : 0.5 * (times[reps / 2 - 1] + times[reps / 2]);
  }
  cq_tensor_free(x);
  free(times);
  return st;
}

static cq_status add_bytes(const char *key, cq_named_tensor *t, void *user) {
  (void)key;
  int64_t *total = user;
  *total += (int64_t)cq_tensor_nbytes(t->tensor);
  if (t->tensor->qparams) {
    *total += t->tensor->qparams->count * (int64_t)(sizeof(float) + sizeof(int32_t));
  }
  return CQ_OK;
}

int64_t demo_model_bytes(cq_module *model) {
  int64_t total = 0;
  cq_module_visit_tensors(model, add_bytes, &total);
  return total;
}

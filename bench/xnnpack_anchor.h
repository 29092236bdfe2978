/* XNNPACK as a benchmark anchor: the helpers bench_qgemm.c and bench_qconv.c share. A header of
 * static inline functions, because every .c file in bench/ is built as its own executable.
 *
 * Only with CQ_HAVE_XNNPACK (set by CMakeLists.txt when cmake/dependencies.cmake finds Debian 12's
 * libxnnpack-dev and libpthreadpool-dev); without it this header declares nothing.
 *
 * What the benchmarks rely on, for the XNNPACK version they are written against (0.0~git20220216):
 * - xnn_initialize must succeed once before any operator is created (xnn_anchor_init);
 * - operators pack their weights when they are created, and setup binds the batch, the buffers and
 *   the thread pool (it plans the tiling for the pool's thread count, so it is redone when the
 *   pool changes), then xnn_run_operator runs the bound computation;
 * - XNNPACK may read up to XNN_EXTRA_BYTES past the end of an input: inputs are allocated with that
 *   much slack;
 * - a pthreadpool of T threads runs the work on the caller plus T - 1 workers; NULL runs everything
 *   on the caller (what the benchmarks pass for one thread). */
#ifndef CQ_BENCH_XNNPACK_ANCHOR_H
#define CQ_BENCH_XNNPACK_ANCHOR_H

#ifdef CQ_HAVE_XNNPACK
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <pthreadpool.h>
#include <xnnpack.h>

#define XNN_ANCHOR_REASON_BYTES 256

static inline const char *xnn_anchor_status_name(enum xnn_status s) {
  switch (s) {
    case xnn_status_success: return "xnn_status_success";
    case xnn_status_uninitialized: return "xnn_status_uninitialized";
    case xnn_status_invalid_parameter: return "xnn_status_invalid_parameter";
    case xnn_status_invalid_state: return "xnn_status_invalid_state";
    case xnn_status_unsupported_parameter: return "xnn_status_unsupported_parameter";
    case xnn_status_unsupported_hardware: return "xnn_status_unsupported_hardware";
    case xnn_status_out_of_memory: return "xnn_status_out_of_memory";
  }
  return "an unknown xnn_status";
}

/* Initializes XNNPACK once per process. Returns 0, or -1 with the reason in reason[]. */
static inline int xnn_anchor_init(char reason[XNN_ANCHOR_REASON_BYTES]) {
  static int state = 0; /* 0 not tried, 1 ready, -1 failed */
  static enum xnn_status failure = xnn_status_success;
  if (state == 0) {
    failure = xnn_initialize(NULL);
    state = failure == xnn_status_success ? 1 : -1;
  }
  if (state < 0) {
    snprintf(reason, XNN_ANCHOR_REASON_BYTES, "xnn_initialize returned %s",
             xnn_anchor_status_name(failure));
    return -1;
  }
  return 0;
}

/* The reason an operator could not be created, in words: the status, and for the requantization
 * scale the range this XNNPACK version accepts (input_scale * kernel_scale / output_scale in
 * [2^-32, 256)), which is the limit the benchmarks' quantization parameters can run into. */
static inline void xnn_anchor_create_failed(char reason[XNN_ANCHOR_REASON_BYTES], const char *what,
                                            enum xnn_status s, double requant_scale) {
  if (s == xnn_status_unsupported_parameter &&
      (requant_scale >= 256.0 || requant_scale < ldexp(1.0, -32))) {
    snprintf(reason, XNN_ANCHOR_REASON_BYTES,
             "%s returned %s: requantization scale %g is outside XNNPACK's [2^-32, 256)", what,
             xnn_anchor_status_name(s), requant_scale);
  } else {
    snprintf(reason, XNN_ANCHOR_REASON_BYTES, "%s returned %s", what, xnn_anchor_status_name(s));
  }
}

/* A pool of `threads` threads counting the caller, or NULL for one thread. Returns 0, or -1 when
 * the pool could not be created. */
static inline int xnn_anchor_pool_create(int threads, pthreadpool_t *out) {
  *out = NULL;
  if (threads <= 1) return 0;
  *out = pthreadpool_create((size_t)threads);
  return *out ? 0 : -1;
}

static inline void xnn_anchor_pool_destroy(pthreadpool_t pool) {
  if (pool) pthreadpool_destroy(pool);
}

static inline void xnn_anchor_nothing(void *ctx, size_t i) {
  (void)ctx;
  (void)i;
}

/* After a timed batch: one empty parallel call with PTHREADPOOL_FLAG_YIELD_WORKERS sends the pool's
 * workers to sleep at once. Otherwise they spin-wait for more work for tens of milliseconds, which
 * on a machine with few cores takes CPU time from the next library's batch. */
static inline void xnn_anchor_pool_park(pthreadpool_t pool) {
  if (pool) pthreadpool_parallelize_1d(pool, xnn_anchor_nothing, NULL, 1, PTHREADPOOL_FLAG_YIELD_WORKERS);
}

/* One set-up operator, run as a benchmark call (the call_fn signature of the bench files). */
typedef struct xnn_anchor_run {
  xnn_operator_t op;
  pthreadpool_t pool;
  int failed;
} xnn_anchor_run;

static inline void xnn_anchor_call(void *ctx) {
  xnn_anchor_run *r = ctx;
  if (xnn_run_operator(r->op, r->pool) != xnn_status_success) r->failed = 1;
}

/* uint8 values with zero point z as int8 values with zero point z - 128: the same real numbers
 * (v - z) * scale, by flipping the sign bit. Used in both directions. */
static inline void xnn_anchor_flip_sign(const void *src, void *dst, size_t n) {
  const uint8_t *s = src;
  uint8_t *d = dst;
  for (size_t i = 0; i < n; i++) d[i] = (uint8_t)(s[i] ^ 0x80u);
}

/* How two uint8 outputs differ: elements that differ and the largest difference. */
static inline void xnn_anchor_compare(const uint8_t *a, const uint8_t *b, size_t n, long *differing,
                                      int *max_difference) {
  long count = 0;
  int largest = 0;
  for (size_t i = 0; i < n; i++) {
    const int d = abs((int)a[i] - (int)b[i]);
    count += d != 0;
    largest = d > largest ? d : largest;
  }
  *differing = count;
  *max_difference = largest;
}

/* Prints a JSON string body (no quotes) with " and \ escaped. */
static inline void xnn_anchor_print_escaped(const char *s) {
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') putchar('\\');
    putchar(*s);
  }
}

#endif /* CQ_HAVE_XNNPACK */
#endif /* CQ_BENCH_XNNPACK_ANCHOR_H */

/* The quantize kernels of each ISA, and quint8 quantization of a whole float array with them. */
#include <stdatomic.h>

#include "kernels/quantize/quantize.h"

cq_quantize_kernels cq_quantize_kernels_for(cq_isa isa) {
  cq_quantize_kernels k = {cq_f32_range__scalar, cq_f32_qu8__scalar};
  switch (isa) {
#if CQ_ARCH_X86
    case CQ_ISA_AMX:
    case CQ_ISA_AVX512VNNI:
      k.range = cq_f32_range__avx512;
      k.quantize = cq_f32_qu8__avx512;
      break;
    case CQ_ISA_AVX2:
      k.range = cq_f32_range__avx2;
      k.quantize = cq_f32_qu8__avx2;
      break;
#endif
#if CQ_ARCH_ARM64
    case CQ_ISA_NEON:
    case CQ_ISA_NEONDOT:
      k.range = cq_f32_range__neon;
      k.quantize = cq_f32_qu8__neon;
      break;
#endif
    default:
      break;
  }
  return k;
}

/* Floats per check-then-quantize step: 16 KiB, still in L1 when quantized. */
#define QUANTIZE_CHUNK 4096
/* From this many floats the threads share the work. */
#define QUANTIZE_MIN_PARALLEL 32768

typedef struct quantize_job {
  cq_quantize_kernels k;
  const float *x;
  size_t n;
  float inv_scale;
  int32_t zp;
  uint8_t *y;
  atomic_int bad;
} quantize_job;

/* Chunks [begin, end) of the job; sets bad (and stops) at a chunk the vector form cannot do. */
static void quantize_part(void *ctx, int t, int64_t begin, int64_t end) {
  (void)t;
  quantize_job *j = ctx;
  /* x * inv_scale at or past 2^63 in magnitude is another case quantize_val maps to INT64_MIN */
  const float big = 4.6e18f; /* < 2^62 */
  for (int64_t c = begin; c < end; c++) {
    if (atomic_load_explicit(&j->bad, memory_order_relaxed)) return;
    const size_t i = (size_t)c * QUANTIZE_CHUNK;
    const size_t len = j->n - i < QUANTIZE_CHUNK ? j->n - i : QUANTIZE_CHUNK;
    float lo, hi;
    int nonfinite = 0;
    j->k.range(j->x + i, 1, len, len, &lo, &hi, &nonfinite);
    if (nonfinite || !(hi * j->inv_scale < big) || !(lo * j->inv_scale > -big)) {
      atomic_store_explicit(&j->bad, 1, memory_order_relaxed);
      return;
    }
    j->k.quantize(j->x + i, 1, len, len, j->inv_scale, j->zp, j->y + i, len);
  }
}

int cq_f32_quantize_qu8_finite(cq_isa isa, const float *x, size_t n, float inv_scale, int32_t zp,
                               uint8_t *y, cq_threadpool *tp) {
  if (n == 0) return 1;
  quantize_job j = {.k = cq_quantize_kernels_for(isa), .x = x, .n = n, .inv_scale = inv_scale,
                    .zp = zp, .y = y};
  atomic_init(&j.bad, 0);
  cq_parallel_for(n >= QUANTIZE_MIN_PARALLEL ? tp : NULL,
                  (int64_t)((n + QUANTIZE_CHUNK - 1) / QUANTIZE_CHUNK), 0, quantize_part, &j);
  return !atomic_load(&j.bad);
}

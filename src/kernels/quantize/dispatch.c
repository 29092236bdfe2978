/* The quantize kernels of each ISA, and quint8 quantization of a whole float array with them. */
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

int cq_f32_quantize_qu8_finite(cq_isa isa, const float *x, size_t n, float inv_scale, int32_t zp,
                               uint8_t *y) {
  if (n == 0) return 1;
  const cq_quantize_kernels k = cq_quantize_kernels_for(isa);
  float lo, hi;
  int nonfinite = 0;
  k.range(x, 1, n, n, &lo, &hi, &nonfinite);
  /* x * inv_scale at or past 2^63 in magnitude is another case quantize_val maps to INT64_MIN */
  const float big = 4.6e18f; /* < 2^62 */
  if (nonfinite || !(hi * inv_scale < big) || !(lo * inv_scale > -big)) return 0;
  k.quantize(x, 1, n, n, inv_scale, zp, y, n);
  return 1;
}

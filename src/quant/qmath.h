/* Scalar building blocks of PyTorch's quantization arithmetic, inline so kernels and observers use
 * one definition. Rounding is round-half-to-even in the default FP environment (nearbyint), as
 * torch.round and x86's cvtps2dq do. */
#ifndef CQ_QUANT_QMATH_H
#define CQ_QUANT_QMATH_H

#include <math.h>
#include <stdint.h>

static inline float cq_rne_f32(float v) { return nearbyintf(v); }

/* x86 float->int32 conversion: NaN, +-Inf and out-of-range values give INT32_MIN (the "integer
 * indefinite" value), which PyTorch's results on this platform inherit. */
static inline int32_t cq_f32_to_i32_x86(float v) {
  if (!(v >= -2147483648.0f && v < 2147483648.0f)) return INT32_MIN;
  return (int32_t)v;
}

/* quantize_val: clamp(rne(x * inv_scale) + zp, lo, hi), with NaN/Inf giving `lo` (the dtype
 * minimum on x86) and finite values beyond int range saturating. inv_scale = f32(1 / scale). */
static inline int32_t cq_quantize_val(float x, float inv_scale, int32_t zp, int32_t lo, int32_t hi) {
  float r = cq_rne_f32(x * inv_scale);
  if (isnan(r) || isinf(r)) return lo;
  double q = (double)r + (double)zp;
  if (q < lo) return lo;
  if (q > hi) return hi;
  return (int32_t)q;
}

#endif

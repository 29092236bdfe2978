/* Scalar building blocks of PyTorch's quantization arithmetic, inline so kernels and observers use
 * one definition. Rounding is round-half-to-even in the default FP environment (nearbyint), as
 * torch.round and x86's cvtps2dq do.
 *
 * PyTorch 1.13 on x86 without FBGEMM (Debian's build) quantizes every element with ATen's scalar
 * quantize_val: q = int64(zp + nearbyint(x * inv_scale)) where the addition happens in float32 (the
 * int64 zero point is converted to float) and the float->int64 conversion of NaN, +-Inf or anything
 * out of int64 range gives INT64_MIN (x86's "integer indefinite"); the result is then clamped to the
 * dtype range. These helpers reproduce exactly that. */
#ifndef CQ_QUANT_QMATH_H
#define CQ_QUANT_QMATH_H

#include <math.h>
#include <stdint.h>

static inline float cq_rne_f32(float v) { return nearbyintf(v); }

/* x86 float->int32 conversion: NaN, +-Inf and out-of-range values give INT32_MIN. */
static inline int32_t cq_f32_to_i32_x86(float v) {
  if (!(v >= -2147483648.0f && v < 2147483648.0f)) return INT32_MIN;
  return (int32_t)v;
}

/* x86 float->int64 conversion (truncating): NaN, +-Inf and out-of-range values give INT64_MIN. */
static inline int64_t cq_f32_to_i64_x86(float v) {
  if (!(v >= -9223372036854775808.0f && v < 9223372036854775808.0f)) return INT64_MIN;
  return (int64_t)v;
}

/* The unclamped quantized value int64(f32(zp + rne(x * inv_scale))). */
static inline int64_t cq_quantize_unclamped(float x, float inv_scale, int32_t zp) {
  return cq_f32_to_i64_x86((float)zp + cq_rne_f32(x * inv_scale));
}

/* quantize_val: the unclamped value clamped to [lo, hi]. inv_scale = f32(1 / f32(scale)). */
static inline int32_t cq_quantize_val(float x, float inv_scale, int32_t zp, int32_t lo, int32_t hi) {
  int64_t q = cq_quantize_unclamped(x, inv_scale, zp);
  if (q < lo) return lo;
  if (q > hi) return hi;
  return (int32_t)q;
}

/* quantize_val_float_qparams: lrintf(x * inv + zp) stored into a C int (so the 64-bit result wraps
 * to its low 32 bits), then clamped. */
static inline int32_t cq_quantize_val_float_zp(float x, float inv_scale, float zp, int32_t lo,
                                               int32_t hi) {
  float v = x * inv_scale + zp;
  float r = cq_rne_f32(v);
  int64_t l = cq_f32_to_i64_x86(r);
  int32_t q = (int32_t)(uint32_t)(uint64_t)l;
  if (q < lo) return lo;
  if (q > hi) return hi;
  return q;
}

#endif

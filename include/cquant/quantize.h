/* Quantize, dequantize and fake-quantize, bit-exact with PyTorch 1.13 on x86.
 *
 * quantize:    q = clamp(int64(f32(zp + rne(f32(x * f32(1 / scale))))), dtype range)
 *              (multiply by the float32 reciprocal, round half to even, add the zero point after
 *              rounding, in float32 as ATen's quantize_val does). NaN, +-Inf and values beyond int64
 *              give the dtype minimum, as x86's float->int64 conversion does.
 * dequantize:  x = f32(scale) * f32(q - zp)
 * fake-quant:  y = (clamp(q, qmin, qmax) - zp) * scale with q unclamped as above; the
 *              straight-through backward passes dy where qmin <= q <= qmax and 0 elsewhere.
 * Per-channel variants take the tensor as [outer, channels, inner] (the channel axis in the middle).
 * Output buffers hold one element per value: uint8 for quint8/quint4x2, int8 for qint8, int32 for
 * qint32. Kernels here never allocate. */
#ifndef CQUANT_QUANTIZE_H
#define CQUANT_QUANTIZE_H

#include <stdint.h>

#include "cquant/qparams.h"
#include "cquant/status.h"
#include "cquant/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* scale must be finite and > 0, zp inside the dtype range (CQ_EINVAL otherwise). */
CQ_API cq_status cq_quantize_per_tensor(const float *x, int64_t n, float scale, int32_t zero_point,
                                        cq_qdtype dtype, void *out);
CQ_API cq_status cq_dequantize_per_tensor(const void *q, int64_t n, float scale, int32_t zero_point,
                                          cq_qdtype dtype, float *out);

/* zero_points_float != NULL selects the float-qparams rule (zero point added before rounding,
 * scale 0 treated as reciprocal 1). */
CQ_API cq_status cq_quantize_per_channel(const float *x, int64_t outer, int64_t channels,
                                         int64_t inner, const float *scales,
                                         const int32_t *zero_points,
                                         const float *zero_points_float, cq_qdtype dtype,
                                         void *out);
CQ_API cq_status cq_dequantize_per_channel(const void *q, int64_t outer, int64_t channels,
                                           int64_t inner, const float *scales,
                                           const int32_t *zero_points,
                                           const float *zero_points_float, cq_qdtype dtype,
                                           float *out);

/* Tensor forms: quantize `x` (float32, any shape) with `qp` (per-channel along qp->axis) into a new
 * tensor of the storage dtype with a copy of qp attached; dequantize a tensor that carries qparams. */
CQ_API cq_status cq_quantize_tensor(const cq_tensor *x, const cq_qparams *qp, cq_tensor **out);
CQ_API cq_status cq_dequantize_tensor(const cq_tensor *q, cq_tensor **out);

/* Storage dtype of a quantized dtype (CQ_U8, CQ_S8, CQ_S32); CQ_EINVAL for float dtypes. */
CQ_API cq_status cq_qdtype_storage(cq_qdtype dtype, cq_dtype *storage);

/* Fake quantization forward; `mask` (may be NULL) receives 1 where the gradient passes.
 * Requires quant_min <= zero_point <= quant_max and scale > 0. */
CQ_API cq_status cq_fake_quantize_per_tensor(const float *x, int64_t n, float scale,
                                             int32_t zero_point, int32_t quant_min,
                                             int32_t quant_max, float *y, uint8_t *mask);
CQ_API cq_status cq_fake_quantize_per_channel(const float *x, int64_t outer, int64_t channels,
                                              int64_t inner, const float *scales,
                                              const int32_t *zero_points, int32_t quant_min,
                                              int32_t quant_max, float *y, uint8_t *mask);
/* Straight-through estimator: dx = dy * mask. dx may alias dy. */
CQ_API void cq_fake_quantize_backward(const float *dy, const uint8_t *mask, int64_t n, float *dx);

#ifdef __cplusplus
}
#endif
#endif

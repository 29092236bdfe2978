/* quantize / dequantize / fake-quantize per tensor and per channel (torch-1.13-semantics.md 2.1-2.4). */
#include "cquant/quantize.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "quant/qmath.h"

cq_status cq_qdtype_storage(cq_qdtype dtype, cq_dtype *storage) {
  switch (dtype) {
    case CQ_QUINT8:
    case CQ_QUINT4X2: *storage = CQ_U8; return CQ_OK;
    case CQ_QINT8: *storage = CQ_S8; return CQ_OK;
    case CQ_QINT32: *storage = CQ_S32; return CQ_OK;
    default:
      return cq_fail(CQ_EINVAL, "%s is not a quantized dtype", cq_qdtype_name(dtype));
  }
}

static cq_status check_scale_zp(float scale, int32_t zp, cq_qdtype dtype, int64_t *lo,
                                int64_t *hi) {
  cq_status st = cq_qdtype_range(dtype, lo, hi);
  if (st != CQ_OK) return st;
  if (!(scale > 0.0f) || isinf(scale)) {
    return cq_fail(CQ_EINVAL, "scale %g must be finite and positive", scale);
  }
  if (zp < *lo || zp > *hi) {
    return cq_fail(CQ_EINVAL, "zero point %d is outside the %s range [%lld, %lld]", zp,
                   cq_qdtype_name(dtype), (long long)*lo, (long long)*hi);
  }
  return CQ_OK;
}

static inline void store_q(void *out, cq_qdtype dtype, int64_t i, int32_t q) {
  switch (dtype) {
    case CQ_QINT8: ((int8_t *)out)[i] = (int8_t)q; break;
    case CQ_QINT32: ((int32_t *)out)[i] = q; break;
    default: ((uint8_t *)out)[i] = (uint8_t)q; break;
  }
}

static inline int32_t load_q(const void *q, cq_qdtype dtype, int64_t i) {
  switch (dtype) {
    case CQ_QINT8: return ((const int8_t *)q)[i];
    case CQ_QINT32: return ((const int32_t *)q)[i];
    default: return ((const uint8_t *)q)[i];
  }
}

/* q - zp in int32 arithmetic with wrap-around, as PyTorch's kernels compute it (without C's
 * undefined behaviour on overflow). */
static inline int32_t wrap_sub(int32_t a, int32_t b) { return (int32_t)((uint32_t)a - (uint32_t)b); }

/* One run of n values with one (inv_scale, zp). */
static void quantize_run(const float *x, int64_t n, float inv, int32_t zp, int32_t lo, int32_t hi,
                         cq_qdtype dtype, void *out, int64_t out_offset) {
  switch (dtype) {
    case CQ_QINT8: {
      int8_t *o = (int8_t *)out + out_offset;
      for (int64_t i = 0; i < n; i++) o[i] = (int8_t)cq_quantize_val(x[i], inv, zp, lo, hi);
      break;
    }
    case CQ_QINT32: {
      int32_t *o = (int32_t *)out + out_offset;
      for (int64_t i = 0; i < n; i++) o[i] = cq_quantize_val(x[i], inv, zp, lo, hi);
      break;
    }
    default: {
      uint8_t *o = (uint8_t *)out + out_offset;
      for (int64_t i = 0; i < n; i++) o[i] = (uint8_t)cq_quantize_val(x[i], inv, zp, lo, hi);
      break;
    }
  }
}

cq_status cq_quantize_per_tensor(const float *x, int64_t n, float scale, int32_t zero_point,
                                 cq_qdtype dtype, void *out) {
  int64_t lo, hi;
  cq_status st = check_scale_zp(scale, zero_point, dtype, &lo, &hi);
  if (st != CQ_OK) return st;
  const float inv = 1.0f / scale;
  quantize_run(x, n, inv, zero_point, (int32_t)lo, (int32_t)hi, dtype, out, 0);
  return CQ_OK;
}

cq_status cq_dequantize_per_tensor(const void *q, int64_t n, float scale, int32_t zero_point,
                                   cq_qdtype dtype, float *out) {
  int64_t lo, hi;
  cq_status st = check_scale_zp(scale, zero_point, dtype, &lo, &hi);
  if (st != CQ_OK) return st;
  /* One loop per storage type so the compiler can vectorise it (8-bit values minus an in-range
   * zero point cannot overflow; qint32 needs the wrapping subtraction). */
  switch (dtype) {
    case CQ_QINT8: {
      const int8_t *v = q;
      for (int64_t i = 0; i < n; i++) out[i] = scale * (float)((int32_t)v[i] - zero_point);
      break;
    }
    case CQ_QINT32: {
      const int32_t *v = q;
      for (int64_t i = 0; i < n; i++) out[i] = scale * (float)wrap_sub(v[i], zero_point);
      break;
    }
    default: {
      const uint8_t *v = q;
      for (int64_t i = 0; i < n; i++) out[i] = scale * (float)((int32_t)v[i] - zero_point);
      break;
    }
  }
  return CQ_OK;
}

cq_status cq_quantize_per_channel(const float *x, int64_t outer, int64_t channels, int64_t inner,
                                  const float *scales, const int32_t *zero_points,
                                  const float *zero_points_float, cq_qdtype dtype, void *out) {
  int64_t lo, hi;
  cq_status st = cq_qdtype_range(dtype, &lo, &hi);
  if (st != CQ_OK) return st;
  for (int64_t c = 0; c < channels; c++) {
    if (zero_points_float) {
      if (!(scales[c] >= 0.0f) || isinf(scales[c]) || !isfinite(zero_points_float[c])) {
        return cq_fail(CQ_EINVAL, "channel %lld: scale %g / zero point %g are not valid",
                       (long long)c, scales[c], zero_points_float[c]);
      }
    } else {
      st = check_scale_zp(scales[c], zero_points[c], dtype, &lo, &hi);
      if (st != CQ_OK) return cq_fail_context(st, "channel %lld", (long long)c);
    }
  }
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t c = 0; c < channels; c++) {
      const int64_t base = (o * channels + c) * inner;
      if (zero_points_float) {
        /* float zero point added before rounding; a zero scale means reciprocal 1 */
        const float inv = scales[c] == 0.0f ? 1.0f : 1.0f / scales[c];
        const float zpf = zero_points_float[c];
        for (int64_t i = 0; i < inner; i++) {
          store_q(out, dtype, base + i,
                  cq_quantize_val_float_zp(x[base + i], inv, zpf, (int32_t)lo, (int32_t)hi));
        }
      } else {
        quantize_run(x + base, inner, 1.0f / scales[c], zero_points[c], (int32_t)lo, (int32_t)hi,
                     dtype, out, base);
      }
    }
  }
  return CQ_OK;
}

cq_status cq_dequantize_per_channel(const void *q, int64_t outer, int64_t channels, int64_t inner,
                                    const float *scales, const int32_t *zero_points,
                                    const float *zero_points_float, cq_qdtype dtype, float *out) {
  int64_t lo, hi;
  cq_status st = cq_qdtype_range(dtype, &lo, &hi);
  if (st != CQ_OK) return st;
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t c = 0; c < channels; c++) {
      const int64_t base = (o * channels + c) * inner;
      const float s = scales[c];
      if (zero_points_float) {
        const float zpf = zero_points_float[c];
        for (int64_t i = 0; i < inner; i++) {
          out[base + i] = ((float)load_q(q, dtype, base + i) - zpf) * s;
        }
      } else {
        const int32_t zp = zero_points[c];
        for (int64_t i = 0; i < inner; i++) {
          out[base + i] = s * (float)wrap_sub(load_q(q, dtype, base + i), zp);
        }
      }
    }
  }
  return CQ_OK;
}

/* Splits a shape into [outer, channels, inner] around `axis`. */
static cq_status split_axis(const cq_tensor *t, int axis, int64_t count, int64_t *outer,
                            int64_t *inner) {
  if (axis < 0 || axis >= t->ndim) {
    return cq_fail(CQ_ESHAPE, "channel axis %d is outside a rank-%d tensor", axis, t->ndim);
  }
  if (t->shape[axis] != count) {
    return cq_fail(CQ_ESHAPE, "tensor has %lld channels along axis %d but qparams have %lld",
                   (long long)t->shape[axis], axis, (long long)count);
  }
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < axis; i++) *outer *= t->shape[i];
  for (int i = axis + 1; i < t->ndim; i++) *inner *= t->shape[i];
  return CQ_OK;
}

cq_status cq_quantize_tensor(const cq_tensor *x, const cq_qparams *qp, cq_tensor **out) {
  *out = NULL;
  if (x->dtype != CQ_F32) {
    return cq_fail(CQ_EINVAL, "quantize needs a float32 tensor, got %s",
                   cq_dtype_get(x->dtype) ? cq_dtype_get(x->dtype)->name : "invalid");
  }
  cq_dtype storage;
  cq_status st = cq_qdtype_storage(qp->dtype, &storage);
  if (st != CQ_OK) return st;
  cq_tensor *q;
  st = cq_tensor_create(&q, storage, x->ndim, x->shape);
  if (st != CQ_OK) return st;
  if (cq_qscheme_is_per_channel(qp->qscheme)) {
    int64_t outer, inner;
    st = split_axis(x, qp->axis, qp->count, &outer, &inner);
    if (st == CQ_OK) {
      st = cq_quantize_per_channel(x->data, outer, qp->count, inner, qp->scale, qp->zero_point,
                                   qp->zero_point_float, qp->dtype, q->data);
    }
  } else {
    st = cq_quantize_per_tensor(x->data, cq_tensor_numel(x), qp->scale[0], qp->zero_point[0],
                                qp->dtype, q->data);
  }
  if (st == CQ_OK) st = cq_tensor_set_qparams(q, qp);
  if (st != CQ_OK) {
    cq_tensor_free(q);
    return st;
  }
  *out = q;
  return CQ_OK;
}

cq_status cq_dequantize_tensor(const cq_tensor *q, cq_tensor **out) {
  *out = NULL;
  const cq_qparams *qp = q->qparams;
  if (!qp) return cq_fail(CQ_EINVAL, "dequantize needs a quantized tensor (no qparams attached)");
  cq_dtype storage;
  cq_status st = cq_qdtype_storage(qp->dtype, &storage);
  if (st != CQ_OK) return st;
  if (storage != q->dtype) {
    return cq_fail(CQ_EINVAL, "tensor storage %s does not match %s",
                   cq_dtype_get(q->dtype)->name, cq_qdtype_name(qp->dtype));
  }
  cq_tensor *x;
  st = cq_tensor_create(&x, CQ_F32, q->ndim, q->shape);
  if (st != CQ_OK) return st;
  if (cq_qscheme_is_per_channel(qp->qscheme)) {
    int64_t outer, inner;
    st = split_axis(q, qp->axis, qp->count, &outer, &inner);
    if (st == CQ_OK) {
      st = cq_dequantize_per_channel(q->data, outer, qp->count, inner, qp->scale, qp->zero_point,
                                     qp->zero_point_float, qp->dtype, x->data);
    }
  } else {
    st = cq_dequantize_per_tensor(q->data, cq_tensor_numel(q), qp->scale[0], qp->zero_point[0],
                                  qp->dtype, x->data);
  }
  if (st != CQ_OK) {
    cq_tensor_free(x);
    return st;
  }
  *out = x;
  return CQ_OK;
}

static cq_status check_fake_quant_args(float scale, int32_t zp, int32_t qmin, int32_t qmax) {
  if (!(qmin <= qmax)) {
    return cq_fail(CQ_EINVAL, "quant_min %d must be <= quant_max %d", qmin, qmax);
  }
  if (zp < qmin || zp > qmax) {
    return cq_fail(CQ_EINVAL, "zero point %d is outside [quant_min, quant_max] = [%d, %d]", zp,
                   qmin, qmax);
  }
  /* PyTorch does not reject an infinite scale here (ChooseQuantizationParams can produce one from a
   * range near FLT_MAX); its output is then NaN, as ours. */
  if (!(scale > 0.0f)) {
    return cq_fail(CQ_EINVAL, "scale %g must be positive", scale);
  }
  return CQ_OK;
}

/* One run: y = (clamp(q, qmin, qmax) - zp) * scale with q the unclamped quantized value; the mask is
 * taken on the unclamped q. NaN/Inf convert to INT64_MIN as on x86: clamped to qmin, mask 0. */
static void fake_quant_run(const float *x, int64_t n, float scale, int32_t zp, int32_t qmin,
                           int32_t qmax, float *y, uint8_t *mask) {
  const float inv = 1.0f / scale;
  for (int64_t i = 0; i < n; i++) {
    const int64_t q = cq_quantize_unclamped(x[i], inv, zp);
    const int64_t c = q < qmin ? qmin : q > qmax ? qmax : q;
    /* torch computes (fmin(fmax(q, qmin), qmax) - zp) * scale in double */
    const double v = (double)(c - zp) * (double)scale;
    /* 0 * inf makes the CPU's default NaN: x86's has the sign bit set, AArch64's not; keep x86's
     * (PyTorch's) bits on every architecture */
    y[i] = v == v ? (float)v : -NAN;
    if (mask) mask[i] = (uint8_t)(q >= qmin && q <= qmax);
  }
}

cq_status cq_fake_quantize_per_tensor(const float *x, int64_t n, float scale, int32_t zero_point,
                                      int32_t quant_min, int32_t quant_max, float *y,
                                      uint8_t *mask) {
  cq_status st = check_fake_quant_args(scale, zero_point, quant_min, quant_max);
  if (st != CQ_OK) return st;
  fake_quant_run(x, n, scale, zero_point, quant_min, quant_max, y, mask);
  return CQ_OK;
}

cq_status cq_fake_quantize_per_channel(const float *x, int64_t outer, int64_t channels,
                                       int64_t inner, const float *scales,
                                       const int32_t *zero_points, int32_t quant_min,
                                       int32_t quant_max, float *y, uint8_t *mask) {
  for (int64_t c = 0; c < channels; c++) {
    cq_status st = check_fake_quant_args(scales[c], zero_points[c], quant_min, quant_max);
    if (st != CQ_OK) return cq_fail_context(st, "channel %lld", (long long)c);
  }
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t c = 0; c < channels; c++) {
      const int64_t base = (o * channels + c) * inner;
      fake_quant_run(x + base, inner, scales[c], zero_points[c], quant_min, quant_max, y + base,
                     mask ? mask + base : NULL);
    }
  }
  return CQ_OK;
}

void cq_fake_quantize_backward(const float *dy, const uint8_t *mask, int64_t n, float *dx) {
  for (int64_t i = 0; i < n; i++) dx[i] = dy[i] * (float)mask[i]; /* dy * mask keeps -0.0 */
}

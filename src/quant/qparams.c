/* Quantized dtypes, the qparams record, and PyTorch 1.13's two qparam rules:
 * the observers' _calculate_qparams (cq_calculate_qparams) and the C++ ChooseQuantizationParams
 * (cq_choose_qparams). Float32 vs double is exactly where PyTorch has it; see
 * torch-1.13-semantics.md sections 1.1, 1.2 and 2.6. */
#include "cquant/qparams.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "quant/qmath.h"

static const char *const qdtype_names[CQ_QDTYPE_COUNT] = {
    [CQ_QUINT8] = "quint8",     [CQ_QINT8] = "qint8",       [CQ_QINT32] = "qint32",
    [CQ_QUINT4X2] = "quint4x2", [CQ_QFLOAT16] = "float16", [CQ_QFLOAT32] = "float32",
};

static const char *const qscheme_names[CQ_QSCHEME_COUNT] = {
    [CQ_PER_TENSOR_AFFINE] = "per_tensor_affine",
    [CQ_PER_TENSOR_SYMMETRIC] = "per_tensor_symmetric",
    [CQ_PER_CHANNEL_AFFINE] = "per_channel_affine",
    [CQ_PER_CHANNEL_SYMMETRIC] = "per_channel_symmetric",
    [CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS] = "per_channel_affine_float_qparams",
};

const char *cq_qdtype_name(cq_qdtype dtype) {
  return (unsigned)dtype < CQ_QDTYPE_COUNT ? qdtype_names[dtype] : "invalid";
}

const char *cq_qscheme_name(cq_qscheme qscheme) {
  return (unsigned)qscheme < CQ_QSCHEME_COUNT ? qscheme_names[qscheme] : "invalid";
}

static const char *strip_torch_prefix(const char *name) {
  return strncmp(name, "torch.", 6) == 0 ? name + 6 : name;
}

cq_status cq_qdtype_parse(const char *name, cq_qdtype *out) {
  const char *n = strip_torch_prefix(name);
  for (int i = 0; i < CQ_QDTYPE_COUNT; i++) {
    if (strcmp(n, qdtype_names[i]) == 0) {
      *out = (cq_qdtype)i;
      return CQ_OK;
    }
  }
  if (strcmp(n, "float") == 0) {
    *out = CQ_QFLOAT32;
    return CQ_OK;
  }
  return cq_fail(CQ_EINVAL, "unknown dtype '%s' (expected quint8, qint8, qint32, quint4x2, float16 "
                 "or float32)", name);
}

cq_status cq_qscheme_parse(const char *name, cq_qscheme *out) {
  const char *n = strip_torch_prefix(name);
  for (int i = 0; i < CQ_QSCHEME_COUNT; i++) {
    if (strcmp(n, qscheme_names[i]) == 0) {
      *out = (cq_qscheme)i;
      return CQ_OK;
    }
  }
  return cq_fail(CQ_EINVAL, "unknown qscheme '%s' (expected per_tensor_affine, per_tensor_symmetric, "
                 "per_channel_affine, per_channel_symmetric or per_channel_affine_float_qparams)",
                 name);
}

int cq_qscheme_is_per_channel(cq_qscheme q) {
  return q == CQ_PER_CHANNEL_AFFINE || q == CQ_PER_CHANNEL_SYMMETRIC ||
         q == CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS;
}

int cq_qscheme_is_symmetric(cq_qscheme q) {
  return q == CQ_PER_TENSOR_SYMMETRIC || q == CQ_PER_CHANNEL_SYMMETRIC;
}

cq_status cq_qdtype_range(cq_qdtype dtype, int64_t *lo, int64_t *hi) {
  switch (dtype) {
    case CQ_QUINT8: *lo = 0; *hi = 255; return CQ_OK;
    case CQ_QINT8: *lo = -128; *hi = 127; return CQ_OK;
    case CQ_QINT32: *lo = INT32_MIN; *hi = INT32_MAX; return CQ_OK;
    case CQ_QUINT4X2: *lo = 0; *hi = 15; return CQ_OK;
    default:
      return cq_fail(CQ_EINVAL, "dtype %s has no integer range", cq_qdtype_name(dtype));
  }
}

cq_status cq_qparams_init(cq_qparams *qp, cq_qdtype dtype, cq_qscheme qscheme, int64_t count,
                          int axis) {
  memset(qp, 0, sizeof *qp);
  int64_t lo, hi;
  if ((unsigned)qscheme >= CQ_QSCHEME_COUNT) {
    return cq_fail(CQ_EINVAL, "invalid qscheme %d", (int)qscheme);
  }
  cq_status st = cq_qdtype_range(dtype, &lo, &hi);
  if (st != CQ_OK) return st;
  if (count < 1) return cq_fail(CQ_EINVAL, "qparams need at least one channel (got %lld)",
                                (long long)count);
  if (!cq_qscheme_is_per_channel(qscheme) && count != 1) {
    return cq_fail(CQ_EINVAL, "%s qparams have exactly one scale (got %lld)",
                   cq_qscheme_name(qscheme), (long long)count);
  }
  qp->dtype = dtype;
  qp->qscheme = qscheme;
  qp->axis = cq_qscheme_is_per_channel(qscheme) ? axis : -1;
  qp->count = count;
  qp->quant_min = (int32_t)lo;
  qp->quant_max = (int32_t)hi;
  qp->scale = cq_malloc_for(sizeof(float) * (size_t)count, "qparams scales");
  qp->zero_point = cq_calloc_for((size_t)count, sizeof(int32_t), "qparams zero points");
  if (qscheme == CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS) {
    qp->zero_point_float = cq_calloc_for((size_t)count, sizeof(float), "qparams zero points");
  }
  if (!qp->scale || !qp->zero_point ||
      (qscheme == CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS && !qp->zero_point_float)) {
    cq_qparams_release(qp);
    return CQ_ENOMEM;
  }
  for (int64_t i = 0; i < count; i++) qp->scale[i] = 1.0f;
  return CQ_OK;
}

void cq_qparams_release(cq_qparams *qp) {
  if (!qp) return;
  cq_free(qp->scale);
  cq_free(qp->zero_point);
  cq_free(qp->zero_point_float);
  qp->scale = NULL;
  qp->zero_point = NULL;
  qp->zero_point_float = NULL;
  qp->count = 0;
}

cq_status cq_qparams_copy(cq_qparams *dst, const cq_qparams *src) {
  cq_status st = cq_qparams_init(dst, src->dtype, src->qscheme, src->count, src->axis);
  if (st != CQ_OK) return st;
  dst->quant_min = src->quant_min;
  dst->quant_max = src->quant_max;
  memcpy(dst->scale, src->scale, sizeof(float) * (size_t)src->count);
  memcpy(dst->zero_point, src->zero_point, sizeof(int32_t) * (size_t)src->count);
  if (src->zero_point_float && dst->zero_point_float) {
    memcpy(dst->zero_point_float, src->zero_point_float, sizeof(float) * (size_t)src->count);
  }
  return CQ_OK;
}

/* Python's floor division, which PyTorch uses to halve a custom range (-127 // 2 == -64). */
static int64_t floor_div2(int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

cq_status cq_quant_range_resolve(cq_qdtype dtype, int reduce_range, int has_custom,
                                 int64_t custom_min, int64_t custom_max, int32_t *quant_min,
                                 int32_t *quant_max) {
  if ((unsigned)dtype >= CQ_QDTYPE_COUNT) return cq_fail(CQ_EINVAL, "invalid dtype %d", (int)dtype);
  if (has_custom) {
    if (!(custom_min <= 0 && 0 <= custom_max)) {
      return cq_fail(CQ_EINVAL, "quant range [%lld, %lld] must include 0",
                     (long long)custom_min, (long long)custom_max);
    }
    if (!(custom_min < custom_max)) {
      return cq_fail(CQ_EINVAL, "quant_min %lld must be less than quant_max %lld",
                     (long long)custom_min, (long long)custom_max);
    }
    /* PyTorch bounds the range length for qint8 and qint32 only (quint8 ranges are not checked) */
    const int64_t len = custom_max - custom_min + 1;
    if (dtype == CQ_QINT8 && len > 256) {
      return cq_fail(CQ_EINVAL, "quant range [%lld, %lld] is longer than qint8's 256 values",
                     (long long)custom_min, (long long)custom_max);
    }
    if (dtype == CQ_QINT32 && len > ((int64_t)1 << 31)) {
      return cq_fail(CQ_EINVAL, "quant range [%lld, %lld] is longer than 2^31 values (PyTorch's "
                     "qint32 limit)", (long long)custom_min, (long long)custom_max);
    }
    if (reduce_range) {
      custom_min = floor_div2(custom_min);
      custom_max = floor_div2(custom_max);
    }
    *quant_min = (int32_t)custom_min;
    *quant_max = (int32_t)custom_max;
    return CQ_OK;
  }
  switch (dtype) {
    case CQ_QUINT8:
      *quant_min = 0;
      *quant_max = reduce_range ? 127 : 255;
      break;
    case CQ_QINT8:
      *quant_min = reduce_range ? -64 : -128;
      *quant_max = reduce_range ? 63 : 127;
      break;
    case CQ_QINT32:
      *quant_min = INT32_MIN;
      *quant_max = INT32_MAX;
      break;
    default: /* quint4x2 and anything else: PyTorch's fallback */
      *quant_min = 0;
      *quant_max = 15;
      break;
  }
  return CQ_OK;
}

cq_status cq_calculate_qparams(const cq_qparam_rule *rule, float min_val, float max_val,
                               float *scale_out, int32_t *zp_out, float *zp_float_out) {
  if (isnan(min_val) || isnan(max_val)) {
    return cq_fail(CQ_EVALUE, "cannot compute qparams: the observed range contains NaN");
  }
  if (isinf(min_val) || isinf(max_val)) {
    return cq_fail(CQ_EVALUE, "cannot compute qparams: the observed range [%g, %g] is not finite",
                   min_val, max_val);
  }
  if (!(min_val <= max_val)) {
    return cq_fail(CQ_EVALUE, "min_val %.9g is greater than max_val %.9g", min_val, max_val);
  }
  const int32_t qmin = rule->quant_min, qmax = rule->quant_max;
  const float eps = rule->eps;
  const float min_neg = min_val < 0.0f ? min_val : 0.0f;
  const float max_pos = max_val > 0.0f ? max_val : 0.0f;
  float scale;
  int32_t zp = 0;

  if (rule->qscheme == CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS) {
    /* raw min/max, "scale > eps ? scale : 1", unrounded float zero point */
    scale = (max_val - min_val) / (float)((int64_t)qmax - qmin);
    if (!(scale > eps)) scale = 1.0f;
    float zpf = -min_val / scale;
    if (zp_float_out) *zp_float_out = zpf;
    *scale_out = scale;
    *zp_out = cq_f32_to_i32_x86(cq_rne_f32(zpf)); /* display only; out of range -> INT32_MIN */
    return CQ_OK;
  }
  if (cq_qscheme_is_symmetric(rule->qscheme)) {
    const float amax = -min_neg > max_pos ? -min_neg : max_pos;
    scale = amax / (float)((double)((int64_t)qmax - qmin) / 2.0);
    if (scale < eps) scale = eps;
    if (rule->dtype == CQ_QUINT8) {
      zp = rule->custom_range ? (int32_t)floor_div2((int64_t)qmin + qmax) : 128;
    }
  } else {
    scale = (max_pos - min_neg) / (float)((int64_t)qmax - qmin);
    if (scale < eps) scale = eps;
    /* zero_point = quant_min - round(min_neg / scale).to(int32), in int32 arithmetic */
    int32_t r = cq_f32_to_i32_x86(cq_rne_f32(min_neg / scale));
    int64_t z = (int32_t)((uint32_t)qmin - (uint32_t)r);
    if (z < qmin) z = qmin;
    if (z > qmax) z = qmax;
    zp = (int32_t)z;
  }
  *scale_out = scale;
  *zp_out = zp;
  if (zp_float_out) *zp_float_out = (float)zp;
  return CQ_OK;
}

/* fbgemm's SMALL_SCALE_THRESHOLD */
#define CQ_SMALL_SCALE_THRESHOLD 6.1e-5f

cq_status cq_choose_qparams(float min, float max, int32_t qmin, int32_t qmax,
                            int preserve_sparsity, int force_power_of_two, int reduce_range,
                            double *scale_out, int32_t *zp_out) {
  if (isnan(min) || isnan(max) || !(min <= max)) {
    return cq_fail(CQ_EVALUE, "cannot choose qparams: min %g must be <= max %g", min, max);
  }
  if (isinf(min) || isinf(max)) {
    return cq_fail(CQ_EVALUE, "cannot choose qparams: range [%g, %g] is not finite", min, max);
  }
  if (reduce_range) { /* C truncation, unlike the observers' floor division */
    qmin = qmin / 2;
    qmax = qmax / 2;
  }
  if (min < 0 && max > 0 && preserve_sparsity) {
    int symmetric_qmin = -((qmax - qmin) / 2 + 1);
    int symmetric_qmax = (qmax - qmin) / 2;
    float a = fabsf(min / (float)symmetric_qmin);
    float b = fabsf(max / (float)symmetric_qmax);
    double max_scale = a > b ? a : b;
    min = (float)(max_scale * symmetric_qmin);
    max = (float)(max_scale * symmetric_qmax);
  }
  if (min > 0.0f) min = 0.0f;
  if (max < 0.0f) max = 0.0f;
  if (!(qmin < qmax)) {
    return cq_fail(CQ_EINVAL, "qmin %d must be less than qmax %d", qmin, qmax);
  }
  double scale = ((double)max - min) / (double)(qmax - qmin);
  if ((float)scale == 0.0f || isinf(1.0f / (float)scale)) scale = 0.1;
  if (force_power_of_two) {
    if (scale < 1) {
      scale = 1.0 / (double)(1 << (int)floor(log(1.0 / scale) / log(2)));
    } else {
      scale = (double)(1 << (int)ceil(log(scale) / log(2)));
    }
  }
  if (scale < CQ_SMALL_SCALE_THRESHOLD) {
    float org_scale = (float)scale;
    scale = CQ_SMALL_SCALE_THRESHOLD;
    if (min == 0.0f) {
      max = CQ_SMALL_SCALE_THRESHOLD * (float)(qmax - qmin);
    } else if (max == 0.0f) {
      min = -CQ_SMALL_SCALE_THRESHOLD * (float)(qmax - qmin);
    } else {
      float amplifier = CQ_SMALL_SCALE_THRESHOLD / org_scale;
      min *= amplifier;
      max *= amplifier;
    }
  }
  double zp_from_min = qmin - min / scale;
  double zp_from_max = qmax - max / scale;
  double zp_from_min_error = fabs((double)qmin) - fabs(min / scale);
  double zp_from_max_error = fabs((double)qmax) - fabs(max / scale);
  double initial = zp_from_min_error < zp_from_max_error ? zp_from_min : zp_from_max;
  if (min < 0 && max > 0 && preserve_sparsity) initial = (double)(qmin + qmax) / 2;
  int32_t nudged;
  if (initial < qmin) {
    nudged = qmin;
  } else if (initial > qmax) {
    nudged = qmax;
  } else {
    nudged = (int32_t)nearbyint(initial);
  }
  *scale_out = scale;
  *zp_out = nudged;
  return CQ_OK;
}

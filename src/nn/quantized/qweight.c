/* Weight quantization, output-qparam validation and the clamp-fold answer shared by the static
 * quantized modules. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "cquant/quantize.h"
#include "nn/quantized/qstatic_impl.h"

static cq_status check_weight_qparams(const char *who, const cq_qparams *wq, int64_t rows,
                                      cq_backend engine) {
  if (!wq || !wq->scale || !wq->zero_point) {
    return cq_fail(CQ_EINVAL, "%s: weight qparams are missing", who);
  }
  if (wq->dtype != CQ_QINT8) {
    return cq_fail(CQ_EINVAL, "%s: Weight observer must have dtype torch.qint8, got torch.%s", who,
                   cq_qdtype_name(wq->dtype));
  }
  if (wq->qscheme == CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS || wq->zero_point_float) {
    return cq_fail(CQ_EINVAL, "%s: weight qscheme %s (float zero points) is for embeddings, not "
                   "for static quantized modules", who, cq_qscheme_name(wq->qscheme));
  }
  if ((unsigned)wq->qscheme >= CQ_QSCHEME_COUNT) {
    return cq_fail(CQ_EINVAL, "%s: unknown weight qscheme %d", who, (int)wq->qscheme);
  }
  const int per_channel = cq_qscheme_is_per_channel(wq->qscheme);
  if (per_channel) {
    if (wq->axis != 0) {
      return cq_fail(CQ_EINVAL, "%s: per-channel weight qparams must be along axis 0 (output "
                     "channels), got axis %d", who, wq->axis);
    }
    if (wq->count != rows) {
      return cq_fail(CQ_EINVAL, "%s: %lld per-channel weight scales for %lld output channels", who,
                     (long long)wq->count, (long long)rows);
    }
  } else if (wq->count != 1) {
    return cq_fail(CQ_EINVAL, "%s: per-tensor weight qparams must have 1 scale, got %lld", who,
                   (long long)wq->count);
  }
  if (wq->quant_min < -128 || wq->quant_max > 127 || wq->quant_min > wq->quant_max) {
    return cq_fail(CQ_EINVAL, "%s: weight range [%d, %d] is not inside qint8's [-128, 127]", who,
                   (int)wq->quant_min, (int)wq->quant_max);
  }
  for (int64_t c = 0; c < wq->count; c++) {
    if (!(isfinite(wq->scale[c]) && wq->scale[c] > 0.0f)) {
      return cq_fail(CQ_EVALUE, "%s: weight scale %g of channel %lld must be finite and > 0", who,
                     (double)wq->scale[c], (long long)c);
    }
    if (wq->zero_point[c] < -128 || wq->zero_point[c] > 127) {
      return cq_fail(CQ_EVALUE, "%s: weight zero point %d of channel %lld is outside qint8's "
                     "[-128, 127]", who, (int)wq->zero_point[c], (long long)c);
    }
    if (engine == CQ_BACKEND_ONEDNN && wq->zero_point[c] != 0) {
      return cq_fail(CQ_EINVAL, "%s: ONEDNN only supports symmetric quantization of weight, "
                     "whose zero point must be 0, but got %d", who, (int)wq->zero_point[c]);
    }
  }
  return CQ_OK;
}

cq_status cq_qmod_quantize_weight(const char *who, const float *weight, int64_t rows, int64_t cols,
                                  int ndim, const int64_t *shape, const cq_qparams *wq,
                                  cq_backend engine, cq_tensor **out) {
  *out = NULL;
  if (!weight) return cq_fail(CQ_EINVAL, "%s: weight is NULL", who);
  cq_status st = check_weight_qparams(who, wq, rows, engine);
  if (st != CQ_OK) return st;
  const int64_t n = rows * cols;
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(weight[i])) {
      return cq_fail(CQ_EVALUE, "%s: weight element %lld is %g; weights must be finite", who,
                     (long long)i, (double)weight[i]);
    }
  }
  cq_tensor *t = NULL;
  st = cq_tensor_create(&t, CQ_S8, ndim, shape);
  if (st != CQ_OK) return st;
  int8_t *q = t->data;
  if (cq_qscheme_is_per_channel(wq->qscheme)) {
    st = cq_quantize_per_channel(weight, 1, rows, cols, wq->scale, wq->zero_point, NULL, CQ_QINT8,
                                 q);
  } else {
    st = cq_quantize_per_tensor(weight, n, wq->scale[0], wq->zero_point[0], CQ_QINT8, q);
  }
  /* _clamp_weights: the observer's range may be narrower than the dtype's (e.g. -127..127) */
  for (int64_t i = 0; st == CQ_OK && i < n; i++) {
    if (q[i] < wq->quant_min) q[i] = (int8_t)wq->quant_min;
    if (q[i] > wq->quant_max) q[i] = (int8_t)wq->quant_max;
  }
  cq_qparams qp;
  memset(&qp, 0, sizeof qp);
  if (st == CQ_OK) st = cq_qparams_copy(&qp, wq);
  if (st == CQ_OK) {
    /* a quantized tensor's qscheme is always the affine variant */
    if (qp.qscheme == CQ_PER_TENSOR_SYMMETRIC) qp.qscheme = CQ_PER_TENSOR_AFFINE;
    if (qp.qscheme == CQ_PER_CHANNEL_SYMMETRIC) qp.qscheme = CQ_PER_CHANNEL_AFFINE;
    st = cq_tensor_set_qparams(t, &qp);
  }
  cq_qparams_release(&qp);
  if (st != CQ_OK) {
    cq_tensor_free(t);
    return st;
  }
  *out = t;
  return CQ_OK;
}

cq_status cq_qmod_output_qparams(const char *who, const cq_qparams *yq, float *scale,
                                 int32_t *zero_point) {
  if (!yq || !yq->scale || !yq->zero_point) {
    return cq_fail(CQ_EINVAL, "%s: output qparams are missing", who);
  }
  if (yq->dtype != CQ_QUINT8) {
    return cq_fail(CQ_EINVAL, "%s: static quantized modules produce quint8 activations; the "
                   "output qparams are torch.%s", who, cq_qdtype_name(yq->dtype));
  }
  if (yq->count != 1 || cq_qscheme_is_per_channel(yq->qscheme)) {
    return cq_fail(CQ_EINVAL, "%s: output qparams must be per-tensor, got %s", who,
                   cq_qscheme_name(yq->qscheme));
  }
  if (!(isfinite(yq->scale[0]) && yq->scale[0] > 0.0f)) {
    return cq_fail(CQ_EVALUE, "%s: output scale %g must be finite and > 0", who,
                   (double)yq->scale[0]);
  }
  if (yq->zero_point[0] < 0 || yq->zero_point[0] > 255) {
    return cq_fail(CQ_EVALUE, "%s: output zero point %d is outside quint8's [0, 255]", who,
                   (int)yq->zero_point[0]);
  }
  *scale = yq->scale[0];
  *zero_point = yq->zero_point[0];
  return CQ_OK;
}

void cq_qmod_append_scale(cq_strbuf *sb, float scale) { cq_strbuf_append_pyfloat(sb, (double)scale); }

void cq_qmod_append_float_arg(cq_strbuf *sb, float value) {
  char tmp[48];
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, (double)value);
    if ((float)strtod(tmp, NULL) == value) break;
  }
  cq_strbuf_append_pyfloat(sb, strtod(tmp, NULL));
}

int cq_qmod_fuses_clamp(int relu, float scale, int32_t zero_point, cq_requant_rule rule,
                        float *y_scale, int32_t *y_zp, int *upper) {
  if (relu) return 0;
  *y_scale = scale;
  *y_zp = zero_point;
  *upper = rule != CQ_RULE_QNNPACK;
  return 1;
}

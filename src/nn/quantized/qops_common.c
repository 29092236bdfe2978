/* Quantized activation tensors: validation and allocation shared by the quantized ops and modules. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>

#include "cquant/quantize.h"
#include "nn/module_impl.h"
#include "nn/quantized/qops.h"
#include "nn/quantized/qstatic_impl.h"

int cq_qact_is(const cq_tensor *x) {
  if (!x || !x->qparams) return 0;
  const cq_qparams *qp = x->qparams;
  if (qp->count != 1 || cq_qscheme_is_per_channel(qp->qscheme)) return 0;
  if (x->dtype == CQ_U8) return qp->dtype == CQ_QUINT8;
  if (x->dtype == CQ_S8) return qp->dtype == CQ_QINT8;
  return 0;
}

cq_qdtype cq_qact_dtype(const cq_tensor *x) { return x->dtype == CQ_U8 ? CQ_QUINT8 : CQ_QINT8; }

cq_status cq_qmod_fail(const cq_module *m, cq_status st, const char *fmt, ...) {
  char msg[640];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (m) return cq_module_fail(m, st, "%s", msg);
  return cq_fail(st, "quantized op: %s", msg);
}

cq_status cq_qact_check(const cq_module *m, const cq_tensor *x, int index) {
  if (!x->qparams) {
    const cq_dtype_info *info = cq_dtype_get(x->dtype);
    return cq_qmod_fail(m, CQ_EINVAL, "input %d must be a quantized tensor, got %s without "
                        "quantization parameters", index, info ? info->name : "an invalid dtype");
  }
  const cq_qparams *qp = x->qparams;
  if (qp->count != 1 || cq_qscheme_is_per_channel(qp->qscheme)) {
    return cq_qmod_fail(m, CQ_EUNSUPPORTED, "input %d is quantized %s; only per-tensor quantized "
                        "activations are supported", index, cq_qscheme_name(qp->qscheme));
  }
  if (!((x->dtype == CQ_U8 && qp->dtype == CQ_QUINT8) ||
        (x->dtype == CQ_S8 && qp->dtype == CQ_QINT8))) {
    const cq_dtype_info *info = cq_dtype_get(x->dtype);
    return cq_qmod_fail(m, CQ_EINVAL, "input %d must be quint8 (uint8 storage) or qint8 (int8 "
                        "storage), got %s storage with %s qparams", index,
                        info ? info->name : "invalid", cq_qdtype_name(qp->dtype));
  }
  if (!(isfinite(qp->scale[0]) && qp->scale[0] > 0.0f)) {
    return cq_qmod_fail(m, CQ_EVALUE, "input %d has scale %g; it must be finite and > 0", index,
                        (double)qp->scale[0]);
  }
  const int32_t lo = qp->dtype == CQ_QUINT8 ? 0 : -128, hi = qp->dtype == CQ_QUINT8 ? 255 : 127;
  if (qp->zero_point[0] < lo || qp->zero_point[0] > hi) {
    return cq_qmod_fail(m, CQ_EVALUE, "input %d has zero point %d outside %s's [%d, %d]", index,
                        (int)qp->zero_point[0], cq_qdtype_name(qp->dtype), (int)lo, (int)hi);
  }
  return CQ_OK;
}

cq_status cq_qact_new(cq_ctx *ctx, cq_qdtype dtype, int ndim, const int64_t *shape, float scale,
                      int32_t zero_point, cq_tensor **out) {
  *out = NULL;
  cq_dtype storage;
  cq_status st = cq_qdtype_storage(dtype, &storage);
  if (st != CQ_OK) return st;
  int64_t lo, hi;
  st = cq_qdtype_range(dtype, &lo, &hi);
  if (st != CQ_OK) return st;
  /* the record to copy, on the stack (cq_tensor_set_qparams makes the tensor's own) */
  float s = scale;
  int32_t z = zero_point;
  const cq_qparams qp = {.dtype = dtype, .qscheme = CQ_PER_TENSOR_AFFINE, .axis = -1, .count = 1,
                         .quant_min = (int32_t)lo, .quant_max = (int32_t)hi, .scale = &s,
                         .zero_point = &z, .zero_point_float = NULL};
  cq_tensor *t;
  st = cq_ctx_tensor_unset(ctx, storage, ndim, shape, &t);
  if (st == CQ_OK) st = cq_tensor_set_qparams(t, &qp);
  if (st == CQ_OK) *out = t;
  return st;
}

cq_requant_rule cq_qmod_engine_rule(cq_backend engine) {
  switch (engine) {
    case CQ_BACKEND_QNNPACK:
      return CQ_RULE_QNNPACK;
    case CQ_BACKEND_ONEDNN:
      return CQ_RULE_ONEDNN;
    default:
      return CQ_RULE_FBGEMM;
  }
}

cq_status cq_qmod_check_engine(cq_backend engine) {
  if ((unsigned)engine >= CQ_BACKEND_COUNT) {
    return cq_fail(CQ_EINVAL, "unknown quantized engine %d (expected x86, fbgemm, qnnpack or "
                   "onednn)", (int)engine);
  }
  return CQ_OK;
}

void cq_qmod_memory_order(const cq_tensor *x, cq_qlayout layout, int64_t *index) {
  const int64_t n = cq_tensor_numel(x);
  if (layout != CQ_QLAYOUT_NHWC || x->ndim != 4) {
    for (int64_t i = 0; i < n; i++) index[i] = i;
    return;
  }
  const int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
  int64_t k = 0;
  for (int64_t b = 0; b < N; b++) {
    for (int64_t h = 0; h < H; h++) {
      for (int64_t w = 0; w < W; w++) {
        for (int64_t c = 0; c < C; c++) index[k++] = ((b * C + c) * H + h) * W + w;
      }
    }
  }
}

/* The weight side of dynamic quantization: observe, quantize to qint8, pack; and one dynamic
 * linear call on the packed weight (see dynamic_weight.h). */
#include "nn/quantized/dynamic_weight.h"

#include <stdatomic.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/quantize.h"

cq_requant_rule cq_dynamic_engine_rule(cq_backend engine) {
  switch (engine) {
    case CQ_BACKEND_QNNPACK:
      return CQ_RULE_QNNPACK;
    case CQ_BACKEND_ONEDNN:
      return CQ_RULE_ONEDNN;
    default:
      return CQ_RULE_FBGEMM; /* x86 and fbgemm run linear_dynamic on FBGEMM */
  }
}

cq_status cq_dynamic_weight_config(const cq_qspec *spec, const char *who, int rnn,
                                   cq_observer_config *out) {
  if (spec && spec->present) {
    *out = spec->observer;
  } else {
    cq_qspec fallback;
    cq_status st = cq_qspec_preset("default_weight_observer", &fallback);
    if (st != CQ_OK) return st;
    *out = fallback.observer;
  }
  if (out->dtype == CQ_QFLOAT16) {
    return cq_fail(CQ_EUNSUPPORTED,
                   "%s: float16 dynamic quantization needs FBGEMM's linear_prepack_fp16 and "
                   "linear_dynamic_fp16, which cquant does not implement; PyTorch built without "
                   "FBGEMM fails the same way (\"quantized::linear_prepack_fp16 is currently not "
                   "supported by QNNPACK\" / \"... by ONEDNN\")",
                   who);
  }
  if (out->dtype != CQ_QINT8 && rnn) {
    return cq_fail(CQ_EINVAL, "%s: Unsupported dtype for dynamic RNN quantization: torch.%s", who,
                   cq_qdtype_name(out->dtype));
  }
  if (out->dtype != CQ_QINT8) {
    return cq_fail(CQ_EINVAL,
                   "%s: The only supported dtypes for dynamic quantized linear are qint8 and "
                   "float16 got: torch.%s",
                   who, cq_qdtype_name(out->dtype));
  }
  if (out->qscheme == CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS) {
    return cq_fail(CQ_EINVAL,
                   "%s: weights cannot use per_channel_affine_float_qparams (that scheme is for "
                   "embedding tables)",
                   who);
  }
  if (cq_qscheme_is_per_channel(out->qscheme) && out->ch_axis != 0 && out->ch_axis != -2) {
    return cq_fail(CQ_EUNSUPPORTED,
                   "%s: per-channel weight quantization must be along axis 0 (the output "
                   "features of the [out, in] weight), got ch_axis=%d",
                   who, out->ch_axis);
  }
  return CQ_OK;
}

cq_status cq_dynamic_weight_observe(const cq_observer_config *config, const float *w, int64_t rows,
                                    int64_t cols, cq_qparams *wq) {
  memset(wq, 0, sizeof *wq);
  cq_observer *obs = NULL;
  cq_status st = cq_observer_create(config, &obs);
  if (st != CQ_OK) return st;
  const int64_t shape[2] = {rows, cols};
  st = cq_observer_update(obs, w, 2, shape);
  if (st == CQ_OK) st = cq_observer_qparams(obs, wq);
  cq_observer_free(obs);
  return st;
}

/* Clamps the integers to [lo, hi] (PyTorch's _clamp_weights for observers with a narrower range). */
static void clamp_weights(int8_t *q, int64_t n, int32_t lo, int32_t hi) {
  if (lo <= -128 && hi >= 127) return;
  for (int64_t i = 0; i < n; i++) {
    if (q[i] < lo) q[i] = (int8_t)lo;
    if (q[i] > hi) q[i] = (int8_t)hi;
  }
}

cq_status cq_dynamic_weight_quantize(const float *w, int64_t rows, int64_t cols,
                                     const cq_qparams *wq, cq_backend engine, cq_tensor **out) {
  *out = NULL;
  const int per_channel = cq_qscheme_is_per_channel(wq->qscheme);
  if (per_channel ? wq->count != rows : wq->count != 1) {
    return cq_fail(CQ_EINVAL,
                   "weight qparams have %lld scales; a %s weight of %lld rows needs %lld",
                   (long long)wq->count, per_channel ? "per-channel" : "per-tensor",
                   (long long)rows, per_channel ? (long long)rows : 1LL);
  }
  if (wq->dtype != CQ_QINT8 || wq->zero_point_float) {
    return cq_fail(CQ_EINVAL, "dynamic quantized weights must be qint8 with integer zero points");
  }
  if (engine == CQ_BACKEND_ONEDNN) {
    for (int64_t c = 0; c < wq->count; c++) {
      if (wq->zero_point[c] != 0) {
        return cq_fail(CQ_EUNSUPPORTED,
                       "quantized::linear_prepack: ONEDNN only supports symmetric quantization "
                       "of weight, whose zero point must be 0, but got %d",
                       (int)wq->zero_point[c]);
      }
    }
  }
  const int64_t shape[2] = {rows, cols};
  cq_tensor *q = NULL;
  cq_status st = cq_tensor_create(&q, CQ_S8, 2, shape);
  if (st != CQ_OK) return st;
  if (per_channel) {
    st = cq_quantize_per_channel(w, 1, rows, cols, wq->scale, wq->zero_point, NULL, CQ_QINT8,
                                 q->data);
  } else {
    st = cq_quantize_per_tensor(w, rows * cols, wq->scale[0], wq->zero_point[0], CQ_QINT8,
                                q->data);
  }
  if (st != CQ_OK) goto fail;
  clamp_weights(q->data, rows * cols, wq->quant_min, wq->quant_max);
  /* the quantized tensor's own qparams: affine schemes, the full qint8 range */
  cq_qparams shown;
  st = cq_qparams_copy(&shown, wq);
  if (st != CQ_OK) goto fail;
  shown.qscheme = per_channel ? CQ_PER_CHANNEL_AFFINE : CQ_PER_TENSOR_AFFINE;
  shown.axis = per_channel ? 0 : -1;
  shown.quant_min = -128;
  shown.quant_max = 127;
  st = cq_tensor_set_qparams(q, &shown);
  cq_qparams_release(&shown);
  if (st != CQ_OK) goto fail;
  *out = q;
  return CQ_OK;
fail:
  cq_tensor_free(q);
  return st;
}

cq_status cq_dynamic_weight_pack(const cq_tensor *qweight, const float *bias,
                                 cq_qgemm_packed **out) {
  const cq_qparams *qp = qweight->qparams;
  if (!qp || qweight->dtype != CQ_S8 || qweight->ndim != 2) {
    *out = NULL;
    return cq_fail(CQ_EINVAL, "dynamic weight packing needs a quantized int8 [out, in] tensor");
  }
  return cq_qgemm_pack(qweight->data, qweight->shape[0], qweight->shape[1], qp->scale,
                       qp->zero_point, cq_qscheme_is_per_channel(qp->qscheme), bias, out);
}

cq_status cq_dynamic_op_create(const cq_qgemm_packed *w, cq_backend engine, int relu,
                               cq_qgemm_dynamic **out) {
  static atomic_int warned;
  if (engine == CQ_BACKEND_QNNPACK && atomic_exchange(&warned, 1) == 0) {
    cq_warn("Currently, qnnpack incorrectly ignores reduce_range when it is set to true; this "
            "may change in a future release.");
  }
  /* nnqd.Linear (version 4), nniqd.LinearReLU and the RNNs (version 2) pass reduce_range=True */
  return cq_qgemm_dynamic_create(w, cq_dynamic_engine_rule(engine), 1, relu, out);
}

cq_status cq_dynamic_op_run(cq_qgemm_dynamic *op, const float *x, int64_t m, int64_t k, float *y,
                            int64_t n, void *workspace) {
  return cq_qgemm_dynamic_run(op, x, m, k, y, n, workspace, NULL, NULL, NULL);
}

/* nnq.Quantize and nnq.DeQuantize: what convert turns QuantStub and DeQuantStub into.
 *
 *   Quantize(scale, zero_point, dtype)  float32 -> quantized: quantize_per_tensor (2.1), the output
 *                                       carries (scale, zero_point). Prints
 *                                       Quantize(scale=tensor([0.0260]), zero_point=tensor([131]),
 *                                       dtype=torch.quint8)
 *   DeQuantize()                        quantized -> float32: scale * (q - zero_point) (2.3); a float
 *                                       input passes through unchanged, as Tensor.dequantize()
 *                                       returns a float tensor itself. */
#include <math.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "core/threadpool.h"
#include "cquant/quantize.h"
#include "kernels/quantize/quantize.h"
#include "nn/module_impl.h"
#include "nn/quantized/qmodules.h"
#include "nn/quantized/qops.h"
#include "nn/quantized/qstatic_impl.h"

typedef struct quantize_impl {
  float scale;
  int32_t zero_point;
  cq_qdtype dtype;
} quantize_impl;

/* quint8 from values that are all finite and within int64 after scaling: the vector kernels (the
 * same bytes as quantize_val). Returns 0 otherwise: the scalar definition then gives every byte
 * PyTorch's result, NaN and infinities included. (The quant layer's
 * cq_quantize_per_tensor cannot call kernels, which sit above it.) */
static int quantize_vector(const quantize_impl *p, const cq_tensor *x, cq_tensor *y) {
  cq_isa isa;
  if (p->dtype != CQ_QUINT8 || !(isfinite(p->scale) && p->scale > 0.0f) || p->zero_point < 0 ||
      p->zero_point > 255 || cq_isa_active(&isa) != CQ_OK) {
    return 0;
  }
  return cq_f32_quantize_qu8_finite(isa, x->data, (size_t)cq_tensor_numel(x), 1.0f / p->scale,
                                    p->zero_point, y->data, cq_default_threadpool());
}

static cq_status quantize_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                  int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const quantize_impl *p = m->impl;
  const cq_tensor *x = in[0];
  if (x->dtype != CQ_F32 || x->qparams) {
    const cq_dtype_info *info = cq_dtype_get(x->dtype);
    return cq_module_fail(m, CQ_EINVAL, "input must be a float32 tensor, got %s%s",
                          info ? info->name : "an invalid dtype",
                          x->qparams ? " with quantization parameters" : "");
  }
  cq_dtype storage;
  cq_status st = cq_qdtype_storage(p->dtype, &storage);
  if (st != CQ_OK) return st;
  cq_qparams qp;
  st = cq_qparams_init(&qp, p->dtype, CQ_PER_TENSOR_AFFINE, 1, -1);
  if (st != CQ_OK) return st;
  qp.scale[0] = p->scale;
  qp.zero_point[0] = p->zero_point;
  cq_tensor *y = NULL;
  st = cq_ctx_tensor(ctx, storage, x->ndim, x->shape, &y);
  if (st == CQ_OK && !quantize_vector(p, x, y)) {
    st = cq_quantize_per_tensor(x->data, cq_tensor_numel(x), p->scale, p->zero_point, p->dtype,
                                y->data);
  }
  if (st == CQ_OK) st = cq_tensor_set_qparams(y, &qp);
  cq_qparams_release(&qp);
  if (st != CQ_OK) return st;
  out[0] = y;
  return CQ_OK;
}

static void quantize_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const quantize_impl *p = m->impl;
  const int64_t zp = p->zero_point;
  cq_strbuf_append(sb, "scale=");
  cq_format_torch_tensor_1d(sb, &p->scale, 1);
  cq_strbuf_append(sb, ", zero_point=");
  cq_format_torch_int_tensor_1d(sb, &zp, 1, NULL);
  cq_strbuf_appendf(sb, ", dtype=torch.%s", cq_qdtype_name(p->dtype));
}

static const cq_module_type quantize_type = {
    .name = "Quantize",
    .forward = quantize_forward,
    .extra_repr = quantize_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_qmodule_quantize(cq_module **out, float scale, int32_t zero_point, cq_qdtype dtype) {
  if (!out) return cq_fail(CQ_EINVAL, "quantized module: the output pointer is NULL");
  *out = NULL;
  if (dtype != CQ_QUINT8 && dtype != CQ_QINT8 && dtype != CQ_QINT32) {
    return cq_fail(CQ_EINVAL, "Quantize: dtype must be torch.quint8, torch.qint8 or torch.qint32, "
                   "got %s", (unsigned)dtype < CQ_QDTYPE_COUNT ? cq_qdtype_name(dtype) : "?");
  }
  if (!(isfinite(scale) && scale > 0.0f)) {
    return cq_fail(CQ_EVALUE, "Quantize: scale %g must be finite and > 0", (double)scale);
  }
  int64_t lo, hi;
  cq_status st = cq_qdtype_range(dtype, &lo, &hi);
  if (st != CQ_OK) return st;
  if (zero_point < lo || zero_point > hi) {
    return cq_fail(CQ_EVALUE, "Quantize: zero point %d is outside torch.%s's [%lld, %lld]",
                   (int)zero_point, cq_qdtype_name(dtype), (long long)lo, (long long)hi);
  }
  quantize_impl *p = cq_calloc_for(1, sizeof *p, "Quantize");
  if (!p) return CQ_ENOMEM;
  p->scale = scale;
  p->zero_point = zero_point;
  p->dtype = dtype;
  return cq_module_new(&quantize_type, p, out);
}

/* --- DeQuantize --------------------------------------------------------------------------------- */

static cq_status dequantize_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                    int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_tensor *x = in[0];
  const cq_qparams *qp = x->qparams;
  if (!qp) {
    if (x->dtype == CQ_F32) {
      out[0] = in[0];
      return CQ_OK;
    }
    const cq_dtype_info *info = cq_dtype_get(x->dtype);
    return cq_module_fail(m, CQ_EINVAL, "input must be a quantized tensor, got %s",
                          info ? info->name : "an invalid dtype");
  }
  cq_dtype storage;
  cq_status st = cq_qdtype_storage(qp->dtype, &storage);
  if (st != CQ_OK || storage != x->dtype) {
    return cq_module_fail(m, CQ_EINVAL, "input storage does not match its qparams' dtype %s",
                          cq_qdtype_name(qp->dtype));
  }
  cq_tensor *y;
  st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &y);
  if (st != CQ_OK) return st;
  if (cq_qscheme_is_per_channel(qp->qscheme)) {
    if (qp->axis < 0 || qp->axis >= x->ndim || x->shape[qp->axis] != qp->count) {
      return cq_module_fail(m, CQ_EINVAL, "per-channel qparams (axis %d, %lld channels) do not "
                            "fit the input", qp->axis, (long long)qp->count);
    }
    int64_t outer = 1, inner = 1;
    for (int i = 0; i < qp->axis; i++) outer *= x->shape[i];
    for (int i = qp->axis + 1; i < x->ndim; i++) inner *= x->shape[i];
    st = cq_dequantize_per_channel(x->data, outer, qp->count, inner, qp->scale, qp->zero_point,
                                   qp->zero_point_float, qp->dtype, y->data);
  } else {
    st = cq_dequantize_per_tensor(x->data, cq_tensor_numel(x), qp->scale[0], qp->zero_point[0],
                                  qp->dtype, y->data);
  }
  if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
  out[0] = y;
  return CQ_OK;
}

static const cq_module_type dequantize_type = {
    .name = "DeQuantize",
    .forward = dequantize_forward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_qmodule_dequantize(cq_module **out) {
  if (!out) return cq_fail(CQ_EINVAL, "DeQuantize: the output pointer is NULL");
  return cq_module_new(&dequantize_type, NULL, out);
}

int cq_qmodule_describe_quantize(const cq_module *m, cq_qmodule_info *info) {
  if (m->type != &quantize_type) return 0;
  const quantize_impl *p = m->impl;
  *info = (cq_qmodule_info){0};
  info->scale = p->scale;
  info->zero_point = p->zero_point;
  info->dtype = p->dtype;
  return 1;
}

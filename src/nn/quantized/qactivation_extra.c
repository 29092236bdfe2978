/* nnq.LeakyReLU and nnq.Hardswish: what convert puts in place of nn.LeakyReLU / nn.Hardswish. Both
 * run on quantized tensors with the output qparams their observer chose (the output keeps the
 * input's dtype, as PyTorch's kernels allocate it). */
#include <math.h>

#include "core/alloc.h"
#include "nn/module_impl.h"
#include "nn/quantized/qmodules.h"
#include "nn/quantized/qops_activation_extra.h"
#include "nn/quantized/qstatic_impl.h"

typedef struct qact_impl {
  float negative_slope; /* LeakyReLU */
  float scale;
  int32_t zero_point;
  cq_backend engine; /* Hardswish */
} qact_impl;

static cq_status qleaky_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const qact_impl *p = m->impl;
  return cq_qop_leaky_relu(m, ctx, in[0], p->negative_slope, p->scale, p->zero_point,
                           CQ_QLAYOUT_DEFAULT, &out[0]);
}

static cq_status qhardswish_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                    int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const qact_impl *p = m->impl;
  return cq_qop_hardswish(m, ctx, in[0], p->scale, p->zero_point, p->engine, CQ_QLAYOUT_DEFAULT,
                          &out[0]);
}

/* nn.LeakyReLU.extra_repr (nnq.LeakyReLU shows neither scale nor zero point). */
static void qleaky_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const qact_impl *p = m->impl;
  cq_strbuf_append(sb, "negative_slope=");
  cq_qmod_append_float_arg(sb, p->negative_slope);
}

static const cq_module_type qleaky_type = {
    .name = "QuantizedLeakyReLU",
    .forward = qleaky_forward,
    .extra_repr = qleaky_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type qhardswish_type = {
    .name = "QuantizedHardswish",
    .forward = qhardswish_forward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static cq_status new_qact(cq_module **out, const cq_module_type *type, float slope,
                          const cq_qparams *yq, cq_backend engine) {
  if (!out) return cq_fail(CQ_EINVAL, "%s: the output pointer is NULL", type->name);
  *out = NULL;
  cq_status st = cq_qmod_check_engine(engine);
  if (st != CQ_OK) return st;
  if (!yq || !yq->scale || !yq->zero_point || yq->count != 1 ||
      cq_qscheme_is_per_channel(yq->qscheme)) {
    return cq_fail(CQ_EINVAL, "%s: output qparams must be per-tensor", type->name);
  }
  if (yq->dtype != CQ_QUINT8 && yq->dtype != CQ_QINT8) {
    return cq_fail(CQ_EINVAL, "%s: output dtype must be torch.quint8 or torch.qint8, got torch.%s",
                   type->name, cq_qdtype_name(yq->dtype));
  }
  if (!(isfinite(yq->scale[0]) && yq->scale[0] > 0.0f)) {
    return cq_fail(CQ_EVALUE, "%s: scale %g must be finite and > 0", type->name,
                   (double)yq->scale[0]);
  }
  if (!isfinite(slope)) {
    return cq_fail(CQ_EINVAL, "%s: negative_slope %g must be finite", type->name, (double)slope);
  }
  qact_impl *p = cq_calloc_for(1, sizeof *p, type->name);
  if (!p) return CQ_ENOMEM;
  p->negative_slope = slope;
  p->scale = yq->scale[0];
  p->zero_point = yq->zero_point[0];
  p->engine = engine;
  return cq_module_new(type, p, out);
}

cq_status cq_qmodule_leaky_relu(cq_module **out, float negative_slope, const cq_qparams *yq) {
  return new_qact(out, &qleaky_type, negative_slope, yq, CQ_BACKEND_X86);
}

cq_status cq_qmodule_hardswish(cq_module **out, const cq_qparams *yq, cq_backend engine) {
  return new_qact(out, &qhardswish_type, 0.0f, yq, engine);
}

cq_status cq_qmodule_activation_describe(const cq_module *m, float *scale, int32_t *zero_point,
                                         float *negative_slope) {
  if (!m || (m->type != &qleaky_type && m->type != &qhardswish_type)) {
    return cq_fail(CQ_EINVAL, "%s is not a QuantizedLeakyReLU or QuantizedHardswish",
                   m ? m->type->name : "(null)");
  }
  const qact_impl *p = m->impl;
  if (scale) *scale = p->scale;
  if (zero_point) *zero_point = p->zero_point;
  if (negative_slope) *negative_slope = p->negative_slope;
  return CQ_OK;
}

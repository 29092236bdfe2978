/* nnq.Linear and nniq.LinearReLU: quint8 [*, in_features] -> quint8 [*, out_features] through the
 * int8 GEMM (kernels/gemm/qgemm.h) with the engine's requantization rule.
 *
 * Construction does what from_float does after the observers ran: quantizes the weight with the
 * weight qparams (clamped to the observer's range) and packs it once with the float bias. The
 * output stage depends on the input's qparams, which PyTorch learns at each call as well: every
 * forward binds the packed weights to the input scale / zero point (cq_qgemm_create: the
 * per-channel multipliers and, for QNNPACK, the int32 bias) and runs the GEMM. Nothing the module
 * owns changes during a forward, so one module may run on several threads at once.
 *
 * Buffers: "weight" (int8 [out, in] with the weight qparams attached, what PyTorch's weight()
 * returns) and "bias" (float32 [out], when there is one). */
#include <string.h>

#include "core/alloc.h"
#include "kernels/gemm/qgemm.h"
#include "nn/module_impl.h"
#include "nn/quantized/qmodules.h"
#include "nn/quantized/qops.h"
#include "nn/quantized/qstatic_impl.h"

typedef struct qlinear_impl {
  int64_t in_features, out_features;
  int relu;
  cq_backend engine;
  cq_requant_rule rule;
  int per_channel;
  cq_qscheme print_qscheme; /* per_tensor_affine / per_channel_affine */
  float y_scale;
  int32_t y_zp;
  cq_qgemm_packed *packed;
} qlinear_impl;

static void qlinear_destroy(void *p) {
  qlinear_impl *impl = p;
  if (!impl) return;
  cq_qgemm_packed_destroy(impl->packed);
  cq_free(impl);
}

static cq_status qlinear_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                 int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const qlinear_impl *p = m->impl;
  const cq_tensor *x = in[0];
  cq_status st = cq_qact_check(m, x, 0);
  if (st != CQ_OK) return st;
  if (x->dtype != CQ_U8) {
    return cq_module_fail(m, CQ_EINVAL, "expected a quint8 input (static quantized linear takes "
                          "quint8 activations), got qint8");
  }
  if (x->ndim < 1 || x->shape[x->ndim - 1] != p->in_features) {
    char s[128];
    return cq_module_fail(m, CQ_ESHAPE, "input of shape %s does not end in in_features=%lld",
                          cq_shape_str(x->ndim, x->shape, s, sizeof s), (long long)p->in_features);
  }
  int64_t shape[CQ_MAX_DIMS];
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
  shape[x->ndim - 1] = p->out_features;
  cq_tensor *y;
  st = cq_qact_new(ctx, CQ_QUINT8, x->ndim, shape, p->y_scale, p->y_zp, &y);
  if (st != CQ_OK) return st;
  const int64_t rows = cq_tensor_numel(x) / p->in_features;
  if (rows == 0) {
    out[0] = y;
    return CQ_OK;
  }
  cq_qgemm_quant q = {
      .x_scale = x->qparams->scale[0],
      .x_zp = x->qparams->zero_point[0],
      .y_scale = p->y_scale,
      .y_zp = p->y_zp,
      .relu = p->relu,
      .rule = p->rule,
  };
  /* a container may fold the clamp after this linear into it */
  q.clamp = cq_ctx_fused_clamp(ctx, &q.clamp_lo, &q.clamp_hi);
  cq_qgemm_op *op = NULL;
  st = cq_qgemm_create(p->packed, &q, &op);
  if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
  st = cq_qgemm_run(op, x->data, rows, p->in_features, y->data, p->out_features, NULL);
  cq_qgemm_destroy(op);
  if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
  out[0] = y;
  return CQ_OK;
}

static void qlinear_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const qlinear_impl *p = m->impl;
  cq_strbuf_appendf(sb, "in_features=%lld, out_features=%lld, scale=", (long long)p->in_features,
                    (long long)p->out_features);
  cq_qmod_append_scale(sb, p->y_scale);
  cq_strbuf_appendf(sb, ", zero_point=%d, qscheme=torch.%s", (int)p->y_zp,
                    cq_qscheme_name(p->print_qscheme));
}

static int qlinear_fuses_clamp(const cq_module *m, float *y_scale, int32_t *y_zp, int *upper) {
  const qlinear_impl *p = m->impl;
  return cq_qmod_fuses_clamp(p->relu, p->y_scale, p->y_zp, p->rule, y_scale, y_zp, upper);
}

static const cq_module_type qlinear_type = {
    .name = "QuantizedLinear",
    .forward = qlinear_forward,
    .extra_repr = qlinear_extra_repr,
    .destroy_impl = qlinear_destroy,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
    .fuses_clamp = qlinear_fuses_clamp,
};

static const cq_module_type qlinear_relu_type = {
    .name = "QuantizedLinearReLU",
    .forward = qlinear_forward,
    .extra_repr = qlinear_extra_repr,
    .destroy_impl = qlinear_destroy,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_qmodule_linear(cq_module **out, int64_t in_features, int64_t out_features,
                            const float *weight, const float *bias, const cq_qparams *wq,
                            const cq_qparams *yq, int relu, cq_backend engine) {
  if (!out) return cq_fail(CQ_EINVAL, "quantized module: the output pointer is NULL");
  *out = NULL;
  const char *who = relu ? "QuantizedLinearReLU" : "QuantizedLinear";
  cq_status st = cq_qmod_check_engine(engine);
  if (st != CQ_OK) return st;
  if (in_features < 1 || out_features < 1 || in_features > INT32_MAX ||
      out_features > INT32_MAX) {
    return cq_fail(CQ_EINVAL, "%s: in_features %lld and out_features %lld must be in [1, 2^31 - 1]",
                   who, (long long)in_features, (long long)out_features);
  }
  float y_scale;
  int32_t y_zp;
  st = cq_qmod_output_qparams(who, yq, &y_scale, &y_zp);
  if (st != CQ_OK) return st;
  const int64_t wshape[2] = {out_features, in_features};
  cq_tensor *qw = NULL, *b = NULL;
  st = cq_qmod_quantize_weight(who, weight, out_features, in_features, 2, wshape, wq, engine, &qw);
  if (st != CQ_OK) return st;
  if (bias) {
    st = cq_tensor_create(&b, CQ_F32, 1, &out_features);
    if (st == CQ_OK) memcpy(b->data, bias, sizeof(float) * (size_t)out_features);
  }
  qlinear_impl *p = st == CQ_OK ? cq_calloc_for(1, sizeof *p, who) : NULL;
  if (!p) {
    cq_tensor_free(qw);
    cq_tensor_free(b);
    return st != CQ_OK ? st : CQ_ENOMEM;
  }
  const cq_qparams *wqp = qw->qparams;
  p->in_features = in_features;
  p->out_features = out_features;
  p->relu = relu != 0;
  p->engine = engine;
  p->rule = cq_qmod_engine_rule(engine);
  p->per_channel = cq_qscheme_is_per_channel(wqp->qscheme);
  p->print_qscheme = p->per_channel ? CQ_PER_CHANNEL_AFFINE : CQ_PER_TENSOR_AFFINE;
  p->y_scale = y_scale;
  p->y_zp = y_zp;
  st = cq_qgemm_pack(qw->data, out_features, in_features, wqp->scale, wqp->zero_point,
                     p->per_channel, bias, &p->packed);
  if (st != CQ_OK) {
    cq_tensor_free(qw);
    cq_tensor_free(b);
    qlinear_destroy(p);
    return cq_fail_context(st, "%s", who);
  }
  return cq_module_new_weighted(relu ? &qlinear_relu_type : &qlinear_type, p, qw, b, out);
}

int cq_qmodule_describe_linear(const cq_module *m, cq_qmodule_info *info) {
  if (m->type != &qlinear_type && m->type != &qlinear_relu_type) return 0;
  const qlinear_impl *p = m->impl;
  *info = (cq_qmodule_info){0};
  info->has_engine = 1;
  info->engine = p->engine;
  info->scale = p->y_scale;
  info->zero_point = p->y_zp;
  info->dtype = CQ_QUINT8;
  info->relu = p->relu;
  info->in_features = p->in_features;
  info->out_features = p->out_features;
  return 1;
}

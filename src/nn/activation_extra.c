/* nn.LeakyReLU, nn.Hardsigmoid, nn.Hardswish: forward and backward with the arithmetic of PyTorch
 * 1.13's CPU kernels (the scalar and vector bodies compute the same operations in the same order):
 *
 *   leaky_relu   y = x > 0 ? x : x * slope          dx = x > 0 ? g : g * slope
 *   hardsigmoid  y = min(max(x + 3, 0), 6) / 6      dx = -3 < x < 3 ? g * f32(1/6) : 0
 *   hardswish    y = x * min(max(x + 3, 0), 6) / 6  dx = x < -3 ? 0 : x < 3 ? g * (x / 3 + 0.5) : g
 *
 * On quantized tensors: LeakyReLU is torch.nn.functional.leaky_relu on a quantized tensor (the
 * input's qparams), Hardsigmoid the quantized hardsigmoid (fixed output qparams 1/256); Hardswish
 * has no kernel for quantized tensors in PyTorch 1.13 (aten::hardswish is not registered for
 * QuantizedCPU), so it fails as PyTorch does: convert replaces it with QuantizedHardswish. */
#include <math.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "cquant/modules.h"
#include "cquant/qconfig.h"
#include "nn/layers.h"
#include "nn/module_impl.h"
#include "nn/quantized/qops.h"
#include "nn/quantized/qops_activation_extra.h"

typedef enum act_kind { ACT_LEAKY_RELU, ACT_HARDSIGMOID, ACT_HARDSWISH } act_kind;

typedef struct act_impl {
  act_kind kind;
  float negative_slope;
} act_impl;

static float hardsigmoid_f(float x) {
  float c = x + 3.0f;
  c = c > 0.0f ? c : 0.0f;
  c = c < 6.0f ? c : 6.0f;
  return c / 6.0f;
}

static float hardswish_f(float x) {
  float c = x + 3.0f;
  c = c > 0.0f ? c : 0.0f;
  c = c < 6.0f ? c : 6.0f;
  return x * c / 6.0f;
}

static cq_status quantized_forward(cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                                   cq_tensor **y) {
  const act_impl *p = m->impl;
  cq_status st = cq_qact_check(m, x, 0);
  if (st != CQ_OK) return st;
  switch (p->kind) {
    case ACT_LEAKY_RELU:
      return cq_qop_leaky_relu(m, ctx, x, p->negative_slope, x->qparams->scale[0],
                               x->qparams->zero_point[0], CQ_QLAYOUT_DEFAULT, y);
    case ACT_HARDSIGMOID:
      return cq_qop_hardsigmoid(m, ctx, x, cq_quantized_engine(), CQ_QLAYOUT_DEFAULT, y);
    default:
      return cq_module_fail(m, CQ_EUNSUPPORTED,
                            "hardswish of a quantized tensor needs output qparams (PyTorch has no "
                            "such kernel either): prepare and convert the model to get a "
                            "QuantizedHardswish");
  }
}

static cq_status act_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                             cq_tensor **out) {
  (void)nin;
  (void)nout;
  const act_impl *p = m->impl;
  const cq_tensor *x = in[0];
  if (x->qparams) return quantized_forward(m, ctx, x, &out[0]);
  if (x->dtype != CQ_F32) {
    const cq_dtype_info *info = cq_dtype_get(x->dtype);
    return cq_module_fail(m, CQ_EINVAL, "input must be float32, got %s",
                          info ? info->name : "an invalid dtype");
  }
  cq_tensor *y;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &y);
  if (st != CQ_OK) return st;
  const float *xd = x->data;
  float *yd = y->data;
  const int64_t n = cq_tensor_numel(x);
  const float slope = p->negative_slope;
  switch (p->kind) {
    case ACT_LEAKY_RELU:
      for (int64_t i = 0; i < n; i++) yd[i] = xd[i] > 0.0f ? xd[i] : xd[i] * slope;
      break;
    case ACT_HARDSIGMOID:
      for (int64_t i = 0; i < n; i++) yd[i] = hardsigmoid_f(xd[i]);
      break;
    default:
      for (int64_t i = 0; i < n; i++) yd[i] = hardswish_f(xd[i]);
      break;
  }
  out[0] = y;
  return CQ_OK;
}

static cq_status act_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                              cq_tensor *const *gout, cq_tensor **gin) {
  const act_impl *p = m->impl;
  const cq_tensor *x = e->in[0];
  if (x->dtype != CQ_F32) return CQ_OK; /* quantized inputs have no gradient */
  cq_tensor *gx;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  const float *xd = x->data, *g = gout[0]->data;
  float *d = gx->data;
  const int64_t n = cq_tensor_numel(x);
  const float slope = p->negative_slope;
  const float one_sixth = 1.0f / 6.0f;
  switch (p->kind) {
    case ACT_LEAKY_RELU:
      for (int64_t i = 0; i < n; i++) d[i] = xd[i] > 0.0f ? g[i] : g[i] * slope;
      break;
    case ACT_HARDSIGMOID:
      for (int64_t i = 0; i < n; i++) {
        d[i] = (xd[i] > -3.0f && xd[i] < 3.0f) ? g[i] * one_sixth : 0.0f;
      }
      break;
    default:
      for (int64_t i = 0; i < n; i++) {
        if (xd[i] < -3.0f) {
          d[i] = 0.0f;
        } else if (xd[i] < 3.0f) {
          d[i] = g[i] * (xd[i] / 3.0f + 0.5f);
        } else {
          d[i] = g[i];
        }
      }
      break;
  }
  gin[0] = gx;
  return CQ_OK;
}

static void leaky_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const act_impl *p = m->impl;
  cq_strbuf_append(sb, "negative_slope=");
  cq_strbuf_append_pyfloat_f32(sb, p->negative_slope);
}

static const cq_module_type leaky_relu_type = {
    .name = "LeakyReLU",
    .forward = act_forward,
    .backward = act_backward,
    .extra_repr = leaky_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type hardsigmoid_type = {
    .name = "Hardsigmoid",
    .forward = act_forward,
    .backward = act_backward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type hardswish_type = {
    .name = "Hardswish",
    .forward = act_forward,
    .backward = act_backward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static cq_status new_act(cq_module **out, const cq_module_type *type, act_kind kind, float slope) {
  act_impl *p = cq_calloc_for(1, sizeof *p, type->name);
  if (!p) return CQ_ENOMEM;
  p->kind = kind;
  p->negative_slope = slope;
  return cq_module_new(type, p, out);
}

cq_status cq_leaky_relu(cq_module **out, float negative_slope) {
  if (!out) return cq_fail(CQ_EINVAL, "LeakyReLU: the output pointer is NULL");
  *out = NULL;
  if (!isfinite(negative_slope)) {
    return cq_fail(CQ_EINVAL, "LeakyReLU: negative_slope %g must be finite",
                   (double)negative_slope);
  }
  return new_act(out, &leaky_relu_type, ACT_LEAKY_RELU, negative_slope);
}

cq_status cq_hardsigmoid(cq_module **out) {
  if (!out) return cq_fail(CQ_EINVAL, "Hardsigmoid: the output pointer is NULL");
  *out = NULL;
  return new_act(out, &hardsigmoid_type, ACT_HARDSIGMOID, 0.0f);
}

cq_status cq_hardswish(cq_module **out) {
  if (!out) return cq_fail(CQ_EINVAL, "Hardswish: the output pointer is NULL");
  *out = NULL;
  return new_act(out, &hardswish_type, ACT_HARDSWISH, 0.0f);
}

cq_status cq_leaky_relu_describe(const cq_module *m, float *negative_slope) {
  if (!m || m->type != &leaky_relu_type) {
    return cq_fail(CQ_EINVAL, "%s is not a LeakyReLU", m ? m->type->name : "(null)");
  }
  *negative_slope = ((const act_impl *)m->impl)->negative_slope;
  return CQ_OK;
}

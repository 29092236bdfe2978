/* Elementwise activations and softmax: nn.ReLU6, nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Softmax.
 *
 * The arithmetic follows PyTorch 1.13's CPU kernels: hardtanh is a clamp that lets NaN through and
 * whose gradient is zero at and beyond the bounds; sigmoid's gradient is g * (1 - y) * y, tanh's
 * g * (1 - y * y), both from the saved output; softmax subtracts the maximum, exponentiates, and
 * scales by the reciprocal of the sum; its gradient is (g - sum(g * y)) * y along the dim. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "cquant/modules.h"
#include "cquant/qconfig.h"
#include "nn/layers.h"
#include "nn/module_impl.h"
#include "nn/quantized/qops.h"

static cq_status need_f32(const cq_module *m, const cq_tensor *x) {
  if (x->dtype != CQ_F32) {
    const cq_dtype_info *info = cq_dtype_get(x->dtype);
    return cq_module_fail(m, CQ_EINVAL, "input must be float32, got %s",
                          info ? info->name : "an invalid dtype");
  }
  return CQ_OK;
}

/* y with the shape of x, for elementwise forwards. */
static cq_status like(cq_ctx *ctx, const cq_tensor *x, cq_tensor **y) {
  return cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, y);
}

/* --- Hardtanh / ReLU6 ------------------------------------------------------------------------- */

typedef struct hardtanh_impl {
  float min_val, max_val;
} hardtanh_impl;

static cq_status hardtanh_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                  int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const hardtanh_impl *p = m->impl;
  const cq_tensor *x = in[0];
  /* quantized: clamp to the quantized bounds, the input's qparams */
  if (x->qparams) return cq_qop_clamp(m, ctx, x, p->min_val, p->max_val, &out[0]);
  cq_status st = need_f32(m, x);
  if (st != CQ_OK) return st;
  cq_tensor *y;
  st = like(ctx, x, &y);
  if (st != CQ_OK) return st;
  const float lo = p->min_val, hi = p->max_val;
  const float *xd = x->data;
  float *yd = y->data;
  const int64_t n = cq_tensor_numel(x);
  for (int64_t i = 0; i < n; i++) {
    const float v = xd[i];
    yd[i] = v < lo ? lo : (v > hi ? hi : v); /* NaN stays NaN */
  }
  out[0] = y;
  return CQ_OK;
}

static cq_status hardtanh_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                   cq_tensor *const *gout, cq_tensor **gin) {
  const hardtanh_impl *p = m->impl;
  const cq_tensor *x = e->in[0];
  cq_tensor *gx;
  cq_status st = like(ctx, x, &gx);
  if (st != CQ_OK) return st;
  const float lo = p->min_val, hi = p->max_val;
  const float *xd = x->data, *g = gout[0]->data;
  float *d = gx->data;
  const int64_t n = cq_tensor_numel(x);
  for (int64_t i = 0; i < n; i++) d[i] = (xd[i] <= lo || xd[i] >= hi) ? 0.0f : g[i];
  gin[0] = gx;
  return CQ_OK;
}

static void hardtanh_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const hardtanh_impl *p = m->impl;
  cq_strbuf_append(sb, "min_val=");
  cq_strbuf_append_pyfloat_f32(sb, p->min_val);
  cq_strbuf_append(sb, ", max_val=");
  cq_strbuf_append_pyfloat_f32(sb, p->max_val);
}

/* Quantized: the byte range of the clamp (a Graph folds it into the conv before it). */
static int hardtanh_clamp_of(const cq_module *m, float x_scale, int32_t x_zp, int32_t *lo,
                             int32_t *hi) {
  const hardtanh_impl *p = m->impl;
  cq_qop_clamp_bounds(p->min_val, p->max_val, x_scale, x_zp, lo, hi);
  return 1;
}

/* Quantized, the clamp keeps a channels-last input channels-last (cq_qop_clamp), so a conv ->
 * ReLU6 -> conv chain stays channels-last; float activations are never channels-last. */
static const cq_module_type hardtanh_type = {
    .name = "Hardtanh",
    .forward = hardtanh_forward,
    .backward = hardtanh_backward,
    .extra_repr = hardtanh_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
    .reads_channels_last = cq_reads_channels_last_passes,
    .clamp_of = hardtanh_clamp_of,
};

/* nn.ReLU6 is Hardtanh(0, 6) printing as "ReLU6()". */
static const cq_module_type relu6_type = {
    .name = "ReLU6",
    .forward = hardtanh_forward,
    .backward = hardtanh_backward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
    .reads_channels_last = cq_reads_channels_last_passes,
    .clamp_of = hardtanh_clamp_of,
};

static cq_status new_hardtanh(cq_module **out, const cq_module_type *type, float lo, float hi) {
  hardtanh_impl *p = cq_calloc_for(1, sizeof *p, type->name);
  if (!p) return CQ_ENOMEM;
  p->min_val = lo;
  p->max_val = hi;
  return cq_module_new(type, p, out);
}

cq_status cq_hardtanh(cq_module **out, float min_val, float max_val) {
  *out = NULL;
  if (!(max_val > min_val)) {
    return cq_fail(CQ_EINVAL, "Hardtanh: max_val (%g) must be greater than min_val (%g)",
                   (double)max_val, (double)min_val);
  }
  return new_hardtanh(out, &hardtanh_type, min_val, max_val);
}

cq_status cq_relu6(cq_module **out) {
  *out = NULL;
  return new_hardtanh(out, &relu6_type, 0.0f, 6.0f);
}

/* --- Sigmoid / Tanh ---------------------------------------------------------------------------- */

static cq_status sigmoid_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                 int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_tensor *x = in[0];
  if (x->qparams) { /* quantized: fixed output qparams, the engine's kernel at call time */
    return cq_qop_sigmoid(m, ctx, x, cq_quantized_engine(), CQ_QLAYOUT_DEFAULT, &out[0]);
  }
  cq_status st = need_f32(m, x);
  if (st != CQ_OK) return st;
  cq_tensor *y;
  st = like(ctx, x, &y);
  if (st != CQ_OK) return st;
  const float *xd = x->data;
  float *yd = y->data;
  const int64_t n = cq_tensor_numel(x);
  for (int64_t i = 0; i < n; i++) yd[i] = 1.0f / (1.0f + expf(-xd[i]));
  out[0] = y;
  return CQ_OK;
}

static cq_status sigmoid_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                  cq_tensor *const *gout, cq_tensor **gin) {
  (void)m;
  const cq_tensor *y = e->out[0];
  cq_tensor *gx;
  cq_status st = like(ctx, y, &gx);
  if (st != CQ_OK) return st;
  const float *yd = y->data, *g = gout[0]->data;
  float *d = gx->data;
  const int64_t n = cq_tensor_numel(y);
  for (int64_t i = 0; i < n; i++) d[i] = g[i] * (1.0f - yd[i]) * yd[i];
  gin[0] = gx;
  return CQ_OK;
}

static const cq_module_type sigmoid_type = {
    .name = "Sigmoid",
    .forward = sigmoid_forward,
    .backward = sigmoid_backward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_sigmoid(cq_module **out) { return cq_module_new(&sigmoid_type, NULL, out); }

static cq_status tanh_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                              cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_tensor *x = in[0];
  if (x->qparams) { /* quantized: fixed output qparams, the engine's kernel at call time */
    return cq_qop_tanh(m, ctx, x, cq_quantized_engine(), CQ_QLAYOUT_DEFAULT, &out[0]);
  }
  cq_status st = need_f32(m, x);
  if (st != CQ_OK) return st;
  cq_tensor *y;
  st = like(ctx, x, &y);
  if (st != CQ_OK) return st;
  const float *xd = x->data;
  float *yd = y->data;
  const int64_t n = cq_tensor_numel(x);
  for (int64_t i = 0; i < n; i++) yd[i] = tanhf(xd[i]);
  out[0] = y;
  return CQ_OK;
}

static cq_status tanh_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                               cq_tensor *const *gout, cq_tensor **gin) {
  (void)m;
  const cq_tensor *y = e->out[0];
  cq_tensor *gx;
  cq_status st = like(ctx, y, &gx);
  if (st != CQ_OK) return st;
  const float *yd = y->data, *g = gout[0]->data;
  float *d = gx->data;
  const int64_t n = cq_tensor_numel(y);
  for (int64_t i = 0; i < n; i++) d[i] = g[i] * fmaf(-yd[i], yd[i], 1.0f); /* fused, as PyTorch */
  gin[0] = gx;
  return CQ_OK;
}

static const cq_module_type tanh_type = {
    .name = "Tanh",
    .forward = tanh_forward,
    .backward = tanh_backward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_tanh(cq_module **out) { return cq_module_new(&tanh_type, NULL, out); }

/* --- Softmax ----------------------------------------------------------------------------------- */

typedef struct softmax_impl {
  int dim;
} softmax_impl;

/* Splits x around the softmax dim: outer x len x inner. */
static cq_status softmax_geometry(const cq_module *m, const cq_tensor *x, int64_t *outer,
                                  int64_t *len, int64_t *inner) {
  const softmax_impl *p = m->impl;
  const int nd = x->ndim > 0 ? x->ndim : 1; /* a 0-d tensor takes dim 0 or -1 */
  int d = p->dim < 0 ? p->dim + nd : p->dim;
  if (d < 0 || d >= nd) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "Dimension out of range (expected to be in range of [%d, %d], but got %d)",
                          -nd, nd - 1, p->dim);
  }
  *outer = 1;
  *inner = 1;
  *len = 1;
  if (x->ndim == 0) return CQ_OK;
  for (int i = 0; i < d; i++) *outer *= x->shape[i];
  *len = x->shape[d];
  for (int i = d + 1; i < x->ndim; i++) *inner *= x->shape[i];
  return CQ_OK;
}

static cq_status softmax_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                 int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_tensor *x = in[0];
  cq_status st = need_f32(m, x);
  if (st != CQ_OK) return st;
  int64_t outer, len, inner;
  st = softmax_geometry(m, x, &outer, &len, &inner);
  if (st != CQ_OK) return st;
  cq_tensor *y;
  st = like(ctx, x, &y);
  if (st != CQ_OK) return st;
  const float *xd = x->data;
  float *yd = y->data;
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t i = 0; i < inner; i++) {
      const float *xs = xd + o * len * inner + i;
      float *ys = yd + o * len * inner + i;
      if (len == 0) continue;
      float mx = xs[0];
      for (int64_t k = 1; k < len; k++) {
        const float v = xs[k * inner];
        if (v > mx || isnan(v)) mx = v;
      }
      float sum = 0.0f;
      for (int64_t k = 0; k < len; k++) {
        ys[k * inner] = expf(xs[k * inner] - mx);
        sum += ys[k * inner];
      }
      const float r = 1.0f / sum;
      for (int64_t k = 0; k < len; k++) ys[k * inner] *= r;
    }
  }
  out[0] = y;
  return CQ_OK;
}

static cq_status softmax_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                  cq_tensor *const *gout, cq_tensor **gin) {
  const cq_tensor *y = e->out[0];
  int64_t outer, len, inner;
  cq_status st = softmax_geometry(m, y, &outer, &len, &inner);
  if (st != CQ_OK) return st;
  cq_tensor *gx;
  st = like(ctx, y, &gx);
  if (st != CQ_OK) return st;
  const float *yd = y->data, *gd = gout[0]->data;
  float *d = gx->data;
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t i = 0; i < inner; i++) {
      const int64_t base = o * len * inner + i;
      float dot = 0.0f;
      for (int64_t k = 0; k < len; k++) dot += gd[base + k * inner] * yd[base + k * inner];
      for (int64_t k = 0; k < len; k++) {
        d[base + k * inner] = (gd[base + k * inner] - dot) * yd[base + k * inner];
      }
    }
  }
  gin[0] = gx;
  return CQ_OK;
}

static void softmax_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const softmax_impl *p = m->impl;
  cq_strbuf_appendf(sb, "dim=%d", p->dim);
}

static const cq_module_type softmax_type = {
    .name = "Softmax",
    .forward = softmax_forward,
    .backward = softmax_backward,
    .extra_repr = softmax_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_softmax(cq_module **out, int dim) {
  *out = NULL;
  if (dim < -CQ_MAX_DIMS || dim >= CQ_MAX_DIMS) {
    return cq_fail(CQ_EINVAL, "Softmax: dim %d is outside [%d, %d]", dim, -CQ_MAX_DIMS,
                   CQ_MAX_DIMS - 1);
  }
  softmax_impl *p = cq_calloc_for(1, sizeof *p, "Softmax");
  if (!p) return CQ_ENOMEM;
  p->dim = dim;
  return cq_module_new(&softmax_type, p, out);
}

cq_status cq_hardtanh_describe(const cq_module *m, float *min_val, float *max_val) {
  if (m->type != &hardtanh_type && m->type != &relu6_type) {
    return cq_fail(CQ_EINVAL, "%s is not a Hardtanh or ReLU6", m->type->name);
  }
  const hardtanh_impl *p = m->impl;
  *min_val = p->min_val;
  *max_val = p->max_val;
  return CQ_OK;
}

cq_status cq_softmax_describe(const cq_module *m, int *dim) {
  if (m->type != &softmax_type) return cq_fail(CQ_EINVAL, "%s is not a Softmax", m->type->name);
  *dim = ((const softmax_impl *)m->impl)->dim;
  return CQ_OK;
}

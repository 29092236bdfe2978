/* The QAT modules with batch normalization (nniqat.ConvBn1d/2d, ConvBnReLU1d/2d, LinearBn1d) and the
 * float containers fuse_modules_qat makes for them (nni.ConvBn*, nni.ConvBnReLU*, nni.LinearBn1d).
 *
 * A QAT BN module runs three recorded calls: a hidden "part" module computing
 *   y0 = conv(x, weight_fake_quant(W * sf), 0) / sf + b     (sf = gamma / sqrt(running_var + eps))
 * then its "bn" child on y0, then (ConvBnReLU) a hidden ReLU. The part's backward gives the input
 * gradient and accumulates into W, b and the BN weight (through sf); the BN's own backward adds
 * its weight / bias gradients. That is exactly what autograd does for _forward_approximate. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "nn/fused.h"
#include "nn/layer_math.h"
#include "nn/layers.h"
#include "nn/qat/fake_quant.h"
#include "nn/qat/qat_modules.h"

/* ---- float fused containers -------------------------------------------------------------------- */

#define FUSED_BN_TYPE(var, class_name)                                   \
  static const cq_module_type var = {                                    \
      .name = class_name,                                                \
      .forward = cq_fused_forward,                                       \
      .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,          \
  }

FUSED_BN_TYPE(fused_conv_bn1d_type, "ConvBn1d");
FUSED_BN_TYPE(fused_conv_bn2d_type, "ConvBn2d");
FUSED_BN_TYPE(fused_conv_bn_relu1d_type, "ConvBnReLU1d");
FUSED_BN_TYPE(fused_conv_bn_relu2d_type, "ConvBnReLU2d");
FUSED_BN_TYPE(fused_linear_bn1d_type, "LinearBn1d");

int cq_module_is_fused_bn_float(const cq_module *m) {
  return m && (m->type == &fused_conv_bn1d_type || m->type == &fused_conv_bn2d_type ||
               m->type == &fused_conv_bn_relu1d_type || m->type == &fused_conv_bn_relu2d_type ||
               m->type == &fused_linear_bn1d_type);
}

static void free_all(cq_module *a, cq_module *b, cq_module *c) {
  cq_module_free(a);
  cq_module_free(b);
  cq_module_free(c);
}

static cq_status make_container(cq_module **out, const cq_module_type *type, cq_module *a,
                                cq_module *b, cq_module *c) {
  cq_module *m = NULL;
  cq_status st = cq_module_new(type, NULL, &m);
  if (st != CQ_OK) {
    free_all(a, b, c);
    return st;
  }
  /* cq_module_add_child takes ownership even when it fails; children not reached yet are freed
   * here */
  st = cq_module_add_child(m, "0", a);
  a = NULL;
  if (st == CQ_OK) {
    st = cq_module_add_child(m, "1", b);
    b = NULL;
  }
  if (st == CQ_OK && c) {
    st = cq_module_add_child(m, "2", c);
    c = NULL;
  }
  if (st != CQ_OK) {
    free_all(a, b, c);
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

cq_status cq_fused_bn_container(cq_module **out, const char *class_name, cq_module *a,
                                cq_module *b, cq_module *c) {
  *out = NULL;
  static const cq_module_type *const types[] = {&fused_conv_bn1d_type, &fused_conv_bn2d_type,
                                                &fused_conv_bn_relu1d_type,
                                                &fused_conv_bn_relu2d_type,
                                                &fused_linear_bn1d_type};
  for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
    if (strcmp(types[i]->name, class_name) == 0) return make_container(out, types[i], a, b, c);
  }
  free_all(a, b, c);
  return cq_fail(CQ_EINVAL, "no fused BN container class '%s'", class_name);
}

/* The checks of fuse_conv_bn / fuse_linear_bn with is_qat=True. */
static cq_status check_bn(const char *what, const cq_module *bn, const char *bn_type,
                          int64_t channels) {
  int64_t features = 0;
  if (!bn || !cq_module_is(bn, bn_type)) {
    return cq_fail(CQ_EINVAL, "%s: expected a %s, got %s", what, bn_type,
                   bn ? bn->type->name : "NULL");
  }
  cq_status st = cq_batchnorm_describe(bn, &features, NULL, NULL);
  if (st != CQ_OK) return st;
  if (features != channels) {
    return cq_fail(CQ_EINVAL, "%s: Output channel of the layer (%lld) must match num_features of "
                   "%s (%lld)", what, (long long)channels, bn->type->name, (long long)features);
  }
  return CQ_OK;
}

static cq_status conv_bn_common(cq_module **out, cq_module *conv, cq_module *bn, cq_module *relu) {
  *out = NULL;
  const char *what = relu ? "ConvBnReLU" : "ConvBn";
  cq_conv_options o;
  int dims = 0;
  cq_status st = CQ_OK;
  if (!conv || (!cq_module_is(conv, "Conv1d") && !cq_module_is(conv, "Conv2d")) ||
      cq_conv_describe(conv, &o, &dims) != CQ_OK) {
    st = cq_fail(CQ_EINVAL, "%s: expected a Conv1d or Conv2d, got %s", what,
                 conv ? conv->type->name : "NULL");
  }
  if (st == CQ_OK) st = check_bn(what, bn, dims == 1 ? "BatchNorm1d" : "BatchNorm2d",
                                 o.out_channels);
  if (st == CQ_OK && relu && !cq_module_is(relu, "ReLU")) {
    st = cq_fail(CQ_EINVAL, "%s: expected a ReLU, got %s", what, relu->type->name);
  }
  if (st != CQ_OK) {
    free_all(conv, bn, relu);
    return st;
  }
  const cq_module_type *t = relu ? (dims == 1 ? &fused_conv_bn_relu1d_type
                                              : &fused_conv_bn_relu2d_type)
                                 : (dims == 1 ? &fused_conv_bn1d_type : &fused_conv_bn2d_type);
  return make_container(out, t, conv, bn, relu);
}

cq_status cq_fused_conv_bn(cq_module **out, cq_module *conv, cq_module *bn) {
  return conv_bn_common(out, conv, bn, NULL);
}

cq_status cq_fused_conv_bn_relu(cq_module **out, cq_module *conv, cq_module *bn, cq_module *relu) {
  if (!relu) {
    free_all(conv, bn, NULL);
    *out = NULL;
    return cq_fail(CQ_EINVAL, "ConvBnReLU: the ReLU is NULL");
  }
  return conv_bn_common(out, conv, bn, relu);
}

cq_status cq_fused_linear_bn(cq_module **out, cq_module *linear, cq_module *bn) {
  *out = NULL;
  int64_t in_features = 0, out_features = 0;
  int bias = 0;
  cq_status st = CQ_OK;
  if (!linear || !cq_module_is(linear, "Linear") ||
      cq_linear_describe(linear, &in_features, &out_features, &bias) != CQ_OK) {
    st = cq_fail(CQ_EINVAL, "LinearBn1d: expected a Linear, got %s",
                 linear ? linear->type->name : "NULL");
  }
  if (st == CQ_OK) st = check_bn("LinearBn1d", bn, "BatchNorm1d", out_features);
  if (st != CQ_OK) {
    free_all(linear, bn, NULL);
    return st;
  }
  return make_container(out, &fused_linear_bn1d_type, linear, bn, NULL);
}

/* ---- the hidden layer of a QAT BN module ------------------------------------------------------- */

typedef struct part_saved {
  float *ws;         /* W * sf */
  cq_tensor *ws_t;   /* a tensor view of ws (the weight post-process input) */
  float *wq;         /* weight_fake_quant(W * sf) */
  cq_pp_state *pp;
  float *sf, *rs;    /* per output channel */
  cq_tensor *conv;   /* the raw layer output, before / sf (owned by the ctx) */
} part_saved;

static void part_saved_free(void *v) {
  part_saved *s = v;
  if (!s) return;
  cq_free(s->ws);
  cq_tensor_free(s->ws_t);
  cq_free(s->wq);
  cq_pp_state_free(s->pp);
  cq_free(s->sf);
  cq_free(s->rs);
  cq_free(s);
}

/* Elements per output channel and the layout [outer, channels, inner] of the layer output y. */
static void out_layout(const cq_qat_impl *p, const cq_tensor *y, int64_t *outer, int64_t *channels,
                       int64_t *inner) {
  if (p->dims == 0) { /* linear: features are the last dimension */
    *channels = p->out_features;
    *inner = 1;
    *outer = cq_tensor_numel(y) / (p->out_features ? p->out_features : 1);
    return;
  }
  const int batched = y->ndim == p->dims + 2;
  *outer = batched ? y->shape[0] : 1;
  *channels = p->conv.out_channels;
  *inner = 1;
  for (int d = batched ? 2 : 1; d < y->ndim; d++) *inner *= y->shape[d];
}

static cq_status part_forward(cq_module *part, cq_ctx *ctx, int nin, cq_tensor *const *in,
                              int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  cq_module *m = part->impl; /* the QAT module */
  const cq_qat_impl *p = m->impl;
  cq_named_tensor *w = cq_module_own_tensor(m, "weight");
  cq_named_tensor *b = cq_module_own_tensor(m, "bias");
  cq_module *bn = cq_module_find(m, "bn");
  cq_module *wpp = cq_module_find(m, "weight_fake_quant");
  double eps = 0.0;
  if (!w || !bn || !wpp || cq_batchnorm_describe(bn, NULL, &eps, NULL) != CQ_OK) {
    return cq_module_fail(m, CQ_ESTATE, "weight, bn or weight_fake_quant is missing");
  }
  const float *gamma = cq_module_own_tensor(bn, "weight")->tensor->data;
  const float *rv = cq_module_own_tensor(bn, "running_var")->tensor->data;
  const int64_t C = p->dims == 0 ? p->out_features : p->conv.out_channels;
  const int64_t nw = cq_tensor_numel(w->tensor);
  const int64_t per = C ? nw / C : 0;
  part_saved *s = cq_calloc_for(1, sizeof *s, "QAT saved state");
  if (!s) return CQ_ENOMEM;
  s->ws = cq_malloc_for(sizeof(float) * (size_t)(nw ? nw : 1), "scaled weight");
  s->wq = cq_malloc_for(sizeof(float) * (size_t)(nw ? nw : 1), "fake-quantized weight");
  s->sf = cq_malloc_for(sizeof(float) * (size_t)(C ? C : 1), "BN scale factor");
  s->rs = cq_malloc_for(sizeof(float) * (size_t)(C ? C : 1), "BN running std");
  cq_status st = (s->ws && s->wq && s->sf && s->rs) ? CQ_OK : CQ_ENOMEM;
  if (st == CQ_OK) {
    st = cq_tensor_wrap(&s->ws_t, CQ_F32, w->tensor->ndim, w->tensor->shape, s->ws);
  }
  if (st != CQ_OK) {
    part_saved_free(s);
    return st;
  }
  const float feps = (float)eps;
  const float *wd = w->tensor->data;
  for (int64_t c = 0; c < C; c++) {
    s->rs[c] = sqrtf(rv[c] + feps);
    s->sf[c] = gamma[c] / s->rs[c];
    for (int64_t i = 0; i < per; i++) s->ws[c * per + i] = wd[c * per + i] * s->sf[c];
  }
  const int grad = cq_ctx_grad_enabled(ctx);
  st = cq_post_process_run(wpp, s->ws_t, s->wq, grad ? &s->pp : NULL);
  if (st != CQ_OK) st = cq_fail_context(st, "%s weight_fake_quant", m->type->name);
  cq_tensor *conv = NULL, *y = NULL;
  if (st == CQ_OK) {
    if (p->dims == 0) {
      st = cq_linear_f32_forward(m, p->in_features, p->out_features, in[0], s->wq, NULL, ctx,
                                 &conv);
    } else {
      st = cq_conv_f32_forward(m, &p->conv, p->dims, in[0], s->wq, NULL, ctx, &conv);
    }
  }
  if (st == CQ_OK) st = cq_ctx_tensor(ctx, CQ_F32, conv->ndim, conv->shape, &y);
  if (st == CQ_OK) {
    int64_t outer, channels, inner;
    out_layout(p, conv, &outer, &channels, &inner);
    const float *cd = conv->data;
    const float *bias = b ? b->tensor->data : NULL;
    float *yd = y->data;
    for (int64_t o = 0; o < outer; o++) {
      for (int64_t c = 0; c < channels; c++) {
        const int64_t base = (o * channels + c) * inner;
        for (int64_t i = 0; i < inner; i++) {
          float v = cd[base + i] / s->sf[c];
          if (bias) v = v + bias[c];
          yd[base + i] = v;
        }
      }
    }
    s->conv = conv;
  }
  if (st != CQ_OK || !grad) {
    part_saved_free(s);
  } else {
    cq_ctx_save(ctx, s, part_saved_free);
  }
  if (st == CQ_OK) out[0] = y;
  return st;
}

static cq_status part_backward(cq_module *part, cq_ctx *ctx, const cq_tape_entry *e,
                               cq_tensor *const *gout, cq_tensor **gin) {
  cq_module *m = part->impl;
  const cq_qat_impl *p = m->impl;
  const part_saved *s = e->saved;
  if (!s) return cq_module_fail(m, CQ_ESTATE, "backward without saved state");
  cq_named_tensor *w = cq_module_own_tensor(m, "weight");
  cq_named_tensor *b = cq_module_own_tensor(m, "bias");
  cq_module *bn = cq_module_find(m, "bn");
  cq_named_tensor *gamma = bn ? cq_module_own_tensor(bn, "weight") : NULL;
  if (!w || !gamma) return cq_module_fail(m, CQ_ESTATE, "weight or bn is missing");
  const cq_tensor *x = e->in[0];
  const cq_tensor *conv = s->conv;
  const int64_t n = cq_tensor_numel(conv);
  const int64_t nw = cq_tensor_numel(w->tensor);
  int64_t outer, channels, inner;
  out_layout(p, conv, &outer, &channels, &inner);
  const int64_t per = channels ? nw / channels : 0;
  cq_tensor *gx;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  float *gconv = cq_malloc_for(sizeof(float) * (size_t)(n ? n : 1), "layer gradient");
  float *gwq = cq_calloc_for((size_t)(nw ? nw : 1), sizeof(float), "weight gradient");
  double *dsf = cq_calloc_for((size_t)(channels ? channels : 1), sizeof(double), "sf gradient");
  if (!gconv || !gwq || !dsf) {
    cq_free(gconv);
    cq_free(gwq);
    cq_free(dsf);
    return CQ_ENOMEM;
  }
  /* y0 = conv / sf + b: db = sum(g); dconv = g / sf; dsf -= sum(g * ((conv / sf) / sf)) */
  const float *g = gout[0]->data, *cd = conv->data;
  float *gb = b ? b->grad->data : NULL;
  for (int64_t c = 0; c < channels; c++) {
    double bsum = 0.0, ssum = 0.0;
    const float sf = s->sf[c];
    for (int64_t o = 0; o < outer; o++) {
      const int64_t base = (o * channels + c) * inner;
      for (int64_t i = 0; i < inner; i++) {
        const float gi = g[base + i];
        bsum += gi;
        gconv[base + i] = gi / sf;
        const float t = (cd[base + i] / sf) / sf;
        ssum += (double)(-gi * t);
      }
    }
    if (gb) gb[c] += (float)bsum;
    dsf[c] = ssum;
  }
  if (p->dims == 0) {
    cq_linear_f32_backward(p->in_features, p->out_features, x, s->wq, gconv, gx->data, gwq, NULL);
  } else {
    st = cq_conv_f32_backward(m, &p->conv, p->dims, x, s->wq, gconv, gx->data, gwq, NULL);
  }
  /* W * sf: dW = dWs * sf; dsf += sum(dWs * W); sf = gamma / rs: dgamma += dsf / rs */
  if (st == CQ_OK) {
    st = cq_post_process_grad(cq_module_find(m, "weight_fake_quant"), s->pp, s->ws_t, gwq, gwq);
  }
  if (st == CQ_OK) {
    const float *wd = w->tensor->data;
    float *gw = w->grad->data, *gg = gamma->grad->data;
    for (int64_t c = 0; c < channels; c++) {
      double wsum = 0.0;
      for (int64_t i = 0; i < per; i++) {
        const float gws = gwq[c * per + i];
        gw[c * per + i] += gws * s->sf[c];
        wsum += (double)(gws * wd[c * per + i]);
      }
      const float total = (float)(dsf[c] + wsum);
      gg[c] += total / s->rs[c];
    }
    gin[0] = gx;
  }
  cq_free(gconv);
  cq_free(gwq);
  cq_free(dsf);
  return st;
}

/* The hidden layer's impl is the QAT module itself, which it does not own. */
static void no_free(void *impl) { (void)impl; }

static const cq_module_type part_type = {
    .name = "QATLayer", /* hidden: never a child, never printed */
    .forward = part_forward,
    .backward = part_backward,
    .destroy_impl = no_free,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_qat_bn_parts(cq_module *m) {
  cq_qat_impl *p = m->impl;
  cq_status st = cq_module_new(&part_type, m, &p->part);
  if (st != CQ_OK) {
    p->part = NULL;
    return st;
  }
  if (p->kind == CQ_QAT_CONV_BN_RELU) {
    st = cq_relu(&p->relu);
    if (st != CQ_OK) p->relu = NULL;
  }
  return st;
}

/* ---- forward of the QAT BN module -------------------------------------------------------------- */

cq_status cq_qat_bn_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                            cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_qat_impl *p = m->impl;
  cq_module *bn = cq_module_find(m, "bn");
  if (!p->part || !bn) return cq_module_fail(m, CQ_ESTATE, "the module is incomplete");
  if (p->freeze_bn) bn->training = 0; /* a frozen BN stays in eval mode whatever train() did */
  cq_tensor *y0 = NULL, *z = NULL;
  cq_status st = cq_module_forward1(p->part, ctx, in[0], &y0);
  if (st != CQ_OK) return st;
  st = cq_module_forward1(bn, ctx, y0, &z);
  if (st != CQ_OK) return cq_fail_context(st, "%s (bn)", m->type->name);
  if (p->relu) return cq_module_forward1(p->relu, ctx, z, &out[0]);
  out[0] = z;
  return CQ_OK;
}

/* The QAT module types (nnqat.Linear / Conv2d, nniqat.LinearReLU / ConvReLU2d and the BN kinds of
 * qat_bn.c), from_float, and the forward / backward of the kinds without BN (qat_modules.h). */
#include "nn/qat/qat_modules.h"

#include <string.h>

#include "core/alloc.h"
#include "cquant/quantization.h"
#include "nn/fused.h"
#include "nn/layer_math.h"
#include "nn/layers.h"
#include "nn/qat/fake_quant.h"

static void qat_destroy(void *impl) {
  cq_qat_impl *p = impl;
  if (!p) return;
  cq_module_free(p->part);
  cq_module_free(p->relu);
  cq_free(p);
}

/* --- printing ----------------------------------------------------------------------------------- */

void cq_qat_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const cq_qat_impl *p = m->impl;
  if (p->dims == 0) {
    cq_strbuf_appendf(sb, "in_features=%lld, out_features=%lld, bias=%s",
                      (long long)p->in_features, (long long)p->out_features,
                      p->bias ? "True" : "False");
    return;
  }
  cq_conv_append_repr(sb, p->dims, &p->conv);
}

/* --- forward and backward of Linear, LinearReLU, Conv2d, ConvReLU2d ----------------------------- */

typedef struct leaf_saved {
  float *wq;         /* the fake-quantized weight the forward used */
  cq_pp_state *pp;   /* what weight_fake_quant's backward needs */
} leaf_saved;

static void leaf_saved_free(void *v) {
  leaf_saved *s = v;
  if (!s) return;
  cq_free(s->wq);
  cq_pp_state_free(s->pp);
  cq_free(s);
}

static int has_relu(cq_qat_kind k) {
  return k == CQ_QAT_LINEAR_RELU || k == CQ_QAT_CONV_RELU || k == CQ_QAT_CONV_BN_RELU;
}

static cq_module *weight_post(cq_module *m) { return cq_module_find(m, "weight_fake_quant"); }

static cq_status leaf_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                              cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_qat_impl *p = m->impl;
  cq_named_tensor *w = cq_module_own_tensor(m, "weight");
  cq_named_tensor *b = cq_module_own_tensor(m, "bias");
  cq_module *wpp = weight_post(m);
  if (!w || !wpp) return cq_module_fail(m, CQ_ESTATE, "weight or weight_fake_quant is missing");
  const int64_t nw = cq_tensor_numel(w->tensor);
  leaf_saved *s = cq_calloc_for(1, sizeof *s, "QAT saved state");
  if (!s) return CQ_ENOMEM;
  s->wq = cq_malloc_for(sizeof(float) * (size_t)(nw ? nw : 1), "fake-quantized weight");
  if (!s->wq) {
    leaf_saved_free(s);
    return CQ_ENOMEM;
  }
  const int grad = cq_ctx_grad_enabled(ctx);
  cq_status st = cq_post_process_run(wpp, w->tensor, s->wq, grad ? &s->pp : NULL);
  if (st != CQ_OK) {
    leaf_saved_free(s);
    return cq_fail_context(st, "%s weight_fake_quant", m->type->name);
  }
  const float *bias = b ? b->tensor->data : NULL;
  cq_tensor *y = NULL;
  if (p->dims == 0) {
    st = cq_linear_f32_forward(m, p->in_features, p->out_features, in[0], s->wq, bias, ctx, &y);
  } else {
    st = cq_conv_f32_forward(m, &p->conv, p->dims, in[0], s->wq, bias, ctx, &y);
  }
  if (st == CQ_OK && has_relu(p->kind)) {
    float *yd = y->data;
    const int64_t n = cq_tensor_numel(y);
    for (int64_t i = 0; i < n; i++) yd[i] = yd[i] > 0.0f ? yd[i] : 0.0f;
  }
  if (st != CQ_OK || !grad) {
    leaf_saved_free(s);
  } else {
    cq_ctx_save(ctx, s, leaf_saved_free);
  }
  if (st == CQ_OK) out[0] = y;
  return st;
}

static cq_status leaf_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                               cq_tensor *const *gout, cq_tensor **gin) {
  const cq_qat_impl *p = m->impl;
  const leaf_saved *s = e->saved;
  if (!s) return cq_module_fail(m, CQ_ESTATE, "backward without saved state");
  cq_named_tensor *w = cq_module_own_tensor(m, "weight");
  cq_named_tensor *b = cq_module_own_tensor(m, "bias");
  const cq_tensor *x = e->in[0];
  const int64_t nw = cq_tensor_numel(w->tensor);
  const int64_t ny = cq_tensor_numel(e->out[0]);
  cq_tensor *gx;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  float *gwq = cq_calloc_for((size_t)(nw ? nw : 1), sizeof(float), "weight gradient");
  float *gy_relu = NULL;
  if (gwq && has_relu(p->kind)) {
    gy_relu = cq_malloc_for(sizeof(float) * (size_t)(ny ? ny : 1), "output gradient");
  }
  if (!gwq || (has_relu(p->kind) && !gy_relu)) {
    cq_free(gwq);
    return CQ_ENOMEM;
  }
  const float *gy = gout[0]->data;
  if (gy_relu) { /* threshold_backward: the gradient passes where the output is positive */
    const float *yd = e->out[0]->data;
    for (int64_t i = 0; i < ny; i++) gy_relu[i] = yd[i] > 0.0f ? gy[i] : 0.0f;
    gy = gy_relu;
  }
  float *gb = b ? b->grad->data : NULL;
  if (p->dims == 0) {
    cq_linear_f32_backward(p->in_features, p->out_features, x, s->wq, gy, gx->data, gwq, gb);
  } else {
    st = cq_conv_f32_backward(m, &p->conv, p->dims, x, s->wq, gy, gx->data, gwq, gb);
  }
  if (st == CQ_OK) st = cq_post_process_grad(weight_post(m), s->pp, w->tensor, gwq, gwq);
  if (st == CQ_OK) {
    float *gw = w->grad->data;
    for (int64_t i = 0; i < nw; i++) gw[i] += gwq[i];
    gin[0] = gx;
  }
  cq_free(gwq);
  cq_free(gy_relu);
  return st;
}

/* --- types -------------------------------------------------------------------------------------- */

#define LEAF_TYPE(var, class_name)                                        \
  static const cq_module_type var = {                                     \
      .name = class_name,                                                 \
      .forward = leaf_forward,                                            \
      .backward = leaf_backward,                                          \
      .extra_repr = cq_qat_extra_repr,                                    \
      .destroy_impl = qat_destroy,                                        \
      .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,           \
  }

LEAF_TYPE(linear_type, "Linear");
LEAF_TYPE(linear_relu_type, "LinearReLU");
LEAF_TYPE(conv2d_type, "Conv2d");
LEAF_TYPE(conv_relu2d_type, "ConvReLU2d");

cq_status cq_qat_bn_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                            cq_tensor **out);

#define BN_TYPE(var, class_name)                                          \
  static const cq_module_type var = {                                     \
      .name = class_name,                                                 \
      .forward = cq_qat_bn_forward,                                       \
      .extra_repr = cq_qat_extra_repr,                                    \
      .destroy_impl = qat_destroy,                                        \
      .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,           \
  }

BN_TYPE(conv_bn1d_type, "ConvBn1d");
BN_TYPE(conv_bn2d_type, "ConvBn2d");
BN_TYPE(conv_bn_relu1d_type, "ConvBnReLU1d");
BN_TYPE(conv_bn_relu2d_type, "ConvBnReLU2d");
BN_TYPE(linear_bn1d_type, "LinearBn1d");

static const cq_module_type *type_of(cq_qat_kind kind, int dims) {
  switch (kind) {
    case CQ_QAT_LINEAR: return &linear_type;
    case CQ_QAT_LINEAR_RELU: return &linear_relu_type;
    case CQ_QAT_CONV: return &conv2d_type;
    case CQ_QAT_CONV_RELU: return &conv_relu2d_type;
    case CQ_QAT_CONV_BN: return dims == 1 ? &conv_bn1d_type : &conv_bn2d_type;
    case CQ_QAT_CONV_BN_RELU: return dims == 1 ? &conv_bn_relu1d_type : &conv_bn_relu2d_type;
    case CQ_QAT_LINEAR_BN: return &linear_bn1d_type;
  }
  return NULL;
}

int cq_is_qat_module(const cq_module *m) {
  if (!m) return 0;
  const cq_module_type *t = m->type;
  return t == &linear_type || t == &linear_relu_type || t == &conv2d_type ||
         t == &conv_relu2d_type || t == &conv_bn1d_type || t == &conv_bn2d_type ||
         t == &conv_bn_relu1d_type || t == &conv_bn_relu2d_type || t == &linear_bn1d_type;
}

int cq_qat_has_bn(const cq_module *m) {
  if (!cq_is_qat_module(m)) return 0;
  const cq_qat_impl *p = m->impl;
  if (p->kind == CQ_QAT_LINEAR_BN) return 1;
  return p->kind == CQ_QAT_CONV_BN || p->kind == CQ_QAT_CONV_BN_RELU ? 2 : 0;
}

cq_status cq_qat_module_new(cq_qat_kind kind, cq_qat_impl *impl, cq_module **out) {
  impl->kind = kind;
  return cq_module_new(type_of(kind, impl->dims), impl, out);
}

/* --- from_float --------------------------------------------------------------------------------- */

/* A copy of the float layer's `name` parameter (value and gradient) registered on dst. */
static cq_status copy_param(cq_module *src, cq_module *dst, const char *name) {
  cq_named_tensor *s = cq_module_own_tensor(src, name);
  if (!s) return CQ_OK;
  cq_tensor *t = NULL;
  cq_status st = cq_tensor_create(&t, s->tensor->dtype, s->tensor->ndim, s->tensor->shape);
  if (st != CQ_OK) return st;
  memcpy(t->data, s->tensor->data, cq_tensor_nbytes(t));
  st = cq_module_add_parameter(dst, name, t);
  if (st != CQ_OK) return st;
  cq_named_tensor *d = cq_module_own_tensor(dst, name);
  if (s->grad && d->grad) memcpy(d->grad->data, s->grad->data, cq_tensor_nbytes(d->grad));
  return CQ_OK;
}

/* What kind of QAT module m becomes, and its weighted layer (m itself or child "0"). */
static int classify(cq_module *m, cq_qat_kind *kind, cq_module **layer) {
  cq_conv_options o;
  int dims = 0;
  int64_t a, b;
  int bias;
  *layer = m;
  if (cq_module_is(m, "Linear") && cq_linear_describe(m, &a, &b, &bias) == CQ_OK) {
    *kind = CQ_QAT_LINEAR;
    return 1;
  }
  if (cq_module_is(m, "Conv2d") && cq_conv_describe(m, &o, &dims) == CQ_OK) {
    *kind = CQ_QAT_CONV;
    return 1;
  }
  if (cq_module_is_fused_float(m) && cq_module_is(m, "ConvReLU2d")) {
    *kind = CQ_QAT_CONV_RELU;
  } else if (cq_module_is_fused_float(m) && cq_module_is(m, "LinearReLU")) {
    *kind = CQ_QAT_LINEAR_RELU;
  } else if (cq_module_is_fused_bn_float(m)) {
    if (cq_module_is(m, "LinearBn1d")) {
      *kind = CQ_QAT_LINEAR_BN;
    } else if (cq_module_is(m, "ConvBnReLU1d") || cq_module_is(m, "ConvBnReLU2d")) {
      *kind = CQ_QAT_CONV_BN_RELU;
    } else {
      *kind = CQ_QAT_CONV_BN;
    }
  } else {
    return 0;
  }
  *layer = cq_module_find(m, "0");
  return *layer != NULL;
}

cq_status cq_qat_from_float(cq_module *m, const cq_qconfig *qc, cq_module **out) {
  *out = NULL;
  cq_qat_kind kind;
  cq_module *layer = NULL;
  if (!classify(m, &kind, &layer)) return CQ_OK;
  if (!qc || !qc->weight.present) {
    return cq_fail(CQ_EINVAL, "%s: the qconfig must have a weight entry for a QAT module",
                   m->type->name);
  }
  cq_qat_impl *p = cq_calloc_for(1, sizeof *p, "QAT module");
  if (!p) return CQ_ENOMEM;
  cq_status st = CQ_OK;
  if (kind == CQ_QAT_LINEAR || kind == CQ_QAT_LINEAR_RELU || kind == CQ_QAT_LINEAR_BN) {
    st = cq_linear_describe(layer, &p->in_features, &p->out_features, &p->bias);
  } else {
    st = cq_conv_describe(layer, &p->conv, &p->dims);
    p->bias = p->conv.bias;
  }
  if (st != CQ_OK) {
    cq_free(p);
    return st;
  }
  cq_module *q = NULL;
  st = cq_qat_module_new(kind, p, &q);
  if (st != CQ_OK) return st;
  st = copy_param(layer, q, "weight");
  if (st == CQ_OK) st = copy_param(layer, q, "bias");
  if (st == CQ_OK && cq_qat_has_bn(q)) {
    cq_module *placeholder = NULL;
    st = cq_identity(&placeholder);
    if (st == CQ_OK) st = cq_module_add_child(q, "bn", placeholder);
  }
  cq_module *wfq = NULL;
  if (st == CQ_OK) st = cq_qspec_module(&qc->weight, &wfq);
  if (st == CQ_OK) st = cq_module_add_child(q, "weight_fake_quant", wfq);
  if (st == CQ_OK) st = cq_module_set_qconfig(q, qc);
  if (st == CQ_OK && cq_qat_has_bn(q)) st = cq_qat_bn_parts(q);
  if (st != CQ_OK) {
    cq_module_free(q);
    return cq_fail_context(st, "%s from_float", m->type->name);
  }
  *out = q;
  return CQ_OK;
}

void cq_qat_swap_bn(cq_module *qat, cq_module *float_fused) {
  int i = 0, j = 0;
  while (i < qat->nchildren && strcmp(qat->child_names[i], "bn") != 0) i++;
  while (j < float_fused->nchildren && strcmp(float_fused->child_names[j], "1") != 0) j++;
  if (i == qat->nchildren || j == float_fused->nchildren) return;
  cq_qat_impl *p = qat->impl;
  cq_module *a = qat->children[i], *b = float_fused->children[j];
  qat->children[i] = b;
  b->parent = qat;
  float_fused->children[j] = a;
  a->parent = float_fused;
  if (cq_module_is(b, "Identity")) { /* the BatchNorm moves back */
    a->training = p->bn_saved_training;
  } else { /* from_float's BN is a new module: training, statistics updated */
    p->bn_saved_training = b->training;
    b->training = 1;
    p->freeze_bn = 0;
  }
}

void cq_qat_freeze_bn(cq_module *m, int frozen) {
  if (!cq_qat_has_bn(m)) return;
  cq_qat_impl *p = m->impl;
  p->freeze_bn = frozen != 0;
  cq_module *bn = cq_module_find(m, "bn");
  if (bn) bn->training = !frozen;
}

int cq_qat_bn_frozen(const cq_module *m) {
  return cq_qat_has_bn(m) ? ((const cq_qat_impl *)m->impl)->freeze_bn : 0;
}

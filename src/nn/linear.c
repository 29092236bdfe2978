/* nn.Linear: y = x W^T + b over the last dimension; any leading dimensions (layer_math.c). */
#include "core/alloc.h"
#include "cquant/modules.h"
#include "nn/init.h"
#include "nn/layer_math.h"
#include "nn/layers.h"
#include "nn/module_impl.h"

typedef struct linear_impl {
  int64_t in_features, out_features;
  int bias;
} linear_impl;

static cq_status linear_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const linear_impl *p = m->impl;
  const float *b = p->bias ? m->tensors[1].tensor->data : NULL;
  return cq_linear_f32_forward(m, p->in_features, p->out_features, in[0],
                               m->tensors[0].tensor->data, b, ctx, out);
}

static cq_status linear_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                 cq_tensor *const *gout, cq_tensor **gin) {
  const linear_impl *p = m->impl;
  const cq_tensor *x = e->in[0];
  cq_tensor *gx;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  cq_linear_f32_backward(p->in_features, p->out_features, x, m->tensors[0].tensor->data,
                         gout[0]->data, gx->data, m->tensors[0].grad->data,
                         p->bias ? m->tensors[1].grad->data : NULL);
  gin[0] = gx;
  return CQ_OK;
}

static void linear_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const linear_impl *p = m->impl;
  cq_strbuf_appendf(sb, "in_features=%lld, out_features=%lld, bias=%s", (long long)p->in_features,
                    (long long)p->out_features, p->bias ? "True" : "False");
}

static const cq_module_type linear_type = {
    .name = "Linear",
    .forward = linear_forward,
    .backward = linear_backward,
    .extra_repr = linear_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_linear(cq_module **out, int64_t in_features, int64_t out_features, int bias) {
  *out = NULL;
  if (in_features < 0 || out_features < 0) {
    return cq_fail(CQ_EINVAL, "Linear: in_features %lld and out_features %lld must be >= 0",
                   (long long)in_features, (long long)out_features);
  }
  linear_impl *p = cq_calloc_for(1, sizeof *p, "Linear");
  if (!p) return CQ_ENOMEM;
  p->in_features = in_features;
  p->out_features = out_features;
  p->bias = bias != 0;
  cq_module *m;
  cq_status st = cq_module_new(&linear_type, p, &m);
  if (st != CQ_OK) return st;
  int64_t wshape[2] = {out_features, in_features};
  cq_tensor *w = NULL, *b = NULL;
  st = cq_tensor_create(&w, CQ_F32, 2, wshape);
  const double bound = cq_init_fan_in_bound(in_features);
  if (st == CQ_OK) {
    cq_init_uniform(w, cq_init_kaiming_bound(in_features));
    st = cq_module_add_parameter(m, "weight", w);
  }
  if (st == CQ_OK && p->bias) {
    st = cq_tensor_create(&b, CQ_F32, 1, &out_features);
    if (st == CQ_OK) {
      cq_init_uniform(b, bound);
      st = cq_module_add_parameter(m, "bias", b);
    }
  }
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

cq_status cq_linear_describe(const cq_module *m, int64_t *in_features, int64_t *out_features,
                             int *bias) {
  if (m->type != &linear_type) return cq_fail(CQ_EINVAL, "%s is not a Linear", m->type->name);
  const linear_impl *p = m->impl;
  *in_features = p->in_features;
  *out_features = p->out_features;
  *bias = p->bias;
  return CQ_OK;
}

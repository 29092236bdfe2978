/* nn.Conv1d and nn.Conv2d: cross-correlation with stride, zero padding, dilation, groups and an
 * optional bias, forward and backward, computed per batch item and group as im2col + cq_sgemm.
 *
 * Layout: Conv2d takes [N, C, H, W] (or unbatched [C, H, W]) and gives [N, O, Ho, Wo]; Conv1d takes
 * [N, C, L] (or [C, L]) and gives [N, O, Lo]. Conv1d runs as a 2-D convolution of height 1.
 * Parameters in PyTorch's order: weight [O, C/groups, kh, kw] (Conv1d [O, C/groups, k]), then bias
 * [O]; both initialised U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = C/groups * prod(kernel), as
 * kaiming_uniform_(a=sqrt(5)) gives. Only padding_mode='zeros' and numeric padding exist (PyTorch's
 * padding='same'/'valid' strings are not offered). */
#include <string.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "nn/init.h"
#include "nn/layer_math.h"
#include "nn/layers.h"
#include "nn/module_impl.h"

typedef struct conv_impl {
  int dims; /* 1 (Conv1d) or 2 (Conv2d) */
  /* As the user gave them (checked): kernel_size etc. [0] = H and [1] = W for Conv2d; Conv1d uses
   * [0] only and keeps zeros in [1]. kernel_1tuple: a Conv2d whose kernel_size was given as (k,),
   * printed so. */
  cq_conv_options o;
} conv_impl;

cq_conv_options cq_conv_defaults(int64_t in_channels, int64_t out_channels, int64_t kh,
                                 int64_t kw) {
  cq_conv_options o;
  memset(&o, 0, sizeof o);
  o.in_channels = in_channels;
  o.out_channels = out_channels;
  o.kernel_size[0] = kh;
  o.kernel_size[1] = kw;
  o.stride[0] = o.stride[1] = 1;
  o.dilation[0] = o.dilation[1] = 1;
  o.groups = 1;
  o.bias = 1;
  return o;
}

/* --- forward and backward (layer_math.c) ---------------------------------------------------- */

static cq_status conv_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                              cq_tensor **out) {
  (void)nin;
  (void)nout;
  const conv_impl *p = m->impl;
  const float *b = p->o.bias ? m->tensors[1].tensor->data : NULL;
  return cq_conv_f32_forward(m, &p->o, p->dims, in[0], m->tensors[0].tensor->data, b, ctx, out);
}

static cq_status conv_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                               cq_tensor *const *gout, cq_tensor **gin) {
  const conv_impl *p = m->impl;
  const cq_tensor *x = e->in[0];
  cq_tensor *gx;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  float *gb = p->o.bias ? m->tensors[1].grad->data : NULL;
  st = cq_conv_f32_backward(m, &p->o, p->dims, x, m->tensors[0].tensor->data, gout[0]->data,
                            gx->data, m->tensors[0].grad->data, gb);
  if (st != CQ_OK) return st;
  gin[0] = gx;
  return CQ_OK;
}

/* --- printing ------------------------------------------------------------------------------------ */

/* A Python tuple of the module's dimensionality: "(3,)" or "(3, 5)". */
static void append_tuple(cq_strbuf *sb, int dims, const int64_t *v) {
  if (dims == 1) {
    cq_strbuf_appendf(sb, "(%lld,)", (long long)v[0]);
  } else {
    cq_strbuf_appendf(sb, "(%lld, %lld)", (long long)v[0], (long long)v[1]);
  }
}

static int all_equal(int dims, const int64_t *v, int64_t value) {
  for (int d = 0; d < dims; d++) {
    if (v[d] != value) return 0;
  }
  return 1;
}

void cq_conv_append_repr(cq_strbuf *sb, int dims, const cq_conv_options *o) {
  cq_strbuf_appendf(sb, "%lld, %lld, kernel_size=", (long long)o->in_channels,
                    (long long)o->out_channels);
  append_tuple(sb, o->kernel_1tuple ? 1 : dims, o->kernel_size);
  cq_strbuf_append(sb, ", stride=");
  append_tuple(sb, dims, o->stride);
  if (!all_equal(dims, o->padding, 0)) {
    cq_strbuf_append(sb, ", padding=");
    append_tuple(sb, dims, o->padding);
  }
  if (!all_equal(dims, o->dilation, 1)) {
    cq_strbuf_append(sb, ", dilation=");
    append_tuple(sb, dims, o->dilation);
  }
  if (o->groups != 1) cq_strbuf_appendf(sb, ", groups=%lld", (long long)o->groups);
  if (!o->bias) cq_strbuf_append(sb, ", bias=False");
}

static void conv_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const conv_impl *p = m->impl;
  cq_conv_append_repr(sb, p->dims, &p->o);
}

static const cq_module_type conv1d_type = {
    .name = "Conv1d",
    .forward = conv_forward,
    .backward = conv_backward,
    .extra_repr = conv_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type conv2d_type = {
    .name = "Conv2d",
    .forward = conv_forward,
    .backward = conv_backward,
    .extra_repr = conv_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

/* --- construction -------------------------------------------------------------------------------- */

static cq_status check_options(const char *name, int dims, const cq_conv_options *o) {
  if (!o) return cq_fail(CQ_EINVAL, "%s: options are NULL", name);
  if (o->in_channels < 1 || o->out_channels < 1) {
    return cq_fail(CQ_EINVAL, "%s: in_channels %lld and out_channels %lld must be >= 1", name,
                   (long long)o->in_channels, (long long)o->out_channels);
  }
  if (o->groups < 1) {
    return cq_fail(CQ_EINVAL, "%s: groups must be a positive integer, got %lld", name,
                   (long long)o->groups);
  }
  if (o->in_channels % o->groups != 0) {
    return cq_fail(CQ_EINVAL, "%s: in_channels %lld must be divisible by groups %lld", name,
                   (long long)o->in_channels, (long long)o->groups);
  }
  if (o->out_channels % o->groups != 0) {
    return cq_fail(CQ_EINVAL, "%s: out_channels %lld must be divisible by groups %lld", name,
                   (long long)o->out_channels, (long long)o->groups);
  }
  if (o->kernel_1tuple && dims == 2 && o->kernel_size[1] != 1) {
    return cq_fail(CQ_EINVAL,
                   "%s: a kernel_size given as the 1-tuple (%lld,) needs kernel_size[1] == 1, got "
                   "%lld",
                   name, (long long)o->kernel_size[0], (long long)o->kernel_size[1]);
  }
  static const char *axis[2] = {"[0]", "[1]"};
  for (int d = 0; d < dims; d++) {
    const char *ax = dims == 1 ? "" : axis[d];
    if (o->kernel_size[d] < 1) {
      return cq_fail(CQ_EINVAL, "%s: kernel_size%s must be >= 1, got %lld", name, ax,
                     (long long)o->kernel_size[d]);
    }
    if (o->stride[d] < 1) {
      return cq_fail(CQ_EINVAL, "%s: stride%s must be >= 1, got %lld", name, ax,
                     (long long)o->stride[d]);
    }
    if (o->padding[d] < 0) {
      return cq_fail(CQ_EINVAL, "%s: padding%s must be >= 0, got %lld", name, ax,
                     (long long)o->padding[d]);
    }
    if (o->dilation[d] < 1) {
      return cq_fail(CQ_EINVAL, "%s: dilation%s must be >= 1, got %lld", name, ax,
                     (long long)o->dilation[d]);
    }
  }
  return CQ_OK;
}

static cq_status conv_new(cq_module **out, const cq_conv_options *o, int dims,
                          const cq_module_type *type) {
  *out = NULL;
  cq_status st = check_options(type->name, dims, o);
  if (st != CQ_OK) return st;
  conv_impl *p = cq_calloc_for(1, sizeof *p, type->name);
  if (!p) return CQ_ENOMEM;
  p->dims = dims;
  p->o.in_channels = o->in_channels;
  p->o.out_channels = o->out_channels;
  p->o.groups = o->groups;
  p->o.bias = o->bias != 0;
  p->o.kernel_1tuple = dims == 2 && o->kernel_1tuple != 0;
  int64_t wshape[4] = {o->out_channels, o->in_channels / o->groups, 1, 1};
  int64_t fan_in = o->in_channels / o->groups;
  for (int d = 0; d < dims; d++) {
    p->o.kernel_size[d] = o->kernel_size[d];
    p->o.stride[d] = o->stride[d];
    p->o.padding[d] = o->padding[d];
    p->o.dilation[d] = o->dilation[d];
    wshape[2 + d] = o->kernel_size[d];
    fan_in *= o->kernel_size[d];
  }
  cq_module *m;
  st = cq_module_new(type, p, &m);
  if (st != CQ_OK) return st;
  const double bound = cq_init_fan_in_bound(fan_in);
  cq_tensor *w = NULL, *b = NULL;
  st = cq_tensor_create(&w, CQ_F32, 2 + dims, wshape);
  if (st == CQ_OK) {
    cq_init_uniform(w, cq_init_kaiming_bound(fan_in));
    st = cq_module_add_parameter(m, "weight", w);
  }
  if (st == CQ_OK && p->o.bias) {
    st = cq_tensor_create(&b, CQ_F32, 1, &o->out_channels);
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

cq_status cq_conv1d(cq_module **out, const cq_conv_options *options) {
  return conv_new(out, options, 1, &conv1d_type);
}

cq_status cq_conv2d(cq_module **out, const cq_conv_options *options) {
  return conv_new(out, options, 2, &conv2d_type);
}

cq_status cq_conv_describe(const cq_module *m, cq_conv_options *options, int *dims) {
  if (m->type != &conv1d_type && m->type != &conv2d_type) {
    return cq_fail(CQ_EINVAL, "%s is not a convolution", m->type->name);
  }
  const conv_impl *p = m->impl;
  *options = p->o;
  *dims = p->dims;
  return CQ_OK;
}

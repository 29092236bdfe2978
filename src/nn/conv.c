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
#include "kernels/fgemm/sgemm.h"
#include "nn/im2col.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/module_impl.h"

typedef struct conv_impl {
  int dims; /* 1 (Conv1d) or 2 (Conv2d) */
  int64_t in_channels, out_channels, groups;
  /* As the user gave them: [0] = H and [1] = W for Conv2d; Conv1d uses [0] only. */
  int64_t kernel[2], stride[2], padding[2], dilation[2];
  int bias;
  int kernel_1tuple; /* Conv2d whose kernel_size was given as (k,): printed so */
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

/* --- shapes -------------------------------------------------------------------------------------- */

/* The geometry of one group of one batch item for input x, and the batch size (1 when unbatched).
 * Fails with a message naming the module and the rule when x does not fit. */
static cq_status conv_plan(const cq_module *m, const cq_tensor *x, int64_t *batch,
                           cq_conv_geometry *g) {
  const conv_impl *p = m->impl;
  char s[128];
  if (x->dtype != CQ_F32) {
    return cq_module_fail(m, CQ_EINVAL, "input must be float32, got %s",
                          cq_dtype_get(x->dtype) ? cq_dtype_get(x->dtype)->name : "?");
  }
  const int spatial = p->dims;
  if (x->ndim != spatial + 1 && x->ndim != spatial + 2) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "expected %dD (unbatched) or %dD (batched) input, but got input of "
                          "size %s",
                          spatial + 1, spatial + 2, cq_shape_str(x->ndim, x->shape, s, sizeof s));
  }
  const int batched = x->ndim == spatial + 2;
  const int64_t *dims = x->shape + (batched ? 1 : 0); /* C, [H,] W */
  *batch = batched ? x->shape[0] : 1;
  if (dims[0] != p->in_channels) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "groups=%lld, weight expects %lld input channels, but input of size %s "
                          "has %lld channels",
                          (long long)p->groups, (long long)p->in_channels,
                          cq_shape_str(x->ndim, x->shape, s, sizeof s), (long long)dims[0]);
  }
  for (int d = 1; d <= spatial; d++) {
    if (dims[d] <= 0) {
      return cq_module_fail(m, CQ_ESHAPE, "input of size %s has an empty spatial dimension",
                            cq_shape_str(x->ndim, x->shape, s, sizeof s));
    }
  }
  memset(g, 0, sizeof *g);
  g->channels = p->in_channels / p->groups;
  if (spatial == 2) {
    g->height = dims[1];
    g->width = dims[2];
    g->kernel_h = p->kernel[0];
    g->kernel_w = p->kernel[1];
    g->stride_h = p->stride[0];
    g->stride_w = p->stride[1];
    g->pad_h = p->padding[0];
    g->pad_w = p->padding[1];
    g->dilation_h = p->dilation[0];
    g->dilation_w = p->dilation[1];
  } else {
    g->height = 1;
    g->width = dims[1];
    g->kernel_h = g->stride_h = g->dilation_h = 1;
    g->pad_h = 0;
    g->kernel_w = p->kernel[0];
    g->stride_w = p->stride[0];
    g->pad_w = p->padding[0];
    g->dilation_w = p->dilation[0];
  }
  g->out_h = cq_conv_out_size(g->height, g->kernel_h, g->stride_h, g->pad_h, g->dilation_h);
  g->out_w = cq_conv_out_size(g->width, g->kernel_w, g->stride_w, g->pad_w, g->dilation_w);
  if (g->out_h < 1 || g->out_w < 1) {
    if (spatial == 2) {
      return cq_module_fail(
          m, CQ_ESHAPE,
          "calculated padded input size per channel: (%lld x %lld), dilated kernel size: "
          "(%lld x %lld); the kernel can't be greater than the padded input",
          (long long)(g->height + 2 * g->pad_h), (long long)(g->width + 2 * g->pad_w),
          (long long)(g->dilation_h * (g->kernel_h - 1) + 1),
          (long long)(g->dilation_w * (g->kernel_w - 1) + 1));
    }
    return cq_module_fail(m, CQ_ESHAPE,
                          "calculated padded input size per channel: (%lld), dilated kernel size: "
                          "(%lld); the kernel can't be greater than the padded input",
                          (long long)(g->width + 2 * g->pad_w),
                          (long long)(g->dilation_w * (g->kernel_w - 1) + 1));
  }
  return CQ_OK;
}

/* A column matrix (NULL when the image itself serves): the context's scratch when ctx is given
 * (the forward, which calls no other module: kept from call to call), else a buffer the caller
 * frees (the backward, which needs two). */
static cq_status col_scratch(const cq_module *m, cq_ctx *ctx, const cq_conv_geometry *g,
                             float **col) {
  *col = NULL;
  if (cq_conv_col_is_identity(g)) return CQ_OK;
  const int64_t n = cq_conv_col_size(g);
  const size_t bytes = sizeof(float) * (size_t)(n ? n : 1);
  *col = ctx ? cq_ctx_scratch(ctx, bytes, "convolution columns")
             : cq_malloc_for(bytes, "convolution columns");
  if (!*col) return cq_module_fail(m, CQ_ENOMEM, "out of memory for the im2col buffer");
  return CQ_OK;
}

/* --- forward and backward ------------------------------------------------------------------------ */

static cq_status conv_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                              cq_tensor **out) {
  (void)nin;
  (void)nout;
  const conv_impl *p = m->impl;
  const cq_tensor *x = in[0];
  int64_t batch;
  cq_conv_geometry g;
  cq_status st = conv_plan(m, x, &batch, &g);
  if (st != CQ_OK) return st;

  int64_t shape[4];
  int nd = 0;
  if (x->ndim == p->dims + 2) shape[nd++] = batch;
  shape[nd++] = p->out_channels;
  if (p->dims == 2) shape[nd++] = g.out_h;
  shape[nd++] = g.out_w;
  cq_tensor *y;
  st = cq_ctx_tensor(ctx, CQ_F32, nd, shape, &y);
  if (st != CQ_OK) return st;
  float *col;
  st = col_scratch(m, ctx, &g, &col);
  if (st != CQ_OK) return st;

  const int64_t og = p->out_channels / p->groups;
  const int64_t k = g.channels * g.kernel_h * g.kernel_w;
  const int64_t npos = g.out_h * g.out_w;
  const int64_t in_group = g.channels * g.height * g.width;
  const float *w = m->tensors[0].tensor->data;
  const float *b = p->bias ? m->tensors[1].tensor->data : NULL;
  const float *xd = x->data;
  float *yd = y->data;
  for (int64_t n = 0; n < batch; n++) {
    for (int64_t gi = 0; gi < p->groups; gi++) {
      const float *image = xd + (n * p->groups + gi) * in_group;
      float *yg = yd + (n * p->out_channels + gi * og) * npos;
      if (b) {
        for (int64_t o = 0; o < og; o++) {
          for (int64_t q = 0; q < npos; q++) yg[o * npos + q] = b[gi * og + o];
        }
      }
      const float *cols = image;
      if (col) {
        cq_im2col_f32(&g, image, col);
        cols = col;
      }
      cq_sgemm(0, 0, og, npos, k, 1.0f, w + gi * og * k, k, cols, npos, b ? 1.0f : 0.0f, yg,
               npos);
    }
  }
  out[0] = y;
  return CQ_OK;
}

static cq_status conv_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                               cq_tensor *const *gout, cq_tensor **gin) {
  const conv_impl *p = m->impl;
  const cq_tensor *x = e->in[0];
  int64_t batch;
  cq_conv_geometry g;
  cq_status st = conv_plan(m, x, &batch, &g);
  if (st != CQ_OK) return st;
  cq_tensor *gx;
  st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  float *col, *gcol = NULL;
  st = col_scratch(m, NULL, &g, &col);
  if (st != CQ_OK) return st;
  st = col_scratch(m, NULL, &g, &gcol);
  if (st != CQ_OK) {
    cq_free(col);
    return st;
  }

  const int64_t og = p->out_channels / p->groups;
  const int64_t k = g.channels * g.kernel_h * g.kernel_w;
  const int64_t npos = g.out_h * g.out_w;
  const int64_t in_group = g.channels * g.height * g.width;
  const float *w = m->tensors[0].tensor->data;
  float *gw = m->tensors[0].grad->data;
  const float *xd = x->data;
  const float *gy = gout[0]->data;
  float *gxd = gx->data;
  for (int64_t n = 0; n < batch; n++) {
    for (int64_t gi = 0; gi < p->groups; gi++) {
      const int64_t off = (n * p->groups + gi) * in_group;
      const float *gyg = gy + (n * p->out_channels + gi * og) * npos;
      const float *cols = xd + off;
      if (col) {
        cq_im2col_f32(&g, xd + off, col);
        cols = col;
      }
      /* dW_g += dY_g col^T ; dcol = W_g^T dY_g ; dX += col2im(dcol) */
      cq_sgemm(0, 1, og, k, npos, 1.0f, gyg, npos, cols, npos, 1.0f, gw + gi * og * k, k);
      if (gcol) {
        cq_sgemm(1, 0, k, npos, og, 1.0f, w + gi * og * k, k, gyg, npos, 0.0f, gcol, npos);
        cq_col2im_f32(&g, gcol, gxd + off);
      } else {
        cq_sgemm(1, 0, k, npos, og, 1.0f, w + gi * og * k, k, gyg, npos, 0.0f, gxd + off, npos);
      }
    }
  }
  if (p->bias) {
    float *gb = m->tensors[1].grad->data;
    for (int64_t o = 0; o < p->out_channels; o++) {
      double sum = 0.0;
      for (int64_t n = 0; n < batch; n++) {
        const float *row = gy + (n * p->out_channels + o) * npos;
        for (int64_t q = 0; q < npos; q++) sum += row[q];
      }
      gb[o] += (float)sum;
    }
  }
  cq_free(col);
  cq_free(gcol);
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

/* _ConvNd.extra_repr: non-default padding, dilation, groups and bias only. */
static void conv_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const conv_impl *p = m->impl;
  cq_strbuf_appendf(sb, "%lld, %lld, kernel_size=", (long long)p->in_channels,
                    (long long)p->out_channels);
  append_tuple(sb, p->kernel_1tuple ? 1 : p->dims, p->kernel);
  cq_strbuf_append(sb, ", stride=");
  append_tuple(sb, p->dims, p->stride);
  if (!all_equal(p->dims, p->padding, 0)) {
    cq_strbuf_append(sb, ", padding=");
    append_tuple(sb, p->dims, p->padding);
  }
  if (!all_equal(p->dims, p->dilation, 1)) {
    cq_strbuf_append(sb, ", dilation=");
    append_tuple(sb, p->dims, p->dilation);
  }
  if (p->groups != 1) cq_strbuf_appendf(sb, ", groups=%lld", (long long)p->groups);
  if (!p->bias) cq_strbuf_append(sb, ", bias=False");
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
  p->in_channels = o->in_channels;
  p->out_channels = o->out_channels;
  p->groups = o->groups;
  p->bias = o->bias != 0;
  p->kernel_1tuple = dims == 2 && o->kernel_1tuple != 0;
  int64_t wshape[4] = {o->out_channels, o->in_channels / o->groups, 1, 1};
  int64_t fan_in = o->in_channels / o->groups;
  for (int d = 0; d < dims; d++) {
    p->kernel[d] = o->kernel_size[d];
    p->stride[d] = o->stride[d];
    p->padding[d] = o->padding[d];
    p->dilation[d] = o->dilation[d];
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
  if (st == CQ_OK && p->bias) {
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
  memset(options, 0, sizeof *options);
  options->in_channels = p->in_channels;
  options->out_channels = p->out_channels;
  options->groups = p->groups;
  options->bias = p->bias;
  options->kernel_1tuple = p->kernel_1tuple;
  for (int i = 0; i < 2; i++) {
    options->kernel_size[i] = p->kernel[i];
    options->stride[i] = p->stride[i];
    options->padding[i] = p->padding[i];
    options->dilation[i] = p->dilation[i];
  }
  *dims = p->dims;
  return CQ_OK;
}

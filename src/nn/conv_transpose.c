/* nn.ConvTranspose2d: the adjoint of Conv2d's cross-correlation, with stride, zero padding,
 * output_padding, dilation, groups and an optional bias; forward and backward. Float only.
 *
 * Layout: [N, Cin, H, W] (or unbatched [Cin, H, W]) in, [N, Cout, Ho, Wo] out with
 *   Ho = (H - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1.
 * Weight [Cin, Cout / groups, kh, kw] and bias [Cout] in PyTorch's order, initialised
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = Cout / groups * kh * kw (PyTorch computes the
 * fan from dimension 1 of the weight, which for a transposed conv is the output channels).
 *
 * Computation per batch item and group, as PyTorch's slow_conv_transpose2d: columns =
 * W_g^T x_g (the float GEMM, [Cout/g * kh * kw, H * W]), then col2im scatters the columns into the
 * output image (the geometry of a Conv2d from the output back to the input: its im2col is this
 * op's backward), then the bias. Backward: im2col of the output gradient, then dX = W_g cols and
 * dW += x_g cols^T. */
#include <string.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "kernels/fgemm/sgemm.h"
#include "nn/im2col.h"
#include "nn/init.h"
#include "nn/layer_math.h"
#include "nn/layers.h"
#include "nn/module_impl.h"

typedef struct convt_impl {
  cq_conv_transpose_options o;
} convt_impl;

cq_conv_transpose_options cq_conv_transpose_defaults(int64_t in_channels, int64_t out_channels,
                                                     int64_t kh, int64_t kw) {
  cq_conv_transpose_options o;
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

/* The geometry (the conv from the output image to the input: image = output plane of one group,
 * columns = input positions) and the batch size; fails naming the module when x does not fit. */
static cq_status convt_plan(const cq_module *m, const cq_tensor *x, int64_t *batch,
                            cq_conv_geometry *g) {
  const cq_conv_transpose_options *o = &((const convt_impl *)m->impl)->o;
  char s[128];
  if (x->qparams) {
    return cq_module_fail(m, CQ_EUNSUPPORTED, "quantized input: ConvTranspose2d runs on float32 "
                          "tensors only (dequantize first)");
  }
  if (x->dtype != CQ_F32) {
    const cq_dtype_info *info = cq_dtype_get(x->dtype);
    return cq_module_fail(m, CQ_EINVAL, "input must be float32, got %s",
                          info ? info->name : "an invalid dtype");
  }
  if (x->ndim != 3 && x->ndim != 4) {
    return cq_module_fail(m, CQ_ESHAPE, "expected 3D (unbatched) or 4D (batched) input, but got "
                          "input of size %s", cq_shape_str(x->ndim, x->shape, s, sizeof s));
  }
  const int64_t *dims = x->shape + (x->ndim == 4 ? 1 : 0);
  *batch = x->ndim == 4 ? x->shape[0] : 1;
  if (dims[0] != o->in_channels) {
    return cq_module_fail(m, CQ_ESHAPE, "expected input of size %s to have %lld channels, but got "
                          "%lld channels", cq_shape_str(x->ndim, x->shape, s, sizeof s),
                          (long long)o->in_channels, (long long)dims[0]);
  }
  memset(g, 0, sizeof *g);
  g->channels = o->out_channels / o->groups;
  g->kernel_h = o->kernel_size[0];
  g->kernel_w = o->kernel_size[1];
  g->stride_h = o->stride[0];
  g->stride_w = o->stride[1];
  g->pad_h = o->padding[0];
  g->pad_w = o->padding[1];
  g->dilation_h = o->dilation[0];
  g->dilation_w = o->dilation[1];
  g->out_h = dims[1];
  g->out_w = dims[2];
  g->height = (dims[1] - 1) * o->stride[0] - 2 * o->padding[0] +
              o->dilation[0] * (o->kernel_size[0] - 1) + o->output_padding[0] + 1;
  g->width = (dims[2] - 1) * o->stride[1] - 2 * o->padding[1] +
             o->dilation[1] * (o->kernel_size[1] - 1) + o->output_padding[1] + 1;
  if (dims[1] < 1 || dims[2] < 1 || g->height < 1 || g->width < 1) {
    return cq_module_fail(m, CQ_ESHAPE, "input of size %s gives an output of size %lld x %lld; "
                          "it must be at least 1 x 1",
                          cq_shape_str(x->ndim, x->shape, s, sizeof s), (long long)g->height,
                          (long long)g->width);
  }
  return CQ_OK;
}

/* The columns are the output image itself (1x1 kernel, stride 1, no padding, same size). */
static int cols_are_image(const cq_conv_geometry *g) {
  return cq_conv_col_is_identity(g) && g->height == g->out_h && g->width == g->out_w;
}

/* --- forward and backward ------------------------------------------------------------------------ */

static cq_status convt_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                               cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_conv_transpose_options *o = &((const convt_impl *)m->impl)->o;
  const cq_tensor *x = in[0];
  int64_t batch;
  cq_conv_geometry g;
  cq_status st = convt_plan(m, x, &batch, &g);
  if (st != CQ_OK) return st;
  int64_t shape[4];
  int nd = 0;
  if (x->ndim == 4) shape[nd++] = batch;
  shape[nd++] = o->out_channels;
  shape[nd++] = g.height;
  shape[nd++] = g.width;
  cq_tensor *y;
  st = cq_ctx_tensor(ctx, CQ_F32, nd, shape, &y); /* zero-filled: col2im accumulates */
  if (st != CQ_OK) return st;
  const int direct = cols_are_image(&g);
  float *col = NULL;
  if (!direct) {
    col = cq_malloc_for(sizeof(float) * (size_t)cq_conv_col_size(&g), "transposed-conv columns");
    if (!col) return cq_module_fail(m, CQ_ENOMEM, "out of memory for the column buffer");
  }
  const int64_t cin_g = o->in_channels / o->groups, cout_g = g.channels;
  const int64_t k = cout_g * g.kernel_h * g.kernel_w;
  const int64_t npos = g.out_h * g.out_w, plane = g.height * g.width;
  const float *w = m->tensors[0].tensor->data;
  const float *b = o->bias ? m->tensors[1].tensor->data : NULL;
  const float *xd = x->data;
  float *yd = y->data;
  for (int64_t n = 0; n < batch; n++) {
    for (int64_t gi = 0; gi < o->groups; gi++) {
      const float *xg = xd + (n * o->in_channels + gi * cin_g) * npos;
      const float *wg = w + gi * cin_g * k;
      float *yg = yd + (n * o->out_channels + gi * cout_g) * plane;
      /* columns = W_g^T x_g */
      cq_sgemm(1, 0, k, npos, cin_g, 1.0f, wg, k, xg, npos, 0.0f, direct ? yg : col, npos);
      if (!direct) cq_col2im_f32(&g, col, yg);
      if (b) {
        for (int64_t c = 0; c < cout_g; c++) {
          const float bias = b[gi * cout_g + c];
          float *row = yg + c * plane;
          for (int64_t q = 0; q < plane; q++) row[q] += bias;
        }
      }
    }
  }
  cq_free(col);
  out[0] = y;
  return CQ_OK;
}

static cq_status convt_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                cq_tensor *const *gout, cq_tensor **gin) {
  const cq_conv_transpose_options *o = &((const convt_impl *)m->impl)->o;
  const cq_tensor *x = e->in[0];
  int64_t batch;
  cq_conv_geometry g;
  cq_status st = convt_plan(m, x, &batch, &g);
  if (st != CQ_OK) return st;
  cq_tensor *gx;
  st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  const int direct = cols_are_image(&g);
  float *col = NULL;
  if (!direct) {
    col = cq_malloc_for(sizeof(float) * (size_t)cq_conv_col_size(&g), "transposed-conv columns");
    if (!col) return cq_module_fail(m, CQ_ENOMEM, "out of memory for the column buffer");
  }
  const int64_t cin_g = o->in_channels / o->groups, cout_g = g.channels;
  const int64_t k = cout_g * g.kernel_h * g.kernel_w;
  const int64_t npos = g.out_h * g.out_w, plane = g.height * g.width;
  const float *w = m->tensors[0].tensor->data;
  float *gw = m->tensors[0].grad->data;
  const float *xd = x->data, *gy = gout[0]->data;
  float *gxd = gx->data;
  for (int64_t n = 0; n < batch; n++) {
    for (int64_t gi = 0; gi < o->groups; gi++) {
      const int64_t xoff = (n * o->in_channels + gi * cin_g) * npos;
      const float *gyg = gy + (n * o->out_channels + gi * cout_g) * plane;
      const float *cols = gyg;
      if (!direct) {
        cq_im2col_f32(&g, gyg, col);
        cols = col;
      }
      /* dX_g = W_g cols ; dW_g += x_g cols^T */
      cq_sgemm(0, 0, cin_g, npos, k, 1.0f, w + gi * cin_g * k, k, cols, npos, 0.0f, gxd + xoff,
               npos);
      cq_sgemm(0, 1, cin_g, k, npos, 1.0f, xd + xoff, npos, cols, npos, 1.0f, gw + gi * cin_g * k,
               k);
    }
  }
  if (o->bias) cq_conv_bias_grad(gy, batch, o->out_channels, plane, m->tensors[1].grad->data);
  cq_free(col);
  gin[0] = gx;
  return CQ_OK;
}

/* --- printing ------------------------------------------------------------------------------------ */

static void append_pair(cq_strbuf *sb, const char *key, const int64_t *v) {
  cq_strbuf_appendf(sb, ", %s=(%lld, %lld)", key, (long long)v[0], (long long)v[1]);
}

/* _ConvNd.extra_repr: padding, dilation, output_padding, groups and bias only when not default. */
static void convt_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const cq_conv_transpose_options *o = &((const convt_impl *)m->impl)->o;
  cq_strbuf_appendf(sb, "%lld, %lld, kernel_size=(%lld, %lld)", (long long)o->in_channels,
                    (long long)o->out_channels, (long long)o->kernel_size[0],
                    (long long)o->kernel_size[1]);
  append_pair(sb, "stride", o->stride);
  if (o->padding[0] != 0 || o->padding[1] != 0) append_pair(sb, "padding", o->padding);
  if (o->dilation[0] != 1 || o->dilation[1] != 1) append_pair(sb, "dilation", o->dilation);
  if (o->output_padding[0] != 0 || o->output_padding[1] != 0) {
    append_pair(sb, "output_padding", o->output_padding);
  }
  if (o->groups != 1) cq_strbuf_appendf(sb, ", groups=%lld", (long long)o->groups);
  if (!o->bias) cq_strbuf_append(sb, ", bias=False");
}

static const cq_module_type convt2d_type = {
    .name = "ConvTranspose2d",
    .forward = convt_forward,
    .backward = convt_backward,
    .extra_repr = convt_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

/* --- construction -------------------------------------------------------------------------------- */

static cq_status check_options(const cq_conv_transpose_options *o) {
  static const char *const who = "ConvTranspose2d";
  if (o->in_channels < 1 || o->out_channels < 1) {
    return cq_fail(CQ_EINVAL, "%s: in_channels %lld and out_channels %lld must be >= 1", who,
                   (long long)o->in_channels, (long long)o->out_channels);
  }
  if (o->groups < 1) {
    return cq_fail(CQ_EINVAL, "%s: groups must be a positive integer, got %lld", who,
                   (long long)o->groups);
  }
  if (o->in_channels % o->groups != 0 || o->out_channels % o->groups != 0) {
    return cq_fail(CQ_EINVAL, "%s: in_channels %lld and out_channels %lld must be divisible by "
                   "groups %lld", who, (long long)o->in_channels, (long long)o->out_channels,
                   (long long)o->groups);
  }
  for (int d = 0; d < 2; d++) {
    const char *ax = d ? "[1]" : "[0]";
    if (o->kernel_size[d] < 1 || o->stride[d] < 1 || o->dilation[d] < 1) {
      return cq_fail(CQ_EINVAL, "%s: kernel_size%s %lld, stride%s %lld and dilation%s %lld must "
                     "be >= 1", who, ax, (long long)o->kernel_size[d], ax, (long long)o->stride[d],
                     ax, (long long)o->dilation[d]);
    }
    if (o->padding[d] < 0 || o->output_padding[d] < 0) {
      return cq_fail(CQ_EINVAL, "%s: padding%s %lld and output_padding%s %lld must be >= 0", who,
                     ax, (long long)o->padding[d], ax, (long long)o->output_padding[d]);
    }
    if (o->output_padding[d] >= o->stride[d] && o->output_padding[d] >= o->dilation[d]) {
      return cq_fail(CQ_EINVAL, "%s: output padding must be smaller than either stride or "
                     "dilation, but got output_padding%s %lld, stride%s %lld, dilation%s %lld",
                     who, ax, (long long)o->output_padding[d], ax, (long long)o->stride[d], ax,
                     (long long)o->dilation[d]);
    }
  }
  return CQ_OK;
}

cq_status cq_conv_transpose2d(cq_module **out, const cq_conv_transpose_options *options) {
  if (!out) return cq_fail(CQ_EINVAL, "ConvTranspose2d: the output pointer is NULL");
  *out = NULL;
  if (!options) return cq_fail(CQ_EINVAL, "ConvTranspose2d: options are NULL");
  cq_status st = check_options(options);
  if (st != CQ_OK) return st;
  convt_impl *p = cq_calloc_for(1, sizeof *p, "ConvTranspose2d");
  if (!p) return CQ_ENOMEM;
  p->o = *options;
  p->o.bias = options->bias != 0;
  const cq_conv_transpose_options *o = &p->o;
  cq_module *m;
  st = cq_module_new(&convt2d_type, p, &m);
  if (st != CQ_OK) return st;
  const int64_t wshape[4] = {o->in_channels, o->out_channels / o->groups, o->kernel_size[0],
                             o->kernel_size[1]};
  const int64_t fan_in = wshape[1] * wshape[2] * wshape[3];
  cq_tensor *w = NULL, *b = NULL;
  st = cq_tensor_create(&w, CQ_F32, 4, wshape);
  if (st == CQ_OK) {
    cq_init_uniform(w, cq_init_kaiming_bound(fan_in));
    st = cq_module_add_parameter(m, "weight", w);
  }
  if (st == CQ_OK && o->bias) {
    st = cq_tensor_create(&b, CQ_F32, 1, &o->out_channels);
    if (st == CQ_OK) {
      cq_init_uniform(b, cq_init_fan_in_bound(fan_in));
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

cq_status cq_conv_transpose_describe(const cq_module *m, cq_conv_transpose_options *options) {
  if (!m || m->type != &convt2d_type) {
    return cq_fail(CQ_EINVAL, "%s is not a ConvTranspose2d", m ? m->type->name : "(null)");
  }
  *options = ((const convt_impl *)m->impl)->o;
  return CQ_OK;
}

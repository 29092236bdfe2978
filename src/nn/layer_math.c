/* Float convolution and linear arithmetic with an explicit weight (layer_math.h). */
#include "nn/layer_math.h"

#include <string.h>

#include "core/alloc.h"
#include "kernels/fgemm/sgemm.h"
#include "nn/im2col.h"

/* The geometry of one group of one batch item for input x, and the batch size (1 when unbatched).
 * Fails with a message naming the module and the rule when x does not fit. */
static cq_status conv_plan(const cq_module *m, const cq_conv_options *p, int dims,
                           const cq_tensor *x, int64_t *batch, cq_conv_geometry *g) {
  char s[128];
  if (x->dtype != CQ_F32) {
    return cq_module_fail(m, CQ_EINVAL, "input must be float32, got %s",
                          cq_dtype_get(x->dtype) ? cq_dtype_get(x->dtype)->name : "?");
  }
  const int spatial = dims;
  if (x->ndim != spatial + 1 && x->ndim != spatial + 2) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "expected %dD (unbatched) or %dD (batched) input, but got input of "
                          "size %s",
                          spatial + 1, spatial + 2, cq_shape_str(x->ndim, x->shape, s, sizeof s));
  }
  const int batched = x->ndim == spatial + 2;
  const int64_t *size = x->shape + (batched ? 1 : 0); /* C, [H,] W */
  *batch = batched ? x->shape[0] : 1;
  if (size[0] != p->in_channels) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "groups=%lld, weight expects %lld input channels, but input of size %s "
                          "has %lld channels",
                          (long long)p->groups, (long long)p->in_channels,
                          cq_shape_str(x->ndim, x->shape, s, sizeof s), (long long)size[0]);
  }
  for (int d = 1; d <= spatial; d++) {
    if (size[d] <= 0) {
      return cq_module_fail(m, CQ_ESHAPE, "input of size %s has an empty spatial dimension",
                            cq_shape_str(x->ndim, x->shape, s, sizeof s));
    }
  }
  memset(g, 0, sizeof *g);
  g->channels = p->in_channels / p->groups;
  if (spatial == 2) {
    g->height = size[1];
    g->width = size[2];
    g->kernel_h = p->kernel_size[0];
    g->kernel_w = p->kernel_size[1];
    g->stride_h = p->stride[0];
    g->stride_w = p->stride[1];
    g->pad_h = p->padding[0];
    g->pad_w = p->padding[1];
    g->dilation_h = p->dilation[0];
    g->dilation_w = p->dilation[1];
  } else {
    g->height = 1;
    g->width = size[1];
    g->kernel_h = g->stride_h = g->dilation_h = 1;
    g->pad_h = 0;
    g->kernel_w = p->kernel_size[0];
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
 * (the forward: kept from call to call, and not held past the return), else a buffer the caller
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

cq_status cq_conv_f32_forward(const cq_module *m, const cq_conv_options *o, int dims,
                              const cq_tensor *x, const float *w, const float *b, cq_ctx *ctx,
                              cq_tensor **out) {
  int64_t batch;
  cq_conv_geometry g;
  cq_status st = conv_plan(m, o, dims, x, &batch, &g);
  if (st != CQ_OK) return st;
  int64_t shape[4];
  int nd = 0;
  if (x->ndim == dims + 2) shape[nd++] = batch;
  shape[nd++] = o->out_channels;
  if (dims == 2) shape[nd++] = g.out_h;
  shape[nd++] = g.out_w;
  cq_tensor *y;
  st = cq_ctx_tensor(ctx, CQ_F32, nd, shape, &y);
  if (st != CQ_OK) return st;
  float *col;
  st = col_scratch(m, ctx, &g, &col);
  if (st != CQ_OK) return st;
  const int64_t og = o->out_channels / o->groups;
  const int64_t k = g.channels * g.kernel_h * g.kernel_w;
  const int64_t npos = g.out_h * g.out_w;
  const int64_t in_group = g.channels * g.height * g.width;
  const float *xd = x->data;
  float *yd = y->data;
  for (int64_t n = 0; n < batch; n++) {
    for (int64_t gi = 0; gi < o->groups; gi++) {
      const float *image = xd + (n * o->groups + gi) * in_group;
      float *yg = yd + (n * o->out_channels + gi * og) * npos;
      if (b) {
        for (int64_t oc = 0; oc < og; oc++) {
          for (int64_t q = 0; q < npos; q++) yg[oc * npos + q] = b[gi * og + oc];
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
  *out = y;
  return CQ_OK;
}

cq_status cq_conv_f32_backward(const cq_module *m, const cq_conv_options *o, int dims,
                               const cq_tensor *x, const float *w, const float *gy, float *gx,
                               float *gw, float *gb) {
  int64_t batch;
  cq_conv_geometry g;
  cq_status st = conv_plan(m, o, dims, x, &batch, &g);
  if (st != CQ_OK) return st;
  float *col, *gcol = NULL;
  st = col_scratch(m, NULL, &g, &col);
  if (st != CQ_OK) return st;
  st = col_scratch(m, NULL, &g, &gcol);
  if (st != CQ_OK) {
    cq_free(col);
    return st;
  }
  memset(gx, 0, sizeof(float) * (size_t)cq_tensor_numel(x));
  const int64_t og = o->out_channels / o->groups;
  const int64_t k = g.channels * g.kernel_h * g.kernel_w;
  const int64_t npos = g.out_h * g.out_w;
  const int64_t in_group = g.channels * g.height * g.width;
  const float *xd = x->data;
  for (int64_t n = 0; n < batch; n++) {
    for (int64_t gi = 0; gi < o->groups; gi++) {
      const int64_t off = (n * o->groups + gi) * in_group;
      const float *gyg = gy + (n * o->out_channels + gi * og) * npos;
      const float *cols = xd + off;
      if (col) {
        cq_im2col_f32(&g, xd + off, col);
        cols = col;
      }
      cq_sgemm(0, 1, og, k, npos, 1.0f, gyg, npos, cols, npos, 1.0f, gw + gi * og * k, k);
      if (gcol) {
        cq_sgemm(1, 0, k, npos, og, 1.0f, w + gi * og * k, k, gyg, npos, 0.0f, gcol, npos);
        cq_col2im_f32(&g, gcol, gx + off);
      } else {
        cq_sgemm(1, 0, k, npos, og, 1.0f, w + gi * og * k, k, gyg, npos, 0.0f, gx + off, npos);
      }
    }
  }
  if (gb) cq_conv_bias_grad(gy, batch, o->out_channels, npos, gb);
  cq_free(col);
  cq_free(gcol);
  return CQ_OK;
}

void cq_conv_bias_grad(const float *gy, int64_t batch, int64_t channels, int64_t plane,
                       float *gb) {
  for (int64_t c = 0; c < channels; c++) {
    double sum = 0.0;
    for (int64_t n = 0; n < batch; n++) {
      const float *row = gy + (n * channels + c) * plane;
      for (int64_t q = 0; q < plane; q++) sum += row[q];
    }
    gb[c] += (float)sum;
  }
}

cq_status cq_linear_f32_forward(const cq_module *m, int64_t in_features, int64_t out_features,
                                const cq_tensor *x, const float *w, const float *b, cq_ctx *ctx,
                                cq_tensor **out) {
  if (x->dtype != CQ_F32) return cq_module_fail(m, CQ_EINVAL, "input must be float32");
  if (x->ndim < 1 || x->shape[x->ndim - 1] != in_features) {
    char s[128];
    return cq_module_fail(m, CQ_ESHAPE, "input of shape %s does not end in in_features=%lld",
                          cq_shape_str(x->ndim, x->shape, s, sizeof s), (long long)in_features);
  }
  int64_t shape[CQ_MAX_DIMS];
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
  shape[x->ndim - 1] = out_features;
  cq_tensor *y;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, shape, &y);
  if (st != CQ_OK) return st;
  const int64_t rows = cq_tensor_numel(x) / (in_features ? in_features : 1);
  float *yd = y->data;
  if (b) {
    for (int64_t r = 0; r < rows; r++) {
      memcpy(yd + r * out_features, b, sizeof(float) * (size_t)out_features);
    }
  }
  cq_sgemm(0, 1, rows, out_features, in_features, 1.0f, x->data, in_features, w, in_features,
           b ? 1.0f : 0.0f, yd, out_features);
  *out = y;
  return CQ_OK;
}

void cq_linear_f32_backward(int64_t in_features, int64_t out_features, const cq_tensor *x,
                            const float *w, const float *gy, float *gx, float *gw, float *gb) {
  const int64_t rows = cq_tensor_numel(x) / (in_features ? in_features : 1);
  cq_sgemm(0, 0, rows, in_features, out_features, 1.0f, gy, out_features, w, in_features, 0.0f, gx,
           in_features);
  cq_sgemm(1, 0, out_features, in_features, rows, 1.0f, gy, out_features, x->data, in_features,
           1.0f, gw, in_features);
  if (gb) {
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t j = 0; j < out_features; j++) gb[j] += gy[r * out_features + j];
    }
  }
}

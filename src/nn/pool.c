/* nn.MaxPool2d, nn.AvgPool2d and nn.AdaptiveAvgPool2d over [N, C, H, W] (or unbatched [C, H, W])
 * float32 input, forward and backward, with PyTorch 1.13's CPU semantics:
 *
 * - Output size (MaxPool2d, AvgPool2d): floor or ceil of
 *   (H + 2 pad - dilation (kernel - 1) - 1) / stride, plus 1; in ceil mode the last window must start
 *   inside the input or the left padding, else it is dropped. Padding may be at most half the kernel.
 * - MaxPool2d: padding acts as -inf; the first maximum of a window wins (row-major scan), a NaN wins
 *   over everything (the last NaN of a window); backward sends each output gradient to that argmax.
 * - AvgPool2d: a window is clipped to the padded input [-pad, H + pad); its divisor is
 *   divisor_override when set, else the clipped window's size (count_include_pad) or the number of
 *   real input elements in it; sums are float32 in row-major order.
 * - AdaptiveAvgPool2d: output (i, j) averages rows [floor(i H / oh), ceil((i + 1) H / oh)) and
 *   columns [floor(j W / ow), ceil((j + 1) W / ow)) as sum / rows / cols.
 *
 * Printing: PyTorch prints kernel_size, stride, padding and dilation of the pools as the user wrote
 * them (int or tuple). cq_pool_options holds pairs only, so cquant prints an int when both
 * components are equal and a tuple otherwise (MaxPool2d((2, 2)) prints as kernel_size=2 here).
 * AdaptiveAvgPool2d always prints its output size as a tuple, output_size=(oh, ow). */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "cquant/qconfig.h"
#include "nn/layers.h"
#include "nn/module_impl.h"
#include "nn/quantized/qops.h"

typedef struct pool_impl {
  int64_t kernel[2], stride[2], padding[2], dilation[2]; /* [0] = H, [1] = W; stride resolved */
  int ceil_mode, count_include_pad;
  int64_t divisor_override; /* 0 = none */
} pool_impl;

typedef struct adaptive_impl {
  int64_t out[2];
} adaptive_impl;

/* One pooling call: planes (N*C) of in_h x in_w mapped to out_h x out_w. */
typedef struct pool_plan {
  int64_t planes, in_h, in_w, out_h, out_w;
} pool_plan;

cq_pool_options cq_pool_defaults(int64_t kh, int64_t kw) {
  cq_pool_options o;
  memset(&o, 0, sizeof o);
  o.kernel_size[0] = kh;
  o.kernel_size[1] = kw;
  o.dilation[0] = o.dilation[1] = 1;
  o.count_include_pad = 1;
  return o;
}

/* --- shapes -------------------------------------------------------------------------------------- */

/* Checks dtype and rank (3-D unbatched or 4-D, non-empty except the batch) and fills the plane
 * count and input size. */
static cq_status pool_input(const cq_module *m, const cq_tensor *x, pool_plan *pl) {
  char s[128];
  if (x->dtype != CQ_F32) {
    return cq_module_fail(m, CQ_EINVAL, "input must be float32, got %s",
                          cq_dtype_get(x->dtype) ? cq_dtype_get(x->dtype)->name : "?");
  }
  if (x->ndim != 3 && x->ndim != 4) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "expected a 3D (unbatched) or 4D (batched) input, but got input of "
                          "size %s",
                          cq_shape_str(x->ndim, x->shape, s, sizeof s));
  }
  for (int d = x->ndim - 3; d < x->ndim; d++) {
    if (x->shape[d] <= 0) {
      return cq_module_fail(m, CQ_ESHAPE,
                            "expected input with non-zero sizes for the non-batch dimensions, "
                            "but got input of size %s",
                            cq_shape_str(x->ndim, x->shape, s, sizeof s));
    }
  }
  pl->planes = x->shape[x->ndim - 3] * (x->ndim == 4 ? x->shape[0] : 1);
  pl->in_h = x->shape[x->ndim - 2];
  pl->in_w = x->shape[x->ndim - 1];
  return CQ_OK;
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}

/* pooling_output_shape of ATen (Pool.h). */
static int64_t pool_out_size(int64_t in, int64_t kernel, int64_t pad, int64_t stride,
                             int64_t dilation, int ceil_mode) {
  int64_t out =
      floor_div(in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) +
      1;
  if (ceil_mode && (out - 1) * stride >= in + pad) out--;
  return out;
}

static cq_status pool_plan_for(const cq_module *m, const cq_tensor *x, pool_plan *pl) {
  const pool_impl *p = m->impl;
  cq_status st = pool_input(m, x, pl);
  if (st != CQ_OK) return st;
  pl->out_h = pool_out_size(pl->in_h, p->kernel[0], p->padding[0], p->stride[0], p->dilation[0],
                            p->ceil_mode);
  pl->out_w = pool_out_size(pl->in_w, p->kernel[1], p->padding[1], p->stride[1], p->dilation[1],
                            p->ceil_mode);
  if (pl->out_h < 1 || pl->out_w < 1) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "given input size (%lldx%lld), the calculated output size is "
                          "(%lldx%lld): too small",
                          (long long)pl->in_h, (long long)pl->in_w, (long long)pl->out_h,
                          (long long)pl->out_w);
  }
  return CQ_OK;
}

/* The output tensor: the input's shape with the last two dimensions replaced. */
static cq_status pool_output(cq_ctx *ctx, const cq_tensor *x, int64_t out_h, int64_t out_w,
                             cq_tensor **y) {
  int64_t shape[4];
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
  shape[x->ndim - 2] = out_h;
  shape[x->ndim - 1] = out_w;
  return cq_ctx_tensor(ctx, CQ_F32, x->ndim, shape, y);
}

/* The geometry of a pool for the quantized kernels (nn/quantized/qops.h). */
static cq_qpool2d qpool_of(const pool_impl *p) {
  cq_qpool2d g;
  memcpy(g.kernel, p->kernel, sizeof g.kernel);
  memcpy(g.stride, p->stride, sizeof g.stride);
  memcpy(g.padding, p->padding, sizeof g.padding);
  memcpy(g.dilation, p->dilation, sizeof g.dilation);
  g.ceil_mode = p->ceil_mode;
  g.count_include_pad = p->count_include_pad;
  g.divisor_override = p->divisor_override;
  return g;
}

/* --- MaxPool2d ----------------------------------------------------------------------------------- */

/* Window rows/cols of output o: first in-bounds position and end (exclusive), stepping by dilation
 * (ATen's cpu_max_pool). */
static void max_window(int64_t o, int64_t stride, int64_t pad, int64_t kernel, int64_t dilation,
                       int64_t in, int64_t *first, int64_t *end) {
  int64_t i0 = o * stride - pad;
  int64_t i1 = i0 + (kernel - 1) * dilation + 1;
  if (i1 > in) i1 = in;
  while (i0 < 0) i0 += dilation;
  *first = i0;
  *end = i1;
}

static cq_status maxpool_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                 int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const pool_impl *p = m->impl;
  const cq_tensor *x = in[0];
  if (x->qparams) { /* quantized: max of the integers, the engine's kernel at call time */
    const cq_qpool2d g = qpool_of(p);
    return cq_qop_maxpool2d(m, ctx, x, &g, cq_quantized_engine(), &out[0]);
  }
  pool_plan pl;
  cq_status st = pool_plan_for(m, x, &pl);
  if (st != CQ_OK) return st;
  cq_tensor *y;
  st = pool_output(ctx, x, pl.out_h, pl.out_w, &y);
  if (st != CQ_OK) return st;
  const int64_t nout_plane = pl.out_h * pl.out_w;
  int64_t *argmax = NULL;
  if (cq_ctx_grad_enabled(ctx)) {
    const int64_t total = pl.planes * nout_plane;
    argmax = cq_malloc_for(sizeof(int64_t) * (size_t)(total ? total : 1), "max-pool indices");
    if (!argmax) return cq_module_fail(m, CQ_ENOMEM, "out of memory for the argmax indices");
  }
  const float *xd = x->data;
  float *yd = y->data;
  for (int64_t c = 0; c < pl.planes; c++) {
    const float *src = xd + c * pl.in_h * pl.in_w;
    for (int64_t oh = 0; oh < pl.out_h; oh++) {
      int64_t h0, h1;
      max_window(oh, p->stride[0], p->padding[0], p->kernel[0], p->dilation[0], pl.in_h, &h0, &h1);
      for (int64_t ow = 0; ow < pl.out_w; ow++) {
        int64_t w0, w1;
        max_window(ow, p->stride[1], p->padding[1], p->kernel[1], p->dilation[1], pl.in_w, &w0,
                   &w1);
        int64_t best = (h0 < h1 && w0 < w1) ? h0 * pl.in_w + w0 : -1;
        float maxval = -INFINITY;
        for (int64_t ih = h0; ih < h1; ih += p->dilation[0]) {
          for (int64_t iw = w0; iw < w1; iw += p->dilation[1]) {
            const int64_t idx = ih * pl.in_w + iw;
            const float v = src[idx];
            if (v > maxval || isnan(v)) {
              maxval = v;
              best = idx;
            }
          }
        }
        const int64_t o = c * nout_plane + oh * pl.out_w + ow;
        yd[o] = maxval;
        if (argmax) argmax[o] = best;
      }
    }
  }
  if (argmax) cq_ctx_save(ctx, argmax, NULL);
  out[0] = y;
  return CQ_OK;
}

static cq_status maxpool_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                  cq_tensor *const *gout, cq_tensor **gin) {
  const cq_tensor *x = e->in[0], *y = e->out[0];
  const int64_t *argmax = e->saved;
  if (!argmax) return cq_module_fail(m, CQ_ESTATE, "backward without the forward's argmax indices");
  cq_tensor *gx;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  const int64_t in_plane = x->shape[x->ndim - 2] * x->shape[x->ndim - 1];
  const int64_t out_plane = y->shape[y->ndim - 2] * y->shape[y->ndim - 1];
  const int64_t planes = out_plane ? cq_tensor_numel(y) / out_plane : 0;
  const float *g = gout[0]->data;
  float *d = gx->data;
  for (int64_t c = 0; c < planes; c++) {
    for (int64_t o = 0; o < out_plane; o++) {
      const int64_t idx = argmax[c * out_plane + o];
      if (idx >= 0) d[c * in_plane + idx] += g[c * out_plane + o];
    }
  }
  gin[0] = gx;
  return CQ_OK;
}

/* --- AvgPool2d ----------------------------------------------------------------------------------- */

/* ATen's cpu_avg_pool window: clipped to the input, with the divisor it implies. Returns 0 for an
 * empty window. */
static int avg_window(const pool_impl *p, const pool_plan *pl, int64_t oh, int64_t ow, int64_t *h0,
                      int64_t *h1, int64_t *w0, int64_t *w1, float *divisor) {
  int64_t ih0 = oh * p->stride[0] - p->padding[0];
  int64_t iw0 = ow * p->stride[1] - p->padding[1];
  int64_t ih1 = ih0 + p->kernel[0];
  int64_t iw1 = iw0 + p->kernel[1];
  if (ih1 > pl->in_h + p->padding[0]) ih1 = pl->in_h + p->padding[0];
  if (iw1 > pl->in_w + p->padding[1]) iw1 = pl->in_w + p->padding[1];
  const int64_t pool_size = (ih1 - ih0) * (iw1 - iw0);
  if (ih0 < 0) ih0 = 0;
  if (iw0 < 0) iw0 = 0;
  if (ih1 > pl->in_h) ih1 = pl->in_h;
  if (iw1 > pl->in_w) iw1 = pl->in_w;
  *h0 = ih0;
  *h1 = ih1;
  *w0 = iw0;
  *w1 = iw1;
  if (ih0 >= ih1 || iw0 >= iw1) return 0;
  int64_t div;
  if (p->divisor_override) {
    div = p->divisor_override;
  } else if (p->count_include_pad) {
    div = pool_size;
  } else {
    div = (ih1 - ih0) * (iw1 - iw0);
  }
  *divisor = (float)div;
  return 1;
}

static cq_status avgpool_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                 int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const pool_impl *p = m->impl;
  const cq_tensor *x = in[0];
  if (x->qparams) { /* quantized: the engine's kernel, read at call time as PyTorch does */
    const cq_qpool2d g = qpool_of(p);
    return cq_qop_avgpool2d(m, ctx, x, &g, cq_quantized_engine(), CQ_QLAYOUT_DEFAULT, &out[0]);
  }
  pool_plan pl;
  cq_status st = pool_plan_for(m, x, &pl);
  if (st != CQ_OK) return st;
  cq_tensor *y;
  st = pool_output(ctx, x, pl.out_h, pl.out_w, &y);
  if (st != CQ_OK) return st;
  const float *xd = x->data;
  float *yd = y->data;
  for (int64_t c = 0; c < pl.planes; c++) {
    const float *src = xd + c * pl.in_h * pl.in_w;
    float *dst = yd + c * pl.out_h * pl.out_w;
    for (int64_t oh = 0; oh < pl.out_h; oh++) {
      for (int64_t ow = 0; ow < pl.out_w; ow++) {
        int64_t h0, h1, w0, w1;
        float divisor;
        if (!avg_window(p, &pl, oh, ow, &h0, &h1, &w0, &w1, &divisor)) {
          dst[oh * pl.out_w + ow] = 0.0f;
          continue;
        }
        float sum = 0.0f;
        for (int64_t ih = h0; ih < h1; ih++) {
          for (int64_t iw = w0; iw < w1; iw++) sum += src[ih * pl.in_w + iw];
        }
        dst[oh * pl.out_w + ow] = sum / divisor;
      }
    }
  }
  out[0] = y;
  return CQ_OK;
}

static cq_status avgpool_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                  cq_tensor *const *gout, cq_tensor **gin) {
  const pool_impl *p = m->impl;
  const cq_tensor *x = e->in[0];
  pool_plan pl;
  cq_status st = pool_plan_for(m, x, &pl);
  if (st != CQ_OK) return st;
  cq_tensor *gx;
  st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  const float *g = gout[0]->data;
  float *d = gx->data;
  for (int64_t c = 0; c < pl.planes; c++) {
    const float *gsrc = g + c * pl.out_h * pl.out_w;
    float *dst = d + c * pl.in_h * pl.in_w;
    for (int64_t oh = 0; oh < pl.out_h; oh++) {
      for (int64_t ow = 0; ow < pl.out_w; ow++) {
        int64_t h0, h1, w0, w1;
        float divisor;
        if (!avg_window(p, &pl, oh, ow, &h0, &h1, &w0, &w1, &divisor)) continue;
        const float delta = gsrc[oh * pl.out_w + ow] / divisor;
        for (int64_t ih = h0; ih < h1; ih++) {
          for (int64_t iw = w0; iw < w1; iw++) dst[ih * pl.in_w + iw] += delta;
        }
      }
    }
  }
  gin[0] = gx;
  return CQ_OK;
}

/* --- AdaptiveAvgPool2d --------------------------------------------------------------------------- */

static int64_t adaptive_start(int64_t o, int64_t in, int64_t out) { return (o * in) / out; }
static int64_t adaptive_end(int64_t o, int64_t in, int64_t out) {
  return ((o + 1) * in + out - 1) / out;
}

static cq_status adaptive_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                  int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const adaptive_impl *p = m->impl;
  const cq_tensor *x = in[0];
  if (x->qparams) { /* quantized: the engine's kernel, read at call time as PyTorch does */
    return cq_qop_adaptive_avgpool2d(m, ctx, x, p->out[0], p->out[1], cq_quantized_engine(),
                                     CQ_QLAYOUT_DEFAULT, &out[0]);
  }
  pool_plan pl;
  cq_status st = pool_input(m, x, &pl);
  if (st != CQ_OK) return st;
  cq_tensor *y;
  st = pool_output(ctx, x, p->out[0], p->out[1], &y);
  if (st != CQ_OK) return st;
  const float *xd = x->data;
  float *yd = y->data;
  for (int64_t c = 0; c < pl.planes; c++) {
    const float *src = xd + c * pl.in_h * pl.in_w;
    float *dst = yd + c * p->out[0] * p->out[1];
    for (int64_t oh = 0; oh < p->out[0]; oh++) {
      const int64_t h0 = adaptive_start(oh, pl.in_h, p->out[0]);
      const int64_t h1 = adaptive_end(oh, pl.in_h, p->out[0]);
      for (int64_t ow = 0; ow < p->out[1]; ow++) {
        const int64_t w0 = adaptive_start(ow, pl.in_w, p->out[1]);
        const int64_t w1 = adaptive_end(ow, pl.in_w, p->out[1]);
        float sum = 0.0f;
        for (int64_t ih = h0; ih < h1; ih++) {
          for (int64_t iw = w0; iw < w1; iw++) sum += src[ih * pl.in_w + iw];
        }
        dst[oh * p->out[1] + ow] = sum / (float)(h1 - h0) / (float)(w1 - w0);
      }
    }
  }
  out[0] = y;
  return CQ_OK;
}

static cq_status adaptive_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                   cq_tensor *const *gout, cq_tensor **gin) {
  const adaptive_impl *p = m->impl;
  const cq_tensor *x = e->in[0];
  pool_plan pl;
  cq_status st = pool_input(m, x, &pl);
  if (st != CQ_OK) return st;
  cq_tensor *gx;
  st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  const float *g = gout[0]->data;
  float *d = gx->data;
  for (int64_t c = 0; c < pl.planes; c++) {
    const float *gsrc = g + c * p->out[0] * p->out[1];
    float *dst = d + c * pl.in_h * pl.in_w;
    for (int64_t oh = 0; oh < p->out[0]; oh++) {
      const int64_t h0 = adaptive_start(oh, pl.in_h, p->out[0]);
      const int64_t h1 = adaptive_end(oh, pl.in_h, p->out[0]);
      for (int64_t ow = 0; ow < p->out[1]; ow++) {
        const int64_t w0 = adaptive_start(ow, pl.in_w, p->out[1]);
        const int64_t w1 = adaptive_end(ow, pl.in_w, p->out[1]);
        const float delta = gsrc[oh * p->out[1] + ow] / (float)(h1 - h0) / (float)(w1 - w0);
        for (int64_t ih = h0; ih < h1; ih++) {
          for (int64_t iw = w0; iw < w1; iw++) dst[ih * pl.in_w + iw] += delta;
        }
      }
    }
  }
  gin[0] = gx;
  return CQ_OK;
}

/* --- printing ------------------------------------------------------------------------------------ */

/* An int when both components agree, else a tuple (see the note at the top). */
static void append_pair(cq_strbuf *sb, const int64_t *v) {
  if (v[0] == v[1]) {
    cq_strbuf_appendf(sb, "%lld", (long long)v[0]);
  } else {
    cq_strbuf_appendf(sb, "(%lld, %lld)", (long long)v[0], (long long)v[1]);
  }
}

static void maxpool_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const pool_impl *p = m->impl;
  cq_strbuf_append(sb, "kernel_size=");
  append_pair(sb, p->kernel);
  cq_strbuf_append(sb, ", stride=");
  append_pair(sb, p->stride);
  cq_strbuf_append(sb, ", padding=");
  append_pair(sb, p->padding);
  cq_strbuf_append(sb, ", dilation=");
  append_pair(sb, p->dilation);
  cq_strbuf_appendf(sb, ", ceil_mode=%s", p->ceil_mode ? "True" : "False");
}

static void avgpool_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const pool_impl *p = m->impl;
  cq_strbuf_append(sb, "kernel_size=");
  append_pair(sb, p->kernel);
  cq_strbuf_append(sb, ", stride=");
  append_pair(sb, p->stride);
  cq_strbuf_append(sb, ", padding=");
  append_pair(sb, p->padding);
}

static void adaptive_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const adaptive_impl *p = m->impl;
  cq_strbuf_appendf(sb, "output_size=(%lld, %lld)", (long long)p->out[0], (long long)p->out[1]);
}

static const cq_module_type maxpool_type = {
    .name = "MaxPool2d",
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .extra_repr = maxpool_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
    /* a quantized channels-last input stays channels-last (cq_qop_maxpool2d): worth it when the
     * consumer reads that layout too */
    .reads_channels_last = cq_reads_channels_last_passes,
};

static const cq_module_type avgpool_type = {
    .name = "AvgPool2d",
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .extra_repr = avgpool_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type adaptive_type = {
    .name = "AdaptiveAvgPool2d",
    .forward = adaptive_forward,
    .backward = adaptive_backward,
    .extra_repr = adaptive_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

/* --- construction -------------------------------------------------------------------------------- */

/* Validates the options shared by both pools and resolves stride 0 to kernel_size. `max` selects
 * MaxPool2d (dilation allowed, effective kernel for the padding rule). */
static cq_status pool_configure(const char *name, const cq_pool_options *o, int max,
                                pool_impl *p) {
  if (!o) return cq_fail(CQ_EINVAL, "%s: options are NULL", name);
  static const char *axis[2] = {"[0]", "[1]"};
  if ((o->stride[0] == 0) != (o->stride[1] == 0)) {
    return cq_fail(CQ_EINVAL,
                   "%s: stride (%lld, %lld) must be both 0 (meaning kernel_size) or both >= 1",
                   name, (long long)o->stride[0], (long long)o->stride[1]);
  }
  for (int d = 0; d < 2; d++) {
    if (o->kernel_size[d] < 1) {
      return cq_fail(CQ_EINVAL, "%s: kernel_size%s must be >= 1, got %lld", name, axis[d],
                     (long long)o->kernel_size[d]);
    }
    if (o->stride[d] < 0) {
      return cq_fail(CQ_EINVAL, "%s: stride%s must be >= 1 (or 0 for kernel_size), got %lld",
                     name, axis[d], (long long)o->stride[d]);
    }
    if (o->padding[d] < 0) {
      return cq_fail(CQ_EINVAL, "%s: padding%s must be >= 0, got %lld", name, axis[d],
                     (long long)o->padding[d]);
    }
    if (max && o->dilation[d] < 1) {
      return cq_fail(CQ_EINVAL, "%s: dilation%s must be >= 1, got %lld", name, axis[d],
                     (long long)o->dilation[d]);
    }
    if (!max && o->dilation[d] != 1) {
      return cq_fail(CQ_EINVAL, "%s: has no dilation; dilation%s must be 1, got %lld", name,
                     axis[d], (long long)o->dilation[d]);
    }
    /* ATen checks pad <= kernel / 2 (the undilated kernel) for both pools. */
    if (o->padding[d] > o->kernel_size[d] / 2) {
      return cq_fail(CQ_EINVAL,
                     "%s: padding%s %lld should be at most half of kernel_size%s %lld",
                     name, axis[d], (long long)o->padding[d], axis[d],
                     (long long)o->kernel_size[d]);
    }
    p->kernel[d] = o->kernel_size[d];
    p->stride[d] = o->stride[d] ? o->stride[d] : o->kernel_size[d];
    p->padding[d] = o->padding[d];
    p->dilation[d] = max ? o->dilation[d] : 1;
  }
  p->ceil_mode = o->ceil_mode != 0;
  p->count_include_pad = o->count_include_pad != 0;
  p->divisor_override = max ? 0 : o->divisor_override;
  return CQ_OK;
}

static cq_status pool_new(cq_module **out, const cq_pool_options *options, int max,
                          const cq_module_type *type) {
  *out = NULL;
  pool_impl cfg;
  memset(&cfg, 0, sizeof cfg);
  cq_status st = pool_configure(type->name, options, max, &cfg);
  if (st != CQ_OK) return st;
  pool_impl *p = cq_malloc_for(sizeof *p, type->name);
  if (!p) return CQ_ENOMEM;
  *p = cfg;
  return cq_module_new(type, p, out);
}

cq_status cq_maxpool2d(cq_module **out, const cq_pool_options *options) {
  return pool_new(out, options, 1, &maxpool_type);
}

cq_status cq_avgpool2d(cq_module **out, const cq_pool_options *options) {
  return pool_new(out, options, 0, &avgpool_type);
}

cq_status cq_adaptive_avgpool2d(cq_module **out, int64_t out_h, int64_t out_w) {
  *out = NULL;
  if (out_h < 1 || out_w < 1) {
    return cq_fail(CQ_EINVAL, "AdaptiveAvgPool2d: output_size (%lld, %lld) must be >= 1",
                   (long long)out_h, (long long)out_w);
  }
  adaptive_impl *p = cq_malloc_for(sizeof *p, "AdaptiveAvgPool2d");
  if (!p) return CQ_ENOMEM;
  p->out[0] = out_h;
  p->out[1] = out_w;
  return cq_module_new(&adaptive_type, p, out);
}

cq_status cq_pool_describe(const cq_module *m, cq_pool_options *options) {
  if (m->type != &maxpool_type && m->type != &avgpool_type) {
    return cq_fail(CQ_EINVAL, "%s is not a MaxPool2d or AvgPool2d", m->type->name);
  }
  const pool_impl *p = m->impl;
  memset(options, 0, sizeof *options);
  for (int d = 0; d < 2; d++) {
    options->kernel_size[d] = p->kernel[d];
    options->stride[d] = p->stride[d];
    options->padding[d] = p->padding[d];
    options->dilation[d] = p->dilation[d];
  }
  options->ceil_mode = p->ceil_mode;
  options->count_include_pad = p->count_include_pad;
  options->divisor_override = p->divisor_override;
  return CQ_OK;
}

cq_status cq_adaptive_avgpool_describe(const cq_module *m, int64_t *out_h, int64_t *out_w) {
  if (m->type != &adaptive_type) {
    return cq_fail(CQ_EINVAL, "%s is not an AdaptiveAvgPool2d", m->type->name);
  }
  const adaptive_impl *p = m->impl;
  *out_h = p->out[0];
  *out_w = p->out[1];
  return CQ_OK;
}

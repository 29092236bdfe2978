/* Quantized pooling: max_pool2d, avg_pool2d and adaptive_avg_pool2d with the arithmetic of each
 * PyTorch 1.13 kernel (torch-1.13-semantics.md 5.7):
 *
 *   max_pool2d      max of the integers over the in-bounds window (dilation, ceil_mode), the
 *                   input's qparams
 *     QNNPACK       (engine QNNPACK, quint8, no ceil_mode) the window's taps clamped into the
 *                   image (QNNPACK's indirection buffer), which only differs with dilation > 1
 *                   and padding
 *   avg_pool2d      acc = sum(q) - size * zp over the in-bounds part of the window (size elements)
 *     QNNPACK       (engine QNNPACK, quint8, no ceil_mode) divisor kh * kw always:
 *                   y = rne(f32(acc) * f32(s / f32(s * kh * kw))) + zp
 *     native NCHW   y = rne(f32(f32(acc) * m) + zp), m = f32(1 / divisor)
 *     native NHWC   y = rne(f32(acc) * m) + zp
 *                   divisor = divisor_override, else the window clipped to the padded input
 *                   (count_include_pad) or size
 *   adaptive_avg_pool2d  windows [floor(i H / oh), ceil((i + 1) H / oh)) computed in float
 *     QNNPACK       (engine QNNPACK, quint8, H % oh == 0 and W % ow == 0, not the identity) the
 *                   QNNPACK avg pool with kernel = stride = (H / oh, W / ow)
 *     native NCHW   y = rne(f32(f32(f32(sum(q)) * f32(1 / kh)) * f32(1 / kw)))
 *     native NHWC   y = rne(f32(acc) * f32(1 / f32(1 / m))) + zp, m = f32(1 / n)
 * Results are clamped to the dtype range; outputs keep the input's qparams. */
#include <math.h>
#include <string.h>

#include "nn/module_impl.h"
#include "nn/quantized/qops.h"
#include "nn/quantized/qstatic_impl.h"

typedef struct plane_plan {
  int64_t planes, in_h, in_w, out_h, out_w, channels;
} plane_plan;

static int32_t load_q(const cq_tensor *x, int64_t i) {
  return x->dtype == CQ_U8 ? (int32_t)((const uint8_t *)x->data)[i]
                           : (int32_t)((const int8_t *)x->data)[i];
}

static void store_q(cq_tensor *y, int64_t i, int32_t v) {
  if (y->dtype == CQ_U8) {
    ((uint8_t *)y->data)[i] = (uint8_t)v;
  } else {
    ((int8_t *)y->data)[i] = (int8_t)v;
  }
}

static int32_t clamp_dtype(const cq_tensor *x, int64_t v) {
  const int64_t lo = x->dtype == CQ_U8 ? 0 : -128, hi = x->dtype == CQ_U8 ? 255 : 127;
  return (int32_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* x86 float->int32 conversion of an already rounded value (NaN and overflow give INT32_MIN). */
static int64_t round_to_int(float v) {
  const float r = nearbyintf(v);
  if (!(r >= -2147483648.0f && r < 2147483648.0f)) return INT32_MIN;
  return (int64_t)r;
}

static cq_status pool_input(const cq_module *m, const cq_tensor *x, plane_plan *pl) {
  cq_status st = cq_qact_check(m, x, 0);
  if (st != CQ_OK) return st;
  char s[128];
  if (x->ndim != 3 && x->ndim != 4) {
    return cq_qmod_fail(m, CQ_ESHAPE, "expected a 3D (unbatched) or 4D (batched) input, but got "
                        "input of size %s", cq_shape_str(x->ndim, x->shape, s, sizeof s));
  }
  for (int d = x->ndim - 3; d < x->ndim; d++) {
    if (x->shape[d] <= 0) {
      return cq_qmod_fail(m, CQ_ESHAPE, "expected input with non-zero sizes for the non-batch "
                          "dimensions, but got input of size %s",
                          cq_shape_str(x->ndim, x->shape, s, sizeof s));
    }
  }
  pl->channels = x->shape[x->ndim - 3];
  pl->planes = pl->channels * (x->ndim == 4 ? x->shape[0] : 1);
  pl->in_h = x->shape[x->ndim - 2];
  pl->in_w = x->shape[x->ndim - 1];
  return CQ_OK;
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}

/* ATen's pooling_output_shape. */
static int64_t pool_out_size(int64_t in, int64_t kernel, int64_t pad, int64_t stride,
                             int64_t dilation, int ceil_mode) {
  int64_t out =
      floor_div(in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) +
      1;
  if (ceil_mode && (out - 1) * stride >= in + pad) out--;
  return out;
}

static cq_status pool_geometry(const cq_module *m, const cq_tensor *x, const cq_qpool2d *p,
                               plane_plan *pl) {
  cq_status st = pool_input(m, x, pl);
  if (st != CQ_OK) return st;
  for (int d = 0; d < 2; d++) {
    if (p->kernel[d] < 1 || p->stride[d] < 1 || p->padding[d] < 0 || p->dilation[d] < 1) {
      return cq_qmod_fail(m, CQ_EINVAL, "invalid pooling geometry (kernel %lld, stride %lld, "
                          "padding %lld, dilation %lld)", (long long)p->kernel[d],
                          (long long)p->stride[d], (long long)p->padding[d],
                          (long long)p->dilation[d]);
    }
  }
  pl->out_h = pool_out_size(pl->in_h, p->kernel[0], p->padding[0], p->stride[0], p->dilation[0],
                            p->ceil_mode);
  pl->out_w = pool_out_size(pl->in_w, p->kernel[1], p->padding[1], p->stride[1], p->dilation[1],
                            p->ceil_mode);
  if (pl->out_h < 1 || pl->out_w < 1) {
    return cq_qmod_fail(m, CQ_ESHAPE, "given input size (%lldx%lld), the calculated output size "
                        "is (%lldx%lld): too small", (long long)pl->in_h, (long long)pl->in_w,
                        (long long)pl->out_h, (long long)pl->out_w);
  }
  return CQ_OK;
}

static cq_status pool_output(cq_ctx *ctx, const cq_tensor *x, int64_t out_h, int64_t out_w,
                             cq_tensor **y) {
  int64_t shape[4];
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
  shape[x->ndim - 2] = out_h;
  shape[x->ndim - 1] = out_w;
  return cq_qact_new(ctx, cq_qact_dtype(x), x->ndim, shape, x->qparams->scale[0],
                     x->qparams->zero_point[0], y);
}

/* --- max_pool2d --------------------------------------------------------------------------------- */

static void max_window(int64_t o, int64_t stride, int64_t pad, int64_t kernel, int64_t dilation,
                       int64_t in, int64_t *first, int64_t *end) {
  int64_t i0 = o * stride - pad;
  int64_t i1 = i0 + (kernel - 1) * dilation + 1;
  if (i1 > in) i1 = in;
  while (i0 < 0) i0 += dilation;
  *first = i0;
  *end = i1;
}

static int64_t clamp_index(int64_t v, int64_t n) { return v < 0 ? 0 : (v >= n ? n - 1 : v); }

/* QNNPACK's max pooling of one plane: every tap of the dilated window, its coordinates clamped
 * into the image. */
static void qnnpack_max_plane(const cq_tensor *x, cq_tensor *y, int64_t src, int64_t dst,
                              const plane_plan *pl, const cq_qpool2d *p) {
  for (int64_t oh = 0; oh < pl->out_h; oh++) {
    for (int64_t ow = 0; ow < pl->out_w; ow++) {
      int32_t best = 0;
      for (int64_t i = 0; i < p->kernel[0]; i++) {
        const int64_t ih = clamp_index(oh * p->stride[0] - p->padding[0] + i * p->dilation[0],
                                       pl->in_h);
        for (int64_t j = 0; j < p->kernel[1]; j++) {
          const int64_t iw = clamp_index(ow * p->stride[1] - p->padding[1] + j * p->dilation[1],
                                         pl->in_w);
          const int32_t v = load_q(x, src + ih * pl->in_w + iw);
          if (v > best) best = v;
        }
      }
      store_q(y, dst + oh * pl->out_w + ow, best);
    }
  }
}

/* No padding, no dilation, floor mode: every window lies inside the image, which is also where
 * QNNPACK's clamped taps agree with the native kernel. */
static int max_windows_inside(const cq_qpool2d *p) {
  return !p->ceil_mode && p->padding[0] == 0 && p->padding[1] == 0 && p->dilation[0] == 1 &&
         p->dilation[1] == 1;
}

/* The same max over quint8 windows that lie inside the image (max_windows_inside), with direct
 * loads: the generic loop's per-element dtype dispatch dominated the int8 CNN's time. */
static void max_plane_u8(const cq_tensor *x, cq_tensor *y, int64_t src, int64_t dst,
                         const plane_plan *pl, const cq_qpool2d *p) {
  const uint8_t *in = (const uint8_t *)x->data + src;
  uint8_t *out = (uint8_t *)y->data + dst;
  if (p->kernel[0] == 2 && p->kernel[1] == 2 && p->stride[0] == 2 && p->stride[1] == 2) {
    for (int64_t oh = 0; oh < pl->out_h; oh++) { /* MaxPool2d(2), spelled out for the compiler */
      const uint8_t *r0 = in + 2 * oh * pl->in_w, *r1 = r0 + pl->in_w;
      uint8_t *o = out + oh * pl->out_w;
      for (int64_t ow = 0; ow < pl->out_w; ow++) {
        const uint8_t a = r0[2 * ow] > r0[2 * ow + 1] ? r0[2 * ow] : r0[2 * ow + 1];
        const uint8_t b = r1[2 * ow] > r1[2 * ow + 1] ? r1[2 * ow] : r1[2 * ow + 1];
        o[ow] = a > b ? a : b;
      }
    }
    return;
  }
  for (int64_t oh = 0; oh < pl->out_h; oh++) {
    const uint8_t *rows = in + oh * p->stride[0] * pl->in_w;
    for (int64_t ow = 0; ow < pl->out_w; ow++) {
      const uint8_t *win = rows + ow * p->stride[1];
      uint8_t best = 0;
      for (int64_t i = 0; i < p->kernel[0]; i++) {
        for (int64_t j = 0; j < p->kernel[1]; j++) {
          const uint8_t v = win[i * pl->in_w + j];
          best = v > best ? v : best;
        }
      }
      out[oh * pl->out_w + ow] = best;
    }
  }
}

cq_status cq_qop_maxpool2d(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                           const cq_qpool2d *p, cq_backend engine, cq_tensor **y) {
  *y = NULL;
  plane_plan pl;
  cq_status st = pool_geometry(m, x, p, &pl);
  if (st == CQ_OK) st = pool_output(ctx, x, pl.out_h, pl.out_w, y);
  if (st != CQ_OK) return st;
  if (engine == CQ_BACKEND_QNNPACK && x->dtype == CQ_U8 && !p->ceil_mode) {
    for (int64_t c = 0; c < pl.planes; c++) {
      qnnpack_max_plane(x, *y, c * pl.in_h * pl.in_w, c * pl.out_h * pl.out_w, &pl, p);
    }
    return CQ_OK;
  }
  if (x->dtype == CQ_U8 && max_windows_inside(p)) {
    for (int64_t c = 0; c < pl.planes; c++) {
      max_plane_u8(x, *y, c * pl.in_h * pl.in_w, c * pl.out_h * pl.out_w, &pl, p);
    }
    return CQ_OK;
  }
  const int32_t lowest = x->dtype == CQ_U8 ? 0 : -128;
  for (int64_t c = 0; c < pl.planes; c++) {
    const int64_t src = c * pl.in_h * pl.in_w, dst = c * pl.out_h * pl.out_w;
    for (int64_t oh = 0; oh < pl.out_h; oh++) {
      int64_t h0, h1;
      max_window(oh, p->stride[0], p->padding[0], p->kernel[0], p->dilation[0], pl.in_h, &h0, &h1);
      for (int64_t ow = 0; ow < pl.out_w; ow++) {
        int64_t w0, w1;
        max_window(ow, p->stride[1], p->padding[1], p->kernel[1], p->dilation[1], pl.in_w, &w0,
                   &w1);
        int32_t best = lowest;
        for (int64_t ih = h0; ih < h1; ih += p->dilation[0]) {
          for (int64_t iw = w0; iw < w1; iw += p->dilation[1]) {
            const int32_t v = load_q(x, src + ih * pl.in_w + iw);
            if (v > best) best = v;
          }
        }
        store_q(*y, dst + oh * pl.out_w + ow, best);
      }
    }
  }
  return CQ_OK;
}

/* --- avg_pool2d --------------------------------------------------------------------------------- */

/* QNNPACK's average pooling of one plane (kh x kw windows at the given strides and padding, the
 * padding read as the zero point), output zero point = input zero point. */
static void qnnpack_avg_plane(const cq_tensor *x, cq_tensor *y, int64_t src, int64_t dst,
                              const plane_plan *pl, const int64_t *kernel, const int64_t *stride,
                              const int64_t *padding) {
  const float sx = x->qparams->scale[0];
  const int32_t zp = x->qparams->zero_point[0];
  const float pool = (float)(kernel[0] * kernel[1]);
  const float mult = sx / (sx * pool);
  for (int64_t oh = 0; oh < pl->out_h; oh++) {
    int64_t h0 = oh * stride[0] - padding[0], h1 = h0 + kernel[0];
    h0 = h0 < 0 ? 0 : h0;
    h1 = h1 > pl->in_h ? pl->in_h : h1;
    for (int64_t ow = 0; ow < pl->out_w; ow++) {
      int64_t w0 = ow * stride[1] - padding[1], w1 = w0 + kernel[1];
      w0 = w0 < 0 ? 0 : w0;
      w1 = w1 > pl->in_w ? pl->in_w : w1;
      int32_t acc = 0;
      for (int64_t ih = h0; ih < h1; ih++) {
        for (int64_t iw = w0; iw < w1; iw++) acc += load_q(x, src + ih * pl->in_w + iw) - zp;
      }
      int64_t v = round_to_int((float)acc * mult);
      v = v > 32767 ? 32767 : (v < -32768 ? -32768 : v); /* packs_epi32, then adds_epi16 */
      v += zp;
      v = v > 32767 ? 32767 : v;
      store_q(y, dst + oh * pl->out_w + ow, clamp_dtype(y, v));
    }
  }
}

cq_status cq_qop_avgpool2d(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                           const cq_qpool2d *p, cq_backend engine, cq_qlayout layout,
                           cq_tensor **y) {
  *y = NULL;
  cq_qpool2d g = *p;
  g.dilation[0] = g.dilation[1] = 1;
  plane_plan pl;
  cq_status st = pool_geometry(m, x, &g, &pl);
  if (st == CQ_OK) st = pool_output(ctx, x, pl.out_h, pl.out_w, y);
  if (st != CQ_OK) return st;
  const int64_t in_plane = pl.in_h * pl.in_w, out_plane = pl.out_h * pl.out_w;
  if (engine == CQ_BACKEND_QNNPACK && x->dtype == CQ_U8 && !p->ceil_mode) {
    for (int64_t c = 0; c < pl.planes; c++) {
      qnnpack_avg_plane(x, *y, c * in_plane, c * out_plane, &pl, g.kernel, g.stride, g.padding);
    }
    return CQ_OK;
  }
  const int nhwc = layout == CQ_QLAYOUT_NHWC && x->ndim == 4;
  const int32_t zp = x->qparams->zero_point[0];
  for (int64_t c = 0; c < pl.planes; c++) {
    for (int64_t oh = 0; oh < pl.out_h; oh++) {
      int64_t h0 = oh * g.stride[0] - g.padding[0];
      int64_t h1 = h0 + g.kernel[0];
      if (h1 > pl.in_h + g.padding[0]) h1 = pl.in_h + g.padding[0];
      const int64_t ph = h1 - h0;
      h0 = h0 < 0 ? 0 : h0;
      h1 = h1 > pl.in_h ? pl.in_h : h1;
      for (int64_t ow = 0; ow < pl.out_w; ow++) {
        int64_t w0 = ow * g.stride[1] - g.padding[1];
        int64_t w1 = w0 + g.kernel[1];
        if (w1 > pl.in_w + g.padding[1]) w1 = pl.in_w + g.padding[1];
        const int64_t pool_size = ph * (w1 - w0);
        w0 = w0 < 0 ? 0 : w0;
        w1 = w1 > pl.in_w ? pl.in_w : w1;
        const int64_t size = (h1 - h0) * (w1 - w0);
        int64_t divisor = p->divisor_override ? p->divisor_override
                                              : (p->count_include_pad ? pool_size : size);
        int32_t acc = (int32_t)(-size * zp);
        for (int64_t ih = h0; ih < h1; ih++) {
          for (int64_t iw = w0; iw < w1; iw++) acc += load_q(x, c * in_plane + ih * pl.in_w + iw);
        }
        const float mult = (float)(1.0 / (double)divisor);
        int64_t v;
        if (nhwc) {
          v = round_to_int((float)acc * mult) + zp;
        } else {
          v = round_to_int((float)acc * mult + (float)zp);
        }
        store_q(*y, c * out_plane + oh * pl.out_w + ow, clamp_dtype(x, v));
      }
    }
  }
  return CQ_OK;
}

/* --- adaptive_avg_pool2d ------------------------------------------------------------------------ */

static int64_t adaptive_start(int64_t o, int64_t in, int64_t out) {
  return (int64_t)floorf((float)(o * in) / (float)out);
}

static int64_t adaptive_end(int64_t o, int64_t in, int64_t out) {
  return (int64_t)ceilf((float)((o + 1) * in) / (float)out);
}

cq_status cq_qop_adaptive_avgpool2d(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                                    int64_t out_h, int64_t out_w, cq_backend engine,
                                    cq_qlayout layout, cq_tensor **y) {
  *y = NULL;
  plane_plan pl;
  cq_status st = pool_input(m, x, &pl);
  if (st != CQ_OK) return st;
  if (out_h < 1 || out_w < 1) {
    return cq_qmod_fail(m, CQ_EINVAL, "output_size (%lld, %lld) must be >= 1", (long long)out_h,
                        (long long)out_w);
  }
  pl.out_h = out_h;
  pl.out_w = out_w;
  st = pool_output(ctx, x, out_h, out_w, y);
  if (st != CQ_OK) return st;
  const int64_t in_plane = pl.in_h * pl.in_w, out_plane = out_h * out_w;
  if (engine == CQ_BACKEND_QNNPACK && x->dtype == CQ_U8 &&
      !(pl.in_h == out_h && pl.in_w == out_w) && pl.in_h % out_h == 0 && pl.in_w % out_w == 0) {
    const int64_t kernel[2] = {pl.in_h / out_h, pl.in_w / out_w};
    const int64_t padding[2] = {0, 0};
    for (int64_t c = 0; c < pl.planes; c++) {
      qnnpack_avg_plane(x, *y, c * in_plane, c * out_plane, &pl, kernel, kernel, padding);
    }
    return CQ_OK;
  }
  const int nhwc = layout == CQ_QLAYOUT_NHWC && x->ndim == 4;
  const int32_t zp = x->qparams->zero_point[0];
  for (int64_t c = 0; c < pl.planes; c++) {
    for (int64_t oh = 0; oh < out_h; oh++) {
      const int64_t h0 = adaptive_start(oh, pl.in_h, out_h), h1 = adaptive_end(oh, pl.in_h, out_h);
      for (int64_t ow = 0; ow < out_w; ow++) {
        const int64_t w0 = adaptive_start(ow, pl.in_w, out_w);
        const int64_t w1 = adaptive_end(ow, pl.in_w, out_w);
        const int64_t kh = h1 - h0, kw = w1 - w0, size = kh * kw;
        int64_t sum = 0;
        for (int64_t ih = h0; ih < h1; ih++) {
          for (int64_t iw = w0; iw < w1; iw++) sum += load_q(x, c * in_plane + ih * pl.in_w + iw);
        }
        int64_t v;
        if (nhwc) {
          const float mult = 1.0f / (float)size;
          const float inv = 1.0f / (1.0f / mult);
          v = round_to_int((float)(int32_t)(sum - size * zp) * inv) + zp;
        } else {
          const float khr = (float)(1.0 / (double)kh), kwr = (float)(1.0 / (double)kw);
          v = round_to_int((float)sum * khr * kwr);
        }
        store_q(*y, c * out_plane + oh * out_w + ow, clamp_dtype(x, v));
      }
    }
  }
  return CQ_OK;
}

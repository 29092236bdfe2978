/* Pooling drivers (qpool.h): geometry, window bookkeeping and border windows here, the vector
 * work in the per-ISA kernels of cq_qpool_kernels_for(isa). */
#include <math.h>
#include <string.h>

#include "kernels/qpool/qpool.h"

/* Row pointers handed to the row kernels at once (their limit). */
#define ROW_GROUP 8
/* Extra scratch entries past each row buffer. */
#define SLACK 64

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

static int32_t byte_at(const void *p, int64_t i, int s8) {
  return s8 ? (int32_t)((const int8_t *)p)[i] : (int32_t)((const uint8_t *)p)[i];
}

/* Output columns [*first, *end) whose taps ow * stride - pad + j * dilation (j < kernel) all lie
 * in [0, in). */
static void interior_columns(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t pad,
                             int64_t dilation, int64_t *first, int64_t *end) {
  const int64_t span = (kernel - 1) * dilation + 1;
  int64_t a = (pad + stride - 1) / stride;
  int64_t b = in - span + pad >= 0 ? (in - span + pad) / stride + 1 : 0;
  a = min64(a, out);
  b = min64(b, out);
  *first = a;
  *end = max64(a, b);
}

/* ---- max pooling ------------------------------------------------------------------------------ */

size_t cq_qpool_max2d_scratch(const cq_qpool2d_geom *g) { return 2 * ((size_t)g->in_w + SLACK); }

/* One border window from the row t of vertical maxima: taps outside [0, w) skipped or clamped. */
static int32_t max_border(const void *t, int64_t w, int64_t first, int64_t k, int64_t d,
                          int clamp_taps, int s8) {
  int32_t best = s8 ? -128 : 0;
  for (int64_t j = 0; j < k; j++) {
    int64_t iw = first + j * d;
    if (clamp_taps) {
      iw = iw < 0 ? 0 : (iw >= w ? w - 1 : iw);
    } else if (iw < 0 || iw >= w) {
      continue;
    }
    const int32_t v = byte_at(t, iw, s8);
    best = v > best ? v : best;
  }
  return best;
}

static void max_plane(const cq_qpool_kernels *k, int s8, int clamp_taps, const cq_qpool2d_geom *g,
                      const uint8_t *x, uint8_t *y, uint8_t *t, uint8_t *hm) {
  const int64_t H = g->in_h, W = g->in_w, OW = g->out_w;
  const int64_t kh = g->kernel[0], kw = g->kernel[1], sh = g->stride[0], sw = g->stride[1];
  const int64_t ph = g->padding[0], pw = g->padding[1], dh = g->dilation[0], dw = g->dilation[1];
  int64_t owa, owb;
  interior_columns(W, OW, kw, sw, pw, dw, &owa, &owb);
  for (int64_t oh = 0; oh < g->out_h; oh++) {
    /* vertical pass: t[iw] = max over the window's rows */
    const void *rows[ROW_GROUP];
    size_t n = 0;
    int acc = 0;
    for (int64_t i = 0; i < kh; i++) {
      int64_t ih = oh * sh - ph + i * dh;
      if (clamp_taps) {
        ih = ih < 0 ? 0 : (ih >= H ? H - 1 : ih);
      } else if (ih < 0 || ih >= H) {
        continue;
      }
      rows[n++] = x + ih * W;
      if (n == ROW_GROUP) {
        k->max_rows(n, rows, (size_t)W, acc, s8, t);
        acc = 1;
        n = 0;
      }
    }
    if (n) {
      k->max_rows(n, rows, (size_t)W, acc, s8, t);
      acc = 1;
    }
    if (!acc) memset(t, s8 ? 0x80 : 0, (size_t)W); /* no row inside: the dtype minimum */
    /* horizontal pass */
    uint8_t *yr = y + oh * OW;
    const int64_t count = owb - owa;
    if (count > 0) {
      const uint8_t *t0 = t + owa * sw - pw;
      if (sw == 1) {
        k->max_taps((size_t)count, (size_t)kw, (size_t)dw, t0, s8, yr + owa);
      } else {
        k->max_taps((size_t)((count - 1) * sw + 1), (size_t)kw, (size_t)dw, t0, s8, hm);
        if (sw == 2) {
          k->pick2_bytes((size_t)count, hm, yr + owa);
        } else {
          for (int64_t i = 0; i < count; i++) yr[owa + i] = hm[i * sw];
        }
      }
    }
    for (int64_t ow = 0; ow < OW; ow++) {
      if (ow == owa) ow = owb; /* skip the interior */
      if (ow >= OW) break;
      yr[ow] = (uint8_t)max_border(t, W, ow * sw - pw, kw, dw, clamp_taps, s8);
    }
  }
}

static void maxpool_nchw(cq_isa isa, int s8, int clamp_taps, size_t planes,
                         const cq_qpool2d_geom *g, const uint8_t *x, uint8_t *y, void *scratch) {
  const cq_qpool_kernels *k = cq_qpool_kernels_for(isa);
  uint8_t *t = scratch, *hm = t + g->in_w + SLACK;
  const size_t in_plane = (size_t)(g->in_h * g->in_w), out_plane = (size_t)(g->out_h * g->out_w);
  const int pool2 = g->kernel[0] == 2 && g->kernel[1] == 2 && g->stride[0] == 2 &&
                    g->stride[1] == 2 && g->padding[0] == 0 && g->padding[1] == 0 &&
                    g->dilation[0] == 1 && g->dilation[1] == 1;
  if (pool2 && 2 * g->out_h <= g->in_h && 2 * g->out_w <= g->in_w) {
    /* MaxPool2d(2), every window inside the image (no ceil_mode window past the edge): the rows
     * of all planes in one call when no input row is left over between planes */
    const size_t W = (size_t)g->in_w, OW = (size_t)g->out_w;
    if (2 * g->out_h == g->in_h) {
      k->max_2x2s2(planes * (size_t)g->out_h, OW, x, W, 2 * W, s8, y, OW);
    } else {
      for (size_t c = 0; c < planes; c++) {
        k->max_2x2s2((size_t)g->out_h, OW, x + c * in_plane, W, 2 * W, s8, y + c * out_plane, OW);
      }
    }
    return;
  }
  for (size_t c = 0; c < planes; c++) {
    max_plane(k, s8, clamp_taps, g, x + c * in_plane, y + c * out_plane, t, hm);
  }
}

void cq_qu8_maxpool2d_nchw(cq_isa isa, int clamp_taps, size_t planes, const cq_qpool2d_geom *g,
                           const uint8_t *x, uint8_t *y, void *scratch) {
  maxpool_nchw(isa, 0, clamp_taps, planes, g, x, y, scratch);
}

void cq_qs8_maxpool2d_nchw(cq_isa isa, int clamp_taps, size_t planes, const cq_qpool2d_geom *g,
                           const int8_t *x, int8_t *y, void *scratch) {
  maxpool_nchw(isa, 1, clamp_taps, planes, g, (const uint8_t *)x, (uint8_t *)y, scratch);
}

void cq_qu8_maxpool2d_nhwc(cq_isa isa, int clamp_taps, size_t batch, size_t channels,
                           const cq_qpool2d_geom *g, const uint8_t *x, uint8_t *y) {
  const cq_qpool_kernels *k = cq_qpool_kernels_for(isa);
  const int64_t H = g->in_h, W = g->in_w;
  const size_t C = channels;
  for (size_t b = 0; b < batch; b++) {
    const uint8_t *img = x + b * (size_t)(H * W) * C;
    for (int64_t oh = 0; oh < g->out_h; oh++) {
      for (int64_t ow = 0; ow < g->out_w; ow++) {
        const size_t pixel = (b * (size_t)g->out_h + (size_t)oh) * (size_t)g->out_w + (size_t)ow;
        uint8_t *out = y + pixel * C;
        const void *taps[ROW_GROUP];
        size_t n = 0;
        int acc = 0;
        for (int64_t i = 0; i < g->kernel[0]; i++) {
          int64_t ih = oh * g->stride[0] - g->padding[0] + i * g->dilation[0];
          if (clamp_taps) {
            ih = ih < 0 ? 0 : (ih >= H ? H - 1 : ih);
          } else if (ih < 0 || ih >= H) {
            continue;
          }
          for (int64_t j = 0; j < g->kernel[1]; j++) {
            int64_t iw = ow * g->stride[1] - g->padding[1] + j * g->dilation[1];
            if (clamp_taps) {
              iw = iw < 0 ? 0 : (iw >= W ? W - 1 : iw);
            } else if (iw < 0 || iw >= W) {
              continue;
            }
            taps[n++] = img + (size_t)(ih * W + iw) * C;
            if (n == ROW_GROUP) {
              k->max_rows(n, taps, C, acc, 0, out);
              acc = 1;
              n = 0;
            }
          }
        }
        if (n) {
          k->max_rows(n, taps, C, acc, 0, out);
          acc = 1;
        }
        if (!acc) memset(out, 0, C);
      }
    }
  }
}

/* ---- average pooling -------------------------------------------------------------------------- */

size_t cq_qpool_avg2d_scratch(const cq_qpool2d_geom *g) {
  return (2 * ((size_t)g->in_w + SLACK) + (size_t)g->out_w + SLACK) * sizeof(int32_t);
}

static float window_mult(const cq_qavgpool_params *p, int64_t pool_size, int64_t size) {
  if (p->fixed) return p->fixed_mult;
  const int64_t divisor =
      p->divisor_override ? p->divisor_override : (p->count_include_pad ? pool_size : size);
  return (float)(1.0 / (double)divisor);
}

/* Taps inside the image of a window: the product of the clipped extents, negative extents
 * included (ATen's formula for windows outside the image); QNNPACK counts the taps it reads. */
static int64_t window_size(const cq_qavgpool_params *p, int64_t rows, int64_t cols) {
  return p->fixed ? max64(rows, 0) * max64(cols, 0) : rows * cols;
}

static void avg_plane(const cq_qpool_kernels *k, int s8, const cq_qpool2d_geom *g,
                      const cq_qavgpool_params *p, const uint8_t *x, uint8_t *y, int32_t *t,
                      int32_t *hs, int32_t *acc) {
  const int64_t H = g->in_h, W = g->in_w, OW = g->out_w;
  const int64_t kh = g->kernel[0], kw = g->kernel[1], sh = g->stride[0], sw = g->stride[1];
  const int64_t ph = g->padding[0], pw = g->padding[1];
  const int32_t zp = p->out.zp;
  int64_t owa, owb;
  interior_columns(W, OW, kw, sw, pw, 1, &owa, &owb);
  for (int64_t oh = 0; oh < g->out_h; oh++) {
    const int64_t h0 = oh * sh - ph;
    const int64_t h1 = min64(h0 + kh, H + ph);
    const int64_t pool_h = h1 - h0;
    const int64_t h0c = max64(h0, 0), h1c = min64(h1, H);
    const int64_t rows = h1c - h0c;
    /* vertical pass: t[iw] = sum over the rows inside the image */
    if (rows > 0) {
      const void *ptr[ROW_GROUP];
      int accumulate = 0;
      for (int64_t r = h0c; r < h1c; r += ROW_GROUP) {
        const size_t n = (size_t)min64(ROW_GROUP, h1c - r);
        for (size_t i = 0; i < n; i++) ptr[i] = x + (r + (int64_t)i) * W;
        k->sum_rows(n, ptr, (size_t)W, accumulate, s8, t);
        accumulate = 1;
      }
    } else {
      memset(t, 0, sizeof(int32_t) * (size_t)W);
    }
    uint8_t *yr = y + oh * OW;
    /* interior windows: kw columns inside the image, one multiplier for the row */
    const int64_t count = owb - owa;
    if (count > 0) {
      const int64_t size = window_size(p, rows, kw);
      const float mult = window_mult(p, pool_h * kw, size);
      const int32_t bias = (int32_t)(uint32_t)(uint64_t)(-size * zp);
      const int32_t *t0 = t + owa * sw - pw;
      if (sw == 1) {
        k->sum_taps((size_t)count, (size_t)kw, t0, acc);
      } else {
        k->sum_taps((size_t)((count - 1) * sw + 1), (size_t)kw, t0, hs);
        if (sw == 2) {
          k->pick2_i32((size_t)count, hs, acc);
        } else {
          for (int64_t i = 0; i < count; i++) acc[i] = hs[i * sw];
        }
      }
      k->finish((size_t)count, acc, bias, mult, &p->out, s8, yr + owa);
    }
    for (int64_t ow = 0; ow < OW; ow++) {
      if (ow == owa) ow = owb; /* skip the interior */
      if (ow >= OW) break;
      const int64_t w0 = ow * sw - pw;
      const int64_t w1 = min64(w0 + kw, W + pw);
      const int64_t w0c = max64(w0, 0), w1c = min64(w1, W);
      uint32_t sum = 0;
      for (int64_t iw = w0c; iw < w1c; iw++) sum += (uint32_t)t[iw];
      const int64_t size = window_size(p, rows, w1c - w0c);
      const float mult = window_mult(p, pool_h * (w1 - w0), size);
      const int32_t a = (int32_t)(sum + (uint32_t)(uint64_t)(-size * zp));
      yr[ow] = (uint8_t)cq_qpool_round(a, mult, &p->out);
    }
  }
}

static void avgpool_nchw(cq_isa isa, int s8, size_t planes, const cq_qpool2d_geom *g,
                         const cq_qavgpool_params *p, const uint8_t *x, uint8_t *y, void *scratch) {
  const cq_qpool_kernels *k = cq_qpool_kernels_for(isa);
  int32_t *t = scratch, *hs = t + g->in_w + SLACK, *acc = hs + g->in_w + SLACK;
  const size_t in_plane = (size_t)(g->in_h * g->in_w), out_plane = (size_t)(g->out_h * g->out_w);
  for (size_t c = 0; c < planes; c++) {
    avg_plane(k, s8, g, p, x + c * in_plane, y + c * out_plane, t, hs, acc);
  }
}

void cq_qu8_avgpool2d_nchw(cq_isa isa, size_t planes, const cq_qpool2d_geom *g,
                           const cq_qavgpool_params *p, const uint8_t *x, uint8_t *y,
                           void *scratch) {
  avgpool_nchw(isa, 0, planes, g, p, x, y, scratch);
}

void cq_qs8_avgpool2d_nchw(cq_isa isa, size_t planes, const cq_qpool2d_geom *g,
                           const cq_qavgpool_params *p, const int8_t *x, int8_t *y,
                           void *scratch) {
  avgpool_nchw(isa, 1, planes, g, p, (const uint8_t *)x, (uint8_t *)y, scratch);
}

/* ---- adaptive average pooling ----------------------------------------------------------------- */

static int64_t adaptive_start(int64_t o, int64_t in, int64_t out) {
  return (int64_t)floorf((float)(o * in) / (float)out);
}

static int64_t adaptive_end(int64_t o, int64_t in, int64_t out) {
  return (int64_t)ceilf((float)((o + 1) * in) / (float)out);
}

/* The multipliers of one window size (the NHWC rule's three divisions in float, kept apart from
 * the per-plane loop). */
typedef struct adaptive_consts {
  int64_t size;
  float khr, kwr, inv;
} adaptive_consts;

static adaptive_consts adaptive_constants(int64_t kh, int64_t kw) {
  adaptive_consts a;
  a.size = kh * kw;
  a.khr = (float)(1.0 / (double)kh);
  a.kwr = (float)(1.0 / (double)kw);
  const float mult = 1.0f / (float)a.size;
  a.inv = 1.0f / (1.0f / mult);
  return a;
}

static int32_t adaptive_value(int64_t sum, const adaptive_consts *a, int nchw_rule,
                              const cq_qpool_out *o) {
  if (nchw_rule) {
    return cq_qpool_clamp(cq_qpool_cvt((float)sum * a->khr * a->kwr), o->y_min, o->y_max);
  }
  return cq_qpool_clamp(cq_qpool_cvt((float)(int32_t)(sum - a->size * o->zp) * a->inv),
                        o->y_min - o->zp, o->y_max - o->zp) + o->zp;
}

/* Windows outermost, planes inside: each window's bounds and multipliers once per call. */
static void adaptive_nchw(cq_isa isa, int s8, size_t planes, int64_t H, int64_t W, int64_t OH,
                          int64_t OW, int nchw_rule, const cq_qpool_out *o, const uint8_t *x,
                          uint8_t *y) {
  const cq_qpool_kernels *k = cq_qpool_kernels_for(isa);
  const size_t in_plane = (size_t)(H * W), out_plane = (size_t)(OH * OW);
  for (int64_t oh = 0; oh < OH; oh++) {
    const int64_t h0 = adaptive_start(oh, H, OH), h1 = adaptive_end(oh, H, OH);
    for (int64_t ow = 0; ow < OW; ow++) {
      const int64_t w0 = adaptive_start(ow, W, OW), w1 = adaptive_end(ow, W, OW);
      const int64_t kh = h1 - h0, kw = w1 - w0;
      const adaptive_consts a = adaptive_constants(kh, kw);
      const uint8_t *corner = x + h0 * W + w0;
      uint8_t *out = y + oh * OW + ow;
      if (kh <= 0 || kw <= 0) {
        const uint8_t v = (uint8_t)adaptive_value(0, &a, nchw_rule, o);
        for (size_t c = 0; c < planes; c++) out[c * out_plane] = v;
      } else if (kw == W) { /* whole rows: one contiguous run */
        for (size_t c = 0; c < planes; c++) {
          const int64_t sum = k->rect_sum(corner + c * in_plane, (size_t)(kh * W), 1,
                                          (size_t)(kh * W), s8);
          out[c * out_plane] = (uint8_t)adaptive_value(sum, &a, nchw_rule, o);
        }
      } else {
        for (size_t c = 0; c < planes; c++) {
          const int64_t sum = k->rect_sum(corner + c * in_plane, (size_t)W, (size_t)kh,
                                          (size_t)kw, s8);
          out[c * out_plane] = (uint8_t)adaptive_value(sum, &a, nchw_rule, o);
        }
      }
    }
  }
}

void cq_qu8_adaptive_avgpool2d(cq_isa isa, size_t planes, int64_t in_h, int64_t in_w,
                               int64_t out_h, int64_t out_w, int nchw_rule, const cq_qpool_out *o,
                               const uint8_t *x, uint8_t *y) {
  adaptive_nchw(isa, 0, planes, in_h, in_w, out_h, out_w, nchw_rule, o, x, y);
}

void cq_qs8_adaptive_avgpool2d(cq_isa isa, size_t planes, int64_t in_h, int64_t in_w,
                               int64_t out_h, int64_t out_w, int nchw_rule, const cq_qpool_out *o,
                               const int8_t *x, int8_t *y) {
  adaptive_nchw(isa, 1, planes, in_h, in_w, out_h, out_w, nchw_rule, o, (const uint8_t *)x,
                (uint8_t *)y);
}

/* ---- the kernels of each ISA ------------------------------------------------------------------ */

#define CQ_QPOOL_TABLE(name, id)                                                                  \
  static const cq_qpool_kernels name = {                                                         \
      id, cq_qpool_max_rows__##name, cq_qpool_max_taps__##name, cq_qpool_pick2_bytes__##name,    \
      cq_qpool_max_2x2s2__##name,                                                                 \
      cq_qpool_sum_rows__##name, cq_qpool_sum_taps__##name, cq_qpool_pick2_i32__##name,          \
      cq_qpool_finish__##name, cq_qpool_rect_sum__##name};

CQ_QPOOL_TABLE(scalar, CQ_ISA_SCALAR)
#if CQ_ARCH_X86
CQ_QPOOL_TABLE(avx2, CQ_ISA_AVX2)
CQ_QPOOL_TABLE(avx512, CQ_ISA_AVX512VNNI)
#endif

const cq_qpool_kernels *cq_qpool_kernels_for(cq_isa isa) {
  switch (isa) {
#if CQ_ARCH_X86
    case CQ_ISA_AVX2: return &avx2;
    case CQ_ISA_AVX512VNNI:
    case CQ_ISA_AMX: return &avx512;
#endif
    default: return &scalar;
  }
}

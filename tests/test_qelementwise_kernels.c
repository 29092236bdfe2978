/* Elementwise and pooling kernels on quantized activations (src/kernels/qelementwise,
 * src/kernels/qpool).
 *
 * 1. The scalar kernels against naive references written here from torch-1.13-semantics.md 5.6 and
 *    5.7 (QNNPACK's add as a rounding of acc / 2^shift half away from zero in 64-bit integers,
 *    ATen's FMA as one rounding of a double sum, the pools as one loop per window), bit for bit.
 * 2. QNNPACK add with both scale ratios below 2^-10 (shift 32..35) against outputs recorded from
 *    PyTorch 1.13's qnnpack engine; elements whose fused (FMA) and plain dequantizations round to
 *    different bytes, placed on both sides of the split, on every ISA.
 * 3. Every vector ISA this CPU runs against the scalar kernels, byte for byte, over the cases that
 *    break vector code: lengths 0..200 (not multiples of the vector widths) and a few long ones,
 *    zero points 0/128/255 (quint8) and -128/0/127 (qint8), power-of-two scales (exact ties),
 *    relu on and off, every split between the fused and plain elements, pool windows with
 *    padding, stride, dilation, ceil_mode and kernels taller than the row groups, widths across
 *    the vector widths, channel counts 1..70; and each small pooling kernel directly.
 * ISAs the CPU lacks (or of the other architecture) are reported as skipped. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/cpu.h"
#include "cquant/cquant.h"
#include "kernels/qelementwise/qelementwise.h"
#include "kernels/qpool/qpool.h"

static uint64_t rng_state = 0x2545f4914f6cdd1dull;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}
static int rnd_in(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }
static float rnd_unit(void) { return (float)(rnd() & 0xffffff) / 16777216.0f; }

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  return p;
}

/* Bytes in one of a few distributions: uniform, near a zero point, extremes only. */
static void fill_bytes(uint8_t *p, size_t n) {
  const int mode = rnd_in(0, 3);
  for (size_t i = 0; i < n; i++) {
    switch (mode) {
      case 0: p[i] = (uint8_t)rnd(); break;
      case 1: p[i] = (uint8_t)rnd_in(120, 136); break;
      case 2: p[i] = rnd() % 2 ? 255 : 0; break;
      default: p[i] = (uint8_t)(rnd() % 2 ? rnd_in(0, 3) : rnd_in(124, 131)); break;
    }
  }
}

static int32_t zero_point(int s8) {
  static const int32_t u8[] = {0, 128, 255}, i8[] = {-128, 0, 127};
  const int k = rnd_in(0, 3);
  if (k == 3) return s8 ? rnd_in(-128, 127) : rnd_in(0, 255);
  return s8 ? i8[k] : u8[k];
}

/* Powers of two (exact ties after scaling), short decimals, arbitrary values. */
static float scale_value(void) {
  switch (rnd_in(0, 3)) {
    case 0: return ldexpf(1.0f, rnd_in(-10, 2));
    case 1: return (float)rnd_in(1, 1000) * 0.001f;
    case 2: return 0.0078125f * (float)rnd_in(1, 16);
    default: return 1e-4f + rnd_unit() * 0.2f;
  }
}

static int32_t byte_value(const void *p, size_t i, int s8) {
  return s8 ? (int32_t)((const int8_t *)p)[i] : (int32_t)((const uint8_t *)p)[i];
}

/* ---- naive references ------------------------------------------------------------------------- */

static int32_t clamp_i64(int64_t v, int64_t lo, int64_t hi) {
  return (int32_t)(v < lo ? lo : (v > hi ? hi : v));
}

/* QNNPACK add, shift <= 31: y = round_half_away_from_zero(acc / 2^shift) + zo, clamped. */
static uint8_t ref_qnnpack_add(int32_t qa, int32_t qb, float ra, float rb, int32_t za, int32_t zb,
                               int32_t zo, int relu) {
  int exponent;
  frexpf(ra > rb ? ra : rb, &exponent); /* max = f * 2^exponent, f in [0.5, 1) */
  const int shift = 21 - (exponent - 1);
  const int64_t ma = (int64_t)nearbyint(ldexp((double)ra, shift));
  const int64_t mb = (int64_t)nearbyint(ldexp((double)rb, shift));
  const int64_t acc = ma * (qa - za) + mb * (qb - zb);
  const int64_t y = (int64_t)round(ldexp((double)acc, -shift));
  return (uint8_t)clamp_i64(y + zo, relu ? zo : 0, 255);
}

/* x86's float -> int64 conversion of zp + rne(c * inv), clamped (quantize_val). */
static int32_t ref_quantize(float c, float inv, int32_t zp, int32_t lo, int32_t hi) {
  const float t = c * inv;
  const float v = (float)zp + (float)nearbyint((double)t);
  if (isnan(v) || v >= 9223372036854775808.0f || v < -9223372036854775808.0f) return lo;
  return clamp_i64((int64_t)v, lo, hi);
}

/* fma(s, q, f32(s * -z)): the product is exact in double and so is the sum (both are multiples of
 * s's last bit and below 2^34 of them), so one rounding to float remains. */
static float ref_dequant(int32_t q, float s, int32_t z, int fused) {
  if (fused) {
    const float premul = s * -(float)z;
    return (float)((double)s * (double)q + (double)premul);
  }
  return ((float)q - (float)z) * s;
}

static int32_t ref_aten_add(int32_t qa, int32_t qb, float sa, int32_t za, float sb, int32_t zb,
                            float so, int32_t zo, int relu, int fused, int s8) {
  float c = ref_dequant(qa, sa, za, fused) + ref_dequant(qb, sb, zb, fused);
  if (relu && !(c > 0.0f)) c = 0.0f;
  return ref_quantize(c, 1.0f / so, zo, s8 ? -128 : 0, s8 ? 127 : 255);
}

/* ATen's pooling_output_shape. */
static int64_t out_size(int64_t in, int64_t k, int64_t pad, int64_t stride, int64_t dil, int ceil) {
  const int64_t num = in + 2 * pad - dil * (k - 1) - 1 + (ceil ? stride - 1 : 0);
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil && (out - 1) * stride >= in + pad) out--;
  return out;
}

/* One loop per window: native taps inside the image, or QNNPACK's clamped taps. */
static void ref_maxpool(int s8, int clamp_taps, size_t planes, const cq_qpool2d_geom *g,
                        const void *x, void *y) {
  const int64_t H = g->in_h, W = g->in_w;
  for (size_t c = 0; c < planes; c++) {
    for (int64_t oh = 0; oh < g->out_h; oh++) {
      for (int64_t ow = 0; ow < g->out_w; ow++) {
        int32_t best = s8 ? -128 : 0;
        for (int64_t i = 0; i < g->kernel[0]; i++) {
          int64_t ih = oh * g->stride[0] - g->padding[0] + i * g->dilation[0];
          if (clamp_taps) ih = ih < 0 ? 0 : (ih >= H ? H - 1 : ih);
          if (ih < 0 || ih >= H) continue;
          for (int64_t j = 0; j < g->kernel[1]; j++) {
            int64_t iw = ow * g->stride[1] - g->padding[1] + j * g->dilation[1];
            if (clamp_taps) iw = iw < 0 ? 0 : (iw >= W ? W - 1 : iw);
            if (iw < 0 || iw >= W) continue;
            const int32_t v = byte_value(x, c * (size_t)(H * W) + (size_t)(ih * W + iw), s8);
            best = v > best ? v : best;
          }
        }
        ((uint8_t *)y)[(c * (size_t)g->out_h + (size_t)oh) * (size_t)g->out_w + (size_t)ow] =
            (uint8_t)best;
      }
    }
  }
}

static void ref_avgpool(int s8, size_t planes, const cq_qpool2d_geom *g,
                        const cq_qavgpool_params *p, const void *x, void *y) {
  const int64_t H = g->in_h, W = g->in_w;
  const int32_t zp = p->out.zp;
  for (size_t c = 0; c < planes; c++) {
    for (int64_t oh = 0; oh < g->out_h; oh++) {
      for (int64_t ow = 0; ow < g->out_w; ow++) {
        int64_t h0 = oh * g->stride[0] - g->padding[0], w0 = ow * g->stride[1] - g->padding[1];
        int64_t h1 = h0 + g->kernel[0], w1 = w0 + g->kernel[1];
        if (h1 > H + g->padding[0]) h1 = H + g->padding[0];
        if (w1 > W + g->padding[1]) w1 = W + g->padding[1];
        const int64_t pool_size = (h1 - h0) * (w1 - w0);
        h0 = h0 < 0 ? 0 : h0;
        w0 = w0 < 0 ? 0 : w0;
        h1 = h1 > H ? H : h1;
        w1 = w1 > W ? W : w1;
        int64_t sum = 0, taps = 0;
        for (int64_t ih = h0; ih < h1; ih++) {
          for (int64_t iw = w0; iw < w1; iw++) {
            sum += byte_value(x, c * (size_t)(H * W) + (size_t)(ih * W + iw), s8);
            taps++;
          }
        }
        /* ATen multiplies the clipped extents even when one is negative; QNNPACK counts taps */
        const int64_t size = p->fixed ? taps : (h1 - h0) * (w1 - w0);
        const int32_t acc = (int32_t)(sum - size * zp);
        float mult = p->fixed_mult;
        if (!p->fixed) {
          const int64_t divisor = p->divisor_override ? p->divisor_override
                                                      : (p->count_include_pad ? pool_size : size);
          mult = (float)(1.0 / (double)divisor);
        }
        double r;
        int64_t v;
        if (p->out.zp_before_rounding) {
          r = nearbyint((double)((float)acc * mult + (float)zp));
          v = r >= -2147483648.0 && r < 2147483648.0 ? (int64_t)r : INT32_MIN;
        } else {
          r = nearbyint((double)((float)acc * mult));
          v = (r >= -2147483648.0 && r < 2147483648.0 ? (int64_t)r : INT32_MIN) + zp;
        }
        ((uint8_t *)y)[(c * (size_t)g->out_h + (size_t)oh) * (size_t)g->out_w + (size_t)ow] =
            (uint8_t)clamp_i64(v, p->out.y_min, p->out.y_max);
      }
    }
  }
}

static void ref_adaptive(int s8, size_t planes, int64_t H, int64_t W, int64_t OH, int64_t OW,
                         int nchw_rule, const cq_qpool_out *o, const void *x, void *y) {
  for (size_t c = 0; c < planes; c++) {
    for (int64_t oh = 0; oh < OH; oh++) {
      const int64_t h0 = (int64_t)floorf((float)(oh * H) / (float)OH);
      const int64_t h1 = (int64_t)ceilf((float)((oh + 1) * H) / (float)OH);
      for (int64_t ow = 0; ow < OW; ow++) {
        const int64_t w0 = (int64_t)floorf((float)(ow * W) / (float)OW);
        const int64_t w1 = (int64_t)ceilf((float)((ow + 1) * W) / (float)OW);
        int64_t sum = 0;
        for (int64_t ih = h0; ih < h1; ih++) {
          for (int64_t iw = w0; iw < w1; iw++) {
            sum += byte_value(x, c * (size_t)(H * W) + (size_t)(ih * W + iw), s8);
          }
        }
        const int64_t kh = h1 - h0, kw = w1 - w0, n = kh * kw;
        int64_t v;
        if (nchw_rule) {
          const float f = (float)sum * (float)(1.0 / (double)kh) * (float)(1.0 / (double)kw);
          v = (int64_t)nearbyint((double)f);
        } else {
          const float inv = 1.0f / (1.0f / (1.0f / (float)n));
          v = (int64_t)nearbyint((double)((float)(int32_t)(sum - n * o->zp) * inv)) + o->zp;
        }
        ((uint8_t *)y)[(c * (size_t)OH + (size_t)oh) * (size_t)OW + (size_t)ow] =
            (uint8_t)clamp_i64(v, o->y_min, o->y_max);
      }
    }
  }
}

/* ---- random cases ----------------------------------------------------------------------------- */

typedef struct add_case {
  size_t n, fused;
  int s8, relu;
  float sa, sb, so;
  int32_t za, zb, zo;
  uint8_t *a, *b;
} add_case;

static size_t pick_length(int i) {
  if (i <= 200) return (size_t)i;
  static const size_t longer[] = {255, 256, 257, 1000, 4103};
  return longer[i % 5];
}

static void make_add_case(add_case *c, size_t n, int s8) {
  c->n = n;
  c->s8 = s8;
  c->relu = rnd_in(0, 1);
  switch (rnd_in(0, 3)) {
    case 0: c->fused = 0; break;
    case 1: c->fused = n; break;
    case 2: c->fused = n - n % 64; break;
    default: c->fused = n ? rnd() % (n + 1) : 0; break;
  }
  c->sa = scale_value();
  c->sb = rnd_in(0, 3) == 0 ? c->sa : scale_value();
  c->so = rnd_in(0, 3) == 0 ? c->sa * (float)rnd_in(1, 4) : scale_value();
  c->za = zero_point(s8);
  c->zb = zero_point(s8);
  c->zo = zero_point(s8);
  c->a = xmalloc(n);
  c->b = xmalloc(n);
  fill_bytes(c->a, n);
  fill_bytes(c->b, n);
}

static void free_add_case(add_case *c) {
  free(c->a);
  free(c->b);
}

static void aten_params(const add_case *c, cq_qadd_aten_params *p) {
  cq_qdequant_params_init(c->sa, c->za, &p->a);
  cq_qdequant_params_init(c->sb, c->zb, &p->b);
  p->y.inv_scale = 1.0f / c->so;
  p->y.zp = c->zo;
  p->y.y_min = c->s8 ? -128 : 0;
  p->y.y_max = c->s8 ? 127 : 255;
  p->relu = c->relu;
}

/* QNNPACK ratios in [2^-14, 2^8): mostly ordinary, some at the ends (shift 14..35). */
static void qnnpack_ratios(float *ra, float *rb) {
  switch (rnd_in(0, 3)) {
    case 0:
      *ra = ldexpf(1.0f + rnd_unit(), rnd_in(-14, 7));
      *rb = ldexpf(1.0f + rnd_unit(), rnd_in(-14, 7));
      break;
    case 1:
      *ra = ldexpf(1.0f, rnd_in(-3, 2));
      *rb = ldexpf(1.0f, rnd_in(-3, 2));
      break;
    default:
      *ra = 0.05f + rnd_unit() * 2.0f;
      *rb = 0.05f + rnd_unit() * 2.0f;
      break;
  }
  *ra = *ra >= 0x1.0p+8f ? 0x1.fffffep+7f : *ra;
  *rb = *rb >= 0x1.0p+8f ? 0x1.fffffep+7f : *rb;
}

typedef struct pool_case {
  cq_qpool2d_geom g;
  size_t planes;
  int s8, clamp_taps, ceil_mode;
  cq_qavgpool_params avg;
  uint8_t *x;
} pool_case;

/* A random geometry (avg: dilation 1); 0 when the output would be empty. */
static int make_pool_case(pool_case *c, int avg) {
  memset(c, 0, sizeof *c);
  c->s8 = rnd_in(0, 1);
  c->planes = (size_t)rnd_in(1, 70);
  cq_qpool2d_geom *g = &c->g;
  g->in_h = rnd_in(1, 12);
  g->in_w = rnd_in(0, 3) == 0 ? rnd_in(60, 150) : rnd_in(1, 40);
  if (rnd_in(0, 7) == 0) c->planes = (size_t)rnd_in(1, 4);
  for (int d = 0; d < 2; d++) {
    g->kernel[d] = rnd_in(0, 4) == 0 ? rnd_in(6, 12) : rnd_in(1, 5);
    g->stride[d] = rnd_in(0, 2) == 0 ? g->kernel[d] : rnd_in(1, 4);
    g->padding[d] = rnd_in(0, 1) ? 0 : rnd_in(0, (int)g->kernel[d] / 2 + (rnd_in(0, 8) == 0));
    g->dilation[d] = avg || rnd_in(0, 3) ? 1 : rnd_in(2, 3);
  }
  c->ceil_mode = rnd_in(0, 2) == 0;
  if (!avg && rnd_in(0, 5) == 0) { /* MaxPool2d(2): its own kernel when no padding is involved */
    for (int d = 0; d < 2; d++) {
      g->kernel[d] = g->stride[d] = 2;
      g->padding[d] = rnd_in(0, 4) == 0;
      g->dilation[d] = 1;
    }
  }
  c->clamp_taps = !c->s8 && !c->ceil_mode && rnd_in(0, 1);
  g->out_h = out_size(g->in_h, g->kernel[0], g->padding[0], g->stride[0], g->dilation[0],
                      c->ceil_mode);
  g->out_w = out_size(g->in_w, g->kernel[1], g->padding[1], g->stride[1], g->dilation[1],
                      c->ceil_mode);
  if (g->out_h < 1 || g->out_w < 1) return 0;
  c->avg.out.zp = zero_point(c->s8);
  c->avg.out.y_min = c->s8 ? -128 : 0;
  c->avg.out.y_max = c->s8 ? 127 : 255;
  c->avg.out.zp_before_rounding = rnd_in(0, 1);
  c->avg.fixed = !c->s8 && rnd_in(0, 2) == 0;
  if (c->avg.fixed) {
    const float s = scale_value();
    c->avg.fixed_mult = s / (s * (float)(g->kernel[0] * g->kernel[1]));
    c->avg.out.zp_before_rounding = 0;
  }
  c->avg.count_include_pad = rnd_in(0, 1);
  c->avg.divisor_override = rnd_in(0, 4) == 0 ? rnd_in(-3, 10) : 0;
  const size_t n = c->planes * (size_t)(g->in_h * g->in_w);
  c->x = xmalloc(n);
  fill_bytes(c->x, n);
  return 1;
}

static size_t pool_out_bytes(const pool_case *c) {
  return c->planes * (size_t)(c->g.out_h * c->g.out_w);
}

static void run_maxpool(cq_isa isa, const pool_case *c, uint8_t *y) {
  void *scratch = xmalloc(cq_qpool_max2d_scratch(&c->g));
  if (c->s8) {
    cq_qs8_maxpool2d_nchw(isa, c->clamp_taps, c->planes, &c->g, (const int8_t *)c->x,
                          (int8_t *)y, scratch);
  } else {
    cq_qu8_maxpool2d_nchw(isa, c->clamp_taps, c->planes, &c->g, c->x, y, scratch);
  }
  free(scratch);
}

static void run_avgpool(cq_isa isa, const pool_case *c, uint8_t *y) {
  void *scratch = xmalloc(cq_qpool_avg2d_scratch(&c->g));
  if (c->s8) {
    cq_qs8_avgpool2d_nchw(isa, c->planes, &c->g, &c->avg, (const int8_t *)c->x, (int8_t *)y,
                          scratch);
  } else {
    cq_qu8_avgpool2d_nchw(isa, c->planes, &c->g, &c->avg, c->x, y, scratch);
  }
  free(scratch);
}

static void run_adaptive(cq_isa isa, const pool_case *c, int64_t oh, int64_t ow, int nchw_rule,
                         uint8_t *y) {
  if (c->s8) {
    cq_qs8_adaptive_avgpool2d(isa, c->planes, c->g.in_h, c->g.in_w, oh, ow, nchw_rule,
                              &c->avg.out, (const int8_t *)c->x, (int8_t *)y);
  } else {
    cq_qu8_adaptive_avgpool2d(isa, c->planes, c->g.in_h, c->g.in_w, oh, ow, nchw_rule,
                              &c->avg.out, c->x, y);
  }
}

static void adaptive_size(const pool_case *c, int64_t *oh, int64_t *ow) {
  switch (rnd_in(0, 3)) {
    case 0: *oh = *ow = 1; break;
    case 1: *oh = c->g.in_h; *ow = c->g.in_w; break;
    default: *oh = rnd_in(1, 9); *ow = rnd_in(1, 9); break;
  }
}

/* NHWC max pool reference: the NCHW reference on a transposed copy. */
static void ref_maxpool_nhwc(int clamp_taps, size_t batch, size_t C, const cq_qpool2d_geom *g,
                             const uint8_t *x, uint8_t *y) {
  const size_t hw = (size_t)(g->in_h * g->in_w), ohw = (size_t)(g->out_h * g->out_w);
  uint8_t *planes = xmalloc(batch * C * hw), *out = xmalloc(batch * C * ohw);
  for (size_t b = 0; b < batch; b++) {
    for (size_t p = 0; p < hw; p++) {
      for (size_t c = 0; c < C; c++) planes[(b * C + c) * hw + p] = x[(b * hw + p) * C + c];
    }
  }
  ref_maxpool(0, clamp_taps, batch * C, g, planes, out);
  for (size_t b = 0; b < batch; b++) {
    for (size_t p = 0; p < ohw; p++) {
      for (size_t c = 0; c < C; c++) y[(b * ohw + p) * C + c] = out[(b * C + c) * ohw + p];
    }
  }
  free(planes);
  free(out);
}

/* ---- 1. scalar kernels against the references ------------------------------------------------- */

static void test_scalar_against_references(void) {
  const cq_qelementwise_kernels *k = cq_qelementwise_kernels_for(CQ_ISA_SCALAR);
  long bad_add = 0, bad_qnn = 0, bad_req = 0, elems = 0;
  for (int i = 0; i < 600; i++) {
    const size_t n = pick_length(i % 206);
    const int s8 = i % 2;
    add_case c;
    make_add_case(&c, n, s8);
    uint8_t *got = xmalloc(n);
    cq_qadd_aten_params p;
    aten_params(&c, &p);
    if (s8) {
      k->qs8_vadd_aten(n, c.fused, (const int8_t *)c.a, (const int8_t *)c.b, &p, (int8_t *)got);
    } else {
      k->qu8_vadd_aten(n, c.fused, c.a, c.b, &p, got);
    }
    for (size_t j = 0; j < n; j++) {
      const int32_t want = ref_aten_add(byte_value(c.a, j, s8), byte_value(c.b, j, s8), c.sa,
                                        c.za, c.sb, c.zb, c.so, c.zo, c.relu, j < c.fused, s8);
      bad_add += byte_value(got, j, s8) != want;
    }
    /* requantization of input a to the output qparams (cat) */
    if (s8) {
      k->qs8_vrequant(n, c.fused, (const int8_t *)c.a, &p.a, &p.y, (int8_t *)got);
    } else {
      k->qu8_vrequant(n, c.fused, c.a, &p.a, &p.y, got);
    }
    for (size_t j = 0; j < n; j++) {
      const float d = ref_dequant(byte_value(c.a, j, s8), c.sa, c.za, j < c.fused);
      const int32_t want = ref_quantize(d, 1.0f / c.so, c.zo, s8 ? -128 : 0, s8 ? 127 : 255);
      bad_req += byte_value(got, j, s8) != want;
    }
    if (!s8) {
      float ra, rb;
      qnnpack_ratios(&ra, &rb);
      const float mx = ra > rb ? ra : rb;
      if (mx >= 0x1.0p-10f) { /* shift <= 31: the exact rounding (section 2 covers the rest) */
        cq_qadd_qnnpack_params q;
        const int32_t za = zero_point(0), zb = zero_point(0), zo = zero_point(0);
        cq_qadd_qnnpack_params_init(ra, rb, za, zb, zo, c.relu, &q);
        k->qu8_vadd_qnnpack(n, c.a, c.b, &q, got);
        for (size_t j = 0; j < n; j++) {
          bad_qnn += got[j] != ref_qnnpack_add(c.a[j], c.b[j], ra, rb, za, zb, zo, c.relu);
        }
      }
    }
    elems += (long)n;
    free(got);
    free_add_case(&c);
  }
  CHECK_MSG(bad_add == 0, "scalar ATen add differs from the reference in %ld elements", bad_add);
  CHECK_MSG(bad_req == 0, "scalar requantize differs from the reference in %ld elements", bad_req);
  CHECK_MSG(bad_qnn == 0, "scalar QNNPACK add differs from the reference in %ld elements", bad_qnn);
  printf("scalar add (ATen, QNNPACK) and requantize: %ld elements match the references\n", elems);

  long cases = 0, bad_max = 0, bad_avg = 0, bad_ada = 0;
  while (cases < 400) {
    pool_case c;
    if (!make_pool_case(&c, cases % 2)) continue;
    const size_t n = pool_out_bytes(&c);
    uint8_t *want = xmalloc(n), *got = xmalloc(n);
    if (cases % 2 == 0) {
      ref_maxpool(c.s8, c.clamp_taps, c.planes, &c.g, c.x, want);
      run_maxpool(CQ_ISA_SCALAR, &c, got);
      bad_max += memcmp(want, got, n) != 0;
    } else {
      ref_avgpool(c.s8, c.planes, &c.g, &c.avg, c.x, want);
      run_avgpool(CQ_ISA_SCALAR, &c, got);
      bad_avg += memcmp(want, got, n) != 0;
    }
    free(want);
    free(got);
    int64_t oh, ow;
    adaptive_size(&c, &oh, &ow);
    const size_t an = c.planes * (size_t)(oh * ow);
    want = xmalloc(an);
    got = xmalloc(an);
    const int rule = rnd_in(0, 1);
    ref_adaptive(c.s8, c.planes, c.g.in_h, c.g.in_w, oh, ow, rule, &c.avg.out, c.x, want);
    run_adaptive(CQ_ISA_SCALAR, &c, oh, ow, rule, got);
    bad_ada += memcmp(want, got, an) != 0;
    free(want);
    free(got);
    free(c.x);
    cases++;
  }
  CHECK_MSG(bad_max == 0, "scalar max pool differs from the reference in %ld cases", bad_max);
  CHECK_MSG(bad_avg == 0, "scalar avg pool differs from the reference in %ld cases", bad_avg);
  CHECK_MSG(bad_ada == 0, "scalar adaptive avg pool differs from the reference in %ld cases",
            bad_ada);
  printf("scalar max / avg pools and adaptive avg pool: %ld geometries match the references\n",
         cases);
}

/* ---- 2. QNNPACK add with shift > 31, as PyTorch 1.13 computes it ------------------------------ */

static void test_qnnpack_large_shift(void) {
  /* torch.ops.quantized.add under the qnnpack engine, qa = 0..255, qb = 255 - qa, output scale 1;
   * outputs as (value, count) runs */
  static const struct {
    float sa, sb;
    int32_t za, zb, zo;
    int32_t runs[2][2];
  } cases[] = {
      {0.0003662109375f, 0.0001220703125f, 100, 30, 7, {{6, 38}, {7, 218}}},   /* shift 33 */
      {0.0001f, 0.00007f, 200, 3, 128, {{127, 79}, {128, 177}}},               /* shift 35 */
      {0.0005f, 0.0003f, 0, 255, 0, {{0, 256}, {0, 0}}},                       /* shift 32 */
  };
  uint8_t a[256], b[256], want[256], got[256];
  for (int i = 0; i < 256; i++) {
    a[i] = (uint8_t)i;
    b[i] = (uint8_t)(255 - i);
  }
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int j = 0;
    for (int r = 0; r < 2; r++) {
      for (int t = 0; t < cases[c].runs[r][1]; t++) want[j++] = (uint8_t)cases[c].runs[r][0];
    }
    cq_qadd_qnnpack_params p;
    cq_qadd_qnnpack_params_init(cases[c].sa / 1.0f, cases[c].sb / 1.0f, cases[c].za, cases[c].zb,
                                cases[c].zo, 0, &p);
    for (int isa = 0; isa < CQ_ISA_COUNT; isa++) {
      if (!cq_isa_supported((cq_isa)isa)) continue;
      memset(got, 0xa5, sizeof got);
      cq_qelementwise_kernels_for((cq_isa)isa)->qu8_vadd_qnnpack(256, a, b, &p, got);
      CHECK_MSG(memcmp(want, got, sizeof got) == 0, "QNNPACK add case %zu (%s) differs from "
                "PyTorch", c, cq_isa_name((cq_isa)isa));
    }
  }
  printf("QNNPACK add with shifts 32..35: PyTorch's recorded outputs on every ISA\n");
}

/* ---- fused vs plain dequantization at rounding ties ---------------------------------------------
 * The two dequantizations differ in the last bit of the float now and then, which shows in the
 * output only when the product with 1/scale straddles a rounding boundary. These cases are built
 * to straddle one: an element whose fused and plain forms quantize differently, so any kernel
 * that puts the split between them in the wrong place (or uses the wrong form) gives other
 * bytes. */

typedef struct tie_case {
  int32_t q, z, zp;
  float s, inv;
  int32_t y_fused, y_plain;
} tie_case;

static int find_tie_case(int s8, tie_case *t) {
  for (int attempt = 0; attempt < 100000; attempt++) {
    const float s = 1e-3f + rnd_unit() * 0.1f;
    const int32_t z = s8 ? rnd_in(-128, 127) : rnd_in(0, 255);
    const int32_t q = s8 ? rnd_in(-128, 127) : rnd_in(0, 255);
    const float df = ref_dequant(q, s, z, 1), dp = ref_dequant(q, s, z, 0);
    if (df == dp || dp == 0.0f) continue;
    const int32_t zp = dp < 0.0f ? (s8 ? 127 : 255) : (s8 ? -128 : 0);
    const float inv0 = ((float)rnd_in(0, 100) + 0.5f) / fabsf(dp);
    float inv = inv0;
    for (int step = 0; step < 16; step++) {
      const int32_t yf = ref_quantize(df, inv, zp, s8 ? -128 : 0, s8 ? 127 : 255);
      const int32_t yp = ref_quantize(dp, inv, zp, s8 ? -128 : 0, s8 ? 127 : 255);
      if (yf != yp) {
        *t = (tie_case){q, z, zp, s, inv, yf, yp};
        return 1;
      }
      inv = nextafterf(inv, step % 2 ? 0.0f : 1e30f);
    }
  }
  return 0;
}

static void test_fused_split_ties(void) {
  enum { N = 150 };
  long cases = 0, bad_ref = 0, bad_isa = 0;
  for (int i = 0; i < 200; i++) {
    const int s8 = i % 2;
    tie_case t;
    if (!find_tie_case(s8, &t)) continue;
    uint8_t x[N], zeros[N], want[N], got[N];
    for (int j = 0; j < N; j++) x[j] = (uint8_t)t.q;
    memset(zeros, 0, sizeof zeros);
    const size_t n = (size_t)rnd_in(1, N), fused = (size_t)rnd_in(0, (int)n);
    cq_qadd_aten_params p;
    cq_qdequant_params_init(t.s, t.z, &p.a);
    cq_qdequant_params_init(0.5f, 0, &p.b); /* b = 0 with zero point 0 adds +0 either way */
    p.y.inv_scale = t.inv;
    p.y.zp = t.zp;
    p.y.y_min = s8 ? -128 : 0;
    p.y.y_max = s8 ? 127 : 255;
    p.relu = 0;
    for (int isa = 0; isa < CQ_ISA_COUNT; isa++) {
      if (!cq_isa_supported((cq_isa)isa)) continue;
      const cq_qelementwise_kernels *k = cq_qelementwise_kernels_for((cq_isa)isa);
      for (int op = 0; op < 2; op++) {
        memset(got, 0xa5, sizeof got);
        if (op == 0 && s8) {
          k->qs8_vrequant(n, fused, (const int8_t *)x, &p.a, &p.y, (int8_t *)got);
        } else if (op == 0) {
          k->qu8_vrequant(n, fused, x, &p.a, &p.y, got);
        } else if (s8) {
          k->qs8_vadd_aten(n, fused, (const int8_t *)x, (const int8_t *)zeros, &p,
                           (int8_t *)got);
        } else {
          k->qu8_vadd_aten(n, fused, x, zeros, &p, got);
        }
        for (size_t j = 0; j < n; j++) want[j] = (uint8_t)(j < fused ? t.y_fused : t.y_plain);
        if (isa == CQ_ISA_SCALAR) {
          bad_ref += memcmp(want, got, n) != 0;
        } else {
          bad_isa += memcmp(want, got, n) != 0;
        }
      }
    }
    cases++;
  }
  CHECK_MSG(cases >= 100, "only %ld tie cases found", cases);
  CHECK_MSG(bad_ref == 0, "scalar kernels put the fused/plain split wrong in %ld cases", bad_ref);
  CHECK_MSG(bad_isa == 0, "vector kernels put the fused/plain split wrong in %ld cases", bad_isa);
  printf("fused/plain split at rounding ties: %ld cases, requantize and add, every ISA here\n",
         cases);
}

/* ---- 3. every ISA against the scalar kernels -------------------------------------------------- */

static long compare(const void *want, const void *got, size_t n) {
  return memcmp(want, got, n) != 0;
}

static void test_elementwise_isa(cq_isa isa) {
  const cq_qelementwise_kernels *s = cq_qelementwise_kernels_for(CQ_ISA_SCALAR);
  const cq_qelementwise_kernels *v = cq_qelementwise_kernels_for(isa);
  CHECK_MSG(v->isa != CQ_ISA_SCALAR, "no elementwise kernels of its own for %s", cq_isa_name(isa));
  long bad[5] = {0}, cases = 0;
  for (int i = 0; i < 206 * 4; i++) {
    const size_t n = pick_length(i % 206);
    const int s8 = (i / 206) % 2;
    add_case c;
    make_add_case(&c, n, s8);
    uint8_t *want = xmalloc(n), *got = xmalloc(n);
    /* clamp: relu's (zp, max), random bounds, crossed bounds */
    int32_t lo = c.za, hi = s8 ? 127 : 255;
    if (i % 3 == 1) {
      lo = zero_point(s8);
      hi = zero_point(s8);
    }
    if (s8) {
      s->qs8_vclamp(n, (const int8_t *)c.a, (int8_t)lo, (int8_t)hi, (int8_t *)want);
      v->qs8_vclamp(n, (const int8_t *)c.a, (int8_t)lo, (int8_t)hi, (int8_t *)got);
    } else {
      s->qu8_vclamp(n, c.a, (uint8_t)lo, (uint8_t)hi, want);
      v->qu8_vclamp(n, c.a, (uint8_t)lo, (uint8_t)hi, got);
    }
    bad[0] += compare(want, got, n);
    cq_qadd_aten_params p;
    aten_params(&c, &p);
    if (s8) {
      s->qs8_vadd_aten(n, c.fused, (const int8_t *)c.a, (const int8_t *)c.b, &p, (int8_t *)want);
      v->qs8_vadd_aten(n, c.fused, (const int8_t *)c.a, (const int8_t *)c.b, &p, (int8_t *)got);
      bad[1] += compare(want, got, n);
      s->qs8_vrequant(n, c.fused, (const int8_t *)c.a, &p.a, &p.y, (int8_t *)want);
      v->qs8_vrequant(n, c.fused, (const int8_t *)c.a, &p.a, &p.y, (int8_t *)got);
      bad[2] += compare(want, got, n);
    } else {
      s->qu8_vadd_aten(n, c.fused, c.a, c.b, &p, want);
      v->qu8_vadd_aten(n, c.fused, c.a, c.b, &p, got);
      bad[1] += compare(want, got, n);
      s->qu8_vrequant(n, c.fused, c.a, &p.a, &p.y, want);
      v->qu8_vrequant(n, c.fused, c.a, &p.a, &p.y, got);
      bad[2] += compare(want, got, n);
      float ra, rb;
      qnnpack_ratios(&ra, &rb);
      cq_qadd_qnnpack_params q;
      cq_qadd_qnnpack_params_init(ra, rb, c.za, c.zb, c.zo, c.relu, &q);
      s->qu8_vadd_qnnpack(n, c.a, c.b, &q, want);
      v->qu8_vadd_qnnpack(n, c.a, c.b, &q, got);
      bad[3] += compare(want, got, n);
    }
    /* in place (y == x) */
    if (!s8 && n) {
      memcpy(got, c.a, n);
      v->qu8_vrequant(n, c.fused, got, &p.a, &p.y, got);
      s->qu8_vrequant(n, c.fused, c.a, &p.a, &p.y, want);
      bad[4] += compare(want, got, n);
    }
    free(want);
    free(got);
    free_add_case(&c);
    cases++;
  }
  /* saturation: scales that send the float results past the int64 range (and to inf) */
  for (int i = 0; i < 64; i++) {
    const size_t n = (size_t)rnd_in(1, 100);
    add_case c;
    make_add_case(&c, n, i % 2);
    c.so = i % 4 < 2 ? 1e-30f : 1e-45f; /* 1e-45 is denormal: 1/so is inf */
    c.sa = 1e10f;
    uint8_t *want = xmalloc(n), *got = xmalloc(n);
    cq_qadd_aten_params p;
    aten_params(&c, &p);
    if (c.s8) {
      s->qs8_vadd_aten(n, c.fused, (const int8_t *)c.a, (const int8_t *)c.b, &p, (int8_t *)want);
      v->qs8_vadd_aten(n, c.fused, (const int8_t *)c.a, (const int8_t *)c.b, &p, (int8_t *)got);
    } else {
      s->qu8_vadd_aten(n, c.fused, c.a, c.b, &p, want);
      v->qu8_vadd_aten(n, c.fused, c.a, c.b, &p, got);
    }
    bad[1] += compare(want, got, n);
    free(want);
    free(got);
    free_add_case(&c);
    cases++;
  }
  CHECK_MSG(bad[0] == 0, "%s clamp differs from scalar in %ld cases", cq_isa_name(isa), bad[0]);
  CHECK_MSG(bad[1] == 0, "%s ATen add differs from scalar in %ld cases", cq_isa_name(isa), bad[1]);
  CHECK_MSG(bad[2] == 0, "%s requantize differs from scalar in %ld cases", cq_isa_name(isa),
            bad[2]);
  CHECK_MSG(bad[3] == 0, "%s QNNPACK add differs from scalar in %ld cases", cq_isa_name(isa),
            bad[3]);
  CHECK_MSG(bad[4] == 0, "%s in-place requantize differs from scalar in %ld cases",
            cq_isa_name(isa), bad[4]);
  printf("%s clamp, add (ATen, QNNPACK), requantize: %ld cases bit-exact with scalar\n",
         cq_isa_name(isa), cases);
}

static void test_pool_ukernels_isa(cq_isa isa) {
  const cq_qpool_kernels *s = cq_qpool_kernels_for(CQ_ISA_SCALAR), *v = cq_qpool_kernels_for(isa);
  CHECK_MSG(v->isa != CQ_ISA_SCALAR, "no pooling kernels of its own for %s", cq_isa_name(isa));
  enum { MAXN = 210, MAXK = 12 };
  long bad = 0, cases = 0;
  for (size_t n = 0; n <= 200; n++) {
    for (int rep = 0; rep < 2; rep++) {
      const int s8 = rep;
      const size_t k = (size_t)rnd_in(1, MAXK), d = (size_t)rnd_in(1, 3);
      const size_t span = n + (k - 1) * d;
      uint8_t *t = xmalloc(span), *rows_mem = xmalloc(8 * (n ? n : 1));
      int32_t *ti = xmalloc(sizeof(int32_t) * (n + k));
      uint8_t want[MAXN], got[MAXN];
      int32_t wi[MAXN], gi[MAXN];
      fill_bytes(t, span);
      fill_bytes(rows_mem, 8 * (n ? n : 1));
      for (size_t i = 0; i < n + k; i++) ti[i] = (int32_t)(rnd() % 20001) - 10000;
      const void *rows[8];
      const size_t nr = (size_t)rnd_in(1, 8);
      for (size_t r = 0; r < nr; r++) rows[r] = rows_mem + r * n;
      const int acc = rnd_in(0, 1);

      fill_bytes(want, n);
      memcpy(got, want, n);
      s->max_rows(nr, rows, n, acc, s8, want);
      v->max_rows(nr, rows, n, acc, s8, got);
      bad += compare(want, got, n);

      /* up to 4 output rows from input rows of n bytes (2 input rows each) */
      const size_t out_rows = (size_t)rnd_in(1, 4), out_n = n / 2;
      uint8_t want4[4 * MAXN], got4[4 * MAXN];
      s->max_2x2s2(out_rows, out_n, rows_mem, n, 2 * n, s8, want4, out_n);
      v->max_2x2s2(out_rows, out_n, rows_mem, n, 2 * n, s8, got4, out_n);
      bad += compare(want4, got4, out_rows * out_n);

      s->max_taps(n, k, d, t, s8, want);
      v->max_taps(n, k, d, t, s8, got);
      bad += compare(want, got, n);

      const size_t half = (span + 1) / 2; /* t holds 2 half - 1 bytes */
      s->pick2_bytes(half, t, want);
      v->pick2_bytes(half, t, got);
      bad += compare(want, got, half);

      for (size_t i = 0; i < n; i++) wi[i] = gi[i] = (int32_t)rnd();
      s->sum_rows(nr, rows, n, acc, s8, wi);
      v->sum_rows(nr, rows, n, acc, s8, gi);
      bad += compare(wi, gi, n * sizeof(int32_t));

      s->sum_taps(n, k, ti, wi);
      v->sum_taps(n, k, ti, gi);
      bad += compare(wi, gi, n * sizeof(int32_t));

      const size_t ihalf = (n + k + 1) / 2;
      s->pick2_i32(ihalf, ti, wi);
      v->pick2_i32(ihalf, ti, gi);
      bad += compare(wi, gi, ihalf * sizeof(int32_t));

      cq_qpool_out o = {zero_point(s8), s8 ? -128 : 0, s8 ? 127 : 255, rnd_in(0, 1)};
      static const float mults[] = {1.0f / 9.0f, 0.25f, 0.5f, 1.0f / 3.0f, -0.5f, 1e12f,
                                    __builtin_inff(), 1.0f / 7.0f};
      const float mult = mults[rnd() % 8];
      const int32_t bias = rnd_in(0, 7) == 0 ? INT32_MIN + 5 : rnd_in(-3000, 3000);
      s->finish(n, ti, bias, mult, &o, s8, want);
      v->finish(n, ti, bias, mult, &o, s8, got);
      bad += compare(want, got, n);

      if (n) {
        const size_t rows_n = (size_t)rnd_in(1, 8), cols = (size_t)rnd_in(1, (int)n);
        const uint8_t *base = rows_mem;
        const size_t ld = n;
        const int64_t ws = s->rect_sum(base, ld, rows_n, cols, s8);
        const int64_t gs = v->rect_sum(base, ld, rows_n, cols, s8);
        bad += ws != gs;
      }
      free(t);
      free(rows_mem);
      free(ti);
      cases++;
    }
  }
  CHECK_MSG(bad == 0, "%s pooling kernels differ from scalar in %ld checks", cq_isa_name(isa), bad);
  printf("%s pooling row kernels: lengths 0..200, %ld cases bit-exact with scalar\n",
         cq_isa_name(isa), cases);
}

static void test_pools_isa(cq_isa isa) {
  long cases = 0, bad_max = 0, bad_avg = 0, bad_ada = 0, bad_nhwc = 0;
  while (cases < 600) {
    pool_case c;
    if (!make_pool_case(&c, cases % 2)) continue;
    const size_t n = pool_out_bytes(&c);
    uint8_t *want = xmalloc(n), *got = xmalloc(n);
    if (cases % 2 == 0) {
      run_maxpool(CQ_ISA_SCALAR, &c, want);
      run_maxpool(isa, &c, got);
      bad_max += compare(want, got, n);
    } else {
      run_avgpool(CQ_ISA_SCALAR, &c, want);
      run_avgpool(isa, &c, got);
      bad_avg += compare(want, got, n);
    }
    free(want);
    free(got);
    int64_t oh, ow;
    adaptive_size(&c, &oh, &ow);
    const size_t an = c.planes * (size_t)(oh * ow);
    want = xmalloc(an);
    got = xmalloc(an);
    const int rule = rnd_in(0, 1);
    run_adaptive(CQ_ISA_SCALAR, &c, oh, ow, rule, want);
    run_adaptive(isa, &c, oh, ow, rule, got);
    bad_ada += compare(want, got, an);
    free(want);
    free(got);
    if (cases % 2 == 0 && !c.s8) {
      /* the same bytes read as an NHWC image of planes channels */
      const size_t C = c.planes;
      uint8_t *wn = xmalloc(n), *gn = xmalloc(n);
      ref_maxpool_nhwc(c.clamp_taps, 1, C, &c.g, c.x, wn);
      cq_qu8_maxpool2d_nhwc(isa, c.clamp_taps, 1, C, &c.g, c.x, gn);
      bad_nhwc += compare(wn, gn, n);
      free(wn);
      free(gn);
    }
    free(c.x);
    cases++;
  }
  CHECK_MSG(bad_max == 0, "%s max pool differs from scalar in %ld cases", cq_isa_name(isa),
            bad_max);
  CHECK_MSG(bad_avg == 0, "%s avg pool differs from scalar in %ld cases", cq_isa_name(isa),
            bad_avg);
  CHECK_MSG(bad_ada == 0, "%s adaptive avg pool differs from scalar in %ld cases",
            cq_isa_name(isa), bad_ada);
  CHECK_MSG(bad_nhwc == 0, "%s NHWC max pool differs from the reference in %ld cases",
            cq_isa_name(isa), bad_nhwc);
  printf("%s max / avg pools, adaptive avg pool, NHWC max pool: %ld geometries bit-exact\n",
         cq_isa_name(isa), cases);
}

/* The scalar NHWC max pool, channel counts 1..70, against the reference. */
static void test_nhwc_scalar(void) {
  long bad = 0, cases = 0;
  for (size_t C = 1; C <= 70; C++) {
    pool_case c;
    while (!make_pool_case(&c, 0)) {
    }
    const size_t batch = (size_t)rnd_in(1, 2);
    const size_t in_n = batch * C * (size_t)(c.g.in_h * c.g.in_w);
    const size_t out_n = batch * C * (size_t)(c.g.out_h * c.g.out_w);
    uint8_t *x = xmalloc(in_n), *want = xmalloc(out_n), *got = xmalloc(out_n);
    fill_bytes(x, in_n);
    ref_maxpool_nhwc(c.clamp_taps, batch, C, &c.g, x, want);
    cq_qu8_maxpool2d_nhwc(CQ_ISA_SCALAR, c.clamp_taps, batch, C, &c.g, x, got);
    bad += compare(want, got, out_n);
    free(x);
    free(want);
    free(got);
    free(c.x);
    cases++;
  }
  CHECK_MSG(bad == 0, "scalar NHWC max pool differs from the reference in %ld cases", bad);
  printf("scalar NHWC max pool: channels 1..70, %ld cases match the reference\n", cases);
}

int main(void) {
  test_scalar_against_references();
  test_qnnpack_large_shift();
  test_nhwc_scalar();
  test_fused_split_ties();
  for (int isa = CQ_ISA_SCALAR + 1; isa < CQ_ISA_COUNT; isa++) {
    if (!cq_isa_supported((cq_isa)isa)) {
      printf("%s: skipped (%s)\n", cq_isa_name((cq_isa)isa), cq_isa_missing_reason((cq_isa)isa));
      continue;
    }
    if (cq_qelementwise_kernels_for((cq_isa)isa)->isa == CQ_ISA_SCALAR) {
      printf("%s: uses the scalar kernels\n", cq_isa_name((cq_isa)isa));
      continue;
    }
    test_elementwise_isa((cq_isa)isa);
    test_pool_ukernels_isa((cq_isa)isa);
    test_pools_isa((cq_isa)isa);
  }
  return check_summary("test_qelementwise_kernels");
}

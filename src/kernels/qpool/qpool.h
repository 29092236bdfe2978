/* Pooling kernels on quantized activations (quint8 = uint8, qint8 = int8 bytes) with the exact
 * arithmetic of PyTorch 1.13's kernels (torch-1.13-semantics.md 5.7):
 *
 *   max pool         max of the taps of each window; taps outside the image are skipped (ATen;
 *                    a window with no tap inside gives the dtype minimum) or clamped into the
 *                    image (QNNPACK's indirection buffer: `clamp_taps`)
 *   average pool     acc = sum(q) - size * zp over the `size` taps inside the image (int32), then
 *                      zero point after rounding:
 *                        y = clamp(rne(f32(acc) * m), lo - zp, hi - zp) + zp
 *                      zero point before rounding:
 *                        y = clamp(rne(f32(acc) * m + f32(zp)), lo, hi)
 *                    where rne is x86's conversion (NaN and out-of-range give INT32_MIN) and m is
 *                      QNNPACK:  a fixed multiplier for every window (its divisor is kh * kw)
 *                      ATen:     f32(1 / (double)divisor), divisor = divisor_override, else the
 *                                window clipped to the padded input (count_include_pad) or size
 *                    ATen's NCHW kernel adds the zero point before rounding, its channels-last
 *                    kernel and QNNPACK after (QNNPACK's int16 saturation chain gives the same).
 *   adaptive average windows [floor(i H / oh), ceil((i + 1) H / oh)) computed in float, then
 *                      NHWC rule:  y = clamp(rne(f32(sum - n zp) * f32(1 / f32(1 / f32(1 / n))))
 *                                           , lo - zp, hi - zp) + zp
 *                      NCHW rule:  y = clamp(rne(f32(f32(f32(sum) * f32(1 / kh)) * f32(1 / kw))),
 *                                           lo, hi)
 *                    (QNNPACK's adaptive pooling is its average pool with kernel = stride.)
 *
 * Inputs are [planes, H, W] byte arrays (NCHW: one plane per image and channel), outputs
 * [planes, OH, OW]; the NHWC max pool reads [batch, H, W, C] and writes [batch, OH, OW, C].
 * Geometry follows PyTorch (kernel, stride, padding, dilation per dimension; the caller computes
 * the output size, including ceil_mode's); padding may exceed half the kernel (windows without a
 * tap inside the image then follow the formulas above literally). Image sizes and kernel sizes are
 * >= 1; planes (batch) may be 0.
 *
 * NCHW drivers run rows: a vertical pass over the window's rows (vector lanes along W), then a
 * horizontal pass over the interior windows (all taps inside the image) and the few border windows
 * with the scalar forms below; MaxPool2d(2) without padding has a one-pass kernel of its own.
 * The vector work happens in small per-ISA kernels (scalar.c, avx2.c, avx512.c, the table
 * below); every ISA gives the same bytes (tests/test_qelementwise_kernels.c). Drivers never
 * allocate: scratch is sized by the matching _scratch function and passed in (any alignment).
 * None can fail. Outputs must not overlap inputs. */
#ifndef CQ_KERNELS_QPOOL_H
#define CQ_KERNELS_QPOOL_H

#include <stddef.h>
#include <stdint.h>

#include "core/cpu.h"
#include "quant/qmath.h"

typedef struct cq_qpool2d_geom {
  int64_t in_h, in_w, out_h, out_w;
  int64_t kernel[2], stride[2], padding[2], dilation[2];
} cq_qpool2d_geom;

/* How averages become bytes (see the top of this file). */
typedef struct cq_qpool_out {
  int32_t zp;           /* input zero point = output zero point */
  int32_t y_min, y_max; /* the dtype's range */
  int zp_before_rounding;
} cq_qpool_out;

typedef struct cq_qavgpool_params {
  cq_qpool_out out;
  int fixed;            /* 1: every window uses fixed_mult (QNNPACK) */
  float fixed_mult;
  int count_include_pad;
  int64_t divisor_override; /* 0 = None */
} cq_qavgpool_params;

/* ---- drivers (isa: the kernels of cq_qpool_kernels_for(isa)) ------------------------------- */

size_t cq_qpool_max2d_scratch(const cq_qpool2d_geom *g);
void cq_qu8_maxpool2d_nchw(cq_isa isa, int clamp_taps, size_t planes, const cq_qpool2d_geom *g,
                           const uint8_t *x, uint8_t *y, void *scratch);
void cq_qs8_maxpool2d_nchw(cq_isa isa, int clamp_taps, size_t planes, const cq_qpool2d_geom *g,
                           const int8_t *x, int8_t *y, void *scratch);
/* Channels in vector lanes; no scratch. */
void cq_qu8_maxpool2d_nhwc(cq_isa isa, int clamp_taps, size_t batch, size_t channels,
                           const cq_qpool2d_geom *g, const uint8_t *x, uint8_t *y);

/* Average pooling: dilation must be 1. */
size_t cq_qpool_avg2d_scratch(const cq_qpool2d_geom *g);
void cq_qu8_avgpool2d_nchw(cq_isa isa, size_t planes, const cq_qpool2d_geom *g,
                           const cq_qavgpool_params *p, const uint8_t *x, uint8_t *y,
                           void *scratch);
void cq_qs8_avgpool2d_nchw(cq_isa isa, size_t planes, const cq_qpool2d_geom *g,
                           const cq_qavgpool_params *p, const int8_t *x, int8_t *y, void *scratch);

/* Adaptive average pooling (ATen), nchw_rule selecting the rule above; o.zp_before_rounding is
 * not used. */
void cq_qu8_adaptive_avgpool2d(cq_isa isa, size_t planes, int64_t in_h, int64_t in_w,
                               int64_t out_h, int64_t out_w, int nchw_rule, const cq_qpool_out *o,
                               const uint8_t *x, uint8_t *y);
void cq_qs8_adaptive_avgpool2d(cq_isa isa, size_t planes, int64_t in_h, int64_t in_w,
                               int64_t out_h, int64_t out_w, int nchw_rule, const cq_qpool_out *o,
                               const int8_t *x, int8_t *y);

/* ---- per-ISA kernels (bytes are uint8, or int8 when s8 is set) ----------------------------- */

typedef struct cq_qpool_kernels {
  cq_isa isa; /* whose code these are (CQ_ISA_SCALAR where an ISA has no own forms) */
  /* y[i] = max(rows[0][i], ..., rows[n-1][i]), and y[i] itself when acc; i < w, 1 <= n <= 8 */
  void (*max_rows)(size_t n, const void *const *rows, size_t w, int acc, int s8, void *y);
  /* y[p] = max_{j < k} t[p + j d], p < npos (t holds npos + (k - 1) d bytes) */
  void (*max_taps)(size_t npos, size_t k, size_t d, const void *t, int s8, void *y);
  /* y[i] = t[2 i], i < n (t holds 2 n - 1 bytes) */
  void (*pick2_bytes)(size_t n, const void *t, void *y);
  /* MaxPool2d(2) rows: for r < nrows, with xr = x + r x_step and yr = y + r y_step,
   * yr[i] = max(xr[2 i], xr[2 i + 1], xr[ld + 2 i], xr[ld + 2 i + 1]), i < n */
  void (*max_2x2s2)(size_t nrows, size_t n, const void *x, size_t ld, size_t x_step, int s8,
                    void *y, size_t y_step);
  /* y[i] = sum of rows[r][i] (+ y[i] when acc) as int32; i < w, 1 <= n <= 8 */
  void (*sum_rows)(size_t n, const void *const *rows, size_t w, int acc, int s8, int32_t *y);
  /* y[p] = t[p] + ... + t[p + k - 1], p < npos (int32, wrapping) */
  void (*sum_taps)(size_t npos, size_t k, const int32_t *t, int32_t *y);
  /* y[i] = t[2 i], i < n */
  void (*pick2_i32)(size_t n, const int32_t *t, int32_t *y);
  /* y[i] = cq_qpool_round(sum[i] + bias, mult, o) as bytes, i < n */
  void (*finish)(size_t n, const int32_t *sum, int32_t bias, float mult, const cq_qpool_out *o,
                 int s8, void *y);
  /* sum of a rows x cols block with row stride ld (rows, cols >= 1) */
  int64_t (*rect_sum)(const void *x, size_t ld, size_t rows, size_t cols, int s8);
} cq_qpool_kernels;

/* AVX2 forms for avx2, AVX-512 (F/BW/VL/DQ) for avx512vnni and amx, scalar otherwise.
 * Never NULL. */
const cq_qpool_kernels *cq_qpool_kernels_for(cq_isa isa);

#define CQ_QPOOL_DECLARE(isa)                                                                   \
  void cq_qpool_max_rows__##isa(size_t n, const void *const *rows, size_t w, int acc, int s8,  \
                                void *y);                                                      \
  void cq_qpool_max_taps__##isa(size_t npos, size_t k, size_t d, const void *t, int s8,        \
                                void *y);                                                      \
  void cq_qpool_pick2_bytes__##isa(size_t n, const void *t, void *y);                          \
  void cq_qpool_max_2x2s2__##isa(size_t nrows, size_t n, const void *x, size_t ld, size_t x_step, \
                                 int s8, void *y, size_t y_step);                              \
  void cq_qpool_sum_rows__##isa(size_t n, const void *const *rows, size_t w, int acc, int s8,  \
                                int32_t *y);                                                   \
  void cq_qpool_sum_taps__##isa(size_t npos, size_t k, const int32_t *t, int32_t *y);          \
  void cq_qpool_pick2_i32__##isa(size_t n, const int32_t *t, int32_t *y);                      \
  void cq_qpool_finish__##isa(size_t n, const int32_t *sum, int32_t bias, float mult,          \
                              const cq_qpool_out *o, int s8, void *y);                         \
  int64_t cq_qpool_rect_sum__##isa(const void *x, size_t ld, size_t rows, size_t cols, int s8);

CQ_QPOOL_DECLARE(scalar)
CQ_QPOOL_DECLARE(avx2)
CQ_QPOOL_DECLARE(avx512)

/* ---- exact scalar forms -------------------------------------------------------------------- */

/* x86's rounding conversion: ties to even, NaN and out-of-range give INT32_MIN. */
static inline int32_t cq_qpool_cvt(float v) { return cq_f32_to_i32_x86(cq_rne_f32(v)); }

static inline int32_t cq_qpool_clamp(int32_t v, int32_t lo, int32_t hi) {
  return v < lo ? lo : (v > hi ? hi : v);
}

/* An average pool's accumulator (sum - size * zp, int32) to the output value. */
static inline int32_t cq_qpool_round(int32_t acc, float mult, const cq_qpool_out *o) {
  if (o->zp_before_rounding) {
    return cq_qpool_clamp(cq_qpool_cvt((float)acc * mult + (float)o->zp), o->y_min, o->y_max);
  }
  return cq_qpool_clamp(cq_qpool_cvt((float)acc * mult), o->y_min - o->zp, o->y_max - o->zp) +
         o->zp;
}

#endif

/* Requantization: int32 accumulators -> uint8 (static quantized ops) or float (dynamic ops), with
 * the exact rounding of each PyTorch 1.13 engine (torch-1.13-semantics.md 5.1-5.4).
 *
 * An accumulator `acc` is the exact int32 sum  sum_k (x_k - zx) * (w_k - zw_c)  of one output
 * channel c (the GEMM computes it; corrections for the zero points are its business). The rules:
 *
 *   QNNPACK (5.1)   bq_c = clamp(rne(f32(b_c * f32(1 / f32(sx * sw_c)))), int32)   (quantized bias)
 *                   M_c  = f32(f32(sw_c * sx) * f32(1 / sy))
 *                   y    = clamp(zy + sat16(cvt(f32(acc + bq_c) * M_c)), lo, hi)
 *                   where acc + bq_c wraps in int32, cvt is x86's float->int32 conversion with
 *                   ties-to-even (NaN and values >= 2^31 give INT32_MIN, hence 0), sat16 saturates to
 *                   int16 as QNNPACK's pack instructions do.
 *   ONEDNN (5.2)    y    = clamp(zy + rne(f32(f32(f32(acc) * f32(sx * sw_c)) + b_c) * f32(1 / sy)),
 *                                lo, hi)  (saturating: too large values give hi)
 *   FBGEMM (5.3)    ats_c = f32(sx * sw_c), C_c = f32(ats_c / sy),
 *                   b'_c = b * f32(1 / ats) (per-tensor) or f32(b_c / ats_c) (per-channel),
 *                   y    = clamp(zy + rne(f32(f32(acc) + b'_c) * C_c), lo, hi)  (saturating)
 *   lo = zy for the fused-ReLU ops, else 0; hi = 255.
 *
 *   Dynamic (5.4, float output), then max(y, 0) for ReLU:
 *                   QNNPACK  y = f32(f32(acc) * f32(sw_c * sx)) + b_c
 *                   FBGEMM   y = f32(f32(f32(acc) * sx) * sw_c) + b_c
 *                   ONEDNN   y = f32(f32(f32(acc) + f32(b_c * p_c)) * f32(1 / p_c)),
 *                            p_c = f32(f32(1 / sx) * f32(1 / sw_c))  (oneDNN works with reciprocal
 *                            scales and folds the bias into the accumulator domain; this matched
 *                            torch's onednn engine bit for bit on ~95% of the outputs tried, the
 *                            rest within 1-4 ulp -- the spec allows 1-2 ulp there)
 *
 * These reduce to three output stages that every ISA implements identically:
 *   CQ_OUT_U8_INT    (QNNPACK)   v = f32(acc + ibias_c) * mult_c, y as above
 *   CQ_OUT_U8_FLOAT  (ONEDNN/FBGEMM)  v = f32(f32(f32(acc) * scale_c) + fbias_c) * mult_c, then
 *                   clamped to [lo - zy, hi - zy] in float, rounded ties-to-even, plus zy (for
 *                   FBGEMM scale_c = 1, exact; clamping before rounding equals rounding before
 *                   clamping because the bounds are integers)
 *   CQ_OUT_F32       y = f32(f32(f32(f32(acc) * scale_c) + fbias_c) * mult_c) + obias_c,
 *                   ReLU as max(y, 0). QNNPACK: scale = f32(sw*sx), fbias 0, mult 1, obias b;
 *                   FBGEMM: scale sx, fbias 0, mult sw, obias b; ONEDNN: scale 1, fbias
 *                   f32(b*p), mult f32(1/p), obias 0 (adding 0 and multiplying by 1 are exact).
 * All products and sums are separate float32 operations (the project builds with
 * -ffp-contract=off; kernels must not use FMA instructions here).
 *
 * A parameter record holds per-channel arrays padded to a multiple of 16 channels with neutral
 * values, so vector kernels may read whole vectors. It is allocated once (create) and refilled
 * without allocation (set_static / set_dynamic), e.g. on every call of a dynamic op. */
#ifndef CQ_KERNELS_REQUANT_H
#define CQ_KERNELS_REQUANT_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cpu.h"
#include "cquant/status.h"

typedef enum cq_requant_rule {
  CQ_RULE_QNNPACK = 0,
  CQ_RULE_ONEDNN,
  CQ_RULE_FBGEMM,
  CQ_RULE_COUNT
} cq_requant_rule;

typedef enum cq_out_kind {
  CQ_OUT_U8_INT = 0,
  CQ_OUT_U8_FLOAT,
  CQ_OUT_F32
} cq_out_kind;

typedef struct cq_requant_params {
  cq_out_kind kind;
  cq_requant_rule rule;
  int64_t channels;
  int64_t padded;  /* channels rounded up to a multiple of 16 */
  int32_t *ibias;  /* U8_INT: quantized bias; other kinds: 0 */
  float *scale;    /* U8_FLOAT / F32: first multiplier; U8_INT: unused (1) */
  float *fbias;    /* U8_FLOAT / F32: float bias added before the last multiplier; U8_INT: 0 */
  float *mult;     /* last multiplier */
  float *obias;    /* F32: float bias added after the last multiplier; other kinds: 0 */
  int32_t y_zp;    /* u8 kinds */
  int32_t y_min;   /* u8 kinds: lo and hi of the clamp */
  int32_t y_max;
  int relu;        /* F32: max(y, 0) */
  void *mem;       /* one block holding the arrays */
  /* what the last cq_requant_params_set_dynamic filled in (dyn_ready 0: nothing, or a static op
   * since): a call with the same weights only refreshes what depends on the input scale */
  int dyn_ready, dyn_per_channel;
  const float *dyn_w_scale, *dyn_bias;
} cq_requant_params;

/* "qnnpack", "onednn", "fbgemm". */
const char *cq_requant_rule_name(cq_requant_rule rule);
cq_status cq_requant_rule_parse(const char *name, cq_requant_rule *out);

/* Allocates arrays for `channels` (>= 1) output channels. CQ_EINVAL / CQ_ENOMEM. */
cq_status cq_requant_params_create(int64_t channels, cq_requant_params *p);
void cq_requant_params_release(cq_requant_params *p);

/* Fills the record for a static op (uint8 output). w_scale has `channels` entries if per_channel,
 * else 1; bias has `channels` entries or is NULL (zero bias). relu selects lo = y_zp.
 * Errors (CQ_EVALUE, with the offending channel): scales not finite and > 0, y_zp outside
 * [0, 255], a non-finite bias, and for QNNPACK a multiplier M_c that is not a finite positive
 * normal float (PyTorch refuses those); for ONEDNN/FBGEMM a non-finite combined scale. */
cq_status cq_requant_params_set_static(cq_requant_params *p, cq_requant_rule rule, float x_scale,
                                       const float *w_scale, int per_channel, const float *bias,
                                       float y_scale, int32_t y_zp, int relu);

/* Validates weight scales (finite, > 0) and bias (finite): CQ_EVALUE naming the channel. */
cq_status cq_requant_check_weights(int64_t channels, const float *w_scale, int per_channel,
                                   const float *bias);

/* Fills the record for a dynamic op (float output) of the given engine rule. Runs once per call of
 * a dynamic op, so it validates only x_scale: w_scale and bias must have passed
 * cq_requant_check_weights (packing does that). */
cq_status cq_requant_params_set_dynamic(cq_requant_params *p, cq_requant_rule rule, float x_scale,
                                        const float *w_scale, int per_channel, const float *bias,
                                        int relu);

/* ---- exact scalar forms (shared by the scalar kernels; vector kernels match them bit for bit) */

/* x86 cvtps2dq: round ties-to-even; NaN and out-of-range give INT32_MIN. */
static inline int32_t cq_cvt_f32_i32(float v) {
  float r = nearbyintf(v);
  if (!(r >= -2147483648.0f && r < 2147483648.0f)) return INT32_MIN;
  return (int32_t)r;
}

/* max_ps / min_ps semantics: the second operand wins when either is NaN. */
static inline float cq_maxps(float a, float b) { return a > b ? a : b; }
static inline float cq_minps(float a, float b) { return a < b ? a : b; }

static inline uint8_t cq_requant_u8_int(int32_t acc_plus_bias, float mult, int32_t zp, int32_t lo,
                                        int32_t hi) {
  int32_t r = cq_cvt_f32_i32((float)acc_plus_bias * mult);
  if (r > 32767) r = 32767;
  if (r < -32768) r = -32768;
  r += zp;
  if (r < lo) r = lo;
  if (r > hi) r = hi;
  return (uint8_t)r;
}

static inline uint8_t cq_requant_u8_float(int32_t acc, float scale, float fbias, float mult,
                                          int32_t zp, float lo_minus_zp, float hi_minus_zp) {
  float v = ((float)acc * scale + fbias) * mult;
  v = cq_minps(cq_maxps(v, lo_minus_zp), hi_minus_zp);
  return (uint8_t)(cq_cvt_f32_i32(v) + zp);
}

static inline float cq_requant_f32(int32_t acc, float scale, float fbias, float mult, float obias,
                                   int relu) {
  float y = ((float)acc * scale + fbias) * mult + obias;
  return relu ? cq_maxps(y, 0.0f) : y;
}

/* ---- standalone kernels over int32 matrices ------------------------------------------------
 * acc is rows x channels (row stride acc_stride elements, channel c uses params entry c0 + c);
 * y is rows x channels uint8 (U8 kinds) or float (F32 kind) with row stride y_stride elements. */
typedef void (*cq_requant_fn)(size_t rows, size_t channels, const int32_t *acc, size_t acc_stride,
                              const cq_requant_params *p, size_t c0, void *y, size_t y_stride);

void cq_requant__scalar(size_t rows, size_t channels, const int32_t *acc, size_t acc_stride,
                        const cq_requant_params *p, size_t c0, void *y, size_t y_stride);
void cq_requant__avx2(size_t rows, size_t channels, const int32_t *acc, size_t acc_stride,
                      const cq_requant_params *p, size_t c0, void *y, size_t y_stride);
void cq_requant__avx512(size_t rows, size_t channels, const int32_t *acc, size_t acc_stride,
                        const cq_requant_params *p, size_t c0, void *y, size_t y_stride);
void cq_requant__neon(size_t rows, size_t channels, const int32_t *acc, size_t acc_stride,
                      const cq_requant_params *p, size_t c0, void *y, size_t y_stride);

/* The kernel of an ISA (the scalar one for ISAs without their own, or not built here); the caller
 * checks cq_isa_supported. */
cq_requant_fn cq_requant_kernel(cq_isa isa);

#endif

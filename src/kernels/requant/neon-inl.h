/* AArch64 NEON forms of the requantization stages of requant.h, 4 channels per vector and 16 per
 * store. Included only by AArch64 kernel files (…/neon.c, …/neondot.c). Each function equals its
 * scalar twin in requant.h bit for bit, which takes care where ARM and x86 differ:
 *   - FCVTNS saturates (NaN gives 0, large values INT32_MAX) while the scalar form follows x86's
 *     cvtps2dq (INT32_MIN for NaN and anything outside [-2^31, 2^31)): cq_rq128_cvt selects
 *     INT32_MIN for those lanes. (Floats that large are integers, so testing before rounding is
 *     the same as testing after.)
 *   - FMAX / FMIN propagate NaN while maxps / minps return the second operand: the clamps and the
 *     ReLU are compare-and-select (v > lo ? v : lo), which is the scalar form literally.
 * Rounding is the default FPCR's (ties to even, no flush to zero, as Linux starts every thread),
 * and products and sums are separate instructions (FMUL, FADD; never FMLA: the build uses
 * -ffp-contract=off and these intrinsics are plain C operators to GCC). */
#ifndef CQ_KERNELS_REQUANT_NEON_INL_H
#define CQ_KERNELS_REQUANT_NEON_INL_H

#include <arm_neon.h>
#include <string.h>

#include "kernels/requant/requant.h"

/* Broadcast constants of one parameter record. */
typedef struct cq_rq128 {
  int32x4_t zp, lo, hi;
  float32x4_t lo_f, hi_f; /* lo - zp, hi - zp as floats (U8_FLOAT) */
  int32x4_t int16_max, int16_min;
  float32x4_t two31, neg_two31, zero;
} cq_rq128;

static inline cq_rq128 cq_rq128_init(const cq_requant_params *p) {
  cq_rq128 c;
  c.zp = vdupq_n_s32(p->y_zp);
  c.lo = vdupq_n_s32(p->y_min);
  c.hi = vdupq_n_s32(p->y_max);
  c.lo_f = vdupq_n_f32((float)(p->y_min - p->y_zp));
  c.hi_f = vdupq_n_f32((float)(p->y_max - p->y_zp));
  c.int16_max = vdupq_n_s32(32767);
  c.int16_min = vdupq_n_s32(-32768);
  c.two31 = vdupq_n_f32(2147483648.0f);
  c.neg_two31 = vdupq_n_f32(-2147483648.0f);
  c.zero = vdupq_n_f32(0.0f);
  return c;
}

/* cq_cvt_f32_i32 on four lanes. */
static inline int32x4_t cq_rq128_cvt(const cq_rq128 *c, float32x4_t v) {
  const uint32x4_t ok = vandq_u32(vcltq_f32(v, c->two31), vcgeq_f32(v, c->neg_two31));
  return vbslq_s32(ok, vcvtnq_s32_f32(v), vdupq_n_s32(INT32_MIN));
}

/* cq_maxps / cq_minps on four lanes. */
static inline float32x4_t cq_rq128_maxps(float32x4_t a, float32x4_t b) {
  return vbslq_f32(vcgtq_f32(a, b), a, b);
}
static inline float32x4_t cq_rq128_minps(float32x4_t a, float32x4_t b) {
  return vbslq_f32(vcltq_f32(a, b), a, b);
}

/* CQ_OUT_U8_INT: acc already holds acc + ibias. */
static inline int32x4_t cq_rq128_u8_int(const cq_rq128 *c, int32x4_t acc, float32x4_t mult) {
  int32x4_t r = cq_rq128_cvt(c, vmulq_f32(vcvtq_f32_s32(acc), mult));
  r = vmaxq_s32(vminq_s32(r, c->int16_max), c->int16_min);
  r = vaddq_s32(r, c->zp);
  return vmaxq_s32(vminq_s32(r, c->hi), c->lo);
}

static inline int32x4_t cq_rq128_u8_float(const cq_rq128 *c, int32x4_t acc, float32x4_t scale,
                                          float32x4_t fbias, float32x4_t mult) {
  float32x4_t v = vmulq_f32(vaddq_f32(vmulq_f32(vcvtq_f32_s32(acc), scale), fbias), mult);
  v = cq_rq128_minps(cq_rq128_maxps(v, c->lo_f), c->hi_f);
  return vaddq_s32(cq_rq128_cvt(c, v), c->zp);
}

static inline float32x4_t cq_rq128_f32(const cq_rq128 *c, int32x4_t acc, float32x4_t scale,
                                       float32x4_t fbias, float32x4_t mult, float32x4_t obias,
                                       int relu) {
  float32x4_t y = vaddq_f32(vmulq_f32(vcvtq_f32_s32(acc), scale), fbias);
  y = vaddq_f32(vmulq_f32(y, mult), obias);
  return relu ? cq_rq128_maxps(y, c->zero) : y;
}

/* Requantizes 16 accumulators of channels c..c+15 (acc[q] holds channels c+4q..c+4q+3; the
 * parameter arrays must be readable up to c+15, which their padding to 16 channels guarantees for
 * c a multiple of 16) and stores the first n (1..16) results to y. */
static inline void cq_rq128_store16(const cq_requant_params *p, const cq_rq128 *k,
                                    const int32x4_t acc[4], size_t c, void *y, size_t n) {
  if (p->kind == CQ_OUT_F32) {
    float32x4_t r[4];
    for (int q = 0; q < 4; q++) {
      const size_t cq = c + 4 * (size_t)q;
      r[q] = cq_rq128_f32(k, acc[q], vld1q_f32(p->scale + cq), vld1q_f32(p->fbias + cq),
                          vld1q_f32(p->mult + cq), vld1q_f32(p->obias + cq), p->relu);
    }
    if (n == 16) {
      for (int q = 0; q < 4; q++) vst1q_f32((float *)y + 4 * q, r[q]);
    } else {
      float tmp[16];
      for (int q = 0; q < 4; q++) vst1q_f32(tmp + 4 * q, r[q]);
      memcpy(y, tmp, n * sizeof(float));
    }
    return;
  }
  int32x4_t r[4];
  for (int q = 0; q < 4; q++) {
    const size_t cq = c + 4 * (size_t)q;
    if (p->kind == CQ_OUT_U8_INT) {
      r[q] = cq_rq128_u8_int(k, vaddq_s32(acc[q], vld1q_s32(p->ibias + cq)),
                             vld1q_f32(p->mult + cq));
    } else {
      r[q] = cq_rq128_u8_float(k, acc[q], vld1q_f32(p->scale + cq), vld1q_f32(p->fbias + cq),
                               vld1q_f32(p->mult + cq));
    }
  }
  /* every lane is within [0, 255]: the saturating narrowings only drop zero bytes */
  const uint16x8_t lo16 = vcombine_u16(vqmovun_s32(r[0]), vqmovun_s32(r[1]));
  const uint16x8_t hi16 = vcombine_u16(vqmovun_s32(r[2]), vqmovun_s32(r[3]));
  const uint8x16_t b = vcombine_u8(vqmovn_u16(lo16), vqmovn_u16(hi16));
  if (n == 16) {
    vst1q_u8(y, b);
  } else {
    uint8_t tmp[16];
    vst1q_u8(tmp, b);
    memcpy(y, tmp, n);
  }
}

#endif

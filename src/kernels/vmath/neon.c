/* NEON forms of the vmath algorithm (vmath.h): 4 lanes, the same operations as scalar.c (no fused
 * multiply-add); the tail goes through scalar.c (the same bits). */
#include <arm_neon.h>

#include "kernels/vmath/vmath.h"

static inline float32x4_t exp_core(float32x4_t x) {
  const float32x4_t round = vdupq_n_f32(CQ_VM_ROUND);
  const float32x4_t t = vmulq_f32(x, vdupq_n_f32(CQ_VM_LOG2E));
  const float32x4_t n = vsubq_f32(vaddq_f32(t, round), round);
  const float32x4_t r = vsubq_f32(vsubq_f32(x, vmulq_f32(n, vdupq_n_f32(CQ_VM_LN2_HI))),
                                  vmulq_f32(n, vdupq_n_f32(CQ_VM_LN2_LO)));
  float32x4_t p = vdupq_n_f32(CQ_VM_E7);
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(CQ_VM_E6));
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(CQ_VM_E5));
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(CQ_VM_E4));
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(CQ_VM_E3));
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(CQ_VM_E2));
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f));
  p = vaddq_f32(vmulq_f32(p, r), vdupq_n_f32(1.0f));
  const int32x4_t bits = vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23);
  return vmulq_f32(p, vreinterpretq_f32_s32(bits));
}

/* NaN lanes are replaced by x at the end (vminq/vmaxq propagate NaN, the other forms do not;
 * either way those lanes end as x) */
static inline float32x4_t clamp_exp_arg(float32x4_t x) {
  return vminq_f32(vmaxq_f32(x, vdupq_n_f32(CQ_VM_EXP_MIN)), vdupq_n_f32(CQ_VM_EXP_MAX));
}

static inline float32x4_t keep_nan(float32x4_t x, float32x4_t y) {
  return vbslq_f32(vceqq_f32(x, x), y, x);
}

static inline float32x4_t sigmoid4(float32x4_t x) {
  const float32x4_t e = exp_core(clamp_exp_arg(vnegq_f32(x)));
  return keep_nan(x, vdivq_f32(vdupq_n_f32(1.0f), vaddq_f32(vdupq_n_f32(1.0f), e)));
}

static inline float32x4_t tanh4(float32x4_t x) {
  const float32x4_t a = vabsq_f32(x);
  const float32x4_t a2 = vmulq_f32(a, a);
  float32x4_t p = vdupq_n_f32(CQ_VM_T9);
  p = vaddq_f32(vmulq_f32(p, a2), vdupq_n_f32(CQ_VM_T8));
  p = vaddq_f32(vmulq_f32(p, a2), vdupq_n_f32(CQ_VM_T7));
  p = vaddq_f32(vmulq_f32(p, a2), vdupq_n_f32(CQ_VM_T6));
  p = vaddq_f32(vmulq_f32(p, a2), vdupq_n_f32(CQ_VM_T5));
  p = vaddq_f32(vmulq_f32(p, a2), vdupq_n_f32(CQ_VM_T4));
  p = vaddq_f32(vmulq_f32(p, a2), vdupq_n_f32(CQ_VM_T3));
  p = vaddq_f32(vmulq_f32(p, a2), vdupq_n_f32(CQ_VM_T2));
  p = vaddq_f32(vmulq_f32(p, a2), vdupq_n_f32(CQ_VM_T1));
  const float32x4_t small = vaddq_f32(a, vmulq_f32(a, vmulq_f32(a2, p)));
  const float32x4_t e =
      exp_core(vmulq_f32(vdupq_n_f32(2.0f), vminq_f32(a, vdupq_n_f32(CQ_VM_TANH_BIG))));
  const float32x4_t one = vdupq_n_f32(1.0f);
  const float32x4_t big = vdivq_f32(vsubq_f32(e, one), vaddq_f32(e, one));
  const float32x4_t y = vbslq_f32(vcltq_f32(a, vdupq_n_f32(CQ_VM_TANH_SMALL)), small, big);
  /* the sign of x on the magnitude */
  const uint32x4_t sign = vandq_u32(vreinterpretq_u32_f32(x), vdupq_n_u32(0x80000000u));
  return keep_nan(x, vreinterpretq_f32_u32(vorrq_u32(vreinterpretq_u32_f32(y), sign)));
}

void cq_f32_sigmoid__neon(const float *x, float *y, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, sigmoid4(vld1q_f32(x + i)));
  cq_f32_sigmoid__scalar(x + i, y + i, n - i);
}

void cq_f32_tanh__neon(const float *x, float *y, size_t n) {
  size_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, tanh4(vld1q_f32(x + i)));
  cq_f32_tanh__scalar(x + i, y + i, n - i);
}

/* The definition of the vmath algorithm (vmath.h), one value at a time. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/vmath/vmath.h"

/* exp(x) for x already in [CQ_VM_EXP_MIN, CQ_VM_EXP_MAX] */
static inline float exp_core(float x) {
  const float t = x * CQ_VM_LOG2E;
  const float n = (t + CQ_VM_ROUND) - CQ_VM_ROUND;
  const float r = (x - n * CQ_VM_LN2_HI) - n * CQ_VM_LN2_LO;
  float p = CQ_VM_E7;
  p = p * r + CQ_VM_E6;
  p = p * r + CQ_VM_E5;
  p = p * r + CQ_VM_E4;
  p = p * r + CQ_VM_E3;
  p = p * r + CQ_VM_E2;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

static inline float clamp_exp_arg(float x) {
  return x < CQ_VM_EXP_MIN ? CQ_VM_EXP_MIN : x > CQ_VM_EXP_MAX ? CQ_VM_EXP_MAX : x;
}

float cq_sigmoid_f32(float x) {
  if (x != x) return x;
  return 1.0f / (1.0f + exp_core(clamp_exp_arg(-x)));
}

float cq_tanh_f32(float x) {
  if (x != x) return x;
  const float a = fabsf(x);
  float y;
  if (a < CQ_VM_TANH_SMALL) {
    const float a2 = a * a;
    float p = CQ_VM_T9;
    p = p * a2 + CQ_VM_T8;
    p = p * a2 + CQ_VM_T7;
    p = p * a2 + CQ_VM_T6;
    p = p * a2 + CQ_VM_T5;
    p = p * a2 + CQ_VM_T4;
    p = p * a2 + CQ_VM_T3;
    p = p * a2 + CQ_VM_T2;
    p = p * a2 + CQ_VM_T1;
    y = a + a * (a2 * p);
  } else {
    const float e = exp_core(2.0f * (a < CQ_VM_TANH_BIG ? a : CQ_VM_TANH_BIG));
    y = (e - 1.0f) / (e + 1.0f);
  }
  return copysignf(y, x);
}

void cq_f32_sigmoid__scalar(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = cq_sigmoid_f32(x[i]);
}

void cq_f32_tanh__scalar(const float *x, float *y, size_t n) {
  for (size_t i = 0; i < n; i++) y[i] = cq_tanh_f32(x[i]);
}

/* Float sigmoid and tanh over arrays, for the recurrent cells (LSTM, GRU) and anything else that
 * applies them elementwise.
 *
 * One algorithm, written once per ISA with the same IEEE operations in the same order (no fused
 * multiply-add: the build uses -ffp-contract=off), so every ISA gives the same bits; scalar.c is
 * the definition and serves every architecture without a vector form.
 *
 *   exp(x), x clamped to [-87, 88]: n = round(x log2 e) (by adding and subtracting 1.5 * 2^23),
 *       r = (x - n ln2_hi) - n ln2_lo (Cody-Waite: n ln2_hi is exact), exp(r) by its Taylor
 *       polynomial to r^7 / 7! in Horner form (|r| <= 0.347: truncation below 1e-8), times 2^n
 *       built in the exponent field.
 *   sigmoid(x) = 1 / (1 + exp(-x))
 *   tanh(x)    = sign(x) * t(|x|):  t(a) = a + a * (a^2 * P(a^2)) for a < 0.55, P the Taylor
 *       series of (tanh(a) - a) / a^3 to a^18 (truncation below 1e-9 there); otherwise
 *       t(a) = (e - 1) / (e + 1), e = exp(2 min(a, 9)) (e - 1 is exact for e in [3, 4 * 10^7]).
 *   NaN gives NaN; +-inf gives the limits.
 * Accuracy: within 2 ulp of the exact values over the whole float range (glibc's expf / tanhf,
 * and PyTorch's vectorised Sleef forms, are within 1 ulp; the three differ from one another by
 * an ulp or two on a few percent of inputs). */
#ifndef CQ_KERNELS_VMATH_H
#define CQ_KERNELS_VMATH_H

#include <stddef.h>

#include "core/cpu.h"

/* One value (the scalar definition; the array forms give the same bits). */
float cq_sigmoid_f32(float x);
float cq_tanh_f32(float x);

/* y[i] = f(x[i]) for i < n, with the best form cq_isa_active() allows; y may equal x. */
void cq_f32_sigmoid(const float *x, float *y, size_t n);
void cq_f32_tanh(const float *x, float *y, size_t n);

typedef struct cq_vmath_kernels {
  cq_isa isa; /* whose forms these are */
  void (*sigmoid)(const float *x, float *y, size_t n);
  void (*tanh)(const float *x, float *y, size_t n);
} cq_vmath_kernels;

/* The forms of an ISA (the scalar ones where it has none of its own); tests compare them. */
const cq_vmath_kernels *cq_vmath_kernels_for(cq_isa isa);

void cq_f32_sigmoid__scalar(const float *x, float *y, size_t n);
void cq_f32_tanh__scalar(const float *x, float *y, size_t n);
#if CQ_ARCH_ARM64
void cq_f32_sigmoid__neon(const float *x, float *y, size_t n);
void cq_f32_tanh__neon(const float *x, float *y, size_t n);
#endif
#if CQ_ARCH_X86
void cq_f32_sigmoid__avx2(const float *x, float *y, size_t n);
void cq_f32_tanh__avx2(const float *x, float *y, size_t n);
void cq_f32_sigmoid__avx512(const float *x, float *y, size_t n);
void cq_f32_tanh__avx512(const float *x, float *y, size_t n);
#endif

/* The constants of the algorithm, shared by every form. */
#define CQ_VM_LOG2E 1.44269504088896341f
#define CQ_VM_LN2_HI 0.693359375f     /* 355 / 512: n * LN2_HI is exact for |n| < 2^15 */
#define CQ_VM_LN2_LO -2.12194440e-4f  /* ln 2 - LN2_HI */
#define CQ_VM_ROUND 12582912.0f       /* 1.5 * 2^23: (t + ROUND) - ROUND = rint(t), |t| < 2^22 */
#define CQ_VM_EXP_MIN -87.0f
#define CQ_VM_EXP_MAX 88.0f
#define CQ_VM_E2 0.5f                 /* 1/2! ... 1/7! */
#define CQ_VM_E3 0.166666671633720398f
#define CQ_VM_E4 0.0416666679084300995f
#define CQ_VM_E5 0.00833333376795053482f
#define CQ_VM_E6 0.00138888892251998186f
#define CQ_VM_E7 0.000198412701138295233f
#define CQ_VM_TANH_SMALL 0.55f
#define CQ_VM_TANH_BIG 9.0f           /* tanh(9) rounds to 1 - 2^-24 .. 1 */
#define CQ_VM_T1 -0.333333343267440796f /* Taylor coefficients of tanh: a^3, a^5, ..., a^19 */
#define CQ_VM_T2 0.133333340287208557f
#define CQ_VM_T3 -0.0539682544767856598f
#define CQ_VM_T4 0.0218694880604743958f
#define CQ_VM_T5 -0.00886323582381010056f
#define CQ_VM_T6 0.00359212793409824371f
#define CQ_VM_T7 -0.00145583436824381351f
#define CQ_VM_T8 0.000590027426369488239f
#define CQ_VM_T9 -0.000239129120018333197f

#endif

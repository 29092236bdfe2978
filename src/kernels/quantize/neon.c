/* AArch64 NEON activation range scan and quantization (see quantize.h). Same bytes as the other
 * ISAs: the inputs are finite when quantized (callers reject NaN and infinities first), so FMIN /
 * FMAX clamp exactly like minps / maxps, and FCVTNS rounds ties to even like cvtps2dq on values
 * that are already within [-zp, 255 - zp]. */
#include <arm_neon.h>

#include "kernels/quantize/quantize.h"

void cq_f32_range__neon(const float *x, size_t rows, size_t cols, size_t ld, float *min,
                        float *max, int *nonfinite) {
  float32x4_t lo = vdupq_n_f32(x[0]), hi = lo;
  const float32x4_t inf = vdupq_n_f32(__builtin_inff());
  uint32x4_t finite = vdupq_n_u32(~0u);
  float tail_lo = x[0], tail_hi = x[0];
  int tail_bad = 0;
  for (size_t r = 0; r < rows; r++) {
    const float *row = x + r * ld;
    size_t c = 0;
    for (; c + 4 <= cols; c += 4) {
      const float32x4_t v = vld1q_f32(row + c);
      lo = vminq_f32(lo, v);
      hi = vmaxq_f32(hi, v);
      /* |v| < inf is false for NaN and +-inf */
      finite = vandq_u32(finite, vcaltq_f32(v, inf));
    }
    if (c < cols) {
      float l, h;
      int b;
      cq_f32_range__scalar(row + c, 1, cols - c, ld, &l, &h, &b);
      tail_lo = l < tail_lo ? l : tail_lo;
      tail_hi = h > tail_hi ? h : tail_hi;
      tail_bad |= b;
    }
  }
  const float vl = vminvq_f32(lo), vh = vmaxvq_f32(hi);
  *min = vl < tail_lo ? vl : tail_lo;
  *max = vh > tail_hi ? vh : tail_hi;
  *nonfinite = tail_bad || vminvq_u32(finite) == 0;
}

void cq_f32_qu8__neon(const float *x, size_t rows, size_t cols, size_t ldx, float inv_scale,
                      int32_t zp, uint8_t *y, size_t ldy) {
  const float32x4_t inv = vdupq_n_f32(inv_scale);
  const float32x4_t lo = vdupq_n_f32((float)-zp), hi = vdupq_n_f32((float)(255 - zp));
  const int32x4_t vzp = vdupq_n_s32(zp);
  for (size_t r = 0; r < rows; r++) {
    const float *in = x + r * ldx;
    uint8_t *out = y + r * ldy;
    size_t c = 0;
    for (; c + 8 <= cols; c += 8) {
      int32x4_t q[2];
      for (int h = 0; h < 2; h++) {
        float32x4_t v = vmulq_f32(vld1q_f32(in + c + 4 * h), inv);
        v = vminq_f32(vmaxq_f32(v, lo), hi);
        q[h] = vaddq_s32(vcvtnq_s32_f32(v), vzp);
      }
      const uint16x8_t w16 = vcombine_u16(vqmovun_s32(q[0]), vqmovun_s32(q[1]));
      vst1_u8(out + c, vqmovn_u16(w16));
    }
    if (c < cols) cq_f32_qu8__scalar(in + c, 1, cols - c, ldx, inv_scale, zp, out + c, ldy);
  }
}

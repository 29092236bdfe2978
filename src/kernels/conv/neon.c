/* AArch64 NEON depthwise convolution kernel: one channel, 16 output positions of a row in the
 * vector lanes. (The other convolutions run as im2col + the NEON GEMM block kernels.)
 *
 * For each tap the 16 input bytes of the 16 positions are loaded at once: contiguous for stride_w
 * 1, every other byte of a 32-byte LD2 for stride_w 2; other strides gather them through a small
 * buffer. They are widened to int16 and multiplied by the tap's weight minus its zero point (an
 * int16 in [-255, 255]) with SMLAL into int32, so each lane accumulates sum x * (w - zw); the input
 * zero point's term -zx * sum (w - zw) is added once. Sums wrap in int32 like the reference's, and
 * the output stage is requant.h's in neon-inl.h, so the bytes equal the scalar kernel's. */
#include <arm_neon.h>
#include <string.h>

#include "kernels/conv/qconv.h"
#include "kernels/requant/neon-inl.h"

/* The n (<= 16) bytes at src, src + sw, ..., src + (n - 1) * sw, zeros after them (sw >= 3:
 * only the positions that exist are read, however large the stride). */
static inline uint8x16_t gather(const uint8_t *src, int64_t sw, int64_t n) {
  uint8_t b[16] = {0};
  for (int64_t i = 0; i < n; i++) b[i] = src[i * sw];
  return vld1q_u8(b);
}

/* The input bytes of 16 output positions (n of them real). Strides 1 and 2 read at most 32 bytes
 * from src: past the last real window by less than the plane's slack. */
static inline __attribute__((always_inline)) uint8x16_t load_positions(const uint8_t *src,
                                                                       int64_t sw, int64_t n) {
  if (sw == 1) return vld1q_u8(src);
  if (sw == 2) return vld2q_u8(src).val[0];
  return gather(src, sw, n);
}

void cq_u8_dwconv__neon(const cq_conv_dw *d, int64_t c, const uint8_t *plane, uint8_t *y,
                        int32_t x_zp, const cq_requant_params *rq) {
  const cq_qconv_packed *p = d->p;
  const cq_conv_geom *g = &p->g;
  const int64_t kh = g->kernel[0], kw = g->kernel[1], taps = kh * kw;
  const int64_t sh = g->stride[0], sw = g->stride[1], dh = g->dilation[0], dwl = g->dilation[1];
  const int8_t *w = p->w + c * taps;
  const int32_t zw = p->w_zp[c];
  /* the weights minus their zero point, and the input zero point's constant term */
  enum { MAX_STACK_TAPS = 64 };
  int16_t wz_stack[MAX_STACK_TAPS];
  uint32_t wsum = 0;
  for (int64_t t = 0; t < taps && t < MAX_STACK_TAPS; t++) wz_stack[t] = (int16_t)(w[t] - zw);
  for (int64_t t = 0; t < taps; t++) wsum += (uint32_t)((int32_t)w[t] - zw);
  uint32_t init = 0u - (uint32_t)x_zp * wsum;
  if (rq->kind == CQ_OUT_U8_INT) init += (uint32_t)rq->ibias[c];
  const int32x4_t vinit = vdupq_n_s32((int32_t)init);
  const cq_rq128 k = cq_rq128_init(rq);
  const float32x4_t scale = vdupq_n_f32(rq->scale[c]), fbias = vdupq_n_f32(rq->fbias[c]);
  const float32x4_t mult = vdupq_n_f32(rq->mult[c]);
  for (int64_t oh = 0; oh < d->ho; oh++) {
    const uint8_t *row = plane + oh * sh * d->wpp;
    uint8_t *yr = y + oh * d->wo;
    for (int64_t ow = 0; ow < d->wo; ow += 16) {
      const int64_t n = d->wo - ow < 16 ? d->wo - ow : 16;
      int32x4_t acc[4] = {vinit, vinit, vinit, vinit};
      for (int64_t i = 0; i < kh; i++) {
        const uint8_t *src = row + i * dh * d->wpp + ow * sw;
        for (int64_t j = 0; j < kw; j++) {
          const int64_t t = i * kw + j;
          const int16_t wt = t < MAX_STACK_TAPS ? wz_stack[t] : (int16_t)(w[t] - zw);
          const uint8x16_t xb = load_positions(src + j * dwl, sw, n);
          const int16x8_t lo = vreinterpretq_s16_u16(vmovl_u8(vget_low_u8(xb)));
          const int16x8_t hi = vreinterpretq_s16_u16(vmovl_high_u8(xb));
          acc[0] = vmlal_n_s16(acc[0], vget_low_s16(lo), wt);
          acc[1] = vmlal_high_n_s16(acc[1], lo, wt);
          acc[2] = vmlal_n_s16(acc[2], vget_low_s16(hi), wt);
          acc[3] = vmlal_high_n_s16(acc[3], hi, wt);
        }
      }
      int32x4_t r[4];
      for (int q = 0; q < 4; q++) {
        r[q] = rq->kind == CQ_OUT_U8_INT ? cq_rq128_u8_int(&k, acc[q], mult)
                                         : cq_rq128_u8_float(&k, acc[q], scale, fbias, mult);
      }
      const uint16x8_t l16 = vcombine_u16(vqmovun_s32(r[0]), vqmovun_s32(r[1]));
      const uint16x8_t h16 = vcombine_u16(vqmovun_s32(r[2]), vqmovun_s32(r[3]));
      const uint8x16_t b = vcombine_u8(vqmovn_u16(l16), vqmovn_u16(h16));
      if (n == 16) {
        vst1q_u8(yr + ow, b);
      } else {
        uint8_t tmp[16];
        vst1q_u8(tmp, b);
        memcpy(yr + ow, tmp, (size_t)n);
      }
    }
  }
}

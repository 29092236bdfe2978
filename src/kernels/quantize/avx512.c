/* AVX-512 activation range scan and quantization (see quantize.h). */
#include <immintrin.h>

#include "kernels/quantize/quantize.h"

/* Four accumulator pairs over 64 floats per step (min / max have a latency of four cycles: one
 * pair would wait on itself); NaN and infinities by class (fpclass 0x99: QNaN, SNaN, +inf, -inf). */
void cq_f32_range__avx512(const float *x, size_t rows, size_t cols, size_t ld, float *min,
                          float *max, int *nonfinite) {
  __m512 lo[4], hi[4];
  for (int u = 0; u < 4; u++) lo[u] = hi[u] = _mm512_set1_ps(x[0]);
  __mmask16 bad = 0;
  for (size_t r = 0; r < rows; r++) {
    const float *row = x + r * ld;
    size_t c = 0;
    for (; c + 64 <= cols; c += 64) {
#pragma GCC unroll 4
      for (int u = 0; u < 4; u++) {
        const __m512 v = _mm512_loadu_ps(row + c + 16 * u);
        lo[u] = _mm512_min_ps(lo[u], v);
        hi[u] = _mm512_max_ps(hi[u], v);
        bad |= _mm512_fpclass_ps_mask(v, 0x99);
      }
    }
    for (; c < cols; c += 16) {
      const size_t n = cols - c < 16 ? cols - c : 16;
      const __mmask16 mask = (__mmask16)((1u << n) - 1);
      /* masked-off lanes keep the previous extremes (x[0] initially) */
      const __m512 v = _mm512_mask_loadu_ps(lo[0], mask, row + c);
      const __m512 u = _mm512_mask_loadu_ps(hi[0], mask, row + c);
      lo[0] = _mm512_min_ps(lo[0], v);
      hi[0] = _mm512_max_ps(hi[0], u);
      bad |= _mm512_mask_fpclass_ps_mask(mask, v, 0x99);
    }
  }
  const __m512 l = _mm512_min_ps(_mm512_min_ps(lo[0], lo[1]), _mm512_min_ps(lo[2], lo[3]));
  const __m512 h = _mm512_max_ps(_mm512_max_ps(hi[0], hi[1]), _mm512_max_ps(hi[2], hi[3]));
  *min = _mm512_reduce_min_ps(l);
  *max = _mm512_reduce_max_ps(h);
  *nonfinite = bad != 0;
}

void cq_f32_qu8__avx512(const float *x, size_t rows, size_t cols, size_t ldx, float inv_scale,
                        int32_t zp, uint8_t *y, size_t ldy) {
  const __m512 inv = _mm512_set1_ps(inv_scale);
  const __m512 lo = _mm512_set1_ps((float)-zp), hi = _mm512_set1_ps((float)(255 - zp));
  const __m512i vzp = _mm512_set1_epi32(zp);
  for (size_t r = 0; r < rows; r++) {
    const float *in = x + r * ldx;
    uint8_t *out = y + r * ldy;
    for (size_t c = 0; c < cols; c += 16) {
      const size_t n = cols - c < 16 ? cols - c : 16;
      const __mmask16 mask = (__mmask16)((1u << n) - 1);
      __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, in + c), inv);
      v = _mm512_min_ps(_mm512_max_ps(v, lo), hi);
      const __m512i q = _mm512_add_epi32(_mm512_cvtps_epi32(v), vzp);
      _mm512_mask_cvtepi32_storeu_epi8(out + c, mask, q);
    }
  }
}

/* AVX-512 activation range scan and quantization (see quantize.h). */
#include <immintrin.h>

#include "kernels/quantize/quantize.h"

void cq_f32_range__avx512(const float *x, size_t rows, size_t cols, size_t ld, float *min,
                          float *max, int *nonfinite) {
  __m512 lo = _mm512_set1_ps(x[0]), hi = lo;
  const __m512 inf = _mm512_set1_ps(__builtin_inff());
  __mmask16 bad = 0;
  for (size_t r = 0; r < rows; r++) {
    const float *row = x + r * ld;
    for (size_t c = 0; c < cols; c += 16) {
      const size_t n = cols - c < 16 ? cols - c : 16;
      const __mmask16 mask = (__mmask16)((1u << n) - 1);
      /* masked-off lanes keep the previous extremes (x[0] initially) */
      const __m512 v = _mm512_mask_loadu_ps(lo, mask, row + c);
      const __m512 u = _mm512_mask_loadu_ps(hi, mask, row + c);
      lo = _mm512_min_ps(lo, v);
      hi = _mm512_max_ps(hi, u);
      bad |= _mm512_mask_cmp_ps_mask(mask, _mm512_abs_ps(v), inf, _CMP_NLT_UQ);
    }
  }
  *min = _mm512_reduce_min_ps(lo);
  *max = _mm512_reduce_max_ps(hi);
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

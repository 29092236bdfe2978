/* AVX2 activation range scan and quantization (see quantize.h). */
#include <immintrin.h>

#include "kernels/quantize/quantize.h"

void cq_f32_range__avx2(const float *x, size_t rows, size_t cols, size_t ld, float *min,
                        float *max, int *nonfinite) {
  __m256 lo = _mm256_set1_ps(x[0]), hi = lo;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 inf = _mm256_set1_ps(__builtin_inff());
  __m256 bad = _mm256_setzero_ps();
  float tail_lo = x[0], tail_hi = x[0];
  int tail_bad = 0;
  for (size_t r = 0; r < rows; r++) {
    const float *row = x + r * ld;
    size_t c = 0;
    for (; c + 8 <= cols; c += 8) {
      const __m256 v = _mm256_loadu_ps(row + c);
      lo = _mm256_min_ps(lo, v);
      hi = _mm256_max_ps(hi, v);
      /* |v| < inf is false for NaN and +-inf */
      bad = _mm256_or_ps(bad, _mm256_cmp_ps(_mm256_and_ps(v, abs_mask), inf, _CMP_NLT_UQ));
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
  float l[8], h[8];
  _mm256_storeu_ps(l, lo);
  _mm256_storeu_ps(h, hi);
  for (int i = 0; i < 8; i++) {
    tail_lo = l[i] < tail_lo ? l[i] : tail_lo;
    tail_hi = h[i] > tail_hi ? h[i] : tail_hi;
  }
  *min = tail_lo;
  *max = tail_hi;
  *nonfinite = tail_bad || _mm256_movemask_ps(bad) != 0;
}

void cq_f32_qu8__avx2(const float *x, size_t rows, size_t cols, size_t ldx, float inv_scale,
                      int32_t zp, uint8_t *y, size_t ldy) {
  const __m256 inv = _mm256_set1_ps(inv_scale);
  const __m256 lo = _mm256_set1_ps((float)-zp), hi = _mm256_set1_ps((float)(255 - zp));
  const __m256i vzp = _mm256_set1_epi32(zp);
  for (size_t r = 0; r < rows; r++) {
    const float *in = x + r * ldx;
    uint8_t *out = y + r * ldy;
    size_t c = 0;
    for (; c + 8 <= cols; c += 8) {
      __m256 v = _mm256_mul_ps(_mm256_loadu_ps(in + c), inv);
      v = _mm256_min_ps(_mm256_max_ps(v, lo), hi);
      const __m256i q = _mm256_add_epi32(_mm256_cvtps_epi32(v), vzp);
      const __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
      _mm_storel_epi64((__m128i *)(out + c), _mm_packus_epi16(w16, w16));
    }
    if (c < cols) cq_f32_qu8__scalar(in + c, 1, cols - c, ldx, inv_scale, zp, out + c, ldy);
  }
}

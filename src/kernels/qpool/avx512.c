/* AVX-512 (F, BW, VL, DQ) pooling kernels (qpool.h): 64 bytes or 16 int32 per step, tails with
 * masked loads and stores; MaxPool2d(2) rows of fewer than 32 outputs take the AVX2 form. */
#include <immintrin.h>

#include "kernels/qpool/qpool.h"

static inline __mmask64 mask64(size_t k) {
  return k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << k) - 1);
}
static inline __mmask16 mask16(size_t k) {
  return k >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << k) - 1u);
}

static inline __m512i vmax(__m512i a, __m512i b, int s8) {
  return s8 ? _mm512_max_epi8(a, b) : _mm512_max_epu8(a, b);
}

void cq_qpool_max_rows__avx512(size_t n, const void *const *rows, size_t w, int acc, int s8,
                               void *y) {
  uint8_t *out = y;
  for (size_t i = 0; i < w; i += 64) {
    const __mmask64 m = mask64(w - i);
    __m512i v = _mm512_maskz_loadu_epi8(m, (const uint8_t *)rows[0] + i);
    for (size_t r = 1; r < n; r++) {
      v = vmax(v, _mm512_maskz_loadu_epi8(m, (const uint8_t *)rows[r] + i), s8);
    }
    if (acc) v = vmax(v, _mm512_maskz_loadu_epi8(m, out + i), s8);
    _mm512_mask_storeu_epi8(out + i, m, v);
  }
}

void cq_qpool_max_taps__avx512(size_t npos, size_t k, size_t d, const void *t, int s8, void *y) {
  const uint8_t *in = t;
  uint8_t *out = y;
  for (size_t p = 0; p < npos; p += 64) {
    const __mmask64 m = mask64(npos - p);
    __m512i v = _mm512_maskz_loadu_epi8(m, in + p);
    for (size_t j = 1; j < k; j++) v = vmax(v, _mm512_maskz_loadu_epi8(m, in + p + j * d), s8);
    _mm512_mask_storeu_epi8(out + p, m, v);
  }
}

void cq_qpool_pick2_bytes__avx512(size_t n, const void *t, void *y) {
  const uint8_t *in = t;
  uint8_t *out = y;
  const __m512i low = _mm512_set1_epi16(0x00ff);
  /* packus interleaves the 128-bit lanes of its operands; this restores the order */
  const __m512i order = _mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7);
  for (size_t i = 0; i < n; i += 64) {
    const size_t bytes = 2 * (n - i) - 1; /* readable bytes from in + 2 i */
    const __m512i a = _mm512_maskz_loadu_epi8(mask64(bytes), in + 2 * i);
    const __m512i b = _mm512_maskz_loadu_epi8(bytes > 64 ? mask64(bytes - 64) : 0, in + 2 * i + 64);
    const __m512i packed =
        _mm512_packus_epi16(_mm512_and_si512(a, low), _mm512_and_si512(b, low));
    _mm512_mask_storeu_epi8(out + i, mask64(n - i), _mm512_permutexvar_epi64(order, packed));
  }
}

/* 32 outputs of MaxPool2d(2) from the 64-byte stretches a (top row) and b (bottom row). */
static inline __m256i max_2x2s2_32(__m512i a, __m512i b, int s8) {
  const __m512i v = vmax(a, b, s8);
  if (s8) { /* the even and odd bytes sign-extended in 16-bit lanes */
    const __m512i even = _mm512_srai_epi16(_mm512_slli_epi16(v, 8), 8);
    return _mm512_cvtepi16_epi8(_mm512_max_epi16(even, _mm512_srai_epi16(v, 8)));
  }
  const __m512i even = _mm512_and_si512(v, _mm512_set1_epi16(0x00ff));
  return _mm512_cvtepi16_epi8(_mm512_max_epu16(even, _mm512_srli_epi16(v, 8)));
}

void cq_qpool_max_2x2s2__avx512(size_t nrows, size_t n, const void *x, size_t ld, size_t x_step,
                                int s8, void *y, size_t y_step) {
  if (n < 32) { /* short rows: the 16-output AVX2 steps beat masked 64-byte ones */
    cq_qpool_max_2x2s2__avx2(nrows, n, x, ld, x_step, s8, y, y_step);
    return;
  }
  for (size_t r = 0; r < nrows; r++) {
    const uint8_t *top = (const uint8_t *)x + r * x_step, *bottom = top + ld;
    uint8_t *out = (uint8_t *)y + r * y_step;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
      _mm256_storeu_si256((__m256i *)(out + i),
                          max_2x2s2_32(_mm512_loadu_si512(top + 2 * i),
                                       _mm512_loadu_si512(bottom + 2 * i), s8));
    }
    if (i < n) { /* one more block ending at the last output (recomputing a few is harmless) */
      const size_t last = n - 32;
      _mm256_storeu_si256((__m256i *)(out + last),
                          max_2x2s2_32(_mm512_loadu_si512(top + 2 * last),
                                       _mm512_loadu_si512(bottom + 2 * last), s8));
    }
  }
}

static inline __m512i widen16(const void *p, __mmask16 m, int s8) {
  const __m128i b = _mm_maskz_loadu_epi8(m, p);
  return s8 ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
}

void cq_qpool_sum_rows__avx512(size_t n, const void *const *rows, size_t w, int acc, int s8,
                               int32_t *y) {
  for (size_t i = 0; i < w; i += 16) {
    const __mmask16 m = mask16(w - i);
    __m512i s = acc ? _mm512_maskz_loadu_epi32(m, y + i) : _mm512_setzero_si512();
    for (size_t r = 0; r < n; r++) {
      s = _mm512_add_epi32(s, widen16((const uint8_t *)rows[r] + i, m, s8));
    }
    _mm512_mask_storeu_epi32(y + i, m, s);
  }
}

void cq_qpool_sum_taps__avx512(size_t npos, size_t k, const int32_t *t, int32_t *y) {
  for (size_t p = 0; p < npos; p += 16) {
    const __mmask16 m = mask16(npos - p);
    __m512i s = _mm512_maskz_loadu_epi32(m, t + p);
    for (size_t j = 1; j < k; j++) s = _mm512_add_epi32(s, _mm512_maskz_loadu_epi32(m, t + p + j));
    _mm512_mask_storeu_epi32(y + p, m, s);
  }
}

void cq_qpool_pick2_i32__avx512(size_t n, const int32_t *t, int32_t *y) {
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (size_t i = 0; i < n; i += 16) {
    const size_t words = 2 * (n - i) - 1; /* readable int32 from t + 2 i */
    const __m512i a = _mm512_maskz_loadu_epi32(mask16(words), t + 2 * i);
    const __m512i b = _mm512_maskz_loadu_epi32(words > 16 ? mask16(words - 16) : 0, t + 2 * i + 16);
    _mm512_mask_storeu_epi32(y + i, mask16(n - i), _mm512_permutex2var_epi32(a, even, b));
  }
}

void cq_qpool_finish__avx512(size_t n, const int32_t *sum, int32_t bias, float mult,
                             const cq_qpool_out *o, int s8, void *y) {
  (void)s8; /* the byte is the low byte of the value either way */
  const __m512i vbias = _mm512_set1_epi32(bias);
  const __m512 vmult = _mm512_set1_ps(mult), vzp = _mm512_set1_ps((float)o->zp);
  const int before = o->zp_before_rounding;
  const __m512i lo = _mm512_set1_epi32(before ? o->y_min : o->y_min - o->zp);
  const __m512i hi = _mm512_set1_epi32(before ? o->y_max : o->y_max - o->zp);
  const __m512i zp = _mm512_set1_epi32(before ? 0 : o->zp);
  uint8_t *out = y;
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = mask16(n - i);
    const __m512i acc = _mm512_add_epi32(_mm512_maskz_loadu_epi32(m, sum + i), vbias);
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(acc), vmult);
    if (before) f = _mm512_add_ps(f, vzp);
    /* cvtps2dq: ties to even, NaN and out-of-range give INT32_MIN (clamped to lo below) */
    __m512i r = _mm512_cvtps_epi32(f);
    r = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(r, lo), hi), zp);
    _mm_mask_storeu_epi8(out + i, m, _mm512_cvtepi32_epi8(r));
  }
}

int64_t cq_qpool_rect_sum__avx512(const void *x, size_t ld, size_t rows, size_t cols, int s8) {
  const uint8_t *in = x;
  const __m512i flip = _mm512_set1_epi8((char)0x80), zero = _mm512_setzero_si512();
  __m512i s = _mm512_setzero_si512();
  for (size_t r = 0; r < rows; r++) {
    const uint8_t *row = in + r * ld;
    for (size_t c = 0; c < cols; c += 64) {
      const __mmask64 m = mask64(cols - c);
      __m512i v = _mm512_maskz_loadu_epi8(m, row + c);
      /* int8 as uint8 + 128 (corrected below); the masked-off bytes stay 0 */
      if (s8) v = _mm512_maskz_mov_epi8(m, _mm512_xor_si512(v, flip));
      s = _mm512_add_epi64(s, _mm512_sad_epu8(v, zero));
    }
  }
  const int64_t total = _mm512_reduce_add_epi64(s);
  return s8 ? total - 128 * (int64_t)(rows * cols) : total;
}

/* AVX2 pooling kernels (qpool.h): 32 bytes or 8 int32 per step; the last few elements go through
 * the scalar forms. */
#include <immintrin.h>

#include "kernels/qpool/qpool.h"

static inline __m256i vmax(__m256i a, __m256i b, int s8) {
  return s8 ? _mm256_max_epi8(a, b) : _mm256_max_epu8(a, b);
}

static inline __m256i load32(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* The pure kernels below (the output a function of inputs it does not overlap) finish a length
 * that is not a multiple of the vector width with one more vector ending at the last element,
 * recomputing a few elements; max_rows may, as max is idempotent even when accumulating. */

static inline __m256i max_rows32(size_t n, const void *const *rows, size_t i, int acc, int s8,
                                 const uint8_t *out) {
  __m256i v = load32((const uint8_t *)rows[0] + i);
  for (size_t r = 1; r < n; r++) v = vmax(v, load32((const uint8_t *)rows[r] + i), s8);
  return acc ? vmax(v, load32(out + i), s8) : v;
}

void cq_qpool_max_rows__avx2(size_t n, const void *const *rows, size_t w, int acc, int s8,
                             void *y) {
  uint8_t *out = y;
  if (w < 32) {
    cq_qpool_max_rows__scalar(n, rows, w, acc, s8, y);
    return;
  }
  size_t i = 0;
  for (; i + 32 <= w; i += 32) {
    _mm256_storeu_si256((__m256i *)(out + i), max_rows32(n, rows, i, acc, s8, out));
  }
  if (i < w) {
    _mm256_storeu_si256((__m256i *)(out + w - 32), max_rows32(n, rows, w - 32, acc, s8, out));
  }
}

static inline __m256i max_taps32(const uint8_t *in, size_t k, size_t d, int s8) {
  __m256i v = load32(in);
  for (size_t j = 1; j < k; j++) v = vmax(v, load32(in + j * d), s8);
  return v;
}

void cq_qpool_max_taps__avx2(size_t npos, size_t k, size_t d, const void *t, int s8, void *y) {
  const uint8_t *in = t;
  uint8_t *out = y;
  if (npos < 32) {
    cq_qpool_max_taps__scalar(npos, k, d, t, s8, y);
    return;
  }
  size_t p = 0;
  for (; p + 32 <= npos; p += 32) {
    _mm256_storeu_si256((__m256i *)(out + p), max_taps32(in + p, k, d, s8));
  }
  if (p < npos) {
    _mm256_storeu_si256((__m256i *)(out + npos - 32), max_taps32(in + npos - 32, k, d, s8));
  }
}

/* 32 output bytes from in[0..62] (64 bytes read: the caller keeps in + 63 readable) */
static inline __m256i pick2_32(const uint8_t *in, __m256i low) {
  const __m256i a = _mm256_and_si256(load32(in), low);
  const __m256i b = _mm256_and_si256(load32(in + 32), low);
  /* packus interleaves the 128-bit lanes of its operands; the permute restores the order */
  return _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xd8);
}

void cq_qpool_pick2_bytes__avx2(size_t n, const void *t, void *y) {
  const uint8_t *in = t;
  uint8_t *out = y;
  const __m256i low = _mm256_set1_epi16(0x00ff);
  /* t holds 2 n - 1 bytes: a step at i reads up to in[2 i + 63], so i <= n - 33 */
  if (n < 33) {
    cq_qpool_pick2_bytes__scalar(n, t, y);
    return;
  }
  size_t i = 0;
  for (; i + 33 <= n; i += 32) _mm256_storeu_si256((__m256i *)(out + i), pick2_32(in + 2 * i, low));
  if (i < n) {
    const size_t last = n - 33;
    _mm256_storeu_si256((__m256i *)(out + last), pick2_32(in + 2 * last, low));
    out[n - 1] = in[2 * (n - 1)];
  }
}

/* 16 outputs of MaxPool2d(2) from 32 bytes of the top and bottom rows. */
static inline __m128i max_2x2s2_16(const uint8_t *top, const uint8_t *bottom, int s8) {
  const __m256i v = vmax(load32(top), load32(bottom), s8);
  __m256i p;
  if (s8) { /* the even and odd bytes sign-extended in 16-bit lanes */
    p = _mm256_max_epi16(_mm256_srai_epi16(_mm256_slli_epi16(v, 8), 8), _mm256_srai_epi16(v, 8));
    p = _mm256_packs_epi16(p, p);
  } else {
    p = _mm256_max_epu16(_mm256_and_si256(v, _mm256_set1_epi16(0x00ff)), _mm256_srli_epi16(v, 8));
    p = _mm256_packus_epi16(p, p);
  }
  /* the packs leave the two halves' 8 bytes in 64-bit lanes 0 and 2 */
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(p, 0x08));
}

void cq_qpool_max_2x2s2__avx2(size_t nrows, size_t n, const void *x, size_t ld, size_t x_step,
                              int s8, void *y, size_t y_step) {
  if (n < 16) {
    cq_qpool_max_2x2s2__scalar(nrows, n, x, ld, x_step, s8, y, y_step);
    return;
  }
  for (size_t r = 0; r < nrows; r++) {
    const uint8_t *top = (const uint8_t *)x + r * x_step, *bottom = top + ld;
    uint8_t *out = (uint8_t *)y + r * y_step;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
      _mm_storeu_si128((__m128i *)(out + i), max_2x2s2_16(top + 2 * i, bottom + 2 * i, s8));
    }
    if (i < n) {
      const size_t last = n - 16;
      _mm_storeu_si128((__m128i *)(out + last),
                       max_2x2s2_16(top + 2 * last, bottom + 2 * last, s8));
    }
  }
}

static inline __m256i widen8(const void *p, int s8) {
  const __m128i b = _mm_loadl_epi64((const __m128i *)p);
  return s8 ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b);
}

void cq_qpool_sum_rows__avx2(size_t n, const void *const *rows, size_t w, int acc, int s8,
                             int32_t *y) {
  size_t i = 0;
  for (; i + 8 <= w; i += 8) {
    __m256i s = acc ? load32(y + i) : _mm256_setzero_si256();
    for (size_t r = 0; r < n; r++) {
      s = _mm256_add_epi32(s, widen8((const uint8_t *)rows[r] + i, s8));
    }
    _mm256_storeu_si256((__m256i *)(y + i), s);
  }
  if (i < w) {
    const void *rest[8];
    for (size_t r = 0; r < n; r++) rest[r] = (const uint8_t *)rows[r] + i;
    cq_qpool_sum_rows__scalar(n, rest, w - i, acc, s8, y + i);
  }
}

static inline __m256i sum_taps8(const int32_t *t, size_t k) {
  __m256i s = load32(t);
  for (size_t j = 1; j < k; j++) s = _mm256_add_epi32(s, load32(t + j));
  return s;
}

void cq_qpool_sum_taps__avx2(size_t npos, size_t k, const int32_t *t, int32_t *y) {
  if (npos < 8) {
    cq_qpool_sum_taps__scalar(npos, k, t, y);
    return;
  }
  size_t p = 0;
  for (; p + 8 <= npos; p += 8) _mm256_storeu_si256((__m256i *)(y + p), sum_taps8(t + p, k));
  if (p < npos) _mm256_storeu_si256((__m256i *)(y + npos - 8), sum_taps8(t + npos - 8, k));
}

/* 8 outputs from t[0..14] (16 words read: the caller keeps t + 15 readable) */
static inline __m256i pick2_8(const int32_t *t) {
  const __m256i even_first = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const __m256i a = _mm256_permutevar8x32_epi32(load32(t), even_first);
  const __m256i b = _mm256_permutevar8x32_epi32(load32(t + 8), even_first);
  return _mm256_permute2x128_si256(a, b, 0x20);
}

void cq_qpool_pick2_i32__avx2(size_t n, const int32_t *t, int32_t *y) {
  /* t holds 2 n - 1 words: a step at i reads up to t[2 i + 15], so i <= n - 9 */
  if (n < 9) {
    cq_qpool_pick2_i32__scalar(n, t, y);
    return;
  }
  size_t i = 0;
  for (; i + 9 <= n; i += 8) _mm256_storeu_si256((__m256i *)(y + i), pick2_8(t + 2 * i));
  if (i < n) {
    const size_t last = n - 9;
    _mm256_storeu_si256((__m256i *)(y + last), pick2_8(t + 2 * last));
    y[n - 1] = t[2 * (n - 1)];
  }
}

typedef struct finish_consts {
  __m256i bias, lo, hi, zp;
  __m256 mult, fzp;
  int before, s8;
} finish_consts;

static inline void finish8(const int32_t *sum, const finish_consts *k, uint8_t *out) {
  const __m256i acc = _mm256_add_epi32(load32(sum), k->bias);
  __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(acc), k->mult);
  if (k->before) f = _mm256_add_ps(f, k->fzp);
  /* cvtps2dq: ties to even, NaN and out-of-range give INT32_MIN (clamped to lo below) */
  __m256i r = _mm256_cvtps_epi32(f);
  r = _mm256_add_epi32(_mm256_min_epi32(_mm256_max_epi32(r, k->lo), k->hi), k->zp);
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  _mm_storel_epi64((__m128i *)out, k->s8 ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w));
}

void cq_qpool_finish__avx2(size_t n, const int32_t *sum, int32_t bias, float mult,
                           const cq_qpool_out *o, int s8, void *y) {
  if (n < 8) {
    cq_qpool_finish__scalar(n, sum, bias, mult, o, s8, y);
    return;
  }
  finish_consts k;
  k.before = o->zp_before_rounding;
  k.s8 = s8;
  k.bias = _mm256_set1_epi32(bias);
  k.mult = _mm256_set1_ps(mult);
  k.fzp = _mm256_set1_ps((float)o->zp);
  k.lo = _mm256_set1_epi32(k.before ? o->y_min : o->y_min - o->zp);
  k.hi = _mm256_set1_epi32(k.before ? o->y_max : o->y_max - o->zp);
  k.zp = _mm256_set1_epi32(k.before ? 0 : o->zp);
  uint8_t *out = y;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) finish8(sum + i, &k, out + i);
  if (i < n) finish8(sum + n - 8, &k, out + n - 8);
}

int64_t cq_qpool_rect_sum__avx2(const void *x, size_t ld, size_t rows, size_t cols, int s8) {
  if (cols < 32) return cq_qpool_rect_sum__scalar(x, ld, rows, cols, s8);
  /* a row's last cols % 32 bytes: the vector ending at the row's end, its first bytes masked */
  static const uint8_t keep_last[64] = {
      0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
      0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
      0,    0,    0,    0,    0,    0,    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
      0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  const uint8_t *in = x;
  const size_t rem = cols % 32;
  const __m256i flip = _mm256_set1_epi8((char)0x80), zero = _mm256_setzero_si256();
  const __m256i tail_mask = load32(keep_last + rem);
  __m256i s = _mm256_setzero_si256();
  for (size_t r = 0; r < rows; r++) {
    const uint8_t *row = in + r * ld;
    size_t c = 0;
    for (; c + 32 <= cols; c += 32) {
      __m256i v = load32(row + c);
      if (s8) v = _mm256_xor_si256(v, flip); /* int8 as uint8 + 128, corrected below */
      s = _mm256_add_epi64(s, _mm256_sad_epu8(v, zero));
    }
    if (rem) {
      __m256i v = load32(row + cols - 32);
      if (s8) v = _mm256_xor_si256(v, flip);
      s = _mm256_add_epi64(s, _mm256_sad_epu8(_mm256_and_si256(v, tail_mask), zero));
    }
  }
  int64_t lanes[4];
  _mm256_storeu_si256((__m256i *)lanes, s);
  const int64_t total = lanes[0] + lanes[1] + lanes[2] + lanes[3];
  return s8 ? total - 128 * (int64_t)(rows * cols) : total;
}

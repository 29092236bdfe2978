/* AVX2 elementwise kernels (qelementwise.h): 32 bytes per step for clamp, 8 lanes of int32 / float
 * for the arithmetic ones; the last few elements go through the scalar forms. */
#include <immintrin.h>

#include "kernels/qelementwise/qelementwise.h"

void cq_qu8_vclamp__avx2(size_t n, const uint8_t *x, uint8_t lo, uint8_t hi, uint8_t *y) {
  const __m256i vlo = _mm256_set1_epi8((char)lo), vhi = _mm256_set1_epi8((char)hi);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
    _mm256_storeu_si256((__m256i *)(y + i), _mm256_min_epu8(_mm256_max_epu8(v, vlo), vhi));
  }
  cq_qu8_vclamp__scalar(n - i, x + i, lo, hi, y + i);
}

void cq_qs8_vclamp__avx2(size_t n, const int8_t *x, int8_t lo, int8_t hi, int8_t *y) {
  const __m256i vlo = _mm256_set1_epi8(lo), vhi = _mm256_set1_epi8(hi);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
    _mm256_storeu_si256((__m256i *)(y + i), _mm256_min_epi8(_mm256_max_epi8(v, vlo), vhi));
  }
  cq_qs8_vclamp__scalar(n - i, x + i, lo, hi, y + i);
}

/* ---- QNNPACK add -------------------------------------------------------------------------------- */

static inline __m256i load8_u8(const uint8_t *x) {
  return _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)x));
}

void cq_qu8_vadd_qnnpack__avx2(size_t n, const uint8_t *a, const uint8_t *b,
                               const cq_qadd_qnnpack_params *p, uint8_t *y) {
  const __m256i zp_product = _mm256_set1_epi32(p->zp_product);
  const __m256i a_mult = _mm256_set1_epi32((int32_t)p->a_mult);
  const __m256i b_mult = _mm256_set1_epi32((int32_t)p->b_mult);
  const __m256i rem_mask = _mm256_set1_epi32(p->rem_mask);
  const __m256i rem_threshold = _mm256_set1_epi32(p->rem_threshold);
  const __m128i shift = _mm_cvtsi32_si128((int)p->shift);
  const __m128i y_zp = _mm_set1_epi16((short)p->y_zp), y_min = _mm_set1_epi16((short)p->y_min);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i acc = _mm256_add_epi32(
        _mm256_add_epi32(zp_product, _mm256_mullo_epi32(load8_u8(a + i), a_mult)),
        _mm256_mullo_epi32(load8_u8(b + i), b_mult));
    const __m256i rem =
        _mm256_add_epi32(_mm256_and_si256(acc, rem_mask), _mm256_srai_epi32(acc, 31));
    /* the comparison gives -1 where the remainder rounds up */
    const __m256i v = _mm256_sub_epi32(_mm256_sra_epi32(acc, shift),
                                       _mm256_cmpgt_epi32(rem, rem_threshold));
    __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    w = _mm_max_epi16(_mm_adds_epi16(w, y_zp), y_min);
    _mm_storel_epi64((__m128i *)(y + i), _mm_packus_epi16(w, w));
  }
  cq_qu8_vadd_qnnpack__scalar(n - i, a + i, b + i, p, y + i);
}

/* ---- ATen add and requantization ---------------------------------------------------------------- */

typedef struct dequant_consts {
  __m256 scale, zp, premul;
} dequant_consts;

typedef struct quant_consts {
  __m256 inv_scale, zp, lo, hi, limit;
} quant_consts;

static inline dequant_consts dequant_init(const cq_qdequant_params *p) {
  dequant_consts k;
  k.scale = _mm256_set1_ps(p->scale);
  k.zp = _mm256_set1_ps(p->zp);
  k.premul = _mm256_set1_ps(p->premul);
  return k;
}

static inline quant_consts quant_init(const cq_qquant_params *p) {
  quant_consts k;
  k.inv_scale = _mm256_set1_ps(p->inv_scale);
  k.zp = _mm256_set1_ps((float)p->zp);
  k.lo = _mm256_set1_ps((float)p->y_min);
  k.hi = _mm256_set1_ps((float)p->y_max);
  k.limit = _mm256_set1_ps(9223372036854775808.0f);
  return k;
}

static inline __m256 load8(const void *x, int s8) {
  const __m128i b = _mm_loadl_epi64((const __m128i *)x);
  return _mm256_cvtepi32_ps(s8 ? _mm256_cvtepi8_epi32(b) : _mm256_cvtepu8_epi32(b));
}

static inline __m256 dequant(__m256 q, int fused, const dequant_consts *k) {
  return fused ? _mm256_fmadd_ps(k->scale, q, k->premul)
               : _mm256_mul_ps(_mm256_sub_ps(q, k->zp), k->scale);
}

/* quantize_val (see the AVX-512 form): values not below 2^63 (ordered) give the minimum. */
static inline void quant_store8(__m256 c, const quant_consts *k, void *y, int s8) {
  const __m256 r = _mm256_round_ps(_mm256_mul_ps(c, k->inv_scale),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m256 v = _mm256_add_ps(k->zp, r);
  const __m256 ok = _mm256_cmp_ps(v, k->limit, _CMP_LT_OQ);
  const __m256 clamped =
      _mm256_blendv_ps(k->lo, _mm256_min_ps(_mm256_max_ps(v, k->lo), k->hi), ok);
  const __m256i q = _mm256_cvtps_epi32(clamped);
  const __m128i w = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
  _mm_storel_epi64((__m128i *)y, s8 ? _mm_packs_epi16(w, w) : _mm_packus_epi16(w, w));
}

/* Whole groups of 8 elements of [0, n); returns how many were done. */
static inline size_t add_range(size_t n, int fused, const void *a, const void *b,
                               const cq_qadd_aten_params *p, void *y, int s8) {
  const dequant_consts ka = dequant_init(&p->a), kb = dequant_init(&p->b);
  const quant_consts ky = quant_init(&p->y);
  const __m256 zero = _mm256_setzero_ps();
  const char *pa = a, *pb = b;
  char *py = y;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m256 c = _mm256_add_ps(dequant(load8(pa + i, s8), fused, &ka),
                             dequant(load8(pb + i, s8), fused, &kb));
    if (p->relu) c = _mm256_max_ps(c, zero); /* c > 0 ? c : +0 (NaN and -0 give +0) */
    quant_store8(c, &ky, py + i, s8);
  }
  return i;
}

void cq_qu8_vadd_aten__avx2(size_t n, size_t fused, const uint8_t *a, const uint8_t *b,
                            const cq_qadd_aten_params *p, uint8_t *y) {
  const size_t f = add_range(fused, 1, a, b, p, y, 0);
  cq_qu8_vadd_aten__scalar(fused - f, fused - f, a + f, b + f, p, y + f);
  const size_t r = add_range(n - fused, 0, a + fused, b + fused, p, y + fused, 0);
  cq_qu8_vadd_aten__scalar(n - fused - r, 0, a + fused + r, b + fused + r, p, y + fused + r);
}

void cq_qs8_vadd_aten__avx2(size_t n, size_t fused, const int8_t *a, const int8_t *b,
                            const cq_qadd_aten_params *p, int8_t *y) {
  const size_t f = add_range(fused, 1, a, b, p, y, 1);
  cq_qs8_vadd_aten__scalar(fused - f, fused - f, a + f, b + f, p, y + f);
  const size_t r = add_range(n - fused, 0, a + fused, b + fused, p, y + fused, 1);
  cq_qs8_vadd_aten__scalar(n - fused - r, 0, a + fused + r, b + fused + r, p, y + fused + r);
}

static inline size_t requant_range(size_t n, int fused, const void *x,
                                   const cq_qdequant_params *dq, const cq_qquant_params *q,
                                   void *y, int s8) {
  const dequant_consts kx = dequant_init(dq);
  const quant_consts ky = quant_init(q);
  const char *px = x;
  char *py = y;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) quant_store8(dequant(load8(px + i, s8), fused, &kx), &ky, py + i, s8);
  return i;
}

void cq_qu8_vrequant__avx2(size_t n, size_t fused, const uint8_t *x, const cq_qdequant_params *dq,
                           const cq_qquant_params *q, uint8_t *y) {
  const size_t f = requant_range(fused, 1, x, dq, q, y, 0);
  cq_qu8_vrequant__scalar(fused - f, fused - f, x + f, dq, q, y + f);
  const size_t r = requant_range(n - fused, 0, x + fused, dq, q, y + fused, 0);
  cq_qu8_vrequant__scalar(n - fused - r, 0, x + fused + r, dq, q, y + fused + r);
}

void cq_qs8_vrequant__avx2(size_t n, size_t fused, const int8_t *x, const cq_qdequant_params *dq,
                           const cq_qquant_params *q, int8_t *y) {
  const size_t f = requant_range(fused, 1, x, dq, q, y, 1);
  cq_qs8_vrequant__scalar(fused - f, fused - f, x + f, dq, q, y + f);
  const size_t r = requant_range(n - fused, 0, x + fused, dq, q, y + fused, 1);
  cq_qs8_vrequant__scalar(n - fused - r, 0, x + fused + r, dq, q, y + fused + r);
}

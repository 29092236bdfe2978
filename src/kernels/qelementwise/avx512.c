/* AVX-512 (F, BW, VL, DQ) elementwise kernels (qelementwise.h): 64 bytes per step for clamp, 16
 * lanes of int32 / float for the arithmetic ones; tails with masked loads and stores. */
#include <immintrin.h>

#include "kernels/qelementwise/qelementwise.h"

static inline __mmask16 mask16(size_t k) { return (__mmask16)((1u << k) - 1u); }
static inline __mmask64 mask64(size_t k) {
  return k >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << k) - 1);
}

void cq_qu8_vclamp__avx512(size_t n, const uint8_t *x, uint8_t lo, uint8_t hi, uint8_t *y) {
  const __m512i vlo = _mm512_set1_epi8((char)lo), vhi = _mm512_set1_epi8((char)hi);
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i v = _mm512_loadu_si512(x + i);
    _mm512_storeu_si512(y + i, _mm512_min_epu8(_mm512_max_epu8(v, vlo), vhi));
  }
  if (i < n) {
    const __mmask64 m = mask64(n - i);
    const __m512i v = _mm512_maskz_loadu_epi8(m, x + i);
    _mm512_mask_storeu_epi8(y + i, m, _mm512_min_epu8(_mm512_max_epu8(v, vlo), vhi));
  }
}

void cq_qs8_vclamp__avx512(size_t n, const int8_t *x, int8_t lo, int8_t hi, int8_t *y) {
  const __m512i vlo = _mm512_set1_epi8(lo), vhi = _mm512_set1_epi8(hi);
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    const __m512i v = _mm512_loadu_si512(x + i);
    _mm512_storeu_si512(y + i, _mm512_min_epi8(_mm512_max_epi8(v, vlo), vhi));
  }
  if (i < n) {
    const __mmask64 m = mask64(n - i);
    const __m512i v = _mm512_maskz_loadu_epi8(m, x + i);
    _mm512_mask_storeu_epi8(y + i, m, _mm512_min_epi8(_mm512_max_epi8(v, vlo), vhi));
  }
}

/* ---- QNNPACK add -------------------------------------------------------------------------------- */

typedef struct qnnpack_consts {
  __m512i zp_product, a_mult, b_mult, rem_mask, rem_threshold, one;
  __m128i shift;
  __m256i y_zp, y_min;
} qnnpack_consts;

static inline void qnnpack_add16(const uint8_t *a, const uint8_t *b, uint8_t *y, __mmask16 m,
                                 const qnnpack_consts *k) {
  const __m512i va = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, a));
  const __m512i vb = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, b));
  const __m512i acc = _mm512_add_epi32(
      _mm512_add_epi32(k->zp_product, _mm512_mullo_epi32(va, k->a_mult)),
      _mm512_mullo_epi32(vb, k->b_mult));
  /* rem = (acc & mask) - (acc < 0); the sign shift gives -1 for negative accumulators */
  const __m512i rem =
      _mm512_add_epi32(_mm512_and_si512(acc, k->rem_mask), _mm512_srai_epi32(acc, 31));
  __m512i v = _mm512_sra_epi32(acc, k->shift);
  v = _mm512_mask_add_epi32(v, _mm512_cmpgt_epi32_mask(rem, k->rem_threshold), v, k->one);
  __m256i w = _mm512_cvtsepi32_epi16(v); /* int16 saturation */
  w = _mm256_max_epi16(_mm256_adds_epi16(w, k->y_zp), k->y_min);
  _mm_mask_storeu_epi8(y, m, _mm256_cvtusepi16_epi8(w)); /* >= 0 here: min(w, 255) */
}

void cq_qu8_vadd_qnnpack__avx512(size_t n, const uint8_t *a, const uint8_t *b,
                                 const cq_qadd_qnnpack_params *p, uint8_t *y) {
  qnnpack_consts k;
  k.zp_product = _mm512_set1_epi32(p->zp_product);
  k.a_mult = _mm512_set1_epi32((int32_t)p->a_mult);
  k.b_mult = _mm512_set1_epi32((int32_t)p->b_mult);
  k.rem_mask = _mm512_set1_epi32(p->rem_mask);
  k.rem_threshold = _mm512_set1_epi32(p->rem_threshold);
  k.one = _mm512_set1_epi32(1);
  k.shift = _mm_cvtsi32_si128((int)p->shift);
  k.y_zp = _mm256_set1_epi16((short)p->y_zp);
  k.y_min = _mm256_set1_epi16((short)p->y_min);
  size_t i = 0;
  for (; i + 64 <= n; i += 64) {
    for (size_t j = 0; j < 64; j += 16) qnnpack_add16(a + i + j, b + i + j, y + i + j, 0xffff, &k);
  }
  for (; i < n; i += 16) {
    const size_t r = n - i < 16 ? n - i : 16;
    qnnpack_add16(a + i, b + i, y + i, mask16(r), &k);
  }
}

/* ---- ATen add and requantization ---------------------------------------------------------------- */

typedef struct dequant_consts {
  __m512 scale, zp, premul;
} dequant_consts;

typedef struct quant_consts {
  __m512 inv_scale, zp, lo, hi, limit;
} quant_consts;

static inline dequant_consts dequant_init(const cq_qdequant_params *p) {
  dequant_consts k;
  k.scale = _mm512_set1_ps(p->scale);
  k.zp = _mm512_set1_ps(p->zp);
  k.premul = _mm512_set1_ps(p->premul);
  return k;
}

static inline quant_consts quant_init(const cq_qquant_params *p) {
  quant_consts k;
  k.inv_scale = _mm512_set1_ps(p->inv_scale);
  k.zp = _mm512_set1_ps((float)p->zp);
  k.lo = _mm512_set1_ps((float)p->y_min);
  k.hi = _mm512_set1_ps((float)p->y_max);
  k.limit = _mm512_set1_ps(9223372036854775808.0f);
  return k;
}

static inline __m512 load16(const void *x, __mmask16 m, int s8) {
  const __m128i b = _mm_maskz_loadu_epi8(m, x);
  return _mm512_cvtepi32_ps(s8 ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b));
}

static inline __m512 dequant(__m512 q, int fused, const dequant_consts *k) {
  return fused ? _mm512_fmadd_ps(k->scale, q, k->premul)
               : _mm512_mul_ps(_mm512_sub_ps(q, k->zp), k->scale);
}

/* quantize_val: zp + rne(c * inv) in float; below 2^63 (ordered) it clamps to the range, anything
 * else (NaN, +inf, >= 2^63) converts to INT64_MIN on x86, i.e. the range's minimum. */
static inline void quant_store16(__m512 c, const quant_consts *k, void *y, __mmask16 m) {
  const __m512 r = _mm512_roundscale_ps(_mm512_mul_ps(c, k->inv_scale),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 v = _mm512_add_ps(k->zp, r);
  const __mmask16 ok = _mm512_cmp_ps_mask(v, k->limit, _CMP_LT_OQ);
  const __m512 clamped =
      _mm512_mask_mov_ps(k->lo, ok, _mm512_min_ps(_mm512_max_ps(v, k->lo), k->hi));
  _mm_mask_storeu_epi8(y, m, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(clamped)));
}

static inline void add_range(size_t n, int fused, const void *a, const void *b,
                             const cq_qadd_aten_params *p, void *y, int s8) {
  const dequant_consts ka = dequant_init(&p->a), kb = dequant_init(&p->b);
  const quant_consts ky = quant_init(&p->y);
  const __m512 zero = _mm512_setzero_ps();
  const char *pa = a, *pb = b;
  char *py = y;
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i < 16 ? mask16(n - i) : (__mmask16)0xffff;
    __m512 c = _mm512_add_ps(dequant(load16(pa + i, m, s8), fused, &ka),
                             dequant(load16(pb + i, m, s8), fused, &kb));
    if (p->relu) c = _mm512_max_ps(c, zero); /* c > 0 ? c : +0 (NaN and -0 give +0) */
    quant_store16(c, &ky, py + i, m);
  }
}

void cq_qu8_vadd_aten__avx512(size_t n, size_t fused, const uint8_t *a, const uint8_t *b,
                              const cq_qadd_aten_params *p, uint8_t *y) {
  add_range(fused, 1, a, b, p, y, 0);
  add_range(n - fused, 0, a + fused, b + fused, p, y + fused, 0);
}

void cq_qs8_vadd_aten__avx512(size_t n, size_t fused, const int8_t *a, const int8_t *b,
                              const cq_qadd_aten_params *p, int8_t *y) {
  add_range(fused, 1, a, b, p, y, 1);
  add_range(n - fused, 0, a + fused, b + fused, p, y + fused, 1);
}

static inline void requant_range(size_t n, int fused, const void *x, const cq_qdequant_params *dq,
                                 const cq_qquant_params *q, void *y, int s8) {
  const dequant_consts kx = dequant_init(dq);
  const quant_consts ky = quant_init(q);
  const char *px = x;
  char *py = y;
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i < 16 ? mask16(n - i) : (__mmask16)0xffff;
    quant_store16(dequant(load16(px + i, m, s8), fused, &kx), &ky, py + i, m);
  }
}

void cq_qu8_vrequant__avx512(size_t n, size_t fused, const uint8_t *x,
                             const cq_qdequant_params *dq, const cq_qquant_params *q, uint8_t *y) {
  requant_range(fused, 1, x, dq, q, y, 0);
  requant_range(n - fused, 0, x + fused, dq, q, y + fused, 0);
}

void cq_qs8_vrequant__avx512(size_t n, size_t fused, const int8_t *x, const cq_qdequant_params *dq,
                             const cq_qquant_params *q, int8_t *y) {
  requant_range(fused, 1, x, dq, q, y, 1);
  requant_range(n - fused, 0, x + fused, dq, q, y + fused, 1);
}

/* AVX2 forms of the requantization stages of requant.h, 8 channels at a time. Included only by
 * files compiled with AVX2 enabled (…/avx2.c). Bit-exact with the scalar forms (see
 * avx512-inl.h for the instruction semantics relied on); no FMA is used. */
#ifndef CQ_KERNELS_REQUANT_AVX2_INL_H
#define CQ_KERNELS_REQUANT_AVX2_INL_H

#include <immintrin.h>
#include <string.h>

#include "kernels/requant/requant.h"

typedef struct cq_rq256 {
  __m256i zp, lo, hi;
  __m256 lo_f, hi_f;
  __m256i int16_max, int16_min;
} cq_rq256;

static inline cq_rq256 cq_rq256_init(const cq_requant_params *p) {
  cq_rq256 c;
  c.zp = _mm256_set1_epi32(p->y_zp);
  c.lo = _mm256_set1_epi32(p->y_min);
  c.hi = _mm256_set1_epi32(p->y_max);
  c.lo_f = _mm256_set1_ps((float)(p->y_min - p->y_zp));
  c.hi_f = _mm256_set1_ps((float)(p->y_max - p->y_zp));
  c.int16_max = _mm256_set1_epi32(32767);
  c.int16_min = _mm256_set1_epi32(-32768);
  return c;
}

static inline __m256i cq_rq256_u8_int(const cq_rq256 *c, __m256i acc, __m256 mult) {
  __m256i r = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), mult));
  r = _mm256_max_epi32(_mm256_min_epi32(r, c->int16_max), c->int16_min);
  r = _mm256_add_epi32(r, c->zp);
  return _mm256_max_epi32(_mm256_min_epi32(r, c->hi), c->lo);
}

static inline __m256i cq_rq256_u8_float(const cq_rq256 *c, __m256i acc, __m256 scale, __m256 fbias,
                                        __m256 mult) {
  __m256 v = _mm256_mul_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), scale), fbias), mult);
  v = _mm256_min_ps(_mm256_max_ps(v, c->lo_f), c->hi_f);
  return _mm256_add_epi32(_mm256_cvtps_epi32(v), c->zp);
}

static inline __m256 cq_rq256_f32(__m256i acc, __m256 scale, __m256 fbias, __m256 mult,
                                  __m256 obias, int relu) {
  __m256 y = _mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(acc), scale), fbias);
  y = _mm256_add_ps(_mm256_mul_ps(y, mult), obias);
  return relu ? _mm256_max_ps(y, _mm256_setzero_ps()) : y;
}

/* Stores the first n (1..8) int32 lanes, all within [0, 255], as bytes. */
static inline void cq_rq256_store_u8(uint8_t *y, __m256i r, size_t n) {
  __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));
  __m128i b8 = _mm_packus_epi16(w16, w16);
  if (n == 8) {
    _mm_storel_epi64((__m128i *)y, b8);
  } else {
    uint8_t tmp[16];
    _mm_storeu_si128((__m128i *)tmp, b8);
    memcpy(y, tmp, n);
  }
}

/* Requantizes 8 accumulators of channels c..c+7 and stores the first n (1..8) to y. */
static inline void cq_rq256_store(const cq_requant_params *p, const cq_rq256 *k, __m256i acc,
                                  size_t c, void *y, size_t n) {
  switch (p->kind) {
    case CQ_OUT_U8_INT: {
      acc = _mm256_add_epi32(acc, _mm256_loadu_si256((const __m256i *)(p->ibias + c)));
      cq_rq256_store_u8(y, cq_rq256_u8_int(k, acc, _mm256_loadu_ps(p->mult + c)), n);
      break;
    }
    case CQ_OUT_U8_FLOAT: {
      __m256i r = cq_rq256_u8_float(k, acc, _mm256_loadu_ps(p->scale + c),
                                    _mm256_loadu_ps(p->fbias + c), _mm256_loadu_ps(p->mult + c));
      cq_rq256_store_u8(y, r, n);
      break;
    }
    default: {
      __m256 r = cq_rq256_f32(acc, _mm256_loadu_ps(p->scale + c), _mm256_loadu_ps(p->fbias + c),
                              _mm256_loadu_ps(p->mult + c), _mm256_loadu_ps(p->obias + c), p->relu);
      if (n == 8) {
        _mm256_storeu_ps(y, r);
      } else {
        float tmp[8];
        _mm256_storeu_ps(tmp, r);
        memcpy(y, tmp, n * sizeof(float));
      }
      break;
    }
  }
}

#endif

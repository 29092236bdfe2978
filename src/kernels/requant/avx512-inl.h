/* AVX-512 forms of the requantization stages of requant.h, 16 channels at a time. Included only by
 * files compiled with AVX-512 F/BW/VL/DQ enabled (…/avx512.c, …/avx512vnni.c, …/amx.c). Each
 * function equals its scalar twin in requant.h bit for bit: cvtps2dq rounds ties-to-even under
 * the default MXCSR and yields INT32_MIN for NaN and out-of-range values, max_ps/min_ps return
 * the second operand when either is NaN, and no FMA is used. */
#ifndef CQ_KERNELS_REQUANT_AVX512_INL_H
#define CQ_KERNELS_REQUANT_AVX512_INL_H

#include <immintrin.h>

#include "kernels/requant/requant.h"

/* Broadcast constants of one parameter record. */
typedef struct cq_rq512 {
  __m512i zp, lo, hi;
  __m512 lo_f, hi_f; /* lo - zp, hi - zp as floats (U8_FLOAT) */
  __m512i int16_max, int16_min;
} cq_rq512;

static inline cq_rq512 cq_rq512_init(const cq_requant_params *p) {
  cq_rq512 c;
  c.zp = _mm512_set1_epi32(p->y_zp);
  c.lo = _mm512_set1_epi32(p->y_min);
  c.hi = _mm512_set1_epi32(p->y_max);
  c.lo_f = _mm512_set1_ps((float)(p->y_min - p->y_zp));
  c.hi_f = _mm512_set1_ps((float)(p->y_max - p->y_zp));
  c.int16_max = _mm512_set1_epi32(32767);
  c.int16_min = _mm512_set1_epi32(-32768);
  return c;
}

/* CQ_OUT_U8_INT: acc already includes the quantized bias. Result: int32 lanes in [lo, hi]. */
static inline __m512i cq_rq512_u8_int(const cq_rq512 *c, __m512i acc, __m512 mult) {
  __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), mult));
  r = _mm512_max_epi32(_mm512_min_epi32(r, c->int16_max), c->int16_min);
  r = _mm512_add_epi32(r, c->zp);
  return _mm512_max_epi32(_mm512_min_epi32(r, c->hi), c->lo);
}

/* CQ_OUT_U8_FLOAT. Result: int32 lanes in [lo, hi]. */
static inline __m512i cq_rq512_u8_float(const cq_rq512 *c, __m512i acc, __m512 scale, __m512 fbias,
                                        __m512 mult) {
  __m512 v = _mm512_mul_ps(_mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), scale), fbias), mult);
  v = _mm512_min_ps(_mm512_max_ps(v, c->lo_f), c->hi_f);
  return _mm512_add_epi32(_mm512_cvtps_epi32(v), c->zp);
}

/* CQ_OUT_F32. */
static inline __m512 cq_rq512_f32(__m512i acc, __m512 scale, __m512 fbias, __m512 mult,
                                  __m512 obias, int relu) {
  __m512 y = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc), scale), fbias);
  y = _mm512_add_ps(_mm512_mul_ps(y, mult), obias);
  return relu ? _mm512_max_ps(y, _mm512_setzero_ps()) : y;
}

/* Requantizes 16 accumulators of channels c..c+15 of record p and stores `mask` of them to y
 * (uint8 for the U8 kinds, float for F32; y points at channel c of the output row). */
static inline void cq_rq512_store(const cq_requant_params *p, const cq_rq512 *k, __m512i acc,
                                  size_t c, void *y, __mmask16 mask) {
  switch (p->kind) {
    case CQ_OUT_U8_INT: {
      acc = _mm512_add_epi32(acc, _mm512_loadu_si512(p->ibias + c));
      __m512i r = cq_rq512_u8_int(k, acc, _mm512_loadu_ps(p->mult + c));
      _mm512_mask_cvtepi32_storeu_epi8(y, mask, r);
      break;
    }
    case CQ_OUT_U8_FLOAT: {
      __m512i r = cq_rq512_u8_float(k, acc, _mm512_loadu_ps(p->scale + c),
                                    _mm512_loadu_ps(p->fbias + c), _mm512_loadu_ps(p->mult + c));
      _mm512_mask_cvtepi32_storeu_epi8(y, mask, r);
      break;
    }
    default: {
      __m512 r = cq_rq512_f32(acc, _mm512_loadu_ps(p->scale + c), _mm512_loadu_ps(p->fbias + c),
                              _mm512_loadu_ps(p->mult + c), _mm512_loadu_ps(p->obias + c), p->relu);
      _mm512_mask_storeu_ps(y, mask, r);
      break;
    }
  }
}

#endif

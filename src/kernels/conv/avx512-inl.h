/* AVX-512 pieces shared by the convolution kernels (avx512vnni.c, amx.c): byte transposes and the
 * output stage. Included only by files compiled with AVX-512 F/BW/VL/DQ.
 *
 * Output stage. An accumulator (the exact wrapping sum plus the op's `init`: zero-point terms, and
 * for QNNPACK the quantized bias) becomes a byte by the forms of requant.h, rearranged so that
 * four vectors of 16 channels finish together in the 16-bit domain:
 *   U8_INT    z = cvt(f32(acc) * mult)
 *   U8_FLOAT  z = cvt(min(hi - zy, f32(f32(f32(acc) * scale) + fbias) * mult))  (the min only
 *             when the op's constants can reach 2^30, need_min; the multiply by scale only when
 *             some scale is not 1: FBGEMM's are all 1, unit_scale, and x * 1 is x exactly)
 *   then y = max(lo, packus8(sat16(sat16(z) + zy)))   (packssdw, paddsw, packuswb, pmaxub)
 * Bit-exactness with the scalar forms: for U8_INT, requant.h saturates z to int16, adds zy and
 * clamps to [lo, 255]; saturating the sum once more at int16 changes nothing that the clamp to
 * [lo, 255] keeps. For U8_FLOAT the scalar form clamps v to [lo - zy, 255 - zy] before rounding;
 * the bounds are integers, so rounding first and clamping after gives the same integer whenever
 * cvt is exact (|v| < 2^31): guaranteed by the upper min (or by need_min == 0: |v| < 2^30 for
 * every int32 accumulator); below -2^31 cvt gives INT32_MIN, which still ends at lo; NaN cannot
 * occur (finite positive multipliers) and would end at lo as in the scalar form (min_ps returns
 * its second operand, v, for NaN). hi is always 255 for the static ops.
 *
 * packssdw/packuswb interleave their operands per 128-bit lane, so a row of 64 channels c..c+63
 * comes out permuted: byte 4j + t of lane k holds channel c + 16j + 4k + t (cq_conv_chan). The
 * NCHW store transposes bytes anyway and just writes each vector to its channel's plane; the NHWC
 * store restores the order with one vpermd. */
#ifndef CQ_KERNELS_CONV_AVX512_INL_H
#define CQ_KERNELS_CONV_AVX512_INL_H

#include <immintrin.h>
#include <stdint.h>

#include "kernels/conv/qconv.h"
#include "kernels/vnni-inl.h"

/* p + off, where off may be negative and p + off outside any object: for masked accesses whose
 * masked-off lanes are never touched. */
static inline uint8_t *cq_conv_at(const uint8_t *p, int64_t off) {
  return (uint8_t *)((uintptr_t)p + (uintptr_t)off);
}

static inline __mmask64 cq_conv_mask64(int64_t n) {
  return n >= 64 ? ~(__mmask64)0 : n <= 0 ? 0 : (((__mmask64)1 << n) - 1);
}

/* Byte at position b of lane k of a packed row of 64 channels: the channel offset. */
static inline int cq_conv_chan(int k, int b) { return 16 * (b >> 2) + 4 * k + (b & 3); }

/* In-place transpose of 16 x 16 bytes in each 128-bit lane: afterwards r[b] lane k holds byte b of
 * lane k of the 16 input rows (row i in byte i). */
static inline void cq_conv_transpose16(__m512i r[16]) {
  __m512i a[16], b[16], c[16];
  for (int p = 0; p < 8; p++) {
    a[p] = _mm512_unpacklo_epi8(r[2 * p], r[2 * p + 1]);
    a[8 + p] = _mm512_unpackhi_epi8(r[2 * p], r[2 * p + 1]);
  }
  for (int q = 0; q < 4; q++) {
    b[q] = _mm512_unpacklo_epi16(a[2 * q], a[2 * q + 1]);
    b[4 + q] = _mm512_unpackhi_epi16(a[2 * q], a[2 * q + 1]);
    b[8 + q] = _mm512_unpacklo_epi16(a[8 + 2 * q], a[8 + 2 * q + 1]);
    b[12 + q] = _mm512_unpackhi_epi16(a[8 + 2 * q], a[8 + 2 * q + 1]);
  }
  for (int g = 0; g < 4; g++) {
    for (int h = 0; h < 2; h++) {
      c[4 * g + 2 * h] = _mm512_unpacklo_epi32(b[4 * g + 2 * h], b[4 * g + 2 * h + 1]);
      c[4 * g + 2 * h + 1] = _mm512_unpackhi_epi32(b[4 * g + 2 * h], b[4 * g + 2 * h + 1]);
    }
  }
  for (int g = 0; g < 4; g++) {
    for (int e = 0; e < 2; e++) {
      r[4 * g + 2 * e] = _mm512_unpacklo_epi64(c[4 * g + e], c[4 * g + 2 + e]);
      r[4 * g + 2 * e + 1] = _mm512_unpackhi_epi64(c[4 * g + e], c[4 * g + 2 + e]);
    }
  }
}

typedef struct cq_conv_rq {
  __m512i zp16, lo8;
  __m512 hi_f;
  int use_lo, need_min, is_int, unit;
} cq_conv_rq;

static inline cq_conv_rq cq_conv_rq_init(const cq_conv_out *o) {
  cq_conv_rq k;
  k.zp16 = _mm512_set1_epi16((short)o->y_zp);
  k.lo8 = _mm512_set1_epi8((char)o->y_min);
  k.hi_f = _mm512_set1_ps(o->hi_f);
  k.use_lo = o->y_min > 0;
  k.need_min = o->need_min;
  k.is_int = o->kind == CQ_OUT_U8_INT;
  k.unit = o->unit_scale;
  return k;
}

/* z for one vector of 16 accumulators (init included). */
static inline __m512i cq_conv_rq_z(const cq_conv_rq *k, __m512i acc, __m512 scale, __m512 fbias,
                                   __m512 mult) {
  __m512 v = _mm512_cvtepi32_ps(acc);
  if (k->is_int) return _mm512_cvtps_epi32(_mm512_mul_ps(v, mult));
  if (!k->unit) v = _mm512_mul_ps(v, scale);
  v = _mm512_mul_ps(_mm512_add_ps(v, fbias), mult);
  if (k->need_min) v = _mm512_min_ps(k->hi_f, v);
  return _mm512_cvtps_epi32(v);
}

/* Four z vectors (channels +0, +16, +32, +48) to 64 bytes in the packed order. */
static inline __m512i cq_conv_rq_pack(const cq_conv_rq *k, __m512i z0, __m512i z1, __m512i z2,
                                      __m512i z3) {
  const __m512i p01 = _mm512_adds_epi16(_mm512_packs_epi32(z0, z1), k->zp16);
  const __m512i p23 = _mm512_adds_epi16(_mm512_packs_epi32(z2, z3), k->zp16);
  __m512i b = _mm512_packus_epi16(p01, p23);
  return k->use_lo ? _mm512_max_epu8(b, k->lo8) : b;
}

/* The body of cq_conv_rq_rows with the record's choices as compile-time constants. */
static inline __attribute__((always_inline)) void
cq_conv_rq_rows_t(const cq_conv_out *o, const cq_conv_rq *k, const int32_t *acc, size_t ld,
                  size_t rows, size_t c0, size_t np, __m512i *stage, const int add_init,
                  const int is_int, const int need_min, const int use_lo, const int unit) {
  __m512 sc[4], fb[4], mu[4];
  __m512i in[4];
  for (size_t j = 0; j < 4; j++) {
    const size_t c = c0 + 16 * (j < np ? j : 0);
    sc[j] = _mm512_loadu_ps(o->scale + c);
    fb[j] = _mm512_loadu_ps(o->fbias + c);
    mu[j] = _mm512_loadu_ps(o->mult + c);
    in[j] = add_init ? _mm512_loadu_si512(o->init + c) : _mm512_setzero_si512();
  }
  for (size_t r = 0; r < rows; r++) {
    const int32_t *a = acc + r * ld;
    __m512i z[4];
#pragma GCC unroll 4
    for (size_t j = 0; j < 4; j++) {
      if (j >= np) { /* bytes that are never stored */
        z[j] = _mm512_setzero_si512();
        continue;
      }
      __m512i v = _mm512_loadu_si512(a + 16 * j);
      if (add_init) v = _mm512_add_epi32(v, in[j]);
      __m512 f = _mm512_cvtepi32_ps(v);
      if (is_int) {
        f = _mm512_mul_ps(f, mu[j]);
      } else {
        if (!unit) f = _mm512_mul_ps(f, sc[j]);
        f = _mm512_mul_ps(_mm512_add_ps(f, fb[j]), mu[j]);
        if (need_min) f = _mm512_min_ps(k->hi_f, f);
      }
      z[j] = _mm512_cvtps_epi32(f);
    }
    const __m512i p01 = _mm512_adds_epi16(_mm512_packs_epi32(z[0], z[1]), k->zp16);
    const __m512i p23 = _mm512_adds_epi16(_mm512_packs_epi32(z[2], z[3]), k->zp16);
    const __m512i b = _mm512_packus_epi16(p01, p23);
    stage[r] = use_lo ? _mm512_max_epu8(b, k->lo8) : b;
  }
}

/* Requantizes rows [0, rows) (rows <= 16) x channels [c0, c0 + nc) (nc <= 64) of an int32 block
 * (row stride ld elements, channel c0 + i at column i; add_init: the op's init is still to be
 * added) into stage[r] (packed order). Channels past nc produce bytes that are never stored. */
static inline void cq_conv_rq_rows(const cq_conv_out *o, const cq_conv_rq *k, const int32_t *acc,
                                   size_t ld, size_t rows, size_t c0, size_t nc, int add_init,
                                   __m512i *stage) {
  const size_t np = (nc + 15) / 16;
  if (!add_init && !k->is_int && !k->need_min) { /* the common cases, unswitched */
    switch (np * 4 + (size_t)(k->unit * 2 + k->use_lo)) {
#define CQ_RQ_CASE(NP, UNIT, LO)                                                 \
  case NP * 4 + UNIT * 2 + LO:                                                   \
    cq_conv_rq_rows_t(o, k, acc, ld, rows, c0, NP, stage, 0, 0, 0, LO, UNIT);    \
    return;
      CQ_RQ_CASE(4, 0, 0) CQ_RQ_CASE(4, 0, 1) CQ_RQ_CASE(4, 1, 0) CQ_RQ_CASE(4, 1, 1)
      CQ_RQ_CASE(3, 0, 0) CQ_RQ_CASE(3, 0, 1) CQ_RQ_CASE(3, 1, 0) CQ_RQ_CASE(3, 1, 1)
      CQ_RQ_CASE(2, 0, 0) CQ_RQ_CASE(2, 0, 1) CQ_RQ_CASE(2, 1, 0) CQ_RQ_CASE(2, 1, 1)
      CQ_RQ_CASE(1, 0, 0) CQ_RQ_CASE(1, 0, 1) CQ_RQ_CASE(1, 1, 0) CQ_RQ_CASE(1, 1, 1)
#undef CQ_RQ_CASE
      default:
        break;
    }
  }
  if (k->is_int) {
    cq_conv_rq_rows_t(o, k, acc, ld, rows, c0, np, stage, add_init, 1, 0, k->use_lo, 0);
  } else {
    cq_conv_rq_rows_t(o, k, acc, ld, rows, c0, np, stage, add_init, 0, k->need_min, k->use_lo,
                      0);
  }
}

/* Stores stage rows [0, rows) (virtual positions q0.., channels [c0, c0 + nc) in the packed order)
 * to the output. */
static inline void cq_conv_store_stage(const cq_conv_out *o, __m512i *stage, size_t rows,
                                       int64_t q0, size_t c0, size_t nc) {
  /* runs of rows that land on consecutive output positions */
  int64_t seg_b[16], seg_e[16], seg_pos[16];
  int nseg = 0;
  int64_t row = q0 / o->vw, col = q0 % o->vw;
  for (int64_t r = 0; r < (int64_t)rows;) {
    if (col >= o->wo) { /* dropped columns: skip to the next row */
      r += o->vw - col;
      col = 0;
      row++;
      continue;
    }
    int64_t len = o->wo - col;
    if (len > (int64_t)rows - r) len = (int64_t)rows - r;
    seg_b[nseg] = r;
    seg_e[nseg] = r + len;
    seg_pos[nseg] = row * o->wo + col;
    nseg++;
    r += len;
    col += len;
  }
  if (nseg == 0) return;
  if (!o->nchw) {
    const __m512i fix = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const __mmask64 m = cq_conv_mask64((int64_t)nc);
    for (int s = 0; s < nseg; s++) {
      for (int64_t r = seg_b[s]; r < seg_e[s]; r++) {
        const int64_t pos = seg_pos[s] + (r - seg_b[s]);
        _mm512_mask_storeu_epi8(o->y + pos * o->ldy + c0, m,
                                _mm512_permutexvar_epi32(fix, stage[r]));
      }
    }
    return;
  }
  for (size_t r = rows; r < 16; r++) stage[r] = _mm512_setzero_si512();
  cq_conv_transpose16(stage);
  /* stage[b] lane k: the rows of channel c0 + cq_conv_chan(k, b) */
  const int64_t plane = o->plane;
  uint8_t *y0 = o->y + (int64_t)c0 * plane;
  /* with nc a multiple of 16 the first nb vectors hold exactly the channels below nc */
  const int nb = (int)(nc / 16) * 4;
  if (nseg == 1 && nc % 16 == 0) {
    uint8_t *base = cq_conv_at(y0, seg_pos[0] - seg_b[0]);
    if (seg_b[0] == 0 && seg_e[0] == 16) {
      for (int b = 0; b < nb; b++) {
        uint8_t *p = base + (16 * (b >> 2) + (b & 3)) * plane;
        _mm_storeu_si128((__m128i *)p, _mm512_castsi512_si128(stage[b]));
        _mm_storeu_si128((__m128i *)(p + 4 * plane), _mm512_extracti32x4_epi32(stage[b], 1));
        _mm_storeu_si128((__m128i *)(p + 8 * plane), _mm512_extracti32x4_epi32(stage[b], 2));
        _mm_storeu_si128((__m128i *)(p + 12 * plane), _mm512_extracti32x4_epi32(stage[b], 3));
      }
      return;
    }
    const __mmask16 m = (__mmask16)(cq_conv_mask64(seg_e[0]) & ~cq_conv_mask64(seg_b[0]));
    for (int b = 0; b < nb; b++) {
      uint8_t *p = base + (16 * (b >> 2) + (b & 3)) * plane;
      _mm_mask_storeu_epi8(p, m, _mm512_castsi512_si128(stage[b]));
      _mm_mask_storeu_epi8(p + 4 * plane, m, _mm512_extracti32x4_epi32(stage[b], 1));
      _mm_mask_storeu_epi8(p + 8 * plane, m, _mm512_extracti32x4_epi32(stage[b], 2));
      _mm_mask_storeu_epi8(p + 12 * plane, m, _mm512_extracti32x4_epi32(stage[b], 3));
    }
    return;
  }
  if (nseg == 2 && nc % 16 == 0) { /* a block across the end of an output row */
    uint8_t *base0 = cq_conv_at(y0, seg_pos[0] - seg_b[0]);
    uint8_t *base1 = cq_conv_at(y0, seg_pos[1] - seg_b[1]);
    const __mmask16 m0 = (__mmask16)(cq_conv_mask64(seg_e[0]) & ~cq_conv_mask64(seg_b[0]));
    const __mmask16 m1 = (__mmask16)(cq_conv_mask64(seg_e[1]) & ~cq_conv_mask64(seg_b[1]));
    for (int b = 0; b < nb; b++) {
      const int64_t o = (16 * (b >> 2) + (b & 3)) * plane;
      const __m128i l0 = _mm512_castsi512_si128(stage[b]);
      const __m128i l1 = _mm512_extracti32x4_epi32(stage[b], 1);
      const __m128i l2 = _mm512_extracti32x4_epi32(stage[b], 2);
      const __m128i l3 = _mm512_extracti32x4_epi32(stage[b], 3);
      _mm_mask_storeu_epi8(base0 + o, m0, l0);
      _mm_mask_storeu_epi8(base1 + o, m1, l0);
      _mm_mask_storeu_epi8(base0 + o + 4 * plane, m0, l1);
      _mm_mask_storeu_epi8(base1 + o + 4 * plane, m1, l1);
      _mm_mask_storeu_epi8(base0 + o + 8 * plane, m0, l2);
      _mm_mask_storeu_epi8(base1 + o + 8 * plane, m1, l2);
      _mm_mask_storeu_epi8(base0 + o + 12 * plane, m0, l3);
      _mm_mask_storeu_epi8(base1 + o + 12 * plane, m1, l3);
    }
    return;
  }
  __mmask16 seg_m[16];
  for (int s = 0; s < nseg; s++) {
    seg_m[s] = (__mmask16)(cq_conv_mask64(seg_e[s]) & ~cq_conv_mask64(seg_b[s]));
  }
  for (int b = 0; b < 16; b++) {
    __m128i lane[4] = {_mm512_castsi512_si128(stage[b]), _mm512_extracti32x4_epi32(stage[b], 1),
                       _mm512_extracti32x4_epi32(stage[b], 2),
                       _mm512_extracti32x4_epi32(stage[b], 3)};
    for (int k = 0; k < 4; k++) {
      const size_t ch = (size_t)cq_conv_chan(k, b);
      if (ch >= nc) continue;
      uint8_t *p = y0 + (int64_t)ch * plane;
      for (int s = 0; s < nseg; s++) {
        _mm_mask_storeu_epi8(cq_conv_at(p, seg_pos[s] - seg_b[s]), seg_m[s], lane[k]);
      }
    }
  }
}


/* Output stage of the phase kernels (depthwise, direct): P vectors of 16 accumulators of one
 * channel whose lane l of phase q is output position P * l + q, requantized by the forms above
 * (KIND: which one; ZW: minus the weight zero point times the window sums s) and packed to the
 * 16 * P bytes in position order. */
enum {
  CQ_PHASE_INT,
  CQ_PHASE_FLOAT,
  CQ_PHASE_FLOAT_MIN,
  CQ_PHASE_FLOAT_UNIT,    /* every scale is 1: no multiply */
  CQ_PHASE_FLOAT_MIN_UNIT,
  CQ_PHASE_KINDS
};

/* The phase kind of an output stage. */
static inline int cq_conv_phase_kind(const cq_conv_out *o) {
  if (o->kind == CQ_OUT_U8_INT) return CQ_PHASE_INT;
  if (o->unit_scale) return o->need_min ? CQ_PHASE_FLOAT_MIN_UNIT : CQ_PHASE_FLOAT_UNIT;
  return o->need_min ? CQ_PHASE_FLOAT_MIN : CQ_PHASE_FLOAT;
}

typedef struct cq_conv_phase_consts {
  __m512i init, zw, zp16, lo8;
  __m512 scale, fbias, mult, hi_f;
  int use_lo;
} cq_conv_phase_consts;

/* Requantizes the P phase accumulators (minus zw * sums when ZW) and packs them to bytes in
 * position order. */
static inline __attribute__((always_inline)) __m512i
cq_conv_phase_finish(__m512i *a, const __m512i *s, const cq_conv_phase_consts *k, const int P,
                     const int ZW, const int KIND) {
  __m512i z[4];
#pragma GCC unroll 4
  for (int q = 0; q < P; q++) {
    if (ZW) a[q] = _mm512_sub_epi32(a[q], _mm512_mullo_epi32(s[q], k->zw));
    __m512 v = _mm512_cvtepi32_ps(a[q]);
    if (KIND == CQ_PHASE_INT) {
      z[q] = _mm512_cvtps_epi32(_mm512_mul_ps(v, k->mult));
    } else {
      if (KIND == CQ_PHASE_FLOAT || KIND == CQ_PHASE_FLOAT_MIN) v = _mm512_mul_ps(v, k->scale);
      v = _mm512_mul_ps(_mm512_add_ps(v, k->fbias), k->mult);
      if (KIND == CQ_PHASE_FLOAT_MIN || KIND == CQ_PHASE_FLOAT_MIN_UNIT) {
        v = _mm512_min_ps(k->hi_f, v);
      }
      z[q] = _mm512_cvtps_epi32(v);
    }
  }
  __m512i b;
  if (P == 4) {
    const __m512i p01 = _mm512_adds_epi16(_mm512_packs_epi32(z[0], z[1]), k->zp16);
    const __m512i p23 = _mm512_adds_epi16(_mm512_packs_epi32(z[2], z[3]), k->zp16);
    b = _mm512_packus_epi16(p01, p23);
    b = _mm512_shuffle_epi8(b, _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6,
                                                                     10, 14, 3, 7, 11, 15)));
  } else if (P == 2) {
    const __m512i h = _mm512_adds_epi16(_mm512_packs_epi32(z[0], z[1]), k->zp16);
    b = _mm512_packus_epi16(h, h);
    b = _mm512_shuffle_epi8(b, _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 1, 5, 2, 6, 3, 7, 0, 4,
                                                                     1, 5, 2, 6, 3, 7)));
    b = _mm512_permutexvar_epi64(_mm512_setr_epi64(0, 2, 4, 6, 1, 3, 5, 7), b);
  } else {
    const __m512i h = _mm512_adds_epi16(_mm512_packs_epi32(z[0], z[0]), k->zp16);
    b = _mm512_packus_epi16(h, h);
    b = _mm512_permutexvar_epi32(
        _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), b);
  }
  return k->use_lo ? _mm512_max_epu8(b, k->lo8) : b;
}

#endif

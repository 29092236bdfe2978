/* AVX-512 VNNI depthwise convolution with the channels in the lanes (NHWC), for 3-column kernels
 * of up to 4 rows (qconv.h, dw_q).
 *
 * A column of the window (kernel rows 0..kh-1 at one input column) is 64 channels x kh bytes;
 * interleaving the kh rows' 64-byte loads byte-wise (unpacklo/hi_epi8 of rows 0 and 1, of rows 2
 * and 3, then unpacklo/hi_epi16) gives four vectors whose dword 4k + i holds the column's bytes of
 * channel 16k + 4j + i (vector j) - one vpdpbusd adds a whole kernel column for 16 channels. A
 * column built once serves the 3 / stride_w outputs whose windows contain it (a ring of three
 * columns in registers). The output stage packs the four vectors with packssdw/packuswb, which
 * puts the channels back in their natural order. Each output position costs 12 vpdpbusd (3 columns
 * x 4 vectors) per 64 channels, the column interleave 6 unpacks per column, and nothing is
 * per-channel: no planes, no transposes, so short rows and many channels cost no more per output
 * than long ones. The 12 weight vectors of a block stay in registers along a row.
 *
 * On an NHWC input the kernel reads the input in place (no padded copy): the rows above and below
 * point at a row of zero points, the columns left and right are a constant column, and the loads
 * of a block are masked to its channels so that nothing past the input is read. */
#include <immintrin.h>

#include "kernels/conv/avx512-inl.h"
#include "kernels/conv/qconv.h"

typedef struct dwq_ctx {
  const uint8_t *row[4]; /* the window rows of this output row and block, at (padded) column 0 */
  int64_t kh, C;
  int64_t c0, c1;        /* the columns [c0, c1) are loaded; the others are padding: zcol */
  __m512i zcol;          /* a padding column: kh zero points in each dword */
  __mmask64 load;        /* the block's channels */
  const int32_t *w, *init; /* this block's weights [3][4][16], init [4][16] */
  const float *scale, *fbias, *mult;
  __m512i zp16, lo8;
  __m512 hi_f;
  __mmask64 store;
  uint8_t *y; /* output position 0 of this row and block */
} dwq_ctx;

/* The kernel column at input column col: q[j] dword 4k + i holds rows 0..kh-1 of channel
 * 16k + 4j + i. */
static inline __attribute__((always_inline)) void dwq_column(const dwq_ctx *x, int64_t col,
                                                             __m512i *q) {
  if (col < x->c0 || col >= x->c1) {
    q[0] = q[1] = q[2] = q[3] = x->zcol;
    return;
  }
  const int64_t off = col * x->C;
  const __m512i z = _mm512_setzero_si512();
  __m512i a, b = z, c = z, d = z;
  if (x->load == ~(__mmask64)0) { /* masked loads that straddle cache lines cost more */
    a = _mm512_loadu_si512(cq_conv_at(x->row[0], off));
    if (x->kh > 1) b = _mm512_loadu_si512(cq_conv_at(x->row[1], off));
    if (x->kh > 2) c = _mm512_loadu_si512(cq_conv_at(x->row[2], off));
    if (x->kh > 3) d = _mm512_loadu_si512(cq_conv_at(x->row[3], off));
  } else { /* the last block of an in-place input: nothing past its channels */
    const __mmask64 m = x->load;
    a = _mm512_maskz_loadu_epi8(m, cq_conv_at(x->row[0], off));
    if (x->kh > 1) b = _mm512_maskz_loadu_epi8(m, cq_conv_at(x->row[1], off));
    if (x->kh > 2) c = _mm512_maskz_loadu_epi8(m, cq_conv_at(x->row[2], off));
    if (x->kh > 3) d = _mm512_maskz_loadu_epi8(m, cq_conv_at(x->row[3], off));
  }
  const __m512i ab_lo = _mm512_unpacklo_epi8(a, b), ab_hi = _mm512_unpackhi_epi8(a, b);
  const __m512i cd_lo = _mm512_unpacklo_epi8(c, d), cd_hi = _mm512_unpackhi_epi8(c, d);
  q[0] = _mm512_unpacklo_epi16(ab_lo, cd_lo);
  q[1] = _mm512_unpackhi_epi16(ab_lo, cd_lo);
  q[2] = _mm512_unpacklo_epi16(ab_hi, cd_hi);
  q[3] = _mm512_unpackhi_epi16(ab_hi, cd_hi);
}

/* Output position ox from the columns q0, q1, q2 of its window; wr: the block's weights, 4 vectors
 * per column (in registers for the row: as memory operands the kernel ran 20% slower). */
static inline __attribute__((always_inline)) void dwq_output(const dwq_ctx *x, int64_t ox,
                                                             const __m512i *q0, const __m512i *q1,
                                                             const __m512i *q2, const __m512i *wr,
                                                             const int KIND, const int USE_LO) {
  __m512i z[4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++) {
    __m512i a = _mm512_loadu_si512(x->init + 16 * j);
    CQ_DPBUSD(a, q0[j], wr[j]);
    CQ_DPBUSD(a, q1[j], wr[4 + j]);
    CQ_DPBUSD(a, q2[j], wr[8 + j]);
    __m512 v = _mm512_cvtepi32_ps(a);
    if (KIND == CQ_PHASE_INT) {
      v = _mm512_mul_ps(v, _mm512_loadu_ps(x->mult + 16 * j));
    } else {
      if (KIND == CQ_PHASE_FLOAT || KIND == CQ_PHASE_FLOAT_MIN) {
        v = _mm512_mul_ps(v, _mm512_loadu_ps(x->scale + 16 * j));
      }
      v = _mm512_mul_ps(_mm512_add_ps(v, _mm512_loadu_ps(x->fbias + 16 * j)),
                        _mm512_loadu_ps(x->mult + 16 * j));
      if (KIND == CQ_PHASE_FLOAT_MIN || KIND == CQ_PHASE_FLOAT_MIN_UNIT) {
        v = _mm512_min_ps(x->hi_f, v);
      }
    }
    z[j] = _mm512_cvtps_epi32(v);
  }
  const __m512i p01 = _mm512_adds_epi16(_mm512_packs_epi32(z[0], z[1]), x->zp16);
  const __m512i p23 = _mm512_adds_epi16(_mm512_packs_epi32(z[2], z[3]), x->zp16);
  __m512i b = _mm512_packus_epi16(p01, p23);
  if (USE_LO) b = _mm512_max_epu8(b, x->lo8);
  if (x->store == ~(__mmask64)0) {
    _mm512_storeu_si512(x->y + ox * x->C, b);
  } else {
    _mm512_mask_storeu_epi8(x->y + ox * x->C, x->store, b);
  }
}

/* One output row of one block: the three columns rotate through q0, q1, q2. */
static inline __attribute__((always_inline)) void dwq_row(const dwq_ctx *xp, int64_t wp,
                                                          int64_t wo, const int SW, const int KIND,
                                                          const int USE_LO) {
  /* a local copy: the byte stores could alias *xp, and the compiler would reload it after each */
  const dwq_ctx xl = *xp, *x = &xl;
  __m512i q0[4], q1[4], q2[4], wr[12];
  for (int t = 0; t < 12; t++) wr[t] = _mm512_loadu_si512(x->w + 16 * t);
  dwq_column(x, 0, q0);
  dwq_column(x, 1, q1);
  dwq_column(x, 2, q2);
#define DWQ_NEXT(Q, COL)                  \
  do {                                    \
    if ((COL) < wp) dwq_column(x, COL, Q); \
  } while (0)
  for (int64_t ox = 0; ox < wo; ox += 3) {
    if (SW == 1) {
      dwq_output(x, ox, q0, q1, q2, wr, KIND, USE_LO);
      DWQ_NEXT(q0, ox + 3);
      if (ox + 1 >= wo) break;
      dwq_output(x, ox + 1, q1, q2, q0, wr, KIND, USE_LO);
      DWQ_NEXT(q1, ox + 4);
      if (ox + 2 >= wo) break;
      dwq_output(x, ox + 2, q2, q0, q1, wr, KIND, USE_LO);
      DWQ_NEXT(q2, ox + 5);
    } else { /* columns 2 ox .. 2 ox + 2; the last is the next output's first */
      dwq_output(x, ox, q0, q1, q2, wr, KIND, USE_LO);
      DWQ_NEXT(q0, 2 * ox + 3);
      DWQ_NEXT(q1, 2 * ox + 4);
      if (ox + 1 >= wo) break;
      dwq_output(x, ox + 1, q2, q0, q1, wr, KIND, USE_LO);
      DWQ_NEXT(q2, 2 * ox + 5);
      DWQ_NEXT(q0, 2 * ox + 6);
      if (ox + 2 >= wo) break;
      dwq_output(x, ox + 2, q1, q2, q0, wr, KIND, USE_LO);
      DWQ_NEXT(q1, 2 * ox + 7);
      DWQ_NEXT(q2, 2 * ox + 8);
    }
  }
#undef DWQ_NEXT
}

static inline __attribute__((always_inline)) void dwq_run(const cq_conv_dw_nhwc *d, int64_t r0,
                                                          int64_t r1, const int SW, const int KIND,
                                                          const int USE_LO) {
  const cq_qconv_packed *p = d->p;
  const cq_conv_out *o = d->out;
  const int64_t C = p->g.out_channels, kh = p->g.kernel[0], sh = p->g.stride[0];
  const int64_t blocks = (C + 63) / 64;
  const int64_t pw = d->img ? 0 : p->g.padding[1], ph = p->g.padding[0];
  dwq_ctx x;
  x.kh = kh;
  x.C = C;
  x.c0 = d->img ? 0 : pw;
  x.c1 = d->img ? d->wp : pw + d->w;
  x.zcol = _mm512_set1_epi32((int32_t)(0x01010101u * d->zx & (0xffffffffu >> (8 * (4 - kh)))));
  x.zp16 = _mm512_set1_epi16((short)o->y_zp);
  x.lo8 = _mm512_set1_epi8((char)o->y_min);
  x.hi_f = _mm512_set1_ps(o->hi_f);
  for (int64_t oy = r0; oy < r1; oy++) {
    for (int64_t b = 0; b < blocks; b++) {
      const int64_t nc = C - 64 * b < 64 ? C - 64 * b : 64;
      for (int64_t i = 0; i < 4; i++) {
        const int64_t ir = oy * sh + (i < kh ? i : 0); /* padded row */
        if (d->img) {
          x.row[i] = d->img + (ir * d->wp) * C + 64 * b;
        } else { /* column pw of the padded row is the input's column 0 */
          const int64_t iy = ir - ph;
          const uint8_t *r = iy >= 0 && iy < d->h ? d->x + iy * d->w * C : d->zrow;
          x.row[i] = cq_conv_at(r + 64 * b, -pw * C);
        }
      }
      x.load = d->img ? ~(__mmask64)0 : cq_conv_mask64(nc);
      x.w = p->dw_q + b * 3 * 64;
      x.init = d->init + b * 64;
      x.scale = d->scale + b * 64;
      x.fbias = d->fbias + b * 64;
      x.mult = d->mult + b * 64;
      x.store = cq_conv_mask64(nc);
      x.y = d->y + oy * d->wo * C + 64 * b;
      dwq_row(&x, d->wp, d->wo, SW, KIND, USE_LO);
    }
  }
}

typedef void (*dwq_fn)(const cq_conv_dw_nhwc *d, int64_t r0, int64_t r1);
#define DWQ_FN(NAME, SW, KIND, USE_LO)                                          \
  static void NAME(const cq_conv_dw_nhwc *d, int64_t r0, int64_t r1) {         \
    dwq_run(d, r0, r1, SW, KIND, USE_LO);                                      \
  }
#define DWQ_KIND(NAME, KIND)                                                    \
  DWQ_FN(NAME##_s1, 1, KIND, 0) DWQ_FN(NAME##_s1_lo, 1, KIND, 1)                \
  DWQ_FN(NAME##_s2, 2, KIND, 0) DWQ_FN(NAME##_s2_lo, 2, KIND, 1)
DWQ_KIND(dwq_int, CQ_PHASE_INT)
DWQ_KIND(dwq_float, CQ_PHASE_FLOAT)
DWQ_KIND(dwq_float_min, CQ_PHASE_FLOAT_MIN)
DWQ_KIND(dwq_float_unit, CQ_PHASE_FLOAT_UNIT)
DWQ_KIND(dwq_float_min_unit, CQ_PHASE_FLOAT_MIN_UNIT)
#define DWQ_ROW(NAME) {{NAME##_s1, NAME##_s1_lo}, {NAME##_s2, NAME##_s2_lo}}
/* [kind][stride_w 1, 2][the fused ReLU's lower bound is above 0] */
static const dwq_fn dwq_table[CQ_PHASE_KINDS][2][2] = {
    DWQ_ROW(dwq_int),       DWQ_ROW(dwq_float),      DWQ_ROW(dwq_float_min),
    DWQ_ROW(dwq_float_unit), DWQ_ROW(dwq_float_min_unit),
};

void cq_u8_dwconv_nhwc__avx512vnni(const cq_conv_dw_nhwc *d, int64_t r0, int64_t r1) {
  dwq_table[cq_conv_phase_kind(d->out)][d->p->g.stride[1] == 2][d->out->y_min > 0](d, r0, r1);
}

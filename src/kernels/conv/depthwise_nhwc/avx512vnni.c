/* AVX-512 VNNI depthwise convolution with the channels in the lanes (NHWC), for kernels of up to
 * 8 x 8 (qconv.h, dw_q).
 *
 * A column of the window (kernel rows 4d .. 4d + 3 at one input column) is 64 channels x 4 bytes;
 * interleaving the rows' 64-byte loads byte-wise (unpacklo/hi_epi8 of rows 0 and 1, of rows 2
 * and 3, then unpacklo/hi_epi16) gives four vectors whose dword 4k + i holds the column's bytes of
 * channel 16k + 4j + i (vector j) - one vpdpbusd adds four kernel rows of a column for 16
 * channels. The output stage packs the four vectors with packssdw/packuswb, which puts the
 * channels back in their natural order. Nothing is per-channel: no planes, no transposes, so
 * short rows and many channels cost no more per output than long ones.
 *
 * 3-column kernels of up to 4 rows (the common 3x3): a column built once serves the 3 / stride_w
 * outputs whose windows contain it through a ring of three columns in registers, and the 12
 * weight vectors of a block stay in registers along a row; each output costs 12 vpdpbusd per 64
 * channels and the column interleave 8 unpacks per column. 3x3 with stride_h 1 takes output rows
 * in pairs whose columns of four rows serve both (below). Other kernels (5x5, 7x7, ...): the
 * columns of up to 16 outputs are built into a buffer on the stack, and each output adds
 * kw * ceil(kh / 4) of them per 16 channels with the weights as memory operands.
 *
 * 32 channels with stride_w 1 (a whole block would be half empty): one 64-byte load holds two
 * adjacent positions, so a column holds two input columns and output v the positions 2v and
 * 2v + 1, with every constant repeated for the second half; the kernels run as for stride 2 over
 * these pairs (DWQ_PAIRED). 32ch 112x112: 0.111 -> 0.060 ms (oneDNN 0.089).
 *
 * On an NHWC input the kernel reads the input in place (no padded copy): the rows above and below
 * point at a row of zero points, the columns left and right are a constant column, and the loads
 * of a block are masked to its channels so that nothing past the input is read. */
#include <immintrin.h>

#include "kernels/conv/avx512-inl.h"
#include "kernels/conv/qconv.h"

typedef struct dwq_ctx {
  const uint8_t *row[CQ_DWQ_MAX_KERNEL]; /* the window rows of this output row and block, at
                                          * (padded) column 0 */
  int64_t kh, C;
  int64_t wo;            /* outputs per row (with paired positions: pairs, rounded up) */
  int64_t ostep, ystride; /* bytes from one output (pair) to the next, from one row to the next */
  int64_t c0, c1;        /* the columns [c0, c1) are loaded whole; the others are padding (zcol)
                          * or, with paired positions, half padding up to c1_real */
  int64_t c1_real;
  int paired;            /* 32 channels: lanes 0-31 hold position 2v, 32-63 position 2v + 1 */
  int64_t half_ox;       /* paired: the last pair when it has only its first position, or -1 */
  __m512i zcol[2];       /* a padding column: each dword group's zero points (rows < kh) */
  __m512i zcol4;         /* a padding column of four rows (the row pair's columns) */
  __mmask64 load;        /* the block's channels */
  const int32_t *w, *init; /* this block's weights [kw][nd][4][16], init [4][16] */
  const float *scale, *fbias, *mult;
  __m512i zp16, lo8;
  __m512 hi_f;
  __mmask64 store, half_store;
  uint8_t *y; /* output position 0 of this row and block */
} dwq_ctx;

/* Paired positions (32 channels, stride_w 1): the column at col holds input columns col (lanes
 * 0-31) and col + 1 (lanes 32-63); where one of them is padding, it gets the zero points (rows
 * below n) instead of a load. Rows n .. 3 are zero. */
static inline __attribute__((always_inline)) void dwq_column_edge(const dwq_ctx *x,
                                                                  int64_t col, int64_t r0,
                                                                  int64_t n, __m512i *v) {
  const int lo_in = col >= x->c0 && col < x->c1_real;
  const int hi_in = col + 1 >= x->c0 && col + 1 < x->c1_real;
  const __mmask64 m = (lo_in ? 0xffffffffull : 0) | (hi_in ? 0xffffffff00000000ull : 0);
  const __m512i zx = x->zcol4;
  for (int64_t i = 0; i < 4; i++) {
    v[i] = i < n ? _mm512_mask_loadu_epi8(zx, m, cq_conv_at(x->row[r0 + i], col * x->C))
                 : _mm512_setzero_si512();
  }
}

/* The four row vectors (rows r0 .. r0 + n - 1, then zeros) of the column at col. */
static inline __attribute__((always_inline)) int dwq_column_rows(const dwq_ctx *x, int64_t col,
                                                                int64_t r0, int64_t n,
                                                                __m512i *v) {
  if (col < x->c0 || col >= x->c1) {
    if (!x->paired || col + 1 < x->c0 || col >= x->c1_real) return 0; /* all padding */
    dwq_column_edge(x, col, r0, n, v); /* inline: a call would clobber every vector register */
    return 1;
  }
  const int64_t off = col * x->C;
  const __m512i z = _mm512_setzero_si512();
  v[1] = v[2] = v[3] = z;
  if (x->load == ~(__mmask64)0) { /* masked loads that straddle cache lines cost more */
    v[0] = _mm512_loadu_si512(cq_conv_at(x->row[r0], off));
    if (n > 1) v[1] = _mm512_loadu_si512(cq_conv_at(x->row[r0 + 1], off));
    if (n > 2) v[2] = _mm512_loadu_si512(cq_conv_at(x->row[r0 + 2], off));
    if (n > 3) v[3] = _mm512_loadu_si512(cq_conv_at(x->row[r0 + 3], off));
  } else { /* the last block of an in-place input: nothing past its channels */
    const __mmask64 m = x->load;
    v[0] = _mm512_maskz_loadu_epi8(m, cq_conv_at(x->row[r0], off));
    if (n > 1) v[1] = _mm512_maskz_loadu_epi8(m, cq_conv_at(x->row[r0 + 1], off));
    if (n > 2) v[2] = _mm512_maskz_loadu_epi8(m, cq_conv_at(x->row[r0 + 2], off));
    if (n > 3) v[3] = _mm512_maskz_loadu_epi8(m, cq_conv_at(x->row[r0 + 3], off));
  }
  return 1;
}

/* Dword group d of the kernel column at input column col: q[j] dword 4k + i holds rows
 * 4d .. 4d + 3 (those < kh, then zeros) of channel 16k + 4j + i. */
static inline __attribute__((always_inline)) void dwq_column_group(const dwq_ctx *x, int64_t col,
                                                                   int64_t d, __m512i *q) {
  const int64_t r0 = 4 * d, n = x->kh - r0 < 4 ? x->kh - r0 : 4;
  __m512i v[4];
  if (!dwq_column_rows(x, col, r0, n, v)) {
    q[0] = q[1] = q[2] = q[3] = x->zcol[d];
    return;
  }
  const __m512i a = v[0], b = v[1], c = v[2], e = v[3];
  const __m512i ab_lo = _mm512_unpacklo_epi8(a, b), ab_hi = _mm512_unpackhi_epi8(a, b);
  const __m512i ce_lo = _mm512_unpacklo_epi8(c, e), ce_hi = _mm512_unpackhi_epi8(c, e);
  q[0] = _mm512_unpacklo_epi16(ab_lo, ce_lo);
  q[1] = _mm512_unpackhi_epi16(ab_lo, ce_lo);
  q[2] = _mm512_unpacklo_epi16(ab_hi, ce_hi);
  q[3] = _mm512_unpackhi_epi16(ab_hi, ce_hi);
}

/* The column of a kernel of up to 4 rows. */
static inline __attribute__((always_inline)) void dwq_column(const dwq_ctx *x, int64_t col,
                                                             __m512i *q) {
  dwq_column_group(x, col, 0, q);
}

/* The output stage's per-channel constants of two lane groups (j0, j0 + 1). */
typedef struct dwq_consts {
  __m512 scale[2], fbias[2], mult[2];
} dwq_consts;

static inline __attribute__((always_inline)) dwq_consts dwq_consts_of(const dwq_ctx *x,
                                                                      const int j0) {
  dwq_consts k;
  for (int jj = 0; jj < 2; jj++) {
    k.scale[jj] = _mm512_loadu_ps(x->scale + 16 * (j0 + jj));
    k.fbias[jj] = _mm512_loadu_ps(x->fbias + 16 * (j0 + jj));
    k.mult[jj] = _mm512_loadu_ps(x->mult + 16 * (j0 + jj));
  }
  return k;
}

/* Requantizes two accumulator vectors (lane groups j0, j0 + 1 of k) and packs them to int16 with
 * the output zero point added. */
static inline __attribute__((always_inline)) __m512i dwq_half(const dwq_ctx *x, const __m512i *a,
                                                              const dwq_consts *k,
                                                              const int KIND) {
  __m512i z[2];
#pragma GCC unroll 2
  for (int jj = 0; jj < 2; jj++) {
    __m512 v = _mm512_cvtepi32_ps(a[jj]);
    if (KIND == CQ_PHASE_INT) {
      v = _mm512_mul_ps(v, k->mult[jj]);
    } else {
      if (KIND == CQ_PHASE_FLOAT || KIND == CQ_PHASE_FLOAT_MIN) v = _mm512_mul_ps(v, k->scale[jj]);
      v = _mm512_mul_ps(_mm512_add_ps(v, k->fbias[jj]), k->mult[jj]);
      if (KIND == CQ_PHASE_FLOAT_MIN || KIND == CQ_PHASE_FLOAT_MIN_UNIT) {
        v = _mm512_min_ps(x->hi_f, v);
      }
    }
    z[jj] = _mm512_cvtps_epi32(v);
  }
  return _mm512_adds_epi16(_mm512_packs_epi32(z[0], z[1]), x->zp16);
}

/* What the output stage does besides requantizing (the kernels' STORE parameter): DWQ_LO, clamp
 * from below at y_min (a fused ReLU whose lower bound is above 0); DWQ_PAIRED, the positions are
 * paired (cq_dwq_paired: output v is positions 2v, 2v + 1; the last may be half). */
#define DWQ_LO 1
#define DWQ_PAIRED 2

/* Packs the two halves of output position ox of row r (dwq_half of lane groups 0-1 and 2-3) to
 * bytes, which puts the channels back in their natural order, and stores them. */
static inline __attribute__((always_inline)) void dwq_store(const dwq_ctx *x, int64_t r,
                                                            int64_t ox, __m512i p01, __m512i p23,
                                                            const int STORE) {
  __m512i b = _mm512_packus_epi16(p01, p23);
  if (STORE & DWQ_LO) b = _mm512_max_epu8(b, x->lo8);
  uint8_t *y = x->y + r * x->ystride + ox * x->ostep;
  const __mmask64 m = STORE & DWQ_PAIRED && ox == x->half_ox ? x->half_store : x->store;
  if (m == ~(__mmask64)0) {
    _mm512_storeu_si512(y, b);
  } else {
    _mm512_mask_storeu_epi8(y, m, b);
  }
}

/* Requantizes the four accumulator vectors of output position ox and stores its bytes. */
static inline __attribute__((always_inline)) void dwq_finish(const dwq_ctx *x, int64_t ox,
                                                             const __m512i *a, const int KIND,
                                                             const int STORE) {
  const dwq_consts k01 = dwq_consts_of(x, 0), k23 = dwq_consts_of(x, 2);
  const __m512i p01 = dwq_half(x, a, &k01, KIND), p23 = dwq_half(x, a + 2, &k23, KIND);
  dwq_store(x, 0, ox, p01, p23, STORE);
}

/* Output position ox from the columns q0, q1, q2 of its window; wr: the block's weights, 4 vectors
 * per column (in registers for the row: as memory operands the kernel ran 20% slower). */
static inline __attribute__((always_inline)) void dwq_output(const dwq_ctx *x, int64_t ox,
                                                             const __m512i *q0, const __m512i *q1,
                                                             const __m512i *q2, const __m512i *wr,
                                                             const int KIND, const int STORE) {
  __m512i a[4];
#pragma GCC unroll 4
  for (int j = 0; j < 4; j++) {
    a[j] = _mm512_loadu_si512(x->init + 16 * j);
    CQ_DPBUSD(a[j], q0[j], wr[j]);
    CQ_DPBUSD(a[j], q1[j], wr[4 + j]);
    CQ_DPBUSD(a[j], q2[j], wr[8 + j]);
  }
  dwq_finish(x, ox, a, KIND, STORE);
}

/* One output row of one block: the three columns rotate through q0, q1, q2. */
static inline __attribute__((always_inline)) void dwq_row(const dwq_ctx *xp, int64_t wp,
                                                          int64_t wo, const int SW, const int KIND,
                                                          const int STORE) {
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
      dwq_output(x, ox, q0, q1, q2, wr, KIND, STORE);
      DWQ_NEXT(q0, ox + 3);
      if (ox + 1 >= wo) break;
      dwq_output(x, ox + 1, q1, q2, q0, wr, KIND, STORE);
      DWQ_NEXT(q1, ox + 4);
      if (ox + 2 >= wo) break;
      dwq_output(x, ox + 2, q2, q0, q1, wr, KIND, STORE);
      DWQ_NEXT(q2, ox + 5);
    } else { /* columns 2 ox .. 2 ox + 2; the last is the next output's first */
      dwq_output(x, ox, q0, q1, q2, wr, KIND, STORE);
      DWQ_NEXT(q0, 2 * ox + 3);
      DWQ_NEXT(q1, 2 * ox + 4);
      if (ox + 1 >= wo) break;
      dwq_output(x, ox + 1, q2, q0, q1, wr, KIND, STORE);
      DWQ_NEXT(q2, 2 * ox + 5);
      DWQ_NEXT(q0, 2 * ox + 6);
      if (ox + 2 >= wo) break;
      dwq_output(x, ox + 2, q1, q2, q0, wr, KIND, STORE);
      DWQ_NEXT(q1, 2 * ox + 7);
      DWQ_NEXT(q2, 2 * ox + 8);
    }
  }
#undef DWQ_NEXT
}

/* ---- row pairs (3x3, stride_h 1) ---------------------------------------------------------------
 * Output rows oy and oy + 1 read input rows oy .. oy + 3: one column of all four serves both, the
 * top row's weights in bytes 0-2 of each dword and the bottom row's in bytes 1-3 (the same dwords
 * shifted left by a byte), so the unpacks of a column serve two outputs.
 *
 * Both rows' weights, the columns and the output constants of 64 channels would not fit the 32
 * registers, and operands from memory are not free here (512-bit loads share the vector issue
 * bandwidth: a load costs about as much as a vector uop, and the single-row kernel above spends a
 * third of its issue slots on them). The unpack tree of a column splits into two independent
 * halves (lane groups 0-1 from the low byte unpacks, 2-3 from the high ones), so a span of
 * outputs is done in two passes of 32 channels, each with its 12 weight vectors, 6 column vectors
 * and 8 constants in registers, reading the input rows twice; the first pass leaves its packed
 * int16 halves on the stack for the second to complete. 64ch 56x56: 27-28 -> 24 us. */

/* Outputs per span (the stash: 2 rows x 64 x 64 bytes). */
#define DWQ_SPAN_PAIR 64

/* Half H (lane groups 2H, 2H + 1) of the four-row column at input column col. */
static inline __attribute__((always_inline)) void dwq_pair_column(const dwq_ctx *x, int64_t col,
                                                                  const int H, __m512i *q) {
  __m512i v[4];
  if (!dwq_column_rows(x, col, 0, 4, v)) {
    q[0] = q[1] = x->zcol4;
    return;
  }
  const __m512i a = v[0], b = v[1], c = v[2], e = v[3];
  const __m512i ab = H ? _mm512_unpackhi_epi8(a, b) : _mm512_unpacklo_epi8(a, b);
  const __m512i ce = H ? _mm512_unpackhi_epi8(c, e) : _mm512_unpacklo_epi8(c, e);
  q[0] = _mm512_unpacklo_epi16(ab, ce);
  q[1] = _mm512_unpackhi_epi16(ab, ce);
}

/* The constants of one pass, loaded once for the span. */
typedef struct dwq_pair_k {
  __m512i w[2][6]; /* [row][column * 2 + lane group] */
  __m512i init[2];
  dwq_consts out;
} dwq_pair_k;

/* Half H of output position ox of both rows from the columns q0, q1, q2 of its window. Pass 0
 * leaves the packed halves in stash, pass 1 completes and stores them. */
static inline __attribute__((always_inline)) void dwq_pair_output(
    const dwq_ctx *x, int64_t ox, const __m512i *q0, const __m512i *q1, const __m512i *q2,
    const dwq_pair_k *k, __m512i *stash, const int H, const int KIND, const int STORE) {
#pragma GCC unroll 2
  for (int r = 0; r < 2; r++) {
    __m512i t[2];
#pragma GCC unroll 2
    for (int jj = 0; jj < 2; jj++) {
      t[jj] = k->init[jj];
      CQ_DPBUSD(t[jj], q0[jj], k->w[r][jj]);
      CQ_DPBUSD(t[jj], q1[jj], k->w[r][2 + jj]);
      CQ_DPBUSD(t[jj], q2[jj], k->w[r][4 + jj]);
    }
    const __m512i p = dwq_half(x, t, &k->out, KIND);
    if (H == 0) {
      stash[r] = p;
    } else {
      dwq_store(x, r, ox, stash[r], p, STORE);
    }
  }
}

/* Pass H over the outputs [o0, o1): the three columns rotate through q0, q1, q2. */
static inline __attribute__((always_inline)) void dwq_pair_pass(const dwq_ctx *x, int64_t wp,
                                                                int64_t o0, int64_t o1,
                                                                __m512i (*stash)[2], const int H,
                                                                const int SW, const int KIND,
                                                                const int STORE) {
  dwq_pair_k k;
  for (int t = 0; t < 3; t++) {
    for (int jj = 0; jj < 2; jj++) {
      k.w[0][2 * t + jj] = _mm512_loadu_si512(x->w + 16 * (4 * t + 2 * H + jj));
      k.w[1][2 * t + jj] = _mm512_slli_epi32(k.w[0][2 * t + jj], 8);
    }
  }
  for (int jj = 0; jj < 2; jj++) k.init[jj] = _mm512_loadu_si512(x->init + 16 * (2 * H + jj));
  k.out = dwq_consts_of(x, 2 * H);
  __m512i q0[2], q1[2], q2[2];
  const int64_t c = o0 * SW;
  dwq_pair_column(x, c, H, q0);
  dwq_pair_column(x, c + 1, H, q1);
  dwq_pair_column(x, c + 2, H, q2);
#define DWQ_OUT(OX, A, B, C) \
  dwq_pair_output(x, OX, A, B, C, &k, stash[(OX) - o0], H, KIND, STORE)
#define DWQ_NEXT(Q, COL)                         \
  do {                                           \
    if ((COL) < wp) dwq_pair_column(x, COL, H, Q); \
  } while (0)
  for (int64_t ox = o0; ox < o1; ox += 3) {
    if (SW == 1) {
      DWQ_OUT(ox, q0, q1, q2);
      DWQ_NEXT(q0, ox + 3);
      if (ox + 1 >= o1) break;
      DWQ_OUT(ox + 1, q1, q2, q0);
      DWQ_NEXT(q1, ox + 4);
      if (ox + 2 >= o1) break;
      DWQ_OUT(ox + 2, q2, q0, q1);
      DWQ_NEXT(q2, ox + 5);
    } else { /* columns 2 ox .. 2 ox + 2; the last is the next output's first */
      DWQ_OUT(ox, q0, q1, q2);
      DWQ_NEXT(q0, 2 * ox + 3);
      DWQ_NEXT(q1, 2 * ox + 4);
      if (ox + 1 >= o1) break;
      DWQ_OUT(ox + 1, q2, q0, q1);
      DWQ_NEXT(q2, 2 * ox + 5);
      DWQ_NEXT(q0, 2 * ox + 6);
      if (ox + 2 >= o1) break;
      DWQ_OUT(ox + 2, q1, q2, q0);
      DWQ_NEXT(q1, 2 * ox + 7);
      DWQ_NEXT(q2, 2 * ox + 8);
    }
  }
#undef DWQ_NEXT
#undef DWQ_OUT
}

/* Output rows oy, oy + 1 of one block (x->row[0..3]: input rows oy .. oy + 3). */
static inline __attribute__((always_inline)) void dwq_row_pair(const dwq_ctx *xp, int64_t wp,
                                                               const int SW, const int KIND,
                                                               const int STORE) {
  /* a local copy: the byte stores could alias *xp, and the compiler would reload it after each */
  const dwq_ctx xl = *xp, *x = &xl;
  __m512i stash[DWQ_SPAN_PAIR][2];
  for (int64_t o0 = 0; o0 < x->wo; o0 += DWQ_SPAN_PAIR) {
    const int64_t o1 = x->wo - o0 < DWQ_SPAN_PAIR ? x->wo : o0 + DWQ_SPAN_PAIR;
    dwq_pair_pass(x, wp, o0, o1, stash, 0, SW, KIND, STORE);
    dwq_pair_pass(x, wp, o0, o1, stash, 1, SW, KIND, STORE);
  }
}

/* Outputs per column buffer of the general kernel: its columns, (DWQ_SPAN - 1) * stride_w + kw,
 * fill at most 40 x 2 x 4 vectors (20 KB) of the stack. */
#define DWQ_SPAN 16
#define DWQ_SPAN_COLS ((DWQ_SPAN - 1) * 2 + CQ_DWQ_MAX_KERNEL)

/* vpdpbusd with the weights as a memory operand. */
#define DWQ_DPBUSD_M(acc, q, w) \
  __asm__("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(q), "m"(*(const __m512i *)(w)))

/* One output row of one block for any kernel (kw columns of nd dword groups): the columns of up
 * to DWQ_SPAN outputs at a time built into a buffer, then each output sums kw * nd of them. */
static inline __attribute__((always_inline)) void dwq_row_any(const dwq_ctx *xp, int64_t wp,
                                                              int64_t wo, int64_t kw, int64_t nd,
                                                              const int SW, const int KIND,
                                                              const int STORE) {
  const dwq_ctx xl = *xp, *x = &xl;
  __m512i cols[DWQ_SPAN_COLS][2][4];
  for (int64_t o0 = 0; o0 < wo; o0 += DWQ_SPAN) {
    const int64_t o1 = wo - o0 < DWQ_SPAN ? wo : o0 + DWQ_SPAN;
    const int64_t c0 = o0 * SW, c1 = (o1 - 1) * SW + kw; /* columns [c0, c1) of the padded row */
    for (int64_t col = c0; col < c1 && col < wp; col++) {
      for (int64_t d = 0; d < nd; d++) dwq_column_group(x, col, d, cols[col - c0][d]);
    }
    for (int64_t ox = o0; ox < o1; ox++) {
      __m512i a[4];
#pragma GCC unroll 4
      for (int j = 0; j < 4; j++) a[j] = _mm512_loadu_si512(x->init + 16 * j);
      const int64_t first = ox * SW - c0;
      for (int64_t t = 0; t < kw; t++) {
        for (int64_t d = 0; d < nd; d++) {
          const int32_t *w = x->w + ((t * nd + d) * 4) * 16;
#pragma GCC unroll 4
          for (int j = 0; j < 4; j++) DWQ_DPBUSD_M(a[j], cols[first + t][d][j], w + 16 * j);
        }
      }
      dwq_finish(x, ox, a, KIND, STORE);
    }
  }
}

static inline __attribute__((always_inline)) void dwq_run(const cq_conv_dw_nhwc *d, int64_t r0,
                                                          int64_t r1, const int SW, const int KIND,
                                                          const int STORE) {
  const cq_qconv_packed *p = d->p;
  const cq_conv_out *o = d->out;
  const int64_t C = p->g.out_channels, kh = p->g.kernel[0], kw = p->g.kernel[1];
  const int64_t sh = p->g.stride[0], nd = p->dw_nd, blocks = (C + 63) / 64;
  const int64_t pw = d->img ? 0 : p->g.padding[1], ph = p->g.padding[0];
  const int ring = kw == 3 && nd == 1; /* the three columns rotate through registers */
  const int pairs = ring && kh == 3 && sh == 1; /* two output rows from four-row columns */
  /* 32 channels with stride_w 1 (cq_dwq_paired) run as stride 2 over pairs of positions: output
   * pair v reads input columns 2v .. 2v + 2, each holding two columns (SW is 2 here) */
  const int paired = (STORE & DWQ_PAIRED) != 0;
  dwq_ctx x;
  x.kh = kh;
  x.C = C;
  x.paired = paired;
  x.wo = paired ? (d->wo + 1) / 2 : d->wo;
  x.ostep = paired ? 2 * C : C;
  x.ystride = d->wo * C;
  x.half_ox = paired && d->wo % 2 ? d->wo / 2 : -1;
  x.half_store = cq_conv_mask64(C);
  x.c0 = d->img ? 0 : pw;
  x.c1_real = d->img ? d->wp : pw + d->w;
  x.c1 = paired ? x.c1_real - 1 : x.c1_real;
  /* paired: every 16-channel lane group's constants repeated for the second position */
  int32_t w2[3 * 4 * 16] __attribute__((aligned(64))), init2[64] __attribute__((aligned(64)));
  float scale2[64] __attribute__((aligned(64))), fbias2[64] __attribute__((aligned(64)));
  float mult2[64] __attribute__((aligned(64)));
  if (paired) {
    for (int64_t t = 0; t < 3 * 4 * 16; t++) w2[t] = p->dw_q[t & ~(int64_t)8];
    for (int64_t t = 0; t < 64; t++) {
      const int64_t from = t & ~(int64_t)8; /* lane 4k + i of each vector: k 2, 3 from k 0, 1 */
      init2[t] = d->init[from];
      scale2[t] = d->scale[from];
      fbias2[t] = d->fbias[from];
      mult2[t] = d->mult[from];
    }
  }
  for (int64_t g = 0; g < 2; g++) { /* zx in the bytes of the rows 4g .. 4g + 3 below kh */
    const int64_t n = kh - 4 * g <= 0 ? 0 : kh - 4 * g >= 4 ? 4 : kh - 4 * g;
    x.zcol[g] = _mm512_set1_epi32((int32_t)(n ? 0x01010101u * d->zx & (0xffffffffu >> (8 * (4 - n)))
                                              : 0));
  }
  x.zcol4 = _mm512_set1_epi8((char)d->zx);
  x.zp16 = _mm512_set1_epi16((short)o->y_zp);
  x.lo8 = _mm512_set1_epi8((char)o->y_min);
  x.hi_f = _mm512_set1_ps(o->hi_f);
  for (int64_t oy = r0; oy < r1;) {
    const int pair = pairs && oy + 1 < r1;
    const int64_t nr = pair ? 4 : kh; /* window rows read */
    for (int64_t b = 0; b < blocks; b++) {
      const int64_t nc = C - 64 * b < 64 ? C - 64 * b : 64;
      for (int64_t i = 0; i < nr; i++) {
        const int64_t ir = oy * sh + i; /* padded row */
        if (d->img) {
          x.row[i] = d->img + (ir * d->wp) * C + 64 * b;
        } else { /* column pw of the padded row is the input's column 0 */
          const int64_t iy = ir - ph;
          const uint8_t *r = iy >= 0 && iy < d->h ? d->x + iy * d->w * C : d->zrow;
          x.row[i] = cq_conv_at(r + 64 * b, -pw * C);
        }
      }
      x.load = d->img || paired ? ~(__mmask64)0 : cq_conv_mask64(nc);
      x.w = paired ? w2 : p->dw_q + b * kw * nd * 64;
      x.init = paired ? init2 : d->init + b * 64;
      x.scale = paired ? scale2 : d->scale + b * 64;
      x.fbias = paired ? fbias2 : d->fbias + b * 64;
      x.mult = paired ? mult2 : d->mult + b * 64;
      x.store = paired ? ~(__mmask64)0 : cq_conv_mask64(nc);
      x.y = d->y + oy * d->wo * C + 64 * b;
      if (pair) {
        dwq_row_pair(&x, d->wp, SW, KIND, STORE);
      } else if (ring) {
        dwq_row(&x, d->wp, x.wo, SW, KIND, STORE);
      } else {
        dwq_row_any(&x, d->wp, x.wo, kw, nd, SW, KIND, STORE);
      }
    }
    oy += pair ? 2 : 1;
  }
}

typedef void (*dwq_fn)(const cq_conv_dw_nhwc *d, int64_t r0, int64_t r1);
#define DWQ_FN(NAME, SW, KIND, STORE)                                           \
  static void NAME(const cq_conv_dw_nhwc *d, int64_t r0, int64_t r1) {         \
    dwq_run(d, r0, r1, SW, KIND, STORE);                                       \
  }
#define DWQ_KIND(NAME, KIND)                                                    \
  DWQ_FN(NAME##_s1, 1, KIND, 0) DWQ_FN(NAME##_s1_lo, 1, KIND, DWQ_LO)           \
  DWQ_FN(NAME##_s2, 2, KIND, 0) DWQ_FN(NAME##_s2_lo, 2, KIND, DWQ_LO)           \
  DWQ_FN(NAME##_p, 2, KIND, DWQ_PAIRED) DWQ_FN(NAME##_p_lo, 2, KIND, DWQ_PAIRED | DWQ_LO)
DWQ_KIND(dwq_int, CQ_PHASE_INT)
DWQ_KIND(dwq_float, CQ_PHASE_FLOAT)
DWQ_KIND(dwq_float_min, CQ_PHASE_FLOAT_MIN)
DWQ_KIND(dwq_float_unit, CQ_PHASE_FLOAT_UNIT)
DWQ_KIND(dwq_float_min_unit, CQ_PHASE_FLOAT_MIN_UNIT)
#define DWQ_ROW(NAME) \
  {{NAME##_s1, NAME##_s1_lo}, {NAME##_s2, NAME##_s2_lo}, {NAME##_p, NAME##_p_lo}}
/* [kind][stride_w 1, stride_w 2, paired positions][the fused ReLU's lower bound is above 0] */
static const dwq_fn dwq_table[CQ_PHASE_KINDS][3][2] = {
    DWQ_ROW(dwq_int),       DWQ_ROW(dwq_float),      DWQ_ROW(dwq_float_min),
    DWQ_ROW(dwq_float_unit), DWQ_ROW(dwq_float_min_unit),
};

void cq_u8_dwconv_nhwc__avx512vnni(const cq_conv_dw_nhwc *d, int64_t r0, int64_t r1) {
  const int mode = cq_dwq_paired(d->p) ? 2 : d->p->g.stride[1] == 2;
  dwq_table[cq_conv_phase_kind(d->out)][mode][d->out->y_min > 0](d, r0, r1);
}

/* AArch64 ARMv8.2 dot-product kernel: 4 rows x 16 columns (one panel), one SDOT per 4 rows x 4
 * columns x 4 k.
 *
 * The packed panel already has SDOT's shape: in each 64-byte group (four k), the 16 bytes at 16q
 * are columns 4q..4q+3 with their four k each. SDOT multiplies signed bytes only, so the uint8
 * activations are shifted into int8 (x - 128, an XOR of the top bit) and the shift is undone with
 * the column sums: sum x*w = sum (x - 128)*w + 128 * sum w. The four rows' activation words sit in
 * the four 32-bit lanes of one vector, and SDOT by element picks row r's word. Integer arithmetic
 * wraps in int32 throughout, so the result is the other ISAs' bit for bit. */
#include "kernels/gemm/neon-inl.h"

static inline __attribute__((always_inline)) void gemm_tile(const cq_gemm_args *g,
                                                            const cq_rq128 *k, size_t m, size_t p,
                                                            const int32_t *row_sums,
                                                            const size_t mr) {
  const cq_qgemm_packed *w = g->w;
  const size_t kk = (size_t)w->k, groups = (kk + 3) / 4, tail = kk % 4;
  const uint8_t *a = g->a + m * g->lda;
  const size_t lda = g->lda;
  const int8_t *wp = w->w + p * w->panel_bytes;
  const uint8x16_t flip = vdupq_n_u8(0x80);
  int32x4_t acc[CQ_NEON_MR][4];
  int32x4_t init[4]; /* 128 * column sums, wrapping */
  for (int q = 0; q < 4; q++) {
    init[q] = vshlq_n_s32(vld1q_s32(w->col_sums + p * CQ_QGEMM_NR + 4 * (size_t)q), 7);
  }
#pragma GCC unroll 4
  for (size_t r = 0; r < CQ_NEON_MR; r++) {
    for (int q = 0; q < 4; q++) acc[r][q] = init[q];
  }
  for (size_t gi = 0; gi < groups; gi++) {
    const size_t bytes = gi + 1 == groups && tail ? tail : 4;
    const int8x16x4_t wq = vld1q_s8_x4(wp + gi * 64);
    uint32x4_t xw = vdupq_n_u32(0x80808080u); /* rows >= mr: x = 128, i.e. 0 after the flip */
#pragma GCC unroll 4
    for (size_t r = 0; r < mr; r++) {
      uint32_t word = cq_neon_load_group(a + r * lda + gi * 4, bytes);
      if (bytes < 4) word |= 0x80808080u << (8 * bytes); /* tail bytes: 128, i.e. 0 */
      switch (r) { /* the lane must be a constant */
        case 0: xw = vsetq_lane_u32(word, xw, 0); break;
        case 1: xw = vsetq_lane_u32(word, xw, 1); break;
        case 2: xw = vsetq_lane_u32(word, xw, 2); break;
        default: xw = vsetq_lane_u32(word, xw, 3); break;
      }
    }
    const int8x16_t x = vreinterpretq_s8_u8(veorq_u8(vreinterpretq_u8_u32(xw), flip));
#define CQ_DOT_ROW(R)                                                  \
  if ((R) < mr) {                                                      \
    for (int q = 0; q < 4; q++) {                                      \
      acc[R][q] = vdotq_laneq_s32(acc[R][q], wq.val[q], x, R);         \
    }                                                                  \
  }
    CQ_DOT_ROW(0)
    CQ_DOT_ROW(1)
    CQ_DOT_ROW(2)
    CQ_DOT_ROW(3)
#undef CQ_DOT_ROW
  }
  cq_neon_gemm_epilogue(g, k, m, p, row_sums, mr, acc);
}

CQ_NEON_GEMM_BLOCK(neondot, gemm_tile)

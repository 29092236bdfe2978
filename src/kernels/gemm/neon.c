/* AArch64 NEON kernel (baseline ARMv8-A): 4 rows x 16 columns (one panel) in 16 int32x4
 * accumulators.
 *
 * LD4 de-interleaves a 64-byte group of the packed panel (16 columns x 4 k, see qgemm.h) into four
 * vectors, one per k, each holding that k's weight of the 16 columns. Those are widened to int16
 * and multiplied by the row's activation (uint8, widened to int16) with SMLAL/SMLAL2 by element
 * into int32: u8 x s8 products fit int16 operands exactly, and the int32 lanes wrap like the
 * reference's sums, so the result equals the other ISAs bit for bit. */
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
  int32x4_t acc[CQ_NEON_MR][4];
#pragma GCC unroll 4
  for (size_t r = 0; r < CQ_NEON_MR; r++) {
    for (int q = 0; q < 4; q++) acc[r][q] = vdupq_n_s32(0);
  }
  for (size_t gi = 0; gi < groups; gi++) {
    const size_t bytes = gi + 1 == groups && tail ? tail : 4;
    const int8x16x4_t wk = vld4q_s8(wp + gi * 64);
    int16x8_t wl[4], wh[4]; /* per k: columns 0..7 and 8..15 */
#pragma GCC unroll 4
    for (int t = 0; t < 4; t++) {
      wl[t] = vmovl_s8(vget_low_s8(wk.val[t]));
      wh[t] = vmovl_high_s8(wk.val[t]);
    }
#pragma GCC unroll 4
    for (size_t r = 0; r < mr; r++) {
      const uint32_t xg = cq_neon_load_group(a + r * lda + gi * 4, bytes);
      const int16x4_t x = vreinterpret_s16_u16(vget_low_u16(vmovl_u8(vcreate_u8(xg))));
#define CQ_MAC_K(T)                                                       \
  acc[r][0] = vmlal_lane_s16(acc[r][0], vget_low_s16(wl[T]), x, T);       \
  acc[r][1] = vmlal_high_lane_s16(acc[r][1], wl[T], x, T);                \
  acc[r][2] = vmlal_lane_s16(acc[r][2], vget_low_s16(wh[T]), x, T);       \
  acc[r][3] = vmlal_high_lane_s16(acc[r][3], wh[T], x, T);
      CQ_MAC_K(0)
      CQ_MAC_K(1)
      CQ_MAC_K(2)
      CQ_MAC_K(3)
#undef CQ_MAC_K
    }
  }
  cq_neon_gemm_epilogue(g, k, m, p, row_sums, mr, acc);
}

CQ_NEON_GEMM_BLOCK(neon, gemm_tile)

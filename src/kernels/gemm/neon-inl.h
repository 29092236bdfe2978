/* The parts the two AArch64 GEMM kernels (neon.c, neondot.c) share: loading a group of four k of
 * one activation row, the epilogue of a 4 x 16 tile and the block loop over tiles. Included only by
 * AArch64 kernel files. */
#ifndef CQ_KERNELS_GEMM_NEON_INL_H
#define CQ_KERNELS_GEMM_NEON_INL_H

#include <arm_neon.h>
#include <string.h>

#include "kernels/gemm/qgemm.h"
#include "kernels/requant/neon-inl.h"

#define CQ_NEON_MR 4

/* The four activation bytes of group gi of a row as one word; the last group of a K that is not a
 * multiple of 4 reads only its `bytes` bytes (the rest are 0, and meet zero weights anyway). */
static inline __attribute__((always_inline)) uint32_t cq_neon_load_group(const uint8_t *a,
                                                                         size_t bytes) {
  uint32_t v = 0;
  memcpy(&v, a, bytes);
  return v;
}

/* Zero-point terms and the output stage of rows [m, m + mr) of panel p, from the raw sums
 * acc[r][q] (columns 4q..4q+3 of the panel) of sum_k x * w. */
static inline __attribute__((always_inline)) void cq_neon_gemm_epilogue(
    const cq_gemm_args *g, const cq_rq128 *k, size_t m, size_t p, const int32_t *row_sums,
    const size_t mr, int32x4_t acc[CQ_NEON_MR][4]) {
  const cq_qgemm_packed *w = g->w;
  const cq_requant_params *rq = g->rq;
  const size_t esize = rq->kind == CQ_OUT_F32 ? sizeof(float) : 1;
  const size_t n = (size_t)w->n, c = p * CQ_QGEMM_NR;
  const size_t nc = n - c < CQ_QGEMM_NR ? n - c : CQ_QGEMM_NR;
  int32x4_t off[4], zw[4];
  for (int q = 0; q < 4; q++) {
    off[q] = vld1q_s32(g->offset + c + 4 * q);
    zw[q] = vld1q_s32(w->w_zp + c + 4 * q);
  }
#pragma GCC unroll 4
  for (size_t r = 0; r < mr; r++) {
    int32x4_t v[4];
    for (int q = 0; q < 4; q++) {
      v[q] = vaddq_s32(acc[r][q], off[q]);
      if (row_sums) v[q] = vmlsq_n_s32(v[q], zw[q], row_sums[r]);
    }
    cq_rq128_store16(rq, k, v, c, (char *)g->c + ((m + r) * g->ldc + c) * esize, nc);
  }
}

/* Defines cq_u8s8_gemm_block__<isa> over a tile function
 *   static void TILE(const cq_gemm_args *g, const cq_rq128 *k, size_t m, size_t p,
 *                    const int32_t *row_sums, size_t mr)
 * that computes rows [m, m + mr) (mr <= 4) of panel p: one specialisation per row count. */
#define CQ_NEON_GEMM_BLOCK(ISA, TILE)                                                           \
  static void ISA##_tile1(const cq_gemm_args *g, const cq_rq128 *k, size_t m, size_t p,        \
                          const int32_t *rs) {                                                 \
    TILE(g, k, m, p, rs, 1);                                                                   \
  }                                                                                            \
  static void ISA##_tile2(const cq_gemm_args *g, const cq_rq128 *k, size_t m, size_t p,        \
                          const int32_t *rs) {                                                 \
    TILE(g, k, m, p, rs, 2);                                                                   \
  }                                                                                            \
  static void ISA##_tile3(const cq_gemm_args *g, const cq_rq128 *k, size_t m, size_t p,        \
                          const int32_t *rs) {                                                 \
    TILE(g, k, m, p, rs, 3);                                                                   \
  }                                                                                            \
  static void ISA##_tile4(const cq_gemm_args *g, const cq_rq128 *k, size_t m, size_t p,        \
                          const int32_t *rs) {                                                 \
    TILE(g, k, m, p, rs, 4);                                                                   \
  }                                                                                            \
  void cq_u8s8_gemm_block__##ISA(const cq_gemm_args *g, int thread, size_t m0, size_t m1,      \
                                 size_t p0, size_t p1) {                                       \
    typedef void (*tile_fn)(const cq_gemm_args *, const cq_rq128 *, size_t, size_t,            \
                            const int32_t *);                                                  \
    static const tile_fn tiles[CQ_NEON_MR] = {ISA##_tile1, ISA##_tile2, ISA##_tile3,           \
                                              ISA##_tile4};                                    \
    (void)thread;                                                                              \
    const cq_qgemm_packed *w = g->w;                                                           \
    const cq_rq128 k = cq_rq128_init(g->rq);                                                   \
    int32_t row_sums[CQ_NEON_MR];                                                              \
    for (size_t m = m0; m < m1; m += CQ_NEON_MR) {                                             \
      const size_t mr = m1 - m < CQ_NEON_MR ? m1 - m : CQ_NEON_MR;                             \
      const int32_t *rs = NULL;                                                                \
      if (w->has_w_zp) {                                                                       \
        cq_gemm_row_sums(g->a + m * g->lda, g->lda, mr, (size_t)w->k, row_sums);               \
        rs = row_sums;                                                                         \
      }                                                                                        \
      for (size_t p = p0; p < p1; p++) tiles[mr - 1](g, &k, m, p, rs);                         \
    }                                                                                          \
  }

#endif

/* Portable C kernel: 4 rows x 16 columns (one panel) per microkernel call. */
#include "kernels/gemm/qgemm.h"

#define MR 4

/* acc[r][j] = sum_k a[r][k] * w[k][j] (uint8 x int8, wrapping int32) for mr rows of one panel. */
static void cq_u8s8_gemm_4x16__scalar(size_t mr, size_t k, const uint8_t *a, size_t lda,
                                      const int8_t *panel, uint32_t acc[MR][CQ_QGEMM_NR]) {
  for (size_t r = 0; r < MR; r++) {
    for (size_t j = 0; j < CQ_QGEMM_NR; j++) acc[r][j] = 0;
  }
  for (size_t i = 0; i < k; i++) {
    const int8_t *wg = panel + (i / 4) * 64 + (i % 4);
    for (size_t r = 0; r < mr; r++) {
      const uint32_t x = a[r * lda + i];
      for (size_t j = 0; j < CQ_QGEMM_NR; j++) acc[r][j] += x * (uint32_t)(int32_t)wg[j * 4];
    }
  }
}

void cq_u8s8_gemm_block__scalar(const cq_gemm_args *g, int thread, size_t m0, size_t m1, size_t p0,
                                size_t p1) {
  (void)thread;
  const cq_qgemm_packed *w = g->w;
  const cq_requant_params *rq = g->rq;
  const size_t k = (size_t)w->k, n = (size_t)w->n;
  const float lo_f = (float)(rq->y_min - rq->y_zp), hi_f = (float)(rq->y_max - rq->y_zp);
  uint32_t acc[MR][CQ_QGEMM_NR];
  int32_t row_sums[MR] = {0};
  for (size_t m = m0; m < m1; m += MR) {
    const size_t mr = m1 - m < MR ? m1 - m : MR;
    const uint8_t *a = g->a + m * g->lda;
    if (w->has_w_zp) cq_gemm_row_sums(a, g->lda, mr, k, row_sums);
    for (size_t p = p0; p < p1; p++) {
      cq_u8s8_gemm_4x16__scalar(mr, k, a, g->lda, w->w + p * w->panel_bytes, acc);
      const size_t c0 = p * CQ_QGEMM_NR;
      const size_t nc = n - c0 < CQ_QGEMM_NR ? n - c0 : CQ_QGEMM_NR;
      for (size_t r = 0; r < mr; r++) {
        for (size_t j = 0; j < nc; j++) {
          const size_t c = c0 + j;
          uint32_t v = acc[r][j] + (uint32_t)g->offset[c];
          v -= (uint32_t)w->w_zp[c] * (uint32_t)row_sums[r];
          const int32_t s = (int32_t)v;
          const size_t at = (m + r) * g->ldc + c;
          switch (rq->kind) {
            case CQ_OUT_U8_INT:
              ((uint8_t *)g->c)[at] = cq_requant_u8_int((int32_t)(v + (uint32_t)rq->ibias[c]),
                                                        rq->mult[c], rq->y_zp, rq->y_min, rq->y_max);
              break;
            case CQ_OUT_U8_FLOAT:
              ((uint8_t *)g->c)[at] = cq_requant_u8_float(s, rq->scale[c], rq->fbias[c],
                                                          rq->mult[c], rq->y_zp, lo_f, hi_f);
              break;
            default:
              ((float *)g->c)[at] = cq_requant_f32(s, rq->scale[c], rq->fbias[c], rq->mult[c],
                                                   rq->obias[c], rq->relu);
              break;
          }
        }
      }
    }
  }
}

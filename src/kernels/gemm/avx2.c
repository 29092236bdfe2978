/* AVX2 kernel: 4 rows x 16 columns (one panel) in 8 ymm accumulators.
 *
 * vpmaddubsw multiplies uint8 by int8 bytes and adds adjacent pairs into int16 with saturation;
 * a pair of extreme products (255 * -128 * 2) does not fit, which is what forces fbgemm's AVX2
 * path to reduce_range. Here the weights are split into their even and odd bytes (the other byte
 * of each pair zeroed), so each int16 holds exactly one product (|x * w| <= 32640) and nothing
 * saturates; vpmaddwd by 1 then widens pairs of those products into the int32 accumulators. The
 * result is exact for the full uint8 range, bit-identical to the other ISAs. */
#include <immintrin.h>
#include <string.h>

#include "kernels/gemm/qgemm.h"
#include "kernels/requant/avx2-inl.h"

#define MR 4

static inline __attribute__((always_inline)) int32_t load_group(const uint8_t *a, size_t bytes) {
  int32_t v = 0;
  memcpy(&v, a, bytes);
  return v;
}

static inline __attribute__((always_inline)) __m256i dot_step(__m256i acc, __m256i av, __m256i we,
                                                              __m256i wo, __m256i ones) {
  const __m256i pe = _mm256_madd_epi16(_mm256_maddubs_epi16(av, we), ones);
  const __m256i po = _mm256_madd_epi16(_mm256_maddubs_epi16(av, wo), ones);
  return _mm256_add_epi32(acc, _mm256_add_epi32(pe, po));
}

static inline __attribute__((always_inline)) void gemm_tile(const cq_gemm_args *g, const cq_rq256 *k,
                                                            size_t m, size_t p, const int32_t *row_sums,
                                                            const size_t mr) {
  const cq_qgemm_packed *w = g->w;
  const size_t kk = (size_t)w->k, groups = (kk + 3) / 4, tail = kk % 4;
  const uint8_t *a = g->a + m * g->lda;
  const size_t lda = g->lda;
  const int8_t *wp = w->w + p * w->panel_bytes;
  const __m256i even = _mm256_set1_epi16(0x00ff), odd = _mm256_set1_epi16((short)0xff00);
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i lo[MR], hi[MR];
#pragma GCC unroll 4
  for (size_t r = 0; r < mr; r++) lo[r] = hi[r] = _mm256_setzero_si256();
  for (size_t gi = 0; gi < groups; gi++) {
    const size_t bytes = gi + 1 == groups && tail ? tail : 4;
    const __m256i wl = _mm256_load_si256((const __m256i *)(wp + gi * 64));
    const __m256i wh = _mm256_load_si256((const __m256i *)(wp + gi * 64 + 32));
    const __m256i wle = _mm256_and_si256(wl, even), wlo = _mm256_and_si256(wl, odd);
    const __m256i whe = _mm256_and_si256(wh, even), who = _mm256_and_si256(wh, odd);
#pragma GCC unroll 4
    for (size_t r = 0; r < mr; r++) {
      const __m256i av = _mm256_set1_epi32(load_group(a + r * lda + gi * 4, bytes));
      lo[r] = dot_step(lo[r], av, wle, wlo, ones);
      hi[r] = dot_step(hi[r], av, whe, who, ones);
    }
  }
  const cq_requant_params *rq = g->rq;
  const size_t esize = rq->kind == CQ_OUT_F32 ? sizeof(float) : 1;
  const size_t n = (size_t)w->n, c0 = p * CQ_QGEMM_NR;
  const size_t nc = n - c0 < CQ_QGEMM_NR ? n - c0 : CQ_QGEMM_NR;
  for (size_t h = 0; h < 2; h++) {
    const size_t c = c0 + 8 * h;
    if (8 * h >= nc) break;
    const size_t cnt = nc - 8 * h < 8 ? nc - 8 * h : 8;
    const __m256i off = _mm256_loadu_si256((const __m256i *)(g->offset + c));
    const __m256i zw = _mm256_loadu_si256((const __m256i *)(w->w_zp + c));
#pragma GCC unroll 4
    for (size_t r = 0; r < mr; r++) {
      __m256i v = _mm256_add_epi32(h ? hi[r] : lo[r], off);
      if (row_sums) v = _mm256_sub_epi32(v, _mm256_mullo_epi32(zw, _mm256_set1_epi32(row_sums[r])));
      cq_rq256_store(rq, k, v, c, (char *)g->c + ((m + r) * g->ldc + c) * esize, cnt);
    }
  }
}

/* cq_u8s8_gemm_Rx16__avx2: R rows x one panel. */
#define TILE_FN(R)                                                                         \
  static void cq_u8s8_gemm_##R##x16__avx2(const cq_gemm_args *g, const cq_rq256 *k, size_t m, \
                                          size_t p, const int32_t *rs) {                  \
    gemm_tile(g, k, m, p, rs, R);                                                         \
  }
TILE_FN(1)
TILE_FN(2)
TILE_FN(3)
TILE_FN(4)

typedef void (*tile_fn)(const cq_gemm_args *, const cq_rq256 *, size_t, size_t, const int32_t *);
static const tile_fn tiles[MR] = {cq_u8s8_gemm_1x16__avx2, cq_u8s8_gemm_2x16__avx2,
                                  cq_u8s8_gemm_3x16__avx2, cq_u8s8_gemm_4x16__avx2};

void cq_u8s8_gemm_block__avx2(const cq_gemm_args *g, int thread, size_t m0, size_t m1, size_t p0,
                              size_t p1) {
  (void)thread;
  const cq_qgemm_packed *w = g->w;
  const cq_rq256 k = cq_rq256_init(g->rq);
  int32_t row_sums[MR];
  for (size_t m = m0; m < m1; m += MR) {
    const size_t mr = m1 - m < MR ? m1 - m : MR;
    const int32_t *rs = NULL;
    if (w->has_w_zp) {
      cq_gemm_row_sums(g->a + m * g->lda, g->lda, mr, (size_t)w->k, row_sums);
      rs = row_sums;
    }
    for (size_t p = p0; p < p1; p++) tiles[mr - 1](g, &k, m, p, rs);
  }
}

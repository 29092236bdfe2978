/* AVX-512 VNNI kernels: vpdpbusd multiplies uint8 activations by int8 weights and adds groups of
 * four products straight into int32 lanes, so there is no intermediate saturation. The
 * microkernel computes up to 6 rows x 4 panels (64 columns) in 24 zmm accumulators (or, for one
 * or two rows, up to 8 panels); per group of four k it loads one 64-byte vector per panel and
 * broadcasts four activation bytes per row. */
#include <immintrin.h>
#include <string.h>

#include "kernels/gemm/qgemm.h"
#include "kernels/requant/avx512-inl.h"
#include "kernels/vnni-inl.h"

#define MR 6
#define NP 4
/* Up to WIDE_MR rows use a wider tile: 8 panels give eight independent accumulation chains per
 * row, enough to cover vpdpbusd's latency when only one or two rows share each weight load. */
#define WIDE_MR 2
#define WIDE_NP 8

/* Weights of a block of panels that should stay in L2 while the rows stream past them. */
#define CQ_VNNI_BLOCK_BYTES (512u * 1024u)

static inline __attribute__((always_inline)) int32_t load_group(const uint8_t *a, size_t bytes) {
  int32_t v = 0;
  memcpy(&v, a, bytes);
  return v;
}

/* The microkernel: rows [m, m + mr) x panels [p, p + np), mr and np compile-time constants after
 * inlining into the wrappers below. */
static inline __attribute__((always_inline)) void gemm_tile(const cq_gemm_args *g, const cq_rq512 *k,
                                                            size_t m, size_t p, const int32_t *row_sums,
                                                            const size_t mr, const size_t np) {
  const cq_qgemm_packed *w = g->w;
  const size_t kk = (size_t)w->k, full = kk / 4, tail = kk % 4;
  const uint8_t *a = g->a + m * g->lda;
  const size_t lda = g->lda;
  const int8_t *wp = w->w + p * w->panel_bytes;
  const size_t pb = w->panel_bytes;
  __m512i acc[MR][WIDE_NP];
#pragma GCC unroll 8
  for (size_t r = 0; r < mr; r++) {
#pragma GCC unroll 8
    for (size_t j = 0; j < np; j++) acc[r][j] = _mm512_setzero_si512();
  }
  for (size_t gi = 0; gi < full; gi++) {
    __m512i b[WIDE_NP];
#pragma GCC unroll 8
    for (size_t j = 0; j < np; j++) b[j] = _mm512_load_si512(wp + j * pb + gi * 64);
#pragma GCC unroll 8
    for (size_t r = 0; r < mr; r++) {
      const __m512i av = _mm512_set1_epi32(load_group(a + r * lda + gi * 4, 4));
#pragma GCC unroll 8
      for (size_t j = 0; j < np; j++) CQ_DPBUSD(acc[r][j], av, b[j]);
    }
  }
  if (tail) {
    __m512i b[WIDE_NP];
#pragma GCC unroll 8
    for (size_t j = 0; j < np; j++) b[j] = _mm512_load_si512(wp + j * pb + full * 64);
#pragma GCC unroll 8
    for (size_t r = 0; r < mr; r++) {
      const __m512i av = _mm512_set1_epi32(load_group(a + r * lda + full * 4, tail));
#pragma GCC unroll 8
      for (size_t j = 0; j < np; j++) acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], av, b[j]);
    }
  }
  /* output stage */
  const cq_requant_params *rq = g->rq;
  const size_t esize = rq->kind == CQ_OUT_F32 ? sizeof(float) : 1;
  const size_t n = (size_t)w->n;
#pragma GCC unroll 8
  for (size_t j = 0; j < np; j++) {
    const size_t c = (p + j) * CQ_QGEMM_NR;
    const size_t nc = n - c < CQ_QGEMM_NR ? n - c : CQ_QGEMM_NR;
    const __mmask16 mask = (__mmask16)((1u << nc) - 1);
    const __m512i off = _mm512_loadu_si512(g->offset + c);
    const __m512i zw = _mm512_loadu_si512(w->w_zp + c);
#pragma GCC unroll 8
    for (size_t r = 0; r < mr; r++) {
      __m512i v = _mm512_add_epi32(acc[r][j], off);
      if (row_sums) v = _mm512_sub_epi32(v, _mm512_mullo_epi32(zw, _mm512_set1_epi32(row_sums[r])));
      cq_rq512_store(rq, k, v, c, (char *)g->c + ((m + r) * g->ldc + c) * esize, mask);
    }
  }
}

/* cq_u8s8_gemm_RxC__avx512vnni: R rows x C columns (C/16 panels). */
#define TILE_FN(R, P, C)                                                                  \
  static void cq_u8s8_gemm_##R##x##C##__avx512vnni(const cq_gemm_args *g, const cq_rq512 *k, \
                                                  size_t m, size_t p, const int32_t *rs) { \
    gemm_tile(g, k, m, p, rs, R, P);                                                      \
  }
#define TILE_ROW(R) TILE_FN(R, 1, 16) TILE_FN(R, 2, 32) TILE_FN(R, 3, 48) TILE_FN(R, 4, 64)
TILE_ROW(1)
TILE_ROW(2)
TILE_ROW(3)
TILE_ROW(4)
TILE_ROW(5)
TILE_ROW(6)

#define WIDE_ROW(R) TILE_FN(R, 5, 80) TILE_FN(R, 6, 96) TILE_FN(R, 7, 112) TILE_FN(R, 8, 128)
WIDE_ROW(1)
WIDE_ROW(2)

typedef void (*tile_fn)(const cq_gemm_args *, const cq_rq512 *, size_t, size_t, const int32_t *);
#define T(R, C) cq_u8s8_gemm_##R##x##C##__avx512vnni
#define TILE_ENTRY(R) {T(R, 16), T(R, 32), T(R, 48), T(R, 64)}
static const tile_fn tiles[MR][NP] = {TILE_ENTRY(1), TILE_ENTRY(2), TILE_ENTRY(3),
                                      TILE_ENTRY(4), TILE_ENTRY(5), TILE_ENTRY(6)};
#define WIDE_ENTRY(R) \
  {T(R, 16), T(R, 32), T(R, 48), T(R, 64), T(R, 80), T(R, 96), T(R, 112), T(R, 128)}
static const tile_fn wide_tiles[WIDE_MR][WIDE_NP] = {WIDE_ENTRY(1), WIDE_ENTRY(2)};

void cq_u8s8_gemm_block__avx512vnni(const cq_gemm_args *g, int thread, size_t m0, size_t m1,
                                    size_t p0, size_t p1) {
  (void)thread;
  const cq_qgemm_packed *w = g->w;
  const cq_rq512 k = cq_rq512_init(g->rq);
  size_t block = CQ_VNNI_BLOCK_BYTES / w->panel_bytes / WIDE_NP * WIDE_NP;
  if (block < WIDE_NP) block = WIDE_NP;
  int32_t row_sums[MR];
  for (size_t pb = p0; pb < p1; pb += block) {
    const size_t pe = p1 - pb < block ? p1 : pb + block;
    for (size_t m = m0; m < m1; m += MR) {
      const size_t mr = m1 - m < MR ? m1 - m : MR;
      const int32_t *rs = NULL;
      if (w->has_w_zp) {
        cq_gemm_row_sums(g->a + m * g->lda, g->lda, mr, (size_t)w->k, row_sums);
        rs = row_sums;
      }
      if (mr <= WIDE_MR) {
        for (size_t p = pb; p < pe; p += WIDE_NP) {
          const size_t np = pe - p < WIDE_NP ? pe - p : WIDE_NP;
          wide_tiles[mr - 1][np - 1](g, &k, m, p, rs);
        }
      } else {
        for (size_t p = pb; p < pe; p += NP) {
          const size_t np = pe - p < NP ? pe - p : NP;
          tiles[mr - 1][np - 1](g, &k, m, p, rs);
        }
      }
    }
  }
}

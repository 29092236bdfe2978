/* AMX-INT8 kernels. tdpbusd multiplies a 16 x 64 uint8 tile of activations by a 16 x 64 int8 tile
 * of weights (16 groups of four k x 16 columns: exactly one packed panel's 64-k step) into a
 * 16 x 16 int32 tile, adding groups of four products without intermediate saturation.
 *
 * Tiles (palette 1, rows of 64 bytes, 16 rows except in a short last row strip):
 *   32x32 blocks: accumulators t0-t3, activations t4-t5, weights t6-t7 (each load used twice);
 *                 the main kernel for more than 16 rows.
 *   16x64 blocks: accumulators t0-t3, activations t4, weights t5-t7 (the fourth panel reuses t5);
 *                 for the last 16 rows or fewer.
 * Loop order: rows outer (a 32-row strip of activations stays in L1 across all column blocks),
 * columns inner; the weights of a chunk of columns sized for L2 stream past with the non-temporal
 * tile load (tileloaddt1) so they do not evict the activations. A short last row strip gets a tile
 * configuration with that many rows (so 2..15-row GEMMs cost little more than a 1-row one).
 * Activation tiles are loaded straight from X (row stride ldx) except where a tile would read past
 * the call's last valid byte (the K tail of the last rows, K padded to 64): those go through a
 * zero-filled staging buffer on the stack, so no byte outside [m0, m1) x [0, K) is read.
 *
 * Output stage: a block's accumulators are stored to one of two stack buffers and finished (the
 * AVX-512 stage of kernels/requant/avx512-inl.h) a few rows at a time while the next block's tile
 * instructions run, so that the vector work can overlap the tile unit's (on this machine it does
 * so only partly: the output stage still costs ~20% of a 1024^3 GEMM).
 *
 * Few rows (16 x 1024 x 1024: every weight tile used by one tdpbusd): bench/bench_amx_loops.c
 * times the parts on this machine. Plain loads of the 1 MiB of weights take ~6 us, their tile
 * loads ~6.2, the 1024 tdpbusd alone ~5.2; but loads and products together take 7.5-7.9 even
 * when no product depends on a load, this loop (weights in the B operand) 8.1-8.5 and the other
 * assignment (weights in A, activations reloaded into B) 8.0-8.3, with any number of rotating
 * weight tiles or load distance tried. The output stage, interleaved as described above, adds
 * ~2.5 more: a model of the loop with the output stage runs as fast as this kernel.
 *
 * Single-row GEMMs use the VNNI kernel (as fast: both stream the weights from L2). Each call
 * configures the tiles for the calling thread and releases them before returning. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "kernels/amx-inl.h"
#include "kernels/gemm/qgemm.h"
#include "kernels/requant/avx512-inl.h"

/* Fewer rows than this go to the VNNI kernel (one row: equally fast, no tile setup). */
#define CQ_AMX_MIN_ROWS 2
/* Weights per column chunk: the chunk stays in L2 while all row strips pass over it. */
#define CQ_AMX_CHUNK_BYTES (1024u * 1024u)

/* Tile shapes: accumulator and activation tiles have as many rows as the block has (the last
 * row strip may be short, and then no activation byte past the last row is loaded); weight tiles
 * always have 16 rows (16 groups of four k). rows0 is for t0, t1, t4 (and t2, t3 in the 16x64
 * layout), rows1 for t2, t3, t5 of the 32x32 layout's second row tile (0: the 16x64 layout). */
static void configure_tiles(size_t rows0, size_t rows1) {
  uint8_t rows[8] = {16, 16, 16, 16, 16, 16, 16, 16};
  rows[0] = rows[1] = rows[4] = (uint8_t)rows0;
  if (rows1) {
    rows[2] = rows[3] = rows[5] = (uint8_t)rows1;
  } else {
    rows[2] = rows[3] = (uint8_t)rows0;
  }
  const cq_amx_config cfg = cq_amx_config_of(rows);
  _tile_loadconfig(&cfg);
}

typedef struct amx_ctx {
  const cq_gemm_args *g;
  const cq_rq512 *k;
  const uint8_t *a_end; /* one past the last readable activation byte of this call's rows */
  size_t m1;
  size_t k_steps;       /* k_padded / 64 */
} amx_ctx;

/* A block whose accumulators (row stride 64 int32) wait for the output stage. It is finished panel
 * by panel, row by row; (j, r) is the next row to do. */
typedef struct pending {
  const int32_t *acc;
  const int32_t *row_sums; /* of rows m.., or NULL when the weights have no zero points */
  size_t m, rows, p, np;
  size_t j, r;
} pending;

/* Pointer and stride for the activation tile of rows [r, r + rows) at k step s: X itself, or a
 * zero-padded staging copy when the tile would read past the call's last valid byte (the K tail
 * of the last rows). */
static inline const uint8_t *a_tile(const amx_ctx *x, size_t r, size_t rows, size_t s,
                                    uint8_t *stage, size_t *stride) {
  const cq_gemm_args *g = x->g;
  const uint8_t *src = g->a + r * g->lda + s * 64;
  if (src + (rows - 1) * g->lda + 64 <= x->a_end) {
    *stride = g->lda;
    return src;
  }
  const size_t kk = (size_t)g->w->k;
  const size_t cols = kk > s * 64 ? (kk - s * 64 < 64 ? kk - s * 64 : 64) : 0;
  memset(stage, 0, 16 * 64);
  for (size_t i = 0; i < rows; i++) memcpy(stage + i * 64, src + i * g->lda, cols);
  *stride = 64;
  return stage;
}

static inline void store_u8(uint8_t *y, __mmask16 mask, __m512i v) {
  if (mask == 0xffff) {
    _mm_storeu_si128((__m128i *)y, _mm512_cvtepi32_epi8(v));
  } else {
    _mm512_mask_cvtepi32_storeu_epi8(y, mask, v);
  }
}

static inline __m512i corrected(const pending *pe, const int32_t *acc, size_t r, __m512i off,
                                __m512i zw) {
  __m512i v = _mm512_add_epi32(_mm512_load_si512(acc + r * 64), off);
  if (pe->row_sums) {
    v = _mm512_sub_epi32(v, _mm512_mullo_epi32(zw, _mm512_set1_epi32(pe->row_sums[r])));
  }
  return v;
}

/* Finishes up to `count` rows (of one panel each) of the pending block. */
static void finish_rows(const amx_ctx *x, pending *pe, size_t count) {
  const cq_gemm_args *g = x->g;
  const cq_qgemm_packed *w = g->w;
  const cq_requant_params *rq = g->rq;
  const cq_rq512 *k = x->k;
  const size_t n = (size_t)w->n;
  while (count > 0 && pe->j < pe->np) {
    const size_t c = (pe->p + pe->j) * CQ_QGEMM_NR;
    const size_t nc = n - c < CQ_QGEMM_NR ? n - c : CQ_QGEMM_NR;
    const __mmask16 mask = (__mmask16)((1u << nc) - 1);
    const __m512i off = _mm512_loadu_si512(g->offset + c);
    const __m512i zw = _mm512_loadu_si512(w->w_zp + c);
    const int32_t *acc = pe->acc + pe->j * 16;
    size_t r = pe->r;
    const size_t r_end = pe->rows - r > count ? r + count : pe->rows;
    count -= r_end - r;
    switch (rq->kind) {
      case CQ_OUT_U8_INT: {
        const __m512i ib = _mm512_loadu_si512(rq->ibias + c);
        const __m512 mult = _mm512_loadu_ps(rq->mult + c);
        uint8_t *y = (uint8_t *)g->c + pe->m * g->ldc + c;
        for (; r < r_end; r++) {
          const __m512i v = _mm512_add_epi32(corrected(pe, acc, r, off, zw), ib);
          store_u8(y + r * g->ldc, mask, cq_rq512_u8_int(k, v, mult));
        }
        break;
      }
      case CQ_OUT_U8_FLOAT: {
        const __m512 scale = _mm512_loadu_ps(rq->scale + c);
        const __m512 fbias = _mm512_loadu_ps(rq->fbias + c);
        const __m512 mult = _mm512_loadu_ps(rq->mult + c);
        uint8_t *y = (uint8_t *)g->c + pe->m * g->ldc + c;
        for (; r < r_end; r++) {
          const __m512i v = corrected(pe, acc, r, off, zw);
          store_u8(y + r * g->ldc, mask, cq_rq512_u8_float(k, v, scale, fbias, mult));
        }
        break;
      }
      default: {
        const __m512 scale = _mm512_loadu_ps(rq->scale + c);
        const __m512 fbias = _mm512_loadu_ps(rq->fbias + c);
        const __m512 mult = _mm512_loadu_ps(rq->mult + c);
        const __m512 obias = _mm512_loadu_ps(rq->obias + c);
        float *y = (float *)g->c + pe->m * g->ldc + c;
        for (; r < r_end; r++) {
          const __m512i v = corrected(pe, acc, r, off, zw);
          _mm512_mask_storeu_ps(y + r * g->ldc, mask,
                                cq_rq512_f32(v, scale, fbias, mult, obias, rq->relu));
        }
        break;
      }
    }
    if (r == pe->rows) {
      pe->r = 0;
      pe->j++;
    } else {
      pe->r = r;
    }
  }
}

/* Rows of the pending block to finish per k step so that it is done when this block's loop ends. */
static inline size_t rows_per_step(const amx_ctx *x, const pending *prev) {
  return (prev->rows * prev->np + x->k_steps - 1) / x->k_steps;
}

/* 32 rows (the second activation tile may be partly past m1) x np (1 or 2) panels. The
 * accumulators go to acc_out and become the new pending block; `prev` is finished on the way. */
static void block_32x32(const amx_ctx *x, size_t m, size_t p, size_t np, const int32_t *row_sums,
                        int32_t *acc_out, pending *prev) {
  const cq_qgemm_packed *w = x->g->w;
  const int8_t *b0 = w->w + p * w->panel_bytes;
  const int8_t *b1 = b0 + w->panel_bytes;
  uint8_t stage[2][16 * 64] __attribute__((aligned(64)));
  const size_t per_step = rows_per_step(x, prev);
  const size_t rows1 = x->m1 - m - 16 < 16 ? x->m1 - m - 16 : 16;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (size_t s = 0; s < x->k_steps; s++) {
    size_t st0, st1;
    const uint8_t *a0 = a_tile(x, m, 16, s, stage[0], &st0);
    const uint8_t *a1 = a_tile(x, m + 16, rows1, s, stage[1], &st1);
    _tile_loadd(4, a0, (long)st0);
    _tile_loadd(5, a1, (long)st1);
    _tile_stream_loadd(6, b0 + s * 1024, 64);
    _tile_dpbusd(0, 4, 6);
    _tile_dpbusd(2, 5, 6);
    if (np > 1) {
      _tile_stream_loadd(7, b1 + s * 1024, 64);
      _tile_dpbusd(1, 4, 7);
      _tile_dpbusd(3, 5, 7);
    }
    finish_rows(x, prev, per_step);
  }
  finish_rows(x, prev, SIZE_MAX);
  _tile_stored(0, acc_out, 256);
  _tile_stored(2, acc_out + 16 * 64, 256);
  if (np > 1) {
    _tile_stored(1, acc_out + 16, 256);
    _tile_stored(3, acc_out + 16 * 64 + 16, 256);
  }
  const size_t rows = x->m1 - m < 32 ? x->m1 - m : 32;
  *prev = (pending){acc_out, row_sums, m, rows, p, np, 0, 0};
}

/* Up to 16 rows x np (1 to 4) panels. */
static void block_16x64(const amx_ctx *x, size_t m, size_t p, size_t np, const int32_t *row_sums,
                        int32_t *acc_out, pending *prev) {
  const cq_qgemm_packed *w = x->g->w;
  const size_t pb = w->panel_bytes;
  const int8_t *b = w->w + p * pb;
  uint8_t stage[16 * 64] __attribute__((aligned(64)));
  const size_t per_step = rows_per_step(x, prev);
  const size_t rows = x->m1 - m < 16 ? x->m1 - m : 16;
  _tile_zero(0);
  _tile_zero(1);
  _tile_zero(2);
  _tile_zero(3);
  for (size_t s = 0; s < x->k_steps; s++) {
    size_t st;
    const uint8_t *a = a_tile(x, m, rows, s, stage, &st);
    const int8_t *bs = b + s * 1024;
    _tile_loadd(4, a, (long)st);
    _tile_stream_loadd(5, bs, 64);
    _tile_dpbusd(0, 4, 5);
    if (np > 1) {
      _tile_stream_loadd(6, bs + pb, 64);
      _tile_dpbusd(1, 4, 6);
    }
    if (np > 2) {
      _tile_stream_loadd(7, bs + 2 * pb, 64);
      _tile_dpbusd(2, 4, 7);
    }
    if (np > 3) {
      _tile_stream_loadd(5, bs + 3 * pb, 64);
      _tile_dpbusd(3, 4, 5);
    }
    /* every other step, twice the rows: half the calls and constant loads (16 x 1024 x 1024 ran
     * ~6% faster than with a little every step) */
    if (s & 1) finish_rows(x, prev, 2 * per_step);
  }
  finish_rows(x, prev, SIZE_MAX);
  _tile_stored(0, acc_out, 256);
  if (np > 1) _tile_stored(1, acc_out + 16, 256);
  if (np > 2) _tile_stored(2, acc_out + 32, 256);
  if (np > 3) _tile_stored(3, acc_out + 48, 256);
  *prev = (pending){acc_out, row_sums, m, rows, p, np, 0, 0};
}

void cq_u8s8_gemm_block__amx(const cq_gemm_args *g, int thread, size_t m0, size_t m1, size_t p0,
                             size_t p1) {
  if (m1 - m0 < CQ_AMX_MIN_ROWS) {
    cq_u8s8_gemm_block__avx512vnni(g, thread, m0, m1, p0, p1);
    return;
  }
  const cq_qgemm_packed *w = g->w;
  const cq_rq512 k = cq_rq512_init(g->rq);
  const amx_ctx x = {.g = g,
                     .k = &k,
                     .a_end = g->a + (m1 - 1) * g->lda + (size_t)w->k,
                     .m1 = m1,
                     .k_steps = (size_t)w->k_padded / 64};
  size_t chunk = CQ_AMX_CHUNK_BYTES / w->panel_bytes / 4 * 4;
  if (chunk < 4) chunk = 4;
  /* two accumulator buffers (the pending block and the one being computed) and two row-sum
   * buffers (the pending block may belong to the previous row strip) */
  int32_t acc[2][32 * 64] __attribute__((aligned(64)));
  int32_t row_sums[2][32];
  pending prev = {acc[1], NULL, m0, 1, p0, 0, 0, 0}; /* nothing pending yet */
  int cur = 0, rsb = 0;
  size_t shape0 = 0, shape1 = SIZE_MAX; /* current tile configuration */
  for (size_t pc = p0; pc < p1; pc += chunk) {
    const size_t pe = p1 - pc < chunk ? p1 : pc + chunk;
    for (size_t m = m0; m < m1;) {
      const size_t rows = m1 - m;
      const int32_t *rs = NULL;
      if (w->has_w_zp) {
        rsb ^= 1;
        cq_gemm_row_sums(g->a + m * g->lda, g->lda, rows < 32 ? rows : 32, (size_t)w->k,
                         row_sums[rsb]);
        rs = row_sums[rsb];
      }
      /* (re)configure when the strip's shape changes: reconfiguring zeroes the tiles, which is
       * fine between blocks (the pending block's accumulators are already in memory) */
      const size_t want0 = rows > 16 ? 16 : rows;
      const size_t want1 = rows > 16 ? (rows < 32 ? rows - 16 : 16) : 0;
      if (want0 != shape0 || want1 != shape1) {
        configure_tiles(want0, want1);
        shape0 = want0;
        shape1 = want1;
      }
      if (rows > 16) {
        for (size_t p = pc; p < pe; p += 2) {
          block_32x32(&x, m, p, pe - p < 2 ? pe - p : 2, rs, acc[cur], &prev);
          cur ^= 1;
        }
        m += 32;
      } else {
        for (size_t p = pc; p < pe; p += 4) {
          block_16x64(&x, m, p, pe - p < 4 ? pe - p : 4, rs, acc[cur], &prev);
          cur ^= 1;
        }
        m += 16;
      }
    }
  }
  finish_rows(&x, &prev, SIZE_MAX);
  _tile_release();
}

/* AMX-INT8 convolution GEMM kernel (implicit and im2col paths; see qconv.h).
 *
 * Tiles (palette 1, all 16 rows x 64 bytes): accumulators t0-t3 (32 rows x 32 channels), activations
 * t4-t5 (two 16-row strips), weights t6-t7 (two panels of one K step: 16 groups of four k x 16
 * channels, exactly a packed panel's 1 KiB step). An activation tile is 16 rows of 64 bytes at
 * a + q * lda + aoff[s]: for the implicit path 16 output positions of the padded NHWC image (row
 * stride = the pixel size), so the tile unit reads the image in place. Accumulators start from a
 * 16 x 16 tile of the op's init (zero-point terms and QNNPACK's bias).
 *
 * A strip of 32 rows is computed for 64 channels (two 32 x 32 blocks), stored to a stack buffer and
 * finished by the AVX-512 output stage (avx512-inl.h) while the tile unit already works on the next
 * block: the output stage of a block is spread over the K steps of the following one, so the
 * vector work and the tile work overlap. Rows past m1 in the last strip are computed on whatever
 * the slack holds and never stored. */
#include <immintrin.h>
#include <string.h>

#include "kernels/conv/avx512-inl.h"
#include "kernels/conv/qconv.h"

typedef struct __attribute__((packed, aligned(64))) tile_config {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} tile_config;

static void configure_tiles(void) {
  tile_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.palette = 1;
  for (int t = 0; t < 8; t++) {
    cfg.rows[t] = 16;
    cfg.colsb[t] = 64;
  }
  _tile_loadconfig(&cfg);
}

/* A finished 32-row x 64-channel block waiting for the output stage: 16-row halves h, processed
 * in quarters (4 rows per call of finish_some) so that the work spreads over K steps. */
typedef struct pending {
  const int32_t *acc; /* [32][64] */
  size_t m, rows, c0, nc;
  size_t done;        /* rows requantized so far */
  __m512i stage[2][16];
} pending;

static inline void finish_some(const cq_conv_out *o, const cq_conv_rq *k, pending *pe,
                               size_t count) {
  while (count > 0 && pe->done < pe->rows) {
    const size_t h = pe->done / 16, r = pe->done % 16;
    const size_t half_rows = pe->rows - 16 * h < 16 ? pe->rows - 16 * h : 16;
    size_t n = half_rows - r < count ? half_rows - r : count;
    cq_conv_rq_rows(o, k, pe->acc + (16 * h + r) * 64, 64, n, pe->c0, pe->nc, 1, pe->stage[h] + r);
    pe->done += n;
    count -= n;
    if (r + n == half_rows) {
      cq_conv_store_stage(o, pe->stage[h], half_rows, (int64_t)(pe->m + 16 * h), pe->c0, pe->nc);
    }
  }
}

void cq_u8s8_conv_gemm__amx(const cq_conv_gemm *g, size_t m0, size_t m1) {
  const cq_conv_out *o = g->out;
  const cq_conv_rq k = cq_conv_rq_init(o);
  const cq_qgemm_packed *w = g->w;
  const size_t panels = (size_t)w->panels, n = (size_t)o->n, pb = w->panel_bytes;
  const size_t ksteps = g->ksteps;
  const long lda = (long)g->lda;
  int32_t acc[2][32 * 64] __attribute__((aligned(64)));
  pending pe = {.acc = acc[1], .rows = 0, .done = 0};
  int cur = 0;
  configure_tiles();
  for (size_t m = m0; m < m1; m += 32) {
    const size_t rows = m1 - m < 32 ? m1 - m : 32;
    const int two = rows > 16;
    for (size_t p = 0; p < panels; p += 4) {
      int32_t *out = acc[cur];
      const size_t nq = panels - p < 4 ? panels - p : 4;
      /* rows of the pending block to finish per K step */
      const size_t per_step = (pe.rows - pe.done + 2 * ksteps - 1) / (2 * ksteps);
      for (size_t pp = 0; pp < nq; pp += 2) {
        const size_t q = p + pp;
        const int pair = nq - pp > 1;
        _tile_zero(0);
        _tile_zero(2);
        if (pair) {
          _tile_zero(1);
          _tile_zero(3);
        }
        const int8_t *b0 = w->w + q * pb;
        const uint8_t *a0 = g->a + m * g->lda;
        for (size_t s = 0; s < ksteps; s++) {
          const uint8_t *as = a0 + g->aoff[s];
          _tile_loadd(4, as, lda);
          _tile_loadd(6, b0 + s * 1024, 64);
          _tile_dpbusd(0, 4, 6);
          if (two) {
            _tile_loadd(5, as + 16 * g->lda, lda);
            _tile_dpbusd(2, 5, 6);
          }
          if (pair) {
            _tile_loadd(7, b0 + pb + s * 1024, 64);
            _tile_dpbusd(1, 4, 7);
            if (two) _tile_dpbusd(3, 5, 7);
          }
          finish_some(o, &k, &pe, per_step);
        }
        _tile_stored(0, out + pp * 16, 256);
        if (two) _tile_stored(2, out + 16 * 64 + pp * 16, 256);
        if (pair) {
          _tile_stored(1, out + pp * 16 + 16, 256);
          if (two) _tile_stored(3, out + 16 * 64 + pp * 16 + 16, 256);
        }
      }
      finish_some(o, &k, &pe, SIZE_MAX);
      const size_t c0 = p * 16;
      pe.acc = out;
      pe.m = m;
      pe.rows = rows;
      pe.c0 = c0;
      pe.nc = n - c0 < 64 ? n - c0 : 64;
      pe.done = 0;
      cur ^= 1;
    }
  }
  finish_some(o, &k, &pe, SIZE_MAX);
  _tile_release();
}

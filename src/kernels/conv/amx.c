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
 * finished by the AVX-512 output stage (avx512-inl.h). (Interleaving the output stage of one block
 * with the tile instructions of the next gains nothing here: measured on this Sapphire Rapids, the
 * tile unit and the vector units do not overlap -- their times add.) Rows past m1 in the last strip
 * are computed on whatever the slack holds and never stored. */
#include <immintrin.h>

#include "kernels/amx-inl.h"
#include "kernels/conv/avx512-inl.h"
#include "kernels/conv/qconv.h"

static void configure_tiles(void) {
  const cq_amx_config cfg = cq_amx_config_full();
  _tile_loadconfig(&cfg);
}

void cq_u8s8_conv_gemm__amx(const cq_conv_gemm *g, size_t m0, size_t m1) {
  const cq_conv_out *o = g->out;
  const cq_conv_rq k = cq_conv_rq_init(o);
  const cq_qgemm_packed *w = g->w;
  const size_t panels = (size_t)w->panels, n = (size_t)o->n, pb = w->panel_bytes;
  const size_t ksteps = g->ksteps;
  const long lda = (long)g->lda;
  int32_t acc[32 * 64] __attribute__((aligned(64)));
  __m512i stage[16];
  configure_tiles();
  for (size_t m = m0; m < m1; m += 32) {
    const size_t rows = m1 - m < 32 ? m1 - m : 32;
    const int two = rows > 16;
    const uint8_t *a0 = g->a + m * g->lda;
    for (size_t p = 0; p < panels; p += 4) {
      const size_t nq = panels - p < 4 ? panels - p : 4;
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
        }
        _tile_stored(0, acc + pp * 16, 256);
        if (two) _tile_stored(2, acc + 16 * 64 + pp * 16, 256);
        if (pair) {
          _tile_stored(1, acc + pp * 16 + 16, 256);
          if (two) _tile_stored(3, acc + 16 * 64 + pp * 16 + 16, 256);
        }
      }
      /* the output stage of these 32 rows x 64 channels (on this machine the tile unit and the
       * vector units do not overlap, so there is nothing to gain from interleaving it) */
      const size_t c0 = p * 16, nc = n - c0 < 64 ? n - c0 : 64;
      for (size_t h = 0; h * 16 < rows; h++) {
        const size_t hr = rows - 16 * h < 16 ? rows - 16 * h : 16;
        cq_conv_rq_rows(o, &k, acc + h * 16 * 64, 64, hr, c0, nc, !o->init_zero, stage);
        cq_conv_store_stage(o, stage, hr, (int64_t)(m + 16 * h), c0, nc);
      }
    }
  }
  _tile_release();
}

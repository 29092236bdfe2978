/* The AMX tile configuration (palette 1), shared by the AMX GEMM and convolution kernels and by
 * bench/bench_amx_loops.c. Plain C: the caller loads it with _tile_loadconfig in code compiled
 * for AMX, and releases the tiles (_tile_release) before returning to code that is not. */
#ifndef CQ_KERNELS_AMX_INL_H
#define CQ_KERNELS_AMX_INL_H

#include <stdint.h>
#include <string.h>

/* The 64-byte memory operand of ldtilecfg. */
typedef struct __attribute__((packed, aligned(64))) cq_amx_config {
  uint8_t palette;
  uint8_t start_row;
  uint8_t reserved[14];
  uint16_t colsb[16];
  uint8_t rows[16];
} cq_amx_config;

/* Tiles 0-7 of 64-byte rows, tile t with rows[t] rows (1..16). */
static inline cq_amx_config cq_amx_config_of(const uint8_t rows[8]) {
  cq_amx_config c;
  memset(&c, 0, sizeof c);
  c.palette = 1;
  for (int t = 0; t < 8; t++) {
    c.rows[t] = rows[t];
    c.colsb[t] = 64;
  }
  return c;
}

/* Every tile 16 x 64 bytes. */
static inline cq_amx_config cq_amx_config_full(void) {
  static const uint8_t full[8] = {16, 16, 16, 16, 16, 16, 16, 16};
  return cq_amx_config_of(full);
}

#endif

/* Portable forms of the activation range scan and quantization (see quantize.h). */
#include <math.h>

#include "kernels/quantize/quantize.h"
#include "kernels/requant/requant.h"

void cq_f32_range__scalar(const float *x, size_t rows, size_t cols, size_t ld, float *min,
                          float *max, int *nonfinite) {
  float lo = x[0], hi = x[0];
  int bad = 0;
  for (size_t r = 0; r < rows; r++) {
    const float *row = x + r * ld;
    for (size_t c = 0; c < cols; c++) {
      const float v = row[c];
      if (!isfinite(v)) bad = 1;
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
  }
  *min = lo;
  *max = hi;
  *nonfinite = bad;
}

void cq_f32_qu8__scalar(const float *x, size_t rows, size_t cols, size_t ldx, float inv_scale,
                        int32_t zp, uint8_t *y, size_t ldy) {
  const float lo = (float)-zp, hi = (float)(255 - zp);
  for (size_t r = 0; r < rows; r++) {
    for (size_t c = 0; c < cols; c++) {
      const float v = cq_minps(cq_maxps(x[r * ldx + c] * inv_scale, lo), hi);
      y[r * ldy + c] = (uint8_t)(cq_cvt_f32_i32(v) + zp);
    }
  }
}

/* Portable pooling kernels (qpool.h): the forms every ISA matches, and the kernels of targets
 * without vector forms (AArch64 here). */
#include "kernels/qpool/qpool.h"

static inline int32_t byte_at(const void *p, size_t i, int s8) {
  return s8 ? (int32_t)((const int8_t *)p)[i] : (int32_t)((const uint8_t *)p)[i];
}

static inline void put_byte(void *p, size_t i, int32_t v) { ((uint8_t *)p)[i] = (uint8_t)v; }

void cq_qpool_max_rows__scalar(size_t n, const void *const *rows, size_t w, int acc, int s8,
                               void *y) {
  for (size_t i = 0; i < w; i++) {
    int32_t best = acc ? byte_at(y, i, s8) : byte_at(rows[0], i, s8);
    for (size_t r = 0; r < n; r++) {
      const int32_t v = byte_at(rows[r], i, s8);
      best = v > best ? v : best;
    }
    put_byte(y, i, best);
  }
}

void cq_qpool_max_taps__scalar(size_t npos, size_t k, size_t d, const void *t, int s8, void *y) {
  for (size_t p = 0; p < npos; p++) {
    int32_t best = byte_at(t, p, s8);
    for (size_t j = 1; j < k; j++) {
      const int32_t v = byte_at(t, p + j * d, s8);
      best = v > best ? v : best;
    }
    put_byte(y, p, best);
  }
}

void cq_qpool_pick2_bytes__scalar(size_t n, const void *t, void *y) {
  const uint8_t *src = t;
  uint8_t *dst = y;
  for (size_t i = 0; i < n; i++) dst[i] = src[2 * i];
}

void cq_qpool_max_2x2s2__scalar(size_t nrows, size_t n, const void *x, size_t ld, size_t x_step,
                                int s8, void *y, size_t y_step) {
  for (size_t r = 0; r < nrows; r++) {
    const uint8_t *row = (const uint8_t *)x + r * x_step;
    uint8_t *out = (uint8_t *)y + r * y_step;
    for (size_t i = 0; i < n; i++) {
      int32_t best = byte_at(row, 2 * i, s8);
      const int32_t taps[3] = {byte_at(row, 2 * i + 1, s8), byte_at(row, ld + 2 * i, s8),
                               byte_at(row, ld + 2 * i + 1, s8)};
      for (int j = 0; j < 3; j++) best = taps[j] > best ? taps[j] : best;
      put_byte(out, i, best);
    }
  }
}

void cq_qpool_sum_rows__scalar(size_t n, const void *const *rows, size_t w, int acc, int s8,
                               int32_t *y) {
  for (size_t i = 0; i < w; i++) {
    uint32_t s = acc ? (uint32_t)y[i] : 0u;
    for (size_t r = 0; r < n; r++) s += (uint32_t)byte_at(rows[r], i, s8);
    y[i] = (int32_t)s;
  }
}

void cq_qpool_sum_taps__scalar(size_t npos, size_t k, const int32_t *t, int32_t *y) {
  for (size_t p = 0; p < npos; p++) {
    uint32_t s = 0;
    for (size_t j = 0; j < k; j++) s += (uint32_t)t[p + j];
    y[p] = (int32_t)s;
  }
}

void cq_qpool_pick2_i32__scalar(size_t n, const int32_t *t, int32_t *y) {
  for (size_t i = 0; i < n; i++) y[i] = t[2 * i];
}

void cq_qpool_finish__scalar(size_t n, const int32_t *sum, int32_t bias, float mult,
                             const cq_qpool_out *o, int s8, void *y) {
  (void)s8; /* the byte is the low byte of the value either way */
  for (size_t i = 0; i < n; i++) {
    const int32_t acc = (int32_t)((uint32_t)sum[i] + (uint32_t)bias);
    put_byte(y, i, cq_qpool_round(acc, mult, o));
  }
}

int64_t cq_qpool_rect_sum__scalar(const void *x, size_t ld, size_t rows, size_t cols, int s8) {
  int64_t s = 0;
  for (size_t r = 0; r < rows; r++) {
    for (size_t c = 0; c < cols; c++) s += byte_at(x, r * ld + c, s8);
  }
  return s;
}

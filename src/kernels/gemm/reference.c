/* The naive reference the optimized GEMM kernels are tested against: a direct triple loop over the
 * unpacked weight with explicit zero-point subtraction, deliberately sharing no code with them. */
#include "kernels/gemm/qgemm.h"

void cq_qgemm_reference_acc(const uint8_t *x, int64_t m, int64_t ldx, int32_t x_zp,
                            const int8_t *w, int64_t n, int64_t k, const int32_t *w_zp,
                            int per_channel, int32_t *acc) {
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < n; j++) {
      const int64_t zw = w_zp ? w_zp[per_channel ? j : 0] : 0;
      int64_t s = 0;
      for (int64_t t = 0; t < k; t++) {
        s += ((int64_t)x[i * ldx + t] - x_zp) * ((int64_t)w[j * k + t] - zw);
      }
      acc[i * n + j] = (int32_t)(uint32_t)(uint64_t)s;
    }
  }
}

#include "kernels/fgemm/sgemm.h"

#include <string.h>

void cq_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc) {
  for (int64_t i = 0; i < m; i++) {
    float *crow = c + i * ldc;
    if (beta == 0.0f) {
      memset(crow, 0, sizeof(float) * (size_t)n);
    } else if (beta != 1.0f) {
      for (int64_t j = 0; j < n; j++) crow[j] *= beta;
    }
    for (int64_t p = 0; p < k; p++) {
      const float av = alpha * (trans_a ? a[p * lda + i] : a[i * lda + p]);
      if (av == 0.0f) continue;
      if (!trans_b) {
        const float *brow = b + p * ldb;
        for (int64_t j = 0; j < n; j++) crow[j] += av * brow[j];
      } else {
        for (int64_t j = 0; j < n; j++) crow[j] += av * b[j * ldb + p];
      }
    }
  }
}

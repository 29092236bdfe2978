/* Float GEMM through OpenBLAS's CBLAS interface (Debian's libopenblas-dev): the float path is the
 * baseline int8 is measured against, so it uses the tuned library rather than our own loops. */
#include "kernels/fgemm/sgemm.h"

#include <cblas.h>
#include <stdatomic.h>
#include <string.h>

#include "cquant/threads.h"

/* OpenBLAS runs its own threads, by default one per CPU, which cq_set_num_threads does not reach:
 * left alone, a "1 thread" float model would use every core (and on a busy machine wait for them).
 * The BLAS thread count follows the library's before each call. */
static void follow_thread_count(void) {
  static atomic_int blas_threads;
  const int n = cq_get_num_threads();
  if (atomic_load_explicit(&blas_threads, memory_order_relaxed) != n) {
    openblas_set_num_threads(n);
    atomic_store_explicit(&blas_threads, n, memory_order_relaxed);
  }
}

void cq_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) { /* BLAS leaves C untouched only when beta == 1; honour beta ourselves */
    for (int64_t i = 0; i < m; i++) {
      float *row = c + i * ldc;
      if (beta == 0.0f) {
        memset(row, 0, sizeof(float) * (size_t)n);
      } else {
        for (int64_t j = 0; j < n; j++) row[j] *= beta;
      }
    }
    return;
  }
  follow_thread_count();
  cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, (blasint)m, (blasint)n, (blasint)k, alpha, a,
              (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

void cq_sgemm_reference(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                        float *c, int64_t ldc) {
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < n; j++) {
      double acc = 0.0;
      for (int64_t p = 0; p < k; p++) {
        const float av = trans_a ? a[p * lda + i] : a[i * lda + p];
        const float bv = trans_b ? b[j * ldb + p] : b[p * ldb + j];
        acc += (double)av * (double)bv;
      }
      float *cv = &c[i * ldc + j];
      *cv = (float)(alpha * acc + (beta == 0.0f ? 0.0 : (double)beta * *cv));
    }
  }
}

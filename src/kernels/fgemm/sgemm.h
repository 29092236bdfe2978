/* Float GEMM for the float modules: C = alpha * op(A) * op(B) + beta * C, row-major, with op = identity
 * or transpose, as cblas_sgemm (CblasRowMajor). beta == 0 ignores C's previous contents (NaN
 * included). cq_sgemm_reference is a double-accumulating loop for tests. */
#ifndef CQ_KERNELS_FGEMM_SGEMM_H
#define CQ_KERNELS_FGEMM_SGEMM_H

#include <stdint.h>

void cq_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
              const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c,
              int64_t ldc);

void cq_sgemm_reference(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                        const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                        float *c, int64_t ldc);

#endif

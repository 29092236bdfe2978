/* AMX kernels (placeholder dispatch to the VNNI kernels until the tile kernels land). */
#include "kernels/gemm/qgemm.h"

void cq_u8s8_gemm_block__amx(const cq_gemm_args *g, int thread, size_t m0, size_t m1, size_t p0,
                             size_t p1) {
  cq_u8s8_gemm_block__avx512vnni(g, thread, m0, m1, p0, p1);
}

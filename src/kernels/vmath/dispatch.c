/* The vmath forms of each ISA, and the entry points that pick the active one. */
#include "kernels/vmath/vmath.h"

static const cq_vmath_kernels scalar = {CQ_ISA_SCALAR, cq_f32_sigmoid__scalar,
                                        cq_f32_tanh__scalar};
#if CQ_ARCH_ARM64
static const cq_vmath_kernels neon = {CQ_ISA_NEON, cq_f32_sigmoid__neon, cq_f32_tanh__neon};
#endif
#if CQ_ARCH_X86
static const cq_vmath_kernels avx2 = {CQ_ISA_AVX2, cq_f32_sigmoid__avx2, cq_f32_tanh__avx2};
static const cq_vmath_kernels avx512 = {CQ_ISA_AVX512VNNI, cq_f32_sigmoid__avx512,
                                        cq_f32_tanh__avx512};
#endif

const cq_vmath_kernels *cq_vmath_kernels_for(cq_isa isa) {
  switch (isa) {
#if CQ_ARCH_X86
    case CQ_ISA_AVX2: return &avx2;
    case CQ_ISA_AVX512VNNI:
    case CQ_ISA_AMX: return &avx512;
#endif
#if CQ_ARCH_ARM64
    case CQ_ISA_NEON:
    case CQ_ISA_NEONDOT: return &neon;
#endif
    default: return &scalar;
  }
}

/* Every form gives the same bits, so the choice is made once (a CQ_ISA set later changes
 * nothing but speed) and an unusable CQ_ISA setting just means the scalar form. */
static const cq_vmath_kernels *active(void) {
  static const cq_vmath_kernels *_Atomic chosen;
  const cq_vmath_kernels *k = chosen;
  if (!k) {
    cq_isa isa;
    k = cq_vmath_kernels_for(cq_isa_active(&isa) == CQ_OK ? isa : CQ_ISA_SCALAR);
    chosen = k;
  }
  return k;
}

void cq_f32_sigmoid(const float *x, float *y, size_t n) { active()->sigmoid(x, y, n); }
void cq_f32_tanh(const float *x, float *y, size_t n) { active()->tanh(x, y, n); }

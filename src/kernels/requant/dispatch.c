/* The standalone requantization kernel of each ISA (requant.h). */
#include "kernels/requant/requant.h"

cq_requant_fn cq_requant_kernel(cq_isa isa) {
  switch (isa) {
#if CQ_ARCH_X86
    case CQ_ISA_AVX2: return cq_requant__avx2;
    case CQ_ISA_AVX512VNNI:
    case CQ_ISA_AMX: return cq_requant__avx512;
#endif
#if CQ_ARCH_ARM64
    case CQ_ISA_NEON:
    case CQ_ISA_NEONDOT: return cq_requant__neon;
#endif
    default: return cq_requant__scalar;
  }
}

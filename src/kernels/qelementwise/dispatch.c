/* The elementwise kernels of each ISA and their constants (qelementwise.h). */
#include <string.h>

#include "kernels/qelementwise/qelementwise.h"

void cq_qadd_qnnpack_params_init(float ra, float rb, int32_t a_zp, int32_t b_zp, int32_t y_zp,
                                 int relu, cq_qadd_qnnpack_params *p) {
  const float mx = ra > rb ? ra : rb;
  uint32_t bits;
  memcpy(&bits, &mx, sizeof bits);
  const int32_t exponent = (int32_t)(bits >> 23) - 127;
  const uint32_t shift = (uint32_t)(21 - exponent);
  const uint32_t mult_bits = (uint32_t)(21 - exponent + 127) << 23;
  float scale_mult;
  memcpy(&scale_mult, &mult_bits, sizeof scale_mult);
  p->a_mult = (uint32_t)(int32_t)lrintf(ra * scale_mult);
  p->b_mult = (uint32_t)(int32_t)lrintf(rb * scale_mult);
  const uint32_t mask = (UINT32_C(1) << (shift & 31u)) - 1u;
  p->rem_mask = (int32_t)mask;
  p->rem_threshold = (int32_t)(mask >> 1);
  p->shift = shift > 31u ? 31u : shift;
  p->zp_product = (int32_t)(0u - (p->a_mult * (uint32_t)a_zp + p->b_mult * (uint32_t)b_zp));
  p->y_zp = y_zp;
  p->y_min = relu ? y_zp : 0;
}

void cq_qdequant_params_init(float scale, int32_t zero_point, cq_qdequant_params *p) {
  p->scale = scale;
  p->zp = (float)zero_point;
  p->premul = scale * -(float)zero_point;
}

#define CQ_QELEMENTWISE_TABLE(name, id)                                                       \
  static const cq_qelementwise_kernels name = {                                              \
      id, cq_qu8_vclamp__##name, cq_qs8_vclamp__##name, cq_qu8_vadd_qnnpack__##name,         \
      cq_qu8_vadd_aten__##name, cq_qs8_vadd_aten__##name, cq_qu8_vrequant__##name,           \
      cq_qs8_vrequant__##name};

CQ_QELEMENTWISE_TABLE(scalar, CQ_ISA_SCALAR)
#if CQ_ARCH_X86
CQ_QELEMENTWISE_TABLE(avx2, CQ_ISA_AVX2)
CQ_QELEMENTWISE_TABLE(avx512, CQ_ISA_AVX512VNNI)
#endif

const cq_qelementwise_kernels *cq_qelementwise_kernels_for(cq_isa isa) {
  switch (isa) {
#if CQ_ARCH_X86
    case CQ_ISA_AVX2: return &avx2;
    case CQ_ISA_AVX512VNNI:
    case CQ_ISA_AMX: return &avx512;
#endif
    default: return &scalar;
  }
}

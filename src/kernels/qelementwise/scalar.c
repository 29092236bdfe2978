/* Portable elementwise kernels (qelementwise.h): the reference forms every ISA matches, and the
 * kernels of targets without vector forms (AArch64 here). */
#include "kernels/qelementwise/qelementwise.h"

void cq_qu8_vclamp__scalar(size_t n, const uint8_t *x, uint8_t lo, uint8_t hi, uint8_t *y) {
  for (size_t i = 0; i < n; i++) {
    uint8_t v = x[i];
    v = v < lo ? lo : v;
    y[i] = v > hi ? hi : v;
  }
}

void cq_qs8_vclamp__scalar(size_t n, const int8_t *x, int8_t lo, int8_t hi, int8_t *y) {
  for (size_t i = 0; i < n; i++) {
    int8_t v = x[i];
    v = v < lo ? lo : v;
    y[i] = v > hi ? hi : v;
  }
}

void cq_qu8_vadd_qnnpack__scalar(size_t n, const uint8_t *a, const uint8_t *b,
                                 const cq_qadd_qnnpack_params *p, uint8_t *y) {
  for (size_t i = 0; i < n; i++) y[i] = cq_qadd_qnnpack_one(a[i], b[i], p);
}

void cq_qu8_vadd_aten__scalar(size_t n, size_t fused, const uint8_t *a, const uint8_t *b,
                              const cq_qadd_aten_params *p, uint8_t *y) {
  for (size_t i = 0; i < n; i++) y[i] = (uint8_t)cq_qadd_aten_one(a[i], b[i], i < fused, p);
}

void cq_qs8_vadd_aten__scalar(size_t n, size_t fused, const int8_t *a, const int8_t *b,
                              const cq_qadd_aten_params *p, int8_t *y) {
  for (size_t i = 0; i < n; i++) y[i] = (int8_t)cq_qadd_aten_one(a[i], b[i], i < fused, p);
}

void cq_qu8_vrequant__scalar(size_t n, size_t fused, const uint8_t *x,
                             const cq_qdequant_params *dq, const cq_qquant_params *q, uint8_t *y) {
  for (size_t i = 0; i < n; i++) {
    const float d = i < fused ? cq_qdequant_fused(x[i], dq) : cq_qdequant_plain(x[i], dq);
    y[i] = (uint8_t)cq_qquant_one(d, q);
  }
}

void cq_qs8_vrequant__scalar(size_t n, size_t fused, const int8_t *x, const cq_qdequant_params *dq,
                             const cq_qquant_params *q, int8_t *y) {
  for (size_t i = 0; i < n; i++) {
    const float d = i < fused ? cq_qdequant_fused(x[i], dq) : cq_qdequant_plain(x[i], dq);
    y[i] = (int8_t)cq_qquant_one(d, q);
  }
}

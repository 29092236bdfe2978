/* Elementwise kernels on quantized activations (quint8 = uint8, qint8 = int8 bytes), with the exact
 * arithmetic of PyTorch 1.13's CPU kernels (torch-1.13-semantics.md 5.6, 5.7):
 *
 *   clamp            y = min(max(q, lo), hi)                       (relu, relu6, hardtanh, clamp)
 *   add, QNNPACK     PyTorch QNNPACK's q8vadd, fixed point (quint8 only):
 *                    acc = zp_product + qa * a_mult + qb * b_mult   (int32)
 *                    y   = (acc >> shift) + [(acc & rem_mask) - (acc < 0) > rem_threshold]
 *                    then int16 saturation, + y_zp with int16 saturation, clamp [y_min, 255]
 *   add, ATen        dequantize both inputs, add in float, optional relu (max(c, 0)), quantize:
 *                    d  = fma(s, f32(q), premul)          ("fused": ATen's vector body)
 *                    d  = (f32(q) - f32(z)) * s            ("plain": ATen's scalar tail)
 *                    y  = quantize_val(da + db)            (quant/qmath.h cq_quantize_val)
 *   requantize       one input of cat moved to other qparams: y = quantize_val(d), d as above
 *
 * where quantize_val(c) = clamp(int64(f32(zp) + rne(c * inv_scale)), y_min, y_max) with x86's
 * float->int64 conversion (NaN, +-inf and |v| >= 2^63 give INT64_MIN, hence y_min). Which elements
 * are "fused" and which "plain" is the caller's business (ATen's 64-byte blocks in memory order,
 * qops.h): the kernels take `fused`, the count of leading elements computed the fused way.
 *
 * Every kernel exists per instruction set (`scalar.c`, `avx2.c`, `avx512.c`); all of them give the
 * same bytes for every input (tests/test_qelementwise_kernels.c). Float operations are separate
 * float32 operations in the order written (the project builds with -ffp-contract=off); the only
 * fused multiply-add is the one ATen's vector body computes. Pointers may alias exactly (y == x)
 * but must not overlap otherwise; n may be 0. Kernels never allocate and cannot fail. */
#ifndef CQ_KERNELS_QELEMENTWISE_H
#define CQ_KERNELS_QELEMENTWISE_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cpu.h"
#include "quant/qmath.h"

/* QNNPACK add constants (cq_qadd_qnnpack_params_init). */
typedef struct cq_qadd_qnnpack_params {
  int32_t zp_product;      /* -(a_mult * a_zp + b_mult * b_zp), wrapped to int32 */
  uint32_t a_mult, b_mult; /* < 2^22 */
  uint32_t shift;          /* right shift, at most 31 (see init) */
  int32_t rem_mask, rem_threshold;
  int32_t y_zp;            /* [0, 255] */
  int32_t y_min;           /* y_zp for add_relu, else 0; the upper bound is 255 */
} cq_qadd_qnnpack_params;

/* Fills the constants of QNNPACK's add from the input-to-output scale ratios ra = f32(sa / so),
 * rb = f32(sb / so), which must lie in [2^-14, 2^8) (QNNPACK refuses other ratios; the caller
 * checks and reports). Zero points in [0, 255].
 * The shift is 21 - exponent(max(ra, rb)). When both ratios are below 2^-10 that is 32..35, which
 * PyTorch's QNNPACK computes with x86 semantics: the remainder mask (1 << shift) - 1 with the shift
 * count taken modulo 32, and the vector arithmetic shift filling with the sign bit; this record
 * stores exactly that (shift 31 gives the same sign fill). */
void cq_qadd_qnnpack_params_init(float ra, float rb, int32_t a_zp, int32_t b_zp, int32_t y_zp,
                                 int relu, cq_qadd_qnnpack_params *p);

/* Dequantization of one input and the output's quantization, for the ATen rules. */
typedef struct cq_qdequant_params {
  float scale;  /* s */
  float zp;     /* f32(z) */
  float premul; /* f32(s * -f32(z)) */
} cq_qdequant_params;

typedef struct cq_qquant_params {
  float inv_scale;      /* what the rule multiplies by (f32(1 / so) or f32(1 / (double)so)) */
  int32_t zp;           /* y_zp, inside [y_min, y_max] */
  int32_t y_min, y_max; /* the dtype's range: [0, 255] or [-128, 127] */
} cq_qquant_params;

void cq_qdequant_params_init(float scale, int32_t zero_point, cq_qdequant_params *p);

typedef struct cq_qadd_aten_params {
  cq_qdequant_params a, b;
  cq_qquant_params y;
  int relu;
} cq_qadd_aten_params;

typedef void (*cq_qu8_vclamp_fn)(size_t n, const uint8_t *x, uint8_t lo, uint8_t hi, uint8_t *y);
typedef void (*cq_qs8_vclamp_fn)(size_t n, const int8_t *x, int8_t lo, int8_t hi, int8_t *y);
typedef void (*cq_qu8_vadd_qnnpack_fn)(size_t n, const uint8_t *a, const uint8_t *b,
                                       const cq_qadd_qnnpack_params *p, uint8_t *y);
/* Elements [0, fused) dequantize the fused way, [fused, n) the plain way (fused <= n). */
typedef void (*cq_qu8_vadd_aten_fn)(size_t n, size_t fused, const uint8_t *a, const uint8_t *b,
                                    const cq_qadd_aten_params *p, uint8_t *y);
typedef void (*cq_qs8_vadd_aten_fn)(size_t n, size_t fused, const int8_t *a, const int8_t *b,
                                    const cq_qadd_aten_params *p, int8_t *y);
typedef void (*cq_qu8_vrequant_fn)(size_t n, size_t fused, const uint8_t *x,
                                   const cq_qdequant_params *dq, const cq_qquant_params *q,
                                   uint8_t *y);
typedef void (*cq_qs8_vrequant_fn)(size_t n, size_t fused, const int8_t *x,
                                   const cq_qdequant_params *dq, const cq_qquant_params *q,
                                   int8_t *y);

/* The kernels of one instruction set. */
typedef struct cq_qelementwise_kernels {
  cq_isa isa; /* the ISA whose code these are (CQ_ISA_SCALAR where an ISA has no own forms) */
  cq_qu8_vclamp_fn qu8_vclamp;
  cq_qs8_vclamp_fn qs8_vclamp;
  cq_qu8_vadd_qnnpack_fn qu8_vadd_qnnpack;
  cq_qu8_vadd_aten_fn qu8_vadd_aten;
  cq_qs8_vadd_aten_fn qs8_vadd_aten;
  cq_qu8_vrequant_fn qu8_vrequant;
  cq_qs8_vrequant_fn qs8_vrequant;
} cq_qelementwise_kernels;

/* The table for `isa`: AVX2 forms for avx2, AVX-512 (F/BW/VL/DQ) forms for avx512vnni and amx, the
 * scalar forms for scalar, neon, neondot and anything not built here. The caller checks
 * cq_isa_supported (or takes the ISA from cq_isa_active). Never NULL. */
const cq_qelementwise_kernels *cq_qelementwise_kernels_for(cq_isa isa);

#define CQ_QELEMENTWISE_DECLARE(isa)                                                            \
  void cq_qu8_vclamp__##isa(size_t n, const uint8_t *x, uint8_t lo, uint8_t hi, uint8_t *y);   \
  void cq_qs8_vclamp__##isa(size_t n, const int8_t *x, int8_t lo, int8_t hi, int8_t *y);       \
  void cq_qu8_vadd_qnnpack__##isa(size_t n, const uint8_t *a, const uint8_t *b,                \
                                  const cq_qadd_qnnpack_params *p, uint8_t *y);                \
  void cq_qu8_vadd_aten__##isa(size_t n, size_t fused, const uint8_t *a, const uint8_t *b,     \
                               const cq_qadd_aten_params *p, uint8_t *y);                      \
  void cq_qs8_vadd_aten__##isa(size_t n, size_t fused, const int8_t *a, const int8_t *b,       \
                               const cq_qadd_aten_params *p, int8_t *y);                       \
  void cq_qu8_vrequant__##isa(size_t n, size_t fused, const uint8_t *x,                        \
                              const cq_qdequant_params *dq, const cq_qquant_params *q,         \
                              uint8_t *y);                                                     \
  void cq_qs8_vrequant__##isa(size_t n, size_t fused, const int8_t *x,                         \
                              const cq_qdequant_params *dq, const cq_qquant_params *q, int8_t *y);

CQ_QELEMENTWISE_DECLARE(scalar)
CQ_QELEMENTWISE_DECLARE(avx2)
CQ_QELEMENTWISE_DECLARE(avx512)

/* ---- exact scalar forms (the scalar kernels use them; vector kernels match them bit for bit) */

/* The x86 semantics of QNNPACK's add for one element. */
static inline uint8_t cq_qadd_qnnpack_one(int32_t qa, int32_t qb, const cq_qadd_qnnpack_params *p) {
  const int32_t acc =
      (int32_t)((uint32_t)p->zp_product + (uint32_t)qa * p->a_mult + (uint32_t)qb * p->b_mult);
  const int32_t rem = (acc & p->rem_mask) - (acc < 0 ? 1 : 0);
  /* arithmetic shift (implementation-defined in C, arithmetic on every target built here) */
  int32_t v = (acc >> p->shift) + (rem > p->rem_threshold ? 1 : 0);
  v = v > 32767 ? 32767 : (v < -32768 ? -32768 : v);
  v += p->y_zp;
  v = v > 32767 ? 32767 : v;
  v = v < p->y_min ? p->y_min : (v > 255 ? 255 : v);
  return (uint8_t)v;
}

static inline float cq_qdequant_fused(int32_t q, const cq_qdequant_params *p) {
  return fmaf(p->scale, (float)q, p->premul);
}

static inline float cq_qdequant_plain(int32_t q, const cq_qdequant_params *p) {
  return ((float)q - p->zp) * p->scale;
}

static inline int32_t cq_qquant_one(float c, const cq_qquant_params *p) {
  return cq_quantize_val(c, p->inv_scale, p->zp, p->y_min, p->y_max);
}

static inline int32_t cq_qadd_aten_one(int32_t qa, int32_t qb, int fused,
                                       const cq_qadd_aten_params *p) {
  const float da = fused ? cq_qdequant_fused(qa, &p->a) : cq_qdequant_plain(qa, &p->a);
  const float db = fused ? cq_qdequant_fused(qb, &p->b) : cq_qdequant_plain(qb, &p->b);
  float c = da + db;
  if (p->relu) c = c > 0.0f ? c : 0.0f;
  return cq_qquant_one(c, &p->y);
}

#endif

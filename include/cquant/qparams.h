/* Quantized dtypes, quantization schemes, the quantization-parameter record, and the rules PyTorch
 * 1.13 uses to turn a clipping range [min, max] into (scale, zero_point).
 *
 * The seed's mapping is Q(r) = round(r / S + Z) with S = (beta - alpha) / (beta_q - alpha_q) and
 * Z = alpha_q - round(alpha / S); cq_calculate_qparams is that formula with PyTorch's exact float32
 * operation order, eps floor and symmetric variant (torch.ao.quantization.observer
 * _calculate_qparams). cq_choose_qparams is the C++ ChooseQuantizationParams used by the fused QAT
 * fake-quant and by dynamic quantization, which differs in rounding and fallbacks. */
#ifndef CQUANT_QPARAMS_H
#define CQUANT_QPARAMS_H

#include <stdint.h>

#include "cquant/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Target dtypes of quantization. The two float ones only describe placeholder observers
 * (dynamic quantization's activation, float16 qconfigs); nothing is quantized to them. */
typedef enum cq_qdtype {
  CQ_QUINT8 = 0,
  CQ_QINT8,
  CQ_QINT32,
  CQ_QUINT4X2,
  CQ_QFLOAT16,
  CQ_QFLOAT32,
  CQ_QDTYPE_COUNT
} cq_qdtype;

typedef enum cq_qscheme {
  CQ_PER_TENSOR_AFFINE = 0,
  CQ_PER_TENSOR_SYMMETRIC,
  CQ_PER_CHANNEL_AFFINE,
  CQ_PER_CHANNEL_SYMMETRIC,
  CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS,
  CQ_QSCHEME_COUNT
} cq_qscheme;

/* "quint8", "qint8", "qint32", "quint4x2", "float16", "float32" (PyTorch prints "torch." first). */
CQ_API const char *cq_qdtype_name(cq_qdtype dtype);
/* "per_tensor_affine", ... */
CQ_API const char *cq_qscheme_name(cq_qscheme qscheme);
/* Parses the names above (also with a "torch." prefix). CQ_EINVAL with a message if unknown. */
CQ_API cq_status cq_qdtype_parse(const char *name, cq_qdtype *out);
CQ_API cq_status cq_qscheme_parse(const char *name, cq_qscheme *out);

CQ_API int cq_qscheme_is_per_channel(cq_qscheme qscheme);
CQ_API int cq_qscheme_is_symmetric(cq_qscheme qscheme);
/* Full integer range of a quantized dtype: quint8 [0,255], qint8 [-128,127], qint32 [-2^31,2^31-1],
 * quint4x2 [0,15]. CQ_EINVAL for the float dtypes. */
CQ_API cq_status cq_qdtype_range(cq_qdtype dtype, int64_t *lo, int64_t *hi);

/* Quantization parameters of a tensor. Per-tensor schemes have count == 1 and axis == -1. The
 * arrays are owned by the record (cq_qparams_init allocates, cq_qparams_release frees).
 * zero_point_float is non-NULL only for CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS, whose zero points are
 * unrounded floats (zero_point then holds them rounded, for display only). */
typedef struct cq_qparams {
  cq_qdtype dtype;
  cq_qscheme qscheme;
  int axis;
  int64_t count;
  int32_t quant_min;
  int32_t quant_max;
  float *scale;
  int32_t *zero_point;
  float *zero_point_float;
} cq_qparams;

/* Allocates `count` scales (1.0) and zero points (0); quant_min/quant_max = the dtype's full range.
 * CQ_EINVAL for count < 1, a per-tensor scheme with count != 1 or a float dtype. */
CQ_API cq_status cq_qparams_init(cq_qparams *qp, cq_qdtype dtype, cq_qscheme qscheme, int64_t count,
                                 int axis);
CQ_API void cq_qparams_release(cq_qparams *qp);
CQ_API cq_status cq_qparams_copy(cq_qparams *dst, const cq_qparams *src);

/* Resolves an observer's [quant_min, quant_max] exactly as PyTorch 1.13 does
 * (_calculate_qmin_qmax plus the constructor's validation):
 *  - custom (has_custom != 0): requires qmin <= 0 <= qmax and qmin < qmax; qint8 needs a range
 *    length <= 256, qint32 <= 2^31; with reduce_range both are halved with floor division
 *    (-127 -> -64);
 *  - default: the dtype's range, halved for quint8/qint8 when reduce_range (qint32 ignores it);
 *    quint4x2 and other dtypes get [0, 15].
 * Returns CQ_EINVAL with a message naming the rule otherwise. */
CQ_API cq_status cq_quant_range_resolve(cq_qdtype dtype, int reduce_range, int has_custom,
                                        int64_t custom_min, int64_t custom_max, int32_t *quant_min,
                                        int32_t *quant_max);

/* Everything rule 1.2 needs besides the range itself. */
typedef struct cq_qparam_rule {
  cq_qdtype dtype;
  cq_qscheme qscheme;
  int32_t quant_min;   /* resolved range (cq_quant_range_resolve) */
  int32_t quant_max;
  int custom_range;    /* the user gave quant_min/quant_max (changes quint8 symmetric's zero point) */
  float eps;           /* scale floor; PyTorch's default is FLT_EPSILON = 2^-23 */
} cq_qparam_rule;

/* PyTorch's _calculate_qparams for one (min, max) pair. min/max must be finite with min <= max
 * (CQ_EVALUE otherwise). Outputs: the float32 scale and the integer zero point; for the float-qparams
 * scheme *zero_point_float receives the unrounded zero point (may be NULL for other schemes). */
CQ_API cq_status cq_calculate_qparams(const cq_qparam_rule *rule, float min_val, float max_val,
                                      float *scale, int32_t *zero_point, float *zero_point_float);

/* The C++ ChooseQuantizationParams (fbgemm/QuantUtils): double arithmetic, zero range -> 0.1,
 * minimum scale 6.1e-5, zero point nudged from whichever end has the smaller error, symmetric
 * handling with preserve_sparsity. reduce_range halves qmin/qmax with C truncation. Returns the
 * scale as double (callers that store it in float32 round it). */
CQ_API cq_status cq_choose_qparams(float min_val, float max_val, int32_t qmin, int32_t qmax,
                                   int preserve_sparsity, int force_power_of_two, int reduce_range,
                                   double *scale, int32_t *zero_point);

#ifdef __cplusplus
}
#endif
#endif

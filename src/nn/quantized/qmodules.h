/* Internal: constructors of the quantized modules that convert and quantize_dynamic create (the
 * from_float of torch.ao.nn.quantized / .quantized.dynamic / .intrinsic.quantized), and the shared
 * definition of a quantized activation tensor.
 *
 * Quantized activations are cq_tensors of storage dtype uint8 (quint8) or int8 (qint8) carrying
 * per-tensor cq_qparams, in PyTorch's logical layout (NCHW / NCL / [*, features]).
 *
 * The passes compute everything PyTorch's from_float computes before calling these: the final
 * float weight (BN already folded), the weight qparams (from the weight observer or fake-quant run
 * on that weight; the integer weights are clamped to [wq->quant_min, wq->quant_max]) and the output
 * qparams (from the activation observer). Weights are always stored qint8. The constructors copy
 * what they need (the caller keeps ownership of every argument), quantize and pack the weight once,
 * and record `engine`, whose rounding rules the module follows when it runs
 * (torch-1.13-semantics.md 5.1-5.3: qnnpack = int32 bias and float multiplier; onednn = float bias
 * after dequantization; x86/fbgemm = bias folded in the accumulator domain).
 *
 * Printing follows PyTorch 1.13 (section 6.3), e.g.
 *   QuantizedConvReLU2d(2, 64, kernel_size=(3, 3), stride=(1, 1), scale=0.0147..., zero_point=0)
 *   QuantizedLinear(in_features=10, out_features=4, scale=..., zero_point=114,
 *                   qscheme=torch.per_tensor_affine)
 *   Quantize(scale=tensor([0.0260]), zero_point=tensor([131]), dtype=torch.quint8)
 *   DeQuantize()
 *   DynamicQuantizedLinear(in_features=16, out_features=10, dtype=torch.qint8,
 *                          qscheme=torch.per_tensor_affine)
 *   DynamicQuantizedLSTM(10, 10)
 *
 * Static modules (qlinear.c, qconv.c, qstubs.c, qfunctional.c):
 *  - cq_module_type_name() is the printed name ("QuantizedLinear", "QuantizedConvReLU2d",
 *    "Quantize", "DeQuantize", "QFunctional", "QuantizedReLU6", "QuantizedDropout"), so a
 *    quantized module is never mistaken for the float "Linear" / "Conv2d".
 *  - Linear and Conv register two buffers: "weight" (int8, the quantized weight with its qparams
 *    attached, qscheme reported as the affine variant; PyTorch's weight()) and "bias" (float32
 *    [out], only when bias != NULL). For Conv, bias == NULL means no bias (options->bias is not
 *    read: a BN-folded conv has a bias its options do not mention).
 *  - Linear / Conv take quint8 input ([*, in] / [N, C, (H,) W], batched only, as PyTorch) and
 *    give quint8 output with yq's (scale, zero_point); the engine's rule binds the packed weight to
 *    the input's qparams on every call, so a module may run on several threads at once.
 *  - Statuses: CQ_EINVAL (NULL or malformed arguments: sizes, options, weight qparams not qint8,
 *    not per-tensor / per-channel along axis 0, output qparams not per-tensor quint8 (QFunctional:
 *    quint8 or qint8), unknown engine or op, and under ONEDNN a nonzero weight zero point, which
 *    PyTorch's onednn prepack refuses too), CQ_EVALUE (non-finite weights or bias, scales not
 *    finite and > 0, zero points out of range), CQ_ENOMEM. Forward adds CQ_ESHAPE / CQ_EINVAL for
 *    inputs that do not fit and CQ_EVALUE for input scales whose requantization multiplier the
 *    engine refuses (QNNPACK: not a normal float).
 *  - QFunctional's engine is the one given here (QNNPACK: fixed-point add for quint8); the float
 *    modules PyTorch leaves unconverted (ReLU, MaxPool2d, AvgPool2d, Sigmoid, ...) read
 *    cq_quantized_engine() when they run on quantized tensors (nn/quantized/qops.h). */
#ifndef CQ_NN_QUANTIZED_QMODULES_H
#define CQ_NN_QUANTIZED_QMODULES_H

#include "cquant/modules.h"
#include "cquant/qconfig.h"
#include "nn/module_impl.h"

/* nnq.Quantize(scale, zero_point, dtype): float32 in, quantized out (quantize_per_tensor). */
cq_status cq_qmodule_quantize(cq_module **out, float scale, int32_t zero_point, cq_qdtype dtype);
/* nnq.DeQuantize: quantized in, float32 out. */
cq_status cq_qmodule_dequantize(cq_module **out);

/* nnq.Linear / nniq.LinearReLU. weight: float [out, in] row-major; bias: float [out] or NULL. */
cq_status cq_qmodule_linear(cq_module **out, int64_t in_features, int64_t out_features,
                            const float *weight, const float *bias, const cq_qparams *wq,
                            const cq_qparams *yq, int relu, cq_backend engine);

/* nnq.Conv1d / Conv2d / nniq.ConvReLU1d / ConvReLU2d. weight: float [out, in/groups, kh(, kw)]. */
cq_status cq_qmodule_conv(cq_module **out, const cq_conv_options *options, int dims,
                          const float *weight, const float *bias, const cq_qparams *wq,
                          const cq_qparams *yq, int relu, cq_backend engine);

/* nnq.QFunctional: add, add_relu, mul, cat(dim) on quantized tensors with output qparams yq. */
typedef enum cq_qfunctional_op {
  CQ_QF_ADD,
  CQ_QF_ADD_RELU,
  CQ_QF_MUL,
  CQ_QF_CAT
} cq_qfunctional_op;
cq_status cq_qmodule_functional(cq_module **out, cq_qfunctional_op op, int cat_dim,
                                const cq_qparams *yq, cq_backend engine);

/* nnq.ReLU6 (convert's replacement for nn.ReLU6): clamp(q, zp, quantize(6.0)) keeping the input's
 * qparams; prints "QuantizedReLU6()". (Added after the first version of this contract.) */
cq_status cq_qmodule_relu6(cq_module **out);
/* nnq.Dropout(p) (convert's replacement for nn.Dropout): the identity on quantized tensors; prints
 * "QuantizedDropout(p=0.5, inplace=False)". (Added after the first version of this contract.) */
cq_status cq_qmodule_dropout(cq_module **out, float p);

/* nnq.LeakyReLU(scale, zero_point, negative_slope) and nnq.Hardswish(scale, zero_point) (convert's
 * replacements for nn.LeakyReLU / nn.Hardswish): quantized::leaky_relu / quantized::hardswish with
 * the output qparams of yq (per-tensor; only scale and zero point are kept: the output has the
 * input's dtype, as in PyTorch). Hardswish follows `engine` (QNNPACK's lookup table for quint8).
 * Print "QuantizedLeakyReLU(negative_slope=0.01)" and "QuantizedHardswish()". (Added after the
 * first version of this contract.) */
cq_status cq_qmodule_leaky_relu(cq_module **out, float negative_slope, const cq_qparams *yq);
cq_status cq_qmodule_hardswish(cq_module **out, const cq_qparams *yq, cq_backend engine);
/* The output qparams (and LeakyReLU's slope; may be NULL) of a module made by one of the two;
 * CQ_EINVAL for another module. */
cq_status cq_qmodule_activation_describe(const cq_module *m, float *scale, int32_t *zero_point,
                                         float *negative_slope);

/* nnqd.Linear / nniqd.LinearReLU: float in and out; activations quantized per call with
 * ChooseQuantizationParams (reduce_range as the engine honours it). */
cq_status cq_qmodule_dynamic_linear(cq_module **out, int64_t in_features, int64_t out_features,
                                    const float *weight, const float *bias, const cq_qparams *wq,
                                    int relu, cq_backend engine);

/* nnqd.LSTM / nnqd.GRU from a float nn.LSTM / nn.GRU: every weight matrix quantized with a fresh
 * observer from `weight_spec` (one per layer, direction, ih and hh). */
cq_status cq_qmodule_dynamic_rnn(cq_module **out, const cq_module *float_rnn,
                                 const cq_qspec *weight_spec, cq_backend engine);
/* The same with the weight qparams given instead of observed: weight_qparams[2k] for weight_ih and
 * [2k + 1] for weight_hh of (layer, direction) k = layer * directions + direction, each per-tensor
 * qint8. What the ONNX importer uses to rebuild a saved module with exactly its integers (the
 * float module then holds the dequantized weights). */
cq_status cq_qmodule_dynamic_rnn_with_qparams(cq_module **out, const cq_module *float_rnn,
                                              const cq_qparams *const *weight_qparams, int n,
                                              cq_backend engine);

/* ---- reading a quantized module back (what the ONNX exporter writes) -------------------------- */

/* What a quantized module was built with; fields that do not apply to the module stay zero. */
typedef struct cq_qmodule_info {
  int has_engine;         /* the module follows an engine's rules (not Quantize) */
  cq_backend engine;
  float scale;            /* output qparams: Quantize, static Linear / Conv, QFunctional */
  int32_t zero_point;
  cq_qdtype dtype;
  int relu;               /* LinearReLU, ConvReLU, add_relu */
  cq_qfunctional_op op;   /* QFunctional */
  int cat_dim;
  int dims;               /* static Conv: 1 or 2, with its options (bias: it has one) */
  cq_conv_options conv;
  int64_t in_features, out_features; /* static and dynamic Linear */
  int is_gru;             /* dynamic LSTM / GRU, with the float module's options */
  cq_rnn_options rnn;
} cq_qmodule_info;

/* Each fills *info (zeroed first) and returns 1 when m was made by the matching constructor above
 * (Quantize; static Linear / LinearReLU; Conv / ConvReLU; QFunctional; dynamic Linear /
 * LinearReLU; dynamic LSTM / GRU), else returns 0 and leaves *info alone. */
int cq_qmodule_describe_quantize(const cq_module *m, cq_qmodule_info *info);
int cq_qmodule_describe_linear(const cq_module *m, cq_qmodule_info *info);
int cq_qmodule_describe_conv(const cq_module *m, cq_qmodule_info *info);
int cq_qmodule_describe_functional(const cq_module *m, cq_qmodule_info *info);
int cq_qmodule_describe_dynamic_linear(const cq_module *m, cq_qmodule_info *info);
int cq_qmodule_describe_dynamic_rnn(const cq_module *m, cq_qmodule_info *info);

#endif

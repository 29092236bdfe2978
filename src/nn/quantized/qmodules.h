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
 *   DynamicQuantizedLSTM(10, 10) */
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

/* nnqd.Linear / nniqd.LinearReLU: float in and out; activations quantized per call with
 * ChooseQuantizationParams (reduce_range as the engine honours it). */
cq_status cq_qmodule_dynamic_linear(cq_module **out, int64_t in_features, int64_t out_features,
                                    const float *weight, const float *bias, const cq_qparams *wq,
                                    int relu, cq_backend engine);

/* nnqd.LSTM / nnqd.GRU from a float nn.LSTM / nn.GRU: every weight matrix quantized with a fresh
 * observer from `weight_spec` (one per layer, direction, ih and hh). */
cq_status cq_qmodule_dynamic_rnn(cq_module **out, const cq_module *float_rnn,
                                 const cq_qspec *weight_spec, cq_backend engine);

#endif

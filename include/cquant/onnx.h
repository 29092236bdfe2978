/* ONNX models in and out.
 *
 * cq_onnx_load reads what torch.onnx.export writes (opsets 11-17) and builds a cq_graph whose
 * nodes are ordinary cquant modules: Conv becomes Conv2d (Conv1d for 1-D), Gemm / MatMul with a
 * constant weight becomes Linear, BatchNormalization BatchNorm2d, LSTM / GRU the cq_lstm / cq_gru
 * modules (gate order converted), shape subgraphs (Shape / Gather / Unsqueeze / Concat feeding
 * Reshape) are evaluated symbolically into reshape modules, and so on. Children are named after the
 * PyTorch module the exporter saw where the file says so (initializer "conv1.weight" -> node
 * "conv1"; torch 1.13's scoped node name "/conv1/Conv" -> "conv1", which names convolutions whose
 * BatchNorm the exporter folded), otherwise after the ONNX node name made into an identifier
 * (characters outside [A-Za-z0-9_] become '_', "_1", "_2" ... keep names unique). Gather with a
 * constant index on an activation (x[:, -1] in an LSTM classifier) becomes a small "Gather(dim=1,
 * index=-1)" module. The generator of cq_manual_seed is left as it was (modules are built and then
 * take the file's weights). The graph's class name is
 * the ONNX graph name ("main_graph" -> printed as "GraphModule", like FX). The first dimension of
 * every graph input may be dynamic; other dimensions must be fixed in the file or are taken from
 * the first input given at run time.
 *
 * Quantized models in QDQ form (QuantizeLinear / DequantizeLinear around int8 weights and
 * activations, as cq_onnx_save writes them and as ONNX Runtime and TensorRT consume them) load
 * back into quantized modules: DequantizeLinear(int8 weight) -> Conv -> [Relu] -> QuantizeLinear
 * becomes QuantizedConv2d / QuantizedConvReLU2d with exactly the integer weights and scales of the
 * file, standalone QuantizeLinear / DequantizeLinear become Quantize / DeQuantize, DequantizeLinear
 * weights on Gemm / MatMul / LSTM / GRU with float activations become the dynamic quantized
 * modules. A model saved by cq_onnx_save and loaded again computes bit-identical outputs.
 *
 * Every failure is one line naming the node ("node Conv_3 (Conv): weight initializer 'w' has 3
 * dimensions, expected 4"): malformed or truncated files (CQ_EFORMAT), ops or attributes cquant
 * does not support (CQ_EUNSUPPORTED), shape mismatches (CQ_ESHAPE), missing initializers or values
 * (CQ_EFORMAT). */
#ifndef CQUANT_ONNX_H
#define CQUANT_ONNX_H

#include <stddef.h>
#include <stdint.h>

#include "cquant/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Loads the ONNX file at `path` as a new graph module in eval mode (caller frees with
 * cq_module_free). */
CQ_API cq_status cq_onnx_load(const char *path, cq_module **out);
/* The same from `size` bytes in memory; `what` names the source in messages (may be NULL). */
CQ_API cq_status cq_onnx_load_buffer(const void *data, size_t size, const char *what,
                                     cq_module **out);

/* Writes `model` (a graph or sequential of float modules, or what the quantization passes made of
 * one) to `path` as an ONNX model (opset 13; quantized parts in QDQ form). The file appears whole
 * or not at all. CQ_EUNSUPPORTED naming the module for anything that has no ONNX form.
 * `input_shape` (ndim entries; the first, the batch, is written as the dynamic dimension "N") gives
 * the shape of the single model input. */
CQ_API cq_status cq_onnx_save(cq_module *model, int ndim, const int64_t *input_shape,
                              const char *path);

#ifdef __cplusplus
}
#endif
#endif

/* Graph-mode quantization: the prepare_fx / convert_fx analogue for cq_graph models (built in C or
 * loaded from ONNX with cq_onnx_load).
 *
 * Where eager mode needs the user to place QuantStub / DeQuantStub, set qconfig attributes and
 * name the fusions, the graph passes do it themselves:
 *   1. fuse: Conv2d/Conv1d -> BatchNorm -> ReLU, Conv -> ReLU, Linear -> ReLU, Linear -> BatchNorm1d
 *      chains whose intermediate values have no other consumer (eval mode: BN folded into the
 *      weights; QAT: ConvBn2d / ConvBnReLU2d, BN kept);
 *   2. qconfig: the backend's default qconfig (or the options' observer / scheme) on every node,
 *      then per-node overrides by node name or PyTorch class name, and excluded nodes left float;
 *   3. stubs: Quantize at the entry of every region of quantizable nodes, DeQuantize at its exits
 *      (graph outputs and inputs of nodes that stay float), inserted as graph nodes named
 *      "<value producer>_quant" / "<consumer>_dequant";
 *   4. observers: the eager prepare / prepare_qat rules on the result.
 * Calibration is running the prepared graph (cq_module_forward) on representative batches;
 * cq_convert_graph then swaps observed nodes for quantized modules (the eager convert).
 * Quantizable nodes: Conv1d/2d, Linear and their fused forms, add / mul / cat, ReLU, ReLU6,
 * Hardtanh, LeakyReLU, Hardswish, Hardsigmoid, Sigmoid, Tanh, MaxPool2d, AvgPool2d,
 * AdaptiveAvgPool2d, Flatten, Dropout, Identity and the shape ops (reshape, permute, squeeze,
 * unsqueeze). Everything else (Softmax, BatchNorm without a conv before it, LSTM / GRU in static
 * mode, matmul of two activations, sub / div, ConvTranspose2d) stays float between a DeQuantize
 * and a Quantize. */
#ifndef CQUANT_GRAPH_MODE_H
#define CQUANT_GRAPH_MODE_H

#include "cquant/graph.h"
#include "cquant/qconfig.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cq_graph_quant_options {
  cq_backend backend; /* whose default qconfig and rounding rules (default CQ_BACKEND_X86) */
  /* Activation observer by cquant observe's name ("minmax", "histogram", ...); NULL = the
   * backend default qconfig's. Static mode only. */
  const char *observer;
  /* Weight scheme: -1 = the backend default (x86 / fbgemm / onednn: per channel; qnnpack: per
   * tensor), 0 = per tensor, 1 = per channel. */
  int per_channel;
  /* Nodes left in float: node names or PyTorch class names ("Conv2d"). */
  int nexclude;
  const char *const *exclude;
  /* Per-node qconfigs, by node name or class name (a name beats a class). */
  int noverride;
  const char *const *override_names;
  const cq_qconfig *override_qconfigs;
} cq_graph_quant_options;

/* The defaults: x86, default observer, default scheme, nothing excluded or overridden. */
CQ_API cq_graph_quant_options cq_graph_quant_defaults(void);

/* prepare_fx: fuse, qconfig, stubs and observers, in place (model in eval mode). The model is
 * unchanged when the call fails. CQ_EINVAL for a model that is not a graph or sequential, an
 * unknown observer, exclude / override name that matches no node. */
CQ_API cq_status cq_prepare_graph(cq_module *model, const cq_graph_quant_options *options);
/* prepare_qat_fx: the same with fake-quants, on a model in training mode. */
CQ_API cq_status cq_prepare_qat_graph(cq_module *model, const cq_graph_quant_options *options);
/* convert_fx: observed / QAT nodes become quantized modules, with the engine set to
 * options->backend while converting. */
CQ_API cq_status cq_convert_graph(cq_module *model, const cq_graph_quant_options *options);
/* quantize_dynamic on a graph: Linear, LSTM and GRU nodes (not excluded) get int8 weights. */
CQ_API cq_status cq_quantize_dynamic_graph(cq_module *model, const cq_graph_quant_options *options);

#ifdef __cplusplus
}
#endif
#endif

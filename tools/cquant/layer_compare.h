/* Layer-by-layer comparison of a float graph and its quantized form (the numeric suite behind
 * `cquant compare` and the HTML report).
 *
 * Both models run on the same input with cq_graph_forward_visit. Every node of the quantized model
 * that runs a quantized module (QuantizedConv2d, QuantizedLinearReLU, QFunctional,
 * DynamicQuantizedLinear, ...) is paired with the float node of the same name (importer and passes
 * keep the PyTorch module names). A fused quantized node is compared with the float output after
 * the layers it absorbed: BatchNorm nodes that directly follow it and, for the *ReLU forms, the ReLU
 * after that.
 *
 * Two errors are measured per layer:
 *  - the layer's own error (sqnr_db, max / mean abs error), as torch.ao.ns's Shadow module measures
 *    it: the float layer is run on the dequantized input the quantized layer received, so both see
 *    the same input and only this layer's weight and output quantization count;
 *  - the cumulative error (cumulative_sqnr_db), as compare_model_outputs measures it: the quantized
 *    model's value at this layer against the float model's.
 * SQNR = 10 log10(sum(ref^2) / sum((ref - q)^2)) in dB; +inf when the two are equal. */
#ifndef CQ_TOOL_LAYER_COMPARE_H
#define CQ_TOOL_LAYER_COMPARE_H

#include <stdint.h>

#include "cquant/cquant.h"

typedef struct lc_layer {
  const char *name;     /* quantized node name (points into the quantized model) */
  const char *type;     /* its module type */
  const char *ref_name; /* the float node whose output is the reference */
  int ref_node;         /* its index in the float graph */
  double sqnr_db;
  double max_abs_error, mean_abs_error;
  double cumulative_sqnr_db;
  int quantized_output; /* the output is a quantized tensor with: */
  float scale;
  int32_t zero_point;
  cq_qdtype dtype;
} lc_layer;

typedef struct lc_result {
  lc_layer *layers; /* in the quantized graph's execution order */
  int nlayers;
  double output_sqnr_db; /* first graph output, quantized model against float model */
} lc_result;

/* Runs both graphs on `input` (a float32 batch) and fills *out (release with lc_result_release,
 * also after a failure). CQ_EINVAL for models that are not graphs, CQ_ESHAPE naming the layer when
 * paired outputs differ in size, or the error of a forward pass. */
cq_status lc_compare(cq_module *float_model, cq_module *quant_model, cq_tensor *input,
                     lc_result *out);
void lc_result_release(lc_result *r);

/* SQNR in dB of q against ref (n floats); +inf when equal, -inf... never: 0 signal gives -inf
 * only when ref is all zero and q is not. */
double lc_sqnr_db(const float *ref, const float *q, int64_t n);

/* Sorts layers by sqnr_db ascending (worst first; NaN last). */
void lc_sort_worst_first(lc_result *r);

#endif

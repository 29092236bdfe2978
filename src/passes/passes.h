/* Internal: the pieces of the eager-mode passes (fuse.c, prepare.c, convert.c) that other passes
 * reuse: prepare_qat is PyTorch's propagate + convert(QAT mapping, keep qconfig) + prepare(with the
 * QAT modules as observed non-leaf modules and fake-quants instead of observers), and convert of a
 * QAT model swaps QAT modules that live in the QAT pass.
 *
 * qconfig convention: a module's qconfig attribute (m->qconfig) NULL means "not set" (inherit the
 * parent's); a qconfig with neither activation nor weight present is PyTorch's explicit
 * `module.qconfig = None`: it stops inheritance and the module is left float. */
#ifndef CQ_PASSES_PASSES_H
#define CQ_PASSES_PASSES_H

#include "cquant/quantization.h"
#include "nn/module_impl.h"

/* ---- fuse ---------------------------------------------------------------------------------------- */

/* fuse_conv_bn_weights / fuse_linear_bn_weights of torch.nn.utils.fusion on raw arrays, in PyTorch's
 * float32 operation order (torch-1.13-semantics.md 4.2), with bn an eval-mode BatchNorm1d/2d of
 * `channels` features:
 *   conv   (linear == 0): r = 1/sqrt(var + eps); w *= gamma*r per output channel;
 *                         b = ((b - mean)*r)*gamma + beta
 *   linear (linear != 0): k = gamma*r; w *= k per output row; b = (b - mean)*k + beta
 * weight: [channels, per_channel] row-major, updated in place; bias_in: [channels] or NULL (zeros);
 * bias_out: [channels] (may equal bias_in). CQ_ESHAPE when bn has another number of features. */
cq_status cq_fold_bn(float *weight, int64_t channels, int64_t per_channel, const float *bias_in,
                     float *bias_out, const cq_module *bn, int linear);

/* fuse_conv_bn_eval / fuse_linear_bn_eval: a new Conv1d/Conv2d or Linear with bn folded in (a bias
 * is added when the module had none), leaving both arguments untouched. The copy keeps conv's
 * training flag and qconfig; making it does not draw from the library's generator. */
cq_status cq_fold_conv_bn_module(const cq_module *conv, const cq_module *bn, cq_module **out);
cq_status cq_fold_linear_bn_module(const cq_module *linear, const cq_module *bn, cq_module **out);

/* ---- prepare ------------------------------------------------------------------------------------- */

/* Creates the activation_post_process module for `m` from `spec` (its qconfig's activation, or the
 * fixed-qparams fake-quant PyTorch gives Sigmoid / Tanh / Hardsigmoid / Softmax in training). */
typedef cq_status (*cq_post_factory)(const cq_module *m, const cq_qspec *spec, cq_module **out,
                                     void *user);

typedef struct cq_prepare_options {
  int nnon_leaf;                     /* observer_non_leaf_module_list: class names observed as a */
  const char *const *non_leaf_types; /* unit although they have children (the QAT modules)      */
  cq_post_factory make_post;         /* NULL: what the spec describes (cq_qspec_module: an
                                        observer module, or a fake-quant module for QAT specs) */
  void *user;
} cq_prepare_options;

/* propagate_qconfig_(model): every module's qconfig = its own, else its parent's (copies). */
cq_status cq_propagate_qconfig(cq_module *model);

/* prepare(model, observer_non_leaf_module_list=...) with options (NULL = cq_prepare's defaults). */
cq_status cq_prepare_with(cq_module *model, const cq_prepare_options *options);

/* 1 when `qc` is set and not the explicit None described above. */
int cq_qconfig_is_set(const cq_qconfig *qc);

/* ---- convert ------------------------------------------------------------------------------------- */

/* from_float of one module: sets *out to the new module, or leaves it NULL to decline (the module
 * is then handled by the next rule). m is not modified. */
typedef cq_status (*cq_swap_fn)(cq_module *m, cq_backend engine, cq_module **out);

typedef struct cq_module_mapping {
  const char *type_name; /* exact class name */
  cq_swap_fn swap;
} cq_module_mapping;

/* Adds a rule that cq_convert consults before its own mapping (e.g. the QAT modules: ConvBn2d,
 * ConvBnReLU2d, QAT Linear, ... registered by prepare_qat). The name is kept, not copied (a string
 * literal). Registering the same (type_name, swap) twice is a no-op. CQ_ENOMEM when the table is
 * full (64 rules). Thread-safe. */
cq_status cq_convert_register(const char *type_name, cq_swap_fn swap);

/* convert(model, mapping, remove_qconfig) with an explicit mapping (prepare_qat's QAT mapping),
 * without cq_convert's checks that the model was prepared and calibrated. Swaps are all built
 * before the model changes; on failure the model is unchanged. */
cq_status cq_convert_with(cq_module *model, int n, const cq_module_mapping *mapping,
                          int remove_qconfig);

/* What from_float does with qconfig.weight(): a fresh observer or fake-quant made from `spec`
 * (cq_qspec_module), run once on `weight` (float32), and its calculate_qparams() with the range
 * converted weights are clamped to. CQ_EINVAL when the spec is absent or its dtype is not qint8. */
cq_status cq_weight_qparams(const cq_qspec *spec, const cq_tensor *weight, cq_qparams *out);

#endif

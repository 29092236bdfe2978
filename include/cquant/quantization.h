/* Eager-mode quantization of a model, as torch.ao.quantization does it: QuantStub / DeQuantStub,
 * qconfig attributes, fuse_modules, prepare / prepare_qat (observers and fake-quants attached where
 * PyTorch attaches them), calibration by running the model, convert (modules swapped for quantized
 * ones), and quantize_dynamic.
 *
 * All passes work in place on the model (PyTorch's inplace=True) and leave it unchanged when they
 * fail. The quantized engine (torch.backends.quantized.engine) is a process-wide setting read at
 * convert time: converted modules keep the engine's rounding rules (torch-1.13-semantics.md 5). */
#ifndef CQUANT_QUANTIZATION_H
#define CQUANT_QUANTIZATION_H

#include "cquant/nn.h"
#include "cquant/qconfig.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- stubs ------------------------------------------------------------------------------------- */

/* QuantStub / DeQuantStub: identity in float; convert turns them into Quantize / DeQuantize. */
CQ_API cq_status cq_quant_stub(cq_module **out);
CQ_API cq_status cq_dequant_stub(cq_module **out);
/* QuantWrapper(module): children quant, dequant, module (PyTorch's order); forward runs
 * quant -> module -> dequant. Takes ownership of `module`. */
CQ_API cq_status cq_quant_wrapper(cq_module **out, cq_module *module);

/* ---- qconfig ----------------------------------------------------------------------------------- */

/* module.qconfig = qconfig (copied). NULL removes the attribute, so the module inherits its
 * parent's qconfig; PyTorch's explicit `module.qconfig = None` (stop inheriting, leave the module
 * float) is a qconfig whose activation and weight are both absent (present == 0). */
CQ_API cq_status cq_module_set_qconfig(cq_module *m, const cq_qconfig *qconfig);
/* The module's own qconfig attribute, or NULL when it has none. */
CQ_API const cq_qconfig *cq_module_get_qconfig(const cq_module *m);

/* ---- observers as modules ---------------------------------------------------------------------- */

/* An observer (or fake-quant) attached as a child module, printed as PyTorch prints it; forward
 * observes its input and returns it unchanged. Takes ownership of `observer`. */
CQ_API cq_status cq_observer_module(cq_module **out, cq_observer *observer);
/* The observer inside an observer module (NULL for other modules). */
CQ_API cq_observer *cq_observer_module_get(cq_module *m);

/* ---- passes ------------------------------------------------------------------------------------ */

/* fuse_modules(model, [names...], inplace=True) for one group of dotted names: conv+bn,
 * conv+bn+relu, conv+relu, linear+relu, linear+bn1d, bn+relu (BN folded into the conv / linear with
 * PyTorch's operation order). The first module is replaced by the fused one, the others by
 * Identity. CQ_EINVAL for a pattern PyTorch cannot fuse or modules not in eval mode. */
CQ_API cq_status cq_fuse_modules(cq_module *model, int n, const char *const *names);
/* fuse_modules_qat: the same patterns for training (BN kept, ConvBn2d / ConvBnReLU2d / LinearBn1d). */
CQ_API cq_status cq_fuse_modules_qat(cq_module *model, int n, const char *const *names);

/* prepare(model, inplace=True): propagates qconfig attributes down the tree and attaches an
 * activation observer ("activation_post_process") to every module PyTorch observes. CQ_ESTATE when
 * no module has a qconfig. */
CQ_API cq_status cq_prepare(cq_module *model);
/* prepare_qat(model, inplace=True): requires training mode; swaps modules for their QAT versions
 * (fake-quantized weights) and attaches fake-quant modules. */
CQ_API cq_status cq_prepare_qat(cq_module *model);
/* convert(model, inplace=True): swaps observed / QAT modules for quantized ones using the observers'
 * qparams and the current engine, and removes observers and qconfigs. CQ_ESTATE when the model was
 * not prepared. */
CQ_API cq_status cq_convert(cq_module *model);

/* quantize_dynamic(model, {types}, dtype): `types` are PyTorch class names ("Linear", "LSTM",
 * "GRU", "LSTMCell", "GRUCell", "RNNCell", "LinearReLU"); n == 0 means PyTorch's default set for the
 * dtype. dtype: CQ_QINT8 (weights int8, activations quantized per call) or CQ_QFLOAT16. */
CQ_API cq_status cq_quantize_dynamic(cq_module *model, int n, const char *const *types,
                                     cq_qdtype dtype);

/* model.apply(...) helpers of QAT. */
CQ_API void cq_enable_observer(cq_module *model, int enabled);
CQ_API void cq_enable_fake_quant(cq_module *model, int enabled);
CQ_API void cq_freeze_bn_stats(cq_module *model, int frozen);

#ifdef __cplusplus
}
#endif
#endif

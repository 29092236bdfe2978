/* Internal: the quantization-aware-training modules of PyTorch 1.13 (torch.ao.nn.qat and
 * torch.ao.nn.intrinsic.qat; torch-1.13-semantics.md 4.7) and the float fused containers that
 * fuse_modules_qat makes for them (torch.ao.nn.intrinsic ConvBn1d/2d, ConvBnReLU1d/2d, LinearBn1d).
 *
 * QAT modules print with PyTorch's class names and keep the float layer's parameters ("weight",
 * "bias") and a "weight_fake_quant" child made from qconfig.weight (a fake-quant module, or an
 * observer module when the qconfig is a post-training one, as the seed's QAT script uses):
 *
 *   Linear, LinearReLU        y = [relu](linear(x, weight_fake_quant(W), b))
 *   Conv2d, ConvReLU2d        y = [relu](conv(x, weight_fake_quant(W), b))
 *   ConvBn1d/2d,              the "approximate" BN folding of _ConvBnNd._forward_approximate:
 *   ConvBnReLU1d/2d,            rs = sqrt(running_var + eps), sf = gamma / rs,
 *   LinearBn1d                  y0 = conv(x, weight_fake_quant(W * sf), 0) / sf + b,
 *                               y = [relu](bn(y0)), the child "bn" in training mode using batch
 *                               statistics (and updating running ones) unless frozen.
 *
 * Gradients are PyTorch's autograd ones: through the fake-quant's straight-through mask into W, and
 * for the BN kinds also through sf into the BN weight (both from W * sf and from / sf).
 *
 * freeze_bn_stats puts the BN child in eval mode (running statistics) and keeps it there although
 * cq_module_train sets training flags recursively (the module re-asserts it before each forward,
 * which is what PyTorch's overridden train() achieves). Modules made by cq_qat_from_float start
 * unfrozen with their BN in training mode, as PyTorch's from_float does. */
#ifndef CQ_NN_QAT_QAT_MODULES_H
#define CQ_NN_QAT_QAT_MODULES_H

#include "cquant/modules.h"
#include "cquant/qconfig.h"
#include "nn/module_impl.h"

/* ---- float fused containers for fuse_modules_qat ---------------------------------------------- */

/* nni.ConvBn1d / ConvBn2d(conv, bn), nni.ConvBnReLU1d / ConvBnReLU2d(conv, bn, relu),
 * nni.LinearBn1d(linear, bn): containers with children "0", "1"(, "2") whose forward runs them in
 * order (PyTorch's nn.Sequential). The class follows the conv (Conv1d + BatchNorm1d or Conv2d +
 * BatchNorm2d); the BN must have conv.out_channels / linear.out_features features. Take ownership of
 * the modules, also on failure (CQ_EINVAL naming the wrong type or size). */
cq_status cq_fused_conv_bn(cq_module **out, cq_module *conv, cq_module *bn);
cq_status cq_fused_conv_bn_relu(cq_module **out, cq_module *conv, cq_module *bn, cq_module *relu);
cq_status cq_fused_linear_bn(cq_module **out, cq_module *linear, cq_module *bn);
/* 1 for the containers above. */
int cq_module_is_fused_bn_float(const cq_module *m);
/* The container of class `class_name` ("ConvBn1d", "ConvBn2d", "ConvBnReLU1d", "ConvBnReLU2d",
 * "LinearBn1d") around a, b (and c), without the checks: fuse_modules_qat builds it around
 * placeholders once it has checked the real modules, then swaps them in. Takes ownership. */
cq_status cq_fused_bn_container(cq_module **out, const char *class_name, cq_module *a,
                                cq_module *b, cq_module *c);

/* ---- QAT modules ------------------------------------------------------------------------------- */

/* 1 for the QAT module types (not the float ones of the same class names). */
int cq_is_qat_module(const cq_module *m);
/* 1 for the QAT kinds with a "bn" child (ConvBn*, ConvBnReLU*, LinearBn1d); 2 for the ConvBn ones
 * that torch.nn.intrinsic.qat.freeze_bn_stats acts on (all but LinearBn1d). 0 otherwise. */
int cq_qat_has_bn(const cq_module *m);

/* from_float: the QAT module PyTorch's QAT mapping gives float module m (Conv2d, Linear,
 * ConvReLU2d, LinearReLU, ConvBn1d/2d, ConvBnReLU1d/2d, LinearBn1d), with weight_fake_quant made from
 * qc->weight and qconfig qc. *out is NULL (and CQ_OK) when m has no QAT version. m is not changed:
 * parameters are copied; for the BN kinds the new module holds a placeholder "bn" that
 * cq_qat_swap_bn exchanges with m's BatchNorm. CQ_EINVAL when qc has no weight entry. */
cq_status cq_qat_from_float(cq_module *m, const cq_qconfig *qc, cq_module **out);
/* Exchanges the QAT module's "bn" child with child "1" of the float container it was made from
 * (pointer swaps that cannot fail; a second call undoes the first). When the BatchNorm moves into
 * the QAT module it is put in training mode (restored when it moves back). */
void cq_qat_swap_bn(cq_module *qat, cq_module *float_fused);

/* freeze_bn_stats (frozen = 1) / update_bn_stats (frozen = 0) of a QAT module with BN (no effect on
 * other modules). */
void cq_qat_freeze_bn(cq_module *m, int frozen);
int cq_qat_bn_frozen(const cq_module *m);

/* ---- internals shared by the QAT module files -------------------------------------------------- */

typedef enum cq_qat_kind {
  CQ_QAT_LINEAR,
  CQ_QAT_LINEAR_RELU,
  CQ_QAT_CONV,
  CQ_QAT_CONV_RELU,
  CQ_QAT_CONV_BN,
  CQ_QAT_CONV_BN_RELU,
  CQ_QAT_LINEAR_BN
} cq_qat_kind;

typedef struct cq_qat_impl {
  cq_qat_kind kind;
  int dims;                 /* convolutions: 1 or 2; 0 for linear kinds */
  cq_conv_options conv;     /* convolutions (conv.bias: whether the module has a bias) */
  int64_t in_features, out_features;
  int bias;                 /* whether "bias" exists */
  int freeze_bn;
  int bn_saved_training;    /* the float BatchNorm's flag, restored when it moves back */
  cq_module *part;          /* BN kinds: hidden module computing the pre-BN output (on the tape) */
  cq_module *relu;          /* ConvBnReLU kinds: hidden ReLU */
} cq_qat_impl;

/* Creates a QAT module of `kind` (types in qat_modules.c) owning impl. */
cq_status cq_qat_module_new(cq_qat_kind kind, cq_qat_impl *impl, cq_module **out);
/* The hidden layer / ReLU of the BN kinds (qat_bn.c). */
cq_status cq_qat_bn_parts(cq_module *m);
/* ConvNd.extra_repr / Linear.extra_repr of a QAT module. */
void cq_qat_extra_repr(const cq_module *m, cq_strbuf *sb);

#endif

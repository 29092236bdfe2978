/* Internal: the fused float modules of torch.nn.intrinsic (nni.ConvReLU1d, ConvReLU2d, LinearReLU,
 * BNReLU2d) that fuse_modules produces for post-training quantization.
 *
 * A fused module is a container, like PyTorch's nni._FusedModule (an nn.Sequential): two children
 * named "0" and "1", printed as PyTorch prints them,
 *
 *     ConvReLU2d(
 *       (0): Conv2d(2, 64, kernel_size=(3, 3), stride=(1, 1))
 *       (1): ReLU()
 *     )
 *
 * and forward runs child "0" then child "1" (an "activation_post_process" child that prepare adds
 * is applied to the output by the module core, as PyTorch's forward hook). Gradients flow through
 * the children's recorded calls, so a fused module trains like the two modules it holds.
 *
 * The QAT pass reuses cq_fused_conv_relu for fuse_modules_qat's Conv+ReLU case (PyTorch returns
 * the same nni.ConvReLU2d there). */
#ifndef CQ_NN_FUSED_H
#define CQ_NN_FUSED_H

#include "nn/module_impl.h"

/* nni.ConvReLU1d / ConvReLU2d(conv, relu): the type follows the conv (Conv1d or Conv2d); `relu`
 * must be a ReLU. Takes ownership of both modules, also on failure (CQ_EINVAL naming the wrong
 * type, CQ_ENOMEM). The new container starts in training mode, as a new PyTorch module does; the
 * children keep their flags. */
cq_status cq_fused_conv_relu(cq_module **out, cq_module *conv, cq_module *relu);
/* nni.LinearReLU(linear, relu). Same ownership and errors. */
cq_status cq_fused_linear_relu(cq_module **out, cq_module *linear, cq_module *relu);
/* nni.BNReLU2d(batch_norm_2d, relu). Same ownership and errors. */
cq_status cq_fused_bn_relu(cq_module **out, cq_module *bn, cq_module *relu);

/* The forward of every float nni container (these and the ConvBn / LinearBn ones of
 * nn/qat/qat_bn.c): a fused module is an nn.Sequential in PyTorch, so it runs every child in
 * order (children "0" and "1" are required), including an attached activation_post_process, which
 * the module core's post hook then runs once more (PyTorch observes a prepared fused module's
 * output twice; moving-average observers and fake-quants see both). */
cq_status cq_fused_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                           cq_tensor **out);

/* 1 when m is one of the fused types above (made here). */
int cq_module_is_fused_float(const cq_module *m);

/* 1 when m's class is one of torch.nn.intrinsic's fused classes, float, QAT or otherwise
 * (ConvReLU1d/2d/3d, LinearReLU, BNReLU2d/3d, ConvBn1d/2d/3d, ConvBnReLU1d/2d/3d, LinearBn1d):
 * PyTorch's isinstance(m, nni._FusedModule), which prepare and convert treat as one unit. */
int cq_module_is_fused(const cq_module *m);

#endif

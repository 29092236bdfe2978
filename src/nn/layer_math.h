/* Internal: float convolution and linear arithmetic with an explicit weight, forward and backward:
 * what nn.Conv1d / nn.Conv2d / nn.Linear compute (conv.c, linear.c pass their parameters) and what
 * the QAT modules compute with their fake-quantized weights (nn/qat/), so that a QAT module whose
 * post-processes are plain observers gives exactly the float module's numbers. Convolutions run
 * per batch item and group as im2col + cq_sgemm, Linear as one cq_sgemm.
 *
 * Layouts as in PyTorch: conv input [N, C, H, W] / [C, H, W] (1-D: [N, C, L] / [C, L]), weight
 * [O, C/groups, kh(, kw)], output [N, O, Ho(, Wo)]; linear input [*, in], weight [out, in]. */
#ifndef CQ_NN_LAYER_MATH_H
#define CQ_NN_LAYER_MATH_H

#include "cquant/modules.h"
#include "nn/module_impl.h"

/* Checks x against the convolution o of `dims` spatial dimensions (errors name module m and
 * follow nn.Conv2d's messages) and allocates the output in ctx: y = conv(x, weight) + bias (bias
 * may be NULL). The columns live in ctx's scratch, which is free again on return. */
cq_status cq_conv_f32_forward(const cq_module *m, const cq_conv_options *o, int dims,
                              const cq_tensor *x, const float *weight, const float *bias,
                              cq_ctx *ctx, cq_tensor **y);

/* Gradients of that convolution for the output gradient gy: gx is written (x's size), gw and gb
 * (may be NULL) are accumulated into. */
cq_status cq_conv_f32_backward(const cq_module *m, const cq_conv_options *o, int dims,
                               const cq_tensor *x, const float *weight, const float *gy, float *gx,
                               float *gw, float *gb);

/* gb[c] += the sum, in double, of gy [batch, channels, plane] over the batch and channel c's plane:
 * the bias gradient of a convolution (ConvTranspose2d's too). */
void cq_conv_bias_grad(const float *gy, int64_t batch, int64_t channels, int64_t plane,
                       float *gb);

/* y = x W^T + b over the last dimension (b may be NULL). */
cq_status cq_linear_f32_forward(const cq_module *m, int64_t in_features, int64_t out_features,
                                const cq_tensor *x, const float *weight, const float *bias,
                                cq_ctx *ctx, cq_tensor **y);
/* gx = gy W (written), gw += gy^T x, gb += column sums of gy (gb may be NULL). */
void cq_linear_f32_backward(int64_t in_features, int64_t out_features, const cq_tensor *x,
                            const float *weight, const float *gy, float *gx, float *gw, float *gb);

#endif

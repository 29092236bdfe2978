/* Internal: what the quantization passes need to know about float modules. Modules are identified
 * by their PyTorch class name (exact type match, as PyTorch's mappings use exact types); these
 * accessors give the configuration behind a module. Parameters and buffers are read with
 * cq_module_own_tensor ("weight", "bias", "running_mean", ...). */
#ifndef CQ_NN_LAYERS_H
#define CQ_NN_LAYERS_H

#include "cquant/modules.h"
#include "nn/module_impl.h"

/* 1 when m's class name is `type_name`. */
int cq_module_is(const cq_module *m, const char *type_name);

/* Conv1d / Conv2d: the options it was built with and its dimensionality (1 or 2). CQ_EINVAL for
 * another module. */
cq_status cq_conv_describe(const cq_module *m, cq_conv_options *options, int *dims);
/* _ConvNd.extra_repr of a convolution with these options: "2, 64, kernel_size=(3, 3),
 * stride=(1, 1)" and the non-default padding, dilation, groups and bias only. */
void cq_conv_append_repr(cq_strbuf *sb, int dims, const cq_conv_options *o);

/* Linear: sizes and whether it has a bias. */
cq_status cq_linear_describe(const cq_module *m, int64_t *in_features, int64_t *out_features,
                             int *bias);

/* BatchNorm1d / BatchNorm2d: features, eps and momentum. */
cq_status cq_batchnorm_describe(const cq_module *m, int64_t *num_features, double *eps,
                                double *momentum);
/* BatchNorm1d / BatchNorm2d: sets eps (> 0), as nn.BatchNorm2d(c, eps=...) would (ONNX import). */
cq_status cq_batchnorm_set_eps(cq_module *m, double eps);

/* LSTM / GRU: the options it was built with; *is_gru tells which. */
cq_status cq_rnn_describe(const cq_module *m, cq_rnn_options *options, int *is_gru);

/* Dropout: its probability. */
cq_status cq_dropout_describe(const cq_module *m, float *p);

/* Hardtanh / ReLU6: the clamp bounds (0 and 6 for ReLU6). */
cq_status cq_hardtanh_describe(const cq_module *m, float *min_val, float *max_val);

/* Softmax: its dim as given (may be negative). */
cq_status cq_softmax_describe(const cq_module *m, int *dim);

/* Flatten: start_dim and end_dim as given (may be negative). */
cq_status cq_flatten_describe(const cq_module *m, int *start_dim, int *end_dim);

/* MaxPool2d / AvgPool2d: the options (stride resolved: never 0; dilation 1 for AvgPool2d). */
cq_status cq_pool_describe(const cq_module *m, cq_pool_options *options);

/* AdaptiveAvgPool2d: the output size. */
cq_status cq_adaptive_avgpool_describe(const cq_module *m, int64_t *out_h, int64_t *out_w);

/* ---- the ops imported graphs use (activation_extra.c, tensor_ops.c, binary_ops.c,
 * conv_transpose.c): what the ONNX exporter needs to write them back. CQ_EINVAL for another
 * module. */

/* LeakyReLU: its negative slope. */
cq_status cq_leaky_relu_describe(const cq_module *m, float *negative_slope);
/* ConvTranspose2d: the options it was built with. */
cq_status cq_conv_transpose_describe(const cq_module *m, cq_conv_transpose_options *options);
/* Reshape: the target shape as given (entries 0 and -1 kept); shape has CQ_MAX_DIMS entries. */
cq_status cq_reshape_describe(const cq_module *m, int *ndim, int64_t *shape);
/* Permute: the permutation (*ndim == 0: reverse the dimensions); perm has CQ_MAX_DIMS entries. */
cq_status cq_permute_describe(const cq_module *m, int *ndim, int *perm);
/* Squeeze / Unsqueeze: which one (*unsqueeze), and the axes as given (naxes 0: every dimension of
 * size 1); axes has CQ_MAX_DIMS entries. */
cq_status cq_squeeze_describe(const cq_module *m, int *unsqueeze, int *naxes, int *axes);
/* BinaryConst: the op, the order, and the constant (the module's buffer; owned by the module). */
cq_status cq_binary_const_describe(const cq_module *m, cq_binary_op *op, int *constant_first,
                                   const cq_tensor **constant);
/* cq_binary's module: its op. */
cq_status cq_binary_describe(const cq_module *m, cq_binary_op *op);

#endif

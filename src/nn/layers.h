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

/* Linear: sizes and whether it has a bias. */
cq_status cq_linear_describe(const cq_module *m, int64_t *in_features, int64_t *out_features,
                             int *bias);

/* BatchNorm1d / BatchNorm2d: features, eps and momentum. */
cq_status cq_batchnorm_describe(const cq_module *m, int64_t *num_features, double *eps,
                                double *momentum);

/* LSTM / GRU: the options it was built with; *is_gru tells which. */
cq_status cq_rnn_describe(const cq_module *m, cq_rnn_options *options, int *is_gru);

/* Dropout: its probability. */
cq_status cq_dropout_describe(const cq_module *m, float *p);

#endif

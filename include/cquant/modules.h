/* Constructors of the float modules (torch.nn equivalents), losses and optimizers.
 *
 * Every constructor returns a new module in training mode with parameters initialised as PyTorch
 * does (kaiming-uniform weights, uniform biases from the library's generator; cq_manual_seed reseeds
 * it), and validates its arguments (CQ_EINVAL naming the argument). Containers take ownership of
 * the children passed to them, even when they fail. */
#ifndef CQUANT_MODULES_H
#define CQUANT_MODULES_H

#include <stdint.h>

#include "cquant/nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reseeds the generator used for parameter initialisation (like torch.manual_seed). */
CQ_API void cq_manual_seed(uint64_t seed);

/* ---- containers --------------------------------------------------------------------------------- */

/* nn.Sequential(*children): children named "0", "1", ... */
CQ_API cq_status cq_sequential(cq_module **out, int n, cq_module *const *children);
/* Appends a child named by the next index. */
CQ_API cq_status cq_sequential_append(cq_module *seq, cq_module *child);

/* ---- layers ------------------------------------------------------------------------------------- */

CQ_API cq_status cq_linear(cq_module **out, int64_t in_features, int64_t out_features, int bias);

typedef struct cq_conv_options {
  int64_t in_channels, out_channels;
  int64_t kernel_size[2]; /* Conv1d uses [0] only */
  int64_t stride[2];
  int64_t padding[2];
  int64_t dilation[2];
  int64_t groups;
  int bias;
  /* Conv2d only, printing only: the kernel size was written as a 1-tuple, nn.Conv2d(c, o, (k,)).
   * PyTorch's _pair keeps a tuple as given, so that module prints kernel_size=(k,) (the seed's toy
   * model does); set this (with kernel_size = {k, 1}) to print the same. The convolution itself
   * is the k x 1 one (PyTorch's module would have a 3-D weight and could not run). */
  int kernel_1tuple;
} cq_conv_options;

/* Defaults of nn.Conv2d(in, out, (kh, kw)): stride 1, padding 0, dilation 1, groups 1, bias. */
CQ_API cq_conv_options cq_conv_defaults(int64_t in_channels, int64_t out_channels, int64_t kh,
                                        int64_t kw);
CQ_API cq_status cq_conv1d(cq_module **out, const cq_conv_options *options);
CQ_API cq_status cq_conv2d(cq_module **out, const cq_conv_options *options);

CQ_API cq_status cq_relu(cq_module **out);
CQ_API cq_status cq_relu6(cq_module **out);
CQ_API cq_status cq_hardtanh(cq_module **out, float min_val, float max_val);
CQ_API cq_status cq_sigmoid(cq_module **out);
CQ_API cq_status cq_tanh(cq_module **out);
CQ_API cq_status cq_softmax(cq_module **out, int dim);
CQ_API cq_status cq_identity(cq_module **out);
CQ_API cq_status cq_dropout(cq_module **out, float p);
CQ_API cq_status cq_flatten(cq_module **out, int start_dim, int end_dim);

/* BatchNorm1d/2d(num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True). */
CQ_API cq_status cq_batchnorm1d(cq_module **out, int64_t num_features);
CQ_API cq_status cq_batchnorm2d(cq_module **out, int64_t num_features);

typedef struct cq_pool_options {
  int64_t kernel_size[2];
  int64_t stride[2]; /* 0 = kernel_size, as PyTorch's stride=None */
  int64_t padding[2];
  int64_t dilation[2];
  int ceil_mode;
  int count_include_pad;   /* AvgPool2d; default 1 */
  int64_t divisor_override; /* AvgPool2d; 0 = none */
} cq_pool_options;

CQ_API cq_pool_options cq_pool_defaults(int64_t kh, int64_t kw);
CQ_API cq_status cq_maxpool2d(cq_module **out, const cq_pool_options *options);
CQ_API cq_status cq_avgpool2d(cq_module **out, const cq_pool_options *options);
CQ_API cq_status cq_adaptive_avgpool2d(cq_module **out, int64_t out_h, int64_t out_w);

typedef struct cq_rnn_options {
  int64_t input_size, hidden_size, num_layers;
  int bias, batch_first, bidirectional;
  float dropout;
} cq_rnn_options;

/* nn.LSTM / nn.GRU: forward takes (input[, h0[, c0]]) and gives (output, h_n[, c_n]). */
CQ_API cq_rnn_options cq_rnn_defaults(int64_t input_size, int64_t hidden_size);
CQ_API cq_status cq_lstm(cq_module **out, const cq_rnn_options *options);
CQ_API cq_status cq_gru(cq_module **out, const cq_rnn_options *options);

/* Functional ops as modules, for Graph nodes: elementwise add of two tensors of one shape, and
 * concatenation along `dim`. */
CQ_API cq_status cq_add(cq_module **out);
CQ_API cq_status cq_cat(cq_module **out, int dim);

/* ---- more activations and tensor ops (what imported ONNX graphs use) -------------------------- */

/* nn.LeakyReLU(negative_slope), nn.Hardsigmoid(), nn.Hardswish(). On quantized tensors they run
 * PyTorch's quantized kernels: convert replaces LeakyReLU and Hardswish with QuantizedLeakyReLU /
 * QuantizedHardswish, whose output qparams are those of their observer; left unconverted,
 * LeakyReLU keeps the input's qparams (torch.nn.functional.leaky_relu on a quantized tensor),
 * Hardsigmoid gives the fixed (1/256, 0) for quint8 / (1/256, -128) for qint8, and Hardswish fails
 * with CQ_EUNSUPPORTED (PyTorch 1.13 has no unconverted quantized hardswish either). */
CQ_API cq_status cq_leaky_relu(cq_module **out, float negative_slope);
CQ_API cq_status cq_hardsigmoid(cq_module **out);
CQ_API cq_status cq_hardswish(cq_module **out);

/* Elementwise binary ops on two inputs with numpy broadcasting (torch.add / sub / mul / div).
 * cq_mul is FloatFunctional.mul (like cq_add, quantizable: convert makes it QFunctional mul, which
 * broadcasts too; unconverted on quantized tensors it fails with CQ_EUNSUPPORTED as torch.mul
 * does); "sub" and "div" stay float. */
CQ_API cq_status cq_mul(cq_module **out);
typedef enum cq_binary_op { CQ_BINARY_ADD, CQ_BINARY_SUB, CQ_BINARY_MUL, CQ_BINARY_DIV } cq_binary_op;
/* One input and a constant operand (copied to float32; a buffer named "constant"), broadcast as
 * numpy does: y = x op c, or y = c op x when constant_first. What ONNX's Add / Mul / Sub / Div with
 * an initializer operand become. Float only (CQ_EUNSUPPORTED on quantized input). Prints
 * "BinaryConst(op=mul, constant_shape=(3, 1, 1))" (+ ", constant_first=True"). */
CQ_API cq_status cq_binary_const(cq_module **out, cq_binary_op op, const cq_tensor *constant,
                                 int constant_first);
/* y = a op b of two inputs with numpy broadcasting (torch.add / sub / mul / div on two computed
 * tensors), float only: what ONNX's Sub / Div of two activations and an Add whose operands differ
 * in shape become (PyTorch has no quantized sub or div, and its quantized add needs equal shapes;
 * cq_add / cq_mul are the quantizable forms). Prints "Sub()", "Div()", "Add()" or "Mul()". */
CQ_API cq_status cq_binary(cq_module **out, cq_binary_op op);
/* torch.matmul of two inputs (1-D operands as torch treats them, batch dimensions broadcast), float
 * only (CQ_EUNSUPPORTED on quantized input). Prints "MatMul()". */
CQ_API cq_status cq_matmul(cq_module **out);

/* Shape ops. They work on float and quantized tensors alike (a quantized tensor keeps its qparams).
 * cq_reshape: ONNX Reshape semantics with allowzero=0: an entry 0 copies the input's dimension at
 * that position, one entry may be -1 (inferred). cq_permute: torch.permute / ONNX Transpose (perm
 * of 0..ndim-1; ndim == 0 reverses the dimensions as Transpose without perm does).
 * cq_squeeze / cq_unsqueeze: ONNX semantics (axes may be negative; squeeze with naxes == 0 drops
 * every dimension of size 1, squeezing a dimension that is not 1 is an error). Errors that depend
 * on the input (a 0 entry past its rank, sizes that do not divide, axes out of range) fail the
 * forward. They print FX-like names: "Reshape(shape=(0, -1))", "Permute(dims=(0, 2, 1))",
 * "Squeeze(dims=(1,))", "Unsqueeze(dims=(0,))" ("Permute()" / "Squeeze()" without dims). */
CQ_API cq_status cq_reshape(cq_module **out, int ndim, const int64_t *shape);
CQ_API cq_status cq_permute(cq_module **out, int ndim, const int *perm);
CQ_API cq_status cq_squeeze(cq_module **out, int naxes, const int *axes);
CQ_API cq_status cq_unsqueeze(cq_module **out, int naxes, const int *axes);

typedef struct cq_conv_transpose_options {
  int64_t in_channels, out_channels;
  int64_t kernel_size[2], stride[2], padding[2], output_padding[2], dilation[2];
  int64_t groups;
  int bias;
} cq_conv_transpose_options;
/* Defaults of nn.ConvTranspose2d(in, out, (kh, kw)). */
CQ_API cq_conv_transpose_options cq_conv_transpose_defaults(int64_t in_channels,
                                                            int64_t out_channels, int64_t kh,
                                                            int64_t kw);
/* nn.ConvTranspose2d; weight [in, out/groups, kh, kw] as PyTorch (output_padding must be smaller
 * than stride or dilation). Float only (CQ_EUNSUPPORTED on quantized input; convert refuses it as
 * cquant has no QuantizedConvTranspose2d). */
CQ_API cq_status cq_conv_transpose2d(cq_module **out, const cq_conv_transpose_options *options);

/* ---- losses: modules taking (prediction, target) and giving a 0-d loss (mean reduction) ---------- */

CQ_API cq_status cq_mse_loss(cq_module **out);
/* target: int64 class indices [N]; prediction: logits [N, C]. */
CQ_API cq_status cq_cross_entropy_loss(cq_module **out);

/* ---- optimizers --------------------------------------------------------------------------------- */

typedef struct cq_optimizer cq_optimizer;

/* torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov) over every parameter of
 * the model. */
CQ_API cq_status cq_sgd(cq_optimizer **out, cq_module *model, float lr, float momentum,
                        float dampening, float weight_decay, int nesterov);
/* torch.optim.Adam(params, lr, betas=(beta1, beta2), eps, weight_decay). */
CQ_API cq_status cq_adam(cq_optimizer **out, cq_module *model, float lr, float beta1, float beta2,
                         float eps, float weight_decay);
CQ_API cq_status cq_optimizer_step(cq_optimizer *opt);
CQ_API void cq_optimizer_zero_grad(cq_optimizer *opt);
CQ_API void cq_optimizer_free(cq_optimizer *opt);

#ifdef __cplusplus
}
#endif
#endif

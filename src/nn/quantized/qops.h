/* Internal: operators on quantized activation tensors, with the exact arithmetic of PyTorch 1.13's
 * CPU kernels (torch-1.13-semantics.md 5.6, 5.7). The quantized modules (QFunctional, ...) and the
 * quantized branches of the float modules that PyTorch leaves unconverted (ReLU, ReLU6, Hardtanh,
 * Sigmoid, Tanh, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d, cat) call these.
 *
 * A quantized activation is a cq_tensor of storage dtype CQ_U8 (quint8) or CQ_S8 (qint8) with
 * per-tensor qparams whose dtype matches the storage (cq_qact_check). Values are stored in the
 * logical C order (NCHW for 4-D). Every op allocates its output in `ctx`; outputs carry their
 * qparams. `m` names the module in error messages (may be NULL).
 *
 * Engines. PyTorch reads torch.backends.quantized.engine when the op runs; the callers pass it.
 * QNNPACK has its own kernels for quint8 relu/clamp (same results as ATen), sigmoid and tanh
 * (256-entry lookup tables built with expf / tanh), avg_pool2d (no ceil_mode; count_include_pad
 * and divisor_override ignored), adaptive_avg_pool2d (divisible sizes only) and add (fixed point,
 * ties away from zero); everything else, and every engine other than QNNPACK, runs ATen's native
 * kernels.
 *
 * Memory format. Some native kernels depend on the memory format of a 4-D input: quantized convs
 * produce channels-last (NHWC) tensors, quantize_per_tensor keeps the float input's NCHW. cquant's
 * tensors do not record a memory format, so the ops take it as `layout`; the modules pass
 * CQ_QLAYOUT_DEFAULT (NHWC: the layout of every 4-D activation downstream of a quantized conv).
 * What depends on it:
 *   avg_pool2d (native)          NCHW adds the output zero point before rounding, NHWC after
 *   adaptive_avg_pool2d (native) NCHW: rne(sum(q) * (1/kh) * (1/kw)); NHWC: zp + rne(sum(q - zp)/n)
 *   cat along dim 1 of 4-D       NHWC dequantizes with an FMA (vector lanes) on 32- and 8-channel
 *                                blocks; NCHW dequantizes every element plainly
 *   add, sigmoid, tanh (native)  which elements fall in ATen's scalar tail (the last n % 64 in
 *                                memory order), computed with slightly different float rounding
 * The results of the two layouts differ by at most 1 on exact ties. */
#ifndef CQ_NN_QUANTIZED_QOPS_H
#define CQ_NN_QUANTIZED_QOPS_H

#include <stdint.h>

#include "cquant/nn.h"
#include "cquant/qconfig.h"
#include "cquant/tensor.h"

typedef enum cq_qlayout {
  CQ_QLAYOUT_NCHW = 0, /* contiguous: the logical order */
  CQ_QLAYOUT_NHWC      /* channels-last (4-D only; other ranks are always contiguous) */
} cq_qlayout;

/* The memory format the modules assume for 4-D quantized activations. */
#define CQ_QLAYOUT_DEFAULT CQ_QLAYOUT_NHWC

/* 1 when x is a quantized activation as described above. */
int cq_qact_is(const cq_tensor *x);
/* CQ_OK, or CQ_EINVAL naming the module, the input index and what is wrong. */
cq_status cq_qact_check(const cq_module *m, const cq_tensor *x, int index);
/* The quantized dtype of an activation (CQ_QUINT8 / CQ_QINT8). */
cq_qdtype cq_qact_dtype(const cq_tensor *x);
/* A new quantized activation owned by ctx: storage of `dtype`, per-tensor (scale, zero_point);
 * its bytes are not set (the caller writes every one). */
cq_status cq_qact_new(cq_ctx *ctx, cq_qdtype dtype, int ndim, const int64_t *shape, float scale,
                      int32_t zero_point, cq_tensor **out);

/* relu: max(q, zp), same qparams. */
cq_status cq_qop_relu(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, cq_tensor **y);
/* hardtanh / relu6 / clamp: clamp(q, quantize(lo), quantize(hi)), same qparams. */
cq_status cq_qop_clamp(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, float lo, float hi,
                       cq_tensor **y);
/* The byte range cq_qop_clamp(lo, hi) clamps a quint8 input of (scale, zp) to. */
void cq_qop_clamp_bounds(float lo, float hi, float scale, int32_t zp, int32_t *qlo, int32_t *qhi);
/* sigmoid: output (1/256, 0) for quint8, (1/256, -128) for qint8. */
cq_status cq_qop_sigmoid(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, cq_backend engine,
                         cq_qlayout layout, cq_tensor **y);
/* tanh: output (2/256, 128) for quint8, (2/256, 0) for qint8. */
cq_status cq_qop_tanh(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, cq_backend engine,
                      cq_qlayout layout, cq_tensor **y);

/* quantized::add / add_relu of two quantized tensors of one shape and dtype, output (scale, zp).
 * Two channels-last inputs (with NHWC semantics) give a channels-last output. */
cq_status cq_qop_add(const cq_module *m, cq_ctx *ctx, const cq_tensor *a, const cq_tensor *b,
                     float scale, int32_t zero_point, int relu, cq_backend engine,
                     cq_qlayout layout, cq_tensor **y);
/* quantized::mul: zp + rne(f32((qa - za)(qb - zb)) * f32(f32(sa sb) / s)), clamped; the inputs
 * broadcast as torch.mul. */
cq_status cq_qop_mul(const cq_module *m, cq_ctx *ctx, const cq_tensor *a, const cq_tensor *b,
                     float scale, int32_t zero_point, int relu, cq_tensor **y);
/* quantized::cat(tensors, dim, scale, zp): every input requantized to (scale, zp). */
cq_status cq_qop_cat(const cq_module *m, cq_ctx *ctx, int n, cq_tensor *const *in, int dim,
                     float scale, int32_t zero_point, cq_qlayout layout, cq_tensor **y);

/* The quantized branch of FloatFunctional modules that convert left in place: cat follows
 * torch.cat on quantized tensors (output in the first input's qparams; a warning when the others
 * differ, as PyTorch gives); add has no quantized form without output qparams (PyTorch refuses it
 * too), so it fails with CQ_EUNSUPPORTED pointing at QFunctional. */
cq_status cq_qop_float_functional(const cq_module *m, cq_ctx *ctx, int is_cat, int dim, int n,
                                  cq_tensor *const *in, cq_tensor **y);
/* nn.Dropout on a quantized tensor: the input itself in evaluation mode (or p == 0); training-mode
 * dropout of quantized tensors does not exist in PyTorch (CQ_EUNSUPPORTED). */
cq_status cq_qop_dropout(const cq_module *m, cq_tensor *x, int training, float p, cq_tensor **y);

/* Pooling geometry (PyTorch's arguments; stride already resolved, dilation 1 for avg pooling). */
typedef struct cq_qpool2d {
  int64_t kernel[2], stride[2], padding[2], dilation[2];
  int ceil_mode;
  int count_include_pad;
  int64_t divisor_override; /* 0 = None */
} cq_qpool2d;

/* max_pool2d over [N, C, H, W] or [C, H, W]: max of the integers, padding ignored; the input's
 * qparams. A channels-last quint8 input gives a channels-last output. QNNPACK's kernel (engine QNNPACK, quint8, no ceil_mode) clamps window coordinates into
 * the image instead of skipping the padding, so with dilation > 1 and padding it also sees the
 * border elements the clamped taps land on; cquant does the same there. */
cq_status cq_qop_maxpool2d(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                           const cq_qpool2d *p, cq_backend engine, cq_tensor **y);
/* avg_pool2d: QNNPACK engine + quint8 + no ceil_mode -> QNNPACK's kernel, else the native one of
 * the layout. Same qparams as the input. */
cq_status cq_qop_avgpool2d(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                           const cq_qpool2d *p, cq_backend engine, cq_qlayout layout,
                           cq_tensor **y);
/* adaptive_avg_pool2d to (out_h, out_w): QNNPACK engine + quint8 + sizes divisible (and not
 * equal) -> QNNPACK's avg pool with kernel = stride = in / out, else the native kernel. */
cq_status cq_qop_adaptive_avgpool2d(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                                    int64_t out_h, int64_t out_w, cq_backend engine,
                                    cq_qlayout layout, cq_tensor **y);

#endif

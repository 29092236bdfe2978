/* Internal: quantized LeakyReLU, Hardswish and Hardsigmoid with the arithmetic of PyTorch 1.13's
 * CPU kernels (the conventions of qops.h: quint8 / qint8 per-tensor activations in logical order,
 * outputs allocated in ctx, `m` names the module in messages and may be NULL).
 *
 * ATen's kernels (qrelu_leaky, qhardswish, qhardsigmoid) dequantize, compute in float and quantize
 * again; their vector body dequantizes with an FMA (scale * q + (-zp * scale)), their scalar tail
 * (the last n % 64 elements in memory order, see qops_elementwise.c) as (q - zp) * scale, so the
 * element's position in memory order decides, as in PyTorch. QNNPACK (engine QNNPACK, quint8) has
 * 256-entry lookup tables for hardswish and hardsigmoid built in float and rounded with lrintf;
 * leaky_relu runs ATen's kernel under every engine. */
#ifndef CQ_NN_QUANTIZED_QOPS_ACTIVATION_EXTRA_H
#define CQ_NN_QUANTIZED_QOPS_ACTIVATION_EXTRA_H

#include <stdint.h>

#include "nn/quantized/qops.h"

/* quantized::leaky_relu(x, negative_slope, scale, zero_point): y = x > 0 ? x : x * slope in float,
 * quantized to (scale, zero_point) of x's dtype. torch.nn.functional.leaky_relu on a quantized
 * tensor is this with x's own qparams. */
cq_status cq_qop_leaky_relu(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                            float negative_slope, float scale, int32_t zero_point,
                            cq_qlayout layout, cq_tensor **y);
/* quantized::hardswish(x, scale, zero_point): y = x * clamp(x + 3, 0, 6) / 6. */
cq_status cq_qop_hardswish(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, float scale,
                           int32_t zero_point, cq_backend engine, cq_qlayout layout,
                           cq_tensor **y);
/* hardsigmoid on a quantized tensor: y = clamp(x + 3, 0, 6) / 6 with the fixed output qparams
 * (1/256, 0) for quint8 and (1/256, -128) for qint8. */
cq_status cq_qop_hardsigmoid(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                             cq_backend engine, cq_qlayout layout, cq_tensor **y);

#endif

/* Internal: helpers shared by the static quantized modules (qlinear.c, qconv.c, qstubs.c,
 * qfunctional.c) and the quantized ops (qops_*.c). */
#ifndef CQ_NN_QUANTIZED_QSTATIC_IMPL_H
#define CQ_NN_QUANTIZED_QSTATIC_IMPL_H

#include <stdint.h>

#include "core/strbuf.h"
#include "cquant/nn.h"
#include "cquant/qconfig.h"
#include "cquant/qparams.h"
#include "kernels/requant/requant.h"
#include "nn/quantized/qops.h"

/* cq_module_fail when m is non-NULL, else a message prefixed "quantized op: ". */
cq_status cq_qmod_fail(const cq_module *m, cq_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* CQ_EINVAL for an engine outside cq_backend. */
cq_status cq_qmod_check_engine(cq_backend engine);
/* The requantization rule of an engine: QNNPACK -> qnnpack (5.1), ONEDNN -> onednn (5.2), X86 and
 * FBGEMM -> fbgemm (5.3; the rule FBGEMM publishes, which oneDNN approximates within 1 LSB). */
cq_requant_rule cq_qmod_engine_rule(cq_backend engine);

/* index[k] = the logical (C-order) position of the k-th element in memory order of `layout`
 * (channels-last for 4-D NHWC, identity otherwise). index has cq_tensor_numel(x) entries. */
void cq_qmod_memory_order(const cq_tensor *x, cq_qlayout layout, int64_t *index);

/* from_float's weight quantization (torch-1.13-semantics.md 4.5 step 3): `weight` is float
 * [rows, cols] (row = output channel); `wq` the weight observer's qparams: dtype qint8, a
 * per-tensor scheme (count 1) or a per-channel one along axis 0 (count == rows); float zero points
 * are refused. Quantizes with quantize_per_tensor / quantize_per_channel to qint8, then clamps the
 * integers to [wq->quant_min, wq->quant_max]. The ONEDNN engine refuses nonzero weight zero points
 * as PyTorch does. Returns a new int8 tensor of `ndim`/`shape` (rows * cols elements) carrying a
 * copy of wq (its qscheme reported as the affine variant, as PyTorch's quantized tensors do). */
cq_status cq_qmod_quantize_weight(const char *who, const float *weight, int64_t rows, int64_t cols,
                                  int ndim, const int64_t *shape, const cq_qparams *wq,
                                  cq_backend engine, cq_tensor **out);

/* Validates the output qparams of a static module (quint8, per-tensor, finite scale > 0, zero
 * point in [0, 255]) and returns them. */
cq_status cq_qmod_output_qparams(const char *who, const cq_qparams *yq, float *scale,
                                 int32_t *zero_point);

/* fuses_clamp (module_impl.h) of a static module whose output stage is a requantization with
 * `rule` to fixed qparams: 0 with a fused ReLU of its own, else the qparams, and *upper: whether
 * the clamp may cut below 255 (a float output stage, not QNNPACK's). */
int cq_qmod_fuses_clamp(int relu, float scale, int32_t zero_point, cq_requant_rule rule,
                        float *y_scale, int32_t *y_zp, int *upper);

/* Appends Python's repr of a float32 value widened to double ("0.014756753109395504"). */
void cq_qmod_append_scale(cq_strbuf *sb, float scale);
/* Appends a float argument the user wrote as a Python literal: the shortest decimal that gives back
 * the same float32 ("0.3" for 0.3f), as nn.Dropout(0.3) prints it. */
void cq_qmod_append_float_arg(cq_strbuf *sb, float value);

#endif

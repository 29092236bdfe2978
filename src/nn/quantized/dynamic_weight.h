/* Internal: the weight side of dynamic quantization, shared by nnqd.Linear / nniqd.LinearReLU
 * (dynamic_linear.c), nnqd.LSTM / nnqd.GRU (dynamic_rnn.c) and the quantize_dynamic pass.
 *
 * What from_float does to one weight matrix W [rows, cols] (PyTorch's linear layout, rows = output
 * features), torch-1.13-semantics.md 4.5 / 4.6 / 5.4:
 *   1. a fresh observer from the qconfig's weight factory (default_dynamic_qconfig's MinMax qint8
 *      per_tensor_symmetric when the qconfig has none) sees W once;
 *   2. its calculate_qparams() gives the weight qparams (per tensor, or per row for the per-channel
 *      observers with ch_axis 0);
 *   3. W is quantized to qint8 (always qint8, rule 2.1 / 2.2), the integers clamped to the
 *      observer's [quant_min, quant_max] when that is narrower than [-128, 127];
 *   4. the int8 weight and the float bias are packed once for the int8 GEMM (kernels/gemm/qgemm.h),
 *      whose dynamic path then quantizes the activation of every call (5.4).
 * The engine (torch.backends.quantized.engine at convert time) selects the GEMM's output rule:
 * qnnpack and onednn as 5.4 describes, x86 and fbgemm the FBGEMM rule. */
#ifndef CQ_NN_QUANTIZED_DYNAMIC_WEIGHT_H
#define CQ_NN_QUANTIZED_DYNAMIC_WEIGHT_H

#include <stdint.h>

#include "cquant/observer.h"
#include "cquant/qconfig.h"
#include "cquant/tensor.h"
#include "kernels/gemm/qgemm.h"
#include "kernels/requant/requant.h"

/* The int8 GEMM output rule an engine follows: X86 and FBGEMM -> CQ_RULE_FBGEMM, QNNPACK and
 * ONEDNN -> their own. */
cq_requant_rule cq_dynamic_engine_rule(cq_backend engine);

/* The observer config a dynamic module uses for its weights: spec's observer, or
 * default_dynamic_qconfig's weight observer when spec is NULL or not present (from_float's
 * fallback). `who` names the module in messages ("nn.quantized.dynamic.Linear"); rnn selects the
 * RNN wording of PyTorch's dtype error.
 * Errors: CQ_EUNSUPPORTED for a float16 observer (fp16 weights need FBGEMM's linear_prepack_fp16,
 * which PyTorch builds without FBGEMM lack too) and for per-channel observers along another axis
 * than 0; CQ_EINVAL for any other dtype than qint8 (PyTorch's error) or the float-qparams scheme. */
cq_status cq_dynamic_weight_config(const cq_qspec *spec, const char *who, int rnn,
                                   cq_observer_config *out);

/* Steps 1-2: a fresh observer made from `config` observes w [rows, cols] (float32, row-major) and
 * computes its qparams into *wq (initialised here; release with cq_qparams_release). Errors: those
 * of cq_observer_create / update / qparams (CQ_EVALUE for NaN or infinite weights). */
cq_status cq_dynamic_weight_observe(const cq_observer_config *config, const float *w, int64_t rows,
                                    int64_t cols, cq_qparams *wq);

/* Step 3: quantizes w [rows, cols] with *wq (per tensor, or per row when per-channel with
 * wq->count == rows) into a new int8 tensor [rows, cols] that carries the qparams PyTorch's
 * quantized weight shows (the affine variant of the scheme: per_tensor_affine /
 * per_channel_affine), clamped to [wq->quant_min, wq->quant_max]. The engine's prepack rule is
 * checked here: onednn refuses nonzero weight zero points (CQ_EUNSUPPORTED, PyTorch's message).
 * CQ_EINVAL for qparams that do not fit the weight. */
cq_status cq_dynamic_weight_quantize(const float *w, int64_t rows, int64_t cols,
                                     const cq_qparams *wq, cq_backend engine, cq_tensor **out);

/* Step 4: packs an int8 tensor from cq_dynamic_weight_quantize with an optional float bias
 * [rows]. The caller keeps ownership of both; *out is destroyed with cq_qgemm_packed_destroy. */
cq_status cq_dynamic_weight_pack(const cq_tensor *qweight, const float *bias,
                                 cq_qgemm_packed **out);

/* One call of quantized::linear_dynamic / linear_relu_dynamic with reduce_range=True (what the
 * nnqd modules pass; qnnpack ignores it): y [m, n] = op(x [m, k]) for the packed weight, using the
 * caller's workspace of at least m * k bytes (NULL allowed when m == 0). `op` is created by the
 * caller with cq_dynamic_op_create and may be reused for any number of calls (not concurrently). */
cq_status cq_dynamic_op_create(const cq_qgemm_packed *w, cq_backend engine, int relu,
                               cq_qgemm_dynamic **out);
cq_status cq_dynamic_op_run(cq_qgemm_dynamic *op, const float *x, int64_t m, int64_t k, float *y,
                            int64_t n, void *workspace);

#endif

/* Internal: HistogramObserver (observer_histogram.c), PyTorch 1.13's
 * torch.ao.quantization.HistogramObserver bit for bit (torch-1.13-semantics.md 1.6).
 *
 * The observer itself is reached through the public observer API (cq_observer_create with kind
 * CQ_OBSERVER_HISTOGRAM); these functions expose its internals to tests and benchmarks. */
#ifndef CQ_QUANT_OBSERVER_HISTOGRAM_H
#define CQ_QUANT_OBSERVER_HISTOGRAM_H

#include <stdint.h>

#include "quant/observer_impl.h"

/* The running float32 histogram (torch's `histogram` buffer, all zeros before data) and its
 * length (`bins`). The pointer belongs to the observer and stays valid until it is freed; NULL
 * if `obs` is not a histogram observer. */
const float *cq_histogram_observer_histogram(const cq_observer *obs, int *bins);

/* The clipping range calculate_qparams() chooses by its L2-error search
 * (_non_linear_param_search), before rule 1.2 turns it into a scale and zero point.
 * CQ_ESTATE if the observer has seen no data, CQ_EINVAL if it is not a histogram observer. */
cq_status cq_histogram_observer_search(const cq_observer *obs, float *new_min, float *new_max);

/* torch.sum of a contiguous float32 vector as PyTorch 1.13 computes it on an AVX2 CPU (its
 * vectorised cascade: 8-float lanes, 4 interleaved rows, 4 levels of partial sums), so that the
 * float32 rounding matches bit for bit. n >= 0. */
float cq_torch_sum_f32(const float *x, int64_t n);

#endif

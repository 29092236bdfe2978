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

/* The fewest elements of a batch that forward() gives each thread of the default pool
 * (cq_set_num_threads): a batch of n elements is split among min(threads, n / grain, 64) threads.
 * 0 restores the automatic grain, max(32768, 8 * bins); tests pass a small one so that short
 * batches are split too. The results are the same for any grain and thread count. Returns the
 * previous setting. Not thread-safe: set it while no observer is running. */
int64_t cq_histogram_observer_set_grain(int64_t elements);

/* Defined in observer.c: CQ_EVALUE "element I is NaN|+Inf|-Inf; observers need finite values" for
 * the first non-finite element of x[0..n), CQ_OK if there is none. The histogram observer, which
 * looks for them in its own first pass, reports them with it as cq_observer_update does for the
 * other kinds. */
cq_status cq_observer_nonfinite_error(const float *x, int64_t n);

#endif

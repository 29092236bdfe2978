/* Observers: collect statistics of the tensors passed through them and compute quantization
 * parameters, exactly as torch.ao.quantization.observer does in PyTorch 1.13.
 *
 * An observer is created from a cq_observer_config (a value; think of it as PyTorch's observer class
 * plus its constructor arguments, i.e. the "factory" a QConfig holds). cq_observer_defaults(kind)
 * gives PyTorch's constructor defaults. Batches are consumed one at a time; memory does not grow with
 * the number of batches.
 *
 * Kinds and what they follow:
 *  MINMAX, MOVING_AVERAGE_MINMAX, PER_CHANNEL_MINMAX, MOVING_AVERAGE_PER_CHANNEL_MINMAX, HISTOGRAM,
 *  PLACEHOLDER, NOOP, FIXED_QPARAMS: PyTorch 1.13's classes of the same names, bit for bit.
 *  PERCENTILE, MSE, ENTROPY: the TensorRT-style calibrators of NVIDIA's pytorch-quantization
 *  (HistogramCalibrator: histogram of |x|, amax by percentile / MSE / KL divergence); the clipping
 *  range they choose is turned into qparams with PyTorch's rule (cq_calculate_qparams).
 *
 * Unlike PyTorch, an update with NaN or Inf is rejected (CQ_EVALUE naming the element index) and
 * leaves the observer unchanged. */
#ifndef CQUANT_OBSERVER_H
#define CQUANT_OBSERVER_H

#include <stddef.h>
#include <stdint.h>

#include "cquant/qparams.h"
#include "cquant/status.h"
#include "cquant/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cq_observer_kind {
  CQ_OBSERVER_MINMAX = 0,
  CQ_OBSERVER_MOVING_AVERAGE_MINMAX,
  CQ_OBSERVER_PER_CHANNEL_MINMAX,
  CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX,
  CQ_OBSERVER_HISTOGRAM,
  CQ_OBSERVER_PERCENTILE,
  CQ_OBSERVER_MSE,
  CQ_OBSERVER_ENTROPY,
  CQ_OBSERVER_PLACEHOLDER,
  CQ_OBSERVER_NOOP,
  CQ_OBSERVER_FIXED_QPARAMS,
  CQ_OBSERVER_KIND_COUNT
} cq_observer_kind;

typedef struct cq_observer_config {
  cq_observer_kind kind;
  cq_qdtype dtype;            /* default quint8 (float32 for placeholder, float16 for noop) */
  cq_qscheme qscheme;         /* default per_tensor_affine, per_channel_affine for per-channel kinds */
  int reduce_range;           /* default 0 */
  int has_quant_range;        /* 1 when quant_min/quant_max were given (both or neither) */
  int64_t quant_min;
  int64_t quant_max;
  float eps;                  /* default FLT_EPSILON (2^-23) */
  int ch_axis;                /* per-channel kinds; default 0; negative counts from the end */
  float averaging_constant;   /* moving-average kinds; default 0.01 */
  int bins;                   /* histogram kinds; default 2048 */
  int upsample_rate;          /* histogram; default 128 */
  double percentile;          /* percentile calibrator; default 99.99 */
  int start_bin;              /* mse/entropy calibrators: first candidate bin; default 128 */
  int stride;                 /* mse/entropy calibrators: candidate step; default 1 */
  float fixed_scale;          /* fixed_qparams */
  int32_t fixed_zero_point;   /* fixed_qparams */
  cq_qdtype compute_dtype;    /* placeholder: dynamic quantization's compute dtype */
  int has_compute_dtype;
} cq_observer_config;

typedef struct cq_observer cq_observer;

/* PyTorch's constructor defaults for `kind`. */
CQ_API cq_observer_config cq_observer_defaults(cq_observer_kind kind);

/* CLI names ("minmax", "moving_average_minmax", "histogram", "per_channel_minmax",
 * "moving_average_per_channel_minmax", "percentile", "mse", "entropy", "placeholder", "noop",
 * "fixed_qparams") and PyTorch class names ("MinMaxObserver", ...). */
CQ_API const char *cq_observer_kind_name(cq_observer_kind kind);
CQ_API const char *cq_observer_class_name(cq_observer_kind kind);
CQ_API cq_status cq_observer_kind_parse(const char *name, cq_observer_kind *out);

/* Validates the config the way the PyTorch constructor does (qscheme allowed for the kind, dtype,
 * range, symmetric+quint8+reduce_range, ...) and creates the observer. */
CQ_API cq_status cq_observer_create(const cq_observer_config *config, cq_observer **out);
CQ_API void cq_observer_free(cq_observer *observer);

/* The config the observer was created with, and its resolved [quant_min, quant_max]. */
CQ_API const cq_observer_config *cq_observer_config_of(const cq_observer *observer);
CQ_API void cq_observer_quant_range(const cq_observer *observer, int32_t *quant_min,
                                    int32_t *quant_max);

/* forward(): observes a float32 batch of the given shape (x is read, not modified). An empty batch
 * is ignored. Per-channel kinds need ch_axis < ndim. */
CQ_API cq_status cq_observer_update(cq_observer *observer, const float *x, int ndim,
                                    const int64_t *shape);
/* Same for a tensor of any real dtype (converted to float32 as torch does). */
CQ_API cq_status cq_observer_update_tensor(cq_observer *observer, const cq_tensor *x);

/* calculate_qparams(): fills `out` (initialised by this call; release with cq_qparams_release).
 * An observer that saw no data gives scale 1.0, zero point 0 and a warning, as PyTorch does.
 * Placeholder and noop observers return CQ_ESTATE. */
CQ_API cq_status cq_observer_qparams(cq_observer *observer, cq_qparams *out);

/* 1 once the observer has seen a non-empty batch. */
CQ_API int cq_observer_has_data(const cq_observer *observer);

/* Number of channels tracked so far (0 before data; 1 for per-tensor kinds once they have data). */
CQ_API int64_t cq_observer_channels(const cq_observer *observer);
/* The running min/max state (per channel for per-channel kinds; +inf/-inf before data). `cap` is the
 * capacity of the arrays; returns the number of values (may exceed cap, then nothing is written). */
CQ_API int64_t cq_observer_min_max(const cq_observer *observer, float *min_val, float *max_val,
                                   int64_t cap);

/* The observer as PyTorch prints it, e.g. "MinMaxObserver(min_val=-1.5, max_val=2.25)" or
 * "PerChannelMinMaxObserver(min_val=tensor([...]), max_val=tensor([...]))". Works like snprintf:
 * returns the full length, writes at most cap bytes (terminated). */
CQ_API size_t cq_observer_repr(const cq_observer *observer, char *buf, size_t cap);

/* Forgets all data (reset_min_max_vals / a fresh histogram). */
CQ_API void cq_observer_reset(cq_observer *observer);

/* Sets one constructor argument from text, as the CLI spells it: key is one of "dtype", "qscheme",
 * "reduce_range", "quant_min", "quant_max", "eps", "ch_axis", "averaging_constant", "bins",
 * "upsample_rate", "percentile", "start_bin", "stride", "scale", "zero_point", "compute_dtype".
 * CQ_EINVAL naming the key and value for a malformed value or unknown key. */
CQ_API cq_status cq_observer_config_set(cq_observer_config *config, const char *key,
                                        const char *value);

#ifdef __cplusplus
}
#endif
#endif

/* Internal: how observer kinds plug into cq_observer.
 *
 * The public functions in observer.c validate arguments, reject non-finite batches, skip empty ones
 * and handle the "no data yet" default; each kind supplies the rest through a vtable. Kinds that keep
 * a per-tensor running range use min_val/max_val; per-channel kinds use channels/min_vals/max_vals;
 * anything else goes in `state`, owned by the kind. */
#ifndef CQ_QUANT_OBSERVER_IMPL_H
#define CQ_QUANT_OBSERVER_IMPL_H

#include "core/strbuf.h"
#include "cquant/observer.h"

typedef struct cq_observer_vtable {
  /* Allocates kind-specific state after the common fields are set. May be NULL. */
  cq_status (*init)(cq_observer *obs);
  /* Observes a non-empty float32 batch, all-finite except for the histogram kind, which detects
   * NaN/Inf in its own min/max pass and reports it with cq_observer_nonfinite_error (saving a pass
   * over the data). Must leave the observer unchanged on failure. */
  cq_status (*update)(cq_observer *obs, const float *x, int ndim, const int64_t *shape,
                      int64_t numel);
  /* Computes qparams once data has been seen; `out` is uninitialised on entry. */
  cq_status (*qparams)(cq_observer *obs, cq_qparams *out);
  /* Appends the PyTorch repr. NULL = the per-tensor default "Class(min_val=.., max_val=..)". */
  void (*repr)(const cq_observer *obs, cq_strbuf *sb);
  /* Forgets the kind-specific state (the common fields are reset by the caller). May be NULL. */
  void (*reset)(cq_observer *obs);
  /* Frees the kind-specific state. May be NULL. */
  void (*destroy)(cq_observer *obs);
} cq_observer_vtable;

struct cq_observer {
  const cq_observer_vtable *vt;
  cq_observer_config cfg;
  int32_t quant_min;
  int32_t quant_max;
  int has_data;
  float min_val; /* per-tensor running range; +inf / -inf before data */
  float max_val;
  int64_t channels; /* per-channel running ranges (0 before data) */
  float *min_vals;
  float *max_vals;
  void *state;
};

/* qparams of a per-tensor range with the observer's rule, into a fresh count-1 record. */
cq_status cq_observer_qparams_from_range(const cq_observer *obs, float min_val, float max_val,
                                         cq_qparams *out);
/* The observer's cq_qparam_rule. */
void cq_observer_rule(const cq_observer *obs, cq_qparam_rule *rule);

extern const cq_observer_vtable cq_minmax_observer_vtable;
extern const cq_observer_vtable cq_moving_average_minmax_observer_vtable;
extern const cq_observer_vtable cq_per_channel_minmax_observer_vtable;
extern const cq_observer_vtable cq_moving_average_per_channel_minmax_observer_vtable;
extern const cq_observer_vtable cq_histogram_observer_vtable;
extern const cq_observer_vtable cq_percentile_calibrator_vtable;
extern const cq_observer_vtable cq_mse_calibrator_vtable;
extern const cq_observer_vtable cq_entropy_calibrator_vtable;
extern const cq_observer_vtable cq_placeholder_observer_vtable;
extern const cq_observer_vtable cq_noop_observer_vtable;
extern const cq_observer_vtable cq_fixed_qparams_observer_vtable;

#endif

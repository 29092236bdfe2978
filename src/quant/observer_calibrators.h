/* Internal: inspection hooks of the TensorRT-style calibrators (observer_calibrators.c), for tests
 * and tools. The public API only exposes their qparams; these give the clipping threshold itself
 * and the histogram it came from. */
#ifndef CQ_QUANT_OBSERVER_CALIBRATORS_H
#define CQ_QUANT_OBSERVER_CALIBRATORS_H

#include <stdint.h>

#include "cquant/observer.h"

/* 1 for the PERCENTILE, MSE and ENTROPY kinds. */
int cq_observer_is_calibrator(const cq_observer *obs);

/* The threshold `amax` that compute_amax(method) picks from the histogram collected so far (the
 * clipping range is then [0, amax] or [-amax, amax]). CQ_EINVAL if obs is not a calibrator,
 * CQ_ESTATE before any data, CQ_ENOMEM if the search's scratch memory cannot be allocated. */
cq_status cq_calibrator_amax(const cq_observer *obs, float *amax);

/* The histogram of |x| collected so far: *counts points at the calibrator's own float32 counts
 * (borrowed; valid until the next update/reset/free) and *nbins is its length; the bins span
 * [0, *last_edge]. Both are 0/NULL before data. CQ_EINVAL if obs is not a calibrator. */
cq_status cq_calibrator_histogram(const cq_observer *obs, const float **counts, int64_t *nbins,
                                  float *last_edge);

#endif

/* Internal: the threshold searches of the MSE and entropy calibrators
 * (observer_calibrator_search.c), split from the histogram collection in observer_calibrators.c. Both return the index of the
 * winning candidate; observer_calibrators.c turns it into the threshold. */
#ifndef CQ_QUANT_OBSERVER_CALIBRATOR_SEARCH_H
#define CQ_QUANT_OBSERVER_CALIBRATOR_SEARCH_H

#include <stdint.h>

#include "cquant/status.h"

/* Most error terms one MSE search evaluates: 2^25, about 0.1 s at -O2 on x86-64 (the largest golden
 * case needs 6.6 million). */
#define CQ_CALIB_MSE_BUDGET ((int64_t)1 << 25)
/* Most (candidate, non-empty bin) divergence terms one entropy search evaluates, each a division
 * and a log: 2^24, about 0.3 s at -O2 on x86-64 (the largest golden case needs 5.5 million). */
#define CQ_CALIB_ENTROPY_BUDGET ((int64_t)1 << 24)

/* pytorch-quantization's _compute_amax_mse over candidates i = start_bin, start_bin + stride, ...
 * below ncenters: the index of the first candidate with the least error (see the header comment of
 * observer_calibrators.c). centers: the ncenters bin centres; hist: the nbins float32 counts;
 * last_edge: the grid's last edge (decides whether empty bins can matter). Budget: when the search
 * would evaluate more than CQ_CALIB_MSE_BUDGET error terms, the stride is raised to a multiple of
 * `stride` that fits. CQ_ESTATE if there is no candidate, CQ_ENOMEM. */
cq_status cq_calibrator_mse_search(const float *centers, int64_t ncenters, const float *hist,
                                   int64_t nbins, float last_edge, int is_unsigned, int start_bin,
                                   int stride, int64_t *best);

/* pytorch-quantization's _compute_amax_entropy over candidates i = start_bin, start_bin + stride,
 * ... up to nbins inclusive (nbins >= 2): the last candidate with the least KL divergence. Same
 * budget rule with CQ_CALIB_ENTROPY_BUDGET, counted in non-empty bins per candidate.
 * CQ_ESTATE if there is no candidate, CQ_ENOMEM. */
cq_status cq_calibrator_entropy_search(const float *hist, int64_t nbins, int is_unsigned,
                                       int start_bin, int stride, int64_t *best);

#endif

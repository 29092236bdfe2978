/* The tests' own statement of what a GEMM or convolution creator makes of a folded output clamp
 * (cq_qgemm_quant.clamp): rq's output range narrowed to [lo, hi], refused (CQ_EINVAL) when the
 * clamp cuts below 255 with QNNPACK's integer stage or lies wholly below a fused ReLU. Written
 * apart from cq_qgemm_apply_clamp so that the kernels are checked against it. */
#ifndef CQ_TESTS_CLAMP_REF_H
#define CQ_TESTS_CLAMP_REF_H

#include "cquant/status.h"
#include "kernels/requant/requant.h"

static inline cq_status tb_clamp_reference(int clamp, int32_t lo, int32_t hi,
                                           cq_requant_rule rule, cq_requant_params *rq) {
  if (!clamp) return CQ_OK;
  cq_status st = CQ_OK;
  if (hi < 255 && rule == CQ_RULE_QNNPACK) st = CQ_EINVAL;
  if (rq->y_min < lo) rq->y_min = lo;
  if (rq->y_max > hi) rq->y_max = hi;
  if (rq->y_min > rq->y_max) st = CQ_EINVAL;
  return st;
}

#endif

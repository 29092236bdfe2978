/* Quantized GEMM operators: ISA dispatch, per-channel constants, work partitioning over threads,
 * and the dynamic linear op (see qgemm.h). */
#include "kernels/gemm/qgemm.h"

#include <string.h>

#include "core/alloc.h"
#include "cquant/qparams.h"
#include "kernels/quantize/quantize.h"

/* Below this many multiply-adds a GEMM runs on the calling thread only: waking a worker costs
 * more than the work. (Results are identical either way.) */
#define CQ_QGEMM_MIN_PARALLEL_MACS ((int64_t)1 << 17)

typedef struct cq_qgemm_kernels {
  cq_gemm_block_fn block;
  cq_f32_range_fn range;
  cq_f32_qu8_fn quantize;
} cq_qgemm_kernels;

static cq_qgemm_kernels kernels_for(cq_isa isa) {
  cq_qgemm_kernels k;
  switch (isa) {
#if CQ_ARCH_X86
    case CQ_ISA_AMX: k.block = cq_u8s8_gemm_block__amx; break;
    case CQ_ISA_AVX512VNNI: k.block = cq_u8s8_gemm_block__avx512vnni; break;
    case CQ_ISA_AVX2: k.block = cq_u8s8_gemm_block__avx2; break;
#endif
#if CQ_ARCH_ARM64
    case CQ_ISA_NEONDOT: k.block = cq_u8s8_gemm_block__neondot; break;
    case CQ_ISA_NEON: k.block = cq_u8s8_gemm_block__neon; break;
#endif
    default: k.block = cq_u8s8_gemm_block__scalar; break;
  }
  const cq_quantize_kernels q = cq_quantize_kernels_for(isa);
  k.range = q.range;
  k.quantize = q.quantize;
  return k;
}

static cq_status check_isa(cq_isa isa) {
  if ((unsigned)isa >= CQ_ISA_COUNT) return cq_fail(CQ_EINVAL, "unknown ISA %d", (int)isa);
  if (!cq_isa_supported(isa)) {
    return cq_fail(CQ_EUNSUPPORTED, "ISA %s cannot run here: %s", cq_isa_name(isa),
                   cq_isa_missing_reason(isa));
  }
  return CQ_OK;
}

/* offset[c] = K*zx*zw_c - zx*colsum_c (wrapping), the zero-point terms of
 * sum (x - zx)(w - zw) = sum x*w - zw*sum x - zx*sum w + K*zx*zw that do not depend on the row. */
static void compute_offsets(const cq_qgemm_packed *w, int32_t x_zp, int32_t *offset) {
  const size_t n_pad = (size_t)w->panels * CQ_QGEMM_NR;
  const uint32_t zx = (uint32_t)x_zp, kzx = (uint32_t)w->k * zx;
  const int32_t *restrict sums = w->col_sums, *restrict zw = w->w_zp;
  for (size_t c = 0; c < n_pad; c++) {
    offset[c] = (int32_t)(kzx * (uint32_t)zw[c] - zx * (uint32_t)sums[c]);
  }
}

/* ---- running a GEMM over the pool ---------------------------------------------------------- */

typedef struct gemm_job {
  const cq_gemm_args *args;
  cq_gemm_block_fn block;
  size_t m;
  int parts;
  int split_n; /* 1: part t gets a range of panels and all rows; 0: a range of rows */
} gemm_job;

static void gemm_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const gemm_job *job = ctx;
  const size_t panels = (size_t)job->args->w->panels;
  for (int64_t t = begin; t < end; t++) {
    int64_t b, e;
    if (job->split_n) {
      /* whole pairs of panels (AMX computes 32 columns at a time) */
      cq_partition((int64_t)(panels + 1) / 2, job->parts, (int)t, &b, &e);
      b *= 2;
      e = e * 2 > (int64_t)panels ? (int64_t)panels : e * 2;
      if (b < e) job->block(job->args, thread, 0, job->m, (size_t)b, (size_t)e);
    } else {
      /* whole blocks of 32 rows */
      cq_partition((int64_t)(job->m + 31) / 32, job->parts, (int)t, &b, &e);
      b *= 32;
      e = e * 32 > (int64_t)job->m ? (int64_t)job->m : e * 32;
      if (b < e) job->block(job->args, thread, (size_t)b, (size_t)e, 0, panels);
    }
  }
}

static void run_gemm(const cq_gemm_args *g, cq_gemm_block_fn block, size_t m, cq_threadpool *tp) {
  const cq_qgemm_packed *w = g->w;
  const size_t panels = (size_t)w->panels;
  int threads = cq_threadpool_threads(tp);
  if ((int64_t)m * w->n * w->k < CQ_QGEMM_MIN_PARALLEL_MACS) threads = 1;
  if (threads <= 1) {
    block(g, 0, 0, m, 0, panels);
    return;
  }
  gemm_job job = {.args = g, .block = block, .m = m};
  const size_t pairs = (panels + 1) / 2, row_blocks = (m + 31) / 32;
  /* split the columns when there are enough of them (each thread then streams only its share of
   * the weights); otherwise the rows */
  job.split_n = pairs >= (size_t)threads || pairs >= row_blocks;
  const size_t units = job.split_n ? pairs : row_blocks;
  job.parts = units < (size_t)threads ? (int)units : threads;
  if (job.parts <= 1) {
    block(g, 0, 0, m, 0, panels);
    return;
  }
  cq_parallel_for(tp, job.parts, job.parts, gemm_part, &job);
}

/* ---- static op ------------------------------------------------------------------------------ */

cq_status cq_qgemm_apply_clamp(const cq_qgemm_quant *q, cq_requant_params *rq) {
  if (!q->clamp) return CQ_OK;
  if (!(0 <= q->clamp_lo && q->clamp_lo <= q->clamp_hi && q->clamp_hi <= 255)) {
    return cq_fail(CQ_EINVAL, "output clamp [%d, %d] is not a range within [0, 255]",
                   (int)q->clamp_lo, (int)q->clamp_hi);
  }
  if (q->clamp_hi < 255 && q->rule == CQ_RULE_QNNPACK) {
    return cq_fail(CQ_EINVAL, "an output clamp below 255 needs a float output stage (the onednn "
                   "or fbgemm rule), not qnnpack's");
  }
  /* every output stage clamps to [y_min, y_max] */
  if (rq->y_min < q->clamp_lo) rq->y_min = q->clamp_lo;
  if (rq->y_max > q->clamp_hi) rq->y_max = q->clamp_hi;
  if (rq->y_min > rq->y_max) {
    return cq_fail(CQ_EINVAL, "output clamp [%d, %d] lies below the fused ReLU's %d",
                   (int)q->clamp_lo, (int)q->clamp_hi, (int)rq->y_min);
  }
  return CQ_OK;
}

struct cq_qgemm_op {
  const cq_qgemm_packed *w;
  cq_isa isa;
  cq_qgemm_kernels kern;
  cq_requant_params rq;
  int32_t *offset;
  int32_t x_zp;
};

cq_status cq_qgemm_create_isa(const cq_qgemm_packed *w, const cq_qgemm_quant *q, cq_isa isa,
                              cq_qgemm_op **out) {
  if (!out) return cq_fail(CQ_EINVAL, "qgemm create: output pointer is NULL");
  *out = NULL;
  if (!w || !q) return cq_fail(CQ_EINVAL, "qgemm create: weights or quantization are NULL");
  cq_status st = check_isa(isa);
  if (st != CQ_OK) return st;
  if (q->x_zp < 0 || q->x_zp > 255) {
    return cq_fail(CQ_EINVAL, "input zero point %d is outside quint8's [0, 255]", (int)q->x_zp);
  }
  cq_qgemm_op *op = cq_calloc_for(1, sizeof *op, "GEMM operator");
  if (!op) return CQ_ENOMEM;
  op->w = w;
  op->isa = isa;
  op->kern = kernels_for(isa);
  op->x_zp = q->x_zp;
  st = cq_requant_params_create(w->n, &op->rq);
  if (st != CQ_OK) goto fail;
  st = cq_requant_params_set_static(&op->rq, q->rule, q->x_scale, w->w_scale, w->per_channel,
                                    w->bias, q->y_scale, q->y_zp, q->relu);
  if (st == CQ_OK) st = cq_qgemm_apply_clamp(q, &op->rq);
  if (st != CQ_OK) goto fail;
  op->offset = cq_malloc_for((size_t)w->panels * CQ_QGEMM_NR * sizeof(int32_t), "GEMM offsets");
  if (!op->offset) {
    st = CQ_ENOMEM;
    goto fail;
  }
  compute_offsets(w, q->x_zp, op->offset);
  *out = op;
  return CQ_OK;
fail:
  cq_qgemm_destroy(op);
  return st;
}

cq_status cq_qgemm_create(const cq_qgemm_packed *w, const cq_qgemm_quant *q, cq_qgemm_op **out) {
  cq_isa isa;
  cq_status st = cq_isa_active(&isa);
  if (st != CQ_OK) {
    if (out) *out = NULL;
    return st;
  }
  return cq_qgemm_create_isa(w, q, isa, out);
}

void cq_qgemm_destroy(cq_qgemm_op *op) {
  if (!op) return;
  cq_requant_params_release(&op->rq);
  cq_free(op->offset);
  cq_free(op);
}

cq_isa cq_qgemm_isa(const cq_qgemm_op *op) { return op->isa; }

static cq_status check_run(const cq_qgemm_packed *w, const void *x, int64_t m, int64_t ldx,
                           const void *y, int64_t ldy) {
  if (m < 0) return cq_fail(CQ_EINVAL, "GEMM row count %lld is negative", (long long)m);
  if (m == 0) return CQ_OK;
  if (!x || !y) return cq_fail(CQ_EINVAL, "GEMM input or output is NULL");
  if (ldx < w->k) {
    return cq_fail(CQ_EINVAL, "input row stride %lld is smaller than K = %lld", (long long)ldx,
                   (long long)w->k);
  }
  if (ldy < w->n) {
    return cq_fail(CQ_EINVAL, "output row stride %lld is smaller than N = %lld", (long long)ldy,
                   (long long)w->n);
  }
  return CQ_OK;
}

cq_status cq_qgemm_run(const cq_qgemm_op *op, const uint8_t *x, int64_t m, int64_t ldx, uint8_t *y,
                       int64_t ldy, cq_threadpool *tp) {
  if (!op) return cq_fail(CQ_EINVAL, "GEMM operator is NULL");
  cq_status st = check_run(op->w, x, m, ldx, y, ldy);
  if (st != CQ_OK || m == 0) return st;
  cq_gemm_args g = {.a = x,
                    .lda = (size_t)ldx,
                    .w = op->w,
                    .offset = op->offset,
                    .rq = &op->rq,
                    .c = y,
                    .ldc = (size_t)ldy};
  run_gemm(&g, op->kern.block, (size_t)m, tp);
  return CQ_OK;
}

/* ---- dynamic op ----------------------------------------------------------------------------- */

/* The activation passes (range scan, quantization) run over row ranges on the pool when the input
 * is large enough; min/max are exact, so the result does not depend on the split. */
#define CQ_DYNAMIC_MIN_PARALLEL_ELEMS ((int64_t)1 << 16)
#define CQ_DYNAMIC_MAX_PARTS 64

typedef struct act_job {
  const cq_qgemm_kernels *kern;
  const float *x;
  size_t m, k, ldx;
  int parts; /* <= m, so every part has rows */
  float lo[CQ_DYNAMIC_MAX_PARTS], hi[CQ_DYNAMIC_MAX_PARTS];
  int nonfinite[CQ_DYNAMIC_MAX_PARTS];
  float inv_scale;
  int32_t zp;
  uint8_t *xq;
} act_job;

static void range_part(void *ctx, int thread, int64_t begin, int64_t end) {
  act_job *j = ctx;
  (void)thread;
  for (int64_t t = begin; t < end; t++) {
    int64_t r0, r1;
    cq_partition((int64_t)j->m, j->parts, (int)t, &r0, &r1);
    j->kern->range(j->x + (size_t)r0 * j->ldx, (size_t)(r1 - r0), j->k, j->ldx, &j->lo[t],
                   &j->hi[t], &j->nonfinite[t]);
  }
}

static void quantize_part(void *ctx, int thread, int64_t begin, int64_t end) {
  act_job *j = ctx;
  (void)thread;
  for (int64_t t = begin; t < end; t++) {
    int64_t r0, r1;
    cq_partition((int64_t)j->m, j->parts, (int)t, &r0, &r1);
    j->kern->quantize(j->x + (size_t)r0 * j->ldx, (size_t)(r1 - r0), j->k, j->ldx, j->inv_scale,
                      j->zp, j->xq + (size_t)r0 * j->k, j->k);
  }
}

struct cq_qgemm_dynamic {
  const cq_qgemm_packed *w;
  cq_isa isa;
  cq_qgemm_kernels kern;
  cq_requant_rule rule;
  int reduce_range;
  int relu;
  cq_requant_params rq;
  int32_t *offset;
};

cq_status cq_qgemm_dynamic_create_isa(const cq_qgemm_packed *w, cq_requant_rule rule,
                                      int reduce_range, int relu, cq_isa isa,
                                      cq_qgemm_dynamic **out) {
  if (!out) return cq_fail(CQ_EINVAL, "dynamic GEMM create: output pointer is NULL");
  *out = NULL;
  if (!w) return cq_fail(CQ_EINVAL, "dynamic GEMM create: weights are NULL");
  if ((unsigned)rule >= CQ_RULE_COUNT) {
    return cq_fail(CQ_EINVAL, "unknown engine rule %d", (int)rule);
  }
  cq_status st = check_isa(isa);
  if (st != CQ_OK) return st;
  cq_qgemm_dynamic *op = cq_calloc_for(1, sizeof *op, "dynamic GEMM operator");
  if (!op) return CQ_ENOMEM;
  op->w = w;
  op->isa = isa;
  op->kern = kernels_for(isa);
  op->rule = rule;
  op->reduce_range = reduce_range ? 1 : 0;
  op->relu = relu ? 1 : 0;
  st = cq_requant_params_create(w->n, &op->rq);
  if (st != CQ_OK) goto fail;
  op->offset = cq_malloc_for((size_t)w->panels * CQ_QGEMM_NR * sizeof(int32_t), "GEMM offsets");
  if (!op->offset) {
    st = CQ_ENOMEM;
    goto fail;
  }
  *out = op;
  return CQ_OK;
fail:
  cq_qgemm_dynamic_destroy(op);
  return st;
}

cq_status cq_qgemm_dynamic_create(const cq_qgemm_packed *w, cq_requant_rule rule, int reduce_range,
                                  int relu, cq_qgemm_dynamic **out) {
  cq_isa isa;
  cq_status st = cq_isa_active(&isa);
  if (st != CQ_OK) {
    if (out) *out = NULL;
    return st;
  }
  return cq_qgemm_dynamic_create_isa(w, rule, reduce_range, relu, isa, out);
}

void cq_qgemm_dynamic_destroy(cq_qgemm_dynamic *op) {
  if (!op) return;
  cq_requant_params_release(&op->rq);
  cq_free(op->offset);
  cq_free(op);
}

size_t cq_qgemm_dynamic_workspace_size(const cq_qgemm_dynamic *op, int64_t m) {
  if (!op || m <= 0) return 0;
  return (size_t)m * (size_t)op->w->k;
}

cq_status cq_qgemm_dynamic_run(cq_qgemm_dynamic *op, const float *x, int64_t m, int64_t ldx,
                               float *y, int64_t ldy, void *workspace, float *x_scale_out,
                               int32_t *x_zp_out, cq_threadpool *tp) {
  if (!op) return cq_fail(CQ_EINVAL, "dynamic GEMM operator is NULL");
  const cq_qgemm_packed *w = op->w;
  cq_status st = check_run(w, x, m, ldx, y, ldy);
  if (st != CQ_OK) return st;
  act_job job = {.kern = &op->kern, .x = x, .m = (size_t)m, .k = (size_t)w->k,
                 .ldx = (size_t)ldx, .parts = 1};
  if (m * w->k >= CQ_DYNAMIC_MIN_PARALLEL_ELEMS) {
    int parts = cq_threadpool_threads(tp);
    if (parts > CQ_DYNAMIC_MAX_PARTS) parts = CQ_DYNAMIC_MAX_PARTS;
    job.parts = (int64_t)parts < m ? parts : (int)m;
  }
  float lo = 0.0f, hi = 0.0f;
  if (m > 0) {
    if (!workspace) return cq_fail(CQ_EINVAL, "dynamic GEMM workspace is NULL");
    cq_parallel_for(tp, job.parts, job.parts, range_part, &job);
    lo = job.lo[0];
    hi = job.hi[0];
    for (int t = 0; t < job.parts; t++) {
      if (job.nonfinite[t]) {
        return cq_fail(CQ_EVALUE, "dynamic linear input contains NaN or infinity: no "
                       "quantization parameters exist for it");
      }
      lo = job.lo[t] < lo ? job.lo[t] : lo;
      hi = job.hi[t] > hi ? job.hi[t] : hi;
    }
  }
  /* 5.4: ChooseQuantizationParams over the whole input, [0, 255] or [0, 127] with reduce_range
   * where the engine honours it (QNNPACK ignores it) */
  const int reduce = op->reduce_range && op->rule != CQ_RULE_QNNPACK;
  double scale_d;
  int32_t zp;
  st = cq_choose_qparams(lo, hi, 0, 255, 0, 0, reduce, &scale_d, &zp);
  if (st != CQ_OK) return st;
  const float x_scale = (float)scale_d;
  if (x_scale_out) *x_scale_out = x_scale;
  if (x_zp_out) *x_zp_out = zp;
  if (m == 0) return CQ_OK;
  uint8_t *xq = workspace;
  job.inv_scale = 1.0f / x_scale;
  job.zp = zp;
  job.xq = xq;
  cq_parallel_for(tp, job.parts, job.parts, quantize_part, &job);
  st = cq_requant_params_set_dynamic(&op->rq, op->rule, x_scale, w->w_scale, w->per_channel,
                                     w->bias, op->relu);
  if (st != CQ_OK) return st;
  compute_offsets(w, zp, op->offset);
  cq_gemm_args g = {.a = xq,
                    .lda = (size_t)w->k,
                    .w = w,
                    .offset = op->offset,
                    .rq = &op->rq,
                    .c = y,
                    .ldc = (size_t)ldy};
  run_gemm(&g, op->kern.block, (size_t)m, tp);
  return CQ_OK;
}

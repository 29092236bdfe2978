/* Quantized leaky_relu, hardswish and hardsigmoid (see qops_activation_extra.h for the rules). */
#include "nn/quantized/qops_activation_extra.h"

#include <math.h>

#include "core/alloc.h"
#include "nn/module_impl.h"
#include "nn/quantized/qstatic_impl.h"
#include "quant/qmath.h"

/* ATen's cpu_kernel_vec on one-byte elements: vector blocks of 2 x 32, then a scalar tail. */
#define ATEN_VEC_BLOCK 64

typedef enum act_fn { FN_LEAKY_RELU, FN_HARDSWISH, FN_HARDSIGMOID } act_fn;

static int32_t qmin_of(cq_qdtype d) { return d == CQ_QUINT8 ? 0 : -128; }
static int32_t qmax_of(cq_qdtype d) { return d == CQ_QUINT8 ? 255 : 127; }

static int32_t load_q(const cq_tensor *x, int64_t i) {
  return x->dtype == CQ_U8 ? (int32_t)((const uint8_t *)x->data)[i]
                           : (int32_t)((const int8_t *)x->data)[i];
}

static void store_q(cq_tensor *y, int64_t i, int32_t v) {
  if (y->dtype == CQ_U8) {
    ((uint8_t *)y->data)[i] = (uint8_t)v;
  } else {
    ((int8_t *)y->data)[i] = (int8_t)v;
  }
}

/* The float function of each op, as ATen's scalar and vector bodies write it (same operations in
 * the same order in both). */
static float apply_fn(act_fn fn, float x, float slope) {
  switch (fn) {
    case FN_LEAKY_RELU:
      return x > 0.0f ? x : x * slope;
    case FN_HARDSWISH: {
      float c = x + 3.0f;
      c = c > 0.0f ? c : 0.0f;
      c = c < 6.0f ? c : 6.0f;
      return x * c / 6.0f;
    }
    default: {
      float c = x + 3.0f;
      c = c > 0.0f ? c : 0.0f;
      c = c < 6.0f ? c : 6.0f;
      return c / 6.0f;
    }
  }
}

static cq_status check_output(const cq_module *m, cq_qdtype d, float scale, int32_t zp) {
  if (!(isfinite(scale) && scale > 0.0f)) {
    return cq_qmod_fail(m, CQ_EVALUE, "output scale %g must be finite and > 0", (double)scale);
  }
  if (zp < qmin_of(d) || zp > qmax_of(d)) {
    return cq_qmod_fail(m, CQ_EVALUE, "output zero point %d is outside torch.%s's [%d, %d]",
                        (int)zp, cq_qdtype_name(d), (int)qmin_of(d), (int)qmax_of(d));
  }
  return CQ_OK;
}

/* QNNPACK's hardswish / hardsigmoid operators: a table over the 256 input values, computed in
 * float as hardswish.c / hardsigmoid.c of PyTorch's QNNPACK do (no FMA: the build disables
 * contraction), clamped to [0, 255] and rounded with lrintf. */
static void qnnpack_table(act_fn fn, float sx, int32_t zx, float sy, int32_t zy, uint8_t *table) {
  const float inv = 1.0f / sy;
  for (int32_t i = 0; i < 256; i++) {
    const float x = sx * (float)(i - zx);
    float v = inv * apply_fn(fn, x, 0.0f) + (float)zy;
    v = v < 0.0f ? 0.0f : v;
    v = v > 255.0f ? 255.0f : v;
    table[i] = (uint8_t)lrintf(v);
  }
}

/* inv_vec / inv_tail: the reciprocal of the output scale the vector body and quantize_val use. */
static cq_status run_act(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, act_fn fn,
                         float slope, float sy, int32_t zy, float inv_vec, cq_backend engine,
                         cq_qlayout layout, cq_tensor **y) {
  *y = NULL;
  cq_status st = cq_qact_check(m, x, 0);
  if (st != CQ_OK) return st;
  const cq_qdtype d = cq_qact_dtype(x);
  st = check_output(m, d, sy, zy);
  if (st == CQ_OK) st = cq_qact_new(ctx, d, x->ndim, x->shape, sy, zy, y);
  if (st != CQ_OK) return st;
  const float sx = x->qparams->scale[0];
  const int32_t zx = x->qparams->zero_point[0];
  const int64_t n = cq_tensor_numel(x);
  if (fn != FN_LEAKY_RELU && engine == CQ_BACKEND_QNNPACK && d == CQ_QUINT8) {
    uint8_t table[256];
    qnnpack_table(fn, sx, zx, sy, zy, table);
    const uint8_t *xd = x->data;
    uint8_t *yd = (*y)->data;
    for (int64_t i = 0; i < n; i++) yd[i] = table[xd[i]];
    return CQ_OK;
  }
  int64_t *order = cq_malloc_for(sizeof(int64_t) * (size_t)(n ? n : 1), "a memory-order index");
  if (!order) return CQ_ENOMEM;
  cq_qmod_memory_order(x, layout, order);
  const int64_t body = n - n % ATEN_VEC_BLOCK;
  const float premul = sx * -(float)zx;
  const float inv_tail = 1.0f / sy; /* quantize_val: 1.0f / float(scale) */
  const int32_t lo = qmin_of(d), hi = qmax_of(d);
  for (int64_t k = 0; k < n; k++) {
    const int64_t i = order[k];
    const int32_t q = load_q(x, i);
    const int vec = k < body;
    const float dx = vec ? fmaf(sx, (float)q, premul) : ((float)q - (float)zx) * sx;
    const float v = apply_fn(fn, dx, slope);
    store_q(*y, i, cq_quantize_val(v, vec ? inv_vec : inv_tail, zy, lo, hi));
  }
  cq_free(order);
  return CQ_OK;
}

cq_status cq_qop_leaky_relu(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                            float negative_slope, float scale, int32_t zero_point,
                            cq_qlayout layout, cq_tensor **y) {
  /* leaky_qrelu_out_kernel: o_inv_scale = 1.0f / o_scale in float */
  return run_act(m, ctx, x, FN_LEAKY_RELU, negative_slope, scale, zero_point, 1.0f / scale,
                 CQ_BACKEND_X86, layout, y);
}

cq_status cq_qop_hardswish(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, float scale,
                           int32_t zero_point, cq_backend engine, cq_qlayout layout,
                           cq_tensor **y) {
  /* qhardswish_kernel: o_inv_scale = 1.0 / o_scale computed in double (q_scale() is a double) */
  return run_act(m, ctx, x, FN_HARDSWISH, 0.0f, scale, zero_point,
                 (float)(1.0 / (double)scale), engine, layout, y);
}

cq_status cq_qop_hardsigmoid(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                             cq_backend engine, cq_qlayout layout, cq_tensor **y) {
  *y = NULL;
  cq_status st = cq_qact_check(m, x, 0);
  if (st != CQ_OK) return st;
  const int32_t zp = cq_qact_dtype(x) == CQ_QINT8 ? -128 : 0;
  return run_act(m, ctx, x, FN_HARDSIGMOID, 0.0f, 0.00390625f, zp, 256.0f, engine, layout, y);
}

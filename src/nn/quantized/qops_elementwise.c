/* Elementwise quantized ops: relu, clamp (hardtanh / relu6), sigmoid, tanh, add, add_relu, mul,
 * and cat, each with the arithmetic of the PyTorch 1.13 kernel the engine selects (see qops.h).
 *
 * ATen's elementwise kernels (cpu_kernel_vec) run a vector body over blocks of 2 x 32 one-byte
 * elements (AVX2, the capability of Debian's build) and a scalar loop over the last n % 64
 * elements in memory order; where the two round differently (dequantization with or without an
 * FMA, float or double in sigmoid), the element's position decides, as in PyTorch. The vector
 * bodies' exp/tanh are SLEEF's (within 1 ulp of the correctly rounded value); cquant uses libm's
 * expf/tanhf there, which can differ by one quantization step on exact ties only.
 *
 * relu, clamp, add and cat's requantization run the kernels of src/kernels/qelementwise (vector
 * forms per instruction set, chosen by cq_isa_active; every form gives the same bytes). */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/cpu.h"
#include "core/threadpool.h"
#include "cquant/quantize.h"
#include "kernels/qelementwise/qelementwise.h"
#include "nn/binary_ops.h"
#include "nn/module_impl.h"
#include "nn/quantized/qops.h"
#include "nn/quantized/qstatic_impl.h"
#include "quant/qmath.h"

/* Elements handled by ATen's vector body for n contiguous one-byte elements (2 x 32 per step). */
#define ATEN_VEC_BLOCK 64
static int64_t vector_body(int64_t n) { return n - n % ATEN_VEC_BLOCK; }

static int64_t qmin_of(cq_qdtype d) { return d == CQ_QUINT8 ? 0 : -128; }
static int64_t qmax_of(cq_qdtype d) { return d == CQ_QUINT8 ? 255 : 127; }

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

static float act_scale(const cq_tensor *x) { return x->qparams->scale[0]; }
static int32_t act_zp(const cq_tensor *x) { return x->qparams->zero_point[0]; }

/* quantize_val / the vector Quantize: clamp(zp + rne(v * inv_scale)) with the zero point added in
 * float (exact for these magnitudes); NaN and out-of-range give the dtype minimum as on x86. */
static int32_t quantize_one(float v, float inv_scale, int32_t zp, cq_qdtype d) {
  return cq_quantize_val(v, inv_scale, zp, (int32_t)qmin_of(d), (int32_t)qmax_of(d));
}

static cq_status same_shape(const cq_module *m, const cq_tensor *a, const cq_tensor *b) {
  int same = a->ndim == b->ndim;
  for (int i = 0; same && i < a->ndim; i++) same = a->shape[i] == b->shape[i];
  if (!same) {
    char sa[128], sb[128];
    return cq_qmod_fail(m, CQ_ESHAPE, "quantized inputs of shapes %s and %s differ (broadcasting "
                        "is not supported)", cq_shape_str(a->ndim, a->shape, sa, sizeof sa),
                        cq_shape_str(b->ndim, b->shape, sb, sizeof sb));
  }
  if (a->dtype != b->dtype) {
    return cq_qmod_fail(m, CQ_EINVAL, "quantized inputs must have the same dtype (torch.%s and "
                        "torch.%s)", cq_qdtype_name(cq_qact_dtype(a)),
                        cq_qdtype_name(cq_qact_dtype(b)));
  }
  return CQ_OK;
}

static cq_status check_out_qparams(const cq_module *m, cq_qdtype d, float scale, int32_t zp) {
  if (!(isfinite(scale) && scale > 0.0f)) {
    return cq_qmod_fail(m, CQ_EVALUE, "output scale %g must be finite and > 0", (double)scale);
  }
  if (zp < qmin_of(d) || zp > qmax_of(d)) {
    return cq_qmod_fail(m, CQ_EVALUE, "output zero point %d is outside torch.%s's [%d, %d]",
                        (int)zp, cq_qdtype_name(d), (int)qmin_of(d), (int)qmax_of(d));
  }
  return CQ_OK;
}

/* --- relu, clamp -------------------------------------------------------------------------------- */

static cq_status same_qparams_output(cq_ctx *ctx, const cq_tensor *x, cq_tensor **y) {
  return cq_qact_new(ctx, cq_qact_dtype(x), x->ndim, x->shape, act_scale(x), act_zp(x), y);
}

static cq_status active_kernels(const cq_module *m, const cq_qelementwise_kernels **k) {
  cq_isa isa;
  cq_status st = cq_isa_active(&isa);
  if (st != CQ_OK) return cq_qmod_fail(m, st, "%s", cq_last_error());
  *k = cq_qelementwise_kernels_for(isa);
  return CQ_OK;
}

static cq_status clamp_ints(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, int32_t lo,
                            int32_t hi, cq_tensor **y) {
  const cq_qelementwise_kernels *k = NULL;
  cq_status st = cq_qact_check(m, x, 0);
  if (st == CQ_OK) st = active_kernels(m, &k);
  if (st == CQ_OK) st = same_qparams_output(ctx, x, y);
  if (st != CQ_OK) return st;
  /* elementwise: the output keeps the input's memory order (a channels-last input stays so) */
  (*y)->channels_last = x->channels_last;
  /* lo and hi lie in the dtype's range (a zero point, or quantized values) */
  const size_t n = (size_t)cq_tensor_numel(x);
  if (n == 0) return CQ_OK;
  if (x->dtype == CQ_U8) {
    k->qu8_vclamp(n, x->data, (uint8_t)lo, (uint8_t)hi, (*y)->data);
  } else {
    k->qs8_vclamp(n, x->data, (int8_t)lo, (int8_t)hi, (*y)->data);
  }
  return CQ_OK;
}

cq_status cq_qop_relu(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, cq_tensor **y) {
  *y = NULL;
  cq_status st = cq_qact_check(m, x, 0);
  if (st != CQ_OK) return st;
  return clamp_ints(m, ctx, x, act_zp(x), (int32_t)qmax_of(cq_qact_dtype(x)), y);
}

/* qclamp / qnnpack_clamp: both bounds quantized with the input's qparams (also what a clamp
 * folded into a conv uses, cq_qop_clamp_bounds) */
static void clamp_bounds(float lo, float hi, float scale, int32_t zp, cq_qdtype d, int32_t *qlo,
                         int32_t *qhi) {
  const float inv = 1.0f / scale;
  *qlo = quantize_one(lo, inv, zp, d);
  *qhi = quantize_one(hi, inv, zp, d);
}

cq_status cq_qop_clamp(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, float lo, float hi,
                       cq_tensor **y) {
  *y = NULL;
  cq_status st = cq_qact_check(m, x, 0);
  if (st != CQ_OK) return st;
  int32_t qlo, qhi;
  clamp_bounds(lo, hi, act_scale(x), act_zp(x), cq_qact_dtype(x), &qlo, &qhi);
  return clamp_ints(m, ctx, x, qlo, qhi, y);
}

void cq_qop_clamp_bounds(float lo, float hi, float scale, int32_t zp, int32_t *qlo, int32_t *qhi) {
  clamp_bounds(lo, hi, scale, zp, CQ_QUINT8, qlo, qhi);
}

/* --- sigmoid, tanh ------------------------------------------------------------------------------ */

/* QNNPACK's 256-entry lookup tables (sigmoid.c, tanh.c of PyTorch's QNNPACK). */
static void qnnpack_sigmoid_table(float sx, int32_t zx, uint8_t *table) {
  for (int32_t i = 0; i < 256; i++) {
    const float x = sx * (float)(i - zx);
    float v = 256.0f / (1.0f + expf(-x));
    v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
    table[i] = (uint8_t)lrintf(v);
  }
}

static void qnnpack_tanh_table(float sx, int32_t zx, uint8_t *table) {
  for (int32_t i = 0; i < 256; i++) {
    const float x = sx * (float)(i - zx);
    float v = (float)(128.0 * tanh((double)x) + 128.0);
    v = v < 0.0f ? 0.0f : (v > 255.0f ? 255.0f : v);
    table[i] = (uint8_t)lrintf(v);
  }
}

static cq_status lut_apply(const cq_tensor *x, const uint8_t *table, cq_tensor *y) {
  const int64_t n = cq_tensor_numel(x);
  const uint8_t *xd = x->data;
  uint8_t *yd = y->data;
  for (int64_t i = 0; i < n; i++) yd[i] = table[xd[i]];
  return CQ_OK;
}

typedef enum { FN_SIGMOID, FN_TANH } fixed_fn;

static cq_status fixed_qparams_op(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                                  cq_backend engine, cq_qlayout layout, fixed_fn fn,
                                  cq_tensor **y) {
  *y = NULL;
  cq_status st = cq_qact_check(m, x, 0);
  if (st != CQ_OK) return st;
  const cq_qdtype d = cq_qact_dtype(x);
  const float out_scale = fn == FN_SIGMOID ? 0.00390625f : 0.0078125f;
  int32_t out_zp;
  if (fn == FN_SIGMOID) {
    out_zp = d == CQ_QINT8 ? -128 : 0;
  } else {
    out_zp = d == CQ_QUINT8 ? 128 : 0;
  }
  st = cq_qact_new(ctx, d, x->ndim, x->shape, out_scale, out_zp, y);
  if (st != CQ_OK) return st;
  const float sx = act_scale(x);
  const int32_t zx = act_zp(x);
  if (engine == CQ_BACKEND_QNNPACK && d == CQ_QUINT8) {
    uint8_t table[256];
    if (fn == FN_SIGMOID) {
      qnnpack_sigmoid_table(sx, zx, table);
    } else {
      qnnpack_tanh_table(sx, zx, table);
    }
    return lut_apply(x, table, *y);
  }
  /* ATen's qsigmoid / qtanh kernels */
  const int64_t n = cq_tensor_numel(x);
  int64_t *order = cq_malloc_for(sizeof(int64_t) * (size_t)(n ? n : 1), "a memory-order index");
  if (!order) return CQ_ENOMEM;
  cq_qmod_memory_order(x, layout, order);
  const int64_t body = vector_body(n);
  const float inv_out = (float)(1.0 / (double)out_scale);
  const float premul = sx * -(float)zx;
  for (int64_t k = 0; k < n; k++) {
    const int64_t i = order[k];
    const int32_t q = load_q(x, i);
    float v;
    if (fn == FN_SIGMOID) {
      const float dx = ((float)q - (float)zx) * sx;
      if (k < body) {
        v = 1.0f / (1.0f + expf(-dx));
      } else {
        v = (float)(1.0 / (1.0 + (double)expf(-dx)));
      }
    } else {
      const float dx = k < body ? fmaf(sx, (float)q, premul) : ((float)q - (float)zx) * sx;
      v = tanhf(dx);
    }
    store_q(*y, i, quantize_one(v, inv_out, out_zp, d));
  }
  cq_free(order);
  return CQ_OK;
}

cq_status cq_qop_sigmoid(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, cq_backend engine,
                         cq_qlayout layout, cq_tensor **y) {
  return fixed_qparams_op(m, ctx, x, engine, layout, FN_SIGMOID, y);
}

cq_status cq_qop_tanh(const cq_module *m, cq_ctx *ctx, const cq_tensor *x, cq_backend engine,
                      cq_qlayout layout, cq_tensor **y) {
  return fixed_qparams_op(m, ctx, x, engine, layout, FN_TANH, y);
}

/* --- add ---------------------------------------------------------------------------------------- */

static void add_run(const cq_qelementwise_kernels *k, int s8, int64_t n, int64_t fused,
                    const void *a, const void *b, const cq_qadd_aten_params *p, void *y) {
  if (s8) {
    k->qs8_vadd_aten((size_t)n, (size_t)fused, a, b, p, y);
  } else {
    k->qu8_vadd_aten((size_t)n, (size_t)fused, a, b, p, y);
  }
}

/* An add over contiguous bytes, split between the threads in ATen's 64-element blocks: each
 * element is computed as on one thread (the same form: fused below `fused`, plain from there). */
typedef struct add_job {
  const cq_qelementwise_kernels *k;
  const cq_qadd_qnnpack_params *qnnpack; /* QNNPACK's add, or NULL: ATen's with `aten` */
  const cq_qadd_aten_params *aten;
  int s8;
  int64_t n, fused;
  const uint8_t *a, *b;
  uint8_t *y;
} add_job;

/* Below this many elements an add stays on the calling thread (~4 us of work). */
#define ADD_MIN_PARALLEL 32768

static void add_part(void *ctx, int t, int64_t begin, int64_t end) {
  (void)t;
  const add_job *j = ctx;
  const int64_t e0 = begin * ATEN_VEC_BLOCK;
  const int64_t e1 = end * ATEN_VEC_BLOCK < j->n ? end * ATEN_VEC_BLOCK : j->n;
  if (j->qnnpack) {
    j->k->qu8_vadd_qnnpack((size_t)(e1 - e0), j->a + e0, j->b + e0, j->qnnpack, j->y + e0);
    return;
  }
  const int64_t fused = j->fused <= e0 ? 0 : (j->fused < e1 ? j->fused : e1) - e0;
  add_run(j->k, j->s8, e1 - e0, fused, j->a + e0, j->b + e0, j->aten, j->y + e0);
}

static void add_parallel(add_job *j, int64_t n, int64_t fused) {
  if (n == 0) return;
  j->n = n;
  j->fused = fused;
  cq_parallel_for(n >= ADD_MIN_PARALLEL ? cq_default_threadpool() : NULL,
                  (n + ATEN_VEC_BLOCK - 1) / ATEN_VEC_BLOCK, 0, add_part, j);
}

/* PyTorch QNNPACK's q8vadd: fixed-point multipliers with a common shift, rounding right shift with
 * ties away from zero, int16 saturation, then the output zero point and clamp. */
static cq_status qnnpack_add(const cq_module *m, const cq_qelementwise_kernels *k,
                             const cq_tensor *a, const cq_tensor *b, float scale, int32_t zp,
                             int relu, cq_tensor *y) {
  const float ra = act_scale(a) / scale, rb = act_scale(b) / scale;
  if (!(ra >= 0x1.0p-14f && ra < 0x1.0p+8f) || !(rb >= 0x1.0p-14f && rb < 0x1.0p+8f)) {
    return cq_qmod_fail(m, CQ_EVALUE, "QNNPACK add: input-to-output scale ratios %g and %g must "
                        "be in [2**-14, 2**8)", (double)ra, (double)rb);
  }
  cq_qadd_qnnpack_params p;
  cq_qadd_qnnpack_params_init(ra, rb, act_zp(a), act_zp(b), zp, relu, &p);
  add_job j = {.k = k, .qnnpack = &p, .a = a->data, .b = b->data, .y = y->data};
  add_parallel(&j, cq_tensor_numel(a), 0);
  return CQ_OK;
}

/* The logical (NCHW) index of the element at position k of the channels-last memory order. */
static int64_t nhwc_to_logical(const int64_t *shape, int64_t k) {
  const int64_t C = shape[1], H = shape[2], W = shape[3];
  const int64_t c = k % C, w = k / C % W, h = k / C / W % H, n = k / C / W / H;
  return ((n * C + c) * H + h) * W + w;
}

cq_status cq_qop_add(const cq_module *m, cq_ctx *ctx, const cq_tensor *a, const cq_tensor *b,
                     float scale, int32_t zero_point, int relu, cq_backend engine,
                     cq_qlayout layout, cq_tensor **y) {
  *y = NULL;
  const cq_qelementwise_kernels *k = NULL;
  cq_status st = cq_qact_check(m, a, 0);
  if (st == CQ_OK) st = cq_qact_check(m, b, 1);
  if (st == CQ_OK) st = same_shape(m, a, b);
  /* channels-last inputs: both stored [N, H, W, C] with NHWC semantics, the output too (memory
   * order is then the order ATen's kernel walks); anything else runs on contiguous copies */
  if (st == CQ_OK && (a->channels_last || b->channels_last) &&
      (a->channels_last != b->channels_last || layout != CQ_QLAYOUT_NHWC)) {
    st = cq_ctx_contiguous(ctx, (cq_tensor *)a, (cq_tensor **)&a);
    if (st == CQ_OK) st = cq_ctx_contiguous(ctx, (cq_tensor *)b, (cq_tensor **)&b);
  }
  const int stored_nhwc = a->channels_last;
  const cq_qdtype d = cq_qact_dtype(a);
  if (st == CQ_OK) st = check_out_qparams(m, d, scale, zero_point);
  if (st == CQ_OK) st = active_kernels(m, &k);
  if (st == CQ_OK) st = cq_qact_new(ctx, d, a->ndim, a->shape, scale, zero_point, y);
  if (st != CQ_OK) return st;
  (*y)->channels_last = stored_nhwc;
  if (engine == CQ_BACKEND_QNNPACK && d == CQ_QUINT8) {
    return qnnpack_add(m, k, a, b, scale, zero_point, relu, *y);
  }
  /* ATen's qadd kernel: dequantize (FMA with the premultiplied zero point in the vector body),
   * add in float, optional relu, quantize with ties to even */
  cq_qadd_aten_params p;
  cq_qdequant_params_init(act_scale(a), act_zp(a), &p.a);
  cq_qdequant_params_init(act_scale(b), act_zp(b), &p.b);
  p.y.inv_scale = 1.0f / scale;
  p.y.zp = zero_point;
  p.y.y_min = (int32_t)qmin_of(d);
  p.y.y_max = (int32_t)qmax_of(d);
  p.relu = relu;
  const int s8 = d == CQ_QINT8;
  const int64_t n = cq_tensor_numel(a);
  const int64_t body = vector_body(n);
  if (n == 0) return CQ_OK;
  add_job j = {.k = k, .aten = &p, .s8 = s8, .a = a->data, .b = b->data, .y = (*y)->data};
  if (layout != CQ_QLAYOUT_NHWC || a->ndim != 4 || stored_nhwc) {
    add_parallel(&j, n, body);
    return CQ_OK;
  }
  /* channels-last: the scalar tail is the last n % 64 elements in NHWC order, scattered through
   * the NCHW storage; every element is computed the vector body's way, then those again */
  add_parallel(&j, n, n);
  const char *ad = a->data, *bd = b->data;
  char *yd = (*y)->data;
  for (int64_t j = body; j < n; j++) {
    const int64_t i = nhwc_to_logical(a->shape, j);
    add_run(k, s8, 1, 0, ad + i, bd + i, &p, yd + i);
  }
  return CQ_OK;
}

/* --- mul ---------------------------------------------------------------------------------------- */

cq_status cq_qop_mul(const cq_module *m, cq_ctx *ctx, const cq_tensor *a, const cq_tensor *b,
                     float scale, int32_t zero_point, int relu, cq_tensor **y) {
  *y = NULL;
  cq_status st = cq_qact_check(m, a, 0);
  if (st == CQ_OK) st = cq_qact_check(m, b, 1);
  /* quantized::mul broadcasts as torch.mul (the arithmetic does not depend on the position) */
  cq_broadcast bc;
  if (st == CQ_OK) {
    st = cq_broadcast_shapes(m, "mul", a->ndim, a->shape, b->ndim, b->shape, &bc);
  }
  if (st == CQ_OK && a->dtype != b->dtype) {
    st = cq_qmod_fail(m, CQ_EINVAL, "quantized inputs must have the same dtype (torch.%s and "
                      "torch.%s)", cq_qdtype_name(cq_qact_dtype(a)),
                      cq_qdtype_name(cq_qact_dtype(b)));
  }
  const cq_qdtype d = cq_qact_dtype(a);
  if (st == CQ_OK) st = check_out_qparams(m, d, scale, zero_point);
  if (st == CQ_OK) st = cq_qact_new(ctx, d, bc.ndim, bc.shape, scale, zero_point, y);
  if (st != CQ_OK) return st;
  /* qmul_kernel: requantize_from_int(multiplier, zp, (qa - za)(qb - zb)) */
  const float inv = 1.0f / scale;
  const float mult = act_scale(a) * act_scale(b) * inv;
  const int32_t za = act_zp(a), zb = act_zp(b);
  const int64_t lo = relu ? zero_point : qmin_of(d), hi = qmax_of(d);
  cq_broadcast_iter it;
  cq_broadcast_iter_init(&it, &bc);
  for (int64_t i = 0; i < bc.numel; i++, cq_broadcast_iter_next(&it)) {
    const int32_t c = (load_q(a, it.oa) - za) * (load_q(b, it.ob) - zb);
    int64_t v = (int64_t)zero_point + (int64_t)lrintf((float)c * mult);
    v = v < lo ? lo : (v > hi ? hi : v);
    store_q(*y, i, (int32_t)v);
  }
  return CQ_OK;
}

/* --- cat ---------------------------------------------------------------------------------------- */

cq_status cq_qop_cat(const cq_module *m, cq_ctx *ctx, int n, cq_tensor *const *in, int dim,
                     float scale, int32_t zero_point, cq_qlayout layout, cq_tensor **y) {
  *y = NULL;
  if (n < 1) return cq_qmod_fail(m, CQ_EINVAL, "cat needs at least one tensor");
  for (int k = 0; k < n; k++) {
    cq_status st = cq_qact_check(m, in[k], k);
    if (st != CQ_OK) return st;
  }
  const cq_tensor *x0 = in[0];
  const cq_qdtype d = cq_qact_dtype(x0);
  cq_status st = check_out_qparams(m, d, scale, zero_point);
  if (st != CQ_OK) return st;
  if (x0->ndim == 0) {
    return cq_qmod_fail(m, CQ_ESHAPE, "cat: zero-dimensional tensor (input 0) cannot be "
                        "concatenated");
  }
  const int nd = x0->ndim;
  const int dd = dim < 0 ? dim + nd : dim;
  if (dd < 0 || dd >= nd) {
    return cq_qmod_fail(m, CQ_ESHAPE, "Dimension out of range (expected to be in range of [%d, "
                        "%d], but got %d)", -nd, nd - 1, dim);
  }
  int64_t shape[CQ_MAX_DIMS];
  memcpy(shape, x0->shape, sizeof(int64_t) * (size_t)nd);
  shape[dd] = 0;
  for (int k = 0; k < n; k++) {
    const cq_tensor *t = in[k];
    if (t->ndim != nd) {
      return cq_qmod_fail(m, CQ_ESHAPE, "cat: tensors must have same number of dimensions: got "
                          "%d and %d", nd, t->ndim);
    }
    if (t->dtype != x0->dtype) {
      return cq_qmod_fail(m, CQ_EINVAL, "cat: All dtypes must be the same (input %d)", k);
    }
    for (int i = 0; i < nd; i++) {
      if (i != dd && t->shape[i] != x0->shape[i]) {
        return cq_qmod_fail(m, CQ_ESHAPE, "cat: sizes of tensors must match except in dimension "
                            "%d. Expected size %lld but got size %lld for tensor number %d in the "
                            "list", dd, (long long)x0->shape[i], (long long)t->shape[i], k);
      }
    }
    shape[dd] += t->shape[dd];
  }
  const cq_qelementwise_kernels *k = NULL;
  st = active_kernels(m, &k);
  if (st == CQ_OK) st = cq_qact_new(ctx, d, nd, shape, scale, zero_point, y);
  if (st != CQ_OK) return st;
  cq_qquant_params q;
  q.inv_scale = (float)(1.0 / (double)scale);
  q.zp = zero_point;
  q.y_min = (int32_t)qmin_of(d);
  q.y_max = (int32_t)qmax_of(d);
  int64_t outer = 1, inner = 1;
  for (int i = 0; i < dd; i++) outer *= shape[i];
  for (int i = dd + 1; i < nd; i++) inner *= shape[i];
  const int64_t row = shape[dd] * inner;
  /* qcat_nhwc_kernel (dim 1 of channels-last 4-D tensors): inputs already in (scale, zp) are
   * copied; the others go through the vector body (FMA dequantization) on blocks of 32
   * channels, then on one block of 8..31 channels, and the last channels % 8 plainly. Other
   * cases dequantize every element plainly (Tensor.dequantize, then quantize_per_tensor). */
  const int nhwc = layout == CQ_QLAYOUT_NHWC && nd == 4 && dd == 1;
  const int s8 = d == CQ_QINT8;
  int64_t offset = 0;
  for (int j = 0; j < n; j++) {
    const cq_tensor *t = in[j];
    cq_qdequant_params dq;
    cq_qdequant_params_init(act_scale(t), act_zp(t), &dq);
    const int64_t chunk = t->shape[dd] * inner;
    const int same = act_scale(t) == scale && act_zp(t) == zero_point;
    const int64_t ck = t->shape[dd];
    int64_t vec_channels = ck / 32 * 32;
    if (ck - vec_channels >= 8) vec_channels += (ck - vec_channels) / 8 * 8;
    const size_t fused = nhwc ? (size_t)(vec_channels * inner) : 0;
    for (int64_t o = 0; chunk > 0 && o < outer; o++) {
      const char *src = (const char *)t->data + o * chunk;
      char *dst = (char *)(*y)->data + o * row + offset;
      if (nhwc && same) {
        memcpy(dst, src, (size_t)chunk);
      } else if (s8) {
        k->qs8_vrequant((size_t)chunk, fused, (const int8_t *)src, &dq, &q, (int8_t *)dst);
      } else {
        k->qu8_vrequant((size_t)chunk, fused, (const uint8_t *)src, &dq, &q, (uint8_t *)dst);
      }
    }
    offset += chunk;
  }
  return CQ_OK;
}

/* --- unconverted float modules -------------------------------------------------------------------- */

cq_status cq_qop_float_functional(const cq_module *m, cq_ctx *ctx, int is_cat, int dim, int n,
                                  cq_tensor *const *in, cq_tensor **y) {
  *y = NULL;
  if (!is_cat) {
    return cq_qmod_fail(m, CQ_EUNSUPPORTED, "add of quantized tensors needs output qparams: "
                        "convert the FloatFunctional to a QFunctional (prepare + convert) first");
  }
  for (int k = 0; k < n; k++) {
    cq_status st = cq_qact_check(m, in[k], k);
    if (st != CQ_OK) return st;
  }
  const float scale = act_scale(in[0]);
  const int32_t zp = act_zp(in[0]);
  for (int k = 1; k < n; k++) {
    if (act_scale(in[k]) != scale || act_zp(in[k]) != zp) {
      cq_warn("All inputs of this cat operator must share the same quantization parameters. "
              "Otherwise large numerical inaccuracies may occur.");
      break;
    }
  }
  return cq_qop_cat(m, ctx, n, in, dim, scale, zp, CQ_QLAYOUT_DEFAULT, y);
}

cq_status cq_qop_dropout(const cq_module *m, cq_tensor *x, int training, float p, cq_tensor **y) {
  *y = NULL;
  cq_status st = cq_qact_check(m, x, 0);
  if (st != CQ_OK) return st;
  if (training && p != 0.0f) {
    return cq_qmod_fail(m, CQ_EUNSUPPORTED, "dropout of a quantized tensor in training mode is "
                        "not supported (PyTorch has no quantized bernoulli); call eval() first");
  }
  *y = x;
  return CQ_OK;
}

/* Quantized pooling: max_pool2d, avg_pool2d and adaptive_avg_pool2d with the arithmetic of each
 * PyTorch 1.13 kernel (torch-1.13-semantics.md 5.7):
 *
 *   max_pool2d      max of the integers over the in-bounds window (dilation, ceil_mode), the
 *                   input's qparams
 *     QNNPACK       (engine QNNPACK, quint8, no ceil_mode) the window's taps clamped into the
 *                   image (QNNPACK's indirection buffer), which only differs with dilation > 1
 *                   and padding
 *   avg_pool2d      acc = sum(q) - size * zp over the in-bounds part of the window (size elements)
 *     QNNPACK       (engine QNNPACK, quint8, no ceil_mode) divisor kh * kw always:
 *                   y = rne(f32(acc) * f32(s / f32(s * kh * kw))) + zp
 *     native NCHW   y = rne(f32(f32(acc) * m) + zp), m = f32(1 / divisor)
 *     native NHWC   y = rne(f32(acc) * m) + zp
 *                   divisor = divisor_override, else the window clipped to the padded input
 *                   (count_include_pad) or size
 *   adaptive_avg_pool2d  windows [floor(i H / oh), ceil((i + 1) H / oh)) computed in float
 *     QNNPACK       (engine QNNPACK, quint8, H % oh == 0 and W % ow == 0, not the identity) the
 *                   QNNPACK avg pool with kernel = stride = (H / oh, W / ow)
 *     native NCHW   y = rne(f32(f32(f32(sum(q)) * f32(1 / kh)) * f32(1 / kw)))
 *     native NHWC   y = rne(f32(acc) * f32(1 / f32(1 / m))) + zp, m = f32(1 / n)
 * Results are clamped to the dtype range; outputs keep the input's qparams. The loops are the
 * kernels of src/kernels/qpool (vector forms per instruction set, chosen by cq_isa_active). */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/cpu.h"
#include "kernels/qpool/qpool.h"
#include "nn/module_impl.h"
#include "nn/quantized/qops.h"
#include "nn/quantized/qstatic_impl.h"

typedef struct plane_plan {
  int64_t planes, in_h, in_w, out_h, out_w, channels;
} plane_plan;

static cq_status pool_input(const cq_module *m, const cq_tensor *x, plane_plan *pl) {
  cq_status st = cq_qact_check(m, x, 0);
  if (st != CQ_OK) return st;
  char s[128];
  if (x->ndim != 3 && x->ndim != 4) {
    return cq_qmod_fail(m, CQ_ESHAPE, "expected a 3D (unbatched) or 4D (batched) input, but got "
                        "input of size %s", cq_shape_str(x->ndim, x->shape, s, sizeof s));
  }
  for (int d = x->ndim - 3; d < x->ndim; d++) {
    if (x->shape[d] <= 0) {
      return cq_qmod_fail(m, CQ_ESHAPE, "expected input with non-zero sizes for the non-batch "
                          "dimensions, but got input of size %s",
                          cq_shape_str(x->ndim, x->shape, s, sizeof s));
    }
  }
  pl->channels = x->shape[x->ndim - 3];
  pl->planes = pl->channels * (x->ndim == 4 ? x->shape[0] : 1);
  pl->in_h = x->shape[x->ndim - 2];
  pl->in_w = x->shape[x->ndim - 1];
  return CQ_OK;
}

static int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) q--;
  return q;
}

/* ATen's pooling_output_shape. */
static int64_t pool_out_size(int64_t in, int64_t kernel, int64_t pad, int64_t stride,
                             int64_t dilation, int ceil_mode) {
  int64_t out =
      floor_div(in + 2 * pad - dilation * (kernel - 1) - 1 + (ceil_mode ? stride - 1 : 0), stride) +
      1;
  if (ceil_mode && (out - 1) * stride >= in + pad) out--;
  return out;
}

static cq_status pool_geometry(const cq_module *m, const cq_tensor *x, const cq_qpool2d *p,
                               plane_plan *pl) {
  cq_status st = pool_input(m, x, pl);
  if (st != CQ_OK) return st;
  for (int d = 0; d < 2; d++) {
    if (p->kernel[d] < 1 || p->stride[d] < 1 || p->padding[d] < 0 || p->dilation[d] < 1) {
      return cq_qmod_fail(m, CQ_EINVAL, "invalid pooling geometry (kernel %lld, stride %lld, "
                          "padding %lld, dilation %lld)", (long long)p->kernel[d],
                          (long long)p->stride[d], (long long)p->padding[d],
                          (long long)p->dilation[d]);
    }
  }
  pl->out_h = pool_out_size(pl->in_h, p->kernel[0], p->padding[0], p->stride[0], p->dilation[0],
                            p->ceil_mode);
  pl->out_w = pool_out_size(pl->in_w, p->kernel[1], p->padding[1], p->stride[1], p->dilation[1],
                            p->ceil_mode);
  if (pl->out_h < 1 || pl->out_w < 1) {
    return cq_qmod_fail(m, CQ_ESHAPE, "given input size (%lldx%lld), the calculated output size "
                        "is (%lldx%lld): too small", (long long)pl->in_h, (long long)pl->in_w,
                        (long long)pl->out_h, (long long)pl->out_w);
  }
  return CQ_OK;
}

static cq_status pool_output(cq_ctx *ctx, const cq_tensor *x, int64_t out_h, int64_t out_w,
                             cq_tensor **y) {
  int64_t shape[4];
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
  shape[x->ndim - 2] = out_h;
  shape[x->ndim - 1] = out_w;
  return cq_qact_new(ctx, cq_qact_dtype(x), x->ndim, shape, x->qparams->scale[0],
                     x->qparams->zero_point[0], y);
}

/* --- kernels ----------------------------------------------------------------------------------- */

/* Scratch rows of the kernels up to this size live on the stack. */
#define STACK_SCRATCH 4096

static cq_status active_isa(const cq_module *m, cq_isa *isa) {
  cq_status st = cq_isa_active(isa);
  if (st != CQ_OK) return cq_qmod_fail(m, st, "%s", cq_last_error());
  return CQ_OK;
}

static void kernel_geometry(const plane_plan *pl, const cq_qpool2d *p, cq_qpool2d_geom *g) {
  g->in_h = pl->in_h;
  g->in_w = pl->in_w;
  g->out_h = pl->out_h;
  g->out_w = pl->out_w;
  for (int d = 0; d < 2; d++) {
    g->kernel[d] = p->kernel[d];
    g->stride[d] = p->stride[d];
    g->padding[d] = p->padding[d];
    g->dilation[d] = p->dilation[d];
  }
}

/* Scratch of `bytes`: the caller's stack buffer when it fits, else the heap (*heap to free). */
static void *scratch_for(size_t bytes, void *stack, void **heap) {
  *heap = NULL;
  if (bytes <= STACK_SCRATCH) return stack;
  *heap = cq_malloc_for(bytes, "pooling rows");
  return *heap;
}

/* --- max_pool2d --------------------------------------------------------------------------------- */

cq_status cq_qop_maxpool2d(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                           const cq_qpool2d *p, cq_backend engine, cq_tensor **y) {
  *y = NULL;
  plane_plan pl;
  cq_isa isa;
  cq_status st = pool_geometry(m, x, p, &pl);
  if (st == CQ_OK) st = active_isa(m, &isa);
  if (st == CQ_OK) st = pool_output(ctx, x, pl.out_h, pl.out_w, y);
  if (st != CQ_OK) return st;
  cq_qpool2d_geom g;
  kernel_geometry(&pl, p, &g);
  /* QNNPACK's kernel (engine QNNPACK, quint8, no ceil_mode) clamps its taps into the image */
  const int clamp_taps = engine == CQ_BACKEND_QNNPACK && x->dtype == CQ_U8 && !p->ceil_mode;
  if (x->channels_last) { /* [N, H, W, C] in, the same layout out (channels in the lanes) */
    if (x->ndim != 4 || x->dtype != CQ_U8) {
      return cq_qmod_fail(m, CQ_EINVAL, "a channels-last input must be a 4-D quint8 tensor");
    }
    cq_qu8_maxpool2d_nhwc(isa, clamp_taps, (size_t)x->shape[0], (size_t)x->shape[1], &g, x->data,
                          (*y)->data);
    (*y)->channels_last = 1;
    return CQ_OK;
  }
  _Alignas(64) uint8_t stack[STACK_SCRATCH];
  void *heap;
  void *scratch = scratch_for(cq_qpool_max2d_scratch(&g), stack, &heap);
  if (!scratch) return CQ_ENOMEM;
  if (x->dtype == CQ_U8) {
    cq_qu8_maxpool2d_nchw(isa, clamp_taps, (size_t)pl.planes, &g, x->data, (*y)->data, scratch);
  } else {
    cq_qs8_maxpool2d_nchw(isa, clamp_taps, (size_t)pl.planes, &g, x->data, (*y)->data, scratch);
  }
  cq_free(heap);
  return CQ_OK;
}

/* --- avg_pool2d --------------------------------------------------------------------------------- */

/* QNNPACK's average pooling (kernel kh x kw at the given strides and padding, padding read as the
 * zero point): every window divides by kh * kw through one multiplier; quint8 only. */
static cq_status qnnpack_avgpool(const cq_tensor *x, cq_tensor *y, cq_isa isa,
                                 const plane_plan *pl, const int64_t *kernel,
                                 const int64_t *stride, const int64_t *padding) {
  const float sx = x->qparams->scale[0];
  const float pool = (float)(kernel[0] * kernel[1]);
  cq_qavgpool_params prm = {0};
  prm.out.zp = x->qparams->zero_point[0];
  prm.out.y_min = 0;
  prm.out.y_max = 255;
  prm.out.zp_before_rounding = 0;
  prm.fixed = 1;
  prm.fixed_mult = sx / (sx * pool);
  cq_qpool2d_geom g = {pl->in_h, pl->in_w, pl->out_h, pl->out_w, {kernel[0], kernel[1]},
                       {stride[0], stride[1]}, {padding[0], padding[1]}, {1, 1}};
  _Alignas(64) uint8_t stack[STACK_SCRATCH];
  void *heap;
  void *scratch = scratch_for(cq_qpool_avg2d_scratch(&g), stack, &heap);
  if (!scratch) return CQ_ENOMEM;
  cq_qu8_avgpool2d_nchw(isa, (size_t)pl->planes, &g, &prm, x->data, y->data, scratch);
  cq_free(heap);
  return CQ_OK;
}

cq_status cq_qop_avgpool2d(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                           const cq_qpool2d *p, cq_backend engine, cq_qlayout layout,
                           cq_tensor **y) {
  *y = NULL;
  cq_qpool2d g = *p;
  g.dilation[0] = g.dilation[1] = 1;
  plane_plan pl;
  cq_isa isa;
  cq_status st = pool_geometry(m, x, &g, &pl);
  if (st == CQ_OK) st = active_isa(m, &isa);
  if (st == CQ_OK) st = pool_output(ctx, x, pl.out_h, pl.out_w, y);
  if (st != CQ_OK) return st;
  if (engine == CQ_BACKEND_QNNPACK && x->dtype == CQ_U8 && !p->ceil_mode) {
    return qnnpack_avgpool(x, *y, isa, &pl, g.kernel, g.stride, g.padding);
  }
  /* ATen's kernels: the NCHW one adds the zero point before rounding, the channels-last one
   * after */
  const int nhwc = layout == CQ_QLAYOUT_NHWC && x->ndim == 4;
  cq_qavgpool_params prm = {0};
  prm.out.zp = x->qparams->zero_point[0];
  prm.out.y_min = x->dtype == CQ_U8 ? 0 : -128;
  prm.out.y_max = x->dtype == CQ_U8 ? 255 : 127;
  prm.out.zp_before_rounding = !nhwc;
  prm.count_include_pad = p->count_include_pad;
  prm.divisor_override = p->divisor_override;
  cq_qpool2d_geom kg;
  kernel_geometry(&pl, &g, &kg);
  _Alignas(64) uint8_t stack[STACK_SCRATCH];
  void *heap;
  void *scratch = scratch_for(cq_qpool_avg2d_scratch(&kg), stack, &heap);
  if (!scratch) return CQ_ENOMEM;
  if (x->dtype == CQ_U8) {
    cq_qu8_avgpool2d_nchw(isa, (size_t)pl.planes, &kg, &prm, x->data, (*y)->data, scratch);
  } else {
    cq_qs8_avgpool2d_nchw(isa, (size_t)pl.planes, &kg, &prm, x->data, (*y)->data, scratch);
  }
  cq_free(heap);
  return CQ_OK;
}

/* --- adaptive_avg_pool2d ------------------------------------------------------------------------ */

cq_status cq_qop_adaptive_avgpool2d(const cq_module *m, cq_ctx *ctx, const cq_tensor *x,
                                    int64_t out_h, int64_t out_w, cq_backend engine,
                                    cq_qlayout layout, cq_tensor **y) {
  *y = NULL;
  plane_plan pl;
  cq_isa isa;
  cq_status st = pool_input(m, x, &pl);
  if (st != CQ_OK) return st;
  if (out_h < 1 || out_w < 1) {
    return cq_qmod_fail(m, CQ_EINVAL, "output_size (%lld, %lld) must be >= 1", (long long)out_h,
                        (long long)out_w);
  }
  pl.out_h = out_h;
  pl.out_w = out_w;
  st = active_isa(m, &isa);
  if (st == CQ_OK) st = pool_output(ctx, x, out_h, out_w, y);
  if (st != CQ_OK) return st;
  if (engine == CQ_BACKEND_QNNPACK && x->dtype == CQ_U8 &&
      !(pl.in_h == out_h && pl.in_w == out_w) && pl.in_h % out_h == 0 && pl.in_w % out_w == 0) {
    const int64_t kernel[2] = {pl.in_h / out_h, pl.in_w / out_w};
    const int64_t padding[2] = {0, 0};
    return qnnpack_avgpool(x, *y, isa, &pl, kernel, kernel, padding);
  }
  const int nhwc = layout == CQ_QLAYOUT_NHWC && x->ndim == 4;
  cq_qpool_out o = {x->qparams->zero_point[0], x->dtype == CQ_U8 ? 0 : -128,
                    x->dtype == CQ_U8 ? 255 : 127, 0};
  if (x->dtype == CQ_U8) {
    cq_qu8_adaptive_avgpool2d(isa, (size_t)pl.planes, pl.in_h, pl.in_w, out_h, out_w, !nhwc, &o,
                              x->data, (*y)->data);
  } else {
    cq_qs8_adaptive_avgpool2d(isa, (size_t)pl.planes, pl.in_h, pl.in_w, out_h, out_w, !nhwc, &o,
                              x->data, (*y)->data);
  }
  return CQ_OK;
}

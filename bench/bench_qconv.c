/* Benchmark: cquant's quantized convolution (u8 x s8 -> u8, fused requantization) against two
 * anchors in the same process, on the same data, weights prepacked for all: oneDNN's int8
 * convolution and XNNPACK's quantized NHWC convolution.
 *
 *   bench_qconv [--shape N,C,H,W,OC,KH,KW[,STRIDE,PAD,GROUPS]]... [--threads T]... [--reps R]
 *               [--min-ms MS] [--rule onednn|fbgemm|qnnpack] [--relu] [--x-zp Z]
 *   bench_qconv --seed-model WEIGHTS.safetensors CALIB.npy INPUT.npy OUTPUT.npy [--qparams QP.npy]
 *               [--reps R] [--min-ms MS] [--threads T]
 *
 * Run it as build/bench_qconv (operator mode, the defaults below), or through
 * bench/seed_model_vs_torch.py (seed-model mode, adding PyTorch's figures).
 *
 * Operator mode. Defaults: the shapes 1,2,28,28,64,3,3 / 1,64,26,26,128,3,3 /
 * 1,64,56,56,64,3,3,1,1,64 (depthwise, padding 1); threads 1 and 2; 9 repetitions; engine rule
 * onednn; input zero point 0 (activations after a ReLU, as in the seed's model); per-channel weight
 * scales and a bias. Each repetition times a batch of calls lasting at least --min-ms (default 20)
 * of: cquant on NCHW input and output (what the quantized modules run: the layout conversions are
 * inside the time), cquant on NHWC input and output, and oneDNN on NHWC input and output (the
 * layout PyTorch hands it), with a pause between them; the reported time per call is the median
 * over repetitions, the minimum is printed too (the figure least disturbed by other jobs on a
 * shared machine). Output: one JSON object with every library's figures, GOP/s (2 * multiply-adds
 * per call) and the ratios onednn_ms / cquant_ms (> 1: cquant is faster; "ratio" uses cquant's
 * NCHW time, "ratio_nhwc" its NHWC time). With one thread the per-call CPU time of the calling
 * thread is reported too (medians; "ratio_cpu", "ratio_nhwc_cpu"): on a machine shared with other
 * jobs it leaves out the time the thread was preempted, which dominates the spread of wall-clock
 * medians there. Outputs of the two libraries are compared; oneDNN adds
 * the bias in its accumulator domain, so a few ties round differently (counted).
 *
 * XNNPACK in operator mode, timed after oneDNN in each repetition, both on NHWC input and output:
 * - "xnnpack_*": xnn_create_convolution2d_nhwc_qc8, the XNNPACK operator with per-channel weight
 *   scales, i.e. the benchmark's quantization. Its activations are int8, so it runs on the NHWC
 *   data of cquant's NHWC figure with the sign bit flipped (uint8 v, zero point z is int8 v - 128,
 *   zero point z - 128: the same values; flipped once, outside the time), and its output is
 *   flipped back and compared with cquant's ("xnnpack_outputs_differing" /
 *   "xnnpack_max_output_difference": XNNPACK quantizes the bias to int32 and requantizes in float
 *   with its own rounding, so differences of 1 are expected; reported, not an error). Ratios:
 *   "ratio_xnnpack" = xnnpack_ms / cquant_ms (NCHW), "ratio_xnnpack_nhwc" = xnnpack_ms /
 *   cquant_nhwc_ms (the same layout on both sides), "ratio_xnnpack_cpu" / "ratio_xnnpack_nhwc_cpu"
 *   for one thread; > 1: cquant is faster.
 * - "xnnpack_qu8_*": xnn_create_convolution2d_nhwc_qu8 on the very same uint8 NHWC buffer (weights
 *   + 128 with kernel zero point 128, the same integers). It has one weight scale for all channels,
 *   so it gets the mean of the per-channel scales: the same work with other output numbers, timed
 *   only ("ratio_xnnpack_qu8_nhwc" = xnnpack_qu8_ms / cquant_nhwc_ms).
 * Groups and depthwise go through the same calls (C/groups input channels per group). Where
 * XNNPACK cannot run a case, the result says "xnnpack": "unsupported: <why>" (or "xnnpack_qu8")
 * instead of figures. Its thread pool is a pthreadpool of T threads (none for one thread).
 *
 * Seed-model mode: the seed's static model, Sequential(QuantStub, ConvReLU2d(2, 64, 3),
 * ConvReLU2d(64, 128, 3), DeQuantStub), built from the float weights with cquant's eager-mode
 * flow (fuse, get_default_qconfig("onednn"), prepare, calibrate on CALIB.npy [B, N, 2, H, W] one
 * batch at a time, convert under the onednn engine) -- or, with --qparams, the converted modules
 * built directly from given quantization parameters (PyTorch's: then the outputs can match
 * PyTorch's bit for bit; calibration in float differs in the last bits between the libraries'
 * float convolutions, which moves the histogram observers' output scales) -- timed on INPUT.npy
 * (median ms per forward);
 * the output goes to OUTPUT.npy for the caller to compare with PyTorch's. The same float weights
 * also run through oneDNN's fp32 convolutions (two conv + ReLU primitives, input and output NCHW,
 * the layout between them and of the weights oneDNN's choice) for the float anchor
 * ("onednn_f32_ms", "f32_over_cquant" = onednn_f32_ms / cquant_ms), and through XNNPACK's fp32
 * NHWC convolutions ("xnnpack_f32_ms", "xnnpack_f32_over_cquant"; the NCHW <-> NHWC conversions of
 * input and output are inside its time; "xnnpack_f32_max_abs_diff_vs_onednn_f32" checks that the
 * two float anchors compute the same model).
 * bench/seed_model_vs_torch.py drives this mode and adds PyTorch's figures.
 *
 * Both anchors are optional at build time: oneDNN (CQ_HAVE_DNNL, Debian's libdnnl-dev) and XNNPACK
 * (CQ_HAVE_XNNPACK, Debian's libxnnpack-dev and libpthreadpool-dev); a missing one is left out of
 * the output. oneDNN uses OpenMP here: its thread count is set through
 * omp_set_num_threads, looked up at run time. Not a test: `make test` never runs it. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_common.h"
#include "core/cpu.h"
#include "core/threadpool.h"
#include "cquant/cquant.h"
#include "kernels/conv/qconv.h"
#include "nn/quantized/qmodules.h"

#ifdef CQ_HAVE_DNNL
#include <dnnl.h>
#endif
#include "xnnpack_anchor.h"

/* XNNPACK may read this many bytes past the end of its input */
#ifdef CQ_HAVE_XNNPACK
#define INPUT_SLACK XNN_EXTRA_BYTES
#else
#define INPUT_SLACK 0
#endif

#define MAX_SHAPES 32
#define MAX_THREADS_LIST 8


static void set_omp_threads(int t) {
  void (*fn)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "omp_set_num_threads");
  if (fn) fn(t);
}

/* ---- cquant ---------------------------------------------------------------------------------- */

typedef struct cq_bench {
  const cq_qconv_op *op;
  const uint8_t *x;
  uint8_t *y;
  int64_t n, h, w;
  cq_conv_layout layout;
  void *ws;
  size_t ws_bytes;
  cq_threadpool *tp;
  int failed;
} cq_bench;

static void cq_call(void *ctx) {
  cq_bench *b = ctx;
  if (cq_qconv_run(b->op, b->x, b->layout, b->n, b->h, b->w, b->y, b->layout, b->ws, b->ws_bytes,
                   b->tp) != CQ_OK) {
    b->failed = 1;
  }
}

/* ---- oneDNN ---------------------------------------------------------------------------------- */

#ifdef CQ_HAVE_DNNL
#define DNNL_TRY(call)                                                              \
  do {                                                                              \
    dnnl_status_t s_ = (call);                                                      \
    if (s_ != dnnl_success) {                                                       \
      fprintf(stderr, "bench_qconv: oneDNN call %s failed (%d)\n", #call, (int)s_); \
      return -1;                                                                    \
    }                                                                               \
  } while (0)

typedef struct dnnl_conv {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  dnnl_primitive_t prim;
  dnnl_primitive_desc_t pd;
  dnnl_memory_t x, w, b, y;
  const char *impl;
  int failed;
} dnnl_conv;

/* One convolution primitive. src/dst: user memory with the given tags (dnnl_format_tag_any lets
 * oneDNN choose: then the memories are allocated by oneDNN and x_data / y_data are ignored).
 * Weights are given as PyTorch's [O, C/g, kh, kw] (plain goihw) and reordered once. */
static int dnnl_conv_setup(dnnl_conv *d, dnnl_engine_t engine, dnnl_stream_t stream,
                           const cq_conv_geom *g, int64_t n, int64_t h, int64_t w,
                           dnnl_data_type_t xt, dnnl_format_tag_t x_tag,
                           const dnnl_memory_desc_t *x_md_given, void *x_data, dnnl_data_type_t yt,
                           dnnl_format_tag_t y_tag, void *y_data, dnnl_data_type_t wt,
                           const void *weights, const float *bias, const float *scales,
                           int per_channel, int32_t x_zp, int32_t y_zp, int relu) {
  memset(d, 0, sizeof *d);
  d->engine = engine;
  d->stream = stream;
  const int64_t ho = cq_qconv_out_size(h, g->kernel[0], g->stride[0], g->padding[0],
                                       g->dilation[0]);
  const int64_t wo = cq_qconv_out_size(w, g->kernel[1], g->stride[1], g->padding[1],
                                       g->dilation[1]);
  const int64_t G = g->groups, O = g->out_channels, C = g->in_channels;
  dnnl_memory_desc_t xmd, ymd, wmd_any, wmd_user, bmd;
  dnnl_dims_t xd = {n, C, h, w}, yd = {n, O, ho, wo}, bd = {O};
  if (x_md_given) {
    xmd = *x_md_given;
  } else {
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&xmd, 4, xd, xt, x_tag));
  }
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&ymd, 4, yd, yt, y_tag));
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&bmd, 1, bd, dnnl_f32, dnnl_a));
  if (G == 1) {
    dnnl_dims_t wd = {O, C, g->kernel[0], g->kernel[1]};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd_any, 4, wd, wt, dnnl_format_tag_any));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd_user, 4, wd, wt, dnnl_oihw));
  } else {
    dnnl_dims_t wd = {G, O / G, C / G, g->kernel[0], g->kernel[1]};
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd_any, 5, wd, wt, dnnl_format_tag_any));
    DNNL_TRY(dnnl_memory_desc_init_by_tag(&wmd_user, 5, wd, wt, dnnl_goihw));
  }
  dnnl_convolution_desc_t cd;
  dnnl_dims_t strides = {g->stride[0], g->stride[1]}, pad = {g->padding[0], g->padding[1]};
  dnnl_dims_t dil = {g->dilation[0] - 1, g->dilation[1] - 1};
  DNNL_TRY(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                      dnnl_convolution_direct, &xmd, &wmd_any,
                                                      &bmd, &ymd, strides, dil, pad, pad));
  dnnl_primitive_attr_t attr;
  DNNL_TRY(dnnl_primitive_attr_create(&attr));
  if (scales) {
    DNNL_TRY(dnnl_primitive_attr_set_output_scales(attr, per_channel ? O : 1, per_channel ? 2 : 0,
                                                   scales));
  }
  if (x_zp) DNNL_TRY(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_SRC, 1, 0, &x_zp));
  if (y_zp) DNNL_TRY(dnnl_primitive_attr_set_zero_points(attr, DNNL_ARG_DST, 1, 0, &y_zp));
  if (relu) {
    dnnl_post_ops_t po;
    DNNL_TRY(dnnl_post_ops_create(&po));
    DNNL_TRY(dnnl_post_ops_append_eltwise(po, 1.0f, dnnl_eltwise_relu, 0.0f, 0.0f));
    DNNL_TRY(dnnl_primitive_attr_set_post_ops(attr, po));
    dnnl_post_ops_destroy(po);
  }
  DNNL_TRY(dnnl_primitive_desc_create(&d->pd, &cd, attr, engine, NULL));
  dnnl_primitive_attr_destroy(attr);
  DNNL_TRY(dnnl_primitive_desc_query(d->pd, dnnl_query_impl_info_str, 0, &d->impl));
  const dnnl_memory_desc_t *wmd = dnnl_primitive_desc_query_md(d->pd, dnnl_query_weights_md, 0);
  const dnnl_memory_desc_t *xmd_c = dnnl_primitive_desc_query_md(d->pd, dnnl_query_src_md, 0);
  const dnnl_memory_desc_t *ymd_c = dnnl_primitive_desc_query_md(d->pd, dnnl_query_dst_md, 0);
  DNNL_TRY(dnnl_memory_create(&d->x, xmd_c, engine, x_data ? x_data : DNNL_MEMORY_ALLOCATE));
  DNNL_TRY(dnnl_memory_create(&d->y, ymd_c, engine, y_data ? y_data : DNNL_MEMORY_ALLOCATE));
  DNNL_TRY(dnnl_memory_create(&d->b, &bmd, engine, (void *)bias));
  dnnl_memory_t w_user;
  DNNL_TRY(dnnl_memory_create(&w_user, &wmd_user, engine, (void *)weights));
  DNNL_TRY(dnnl_memory_create(&d->w, wmd, engine, DNNL_MEMORY_ALLOCATE));
  dnnl_primitive_desc_t rpd;
  dnnl_primitive_t reorder;
  DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, &wmd_user, engine, wmd, engine, NULL));
  DNNL_TRY(dnnl_primitive_create(&reorder, rpd));
  dnnl_exec_arg_t rargs[2] = {{DNNL_ARG_FROM, w_user}, {DNNL_ARG_TO, d->w}};
  DNNL_TRY(dnnl_primitive_execute(reorder, stream, 2, rargs));
  DNNL_TRY(dnnl_stream_wait(stream));
  dnnl_primitive_destroy(reorder);
  dnnl_primitive_desc_destroy(rpd);
  dnnl_memory_destroy(w_user);
  DNNL_TRY(dnnl_primitive_create(&d->prim, d->pd));
  return 0;
}

static void dnnl_conv_exec(dnnl_conv *d) {
  dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, d->x}, {DNNL_ARG_WEIGHTS, d->w},
                             {DNNL_ARG_BIAS, d->b}, {DNNL_ARG_DST, d->y}};
  if (dnnl_primitive_execute(d->prim, d->stream, 4, args) != dnnl_success) d->failed = 1;
}

static void dnnl_conv_call(void *ctx) {
  dnnl_conv *d = ctx;
  dnnl_conv_exec(d);
  dnnl_stream_wait(d->stream);
}

static void dnnl_conv_teardown(dnnl_conv *d) {
  dnnl_primitive_destroy(d->prim);
  dnnl_primitive_desc_destroy(d->pd);
  dnnl_memory_destroy(d->x);
  dnnl_memory_destroy(d->w);
  dnnl_memory_destroy(d->b);
  dnnl_memory_destroy(d->y);
}
#endif

/* ---- XNNPACK -------------------------------------------------------------------------------- */

#ifdef CQ_HAVE_XNNPACK
/* XNNPACK's convolution weights are [O, kh, kw, C/groups] (groups major in O, as PyTorch's);
 * PyTorch's are [O, C/groups, kh, kw]: the same output channels, each window transposed. elem is
 * the element size in bytes (1 for int8 and uint8, 4 for float). */
static void xnn_weights_ohwi(const void *w_oihw, int64_t oc, int64_t cg, int64_t kh, int64_t kw,
                             size_t elem, void *out) {
  const uint8_t *src = w_oihw;
  uint8_t *dst = out;
  for (int64_t o = 0; o < oc; o++) {
    for (int64_t c = 0; c < cg; c++) {
      for (int64_t q = 0; q < kh * kw; q++) {
        memcpy(dst + (size_t)((o * kh * kw + q) * cg + c) * elem,
               src + (size_t)((o * cg + c) * kh * kw + q) * elem, elem);
      }
    }
  }
}

/* The operator-mode anchors of one shape, both NHWC:
 * - qc8: xnn_create_convolution2d_nhwc_qc8, int8 activations and per-channel int8 weights. This is
 *   the one with the benchmark's quantization (per-channel weight scales, as cquant's and oneDNN's
 *   figures): its figures are "xnnpack_*" and its outputs are compared with cquant's. It runs on
 *   cquant's NHWC input with the sign bit flipped (uint8 v with zero point z is int8 v - 128 with
 *   zero point z - 128: the same values), flipped once before timing; its int8 output is flipped
 *   back for the comparison.
 * - qu8: xnn_create_convolution2d_nhwc_qu8, on cquant's NHWC uint8 input itself, with the int8
 *   weights + 128 and kernel zero point 128 (the same integers). It takes one weight scale for
 *   all channels, so it gets the mean of the per-channel scales: the same work, other numbers.
 *   Timed only ("xnnpack_qu8_*"); its outputs are not compared.
 * Both get the bias as int32 in the accumulator's units, round(b / (x_scale * w_scale)), as
 * PyTorch's qnnpack engine quantizes it. Groups, depthwise included, go through the same call
 * (C/groups input and O/groups output channels per group). */
typedef struct xnn_conv {
  xnn_operator_t qc8, qu8;
  char qc8_reason[XNN_ANCHOR_REASON_BYTES], qu8_reason[XNN_ANCHOR_REASON_BYTES];
  int8_t *x_s8, *y_s8;
  uint8_t *y_qu8;
} xnn_conv;

static void xnn_conv_create(xnn_conv *xc, const cq_conv_geom *g, const uint8_t *x_nhwc, size_t xn,
                            size_t yn, const int8_t *w, const float *w_scale, const float *bias,
                            float x_scale, int32_t x_zp, float y_scale, int32_t y_zp, int relu) {
  memset(xc, 0, sizeof *xc);
  if (xnn_anchor_init(xc->qc8_reason) != 0) {
    memcpy(xc->qu8_reason, xc->qc8_reason, sizeof xc->qu8_reason);
    return;
  }
  const int64_t O = g->out_channels, G = g->groups, cg = g->in_channels / G;
  const int64_t kh = g->kernel[0], kw = g->kernel[1], wn = O * cg * kh * kw;
  int8_t *w_s8 = malloc((size_t)wn);
  uint8_t *w_u8 = malloc((size_t)wn);
  int32_t *b_qc8 = malloc(sizeof(int32_t) * (size_t)O), *b_qu8 = malloc(sizeof(int32_t) * (size_t)O);
  xc->x_s8 = bench_alloc(xn + INPUT_SLACK);
  xc->y_s8 = bench_alloc(yn);
  xc->y_qu8 = bench_alloc(yn);
  if (!w_s8 || !w_u8 || !b_qc8 || !b_qu8 || !xc->x_s8 || !xc->y_s8 || !xc->y_qu8) {
    snprintf(xc->qc8_reason, sizeof xc->qc8_reason, "out of memory");
    snprintf(xc->qu8_reason, sizeof xc->qu8_reason, "out of memory");
    goto done;
  }
  xnn_weights_ohwi(w, O, cg, kh, kw, 1, w_s8);
  xnn_anchor_flip_sign(w_s8, w_u8, (size_t)wn); /* w + 128 */
  xnn_anchor_flip_sign(x_nhwc, xc->x_s8, xn);    /* x - 128 */
  double mean_scale = 0.0, min_scale = w_scale[0], max_scale = w_scale[0];
  for (int64_t o = 0; o < O; o++) {
    mean_scale += w_scale[o] / (double)O;
    min_scale = w_scale[o] < min_scale ? w_scale[o] : min_scale;
    max_scale = w_scale[o] > max_scale ? w_scale[o] : max_scale;
  }
  const float qu8_scale = (float)mean_scale;
  for (int64_t o = 0; o < O; o++) {
    b_qc8[o] = (int32_t)lrint((double)bias[o] / ((double)x_scale * (double)w_scale[o]));
    b_qu8[o] = (int32_t)lrint((double)bias[o] / ((double)x_scale * (double)qu8_scale));
  }
  const uint32_t pad_h = (uint32_t)g->padding[0], pad_w = (uint32_t)g->padding[1];
  enum xnn_status s = xnn_create_convolution2d_nhwc_qc8(
      pad_h, pad_w, pad_h, pad_w, (uint32_t)kh, (uint32_t)kw, (uint32_t)g->stride[0],
      (uint32_t)g->stride[1], (uint32_t)g->dilation[0], (uint32_t)g->dilation[1], (uint32_t)G,
      (size_t)cg, (size_t)(O / G), (size_t)g->in_channels, (size_t)O, (int8_t)(x_zp - 128), x_scale,
      w_scale, w_s8, b_qc8, (int8_t)(y_zp - 128), y_scale, (int8_t)(relu ? y_zp - 128 : -128), 127,
      0, &xc->qc8);
  if (s != xnn_status_success) {
    /* the per-channel requantization scale nearest the edge of XNNPACK's range */
    const double r_hi = (double)x_scale * max_scale / (double)y_scale;
    const double r_lo = (double)x_scale * min_scale / (double)y_scale;
    xnn_anchor_create_failed(xc->qc8_reason, "xnn_create_convolution2d_nhwc_qc8", s,
                             r_hi >= 256.0 ? r_hi : r_lo);
    xc->qc8 = NULL;
  }
  s = xnn_create_convolution2d_nhwc_qu8(
      pad_h, pad_w, pad_h, pad_w, (uint32_t)kh, (uint32_t)kw, (uint32_t)g->stride[0],
      (uint32_t)g->stride[1], (uint32_t)g->dilation[0], (uint32_t)g->dilation[1], (uint32_t)G,
      (size_t)cg, (size_t)(O / G), (size_t)g->in_channels, (size_t)O, (uint8_t)x_zp, x_scale, 128,
      qu8_scale, w_u8, b_qu8, (uint8_t)y_zp, y_scale, (uint8_t)(relu ? y_zp : 0), 255, 0, &xc->qu8);
  if (s != xnn_status_success) {
    xnn_anchor_create_failed(xc->qu8_reason, "xnn_create_convolution2d_nhwc_qu8", s,
                             (double)x_scale * (double)qu8_scale / (double)y_scale);
    xc->qu8 = NULL;
  }
done:
  free(w_s8); /* both operators packed their own copies */
  free(w_u8);
  free(b_qc8);
  free(b_qu8);
}

/* Binds batch, input size and buffers for the pool's thread count (setup plans the tiling for
 * it). An operator that cannot be set up is dropped with its reason. */
static void xnn_conv_setup(xnn_conv *xc, const uint8_t *x_nhwc, int64_t n, int64_t h, int64_t w,
                           pthreadpool_t pool) {
  if (xc->qc8) {
    const enum xnn_status s = xnn_setup_convolution2d_nhwc_qc8(xc->qc8, (size_t)n, (size_t)h,
                                                               (size_t)w, xc->x_s8, xc->y_s8, pool);
    if (s != xnn_status_success) {
      xnn_anchor_create_failed(xc->qc8_reason, "xnn_setup_convolution2d_nhwc_qc8", s, 1.0);
      xnn_delete_operator(xc->qc8);
      xc->qc8 = NULL;
    }
  }
  if (xc->qu8) {
    const enum xnn_status s = xnn_setup_convolution2d_nhwc_qu8(xc->qu8, (size_t)n, (size_t)h,
                                                               (size_t)w, x_nhwc, xc->y_qu8, pool);
    if (s != xnn_status_success) {
      xnn_anchor_create_failed(xc->qu8_reason, "xnn_setup_convolution2d_nhwc_qu8", s, 1.0);
      xnn_delete_operator(xc->qu8);
      xc->qu8 = NULL;
    }
  }
}

static void xnn_conv_destroy(xnn_conv *xc) {
  if (xc->qc8) xnn_delete_operator(xc->qc8);
  if (xc->qu8) xnn_delete_operator(xc->qu8);
  free(xc->x_s8);
  free(xc->y_s8);
  free(xc->y_qu8);
}
#endif

/* ---- operator mode --------------------------------------------------------------------------- */

typedef struct shape {
  int64_t n, c, h, w, oc, kh, kw, stride, pad, groups;
} shape;

static int parse_shape(const char *s, shape *out) {
  long long v[10] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 1};
  int got = sscanf(s, "%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9]);
  if (got != 7 && got != 8 && got != 9 && got != 10) return -1;
  for (int i = 0; i < 10; i++) {
    if (v[i] < (i == 8 ? 0 : 1)) return -1;
  }
  *out = (shape){v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9]};
  return 0;
}

typedef struct op_options {
  int reps;
  double min_ms;
  cq_requant_rule rule;
  int relu;
  int32_t x_zp;
} op_options;

static int run_shape(const shape *sh, const int *threads_list, int n_threads,
                     const op_options *opt, int *first) {
  const cq_conv_geom g = {.in_channels = sh->c, .out_channels = sh->oc, .groups = sh->groups,
                          .kernel = {sh->kh, sh->kw}, .stride = {sh->stride, sh->stride},
                          .padding = {sh->pad, sh->pad}, .dilation = {1, 1}};
  if (cq_qconv_check_geom(&g) != CQ_OK) {
    fprintf(stderr, "bench_qconv: %s\n", cq_last_error());
    return 1;
  }
  const int64_t ho = cq_qconv_out_size(sh->h, sh->kh, sh->stride, sh->pad, 1);
  const int64_t wo = cq_qconv_out_size(sh->w, sh->kw, sh->stride, sh->pad, 1);
  if (ho < 1 || wo < 1) {
    fprintf(stderr, "bench_qconv: the kernel does not fit the padded input\n");
    return 1;
  }
  const int64_t cg = sh->c / sh->groups, kdim = cg * sh->kh * sh->kw;
  const size_t xn = (size_t)(sh->n * sh->c * sh->h * sh->w), yn = (size_t)(sh->n * sh->oc * ho * wo);
  uint8_t *x = bench_alloc(xn), *x_nhwc = bench_alloc(xn + INPUT_SLACK), *y = bench_alloc(yn);
  uint8_t *y_nhwc = bench_alloc(yn), *y_dnnl = bench_alloc(yn);
  int8_t *w = malloc((size_t)(sh->oc * kdim));
  float *w_scale = malloc(sizeof(float) * (size_t)sh->oc), *bias = malloc(sizeof(float) * (size_t)sh->oc);
  float *dn_scale = malloc(sizeof(float) * (size_t)sh->oc);
  for (size_t i = 0; i < xn; i++) x[i] = (uint8_t)(rand() & 255);
  const int64_t hw = sh->h * sh->w;
  for (int64_t b = 0; b < sh->n; b++) {
    for (int64_t c = 0; c < sh->c; c++) {
      for (int64_t q = 0; q < hw; q++) x_nhwc[(b * hw + q) * sh->c + c] = x[(b * sh->c + c) * hw + q];
    }
  }
  for (int64_t i = 0; i < sh->oc * kdim; i++) w[i] = (int8_t)((rand() % 255) - 127);
  const float x_scale = 0.02f;
  const float y_scale = 0.02f * 0.004f * 12.0f * (float)sqrt((double)kdim) * 6.0f;
  const int32_t y_zp = opt->relu ? 0 : 128;
  for (int64_t o = 0; o < sh->oc; o++) {
    w_scale[o] = 0.003f + 0.002f * (float)(rand() % 1000) / 1000.0f;
    bias[o] = (float)(rand() % 2001 - 1000) * 0.0005f;
    dn_scale[o] = x_scale * w_scale[o] / y_scale;
  }
  cq_qconv_packed *packed = NULL;
  cq_qconv_op *op = NULL;
  const cq_qgemm_quant q = {x_scale, opt->x_zp, y_scale, y_zp, opt->relu, opt->rule, 0, 0, 0};
  if (cq_qconv_pack(&g, w, w_scale, NULL, 1, bias, &packed) != CQ_OK ||
      cq_qconv_create(packed, &q, &op) != CQ_OK) {
    fprintf(stderr, "bench_qconv: %s\n", cq_last_error());
    return 1;
  }
  int status = 0;
#ifdef CQ_HAVE_XNNPACK
  xnn_conv xc;
  xnn_conv_create(&xc, &g, x_nhwc, xn, yn, w, w_scale, bias, x_scale, opt->x_zp, y_scale, y_zp,
                  opt->relu);
#endif
#ifdef CQ_HAVE_DNNL
  /* oneDNN adds the bias before the output scale: give it b / (sx * sw) */
  float *dn_bias = malloc(sizeof(float) * (size_t)sh->oc);
  for (int64_t o = 0; o < sh->oc; o++) dn_bias[o] = bias[o] / (x_scale * w_scale[o]);
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success) {
    return 1;
  }
#endif
  for (int ti = 0; ti < n_threads; ti++) {
    const int t = threads_list[ti];
    cq_threadpool *tp = NULL;
    if (t > 1 && cq_threadpool_create(t, &tp) != CQ_OK) {
      fprintf(stderr, "bench_qconv: %s\n", cq_last_error());
      return 1;
    }
    set_omp_threads(t);
#ifdef CQ_HAVE_DNNL
    /* oneDNN plans its work for the OpenMP thread count when the primitive is created: create
     * it after setting the count */
    dnnl_conv d;
    if (dnnl_conv_setup(&d, engine, stream, &g, sh->n, sh->h, sh->w, dnnl_u8, dnnl_nhwc, NULL,
                        x_nhwc, dnnl_u8, dnnl_nhwc, y_dnnl, dnnl_s8, w, dn_bias, dn_scale, 1,
                        opt->x_zp, y_zp, opt->relu) != 0) {
      return 1;
    }
#endif
    const size_t ws_bytes = cq_qconv_workspace_size(op, sh->h, sh->w, CQ_CONV_NCHW, CQ_CONV_NCHW, t);
    const size_t wsn_bytes = cq_qconv_workspace_size(op, sh->h, sh->w, CQ_CONV_NHWC, CQ_CONV_NHWC, t);
    void *ws = malloc(ws_bytes), *wsn = malloc(wsn_bytes);
    cq_bench b = {op, x, y, sh->n, sh->h, sh->w, CQ_CONV_NCHW, ws, ws_bytes, tp, 0};
    cq_bench bn = {op, x_nhwc, y_nhwc, sh->n, sh->h, sh->w, CQ_CONV_NHWC, wsn, wsn_bytes, tp, 0};
    double *cq_ms = calloc((size_t)opt->reps, sizeof(double));
    double *cqn_ms = calloc((size_t)opt->reps, sizeof(double));
    double *cq_cpu = calloc((size_t)opt->reps, sizeof(double));
    double *cqn_cpu = calloc((size_t)opt->reps, sizeof(double));
    double *dn_cpu = calloc((size_t)opt->reps, sizeof(double));
    cq_call(&b);
    cq_call(&bn);
    const long cq_calls = calibrate(cq_call, &b, opt->min_ms);
    const long cqn_calls = calibrate(cq_call, &bn, opt->min_ms);
#ifdef CQ_HAVE_DNNL
    double *dn_ms = calloc((size_t)opt->reps, sizeof(double));
    dnnl_conv_call(&d);
    const long dn_calls = calibrate(dnnl_conv_call, &d, opt->min_ms);
#endif
#ifdef CQ_HAVE_XNNPACK
    pthreadpool_t pool = NULL;
    const int pool_ok = xnn_anchor_pool_create(t, &pool) == 0;
    if (pool_ok) {
      xnn_conv_setup(&xc, x_nhwc, sh->n, sh->h, sh->w, pool);
    } else {
      if (xc.qc8) snprintf(xc.qc8_reason, sizeof xc.qc8_reason, "pthreadpool_create(%d) failed", t);
      if (xc.qu8) snprintf(xc.qu8_reason, sizeof xc.qu8_reason, "pthreadpool_create(%d) failed", t);
    }
    xnn_anchor_run xr = {pool_ok ? xc.qc8 : NULL, pool, 0};
    xnn_anchor_run xr8 = {pool_ok ? xc.qu8 : NULL, pool, 0};
    double *xn_ms = calloc((size_t)opt->reps, sizeof(double));
    double *xn_cpu = calloc((size_t)opt->reps, sizeof(double));
    double *xq_ms = calloc((size_t)opt->reps, sizeof(double));
    double *xq_cpu = calloc((size_t)opt->reps, sizeof(double));
    long xn_calls = 0, xq_calls = 0;
    if (xr.op) {
      xnn_anchor_call(&xr);
      xn_calls = calibrate(xnn_anchor_call, &xr, opt->min_ms);
      xnn_anchor_pool_park(pool);
    }
    if (xr8.op) {
      xnn_anchor_call(&xr8);
      xq_calls = calibrate(xnn_anchor_call, &xr8, opt->min_ms);
      xnn_anchor_pool_park(pool);
    }
#endif
    for (int r = 0; r < opt->reps; r++) {
      pause_ms(30);
      cq_ms[r] = time_batch_cpu(cq_call, &b, cq_calls, &cq_cpu[r]);
      pause_ms(30);
      cqn_ms[r] = time_batch_cpu(cq_call, &bn, cqn_calls, &cqn_cpu[r]);
#ifdef CQ_HAVE_DNNL
      pause_ms(30);
      dn_ms[r] = time_batch_cpu(dnnl_conv_call, &d, dn_calls, &dn_cpu[r]);
#endif
#ifdef CQ_HAVE_XNNPACK
      if (xr.op) {
        pause_ms(30);
        xn_ms[r] = time_batch_cpu(xnn_anchor_call, &xr, xn_calls, &xn_cpu[r]);
        xnn_anchor_pool_park(pool);
      }
      if (xr8.op) {
        pause_ms(30);
        xq_ms[r] = time_batch_cpu(xnn_anchor_call, &xr8, xq_calls, &xq_cpu[r]);
        xnn_anchor_pool_park(pool);
      }
#endif
    }
    const double ops = 2.0 * (double)(sh->n * sh->oc * ho * wo) * (double)kdim;
    const double cq_min = minimum(cq_ms, opt->reps), cq_med = median(cq_ms, opt->reps);
    const double cqn_min = minimum(cqn_ms, opt->reps), cqn_med = median(cqn_ms, opt->reps);
    printf("%s\n    {\"n\": %lld, \"c\": %lld, \"h\": %lld, \"w\": %lld, \"oc\": %lld, \"kh\": %lld, "
           "\"kw\": %lld, \"stride\": %lld, \"pad\": %lld, \"groups\": %lld, \"threads\": %d, "
           "\"path\": \"%s\", \"cquant_ms\": %.5f, \"cquant_gops\": %.1f, \"cquant_ms_min\": %.5f, "
           "\"cquant_nhwc_ms\": %.5f, \"cquant_nhwc_ms_min\": %.5f",
           *first ? "" : ",", (long long)sh->n, (long long)sh->c, (long long)sh->h,
           (long long)sh->w, (long long)sh->oc, (long long)sh->kh, (long long)sh->kw,
           (long long)sh->stride, (long long)sh->pad, (long long)sh->groups, t,
           cq_qconv_path_name(op), cq_med, ops / cq_med * 1e-6, cq_min, cqn_med, cqn_min);
    /* the two cquant layouts must agree */
    int layouts_agree = 1;
    for (int64_t bb = 0; bb < sh->n && layouts_agree; bb++) {
      const int64_t pl = ho * wo;
      for (int64_t o = 0; o < sh->oc; o++) {
        for (int64_t qq = 0; qq < pl; qq++) {
          if (y[(bb * sh->oc + o) * pl + qq] != y_nhwc[(bb * pl + qq) * sh->oc + o]) layouts_agree = 0;
        }
      }
    }
    printf(", \"layouts_agree\": %s", layouts_agree ? "true" : "false");
    const double cq_cpu_med = median(cq_cpu, opt->reps), cqn_cpu_med = median(cqn_cpu, opt->reps);
    if (t == 1) {
      printf(", \"cquant_cpu_ms\": %.5f, \"cquant_nhwc_cpu_ms\": %.5f", cq_cpu_med, cqn_cpu_med);
    }
    if (!layouts_agree) status = 1;
#ifdef CQ_HAVE_DNNL
    const double dn_min = minimum(dn_ms, opt->reps), dn_med = median(dn_ms, opt->reps);
    long diff = 0;
    int max_diff = 0;
    for (size_t i = 0; i < yn; i++) {
      const int dd = abs((int)y_nhwc[i] - (int)y_dnnl[i]);
      diff += dd != 0;
      max_diff = dd > max_diff ? dd : max_diff;
    }
    printf(", \"onednn_ms\": %.5f, \"onednn_gops\": %.1f, \"onednn_ms_min\": %.5f, "
           "\"onednn_impl\": \"%s\", \"ratio\": %.3f, \"ratio_nhwc\": %.3f, \"ratio_of_minima\": %.3f, "
           "\"outputs_differing\": %ld, \"max_output_difference\": %d",
           dn_med, ops / dn_med * 1e-6, dn_min, d.impl, dn_med / cq_med, dn_med / cqn_med,
           dn_min / cq_min, diff, max_diff);
    if (t == 1) { /* one thread: oneDNN's OpenMP region runs on this thread too */
      const double dn_cpu_med = median(dn_cpu, opt->reps);
      printf(", \"onednn_cpu_ms\": %.5f, \"ratio_cpu\": %.3f, \"ratio_nhwc_cpu\": %.3f",
             dn_cpu_med, dn_cpu_med / cq_cpu_med, dn_cpu_med / cqn_cpu_med);
    }
    if (d.failed) status = 1;
    free(dn_ms);
    dnnl_conv_teardown(&d);
#endif
#ifdef CQ_HAVE_XNNPACK
    if (xr.op) {
      const double xn_min = minimum(xn_ms, opt->reps), xn_med = median(xn_ms, opt->reps);
      /* the int8 output back to uint8, then against cquant's NHWC output */
      uint8_t *y_back = malloc(yn);
      long xdiff = 0;
      int xmax = 0;
      if (y_back) {
        xnn_anchor_flip_sign(xc.y_s8, y_back, yn);
        xnn_anchor_compare(y_nhwc, y_back, yn, &xdiff, &xmax);
        free(y_back);
      }
      printf(", \"xnnpack_ms\": %.5f, \"xnnpack_gops\": %.1f, \"xnnpack_ms_min\": %.5f, "
             "\"ratio_xnnpack\": %.3f, \"ratio_xnnpack_nhwc\": %.3f, \"ratio_xnnpack_of_minima\": %.3f, "
             "\"xnnpack_outputs_differing\": %ld, \"xnnpack_max_output_difference\": %d",
             xn_med, ops / xn_med * 1e-6, xn_min, xn_med / cq_med, xn_med / cqn_med,
             xn_min / cq_min, xdiff, xmax);
      if (t == 1) { /* no pool: XNNPACK runs on this thread */
        const double xn_cpu_med = median(xn_cpu, opt->reps);
        printf(", \"xnnpack_cpu_ms\": %.5f, \"ratio_xnnpack_cpu\": %.3f, "
               "\"ratio_xnnpack_nhwc_cpu\": %.3f",
               xn_cpu_med, xn_cpu_med / cq_cpu_med, xn_cpu_med / cqn_cpu_med);
      }
      if (xr.failed) status = 1;
    } else {
      printf(", \"xnnpack\": \"unsupported: ");
      xnn_anchor_print_escaped(xc.qc8_reason);
      printf("\"");
    }
    if (xr8.op) {
      const double xq_min = minimum(xq_ms, opt->reps), xq_med = median(xq_ms, opt->reps);
      printf(", \"xnnpack_qu8_ms\": %.5f, \"xnnpack_qu8_ms_min\": %.5f, \"ratio_xnnpack_qu8_nhwc\": %.3f",
             xq_med, xq_min, xq_med / cqn_med);
      if (t == 1) printf(", \"xnnpack_qu8_cpu_ms\": %.5f", median(xq_cpu, opt->reps));
      if (xr8.failed) status = 1;
    } else {
      printf(", \"xnnpack_qu8\": \"unsupported: ");
      xnn_anchor_print_escaped(xc.qu8_reason);
      printf("\"");
    }
    free(xn_ms);
    free(xn_cpu);
    free(xq_ms);
    free(xq_cpu);
    xnn_anchor_pool_destroy(pool);
#endif
    printf("}");
    *first = 0;
    fflush(stdout);
    if (b.failed || bn.failed) status = 1;
    free(cq_ms);
    free(cqn_ms);
    free(cq_cpu);
    free(cqn_cpu);
    free(dn_cpu);
    free(ws);
    free(wsn);
    cq_threadpool_destroy(tp);
  }
#ifdef CQ_HAVE_DNNL
  dnnl_stream_destroy(stream);
  dnnl_engine_destroy(engine);
  free(dn_bias);
#endif
#ifdef CQ_HAVE_XNNPACK
  xnn_conv_destroy(&xc);
#endif
  cq_qconv_destroy(op);
  cq_qconv_packed_destroy(packed);
  free(x);
  free(x_nhwc);
  free(y);
  free(y_nhwc);
  free(y_dnnl);
  free(w);
  free(w_scale);
  free(bias);
  free(dn_scale);
  return status;
}

/* ---- seed-model mode ------------------------------------------------------------------------- */

/* nn.Sequential(QuantStub(), *m, DeQuantStub()) (the children of m move; m is freed). */
static cq_status add_stubs(cq_module *m, cq_module **out) {
  cq_module *seq = NULL, *stub = NULL;
  cq_status st = cq_quant_stub(&stub);
  if (st == CQ_OK) st = cq_sequential(&seq, 1, &stub);
  for (int i = 0; i < cq_module_num_children(m) && st == CQ_OK; i++) {
    cq_module *placeholder = NULL, *child = NULL;
    st = cq_identity(&placeholder);
    if (st == CQ_OK) st = cq_module_replace(m, cq_module_child_name(m, i), placeholder, &child);
    if (st == CQ_OK) st = cq_sequential_append(seq, child);
  }
  cq_module_free(m);
  if (st == CQ_OK) st = cq_dequant_stub(&stub);
  if (st == CQ_OK) st = cq_sequential_append(seq, stub);
  if (st != CQ_OK) {
    cq_module_free(seq);
    return st;
  }
  *out = seq;
  return CQ_OK;
}

typedef struct model_bench {
  cq_module *m;
  cq_ctx *ctx;
  cq_tensor *x;
  int failed;
} model_bench;

static void model_call(void *p) {
  model_bench *b = p;
  cq_tensor *y = NULL;
  cq_ctx_reset(b->ctx);
  if (cq_module_forward1(b->m, b->ctx, b->x, &y) != CQ_OK) b->failed = 1;
}

#ifdef CQ_HAVE_DNNL
typedef struct f32_model {
  dnnl_conv c1, c2;
  dnnl_primitive_t reorder; /* conv2's output to NCHW, or NULL */
  dnnl_memory_t out;
  int failed;
} f32_model;

static void f32_model_call(void *p) {
  f32_model *f = p;
  dnnl_conv_exec(&f->c1);
  dnnl_conv_exec(&f->c2);
  if (f->reorder) {
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, f->c2.y}, {DNNL_ARG_TO, f->out}};
    if (dnnl_primitive_execute(f->reorder, f->c2.stream, 2, args) != dnnl_success) f->failed = 1;
  }
  dnnl_stream_wait(f->c2.stream);
  if (f->c1.failed || f->c2.failed) f->failed = 1;
}

/* The float model on oneDNN: conv1 (NCHW input, output layout oneDNN's choice), conv2 (input in
 * conv1's layout, output oneDNN's choice), then a reorder to NCHW when that is not already NCHW. */
static int f32_model_setup(f32_model *f, dnnl_engine_t engine, dnnl_stream_t stream,
                           const float *w1, const float *b1, const float *w2, const float *b2,
                           float *x, float *y, int64_t n, int64_t h, int64_t w) {
  memset(f, 0, sizeof *f);
  const cq_conv_geom g1 = {2, 64, 1, {3, 3}, {1, 1}, {0, 0}, {1, 1}};
  const cq_conv_geom g2 = {64, 128, 1, {3, 3}, {1, 1}, {0, 0}, {1, 1}};
  if (dnnl_conv_setup(&f->c1, engine, stream, &g1, n, h, w, dnnl_f32, dnnl_nchw, NULL, x,
                      dnnl_f32, dnnl_format_tag_any, NULL, dnnl_f32, w1, b1, NULL, 0, 0, 0,
                      1) != 0) {
    return -1;
  }
  const dnnl_memory_desc_t *mid = dnnl_primitive_desc_query_md(f->c1.pd, dnnl_query_dst_md, 0);
  if (dnnl_conv_setup(&f->c2, engine, stream, &g2, n, h - 2, w - 2, dnnl_f32, dnnl_format_tag_any,
                      mid, NULL, dnnl_f32, dnnl_format_tag_any, NULL, dnnl_f32, w2, b2, NULL, 0,
                      0, 0, 1) != 0) {
    return -1;
  }
  /* conv2 reads conv1's output memory */
  dnnl_memory_destroy(f->c2.x);
  f->c2.x = f->c1.y;
  const dnnl_memory_desc_t *ymd = dnnl_primitive_desc_query_md(f->c2.pd, dnnl_query_dst_md, 0);
  dnnl_memory_desc_t nchw;
  dnnl_dims_t yd = {n, 128, h - 4, w - 4};
  DNNL_TRY(dnnl_memory_desc_init_by_tag(&nchw, 4, yd, dnnl_f32, dnnl_nchw));
  DNNL_TRY(dnnl_memory_create(&f->out, &nchw, engine, y));
  if (!dnnl_memory_desc_equal(ymd, &nchw)) {
    dnnl_primitive_desc_t rpd;
    DNNL_TRY(dnnl_reorder_primitive_desc_create(&rpd, ymd, engine, &nchw, engine, NULL));
    DNNL_TRY(dnnl_primitive_create(&f->reorder, rpd));
    dnnl_primitive_desc_destroy(rpd);
  } else {
    dnnl_memory_destroy(f->c2.y);
    f->c2.y = f->out;
    f->out = NULL;
  }
  return 0;
}

static void f32_model_teardown(f32_model *f) {
  f->c2.x = NULL; /* owned by c1 */
  if (f->reorder) dnnl_primitive_destroy(f->reorder);
  if (f->out) dnnl_memory_destroy(f->out);
  dnnl_conv_teardown(&f->c1);
  dnnl_conv_teardown(&f->c2);
}
#endif

#ifdef CQ_HAVE_XNNPACK
/* The float model on XNNPACK, the second float anchor: two xnn_create_convolution2d_nhwc_f32
 * operators with the ReLU as their output clamp [0, inf). XNNPACK's convolutions are NHWC only
 * (this version has no transpose operator), and the model's input and output are NCHW as for
 * cquant and oneDNN, so each call converts the input to NHWC and the output back to NCHW with
 * plain loops: that time is inside the figure, as oneDNN's final reorder is inside its. */
typedef struct xnn_f32_model {
  xnn_operator_t c1, c2;
  pthreadpool_t pool;
  const float *x;    /* [N, 2, H, W], the caller's */
  float *y;          /* [N, 128, H - 4, W - 4] */
  float *x_nhwc, *mid, *y_nhwc;
  int64_t n, h, w;
  int failed;
} xnn_f32_model;

/* [N, C, P] <-> [N, P, C] for float planes of P = H * W values. */
static void transpose_planes(const float *src, float *dst, int64_t n, int64_t rows, int64_t cols) {
  for (int64_t b = 0; b < n; b++) {
    const float *s = src + b * rows * cols;
    float *d = dst + b * rows * cols;
    for (int64_t r = 0; r < rows; r++) {
      for (int64_t c = 0; c < cols; c++) d[c * rows + r] = s[r * cols + c];
    }
  }
}

static void xnn_f32_model_call(void *p) {
  xnn_f32_model *f = p;
  transpose_planes(f->x, f->x_nhwc, f->n, 2, f->h * f->w);
  if (xnn_run_operator(f->c1, f->pool) != xnn_status_success ||
      xnn_run_operator(f->c2, f->pool) != xnn_status_success) {
    f->failed = 1;
  }
  transpose_planes(f->y_nhwc, f->y, f->n, (f->h - 4) * (f->w - 4), 128);
}

static void xnn_f32_model_teardown(xnn_f32_model *f) {
  if (f->c1) xnn_delete_operator(f->c1);
  if (f->c2) xnn_delete_operator(f->c2);
  xnn_anchor_pool_destroy(f->pool);
  free(f->x_nhwc);
  free(f->mid);
  free(f->y_nhwc);
  free(f->y);
  memset(f, 0, sizeof *f);
}

/* Creates and sets up both operators (weights packed) for x [N, 2, H, W]. fw holds conv1's and
 * conv2's float weight [O, C, 3, 3] and bias. Returns 0, or -1 with reason[] set (everything
 * released). */
static int xnn_f32_model_setup(xnn_f32_model *f, float *const *fw, const float *x, int64_t n,
                               int64_t h, int64_t w, int threads,
                               char reason[XNN_ANCHOR_REASON_BYTES]) {
  memset(f, 0, sizeof *f);
  f->x = x, f->n = n, f->h = h, f->w = w;
  if (xnn_anchor_init(reason) != 0) return -1;
  const size_t x_bytes = sizeof(float) * (size_t)(n * 2 * h * w);
  const size_t mid_bytes = sizeof(float) * (size_t)(n * 64 * (h - 2) * (w - 2));
  const size_t y_bytes = sizeof(float) * (size_t)(n * 128 * (h - 4) * (w - 4));
  f->x_nhwc = malloc(x_bytes + XNN_EXTRA_BYTES);
  f->mid = malloc(mid_bytes + XNN_EXTRA_BYTES); /* conv2's input */
  f->y_nhwc = malloc(y_bytes);
  f->y = malloc(y_bytes);
  float *w1 = malloc(sizeof(float) * 64 * 2 * 9), *w2 = malloc(sizeof(float) * 128 * 64 * 9);
  int rc = -1;
  if (!f->x_nhwc || !f->mid || !f->y_nhwc || !f->y || !w1 || !w2) {
    snprintf(reason, XNN_ANCHOR_REASON_BYTES, "out of memory");
    goto done;
  }
  if (xnn_anchor_pool_create(threads, &f->pool) != 0) {
    snprintf(reason, XNN_ANCHOR_REASON_BYTES, "pthreadpool_create(%d) failed", threads);
    goto done;
  }
  xnn_weights_ohwi(fw[0], 64, 2, 3, 3, sizeof(float), w1);
  xnn_weights_ohwi(fw[2], 128, 64, 3, 3, sizeof(float), w2);
  enum xnn_status s = xnn_create_convolution2d_nhwc_f32(0, 0, 0, 0, 3, 3, 1, 1, 1, 1, 1, 2, 64, 2,
                                                        64, w1, fw[1], 0.0f, INFINITY, 0, &f->c1);
  if (s != xnn_status_success) {
    xnn_anchor_create_failed(reason, "xnn_create_convolution2d_nhwc_f32", s, 1.0);
    goto done;
  }
  s = xnn_create_convolution2d_nhwc_f32(0, 0, 0, 0, 3, 3, 1, 1, 1, 1, 1, 64, 128, 64, 128, w2,
                                        fw[3], 0.0f, INFINITY, 0, &f->c2);
  if (s != xnn_status_success) {
    xnn_anchor_create_failed(reason, "xnn_create_convolution2d_nhwc_f32", s, 1.0);
    goto done;
  }
  s = xnn_setup_convolution2d_nhwc_f32(f->c1, (size_t)n, (size_t)h, (size_t)w, f->x_nhwc, f->mid,
                                       f->pool);
  if (s == xnn_status_success) {
    s = xnn_setup_convolution2d_nhwc_f32(f->c2, (size_t)n, (size_t)(h - 2), (size_t)(w - 2), f->mid,
                                         f->y_nhwc, f->pool);
  }
  if (s != xnn_status_success) {
    xnn_anchor_create_failed(reason, "xnn_setup_convolution2d_nhwc_f32", s, 1.0);
    goto done;
  }
  rc = 0;
done:
  free(w1);
  free(w2);
  if (rc != 0) xnn_f32_model_teardown(f);
  return rc;
}
#endif

/* The converted model built directly from given quantization parameters (PyTorch's, so that the
 * outputs can be compared bit for bit): qp = [input scale, input zero point, conv1 output scale,
 * zero point, conv2 output scale, zero point, conv1 weight scales (64), conv2 weight scales (128)];
 * weight zero points are 0 (per-channel symmetric, as get_default_qconfig("onednn")). fw holds
 * conv1's and conv2's float weight and bias. */
static cq_status build_from_qparams(const cq_tensor *qp, float *const *fw, cq_module **out) {
  *out = NULL;
  if (qp->dtype != CQ_F64 || qp->ndim != 1 || qp->shape[0] != 6 + 64 + 128) {
    return cq_fail(CQ_EINVAL, "the qparams file must be float64 [198]");
  }
  const double *v = qp->data;
  cq_module *mods[6] = {NULL, NULL, NULL, NULL, NULL, NULL};
  cq_qparams wq[2], yq[2];
  memset(wq, 0, sizeof wq);
  memset(yq, 0, sizeof yq);
  cq_status st = cq_qmodule_quantize(&mods[0], (float)v[0], (int32_t)v[1], CQ_QUINT8);
  const int64_t chans[2] = {64, 128};
  int64_t off = 6;
  for (int i = 0; i < 2 && st == CQ_OK; i++) {
    st = cq_qparams_init(&wq[i], CQ_QINT8, CQ_PER_CHANNEL_SYMMETRIC, chans[i], 0);
    if (st == CQ_OK) st = cq_qparams_init(&yq[i], CQ_QUINT8, CQ_PER_TENSOR_AFFINE, 1, -1);
    if (st != CQ_OK) break;
    for (int64_t c = 0; c < chans[i]; c++) {
      wq[i].scale[c] = (float)v[off + c];
      wq[i].zero_point[c] = 0;
    }
    off += chans[i];
    yq[i].scale[0] = (float)v[2 + 2 * i];
    yq[i].zero_point[0] = (int32_t)v[3 + 2 * i];
    cq_conv_options o = i == 0 ? cq_conv_defaults(2, 64, 3, 3) : cq_conv_defaults(64, 128, 3, 3);
    st = cq_qmodule_conv(&mods[1 + 2 * i], &o, 2, fw[2 * i], fw[2 * i + 1], &wq[i], &yq[i], 1,
                         CQ_BACKEND_ONEDNN);
    if (st == CQ_OK) st = cq_identity(&mods[2 + 2 * i]);
  }
  if (st == CQ_OK) st = cq_qmodule_dequantize(&mods[5]);
  if (st == CQ_OK) {
    st = cq_sequential(out, 6, mods);
  } else {
    for (int i = 0; i < 6; i++) cq_module_free(mods[i]);
  }
  for (int i = 0; i < 2; i++) {
    cq_qparams_release(&wq[i]);
    cq_qparams_release(&yq[i]);
  }
  return st;
}

static int seed_model(const char *weights, const char *calib_path, const char *input_path,
                      const char *output_path, const char *qparams_path, const op_options *opt,
                      int threads) {
  cq_module *c1 = NULL, *r1 = NULL, *c2 = NULL, *r2 = NULL, *m = NULL;
  cq_tensor *calib = NULL, *x = NULL, *y = NULL, *qp = NULL;
  cq_ctx *ctx = NULL;
  float *fw[4] = {NULL, NULL, NULL, NULL};
  int rc = 1;
  cq_status st;
#define TRY(expr)                                                           \
  do {                                                                      \
    st = (expr);                                                            \
    if (st != CQ_OK) {                                                      \
      fprintf(stderr, "bench_qconv: %s: %s\n", #expr, cq_last_error());     \
      goto done;                                                            \
    }                                                                       \
  } while (0)
  TRY(cq_set_num_threads(threads));
  set_omp_threads(threads); /* before any oneDNN primitive is created */
  cq_conv_options o1 = cq_conv_defaults(2, 64, 3, 3), o2 = cq_conv_defaults(64, 128, 3, 3);
  TRY(cq_conv2d(&c1, &o1));
  TRY(cq_relu(&r1));
  TRY(cq_conv2d(&c2, &o2));
  TRY(cq_relu(&r2));
  cq_module *layers[4] = {c1, r1, c2, r2};
  c1 = r1 = c2 = r2 = NULL;
  TRY(cq_sequential(&m, 4, layers));
  TRY(cq_load_safetensors(m, weights, 1));
  cq_module_train(m, 0);
  /* keep the float weights for oneDNN's fp32 anchor */
  static const char *const names[4] = {"0.weight", "0.bias", "2.weight", "2.bias"};
  for (int i = 0; i < 4; i++) {
    const cq_named_tensor *t = cq_module_find_tensor(m, names[i]);
    if (!t) {
      fprintf(stderr, "bench_qconv: %s\n", cq_last_error());
      goto done;
    }
    fw[i] = malloc(cq_tensor_nbytes(t->tensor));
    memcpy(fw[i], t->tensor->data, cq_tensor_nbytes(t->tensor));
  }
  if (qparams_path) {
    cq_module_free(m);
    m = NULL;
    TRY(cq_npy_load(qparams_path, &qp));
    TRY(build_from_qparams(qp, fw, &m));
    TRY(cq_ctx_create(&ctx));
  } else {
    const char *first[2] = {"0", "1"}, *second[2] = {"2", "3"};
    TRY(cq_fuse_modules(m, 2, first));
    TRY(cq_fuse_modules(m, 2, second));
    cq_module *plain = m;
    m = NULL;
    TRY(add_stubs(plain, &m));
    cq_module_train(m, 0);
    cq_qconfig qconfig;
    TRY(cq_get_default_qconfig(CQ_BACKEND_ONEDNN, 0, &qconfig));
    TRY(cq_module_set_qconfig(m, &qconfig));
    TRY(cq_prepare(m));
    TRY(cq_ctx_create(&ctx));
    TRY(cq_npy_load(calib_path, &calib));
    if (calib->dtype != CQ_F32 || calib->ndim != 5) {
      fprintf(stderr, "bench_qconv: %s must be float32 [B, N, C, H, W]\n", calib_path);
      goto done;
    }
    const size_t per = (size_t)(calib->shape[1] * calib->shape[2] * calib->shape[3] *
                                calib->shape[4]);
    for (int64_t i = 0; i < calib->shape[0]; i++) {
      cq_tensor *xb = NULL, *yb = NULL;
      TRY(cq_tensor_wrap(&xb, CQ_F32, 4, calib->shape + 1, (float *)calib->data + (size_t)i * per));
      st = cq_module_forward1(m, ctx, xb, &yb);
      cq_tensor_free(xb);
      cq_ctx_reset(ctx);
      TRY(st);
    }
    cq_set_quantized_engine(CQ_BACKEND_ONEDNN);
    TRY(cq_convert(m));
  }
  TRY(cq_npy_load(input_path, &x));
  if (x->dtype != CQ_F32 || x->ndim != 4 || x->shape[1] != 2) {
    fprintf(stderr, "bench_qconv: %s must be float32 [N, 2, H, W]\n", input_path);
    goto done;
  }
  TRY(cq_module_forward1(m, ctx, x, &y));
  TRY(cq_npy_save(output_path, y));
  model_bench mb = {m, ctx, x, 0};
  model_call(&mb);
  const long calls = calibrate(model_call, &mb, opt->min_ms);
  double *ms = calloc((size_t)opt->reps, sizeof(double));
#ifdef CQ_HAVE_DNNL
  const int64_t n = x->shape[0], h = x->shape[2], w = x->shape[3];
  float *fy = malloc(sizeof(float) * (size_t)(n * 128 * (h - 4) * (w - 4)));
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  f32_model fm;
  if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success ||
      dnnl_stream_create(&stream, engine, dnnl_stream_default_flags) != dnnl_success ||
      f32_model_setup(&fm, engine, stream, fw[0], fw[1], fw[2], fw[3], x->data, fy, n, h, w) != 0) {
    goto done;
  }
  f32_model_call(&fm);
  const long f_calls = calibrate(f32_model_call, &fm, opt->min_ms);
  double *f_ms = calloc((size_t)opt->reps, sizeof(double));
#endif
#ifdef CQ_HAVE_XNNPACK
  char xf_reason[XNN_ANCHOR_REASON_BYTES] = "";
  xnn_f32_model xf;
  const int xf_ok = xnn_f32_model_setup(&xf, fw, x->data, x->shape[0], x->shape[2], x->shape[3],
                                        threads, xf_reason) == 0;
  double *xf_ms = calloc((size_t)opt->reps, sizeof(double));
  long xf_calls = 0;
  if (xf_ok) {
    xnn_f32_model_call(&xf);
    xf_calls = calibrate(xnn_f32_model_call, &xf, opt->min_ms);
    xnn_anchor_pool_park(xf.pool);
  }
#endif
  for (int r = 0; r < opt->reps; r++) {
    pause_ms(30);
    ms[r] = time_batch(model_call, &mb, calls);
#ifdef CQ_HAVE_DNNL
    pause_ms(30);
    f_ms[r] = time_batch(f32_model_call, &fm, f_calls);
#endif
#ifdef CQ_HAVE_XNNPACK
    if (xf_ok) {
      pause_ms(30);
      xf_ms[r] = time_batch(xnn_f32_model_call, &xf, xf_calls);
      xnn_anchor_pool_park(xf.pool);
    }
#endif
  }
#if defined(CQ_HAVE_XNNPACK) && defined(CQ_HAVE_DNNL)
  /* the two float anchors run the same float model: their outputs should agree to float rounding */
  double xf_vs_dnnl = 0.0;
  if (xf_ok) {
    const size_t yn = (size_t)(x->shape[0] * 128 * (x->shape[2] - 4) * (x->shape[3] - 4));
    for (size_t i = 0; i < yn; i++) {
      const double dd = fabs((double)xf.y[i] - (double)fy[i]);
      xf_vs_dnnl = dd > xf_vs_dnnl ? dd : xf_vs_dnnl;
    }
  }
#endif
  const double med = median(ms, opt->reps), mn = minimum(ms, opt->reps);
  printf("{\"model\": \"seed static (QuantStub, ConvReLU2d(2, 64, 3), ConvReLU2d(64, 128, 3), "
         "DeQuantStub), onednn engine\", \"threads\": %d, \"reps\": %d, \"cquant_ms\": %.5f, "
         "\"cquant_ms_min\": %.5f, \"cquant_model\": \"", threads, opt->reps, med, mn);
  char *repr = cq_module_repr_alloc(m);
  for (const char *c = repr ? repr : ""; *c; c++) {
    if (*c == '\n') {
      printf("\\n");
    } else if (*c == '"' || *c == '\\') {
      printf("\\%c", *c);
    } else {
      putchar(*c);
    }
  }
  free(repr);
  printf("\"");
#ifdef CQ_HAVE_XNNPACK
  if (xf_ok) {
    const double xmed = median(xf_ms, opt->reps), xmn = minimum(xf_ms, opt->reps);
    printf(", \"xnnpack_f32_ms\": %.5f, \"xnnpack_f32_ms_min\": %.5f, \"xnnpack_f32_over_cquant\": %.3f",
           xmed, xmn, xmed / med);
#ifdef CQ_HAVE_DNNL
    printf(", \"xnnpack_f32_max_abs_diff_vs_onednn_f32\": %.3g", xf_vs_dnnl);
#endif
    if (xf.failed) mb.failed = 1;
    xnn_f32_model_teardown(&xf);
  } else {
    printf(", \"xnnpack_f32\": \"unsupported: ");
    xnn_anchor_print_escaped(xf_reason);
    printf("\"");
  }
  free(xf_ms);
#endif
#ifdef CQ_HAVE_DNNL
  const double fmed = median(f_ms, opt->reps), fmn = minimum(f_ms, opt->reps);
  /* oneDNN's fp32 output against the float model's: the caller gets the max difference */
  printf(", \"onednn_f32_ms\": %.5f, \"onednn_f32_ms_min\": %.5f, \"onednn_f32_impl\": [\"%s\", "
         "\"%s\"], \"f32_over_cquant\": %.3f",
         fmed, fmn, fm.c1.impl, fm.c2.impl, fmed / med);
  free(f_ms);
  free(fy);
  if (fm.failed) goto done;
  f32_model_teardown(&fm);
  dnnl_stream_destroy(stream);
  dnnl_engine_destroy(engine);
#endif
  printf("}\n");
  free(ms);
  rc = mb.failed;
done:
  for (int i = 0; i < 4; i++) free(fw[i]);
  cq_ctx_free(ctx);
  cq_module_free(c1);
  cq_module_free(r1);
  cq_module_free(c2);
  cq_module_free(r2);
  cq_module_free(m);
  cq_tensor_free(calib);
  cq_tensor_free(x);
  cq_tensor_free(qp);
  return rc;
#undef TRY
}

/* ---- main ----------------------------------------------------------------------------------- */

static void usage(void) {
  fprintf(stderr,
          "usage: bench_qconv [--shape N,C,H,W,OC,KH,KW[,STRIDE,PAD,GROUPS]]... [--threads T]... "
          "[--reps R] [--min-ms MS] [--rule onednn|fbgemm|qnnpack] [--relu] [--x-zp Z]\n"
          "       bench_qconv --seed-model WEIGHTS.safetensors CALIB.npy INPUT.npy OUTPUT.npy "
          "[--qparams QP.npy] [--reps R] [--min-ms MS] [--threads T]\n");
}

int main(int argc, char **argv) {
  shape shapes[MAX_SHAPES];
  int n_shapes = 0, threads_list[MAX_THREADS_LIST], n_threads = 0;
  op_options opt = {.reps = 9, .min_ms = 20.0, .rule = CQ_RULE_ONEDNN, .relu = 0, .x_zp = 0};
  const char *seed[4] = {NULL, NULL, NULL, NULL}, *qparams = NULL;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--shape") && i + 1 < argc && n_shapes < MAX_SHAPES) {
      if (parse_shape(argv[++i], &shapes[n_shapes]) != 0) {
        usage();
        return 2;
      }
      n_shapes++;
    } else if (!strcmp(argv[i], "--threads") && i + 1 < argc && n_threads < MAX_THREADS_LIST) {
      threads_list[n_threads++] = atoi(argv[++i]);
      if (threads_list[n_threads - 1] < 1) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
      opt.reps = atoi(argv[++i]);
      if (opt.reps < 1 || opt.reps > 1000) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--min-ms") && i + 1 < argc) {
      opt.min_ms = atof(argv[++i]);
    } else if (!strcmp(argv[i], "--rule") && i + 1 < argc) {
      if (cq_requant_rule_parse(argv[++i], &opt.rule) != CQ_OK) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--relu")) {
      opt.relu = 1;
    } else if (!strcmp(argv[i], "--x-zp") && i + 1 < argc) {
      opt.x_zp = atoi(argv[++i]);
      if (opt.x_zp < 0 || opt.x_zp > 255) {
        usage();
        return 2;
      }
    } else if (!strcmp(argv[i], "--seed-model") && i + 4 < argc) {
      for (int k = 0; k < 4; k++) seed[k] = argv[++i];
    } else if (!strcmp(argv[i], "--qparams") && i + 1 < argc) {
      qparams = argv[++i];
    } else {
      usage();
      return 2;
    }
  }
  if (seed[0]) {
    return seed_model(seed[0], seed[1], seed[2], seed[3], qparams, &opt,
                      n_threads ? threads_list[0] : 1);
  }
  if (n_shapes == 0) {
    parse_shape("1,2,28,28,64,3,3", &shapes[n_shapes++]);
    parse_shape("1,64,26,26,128,3,3", &shapes[n_shapes++]);
    parse_shape("1,64,56,56,64,3,3,1,1,64", &shapes[n_shapes++]);
  }
  if (n_threads == 0) {
    threads_list[0] = 1, threads_list[1] = 2;
    n_threads = 2;
  }
  cq_isa isa;
  if (cq_isa_active(&isa) != CQ_OK) {
    fprintf(stderr, "bench_qconv: %s\n", cq_last_error());
    return 1;
  }
  printf("{\n  \"benchmark\": \"quantized conv2d u8s8->u8, cquant vs oneDNN int8 convolution vs "
         "XNNPACK convolution2d_nhwc_qc8 (and _qu8)\",\n");
  printf("  \"cquant_isa\": \"%s\",\n  \"rule\": \"%s\",\n  \"relu\": %s,\n  \"x_zp\": %d,\n"
         "  \"reps\": %d,\n  \"min_batch_ms\": %g,\n",
         cq_isa_name(isa), cq_requant_rule_name(opt.rule), opt.relu ? "true" : "false",
         (int)opt.x_zp, opt.reps, opt.min_ms);
#ifdef CQ_HAVE_DNNL
  printf("  \"onednn\": true,\n");
#else
  printf("  \"onednn\": false,\n");
#endif
#ifdef CQ_HAVE_XNNPACK
  printf("  \"xnnpack\": true,\n  \"xnnpack_operator\": \"convolution2d_nhwc_qc8 (per-channel weight "
         "scales; the NHWC input with its sign bit flipped); convolution2d_nhwc_qu8 (the NHWC input; "
         "one weight scale: timed only)\",\n");
#else
  printf("  \"xnnpack\": false,\n");
#endif
  printf("  \"results\": [");
  int first = 1, status = 0;
  srand(12345);
  for (int si = 0; si < n_shapes; si++) {
    if (run_shape(&shapes[si], threads_list, n_threads, &opt, &first) != 0) status = 1;
  }
  printf("\n  ]\n}\n");
  return status;
}

/* Quantized convolution kernels (src/kernels/conv): every ISA path this machine supports, every
 * path (depthwise on planes and with the channels in the lanes, direct, implicit GEMM, im2col
 * GEMM) against the naive reference (reference.c + the scalar requantization forms of requant.h),
 * bit for bit, in NCHW and NHWC input and output layouts, with 1, 2 and 3 threads. Cases: the
 * shapes the kernels tile by (channels below, at and above 16 / 64, output widths around the 16-
 * and 64-position vectors), small C = 1..4, strides 1..4, padding, dilation, groups (depthwise,
 * channel multipliers, grouped), 1x1 / 1xk / kx1 / 5x5 / 7x7 kernels, kernels as large as the
 * input, Conv1d shapes (height 1), zero points 0/128/255 and random, nonzero weight zero points
 * (per tensor and per channel), per-channel scales, ReLU, the three engine rules, output scales
 * that saturate at both ends and accumulators that wrap int32; bytes outside the output stay
 * untouched. Also: argument errors, workspace checks and allocation failures. CQ_TEST_CASES=N runs
 * N random cases (default 300). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "clamp_ref.h"
#include "core/cpu.h"
#include "core/threadpool.h"
#include "cquant/cquant.h"
#include "kernels/conv/qconv.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}
static float rnd_unit(void) { return (float)(rnd() & 0xffffff) / 16777216.0f; }

static cq_isa isas[CQ_ISA_COUNT];
static int n_isas;
static long runs_per_isa[CQ_ISA_COUNT];
static long runs_per_path[4];
static cq_threadpool *pool2, *pool3;

typedef struct conv_case {
  cq_conv_geom g;
  int64_t batch, h, w;
  int32_t x_zp, y_zp;
  int per_channel;
  int w_zp_mode; /* 0 none, 1 per-tensor nonzero, 2 per channel */
  int has_bias, relu;
  int clamp;     /* cq_qgemm_quant's output clamp [clamp_lo, clamp_hi] (a folded ReLU6) */
  int32_t clamp_lo, clamp_hi;
  cq_requant_rule rule;
  int extreme;   /* 1: x = 255, w = -128 (largest products); 2: tiny output scale (saturation) */
  int all_layouts;
} conv_case;

static void describe(const conv_case *c, char *buf, size_t cap) {
  const cq_conv_geom *g = &c->g;
  snprintf(buf, cap, "N=%lld C=%lld H=%lld W=%lld O=%lld k=%lldx%lld s=%lldx%lld p=%lldx%lld "
           "d=%lldx%lld groups=%lld zx=%d zy=%d pc=%d wzp=%d bias=%d relu=%d clamp=%d [%d, %d] "
           "rule=%s extreme=%d",
           (long long)c->batch, (long long)g->in_channels, (long long)c->h, (long long)c->w,
           (long long)g->out_channels, (long long)g->kernel[0], (long long)g->kernel[1],
           (long long)g->stride[0], (long long)g->stride[1], (long long)g->padding[0],
           (long long)g->padding[1], (long long)g->dilation[0], (long long)g->dilation[1],
           (long long)g->groups, c->x_zp, c->y_zp, c->per_channel, c->w_zp_mode, c->has_bias,
           c->relu, c->clamp, c->clamp_lo, c->clamp_hi, cq_requant_rule_name(c->rule), c->extreme);
}

/* [N, C, H, W] <-> [N, H, W, C] */
static void to_nhwc(const uint8_t *src, uint8_t *dst, int64_t n, int64_t c, int64_t hw) {
  for (int64_t b = 0; b < n; b++) {
    for (int64_t ch = 0; ch < c; ch++) {
      for (int64_t q = 0; q < hw; q++) dst[(b * hw + q) * c + ch] = src[(b * c + ch) * hw + q];
    }
  }
}

static int path_index(const char *name) {
  if (!strcmp(name, "depthwise")) return 0;
  if (!strcmp(name, "implicit")) return 1;
  return !strcmp(name, "direct") ? 3 : 2;
}

static void run_case(const conv_case *c) {
  const cq_conv_geom *g = &c->g;
  const int64_t C = g->in_channels, O = g->out_channels, cg = C / g->groups;
  const int64_t kdim = cg * g->kernel[0] * g->kernel[1];
  const int64_t ho = cq_qconv_out_size(c->h, g->kernel[0], g->stride[0], g->padding[0],
                                       g->dilation[0]);
  const int64_t wo = cq_qconv_out_size(c->w, g->kernel[1], g->stride[1], g->padding[1],
                                       g->dilation[1]);
  if (ho < 1 || wo < 1) return;
  const size_t xn = (size_t)(c->batch * C * c->h * c->w), yn = (size_t)(c->batch * O * ho * wo);
  uint8_t *x = malloc(xn + 1), *x_nhwc = malloc(xn + 1);
  int8_t *w = malloc((size_t)(O * kdim));
  float *w_scale = malloc(sizeof(float) * (size_t)O), *bias = malloc(sizeof(float) * (size_t)O);
  int32_t *w_zp = malloc(sizeof(int32_t) * (size_t)O), *acc = malloc(sizeof(int32_t) * (yn + 1));
  uint8_t *want = malloc(yn + 1), *want_nhwc = malloc(yn + 1), *got = malloc(yn + 64);
  for (size_t i = 0; i < xn; i++) x[i] = c->extreme == 1 ? 255 : (uint8_t)rnd();
  for (int64_t i = 0; i < O * kdim; i++) w[i] = c->extreme == 1 ? -128 : (int8_t)rnd();
  for (int64_t o = 0; o < O; o++) {
    w_scale[o] = 0.0005f + rnd_unit() * 0.01f;
    bias[o] = (rnd_unit() - 0.5f) * 20.0f;
    w_zp[o] = c->w_zp_mode == 2 ? (int32_t)(rnd() % 256) - 128 : c->w_zp_mode == 1 ? -37 : 0;
  }
  if (c->w_zp_mode == 2) w_zp[0] = 127;
  const float x_scale = 0.01f + rnd_unit() * 0.05f;
  float y_scale = 0.002f + rnd_unit() * 0.02f * (float)sqrt((double)kdim);
  if (c->extreme == 2) y_scale = 1e-9f;
  cq_qconv_packed *packed = NULL;
  CHECK_OK(cq_qconv_pack(g, w, w_scale, c->w_zp_mode ? w_zp : NULL, c->per_channel,
                         c->has_bias ? bias : NULL, &packed));
  /* expected bytes: the reference accumulators through the scalar forms */
  int32_t *zp_all = malloc(sizeof(int32_t) * (size_t)O);
  for (int64_t o = 0; o < O; o++) zp_all[o] = c->w_zp_mode ? w_zp[c->per_channel ? o : 0] : 0;
  cq_qconv_reference_acc(g, x, c->batch, c->h, c->w, c->x_zp, w, zp_all, acc);
  cq_requant_params rq;
  CHECK_OK(cq_requant_params_create(O, &rq));
  cq_status rst = cq_requant_params_set_static(&rq, c->rule, x_scale, w_scale, c->per_channel,
                                               c->has_bias ? bias : NULL, y_scale, c->y_zp,
                                               c->relu);
  if (rst == CQ_OK) rst = tb_clamp_reference(c->clamp, c->clamp_lo, c->clamp_hi, c->rule, &rq);
  const int64_t plane = ho * wo;
  for (size_t i = 0; i < yn && rst == CQ_OK; i++) {
    const int64_t o = (int64_t)(i / (size_t)plane) % O;
    want[i] = rq.kind == CQ_OUT_U8_INT
                  ? cq_requant_u8_int((int32_t)((uint32_t)acc[i] + (uint32_t)rq.ibias[o]),
                                      rq.mult[o], rq.y_zp, rq.y_min, rq.y_max)
                  : cq_requant_u8_float(acc[i], rq.scale[o], rq.fbias[o], rq.mult[o], rq.y_zp,
                                        (float)(rq.y_min - rq.y_zp), (float)(rq.y_max - rq.y_zp));
  }
  cq_requant_params_release(&rq);
  to_nhwc(x, x_nhwc, c->batch, C, c->h * c->w);
  to_nhwc(want, want_nhwc, c->batch, O, plane);
  cq_qgemm_quant q = {x_scale, c->x_zp, y_scale, c->y_zp, c->relu, c->rule,
                      c->clamp, c->clamp_lo, c->clamp_hi};
  for (int ii = 0; ii < n_isas && packed; ii++) {
    cq_qconv_op *op = NULL;
    cq_status st = cq_qconv_create_isa(packed, &q, isas[ii], &op);
    CHECK_INT_EQ(st, rst); /* same refusals as the requantization record */
    if (!op) continue;
    cq_threadpool *pools[3] = {NULL, pool2, pool3};
    for (int t = 0; t < 3; t++) {
      if (t > 0 && rnd() % 2) continue; /* more threads on a sample */
      for (int lay = 0; lay < 4; lay++) {
        if (lay > 0 && !c->all_layouts && rnd() % 4) continue;
        const int xl = lay & 1, yl = lay >> 1;
        const size_t bytes = cq_qconv_workspace_size(
            op, c->h, c->w, xl ? CQ_CONV_NHWC : CQ_CONV_NCHW, yl ? CQ_CONV_NHWC : CQ_CONV_NCHW,
            cq_threadpool_threads(pools[t]));
        void *ws = malloc(bytes + 1);
        memset(got, 0xa5, yn + 64);
        CHECK_OK(cq_qconv_run(op, xl ? x_nhwc : x, xl ? CQ_CONV_NHWC : CQ_CONV_NCHW, c->batch,
                              c->h, c->w, got, yl ? CQ_CONV_NHWC : CQ_CONV_NCHW, ws, bytes,
                              pools[t]));
        free(ws);
        const uint8_t *ref = yl ? want_nhwc : want;
        size_t at = 0;
        while (at < yn && ref[at] == got[at]) at++;
        int guard_ok = 1;
        for (size_t i = yn; i < yn + 64; i++) guard_ok &= got[i] == 0xa5;
        if (at < yn || !guard_ok) {
          char buf[400];
          describe(c, buf, sizeof buf);
          check_report(__FILE__, __LINE__, "%s (%s path, %s in, %s out, %d thread(s)) differs "
                       "from the reference: %s; first at byte %zu of %zu: %d != %d%s",
                       cq_isa_name(isas[ii]), cq_qconv_path_name(op), xl ? "NHWC" : "NCHW",
                       yl ? "NHWC" : "NCHW", t + 1, buf, at, yn, at < yn ? got[at] : 0,
                       at < yn ? ref[at] : 0, guard_ok ? "" : " (wrote past the output)");
        } else {
          check_passed++;
        }
      }
    }
    runs_per_isa[isas[ii]]++;
    runs_per_path[path_index(cq_qconv_path_name(op))]++;
    cq_qconv_destroy(op);
  }
  cq_qconv_packed_destroy(packed);
  free(x);
  free(x_nhwc);
  free(w);
  free(w_scale);
  free(bias);
  free(w_zp);
  free(zp_all);
  free(acc);
  free(want);
  free(want_nhwc);
  free(got);
}

static void base_case(conv_case *c, int64_t C, int64_t O, int64_t k, int64_t h, int64_t w) {
  memset(c, 0, sizeof *c);
  c->g = (cq_conv_geom){.in_channels = C, .out_channels = O, .groups = 1, .kernel = {k, k},
                        .stride = {1, 1}, .padding = {0, 0}, .dilation = {1, 1}};
  c->batch = 1;
  c->h = h;
  c->w = w;
  static const int32_t zps[] = {0, 128, 255};
  c->x_zp = rnd() % 4 ? zps[rnd() % 3] : (int32_t)(rnd() % 256);
  c->y_zp = rnd() % 4 ? zps[rnd() % 3] : (int32_t)(rnd() % 256);
  c->per_channel = (int)(rnd() % 2);
  c->has_bias = rnd() % 4 != 0;
  c->relu = (int)(rnd() % 2);
  c->rule = (cq_requant_rule)(rnd() % CQ_RULE_COUNT);
  if (rnd() % 3 == 0) { /* a folded ReLU6: from the zero point (or another byte) to a bound */
    c->clamp = 1;
    c->clamp_lo = rnd() % 2 ? c->y_zp : (int32_t)(rnd() % 200);
    c->clamp_hi = c->clamp_lo + (int32_t)(rnd() % (256 - (uint32_t)c->clamp_lo));
    if (rnd() % 4 == 0) c->clamp_hi = 255;
  }
}

static void random_case(conv_case *c) {
  static const int64_t chans[] = {1, 2, 3, 4, 5, 8, 15, 16, 17, 31, 32, 33, 48, 64, 65, 96};
  static const int64_t sizes[] = {1, 2, 3, 5, 7, 8, 13, 16, 17, 20, 31, 33};
  const int64_t k = (int64_t)(rnd() % 4) * 2 + 1; /* 1, 3, 5, 7 */
  base_case(c, chans[rnd() % 16], chans[rnd() % 16], k, sizes[rnd() % 12], sizes[rnd() % 12]);
  cq_conv_geom *g = &c->g;
  if (rnd() % 4 == 0) g->kernel[rnd() % 2] = 1 + rnd() % 3;
  for (int d = 0; d < 2; d++) {
    if (rnd() % 3 == 0) g->stride[d] = 1 + rnd() % 4;
    if (rnd() % 2 == 0) g->padding[d] = rnd() % (g->kernel[d] / 2 + 2);
    if (rnd() % 6 == 0) g->dilation[d] = 2 + rnd() % 2;
  }
  const uint32_t kind = rnd() % 5;
  if (kind == 0) { /* depthwise */
    g->out_channels = g->in_channels;
    g->groups = g->in_channels;
  } else if (kind == 1) { /* grouped (or depthwise with a channel multiplier) */
    static const int64_t gs[] = {2, 3, 4};
    const int64_t gr = gs[rnd() % 3];
    g->groups = gr;
    g->in_channels = gr * (1 + rnd() % 12);
    g->out_channels = gr * (1 + rnd() % 20);
  }
  c->batch = rnd() % 5 == 0 ? 2 : 1;
  c->w_zp_mode = rnd() % 5 == 0 ? (int)(1 + rnd() % 2) : 0;
  if (c->w_zp_mode == 2 && !c->per_channel) c->w_zp_mode = 1;
  if (c->rule == CQ_RULE_ONEDNN) c->w_zp_mode = 0; /* PyTorch's onednn refuses them */
  if (rnd() % 25 == 0) c->extreme = 2;
}

static void test_named_shapes(void) {
  conv_case c;
  /* the shapes and the seed model */
  base_case(&c, 2, 64, 3, 28, 28);
  c.all_layouts = 1;
  run_case(&c);
  base_case(&c, 64, 128, 3, 26, 26);
  c.all_layouts = 1;
  run_case(&c);
  base_case(&c, 64, 64, 3, 56, 56);
  c.g.groups = 64;
  c.g.padding[0] = c.g.padding[1] = 1;
  c.all_layouts = 1;
  run_case(&c);
  /* depthwise strides and kernels around the phase vectors */
  for (int64_t s = 1; s <= 4; s++) {
    for (int64_t k = 1; k <= 7; k += 2) {
      for (int64_t hw = 5; hw <= 70; hw += 13) {
        base_case(&c, 19, 19, k, hw, hw + s);
        c.g.groups = 19;
        c.g.stride[0] = c.g.stride[1] = s;
        c.g.padding[0] = c.g.padding[1] = k / 2;
        if (rnd() % 3 == 0) c.g.stride[0] = 1; /* flat rows with a column stride */
        if (rnd() % 4 == 0) c.g.dilation[1] = 2;
        c.w_zp_mode = c.rule == CQ_RULE_ONEDNN ? 0 : (int)(rnd() % 3);
        if (c.w_zp_mode == 2 && !c.per_channel) c.w_zp_mode = 1;
        run_case(&c);
      }
    }
  }
  /* channels in the lanes (>= 32 channels, 3 columns, up to 4 rows) on NHWC inputs read in
   * place: padding rows and columns, channel blocks with a tail, column strides, one-pixel and
   * one-row inputs */
  static const int64_t dwq_c[] = {32, 40, 64, 72, 133};
  static const int64_t dwq_hw[][2] = {{1, 1}, {1, 7}, {5, 4}, {9, 11}, {6, 2}, {4, 15}};
  for (int64_t kh = 1; kh <= 4; kh++) {
    for (int64_t sw = 1; sw <= 2; sw++) {
      for (int r = 0; r < 3; r++) {
        const int64_t C = dwq_c[rnd() % 5];
        const size_t hw = rnd() % 6;
        base_case(&c, C, C, 3, dwq_hw[hw][0], dwq_hw[hw][1]);
        c.g.groups = C;
        c.g.kernel[0] = kh;
        c.g.stride[0] = 1 + rnd() % 2;
        c.g.stride[1] = sw;
        c.g.padding[0] = rnd() % 3;
        c.g.padding[1] = rnd() % 2;
        c.w_zp_mode = 0;
        c.all_layouts = 1;
        run_case(&c);
      }
    }
  }
  /* channels in the lanes, 3x3 with stride_h 1: row pairs from four-row columns (odd row counts
   * leave a single last row), rows wider than one span of DWQ_SPAN_PAIR outputs */
  for (int r = 0; r < 6; r++) {
    const int64_t C = dwq_c[rnd() % 5];
    base_case(&c, C, C, 3, 2 + (int64_t)(rnd() % 6), r < 3 ? 67 + (int64_t)(rnd() % 80) : 9);
    c.g.groups = C;
    c.g.stride[1] = 1 + r % 2;
    c.g.padding[0] = rnd() % 2;
    c.g.padding[1] = rnd() % 2;
    c.w_zp_mode = 0;
    c.all_layouts = 1;
    run_case(&c);
  }
  /* channels in the lanes, 32 channels with stride_w 1: pairs of positions per vector (odd
   * widths leave a last half pair, padding columns a half-padded column at each edge) */
  for (int64_t kh = 1; kh <= 4; kh++) {
    for (int64_t pw = 0; pw <= 1; pw++) {
      base_case(&c, 32, 32, 3, 2 + (int64_t)(rnd() % 7), 4 + (int64_t)(rnd() % 13) + pw);
      c.g.groups = 32;
      c.g.kernel[0] = kh;
      c.g.stride[0] = kh == 3 ? 1 : 1 + rnd() % 2;
      c.g.padding[0] = rnd() % 2;
      c.g.padding[1] = pw;
      c.w_zp_mode = 0;
      c.all_layouts = 1;
      run_case(&c);
    }
  }
  /* channels in the lanes with other kernels (columns built into a buffer, 1-2 dword groups per
   * column): 5x5, 7x7, 8-row, 1-column and wide rows (more than one buffer of outputs) */
  static const int64_t dwq_k[][2] = {{5, 5}, {7, 7}, {8, 2}, {5, 1}, {6, 8}, {2, 5}};
  for (size_t ki = 0; ki < sizeof dwq_k / sizeof dwq_k[0]; ki++) {
    for (int64_t sw = 1; sw <= 2; sw++) {
      const int64_t C = dwq_c[rnd() % 5];
      base_case(&c, C, C, 1, 5 + (int64_t)(rnd() % 8), rnd() % 2 ? 6 : 37);
      c.g.groups = C;
      c.g.kernel[0] = dwq_k[ki][0];
      c.g.kernel[1] = dwq_k[ki][1];
      c.g.stride[0] = 1 + rnd() % 2;
      c.g.stride[1] = sw;
      c.g.padding[0] = dwq_k[ki][0] / 2;
      c.g.padding[1] = rnd() % 2 ? dwq_k[ki][1] / 2 : 0;
      c.w_zp_mode = 0;
      c.all_layouts = 1;
      run_case(&c);
    }
  }
  /* small C: the direct kernel on CPUs with VBMI2, else the small-C implicit GEMM */
  for (int64_t C = 1; C <= 4; C++) {
    for (int64_t k = 1; k <= 7; k += 2) {
      base_case(&c, C, 16 * C + 7, k, 23, 29);
      c.g.padding[0] = c.g.padding[1] = k / 2;
      c.all_layouts = C == 3;
      run_case(&c);
    }
  }
  /* small C on rows wider than one 64-position vector, with padding and a row stride */
  for (int64_t C = 1; C <= 3; C++) {
    base_case(&c, C, 24, 3, 9, 131);
    c.g.padding[0] = c.g.padding[1] = 1;
    c.g.stride[0] = C == 2 ? 2 : 1;
    c.all_layouts = 1;
    run_case(&c);
  }
  /* direct path (C <= 4, stride 1): kernel widths across one and two tap dwords, output channels
   * around the blocks of four, rows narrower than a phase and wider than a vector, a dilated
   * kernel height, padding */
  static const int64_t direct_k[][2] = {{1, 1}, {3, 3}, {2, 5}, {5, 7}, {7, 8}, {4, 4}, {1, 6}};
  static const int64_t direct_o[] = {1, 3, 4, 5, 17, 64};
  static const int64_t direct_w[] = {1, 2, 3, 9, 26, 63, 64, 65, 131};
  for (int64_t C = 1; C <= 4; C++) {
    for (size_t ki = 0; ki < sizeof direct_k / sizeof direct_k[0]; ki++) {
      base_case(&c, C, direct_o[rnd() % 6], 1, 3 + (int64_t)(rnd() % 9), direct_w[rnd() % 9]);
      c.g.kernel[0] = direct_k[ki][0];
      c.g.kernel[1] = direct_k[ki][1];
      c.g.padding[0] = rnd() % 2 ? direct_k[ki][0] / 2 : 0;
      c.g.padding[1] = rnd() % 2 ? direct_k[ki][1] / 2 : 0;
      if (rnd() % 4 == 0) c.g.dilation[0] = 2;
      c.all_layouts = ki == 1;
      run_case(&c);
    }
  }
  /* small C with a column stride (the first layers of ImageNet-style networks): the interleaved
   * image's rows in whole strides */
  for (int64_t C = 1; C <= 4; C++) {
    for (int64_t k = 3; k <= 7; k += 2) {
      base_case(&c, C, 8 * C + 5, k, 19 + C, 30 + k + C);
      c.g.stride[0] = 1 + rnd() % 2;
      c.g.stride[1] = 2 + (k == 5);
      c.g.padding[0] = c.g.padding[1] = k / 2;
      c.all_layouts = k == 3;
      run_case(&c);
    }
  }
  /* implicit path: widths around 16 and 32 positions, channels around 64 */
  static const int64_t widths[] = {14, 15, 16, 17, 18, 30, 31, 32, 33, 34, 47};
  for (size_t i = 0; i < sizeof widths / sizeof widths[0]; i++) {
    base_case(&c, 64, 64 + (int64_t)(rnd() % 3) * 32 - 32, 3, 9 + (int64_t)i % 4, widths[i]);
    c.g.padding[0] = c.g.padding[1] = rnd() % 2;
    run_case(&c);
  }
  /* 1x1, 1xk, kx1, Conv1d-like (height 1) */
  base_case(&c, 40, 70, 1, 11, 9);
  run_case(&c);
  base_case(&c, 24, 33, 3, 10, 12);
  c.g.kernel[0] = 1;
  run_case(&c);
  base_case(&c, 24, 33, 3, 10, 12);
  c.g.kernel[1] = 1;
  run_case(&c);
  base_case(&c, 12, 20, 5, 1, 50);
  c.g.kernel[0] = 1;
  c.g.padding[1] = 2;
  run_case(&c);
  /* kernel as large as the padded input (one output), stride larger than the kernel */
  base_case(&c, 16, 16, 7, 5, 5);
  c.g.padding[0] = c.g.padding[1] = 1;
  run_case(&c);
  base_case(&c, 16, 24, 2, 15, 15);
  c.g.stride[0] = c.g.stride[1] = 3;
  run_case(&c);
  /* int32 wrap: K = 36864 with x = 255, w = -128, and saturation at both ends */
  base_case(&c, 4096, 17, 3, 3, 3);
  c.extreme = 1;
  c.w_zp_mode = 0;
  run_case(&c);
  base_case(&c, 64, 20, 3, 6, 7);
  c.extreme = 2;
  run_case(&c);
  /* enough work for the thread pools to split it */
  base_case(&c, 32, 48, 3, 33, 41);
  c.batch = 2;
  run_case(&c);
  base_case(&c, 64, 96, 3, 28, 28); /* above the AMX kernels' own threshold (2^25 MACs) */
  c.all_layouts = 1;
  run_case(&c);
  /* few positions: the threads split the output channels (VNNI; AMX above its threshold) */
  base_case(&c, 64, 96, 3, 8, 10);
  c.all_layouts = 1;
  run_case(&c);
  base_case(&c, 256, 240, 3, 8, 8); /* 35M MACs */
  c.g.padding[0] = c.g.padding[1] = 1;
  c.all_layouts = 1;
  run_case(&c);
  base_case(&c, 48, 48, 3, 60, 50);
  c.g.groups = 48;
  c.g.padding[0] = c.g.padding[1] = 1;
  run_case(&c);
}

static void test_random(void) {
  const char *env = getenv("CQ_TEST_CASES");
  const int n = env ? atoi(env) : 300;
  conv_case c;
  for (int i = 0; i < n; i++) {
    random_case(&c);
    run_case(&c);
  }
}

static void test_errors(void) {
  cq_conv_geom g = {.in_channels = 4, .out_channels = 6, .groups = 2, .kernel = {3, 3},
                    .stride = {1, 1}, .padding = {0, 0}, .dilation = {1, 1}};
  int8_t w[6 * 2 * 9];
  memset(w, 1, sizeof w);
  const float s = 0.1f, bad_s = -1.0f;
  const int32_t zp_bad = 200;
  cq_qconv_packed *p = NULL;
  CHECK_STATUS(cq_qconv_pack(&g, w, &bad_s, NULL, 0, NULL, &p), CQ_EVALUE);
  CHECK(p == NULL);
  CHECK_STATUS(cq_qconv_pack(&g, w, &s, &zp_bad, 0, NULL, &p), CQ_EINVAL);
  CHECK_STATUS(cq_qconv_pack(&g, NULL, &s, NULL, 0, NULL, &p), CQ_EINVAL);
  cq_conv_geom bad = g;
  bad.groups = 3;
  CHECK_STATUS(cq_qconv_pack(&bad, w, &s, NULL, 0, NULL, &p), CQ_EINVAL);
  bad = g;
  bad.stride[1] = 0;
  CHECK_STATUS(cq_qconv_pack(&bad, w, &s, NULL, 0, NULL, &p), CQ_EINVAL);
  bad = g;
  bad.padding[0] = -1;
  CHECK_STATUS(cq_qconv_pack(&bad, w, &s, NULL, 0, NULL, &p), CQ_EINVAL);
  CHECK_OK(cq_qconv_pack(&g, w, &s, NULL, 0, NULL, &p));
  CHECK_INT_EQ(cq_qconv_packed_geom(p)->out_channels, 6);
  cq_qconv_op *op = NULL;
  cq_qgemm_quant q = {0.1f, 300, 0.2f, 3, 0, CQ_RULE_FBGEMM, 0, 0, 0};
  CHECK_STATUS(cq_qconv_create(p, &q, &op), CQ_EINVAL);
  q.x_zp = 3;
  q.y_scale = 0.0f;
  CHECK_STATUS(cq_qconv_create(p, &q, &op), CQ_EVALUE);
  q.y_scale = 0.2f;
  CHECK_STATUS(cq_qconv_create_isa(p, &q, CQ_ISA_COUNT, &op), CQ_EINVAL);
  for (int i = 0; i < CQ_ISA_COUNT; i++) {
    if (!cq_isa_supported((cq_isa)i)) {
      CHECK_STATUS(cq_qconv_create_isa(p, &q, (cq_isa)i, &op), CQ_EUNSUPPORTED);
    }
  }
  CHECK_OK(cq_qconv_create(p, &q, &op));
  uint8_t x[4 * 5 * 5], y[6 * 3 * 3];
  memset(x, 7, sizeof x);
  const size_t bytes = cq_qconv_workspace_size(op, 5, 5, CQ_CONV_NCHW, CQ_CONV_NCHW, 1);
  CHECK(bytes > 0);
  CHECK_INT_EQ(cq_qconv_workspace_size(op, 2, 2, CQ_CONV_NCHW, CQ_CONV_NCHW, 1), 0); /* no output */
  void *ws = malloc(bytes);
  CHECK_STATUS(cq_qconv_run(op, x, CQ_CONV_NCHW, 1, 5, 5, y, CQ_CONV_NCHW, ws, bytes - 1, NULL),
               CQ_EINVAL);
  CHECK_STATUS(cq_qconv_run(op, x, CQ_CONV_NCHW, 1, 2, 2, y, CQ_CONV_NCHW, ws, bytes, NULL),
               CQ_ESHAPE);
  CHECK_STATUS(cq_qconv_run(op, x, CQ_CONV_NCHW, -1, 5, 5, y, CQ_CONV_NCHW, ws, bytes, NULL),
               CQ_EINVAL);
  CHECK_STATUS(cq_qconv_run(op, NULL, CQ_CONV_NCHW, 1, 5, 5, y, CQ_CONV_NCHW, ws, bytes, NULL),
               CQ_EINVAL);
  CHECK_OK(cq_qconv_run(op, x, CQ_CONV_NCHW, 0, 5, 5, NULL, CQ_CONV_NCHW, NULL, 0, NULL));
  CHECK_OK(cq_qconv_run(op, x, CQ_CONV_NCHW, 1, 5, 5, y, CQ_CONV_NCHW, ws, bytes, NULL));
  free(ws);
  cq_qconv_destroy(op);
  cq_qconv_packed_destroy(p);
  cq_qconv_destroy(NULL);
  cq_qconv_packed_destroy(NULL);
}

static void test_alloc_failures(void) {
  cq_conv_geom g = {.in_channels = 8, .out_channels = 8, .groups = 2, .kernel = {3, 3},
                    .stride = {1, 1}, .padding = {1, 1}, .dilation = {1, 1}};
  int8_t w[8 * 4 * 9];
  for (size_t i = 0; i < sizeof w; i++) w[i] = (int8_t)(i * 7);
  const float s = 0.05f, b[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  int failures = 0, successes = 0;
  for (long n = 0; n < 100; n++) {
    cq_qconv_packed *p = NULL;
    cq_qconv_op *op = NULL;
    cq_qgemm_quant q = {0.1f, 3, 0.2f, 3, 1, CQ_RULE_QNNPACK, 0, 0, 0};
    cq_debug_fail_alloc_after(n);
    cq_status st = cq_qconv_pack(&g, w, &s, NULL, 0, b, &p);
    if (st == CQ_OK) st = cq_qconv_create_isa(p, &q, CQ_ISA_SCALAR, &op);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      successes++;
    } else {
      CHECK_INT_EQ(st, CQ_ENOMEM);
      CHECK(op == NULL);
      failures++;
    }
    cq_qconv_destroy(op);
    cq_qconv_packed_destroy(p);
    if (st == CQ_OK) break;
  }
  CHECK(failures > 5);
  CHECK_INT_EQ(successes, 1);
}

int main(void) {
  for (int i = 0; i < CQ_ISA_COUNT; i++) {
    if (cq_isa_supported((cq_isa)i)) {
      isas[n_isas++] = (cq_isa)i;
    } else {
      printf("test_qconv_kernels: ISA %s skipped: %s\n", cq_isa_name((cq_isa)i),
             cq_isa_missing_reason((cq_isa)i));
    }
  }
  if (cq_threadpool_create(2, &pool2) != CQ_OK || cq_threadpool_create(3, &pool3) != CQ_OK) {
    printf("test_qconv_kernels: cannot create thread pools: %s\n", cq_last_error());
    return 1;
  }
  test_named_shapes();
  test_random();
  test_errors();
  test_alloc_failures();
  for (int i = 0; i < n_isas; i++) {
    printf("test_qconv_kernels: %-10s %ld convolutions\n", cq_isa_name(isas[i]),
           runs_per_isa[isas[i]]);
  }
  printf("test_qconv_kernels: paths: depthwise %ld, implicit %ld, im2col %ld, direct %ld\n",
         runs_per_path[0], runs_per_path[1], runs_per_path[2], runs_per_path[3]);
  cq_threadpool_destroy(pool2);
  cq_threadpool_destroy(pool3);
  return check_summary("test_qconv_kernels");
}

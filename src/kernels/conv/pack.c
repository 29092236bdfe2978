/* Weight packing for the quantized convolution (layout documented in qconv.h). */
#include <string.h>

#include "core/alloc.h"
#include "kernels/conv/qconv.h"

#define CQ_CONV_MAX_DIM ((int64_t)1 << 24)

int64_t cq_qconv_out_size(int64_t in, int64_t kernel, int64_t stride, int64_t padding,
                          int64_t dilation) {
  const int64_t span = dilation * (kernel - 1) + 1, padded = in + 2 * padding;
  if (span > padded) return 0;
  return (padded - span) / stride + 1;
}

cq_status cq_qconv_check_geom(const cq_conv_geom *g) {
  if (!g) return cq_fail(CQ_EINVAL, "convolution geometry is NULL");
  if (g->in_channels < 1 || g->out_channels < 1 || g->groups < 1 ||
      g->in_channels >= CQ_CONV_MAX_DIM || g->out_channels >= CQ_CONV_MAX_DIM) {
    return cq_fail(CQ_EINVAL, "convolution: in_channels %lld, out_channels %lld and groups %lld "
                   "must be in [1, 2^24)", (long long)g->in_channels, (long long)g->out_channels,
                   (long long)g->groups);
  }
  if (g->in_channels % g->groups || g->out_channels % g->groups) {
    return cq_fail(CQ_EINVAL, "convolution: in_channels %lld and out_channels %lld must be "
                   "divisible by groups %lld", (long long)g->in_channels,
                   (long long)g->out_channels, (long long)g->groups);
  }
  for (int d = 0; d < 2; d++) {
    if (g->kernel[d] < 1 || g->stride[d] < 1 || g->padding[d] < 0 || g->dilation[d] < 1 ||
        g->kernel[d] >= CQ_CONV_MAX_DIM || g->stride[d] >= CQ_CONV_MAX_DIM ||
        g->padding[d] >= CQ_CONV_MAX_DIM || g->dilation[d] >= CQ_CONV_MAX_DIM) {
      return cq_fail(CQ_EINVAL, "convolution: kernel %lld, stride %lld, padding %lld, dilation "
                     "%lld of dimension %d must be >= 1, >= 1, >= 0, >= 1 and below 2^24",
                     (long long)g->kernel[d], (long long)g->stride[d], (long long)g->padding[d],
                     (long long)g->dilation[d], d);
    }
  }
  const int64_t k = (g->in_channels / g->groups) * g->kernel[0] * g->kernel[1];
  if (k >= ((int64_t)1 << 28)) {
    return cq_fail(CQ_EINVAL, "convolution: a window of %lld values is too large", (long long)k);
  }
  return CQ_OK;
}

static int64_t round64(int64_t v) { return (v + 63) / 64 * 64; }

/* Chooses the segments of K. Whole kernel rows (or taps) keep every run contiguous in the NHWC
 * image, which the implicit path needs; a single (i, j, c) run is denser when a row is short
 * (small C), and then the im2col path packs the whole window into K. */
static cq_status plan_segments(cq_qconv_packed *p) {
  const cq_conv_geom *g = &p->g;
  const int64_t kh = g->kernel[0], kw = g->kernel[1], cg = p->cg;
  const int row_runs = g->groups == 1 && g->dilation[1] == 1;
  const int64_t nrow = row_runs ? kh : kh * kw, len = row_runs ? kw * cg : cg;
  const int64_t k_rows = nrow * round64(len), k_single = round64(p->taps * cg);
  p->rowseg = k_rows * 4 <= k_single * 5;
  p->zrows = !p->rowseg && !p->depthwise && g->groups == 1 && g->dilation[1] == 1 &&
             !p->has_w_zp;
  p->zpx = kh * cg <= 8 ? 8 : kh * cg;
  p->nseg = p->rowseg ? (int)nrow : 1;
  p->seg = cq_calloc_for((size_t)p->nseg, sizeof *p->seg, "convolution segments");
  if (!p->seg) return CQ_ENOMEM;
  int64_t kdst = 0;
  if (p->rowseg) {
    for (int64_t s = 0; s < nrow; s++) {
      const int64_t i = row_runs ? s : s / kw, j = row_runs ? 0 : s % kw;
      p->seg[s] = (cq_conv_seg){(int32_t)(i * g->dilation[0]), (int32_t)(j * g->dilation[1]), 0,
                                (int32_t)len, (int32_t)kdst};
      kdst += round64(len);
    }
  } else {
    const int64_t run = p->zrows ? (kw - 1) * p->zpx + kh * cg : p->taps * cg;
    p->seg[0] = (cq_conv_seg){0, 0, 0, (int32_t)run, 0};
    kdst = round64(run);
  }
  p->k_packed = kdst;
  p->ksteps = kdst / 64;
  p->step_seg = cq_malloc_for(sizeof(int32_t) * (size_t)p->ksteps, "convolution K steps");
  p->kvalid = cq_malloc_for((size_t)p->ksteps, "convolution K steps");
  if (!p->step_seg || !p->kvalid) return CQ_ENOMEM;
  for (int s = 0; s < p->nseg; s++) {
    const int64_t steps = round64(p->seg[s].len) / 64;
    for (int64_t t = 0; t < steps; t++) {
      const int64_t step = p->seg[s].kdst / 64 + t;
      const int64_t rest = p->seg[s].len - 64 * t;
      p->step_seg[step] = s;
      p->kvalid[step] = (uint8_t)(rest >= 64 ? 16 : (rest + 3) / 4);
    }
  }
  return CQ_OK;
}

/* The K position of weight (c, i, j) of a group under the segment plan. */
static int64_t k_position(const cq_qconv_packed *p, int64_t c, int64_t i, int64_t j) {
  const int64_t kw = p->g.kernel[1], cg = p->cg;
  if (!p->rowseg) return cq_conv_single_k(p, i, j) + c;
  if (p->nseg == p->g.kernel[0]) return p->seg[i].kdst + j * cg + c; /* whole rows */
  return p->seg[i * kw + j].kdst + c;                                /* single taps */
}

static cq_status pack_groups(cq_qconv_packed *p) {
  const int64_t G = p->g.groups, og = p->og, cg = p->cg;
  const int64_t kh = p->g.kernel[0], kw = p->g.kernel[1];
  p->gw = cq_calloc_for((size_t)G, sizeof *p->gw, "packed convolution groups");
  int8_t *wk = cq_malloc_for((size_t)(og * p->k_packed), "convolution weight staging");
  if (!p->gw || !wk) {
    cq_free(wk);
    return CQ_ENOMEM;
  }
  cq_status st = CQ_OK;
  for (int64_t gi = 0; gi < G && st == CQ_OK; gi++) {
    memset(wk, 0, (size_t)(og * p->k_packed));
    for (int64_t o = 0; o < og; o++) {
      const int8_t *src = p->w + (gi * og + o) * p->taps * cg;
      int8_t *dst = wk + o * p->k_packed;
      for (int64_t c = 0; c < cg; c++) {
        for (int64_t i = 0; i < kh; i++) {
          for (int64_t j = 0; j < kw; j++) dst[k_position(p, c, i, j)] = src[(c * kh + i) * kw + j];
        }
      }
    }
    st = cq_qgemm_pack(wk, og, p->k_packed, p->w_scale + (p->per_channel ? gi * og : 0),
                       p->w_zp + gi * og, p->per_channel, p->bias ? p->bias + gi * og : NULL,
                       &p->gw[gi]);
  }
  cq_free(wk);
  return st;
}

/* Depthwise tap dwords: the weights of kernel row i at byte offsets 4m .. 4m + 3 of the window. */
static cq_status pack_depthwise(cq_qconv_packed *p) {
  const int64_t C = p->g.out_channels, kh = p->g.kernel[0], kw = p->g.kernel[1];
  const int64_t dw = p->g.dilation[1];
  p->dw_groups = (kw - 1) * dw / 4 + 1;
  p->dw_w = cq_calloc_for((size_t)(C * kh * p->dw_groups), sizeof(int32_t), "depthwise taps");
  p->dw_ones = cq_calloc_for((size_t)(kh * p->dw_groups), sizeof(int32_t), "depthwise taps");
  if (!p->dw_w || !p->dw_ones) return CQ_ENOMEM;
  for (int64_t c = 0; c < C; c++) {
    for (int64_t i = 0; i < kh; i++) {
      for (int64_t j = 0; j < kw; j++) {
        const int64_t off = j * dw, m = off / 4, t = off % 4;
        const uint32_t byte = (uint8_t)p->w[(c * kh + i) * kw + j];
        p->dw_w[(c * kh + i) * p->dw_groups + m] |= (int32_t)(byte << (8 * t));
        if (c == 0) p->dw_ones[i * p->dw_groups + m] |= (int32_t)(1u << (8 * t));
      }
    }
  }
  return CQ_OK;
}

/* Channel of dword 4k + i of vector j in a 64-channel block of the channels-in-lanes depthwise
 * kernel: the order its byte interleave produces (qconv.h, dw_q). */
static int64_t dw_q_channel(int64_t b, int64_t j, int64_t lane) {
  return 64 * b + 16 * (lane / 4) + 4 * j + lane % 4;
}

/* The channels-in-lanes depthwise weights (qconv.h, dw_q), when the geometry qualifies. */
static cq_status pack_depthwise_nhwc(cq_qconv_packed *p) {
  const cq_conv_geom *g = &p->g;
  const int64_t C = g->out_channels, kh = g->kernel[0], kw = g->kernel[1];
  const int64_t blocks = (C + 63) / 64;
  p->dw_nhwc = kw <= CQ_DWQ_MAX_KERNEL && kh <= CQ_DWQ_MAX_KERNEL && g->dilation[0] == 1 &&
               g->dilation[1] == 1 && (g->stride[1] == 1 || g->stride[1] == 2) && !p->has_w_zp;
  if (!p->dw_nhwc) return CQ_OK;
  const int64_t nd = (kh + 3) / 4;
  p->dw_nd = nd;
  p->dw_q = cq_calloc_for((size_t)(blocks * kw * nd * 64), sizeof(int32_t), "depthwise taps");
  if (!p->dw_q) return CQ_ENOMEM;
  for (int64_t b = 0; b < blocks; b++) {
    for (int64_t kx = 0; kx < kw; kx++) {
      for (int64_t d = 0; d < nd; d++) {
        for (int64_t j = 0; j < 4; j++) {
          for (int64_t lane = 0; lane < 16; lane++) {
            const int64_t c = dw_q_channel(b, j, lane);
            if (c >= C) continue;
            uint32_t v = 0;
            for (int64_t i = 0; i < 4 && 4 * d + i < kh; i++) {
              v |= (uint32_t)(uint8_t)p->w[(c * kh + 4 * d + i) * kw + kx] << (8 * i);
            }
            p->dw_q[(((b * kw + kx) * nd + d) * 4 + j) * 16 + lane] = (int32_t)v;
          }
        }
      }
    }
  }
  return CQ_OK;
}

/* The direct path's tap dwords (see qconv.h), when the geometry qualifies. With stride_w 2 only
 * for kernels up to 4 wide: wider ones (two tap dwords per row at half the positions per vector)
 * measured slower than the small-C implicit path (3->64 7x7/2 on 224x224: 0.59 vs 0.31 ms, 3->32
 * 5x5/2 on 112x112: 0.057 vs 0.036), the 3x3/2 ones faster (3->32 on 224x224: 0.10 vs 0.14). */
static cq_status pack_direct(cq_qconv_packed *p) {
  const cq_conv_geom *g = &p->g;
  const int64_t C = g->in_channels, O = g->out_channels, kh = g->kernel[0], kw = g->kernel[1];
  p->direct = g->groups == 1 && C <= 4 && kw <= 8 && kh <= 64 &&
              (g->stride[1] == 1 || (g->stride[1] == 2 && kw <= 4)) && g->dilation[1] == 1 &&
              !p->has_w_zp;
  if (!p->direct) return CQ_OK;
  const int64_t mg = (kw + 3) / 4;
  p->direct_groups = mg;
  p->direct_w = cq_calloc_for((size_t)(O * C * kh * mg), sizeof(int32_t), "direct taps");
  if (!p->direct_w) return CQ_ENOMEM;
  for (int64_t o = 0; o < O; o++) {
    for (int64_t c = 0; c < C; c++) {
      for (int64_t i = 0; i < kh; i++) {
        for (int64_t j = 0; j < kw; j++) {
          const uint32_t byte = (uint8_t)p->w[((o * C + c) * kh + i) * kw + j];
          p->direct_w[((o * C + c) * kh + i) * mg + j / 4] |= (int32_t)(byte << (8 * (j % 4)));
        }
      }
    }
  }
  return CQ_OK;
}

cq_status cq_qconv_pack(const cq_conv_geom *g, const int8_t *w, const float *w_scale,
                        const int32_t *w_zp, int per_channel, const float *bias,
                        cq_qconv_packed **out) {
  if (!out) return cq_fail(CQ_EINVAL, "qconv pack: output pointer is NULL");
  *out = NULL;
  cq_status st = cq_qconv_check_geom(g);
  if (st != CQ_OK) return st;
  if (!w || !w_scale) return cq_fail(CQ_EINVAL, "qconv pack: weight or scales are NULL");
  const int64_t O = g->out_channels;
  st = cq_requant_check_weights(O, w_scale, per_channel, bias);
  if (st != CQ_OK) return st;
  const int64_t zp_count = per_channel ? O : 1;
  if (w_zp) {
    for (int64_t c = 0; c < zp_count; c++) {
      if (w_zp[c] < -128 || w_zp[c] > 127) {
        return cq_fail(CQ_EINVAL, "weight zero point %d of channel %lld is outside qint8's "
                       "[-128, 127]", (int)w_zp[c], (long long)c);
      }
    }
  }
  cq_qconv_packed *p = cq_calloc_for(1, sizeof *p, "packed convolution");
  if (!p) return CQ_ENOMEM;
  p->g = *g;
  p->cg = g->in_channels / g->groups;
  p->og = O / g->groups;
  p->taps = g->kernel[0] * g->kernel[1];
  p->depthwise = p->cg == 1 && p->og == 1;
  p->per_channel = per_channel ? 1 : 0;
  const int64_t kdim = p->cg * p->taps;
  p->w = cq_malloc_for((size_t)(O * kdim), "convolution weight");
  p->w_scale = cq_malloc_for(sizeof(float) * (size_t)zp_count, "convolution weight scales");
  p->w_zp = cq_malloc_for(sizeof(int32_t) * (size_t)O, "convolution weight zero points");
  p->w_sum = cq_malloc_for(sizeof(int32_t) * (size_t)O, "convolution weight sums");
  p->bias = bias ? cq_malloc_for(sizeof(float) * (size_t)O, "convolution bias") : NULL;
  if (!p->w || !p->w_scale || !p->w_zp || !p->w_sum || (bias && !p->bias)) {
    st = CQ_ENOMEM;
    goto fail;
  }
  memcpy(p->w, w, (size_t)(O * kdim));
  memcpy(p->w_scale, w_scale, sizeof(float) * (size_t)zp_count);
  if (bias) memcpy(p->bias, bias, sizeof(float) * (size_t)O);
  for (int64_t o = 0; o < O; o++) {
    p->w_zp[o] = w_zp ? w_zp[per_channel ? o : 0] : 0;
    if (p->w_zp[o] != 0) p->has_w_zp = 1;
    uint32_t s = 0;
    for (int64_t k = 0; k < kdim; k++) s += (uint32_t)(int32_t)w[o * kdim + k];
    p->w_sum[o] = (int32_t)s;
  }
  st = p->depthwise ? pack_depthwise(p) : pack_direct(p);
  if (st == CQ_OK && p->depthwise) st = pack_depthwise_nhwc(p);
  if (st == CQ_OK) st = plan_segments(p);
  if (st == CQ_OK && !p->depthwise) st = pack_groups(p);
  if (st != CQ_OK) goto fail;
  *out = p;
  return CQ_OK;
fail:
  cq_qconv_packed_destroy(p);
  return st;
}

void cq_qconv_packed_destroy(cq_qconv_packed *p) {
  if (!p) return;
  if (p->gw) {
    for (int64_t gi = 0; gi < p->g.groups; gi++) cq_qgemm_packed_destroy(p->gw[gi]);
  }
  cq_free(p->gw);
  cq_free(p->seg);
  cq_free(p->step_seg);
  cq_free(p->kvalid);
  cq_free(p->w);
  cq_free(p->w_scale);
  cq_free(p->w_zp);
  cq_free(p->w_sum);
  cq_free(p->bias);
  cq_free(p->dw_w);
  cq_free(p->dw_ones);
  cq_free(p->direct_w);
  cq_free(p->dw_q);
  cq_free(p);
}

const cq_conv_geom *cq_qconv_packed_geom(const cq_qconv_packed *p) { return &p->g; }

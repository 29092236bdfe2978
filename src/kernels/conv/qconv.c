/* Quantized convolution operators: path selection, per-channel constants, workspace layout and
 * work partitioning over threads (see qconv.h). */
#include "kernels/conv/qconv.h"

#include <math.h>
#include <string.h>

#include "core/alloc.h"

/* Below this many multiply-adds per image the work stays on the calling thread. The AMX kernels
 * spend their time in the output stage rather than in the multiply-adds on all but the deepest
 * convolutions, so for them the outputs count too: from this many (positions x channels), or this
 * many multiply-adds, they are split. With 2
 * threads (NHWC, 1x1 unless said): 32->32 on 56x56 17.3 -> 11.5 us, 32->16 12.2 -> 8.1, 40->240
 * on 14x14 7.7 -> 5.9, 80->480 on 14x14 17.8 -> 11.9, 64->128 3x3 on 18x18 14.6 -> 10.6, on 10x10
 * (12800 outputs) 4.5 -> 4.2; 240->40 on 14x14 (7840) stays alone. */
#define CQ_CONV_MIN_PARALLEL_MACS ((int64_t)1 << 18)
#define CQ_CONV_MIN_PARALLEL_OUTPUTS_AMX ((int64_t)1 << 13)
#define CQ_CONV_MIN_PARALLEL_MACS_AMX ((int64_t)1 << 25)
/* Outputs of up to this many positions are split between threads by channels (run_implicit). */
#define CQ_CONV_SMALL_PLANE 64
/* Bytes of im2col rows a thread builds before running the GEMM on them. */
#define CQ_CONV_COL_BYTES 65536
/* Readable bytes after an NHWC image or a depthwise plane (kernels read whole vectors). */
#define CQ_CONV_SLACK 256

typedef enum conv_path {
  PATH_DW_VNNI,
  PATH_DW_SCALAR,
  PATH_DW_NEON,      /* AArch64: output positions in NEON lanes */
  PATH_IMPLICIT,
  PATH_IM2COL_FAST,  /* im2col + the VNNI/AMX conv GEMM kernel */
  PATH_IM2COL_QGEMM, /* im2col + a qgemm block kernel (staging rows, then the store) */
  PATH_ZROWS,        /* small C: implicit GEMM on the kernel-row-interleaved image */
  PATH_DIRECT,       /* few input channels: output positions in the lanes (direct/) */
  PATH_DW_NHWC       /* depthwise, channels in the lanes, padded NHWC image (depthwise_nhwc/) */
} conv_path;

struct cq_qconv_op {
  const cq_qconv_packed *p;
  cq_isa isa;
  conv_path path;
  conv_path alt_path;    /* direct: the path for NHWC outputs (direct writes NCHW planes) */
  int32_t x_zp;
  cq_requant_params rq;  /* all O channels, as cq_requant_params_set_static fills them */
  int64_t og_pad;        /* channels per group rounded up to 16: stride of the arrays below */
  int32_t *init;         /* fast paths: the accumulators' start */
  int32_t *offset;       /* qgemm path: K * zx * zw - zx * colsum */
  int32_t *ibias;
  float *scale, *fbias, *mult, *obias;
  cq_requant_params *grq; /* qgemm path: per-group views of the arrays above */
  cq_conv_out out;       /* the output stage without destination */
  cq_gemm_block_fn block;
  cq_conv_gemm_fn gemm;
  /* depthwise with dw_q on VNNI/AMX: the output-stage constants in the lane order of
   * cq_u8_dwconv_nhwc (64 per block of channels), NULL otherwise */
  int32_t *dwq_init;
  float *dwq_scale, *dwq_fbias, *dwq_mult;
};

static const char *const path_names[] = {"depthwise", "depthwise", "depthwise", "implicit",
                                         "im2col",    "im2col",    "implicit",  "direct",
                                         "depthwise"};

static int is_depthwise(conv_path path) {
  return path == PATH_DW_VNNI || path == PATH_DW_SCALAR || path == PATH_DW_NEON;
}

/* The AVX-512 forms of the layout helpers (and the VNNI/AMX kernels) exist only in x86-64 builds;
 * every other ISA uses the portable helpers. */
static int vnni_helpers(cq_isa isa) {
  return CQ_ARCH_X86 && (isa == CQ_ISA_AVX512VNNI || isa == CQ_ISA_AMX);
}

const char *cq_qconv_path_name(const cq_qconv_op *op) { return path_names[op->path]; }
/* Depthwise convolutions of this many channels or more read channels-last inputs in place with
 * the channels-in-lanes kernel (32 - 63 channels leave lanes idle but still beat converting the
 * input to planes: 32ch 112x112 0.152 -> 0.110 ms; 16 channels do not: 0.085 -> 0.121 ms)... */
#define CQ_DWQ_MIN_NHWC_CHANNELS 32
/* The same for kernels other than 3 x (<= 4), which leave more lanes idle below 64 channels
 * (32ch 112x112 7x7: 0.39 ms in the lanes, 0.27 ms converted to planes). */
#define CQ_DWQ_MIN_NHWC_CHANNELS_ANY 64
/* ...and from this many on they ask for channels-last inputs and write channels-last outputs
 * (below it the plane kernel on NCHW planes is faster than the lanes kernel: 32ch 112x112 0.079
 * vs 0.110 ms), and so do the 32-channel layers it runs two positions to a vector (cq_dwq_paired:
 * 0.061 ms). */
#define CQ_DWQ_MIN_CHANNELS_LAST 64

static int dwq_channels_last(const cq_qconv_packed *p) {
  return p->g.in_channels >= CQ_DWQ_MIN_CHANNELS_LAST || cq_dwq_paired(p);
}

cq_conv_layout cq_qconv_native_output(const cq_qconv_op *op) {
  if (op->path == PATH_DIRECT) return CQ_CONV_NCHW;
  if (op->p->depthwise) {
    return op->dwq_init && dwq_channels_last(op->p) ? CQ_CONV_NHWC : CQ_CONV_NCHW;
  }
  return CQ_CONV_NHWC;
}

int cq_qconv_reads_nhwc(const cq_qconv_packed *p) {
  if (!p) return 0;
  if (!p->depthwise) return 1;
  cq_isa isa;
  if (cq_isa_active(&isa) != CQ_OK) return 0;
  return vnni_helpers(isa) && p->dw_nhwc && dwq_channels_last(p);
}
cq_isa cq_qconv_isa(const cq_qconv_op *op) { return op->isa; }

void cq_qconv_destroy(cq_qconv_op *op) {
  if (!op) return;
  cq_requant_params_release(&op->rq);
  cq_free(op->init);
  cq_free(op->offset);
  cq_free(op->ibias);
  cq_free(op->scale);
  cq_free(op->fbias);
  cq_free(op->mult);
  cq_free(op->obias);
  cq_free(op->grq);
  cq_free(op->dwq_init);
  cq_free(op->dwq_scale);
  cq_free(op->dwq_fbias);
  cq_free(op->dwq_mult);
  cq_free(op);
}

static conv_path choose_path(const cq_qconv_packed *p, cq_isa isa, int allow_direct) {
  const int fast = vnni_helpers(isa);
  if (p->depthwise && (isa == CQ_ISA_NEON || isa == CQ_ISA_NEONDOT)) return PATH_DW_NEON;
  if (p->depthwise) {
    const int64_t sw = p->g.stride[1];
    return fast && (sw == 1 || sw == 2 || sw == 4) ? PATH_DW_VNNI : PATH_DW_SCALAR;
  }
  if (!fast || p->has_w_zp) return PATH_IM2COL_QGEMM;
  if (p->direct && allow_direct && (cq_cpu_features() & CQ_CPU_AVX512VBMI2)) return PATH_DIRECT;
  if (p->rowseg && p->g.stride[0] == 1 && p->g.stride[1] == 1) return PATH_IMPLICIT;
  if (p->zrows) return PATH_ZROWS;
  return PATH_IM2COL_FAST;
}

/* Whether the float output stage can reach 2^30 in magnitude for some int32 accumulator; if not,
 * converting without the upper clamp gives the same bytes (see avx512-inl.h). */
static int float_stage_may_overflow(const cq_requant_params *rq) {
  for (int64_t c = 0; c < rq->channels; c++) {
    const double bound = (2147483648.0 * (double)rq->scale[c] + fabs((double)rq->fbias[c])) *
                         (double)rq->mult[c] * (1.0 + 1e-5);
    if (!(bound < 1073741824.0)) return 1;
  }
  return 0;
}

/* Whether every channel's float-stage scale is exactly 1 (FBGEMM's rule). */
static int all_scales_one(const cq_requant_params *rq) {
  for (int64_t c = 0; c < rq->channels; c++) {
    if (rq->scale[c] != 1.0f) return 0;
  }
  return 1;
}

/* The constants of the channels-in-lanes depthwise kernel (qconv.h, dw_q): channel
 * 64b + 16k + 4j + i at entry 64b + 16j + 4k + i; channels past C neutral. */
static cq_status fill_dwq(cq_qconv_op *op) {
  const int64_t C = op->p->g.out_channels, n = (C + 63) / 64 * 64;
  op->dwq_init = cq_calloc_for((size_t)n, sizeof(int32_t), "depthwise constants");
  op->dwq_scale = cq_calloc_for((size_t)n, sizeof(float), "depthwise constants");
  op->dwq_fbias = cq_calloc_for((size_t)n, sizeof(float), "depthwise constants");
  op->dwq_mult = cq_calloc_for((size_t)n, sizeof(float), "depthwise constants");
  if (!op->dwq_init || !op->dwq_scale || !op->dwq_fbias || !op->dwq_mult) return CQ_ENOMEM;
  for (int64_t e = 0; e < n; e++) {
    const int64_t b = e / 64, j = e % 64 / 16, k = e % 16 / 4, i = e % 4;
    const int64_t c = 64 * b + 16 * k + 4 * j + i;
    if (c >= C) {
      op->dwq_scale[e] = op->dwq_mult[e] = 1.0f;
      continue;
    }
    op->dwq_init[e] = op->init[c * op->og_pad];
    op->dwq_scale[e] = op->scale[c * op->og_pad];
    op->dwq_fbias[e] = op->fbias[c * op->og_pad];
    op->dwq_mult[e] = op->mult[c * op->og_pad];
  }
  return CQ_OK;
}

static cq_status fill_channels(cq_qconv_op *op) {
  const cq_qconv_packed *p = op->p;
  const int64_t G = p->g.groups, og = p->og, op_pad = op->og_pad, n = G * op_pad;
  const uint32_t zx = (uint32_t)op->x_zp, taps_zx = (uint32_t)(p->taps * p->cg) * zx;
  const uint32_t kzx = (uint32_t)p->k_packed * zx;
  op->init = cq_calloc_for((size_t)n, sizeof(int32_t), "convolution constants");
  op->offset = cq_calloc_for((size_t)n, sizeof(int32_t), "convolution constants");
  op->ibias = cq_calloc_for((size_t)n, sizeof(int32_t), "convolution constants");
  op->scale = cq_calloc_for((size_t)n, sizeof(float), "convolution constants");
  op->fbias = cq_calloc_for((size_t)n, sizeof(float), "convolution constants");
  op->mult = cq_calloc_for((size_t)n, sizeof(float), "convolution constants");
  op->obias = cq_calloc_for((size_t)n, sizeof(float), "convolution constants");
  op->grq = cq_calloc_for((size_t)G, sizeof *op->grq, "convolution constants");
  if (!op->init || !op->offset || !op->ibias || !op->scale || !op->fbias || !op->mult ||
      !op->obias || !op->grq) {
    return CQ_ENOMEM;
  }
  for (int64_t g = 0; g < G; g++) {
    for (int64_t c = 0; c < op_pad; c++) {
      const int64_t i = g * op_pad + c, o = g * og + c;
      if (c >= og) { /* neutral padding, never stored */
        op->scale[i] = op->mult[i] = 1.0f;
        continue;
      }
      const uint32_t zw = (uint32_t)p->w_zp[o], sum = (uint32_t)p->w_sum[o];
      const uint32_t ib = op->rq.kind == CQ_OUT_U8_INT ? (uint32_t)op->rq.ibias[o] : 0u;
      /* full windows (padding holds zx):
       * sum (x - zx)(w - zw) = sum x*w - zw sum x - zx sum w + T zx zw */
      op->init[i] = (int32_t)(taps_zx * zw - zx * sum + ib);
      op->offset[i] = (int32_t)(kzx * zw - zx * sum);
      op->ibias[i] = op->rq.ibias[o];
      op->scale[i] = op->rq.scale[o];
      op->fbias[i] = op->rq.fbias[o];
      op->mult[i] = op->rq.mult[o];
      op->obias[i] = op->rq.obias[o];
    }
    cq_requant_params *v = &op->grq[g];
    *v = op->rq;
    v->mem = NULL;
    v->channels = og;
    v->padded = op_pad;
    v->ibias = op->ibias + g * op_pad;
    v->scale = op->scale + g * op_pad;
    v->fbias = op->fbias + g * op_pad;
    v->mult = op->mult + g * op_pad;
    v->obias = op->obias + g * op_pad;
  }
  return CQ_OK;
}

cq_status cq_qconv_create_isa(const cq_qconv_packed *p, const cq_qgemm_quant *q, cq_isa isa,
                              cq_qconv_op **out) {
  if (!out) return cq_fail(CQ_EINVAL, "qconv create: output pointer is NULL");
  *out = NULL;
  if (!p || !q) return cq_fail(CQ_EINVAL, "qconv create: weights or quantization are NULL");
  if ((unsigned)isa >= CQ_ISA_COUNT) return cq_fail(CQ_EINVAL, "unknown ISA %d", (int)isa);
  if (!cq_isa_supported(isa)) {
    return cq_fail(CQ_EUNSUPPORTED, "ISA %s cannot run here: %s", cq_isa_name(isa),
                   cq_isa_missing_reason(isa));
  }
  if (q->x_zp < 0 || q->x_zp > 255) {
    return cq_fail(CQ_EINVAL, "input zero point %d is outside quint8's [0, 255]", (int)q->x_zp);
  }
  cq_qconv_op *op = cq_calloc_for(1, sizeof *op, "convolution operator");
  if (!op) return CQ_ENOMEM;
  op->p = p;
  op->isa = isa;
  op->x_zp = q->x_zp;
  op->path = choose_path(p, isa, 1);
  op->alt_path = choose_path(p, isa, 0);
  op->og_pad = (p->og + 15) / 16 * 16;
  cq_status st = cq_requant_params_create(p->g.out_channels, &op->rq);
  if (st == CQ_OK) {
    st = cq_requant_params_set_static(&op->rq, q->rule, q->x_scale, p->w_scale, p->per_channel,
                                      p->bias, q->y_scale, q->y_zp, q->relu);
  }
  if (st == CQ_OK) st = cq_qgemm_apply_clamp(q, &op->rq);
  if (st == CQ_OK) st = fill_channels(op);
  if (st == CQ_OK && op->path == PATH_DW_VNNI && p->dw_nhwc) st = fill_dwq(op);
  if (st != CQ_OK) goto fail;
  op->out = (cq_conv_out){.kind = op->rq.kind,
                          .y_zp = op->rq.y_zp,
                          .y_min = op->rq.y_min,
                          .hi_f = (float)(op->rq.y_max - op->rq.y_zp),
                          /* the float min also makes an upper clamp below 255 (exact: rounding
                           * is monotone and hi - zp an integer) */
                          .need_min = op->rq.kind == CQ_OUT_U8_FLOAT &&
                                      (op->rq.y_max < 255 || float_stage_may_overflow(&op->rq)),
                          .unit_scale = op->rq.kind == CQ_OUT_U8_FLOAT &&
                                        all_scales_one(&op->rq)};
  switch (isa) {
#if CQ_ARCH_X86
    case CQ_ISA_AMX:
      op->block = cq_u8s8_gemm_block__amx;
      op->gemm = cq_u8s8_conv_gemm__amx;
      break;
    case CQ_ISA_AVX512VNNI:
      op->block = cq_u8s8_gemm_block__avx512vnni;
      op->gemm = cq_u8s8_conv_gemm__avx512vnni;
      break;
    case CQ_ISA_AVX2:
      op->block = cq_u8s8_gemm_block__avx2;
      break;
#endif
#if CQ_ARCH_ARM64
    case CQ_ISA_NEONDOT:
      op->block = cq_u8s8_gemm_block__neondot;
      break;
    case CQ_ISA_NEON:
      op->block = cq_u8s8_gemm_block__neon;
      break;
#endif
    default:
      op->block = cq_u8s8_gemm_block__scalar;
      break;
  }
  *out = op;
  return CQ_OK;
fail:
  cq_qconv_destroy(op);
  return st;
}

cq_isa cq_qconv_preferred_isa(const cq_qconv_packed *p, cq_isa isa) {
  /* AMX multiplies whole 64-byte K steps, VNNI skips the groups of four bytes that hold no weights
   * (kvalid): when most of the padded K is padding (few channels per tap), the VNNI GEMM kernel
   * does about as well (1x1 16->96 on 56x56: 47 vs 50 us). Not so for the few-channel convs that
   * have a direct path (a network's first layers): the direct kernel writes NCHW whatever the
   * ISA, and for NHWC outputs their implicit GEMM is faster on AMX (NHWC, 1 thread: 3->32 3x3 s2
   * on 224x224 135 -> 113 us, s1 on 112x112 121 -> 94, 2->64 on 28x28 9.5 -> 7.9). Both give the
   * reference's bits. */
  if (isa == CQ_ISA_AMX && p && !p->depthwise && choose_path(p, isa, 1) != PATH_DIRECT &&
      2 * p->cg * p->taps < p->k_packed) {
    return CQ_ISA_AVX512VNNI;
  }
  return isa;
}

cq_status cq_qconv_create(const cq_qconv_packed *p, const cq_qgemm_quant *q, cq_qconv_op **out) {
  cq_isa isa;
  cq_status st = cq_isa_active(&isa);
  if (st != CQ_OK) {
    if (out) *out = NULL;
    return st;
  }
  return cq_qconv_create_isa(p, q, cq_qconv_preferred_isa(p, isa), out);
}

/* ---- workspace ------------------------------------------------------------------------------ */

typedef struct conv_dims {
  conv_path path;      /* the op's, or the one it takes for this output layout (alt_path) */
  int64_t h, w, ho, wo, hp, wp;
  int64_t mv;          /* GEMM rows of one image (virtual positions for the implicit path) */
  int64_t vw;          /* implicit paths: virtual positions per output row */
  int64_t wz;          /* small-C implicit path: pixels per row of the interleaved image (wp
                        * rounded up to whole strides) */
  int64_t wpp;         /* depthwise plane row stride; direct: bytes from one input plane to the
                        * next */
  int dw_flat;         /* depthwise VNNI: output rows on the padded width (cq_conv_dw.flat) */
  size_t plane_bytes, flat_bytes;
  int64_t col_rows;    /* im2col rows per chunk */
  size_t img_bytes;    /* shared NHWC image (GEMM paths) */
  size_t aoff_bytes;   /* shared K-step offsets */
  size_t thread_bytes; /* per thread */
  size_t planar_x_bytes; /* NHWC input converted to NCHW planes (depthwise, small-C paths) */
  size_t planar_y_bytes; /* NCHW output staging before the NHWC output (depthwise) */
  size_t col_bytes, stage_bytes;
} conv_dims;

static size_t align64(size_t v) { return (v + 63) & ~(size_t)63; }

/* Whether a depthwise convolution that both kernels can run takes the channels-in-lanes one: on a
 * channels-last input (it reads the input in place; the plane kernel would transpose it twice)
 * of enough channels, or on small outputs (the plane kernel's per-channel work dominates there:
 * NCHW 512ch 7x7 0.010 ms in the lanes vs 0.025 on planes; but 64ch 56x56 0.050 vs 0.031). */
static int dwq_preferred(const cq_qconv_op *op, cq_conv_layout xl, int64_t ho, int64_t wo) {
  const cq_conv_geom *g = &op->p->g;
  const int64_t min_c = g->kernel[1] == 3 && g->kernel[0] <= 4 ? CQ_DWQ_MIN_NHWC_CHANNELS
                                                               : CQ_DWQ_MIN_NHWC_CHANNELS_ANY;
  return (xl == CQ_CONV_NHWC && g->in_channels >= min_c) || ho * wo <= 256;
}

static void plan_dims(const cq_qconv_op *op, int64_t h, int64_t w, cq_conv_layout xl,
                      cq_conv_layout yl, conv_dims *d) {
  const cq_qconv_packed *p = op->p;
  const cq_conv_geom *g = &p->g;
  memset(d, 0, sizeof *d);
  d->path = op->path == PATH_DIRECT && yl == CQ_CONV_NHWC ? op->alt_path : op->path;
  d->h = h;
  d->w = w;
  d->ho = cq_qconv_out_size(h, g->kernel[0], g->stride[0], g->padding[0], g->dilation[0]);
  d->wo = cq_qconv_out_size(w, g->kernel[1], g->stride[1], g->padding[1], g->dilation[1]);
  d->hp = h + 2 * g->padding[0];
  d->wp = w + 2 * g->padding[1];
  if (op->dwq_init && dwq_preferred(op, xl, d->ho, d->wo)) d->path = PATH_DW_NHWC;
  const int64_t C = g->in_channels, O = g->out_channels;
  if (d->path == PATH_DW_NHWC) {
    /* an NHWC input is read in place, with a row of zero points for the padding rows; an NCHW
     * one becomes the padded NHWC image; an NCHW output is staged NHWC first */
    d->img_bytes = xl == CQ_CONV_NHWC
                       ? align64((size_t)(w * C + 64))
                       : align64((size_t)((d->hp * d->wp + 32) * C) + CQ_CONV_SLACK);
    if (yl == CQ_CONV_NCHW) d->planar_y_bytes = align64((size_t)(O * d->ho * d->wo));
    return;
  }
  if (is_depthwise(d->path)) {
    const int64_t sw = g->stride[1];
    d->wpp = (d->wp + sw - 1) / sw * sw;
    d->plane_bytes = align64((size_t)(d->hp * d->wpp) + CQ_CONV_SLACK + 4 * (size_t)p->dw_groups);
    if (d->path == PATH_DW_VNNI && g->stride[0] == 1 && d->ho > 0 && d->wo > 0) {
      /* flat rows when they save a tenth of the vectors (16 * 4 / sw positions each) */
      const int64_t step = 64 / sw, wv = d->wpp / sw;
      const int64_t flat = ((d->ho - 1) * wv + d->wo + step - 1) / step;
      const int64_t rows = d->ho * ((d->wo + step - 1) / step);
      d->dw_flat = flat * 10 < rows * 9;
      if (d->dw_flat) d->flat_bytes = align64((size_t)(d->ho * wv) + 2 * 64);
    }
    if (d->path == PATH_DW_VNNI && !d->dw_flat) {
      /* rows processed one by one: 64-byte aligned rows make the plane copy cheaper */
      d->wpp = (d->wp + 63) / 64 * 64;
      d->plane_bytes = align64((size_t)(d->hp * d->wpp) + CQ_CONV_SLACK +
                               4 * (size_t)p->dw_groups);
    }
    d->thread_bytes = d->plane_bytes + d->flat_bytes;
    if (xl == CQ_CONV_NHWC) d->planar_x_bytes = align64((size_t)(C * h * w));
    if (yl == CQ_CONV_NHWC) d->planar_y_bytes = align64((size_t)(O * d->ho * d->wo));
    return;
  }
  if (d->path == PATH_DIRECT) {
    /* the padded input planes (rows in whole strides), each followed by the slack cq_conv_plane
     * fills */
    const int64_t sw = g->stride[1];
    d->wz = (d->wp + sw - 1) / sw * sw;
    d->vw = d->wz / sw;
    d->wpp = align64((size_t)(d->hp * d->wz) + CQ_CONV_SLACK + 4 * (size_t)p->direct_groups);
    d->img_bytes = (size_t)(C * d->wpp);
    if (xl == CQ_CONV_NHWC) d->planar_x_bytes = align64((size_t)(C * h * w));
    return; /* the output is NCHW here (alt_path otherwise) */
  }
  d->aoff_bytes = align64(sizeof(int64_t) * (size_t)(g->groups * p->ksteps));
  if (d->path == PATH_ZROWS) {
    const int64_t px = p->zpx, sw = g->stride[1]; /* bytes per pixel of the interleaved image */
    if (xl == CQ_CONV_NHWC) d->planar_x_bytes = align64((size_t)(C * h * w));
    /* GEMM row q = (oh, ow) starts at pixel oh * wz + ow * sw: q * sw pixels when vw = wz / sw */
    d->wz = (d->wp + sw - 1) / sw * sw;
    d->vw = d->wz / sw;
    d->img_bytes = align64((size_t)((d->ho * d->wz + 32 * sw) * px) + CQ_CONV_SLACK);
    d->mv = (d->ho - 1) * d->vw + d->wo;
    return;
  }
  d->img_bytes = align64((size_t)((d->hp * d->wp + 32) * C) + CQ_CONV_SLACK);
  if (d->path == PATH_IMPLICIT) {
    d->vw = d->wp;
    d->mv = (d->ho - 1) * d->wp + d->wo;
    return;
  }
  d->mv = d->ho * d->wo;
  int64_t rows = (CQ_CONV_COL_BYTES / p->k_packed + 31) / 32 * 32;
  rows = rows < 32 ? 32 : rows > 512 ? 512 : rows;
  d->col_rows = rows;
  d->col_bytes = align64((size_t)(rows * p->k_packed) + CQ_CONV_SLACK);
  d->stage_bytes = d->path == PATH_IM2COL_QGEMM ? align64((size_t)(rows * O)) : 0;
  d->thread_bytes = d->col_bytes + d->stage_bytes;
}

size_t cq_qconv_workspace_size(const cq_qconv_op *op, int64_t h, int64_t w,
                               cq_conv_layout x_layout, cq_conv_layout y_layout, int threads) {
  if (!op || h < 1 || w < 1) return 0;
  conv_dims d;
  plan_dims(op, h, w, x_layout, y_layout, &d);
  if (d.ho < 1 || d.wo < 1) return 0;
  if (threads < 1) threads = 1;
  return 64 + d.img_bytes + d.aoff_bytes + d.planar_x_bytes + d.planar_y_bytes +
         (size_t)threads * d.thread_bytes;
}

/* ---- run ------------------------------------------------------------------------------------ */

typedef struct conv_job {
  const cq_qconv_op *op;
  const conv_dims *d;
  const uint8_t *x;    /* this image */
  uint8_t *y;          /* this image */
  int x_nchw, y_nchw;
  cq_conv_image im;    /* the padded NHWC image (GEMM paths) */
  const int64_t *aoff; /* groups * ksteps */
  const uint8_t *a;    /* implicit paths: row 0 of the GEMM's activations */
  size_t lda;
  /* implicit path on an unpadded NHWC input: a is the input itself for the rows below a_tail_row
   * and a_tail (a copy of the input's last rows with readable slack after it, indexed by the same
   * row numbers) for the others */
  const uint8_t *a_tail;
  int64_t a_tail_row;
  uint8_t *threads_mem;
  uint8_t *planes_y;    /* depthwise: where the NCHW output planes go (y itself for NCHW) */
  const uint8_t *x_nhwc; /* NHWC input being converted to planes */
  int64_t units;       /* items the parallel loop splits */
  int64_t unit_rows;   /* GEMM rows per item: the AMX kernel's 32-row strips, else 16 */
} conv_job;

static void to_planes_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const conv_job *j = ctx;
  (void)thread;
  uint8_t *dst = (uint8_t *)j->im.x;
#if CQ_ARCH_X86
  if (vnni_helpers(j->op->isa)) {
    cq_conv_to_nchw_rows__avx512vnni(j->x_nhwc, j->im.c, j->im.h, j->im.w, begin, end, dst);
    return;
  }
#endif
  cq_conv_to_nchw_rows__scalar(j->x_nhwc, j->im.c, j->im.h, j->im.w, begin, end, dst);
}

void cq_u8_nhwc_to_nchw(const uint8_t *x, int64_t n, int64_t c, int64_t h, int64_t w, uint8_t *y) {
  cq_isa isa = CQ_ISA_SCALAR;
  if (cq_isa_active(&isa) != CQ_OK) isa = CQ_ISA_SCALAR;
  const int64_t image = c * h * w;
  for (int64_t i = 0; i < n; i++) {
#if CQ_ARCH_X86
    if (vnni_helpers(isa)) {
      cq_conv_to_nchw_rows__avx512vnni(x + i * image, c, h, w, 0, h, y + i * image);
      continue;
    }
#endif
    cq_conv_to_nchw_rows__scalar(x + i * image, c, h, w, 0, h, y + i * image);
  }
}

/* NCHW output planes (the depthwise staging) to the NHWC output: rows of the output image. */
static void from_planes_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const conv_job *j = ctx;
  (void)thread;
  const cq_qconv_packed *p = j->op->p;
  const cq_conv_image out = {.x = j->planes_y, .nchw = 1, .c = p->g.out_channels, .h = j->d->ho,
                             .w = j->d->wo, .ph = 0, .pw = 0, .hp = j->d->ho, .wp = j->d->wo,
                             .zx = 0, .dst = j->y};
#if CQ_ARCH_X86
  if (vnni_helpers(j->op->isa)) {
    cq_conv_to_nhwc_rows__avx512vnni(&out, begin, end);
    return;
  }
#endif
  cq_conv_to_nhwc_rows__scalar(&out, begin, end);
}

static void zrows_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const conv_job *j = ctx;
  (void)thread;
#if CQ_ARCH_X86
  cq_conv_zrows__avx512vnni(&j->im, &j->op->p->g, j->op->p->zpx, begin, end, j->im.dst);
#else
  cq_conv_zrows__scalar(&j->im, &j->op->p->g, j->op->p->zpx, begin, end, j->im.dst);
#endif
}

static void image_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const conv_job *j = ctx;
  (void)thread;
#if CQ_ARCH_X86
  if (vnni_helpers(j->op->isa)) {
    cq_conv_to_nhwc_rows__avx512vnni(&j->im, begin, end);
    return;
  }
#endif
  cq_conv_to_nhwc_rows__scalar(&j->im, begin, end);
}

/* The output stage record of group gi for this image. */
static cq_conv_out group_out(const conv_job *j, int64_t gi, int64_t vw) {
  const cq_qconv_op *op = j->op;
  const cq_qconv_packed *p = op->p;
  cq_conv_out o = op->out;
  const int64_t i0 = gi * op->og_pad;
  o.init = op->init + i0;
  o.init_zero = 1;
  for (int64_t c = 0; c < p->og && o.init_zero; c++) o.init_zero = o.init[c] == 0;
  o.scale = op->scale + i0;
  o.fbias = op->fbias + i0;
  o.mult = op->mult + i0;
  o.nchw = j->y_nchw;
  o.plane = j->d->ho * j->d->wo;
  o.ldy = p->g.out_channels;
  o.y = j->y + gi * p->og * (j->y_nchw ? o.plane : 1);
  o.vw = vw;
  o.wo = j->d->wo;
  o.n = p->og;
  return o;
}

/* GEMM rows [m0, m1) of gm: those below j->a_tail_row from gm->a, the others from j->a_tail
 * (a_tail_row is a multiple of the work unit, so the AMX kernel's strips stay on one side). */
static void gemm_rows(const conv_job *j, cq_conv_gemm *gm, size_t m0, size_t m1) {
  const size_t split = (size_t)j->a_tail_row;
  if (m0 < split) j->op->gemm(gm, m0, m1 < split ? m1 : split);
  if (m1 > split) {
    gm->a = j->a_tail;
    j->op->gemm(gm, m0 > split ? m0 : split, m1);
  }
}

/* All GEMM rows of the 16-channel panels [begin, end) (groups 1): run_implicit's split for
 * convolutions of few output positions. */
static void implicit_channels_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const conv_job *j = ctx;
  (void)thread;
  const cq_qconv_op *op = j->op;
  const cq_qconv_packed *p = op->p;
  cq_qgemm_packed w = *p->gw[0];
  w.w += (size_t)begin * w.panel_bytes;
  w.panels = end - begin;
  cq_conv_out out = group_out(j, 0, j->d->vw);
  const int64_t c0 = 16 * begin;
  out.init += c0;
  out.scale += c0;
  out.fbias += c0;
  out.mult += c0;
  out.y += j->y_nchw ? c0 * out.plane : c0;
  out.n = (16 * end < p->og ? 16 * end : p->og) - c0;
  cq_conv_gemm gm = {.a = j->a, .lda = j->lda, .aoff = j->aoff, .kvalid = p->kvalid,
                     .ksteps = (size_t)p->ksteps, .w = &w, .out = &out};
  gemm_rows(j, &gm, 0, (size_t)j->d->mv);
}

static void implicit_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const conv_job *j = ctx;
  (void)thread;
  const cq_qconv_op *op = j->op;
  const cq_qconv_packed *p = op->p;
  const size_t m0 = (size_t)(begin * j->unit_rows);
  size_t m1 = (size_t)(end * j->unit_rows);
  if (m1 > (size_t)j->d->mv) m1 = (size_t)j->d->mv;
  for (int64_t gi = 0; gi < p->g.groups; gi++) {
    const cq_conv_out out = group_out(j, gi, j->d->vw);
    cq_conv_gemm gm = {.a = j->a,
                       .lda = j->lda,
                       .aoff = j->aoff + gi * p->ksteps,
                       .kvalid = p->kvalid,
                       .ksteps = (size_t)p->ksteps,
                       .w = p->gw[gi],
                       .out = &out};
    gemm_rows(j, &gm, m0, m1);
  }
}

static void im2col_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const conv_job *j = ctx;
  const cq_qconv_op *op = j->op;
  const cq_qconv_packed *p = op->p;
  const conv_dims *d = j->d;
  uint8_t *col = j->threads_mem + (size_t)thread * d->thread_bytes;
  uint8_t *stage = col + d->col_bytes;
  const int64_t O = p->g.out_channels;
  const cq_conv_im2col ic = {.p = p, .img = j->im.dst, .wp = d->wp, .wo = d->wo,
                             .zx = (uint8_t)op->x_zp};
  const int64_t q_end = end * j->unit_rows < d->mv ? end * j->unit_rows : d->mv;
  for (int64_t q0 = begin * j->unit_rows; q0 < q_end; q0 += d->col_rows) {
    const int64_t rows = q_end - q0 < d->col_rows ? q_end - q0 : d->col_rows;
    for (int64_t gi = 0; gi < p->g.groups; gi++) {
#if CQ_ARCH_X86
      if (vnni_helpers(op->isa)) {
        cq_conv_im2col__avx512vnni(&ic, gi, q0, rows, col);
      } else {
        cq_conv_im2col__scalar(&ic, gi, q0, rows, col);
      }
#else
      cq_conv_im2col__scalar(&ic, gi, q0, rows, col);
#endif
      if (j->d->path == PATH_IM2COL_FAST) {
        cq_conv_out out = group_out(j, gi, d->wo);
        /* the kernel's row r is output position q0 + r: shift the destination by q0 */
        out.y += j->y_nchw ? q0 : q0 * O;
        const cq_conv_gemm gm = {.a = col,
                                 .lda = (size_t)p->k_packed,
                                 .aoff = j->aoff,
                                 .kvalid = p->kvalid,
                                 .ksteps = (size_t)p->ksteps,
                                 .w = p->gw[gi],
                                 .out = &out};
        out.vw = out.wo = rows; /* positions are consecutive: no dropped columns */
        op->gemm(&gm, 0, (size_t)rows);
      } else {
        const cq_gemm_args ga = {.a = col,
                                 .lda = (size_t)p->k_packed,
                                 .w = p->gw[gi],
                                 .offset = op->offset + gi * op->og_pad,
                                 .rq = &op->grq[gi],
                                 .c = stage + gi * p->og,
                                 .ldc = (size_t)O};
        op->block(&ga, thread, 0, (size_t)rows, 0, (size_t)p->gw[gi]->panels);
      }
    }
    if (j->d->path == PATH_IM2COL_QGEMM) {
      cq_conv_out out = op->out;
      out.nchw = j->y_nchw;
      out.plane = d->ho * d->wo;
      out.ldy = O;
      out.y = j->y;
      out.vw = out.wo = d->wo;
      out.n = O;
      cq_conv_store_rows__scalar(&out, stage, (size_t)O, (size_t)rows, q0);
    }
  }
}

static void depthwise_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const conv_job *j = ctx;
  const cq_qconv_op *op = j->op;
  const cq_qconv_packed *p = op->p;
  const conv_dims *d = j->d;
  uint8_t *plane = j->threads_mem + (size_t)thread * d->thread_bytes;
  uint8_t *flat = plane + d->plane_bytes;
  const int64_t positions = d->ho * d->wo;
  for (int64_t c = begin; c < end; c++) {
    const int64_t extra = 4 * p->dw_groups;
#if CQ_ARCH_X86
    if (op->path == PATH_DW_VNNI) {
      cq_conv_plane__avx512vnni(&j->im, c, d->wpp, extra, c > begin, plane);
    } else {
      cq_conv_plane__scalar(&j->im, c, d->wpp, extra, c > begin, plane);
    }
#else
    cq_conv_plane__scalar(&j->im, c, d->wpp, extra, c > begin, plane);
#endif
    uint8_t *yc = j->planes_y + c * positions;
    cq_conv_out out = group_out(j, c, d->wo);
    out.nchw = 1;
    const cq_conv_dw dw = {.p = p, .wpp = d->wpp, .ho = d->ho, .wo = d->wo, .flat = d->dw_flat,
                           .stage = flat, .out = &out};
#if CQ_ARCH_X86
    if (op->path == PATH_DW_VNNI) {
      cq_u8_dwconv__avx512vnni(&dw, c, plane, yc);
      continue;
    }
#endif
#if CQ_ARCH_ARM64
    if (op->path == PATH_DW_NEON) {
      cq_u8_dwconv__neon(&dw, c, plane, yc, op->x_zp, &op->rq);
      continue;
    }
#endif
    cq_u8_dwconv__scalar(&dw, c, plane, yc, op->x_zp, &op->rq);
  }
}

static void dwq_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const conv_job *j = ctx;
  (void)thread;
  const cq_qconv_op *op = j->op;
#if CQ_ARCH_X86
  const int in_place = !j->x_nchw;
  const cq_conv_dw_nhwc dq = {.p = op->p, .img = in_place ? NULL : j->im.dst,
                              .x = in_place ? j->x : NULL, .zrow = j->im.dst, .h = j->d->h,
                              .w = j->d->w, .zx = (uint8_t)op->x_zp, .wp = j->d->wp,
                              .wo = j->d->wo, .y = j->planes_y, .out = &op->out,
                              .init = op->dwq_init, .scale = op->dwq_scale,
                              .fbias = op->dwq_fbias, .mult = op->dwq_mult};
  cq_u8_dwconv_nhwc__avx512vnni(&dq, begin, end);
#else
  (void)op; /* the path exists only in x86-64 builds */
  (void)begin;
  (void)end;
#endif
}

/* The NHWC output staged by the depthwise kernel to the NCHW output: rows of the image. */
static void dwq_to_nchw_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const conv_job *j = ctx;
  (void)thread;
  const int64_t O = j->op->p->g.out_channels;
#if CQ_ARCH_X86
  cq_conv_to_nchw_rows__avx512vnni(j->planes_y, O, j->d->ho, j->d->wo, begin, end, j->y);
#else
  cq_conv_to_nchw_rows__scalar(j->planes_y, O, j->d->ho, j->d->wo, begin, end, j->y);
#endif
}

#if CQ_ARCH_X86 /* the direct path exists only in x86-64 builds (choose_path) */
static cq_conv_direct direct_args(const conv_job *j, const cq_conv_out *out) {
  const conv_dims *d = j->d;
  return (cq_conv_direct){.p = j->op->p, .planes = j->im.dst, .plane_stride = d->wpp,
                          .row_stride = d->wz, .vw = d->vw, .ho = d->ho, .wo = d->wo,
                          .flat = j->op->p->g.stride[0] == 1, .out = out};
}

static void direct_part(void *ctx, int thread, int64_t begin, int64_t end) {
  const conv_job *j = ctx;
  (void)thread;
  cq_conv_out out = group_out(j, 0, j->d->vw);
  out.y = j->planes_y;
  out.nchw = 1;
  const cq_conv_direct dc = direct_args(j, &out);
  cq_u8_conv_direct__avx512vnni(&dc, begin, end);
}
#endif

/* How far past a GEMM row's start the kernels read: 64 bytes at each of its K steps (aoff). */
static int64_t k_reach(const conv_job *j, const int64_t *aoff) {
  const cq_qconv_packed *p = j->op->p;
  int64_t reach = 0; /* bytes read past a row's start */
  for (int64_t s = 0; s < p->g.groups * p->ksteps; s++) {
    reach = aoff[s] + 64 > reach ? aoff[s] + 64 : reach;
  }
  return reach;
}

/* The GEMM rows (a multiple of the work unit) whose reads, `reach` bytes from each row's start,
 * stay inside an input of `bytes` bytes read in place (the AMX kernel reads the whole 32-row
 * strips of the units it is given). */
static int64_t in_place_rows(const conv_job *j, int64_t reach, int64_t bytes) {
  const int64_t lda = (int64_t)j->lda;
  int64_t rows = bytes >= reach ? (bytes - reach) / lda + 1 : 0; /* rows 0 .. rows-1 fit */
  rows = rows / 32 * 32;
  return rows < j->d->mv ? rows : j->d->mv;
}

/* The implicit GEMM over the threads: by rows, or by output channels when there are few positions
 * (each thread then streams only its part of the weights, and NCHW planes of a cache line or two
 * are not written by both). Measured with 2 threads: 512->512 3x3 on 7x7 (49 positions) 67 -> 48
 * us, 64->128 on 8x8 outputs, NCHW, 14.8 -> 11.7 us; from 14x14 on, the row split was as fast or
 * faster (256->256 on 14x14: 50 vs 62 us). */
static void run_implicit(conv_job *j, cq_threadpool *tp, int threads) {
  const cq_qconv_packed *p = j->op->p;
  const int64_t panels = p->gw[0]->panels;
  const int by_channels = threads > 1 && p->g.groups == 1 && panels >= threads &&
                          j->d->ho * j->d->wo <= CQ_CONV_SMALL_PLANE;
  if (by_channels) {
    cq_parallel_for(tp, panels, threads, implicit_channels_part, j);
  } else {
    cq_parallel_for(tp, j->units, threads, implicit_part, j);
  }
}

static int threads_for(const cq_qconv_op *op, const conv_dims *d, cq_threadpool *tp,
                       int64_t macs) {
  const int amx = op->isa == CQ_ISA_AMX && (d->path == PATH_IMPLICIT || d->path == PATH_ZROWS ||
                                            d->path == PATH_IM2COL_FAST);
  const int64_t outputs = d->ho * d->wo * op->p->g.out_channels;
  const int alone = amx ? outputs < CQ_CONV_MIN_PARALLEL_OUTPUTS_AMX &&
                              macs < CQ_CONV_MIN_PARALLEL_MACS_AMX
                        : macs < CQ_CONV_MIN_PARALLEL_MACS;
  return alone ? 1 : cq_threadpool_threads(tp);
}

cq_status cq_qconv_run(const cq_qconv_op *op, const uint8_t *x, cq_conv_layout x_layout,
                       int64_t batch, int64_t h, int64_t w, uint8_t *y, cq_conv_layout y_layout,
                       void *workspace, size_t workspace_bytes, cq_threadpool *tp) {
  if (!op) return cq_fail(CQ_EINVAL, "convolution operator is NULL");
  if (batch < 0 || h < 1 || w < 1) {
    return cq_fail(CQ_EINVAL, "convolution input of %lld images of %lld x %lld", (long long)batch,
                   (long long)h, (long long)w);
  }
  if ((unsigned)x_layout > CQ_CONV_NHWC || (unsigned)y_layout > CQ_CONV_NHWC) {
    return cq_fail(CQ_EINVAL, "unknown convolution layout");
  }
  const cq_qconv_packed *p = op->p;
  const cq_conv_geom *g = &p->g;
  conv_dims d;
  plan_dims(op, h, w, x_layout, y_layout, &d);
  if (d.ho < 1 || d.wo < 1) {
    return cq_fail(CQ_ESHAPE, "the dilated kernel (%lld x %lld) is larger than the padded input "
                   "(%lld x %lld)", (long long)(g->dilation[0] * (g->kernel[0] - 1) + 1),
                   (long long)(g->dilation[1] * (g->kernel[1] - 1) + 1), (long long)d.hp,
                   (long long)d.wp);
  }
  if (batch == 0) return CQ_OK;
  if (!x || !y || !workspace) {
    return cq_fail(CQ_EINVAL, "convolution input, output or workspace is NULL");
  }
  const int pool_threads = cq_threadpool_threads(tp);
  const size_t need = cq_qconv_workspace_size(op, h, w, x_layout, y_layout, pool_threads);
  if (workspace_bytes < need) {
    return cq_fail(CQ_EINVAL, "convolution workspace of %zu bytes is smaller than the %zu needed",
                   workspace_bytes, need);
  }
  const int64_t C = g->in_channels, O = g->out_channels;
  uint8_t *ws = (uint8_t *)align64((size_t)(uintptr_t)workspace);
  conv_job j = {.op = op, .d = &d, .x_nchw = x_layout == CQ_CONV_NCHW,
                .y_nchw = y_layout == CQ_CONV_NCHW};
  j.im = (cq_conv_image){.nchw = j.x_nchw, .c = C, .h = h, .w = w, .ph = g->padding[0],
                         .pw = g->padding[1], .hp = d.hp, .wp = d.wp, .zx = (uint8_t)op->x_zp,
                         .dst = ws};
  int64_t *aoff = (int64_t *)(ws + d.img_bytes);
  j.aoff = aoff;
  uint8_t *planar_x = ws + d.img_bytes + d.aoff_bytes;
  uint8_t *planar_y = planar_x + d.planar_x_bytes;
  j.threads_mem = planar_y + d.planar_y_bytes;
  const int64_t macs = d.ho * d.wo * O * p->cg * p->taps;
  const int threads = threads_for(op, &d, tp, macs);
  if (d.path == PATH_IMPLICIT || d.path == PATH_IM2COL_FAST || d.path == PATH_ZROWS) {
    for (int64_t gi = 0; gi < g->groups; gi++) {
      for (int64_t s = 0; s < p->ksteps; s++) {
        const cq_conv_seg *sg = &p->seg[p->step_seg[s]];
        const int64_t t = s - sg->kdst / 64;
        aoff[gi * p->ksteps + s] =
            d.path == PATH_IMPLICIT
                ? (sg->di * d.wp + sg->dj) * C + gi * p->cg + sg->coff + 64 * t
                : 64 * s;
      }
    }
  }
  if (!is_depthwise(d.path) && d.path != PATH_DIRECT && (d.path != PATH_DW_NHWC || j.x_nchw)) {
    /* readable, defined slack after the image */
    const size_t img = (size_t)(d.path == PATH_ZROWS ? d.ho * d.wz * p->zpx : d.hp * d.wp * C);
    memset(ws + img, op->x_zp, d.img_bytes - img);
  }
  for (int64_t n = 0; n < batch; n++) {
    j.x = x + n * C * h * w;
    j.y = y + n * O * d.ho * d.wo;
    j.im.x = j.x;
    if (d.planar_x_bytes) { /* NHWC input to NCHW planes first */
      j.x_nhwc = j.x;
      j.im.x = planar_x;
      j.im.nchw = 1;
      cq_parallel_for(tp, h, C * h * w >= 65536 ? threads : 1, to_planes_part, &j);
    }
    if (d.path == PATH_DW_NHWC) {
      /* the padded NHWC image by the threads that read its rows (an NHWC input: only the row
       * of zero points), the rows, the NCHW output */
      if (j.x_nchw) {
        cq_parallel_for(tp, d.hp, threads, image_part, &j);
      } else if (n == 0) {
        memset(ws, op->x_zp, (size_t)(w * C + 64));
      }
      j.planes_y = d.planar_y_bytes ? planar_y : j.y;
      cq_parallel_for(tp, d.ho, threads, dwq_part, &j);
      if (d.planar_y_bytes) {
        /* the threads split the rows of every output plane: only when each one's share of a
         * plane spans several cache lines (two threads writing the same lines of small planes
         * made 672ch 7x7 outputs 0.044 -> 0.063 ms) */
        const int split = d.ho * d.wo >= 512 * (int64_t)threads;
        cq_parallel_for(tp, d.ho, split ? threads : 1, dwq_to_nchw_part, &j);
      }
      continue;
    }
    if (is_depthwise(d.path) || d.path == PATH_DIRECT) {
      j.planes_y = d.planar_y_bytes ? planar_y : j.y;
      if (d.path == PATH_DIRECT) {
#if CQ_ARCH_X86
        for (int64_t c = 0; c < C; c++) {
          cq_conv_plane__avx512vnni(&j.im, c, d.wz, 4 * p->direct_groups, 0, ws + c * d.wpp);
        }
        const cq_conv_direct dc = direct_args(&j, NULL);
        cq_parallel_for(tp, cq_conv_direct_units(&dc), threads, direct_part, &j);
#endif
      } else {
        cq_parallel_for(tp, C, threads, depthwise_part, &j);
      }
      if (d.planar_y_bytes) {
        cq_parallel_for(tp, d.ho, O * d.ho * d.wo >= 65536 ? threads : 1, from_planes_part, &j);
      }
      continue;
    }
    /* finer items balance small convolutions between the threads */
    j.unit_rows = op->isa == CQ_ISA_AMX ? 32 : 16;
    j.units = (d.mv + j.unit_rows - 1) / j.unit_rows;
    if (d.path == PATH_ZROWS) {
      j.im.wp = d.wz; /* the columns past the padded width hold zx like the padding */
      cq_parallel_for(tp, d.ho, threads, zrows_part, &j);
      j.a = ws;
      j.a_tail_row = d.mv;
      j.lda = (size_t)(p->zpx * g->stride[1]);
      run_implicit(&j, tp, threads);
      continue;
    }
    j.lda = (size_t)C;
    if (d.path == PATH_IMPLICIT && !j.x_nchw && g->padding[0] == 0 && g->padding[1] == 0) {
      /* the image would be the input itself: read it in place, but for the last rows, where the
       * kernels' reads (whole 32-row strips and 64-byte K steps on AMX) would pass its end */
      const int64_t row_reach = k_reach(&j, aoff);
      j.a = j.x;
      j.a_tail_row = in_place_rows(&j, row_reach, C * h * w);
      const size_t from = (size_t)j.a_tail_row * j.lda, bytes = (size_t)(C * h * w);
      const size_t reach = (size_t)((d.mv + 31) / 32 * 32 - j.a_tail_row) * j.lda +
                           (size_t)row_reach;
      memcpy(ws, j.x + from, bytes - from);
      if (reach > bytes - from) { /* defined bytes for the rows past the last (discarded) */
        const size_t end = reach < d.img_bytes ? reach : d.img_bytes;
        memset(ws + (bytes - from), op->x_zp, end - (bytes - from));
      }
      j.a_tail = (const uint8_t *)((uintptr_t)ws - from); /* row q: ws + (q - a_tail_row) lda */
      run_implicit(&j, tp, threads);
      continue;
    }
    /* the image rows on the threads that read them (mostly: both split the rows in order) */
    cq_parallel_for(tp, d.hp, threads, image_part, &j);
    j.a = ws;
    j.a_tail_row = d.mv;
    if (d.path == PATH_IMPLICIT) {
      run_implicit(&j, tp, threads);
    } else {
      cq_parallel_for(tp, j.units, threads, im2col_part, &j);
    }
  }
  return CQ_OK;
}

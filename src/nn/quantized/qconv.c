/* nnq.Conv1d / Conv2d and nniq.ConvReLU1d / ConvReLU2d: quint8 [N, C, (H,) W] -> quint8
 * [N, O, (Ho,) Wo], with the engine's requantization rule (torch-1.13-semantics.md 5.1-5.3).
 *
 * Conv1d runs as a 2-D convolution of height 1. For every output position the integer accumulator
 * is  acc[o] = sum over the window of (x - zx) * (w[o] - zw[o]), padding contributing 0 (PyTorch's
 * engines pad with the input zero point). Two ways to compute it, identical in result:
 *   groups == 1  im2col into a uint8 [Ho*Wo, C*kh*kw] matrix (padding filled with zx) and the
 *                int8 GEMM of kernels/gemm/qgemm.h with the weight packed once at construction;
 *   groups > 1   a direct reference loop over each group's window (qgemm takes one weight matrix
 *                per call, and depthwise windows are far shorter than its K blocking), then the
 *                requantization kernel of kernels/requant with the same engine rule.
 * The GEMM produces channels-last rows; they are transposed into cquant's NCHW layout.
 *
 * Buffers: "weight" (int8 [O, C/groups, (kh,) kw] with the weight qparams attached) and "bias"
 * (float32 [O], when there is one). */
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "kernels/gemm/qgemm.h"
#include "nn/im2col.h"
#include "nn/module_impl.h"
#include "nn/quantized/qmodules.h"
#include "nn/quantized/qops.h"
#include "nn/quantized/qstatic_impl.h"

typedef struct qconv_impl {
  int dims;
  int64_t in_channels, out_channels, groups;
  /* as given (dims entries used), for printing */
  int64_t kernel[2], stride[2], padding[2], dilation[2];
  /* the 2-D geometry: [0] = H, [1] = W (H: kernel 1, stride 1, no padding for Conv1d) */
  int64_t k2[2], s2[2], p2[2], d2[2];
  int relu;
  int has_bias;
  cq_backend engine;
  cq_requant_rule rule;
  int per_channel;
  float y_scale;
  int32_t y_zp;
  int64_t k_group; /* (C / groups) * kh * kw */
  int8_t *w;       /* [O, k_group] quantized weight */
  float *w_scale;  /* O entries if per_channel else 1 */
  int32_t *w_zp;   /* O entries (a per-tensor zero point repeated) */
  float *bias;     /* O entries or NULL */
  cq_qgemm_packed *packed; /* groups == 1 */
} qconv_impl;

static void qconv_destroy(void *ptr) {
  qconv_impl *p = ptr;
  if (!p) return;
  cq_qgemm_packed_destroy(p->packed);
  cq_free(p->w);
  cq_free(p->w_scale);
  cq_free(p->w_zp);
  cq_free(p->bias);
  cq_free(p);
}

/* --- forward ------------------------------------------------------------------------------------ */

typedef struct conv_shape {
  int64_t batch, height, width, out_h, out_w;
} conv_shape;

static cq_status qconv_plan(const cq_module *m, const cq_tensor *x, conv_shape *s) {
  const qconv_impl *p = m->impl;
  char buf[128];
  cq_status st = cq_qact_check(m, x, 0);
  if (st != CQ_OK) return st;
  if (x->dtype != CQ_U8) {
    return cq_module_fail(m, CQ_EINVAL, "expected a quint8 input (static quantized convolution "
                          "takes quint8 activations), got qint8");
  }
  if (x->ndim != p->dims + 2) {
    return cq_module_fail(m, CQ_ESHAPE, "Input shape must be `(N, C, %s)`, got %s",
                          p->dims == 2 ? "H, W" : "L", cq_shape_str(x->ndim, x->shape, buf,
                                                                   sizeof buf));
  }
  if (x->shape[1] != p->in_channels) {
    return cq_module_fail(m, CQ_ESHAPE, "expected %lld input channels, but input of size %s has "
                          "%lld", (long long)p->in_channels,
                          cq_shape_str(x->ndim, x->shape, buf, sizeof buf),
                          (long long)x->shape[1]);
  }
  s->batch = x->shape[0];
  s->height = p->dims == 2 ? x->shape[2] : 1;
  s->width = x->shape[x->ndim - 1];
  if (s->height < 1 || s->width < 1) {
    return cq_module_fail(m, CQ_ESHAPE, "input of size %s has an empty spatial dimension",
                          cq_shape_str(x->ndim, x->shape, buf, sizeof buf));
  }
  s->out_h = cq_conv_out_size(s->height, p->k2[0], p->s2[0], p->p2[0], p->d2[0]);
  s->out_w = cq_conv_out_size(s->width, p->k2[1], p->s2[1], p->p2[1], p->d2[1]);
  if (s->out_h < 1 || s->out_w < 1) {
    return cq_module_fail(m, CQ_ESHAPE, "the dilated kernel (%lld x %lld) is larger than the "
                          "padded input (%lld x %lld)",
                          (long long)(p->d2[0] * (p->k2[0] - 1) + 1),
                          (long long)(p->d2[1] * (p->k2[1] - 1) + 1),
                          (long long)(s->height + 2 * p->p2[0]),
                          (long long)(s->width + 2 * p->p2[1]));
  }
  return CQ_OK;
}

/* Row (oh, ow) of the uint8 column matrix of channels [c0, c0 + cg): columns in the weight's
 * (c, i, j) order, positions in the padding filled with the input zero point. */
static void im2col_u8(const qconv_impl *p, const conv_shape *s, const uint8_t *image, int64_t c0,
                      int64_t cg, uint8_t zx, uint8_t *col) {
  const int64_t kh = p->k2[0], kw = p->k2[1];
  for (int64_t oh = 0; oh < s->out_h; oh++) {
    for (int64_t ow = 0; ow < s->out_w; ow++) {
      uint8_t *row = col + (oh * s->out_w + ow) * cg * kh * kw;
      for (int64_t c = 0; c < cg; c++) {
        const uint8_t *plane = image + (c0 + c) * s->height * s->width;
        for (int64_t i = 0; i < kh; i++) {
          const int64_t ih = oh * p->s2[0] - p->p2[0] + i * p->d2[0];
          for (int64_t j = 0; j < kw; j++) {
            const int64_t iw = ow * p->s2[1] - p->p2[1] + j * p->d2[1];
            const int inside = ih >= 0 && ih < s->height && iw >= 0 && iw < s->width;
            *row++ = inside ? plane[ih * s->width + iw] : zx;
          }
        }
      }
    }
  }
}

/* The reference accumulation of a grouped convolution for one image: acc [positions, O]. */
static void grouped_acc(const qconv_impl *p, const conv_shape *s, const uint8_t *image,
                        int32_t zx, int32_t *acc) {
  const int64_t og = p->out_channels / p->groups, cg = p->in_channels / p->groups;
  const int64_t kh = p->k2[0], kw = p->k2[1];
  for (int64_t oh = 0; oh < s->out_h; oh++) {
    for (int64_t ow = 0; ow < s->out_w; ow++) {
      int32_t *a = acc + (oh * s->out_w + ow) * p->out_channels;
      for (int64_t o = 0; o < p->out_channels; o++) {
        const int64_t c0 = (o / og) * cg;
        const int8_t *w = p->w + o * p->k_group;
        const int32_t zw = p->w_zp[o];
        uint32_t sum = 0; /* wraps like PyTorch's int32 accumulators */
        for (int64_t c = 0; c < cg; c++) {
          const uint8_t *plane = image + (c0 + c) * s->height * s->width;
          for (int64_t i = 0; i < kh; i++) {
            const int64_t ih = oh * p->s2[0] - p->p2[0] + i * p->d2[0];
            if (ih < 0 || ih >= s->height) continue;
            for (int64_t j = 0; j < kw; j++) {
              const int64_t iw = ow * p->s2[1] - p->p2[1] + j * p->d2[1];
              if (iw < 0 || iw >= s->width) continue;
              const int32_t xv = (int32_t)plane[ih * s->width + iw] - zx;
              const int32_t wv = (int32_t)w[(c * kh + i) * kw + j] - zw;
              sum += (uint32_t)(xv * wv);
            }
          }
        }
        a[o] = (int32_t)sum;
      }
    }
  }
}

static cq_status qconv_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                               int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const qconv_impl *p = m->impl;
  const cq_tensor *x = in[0];
  conv_shape s = {0, 0, 0, 0, 0};
  cq_status st = qconv_plan(m, x, &s);
  if (st != CQ_OK) return st;
  int64_t shape[4];
  int nd = 0;
  shape[nd++] = s.batch;
  shape[nd++] = p->out_channels;
  if (p->dims == 2) shape[nd++] = s.out_h;
  shape[nd++] = s.out_w;
  cq_tensor *y;
  st = cq_qact_new(ctx, CQ_QUINT8, nd, shape, p->y_scale, p->y_zp, &y);
  if (st != CQ_OK) return st;
  const int64_t positions = s.out_h * s.out_w, in_image = p->in_channels * s.height * s.width;
  const float x_scale = x->qparams->scale[0];
  const int32_t x_zp = x->qparams->zero_point[0];
  if (s.batch == 0) {
    out[0] = y;
    return CQ_OK;
  }
  uint8_t *rows = cq_malloc_for((size_t)(positions * p->out_channels), "convolution output rows");
  uint8_t *col = NULL;
  int32_t *acc = NULL;
  cq_qgemm_op *op = NULL;
  cq_requant_params rq;
  memset(&rq, 0, sizeof rq);
  if (!rows) {
    st = CQ_ENOMEM;
    goto done;
  }
  if (p->groups == 1) {
    col = cq_malloc_for((size_t)(positions * p->k_group), "convolution columns");
    if (!col) {
      st = CQ_ENOMEM;
      goto done;
    }
    cq_qgemm_quant q = {.x_scale = x_scale, .x_zp = x_zp, .y_scale = p->y_scale,
                        .y_zp = p->y_zp, .relu = p->relu, .rule = p->rule};
    st = cq_qgemm_create(p->packed, &q, &op);
  } else {
    acc = cq_malloc_for(sizeof(int32_t) * (size_t)(positions * p->out_channels),
                        "convolution accumulators");
    if (!acc) {
      st = CQ_ENOMEM;
      goto done;
    }
    st = cq_requant_params_create(p->out_channels, &rq);
    if (st == CQ_OK) {
      st = cq_requant_params_set_static(&rq, p->rule, x_scale, p->w_scale, p->per_channel,
                                        p->bias, p->y_scale, p->y_zp, p->relu);
    }
  }
  if (st != CQ_OK) goto done;
  const uint8_t *xd = x->data;
  uint8_t *yd = y->data;
  for (int64_t n = 0; n < s.batch; n++) {
    const uint8_t *image = xd + n * in_image;
    if (p->groups == 1) {
      im2col_u8(p, &s, image, 0, p->in_channels, (uint8_t)x_zp, col);
      st = cq_qgemm_run(op, col, positions, p->k_group, rows, p->out_channels, NULL);
      if (st != CQ_OK) goto done;
    } else {
      grouped_acc(p, &s, image, x_zp, acc);
      cq_requant__scalar((size_t)positions, (size_t)p->out_channels, acc,
                         (size_t)p->out_channels, &rq, 0, rows, (size_t)p->out_channels);
    }
    uint8_t *dst = yd + n * p->out_channels * positions;
    for (int64_t q = 0; q < positions; q++) {
      for (int64_t o = 0; o < p->out_channels; o++) dst[o * positions + q] = rows[q * p->out_channels + o];
    }
  }
done:
  cq_qgemm_destroy(op);
  cq_requant_params_release(&rq);
  cq_free(rows);
  cq_free(col);
  cq_free(acc);
  if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
  out[0] = y;
  return CQ_OK;
}

/* --- printing ----------------------------------------------------------------------------------- */

static void append_tuple(cq_strbuf *sb, const int64_t *v, int dims) {
  if (dims == 1) {
    cq_strbuf_appendf(sb, "(%lld,)", (long long)v[0]);
  } else {
    cq_strbuf_appendf(sb, "(%lld, %lld)", (long long)v[0], (long long)v[1]);
  }
}

static int all_equal(const int64_t *v, int dims, int64_t value) {
  for (int i = 0; i < dims; i++) {
    if (v[i] != value) return 0;
  }
  return 1;
}

static void qconv_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const qconv_impl *p = m->impl;
  cq_strbuf_appendf(sb, "%lld, %lld, kernel_size=", (long long)p->in_channels,
                    (long long)p->out_channels);
  append_tuple(sb, p->kernel, p->dims);
  cq_strbuf_append(sb, ", stride=");
  append_tuple(sb, p->stride, p->dims);
  cq_strbuf_append(sb, ", scale=");
  cq_qmod_append_scale(sb, p->y_scale);
  cq_strbuf_appendf(sb, ", zero_point=%d", (int)p->y_zp);
  if (!all_equal(p->padding, p->dims, 0)) {
    cq_strbuf_append(sb, ", padding=");
    append_tuple(sb, p->padding, p->dims);
  }
  if (!all_equal(p->dilation, p->dims, 1)) {
    cq_strbuf_append(sb, ", dilation=");
    append_tuple(sb, p->dilation, p->dims);
  }
  if (p->groups != 1) cq_strbuf_appendf(sb, ", groups=%lld", (long long)p->groups);
  /* QNNPACK materialises a zero bias at prepack, so its modules never print bias=False */
  if (!p->has_bias && p->engine != CQ_BACKEND_QNNPACK) cq_strbuf_append(sb, ", bias=False");
}

#define QCONV_TYPE(var, type_name)                                                \
  static const cq_module_type var = {                                             \
      .name = type_name,                                                          \
      .forward = qconv_forward,                                                   \
      .extra_repr = qconv_extra_repr,                                             \
      .destroy_impl = qconv_destroy,                                              \
      .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,                   \
  }

QCONV_TYPE(qconv1d_type, "QuantizedConv1d");
QCONV_TYPE(qconv2d_type, "QuantizedConv2d");
QCONV_TYPE(qconv_relu1d_type, "QuantizedConvReLU1d");
QCONV_TYPE(qconv_relu2d_type, "QuantizedConvReLU2d");

/* --- construction ------------------------------------------------------------------------------- */

static cq_status check_options(const char *who, const cq_conv_options *o, int dims) {
  if (!o) return cq_fail(CQ_EINVAL, "%s: options are NULL", who);
  if (o->in_channels < 1 || o->out_channels < 1 || o->groups < 1) {
    return cq_fail(CQ_EINVAL, "%s: in_channels %lld, out_channels %lld and groups %lld must be "
                   ">= 1", who, (long long)o->in_channels, (long long)o->out_channels,
                   (long long)o->groups);
  }
  if (o->in_channels % o->groups || o->out_channels % o->groups) {
    return cq_fail(CQ_EINVAL, "%s: in_channels %lld and out_channels %lld must be divisible by "
                   "groups %lld", who, (long long)o->in_channels, (long long)o->out_channels,
                   (long long)o->groups);
  }
  for (int d = 0; d < dims; d++) {
    if (o->kernel_size[d] < 1 || o->stride[d] < 1 || o->padding[d] < 0 || o->dilation[d] < 1) {
      return cq_fail(CQ_EINVAL, "%s: kernel_size %lld, stride %lld, padding %lld, dilation %lld "
                     "of dimension %d must be >= 1, >= 1, >= 0, >= 1", who,
                     (long long)o->kernel_size[d], (long long)o->stride[d],
                     (long long)o->padding[d], (long long)o->dilation[d], d);
    }
  }
  return CQ_OK;
}

static cq_status fill_impl(qconv_impl *p, const cq_conv_options *o, int dims, const cq_tensor *qw,
                           const float *bias) {
  p->dims = dims;
  p->in_channels = o->in_channels;
  p->out_channels = o->out_channels;
  p->groups = o->groups;
  for (int d = 0; d < 2; d++) {
    p->kernel[d] = d < dims ? o->kernel_size[d] : 1;
    p->stride[d] = d < dims ? o->stride[d] : 1;
    p->padding[d] = d < dims ? o->padding[d] : 0;
    p->dilation[d] = d < dims ? o->dilation[d] : 1;
  }
  if (dims == 2) {
    memcpy(p->k2, p->kernel, sizeof p->k2);
    memcpy(p->s2, p->stride, sizeof p->s2);
    memcpy(p->p2, p->padding, sizeof p->p2);
    memcpy(p->d2, p->dilation, sizeof p->d2);
  } else {
    p->k2[0] = p->s2[0] = p->d2[0] = 1;
    p->p2[0] = 0;
    p->k2[1] = p->kernel[0];
    p->s2[1] = p->stride[0];
    p->p2[1] = p->padding[0];
    p->d2[1] = p->dilation[0];
  }
  const int64_t O = o->out_channels;
  p->k_group = (o->in_channels / o->groups) * p->k2[0] * p->k2[1];
  const cq_qparams *wq = qw->qparams;
  p->per_channel = cq_qscheme_is_per_channel(wq->qscheme);
  p->w = cq_malloc_for((size_t)(O * p->k_group), "quantized convolution weight");
  p->w_scale = cq_malloc_for(sizeof(float) * (size_t)(p->per_channel ? O : 1), "weight scales");
  p->w_zp = cq_malloc_for(sizeof(int32_t) * (size_t)O, "weight zero points");
  p->bias = bias ? cq_malloc_for(sizeof(float) * (size_t)O, "convolution bias") : NULL;
  if (!p->w || !p->w_scale || !p->w_zp || (bias && !p->bias)) return CQ_ENOMEM;
  memcpy(p->w, qw->data, (size_t)(O * p->k_group));
  memcpy(p->w_scale, wq->scale, sizeof(float) * (size_t)(p->per_channel ? O : 1));
  for (int64_t c = 0; c < O; c++) p->w_zp[c] = wq->zero_point[p->per_channel ? c : 0];
  if (bias) memcpy(p->bias, bias, sizeof(float) * (size_t)O);
  p->has_bias = bias != NULL;
  if (o->groups == 1) {
    cq_status st = cq_qgemm_pack(p->w, O, p->k_group, p->w_scale, p->w_zp, p->per_channel,
                                 p->bias, &p->packed);
    if (st != CQ_OK) return st;
  } else {
    cq_status st = cq_requant_check_weights(O, p->w_scale, p->per_channel, p->bias);
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

cq_status cq_qmodule_conv(cq_module **out, const cq_conv_options *options, int dims,
                          const float *weight, const float *bias, const cq_qparams *wq,
                          const cq_qparams *yq, int relu, cq_backend engine) {
  if (!out) return cq_fail(CQ_EINVAL, "quantized module: the output pointer is NULL");
  *out = NULL;
  if (dims != 1 && dims != 2) {
    return cq_fail(CQ_EINVAL, "quantized convolution: dims must be 1 or 2, got %d", dims);
  }
  const cq_module_type *type = relu ? (dims == 1 ? &qconv_relu1d_type : &qconv_relu2d_type)
                                    : (dims == 1 ? &qconv1d_type : &qconv2d_type);
  const char *who = type->name;
  cq_status st = cq_qmod_check_engine(engine);
  if (st == CQ_OK) st = check_options(who, options, dims);
  if (st != CQ_OK) return st;
  float y_scale;
  int32_t y_zp;
  st = cq_qmod_output_qparams(who, yq, &y_scale, &y_zp);
  if (st != CQ_OK) return st;
  const int64_t O = options->out_channels, cg = options->in_channels / options->groups;
  int64_t wshape[4] = {O, cg, options->kernel_size[0], options->kernel_size[1]};
  const int64_t k_group = cg * options->kernel_size[0] * (dims == 2 ? options->kernel_size[1] : 1);
  cq_tensor *qw = NULL, *b = NULL;
  st = cq_qmod_quantize_weight(who, weight, O, k_group, dims + 2, wshape, wq, engine, &qw);
  if (st != CQ_OK) return st;
  if (bias) {
    st = cq_tensor_create(&b, CQ_F32, 1, &O);
    if (st == CQ_OK) memcpy(b->data, bias, sizeof(float) * (size_t)O);
  }
  qconv_impl *p = st == CQ_OK ? cq_calloc_for(1, sizeof *p, who) : NULL;
  if (p) {
    p->relu = relu != 0;
    p->engine = engine;
    p->rule = cq_qmod_engine_rule(engine);
    p->y_scale = y_scale;
    p->y_zp = y_zp;
    st = fill_impl(p, options, dims, qw, bias);
  } else if (st == CQ_OK) {
    st = CQ_ENOMEM;
  }
  if (st != CQ_OK) {
    qconv_destroy(p);
    cq_tensor_free(qw);
    cq_tensor_free(b);
    return cq_fail_context(st, "%s", who);
  }
  cq_module *m;
  st = cq_module_new(type, p, &m);
  if (st != CQ_OK) {
    cq_tensor_free(qw);
    cq_tensor_free(b);
    return st;
  }
  st = cq_module_add_buffer(m, "weight", qw);
  if (st == CQ_OK && b) {
    st = cq_module_add_buffer(m, "bias", b);
  } else {
    cq_tensor_free(b);
  }
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

/* nnq.Conv1d / Conv2d and nniq.ConvReLU1d / ConvReLU2d: quint8 [N, C, (H,) W] -> quint8
 * [N, O, (Ho,) Wo], with the engine's requantization rule (torch-1.13-semantics.md 5.1-5.3).
 *
 * Conv1d runs as a 2-D convolution of height 1. For every output position the integer accumulator
 * is  acc[o] = sum over the window of (x - zx) * (w[o] - zw[o]), padding contributing 0 (PyTorch's
 * engines pad with the input zero point); the kernels of kernels/conv/qconv.h compute it (the
 * weight is packed once at construction) and requantize with the engine's rule, bit-identically on
 * every ISA and thread count. Layout: a 2-D conv reads its input in whichever layout it comes
 * (NCHW from Quantize, channels-last from another conv) and writes the layout its kernel path
 * produces natively (cq_qconv_native_output: channels-last, or NCHW planes for depthwise), marked
 * on the tensor (cq_tensor.channels_last) when its consumer reads that layout
 * (cq_ctx_channels_last_wanted: another conv), else NCHW through the transposing output stage.
 * A chain of convs thus never transposes between them, and nothing else pays for it.
 *
 * The operator binding the packed weight to the input's qparams (requantization constants, zero
 * point terms) is cached per (ISA, input scale, input zero point), a few entries under a mutex, so
 * repeated calls with the same input quantization skip it; the module stays usable from several
 * threads at once. Work runs on the default thread pool (cq_set_num_threads).
 *
 * Buffers: "weight" (int8 [O, C/groups, (kh,) kw] with the weight qparams attached) and "bias"
 * (float32 [O], when there is one). */
#include <pthread.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "kernels/conv/qconv.h"
#include "nn/im2col.h"
#include "nn/module_impl.h"
#include "nn/quantized/qmodules.h"
#include "nn/quantized/qops.h"
#include "nn/quantized/qstatic_impl.h"

#define QCONV_CACHED_OPS 4

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
  cq_qconv_packed *packed;
  /* bound operators, by (isa, input scale bits, input zero point, folded clamp) */
  pthread_mutex_t lock;
  int lock_ready;
  int n_ops;
  struct {
    cq_isa isa;
    uint32_t x_scale_bits;
    int32_t x_zp;
    int clamp;
    int32_t clamp_lo, clamp_hi;
    cq_qconv_op *op;
  } ops[QCONV_CACHED_OPS];
} qconv_impl;

static void qconv_destroy(void *ptr) {
  qconv_impl *p = ptr;
  if (!p) return;
  for (int i = 0; i < p->n_ops; i++) cq_qconv_destroy(p->ops[i].op);
  if (p->lock_ready) pthread_mutex_destroy(&p->lock);
  cq_qconv_packed_destroy(p->packed);
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

/* The operator for this input quantization and ISA: from the cache, or created (and cached while
 * there is room; otherwise *temporary is set and the caller destroys it). */
static cq_status bound_op(qconv_impl *p, cq_isa isa, float x_scale, int32_t x_zp, int clamp,
                          int32_t clamp_lo, int32_t clamp_hi, cq_qconv_op **op, int *temporary) {
  uint32_t bits;
  memcpy(&bits, &x_scale, sizeof bits);
  *op = NULL;
  *temporary = 0;
  pthread_mutex_lock(&p->lock);
  for (int i = 0; i < p->n_ops; i++) {
    if (p->ops[i].isa == isa && p->ops[i].x_scale_bits == bits && p->ops[i].x_zp == x_zp &&
        p->ops[i].clamp == clamp &&
        (!clamp || (p->ops[i].clamp_lo == clamp_lo && p->ops[i].clamp_hi == clamp_hi))) {
      *op = p->ops[i].op;
      pthread_mutex_unlock(&p->lock);
      return CQ_OK;
    }
  }
  cq_qgemm_quant q = {.x_scale = x_scale, .x_zp = x_zp, .y_scale = p->y_scale, .y_zp = p->y_zp,
                      .relu = p->relu, .rule = p->rule, .clamp = clamp, .clamp_lo = clamp_lo,
                      .clamp_hi = clamp_hi};
  cq_status st = cq_qconv_create_isa(p->packed, &q, cq_qconv_preferred_isa(p->packed, isa), op);
  if (st == CQ_OK) {
    if (p->n_ops < QCONV_CACHED_OPS) {
      p->ops[p->n_ops].isa = isa;
      p->ops[p->n_ops].x_scale_bits = bits;
      p->ops[p->n_ops].x_zp = x_zp;
      p->ops[p->n_ops].clamp = clamp;
      p->ops[p->n_ops].clamp_lo = clamp_lo;
      p->ops[p->n_ops].clamp_hi = clamp_hi;
      p->ops[p->n_ops].op = *op;
      p->n_ops++;
    } else {
      *temporary = 1;
    }
  }
  pthread_mutex_unlock(&p->lock);
  return st;
}

static cq_status qconv_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                               int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  qconv_impl *p = m->impl;
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
  if (s.batch == 0) {
    out[0] = y;
    return CQ_OK;
  }
  cq_isa isa;
  st = cq_isa_active(&isa);
  if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
  cq_qconv_op *op = NULL;
  int temporary = 0;
  /* a Graph may fold the clamp after this conv into it (cq_ctx_fused_clamp) */
  int32_t lo, hi;
  const int clamp = cq_ctx_fused_clamp(ctx, &lo, &hi);
  st = bound_op(p, isa, x->qparams->scale[0], x->qparams->zero_point[0], clamp, lo, hi, &op,
                &temporary);
  void *ws = NULL;
  if (st == CQ_OK) {
    cq_threadpool *tp = cq_default_threadpool();
    /* 4-D activations stay in the layout the kernels work in from one conv to the next */
    const cq_conv_layout in_layout = x->channels_last ? CQ_CONV_NHWC : CQ_CONV_NCHW;
    const cq_conv_layout out_layout = p->dims == 2 && cq_ctx_channels_last_wanted(ctx)
                                          ? cq_qconv_native_output(op)
                                          : CQ_CONV_NCHW;
    y->channels_last = out_layout == CQ_CONV_NHWC;
    const size_t bytes = cq_qconv_workspace_size(op, s.height, s.width, in_layout, out_layout,
                                                 cq_threadpool_threads(tp));
    ws = cq_ctx_scratch(ctx, bytes, "convolution workspace");
    st = ws ? cq_qconv_run(op, x->data, in_layout, s.batch, s.height, s.width, y->data,
                           out_layout, ws, bytes, tp)
            : CQ_ENOMEM;
  }
  if (temporary) cq_qconv_destroy(op);
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

static int qconv_fuses_clamp(const cq_module *m, float *y_scale, int32_t *y_zp, int *upper) {
  const qconv_impl *p = m->impl;
  return cq_qmod_fuses_clamp(p->relu, p->y_scale, p->y_zp, p->rule, y_scale, y_zp, upper);
}

/* A 2-D conv reads channels-last input in place; depthwise works on NCHW planes and would convert
 * anyway, so it takes NCHW (its producer then writes NCHW directly). */
static int qconv_reads_channels_last(const cq_module *m, int after) {
  (void)after;
  const qconv_impl *p = m->impl;
  return p->dims == 2 && cq_qconv_reads_nhwc(p->packed);
}

#define QCONV_TYPE(var, type_name)                                                \
  static const cq_module_type var = {                                             \
      .name = type_name,                                                          \
      .forward = qconv_forward,                                                   \
      .extra_repr = qconv_extra_repr,                                             \
      .destroy_impl = qconv_destroy,                                              \
      .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,                   \
      .reads_channels_last = qconv_reads_channels_last,                           \
      .fuses_clamp = qconv_fuses_clamp,                                           \
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
  const cq_conv_geom g = {.in_channels = o->in_channels, .out_channels = O, .groups = o->groups,
                          .kernel = {p->k2[0], p->k2[1]}, .stride = {p->s2[0], p->s2[1]},
                          .padding = {p->p2[0], p->p2[1]}, .dilation = {p->d2[0], p->d2[1]}};
  cq_status st = cq_qconv_pack(&g, p->w, p->w_scale, p->w_zp, p->per_channel, p->bias,
                               &p->packed);
  if (st != CQ_OK) return st;
  if (pthread_mutex_init(&p->lock, NULL) != 0) {
    return cq_fail(CQ_ENOMEM, "cannot initialise the convolution's operator cache lock");
  }
  p->lock_ready = 1;
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
  return cq_module_new_weighted(type, p, qw, b, out);
}

int cq_qmodule_describe_conv(const cq_module *m, cq_qmodule_info *info) {
  if (m->type != &qconv1d_type && m->type != &qconv2d_type && m->type != &qconv_relu1d_type &&
      m->type != &qconv_relu2d_type) {
    return 0;
  }
  const qconv_impl *p = m->impl;
  *info = (cq_qmodule_info){0};
  info->has_engine = 1;
  info->engine = p->engine;
  info->scale = p->y_scale;
  info->zero_point = p->y_zp;
  info->dtype = CQ_QUINT8;
  info->relu = p->relu;
  info->dims = p->dims;
  info->conv.in_channels = p->in_channels;
  info->conv.out_channels = p->out_channels;
  info->conv.groups = p->groups;
  info->conv.bias = p->has_bias;
  for (int d = 0; d < 2; d++) {
    info->conv.kernel_size[d] = p->kernel[d];
    info->conv.stride[d] = p->stride[d];
    info->conv.padding[d] = p->padding[d];
    info->conv.dilation[d] = p->dilation[d];
  }
  return 1;
}

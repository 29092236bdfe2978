/* Float modules as ONNX nodes, and the QuantizeLinear / DequantizeLinear pairs of quantized values.
 *
 * A float module that cquant also runs on quantized tensors (ReLU, pools, Flatten, Sigmoid, ...)
 * reads the DequantizeLinear output of a quantized input and its result is quantized again with
 * the qparams cquant's quantized kernel gives (nn/quantized/qops.h): the input's for ReLU, clamps,
 * pools and shape ops, the fixed (1/256, 0) / (1/256, -128) for Sigmoid and (2/256, 128) /
 * (2/256, 0) for Tanh (quint8 / qint8). Modules that only run on float tensors (Linear, Conv,
 * BatchNorm, Softmax) refuse a quantized input, as cquant does when it runs them. */
#include <string.h>

#include "core/alloc.h"
#include "cquant/graph.h"
#include "io/onnx_export.h"
#include "nn/layers.h"

/* ---- quantized values ---------------------------------------------------------------------------- */

void ox_quantize_value(ox_exporter *x, const char *path, ox_value *v, float scale,
                       int32_t zero_point, cq_qdtype dtype) {
  ox_builder *b = &x->b;
  const char *base = path && path[0] ? path : v->name;
  if (!base || !v->name) return;
  const char *sname = ox_init_f32(b, ox_printf(b, "%s_scale", base), 0, NULL, &scale);
  const char *zname;
  const char *zbase = ox_printf(b, "%s_zero_point", base);
  if (dtype == CQ_QUINT8) {
    const uint8_t z = (uint8_t)zero_point;
    zname = ox_init_u8(b, zbase, 0, NULL, &z);
  } else {
    const int8_t z = (int8_t)zero_point;
    zname = ox_init_i8(b, zbase, 0, NULL, &z);
  }
  const char *qname = ox_value_name(b, ox_printf(b, "%s_q", base));
  const char *dqname = ox_value_name(b, ox_printf(b, "%s_dq", base));
  const char *qin[3] = {v->name, sname, zname};
  const char *qout[1] = {qname};
  ox_node(b, "QuantizeLinear", ox_printf(b, "%s_QuantizeLinear", base), 3, qin, 1, qout);
  const char *dqin[3] = {qname, sname, zname};
  const char *dqout[1] = {dqname};
  ox_node(b, "DequantizeLinear", ox_printf(b, "%s_DequantizeLinear", base), 3, dqin, 1, dqout);
  if (b->st != CQ_OK) return;
  v->quantized = 1;
  v->scale = scale;
  v->zero_point = zero_point;
  v->dtype = dtype;
  v->qname = qname;
  v->scale_name = sname;
  v->zp_name = zname;
  v->name = dqname;
}

const char *ox_dequantized_weight(ox_exporter *x, const char *path, const char *prefix,
                                  int ndim, const int64_t *dims, const int8_t *q,
                                  int64_t count, const float *scales, const int32_t *zero_points,
                                  int axis) {
  ox_builder *b = &x->b;
  (void)path;
  const char *qname = ox_init_i8(b, ox_printf(b, "%s_quantized", prefix), ndim, dims, q);
  int8_t *zp = ox_alloc(b, (size_t)count);
  for (int64_t i = 0; zp && i < count; i++) zp[i] = (int8_t)zero_points[i];
  const int per_channel = axis >= 0;
  const char *sname = ox_init_f32(b, ox_printf(b, "%s_scale", prefix), per_channel ? 1 : 0,
                                  &count, scales);
  const char *zname = ox_init_i8(b, ox_printf(b, "%s_zero_point", prefix), per_channel ? 1 : 0,
                                 &count, zp);
  const char *out = ox_value_name(b, prefix);
  const char *in[3] = {qname, sname, zname};
  const char *outs[1] = {out};
  Onnx__NodeProto *n =
      ox_node(b, "DequantizeLinear", ox_printf(b, "%s_DequantizeLinear", prefix), 3, in, 1, outs);
  if (per_channel) ox_attr_int(b, n, "axis", axis);
  return b->st == CQ_OK ? out : NULL;
}

/* ---- shapes -------------------------------------------------------------------------------------- */

int64_t ox_dims_product(const int64_t *dims, int from, int to) {
  int64_t known = 1, batch = 0;
  for (int i = from; i < to; i++) {
    if (dims[i] == OX_UNKNOWN) return OX_UNKNOWN;
    if (dims[i] < 0) {
      if (batch) return OX_UNKNOWN; /* N * N */
      batch = -dims[i];
    } else {
      known *= dims[i];
    }
  }
  return batch ? -(batch * known) : known;
}

int64_t ox_dims_sum(int64_t a, int64_t b) {
  if (a == OX_UNKNOWN || b == OX_UNKNOWN) return OX_UNKNOWN;
  if (a == 0 || b == 0 || (a > 0) == (b > 0)) return a + b; /* both known, or both k * N */
  return OX_UNKNOWN;
}

/* PyTorch's pooling / convolution output size (ceil_mode as ATen's pooling_output_shape). */
static int64_t window_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, int ceil_mode) {
  if (in < 0) return OX_UNKNOWN;
  const int64_t span = in + 2 * p - d * (k - 1) - 1;
  if (span < 0) return 0;
  int64_t out = (ceil_mode ? (span + s - 1) / s : span / s) + 1;
  if (ceil_mode && (out - 1) * s >= in + p) out--;
  return out;
}

void ox_window_shape(ox_value *out, const ox_value *in, int nspatial, const int64_t *k,
                     const int64_t *s, const int64_t *p, const int64_t *d, int ceil_mode,
                     int64_t channels) {
  ox_same_shape(out, in);
  const int first = in->ndim - nspatial;
  if (channels > 0 && first >= 1) out->dims[first - 1] = channels;
  for (int i = 0; i < nspatial && first + i >= 0; i++) {
    out->dims[first + i] = window_out(in->dims[first + i], k[i], s[i], p[i], d[i], ceil_mode);
  }
}

/* ---- helpers --------------------------------------------------------------------------------- */

cq_status ox_need_float(const ox_call *c) {
  for (int i = 0; i < c->nin; i++) {
    if (c->in[i]->quantized) {
      return ox_fail(c, CQ_EUNSUPPORTED,
                     "input %d is a quantized tensor, which this float module does not run on "
                     "(a DeQuantStub missing before it?)",
                     i);
    }
  }
  return CQ_OK;
}

const char *ox_op(ox_exporter *x, const char *path, const char *node_name, const char *op,
                  int nin, const char *const *inputs, const char *out_suffix,
                  Onnx__NodeProto **node) {
  const char *y = ox_out_name(x, path, out_suffix);
  const char *outs[1] = {y};
  Onnx__NodeProto *n = ox_node(&x->b, op, node_name, nin, inputs, 1, outs);
  if (node) *node = n;
  return x->b.st == CQ_OK ? y : NULL;
}

/* The output of a module that runs on float and quantized tensors alike: when input 0 is quantized,
 * quantize the float result (already in c->out[0].name) with the input's qparams. */
static void requantize_like_input(ox_exporter *x, const ox_call *c) {
  const ox_value *in = c->in[0];
  if (in->quantized) {
    ox_quantize_value(x, c->path, &c->out[0], in->scale, in->zero_point, in->dtype);
  }
}

static const float *tensor_f32(cq_module *m, const char *name) {
  cq_named_tensor *t = cq_module_find_tensor(m, name);
  return t && t->tensor->dtype == CQ_F32 && !t->tensor->qparams ? t->tensor->data : NULL;
}

static const char *param_init(ox_exporter *x, const ox_call *c, const char *name, int ndim,
                              const int64_t *dims) {
  const float *d = tensor_f32(c->m, name);
  if (!d) return NULL;
  return ox_init_f32(&x->b, ox_printf(&x->b, "%s.%s", c->path, name), ndim, dims, d);
}

/* ---- Linear -------------------------------------------------------------------------------------- */

const char *ox_linear_nodes(ox_exporter *x, const ox_call *c, const char *xin, int rank,
                            const char *w, const char *bias, int relu) {
  ox_builder *b = &x->b;
  const char *y;
  const char *op_suffix = relu ? (rank == 2 ? "Gemm" : "MatMul") : NULL;
  if (rank == 2) {
    const char *in[3] = {xin, w, bias};
    Onnx__NodeProto *n;
    y = ox_op(x, c->path, c->path, "Gemm", bias ? 3 : 2, in, op_suffix, &n);
    ox_attr_int(b, n, "transB", 1);
  } else {
    const char *in[2] = {xin, w};
    y = ox_op(x, c->path, c->path, "MatMul", 2, in, bias ? "MatMul" : op_suffix, NULL);
    if (bias) {
      const char *ain[2] = {y, bias};
      y = ox_op(x, c->path, ox_printf(b, "%s_Add", c->path), "Add", 2, ain,
                relu ? "Add" : NULL, NULL);
    }
  }
  if (relu) {
    const char *rin[1] = {y};
    y = ox_op(x, c->path, ox_printf(b, "%s_Relu", c->path), "Relu", 1, rin, NULL, NULL);
  }
  return y;
}

void ox_linear_shape(ox_value *out, const ox_value *in, int64_t out_features) {
  ox_same_shape(out, in);
  if (out->ndim >= 1) out->dims[out->ndim - 1] = out_features;
}

static cq_status emit_linear(ox_exporter *x, const ox_call *c) {
  cq_status st = ox_need_float(c);
  if (st != CQ_OK) return st;
  int64_t in_f, out_f;
  int has_bias;
  st = cq_linear_describe(c->m, &in_f, &out_f, &has_bias);
  if (st != CQ_OK) return st;
  const ox_value *in = c->in[0];
  const float *w = tensor_f32(c->m, "weight");
  if (!w) return ox_fail(c, CQ_EUNSUPPORTED, "has no float32 weight");
  ox_builder *b = &x->b;
  const char *wname;
  if (in->ndim == 2) {
    const int64_t dims[2] = {out_f, in_f};
    wname = ox_init_f32(b, ox_printf(b, "%s.weight", c->path), 2, dims, w);
  } else {
    /* MatMul reads W^T [in, out] */
    float *wt = cq_malloc_for(sizeof *wt * (size_t)(in_f * out_f), "transposed weight");
    if (!wt) return CQ_ENOMEM;
    for (int64_t o = 0; o < out_f; o++) {
      for (int64_t i = 0; i < in_f; i++) wt[i * out_f + o] = w[o * in_f + i];
    }
    const int64_t dims[2] = {in_f, out_f};
    wname = ox_init_f32(b, ox_printf(b, "%s.weight", c->path), 2, dims, wt);
    cq_free(wt);
  }
  const char *bname = has_bias ? param_init(x, c, "bias", 1, &out_f) : NULL;
  c->out[0].name = ox_linear_nodes(x, c, in->name, in->ndim, wname, bname, 0);
  ox_linear_shape(&c->out[0], in, out_f);
  return b->st;
}

/* ---- Conv ---------------------------------------------------------------------------------------- */

const char *ox_conv_nodes(ox_exporter *x, const ox_call *c, const char *xin,
                          const cq_conv_options *o, int dims, const char *w, const char *bias,
                          int relu) {
  ox_builder *b = &x->b;
  const char *in[3] = {xin, w, bias};
  Onnx__NodeProto *n;
  const char *y = ox_op(x, c->path, c->path, "Conv", bias ? 3 : 2, in, relu ? "Conv" : NULL, &n);
  int64_t k[2], s[2], p[4], d[2];
  for (int i = 0; i < dims; i++) {
    k[i] = o->kernel_size[i];
    s[i] = o->stride[i];
    d[i] = o->dilation[i];
    p[i] = p[i + dims] = o->padding[i];
  }
  ox_attr_ints(b, n, "kernel_shape", dims, k);
  ox_attr_ints(b, n, "strides", dims, s);
  ox_attr_ints(b, n, "pads", 2 * dims, p);
  ox_attr_ints(b, n, "dilations", dims, d);
  ox_attr_int(b, n, "group", o->groups);
  if (relu) {
    const char *rin[1] = {y};
    y = ox_op(x, c->path, ox_printf(b, "%s_Relu", c->path), "Relu", 1, rin, NULL, NULL);
  }
  return y;
}

void ox_conv_shape(ox_value *out, const ox_value *in, const cq_conv_options *o, int dims) {
  ox_window_shape(out, in, dims, o->kernel_size, o->stride, o->padding, o->dilation, 0,
                  o->out_channels);
}

static cq_status emit_conv(ox_exporter *x, const ox_call *c) {
  cq_status st = ox_need_float(c);
  if (st != CQ_OK) return st;
  cq_conv_options o;
  int dims;
  st = cq_conv_describe(c->m, &o, &dims);
  if (st != CQ_OK) return st;
  const ox_value *in = c->in[0];
  if (in->ndim != dims + 2) {
    return ox_fail(c, CQ_EUNSUPPORTED, "expects a %d-D batched input, the model gives it %d-D",
                   dims + 2, in->ndim);
  }
  const int64_t wd[4] = {o.out_channels, o.in_channels / o.groups, o.kernel_size[0],
                         o.kernel_size[1]};
  const char *w = param_init(x, c, "weight", dims + 2, wd);
  if (!w) return x->b.st != CQ_OK ? x->b.st : ox_fail(c, CQ_EUNSUPPORTED, "has no weight");
  const char *bias = o.bias ? param_init(x, c, "bias", 1, &o.out_channels) : NULL;
  c->out[0].name = ox_conv_nodes(x, c, in->name, &o, dims, w, bias, 0);
  ox_conv_shape(&c->out[0], in, &o, dims);
  return x->b.st;
}

/* ---- BatchNorm ----------------------------------------------------------------------------------- */

static cq_status emit_batchnorm(ox_exporter *x, const ox_call *c) {
  cq_status st = ox_need_float(c);
  if (st != CQ_OK) return st;
  int64_t nf;
  double eps, momentum;
  st = cq_batchnorm_describe(c->m, &nf, &eps, &momentum);
  if (st != CQ_OK) return st;
  static const char *names[4] = {"weight", "bias", "running_mean", "running_var"};
  const char *in[5] = {c->in[0]->name};
  for (int i = 0; i < 4; i++) {
    in[i + 1] = param_init(x, c, names[i], 1, &nf);
    if (!in[i + 1]) {
      return x->b.st != CQ_OK ? x->b.st
                              : ox_fail(c, CQ_EUNSUPPORTED, "has no float32 %s", names[i]);
    }
  }
  Onnx__NodeProto *n;
  c->out[0].name = ox_op(x, c->path, c->path, "BatchNormalization", 5, in, NULL, &n);
  ox_attr_float(&x->b, n, "epsilon", (float)eps);
  ox_attr_float(&x->b, n, "momentum", (float)(1.0 - momentum));
  ox_same_shape(&c->out[0], c->in[0]);
  return x->b.st;
}

/* ---- activations --------------------------------------------------------------------------------- */

/* One op on input 0 with the same shape out; quantized in -> quantized out with the input's
 * qparams. */
static cq_status unary_same(ox_exporter *x, const ox_call *c, const char *op) {
  const char *in[1] = {c->in[0]->name};
  c->out[0].name = ox_op(x, c->path, c->path, op, 1, in, NULL, NULL);
  ox_same_shape(&c->out[0], c->in[0]);
  requantize_like_input(x, c);
  return x->b.st;
}

static cq_status emit_relu(ox_exporter *x, const ox_call *c) { return unary_same(x, c, "Relu"); }

static cq_status emit_identity(ox_exporter *x, const ox_call *c) {
  return unary_same(x, c, "Identity");
}

static cq_status emit_clip(ox_exporter *x, const ox_call *c) {
  float lo, hi;
  cq_status st = cq_hardtanh_describe(c->m, &lo, &hi);
  if (st != CQ_OK) return st;
  ox_builder *b = &x->b;
  const char *in[3] = {c->in[0]->name,
                       ox_init_f32(b, ox_printf(b, "%s_min", c->path), 0, NULL, &lo),
                       ox_init_f32(b, ox_printf(b, "%s_max", c->path), 0, NULL, &hi)};
  c->out[0].name = ox_op(x, c->path, c->path, "Clip", 3, in, NULL, NULL);
  ox_same_shape(&c->out[0], c->in[0]);
  requantize_like_input(x, c);
  return b->st;
}

/* Sigmoid / Tanh: quantized outputs get the fixed qparams of PyTorch's quantized kernels. */
static cq_status fixed_qparams_op(ox_exporter *x, const ox_call *c, const char *op, float scale,
                                  int32_t zp_quint8, int32_t zp_qint8) {
  const char *in[1] = {c->in[0]->name};
  c->out[0].name = ox_op(x, c->path, c->path, op, 1, in, NULL, NULL);
  ox_same_shape(&c->out[0], c->in[0]);
  const ox_value *v = c->in[0];
  if (v->quantized) {
    ox_quantize_value(x, c->path, &c->out[0], scale, v->dtype == CQ_QUINT8 ? zp_quint8 : zp_qint8,
                      v->dtype);
  }
  return x->b.st;
}

static cq_status emit_sigmoid(ox_exporter *x, const ox_call *c) {
  return fixed_qparams_op(x, c, "Sigmoid", 1.0f / 256.0f, 0, -128);
}

static cq_status emit_tanh(ox_exporter *x, const ox_call *c) {
  return fixed_qparams_op(x, c, "Tanh", 2.0f / 256.0f, 128, 0);
}

static cq_status emit_softmax(ox_exporter *x, const ox_call *c) {
  cq_status st = ox_need_float(c);
  if (st != CQ_OK) return st;
  int dim;
  st = cq_softmax_describe(c->m, &dim);
  if (st != CQ_OK) return st;
  const char *in[1] = {c->in[0]->name};
  Onnx__NodeProto *n;
  c->out[0].name = ox_op(x, c->path, c->path, "Softmax", 1, in, NULL, &n);
  ox_attr_int(&x->b, n, "axis", dim);
  ox_same_shape(&c->out[0], c->in[0]);
  return x->b.st;
}

/* ---- pooling ------------------------------------------------------------------------------------- */

static cq_status emit_pool(ox_exporter *x, const ox_call *c) {
  cq_pool_options o;
  cq_status st = cq_pool_describe(c->m, &o);
  if (st != CQ_OK) return st;
  const int max = cq_module_is(c->m, "MaxPool2d");
  if (!max && o.divisor_override) {
    return ox_fail(c, CQ_EUNSUPPORTED, "divisor_override has no ONNX AveragePool form");
  }
  if (c->in[0]->ndim != 4 && c->in[0]->ndim != 3) {
    return ox_fail(c, CQ_EUNSUPPORTED, "expects a 3-D or 4-D input, got %d-D", c->in[0]->ndim);
  }
  ox_builder *b = &x->b;
  const char *in[1] = {c->in[0]->name};
  Onnx__NodeProto *n;
  c->out[0].name = ox_op(x, c->path, c->path, max ? "MaxPool" : "AveragePool", 1, in, NULL, &n);
  const int64_t pads[4] = {o.padding[0], o.padding[1], o.padding[0], o.padding[1]};
  ox_attr_ints(b, n, "kernel_shape", 2, o.kernel_size);
  ox_attr_ints(b, n, "strides", 2, o.stride);
  ox_attr_ints(b, n, "pads", 4, pads);
  ox_attr_int(b, n, "ceil_mode", o.ceil_mode);
  if (max) {
    ox_attr_ints(b, n, "dilations", 2, o.dilation);
  } else {
    ox_attr_int(b, n, "count_include_pad", o.count_include_pad);
  }
  ox_window_shape(&c->out[0], c->in[0], 2, o.kernel_size, o.stride, o.padding, o.dilation,
                  o.ceil_mode, 0);
  requantize_like_input(x, c);
  return b->st;
}

static cq_status emit_adaptive_avgpool(ox_exporter *x, const ox_call *c) {
  int64_t oh, ow;
  cq_status st = cq_adaptive_avgpool_describe(c->m, &oh, &ow);
  if (st != CQ_OK) return st;
  const ox_value *v = c->in[0];
  if (v->ndim != 4 && v->ndim != 3) {
    return ox_fail(c, CQ_EUNSUPPORTED, "expects a 3-D or 4-D input, got %d-D", v->ndim);
  }
  const int64_t ih = v->dims[v->ndim - 2], iw = v->dims[v->ndim - 1];
  const char *in[1] = {v->name};
  if (oh == 1 && ow == 1) {
    c->out[0].name = ox_op(x, c->path, c->path, "GlobalAveragePool", 1, in, NULL, NULL);
  } else if (ih > 0 && iw > 0 && ih % oh == 0 && iw % ow == 0) {
    /* equal windows: an AveragePool with kernel = stride = input / output, as PyTorch exports */
    const int64_t k[2] = {ih / oh, iw / ow};
    Onnx__NodeProto *n;
    c->out[0].name = ox_op(x, c->path, c->path, "AveragePool", 1, in, NULL, &n);
    ox_attr_ints(&x->b, n, "kernel_shape", 2, k);
    ox_attr_ints(&x->b, n, "strides", 2, k);
  } else {
    return ox_fail(c, CQ_EUNSUPPORTED,
                   "output size (%lld, %lld) does not divide the input size: ONNX has no "
                   "adaptive pooling",
                   (long long)oh, (long long)ow);
  }
  ox_same_shape(&c->out[0], v);
  c->out[0].dims[v->ndim - 2] = oh;
  c->out[0].dims[v->ndim - 1] = ow;
  requantize_like_input(x, c);
  return x->b.st;
}

/* ---- shape ops ----------------------------------------------------------------------------------- */

/* A Reshape to `ndim` dims (0 = copy that input dim, -1 = inferred). */
const char *ox_reshape_nodes(ox_exporter *x, const char *path, const char *node_name,
                             const char *xin, int ndim, const int64_t *shape,
                             const char *out_suffix) {
  ox_builder *b = &x->b;
  const int64_t n = ndim;
  const char *sname = ox_init_i64(b, ox_printf(b, "%s_shape", node_name), 1, &n, shape);
  const char *in[2] = {xin, sname};
  return ox_op(x, path, node_name, "Reshape", 2, in, out_suffix, NULL);
}

static cq_status emit_flatten(ox_exporter *x, const ox_call *c) {
  int start, end;
  cq_status st = cq_flatten_describe(c->m, &start, &end);
  if (st != CQ_OK) return st;
  const ox_value *v = c->in[0];
  const int r = v->ndim;
  const int s = ox_axis(start, r > 0 ? r : 1), e = ox_axis(end, r > 0 ? r : 1);
  if (r == 0 || s < 0 || e < 0 || s > e) {
    return ox_fail(c, CQ_EUNSUPPORTED, "start_dim %d / end_dim %d do not fit a %d-D input", start,
                   end, r);
  }
  ox_value *out = &c->out[0];
  out->ndim = r - (e - s);
  for (int i = 0; i < s; i++) out->dims[i] = v->dims[i];
  out->dims[s] = ox_dims_product(v->dims, s, e + 1);
  for (int i = e + 1; i < r; i++) out->dims[i - (e - s)] = v->dims[i];
  const char *in[1] = {v->name};
  if (s == 1 && e == r - 1) {
    Onnx__NodeProto *n;
    out->name = ox_op(x, c->path, c->path, "Flatten", 1, in, NULL, &n);
    ox_attr_int(&x->b, n, "axis", 1);
  } else {
    int64_t shape[CQ_MAX_DIMS];
    int inferred = 0;
    for (int i = 0; i < out->ndim; i++) {
      const int64_t d = out->dims[i];
      if (i < s) {
        shape[i] = 0; /* same position in the input */
      } else if (d >= 0) {
        shape[i] = d;
      } else if (!inferred && d != OX_UNKNOWN) {
        shape[i] = -1;
        inferred = 1;
      } else {
        return ox_fail(c, CQ_EUNSUPPORTED, "the output shape depends on the batch size twice");
      }
    }
    out->name = ox_reshape_nodes(x, c->path, c->path, v->name, out->ndim, shape, NULL);
  }
  requantize_like_input(x, c);
  return x->b.st;
}

/* ---- FloatFunctional ----------------------------------------------------------------------------- */

static cq_status emit_functional(ox_exporter *x, const ox_call *c) {
  int dim = 0;
  const char *op = cq_functional_op(c->m, &dim);
  if (!op) return ox_fail(c, CQ_EUNSUPPORTED, "unknown FloatFunctional op");
  const char *in[CQ_MAX_IO];
  for (int i = 0; i < c->nin; i++) in[i] = c->in[i]->name;
  ox_value *out = &c->out[0];
  if (!strcmp(op, "cat")) {
    const ox_value *v = c->in[0];
    const int axis = ox_axis(dim, v->ndim);
    if (axis < 0) return ox_fail(c, CQ_EUNSUPPORTED, "cat dim %d does not fit a %d-D input", dim, v->ndim);
    for (int i = 1; i < c->nin; i++) {
      if (c->in[i]->quantized != v->quantized) {
        return ox_fail(c, CQ_EUNSUPPORTED, "mixes quantized and float inputs");
      }
    }
    Onnx__NodeProto *n;
    out->name = ox_op(x, c->path, c->path, "Concat", c->nin, in, NULL, &n);
    ox_attr_int(&x->b, n, "axis", dim);
    ox_same_shape(out, v);
    int64_t sum = 0;
    for (int i = 0; i < c->nin; i++) {
      sum = ox_dims_sum(sum, c->in[i]->ndim > axis ? c->in[i]->dims[axis] : OX_UNKNOWN);
    }
    out->dims[axis] = sum;
    /* torch.cat on quantized tensors gives the first input's qparams */
    requantize_like_input(x, c);
    return x->b.st;
  }
  cq_status st = ox_need_float(c);
  if (st != CQ_OK) return st;
  const char *onnx_op = !strcmp(op, "add") ? "Add" : !strcmp(op, "mul") ? "Mul" : NULL;
  if (!onnx_op) return ox_fail(c, CQ_EUNSUPPORTED, "FloatFunctional op %s has no ONNX form", op);
  out->name = ox_op(x, c->path, c->path, onnx_op, 2, in, NULL, NULL);
  ox_broadcast_shape(out, c->in[0], c->in[1]);
  return x->b.st;
}

void ox_broadcast_shape(ox_value *out, const ox_value *a, const ox_value *b) {
  const int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
  out->ndim = nd;
  for (int i = 0; i < nd; i++) {
    const int ia = i - (nd - a->ndim), ib = i - (nd - b->ndim);
    const int64_t da = ia >= 0 ? a->dims[ia] : 1, db = ib >= 0 ? b->dims[ib] : 1;
    out->dims[i] = da == 1 ? db : da;
  }
}

/* ---- the table ----------------------------------------------------------------------------------- */

static const struct {
  const char *name;
  ox_emit_fn fn;
} float_emitters[] = {
    {"Linear", emit_linear},
    {"Conv1d", emit_conv},
    {"Conv2d", emit_conv},
    {"BatchNorm1d", emit_batchnorm},
    {"BatchNorm2d", emit_batchnorm},
    {"ReLU", emit_relu},
    {"ReLU6", emit_clip},
    {"Hardtanh", emit_clip},
    {"Sigmoid", emit_sigmoid},
    {"Tanh", emit_tanh},
    {"Softmax", emit_softmax},
    {"MaxPool2d", emit_pool},
    {"AvgPool2d", emit_pool},
    {"AdaptiveAvgPool2d", emit_adaptive_avgpool},
    {"Flatten", emit_flatten},
    {"Dropout", emit_identity},
    {"Identity", emit_identity},
    {"QuantStub", emit_identity},
    {"DeQuantStub", emit_identity},
    {"FloatFunctional", emit_functional},
    {"LSTM", ox_emit_rnn},
    {"GRU", ox_emit_rnn},
};

ox_emit_fn ox_find_emitter(const char *class_name) {
  for (size_t i = 0; i < sizeof float_emitters / sizeof float_emitters[0]; i++) {
    if (!strcmp(float_emitters[i].name, class_name)) return float_emitters[i].fn;
  }
  return NULL;
}

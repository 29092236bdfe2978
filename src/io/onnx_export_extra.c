/* The ops imported graphs use (LeakyReLU, Hardsigmoid, Hardswish, BinaryConst, binary ops of two
 * inputs, MatMul, Reshape, Permute, Squeeze, Unsqueeze, Gather, ConvTranspose2d) and the converted QuantizedLeakyReLU /
 * QuantizedHardswish, as ONNX nodes.
 *
 * On quantized tensors: LeakyReLU and the shape ops keep the input's qparams, Hardsigmoid gives
 * the fixed (1/256, 0) for quint8 and (1/256, -128) for qint8 (nn/quantized/qops_activation_extra.h),
 * QuantizedLeakyReLU / QuantizedHardswish their own output qparams; BinaryConst, MatMul and
 * ConvTranspose2d run on float tensors only, as in cquant. */
#include <string.h>

#include "io/onnx_export.h"
#include "io/onnx_import.h"
#include "nn/layers.h"
#include "nn/quantized/qmodules.h"

static void requantize_like_input(ox_exporter *x, const ox_call *c) {
  const ox_value *in = c->in[0];
  if (in->quantized) {
    ox_quantize_value(x, c->path, &c->out[0], in->scale, in->zero_point, in->dtype);
  }
}

static cq_status emit_leaky_relu(ox_exporter *x, const ox_call *c) {
  float slope;
  cq_status st = cq_leaky_relu_describe(c->m, &slope);
  if (st != CQ_OK) return st;
  const char *in[1] = {c->in[0]->name};
  Onnx__NodeProto *n;
  c->out[0].name = ox_op(x, c->path, c->path, "LeakyRelu", 1, in, NULL, &n);
  ox_attr_float(&x->b, n, "alpha", slope);
  ox_same_shape(&c->out[0], c->in[0]);
  requantize_like_input(x, c);
  return x->b.st;
}

static cq_status emit_hardsigmoid(ox_exporter *x, const ox_call *c) {
  const char *in[1] = {c->in[0]->name};
  Onnx__NodeProto *n;
  c->out[0].name = ox_op(x, c->path, c->path, "HardSigmoid", 1, in, NULL, &n);
  ox_attr_float(&x->b, n, "alpha", 1.0f / 6.0f);
  ox_attr_float(&x->b, n, "beta", 0.5f);
  ox_same_shape(&c->out[0], c->in[0]);
  const ox_value *v = c->in[0];
  if (v->quantized) {
    ox_quantize_value(x, c->path, &c->out[0], 1.0f / 256.0f, v->dtype == CQ_QUINT8 ? 0 : -128,
                      v->dtype);
  }
  return x->b.st;
}

/* HardSwish is an opset-14 op: a model that has one is written at opset 14 (the other ops cquant
 * writes mean the same there), so that it reads back as one Hardswish rather than torch's opset-13
 * form x * HardSigmoid(x), which rounds differently. */
static const char *hardswish_nodes(ox_exporter *x, const ox_call *c, const char *xin) {
  const char *in[1] = {xin};
  if (x->opset < 14) x->opset = 14;
  return ox_op(x, c->path, c->path, "HardSwish", 1, in, NULL, NULL);
}

static cq_status emit_hardswish(ox_exporter *x, const ox_call *c) {
  cq_status st = ox_need_float(c); /* cquant needs output qparams: QuantizedHardswish */
  if (st != CQ_OK) return st;
  c->out[0].name = hardswish_nodes(x, c, c->in[0]->name);
  ox_same_shape(&c->out[0], c->in[0]);
  return x->b.st;
}

/* QuantizedLeakyReLU / QuantizedHardswish: the float op between DQ and Q with the module's
 * output qparams (the output keeps the input's dtype). */
static cq_status emit_qactivation(ox_exporter *x, const ox_call *c) {
  float scale, slope = 0.0f;
  int32_t zp;
  cq_status st = cq_qmodule_activation_describe(c->m, &scale, &zp, &slope);
  if (st != CQ_OK) return st;
  if (!c->in[0]->quantized) {
    return ox_fail(c, CQ_EUNSUPPORTED, "its input is a float tensor (a QuantStub missing?)");
  }
  if (cq_module_is(c->m, "QuantizedLeakyReLU")) {
    const char *in[1] = {c->in[0]->name};
    Onnx__NodeProto *n;
    c->out[0].name = ox_op(x, c->path, c->path, "LeakyRelu", 1, in, NULL, &n);
    ox_attr_float(&x->b, n, "alpha", slope);
  } else {
    c->out[0].name = hardswish_nodes(x, c, c->in[0]->name);
  }
  ox_same_shape(&c->out[0], c->in[0]);
  ox_quantize_value(x, c->path, &c->out[0], scale, zp, c->in[0]->dtype);
  return x->b.st;
}

static cq_status emit_binary_const(ox_exporter *x, const ox_call *c) {
  cq_status st = ox_need_float(c);
  if (st != CQ_OK) return st;
  cq_binary_op op;
  int first;
  const cq_tensor *k;
  st = cq_binary_const_describe(c->m, &op, &first, &k);
  if (st != CQ_OK) return st;
  if (k->dtype != CQ_F32) return ox_fail(c, CQ_EUNSUPPORTED, "the constant is not float32");
  static const char *ops[4] = {"Add", "Sub", "Mul", "Div"};
  if ((unsigned)op > CQ_BINARY_DIV) return ox_fail(c, CQ_EUNSUPPORTED, "unknown op %d", (int)op);
  const char *kname =
      ox_init_f32(&x->b, ox_printf(&x->b, "%s.constant", c->path), k->ndim, k->shape, k->data);
  const char *in[2] = {first ? kname : c->in[0]->name, first ? c->in[0]->name : kname};
  c->out[0].name = ox_op(x, c->path, c->path, ops[op], 2, in, NULL, NULL);
  ox_value kv;
  memset(&kv, 0, sizeof kv);
  kv.ndim = k->ndim;
  memcpy(kv.dims, k->shape, sizeof(int64_t) * (size_t)k->ndim);
  ox_broadcast_shape(&c->out[0], c->in[0], &kv);
  return x->b.st;
}

/* cq_binary: Add / Sub / Mul / Div of two float inputs with numpy broadcasting. */
static cq_status emit_binary(ox_exporter *x, const ox_call *c) {
  cq_binary_op op;
  cq_status st = cq_binary_describe(c->m, &op);
  if (st != CQ_OK) return st;
  for (int i = 0; i < 2; i++) {
    if (c->in[i]->quantized) return ox_fail(c, CQ_EUNSUPPORTED, "input %d is quantized", i);
  }
  static const char *ops[4] = {"Add", "Sub", "Mul", "Div"};
  const char *in[2] = {c->in[0]->name, c->in[1]->name};
  c->out[0].name = ox_op(x, c->path, c->path, ops[op], 2, in, NULL, NULL);
  ox_broadcast_shape(&c->out[0], c->in[0], c->in[1]);
  return x->b.st;
}

static cq_status emit_matmul(ox_exporter *x, const ox_call *c) {
  cq_status st = ox_need_float(c);
  if (st != CQ_OK) return st;
  const ox_value *a = c->in[0], *b = c->in[1];
  const char *in[2] = {a->name, b->name};
  c->out[0].name = ox_op(x, c->path, c->path, "MatMul", 2, in, NULL, NULL);
  /* batch dims broadcast, then [.., n, k] x [.., k, m] -> [.., n, m] (2-D and up) */
  ox_value *out = &c->out[0];
  if (a->ndim >= 2 && b->ndim >= 2) {
    ox_value ab = *a, bb = *b;
    ab.ndim -= 2;
    bb.ndim -= 2;
    ox_broadcast_shape(out, &ab, &bb);
    out->dims[out->ndim] = a->dims[a->ndim - 2];
    out->dims[out->ndim + 1] = b->dims[b->ndim - 1];
    out->ndim += 2;
  } else {
    out->ndim = 0; /* vector operands: shape not tracked */
  }
  return x->b.st;
}

static cq_status emit_reshape(ox_exporter *x, const ox_call *c) {
  int ndim;
  int64_t shape[CQ_MAX_DIMS];
  cq_status st = cq_reshape_describe(c->m, &ndim, shape);
  if (st != CQ_OK) return st;
  const ox_value *v = c->in[0];
  ox_value *out = &c->out[0];
  out->name = ox_reshape_nodes(x, c->path, c->path, v->name, ndim, shape, NULL);
  /* the output shape: 0 copies, -1 takes what the others leave of the input's size */
  out->ndim = ndim;
  int infer = -1;
  for (int i = 0; i < ndim; i++) {
    out->dims[i] = shape[i] == 0 && i < v->ndim ? v->dims[i] : shape[i];
    if (shape[i] == -1) {
      infer = i;
      out->dims[i] = 1;
    }
  }
  if (infer >= 0) {
    const int64_t total = ox_dims_product(v->dims, 0, v->ndim);
    const int64_t rest = ox_dims_product(out->dims, 0, ndim);
    int64_t d = OX_UNKNOWN;
    if (total != OX_UNKNOWN && rest != OX_UNKNOWN && rest != 0) {
      const int64_t t = total < 0 ? -total : total, r = rest < 0 ? -rest : rest;
      /* k*N / j*N is known; k*N / j is a multiple of N; j / k*N cannot be told */
      if (t % r == 0 && !(total >= 0 && rest < 0)) d = (total < 0) == (rest < 0) ? t / r : -(t / r);
    }
    out->dims[infer] = d;
  }
  requantize_like_input(x, c);
  return x->b.st;
}

static cq_status emit_permute(ox_exporter *x, const ox_call *c) {
  int ndim, perm[CQ_MAX_DIMS];
  cq_status st = cq_permute_describe(c->m, &ndim, perm);
  if (st != CQ_OK) return st;
  const ox_value *v = c->in[0];
  const char *in[1] = {v->name};
  Onnx__NodeProto *n;
  ox_value *out = &c->out[0];
  out->name = ox_op(x, c->path, c->path, "Transpose", 1, in, NULL, &n);
  out->ndim = v->ndim;
  if (ndim > 0) {
    int64_t p[CQ_MAX_DIMS];
    for (int i = 0; i < ndim; i++) p[i] = perm[i];
    ox_attr_ints(&x->b, n, "perm", ndim, p);
    for (int i = 0; i < v->ndim; i++) out->dims[i] = i < ndim ? v->dims[perm[i]] : OX_UNKNOWN;
  } else {
    for (int i = 0; i < v->ndim; i++) out->dims[i] = v->dims[v->ndim - 1 - i];
  }
  requantize_like_input(x, c);
  return x->b.st;
}

static cq_status emit_squeeze(ox_exporter *x, const ox_call *c) {
  int unsq, naxes, axes[CQ_MAX_DIMS];
  cq_status st = cq_squeeze_describe(c->m, &unsq, &naxes, axes);
  if (st != CQ_OK) return st;
  ox_builder *b = &x->b;
  const ox_value *v = c->in[0];
  ox_value *out = &c->out[0];
  const char *in[2] = {v->name, NULL};
  if (naxes > 0) {
    int64_t a[CQ_MAX_DIMS];
    for (int i = 0; i < naxes; i++) a[i] = axes[i];
    const int64_t n = naxes;
    in[1] = ox_init_i64(b, ox_printf(b, "%s_axes", c->path), 1, &n, a);
  }
  out->name = ox_op(x, c->path, c->path, unsq ? "Unsqueeze" : "Squeeze", naxes > 0 ? 2 : 1, in,
                    NULL, NULL);
  /* shapes: mark the axes against the output rank (unsqueeze) or the input rank (squeeze) */
  int mark[CQ_MAX_DIMS] = {0};
  const int rank = unsq ? v->ndim + naxes : v->ndim;
  for (int i = 0; i < naxes; i++) {
    const int a = ox_axis(axes[i], rank);
    if (a < 0 || rank > CQ_MAX_DIMS) return ox_fail(c, CQ_EUNSUPPORTED, "axis %d out of range", axes[i]);
    mark[a] = 1;
  }
  if (unsq) {
    out->ndim = rank;
    for (int i = 0, k = 0; i < rank; i++) out->dims[i] = mark[i] ? 1 : v->dims[k++];
  } else {
    out->ndim = 0;
    for (int i = 0; i < v->ndim; i++) {
      const int drop = naxes > 0 ? mark[i] : v->dims[i] == 1;
      if (!drop) out->dims[out->ndim++] = v->dims[i];
    }
  }
  requantize_like_input(x, c);
  return b->st;
}

static cq_status emit_conv_transpose(ox_exporter *x, const ox_call *c) {
  cq_status st = ox_need_float(c);
  if (st != CQ_OK) return st;
  cq_conv_transpose_options o;
  st = cq_conv_transpose_describe(c->m, &o);
  if (st != CQ_OK) return st;
  const ox_value *v = c->in[0];
  if (v->ndim != 4) return ox_fail(c, CQ_EUNSUPPORTED, "expects a 4-D input, got %d-D", v->ndim);
  ox_builder *b = &x->b;
  cq_named_tensor *w = cq_module_find_tensor(c->m, "weight");
  cq_named_tensor *bias = o.bias ? cq_module_find_tensor(c->m, "bias") : NULL;
  if (!w || (o.bias && !bias)) return ox_fail(c, CQ_EUNSUPPORTED, "its parameters are missing");
  const char *in[3] = {v->name,
                       ox_init_f32(b, ox_printf(b, "%s.weight", c->path), w->tensor->ndim,
                                   w->tensor->shape, w->tensor->data),
                       bias ? ox_init_f32(b, ox_printf(b, "%s.bias", c->path), 1,
                                          bias->tensor->shape, bias->tensor->data)
                            : NULL};
  Onnx__NodeProto *n;
  ox_value *out = &c->out[0];
  out->name = ox_op(x, c->path, c->path, "ConvTranspose", bias ? 3 : 2, in, NULL, &n);
  const int64_t pads[4] = {o.padding[0], o.padding[1], o.padding[0], o.padding[1]};
  ox_attr_ints(b, n, "kernel_shape", 2, o.kernel_size);
  ox_attr_ints(b, n, "strides", 2, o.stride);
  ox_attr_ints(b, n, "pads", 4, pads);
  ox_attr_ints(b, n, "output_padding", 2, o.output_padding);
  ox_attr_ints(b, n, "dilations", 2, o.dilation);
  ox_attr_int(b, n, "group", o.groups);
  ox_same_shape(out, v);
  out->dims[1] = o.out_channels;
  for (int i = 0; i < 2; i++) {
    const int64_t d = v->dims[2 + i];
    out->dims[2 + i] = d < 0 ? OX_UNKNOWN
                             : (d - 1) * o.stride[i] - 2 * o.padding[i] +
                                   o.dilation[i] * (o.kernel_size[i] - 1) + o.output_padding[i] + 1;
  }
  return b->st;
}

/* Gather by constant indices (what torch writes for x[:, -1, :]): the indices as an int64
 * initializer, 0-D for a scalar index (the axis is dropped). */
static cq_status emit_gather(ox_exporter *x, const ox_call *c) {
  int axis, scalar;
  int64_t n;
  const int64_t *index;
  cq_status st = oi_gather_describe(c->m, &axis, &n, &index, &scalar);
  if (st != CQ_OK) return st;
  ox_builder *b = &x->b;
  const ox_value *v = c->in[0];
  if (axis >= v->ndim) return ox_fail(c, CQ_EUNSUPPORTED, "axis %d of a rank-%d input", axis, v->ndim);
  const char *in[2] = {v->name, ox_init_i64(b, ox_printf(b, "%s_indices", c->path), scalar ? 0 : 1,
                                            &n, index)};
  Onnx__NodeProto *node;
  ox_value *out = &c->out[0];
  out->name = ox_op(x, c->path, c->path, "Gather", 2, in, NULL, &node);
  ox_attr_int(b, node, "axis", axis);
  out->ndim = 0;
  for (int i = 0; i < v->ndim; i++) {
    if (i != axis) {
      out->dims[out->ndim++] = v->dims[i];
    } else if (!scalar) {
      out->dims[out->ndim++] = n;
    }
  }
  requantize_like_input(x, c);
  return b->st;
}

static const struct {
  const char *name;
  ox_emit_fn fn;
} extra_emitters[] = {
    {"Gather", emit_gather},
    {"Add", emit_binary},
    {"Sub", emit_binary},
    {"Mul", emit_binary},
    {"Div", emit_binary},
    {"LeakyReLU", emit_leaky_relu},
    {"Hardsigmoid", emit_hardsigmoid},
    {"Hardswish", emit_hardswish},
    {"QuantizedLeakyReLU", emit_qactivation},
    {"QuantizedHardswish", emit_qactivation},
    {"BinaryConst", emit_binary_const},
    {"MatMul", emit_matmul},
    {"Reshape", emit_reshape},
    {"Permute", emit_permute},
    {"Squeeze", emit_squeeze},
    {"Unsqueeze", emit_squeeze},
    {"ConvTranspose2d", emit_conv_transpose},
};

ox_emit_fn ox_find_extra_emitter(const char *class_name) {
  for (size_t i = 0; i < sizeof extra_emitters / sizeof extra_emitters[0]; i++) {
    if (!strcmp(extra_emitters[i].name, class_name)) return extra_emitters[i].fn;
  }
  return NULL;
}

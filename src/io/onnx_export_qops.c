/* Quantized modules (what convert and quantize_dynamic make) in QDQ form.
 *
 *   Quantize                 QuantizeLinear(x, s, zp) -> PATH_q, DequantizeLinear -> PATH_dq
 *   DeQuantize               the DequantizeLinear output of its input (no node of its own)
 *   QuantizedLinear(ReLU)    DQ(x), DQ(PATH.weight_quantized), PATH.bias -> Gemm(transB=1)
 *                            [-> Relu] -> QuantizeLinear(output qparams) -> DQ
 *   QuantizedConv1d/2d(ReLU) the same with Conv
 *   QFunctional              Add [-> Relu] / Mul / Concat of the DQ inputs -> QuantizeLinear
 *   QuantizedReLU6           Clip(0, 6) between DQ and Q with the input's qparams
 *   QuantizedDropout         Identity between DQ and Q
 *   DynamicQuantizedLinear   DQ(int8 weight) -> Gemm with the float activation [-> Relu]
 * The integer weights are written exactly as the module holds them (int8, with their per-tensor
 * or per-channel scales and zero points); the bias stays float32, so that a reload rounds it
 * exactly as the module does. */
#include <string.h>

#include "core/alloc.h"
#include "io/onnx_export.h"
#include "nn/layers.h"
#include "nn/quantized/qmodules.h"

static cq_status need_quantized(const ox_call *c) {
  for (int i = 0; i < c->nin; i++) {
    if (!c->in[i]->quantized) {
      return ox_fail(c, CQ_EUNSUPPORTED,
                     "input %d is a float tensor; this quantized module runs on quantized "
                     "tensors (a QuantStub missing before it?)",
                     i);
    }
  }
  return CQ_OK;
}

/* The module's int8 "weight" buffer as a DequantizeLinear value PATH.weight. transpose2d writes
 * the transposed [in, out] matrix of a 2-D weight (for MatMul; per-channel axis 1). */
static const char *weight_value(ox_exporter *x, const ox_call *c, int transpose2d) {
  cq_named_tensor *nt = cq_module_find_tensor(c->m, "weight");
  const cq_tensor *w = nt ? nt->tensor : NULL;
  if (!w || w->dtype != CQ_S8 || !w->qparams) {
    x->b.st = ox_fail(c, CQ_EUNSUPPORTED, "has no int8 weight with quantization parameters");
    return NULL;
  }
  const cq_qparams *qp = w->qparams;
  const int per_channel = cq_qscheme_is_per_channel(qp->qscheme);
  if (per_channel && qp->axis != 0) {
    x->b.st = ox_fail(c, CQ_EUNSUPPORTED, "per-channel weight qparams along axis %d", qp->axis);
    return NULL;
  }
  ox_builder *b = &x->b;
  const char *prefix = ox_printf(b, "%s.weight", c->path);
  if (!transpose2d) {
    return ox_dequantized_weight(x, c->path, prefix, w->ndim, w->shape, w->data, qp->count,
                                 qp->scale, qp->zero_point, per_channel ? 0 : -1);
  }
  const int64_t rows = w->shape[0], cols = w->shape[1];
  int8_t *t = ox_alloc(b, (size_t)(rows * cols));
  if (!t) return NULL;
  const int8_t *src = w->data;
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t k = 0; k < cols; k++) t[k * rows + r] = src[r * cols + k];
  }
  const int64_t dims[2] = {cols, rows};
  return ox_dequantized_weight(x, c->path, prefix, 2, dims, t, qp->count, qp->scale,
                               qp->zero_point, per_channel ? 1 : -1);
}

static const char *bias_value(ox_exporter *x, const ox_call *c) {
  cq_named_tensor *nt = cq_module_find_tensor(c->m, "bias");
  if (!nt || nt->tensor->dtype != CQ_F32) return NULL;
  const cq_tensor *t = nt->tensor;
  return ox_init_f32(&x->b, ox_printf(&x->b, "%s.bias", c->path), t->ndim, t->shape, t->data);
}

/* ---- Quantize / DeQuantize ----------------------------------------------------------------------- */

static cq_status emit_quantize(ox_exporter *x, const ox_call *c) {
  cq_qmodule_info info;
  if (!cq_qmodule_describe_quantize(c->m, &info)) {
    return ox_fail(c, CQ_EUNSUPPORTED, "not a quantize module");
  }
  if (c->in[0]->quantized) return ox_fail(c, CQ_EUNSUPPORTED, "its input is already quantized");
  if (info.dtype != CQ_QUINT8 && info.dtype != CQ_QINT8) {
    return ox_fail(c, CQ_EUNSUPPORTED, "dtype %s has no QuantizeLinear form (uint8 / int8 only)",
                   cq_qdtype_name(info.dtype));
  }
  c->out[0] = *c->in[0];
  ox_quantize_value(x, c->path, &c->out[0], info.scale, info.zero_point, info.dtype);
  return x->b.st;
}

static cq_status emit_dequantize(ox_exporter *x, const ox_call *c) {
  (void)x;
  c->out[0] = *c->in[0]; /* the float name is already the DequantizeLinear output */
  c->out[0].quantized = 0;
  return CQ_OK;
}

/* ---- static Linear / Conv ------------------------------------------------------------------------ */

static cq_status emit_qlinear(ox_exporter *x, const ox_call *c) {
  cq_qmodule_info info;
  if (!cq_qmodule_describe_linear(c->m, &info)) return ox_fail(c, CQ_EUNSUPPORTED, "not linear");
  cq_status st = need_quantized(c);
  if (st == CQ_OK) st = ox_use_engine(x, c, info.engine);
  if (st != CQ_OK) return st;
  const ox_value *in = c->in[0];
  const char *w = weight_value(x, c, in->ndim != 2);
  const char *bias = bias_value(x, c);
  ox_value *out = &c->out[0];
  out->name = ox_linear_nodes(x, c, in->name, in->ndim, w, bias, info.relu);
  ox_linear_shape(out, in, info.out_features);
  ox_quantize_value(x, c->path, out, info.scale, info.zero_point, info.dtype);
  return x->b.st;
}

static cq_status emit_qconv(ox_exporter *x, const ox_call *c) {
  cq_qmodule_info info;
  if (!cq_qmodule_describe_conv(c->m, &info)) return ox_fail(c, CQ_EUNSUPPORTED, "not conv");
  cq_status st = need_quantized(c);
  if (st == CQ_OK) st = ox_use_engine(x, c, info.engine);
  if (st != CQ_OK) return st;
  const ox_value *in = c->in[0];
  if (in->ndim != info.dims + 2) {
    return ox_fail(c, CQ_EUNSUPPORTED, "expects a %d-D batched input, the model gives it %d-D",
                   info.dims + 2, in->ndim);
  }
  const char *w = weight_value(x, c, 0);
  const char *bias = bias_value(x, c);
  ox_value *out = &c->out[0];
  out->name = ox_conv_nodes(x, c, in->name, &info.conv, info.dims, w, bias, info.relu);
  ox_conv_shape(out, in, &info.conv, info.dims);
  ox_quantize_value(x, c->path, out, info.scale, info.zero_point, info.dtype);
  return x->b.st;
}

/* ---- QFunctional, ReLU6, Dropout ----------------------------------------------------------------- */

static cq_status emit_qfunctional(ox_exporter *x, const ox_call *c) {
  cq_qmodule_info info;
  if (!cq_qmodule_describe_functional(c->m, &info)) {
    return ox_fail(c, CQ_EUNSUPPORTED, "not a QFunctional");
  }
  cq_status st = need_quantized(c);
  if (st == CQ_OK) st = ox_use_engine(x, c, info.engine);
  if (st != CQ_OK) return st;
  ox_builder *b = &x->b;
  const char *in[CQ_MAX_IO];
  for (int i = 0; i < c->nin; i++) in[i] = c->in[i]->name;
  ox_value *out = &c->out[0];
  ox_same_shape(out, c->in[0]);
  if (info.op == CQ_QF_CAT) {
    const int axis = ox_axis(info.cat_dim, c->in[0]->ndim);
    if (axis < 0) return ox_fail(c, CQ_EUNSUPPORTED, "cat dim %d does not fit", info.cat_dim);
    Onnx__NodeProto *n;
    out->name = ox_op(x, c->path, c->path, "Concat", c->nin, in, NULL, &n);
    ox_attr_int(b, n, "axis", info.cat_dim);
    int64_t sum = 0;
    for (int i = 0; i < c->nin; i++) sum = ox_dims_sum(sum, c->in[i]->dims[axis]);
    out->dims[axis] = sum;
  } else {
    const char *op = info.op == CQ_QF_MUL ? "Mul" : "Add";
    out->name = ox_op(x, c->path, c->path, op, 2, in, info.relu ? op : NULL, NULL);
    if (info.relu) {
      const char *rin[1] = {out->name};
      out->name = ox_op(x, c->path, ox_printf(b, "%s_Relu", c->path), "Relu", 1, rin, NULL, NULL);
    }
    ox_broadcast_shape(out, c->in[0], c->in[1]);
  }
  ox_quantize_value(x, c->path, out, info.scale, info.zero_point, c->in[0]->dtype);
  return b->st;
}

static cq_status emit_qrelu6(ox_exporter *x, const ox_call *c) {
  cq_status st = need_quantized(c);
  if (st != CQ_OK) return st;
  ox_builder *b = &x->b;
  const float lo = 0.0f, hi = 6.0f;
  const char *in[3] = {c->in[0]->name, ox_init_f32(b, ox_printf(b, "%s_min", c->path), 0, NULL, &lo),
                       ox_init_f32(b, ox_printf(b, "%s_max", c->path), 0, NULL, &hi)};
  ox_value *out = &c->out[0];
  out->name = ox_op(x, c->path, c->path, "Clip", 3, in, NULL, NULL);
  ox_same_shape(out, c->in[0]);
  ox_quantize_value(x, c->path, out, c->in[0]->scale, c->in[0]->zero_point, c->in[0]->dtype);
  return b->st;
}

static cq_status emit_qdropout(ox_exporter *x, const ox_call *c) {
  const char *in[1] = {c->in[0]->name};
  ox_value *out = &c->out[0];
  out->name = ox_op(x, c->path, c->path, "Identity", 1, in, NULL, NULL);
  ox_same_shape(out, c->in[0]);
  if (c->in[0]->quantized) {
    ox_quantize_value(x, c->path, out, c->in[0]->scale, c->in[0]->zero_point, c->in[0]->dtype);
  }
  return x->b.st;
}

/* ---- dynamic Linear ------------------------------------------------------------------------------ */

static cq_status emit_dynamic_linear(ox_exporter *x, const ox_call *c) {
  cq_qmodule_info info;
  if (!cq_qmodule_describe_dynamic_linear(c->m, &info)) {
    return ox_fail(c, CQ_EUNSUPPORTED, "not a dynamic linear");
  }
  cq_status st = ox_need_float(c);
  if (st == CQ_OK) st = ox_use_engine(x, c, info.engine);
  if (st != CQ_OK) return st;
  const ox_value *in = c->in[0];
  const char *w = weight_value(x, c, in->ndim != 2);
  const char *bias = bias_value(x, c);
  c->out[0].name = ox_linear_nodes(x, c, in->name, in->ndim, w, bias, info.relu);
  ox_linear_shape(&c->out[0], in, info.out_features);
  return x->b.st;
}

static const struct {
  const char *name;
  ox_emit_fn fn;
} quantized_emitters[] = {
    {"Quantize", emit_quantize},
    {"DeQuantize", emit_dequantize},
    {"QuantizedLinear", emit_qlinear},
    {"QuantizedLinearReLU", emit_qlinear},
    {"QuantizedConv1d", emit_qconv},
    {"QuantizedConv2d", emit_qconv},
    {"QuantizedConvReLU1d", emit_qconv},
    {"QuantizedConvReLU2d", emit_qconv},
    {"QFunctional", emit_qfunctional},
    {"QuantizedReLU6", emit_qrelu6},
    {"QuantizedDropout", emit_qdropout},
    {"DynamicQuantizedLinear", emit_dynamic_linear},
    {"DynamicQuantizedLinearReLU", emit_dynamic_linear},
    {"DynamicQuantizedLSTM", ox_emit_rnn},
    {"DynamicQuantizedGRU", ox_emit_rnn},
};

ox_emit_fn ox_find_qemitter(const char *class_name) {
  for (size_t i = 0; i < sizeof quantized_emitters / sizeof quantized_emitters[0]; i++) {
    if (!strcmp(quantized_emitters[i].name, class_name)) return quantized_emitters[i].fn;
  }
  return NULL;
}

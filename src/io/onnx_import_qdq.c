/* ONNX import: QuantizeLinear / DequantizeLinear (the QDQ form cq_onnx_save writes) folded back
 * into quantized modules.
 *
 * Values:
 *  - QuantizeLinear(v, s, zp) -> "v_q": a quantized activation (the graph value holds a quint8 /
 *    qint8 tensor; its qparams are recorded in oi_qinfo).
 *  - DequantizeLinear of a quantized activation: a pending float value. No module is emitted
 *    until a float consumer reads it (then a DeQuantize module, once); the folding patterns read
 *    the quantized source directly.
 *  - DequantizeLinear of an int8 / uint8 initializer (a quantized weight): a float constant
 *    holding (q - zp) * scale (what ONNX defines), and remembered as quantized: folding converters
 *    take its integers' qparams from the file, float converters just see float weights.
 *
 * Patterns folded (x = a pending DQ of a quantized activation, Q = the single QuantizeLinear
 * reading the op's output):
 *   x, DQ(w) -> Conv [-> Relu] -> Q           QuantizedConv1d/2d, QuantizedConvReLU1d/2d
 *   x, DQ(w) -> Gemm(transB=1) [-> Relu] -> Q QuantizedLinear / QuantizedLinearReLU
 *   x, x -> Add [-> Relu] / Mul / Concat -> Q  QFunctional add / add_relu / mul / cat
 *   x -> Relu / MaxPool / ... -> Q            the float module, run on the quantized tensor
 *                                              (+ DeQuantize/Quantize when Q's qparams differ)
 *   float a, DQ(w) -> Gemm / MatMul           dynamic quantized Linear */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "io/onnx_import.h"
#include "nn/quantized/qmodules.h"

/* ---- reading Q / DQ parameters ---- */

typedef struct oi_qdq_params {
  int64_t count;  /* 1 = per tensor */
  int axis;
  float *scale;   /* count entries (owned) */
  int32_t *zp;
  cq_qdtype dtype;
} oi_qdq_params;

static void qdq_params_release(oi_qdq_params *p) {
  cq_free(p->scale);
  cq_free(p->zp);
  p->scale = NULL;
  p->zp = NULL;
}

/* Scale (input 1) and zero point (input 2) of the current Q / DQ node. */
static cq_status read_qdq_params(oi_importer *im, oi_qdq_params *p) {
  memset(p, 0, sizeof *p);
  const Onnx__TensorProto *s, *z = NULL;
  cq_status st = oi_input_const(im, 1, &s);
  if (st == CQ_OK && im->node->n_input > 2 && im->node->input[2][0]) st = oi_input_const(im, 2, &z);
  if (st != CQ_OK) return st;
  int64_t n, nz = 0;
  st = oi_tensor_check(im, s, "scale", &n);
  if (st == CQ_OK && z) st = oi_tensor_check(im, z, "zero point", &nz);
  if (st != CQ_OK) return st;
  if (s->n_dims > 1 || n < 1 || (z && nz != n)) {
    return oi_fail(im, CQ_ESHAPE, "scale and zero point must be scalars or 1-D of one length");
  }
  p->dtype = CQ_QUINT8;
  if (z && z->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8) {
    p->dtype = CQ_QINT8;
  } else if (z && z->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__UINT8) {
    return oi_fail(im, CQ_EUNSUPPORTED, "zero point of type %d (uint8 or int8 are supported)",
                   (int)z->data_type);
  }
  int64_t axis = 1;
  st = oi_attr_int(im, "axis", 1, &axis);
  if (st != CQ_OK) return st;
  p->count = n;
  p->axis = n > 1 ? (int)axis : -1;
  p->scale = cq_malloc_for(sizeof *p->scale * (size_t)n, "scales");
  p->zp = cq_malloc_for(sizeof *p->zp * (size_t)n, "zero points");
  int64_t *tmp = cq_malloc_for(sizeof *tmp * (size_t)n, "zero points");
  if (!p->scale || !p->zp || !tmp) {
    cq_free(tmp);
    qdq_params_release(p);
    return CQ_ENOMEM;
  }
  st = oi_tensor_f32(im, s, "scale", p->scale, n);
  if (st == CQ_OK && z) st = oi_tensor_i64(im, z, "zero point", tmp, n);
  for (int64_t i = 0; i < n && st == CQ_OK; i++) {
    p->zp[i] = z ? (int32_t)tmp[i] : 0;
    if (!(p->scale[i] > 0.0f)) st = oi_fail(im, CQ_EVALUE, "scale %lld is not > 0", (long long)i);
  }
  cq_free(tmp);
  if (st != CQ_OK) qdq_params_release(p);
  return st;
}

/* cq_qparams for a weight (qint8, per tensor or per channel along axis 0) or an activation. */
static cq_status to_qparams(oi_importer *im, const oi_qdq_params *p, cq_qparams *qp) {
  const int per_channel = p->count > 1;
  if (per_channel && p->axis != 0) {
    return oi_fail(im, CQ_EUNSUPPORTED, "per-channel quantization along axis %d (0 is "
                   "supported)", p->axis);
  }
  cq_status st = cq_qparams_init(qp, p->dtype, per_channel ? CQ_PER_CHANNEL_AFFINE
                                                           : CQ_PER_TENSOR_AFFINE,
                                 p->count, per_channel ? 0 : -1);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  for (int64_t i = 0; i < p->count; i++) {
    qp->scale[i] = p->scale[i];
    qp->zero_point[i] = p->zp[i];
  }
  return CQ_OK;
}

/* ---- the DQ'd weight table: synthesized float initializers ----
 * A DequantizeLinear of an initializer becomes a float TensorProto the importer owns (freed with
 * the importer), so every float converter reads it like any initializer. */

typedef struct oi_dq_weight {
  Onnx__TensorProto proto;
  float *data;
  int64_t *dims;
  oi_qdq_params qp;
  const Onnx__TensorProto *source; /* the integer initializer */
} oi_dq_weight;

static cq_status dq_weight(oi_importer *im, oi_value *src, oi_value *y) {
  const Onnx__TensorProto *t = src->tensor;
  if (t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__INT8 &&
      t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__UINT8 &&
      t->data_type != ONNX__TENSOR_PROTO__DATA_TYPE__INT32) {
    return oi_fail(im, CQ_EUNSUPPORTED, "dequantizing an initializer of type %d",
                   (int)t->data_type);
  }
  int64_t n;
  cq_status st = oi_tensor_check(im, t, "quantized weight", &n);
  if (st != CQ_OK) return st;
  oi_dq_weight *w = cq_calloc_for(1, sizeof *w, "a dequantized weight");
  if (!w) return CQ_ENOMEM;
  st = read_qdq_params(im, &w->qp);
  if (st != CQ_OK) {
    cq_free(w);
    return st;
  }
  w->data = cq_malloc_for(sizeof *w->data * (size_t)(n > 0 ? n : 1), "a dequantized weight");
  w->dims = cq_malloc_for(sizeof *w->dims * (t->n_dims + 1), "a dequantized weight");
  int64_t *q = cq_malloc_for(sizeof *q * (size_t)(n > 0 ? n : 1), "a quantized weight");
  if (!w->data || !w->dims || !q) st = CQ_ENOMEM;
  if (st == CQ_OK) st = oi_tensor_i64(im, t, "quantized weight", q, n);
  /* per-channel along axis 0 (conv, Gemm [out, in]) or, for a 2-D weight, axis 1 (MatMul's
   * [in, out]: one scale per output column) */
  int column = 0;
  if (st == CQ_OK && w->qp.count > 1) {
    const int axis = w->qp.axis < 0 ? w->qp.axis + (int)t->n_dims : w->qp.axis;
    column = axis == 1 && t->n_dims == 2;
    if (!(axis == 0 || column) || t->n_dims < 1 || t->dims[axis] != w->qp.count) {
      st = oi_fail(im, CQ_ESHAPE, "per-channel scales (%lld) must run along axis 0 of '%.80s' "
                   "(or axis 1 of a 2-D weight)", (long long)w->qp.count, t->name);
    }
    w->qp.axis = column ? 1 : 0;
  }
  if (st == CQ_OK) {
    const int64_t per = w->qp.count > 1 ? n / w->qp.count : n;
    for (int64_t i = 0; i < n; i++) {
      const int64_t c = w->qp.count <= 1 ? 0 : column ? i % w->qp.count : i / per;
      w->data[i] = (float)(q[i] - w->qp.zp[c]) * w->qp.scale[c];
    }
    w->qp.dtype = t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 ? CQ_QINT8 : CQ_QUINT8;
    memcpy(w->dims, t->dims, sizeof *w->dims * t->n_dims);
    onnx__tensor_proto__init(&w->proto);
    w->proto.name = t->name;
    w->proto.n_dims = t->n_dims;
    w->proto.dims = w->dims;
    w->proto.has_data_type = 1;
    w->proto.data_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    w->proto.n_float_data = (size_t)n;
    w->proto.float_data = w->data;
    w->source = t;
  }
  cq_free(q);
  if (st == CQ_OK) {
    /* the importer's list of owned weights */
    void **list = cq_realloc(im->dq_weights, sizeof *list * (size_t)(im->ndq_weights + 1));
    if (!list) st = CQ_ENOMEM;
    if (st == CQ_OK) {
      im->dq_weights = list;
      list[im->ndq_weights++] = w;
    }
  }
  if (st != CQ_OK) {
    qdq_params_release(&w->qp);
    cq_free(w->data);
    cq_free(w->dims);
    cq_free(w);
    return st;
  }
  y->kind = OI_CONST;
  y->tensor = &w->proto;
  y->dq_source = (int)(src - im->values);
  y->dq_node = im->ndq_weights - 1;
  return CQ_OK;
}

void oi_qdq_release(oi_importer *im) {
  for (int i = 0; i < im->ndq_weights; i++) {
    oi_dq_weight *w = im->dq_weights[i];
    qdq_params_release(&w->qp);
    cq_free(w->data);
    cq_free(w->dims);
    cq_free(w);
  }
  cq_free(im->dq_weights);
  im->dq_weights = NULL;
  im->ndq_weights = 0;
}

/* ---- DequantizeLinear / QuantizeLinear nodes that no pattern folded ---- */

cq_status oi_conv_dequantize_linear(oi_importer *im, const Onnx__NodeProto *node) {
  (void)node;
  oi_value *x;
  cq_status st = oi_input(im, 0, &x);
  if (st != CQ_OK) return st;
  if (!x) return oi_fail(im, CQ_EFORMAT, "input 0 is missing");
  oi_value *y;
  if (x->kind == OI_CONST) {
    st = oi_define_output(im, 0, OI_CONST, &y);
    if (st == CQ_OK) st = dq_weight(im, x, y);
    return st;
  }
  if (x->kind != OI_ACT || !x->q.quantized) {
    return oi_fail(im, CQ_EUNSUPPORTED, "DequantizeLinear of '%.80s', which is not the output of "
                   "a QuantizeLinear or a quantized initializer", x->name);
  }
  oi_qdq_params p;
  st = read_qdq_params(im, &p);
  if (st != CQ_OK) return st;
  const int same = p.count == 1 && p.scale[0] == x->q.scale && p.zp[0] == x->q.zero_point &&
                   p.dtype == x->q.dtype;
  qdq_params_release(&p);
  if (!same) {
    return oi_fail(im, CQ_EUNSUPPORTED, "its scale / zero point differ from the QuantizeLinear "
                   "that produced '%.80s'", x->name);
  }
  st = oi_define_output(im, 0, OI_ACT, &y);
  if (st != CQ_OK) return st;
  y->ndim = x->ndim;
  memcpy(y->dims, x->dims, sizeof x->dims);
  y->gv = -1; /* pending: a DeQuantize module is added when a float consumer reads it */
  y->dq_source = (int)(x - im->values);
  return CQ_OK;
}

cq_status oi_qdq_materialize(oi_importer *im, oi_value *v) {
  if (v->kind != OI_ACT || v->gv >= 0 || v->dq_source < 0) return CQ_OK;
  oi_value *x = &im->values[v->dq_source];
  cq_module *m;
  cq_status st = cq_qmodule_dequantize(&m);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  char name[128], base[128];
  snprintf(base, sizeof base, "dequant_%s", v->name);
  st = oi_unique_name(im, base, name, sizeof name);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  return oi_emit(im, name, m, 1, &x, 1, &v);
}

cq_status oi_conv_quantize_linear(oi_importer *im, const Onnx__NodeProto *node) {
  oi_value *x;
  cq_status st = oi_input_act(im, 0, &x);
  if (st != CQ_OK) return st;
  oi_qdq_params p;
  st = read_qdq_params(im, &p);
  if (st != CQ_OK) return st;
  if (p.count != 1) {
    qdq_params_release(&p);
    return oi_fail(im, CQ_EUNSUPPORTED, "per-channel quantization of an activation");
  }
  const float scale = p.scale[0];
  const int32_t zp = p.zp[0];
  const cq_qdtype dt = p.dtype;
  qdq_params_release(&p);
  cq_module *m;
  st = cq_qmodule_quantize(&m, scale, zp, dt);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  oi_value *y;
  st = oi_emit_unary(im, m, NULL, x, x->ndim, x->dims, &y);
  if (st != CQ_OK) return st;
  (void)node;
  y->q = (oi_qinfo){1, scale, zp, dt};
  return CQ_OK;
}

/* ---- folding ---- */

/* The pending DQ value named by input i of `node`, whose source is a quantized activation; NULL
 * otherwise. */
static oi_value *dq_act_input(oi_importer *im, const Onnx__NodeProto *node, int i) {
  if ((size_t)i >= node->n_input || !node->input[i][0]) return NULL;
  int k = oi_find(im, node->input[i]);
  if (k < 0) return NULL;
  oi_value *v = &im->values[k];
  if (v->kind != OI_ACT || v->dq_source < 0) return NULL;
  return &im->values[v->dq_source];
}

/* The dequantized weight behind input i (a DQ of an initializer), or NULL. */
static oi_dq_weight *dq_weight_input(oi_importer *im, const Onnx__NodeProto *node, int i) {
  if ((size_t)i >= node->n_input || !node->input[i][0]) return NULL;
  int k = oi_find(im, node->input[i]);
  if (k < 0) return NULL;
  oi_value *v = &im->values[k];
  if (v->kind != OI_CONST || v->dq_node < 0) return NULL;
  return im->dq_weights[v->dq_node];
}

cq_status oi_qdq_weight_qparams(oi_importer *im, const Onnx__NodeProto *node, int i,
                                cq_qparams *out, int *found) {
  *found = 0;
  oi_dq_weight *w = dq_weight_input(im, node, i);
  if (!w) return CQ_OK;
  cq_status st = to_qparams(im, &w->qp, out);
  if (st == CQ_OK) *found = 1;
  return st;
}

/* The only node reading output 0 of `node`, if it has type `op`; its index in *index. */
static const Onnx__NodeProto *next_op(oi_importer *im, const Onnx__NodeProto *node,
                                      const char *op, size_t *index) {
  if (node->n_output < 1 || !node->output[0][0]) return NULL;
  int k = oi_find(im, node->output[0]);
  if (k < 0 || im->uses[k] != 1 || im->first_reader[k] < 0) return NULL;
  const size_t n = (size_t)im->first_reader[k];
  const Onnx__NodeProto *c = im->graph->node[n];
  if (!c->op_type || strcmp(c->op_type, op) != 0 || im->done[n]) return NULL;
  if (c->n_output < 1 || !c->output[0][0]) return NULL; /* left to the converter's own checks */
  if (c->domain && c->domain[0] && strcmp(c->domain, "ai.onnx") != 0) return NULL;
  *index = n;
  return c;
}

/* Finds [Relu ->] QuantizeLinear after node; fills the Q's qparams, *relu, and the indices. */
static int find_tail(oi_importer *im, const Onnx__NodeProto *node, int allow_relu, int *relu,
                     size_t *relu_index, size_t *q_index, const Onnx__NodeProto **q) {
  *relu = 0;
  const Onnx__NodeProto *after = node;
  if (allow_relu) {
    const Onnx__NodeProto *r = next_op(im, node, "Relu", relu_index);
    if (r) {
      *relu = 1;
      after = r;
    }
  }
  *q = next_op(im, after, "QuantizeLinear", q_index);
  return *q != NULL;
}

/* Reads the Q node's output qparams (per tensor). */
static cq_status tail_qparams(oi_importer *im, const Onnx__NodeProto *q, oi_qdq_params *p) {
  const Onnx__NodeProto *saved = im->node;
  im->node = q;
  cq_status st = read_qdq_params(im, p);
  if (st == CQ_OK && p->count != 1) {
    qdq_params_release(p);
    st = oi_fail(im, CQ_EUNSUPPORTED, "per-channel quantization of an activation");
  }
  im->node = saved;
  return st;
}

/* Defines the Q's output as the quantized result of graph value `gv` and marks the tail done. */
static cq_status finish_tail(oi_importer *im, const Onnx__NodeProto *q, size_t q_index, int relu,
                             size_t relu_index, int gv, int ndim, const oi_dim *dims,
                             const oi_qdq_params *p) {
  int k = q->n_output >= 1 ? oi_find(im, q->output[0]) : -1;
  if (k < 0) return oi_fail(im, CQ_EFORMAT, "QuantizeLinear has no output");
  oi_value *y = &im->values[k];
  y->kind = OI_ACT;
  y->gv = gv;
  y->ndim = ndim;
  memcpy(y->dims, dims, sizeof *dims * (size_t)ndim);
  y->q = (oi_qinfo){1, p->scale[0], p->zp[0], p->dtype};
  im->done[q_index] = 1;
  if (relu) im->done[relu_index] = 1;
  return CQ_OK;
}

/* The qparams of a linear weight per output feature: along axis 0 of Gemm's [out, in], along axis
 * 1 of MatMul's [in, out] (transposed: the Linear weight is [out, in]). */
static cq_status linear_weight_qparams(oi_importer *im, const oi_dq_weight *w, int in_out,
                                       cq_qparams *wq) {
  oi_qdq_params p = w->qp;
  if (p.count > 1) {
    if (p.axis != (in_out ? 1 : 0)) {
      return oi_fail(im, CQ_EUNSUPPORTED, "weight '%.80s' is per-channel along its input axis",
                     w->source->name);
    }
    p.axis = 0;
  }
  return to_qparams(im, &p, wq);
}

/* MatMul's [in, out] weight as the [out, in] of a Linear (caller frees). */
static float *transposed_weight(const oi_dq_weight *w) {
  const int64_t in = w->proto.dims[0], outf = w->proto.dims[1];
  float *wt = cq_malloc_for(sizeof *wt * (size_t)(in * outf > 0 ? in * outf : 1), "a weight");
  if (!wt) return NULL;
  for (int64_t i = 0; i < in; i++) {
    for (int64_t o = 0; o < outf; o++) wt[o * in + i] = w->data[i * outf + o];
  }
  return wt;
}

static cq_status fold_conv(oi_importer *im, const Onnx__NodeProto *node, oi_value *x,
                           oi_dq_weight *w, int *handled);
static cq_status fold_gemm(oi_importer *im, const Onnx__NodeProto *node, oi_value *x,
                           oi_dq_weight *w, int *handled);

/* Common tail of conv / linear folding: builds the module from `make`, emits it on x. */
typedef struct fold_ctx {
  const Onnx__NodeProto *q;
  size_t q_index, relu_index;
  int relu;
  oi_qdq_params out;
} fold_ctx;

static cq_status emit_folded(oi_importer *im, const Onnx__NodeProto *node, cq_module *m,
                             const char *weight_name, int nin, oi_value **ins, fold_ctx *f,
                             int ndim, const oi_dim *dims) {
  char name[128];
  cq_status st = oi_child_name(im, node, weight_name, name, sizeof name);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  oi_value tmp;
  memset(&tmp, 0, sizeof tmp);
  tmp.name = "";
  oi_value *tp = &tmp;
  st = oi_emit(im, name, m, nin, ins, 1, &tp);
  if (st != CQ_OK) return st;
  return finish_tail(im, f->q, f->q_index, f->relu, f->relu_index, tmp.gv, ndim, dims, &f->out);
}

static cq_status fold_conv(oi_importer *im, const Onnx__NodeProto *node, oi_value *x,
                           oi_dq_weight *w, int *handled) {
  fold_ctx f;
  if (!find_tail(im, node, 1, &f.relu, &f.relu_index, &f.q_index, &f.q)) return CQ_OK;
  if (x->q.dtype != CQ_QUINT8) return CQ_OK;
  const int spatial = (int)w->proto.n_dims - 2;
  if (spatial != 1 && spatial != 2) return CQ_OK;
  /* The float path reads the attributes and checks them: build the float conv first to learn
   * the options and output shape, then replace it by the quantized module. */
  cq_status st = tail_qparams(im, f.q, &f.out);
  if (st != CQ_OK) return st;
  cq_qparams wq, yq;
  st = to_qparams(im, &w->qp, &wq);
  if (st != CQ_OK) {
    qdq_params_release(&f.out);
    return st;
  }
  st = to_qparams(im, &f.out, &yq);
  if (st != CQ_OK) {
    cq_qparams_release(&wq);
    qdq_params_release(&f.out);
    return st;
  }
  oi_conv_geometry geo;
  st = oi_conv_attrs(im, node, x, &w->proto, &geo);
  float *bias = NULL;
  if (st == CQ_OK && geo.bias) {
    bias = cq_malloc_for(sizeof *bias * (size_t)geo.options.out_channels, "a bias");
    st = bias ? oi_tensor_f32(im, geo.bias, "bias", bias, geo.options.out_channels) : CQ_ENOMEM;
  }
  cq_module *m = NULL;
  if (st == CQ_OK) {
    st = cq_qmodule_conv(&m, &geo.options, spatial, w->data, bias, &wq, &yq, f.relu, im->engine);
    if (st != CQ_OK) st = oi_fail(im, st, "%s", cq_last_error());
  }
  cq_free(bias);
  cq_qparams_release(&wq);
  cq_qparams_release(&yq);
  if (st == CQ_OK) {
    st = emit_folded(im, node, m, w->source->name, 1, &x, &f, geo.ndim, geo.dims);
    *handled = st == CQ_OK;
  }
  qdq_params_release(&f.out);
  return st;
}

static cq_status fold_gemm(oi_importer *im, const Onnx__NodeProto *node, oi_value *x,
                           oi_dq_weight *w, int *handled) {
  fold_ctx f;
  if (!find_tail(im, node, 1, &f.relu, &f.relu_index, &f.q_index, &f.q)) return CQ_OK;
  if (x->q.dtype != CQ_QUINT8 || x->ndim != 2 || w->proto.n_dims != 2) return CQ_OK;
  int64_t ta, tb;
  float alpha, beta;
  cq_status st = oi_attr_int(im, "transA", 0, &ta);
  if (st == CQ_OK) st = oi_attr_int(im, "transB", 0, &tb);
  if (st == CQ_OK) st = oi_attr_float(im, "alpha", 1.0f, &alpha);
  if (st == CQ_OK) st = oi_attr_float(im, "beta", 1.0f, &beta);
  if (st != CQ_OK) return st;
  if (ta || !tb || alpha != 1.0f || beta != 1.0f) return CQ_OK;
  const int64_t in = w->proto.dims[1], outf = w->proto.dims[0];
  if (!x->dims[1].sym && x->dims[1].v != in) {
    return oi_fail(im, CQ_ESHAPE, "input has %lld features, weight '%.80s' expects %lld",
                   (long long)x->dims[1].v, w->source->name, (long long)in);
  }
  const Onnx__TensorProto *c = NULL;
  if (node->n_input > 2 && node->input[2][0]) {
    st = oi_input_const(im, 2, &c);
    if (st != CQ_OK) return st;
  }
  st = tail_qparams(im, f.q, &f.out);
  if (st != CQ_OK) return st;
  cq_qparams wq, yq;
  memset(&wq, 0, sizeof wq);
  memset(&yq, 0, sizeof yq);
  float *bias = NULL;
  st = linear_weight_qparams(im, w, 0, &wq);
  if (st == CQ_OK) st = to_qparams(im, &f.out, &yq);
  if (st == CQ_OK && c) {
    bias = cq_malloc_for(sizeof *bias * (size_t)(outf > 0 ? outf : 1), "a bias");
    st = bias ? oi_tensor_f32(im, c, "bias", bias, outf) : CQ_ENOMEM;
  }
  cq_module *m = NULL;
  if (st == CQ_OK) {
    st = cq_qmodule_linear(&m, in, outf, w->data, bias, &wq, &yq, f.relu, im->engine);
    if (st != CQ_OK) st = oi_fail(im, st, "%s", cq_last_error());
  }
  cq_free(bias);
  cq_qparams_release(&wq);
  cq_qparams_release(&yq);
  if (st == CQ_OK) {
    const oi_dim dims[2] = {x->dims[0], {outf, 0}};
    st = emit_folded(im, node, m, w->source->name, 1, &x, &f, 2, dims);
    *handled = st == CQ_OK;
  }
  qdq_params_release(&f.out);
  return st;
}

/* DQ(x) -> MatMul(DQ(w) [in, out]) [-> Add(bias)] [-> Relu] -> Q: what a QuantizedLinear on an
 * input of any rank is written as -> QuantizedLinear(ReLU) with the file's integers. */
static cq_status fold_matmul(oi_importer *im, const Onnx__NodeProto *node, oi_value *x,
                             oi_dq_weight *w, int *handled) {
  if (x->q.dtype != CQ_QUINT8 || x->ndim < 1 || w->proto.n_dims != 2) return CQ_OK;
  const int64_t in = w->proto.dims[0], outf = w->proto.dims[1];
  /* the bias: an Add of a float constant of `outf` values right after */
  size_t add_index = 0;
  const Onnx__NodeProto *add = next_op(im, node, "Add", &add_index);
  const Onnx__TensorProto *bias_t = NULL;
  if (add) {
    for (size_t i = 0; i < 2 && i < add->n_input && !bias_t; i++) {
      const int k = oi_find(im, add->input[i]);
      if (k < 0 || im->values[k].kind != OI_CONST || im->values[k].dq_node >= 0) continue;
      const Onnx__TensorProto *t = im->values[k].tensor;
      int64_t n;
      if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT && t->n_dims == 1 &&
          oi_tensor_check(im, t, "bias", &n) == CQ_OK && n == outf) {
        bias_t = t;
      }
    }
    if (!bias_t) return CQ_OK; /* some other Add: left to the float converters */
  }
  fold_ctx f;
  if (!find_tail(im, add ? add : node, 1, &f.relu, &f.relu_index, &f.q_index, &f.q)) return CQ_OK;
  if (!x->dims[x->ndim - 1].sym && x->dims[x->ndim - 1].v != in) {
    return oi_fail(im, CQ_ESHAPE, "input has %lld features, weight '%.80s' expects %lld",
                   (long long)x->dims[x->ndim - 1].v, w->source->name, (long long)in);
  }
  cq_status st = tail_qparams(im, f.q, &f.out);
  if (st != CQ_OK) return st;
  cq_qparams wq, yq;
  memset(&wq, 0, sizeof wq);
  memset(&yq, 0, sizeof yq);
  float *bias = NULL, *wt = transposed_weight(w);
  if (!wt) st = CQ_ENOMEM;
  if (st == CQ_OK) st = linear_weight_qparams(im, w, 1, &wq);
  if (st == CQ_OK) st = to_qparams(im, &f.out, &yq);
  if (st == CQ_OK && bias_t) {
    bias = cq_malloc_for(sizeof *bias * (size_t)(outf > 0 ? outf : 1), "a bias");
    st = bias ? oi_tensor_f32(im, bias_t, "bias", bias, outf) : CQ_ENOMEM;
  }
  cq_module *m = NULL;
  if (st == CQ_OK) {
    st = cq_qmodule_linear(&m, in, outf, wt, bias, &wq, &yq, f.relu, im->engine);
    if (st != CQ_OK) st = oi_fail(im, st, "%s", cq_last_error());
  }
  cq_free(wt);
  cq_free(bias);
  cq_qparams_release(&wq);
  cq_qparams_release(&yq);
  if (st == CQ_OK) {
    oi_dim dims[CQ_MAX_DIMS];
    memcpy(dims, x->dims, sizeof dims);
    dims[x->ndim - 1] = (oi_dim){outf, 0};
    st = emit_folded(im, node, m, w->source->name, 1, &x, &f, x->ndim, dims);
    if (st == CQ_OK && add) im->done[add_index] = 1;
    *handled = st == CQ_OK;
  }
  qdq_params_release(&f.out);
  return st;
}

/* Add / Mul / Concat of quantized activations -> QFunctional. */
static cq_status fold_functional(oi_importer *im, const Onnx__NodeProto *node, int *handled) {
  const int is_add = strcmp(node->op_type, "Add") == 0, is_mul = strcmp(node->op_type, "Mul") == 0;
  const int nin = (int)node->n_input;
  if (nin < 1 || nin > CQ_MAX_IO || ((is_add || is_mul) && nin != 2)) return CQ_OK;
  oi_value *ins[CQ_MAX_IO];
  for (int i = 0; i < nin; i++) {
    ins[i] = dq_act_input(im, node, i);
    if (!ins[i]) return CQ_OK;
  }
  fold_ctx f;
  if (!find_tail(im, node, is_add, &f.relu, &f.relu_index, &f.q_index, &f.q)) return CQ_OK;
  int64_t axis = 0;
  cq_status st = CQ_OK;
  int ax = 0;
  oi_dim dims[CQ_MAX_DIMS];
  memcpy(dims, ins[0]->dims, sizeof dims);
  if (!is_add && !is_mul) {
    st = oi_attr_int(im, "axis", 0, &axis);
    if (st == CQ_OK) st = oi_axis(im, axis, ins[0]->ndim, "axis", &ax);
    if (st != CQ_OK) return st;
    for (int i = 1; i < nin; i++) {
      const oi_dim a = dims[ax], b = ins[i]->dims[ax];
      dims[ax] = (a.sym || b.sym) ? (oi_dim){-1, oi_new_sym(im)} : (oi_dim){a.v + b.v, 0};
    }
  } else {
    for (int d = 0; d < ins[0]->ndim; d++) {
      const oi_dim a = ins[0]->dims[d], b = ins[1]->dims[d];
      if (ins[1]->ndim != ins[0]->ndim || a.sym != b.sym || (!a.sym && a.v != b.v)) {
        return oi_fail(im, CQ_EUNSUPPORTED, "quantized %s of tensors whose shapes differ",
                       node->op_type);
      }
    }
  }
  st = tail_qparams(im, f.q, &f.out);
  if (st != CQ_OK) return st;
  cq_qparams yq;
  st = to_qparams(im, &f.out, &yq);
  cq_module *m = NULL;
  if (st == CQ_OK) {
    const cq_qfunctional_op op = is_add ? (f.relu ? CQ_QF_ADD_RELU : CQ_QF_ADD)
                                        : (is_mul ? CQ_QF_MUL : CQ_QF_CAT);
    st = cq_qmodule_functional(&m, op, ax, &yq, im->engine);
    if (st != CQ_OK) st = oi_fail(im, st, "%s", cq_last_error());
    cq_qparams_release(&yq);
  }
  if (st == CQ_OK) {
    st = emit_folded(im, node, m, NULL, nin, ins, &f, ins[0]->ndim, dims);
    *handled = st == CQ_OK;
  }
  qdq_params_release(&f.out);
  return st;
}

/* DQ -> HardSwish / LeakyRelu -> Q: the quantized modules with the Q's output qparams
 * (QuantizedHardswish, QuantizedLeakyReLU: PyTorch's converted forms, which requantize to their own
 * scale), what cquant writes for them. */
static cq_status fold_qactivation(oi_importer *im, const Onnx__NodeProto *node, int *handled) {
  oi_value *x = dq_act_input(im, node, 0);
  if (!x) return CQ_OK;
  size_t q_index;
  const Onnx__NodeProto *q = next_op(im, node, "QuantizeLinear", &q_index);
  if (!q) return CQ_OK;
  const int hardswish = strcmp(node->op_type, "HardSwish") == 0;
  float slope = 0.01f;
  cq_status st = hardswish ? CQ_OK : oi_attr_float(im, "alpha", 0.01f, &slope);
  if (st != CQ_OK) return st;
  fold_ctx f;
  f.q = q;
  f.q_index = q_index;
  f.relu = 0;
  f.relu_index = 0;
  st = tail_qparams(im, q, &f.out);
  if (st != CQ_OK) return st;
  if (f.out.dtype != x->q.dtype) { /* a dtype change: left to the passthrough's requantization */
    qdq_params_release(&f.out);
    return CQ_OK;
  }
  cq_qparams yq;
  memset(&yq, 0, sizeof yq);
  st = to_qparams(im, &f.out, &yq);
  cq_module *m = NULL;
  if (st == CQ_OK) {
    st = hardswish ? cq_qmodule_hardswish(&m, &yq, im->engine)
                   : cq_qmodule_leaky_relu(&m, slope, &yq);
    if (st != CQ_OK) st = oi_fail(im, st, "%s", cq_last_error());
  }
  cq_qparams_release(&yq);
  if (st == CQ_OK) {
    st = emit_folded(im, node, m, NULL, 1, &x, &f, x->ndim, x->dims);
    *handled = st == CQ_OK;
  }
  qdq_params_release(&f.out);
  return st;
}

/* Ops whose float module runs on quantized tensors directly, with the output qparams they give
 * (same as the input, or fixed). */
typedef struct passthrough_op {
  const char *name;
  int fixed;       /* 0: input's qparams; 1: sigmoid-like (1/256); 2: tanh (2/256) */
} passthrough_op;

static const passthrough_op passthrough[] = {
    {"AveragePool", 0}, {"Clip", 0}, {"Dropout", 0}, {"Flatten", 0},
    {"GlobalAveragePool", 0}, {"HardSigmoid", 1}, {"HardSwish", 0}, {"Identity", 0},
    {"LeakyRelu", 0}, {"MaxPool", 0}, {"Relu", 0}, {"Reshape", 0}, {"Sigmoid", 1},
    {"Squeeze", 0}, {"Tanh", 2}, {"Transpose", 0}, {"Unsqueeze", 0},
};

static cq_status fold_passthrough(oi_importer *im, const Onnx__NodeProto *node, int fixed,
                                  oi_converter conv, int *handled) {
  oi_value *x = dq_act_input(im, node, 0);
  if (!x) return CQ_OK;
  fold_ctx f;
  size_t q_index;
  const Onnx__NodeProto *q = next_op(im, node, "QuantizeLinear", &q_index);
  if (!q) return CQ_OK;
  f.q = q;
  f.q_index = q_index;
  f.relu = 0;
  f.relu_index = 0;
  /* What the module gives on the quantized input */
  float out_scale = x->q.scale;
  int32_t out_zp = x->q.zero_point;
  if (fixed == 1) {
    out_scale = 0.00390625f;
    out_zp = x->q.dtype == CQ_QINT8 ? -128 : 0;
  } else if (fixed == 2) {
    out_scale = 0.0078125f;
    out_zp = x->q.dtype == CQ_QUINT8 ? 128 : 0;
  }
  /* Run the float converter with the DQ value standing for the quantized source. */
  int k = oi_find(im, node->input[0]);
  oi_value *dqv = &im->values[k];
  const int saved_gv = dqv->gv;
  dqv->gv = x->gv;
  cq_status st = conv(im, node);
  dqv->gv = saved_gv;
  if (st != CQ_OK) return st;
  int ko = oi_find(im, node->output[0]);
  oi_value *y = &im->values[ko];
  st = tail_qparams(im, q, &f.out);
  if (st != CQ_OK) return st;
  int gv = y->gv;
  if (f.out.scale[0] != out_scale || f.out.zp[0] != out_zp || f.out.dtype != x->q.dtype) {
    /* the file requantizes: DeQuantize + Quantize with its qparams */
    cq_module *dq = NULL, *qm = NULL;
    st = cq_qmodule_dequantize(&dq);
    if (st == CQ_OK) st = cq_qmodule_quantize(&qm, f.out.scale[0], f.out.zp[0], f.out.dtype);
    char name[128], base[128];
    oi_value a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    oi_value *ap = &a, *bp = &b;
    if (st == CQ_OK) {
      snprintf(base, sizeof base, "%s_dequant", y->name);
      st = oi_unique_name(im, base, name, sizeof name);
    }
    if (st == CQ_OK) {
      st = oi_emit(im, name, dq, 1, &y, 1, &ap);
      dq = NULL;
    }
    if (st == CQ_OK) {
      snprintf(base, sizeof base, "%s_quant", y->name);
      st = oi_unique_name(im, base, name, sizeof name);
    }
    if (st == CQ_OK) {
      st = oi_emit(im, name, qm, 1, &ap, 1, &bp);
      qm = NULL;
    }
    cq_module_free(dq);
    cq_module_free(qm);
    if (st != CQ_OK) {
      qdq_params_release(&f.out);
      return st;
    }
    gv = b.gv;
  }
  st = finish_tail(im, q, q_index, 0, 0, gv, y->ndim, y->dims, &f.out);
  /* the float output itself is not a value anyone reads */
  y->kind = OI_UNDEFINED;
  qdq_params_release(&f.out);
  *handled = st == CQ_OK;
  return st;
}

/* Dynamic quantized Linear: float activation, DQ'd weight, no QuantizeLinear after it. */
static cq_status fold_dynamic_linear(oi_importer *im, const Onnx__NodeProto *node,
                                     oi_dq_weight *w, int *handled) {
  const int is_gemm = strcmp(node->op_type, "Gemm") == 0;
  int k = oi_find(im, node->input[0]);
  if (k < 0 || im->values[k].kind != OI_ACT || im->values[k].dq_source >= 0) return CQ_OK;
  oi_value *x = &im->values[k];
  if (w->proto.n_dims != 2 || w->qp.dtype != CQ_QINT8) return CQ_OK;
  int64_t tb = 0, ta = 0;
  float alpha = 1.0f, beta = 1.0f;
  cq_status st = CQ_OK;
  if (is_gemm) {
    st = oi_attr_int(im, "transA", 0, &ta);
    if (st == CQ_OK) st = oi_attr_int(im, "transB", 0, &tb);
    if (st == CQ_OK) st = oi_attr_float(im, "alpha", 1.0f, &alpha);
    if (st == CQ_OK) st = oi_attr_float(im, "beta", 1.0f, &beta);
    if (st != CQ_OK) return st;
    if (ta || !tb || alpha != 1.0f || beta != 1.0f || x->ndim != 2) return CQ_OK;
  } else if (w->qp.count > 1 && w->qp.axis != 1) {
    return CQ_OK; /* MatMul's [in, out] weight is per-channel along its input axis */
  }
  /* Gemm(transB=1): weight [out, in]; MatMul: [in, out] */
  const int64_t in = is_gemm ? w->proto.dims[1] : w->proto.dims[0];
  const int64_t outf = is_gemm ? w->proto.dims[0] : w->proto.dims[1];
  if (x->ndim < 1 || (!x->dims[x->ndim - 1].sym && x->dims[x->ndim - 1].v != in)) {
    return oi_fail(im, CQ_ESHAPE, "input's last dimension does not match weight '%.80s'",
                   w->source->name);
  }
  const Onnx__TensorProto *c = NULL;
  if (is_gemm && node->n_input > 2 && node->input[2][0]) {
    st = oi_input_const(im, 2, &c);
    if (st != CQ_OK) return st;
  }
  float *wt = NULL, *bias = NULL;
  const float *wdata = w->data;
  if (!is_gemm) {
    wt = transposed_weight(w);
    if (!wt) return CQ_ENOMEM;
    wdata = wt;
  }
  if (c) {
    bias = cq_malloc_for(sizeof *bias * (size_t)(outf > 0 ? outf : 1), "a bias");
    st = bias ? oi_tensor_f32(im, c, "bias", bias, outf) : CQ_ENOMEM;
  }
  cq_qparams wq;
  memset(&wq, 0, sizeof wq);
  if (st == CQ_OK) st = linear_weight_qparams(im, w, !is_gemm, &wq);
  cq_module *m = NULL;
  if (st == CQ_OK) {
    st = cq_qmodule_dynamic_linear(&m, in, outf, wdata, bias, &wq, 0, im->engine);
    if (st != CQ_OK) st = oi_fail(im, st, "%s", cq_last_error());
  }
  cq_qparams_release(&wq);
  cq_free(wt);
  cq_free(bias);
  if (st != CQ_OK) return st;
  oi_dim dims[CQ_MAX_DIMS];
  memcpy(dims, x->dims, sizeof dims);
  dims[x->ndim - 1] = (oi_dim){outf, 0};
  st = oi_emit_unary(im, m, w->source->name, x, x->ndim, dims, NULL);
  *handled = st == CQ_OK;
  return st;
}

cq_status oi_qdq_try_fold(oi_importer *im, const Onnx__NodeProto *node, int *handled) {
  *handled = 0;
  const char *op = node->op_type;
  if (strcmp(op, "Conv") == 0 || strcmp(op, "Gemm") == 0) {
    oi_value *x = dq_act_input(im, node, 0);
    oi_dq_weight *w = dq_weight_input(im, node, 1);
    if (!w) return CQ_OK;
    if (x) return op[0] == 'C' ? fold_conv(im, node, x, w, handled)
                               : fold_gemm(im, node, x, w, handled);
    if (op[0] == 'G') return fold_dynamic_linear(im, node, w, handled);
    return CQ_OK;
  }
  if (strcmp(op, "MatMul") == 0) {
    oi_dq_weight *w = dq_weight_input(im, node, 1);
    if (!w) return CQ_OK;
    oi_value *x = dq_act_input(im, node, 0);
    return x ? fold_matmul(im, node, x, w, handled) : fold_dynamic_linear(im, node, w, handled);
  }
  if (strcmp(op, "Add") == 0 || strcmp(op, "Mul") == 0 || strcmp(op, "Concat") == 0) {
    return fold_functional(im, node, handled);
  }
  if (strcmp(op, "HardSwish") == 0 || strcmp(op, "LeakyRelu") == 0) {
    cq_status st = fold_qactivation(im, node, handled);
    if (st != CQ_OK || *handled) return st;
  }
  for (size_t i = 0; i < sizeof passthrough / sizeof passthrough[0]; i++) {
    if (strcmp(op, passthrough[i].name) == 0) {
      return fold_passthrough(im, node, passthrough[i].fixed, oi_find_converter(op), handled);
    }
  }
  return CQ_OK;
}

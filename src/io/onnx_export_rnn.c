/* LSTM / GRU (float, and the dynamic quantized ones) as ONNX LSTM / GRU nodes, one per layer, as
 * torch.onnx.export writes them:
 *  - gates reordered: ONNX's LSTM order is i, o, f, c where PyTorch's is i, f, g, o; ONNX's GRU
 *    order is z, r, h where PyTorch's is r, z, n (GRU with linear_before_reset=1, PyTorch's
 *    formula); W = [dirs, G*H, in], R = [dirs, G*H, H], B = [dirs, 2*G*H] = [Wb, Rb];
 *  - Y [seq, dirs, batch, H] back to PyTorch's [seq, batch, dirs*H]: Squeeze(axis 1) for one
 *    direction, Transpose(0, 2, 1, 3) + Reshape(0, 0, -1) for two; batch_first inputs and outputs
 *    go through Transpose(1, 0, 2);
 *  - h_n / c_n: Y_h / Y_c of the single layer, or their Concat along axis 0 over the layers.
 * Dynamic quantized modules write each direction's weights as an int8 initializer [1, G*H, in]
 * (rows reordered with their per-channel scales) through DequantizeLinear (Concat along axis 0 for
 * two directions); the activations stay float, which is what the importer folds back into
 * DynamicQuantizedLSTM / GRU. Explicit initial states are passed to a one-layer module only. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "io/onnx_export.h"
#include "nn/layers.h"
#include "nn/quantized/qmodules.h"

static const int lstm_order[4] = {0, 3, 1, 2}; /* ONNX block k <- PyTorch block lstm_order[k] */
static const int gru_order[3] = {1, 0, 2};

typedef struct rnn_ctx {
  ox_exporter *x;
  const ox_call *c;
  int gru, quantized;
  cq_rnn_options o;
  int64_t G, H, D;
  const int *order;
} rnn_ctx;

static const cq_tensor *own(const rnn_ctx *r, const char *kind, int64_t l, int64_t d) {
  char name[64];
  snprintf(name, sizeof name, "%s_l%lld%s", kind, (long long)l, d ? "_reverse" : "");
  cq_named_tensor *t = cq_module_find_tensor(r->c->m, name);
  return t ? t->tensor : NULL;
}

/* Rows of a [G*H, cols] matrix in ONNX gate order, into dst (element size esz). */
static void reorder_rows(const rnn_ctx *r, const void *src, void *dst, int64_t cols, size_t esz) {
  const size_t block = (size_t)(r->H * cols) * esz;
  for (int64_t k = 0; k < r->G; k++) {
    memcpy((char *)dst + (size_t)k * block, (const char *)src + (size_t)r->order[k] * block, block);
  }
}

/* W or R of layer l: float [D, G*H, cols] initializer, or per-direction dequantized int8. */
static const char *weight_input(rnn_ctx *r, const char *kind, const char *onnx_name, int64_t l,
                                int64_t cols) {
  ox_exporter *x = r->x;
  ox_builder *b = &x->b;
  const char *path = r->c->path;
  const int64_t rows = r->G * r->H;
  const char *dir_names[2] = {NULL, NULL};
  float *all = r->quantized ? NULL : ox_alloc(b, sizeof(float) * (size_t)(r->D * rows * cols));
  for (int64_t d = 0; d < r->D && b->st == CQ_OK; d++) {
    const cq_tensor *t = own(r, kind, l, d);
    const int want = r->quantized ? CQ_S8 : CQ_F32;
    if (!t || (int)t->dtype != want || t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols ||
        (r->quantized && !t->qparams)) {
      b->st = ox_fail(r->c, CQ_EUNSUPPORTED, "%s of layer %lld%s is missing or misshapen", kind,
                      (long long)l, d ? " (reverse)" : "");
      return NULL;
    }
    if (!r->quantized) {
      reorder_rows(r, t->data, all + d * rows * cols, cols, sizeof(float));
      continue;
    }
    const cq_qparams *qp = t->qparams;
    const int per_channel = cq_qscheme_is_per_channel(qp->qscheme);
    int8_t *q = ox_alloc(b, (size_t)(rows * cols));
    float *sc = ox_alloc(b, sizeof(float) * (size_t)qp->count);
    int32_t *zp = ox_alloc(b, sizeof(int32_t) * (size_t)qp->count);
    if (b->st != CQ_OK) return NULL;
    reorder_rows(r, t->data, q, cols, 1);
    if (per_channel) {
      reorder_rows(r, qp->scale, sc, 1, sizeof(float));
      reorder_rows(r, qp->zero_point, zp, 1, sizeof(int32_t));
    } else {
      sc[0] = qp->scale[0];
      zp[0] = qp->zero_point[0];
    }
    const int64_t dims[3] = {1, rows, cols};
    const char *prefix = r->D == 1 ? ox_printf(b, "%s.%s_l%lld", path, onnx_name, (long long)l)
                                   : ox_printf(b, "%s.%s_l%lld_d%lld", path, onnx_name,
                                               (long long)l, (long long)d);
    dir_names[d] = ox_dequantized_weight(x, path, prefix, 3, dims, q, qp->count, sc, zp,
                                         per_channel ? 1 : -1);
  }
  if (b->st != CQ_OK) return NULL;
  const char *name = ox_printf(b, "%s.%s_l%lld", path, onnx_name, (long long)l);
  if (!r->quantized) {
    const int64_t dims[3] = {r->D, rows, cols};
    return ox_init_f32(b, name, 3, dims, all);
  }
  if (r->D == 1) return dir_names[0];
  Onnx__NodeProto *n;
  const char *out = ox_op(x, name, name, "Concat", 2, dir_names, NULL, &n);
  ox_attr_int(b, n, "axis", 0);
  return out;
}

/* B of layer l: [D, 2*G*H] = [Wb, Rb] per direction, reordered; NULL when the module has none. */
static const char *bias_input(rnn_ctx *r, int64_t l) {
  if (!r->o.bias) return NULL;
  ox_builder *b = &r->x->b;
  const int64_t rows = r->G * r->H;
  float *all = ox_alloc(b, sizeof(float) * (size_t)(r->D * 2 * rows));
  for (int64_t d = 0; d < r->D && b->st == CQ_OK; d++) {
    const cq_tensor *bi = own(r, "bias_ih", l, d), *bh = own(r, "bias_hh", l, d);
    if (!bi || !bh || bi->dtype != CQ_F32 || bh->dtype != CQ_F32 || cq_tensor_numel(bi) != rows ||
        cq_tensor_numel(bh) != rows) {
      b->st = ox_fail(r->c, CQ_EUNSUPPORTED, "the biases of layer %lld are missing or misshapen",
                      (long long)l);
      return NULL;
    }
    reorder_rows(r, bi->data, all + d * 2 * rows, 1, sizeof(float));
    reorder_rows(r, bh->data, all + d * 2 * rows + rows, 1, sizeof(float));
  }
  const int64_t dims[2] = {r->D, 2 * rows};
  return ox_init_f32(b, ox_printf(b, "%s.B_l%lld", r->c->path, (long long)l), 2, dims, all);
}

/* Y [T, D, B, H] -> [T, B, D*H]. */
static const char *unfold_y(rnn_ctx *r, const char *y, const char *base) {
  ox_exporter *x = r->x;
  ox_builder *b = &x->b;
  const char *path = r->c->path;
  if (r->D == 1) {
    const int64_t one = 1, axes[1] = {1};
    const char *ax = ox_init_i64(b, ox_printf(b, "%s_Squeeze_axes", base), 1, &one, axes);
    const char *in[2] = {y, ax};
    return ox_op(x, path, ox_printf(b, "%s_Squeeze", base), "Squeeze", 2, in, "Squeeze", NULL);
  }
  const int64_t perm[4] = {0, 2, 1, 3};
  const char *in[1] = {y};
  Onnx__NodeProto *n;
  const char *t = ox_op(x, path, ox_printf(b, "%s_Transpose", base), "Transpose", 1, in,
                        "Transpose", &n);
  ox_attr_ints(b, n, "perm", 4, perm);
  const int64_t shape[3] = {0, 0, -1};
  return ox_reshape_nodes(x, path, ox_printf(b, "%s_Reshape", base), t, 3, shape, "Reshape");
}

static const char *transpose01(rnn_ctx *r, const char *v, const char *node, const char *suffix) {
  const int64_t perm[3] = {1, 0, 2};
  const char *in[1] = {v};
  Onnx__NodeProto *n;
  const char *out = ox_op(r->x, r->c->path, node, "Transpose", 1, in, suffix, &n);
  ox_attr_ints(&r->x->b, n, "perm", 3, perm);
  return out;
}

cq_status ox_emit_rnn(ox_exporter *x, const ox_call *c) {
  rnn_ctx r;
  memset(&r, 0, sizeof r);
  r.x = x;
  r.c = c;
  cq_status st;
  cq_qmodule_info info;
  if (cq_qmodule_describe_dynamic_rnn(c->m, &info)) {
    r.quantized = 1;
    r.gru = info.is_gru;
    r.o = info.rnn;
    st = ox_use_engine(x, c, info.engine);
  } else {
    st = cq_rnn_describe(c->m, &r.o, &r.gru);
  }
  if (st == CQ_OK) st = ox_need_float(c);
  if (st != CQ_OK) return st;
  const ox_value *in = c->in[0];
  if (in->ndim != 3) {
    return ox_fail(c, CQ_EUNSUPPORTED, "expects a 3-D input (the ONNX %s is batched), got %d-D",
                   r.gru ? "GRU" : "LSTM", in->ndim);
  }
  if (c->nin > 1 && r.o.num_layers > 1) {
    return ox_fail(c, CQ_EUNSUPPORTED, "explicit initial states of a %lld-layer module",
                   (long long)r.o.num_layers);
  }
  r.G = r.gru ? 3 : 4;
  r.H = r.o.hidden_size;
  r.D = r.o.bidirectional ? 2 : 1;
  r.order = r.gru ? gru_order : lstm_order;
  ox_builder *b = &x->b;
  const char *path = c->path;
  const char *seq = in->name; /* [T, B, I] */
  int64_t T = in->dims[0], B = in->dims[1];
  if (r.o.batch_first) {
    seq = transpose01(&r, seq, ox_printf(b, "%s_Transpose_input", path), "input_T");
    T = in->dims[1];
    B = in->dims[0];
  }
  const char *hs[16], *cs[16];
  const int64_t L = r.o.num_layers;
  if (L > 16) return ox_fail(c, CQ_EUNSUPPORTED, "more than 16 layers");
  for (int64_t l = 0; l < L && b->st == CQ_OK; l++) {
    const int64_t cols = l == 0 ? r.o.input_size : r.D * r.H;
    const char *base = L == 1 ? path : ox_printf(b, "%s.l%lld", path, (long long)l);
    const char *w = weight_input(&r, "weight_ih", "W", l, cols);
    const char *rr = weight_input(&r, "weight_hh", "R", l, r.H);
    const char *bias = bias_input(&r, l);
    if (b->st != CQ_OK) break;
    const char *ins[7] = {seq, w, rr, bias ? bias : "", "", "", ""};
    int nin = bias ? 4 : 3;
    if (c->nin > 1) {
      ins[5] = c->in[1]->name;
      nin = 6;
      if (!r.gru && c->nin > 2) {
        ins[6] = c->in[2]->name;
        nin = 7;
      }
    }
    const char *y = ox_value_name(b, ox_printf(b, "%s_Y", base));
    const char *yh = ox_value_name(b, ox_printf(b, "%s_Y_h", base));
    const char *yc = r.gru ? NULL : ox_value_name(b, ox_printf(b, "%s_Y_c", base));
    const char *outs[3] = {y, yh, yc};
    Onnx__NodeProto *n = ox_node(b, r.gru ? "GRU" : "LSTM", base, nin, ins, r.gru ? 2 : 3, outs);
    ox_attr_int(b, n, "hidden_size", r.H);
    ox_attr_string(b, n, "direction", r.D == 2 ? "bidirectional" : "forward");
    if (r.gru) ox_attr_int(b, n, "linear_before_reset", 1);
    hs[l] = yh;
    cs[l] = yc;
    seq = unfold_y(&r, y, base);
  }
  if (b->st != CQ_OK) return b->st;
  ox_value *out = &c->out[0];
  out->ndim = 3;
  out->dims[0] = r.o.batch_first ? B : T;
  out->dims[1] = r.o.batch_first ? T : B;
  out->dims[2] = r.D * r.H;
  out->name = r.o.batch_first ? transpose01(&r, seq, ox_printf(b, "%s_Transpose_output", path),
                                            "output_T")
                              : seq;
  for (int k = 1; k < c->nout; k++) {
    const char **states = k == 1 ? hs : cs;
    ox_value *s = &c->out[k];
    s->ndim = 3;
    s->dims[0] = L * r.D;
    s->dims[1] = B;
    s->dims[2] = r.H;
    if (L == 1) {
      s->name = states[0];
    } else {
      Onnx__NodeProto *n;
      s->name = ox_op(x, path, ox_printf(b, "%s_Concat_%s", path, k == 1 ? "h" : "c"), "Concat",
                      (int)L, states, k == 1 ? "h_n" : "c_n", &n);
      ox_attr_int(b, n, "axis", 0);
    }
  }
  return b->st;
}

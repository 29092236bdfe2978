/* ONNX import: LSTM and GRU as cq_lstm / cq_gru (one layer, forward or bidirectional).
 *
 * ONNX packs the gates of W [D, G*H, in], R [D, G*H, H] and B [D, 2*G*H] = [Wb, Rb] in its own
 * order: LSTM i, o, f, c where PyTorch has i, f, g, o; GRU z, r, h where PyTorch has r, z, n
 * (and torch exports GRU with linear_before_reset=1, the only form PyTorch computes). The rows
 * are copied block by block into weight_ih_l0 / weight_hh_l0 / bias_ih_l0 / bias_hh_l0 (and
 * the _reverse ones).
 *
 * Outputs: ONNX Y is [seq, D, batch, H]; the module gives [seq, batch, D*H], so Y is produced by
 * an Unsqueeze (D = 1) or Reshape [0, 0, D, H] + Permute (0, 2, 1, 3) after it. Y_h / Y_c
 * ([D, batch, H]) are the module's h_n / c_n. Initial states that are absent or zeros (the
 * ConstantOfShape torch writes, or a zero initializer) are left out; computed ones feed the
 * module's h0 / c0. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "io/onnx_import.h"
#include "nn/module_impl.h"
#include "nn/quantized/qmodules.h"

/* PyTorch gate block k comes from ONNX block perm[k]. */
static const int lstm_perm[4] = {0, 2, 3, 1};
static const int gru_perm[3] = {1, 0, 2};

/* Copies the gate blocks of one direction: src [G*H, cols] in ONNX order -> dst in PyTorch
 * order. */
static void reorder_gates(const float *src, float *dst, int gates, const int *perm, int64_t h,
                          int64_t cols) {
  const size_t block = (size_t)(h * cols);
  for (int k = 0; k < gates; k++) {
    memcpy(dst + (size_t)k * block, src + (size_t)perm[k] * block, block * sizeof *dst);
  }
}

/* Whether an initial-state input can be left out: absent, zeros of a symbolic shape, or a
 * constant that is all zeros. */
static cq_status zero_state(oi_importer *im, oi_value *v, int *is_zero) {
  *is_zero = 1;
  if (!v || v->kind == OI_ZEROS) return CQ_OK;
  if (v->kind == OI_ACT) {
    *is_zero = 0;
    return CQ_OK;
  }
  if (v->kind != OI_CONST) return oi_fail(im, CQ_EUNSUPPORTED, "unsupported initial state");
  int64_t n;
  cq_status st = oi_tensor_check(im, v->tensor, "initial state", &n);
  if (st != CQ_OK) return st;
  float *tmp = cq_malloc_for(sizeof *tmp * (size_t)(n > 0 ? n : 1), "an initial state");
  if (!tmp) return CQ_ENOMEM;
  st = oi_tensor_f32(im, v->tensor, "initial state", tmp, n);
  for (int64_t i = 0; i < n && st == CQ_OK; i++) {
    if (tmp[i] != 0.0f) st = oi_fail(im, CQ_EUNSUPPORTED, "a nonzero constant initial state");
  }
  cq_free(tmp);
  return st;
}

/* Checks the default activations (or none given) and the attributes cquant does not model. */
static cq_status check_attrs(oi_importer *im, int gru, int dirs) {
  const Onnx__AttributeProto *a = oi_attr(im->node, "activations");
  if (a) {
    static const char *lstm_acts[3] = {"Sigmoid", "Tanh", "Tanh"};
    static const char *gru_acts[2] = {"Sigmoid", "Tanh"};
    const int per = gru ? 2 : 3;
    if (a->type != ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS || a->n_strings != (size_t)(per * dirs)) {
      return oi_fail(im, CQ_EUNSUPPORTED, "activations other than the defaults");
    }
    for (int i = 0; i < per * dirs; i++) {
      const char *want = gru ? gru_acts[i % per] : lstm_acts[i % per];
      if (a->strings[i].len != strlen(want) || memcmp(a->strings[i].data, want, strlen(want)) != 0) {
        return oi_fail(im, CQ_EUNSUPPORTED, "activations other than the defaults");
      }
    }
  }
  if (oi_attr(im->node, "clip")) return oi_fail(im, CQ_EUNSUPPORTED, "attribute clip");
  int64_t v;
  cq_status st = oi_attr_int(im, "layout", 0, &v);
  if (st != CQ_OK) return st;
  if (v != 0) return oi_fail(im, CQ_EUNSUPPORTED, "layout=1 (batch first) is not supported");
  if (!gru) {
    st = oi_attr_int(im, "input_forget", 0, &v);
    if (st != CQ_OK) return st;
    if (v != 0) return oi_fail(im, CQ_EUNSUPPORTED, "input_forget=1 is not supported");
  } else {
    st = oi_attr_int(im, "linear_before_reset", 0, &v);
    if (st != CQ_OK) return st;
    if (v != 1) {
      return oi_fail(im, CQ_EUNSUPPORTED, "linear_before_reset=0 (PyTorch's GRU computes the "
                     "linear_before_reset=1 form)");
    }
  }
  return CQ_OK;
}

/* Loads the weights of the module from W, R, B (all float initializers). */
static cq_status load_weights(oi_importer *im, cq_module *m, int gru, int dirs, int64_t hidden,
                              int64_t in, const Onnx__TensorProto *w, const Onnx__TensorProto *r,
                              const Onnx__TensorProto *b) {
  const int gates = gru ? 3 : 4;
  const int *perm = gru ? gru_perm : lstm_perm;
  const int64_t gh = gates * hidden;
  const int64_t nw = dirs * gh * in, nr = dirs * gh * hidden, nb = dirs * 2 * gh;
  float *tmp = cq_malloc_for(sizeof *tmp * (size_t)(nw + nr + nb + 1), "recurrent weights");
  if (!tmp) return CQ_ENOMEM;
  float *fw = tmp, *fr = tmp + nw, *fb = tmp + nw + nr;
  cq_status st = oi_tensor_f32(im, w, "W", fw, nw);
  if (st == CQ_OK) st = oi_tensor_f32(im, r, "R", fr, nr);
  if (st == CQ_OK && b) st = oi_tensor_f32(im, b, "B", fb, nb);
  if (st == CQ_OK && !b) memset(fb, 0, sizeof *fb * (size_t)nb);
  for (int d = 0; d < dirs && st == CQ_OK; d++) {
    const char *suffix = d ? "_reverse" : "";
    char key[64];
    const struct {
      const char *name;
      const float *src;
      int64_t cols;
    } parts[4] = {{"weight_ih_l0", fw + d * gh * in, in},
                  {"weight_hh_l0", fr + d * gh * hidden, hidden},
                  {"bias_ih_l0", fb + d * 2 * gh, 1},
                  {"bias_hh_l0", fb + d * 2 * gh + gh, 1}};
    for (int p = 0; p < 4 && st == CQ_OK; p++) {
      snprintf(key, sizeof key, "%s%s", parts[p].name, suffix);
      cq_named_tensor *t = cq_module_own_tensor(m, key);
      if (!t) {
        st = oi_fail(im, CQ_ESTATE, "the module has no %s", key);
        break;
      }
      reorder_gates(parts[p].src, t->tensor->data, gates, perm, hidden, parts[p].cols);
    }
  }
  cq_free(tmp);
  return st;
}

/* Adds the modules that turn the output [seq, batch, D*H] into ONNX's [seq, D, batch, H]. */
static cq_status emit_y_layout(oi_importer *im, const char *base, oi_value *raw, oi_value *y,
                               int dirs, int64_t hidden) {
  char name[160], tmpname[160];
  cq_module *m;
  cq_status st;
  y->ndim = 4;
  y->dims[0] = raw->dims[0];
  y->dims[1] = (oi_dim){dirs, 0};
  y->dims[2] = raw->dims[1];
  y->dims[3] = (oi_dim){hidden, 0};
  if (dirs == 1) {
    const int axis = 1;
    st = cq_unsqueeze(&m, 1, &axis);
    if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
    snprintf(tmpname, sizeof tmpname, "%s_unsqueeze", base);
    st = oi_unique_name(im, tmpname, name, sizeof name);
    if (st != CQ_OK) {
      cq_module_free(m);
      return st;
    }
    return oi_emit(im, name, m, 1, &raw, 1, &y);
  }
  /* [seq, batch, D*H] -> [seq, batch, D, H] -> [seq, D, batch, H] */
  const int64_t shape[4] = {0, 0, dirs, hidden};
  st = cq_reshape(&m, 4, shape);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  oi_value mid;
  memset(&mid, 0, sizeof mid);
  mid.name = "";
  snprintf(tmpname, sizeof tmpname, "%s_reshape", base);
  st = oi_unique_name(im, tmpname, name, sizeof name);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  oi_value *midp = &mid;
  st = oi_emit(im, name, m, 1, &raw, 1, &midp);
  if (st != CQ_OK) return st;
  const int perm[4] = {0, 2, 1, 3};
  st = cq_permute(&m, 4, perm);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  snprintf(tmpname, sizeof tmpname, "%s_permute", base);
  st = oi_unique_name(im, tmpname, name, sizeof name);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  return oi_emit(im, name, m, 1, &midp, 1, &y);
}

/* W and R given as DequantizeLinear of int8 initializers with float activations: the dynamic
 * quantized LSTM / GRU that cq_onnx_save wrote, rebuilt with the file's integers and scales (one
 * direction: the per-tensor scales of W and R are those of weight_ih_l0 and weight_hh_l0; the
 * gate reordering moves rows, which per-tensor scales do not see). *m is replaced. */
static cq_status fold_dynamic(oi_importer *im, const Onnx__NodeProto *node, int dirs,
                              cq_module **m) {
  cq_qparams wq[2];
  int found[2] = {0, 0};
  memset(wq, 0, sizeof wq);
  cq_status st = oi_qdq_weight_qparams(im, node, 1, &wq[0], &found[0]);
  if (st == CQ_OK) st = oi_qdq_weight_qparams(im, node, 2, &wq[1], &found[1]);
  if (st == CQ_OK && (found[0] || found[1])) {
    if (!found[0] || !found[1] || dirs != 1 || wq[0].count != 1 || wq[1].count != 1 ||
        wq[0].dtype != CQ_QINT8 || wq[1].dtype != CQ_QINT8) {
      st = oi_fail(im, CQ_EUNSUPPORTED, "quantized recurrent weights: both W and R must be "
                   "per-tensor int8 of one direction");
    } else {
      const cq_qparams *given[2] = {&wq[0], &wq[1]};
      cq_module *q = NULL;
      st = cq_qmodule_dynamic_rnn_with_qparams(&q, *m, given, 2, im->engine);
      if (st != CQ_OK) {
        st = oi_fail(im, st, "%s", cq_last_error());
      } else {
        cq_module_free(*m);
        *m = q;
      }
    }
  }
  for (int i = 0; i < 2; i++) {
    if (found[i]) cq_qparams_release(&wq[i]);
  }
  return st;
}

static cq_status convert_rnn(oi_importer *im, const Onnx__NodeProto *node, int gru) {
  oi_value *x, *seq_lens, *h0, *c0 = NULL, *peep = NULL;
  const Onnx__TensorProto *w, *r, *b = NULL;
  cq_status st = oi_input_act(im, 0, &x);
  if (st == CQ_OK) st = oi_input_const(im, 1, &w);
  if (st == CQ_OK) st = oi_input_const(im, 2, &r);
  if (st == CQ_OK && node->n_input > 3 && node->input[3][0]) st = oi_input_const(im, 3, &b);
  if (st == CQ_OK) st = oi_input(im, 4, &seq_lens);
  if (st == CQ_OK) st = oi_input(im, 5, &h0);
  if (st == CQ_OK && !gru) st = oi_input(im, 6, &c0);
  if (st == CQ_OK && !gru) st = oi_input(im, 7, &peep);
  if (st != CQ_OK) return st;
  if (seq_lens) return oi_fail(im, CQ_EUNSUPPORTED, "sequence_lens is not supported");
  if (peep) return oi_fail(im, CQ_EUNSUPPORTED, "peepholes are not supported");
  int64_t hidden;
  char direction[32];
  st = oi_attr_int(im, "hidden_size", -1, &hidden);
  if (st == CQ_OK) st = oi_attr_string(im, "direction", "forward", direction, sizeof direction);
  if (st != CQ_OK) return st;
  int dirs;
  if (strcmp(direction, "forward") == 0) {
    dirs = 1;
  } else if (strcmp(direction, "bidirectional") == 0) {
    dirs = 2;
  } else {
    return oi_fail(im, CQ_EUNSUPPORTED, "direction '%s' is not supported", direction);
  }
  st = check_attrs(im, gru, dirs);
  if (st != CQ_OK) return st;
  const int gates = gru ? 3 : 4;
  int64_t nw;
  st = oi_tensor_check(im, w, "W", &nw);
  if (st != CQ_OK) return st;
  if (w->n_dims != 3 || w->dims[0] != dirs || w->dims[1] % gates != 0) {
    return oi_fail(im, CQ_ESHAPE, "W '%.80s' must be [%d, %d*hidden, input]", w->name, dirs,
                   gates);
  }
  if (hidden < 0) hidden = w->dims[1] / gates;
  if (hidden < 1 || w->dims[1] != gates * hidden) {
    return oi_fail(im, CQ_ESHAPE, "hidden_size %lld does not match W '%.80s'", (long long)hidden,
                   w->name);
  }
  const int64_t in = w->dims[2];
  if (x->ndim != 3) return oi_fail(im, CQ_ESHAPE, "input X has rank %d, expected 3", x->ndim);
  if (!x->dims[2].sym && x->dims[2].v != in) {
    return oi_fail(im, CQ_ESHAPE, "input X has %lld features, W '%.80s' expects %lld",
                   (long long)x->dims[2].v, w->name, (long long)in);
  }
  int h_zero, c_zero;
  st = zero_state(im, h0, &h_zero);
  if (st == CQ_OK) st = zero_state(im, c0, &c_zero);
  if (st != CQ_OK) return st;
  if (h_zero && !c_zero) {
    return oi_fail(im, CQ_EUNSUPPORTED, "a computed initial_c with a zero initial_h");
  }
  cq_rnn_options o = cq_rnn_defaults(in, hidden);
  o.bidirectional = dirs == 2;
  o.bias = 1;
  cq_module *m;
  st = gru ? cq_gru(&m, &o) : cq_lstm(&m, &o);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  st = load_weights(im, m, gru, dirs, hidden, in, w, r, b);
  if (st == CQ_OK) st = fold_dynamic(im, node, dirs, &m);
  char name[128];
  if (st == CQ_OK) st = oi_child_name(im, node, w->name, name, sizeof name);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  /* outputs: which are read */
  const int nouts_max = gru ? 2 : 3;
  oi_value *outs[3] = {NULL, NULL, NULL};
  int used[3] = {0, 0, 0}, nout = 1;
  for (int i = 0; i < nouts_max && (size_t)i < node->n_output; i++) {
    if (!node->output[i] || !node->output[i][0]) continue;
    int k = oi_find(im, node->output[i]);
    if (k >= 0 && im->uses[k] > 0) {
      used[i] = 1;
      if (i + 1 > nout) nout = i + 1;
    }
  }
  oi_value raw;
  memset(&raw, 0, sizeof raw);
  raw.name = "";
  outs[0] = &raw;
  for (int i = 1; i < nout; i++) {
    st = oi_define_output(im, i, OI_ACT, &outs[i]);
    if (st != CQ_OK) {
      cq_module_free(m);
      return st;
    }
    outs[i]->ndim = 3;
    outs[i]->dims[0] = (oi_dim){dirs, 0};
    outs[i]->dims[1] = x->dims[1];
    outs[i]->dims[2] = (oi_dim){hidden, 0};
  }
  oi_value *ins[3] = {x, h0, c0};
  const int nin = h_zero ? 1 : (c_zero ? 2 : 3);
  for (int i = 1; i < nin; i++) {
    if (ins[i]->kind != OI_ACT) {
      cq_module_free(m);
      return oi_fail(im, CQ_EUNSUPPORTED, "initial states must both be zeros or both computed");
    }
  }
  st = oi_emit(im, name, m, nin, ins, nout, outs);
  if (st != CQ_OK) return st;
  raw.ndim = 3;
  raw.dims[0] = x->dims[0];
  raw.dims[1] = x->dims[1];
  raw.dims[2] = (oi_dim){dirs * hidden, 0};
  if (!used[0]) return CQ_OK;
  oi_value *y;
  st = oi_define_output(im, 0, OI_ACT, &y);
  if (st != CQ_OK) return st;
  return emit_y_layout(im, name, &raw, y, dirs, hidden);
}

cq_status oi_conv_lstm(oi_importer *im, const Onnx__NodeProto *node) {
  return convert_rnn(im, node, 0);
}

cq_status oi_conv_gru(oi_importer *im, const Onnx__NodeProto *node) {
  return convert_rnn(im, node, 1);
}

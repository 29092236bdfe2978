/* nnqd.LSTM and nnqd.GRU (DynamicQuantizedLSTM / DynamicQuantizedGRU): float in and out, int8
 * weights, the gate math in float (torch-1.13-semantics.md 5.5, ATen's quantized_lstm /
 * quantized_gru with QuantizedCellParamsDynamic).
 *
 * For every layer and direction the two matrix products are dynamic int8 linears (5.4, with
 * reduce_range=True as the module's version 2 asks; qnnpack ignores it), each quantizing its own
 * input with its own min/max:
 *   - the input projection gi = linear_dynamic(X, W_ih, b_ih) runs ONCE over the whole sequence,
 *     X = the layer's [T*B, in] input, so all timesteps share one activation scale (both
 *     directions do this);
 *   - the hidden projection gh = linear_dynamic(h_{t-1}, W_hh, b_hh) runs per timestep over the
 *     batch's [B, H] hidden state.
 * The gates are then exactly those of the float modules (nn/rnn_cells.h): LSTM i, f, g, o with
 * c' = f*c + i*g, h' = o*tanh(c'); GRU r, z, n with h' = (h - n)*z + n. Layer l > 0 takes the
 * float outputs of layer l - 1 (forward and reverse features concatenated); the reverse direction
 * walks t = T-1 .. 0. Dropout is never applied: PyTorch creates these modules with training=False
 * and they are inference modules.
 *
 * Forward takes (input[, h0[, c0]]) and gives (output, h_n[, c_n]) with nn.LSTM's shapes; input must
 * be 3-D ([T, B, I], or [B, T, I] with batch_first): PyTorch's quantized RNNs have no unbatched
 * form. Missing states are zeros (an LSTM given h0 alone takes c0 = 0, as cquant's float LSTM does).
 *
 * The module keeps, in the float module's state_dict order, the quantized weights weight_ih_l{l}
 * and weight_hh_l{l} (int8 with their qparams) and the float biases bias_ih_l{l} / bias_hh_l{l}
 * ("_reverse" for the second direction) as buffers, beside the packed copies the GEMM reads.
 * Construction needs bias=True: PyTorch's from_float asserts it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "core/strbuf.h"
#include "nn/layers.h"
#include "nn/quantized/dynamic_weight.h"
#include "nn/quantized/qmodules.h"
#include "nn/rnn_cells.h"

typedef struct dyn_rnn_impl {
  int gru;
  int64_t input_size, hidden_size, num_layers;
  int batch_first, bidirectional;
  float dropout; /* the float module's dropout (only printed: quantized RNNs run in eval) */
  cq_backend engine;
  cq_qgemm_packed **packed; /* 2 per (layer, direction) k: [2k] W_ih, [2k + 1] W_hh */
  int64_t npacked;
} dyn_rnn_impl;

static int64_t dirs_of(const dyn_rnn_impl *p) { return p->bidirectional ? 2 : 1; }
static int64_t gates_of(const dyn_rnn_impl *p) { return p->gru ? 3 : 4; }
static int64_t layer_in(const dyn_rnn_impl *p, int64_t l) {
  return l == 0 ? p->input_size : dirs_of(p) * p->hidden_size;
}

static void dyn_rnn_destroy(void *ptr) {
  dyn_rnn_impl *p = ptr;
  if (!p) return;
  for (int64_t i = 0; i < p->npacked; i++) cq_qgemm_packed_destroy(p->packed[i]);
  cq_free(p->packed);
  cq_free(p);
}

/* ---- forward ----------------------------------------------------------------------------------- */

static const char *state_label(const dyn_rnn_impl *p, int which) {
  if (p->gru) return "hidden";
  return which == 0 ? "hidden[0]" : "hidden[1]";
}

static cq_status check_inputs(cq_module *m, int nin, cq_tensor *const *in, int64_t *T,
                              int64_t *B) {
  const dyn_rnn_impl *p = m->impl;
  const cq_tensor *x = in[0];
  if (x->dtype != CQ_F32) return cq_module_fail(m, CQ_EINVAL, "input must be float32");
  if (x->ndim != 3) {
    return cq_module_fail(m, CQ_ESHAPE, "input must have 3 dimensions, got %d", x->ndim);
  }
  if (x->shape[2] != p->input_size) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "input.size(-1) must be equal to input_size. Expected %lld, got %lld",
                          (long long)p->input_size, (long long)x->shape[2]);
  }
  *T = p->batch_first ? x->shape[1] : x->shape[0];
  *B = p->batch_first ? x->shape[0] : x->shape[1];
  if (*T == 0) {
    return cq_module_fail(m, CQ_ESHAPE, "Expected sequence length to be larger than 0 in RNN");
  }
  const int64_t LD = p->num_layers * dirs_of(p), H = p->hidden_size;
  for (int i = 1; i < nin; i++) {
    const cq_tensor *s = in[i];
    if (s->dtype != CQ_F32) {
      return cq_module_fail(m, CQ_EINVAL, "%s must be float32", i == 1 ? "h0" : "c0");
    }
    if (s->ndim != 3 || s->shape[0] != LD || s->shape[1] != *B || s->shape[2] != H) {
      char got[128];
      return cq_module_fail(m, CQ_ESHAPE, "Expected %s size (%lld, %lld, %lld), got %s",
                            state_label(p, i - 1), (long long)LD, (long long)*B, (long long)H,
                            cq_shape_str(s->ndim, s->shape, got, sizeof got));
    }
  }
  return CQ_OK;
}

/* [A, C, F] -> [C, A, F]: batch-first <-> time-major. */
static void swap01(const float *src, float *dst, int64_t a, int64_t c, int64_t f) {
  for (int64_t i = 0; i < a; i++) {
    for (int64_t j = 0; j < c; j++) {
      memcpy(dst + (j * a + i) * f, src + (i * c + j) * f, sizeof(float) * (size_t)f);
    }
  }
}

/* The working memory of one forward call. */
typedef struct rnn_scratch {
  float *xt;      /* layer 0 input, time-major (batch_first only) [T*B, I] */
  float *ybuf[2]; /* outputs of the layers below the last, time-major [T*B, D*H] */
  float *ylast;   /* the last layer's output, time-major (batch_first only) */
  float *xw;      /* input projection of one direction [T*B, G*H] */
  float *gh;      /* hidden projection of one step [B, G*H] */
  float *h[2], *c[2];
  void *ws;       /* quantized activations of the GEMM */
} rnn_scratch;

static void scratch_free(rnn_scratch *s) {
  cq_free(s->xt);
  cq_free(s->ybuf[0]);
  cq_free(s->ybuf[1]);
  cq_free(s->ylast);
  cq_free(s->xw);
  cq_free(s->gh);
  cq_free(s->h[0]);
  cq_free(s->c[0]);
  cq_free(s->ws);
}

/* n floats (at least one, so that an empty batch still gets a valid pointer). */
static float *floats(int64_t n, const char *what, int *failed) {
  if (*failed) return NULL;
  float *f = cq_calloc_for((size_t)(n > 0 ? n : 1), sizeof(float), what);
  if (!f) *failed = 1;
  return f;
}

static cq_status scratch_alloc(const dyn_rnn_impl *p, int64_t T, int64_t B, rnn_scratch *s) {
  memset(s, 0, sizeof *s);
  const int64_t L = p->num_layers, D = dirs_of(p), H = p->hidden_size, GH = gates_of(p) * H;
  const int64_t TB = T * B, DH = D * H;
  int failed = 0;
  if (p->batch_first) {
    s->xt = floats(TB * p->input_size, "the time-major RNN input", &failed);
    s->ylast = floats(TB * DH, "the time-major RNN output", &failed);
  }
  if (L > 1) {
    s->ybuf[0] = floats(TB * DH, "an RNN layer output", &failed);
    if (L > 2) s->ybuf[1] = floats(TB * DH, "an RNN layer output", &failed);
  }
  s->xw = floats(TB * GH, "the RNN input projection", &failed);
  s->gh = floats(B * GH, "the RNN hidden projection", &failed);
  s->h[0] = floats(2 * B * H, "the RNN hidden state", &failed);
  s->c[0] = floats(2 * B * H, "the RNN cell state", &failed);
  int64_t maxin = p->input_size > DH ? p->input_size : DH;
  if (maxin < H) maxin = H;
  if (!failed) {
    s->ws = cq_malloc_for((size_t)(TB * maxin > 0 ? TB * maxin : 1),
                          "the quantized activations of an RNN");
    if (!s->ws) failed = 1;
  }
  if (failed) {
    scratch_free(s);
    return CQ_ENOMEM;
  }
  s->h[1] = s->h[0] + B * H;
  s->c[1] = s->c[0] + B * H;
  return CQ_OK;
}

/* One direction of one layer: X [T*B, in_l] time-major -> columns d*H.. of Y [T*B, D*H]; the
 * final states go to hn / cn (each [B, H]). */
static cq_status run_direction(const dyn_rnn_impl *p, int64_t l, int64_t d, const float *X,
                               int64_t T, int64_t B, const float *h0, const float *c0, float *Y,
                               float *hn, float *cn, rnn_scratch *s) {
  const int64_t H = p->hidden_size, GH = gates_of(p) * H, D = dirs_of(p), DH = D * H;
  const int64_t BH = B * H, in_l = layer_in(p, l), k = l * D + d;
  cq_qgemm_dynamic *op_ih = NULL, *op_hh = NULL;
  cq_status st = cq_dynamic_op_create(p->packed[2 * k], p->engine, 0, &op_ih);
  if (st == CQ_OK) st = cq_dynamic_op_create(p->packed[2 * k + 1], p->engine, 0, &op_hh);
  /* the input projection of the whole sequence: one activation scale for every timestep */
  if (st == CQ_OK) st = cq_dynamic_op_run(op_ih, X, T * B, in_l, s->xw, GH, s->ws);
  int cur = 0;
  if (st == CQ_OK) {
    if (h0) {
      memcpy(s->h[0], h0, sizeof(float) * (size_t)BH);
    } else {
      memset(s->h[0], 0, sizeof(float) * (size_t)BH);
    }
    if (c0) {
      memcpy(s->c[0], c0, sizeof(float) * (size_t)BH);
    } else {
      memset(s->c[0], 0, sizeof(float) * (size_t)BH);
    }
  }
  for (int64_t step = 0; st == CQ_OK && step < T; step++) {
    const int64_t t = d ? T - 1 - step : step;
    const float *h = s->h[cur];
    float *hnew = s->h[1 - cur];
    st = cq_dynamic_op_run(op_hh, h, B, H, s->gh, GH, s->ws);
    if (st != CQ_OK) break;
    const float *gi = s->xw + t * B * GH;
    if (p->gru) {
      cq_gru_cell_forward(B, H, gi, s->gh, h, hnew, NULL, NULL);
    } else {
      cq_lstm_cell_forward(B, H, gi, s->gh, s->c[cur], s->c[1 - cur], hnew, NULL);
    }
    for (int64_t b = 0; b < B; b++) {
      memcpy(Y + (t * B + b) * DH + d * H, hnew + b * H, sizeof(float) * (size_t)H);
    }
    cur = 1 - cur;
  }
  if (st == CQ_OK) {
    memcpy(hn, s->h[cur], sizeof(float) * (size_t)BH);
    if (cn) memcpy(cn, s->c[cur], sizeof(float) * (size_t)BH);
  }
  cq_qgemm_dynamic_destroy(op_ih);
  cq_qgemm_dynamic_destroy(op_hh);
  return st;
}

static cq_status dyn_rnn_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                 int nout, cq_tensor **out) {
  const dyn_rnn_impl *p = m->impl;
  int64_t T = 0, B = 0;
  cq_status st = check_inputs(m, nin, in, &T, &B);
  if (st != CQ_OK) return st;
  const int lstm = !p->gru;
  const int64_t L = p->num_layers, D = dirs_of(p), H = p->hidden_size;
  const int64_t DH = D * H, BH = B * H;
  const int64_t yshape[3] = {p->batch_first ? B : T, p->batch_first ? T : B, DH};
  const int64_t hshape[3] = {L * D, B, H};
  cq_tensor *y = NULL, *hn = NULL, *cn = NULL;
  st = cq_ctx_tensor(ctx, CQ_F32, 3, yshape, &y);
  if (st == CQ_OK) st = cq_ctx_tensor(ctx, CQ_F32, 3, hshape, &hn);
  if (st == CQ_OK && lstm) st = cq_ctx_tensor(ctx, CQ_F32, 3, hshape, &cn);
  if (st != CQ_OK) return st;
  rnn_scratch s;
  st = scratch_alloc(p, T, B, &s);
  if (st != CQ_OK) return st;
  const float *X = in[0]->data;
  if (p->batch_first) {
    swap01(in[0]->data, s.xt, B, T, p->input_size);
    X = s.xt;
  }
  const float *h0 = nin >= 2 ? in[1]->data : NULL;
  const float *c0 = (lstm && nin >= 3) ? in[2]->data : NULL;
  float *ylast = p->batch_first ? s.ylast : y->data;
  float *hnd = hn->data, *cnd = cn ? cn->data : NULL;
  for (int64_t l = 0; st == CQ_OK && l < L; l++) {
    float *Y = l == L - 1 ? ylast : s.ybuf[l % 2];
    for (int64_t d = 0; st == CQ_OK && d < D; d++) {
      const int64_t k = l * D + d;
      st = run_direction(p, l, d, X, T, B, h0 ? h0 + k * BH : NULL, c0 ? c0 + k * BH : NULL, Y,
                         hnd + k * BH, cnd ? cnd + k * BH : NULL, &s);
    }
    X = Y;
  }
  if (st == CQ_OK && p->batch_first) swap01(s.ylast, y->data, T, B, DH);
  scratch_free(&s);
  if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
  out[0] = y;
  if (nout >= 2) out[1] = hn;
  if (nout >= 3) out[2] = cn;
  return CQ_OK;
}

/* ---- printing ------------------------------------------------------------------------------------ */

static void dyn_rnn_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const dyn_rnn_impl *p = m->impl;
  cq_strbuf_appendf(sb, "%lld, %lld", (long long)p->input_size, (long long)p->hidden_size);
  if (p->num_layers != 1) cq_strbuf_appendf(sb, ", num_layers=%lld", (long long)p->num_layers);
  if (p->batch_first) cq_strbuf_append(sb, ", batch_first=True");
  if (p->dropout != 0.0f) {
    cq_strbuf_append(sb, ", dropout=");
    cq_strbuf_append_pyfloat_f32(sb, p->dropout);
  }
  if (p->bidirectional) cq_strbuf_append(sb, ", bidirectional=True");
}

static const cq_module_type dyn_lstm_type = {
    .name = "DynamicQuantizedLSTM",
    .forward = dyn_rnn_forward,
    .extra_repr = dyn_rnn_extra_repr,
    .destroy_impl = dyn_rnn_destroy,
    .nin_min = 1, .nin_max = 3, .nout_min = 1, .nout_max = 3,
};

static const cq_module_type dyn_gru_type = {
    .name = "DynamicQuantizedGRU",
    .forward = dyn_rnn_forward,
    .extra_repr = dyn_rnn_extra_repr,
    .destroy_impl = dyn_rnn_destroy,
    .nin_min = 1, .nin_max = 2, .nout_min = 1, .nout_max = 2,
};

/* ---- reading the float module ---------------------------------------------------------------------- */

static const cq_tensor *own_tensor(const cq_module *m, const char *name) {
  for (int i = 0; i < m->ntensors; i++) {
    if (strcmp(m->tensors[i].name, name) == 0) return m->tensors[i].tensor;
  }
  return NULL;
}

static void param_name(char *buf, size_t cap, const char *kind, int64_t l, int64_t d) {
  snprintf(buf, cap, "%s_l%lld%s", kind, (long long)l, d ? "_reverse" : "");
}

/* The options of a float nn.LSTM / nn.GRU, checked against its parameters' shapes. */
static cq_status describe_float_rnn(const cq_module *m, dyn_rnn_impl *p, int *bias) {
  const char *name = m->type->name;
  cq_rnn_options o;
  int is_gru = 0;
  cq_status st = cq_rnn_describe(m, &o, &is_gru);
  if (st != CQ_OK) return st;
  const cq_tensor *wih = own_tensor(m, "weight_ih_l0"), *whh = own_tensor(m, "weight_hh_l0");
  const int64_t G = p->gru ? 3 : 4;
  if (is_gru != p->gru || !wih || !whh || wih->ndim != 2 || whh->ndim != 2 ||
      wih->shape[0] != G * o.hidden_size || whh->shape[0] != G * o.hidden_size) {
    return cq_fail(CQ_EINVAL, "%s: weight_ih_l0 / weight_hh_l0 do not match its options", name);
  }
  p->input_size = o.input_size;
  p->hidden_size = o.hidden_size;
  p->num_layers = o.num_layers;
  p->bidirectional = o.bidirectional;
  p->batch_first = o.batch_first;
  p->dropout = o.dropout;
  *bias = o.bias;
  return CQ_OK;
}

/* ---- construction ---------------------------------------------------------------------------------- */

/* Observes, quantizes and packs one weight matrix with its bias; adds the int8 weight as buffer
 * `wname`. The packed copy goes to *packed. */
static cq_status convert_matrix(cq_module *qm, const cq_observer_config *cfg,
                                const cq_qparams *given, const cq_tensor *w, const cq_tensor *b,
                                const char *wname, cq_backend engine, cq_qgemm_packed **packed) {
  cq_qparams wq;
  cq_status st = given ? cq_qparams_copy(&wq, given)
                       : cq_dynamic_weight_observe(cfg, w->data, w->shape[0], w->shape[1], &wq);
  if (st != CQ_OK) return cq_fail_context(st, "%s", wname);
  cq_tensor *qw = NULL;
  st = cq_dynamic_weight_quantize(w->data, w->shape[0], w->shape[1], &wq, engine, &qw);
  cq_qparams_release(&wq);
  if (st != CQ_OK) return cq_fail_context(st, "%s", wname);
  st = cq_dynamic_weight_pack(qw, b->data, packed);
  if (st != CQ_OK) {
    cq_tensor_free(qw);
    return cq_fail_context(st, "%s", wname);
  }
  return cq_module_add_buffer(qm, wname, qw);
}

static cq_status copy_bias(cq_module *qm, const cq_tensor *b, const char *name) {
  cq_tensor *t = NULL;
  cq_status st = cq_tensor_create(&t, CQ_F32, 1, b->shape);
  if (st != CQ_OK) return st;
  memcpy(t->data, b->data, cq_tensor_nbytes(b));
  return cq_module_add_buffer(qm, name, t);
}

static cq_status build_dynamic_rnn(cq_module **out, const cq_module *float_rnn,
                                   const cq_qspec *weight_spec, const cq_qparams *const *given,
                                   int ngiven, cq_backend engine) {
  *out = NULL;
  if (!float_rnn) return cq_fail(CQ_EINVAL, "dynamic RNN: the float module is NULL");
  const int gru = strcmp(float_rnn->type->name, "GRU") == 0;
  if (!gru && strcmp(float_rnn->type->name, "LSTM") != 0) {
    return cq_fail(CQ_EINVAL,
                   "nn.quantized.dynamic.RNNBase.from_float only works for nn.LSTM and nn.GRU, "
                   "got %s",
                   float_rnn->type->name);
  }
  const char *who = gru ? "nn.quantized.dynamic.GRU" : "nn.quantized.dynamic.LSTM";
  if ((unsigned)engine >= CQ_BACKEND_COUNT) {
    return cq_fail(CQ_EINVAL, "%s: unknown quantized engine %d", who, (int)engine);
  }
  cq_observer_config cfg;
  cq_status st = cq_dynamic_weight_config(weight_spec, who, 1, &cfg);
  if (st != CQ_OK) return st;
  dyn_rnn_impl *p = cq_calloc_for(1, sizeof *p, who);
  if (!p) return CQ_ENOMEM;
  p->gru = gru;
  p->engine = engine;
  int bias = 0;
  st = describe_float_rnn(float_rnn, p, &bias);
  if (st == CQ_OK && !bias) {
    st = cq_fail(CQ_EUNSUPPORTED,
                 "%s: dynamic quantized LSTM/GRU need bias=True (PyTorch's from_float asserts "
                 "mod.bias)",
                 who);
  }
  const int64_t n = 2 * p->num_layers * dirs_of(p);
  if (st == CQ_OK && given && ngiven != n) {
    st = cq_fail(CQ_EINVAL, "%s: %d weight qparams given, the module has %lld weight matrices",
                 who, ngiven, (long long)n);
  }
  for (int64_t i = 0; st == CQ_OK && given && i < n; i++) {
    const cq_qparams *q = given[i];
    if (!q || q->dtype != CQ_QINT8 || q->count != 1 || q->qscheme != CQ_PER_TENSOR_AFFINE) {
      st = cq_fail(CQ_EINVAL, "%s: weight matrix %lld needs per-tensor qint8 qparams", who,
                   (long long)i);
    }
  }
  if (st == CQ_OK) {
    p->packed = cq_calloc_for((size_t)n, sizeof *p->packed, "packed RNN weights");
    if (!p->packed) st = CQ_ENOMEM;
  }
  if (st != CQ_OK) {
    dyn_rnn_destroy(p);
    return st;
  }
  p->npacked = n;
  cq_module *qm = NULL;
  st = cq_module_new(gru ? &dyn_gru_type : &dyn_lstm_type, p, &qm);
  if (st != CQ_OK) return st;
  qm->training = 0; /* PyTorch sets training=False in RNNBase.__init__ */
  for (int64_t l = 0; st == CQ_OK && l < p->num_layers; l++) {
    for (int64_t d = 0; st == CQ_OK && d < dirs_of(p); d++) {
      const int64_t k = l * dirs_of(p) + d;
      char wih[64], whh[64], bih[64], bhh[64];
      param_name(wih, sizeof wih, "weight_ih", l, d);
      param_name(whh, sizeof whh, "weight_hh", l, d);
      param_name(bih, sizeof bih, "bias_ih", l, d);
      param_name(bhh, sizeof bhh, "bias_hh", l, d);
      const cq_tensor *Wih = own_tensor(float_rnn, wih), *Whh = own_tensor(float_rnn, whh);
      const cq_tensor *Bih = own_tensor(float_rnn, bih), *Bhh = own_tensor(float_rnn, bhh);
      const int64_t GH = gates_of(p) * p->hidden_size;
      if (!Wih || !Whh || !Bih || !Bhh || Wih->ndim != 2 || Wih->shape[0] != GH ||
          Wih->shape[1] != layer_in(p, l) || Whh->ndim != 2 || Whh->shape[0] != GH ||
          Whh->shape[1] != p->hidden_size || Bih->ndim != 1 || Bih->shape[0] != GH ||
          Bhh->ndim != 1 || Bhh->shape[0] != GH) {
        st = cq_fail(CQ_EINVAL, "%s: the parameters of layer %lld%s are missing or misshapen",
                     who, (long long)l, d ? " (reverse)" : "");
        break;
      }
      st = convert_matrix(qm, &cfg, given ? given[2 * k] : NULL, Wih, Bih, wih, engine,
                          &p->packed[2 * k]);
      if (st == CQ_OK) {
        st = convert_matrix(qm, &cfg, given ? given[2 * k + 1] : NULL, Whh, Bhh, whh, engine,
                            &p->packed[2 * k + 1]);
      }
      if (st == CQ_OK) st = copy_bias(qm, Bih, bih);
      if (st == CQ_OK) st = copy_bias(qm, Bhh, bhh);
    }
  }
  if (st != CQ_OK) {
    cq_module_free(qm);
    return st;
  }
  *out = qm;
  return CQ_OK;
}

cq_status cq_qmodule_dynamic_rnn(cq_module **out, const cq_module *float_rnn,
                                 const cq_qspec *weight_spec, cq_backend engine) {
  return build_dynamic_rnn(out, float_rnn, weight_spec, NULL, 0, engine);
}

cq_status cq_qmodule_dynamic_rnn_with_qparams(cq_module **out, const cq_module *float_rnn,
                                              const cq_qparams *const *weight_qparams, int n,
                                              cq_backend engine) {
  if (!weight_qparams) {
    if (out) *out = NULL;
    return cq_fail(CQ_EINVAL, "dynamic RNN: no weight qparams given");
  }
  return build_dynamic_rnn(out, float_rnn, NULL, weight_qparams, n, engine);
}

int cq_qmodule_describe_dynamic_rnn(const cq_module *m, cq_qmodule_info *info) {
  if (m->type != &dyn_lstm_type && m->type != &dyn_gru_type) return 0;
  const dyn_rnn_impl *p = m->impl;
  *info = (cq_qmodule_info){0};
  info->has_engine = 1;
  info->engine = p->engine;
  info->is_gru = p->gru;
  info->rnn.input_size = p->input_size;
  info->rnn.hidden_size = p->hidden_size;
  info->rnn.num_layers = p->num_layers;
  info->rnn.bias = 1;
  info->rnn.batch_first = p->batch_first;
  info->rnn.bidirectional = p->bidirectional;
  info->rnn.dropout = p->dropout;
  return 1;
}

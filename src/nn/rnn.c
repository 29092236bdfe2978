/* nn.LSTM and nn.GRU: multi-layer, optionally bidirectional recurrent layers with forward and
 * backward through time.
 *
 * Parameters are registered in PyTorch's state_dict order: for each layer l, for each direction
 * (forward, then "_reverse"): weight_ih_l{l}[G*H, in_l], weight_hh_l{l}[G*H, H] and, with bias,
 * bias_ih_l{l}[G*H], bias_hh_l{l}[G*H] (G = 4 for LSTM, 3 for GRU; in_l = input_size for layer 0,
 * D*H above it). All start as U(-1/sqrt(H), 1/sqrt(H)).
 *
 * Forward takes (input[, h0[, c0]]) and gives (output, h_n[, c_n]) with PyTorch's shapes: input
 * [T, B, I] ([B, T, I] with batch_first) or unbatched [T, I]; h0 / c0 / h_n / c_n [L*D, B, H]
 * ([L*D, H] unbatched); output [T, B, D*H] ([B, T, D*H] with batch_first, [T, D*H] unbatched).
 * A missing h0 / c0 is zeros (an LSTM given h0 alone takes c0 = 0).
 *
 * Internally every layer works time-major: the input projection x W_ih^T + b_ih of a whole layer is
 * one GEMM, then each step adds h W_hh^T + b_hh and applies the gate math of nn/rnn_cells.h. In
 * training mode with dropout > 0, the output of every layer but the last goes through dropout
 * (scaled by 1/(1-p); p = 1 zeroes it). With gradients enabled the forward keeps each layer's
 * input, the dropout masks and per step the activated gates and the states entering the step; the
 * backward runs through time in reverse and does the weight gradients of a layer as two GEMMs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "core/rng.h"
#include "cquant/modules.h"
#include "kernels/fgemm/sgemm.h"
#include "nn/init.h"
#include "nn/layers.h"
#include "nn/module_impl.h"
#include "nn/rnn_cells.h"

typedef struct rnn_impl {
  int gru; /* 0: LSTM, 1: GRU */
  int64_t input_size, hidden_size, num_layers;
  int bias, batch_first, bidirectional;
  float dropout;
} rnn_impl;

static int64_t rnn_gates(const rnn_impl *p) { return p->gru ? 3 : 4; }
static int64_t rnn_dirs(const rnn_impl *p) { return p->bidirectional ? 2 : 1; }
static int64_t rnn_layer_in(const rnn_impl *p, int64_t l) {
  return l == 0 ? p->input_size : rnn_dirs(p) * p->hidden_size;
}

/* The parameters of (layer, direction) k = l * D + d. */
typedef struct rnn_weights {
  cq_named_tensor *w_ih, *w_hh, *b_ih, *b_hh; /* biases NULL without bias */
} rnn_weights;

static rnn_weights rnn_get_weights(cq_module *m, int64_t k) {
  const rnn_impl *p = m->impl;
  const int64_t per = p->bias ? 4 : 2;
  rnn_weights w;
  w.w_ih = &m->tensors[k * per];
  w.w_hh = &m->tensors[k * per + 1];
  w.b_ih = p->bias ? &m->tensors[k * per + 2] : NULL;
  w.b_hh = p->bias ? &m->tensors[k * per + 3] : NULL;
  return w;
}

/* ---- memory plans: many float arrays carved from one zeroed block ----------------------------- */

typedef struct mem_plan {
  size_t total; /* floats */
  int overflow;
} mem_plan;

/* Reserves a*b*c floats; returns the offset. */
static size_t plan_take(mem_plan *pl, int64_t a, int64_t b, int64_t c) {
  size_t n, off = pl->total;
  if (a < 0 || b < 0 || c < 0 || __builtin_mul_overflow((size_t)a, (size_t)b, &n) ||
      __builtin_mul_overflow(n, (size_t)c, &n) || __builtin_add_overflow(pl->total, n, &pl->total)) {
    pl->overflow = 1;
  }
  return off;
}

static float *plan_alloc(const mem_plan *pl, const cq_module *m, const char *what) {
  if (pl->overflow || pl->total > CQ_TENSOR_MAX_BYTES / sizeof(float)) {
    cq_module_fail(m, CQ_ENOMEM, "%s would need more than %llu bytes", what,
                   (unsigned long long)CQ_TENSOR_MAX_BYTES);
    return NULL;
  }
  return cq_calloc_for(pl->total, sizeof(float), what);
}

/* What forward keeps for backward. Indexing: layer l, (layer, direction) k = l * D + d; time t.
 * Every per-step array is indexed by time (not by step), so the reverse direction lines up with
 * the layer input. */
typedef struct rnn_saved {
  int64_t T, B;
  int unbatched;
  float *mem;   /* one block holding every array below */
  float **tab;  /* the pointer tables below, one allocation */
  float **x;    /* [L] layer inputs, time-major [T, B, in_l] (after dropout for l > 0) */
  float **mask; /* [L] dropout multipliers applied to layer l's output [T, B, D*H]; NULL if none */
  float **act;  /* [L*D] activated gates [T, B, G*H] */
  float **hprev; /* [L*D] hidden state entering the step at time t [T, B, H] */
  float **cprev; /* LSTM [L*D]: cell state entering time t [T, B, H] */
  float **aux;   /* [L*D] LSTM: cell state after time t; GRU: n-column of gh (W_hn h + b_hn) */
} rnn_saved;

static void rnn_saved_free(void *ptr) {
  rnn_saved *sv = ptr;
  if (!sv) return;
  cq_free(sv->mem);
  cq_free(sv->tab);
  cq_free(sv);
}

/* Lays the arrays out in plan order; assigns the pointers when `base` is non-NULL (first call
 * plans with base NULL, second assigns). Layer inputs always; masks with `drop`; the per-step
 * arrays only with `keep` (gradients enabled). */
static void rnn_saved_layout(const rnn_impl *p, rnn_saved *sv, int keep, int drop, mem_plan *pl,
                             float *base) {
  const int64_t L = p->num_layers, D = rnn_dirs(p), H = p->hidden_size, GH = rnn_gates(p) * H;
  const int64_t T = sv->T, B = sv->B;
  for (int64_t l = 0; l < L; l++) {
    const size_t ox = plan_take(pl, T, B, rnn_layer_in(p, l));
    const int has_mask = drop && l < L - 1;
    const size_t om = has_mask ? plan_take(pl, T, B, D * H) : 0;
    if (base) {
      sv->x[l] = base + ox;
      sv->mask[l] = has_mask ? base + om : NULL;
    }
  }
  for (int64_t k = 0; keep && k < L * D; k++) {
    const size_t oa = plan_take(pl, T, B, GH);
    const size_t oh = plan_take(pl, T, B, H);
    const size_t oc = p->gru ? 0 : plan_take(pl, T, B, H);
    const size_t ou = plan_take(pl, T, B, H);
    if (base) {
      sv->act[k] = base + oa;
      sv->hprev[k] = base + oh;
      sv->cprev[k] = p->gru ? NULL : base + oc;
      sv->aux[k] = base + ou;
    }
  }
}

static rnn_saved *rnn_saved_new(const cq_module *m, int64_t T, int64_t B, int keep, int drop) {
  const rnn_impl *p = m->impl;
  const int64_t L = p->num_layers, D = rnn_dirs(p);
  rnn_saved *sv = cq_calloc_for(1, sizeof *sv, "LSTM/GRU state");
  if (!sv) return NULL;
  sv->T = T;
  sv->B = B;
  sv->tab = cq_calloc_for((size_t)(2 * L + 4 * L * D), sizeof(float *), "LSTM/GRU state tables");
  if (!sv->tab) {
    rnn_saved_free(sv);
    return NULL;
  }
  sv->x = sv->tab;
  sv->mask = sv->x + L;
  sv->act = sv->mask + L;
  sv->hprev = sv->act + L * D;
  sv->cprev = sv->hprev + L * D;
  sv->aux = sv->cprev + L * D;
  mem_plan pl = {0, 0};
  rnn_saved_layout(p, sv, keep, drop, &pl, NULL);
  sv->mem = plan_alloc(&pl, m, "the LSTM/GRU state");
  if (!sv->mem) {
    rnn_saved_free(sv);
    return NULL;
  }
  mem_plan again = {0, 0};
  rnn_saved_layout(p, sv, keep, drop, &again, sv->mem);
  return sv;
}

/* ---- layout helpers ------------------------------------------------------------------------------ */

/* [A, C, F] -> [C, A, F] (swaps the two leading dimensions: batch-first <-> time-major). */
static void swap01(const float *src, float *dst, int64_t a, int64_t c, int64_t f) {
  for (int64_t i = 0; i < a; i++) {
    for (int64_t j = 0; j < c; j++) {
      memcpy(dst + (j * a + i) * f, src + (i * c + j) * f, sizeof(float) * (size_t)f);
    }
  }
}

/* rows x n matrix whose every row is `bias` (or zeros when bias is NULL). */
static void fill_rows(float *dst, int64_t rows, int64_t n, const float *bias) {
  if (!bias) {
    memset(dst, 0, sizeof(float) * (size_t)rows * (size_t)n);
    return;
  }
  for (int64_t r = 0; r < rows; r++) memcpy(dst + r * n, bias, sizeof(float) * (size_t)n);
}

/* bias_grad[j] += sum over rows of g[r, j]. */
static void add_colsum(float *bias_grad, const float *g, int64_t rows, int64_t n) {
  for (int64_t r = 0; r < rows; r++) {
    const float *row = g + r * n;
    for (int64_t j = 0; j < n; j++) bias_grad[j] += row[j];
  }
}

/* ---- forward ------------------------------------------------------------------------------------- */

static const char *hidden_label(const rnn_impl *p, int which) {
  if (p->gru) return "hidden";
  return which == 0 ? "hidden[0]" : "hidden[1]";
}

static cq_status check_state(cq_module *m, const cq_tensor *s, int which, int unbatched,
                             int64_t B) {
  const rnn_impl *p = m->impl;
  const char *name = which == 0 ? "h0" : "c0";
  if (s->dtype != CQ_F32) return cq_module_fail(m, CQ_EINVAL, "%s must be float32", name);
  const int want_dim = unbatched ? 2 : 3;
  if (s->ndim != want_dim) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "For %s input, %s should also be %d-D but got a %d-D tensor",
                          unbatched ? "unbatched 2-D" : "batched 3-D", name, want_dim, s->ndim);
  }
  const int64_t LD = p->num_layers * rnn_dirs(p), H = p->hidden_size;
  const int ok = unbatched ? (s->shape[0] == LD && s->shape[1] == H)
                           : (s->shape[0] == LD && s->shape[1] == B && s->shape[2] == H);
  if (!ok) {
    char got[128];
    cq_shape_str(s->ndim, s->shape, got, sizeof got);
    if (unbatched) {
      return cq_module_fail(m, CQ_ESHAPE, "Expected %s size (%lld, %lld), got %s",
                            hidden_label(p, which), (long long)LD, (long long)H, got);
    }
    return cq_module_fail(m, CQ_ESHAPE, "Expected %s size (%lld, %lld, %lld), got %s",
                          hidden_label(p, which), (long long)LD, (long long)B, (long long)H, got);
  }
  return CQ_OK;
}

/* Validates (input[, h0[, c0]]) and finds T and B. */
static cq_status check_inputs(cq_module *m, int nin, cq_tensor *const *in, int64_t *T, int64_t *B,
                              int *unbatched) {
  const rnn_impl *p = m->impl;
  const cq_tensor *x = in[0];
  if (x->dtype != CQ_F32) return cq_module_fail(m, CQ_EINVAL, "input must be float32");
  if (x->ndim != 2 && x->ndim != 3) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "input must have 3 dimensions (or 2 for unbatched input), got %d",
                          x->ndim);
  }
  if (x->shape[x->ndim - 1] != p->input_size) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "input.size(-1) must be equal to input_size. Expected %lld, got %lld",
                          (long long)p->input_size, (long long)x->shape[x->ndim - 1]);
  }
  *unbatched = x->ndim == 2;
  if (*unbatched) {
    *T = x->shape[0];
    *B = 1;
  } else {
    *T = p->batch_first ? x->shape[1] : x->shape[0];
    *B = p->batch_first ? x->shape[0] : x->shape[1];
  }
  if (*T == 0) return cq_module_fail(m, CQ_ESHAPE, "Expected sequence length to be larger than 0 in RNN");
  for (int i = 1; i < nin; i++) {
    cq_status st = check_state(m, in[i], i - 1, *unbatched, *B);
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

/* Dropout on y [n] in place; stores the multipliers in mask when given. */
static void apply_dropout(float *y, float *mask, int64_t n, float p) {
  cq_rng *rng = cq_default_rng();
  const float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
  for (int64_t i = 0; i < n; i++) {
    const float keep = (p < 1.0f && cq_rng_uniform(rng, 0.0f, 1.0f) < 1.0f - p) ? scale : 0.0f;
    y[i] = y[i] * keep;
    if (mask) mask[i] = keep;
  }
}

static cq_status rnn_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                             cq_tensor **out) {
  const rnn_impl *p = m->impl;
  int64_t T = 0, B = 0;
  int unbatched = 0;
  cq_status st = check_inputs(m, nin, in, &T, &B, &unbatched);
  if (st != CQ_OK) return st;
  const int lstm = !p->gru;
  const int64_t L = p->num_layers, D = rnn_dirs(p), H = p->hidden_size, GH = rnn_gates(p) * H;
  const int64_t DH = D * H, BH = B * H, TB = T * B;
  const int keep = cq_ctx_grad_enabled(ctx) != 0;
  const int drop = m->training && p->dropout > 0.0f && L > 1;
  const int transpose = p->batch_first && !unbatched;

  /* outputs */
  cq_tensor *y = NULL, *hn = NULL, *cn = NULL;
  int64_t yshape[3], hshape[3];
  if (unbatched) {
    yshape[0] = T;
    yshape[1] = DH;
    hshape[0] = L * D;
    hshape[1] = H;
  } else {
    yshape[0] = p->batch_first ? B : T;
    yshape[1] = p->batch_first ? T : B;
    yshape[2] = DH;
    hshape[0] = L * D;
    hshape[1] = B;
    hshape[2] = H;
  }
  const int nd = unbatched ? 2 : 3;
  st = cq_ctx_tensor(ctx, CQ_F32, nd, yshape, &y);
  if (st == CQ_OK) st = cq_ctx_tensor(ctx, CQ_F32, nd, hshape, &hn);
  if (st == CQ_OK && lstm) st = cq_ctx_tensor(ctx, CQ_F32, nd, hshape, &cn);
  if (st != CQ_OK) return st;

  rnn_saved *sv = rnn_saved_new(m, T, B, keep, drop);
  if (!sv) return CQ_ENOMEM;
  sv->unbatched = unbatched;
  mem_plan pl = {0, 0};
  const size_t o_xw = plan_take(&pl, TB, GH, 1);
  const size_t o_gh = plan_take(&pl, B, GH, 1);
  const size_t o_h = plan_take(&pl, 2, BH, 1);
  const size_t o_c = plan_take(&pl, 2, BH, 1);
  const size_t o_y = plan_take(&pl, transpose ? TB : 0, DH, 1);
  float *scratch = plan_alloc(&pl, m, "LSTM/GRU scratch");
  if (!scratch) {
    rnn_saved_free(sv);
    return CQ_ENOMEM;
  }
  float *xw = scratch + o_xw, *gh = scratch + o_gh;
  float *hbuf[2] = {scratch + o_h, scratch + o_h + BH};
  float *cbuf[2] = {scratch + o_c, scratch + o_c + BH};
  float *ylast = transpose ? scratch + o_y : y->data;

  const int64_t I = p->input_size;
  if (transpose) {
    swap01(in[0]->data, sv->x[0], B, T, I);
  } else {
    memcpy(sv->x[0], in[0]->data, sizeof(float) * (size_t)(TB * I));
  }
  const float *h0 = nin >= 2 ? in[1]->data : NULL;
  const float *c0 = (lstm && nin >= 3) ? in[2]->data : NULL;
  float *hnd = hn->data, *cnd = cn ? cn->data : NULL;

  for (int64_t l = 0; l < L; l++) {
    const int64_t in_l = rnn_layer_in(p, l);
    const float *X = sv->x[l];
    float *Y = l < L - 1 ? sv->x[l + 1] : ylast;
    for (int64_t d = 0; d < D; d++) {
      const int64_t k = l * D + d;
      const rnn_weights w = rnn_get_weights(m, k);
      const float *w_ih = w.w_ih->tensor->data, *w_hh = w.w_hh->tensor->data;
      const float *b_ih = w.b_ih ? w.b_ih->tensor->data : NULL;
      const float *b_hh = w.b_hh ? w.b_hh->tensor->data : NULL;
      /* input projection of the whole sequence: xw = X W_ih^T + b_ih */
      fill_rows(xw, TB, GH, b_ih);
      cq_sgemm(0, 1, TB, GH, in_l, 1.0f, X, in_l, w_ih, in_l, b_ih ? 1.0f : 0.0f, xw, GH);
      int cur = 0;
      if (h0) {
        memcpy(hbuf[0], h0 + k * BH, sizeof(float) * (size_t)BH);
      } else {
        memset(hbuf[0], 0, sizeof(float) * (size_t)BH);
      }
      if (c0) {
        memcpy(cbuf[0], c0 + k * BH, sizeof(float) * (size_t)BH);
      } else {
        memset(cbuf[0], 0, sizeof(float) * (size_t)BH);
      }
      for (int64_t s = 0; s < T; s++) {
        const int64_t t = d ? T - 1 - s : s;
        const float *h = hbuf[cur], *c = cbuf[cur];
        float *hnew = hbuf[1 - cur], *cnew = cbuf[1 - cur];
        fill_rows(gh, B, GH, b_hh);
        cq_sgemm(0, 1, B, GH, H, 1.0f, h, H, w_hh, H, b_hh ? 1.0f : 0.0f, gh, GH);
        const float *gi = xw + t * B * GH;
        float *act = keep ? sv->act[k] + t * B * GH : NULL;
        if (keep) memcpy(sv->hprev[k] + t * BH, h, sizeof(float) * (size_t)BH);
        if (lstm) {
          if (keep) memcpy(sv->cprev[k] + t * BH, c, sizeof(float) * (size_t)BH);
          cq_lstm_cell_forward(B, H, gi, gh, c, cnew, hnew, act);
          if (keep) memcpy(sv->aux[k] + t * BH, cnew, sizeof(float) * (size_t)BH);
        } else {
          cq_gru_cell_forward(B, H, gi, gh, h, hnew, act, keep ? sv->aux[k] + t * BH : NULL);
        }
        for (int64_t b = 0; b < B; b++) {
          memcpy(Y + (t * B + b) * DH + d * H, hnew + b * H, sizeof(float) * (size_t)H);
        }
        cur = 1 - cur;
      }
      memcpy(hnd + k * BH, hbuf[cur], sizeof(float) * (size_t)BH);
      if (lstm) memcpy(cnd + k * BH, cbuf[cur], sizeof(float) * (size_t)BH);
    }
    if (drop && l < L - 1) apply_dropout(Y, keep ? sv->mask[l] : NULL, TB * DH, p->dropout);
  }
  if (transpose) swap01(ylast, y->data, T, B, DH);
  cq_free(scratch);

  if (keep) {
    cq_ctx_save(ctx, sv, rnn_saved_free);
  } else {
    rnn_saved_free(sv);
  }
  out[0] = y;
  if (nout >= 2) out[1] = hn;
  if (nout >= 3) out[2] = cn;
  return CQ_OK;
}

/* ---- backward ------------------------------------------------------------------------------------ */

static cq_status rnn_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                              cq_tensor *const *gout, cq_tensor **gin) {
  const rnn_impl *p = m->impl;
  const rnn_saved *sv = e->saved;
  if (!sv) return cq_module_fail(m, CQ_ESTATE, "backward without a recorded forward");
  const int lstm = !p->gru;
  const int64_t T = sv->T, B = sv->B;
  const int64_t L = p->num_layers, D = rnn_dirs(p), H = p->hidden_size, GH = rnn_gates(p) * H;
  const int64_t DH = D * H, BH = B * H, TB = T * B, I = p->input_size;
  const int transpose = p->batch_first && !sv->unbatched;

  cq_tensor *gx = NULL, *gh0 = NULL, *gc0 = NULL;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, e->in[0]->ndim, e->in[0]->shape, &gx);
  if (st == CQ_OK && e->nin >= 2) st = cq_ctx_tensor(ctx, CQ_F32, e->in[1]->ndim, e->in[1]->shape, &gh0);
  if (st == CQ_OK && lstm && e->nin >= 3) {
    st = cq_ctx_tensor(ctx, CQ_F32, e->in[2]->ndim, e->in[2]->shape, &gc0);
  }
  if (st != CQ_OK) return st;
  const float *dhn = e->nout >= 2 ? gout[1]->data : NULL;
  const float *dcn = (lstm && e->nout >= 3) ? gout[2]->data : NULL;

  const int64_t maxin = I > DH ? I : DH;
  mem_plan pl = {0, 0};
  const size_t o_dy = plan_take(&pl, TB, DH, 1);
  const size_t o_dx = plan_take(&pl, TB, maxin, 1);
  const size_t o_dxw = plan_take(&pl, TB, GH, 1);
  const size_t o_dhw = plan_take(&pl, lstm ? 0 : TB, GH, 1);
  const size_t o_dh = plan_take(&pl, 3, BH, 1);
  float *scratch = plan_alloc(&pl, m, "LSTM/GRU backward scratch");
  if (!scratch) return CQ_ENOMEM;
  float *dY = scratch + o_dy, *dX = scratch + o_dx, *dXW = scratch + o_dxw;
  float *dHW = lstm ? dXW : scratch + o_dhw;
  float *dh = scratch + o_dh, *dc = dh + BH, *dtmp = dc + BH;

  if (transpose) {
    swap01(gout[0]->data, dY, B, T, DH);
  } else {
    memcpy(dY, gout[0]->data, sizeof(float) * (size_t)(TB * DH));
  }
  for (int64_t l = L - 1; l >= 0; l--) {
    const int64_t in_l = rnn_layer_in(p, l);
    const float *X = sv->x[l];
    memset(dX, 0, sizeof(float) * (size_t)(TB * in_l));
    for (int64_t d = 0; d < D; d++) {
      const int64_t k = l * D + d;
      const rnn_weights w = rnn_get_weights(m, k);
      const float *w_ih = w.w_ih->tensor->data, *w_hh = w.w_hh->tensor->data;
      if (dhn) {
        memcpy(dh, dhn + k * BH, sizeof(float) * (size_t)BH);
      } else {
        memset(dh, 0, sizeof(float) * (size_t)BH);
      }
      if (dcn) {
        memcpy(dc, dcn + k * BH, sizeof(float) * (size_t)BH);
      } else {
        memset(dc, 0, sizeof(float) * (size_t)BH);
      }
      for (int64_t s = T - 1; s >= 0; s--) {
        const int64_t t = d ? T - 1 - s : s;
        for (int64_t b = 0; b < B; b++) {
          const float *src = dY + (t * B + b) * DH + d * H;
          float *dst = dh + b * H;
          for (int64_t j = 0; j < H; j++) dst[j] += src[j];
        }
        float *dgi = dXW + t * B * GH, *dgh = dHW + t * B * GH;
        if (lstm) {
          cq_lstm_cell_backward(B, H, sv->act[k] + t * B * GH, sv->cprev[k] + t * BH,
                                sv->aux[k] + t * BH, dh, dc, dgi);
          /* dh_prev = dgates W_hh */
          cq_sgemm(0, 0, B, H, GH, 1.0f, dgi, GH, w_hh, H, 0.0f, dh, H);
        } else {
          cq_gru_cell_backward(B, H, sv->act[k] + t * B * GH, sv->aux[k] + t * BH,
                               sv->hprev[k] + t * BH, dh, dgi, dgh, dtmp);
          memcpy(dh, dtmp, sizeof(float) * (size_t)BH);
          cq_sgemm(0, 0, B, H, GH, 1.0f, dgh, GH, w_hh, H, 1.0f, dh, H);
        }
      }
      if (gh0) memcpy((float *)gh0->data + k * BH, dh, sizeof(float) * (size_t)BH);
      if (gc0) memcpy((float *)gc0->data + k * BH, dc, sizeof(float) * (size_t)BH);
      /* weight gradients of the whole sequence */
      cq_sgemm(1, 0, GH, H, TB, 1.0f, dHW, GH, sv->hprev[k], H, 1.0f, w.w_hh->grad->data, H);
      cq_sgemm(1, 0, GH, in_l, TB, 1.0f, dXW, GH, X, in_l, 1.0f, w.w_ih->grad->data, in_l);
      if (w.b_ih) add_colsum(w.b_ih->grad->data, dXW, TB, GH);
      if (w.b_hh) add_colsum(w.b_hh->grad->data, dHW, TB, GH);
      /* gradient of the layer input */
      cq_sgemm(0, 0, TB, in_l, GH, 1.0f, dXW, GH, w_ih, in_l, 1.0f, dX, in_l);
    }
    if (l > 0) {
      const float *mask = sv->mask[l - 1];
      const int64_t n = TB * DH;
      if (mask) {
        for (int64_t i = 0; i < n; i++) dY[i] = dX[i] * mask[i];
      } else {
        memcpy(dY, dX, sizeof(float) * (size_t)n);
      }
    }
  }
  if (transpose) {
    swap01(dX, gx->data, T, B, I);
  } else {
    memcpy(gx->data, dX, sizeof(float) * (size_t)(TB * I));
  }
  cq_free(scratch);
  gin[0] = gx;
  if (e->nin >= 2) gin[1] = gh0;
  if (e->nin >= 3) gin[2] = gc0;
  return CQ_OK;
}

/* ---- printing ------------------------------------------------------------------------------------ */

static void rnn_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const rnn_impl *p = m->impl;
  cq_strbuf_appendf(sb, "%lld, %lld", (long long)p->input_size, (long long)p->hidden_size);
  if (p->num_layers != 1) cq_strbuf_appendf(sb, ", num_layers=%lld", (long long)p->num_layers);
  if (!p->bias) cq_strbuf_append(sb, ", bias=False");
  if (p->batch_first) cq_strbuf_append(sb, ", batch_first=True");
  if (p->dropout != 0.0f) {
    cq_strbuf_append(sb, ", dropout=");
    cq_strbuf_append_pyfloat_f32(sb, p->dropout);
  }
  if (p->bidirectional) cq_strbuf_append(sb, ", bidirectional=True");
}

/* ---- construction -------------------------------------------------------------------------------- */

static const cq_module_type lstm_type = {
    .name = "LSTM",
    .forward = rnn_forward,
    .backward = rnn_backward,
    .extra_repr = rnn_extra_repr,
    .nin_min = 1, .nin_max = 3, .nout_min = 1, .nout_max = 3,
};

static const cq_module_type gru_type = {
    .name = "GRU",
    .forward = rnn_forward,
    .backward = rnn_backward,
    .extra_repr = rnn_extra_repr,
    .nin_min = 1, .nin_max = 2, .nout_min = 1, .nout_max = 2,
};

cq_rnn_options cq_rnn_defaults(int64_t input_size, int64_t hidden_size) {
  cq_rnn_options o;
  memset(&o, 0, sizeof o);
  o.input_size = input_size;
  o.hidden_size = hidden_size;
  o.num_layers = 1;
  o.bias = 1;
  o.batch_first = 0;
  o.bidirectional = 0;
  o.dropout = 0.0f;
  return o;
}

static cq_status add_param(cq_module *m, const char *name, int64_t l, const char *suffix,
                           int64_t rows, int64_t cols, int ndim, double bound) {
  char key[64];
  snprintf(key, sizeof key, "%s_l%lld%s", name, (long long)l, suffix);
  const int64_t shape[2] = {rows, cols};
  cq_tensor *t = NULL;
  cq_status st = cq_tensor_create(&t, CQ_F32, ndim, shape);
  if (st != CQ_OK) return st;
  cq_init_uniform(t, bound);
  return cq_module_add_parameter(m, key, t);
}

static cq_status rnn_new(cq_module **out, const cq_rnn_options *o, int gru) {
  *out = NULL;
  const char *name = gru ? "GRU" : "LSTM";
  if (!o) return cq_fail(CQ_EINVAL, "%s: options is NULL", name);
  if (o->input_size < 0 || o->input_size > ((int64_t)1 << 40)) {
    return cq_fail(CQ_EINVAL, "%s: input_size %lld must be in [0, 2^40]", name,
                   (long long)o->input_size);
  }
  if (o->hidden_size <= 0 || o->hidden_size > ((int64_t)1 << 40)) {
    return cq_fail(CQ_EINVAL, "%s: hidden_size %lld must be in [1, 2^40]", name,
                   (long long)o->hidden_size);
  }
  if (o->num_layers < 1 || o->num_layers > (1 << 20)) {
    return cq_fail(CQ_EINVAL, "%s: num_layers %lld must be in [1, 2^20]", name,
                   (long long)o->num_layers);
  }
  if (!(o->dropout >= 0.0f && o->dropout <= 1.0f)) {
    return cq_fail(CQ_EINVAL,
                   "%s: dropout should be a number in range [0, 1] representing the probability "
                   "of an element being zeroed (got %g)",
                   name, (double)o->dropout);
  }
  if (o->dropout > 0.0f && o->num_layers == 1) {
    char buf[CQ_PYFLOAT_BUFSIZE + 32];
    cq_strbuf sb;
    cq_strbuf_init(&sb);
    cq_strbuf_append_pyfloat_f32(&sb, o->dropout);
    snprintf(buf, sizeof buf, "%s", cq_strbuf_str(&sb));
    cq_strbuf_release(&sb);
    cq_warn("dropout option adds dropout after all but last recurrent layer, so non-zero dropout "
            "expects num_layers greater than 1, but got dropout=%s and num_layers=1", buf);
  }
  rnn_impl *p = cq_calloc_for(1, sizeof *p, name);
  if (!p) return CQ_ENOMEM;
  p->gru = gru;
  p->input_size = o->input_size;
  p->hidden_size = o->hidden_size;
  p->num_layers = o->num_layers;
  p->bias = o->bias != 0;
  p->batch_first = o->batch_first != 0;
  p->bidirectional = o->bidirectional != 0;
  p->dropout = o->dropout;
  cq_module *m;
  cq_status st = cq_module_new(gru ? &gru_type : &lstm_type, p, &m);
  if (st != CQ_OK) return st;
  const int64_t H = p->hidden_size, GH = rnn_gates(p) * H, D = rnn_dirs(p);
  const double bound = cq_init_fan_in_bound(H);
  for (int64_t l = 0; l < p->num_layers && st == CQ_OK; l++) {
    for (int64_t d = 0; d < D && st == CQ_OK; d++) {
      const char *suffix = d ? "_reverse" : "";
      st = add_param(m, "weight_ih", l, suffix, GH, rnn_layer_in(p, l), 2, bound);
      if (st == CQ_OK) st = add_param(m, "weight_hh", l, suffix, GH, H, 2, bound);
      if (st == CQ_OK && p->bias) st = add_param(m, "bias_ih", l, suffix, GH, 0, 1, bound);
      if (st == CQ_OK && p->bias) st = add_param(m, "bias_hh", l, suffix, GH, 0, 1, bound);
    }
  }
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

cq_status cq_lstm(cq_module **out, const cq_rnn_options *options) {
  return rnn_new(out, options, 0);
}

cq_status cq_gru(cq_module **out, const cq_rnn_options *options) {
  return rnn_new(out, options, 1);
}

cq_status cq_rnn_describe(const cq_module *m, cq_rnn_options *options, int *is_gru) {
  if (m->type != &lstm_type && m->type != &gru_type) {
    return cq_fail(CQ_EINVAL, "%s is not an LSTM or GRU", m->type->name);
  }
  const rnn_impl *p = m->impl;
  options->input_size = p->input_size;
  options->hidden_size = p->hidden_size;
  options->num_layers = p->num_layers;
  options->bias = p->bias;
  options->batch_first = p->batch_first;
  options->bidirectional = p->bidirectional;
  options->dropout = p->dropout;
  *is_gru = p->gru;
  return CQ_OK;
}

/* The demo's two models, and the training / evaluation loops over a demo_split. */
#include <stdlib.h>
#include <string.h>

#include "demo_models.h"

#define LSTM_HIDDEN 128

const char *demo_model_name(demo_model_kind kind) { return kind == DEMO_CNN ? "cnn" : "lstm"; }

const char *demo_model_summary(demo_model_kind kind) {
  return kind == DEMO_CNN ? "CNN: (Conv-BN-ReLU-MaxPool) x2, Linear-ReLU-Linear"
                          : "LSTM row classifier: LSTM(28, 128) over the 28 rows, Linear head";
}

/* Appends the modules to a new Sequential; on failure frees everything (the container takes
 * ownership even when it fails, and the modules not yet handed over are freed here). */
static cq_status sequential_of(cq_module **out, int n, cq_module **mods, cq_status st) {
  if (st != CQ_OK) {
    for (int i = 0; i < n; i++) cq_module_free(mods[i]);
    return st;
  }
  return cq_sequential(out, n, mods);
}

static cq_status build_cnn(cq_module **out) {
  enum { N = 14 };
  cq_module *m[N] = {NULL};
  cq_conv_options c1 = cq_conv_defaults(1, 16, 3, 3), c2 = cq_conv_defaults(16, 32, 3, 3);
  c1.padding[0] = c1.padding[1] = c2.padding[0] = c2.padding[1] = 1;
  cq_pool_options pool = cq_pool_defaults(2, 2);
  cq_status st = cq_quant_stub(&m[0]);
  if (st == CQ_OK) st = cq_conv2d(&m[1], &c1);
  if (st == CQ_OK) st = cq_batchnorm2d(&m[2], 16);
  if (st == CQ_OK) st = cq_relu(&m[3]);
  if (st == CQ_OK) st = cq_maxpool2d(&m[4], &pool);
  if (st == CQ_OK) st = cq_conv2d(&m[5], &c2);
  if (st == CQ_OK) st = cq_batchnorm2d(&m[6], 32);
  if (st == CQ_OK) st = cq_relu(&m[7]);
  if (st == CQ_OK) st = cq_maxpool2d(&m[8], &pool);
  if (st == CQ_OK) st = cq_flatten(&m[9], 1, -1);
  if (st == CQ_OK) st = cq_linear(&m[10], 32 * 7 * 7, 128, 1);
  if (st == CQ_OK) st = cq_relu(&m[11]);
  if (st == CQ_OK) st = cq_linear(&m[12], 128, DEMO_CLASSES, 1);
  if (st == CQ_OK) st = cq_dequant_stub(&m[13]);
  return sequential_of(out, N, m, st);
}

static cq_status build_lstm(cq_module **out) {
  cq_module *g = NULL, *lstm = NULL, *flatten = NULL, *quant = NULL, *fc = NULL, *dequant = NULL;
  cq_rnn_options o = cq_rnn_defaults(28, LSTM_HIDDEN);
  o.batch_first = 1;
  cq_status st = cq_graph(&g, 1);
  if (st == CQ_OK) st = cq_lstm(&lstm, &o);
  if (st == CQ_OK) st = cq_flatten(&flatten, 0, 1);
  if (st == CQ_OK) st = cq_quant_stub(&quant);
  if (st == CQ_OK) st = cq_linear(&fc, LSTM_HIDDEN, DEMO_CLASSES, 1);
  if (st == CQ_OK) st = cq_dequant_stub(&dequant);
  if (st != CQ_OK) {
    cq_module_free(g);
    cq_module_free(lstm);
    cq_module_free(flatten);
    cq_module_free(quant);
    cq_module_free(fc);
    cq_module_free(dequant);
    return st;
  }
  /* forward(x): _, (h_n, _) = self.lstm(x); return dequant(fc(quant(flatten(h_n)))). Each
   * add_node takes its module, even on failure; the ones after a failure are freed here. */
  int x = 0, seq[3], h, q, y, z;
  st = cq_graph_add_node(g, "lstm", lstm, 1, &x, 3, seq);
  if (st == CQ_OK) st = cq_graph_add_node(g, "flatten", flatten, 1, &seq[1], 1, &h);
  else cq_module_free(flatten);
  if (st == CQ_OK) st = cq_graph_add_node(g, "quant", quant, 1, &h, 1, &q);
  else cq_module_free(quant);
  if (st == CQ_OK) st = cq_graph_add_node(g, "fc", fc, 1, &q, 1, &y);
  else cq_module_free(fc);
  if (st == CQ_OK) st = cq_graph_add_node(g, "dequant", dequant, 1, &y, 1, &z);
  else cq_module_free(dequant);
  if (st == CQ_OK) st = cq_graph_set_outputs(g, 1, &z);
  if (st == CQ_OK) st = cq_graph_set_name(g, "LSTMClassifier");
  if (st != CQ_OK) {
    cq_module_free(g);
    return st;
  }
  *out = g;
  return CQ_OK;
}

cq_status demo_build_model(demo_model_kind kind, cq_module **out) {
  *out = NULL;
  if (kind == DEMO_CNN) return build_cnn(out);
  if (kind == DEMO_LSTM) return build_lstm(out);
  return cq_fail(CQ_EINVAL, "demo: unknown model kind %d", (int)kind);
}

cq_status demo_fuse(demo_model_kind kind, cq_module *model, int qat) {
  if (kind != DEMO_CNN) return CQ_OK;
  static const char *const groups[3][3] = {{"1", "2", "3"}, {"5", "6", "7"}, {"10", "11", NULL}};
  static const int sizes[3] = {3, 3, 2};
  for (int i = 0; i < 3; i++) {
    cq_status st = qat ? cq_fuse_modules_qat(model, sizes[i], groups[i])
                       : cq_fuse_modules(model, sizes[i], groups[i]);
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

cq_status demo_set_qconfig(demo_model_kind kind, cq_module *model, const cq_qconfig *qconfig) {
  cq_status st = cq_module_set_qconfig(model, qconfig);
  if (st != CQ_OK || kind != DEMO_LSTM) return st;
  cq_qconfig none;
  memset(&none, 0, sizeof none); /* PyTorch's `model.lstm.qconfig = None` */
  cq_module *lstm = cq_module_find(model, "lstm");
  if (!lstm) return CQ_EINVAL;
  return cq_module_set_qconfig(lstm, &none);
}

cq_status demo_input(demo_model_kind kind, const demo_split *s, int64_t start, int64_t n,
                     cq_tensor **out) {
  float *data = s->images + start * DEMO_PIXELS;
  if (kind == DEMO_CNN) {
    const int64_t shape[4] = {n, 1, 28, 28};
    return cq_tensor_wrap(out, CQ_F32, 4, shape, data);
  }
  const int64_t shape[3] = {n, 28, 28};
  return cq_tensor_wrap(out, CQ_F32, 3, shape, data);
}

static int64_t argmax(const float *v, int n) {
  int64_t best = 0;
  for (int c = 1; c < n; c++) best = v[c] > v[best] ? c : best;
  return best;
}

cq_status demo_accuracy(demo_model_kind kind, cq_module *model, cq_ctx *ctx, const demo_split *s,
                        int64_t batch, demo_progress_fn progress, void *user, double *accuracy) {
  int64_t correct = 0;
  const int64_t total = (s->n + batch - 1) / batch;
  cq_module_train(model, 0);
  cq_ctx_set_grad(ctx, 0);
  for (int64_t start = 0, done = 0; start < s->n; start += batch) {
    const int64_t b = s->n - start < batch ? s->n - start : batch;
    cq_tensor *x = NULL, *logits = NULL;
    cq_status st = demo_input(kind, s, start, b, &x);
    if (st == CQ_OK) st = cq_module_forward1(model, ctx, x, &logits);
    if (st == CQ_OK && (logits->dtype != CQ_F32 || cq_tensor_numel(logits) != b * DEMO_CLASSES)) {
      st = cq_fail(CQ_ESHAPE, "demo: the %s model's output is not float logits [%lld, 10]",
                   demo_model_name(kind), (long long)b);
    }
    for (int64_t i = 0; st == CQ_OK && i < b; i++) {
      correct += argmax((const float *)logits->data + i * DEMO_CLASSES, DEMO_CLASSES) ==
                 s->labels[start + i];
    }
    cq_tensor_free(x);
    cq_ctx_reset(ctx);
    if (st != CQ_OK) return st;
    if (progress) progress(user, ++done, total);
  }
  *accuracy = s->n ? (double)correct / (double)s->n : 0.0;
  return CQ_OK;
}

/* Fisher-Yates with a fixed xorshift64 stream. */
static void shuffle(int64_t *order, int64_t n, uint64_t *state) {
  for (int64_t i = 0; i < n; i++) order[i] = i;
  for (int64_t i = n - 1; i > 0; i--) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    int64_t j = (int64_t)(*state % (uint64_t)(i + 1)), tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
}

/* One step: forward, cross-entropy, backward, optimizer step; *loss_value gets the loss. */
static cq_status train_step(demo_model_kind kind, cq_module *model, cq_module *loss_fn,
                            cq_ctx *ctx, cq_optimizer *opt, const demo_split *batch_data,
                            cq_tensor *one, double *loss_value) {
  cq_tensor *x = NULL, *y = NULL, *logits = NULL, *loss = NULL;
  const int64_t b = batch_data->n;
  cq_status st = demo_input(kind, batch_data, 0, b, &x);
  if (st == CQ_OK) st = cq_tensor_wrap(&y, CQ_I64, 1, &b, batch_data->labels);
  cq_ctx_set_grad(ctx, 1);
  if (st == CQ_OK) st = cq_module_forward1(model, ctx, x, &logits);
  cq_tensor *pair[2] = {logits, y};
  if (st == CQ_OK) st = cq_module_forward(loss_fn, ctx, 2, pair, 1, &loss);
  if (st == CQ_OK) {
    cq_optimizer_zero_grad(opt);
    st = cq_ctx_backward(ctx, loss, one, NULL, NULL);
  }
  if (st == CQ_OK) st = cq_optimizer_step(opt);
  if (st == CQ_OK) *loss_value = *(const float *)loss->data;
  cq_ctx_reset(ctx);
  cq_ctx_set_grad(ctx, 0);
  cq_tensor_free(x);
  cq_tensor_free(y);
  return st;
}

cq_status demo_train(demo_model_kind kind, cq_module *model, cq_ctx *ctx, cq_optimizer *opt,
                     const demo_split *s, int64_t batch, int64_t steps, uint64_t *shuffle_state,
                     demo_progress_fn progress, void *user, double *mean_loss) {
  if (batch < 1 || batch > s->n) {
    return cq_fail(CQ_EINVAL, "demo: batch %lld must be in [1, %lld] (the training images)",
                   (long long)batch, (long long)s->n);
  }
  cq_module *loss_fn = NULL;
  cq_tensor *one = NULL;
  int64_t *order = malloc(sizeof *order * (size_t)s->n);
  float *xb = malloc(sizeof(float) * (size_t)(batch * DEMO_PIXELS));
  int64_t *yb = malloc(sizeof(int64_t) * (size_t)batch);
  cq_status st = (order && xb && yb) ? CQ_OK : cq_fail(CQ_ENOMEM, "demo: out of memory training");
  if (st == CQ_OK) st = cq_cross_entropy_loss(&loss_fn);
  if (st == CQ_OK) st = cq_tensor_create(&one, CQ_F32, 0, NULL);
  if (st == CQ_OK) *(float *)one->data = 1.0f;
  cq_module_train(model, 1);
  double recent = 0;
  int64_t nrecent = 0, pos = s->n; /* pos == n: reshuffle before the first batch */
  for (int64_t step = 0; st == CQ_OK && step < steps; step++) {
    if (pos + batch > s->n) {
      shuffle(order, s->n, shuffle_state);
      pos = 0;
    }
    for (int64_t k = 0; k < batch; k++, pos++) {
      memcpy(xb + k * DEMO_PIXELS, s->images + order[pos] * DEMO_PIXELS,
             sizeof(float) * DEMO_PIXELS);
      yb[k] = s->labels[order[pos]];
    }
    demo_split batch_data = {xb, yb, batch};
    double loss = 0;
    st = train_step(kind, model, loss_fn, ctx, opt, &batch_data, one, &loss);
    if (st != CQ_OK) break;
    if (steps - step <= 100) {
      recent += loss;
      nrecent++;
    }
    if (progress) progress(user, step + 1, steps);
  }
  if (st == CQ_OK && mean_loss) *mean_loss = nrecent ? recent / (double)nrecent : 0.0;
  free(order);
  free(xb);
  free(yb);
  cq_tensor_free(one);
  cq_module_free(loss_fn);
  return st;
}

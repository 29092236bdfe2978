/* Post-training dynamic quantization against PyTorch 1.13: nnqd.Linear, nniqd.LinearReLU, nnqd.LSTM,
 * nnqd.GRU and quantize_dynamic (tests/data/golden/qdynamic, from tools/golden/gen_qdynamic.py).
 *
 * Golden cases, each under the engine PyTorch ran (qnnpack or onednn):
 *  - linear: the float nn.Linear gets PyTorch's weights and goes through cq_quantize_dynamic (its
 *    qconfig attribute set to per_channel_dynamic_qconfig / an affine-weight qconfig where the case
 *    says so); LinearReLU cases fuse Linear + ReLU with cq_fuse_modules first, as PyTorch's
 *    fuse_modules does. Checked: the int8 weight and its qparams bit for bit, str(module), and the
 *    outputs of every call -- bit-exact under qnnpack (spec 5.4 verified the formula there); under
 *    onednn, whose dequantization the spec matched only to 1-2 ulp, within
 *    4 * FLT_EPSILON * (|acc * scale| + |bias|) of PyTorch (|acc * scale| taken as |want - bias|):
 *    the rounding of the two terms, which stays meaningful where they cancel (largest reported).
 *  - lstm / gru: the float module with PyTorch's parameters through cq_quantize_dynamic; the int8
 *    weights and scales of every matrix bit for bit, str(module), output / h_n / c_n within a
 *    tolerance (the gates use expf/tanhf where ATen uses its vectorised versions, ~1 ulp apart,
 *    and a state that moved by an ulp could move a quantized hidden value by one step): every
 *    element within 4 * FLT_EPSILON * max(1, |want|), i.e. a few ulps of the states' scale of 1
 *    (largest errors reported).
 *  - model: str() of whole models before and after quantize_dynamic (the seed's toy model with
 *    several specs, nesting, RNN options, qconfig attributes, a root that is never swapped).
 * The example examples/seed_dynamic is run and its output compared with the seed's trees.
 * Direct checks: dtypes (float16 unsupported, quint8 / qint32 refused as PyTorch refuses them),
 * LSTM without bias, input shapes, NaN input, onednn refusing weight zero points, a failing pass
 * leaving the model unchanged, qconfig attributes removed, the kernel_1tuple option, the per-call
 * activation range (reduce_range honoured by onednn / x86, ignored by qnnpack), and allocation
 * failures at every point of conversion and forward. */
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cquant/cquant.h"
#include "nn/module_impl.h"
#include "nn/quantized/dynamic_weight.h"
#include "nn/quantized/qmodules.h"
#include "support/check.h"
#include "support/golden.h"

#define GOLDEN_FILE CQ_TEST_DATA_DIR "/golden/qdynamic/cases.txt"
#define SEED_DYNAMIC_EXAMPLE CQ_TEST_TMP_DIR "/../examples/seed_dynamic"
#define ONEDNN_MAX_EPS 4.0
#define RNN_MAX_EPS 4.0 /* |got - want| <= 4 * FLT_EPSILON * max(1, |want|) */

/* ---- statistics printed at the end ----------------------------------------------------------------- */

typedef struct stats {
  int cases;
  long elements;
  long mismatched; /* elements not bit-identical */
  long max_ulp;
  double max_abs;
} stats;

static stats linear_stats[2], rnn_stats[2][2]; /* [engine: qnnpack, onednn]; rnn: [LSTM, GRU] */
static int model_cases;

static int64_t ordered(float f) {
  int32_t i;
  memcpy(&i, &f, sizeof i);
  return i < 0 ? (int64_t)INT32_MIN - i : i;
}

static long ulp_distance(float a, float b) {
  if (isnan(a) || isnan(b)) return isnan(a) && isnan(b) ? 0 : LONG_MAX;
  const int64_t d = ordered(a) - ordered(b);
  return (long)(d < 0 ? -d : d);
}

static void quiet_warning(const char *message, void *user) {
  (void)message;
  (void)user;
}

/* ---- golden helpers ------------------------------------------------------------------------------- */

static char *unescape(const char *s) {
  char *out = malloc(strlen(s) + 1), *o = out;
  for (; *s; s++) {
    if (*s == '\\' && s[1] == 'n') {
      *o++ = '\n';
      s++;
    } else if (*s == '\\' && s[1] == '\\') {
      *o++ = '\\';
      s++;
    } else {
      *o++ = *s;
    }
  }
  *o = '\0';
  return out;
}

static long get_long(const golden_case *c, const char *key) {
  const char *v = golden_get(c, key);
  return v ? strtol(v, NULL, 10) : -1;
}

/* The arrays of a case: one float32 blob and "array NAME D0 D1 ..." lines in blob order. */
typedef struct blob {
  cq_tensor *data;
  const golden_case *c;
} blob;

static int blob_open(const golden_file *g, const golden_case *c, blob *b) {
  b->c = c;
  b->data = NULL;
  char path[1024];
  const char *rel = golden_get(c, "blob");
  if (!rel) return -1;
  cq_status st = cq_npy_load(golden_path(g, rel, path, sizeof path), &b->data);
  CHECK_MSG(st == CQ_OK, "%s: cannot load %s: %s", c->name, path, cq_last_error());
  return st == CQ_OK ? 0 : -1;
}

/* Finds array `name`: its shape and a pointer into the blob. NULL when absent. */
static const float *blob_get(const blob *b, const char *name, int *ndim, int64_t *shape) {
  int64_t off = 0;
  for (int i = 0;; i++) {
    const char *v = golden_get_nth(b->c, "array", i);
    if (!v) return NULL;
    const char *sp = strchr(v, ' ');
    const size_t len = sp ? (size_t)(sp - v) : strlen(v);
    int nd = 0;
    int64_t n = 1, sh[CQ_MAX_DIMS];
    for (const char *q = sp; q && *q && nd < CQ_MAX_DIMS;) {
      char *end;
      sh[nd] = strtoll(q, &end, 10);
      if (end == q) break;
      n *= sh[nd++];
      q = end;
    }
    if (len == strlen(name) && strncmp(v, name, len) == 0) {
      if (ndim) *ndim = nd;
      if (shape) memcpy(shape, sh, sizeof(int64_t) * (size_t)nd);
      if (off + n > cq_tensor_numel(b->data)) return NULL;
      return (const float *)b->data->data + off;
    }
    off += n;
  }
}

/* A new float32 tensor holding array `name`. */
static cq_tensor *blob_tensor(const blob *b, const char *name) {
  int nd = 0;
  int64_t shape[CQ_MAX_DIMS];
  const float *src = blob_get(b, name, &nd, shape);
  if (!src) return NULL;
  cq_tensor *t = NULL;
  if (cq_tensor_create(&t, CQ_F32, nd, shape) != CQ_OK) return NULL;
  memcpy(t->data, src, cq_tensor_nbytes(t));
  return t;
}

static cq_backend case_engine(const golden_case *c) {
  cq_backend e = CQ_BACKEND_X86;
  CHECK_OK(cq_backend_parse(golden_get(c, "engine"), &e));
  return e;
}

/* Compares the module's int8 buffer `name` and its scales with the blob's q / s arrays. */
static void check_qweight(const char *cname, cq_module *qm, const char *buffer, const float *want_q,
                          int64_t n, const float *want_scales, int64_t nscales,
                          const int64_t *want_zps) {
  cq_named_tensor *t = cq_module_own_tensor(qm, buffer);
  CHECK_MSG(t != NULL, "%s: no quantized weight buffer '%s'", cname, buffer);
  if (!t) return;
  const cq_tensor *q = t->tensor;
  CHECK_MSG(q->dtype == CQ_S8 && cq_tensor_numel(q) == n && q->qparams,
            "%s: %s is not an int8 tensor of %lld elements with qparams", cname, buffer,
            (long long)n);
  if (q->dtype != CQ_S8 || cq_tensor_numel(q) != n || !q->qparams) return;
  const int8_t *d = q->data;
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; i++) {
    if ((float)d[i] != want_q[i]) {
      if (first < 0) first = i;
      bad++;
    }
  }
  CHECK_MSG(bad == 0, "%s: %s: %lld of %lld int8 weights differ from PyTorch (first at %lld: %d vs "
            "%g)", cname, buffer, (long long)bad, (long long)n, (long long)first,
            first >= 0 ? d[first] : 0, first >= 0 ? (double)want_q[first] : 0.0);
  CHECK_MSG(q->qparams->count == nscales, "%s: %s has %lld scales, PyTorch %lld", cname, buffer,
            (long long)q->qparams->count, (long long)nscales);
  if (q->qparams->count != nscales) return;
  for (int64_t i = 0; i < nscales; i++) {
    CHECK_MSG(check_f32_bits(q->qparams->scale[i]) == check_f32_bits(want_scales[i]),
              "%s: %s scale %lld: %.9g vs PyTorch %.9g", cname, buffer, (long long)i,
              (double)q->qparams->scale[i], (double)want_scales[i]);
    if (want_zps) {
      CHECK_MSG(q->qparams->zero_point[i] == want_zps[i], "%s: %s zero point %lld: %d vs %lld",
                cname, buffer, (long long)i, (int)q->qparams->zero_point[i],
                (long long)want_zps[i]);
    }
  }
}

static void check_repr(const char *cname, const cq_module *m, const char *escaped_want) {
  char *want = unescape(escaped_want);
  char *got = cq_module_repr_alloc(m);
  CHECK_MSG(got && strcmp(got, want) == 0, "%s: repr\n  got:  %s\n  want: %s", cname,
            got ? got : "(null)", want);
  free(got);
  free(want);
}

/* Compares n floats: bit for bit (mode EXACT), within the onednn bound (mode ONEDNN: bias is the
 * float bias of the n % channels output channel, or NULL), or within the RNN tolerance (mode RNN).
 * Updates *s. */
enum { EXACT, ONEDNN, RNN };
static double onednn_worst; /* largest |got - want| / (eps * (|want - b| + |b|)) */
static double rnn_worst;    /* largest |got - want| / (eps * max(1, |want|)) */

static void compare_floats(const char *cname, const char *what, const float *got, const float *want,
                           int64_t n, int mode, const float *bias, int64_t channels, stats *s) {
  long worst_ulp = 0;
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; i++) {
    const long u = ulp_distance(got[i], want[i]);
    const double diff = fabs((double)got[i] - (double)want[i]);
    if (u != 0) s->mismatched++;
    if (u != 0 && getenv("CQ_TEST_DETAILS")) {
      printf("%s %s [%lld] got %.9g want %.9g\n", cname, what, (long long)i, (double)got[i],
             (double)want[i]);
    }
    if (u > worst_ulp) worst_ulp = u;
    if (diff > s->max_abs) s->max_abs = diff;
    int ok = u == 0;
    if (mode == ONEDNN) {
      /* oneDNN's dequantization rounds differently (spec 5.4: 1-2 ulp): measured against the size
       * of the two terms y = acc * scale + b, which bounds the rounding of both */
      const double b = bias ? (double)bias[i % channels] : 0.0;
      const double terms = fabs((double)want[i] - b) + fabs(b);
      const double units = diff / ((double)FLT_EPSILON * terms);
      if (diff > 0.0 && units > onednn_worst) onednn_worst = units;
      ok = diff == 0.0 || units <= ONEDNN_MAX_EPS;
    } else if (mode == RNN) {
      const double units = diff / ((double)FLT_EPSILON * fmax(1.0, fabs((double)want[i])));
      if (units > rnn_worst) rnn_worst = units;
      ok = units <= RNN_MAX_EPS;
    }
    if (!ok) {
      if (first < 0) first = i;
      bad++;
    }
  }
  s->elements += n;
  if (worst_ulp > s->max_ulp) s->max_ulp = worst_ulp;
  CHECK_MSG(bad == 0, "%s: %s: %lld of %lld elements out of tolerance (first at %lld: %.9g vs "
            "PyTorch %.9g)", cname, what, (long long)bad, (long long)n, (long long)first,
            first >= 0 ? (double)got[first] : 0.0, first >= 0 ? (double)want[first] : 0.0);
}

/* ---- linear cases ------------------------------------------------------------------------------- */

static void run_linear_case(const golden_file *g, const golden_case *c) {
  const char *cname = c->name;
  blob b;
  if (blob_open(g, c, &b) != 0) return;
  const cq_backend engine = case_engine(c);
  const int64_t fin = get_long(c, "in_features"), fout = get_long(c, "out_features");
  const int bias = get_long(c, "bias") == 1, relu = get_long(c, "relu") == 1;
  const char *wscheme = golden_get(c, "wscheme");
  const float *weight = blob_get(&b, "weight", NULL, NULL);
  const float *bias_values = bias ? blob_get(&b, "bias_values", NULL, NULL) : NULL;
  const float *qweight = blob_get(&b, "qweight", NULL, NULL);
  CHECK_MSG(weight && qweight && (!bias || bias_values), "%s: arrays missing", cname);
  if (!weight || !qweight || (bias && !bias_values)) goto done;
  cq_set_quantized_engine(engine);

  cq_module *model = NULL, *qm = NULL;
  cq_qconfig qc;
  CHECK_OK(cq_qconfig_preset(strcmp(wscheme, "per_channel") == 0 ? "per_channel_dynamic_qconfig"
                                                                 : "default_dynamic_qconfig",
                             &qc));
  if (strcmp(wscheme, "per_tensor_affine") == 0) qc.weight.observer.qscheme = CQ_PER_TENSOR_AFFINE;
  {
    cq_module *layers[2] = {NULL, NULL};
    CHECK_OK(cq_linear(&layers[0], fin, fout, bias));
    memcpy(cq_module_own_tensor(layers[0], "weight")->tensor->data, weight,
           sizeof(float) * (size_t)(fin * fout));
    if (bias) {
      memcpy(cq_module_own_tensor(layers[0], "bias")->tensor->data, bias_values,
             sizeof(float) * (size_t)fout);
    }
    if (relu) CHECK_OK(cq_relu(&layers[1]));
    CHECK_OK(cq_sequential(&model, relu ? 2 : 1, layers));
    cq_module_train(model, 0);
    if (relu) { /* nni.LinearReLU, as PyTorch's fuse_modules makes it */
      const char *const names[2] = {"0", "1"};
      CHECK_OK(cq_fuse_modules(model, 2, names));
    }
    cq_module *target = cq_module_child(model, 0);
    if (strcmp(wscheme, "per_tensor") != 0) CHECK_OK(cq_module_set_qconfig(target, &qc));
    const char *const spec[1] = {relu ? "LinearReLU" : "Linear"};
    CHECK_OK(cq_quantize_dynamic(model, 1, spec, CQ_QINT8));
    qm = cq_module_child(model, 0);
    CHECK_STR_EQ(cq_module_type_name(qm),
                 relu ? "DynamicQuantizedLinearReLU" : "DynamicQuantizedLinear");
    CHECK(cq_module_get_qconfig(qm) == NULL);
  }
  if (!qm) goto done_model;

  /* the int8 weight and its qparams */
  float *scales = NULL;
  int64_t *zps = NULL;
  const int ns = golden_parse_floats(golden_get(c, "wscale"), &scales);
  const int nz = golden_parse_ints(golden_get(c, "wzp"), &zps);
  CHECK_INT_EQ(ns, nz);
  if (ns > 0 && ns == nz) check_qweight(cname, qm, "weight", qweight, fin * fout, scales, ns, zps);
  free(scales);
  free(zps);
  check_repr(cname, qm, golden_get(c, "repr"));

  /* the calls */
  stats *s = &linear_stats[engine == CQ_BACKEND_ONEDNN];
  s->cases++;
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  const long ncalls = get_long(c, "ncalls");
  for (long k = 0; ctx && k < ncalls; k++) {
    char in_name[32], out_name[32];
    snprintf(in_name, sizeof in_name, "input%ld", k);
    snprintf(out_name, sizeof out_name, "output%ld", k);
    cq_tensor *x = blob_tensor(&b, in_name);
    int nd = 0;
    int64_t shape[CQ_MAX_DIMS];
    const float *want = blob_get(&b, out_name, &nd, shape);
    CHECK_MSG(x && want, "%s: call %ld arrays missing", cname, k);
    cq_tensor *y = NULL;
    if (x && want) {
      CHECK_OK(cq_module_forward1(qm, ctx, x, &y));
    }
    if (y) {
      CHECK_INT_EQ(y->ndim, nd);
      int same = y->ndim == nd;
      for (int i = 0; same && i < nd; i++) same = y->shape[i] == shape[i];
      CHECK_MSG(same, "%s: call %ld output shape", cname, k);
      if (same) {
        compare_floats(cname, out_name, y->data, want, cq_tensor_numel(y),
                       engine == CQ_BACKEND_ONEDNN ? ONEDNN : EXACT, bias_values, fout, s);
      }
    }
    cq_tensor_free(x);
    cq_ctx_reset(ctx);
  }
  cq_ctx_free(ctx);
done_model:
  cq_module_free(model);
done:
  cq_tensor_free(b.data);
}

/* ---- RNN cases ---------------------------------------------------------------------------------- */

static void run_rnn_case(const golden_file *g, const golden_case *c) {
  const char *cname = c->name;
  blob b;
  if (blob_open(g, c, &b) != 0) return;
  const cq_backend engine = case_engine(c);
  const int gru = strcmp(golden_get(c, "mode"), "GRU") == 0;
  cq_rnn_options o = cq_rnn_defaults(get_long(c, "input_size"), get_long(c, "hidden_size"));
  o.num_layers = get_long(c, "num_layers");
  o.batch_first = get_long(c, "batch_first") == 1;
  o.bidirectional = get_long(c, "bidirectional") == 1;
  const int states = get_long(c, "states") == 1;
  cq_set_quantized_engine(engine);
  cq_module *rnn = NULL, *model = NULL;
  CHECK_OK(gru ? cq_gru(&rnn, &o) : cq_lstm(&rnn, &o));
  if (!rnn) goto done;
  /* PyTorch's parameters, by name */
  for (int i = 0; i < cq_module_num_tensors(rnn); i++) {
    cq_named_tensor *t = cq_module_tensor(rnn, i);
    const float *src = blob_get(&b, t->name, NULL, NULL);
    CHECK_MSG(src != NULL, "%s: parameter %s missing", cname, t->name);
    if (src) memcpy(t->tensor->data, src, cq_tensor_nbytes(t->tensor));
  }
  const int per_channel = strcmp(golden_get(c, "wscheme"), "per_channel") == 0;
  if (per_channel) {
    cq_qconfig qc;
    CHECK_OK(cq_qconfig_preset("per_channel_dynamic_qconfig", &qc));
    CHECK_OK(cq_module_set_qconfig(rnn, &qc));
  }
  CHECK_OK(cq_sequential(&model, 1, &rnn));
  const char *const spec[1] = {gru ? "GRU" : "LSTM"};
  CHECK_OK(cq_quantize_dynamic(model, 1, spec, CQ_QINT8));
  cq_module *qm = cq_module_child(model, 0);
  CHECK_STR_EQ(cq_module_type_name(qm), gru ? "DynamicQuantizedGRU" : "DynamicQuantizedLSTM");
  check_repr(cname, qm, golden_get(c, "repr"));

  /* quantized weights: every weight matrix of the float module, in state_dict order */
  for (int i = 0;; i++) {
    const char *v = golden_get_nth(c, "array", i);
    if (!v) break;
    if (strncmp(v, "qweight_", 8) != 0) continue;
    char qname[64], wname[64], sname[72];
    sscanf(v, "%63s", qname);
    snprintf(wname, sizeof wname, "%s", qname + 1);
    snprintf(sname, sizeof sname, "s%s", wname);
    int nd = 0, snd = 0;
    int64_t shape[CQ_MAX_DIMS], sshape[CQ_MAX_DIMS];
    const float *q = blob_get(&b, qname, &nd, shape);
    const float *sc = blob_get(&b, sname, &snd, sshape);
    if (!q || !sc || nd != 2) {
      CHECK_MSG(0, "%s: %s / %s missing", cname, qname, sname);
      continue;
    }
    check_qweight(cname, qm, wname, q, shape[0] * shape[1], sc, sshape[0], NULL);
  }

  /* forward */
  cq_tensor *in[3] = {blob_tensor(&b, "input"), NULL, NULL};
  int nin = 1;
  if (states) {
    in[1] = blob_tensor(&b, "h0");
    nin = 2;
    if (!gru) {
      in[2] = blob_tensor(&b, "c0");
      nin = 3;
    }
  }
  const char *names[3] = {"output", "h_n", "c_n"};
  const int nout = gru ? 2 : 3;
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_tensor *out[3] = {NULL, NULL, NULL};
  if (ctx && in[0]) CHECK_OK(cq_module_forward(qm, ctx, nin, in, nout, out));
  stats *s = &rnn_stats[engine == CQ_BACKEND_ONEDNN][gru];
  s->cases++;
  for (int i = 0; i < nout; i++) {
    int nd = 0;
    int64_t shape[CQ_MAX_DIMS];
    const float *want = blob_get(&b, names[i], &nd, shape);
    if (!out[i] || !want) {
      CHECK_MSG(0, "%s: %s missing", cname, names[i]);
      continue;
    }
    int same = out[i]->ndim == nd;
    for (int d = 0; same && d < nd; d++) same = out[i]->shape[d] == shape[d];
    CHECK_MSG(same, "%s: %s shape", cname, names[i]);
    if (same) {
      compare_floats(cname, names[i], out[i]->data, want, cq_tensor_numel(out[i]), RNN, NULL, 1, s);
    }
  }
  cq_ctx_free(ctx);
  for (int i = 0; i < 3; i++) cq_tensor_free(in[i]);
  cq_module_free(model);
done:
  cq_tensor_free(b.data);
}

/* ---- model cases -------------------------------------------------------------------------------- */

static cq_module *seq(int n, cq_module **children) {
  cq_module *m = NULL;
  CHECK_OK(cq_sequential(&m, n, children));
  return m;
}

static cq_module *linear(int64_t in, int64_t out) {
  cq_module *m = NULL;
  CHECK_OK(cq_linear(&m, in, out, 1));
  return m;
}

static cq_module *relu(void) {
  cq_module *m = NULL;
  CHECK_OK(cq_relu(&m));
  return m;
}

static cq_module *rnn(int gru, int64_t in, int64_t hidden, int64_t layers, int batch_first,
                      int bidirectional, float dropout) {
  cq_rnn_options o = cq_rnn_defaults(in, hidden);
  o.num_layers = layers;
  o.batch_first = batch_first;
  o.bidirectional = bidirectional;
  o.dropout = dropout;
  cq_module *m = NULL;
  CHECK_OK(gru ? cq_gru(&m, &o) : cq_lstm(&m, &o));
  return m;
}

static cq_module *seed_model(void) {
  cq_conv_options o = cq_conv_defaults(2, 64, 8, 1);
  o.kernel_1tuple = 1;
  cq_module *conv = NULL;
  CHECK_OK(cq_conv2d(&conv, &o));
  cq_module *c[4] = {conv, relu(), linear(16, 10), rnn(0, 10, 10, 1, 0, 0, 0.0f)};
  return seq(4, c);
}

static cq_module *build_model(const char *name) {
  if (!strcmp(name, "seed")) return seed_model();
  if (!strcmp(name, "nested")) {
    cq_module *inner[2] = {linear(4, 8), relu()};
    cq_module *c[3] = {seq(2, inner), rnn(1, 8, 6, 2, 1, 1, 0.0f), linear(12, 3)};
    return seq(3, c);
  }
  if (!strcmp(name, "rnn_options")) {
    cq_set_warning_handler(quiet_warning, NULL); /* dropout with one layer warns */
    cq_module *c[4] = {rnn(0, 10, 20, 2, 1, 1, 0.0f), rnn(1, 10, 20, 3, 0, 0, 0.25f),
                       rnn(0, 7, 3, 1, 0, 0, 0.1f), rnn(1, 5, 2, 2, 0, 1, 1e-05f)};
    cq_set_warning_handler(NULL, NULL);
    return seq(4, c);
  }
  if (!strcmp(name, "per_channel_attr")) {
    cq_module *c[4] = {linear(16, 10), relu(), linear(10, 4), rnn(0, 4, 4, 1, 0, 0, 0.0f)};
    return seq(4, c);
  }
  if (!strcmp(name, "root_linear")) return linear(3, 2);
  if (!strcmp(name, "fused")) {
    cq_module *c[3] = {linear(4, 3), relu(), linear(3, 2)};
    cq_module *m = seq(3, c);
    cq_module_train(m, 0);
    const char *const names[2] = {"0", "1"};
    CHECK_OK(cq_fuse_modules(m, 2, names));
    return m;
  }
  return NULL;
}

static void run_model_case(const golden_case *c) {
  const char *cname = c->name;
  cq_module *m = build_model(golden_get(c, "model"));
  CHECK_MSG(m != NULL, "%s: unknown model", cname);
  if (!m) return;
  cq_module_train(m, 0);
  check_repr(cname, m, golden_get(c, "before"));
  for (int i = 0;; i++) {
    const char *v = golden_get_nth(c, "attr", i);
    if (!v) break;
    char path[64], preset[64];
    CHECK(sscanf(v, "%63s %63s", path, preset) == 2);
    cq_qconfig qc;
    CHECK_OK(cq_qconfig_preset(preset, &qc));
    cq_module *sub = cq_module_find(m, path);
    CHECK(sub != NULL);
    if (sub) CHECK_OK(cq_module_set_qconfig(sub, &qc));
  }
  const char *spec = golden_get(c, "spec");
  char buf[256];
  const char *types[8];
  int n = 0;
  if (strcmp(spec, "default") != 0) {
    snprintf(buf, sizeof buf, "%s", spec);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && n < 8;
         t = strtok_r(NULL, " ", &save)) {
      types[n++] = t;
    }
  }
  cq_set_quantized_engine(CQ_BACKEND_QNNPACK);
  CHECK_OK(cq_quantize_dynamic(m, n, types, CQ_QINT8));
  check_repr(cname, m, golden_get(c, "after"));
  model_cases++;
  cq_module_free(m);
}

static void test_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN_FILE, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN_FILE);
    return;
  }
  cq_set_warning_handler(quiet_warning, NULL);
  const cq_backend saved = cq_quantized_engine();
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    const long before = check_failed;
    if (!strncmp(c->name, "linear/", 7)) {
      run_linear_case(&g, c);
    } else if (!strncmp(c->name, "lstm/", 5) || !strncmp(c->name, "gru/", 4)) {
      run_rnn_case(&g, c);
    } else if (!strncmp(c->name, "model/", 6)) {
      run_model_case(c);
    } else {
      CHECK_MSG(0, "unknown case %s", c->name);
    }
    if (check_failed != before) printf("FAILED case %s\n", c->name);
  }
  cq_set_quantized_engine(saved);
  cq_set_warning_handler(NULL, NULL);
  golden_free(&g);
}

/* ---- the example -------------------------------------------------------------------------------- */

static void test_seed_example(void) {
  golden_file g;
  if (golden_load(GOLDEN_FILE, &g) != 0) return;
  const golden_case *seed = NULL;
  for (int i = 0; i < g.count; i++) {
    if (!strcmp(g.cases[i].name, "model/seed")) seed = &g.cases[i];
  }
  CHECK(seed != NULL);
  if (!seed) {
    golden_free(&g);
    return;
  }
  char *before = unescape(golden_get(seed, "before")), *after = unescape(golden_get(seed, "after"));
  const size_t cap = strlen(before) + strlen(after) + 3;
  char *want = malloc(cap);
  snprintf(want, cap, "%s\n%s\n", before, after);
  /* a cross build runs the example under the emulator CTest names (CQ_TEST_EMULATOR) */
  const char *emu = getenv("CQ_TEST_EMULATOR");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "%s%s" SEED_DYNAMIC_EXAMPLE " 2>/dev/null", emu ? emu : "",
           emu ? " " : "");
  FILE *p = popen(cmd, "r");
  CHECK_MSG(p != NULL, "cannot run %s", SEED_DYNAMIC_EXAMPLE);
  if (p) {
    char got[4096];
    const size_t n = fread(got, 1, sizeof got - 1, p);
    got[n] = '\0';
    const int rc = pclose(p);
    CHECK_MSG(rc == 0, "%s exited with status %d", SEED_DYNAMIC_EXAMPLE, rc);
    CHECK_MSG(strcmp(got, want) == 0, "seed_dynamic printed\n%s\nwant\n%s", got, want);
  }
  free(want);
  free(before);
  free(after);
  golden_free(&g);
}

/* ---- direct checks ------------------------------------------------------------------------------ */

static cq_module *small_model(void) {
  cq_module *c[3] = {linear(4, 3), relu(), rnn(0, 3, 2, 1, 0, 0, 0.0f)};
  cq_module *m = seq(3, c);
  cq_module_train(m, 0);
  return m;
}

static void test_dtypes(void) {
  cq_module *m = small_model();
  char *before = cq_module_repr_alloc(m);
  const char *const lin[1] = {"Linear"}, *const lstm[1] = {"LSTM"};
  /* float16: FBGEMM-only ops, as PyTorch without FBGEMM */
  CHECK_STATUS(cq_quantize_dynamic(m, 0, NULL, CQ_QFLOAT16), CQ_EUNSUPPORTED);
  CHECK(strstr(cq_last_error(), "FBGEMM") != NULL);
  CHECK_STATUS(cq_quantize_dynamic(m, 1, lstm, CQ_QFLOAT16), CQ_EUNSUPPORTED);
  /* quint8 applies to embeddings: a Linear or an LSTM refuse it */
  CHECK_STATUS(cq_quantize_dynamic(m, 1, lin, CQ_QUINT8), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "The only supported dtypes for dynamic quantized linear are qint8 "
                                "and float16 got: torch.quint8") != NULL);
  CHECK_STATUS(cq_quantize_dynamic(m, 1, lstm, CQ_QUINT4X2), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "Unsupported dtype for dynamic RNN quantization: torch.quint4x2"));
  CHECK_STATUS(cq_quantize_dynamic(m, 1, lin, CQ_QINT32), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "Unknown dtype specified for quantize_dynamic: torch.qint32"));
  CHECK_STATUS(cq_quantize_dynamic(m, 0, NULL, CQ_QINT32), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "Don't know how to quantize with default settings for "
                                "torch.qint32"));
  CHECK_STATUS(cq_quantize_dynamic(NULL, 0, NULL, CQ_QINT8), CQ_EINVAL);
  CHECK_STATUS(cq_quantize_dynamic(m, 1, NULL, CQ_QINT8), CQ_EINVAL);
  /* failures leave the model as it was */
  char *after = cq_module_repr_alloc(m);
  CHECK_STR_EQ(after, before);
  free(after);
  /* quint8's default set (embeddings) matches nothing here: nothing changes, no error */
  CHECK_OK(cq_quantize_dynamic(m, 0, NULL, CQ_QUINT8));
  after = cq_module_repr_alloc(m);
  CHECK_STR_EQ(after, before);
  free(after);
  free(before);
  cq_module_free(m);
}

static void test_spec_and_qconfig(void) {
  /* paths in the set, own qconfig attributes, removal of every qconfig and observer */
  cq_module *m = small_model();
  cq_qconfig qc;
  CHECK_OK(cq_qconfig_preset("default_dynamic_qconfig", &qc));
  CHECK_OK(cq_module_set_qconfig(cq_module_child(m, 1), &qc)); /* ReLU: not in the mapping */
  cq_observer_config oc = cq_observer_defaults(CQ_OBSERVER_MINMAX);
  cq_observer *obs = NULL;
  cq_module *obs_module = NULL;
  CHECK_OK(cq_observer_create(&oc, &obs));
  CHECK_OK(cq_observer_module(&obs_module, obs));
  CHECK_OK(cq_module_add_child(cq_module_child(m, 1), "activation_post_process", obs_module));
  const char *const by_path[1] = {"2"};
  cq_set_quantized_engine(CQ_BACKEND_QNNPACK);
  CHECK_OK(cq_quantize_dynamic(m, 1, by_path, CQ_QINT8));
  CHECK_STR_EQ(cq_module_type_name(cq_module_child(m, 0)), "Linear");
  CHECK_STR_EQ(cq_module_type_name(cq_module_child(m, 1)), "ReLU");
  CHECK_STR_EQ(cq_module_type_name(cq_module_child(m, 2)), "DynamicQuantizedLSTM");
  CHECK(cq_module_get_qconfig(cq_module_child(m, 1)) == NULL);
  CHECK_INT_EQ(cq_module_num_children(cq_module_child(m, 1)), 0);
  CHECK(!cq_module_is_training(m));
  /* a qconfig on the container reaches its children: everything mappable is converted */
  cq_module *m2 = small_model();
  CHECK_OK(cq_module_set_qconfig(m2, &qc));
  CHECK_OK(cq_quantize_dynamic(m2, 1, by_path, CQ_QINT8));
  CHECK_STR_EQ(cq_module_type_name(cq_module_child(m2, 0)), "DynamicQuantizedLinear");
  CHECK_STR_EQ(cq_module_type_name(cq_module_child(m2, 2)), "DynamicQuantizedLSTM");
  CHECK(cq_module_get_qconfig(m2) == NULL);
  /* a per-channel qconfig along the wrong axis is refused, the model unchanged */
  cq_module *m3 = small_model();
  CHECK_OK(cq_qconfig_preset("per_channel_dynamic_qconfig", &qc));
  qc.weight.observer.ch_axis = 1;
  CHECK_OK(cq_module_set_qconfig(cq_module_child(m3, 0), &qc));
  char *before = cq_module_repr_alloc(m3);
  CHECK_STATUS(cq_quantize_dynamic(m3, 0, NULL, CQ_QINT8), CQ_EUNSUPPORTED);
  char *after = cq_module_repr_alloc(m3);
  CHECK_STR_EQ(after, before);
  CHECK(cq_module_get_qconfig(cq_module_child(m3, 0)) != NULL);
  free(before);
  free(after);
  cq_module_free(m);
  cq_module_free(m2);
  cq_module_free(m3);
}

static void test_rnn_errors(void) {
  cq_set_quantized_engine(CQ_BACKEND_QNNPACK);
  /* bias=False: PyTorch's from_float asserts mod.bias */
  cq_rnn_options o = cq_rnn_defaults(3, 2);
  o.bias = 0;
  cq_module *nobias = NULL;
  CHECK_OK(cq_lstm(&nobias, &o));
  cq_module *m = seq(1, &nobias);
  CHECK_STATUS(cq_quantize_dynamic(m, 0, NULL, CQ_QINT8), CQ_EUNSUPPORTED);
  CHECK(strstr(cq_last_error(), "bias=True") != NULL);
  CHECK_STR_EQ(cq_module_type_name(cq_module_child(m, 0)), "LSTM");
  cq_module_free(m);
  CHECK_STATUS(cq_qmodule_dynamic_rnn(&m, NULL, NULL, CQ_BACKEND_QNNPACK), CQ_EINVAL);

  /* inputs: 3-D only, sizes, states */
  cq_module *gru_m = NULL;
  cq_module *lstm_m = NULL;
  cq_module *g = rnn(1, 3, 2, 2, 0, 1, 0.0f), *l = rnn(0, 3, 2, 1, 1, 0, 0.0f);
  CHECK_OK(cq_qmodule_dynamic_rnn(&gru_m, g, NULL, CQ_BACKEND_QNNPACK));
  CHECK_OK(cq_qmodule_dynamic_rnn(&lstm_m, l, NULL, CQ_BACKEND_ONEDNN));
  cq_module_free(g);
  cq_module_free(l);
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_tensor *x2 = NULL, *x3 = NULL, *bad = NULL, *h = NULL, *hbad = NULL, *empty = NULL;
  const int64_t s2[2] = {4, 3}, s3[3] = {4, 5, 3}, sbad[3] = {4, 5, 2}, sh[3] = {4, 5, 2},
                shbad[3] = {4, 1, 2}, se[3] = {4, 0, 3};
  CHECK_OK(cq_tensor_create(&x2, CQ_F32, 2, s2));
  CHECK_OK(cq_tensor_create(&x3, CQ_F32, 3, s3));
  CHECK_OK(cq_tensor_create(&bad, CQ_F32, 3, sbad));
  CHECK_OK(cq_tensor_create(&h, CQ_F32, 3, sh));
  CHECK_OK(cq_tensor_create(&hbad, CQ_F32, 3, shbad));
  CHECK_OK(cq_tensor_create(&empty, CQ_F32, 3, se));
  cq_tensor *out[3] = {NULL, NULL, NULL};
  CHECK_STATUS(cq_module_forward(gru_m, ctx, 1, &x2, 2, out), CQ_ESHAPE);
  CHECK(strstr(cq_last_error(), "input must have 3 dimensions, got 2") != NULL);
  CHECK_STATUS(cq_module_forward(gru_m, ctx, 1, &bad, 2, out), CQ_ESHAPE);
  CHECK(strstr(cq_last_error(), "input.size(-1) must be equal to input_size. Expected 3, got 2"));
  cq_tensor *with_bad_h[2] = {x3, hbad};
  CHECK_STATUS(cq_module_forward(gru_m, ctx, 2, with_bad_h, 2, out), CQ_ESHAPE);
  CHECK(strstr(cq_last_error(), "Expected hidden size (4, 5, 2), got [4, 1, 2]") != NULL);
  cq_tensor *with_h[2] = {x3, h};
  CHECK_OK(cq_module_forward(gru_m, ctx, 2, with_h, 2, out));
  CHECK_INT_EQ(out[0]->shape[2], 4);
  /* an empty batch gives empty outputs (qnnpack's behaviour) */
  CHECK_OK(cq_module_forward(gru_m, ctx, 1, &empty, 2, out));
  CHECK_INT_EQ(cq_tensor_numel(out[0]), 0);
  CHECK_INT_EQ(cq_tensor_numel(out[1]), 0);
  /* batch_first LSTM: x3 is [B=4, T=5, 3]; h0 alone (c0 = 0) and the hidden[1] check */
  CHECK_OK(cq_module_forward(lstm_m, ctx, 1, &x3, 3, out));
  CHECK_INT_EQ(out[0]->shape[0], 4);
  CHECK_INT_EQ(out[0]->shape[1], 5);
  cq_tensor *h1 = NULL;
  const int64_t s1[3] = {1, 4, 2};
  CHECK_OK(cq_tensor_create(&h1, CQ_F32, 3, s1));
  cq_tensor *lstm_in[3] = {x3, h1, hbad};
  CHECK_STATUS(cq_module_forward(lstm_m, ctx, 3, lstm_in, 3, out), CQ_ESHAPE);
  CHECK(strstr(cq_last_error(), "Expected hidden[1] size (1, 4, 2), got [4, 1, 2]") != NULL);
  CHECK_OK(cq_module_forward(lstm_m, ctx, 2, lstm_in, 3, out));
  /* NaN input: no quantization parameters exist */
  ((float *)x3->data)[7] = NAN;
  CHECK_STATUS(cq_module_forward(lstm_m, ctx, 1, &x3, 3, out), CQ_EVALUE);
  /* repr of the options */
  char *r = cq_module_repr_alloc(gru_m);
  CHECK_STR_EQ(r, "DynamicQuantizedGRU(3, 2, num_layers=2, bidirectional=True)");
  free(r);
  r = cq_module_repr_alloc(lstm_m);
  CHECK_STR_EQ(r, "DynamicQuantizedLSTM(3, 2, batch_first=True)");
  free(r);
  cq_tensor_free(x2);
  cq_tensor_free(x3);
  cq_tensor_free(bad);
  cq_tensor_free(h);
  cq_tensor_free(h1);
  cq_tensor_free(hbad);
  cq_tensor_free(empty);
  cq_ctx_free(ctx);
  cq_module_free(gru_m);
  cq_module_free(lstm_m);
}

/* The per-call activation range follows the engine: [0, 127] (reduce_range) under onednn and x86,
 * [0, 255] under qnnpack, which ignores reduce_range. With a weight of one 1.0 (quantized to 64
 * with scale 1/64), y = the dequantized input: for x = (0, 1, 0.25) the scale is 1/255 or 1/127 and
 * 0.25 becomes 64/255 = 0.25098 or 32/127 = 0.25197. */
static void test_activation_range(void) {
  const float w[1] = {1.0f};
  cq_qparams wq;
  CHECK_OK(cq_qparams_init(&wq, CQ_QINT8, CQ_PER_TENSOR_SYMMETRIC, 1, -1));
  wq.scale[0] = 1.0f / 64.0f;
  const cq_backend engines[3] = {CQ_BACKEND_QNNPACK, CQ_BACKEND_ONEDNN, CQ_BACKEND_X86};
  for (int e = 0; e < 3; e++) {
    cq_module *m = NULL;
    cq_set_warning_handler(quiet_warning, NULL);
    CHECK_OK(cq_qmodule_dynamic_linear(&m, 1, 1, w, NULL, &wq, 0, engines[e]));
    CHECK_INT_EQ(((const int8_t *)cq_module_own_tensor(m, "weight")->tensor->data)[0], 64);
    cq_ctx *ctx = NULL;
    CHECK_OK(cq_ctx_create(&ctx));
    cq_tensor *x = NULL, *y = NULL;
    const int64_t shape[2] = {3, 1};
    CHECK_OK(cq_tensor_create(&x, CQ_F32, 2, shape));
    float *xd = x->data;
    xd[0] = 0.0f;
    xd[1] = 1.0f;
    xd[2] = 0.25f;
    CHECK_OK(cq_module_forward1(m, ctx, x, &y));
    cq_set_warning_handler(NULL, NULL);
    const double want = engines[e] == CQ_BACKEND_QNNPACK ? 64.0 / 255.0 : 32.0 / 127.0;
    if (y) {
      const float *yd = y->data;
      CHECK_F32_BITS(yd[0], 0.0f);
      CHECK(fabs(yd[1] - 1.0) < 1e-6);
      CHECK_MSG(fabs(yd[2] - want) < 1e-6, "engine %s: %.9g, want %.9g",
                cq_backend_name(engines[e]), (double)yd[2], want);
    }
    cq_tensor_free(x);
    cq_ctx_free(ctx);
    cq_module_free(m);
  }
  cq_qparams_release(&wq);
}

static void test_linear_errors(void) {
  const float w[6] = {0.5f, -1.0f, 0.25f, 2.0f, -0.5f, 1.5f};
  cq_qparams wq;
  CHECK_OK(cq_qparams_init(&wq, CQ_QINT8, CQ_PER_TENSOR_AFFINE, 1, -1));
  wq.scale[0] = 0.02f;
  wq.zero_point[0] = 3;
  cq_module *m = NULL;
  /* oneDNN's prepack refuses weight zero points, qnnpack takes them */
  CHECK_STATUS(cq_qmodule_dynamic_linear(&m, 3, 2, w, NULL, &wq, 0, CQ_BACKEND_ONEDNN),
               CQ_EUNSUPPORTED);
  CHECK(strstr(cq_last_error(), "ONEDNN only supports symmetric quantization of weight") != NULL);
  CHECK(m == NULL);
  CHECK_OK(cq_qmodule_dynamic_linear(&m, 3, 2, w, NULL, &wq, 0, CQ_BACKEND_QNNPACK));
  cq_module_free(m);
  CHECK_STATUS(cq_qmodule_dynamic_linear(&m, 0, 2, w, NULL, &wq, 0, CQ_BACKEND_QNNPACK),
               CQ_EINVAL);
  CHECK(m == NULL);
  CHECK_OK(cq_qmodule_dynamic_linear(&m, 3, 2, w, NULL, &wq, 0, CQ_BACKEND_QNNPACK));
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_tensor *x1 = NULL, *xbad = NULL, *x = NULL, *y = NULL;
  const int64_t s1[1] = {3}, sbad[2] = {2, 4}, s[2] = {2, 3};
  CHECK_OK(cq_tensor_create(&x1, CQ_F32, 1, s1));
  CHECK_OK(cq_tensor_create(&xbad, CQ_F32, 2, sbad));
  CHECK_OK(cq_tensor_create(&x, CQ_F32, 2, s));
  cq_set_warning_handler(quiet_warning, NULL);
  CHECK_STATUS(cq_module_forward1(m, ctx, x1, &y), CQ_ESHAPE);
  CHECK(strstr(cq_last_error(), "larger than or equal to 2") != NULL);
  CHECK_STATUS(cq_module_forward1(m, ctx, xbad, &y), CQ_ESHAPE);
  ((float *)x->data)[4] = INFINITY;
  CHECK_STATUS(cq_module_forward1(m, ctx, x, &y), CQ_EVALUE);
  cq_set_warning_handler(NULL, NULL);
  /* int8 weights take one byte each */
  const cq_named_tensor *qw = cq_module_own_tensor(m, "weight");
  CHECK(qw && qw->tensor->dtype == CQ_S8 && cq_dtype_get(CQ_S8)->size == 1);
  cq_tensor_free(x1);
  cq_tensor_free(xbad);
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(m);
  cq_qparams_release(&wq);
}

static void test_conv_kernel_1tuple(void) {
  cq_conv_options o = cq_conv_defaults(2, 4, 3, 2);
  o.kernel_1tuple = 1;
  cq_module *m = NULL;
  CHECK_STATUS(cq_conv2d(&m, &o), CQ_EINVAL); /* (3,) cannot describe a 3 x 2 kernel */
  o.kernel_size[1] = 1;
  CHECK_OK(cq_conv2d(&m, &o));
  char *r = cq_module_repr_alloc(m);
  CHECK_STR_EQ(r, "Conv2d(2, 4, kernel_size=(3,), stride=(1, 1))");
  free(r);
  cq_module_free(m);
  CHECK_OK(cq_conv1d(&m, &o)); /* Conv1d prints (3,) anyway */
  r = cq_module_repr_alloc(m);
  CHECK_STR_EQ(r, "Conv1d(2, 4, kernel_size=(3,), stride=(1,))");
  free(r);
  cq_module_free(m);
}

/* Every allocation of quantize_dynamic and of the forwards can fail without leaks or crashes, and a
 * failed pass leaves the model as it was. */
static void test_alloc_failures(void) {
  cq_set_warning_handler(quiet_warning, NULL);
  cq_set_quantized_engine(CQ_BACKEND_ONEDNN);
  int pass_ok = 0;
  for (long n = 0; n < 400 && !pass_ok; n++) {
    cq_module *m = small_model();
    char *before = cq_module_repr_alloc(m);
    cq_debug_fail_alloc_after(n);
    const cq_status st = cq_quantize_dynamic(m, 0, NULL, CQ_QINT8);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      pass_ok = 1;
    } else {
      CHECK_INT_EQ(st, CQ_ENOMEM);
      char *after = cq_module_repr_alloc(m);
      CHECK_STR_EQ(after, before);
      free(after);
    }
    free(before);
    cq_module_free(m);
  }
  CHECK(pass_ok);
  cq_module *m = small_model();
  CHECK_OK(cq_quantize_dynamic(m, 0, NULL, CQ_QINT8));
  cq_tensor *x = NULL;
  const int64_t shape[3] = {3, 2, 4};
  CHECK_OK(cq_tensor_create(&x, CQ_F32, 3, shape));
  for (int64_t i = 0; i < cq_tensor_numel(x); i++) ((float *)x->data)[i] = 0.1f * (float)(i % 7);
  int fwd_ok = 0;
  for (long n = 0; n < 200 && !fwd_ok; n++) {
    cq_ctx *ctx = NULL;
    if (cq_ctx_create(&ctx) != CQ_OK) continue;
    cq_tensor *y = NULL;
    cq_debug_fail_alloc_after(n);
    const cq_status st = cq_module_forward1(m, ctx, x, &y); /* dynamic Linear, ReLU, LSTM */
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      fwd_ok = 1;
    } else {
      CHECK_INT_EQ(st, CQ_ENOMEM);
    }
    cq_ctx_free(ctx);
  }
  CHECK(fwd_ok);
  cq_tensor_free(x);
  cq_module_free(m);

  /* a 3-layer bidirectional batch_first GRU: construction and forward */
  cq_module *g = rnn(1, 3, 4, 3, 1, 1, 0.0f), *qg = NULL;
  int make_ok = 0;
  for (long n = 0; n < 400 && !make_ok; n++) {
    cq_debug_fail_alloc_after(n);
    const cq_status st = cq_qmodule_dynamic_rnn(&qg, g, NULL, CQ_BACKEND_QNNPACK);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      make_ok = 1;
    } else {
      CHECK_INT_EQ(st, CQ_ENOMEM);
      CHECK(qg == NULL);
    }
  }
  CHECK(make_ok);
  const int64_t gshape[3] = {2, 5, 3};
  CHECK_OK(cq_tensor_create(&x, CQ_F32, 3, gshape));
  for (int64_t i = 0; i < cq_tensor_numel(x); i++) ((float *)x->data)[i] = 0.05f * (float)(i % 11);
  fwd_ok = 0;
  for (long n = 0; qg && n < 200 && !fwd_ok; n++) {
    cq_ctx *ctx = NULL;
    if (cq_ctx_create(&ctx) != CQ_OK) continue;
    cq_tensor *out[2] = {NULL, NULL};
    cq_debug_fail_alloc_after(n);
    const cq_status st = cq_module_forward(qg, ctx, 1, &x, 2, out);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      fwd_ok = 1;
      CHECK_INT_EQ(out[0]->shape[2], 8);
      CHECK_INT_EQ(out[1]->shape[0], 6);
    } else {
      CHECK_INT_EQ(st, CQ_ENOMEM);
    }
    cq_ctx_free(ctx);
  }
  CHECK(fwd_ok);
  cq_tensor_free(x);
  cq_module_free(g);
  cq_module_free(qg);
  cq_set_warning_handler(NULL, NULL);
}

static void print_stats(void) {
  static const char *engines[2] = {"qnnpack", "onednn"};
  for (int e = 0; e < 2; e++) {
    const stats *s = &linear_stats[e];
    printf("  linear %-7s: %3d cases, %6ld outputs, %ld not bit-identical, max %ld ulp, max abs "
           "err %.3g\n", engines[e], s->cases, s->elements, s->mismatched, s->max_ulp, s->max_abs);
  }
  for (int e = 0; e < 2; e++) {
    for (int gru = 0; gru < 2; gru++) {
      const stats *s = &rnn_stats[e][gru];
      printf("  %-4s   %-7s: %3d cases, %6ld outputs, %ld not bit-identical, max %ld ulp, max abs "
             "err %.3g\n", gru ? "GRU" : "LSTM", engines[e], s->cases, s->elements, s->mismatched,
             s->max_ulp, s->max_abs);
    }
  }
  printf("  onednn linear: largest |got - want| = %.3g * FLT_EPSILON * (|acc * scale| + |bias|) "
         "(bound %.1f)\n", onednn_worst, ONEDNN_MAX_EPS);
  printf("  LSTM/GRU: largest |got - want| = %.3g * FLT_EPSILON * max(1, |want|) (bound %.1f)\n",
         rnn_worst, RNN_MAX_EPS);
  printf("  model repr cases: %d\n", model_cases);
}

int main(void) {
  test_golden();
  test_seed_example();
  test_dtypes();
  test_spec_and_qconfig();
  test_rnn_errors();
  test_activation_range();
  test_linear_errors();
  test_conv_kernel_1tuple();
  test_alloc_failures();
  printf("golden comparison with PyTorch 1.13:\n");
  print_stats();
  return check_summary("test_qdynamic");
}

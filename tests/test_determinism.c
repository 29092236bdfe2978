/* Determinism across thread counts (cq_set_num_threads) and across runs.
 *
 * Four workloads run with 1, 2 and 3 threads, each twice, and every byte they produce must be the
 * same every time:
 *   - the histogram observer over three large batches (the later ones widen the range, so the
 *     histogram is rebinned): its histogram, the L2 search's range, qparams and repr;
 *   - a static int8 model built in C (QuantStub, Conv-BN-ReLU, depthwise Conv-ReLU, MaxPool,
 *     Flatten, Linear-ReLU, Linear, DeQuantStub): fuse, prepare with the x86 qconfig (per-channel
 *     weights), calibrate, convert, run; the converted model's output and its repr;
 *   - dynamic quantization of Linear-ReLU-Linear, run on a batch;
 *   - three float SGD steps (momentum) of a small conv net with an MSE loss: the losses and every
 *     parameter afterwards;
 *   - quantized adds of 77976 elements (a tail of 24 past ATen's 64-element blocks): ATen's on
 *     quint8 and qint8, with the channels-last tail order, with ReLU, and QNNPACK's.
 * The sizes are chosen above the kernels' parallel thresholds (qgemm 2^17 multiply-adds, conv 2^18,
 * dynamic range scan 2^16 elements, histogram grain 32768 elements, add 32768 elements), so the
 * 2- and 3-thread runs really split the work; the thread pool promises that each output is
 * computed by one thread in a fixed order, and this checks the promise end to end. Weights come
 * from cq_manual_seed, data from a fixed generator. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cquant/cquant.h"
#include "kernels/qelementwise/qelementwise.h"
#include "nn/quantized/qops.h"
#include "quant/observer_histogram.h"

/* ---- a run's output: named byte sections ----------------------------------------------------- */

#define MAX_SECTIONS 32

typedef struct section {
  char name[48];
  unsigned char *bytes;
  size_t len;
} section;

typedef struct trace {
  section s[MAX_SECTIONS];
  int n;
} trace;

static void record(trace *t, const char *name, const void *bytes, size_t len) {
  if (t->n == MAX_SECTIONS) {
    CHECK_MSG(0, "too many sections (%s)", name);
    return;
  }
  section *s = &t->s[t->n++];
  snprintf(s->name, sizeof s->name, "%s", name);
  s->bytes = malloc(len ? len : 1);
  CHECK(s->bytes != NULL);
  if (s->bytes && len) memcpy(s->bytes, bytes, len);
  s->len = s->bytes ? len : 0;
}

static void record_tensor(trace *t, const char *name, const cq_tensor *x) {
  if (!x) {
    CHECK_MSG(0, "%s: no tensor", name);
    return;
  }
  record(t, name, x->data, cq_tensor_nbytes(x));
}

static void record_repr(trace *t, const char *name, const cq_module *m) {
  char *repr = cq_module_repr_alloc(m);
  CHECK(repr != NULL);
  if (repr) record(t, name, repr, strlen(repr));
  free(repr);
}

static void trace_free(trace *t) {
  for (int i = 0; i < t->n; i++) free(t->s[i].bytes);
  t->n = 0;
}

/* Same sections, same bytes; names the first difference. */
static void compare(const trace *want, const trace *got, const char *what) {
  CHECK_MSG(want->n == got->n, "%s: %d sections, the reference run has %d", what, got->n, want->n);
  for (int i = 0; i < want->n && i < got->n; i++) {
    const section *a = &want->s[i], *b = &got->s[i];
    if (strcmp(a->name, b->name) != 0 || a->len != b->len) {
      CHECK_MSG(0, "%s: section %d is %s (%zu bytes), the reference has %s (%zu bytes)", what, i,
                b->name, b->len, a->name, a->len);
      continue;
    }
    size_t k = 0;
    while (k < a->len && a->bytes[k] == b->bytes[k]) k++;
    CHECK_MSG(k == a->len, "%s: %s differs from byte %zu of %zu", what, a->name, k, a->len);
  }
}

/* ---- data ------------------------------------------------------------------------------------ */

static uint64_t rng;

static float uniform(void) { /* [0, 1) */
  rng = rng * 6364136223846793005ull + 1442695040888963407ull;
  return (float)(rng >> 40) / 16777216.0f;
}

static cq_tensor *random_tensor(int ndim, const int64_t *shape, float lo, float hi) {
  cq_tensor *t = NULL;
  CHECK_OK(cq_tensor_create(&t, CQ_F32, ndim, shape));
  if (!t) return NULL;
  float *d = t->data;
  for (int64_t i = 0; i < cq_tensor_numel(t); i++) d[i] = lo + (hi - lo) * uniform();
  return t;
}

static cq_module *made(cq_status st, cq_module *m) {
  CHECK_MSG(st == CQ_OK, "building a module: %s", cq_last_error());
  return m;
}

static cq_module *conv(int64_t in, int64_t out, int64_t k, int64_t pad, int64_t groups) {
  cq_conv_options o = cq_conv_defaults(in, out, k, k);
  o.padding[0] = o.padding[1] = pad;
  o.groups = groups;
  cq_module *m = NULL;
  cq_status st = cq_conv2d(&m, &o);
  return made(st, m);
}

static cq_module *linear(int64_t in, int64_t out) {
  cq_module *m = NULL;
  cq_status st = cq_linear(&m, in, out, 1);
  return made(st, m);
}

static cq_module *simple(cq_status (*ctor)(cq_module **)) {
  cq_module *m = NULL;
  cq_status st = ctor(&m);
  return made(st, m);
}

/* ---- workloads ------------------------------------------------------------------------------- */

static void run_histogram(trace *t) {
  cq_observer_config cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
  cq_observer *obs = NULL;
  CHECK_OK(cq_observer_create(&cfg, &obs));
  if (!obs) return;
  const float ranges[3][2] = {{-1.0f, 2.0f}, {-3.0f, 1.5f}, {-0.5f, 6.0f}};
  for (int b = 0; b < 3; b++) {
    const int64_t shape[2] = {400, 500}; /* 200000 elements: 6 grains */
    cq_tensor *x = random_tensor(2, shape, ranges[b][0], ranges[b][1]);
    if (x) CHECK_OK(cq_observer_update_tensor(obs, x));
    cq_tensor_free(x);
  }
  int bins = 0;
  const float *hist = cq_histogram_observer_histogram(obs, &bins);
  CHECK(hist != NULL && bins == 2048);
  if (hist) record(t, "histogram counts", hist, sizeof(float) * (size_t)bins);
  float range[2] = {0.0f, 0.0f};
  CHECK_OK(cq_histogram_observer_search(obs, &range[0], &range[1]));
  record(t, "histogram search range", range, sizeof range);
  cq_qparams qp;
  memset(&qp, 0, sizeof qp);
  CHECK_OK(cq_observer_qparams(obs, &qp));
  if (qp.scale) {
    record(t, "histogram scale", qp.scale, sizeof(float));
    record(t, "histogram zero point", qp.zero_point, sizeof(int32_t));
  }
  cq_qparams_release(&qp);
  char repr[512];
  cq_observer_repr(obs, repr, sizeof repr);
  record(t, "histogram repr", repr, strlen(repr));
  cq_observer_free(obs);
}

/* Sequential(QuantStub, Conv2d(3,16,3,p1), BN(16), ReLU, Conv2d(16,16,3,p1,groups=16), ReLU,
 * MaxPool2d(2), Flatten, Linear(1024,64), ReLU, Linear(64,10), DeQuantStub) */
static cq_module *static_model(void) {
  cq_pool_options p = cq_pool_defaults(2, 2);
  cq_module *mp = NULL, *flat = NULL, *bn = NULL, *m = NULL;
  CHECK_OK(cq_maxpool2d(&mp, &p));
  CHECK_OK(cq_flatten(&flat, 1, -1));
  CHECK_OK(cq_batchnorm2d(&bn, 16));
  cq_module *c[12] = {simple(cq_quant_stub), conv(3, 16, 3, 1, 1), bn, simple(cq_relu),
                      conv(16, 16, 3, 1, 16), simple(cq_relu), mp, flat, linear(1024, 64),
                      simple(cq_relu), linear(64, 10), simple(cq_dequant_stub)};
  CHECK_OK(cq_sequential(&m, 12, c));
  return m;
}

static void run_static(trace *t) {
  cq_module *m = static_model();
  if (!m) return;
  /* BN statistics that are not the identity, so folding it matters */
  cq_named_tensor *mean = cq_module_find_tensor(m, "2.running_mean");
  cq_named_tensor *var = cq_module_find_tensor(m, "2.running_var");
  CHECK(mean && var);
  if (mean && var) {
    float *mu = mean->tensor->data, *v = var->tensor->data;
    for (int i = 0; i < 16; i++) mu[i] = 0.1f * (float)(i % 5), v[i] = 0.5f + 0.1f * (float)i;
  }
  cq_module_train(m, 0);
  const char *g1[3] = {"1", "2", "3"}, *g2[2] = {"4", "5"}, *g3[2] = {"8", "9"};
  CHECK_OK(cq_fuse_modules(m, 3, g1));
  CHECK_OK(cq_fuse_modules(m, 2, g2));
  CHECK_OK(cq_fuse_modules(m, 2, g3));
  cq_qconfig qc;
  CHECK_OK(cq_get_default_qconfig(CQ_BACKEND_X86, 0, &qc));
  CHECK_OK(cq_module_set_qconfig(m, &qc));
  CHECK_OK(cq_prepare(m));
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  const int64_t shape[4] = {8, 3, 16, 16}; /* conv1: 884736 MACs, linear: 524288 */
  for (int b = 0; b < 3 && ctx; b++) {
    cq_tensor *x = random_tensor(4, shape, -1.0f, 1.0f), *y = NULL;
    if (x) CHECK_OK(cq_module_forward1(m, ctx, x, &y));
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
  }
  record_repr(t, "static calibrated repr", m);
  cq_set_quantized_engine(CQ_BACKEND_X86);
  CHECK_OK(cq_convert(m));
  record_repr(t, "static converted repr", m);
  cq_tensor *x = random_tensor(4, shape, -1.0f, 1.0f), *y = NULL;
  if (x && ctx) {
    CHECK_OK(cq_module_forward1(m, ctx, x, &y));
    record_tensor(t, "static output", y);
  }
  /* the same input again after resets: the ctx now hands out its recycled tensors (the output
   * lands in the buffer of the run before, zero-filled first) and nothing changes */
  for (int again = 0; again < 2 && x && y && ctx; again++) {
    const size_t bytes = cq_tensor_nbytes(y);
    unsigned char *first = malloc(bytes);
    if (!first) break;
    memcpy(first, y->data, bytes);
    const void *before = y->data;
    cq_ctx_reset(ctx);
    cq_tensor *y2 = NULL;
    CHECK_OK(cq_module_forward1(m, ctx, x, &y2));
    CHECK(y2 && cq_tensor_nbytes(y2) == bytes && !memcmp(y2->data, first, bytes));
    if (again == 1) CHECK(y2 && y2->data == before); /* steady state: recycled */
    free(first);
    y = y2;
  }
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(m);
}

static void run_dynamic(trace *t) {
  cq_module *m = NULL;
  cq_module *c[3] = {linear(256, 512), simple(cq_relu), linear(512, 128)};
  CHECK_OK(cq_sequential(&m, 3, c));
  if (!m) return;
  cq_module_train(m, 0);
  CHECK_OK(cq_quantize_dynamic(m, 0, NULL, CQ_QINT8));
  record_repr(t, "dynamic repr", m);
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  const int64_t shape[2] = {300, 256}; /* 76800 elements to scan; 39 million MACs */
  cq_tensor *x = random_tensor(2, shape, -2.0f, 3.0f), *y = NULL;
  if (x && ctx) {
    CHECK_OK(cq_module_forward1(m, ctx, x, &y));
    record_tensor(t, "dynamic output", y);
  }
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(m);
}

static cq_status record_parameter(const char *key, cq_named_tensor *nt, void *user) {
  char name[48];
  snprintf(name, sizeof name, "train %s", key);
  record_tensor(user, name, nt->tensor);
  return CQ_OK;
}

static void run_training(trace *t) {
  cq_module *m = NULL, *loss_fn = NULL;
  cq_module *flat = NULL;
  CHECK_OK(cq_flatten(&flat, 1, -1));
  cq_module *c[4] = {conv(2, 8, 3, 0, 1), simple(cq_relu), flat, linear(8 * 6 * 6, 4)};
  CHECK_OK(cq_sequential(&m, 4, c));
  CHECK_OK(cq_mse_loss(&loss_fn));
  cq_optimizer *opt = NULL;
  if (m) CHECK_OK(cq_sgd(&opt, m, 0.05f, 0.9f, 0.0f, 0.0f, 0));
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  float one = 1.0f, losses[3] = {0.0f, 0.0f, 0.0f};
  cq_tensor *seed = NULL;
  CHECK_OK(cq_tensor_wrap(&seed, CQ_F32, 0, NULL, &one));
  for (int s = 0; s < 3 && m && loss_fn && opt && ctx && seed; s++) {
    cq_ctx_set_grad(ctx, 1);
    const int64_t xs[4] = {16, 2, 8, 8}, ts[2] = {16, 4};
    cq_tensor *x = random_tensor(4, xs, -1.0f, 1.0f), *target = random_tensor(2, ts, -1.0f, 1.0f);
    cq_tensor *y = NULL, *loss = NULL;
    if (x && target) CHECK_OK(cq_module_forward1(m, ctx, x, &y));
    cq_tensor *pair[2] = {y, target};
    if (y) CHECK_OK(cq_module_forward(loss_fn, ctx, 2, pair, 1, &loss));
    if (loss) {
      cq_optimizer_zero_grad(opt);
      CHECK_OK(cq_ctx_backward(ctx, loss, seed, NULL, NULL));
      CHECK_OK(cq_optimizer_step(opt));
      losses[s] = *(const float *)loss->data;
    }
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
    cq_tensor_free(target);
  }
  CHECK(isfinite(losses[2]) && losses[2] > 0.0f);
  record(t, "train losses", losses, sizeof losses);
  if (m) CHECK_OK(cq_module_visit_tensors(m, record_parameter, t));
  cq_tensor_free(seed);
  cq_ctx_free(ctx);
  cq_optimizer_free(opt);
  cq_module_free(loss_fn);
  cq_module_free(m);
}

/* Everything, from the same seeds, with `threads` threads. */
/* ATen's add computes the elements of its 64-element blocks with an FMA and the tail without, and
 * the two differ on some input pairs: with the inputs made of such pairs, the bytes show whether
 * every thread's share took the right form (the scalar definition per element is the reference). */
static void check_qadd_forms(cq_ctx *ctx) {
  const int64_t shape[4] = {1, 24, 57, 57};
  /* qparams under which a few hundred of the 65536 pairs differ between the forms */
  const float sa = 0.0123f, sb = 0.0291f, sy = 0.003f;
  const int32_t za = 125, zb = 77, zy = 126;
  cq_qadd_aten_params p;
  cq_qdequant_params_init(sa, za, &p.a);
  cq_qdequant_params_init(sb, zb, &p.b);
  p.y = (cq_qquant_params){1.0f / sy, zy, 0, 255};
  p.relu = 0;
  int pairs[256][2], npairs = 0;
  for (int qa = 0; qa < 256 && npairs < 256; qa++) {
    for (int qb = 0; qb < 256 && npairs < 256; qb++) {
      if (cq_qadd_aten_one(qa, qb, 1, &p) != cq_qadd_aten_one(qa, qb, 0, &p)) {
        pairs[npairs][0] = qa;
        pairs[npairs++][1] = qb;
      }
    }
  }
  CHECK_MSG(npairs > 0, "no input pair tells the two forms of ATen's add apart");
  cq_tensor *a = NULL, *b = NULL, *y = NULL;
  CHECK_OK(cq_qact_new(ctx, CQ_QUINT8, 4, shape, sa, za, &a));
  CHECK_OK(cq_qact_new(ctx, CQ_QUINT8, 4, shape, sb, zb, &b));
  if (!a || !b || npairs == 0) return;
  const int64_t n = cq_tensor_numel(a), body = n - n % 64;
  uint8_t *ad = a->data, *bd = b->data;
  for (int64_t i = 0; i < n; i++) {
    ad[i] = (uint8_t)pairs[i % npairs][0];
    bd[i] = (uint8_t)pairs[i % npairs][1];
  }
  CHECK_OK(cq_qop_add(NULL, ctx, a, b, sy, zy, 0, CQ_BACKEND_X86, CQ_QLAYOUT_NCHW, &y));
  if (!y) return;
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < n; i++) {
    if (((uint8_t *)y->data)[i] != cq_qadd_aten_one(ad[i], bd[i], i < body, &p)) {
      if (first < 0) first = i;
      bad++;
    }
  }
  CHECK_MSG(bad == 0, "add with %d thread(s): %lld elements computed in the wrong form, the first "
            "at %lld of %lld", cq_get_num_threads(), (long long)bad, (long long)first,
            (long long)n);
}

static void run_qadd(trace *t) {
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  if (!ctx) return;
  const int64_t shape[4] = {1, 24, 57, 57};
  static const struct {
    cq_backend engine;
    cq_qdtype dtype;
    cq_qlayout layout;
    int relu;
    const char *name;
  } cases[] = {
      {CQ_BACKEND_X86, CQ_QUINT8, CQ_QLAYOUT_NCHW, 0, "add x86 quint8"},
      {CQ_BACKEND_X86, CQ_QUINT8, CQ_QLAYOUT_NHWC, 1, "add_relu x86 quint8 nhwc tail"},
      {CQ_BACKEND_X86, CQ_QINT8, CQ_QLAYOUT_NCHW, 1, "add_relu x86 qint8"},
      {CQ_BACKEND_QNNPACK, CQ_QUINT8, CQ_QLAYOUT_NCHW, 1, "add_relu qnnpack quint8"},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const int s8 = cases[c].dtype == CQ_QINT8;
    cq_tensor *a = NULL, *b = NULL, *y = NULL;
    CHECK_OK(cq_qact_new(ctx, cases[c].dtype, 4, shape, 0.031f, s8 ? -3 : 125, &a));
    CHECK_OK(cq_qact_new(ctx, cases[c].dtype, 4, shape, 0.047f, s8 ? 9 : 131, &b));
    if (!a || !b) break;
    uint8_t *ad = a->data, *bd = b->data;
    for (int64_t i = 0; i < cq_tensor_numel(a); i++) {
      ad[i] = (uint8_t)(uniform() * 256.0f);
      bd[i] = (uint8_t)(uniform() * 256.0f);
    }
    CHECK_OK(cq_qop_add(NULL, ctx, a, b, 0.06f, s8 ? 1 : 126, cases[c].relu, cases[c].engine,
                        cases[c].layout, &y));
    if (y) record_tensor(t, cases[c].name, y);
  }
  check_qadd_forms(ctx);
  cq_ctx_free(ctx);
}

static void run_all(int threads, trace *t) {
  CHECK_OK(cq_set_num_threads(threads));
  memset(t, 0, sizeof *t);
  rng = 20240613u;
  cq_manual_seed(7);
  run_histogram(t);
  run_static(t);
  run_dynamic(t);
  run_training(t);
  run_qadd(t);
}

int main(void) {
  static trace reference, other;
  run_all(1, &reference);
  size_t bytes = 0;
  for (int i = 0; i < reference.n; i++) bytes += reference.s[i].len;
  CHECK(reference.n >= 12);
  const int threads[5] = {1, 2, 2, 3, 1};
  for (int r = 0; r < 5; r++) {
    char what[64];
    snprintf(what, sizeof what, "%d threads (run %d)", threads[r], r + 2);
    run_all(threads[r], &other);
    compare(&reference, &other, what);
    trace_free(&other);
  }
  CHECK_OK(cq_set_num_threads(1));
  printf("test_determinism: %d sections (%zu bytes) identical over 6 runs with 1, 2 and 3 "
         "threads\n", reference.n, bytes);
  trace_free(&reference);
  return check_summary("test_determinism");
}

/* The ONNX accuracy bar on real Fashion-MNIST.
 *
 * Two classifiers trained and exported by PyTorch 1.13 (tests/data/onnx_accuracy, written by
 * tools/golden/gen_onnx_accuracy.py): a CNN (Conv-BN-ReLU-MaxPool twice, view, Linear-ReLU-Linear;
 * BN folded into the convs by the exporter, the view exported as Shape/Gather/Concat/Reshape) and a
 * row LSTM (LSTM(28, 64) over the image rows, last step, Linear). For each, cquant must
 *   1. load the .onnx file and give PyTorch's float outputs on every test image within 1e-4
 *      relative (|got - want| <= 1e-4 * max(|want|, 1): relative for logits of magnitude 1 and up,
 *      1e-4 absolute below);
 *   2. have PyTorch's float accuracy on the test images, or be at most one image off where the
 *      float outputs sit on a near tie (the test prints which image and its top-2 gap);
 *   3. quantize it (CNN: cq_prepare_graph with backend x86, calibration on the 1,000 calibration
 *      images in batches of 32 in order, cq_convert_graph; LSTM: cq_quantize_dynamic_graph) into an
 *      int8 model whose accuracy is at least the float accuracy minus 0.3 points and at least
 *      PyTorch's own int8 model's accuracy (FX graph mode / quantize_dynamic) minus 0.1 point.
 * Images: the Fashion-MNIST subset committed in data/fashion-mnist (2,000 test images, the first
 * 1,000 training images for calibration), pixels / 255. Inference runs in PyTorch's batches
 * (eval_batch in the data): the dynamic LSTM's activation scales come from the whole batch, so
 * other batches give other, equally valid, int8 outputs.
 *
 * CQ_TEST_QUICK=1 evaluates the first 500 test images only (against PyTorch's numbers on those
 * 500, which the data records), for slow builds such as the sanitizer's; calibration is the
 * same. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cquant/cquant.h"
#include "golden.h"

#define OK(expr) CHECK_OK(expr)
#define CASES CQ_TEST_DATA_DIR "/onnx_accuracy/cases.txt"
/* The data case names image files relative to the repository root. */
#define REPO_ROOT CQ_TEST_DATA_DIR "/../.."
#define CLASSES 10
#define PIXELS (28 * 28)
#define FLOAT_RTOL 1e-4

typedef struct image_set {
  float *x;   /* n x 28 x 28, pixels / 255 */
  uint8_t *y; /* n labels */
  int64_t n;
} image_set;

/* The first `limit` images (and labels when label_rel is not NULL) of the IDX files. */
static int load_images(const char *image_rel, const char *label_rel, int64_t limit,
                       image_set *out) {
  char path[1024];
  cq_tensor *img = NULL, *lab = NULL;
  memset(out, 0, sizeof *out);
  snprintf(path, sizeof path, "%s/%s", REPO_ROOT, image_rel);
  cq_status st = cq_idx_load(path, &img);
  CHECK_MSG(st == CQ_OK, "loading %s: %s", image_rel, cq_last_error());
  if (st == CQ_OK && label_rel) {
    snprintf(path, sizeof path, "%s/%s", REPO_ROOT, label_rel);
    st = cq_idx_load(path, &lab);
    CHECK_MSG(st == CQ_OK, "loading %s: %s", label_rel, cq_last_error());
  }
  int ok = st == CQ_OK && img->dtype == CQ_U8 && img->ndim == 3 && img->shape[1] == 28 &&
           img->shape[2] == 28 && img->shape[0] >= limit &&
           (!lab || (lab->dtype == CQ_U8 && lab->ndim == 1 && lab->shape[0] == img->shape[0]));
  CHECK_MSG(st != CQ_OK || ok, "%s: expected at least %lld uint8 images [N, 28, 28] with labels",
            image_rel, (long long)limit);
  if (ok) {
    out->n = limit;
    out->x = malloc(sizeof(float) * (size_t)(limit * PIXELS));
    out->y = malloc((size_t)limit);
    ok = out->x && out->y;
    CHECK_MSG(ok, "out of memory for %lld images", (long long)limit);
  }
  if (ok) {
    const uint8_t *px = img->data;
    for (int64_t i = 0; i < limit * PIXELS; i++) out->x[i] = (float)px[i] / 255.0f;
    if (lab) memcpy(out->y, lab->data, (size_t)limit);
    else memset(out->y, 0, (size_t)limit);
  }
  cq_tensor_free(img);
  cq_tensor_free(lab);
  if (!ok) {
    free(out->x);
    free(out->y);
    memset(out, 0, sizeof *out);
  }
  return ok;
}

static void free_images(image_set *s) {
  free(s->x);
  free(s->y);
}

/* One model case of cases.txt with what the test needs from it. */
typedef struct model_case {
  const char *name;
  char onnx[1024];
  int dynamic; /* mode dynamic (quantize_dynamic) rather than static (prepare / convert) */
  int in_ndim;  /* with the batch axis */
  int64_t in_shape[4];
  cq_tensor *float_logits; /* PyTorch's, [n_test, 10] */
  cq_tensor *int8_pred;    /* PyTorch's int8 model's classes, [n_test] */
  long float_correct, int8_correct; /* PyTorch's, on the images evaluated */
} model_case;

static long case_long(const golden_case *c, const char *key) {
  const char *v = golden_get(c, key);
  CHECK_MSG(v != NULL, "case %s: missing key %s", c->name, key);
  return v ? strtol(v, NULL, 10) : -1;
}

static cq_tensor *case_npy(const golden_file *g, const golden_case *c, const char *key) {
  char path[1024];
  const char *rel = golden_get(c, key);
  cq_tensor *t = NULL;
  cq_status st = rel ? cq_npy_load(golden_path(g, rel, path, sizeof path), &t) : CQ_EINVAL;
  CHECK_MSG(st == CQ_OK, "case %s: cannot load %s: %s", c->name, rel ? rel : key,
            rel ? cq_last_error() : "missing key");
  return st == CQ_OK ? t : NULL;
}

static int read_case(const golden_file *g, const golden_case *c, int quick, int64_t n_test,
                     model_case *m) {
  memset(m, 0, sizeof *m);
  m->name = c->name;
  const char *onnx = golden_get(c, "onnx"), *mode = golden_get(c, "mode");
  int64_t *dims = NULL;
  int nd = golden_get(c, "input_shape") ? golden_parse_ints(golden_get(c, "input_shape"), &dims)
                                         : -1;
  int mode_ok = mode && (strcmp(mode, "static") == 0 || strcmp(mode, "dynamic") == 0);
  CHECK_MSG(onnx && mode_ok && nd >= 1 && nd <= 3,
            "case %s: needs onnx, mode static|dynamic and input_shape (1 to 3 dims)", c->name);
  if (!onnx || !mode_ok || nd < 1 || nd > 3) {
    free(dims);
    return 0;
  }
  golden_path(g, onnx, m->onnx, sizeof m->onnx);
  m->dynamic = strcmp(mode, "dynamic") == 0;
  m->in_ndim = nd + 1;
  for (int i = 0; i < nd; i++) m->in_shape[i + 1] = dims[i];
  free(dims);
  m->float_logits = case_npy(g, c, "float_logits");
  m->int8_pred = case_npy(g, c, "int8_pred");
  m->float_correct = case_long(c, quick ? "float_correct_quick" : "float_correct");
  m->int8_correct = case_long(c, quick ? "int8_correct_quick" : "int8_correct");
  int ok = m->float_logits && m->int8_pred && m->float_logits->dtype == CQ_F32 &&
           m->float_logits->ndim == 2 && m->float_logits->shape[0] == n_test &&
           m->float_logits->shape[1] == CLASSES && m->int8_pred->dtype == CQ_U8 &&
           cq_tensor_numel(m->int8_pred) == n_test;
  CHECK_MSG(ok, "case %s: float_logits must be float32 [%lld, 10], int8_pred uint8 [%lld]",
            c->name, (long long)n_test, (long long)n_test);
  return ok;
}

static void release_case(model_case *m) {
  cq_tensor_free(m->float_logits);
  cq_tensor_free(m->int8_pred);
}

static int argmax(const float *v) {
  int best = 0;
  for (int k = 1; k < CLASSES; k++)
    if (v[k] > v[best]) best = k;
  return best;
}

/* Largest minus second largest logit. */
static float top2_gap(const float *v) {
  int best = argmax(v);
  float second = -INFINITY;
  for (int k = 0; k < CLASSES; k++)
    if (k != best && v[k] > second) second = v[k];
  return v[best] - second;
}

/* Runs `model` on images [0, n) in batches of `batch` (PyTorch's: the dynamic LSTM quantizes its
 * activations with the min/max of the whole batch, so its outputs depend on the batching); writes
 * n x 10 logits. */
static cq_status run_model(cq_module *model, cq_ctx *ctx, const model_case *mc, const image_set *s,
                           int64_t n, int64_t batch, float *logits) {
  cq_status st = CQ_OK;
  for (int64_t start = 0; start < n && st == CQ_OK; start += batch) {
    int64_t b = n - start < batch ? n - start : batch;
    int64_t shape[4];
    memcpy(shape, mc->in_shape, sizeof shape);
    shape[0] = b;
    cq_tensor *x = NULL, *y = NULL;
    st = cq_tensor_wrap(&x, CQ_F32, mc->in_ndim, shape, s->x + start * PIXELS);
    if (st == CQ_OK) st = cq_module_forward1(model, ctx, x, &y);
    if (st == CQ_OK && (y->dtype != CQ_F32 || cq_tensor_numel(y) != b * CLASSES)) {
      char buf[96];
      st = cq_fail(CQ_ESHAPE, "%s: output %s %s, expected float32 [%lld, 10]", mc->name,
                   cq_dtype_get(y->dtype)->name, cq_shape_str(y->ndim, y->shape, buf, sizeof buf),
                   (long long)b);
    }
    if (st == CQ_OK) memcpy(logits + start * CLASSES, y->data, sizeof(float) * b * CLASSES);
    cq_tensor_free(x);
    cq_ctx_reset(ctx);
  }
  return st;
}

static long count_correct(const float *logits, const uint8_t *labels, int64_t n) {
  long correct = 0;
  for (int64_t i = 0; i < n; i++) correct += argmax(logits + i * CLASSES) == labels[i];
  return correct;
}

/* Steps 1 and 2: float outputs and float accuracy against PyTorch. Returns cquant's count. */
static long check_float(const model_case *mc, const image_set *test, int64_t n,
                        const float *logits) {
  const float *want = mc->float_logits->data;
  int64_t bad = 0, worst = 0;
  double worst_err = 0.0;
  for (int64_t i = 0; i < n * CLASSES; i++) {
    double err = fabs((double)logits[i] - want[i]) / fmax(fabs((double)want[i]), 1.0);
    if (!(err <= FLOAT_RTOL)) bad++;
    if (!(err <= worst_err)) {
      worst_err = err;
      worst = i;
    }
  }
  CHECK_MSG(bad == 0,
            "%s: %lld of %lld float outputs differ from PyTorch's by more than 1e-4 relative; "
            "worst: image %lld class %lld, got %.9g want %.9g",
            mc->name, (long long)bad, (long long)(n * CLASSES), (long long)(worst / CLASSES),
            (long long)(worst % CLASSES), logits[worst], want[worst]);
  printf("%s: float outputs on %lld images: max relative error %.3g (bar 1e-4)\n", mc->name,
         (long long)n, worst_err);

  long correct = count_correct(logits, test->y, n);
  int64_t differ = 0;
  for (int64_t i = 0; i < n; i++) {
    int got = argmax(logits + i * CLASSES), ref = argmax(want + i * CLASSES);
    if (got == ref) continue;
    differ++;
    printf("%s: image %lld (label %d): cquant predicts %d, PyTorch %d; top-2 gap %.3g in "
           "cquant's logits, %.3g in PyTorch's: a near tie that float rounding can flip\n",
           mc->name, (long long)i, test->y[i], got, ref, top2_gap(logits + i * CLASSES),
           top2_gap(want + i * CLASSES));
  }
  CHECK_MSG(differ <= 1 && labs(correct - mc->float_correct) <= 1,
            "%s: float accuracy %ld/%lld, PyTorch's %ld/%lld (%lld predictions differ)", mc->name,
            correct, (long long)n, mc->float_correct, (long long)n, (long long)differ);
  return correct;
}

/* Step 3, the bars, in whole images: 100 q / n >= 100 f / n - 0.3 is 1000 q >= 1000 f - 3 n. */
static void check_int8(const model_case *mc, const image_set *test, int64_t n,
                       const float *logits, long cq_float) {
  long q = count_correct(logits, test->y, n);
  const uint8_t *pt_pred = mc->int8_pred->data;
  int64_t agree = 0;
  for (int64_t i = 0; i < n; i++) agree += argmax(logits + i * CLASSES) == pt_pred[i];
  long fl = cq_float > mc->float_correct ? cq_float : mc->float_correct;
  printf("%s: accuracy on %lld test images: float %.2f%% (PyTorch %.2f%%), cquant int8 %.2f%%, "
         "PyTorch int8 %.2f%%; cquant int8 agrees with PyTorch int8 on %.2f%% of the images\n",
         mc->name, (long long)n, 100.0 * cq_float / n, 100.0 * mc->float_correct / n,
         100.0 * q / n, 100.0 * mc->int8_correct / n, 100.0 * agree / n);
  CHECK_MSG(1000 * (int64_t)q >= 1000 * (int64_t)fl - 3 * n,
            "%s: int8 accuracy %.2f%% is more than 0.3 points below float %.2f%%", mc->name,
            100.0 * q / n, 100.0 * fl / n);
  CHECK_MSG(1000 * (int64_t)q >= 1000 * (int64_t)mc->int8_correct - n,
            "%s: int8 accuracy %.2f%% is more than 0.1 point below PyTorch's int8 %.2f%%",
            mc->name, 100.0 * q / n, 100.0 * mc->int8_correct / n);
}

/* prepare_fx -> calibration in batches of `batch`, in order -> convert_fx, backend x86. */
static cq_status quantize_static(cq_module *model, cq_ctx *ctx, const model_case *mc,
                                 const image_set *calib, int64_t batch) {
  cq_graph_quant_options o = cq_graph_quant_defaults();
  o.backend = CQ_BACKEND_X86;
  cq_status st = cq_prepare_graph(model, &o);
  for (int64_t start = 0; start < calib->n && st == CQ_OK; start += batch) {
    int64_t shape[4];
    memcpy(shape, mc->in_shape, sizeof shape);
    shape[0] = calib->n - start < batch ? calib->n - start : batch;
    cq_tensor *x = NULL, *y = NULL;
    st = cq_tensor_wrap(&x, CQ_F32, mc->in_ndim, shape, calib->x + start * PIXELS);
    if (st == CQ_OK) st = cq_module_forward1(model, ctx, x, &y);
    cq_tensor_free(x);
    cq_ctx_reset(ctx);
  }
  if (st == CQ_OK) st = cq_convert_graph(model, &o);
  return st;
}

static cq_status quantize_dynamic(cq_module *model) {
  cq_graph_quant_options o = cq_graph_quant_defaults();
  o.backend = CQ_BACKEND_X86;
  return cq_quantize_dynamic_graph(model, &o);
}

static void run_case(const model_case *mc, const image_set *test, int64_t n, int64_t eval_batch,
                     const image_set *calib, int64_t calib_batch) {
  cq_module *model = NULL;
  cq_ctx *ctx = NULL;
  float *logits = malloc(sizeof(float) * (size_t)(n * CLASSES));
  CHECK(logits != NULL);
  cq_status st = cq_onnx_load(mc->onnx, &model);
  CHECK_MSG(st == CQ_OK, "%s: cq_onnx_load: %s", mc->name, cq_last_error());
  if (st == CQ_OK) OK(st = cq_ctx_create(&ctx));
  if (st == CQ_OK && logits) {
    st = run_model(model, ctx, mc, test, n, eval_batch, logits);
    CHECK_MSG(st == CQ_OK, "%s: float forward: %s", mc->name, cq_last_error());
  }
  long cq_float = st == CQ_OK && logits ? check_float(mc, test, n, logits) : 0;
  if (st == CQ_OK && logits) {
    st = mc->dynamic ? quantize_dynamic(model)
                     : quantize_static(model, ctx, mc, calib, calib_batch);
    CHECK_MSG(st == CQ_OK, "%s: quantizing: %s", mc->name, cq_last_error());
  }
  if (st == CQ_OK && logits) {
    st = run_model(model, ctx, mc, test, n, eval_batch, logits);
    CHECK_MSG(st == CQ_OK, "%s: int8 forward: %s", mc->name, cq_last_error());
  }
  if (st == CQ_OK && logits) check_int8(mc, test, n, logits, cq_float);
  free(logits);
  cq_ctx_free(ctx);
  cq_module_free(model);
}

int main(void) {
  const char *quick_env = getenv("CQ_TEST_QUICK");
  const int quick = quick_env && *quick_env && strcmp(quick_env, "0") != 0;
  golden_file g;
  if (golden_load(CASES, &g) != 0) {
    CHECK_MSG(0, "cannot read %s", CASES);
    return check_summary("test_onnx_accuracy");
  }
  const golden_case *data = NULL;
  for (int i = 0; i < g.count; i++)
    if (strcmp(g.cases[i].name, "data") == 0) data = &g.cases[i];
  CHECK_MSG(data != NULL, "%s: no case 'data'", CASES);
  image_set calib = {0}, test = {0};
  int ok = data != NULL;
  const int64_t n_test = ok ? case_long(data, "n_test") : 0;
  const int64_t n_eval = ok ? case_long(data, quick ? "n_quick" : "n_test") : 0;
  const int64_t calib_batch = ok ? case_long(data, "calib_batch") : 0;
  const int64_t eval_batch = ok ? case_long(data, "eval_batch") : 0;
  ok = ok && n_test > 0 && n_eval > 0 && n_eval <= n_test && calib_batch > 0 && eval_batch > 0;
  ok = ok && load_images(golden_get(data, "calib_images"), NULL, case_long(data, "n_calib"),
                         &calib);
  ok = ok && load_images(golden_get(data, "test_images"), golden_get(data, "test_labels"), n_test,
                         &test);
  if (ok) {
    printf("%lld test images%s in batches of %lld, %lld calibration images in batches of %lld\n",
           (long long)n_eval, quick ? " (CQ_TEST_QUICK)" : "", (long long)eval_batch,
           (long long)calib.n, (long long)calib_batch);
    int cases_run = 0;
    for (int i = 0; i < g.count; i++) {
      const golden_case *c = &g.cases[i];
      if (strcmp(c->name, "data") == 0) continue;
      model_case mc;
      if (read_case(&g, c, quick, n_test, &mc)) {
        run_case(&mc, &test, n_eval, eval_batch, &calib, calib_batch);
        cases_run++;
      }
      release_case(&mc);
    }
    CHECK_MSG(cases_run == 2, "expected the cases cnn and lstm, ran %d", cases_run);
  }
  free_images(&calib);
  free_images(&test);
  golden_free(&g);
  return check_summary("test_onnx_accuracy");
}

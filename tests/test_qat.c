/* Quantization-aware training end to end against PyTorch 1.13 (tools/golden/gen_qat.py, cases
 * model/...): the seed's QAT block exactly (fuse_modules in training mode, stubs,
 * get_default_qconfig('fbgemm') given to prepare_qat, SGD lr 0.1, MSE, 10 steps, convert), the same
 * with get_default_qat_qconfig('fbgemm'), a Conv-BN-ReLU classifier (fuse_modules_qat, BN frozen and
 * observers disabled during training), its 1-D counterpart beside a Conv1d that has no QAT
 * module, and a model with learnable fake-quants, all from PyTorch's
 * initial weights and the same per-step inputs and targets.
 *
 * Checked: the tree after prepare_qat (exact text), every step's loss (within 1e-3 relative), the
 * trees after training and after convert (same text, numbers within tolerance), the fake-quant
 * states and BN statistics after training, and the converted model's output on a test input under
 * the qnnpack engine (quantized values within 1 of PyTorch's, dequantized within 1 LSB).
 * Also the misuse errors of the QAT passes, and that failing passes (bad qconfig, out of memory)
 * leave the model unchanged. QAT_VERBOSE=1 prints every step's loss beside PyTorch's. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cquant/cquant.h"
#include "golden.h"
#include "nn/qat/fake_quant.h"
#include "nn/qat/qat_modules.h"

#define DIR CQ_TEST_DATA_DIR "/golden/qat/"

/* ---- helpers ----------------------------------------------------------------------------------- */

static void unescape(const char *in, char *out) {
  for (; *in; in++) {
    if (in[0] == '\\' && in[1] == 'n') {
      *out++ = '\n';
      in++;
    } else if (in[0] == '\\' && in[1] == '\\') {
      *out++ = '\\';
      in++;
    } else {
      *out++ = *in;
    }
  }
  *out = '\0';
}

static char *golden_text(const golden_case *c, const char *key) {
  const char *v = golden_get(c, key);
  if (!v) return NULL;
  char *s = malloc(strlen(v) + 1);
  if (s) unescape(v, s);
  return s;
}

/* A uint8 .npy as float32 values / 256 (the generator's inputs and targets). */
static cq_tensor *load_input(const golden_file *g, const golden_case *c, const char *key) {
  const char *rel = golden_get(c, key);
  char path[1024];
  cq_tensor *raw = NULL, *x = NULL;
  if (!rel || cq_npy_load(golden_path(g, rel, path, sizeof path), &raw) != CQ_OK) {
    check_report(__FILE__, __LINE__, "case %s: cannot load %s: %s", c->name, key, cq_last_error());
    return NULL;
  }
  if (raw->dtype == CQ_U8 && cq_tensor_create(&x, CQ_F32, raw->ndim, raw->shape) == CQ_OK) {
    const uint8_t *s = raw->data;
    float *d = x->data;
    for (int64_t i = 0; i < cq_tensor_numel(raw); i++) d[i] = (float)s[i] / 256.0f;
  }
  cq_tensor_free(raw);
  return x;
}

static cq_tensor *load_npy(const golden_file *g, const golden_case *c, const char *key) {
  const char *rel = golden_get(c, key);
  char path[1024];
  cq_tensor *t = NULL;
  if (!rel || cq_npy_load(golden_path(g, rel, path, sizeof path), &t) != CQ_OK) {
    check_report(__FILE__, __LINE__, "case %s: cannot load %s", c->name, key);
    return NULL;
  }
  return t;
}

static int num_start(const char *s, const char *base) {
  const char *p = s[0] == '-' ? s + 1 : s;
  if (!isdigit((unsigned char)*p)) return 0;
  if (s > base && (isalnum((unsigned char)s[-1]) || s[-1] == '_' || s[-1] == '.')) return 0;
  return 1;
}

/* The reprs agree as text except that numbers may differ by abs_tol + rel_tol * |want| and runs
 * of white space (tensor wrapping) compare equal. */
static int repr_close(const char *name, const char *what, const char *got, const char *want,
                      double rel_tol, double abs_tol) {
  const char *a = got, *b = want;
  double worst = 0.0;
  while (*a && *b) {
    if (num_start(a, got) && num_start(b, want)) {
      char *ea, *eb;
      const double va = strtod(a, &ea), vb = strtod(b, &eb);
      const double err = fabs(va - vb);
      if (err > abs_tol + rel_tol * fabs(vb)) {
        printf("  %s %s: number %.*s differs from PyTorch's %.*s (offset %ld)\n", name, what,
               (int)(ea - a), a, (int)(eb - b), b, (long)(a - got));
        return 0;
      }
      if (err > worst) worst = err;
      a = ea;
      b = eb;
      continue;
    }
    if (isspace((unsigned char)*a) && isspace((unsigned char)*b)) {
      while (isspace((unsigned char)*a)) a++;
      while (isspace((unsigned char)*b)) b++;
      continue;
    }
    if (*a != *b) {
      printf("  %s %s: text differs at offset %ld:\n    got:  %.60s\n    want: %.60s\n", name,
             what, (long)(a - got), a, b);
      return 0;
    }
    a++;
    b++;
  }
  if (*a || *b) {
    printf("  %s %s: lengths differ\n", name, what);
    return 0;
  }
  return 1;
}

static void check_repr(const golden_case *c, const char *key, const cq_module *m, int exact) {
  char *want = golden_text(c, key);
  char *got = cq_module_repr_alloc(m);
  if (!want || !got) {
    check_report(__FILE__, __LINE__, "case %s: no %s", c->name, key);
  } else if (exact) {
    CHECK_MSG(strcmp(got, want) == 0, "case %s %s:\n--- got:\n%s\n--- want:\n%s", c->name, key,
              got, want);
  } else {
    CHECK_MSG(repr_close(c->name, key, got, want, 2e-3, 2e-4),
              "case %s %s:\n--- got:\n%s\n--- want:\n%s", c->name, key, got, want);
  }
  free(want);
  free(got);
}

/* nn.Sequential(QuantStub(), *m, DeQuantStub()); takes ownership of m. */
static cq_status add_stubs(cq_module *m, cq_module **out) {
  cq_module *seq = NULL, *stub = NULL;
  cq_status st = cq_quant_stub(&stub);
  if (st == CQ_OK) st = cq_sequential(&seq, 1, &stub);
  const int n = cq_module_num_children(m);
  for (int i = 0; i < n && st == CQ_OK; i++) {
    char name[64];
    snprintf(name, sizeof name, "%s", cq_module_child_name(m, i));
    cq_module *placeholder = NULL, *child = NULL;
    st = cq_identity(&placeholder);
    if (st == CQ_OK) st = cq_module_replace(m, name, placeholder, &child);
    if (st == CQ_OK) st = cq_sequential_append(seq, child);
  }
  cq_module_free(m);
  if (st == CQ_OK) st = cq_dequant_stub(&stub);
  if (st == CQ_OK) st = cq_sequential_append(seq, stub);
  if (st != CQ_OK) {
    cq_module_free(seq);
    return st;
  }
  *out = seq;
  return CQ_OK;
}

static cq_status sequential_of(cq_module **out, int n, cq_module **mods) {
  for (int i = 0; i < n; i++) {
    if (!mods[i]) {
      for (int j = 0; j < n; j++) cq_module_free(mods[j]);
      return cq_fail(CQ_ENOMEM, "building the model");
    }
  }
  return cq_sequential(out, n, mods);
}

/* ---- the models -------------------------------------------------------------------------------- */

static cq_module *seed_float_model(void) {
  cq_module *mods[4] = {0}, *m = NULL;
  cq_conv_options o1 = cq_conv_defaults(2, 64, 8, 8), o2 = cq_conv_defaults(64, 128, 8, 8);
  cq_conv2d(&mods[0], &o1);
  cq_relu(&mods[1]);
  cq_conv2d(&mods[2], &o2);
  cq_relu(&mods[3]);
  CHECK_OK(sequential_of(&m, 4, mods));
  return m;
}

static cq_module *seed_model(const golden_file *g, const golden_case *c, const cq_qconfig *qc) {
  cq_module *m = seed_float_model(), *s = NULL;
  char path[1024];
  if (!m) return NULL;
  CHECK_OK(cq_load_safetensors(m, golden_path(g, golden_get(c, "init"), path, sizeof path), 1));
  const char *first[2] = {"0", "1"}, *second[2] = {"2", "3"};
  CHECK_OK(cq_fuse_modules(m, 2, first));  /* PyTorch fuses Conv+ReLU in training mode too */
  CHECK_OK(cq_fuse_modules(m, 2, second));
  CHECK_OK(add_stubs(m, &s));
  if (!s) return NULL;
  cq_module_train(s, 1);
  CHECK_OK(cq_module_set_qconfig(s, qc));
  CHECK_OK(cq_prepare_qat(s));
  return s;
}

static cq_module *convbn_float_model(void) {
  cq_module *mods[17] = {0}, *m = NULL;
  cq_conv_options o1 = cq_conv_defaults(3, 8, 3, 3);
  o1.padding[0] = o1.padding[1] = 1;
  o1.bias = 0;
  cq_conv_options o2 = cq_conv_defaults(8, 8, 3, 3);
  o2.stride[0] = o2.stride[1] = 2;
  cq_conv_options o3 = cq_conv_defaults(8, 8, 1, 1);
  cq_quant_stub(&mods[0]);
  cq_conv2d(&mods[1], &o1);
  cq_batchnorm2d(&mods[2], 8);
  cq_relu(&mods[3]);
  cq_conv2d(&mods[4], &o2);
  cq_batchnorm2d(&mods[5], 8);
  cq_relu(&mods[6]);
  cq_conv2d(&mods[7], &o3);
  cq_relu(&mods[8]);
  cq_flatten(&mods[9], 1, -1);
  cq_linear(&mods[10], 72, 16, 1);
  cq_batchnorm1d(&mods[11], 16);
  cq_relu(&mods[12]);
  cq_linear(&mods[13], 16, 10, 1);
  cq_relu(&mods[14]);
  cq_linear(&mods[15], 10, 4, 1);
  cq_dequant_stub(&mods[16]);
  CHECK_OK(sequential_of(&m, 17, mods));
  return m;
}

static cq_module *convbn_model(const golden_file *g, const golden_case *c) {
  cq_module *m = convbn_float_model();
  char path[1024];
  if (!m) return NULL;
  CHECK_OK(cq_load_safetensors(m, golden_path(g, golden_get(c, "init"), path, sizeof path), 1));
  cq_module_train(m, 1);
  const char *g1[3] = {"1", "2", "3"}, *g2[2] = {"4", "5"}, *g3[2] = {"7", "8"};
  const char *g4[2] = {"10", "11"}, *g5[2] = {"13", "14"};
  CHECK_OK(cq_fuse_modules_qat(m, 3, g1));
  CHECK_OK(cq_fuse_modules_qat(m, 2, g2));
  CHECK_OK(cq_fuse_modules_qat(m, 2, g3));
  CHECK_OK(cq_fuse_modules_qat(m, 2, g4));
  CHECK_OK(cq_fuse_modules_qat(m, 2, g5));
  cq_qconfig qc;
  CHECK_OK(cq_get_default_qat_qconfig(CQ_BACKEND_QNNPACK, 1, &qc));
  CHECK_OK(cq_module_set_qconfig(m, &qc));
  CHECK_OK(cq_prepare_qat(m));
  return m;
}

static cq_module *convbn1d_model(const golden_file *g, const golden_case *c) {
  cq_module *mods[9] = {0}, *m = NULL;
  cq_conv_options o1 = cq_conv_defaults(3, 6, 3, 1);
  cq_conv_options o2 = cq_conv_defaults(6, 6, 3, 1);
  o2.padding[0] = 1;
  o2.bias = 0;
  cq_conv_options o3 = cq_conv_defaults(6, 4, 1, 1);
  cq_quant_stub(&mods[0]);
  cq_conv1d(&mods[1], &o1);
  cq_batchnorm1d(&mods[2], 6);
  cq_relu(&mods[3]);
  cq_conv1d(&mods[4], &o2);
  cq_batchnorm1d(&mods[5], 6);
  cq_conv1d(&mods[6], &o3);
  cq_relu(&mods[7]);
  cq_dequant_stub(&mods[8]);
  CHECK_OK(sequential_of(&m, 9, mods));
  if (!m) return NULL;
  char path[1024];
  CHECK_OK(cq_load_safetensors(m, golden_path(g, golden_get(c, "init"), path, sizeof path), 1));
  cq_module_train(m, 1);
  const char *g1[3] = {"1", "2", "3"}, *g2[2] = {"4", "5"};
  CHECK_OK(cq_fuse_modules_qat(m, 3, g1));
  CHECK_OK(cq_fuse_modules_qat(m, 2, g2)); /* (6) Conv1d has no QAT version: it stays float */
  cq_qconfig qc;
  CHECK_OK(cq_get_default_qat_qconfig(CQ_BACKEND_FBGEMM, 1, &qc));
  CHECK_OK(cq_module_set_qconfig(m, &qc));
  CHECK_OK(cq_prepare_qat(m));
  return m;
}

static void walk(cq_module *m, void (*fn)(cq_module *)) {
  for (int i = 0; i < cq_module_num_children(m); i++) walk(cq_module_child(m, i), fn);
  fn(m);
}

static void grad_scaling_on(cq_module *m) {
  if (cq_fake_quant_kind_of(m) == CQ_FQ_LEARNABLE) CHECK_OK(cq_learnable_set_grad_scaling(m, 1));
}

static void param_learning_on(cq_module *m) {
  if (cq_fake_quant_kind_of(m) == CQ_FQ_LEARNABLE) CHECK_OK(cq_learnable_enable_param_learning(m));
}

static cq_module *learnable_model(const golden_file *g, const golden_case *c) {
  cq_module *mods[5] = {0}, *m = NULL;
  cq_quant_stub(&mods[0]);
  cq_linear(&mods[1], 8, 16, 1);
  cq_relu(&mods[2]);
  cq_linear(&mods[3], 16, 4, 1);
  cq_dequant_stub(&mods[4]);
  CHECK_OK(sequential_of(&m, 5, mods));
  if (!m) return NULL;
  char path[1024];
  CHECK_OK(cq_load_safetensors(m, golden_path(g, golden_get(c, "init"), path, sizeof path), 1));
  const char *pair[2] = {"1", "2"};
  CHECK_OK(cq_fuse_modules(m, 2, pair));
  cq_qconfig qc;
  memset(&qc, 0, sizeof qc);
  qc.activation.present = 1;
  qc.activation.fake_quant = CQ_FQ_LEARNABLE;
  qc.activation.observer = cq_observer_defaults(CQ_OBSERVER_MOVING_AVERAGE_MINMAX);
  qc.activation.observer.has_quant_range = 1;
  qc.activation.observer.quant_min = 0;
  qc.activation.observer.quant_max = 255;
  qc.weight = qc.activation;
  qc.weight.observer.dtype = CQ_QINT8;
  qc.weight.observer.qscheme = CQ_PER_TENSOR_SYMMETRIC;
  qc.weight.observer.quant_min = -128;
  qc.weight.observer.quant_max = 127;
  CHECK_OK(cq_module_set_qconfig(m, &qc));
  CHECK_OK(cq_prepare_qat(m));
  walk(m, grad_scaling_on); /* use_grad_scaling=True in the qconfig's factories */
  return m;
}

/* ---- one QAT run ------------------------------------------------------------------------------- */

typedef void (*between_fn)(cq_module *m, int step);

static void convbn_between(cq_module *m, int k) {
  if (k == 4) cq_freeze_bn_stats(m, 1);
  if (k == 6) cq_enable_observer(m, 0);
}

static void learnable_between(cq_module *m, int k) {
  if (k == 3) walk(m, param_learning_on);
}

static double worst_loss = 0.0;

static void train(const golden_file *g, const golden_case *c, cq_module *m, float lr,
                  between_fn between) {
  float *want = NULL;
  const int steps = atoi(golden_get(c, "steps"));
  CHECK(golden_parse_floats(golden_get(c, "loss"), &want) == steps);
  cq_module *loss_fn = NULL;
  cq_optimizer *opt = NULL;
  cq_ctx *ctx = NULL;
  cq_tensor *one = NULL;
  CHECK_OK(cq_mse_loss(&loss_fn));
  CHECK_OK(cq_sgd(&opt, m, lr, 0.0f, 0.0f, 0.0f, 0));
  CHECK_OK(cq_ctx_create(&ctx));
  CHECK_OK(cq_tensor_create(&one, CQ_F32, 0, NULL));
  if (!loss_fn || !opt || !ctx || !one || !want) goto done;
  *(float *)one->data = 1.0f;
  cq_ctx_set_grad(ctx, 1);
  for (int k = 0; k < steps && check_failed == 0; k++) {
    if (between) between(m, k);
    char key[32];
    snprintf(key, sizeof key, "x_%d", k);
    cq_tensor *x = load_input(g, c, key);
    snprintf(key, sizeof key, "t_%d", k);
    cq_tensor *t = load_input(g, c, key);
    cq_tensor *y = NULL, *loss = NULL;
    if (x && t) CHECK_OK(cq_module_forward1(m, ctx, x, &y));
    cq_tensor *pair[2] = {y, t};
    if (y) CHECK_OK(cq_module_forward(loss_fn, ctx, 2, pair, 1, &loss));
    if (loss) {
      cq_optimizer_zero_grad(opt);
      CHECK_OK(cq_ctx_backward(ctx, loss, one, NULL, NULL));
      CHECK_OK(cq_optimizer_step(opt));
      const double got = *(float *)loss->data;
      const double rel = fabs(got - want[k]) / fabs((double)want[k]);
      if (rel > worst_loss) worst_loss = rel;
      if (getenv("QAT_VERBOSE")) printf("  %s step %d: loss %.9g, PyTorch %.9g\n", c->name, k, got, want[k]);
      CHECK_MSG(rel <= 1e-3, "case %s step %d: loss %.9g, PyTorch %.9g (relative error %.3g)",
                c->name, k, got, want[k], rel);
    }
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
    cq_tensor_free(t);
  }
done:
  free(want);
  cq_tensor_free(one);
  cq_ctx_free(ctx);
  cq_optimizer_free(opt);
  cq_module_free(loss_fn);
}

static int close_list(const char *name, const char *what, const float *got, const float *want,
                      int n, double rel, double abs_tol) {
  for (int i = 0; i < n; i++) {
    if (!(fabs((double)got[i] - want[i]) <= abs_tol + rel * fabs((double)want[i]))) {
      printf("  %s %s[%d]: got %.9g, want %.9g\n", name, what, i, got[i], want[i]);
      return 0;
    }
  }
  return 1;
}

/* Fake-quant buffers and observer ranges, and BN running statistics, after training. */
static void check_states(const golden_case *c, cq_module *m) {
  int nstate = 0;
  for (int i = 0;; i++) {
    const char *path = golden_get_nth(c, "state", i);
    if (!path) break;
    nstate++;
    cq_module *fq = cq_module_find(m, path);
    CHECK_MSG(fq && cq_is_fake_quant(fq), "case %s: no fake-quant at %s", c->name, path);
    if (!fq || !cq_is_fake_quant(fq)) continue;
    float *scale = NULL, *zp = NULL, *mn = NULL, *mx = NULL;
    const int ns = golden_parse_floats(golden_get_nth(c, "state_scale", i), &scale);
    const int nz = golden_parse_floats(golden_get_nth(c, "state_zero_point", i), &zp);
    const int nmn = golden_parse_floats(golden_get_nth(c, "state_min", i), &mn);
    golden_parse_floats(golden_get_nth(c, "state_max", i), &mx);
    const float *s = NULL, *zf = NULL;
    const int32_t *zi = NULL;
    const int64_t count = cq_fake_quant_buffers(fq, &s, &zi, &zf);
    CHECK_MSG(count == ns && nz == ns, "case %s %s: %lld qparams, want %d", c->name, path,
              (long long)count, ns);
    if (count == ns && nz == ns) {
      char what[256];
      snprintf(what, sizeof what, "%s.scale", path);
      CHECK_MSG(close_list(c->name, what, s, scale, ns, 2e-3, 1e-7), "case %s: %s", c->name,
                what);
      float *z = malloc(sizeof(float) * (size_t)ns);
      for (int k = 0; z && k < ns; k++) z[k] = zi ? (float)zi[k] : zf[k];
      snprintf(what, sizeof what, "%s.zero_point", path);
      if (z) {
        CHECK_MSG(close_list(c->name, what, z, zp, ns, 0.0, 1e-3), "case %s: %s", c->name, what);
      }
      free(z);
    }
    cq_observer *obs = cq_post_process_observer(fq);
    float *gmn = malloc(sizeof(float) * (size_t)(nmn > 0 ? nmn : 1));
    float *gmx = malloc(sizeof(float) * (size_t)(nmn > 0 ? nmn : 1));
    if (gmn && gmx && obs) {
      const int64_t have = cq_observer_min_max(obs, gmn, gmx, nmn);
      CHECK_MSG(have == nmn, "case %s %s: %lld observer ranges, want %d", c->name, path,
                (long long)have, nmn);
      if (have == nmn) {
        char what[256];
        snprintf(what, sizeof what, "%s min/max", path);
        CHECK_MSG(close_list(c->name, what, gmn, mn, nmn, 1e-3, 1e-5) &&
                      close_list(c->name, what, gmx, mx, nmn, 1e-3, 1e-5),
                  "case %s: %s", c->name, what);
      }
    }
    free(gmn);
    free(gmx);
    free(scale);
    free(zp);
    free(mn);
    free(mx);
  }
  CHECK(nstate > 0 || strcmp(c->name, "model/seed") == 0);
  for (int i = 0;; i++) {
    const char *path = golden_get_nth(c, "bn", i);
    if (!path) break;
    float *mean = NULL, *var = NULL;
    const int n = golden_parse_floats(golden_get_nth(c, "bn_mean", i), &mean);
    golden_parse_floats(golden_get_nth(c, "bn_var", i), &var);
    char key[256];
    snprintf(key, sizeof key, "%s.running_mean", path);
    cq_named_tensor *tm = cq_module_find_tensor(m, key);
    snprintf(key, sizeof key, "%s.running_var", path);
    cq_named_tensor *tv = cq_module_find_tensor(m, key);
    CHECK_MSG(tm && tv && cq_tensor_numel(tm->tensor) == n, "case %s: BN %s", c->name, path);
    if (tm && tv && cq_tensor_numel(tm->tensor) == n) {
      CHECK_MSG(close_list(c->name, "running_mean", tm->tensor->data, mean, n, 1e-3, 1e-5) &&
                    close_list(c->name, "running_var", tv->tensor->data, var, n, 1e-3, 1e-5),
                "case %s: BN %s statistics", c->name, path);
    }
    free(mean);
    free(var);
  }
}

static double worst_lsb = 0.0;

/* convert on qnnpack, then the test input's output: quantized values within 1 of PyTorch's. */
static void check_converted(const golden_file *g, const golden_case *c, cq_module *m) {
  cq_set_quantized_engine(CQ_BACKEND_QNNPACK);
  CHECK_OK(cq_convert(m));
  check_repr(c, "repr_converted", m, 0);
  cq_tensor *x = load_input(g, c, "test_x");
  cq_tensor *want_q = load_npy(g, c, "out_q"), *want = load_npy(g, c, "out");
  const float want_scale = (float)strtod(golden_get(c, "out_scale"), NULL);
  const int want_zp = atoi(golden_get(c, "out_zero_point"));
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  if (!x || !want_q || !want || !ctx) goto done;
  cq_tensor *h = x;
  const int n = cq_module_num_children(m);
  for (int i = 0; i < n - 1 && h; i++) {
    cq_tensor *next = NULL;
    CHECK_OK(cq_module_forward1(cq_module_child(m, i), ctx, h, &next));
    h = next;
  }
  cq_tensor *out = NULL;
  if (h) CHECK_OK(cq_module_forward1(cq_module_child(m, n - 1), ctx, h, &out));
  if (!h || !out) goto done;
  CHECK_MSG(h->dtype == CQ_U8 && h->qparams, "case %s: the output before DeQuantize is not quint8",
            c->name);
  CHECK(cq_tensor_numel(h) == cq_tensor_numel(want_q));
  if (h->dtype != CQ_U8 || !h->qparams || cq_tensor_numel(h) != cq_tensor_numel(want_q)) goto done;
  const double scale_err = fabs(h->qparams->scale[0] - want_scale) / want_scale;
  CHECK_MSG(scale_err < 2e-3 && h->qparams->zero_point[0] == want_zp,
            "case %s: output qparams (%.9g, %d), PyTorch (%.9g, %d)", c->name,
            h->qparams->scale[0], h->qparams->zero_point[0], want_scale, want_zp);
  const uint8_t *gq = h->data, *wq = want_q->data;
  const float *gf = out->data, *wf = want->data;
  int64_t off_by_one = 0, worse = 0;
  for (int64_t i = 0; i < cq_tensor_numel(h); i++) {
    const int d = abs((int)gq[i] - (int)wq[i]);
    if (d == 1) off_by_one++;
    if (d > 1) worse++;
    const double lsb = fabs((double)gf[i] - wf[i]) / want_scale;
    if (lsb > worst_lsb) worst_lsb = lsb;
    if (d > 1 && worse <= 3) {
      printf("  %s out[%lld]: %d, PyTorch %d\n", c->name, (long long)i, gq[i], wq[i]);
    }
  }
  CHECK_MSG(worse == 0, "case %s: %lld outputs differ from PyTorch's by more than 1 LSB", c->name,
            (long long)worse);
  printf("  %s: %lld of %lld outputs 1 LSB off PyTorch's, none further\n", c->name,
         (long long)off_by_one, (long long)cq_tensor_numel(h));
done:
  cq_ctx_free(ctx);
  cq_tensor_free(x);
  cq_tensor_free(want_q);
  cq_tensor_free(want);
}

static void run_model_case(const golden_file *g, const golden_case *c) {
  cq_module *m = NULL;
  float lr = 0.1f;
  between_fn between = NULL;
  if (!strcmp(c->name, "model/seed") || !strcmp(c->name, "model/seed_qat_qconfig")) {
    cq_qconfig qc;
    if (!strcmp(c->name, "model/seed")) {
      CHECK_OK(cq_get_default_qconfig(CQ_BACKEND_FBGEMM, 0, &qc));
    } else {
      CHECK_OK(cq_get_default_qat_qconfig(CQ_BACKEND_FBGEMM, 1, &qc));
    }
    m = seed_model(g, c, &qc);
  } else if (!strcmp(c->name, "model/convbn")) {
    m = convbn_model(g, c);
    lr = 0.05f;
    between = convbn_between;
  } else if (!strcmp(c->name, "model/convbn1d")) {
    m = convbn1d_model(g, c);
  } else if (!strcmp(c->name, "model/learnable")) {
    m = learnable_model(g, c);
    lr = 0.02f;
    between = learnable_between;
  } else {
    check_report(__FILE__, __LINE__, "unknown model case %s", c->name);
    return;
  }
  if (!m || check_failed) {
    cq_module_free(m);
    return;
  }
  check_repr(c, "repr_prepared", m, 1);
  train(g, c, m, lr, between);
  cq_module_train(m, 0);
  check_repr(c, "repr_trained", m, 0);
  check_states(c, m);
  check_converted(g, c, m);
  cq_module_free(m);
  printf("  %s: done\n", c->name);
}

/* ---- misuse and atomicity ---------------------------------------------------------------------- */

static void test_misuse(void) {
  cq_module *m = seed_float_model();
  if (!m) return;
  cq_qconfig qc;
  CHECK_OK(cq_get_default_qat_qconfig(CQ_BACKEND_FBGEMM, 1, &qc));
  CHECK_OK(cq_module_set_qconfig(m, &qc));
  char *before = cq_module_repr_alloc(m);
  /* prepare_qat needs training mode */
  cq_module_train(m, 0);
  CHECK_STATUS(cq_prepare_qat(m), CQ_ESTATE);
  cq_module_train(m, 1);
  /* fuse_modules_qat of a pattern PyTorch cannot fuse */
  const char *bad[2] = {"1", "2"}; /* ReLU, Conv2d */
  CHECK_STATUS(cq_fuse_modules_qat(m, 2, bad), CQ_EINVAL);
  const char *missing[2] = {"0", "9"};
  CHECK_STATUS(cq_fuse_modules_qat(m, 2, missing), CQ_EINVAL);
  const char *same[2] = {"0", "0"};
  CHECK_STATUS(cq_fuse_modules_qat(m, 2, same), CQ_EINVAL);
  /* a qconfig with an impossible dtype: nothing changes */
  cq_qconfig badq = qc;
  badq.weight.observer.dtype = CQ_QUINT4X2;
  badq.weight.observer.quant_min = 0;
  badq.weight.observer.quant_max = 15;
  CHECK_OK(cq_module_set_qconfig(m, &badq));
  CHECK(cq_prepare_qat(m) != CQ_OK);
  char *after = cq_module_repr_alloc(m);
  CHECK(before && after && strcmp(before, after) == 0);
  CHECK(cq_module_get_qconfig(cq_module_child(m, 0)) == NULL); /* propagation was undone */
  CHECK(strcmp(cq_module_type_name(cq_module_child(m, 0)), "Conv2d") == 0 &&
        !cq_is_qat_module(cq_module_child(m, 0)));
  free(after);
  /* convert before prepare */
  CHECK_STATUS(cq_convert(m), CQ_ESTATE);
  /* prepare_qat, then again: the second call fails and leaves the model as it was */
  CHECK_OK(cq_module_set_qconfig(m, &qc));
  CHECK_OK(cq_prepare_qat(m));
  char *prepared = cq_module_repr_alloc(m);
  CHECK(cq_prepare_qat(m) != CQ_OK);
  char *again = cq_module_repr_alloc(m);
  CHECK(prepared && again && strcmp(prepared, again) == 0);
  CHECK(cq_is_qat_module(cq_module_child(m, 0)));
  free(prepared);
  free(again);
  free(before);
  cq_module_free(m);
}

/* fuse_modules_qat keeps BN (ConvBn2d / ConvBnReLU2d / LinearBn1d) and prepare_qat turns them into
 * QAT modules; freezing BN survives model.train(); an unfused BN folds nothing. */
static void test_bn_modules(void) {
  cq_module *mods[6] = {0}, *m = NULL;
  cq_conv_options o = cq_conv_defaults(2, 3, 3, 3);
  cq_conv2d(&mods[0], &o);
  cq_batchnorm2d(&mods[1], 3);
  cq_relu(&mods[2]);
  cq_flatten(&mods[3], 1, -1);
  cq_linear(&mods[4], 12, 5, 0);
  cq_batchnorm1d(&mods[5], 5);
  CHECK_OK(sequential_of(&m, 6, mods));
  if (!m) return;
  const char *a[3] = {"0", "1", "2"}, *b[2] = {"4", "5"};
  const char *wrong_size[2] = {"0", "5"};
  CHECK_STATUS(cq_fuse_modules_qat(m, 2, wrong_size), CQ_EINVAL); /* Conv2d + BatchNorm1d */
  CHECK_OK(cq_fuse_modules_qat(m, 3, a));
  CHECK_OK(cq_fuse_modules_qat(m, 2, b));
  CHECK_STR_EQ(cq_module_type_name(cq_module_child(m, 0)), "ConvBnReLU2d");
  CHECK_STR_EQ(cq_module_type_name(cq_module_child(m, 1)), "Identity");
  CHECK_STR_EQ(cq_module_type_name(cq_module_child(m, 4)), "LinearBn1d");
  cq_qconfig qc;
  CHECK_OK(cq_get_default_qat_qconfig(CQ_BACKEND_QNNPACK, 1, &qc));
  CHECK_OK(cq_module_set_qconfig(m, &qc));
  CHECK_OK(cq_prepare_qat(m));
  cq_module *cbr = cq_module_child(m, 0), *lbn = cq_module_child(m, 4);
  CHECK(cq_is_qat_module(cbr) && cq_qat_has_bn(cbr) == 2);
  CHECK(cq_is_qat_module(lbn) && cq_qat_has_bn(lbn) == 1);
  cq_module *bn = cq_module_find(m, "0.bn");
  CHECK(bn && cq_module_is_training(bn));
  cq_freeze_bn_stats(m, 1);
  CHECK(bn && !cq_module_is_training(bn) && cq_qat_bn_frozen(cbr));
  CHECK(!cq_qat_bn_frozen(lbn)); /* torch.nn.intrinsic.qat.freeze_bn_stats skips LinearBn1d */
  cq_module_train(m, 1);
  /* a frozen BN keeps using running statistics: its counters do not move */
  float xd[2 * 2 * 4 * 4];
  for (int i = 0; i < 64; i++) xd[i] = (float)((i * 37) % 11) / 7.0f - 0.6f;
  const int64_t shape[4] = {2, 2, 4, 4};
  cq_tensor *x = NULL, *y = NULL;
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_tensor_wrap(&x, CQ_F32, 4, shape, xd));
  CHECK_OK(cq_ctx_create(&ctx));
  cq_named_tensor *nb = cq_module_find_tensor(m, "0.bn.num_batches_tracked");
  cq_named_tensor *nb1 = cq_module_find_tensor(m, "4.bn.num_batches_tracked");
  const int64_t before = nb ? *(int64_t *)nb->tensor->data : -1;
  const int64_t before1 = nb1 ? *(int64_t *)nb1->tensor->data : -1;
  CHECK_OK(cq_module_forward1(m, ctx, x, &y));
  CHECK(nb && *(int64_t *)nb->tensor->data == before);
  CHECK(nb1 && *(int64_t *)nb1->tensor->data == before1 + 1);
  cq_freeze_bn_stats(m, 0);
  cq_ctx_reset(ctx);
  CHECK_OK(cq_module_forward1(m, ctx, x, &y));
  CHECK(nb && *(int64_t *)nb->tensor->data == before + 1);
  /* disabling observers and fake quant reaches every fake-quant module */
  cq_enable_observer(m, 0);
  cq_enable_fake_quant(m, 0);
  cq_module *wfq = cq_module_find(m, "0.weight_fake_quant");
  CHECK(wfq && !cq_fake_quant_observer_enabled(wfq) && !cq_fake_quant_fake_quant_enabled(wfq));
  cq_module *apq = cq_module_find(m, "4.activation_post_process");
  CHECK(apq && !cq_fake_quant_observer_enabled(apq));
  cq_enable_observer(m, 1);
  cq_enable_fake_quant(m, 1);
  CHECK(wfq && cq_fake_quant_observer_enabled(wfq) && cq_fake_quant_fake_quant_enabled(wfq));
  cq_ctx_free(ctx);
  cq_tensor_free(x);
  cq_module_free(m);
}

/* Gradients of a QAT ConvBn2d against central differences of the loss (fake quant off, so the
 * function is smooth; BN frozen so the batch does not move the statistics). */
static void test_convbn_gradients(void) {
  cq_module *mods[2] = {0}, *m = NULL;
  cq_conv_options o = cq_conv_defaults(2, 3, 2, 2);
  cq_conv2d(&mods[0], &o);
  cq_batchnorm2d(&mods[1], 3);
  CHECK_OK(sequential_of(&m, 2, mods));
  if (!m) return;
  const char *pair[2] = {"0", "1"};
  CHECK_OK(cq_fuse_modules_qat(m, 2, pair));
  cq_qconfig qc;
  CHECK_OK(cq_get_default_qat_qconfig(CQ_BACKEND_QNNPACK, 1, &qc));
  CHECK_OK(cq_module_set_qconfig(m, &qc));
  CHECK_OK(cq_prepare_qat(m));
  cq_enable_fake_quant(m, 0);
  cq_freeze_bn_stats(m, 1);
  cq_named_tensor *gamma = cq_module_find_tensor(m, "0.bn.weight");
  cq_named_tensor *var = cq_module_find_tensor(m, "0.bn.running_var");
  if (!gamma || !var) return;
  ((float *)gamma->tensor->data)[1] = 1.7f;
  ((float *)var->tensor->data)[2] = 0.3f;
  double x[2 * 2 * 3 * 3];
  float xf[18];
  for (int i = 0; i < 18; i++) xf[i] = (float)(x[i] = sin(i * 1.3) * 0.8);
  const int64_t shape[4] = {1, 2, 3, 3};
  cq_tensor *xt = NULL, *y = NULL, *gx = NULL;
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_tensor_wrap(&xt, CQ_F32, 4, shape, xf));
  CHECK_OK(cq_ctx_create(&ctx));
  cq_ctx_set_grad(ctx, 1);
  /* loss = sum(y * w_k) with fixed w_k */
  CHECK_OK(cq_module_forward1(m, ctx, xt, &y));
  if (!y) return;
  cq_tensor *gy = NULL;
  CHECK_OK(cq_tensor_create(&gy, CQ_F32, y->ndim, y->shape));
  float *gyd = gy->data;
  for (int64_t i = 0; i < cq_tensor_numel(y); i++) gyd[i] = (float)cos(i * 0.7);
  cq_module_zero_grad(m);
  CHECK_OK(cq_ctx_backward(ctx, y, gy, xt, &gx));
  cq_ctx_reset(ctx);
  cq_ctx_set_grad(ctx, 0);
  const char *names[3] = {"0.weight", "0.bias", "0.bn.weight"};
  int bad = 0;
  for (int p = 0; p < 3; p++) {
    cq_named_tensor *t = cq_module_find_tensor(m, names[p]);
    for (int64_t i = 0; t && i < cq_tensor_numel(t->tensor); i++) {
      float *v = (float *)t->tensor->data + i;
      const float keep = *v, h = 1e-2f;
      double lo = 0, hi = 0;
      for (int side = 0; side < 2; side++) {
        *v = keep + (side ? h : -h);
        cq_tensor *yy = NULL;
        cq_module_forward1(m, ctx, xt, &yy);
        double sum = 0;
        for (int64_t j = 0; yy && j < cq_tensor_numel(yy); j++) {
          sum += (double)((float *)yy->data)[j] * gyd[j];
        }
        if (side) hi = sum; else lo = sum;
        cq_ctx_reset(ctx);
      }
      *v = keep;
      const double numeric = (hi - lo) / (2.0 * h);
      const double analytic = ((float *)t->grad->data)[i];
      if (fabs(numeric - analytic) > 2e-3 + 2e-3 * fabs(numeric)) {
        if (bad++ < 4) {
          printf("  %s[%lld]: analytic %.6g, numeric %.6g\n", names[p], (long long)i, analytic,
                 numeric);
        }
      }
    }
  }
  CHECK_MSG(bad == 0, "ConvBn2d: %d gradients disagree with central differences", bad);
  cq_tensor_free(gy);
  cq_tensor_free(xt);
  cq_ctx_free(ctx);
  cq_module_free(m);
}

/* Every allocation of fuse_modules_qat and prepare_qat may fail: the pass then reports CQ_ENOMEM
 * and the model prints as before (and still prepares once memory is back). */
static cq_module *small_model(void) {
  cq_module *mods[6] = {0}, *m = NULL;
  cq_conv_options o = cq_conv_defaults(2, 3, 3, 3);
  cq_quant_stub(&mods[0]);
  cq_conv2d(&mods[1], &o);
  cq_batchnorm2d(&mods[2], 3);
  cq_relu(&mods[3]);
  cq_flatten(&mods[4], 1, -1);
  cq_linear(&mods[5], 12, 4, 1);
  if (sequential_of(&m, 6, mods) != CQ_OK) return NULL;
  return m;
}

static void test_out_of_memory(void) {
  cq_qconfig qc;
  CHECK_OK(cq_get_default_qat_qconfig(CQ_BACKEND_FBGEMM, 1, &qc));
  const char *group[3] = {"1", "2", "3"};
  int fuse_ok = 0, prepare_ok = 0, unchanged = 1;
  long fail = 0;
  for (; fail < 1000 && !(fuse_ok && prepare_ok); fail++) {
    cq_module *m = small_model();
    if (!m) break;
    char *before = cq_module_repr_alloc(m);
    cq_debug_fail_alloc_after(fail);
    cq_status st = cq_fuse_modules_qat(m, 3, group);
    cq_debug_fail_alloc_after(-1);
    char *after = cq_module_repr_alloc(m);
    if (st == CQ_OK) {
      fuse_ok = 1;
    } else if (st != CQ_ENOMEM || !before || !after || strcmp(before, after) != 0) {
      unchanged = 0;
    }
    free(before);
    free(after);
    if (st == CQ_OK) {
      cq_module_set_qconfig(m, &qc);
      before = cq_module_repr_alloc(m);
      cq_debug_fail_alloc_after(fail);
      st = cq_prepare_qat(m);
      cq_debug_fail_alloc_after(-1);
      after = cq_module_repr_alloc(m);
      if (st == CQ_OK) {
        prepare_ok = 1;
      } else if (st != CQ_ENOMEM || !before || !after || strcmp(before, after) != 0 ||
                 cq_prepare_qat(m) != CQ_OK) {
        unchanged = 0;
      }
      free(before);
      free(after);
    }
    cq_module_free(m);
  }
  CHECK(fuse_ok && prepare_ok);
  CHECK_MSG(unchanged, "a pass that ran out of memory changed the model");
  printf("  fuse_modules_qat / prepare_qat: allocation failures 0..%ld handled\n", fail - 2);
}

int main(void) {
  golden_file g;
  if (golden_load(DIR "cases.txt", &g) != 0) return 1;
  test_misuse();
  test_bn_modules();
  test_convbn_gradients();
  test_out_of_memory();
  int ran = 0;
  for (int i = 0; i < g.count; i++) {
    if (strncmp(g.cases[i].name, "model/", 6) != 0) continue;
    const long failed_before = check_failed;
    check_failed = 0;
    run_model_case(&g, &g.cases[i]);
    check_failed += failed_before;
    ran++;
  }
  CHECK(ran == 5);
  printf("test_qat: %d QAT runs, worst relative loss error %.3g, worst output difference %.3g "
         "LSB\n", ran, worst_loss, worst_lsb);
  golden_free(&g);
  return check_summary("test_qat");
}

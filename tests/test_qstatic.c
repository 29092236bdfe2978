/* Post-training static quantization end to end against PyTorch 1.13: fuse_modules, QuantStub /
 * DeQuantStub, prepare, calibration, convert, and the converted model's int8 output.
 *
 * Golden cases model/<arch>_<engine> of tests/data/golden/qstatic/cases.txt
 * (tools/golden/gen_qstatic.py): the seed's static model, a Conv-BN-ReLU / MaxPool / Flatten /
 * Linear-ReLU / Linear classifier, and a residual block with FloatFunctional add and cat. Each is
 * rebuilt in C with PyTorch's weights, fused, prepared with the same qconfig, calibrated on the
 * same batches and converted; every printed tree (fused, prepared, calibrated, converted) must equal
 * PyTorch's str(model), and the quantized output (the integers before DeQuantize) must equal
 * PyTorch's:
 *   qnnpack cases: cquant's QNNPACK engine, bit for bit;
 *   onednn cases (x86 / fbgemm qconfig, PyTorch's oneDNN engine): cquant's X86 engine (FBGEMM's
 *   published rounding) and its ONEDNN engine within 1 LSB on >= 99.9% of the elements (the
 *   counts of bit-exact elements are printed: oneDNN's internal rounding is only approximated by
 *   both rules, see torch-1.13-semantics.md 5.2).
 * The golden weights and data are dyadic with few bits, so the float calibration is exact in any
 * summation order and the observers see PyTorch's activations bit for bit.
 *
 * Direct checks: convert before prepare, convert of an uncalibrated model, modules without a
 * quantized version, what convert removes and keeps, the converted weight's element size (1), and
 * allocation failures during convert (the model stays as it was). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "check.h"
#include "cquant/cquant.h"
#include "golden.h"

#define OK(expr) CHECK_OK(expr)
#define GOLDEN CQ_TEST_DATA_DIR "/golden/qstatic/cases.txt"

/* ---- builders ----------------------------------------------------------------------------------- */

/* nn.Sequential(Conv2d(2,64,3), ReLU(), Conv2d(64,128,3), ReLU()) */
static cq_module *seed_model(void) {
  cq_module *c[4] = {tb_conv2d(2, 64, 3, 0), tb_simple(cq_relu), tb_conv2d(64, 128, 3, 0),
                     tb_simple(cq_relu)};
  return tb_seq(4, c);
}

static cq_module *classifier_model(void) {
  cq_pool_options p = cq_pool_defaults(2, 2);
  cq_module *mp = NULL, *flat = NULL;
  OK(cq_maxpool2d(&mp, &p));
  OK(cq_flatten(&flat, 1, -1));
  cq_module *c[10] = {tb_simple(cq_quant_stub), tb_conv2d(3, 8, 3, 1), tb_bn2d(8), tb_simple(cq_relu), mp,
                      flat, tb_linear(128, 32), tb_simple(cq_relu), tb_linear(32, 10),
                      tb_simple(cq_dequant_stub)};
  return tb_seq(10, c);
}

/* PyTorch's M: children registered in __init__'s order, forward as a dataflow. The value of
 * cat's output is written to *cat_value (the quantized tensor before DeQuantize). */
static cq_module *residual_model(int *cat_value) {
  cq_module *g = NULL;
  OK(cq_graph(&g, 1));
  cq_module *add = NULL, *cat = NULL;
  OK(cq_add(&add));
  OK(cq_cat(&cat, 1));
  const char *names[8] = {"quant", "conv1", "bn1", "relu1", "conv2", "add", "cat", "dequant"};
  cq_module *mods[8] = {tb_simple(cq_quant_stub), tb_conv2d(4, 4, 3, 1), tb_bn2d(4), tb_simple(cq_relu),
                        tb_conv2d(4, 4, 3, 1), add, cat, tb_simple(cq_dequant_stub)};
  for (int i = 0; i < 8; i++) OK(cq_module_add_child(g, names[i], mods[i]));
  int x = 0, q, c1, b1, r1, c2, s, k, y;
  OK(cq_graph_add_node(g, "quant", NULL, 1, &x, 1, &q));
  OK(cq_graph_add_node(g, "conv1", NULL, 1, &q, 1, &c1));
  OK(cq_graph_add_node(g, "bn1", NULL, 1, &c1, 1, &b1));
  OK(cq_graph_add_node(g, "relu1", NULL, 1, &b1, 1, &r1));
  OK(cq_graph_add_node(g, "conv2", NULL, 1, &r1, 1, &c2));
  int add_in[2] = {c2, q};
  OK(cq_graph_add_node(g, "add", NULL, 2, add_in, 1, &s));
  int cat_in[2] = {s, q};
  OK(cq_graph_add_node(g, "cat", NULL, 2, cat_in, 1, &k));
  OK(cq_graph_add_node(g, "dequant", NULL, 1, &k, 1, &y));
  OK(cq_graph_set_outputs(g, 1, &y));
  OK(cq_graph_set_name(g, "M"));
  *cat_value = k;
  return g;
}

static cq_module *build(const char *arch, int *cat_value) {
  if (!strcmp(arch, "seed")) return seed_model();
  if (!strcmp(arch, "classifier")) return classifier_model();
  if (!strcmp(arch, "residual")) return residual_model(cat_value);
  return NULL;
}

/* Sequential(QuantStub(), *m, DeQuantStub()) */
static cq_module *wrap_with_stubs(cq_module *m) {
  cq_module *w = NULL;
  OK(cq_sequential(&w, 0, NULL));
  OK(cq_sequential_append(w, tb_simple(cq_quant_stub)));
  for (int i = 0; i < cq_module_num_children(m); i++) {
    cq_module *child = NULL;
    OK(cq_module_replace(m, cq_module_child_name(m, i), tb_simple(cq_identity), &child));
    OK(cq_sequential_append(w, child));
  }
  cq_module_free(m);
  OK(cq_sequential_append(w, tb_simple(cq_dequant_stub)));
  cq_module_train(w, 0);
  return w;
}

/* ---- helpers ------------------------------------------------------------------------------------ */

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

static int check_repr_golden(const cq_module *m, const golden_case *c, const char *key,
                             const char *label) {
  const char *v = golden_get(c, key);
  if (!v) {
    CHECK_MSG(0, "%s: no %s", c->name, key);
    return 0;
  }
  char *want = unescape(v);
  char *got = cq_module_repr_alloc(m);
  const int same = got && strcmp(got, want) == 0;
  CHECK_MSG(same, "%s [%s]: %s differs:\n  got:\n%s\n  want:\n%s", c->name, label, key,
            got ? got : "(null)", want);
  free(got);
  free(want);
  return same;
}

static int fuse_group(cq_module *m, const char *list) {
  char buf[256];
  const char *names[8];
  int n = 0;
  snprintf(buf, sizeof buf, "%s", list);
  for (char *tok = strtok(buf, ","); tok && n < 8; tok = strtok(NULL, ",")) names[n++] = tok;
  return cq_fuse_modules(m, n, names);
}

static cq_tensor *load_npy(const golden_file *g, const char *rel) {
  char path[1024];
  cq_tensor *t = NULL;
  if (!rel || cq_npy_load(golden_path(g, rel, path, sizeof path), &t) != CQ_OK) {
    CHECK_MSG(0, "cannot load %s: %s", rel ? rel : "(missing key)", cq_last_error());
    return NULL;
  }
  return t;
}

/* The quantized tensor the model gives DeQuantize (owned by ctx). */
static cq_status run_quantized(cq_module *m, const char *arch, int cat_value, cq_ctx *ctx,
                               cq_tensor *x, cq_tensor **q) {
  if (!strcmp(arch, "residual")) {
    int n = 0;
    const int *outs = NULL;
    cq_status st = cq_graph_outputs(m, &n, &outs);
    const int saved = n > 0 ? outs[0] : 0;
    if (st == CQ_OK) st = cq_graph_set_outputs(m, 1, &cat_value);
    if (st == CQ_OK) st = cq_module_forward1(m, ctx, x, q);
    if (n > 0) cq_graph_set_outputs(m, 1, &saved);
    return st;
  }
  cq_tensor *cur = x;
  for (int i = 0; i + 1 < cq_module_num_children(m); i++) {
    cq_tensor *next = NULL;
    cq_status st = cq_module_forward1(cq_module_child(m, i), ctx, cur, &next);
    if (st != CQ_OK) return st;
    cur = next;
  }
  *q = cur;
  return CQ_OK;
}

typedef struct run_stats {
  int64_t elements, exact, within1;
  int maxdiff;
} run_stats;

/* The whole flow of one golden case with cquant's engine `engine`. Returns 1 when the output could
 * be compared (stats filled). */
static int run_case(const golden_file *g, const golden_case *c, cq_backend engine,
                    const char *label, run_stats *stats) {
  memset(stats, 0, sizeof *stats);
  const char *arch = golden_get(c, "arch");
  int cat_value = -1;
  cq_module *m = build(arch, &cat_value);
  if (!m) {
    CHECK_MSG(0, "%s: unknown arch", c->name);
    return 0;
  }
  char path[1024];
  int ok = 1;
  cq_status st = cq_load_safetensors(m, golden_path(g, golden_get(c, "weights"), path, sizeof path),
                                     1);
  CHECK_MSG(st == CQ_OK, "%s: weights: %s", c->name, cq_last_error());
  cq_module_train(m, 0);
  for (int i = 0; golden_get_nth(c, "fuse", i); i++) {
    st = fuse_group(m, golden_get_nth(c, "fuse", i));
    CHECK_MSG(st == CQ_OK, "%s: fuse %s: %s", c->name, golden_get_nth(c, "fuse", i),
              cq_last_error());
  }
  if (!strcmp(arch, "seed")) m = wrap_with_stubs(m);
  check_repr_golden(m, c, "repr_fused", label);

  cq_backend qbackend;
  cq_qconfig qc;
  OK(cq_backend_parse(golden_get(c, "qconfig"), &qbackend));
  OK(cq_get_default_qconfig(qbackend, 0, &qc));
  OK(cq_module_set_qconfig(m, &qc));
  st = cq_prepare(m);
  CHECK_MSG(st == CQ_OK, "%s: prepare: %s", c->name, cq_last_error());
  check_repr_golden(m, c, "repr_prepared", label);

  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  for (int i = 0; golden_get_nth(c, "calib", i); i++) {
    cq_tensor *x = load_npy(g, golden_get_nth(c, "calib", i));
    cq_tensor *y = NULL;
    if (x) {
      st = cq_module_forward1(m, ctx, x, &y);
      CHECK_MSG(st == CQ_OK, "%s: calibration batch %d: %s", c->name, i, cq_last_error());
    }
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
  }
  check_repr_golden(m, c, "repr_calibrated", label);

  cq_set_quantized_engine(engine);
  st = cq_convert(m);
  CHECK_MSG(st == CQ_OK, "%s [%s]: convert: %s", c->name, label, cq_last_error());
  check_repr_golden(m, c, "repr_converted", label);

  cq_tensor *x = load_npy(g, golden_get(c, "input"));
  cq_tensor *want = load_npy(g, golden_get(c, "output_q"));
  cq_tensor *q = NULL, *y = NULL;
  if (x && want && st == CQ_OK) {
    st = run_quantized(m, arch, cat_value, ctx, x, &q);
    CHECK_MSG(st == CQ_OK, "%s [%s]: quantized forward: %s", c->name, label, cq_last_error());
  }
  if (q) {
    const float want_scale = (float)strtod(golden_get(c, "out_scale"), NULL);
    const int32_t want_zp = (int32_t)strtol(golden_get(c, "out_zero_point"), NULL, 10);
    CHECK_MSG(q->qparams && q->dtype == CQ_U8 && q->qparams->scale[0] == want_scale &&
                  q->qparams->zero_point[0] == want_zp,
              "%s [%s]: output qparams (%.9g, %d), want (%.9g, %d)", c->name, label,
              q->qparams ? (double)q->qparams->scale[0] : 0.0,
              q->qparams ? q->qparams->zero_point[0] : -1, (double)want_scale, want_zp);
    const int same_shape = q->ndim == want->ndim &&
                           memcmp(q->shape, want->shape, sizeof(int64_t) * (size_t)q->ndim) == 0;
    CHECK_MSG(same_shape && want->dtype == CQ_U8, "%s [%s]: output shape differs", c->name, label);
    if (same_shape && want->dtype == CQ_U8 && q->dtype == CQ_U8) {
      const uint8_t *a = q->data, *b = want->data;
      stats->elements = cq_tensor_numel(q);
      for (int64_t i = 0; i < stats->elements; i++) {
        const int d = abs((int)a[i] - (int)b[i]);
        if (d == 0) stats->exact++;
        if (d <= 1) stats->within1++;
        if (d > stats->maxdiff) stats->maxdiff = d;
      }
    } else {
      ok = 0;
    }
    /* the float output is DeQuantize of those integers */
    cq_ctx_reset(ctx);
    st = cq_module_forward1(m, ctx, x, &y);
    CHECK_MSG(st == CQ_OK && y && y->dtype == CQ_F32, "%s [%s]: forward: %s", c->name, label,
              cq_last_error());
  } else {
    ok = 0;
  }
  cq_tensor_free(x);
  cq_tensor_free(want);
  cq_ctx_free(ctx);
  cq_module_free(m);
  return ok;
}

static void test_golden_models(void) {
  golden_file g;
  if (golden_load(GOLDEN, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN);
    return;
  }
  int cases = 0;
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    if (strncmp(c->name, "model/", 6) != 0) continue;
    cases++;
    const char *engine = golden_get(c, "engine");
    run_stats s;
    if (!strcmp(engine, "qnnpack")) {
      if (run_case(&g, c, CQ_BACKEND_QNNPACK, "qnnpack", &s)) {
        CHECK_MSG(s.exact == s.elements, "%s: %lld of %lld outputs differ (max %d LSB)", c->name,
                  (long long)(s.elements - s.exact), (long long)s.elements, s.maxdiff);
        printf("%-24s qnnpack: %lld/%lld outputs bit-exact\n", c->name, (long long)s.exact,
               (long long)s.elements);
      }
    } else {
      if (run_case(&g, c, CQ_BACKEND_ONEDNN, "onednn", &s)) {
        CHECK_MSG(s.within1 * 1000 >= s.elements * 999,
                  "%s: onednn engine: only %lld of %lld within 1 LSB", c->name,
                  (long long)s.within1, (long long)s.elements);
        printf("%-24s onednn:  %lld/%lld bit-exact, %lld within 1 LSB (max %d)\n", c->name,
               (long long)s.exact, (long long)s.elements, (long long)s.within1, s.maxdiff);
      }
      if (run_case(&g, c, CQ_BACKEND_X86, "x86", &s)) {
        CHECK_MSG(s.within1 * 1000 >= s.elements * 999,
                  "%s: x86 rules vs PyTorch's onednn: only %lld of %lld within 1 LSB", c->name,
                  (long long)s.within1, (long long)s.elements);
        printf("%-24s x86:     %lld/%lld bit-exact, %lld within 1 LSB (max %d) vs PyTorch's "
               "onednn\n",
               c->name, (long long)s.exact, (long long)s.elements, (long long)s.within1,
               s.maxdiff);
      }
    }
  }
  CHECK_INT_EQ(cases, 6);
  golden_free(&g);
}

/* ---- convert: misuse and what it leaves ---------------------------------------------------------- */

static cq_module *small_model(void) {
  cq_module *c[5] = {tb_simple(cq_quant_stub), tb_linear(4, 3), tb_simple(cq_relu), tb_linear(3, 2),
                     tb_simple(cq_dequant_stub)};
  cq_module *m = tb_seq(5, c);
  cq_module_train(m, 0);
  const char *g[2] = {"1", "2"};
  OK(cq_fuse_modules(m, 2, g));
  cq_qconfig qc;
  OK(cq_get_default_qconfig(CQ_BACKEND_QNNPACK, 0, &qc));
  OK(cq_module_set_qconfig(m, &qc));
  return m;
}

static void calibrate(cq_module *m, int64_t features) {
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = NULL, *y = NULL;
  int64_t shape[2] = {3, features};
  OK(cq_tensor_create(&x, CQ_F32, 2, shape));
  float *d = x->data;
  for (int64_t i = 0; i < 3 * features; i++) d[i] = (float)sin(0.7 * (double)i);
  OK(cq_module_forward1(m, ctx, x, &y));
  cq_tensor_free(x);
  cq_ctx_free(ctx);
}

static void check_unchanged(cq_module *m, const char *before, const char *what) {
  char *now = cq_module_repr_alloc(m);
  CHECK_MSG(now && !strcmp(now, before), "%s changed the model:\n%s", what, now ? now : "");
  free(now);
}

static int count_qconfigs(const cq_module *m) {
  int n = cq_module_get_qconfig(m) != NULL;
  for (int i = 0; i < cq_module_num_children(m); i++) n += count_qconfigs(cq_module_child(m, i));
  return n;
}

static void test_convert_misuse(void) {
  /* convert before prepare */
  cq_module *m = small_model();
  char *before = cq_module_repr_alloc(m);
  CHECK_STATUS(cq_convert(m), CQ_ESTATE);
  CHECK(strstr(cq_last_error(), "not prepared") != NULL);
  check_unchanged(m, before, "convert before prepare");
  free(before);
  CHECK_STATUS(cq_convert(NULL), CQ_EINVAL);

  /* prepared, never calibrated */
  OK(cq_prepare(m));
  before = cq_module_repr_alloc(m);
  CHECK_STATUS(cq_convert(m), CQ_ESTATE);
  CHECK(strstr(cq_last_error(), "calibrate") != NULL);
  check_unchanged(m, before, "convert without calibration");
  free(before);

  /* calibrated: converts; observers and qconfigs gone; a second convert is refused */
  calibrate(m, 4);
  cq_set_quantized_engine(CQ_BACKEND_QNNPACK);
  OK(cq_convert(m));
  CHECK_INT_EQ(count_qconfigs(m), 0);
  char *after = cq_module_repr_alloc(m);
  CHECK(after && !strstr(after, "Observer") && strstr(after, "QuantizedLinearReLU(") &&
        strstr(after, "QuantizedLinear(") && strstr(after, "Quantize(scale=") &&
        strstr(after, "DeQuantize()") && strstr(after, "(2): Identity()"));
  free(after);
  CHECK_STATUS(cq_convert(m), CQ_ESTATE);
  /* the converted model runs float -> float */
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = NULL, *y = NULL;
  int64_t shape[2] = {2, 4};
  OK(cq_tensor_create(&x, CQ_F32, 2, shape));
  OK(cq_module_forward1(m, ctx, x, &y));
  CHECK(y && y->dtype == CQ_F32 && y->ndim == 2 && y->shape[1] == 2);
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(m);

  /* a module PyTorch maps but cquant cannot convert yet: refused, model unchanged */
  cq_module *c[3] = {tb_simple(cq_quant_stub), tb_bn2d(2), tb_simple(cq_dequant_stub)};
  m = tb_seq(3, c);
  cq_module_train(m, 0);
  cq_qconfig qc;
  OK(cq_get_default_qconfig(CQ_BACKEND_QNNPACK, 0, &qc));
  OK(cq_module_set_qconfig(m, &qc));
  OK(cq_prepare(m));
  {
    cq_ctx *cx = NULL;
    OK(cq_ctx_create(&cx));
    cq_tensor *xt = NULL, *yt = NULL;
    int64_t s4[4] = {1, 2, 2, 2};
    OK(cq_tensor_create(&xt, CQ_F32, 4, s4));
    ((float *)xt->data)[3] = 1.0f;
    OK(cq_module_forward1(m, cx, xt, &yt));
    cq_tensor_free(xt);
    cq_ctx_free(cx);
  }
  before = cq_module_repr_alloc(m);
  CHECK_STATUS(cq_convert(m), CQ_EUNSUPPORTED);
  CHECK(strstr(cq_last_error(), "1 (BatchNorm2d)") != NULL);
  check_unchanged(m, before, "refused convert");
  free(before);
  cq_module_free(m);
}

/* Unmapped modules stay; ReLU6 and Dropout become their quantized versions; qconfig None stays
 * float. */
static void test_convert_mapping(void) {
  cq_module *r6 = NULL, *drop = NULL, *flat = NULL;
  OK(cq_relu6(&r6));
  OK(cq_dropout(&drop, 0.25f));
  OK(cq_flatten(&flat, 1, -1));
  cq_module *c[8] = {tb_simple(cq_quant_stub), tb_linear(4, 4), r6, drop, flat, tb_simple(cq_relu),
                     tb_linear(4, 4), tb_simple(cq_dequant_stub)};
  cq_module *m = tb_seq(8, c);
  cq_module_train(m, 0);
  cq_qconfig qc, none;
  memset(&none, 0, sizeof none);
  OK(cq_get_default_qconfig(CQ_BACKEND_QNNPACK, 0, &qc));
  OK(cq_module_set_qconfig(m, &qc));
  OK(cq_module_set_qconfig(cq_module_child(m, 6), &none)); /* stays float */
  OK(cq_prepare(m));
  calibrate(m, 4);
  cq_set_quantized_engine(CQ_BACKEND_QNNPACK);
  OK(cq_convert(m));
  static const char *want[8] = {"Quantize", "QuantizedLinear", "QuantizedReLU6", "QuantizedDropout",
                                "Flatten", "ReLU", "Linear", "DeQuantize"};
  for (int i = 0; i < 8; i++) {
    const char *got = cq_module_type_name(cq_module_child(m, i));
    CHECK_MSG(!strcmp(got, want[i]), "child %d is %s, want %s", i, got, want[i]);
  }
  char *r = cq_module_repr_alloc(cq_module_child(m, 3));
  CHECK_STR_EQ(r, "QuantizedDropout(p=0.25, inplace=False)");
  free(r);
  CHECK_INT_EQ(count_qconfigs(m), 0);
  cq_module_free(m);
}

/* QuantWrapper(module): the wrapper's stubs and the module are observed and converted. */
static void test_quant_wrapper(void) {
  cq_module *w = NULL;
  OK(cq_quant_wrapper(&w, tb_linear(4, 3)));
  cq_module_train(w, 0);
  cq_qconfig qc;
  OK(cq_get_default_qconfig(CQ_BACKEND_QNNPACK, 0, &qc));
  OK(cq_module_set_qconfig(w, &qc));
  OK(cq_prepare(w));
  char *r = cq_module_repr_alloc(w);
  CHECK_STR_EQ(r, "QuantWrapper(\n"
                  "  (quant): QuantStub(\n"
                  "    (activation_post_process): HistogramObserver(min_val=inf, max_val=-inf)\n"
                  "  )\n"
                  "  (dequant): DeQuantStub()\n"
                  "  (module): Linear(\n"
                  "    in_features=4, out_features=3, bias=True\n"
                  "    (activation_post_process): HistogramObserver(min_val=inf, max_val=-inf)\n"
                  "  )\n"
                  ")");
  free(r);
  calibrate(w, 4);
  cq_set_quantized_engine(CQ_BACKEND_QNNPACK);
  OK(cq_convert(w));
  CHECK(!strcmp(cq_module_type_name(cq_module_find(w, "quant")), "Quantize"));
  CHECK(!strcmp(cq_module_type_name(cq_module_find(w, "dequant")), "DeQuantize"));
  CHECK(!strcmp(cq_module_type_name(cq_module_find(w, "module")), "QuantizedLinear"));
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = NULL, *y = NULL;
  int64_t shape[2] = {2, 4};
  OK(cq_tensor_create(&x, CQ_F32, 2, shape));
  OK(cq_module_forward1(w, ctx, x, &y));
  CHECK(y && y->dtype == CQ_F32 && y->shape[1] == 3);
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(w);
}

/* The seed's check: m[1].weight().element_size() == 1. */
static void test_weight_element_size(void) {
  cq_module *m = seed_model();
  cq_module_train(m, 0);
  const char *g1[2] = {"0", "1"}, *g2[2] = {"2", "3"};
  OK(cq_fuse_modules(m, 2, g1));
  OK(cq_fuse_modules(m, 2, g2));
  m = wrap_with_stubs(m);
  cq_qconfig qc;
  OK(cq_get_default_qconfig(CQ_BACKEND_FBGEMM, 0, &qc));
  OK(cq_module_set_qconfig(m, &qc));
  OK(cq_prepare(m));
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = NULL, *y = NULL;
  int64_t shape[4] = {1, 2, 8, 8};
  OK(cq_tensor_create(&x, CQ_F32, 4, shape));
  for (int i = 0; i < 128; i++) ((float *)x->data)[i] = (float)(i % 7) / 7.0f;
  OK(cq_module_forward1(m, ctx, x, &y));
  cq_set_quantized_engine(CQ_BACKEND_X86);
  OK(cq_convert(m));
  cq_named_tensor *w = cq_module_find_tensor(m, "1.weight");
  CHECK(w != NULL);
  if (w) {
    CHECK_INT_EQ(cq_dtype_get(w->tensor->dtype)->size, 1);
    CHECK(w->tensor->qparams && w->tensor->qparams->count == 64); /* per channel (x86 default) */
  }
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(m);
}

/* Allocation failures during convert leave the prepared model as it was. */
static void test_convert_out_of_memory(void) {
  int succeeded = 0;
  for (long n = 0; n < 400 && !succeeded; n++) {
    cq_module *m = small_model();
    OK(cq_prepare(m));
    calibrate(m, 4);
    char *before = cq_module_repr_alloc(m);
    cq_set_quantized_engine(CQ_BACKEND_QNNPACK);
    cq_debug_fail_alloc_after(n);
    cq_status st = cq_convert(m);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      succeeded = 1;
    } else {
      CHECK_MSG(st == CQ_ENOMEM, "allocation failure %ld gave %s (%s)", n, cq_status_str(st),
                cq_last_error());
      check_unchanged(m, before, "convert under allocation failure");
    }
    free(before);
    cq_module_free(m);
  }
  CHECK_MSG(succeeded, "convert never succeeded within 400 allocations");
}

static void quiet(const char *message, void *user) {
  (void)message;
  (void)user;
}

int main(void) {
  cq_set_warning_handler(quiet, NULL);
  const cq_backend engine = cq_quantized_engine();
  test_golden_models();
  test_convert_misuse();
  test_convert_mapping();
  test_quant_wrapper();
  test_weight_element_size();
  test_convert_out_of_memory();
  cq_set_quantized_engine(engine);
  return check_summary("test_qstatic");
}

/* Graph-mode quantization (include/cquant/graph_mode.h) against PyTorch 1.13.
 *
 * The models of tests/data/golden/qstatic (tools/golden/gen_qstatic.py) are built here as plain
 * float models without stubs: the classifier as a Sequential, the residual block as a graph. The
 * graph passes must place the stubs where the PyTorch model of the golden data has them, fuse the
 * same groups, and give PyTorch's quantized outputs bit for bit under qnnpack. Then: exclusion and
 * overrides, dynamic mode, the visit hook, and the errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "build.h"
#include "check.h"
#include "cquant/cquant.h"
#include "golden.h"

#define OK(expr) CHECK_OK(expr)
#define GOLDEN CQ_TEST_DATA_DIR "/golden/qstatic/cases.txt"

/* The golden classifier without its stubs: Identity stands where QuantStub / DeQuantStub were, so
 * the state-dict keys stay "1.weight", ... */
static cq_module *classifier_float(void) {
  cq_pool_options p = cq_pool_defaults(2, 2);
  cq_module *mp = NULL, *flat = NULL, *s = NULL;
  OK(cq_maxpool2d(&mp, &p));
  OK(cq_flatten(&flat, 1, -1));
  cq_module *c[10] = {tb_simple(cq_identity), tb_conv2d(3, 8, 3, 1), tb_bn2d(8), tb_simple(cq_relu), mp,
                      flat, tb_linear(128, 32), tb_simple(cq_relu), tb_linear(32, 10),
                      tb_simple(cq_identity)};
  return tb_made(cq_sequential(&s, 10, c), &s);
}

/* y = conv2(relu1(bn1(conv1(x)))); out = cat([add(y, x), x], 1), float. */
static cq_module *residual_float(void) {
  cq_module *g = NULL, *add = NULL, *cat = NULL;
  OK(cq_graph(&g, 1));
  OK(cq_add(&add));
  OK(cq_cat(&cat, 1));
  int x = 0, c1, b1, r1, c2, s, k;
  OK(cq_graph_add_node(g, "conv1", tb_conv2d(4, 4, 3, 1), 1, &x, 1, &c1));
  OK(cq_graph_add_node(g, "bn1", tb_bn2d(4), 1, &c1, 1, &b1));
  OK(cq_graph_add_node(g, "relu1", tb_simple(cq_relu), 1, &b1, 1, &r1));
  OK(cq_graph_add_node(g, "conv2", tb_conv2d(4, 4, 3, 1), 1, &r1, 1, &c2));
  int add_in[2] = {c2, x};
  OK(cq_graph_add_node(g, "add", add, 2, add_in, 1, &s));
  int cat_in[2] = {s, x};
  OK(cq_graph_add_node(g, "cat", cat, 2, cat_in, 1, &k));
  OK(cq_graph_set_outputs(g, 1, &k));
  OK(cq_graph_set_name(g, "M"));
  return g;
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

static int count_type(const cq_module *m, const char *type) {
  int n = strcmp(cq_module_type_name(m), type) == 0;
  for (int i = 0; i < cq_module_num_children(m); i++) n += count_type(cq_module_child(m, i), type);
  return n;
}

/* prepare -> calibrate on the golden batches -> convert -> the output, as floats (ctx-owned). */
static cq_tensor *quantize_and_run(const golden_file *g, const golden_case *c, cq_module *m,
                                   cq_backend backend, cq_ctx *ctx) {
  cq_graph_quant_options o = cq_graph_quant_defaults();
  OK(cq_backend_parse(golden_get(c, "qconfig"), &o.backend));
  cq_status st = cq_prepare_graph(m, &o);
  CHECK_MSG(st == CQ_OK, "%s: prepare_graph: %s", c->name, cq_last_error());
  if (st != CQ_OK) return NULL;
  for (int i = 0; golden_get_nth(c, "calib", i); i++) {
    cq_tensor *x = load_npy(g, golden_get_nth(c, "calib", i));
    cq_tensor *y = NULL;
    if (x) OK(cq_module_forward1(m, ctx, x, &y));
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
  }
  o.backend = backend;
  st = cq_convert_graph(m, &o);
  CHECK_MSG(st == CQ_OK, "%s: convert_graph: %s", c->name, cq_last_error());
  if (st != CQ_OK) return NULL;
  cq_tensor *x = load_npy(g, golden_get(c, "input"));
  cq_tensor *y = NULL;
  if (x) {
    st = cq_module_forward1(m, ctx, x, &y);
    CHECK_MSG(st == CQ_OK, "%s: quantized forward: %s", c->name, cq_last_error());
  }
  cq_tensor_free(x);
  return st == CQ_OK ? y : NULL;
}

/* The float output PyTorch's quantized model gives: DeQuantize of the golden integers. */
static void check_against_golden(const golden_file *g, const golden_case *c, const cq_tensor *y) {
  cq_tensor *want = load_npy(g, golden_get(c, "output_q"));
  if (!want || !y) {
    cq_tensor_free(want);
    return;
  }
  const float scale = (float)strtod(golden_get(c, "out_scale"), NULL);
  const int32_t zp = (int32_t)strtol(golden_get(c, "out_zero_point"), NULL, 10);
  const int64_t n = cq_tensor_numel(want);
  CHECK_MSG(y->dtype == CQ_F32 && cq_tensor_numel(y) == n, "%s: output shape or dtype differs",
            c->name);
  if (y->dtype == CQ_F32 && cq_tensor_numel(y) == n) {
    const float *a = y->data;
    const uint8_t *q = want->data;
    int64_t same = 0;
    for (int64_t i = 0; i < n; i++) {
      const float expect = (float)((int32_t)q[i] - zp) * scale;
      same += check_f32_bits(a[i]) == check_f32_bits(expect);
    }
    CHECK_MSG(same == n, "%s: %lld of %lld outputs differ from PyTorch's", c->name,
              (long long)(n - same), (long long)n);
    printf("%-24s graph mode, qnnpack: %lld/%lld outputs equal PyTorch's\n", c->name,
           (long long)same, (long long)n);
  }
  cq_tensor_free(want);
}

static void test_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN);
    return;
  }
  int ran = 0;
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    const char *arch = golden_get(c, "arch");
    if (strncmp(c->name, "model/", 6) != 0 || strcmp(golden_get(c, "engine"), "qnnpack") != 0) {
      continue;
    }
    cq_module *m = !strcmp(arch, "classifier") ? classifier_float()
                   : !strcmp(arch, "residual") ? residual_float() : NULL;
    if (!m) continue;
    ran++;
    char path[1024];
    OK(cq_load_safetensors(m, golden_path(&g, golden_get(c, "weights"), path, sizeof path), 1));
    cq_module_train(m, 0);
    cq_ctx *ctx = NULL;
    OK(cq_ctx_create(&ctx));
    cq_tensor *y = quantize_and_run(&g, c, m, CQ_BACKEND_QNNPACK, ctx);
    check_against_golden(&g, c, y);
    /* the stubs and fusions PyTorch's model has */
    CHECK_INT_EQ(count_type(m, "Quantize"), 1);
    CHECK_INT_EQ(count_type(m, "DeQuantize"), 1);
    if (!strcmp(arch, "classifier")) {
      CHECK_INT_EQ(count_type(m, "QuantizedConvReLU2d"), 1);
      CHECK_INT_EQ(count_type(m, "QuantizedLinearReLU"), 1);
      CHECK_INT_EQ(count_type(m, "QuantizedLinear"), 1);
      CHECK(cq_is_graph(m));
      CHECK(strncmp(cq_module_type_name(m), "GraphModule", 11) == 0);
    } else {
      CHECK_INT_EQ(count_type(m, "QuantizedConvReLU2d"), 1);
      CHECK_INT_EQ(count_type(m, "QuantizedConv2d"), 1);
      CHECK_INT_EQ(count_type(m, "QFunctional"), 2);
    }
    cq_ctx_free(ctx);
    cq_module_free(m);
  }
  CHECK_INT_EQ(ran, 2);
  golden_free(&g);
}

/* A small graph with a float-only node in the middle: conv -> relu -> softmax(dim 1) -> conv. */
static cq_module *mixed_graph(void) {
  cq_manual_seed(7);
  cq_module *g = NULL, *sm = NULL;
  OK(cq_graph(&g, 1));
  OK(cq_softmax(&sm, 1));
  int x = 0, a, b, c, d;
  OK(cq_graph_add_node(g, "conv_a", tb_conv2d(3, 4, 3, 1), 1, &x, 1, &a));
  OK(cq_graph_add_node(g, "relu", tb_simple(cq_relu), 1, &a, 1, &b));
  OK(cq_graph_add_node(g, "softmax", sm, 1, &b, 1, &c));
  OK(cq_graph_add_node(g, "conv_b", tb_conv2d(4, 2, 1, 0), 1, &c, 1, &d));
  OK(cq_graph_set_outputs(g, 1, &d));
  cq_module_train(g, 0);
  return g;
}

static cq_tensor *ramp(int64_t n, int64_t c, int64_t h, int64_t w, float step) {
  int64_t shape[4] = {n, c, h, w};
  cq_tensor *t = NULL;
  OK(cq_tensor_create(&t, CQ_F32, 4, shape));
  float *p = t->data;
  for (int64_t i = 0; i < n * c * h * w; i++) p[i] = sinf((float)i * step);
  return t;
}

static void calibrate_and_convert(cq_module *g, const cq_graph_quant_options *o) {
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  for (int i = 0; i < 3; i++) {
    cq_tensor *x = ramp(2, 3, 5, 5, 0.37f + 0.1f * (float)i), *y = NULL;
    OK(cq_module_forward1(g, ctx, x, &y));
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
  }
  OK(cq_convert_graph(g, o));
  cq_ctx_free(ctx);
}

static void test_float_regions(void) {
  cq_module *g = mixed_graph();
  cq_graph_quant_options o = cq_graph_quant_defaults();
  OK(cq_prepare_graph(g, &o));
  calibrate_and_convert(g, &o);
  /* conv_a and relu quantized, softmax float between a DeQuantize and a Quantize, conv_b
   * quantized, and a DeQuantize at the output */
  CHECK_INT_EQ(count_type(g, "Quantize"), 2);
  CHECK_INT_EQ(count_type(g, "DeQuantize"), 2);
  CHECK_INT_EQ(count_type(g, "QuantizedConvReLU2d"), 1);
  CHECK_INT_EQ(count_type(g, "QuantizedConv2d"), 1);
  CHECK_INT_EQ(count_type(g, "Softmax"), 1);
  CHECK(cq_module_find(g, "input_quant") != NULL);
  CHECK(cq_module_find(g, "relu_dequant") != NULL);
  CHECK(cq_module_find(g, "softmax_quant") != NULL);
  CHECK(cq_module_find(g, "conv_b_dequant") != NULL);
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = ramp(1, 3, 5, 5, 0.5f), *y = NULL;
  OK(cq_module_forward1(g, ctx, x, &y));
  CHECK(y && y->dtype == CQ_F32 && y->ndim == 4 && y->shape[1] == 2);
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(g);

  /* excluding conv_b by name: the model ends in float after softmax */
  g = mixed_graph();
  const char *ex[1] = {"conv_b"};
  o.nexclude = 1;
  o.exclude = ex;
  OK(cq_prepare_graph(g, &o));
  calibrate_and_convert(g, &o);
  CHECK_INT_EQ(count_type(g, "Quantize"), 1);
  CHECK_INT_EQ(count_type(g, "DeQuantize"), 1);
  CHECK_INT_EQ(count_type(g, "Conv2d"), 1);
  cq_module_free(g);

  /* excluding by class: nothing quantizable is left */
  g = mixed_graph();
  const char *ex2[1] = {"Conv2d"};
  o.exclude = ex2;
  char *before = cq_module_repr_alloc(g);
  CHECK_STATUS(cq_prepare_graph(g, &o), CQ_EINVAL);
  char *after = cq_module_repr_alloc(g);
  CHECK(before && after && strcmp(before, after) == 0);
  free(before);
  free(after);
  cq_module_free(g);
}

static void test_errors(void) {
  cq_module *g = mixed_graph();
  cq_graph_quant_options o = cq_graph_quant_defaults();
  const char *ex[1] = {"no_such_node"};
  o.nexclude = 1;
  o.exclude = ex;
  CHECK_STATUS(cq_prepare_graph(g, &o), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "no_such_node") != NULL);
  o = cq_graph_quant_defaults();
  o.observer = "histogramm";
  CHECK_STATUS(cq_prepare_graph(g, &o), CQ_EINVAL);
  o.observer = "per_channel_minmax";
  CHECK_STATUS(cq_prepare_graph(g, &o), CQ_EINVAL);
  o.observer = NULL;
  cq_module_train(g, 1);
  CHECK_STATUS(cq_prepare_graph(g, &o), CQ_ESTATE);
  cq_module_train(g, 0);
  OK(cq_prepare_graph(g, &o));
  CHECK_STATUS(cq_prepare_graph(g, &o), CQ_ESTATE); /* twice */
  cq_module_free(g);
  cq_module *lin = tb_linear(3, 3);
  CHECK_STATUS(cq_prepare_graph(lin, &o), CQ_EINVAL);
  cq_module_free(lin);
}

/* Observers chosen by name land on every observed node. */
static int count_observer_kind(cq_module *m, cq_observer_kind kind) {
  int n = 0;
  cq_observer *obs = cq_observer_module_get(m);
  if (obs && cq_observer_config_of(obs)->kind == kind) n++;
  for (int i = 0; i < cq_module_num_children(m); i++) {
    n += count_observer_kind(cq_module_child(m, i), kind);
  }
  return n;
}

static void test_observer_choice(void) {
  cq_module *g = mixed_graph();
  cq_graph_quant_options o = cq_graph_quant_defaults();
  o.observer = "minmax";
  o.per_channel = 0;
  OK(cq_prepare_graph(g, &o));
  /* input_quant, conv_a (fused with relu), softmax_quant, conv_b */
  CHECK_INT_EQ(count_observer_kind(g, CQ_OBSERVER_MINMAX), 4);
  CHECK_INT_EQ(count_observer_kind(g, CQ_OBSERVER_HISTOGRAM), 0);
  calibrate_and_convert(g, &o);
  cq_module *conv = cq_module_find(g, "conv_b");
  cq_named_tensor *w = conv ? cq_module_find_tensor(conv, "weight") : NULL;
  CHECK(w && w->tensor->qparams && w->tensor->qparams->count == 1);
  cq_module_free(g);
}

/* Dynamic mode on a Sequential: Linear nodes get int8 weights, excluded ones stay float. */
static void test_dynamic(void) {
  cq_manual_seed(3);
  cq_module *s = NULL;
  cq_module *c[3] = {tb_linear(6, 8), tb_simple(cq_relu), tb_linear(8, 4)};
  OK(cq_sequential(&s, 3, c));
  cq_module_train(s, 0);
  cq_graph_quant_options o = cq_graph_quant_defaults();
  const char *ex[1] = {"2"};
  o.nexclude = 1;
  o.exclude = ex;
  OK(cq_quantize_dynamic_graph(s, &o));
  CHECK(cq_is_graph(s));
  CHECK_INT_EQ(count_type(s, "DynamicQuantizedLinear"), 1);
  CHECK_INT_EQ(count_type(s, "Linear"), 1);
  cq_module_free(s);
}

typedef struct visit_log {
  int calls;
  char names[16][32];
} visit_log;

static cq_status log_visit(const char *node_name, cq_module *module, int nout,
                           cq_tensor *const *outputs, void *user) {
  visit_log *log = user;
  (void)module;
  CHECK(nout == 1 && outputs[0] != NULL);
  if (log->calls < 16) snprintf(log->names[log->calls], 32, "%s", node_name);
  log->calls++;
  return log->calls == 99 ? CQ_EINVAL : CQ_OK;
}

static void test_visit(void) {
  cq_module *g = mixed_graph();
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = ramp(1, 3, 5, 5, 0.5f), *y = NULL;
  visit_log log;
  memset(&log, 0, sizeof log);
  OK(cq_graph_forward_visit(g, ctx, 1, &x, 1, &y, log_visit, &log));
  CHECK_INT_EQ(log.calls, 4);
  CHECK(strcmp(log.names[0], "conv_a") == 0 && strcmp(log.names[3], "conv_b") == 0);
  cq_tensor *y2 = NULL;
  OK(cq_module_forward1(g, ctx, x, &y2));
  CHECK(y && y2 && memcmp(y->data, y2->data, sizeof(float) * (size_t)cq_tensor_numel(y)) == 0);
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(g);
}

/* ---- QAT: graph mode equals eager mode with the stubs placed by hand ----------------------------- */

static cq_module *qat_body(int with_stubs) {
  cq_manual_seed(11);
  cq_module *flat = NULL, *s = NULL;
  OK(cq_flatten(&flat, 1, -1));
  cq_module *c[7] = {tb_conv2d(2, 4, 3, 0), tb_bn2d(4), tb_simple(cq_relu), flat, tb_linear(4 * 4 * 4, 3),
                     NULL, NULL};
  int n = 5;
  if (with_stubs) { /* Sequential(QuantStub, conv, bn, relu, flatten, linear, DeQuantStub) */
    for (int i = 5; i > 0; i--) c[i] = c[i - 1];
    c[0] = tb_simple(cq_quant_stub);
    c[6] = tb_simple(cq_dequant_stub);
    n = 7;
  }
  return tb_made(cq_sequential(&s, n, c), &s);
}

static void train_steps(cq_module *m, int steps) {
  cq_optimizer *opt = NULL;
  cq_module *loss = NULL;
  OK(cq_sgd(&opt, m, 0.05f, 0.9f, 0.0f, 0.0f, 0));
  OK(cq_mse_loss(&loss));
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_ctx_set_grad(ctx, 1);
  cq_tensor *one = NULL;
  OK(cq_tensor_create(&one, CQ_F32, 0, NULL));
  *(float *)one->data = 1.0f;
  for (int i = 0; i < steps; i++) {
    cq_tensor *x = ramp(4, 2, 6, 6, 0.21f + 0.05f * (float)i), *y = NULL, *l = NULL;
    int64_t tshape[2] = {4, 3};
    cq_tensor *target = NULL;
    OK(cq_tensor_create(&target, CQ_F32, 2, tshape));
    float *tp = target->data;
    for (int k = 0; k < 12; k++) tp[k] = (float)((k * 7 + i) % 5) * 0.25f;
    OK(cq_module_forward1(m, ctx, x, &y));
    cq_tensor *args[2] = {y, target};
    OK(cq_module_forward(loss, ctx, 2, args, 1, &l));
    cq_optimizer_zero_grad(opt);
    OK(cq_ctx_backward(ctx, l, one, NULL, NULL));
    OK(cq_optimizer_step(opt));
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
    cq_tensor_free(target);
  }
  cq_tensor_free(one);
  cq_ctx_free(ctx);
  cq_module_free(loss);
  cq_optimizer_free(opt);
}

static void test_qat_matches_eager(void) {
  /* eager: stubs by hand, fuse_modules_qat, prepare_qat with the default QAT qconfig */
  cq_module *eager = qat_body(1);
  const char *group[3] = {"1", "2", "3"};
  OK(cq_fuse_modules_qat(eager, 3, group));
  cq_qconfig qc;
  OK(cq_get_default_qat_qconfig(CQ_BACKEND_X86, 1, &qc));
  OK(cq_module_set_qconfig(eager, &qc));
  OK(cq_prepare_qat(eager));
  train_steps(eager, 4);
  cq_module_train(eager, 0);
  const cq_backend saved = cq_quantized_engine();
  cq_set_quantized_engine(CQ_BACKEND_X86);
  OK(cq_convert(eager));
  cq_set_quantized_engine(saved);

  /* graph mode on the float body */
  cq_module *graph = qat_body(0);
  cq_graph_quant_options o = cq_graph_quant_defaults();
  OK(cq_prepare_qat_graph(graph, &o));
  CHECK_INT_EQ(count_type(graph, "ConvBnReLU2d"), 1);
  train_steps(graph, 4);
  OK(cq_convert_graph(graph, &o));
  CHECK_INT_EQ(count_type(graph, "QuantizedConvReLU2d"), 1);
  CHECK_INT_EQ(count_type(graph, "QuantizedLinear"), 1);

  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = ramp(3, 2, 6, 6, 0.33f), *ye = NULL, *yg = NULL;
  OK(cq_module_forward1(eager, ctx, x, &ye));
  OK(cq_module_forward1(graph, ctx, x, &yg));
  CHECK(ye && yg && cq_tensor_numel(ye) == cq_tensor_numel(yg) &&
        memcmp(ye->data, yg->data, sizeof(float) * (size_t)cq_tensor_numel(ye)) == 0);
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(eager);
  cq_module_free(graph);
}

int main(void) {
  test_golden();
  test_float_regions();
  test_errors();
  test_observer_choice();
  test_dynamic();
  test_visit();
  test_qat_matches_eager();
  return check_summary("test_graph_mode");
}

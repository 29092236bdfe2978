/* Graph: dataflow containers with residual add and concat, against PyTorch 1.13.
 *
 * Golden cases (the graph/... cases of tests/data/golden/nn_layers/cases.txt, from
 * tools/golden/gen_nn_layers.py): small nn.Module subclasses -- ResBlock
 * (relu(fc2(relu(fc1(x))) + x), one ReLU called twice), CatNet (fc2(cat([fc1(x), tanh(x)], 1))),
 * BNBlock (softmax(flatten(relu6(bn(x)) + x)) in training over two steps and in eval), TwoOut (two
 * inputs, two outputs) -- rebuilt here as cq_graphs from the case name. Each loads PyTorch's state
 * dict by its keys ("fc1.weight", "bn.running_mean"), checks the repr against print(model), runs
 * forward and backward and compares outputs, input gradients, parameter gradients and buffers.
 * Tolerance as in test_nn_layers.c: |got - want| <= 1e-4 * max(|want|, 0.01 * max|want|) (1e-5 for
 * running statistics). Several outputs and inputs are differentiated in one cq_ctx_backward_multi
 * pass.
 *
 * Direct checks: printing (default name, custom name, nested in Sequential and in another graph,
 * children registered up front), lookup, state-dict keys, replacement of a called child, a child
 * detached and registered again,
 * introspection, an input passed straight to the output, train/eval, rejected nodes and outputs
 * with their messages (and the module freed), errors inside a node naming the node, and
 * allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cquant/graph.h"
#include "cquant/modules.h"
#include "cquant/nn.h"
#include "cquant/npy.h"
#include "cquant/status.h"
#include "cquant/tensor.h"
#include "nn/module_impl.h" /* cq_module_detach_child */
#include "support/check.h"
#include "support/golden.h"

#define GOLDEN_FILE CQ_TEST_DATA_DIR "/golden/nn_layers/cases.txt"

#define REL_TOL 1e-4
#define STAT_TOL 1e-5
#define FLOOR_FRACTION 1e-2

static int contains(const char *haystack, const char *needle) {
  return strstr(haystack, needle) != NULL;
}

/* --- building the graphs ------------------------------------------------------------------------- */

/* ResBlock: h = relu(fc1(x)); y = relu(skip_add(fc2(h), x)). */
static cq_status build_residual(cq_module **out) {
  cq_module *g = NULL, *fc1 = NULL, *fc2 = NULL, *relu = NULL, *add = NULL;
  cq_status st = cq_graph(&g, 1);
  if (st == CQ_OK) st = cq_graph_set_name(g, "ResBlock");
  int x = 0, h1 = -1, h2 = -1, h3 = -1, s = -1, y = -1;
  if (st == CQ_OK && (st = cq_linear(&fc1, 6, 6, 1)) == CQ_OK) {
    st = cq_graph_add_node(g, "fc1", fc1, 1, &x, 1, &h1);
  }
  if (st == CQ_OK && (st = cq_relu(&relu)) == CQ_OK) {
    st = cq_graph_add_node(g, "relu", relu, 1, &h1, 1, &h2);
  }
  if (st == CQ_OK && (st = cq_linear(&fc2, 6, 6, 1)) == CQ_OK) {
    st = cq_graph_add_node(g, "fc2", fc2, 1, &h2, 1, &h3);
  }
  if (st == CQ_OK && (st = cq_add(&add)) == CQ_OK) {
    const int in[2] = {h3, x};
    st = cq_graph_add_node(g, "skip_add", add, 2, in, 1, &s);
  }
  if (st == CQ_OK) st = cq_graph_add_node(g, "relu", NULL, 1, &s, 1, &y);
  if (st == CQ_OK) st = cq_graph_set_outputs(g, 1, &y);
  if (st != CQ_OK) {
    cq_module_free(g);
    g = NULL;
  }
  *out = g;
  return st;
}

/* CatNet: y = fc2(cat([fc1(x), act(x)], 1)). */
static cq_status build_concat(cq_module **out) {
  cq_module *g = NULL, *fc1 = NULL, *act = NULL, *cat = NULL, *fc2 = NULL;
  cq_status st = cq_graph(&g, 1);
  if (st == CQ_OK) st = cq_graph_set_name(g, "CatNet");
  int x = 0, a = -1, b = -1, c = -1, y = -1;
  if (st == CQ_OK && (st = cq_linear(&fc1, 5, 4, 1)) == CQ_OK) {
    st = cq_graph_add_node(g, "fc1", fc1, 1, &x, 1, &a);
  }
  if (st == CQ_OK && (st = cq_tanh(&act)) == CQ_OK) {
    st = cq_graph_add_node(g, "act", act, 1, &x, 1, &b);
  }
  if (st == CQ_OK && (st = cq_cat(&cat, 1)) == CQ_OK) {
    const int in[2] = {a, b};
    st = cq_graph_add_node(g, "cat", cat, 2, in, 1, &c);
  }
  if (st == CQ_OK && (st = cq_linear(&fc2, 9, 3, 1)) == CQ_OK) {
    st = cq_graph_add_node(g, "fc2", fc2, 1, &c, 1, &y);
  }
  if (st == CQ_OK) st = cq_graph_set_outputs(g, 1, &y);
  if (st != CQ_OK) {
    cq_module_free(g);
    g = NULL;
  }
  *out = g;
  return st;
}

/* BNBlock: y = soft(flat(skip(act(bn(x)), x))). */
static cq_status build_bn_block(cq_module **out) {
  cq_module *g = NULL, *m = NULL;
  cq_status st = cq_graph(&g, 1);
  if (st == CQ_OK) st = cq_graph_set_name(g, "BNBlock");
  int x = 0, a = -1, b = -1, c = -1, d = -1, y = -1;
  if (st == CQ_OK && (st = cq_batchnorm2d(&m, 3)) == CQ_OK) {
    st = cq_graph_add_node(g, "bn", m, 1, &x, 1, &a);
  }
  if (st == CQ_OK && (st = cq_relu6(&m)) == CQ_OK) {
    st = cq_graph_add_node(g, "act", m, 1, &a, 1, &b);
  }
  if (st == CQ_OK && (st = cq_add(&m)) == CQ_OK) {
    const int in[2] = {b, x};
    st = cq_graph_add_node(g, "skip", m, 2, in, 1, &c);
  }
  if (st == CQ_OK && (st = cq_flatten(&m, 1, -1)) == CQ_OK) {
    st = cq_graph_add_node(g, "flat", m, 1, &c, 1, &d);
  }
  if (st == CQ_OK && (st = cq_softmax(&m, 1)) == CQ_OK) {
    st = cq_graph_add_node(g, "soft", m, 1, &d, 1, &y);
  }
  if (st == CQ_OK) st = cq_graph_set_outputs(g, 1, &y);
  if (st != CQ_OK) {
    cq_module_free(g);
    g = NULL;
  }
  *out = g;
  return st;
}

/* TwoOut(a, b) = (cat([a, gate(b)], 0), add(a, b)). */
static cq_status build_two_out(cq_module **out) {
  cq_module *g = NULL, *m = NULL;
  cq_status st = cq_graph(&g, 2);
  if (st == CQ_OK) st = cq_graph_set_name(g, "TwoOut");
  int a = 0, b = 1, s = -1, c = -1, d = -1;
  if (st == CQ_OK && (st = cq_sigmoid(&m)) == CQ_OK) {
    st = cq_graph_add_node(g, "gate", m, 1, &b, 1, &s);
  }
  if (st == CQ_OK && (st = cq_cat(&m, 0)) == CQ_OK) {
    const int in[2] = {a, s};
    st = cq_graph_add_node(g, "cat", m, 2, in, 1, &c);
  }
  if (st == CQ_OK && (st = cq_add(&m)) == CQ_OK) {
    const int in[2] = {a, b};
    st = cq_graph_add_node(g, "add", m, 2, in, 1, &d);
  }
  const int outs[2] = {c, d};
  if (st == CQ_OK) st = cq_graph_set_outputs(g, 2, outs);
  if (st != CQ_OK) {
    cq_module_free(g);
    g = NULL;
  }
  *out = g;
  return st;
}

static cq_status build_graph(const char *name, cq_module **out) {
  *out = NULL;
  if (strcmp(name, "residual") == 0) return build_residual(out);
  if (strcmp(name, "concat") == 0) return build_concat(out);
  if (strcmp(name, "bn_block") == 0) return build_bn_block(out);
  if (strcmp(name, "two_out") == 0) return build_two_out(out);
  return cq_fail(CQ_EINVAL, "unknown graph '%s'", name);
}

/* --- golden cases -------------------------------------------------------------------------------- */

static cq_tensor *load_file(const golden_file *g, const golden_case *c, const char *file) {
  char path[1024];
  cq_tensor *t = NULL;
  cq_status st = cq_npy_load(golden_path(g, file, path, sizeof path), &t);
  CHECK_MSG(st == CQ_OK, "case %s: loading %s: %s", c->name, file, cq_last_error());
  return st == CQ_OK ? t : NULL;
}

static const char *split_key(const char *value, char *key, size_t cap) {
  const char *sp = strchr(value, ' ');
  size_t n = sp ? (size_t)(sp - value) : strlen(value);
  if (n >= cap) n = cap - 1;
  memcpy(key, value, n);
  key[n] = '\0';
  return sp ? sp + 1 : "";
}

static void unescape(char *s) {
  char *w = s;
  for (const char *r = s; *r; r++) {
    if (r[0] == '\\' && r[1] == 'n') {
      *w++ = '\n';
      r++;
    } else if (r[0] == '\\' && r[1] == '\\') {
      *w++ = '\\';
      r++;
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
}

static int count_key(const golden_case *c, const char *key) {
  int n = 0;
  while (golden_get_nth(c, key, n)) n++;
  return n;
}

static int same_shape(const cq_tensor *a, const cq_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] != b->shape[i]) return 0;
  }
  return 1;
}

static double compare(const golden_case *c, const char *what, const cq_tensor *got,
                      const cq_tensor *want, double tol) {
  char sg[128], sw[128];
  if (!got || !want) {
    CHECK_MSG(0, "case %s: %s missing", c->name, what);
    return 0;
  }
  if (!same_shape(got, want) || got->dtype != want->dtype) {
    CHECK_MSG(0, "case %s: %s has shape %s dtype %d, expected %s dtype %d", c->name, what,
              cq_shape_str(got->ndim, got->shape, sg, sizeof sg), got->dtype,
              cq_shape_str(want->ndim, want->shape, sw, sizeof sw), want->dtype);
    return 0;
  }
  if (want->dtype == CQ_I64) {
    CHECK_MSG(memcmp(got->data, want->data, cq_tensor_nbytes(want)) == 0, "case %s: %s differs",
              c->name, what);
    return 0;
  }
  const int64_t n = cq_tensor_numel(want);
  const float *g = got->data, *w = want->data;
  double maxabs = 0;
  for (int64_t i = 0; i < n; i++) maxabs = fmax(maxabs, fabs((double)w[i]));
  const double floor_v = FLOOR_FRACTION * maxabs;
  double worst = 0;
  int64_t worst_i = 0;
  for (int64_t i = 0; i < n; i++) {
    const double denom = fmax(fabs((double)w[i]), floor_v);
    const double diff = fabs((double)g[i] - (double)w[i]);
    const double rel = denom > 0 ? diff / denom : (diff > 0 ? INFINITY : 0);
    if (rel > worst || isnan(g[i])) {
      worst = isnan(g[i]) ? INFINITY : rel;
      worst_i = i;
    }
  }
  CHECK_MSG(worst <= tol, "case %s: %s[%lld] = %.9g, expected %.9g (relative error %.3g)", c->name,
            what, (long long)worst_i, n ? (double)g[worst_i] : 0.0,
            n ? (double)w[worst_i] : 0.0, worst);
  return worst;
}

/* Largest errors over all graph cases. */
static double worst_fwd, worst_gin, worst_gparam, worst_buf;

static void run_case(const golden_file *gf, const golden_case *c) {
  cq_module *m = NULL;
  cq_status st = build_graph(golden_get(c, "graph"), &m);
  CHECK_MSG(st == CQ_OK, "case %s: building: %s", c->name, cq_last_error());
  if (st != CQ_OK) return;
  const char *v = golden_get(c, "steps");
  const int steps = v ? atoi(v) : 1;
  v = golden_get(c, "training");
  cq_module_train(m, v ? atoi(v) : 1);
  for (int i = 0; (v = golden_get_nth(c, "set", i)) != NULL; i++) {
    char key[256];
    const char *file = split_key(v, key, sizeof key);
    cq_named_tensor *nt = cq_module_find_tensor(m, key);
    CHECK_MSG(nt != NULL, "case %s: no tensor '%s': %s", c->name, key, cq_last_error());
    cq_tensor *t = load_file(gf, c, file);
    if (nt && t && same_shape(nt->tensor, t) && nt->tensor->dtype == t->dtype) {
      memcpy(nt->tensor->data, t->data, cq_tensor_nbytes(t));
    } else {
      CHECK_MSG(0, "case %s: cannot load '%s'", c->name, key);
    }
    cq_tensor_free(t);
  }
  v = golden_get(c, "repr");
  if (v) {
    char *want = strdup(v), *got = cq_module_repr_alloc(m);
    if (want && got) {
      unescape(want);
      CHECK_STR_EQ(got, want);
    }
    free(want);
    free(got);
  }
  const int nin = count_key(c, "input"), nout = count_key(c, "output");
  cq_tensor *in[8] = {0}, *gy[8] = {0}, *gin[8] = {0}, *out[8] = {0};
  int ok = nin >= 1 && nin <= 8 && nout >= 1 && nout <= 8;
  CHECK(ok);
  for (int i = 0; ok && i < nin; i++) {
    in[i] = load_file(gf, c, golden_get_nth(c, "input", i));
    ok = in[i] && cq_tensor_create(&gin[i], CQ_F32, in[i]->ndim, in[i]->shape) == CQ_OK;
  }
  for (int k = 0; ok && k < nout; k++) ok = (gy[k] = load_file(gf, c, golden_get_nth(c, "grad_output", k))) != NULL;
  cq_ctx *ctx = NULL;
  if (ok) ok = cq_ctx_create(&ctx) == CQ_OK;
  for (int step = 0; ok && step < steps; step++) {
    cq_ctx_reset(ctx);
    cq_ctx_set_grad(ctx, 1);
    st = cq_module_forward(m, ctx, nin, in, nout, out);
    CHECK_MSG(st == CQ_OK, "case %s: forward: %s", c->name, cq_last_error());
    ok = st == CQ_OK;
    cq_tensor *gi[8] = {0};
    if (ok) {
      st = cq_ctx_backward_multi(ctx, nout, out, (const cq_tensor *const *)gy, nin, in, gi);
      CHECK_MSG(st == CQ_OK, "case %s: backward: %s", c->name, cq_last_error());
      ok = st == CQ_OK;
    }
    for (int i = 0; ok && i < nin; i++) {
      if (!gi[i]) continue;
      float *acc = gin[i]->data;
      const float *src = gi[i]->data;
      for (int64_t j = 0; j < cq_tensor_numel(gi[i]); j++) acc[j] += src[j];
    }
  }
  if (ok) {
    for (int k = 0; k < nout; k++) {
      cq_tensor *want = load_file(gf, c, golden_get_nth(c, "output", k));
      worst_fwd = fmax(worst_fwd, compare(c, "output", out[k], want, REL_TOL));
      cq_tensor_free(want);
    }
    for (int i = 0; i < nin; i++) {
      cq_tensor *want = load_file(gf, c, golden_get_nth(c, "grad_input", i));
      worst_gin = fmax(worst_gin, compare(c, "grad_input", gin[i], want, REL_TOL));
      cq_tensor_free(want);
    }
    for (int i = 0; (v = golden_get_nth(c, "grad", i)) != NULL; i++) {
      char key[256];
      const char *file = split_key(v, key, sizeof key);
      cq_named_tensor *nt = cq_module_find_tensor(m, key);
      CHECK_MSG(nt && nt->grad, "case %s: no gradient '%s'", c->name, key);
      cq_tensor *want = load_file(gf, c, file);
      if (nt && nt->grad) worst_gparam = fmax(worst_gparam, compare(c, key, nt->grad, want, REL_TOL));
      cq_tensor_free(want);
    }
    for (int i = 0; (v = golden_get_nth(c, "after", i)) != NULL; i++) {
      char key[256];
      const char *file = split_key(v, key, sizeof key);
      cq_named_tensor *nt = cq_module_find_tensor(m, key);
      CHECK_MSG(nt != NULL, "case %s: no buffer '%s'", c->name, key);
      cq_tensor *want = load_file(gf, c, file);
      if (nt) worst_buf = fmax(worst_buf, compare(c, key, nt->tensor, want, STAT_TOL));
      cq_tensor_free(want);
    }
  }
  cq_ctx_free(ctx);
  for (int i = 0; i < 8; i++) {
    cq_tensor_free(in[i]);
    cq_tensor_free(gy[i]);
    cq_tensor_free(gin[i]);
  }
  cq_module_free(m);
}

static void test_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN_FILE, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN_FILE);
    return;
  }
  int ran = 0;
  for (int i = 0; i < g.count; i++) {
    if (!golden_get(&g.cases[i], "graph")) continue;
    run_case(&g, &g.cases[i]);
    ran++;
  }
  CHECK(ran >= 7);
  printf("golden: %d graph cases; largest relative errors: output %.3g, grad_input %.3g, "
         "grad_param %.3g, buffers %.3g\n", ran, worst_fwd, worst_gin, worst_gparam, worst_buf);
  golden_free(&g);
}

/* --- direct checks ------------------------------------------------------------------------------- */

static cq_tensor *tensor_of(int ndim, const int64_t *shape, float start, float step) {
  cq_tensor *t = NULL;
  if (cq_tensor_create(&t, CQ_F32, ndim, shape) != CQ_OK) return NULL;
  float *d = t->data;
  for (int64_t i = 0; i < cq_tensor_numel(t); i++) d[i] = start + step * (float)((i * 5) % 11);
  return t;
}

static void check_repr_of(const cq_module *m, const char *want) {
  char *got = cq_module_repr_alloc(m);
  CHECK(got != NULL);
  if (got) CHECK_STR_EQ(got, want);
  free(got);
}

static const char *RESBLOCK_REPR =
    "ResBlock(\n"
    "  (fc1): Linear(in_features=6, out_features=6, bias=True)\n"
    "  (relu): ReLU()\n"
    "  (fc2): Linear(in_features=6, out_features=6, bias=True)\n"
    "  (skip_add): FloatFunctional(\n"
    "    (activation_post_process): Identity()\n"
    "  )\n"
    ")";

typedef struct key_list {
  char keys[16][64];
  int n;
} key_list;

static cq_status collect_keys(const char *key, cq_named_tensor *t, void *user) {
  (void)t;
  key_list *k = user;
  if (k->n < 16) snprintf(k->keys[k->n++], sizeof k->keys[0], "%s", key);
  return CQ_OK;
}

static void test_printing_and_lookup(void) {
  cq_module *g = NULL;
  CHECK_OK(cq_graph(&g, 1));
  if (g) {
    check_repr_of(g, "Graph()");
    CHECK_STR_EQ(cq_module_type_name(g), "Graph");
    CHECK_OK(cq_graph_set_name(g, "M"));
    check_repr_of(g, "M()");
    CHECK_STATUS(cq_graph_set_name(g, "My Model"), CQ_EINVAL);
    CHECK_STATUS(cq_graph_set_name(g, ""), CQ_EINVAL);
    CHECK_STATUS(cq_graph_set_name(g, NULL), CQ_EINVAL);
    CHECK_STR_EQ(cq_module_type_name(g), "M");
    cq_module_free(g);
  }

  CHECK_OK(build_residual(&g));
  if (!g) return;
  check_repr_of(g, RESBLOCK_REPR);
  CHECK(cq_is_graph(g));
  CHECK_STR_EQ(cq_module_type_name(g), "ResBlock");
  CHECK_INT_EQ(cq_module_num_children(g), 4); /* relu is registered once, called twice */
  cq_module *fc1 = cq_module_find(g, "fc1");
  CHECK(fc1 != NULL && strcmp(cq_module_type_name(fc1), "Linear") == 0);
  CHECK(cq_module_find(g, "skip_add.activation_post_process") != NULL);
  CHECK(cq_module_find(g, "fc3") == NULL);
  CHECK(contains(cq_last_error(), "fc3"));
  key_list k = {{{0}}, 0};
  CHECK_OK(cq_module_visit_tensors(g, collect_keys, &k));
  CHECK_INT_EQ(k.n, 4);
  if (k.n == 4) {
    CHECK_STR_EQ(k.keys[0], "fc1.weight");
    CHECK_STR_EQ(k.keys[1], "fc1.bias");
    CHECK_STR_EQ(k.keys[2], "fc2.weight");
    CHECK_STR_EQ(k.keys[3], "fc2.bias");
  }

  /* introspection */
  CHECK_INT_EQ(cq_graph_num_inputs(g), 1);
  CHECK_INT_EQ(cq_graph_num_nodes(g), 5);
  CHECK_INT_EQ(cq_graph_num_values(g), 6);
  cq_graph_node_info info;
  CHECK_OK(cq_graph_node(g, 3, &info));
  CHECK_STR_EQ(info.name, "skip_add");
  CHECK(info.nin == 2 && info.inputs[0] == 3 && info.inputs[1] == 0);
  CHECK(info.nout == 1 && info.outputs[0] == 4);
  const char *op = cq_functional_op(info.module, NULL);
  CHECK(op && strcmp(op, "add") == 0);
  CHECK_OK(cq_graph_node(g, 4, &info));
  CHECK(info.module == cq_module_find(g, "relu"));
  CHECK_STATUS(cq_graph_node(g, 5, &info), CQ_EINVAL);
  int nouts = 0;
  const int *outs = NULL;
  CHECK_OK(cq_graph_outputs(g, &nouts, &outs));
  CHECK(nouts == 1 && outs[0] == 5);

  /* nested: in a Sequential and in another graph, printed with PyTorch's indentation */
  cq_module *lin = NULL, *seq = NULL;
  CHECK_OK(cq_linear(&lin, 6, 2, 0));
  cq_module *kids[2] = {g, lin};
  CHECK_OK(cq_sequential(&seq, 2, kids));
  if (!seq) return;
  check_repr_of(seq,
                "Sequential(\n"
                "  (0): ResBlock(\n"
                "    (fc1): Linear(in_features=6, out_features=6, bias=True)\n"
                "    (relu): ReLU()\n"
                "    (fc2): Linear(in_features=6, out_features=6, bias=True)\n"
                "    (skip_add): FloatFunctional(\n"
                "      (activation_post_process): Identity()\n"
                "    )\n"
                "  )\n"
                "  (1): Linear(in_features=6, out_features=2, bias=False)\n"
                ")");
  CHECK(cq_module_find_tensor(seq, "0.fc2.bias") != NULL);
  cq_module_free(seq);

  /* children registered up front print in that order; nodes then call them by name */
  cq_module *outer = NULL, *block = NULL, *sig = NULL;
  CHECK_OK(cq_graph(&outer, 1));
  CHECK_OK(build_residual(&block));
  CHECK_OK(cq_sigmoid(&sig));
  if (outer && block && sig) {
    CHECK_OK(cq_module_add_child(outer, "gate", sig));
    CHECK_OK(cq_module_add_child(outer, "block", block));
    int x = 0, a = -1, b = -1, c = -1;
    CHECK_OK(cq_graph_add_node(outer, "block", NULL, 1, &x, 1, &a));
    CHECK_OK(cq_graph_add_node(outer, "block", NULL, 1, &a, 1, &b)); /* shared weights */
    CHECK_OK(cq_graph_add_node(outer, "gate", NULL, 1, &b, 1, &c));
    CHECK_OK(cq_graph_set_outputs(outer, 1, &c));
    char *s = cq_module_repr_alloc(outer);
    CHECK(s && strncmp(s, "Graph(\n  (gate): Sigmoid()\n  (block): ResBlock(\n    (fc1)", 56) == 0);
    free(s);
    /* the outer graph equals sigmoid(block(block(x))) */
    const int64_t shape[2] = {3, 6};
    cq_tensor *x0 = tensor_of(2, shape, -1.0f, 0.3f);
    cq_ctx *ctx = NULL;
    CHECK_OK(cq_ctx_create(&ctx));
    cq_tensor *y = NULL, *t1 = NULL, *t2 = NULL, *t3 = NULL;
    CHECK_OK(cq_module_forward1(outer, ctx, x0, &y));
    CHECK_OK(cq_module_forward1(block, ctx, x0, &t1));
    if (t1) CHECK_OK(cq_module_forward1(block, ctx, t1, &t2));
    if (t2) CHECK_OK(cq_module_forward1(sig, ctx, t2, &t3));
    if (y && t3) CHECK(memcmp(y->data, t3->data, cq_tensor_nbytes(y)) == 0);
    cq_ctx_free(ctx);
    cq_tensor_free(x0);
  } else {
    cq_module_free(block);
    cq_module_free(sig);
  }
  cq_module_free(outer);
}

static void test_execution(void) {
  cq_module *g = NULL;
  cq_ctx *ctx = NULL;
  CHECK_OK(build_residual(&g));
  CHECK_OK(cq_ctx_create(&ctx));
  if (!g || !ctx) return;
  const int64_t shape[2] = {4, 6};
  cq_tensor *x = tensor_of(2, shape, -1.0f, 0.25f), *gy = tensor_of(2, shape, 0.5f, -0.1f);
  cq_tensor *y = NULL, *gx = NULL;

  /* replacing the called ReLU by Identity: both calls now pass values through */
  cq_module *id = NULL, *old = NULL;
  CHECK_OK(cq_identity(&id));
  CHECK_OK(cq_module_replace(g, "relu", id, &old));
  CHECK(old != NULL && strcmp(cq_module_type_name(old), "ReLU") == 0);
  cq_module_free(old);
  cq_graph_node_info info;
  CHECK_OK(cq_graph_node(g, 1, &info));
  CHECK(info.module == id);
  cq_ctx_set_grad(ctx, 1);
  CHECK_OK(cq_module_forward1(g, ctx, x, &y));
  /* with identities the block is linear: y = fc2(fc1(x)) + x; check against the Linears */
  cq_tensor *h = NULL, *h2 = NULL;
  CHECK_OK(cq_module_forward1(cq_module_find(g, "fc1"), ctx, x, &h));
  if (h) CHECK_OK(cq_module_forward1(cq_module_find(g, "fc2"), ctx, h, &h2));
  if (y && h2) {
    const float *yd = y->data, *hd = h2->data, *xd = x->data;
    int same = 1;
    for (int i = 0; i < 24; i++) same &= yd[i] == hd[i] + xd[i];
    CHECK(same);
  }
  if (y) CHECK_OK(cq_ctx_backward(ctx, y, gy, x, &gx));
  CHECK(gx != NULL);

  /* children detached and re-registered (indices shift): nodes find theirs by name */
  cq_tensor *before = y;
  cq_module *fc1 = cq_module_detach_child(g, "fc1");
  CHECK(fc1 != NULL);
  CHECK_STATUS(cq_module_forward1(g, ctx, x, &y), CQ_ESTATE);
  CHECK(contains(cq_last_error(), "node 'fc1': the child it calls is gone"));
  if (fc1) CHECK_OK(cq_module_add_child(g, "fc1", fc1));
  CHECK_STR_EQ(cq_module_child_name(g, 3), "fc1");
  cq_tensor *again = NULL;
  CHECK_OK(cq_module_forward1(g, ctx, x, &again));
  if (before && again) CHECK(memcmp(before->data, again->data, cq_tensor_nbytes(again)) == 0);
  CHECK_OK(cq_graph_node(g, 0, &info));
  CHECK(info.module == fc1);

  /* train/eval reaches every child */
  cq_module_train(g, 0);
  CHECK(!cq_module_is_training(cq_module_find(g, "fc1")));
  CHECK(!cq_module_is_training(cq_module_find(g, "skip_add.activation_post_process")));
  cq_module_train(g, 1);

  /* errors inside a node name the graph and the node */
  const int64_t bad_shape[2] = {4, 5};
  cq_tensor *xb = tensor_of(2, bad_shape, 0.0f, 1.0f);
  CHECK_STATUS(cq_module_forward1(g, ctx, xb, &y), CQ_ESHAPE);
  CHECK(contains(cq_last_error(), "ResBlock node 'fc1'"));
  CHECK(contains(cq_last_error(), "Linear"));
  cq_tensor *xi = NULL;
  CHECK_OK(cq_tensor_create(&xi, CQ_S32, 2, shape));
  CHECK_STATUS(cq_module_forward1(g, ctx, xi, &y), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "float32"));
  cq_tensor *two[2] = {x, x};
  CHECK_STATUS(cq_module_forward(g, ctx, 2, two, 1, &y), CQ_EINVAL);
  cq_tensor *outs2[2];
  CHECK_STATUS(cq_module_forward(g, ctx, 1, two, 2, outs2), CQ_EINVAL);

  /* a graph whose output is its input (no nodes), and one with no outputs declared */
  cq_module *pass = NULL;
  CHECK_OK(cq_graph(&pass, 2));
  if (pass) {
    CHECK_STATUS(cq_module_forward(pass, ctx, 2, two, 1, &y), CQ_ESTATE);
    CHECK(contains(cq_last_error(), "no graph outputs declared"));
    const int o[2] = {1, 1};
    CHECK_OK(cq_graph_set_outputs(pass, 2, o));
    cq_tensor *xs[2] = {xb, x}, *ys[2] = {0};
    cq_ctx_reset(ctx);
    cq_ctx_set_grad(ctx, 1);
    CHECK_OK(cq_module_forward(pass, ctx, 2, xs, 2, ys));
    CHECK(ys[0] == x && ys[1] == x);
    CHECK_OK(cq_ctx_backward(ctx, ys[0], gy, x, &gx));
    CHECK(gx != NULL && memcmp(gx->data, gy->data, cq_tensor_nbytes(gy)) == 0);
    cq_module_free(pass);
  }
  cq_tensor_free(x);
  cq_tensor_free(gy);
  cq_tensor_free(xb);
  cq_tensor_free(xi);
  cq_ctx_free(ctx);
  cq_module_free(g);
}

static void test_rejected_nodes(void) {
  cq_module *g = NULL, *m = NULL;
  CHECK_STATUS(cq_graph(&g, 0), CQ_EINVAL);
  CHECK_STATUS(cq_graph(&g, 9), CQ_EINVAL);
  CHECK(g == NULL);
  CHECK_OK(cq_graph(&g, 2));
  if (!g) return;
  int v = -1;
  const int bad[2] = {0, 2};
  /* undefined values: the module passed in is freed (valgrind checks) */
  CHECK_OK(cq_add(&m));
  CHECK_STATUS(cq_graph_add_node(g, "add", m, 2, bad, 1, &v), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "input 1 refers to value 2, which is not defined"));
  CHECK(contains(cq_last_error(), "node 'add'"));
  const int neg = -1;
  CHECK_OK(cq_relu(&m));
  CHECK_STATUS(cq_graph_add_node(g, "relu", m, 1, &neg, 1, &v), CQ_EINVAL);
  CHECK(v == -1);
  /* wrong counts for the module */
  const int both[2] = {0, 1};
  CHECK_OK(cq_relu(&m));
  CHECK_STATUS(cq_graph_add_node(g, "relu", m, 2, both, 1, &v), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "ReLU takes 1 to 1 inputs, got 2"));
  CHECK_OK(cq_relu(&m));
  CHECK_STATUS(cq_graph_add_node(g, "relu", m, 1, both, 2, &v), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "outputs"));
  CHECK_OK(cq_relu(&m));
  CHECK_STATUS(cq_graph_add_node(g, "relu", m, 1, NULL, 1, &v), CQ_EINVAL);
  /* names */
  CHECK_OK(cq_relu(&m));
  CHECK_STATUS(cq_graph_add_node(g, "a.b", m, 1, both, 1, &v), CQ_EINVAL);
  CHECK_OK(cq_relu(&m));
  CHECK_STATUS(cq_graph_add_node(g, "", m, 1, both, 1, &v), CQ_EINVAL);
  CHECK_STATUS(cq_graph_add_node(g, "missing", NULL, 1, both, 1, &v), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "no child named 'missing'"));
  CHECK_INT_EQ(cq_module_num_children(g), 0);
  CHECK_INT_EQ(cq_graph_num_nodes(g), 0);
  CHECK_INT_EQ(cq_graph_num_values(g), 2);
  /* a good node, then a duplicate name with a new module */
  CHECK_OK(cq_add(&m));
  CHECK_OK(cq_graph_add_node(g, "add", m, 2, both, 1, &v));
  CHECK_INT_EQ(v, 2);
  CHECK_OK(cq_add(&m));
  CHECK_STATUS(cq_graph_add_node(g, "add", m, 2, both, 1, &v), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "exists already"));
  const int reuse[2] = {2, 0};
  int w = -1;
  CHECK_OK(cq_graph_add_node(g, "add", NULL, 2, reuse, 1, &w)); /* calling it again is fine */
  CHECK_INT_EQ(w, 3);
  /* outputs */
  const int undefined = 4;
  CHECK_STATUS(cq_graph_set_outputs(g, 1, &undefined), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "graph output 0 refers to value 4"));
  CHECK_STATUS(cq_graph_set_outputs(g, 0, &w), CQ_EINVAL);
  CHECK_STATUS(cq_graph_set_outputs(g, 9, &w), CQ_EINVAL);
  CHECK_OK(cq_graph_set_outputs(g, 1, &w));
  /* calls on modules that are not graphs */
  cq_module *relu = NULL;
  CHECK_OK(cq_relu(&relu));
  CHECK_OK(cq_relu(&m));
  CHECK_STATUS(cq_graph_add_node(relu, "x", m, 1, both, 1, &v), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "is not a graph"));
  CHECK_STATUS(cq_graph_set_outputs(relu, 1, &w), CQ_EINVAL);
  CHECK_STATUS(cq_graph_set_name(relu, "X"), CQ_EINVAL);
  CHECK(!cq_is_graph(relu));
  CHECK_INT_EQ(cq_graph_num_nodes(relu), 0);
  cq_module_free(relu);
  /* the graph works: (a + b) + a */
  const int64_t s[1] = {3};
  cq_tensor *a = tensor_of(1, s, 1.0f, 1.0f), *b = tensor_of(1, s, 0.5f, 2.0f);
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_tensor *ab[2] = {a, b}, *y = NULL;
  if (ctx) CHECK_OK(cq_module_forward(g, ctx, 2, ab, 1, &y));
  if (y) {
    for (int i = 0; i < 3; i++) {
      const float *ad = a->data, *bd = b->data;
      CHECK_F32_BITS(((float *)y->data)[i], (ad[i] + bd[i]) + ad[i]);
    }
  }
  cq_ctx_free(ctx);
  cq_tensor_free(a);
  cq_tensor_free(b);
  cq_module_free(g);
}

static void test_alloc_failures(void) {
  const int64_t shape[2] = {2, 6};
  cq_tensor *x = tensor_of(2, shape, -1.0f, 0.2f), *gy = tensor_of(2, shape, 1.0f, -0.3f);
  if (!x || !gy) return;
  int succeeded = 0;
  for (long n = 0; n < 300 && !succeeded; n++) {
    cq_module *g = NULL;
    cq_ctx *ctx = NULL;
    cq_tensor *y = NULL, *gx = NULL;
    cq_debug_fail_alloc_after(n);
    cq_status st = build_residual(&g);
    if (st == CQ_OK) st = cq_graph_set_name(g, "Renamed");
    if (st == CQ_OK) st = cq_ctx_create(&ctx);
    if (st == CQ_OK) {
      cq_ctx_set_grad(ctx, 1);
      st = cq_module_forward1(g, ctx, x, &y);
    }
    if (st == CQ_OK) st = cq_ctx_backward(ctx, y, gy, x, &gx);
    cq_debug_fail_alloc_after(-1);
    CHECK_MSG(st == CQ_OK || st == CQ_ENOMEM, "after %ld allocations: %s", n, cq_last_error());
    succeeded = st == CQ_OK;
    cq_ctx_free(ctx);
    cq_module_free(g);
  }
  CHECK(succeeded);
  cq_tensor_free(x);
  cq_tensor_free(gy);
}

int main(void) {
  test_golden();
  test_printing_and_lookup();
  test_execution();
  test_rejected_nodes();
  test_alloc_failures();
  return check_summary("test_nn_graph");
}

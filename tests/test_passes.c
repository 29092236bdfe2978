/* Unit tests of the eager-mode static passes before convert: fuse_modules (every PTQ pattern, BN
 * folding bit for bit against PyTorch 1.13, errors that leave the model unchanged), the fused
 * modules (forward and backward equal to the unfused chain), prepare (qconfig propagation, which
 * modules get observers, the seed's printed tree, errors, allocation failures).
 *
 * Golden data: the fold/ cases of tests/data/golden/qstatic/cases.txt (tools/golden/gen_qstatic.py):
 * a Sequential(layer, bn[, relu]) with random parameters and statistics, fused by PyTorch; every
 * tensor of the fused state dict must match bit for bit. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cquant/cquant.h"
#include "golden.h"

#define OK(expr) CHECK_OK(expr)
#define GOLDEN CQ_TEST_DATA_DIR "/golden/qstatic/cases.txt"

/* ---- builders ----------------------------------------------------------------------------------- */

static cq_module *seq(int n, cq_module **children) {
  cq_module *m = NULL;
  OK(cq_sequential(&m, n, children));
  return m;
}

static cq_module *conv2d_opt(const cq_conv_options *o) {
  cq_module *m = NULL;
  OK(cq_conv2d(&m, o));
  return m;
}

static cq_module *conv2d(int64_t in, int64_t out, int64_t k) {
  cq_conv_options o = cq_conv_defaults(in, out, k, k);
  return conv2d_opt(&o);
}

static cq_module *conv1d(int64_t in, int64_t out, int64_t k, int bias) {
  cq_conv_options o = cq_conv_defaults(in, out, k, 1);
  o.bias = bias;
  cq_module *m = NULL;
  OK(cq_conv1d(&m, &o));
  return m;
}

static cq_module *linear(int64_t in, int64_t out, int bias) {
  cq_module *m = NULL;
  OK(cq_linear(&m, in, out, bias));
  return m;
}

static cq_module *relu(void) {
  cq_module *m = NULL;
  OK(cq_relu(&m));
  return m;
}

static cq_module *bn1d(int64_t c) {
  cq_module *m = NULL;
  OK(cq_batchnorm1d(&m, c));
  return m;
}

static cq_module *bn2d(int64_t c) {
  cq_module *m = NULL;
  OK(cq_batchnorm2d(&m, c));
  return m;
}

static cq_module *simple(cq_status (*ctor)(cq_module **)) {
  cq_module *m = NULL;
  OK(ctor(&m));
  return m;
}

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

static void check_repr(const cq_module *m, const char *want, const char *what) {
  char *got = cq_module_repr_alloc(m);
  CHECK_MSG(got && strcmp(got, want) == 0, "%s:\n  got:\n%s\n  want:\n%s", what, got ? got : "",
            want);
  free(got);
}

/* Splits "a,b,c" into names (pointers into buf). */
static int split_names(char *buf, const char **names, int cap) {
  int n = 0;
  for (char *tok = strtok(buf, ","); tok && n < cap; tok = strtok(NULL, ",")) names[n++] = tok;
  return n;
}

static int fuse_list(cq_module *m, const char *list) {
  char buf[256];
  const char *names[8];
  snprintf(buf, sizeof buf, "%s", list);
  int n = split_names(buf, names, 8);
  return cq_fuse_modules(m, n, names);
}

/* ---- BN folding against PyTorch ---------------------------------------------------------------- */

static cq_module *fold_model(const char *name) {
  if (!strcmp(name, "conv2d_bn")) {
    cq_conv_options o = cq_conv_defaults(3, 5, 3, 3);
    o.padding[0] = o.padding[1] = 1;
    cq_module *c[2] = {conv2d_opt(&o), bn2d(5)};
    return seq(2, c);
  }
  if (!strcmp(name, "conv2d_nobias_bn_relu")) {
    cq_conv_options o = cq_conv_defaults(4, 6, 3, 2);
    o.stride[0] = o.stride[1] = 2;
    o.groups = 2;
    o.bias = 0;
    cq_module *c[3] = {conv2d_opt(&o), bn2d(6), relu()};
    return seq(3, c);
  }
  if (!strcmp(name, "conv1d_bn")) {
    cq_module *c[2] = {conv1d(3, 4, 5, 1), bn1d(4)};
    return seq(2, c);
  }
  if (!strcmp(name, "conv1d_bn_relu")) {
    cq_module *c[3] = {conv1d(2, 3, 3, 0), bn1d(3), relu()};
    return seq(3, c);
  }
  if (!strcmp(name, "linear_bn")) {
    cq_module *c[2] = {linear(7, 5, 1), bn1d(5)};
    return seq(2, c);
  }
  if (!strcmp(name, "linear_nobias_bn")) {
    cq_module *c[2] = {linear(6, 3, 0), bn1d(3)};
    return seq(2, c);
  }
  return NULL;
}

typedef struct compare_ctx {
  cq_module *other;
  const char *case_name;
  int compared;
} compare_ctx;

static cq_status compare_tensor(const char *key, cq_named_tensor *t, void *user) {
  compare_ctx *c = user;
  c->compared++;
  cq_named_tensor *o = cq_module_find_tensor(c->other, key);
  CHECK_MSG(o != NULL, "%s: no %s in the expected model", c->case_name, key);
  if (!o) return CQ_OK;
  int same = t->tensor->dtype == o->tensor->dtype &&
             cq_tensor_nbytes(t->tensor) == cq_tensor_nbytes(o->tensor) &&
             memcmp(t->tensor->data, o->tensor->data, cq_tensor_nbytes(t->tensor)) == 0;
  CHECK_MSG(same, "%s: %s differs from PyTorch's fused value", c->case_name, key);
  if (!same && t->tensor->dtype == CQ_F32 && cq_tensor_nbytes(t->tensor) == cq_tensor_nbytes(o->tensor)) {
    const float *a = t->tensor->data, *b = o->tensor->data;
    for (int64_t i = 0, shown = 0; i < cq_tensor_numel(t->tensor) && shown < 3; i++) {
      if (check_f32_bits(a[i]) != check_f32_bits(b[i])) {
        fprintf(stderr, "  [%lld] got %.9g want %.9g\n", (long long)i, (double)a[i], (double)b[i]);
        shown++;
      }
    }
  }
  return CQ_OK;
}

static void test_fold_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN);
    return;
  }
  int cases = 0;
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    if (strncmp(c->name, "fold/", 5) != 0) continue;
    const char *name = c->name + 5;
    char path[1024];
    cq_module *m = fold_model(name), *want = fold_model(name);
    CHECK_MSG(m && want, "fold case %s: no builder", name);
    if (!m || !want) {
      cq_module_free(m);
      cq_module_free(want);
      continue;
    }
    cases++;
    char *before = unescape(golden_get(c, "repr_before"));
    check_repr(m, before, c->name);
    free(before);
    OK(cq_load_safetensors(m, golden_path(&g, golden_get(c, "weights"), path, sizeof path), 1));
    cq_module_train(m, 0);
    cq_module_train(want, 0);
    OK(fuse_list(m, golden_get(c, "fuse")));
    OK(fuse_list(want, golden_get(c, "fuse")));
    char *fused = unescape(golden_get(c, "repr_fused"));
    check_repr(m, fused, c->name);
    free(fused);
    OK(cq_load_safetensors(want, golden_path(&g, golden_get(c, "fused"), path, sizeof path), 1));
    compare_ctx cc = {want, c->name, 0};
    OK(cq_module_visit_tensors(m, compare_tensor, &cc));
    CHECK_MSG(cc.compared >= 2, "%s: only %d tensors compared", c->name, cc.compared);
    cq_module_free(m);
    cq_module_free(want);
  }
  CHECK_INT_EQ(cases, 6);
  golden_free(&g);
  printf("fold: %d cases bit-exact against torch.ao.quantization.fuse_modules\n", cases);
}

/* ---- fuse_modules ------------------------------------------------------------------------------ */

static void test_fuse_patterns(void) {
  /* conv + relu: the fused container holds the original modules */
  {
    cq_module *c[4] = {conv2d(2, 64, 3), relu(), conv2d(64, 128, 3), relu()};
    cq_module *m = seq(4, c);
    cq_module *conv = c[0], *r = c[1];
    cq_module_train(m, 0);
    const char *g1[2] = {"0", "1"};
    OK(cq_fuse_modules(m, 2, g1));
    check_repr(m,
               "Sequential(\n"
               "  (0): ConvReLU2d(\n"
               "    (0): Conv2d(2, 64, kernel_size=(3, 3), stride=(1, 1))\n"
               "    (1): ReLU()\n"
               "  )\n"
               "  (1): Identity()\n"
               "  (2): Conv2d(64, 128, kernel_size=(3, 3), stride=(1, 1))\n"
               "  (3): ReLU()\n"
               ")",
               "seed after fuse ['0','1']");
    cq_module *f = cq_module_child(m, 0);
    CHECK(cq_module_child(f, 0) == conv);
    CHECK(cq_module_child(f, 1) == r);
    CHECK_INT_EQ(cq_module_is_training(f), 1);              /* a new module, as in PyTorch */
    CHECK_INT_EQ(cq_module_is_training(conv), 0);
    CHECK_INT_EQ(cq_module_is_training(cq_module_child(m, 1)), 0); /* Identity: first's flag */
    cq_module_free(m);
  }
  struct {
    const char *what;
    int n;
    const char *fused_type;
    const char *child0_type;
  } cases[] = {
      {"conv1d+bn1d", 2, "Conv1d", NULL},       {"conv1d+bn1d+relu", 3, "ConvReLU1d", "Conv1d"},
      {"conv2d+bn2d", 2, "Conv2d", NULL},       {"conv2d+bn2d+relu", 3, "ConvReLU2d", "Conv2d"},
      {"conv1d+relu", 2, "ConvReLU1d", "Conv1d"}, {"conv2d+relu", 2, "ConvReLU2d", "Conv2d"},
      {"linear+bn1d", 2, "Linear", NULL},       {"linear+relu", 2, "LinearReLU", "Linear"},
      {"bn2d+relu", 2, "BNReLU2d", "BatchNorm2d"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cq_module *c[3] = {NULL};
    const char *w = cases[i].what;
    if (!strncmp(w, "conv1d", 6)) c[0] = conv1d(3, 4, 3, 1);
    if (!strncmp(w, "conv2d", 6)) c[0] = conv2d(3, 4, 3);
    if (!strncmp(w, "linear", 6)) c[0] = linear(3, 4, 1);
    if (!strncmp(w, "bn2d", 4)) c[0] = bn2d(4);
    if (strstr(w, "+bn1d")) c[1] = bn1d(4);
    if (strstr(w, "+bn2d")) c[1] = bn2d(4);
    if (cases[i].n == 2 && !c[1]) c[1] = relu();
    if (cases[i].n == 3) c[2] = relu();
    cq_module *m = seq(cases[i].n, c);
    cq_module_train(m, 0);
    const char *names[3] = {"0", "1", "2"};
    OK(cq_fuse_modules(m, cases[i].n, names));
    cq_module *f = cq_module_child(m, 0);
    CHECK_MSG(!strcmp(cq_module_type_name(f), cases[i].fused_type), "%s fused to %s", w,
              cq_module_type_name(f));
    if (cases[i].child0_type) {
      CHECK_INT_EQ(cq_module_num_children(f), 2);
      CHECK(!strcmp(cq_module_type_name(cq_module_child(f, 0)), cases[i].child0_type));
      CHECK(!strcmp(cq_module_type_name(cq_module_child(f, 1)), "ReLU"));
      CHECK(!strcmp(cq_module_child_name(f, 0), "0"));
      CHECK(!strcmp(cq_module_child_name(f, 1), "1"));
    } else {
      CHECK_INT_EQ(cq_module_is_training(f), 0); /* the folded copy keeps the layer's flag */
      CHECK(cq_module_find_tensor(f, "bias") != NULL);
    }
    for (int k = 1; k < cases[i].n; k++) {
      CHECK(!strcmp(cq_module_type_name(cq_module_child(m, k)), "Identity"));
    }
    cq_module_free(m);
  }
}

static void test_fuse_folded_no_rng_draw(void) {
  /* folding copies the layer like deepcopy: the generator must not move */
  cq_module *c[2] = {conv2d(3, 4, 3), bn2d(4)};
  cq_module *m = seq(2, c);
  cq_module_train(m, 0);
  cq_manual_seed(5);
  const char *names[2] = {"0", "1"};
  OK(cq_fuse_modules(m, 2, names));
  cq_module *a = linear(2, 2, 1);
  cq_manual_seed(5);
  cq_module *b = linear(2, 2, 1);
  const float *wa = cq_module_find_tensor(a, "weight")->tensor->data;
  const float *wb = cq_module_find_tensor(b, "weight")->tensor->data;
  CHECK(memcmp(wa, wb, 4 * sizeof(float)) == 0);
  cq_module_free(a);
  cq_module_free(b);
  cq_module_free(m);
}

static void test_fuse_errors(void) {
  /* not a pattern */
  {
    cq_module *c[3] = {conv2d(2, 4, 3), linear(4, 4, 1), relu()};
    cq_module *m = seq(3, c);
    cq_module_train(m, 0);
    char *before = cq_module_repr_alloc(m);
    const char *names[3] = {"0", "1", "2"};
    CHECK_STATUS(cq_fuse_modules(m, 2, names), CQ_EINVAL);
    CHECK(strstr(cq_last_error(), "cannot fuse (Conv2d, Linear)") != NULL);
    const char *rl[2] = {"2", "0"}; /* ReLU, Conv2d: order matters */
    CHECK_STATUS(cq_fuse_modules(m, 2, rl), CQ_EINVAL);
    const char *one[1] = {"0"};
    CHECK_STATUS(cq_fuse_modules(m, 1, one), CQ_EINVAL);
    const char *missing[2] = {"0", "7"};
    CHECK_STATUS(cq_fuse_modules(m, 2, missing), CQ_EINVAL);
    CHECK(strstr(cq_last_error(), "'7'") != NULL);
    const char *root[2] = {"", "0"};
    CHECK_STATUS(cq_fuse_modules(m, 2, root), CQ_EINVAL);
    const char *twice[2] = {"0", "0"};
    CHECK_STATUS(cq_fuse_modules(m, 2, twice), CQ_EINVAL);
    CHECK_STATUS(cq_fuse_modules(m, 0, names), CQ_EINVAL);
    CHECK_STATUS(cq_fuse_modules(m, 2, NULL), CQ_EINVAL);
    CHECK_STATUS(cq_fuse_modules(NULL, 2, names), CQ_EINVAL);
    const char *nul[2] = {"0", NULL};
    CHECK_STATUS(cq_fuse_modules(m, 2, nul), CQ_EINVAL);
    check_repr(m, before, "model after failed fusions");
    free(before);
    cq_module_free(m);
  }
  /* ReLU6 does not fuse; Conv1d with BatchNorm2d is no pattern */
  {
    cq_module *r6 = NULL;
    OK(cq_relu6(&r6));
    cq_module *c[3] = {conv2d(2, 4, 3), r6, bn2d(4)};
    cq_module *m = seq(3, c);
    cq_module_train(m, 0);
    const char *a[2] = {"0", "1"};
    CHECK_STATUS(cq_fuse_modules(m, 2, a), CQ_EINVAL);
    cq_module_free(m);
    cq_module *d[2] = {conv1d(2, 4, 3, 1), bn2d(4)};
    m = seq(2, d);
    cq_module_train(m, 0);
    CHECK_STATUS(cq_fuse_modules(m, 2, a), CQ_EINVAL);
    cq_module_free(m);
  }
  /* BN folding needs eval mode, and the same mode for all */
  {
    cq_module *c[3] = {conv2d(2, 4, 3), bn2d(4), relu()};
    cq_module *m = seq(3, c);
    char *before = cq_module_repr_alloc(m);
    const char *names[3] = {"0", "1", "2"};
    CHECK_STATUS(cq_fuse_modules(m, 3, names), CQ_EINVAL);
    CHECK(strstr(cq_last_error(), "eval") != NULL);
    CHECK_STATUS(cq_fuse_modules(m, 2, names), CQ_EINVAL);
    cq_module_train(cq_module_child(m, 1), 0);
    CHECK_STATUS(cq_fuse_modules(m, 2, names), CQ_EINVAL); /* conv training, bn eval */
    CHECK(strstr(cq_last_error(), "same mode") != NULL);
    cq_module_train(m, 0);
    cq_module_train(cq_module_child(m, 2), 1);
    CHECK_STATUS(cq_fuse_modules(m, 3, names), CQ_EINVAL);
    check_repr(m, before, "model after refused BN folding");
    free(before);
    /* BNReLU2d and ConvReLU need no mode (as in PyTorch) */
    cq_module_train(m, 1);
    const char *br[2] = {"1", "2"};
    OK(cq_fuse_modules(m, 2, br));
    CHECK(!strcmp(cq_module_type_name(cq_module_child(m, 1)), "BNReLU2d"));
    cq_module_free(m);
  }
  /* BN with another number of features than the conv's output channels */
  {
    cq_module *c[2] = {conv2d(2, 4, 3), bn2d(5)};
    cq_module *m = seq(2, c);
    cq_module_train(m, 0);
    char *before = cq_module_repr_alloc(m);
    const char *names[2] = {"0", "1"};
    CHECK_STATUS(cq_fuse_modules(m, 2, names), CQ_ESHAPE);
    check_repr(m, before, "model after refused BN folding (features)");
    free(before);
    cq_module_free(m);
  }
}

/* Nested names, and fusion in training mode for conv+relu (the seed's QAT script does it). */
static void test_fuse_nested_training(void) {
  cq_module *inner_c[3] = {linear(4, 8, 1), relu(), linear(8, 2, 1)};
  cq_module *inner = seq(3, inner_c);
  cq_module *outer_c[2] = {conv2d(1, 1, 1), inner};
  cq_module *m = seq(2, outer_c);
  const char *names[2] = {"1.0", "1.1"};
  OK(cq_fuse_modules(m, 2, names));
  check_repr(m,
             "Sequential(\n"
             "  (0): Conv2d(1, 1, kernel_size=(1, 1), stride=(1, 1))\n"
             "  (1): Sequential(\n"
             "    (0): LinearReLU(\n"
             "      (0): Linear(in_features=4, out_features=8, bias=True)\n"
             "      (1): ReLU()\n"
             "    )\n"
             "    (1): Identity()\n"
             "    (2): Linear(in_features=8, out_features=2, bias=True)\n"
             "  )\n"
             ")",
             "nested fusion");
  CHECK_INT_EQ(cq_module_is_training(cq_module_find(m, "1.1")), 1);
  cq_module_free(m);
}

/* ---- fused modules: forward and backward as the unfused chain ---------------------------------- */

static cq_status copy_into(const char *key, cq_named_tensor *t, void *user) {
  cq_named_tensor *dst = cq_module_find_tensor(user, key);
  if (!dst) return CQ_EINVAL;
  memcpy(dst->tensor->data, t->tensor->data, cq_tensor_nbytes(t->tensor));
  return CQ_OK;
}

static int same_f32(const cq_tensor *a, const cq_tensor *b) {
  return a && b && cq_tensor_numel(a) == cq_tensor_numel(b) &&
         memcmp(a->data, b->data, cq_tensor_nbytes(a)) == 0;
}

static cq_module *fused_test_model(void) {
  cq_module *flat = NULL;
  OK(cq_flatten(&flat, 1, -1));
  cq_module *c[6] = {conv2d(2, 3, 3), relu(), bn2d(3), relu(), flat, NULL};
  c[5] = linear(3 * 4 * 4, 5, 1);
  cq_module *m = seq(6, c);
  cq_module *lr[2] = {m, relu()};
  return seq(2, lr); /* (0): the chain, (1): a ReLU after the Linear */
}

static void test_fused_forward_backward(void) {
  cq_manual_seed(11);
  cq_module *a = fused_test_model(), *b = fused_test_model();
  OK(cq_module_visit_tensors(a, copy_into, b));
  /* BN statistics that do something, the same in both */
  cq_named_tensor *rm = cq_module_find_tensor(a, "0.2.running_mean");
  ((float *)rm->tensor->data)[1] = 0.25f;
  OK(cq_module_visit_tensors(a, copy_into, b));
  cq_module_train(a, 0);
  cq_module_train(b, 0);
  const char *g1[2] = {"0.0", "0.1"}, *g2[2] = {"0.2", "0.3"};
  OK(cq_fuse_modules(a, 2, g1));
  OK(cq_fuse_modules(a, 2, g2));
  /* move the last Linear+ReLU into a LinearReLU across the nesting: not a sibling pattern in
   * PyTorch either, so fuse the inner Linear with the outer ReLU by name */
  const char *g3[2] = {"0.5", "1"};
  OK(cq_fuse_modules(a, 2, g3));
  CHECK(!strcmp(cq_module_type_name(cq_module_find(a, "0.5")), "LinearReLU"));
  CHECK(!strcmp(cq_module_type_name(cq_module_find(a, "0.2")), "BNReLU2d"));

  cq_tensor *x = NULL;
  int64_t shape[4] = {2, 2, 6, 6};
  OK(cq_tensor_create(&x, CQ_F32, 4, shape));
  float *xd = x->data;
  for (int i = 0; i < 144; i++) xd[i] = (float)sin(0.37 * i) * 1.5f;
  cq_ctx *ca = NULL, *cb = NULL;
  OK(cq_ctx_create(&ca));
  OK(cq_ctx_create(&cb));
  cq_ctx_set_grad(ca, 1);
  cq_ctx_set_grad(cb, 1);
  cq_tensor *ya = NULL, *yb = NULL;
  OK(cq_module_forward1(a, ca, x, &ya));
  OK(cq_module_forward1(b, cb, x, &yb));
  CHECK_MSG(same_f32(ya, yb), "fused forward differs from the unfused chain");
  cq_tensor *gy = NULL;
  if (ya) {
    OK(cq_tensor_create(&gy, CQ_F32, ya->ndim, ya->shape));
    float *g = gy->data;
    for (int64_t i = 0; i < cq_tensor_numel(gy); i++) g[i] = (float)cos(0.11 * (double)i);
    cq_tensor *gxa = NULL, *gxb = NULL;
    OK(cq_ctx_backward(ca, ya, gy, x, &gxa));
    OK(cq_ctx_backward(cb, yb, gy, x, &gxb));
    CHECK_MSG(same_f32(gxa, gxb), "fused input gradient differs");
    static const char *pairs[][2] = {
        {"0.0.0.weight", "0.0.weight"}, {"0.0.0.bias", "0.0.bias"}, {"0.2.0.weight", "0.2.weight"},
        {"0.2.0.bias", "0.2.bias"},     {"0.5.0.weight", "0.5.weight"}, {"0.5.0.bias", "0.5.bias"},
    };
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
      cq_named_tensor *ta = cq_module_find_tensor(a, pairs[i][0]);
      cq_named_tensor *tb = cq_module_find_tensor(b, pairs[i][1]);
      CHECK_MSG(ta && tb && same_f32(ta->grad, tb->grad), "gradient of %s differs", pairs[i][0]);
    }
  }
  cq_tensor_free(gy);
  cq_tensor_free(x);
  cq_ctx_free(ca);
  cq_ctx_free(cb);
  cq_module_free(a);
  cq_module_free(b);
}

/* ---- prepare ----------------------------------------------------------------------------------- */

static const char *seed_prepared =
    "Sequential(\n"
    "  (0): QuantStub(\n"
    "    (activation_post_process): HistogramObserver(min_val=inf, max_val=-inf)\n"
    "  )\n"
    "  (1): ConvReLU2d(\n"
    "    (0): Conv2d(2, 64, kernel_size=(3, 3), stride=(1, 1))\n"
    "    (1): ReLU()\n"
    "    (activation_post_process): HistogramObserver(min_val=inf, max_val=-inf)\n"
    "  )\n"
    "  (2): Identity()\n"
    "  (3): ConvReLU2d(\n"
    "    (0): Conv2d(64, 128, kernel_size=(3, 3), stride=(1, 1))\n"
    "    (1): ReLU()\n"
    "    (activation_post_process): HistogramObserver(min_val=inf, max_val=-inf)\n"
    "  )\n"
    "  (4): Identity()\n"
    "  (5): DeQuantStub()\n"
    ")";

/* The seed's static block up to prepare. */
static cq_module *seed_fused_wrapped(void) {
  cq_module *c[4] = {conv2d(2, 64, 3), relu(), conv2d(64, 128, 3), relu()};
  cq_module *m = seq(4, c);
  cq_module_train(m, 0);
  const char *g1[2] = {"0", "1"}, *g2[2] = {"2", "3"};
  OK(cq_fuse_modules(m, 2, g1));
  OK(cq_fuse_modules(m, 2, g2));
  cq_module *w = NULL;
  OK(cq_sequential(&w, 0, NULL));
  OK(cq_sequential_append(w, simple(cq_quant_stub)));
  for (int i = 0; i < cq_module_num_children(m); i++) { /* Sequential(QuantStub(), *m, ...) */
    cq_module *child = NULL;
    OK(cq_module_replace(m, cq_module_child_name(m, i), simple(cq_identity), &child));
    OK(cq_sequential_append(w, child));
  }
  cq_module_free(m);
  OK(cq_sequential_append(w, simple(cq_dequant_stub)));
  cq_module_train(w, 0);
  return w;
}

static void set_default_qconfig(cq_module *m, cq_backend backend) {
  cq_qconfig qc;
  OK(cq_get_default_qconfig(backend, 0, &qc));
  OK(cq_module_set_qconfig(m, &qc));
}

static void test_prepare_seed(void) {
  cq_module *m = seed_fused_wrapped();
  set_default_qconfig(m, CQ_BACKEND_FBGEMM);
  OK(cq_prepare(m));
  check_repr(m, seed_prepared, "the seed after prepare");
  /* qconfig propagated everywhere, observers reduce_range as fbgemm's */
  CHECK(cq_module_get_qconfig(cq_module_find(m, "1.0")) != NULL);
  CHECK(cq_module_get_qconfig(cq_module_find(m, "5")) != NULL);
  cq_observer *obs = cq_observer_module_get(cq_module_find(m, "1.activation_post_process"));
  CHECK(obs && cq_observer_config_of(obs)->reduce_range == 1);
  CHECK(cq_module_find(m, "1.0.activation_post_process") == NULL); /* fused: one unit */

  /* calibration = running the model: every observer sees data */
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = NULL;
  int64_t shape[4] = {1, 2, 28, 28};
  OK(cq_tensor_create(&x, CQ_F32, 4, shape));
  float *xd = x->data;
  for (int i = 0; i < 2 * 28 * 28; i++) xd[i] = (float)((i * 37) % 101) / 100.0f;
  cq_tensor *y = NULL;
  OK(cq_module_forward1(m, ctx, x, &y));
  CHECK(y && y->ndim == 4 && y->shape[1] == 128 && y->shape[2] == 26 - 2);
  const char *paths[3] = {"0.activation_post_process", "1.activation_post_process",
                          "3.activation_post_process"};
  for (int i = 0; i < 3; i++) {
    cq_observer *o = cq_observer_module_get(cq_module_find(m, paths[i]));
    CHECK_MSG(o && cq_observer_has_data(o), "%s saw no data", paths[i]);
  }
  float mn = 0, mx = 0;
  cq_observer_min_max(cq_observer_module_get(cq_module_find(m, paths[0])), &mn, &mx, 1);
  CHECK(mn == 0.0f && mx == 1.0f);
  cq_tensor_free(x);
  cq_ctx_free(ctx);

  /* prepared twice: refused, nothing changes */
  char *before = cq_module_repr_alloc(m);
  CHECK_STATUS(cq_prepare(m), CQ_ESTATE);
  CHECK(strstr(cq_last_error(), "already") != NULL);
  check_repr(m, before, "after a second prepare");
  free(before);
  cq_module_free(m);
}

static int has_post(cq_module *m, const char *path) {
  char buf[256];
  snprintf(buf, sizeof buf, "%s%sactivation_post_process", path, path[0] ? "." : "");
  cq_module *p = cq_module_find(m, buf);
  return p && cq_observer_module_get(p) != NULL;
}

static void test_prepare_which_modules(void) {
  cq_pool_options po = cq_pool_defaults(2, 2);
  cq_module *mp = NULL, *ap = NULL, *aap = NULL, *flat = NULL, *drop = NULL, *r6 = NULL,
            *sm = NULL, *add = NULL, *cat = NULL;
  OK(cq_maxpool2d(&mp, &po));
  OK(cq_avgpool2d(&ap, &po));
  OK(cq_adaptive_avgpool2d(&aap, 1, 1));
  OK(cq_flatten(&flat, 1, -1));
  OK(cq_dropout(&drop, 0.5f));
  OK(cq_relu6(&r6));
  OK(cq_softmax(&sm, 1));
  OK(cq_add(&add));
  OK(cq_cat(&cat, 1));
  cq_module *inner_c[2] = {linear(3, 3, 1), simple(cq_sigmoid)};
  cq_module *c[19] = {simple(cq_quant_stub), conv2d(1, 2, 1), bn2d(2), relu(), r6, mp, ap, aap,
                      flat, drop, simple(cq_identity), linear(2, 3, 1), simple(cq_tanh), sm,
                      seq(2, inner_c), bn1d(3), add, cat, simple(cq_dequant_stub)};
  cq_module *m = seq(19, c);
  cq_module_train(m, 0);
  set_default_qconfig(m, CQ_BACKEND_QNNPACK);
  OK(cq_prepare(m));
  static const struct {
    const char *path;
    int observed;
  } want[] = {
      {"0", 1},  {"1", 1},  {"2", 1},  {"3", 0},  {"4", 1},  {"5", 0},   {"6", 0},
      {"7", 0},  {"8", 0},  {"9", 0},  {"10", 0}, {"11", 1}, {"12", 0},  {"13", 0},
      {"14.0", 1}, {"14.1", 0}, {"14", 0}, {"15", 0}, {"16", 1}, {"17", 1}, {"18", 0},
  };
  for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
    CHECK_MSG(has_post(m, want[i].path) == want[i].observed, "module %s (%s): observed %d, want %d",
              want[i].path, cq_module_type_name(cq_module_find(m, want[i].path)),
              has_post(m, want[i].path), want[i].observed);
  }
  /* FloatFunctional: the observer replaced its Identity (still one child) */
  CHECK_INT_EQ(cq_module_num_children(cq_module_find(m, "16")), 1);
  /* Dropout is skipped entirely, even for qconfig propagation of nothing below it */
  CHECK(cq_module_get_qconfig(cq_module_find(m, "9")) != NULL);
  cq_module_free(m);

  /* the root itself, when it is an observed leaf */
  cq_module *lin = linear(2, 2, 1);
  set_default_qconfig(lin, CQ_BACKEND_QNNPACK);
  OK(cq_prepare(lin));
  CHECK(has_post(lin, ""));
  check_repr(lin,
             "Linear(\n"
             "  in_features=2, out_features=2, bias=True\n"
             "  (activation_post_process): HistogramObserver(min_val=inf, max_val=-inf)\n"
             ")",
             "prepared Linear");
  cq_module_free(lin);
}

static void test_prepare_qconfig_scope(void) {
  /* only the subtree with a qconfig is observed */
  cq_module *sub_c[2] = {linear(4, 4, 1), linear(4, 4, 1)};
  cq_module *c[3] = {simple(cq_quant_stub), seq(2, sub_c), linear(4, 2, 1)};
  cq_module *m = seq(3, c);
  cq_module_train(m, 0);
  set_default_qconfig(cq_module_find(m, "1"), CQ_BACKEND_FBGEMM);
  /* an explicit None (empty qconfig) on 1.1 keeps it float */
  cq_qconfig none;
  memset(&none, 0, sizeof none);
  OK(cq_module_set_qconfig(cq_module_find(m, "1.1"), &none));
  OK(cq_prepare(m));
  CHECK(!has_post(m, "0"));
  CHECK(has_post(m, "1.0"));
  CHECK(!has_post(m, "1.1"));
  CHECK(!has_post(m, "2"));
  CHECK(cq_module_get_qconfig(m) == NULL);
  CHECK(cq_module_get_qconfig(cq_module_find(m, "2")) == NULL);
  cq_module_free(m);

  /* a child's own qconfig wins over its parent's */
  cq_module *d[2] = {linear(4, 4, 1), linear(4, 4, 1)};
  m = seq(2, d);
  cq_module_train(m, 0);
  set_default_qconfig(m, CQ_BACKEND_FBGEMM);
  set_default_qconfig(cq_module_find(m, "1"), CQ_BACKEND_QNNPACK);
  OK(cq_prepare(m));
  cq_observer *o0 = cq_observer_module_get(cq_module_find(m, "0.activation_post_process"));
  cq_observer *o1 = cq_observer_module_get(cq_module_find(m, "1.activation_post_process"));
  CHECK(o0 && cq_observer_config_of(o0)->reduce_range == 1);
  CHECK(o1 && cq_observer_config_of(o1)->reduce_range == 0);
  cq_module_free(m);

  /* a Graph (custom module) is walked like any container */
  cq_module *g = NULL;
  OK(cq_graph(&g, 1));
  int v1 = 0, v2 = 0, v3 = 0, x = 0;
  OK(cq_graph_add_node(g, "quant", simple(cq_quant_stub), 1, &x, 1, &v1));
  OK(cq_graph_add_node(g, "fc", linear(3, 3, 1), 1, &v1, 1, &v2));
  cq_module *add = NULL;
  OK(cq_add(&add));
  int in2[2] = {v2, v1};
  OK(cq_graph_add_node(g, "skip", add, 2, in2, 1, &v3));
  OK(cq_graph_set_outputs(g, 1, &v3));
  OK(cq_graph_set_name(g, "Res"));
  cq_module_train(g, 0);
  set_default_qconfig(g, CQ_BACKEND_QNNPACK);
  OK(cq_prepare(g));
  check_repr(g,
             "Res(\n"
             "  (quant): QuantStub(\n"
             "    (activation_post_process): HistogramObserver(min_val=inf, max_val=-inf)\n"
             "  )\n"
             "  (fc): Linear(\n"
             "    in_features=3, out_features=3, bias=True\n"
             "    (activation_post_process): HistogramObserver(min_val=inf, max_val=-inf)\n"
             "  )\n"
             "  (skip): FloatFunctional(\n"
             "    (activation_post_process): HistogramObserver(min_val=inf, max_val=-inf)\n"
             "  )\n"
             ")",
             "prepared graph");
  /* its forward runs the observers, the add's included */
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *xt = NULL, *y = NULL;
  int64_t shape[2] = {2, 3};
  OK(cq_tensor_create(&xt, CQ_F32, 2, shape));
  ((float *)xt->data)[4] = 2.0f;
  OK(cq_module_forward1(g, ctx, xt, &y));
  CHECK(cq_observer_has_data(cq_observer_module_get(cq_module_find(g, "skip.activation_post_process"))));
  cq_tensor_free(xt);
  cq_ctx_free(ctx);
  cq_module_free(g);
}

/* Prepare in training mode gives Sigmoid / Tanh the fixed-qparams fake-quant (as PyTorch). */
static void test_prepare_training_special(void) {
  cq_module *c[3] = {linear(2, 2, 1), simple(cq_sigmoid), simple(cq_tanh)};
  cq_module *m = seq(3, c);
  set_default_qconfig(m, CQ_BACKEND_QNNPACK);
  OK(cq_prepare(m));
  cq_module *s = cq_module_find(m, "1.activation_post_process");
  cq_module *t = cq_module_find(m, "2.activation_post_process");
  char *rs = s ? cq_module_repr_alloc(s) : NULL, *rt = t ? cq_module_repr_alloc(t) : NULL;
  CHECK_MSG(rs && strncmp(rs, "FixedQParamsFakeQuantize(", 25) == 0, "Sigmoid got %s",
            rs ? rs : "nothing");
  CHECK_MSG(rt && strstr(rt, "zero_point=tensor([128]") != NULL, "Tanh got %s", rt ? rt : "nothing");
  free(rs);
  free(rt);
  cq_module_free(m);
}

static void check_refused(cq_module *m, cq_status want, const char *needle, const char *what) {
  char *before = cq_module_repr_alloc(m);
  CHECK_STATUS(cq_prepare(m), want);
  CHECK_MSG(!needle || strstr(cq_last_error(), needle), "%s: message '%s' lacks '%s'", what,
            cq_last_error(), needle ? needle : "");
  check_repr(m, before, what);
  /* nothing propagated: the children still have no qconfig */
  for (int i = 0; i < cq_module_num_children(m); i++) {
    CHECK_MSG(cq_module_get_qconfig(cq_module_child(m, i)) == NULL, "%s: child %d got a qconfig",
              what, i);
  }
  free(before);
}

static cq_module *small_model(void) {
  cq_module *c[4] = {simple(cq_quant_stub), linear(3, 3, 1), relu(), simple(cq_dequant_stub)};
  cq_module *m = seq(4, c);
  cq_module_train(m, 0);
  return m;
}

static void test_prepare_errors(void) {
  cq_module *m = small_model();
  check_refused(m, CQ_ESTATE, "no module has a qconfig", "no qconfig anywhere");
  CHECK_STATUS(cq_prepare(NULL), CQ_EINVAL);

  cq_qconfig qc;
  OK(cq_get_default_qconfig(CQ_BACKEND_QNNPACK, 0, &qc));
  qc.activation.observer.dtype = CQ_QINT32;
  OK(cq_module_set_qconfig(m, &qc));
  check_refused(m, CQ_EINVAL, "torch.qint32", "activation dtype qint32");

  OK(cq_get_default_qconfig(CQ_BACKEND_QNNPACK, 0, &qc));
  qc.activation.observer.dtype = (cq_qdtype)42;
  OK(cq_module_set_qconfig(m, &qc));
  check_refused(m, CQ_EINVAL, "invalid", "activation dtype out of range");

  OK(cq_get_default_qconfig(CQ_BACKEND_QNNPACK, 0, &qc));
  qc.weight.observer.dtype = CQ_QUINT8;
  OK(cq_module_set_qconfig(m, &qc));
  check_refused(m, CQ_EINVAL, "torch.qint8", "weight dtype quint8");

  OK(cq_qconfig_preset("default_dynamic_qconfig", &qc));
  OK(cq_module_set_qconfig(m, &qc));
  check_refused(m, CQ_EINVAL, "PlaceholderObserver", "dynamic qconfig");

  OK(cq_qconfig_preset("float16_static_qconfig", &qc));
  OK(cq_module_set_qconfig(m, &qc));
  check_refused(m, CQ_EINVAL, NULL, "float16 static qconfig");

  OK(cq_get_default_qconfig(CQ_BACKEND_QNNPACK, 0, &qc));
  qc.activation.observer.quant_min = 5; /* custom range must contain 0 */
  qc.activation.observer.quant_max = 100;
  qc.activation.observer.has_quant_range = 1;
  OK(cq_module_set_qconfig(m, &qc));
  check_refused(m, CQ_EINVAL, NULL, "activation range without 0");

  OK(cq_get_default_qconfig(CQ_BACKEND_QNNPACK, 0, &qc));
  qc.activation.observer = cq_observer_defaults(CQ_OBSERVER_MOVING_AVERAGE_MINMAX);
  qc.activation.observer.averaging_constant = 1.0f;
  OK(cq_module_set_qconfig(m, &qc));
  check_refused(m, CQ_EUNSUPPORTED, "memoryless", "memoryless activation observer");
  cq_module_free(m);

  cq_module *lstm = NULL;
  cq_rnn_options ro = cq_rnn_defaults(3, 3);
  OK(cq_lstm(&lstm, &ro));
  cq_module *c[2] = {simple(cq_quant_stub), lstm};
  m = seq(2, c);
  cq_module_train(m, 0);
  set_default_qconfig(m, CQ_BACKEND_QNNPACK);
  check_refused(m, CQ_EUNSUPPORTED, "LSTM", "LSTM in static prepare");
  cq_module_free(m);
}

/* Allocation failures: a failing fuse or prepare leaves the model as it was. */
static void test_out_of_memory(void) {
  for (int which = 0; which < 2; which++) {
    int succeeded = 0;
    for (long n = 0; n < 400 && !succeeded; n++) {
      cq_module *m = NULL;
      if (which == 0) {
        cq_module *c[3] = {conv2d(2, 4, 3), bn2d(4), relu()};
        m = seq(3, c);
        cq_module_train(m, 0);
      } else {
        m = seed_fused_wrapped();
        set_default_qconfig(m, CQ_BACKEND_FBGEMM);
      }
      char *before = cq_module_repr_alloc(m);
      const char *names[3] = {"0", "1", "2"};
      cq_debug_fail_alloc_after(n);
      cq_status st = which == 0 ? cq_fuse_modules(m, 3, names) : cq_prepare(m);
      cq_debug_fail_alloc_after(-1);
      if (st == CQ_OK) {
        succeeded = 1;
        if (which == 1) check_repr(m, seed_prepared, "prepare after allocation failures");
      } else {
        CHECK_MSG(st == CQ_ENOMEM, "allocation failure %ld gave %s (%s)", n, cq_status_str(st),
                  cq_last_error());
        check_repr(m, before, which == 0 ? "fuse under allocation failure"
                                         : "prepare under allocation failure");
        if (which == 1) CHECK(cq_module_get_qconfig(cq_module_child(m, 1)) == NULL);
      }
      free(before);
      cq_module_free(m);
    }
    CHECK_MSG(succeeded, "%s never succeeded within 400 allocations", which ? "prepare" : "fuse");
  }
}

static void quiet(const char *message, void *user) {
  (void)message;
  (void)user;
}

int main(void) {
  cq_set_warning_handler(quiet, NULL);
  test_fold_golden();
  test_fuse_patterns();
  test_fuse_folded_no_rng_draw();
  test_fuse_errors();
  test_fuse_nested_training();
  test_fused_forward_backward();
  test_prepare_seed();
  test_prepare_which_modules();
  test_prepare_qconfig_scope();
  test_prepare_training_special();
  test_prepare_errors();
  test_out_of_memory();
  return check_summary("test_passes");
}

/* Linear forward/backward, MSE and cross-entropy losses, SGD and Adam against PyTorch 1.13
 * (tools/golden/gen_nn_linear_optim.py). Tolerance: 1e-4 relative to max(|want|, 1% of the tensor's
 * largest magnitude), i.e. relative error with a floor for values that come from cancellation. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cquant/cquant.h"
#include "golden.h"

static golden_file g;
static double worst;

static cq_tensor *load(const golden_case *c, const char *key) {
  const char *rel = golden_get(c, key);
  char path[1024];
  cq_tensor *t = NULL;
  if (!rel || cq_npy_load(golden_path(&g, rel, path, sizeof path), &t) != CQ_OK) {
    CHECK_MSG(0, "%s: cannot load '%s': %s", c->name, key, cq_last_error());
    return NULL;
  }
  return t;
}

static void compare(const golden_case *c, const char *what, const float *got, const float *want,
                    int64_t n) {
  double peak = 0;
  for (int64_t i = 0; i < n; i++) peak = fmax(peak, fabs((double)want[i]));
  for (int64_t i = 0; i < n; i++) {
    double denom = fmax(fabs((double)want[i]), 0.01 * peak);
    double err = denom > 0 ? fabs((double)got[i] - want[i]) / denom : fabs((double)got[i]);
    if (err > worst) worst = err;
    if (err > 1e-4) {
      CHECK_MSG(0, "%s %s[%lld]: got %.9g want %.9g", c->name, what, (long long)i, got[i], want[i]);
      return;
    }
  }
  check_passed++;
}

static void compare_tensor(const golden_case *c, const char *what, const cq_tensor *got,
                           const char *key) {
  cq_tensor *want = load(c, key);
  if (!want || !got) {
    cq_tensor_free(want);
    return;
  }
  CHECK_MSG(cq_tensor_numel(got) == cq_tensor_numel(want), "%s %s: size differs", c->name, what);
  if (cq_tensor_numel(got) == cq_tensor_numel(want)) {
    compare(c, what, got->data, want->data, cq_tensor_numel(want));
  }
  cq_tensor_free(want);
}

static void set_param(const golden_case *c, cq_module *m, const char *name, const char *key) {
  cq_tensor *v = load(c, key);
  cq_named_tensor *t = cq_module_find_tensor(m, name);
  if (v && t && cq_tensor_nbytes(v) == cq_tensor_nbytes(t->tensor)) {
    memcpy(t->tensor->data, v->data, cq_tensor_nbytes(v));
  } else {
    CHECK_MSG(0, "%s: cannot set %s", c->name, name);
  }
  cq_tensor_free(v);
}

static void run_linear(const golden_case *c) {
  int fin = atoi(golden_get(c, "in_features")), fout = atoi(golden_get(c, "out_features"));
  int bias = atoi(golden_get(c, "bias"));
  cq_module *m = NULL;
  CHECK_OK(cq_linear(&m, fin, fout, bias));
  if (!m) return;
  set_param(c, m, "weight", "weight");
  if (bias) set_param(c, m, "bias", "bias_value");
  char repr[256];
  cq_module_repr(m, repr, sizeof repr);
  CHECK_STR_EQ(repr, golden_get(c, "repr"));
  cq_ctx *ctx;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_ctx_set_grad(ctx, 1);
  cq_tensor *x = load(c, "input"), *gy = load(c, "grad_output"), *y = NULL, *gx = NULL;
  if (x && gy) {
    CHECK_OK(cq_module_forward1(m, ctx, x, &y));
    compare_tensor(c, "output", y, "output");
    CHECK_OK(cq_ctx_backward(ctx, y, gy, x, &gx));
    compare_tensor(c, "grad_input", gx, "grad_input");
    compare_tensor(c, "grad_weight", cq_module_find_tensor(m, "weight")->grad, "grad_weight");
    if (bias) compare_tensor(c, "grad_bias", cq_module_find_tensor(m, "bias")->grad, "grad_bias");
  }
  cq_tensor_free(x);
  cq_tensor_free(gy);
  cq_ctx_free(ctx);
  cq_module_free(m);
}

static void run_loss(const golden_case *c, int cross_entropy) {
  cq_module *m = NULL;
  CHECK_OK(cross_entropy ? cq_cross_entropy_loss(&m) : cq_mse_loss(&m));
  cq_ctx *ctx;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_ctx_set_grad(ctx, 1);
  cq_tensor *x = load(c, "input"), *t = load(c, "target"), *loss = NULL, *gx = NULL;
  if (m && x && t) {
    cq_tensor *pair[2] = {x, t};
    CHECK_OK(cq_module_forward(m, ctx, 2, pair, 1, &loss));
    if (loss) {
      float want = (float)strtod(golden_get(c, "loss"), NULL);
      compare(c, "loss", loss->data, &want, 1);
      float one = 1.0f;
      cq_tensor *seed;
      cq_tensor_wrap(&seed, CQ_F32, 0, NULL, &one);
      CHECK_OK(cq_ctx_backward(ctx, loss, seed, x, &gx));
      compare_tensor(c, "grad_input", gx, "grad_input");
      cq_tensor_free(seed);
    }
  }
  cq_tensor_free(x);
  cq_tensor_free(t);
  cq_ctx_free(ctx);
  cq_module_free(m);
}

static float num(const golden_case *c, const char *key, float dflt) {
  const char *v = golden_get(c, key);
  return v ? (float)strtod(v, NULL) : dflt;
}

static void run_optim(const golden_case *c) {
  cq_module *m = NULL, *mse = NULL;
  CHECK_OK(cq_linear(&m, 4, 3, 1));
  CHECK_OK(cq_mse_loss(&mse));
  if (!m || !mse) return;
  set_param(c, m, "weight", "weight");
  set_param(c, m, "bias", "bias_value");
  cq_optimizer *opt = NULL;
  if (!strcmp(golden_get(c, "optimizer"), "sgd")) {
    CHECK_OK(cq_sgd(&opt, m, num(c, "lr", 0), num(c, "momentum", 0), num(c, "dampening", 0),
                    num(c, "weight_decay", 0), (int)num(c, "nesterov", 0)));
  } else {
    CHECK_OK(cq_adam(&opt, m, num(c, "lr", 1e-3f), num(c, "beta1", 0.9f), num(c, "beta2", 0.999f),
                     num(c, "eps", 1e-8f), num(c, "weight_decay", 0)));
  }
  float *losses = NULL;
  int steps = golden_parse_floats(golden_get(c, "loss"), &losses);
  cq_ctx *ctx;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_ctx_set_grad(ctx, 1);
  float one = 1.0f;
  cq_tensor *seed;
  cq_tensor_wrap(&seed, CQ_F32, 0, NULL, &one);
  for (int s = 0; opt && s < steps; s++) {
    char key[32];
    snprintf(key, sizeof key, "input_%d", s);
    cq_tensor *x = load(c, key);
    snprintf(key, sizeof key, "target_%d", s);
    cq_tensor *t = load(c, key), *y = NULL, *loss = NULL;
    if (x && t) {
      CHECK_OK(cq_module_forward1(m, ctx, x, &y));
      cq_tensor *pair[2] = {y, t};
      CHECK_OK(cq_module_forward(mse, ctx, 2, pair, 1, &loss));
      cq_optimizer_zero_grad(opt);
      CHECK_OK(cq_ctx_backward(ctx, loss, seed, NULL, NULL));
      CHECK_OK(cq_optimizer_step(opt));
      compare(c, "loss", loss->data, &losses[s], 1);
    }
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
    cq_tensor_free(t);
  }
  compare_tensor(c, "final_weight", cq_module_find_tensor(m, "weight")->tensor, "final_weight");
  compare_tensor(c, "final_bias", cq_module_find_tensor(m, "bias")->tensor, "final_bias");
  free(losses);
  cq_tensor_free(seed);
  cq_ctx_free(ctx);
  cq_optimizer_free(opt);
  cq_module_free(m);
  cq_module_free(mse);
}

int main(void) {
  if (golden_load(CQ_TEST_DATA_DIR "/golden/nn_linear_optim/cases.txt", &g) != 0) return 1;
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    const char *op = golden_get(c, "op");
    if (!strcmp(op, "linear")) run_linear(c);
    else if (!strcmp(op, "mse")) run_loss(c, 0);
    else if (!strcmp(op, "cross_entropy")) run_loss(c, 1);
    else run_optim(c);
  }
  printf("test_nn_linear_optim: %d cases, worst relative error %.3g\n", g.count, worst);
  golden_free(&g);

  /* argument and shape errors */
  cq_module *m = NULL;
  CHECK_STATUS(cq_linear(&m, -1, 3, 1), CQ_EINVAL);
  CHECK_OK(cq_linear(&m, 3, 2, 1));
  cq_ctx *ctx;
  cq_ctx_create(&ctx);
  int64_t shape[2] = {2, 4};
  cq_tensor *x, *y = NULL;
  cq_tensor_create(&x, CQ_F32, 2, shape);
  CHECK_STATUS(cq_module_forward1(m, ctx, x, &y), CQ_ESHAPE);
  CHECK(strstr(cq_last_error(), "Linear") != NULL);
  cq_optimizer *opt;
  CHECK_STATUS(cq_sgd(&opt, m, -1.0f, 0, 0, 0, 0), CQ_EINVAL);
  CHECK_STATUS(cq_sgd(&opt, m, 0.1f, 0, 0, 0, 1), CQ_EINVAL);
  CHECK_STATUS(cq_adam(&opt, m, 0.1f, 1.5f, 0.9f, 1e-8f, 0), CQ_EINVAL);
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(m);
  return check_summary("test_nn_linear_optim");
}

/* Float training follows PyTorch step by step: the seed's QAT model shape (Conv2d(2,64,8), ReLU,
 * Conv2d(64,128,8), ReLU), PyTorch's initial weights from safetensors, SGD lr 0.1, MSE to a target,
 * 10 steps; every step's loss within 1e-4 relative of PyTorch's (tools/golden/gen_nn_training.py). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "cquant/cquant.h"
#include "golden.h"

#define DIR CQ_TEST_DATA_DIR "/golden/nn_training/"

int main(void) {
  golden_file g;
  if (golden_load(DIR "cases.txt", &g) != 0) return 1;
  float *want = NULL;
  int steps = golden_parse_floats(golden_get(&g.cases[0], "loss"), &want);
  CHECK(steps == 10);

  cq_module *c1, *r1, *c2, *r2, *model, *loss_fn;
  cq_conv_options o1 = cq_conv_defaults(2, 64, 8, 8), o2 = cq_conv_defaults(64, 128, 8, 8);
  CHECK_OK(cq_conv2d(&c1, &o1));
  CHECK_OK(cq_relu(&r1));
  CHECK_OK(cq_conv2d(&c2, &o2));
  CHECK_OK(cq_relu(&r2));
  cq_module *children[4] = {c1, r1, c2, r2};
  CHECK_OK(cq_sequential(&model, 4, children));
  CHECK_OK(cq_mse_loss(&loss_fn));
  CHECK_OK(cq_load_safetensors(model, DIR "init.safetensors", 1));
  cq_optimizer *opt = NULL;
  CHECK_OK(cq_sgd(&opt, model, 0.1f, 0.0f, 0.0f, 0.0f, 0));
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_ctx_set_grad(ctx, 1);
  float one = 1.0f;
  cq_tensor *seed = NULL;
  CHECK_OK(cq_tensor_wrap(&seed, CQ_F32, 0, NULL, &one));
  double worst = 0;
  for (int s = 0; s < steps && check_failed == 0; s++) {
    char path[512];
    cq_tensor *x = NULL, *t = NULL, *y = NULL, *loss = NULL;
    snprintf(path, sizeof path, DIR "step_%d_x.npy", s);
    CHECK_OK(cq_npy_load(path, &x));
    snprintf(path, sizeof path, DIR "step_%d_t.npy", s);
    CHECK_OK(cq_npy_load(path, &t));
    CHECK_OK(cq_module_forward1(model, ctx, x, &y));
    cq_tensor *pair[2] = {y, t};
    if (y) CHECK_OK(cq_module_forward(loss_fn, ctx, 2, pair, 1, &loss));
    if (loss) {
      cq_optimizer_zero_grad(opt);
      CHECK_OK(cq_ctx_backward(ctx, loss, seed, NULL, NULL));
      CHECK_OK(cq_optimizer_step(opt));
      float got = *(float *)loss->data;
      double rel = fabs((double)got - want[s]) / fabs((double)want[s]);
      if (rel > worst) worst = rel;
      CHECK_MSG(rel <= 1e-4, "step %d: loss %.9g, PyTorch %.9g (relative error %.3g)", s, got,
                want[s], rel);
    }
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
    cq_tensor_free(t);
  }
  printf("test_nn_training: %d SGD steps, worst relative loss error %.3g\n", steps, worst);
  cq_tensor_free(seed);
  cq_ctx_free(ctx);
  cq_optimizer_free(opt);
  cq_module_free(model);
  cq_module_free(loss_fn);
  free(want);
  golden_free(&g);
  return check_summary("test_nn_training");
}

/* The seed's quantization-aware-training block in C, line for line:
 *
 *   m = nn.Sequential(nn.Conv2d(2,64,8), nn.ReLU(), nn.Conv2d(64,128,8), nn.ReLU())
 *   torch.quantization.fuse_modules(m, ['0','1'], inplace=True)
 *   torch.quantization.fuse_modules(m, ['2','3'], inplace=True)
 *   m = nn.Sequential(torch.quantization.QuantStub(), *m, torch.quantization.DeQuantStub())
 *   m.train()
 *   m.qconfig = torch.quantization.get_default_qconfig(backend)       # backend = "fbgemm"
 *   torch.quantization.prepare_qat(m, inplace=True)
 *   opt = torch.optim.SGD(m.parameters(), lr=0.1)
 *   for epoch in range(10):
 *     x = torch.rand(10,2,24,24); out = m(x)
 *     loss = torch.pow(torch.rand_like(out) - out, 2).mean()
 *     opt.zero_grad(); loss.backward(); opt.step()
 *   m.eval()
 *   torch.quantization.convert(m, inplace=True)
 *
 * What PyTorch 1.13 really does here, and so does this program:
 *  - fuse_modules (not fuse_modules_qat) on a model in training mode: Conv2d+ReLU fuses in either
 *    mode (only BatchNorm folding needs eval mode), giving nni.ConvReLU2d and Identity modules.
 *  - The seed asks get_default_qconfig('fbgemm'), the *post-training* qconfig, and hands it to
 *    prepare_qat. PyTorch accepts that: the ConvReLU2d modules become nniqat.ConvReLU2d whose
 *    weight_fake_quant is qconfig.weight(), a PerChannelMinMaxObserver, and whose
 *    activation_post_process is a HistogramObserver (reduce_range). Observers only watch: nothing
 *    is fake-quantized during training, which is therefore float training that records weight
 *    ranges (min/max over every step) and activation histograms. The trees printed below show it
 *    (compare the seed's printout, which has the same observers). cq_get_default_qat_qconfig gives
 *    the fake-quantizing qconfig PyTorch recommends instead (pass "qat" as the first argument to
 *    use it here).
 *  - convert follows the quantized engine (torch.backends.quantized.engine); this program uses
 *    qnnpack, the engine whose rounding PyTorch's golden data for this example was taken with.
 *
 * torch.rand is replaced by a small local generator (uniform [0, 1)): the data differ from a
 * PyTorch run, the steps do not. Build with `make`, run ./build/examples/seed_qat [qat]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cquant/cquant.h"

/* xorshift64* -> uniform floats in [0, 1) with 24 random bits, as torch.rand's resolution. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float rand01(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (float)((rng_state * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}

static cq_status rand_tensor(int ndim, const int64_t *shape, cq_tensor **out) {
  cq_status st = cq_tensor_create(out, CQ_F32, ndim, shape);
  if (st != CQ_OK) return st;
  float *d = (*out)->data;
  for (int64_t i = 0; i < cq_tensor_numel(*out); i++) d[i] = rand01();
  return CQ_OK;
}

static int print_model(const char *title, const cq_module *m) {
  char *text = cq_module_repr_alloc(m);
  if (!text) return -1;
  printf("%s\n%s\n", title, text);
  free(text);
  return 0;
}

/* nn.Sequential(QuantStub(), *m, DeQuantStub()): the children of m move into a new Sequential
 * (each is swapped out of m for a placeholder Identity; m is freed). Takes ownership of m. */
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

int main(int argc, char **argv) {
  const int use_qat_qconfig = argc > 1 && strcmp(argv[1], "qat") == 0;
  cq_module *c1 = NULL, *r1 = NULL, *c2 = NULL, *r2 = NULL, *m = NULL, *loss_fn = NULL;
  cq_optimizer *opt = NULL;
  cq_ctx *ctx = NULL;
  cq_tensor *one = NULL;
  cq_status st;
#define TRY(expr)                                                        \
  do {                                                                   \
    st = (expr);                                                         \
    if (st != CQ_OK) {                                                   \
      fprintf(stderr, "seed_qat: %s: %s\n", #expr, cq_last_error());     \
      goto done;                                                         \
    }                                                                    \
  } while (0)

  cq_manual_seed(0);
  cq_conv_options o1 = cq_conv_defaults(2, 64, 8, 8), o2 = cq_conv_defaults(64, 128, 8, 8);
  TRY(cq_conv2d(&c1, &o1));
  TRY(cq_relu(&r1));
  TRY(cq_conv2d(&c2, &o2));
  TRY(cq_relu(&r2));
  cq_module *layers[4] = {c1, r1, c2, r2};
  c1 = r1 = c2 = r2 = NULL;
  TRY(cq_sequential(&m, 4, layers));

  /* Fuse */
  const char *first[2] = {"0", "1"}, *second[2] = {"2", "3"};
  TRY(cq_fuse_modules(m, 2, first));  /* fuse first Conv-ReLU pair */
  TRY(cq_fuse_modules(m, 2, second)); /* fuse second Conv-ReLU pair */

  /* Insert stubs */
  cq_module *plain = m;
  m = NULL;
  TRY(add_stubs(plain, &m));

  /* Prepare */
  cq_module_train(m, 1);
  cq_qconfig qconfig;
  if (use_qat_qconfig) {
    TRY(cq_get_default_qat_qconfig(CQ_BACKEND_FBGEMM, 1, &qconfig));
  } else {
    TRY(cq_get_default_qconfig(CQ_BACKEND_FBGEMM, 0, &qconfig));
  }
  TRY(cq_module_set_qconfig(m, &qconfig));
  TRY(cq_prepare_qat(m));
  if (print_model("== after prepare_qat", m) != 0) goto done;

  /* Training loop */
  const int n_epochs = 10;
  TRY(cq_sgd(&opt, m, 0.1f, 0.0f, 0.0f, 0.0f, 0));
  TRY(cq_mse_loss(&loss_fn)); /* torch.pow(tgt - out, 2).mean() */
  TRY(cq_ctx_create(&ctx));
  cq_ctx_set_grad(ctx, 1);
  TRY(cq_tensor_create(&one, CQ_F32, 0, NULL));
  *(float *)one->data = 1.0f;
  for (int epoch = 0; epoch < n_epochs; epoch++) {
    const int64_t xshape[4] = {10, 2, 24, 24};
    cq_tensor *x = NULL, *target = NULL, *out = NULL, *loss = NULL;
    TRY(rand_tensor(4, xshape, &x));
    st = cq_module_forward1(m, ctx, x, &out);
    if (st == CQ_OK) st = rand_tensor(out->ndim, out->shape, &target);
    cq_tensor *pair[2] = {out, target};
    if (st == CQ_OK) st = cq_module_forward(loss_fn, ctx, 2, pair, 1, &loss);
    if (st == CQ_OK) {
      cq_optimizer_zero_grad(opt);
      st = cq_ctx_backward(ctx, loss, one, NULL, NULL);
    }
    if (st == CQ_OK) st = cq_optimizer_step(opt);
    if (st == CQ_OK) printf("epoch %d: loss %.6f\n", epoch, *(float *)loss->data);
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
    cq_tensor_free(target);
    if (st != CQ_OK) {
      fprintf(stderr, "seed_qat: training step %d: %s\n", epoch, cq_last_error());
      goto done;
    }
  }

  /* Convert */
  cq_module_train(m, 0);
  if (print_model("== after training, m.eval()", m) != 0) goto done;
  cq_set_quantized_engine(CQ_BACKEND_QNNPACK);
  TRY(cq_convert(m));
  if (print_model("== after convert", m) != 0) goto done;

done:
  cq_tensor_free(one);
  cq_ctx_free(ctx);
  cq_optimizer_free(opt);
  cq_module_free(loss_fn);
  cq_module_free(m);
  cq_module_free(c1);
  cq_module_free(r1);
  cq_module_free(c2);
  cq_module_free(r2);
  return st == CQ_OK ? 0 : 1;
#undef TRY
}

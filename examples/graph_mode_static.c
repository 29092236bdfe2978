/* The seed's static model quantized in graph mode ("受限但自动": restricted but automatic), the
 * FX Graph Mode path PyTorch writes as
 *
 *   from torch.ao.quantization import get_default_qconfig_mapping
 *   from torch.ao.quantization.quantize_fx import prepare_fx, convert_fx
 *   model = nn.Sequential(nn.Conv2d(2,64,3), nn.ReLU(), nn.Conv2d(64, 128, 3), nn.ReLU()).eval()
 *   m = prepare_fx(model, get_default_qconfig_mapping("x86"), example_inputs=(torch.rand(1,2,28,28),))
 *   with torch.inference_mode():
 *     for _ in range(10):
 *       m(torch.rand(1,2, 28, 28))
 *   m = convert_fx(m)
 *
 * Unlike the eager block (examples/seed_static.c) there are no QuantStub / DeQuantStub to place
 * and no fusion groups to name: cq_prepare_graph turns the Sequential into a graph, fuses Conv+ReLU
 * along the dataflow, inserts the Quantize / DeQuantize at the borders and attaches the observers.
 * The program prints the prepared and the converted model and the output of both the float and the
 * quantized model on one input, with their SQNR. Build with `make`, run
 * ./build/examples/graph_mode_static. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h" /* the library's generator, for torch.rand */
#include "cquant/cquant.h"

#define TRY(expr)                                                    \
  do {                                                               \
    if ((expr) != CQ_OK) {                                           \
      fprintf(stderr, "graph_mode_static: %s\n", cq_last_error());   \
      return 1;                                                      \
    }                                                                \
  } while (0)

static cq_status rand_tensor(int ndim, const int64_t *shape, cq_tensor **out) {
  cq_status st = cq_tensor_create(out, CQ_F32, ndim, shape);
  if (st != CQ_OK) return st;
  float *d = (*out)->data;
  for (int64_t i = 0; i < cq_tensor_numel(*out); i++) d[i] = cq_rng_uniform(cq_default_rng(), 0, 1);
  return CQ_OK;
}

static void print_model(const char *title, const cq_module *m) {
  char *text = cq_module_repr_alloc(m);
  printf("== %s\n%s\n", title, text ? text : "(out of memory)");
  free(text);
}

static cq_module *conv(int64_t in, int64_t out) {
  cq_conv_options o = cq_conv_defaults(in, out, 3, 3);
  cq_module *m = NULL;
  return cq_conv2d(&m, &o) == CQ_OK ? m : NULL;
}

static cq_module *relu(void) {
  cq_module *m = NULL;
  return cq_relu(&m) == CQ_OK ? m : NULL;
}

int main(void) {
  cq_manual_seed(0);
  cq_module *model = NULL, *copy = NULL;
  cq_module *layers[4] = {conv(2, 64), relu(), conv(64, 128), relu()};
  TRY(cq_sequential(&model, 4, layers));
  /* the float model kept for comparison: same weights (same seed) */
  cq_manual_seed(0);
  cq_module *layers2[4] = {conv(2, 64), relu(), conv(64, 128), relu()};
  TRY(cq_sequential(&copy, 4, layers2));
  cq_module_train(model, 0);
  cq_module_train(copy, 0);

  cq_graph_quant_options options = cq_graph_quant_defaults(); /* x86, HistogramObserver */
  TRY(cq_prepare_graph(model, &options));
  print_model("prepare_graph", model);

  cq_ctx *ctx = NULL;
  TRY(cq_ctx_create(&ctx));
  const int64_t shape[4] = {1, 2, 28, 28};
  for (int i = 0; i < 10; i++) {
    cq_tensor *x = NULL, *y = NULL;
    TRY(rand_tensor(4, shape, &x));
    TRY(cq_module_forward1(model, ctx, x, &y));
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
  }
  TRY(cq_convert_graph(model, &options));
  print_model("convert_graph", model);

  cq_tensor *x = NULL, *yq = NULL, *yf = NULL;
  TRY(rand_tensor(4, shape, &x));
  TRY(cq_module_forward1(model, ctx, x, &yq));
  TRY(cq_module_forward1(copy, ctx, x, &yf));
  double signal = 0, noise = 0;
  const float *a = yf->data, *b = yq->data;
  for (int64_t i = 0; i < cq_tensor_numel(yf); i++) {
    signal += (double)a[i] * a[i];
    noise += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
  }
  printf("output [1, 128, 24, 24]: float vs int8 SQNR %.1f dB\n", 10 * log10(signal / noise));
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(model);
  cq_module_free(copy);
  return 0;
}

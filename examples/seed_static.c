/* The seed's post-training static quantization block in C, line for line:
 *
 *   backend = "fbgemm"
 *   model = nn.Sequential(nn.Conv2d(2,64,3), nn.ReLU(), nn.Conv2d(64, 128, 3), nn.ReLU())
 *   m = copy.deepcopy(model); m.eval()
 *   torch.quantization.fuse_modules(m, ['0','1'], inplace=True)   # prints the tree below
 *   torch.quantization.fuse_modules(m, ['2','3'], inplace=True)
 *   m = nn.Sequential(torch.quantization.QuantStub(), *m, torch.quantization.DeQuantStub())
 *   m.qconfig = torch.quantization.get_default_qconfig(backend)
 *   torch.quantization.prepare(m, inplace=True)                   # prints the tree below
 *   with torch.inference_mode():
 *     for _ in range(10):
 *       x = torch.rand(1,2, 28, 28)
 *       m(x)
 *   torch.quantization.convert(m, inplace=True)
 *   print(m[1].weight().element_size())                           # 1 byte instead of 4
 *
 * It prints the model after the first fusion and after prepare exactly as the seed shows them, then
 * the converted model and the element size of the converted conv weight (1).
 *
 * The seed's backend string "fbgemm" picks get_default_qconfig's fbgemm qconfig (HistogramObserver
 * with reduce_range, per-channel int8 weights). The seed leaves torch.backends.quantized.engine
 * alone, so convert uses the process-wide default engine, x86 (FBGEMM's rounding), as PyTorch's
 * x86 builds do (cq_set_quantized_engine changes it).
 * torch.rand draws from the library's generator (MT19937 with torch's uniform_ rule; reseeded with
 * cq_manual_seed): the calibration data are not the numbers of a PyTorch run, the steps are the
 * same. Build with `make`, run ./build/examples/seed_static. */
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h" /* the library's generator, for torch.rand */
#include "cquant/cquant.h"

static int print_model(const cq_module *m) {
  char *text = cq_module_repr_alloc(m);
  if (!text) return -1;
  printf("%s\n", text);
  free(text);
  return 0;
}

/* torch.rand(shape): uniform [0, 1) from the library's generator. */
static cq_status rand_tensor(int ndim, const int64_t *shape, cq_tensor **out) {
  cq_status st = cq_tensor_create(out, CQ_F32, ndim, shape);
  if (st != CQ_OK) return st;
  float *d = (*out)->data;
  for (int64_t i = 0; i < cq_tensor_numel(*out); i++) d[i] = cq_rng_uniform(cq_default_rng(), 0, 1);
  return CQ_OK;
}

/* nn.Sequential(QuantStub(), *m, DeQuantStub()): the children of m move into a new Sequential
 * (each is swapped out of m for a placeholder Identity; m is freed). Takes ownership of m. */
static cq_status add_stubs(cq_module *m, cq_module **out) {
  cq_module *seq = NULL, *stub = NULL;
  cq_status st = cq_quant_stub(&stub);
  if (st == CQ_OK) st = cq_sequential(&seq, 1, &stub);
  for (int i = 0; i < cq_module_num_children(m) && st == CQ_OK; i++) {
    cq_module *placeholder = NULL, *child = NULL;
    st = cq_identity(&placeholder);
    if (st == CQ_OK) st = cq_module_replace(m, cq_module_child_name(m, i), placeholder, &child);
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

int main(void) {
  cq_module *c1 = NULL, *r1 = NULL, *c2 = NULL, *r2 = NULL, *m = NULL;
  cq_ctx *ctx = NULL;
  cq_status st;
  int rc = 1;
#define TRY(expr)                                                        \
  do {                                                                   \
    st = (expr);                                                         \
    if (st != CQ_OK) {                                                   \
      fprintf(stderr, "seed_static: %s: %s\n", #expr, cq_last_error());  \
      goto done;                                                         \
    }                                                                    \
  } while (0)

  const cq_backend backend = CQ_BACKEND_FBGEMM; /* running on a x86 CPU; QNNPACK on ARM */
  cq_manual_seed(0);

  cq_conv_options o1 = cq_conv_defaults(2, 64, 3, 3), o2 = cq_conv_defaults(64, 128, 3, 3);
  TRY(cq_conv2d(&c1, &o1));
  TRY(cq_relu(&r1));
  TRY(cq_conv2d(&c2, &o2));
  TRY(cq_relu(&r2));
  cq_module *layers[4] = {c1, r1, c2, r2};
  c1 = r1 = c2 = r2 = NULL;
  TRY(cq_sequential(&m, 4, layers));
  cq_module_train(m, 0); /* m.eval() */

  /* Fuse: the first module becomes the fused one, the others Identity */
  const char *first[2] = {"0", "1"}, *second[2] = {"2", "3"};
  TRY(cq_fuse_modules(m, 2, first)); /* fuse first Conv-ReLU pair */
  if (print_model(m) != 0) goto done;
  TRY(cq_fuse_modules(m, 2, second)); /* fuse second Conv-ReLU pair */

  /* Insert stubs */
  cq_module *plain = m;
  m = NULL;
  TRY(add_stubs(plain, &m));
  cq_module_train(m, 0);

  /* Prepare */
  cq_qconfig qconfig;
  TRY(cq_get_default_qconfig(backend, 0, &qconfig));
  TRY(cq_module_set_qconfig(m, &qconfig));
  TRY(cq_prepare(m));
  if (print_model(m) != 0) goto done;

  /* Calibrate (random data for convenience; use representative data instead) */
  TRY(cq_ctx_create(&ctx));
  const int64_t shape[4] = {1, 2, 28, 28};
  for (int i = 0; i < 10; i++) {
    cq_tensor *x = NULL, *y = NULL;
    TRY(rand_tensor(4, shape, &x));
    st = cq_module_forward1(m, ctx, x, &y);
    cq_tensor_free(x);
    cq_ctx_reset(ctx);
    TRY(st);
  }

  /* Convert */
  TRY(cq_convert(m));
  if (print_model(m) != 0) goto done;

  /* Check: 1 byte instead of 4 bytes for FP32 */
  const cq_named_tensor *w = cq_module_find_tensor(m, "1.weight");
  if (!w) {
    fprintf(stderr, "seed_static: %s\n", cq_last_error());
    goto done;
  }
  printf("%zu\n", cq_dtype_get(w->tensor->dtype)->size);
  rc = 0;

done:
  cq_ctx_free(ctx);
  cq_module_free(c1);
  cq_module_free(r1);
  cq_module_free(c2);
  cq_module_free(r2);
  cq_module_free(m);
  return rc;
#undef TRY
}

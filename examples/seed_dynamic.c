/* The seed's post-training dynamic quantization example in C:
 *
 *   m = nn.Sequential(
 *     nn.Conv2d(2, 64, (8,)),
 *     nn.ReLU(),
 *     nn.Linear(16, 10),
 *     nn.LSTM(10, 10))
 *   m.eval()
 *   print(m)
 *   model_quantized = quantize_dynamic(
 *       model=m, qconfig_spec={nn.LSTM, nn.Linear}, dtype=torch.qint8, inplace=False)
 *   print(model_quantized)
 *
 * prints both trees exactly as PyTorch 1.13 does: the Linear becomes a DynamicQuantizedLinear
 * (int8 weights, activations quantized on every call), the LSTM a DynamicQuantizedLSTM, and the
 * Conv2d and ReLU stay float. cquant's passes work in place, so the quantized model is `m` itself.
 *
 * nn.Conv2d(2, 64, (8,)) keeps its kernel size as the 1-tuple it was given and prints
 * kernel_size=(8,); cq_conv_options.kernel_1tuple reproduces that (with an 8 x 1 kernel). As in
 * PyTorch, the toy model is for printing: its layers' shapes do not chain.
 *
 * Build with `make`, run ./build/examples/seed_dynamic. */
#include <stdio.h>
#include <stdlib.h>

#include "cquant/cquant.h"

static int print_model(const cq_module *m) {
  char *text = cq_module_repr_alloc(m);
  if (!text) {
    fprintf(stderr, "out of memory printing the model\n");
    return 1;
  }
  printf("%s\n", text);
  free(text);
  return 0;
}

int main(void) {
  cq_module *layers[4] = {NULL, NULL, NULL, NULL};
  cq_conv_options conv = cq_conv_defaults(2, 64, 8, 1);
  conv.kernel_1tuple = 1; /* nn.Conv2d(2, 64, (8,)) */
  cq_rnn_options lstm = cq_rnn_defaults(10, 10);
  cq_module *m = NULL;
  if (cq_conv2d(&layers[0], &conv) != CQ_OK || cq_relu(&layers[1]) != CQ_OK ||
      cq_linear(&layers[2], 16, 10, 1) != CQ_OK || cq_lstm(&layers[3], &lstm) != CQ_OK) {
    fprintf(stderr, "%s\n", cq_last_error());
    for (int i = 0; i < 4; i++) cq_module_free(layers[i]);
    return 1;
  }
  if (cq_sequential(&m, 4, layers) != CQ_OK) { /* takes the layers, even on failure */
    fprintf(stderr, "%s\n", cq_last_error());
    return 1;
  }
  cq_module_train(m, 0); /* m.eval() */
  int rc = print_model(m);

  const char *const spec[2] = {"LSTM", "Linear"}; /* qconfig_spec={nn.LSTM, nn.Linear} */
  if (rc == 0 && cq_quantize_dynamic(m, 2, spec, CQ_QINT8) != CQ_OK) {
    fprintf(stderr, "%s\n", cq_last_error());
    rc = 1;
  }
  if (rc == 0) rc = print_model(m);
  cq_module_free(m);
  return rc;
}

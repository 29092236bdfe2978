/* Default initialisation matches PyTorch bit for bit: after cq_manual_seed(s), freshly built
 * modules hold the parameters torch.manual_seed(s) gives the same modules
 * (tools/golden/gen_nn_init.py). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cquant/cquant.h"
#include "golden.h"

static cq_module *seq(int n, cq_module **c) {
  cq_module *m = NULL;
  CHECK_OK(cq_sequential(&m, n, c));
  return m;
}

static cq_module *build(const char *name) {
  cq_module *c[4] = {NULL};
  if (!strcmp(name, "linear")) {
    CHECK_OK(cq_linear(&c[0], 3, 4, 1));
    return c[0];
  }
  if (!strcmp(name, "seed_static")) {
    cq_conv_options a = cq_conv_defaults(2, 64, 3, 3), b = cq_conv_defaults(64, 128, 3, 3);
    CHECK_OK(cq_conv2d(&c[0], &a));
    CHECK_OK(cq_relu(&c[1]));
    CHECK_OK(cq_conv2d(&c[2], &b));
    CHECK_OK(cq_relu(&c[3]));
    return seq(4, c);
  }
  if (!strcmp(name, "mixed")) {
    cq_conv_options a = cq_conv_defaults(4, 6, 3, 1), b = cq_conv_defaults(3, 5, 2, 4);
    a.groups = 2;
    CHECK_OK(cq_conv1d(&c[0], &a));
    CHECK_OK(cq_batchnorm1d(&c[1], 6));
    CHECK_OK(cq_linear(&c[2], 5, 9, 0));
    CHECK_OK(cq_conv2d(&c[3], &b));
    return seq(4, c);
  }
  cq_rnn_options l = cq_rnn_defaults(5, 7), g = cq_rnn_defaults(3, 4);
  l.num_layers = 2;
  l.bidirectional = 1;
  CHECK_OK(cq_lstm(&c[0], &l));
  CHECK_OK(cq_gru(&c[1], &g));
  return seq(2, c);
}

typedef struct compare_ctx {
  cq_module *want;
  int mismatches;
} compare_ctx;

static cq_status compare(const char *key, cq_named_tensor *t, void *user) {
  compare_ctx *c = user;
  cq_named_tensor *w = cq_module_find_tensor(c->want, key);
  if (!w || cq_tensor_nbytes(w->tensor) != cq_tensor_nbytes(t->tensor) ||
      memcmp(w->tensor->data, t->tensor->data, cq_tensor_nbytes(t->tensor)) != 0) {
    c->mismatches++;
    CHECK_MSG(0, "%s differs from PyTorch's initialisation", key);
  }
  return CQ_OK;
}

int main(void) {
  golden_file g;
  if (golden_load(CQ_TEST_DATA_DIR "/golden/nn_init/cases.txt", &g) != 0) return 1;
  for (int i = 0; i < g.count; i++) {
    const golden_case *gc = &g.cases[i];
    cq_manual_seed((uint64_t)atoi(golden_get(gc, "seed")));
    cq_module *ours = build(gc->name);
    cq_manual_seed(12345); /* the reference copy's own draws must not matter */
    cq_module *theirs = build(gc->name);
    char path[1024];
    CHECK_OK(cq_load_safetensors(theirs, golden_path(&g, golden_get(gc, "weights"), path, sizeof path), 1));
    compare_ctx c = {theirs, 0};
    CHECK_OK(cq_module_visit_tensors(ours, compare, &c));
    if (!c.mismatches) check_passed++;
    cq_module_free(ours);
    cq_module_free(theirs);
  }
  golden_free(&g);
  return check_summary("test_nn_init");
}

/* nn.Sequential: children "0", "1", ... run one after the other. */
#include <stdio.h>

#include "cquant/modules.h"
#include "nn/module_impl.h"

static cq_status sequential_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                    int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  cq_tensor *x = in[0];
  for (int i = 0; i < m->nchildren; i++) {
    cq_tensor *y = NULL;
    cq_status st = cq_module_forward1(m->children[i], ctx, x, &y);
    if (st != CQ_OK) return cq_fail_context(st, "Sequential child (%s)", m->child_names[i]);
    x = y;
  }
  out[0] = x;
  return CQ_OK;
}

static const cq_module_type sequential_type = {
    .name = "Sequential",
    .forward = sequential_forward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_sequential_append(cq_module *seq, cq_module *child) {
  char name[24];
  snprintf(name, sizeof name, "%d", seq->nchildren);
  return cq_module_add_child(seq, name, child);
}

cq_status cq_sequential(cq_module **out, int n, cq_module *const *children) {
  cq_status st = cq_module_new(&sequential_type, NULL, out);
  for (int i = 0; i < n; i++) {
    if (st == CQ_OK) {
      st = cq_sequential_append(*out, children[i]);
    } else {
      cq_module_free(children[i]);
    }
  }
  if (st != CQ_OK) {
    cq_module_free(*out);
    *out = NULL;
  }
  return st;
}

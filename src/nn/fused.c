/* The fused float modules of torch.nn.intrinsic: ConvReLU1d, ConvReLU2d, LinearReLU, BNReLU2d
 * (see nn/fused.h). */
#include <string.h>

#include "nn/fused.h"
#include "nn/layers.h"

cq_status cq_fused_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                           cq_tensor **out) {
  (void)nin;
  (void)nout;
  if (!cq_module_find(m, "0") || !cq_module_find(m, "1")) {
    return cq_module_fail(m, CQ_ESTATE, "children (0) and (1) are required");
  }
  cq_tensor *x = in[0];
  for (int i = 0; i < m->nchildren; i++) {
    cq_tensor *y = NULL;
    cq_status st = cq_module_forward1(m->children[i], ctx, x, &y);
    if (st != CQ_OK) return cq_fail_context(st, "%s child (%s)", m->type->name, m->child_names[i]);
    x = y;
  }
  out[0] = x;
  return CQ_OK;
}

#define FUSED_TYPE(var, class_name)                                      \
  static const cq_module_type var = {                                    \
      .name = class_name,                                                \
      .forward = cq_fused_forward,                                          \
      .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,          \
  }

FUSED_TYPE(conv_relu1d_type, "ConvReLU1d");
FUSED_TYPE(conv_relu2d_type, "ConvReLU2d");
FUSED_TYPE(linear_relu_type, "LinearReLU");
FUSED_TYPE(bn_relu2d_type, "BNReLU2d");

/* A container of `type` holding a (as "0") and b (as "1"); takes ownership of both. */
static cq_status fused_new(cq_module **out, const cq_module_type *type, cq_module *a,
                           cq_module *b) {
  cq_module *m = NULL;
  cq_status st = cq_module_new(type, NULL, &m);
  if (st != CQ_OK) {
    cq_module_free(a);
    cq_module_free(b);
    return st;
  }
  st = cq_module_add_child(m, "0", a);
  if (st == CQ_OK) {
    st = cq_module_add_child(m, "1", b);
  } else {
    cq_module_free(b);
  }
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

/* Checks the operands; frees both and fails when they are not (want_first, ReLU). */
static cq_status check_pair(const char *fused_name, cq_module *a, const char *want_first,
                            int first_ok, cq_module *b) {
  const char *got_a = a ? a->type->name : "NULL";
  const char *got_b = b ? b->type->name : "NULL";
  if (a && b && first_ok && cq_module_is(b, "ReLU")) return CQ_OK;
  cq_module_free(a);
  cq_module_free(b);
  return cq_fail(CQ_EINVAL, "%s: expected (%s, ReLU), got (%s, %s)", fused_name, want_first, got_a,
                 got_b);
}

cq_status cq_fused_conv_relu(cq_module **out, cq_module *conv, cq_module *relu) {
  *out = NULL;
  const int is1d = conv && cq_module_is(conv, "Conv1d");
  const int is2d = conv && cq_module_is(conv, "Conv2d");
  cq_status st = check_pair("ConvReLU", conv, "Conv1d or Conv2d", is1d || is2d, relu);
  if (st != CQ_OK) return st;
  return fused_new(out, is1d ? &conv_relu1d_type : &conv_relu2d_type, conv, relu);
}

cq_status cq_fused_linear_relu(cq_module **out, cq_module *linear, cq_module *relu) {
  *out = NULL;
  cq_status st = check_pair("LinearReLU", linear, "Linear", linear && cq_module_is(linear, "Linear"),
                            relu);
  if (st != CQ_OK) return st;
  return fused_new(out, &linear_relu_type, linear, relu);
}

cq_status cq_fused_bn_relu(cq_module **out, cq_module *bn, cq_module *relu) {
  *out = NULL;
  cq_status st = check_pair("BNReLU2d", bn, "BatchNorm2d", bn && cq_module_is(bn, "BatchNorm2d"),
                            relu);
  if (st != CQ_OK) return st;
  return fused_new(out, &bn_relu2d_type, bn, relu);
}

int cq_module_is_fused_float(const cq_module *m) {
  return m && (m->type == &conv_relu1d_type || m->type == &conv_relu2d_type ||
               m->type == &linear_relu_type || m->type == &bn_relu2d_type);
}

int cq_module_is_fused(const cq_module *m) {
  static const char *const names[] = {
      "ConvReLU1d", "ConvReLU2d",   "ConvReLU3d",   "LinearReLU",   "BNReLU2d",
      "BNReLU3d",   "ConvBn1d",     "ConvBn2d",     "ConvBn3d",     "ConvBnReLU1d",
      "ConvBnReLU2d", "ConvBnReLU3d", "LinearBn1d",
  };
  if (!m) return 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    if (strcmp(m->type->name, names[i]) == 0) return 1;
  }
  return 0;
}

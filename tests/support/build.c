#include "build.h"

#include "check.h"

cq_module *tb_made(cq_status st, cq_module **m) {
  CHECK_MSG(st == CQ_OK, "building a module: %s", cq_last_error());
  return *m;
}

cq_module *tb_conv2d(int64_t in, int64_t out, int64_t k, int64_t pad) {
  cq_conv_options o = cq_conv_defaults(in, out, k, k);
  o.padding[0] = o.padding[1] = pad;
  cq_module *m = NULL;
  return tb_made(cq_conv2d(&m, &o), &m);
}

cq_module *tb_linear(int64_t in, int64_t out) {
  cq_module *m = NULL;
  return tb_made(cq_linear(&m, in, out, 1), &m);
}

cq_module *tb_simple(cq_status (*ctor)(cq_module **)) {
  cq_module *m = NULL;
  return tb_made(ctor(&m), &m);
}

cq_module *tb_bn2d(int64_t c) {
  cq_module *m = NULL;
  return tb_made(cq_batchnorm2d(&m, c), &m);
}

cq_module *tb_seq(int n, cq_module **c) {
  cq_module *m = NULL;
  return tb_made(cq_sequential(&m, n, c), &m);
}

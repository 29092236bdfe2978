/* Module builders for tests: each constructs one module with the public API, records a failed
 * construction as a test failure (check.h) and returns the module (NULL on failure). */
#ifndef CQ_TEST_BUILD_H
#define CQ_TEST_BUILD_H

#include <stdint.h>

#include "cquant/cquant.h"

/* Records st != CQ_OK as a failure; returns *m. */
cq_module *tb_made(cq_status st, cq_module **m);
/* nn.Conv2d(in, out, k, padding=pad) */
cq_module *tb_conv2d(int64_t in, int64_t out, int64_t k, int64_t pad);
/* nn.Linear(in, out) */
cq_module *tb_linear(int64_t in, int64_t out);
/* A module whose constructor takes no argument (cq_relu, cq_quant_stub, cq_identity, ...). */
cq_module *tb_simple(cq_status (*ctor)(cq_module **));
/* nn.BatchNorm2d(c) */
cq_module *tb_bn2d(int64_t c);
/* nn.Sequential(*c) (takes ownership of the children) */
cq_module *tb_seq(int n, cq_module **c);

#endif

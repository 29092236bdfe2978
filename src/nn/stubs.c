/* QuantStub, DeQuantStub and QuantWrapper: identity in float; markers for prepare and convert. */
#include "cquant/quantization.h"
#include "nn/module_impl.h"

static cq_status identity_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                  int nout, cq_tensor **out) {
  (void)m;
  (void)ctx;
  (void)nin;
  (void)nout;
  out[0] = in[0];
  return CQ_OK;
}

static const cq_module_type quant_stub_type = {
    .name = "QuantStub",
    .forward = identity_forward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type dequant_stub_type = {
    .name = "DeQuantStub",
    .forward = identity_forward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_quant_stub(cq_module **out) { return cq_module_new(&quant_stub_type, NULL, out); }
cq_status cq_dequant_stub(cq_module **out) { return cq_module_new(&dequant_stub_type, NULL, out); }

/* QuantWrapper: children "quant", "dequant", "module" (PyTorch registers them in this order);
 * forward is dequant(module(quant(x))). */
static cq_status wrapper_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                                 cq_tensor **out) {
  (void)nin;
  (void)nout;
  cq_tensor *a = NULL, *b = NULL;
  cq_status st = cq_module_forward1(cq_module_find(m, "quant"), ctx, in[0], &a);
  if (st == CQ_OK) st = cq_module_forward1(cq_module_find(m, "module"), ctx, a, &b);
  if (st == CQ_OK) st = cq_module_forward1(cq_module_find(m, "dequant"), ctx, b, &out[0]);
  return st;
}

static const cq_module_type wrapper_type = {
    .name = "QuantWrapper",
    .forward = wrapper_forward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_quant_wrapper(cq_module **out, cq_module *module) {
  *out = NULL;
  if (!module) return cq_fail(CQ_EINVAL, "QuantWrapper: the wrapped module is NULL");
  cq_module *w = NULL, *q = NULL, *dq = NULL;
  cq_status st = cq_module_new(&wrapper_type, NULL, &w);
  if (st == CQ_OK) st = cq_quant_stub(&q);
  if (st == CQ_OK) st = cq_module_add_child(w, "quant", q);
  if (st == CQ_OK) st = cq_dequant_stub(&dq);
  if (st == CQ_OK) st = cq_module_add_child(w, "dequant", dq);
  if (st == CQ_OK) {
    st = cq_module_add_child(w, "module", module);
  } else {
    cq_module_free(module);
  }
  if (st != CQ_OK) {
    cq_module_free(w);
    return st;
  }
  if (module->qconfig) st = cq_module_set_qconfig(w, module->qconfig);
  if (st != CQ_OK) {
    cq_module_free(w);
    return st;
  }
  *out = w;
  return CQ_OK;
}

/* nn.ReLU. */
#include <string.h>

#include "cquant/modules.h"
#include "nn/module_impl.h"
#include "nn/quantized/qops.h"

static cq_status relu_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                              cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_tensor *x = in[0];
  if (x->qparams) return cq_qop_relu(m, ctx, x, &out[0]); /* quantized: max(q, zero_point) */
  if (x->dtype != CQ_F32) return cq_module_fail(m, CQ_EINVAL, "input must be float32");
  cq_tensor *y;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &y);
  if (st != CQ_OK) return st;
  const float *xd = x->data;
  float *yd = y->data;
  int64_t n = cq_tensor_numel(x);
  for (int64_t i = 0; i < n; i++) yd[i] = xd[i] > 0.0f ? xd[i] : 0.0f;
  out[0] = y;
  return CQ_OK;
}

static cq_status relu_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                               cq_tensor *const *gout, cq_tensor **gin) {
  (void)m;
  const cq_tensor *y = e->out[0];
  cq_tensor *gx;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, y->ndim, y->shape, &gx);
  if (st != CQ_OK) return st;
  const float *yd = y->data, *g = gout[0]->data;
  float *d = gx->data;
  int64_t n = cq_tensor_numel(y);
  for (int64_t i = 0; i < n; i++) d[i] = yd[i] > 0.0f ? g[i] : 0.0f;
  gin[0] = gx;
  return CQ_OK;
}

/* Quantized: max(q, zero point), the byte range [zp, 255] (a Graph folds it into the conv before
 * it). */
static int relu_clamp_of(const cq_module *m, float x_scale, int32_t x_zp, int32_t *lo,
                         int32_t *hi) {
  (void)m;
  (void)x_scale;
  *lo = x_zp;
  *hi = 255;
  return 1;
}

/* Quantized, ReLU keeps a channels-last input channels-last (cq_qop_relu); float activations are
 * never channels-last. */
static const cq_module_type relu_type = {
    .name = "ReLU",
    .forward = relu_forward,
    .backward = relu_backward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
    .reads_channels_last = cq_reads_channels_last_passes,
    .clamp_of = relu_clamp_of,
};

cq_status cq_relu(cq_module **out) { return cq_module_new(&relu_type, NULL, out); }

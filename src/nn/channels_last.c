/* Channels-last activations (cq_tensor.channels_last): the conversion back to contiguous, the
 * reads_channels_last answers of module types, and the switch tests use to turn the layout off.
 * The planning (who writes channels-last) is in the containers (sequential.c, graph.c) and the
 * hints they pass through the ctx (ctx.c). */
#include "kernels/conv/qconv.h"
#include "nn/module_impl.h"

static int channels_last_enabled = 1;
int cq_channels_last_enabled(void) { return channels_last_enabled; }
void cq_debug_channels_last(int enabled) { channels_last_enabled = enabled != 0; }

int cq_module_reads_channels_last(const cq_module *m, int after) {
  return m->type->reads_channels_last ? m->type->reads_channels_last(m, after) : 0;
}

int cq_reads_channels_last_passes(const cq_module *m, int after) {
  (void)m;
  return after;
}

cq_status cq_ctx_contiguous(cq_ctx *ctx, cq_tensor *x, cq_tensor **out) {
  *out = x;
  if (!x->channels_last) return CQ_OK;
  if (x->ndim != 4) return cq_fail(CQ_EINVAL, "a channels-last tensor must be 4-D, not %d-D", x->ndim);
  /* only quantized (byte) activations are ever stored channels-last */
  if (cq_dtype_get(x->dtype)->size != 1) {
    return cq_fail(CQ_EUNSUPPORTED, "a channels-last tensor of %s", cq_dtype_get(x->dtype)->name);
  }
  cq_tensor *y;
  cq_status st = cq_ctx_tensor(ctx, x->dtype, 4, x->shape, &y);
  if (st != CQ_OK) return st;
  if (x->qparams) {
    st = cq_tensor_set_qparams(y, x->qparams);
    if (st != CQ_OK) return st;
  }
  cq_u8_nhwc_to_nchw(x->data, x->shape[0], x->shape[1], x->shape[2], x->shape[3], y->data);
  *out = y;
  return CQ_OK;
}


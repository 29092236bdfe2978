/* Channels-last activations (cq_tensor.channels_last): the conversion back to contiguous, the
 * reads_channels_last answers of module types, and the switch tests use to turn the layout off.
 * The planning (who writes channels-last) is in the containers (sequential.c, graph.c) and the
 * hints they pass through the ctx (ctx.c). */
#include <string.h>

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
  const size_t esize = cq_dtype_get(x->dtype)->size;
  cq_tensor *y;
  cq_status st = cq_ctx_tensor(ctx, x->dtype, 4, x->shape, &y);
  if (st != CQ_OK) return st;
  if (x->qparams) {
    st = cq_tensor_set_qparams(y, x->qparams);
    if (st != CQ_OK) return st;
  }
  const int64_t n = x->shape[0], c = x->shape[1], h = x->shape[2], w = x->shape[3];
  if (esize == 1) {
    cq_u8_nhwc_to_nchw(x->data, n, c, h, w, y->data);
  } else { /* not produced today (only quantized activations are stored channels-last) */
    const char *src = x->data;
    char *dst = y->data;
    for (int64_t i = 0; i < n; i++) {
      for (int64_t p = 0; p < h * w; p++) {
        for (int64_t ch = 0; ch < c; ch++) {
          memcpy(dst + (size_t)(((i * c + ch) * h * w) + p) * esize,
                 src + (size_t)(((i * h * w) + p) * c + ch) * esize, esize);
        }
      }
    }
  }
  *out = y;
  return CQ_OK;
}


/* ONNX import: Gather with constant indices on an activation, as a module.
 *
 * torch.onnx.export writes x[:, -1, :] (the last time step of an LSTM classifier) as Gather with
 * a scalar index along an axis; a 1-D index tensor keeps the axis (index_select). The module
 * copies slices of any dtype, so it runs on quantized tensors too (qparams kept). Negative
 * indices count from the end, checked against the real size at run time. It prints as
 * "Gather(dim=1, index=-1)" (no nn.Module exists for it). Inference only: no backward. */
#include <string.h>

#include "core/alloc.h"
#include "io/onnx_import.h"
#include "nn/module_impl.h"

typedef struct gather_impl {
  int axis;
  int scalar; /* 0-D index: the axis is removed */
  int64_t n;
  int64_t *index;
} gather_impl;

static void gather_destroy(void *impl) {
  gather_impl *p = impl;
  if (!p) return;
  cq_free(p->index);
  cq_free(p);
}

static cq_status gather_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const gather_impl *p = m->impl;
  const cq_tensor *x = in[0];
  if (p->axis >= x->ndim) {
    return cq_module_fail(m, CQ_ESHAPE, "input of rank %d has no dimension %d", x->ndim, p->axis);
  }
  const int64_t size = x->shape[p->axis];
  int64_t outer = 1, inner = 1;
  for (int d = 0; d < p->axis; d++) outer *= x->shape[d];
  for (int d = p->axis + 1; d < x->ndim; d++) inner *= x->shape[d];
  int64_t shape[CQ_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < x->ndim; d++) {
    if (d == p->axis) {
      if (!p->scalar) shape[nd++] = p->n;
    } else {
      shape[nd++] = x->shape[d];
    }
  }
  for (int64_t k = 0; k < p->n; k++) {
    if (p->index[k] < -size || p->index[k] >= size) {
      return cq_module_fail(m, CQ_ESHAPE, "index %lld is out of range for dimension %d of size "
                            "%lld", (long long)p->index[k], p->axis, (long long)size);
    }
  }
  cq_tensor *y;
  cq_status st = cq_ctx_tensor(ctx, x->dtype, nd, shape, &y);
  if (st != CQ_OK) return st;
  const size_t es = cq_dtype_get(x->dtype)->size, row = (size_t)inner * es;
  const unsigned char *src = x->data;
  unsigned char *dst = y->data;
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t k = 0; k < p->n; k++) {
      const int64_t j = p->index[k] < 0 ? p->index[k] + size : p->index[k];
      memcpy(dst + (size_t)(o * p->n + k) * row, src + (size_t)(o * size + j) * row, row);
    }
  }
  if (x->qparams) {
    st = cq_tensor_set_qparams(y, x->qparams);
    if (st != CQ_OK) return st;
  }
  out[0] = y;
  return CQ_OK;
}

static void gather_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const gather_impl *p = m->impl;
  cq_strbuf_appendf(sb, "dim=%d, index=", p->axis);
  if (p->scalar) {
    cq_strbuf_appendf(sb, "%lld", (long long)p->index[0]);
    return;
  }
  cq_strbuf_append(sb, "[");
  for (int64_t k = 0; k < p->n; k++) {
    cq_strbuf_appendf(sb, "%s%lld", k ? ", " : "", (long long)p->index[k]);
  }
  cq_strbuf_append(sb, "]");
}

static const cq_module_type gather_type = {
    .name = "Gather",
    .forward = gather_forward,
    .extra_repr = gather_extra_repr,
    .destroy_impl = gather_destroy,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status oi_gather_describe(const cq_module *m, int *axis, int64_t *nindex,
                             const int64_t **indices, int *scalar_index) {
  if (!m || m->type != &gather_type) return cq_fail(CQ_EINVAL, "not a Gather module");
  const gather_impl *p = m->impl;
  *axis = p->axis;
  *nindex = p->n;
  *indices = p->index;
  *scalar_index = p->scalar;
  return CQ_OK;
}

cq_status oi_gather_module(cq_module **out, int axis, int64_t nindex, const int64_t *indices,
                           int scalar_index) {
  *out = NULL;
  if (axis < 0 || axis >= CQ_MAX_DIMS || nindex < 1 || (scalar_index && nindex != 1)) {
    return cq_fail(CQ_EINVAL, "Gather: axis %d / %lld indices are not valid", axis,
                   (long long)nindex);
  }
  gather_impl *p = cq_calloc_for(1, sizeof *p, "Gather");
  if (!p) return CQ_ENOMEM;
  p->index = cq_malloc_for(sizeof *p->index * (size_t)nindex, "Gather indices");
  if (!p->index) {
    cq_free(p);
    return CQ_ENOMEM;
  }
  memcpy(p->index, indices, sizeof *indices * (size_t)nindex);
  p->axis = axis;
  p->n = nindex;
  p->scalar = scalar_index;
  return cq_module_new(&gather_type, p, out);
}

/* Shape ops of imported graphs: Reshape, Permute (ONNX Transpose), Squeeze, Unsqueeze.
 *
 * They have no nn.Module class in PyTorch (torch.reshape, torch.permute, ... are functions), so
 * they print a short FX-like name with their arguments: "Reshape(shape=(0, -1))",
 * "Permute(dims=(0, 2, 1))", "Squeeze(dims=(1,))", "Squeeze()" (every dimension of size 1),
 * "Unsqueeze(dims=(0,))".
 *
 * Every op copies its input into a new contiguous tensor of the same dtype (any dtype: float32,
 * int64 shape tensors, quantized activations, whose per-tensor qparams are kept: PyTorch's
 * quantized reshape / permute are views of the same integers). The gradient of a float32 input is
 * the output gradient reshaped (or permuted back). Argument errors found when building fail the
 * constructor; those that depend on the input (a 0 entry past the input's rank, a size that does
 * not divide, an axis out of range, squeezing a dimension that is not 1) fail the forward, naming
 * the module. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "nn/layers.h"
#include "nn/module_impl.h"

typedef enum shape_op { OP_RESHAPE, OP_PERMUTE, OP_SQUEEZE, OP_UNSQUEEZE } shape_op;

typedef struct shape_impl {
  shape_op op;
  int n;                       /* entries of shape / perm / axes */
  int64_t values[CQ_MAX_DIMS]; /* the shape, the permutation or the axes as given */
} shape_impl;

/* A Python tuple: "()", "(3,)", "(0, -1)". */
static void append_tuple(cq_strbuf *sb, int n, const int64_t *v) {
  cq_strbuf_append(sb, "(");
  for (int i = 0; i < n; i++) cq_strbuf_appendf(sb, "%s%lld", i ? ", " : "", (long long)v[i]);
  cq_strbuf_append(sb, n == 1 ? ",)" : ")");
}

static void shape_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const shape_impl *p = m->impl;
  if (p->op == OP_RESHAPE) {
    cq_strbuf_append(sb, "shape=");
  } else if (p->op == OP_PERMUTE && p->n == 0) {
    return; /* reverses the dimensions */
  } else if (p->op == OP_SQUEEZE && p->n == 0) {
    return; /* every dimension of size 1 */
  } else {
    cq_strbuf_append(sb, "dims=");
  }
  append_tuple(sb, p->n, p->values);
}

/* --- output shapes ------------------------------------------------------------------------------- */

static cq_status reshape_shape(const cq_module *m, const shape_impl *p, const cq_tensor *x,
                               int64_t *shape) {
  char sx[128];
  int infer = -1;
  int64_t known = 1;
  int empty = 0, huge = 0; /* an entry is 0; the product of the others passes INT64_MAX */
  for (int i = 0; i < p->n; i++) {
    int64_t v = p->values[i];
    if (v == 0) {
      if (i >= x->ndim) {
        return cq_module_fail(m, CQ_ESHAPE, "shape entry %d is 0 (copy the input's dimension) but "
                              "the input %s has only %d dimensions", i,
                              cq_shape_str(x->ndim, x->shape, sx, sizeof sx), x->ndim);
      }
      v = x->shape[i];
    }
    shape[i] = v;
    if (v == -1) {
      infer = i;
    } else if (v == 0) {
      empty = 1;
    } else if (known > INT64_MAX / v) {
      huge = 1;
    } else {
      known *= v;
    }
  }
  const int64_t numel = cq_tensor_numel(x);
  if (empty) {
    known = 0;
  } else if (huge) {
    char so[128];
    return cq_module_fail(m, CQ_ESHAPE, "shape %s has more elements than any tensor can (the "
                          "input %s has %lld)", cq_shape_str(p->n, shape, so, sizeof so),
                          cq_shape_str(x->ndim, x->shape, sx, sizeof sx), (long long)numel);
  }
  if (infer >= 0) {
    if (known == 0 || numel % known != 0) {
      return cq_module_fail(m, CQ_ESHAPE, "cannot infer the -1 entry: the input %s has %lld "
                            "elements, not a multiple of %lld",
                            cq_shape_str(x->ndim, x->shape, sx, sizeof sx), (long long)numel,
                            (long long)known);
    }
    shape[infer] = numel / known;
    known = numel;
  }
  if (known != numel) {
    char so[128];
    return cq_module_fail(m, CQ_ESHAPE, "shape %s is invalid for an input %s of %lld elements",
                          cq_shape_str(p->n, shape, so, sizeof so),
                          cq_shape_str(x->ndim, x->shape, sx, sizeof sx), (long long)numel);
  }
  return CQ_OK;
}

/* Axis a of a tensor of rank r, in [-r, r - 1]; -1 when out of range. */
static int wrap_axis(int64_t a, int r) {
  const int64_t w = a < 0 ? a + r : a;
  return (w < 0 || w >= r) ? -1 : (int)w;
}

static cq_status squeeze_shape(const cq_module *m, const shape_impl *p, const cq_tensor *x,
                               int *nd, int64_t *shape) {
  char sx[128];
  int drop[CQ_MAX_DIMS] = {0};
  if (p->n == 0) {
    for (int i = 0; i < x->ndim; i++) drop[i] = x->shape[i] == 1;
  }
  for (int k = 0; k < p->n; k++) {
    const int a = wrap_axis(p->values[k], x->ndim);
    if (a < 0) {
      return cq_module_fail(m, CQ_ESHAPE, "axis %lld is out of range for an input %s of rank %d "
                            "(expected [%d, %d])", (long long)p->values[k],
                            cq_shape_str(x->ndim, x->shape, sx, sizeof sx), x->ndim, -x->ndim,
                            x->ndim - 1);
    }
    if (drop[a]) {
      return cq_module_fail(m, CQ_EINVAL, "axis %lld names dimension %d twice",
                            (long long)p->values[k], a);
    }
    if (x->shape[a] != 1) {
      return cq_module_fail(m, CQ_ESHAPE, "cannot squeeze dimension %d of size %lld (input %s)", a,
                            (long long)x->shape[a], cq_shape_str(x->ndim, x->shape, sx, sizeof sx));
    }
    drop[a] = 1;
  }
  *nd = 0;
  for (int i = 0; i < x->ndim; i++) {
    if (!drop[i]) shape[(*nd)++] = x->shape[i];
  }
  return CQ_OK;
}

static cq_status unsqueeze_shape(const cq_module *m, const shape_impl *p, const cq_tensor *x,
                                 int *nd, int64_t *shape) {
  const int r = x->ndim + p->n;
  if (r > CQ_MAX_DIMS) {
    return cq_module_fail(m, CQ_ESHAPE, "the output would have %d dimensions (at most %d)", r,
                          CQ_MAX_DIMS);
  }
  int ones[CQ_MAX_DIMS] = {0};
  for (int k = 0; k < p->n; k++) {
    const int a = wrap_axis(p->values[k], r);
    if (a < 0) {
      return cq_module_fail(m, CQ_ESHAPE, "axis %lld is out of range for an output of rank %d "
                            "(expected [%d, %d])", (long long)p->values[k], r, -r, r - 1);
    }
    if (ones[a]) {
      return cq_module_fail(m, CQ_EINVAL, "axis %lld names output dimension %d twice",
                            (long long)p->values[k], a);
    }
    ones[a] = 1;
  }
  int j = 0;
  for (int i = 0; i < r; i++) shape[i] = ones[i] ? 1 : x->shape[j++];
  *nd = r;
  return CQ_OK;
}

/* The permutation applied to an input of rank `ndim` (the reversal when none was given). */
static cq_status permutation(const cq_module *m, const shape_impl *p, const cq_tensor *x,
                             int *perm) {
  if (p->n == 0) {
    for (int i = 0; i < x->ndim; i++) perm[i] = x->ndim - 1 - i;
    return CQ_OK;
  }
  if (p->n != x->ndim) {
    char sx[128];
    return cq_module_fail(m, CQ_ESHAPE, "the permutation has %d entries but the input %s has %d "
                          "dimensions", p->n, cq_shape_str(x->ndim, x->shape, sx, sizeof sx),
                          x->ndim);
  }
  for (int i = 0; i < p->n; i++) perm[i] = (int)p->values[i];
  return CQ_OK;
}

/* --- copying ------------------------------------------------------------------------------------- */

/* y[i0, i1, ...] = x[..., i_k at dimension perm[k], ...]: a transposed copy of elements of `size`
 * bytes; y has shape x.shape[perm[k]]. */
static void permute_copy(const void *x, const int64_t *xshape, int nd, const int *perm,
                         size_t size, void *y) {
  int64_t xstride[CQ_MAX_DIMS], ystride_in_x[CQ_MAX_DIMS], yshape[CQ_MAX_DIMS];
  int64_t n = 1;
  for (int i = nd - 1; i >= 0; i--) {
    xstride[i] = n;
    n *= xshape[i];
  }
  for (int k = 0; k < nd; k++) {
    yshape[k] = xshape[perm[k]];
    ystride_in_x[k] = xstride[perm[k]];
  }
  if (n == 0) return;
  int64_t idx[CQ_MAX_DIMS] = {0};
  int64_t off = 0;
  const char *src = x;
  char *dst = y;
  for (int64_t i = 0; i < n; i++) {
    memcpy(dst + (size_t)i * size, src + (size_t)off * size, size);
    for (int k = nd - 1; k >= 0; k--) { /* odometer over y's index */
      if (++idx[k] < yshape[k]) {
        off += ystride_in_x[k];
        break;
      }
      off -= ystride_in_x[k] * (yshape[k] - 1);
      idx[k] = 0;
    }
  }
}

static cq_status shape_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                               cq_tensor **out) {
  (void)nin;
  (void)nout;
  const shape_impl *p = m->impl;
  const cq_tensor *x = in[0];
  const cq_dtype_info *info = cq_dtype_get(x->dtype);
  if (!info) return cq_module_fail(m, CQ_EINVAL, "input has an invalid dtype");
  if (x->qparams && (x->qparams->count != 1 || cq_qscheme_is_per_channel(x->qparams->qscheme))) {
    return cq_module_fail(m, CQ_EUNSUPPORTED, "per-channel quantized inputs are not supported "
                          "(only per-tensor quantized activations)");
  }
  int64_t shape[CQ_MAX_DIMS];
  int perm[CQ_MAX_DIMS];
  int nd = p->n;
  cq_status st = CQ_OK;
  switch (p->op) {
    case OP_RESHAPE:
      st = reshape_shape(m, p, x, shape);
      break;
    case OP_PERMUTE:
      st = permutation(m, p, x, perm);
      nd = x->ndim;
      for (int k = 0; st == CQ_OK && k < nd; k++) shape[k] = x->shape[perm[k]];
      break;
    case OP_SQUEEZE:
      st = squeeze_shape(m, p, x, &nd, shape);
      break;
    default:
      st = unsqueeze_shape(m, p, x, &nd, shape);
      break;
  }
  if (st != CQ_OK) return st;
  cq_tensor *y;
  st = cq_ctx_tensor(ctx, x->dtype, nd, shape, &y);
  if (st != CQ_OK) return st;
  if (p->op == OP_PERMUTE) {
    permute_copy(x->data, x->shape, x->ndim, perm, info->size, y->data);
  } else if (cq_tensor_nbytes(x) > 0) {
    memcpy(y->data, x->data, cq_tensor_nbytes(x));
  }
  if (x->qparams) {
    st = cq_tensor_set_qparams(y, x->qparams);
    if (st != CQ_OK) return st;
  }
  out[0] = y;
  return CQ_OK;
}

static cq_status shape_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                cq_tensor *const *gout, cq_tensor **gin) {
  const shape_impl *p = m->impl;
  const cq_tensor *x = e->in[0], *g = gout[0];
  if (x->dtype != CQ_F32 || x->qparams) return CQ_OK; /* no gradient for other inputs */
  cq_tensor *gx;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  if (p->op == OP_PERMUTE) {
    int perm[CQ_MAX_DIMS], inverse[CQ_MAX_DIMS];
    st = permutation(m, p, x, perm);
    if (st != CQ_OK) return st;
    for (int k = 0; k < x->ndim; k++) inverse[perm[k]] = k;
    permute_copy(g->data, g->shape, g->ndim, inverse, sizeof(float), gx->data);
  } else if (cq_tensor_nbytes(g) > 0) {
    memcpy(gx->data, g->data, cq_tensor_nbytes(g));
  }
  gin[0] = gx;
  return CQ_OK;
}

static const cq_module_type reshape_type = {
    .name = "Reshape",
    .forward = shape_forward,
    .backward = shape_backward,
    .extra_repr = shape_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type permute_type = {
    .name = "Permute",
    .forward = shape_forward,
    .backward = shape_backward,
    .extra_repr = shape_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type squeeze_type = {
    .name = "Squeeze",
    .forward = shape_forward,
    .backward = shape_backward,
    .extra_repr = shape_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type unsqueeze_type = {
    .name = "Unsqueeze",
    .forward = shape_forward,
    .backward = shape_backward,
    .extra_repr = shape_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

/* --- construction -------------------------------------------------------------------------------- */

static cq_status new_shape_op(cq_module **out, const cq_module_type *type, shape_op op, int n,
                              const int64_t *values) {
  shape_impl *p = cq_calloc_for(1, sizeof *p, type->name);
  if (!p) return CQ_ENOMEM;
  p->op = op;
  p->n = n;
  for (int i = 0; i < n; i++) p->values[i] = values[i];
  return cq_module_new(type, p, out);
}

static cq_status check_count(const char *who, const char *what, int n, int min, const void *v) {
  if (n < min || n > CQ_MAX_DIMS) {
    return cq_fail(CQ_EINVAL, "%s: %d %s given, expected %d to %d", who, n, what, min,
                   CQ_MAX_DIMS);
  }
  if (n > 0 && !v) return cq_fail(CQ_EINVAL, "%s: the %s array is NULL", who, what);
  return CQ_OK;
}

cq_status cq_reshape(cq_module **out, int ndim, const int64_t *shape) {
  if (!out) return cq_fail(CQ_EINVAL, "Reshape: the output pointer is NULL");
  *out = NULL;
  cq_status st = check_count("Reshape", "shape entries", ndim, 0, shape);
  if (st != CQ_OK) return st;
  int infer = -1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < -1) {
      return cq_fail(CQ_EINVAL, "Reshape: shape[%d] = %lld is invalid (entries are >= 0, or -1 "
                     "for the one inferred)", i, (long long)shape[i]);
    }
    if (shape[i] == -1) {
      if (infer >= 0) {
        return cq_fail(CQ_EINVAL, "Reshape: only one entry can be -1, got shape[%d] and "
                       "shape[%d]", infer, i);
      }
      infer = i;
    }
  }
  return new_shape_op(out, &reshape_type, OP_RESHAPE, ndim, shape);
}

cq_status cq_permute(cq_module **out, int ndim, const int *perm) {
  if (!out) return cq_fail(CQ_EINVAL, "Permute: the output pointer is NULL");
  *out = NULL;
  cq_status st = check_count("Permute", "dims", ndim, 0, perm);
  if (st != CQ_OK) return st;
  int64_t v[CQ_MAX_DIMS];
  int seen[CQ_MAX_DIMS] = {0};
  for (int i = 0; i < ndim; i++) {
    if (perm[i] < 0 || perm[i] >= ndim || seen[perm[i]]) {
      return cq_fail(CQ_EINVAL, "Permute: dims must be a permutation of 0..%d, got %d at "
                     "position %d%s", ndim - 1, perm[i], i,
                     (perm[i] >= 0 && perm[i] < ndim) ? " twice" : "");
    }
    seen[perm[i]] = 1;
    v[i] = perm[i];
  }
  return new_shape_op(out, &permute_type, OP_PERMUTE, ndim, v);
}

static cq_status axes_op(cq_module **out, const cq_module_type *type, shape_op op, int naxes,
                         const int *axes) {
  if (!out) return cq_fail(CQ_EINVAL, "%s: the output pointer is NULL", type->name);
  *out = NULL;
  cq_status st = check_count(type->name, "axes", naxes, op == OP_UNSQUEEZE ? 1 : 0, axes);
  if (st != CQ_OK) return st;
  int64_t v[CQ_MAX_DIMS];
  for (int i = 0; i < naxes; i++) {
    if (axes[i] < -CQ_MAX_DIMS || axes[i] >= CQ_MAX_DIMS) {
      return cq_fail(CQ_EINVAL, "%s: axis %d is out of range [%d, %d]", type->name, axes[i],
                     -CQ_MAX_DIMS, CQ_MAX_DIMS - 1);
    }
    for (int j = 0; j < i; j++) {
      if (axes[j] == axes[i]) {
        return cq_fail(CQ_EINVAL, "%s: axis %d is given twice", type->name, axes[i]);
      }
    }
    v[i] = axes[i];
  }
  return new_shape_op(out, type, op, naxes, v);
}

cq_status cq_squeeze(cq_module **out, int naxes, const int *axes) {
  return axes_op(out, &squeeze_type, OP_SQUEEZE, naxes, axes);
}

cq_status cq_unsqueeze(cq_module **out, int naxes, const int *axes) {
  return axes_op(out, &unsqueeze_type, OP_UNSQUEEZE, naxes, axes);
}

/* --- describe ------------------------------------------------------------------------------------ */

static const shape_impl *impl_of(const cq_module *m, const cq_module_type *a,
                                 const cq_module_type *b, const char *what) {
  if (!m || (m->type != a && m->type != b)) {
    cq_fail(CQ_EINVAL, "%s is not a %s", m ? m->type->name : "(null)", what);
    return NULL;
  }
  return m->impl;
}

cq_status cq_reshape_describe(const cq_module *m, int *ndim, int64_t *shape) {
  const shape_impl *p = impl_of(m, &reshape_type, &reshape_type, "Reshape");
  if (!p) return CQ_EINVAL;
  *ndim = p->n;
  for (int i = 0; i < p->n; i++) shape[i] = p->values[i];
  return CQ_OK;
}

cq_status cq_permute_describe(const cq_module *m, int *ndim, int *perm) {
  const shape_impl *p = impl_of(m, &permute_type, &permute_type, "Permute");
  if (!p) return CQ_EINVAL;
  *ndim = p->n;
  for (int i = 0; i < p->n; i++) perm[i] = (int)p->values[i];
  return CQ_OK;
}

cq_status cq_squeeze_describe(const cq_module *m, int *unsqueeze, int *naxes, int *axes) {
  const shape_impl *p = impl_of(m, &squeeze_type, &unsqueeze_type, "Squeeze or Unsqueeze");
  if (!p) return CQ_EINVAL;
  *unsqueeze = p->op == OP_UNSQUEEZE;
  *naxes = p->n;
  for (int i = 0; i < p->n; i++) axes[i] = (int)p->values[i];
  return CQ_OK;
}

/* Shape and routing modules: nn.Flatten, nn.Identity, nn.Dropout, and the functional ops add, mul
 * and cat as FloatFunctional modules (torch.ao.nn.quantized.FloatFunctional, the class eager-mode
 * quantization requires for additions, products and concatenations; mul broadcasts as torch.mul,
 * with its arithmetic in binary_ops.c).
 *
 * Dropout in training draws its mask exactly as PyTorch 1.13 does on the CPU (bernoulli_(1 - p)
 * with a double uniform from two 32-bit draws of the generator, then 1 / (1 - p) in float): with
 * the same seed (cq_manual_seed / torch.manual_seed) and the same earlier draws it drops the same
 * elements. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "core/rng.h"
#include "cquant/graph.h"
#include "cquant/modules.h"
#include "nn/binary_ops.h"
#include "nn/layers.h"
#include "nn/module_impl.h"
#include "nn/quantized/qops.h"

static cq_status need_f32(const cq_module *m, const cq_tensor *x, int index) {
  if (x->dtype != CQ_F32) {
    const cq_dtype_info *info = cq_dtype_get(x->dtype);
    return cq_module_fail(m, CQ_EINVAL, "input %d must be float32, got %s", index,
                          info ? info->name : "an invalid dtype");
  }
  return CQ_OK;
}

static int same_shape(const cq_tensor *a, const cq_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] != b->shape[i]) return 0;
  }
  return 1;
}

/* A float32 copy of g with the shape of like (same element count). */
static cq_status reshaped_copy(cq_ctx *ctx, const cq_tensor *g, const cq_tensor *like,
                               cq_tensor **out) {
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, like->ndim, like->shape, out);
  if (st == CQ_OK) memcpy((*out)->data, g->data, cq_tensor_nbytes(g));
  return st;
}

/* --- Identity ---------------------------------------------------------------------------------- */

/* The output is the input tensor itself (as in PyTorch): nothing to record, and gradients reach
 * the input unchanged. */
static cq_status identity_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                  int nout, cq_tensor **out) {
  (void)m;
  (void)ctx;
  (void)nin;
  (void)nout;
  out[0] = in[0];
  return CQ_OK;
}

static const cq_module_type identity_type = {
    .name = "Identity",
    .forward = identity_forward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
    .reads_channels_last = cq_reads_channels_last_passes, /* the output is the input */
};

cq_status cq_identity(cq_module **out) { return cq_module_new(&identity_type, NULL, out); }

/* --- Flatten ----------------------------------------------------------------------------------- */

typedef struct flatten_impl {
  int start_dim, end_dim;
} flatten_impl;

static cq_status wrap_dim(const cq_module *m, int dim, int ndim, int *out) {
  const int nd = ndim > 0 ? ndim : 1; /* a 0-d tensor accepts dims -1 and 0 */
  const int d = dim < 0 ? dim + nd : dim;
  if (d < 0 || d >= nd) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "Dimension out of range (expected to be in range of [%d, %d], but got %d)",
                          -nd, nd - 1, dim);
  }
  *out = d;
  return CQ_OK;
}

static cq_status flatten_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                 int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const flatten_impl *p = m->impl;
  const cq_tensor *x = in[0];
  int s = 0, e = 0;
  cq_status st = wrap_dim(m, p->start_dim, x->ndim, &s);
  if (st == CQ_OK) st = wrap_dim(m, p->end_dim, x->ndim, &e);
  if (st != CQ_OK) return st;
  if (s > e) {
    return cq_module_fail(m, CQ_EINVAL,
                          "flatten() has invalid args: start_dim cannot come after end_dim");
  }
  int64_t shape[CQ_MAX_DIMS];
  int nd = 0;
  if (x->ndim == 0) {
    shape[nd++] = 1;
  } else {
    for (int i = 0; i < s; i++) shape[nd++] = x->shape[i];
    int64_t prod = 1;
    for (int i = s; i <= e; i++) prod *= x->shape[i];
    shape[nd++] = prod;
    for (int i = e + 1; i < x->ndim; i++) shape[nd++] = x->shape[i];
  }
  cq_tensor *y;
  st = cq_ctx_tensor(ctx, x->dtype, nd, shape, &y);
  if (st != CQ_OK) return st;
  memcpy(y->data, x->data, cq_tensor_nbytes(x));
  if (x->qparams) {
    st = cq_tensor_set_qparams(y, x->qparams);
    if (st != CQ_OK) return st;
  }
  out[0] = y;
  return CQ_OK;
}

static cq_status flatten_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                  cq_tensor *const *gout, cq_tensor **gin) {
  (void)m;
  if (e->in[0]->dtype != CQ_F32) return CQ_OK; /* no gradient for integer inputs */
  return reshaped_copy(ctx, gout[0], e->in[0], &gin[0]);
}

static void flatten_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const flatten_impl *p = m->impl;
  cq_strbuf_appendf(sb, "start_dim=%d, end_dim=%d", p->start_dim, p->end_dim);
}

static const cq_module_type flatten_type = {
    .name = "Flatten",
    .forward = flatten_forward,
    .backward = flatten_backward,
    .extra_repr = flatten_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static int dim_arg_ok(int d) { return d >= -CQ_MAX_DIMS && d < CQ_MAX_DIMS; }

cq_status cq_flatten(cq_module **out, int start_dim, int end_dim) {
  *out = NULL;
  if (!dim_arg_ok(start_dim) || !dim_arg_ok(end_dim)) {
    return cq_fail(CQ_EINVAL, "Flatten: start_dim %d and end_dim %d must be in [%d, %d]",
                   start_dim, end_dim, -CQ_MAX_DIMS, CQ_MAX_DIMS - 1);
  }
  flatten_impl *p = cq_calloc_for(1, sizeof *p, "Flatten");
  if (!p) return CQ_ENOMEM;
  p->start_dim = start_dim;
  p->end_dim = end_dim;
  return cq_module_new(&flatten_type, p, out);
}

/* --- Dropout ----------------------------------------------------------------------------------- */

typedef struct dropout_impl {
  float p;
} dropout_impl;

/* The multiplier of each element (0 or 1 / (1 - p)). No saved data means the call was an identity
 * (evaluation, p == 0, or an empty input) that returned its input tensor. */
typedef struct dropout_saved {
  int64_t n;
  float *noise;
} dropout_saved;

/* torch's uniform_real_distribution<double>(0, 1): 53 bits of random64() = (first << 32) | second. */
static double uniform_double(cq_rng *rng) {
  const uint64_t hi = cq_rng_next_u32(rng);
  const uint64_t lo = cq_rng_next_u32(rng);
  const uint64_t r = (hi << 32) | lo;
  return (double)(r & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

static cq_status dropout_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                 int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const dropout_impl *p = m->impl;
  const cq_tensor *x = in[0];
  if (x->qparams) return cq_qop_dropout(m, in[0], m->training, p->p, &out[0]);
  cq_status st = need_f32(m, x, 0);
  if (st != CQ_OK) return st;
  const int64_t n = cq_tensor_numel(x);
  if (!m->training || p->p == 0.0f || n == 0) {
    out[0] = in[0]; /* the input itself, as PyTorch returns it; backward adds nothing */
    return CQ_OK;
  }
  cq_tensor *y;
  st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &y);
  if (st != CQ_OK) return st;
  const float *xd = x->data;
  float *yd = y->data;
  dropout_saved *sv = cq_malloc_for(sizeof *sv + sizeof(float) * (size_t)n, "Dropout mask");
  if (!sv) return CQ_ENOMEM;
  sv->n = n;
  sv->noise = (float *)(sv + 1);
  const double keep = 1.0 - (double)p->p;
  if (p->p == 1.0f) { /* PyTorch multiplies by zero (NaN stays NaN) and draws nothing */
    for (int64_t i = 0; i < n; i++) sv->noise[i] = 0.0f;
  } else {
    cq_rng *rng = cq_default_rng();
    const float scale = 1.0f / (float)keep;
    for (int64_t i = 0; i < n; i++) sv->noise[i] = uniform_double(rng) < keep ? scale : 0.0f;
  }
  for (int64_t i = 0; i < n; i++) yd[i] = xd[i] * sv->noise[i];
  if (cq_ctx_grad_enabled(ctx)) {
    cq_ctx_save(ctx, sv, NULL);
  } else {
    cq_free(sv);
  }
  out[0] = y;
  return CQ_OK;
}

static cq_status dropout_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                  cq_tensor *const *gout, cq_tensor **gin) {
  (void)m;
  const dropout_saved *sv = e->saved;
  /* an identity call returned its input: the gradient is already where it belongs */
  if (!sv) return CQ_OK;
  cq_status st = reshaped_copy(ctx, gout[0], e->in[0], &gin[0]);
  if (st != CQ_OK) return st;
  float *d = gin[0]->data;
  for (int64_t i = 0; i < sv->n; i++) d[i] *= sv->noise[i];
  return CQ_OK;
}

static void dropout_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const dropout_impl *p = m->impl;
  cq_strbuf_append(sb, "p=");
  cq_strbuf_append_pyfloat_f32(sb, p->p);
  cq_strbuf_append(sb, ", inplace=False");
}

static const cq_module_type dropout_type = {
    .name = "Dropout",
    .forward = dropout_forward,
    .backward = dropout_backward,
    .extra_repr = dropout_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_dropout(cq_module **out, float p) {
  *out = NULL;
  if (!(p >= 0.0f && p <= 1.0f)) {
    return cq_fail(CQ_EINVAL, "Dropout: dropout probability has to be between 0 and 1, but got %g",
                   (double)p);
  }
  dropout_impl *impl = cq_calloc_for(1, sizeof *impl, "Dropout");
  if (!impl) return CQ_ENOMEM;
  impl->p = p;
  return cq_module_new(&dropout_type, impl, out);
}

/* --- FloatFunctional: add, mul and cat -------------------------------------------------------- */

typedef enum functional_kind { FUNC_ADD, FUNC_CAT, FUNC_MUL } functional_kind;

typedef struct functional_impl {
  functional_kind kind;
  int dim; /* cat */
} functional_impl;

static cq_status add_forward(cq_module *m, cq_ctx *ctx, const cq_tensor *a, const cq_tensor *b,
                             cq_tensor **out) {
  if (!same_shape(a, b)) {
    char sa[128], sb[128];
    return cq_module_fail(m, CQ_ESHAPE, "add: shapes %s and %s differ",
                          cq_shape_str(a->ndim, a->shape, sa, sizeof sa),
                          cq_shape_str(b->ndim, b->shape, sb, sizeof sb));
  }
  cq_tensor *y;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, a->ndim, a->shape, &y);
  if (st != CQ_OK) return st;
  const float *ad = a->data, *bd = b->data;
  float *yd = y->data;
  const int64_t n = cq_tensor_numel(a);
  for (int64_t i = 0; i < n; i++) yd[i] = ad[i] + bd[i];
  *out = y;
  return CQ_OK;
}

/* Geometry of a concatenation along d: outer = prod(shape[:d]), inner = prod(shape[d+1:]). */
static void cat_split(const cq_tensor *t, int d, int64_t *outer, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < d; i++) *outer *= t->shape[i];
  for (int i = d + 1; i < t->ndim; i++) *inner *= t->shape[i];
}

static cq_status cat_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                             cq_tensor **out) {
  const functional_impl *p = m->impl;
  const cq_tensor *x0 = in[0];
  if (x0->ndim == 0) {
    return cq_module_fail(m, CQ_ESHAPE, "cat: zero-dimensional tensor (input 0) cannot be "
                                        "concatenated");
  }
  int d = 0;
  cq_status st = wrap_dim(m, p->dim, x0->ndim, &d);
  if (st != CQ_OK) return st;
  int64_t shape[CQ_MAX_DIMS];
  memcpy(shape, x0->shape, sizeof(int64_t) * (size_t)x0->ndim);
  shape[d] = 0;
  for (int k = 0; k < nin; k++) {
    const cq_tensor *t = in[k];
    if (t->ndim != x0->ndim) {
      return cq_module_fail(m, CQ_ESHAPE,
                            "cat: tensors must have same number of dimensions: got %d and %d",
                            x0->ndim, t->ndim);
    }
    for (int i = 0; i < t->ndim; i++) {
      if (i != d && t->shape[i] != x0->shape[i]) {
        return cq_module_fail(m, CQ_ESHAPE,
                              "cat: sizes of tensors must match except in dimension %d. Expected "
                              "size %lld but got size %lld for tensor number %d in the list",
                              d, (long long)x0->shape[i], (long long)t->shape[i], k);
      }
    }
    shape[d] += t->shape[d];
  }
  cq_tensor *y;
  st = cq_ctx_tensor(ctx, CQ_F32, x0->ndim, shape, &y);
  if (st != CQ_OK) return st;
  int64_t outer, inner;
  cat_split(y, d, &outer, &inner);
  const int64_t row = shape[d] * inner;
  float *yd = y->data;
  int64_t offset = 0;
  for (int k = 0; k < nin; k++) {
    const int64_t chunk = in[k]->shape[d] * inner;
    const float *src = in[k]->data;
    for (int64_t o = 0; o < outer; o++) {
      memcpy(yd + o * row + offset, src + o * chunk, sizeof(float) * (size_t)chunk);
    }
    offset += chunk;
  }
  *out = y;
  return CQ_OK;
}

static cq_status functional_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                    int nout, cq_tensor **out) {
  (void)nout;
  const functional_impl *p = m->impl;
  if (p->kind == FUNC_MUL && (in[0]->qparams || in[1]->qparams)) {
    return cq_module_fail(m, CQ_EUNSUPPORTED, "mul of quantized tensors needs output qparams: "
                          "convert the FloatFunctional to a QFunctional (prepare + convert) first");
  }
  if (in[0]->qparams) { /* quantized inputs: torch.cat's rule; add has no quantized form */
    return cq_qop_float_functional(m, ctx, p->kind == FUNC_CAT, p->dim, nin, in, &out[0]);
  }
  for (int k = 0; k < nin; k++) {
    cq_status st = need_f32(m, in[k], k);
    if (st != CQ_OK) return st;
  }
  if (p->kind == FUNC_ADD) {
    if (nin != 2) return cq_module_fail(m, CQ_EINVAL, "add takes 2 inputs, got %d", nin);
    return add_forward(m, ctx, in[0], in[1], &out[0]);
  }
  if (p->kind == FUNC_MUL) { /* torch.mul: numpy broadcasting (binary_ops.c) */
    return cq_binary_forward(m, ctx, CQ_BINARY_MUL, in[0], in[1], &out[0]);
  }
  return cat_forward(m, ctx, nin, in, &out[0]);
}

static cq_status functional_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                     cq_tensor *const *gout, cq_tensor **gin) {
  const functional_impl *p = m->impl;
  const cq_tensor *g = gout[0];
  if (p->kind == FUNC_MUL) {
    return cq_binary_backward(m, ctx, CQ_BINARY_MUL, e->in[0], e->in[1], g, &gin[0], &gin[1]);
  }
  if (p->kind == FUNC_ADD) {
    /* separate copies: the tape adds later gradients into them in place */
    cq_status st = reshaped_copy(ctx, g, e->in[0], &gin[0]);
    if (st == CQ_OK) st = reshaped_copy(ctx, g, e->in[1], &gin[1]);
    return st;
  }
  int d = 0;
  cq_status st = wrap_dim(m, p->dim, g->ndim, &d);
  if (st != CQ_OK) return st;
  int64_t outer, inner;
  cat_split(g, d, &outer, &inner);
  const int64_t row = g->shape[d] * inner;
  const float *gd = g->data;
  int64_t offset = 0;
  for (int k = 0; k < e->nin; k++) {
    const cq_tensor *x = e->in[k];
    st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gin[k]);
    if (st != CQ_OK) return st;
    const int64_t chunk = x->shape[d] * inner;
    float *dst = gin[k]->data;
    for (int64_t o = 0; o < outer; o++) {
      memcpy(dst + o * chunk, gd + o * row + offset, sizeof(float) * (size_t)chunk);
    }
    offset += chunk;
  }
  return CQ_OK;
}

static const cq_module_type add_type = {
    .name = "FloatFunctional",
    .forward = functional_forward,
    .backward = functional_backward,
    .nin_min = 2, .nin_max = 2, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type cat_type = {
    .name = "FloatFunctional",
    .forward = functional_forward,
    .backward = functional_backward,
    .nin_min = 1, .nin_max = CQ_MAX_IO, .nout_min = 1, .nout_max = 1,
};

static cq_status new_functional(cq_module **out, const cq_module_type *type, functional_kind kind,
                                int dim) {
  functional_impl *p = cq_calloc_for(1, sizeof *p, "FloatFunctional");
  if (!p) return CQ_ENOMEM;
  p->kind = kind;
  p->dim = dim;
  cq_module *m;
  cq_status st = cq_module_new(type, p, &m);
  if (st != CQ_OK) return st;
  cq_module *post;
  st = cq_identity(&post);
  if (st == CQ_OK) st = cq_module_add_child(m, "activation_post_process", post);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

cq_status cq_add(cq_module **out) {
  *out = NULL;
  return new_functional(out, &add_type, FUNC_ADD, 0);
}

cq_status cq_mul(cq_module **out) {
  if (!out) return cq_fail(CQ_EINVAL, "mul: the output pointer is NULL");
  *out = NULL;
  return new_functional(out, &add_type, FUNC_MUL, 0);
}

cq_status cq_cat(cq_module **out, int dim) {
  *out = NULL;
  if (!dim_arg_ok(dim)) {
    return cq_fail(CQ_EINVAL, "cat: dim %d must be in [%d, %d]", dim, -CQ_MAX_DIMS,
                   CQ_MAX_DIMS - 1);
  }
  return new_functional(out, &cat_type, FUNC_CAT, dim);
}

const char *cq_functional_op(const cq_module *m, int *dim) {
  if (!m || m->type->forward != functional_forward) return NULL;
  const functional_impl *p = m->impl;
  if (dim) *dim = p->dim;
  if (p->kind == FUNC_MUL) return "mul";
  return p->kind == FUNC_ADD ? "add" : "cat";
}

cq_status cq_flatten_describe(const cq_module *m, int *start_dim, int *end_dim) {
  if (m->type != &flatten_type) return cq_fail(CQ_EINVAL, "%s is not a Flatten", m->type->name);
  const flatten_impl *p = m->impl;
  *start_dim = p->start_dim;
  *end_dim = p->end_dim;
  return CQ_OK;
}

cq_status cq_dropout_describe(const cq_module *m, float *p) {
  if (m->type != &dropout_type) return cq_fail(CQ_EINVAL, "%s is not a Dropout", m->type->name);
  *p = ((const dropout_impl *)m->impl)->p;
  return CQ_OK;
}

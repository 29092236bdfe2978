/* Elementwise binary ops with broadcasting (binary_ops.h), BinaryConst (one input and a constant
 * operand: what ONNX Add / Sub / Mul / Div with an initializer become) and MatMul (torch.matmul).
 *
 * BinaryConst prints "BinaryConst(op=mul, constant_shape=(3, 1, 1))" (", constant_first=True" when
 * the constant is the left operand); MatMul prints "MatMul()". Both are float only: on quantized
 * inputs they fail with CQ_EUNSUPPORTED (PyTorch has no quantized matmul, and its quantized
 * add / mul with a scalar are not what an imported constant tensor is). */
#include "nn/binary_ops.h"

#include <string.h>

#include "core/alloc.h"
#include "kernels/fgemm/sgemm.h"
#include "nn/layers.h"

const char *cq_binary_op_name(cq_binary_op op) {
  switch (op) {
    case CQ_BINARY_ADD:
      return "add";
    case CQ_BINARY_SUB:
      return "sub";
    case CQ_BINARY_MUL:
      return "mul";
    default:
      return "div";
  }
}

/* --- broadcasting -------------------------------------------------------------------------------- */

cq_status cq_broadcast_shapes(const cq_module *m, const char *what, int nda, const int64_t *sa,
                              int ndb, const int64_t *sb, cq_broadcast *out) {
  memset(out, 0, sizeof *out);
  const int nd = nda > ndb ? nda : ndb;
  out->ndim = nd;
  out->numel = 1;
  int64_t ca = 1, cb = 1; /* contiguous strides, built from the last dimension */
  for (int i = nd - 1; i >= 0; i--) {
    const int ia = i - (nd - nda), ib = i - (nd - ndb);
    const int64_t da = ia >= 0 ? sa[ia] : 1, db = ib >= 0 ? sb[ib] : 1;
    if (da != db && da != 1 && db != 1) {
      char s1[128], s2[128];
      return cq_module_fail(m, CQ_ESHAPE, "%s: shapes %s and %s cannot be broadcast (dimension "
                            "%d: %lld and %lld)", what, cq_shape_str(nda, sa, s1, sizeof s1),
                            cq_shape_str(ndb, sb, s2, sizeof s2), i - nd, (long long)da,
                            (long long)db);
    }
    out->shape[i] = da == 1 ? db : da;
    out->stride_a[i] = da == 1 ? 0 : ca;
    out->stride_b[i] = db == 1 ? 0 : cb;
    ca *= da;
    cb *= db;
    out->numel *= out->shape[i];
  }
  return CQ_OK;
}

static float apply_op(cq_binary_op op, float a, float b) {
  switch (op) {
    case CQ_BINARY_ADD:
      return a + b;
    case CQ_BINARY_SUB:
      return a - b;
    case CQ_BINARY_MUL:
      return a * b;
    default:
      return a / b;
  }
}

cq_status cq_binary_forward(const cq_module *m, cq_ctx *ctx, cq_binary_op op, const cq_tensor *a,
                            const cq_tensor *b, cq_tensor **y) {
  cq_broadcast bc;
  cq_status st = cq_broadcast_shapes(m, cq_binary_op_name(op), a->ndim, a->shape, b->ndim,
                                     b->shape, &bc);
  if (st == CQ_OK) st = cq_ctx_tensor(ctx, CQ_F32, bc.ndim, bc.shape, y);
  if (st != CQ_OK) return st;
  const float *ad = a->data, *bd = b->data;
  float *yd = (*y)->data;
  cq_broadcast_iter it;
  cq_broadcast_iter_init(&it, &bc);
  for (int64_t i = 0; i < bc.numel; i++, cq_broadcast_iter_next(&it)) {
    yd[i] = apply_op(op, ad[it.oa], bd[it.ob]);
  }
  return CQ_OK;
}

/* d(a op b)/da * g and d(a op b)/db * g as PyTorch's derivative formulas evaluate them. */
static float grad_a(cq_binary_op op, float g, float a, float b) {
  (void)a;
  switch (op) {
    case CQ_BINARY_ADD:
    case CQ_BINARY_SUB:
      return g;
    case CQ_BINARY_MUL:
      return g * b;
    default:
      return g / b;
  }
}

static float grad_b(cq_binary_op op, float g, float a, float b) {
  switch (op) {
    case CQ_BINARY_ADD:
      return g;
    case CQ_BINARY_SUB:
      return -g;
    case CQ_BINARY_MUL:
      return g * a;
    default:
      return -g * ((a / b) / b);
  }
}

/* One operand's gradient: the per-element terms summed into its shape. */
static cq_status reduce_grad(cq_ctx *ctx, const cq_broadcast *bc, int which, cq_binary_op op,
                             const cq_tensor *a, const cq_tensor *b, const cq_tensor *g,
                             cq_tensor **out) {
  const cq_tensor *t = which == 0 ? a : b;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, t->ndim, t->shape, out);
  if (st != CQ_OK) return st;
  const int64_t n = cq_tensor_numel(t);
  const float *ad = a->data, *bd = b->data, *gd = g->data;
  float *d = (*out)->data;
  cq_broadcast_iter it;
  cq_broadcast_iter_init(&it, bc);
  if (n == bc->numel) { /* not broadcast: one term per element */
    for (int64_t i = 0; i < bc->numel; i++, cq_broadcast_iter_next(&it)) {
      const float av = ad[it.oa], bv = bd[it.ob];
      d[which == 0 ? it.oa : it.ob] = which == 0 ? grad_a(op, gd[i], av, bv)
                                                 : grad_b(op, gd[i], av, bv);
    }
    return CQ_OK;
  }
  double *acc = cq_calloc_for((size_t)(n ? n : 1), sizeof *acc, "a broadcast gradient");
  if (!acc) return CQ_ENOMEM;
  for (int64_t i = 0; i < bc->numel; i++, cq_broadcast_iter_next(&it)) {
    const float av = ad[it.oa], bv = bd[it.ob];
    if (which == 0) {
      acc[it.oa] += grad_a(op, gd[i], av, bv);
    } else {
      acc[it.ob] += grad_b(op, gd[i], av, bv);
    }
  }
  for (int64_t i = 0; i < n; i++) d[i] = (float)acc[i];
  cq_free(acc);
  return CQ_OK;
}

cq_status cq_binary_backward(const cq_module *m, cq_ctx *ctx, cq_binary_op op, const cq_tensor *a,
                             const cq_tensor *b, const cq_tensor *g, cq_tensor **ga,
                             cq_tensor **gb) {
  cq_broadcast bc;
  cq_status st = cq_broadcast_shapes(m, cq_binary_op_name(op), a->ndim, a->shape, b->ndim,
                                     b->shape, &bc);
  if (st == CQ_OK && ga) st = reduce_grad(ctx, &bc, 0, op, a, b, g, ga);
  if (st == CQ_OK && gb) st = reduce_grad(ctx, &bc, 1, op, a, b, g, gb);
  return st;
}

static cq_status need_float(const cq_module *m, const cq_tensor *x, int index) {
  if (x->qparams) {
    return cq_module_fail(m, CQ_EUNSUPPORTED, "input %d is quantized; this op runs on float32 "
                          "tensors only (dequantize first)", index);
  }
  if (x->dtype != CQ_F32) {
    const cq_dtype_info *info = cq_dtype_get(x->dtype);
    return cq_module_fail(m, CQ_EINVAL, "input %d must be float32, got %s", index,
                          info ? info->name : "an invalid dtype");
  }
  return CQ_OK;
}

/* --- BinaryConst --------------------------------------------------------------------------------- */

typedef struct const_impl {
  cq_binary_op op;
  int constant_first;
} const_impl;

static const cq_tensor *constant_of(cq_module *m) {
  cq_named_tensor *t = cq_module_own_tensor(m, "constant");
  return t ? t->tensor : NULL;
}

static cq_status const_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                               cq_tensor **out) {
  (void)nin;
  (void)nout;
  const const_impl *p = m->impl;
  const cq_tensor *c = constant_of(m);
  cq_status st = need_float(m, in[0], 0);
  if (st != CQ_OK) return st;
  if (!c || c->dtype != CQ_F32) {
    return cq_module_fail(m, CQ_ESTATE, "the float32 buffer 'constant' is missing");
  }
  return p->constant_first ? cq_binary_forward(m, ctx, p->op, c, in[0], &out[0])
                           : cq_binary_forward(m, ctx, p->op, in[0], c, &out[0]);
}

static cq_status const_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                cq_tensor *const *gout, cq_tensor **gin) {
  const const_impl *p = m->impl;
  const cq_tensor *c = constant_of(m);
  if (!c) return cq_module_fail(m, CQ_ESTATE, "the buffer 'constant' is missing");
  return p->constant_first
             ? cq_binary_backward(m, ctx, p->op, c, e->in[0], gout[0], NULL, &gin[0])
             : cq_binary_backward(m, ctx, p->op, e->in[0], c, gout[0], &gin[0], NULL);
}

static void const_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const const_impl *p = m->impl;
  const cq_tensor *c = constant_of((cq_module *)m);
  cq_strbuf_appendf(sb, "op=%s, constant_shape=(", cq_binary_op_name(p->op));
  const int nd = c ? c->ndim : 0;
  for (int i = 0; i < nd; i++) {
    cq_strbuf_appendf(sb, "%s%lld", i ? ", " : "", (long long)c->shape[i]);
  }
  cq_strbuf_append(sb, nd == 1 ? ",)" : ")");
  if (p->constant_first) cq_strbuf_append(sb, ", constant_first=True");
}

static const cq_module_type binary_const_type = {
    .name = "BinaryConst",
    .forward = const_forward,
    .backward = const_backward,
    .extra_repr = const_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_binary_const(cq_module **out, cq_binary_op op, const cq_tensor *constant,
                          int constant_first) {
  if (!out) return cq_fail(CQ_EINVAL, "BinaryConst: the output pointer is NULL");
  *out = NULL;
  if ((unsigned)op > CQ_BINARY_DIV) {
    return cq_fail(CQ_EINVAL, "BinaryConst: unknown op %d", (int)op);
  }
  if (!constant) return cq_fail(CQ_EINVAL, "BinaryConst: the constant is NULL");
  if (constant->qparams) {
    return cq_fail(CQ_EUNSUPPORTED, "BinaryConst: a quantized constant is not supported");
  }
  if (!cq_dtype_get(constant->dtype)) {
    return cq_fail(CQ_EINVAL, "BinaryConst: the constant has an invalid dtype");
  }
  cq_tensor *copy = NULL;
  cq_status st = cq_tensor_to_f32(constant, &copy); /* integer constants become float32 */
  if (st != CQ_OK) return st;
  const_impl *p = cq_calloc_for(1, sizeof *p, "BinaryConst");
  if (!p) {
    cq_tensor_free(copy);
    return CQ_ENOMEM;
  }
  p->op = op;
  p->constant_first = constant_first != 0;
  cq_module *m;
  st = cq_module_new(&binary_const_type, p, &m);
  if (st != CQ_OK) {
    cq_tensor_free(copy);
    return st;
  }
  st = cq_module_add_buffer(m, "constant", copy);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

cq_status cq_binary_const_describe(const cq_module *m, cq_binary_op *op, int *constant_first,
                                   const cq_tensor **constant) {
  if (!m || m->type != &binary_const_type) {
    return cq_fail(CQ_EINVAL, "%s is not a BinaryConst", m ? m->type->name : "(null)");
  }
  const const_impl *p = m->impl;
  *op = p->op;
  *constant_first = p->constant_first;
  *constant = constant_of((cq_module *)m);
  return CQ_OK;
}

/* --- two computed operands (cq_binary) ----------------------------------------------------------- */

static cq_status binary_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                                cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_binary_op op = *(const cq_binary_op *)m->impl;
  for (int i = 0; i < 2; i++) {
    if (in[i]->dtype != CQ_F32 || in[i]->qparams) {
      return cq_module_fail(m, CQ_EUNSUPPORTED, "input %d is not a float32 tensor (%s has no "
                            "quantized kernel)", i, cq_binary_op_name(op));
    }
  }
  return cq_binary_forward(m, ctx, op, in[0], in[1], &out[0]);
}

static cq_status binary_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                 cq_tensor *const *gout, cq_tensor **gin) {
  const cq_binary_op op = *(const cq_binary_op *)m->impl;
  return cq_binary_backward(m, ctx, op, e->in[0], e->in[1], gout[0], &gin[0], &gin[1]);
}

#define BINARY_TYPE(var, type_name)                                                  \
  static const cq_module_type var = {                                                \
      .name = type_name,                                                             \
      .forward = binary_forward,                                                     \
      .backward = binary_backward,                                                   \
      .nin_min = 2, .nin_max = 2, .nout_min = 1, .nout_max = 1,                      \
  }
BINARY_TYPE(binary_add_type, "Add");
BINARY_TYPE(binary_sub_type, "Sub");
BINARY_TYPE(binary_mul_type, "Mul");
BINARY_TYPE(binary_div_type, "Div");
static const cq_module_type *const binary_types[4] = {&binary_add_type, &binary_sub_type,
                                                      &binary_mul_type, &binary_div_type};

cq_status cq_binary(cq_module **out, cq_binary_op op) {
  if (!out) return cq_fail(CQ_EINVAL, "binary op: the output pointer is NULL");
  *out = NULL;
  if ((unsigned)op > CQ_BINARY_DIV) return cq_fail(CQ_EINVAL, "unknown binary op %d", (int)op);
  cq_binary_op *p = cq_malloc_for(sizeof *p, "binary op");
  if (!p) return CQ_ENOMEM;
  *p = op;
  return cq_module_new(binary_types[op], p, out);
}

cq_status cq_binary_describe(const cq_module *m, cq_binary_op *op) {
  for (int i = 0; m && i < 4; i++) {
    if (m->type == binary_types[i]) {
      *op = (cq_binary_op)i;
      return CQ_OK;
    }
  }
  return cq_fail(CQ_EINVAL, "%s is not a binary op of two inputs", m ? m->type->name : "(null)");
}

/* --- MatMul -------------------------------------------------------------------------------------- */

/* torch.matmul's geometry: a is [batch_a..., n, k] (a 1-D a is [1, k]), b is [batch_b..., k, p]
 * (a 1-D b is [k, 1]); the batch dimensions broadcast. */
typedef struct matmul_plan {
  int64_t n, k, p;
  cq_broadcast batch; /* strides in matrices */
  int ndim;
  int64_t shape[CQ_MAX_DIMS];
} matmul_plan;

static cq_status matmul_plan_of(const cq_module *m, const cq_tensor *a, const cq_tensor *b,
                                matmul_plan *pl) {
  char s1[128], s2[128];
  if (a->ndim < 1 || b->ndim < 1) {
    return cq_module_fail(m, CQ_ESHAPE, "both arguments to matmul need to be at least 1D, but "
                          "they are %dD and %dD", a->ndim, b->ndim);
  }
  pl->n = a->ndim >= 2 ? a->shape[a->ndim - 2] : 1;
  pl->k = a->shape[a->ndim - 1];
  const int64_t kb = b->ndim >= 2 ? b->shape[b->ndim - 2] : b->shape[0];
  pl->p = b->ndim >= 2 ? b->shape[b->ndim - 1] : 1;
  if (kb != pl->k) {
    return cq_module_fail(m, CQ_ESHAPE, "matmul: shapes %s and %s cannot be multiplied (%lld != "
                          "%lld)", cq_shape_str(a->ndim, a->shape, s1, sizeof s1),
                          cq_shape_str(b->ndim, b->shape, s2, sizeof s2), (long long)pl->k,
                          (long long)kb);
  }
  const int nba = a->ndim > 2 ? a->ndim - 2 : 0, nbb = b->ndim > 2 ? b->ndim - 2 : 0;
  cq_status st = cq_broadcast_shapes(m, "matmul batch dimensions", nba, a->shape, nbb, b->shape,
                                     &pl->batch);
  if (st != CQ_OK) return st;
  pl->ndim = pl->batch.ndim;
  memcpy(pl->shape, pl->batch.shape, sizeof(int64_t) * (size_t)pl->ndim);
  if (a->ndim >= 2) pl->shape[pl->ndim++] = pl->n;
  if (b->ndim >= 2) pl->shape[pl->ndim++] = pl->p;
  if (pl->ndim > CQ_MAX_DIMS) {
    return cq_module_fail(m, CQ_ESHAPE, "the output would have %d dimensions", pl->ndim);
  }
  return CQ_OK;
}

static int64_t max1(int64_t v) { return v > 1 ? v : 1; }

static cq_status matmul_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_tensor *a = in[0], *b = in[1];
  cq_status st = need_float(m, a, 0);
  if (st == CQ_OK) st = need_float(m, b, 1);
  matmul_plan pl;
  if (st == CQ_OK) st = matmul_plan_of(m, a, b, &pl);
  cq_tensor *y;
  if (st == CQ_OK) st = cq_ctx_tensor(ctx, CQ_F32, pl.ndim, pl.shape, &y);
  if (st != CQ_OK) return st;
  const int64_t sa = pl.n * pl.k, sb = pl.k * pl.p, sy = pl.n * pl.p;
  float *yd = y->data;
  if (sy > 0) {
    if (pl.k == 0) {
      memset(yd, 0, sizeof(float) * (size_t)(sy * pl.batch.numel));
    } else {
      const float *ad = a->data, *bd = b->data;
      cq_broadcast_iter it;
      cq_broadcast_iter_init(&it, &pl.batch);
      for (int64_t i = 0; i < pl.batch.numel; i++, cq_broadcast_iter_next(&it)) {
        cq_sgemm(0, 0, pl.n, pl.p, pl.k, 1.0f, ad + it.oa * sa, max1(pl.k), bd + it.ob * sb,
                 max1(pl.p), 0.0f, yd + i * sy, max1(pl.p));
      }
    }
  }
  out[0] = y;
  return CQ_OK;
}

static cq_status matmul_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                                 cq_tensor *const *gout, cq_tensor **gin) {
  const cq_tensor *a = e->in[0], *b = e->in[1];
  matmul_plan pl;
  cq_status st = matmul_plan_of(m, a, b, &pl);
  cq_tensor *ga, *gb;
  if (st == CQ_OK) st = cq_ctx_tensor(ctx, CQ_F32, a->ndim, a->shape, &ga);
  if (st == CQ_OK) st = cq_ctx_tensor(ctx, CQ_F32, b->ndim, b->shape, &gb);
  if (st != CQ_OK) return st;
  memset(ga->data, 0, cq_tensor_nbytes(ga));
  memset(gb->data, 0, cq_tensor_nbytes(gb));
  const int64_t sa = pl.n * pl.k, sb = pl.k * pl.p, sy = pl.n * pl.p;
  if (sa > 0 && sb > 0 && sy > 0) {
    const float *ad = a->data, *bd = b->data, *g = gout[0]->data;
    float *gad = ga->data, *gbd = gb->data;
    cq_broadcast_iter it;
    cq_broadcast_iter_init(&it, &pl.batch);
    for (int64_t i = 0; i < pl.batch.numel; i++, cq_broadcast_iter_next(&it)) {
      /* dA += dY B^T ; dB += A^T dY, summed over broadcast batches */
      cq_sgemm(0, 1, pl.n, pl.k, pl.p, 1.0f, g + i * sy, pl.p, bd + it.ob * sb, pl.p, 1.0f,
               gad + it.oa * sa, pl.k);
      cq_sgemm(1, 0, pl.k, pl.p, pl.n, 1.0f, ad + it.oa * sa, pl.k, g + i * sy, pl.p, 1.0f,
               gbd + it.ob * sb, pl.p);
    }
  }
  gin[0] = ga;
  gin[1] = gb;
  return CQ_OK;
}

static const cq_module_type matmul_type = {
    .name = "MatMul",
    .forward = matmul_forward,
    .backward = matmul_backward,
    .nin_min = 2, .nin_max = 2, .nout_min = 1, .nout_max = 1,
};

cq_status cq_matmul(cq_module **out) {
  if (!out) return cq_fail(CQ_EINVAL, "MatMul: the output pointer is NULL");
  *out = NULL;
  return cq_module_new(&matmul_type, NULL, out);
}

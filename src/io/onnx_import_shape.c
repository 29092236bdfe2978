/* ONNX import: shape subgraphs evaluated symbolically, and the shape ops on activations.
 *
 * torch.onnx.export writes x.view(x.size(0), -1) as
 *   Shape(x) -> Gather(0) -> Unsqueeze -> Concat(with [-1]) -> Reshape(x, that)
 * and the zero initial states of LSTM / GRU as Shape -> Gather -> Concat -> ConstantOfShape. Such
 * integer vectors never become graph values here: each entry is a known integer or "the size
 * `sym`" (a symbol standing for a dynamic dimension, the batch), and Reshape turns the result into
 * ONNX Reshape semantics for cq_reshape: 0 where the entry is the input's own dimension at that
 * position, -1 for the one remaining unknown. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "io/onnx_import.h"

#define OI_MAX_VEC 64 /* longest integer vector a shape computation may produce */

cq_status oi_set_sym(oi_importer *im, oi_value *v, int n, const oi_dim *entries, int scalar) {
  (void)im;
  cq_free(v->sym);
  v->sym = cq_malloc_for(sizeof *v->sym * (size_t)(n > 0 ? n : 1), "a shape vector");
  if (!v->sym) return CQ_ENOMEM;
  if (n > 0) memcpy(v->sym, entries, sizeof *entries * (size_t)n);
  v->nsym = n;
  v->scalar = scalar;
  return CQ_OK;
}

static int is_int_tensor(const Onnx__TensorProto *t) {
  return t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
         t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
}

/* Whether v is an integer vector (constant or symbolic) usable in shape arithmetic. */
static int is_int_vector(const oi_value *v) {
  return v && (v->kind == OI_SHAPE || (v->kind == OI_CONST && is_int_tensor(v->tensor) &&
                                       v->tensor->n_dims <= 1));
}

cq_status oi_int_vector(oi_importer *im, oi_value *v, const char *role, oi_dim *out, int cap,
                        int *n, int *scalar) {
  if (v->kind == OI_SHAPE) {
    if (v->nsym > cap) return oi_fail(im, CQ_EUNSUPPORTED, "%s has too many entries", role);
    memcpy(out, v->sym, sizeof *out * (size_t)v->nsym);
    *n = v->nsym;
    *scalar = v->scalar;
    return CQ_OK;
  }
  if (v->kind != OI_CONST || !is_int_tensor(v->tensor) || v->tensor->n_dims > 1) {
    return oi_fail(im, CQ_EUNSUPPORTED, "%s '%s' must be a constant integer vector or computed "
                   "from shapes", role, v->name);
  }
  int64_t numel;
  cq_status st = oi_tensor_check(im, v->tensor, role, &numel);
  if (st != CQ_OK) return st;
  if (numel > cap) return oi_fail(im, CQ_EUNSUPPORTED, "%s has too many entries", role);
  int64_t vals[OI_MAX_VEC];
  st = oi_tensor_i64(im, v->tensor, role, vals, numel);
  if (st != CQ_OK) return st;
  for (int64_t i = 0; i < numel; i++) {
    out[i].v = vals[i];
    out[i].sym = 0;
  }
  *n = (int)numel;
  *scalar = v->tensor->n_dims == 0;
  return CQ_OK;
}

static cq_status define_sym(oi_importer *im, int n, const oi_dim *e, int scalar) {
  oi_value *y;
  cq_status st = oi_define_output(im, 0, OI_SHAPE, &y);
  if (st == CQ_OK) st = oi_set_sym(im, y, n, e, scalar);
  return st;
}

/* Reads an optional constant int vector input (axes, starts, ...) with no symbols. */
static cq_status const_ints(oi_importer *im, int i, const char *role, int64_t *out, int cap,
                            int *n, int *present) {
  oi_value *v;
  *n = 0;
  *present = 0;
  cq_status st = oi_input(im, i, &v);
  if (st != CQ_OK || !v) return st;
  oi_dim e[OI_MAX_VEC];
  int scalar;
  st = oi_int_vector(im, v, role, e, cap < OI_MAX_VEC ? cap : OI_MAX_VEC, n, &scalar);
  if (st != CQ_OK) return st;
  for (int k = 0; k < *n; k++) {
    if (e[k].sym) return oi_fail(im, CQ_EUNSUPPORTED, "%s must be constant", role);
    out[k] = e[k].v;
  }
  *present = 1;
  return CQ_OK;
}

/* ---- Constant, Shape, Cast, ConstantOfShape ---- */

cq_status oi_conv_constant(oi_importer *im, const Onnx__NodeProto *node) {
  (void)node;
  const Onnx__TensorProto *t;
  if (!oi_attr(node, "value")) {
    return oi_fail(im, CQ_EUNSUPPORTED, "only the 'value' form of Constant is supported");
  }
  cq_status st = oi_attr_tensor(im, "value", &t);
  if (st != CQ_OK) return st;
  int64_t numel;
  st = oi_tensor_check(im, t, "constant", &numel);
  if (st != CQ_OK) return st;
  oi_value *y;
  st = oi_define_output(im, 0, OI_CONST, &y);
  if (st == CQ_OK) y->tensor = t;
  return st;
}

cq_status oi_conv_shape(oi_importer *im, const Onnx__NodeProto *node) {
  (void)node;
  oi_value *x;
  cq_status st = oi_input_act(im, 0, &x);
  if (st != CQ_OK) return st;
  int64_t start, end;
  st = oi_attr_int(im, "start", 0, &start);
  if (st == CQ_OK) st = oi_attr_int(im, "end", x->ndim, &end);
  if (st != CQ_OK) return st;
  if (start < 0) start += x->ndim;
  if (end < 0) end += x->ndim;
  if (start < 0) start = 0;
  if (end > x->ndim) end = x->ndim;
  if (end < start) end = start;
  return define_sym(im, (int)(end - start), x->dims + start, 0);
}

cq_status oi_conv_cast(oi_importer *im, const Onnx__NodeProto *node) {
  (void)node;
  oi_value *x;
  cq_status st = oi_input(im, 0, &x);
  if (st != CQ_OK) return st;
  if (!x) return oi_fail(im, CQ_EFORMAT, "input 0 is missing");
  int64_t to;
  st = oi_attr_int(im, "to", 0, &to);
  if (st != CQ_OK) return st;
  const int to_int = to == ONNX__TENSOR_PROTO__DATA_TYPE__INT64 ||
                     to == ONNX__TENSOR_PROTO__DATA_TYPE__INT32;
  if (is_int_vector(x) && to_int) {
    oi_dim e[OI_MAX_VEC];
    int n, scalar;
    st = oi_int_vector(im, x, "the input", e, OI_MAX_VEC, &n, &scalar);
    if (st == CQ_OK) st = define_sym(im, n, e, scalar);
    return st;
  }
  if (x->kind == OI_ACT && to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
    cq_module *m;
    st = cq_identity(&m);
    if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
    return oi_emit_unary(im, m, NULL, x, x->ndim, x->dims, NULL);
  }
  return oi_fail(im, CQ_EUNSUPPORTED, "only casts of shape vectors between integer types and "
                 "float-to-float casts are supported (to = %lld)", (long long)to);
}

cq_status oi_conv_constant_of_shape(oi_importer *im, const Onnx__NodeProto *node) {
  oi_value *s;
  cq_status st = oi_input(im, 0, &s);
  if (st != CQ_OK) return st;
  if (!s) return oi_fail(im, CQ_EFORMAT, "input 0 is missing");
  oi_dim e[OI_MAX_VEC];
  int n = 0, scalar = 0;
  st = oi_int_vector(im, s, "the shape", e, CQ_MAX_DIMS, &n, &scalar);
  if (st != CQ_OK) return st;
  if (oi_attr(node, "value")) {
    const Onnx__TensorProto *t;
    st = oi_attr_tensor(im, "value", &t);
    if (st != CQ_OK) return st;
    int64_t numel;
    st = oi_tensor_check(im, t, "value", &numel);
    if (st != CQ_OK) return st;
    if (numel != 1) return oi_fail(im, CQ_EFORMAT, "attribute 'value' must hold one element");
    float f = 0.0f;
    int64_t iv = 0;
    if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
      st = oi_tensor_f32(im, t, "value", &f, 1);
    } else {
      st = oi_tensor_i64(im, t, "value", &iv, 1);
    }
    if (st != CQ_OK) return st;
    if (f != 0.0f || iv != 0) {
      return oi_fail(im, CQ_EUNSUPPORTED, "only ConstantOfShape with value 0 is supported (the "
                     "zero initial states of recurrent layers)");
    }
  }
  oi_value *y;
  st = oi_define_output(im, 0, OI_ZEROS, &y);
  if (st == CQ_OK) st = oi_set_sym(im, y, n, e, 0);
  return st;
}

/* ---- Gather, Unsqueeze, Squeeze, Concat, Slice: on shape vectors or activations ---- */

cq_status oi_conv_gather(oi_importer *im, const Onnx__NodeProto *node) {
  (void)node;
  oi_value *x;
  cq_status st = oi_input(im, 0, &x);
  if (st != CQ_OK) return st;
  if (!x) return oi_fail(im, CQ_EFORMAT, "input 0 is missing");
  const Onnx__TensorProto *it;
  st = oi_input_const(im, 1, &it);
  if (st != CQ_OK) return st;
  int64_t nidx;
  st = oi_tensor_check(im, it, "indices", &nidx);
  if (st != CQ_OK) return st;
  if (it->n_dims > 1 || nidx > OI_MAX_VEC) {
    return oi_fail(im, CQ_EUNSUPPORTED, "indices must be a scalar or a short vector");
  }
  int64_t idx[OI_MAX_VEC];
  st = oi_tensor_i64(im, it, "indices", idx, nidx);
  if (st != CQ_OK) return st;
  const int scalar_index = it->n_dims == 0;
  int64_t axis;
  st = oi_attr_int(im, "axis", 0, &axis);
  if (st != CQ_OK) return st;
  if (is_int_vector(x)) {
    oi_dim e[OI_MAX_VEC], r[OI_MAX_VEC];
    int n, scalar;
    st = oi_int_vector(im, x, "the data", e, OI_MAX_VEC, &n, &scalar);
    if (st != CQ_OK) return st;
    if (scalar || (axis != 0 && axis != -1)) {
      return oi_fail(im, CQ_EFORMAT, "gathering from a shape vector needs axis 0 of a 1-D input");
    }
    for (int64_t k = 0; k < nidx; k++) {
      int64_t j = idx[k] < 0 ? idx[k] + n : idx[k];
      if (j < 0 || j >= n) {
        return oi_fail(im, CQ_EFORMAT, "index %lld is out of range for %d entries",
                       (long long)idx[k], n);
      }
      r[k] = e[j];
    }
    return define_sym(im, (int)nidx, r, scalar_index);
  }
  if (x->kind != OI_ACT) {
    return oi_fail(im, CQ_EUNSUPPORTED, "gathering from a float constant is not supported");
  }
  int ax;
  st = oi_axis(im, axis, x->ndim, "axis", &ax);
  if (st != CQ_OK) return st;
  const oi_dim size = x->dims[ax];
  for (int64_t k = 0; k < nidx; k++) {
    if (size.sym == 0 && (idx[k] < -size.v || idx[k] >= size.v)) {
      return oi_fail(im, CQ_ESHAPE, "index %lld is out of range for dimension %d of size %lld",
                     (long long)idx[k], ax, (long long)size.v);
    }
  }
  oi_dim dims[CQ_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < x->ndim; d++) {
    if (d == ax) {
      if (!scalar_index) dims[nd++] = (oi_dim){nidx, 0};
    } else {
      dims[nd++] = x->dims[d];
    }
  }
  cq_module *m;
  st = oi_gather_module(&m, ax, nidx, idx, scalar_index);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  return oi_emit_unary(im, m, NULL, x, nd, dims, NULL);
}

/* Axes from the attribute (opset < 13) or input 1 (opset >= 13). */
static cq_status read_axes(oi_importer *im, int64_t *axes, int *naxes) {
  if (im->opset < 13) return oi_attr_ints(im, "axes", axes, CQ_MAX_DIMS, naxes);
  int present;
  return const_ints(im, 1, "axes", axes, CQ_MAX_DIMS, naxes, &present);
}

cq_status oi_conv_unsqueeze(oi_importer *im, const Onnx__NodeProto *node) {
  (void)node;
  oi_value *x;
  cq_status st = oi_input(im, 0, &x);
  if (st != CQ_OK) return st;
  if (!x) return oi_fail(im, CQ_EFORMAT, "input 0 is missing");
  int64_t axes[CQ_MAX_DIMS];
  int naxes;
  st = read_axes(im, axes, &naxes);
  if (st != CQ_OK) return st;
  if (naxes == 0) return oi_fail(im, CQ_EFORMAT, "no axes given");
  if (is_int_vector(x)) {
    oi_dim e[OI_MAX_VEC];
    int n, scalar;
    st = oi_int_vector(im, x, "the input", e, OI_MAX_VEC, &n, &scalar);
    if (st != CQ_OK) return st;
    if (!scalar || naxes != 1 || (axes[0] != 0 && axes[0] != -1)) {
      return oi_fail(im, CQ_EUNSUPPORTED, "only a scalar shape entry can be unsqueezed");
    }
    return define_sym(im, n, e, 0);
  }
  if (x->kind != OI_ACT) return oi_fail(im, CQ_EUNSUPPORTED, "unsqueezing a float constant");
  const int ndim = x->ndim + naxes;
  if (ndim > CQ_MAX_DIMS) return oi_fail(im, CQ_EUNSUPPORTED, "rank above %d", CQ_MAX_DIMS);
  int mark[CQ_MAX_DIMS] = {0}, iaxes[CQ_MAX_DIMS];
  for (int k = 0; k < naxes; k++) {
    int a;
    st = oi_axis(im, axes[k], ndim, "axis", &a);
    if (st != CQ_OK) return st;
    if (mark[a]) return oi_fail(im, CQ_EFORMAT, "axis %d repeated", a);
    mark[a] = 1;
    iaxes[k] = a;
  }
  oi_dim dims[CQ_MAX_DIMS];
  for (int d = 0, j = 0; d < ndim; d++) dims[d] = mark[d] ? (oi_dim){1, 0} : x->dims[j++];
  cq_module *m;
  st = cq_unsqueeze(&m, naxes, iaxes);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  return oi_emit_unary(im, m, NULL, x, ndim, dims, NULL);
}

cq_status oi_conv_squeeze(oi_importer *im, const Onnx__NodeProto *node) {
  (void)node;
  oi_value *x;
  cq_status st = oi_input(im, 0, &x);
  if (st != CQ_OK) return st;
  if (!x) return oi_fail(im, CQ_EFORMAT, "input 0 is missing");
  int64_t axes[CQ_MAX_DIMS];
  int naxes;
  st = read_axes(im, axes, &naxes);
  if (st != CQ_OK) return st;
  if (is_int_vector(x)) {
    oi_dim e[OI_MAX_VEC];
    int n, scalar;
    st = oi_int_vector(im, x, "the input", e, OI_MAX_VEC, &n, &scalar);
    if (st != CQ_OK) return st;
    if (scalar || n != 1) return oi_fail(im, CQ_EUNSUPPORTED, "only a 1-entry vector squeezes");
    return define_sym(im, 1, e, 1);
  }
  if (x->kind != OI_ACT) return oi_fail(im, CQ_EUNSUPPORTED, "squeezing a float constant");
  int mark[CQ_MAX_DIMS] = {0}, iaxes[CQ_MAX_DIMS];
  for (int k = 0; k < naxes; k++) {
    int a;
    st = oi_axis(im, axes[k], x->ndim, "axis", &a);
    if (st != CQ_OK) return st;
    if (x->dims[a].sym == 0 && x->dims[a].v != 1) {
      return oi_fail(im, CQ_ESHAPE, "axis %d has size %lld, not 1", a, (long long)x->dims[a].v);
    }
    mark[a] = 1;
    iaxes[k] = a;
  }
  if (naxes == 0) {
    for (int d = 0; d < x->ndim; d++) {
      if (x->dims[d].sym) {
        return oi_fail(im, CQ_EUNSUPPORTED, "Squeeze without axes on an input whose dimension %d "
                       "is dynamic", d);
      }
      mark[d] = x->dims[d].v == 1;
    }
  }
  oi_dim dims[CQ_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < x->ndim; d++) {
    if (!mark[d]) dims[nd++] = x->dims[d];
  }
  cq_module *m;
  st = cq_squeeze(&m, naxes, iaxes);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  return oi_emit_unary(im, m, NULL, x, nd, dims, NULL);
}

cq_status oi_conv_concat(oi_importer *im, const Onnx__NodeProto *node) {
  int64_t axis;
  cq_status st = oi_attr_int(im, "axis", 0, &axis);
  if (st != CQ_OK) return st;
  const int nin = (int)node->n_input;
  if (nin < 1) return oi_fail(im, CQ_EFORMAT, "no inputs");
  oi_value *ins[CQ_MAX_IO];
  int all_int = 1;
  for (int i = 0; i < nin; i++) {
    oi_value *v;
    st = oi_input(im, i, &v);
    if (st != CQ_OK) return st;
    if (!v) return oi_fail(im, CQ_EFORMAT, "input %d is missing", i);
    if (!is_int_vector(v)) all_int = 0;
    if (i < CQ_MAX_IO) ins[i] = v;
  }
  if (all_int) {
    oi_dim e[OI_MAX_VEC];
    int n = 0;
    for (int i = 0; i < nin; i++) {
      oi_value *v;
      (void)oi_input(im, i, &v);
      int k, scalar;
      st = oi_int_vector(im, v, "an input", e + n, OI_MAX_VEC - n, &k, &scalar);
      if (st != CQ_OK) return st;
      if (scalar) return oi_fail(im, CQ_EFORMAT, "input %d is a scalar", i);
      n += k;
    }
    return define_sym(im, n, e, 0);
  }
  if (nin > CQ_MAX_IO) return oi_fail(im, CQ_EUNSUPPORTED, "more than %d inputs", CQ_MAX_IO);
  const oi_value *x0 = ins[0];
  for (int i = 0; i < nin; i++) {
    if (ins[i]->kind != OI_ACT) {
      return oi_fail(im, CQ_EUNSUPPORTED, "input %d '%s': concatenating a constant with "
                     "activations is not supported", i, ins[i]->name);
    }
    if (ins[i]->ndim != x0->ndim) {
      return oi_fail(im, CQ_ESHAPE, "input %d has rank %d, input 0 rank %d", i, ins[i]->ndim,
                     x0->ndim);
    }
  }
  int ax;
  st = oi_axis(im, axis, x0->ndim, "axis", &ax);
  if (st != CQ_OK) return st;
  oi_dim dims[CQ_MAX_DIMS];
  for (int d = 0; d < x0->ndim; d++) dims[d] = x0->dims[d];
  for (int i = 1; i < nin; i++) {
    for (int d = 0; d < x0->ndim; d++) {
      const oi_dim a = dims[d], b = ins[i]->dims[d];
      if (d == ax) {
        dims[d] = (a.sym || b.sym) ? (oi_dim){-1, oi_new_sym(im)} : (oi_dim){a.v + b.v, 0};
      } else if (!a.sym && !b.sym && a.v != b.v) {
        return oi_fail(im, CQ_ESHAPE, "input %d has size %lld in dimension %d, input 0 %lld", i,
                       (long long)b.v, d, (long long)a.v);
      }
    }
  }
  cq_module *m;
  st = cq_cat(&m, ax);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  char name[128];
  oi_value *y;
  st = oi_define_output(im, 0, OI_ACT, &y);
  if (st == CQ_OK) st = oi_child_name(im, node, NULL, name, sizeof name);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  y->ndim = x0->ndim;
  memcpy(y->dims, dims, sizeof dims);
  return oi_emit(im, name, m, nin, ins, 1, &y);
}

cq_status oi_conv_slice(oi_importer *im, const Onnx__NodeProto *node) {
  (void)node;
  oi_value *x;
  cq_status st = oi_input(im, 0, &x);
  if (st != CQ_OK) return st;
  if (!x) return oi_fail(im, CQ_EFORMAT, "input 0 is missing");
  if (!is_int_vector(x)) {
    return oi_fail(im, CQ_EUNSUPPORTED, "Slice is supported on shape vectors only");
  }
  int64_t starts[4], ends[4], axes[4], steps[4];
  int ns, ne, na = 0, nst = 0, present;
  if (im->opset < 10) {
    return oi_fail(im, CQ_EUNSUPPORTED, "Slice before opset 10");
  }
  st = const_ints(im, 1, "starts", starts, 4, &ns, &present);
  if (st == CQ_OK) st = const_ints(im, 2, "ends", ends, 4, &ne, &present);
  if (st == CQ_OK) st = const_ints(im, 3, "axes", axes, 4, &na, &present);
  if (st == CQ_OK) st = const_ints(im, 4, "steps", steps, 4, &nst, &present);
  if (st != CQ_OK) return st;
  if (ns != 1 || ne != 1 || (na && (na != 1 || (axes[0] != 0 && axes[0] != -1))) ||
      (nst && (nst != 1 || steps[0] != 1))) {
    return oi_fail(im, CQ_EUNSUPPORTED, "only a unit-step slice along axis 0 of a shape vector");
  }
  oi_dim e[OI_MAX_VEC];
  int n = 0, scalar = 0;
  st = oi_int_vector(im, x, "the input", e, OI_MAX_VEC, &n, &scalar);
  if (st != CQ_OK) return st;
  int64_t b = starts[0] < 0 ? starts[0] + n : starts[0];
  int64_t en = ends[0] < 0 ? ends[0] + n : ends[0];
  b = b < 0 ? 0 : (b > n ? n : b);
  en = en < 0 ? 0 : (en > n ? n : en);
  if (en < b) en = b;
  return define_sym(im, (int)(en - b), e + b, 0);
}

/* ---- Reshape ---- */

cq_status oi_conv_reshape(oi_importer *im, const Onnx__NodeProto *node) {
  (void)node;
  oi_value *x, *s;
  cq_status st = oi_input_act(im, 0, &x);
  if (st == CQ_OK) st = oi_input(im, 1, &s);
  if (st != CQ_OK) return st;
  if (!s) return oi_fail(im, CQ_EFORMAT, "input 1 (the shape) is missing");
  int64_t allowzero;
  st = oi_attr_int(im, "allowzero", 0, &allowzero);
  if (st != CQ_OK) return st;
  oi_dim e[OI_MAX_VEC];
  int n = 0, scalar = 0;
  st = oi_int_vector(im, s, "the shape", e, CQ_MAX_DIMS, &n, &scalar);
  if (st != CQ_OK) return st;
  if (scalar) return oi_fail(im, CQ_EFORMAT, "the shape must be a 1-D vector");
  int64_t target[CQ_MAX_DIMS];
  oi_dim dims[CQ_MAX_DIMS];
  int unknown = -1;
  for (int i = 0; i < n; i++) {
    if (e[i].sym) {
      if (i < x->ndim && x->dims[i].sym == e[i].sym) {
        target[i] = 0;
        dims[i] = x->dims[i];
        continue;
      }
      if (unknown >= 0) {
        return oi_fail(im, CQ_EUNSUPPORTED, "the target shape has more than one size that is "
                       "not known when the model is loaded");
      }
      unknown = i;
      target[i] = -1;
      dims[i] = e[i];
      continue;
    }
    if (e[i].v == 0 && allowzero) {
      return oi_fail(im, CQ_EUNSUPPORTED, "allowzero=1 with a zero in the shape");
    }
    if (e[i].v == 0) {
      if (i >= x->ndim) {
        return oi_fail(im, CQ_ESHAPE, "shape entry %d is 0 (copy) but the input has rank %d", i,
                       x->ndim);
      }
      target[i] = 0;
      dims[i] = x->dims[i];
    } else if (e[i].v == -1) {
      if (unknown >= 0) return oi_fail(im, CQ_EFORMAT, "the shape has two -1 entries");
      unknown = i;
      target[i] = -1;
      dims[i] = (oi_dim){-1, 0};
    } else if (e[i].v < -1) {
      return oi_fail(im, CQ_EFORMAT, "shape entry %d is %lld", i, (long long)e[i].v);
    } else {
      target[i] = e[i].v;
      dims[i] = e[i];
    }
  }
  /* The size of the -1 entry, when every size is known. */
  if (unknown >= 0 && dims[unknown].sym == 0) {
    int64_t in = 1, rest = 1;
    int known = 1, overflow = 0;
    for (int d = 0; d < x->ndim; d++) {
      if (x->dims[d].sym) known = 0;
      else overflow |= __builtin_mul_overflow(in, x->dims[d].v, &in);
    }
    for (int d = 0; d < n; d++) {
      if (d == unknown) continue;
      if (dims[d].sym) known = 0;
      else overflow |= __builtin_mul_overflow(rest, dims[d].v, &rest);
    }
    if (overflow) {
      return oi_fail(im, CQ_ESHAPE, "the input or target shape has more than 2^63 elements");
    }
    if (known && rest > 0 && in % rest != 0) {
      return oi_fail(im, CQ_ESHAPE, "cannot reshape %lld elements into the target shape",
                     (long long)in);
    }
    dims[unknown] = known && rest > 0 ? (oi_dim){in / rest, 0} : (oi_dim){-1, oi_new_sym(im)};
  }
  cq_module *m;
  st = cq_reshape(&m, n, target);
  if (st != CQ_OK) return oi_fail(im, st, "%s", cq_last_error());
  return oi_emit_unary(im, m, NULL, x, n, dims, NULL);
}

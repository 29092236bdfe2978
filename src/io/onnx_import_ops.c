/* ONNX import: converters of the layer and activation ops to cquant modules, and the op table.
 *
 * Each converter reads its node's inputs and attributes (types checked), builds the module with
 * the file's weights copied straight into the module's parameters, and defines the node's outputs
 * with their shapes as far as they are known (a dynamic size stays a symbol). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "io/onnx_import.h"
#include "nn/layers.h"
#include "nn/module_impl.h"

/* ---- helpers ---- */

static int is_default_domain_node(const Onnx__NodeProto *n) {
  return !n->domain || !n->domain[0] || strcmp(n->domain, "ai.onnx") == 0;
}

static cq_status fail_ctor(oi_importer *im, cq_status st) {
  return oi_fail(im, st, "%s", cq_last_error());
}

/* Copies a float initializer into the module's parameter `pname` (same element count). */
static cq_status load_param(oi_importer *im, cq_module *m, const char *pname,
                            const Onnx__TensorProto *t, const char *role) {
  cq_named_tensor *nt = cq_module_own_tensor(m, pname);
  if (!nt) return oi_fail(im, CQ_ESTATE, "module has no %s", pname);
  return oi_tensor_f32(im, t, role, nt->tensor->data, cq_tensor_numel(nt->tensor));
}

/* Output size of a convolution / pooling window along one axis (ATen's rule); symbols stay
 * symbols. */
static oi_dim window_out(oi_importer *im, oi_dim in, int64_t k, int64_t pad, int64_t stride,
                         int64_t dil, int ceil_mode) {
  if (in.sym) return (oi_dim){-1, oi_new_sym(im)};
  int64_t num = in.v + 2 * pad - dil * (k - 1) - 1 + (ceil_mode ? stride - 1 : 0);
  int64_t out = (num >= 0 ? num / stride : -((-num + stride - 1) / stride)) + 1;
  if (ceil_mode && (out - 1) * stride >= in.v + pad) out--;
  return (oi_dim){out, 0};
}

/* pads [b0, b1, ..., e0, e1, ...] must be symmetric; writes the per-axis padding. */
static cq_status symmetric_pads(oi_importer *im, int spatial, int64_t *pad) {
  int64_t pads[2 * CQ_MAX_DIMS];
  int np;
  char autopad[32];
  cq_status st = oi_attr_string(im, "auto_pad", "NOTSET", autopad, sizeof autopad);
  if (st != CQ_OK) return st;
  if (strcmp(autopad, "NOTSET") != 0 && strcmp(autopad, "VALID") != 0) {
    return oi_fail(im, CQ_EUNSUPPORTED, "auto_pad %s is not supported (NOTSET or VALID)", autopad);
  }
  st = oi_attr_ints(im, "pads", pads, 2 * CQ_MAX_DIMS, &np);
  if (st != CQ_OK) return st;
  for (int d = 0; d < spatial; d++) pad[d] = 0;
  if (np == 0 || strcmp(autopad, "VALID") == 0) return CQ_OK;
  if (np != 2 * spatial) {
    return oi_fail(im, CQ_EFORMAT, "pads has %d entries, expected %d", np, 2 * spatial);
  }
  for (int d = 0; d < spatial; d++) {
    if (pads[d] != pads[d + spatial]) {
      return oi_fail(im, CQ_EUNSUPPORTED, "asymmetric padding (%lld before, %lld after along "
                     "axis %d) is not supported", (long long)pads[d],
                     (long long)pads[d + spatial], d);
    }
    if (pads[d] < 0) return oi_fail(im, CQ_EFORMAT, "negative padding");
    pad[d] = pads[d];
  }
  return CQ_OK;
}

/* An ints attribute of `spatial` entries (or absent: all `dflt`). */
static cq_status spatial_ints(oi_importer *im, const char *name, int spatial, int64_t dflt,
                              int64_t *out) {
  int64_t v[CQ_MAX_DIMS];
  int n;
  cq_status st = oi_attr_ints(im, name, v, CQ_MAX_DIMS, &n);
  if (st != CQ_OK) return st;
  if (n == 0) {
    for (int d = 0; d < spatial; d++) out[d] = dflt;
    return CQ_OK;
  }
  if (n != spatial) {
    return oi_fail(im, CQ_EFORMAT, "attribute '%s' has %d entries, expected %d", name, n, spatial);
  }
  for (int d = 0; d < spatial; d++) {
    if (v[d] < 1) return oi_fail(im, CQ_EFORMAT, "attribute '%s' entry %d is %lld", name, d,
                                 (long long)v[d]);
    out[d] = v[d];
  }
  return CQ_OK;
}

static cq_status simple(oi_importer *im, cq_status ctor_status, cq_module *m) {
  if (ctor_status != CQ_OK) return fail_ctor(im, ctor_status);
  oi_value *x;
  cq_status st = oi_input_act(im, 0, &x);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  return oi_emit_unary(im, m, NULL, x, x->ndim, x->dims, NULL);
}

/* ---- convolution ---- */

cq_status oi_conv_attrs(oi_importer *im, const Onnx__NodeProto *node, const oi_value *x,
                        const Onnx__TensorProto *w, oi_conv_geometry *geo) {
  memset(geo, 0, sizeof *geo);
  const Onnx__TensorProto *b = NULL;
  cq_status st = CQ_OK;
  if (node->n_input > 2 && node->input[2][0]) st = oi_input_const(im, 2, &b);
  if (st != CQ_OK) return st;
  int64_t wn;
  st = oi_tensor_check(im, w, "weight", &wn);
  if (st != CQ_OK) return st;
  const int spatial = (int)w->n_dims - 2;
  if (spatial != 1 && spatial != 2) {
    return oi_fail(im, CQ_EUNSUPPORTED, "weight '%.80s' has %zu dimensions; Conv1d (3) and "
                   "Conv2d (4) are supported", w->name, w->n_dims);
  }
  if (x->ndim != spatial + 2) {
    return oi_fail(im, CQ_ESHAPE, "input has rank %d, the %d-D weight needs %d", x->ndim,
                   (int)w->n_dims, spatial + 2);
  }
  int64_t group, kshape[2], stride[2], dil[2], pad[2];
  int nk;
  int64_t kattr[CQ_MAX_DIMS];
  st = oi_attr_int(im, "group", 1, &group);
  if (st == CQ_OK) st = oi_attr_ints(im, "kernel_shape", kattr, CQ_MAX_DIMS, &nk);
  if (st == CQ_OK) st = spatial_ints(im, "strides", spatial, 1, stride);
  if (st == CQ_OK) st = spatial_ints(im, "dilations", spatial, 1, dil);
  if (st == CQ_OK) st = symmetric_pads(im, spatial, pad);
  if (st != CQ_OK) return st;
  for (int d = 0; d < spatial; d++) {
    kshape[d] = w->dims[2 + d];
    if (nk && (nk != spatial || kattr[d] != kshape[d])) {
      return oi_fail(im, CQ_ESHAPE, "kernel_shape does not match weight '%.80s'", w->name);
    }
  }
  if (group < 1 || w->dims[0] % group != 0) {
    return oi_fail(im, CQ_EFORMAT, "group %lld does not divide the %lld output channels",
                   (long long)group, (long long)w->dims[0]);
  }
  const int64_t cin = w->dims[1] * group, cout = w->dims[0];
  if (!x->dims[1].sym && x->dims[1].v != cin) {
    return oi_fail(im, CQ_ESHAPE, "input has %lld channels, weight '%.80s' expects %lld",
                   (long long)x->dims[1].v, w->name, (long long)cin);
  }
  if (b && !(b->n_dims == 1 && b->dims[0] == cout)) {
    return oi_fail(im, CQ_ESHAPE, "bias '%.80s' must have shape [%lld]", b->name,
                   (long long)cout);
  }
  cq_conv_options o = cq_conv_defaults(cin, cout, kshape[0], spatial == 2 ? kshape[1] : 1);
  o.groups = group;
  o.bias = b != NULL;
  for (int d = 0; d < spatial; d++) {
    o.stride[d] = stride[d];
    o.padding[d] = pad[d];
    o.dilation[d] = dil[d];
  }
  geo->options = o;
  geo->bias = b;
  geo->ndim = spatial + 2;
  geo->dims[0] = x->dims[0];
  geo->dims[1] = (oi_dim){cout, 0};
  for (int d = 0; d < spatial; d++) {
    geo->dims[2 + d] = window_out(im, x->dims[2 + d], kshape[d], pad[d], stride[d], dil[d], 0);
    if (!geo->dims[2 + d].sym && geo->dims[2 + d].v < 1) {
      return oi_fail(im, CQ_ESHAPE, "the input is smaller than the kernel");
    }
  }
  return CQ_OK;
}

static cq_status conv(oi_importer *im, const Onnx__NodeProto *node) {
  oi_value *x;
  const Onnx__TensorProto *w;
  cq_status st = oi_input_act(im, 0, &x);
  if (st == CQ_OK) st = oi_input_const(im, 1, &w);
  if (st != CQ_OK) return st;
  oi_conv_geometry geo;
  st = oi_conv_attrs(im, node, x, w, &geo);
  if (st != CQ_OK) return st;
  cq_module *m;
  st = geo.ndim == 4 ? cq_conv2d(&m, &geo.options) : cq_conv1d(&m, &geo.options);
  if (st != CQ_OK) return fail_ctor(im, st);
  st = load_param(im, m, "weight", w, "weight");
  if (st == CQ_OK && geo.bias) st = load_param(im, m, "bias", geo.bias, "bias");
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  return oi_emit_unary(im, m, w->name, x, geo.ndim, geo.dims, NULL);
}

static cq_status conv_transpose(oi_importer *im, const Onnx__NodeProto *node) {
  oi_value *x;
  const Onnx__TensorProto *w, *b = NULL;
  cq_status st = oi_input_act(im, 0, &x);
  if (st == CQ_OK) st = oi_input_const(im, 1, &w);
  if (st == CQ_OK && node->n_input > 2 && node->input[2][0]) st = oi_input_const(im, 2, &b);
  if (st != CQ_OK) return st;
  int64_t wn;
  st = oi_tensor_check(im, w, "weight", &wn);
  if (st != CQ_OK) return st;
  if (w->n_dims != 4 || x->ndim != 4) {
    return oi_fail(im, CQ_EUNSUPPORTED, "only 2-D ConvTranspose is supported");
  }
  if (oi_attr(node, "output_shape")) {
    return oi_fail(im, CQ_EUNSUPPORTED, "attribute output_shape is not supported");
  }
  int64_t group, stride[2], dil[2], pad[2], opad[2] = {0, 0}, ov[CQ_MAX_DIMS];
  int nop;
  st = oi_attr_int(im, "group", 1, &group);
  if (st == CQ_OK) st = spatial_ints(im, "strides", 2, 1, stride);
  if (st == CQ_OK) st = spatial_ints(im, "dilations", 2, 1, dil);
  if (st == CQ_OK) st = symmetric_pads(im, 2, pad);
  if (st == CQ_OK) st = oi_attr_ints(im, "output_padding", ov, CQ_MAX_DIMS, &nop);
  if (st != CQ_OK) return st;
  if (nop == 2) {
    opad[0] = ov[0];
    opad[1] = ov[1];
  } else if (nop != 0) {
    return oi_fail(im, CQ_EFORMAT, "output_padding needs 2 entries");
  }
  if (group < 1 || w->dims[0] % group != 0) {
    return oi_fail(im, CQ_EFORMAT, "group %lld does not divide the %lld input channels",
                   (long long)group, (long long)w->dims[0]);
  }
  const int64_t cin = w->dims[0], cout = w->dims[1] * group;
  if (!x->dims[1].sym && x->dims[1].v != cin) {
    return oi_fail(im, CQ_ESHAPE, "input has %lld channels, weight '%s' expects %lld",
                   (long long)x->dims[1].v, w->name, (long long)cin);
  }
  if (b && !(b->n_dims == 1 && b->dims[0] == cout)) {
    return oi_fail(im, CQ_ESHAPE, "bias '%s' must have shape [%lld]", b->name, (long long)cout);
  }
  cq_conv_transpose_options o = cq_conv_transpose_defaults(cin, cout, w->dims[2], w->dims[3]);
  o.groups = group;
  o.bias = b != NULL;
  for (int d = 0; d < 2; d++) {
    o.stride[d] = stride[d];
    o.padding[d] = pad[d];
    o.dilation[d] = dil[d];
    o.output_padding[d] = opad[d];
  }
  cq_module *m;
  st = cq_conv_transpose2d(&m, &o);
  if (st != CQ_OK) return fail_ctor(im, st);
  st = load_param(im, m, "weight", w, "weight");
  if (st == CQ_OK && b) st = load_param(im, m, "bias", b, "bias");
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  oi_dim dims[4] = {x->dims[0], {cout, 0}};
  for (int d = 0; d < 2; d++) {
    const oi_dim in = x->dims[2 + d];
    dims[2 + d] = in.sym ? (oi_dim){-1, oi_new_sym(im)}
                         : (oi_dim){(in.v - 1) * stride[d] - 2 * pad[d] +
                                        dil[d] * (w->dims[2 + d] - 1) + opad[d] + 1, 0};
  }
  return oi_emit_unary(im, m, w->name, x, 4, dims, NULL);
}

/* ---- Gemm / MatMul -> Linear ---- */

/* Builds Linear(in, out) from weight rows (w_t: the file stores [in, out]), scaled by alpha, and
 * bias (numel out or 1) scaled by beta. */
static cq_status make_linear(oi_importer *im, const Onnx__TensorProto *w, int w_t, float alpha,
                             const Onnx__TensorProto *b, float beta, cq_module **out) {
  *out = NULL;
  const int64_t in = w_t ? w->dims[0] : w->dims[1], outf = w_t ? w->dims[1] : w->dims[0];
  int64_t bn = 0;
  if (b) {
    cq_status st = oi_tensor_check(im, b, "bias", &bn);
    if (st != CQ_OK) return st;
    if (bn != outf && bn != 1) {
      return oi_fail(im, CQ_ESHAPE, "bias '%s' has %lld elements, expected %lld (or 1)", b->name,
                     (long long)bn, (long long)outf);
    }
  }
  cq_module *m;
  cq_status st = cq_linear(&m, in, outf, b != NULL);
  if (st != CQ_OK) return fail_ctor(im, st);
  float *wd = cq_module_own_tensor(m, "weight")->tensor->data;
  if (!w_t) {
    st = oi_tensor_f32(im, w, "weight", wd, in * outf);
  } else {
    float *tmp = cq_malloc_for(sizeof *tmp * (size_t)(in * outf > 0 ? in * outf : 1), "weight");
    st = tmp ? oi_tensor_f32(im, w, "weight", tmp, in * outf) : CQ_ENOMEM;
    if (st == CQ_OK) {
      for (int64_t i = 0; i < in; i++) {
        for (int64_t o = 0; o < outf; o++) wd[o * in + i] = tmp[i * outf + o];
      }
    }
    cq_free(tmp);
  }
  if (st == CQ_OK && alpha != 1.0f) {
    for (int64_t i = 0; i < in * outf; i++) wd[i] *= alpha;
  }
  if (st == CQ_OK && b) {
    float *bd = cq_module_own_tensor(m, "bias")->tensor->data;
    if (bn == outf) {
      st = oi_tensor_f32(im, b, "bias", bd, outf);
    } else {
      st = oi_tensor_f32(im, b, "bias", bd, 1);
      for (int64_t o = 1; o < outf && st == CQ_OK; o++) bd[o] = bd[0];
    }
    if (beta != 1.0f) {
      for (int64_t o = 0; o < outf; o++) bd[o] *= beta;
    }
  }
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

static cq_status gemm(oi_importer *im, const Onnx__NodeProto *node) {
  oi_value *x;
  const Onnx__TensorProto *w, *c = NULL;
  cq_status st = oi_input_act(im, 0, &x);
  if (st == CQ_OK) st = oi_input_const(im, 1, &w);
  if (st == CQ_OK && node->n_input > 2 && node->input[2][0]) st = oi_input_const(im, 2, &c);
  if (st != CQ_OK) return st;
  int64_t ta, tb;
  float alpha, beta;
  st = oi_attr_int(im, "transA", 0, &ta);
  if (st == CQ_OK) st = oi_attr_int(im, "transB", 0, &tb);
  if (st == CQ_OK) st = oi_attr_float(im, "alpha", 1.0f, &alpha);
  if (st == CQ_OK) st = oi_attr_float(im, "beta", 1.0f, &beta);
  if (st != CQ_OK) return st;
  if (ta) return oi_fail(im, CQ_EUNSUPPORTED, "transA=1 is not supported");
  if (x->ndim != 2) return oi_fail(im, CQ_ESHAPE, "input A has rank %d, Gemm needs 2", x->ndim);
  int64_t wn;
  st = oi_tensor_check(im, w, "weight", &wn);
  if (st != CQ_OK) return st;
  if (w->n_dims != 2) {
    return oi_fail(im, CQ_ESHAPE, "weight '%s' has %zu dimensions, expected 2", w->name, w->n_dims);
  }
  const int64_t in = tb ? w->dims[1] : w->dims[0], outf = tb ? w->dims[0] : w->dims[1];
  if (!x->dims[1].sym && x->dims[1].v != in) {
    return oi_fail(im, CQ_ESHAPE, "input has %lld features, weight '%s' expects %lld",
                   (long long)x->dims[1].v, w->name, (long long)in);
  }
  cq_module *m;
  st = make_linear(im, w, !tb, alpha, c, beta, &m);
  if (st != CQ_OK) return st;
  oi_dim dims[2] = {x->dims[0], {outf, 0}};
  return oi_emit_unary(im, m, w->name, x, 2, dims, NULL);
}

/* The node that alone reads value v (and is not yet converted), or NULL. */
static const Onnx__NodeProto *single_consumer(oi_importer *im, const oi_value *v, size_t *index) {
  const int k = (int)(v - im->values);
  if (im->uses[k] != 1 || im->first_reader[k] < 0) return NULL;
  *index = (size_t)im->first_reader[k];
  return im->graph->node[*index];
}

static cq_status matmul(oi_importer *im, const Onnx__NodeProto *node) {
  oi_value *a, *b;
  cq_status st = oi_input_act(im, 0, &a);
  if (st == CQ_OK) st = oi_input(im, 1, &b);
  if (st != CQ_OK) return st;
  if (!b) return oi_fail(im, CQ_EFORMAT, "input 1 is missing");
  if (b->kind == OI_ACT) {
    /* two activations: torch.matmul */
    cq_module *m;
    st = cq_matmul(&m);
    if (st != CQ_OK) return fail_ctor(im, st);
    oi_value *y;
    char name[128];
    st = oi_define_output(im, 0, OI_ACT, &y);
    if (st == CQ_OK) st = oi_child_name(im, node, NULL, name, sizeof name);
    if (st != CQ_OK) {
      cq_module_free(m);
      return st;
    }
    /* the output shape: broadcast batch dims, then [.., M, N] */
    const int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
    y->ndim = nd;
    for (int d = 0; d < nd; d++) y->dims[d] = (oi_dim){-1, oi_new_sym(im)};
    if (a->ndim >= 2 && b->ndim >= 2) {
      y->dims[nd - 2] = a->dims[a->ndim - 2];
      y->dims[nd - 1] = b->dims[b->ndim - 1];
    }
    oi_value *ins[2] = {a, b};
    return oi_emit(im, name, m, 2, ins, 1, &y);
  }
  if (b->kind != OI_CONST) return oi_fail(im, CQ_EUNSUPPORTED, "input 1 must be a tensor");
  const Onnx__TensorProto *w = b->tensor;
  int64_t wn;
  st = oi_tensor_check(im, w, "weight", &wn);
  if (st != CQ_OK) return st;
  if (w->n_dims != 2) {
    return oi_fail(im, CQ_EUNSUPPORTED, "constant operand '%s' has %zu dimensions; only a 2-D "
                   "weight becomes a Linear", w->name, w->n_dims);
  }
  if (a->ndim < 1 || (!a->dims[a->ndim - 1].sym && a->dims[a->ndim - 1].v != w->dims[0])) {
    return oi_fail(im, CQ_ESHAPE, "input's last dimension does not match weight '%s' [%lld, %lld]",
                   w->name, (long long)w->dims[0], (long long)w->dims[1]);
  }
  /* MatMul followed by Add of a constant [out] vector: one Linear with bias (nn.Linear on >2-D
   * input as torch exports it). */
  oi_value *y;
  st = oi_define_output(im, 0, OI_ACT, &y);
  if (st != CQ_OK) return st;
  size_t add_index = 0;
  const Onnx__NodeProto *add = single_consumer(im, y, &add_index);
  const Onnx__TensorProto *bias = NULL;
  if (add && add->op_type && strcmp(add->op_type, "Add") == 0 && add->n_input == 2 &&
      is_default_domain_node(add)) {
    const char *other = strcmp(add->input[0], y->name) == 0 ? add->input[1] : add->input[0];
    int k = oi_find(im, other);
    if (k >= 0 && im->values[k].kind == OI_CONST) {
      const Onnx__TensorProto *t = im->values[k].tensor;
      int64_t n;
      if (t->data_type == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT &&
          oi_tensor_check(im, t, "bias", &n) == CQ_OK && n == w->dims[1] &&
          t->n_dims == 1) {
        bias = t;
      }
    }
  }
  cq_module *m;
  st = make_linear(im, w, 1, 1.0f, bias, 1.0f, &m);
  if (st != CQ_OK) return st;
  oi_value *out = y;
  if (bias) {
    /* the Add's output is what the Linear defines; the MatMul's own output stays unused */
    y->kind = OI_UNDEFINED;
    int k = oi_find(im, add->output[0]);
    if (k < 0) {
      cq_module_free(m);
      return oi_fail(im, CQ_EFORMAT, "the Add after it has no output");
    }
    out = &im->values[k];
    im->done[add_index] = 1;
  }
  out->kind = OI_ACT;
  out->ndim = a->ndim;
  for (int d = 0; d < a->ndim; d++) out->dims[d] = a->dims[d];
  out->dims[a->ndim - 1] = (oi_dim){w->dims[1], 0};
  char name[128];
  st = oi_child_name(im, node, w->name, name, sizeof name);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  return oi_emit(im, name, m, 1, &a, 1, &out);
}

/* ---- elementwise binary ops ---- */

/* numpy broadcasting of x's dims with a constant's shape into out; fails when they clash. */
static cq_status broadcast_dims(oi_importer *im, const oi_value *x, const Onnx__TensorProto *c,
                                oi_dim *out, int *nd) {
  const int n = x->ndim > (int)c->n_dims ? x->ndim : (int)c->n_dims;
  if (n > CQ_MAX_DIMS) return oi_fail(im, CQ_EUNSUPPORTED, "rank above %d", CQ_MAX_DIMS);
  for (int d = 0; d < n; d++) {
    const int xi = d - (n - x->ndim), ci = d - (n - (int)c->n_dims);
    oi_dim a = xi >= 0 ? x->dims[xi] : (oi_dim){1, 0};
    int64_t b = ci >= 0 ? c->dims[ci] : 1;
    if (b == 1) {
      out[d] = a;
    } else if (!a.sym && a.v == 1) {
      out[d] = (oi_dim){b, 0};
    } else if (!a.sym && a.v != b) {
      return oi_fail(im, CQ_ESHAPE, "constant '%s' does not broadcast with the input (dimension "
                     "%d: %lld vs %lld)", c->name, d, (long long)a.v, (long long)b);
    } else {
      out[d] = a.sym ? (oi_dim){b, 0} : a;
    }
  }
  *nd = n;
  return CQ_OK;
}

static cq_status binary(oi_importer *im, const Onnx__NodeProto *node, cq_binary_op op) {
  oi_value *a, *b;
  cq_status st = oi_input(im, 0, &a);
  if (st == CQ_OK) st = oi_input(im, 1, &b);
  if (st != CQ_OK) return st;
  if (!a || !b) return oi_fail(im, CQ_EFORMAT, "needs two inputs");
  if (a->kind == OI_ACT && b->kind == OI_ACT) {
    int same = a->ndim == b->ndim;
    for (int d = 0; same && d < a->ndim; d++) {
      const oi_dim p = a->dims[d], q = b->dims[d];
      if (p.sym != q.sym || (!p.sym && p.v != q.v)) same = 0;
      if (p.sym && q.sym && p.sym != q.sym) same = 0;
    }
    /* numpy broadcasting, checked where both sizes are known */
    for (int k = 1; k <= a->ndim && k <= b->ndim; k++) {
      const oi_dim p = a->dims[a->ndim - k], q = b->dims[b->ndim - k];
      if (!p.sym && !q.sym && p.v != q.v && p.v != 1 && q.v != 1) {
        return oi_fail(im, CQ_ESHAPE, "the operands cannot broadcast (sizes %lld and %lld at "
                       "dimension %d from the end)", (long long)p.v, (long long)q.v, k);
      }
    }
    /* Add of one shape and Mul: the quantizable FloatFunctional forms; Sub, Div and a
     * broadcasting Add: the float binary op */
    cq_module *m;
    if (op == CQ_BINARY_MUL || (op == CQ_BINARY_ADD && same)) {
      st = op == CQ_BINARY_ADD ? cq_add(&m) : cq_mul(&m);
    } else {
      st = cq_binary(&m, op);
    }
    if (st != CQ_OK) return fail_ctor(im, st);
    oi_value *y;
    char name[128];
    st = oi_define_output(im, 0, OI_ACT, &y);
    if (st == CQ_OK) st = oi_child_name(im, node, NULL, name, sizeof name);
    if (st != CQ_OK) {
      cq_module_free(m);
      return st;
    }
    y->ndim = a->ndim;
    memcpy(y->dims, a->dims, sizeof a->dims);
    if (!same) {
      const int nd = a->ndim > b->ndim ? a->ndim : b->ndim;
      y->ndim = nd;
      for (int d = 0; d < nd; d++) y->dims[d] = (oi_dim){-1, oi_new_sym(im)};
    }
    oi_value *ins[2] = {a, b};
    return oi_emit(im, name, m, 2, ins, 1, &y);
  }
  const int const_first = a->kind == OI_CONST;
  oi_value *x = const_first ? b : a, *c = const_first ? a : b;
  if (x->kind != OI_ACT || c->kind != OI_CONST) {
    return oi_fail(im, CQ_EUNSUPPORTED, "needs a computed tensor and a constant");
  }
  oi_dim dims[CQ_MAX_DIMS];
  int nd = 0;
  st = broadcast_dims(im, x, c->tensor, dims, &nd);
  if (st != CQ_OK) return st;
  cq_tensor *t;
  st = oi_tensor_to_cq(im, c->tensor, "constant", &t);
  if (st != CQ_OK) return st;
  if (t->dtype != CQ_F32) {
    cq_tensor_free(t);
    return oi_fail(im, CQ_EUNSUPPORTED, "constant '%s' is not float", c->name);
  }
  cq_module *m;
  st = cq_binary_const(&m, op, t, const_first);
  cq_tensor_free(t);
  if (st != CQ_OK) return fail_ctor(im, st);
  return oi_emit_unary(im, m, NULL, x, nd, dims, NULL);
}

static cq_status add(oi_importer *im, const Onnx__NodeProto *n) { return binary(im, n, CQ_BINARY_ADD); }
static cq_status sub(oi_importer *im, const Onnx__NodeProto *n) { return binary(im, n, CQ_BINARY_SUB); }
static cq_status mul(oi_importer *im, const Onnx__NodeProto *n) { return binary(im, n, CQ_BINARY_MUL); }
static cq_status div_(oi_importer *im, const Onnx__NodeProto *n) { return binary(im, n, CQ_BINARY_DIV); }

/* ---- activations ---- */

/* Ops without attributes that keep their input's shape: one module from its constructor. */
#define SHAPE_KEEPING_OP(fn, ctor)                                 \
  static cq_status fn(oi_importer *im, const Onnx__NodeProto *n) { \
    (void)n;                                                       \
    cq_module *m = NULL;                                           \
    cq_status st = ctor(&m);                                       \
    return simple(im, st, m);                                      \
  }

SHAPE_KEEPING_OP(relu, cq_relu)
SHAPE_KEEPING_OP(sigmoid, cq_sigmoid)
SHAPE_KEEPING_OP(tanh_, cq_tanh)
SHAPE_KEEPING_OP(hardswish, cq_hardswish)
SHAPE_KEEPING_OP(identity, cq_identity)

/* Dropout in inference is the identity; a mask output or training_mode=1 is not supported. */
static cq_status dropout(oi_importer *im, const Onnx__NodeProto *node) {
  if (node->n_output > 1 && node->output[1][0] && im->uses[oi_find(im, node->output[1])] > 0) {
    return oi_fail(im, CQ_EUNSUPPORTED, "the mask output is not supported");
  }
  oi_value *t;
  cq_status st = oi_input(im, 2, &t);
  if (st != CQ_OK) return st;
  if (t) {
    int64_t mode = 1;
    if (t->kind != OI_CONST || oi_tensor_i64(im, t->tensor, "training_mode", &mode, 1) != CQ_OK ||
        mode != 0) {
      return oi_fail(im, CQ_EUNSUPPORTED, "training_mode must be a constant false");
    }
  }
  return identity(im, node);
}

static cq_status leaky_relu(oi_importer *im, const Onnx__NodeProto *n) {
  (void)n;
  float alpha;
  cq_status st = oi_attr_float(im, "alpha", 0.01f, &alpha);
  if (st != CQ_OK) return st;
  cq_module *m = NULL;
  st = cq_leaky_relu(&m, alpha);
  return simple(im, st, m);
}

static cq_status hardsigmoid(oi_importer *im, const Onnx__NodeProto *n) {
  (void)n;
  float alpha, beta;
  cq_status st = oi_attr_float(im, "alpha", 0.2f, &alpha);
  if (st == CQ_OK) st = oi_attr_float(im, "beta", 0.5f, &beta);
  if (st != CQ_OK) return st;
  if (fabsf(alpha - 1.0f / 6.0f) > 1e-6f || beta != 0.5f) {
    return oi_fail(im, CQ_EUNSUPPORTED, "HardSigmoid(alpha=%g, beta=%g): only alpha=1/6, beta=0.5 "
                   "(torch's Hardsigmoid) is supported", (double)alpha, (double)beta);
  }
  cq_module *m = NULL;
  st = cq_hardsigmoid(&m);
  return simple(im, st, m);
}

/* A Clip bound: input i (opset >= 11) or attribute (opset < 11); *present = 0 when absent. */
static cq_status clip_bound(oi_importer *im, int i, const char *attr, float *v, int *present) {
  *present = 0;
  if (im->opset < 11) {
    if (!oi_attr(im->node, attr)) return CQ_OK;
    *present = 1;
    return oi_attr_float(im, attr, 0.0f, v);
  }
  oi_value *b;
  cq_status st = oi_input(im, i, &b);
  if (st != CQ_OK || !b) return st;
  if (b->kind != OI_CONST) {
    return oi_fail(im, CQ_EUNSUPPORTED, "the %s bound must be a constant", attr);
  }
  *present = 1;
  st = oi_tensor_f32(im, b->tensor, attr, v, 1);
  return st;
}

static cq_status clip(oi_importer *im, const Onnx__NodeProto *n) {
  (void)n;
  float lo = 0.0f, hi = 0.0f;
  int has_lo, has_hi;
  cq_status st = clip_bound(im, 1, "min", &lo, &has_lo);
  if (st == CQ_OK) st = clip_bound(im, 2, "max", &hi, &has_hi);
  if (st != CQ_OK) return st;
  cq_module *m = NULL;
  if (has_lo && lo == 0.0f && has_hi && hi == 6.0f) {
    st = cq_relu6(&m);
  } else if (has_lo && lo == 0.0f && !has_hi) {
    st = cq_relu(&m);
  } else {
    if (has_lo && has_hi && lo > hi) {
      return oi_fail(im, CQ_EVALUE, "min %g is above max %g", (double)lo, (double)hi);
    }
    st = cq_hardtanh(&m, has_lo ? lo : -INFINITY, has_hi ? hi : INFINITY);
  }
  return simple(im, st, m);
}

static cq_status softmax(oi_importer *im, const Onnx__NodeProto *n) {
  (void)n;
  oi_value *x;
  cq_status st = oi_input_act(im, 0, &x);
  if (st != CQ_OK) return st;
  int64_t axis;
  st = oi_attr_int(im, "axis", im->opset >= 13 ? -1 : 1, &axis);
  if (st != CQ_OK) return st;
  int ax;
  st = oi_axis(im, axis, x->ndim, "axis", &ax);
  if (st != CQ_OK) return st;
  /* before opset 13 Softmax flattens to 2-D at `axis`: the same as softmax over one dimension
   * only when that is the last */
  if (im->opset < 13 && ax != x->ndim - 1) {
    return oi_fail(im, CQ_EUNSUPPORTED, "opset %lld Softmax over axis %d of a rank-%d input "
                   "(flattened semantics) is supported for the last axis only",
                   (long long)im->opset, ax, x->ndim);
  }
  cq_module *m;
  st = cq_softmax(&m, ax);
  if (st != CQ_OK) return fail_ctor(im, st);
  return oi_emit_unary(im, m, NULL, x, x->ndim, x->dims, NULL);
}

/* ---- pooling, flatten, transpose, batch norm ---- */

static cq_status pool(oi_importer *im, const Onnx__NodeProto *node, int avg) {
  oi_value *x;
  cq_status st = oi_input_act(im, 0, &x);
  if (st != CQ_OK) return st;
  if (x->ndim != 4) {
    return oi_fail(im, CQ_EUNSUPPORTED, "only 2-D pooling ([N, C, H, W] input) is supported, the "
                   "input has rank %d", x->ndim);
  }
  if (node->n_output > 1 && node->output[1][0] && im->uses[oi_find(im, node->output[1])] > 0) {
    return oi_fail(im, CQ_EUNSUPPORTED, "the Indices output is not supported");
  }
  int64_t k[CQ_MAX_DIMS], stride[2], pad[2], dil[2] = {1, 1}, ceil_mode, cip = 0;
  int nk;
  st = oi_attr_ints(im, "kernel_shape", k, CQ_MAX_DIMS, &nk);
  if (st != CQ_OK) return st;
  if (nk != 2) return oi_fail(im, CQ_EFORMAT, "kernel_shape must have 2 entries");
  st = spatial_ints(im, "strides", 2, 1, stride);
  if (st == CQ_OK && !avg) st = spatial_ints(im, "dilations", 2, 1, dil);
  if (st == CQ_OK) st = symmetric_pads(im, 2, pad);
  if (st == CQ_OK) st = oi_attr_int(im, "ceil_mode", 0, &ceil_mode);
  if (st == CQ_OK && avg) st = oi_attr_int(im, "count_include_pad", 0, &cip);
  if (st != CQ_OK) return st;
  if (k[0] < 1 || k[1] < 1) return oi_fail(im, CQ_EFORMAT, "kernel_shape entries must be >= 1");
  cq_pool_options o = cq_pool_defaults(k[0], k[1]);
  for (int d = 0; d < 2; d++) {
    o.stride[d] = stride[d];
    o.padding[d] = pad[d];
    o.dilation[d] = dil[d];
  }
  o.ceil_mode = ceil_mode != 0;
  o.count_include_pad = cip != 0;
  cq_module *m;
  st = avg ? cq_avgpool2d(&m, &o) : cq_maxpool2d(&m, &o);
  if (st != CQ_OK) return fail_ctor(im, st);
  oi_dim dims[4] = {x->dims[0], x->dims[1]};
  for (int d = 0; d < 2; d++) {
    dims[2 + d] = window_out(im, x->dims[2 + d], k[d], pad[d], stride[d], dil[d], o.ceil_mode);
  }
  return oi_emit_unary(im, m, NULL, x, 4, dims, NULL);
}

static cq_status maxpool(oi_importer *im, const Onnx__NodeProto *n) { return pool(im, n, 0); }
static cq_status avgpool(oi_importer *im, const Onnx__NodeProto *n) { return pool(im, n, 1); }

static cq_status global_avgpool(oi_importer *im, const Onnx__NodeProto *n) {
  (void)n;
  oi_value *x;
  cq_status st = oi_input_act(im, 0, &x);
  if (st != CQ_OK) return st;
  if (x->ndim != 4) {
    return oi_fail(im, CQ_EUNSUPPORTED, "only [N, C, H, W] input is supported (rank %d)", x->ndim);
  }
  cq_module *m;
  st = cq_adaptive_avgpool2d(&m, 1, 1);
  if (st != CQ_OK) return fail_ctor(im, st);
  oi_dim dims[4] = {x->dims[0], x->dims[1], {1, 0}, {1, 0}};
  return oi_emit_unary(im, m, NULL, x, 4, dims, NULL);
}

/* The product of d[from .. to); *sym = 1 when a factor is symbolic or the product does not fit
 * (a size the file declares but no real tensor can have: it is then left to the run). */
static int64_t prod_dims(oi_importer *im, const oi_dim *d, int from, int to, int *sym) {
  int64_t p = 1;
  *sym = 0;
  for (int i = from; i < to; i++) {
    if (d[i].sym || __builtin_mul_overflow(p, d[i].v, &p)) *sym = 1;
  }
  (void)im;
  return p;
}

static cq_status flatten(oi_importer *im, const Onnx__NodeProto *n) {
  (void)n;
  oi_value *x;
  cq_status st = oi_input_act(im, 0, &x);
  if (st != CQ_OK) return st;
  int64_t axis;
  st = oi_attr_int(im, "axis", 1, &axis);
  if (st != CQ_OK) return st;
  if (axis < 0) axis += x->ndim;
  if (axis < 0 || axis > x->ndim) return oi_fail(im, CQ_EFORMAT, "axis out of range");
  /* ONNX Flatten always gives [prod(dims[:axis]), prod(dims[axis:])] */
  cq_module *m;
  oi_dim dims[2];
  int s1, s2;
  const int64_t p1 = prod_dims(im, x->dims, 0, (int)axis, &s1);
  const int64_t p2 = prod_dims(im, x->dims, (int)axis, x->ndim, &s2);
  dims[0] = (axis == 1) ? x->dims[0] : (s1 ? (oi_dim){-1, oi_new_sym(im)} : (oi_dim){p1, 0});
  dims[1] = (axis == x->ndim - 1) ? x->dims[axis]
                                  : (s2 ? (oi_dim){-1, oi_new_sym(im)} : (oi_dim){p2, 0});
  if (axis == 1) {
    st = cq_flatten(&m, 1, -1);
  } else if (axis == x->ndim - 1 && axis > 0) {
    st = cq_flatten(&m, 0, (int)axis - 1);
  } else {
    return oi_fail(im, CQ_EUNSUPPORTED, "Flatten with axis %lld of a rank-%d input (axis 1 and "
                   "the last axis are supported)", (long long)axis, x->ndim);
  }
  if (st != CQ_OK) return fail_ctor(im, st);
  return oi_emit_unary(im, m, NULL, x, 2, dims, NULL);
}

static cq_status transpose(oi_importer *im, const Onnx__NodeProto *n) {
  (void)n;
  oi_value *x;
  cq_status st = oi_input_act(im, 0, &x);
  if (st != CQ_OK) return st;
  int64_t perm[CQ_MAX_DIMS];
  int np;
  st = oi_attr_ints(im, "perm", perm, CQ_MAX_DIMS, &np);
  if (st != CQ_OK) return st;
  if (np == 0) {
    np = x->ndim;
    for (int d = 0; d < np; d++) perm[d] = np - 1 - d;
  }
  if (np != x->ndim) {
    return oi_fail(im, CQ_ESHAPE, "perm has %d entries for a rank-%d input", np, x->ndim);
  }
  int p[CQ_MAX_DIMS], seen[CQ_MAX_DIMS] = {0};
  oi_dim dims[CQ_MAX_DIMS];
  for (int d = 0; d < np; d++) {
    if (perm[d] < 0 || perm[d] >= np || seen[perm[d]]) {
      return oi_fail(im, CQ_EFORMAT, "perm is not a permutation of 0..%d", np - 1);
    }
    seen[perm[d]] = 1;
    p[d] = (int)perm[d];
    dims[d] = x->dims[p[d]];
  }
  cq_module *m;
  st = cq_permute(&m, np, p);
  if (st != CQ_OK) return fail_ctor(im, st);
  return oi_emit_unary(im, m, NULL, x, np, dims, NULL);
}

static cq_status batchnorm(oi_importer *im, const Onnx__NodeProto *node) {
  oi_value *x;
  const Onnx__TensorProto *t[4];
  static const char *roles[4] = {"scale", "bias", "mean", "var"};
  static const char *params[4] = {"weight", "bias", "running_mean", "running_var"};
  cq_status st = oi_input_act(im, 0, &x);
  for (int i = 0; i < 4 && st == CQ_OK; i++) st = oi_input_const(im, 1 + i, &t[i]);
  if (st != CQ_OK) return st;
  int64_t training;
  float eps;
  st = oi_attr_int(im, "training_mode", 0, &training);
  if (st == CQ_OK) st = oi_attr_float(im, "epsilon", 1e-5f, &eps);
  if (st != CQ_OK) return st;
  if (training || node->n_output > 1) {
    return oi_fail(im, CQ_EUNSUPPORTED, "only the inference form (one output) is supported");
  }
  if (x->ndim < 2 || x->ndim > 4) {
    return oi_fail(im, CQ_EUNSUPPORTED, "input rank %d (2, 3 or 4 are supported)", x->ndim);
  }
  int64_t c;
  st = oi_tensor_check(im, t[0], "scale", &c);
  if (st != CQ_OK) return st;
  if (!x->dims[1].sym && x->dims[1].v != c) {
    return oi_fail(im, CQ_ESHAPE, "input has %lld channels, scale '%s' has %lld",
                   (long long)x->dims[1].v, t[0]->name, (long long)c);
  }
  if (!(eps > 0.0f)) return oi_fail(im, CQ_EVALUE, "epsilon must be > 0");
  cq_module *m;
  st = x->ndim == 4 ? cq_batchnorm2d(&m, c) : cq_batchnorm1d(&m, c);
  if (st != CQ_OK) return fail_ctor(im, st);
  /* torch writes its eps (1e-5, a double) rounded to float: keep the double when it rounds to
   * the same float, as PyTorch's module holds it */
  const double eps_d = (float)1e-5 == eps ? 1e-5 : (double)eps;
  st = cq_batchnorm_set_eps(m, eps_d);
  for (int i = 0; i < 4 && st == CQ_OK; i++) st = load_param(im, m, params[i], t[i], roles[i]);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  const char *wname = t[0]->name;
  return oi_emit_unary(im, m, wname, x, x->ndim, x->dims, NULL);
}

/* ---- the op table ---- */

typedef struct oi_op {
  const char *name;
  oi_converter convert;
} oi_op;

static const oi_op ops[] = {
    {"Add", add},
    {"AveragePool", avgpool},
    {"BatchNormalization", batchnorm},
    {"Cast", oi_conv_cast},
    {"Clip", clip},
    {"Concat", oi_conv_concat},
    {"Constant", oi_conv_constant},
    {"ConstantOfShape", oi_conv_constant_of_shape},
    {"Conv", conv},
    {"ConvTranspose", conv_transpose},
    {"DequantizeLinear", oi_conv_dequantize_linear},
    {"Div", div_},
    {"Dropout", dropout},
    {"Flatten", flatten},
    {"GRU", oi_conv_gru},
    {"Gather", oi_conv_gather},
    {"Gemm", gemm},
    {"GlobalAveragePool", global_avgpool},
    {"HardSigmoid", hardsigmoid},
    {"HardSwish", hardswish},
    {"Identity", identity},
    {"LSTM", oi_conv_lstm},
    {"LeakyRelu", leaky_relu},
    {"MatMul", matmul},
    {"MaxPool", maxpool},
    {"Mul", mul},
    {"QuantizeLinear", oi_conv_quantize_linear},
    {"Relu", relu},
    {"Reshape", oi_conv_reshape},
    {"Shape", oi_conv_shape},
    {"Sigmoid", sigmoid},
    {"Slice", oi_conv_slice},
    {"Softmax", softmax},
    {"Squeeze", oi_conv_squeeze},
    {"Sub", sub},
    {"Tanh", tanh_},
    {"Transpose", transpose},
    {"Unsqueeze", oi_conv_unsqueeze},
};

oi_converter oi_find_converter(const char *op_type) {
  /* the table is sorted: binary search */
  size_t lo = 0, hi = sizeof ops / sizeof ops[0];
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    int c = strcmp(op_type, ops[mid].name);
    if (c == 0) return ops[mid].convert;
    if (c < 0) hi = mid; else lo = mid + 1;
  }
  return NULL;
}

/* cq_onnx_save: a cquant model as an ONNX file (opset 13, or 14 when it has a HardSwish; quantized
 * parts in QDQ form).
 *
 * The walk visits the model as it runs: a graph node by node (values numbered as the graph numbers
 * them), a Sequential or a fused float container (ConvReLU2d, LinearReLU, ...) child after child,
 * a QuantWrapper as quant -> module -> dequant; every leaf module becomes nodes through its emitter
 * (onnx_export_ops.c, onnx_export_qops.c, onnx_export_rnn.c). Node and initializer names follow
 * the module paths ("features.0", "features.0.weight"), as torch.onnx.export names initializers. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/graph.h"
#include "cquant/onnx.h"
#include "io/onnx_export.h"
#include "nn/fused.h"
#include "nn/layers.h"
#include "nn/module_impl.h"

cq_status ox_fail(const ox_call *c, cq_status st, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return cq_fail(st, "ONNX export: module %s (%s): %s", c->path[0] ? c->path : "(model)",
                 cq_module_type_name(c->m), msg);
}

cq_status ox_use_engine(ox_exporter *x, const ox_call *c, cq_backend engine) {
  if (!x->has_engine) {
    x->has_engine = 1;
    x->engine = engine;
    x->engine_path = ox_strdup(&x->b, c->path);
    return x->b.st;
  }
  if (x->engine != engine) {
    return ox_fail(c, CQ_EUNSUPPORTED,
                   "follows the %s engine but %s follows %s; one ONNX file records one engine",
                   cq_backend_name(engine), x->engine_path ? x->engine_path : "another module",
                   cq_backend_name(x->engine));
  }
  return CQ_OK;
}

void ox_same_shape(ox_value *to, const ox_value *from) {
  to->ndim = from->ndim;
  memcpy(to->dims, from->dims, sizeof to->dims);
}

int ox_axis(int dim, int ndim) {
  const int d = dim < 0 ? dim + ndim : dim;
  return d >= 0 && d < ndim ? d : -1;
}

const char *ox_out_name(ox_exporter *x, const char *path, const char *suffix) {
  if (!suffix || !suffix[0]) return ox_value_name(&x->b, path[0] ? path : "value");
  char *base = ox_printf(&x->b, "%s%s%s", path, path[0] ? "_" : "", suffix);
  return ox_value_name(&x->b, base);
}

/* ---- the walk ------------------------------------------------------------------------------------ */

static cq_status export_module(ox_exporter *x, const char *path, cq_module *m, int nin,
                               ox_value *const *in, int nout, ox_value *out);

static const char *child_path(ox_exporter *x, const char *path, const char *name) {
  return path[0] ? ox_printf(&x->b, "%s.%s", path, name) : ox_strdup(&x->b, name);
}

static cq_status export_graph(ox_exporter *x, const ox_call *c) {
  cq_module *g = c->m;
  const int ninputs = cq_graph_num_inputs(g), nvalues = cq_graph_num_values(g);
  if (c->nin != ninputs) {
    return ox_fail(c, CQ_EUNSUPPORTED, "takes %d inputs, the ONNX model gives it %d", ninputs,
                   c->nin);
  }
  int nouts = 0;
  const int *outs = NULL;
  cq_status st = cq_graph_outputs(g, &nouts, &outs);
  if (st != CQ_OK) return st;
  if (nouts == 0) return ox_fail(c, CQ_EUNSUPPORTED, "the graph declares no outputs");
  if (nouts != c->nout) {
    return ox_fail(c, CQ_EUNSUPPORTED, "gives %d outputs where %d are read", nouts, c->nout);
  }
  ox_value *vals = cq_calloc_for((size_t)nvalues, sizeof *vals, "ONNX export values");
  if (!vals) return CQ_ENOMEM;
  for (int i = 0; i < ninputs; i++) vals[i] = *c->in[i];
  const int nnodes = cq_graph_num_nodes(g);
  for (int k = 0; st == CQ_OK && k < nnodes; k++) {
    cq_graph_node_info info;
    st = cq_graph_node(g, k, &info);
    if (st != CQ_OK) break;
    ox_value *ins[CQ_MAX_IO];
    ox_value res[CQ_MAX_IO];
    memset(res, 0, sizeof res);
    for (int i = 0; i < info.nin; i++) ins[i] = &vals[info.inputs[i]];
    const char *cpath = child_path(x, c->path, info.name);
    if (!cpath) {
      st = x->b.st;
      break;
    }
    st = export_module(x, cpath, info.module, info.nin, ins, info.nout, res);
    for (int i = 0; st == CQ_OK && i < info.nout; i++) vals[info.outputs[i]] = res[i];
  }
  for (int i = 0; st == CQ_OK && i < nouts; i++) c->out[i] = vals[outs[i]];
  cq_free(vals);
  return st;
}

/* Sequential and the fused float containers: children in order, the output of one the input of
 * the next (an attached activation_post_process is not a step: the module core applies it). */
static cq_status export_chain(ox_exporter *x, const ox_call *c) {
  if (c->nin != 1 || c->nout != 1) {
    return ox_fail(c, CQ_EUNSUPPORTED, "a chain takes one input and gives one output");
  }
  ox_value cur = *c->in[0];
  const int n = cq_module_num_children(c->m);
  for (int i = 0; i < n; i++) {
    cq_module *child = cq_module_child(c->m, i);
    if (child == c->m->post) continue;
    const char *cpath = child_path(x, c->path, cq_module_child_name(c->m, i));
    if (!cpath) return x->b.st;
    ox_value *in = &cur;
    ox_value next;
    memset(&next, 0, sizeof next);
    cq_status st = export_module(x, cpath, child, 1, &in, 1, &next);
    if (st != CQ_OK) return st;
    cur = next;
  }
  c->out[0] = cur;
  return CQ_OK;
}

static cq_status export_wrapper(ox_exporter *x, const ox_call *c) {
  static const char *order[3] = {"quant", "module", "dequant"};
  ox_value cur = *c->in[0];
  for (int i = 0; i < 3; i++) {
    cq_module *child = cq_module_find(c->m, order[i]);
    if (!child) return ox_fail(c, CQ_EUNSUPPORTED, "has no child %s", order[i]);
    const char *cpath = child_path(x, c->path, order[i]);
    if (!cpath) return x->b.st;
    ox_value *in = &cur;
    ox_value next;
    memset(&next, 0, sizeof next);
    cq_status st = export_module(x, cpath, child, 1, &in, 1, &next);
    if (st != CQ_OK) return st;
    cur = next;
  }
  c->out[0] = cur;
  return CQ_OK;
}

static int is_chain(const cq_module *m) {
  return cq_module_is(m, "Sequential") || cq_module_is_fused_float(m);
}

static cq_status export_module(ox_exporter *x, const char *path, cq_module *m, int nin,
                               ox_value *const *in, int nout, ox_value *out) {
  ox_call c = {path, m, nin, nout, in, out};
  if (m->post && !cq_module_is(m->post, "Identity")) {
    return ox_fail(&c, CQ_EUNSUPPORTED,
                   "has an activation_post_process %s (a prepared model); convert it first",
                   cq_module_type_name(m->post));
  }
  cq_status st;
  if (cq_is_graph(m)) {
    st = export_graph(x, &c);
  } else if (is_chain(m)) {
    st = export_chain(x, &c);
  } else if (cq_module_is(m, "QuantWrapper")) {
    st = export_wrapper(x, &c);
  } else {
    ox_emit_fn fn = ox_find_emitter(cq_module_type_name(m));
    if (!fn) fn = ox_find_qemitter(cq_module_type_name(m));
    if (!fn) fn = ox_find_extra_emitter(cq_module_type_name(m));
    if (!fn) return ox_fail(&c, CQ_EUNSUPPORTED, "this module has no ONNX form in cquant");
    if (nin < m->type->nin_min || nin > m->type->nin_max || nout < m->type->nout_min ||
        nout > m->type->nout_max) {
      return ox_fail(&c, CQ_EUNSUPPORTED, "called with %d inputs and %d outputs", nin, nout);
    }
    st = fn(x, &c);
  }
  if (st == CQ_OK && x->b.st != CQ_OK) st = x->b.st;
  return st;
}

/* ---- graph inputs and outputs -------------------------------------------------------------------- */

static Onnx__ValueInfoProto *value_info(ox_builder *b, const char *name, int32_t elem_type,
                                        int ndim, const int64_t *dims) {
  Onnx__ValueInfoProto *vi = ox_alloc(b, sizeof *vi);
  Onnx__TypeProto *tp = ox_alloc(b, sizeof *tp);
  Onnx__TypeProto__Tensor *tt = ox_alloc(b, sizeof *tt);
  Onnx__TensorShapeProto *sp = ox_alloc(b, sizeof *sp);
  Onnx__TensorShapeProto__Dimension **dv = ox_alloc(b, sizeof *dv * (size_t)(ndim ? ndim : 1));
  if (b->st != CQ_OK) return NULL;
  onnx__value_info_proto__init(vi);
  onnx__type_proto__init(tp);
  onnx__type_proto__tensor__init(tt);
  onnx__tensor_shape_proto__init(sp);
  for (int i = 0; i < ndim; i++) {
    Onnx__TensorShapeProto__Dimension *d = ox_alloc(b, sizeof *d);
    if (!d) return NULL;
    onnx__tensor_shape_proto__dimension__init(d);
    if (dims[i] >= 0) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
      d->dim_value = dims[i];
    } else if (dims[i] == OX_BATCH) {
      d->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
      d->dim_param = ox_strdup(b, "N");
    } /* k * N: left unknown */
    dv[i] = d;
  }
  sp->n_dim = (size_t)ndim;
  sp->dim = dv;
  tt->has_elem_type = 1;
  tt->elem_type = elem_type;
  tt->shape = sp;
  tp->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
  tp->tensor_type = tt;
  vi->name = ox_strdup(b, name);
  vi->type = tp;
  return b->st == CQ_OK ? vi : NULL;
}

/* Renames tensor `from` to `to` wherever a node writes or reads it; 0 when no node writes it. */
static int rename_tensor(ox_builder *b, const char *from, const char *to) {
  int produced = 0;
  for (size_t i = 0; i < b->n_nodes; i++) {
    Onnx__NodeProto *n = b->nodes[i];
    for (size_t k = 0; k < n->n_output; k++) produced |= !strcmp(n->output[k], from);
  }
  if (!produced) return 0;
  for (size_t i = 0; i < b->n_nodes; i++) {
    Onnx__NodeProto *n = b->nodes[i];
    for (size_t k = 0; k < n->n_output; k++) {
      if (!strcmp(n->output[k], from)) n->output[k] = (char *)to;
    }
    for (size_t k = 0; k < n->n_input; k++) {
      if (!strcmp(n->input[k], from)) n->input[k] = (char *)to;
    }
  }
  return 1;
}

/* The graph output `name` for value v: the producer's output renamed when it is a node output not
 * already an output, else an Identity node. A quantized value is given as its integer tensor. */
static Onnx__ValueInfoProto *graph_output(ox_exporter *x, const ox_value *v, const char *name,
                                          const char **taken, int ntaken) {
  ox_builder *b = &x->b;
  const char *tensor = v->quantized ? v->qname : v->name;
  const int32_t elem = !v->quantized               ? ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT
                       : v->dtype == CQ_QUINT8      ? ONNX__TENSOR_PROTO__DATA_TYPE__UINT8
                                                    : ONNX__TENSOR_PROTO__DATA_TYPE__INT8;
  int reused = 0;
  for (int i = 0; i < ntaken; i++) reused |= taken[i] && !strcmp(taken[i], tensor);
  if (reused || !rename_tensor(b, tensor, name)) {
    const char *ins[1] = {tensor}, *outs[1] = {name};
    ox_node(b, "Identity", name, 1, ins, 1, outs);
  }
  return value_info(b, name, elem, v->ndim, v->dims);
}

static int module_outputs(cq_module *m) {
  if (cq_is_graph(m)) {
    int n = 0;
    const int *v = NULL;
    if (cq_graph_outputs(m, &n, &v) != CQ_OK) return 0;
    return n;
  }
  return 1;
}

static cq_status check_args(cq_module *model, int ndim, const int64_t *input_shape,
                            const char *path) {
  if (!model) return cq_fail(CQ_EINVAL, "cq_onnx_save: the model is NULL");
  if (!path) return cq_fail(CQ_EINVAL, "cq_onnx_save: the path is NULL");
  if (ndim < 1 || ndim > CQ_MAX_DIMS || !input_shape) {
    return cq_fail(CQ_EINVAL, "cq_onnx_save: the input shape must have 1 to %d dimensions, got %d",
                   CQ_MAX_DIMS, ndim);
  }
  for (int i = 1; i < ndim; i++) {
    if (input_shape[i] < 1) {
      return cq_fail(CQ_EINVAL, "cq_onnx_save: input dimension %d is %lld, must be >= 1", i,
                     (long long)input_shape[i]);
    }
  }
  return CQ_OK;
}

static cq_status build_model(ox_exporter *x, cq_module *model, int ndim,
                             const int64_t *input_shape, Onnx__ModelProto *mp) {
  ox_builder *b = &x->b;
  const int nout = module_outputs(model);
  if (nout < 1 || nout > CQ_MAX_IO) {
    return cq_fail(CQ_EUNSUPPORTED, "ONNX export: the model (%s) declares no outputs",
                   cq_module_type_name(model));
  }
  /* graph input and output names are reserved first: module paths never take them */
  const char *in_name = ox_value_name(b, "input");
  const char *out_names[CQ_MAX_IO];
  for (int i = 0; i < nout; i++) {
    out_names[i] = nout == 1 ? ox_value_name(b, "output") : ox_value_name(b, ox_printf(b, "output_%d", i));
  }
  if (b->st != CQ_OK) return b->st;
  ox_value input;
  memset(&input, 0, sizeof input);
  input.name = in_name;
  input.ndim = ndim;
  for (int i = 0; i < ndim; i++) input.dims[i] = i == 0 ? OX_BATCH : input_shape[i];
  ox_value outs[CQ_MAX_IO];
  memset(outs, 0, sizeof outs);
  ox_value *in = &input;
  cq_status st = export_module(x, "", model, 1, &in, nout, outs);
  if (st != CQ_OK) return st;

  Onnx__GraphProto *g = ox_alloc(b, sizeof *g);
  Onnx__ValueInfoProto **gin = ox_alloc(b, sizeof *gin);
  Onnx__ValueInfoProto **gout = ox_alloc(b, sizeof *gout * (size_t)nout);
  if (b->st != CQ_OK) return b->st;
  onnx__graph_proto__init(g);
  gin[0] = value_info(b, in_name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndim, input.dims);
  const char *taken[CQ_MAX_IO] = {0};
  for (int i = 0; i < nout && b->st == CQ_OK; i++) {
    gout[i] = graph_output(x, &outs[i], out_names[i], taken, i);
    taken[i] = outs[i].quantized ? outs[i].qname : outs[i].name;
  }
  if (b->st != CQ_OK) return b->st;
  g->name = ox_strdup(b, cq_module_type_name(model));
  g->n_input = 1;
  g->input = gin;
  g->n_output = (size_t)nout;
  g->output = gout;
  g->n_node = b->n_nodes;
  g->node = b->nodes;
  g->n_initializer = b->n_inits;
  g->initializer = b->inits;

  Onnx__OperatorSetIdProto *opset = ox_alloc(b, sizeof *opset);
  Onnx__OperatorSetIdProto **opsets = ox_alloc(b, sizeof *opsets);
  if (b->st != CQ_OK) return b->st;
  onnx__operator_set_id_proto__init(opset);
  opset->domain = ox_strdup(b, "");
  opset->has_version = 1;
  opset->version = x->opset;
  opsets[0] = opset;
  mp->has_ir_version = 1;
  mp->ir_version = OX_IR_VERSION;
  mp->n_opset_import = 1;
  mp->opset_import = opsets;
  mp->producer_name = ox_strdup(b, "cquant");
  mp->graph = g;
  if (x->has_engine) {
    Onnx__StringStringEntryProto *e = ox_alloc(b, sizeof *e);
    Onnx__StringStringEntryProto **props = ox_alloc(b, sizeof *props);
    if (b->st != CQ_OK) return b->st;
    onnx__string_string_entry_proto__init(e);
    e->key = ox_strdup(b, "cquant.engine");
    e->value = ox_strdup(b, cq_backend_name(x->engine));
    props[0] = e;
    mp->n_metadata_props = 1;
    mp->metadata_props = props;
  }
  return b->st;
}

cq_status cq_onnx_save(cq_module *model, int ndim, const int64_t *input_shape, const char *path) {
  cq_status st = check_args(model, ndim, input_shape, path);
  if (st != CQ_OK) return st;
  ox_exporter x;
  memset(&x, 0, sizeof x);
  x.opset = OX_OPSET;
  Onnx__ModelProto mp;
  onnx__model_proto__init(&mp);
  st = build_model(&x, model, ndim, input_shape, &mp);
  if (st == CQ_OK) st = cq_onnx_write_file(&mp, path);
  ox_builder_release(&x.b);
  return st;
}

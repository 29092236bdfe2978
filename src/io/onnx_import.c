/* ONNX import: cq_onnx_load / cq_onnx_load_buffer (include/cquant/onnx.h).
 *
 * One pass over the nodes in file order (ONNX requires topological order; a node reading a value
 * that a later node defines is reported as out of order or a cycle). A prepass registers every
 * value name (initializers, graph inputs, node outputs) in a hash table and counts its readers,
 * which the converters use to fold patterns (MatMul + Add, QDQ) only when nothing else reads the
 * intermediate value. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "cquant/graph.h"
#include "cquant/onnx.h"
#include "io/onnx_import.h"

#define OI_MIN_OPSET 11
#define OI_MAX_OPSET 17
#define OI_MIN_IR 6
#define OI_MAX_IR 10

static int is_default_domain(const char *d) {
  return !d || !d[0] || strcmp(d, "ai.onnx") == 0;
}

static cq_status check_model(oi_importer *im) {
  const Onnx__ModelProto *m = im->model;
  if (!m->has_ir_version) {
    return cq_fail(CQ_EFORMAT, "%s: no ir_version (not an ONNX model)", im->what);
  }
  if (m->ir_version < OI_MIN_IR || m->ir_version > OI_MAX_IR) {
    return cq_fail(CQ_EUNSUPPORTED, "%s: ir_version %lld is outside the supported %d..%d",
                   im->what, (long long)m->ir_version, OI_MIN_IR, OI_MAX_IR);
  }
  im->opset = -1;
  for (size_t i = 0; i < m->n_opset_import; i++) {
    const Onnx__OperatorSetIdProto *o = m->opset_import[i];
    if (o && is_default_domain(o->domain)) im->opset = o->version;
  }
  if (im->opset < 0) {
    return cq_fail(CQ_EFORMAT, "%s: no opset_import for the default ONNX domain", im->what);
  }
  if (im->opset < OI_MIN_OPSET || im->opset > OI_MAX_OPSET) {
    return cq_fail(CQ_EUNSUPPORTED, "%s: opset %lld is outside the supported %d..%d", im->what,
                   (long long)im->opset, OI_MIN_OPSET, OI_MAX_OPSET);
  }
  if (!m->graph) return cq_fail(CQ_EFORMAT, "%s: the model has no graph", im->what);
  im->graph = m->graph;
  im->engine = CQ_BACKEND_X86;
  for (size_t i = 0; i < m->n_metadata_props; i++) {
    const Onnx__StringStringEntryProto *p = m->metadata_props[i];
    if (p && p->key && strcmp(p->key, "cquant.engine") == 0) {
      if (!p->value || cq_backend_parse(p->value, &im->engine) != CQ_OK) {
        return cq_fail(CQ_EFORMAT, "%s: metadata cquant.engine is not x86, fbgemm, qnnpack or "
                       "onednn", im->what);
      }
    }
  }
  return CQ_OK;
}

/* A graph input: float tensor with a known rank; dims with a dim_param share a symbol per name. */
static cq_status set_input_shape(oi_importer *im, oi_value *v, const Onnx__ValueInfoProto *vi,
                                 const char **params, int *params_sym, int *nparams) {
  const Onnx__TypeProto *tp = vi->type;
  if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type) {
    return cq_fail(CQ_EUNSUPPORTED, "%s: graph input '%.80s' is not a tensor", im->what, v->name);
  }
  const Onnx__TypeProto__Tensor *tt = tp->tensor_type;
  if (tt->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT) {
    return cq_fail(CQ_EUNSUPPORTED, "%s: graph input '%.80s' has element type %d; cquant models "
                   "take float32 inputs", im->what, v->name, (int)tt->elem_type);
  }
  if (!tt->shape) {
    return cq_fail(CQ_EUNSUPPORTED, "%s: graph input '%.80s' has no shape (its rank must be "
                   "known)", im->what, v->name);
  }
  if (tt->shape->n_dim > CQ_MAX_DIMS) {
    return cq_fail(CQ_EUNSUPPORTED, "%s: graph input '%.80s' has %zu dimensions (at most %d)",
                   im->what, v->name, tt->shape->n_dim, CQ_MAX_DIMS);
  }
  v->ndim = (int)tt->shape->n_dim;
  for (int d = 0; d < v->ndim; d++) {
    const Onnx__TensorShapeProto__Dimension *dim = tt->shape->dim[d];
    if (dim && dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE &&
        dim->dim_value >= 0) {
      v->dims[d].v = dim->dim_value;
      v->dims[d].sym = 0;
      continue;
    }
    int sym = 0;
    if (dim && dim->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM &&
        dim->dim_param) {
      for (int k = 0; k < *nparams; k++) {
        if (strcmp(params[k], dim->dim_param) == 0) sym = params_sym[k];
      }
      if (!sym && *nparams < CQ_MAX_IO * CQ_MAX_DIMS) {
        sym = oi_new_sym(im);
        params[*nparams] = dim->dim_param;
        params_sym[(*nparams)++] = sym;
      }
    }
    v->dims[d].v = -1;
    v->dims[d].sym = sym ? sym : oi_new_sym(im);
  }
  return CQ_OK;
}

/* The class name the graph prints as: the ONNX graph name, with torch's defaults shown as FX
 * shows a traced module. */
static cq_status set_class_name(oi_importer *im) {
  const char *gname = im->graph->name && im->graph->name[0] ? im->graph->name : "main_graph";
  if (strcmp(gname, "main_graph") == 0 || strcmp(gname, "torch_jit") == 0 ||
      strncmp(gname, "torch-jit", 9) == 0) {
    gname = "GraphModule";
  }
  char cls[96];
  size_t j = 0;
  for (const char *c = gname; *c && j + 1 < sizeof cls; c++) {
    unsigned char ch = (unsigned char)*c;
    cls[j++] = (ch > 0x20 && ch < 0x7f && ch != '(' && ch != ')') ? (char)ch : '_';
  }
  cls[j] = '\0';
  return cq_graph_set_name(im->g, cls);
}

/* Registers every value and counts readers; creates the cq_graph with the real inputs. */
static cq_status prepass(oi_importer *im) {
  const Onnx__GraphProto *g = im->graph;
  size_t total = g->n_initializer + g->n_input;
  for (size_t i = 0; i < g->n_node; i++) {
    if (!g->node[i]) return cq_fail(CQ_EFORMAT, "%s: node %zu is empty", im->what, i);
    total += g->node[i]->n_output;
  }
  if (total > ((size_t)1 << 26)) return cq_fail(CQ_EFORMAT, "%s: too many values", im->what);
  cq_status st = oi_values_init(im, total);
  if (st != CQ_OK) return st;
  im->done = cq_calloc_for(g->n_node + 1, 1, "the ONNX node flags");
  if (!im->done) return CQ_ENOMEM;
  for (size_t i = 0; i < g->n_initializer; i++) {
    const Onnx__TensorProto *t = g->initializer[i];
    if (!t || !t->name || !t->name[0]) {
      return cq_fail(CQ_EFORMAT, "%s: initializer %zu has no name", im->what, i);
    }
    int k;
    st = oi_add_value(im, t->name, 0, &k);
    if (st != CQ_OK) return st;
    im->values[k].kind = OI_CONST;
    im->values[k].tensor = t;
  }
  int ninputs = 0;
  const char *params[CQ_MAX_IO * CQ_MAX_DIMS];
  int params_sym[CQ_MAX_IO * CQ_MAX_DIMS], nparams = 0;
  for (size_t i = 0; i < g->n_input; i++) {
    const Onnx__ValueInfoProto *vi = g->input[i];
    if (!vi || !vi->name || !vi->name[0]) {
      return cq_fail(CQ_EFORMAT, "%s: graph input %zu has no name", im->what, i);
    }
    int k = oi_find(im, vi->name);
    if (k >= 0 && im->values[k].kind == OI_CONST) continue; /* an initializer listed as input */
    if (k >= 0) {
      return cq_fail(CQ_EFORMAT, "%s: graph input '%.80s' is listed twice", im->what, vi->name);
    }
    if (ninputs == CQ_MAX_IO) {
      return cq_fail(CQ_EUNSUPPORTED, "%s: more than %d graph inputs", im->what, CQ_MAX_IO);
    }
    st = oi_add_value(im, vi->name, 0, &k);
    if (st != CQ_OK) return st;
    oi_value *v = &im->values[k];
    v->kind = OI_ACT;
    v->gv = ninputs++;
    st = set_input_shape(im, v, vi, params, params_sym, &nparams);
    if (st != CQ_OK) return st;
  }
  if (ninputs == 0) return cq_fail(CQ_EUNSUPPORTED, "%s: the graph has no inputs", im->what);
  for (size_t n = 0; n < g->n_node; n++) {
    const Onnx__NodeProto *node = g->node[n];
    for (size_t o = 0; o < node->n_output; o++) {
      if (!node->output[o] || !node->output[o][0]) continue; /* optional output left out */
      int k;
      st = oi_add_value(im, node->output[o], 0, &k);
      if (st != CQ_OK) return st;
      im->values[k].producer = (int)n;
    }
  }
  for (size_t n = 0; n < g->n_node; n++) {
    const Onnx__NodeProto *node = g->node[n];
    for (size_t i = 0; i < node->n_input; i++) {
      int k = oi_find(im, node->input[i]);
      if (k < 0) continue;
      im->uses[k]++;
      if (im->first_reader[k] < 0) im->first_reader[k] = (int)n;
    }
  }
  for (size_t i = 0; i < g->n_output; i++) {
    int k = g->output[i] ? oi_find(im, g->output[i]->name) : -1;
    if (k >= 0) im->uses[k]++;
  }
  st = cq_graph(&im->g, ninputs);
  if (st != CQ_OK) return st;
  return set_class_name(im);
}

static cq_status convert_nodes(oi_importer *im) {
  const Onnx__GraphProto *g = im->graph;
  /* Every op cquant reads has a first output: checked up front, because the folding patterns look
   * at the nodes after the one being converted. */
  for (size_t n = 0; n < g->n_node; n++) {
    const Onnx__NodeProto *node = g->node[n];
    if (node->n_output < 1 || !node->output[0] || !node->output[0][0]) {
      im->node = node;
      return oi_fail(im, CQ_EFORMAT, "the node has no output");
    }
  }
  for (size_t n = 0; n < g->n_node; n++) {
    if (im->done[n]) continue;
    const Onnx__NodeProto *node = g->node[n];
    im->node = node;
    if (!node->op_type || !node->op_type[0]) return oi_fail(im, CQ_EFORMAT, "no op_type");
    if (!is_default_domain(node->domain)) {
      return oi_fail(im, CQ_EUNSUPPORTED, "operator domain '%.40s' is not supported",
                     node->domain);
    }
    oi_converter conv = oi_find_converter(node->op_type);
    if (!conv) return oi_fail(im, CQ_EUNSUPPORTED, "operator not supported");
    int folded = 0;
    cq_status st = oi_qdq_try_fold(im, node, &folded);
    if (st == CQ_OK && !folded) st = conv(im, node);
    if (st != CQ_OK) return st;
    im->done[n] = 1;
  }
  im->node = NULL;
  return CQ_OK;
}

static cq_status set_outputs(oi_importer *im) {
  const Onnx__GraphProto *g = im->graph;
  if (g->n_output == 0) return cq_fail(CQ_EFORMAT, "%s: the graph has no outputs", im->what);
  if (g->n_output > CQ_MAX_IO) {
    return cq_fail(CQ_EUNSUPPORTED, "%s: more than %d graph outputs", im->what, CQ_MAX_IO);
  }
  int outs[CQ_MAX_IO];
  for (size_t i = 0; i < g->n_output; i++) {
    const char *name = g->output[i] && g->output[i]->name ? g->output[i]->name : "";
    int k = oi_find(im, name);
    if (k < 0 || im->values[k].kind == OI_UNDEFINED) {
      return cq_fail(CQ_EFORMAT, "%s: graph output '%.80s' is not defined by any node", im->what,
                     name);
    }
    if (im->values[k].kind != OI_ACT) {
      return cq_fail(CQ_EUNSUPPORTED, "%s: graph output '%.80s' is a constant, not computed from "
                     "the inputs", im->what, name);
    }
    cq_status st = oi_qdq_materialize(im, &im->values[k]);
    if (st != CQ_OK) return st;
    outs[i] = im->values[k].gv;
  }
  return cq_graph_set_outputs(im->g, (int)g->n_output, outs);
}

static cq_status import_model(const Onnx__ModelProto *model, const char *what, cq_module **out) {
  oi_importer im;
  memset(&im, 0, sizeof im);
  im.model = model;
  im.what = what;
  /* Module constructors draw their initial weights from the library's generator; the file's
   * weights replace them, and the user's generator state is left as it was. */
  const cq_rng saved_rng = *cq_default_rng();
  cq_status st = check_model(&im);
  if (st == CQ_OK) st = prepass(&im);
  if (st == CQ_OK) st = convert_nodes(&im);
  if (st == CQ_OK) st = set_outputs(&im);
  if (st == CQ_OK) {
    cq_module_train(im.g, 0);
    *out = im.g;
    im.g = NULL;
  }
  *cq_default_rng() = saved_rng;
  cq_module_free(im.g);
  cq_free(im.done);
  oi_qdq_release(&im);
  oi_values_release(&im);
  return st;
}

cq_status cq_onnx_load_buffer(const void *data, size_t size, const char *what, cq_module **out) {
  if (!out) return cq_fail(CQ_EINVAL, "cq_onnx_load_buffer: the output pointer is NULL");
  *out = NULL;
  if (!what) what = "ONNX buffer";
  Onnx__ModelProto *model = NULL;
  cq_status st = cq_onnx_decode(data, size, what, &model);
  if (st != CQ_OK) return st;
  st = import_model(model, what, out);
  cq_onnx_model_free(model);
  return st;
}

cq_status cq_onnx_load(const char *path, cq_module **out) {
  if (!out) return cq_fail(CQ_EINVAL, "cq_onnx_load: the output pointer is NULL");
  *out = NULL;
  Onnx__ModelProto *model = NULL;
  cq_status st = cq_onnx_read_file(path, &model);
  if (st != CQ_OK) return st;
  st = import_model(model, path, out);
  cq_onnx_model_free(model);
  return st;
}

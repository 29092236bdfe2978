#include "layer_compare.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"
#include "nn/quantized/qmodules.h"

/* One run of a graph: the tensor of every value (graph inputs and node outputs, owned by ctx). */
typedef struct graph_run {
  cq_module *g;
  int nnodes, nvalues, next;
  cq_tensor **values;
  cq_tensor *out0;
} graph_run;

static cq_status record_node(const char *name, cq_module *module, int nout,
                             cq_tensor *const *outputs, void *user) {
  (void)module;
  graph_run *r = user;
  cq_graph_node_info info;
  if (r->next >= r->nnodes || cq_graph_node(r->g, r->next, &info) != CQ_OK ||
      strcmp(info.name, name) != 0 || info.nout != nout) {
    return cq_fail(CQ_ESTATE, "compare: node '%s' ran out of the graph's order", name);
  }
  for (int i = 0; i < nout; i++) r->values[info.outputs[i]] = outputs[i];
  r->next++;
  return CQ_OK;
}

static cq_status run_graph(cq_module *g, cq_ctx *ctx, cq_tensor *input, graph_run *r) {
  memset(r, 0, sizeof *r);
  r->g = g;
  if (!cq_is_graph(g) || cq_graph_num_inputs(g) != 1) {
    return cq_fail(CQ_EINVAL, "compare: the model must be a graph with one input (%s has %d)",
                   cq_module_type_name(g), cq_is_graph(g) ? cq_graph_num_inputs(g) : 0);
  }
  r->nnodes = cq_graph_num_nodes(g);
  r->nvalues = cq_graph_num_values(g);
  r->values = calloc((size_t)r->nvalues + 1, sizeof *r->values);
  if (!r->values) return cq_fail(CQ_ENOMEM, "compare: out of memory");
  r->values[0] = input;
  return cq_graph_forward_visit(g, ctx, 1, &input, 1, &r->out0, record_node, r);
}

static int find_node(cq_module *g, const char *name) {
  for (int k = 0; k < cq_graph_num_nodes(g); k++) {
    cq_graph_node_info info;
    cq_graph_node(g, k, &info);
    if (strcmp(info.name, name) == 0) return k;
  }
  return -1;
}

/* The node that is the only reader of value v (reading nothing else), or -1. */
static int sole_reader(cq_module *g, int v) {
  int n = 0, reader = -1;
  for (int k = 0; k < cq_graph_num_nodes(g); k++) {
    cq_graph_node_info info;
    cq_graph_node(g, k, &info);
    for (int i = 0; i < info.nin; i++) {
      if (info.inputs[i] == v) {
        n++;
        reader = info.nin == 1 && info.nout == 1 ? k : -1;
      }
    }
  }
  int nout = 0;
  const int *outs = NULL;
  cq_graph_outputs(g, &nout, &outs);
  for (int i = 0; i < nout; i++) n += outs[i] == v;
  return n == 1 ? reader : -1;
}

static int has_relu(const cq_module *q) {
  cq_qmodule_info qi;
  if (cq_qmodule_describe_functional(q, &qi)) return qi.relu;
  return strstr(cq_module_type_name(q), "ReLU") != NULL;
}

/* The float nodes a quantized node stands for: first, then folded BatchNorms, then its ReLU.
 * Returns the count (up to cap). */
static int float_chain(cq_module *fg, int first, const cq_module *q, int *chain, int cap) {
  int n = 0;
  chain[n++] = first;
  const char *qt = cq_module_type_name(q);
  const int weighted = strstr(qt, "Conv") || strstr(qt, "Linear");
  for (;;) {
    cq_graph_node_info info;
    cq_graph_node(fg, chain[n - 1], &info);
    if (info.nout != 1 || n == cap) break;
    int next = sole_reader(fg, info.outputs[0]);
    if (next < 0) break;
    cq_graph_node_info nx;
    cq_graph_node(fg, next, &nx);
    const char *t = cq_module_type_name(nx.module);
    const int is_bn = !strcmp(t, "BatchNorm1d") || !strcmp(t, "BatchNorm2d");
    const int prev_is_relu = !strcmp(cq_module_type_name(info.module), "ReLU");
    if (weighted && is_bn && !prev_is_relu) {
      chain[n++] = next;
    } else if (!strcmp(t, "ReLU") && has_relu(q) && !prev_is_relu) {
      chain[n++] = next;
      break;
    } else {
      break;
    }
  }
  return n;
}

/* A float32 view of t: t itself, or a new dequantized copy in *owned. */
static cq_status as_float(cq_tensor *t, cq_tensor **view, cq_tensor **owned) {
  *owned = NULL;
  if (t->qparams) {
    cq_status st = cq_dequantize_tensor(t, owned);
    if (st != CQ_OK) return st;
    *view = *owned;
    return CQ_OK;
  }
  if (t->dtype != CQ_F32) {
    cq_status st = cq_tensor_to_f32(t, owned);
    if (st != CQ_OK) return st;
    *view = *owned;
    return CQ_OK;
  }
  *view = t;
  return CQ_OK;
}

double lc_sqnr_db(const float *ref, const float *q, int64_t n) {
  double s = 0, e = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)ref[i] - (double)q[i];
    s += (double)ref[i] * ref[i];
    e += d * d;
  }
  if (e == 0) return INFINITY;
  return 10.0 * log10(s / e);
}

static cq_status same_size(const char *layer, const cq_tensor *a, const cq_tensor *b) {
  if (cq_tensor_numel(a) == cq_tensor_numel(b)) return CQ_OK;
  char sa[96], sb[96];
  return cq_fail(CQ_ESHAPE, "compare: layer '%s': float output %s and quantized output %s differ "
                 "in size", layer, cq_shape_str(a->ndim, a->shape, sa, sizeof sa),
                 cq_shape_str(b->ndim, b->shape, sb, sizeof sb));
}

/* The layer's own error: the float chain run on the dequantized inputs of the quantized node. */
static cq_status shadow(cq_module *fg, const int *chain, int nchain, const graph_run *qr,
                        const cq_graph_node_info *qn, cq_tensor *qout, lc_layer *L) {
  cq_ctx *ctx = NULL;
  cq_tensor *owned[CQ_MAX_IO] = {0};
  cq_tensor *args[CQ_MAX_IO];
  cq_status st = cq_ctx_create(&ctx);
  for (int i = 0; i < qn->nin && st == CQ_OK; i++) {
    st = as_float(qr->values[qn->inputs[i]], &args[i], &owned[i]);
  }
  cq_tensor *y = NULL;
  for (int c = 0; c < nchain && st == CQ_OK; c++) {
    cq_graph_node_info fi;
    cq_graph_node(fg, chain[c], &fi);
    if (c == 0) {
      st = cq_module_forward(fi.module, ctx, qn->nin, args, 1, &y);
    } else {
      st = cq_module_forward1(fi.module, ctx, y, &y);
    }
    if (st != CQ_OK) st = cq_fail_context(st, "compare: float layer '%s'", fi.name);
  }
  if (st == CQ_OK) st = same_size(L->name, y, qout);
  if (st == CQ_OK) {
    const float *r = y->data, *q = qout->data;
    const int64_t n = cq_tensor_numel(y);
    double mx = 0, sum = 0;
    for (int64_t i = 0; i < n; i++) {
      double d = fabs((double)r[i] - (double)q[i]);
      if (d > mx || isnan(d)) mx = d;
      sum += d;
    }
    L->sqnr_db = lc_sqnr_db(r, q, n);
    L->max_abs_error = mx;
    L->mean_abs_error = n ? sum / (double)n : 0;
  }
  for (int i = 0; i < CQ_MAX_IO; i++) cq_tensor_free(owned[i]);
  cq_ctx_free(ctx);
  return st;
}

static cq_status compare_layer(cq_module *fg, const graph_run *fr, const graph_run *qr, int k,
                               lc_layer *L, int *used) {
  *used = 0;
  cq_graph_node_info qn;
  cq_graph_node(qr->g, k, &qn);
  if (!cli_is_quantized_module(qn.module) || qn.nout != 1) return CQ_OK;
  int fk = find_node(fg, qn.name);
  if (fk < 0) return CQ_OK;
  cq_graph_node_info fn;
  cq_graph_node(fg, fk, &fn);
  if (fn.nin != qn.nin || fn.nout != 1) return CQ_OK;
  int chain[4];
  int nchain = float_chain(fg, fk, qn.module, chain, 4);
  cq_graph_node_info last;
  cq_graph_node(fg, chain[nchain - 1], &last);
  memset(L, 0, sizeof *L);
  L->name = qn.name;
  L->type = cq_module_type_name(qn.module);
  L->ref_name = last.name;
  L->ref_node = chain[nchain - 1];
  cq_tensor *qraw = qr->values[qn.outputs[0]];
  if (qraw->qparams && !cq_qscheme_is_per_channel(qraw->qparams->qscheme)) {
    L->quantized_output = 1;
    L->scale = qraw->qparams->scale[0];
    L->zero_point = qraw->qparams->zero_point[0];
    L->dtype = qraw->qparams->dtype;
  }
  cq_tensor *qout = NULL, *qowned = NULL;
  cq_status st = as_float(qraw, &qout, &qowned);
  if (st == CQ_OK) st = shadow(fg, chain, nchain, qr, &qn, qout, L);
  if (st == CQ_OK) {
    cq_tensor *fref = fr->values[last.outputs[0]];
    st = same_size(L->name, fref, qout);
    if (st == CQ_OK) {
      L->cumulative_sqnr_db = lc_sqnr_db(fref->data, qout->data, cq_tensor_numel(fref));
      *used = 1;
    }
  }
  cq_tensor_free(qowned);
  return st;
}

cq_status lc_compare(cq_module *float_model, cq_module *quant_model, cq_tensor *input,
                     lc_result *out) {
  memset(out, 0, sizeof *out);
  cq_ctx *fctx = NULL, *qctx = NULL;
  graph_run fr, qr;
  memset(&fr, 0, sizeof fr);
  memset(&qr, 0, sizeof qr);
  cq_status st = cq_ctx_create(&fctx);
  if (st == CQ_OK) st = cq_ctx_create(&qctx);
  if (st == CQ_OK) {
    st = run_graph(float_model, fctx, input, &fr);
    if (st != CQ_OK) st = cq_fail_context(st, "float model");
  }
  if (st == CQ_OK) {
    st = run_graph(quant_model, qctx, input, &qr);
    if (st != CQ_OK) st = cq_fail_context(st, "quantized model");
  }
  if (st == CQ_OK) {
    out->layers = calloc((size_t)qr.nnodes + 1, sizeof *out->layers);
    if (!out->layers) st = cq_fail(CQ_ENOMEM, "compare: out of memory");
  }
  for (int k = 0; st == CQ_OK && k < qr.nnodes; k++) {
    int used = 0;
    st = compare_layer(float_model, &fr, &qr, k, &out->layers[out->nlayers], &used);
    out->nlayers += used;
  }
  if (st == CQ_OK) {
    cq_tensor *a = NULL, *b = NULL, *ao = NULL, *bo = NULL;
    st = as_float(fr.out0, &a, &ao);
    if (st == CQ_OK) st = as_float(qr.out0, &b, &bo);
    if (st == CQ_OK) st = same_size("output", a, b);
    if (st == CQ_OK) out->output_sqnr_db = lc_sqnr_db(a->data, b->data, cq_tensor_numel(a));
    cq_tensor_free(ao);
    cq_tensor_free(bo);
  }
  free(fr.values);
  free(qr.values);
  cq_ctx_free(fctx);
  cq_ctx_free(qctx);
  return st;
}

void lc_result_release(lc_result *r) {
  free(r->layers);
  memset(r, 0, sizeof *r);
}

static double sort_key(double v) { return isnan(v) ? INFINITY : v; }

static int by_sqnr(const void *pa, const void *pb) {
  const lc_layer *a = pa, *b = pb;
  double x = sort_key(a->sqnr_db), y = sort_key(b->sqnr_db);
  if (x < y) return -1;
  if (x > y) return 1;
  return strcmp(a->name, b->name);
}

void lc_sort_worst_first(lc_result *r) {
  if (r->nlayers > 1) qsort(r->layers, (size_t)r->nlayers, sizeof *r->layers, by_sqnr);
}

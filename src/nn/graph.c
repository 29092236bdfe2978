/* Graph: a container whose forward runs an explicit dataflow of nodes over numbered values (see
 * include/cquant/graph.h).
 *
 * Each graph carries its own copy of the module type so that it can print under a class name the
 * user chooses ("ResBlock(...)") and accept exactly its number of inputs and outputs. Nodes refer
 * to their module by child index (checked against the name on every run), so cq_module_replace on
 * "graph.child" swaps the module a node calls. */
#include <ctype.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "cquant/graph.h"
#include "cquant/modules.h"
#include "nn/module_impl.h"

typedef struct graph_node {
  char *name;
  int child; /* index into the graph's children */
  int nin, nout;
  int inputs[CQ_MAX_IO];
  int outputs[CQ_MAX_IO];
} graph_node;

typedef struct graph_impl {
  cq_module_type type; /* this graph's type: name, input and output counts */
  char *class_name;
  int ninputs;
  int nvalues;
  graph_node *nodes;
  int nnodes, cap_nodes;
  int noutputs;
  int outputs[CQ_MAX_IO];
} graph_impl;

static cq_status graph_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                               cq_tensor **out);

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *p = cq_malloc_for(n, "name");
  if (p) memcpy(p, s, n);
  return p;
}

static void graph_destroy(void *impl) {
  graph_impl *p = impl;
  if (!p) return;
  for (int i = 0; i < p->nnodes; i++) cq_free(p->nodes[i].name);
  cq_free(p->nodes);
  cq_free(p->class_name);
  cq_free(p);
}

static int node_child(const cq_module *m, const graph_node *node);

/* want[v] for every value: 1 when every node consuming v reads it channels-last (as
 * cq_module_type.reads_channels_last answers, given what its own outputs are wanted as), and
 * `after` for the graph's outputs. Nodes are in execution order, so going backwards every
 * consumer of a value is seen before its producer. */
static void plan_layouts(const cq_module *m, int after, int *want) {
  const graph_impl *p = m->impl;
  for (int v = 0; v < p->nvalues; v++) want[v] = 1;
  for (int i = 0; i < p->noutputs; i++) want[p->outputs[i]] &= after;
  for (int k = p->nnodes - 1; k >= 0; k--) {
    const graph_node *node = &p->nodes[k];
    const int c = node_child(m, node);
    int wanted = 1;
    for (int i = 0; i < node->nout; i++) wanted &= want[node->outputs[i]];
    const int reads = c >= 0 ? cq_module_reads_channels_last(m->children[c], wanted) : 0;
    for (int i = 0; i < node->nin; i++) want[node->inputs[i]] &= reads;
  }
}

/* Clamp folds: a node whose module clamps the bytes of its quint8 input to a range (clamp_of:
 * ReLU, ReLU6, Hardtanh) and whose input is read by nothing else and made by a module that can
 * clamp its own output (fuses_clamp: a quantized conv or linear; cq_module_clamp_fold) is skipped,
 * and its producer runs with the clamp in its output stage: the same bytes, one pass over the
 * activation less. fold[j] = the node folded into node j, or -1; skip[k] = 1: node k's output is
 * its input. PyTorch keeps such ReLU6 modules separate; the fold changes no module, only the run. */
static void plan_clamp_folds(const cq_module *m, int *fold, int *skip, int32_t *range,
                             int *consumers, int *producer) {
  const graph_impl *p = m->impl;
  for (int v = 0; v < p->nvalues; v++) {
    consumers[v] = 0;
    producer[v] = -1;
  }
  for (int i = 0; i < p->noutputs; i++) consumers[p->outputs[i]]++;
  for (int k = 0; k < p->nnodes; k++) {
    const graph_node *node = &p->nodes[k];
    fold[k] = -1;
    skip[k] = 0;
    for (int i = 0; i < node->nin; i++) consumers[node->inputs[i]]++;
    for (int i = 0; i < node->nout; i++) producer[node->outputs[i]] = k;
  }
  for (int k = 0; k < p->nnodes; k++) {
    const graph_node *node = &p->nodes[k];
    if (node->nin != 1 || node->nout != 1) continue;
    const int v = node->inputs[0], j = producer[v];
    if (j < 0 || consumers[v] != 1 || p->nodes[j].nout != 1 || fold[j] >= 0) continue;
    const int ck = node_child(m, node), cj = node_child(m, &p->nodes[j]);
    if (ck < 0 || cj < 0) continue;
    int32_t lo, hi;
    if (!cq_module_clamp_fold(m->children[cj], m->children[ck], &lo, &hi)) continue;
    fold[j] = k;
    skip[k] = 1;
    range[2 * j] = lo;
    range[2 * j + 1] = hi;
  }
}

static int graph_reads_channels_last(const cq_module *m, int after) {
  const graph_impl *p = m->impl;
  int *want = cq_malloc_for((size_t)p->nvalues * sizeof *want, "graph layout plan");
  if (!want) return 0; /* contiguous inputs are always right */
  plan_layouts(m, after, want);
  int reads = 1;
  for (int i = 0; i < p->ninputs; i++) reads &= want[i];
  cq_free(want);
  return reads;
}

static const cq_module_type graph_type_template = {
    .name = "Graph",
    .forward = graph_forward,
    .destroy_impl = graph_destroy,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
    .reads_channels_last = graph_reads_channels_last,
};

int cq_is_graph(const cq_module *m) { return m && m->type->forward == graph_forward; }

static cq_status as_graph(const cq_module *m, const char *fn, graph_impl **out) {
  if (!m) return cq_fail(CQ_EINVAL, "%s: the graph is NULL", fn);
  if (!cq_is_graph(m)) {
    return cq_fail(CQ_EINVAL, "%s: %s is not a graph (made by cq_graph)", fn, m->type->name);
  }
  *out = m->impl;
  return CQ_OK;
}

static int child_index(const cq_module *m, const char *name) {
  for (int i = 0; i < m->nchildren; i++) {
    if (strcmp(m->child_names[i], name) == 0) return i;
  }
  return -1;
}

/* --- construction ------------------------------------------------------------------------------ */

cq_status cq_graph(cq_module **out, int ninputs) {
  *out = NULL;
  if (ninputs < 1 || ninputs > CQ_MAX_IO) {
    return cq_fail(CQ_EINVAL, "cq_graph: ninputs %d must be in [1, %d]", ninputs, CQ_MAX_IO);
  }
  graph_impl *p = cq_calloc_for(1, sizeof *p, "Graph");
  if (!p) return CQ_ENOMEM;
  p->class_name = dup_string("Graph");
  if (!p->class_name) {
    cq_free(p);
    return CQ_ENOMEM;
  }
  p->type = graph_type_template;
  p->type.name = p->class_name;
  p->type.nin_min = p->type.nin_max = ninputs;
  p->ninputs = ninputs;
  p->nvalues = ninputs;
  cq_module *m;
  cq_status st = cq_module_new(&graph_type_template, p, &m);
  if (st != CQ_OK) return st;
  m->type = &p->type;
  *out = m;
  return CQ_OK;
}

cq_status cq_graph_set_name(cq_module *g, const char *class_name) {
  graph_impl *p = NULL;
  cq_status st = as_graph(g, "cq_graph_set_name", &p);
  if (st != CQ_OK) return st;
  int ok = class_name && class_name[0];
  for (const char *c = class_name; ok && *c; c++) {
    if (isspace((unsigned char)*c) || *c == '(' || *c == ')') ok = 0;
  }
  if (!ok) {
    return cq_fail(CQ_EINVAL, "cq_graph_set_name: class name '%s' must be non-empty, without "
                              "spaces or parentheses", class_name ? class_name : "");
  }
  char *copy = dup_string(class_name);
  if (!copy) return CQ_ENOMEM;
  cq_free(p->class_name);
  p->class_name = copy;
  p->type.name = copy;
  return CQ_OK;
}

/* Frees `module` (when the call owns it) and returns st. */
static cq_status reject(cq_module *module, cq_status st) {
  cq_module_free(module);
  return st;
}

/* 1 when value v exists before node `before` runs: a graph input or an output of nodes
 * 0 .. before-1. */
static int defined_before(const graph_impl *p, int v, int before) {
  if (v >= 0 && v < p->ninputs) return 1;
  if (before == p->nnodes) return v >= 0 && v < p->nvalues; /* appending: every value exists */
  for (int k = 0; k < before; k++) {
    for (int i = 0; i < p->nodes[k].nout; i++) {
      if (p->nodes[k].outputs[i] == v) return 1;
    }
  }
  return 0;
}

cq_status cq_graph_add_node(cq_module *g, const char *name, cq_module *module, int nin,
                            const int *inputs, int nout, int *outputs) {
  graph_impl *p = NULL;
  cq_status st = as_graph(g, "cq_graph_add_node", &p);
  if (st != CQ_OK) return reject(module, st);
  return cq_graph_insert_node(g, p->nnodes, name, module, nin, inputs, nout, outputs);
}

cq_status cq_graph_insert_node(cq_module *g, int before, const char *name, cq_module *module,
                               int nin, const int *inputs, int nout, int *outputs) {
  graph_impl *p = NULL;
  cq_status st = as_graph(g, "cq_graph_insert_node", &p);
  if (st != CQ_OK) return reject(module, st);
  if (before < 0 || before > p->nnodes) {
    return reject(module, cq_fail(CQ_EINVAL, "%s: cannot insert a node at position %d of %d",
                                  p->class_name, before, p->nnodes));
  }
  const char *cls = p->class_name;
  if (!name || !name[0] || strchr(name, '.')) {
    return reject(module, cq_fail(CQ_EINVAL, "%s: invalid node name '%s' (non-empty, no '.')",
                                  cls, name ? name : ""));
  }
  const int existing = child_index(g, name);
  if (module && existing >= 0) {
    return reject(module, cq_fail(CQ_EINVAL,
                                  "%s: node '%s': a child of that name exists already (pass NULL "
                                  "as the module to call it again)", cls, name));
  }
  if (!module && existing < 0) {
    return cq_fail(CQ_EINVAL, "%s: node '%s': no module given and no child named '%s'", cls, name,
                   name);
  }
  const cq_module *callee = module ? module : g->children[existing];
  const cq_module_type *t = callee->type;
  if (nin < t->nin_min || nin > t->nin_max || nin > CQ_MAX_IO || (nin > 0 && !inputs)) {
    return reject(module, cq_fail(CQ_EINVAL, "%s: node '%s': %s takes %d to %d inputs, got %d%s",
                                  cls, name, t->name, t->nin_min, t->nin_max, nin,
                                  nin > 0 && !inputs ? " (inputs is NULL)" : ""));
  }
  if (nout < t->nout_min || nout > t->nout_max || nout > CQ_MAX_IO) {
    return reject(module, cq_fail(CQ_EINVAL, "%s: node '%s': %s gives %d to %d outputs, %d "
                                  "requested", cls, name, t->name, t->nout_min, t->nout_max,
                                  nout));
  }
  for (int i = 0; i < nin; i++) {
    if (inputs[i] < 0 || inputs[i] >= p->nvalues || !defined_before(p, inputs[i], before)) {
      return reject(module, cq_fail(CQ_EINVAL,
                                    "%s: node '%s': input %d refers to value %d, which is not "
                                    "defined (values 0..%d are: %d graph inputs and the outputs of "
                                    "%d earlier nodes)", cls, name, i, inputs[i], p->nvalues - 1,
                                    p->ninputs, p->nnodes));
    }
  }
  if (p->nvalues > (1 << 30) - nout) {
    return reject(module, cq_fail(CQ_EINVAL, "%s: too many values", cls));
  }
  if (p->nnodes == p->cap_nodes) {
    int cap = p->cap_nodes ? p->cap_nodes * 2 : 8;
    graph_node *nodes = cq_realloc(p->nodes, sizeof *nodes * (size_t)cap);
    if (!nodes) return reject(module, cq_fail(CQ_ENOMEM, "%s: out of memory adding a node", cls));
    p->nodes = nodes;
    p->cap_nodes = cap;
  }
  graph_node node;
  memset(&node, 0, sizeof node);
  node.name = dup_string(name);
  if (!node.name) return reject(module, CQ_ENOMEM);
  node.child = existing;
  if (module) {
    st = cq_module_add_child(g, name, module); /* frees module on failure */
    if (st != CQ_OK) {
      cq_free(node.name);
      return st;
    }
    node.child = g->nchildren - 1;
  }
  node.nin = nin;
  node.nout = nout;
  for (int i = 0; i < nin; i++) node.inputs[i] = inputs[i];
  for (int i = 0; i < nout; i++) {
    node.outputs[i] = p->nvalues + i;
    if (outputs) outputs[i] = node.outputs[i];
  }
  p->nvalues += nout;
  memmove(&p->nodes[before + 1], &p->nodes[before], sizeof *p->nodes * (size_t)(p->nnodes - before));
  p->nodes[before] = node;
  p->nnodes++;
  return CQ_OK;
}

cq_status cq_graph_set_node_input(cq_module *g, int index, int slot, int value) {
  graph_impl *p = NULL;
  cq_status st = as_graph(g, "cq_graph_set_node_input", &p);
  if (st != CQ_OK) return st;
  if (index < 0 || index >= p->nnodes || slot < 0 || slot >= p->nodes[index].nin) {
    return cq_fail(CQ_EINVAL, "%s: no input %d of node %d", p->class_name, slot, index);
  }
  if (!defined_before(p, value, index)) {
    return cq_fail(CQ_EINVAL, "%s: node '%s': value %d is not defined before it", p->class_name,
                   p->nodes[index].name, value);
  }
  p->nodes[index].inputs[slot] = value;
  return CQ_OK;
}

cq_status cq_graph_set_outputs(cq_module *g, int n, const int *values) {
  graph_impl *p = NULL;
  cq_status st = as_graph(g, "cq_graph_set_outputs", &p);
  if (st != CQ_OK) return st;
  if (n < 1 || n > CQ_MAX_IO || !values) {
    return cq_fail(CQ_EINVAL, "%s: the number of graph outputs %d must be in [1, %d]",
                   p->class_name, n, CQ_MAX_IO);
  }
  for (int i = 0; i < n; i++) {
    if (values[i] < 0 || values[i] >= p->nvalues) {
      return cq_fail(CQ_EINVAL, "%s: graph output %d refers to value %d, which is not defined "
                                "(values 0..%d)", p->class_name, i, values[i], p->nvalues - 1);
    }
  }
  for (int i = 0; i < n; i++) p->outputs[i] = values[i];
  p->noutputs = n;
  p->type.nout_max = n;
  return CQ_OK;
}

/* --- execution --------------------------------------------------------------------------------- */

/* What a run reports besides its outputs: a visitor after every node, the nodes' wall times. */
typedef struct run_hooks {
  cq_graph_visit_fn visit;
  void *user;
  double *seconds; /* += each node's time, by execution index */
} run_hooks;

static cq_status run_nodes(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                           cq_tensor **out, const run_hooks *hooks);

static cq_status graph_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                               cq_tensor **out) {
  const run_hooks hooks = {NULL, NULL, cq_ctx_profile_of(ctx, m)};
  return run_nodes(m, ctx, nin, in, nout, out, hooks.seconds ? &hooks : NULL);
}

/* cq_graph_forward_visit: the graph run from the outside (its nodes are outermost calls, so every
 * node gives contiguous tensors and nothing is folded), then the checks on what it returns. */
static cq_status run_outside(cq_module *g, const char *fn, cq_ctx *ctx, int nin,
                             cq_tensor *const *in, int nout, cq_tensor **out,
                             const run_hooks *hooks) {
  graph_impl *p = NULL;
  cq_status st = as_graph(g, fn, &p);
  if (st != CQ_OK) return st;
  if (!ctx || nin != p->ninputs || (nin > 0 && !in) || nout < 1 || nout > p->noutputs || !out) {
    return cq_fail(CQ_EINVAL, "%s: forward takes %d inputs and gives up to %d outputs (got %d, %d)",
                   p->class_name, p->ninputs, p->noutputs, nin, nout);
  }
  for (int i = 0; i < nin; i++) {
    if (!in[i]) return cq_fail(CQ_EINVAL, "%s: input %d is NULL", p->class_name, i);
  }
  st = run_nodes(g, ctx, nin, in, nout, out, hooks);
  for (int i = 0; i < nout && st == CQ_OK && cq_ctx_outermost(ctx); i++) {
    st = cq_ctx_contiguous(ctx, out[i], &out[i]);
  }
  return st;
}

cq_status cq_graph_forward_visit(cq_module *g, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                 int nout, cq_tensor **out, cq_graph_visit_fn visit, void *user) {
  const run_hooks hooks = {visit, user, NULL};
  return run_outside(g, "cq_graph_forward_visit", ctx, nin, in, nout, out, &hooks);
}

/* A plain cq_module_forward (nested calls, channels-last between the nodes as in any run) with
 * the graph's node times recorded through the context. */
cq_status cq_graph_forward_profile(cq_module *g, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                   int nout, cq_tensor **out, double *node_seconds) {
  graph_impl *p = NULL;
  cq_status st = as_graph(g, "cq_graph_forward_profile", &p);
  if (st != CQ_OK) return st;
  if (!ctx || !node_seconds) {
    return cq_fail(CQ_EINVAL, "cq_graph_forward_profile: %s is NULL", ctx ? "node_seconds" : "ctx");
  }
  cq_ctx_set_profile(ctx, g, node_seconds);
  st = cq_module_forward(g, ctx, nin, in, nout, out);
  cq_ctx_set_profile(ctx, NULL, NULL);
  return st;
}

static double now_seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static cq_status run_nodes(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                           cq_tensor **out, const run_hooks *hooks) {
  const graph_impl *p = m->impl;
  if (p->noutputs == 0) {
    return cq_module_fail(m, CQ_ESTATE, "no graph outputs declared (cq_graph_set_outputs)");
  }
  cq_tensor **values = cq_calloc_for((size_t)p->nvalues, sizeof *values, "graph values");
  /* want[nvalues], consumers[nvalues], producer[nvalues], fold[nnodes], skip[nnodes],
   * range[2 nnodes] */
  int *want = cq_malloc_for((size_t)(3 * p->nvalues + 4 * p->nnodes + 1) * sizeof *want,
                            "graph plan");
  if (!values || !want) {
    cq_free(values);
    cq_free(want);
    return CQ_ENOMEM;
  }
  int *fold = want + 3 * p->nvalues, *skip = fold + p->nnodes;
  int32_t *range = skip + p->nnodes;
  plan_layouts(m, cq_ctx_channels_last_wanted(ctx), want);
  /* a visitor sees every node's own output: no folds then */
  if (hooks && hooks->visit) {
    for (int k = 0; k < p->nnodes; k++) {
      fold[k] = -1;
      skip[k] = 0;
    }
  } else {
    plan_clamp_folds(m, fold, skip, range, want + p->nvalues, want + 2 * p->nvalues);
  }
  for (int i = 0; i < nin; i++) values[i] = in[i];
  cq_status st = CQ_OK;
  for (int k = 0; k < p->nnodes && st == CQ_OK; k++) {
    const graph_node *node = &p->nodes[k];
    const int c = node_child(m, node);
    if (c < 0) {
      st = cq_module_fail(m, CQ_ESTATE, "node '%s': the child it calls is gone", node->name);
      break;
    }
    cq_tensor *args[CQ_MAX_IO];
    cq_tensor *res[CQ_MAX_IO] = {0};
    for (int i = 0; i < node->nin; i++) args[i] = values[node->inputs[i]];
    if (skip[k]) { /* folded into its producer */
      values[node->outputs[0]] = args[0];
      continue;
    }
    int wanted = 1;
    for (int i = 0; i < node->nout; i++) wanted &= want[node->outputs[i]];
    cq_ctx_hint_channels_last(ctx, wanted);
    cq_ctx_hint_clamp(ctx, fold[k] >= 0, fold[k] >= 0 ? range[2 * k] : 0,
                      fold[k] >= 0 ? range[2 * k + 1] : 0);
    const double t0 = hooks && hooks->seconds ? now_seconds() : 0.0;
    st = cq_module_forward(m->children[c], ctx, node->nin, args, node->nout, res);
    if (hooks && hooks->seconds) hooks->seconds[k] += now_seconds() - t0;
    cq_ctx_hint_clamp(ctx, 0, 0, 0);
    if (st != CQ_OK) {
      st = cq_fail_context(st, "%s node '%s'", p->class_name, node->name);
      break;
    }
    for (int i = 0; i < node->nout; i++) {
      if (!res[i]) {
        st = cq_module_fail(m, CQ_ESTATE, "node '%s' produced no output %d", node->name, i);
        break;
      }
      values[node->outputs[i]] = res[i];
    }
    if (st == CQ_OK && hooks && hooks->visit) { /* it sees contiguous tensors, as any caller */
      cq_tensor *seen[CQ_MAX_IO];
      for (int i = 0; i < node->nout && st == CQ_OK; i++) st = cq_ctx_contiguous(ctx, res[i], &seen[i]);
      if (st == CQ_OK) st = hooks->visit(node->name, m->children[c], node->nout, seen, hooks->user);
    }
  }
  if (st == CQ_OK) {
    for (int i = 0; i < nout; i++) out[i] = values[p->outputs[i]];
  }
  cq_free(values);
  cq_free(want);
  return st;
}

/* The child a node calls (its cached index, or found by name after edits), or -1. */
static int node_child(const cq_module *m, const graph_node *node) {
  int c = node->child;
  if (c < 0 || c >= m->nchildren || strcmp(m->child_names[c], node->name) != 0) {
    c = child_index(m, node->name);
  }
  return c;
}

/* --- introspection ----------------------------------------------------------------------------- */

int cq_graph_num_inputs(const cq_module *g) {
  return cq_is_graph(g) ? ((const graph_impl *)g->impl)->ninputs : 0;
}

int cq_graph_num_values(const cq_module *g) {
  return cq_is_graph(g) ? ((const graph_impl *)g->impl)->nvalues : 0;
}

int cq_graph_num_nodes(const cq_module *g) {
  return cq_is_graph(g) ? ((const graph_impl *)g->impl)->nnodes : 0;
}

cq_status cq_graph_node(const cq_module *g, int index, cq_graph_node_info *info) {
  graph_impl *p = NULL;
  cq_status st = as_graph(g, "cq_graph_node", &p);
  if (st != CQ_OK) return st;
  if (index < 0 || index >= p->nnodes) {
    return cq_fail(CQ_EINVAL, "cq_graph_node: index %d outside [0, %d)", index, p->nnodes);
  }
  const graph_node *node = &p->nodes[index];
  int c = node->child;
  if (c < 0 || c >= g->nchildren || strcmp(g->child_names[c], node->name) != 0) {
    c = child_index(g, node->name);
  }
  info->name = node->name;
  info->module = c >= 0 ? g->children[c] : NULL;
  info->nin = node->nin;
  info->nout = node->nout;
  info->inputs = node->inputs;
  info->outputs = node->outputs;
  return CQ_OK;
}

cq_status cq_graph_outputs(const cq_module *g, int *n, const int **values) {
  graph_impl *p = NULL;
  cq_status st = as_graph(g, "cq_graph_outputs", &p);
  if (st != CQ_OK) return st;
  *n = p->noutputs;
  *values = p->outputs;
  return CQ_OK;
}

/* --- Sequential -> Graph ----------------------------------------------------------------------- */

/* Swaps what two modules are, keeping each one's place in its parent (the pointers stay valid). */
static void swap_modules(cq_module *a, cq_module *b) {
  cq_module tmp = *a;
  *a = *b;
  *b = tmp;
  cq_module *parent = a->parent;
  a->parent = b->parent;
  b->parent = parent;
  for (int i = 0; i < a->nchildren; i++) a->children[i]->parent = a;
  for (int i = 0; i < b->nchildren; i++) b->children[i]->parent = b;
}

cq_status cq_graph_from_sequential(cq_module *seq) {
  if (!seq || strcmp(seq->type->name, "Sequential") != 0) {
    return cq_fail(CQ_EINVAL, "cq_graph_from_sequential: %s is not a Sequential",
                   seq ? seq->type->name : "NULL");
  }
  /* Everything that can fail happens on a new graph of placeholders; then the children move over
   * by pointer swaps, which cannot fail. */
  cq_module *g = NULL;
  cq_status st = cq_graph(&g, 1);
  int value = 0;
  for (int i = 0; i < seq->nchildren && st == CQ_OK; i++) {
    cq_module *placeholder = NULL;
    st = cq_identity(&placeholder);
    if (st == CQ_OK) st = cq_graph_add_node(g, seq->child_names[i], placeholder, 1, &value, 1, &value);
  }
  if (st == CQ_OK) st = cq_graph_set_outputs(g, 1, &value);
  if (st != CQ_OK) {
    cq_module_free(g);
    return st;
  }
  for (int i = 0; i < seq->nchildren; i++) {
    cq_module *c = seq->children[i];
    seq->children[i] = g->children[i];
    g->children[i] = c;
    if (seq->post == c) seq->post = NULL;
  }
  g->training = seq->training;
  cq_module *post = seq->post;
  cq_qconfig *qconfig = seq->qconfig;
  seq->qconfig = NULL;
  seq->post = NULL;
  swap_modules(seq, g);
  seq->qconfig = qconfig;
  seq->post = NULL;
  (void)post; /* a Sequential's own activation_post_process child moved with its children */
  cq_module_free(g); /* the old Sequential shell and its placeholders */
  return CQ_OK;
}

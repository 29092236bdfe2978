/* Graph-mode quantization (include/cquant/graph_mode.h): the prepare_fx / convert_fx analogue.
 *
 * The passes reuse the eager machinery: fusion is cq_fuse_modules / cq_fuse_modules_qat on the
 * chains found in the dataflow, observers come from cq_prepare / cq_prepare_qat, conversion is
 * cq_convert. What graph mode adds is deciding which nodes run quantized and inserting the stubs at
 * the borders of those regions, which eager mode leaves to the user.
 *
 * Node roles:
 *  - anchor: a node with a quantized implementation of its own and its own output observer (Conv,
 *    Linear, their fused forms, add / mul / cat, Hardswish, LeakyReLU). Quantized when not
 *    excluded; a Quantize is inserted for every input that is float.
 *  - passthrough: a node that runs on quantized tensors with the input's (or fixed) qparams (ReLU,
 *    pools, flatten, shape ops, sigmoid, ...). Quantized only when all its inputs are quantized,
 *    as FX does for these ops: nothing is quantized just to feed a ReLU.
 *  - float: everything else; a DeQuantize is inserted for each of its inputs that is quantized.
 *
 * Failure: everything that can be wrong with the model or the options is checked before the model
 * changes; after that only running out of memory can fail, which leaves a valid model that may be
 * partly prepared (free it). */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/graph_mode.h"
#include "cquant/modules.h"
#include "cquant/quantization.h"
#include "nn/module_impl.h"
#include "passes/passes.h"

typedef enum node_role { ROLE_FLOAT = 0, ROLE_ANCHOR, ROLE_PASSTHROUGH } node_role;

cq_graph_quant_options cq_graph_quant_defaults(void) {
  cq_graph_quant_options o;
  memset(&o, 0, sizeof o);
  o.backend = CQ_BACKEND_X86;
  o.per_channel = -1;
  return o;
}

static int name_in(const char *name, const char *const *list, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(name, list[i]) == 0) return 1;
  }
  return 0;
}

static node_role leaf_role(const cq_module *m) {
  static const char *const anchors[] = {
      "Conv1d", "Conv2d", "Linear", "ConvReLU1d", "ConvReLU2d", "LinearReLU", "ConvBn1d",
      "ConvBn2d", "ConvBnReLU1d", "ConvBnReLU2d", "LinearBn1d", "Hardswish", "LeakyReLU",
  };
  static const char *const passthrough[] = {
      "ReLU", "ReLU6", "Hardtanh", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Flatten",
      "Dropout", "Identity", "Sigmoid", "Tanh", "Hardsigmoid", "Reshape", "Permute", "Squeeze",
      "Unsqueeze",
  };
  const char *type = cq_module_type_name(m);
  if (strcmp(type, "FloatFunctional") == 0) {
    const char *op = cq_functional_op(m, NULL);
    return op && (!strcmp(op, "add") || !strcmp(op, "mul") || !strcmp(op, "cat")) ? ROLE_ANCHOR
                                                                                 : ROLE_FLOAT;
  }
  if (name_in(type, anchors, sizeof anchors / sizeof anchors[0])) return ROLE_ANCHOR;
  if (name_in(type, passthrough, sizeof passthrough / sizeof passthrough[0])) {
    return ROLE_PASSTHROUGH;
  }
  return ROLE_FLOAT;
}

/* A Sequential node is an anchor when it holds an anchor and nothing float, passthrough when it
 * holds passthrough modules only. */
static node_role module_role(const cq_module *m) {
  if (strcmp(cq_module_type_name(m), "Sequential") != 0) return leaf_role(m);
  node_role role = ROLE_PASSTHROUGH;
  int n = cq_module_num_children(m);
  if (n == 0) return ROLE_PASSTHROUGH;
  for (int i = 0; i < n; i++) {
    node_role r = module_role(cq_module_child(m, i));
    if (r == ROLE_FLOAT) return ROLE_FLOAT;
    if (r == ROLE_ANCHOR) role = ROLE_ANCHOR;
  }
  return role;
}

/* ---- options -> qconfig ------------------------------------------------------------------------- */

static cq_status weight_spec(cq_backend backend, int per_channel, int qat, cq_qspec *out) {
  const char *name;
  if (qat) {
    name = per_channel ? "default_fused_per_channel_wt_fake_quant" : "default_fused_wt_fake_quant";
    if (backend == CQ_BACKEND_QNNPACK && per_channel) {
      name = "fused_per_channel_wt_fake_quant_range_neg_127_to_127";
    }
  } else {
    name = per_channel ? "default_per_channel_weight_observer" : "default_weight_observer";
    if (backend == CQ_BACKEND_QNNPACK && per_channel) {
      name = "per_channel_weight_observer_range_neg_127_to_127";
    }
  }
  return cq_qspec_preset(name, out);
}

static cq_status build_qconfig(const cq_graph_quant_options *o, int qat, cq_qconfig *out) {
  cq_status st = qat ? cq_get_default_qat_qconfig(o->backend, 1, out)
                     : cq_get_default_qconfig(o->backend, 0, out);
  if (st != CQ_OK) return st;
  if (o->per_channel == 0 || o->per_channel == 1) {
    st = weight_spec(o->backend, o->per_channel, qat, &out->weight);
    if (st != CQ_OK) return st;
  } else if (o->per_channel != -1) {
    return cq_fail(CQ_EINVAL, "graph quantization: per_channel must be -1, 0 or 1, got %d",
                   o->per_channel);
  }
  if (o->observer) {
    if (qat) {
      return cq_fail(CQ_EINVAL, "graph quantization: --observer applies to static quantization; "
                     "QAT uses the backend's fake-quant modules");
    }
    cq_observer_kind kind;
    st = cq_observer_kind_parse(o->observer, &kind);
    if (st != CQ_OK) return st;
    if (kind == CQ_OBSERVER_PER_CHANNEL_MINMAX ||
        kind == CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX || kind == CQ_OBSERVER_PLACEHOLDER ||
        kind == CQ_OBSERVER_NOOP || kind == CQ_OBSERVER_FIXED_QPARAMS) {
      return cq_fail(CQ_EINVAL, "graph quantization: '%s' cannot observe activations of a static "
                     "model (per-tensor observers: minmax, moving_average_minmax, histogram, "
                     "percentile, mse, entropy)", o->observer);
    }
    const cq_observer_config *def = &out->activation.observer;
    cq_observer_config cfg = cq_observer_defaults(kind);
    cfg.dtype = def->dtype;
    cfg.qscheme = def->qscheme;
    cfg.reduce_range = def->reduce_range;
    cfg.has_quant_range = def->has_quant_range;
    cfg.quant_min = def->quant_min;
    cfg.quant_max = def->quant_max;
    out->activation.observer = cfg;
  }
  /* Creating one observer of each kind now reports a bad configuration before the model changes. */
  const cq_qspec *specs[2] = {&out->activation, &out->weight};
  for (int i = 0; i < 2; i++) {
    if (!specs[i]->present) continue;
    cq_observer *probe = NULL;
    st = cq_observer_create(&specs[i]->observer, &probe);
    cq_observer_free(probe);
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

/* ---- the dataflow --------------------------------------------------------------------------------- */

typedef struct flow {
  cq_module *g;
  int nnodes, nvalues;
  int *producer;  /* value -> node index, -1 for graph inputs */
  int *consumers; /* value -> number of node inputs reading it, graph outputs counted too */
  int *calls;     /* node -> how many nodes call the same child */
} flow;

static void flow_free(flow *f) {
  cq_free(f->producer);
  cq_free(f->consumers);
  cq_free(f->calls);
  memset(f, 0, sizeof *f);
}

static cq_status flow_build(cq_module *g, flow *f) {
  memset(f, 0, sizeof *f);
  f->g = g;
  f->nnodes = cq_graph_num_nodes(g);
  f->nvalues = cq_graph_num_values(g);
  f->producer = cq_malloc_for(sizeof(int) * (size_t)(f->nvalues + 1), "graph analysis");
  f->consumers = cq_calloc_for((size_t)f->nvalues + 1, sizeof(int), "graph analysis");
  f->calls = cq_calloc_for((size_t)f->nnodes + 1, sizeof(int), "graph analysis");
  if (!f->producer || !f->consumers || !f->calls) {
    flow_free(f);
    return CQ_ENOMEM;
  }
  for (int v = 0; v < f->nvalues; v++) f->producer[v] = -1;
  for (int k = 0; k < f->nnodes; k++) {
    cq_graph_node_info info;
    cq_graph_node(g, k, &info);
    for (int i = 0; i < info.nout; i++) f->producer[info.outputs[i]] = k;
    for (int i = 0; i < info.nin; i++) f->consumers[info.inputs[i]]++;
    for (int j = 0; j < f->nnodes; j++) {
      cq_graph_node_info other;
      cq_graph_node(g, j, &other);
      if (other.module == info.module) f->calls[k]++;
    }
  }
  int nout;
  const int *outs;
  cq_graph_outputs(g, &nout, &outs);
  for (int i = 0; i < nout; i++) f->consumers[outs[i]]++;
  return CQ_OK;
}

/* The single node that reads value v (as its only input), or -1. */
static int sole_consumer(const flow *f, int v) {
  if (f->consumers[v] != 1) return -1;
  for (int k = 0; k < f->nnodes; k++) {
    cq_graph_node_info info;
    cq_graph_node(f->g, k, &info);
    for (int i = 0; i < info.nin; i++) {
      if (info.inputs[i] == v) return info.nin == 1 && info.nout == 1 ? k : -1;
    }
  }
  return -1;
}

/* ---- exclusion and overrides ---------------------------------------------------------------- */

static int matches(const char *pattern, const char *node_name, const cq_module *m) {
  return strcmp(pattern, node_name) == 0 || strcmp(pattern, cq_module_type_name(m)) == 0;
}

static int is_excluded(const cq_graph_quant_options *o, const char *node_name, const cq_module *m) {
  for (int i = 0; i < o->nexclude; i++) {
    if (matches(o->exclude[i], node_name, m)) return 1;
  }
  return 0;
}

/* The override for a node: a match by name wins over a match by class. */
static const cq_qconfig *override_for(const cq_graph_quant_options *o, const char *node_name,
                                      const cq_module *m) {
  for (int i = 0; i < o->noverride; i++) {
    if (strcmp(o->override_names[i], node_name) == 0) return &o->override_qconfigs[i];
  }
  for (int i = 0; i < o->noverride; i++) {
    if (strcmp(o->override_names[i], cq_module_type_name(m)) == 0) return &o->override_qconfigs[i];
  }
  return NULL;
}

static cq_status check_names(cq_module *g, int n, const char *const *names, const char *what) {
  if (n < 0 || (n > 0 && !names)) {
    return cq_fail(CQ_EINVAL, "graph quantization: bad %s list (n = %d)", what, n);
  }
  for (int i = 0; i < n; i++) {
    if (!names[i]) return cq_fail(CQ_EINVAL, "graph quantization: %s entry %d is NULL", what, i);
    int found = 0;
    for (int k = 0; k < cq_graph_num_nodes(g) && !found; k++) {
      cq_graph_node_info info;
      cq_graph_node(g, k, &info);
      found = matches(names[i], info.name, info.module);
    }
    if (!found) {
      return cq_fail(CQ_EINVAL, "graph quantization: %s '%s' matches no node name or class of the "
                     "model", what, names[i]);
    }
  }
  return CQ_OK;
}

static cq_status check_options(cq_module *g, const cq_graph_quant_options *o) {
  if ((unsigned)o->backend >= CQ_BACKEND_COUNT) {
    return cq_fail(CQ_EINVAL, "graph quantization: unknown backend %d", (int)o->backend);
  }
  cq_status st = check_names(g, o->nexclude, o->exclude, "exclude");
  if (st == CQ_OK) st = check_names(g, o->noverride, o->override_names, "override");
  if (st == CQ_OK && o->noverride > 0 && !o->override_qconfigs) {
    st = cq_fail(CQ_EINVAL, "graph quantization: override names without qconfigs");
  }
  return st;
}

/* ---- fusion ------------------------------------------------------------------------------------- */

static int conv_dims(const cq_module *m) {
  const char *t = cq_module_type_name(m);
  return strcmp(t, "Conv2d") == 0 ? 2 : strcmp(t, "Conv1d") == 0 ? 1 : 0;
}

/* Whether modules a -> b (-> c) form a pattern eager fusion accepts; returns its length (0 none). */
static int fusable(const cq_module *a, const cq_module *b, const cq_module *c) {
  const char *tb = b ? cq_module_type_name(b) : "";
  const int cd = conv_dims(a);
  const int linear = strcmp(cq_module_type_name(a), "Linear") == 0;
  const int bn_fits = (cd == 2 && strcmp(tb, "BatchNorm2d") == 0) ||
                      ((cd == 1 || linear) && strcmp(tb, "BatchNorm1d") == 0);
  if (cd && bn_fits) return c && strcmp(cq_module_type_name(c), "ReLU") == 0 ? 3 : 2;
  if ((cd || linear) && strcmp(tb, "ReLU") == 0) return 2;
  if (linear && bn_fits) return 2;
  return 0;
}

static cq_status fuse_group(cq_module *root, int n, const char *const *paths, int qat) {
  return qat ? cq_fuse_modules_qat(root, n, paths) : cq_fuse_modules(root, n, paths);
}

static cq_status fuse_sequential(cq_module *root, cq_module *seq, const char *prefix, int qat);

/* Fuses the chains of the graph's nodes whose intermediate values have no other reader. */
static cq_status fuse_graph(cq_module *g, const cq_graph_quant_options *o, int qat) {
  flow f;
  cq_status st = flow_build(g, &f);
  if (st != CQ_OK) return st;
  for (int k = 0; k < f.nnodes && st == CQ_OK; k++) {
    cq_graph_node_info a;
    cq_graph_node(g, k, &a);
    if (strcmp(cq_module_type_name(a.module), "Sequential") == 0) {
      if (!is_excluded(o, a.name, a.module)) st = fuse_sequential(g, a.module, a.name, qat);
      continue;
    }
    if (a.nout != 1 || f.calls[k] != 1 || is_excluded(o, a.name, a.module)) continue;
    int chain[3] = {k, -1, -1};
    cq_module *mods[3] = {a.module, NULL, NULL};
    for (int i = 1; i < 3; i++) {
      cq_graph_node_info prev;
      cq_graph_node(g, chain[i - 1], &prev);
      int next = sole_consumer(&f, prev.outputs[0]);
      if (next < 0 || f.calls[next] != 1) break;
      cq_graph_node_info nx;
      cq_graph_node(g, next, &nx);
      if (is_excluded(o, nx.name, nx.module)) break;
      chain[i] = next;
      mods[i] = nx.module;
    }
    int len = mods[1] ? fusable(mods[0], mods[1], mods[2]) : 0;
    if (!len) continue;
    const char *names[3];
    for (int i = 0; i < len; i++) {
      cq_graph_node_info info;
      cq_graph_node(g, chain[i], &info);
      names[i] = info.name;
    }
    st = fuse_group(g, len, names, qat);
  }
  flow_free(&f);
  return st;
}

/* Consecutive children of a Sequential that form a pattern. */
static cq_status fuse_sequential(cq_module *root, cq_module *seq, const char *prefix, int qat) {
  const int n = cq_module_num_children(seq);
  cq_status st = CQ_OK;
  for (int i = 0; i < n && st == CQ_OK; i++) {
    cq_module *a = cq_module_child(seq, i);
    char path[3][256];
    if (strcmp(cq_module_type_name(a), "Sequential") == 0) {
      snprintf(path[0], sizeof path[0], "%s.%s", prefix, cq_module_child_name(seq, i));
      st = fuse_sequential(root, a, path[0], qat);
      continue;
    }
    cq_module *b = i + 1 < n ? cq_module_child(seq, i + 1) : NULL;
    cq_module *c = i + 2 < n ? cq_module_child(seq, i + 2) : NULL;
    int len = b ? fusable(a, b, c) : 0;
    if (!len) continue;
    const char *names[3];
    for (int j = 0; j < len; j++) {
      int w = snprintf(path[j], sizeof path[j], "%s.%s", prefix, cq_module_child_name(seq, i + j));
      if (w < 0 || w >= (int)sizeof path[j]) return cq_fail(CQ_EINVAL, "module path too long");
      names[j] = path[j];
    }
    st = fuse_group(root, len, names, qat);
    i += len - 1;
  }
  return st;
}

/* ---- roles and stubs -------------------------------------------------------------------------- */

/* Roles of the nodes in execution order, and for every value whether it is quantized. */
static cq_status assign_roles(cq_module *g, const cq_graph_quant_options *o, node_role *role,
                              unsigned char *quantized) {
  const int nnodes = cq_graph_num_nodes(g);
  for (int k = 0; k < nnodes; k++) {
    cq_graph_node_info info;
    cq_graph_node(g, k, &info);
    node_role r = module_role(info.module);
    const cq_qconfig *ov = override_for(o, info.name, info.module);
    if (is_excluded(o, info.name, info.module) || (ov && !cq_qconfig_is_set(ov))) r = ROLE_FLOAT;
    if (r == ROLE_PASSTHROUGH) {
      for (int i = 0; i < info.nin; i++) {
        if (!quantized[info.inputs[i]]) r = ROLE_FLOAT;
      }
    }
    role[k] = r;
    for (int i = 0; i < info.nout; i++) quantized[info.outputs[i]] = r != ROLE_FLOAT;
  }
  return CQ_OK;
}

/* A node name not used by the graph yet: base, base_1, base_2, ... */
static cq_status unique_name(cq_module *g, const char *base, char *out, size_t cap) {
  for (int n = 0; n < 100000; n++) {
    int w = n ? snprintf(out, cap, "%s_%d", base, n) : snprintf(out, cap, "%s", base);
    if (w < 0 || (size_t)w >= cap) return cq_fail(CQ_EINVAL, "node name '%s' is too long", base);
    int used = 0;
    for (int i = 0; i < cq_module_num_children(g) && !used; i++) {
      used = strcmp(cq_module_child_name(g, i), out) == 0;
    }
    if (!used) return CQ_OK;
  }
  return cq_fail(CQ_EINVAL, "no free node name for '%s'", base);
}

/* Name of the value: its producer's node name, or "input" / "input1" ... for graph inputs. */
static void value_base(cq_module *g, int v, const char *suffix, char *out, size_t cap) {
  for (int k = 0; k < cq_graph_num_nodes(g); k++) {
    cq_graph_node_info info;
    cq_graph_node(g, k, &info);
    for (int i = 0; i < info.nout; i++) {
      if (info.outputs[i] != v) continue;
      if (info.nout > 1) snprintf(out, cap, "%s_%d%s", info.name, i, suffix);
      else snprintf(out, cap, "%s%s", info.name, suffix);
      return;
    }
  }
  if (v == 0) snprintf(out, cap, "input%s", suffix);
  else snprintf(out, cap, "input%d%s", v, suffix);
}

/* Inserts a stub reading `v` before node `before` and returns the stub's output value. */
static cq_status insert_stub(cq_module *g, int before, int v, int quant,
                             const cq_qconfig *qc, int *out_value) {
  cq_module *stub = NULL;
  cq_status st = quant ? cq_quant_stub(&stub) : cq_dequant_stub(&stub);
  if (st != CQ_OK) return st;
  st = cq_module_set_qconfig(stub, qc);
  if (st != CQ_OK) {
    cq_module_free(stub);
    return st;
  }
  char base[200], name[220];
  value_base(g, v, quant ? "_quant" : "_dequant", base, sizeof base);
  st = unique_name(g, base, name, sizeof name);
  if (st != CQ_OK) {
    cq_module_free(stub);
    return st;
  }
  return cq_graph_insert_node(g, before, name, stub, 1, &v, 1, out_value);
}

/* Rewires every node (from position `from`) reading `v` whose role wants the other form to read
 * `replacement`. want_quantized: rewire readers that are quantized (1) or float (0). */
static void rewire(cq_module *g, const node_role *role, int from, int v, int want_quantized,
                   int replacement, int offset) {
  const int nnodes = cq_graph_num_nodes(g);
  for (int k = from; k < nnodes; k++) {
    cq_graph_node_info info;
    cq_graph_node(g, k, &info);
    node_role r = role[k - offset];
    if ((r != ROLE_FLOAT) != want_quantized) continue;
    for (int i = 0; i < info.nin; i++) {
      if (info.inputs[i] == v) cq_graph_set_node_input(g, k, i, replacement);
    }
  }
}

/* The stubs at the borders of the quantized regions, and the qconfig on every quantized node. */
static cq_status place_stubs(cq_module *g, const cq_graph_quant_options *o, const cq_qconfig *qc,
                             node_role *role, unsigned char *quantized) {
  flow f;
  cq_status st = flow_build(g, &f);
  if (st != CQ_OK) return st;
  const int nvalues0 = f.nvalues;
  int *quant_of = cq_malloc_for(sizeof(int) * (size_t)nvalues0, "stub plan");
  int *dequant_of = cq_malloc_for(sizeof(int) * (size_t)nvalues0, "stub plan");
  /* roles indexed by the node's position in the final graph: stubs get ROLE_ANCHOR (quant) /
   * ROLE_FLOAT (dequant) entries as they are inserted */
  node_role *roles = cq_malloc_for(sizeof(node_role) * (size_t)(3 * f.nnodes + 2 * nvalues0 + 8),
                                   "stub plan");
  if (!quant_of || !dequant_of || !roles) {
    st = CQ_ENOMEM;
    goto done;
  }
  for (int v = 0; v < nvalues0; v++) quant_of[v] = dequant_of[v] = -1;
  int nroles = f.nnodes;
  memcpy(roles, role, sizeof *roles * (size_t)f.nnodes);
  /* walk the original nodes; `pos` is where node k sits now that stubs went in before it */
  int pos = 0;
  for (int k = 0; k < f.nnodes && st == CQ_OK; k++, pos++) {
    cq_graph_node_info info;
    cq_graph_node(g, pos, &info);
    /* inserting stubs moves the node table: keep what is needed of this node */
    const int nin = info.nin;
    int inputs[CQ_MAX_IO];
    for (int i = 0; i < nin; i++) inputs[i] = info.inputs[i];
    const char *node_name = info.name;
    cq_module *node_mod = info.module;
    const int q = role[k] != ROLE_FLOAT;
    for (int i = 0; i < nin && st == CQ_OK; i++) {
      int v = inputs[i];
      if (v >= nvalues0 || quantized[v] == q) continue;
      int *have = q ? &quant_of[v] : &dequant_of[v];
      if (*have < 0) {
        int nv;
        st = insert_stub(g, pos, v, q, qc, &nv);
        if (st != CQ_OK) break;
        memmove(&roles[pos + 1], &roles[pos], sizeof *roles * (size_t)(nroles - pos));
        roles[pos] = q ? ROLE_ANCHOR : ROLE_FLOAT;
        nroles++;
        pos++;
        *have = nv;
        rewire(g, roles, pos, v, q, nv, 0);
      }
    }
    if (st == CQ_OK && q) {
      const cq_qconfig *ov = override_for(o, node_name, node_mod);
      st = cq_module_set_qconfig(node_mod, ov ? ov : qc);
    }
  }
  if (st == CQ_OK) { /* quantized graph outputs leave through a DeQuantize */
    int nout;
    const int *outs;
    cq_graph_outputs(g, &nout, &outs);
    int fixed[CQ_MAX_IO];
    for (int i = 0; i < nout; i++) fixed[i] = outs[i];
    for (int i = 0; i < nout && st == CQ_OK; i++) {
      int v = fixed[i];
      if (v >= nvalues0 || !quantized[v]) continue;
      if (dequant_of[v] < 0) {
        st = insert_stub(g, cq_graph_num_nodes(g), v, 0, qc, &dequant_of[v]);
      }
      fixed[i] = dequant_of[v];
    }
    if (st == CQ_OK) st = cq_graph_set_outputs(g, nout, fixed);
  }
done:
  cq_free(quant_of);
  cq_free(dequant_of);
  cq_free(roles);
  flow_free(&f);
  return st;
}

/* ---- the passes ------------------------------------------------------------------------------- */

static cq_status as_graph_model(cq_module *model, const char *fn) {
  if (!model) return cq_fail(CQ_EINVAL, "%s: the model is NULL", fn);
  if (cq_is_graph(model)) return CQ_OK;
  if (strcmp(cq_module_type_name(model), "Sequential") == 0) return CQ_OK;
  return cq_fail(CQ_EINVAL, "%s: %s is neither a graph nor a Sequential", fn,
                 cq_module_type_name(model));
}

/* Quantizing a quantized model again is a mistake worth naming (rather than "nothing to
 * quantize"). */
static cq_status check_not_quantized(const char *fn, const cq_graph_node_info *info) {
  const char *type = cq_module_type_name(info->module);
  if (!strncmp(type, "Quantized", 9) || !strncmp(type, "DynamicQuantized", 16) ||
      !strcmp(type, "Quantize")) {
    return cq_fail(CQ_ESTATE, "%s: the model is already quantized (node '%s' is %s)", fn,
                   info->name, type);
  }
  return CQ_OK;
}

static cq_status prepare_graph(cq_module *model, const cq_graph_quant_options *options, int qat) {
  const char *fn = qat ? "prepare_qat_graph" : "prepare_graph";
  cq_status st = as_graph_model(model, fn);
  if (st != CQ_OK) return st;
  cq_graph_quant_options o = options ? *options : cq_graph_quant_defaults();
  if (qat && !cq_module_is_training(model)) {
    return cq_fail(CQ_ESTATE, "%s: the model must be in training mode (cq_module_train)", fn);
  }
  if (!qat && cq_module_is_training(model)) {
    return cq_fail(CQ_ESTATE, "%s: the model must be in eval mode (cq_module_train(m, 0)) for "
                   "post-training quantization", fn);
  }
  cq_qconfig qc;
  st = build_qconfig(&o, qat, &qc);
  if (st != CQ_OK) return st;
  if (!cq_is_graph(model)) {
    st = cq_graph_from_sequential(model);
    if (st != CQ_OK) return st;
    st = cq_graph_set_name(model, "GraphModule");
    if (st != CQ_OK) return st;
  }
  st = check_options(model, &o);
  if (st != CQ_OK) return st;
  for (int k = 0; k < cq_graph_num_nodes(model); k++) {
    cq_graph_node_info info;
    cq_graph_node(model, k, &info);
    const cq_module *post = info.module->post;
    if (cq_module_get_qconfig(info.module) ||
        (post && strcmp(cq_module_type_name(post), "Identity") != 0)) {
      return cq_fail(CQ_ESTATE, "%s: node '%s' is already prepared or has a qconfig", fn,
                     info.name);
    }
    st = check_not_quantized(fn, &info);
    if (st != CQ_OK) return st;
  }

  st = fuse_graph(model, &o, qat);
  if (st != CQ_OK) return st;
  const int nnodes = cq_graph_num_nodes(model);
  node_role *role = cq_calloc_for((size_t)nnodes + 1, sizeof *role, "graph roles");
  unsigned char *quantized = cq_calloc_for((size_t)cq_graph_num_values(model) + 1, 1, "graph roles");
  if (!role || !quantized) {
    st = CQ_ENOMEM;
  } else {
    st = assign_roles(model, &o, role, quantized);
    int any = 0;
    for (int k = 0; k < nnodes; k++) any |= role[k] == ROLE_ANCHOR;
    if (st == CQ_OK && !any) {
      st = cq_fail(CQ_EINVAL, "%s: no node of the model can be quantized (quantizable: Conv, "
                   "Linear, add, mul, cat, Hardswish, LeakyReLU; excluded nodes stay float)", fn);
    }
  }
  if (st == CQ_OK) st = place_stubs(model, &o, &qc, role, quantized);
  cq_free(role);
  cq_free(quantized);
  if (st != CQ_OK) return st;
  return qat ? cq_prepare_qat(model) : cq_prepare(model);
}

cq_status cq_prepare_graph(cq_module *model, const cq_graph_quant_options *options) {
  return prepare_graph(model, options, 0);
}

cq_status cq_prepare_qat_graph(cq_module *model, const cq_graph_quant_options *options) {
  return prepare_graph(model, options, 1);
}

cq_status cq_convert_graph(cq_module *model, const cq_graph_quant_options *options) {
  cq_status st = as_graph_model(model, "convert_graph");
  if (st != CQ_OK) return st;
  cq_graph_quant_options o = options ? *options : cq_graph_quant_defaults();
  if ((unsigned)o.backend >= CQ_BACKEND_COUNT) {
    return cq_fail(CQ_EINVAL, "convert_graph: unknown backend %d", (int)o.backend);
  }
  const cq_backend saved = cq_quantized_engine();
  cq_set_quantized_engine(o.backend);
  cq_module_train(model, 0);
  st = cq_convert(model);
  cq_set_quantized_engine(saved);
  return st;
}

cq_status cq_quantize_dynamic_graph(cq_module *model, const cq_graph_quant_options *options) {
  cq_status st = as_graph_model(model, "quantize_dynamic_graph");
  if (st != CQ_OK) return st;
  cq_graph_quant_options o = options ? *options : cq_graph_quant_defaults();
  if ((unsigned)o.backend >= CQ_BACKEND_COUNT) {
    return cq_fail(CQ_EINVAL, "quantize_dynamic_graph: unknown backend %d", (int)o.backend);
  }
  if (o.observer) {
    return cq_fail(CQ_EINVAL, "quantize_dynamic_graph: dynamic quantization observes activations "
                   "at run time; --observer does not apply");
  }
  if (!cq_is_graph(model)) {
    st = cq_graph_from_sequential(model);
    if (st == CQ_OK) st = cq_graph_set_name(model, "GraphModule");
    if (st != CQ_OK) return st;
  }
  st = check_options(model, &o);
  if (st != CQ_OK) return st;
  /* The nodes to convert, by name (quantize_dynamic's qconfig_spec accepts module paths). */
  static const char *const dynamic_types[] = {"Linear", "LSTM", "GRU", "LinearReLU"};
  const int nnodes = cq_graph_num_nodes(model);
  const char **names = cq_calloc_for((size_t)nnodes + 1, sizeof *names, "dynamic plan");
  if (!names) return CQ_ENOMEM;
  int n = 0;
  const char *per_channel_preset = NULL;
  if (o.per_channel == 1) per_channel_preset = "per_channel_dynamic_qconfig";
  cq_qconfig pcq;
  if (per_channel_preset) {
    st = cq_qconfig_preset(per_channel_preset, &pcq);
    if (st != CQ_OK) {
      cq_free(names);
      return st;
    }
  }
  for (int k = 0; k < nnodes && st == CQ_OK; k++) {
    cq_graph_node_info info;
    cq_graph_node(model, k, &info);
    st = check_not_quantized("quantize_dynamic_graph", &info);
    if (!name_in(cq_module_type_name(info.module), dynamic_types, 4)) continue;
    if (is_excluded(&o, info.name, info.module)) continue;
    names[n++] = info.name;
  }
  if (st != CQ_OK || n == 0) {
    cq_free(names);
    return st != CQ_OK ? st
                       : cq_fail(CQ_EINVAL, "quantize_dynamic_graph: no Linear, LSTM or GRU node "
                                            "to quantize");
  }
  for (int i = 0; i < n && per_channel_preset && st == CQ_OK; i++) {
    cq_module *m = cq_module_find(model, names[i]);
    if (m && strcmp(cq_module_type_name(m), "Linear") == 0) st = cq_module_set_qconfig(m, &pcq);
  }
  const cq_backend saved = cq_quantized_engine();
  cq_set_quantized_engine(o.backend);
  if (st == CQ_OK) st = cq_quantize_dynamic(model, n, names, CQ_QINT8);
  cq_set_quantized_engine(saved);
  cq_free(names);
  return st;
}

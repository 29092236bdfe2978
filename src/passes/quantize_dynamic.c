/* quantize_dynamic(model, qconfig_spec, dtype, inplace=True): torch.ao.quantization.quantize_dynamic
 * of PyTorch 1.13 (torch-1.13-semantics.md 4.6).
 *
 *   1. qconfig_spec: n == 0 means PyTorch's default set for the dtype (qint8 / float16: Linear,
 *      LSTM, GRU, LSTMCell, RNNCell, GRUCell; quint8: EmbeddingBag, Embedding; quint4x2:
 *      EmbeddingBag). A given set maps every entry to the dtype's default dynamic qconfig
 *      (default_dynamic_qconfig, float16_dynamic_qconfig, float_qparams_weight_only_qconfig,
 *      float_qparams_weight_only_qconfig_4bit). An entry names a PyTorch class ("Linear") or, as in
 *      PyTorch's sets, a submodule by its dotted path ("2", "features.fc").
 *   2. propagate_qconfig_: depth first, a module's qconfig is its parent's, replaced by the spec's
 *      when its class or path is in the set, replaced by its own qconfig attribute when it has one
 *      (an attribute with neither activation nor weight is an explicit None, as in passes.h).
 *   3. convert with the dynamic mapping: children first, fused modules (LinearReLU, ConvReLU2d, ...)
 *      as one unit; a module with a qconfig whose exact class is Linear, LinearReLU, LSTM or GRU is
 *      replaced by DynamicQuantizedLinear / DynamicQuantizedLinearReLU / DynamicQuantizedLSTM /
 *      DynamicQuantizedGRU, its weights quantized with fresh observers from the qconfig's weight
 *      factory (one per matrix) and the engine cq_quantized_engine() recorded. The root module
 *      itself is never swapped (PyTorch swaps children only). cquant has no float Embedding or
 *      RNN cell modules, so those entries of the mapping never match.
 *   4. model.eval(), and every qconfig attribute and activation_post_process observer removed.
 *
 * Every replacement is built before the first one is swapped in, so a failure leaves the model
 * untouched. Dtypes: qint8 is what runs. float16 needs FBGEMM's fp16 ops (as in PyTorch built
 * without FBGEMM, converting a module then fails: CQ_EUNSUPPORTED); quint8 / quint4x2 concern
 * embeddings only (a Linear or RNN given one fails as in PyTorch). */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/quantization.h"
#include "nn/layers.h"
#include "nn/quantized/dynamic_weight.h"
#include "nn/quantized/qmodules.h"

#define PATH_MAX_LEN 1024

static const char *const default_qint8_types[] = {"Linear",  "LSTM",    "GRU",
                                                  "LSTMCell", "RNNCell", "GRUCell"};
static const char *const default_quint8_types[] = {"EmbeddingBag", "Embedding"};
static const char *const default_quint4x2_types[] = {"EmbeddingBag"};

/* Classes of torch.nn.intrinsic (_FusedModule): converted as one unit, never entered. */
static int is_fused(const cq_module *m) {
  static const char *const prefixes[] = {"ConvReLU", "ConvBn", "ConvAdd", "LinearReLU",
                                         "LinearBn", "LinearLeakyReLU", "LinearTanh", "BNReLU"};
  const char *name = cq_module_type_name(m);
  for (size_t i = 0; i < sizeof prefixes / sizeof prefixes[0]; i++) {
    if (strncmp(name, prefixes[i], strlen(prefixes[i])) == 0) return 1;
  }
  return 0;
}

typedef struct swap {
  char *path;
  cq_module *replacement;
} swap;

typedef struct plan {
  const char *const *types;
  int ntypes;
  cq_qconfig spec_qconfig; /* the dtype's default qconfig, for the set's entries */
  cq_backend engine;
  swap *swaps;
  int nswaps, cap;
} plan;

static void plan_release(plan *pl) {
  for (int i = 0; i < pl->nswaps; i++) {
    cq_free(pl->swaps[i].path);
    cq_module_free(pl->swaps[i].replacement);
  }
  cq_free(pl->swaps);
  pl->swaps = NULL;
  pl->nswaps = pl->cap = 0;
}

static cq_status plan_add(plan *pl, const char *path, cq_module *replacement) {
  if (pl->nswaps == pl->cap) {
    const int cap = pl->cap ? 2 * pl->cap : 8;
    swap *s = cq_realloc(pl->swaps, sizeof *s * (size_t)cap);
    if (!s) {
      cq_module_free(replacement);
      return cq_fail(CQ_ENOMEM, "out of memory planning quantize_dynamic");
    }
    pl->swaps = s;
    pl->cap = cap;
  }
  const size_t n = strlen(path) + 1;
  char *copy = cq_malloc_for(n, "a module path");
  if (!copy) {
    cq_module_free(replacement);
    return CQ_ENOMEM;
  }
  memcpy(copy, path, n);
  pl->swaps[pl->nswaps].path = copy;
  pl->swaps[pl->nswaps].replacement = replacement;
  pl->nswaps++;
  return CQ_OK;
}

static int in_spec(const plan *pl, const cq_module *m, const char *path) {
  for (int i = 0; i < pl->ntypes; i++) {
    if (strcmp(pl->types[i], cq_module_type_name(m)) == 0 || strcmp(pl->types[i], path) == 0) {
      return 1;
    }
  }
  return 0;
}

/* propagate_qconfig_ for one module given its parent's qconfig. An own qconfig attribute with
 * neither activation nor weight is PyTorch's explicit `module.qconfig = None` (the passes'
 * convention, passes.h): the module and, unless they say otherwise, its children stay float. */
static const cq_qconfig *effective_qconfig(const plan *pl, const cq_module *m, const char *path,
                                           const cq_qconfig *parent) {
  const cq_qconfig *q = parent;
  if (in_spec(pl, m, path)) q = &pl->spec_qconfig;
  const cq_qconfig *own = cq_module_get_qconfig(m);
  if (own) q = own->activation.present || own->weight.present ? own : NULL;
  return q;
}

static cq_status join_path(char *buf, const char *prefix, const char *name) {
  const int n = prefix[0] ? snprintf(buf, PATH_MAX_LEN, "%s.%s", prefix, name)
                          : snprintf(buf, PATH_MAX_LEN, "%s", name);
  if (n < 0 || n >= PATH_MAX_LEN) {
    return cq_fail(CQ_EINVAL, "quantize_dynamic: module path '%s.%s' is too long", prefix, name);
  }
  return CQ_OK;
}

/* The mapping is by exact class: a QAT Linear or a quantizable LSTM shares its PyTorch class name
 * with the float module but is not in the dynamic mapping, so only the float modules match. */
static int is_float_linear(const cq_module *m) {
  int64_t in_features, out_features;
  int bias;
  return m && cq_module_is(m, "Linear") &&
         cq_linear_describe(m, &in_features, &out_features, &bias) == CQ_OK;
}

static int is_float_rnn(cq_module *m) {
  return (cq_module_is(m, "LSTM") || cq_module_is(m, "GRU")) &&
         cq_module_own_tensor(m, "weight_ih_l0") != NULL;
}

/* nnqd.Linear.from_float / nniqd.LinearReLU.from_float. For LinearReLU the weight and the qconfig
 * are those of its Linear child (from_float replaces mod by mod[0] before reading mod.qconfig). */
static cq_status convert_linear(const plan *pl, cq_module *m, const char *path,
                                const cq_qconfig *qc, cq_module **out) {
  const int relu = cq_module_is(m, "LinearReLU");
  const char *who = relu ? "nn.intrinsic.quantized.dynamic.LinearReLU"
                         : "nn.quantized.dynamic.Linear";
  cq_module *lin = m;
  if (relu) {
    lin = cq_module_num_children(m) > 0 ? cq_module_child(m, 0) : NULL;
    if (!is_float_linear(lin)) return CQ_OK; /* another class of that name: not in the mapping */
    char child_path[PATH_MAX_LEN];
    cq_status st = join_path(child_path, path, cq_module_child_name(m, 0));
    if (st != CQ_OK) return st;
    qc = effective_qconfig(pl, lin, child_path, qc);
  } else if (!is_float_linear(lin)) {
    return CQ_OK;
  }
  int64_t in_features = 0, out_features = 0;
  int has_bias = 0;
  cq_status st = cq_linear_describe(lin, &in_features, &out_features, &has_bias);
  if (st != CQ_OK) return st;
  const cq_named_tensor *w = cq_module_own_tensor(lin, "weight");
  const cq_named_tensor *b = has_bias ? cq_module_own_tensor(lin, "bias") : NULL;
  if (!w || (has_bias && !b)) return cq_fail(CQ_EINVAL, "%s: '%s' lacks its parameters", who, path);
  cq_observer_config cfg;
  st = cq_dynamic_weight_config(qc ? &qc->weight : NULL, who, 0, &cfg);
  if (st != CQ_OK) return st;
  cq_qparams wq;
  st = cq_dynamic_weight_observe(&cfg, w->tensor->data, out_features, in_features, &wq);
  if (st != CQ_OK) return cq_fail_context(st, "%s: weight of '%s'", who, path);
  st = cq_qmodule_dynamic_linear(out, in_features, out_features, w->tensor->data,
                                 b ? b->tensor->data : NULL, &wq, relu, pl->engine);
  cq_qparams_release(&wq);
  return st;
}

static cq_status convert_module(const plan *pl, cq_module *m, const char *path,
                                const cq_qconfig *qc, cq_module **out) {
  *out = NULL;
  if (cq_module_is(m, "Linear") || cq_module_is(m, "LinearReLU")) {
    return convert_linear(pl, m, path, qc, out);
  }
  if (is_float_rnn(m)) {
    cq_status st = cq_qmodule_dynamic_rnn(out, m, &qc->weight, pl->engine);
    if (st != CQ_OK) return cq_fail_context(st, "'%s'", path);
    return CQ_OK;
  }
  return CQ_OK; /* not in the dynamic mapping: stays as it is */
}

/* _convert: children first (fused modules are not entered), then the module itself. */
static cq_status plan_children(plan *pl, cq_module *m, const char *prefix,
                               const cq_qconfig *parent_qc) {
  for (int i = 0; i < cq_module_num_children(m); i++) {
    cq_module *child = cq_module_child(m, i);
    char path[PATH_MAX_LEN];
    cq_status st = join_path(path, prefix, cq_module_child_name(m, i));
    if (st != CQ_OK) return st;
    const cq_qconfig *qc = effective_qconfig(pl, child, path, parent_qc);
    if (!is_fused(child)) {
      st = plan_children(pl, child, path, qc);
      if (st != CQ_OK) return st;
    }
    if (!qc) continue;
    cq_module *replacement = NULL;
    st = convert_module(pl, child, path, qc, &replacement);
    if (st != CQ_OK) return st;
    if (replacement) {
      st = plan_add(pl, path, replacement);
      if (st != CQ_OK) return st;
    }
  }
  return CQ_OK;
}

/* _remove_qconfig: every qconfig attribute and activation_post_process observer goes. */
static void remove_qconfig(cq_module *m) {
  for (int i = 0; i < cq_module_num_children(m); i++) remove_qconfig(cq_module_child(m, i));
  cq_module_set_qconfig(m, NULL);
  cq_module_free(cq_module_detach_child(m, "activation_post_process"));
}

cq_status cq_quantize_dynamic(cq_module *model, int n, const char *const *types, cq_qdtype dtype) {
  if (!model) return cq_fail(CQ_EINVAL, "quantize_dynamic: model is NULL");
  if (n < 0 || (n > 0 && !types)) {
    return cq_fail(CQ_EINVAL, "quantize_dynamic: bad qconfig_spec (n = %d, types %s)", n,
                   types ? "given" : "NULL");
  }
  for (int i = 0; i < n; i++) {
    if (!types[i]) return cq_fail(CQ_EINVAL, "quantize_dynamic: qconfig_spec entry %d is NULL", i);
  }
  plan pl;
  memset(&pl, 0, sizeof pl);
  const char *preset = NULL;
  switch (dtype) {
    case CQ_QINT8:
      preset = "default_dynamic_qconfig";
      pl.types = default_qint8_types;
      pl.ntypes = 6;
      break;
    case CQ_QFLOAT16:
      preset = "float16_dynamic_qconfig";
      pl.types = default_qint8_types;
      pl.ntypes = 6;
      break;
    case CQ_QUINT8:
      preset = "float_qparams_weight_only_qconfig";
      pl.types = default_quint8_types;
      pl.ntypes = 2;
      break;
    case CQ_QUINT4X2:
      preset = "float_qparams_weight_only_qconfig_4bit";
      pl.types = default_quint4x2_types;
      pl.ntypes = 1;
      break;
    default: {
      const char *name = (unsigned)dtype < CQ_QDTYPE_COUNT ? cq_qdtype_name(dtype) : "?";
      if (n == 0) {
        return cq_fail(CQ_EINVAL,
                       "quantize_dynamic: Don't know how to quantize with default settings for "
                       "torch.%s. Provide full qconfig please",
                       name);
      }
      return cq_fail(CQ_EINVAL, "quantize_dynamic: Unknown dtype specified for quantize_dynamic: "
                     "torch.%s", name);
    }
  }
  if (n > 0) {
    pl.types = types;
    pl.ntypes = n;
  }
  cq_status st = cq_qconfig_preset(preset, &pl.spec_qconfig);
  if (st != CQ_OK) return st;
  pl.engine = cq_quantized_engine();
  const cq_qconfig *root_qc = effective_qconfig(&pl, model, "", NULL);
  st = plan_children(&pl, model, "", root_qc);
  if (st != CQ_OK) {
    plan_release(&pl);
    return st;
  }
  for (int i = 0; i < pl.nswaps; i++) {
    st = cq_module_replace(model, pl.swaps[i].path, pl.swaps[i].replacement, NULL);
    pl.swaps[i].replacement = NULL; /* owned by the model now (or freed by replace) */
    if (st != CQ_OK) break; /* cannot happen: every path was just found */
  }
  plan_release(&pl);
  if (st != CQ_OK) return st;
  cq_module_train(model, 0);
  remove_qconfig(model);
  return CQ_OK;
}

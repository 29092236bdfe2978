/* convert(model, inplace=True): swaps observed modules for quantized ones (torch-1.13-semantics.md
 * 4.5) and removes observers and qconfigs.
 *
 * A module is swapped when its qconfig is set and its class is in the mapping (PyTorch's
 * DEFAULT_STATIC_QUANT_MODULE_MAPPINGS for cq_convert). Children are visited first; fused modules
 * are swapped as one unit. The swap is from_float:
 *   QuantStub   -> Quantize(scale, zero_point, dtype) with the qparams of the stub's observer
 *   DeQuantStub -> DeQuantize
 *   Conv1d/2d, ConvReLU1d/2d -> quantized conv; Linear, LinearReLU -> quantized linear: a fresh
 *                  qconfig.weight observer run on the (already BN-folded) weight gives the weight
 *                  qparams, the module's activation observer the output qparams
 *   FloatFunctional (add, mul, cat) -> QFunctional with its observer's qparams
 *   ReLU6 -> QuantizedReLU6; Dropout -> QuantizedDropout(p) (neither needs an observer)
 *   LeakyReLU, Hardswish -> QuantizedLeakyReLU / QuantizedHardswish with the observer's qparams
 * The quantized modules follow the quantized engine current at convert (cq_quantized_engine).
 * Classes PyTorch maps but cquant has no quantized module for (BatchNorm2d, BNReLU2d, ELU,
 * ...) make convert fail with CQ_EUNSUPPORTED naming the module. Unmapped modules (ReLU,
 * MaxPool2d, Flatten, Identity, ...) stay float modules that run on quantized tensors.
 *
 * All new modules are built before the model changes: a failing convert leaves it unchanged. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/graph.h"
#include "cquant/modules.h"
#include "nn/fused.h"
#include "nn/layers.h"
#include "nn/qat/fake_quant.h"
#include "nn/quantized/qmodules.h"
#include "passes/passes.h"

/* ---- registry ----------------------------------------------------------------------------------- */

#define MAX_RULES 64

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static cq_module_mapping swap_rules[MAX_RULES];
static int nswap_rules;

cq_status cq_convert_register(const char *type_name, cq_swap_fn swap) {
  if (!type_name || !swap) return cq_fail(CQ_EINVAL, "convert_register: NULL argument");
  cq_status st = CQ_OK;
  pthread_mutex_lock(&registry_lock);
  int found = 0;
  for (int i = 0; i < nswap_rules; i++) {
    if (swap_rules[i].swap == swap && strcmp(swap_rules[i].type_name, type_name) == 0) found = 1;
  }
  if (!found) {
    if (nswap_rules == MAX_RULES) {
      st = cq_fail(CQ_ENOMEM, "convert_register: the table of %d rules is full", MAX_RULES);
    } else {
      swap_rules[nswap_rules].type_name = type_name;
      swap_rules[nswap_rules].swap = swap;
      nswap_rules++;
    }
  }
  pthread_mutex_unlock(&registry_lock);
  return st;
}

/* Snapshot of the rules for one type (the table only grows, entries never change). */
static int registered_swaps(const char *type_name, cq_swap_fn *out, int cap) {
  int n = 0;
  pthread_mutex_lock(&registry_lock);
  for (int i = 0; i < nswap_rules && n < cap; i++) {
    if (strcmp(swap_rules[i].type_name, type_name) == 0) out[n++] = swap_rules[i].swap;
  }
  pthread_mutex_unlock(&registry_lock);
  return n;
}

/* ---- qparams ------------------------------------------------------------------------------------ */

cq_status cq_weight_qparams(const cq_qspec *spec, const cq_tensor *weight, cq_qparams *out) {
  memset(out, 0, sizeof *out);
  if (!spec || !spec->present) return cq_fail(CQ_EINVAL, "the qconfig has no weight observer");
  if (spec->observer.dtype != CQ_QINT8) {
    return cq_fail(CQ_EINVAL, "Weight observer must have dtype torch.qint8, got %s%s",
                   (unsigned)spec->observer.dtype < CQ_QDTYPE_COUNT ? "torch." : "",
                   (unsigned)spec->observer.dtype < CQ_QDTYPE_COUNT
                       ? cq_qdtype_name(spec->observer.dtype)
                       : "an invalid dtype");
  }
  if (weight->dtype != CQ_F32) return cq_fail(CQ_EINVAL, "the float weight is not float32");
  cq_module *pp = NULL;
  cq_status st = cq_qspec_module(spec, &pp);
  if (st != CQ_OK) return st;
  float *scratch = cq_malloc_for(sizeof(float) * (size_t)(cq_tensor_numel(weight) + 1),
                                 "a weight copy");
  if (!scratch) st = CQ_ENOMEM;
  if (st == CQ_OK) st = cq_post_process_run(pp, weight, scratch, NULL); /* weight_post_process(w) */
  if (st == CQ_OK) st = cq_post_process_qparams(pp, out);
  cq_free(scratch);
  cq_module_free(pp);
  return st;
}

/* ---- from_float of the static mapping ---------------------------------------------------------- */

static cq_status output_qparams(cq_module *m, cq_qparams *yq) {
  memset(yq, 0, sizeof *yq);
  if (!m->post || !cq_is_post_process(m->post)) {
    return cq_fail(CQ_ESTATE, "%s has no activation observer (activation_post_process): prepare "
                              "and calibrate the model before convert", m->type->name);
  }
  return cq_post_process_qparams(m->post, yq);
}

static cq_status float_param(cq_module *m, const char *name, int required, const float **out) {
  cq_named_tensor *t = cq_module_own_tensor(m, name);
  *out = t ? t->tensor->data : NULL;
  if (required && !t) return cq_fail(CQ_ESTATE, "%s has no %s", m->type->name, name);
  if (t && t->tensor->dtype != CQ_F32) {
    return cq_fail(CQ_ESTATE, "%s.%s is not float32", m->type->name, name);
  }
  return CQ_OK;
}

/* Conv1d / Conv2d / ConvReLU1d / ConvReLU2d / Linear / LinearReLU. `observed` carries the
 * qconfig and the activation observer; `layer` the weight (the same module, or child "0"). */
static cq_status swap_weighted(cq_module *observed, cq_module *layer, int relu, cq_backend engine,
                               cq_module **out) {
  const float *w = NULL, *b = NULL;
  cq_status st = float_param(layer, "weight", 1, &w);
  if (st == CQ_OK) st = float_param(layer, "bias", 0, &b);
  if (st != CQ_OK) return st;
  cq_qparams wq, yq;
  memset(&wq, 0, sizeof wq);
  memset(&yq, 0, sizeof yq);
  st = cq_weight_qparams(&observed->qconfig->weight, cq_module_own_tensor(layer, "weight")->tensor,
                         &wq);
  if (st == CQ_OK) st = output_qparams(observed, &yq);
  if (st == CQ_OK) {
    if (cq_module_is(layer, "Linear")) {
      int64_t in_features = 0, out_features = 0;
      int bias = 0;
      st = cq_linear_describe(layer, &in_features, &out_features, &bias);
      if (st == CQ_OK) {
        st = cq_qmodule_linear(out, in_features, out_features, w, b, &wq, &yq, relu, engine);
      }
    } else {
      cq_conv_options o;
      int dims = 0;
      st = cq_conv_describe(layer, &o, &dims);
      if (st == CQ_OK) st = cq_qmodule_conv(out, &o, dims, w, b, &wq, &yq, relu, engine);
    }
  }
  cq_qparams_release(&wq);
  cq_qparams_release(&yq);
  return st;
}

static cq_status swap_static(cq_module *m, cq_backend engine, cq_module **out) {
  *out = NULL;
  const char *type = m->type->name;
  if (cq_module_is(m, "QuantStub")) {
    cq_qparams yq;
    cq_status st = output_qparams(m, &yq);
    if (st == CQ_OK) st = cq_qmodule_quantize(out, yq.scale[0], yq.zero_point[0], yq.dtype);
    cq_qparams_release(&yq);
    return st;
  }
  if (cq_module_is(m, "DeQuantStub")) return cq_qmodule_dequantize(out);
  if (cq_module_is(m, "Conv1d") || cq_module_is(m, "Conv2d") || cq_module_is(m, "Linear")) {
    return swap_weighted(m, m, 0, engine, out);
  }
  if (cq_module_is_fused_float(m) &&
      (cq_module_is(m, "ConvReLU1d") || cq_module_is(m, "ConvReLU2d") ||
       cq_module_is(m, "LinearReLU"))) {
    cq_module *layer = cq_module_find(m, "0");
    if (!layer) return cq_fail(CQ_ESTATE, "%s has no child (0)", type);
    return swap_weighted(m, layer, 1, engine, out);
  }
  if (cq_module_is(m, "ReLU6")) return cq_qmodule_relu6(out);
  if (cq_module_is(m, "LeakyReLU") || cq_module_is(m, "Hardswish")) {
    float slope = 0.0f;
    cq_qparams yq;
    cq_status st = output_qparams(m, &yq);
    if (st == CQ_OK && cq_module_is(m, "LeakyReLU")) {
      st = cq_leaky_relu_describe(m, &slope);
      if (st == CQ_OK) st = cq_qmodule_leaky_relu(out, slope, &yq);
    } else if (st == CQ_OK) {
      st = cq_qmodule_hardswish(out, &yq, engine);
    }
    cq_qparams_release(&yq);
    return st;
  }
  if (cq_module_is(m, "Dropout")) {
    float p = 0.0f;
    cq_status st = cq_dropout_describe(m, &p);
    return st == CQ_OK ? cq_qmodule_dropout(out, p) : st;
  }
  int dim = 0;
  const char *op = cq_functional_op(m, &dim);
  if (op) {
    cq_qparams yq;
    cq_status st = output_qparams(m, &yq);
    if (st == CQ_OK) {
      const cq_qfunctional_op qop = strcmp(op, "add") == 0   ? CQ_QF_ADD
                                    : strcmp(op, "mul") == 0 ? CQ_QF_MUL
                                                             : CQ_QF_CAT;
      st = cq_qmodule_functional(out, qop, dim, &yq, engine);
    }
    cq_qparams_release(&yq);
    return st;
  }
  static const char *const unsupported[] = {
      "BatchNorm2d", "BatchNorm3d", "BNReLU2d", "BNReLU3d", "ELU", "PReLU", "LayerNorm",
      "GroupNorm", "InstanceNorm1d", "InstanceNorm2d",
      "InstanceNorm3d", "Embedding", "EmbeddingBag", "Conv3d", "ConvReLU3d", "ConvTranspose1d",
      "ConvTranspose2d", "ConvTranspose3d",
  };
  for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
    if (strcmp(type, unsupported[i]) == 0) {
      return cq_fail(CQ_EUNSUPPORTED, "PyTorch swaps %s for a quantized module that cquant does "
                                      "not have yet", type);
    }
  }
  return CQ_OK; /* not mapped: stays */
}

/* DEFAULT_STATIC_QUANT_MODULE_MAPPINGS by class name (the QAT classes are registered by prepare_qat). */
static const cq_module_mapping static_mapping[] = {
    {"QuantStub", swap_static},
    {"DeQuantStub", swap_static},
    {"Conv1d", swap_static},
    {"Conv2d", swap_static},
    {"Conv3d", swap_static},
    {"ConvTranspose1d", swap_static},
    {"ConvTranspose2d", swap_static},
    {"ConvTranspose3d", swap_static},
    {"Linear", swap_static},
    {"ConvReLU1d", swap_static},
    {"ConvReLU2d", swap_static},
    {"ConvReLU3d", swap_static},
    {"LinearReLU", swap_static},
    {"FloatFunctional", swap_static},
    {"BatchNorm2d", swap_static},
    {"BatchNorm3d", swap_static},
    {"BNReLU2d", swap_static},
    {"BNReLU3d", swap_static},
    {"ReLU6", swap_static},
    {"Dropout", swap_static},
    {"Hardswish", swap_static},
    {"ELU", swap_static},
    {"LeakyReLU", swap_static},
    {"PReLU", swap_static},
    {"LayerNorm", swap_static},
    {"GroupNorm", swap_static},
    {"InstanceNorm1d", swap_static},
    {"InstanceNorm2d", swap_static},
    {"InstanceNorm3d", swap_static},
    {"Embedding", swap_static},
    {"EmbeddingBag", swap_static},
};

/* ---- the pass ----------------------------------------------------------------------------------- */

typedef struct swap_item {
  cq_module *parent;
  int index;           /* child index in parent */
  cq_module *module;   /* the new module (owned until applied) */
} swap_item;

typedef struct convert_state {
  const cq_module_mapping *mapping;
  int nmapping;
  int use_registry;
  cq_backend engine;
  swap_item *items;
  int n, cap;
  char path[1024];
} convert_state;

static cq_status push_swap(convert_state *s, cq_module *parent, int index, cq_module *module) {
  if (s->n == s->cap) {
    int cap = s->cap ? s->cap * 2 : 16;
    swap_item *items = cq_realloc(s->items, sizeof *items * (size_t)cap);
    if (!items) {
      cq_module_free(module);
      return cq_fail(CQ_ENOMEM, "convert: out of memory");
    }
    s->items = items;
    s->cap = cap;
  }
  s->items[s->n].parent = parent;
  s->items[s->n].index = index;
  s->items[s->n].module = module;
  s->n++;
  return CQ_OK;
}

static void drop_swaps_from(convert_state *s, int from) {
  for (int i = from; i < s->n; i++) cq_module_free(s->items[i].module);
  s->n = from;
}

/* swap_module(mod, mapping): the replacement of m, or NULL when it stays. */
static cq_status swap_one(convert_state *s, cq_module *m, cq_module **out) {
  *out = NULL;
  if (!cq_qconfig_is_set(m->qconfig)) return CQ_OK;
  if (s->use_registry) {
    cq_swap_fn fns[MAX_RULES];
    int n = registered_swaps(m->type->name, fns, MAX_RULES);
    for (int i = 0; i < n; i++) {
      cq_status st = fns[i](m, s->engine, out);
      if (st != CQ_OK || *out) return st;
    }
  }
  for (int i = 0; i < s->nmapping; i++) {
    if (strcmp(s->mapping[i].type_name, m->type->name) != 0) continue;
    cq_status st = s->mapping[i].swap(m, s->engine, out);
    if (st != CQ_OK || *out) return st;
  }
  return CQ_OK;
}

/* _convert(module): children first (fused modules as one unit), then each child's swap. */
static cq_status plan_convert(convert_state *s, cq_module *module) {
  for (int i = 0; i < module->nchildren; i++) {
    cq_module *child = module->children[i];
    size_t len = strlen(s->path);
    snprintf(s->path + len, sizeof s->path - len, "%s%s", len ? "." : "", module->child_names[i]);
    const int mark = s->n;
    cq_status st = CQ_OK;
    if (!cq_module_is_fused(child)) st = plan_convert(s, child);
    cq_module *replacement = NULL;
    if (st == CQ_OK) {
      st = swap_one(s, child, &replacement);
      if (st != CQ_OK) st = cq_fail_context(st, "convert: %s (%s)", s->path, child->type->name);
    }
    if (st == CQ_OK && replacement) {
      drop_swaps_from(s, mark); /* swaps inside the replaced module are moot */
      st = push_swap(s, module, i, replacement);
    }
    s->path[len] = '\0';
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

/* is_activation_post_process(module.activation_post_process): an observer or a fake-quant. */
static int is_post_to_remove(const cq_module *m) { return m->post && cq_is_post_process(m->post); }

/* Identities needed to keep FloatFunctional modules that were not swapped working. */
static int count_functional_posts(const cq_module *m) {
  int n = (cq_functional_op(m, NULL) && is_post_to_remove(m)) ? 1 : 0;
  for (int i = 0; i < m->nchildren; i++) n += count_functional_posts(m->children[i]);
  return n;
}

/* _remove_qconfig: qconfig attributes and activation_post_process children (observers and
 * fake-quants) of the whole tree. `spare` holds the Identities for FloatFunctional modules. */
static void remove_qconfig(cq_module *m, cq_module **spare, int *nspare) {
  for (int i = 0; i < m->nchildren; i++) remove_qconfig(m->children[i], spare, nspare);
  cq_free(m->qconfig);
  m->qconfig = NULL;
  if (!is_post_to_remove(m)) return;
  if (cq_functional_op(m, NULL) && *nspare > 0) {
    cq_module *old = NULL;
    cq_module_replace(m, "activation_post_process", spare[--*nspare], &old);
    cq_module_free(old);
  } else {
    cq_module_free(cq_module_detach_child(m, "activation_post_process"));
  }
}

static cq_status convert_impl(cq_module *model, const cq_module_mapping *mapping, int nmapping,
                              int use_registry, int remove) {
  convert_state s;
  memset(&s, 0, sizeof s);
  s.mapping = mapping;
  s.nmapping = nmapping;
  s.use_registry = use_registry;
  s.engine = cq_quantized_engine();
  cq_status st = plan_convert(&s, model);
  int nspare = 0;
  cq_module **spare = NULL;
  if (st == CQ_OK && remove) {
    /* counted before the swaps (an upper bound: swapped modules drop out); extras are freed */
    int need = count_functional_posts(model);
    if (need > 0) {
      spare = cq_calloc_for((size_t)need, sizeof *spare, "convert");
      if (!spare) st = CQ_ENOMEM;
      for (int i = 0; i < need && st == CQ_OK; i++) {
        st = cq_identity(&spare[i]);
        if (st == CQ_OK) nspare++;
      }
    }
  }
  if (st != CQ_OK) {
    drop_swaps_from(&s, 0);
    cq_free(s.items);
    for (int i = 0; i < nspare; i++) cq_module_free(spare[i]);
    cq_free(spare);
    return st;
  }
  for (int i = 0; i < s.n; i++) {
    swap_item *it = &s.items[i];
    /* a pointer swap that cannot fail; the old module is freed */
    cq_module_replace(it->parent, it->parent->child_names[it->index], it->module, NULL);
    it->module = NULL;
  }
  cq_free(s.items);
  if (remove) remove_qconfig(model, spare, &nspare);
  for (int i = 0; i < nspare; i++) cq_module_free(spare[i]);
  cq_free(spare);
  return CQ_OK;
}

cq_status cq_convert_with(cq_module *model, int n, const cq_module_mapping *mapping,
                          int remove_qconfig) {
  if (!model) return cq_fail(CQ_EINVAL, "convert: the model is NULL");
  if (n < 0 || (n > 0 && !mapping)) return cq_fail(CQ_EINVAL, "convert: bad mapping");
  return convert_impl(model, mapping, n, 0, remove_qconfig);
}

/* Attached activation post-processes, those whose observer computes qparams from data, and how
 * many of these saw data. */
static void count_observers(cq_module *m, int *observers, int *with_data, int *posts) {
  if (is_post_to_remove(m)) {
    (*posts)++;
    cq_observer *obs = cq_post_process_observer(m->post);
    const cq_observer_kind k = obs ? cq_observer_config_of(obs)->kind : CQ_OBSERVER_NOOP;
    if (obs && k != CQ_OBSERVER_FIXED_QPARAMS && k != CQ_OBSERVER_PLACEHOLDER &&
        k != CQ_OBSERVER_NOOP) {
      (*observers)++;
      if (cq_observer_has_data(obs)) (*with_data)++;
    }
  }
  for (int i = 0; i < m->nchildren; i++) count_observers(m->children[i], observers, with_data,
                                                          posts);
}

cq_status cq_convert(cq_module *model) {
  if (!model) return cq_fail(CQ_EINVAL, "convert: the model is NULL");
  int observers = 0, with_data = 0, posts = 0;
  count_observers(model, &observers, &with_data, &posts);
  if (posts == 0) {
    return cq_fail(CQ_ESTATE, "convert: the model was not prepared (no module has an activation "
                              "observer): call cq_prepare and calibrate it first");
  }
  if (observers > 0 && with_data == 0) {
    return cq_fail(CQ_ESTATE, "convert: none of the %d observers has seen data: calibrate the "
                              "prepared model (run it on representative inputs) before convert",
                   observers);
  }
  return convert_impl(model, static_mapping, (int)(sizeof static_mapping / sizeof static_mapping[0]),
                      1, 1);
}

/* prepare(model, inplace=True): propagate_qconfig_ and add_observer_ of torch.ao.quantization
 * (torch-1.13-semantics.md 4.4).
 *
 * Qconfig propagation: depth first, a module's own qconfig wins, else it inherits its parent's
 * (see passes.h for the explicit-None convention). Observers: a child named
 * "activation_post_process" made from qconfig.activation is attached, in PyTorch's order of
 * add_observer_, to
 *   - leaf modules whose class is in the default propagation list (the keys of the static, QAT and
 *     dynamic mappings: QuantStub, Conv1d/2d, Linear, BatchNorm2d, ReLU6, ...), DeQuantStub
 *     excepted;
 *   - fused modules (ConvReLU2d, LinearReLU, ...), observed as one unit;
 *   - the classes of options->non_leaf_types (prepare_qat's QAT modules);
 *   - FloatFunctional / QFunctional (add, cat): the observer replaces their Identity
 *     activation_post_process;
 *   - in training mode only, Sigmoid / Softmax / Hardsigmoid (fixed qparams 0..1) and Tanh (-1..1),
 *     with the fixed-qparams fake-quant instead of the qconfig's activation.
 * Dropout is skipped (not even visited), as in PyTorch. The module core applies the child to the
 * module's output after every forward, which is PyTorch's observer forward hook.
 *
 * Everything is validated and allocated before observers are attached (observer configs, the
 * dtypes a static quantized model can use, qint8 weights for the modules that have weights), and a
 * failure undoes what was done: a failing prepare leaves the model as it was.
 * Not supported (CQ_EUNSUPPORTED): LSTM with a qconfig (PyTorch swaps it for
 * nn.quantizable.LSTM) and memoryless activation observers (PyTorch's pre-hook on the input). */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "nn/fused.h"
#include "nn/layers.h"
#include "nn/qat/fake_quant.h"
#include "passes/passes.h"

int cq_qconfig_is_set(const cq_qconfig *qc) {
  return qc && (qc->activation.present || qc->weight.present);
}

/* ---- class lists -------------------------------------------------------------------------------- */

static int name_in(const char *name, const char *const *list, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (strcmp(name, list[i]) == 0) return 1;
  }
  return 0;
}

/* get_default_qconfig_propagation_list() of PyTorch 1.13, by class name. */
static int in_propagation_list(const cq_module *m) {
  static const char *const names[] = {
      "QuantStub", "DeQuantStub", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d",
      "ConvTranspose2d", "ConvTranspose3d", "Linear", "NonDynamicallyQuantizableLinear",
      "BatchNorm2d", "BatchNorm3d", "ReLU6", "Hardswish", "ELU", "LeakyReLU", "PReLU",
      "LayerNorm", "GroupNorm", "InstanceNorm1d", "InstanceNorm2d", "InstanceNorm3d",
      "Embedding", "EmbeddingBag", "Dropout", "FloatFunctional", "ConvReLU1d", "ConvReLU2d",
      "ConvReLU3d", "LinearReLU", "BNReLU2d", "BNReLU3d", "ConvBn1d", "ConvBn2d", "ConvBn3d",
      "ConvBnReLU1d", "ConvBnReLU2d", "ConvBnReLU3d", "LinearBn1d", "LSTM", "GRU", "LSTMCell",
      "RNNCell", "GRUCell", "Sequential",
  };
  return name_in(m->type->name, names, sizeof names / sizeof names[0]);
}

/* Modules whose static quantized version computes with a quantized weight. */
static int has_quantized_weight(const cq_module *m) {
  static const char *const names[] = {"Conv1d", "Conv2d", "Linear", "ConvReLU1d", "ConvReLU2d",
                                      "LinearReLU"};
  return name_in(m->type->name, names, sizeof names / sizeof names[0]);
}

static int is_functional(const cq_module *m) {
  return cq_module_is(m, "FloatFunctional") || cq_module_is(m, "QFunctional");
}

/* _get_special_act_post_process: the preset name, or NULL. */
static const char *special_post(const cq_module *m) {
  if (!m->training) return NULL;
  if (cq_module_is(m, "Sigmoid") || cq_module_is(m, "Hardsigmoid") || cq_module_is(m, "Softmax")) {
    return "default_fixed_qparams_range_0to1_fake_quant";
  }
  if (cq_module_is(m, "Tanh")) return "default_fixed_qparams_range_neg1to1_fake_quant";
  return NULL;
}

/* An observer or fake-quant child (not the Identity placeholder of FloatFunctional). */
static int has_observer(const cq_module *m) { return m->post && cq_is_post_process(m->post); }

/* ---- the plan ----------------------------------------------------------------------------------- */

typedef enum action_kind { ACT_QCONFIG, ACT_ATTACH, ACT_FUNCTIONAL } action_kind;

typedef struct action {
  action_kind kind;
  cq_module *module;
  cq_qconfig *qconfig;      /* ACT_QCONFIG: the copy to install */
  cq_module *post;          /* ACT_ATTACH / ACT_FUNCTIONAL: the new activation_post_process */
  cq_module *old_post;      /* ACT_FUNCTIONAL after apply: the Identity it replaced */
  int applied;
} action;

typedef struct plan {
  action *items;
  int n, cap;
  const cq_prepare_options *options;
  int any_qconfig;
  char path[1024];
} plan;

static cq_status plan_push(plan *p, action a) {
  if (p->n == p->cap) {
    int cap = p->cap ? p->cap * 2 : 32;
    action *items = cq_realloc(p->items, sizeof *items * (size_t)cap);
    if (!items) return cq_fail(CQ_ENOMEM, "prepare: out of memory");
    p->items = items;
    p->cap = cap;
  }
  p->items[p->n++] = a;
  return CQ_OK;
}

static void plan_free(plan *p) {
  for (int i = 0; i < p->n; i++) {
    cq_free(p->items[i].qconfig);
    cq_module_free(p->items[i].post);
  }
  cq_free(p->items);
  p->items = NULL;
  p->n = p->cap = 0;
}

static const char *where(const plan *p) { return p->path[0] ? p->path : "(root)"; }

/* Appends ".name" (or "name" at the top) to the path; returns the old length. */
static size_t path_push(plan *p, const char *name) {
  size_t len = strlen(p->path);
  snprintf(p->path + len, sizeof p->path - len, "%s%s", len ? "." : "", name);
  return len;
}

/* ---- propagation -------------------------------------------------------------------------------- */

/* Plans a qconfig copy for every module that inherits one. */
static cq_status plan_propagate(plan *p, cq_module *m, const cq_qconfig *parent) {
  const cq_qconfig *eff = m->qconfig ? m->qconfig : parent;
  if (cq_qconfig_is_set(eff)) p->any_qconfig = 1;
  if (!m->qconfig && eff) {
    cq_qconfig *copy = cq_malloc_for(sizeof *copy, "a qconfig");
    if (!copy) return CQ_ENOMEM;
    *copy = *eff;
    action a = {.kind = ACT_QCONFIG, .module = m, .qconfig = copy};
    cq_status st = plan_push(p, a);
    if (st != CQ_OK) {
      cq_free(copy);
      return st;
    }
  }
  for (int i = 0; i < m->nchildren; i++) {
    cq_status st = plan_propagate(p, m->children[i], eff);
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

static void apply_qconfigs(plan *p) {
  for (int i = 0; i < p->n; i++) {
    action *a = &p->items[i];
    if (a->kind != ACT_QCONFIG) continue;
    a->module->qconfig = a->qconfig;
    a->qconfig = NULL;
    a->applied = 1;
  }
}

cq_status cq_propagate_qconfig(cq_module *model) {
  if (!model) return cq_fail(CQ_EINVAL, "propagate_qconfig: the model is NULL");
  plan p = {0};
  cq_status st = plan_propagate(&p, model, NULL);
  if (st == CQ_OK) apply_qconfigs(&p);
  plan_free(&p);
  return st;
}

/* ---- observers ---------------------------------------------------------------------------------- */

static int memoryless(const cq_observer_config *c) {
  return (c->kind == CQ_OBSERVER_MOVING_AVERAGE_MINMAX ||
          c->kind == CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX) &&
         c->averaging_constant == 1.0f;
}

/* What a static quantized model can do with this qconfig on module m. */
static cq_status check_qconfig(const plan *p, const cq_module *m, const cq_qspec *act,
                               const cq_qconfig *qc) {
  if (act->present) {
    const cq_observer_config *c = &act->observer;
    if (c->kind == CQ_OBSERVER_PLACEHOLDER || c->kind == CQ_OBSERVER_NOOP) {
      return cq_fail(CQ_EINVAL, "prepare: %s (%s): the qconfig's activation is a %s, which only "
                                "dynamic quantization uses (cq_quantize_dynamic)",
                     where(p), m->type->name, cq_observer_class_name(c->kind));
    }
    if (c->dtype != CQ_QUINT8 && c->dtype != CQ_QINT8) {
      const char *dn = (unsigned)c->dtype < CQ_QDTYPE_COUNT ? cq_qdtype_name(c->dtype) : "invalid";
      return cq_fail(CQ_EINVAL, "prepare: %s (%s): activation dtype %s%s cannot be used for "
                                "static quantization (torch.quint8 or torch.qint8)",
                     where(p), m->type->name, (unsigned)c->dtype < CQ_QDTYPE_COUNT ? "torch." : "",
                     dn);
    }
    if (memoryless(c)) {
      return cq_fail(CQ_EUNSUPPORTED, "prepare: %s (%s): the activation observer is memoryless "
                                      "(averaging_constant=1), which PyTorch runs as a pre-hook on "
                                      "the module input; cquant observes outputs only",
                     where(p), m->type->name);
    }
  }
  if (has_quantized_weight(m)) {
    const cq_qspec *w = &qc->weight;
    if (!w->present) {
      return cq_fail(CQ_EINVAL, "prepare: %s (%s): the qconfig has no weight observer",
                     where(p), m->type->name);
    }
    if (w->observer.dtype != CQ_QINT8) {
      const cq_qdtype d = w->observer.dtype;
      return cq_fail(CQ_EINVAL, "prepare: %s (%s): weight dtype %s%s is not supported: the weight "
                                "observer must have dtype torch.qint8",
                     where(p), m->type->name, (unsigned)d < CQ_QDTYPE_COUNT ? "torch." : "",
                     (unsigned)d < CQ_QDTYPE_COUNT ? cq_qdtype_name(d) : "invalid");
    }
    cq_observer *probe = NULL;
    cq_status st = cq_observer_create(&w->observer, &probe);
    cq_observer_free(probe);
    if (st != CQ_OK) {
      return cq_fail_context(st, "prepare: %s (%s): weight observer", where(p), m->type->name);
    }
  }
  return CQ_OK;
}

static cq_status default_make_post(const cq_module *m, const cq_qspec *spec, cq_module **out,
                                   void *user) {
  (void)m;
  (void)user;
  *out = NULL;
  if (!spec->present) return cq_identity(out); /* qconfig.activation is torch.nn.Identity */
  return cq_qspec_module(spec, out);
}

/* insert_activation_post_process(m, special) */
static cq_status plan_insert(plan *p, cq_module *m, const char *special, action_kind kind) {
  const cq_qconfig *qc = m->qconfig; /* propagated already */
  if (!cq_qconfig_is_set(qc)) return CQ_OK;                     /* needs_observation */
  if (cq_module_is(m, "DeQuantStub")) return CQ_OK;
  if (has_observer(m)) {
    return cq_fail(CQ_ESTATE, "prepare: %s (%s) already has an activation_post_process: the model "
                              "was prepared already", where(p), m->type->name);
  }
  cq_qspec spec = qc->activation;
  if (special) {
    cq_status st = cq_qspec_preset(special, &spec);
    if (st != CQ_OK) return st;
  }
  cq_status st = check_qconfig(p, m, &spec, qc);
  if (st != CQ_OK) return st;
  cq_post_factory make = p->options->make_post ? p->options->make_post : default_make_post;
  cq_module *post = NULL;
  st = make(m, &spec, &post, p->options->user);
  if (st != CQ_OK) return cq_fail_context(st, "prepare: %s (%s)", where(p), m->type->name);
  action a = {.kind = kind, .module = m, .post = post};
  st = plan_push(p, a);
  if (st != CQ_OK) cq_module_free(post);
  return st;
}

static int in_non_leaf_list(const plan *p, const cq_module *m) {
  const cq_prepare_options *o = p->options;
  for (int i = 0; i < o->nnon_leaf; i++) {
    if (o->non_leaf_types[i] && strcmp(o->non_leaf_types[i], m->type->name) == 0) return 1;
  }
  return 0;
}

/* add_observer_(module) */
static cq_status plan_observers(plan *p, cq_module *module) {
  for (int i = 0; i < module->nchildren; i++) {
    cq_module *child = module->children[i];
    if (child == module->post && has_observer(module)) continue; /* an attached observer */
    size_t len = path_push(p, module->child_names[i]);
    cq_status st = CQ_OK;
    const char *special = special_post(child);
    if (cq_module_is(child, "Dropout")) {
      /* skipped */
    } else if (is_functional(child)) {
      st = plan_insert(p, child, NULL, ACT_FUNCTIONAL);
    } else if (cq_module_is_fused(child)) {
      st = plan_insert(p, child, NULL, ACT_ATTACH);
    } else if (special) {
      st = plan_insert(p, child, special, ACT_ATTACH);
    } else if (in_non_leaf_list(p, child)) {
      st = plan_insert(p, child, NULL, ACT_ATTACH);
    } else if (cq_module_is(child, "LSTM") && cq_qconfig_is_set(child->qconfig)) {
      st = cq_fail(CQ_EUNSUPPORTED, "prepare: %s (LSTM): static quantization swaps LSTM for "
                                    "nn.quantizable.LSTM, which cquant does not have; give it an "
                                    "empty qconfig (None) or use cq_quantize_dynamic", where(p));
    } else {
      st = plan_observers(p, child);
    }
    p->path[len] = '\0';
    if (st != CQ_OK) return st;
  }
  if (module->nchildren == 0 && !cq_module_is(module, "Sequential") &&
      in_propagation_list(module)) {
    return plan_insert(p, module, NULL, ACT_ATTACH);
  }
  return CQ_OK;
}

static void rollback(plan *p) {
  for (int i = p->n - 1; i >= 0; i--) {
    action *a = &p->items[i];
    if (!a->applied) continue;
    if (a->kind == ACT_QCONFIG) {
      a->qconfig = a->module->qconfig;
      a->module->qconfig = NULL;
    } else if (a->kind == ACT_ATTACH) {
      a->post = cq_module_detach_child(a->module, "activation_post_process");
    } else {
      cq_module *obs = NULL;
      cq_module_replace(a->module, "activation_post_process", a->old_post, &obs);
      a->old_post = NULL;
      a->post = obs;
    }
    a->applied = 0;
  }
}

/* Attaches the planned observers (the qconfigs are in place already); undoes everything when an
 * attachment fails. */
static cq_status apply(plan *p) {
  for (int i = 0; i < p->n; i++) {
    action *a = &p->items[i];
    if (a->kind == ACT_ATTACH) {
      cq_module *post = a->post;
      a->post = NULL;
      cq_status st = cq_module_add_child(a->module, "activation_post_process", post);
      if (st != CQ_OK) { /* add_child freed post */
        rollback(p);
        return st;
      }
      a->applied = 1;
    } else if (a->kind == ACT_FUNCTIONAL) {
      cq_module *old = NULL;
      if (a->module->post) {
        cq_module_replace(a->module, "activation_post_process", a->post, &old);
        a->post = NULL;
        a->old_post = old;
        a->applied = 1;
      } else {
        cq_module *post = a->post;
        a->post = NULL;
        cq_status st = cq_module_add_child(a->module, "activation_post_process", post);
        if (st != CQ_OK) {
          rollback(p);
          return st;
        }
        a->kind = ACT_ATTACH;
        a->applied = 1;
      }
    }
  }
  for (int i = 0; i < p->n; i++) {
    cq_module_free(p->items[i].old_post);
    p->items[i].old_post = NULL;
  }
  return CQ_OK;
}

cq_status cq_prepare_with(cq_module *model, const cq_prepare_options *options) {
  if (!model) return cq_fail(CQ_EINVAL, "prepare: the model is NULL");
  static const cq_prepare_options defaults = {0};
  plan p = {0};
  p.options = options ? options : &defaults;
  cq_status st = plan_propagate(&p, model, NULL);
  if (st == CQ_OK && !p.any_qconfig) {
    st = cq_fail(CQ_ESTATE, "prepare: no module has a qconfig: set one on the model or a "
                            "submodule with cq_module_set_qconfig (e.g. from "
                            "cq_get_default_qconfig) before preparing");
  }
  if (st == CQ_OK) {
    apply_qconfigs(&p); /* pointer moves: cannot fail; undone by rollback */
    st = plan_observers(&p, model);
    if (st == CQ_OK) {
      st = apply(&p);
    } else {
      rollback(&p);
    }
  }
  plan_free(&p);
  return st;
}

cq_status cq_prepare(cq_module *model) { return cq_prepare_with(model, NULL); }

/* Quantization-aware training passes (torch.ao.quantization, PyTorch 1.13; torch-1.13-semantics.md
 * 4.1, 4.5, 4.7):
 *
 *  fuse_modules_qat  conv+bn[+relu] -> nni.ConvBn*d / ConvBnReLU*d (BN kept, not folded),
 *                    linear+bn1d -> nni.LinearBn1d, conv+relu / linear+relu / bn2d+relu as
 *                    fuse_modules makes them. The first module is replaced by the fused one, the
 *                    others by Identity modules with its training flag.
 *  prepare_qat       requires training mode; propagate_qconfig_, then swaps every module with a
 *                    qconfig for its QAT version (the QAT mapping: Conv2d, Linear, ConvReLU2d,
 *                    LinearReLU, ConvBn1d/2d, ConvBnReLU1d/2d, LinearBn1d), then prepare with the
 *                    QAT classes observed as units and the qconfig's activation made as a
 *                    fake-quant module (or observer, for a post-training qconfig).
 *  convert           QAT modules are swapped by the rules this file registers with cq_convert
 *                    (cq_convert_register): BN folded with running statistics, weight_fake_quant
 *                    run on the final weight for the weight qparams, activation_post_process for
 *                    the output qparams (cq_post_process_qparams, which convert also uses for
 *                    the fake-quants of QuantStub and the other observed modules).
 *  enable_observer / enable_fake_quant / freeze_bn_stats as model.apply(...) helpers.
 *
 * Every pass validates and allocates before it changes the model; a failing pass leaves the model
 * as it was. */
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/rng.h"
#include "cquant/modules.h"
#include "nn/fused.h"
#include "nn/layers.h"
#include "nn/qat/fake_quant.h"
#include "nn/qat/qat_modules.h"
#include "nn/quantized/qmodules.h"
#include "passes/passes.h"

/* ---- fuse_modules_qat --------------------------------------------------------------------------- */

typedef enum qat_pattern_kind {
  QP_CONV_BN,
  QP_CONV_BN_RELU,
  QP_CONV_RELU,
  QP_LINEAR_BN,
  QP_LINEAR_RELU,
  QP_BN_RELU
} qat_pattern_kind;

typedef struct qat_pattern {
  int n;
  const char *types[3];
  qat_pattern_kind kind;
  const char *fused; /* class of the result */
} qat_pattern;

/* DEFAULT_OP_LIST_TO_FUSER_METHOD (is_qat=True) restricted to the module types cquant has. */
static const qat_pattern qat_patterns[] = {
    {2, {"Conv1d", "BatchNorm1d"}, QP_CONV_BN, "ConvBn1d"},
    {3, {"Conv1d", "BatchNorm1d", "ReLU"}, QP_CONV_BN_RELU, "ConvBnReLU1d"},
    {2, {"Conv2d", "BatchNorm2d"}, QP_CONV_BN, "ConvBn2d"},
    {3, {"Conv2d", "BatchNorm2d", "ReLU"}, QP_CONV_BN_RELU, "ConvBnReLU2d"},
    {2, {"Conv1d", "ReLU"}, QP_CONV_RELU, "ConvReLU1d"},
    {2, {"Conv2d", "ReLU"}, QP_CONV_RELU, "ConvReLU2d"},
    {2, {"Linear", "BatchNorm1d"}, QP_LINEAR_BN, "LinearBn1d"},
    {2, {"Linear", "ReLU"}, QP_LINEAR_RELU, "LinearReLU"},
    {2, {"BatchNorm2d", "ReLU"}, QP_BN_RELU, "BNReLU2d"},
};

/* Float modules only: a QAT Linear prints as "Linear" too but is not fusable. */
static int is_float(const cq_module *m) { return !cq_is_qat_module(m) && !cq_is_fake_quant(m); }

static const qat_pattern *qat_match(int n, cq_module *const *mods) {
  for (size_t p = 0; p < sizeof qat_patterns / sizeof qat_patterns[0]; p++) {
    if (qat_patterns[p].n != n) continue;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
      ok = cq_module_is(mods[i], qat_patterns[p].types[i]) && is_float(mods[i]);
    }
    if (ok) return &qat_patterns[p];
  }
  return NULL;
}

/* fuse_conv_bn / fuse_conv_bn_relu / fuse_linear_bn with is_qat=True: same modes, matching sizes. */
static cq_status check_qat_pattern(const qat_pattern *p, cq_module *const *mods) {
  if (p->kind == QP_CONV_BN || p->kind == QP_CONV_BN_RELU || p->kind == QP_LINEAR_BN) {
    for (int i = 1; i < p->n; i++) {
      if (mods[i]->training != mods[0]->training) {
        return cq_fail(CQ_EINVAL, "fuse_modules_qat: %s and %s must be in the same mode (train or "
                                  "eval)", mods[0]->type->name, mods[i]->type->name);
      }
    }
    int64_t features = 0, channels = 0;
    cq_status st = cq_batchnorm_describe(mods[1], &features, NULL, NULL);
    if (st != CQ_OK) return st;
    if (p->kind == QP_LINEAR_BN) {
      int64_t in_f = 0;
      int bias = 0;
      st = cq_linear_describe(mods[0], &in_f, &channels, &bias);
    } else {
      cq_conv_options o;
      int dims = 0;
      st = cq_conv_describe(mods[0], &o, &dims);
      channels = o.out_channels;
    }
    if (st != CQ_OK) return st;
    if (features != channels) {
      return cq_fail(CQ_EINVAL, "fuse_modules_qat: Output channel of %s (%lld) must match "
                                "num_features of %s (%lld)", mods[0]->type->name,
                     (long long)channels, mods[1]->type->name, (long long)features);
    }
  }
  return CQ_OK;
}

/* A throwaway module of m's class for a fused constructor's type check (no generator draws). */
static cq_status stand_in(const cq_module *m, cq_module **out) {
  *out = NULL;
  if (cq_module_is(m, "ReLU")) return cq_relu(out);
  if (cq_module_is(m, "Linear")) return cq_linear(out, 0, 0, 0);
  if (cq_module_is(m, "BatchNorm2d")) return cq_batchnorm2d(out, 0);
  cq_conv_options o = cq_conv_defaults(1, 1, 1, 1);
  o.bias = 0;
  cq_rng saved = *cq_default_rng();
  cq_status st = cq_module_is(m, "Conv1d") ? cq_conv1d(out, &o) : cq_conv2d(out, &o);
  *cq_default_rng() = saved;
  return st;
}

#define MAX_GROUP 8

cq_status cq_fuse_modules_qat(cq_module *model, int n, const char *const *names) {
  if (!model) return cq_fail(CQ_EINVAL, "fuse_modules_qat: the model is NULL");
  if (n < 1 || !names) {
    return cq_fail(CQ_EINVAL, "fuse_modules_qat: no module names given (n = %d)", n);
  }
  if (n > MAX_GROUP) {
    return cq_fail(CQ_EINVAL, "fuse_modules_qat: %d names; a fusion group has at most 3 modules",
                   n);
  }
  cq_module *mods[MAX_GROUP];
  for (int i = 0; i < n; i++) {
    if (!names[i]) return cq_fail(CQ_EINVAL, "fuse_modules_qat: name %d is NULL", i);
    if (!names[i][0]) return cq_fail(CQ_EINVAL, "fuse_modules_qat: cannot fuse the root module");
    mods[i] = cq_module_find(model, names[i]);
    if (!mods[i]) return cq_fail_context(CQ_EINVAL, "fuse_modules_qat");
    for (int j = 0; j < i; j++) {
      if (mods[j] == mods[i]) {
        return cq_fail(CQ_EINVAL, "fuse_modules_qat: '%s' and '%s' name the same module",
                       names[j], names[i]);
      }
    }
  }
  const qat_pattern *p = qat_match(n, mods);
  if (!p) {
    char types[256];
    size_t len = 0;
    types[0] = '\0';
    for (int i = 0; i < n && len < sizeof types; i++) {
      int w = snprintf(types + len, sizeof types - len, "%s%s", i ? ", " : "",
                       mods[i]->type->name);
      if (w < 0) break;
      len += (size_t)w;
    }
    return cq_fail(CQ_EINVAL, "fuse_modules_qat: cannot fuse (%s): not a supported pattern "
                              "(Conv1d/2d+BatchNorm1d/2d[+ReLU], Conv1d/2d+ReLU, "
                              "Linear+BatchNorm1d, Linear+ReLU, BatchNorm2d+ReLU of float modules)",
                   types);
  }
  cq_status st = check_qat_pattern(p, mods);
  if (st != CQ_OK) return st;

  /* Build the container around placeholders, and the Identity modules, before any change. */
  cq_module *fused = NULL;
  cq_module *identities[MAX_GROUP] = {0};
  if (p->kind == QP_CONV_BN || p->kind == QP_CONV_BN_RELU || p->kind == QP_LINEAR_BN) {
    cq_module *ph[3] = {NULL, NULL, NULL};
    for (int i = 0; i < p->n && st == CQ_OK; i++) st = cq_identity(&ph[i]);
    if (st == CQ_OK) {
      st = cq_fused_bn_container(&fused, p->fused, ph[0], ph[1], ph[2]);
    } else {
      for (int i = 0; i < 3; i++) cq_module_free(ph[i]);
    }
  } else {
    cq_module *a = NULL, *b = NULL;
    st = stand_in(mods[0], &a);
    if (st == CQ_OK) st = stand_in(mods[1], &b);
    if (st == CQ_OK) {
      if (p->kind == QP_LINEAR_RELU) {
        st = cq_fused_linear_relu(&fused, a, b);
      } else if (p->kind == QP_BN_RELU) {
        st = cq_fused_bn_relu(&fused, a, b);
      } else {
        st = cq_fused_conv_relu(&fused, a, b);
      }
    } else {
      cq_module_free(a);
      cq_module_free(b);
    }
  }
  for (int i = 1; i < n && st == CQ_OK; i++) {
    st = cq_identity(&identities[i]);
    if (st == CQ_OK) identities[i]->training = mods[0]->training;
  }
  if (st != CQ_OK) {
    cq_module_free(fused);
    for (int i = 1; i < n; i++) cq_module_free(identities[i]);
    return st;
  }

  /* Pointer swaps only from here on. */
  cq_module *old[MAX_GROUP] = {0};
  for (int i = 1; i < n; i++) cq_module_replace(model, names[i], identities[i], &old[i]);
  cq_module_replace(model, names[0], fused, &old[0]);
  static const char *const slot[3] = {"0", "1", "2"};
  for (int i = 0; i < n; i++) {
    cq_module *placeholder = NULL;
    cq_module_replace(fused, slot[i], old[i], &placeholder);
    cq_module_free(placeholder);
  }
  return CQ_OK;
}

/* ---- convert rules ------------------------------------------------------------------------------ */

/* from_float of the quantized classes for a QAT module. */
static cq_status qat_to_quantized(cq_module *m, cq_backend engine, cq_module **out) {
  *out = NULL;
  if (!cq_is_qat_module(m)) return CQ_OK; /* a float module of the same class name */
  const cq_qat_impl *p = m->impl;
  cq_named_tensor *w = cq_module_own_tensor(m, "weight");
  cq_named_tensor *b = cq_module_own_tensor(m, "bias");
  cq_module *wpp = cq_module_find(m, "weight_fake_quant");
  if (!w || !wpp) return cq_module_fail(m, CQ_ESTATE, "weight or weight_fake_quant is missing");
  if (!m->post || !cq_is_post_process(m->post)) {
    return cq_module_fail(m, CQ_ESTATE, "Input QAT module must have observer attached "
                                        "(activation_post_process): prepare it with "
                                        "cq_prepare_qat");
  }
  const int64_t nw = cq_tensor_numel(w->tensor);
  const int64_t C = p->dims == 0 ? p->out_features : p->conv.out_channels;
  const int bn = cq_qat_has_bn(m) != 0;
  const int has_bias = bn || b;
  float *weight = cq_malloc_for(sizeof(float) * (size_t)(nw ? nw : 1), "converted weight");
  float *scratch = cq_malloc_for(sizeof(float) * (size_t)(nw ? nw : 1), "converted weight");
  float *bias = has_bias ? cq_calloc_for((size_t)(C ? C : 1), sizeof(float), "converted bias")
                         : NULL;
  cq_tensor *wt = NULL;
  cq_qparams wq, yq;
  memset(&wq, 0, sizeof wq);
  memset(&yq, 0, sizeof yq);
  cq_status st = (weight && scratch && (bias || !has_bias)) ? CQ_OK : CQ_ENOMEM;
  if (st == CQ_OK) {
    memcpy(weight, w->tensor->data, sizeof(float) * (size_t)nw);
    if (b) memcpy(bias, b->tensor->data, sizeof(float) * (size_t)C);
    if (bn) { /* fuse_conv_bn_weights / fuse_linear_bn_weights with the running statistics */
      cq_module *bnm = cq_module_find(m, "bn");
      st = bnm ? cq_fold_bn(weight, C, C ? nw / C : 0, b ? b->tensor->data : NULL, bias, bnm,
                            p->dims == 0)
               : cq_module_fail(m, CQ_ESTATE, "bn is missing");
    }
  }
  if (st == CQ_OK) st = cq_tensor_wrap(&wt, CQ_F32, w->tensor->ndim, w->tensor->shape, weight);
  /* weight_post_process(mod.weight), then its calculate_qparams() */
  if (st == CQ_OK) st = cq_post_process_run(wpp, wt, scratch, NULL);
  if (st == CQ_OK && cq_post_process_dtype(wpp) != CQ_QINT8) {
    st = cq_module_fail(m, CQ_EINVAL, "Weight observer must have a dtype of qint8 (got %s)",
                        cq_qdtype_name(cq_post_process_dtype(wpp)));
  }
  if (st == CQ_OK) st = cq_post_process_qparams(wpp, &wq);
  if (st == CQ_OK) st = cq_post_process_qparams(m->post, &yq);
  const int relu = p->kind == CQ_QAT_LINEAR_RELU || p->kind == CQ_QAT_CONV_RELU ||
                   p->kind == CQ_QAT_CONV_BN_RELU;
  if (st == CQ_OK) {
    if (p->dims == 0) {
      st = cq_qmodule_linear(out, p->in_features, p->out_features, weight, bias, &wq, &yq, relu,
                             engine);
    } else {
      cq_conv_options o = p->conv;
      o.bias = has_bias;
      st = cq_qmodule_conv(out, &o, p->dims, weight, bias, &wq, &yq, relu, engine);
    }
  }
  cq_qparams_release(&wq);
  cq_qparams_release(&yq);
  cq_tensor_free(wt);
  cq_free(weight);
  cq_free(scratch);
  cq_free(bias);
  return st;
}

/* The classes of the QAT mapping's values (prepare's observer_non_leaf_module_list). */
static const char *const qat_classes[] = {
    "Conv2d",   "Linear",       "ConvBn1d",   "ConvBn2d",   "ConvBnReLU1d",
    "ConvBnReLU2d", "ConvReLU2d", "LinearReLU", "LinearBn1d",
};
#define NQAT_CLASSES ((int)(sizeof qat_classes / sizeof qat_classes[0]))

static cq_status register_convert_rules(void) {
  cq_status st = CQ_OK;
  for (int i = 0; i < NQAT_CLASSES && st == CQ_OK; i++) {
    st = cq_convert_register(qat_classes[i], qat_to_quantized);
  }
  return st;
}

/* ---- prepare_qat -------------------------------------------------------------------------------- */

typedef struct ptr_list {
  cq_module **items;
  int n, cap;
} ptr_list;

static cq_status ptr_push(ptr_list *l, cq_module *m) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 32;
    cq_module **items = cq_realloc(l->items, sizeof *items * (size_t)cap);
    if (!items) return cq_fail(CQ_ENOMEM, "prepare_qat: out of memory");
    l->items = items;
    l->cap = cap;
  }
  l->items[l->n++] = m;
  return CQ_OK;
}

/* Modules without a qconfig attribute: propagation gives them one, undone on failure. */
static cq_status collect_unset(cq_module *m, ptr_list *l) {
  if (!m->qconfig) {
    cq_status st = ptr_push(l, m);
    if (st != CQ_OK) return st;
  }
  for (int i = 0; i < m->nchildren; i++) {
    cq_status st = collect_unset(m->children[i], l);
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

typedef struct qat_swap {
  cq_module *parent;
  int index;
  cq_module *old_module; /* the float module (owned by this list once swapped out) */
  cq_module *new_module; /* the QAT module (owned by this list until swapped in) */
} qat_swap;

typedef struct swap_list {
  qat_swap *items;
  int n, cap;
  char path[1024];
} swap_list;

static cq_status swap_push(swap_list *l, qat_swap s) {
  if (l->n == l->cap) {
    int cap = l->cap ? l->cap * 2 : 16;
    qat_swap *items = cq_realloc(l->items, sizeof *items * (size_t)cap);
    if (!items) return cq_fail(CQ_ENOMEM, "prepare_qat: out of memory");
    l->items = items;
    l->cap = cap;
  }
  l->items[l->n++] = s;
  return CQ_OK;
}

/* convert(model, mapping=QAT mapping, remove_qconfig=False): children first, fused modules as one
 * unit; every new module is built before anything changes. */
static cq_status plan_swaps(cq_module *module, swap_list *l) {
  for (int i = 0; i < module->nchildren; i++) {
    cq_module *child = module->children[i];
    size_t len = strlen(l->path);
    snprintf(l->path + len, sizeof l->path - len, "%s%s", len ? "." : "", module->child_names[i]);
    cq_status st = CQ_OK;
    if (!cq_module_is_fused(child)) st = plan_swaps(child, l);
    if (st == CQ_OK && cq_qconfig_is_set(child->qconfig) && is_float(child)) {
      cq_module *q = NULL;
      st = cq_qat_from_float(child, child->qconfig, &q);
      if (st != CQ_OK) {
        st = cq_fail_context(st, "prepare_qat: %s (%s)", l->path, child->type->name);
      } else if (q) {
        qat_swap s = {module, i, child, q};
        st = swap_push(l, s);
        if (st != CQ_OK) cq_module_free(q);
      }
    }
    l->path[len] = '\0';
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

static void apply_swaps(swap_list *l) {
  for (int i = 0; i < l->n; i++) {
    qat_swap *s = &l->items[i];
    cq_module *old = NULL;
    cq_module_replace(s->parent, s->parent->child_names[s->index], s->new_module, &old);
    if (cq_qat_has_bn(s->new_module)) cq_qat_swap_bn(s->new_module, s->old_module);
  }
}

static void undo_swaps(swap_list *l) {
  for (int i = l->n - 1; i >= 0; i--) {
    qat_swap *s = &l->items[i];
    if (cq_qat_has_bn(s->new_module)) cq_qat_swap_bn(s->new_module, s->old_module);
    cq_module *back = NULL;
    cq_module_replace(s->parent, s->parent->child_names[s->index], s->old_module, &back);
  }
}

static cq_status qat_make_post(const cq_module *m, const cq_qspec *spec, cq_module **out,
                               void *user) {
  (void)m;
  (void)user;
  if (!spec->present) return cq_identity(out); /* qconfig.activation is torch.nn.Identity */
  return cq_qspec_module(spec, out);
}

cq_status cq_prepare_qat(cq_module *model) {
  if (!model) return cq_fail(CQ_EINVAL, "prepare_qat: the model is NULL");
  if (!model->training) {
    return cq_fail(CQ_ESTATE, "prepare_qat only works on models in training mode (call "
                              "cq_module_train(model, 1) first)");
  }
  cq_status st = register_convert_rules();
  if (st != CQ_OK) return st;
  ptr_list unset = {0};
  swap_list swaps;
  memset(&swaps, 0, sizeof swaps);
  st = collect_unset(model, &unset);
  if (st == CQ_OK) st = cq_propagate_qconfig(model);
  if (st != CQ_OK) {
    cq_free(unset.items);
    return st;
  }
  st = plan_swaps(model, &swaps);
  if (st == CQ_OK) {
    apply_swaps(&swaps);
    cq_prepare_options options;
    memset(&options, 0, sizeof options);
    options.nnon_leaf = NQAT_CLASSES;
    options.non_leaf_types = qat_classes;
    options.make_post = qat_make_post;
    st = cq_prepare_with(model, &options);
    if (st != CQ_OK) undo_swaps(&swaps);
  }
  for (int i = 0; i < swaps.n; i++) {
    /* on success the float modules go, on failure the QAT ones */
    cq_module_free(st == CQ_OK ? swaps.items[i].old_module : swaps.items[i].new_module);
  }
  cq_free(swaps.items);
  if (st != CQ_OK) {
    for (int i = 0; i < unset.n; i++) cq_module_set_qconfig(unset.items[i], NULL);
  }
  cq_free(unset.items);
  return st;
}

/* ---- model.apply helpers ------------------------------------------------------------------------ */

static void apply_all(cq_module *m, void (*fn)(cq_module *, int), int arg) {
  for (int i = 0; i < m->nchildren; i++) apply_all(m->children[i], fn, arg);
  fn(m, arg);
}

void cq_enable_observer(cq_module *model, int enabled) {
  if (model) apply_all(model, cq_fake_quant_enable_observer, enabled);
}

void cq_enable_fake_quant(cq_module *model, int enabled) {
  if (model) apply_all(model, cq_fake_quant_enable_fake_quant, enabled);
}

/* torch.nn.intrinsic.qat.freeze_bn_stats / update_bn_stats act on the ConvBn classes only. */
static void freeze_conv_bn(cq_module *m, int frozen) {
  if (cq_qat_has_bn(m) == 2) cq_qat_freeze_bn(m, frozen);
}

void cq_freeze_bn_stats(cq_module *model, int frozen) {
  if (model) apply_all(model, freeze_conv_bn, frozen);
}

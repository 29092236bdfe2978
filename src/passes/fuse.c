/* fuse_modules for post-training quantization (torch.ao.quantization.fuse_modules with
 * is_qat=False): conv+bn, conv+bn+relu, conv+relu, linear+bn1d, linear+relu, bn2d+relu.
 *
 * The first module of the group is replaced by the fused module and the others by Identity modules
 * with its training flag, as fuse_known_modules does. BatchNorm is folded into a copy of the conv
 * or linear (fuse_conv_bn_eval / fuse_linear_bn_eval, which require eval mode) with PyTorch's exact
 * float32 operation order; Conv+ReLU and friends become the nni containers of nn/fused.h (no mode
 * requirement, as in PyTorch, so the seed's QAT script fuses its training model with this pass). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/rng.h"
#include "cquant/modules.h"
#include "nn/fused.h"
#include "nn/layers.h"
#include "passes/passes.h"

/* ---- BN folding ------------------------------------------------------------------------------- */

cq_status cq_fold_bn(float *weight, int64_t channels, int64_t per_channel, const float *bias_in,
                     float *bias_out, const cq_module *bn, int linear) {
  int64_t features = 0;
  double eps = 0.0;
  cq_status st = cq_batchnorm_describe(bn, &features, &eps, NULL);
  if (st != CQ_OK) return st;
  if (features != channels) {
    return cq_fail(CQ_ESHAPE, "fuse: %s has %lld features but the layer has %lld output channels",
                   bn->type->name, (long long)features, (long long)channels);
  }
  cq_module *b = (cq_module *)bn;
  const cq_named_tensor *tg = cq_module_own_tensor(b, "weight");
  const cq_named_tensor *tb = cq_module_own_tensor(b, "bias");
  const cq_named_tensor *tm = cq_module_own_tensor(b, "running_mean");
  const cq_named_tensor *tv = cq_module_own_tensor(b, "running_var");
  if (!tm || !tv) return cq_fail(CQ_ESTATE, "fuse: %s has no running statistics", bn->type->name);
  const float *gamma = tg ? tg->tensor->data : NULL; /* None -> ones */
  const float *beta = tb ? tb->tensor->data : NULL;  /* None -> zeros */
  const float *mean = tm->tensor->data, *var = tv->tensor->data;
  const float feps = (float)eps; /* tensor + Python float computes in float32 */
  for (int64_t c = 0; c < channels; c++) {
    const float r = 1.0f / sqrtf(var[c] + feps); /* torch.rsqrt: sqrt, then 1/x */
    const float g = gamma ? gamma[c] : 1.0f;
    const float bb = beta ? beta[c] : 0.0f;
    const float b0 = bias_in ? bias_in[c] : 0.0f;
    float *w = weight + c * per_channel;
    if (linear) {
      const float k = g * r;
      for (int64_t i = 0; i < per_channel; i++) w[i] = w[i] * k;
      const float d = b0 - mean[c];
      const float dk = d * k;
      bias_out[c] = dk + bb;
    } else {
      const float k = g * r;
      for (int64_t i = 0; i < per_channel; i++) w[i] = w[i] * k;
      const float d = b0 - mean[c];
      const float dr = d * r;
      const float drg = dr * g;
      bias_out[c] = drg + bb;
    }
  }
  return CQ_OK;
}

static cq_status check_bn_eval(const cq_module *layer, const cq_module *bn) {
  if (layer->training != bn->training) {
    return cq_fail(CQ_EINVAL, "fuse_modules: %s and %s must both be in the same mode (train or "
                              "eval)", layer->type->name, bn->type->name);
  }
  if (bn->training) {
    return cq_fail(CQ_EINVAL, "fuse_modules: folding %s into %s needs eval mode (call "
                              "cq_module_train(model, 0) first; for training use "
                              "cq_fuse_modules_qat)", bn->type->name, layer->type->name);
  }
  return CQ_OK;
}

/* Copies weight and (bias or zeros) of `src` into `dst`, folds bn, and gives dst src's flags. */
static cq_status fold_into_copy(const cq_module *src, const cq_module *bn, cq_module *dst,
                                int64_t channels, int linear) {
  cq_module *s = (cq_module *)src;
  const cq_named_tensor *sw = cq_module_own_tensor(s, "weight");
  const cq_named_tensor *sb = cq_module_own_tensor(s, "bias");
  cq_named_tensor *dw = cq_module_own_tensor(dst, "weight");
  cq_named_tensor *db = cq_module_own_tensor(dst, "bias");
  if (!sw || !dw || !db || cq_tensor_nbytes(sw->tensor) != cq_tensor_nbytes(dw->tensor)) {
    return cq_fail(CQ_ESTATE, "fuse: %s has unexpected parameters", src->type->name);
  }
  memcpy(dw->tensor->data, sw->tensor->data, cq_tensor_nbytes(sw->tensor));
  const int64_t per_channel = channels ? cq_tensor_numel(dw->tensor) / channels : 0;
  cq_status st = cq_fold_bn(dw->tensor->data, channels, per_channel,
                            sb ? (const float *)sb->tensor->data : NULL, db->tensor->data, bn,
                            linear);
  if (st != CQ_OK) return st;
  dst->training = src->training;
  if (src->qconfig) st = cq_module_set_qconfig(dst, src->qconfig);
  return st;
}

cq_status cq_fold_conv_bn_module(const cq_module *conv, const cq_module *bn, cq_module **out) {
  *out = NULL;
  cq_conv_options o;
  int dims = 0;
  cq_status st = cq_conv_describe(conv, &o, &dims);
  if (st != CQ_OK) return st;
  if (!cq_module_is(bn, dims == 1 ? "BatchNorm1d" : "BatchNorm2d")) {
    return cq_fail(CQ_EINVAL, "fuse: %s cannot be folded into %s", bn->type->name,
                   conv->type->name);
  }
  st = check_bn_eval(conv, bn);
  if (st != CQ_OK) return st;
  o.bias = 1;
  /* A deep copy in PyTorch: building the copy must not draw from the generator. */
  cq_rng saved = *cq_default_rng();
  cq_module *copy = NULL;
  st = dims == 1 ? cq_conv1d(&copy, &o) : cq_conv2d(&copy, &o);
  *cq_default_rng() = saved;
  if (st != CQ_OK) return st;
  st = fold_into_copy(conv, bn, copy, o.out_channels, 0);
  if (st != CQ_OK) {
    cq_module_free(copy);
    return st;
  }
  *out = copy;
  return CQ_OK;
}

cq_status cq_fold_linear_bn_module(const cq_module *linear, const cq_module *bn, cq_module **out) {
  *out = NULL;
  int64_t in_features = 0, out_features = 0;
  int bias = 0;
  cq_status st = cq_linear_describe(linear, &in_features, &out_features, &bias);
  if (st != CQ_OK) return st;
  if (!cq_module_is(bn, "BatchNorm1d")) {
    return cq_fail(CQ_EINVAL, "fuse: %s cannot be folded into Linear", bn->type->name);
  }
  st = check_bn_eval(linear, bn);
  if (st != CQ_OK) return st;
  cq_rng saved = *cq_default_rng();
  cq_module *copy = NULL;
  st = cq_linear(&copy, in_features, out_features, 1);
  *cq_default_rng() = saved;
  if (st != CQ_OK) return st;
  st = fold_into_copy(linear, bn, copy, out_features, 1);
  if (st != CQ_OK) {
    cq_module_free(copy);
    return st;
  }
  *out = copy;
  return CQ_OK;
}

/* ---- patterns --------------------------------------------------------------------------------- */

typedef enum pattern_kind {
  PAT_CONV_BN,
  PAT_CONV_BN_RELU,
  PAT_CONV_RELU,
  PAT_LINEAR_BN,
  PAT_LINEAR_RELU,
  PAT_BN_RELU
} pattern_kind;

typedef struct pattern {
  int n;
  const char *types[3];
  pattern_kind kind;
} pattern;

/* DEFAULT_OP_LIST_TO_FUSER_METHOD restricted to the module types cquant has. */
static const pattern patterns[] = {
    {2, {"Conv1d", "BatchNorm1d"}, PAT_CONV_BN},
    {3, {"Conv1d", "BatchNorm1d", "ReLU"}, PAT_CONV_BN_RELU},
    {2, {"Conv2d", "BatchNorm2d"}, PAT_CONV_BN},
    {3, {"Conv2d", "BatchNorm2d", "ReLU"}, PAT_CONV_BN_RELU},
    {2, {"Conv1d", "ReLU"}, PAT_CONV_RELU},
    {2, {"Conv2d", "ReLU"}, PAT_CONV_RELU},
    {2, {"Linear", "BatchNorm1d"}, PAT_LINEAR_BN},
    {2, {"Linear", "ReLU"}, PAT_LINEAR_RELU},
    {2, {"BatchNorm2d", "ReLU"}, PAT_BN_RELU},
};

static const pattern *match(int n, cq_module *const *mods) {
  for (size_t p = 0; p < sizeof patterns / sizeof patterns[0]; p++) {
    if (patterns[p].n != n) continue;
    int ok = 1;
    for (int i = 0; i < n && ok; i++) ok = cq_module_is(mods[i], patterns[p].types[i]);
    if (ok) return &patterns[p];
  }
  return NULL;
}

static cq_status no_pattern(int n, cq_module *const *mods) {
  char types[256];
  size_t len = 0;
  types[0] = '\0';
  for (int i = 0; i < n && len < sizeof types; i++) {
    int w = snprintf(types + len, sizeof types - len, "%s%s", i ? ", " : "", mods[i]->type->name);
    if (w < 0) break;
    len += (size_t)w;
  }
  return cq_fail(CQ_EINVAL,
                 "fuse_modules: cannot fuse (%s): not a supported pattern (Conv1d/2d+BatchNorm1d/"
                 "2d[+ReLU], Conv1d/2d+ReLU, Linear+BatchNorm1d, Linear+ReLU, BatchNorm2d+ReLU)",
                 types);
}

/* ---- the pass --------------------------------------------------------------------------------- */

#define MAX_GROUP 8

cq_status cq_fuse_modules(cq_module *model, int n, const char *const *names) {
  if (!model) return cq_fail(CQ_EINVAL, "fuse_modules: the model is NULL");
  if (n < 1 || !names) return cq_fail(CQ_EINVAL, "fuse_modules: no module names given (n = %d)", n);
  if (n > MAX_GROUP) {
    return cq_fail(CQ_EINVAL, "fuse_modules: %d names; a fusion group has at most 3 modules", n);
  }
  cq_module *mods[MAX_GROUP];
  for (int i = 0; i < n; i++) {
    if (!names[i]) return cq_fail(CQ_EINVAL, "fuse_modules: name %d is NULL", i);
    if (!names[i][0]) return cq_fail(CQ_EINVAL, "fuse_modules: cannot fuse the root module ('')");
    mods[i] = cq_module_find(model, names[i]);
    if (!mods[i]) return cq_fail_context(CQ_EINVAL, "fuse_modules");
    for (int j = 0; j < i; j++) {
      if (mods[j] == mods[i]) {
        return cq_fail(CQ_EINVAL, "fuse_modules: '%s' and '%s' name the same module", names[j],
                       names[i]);
      }
    }
  }
  const pattern *p = match(n, mods);
  if (!p) return no_pattern(n, mods);

  /* Everything that can fail happens before the model changes. */
  cq_module *first = NULL; /* the module that replaces names[0] */
  cq_module *identities[MAX_GROUP] = {0};
  cq_status st = CQ_OK;
  switch (p->kind) {
    case PAT_CONV_BN:
      st = cq_fold_conv_bn_module(mods[0], mods[1], &first);
      break;
    case PAT_LINEAR_BN:
      st = cq_fold_linear_bn_module(mods[0], mods[1], &first);
      break;
    case PAT_CONV_BN_RELU:
      if (mods[2]->training != mods[0]->training) {
        st = cq_fail(CQ_EINVAL, "fuse_modules: %s, %s and ReLU must all be in the same mode",
                     mods[0]->type->name, mods[1]->type->name);
        break;
      }
      st = cq_fold_conv_bn_module(mods[0], mods[1], &first);
      break;
    default:
      break;
  }
  /* Placeholders for the fused container's children, swapped for the real ones below. */
  cq_module *ph0 = NULL, *ph1 = NULL;
  const int container = p->kind == PAT_CONV_BN_RELU || p->kind == PAT_CONV_RELU ||
                        p->kind == PAT_LINEAR_RELU || p->kind == PAT_BN_RELU;
  cq_module *fused = NULL;
  if (st == CQ_OK && container) {
    /* operands of the right types for the constructor's checks, replaced after it */
    cq_module *a = NULL, *b = NULL;
    if (p->kind == PAT_LINEAR_RELU) {
      st = cq_linear(&a, 0, 0, 0);
    } else if (p->kind == PAT_BN_RELU) {
      st = cq_batchnorm2d(&a, 0);
    } else {
      cq_conv_options o = cq_conv_defaults(1, 1, 1, 1);
      o.bias = 0;
      cq_rng saved = *cq_default_rng();
      st = cq_module_is(mods[0], "Conv1d") ? cq_conv1d(&a, &o) : cq_conv2d(&a, &o);
      *cq_default_rng() = saved;
    }
    if (st == CQ_OK) st = cq_relu(&b);
    if (st == CQ_OK) {
      if (p->kind == PAT_LINEAR_RELU) {
        st = cq_fused_linear_relu(&fused, a, b);
      } else if (p->kind == PAT_BN_RELU) {
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
    cq_module_free(first);
    cq_module_free(fused);
    for (int i = 1; i < n; i++) cq_module_free(identities[i]);
    return st;
  }

  /* Pointer swaps only from here on: nothing fails. */
  cq_module *old[MAX_GROUP] = {0};
  for (int i = 1; i < n; i++) cq_module_replace(model, names[i], identities[i], &old[i]);
  cq_module *replacement = fused ? fused : first;
  cq_module_replace(model, names[0], replacement, &old[0]);
  if (fused) {
    /* child (0): the folded copy (conv+bn+relu) or the original module; child (1): the ReLU */
    cq_module *child0 = first ? first : old[0];
    cq_module *relu = old[n - 1];
    cq_module_replace(fused, "0", child0, &ph0);
    cq_module_replace(fused, "1", relu, &ph1);
    old[n - 1] = NULL;
    if (!first) old[0] = NULL;
  }
  for (int i = 0; i < n; i++) cq_module_free(old[i]);
  cq_module_free(ph0);
  cq_module_free(ph1);
  return CQ_OK;
}

/* torch.optim.SGD and torch.optim.Adam (1.13 single-tensor algorithms) over a model's parameters. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/modules.h"
#include "nn/module_impl.h"

typedef enum { OPT_SGD, OPT_ADAM } opt_kind;

typedef struct opt_param {
  cq_named_tensor *param;
  float *state1; /* SGD momentum buffer / Adam exp_avg (NULL until first step) */
  float *state2; /* Adam exp_avg_sq */
} opt_param;

struct cq_optimizer {
  opt_kind kind;
  opt_param *params;
  int nparams, cap;
  float lr, momentum, dampening, weight_decay, beta1, beta2, eps;
  int nesterov;
  long step;
};

static cq_status collect(const char *key, cq_named_tensor *t, void *user) {
  (void)key;
  cq_optimizer *o = user;
  if (!t->is_parameter || t->tensor->dtype != CQ_F32) return CQ_OK;
  if (o->nparams == o->cap) {
    int cap = o->cap ? o->cap * 2 : 16;
    opt_param *p = cq_realloc(o->params, sizeof *p * (size_t)cap);
    if (!p) return cq_fail(CQ_ENOMEM, "out of memory creating the optimizer");
    o->params = p;
    o->cap = cap;
  }
  opt_param *p = &o->params[o->nparams++];
  p->param = t;
  p->state1 = NULL;
  p->state2 = NULL;
  return CQ_OK;
}

static cq_status create(cq_optimizer **out, cq_module *model, cq_optimizer proto) {
  *out = NULL;
  if (!(proto.lr >= 0.0f) || isinf(proto.lr)) {
    return cq_fail(CQ_EINVAL, "optimizer: learning rate %g must be finite and >= 0", proto.lr);
  }
  if (!(proto.weight_decay >= 0.0f)) {
    return cq_fail(CQ_EINVAL, "optimizer: weight_decay %g must be >= 0", proto.weight_decay);
  }
  cq_optimizer *o = cq_calloc_for(1, sizeof *o, "optimizer");
  if (!o) return CQ_ENOMEM;
  *o = proto;
  o->params = NULL;
  o->nparams = o->cap = 0;
  cq_status st = cq_module_visit_tensors(model, collect, o);
  if (st != CQ_OK) {
    cq_optimizer_free(o);
    return st;
  }
  *out = o;
  return CQ_OK;
}

cq_status cq_sgd(cq_optimizer **out, cq_module *model, float lr, float momentum, float dampening,
                 float weight_decay, int nesterov) {
  if (!(momentum >= 0.0f)) return cq_fail(CQ_EINVAL, "SGD: momentum %g must be >= 0", momentum);
  if (nesterov && (momentum <= 0.0f || dampening != 0.0f)) {
    return cq_fail(CQ_EINVAL, "SGD: nesterov momentum requires a momentum and zero dampening");
  }
  cq_optimizer proto = {.kind = OPT_SGD, .lr = lr, .momentum = momentum, .dampening = dampening,
                        .weight_decay = weight_decay, .nesterov = nesterov};
  return create(out, model, proto);
}

cq_status cq_adam(cq_optimizer **out, cq_module *model, float lr, float beta1, float beta2,
                  float eps, float weight_decay) {
  if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f)) {
    return cq_fail(CQ_EINVAL, "Adam: betas (%g, %g) must be in [0, 1)", beta1, beta2);
  }
  if (!(eps >= 0.0f)) return cq_fail(CQ_EINVAL, "Adam: eps %g must be >= 0", eps);
  cq_optimizer proto = {.kind = OPT_ADAM, .lr = lr, .beta1 = beta1, .beta2 = beta2, .eps = eps,
                        .weight_decay = weight_decay};
  return create(out, model, proto);
}

static cq_status ensure_state(float **state, int64_t n) {
  if (*state) return CQ_OK;
  *state = cq_calloc_for((size_t)n, sizeof(float), "optimizer state");
  return *state ? CQ_OK : CQ_ENOMEM;
}

static cq_status sgd_step(cq_optimizer *o, opt_param *p) {
  float *w = p->param->tensor->data;
  const float *g = p->param->grad->data;
  const int64_t n = cq_tensor_numel(p->param->tensor);
  int first = p->state1 == NULL;
  if (o->momentum != 0.0f) {
    cq_status st = ensure_state(&p->state1, n);
    if (st != CQ_OK) return st;
  }
  for (int64_t i = 0; i < n; i++) {
    float d = g[i];
    if (o->weight_decay != 0.0f) d = d + o->weight_decay * w[i];
    if (o->momentum != 0.0f) {
      float *buf = p->state1;
      buf[i] = first ? d : buf[i] * o->momentum + (1.0f - o->dampening) * d;
      d = o->nesterov ? d + o->momentum * buf[i] : buf[i];
    }
    w[i] = w[i] + (-o->lr) * d;
  }
  return CQ_OK;
}

static cq_status adam_step(cq_optimizer *o, opt_param *p) {
  float *w = p->param->tensor->data;
  const float *g = p->param->grad->data;
  const int64_t n = cq_tensor_numel(p->param->tensor);
  cq_status st = ensure_state(&p->state1, n);
  if (st == CQ_OK) st = ensure_state(&p->state2, n);
  if (st != CQ_OK) return st;
  const double bc1 = 1.0 - pow((double)o->beta1, (double)o->step);
  const double bc2 = 1.0 - pow((double)o->beta2, (double)o->step);
  const float step_size = (float)(o->lr / bc1);
  const float bc2_sqrt = (float)sqrt(bc2);
  float *m = p->state1, *v = p->state2;
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i];
    if (o->weight_decay != 0.0f) gi = gi + o->weight_decay * w[i];
    m[i] = m[i] * o->beta1 + (1.0f - o->beta1) * gi;
    v[i] = v[i] * o->beta2 + (1.0f - o->beta2) * gi * gi;
    const float denom = sqrtf(v[i]) / bc2_sqrt + o->eps;
    w[i] = w[i] + (-step_size) * (m[i] / denom);
  }
  return CQ_OK;
}

cq_status cq_optimizer_step(cq_optimizer *o) {
  o->step++;
  for (int i = 0; i < o->nparams; i++) {
    cq_status st = o->kind == OPT_SGD ? sgd_step(o, &o->params[i]) : adam_step(o, &o->params[i]);
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

void cq_optimizer_zero_grad(cq_optimizer *o) {
  for (int i = 0; i < o->nparams; i++) {
    cq_tensor *g = o->params[i].param->grad;
    memset(g->data, 0, cq_tensor_nbytes(g));
  }
}

void cq_optimizer_free(cq_optimizer *o) {
  if (!o) return;
  for (int i = 0; i < o->nparams; i++) {
    cq_free(o->params[i].state1);
    cq_free(o->params[i].state2);
  }
  cq_free(o->params);
  cq_free(o);
}

/* Losses with mean reduction: MSELoss and CrossEntropyLoss (log-softmax + NLL over class indices). */
#include <math.h>
#include <string.h>

#include "cquant/modules.h"
#include "nn/module_impl.h"

static int same_shape(const cq_tensor *a, const cq_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] != b->shape[i]) return 0;
  }
  return 1;
}

static cq_status mse_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                             cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_tensor *p = in[0], *t = in[1];
  if (p->dtype != CQ_F32 || t->dtype != CQ_F32) {
    return cq_module_fail(m, CQ_EINVAL, "prediction and target must be float32");
  }
  if (!same_shape(p, t)) {
    char a[128], b[128];
    return cq_module_fail(m, CQ_ESHAPE, "prediction %s and target %s differ in shape",
                          cq_shape_str(p->ndim, p->shape, a, sizeof a),
                          cq_shape_str(t->ndim, t->shape, b, sizeof b));
  }
  cq_tensor *loss;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, 0, NULL, &loss);
  if (st != CQ_OK) return st;
  int64_t n = cq_tensor_numel(p);
  const float *pd = p->data, *td = t->data;
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    float d = pd[i] - td[i];
    sum += (double)(d * d);
  }
  *(float *)loss->data = n ? (float)(sum / (double)n) : NAN;
  out[0] = loss;
  return CQ_OK;
}

static cq_status mse_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                              cq_tensor *const *gout, cq_tensor **gin) {
  (void)m;
  const cq_tensor *p = e->in[0], *t = e->in[1];
  cq_tensor *gp;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, p->ndim, p->shape, &gp);
  if (st != CQ_OK) return st;
  int64_t n = cq_tensor_numel(p);
  const float g = *(const float *)gout[0]->data;
  const float scale = n ? 2.0f * g / (float)n : 0.0f;
  const float *pd = p->data, *td = t->data;
  float *d = gp->data;
  for (int64_t i = 0; i < n; i++) d[i] = scale * (pd[i] - td[i]);
  gin[0] = gp;
  return CQ_OK;
}

static const cq_module_type mse_type = {
    .name = "MSELoss",
    .forward = mse_forward,
    .backward = mse_backward,
    .nin_min = 2, .nin_max = 2, .nout_min = 1, .nout_max = 1,
};

cq_status cq_mse_loss(cq_module **out) { return cq_module_new(&mse_type, NULL, out); }

static cq_status ce_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                            cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_tensor *x = in[0], *t = in[1];
  if (x->dtype != CQ_F32 || x->ndim != 2) {
    return cq_module_fail(m, CQ_EINVAL, "prediction must be float32 logits of shape [N, C]");
  }
  if (t->dtype != CQ_I64 || t->ndim != 1 || t->shape[0] != x->shape[0]) {
    return cq_module_fail(m, CQ_EINVAL, "target must be int64 class indices of shape [%lld]",
                          (long long)x->shape[0]);
  }
  const int64_t n = x->shape[0], c = x->shape[1];
  const int64_t *labels = t->data;
  for (int64_t i = 0; i < n; i++) {
    if (labels[i] < 0 || labels[i] >= c) {
      return cq_module_fail(m, CQ_EVALUE, "target %lld at index %lld is outside [0, %lld)",
                            (long long)labels[i], (long long)i, (long long)c);
    }
  }
  cq_tensor *loss;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, 0, NULL, &loss);
  if (st != CQ_OK) return st;
  const float *xd = x->data;
  double sum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    const float *row = xd + i * c;
    float mx = row[0];
    for (int64_t j = 1; j < c; j++) mx = row[j] > mx ? row[j] : mx;
    double s = 0.0;
    for (int64_t j = 0; j < c; j++) s += exp((double)(row[j] - mx));
    sum += log(s) + mx - row[labels[i]];
  }
  *(float *)loss->data = n ? (float)(sum / (double)n) : NAN;
  out[0] = loss;
  return CQ_OK;
}

static cq_status ce_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                             cq_tensor *const *gout, cq_tensor **gin) {
  (void)m;
  const cq_tensor *x = e->in[0], *t = e->in[1];
  const int64_t n = x->shape[0], c = x->shape[1];
  cq_tensor *gx;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, 2, x->shape, &gx);
  if (st != CQ_OK) return st;
  const float g = *(const float *)gout[0]->data / (float)(n ? n : 1);
  const float *xd = x->data;
  const int64_t *labels = t->data;
  float *d = gx->data;
  for (int64_t i = 0; i < n; i++) {
    const float *row = xd + i * c;
    float mx = row[0];
    for (int64_t j = 1; j < c; j++) mx = row[j] > mx ? row[j] : mx;
    double s = 0.0;
    for (int64_t j = 0; j < c; j++) s += exp((double)(row[j] - mx));
    for (int64_t j = 0; j < c; j++) {
      double p = exp((double)(row[j] - mx)) / s;
      d[i * c + j] = g * (float)(p - (j == labels[i] ? 1.0 : 0.0));
    }
  }
  gin[0] = gx;
  return CQ_OK;
}

static const cq_module_type ce_type = {
    .name = "CrossEntropyLoss",
    .forward = ce_forward,
    .backward = ce_backward,
    .nin_min = 2, .nin_max = 2, .nout_min = 1, .nout_max = 1,
};

cq_status cq_cross_entropy_loss(cq_module **out) { return cq_module_new(&ce_type, NULL, out); }

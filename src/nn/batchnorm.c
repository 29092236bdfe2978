/* nn.BatchNorm1d / nn.BatchNorm2d (affine, tracking running statistics, momentum 0.1).
 *
 * Parameters and buffers in PyTorch's state-dict order: weight (ones), bias (zeros), running_mean
 * (zeros), running_var (ones), num_batches_tracked (int64 scalar, 0).
 *
 * Training: per-channel mean and biased variance of the batch normalize the input; running_mean
 * and running_var move towards the batch mean and the unbiased variance by `momentum`, and
 * num_batches_tracked counts the batches. Evaluation normalizes with the running statistics.
 * The arithmetic follows PyTorch 1.13's CPU kernels (aten/src/ATen/native/batch_norm.cpp and
 * cpu/batch_norm_kernel.cpp): sums accumulate in double, invstd = 1 / sqrt(var_sum / n + eps) in
 * double, and the output is fma(x, alpha, beta) with alpha = invstd * weight and
 * beta = fma(-mean, alpha, bias) in float: bit for bit PyTorch's output on an AVX2 machine. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "cquant/modules.h"
#include "nn/layers.h"
#include "nn/module_impl.h"

enum { W_WEIGHT, W_BIAS, W_RUNNING_MEAN, W_RUNNING_VAR, W_NUM_BATCHES };

typedef struct bn_impl {
  int64_t num_features;
  double eps, momentum;
  int is2d;
} bn_impl;

/* What backward needs: the mode and the per-channel mean and invstd forward used. */
typedef struct bn_saved {
  int train;
  int64_t channels;
  float *mean, *invstd; /* point into the same allocation */
} bn_saved;

static float *tdata(const cq_module *m, int which) { return m->tensors[which].tensor->data; }

/* y = fma(x, alpha, beta): PyTorch's AVX2 kernel computes x * alpha + beta as one fused
 * multiply-add (GCC contracts its vector expression), so cquant does too, exactly rounded either
 * way: the FMA instruction where the CPU has it, libm's fmaf elsewhere. */
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
__attribute__((target("fma"))) static void affine_fma(const float *x, float *y, int64_t n,
                                                      float alpha, float beta) {
  for (int64_t i = 0; i < n; i++) y[i] = __builtin_fmaf(x[i], alpha, beta);
}
#define HAVE_FMA_TARGET 1
#endif

static void affine_libm(const float *x, float *y, int64_t n, float alpha, float beta) {
  for (int64_t i = 0; i < n; i++) y[i] = fmaf(x[i], alpha, beta);
}

typedef void (*affine_fn)(const float *, float *, int64_t, float, float);

/* Training backward of one plane: dx = (dy - grad_mean - (x - mean) * k) * invstd * w, with the
 * subtraction of the product fused as GCC fuses PyTorch's vector expression. */
typedef void (*dx_fn)(const float *x, const float *dy, float *dx, int64_t n, float mean, float k,
                      float grad_mean, float invstd, float w);

#ifdef HAVE_FMA_TARGET
__attribute__((target("fma"))) static void dx_fma(const float *x, const float *dy, float *dx,
                                                  int64_t n, float mean, float k, float grad_mean,
                                                  float invstd, float w) {
  for (int64_t i = 0; i < n; i++) {
    dx[i] = __builtin_fmaf(-(x[i] - mean), k, dy[i] - grad_mean) * invstd * w;
  }
}
#endif

static void dx_libm(const float *x, const float *dy, float *dx, int64_t n, float mean, float k,
                    float grad_mean, float invstd, float w) {
  for (int64_t i = 0; i < n; i++) dx[i] = fmaf(-(x[i] - mean), k, dy[i] - grad_mean) * invstd * w;
}

#ifdef HAVE_FMA_TARGET
static int have_fma(void) { return __builtin_cpu_supports("fma"); }
#endif

static affine_fn pick_affine(void) {
#ifdef HAVE_FMA_TARGET
  if (have_fma()) return affine_fma;
#endif
  return affine_libm;
}

static dx_fn pick_dx(void) {
#ifdef HAVE_FMA_TARGET
  if (have_fma()) return dx_fma;
#endif
  return dx_libm;
}

/* sum(dy) and sum((x - mean) * dy) over one plane, in eight float lanes (as PyTorch's vectorized
 * reduction) added to the double totals. */
static void plane_sums(const float *x, const float *dy, int64_t n, float mean, double *sum,
                       double *dotp) {
  float s[8] = {0}, d[8] = {0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int l = 0; l < 8; l++) {
      s[l] += dy[i + l];
      d[l] += (x[i + l] - mean) * dy[i + l];
    }
  }
  for (int l = 0; i < n; i++, l++) {
    s[l] += dy[i];
    d[l] += (x[i] - mean) * dy[i];
  }
  float ts = 0.0f, td = 0.0f;
  for (int l = 0; l < 8; l++) {
    ts += s[l];
    td += d[l];
  }
  *sum += ts;
  *dotp += td;
}

static cq_status bn_check(const cq_module *m, const cq_tensor *x) {
  const bn_impl *p = m->impl;
  if (x->dtype != CQ_F32) {
    const cq_dtype_info *info = cq_dtype_get(x->dtype);
    return cq_module_fail(m, CQ_EINVAL, "input must be float32, got %s",
                          info ? info->name : "an invalid dtype");
  }
  if (p->is2d ? x->ndim != 4 : (x->ndim != 2 && x->ndim != 3)) {
    return cq_module_fail(m, CQ_ESHAPE, "expected %s input (got %dD input)",
                          p->is2d ? "4D" : "2D or 3D", x->ndim);
  }
  if (x->shape[1] != p->num_features) {
    char s[128];
    return cq_module_fail(m, CQ_ESHAPE,
                          "input of shape %s has %lld channels in dimension 1, expected %lld",
                          cq_shape_str(x->ndim, x->shape, s, sizeof s), (long long)x->shape[1],
                          (long long)p->num_features);
  }
  return CQ_OK;
}

static cq_status bn_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                            cq_tensor **out) {
  (void)nin;
  (void)nout;
  const bn_impl *p = m->impl;
  const cq_tensor *x = in[0];
  cq_status st = bn_check(m, x);
  if (st != CQ_OK) return st;
  const int64_t nb = x->shape[0], C = x->shape[1];
  const int64_t numel = cq_tensor_numel(x);
  const int64_t image = (nb > 0 && C > 0) ? numel / (nb * C) : 0;
  const int64_t n = nb * image; /* values per channel */
  const int train = m->training;
  if (train && n == 1) {
    char s[128];
    return cq_module_fail(m, CQ_ESHAPE,
                          "Expected more than 1 value per channel when training, got input size %s",
                          cq_shape_str(x->ndim, x->shape, s, sizeof s));
  }
  cq_tensor *y;
  st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &y);
  if (st != CQ_OK) return st;
  bn_saved *sv = cq_malloc_for(sizeof *sv + 2 * sizeof(float) * (size_t)(C ? C : 1),
                               "BatchNorm statistics");
  if (!sv) return CQ_ENOMEM;
  sv->train = train;
  sv->channels = C;
  sv->mean = (float *)(sv + 1);
  sv->invstd = sv->mean + C;

  const float *xd = x->data;
  float *yd = y->data;
  const affine_fn affine = pick_affine();
  const float *w = tdata(m, W_WEIGHT), *b = tdata(m, W_BIAS);
  float *rmean = tdata(m, W_RUNNING_MEAN), *rvar = tdata(m, W_RUNNING_VAR);
  for (int64_t c = 0; c < C; c++) {
    float mean, invstd;
    if (train) {
      if (n == 0) { /* empty batch: PyTorch leaves the running statistics alone */
        mean = 0.0f;
        invstd = 0.0f;
      } else {
        double sum = 0.0;
        for (int64_t i = 0; i < nb; i++) {
          const float *xs = xd + (i * C + c) * image;
          for (int64_t j = 0; j < image; j++) sum += xs[j];
        }
        mean = (float)(sum / (double)n);
        double var_sum_acc = 0.0;
        for (int64_t i = 0; i < nb; i++) {
          const float *xs = xd + (i * C + c) * image;
          for (int64_t j = 0; j < image; j++) {
            const float d = xs[j] - mean;
            var_sum_acc += d * d;
          }
        }
        const float var_sum = (float)var_sum_acc;
        const double var = var_sum / (float)n;
        invstd = (var == 0.0 && p->eps == 0.0) ? 0.0f : (float)(1.0 / sqrt(var + p->eps));
        rmean[c] = (float)(p->momentum * mean + (1.0 - p->momentum) * rmean[c]);
        const double unbiased = var_sum / (float)(n - 1);
        rvar[c] = (float)(p->momentum * unbiased + (1.0 - p->momentum) * rvar[c]);
      }
    } else {
      mean = rmean[c];
      invstd = 1.0f / sqrtf(rvar[c] + (float)p->eps);
    }
    const float alpha = invstd * w[c];
    const float beta = fmaf(-mean, alpha, b[c]); /* b - mean * alpha, fused as in PyTorch */
    for (int64_t i = 0; i < nb; i++) {
      affine(xd + (i * C + c) * image, yd + (i * C + c) * image, image, alpha, beta);
    }
    sv->mean[c] = mean;
    /* backward in eval mode recomputes invstd in double, as PyTorch's backward kernel does */
    sv->invstd[c] = train ? invstd : (float)(1.0 / sqrt(rvar[c] + p->eps));
  }
  if (train) (*(int64_t *)m->tensors[W_NUM_BATCHES].tensor->data)++;
  if (cq_ctx_grad_enabled(ctx)) {
    cq_ctx_save(ctx, sv, NULL);
  } else {
    cq_free(sv);
  }
  out[0] = y;
  return CQ_OK;
}

static cq_status bn_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                             cq_tensor *const *gout, cq_tensor **gin) {
  const bn_saved *sv = e->saved;
  const cq_tensor *x = e->in[0];
  if (!sv) return cq_module_fail(m, CQ_ESTATE, "backward without saved statistics");
  cq_tensor *gx;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  const int64_t nb = x->shape[0], C = x->shape[1];
  const int64_t numel = cq_tensor_numel(x);
  const int64_t image = (nb > 0 && C > 0) ? numel / (nb * C) : 0;
  const int64_t n = nb * image;
  const float *xd = x->data, *gy = gout[0]->data;
  float *dx = gx->data;
  const float *w = tdata(m, W_WEIGHT);
  float *gw = m->tensors[W_WEIGHT].grad->data, *gb = m->tensors[W_BIAS].grad->data;
  const dx_fn train_dx = pick_dx();
  for (int64_t c = 0; c < C; c++) {
    const float mean = sv->mean[c], invstd = sv->invstd[c], wc = w[c];
    double sum = 0.0, dotp = 0.0;
    for (int64_t i = 0; i < nb; i++) {
      const int64_t off = (i * C + c) * image;
      plane_sums(xd + off, gy + off, image, mean, &sum, &dotp);
    }
    if (sv->train) {
      const float k = n ? (float)dotp * invstd * invstd / (float)n : 0.0f;
      const float grad_mean = n ? (float)sum / (float)n : 0.0f;
      for (int64_t i = 0; i < nb; i++) {
        const int64_t off = (i * C + c) * image;
        train_dx(xd + off, gy + off, dx + off, image, mean, k, grad_mean, invstd, wc);
      }
    } else {
      for (int64_t i = 0; i < nb; i++) {
        const float *gs = gy + (i * C + c) * image;
        float *ds = dx + (i * C + c) * image;
        for (int64_t j = 0; j < image; j++) ds[j] = gs[j] * invstd * wc;
      }
    }
    gw[c] += (float)(dotp * invstd);
    gb[c] += (float)sum;
  }
  gin[0] = gx;
  return CQ_OK;
}

static void bn_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const bn_impl *p = m->impl;
  cq_strbuf_appendf(sb, "%lld, eps=", (long long)p->num_features);
  cq_strbuf_append_pyfloat(sb, p->eps);
  cq_strbuf_append(sb, ", momentum=");
  cq_strbuf_append_pyfloat(sb, p->momentum);
  cq_strbuf_append(sb, ", affine=True, track_running_stats=True");
}

static const cq_module_type bn1d_type = {
    .name = "BatchNorm1d",
    .forward = bn_forward,
    .backward = bn_backward,
    .extra_repr = bn_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type bn2d_type = {
    .name = "BatchNorm2d",
    .forward = bn_forward,
    .backward = bn_backward,
    .extra_repr = bn_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static cq_status add_filled(cq_module *m, const char *name, int64_t c, float value, int param) {
  cq_tensor *t;
  cq_status st = cq_tensor_create(&t, CQ_F32, 1, &c);
  if (st != CQ_OK) return st;
  float *d = t->data;
  for (int64_t i = 0; i < c; i++) d[i] = value;
  return param ? cq_module_add_parameter(m, name, t) : cq_module_add_buffer(m, name, t);
}

static cq_status new_batchnorm(cq_module **out, const cq_module_type *type, int64_t num_features,
                               int is2d) {
  *out = NULL;
  if (num_features < 0) {
    return cq_fail(CQ_EINVAL, "%s: num_features %lld must be >= 0", type->name,
                   (long long)num_features);
  }
  bn_impl *p = cq_calloc_for(1, sizeof *p, type->name);
  if (!p) return CQ_ENOMEM;
  p->num_features = num_features;
  p->eps = 1e-5;
  p->momentum = 0.1;
  p->is2d = is2d;
  cq_module *m;
  cq_status st = cq_module_new(type, p, &m);
  if (st != CQ_OK) return st;
  st = add_filled(m, "weight", num_features, 1.0f, 1);
  if (st == CQ_OK) st = add_filled(m, "bias", num_features, 0.0f, 1);
  if (st == CQ_OK) st = add_filled(m, "running_mean", num_features, 0.0f, 0);
  if (st == CQ_OK) st = add_filled(m, "running_var", num_features, 1.0f, 0);
  if (st == CQ_OK) {
    cq_tensor *t;
    st = cq_tensor_create(&t, CQ_I64, 0, NULL);
    if (st == CQ_OK) st = cq_module_add_buffer(m, "num_batches_tracked", t);
  }
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

cq_status cq_batchnorm1d(cq_module **out, int64_t num_features) {
  return new_batchnorm(out, &bn1d_type, num_features, 0);
}

cq_status cq_batchnorm2d(cq_module **out, int64_t num_features) {
  return new_batchnorm(out, &bn2d_type, num_features, 1);
}

cq_status cq_batchnorm_describe(const cq_module *m, int64_t *num_features, double *eps,
                                double *momentum) {
  if (m->type != &bn1d_type && m->type != &bn2d_type) {
    return cq_fail(CQ_EINVAL, "%s is not a BatchNorm1d or BatchNorm2d", m->type->name);
  }
  const bn_impl *p = m->impl;
  if (num_features) *num_features = p->num_features;
  if (eps) *eps = p->eps;
  if (momentum) *momentum = p->momentum;
  return CQ_OK;
}

cq_status cq_batchnorm_set_eps(cq_module *m, double eps) {
  if (m->type != &bn1d_type && m->type != &bn2d_type) {
    return cq_fail(CQ_EINVAL, "%s is not a BatchNorm1d or BatchNorm2d", m->type->name);
  }
  if (!(eps > 0.0) || eps != eps || eps > 1e30) {
    return cq_fail(CQ_EINVAL, "%s: eps %g must be a finite number > 0", m->type->name, eps);
  }
  ((bn_impl *)m->impl)->eps = eps;
  return CQ_OK;
}

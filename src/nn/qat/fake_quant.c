/* FakeQuantize, FusedMovingAvgObsFakeQuantize, FixedQParamsFakeQuantize and _LearnableFakeQuantize
 * as modules (torch/ao/quantization/fake_quantize.py, _learnable_fake_quantize.py and the ATen
 * kernels behind them; torch-1.13-semantics.md 2.4-2.7), and the post-process protocol that lets
 * QAT modules run them, or plain observers, on their weights. See fake_quant.h. */
#include "nn/qat/fake_quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "cquant/quantize.h"
#include "quant/qmath.h"

typedef struct fq_impl {
  cq_fake_quant_kind kind;
  cq_observer *obs;      /* activation_post_process */
  int32_t qmin, qmax;    /* the range the fake-quant ops use */
  cq_qdtype dtype;
  cq_qscheme qscheme;
  int per_channel;       /* per-channel qscheme */
  int float_zp;          /* per_channel_affine_float_qparams: float zero points */
  int ch_axis;           /* printed ch_axis: the observer's for per-channel kinds, else -1 */
  int use_grad_scaling;  /* learnable */
  int requires_grad;     /* learnable: whether scale / zero_point take gradients */
} fq_impl;

/* What backward needs from one forward. */
struct cq_pp_state {
  int passthrough;  /* fake quant was off (or an observer): dx = dy */
  int64_t n;
  uint8_t *mask;    /* straight-through mask (non-learnable kinds) */
  /* learnable: the parameters as forward saw them and the layout of x */
  int learnable;
  int per_channel;
  int64_t count;
  float *scale;
  float *zero_point;
  float grad_factor;
  int64_t outer, channels, inner;
};

void cq_pp_state_free(cq_pp_state *s) {
  if (!s) return;
  cq_free(s->mask);
  cq_free(s->scale);
  cq_free(s->zero_point);
  cq_free(s);
}

static void free_state_void(void *p) { cq_pp_state_free(p); }

static void fq_destroy(void *impl) {
  fq_impl *p = impl;
  if (!p) return;
  cq_observer_free(p->obs);
  cq_free(p);
}

/* --- buffers ------------------------------------------------------------------------------------ */

static cq_tensor *buf(cq_module *m, const char *name) {
  cq_named_tensor *t = cq_module_own_tensor(m, name);
  return t ? t->tensor : NULL;
}

static const cq_tensor *cbuf(const cq_module *m, const char *name) {
  return buf((cq_module *)m, name);
}

static int flag_get(const cq_module *m, const char *name) {
  const cq_tensor *t = cbuf(m, name);
  if (!t) return 0;
  if (t->dtype == CQ_I64) return ((const int64_t *)t->data)[0] == 1;
  return ((const uint8_t *)t->data)[0] == 1;
}

static void flag_set(cq_module *m, const char *name, int on) {
  cq_tensor *t = buf(m, name);
  if (!t) return;
  if (t->dtype == CQ_I64) {
    ((int64_t *)t->data)[0] = on ? 1 : 0;
  } else {
    ((uint8_t *)t->data)[0] = on ? 1 : 0;
  }
}

/* Makes the 1-D buffer (or parameter) `name` hold n elements (Tensor.resize_): kept elements stay,
 * new ones are zero. The gradient of a parameter is resized along. */
static cq_status resize_1d(cq_module *m, const char *name, int64_t n) {
  cq_named_tensor *nt = cq_module_own_tensor(m, name);
  if (!nt) return cq_module_fail(m, CQ_ESTATE, "no buffer '%s'", name);
  if (nt->tensor->ndim == 1 && nt->tensor->shape[0] == n) return CQ_OK;
  cq_tensor *t = NULL, *g = NULL;
  cq_status st = cq_tensor_create(&t, nt->tensor->dtype, 1, &n);
  if (st == CQ_OK && nt->grad) st = cq_tensor_create(&g, nt->grad->dtype, 1, &n);
  if (st != CQ_OK) {
    cq_tensor_free(t);
    return st;
  }
  const size_t esize = cq_dtype_get(t->dtype)->size;
  int64_t keep = cq_tensor_numel(nt->tensor);
  if (keep > n) keep = n;
  memcpy(t->data, nt->tensor->data, esize * (size_t)keep);
  if (g) memcpy(g->data, nt->grad->data, esize * (size_t)keep);
  cq_tensor_free(nt->tensor);
  nt->tensor = t;
  if (g) {
    cq_tensor_free(nt->grad);
    nt->grad = g;
  }
  return CQ_OK;
}

static cq_status add_1d(cq_module *m, const char *name, cq_dtype dtype, double value, int param) {
  cq_tensor *t;
  const int64_t one = 1;
  cq_status st = cq_tensor_create(&t, dtype, 1, &one);
  if (st != CQ_OK) return st;
  switch (dtype) {
    case CQ_F32: ((float *)t->data)[0] = (float)value; break;
    case CQ_S32: ((int32_t *)t->data)[0] = (int32_t)value; break;
    case CQ_I64: ((int64_t *)t->data)[0] = (int64_t)value; break;
    case CQ_U8: ((uint8_t *)t->data)[0] = (uint8_t)value; break;
    default: break;
  }
  return param ? cq_module_add_parameter(m, name, t) : cq_module_add_buffer(m, name, t);
}

/* Stores qparams (count entries) into the scale / zero_point buffers, resizing them. */
static cq_status store_qparams(cq_module *m, const fq_impl *p, const cq_qparams *qp) {
  cq_status st = resize_1d(m, "scale", qp->count);
  if (st == CQ_OK) st = resize_1d(m, "zero_point", qp->count);
  if (st != CQ_OK) return st;
  float *s = buf(m, "scale")->data;
  cq_tensor *zt = buf(m, "zero_point");
  for (int64_t c = 0; c < qp->count; c++) {
    s[c] = qp->scale[c];
    if (zt->dtype == CQ_F32) {
      ((float *)zt->data)[c] = p->float_zp && qp->zero_point_float ? qp->zero_point_float[c]
                                                                   : (float)qp->zero_point[c];
    } else {
      ((int32_t *)zt->data)[c] = qp->zero_point[c];
    }
  }
  return CQ_OK;
}

/* --- layout ------------------------------------------------------------------------------------- */

/* [outer, channels, inner] of x around `axis` for the per-channel fake-quant ops, which need
 * 0 <= axis < ndim and `count` qparams matching x.shape[axis]. */
static cq_status channel_layout(const cq_module *m, const cq_tensor *x, int axis, int64_t count,
                                int64_t *outer, int64_t *channels, int64_t *inner) {
  if (axis < 0 || axis >= x->ndim) {
    return cq_module_fail(m, CQ_EINVAL,
                          "`axis` must be between 0 and number of dimensions of input (axis %d, "
                          "input of %d dimensions)",
                          axis, x->ndim);
  }
  if (x->shape[axis] != count) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "dimensions of scale and zero-point (%lld) are not consistent with input "
                          "dimension %d of size %lld",
                          (long long)count, axis, (long long)x->shape[axis]);
  }
  *outer = 1;
  *inner = 1;
  for (int i = 0; i < axis; i++) *outer *= x->shape[i];
  for (int i = axis + 1; i < x->ndim; i++) *inner *= x->shape[i];
  *channels = x->shape[axis];
  return CQ_OK;
}

/* fake_quantize_per_channel_affine with float zero points (the float-qparams scheme):
 * q = lrintf(zp + x * inv), y = (clamp(q) - zp) * scale, mask on the unclamped q. ATen's AVX2
 * build of this kernel contracts zp + x * inv into one fused multiply-add (GCC's default
 * -ffp-contract=fast with -mfma), so it is fmaf here: the result differs from the two-rounding
 * form near ties, and matches PyTorch's. */
static void fake_quant_float_zp(const float *x, int64_t outer, int64_t channels, int64_t inner,
                                const float *scale, const float *zp, int32_t qmin, int32_t qmax,
                                float *y, uint8_t *mask) {
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t c = 0; c < channels; c++) {
      const float inv = 1.0f / scale[c];
      const int64_t base = (o * channels + c) * inner;
      for (int64_t i = 0; i < inner; i++) {
        const float v = fmaf(x[base + i], inv, zp[c]);
        const int64_t q = cq_f32_to_i64_x86(cq_rne_f32(v));
        const double cl = fmin(fmax((double)q, (double)qmin), (double)qmax);
        y[base + i] = (float)((cl - (double)zp[c]) * (double)scale[c]);
        if (mask) mask[base + i] = (uint8_t)(q >= qmin && q <= qmax);
      }
    }
  }
}

/* --- forward of each kind ----------------------------------------------------------------------- */

static cq_status new_state(int64_t n, int want_mask, cq_pp_state **out) {
  *out = cq_calloc_for(1, sizeof **out, "fake-quant state");
  if (!*out) return CQ_ENOMEM;
  (*out)->n = n;
  if (want_mask) {
    (*out)->mask = cq_malloc_for((size_t)(n ? n : 1), "fake-quant mask");
    if (!(*out)->mask) {
      cq_free(*out);
      *out = NULL;
      return CQ_ENOMEM;
    }
  }
  return CQ_OK;
}

/* y = x, and a passthrough state when asked. */
static cq_status passthrough(const cq_tensor *x, float *y, cq_pp_state **state) {
  const int64_t n = cq_tensor_numel(x);
  if (y != x->data) memcpy(y, x->data, sizeof(float) * (size_t)n);
  if (!state) return CQ_OK;
  cq_status st = new_state(n, 0, state);
  if (st == CQ_OK) (*state)->passthrough = 1;
  return st;
}

/* Fake quantization with the module's current scale / zero_point buffers. */
static cq_status apply_buffers(cq_module *m, const fq_impl *p, const cq_tensor *x, float *y,
                               cq_pp_state **state) {
  const int64_t n = cq_tensor_numel(x);
  cq_pp_state *s = NULL;
  cq_status st = CQ_OK;
  if (state) {
    st = new_state(n, 1, &s);
    if (st != CQ_OK) return st;
  }
  const cq_tensor *scale = buf(m, "scale"), *zp = buf(m, "zero_point");
  uint8_t *mask = s ? s->mask : NULL;
  if (p->per_channel) {
    int64_t outer, channels, inner;
    st = channel_layout(m, x, p->ch_axis, cq_tensor_numel(scale), &outer, &channels, &inner);
    if (st == CQ_OK) {
      if (zp->dtype == CQ_F32) {
        fake_quant_float_zp(x->data, outer, channels, inner, scale->data, zp->data, p->qmin,
                            p->qmax, y, mask);
      } else {
        st = cq_fake_quantize_per_channel(x->data, outer, channels, inner, scale->data, zp->data,
                                          p->qmin, p->qmax, y, mask);
      }
    }
  } else {
    st = cq_fake_quantize_per_tensor(x->data, n, ((const float *)scale->data)[0],
                                     ((const int32_t *)zp->data)[0], p->qmin, p->qmax, y, mask);
  }
  if (st != CQ_OK) {
    cq_pp_state_free(s);
    return cq_fail_context(st, "%s", m->type->name);
  }
  if (state) *state = s;
  return CQ_OK;
}

/* FakeQuantize and FixedQParamsFakeQuantize. */
static cq_status run_fake_quantize(cq_module *m, fq_impl *p, const cq_tensor *x, float *y,
                                   cq_pp_state **state) {
  if (flag_get(m, "observer_enabled")) {
    cq_status st = cq_observer_update_tensor(p->obs, x);
    if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
    cq_qparams qp;
    st = cq_observer_qparams(p->obs, &qp);
    if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
    st = store_qparams(m, p, &qp);
    cq_qparams_release(&qp);
    if (st != CQ_OK) return st;
  }
  if (!flag_get(m, "fake_quant_enabled")) return passthrough(x, y, state);
  return apply_buffers(m, p, x, y, state);
}

/* FusedMovingAvgObsFakeQuantize: torch.fused_moving_avg_obs_fake_quant. */
static cq_status run_fused(cq_module *m, fq_impl *p, const cq_tensor *x, float *y,
                           cq_pp_state **state) {
  const int axis = p->per_channel ? p->ch_axis : -1;
  if (axis >= x->ndim) {
    return cq_module_fail(m, CQ_EINVAL, "ch_axis must be < self.dim() (ch_axis %d, %d dimensions)",
                          axis, x->ndim);
  }
  if (p->per_channel) {
    if (axis != 0) {
      return cq_module_fail(m, CQ_EUNSUPPORTED,
                            "Per-channel FakeQuant in fused_moving_avg_obs_fake_quant is only "
                            "supported on axis == 0");
    }
    if (x->ndim < 1) {
      return cq_module_fail(m, CQ_ESHAPE, "per-channel fake quant needs at least 1 dimension");
    }
    /* the op sizes scale / zero_point by the channel count before the first observation */
    if (!cq_observer_has_data(p->obs)) {
      cq_status st = resize_1d(m, "scale", x->shape[axis]);
      if (st == CQ_OK) st = resize_1d(m, "zero_point", x->shape[axis]);
      if (st != CQ_OK) return st;
    }
  }
  if (flag_get(m, "observer_enabled")) {
    cq_status st = cq_observer_update_tensor(p->obs, x);
    if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
  }
  if (!flag_get(m, "fake_quant_enabled")) return passthrough(x, y, state);
  const int64_t count = cq_observer_channels(p->obs);
  if (count == 0) {
    return cq_module_fail(m, CQ_EVALUE,
                          "In ChooseQuantizationParams, min should be less than or equal to max "
                          "(the observer has seen no data: min=inf, max=-inf)");
  }
  float *mn = cq_malloc_for(sizeof(float) * 2 * (size_t)count, "running min/max");
  if (!mn) return CQ_ENOMEM;
  float *mx = mn + count;
  cq_observer_min_max(p->obs, mn, mx, count);
  cq_status st = resize_1d(m, "scale", count);
  if (st == CQ_OK) st = resize_1d(m, "zero_point", count);
  float *scale = st == CQ_OK ? buf(m, "scale")->data : NULL;
  int32_t *zp = st == CQ_OK ? buf(m, "zero_point")->data : NULL;
  const int symmetric = cq_qscheme_is_symmetric(p->qscheme);
  for (int64_t c = 0; c < count && st == CQ_OK; c++) {
    double s;
    int32_t z;
    st = cq_choose_qparams(mn[c], mx[c], p->qmin, p->qmax, symmetric, 0, 0, &s, &z);
    if (st == CQ_OK) {
      scale[c] = (float)s;
      zp[c] = z;
    }
  }
  cq_free(mn);
  if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
  return apply_buffers(m, p, x, y, state);
}

/* --- the learnable kind ------------------------------------------------------------------------- */

/* Tensor.copy_ of n values into the dst parameter of length len (src broadcasts when n == 1). */
static cq_status copy_broadcast(cq_module *m, const char *name, const float *src, int64_t n) {
  cq_tensor *t = buf(m, name);
  const int64_t len = cq_tensor_numel(t);
  if (n != len && n != 1) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "output with shape [%lld] doesn't match the broadcast shape [%lld] (give "
                          "channel_len for per-channel observers)",
                          (long long)len, (long long)n);
  }
  float *d = t->data;
  for (int64_t i = 0; i < len; i++) d[i] = src[n == 1 ? 0 : i];
  return CQ_OK;
}

static void clamp_scale_to_eps(cq_module *m) {
  cq_tensor *t = buf(m, "scale");
  const float eps = ((const float *)buf(m, "eps")->data)[0];
  float *s = t->data;
  for (int64_t i = 0; i < cq_tensor_numel(t); i++) {
    if (s[i] < eps) s[i] = eps; /* clamp_(min=eps); NaN stays NaN */
  }
}

static float learnable_zp_forward(float zp, int32_t qmin, int32_t qmax) {
  float r = nearbyintf(zp);
  r = fminf(fmaxf(r, (float)qmin), (float)qmax);
  return r;
}

static cq_status run_learnable(cq_module *m, fq_impl *p, const cq_tensor *x, float *y,
                               cq_pp_state **state) {
  if (flag_get(m, "static_enabled")) {
    cq_status st = cq_observer_update_tensor(p->obs, x);
    if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
    cq_qparams qp;
    st = cq_observer_qparams(p->obs, &qp);
    if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
    float *zf = cq_malloc_for(sizeof(float) * (size_t)qp.count, "zero points");
    if (!zf) {
      cq_qparams_release(&qp);
      return CQ_ENOMEM;
    }
    for (int64_t i = 0; i < qp.count; i++) {
      zf[i] = qp.zero_point_float ? qp.zero_point_float[i] : (float)qp.zero_point[i];
    }
    st = copy_broadcast(m, "scale", qp.scale, qp.count);
    if (st == CQ_OK) st = copy_broadcast(m, "zero_point", zf, qp.count);
    cq_free(zf);
    cq_qparams_release(&qp);
    if (st != CQ_OK) return st;
  } else {
    clamp_scale_to_eps(m);
  }
  if (!flag_get(m, "fake_quant_enabled")) return passthrough(x, y, state);

  cq_tensor *scale_t = buf(m, "scale"), *zp_t = buf(m, "zero_point");
  const int64_t count = cq_tensor_numel(scale_t);
  float *scale = scale_t->data, *zpv = zp_t->data;
  if (cq_qscheme_is_symmetric(p->qscheme)) {
    for (int64_t i = 0; i < cq_tensor_numel(zp_t); i++) zpv[i] = 0.0f;
  }
  const int64_t n = cq_tensor_numel(x);
  const double factor = p->use_grad_scaling ? 1.0 / pow((double)n * (double)p->qmax, 0.5) : 1.0;
  cq_pp_state *s = NULL;
  cq_status st = CQ_OK;
  if (state) {
    st = new_state(n, 0, &s);
    if (st != CQ_OK) return st;
    s->learnable = 1;
    s->count = count;
    s->grad_factor = (float)factor;
    s->scale = cq_malloc_for(sizeof(float) * (size_t)count, "saved scale");
    s->zero_point = cq_malloc_for(sizeof(float) * (size_t)count, "saved zero point");
    if (!s->scale || !s->zero_point) {
      cq_pp_state_free(s);
      return CQ_ENOMEM;
    }
    memcpy(s->scale, scale, sizeof(float) * (size_t)count);
    memcpy(s->zero_point, zpv, sizeof(float) * (size_t)count);
  }
  if (p->per_channel) {
    int64_t outer, channels, inner;
    st = channel_layout(m, x, p->ch_axis, count, &outer, &channels, &inner);
    int32_t *zi = st == CQ_OK ? cq_malloc_for(sizeof(int32_t) * (size_t)count, "zero points")
                              : NULL;
    if (st == CQ_OK && !zi) st = CQ_ENOMEM;
    if (st == CQ_OK) {
      for (int64_t c = 0; c < count; c++) {
        zi[c] = (int32_t)learnable_zp_forward(zpv[c], p->qmin, p->qmax);
      }
      st = cq_fake_quantize_per_channel(x->data, outer, channels, inner, scale, zi, p->qmin,
                                        p->qmax, y, NULL);
    }
    cq_free(zi);
    if (s && st == CQ_OK) {
      s->per_channel = 1;
      s->outer = outer;
      s->channels = channels;
      s->inner = inner;
    }
  } else {
    const int32_t zi = (int32_t)learnable_zp_forward(zpv[0], p->qmin, p->qmax);
    st = cq_fake_quantize_per_tensor(x->data, n, scale[0], zi, p->qmin, p->qmax, y, NULL);
  }
  if (st != CQ_OK) {
    cq_pp_state_free(s);
    return cq_fail_context(st, "%s", m->type->name);
  }
  if (state) *state = s;
  return CQ_OK;
}

/* One element of _fake_quantize_grad_learnable_{tensor,channel}_kernel_cpu. zp is the backward
 * zero point (an integer for the per-tensor op, a rounded float per channel), applied before
 * rounding. As compiled for AVX2 (GCC contracts multiply-adds into FMA there), the kernel computes
 * zp + x * inv and xfq - x = (clamp(q) - zp) * scale - x each with one rounding: verified element
 * by element against PyTorch 1.13, where the two-rounding forms differ in about half the cases. */
static void learnable_grad_one(float x, float dy, float scale, float inv, float zp, int32_t qmin,
                               int32_t qmax, float gf, float *dx, double *dscale, double *dzp) {
  const int64_t q = cq_f32_to_i64_x86(cq_rne_f32(fmaf(x, inv, zp)));
  const int in = q >= qmin && q <= qmax;
  *dx = dy * (float)in;
  const int64_t cl = q < qmin ? qmin : q > qmax ? qmax : q;
  if (!in) {
    *dzp += (double)(dy * -1.0f * scale * gf);
    const float lim = q < qmin ? (float)qmin - zp : (float)qmax - zp;
    *dscale += (double)(dy * lim * gf);
  } else {
    const float diff = fmaf((float)cl - zp, scale, -x); /* xfq - x */
    *dscale += (double)(dy * diff * inv * gf);
  }
}

static cq_status grad_learnable(cq_module *m, fq_impl *p, const cq_pp_state *s, const float *x,
                                const float *dy, float *dx) {
  cq_named_tensor *scale_p = cq_module_own_tensor(m, "scale");
  cq_named_tensor *zp_p = cq_module_own_tensor(m, "zero_point");
  const int take = p->requires_grad;
  if (s->per_channel) {
    for (int64_t c = 0; c < s->channels; c++) {
      const float sc = s->scale[c], inv = 1.0f / sc;
      const float zp = learnable_zp_forward(s->zero_point[c], p->qmin, p->qmax);
      double ds = 0.0, dz = 0.0;
      for (int64_t o = 0; o < s->outer; o++) {
        const int64_t base = (o * s->channels + c) * s->inner;
        for (int64_t i = 0; i < s->inner; i++) {
          learnable_grad_one(x[base + i], dy[base + i], sc, inv, zp, p->qmin, p->qmax,
                             s->grad_factor, &dx[base + i], &ds, &dz);
        }
      }
      if (take) {
        ((float *)scale_p->grad->data)[c] += (float)ds;
        ((float *)zp_p->grad->data)[c] += (float)dz;
      }
    }
    return CQ_OK;
  }
  const float sc = s->scale[0], inv = 1.0f / sc;
  /* _get_zero_point_from_tensor(..., is_forward=false): zp + 0.5, clamped, truncated */
  float zb = s->zero_point[0] + 0.5f;
  zb = fminf(fmaxf(zb, (float)p->qmin), (float)p->qmax);
  const float zp = (float)(int64_t)zb;
  double ds = 0.0, dz = 0.0;
  for (int64_t i = 0; i < s->n; i++) {
    learnable_grad_one(x[i], dy[i], sc, inv, zp, p->qmin, p->qmax, s->grad_factor, &dx[i], &ds,
                       &dz);
  }
  if (take) {
    ((float *)scale_p->grad->data)[0] += (float)ds;
    ((float *)zp_p->grad->data)[0] += (float)dz;
  }
  return CQ_OK;
}

/* --- the post-process protocol ------------------------------------------------------------------ */

static const cq_module_type fake_quantize_type, fused_type, fixed_type, learnable_type;

int cq_is_fake_quant(const cq_module *m) {
  return m && (m->type == &fake_quantize_type || m->type == &fused_type ||
               m->type == &fixed_type || m->type == &learnable_type);
}

cq_fake_quant_kind cq_fake_quant_kind_of(const cq_module *m) {
  return cq_is_fake_quant(m) ? ((const fq_impl *)m->impl)->kind : CQ_FQ_NONE;
}

cq_observer *cq_post_process_observer(cq_module *m) {
  if (!m) return NULL;
  if (cq_is_fake_quant(m)) return ((fq_impl *)m->impl)->obs;
  return cq_observer_module_get(m);
}

int cq_is_post_process(const cq_module *m) {
  return cq_is_fake_quant(m) || cq_observer_module_get((cq_module *)m) != NULL;
}

static cq_status check_input(const cq_module *m, const cq_tensor *x) {
  if (x->dtype != CQ_F32) {
    const cq_dtype_info *info = cq_dtype_get(x->dtype);
    return cq_module_fail(m, CQ_EINVAL, "input must be float32, got %s",
                          info ? info->name : "an invalid dtype");
  }
  return CQ_OK;
}

cq_status cq_post_process_run(cq_module *pp, const cq_tensor *x, float *y, cq_pp_state **state) {
  if (state) *state = NULL;
  if (!pp) return passthrough(x, y, state);
  cq_observer *obs = cq_observer_module_get(pp);
  if (obs) {
    cq_status st = cq_observer_update_tensor(obs, x);
    if (st != CQ_OK) {
      return cq_fail_context(st, "%s", cq_observer_class_name(cq_observer_config_of(obs)->kind));
    }
    return passthrough(x, y, state);
  }
  if (!cq_is_fake_quant(pp)) {
    return cq_module_fail(pp, CQ_EINVAL, "is not an observer or a fake-quantize module");
  }
  cq_status st = check_input(pp, x);
  if (st != CQ_OK) return st;
  fq_impl *p = pp->impl;
  switch (p->kind) {
    case CQ_FQ_FUSED_MOVING_AVG: return run_fused(pp, p, x, y, state);
    case CQ_FQ_LEARNABLE: return run_learnable(pp, p, x, y, state);
    default: return run_fake_quantize(pp, p, x, y, state);
  }
}

cq_status cq_post_process_grad(cq_module *pp, const cq_pp_state *s, const cq_tensor *x,
                               const float *dy, float *dx) {
  if (!s) return cq_fail(CQ_ESTATE, "fake-quant backward without saved state");
  if (s->passthrough) {
    if (dx != dy) memcpy(dx, dy, sizeof(float) * (size_t)s->n);
    return CQ_OK;
  }
  if (s->learnable) return grad_learnable(pp, pp->impl, s, x->data, dy, dx);
  cq_fake_quantize_backward(dy, s->mask, s->n, dx);
  return CQ_OK;
}

/* --- the module types --------------------------------------------------------------------------- */

static cq_status fq_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                            cq_tensor **out) {
  (void)nin;
  (void)nout;
  const cq_tensor *x = in[0];
  cq_status st = check_input(m, x);
  if (st != CQ_OK) return st;
  cq_tensor *y;
  st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &y);
  if (st != CQ_OK) return st;
  cq_pp_state *s = NULL;
  st = cq_post_process_run(m, x, y->data, cq_ctx_grad_enabled(ctx) ? &s : NULL);
  if (st != CQ_OK) return st;
  if (s) cq_ctx_save(ctx, s, free_state_void);
  out[0] = y;
  return CQ_OK;
}

static cq_status fq_backward(cq_module *m, cq_ctx *ctx, const cq_tape_entry *e,
                             cq_tensor *const *gout, cq_tensor **gin) {
  const cq_tensor *x = e->in[0];
  cq_tensor *gx;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, x->shape, &gx);
  if (st != CQ_OK) return st;
  st = cq_post_process_grad(m, e->saved, x, gout[0]->data, gx->data);
  if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
  gin[0] = gx;
  return CQ_OK;
}

/* --- printing ----------------------------------------------------------------------------------- */

static void append_flag(cq_strbuf *sb, const cq_module *m, const char *name) {
  const cq_tensor *t = cbuf(m, name);
  const int64_t v = t->dtype == CQ_I64 ? ((const int64_t *)t->data)[0]
                                       : (int64_t)((const uint8_t *)t->data)[0];
  cq_format_torch_int_tensor_1d(sb, &v, 1, t->dtype == CQ_I64 ? NULL : "torch.uint8");
}

static void append_float_tensor(cq_strbuf *sb, const cq_tensor *t) {
  cq_format_torch_tensor_1d(sb, t->data, cq_tensor_numel(t));
}

static void append_zero_point(cq_strbuf *sb, const cq_tensor *t) {
  if (t->dtype == CQ_F32) {
    append_float_tensor(sb, t);
    return;
  }
  const int64_t n = cq_tensor_numel(t);
  int64_t *v = cq_malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
  if (!v) {
    sb->failed = 1;
    return;
  }
  for (int64_t i = 0; i < n; i++) v[i] = ((const int32_t *)t->data)[i];
  cq_format_torch_int_tensor_1d(sb, v, n, "torch.int32");
  cq_free(v);
}

static void fq_extra_repr(const cq_module *m, const fq_impl *p, cq_strbuf *sb) {
  const cq_tensor *scale = cbuf(m, "scale"), *zp = cbuf(m, "zero_point");
  const char *dtype = cq_qdtype_name(p->dtype), *qscheme = cq_qscheme_name(p->qscheme);
  cq_strbuf_append(sb, "fake_quant_enabled=");
  append_flag(sb, m, "fake_quant_enabled");
  cq_strbuf_append(sb, ", observer_enabled=");
  append_flag(sb, m, "observer_enabled");
  switch (p->kind) {
    case CQ_FQ_FAKE_QUANTIZE:
      cq_strbuf_appendf(sb, ", quant_min=%d, quant_max=%d, dtype=torch.%s, qscheme=torch.%s, "
                        "ch_axis=%d, scale=",
                        p->qmin, p->qmax, dtype, qscheme, p->ch_axis);
      append_float_tensor(sb, scale);
      cq_strbuf_append(sb, ", zero_point=");
      append_zero_point(sb, zp);
      break;
    case CQ_FQ_FIXED_QPARAMS:
      cq_strbuf_append(sb, ", scale=");
      append_float_tensor(sb, scale);
      cq_strbuf_append(sb, ", zero_point=");
      append_zero_point(sb, zp);
      cq_strbuf_appendf(sb, ", dtype=torch.%s, quant_min=%d, quant_max=%d, qscheme=torch.%s", dtype,
                        p->qmin, p->qmax, qscheme);
      break;
    case CQ_FQ_FUSED_MOVING_AVG:
      cq_strbuf_append(sb, ", scale=");
      append_float_tensor(sb, scale);
      cq_strbuf_append(sb, ", zero_point=");
      append_zero_point(sb, zp);
      cq_strbuf_appendf(sb, ", dtype=torch.%s, quant_min=%d, quant_max=%d, qscheme=torch.%s, "
                        "reduce_range=%s",
                        dtype, p->qmin, p->qmax, qscheme,
                        cq_observer_config_of(p->obs)->reduce_range ? "True" : "False");
      break;
    default:
      break;
  }
}

static void fq_repr(const cq_module *m, cq_strbuf *sb) {
  const fq_impl *p = m->impl;
  cq_strbuf extra;
  cq_strbuf_init(&extra);
  if (p->kind != CQ_FQ_LEARNABLE) fq_extra_repr(m, p, &extra);
  size_t n = cq_observer_repr(p->obs, NULL, 0);
  char *obs = cq_malloc(n + 1);
  if (!obs) {
    sb->failed = 1;
    cq_strbuf_release(&extra);
    return;
  }
  cq_observer_repr(p->obs, obs, n + 1);
  cq_strbuf_appendf(sb, "%s(", m->type->name);
  if (extra.len) {
    cq_strbuf_append(sb, "\n  ");
    cq_strbuf_append_indented(sb, cq_strbuf_str(&extra), 2);
  }
  cq_strbuf_append(sb, "\n  (activation_post_process): ");
  cq_strbuf_append_indented(sb, obs, 2);
  cq_strbuf_append(sb, "\n)");
  if (extra.failed) sb->failed = 1;
  cq_strbuf_release(&extra);
  cq_free(obs);
}

static const cq_module_type fake_quantize_type = {
    .name = "FakeQuantize",
    .forward = fq_forward,
    .backward = fq_backward,
    .repr = fq_repr,
    .destroy_impl = fq_destroy,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type fused_type = {
    .name = "FusedMovingAvgObsFakeQuantize",
    .forward = fq_forward,
    .backward = fq_backward,
    .repr = fq_repr,
    .destroy_impl = fq_destroy,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type fixed_type = {
    .name = "FixedQParamsFakeQuantize",
    .forward = fq_forward,
    .backward = fq_backward,
    .repr = fq_repr,
    .destroy_impl = fq_destroy,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type learnable_type = {
    .name = "_LearnableFakeQuantize",
    .forward = fq_forward,
    .backward = fq_backward,
    .repr = fq_repr,
    .destroy_impl = fq_destroy,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

/* --- construction ------------------------------------------------------------------------------- */

cq_learnable_options cq_learnable_defaults(void) {
  cq_learnable_options o = {1.0f, 0.0f, -1, 0};
  return o;
}

/* FakeQuantize.__init__'s checks of a given quant range against the dtype. */
static cq_status check_range_in_dtype(const char *cls, cq_qdtype dtype, int64_t lo, int64_t hi) {
  int64_t dlo, dhi;
  if (cq_qdtype_range(dtype, &dlo, &dhi) != CQ_OK) {
    return cq_fail(CQ_EINVAL, "%s: dtype %s is not a quantized integer dtype", cls,
                   cq_qdtype_name(dtype));
  }
  if (lo < dlo) {
    return cq_fail(CQ_EINVAL, "%s: quant_min out of bound (%lld < %lld for %s)", cls, (long long)lo,
                   (long long)dlo, cq_qdtype_name(dtype));
  }
  if (hi > dhi) {
    return cq_fail(CQ_EINVAL, "%s: quant_max out of bound (%lld > %lld for %s)", cls, (long long)hi,
                   (long long)dhi, cq_qdtype_name(dtype));
  }
  return CQ_OK;
}

static cq_status create_common(const cq_module_type *type, cq_fake_quant_kind kind,
                               const cq_observer_config *config, fq_impl **impl_out,
                               cq_module **out) {
  *out = NULL;
  fq_impl *p = cq_calloc_for(1, sizeof *p, type->name);
  if (!p) return CQ_ENOMEM;
  p->kind = kind;
  cq_status st = cq_observer_create(config, &p->obs);
  if (st != CQ_OK) {
    cq_free(p);
    return cq_fail_context(st, "%s", type->name);
  }
  const cq_observer_config *c = cq_observer_config_of(p->obs);
  cq_observer_quant_range(p->obs, &p->qmin, &p->qmax);
  p->dtype = c->dtype;
  p->qscheme = c->qscheme;
  p->per_channel = cq_qscheme_is_per_channel(c->qscheme);
  p->float_zp = c->qscheme == CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS;
  const int observer_has_axis = c->kind == CQ_OBSERVER_PER_CHANNEL_MINMAX ||
                                c->kind == CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX;
  p->ch_axis = observer_has_axis ? c->ch_axis : -1;
  p->requires_grad = 1;
  st = cq_module_new(type, p, out);
  if (st == CQ_OK) *impl_out = p;
  return st;
}

static cq_status create_fake_quantize(const cq_module_type *type, cq_fake_quant_kind kind,
                                      const cq_observer_config *config, cq_module **out) {
  fq_impl *p = NULL;
  cq_module *m = NULL;
  cq_status st = create_common(type, kind, config, &p, &m);
  if (st != CQ_OK) return st;
  const cq_dtype flag = kind == CQ_FQ_FUSED_MOVING_AVG ? CQ_I64 : CQ_U8;
  st = add_1d(m, "fake_quant_enabled", flag, 1, 0);
  if (st == CQ_OK) st = add_1d(m, "observer_enabled", flag, 1, 0);
  if (kind == CQ_FQ_FIXED_QPARAMS) {
    const cq_observer_config *c = cq_observer_config_of(p->obs);
    if (st == CQ_OK) st = add_1d(m, "scale", CQ_F32, c->fixed_scale, 0);
    if (st == CQ_OK) st = add_1d(m, "zero_point", CQ_S32, c->fixed_zero_point, 0);
  } else {
    if (st == CQ_OK) st = add_1d(m, "scale", CQ_F32, 1.0, 0);
    if (st == CQ_OK) st = add_1d(m, "zero_point", p->float_zp ? CQ_F32 : CQ_S32, 0, 0);
  }
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

cq_status cq_learnable_fake_quant_module(const cq_observer_config *observer,
                                         const cq_learnable_options *options, cq_module **out) {
  *out = NULL;
  const char *cls = "_LearnableFakeQuantize";
  cq_learnable_options o = options ? *options : cq_learnable_defaults();
  cq_observer_config c = *observer;
  if (!c.has_quant_range) {
    c.has_quant_range = 1;
    c.quant_min = 0;
    c.quant_max = 255;
  }
  if (!(c.quant_min < c.quant_max)) {
    return cq_fail(CQ_EINVAL, "%s: quant_min must be strictly less than quant_max (%lld, %lld)", cls,
                   (long long)c.quant_min, (long long)c.quant_max);
  }
  if (o.channel_len != -1 && o.channel_len < 1) {
    return cq_fail(CQ_EINVAL, "%s: Channel size must be a positive integer (got %lld)", cls,
                   (long long)o.channel_len);
  }
  if (c.qscheme == CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS) {
    return cq_fail(CQ_EUNSUPPORTED, "%s: the per_channel_affine_float_qparams scheme is not "
                   "supported", cls);
  }
  fq_impl *p = NULL;
  cq_module *m = NULL;
  cq_status st = create_common(&learnable_type, CQ_FQ_LEARNABLE, &c, &p, &m);
  if (st != CQ_OK) return st;
  /* the module's own range is the one given, even when the observer halves it (reduce_range) */
  p->qmin = (int32_t)c.quant_min;
  p->qmax = (int32_t)c.quant_max;
  p->use_grad_scaling = o.use_grad_scaling != 0;
  st = check_range_in_dtype(cls, p->dtype, c.quant_min, c.quant_max);
  const int64_t len = o.channel_len == -1 ? 1 : o.channel_len;
  cq_tensor *scale = NULL, *zp = NULL;
  if (st == CQ_OK) st = cq_tensor_create(&scale, CQ_F32, 1, &len);
  if (st == CQ_OK) {
    for (int64_t i = 0; i < len; i++) ((float *)scale->data)[i] = o.scale;
    st = cq_module_add_parameter(m, "scale", scale);
  }
  if (st == CQ_OK) st = cq_tensor_create(&zp, CQ_F32, 1, &len);
  if (st == CQ_OK) {
    for (int64_t i = 0; i < len; i++) ((float *)zp->data)[i] = o.zero_point;
    st = cq_module_add_parameter(m, "zero_point", zp);
  }
  if (st == CQ_OK) st = add_1d(m, "fake_quant_enabled", CQ_U8, 1, 0);
  if (st == CQ_OK) st = add_1d(m, "observer_enabled", CQ_U8, 1, 0);
  if (st == CQ_OK) st = add_1d(m, "static_enabled", CQ_U8, 1, 0);
  if (st == CQ_OK) st = add_1d(m, "learning_enabled", CQ_U8, 0, 0);
  if (st == CQ_OK) st = add_1d(m, "eps", CQ_F32, FLT_EPSILON, 0);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

cq_status cq_qspec_module(const cq_qspec *spec, cq_module **out) {
  *out = NULL;
  if (!spec || !spec->present) {
    return cq_fail(CQ_EINVAL, "the qconfig entry is None: nothing to create");
  }
  cq_observer_config c = spec->observer;
  switch (spec->fake_quant) {
    case CQ_FQ_NONE: {
      cq_observer *obs = NULL;
      cq_status st = cq_observer_create(&c, &obs);
      if (st != CQ_OK) return st;
      return cq_observer_module(out, obs);
    }
    case CQ_FQ_FAKE_QUANTIZE:
      if (c.has_quant_range) {
        if (!(c.quant_min <= c.quant_max)) {
          return cq_fail(CQ_EINVAL, "FakeQuantize: quant_min must be less than or equal to "
                         "quant_max (%lld, %lld)", (long long)c.quant_min, (long long)c.quant_max);
        }
        cq_status st = check_range_in_dtype("FakeQuantize", c.dtype, c.quant_min, c.quant_max);
        if (st != CQ_OK) return st;
      }
      return create_fake_quantize(&fake_quantize_type, CQ_FQ_FAKE_QUANTIZE, &c, out);
    case CQ_FQ_FUSED_MOVING_AVG: {
      if (!c.has_quant_range) { /* the fused module's defaults are 0 and 255, not None */
        c.has_quant_range = 1;
        c.quant_min = 0;
        c.quant_max = 255;
      }
      if (c.kind != CQ_OBSERVER_MOVING_AVERAGE_MINMAX &&
          c.kind != CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX) {
        return cq_fail(CQ_EINVAL, "FusedMovingAvgObsFakeQuantize: Fused observer+fake_quant module "
                       "only works with MovingAverageMinMaxObserver (got %s)",
                       cq_observer_class_name(c.kind));
      }
      if (!(c.quant_min <= c.quant_max)) {
        return cq_fail(CQ_EINVAL, "FusedMovingAvgObsFakeQuantize: quant_min must be less than or "
                       "equal to quant_max");
      }
      cq_status st = check_range_in_dtype("FusedMovingAvgObsFakeQuantize", c.dtype, c.quant_min,
                                          c.quant_max);
      if (st != CQ_OK) return st;
      return create_fake_quantize(&fused_type, CQ_FQ_FUSED_MOVING_AVG, &c, out);
    }
    case CQ_FQ_FIXED_QPARAMS:
      if (c.kind != CQ_OBSERVER_FIXED_QPARAMS) {
        return cq_fail(CQ_EINVAL, "FixedQParamsFakeQuantize's observer must be a "
                       "FixedQParamsObserver (got %s)", cq_observer_class_name(c.kind));
      }
      if (cq_qscheme_is_per_channel(c.qscheme)) {
        return cq_fail(CQ_EINVAL, "FixedQParamsFakeQuantize: Only per tensor quantization is "
                       "supported, got qscheme %s", cq_qscheme_name(c.qscheme));
      }
      return create_fake_quantize(&fixed_type, CQ_FQ_FIXED_QPARAMS, &c, out);
    case CQ_FQ_LEARNABLE: {
      cq_learnable_options o = cq_learnable_defaults();
      return cq_learnable_fake_quant_module(&c, &o, out);
    }
    default:
      return cq_fail(CQ_EINVAL, "invalid fake-quant kind %d", (int)spec->fake_quant);
  }
}

/* --- qparams, flags, modes ---------------------------------------------------------------------- */

cq_status cq_post_process_qparams(cq_module *m, cq_qparams *out) {
  memset(out, 0, sizeof *out);
  cq_observer *obs = cq_observer_module_get(m);
  if (obs) {
    cq_status st = cq_observer_qparams(obs, out);
    if (st == CQ_OK) cq_observer_quant_range(obs, &out->quant_min, &out->quant_max);
    return st;
  }
  if (!cq_is_fake_quant(m)) {
    return cq_fail(CQ_ESTATE, "%s is not an observer or fake-quantize module",
                   m ? m->type->name : "(null)");
  }
  fq_impl *p = m->impl;
  cq_status st;
  switch (p->kind) {
    case CQ_FQ_FIXED_QPARAMS: {
      st = cq_qparams_init(out, p->dtype, p->qscheme, 1, -1);
      if (st != CQ_OK) return st;
      out->scale[0] = ((const float *)buf(m, "scale")->data)[0];
      out->zero_point[0] = ((const int32_t *)buf(m, "zero_point")->data)[0];
      break;
    }
    case CQ_FQ_LEARNABLE: {
      clamp_scale_to_eps(m);
      const cq_tensor *s = buf(m, "scale"), *z = buf(m, "zero_point");
      const int64_t n = cq_tensor_numel(s);
      const int per_channel = p->per_channel;
      if (!per_channel && n != 1) {
        return cq_module_fail(m, CQ_ESHAPE, "per-tensor qparams with %lld scales", (long long)n);
      }
      st = cq_qparams_init(out, p->dtype, p->qscheme, n, per_channel ? p->ch_axis : -1);
      if (st != CQ_OK) return st;
      for (int64_t i = 0; i < n; i++) {
        out->scale[i] = ((const float *)s->data)[i];
        out->zero_point[i] = (int32_t)learnable_zp_forward(((const float *)z->data)[i], p->qmin,
                                                            p->qmax);
      }
      break;
    }
    default:
      st = cq_observer_qparams(p->obs, out);
      if (st != CQ_OK) return cq_fail_context(st, "%s", m->type->name);
      break;
  }
  out->quant_min = p->qmin;
  out->quant_max = p->qmax;
  return CQ_OK;
}

cq_qdtype cq_post_process_dtype(cq_module *m) {
  cq_observer *obs = cq_post_process_observer(m);
  return obs ? cq_observer_config_of(obs)->dtype : CQ_QFLOAT32;
}

void cq_fake_quant_enable_observer(cq_module *m, int enabled) {
  if (!cq_is_fake_quant(m)) return;
  const fq_impl *p = m->impl;
  flag_set(m, p->kind == CQ_FQ_LEARNABLE ? "static_enabled" : "observer_enabled", enabled);
}

void cq_fake_quant_enable_fake_quant(cq_module *m, int enabled) {
  if (cq_is_fake_quant(m)) flag_set(m, "fake_quant_enabled", enabled);
}

int cq_fake_quant_observer_enabled(const cq_module *m) {
  if (!cq_is_fake_quant(m)) return 0;
  const fq_impl *p = m->impl;
  return flag_get(m, p->kind == CQ_FQ_LEARNABLE ? "static_enabled" : "observer_enabled");
}

int cq_fake_quant_fake_quant_enabled(const cq_module *m) {
  return cq_is_fake_quant(m) && flag_get(m, "fake_quant_enabled");
}

static cq_status learnable_check(const cq_module *m) {
  if (cq_fake_quant_kind_of(m) != CQ_FQ_LEARNABLE) {
    return cq_fail(CQ_EINVAL, "%s is not a _LearnableFakeQuantize", m ? m->type->name : "(null)");
  }
  return CQ_OK;
}

cq_status cq_learnable_toggle_qparam_learning(cq_module *m, int enabled) {
  cq_status st = learnable_check(m);
  if (st != CQ_OK) return st;
  flag_set(m, "learning_enabled", enabled);
  ((fq_impl *)m->impl)->requires_grad = enabled != 0;
  return CQ_OK;
}

cq_status cq_learnable_set_grad_scaling(cq_module *m, int enabled) {
  cq_status st = learnable_check(m);
  if (st == CQ_OK) ((fq_impl *)m->impl)->use_grad_scaling = enabled != 0;
  return st;
}

static cq_status learnable_modes(cq_module *m, int learning, int fake_quant, int statics) {
  cq_status st = cq_learnable_toggle_qparam_learning(m, learning);
  if (st != CQ_OK) return st;
  flag_set(m, "fake_quant_enabled", fake_quant);
  flag_set(m, "static_enabled", statics);
  return CQ_OK;
}

cq_status cq_learnable_enable_param_learning(cq_module *m) { return learnable_modes(m, 1, 1, 0); }
cq_status cq_learnable_enable_static_estimate(cq_module *m) { return learnable_modes(m, 0, 1, 1); }
cq_status cq_learnable_enable_static_observation(cq_module *m) {
  return learnable_modes(m, 0, 0, 1);
}

int64_t cq_fake_quant_buffers(cq_module *m, const float **scale, const int32_t **zero_point,
                              const float **zero_point_float) {
  if (scale) *scale = NULL;
  if (zero_point) *zero_point = NULL;
  if (zero_point_float) *zero_point_float = NULL;
  if (!cq_is_fake_quant(m)) return 0;
  const cq_tensor *s = buf(m, "scale"), *z = buf(m, "zero_point");
  if (scale) *scale = s->data;
  if (z->dtype == CQ_F32) {
    if (zero_point_float) *zero_point_float = z->data;
  } else if (zero_point) {
    *zero_point = z->data;
  }
  return cq_tensor_numel(s);
}

/* Requantization parameters of the three engine rules (see requant.h for the formulas). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "kernels/requant/requant.h"
#include "quant/qmath.h"

static const char *const rule_names[CQ_RULE_COUNT] = {"qnnpack", "onednn", "fbgemm"};

const char *cq_requant_rule_name(cq_requant_rule rule) {
  if ((unsigned)rule >= CQ_RULE_COUNT) return "unknown";
  return rule_names[rule];
}

cq_status cq_requant_rule_parse(const char *name, cq_requant_rule *out) {
  for (int i = 0; i < CQ_RULE_COUNT; i++) {
    if (name && strcmp(name, rule_names[i]) == 0) {
      *out = (cq_requant_rule)i;
      return CQ_OK;
    }
  }
  return cq_fail(CQ_EINVAL, "unknown quantized engine '%s' (expected qnnpack, onednn or fbgemm)",
                 name ? name : "(null)");
}

cq_status cq_requant_params_create(int64_t channels, cq_requant_params *p) {
  memset(p, 0, sizeof *p);
  if (channels < 1 || channels > ((int64_t)1 << 40)) {
    return cq_fail(CQ_EINVAL, "requantization needs 1 to 2^40 output channels, got %lld",
                   (long long)channels);
  }
  int64_t padded = (channels + 15) / 16 * 16;
  /* five arrays of 4-byte elements, each 64-byte aligned inside one block */
  size_t bytes = (size_t)padded * 4 * 5 + 64;
  void *mem = cq_calloc_for(1, bytes, "requantization parameters");
  if (!mem) return CQ_ENOMEM;
  char *base = (char *)(((uintptr_t)mem + 63) & ~(uintptr_t)63);
  p->mem = mem;
  p->channels = channels;
  p->padded = padded;
  p->ibias = (int32_t *)base;
  p->scale = (float *)(base + (size_t)padded * 4);
  p->fbias = (float *)(base + (size_t)padded * 8);
  p->mult = (float *)(base + (size_t)padded * 12);
  p->obias = (float *)(base + (size_t)padded * 16);
  return CQ_OK;
}

void cq_requant_params_release(cq_requant_params *p) {
  if (!p) return;
  cq_free(p->mem);
  memset(p, 0, sizeof *p);
}

static int finite_positive(float v) { return isfinite(v) && v > 0.0f; }

static cq_status check_call(const cq_requant_params *p, cq_requant_rule rule, float x_scale,
                            const float *w_scale) {
  if (!p->mem) return cq_fail(CQ_ESTATE, "requantization parameters were not created");
  if ((unsigned)rule >= CQ_RULE_COUNT) {
    return cq_fail(CQ_EINVAL, "unknown requantization rule %d", (int)rule);
  }
  if (!finite_positive(x_scale)) {
    return cq_fail(CQ_EVALUE, "input scale %g must be finite and > 0", x_scale);
  }
  if (!w_scale) return cq_fail(CQ_EINVAL, "weight scales are missing");
  return CQ_OK;
}

cq_status cq_requant_check_weights(int64_t channels, const float *w_scale, int per_channel,
                                   const float *bias) {
  if (!w_scale) return cq_fail(CQ_EINVAL, "weight scales are missing");
  int64_t count = per_channel ? channels : 1;
  for (int64_t c = 0; c < count; c++) {
    if (!finite_positive(w_scale[c])) {
      return cq_fail(CQ_EVALUE, "weight scale %g of channel %lld must be finite and > 0",
                     w_scale[c], (long long)c);
    }
  }
  if (bias) {
    for (int64_t c = 0; c < channels; c++) {
      if (!isfinite(bias[c])) {
        return cq_fail(CQ_EVALUE, "bias %g of channel %lld is not finite", bias[c], (long long)c);
      }
    }
  }
  return CQ_OK;
}

/* Neutral padding: scale/mult 1, biases 0 (never stored, but keeps the vector math finite). */
static void pad_tail(cq_requant_params *p) {
  for (int64_t c = p->channels; c < p->padded; c++) {
    p->ibias[c] = 0;
    p->scale[c] = 1.0f;
    p->fbias[c] = 0.0f;
    p->mult[c] = 1.0f;
    p->obias[c] = 0.0f;
  }
}

cq_status cq_requant_params_set_static(cq_requant_params *p, cq_requant_rule rule, float x_scale,
                                       const float *w_scale, int per_channel, const float *bias,
                                       float y_scale, int32_t y_zp, int relu) {
  cq_status st = check_call(p, rule, x_scale, w_scale);
  if (st == CQ_OK) st = cq_requant_check_weights(p->channels, w_scale, per_channel, bias);
  if (st != CQ_OK) return st;
  p->dyn_ready = 0;
  if (!finite_positive(y_scale)) {
    return cq_fail(CQ_EVALUE, "output scale %g must be finite and > 0", y_scale);
  }
  if (y_zp < 0 || y_zp > 255) {
    return cq_fail(CQ_EVALUE, "output zero point %d is outside quint8's [0, 255]", (int)y_zp);
  }
  p->rule = rule;
  p->y_zp = y_zp;
  p->y_min = relu ? y_zp : 0;
  p->y_max = 255;
  p->relu = relu;
  const float inv_y = 1.0f / y_scale;
  for (int64_t c = 0; c < p->channels; c++) {
    const float sw = w_scale[per_channel ? c : 0];
    const float b = bias ? bias[c] : 0.0f;
    const float sxw = sw * x_scale; /* == f32(double(sx) * double(sw)): the exact product rounded */
    if (rule == CQ_RULE_QNNPACK) {
      const float m = sxw * inv_y;
      if (!(isfinite(m) && m >= FLT_MIN)) {
        return cq_fail(CQ_EVALUE,
                       "requantization multiplier %g of channel %lld (weight scale %g x input "
                       "scale %g / output scale %g) must be a finite positive normal float",
                       m, (long long)c, sw, x_scale, y_scale);
      }
      if (!(sxw > 0.0f)) {
        return cq_fail(CQ_EVALUE, "bias scale %g x %g of channel %lld underflows to 0", sw,
                       x_scale, (long long)c);
      }
      p->kind = CQ_OUT_U8_INT;
      p->ibias[c] = cq_quantize_val(b, 1.0f / sxw, 0, INT32_MIN, INT32_MAX);
      p->scale[c] = 1.0f;
      p->fbias[c] = 0.0f;
      p->mult[c] = m;
    } else if (rule == CQ_RULE_ONEDNN) {
      if (!isfinite(sxw)) {
        return cq_fail(CQ_EVALUE, "scale product %g x %g of channel %lld overflows", sw, x_scale,
                       (long long)c);
      }
      p->kind = CQ_OUT_U8_FLOAT;
      p->ibias[c] = 0;
      p->scale[c] = sxw;
      p->fbias[c] = b;
      p->mult[c] = inv_y;
    } else {
      const float ats = sxw;
      if (!isfinite(ats) || !(ats > 0.0f)) {
        return cq_fail(CQ_EVALUE, "scale product %g x %g of channel %lld is not a finite positive "
                       "float", sw, x_scale, (long long)c);
      }
      p->kind = CQ_OUT_U8_FLOAT;
      p->ibias[c] = 0;
      p->scale[c] = 1.0f;
      p->fbias[c] = per_channel ? b / ats : b * (1.0f / ats);
      p->mult[c] = ats / y_scale;
      if (!isfinite(p->fbias[c]) || !isfinite(p->mult[c])) {
        return cq_fail(CQ_EVALUE, "bias or multiplier of channel %lld overflows (bias %g, scale "
                       "%g, output scale %g)", (long long)c, b, ats, y_scale);
      }
    }
    p->obias[c] = 0.0f;
  }
  pad_tail(p);
  return CQ_OK;
}

cq_status cq_requant_params_set_dynamic(cq_requant_params *p, cq_requant_rule rule, float x_scale,
                                        const float *w_scale, int per_channel, const float *bias,
                                        int relu) {
  cq_status st = check_call(p, rule, x_scale, w_scale);
  if (st != CQ_OK) return st;
  const int64_t n = p->channels;
  int32_t *restrict ibias = p->ibias;
  float *restrict scale = p->scale, *restrict fbias = p->fbias, *restrict mult = p->mult;
  float *restrict obias = p->obias;
  /* called once per step by the recurrent layers: with the same weights as last time only the
   * arrays that depend on the input scale are written (the others hold the same values) */
  const int same = p->dyn_ready && p->kind == CQ_OUT_F32 && p->rule == rule && p->relu == relu &&
                   p->dyn_w_scale == w_scale && p->dyn_bias == bias &&
                   p->dyn_per_channel == per_channel;
  if (!same) {
    p->kind = CQ_OUT_F32;
    p->rule = rule;
    p->y_zp = 0;
    p->y_min = 0;
    p->y_max = 0;
    p->relu = relu;
    for (int64_t c = 0; c < n; c++) ibias[c] = 0;
  }
  if (rule == CQ_RULE_FBGEMM) {
    for (int64_t c = 0; c < n; c++) scale[c] = x_scale;
    if (!same) {
      for (int64_t c = 0; c < n; c++) fbias[c] = 0.0f;
      for (int64_t c = 0; c < n; c++) mult[c] = w_scale[per_channel ? c : 0];
      for (int64_t c = 0; c < n; c++) obias[c] = bias ? bias[c] : 0.0f;
    }
  } else if (rule == CQ_RULE_ONEDNN) {
    /* reciprocal scales, bias folded into the accumulator domain */
    const float inv_x = 1.0f / x_scale;
    if (per_channel) {
      for (int64_t c = 0; c < n; c++) mult[c] = 1.0f / (inv_x * (1.0f / w_scale[c]));
      if (bias) {
        for (int64_t c = 0; c < n; c++) fbias[c] = bias[c] * (inv_x * (1.0f / w_scale[c]));
      }
    } else {
      const float prod = inv_x * (1.0f / w_scale[0]);
      const float m = 1.0f / prod;
      for (int64_t c = 0; c < n; c++) mult[c] = m;
      if (bias) {
        for (int64_t c = 0; c < n; c++) fbias[c] = bias[c] * prod;
      }
    }
    if (!same) {
      for (int64_t c = 0; c < n; c++) scale[c] = 1.0f;
      if (!bias) {
        for (int64_t c = 0; c < n; c++) fbias[c] = 0.0f;
      }
      for (int64_t c = 0; c < n; c++) obias[c] = 0.0f;
    }
  } else {
    if (per_channel) {
      for (int64_t c = 0; c < n; c++) scale[c] = w_scale[c] * x_scale;
    } else {
      const float s = w_scale[0] * x_scale;
      for (int64_t c = 0; c < n; c++) scale[c] = s;
    }
    if (!same) {
      for (int64_t c = 0; c < n; c++) fbias[c] = 0.0f;
      for (int64_t c = 0; c < n; c++) mult[c] = 1.0f;
      for (int64_t c = 0; c < n; c++) obias[c] = bias ? bias[c] : 0.0f;
    }
  }
  if (!same) pad_tail(p);
  p->dyn_ready = 1;
  p->dyn_w_scale = w_scale;
  p->dyn_bias = bias;
  p->dyn_per_channel = per_channel;
  return CQ_OK;
}

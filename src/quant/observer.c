/* The observer object: creation with PyTorch's constructor validation, and the generic parts of
 * forward() and calculate_qparams() shared by every kind (observer_impl.h). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "core/threadpool.h"
#include "quant/observer_histogram.h"
#include "quant/observer_impl.h"

typedef struct kind_info {
  const char *cli_name;
  const char *class_name;
  const cq_observer_vtable *vt;
  int per_channel;   /* takes per-channel qschemes (otherwise per-tensor) */
  int computes;      /* calculate_qparams computes from data (otherwise placeholder-like) */
} kind_info;

static const kind_info kinds[CQ_OBSERVER_KIND_COUNT] = {
    [CQ_OBSERVER_MINMAX] = {"minmax", "MinMaxObserver", &cq_minmax_observer_vtable, 0, 1},
    [CQ_OBSERVER_MOVING_AVERAGE_MINMAX] = {"moving_average_minmax", "MovingAverageMinMaxObserver",
                                           &cq_moving_average_minmax_observer_vtable, 0, 1},
    [CQ_OBSERVER_PER_CHANNEL_MINMAX] = {"per_channel_minmax", "PerChannelMinMaxObserver",
                                        &cq_per_channel_minmax_observer_vtable, 1, 1},
    [CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX] =
        {"moving_average_per_channel_minmax", "MovingAveragePerChannelMinMaxObserver",
         &cq_moving_average_per_channel_minmax_observer_vtable, 1, 1},
    [CQ_OBSERVER_HISTOGRAM] = {"histogram", "HistogramObserver", &cq_histogram_observer_vtable, 0,
                               1},
    [CQ_OBSERVER_PERCENTILE] = {"percentile", "PercentileCalibrator",
                                &cq_percentile_calibrator_vtable, 0, 1},
    [CQ_OBSERVER_MSE] = {"mse", "MSECalibrator", &cq_mse_calibrator_vtable, 0, 1},
    [CQ_OBSERVER_ENTROPY] = {"entropy", "EntropyCalibrator", &cq_entropy_calibrator_vtable, 0, 1},
    [CQ_OBSERVER_PLACEHOLDER] = {"placeholder", "PlaceholderObserver",
                                 &cq_placeholder_observer_vtable, 0, 0},
    [CQ_OBSERVER_NOOP] = {"noop", "NoopObserver", &cq_noop_observer_vtable, 0, 0},
    [CQ_OBSERVER_FIXED_QPARAMS] = {"fixed_qparams", "FixedQParamsObserver",
                                   &cq_fixed_qparams_observer_vtable, 0, 1},
};

static int kind_valid(cq_observer_kind kind) { return (unsigned)kind < CQ_OBSERVER_KIND_COUNT; }

const char *cq_observer_kind_name(cq_observer_kind kind) {
  return kind_valid(kind) ? kinds[kind].cli_name : "invalid";
}

const char *cq_observer_class_name(cq_observer_kind kind) {
  return kind_valid(kind) ? kinds[kind].class_name : "invalid";
}

cq_status cq_observer_kind_parse(const char *name, cq_observer_kind *out) {
  for (int i = 0; i < CQ_OBSERVER_KIND_COUNT; i++) {
    if (strcmp(name, kinds[i].cli_name) == 0 || strcmp(name, kinds[i].class_name) == 0) {
      *out = (cq_observer_kind)i;
      return CQ_OK;
    }
  }
  return cq_fail(CQ_EINVAL,
                 "unknown observer '%s' (expected minmax, moving_average_minmax, histogram, "
                 "per_channel_minmax, moving_average_per_channel_minmax, percentile, mse, entropy, "
                 "placeholder, noop or fixed_qparams)",
                 name);
}

cq_observer_config cq_observer_defaults(cq_observer_kind kind) {
  cq_observer_config c;
  memset(&c, 0, sizeof c);
  c.kind = kind;
  c.dtype = CQ_QUINT8;
  c.qscheme = CQ_PER_TENSOR_AFFINE;
  c.eps = FLT_EPSILON;
  c.averaging_constant = 0.01f;
  c.bins = 2048;
  c.upsample_rate = 128;
  c.percentile = 99.99;
  c.start_bin = 128;
  c.stride = 1;
  c.fixed_scale = 1.0f;
  c.fixed_zero_point = 0;
  c.compute_dtype = CQ_QUINT8;
  if (kind_valid(kind) && kinds[kind].per_channel) c.qscheme = CQ_PER_CHANNEL_AFFINE;
  if (kind == CQ_OBSERVER_PLACEHOLDER) c.dtype = CQ_QFLOAT32;
  if (kind == CQ_OBSERVER_NOOP) c.dtype = CQ_QFLOAT16;
  if (kind == CQ_OBSERVER_FIXED_QPARAMS) {
    c.has_quant_range = 1;
    c.quant_min = 0;
    c.quant_max = 255;
  }
  return c;
}

/* --- config from text ------------------------------------------------------------------------ */

static cq_status parse_int(const char *key, const char *value, int64_t lo, int64_t hi,
                           int64_t *out) {
  char *end;
  long long v = strtoll(value, &end, 10);
  if (end == value || *end != '\0') {
    return cq_fail(CQ_EINVAL, "%s: '%s' is not an integer", key, value);
  }
  if (v < lo || v > hi) {
    return cq_fail(CQ_EINVAL, "%s: %lld is outside [%lld, %lld]", key, v, (long long)lo,
                   (long long)hi);
  }
  *out = v;
  return CQ_OK;
}

static cq_status parse_double(const char *key, const char *value, double *out) {
  char *end;
  double v = strtod(value, &end);
  if (end == value || *end != '\0') {
    return cq_fail(CQ_EINVAL, "%s: '%s' is not a number", key, value);
  }
  if (!isfinite(v)) return cq_fail(CQ_EINVAL, "%s: %s is not finite", key, value);
  *out = v;
  return CQ_OK;
}

static cq_status parse_bool(const char *key, const char *value, int *out) {
  if (!strcmp(value, "1") || !strcmp(value, "true") || !strcmp(value, "True")) {
    *out = 1;
  } else if (!strcmp(value, "0") || !strcmp(value, "false") || !strcmp(value, "False")) {
    *out = 0;
  } else {
    return cq_fail(CQ_EINVAL, "%s: '%s' is not a boolean (use 1/0 or true/false)", key, value);
  }
  return CQ_OK;
}

cq_status cq_observer_config_set(cq_observer_config *c, const char *key, const char *value) {
  int64_t i = 0;
  double d = 0;
  cq_status st;
  if (!strcmp(key, "observer")) {
    cq_observer_kind kind;
    st = cq_observer_kind_parse(value, &kind);
    if (st == CQ_OK) *c = cq_observer_defaults(kind);
    return st;
  }
  if (!strcmp(key, "dtype")) return cq_qdtype_parse(value, &c->dtype);
  if (!strcmp(key, "compute_dtype")) {
    st = cq_qdtype_parse(value, &c->compute_dtype);
    if (st == CQ_OK) c->has_compute_dtype = 1;
    return st;
  }
  if (!strcmp(key, "qscheme")) return cq_qscheme_parse(value, &c->qscheme);
  if (!strcmp(key, "reduce_range")) return parse_bool(key, value, &c->reduce_range);
  if (!strcmp(key, "quant_min") || !strcmp(key, "quant_max")) {
    st = parse_int(key, value, INT32_MIN, INT32_MAX, &i);
    if (st != CQ_OK) return st;
    if (!strcmp(key, "quant_min")) {
      c->quant_min = i;
    } else {
      c->quant_max = i;
    }
    c->has_quant_range = 1;
    return CQ_OK;
  }
  if (!strcmp(key, "eps") || !strcmp(key, "averaging_constant") || !strcmp(key, "scale")) {
    st = parse_double(key, value, &d);
    if (st != CQ_OK) return st;
    if (key[0] == 'e') c->eps = (float)d;
    else if (key[0] == 'a') c->averaging_constant = (float)d;
    else c->fixed_scale = (float)d;
    return CQ_OK;
  }
  if (!strcmp(key, "percentile")) return parse_double(key, value, &c->percentile);
  if (!strcmp(key, "ch_axis")) {
    st = parse_int(key, value, -CQ_MAX_DIMS, CQ_MAX_DIMS - 1, &i);
    if (st == CQ_OK) c->ch_axis = (int)i;
    return st;
  }
  if (!strcmp(key, "zero_point")) {
    st = parse_int(key, value, INT32_MIN, INT32_MAX, &i);
    if (st == CQ_OK) c->fixed_zero_point = (int32_t)i;
    return st;
  }
  if (!strcmp(key, "bins") || !strcmp(key, "upsample_rate") || !strcmp(key, "start_bin") ||
      !strcmp(key, "stride")) {
    st = parse_int(key, value, 0, INT32_MAX, &i);
    if (st != CQ_OK) return st;
    if (!strcmp(key, "bins")) c->bins = (int)i;
    else if (!strcmp(key, "upsample_rate")) c->upsample_rate = (int)i;
    else if (!strcmp(key, "start_bin")) c->start_bin = (int)i;
    else c->stride = (int)i;
    return CQ_OK;
  }
  return cq_fail(CQ_EINVAL, "unknown observer option '%s'", key);
}

/* --- creation ---------------------------------------------------------------------------------- */

/* Largest histogram we accept: keeps a typo like bins=2000000000 from allocating gigabytes. */
#define CQ_MAX_BINS (1 << 24)

static cq_status validate(const cq_observer_config *c, int32_t *qmin, int32_t *qmax) {
  if (!kind_valid(c->kind)) return cq_fail(CQ_EINVAL, "invalid observer kind %d", (int)c->kind);
  const kind_info *k = &kinds[c->kind];
  if (!k->computes || c->kind == CQ_OBSERVER_FIXED_QPARAMS) {
    if ((unsigned)c->dtype >= CQ_QDTYPE_COUNT) return cq_fail(CQ_EINVAL, "invalid dtype");
    if (c->kind == CQ_OBSERVER_FIXED_QPARAMS) {
      if (!(c->fixed_scale > 0.0f) || isinf(c->fixed_scale)) {
        return cq_fail(CQ_EINVAL, "FixedQParamsObserver: scale %g must be finite and positive",
                       c->fixed_scale);
      }
      cq_status st = cq_quant_range_resolve(c->dtype, 0, c->has_quant_range, c->quant_min,
                                            c->quant_max, qmin, qmax);
      if (st != CQ_OK) return cq_fail_context(st, "FixedQParamsObserver");
      if (c->fixed_zero_point < *qmin || c->fixed_zero_point > *qmax) {
        return cq_fail(CQ_EINVAL, "FixedQParamsObserver: zero point %d is outside [%d, %d]",
                       c->fixed_zero_point, *qmin, *qmax);
      }
    } else {
      *qmin = 0;
      *qmax = 0;
    }
    return CQ_OK;
  }
  if (c->dtype != CQ_QUINT8 && c->dtype != CQ_QINT8 && c->dtype != CQ_QINT32 &&
      c->dtype != CQ_QUINT4X2) {
    return cq_fail(CQ_EINVAL, "%s: dtype %s is not supported (use quint8, qint8, qint32 or "
                   "quint4x2)", k->class_name, cq_qdtype_name(c->dtype));
  }
  if ((unsigned)c->qscheme >= CQ_QSCHEME_COUNT) return cq_fail(CQ_EINVAL, "invalid qscheme");
  if (cq_qscheme_is_per_channel(c->qscheme) != k->per_channel) {
    return cq_fail(CQ_EINVAL, "%s does not support qscheme %s (use %s)", k->class_name,
                   cq_qscheme_name(c->qscheme),
                   k->per_channel ? "per_channel_affine, per_channel_symmetric or "
                                    "per_channel_affine_float_qparams"
                                  : "per_tensor_affine or per_tensor_symmetric");
  }
  if (cq_qscheme_is_symmetric(c->qscheme) && c->dtype == CQ_QUINT8 && c->reduce_range &&
      c->kind != CQ_OBSERVER_HISTOGRAM && c->kind != CQ_OBSERVER_PERCENTILE &&
      c->kind != CQ_OBSERVER_MSE && c->kind != CQ_OBSERVER_ENTROPY) {
    return cq_fail(CQ_EUNSUPPORTED, "%s: symmetric quantization of quint8 with reduce_range is "
                   "not supported (as in PyTorch)", k->class_name);
  }
  if (!(c->eps >= 0.0f) || isinf(c->eps)) {
    return cq_fail(CQ_EINVAL, "%s: eps %g must be finite and >= 0", k->class_name, c->eps);
  }
  if (!(c->averaging_constant >= 0.0f && c->averaging_constant <= 1.0f)) {
    return cq_fail(CQ_EINVAL, "%s: averaging_constant %g must be in [0, 1]", k->class_name,
                   c->averaging_constant);
  }
  if (c->bins < 1 || c->bins > CQ_MAX_BINS) {
    return cq_fail(CQ_EINVAL, "%s: bins %d must be in [1, %d]", k->class_name, c->bins,
                   CQ_MAX_BINS);
  }
  if (c->upsample_rate < 1 || c->upsample_rate > 4096) {
    return cq_fail(CQ_EINVAL, "%s: upsample_rate %d must be in [1, 4096]", k->class_name,
                   c->upsample_rate);
  }
  if (!(c->percentile > 0.0 && c->percentile <= 100.0)) {
    return cq_fail(CQ_EINVAL, "%s: percentile %g must be in (0, 100]", k->class_name,
                   c->percentile);
  }
  if (c->start_bin < 1 || c->stride < 1) {
    return cq_fail(CQ_EINVAL, "%s: start_bin %d and stride %d must be >= 1", k->class_name,
                   c->start_bin, c->stride);
  }
  if (k->per_channel && (c->ch_axis < -CQ_MAX_DIMS || c->ch_axis >= CQ_MAX_DIMS)) {
    return cq_fail(CQ_EINVAL, "%s: ch_axis %d is outside [-%d, %d]", k->class_name, c->ch_axis,
                   CQ_MAX_DIMS, CQ_MAX_DIMS - 1);
  }
  cq_status st = cq_quant_range_resolve(c->dtype, c->reduce_range, c->has_quant_range,
                                        c->quant_min, c->quant_max, qmin, qmax);
  if (st != CQ_OK) return cq_fail_context(st, "%s", k->class_name);
  return CQ_OK;
}

cq_status cq_observer_create(const cq_observer_config *config, cq_observer **out) {
  *out = NULL;
  int32_t qmin, qmax;
  cq_status st = validate(config, &qmin, &qmax);
  if (st != CQ_OK) return st;
  cq_observer *obs = cq_calloc_for(1, sizeof *obs, "observer");
  if (!obs) return CQ_ENOMEM;
  obs->vt = kinds[config->kind].vt;
  obs->cfg = *config;
  obs->quant_min = qmin;
  obs->quant_max = qmax;
  obs->min_val = INFINITY;
  obs->max_val = -INFINITY;
  if (obs->vt->init) {
    st = obs->vt->init(obs);
    if (st != CQ_OK) {
      cq_observer_free(obs);
      return st;
    }
  }
  *out = obs;
  return CQ_OK;
}

void cq_observer_free(cq_observer *obs) {
  if (!obs) return;
  if (obs->vt && obs->vt->destroy) obs->vt->destroy(obs);
  cq_free(obs->min_vals);
  cq_free(obs->max_vals);
  cq_free(obs);
}

const cq_observer_config *cq_observer_config_of(const cq_observer *obs) { return &obs->cfg; }

void cq_observer_quant_range(const cq_observer *obs, int32_t *quant_min, int32_t *quant_max) {
  *quant_min = obs->quant_min;
  *quant_max = obs->quant_max;
}

int cq_observer_has_data(const cq_observer *obs) { return obs->has_data; }

/* --- forward ----------------------------------------------------------------------------------- */

/* Branch-free scan: a float is NaN or Inf exactly when its exponent bits are all set, and adding one
 * exponent step to an all-ones exponent carries into bit 31. GCC vector extensions keep it 4-wide on
 * any target (SSE2 on x86-64, NEON on AArch64). */
typedef uint32_t cq_u32x4 __attribute__((vector_size(16)));

static int all_finite_range(const float *x, int64_t n) {
  const cq_u32x4 exp_mask = {0x7f800000u, 0x7f800000u, 0x7f800000u, 0x7f800000u};
  const cq_u32x4 step = {0x00800000u, 0x00800000u, 0x00800000u, 0x00800000u};
  cq_u32x4 bad4 = {0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    cq_u32x4 v;
    memcpy(&v, x + i, sizeof v);
    bad4 |= (v & exp_mask) + step;
  }
  uint32_t bad = bad4[0] | bad4[1] | bad4[2] | bad4[3];
  for (; i < n; i++) {
    uint32_t v;
    memcpy(&v, x + i, sizeof v);
    bad |= (v & 0x7f800000u) + 0x00800000u;
  }
  return (bad & 0x80000000u) == 0;
}

/* Batches of at least two grains are scanned by the default thread pool, one contiguous part per
 * thread (a memory-bound pass: each core then brings its share of the batch into its cache). */
#define FINITE_SCAN_GRAIN 65536
#define FINITE_SCAN_MAX_PARTS 64

typedef struct finite_scan {
  const float *x;
  int64_t n;
  int parts;
  int ok[FINITE_SCAN_MAX_PARTS];
} finite_scan;

static void finite_scan_part(void *ctx, int thread, int64_t begin, int64_t end) {
  (void)thread;
  finite_scan *job = ctx;
  for (int64_t t = begin; t < end; t++) {
    int64_t b, e;
    cq_partition(job->n, job->parts, (int)t, &b, &e);
    job->ok[t] = all_finite_range(job->x + b, e - b);
  }
}

static int all_finite(const float *x, int64_t n) {
  cq_threadpool *tp = cq_default_threadpool();
  int64_t parts = n / FINITE_SCAN_GRAIN;
  if (parts > cq_threadpool_threads(tp)) parts = cq_threadpool_threads(tp);
  if (parts > FINITE_SCAN_MAX_PARTS) parts = FINITE_SCAN_MAX_PARTS;
  if (parts <= 1) return all_finite_range(x, n);
  finite_scan job = {.x = x, .n = n, .parts = (int)parts};
  cq_parallel_for(tp, parts, (int)parts, finite_scan_part, &job);
  for (int t = 0; t < job.parts; t++) {
    if (!job.ok[t]) return 0;
  }
  return 1;
}

cq_status cq_observer_nonfinite_error(const float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    if (!isfinite(x[i])) {
      return cq_fail(CQ_EVALUE, "element %lld is %s; observers need finite values", (long long)i,
                     isnan(x[i]) ? "NaN" : (x[i] > 0 ? "+Inf" : "-Inf"));
    }
  }
  return CQ_OK;
}

cq_status cq_observer_update(cq_observer *obs, const float *x, int ndim, const int64_t *shape) {
  int64_t n;
  cq_status st = cq_shape_numel(ndim, shape, sizeof(float), &n);
  if (st != CQ_OK) return st;
  if (n == 0 || !obs->vt->update) return CQ_OK; /* empty batches are ignored, as in PyTorch */
  if (!x) return cq_fail(CQ_EINVAL, "batch data is NULL");
  /* The histogram observer looks for NaN and Inf in its own first pass over the batch (its
   * torch.aminmax scan), before it changes anything, and reports them with
   * cq_observer_nonfinite_error; every other kind gets the batch only once it passed this scan. */
  if (obs->vt != &cq_histogram_observer_vtable && !all_finite(x, n)) {
    return cq_observer_nonfinite_error(x, n);
  }
  st = obs->vt->update(obs, x, ndim, shape, n);
  if (st == CQ_OK) obs->has_data = 1;
  return st;
}

cq_status cq_observer_update_tensor(cq_observer *obs, const cq_tensor *x) {
  if (x->dtype == CQ_F32) return cq_observer_update(obs, x->data, x->ndim, x->shape);
  cq_tensor *f;
  cq_status st = cq_tensor_to_f32(x, &f);
  if (st != CQ_OK) return st;
  st = cq_observer_update(obs, f->data, f->ndim, f->shape);
  cq_tensor_free(f);
  return st;
}

/* --- calculate_qparams ------------------------------------------------------------------------- */

void cq_observer_rule(const cq_observer *obs, cq_qparam_rule *rule) {
  rule->dtype = obs->cfg.dtype;
  rule->qscheme = obs->cfg.qscheme;
  rule->quant_min = obs->quant_min;
  rule->quant_max = obs->quant_max;
  rule->custom_range = obs->cfg.has_quant_range;
  rule->eps = obs->cfg.eps;
}

cq_status cq_observer_qparams_from_range(const cq_observer *obs, float min_val, float max_val,
                                         cq_qparams *out) {
  cq_qparam_rule rule;
  cq_observer_rule(obs, &rule);
  cq_status st = cq_qparams_init(out, obs->cfg.dtype, obs->cfg.qscheme, 1, obs->cfg.ch_axis);
  if (st != CQ_OK) return st;
  out->quant_min = obs->quant_min;
  out->quant_max = obs->quant_max;
  st = cq_calculate_qparams(&rule, min_val, max_val, &out->scale[0], &out->zero_point[0],
                            out->zero_point_float);
  if (st != CQ_OK) cq_qparams_release(out);
  return st;
}

cq_status cq_observer_qparams(cq_observer *obs, cq_qparams *out) {
  memset(out, 0, sizeof *out);
  const kind_info *k = &kinds[obs->cfg.kind];
  if (!obs->vt->qparams) {
    return cq_fail(CQ_ESTATE, "%s does not compute quantization parameters", k->class_name);
  }
  if (!obs->has_data && k->computes && obs->cfg.kind != CQ_OBSERVER_FIXED_QPARAMS) {
    cq_warn("%s has not observed any data; using scale 1.0 and zero point 0", k->class_name);
    cq_status st = cq_qparams_init(out, obs->cfg.dtype, obs->cfg.qscheme, 1, obs->cfg.ch_axis);
    if (st == CQ_OK) {
      out->quant_min = obs->quant_min;
      out->quant_max = obs->quant_max;
    }
    return st;
  }
  return obs->vt->qparams(obs, out);
}

/* --- state and printing ------------------------------------------------------------------------ */

int64_t cq_observer_channels(const cq_observer *obs) {
  if (kinds[obs->cfg.kind].per_channel) return obs->channels;
  return obs->has_data ? 1 : 0;
}

int64_t cq_observer_min_max(const cq_observer *obs, float *min_val, float *max_val, int64_t cap) {
  if (kinds[obs->cfg.kind].per_channel) {
    if (obs->channels <= cap) {
      for (int64_t c = 0; c < obs->channels; c++) {
        if (min_val) min_val[c] = obs->min_vals[c];
        if (max_val) max_val[c] = obs->max_vals[c];
      }
    }
    return obs->channels;
  }
  if (cap >= 1) {
    if (min_val) min_val[0] = obs->min_val;
    if (max_val) max_val[0] = obs->max_val;
  }
  return 1;
}

size_t cq_observer_repr(const cq_observer *obs, char *buf, size_t cap) {
  cq_strbuf sb;
  cq_strbuf_init(&sb);
  if (obs->vt->repr) {
    obs->vt->repr(obs, &sb);
  } else {
    cq_strbuf_appendf(&sb, "%s(min_val=", kinds[obs->cfg.kind].class_name);
    cq_strbuf_append_pyfloat(&sb, obs->min_val);
    cq_strbuf_append(&sb, ", max_val=");
    cq_strbuf_append_pyfloat(&sb, obs->max_val);
    cq_strbuf_append(&sb, ")");
  }
  size_t n = cq_strbuf_copy_out(&sb, buf, cap);
  cq_strbuf_release(&sb);
  return n;
}

void cq_observer_reset(cq_observer *obs) {
  obs->has_data = 0;
  obs->min_val = INFINITY;
  obs->max_val = -INFINITY;
  obs->channels = 0;
  cq_free(obs->min_vals);
  cq_free(obs->max_vals);
  obs->min_vals = NULL;
  obs->max_vals = NULL;
  if (obs->vt->reset) obs->vt->reset(obs);
}

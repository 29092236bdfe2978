/* MinMaxObserver, MovingAverageMinMaxObserver and their per-channel versions
 * (torch-1.13-semantics.md 1.3-1.5). All state arithmetic is float32, as torch's tensors are. */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "quant/observer_impl.h"

static void batch_min_max(const float *x, int64_t n, float *mn, float *mx) {
  float lo = x[0], hi = x[0];
  for (int64_t i = 1; i < n; i++) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
  }
  *mn = lo;
  *mx = hi;
}

static cq_status minmax_update(cq_observer *obs, const float *x, int ndim, const int64_t *shape,
                               int64_t n) {
  (void)ndim;
  (void)shape;
  float mn, mx;
  batch_min_max(x, n, &mn, &mx);
  if (mn < obs->min_val) obs->min_val = mn;
  if (mx > obs->max_val) obs->max_val = mx;
  return CQ_OK;
}

static cq_status moving_average_update(cq_observer *obs, const float *x, int ndim,
                                       const int64_t *shape, int64_t n) {
  (void)ndim;
  (void)shape;
  float mn, mx;
  batch_min_max(x, n, &mn, &mx);
  if (!obs->has_data) {
    obs->min_val = mn;
    obs->max_val = mx;
  } else {
    const float c = obs->cfg.averaging_constant;
    obs->min_val = obs->min_val + c * (mn - obs->min_val);
    obs->max_val = obs->max_val + c * (mx - obs->max_val);
  }
  return CQ_OK;
}

static cq_status per_tensor_qparams(cq_observer *obs, cq_qparams *out) {
  return cq_observer_qparams_from_range(obs, obs->min_val, obs->max_val, out);
}

const cq_observer_vtable cq_minmax_observer_vtable = {
    .update = minmax_update,
    .qparams = per_tensor_qparams,
};

const cq_observer_vtable cq_moving_average_minmax_observer_vtable = {
    .update = moving_average_update,
    .qparams = per_tensor_qparams,
};

/* --- per channel ------------------------------------------------------------------------------- */

/* Per-channel min/max of a batch along the observer's ch_axis, into fresh arrays. */
static cq_status channel_min_max(const cq_observer *obs, const float *x, int ndim,
                                 const int64_t *shape, int64_t *channels, float **mn_out,
                                 float **mx_out) {
  if (ndim < 2) {
    return cq_fail(CQ_ESHAPE, "per-channel observers need an input of at least 2 dimensions (got "
                   "%d), as PyTorch's", ndim);
  }
  int axis = obs->cfg.ch_axis < 0 ? ndim + obs->cfg.ch_axis : obs->cfg.ch_axis;
  if (axis < 0 || axis >= ndim) {
    return cq_fail(CQ_ESHAPE, "ch_axis %d is out of range for a rank-%d batch", obs->cfg.ch_axis,
                   ndim);
  }
  int64_t outer = 1, inner = 1, ch = shape[axis];
  for (int i = 0; i < axis; i++) outer *= shape[i];
  for (int i = axis + 1; i < ndim; i++) inner *= shape[i];
  float *mn = cq_malloc_for(sizeof(float) * (size_t)ch, "per-channel minimum");
  float *mx = cq_malloc_for(sizeof(float) * (size_t)ch, "per-channel maximum");
  if (!mn || !mx) {
    cq_free(mn);
    cq_free(mx);
    return CQ_ENOMEM;
  }
  for (int64_t c = 0; c < ch; c++) {
    mn[c] = INFINITY;
    mx[c] = -INFINITY;
  }
  for (int64_t o = 0; o < outer; o++) {
    for (int64_t c = 0; c < ch; c++) {
      const float *row = x + (o * ch + c) * inner;
      float lo = mn[c], hi = mx[c];
      for (int64_t i = 0; i < inner; i++) {
        if (row[i] < lo) lo = row[i];
        if (row[i] > hi) hi = row[i];
      }
      mn[c] = lo;
      mx[c] = hi;
    }
  }
  *channels = ch;
  *mn_out = mn;
  *mx_out = mx;
  return CQ_OK;
}

static cq_status per_channel_update_common(cq_observer *obs, const float *x, int ndim,
                                           const int64_t *shape, int moving_average) {
  int64_t ch = 0;
  float *mn = NULL, *mx = NULL;
  cq_status st = channel_min_max(obs, x, ndim, shape, &ch, &mn, &mx);
  if (st != CQ_OK) return st;
  if (obs->channels == 0) {
    obs->channels = ch;
    obs->min_vals = mn;
    obs->max_vals = mx;
    return CQ_OK;
  }
  if (ch != obs->channels) {
    cq_free(mn);
    cq_free(mx);
    return cq_fail(CQ_ESHAPE, "batch has %lld channels along ch_axis %d but earlier batches had "
                   "%lld", (long long)ch, obs->cfg.ch_axis, (long long)obs->channels);
  }
  const float a = obs->cfg.averaging_constant;
  for (int64_t c = 0; c < ch; c++) {
    if (moving_average) {
      obs->min_vals[c] = obs->min_vals[c] + a * (mn[c] - obs->min_vals[c]);
      obs->max_vals[c] = obs->max_vals[c] + a * (mx[c] - obs->max_vals[c]);
    } else {
      if (mn[c] < obs->min_vals[c]) obs->min_vals[c] = mn[c];
      if (mx[c] > obs->max_vals[c]) obs->max_vals[c] = mx[c];
    }
  }
  cq_free(mn);
  cq_free(mx);
  return CQ_OK;
}

static cq_status per_channel_minmax_update(cq_observer *obs, const float *x, int ndim,
                                           const int64_t *shape, int64_t n) {
  (void)n;
  return per_channel_update_common(obs, x, ndim, shape, 0);
}

static cq_status per_channel_moving_average_update(cq_observer *obs, const float *x, int ndim,
                                                   const int64_t *shape, int64_t n) {
  (void)n;
  return per_channel_update_common(obs, x, ndim, shape, 1);
}

static cq_status per_channel_qparams(cq_observer *obs, cq_qparams *out) {
  cq_qparam_rule rule;
  cq_observer_rule(obs, &rule);
  cq_status st = cq_qparams_init(out, obs->cfg.dtype, obs->cfg.qscheme, obs->channels,
                                 obs->cfg.ch_axis);
  if (st != CQ_OK) return st;
  out->quant_min = obs->quant_min;
  out->quant_max = obs->quant_max;
  for (int64_t c = 0; c < obs->channels; c++) {
    st = cq_calculate_qparams(&rule, obs->min_vals[c], obs->max_vals[c], &out->scale[c],
                              &out->zero_point[c],
                              out->zero_point_float ? &out->zero_point_float[c] : NULL);
    if (st != CQ_OK) {
      cq_qparams_release(out);
      return cq_fail_context(st, "channel %lld", (long long)c);
    }
  }
  return CQ_OK;
}

static void per_channel_repr(const cq_observer *obs, cq_strbuf *sb) {
  cq_strbuf extra;
  cq_strbuf_init(&extra);
  cq_strbuf_append(&extra, "min_val=");
  cq_format_torch_tensor_1d(&extra, obs->min_vals, obs->channels);
  cq_strbuf_append(&extra, ", max_val=");
  cq_format_torch_tensor_1d(&extra, obs->max_vals, obs->channels);
  cq_format_leaf_repr(sb, cq_observer_class_name(obs->cfg.kind), cq_strbuf_str(&extra));
  if (extra.failed) sb->failed = 1;
  cq_strbuf_release(&extra);
}

const cq_observer_vtable cq_per_channel_minmax_observer_vtable = {
    .update = per_channel_minmax_update,
    .qparams = per_channel_qparams,
    .repr = per_channel_repr,
};

const cq_observer_vtable cq_moving_average_per_channel_minmax_observer_vtable = {
    .update = per_channel_moving_average_update,
    .qparams = per_channel_qparams,
    .repr = per_channel_repr,
};

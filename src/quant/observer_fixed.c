/* Observers that compute nothing from data (torch-1.13-semantics.md 1.7): PlaceholderObserver and
 * NoopObserver (identity; calculate_qparams is an error) and FixedQParamsObserver (identity;
 * returns the scale and zero point it was built with). */
#include "core/pyformat.h"
#include "quant/observer_impl.h"

static void placeholder_repr(const cq_observer *obs, cq_strbuf *sb) {
  cq_strbuf_appendf(sb, "%s()", cq_observer_class_name(obs->cfg.kind));
}

const cq_observer_vtable cq_placeholder_observer_vtable = {
    .repr = placeholder_repr,
};

const cq_observer_vtable cq_noop_observer_vtable = {
    .repr = placeholder_repr,
};

static cq_status fixed_update(cq_observer *obs, const float *x, int ndim, const int64_t *shape,
                              int64_t n) {
  (void)obs;
  (void)x;
  (void)ndim;
  (void)shape;
  (void)n;
  return CQ_OK;
}

static cq_status fixed_qparams(cq_observer *obs, cq_qparams *out) {
  cq_status st = cq_qparams_init(out, obs->cfg.dtype, obs->cfg.qscheme, 1, -1);
  if (st != CQ_OK) return st;
  out->quant_min = obs->quant_min;
  out->quant_max = obs->quant_max;
  out->scale[0] = obs->cfg.fixed_scale;
  out->zero_point[0] = obs->cfg.fixed_zero_point;
  return CQ_OK;
}

const cq_observer_vtable cq_fixed_qparams_observer_vtable = {
    .update = fixed_update,
    .qparams = fixed_qparams,
    .repr = placeholder_repr,
};

/* nnq.QFunctional (convert's replacement for FloatFunctional) and the small modules convert maps
 * one to one: nnq.ReLU6 and nnq.Dropout.
 *
 * QFunctional runs one op on quantized tensors with the output qparams its observer chose:
 * add / add_relu (2 inputs; 5.6: QNNPACK's fixed point for quint8 under the QNNPACK engine, ATen's
 * float kernel otherwise), mul (2 inputs), cat along a dim (1 to CQ_MAX_IO inputs). PyTorch prints
 * it with the Identity that replaced its observer:
 *   QFunctional(
 *     scale=1.0, zero_point=0
 *     (activation_post_process): Identity()
 *   )
 * The Identity is part of the printed text only: it is not a child module, so passes that remove
 * children called activation_post_process cannot take it away. */
#include <math.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "nn/module_impl.h"
#include "nn/quantized/qmodules.h"
#include "nn/quantized/qops.h"
#include "nn/quantized/qstatic_impl.h"

typedef struct qfunctional_impl {
  cq_qfunctional_op op;
  int cat_dim;
  float scale;
  int32_t zero_point;
  cq_backend engine;
} qfunctional_impl;

static cq_status qfunctional_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                     int nout, cq_tensor **out) {
  (void)nout;
  const qfunctional_impl *p = m->impl;
  switch (p->op) {
    case CQ_QF_ADD:
    case CQ_QF_ADD_RELU:
      return cq_qop_add(m, ctx, in[0], in[1], p->scale, p->zero_point, p->op == CQ_QF_ADD_RELU,
                        p->engine, CQ_QLAYOUT_DEFAULT, &out[0]);
    case CQ_QF_MUL:
      return cq_qop_mul(m, ctx, in[0], in[1], p->scale, p->zero_point, 0, &out[0]);
    default:
      return cq_qop_cat(m, ctx, nin, in, p->cat_dim, p->scale, p->zero_point, CQ_QLAYOUT_DEFAULT,
                        &out[0]);
  }
}

static void qfunctional_repr(const cq_module *m, cq_strbuf *sb) {
  const qfunctional_impl *p = m->impl;
  cq_strbuf_append(sb, "QFunctional(\n  scale=");
  cq_qmod_append_scale(sb, p->scale);
  cq_strbuf_appendf(sb, ", zero_point=%d\n  (activation_post_process): Identity()\n)",
                    (int)p->zero_point);
}

/* add / add_relu keep channels-last inputs channels-last (cq_qop_add): worth it when the consumer
 * reads that layout too */
static int qfunctional_reads_channels_last(const cq_module *m, int after) {
  const qfunctional_impl *p = m->impl;
  return (p->op == CQ_QF_ADD || p->op == CQ_QF_ADD_RELU) && after;
}

static const cq_module_type qfunctional2_type = {
    .name = "QFunctional",
    .forward = qfunctional_forward,
    .repr = qfunctional_repr,
    .nin_min = 2, .nin_max = 2, .nout_min = 1, .nout_max = 1,
    .reads_channels_last = qfunctional_reads_channels_last,
};

static const cq_module_type qfunctional_cat_type = {
    .name = "QFunctional",
    .forward = qfunctional_forward,
    .repr = qfunctional_repr,
    .nin_min = 1, .nin_max = CQ_MAX_IO, .nout_min = 1, .nout_max = 1,
};

cq_status cq_qmodule_functional(cq_module **out, cq_qfunctional_op op, int cat_dim,
                                const cq_qparams *yq, cq_backend engine) {
  if (!out) return cq_fail(CQ_EINVAL, "quantized module: the output pointer is NULL");
  *out = NULL;
  cq_status st = cq_qmod_check_engine(engine);
  if (st != CQ_OK) return st;
  if ((unsigned)op > CQ_QF_CAT) return cq_fail(CQ_EINVAL, "QFunctional: unknown op %d", (int)op);
  if (op == CQ_QF_CAT && (cat_dim < -CQ_MAX_DIMS || cat_dim >= CQ_MAX_DIMS)) {
    return cq_fail(CQ_EINVAL, "QFunctional: cat dim %d must be in [%d, %d]", cat_dim,
                   -CQ_MAX_DIMS, CQ_MAX_DIMS - 1);
  }
  if (!yq || !yq->scale || !yq->zero_point || yq->count != 1 ||
      cq_qscheme_is_per_channel(yq->qscheme)) {
    return cq_fail(CQ_EINVAL, "QFunctional: output qparams must be per-tensor");
  }
  if (yq->dtype != CQ_QUINT8 && yq->dtype != CQ_QINT8) {
    return cq_fail(CQ_EINVAL, "QFunctional: output dtype must be torch.quint8 or torch.qint8, got "
                   "torch.%s", cq_qdtype_name(yq->dtype));
  }
  if (!(isfinite(yq->scale[0]) && yq->scale[0] > 0.0f)) {
    return cq_fail(CQ_EVALUE, "QFunctional: scale %g must be finite and > 0",
                   (double)yq->scale[0]);
  }
  const int32_t lo = yq->dtype == CQ_QUINT8 ? 0 : -128, hi = yq->dtype == CQ_QUINT8 ? 255 : 127;
  if (yq->zero_point[0] < lo || yq->zero_point[0] > hi) {
    return cq_fail(CQ_EVALUE, "QFunctional: zero point %d is outside torch.%s's [%d, %d]",
                   (int)yq->zero_point[0], cq_qdtype_name(yq->dtype), (int)lo, (int)hi);
  }
  qfunctional_impl *p = cq_calloc_for(1, sizeof *p, "QFunctional");
  if (!p) return CQ_ENOMEM;
  p->op = op;
  p->cat_dim = cat_dim;
  p->scale = yq->scale[0];
  p->zero_point = yq->zero_point[0];
  p->engine = engine;
  return cq_module_new(op == CQ_QF_CAT ? &qfunctional_cat_type : &qfunctional2_type, p, out);
}

/* --- nnq.ReLU6 ---------------------------------------------------------------------------------- */

static cq_status qrelu6_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  return cq_qop_clamp(m, ctx, in[0], 0.0f, 6.0f, &out[0]);
}

static int qrelu6_clamp_of(const cq_module *m, float x_scale, int32_t x_zp, int32_t *lo,
                           int32_t *hi) {
  (void)m;
  cq_qop_clamp_bounds(0.0f, 6.0f, x_scale, x_zp, lo, hi);
  return 1;
}

static const cq_module_type qrelu6_type = {
    .name = "QuantizedReLU6",
    .forward = qrelu6_forward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
    .reads_channels_last = cq_reads_channels_last_passes, /* the clamp keeps the layout */
    .clamp_of = qrelu6_clamp_of,
};

cq_status cq_qmodule_relu6(cq_module **out) {
  if (!out) return cq_fail(CQ_EINVAL, "QuantizedReLU6: the output pointer is NULL");
  return cq_module_new(&qrelu6_type, NULL, out);
}

/* --- nnq.Dropout -------------------------------------------------------------------------------- */

typedef struct qdropout_impl {
  float p;
} qdropout_impl;

static cq_status qdropout_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                  int nout, cq_tensor **out) {
  (void)m;
  (void)ctx;
  (void)nin;
  (void)nout;
  out[0] = in[0];
  return CQ_OK;
}

static void qdropout_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const qdropout_impl *p = m->impl;
  cq_strbuf_append(sb, "p=");
  cq_qmod_append_float_arg(sb, p->p);
  cq_strbuf_append(sb, ", inplace=False");
}

static const cq_module_type qdropout_type = {
    .name = "QuantizedDropout",
    .forward = qdropout_forward,
    .extra_repr = qdropout_extra_repr,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_qmodule_dropout(cq_module **out, float p) {
  if (!out) return cq_fail(CQ_EINVAL, "quantized module: the output pointer is NULL");
  *out = NULL;
  if (!(p >= 0.0f && p <= 1.0f)) {
    return cq_fail(CQ_EINVAL, "QuantizedDropout: dropout probability has to be between 0 and 1, "
                   "but got %g", (double)p);
  }
  qdropout_impl *impl = cq_calloc_for(1, sizeof *impl, "QuantizedDropout");
  if (!impl) return CQ_ENOMEM;
  impl->p = p;
  return cq_module_new(&qdropout_type, impl, out);
}

int cq_qmodule_describe_functional(const cq_module *m, cq_qmodule_info *info) {
  if (m->type != &qfunctional2_type && m->type != &qfunctional_cat_type) return 0;
  const qfunctional_impl *p = m->impl;
  *info = (cq_qmodule_info){0};
  info->has_engine = 1;
  info->engine = p->engine;
  info->scale = p->scale;
  info->zero_point = p->zero_point; /* the dtype is the inputs' */
  info->relu = p->op == CQ_QF_ADD_RELU;
  info->op = p->op;
  info->cat_dim = p->cat_dim;
  return 1;
}

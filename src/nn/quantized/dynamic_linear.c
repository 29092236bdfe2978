/* nnqd.Linear (DynamicQuantizedLinear) and nniqd.LinearReLU (DynamicQuantizedLinearReLU): float in,
 * float out, int8 weights packed once at conversion, activations quantized on every call.
 *
 * Forward = quantized::linear_dynamic(x, packed, reduce_range=True) (torch-1.13-semantics.md 5.4),
 * run by the int8 GEMM's dynamic path (kernels/gemm/qgemm.h, cq_qgemm_dynamic_*): activation
 * qparams by ChooseQuantizationParams over the whole input ([0, 127] under onednn / x86 / fbgemm,
 * [0, 255] under qnnpack, which ignores reduce_range), quantize, int32 accumulate, dequantize with
 * the engine's formula and add the float bias; LinearReLU then takes max(y, 0). The input may have
 * any number of leading dimensions (at least one, as PyTorch requires: 2-D or more); all of them
 * form the rows whose min/max choose the qparams.
 *
 * The module keeps the quantized weight (int8, with its qparams) and the float bias as buffers
 * "weight" and "bias" for inspection, beside the packed copy the GEMM reads. The forward creates
 * its per-call GEMM state and workspace itself, so one module may run on several threads at once.
 *
 * Printing: DynamicQuantizedLinear(in_features=16, out_features=10, dtype=torch.qint8,
 * qscheme=torch.per_tensor_affine) (per_channel_affine for per-channel weights: a quantized tensor
 * reports the affine variant of its observer's scheme). */
#include <string.h>

#include "core/alloc.h"
#include "nn/quantized/dynamic_weight.h"
#include "nn/quantized/qmodules.h"

typedef struct dyn_linear_impl {
  int64_t in_features, out_features;
  int relu;
  cq_backend engine;
  cq_qgemm_packed *packed;
} dyn_linear_impl;

static void dyn_linear_destroy(void *ptr) {
  dyn_linear_impl *p = ptr;
  if (!p) return;
  cq_qgemm_packed_destroy(p->packed);
  cq_free(p);
}

static cq_status dyn_linear_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                    int nout, cq_tensor **out) {
  (void)nin;
  (void)nout;
  const dyn_linear_impl *p = m->impl;
  const cq_tensor *x = in[0];
  if (x->dtype != CQ_F32) return cq_module_fail(m, CQ_EINVAL, "input must be float32");
  if (x->ndim < 2) {
    return cq_module_fail(m, CQ_ESHAPE,
                          "The dimension of input tensor should be larger than or equal to 2 "
                          "(got %d)",
                          x->ndim);
  }
  if (x->shape[x->ndim - 1] != p->in_features) {
    char s[128];
    return cq_module_fail(m, CQ_ESHAPE, "input of shape %s does not end in in_features=%lld",
                          cq_shape_str(x->ndim, x->shape, s, sizeof s), (long long)p->in_features);
  }
  int64_t shape[CQ_MAX_DIMS];
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
  shape[x->ndim - 1] = p->out_features;
  cq_tensor *y = NULL;
  cq_status st = cq_ctx_tensor(ctx, CQ_F32, x->ndim, shape, &y);
  if (st != CQ_OK) return st;
  const int64_t rows = cq_tensor_numel(x) / p->in_features;
  cq_qgemm_dynamic *op = NULL;
  st = cq_dynamic_op_create(p->packed, p->engine, p->relu, &op);
  if (st != CQ_OK) return st;
  void *ws = NULL;
  const size_t ws_bytes = cq_qgemm_dynamic_workspace_size(op, rows);
  if (ws_bytes) {
    ws = cq_ctx_scratch(ctx, ws_bytes, "the quantized activations of a dynamic linear");
    if (!ws) st = CQ_ENOMEM;
  }
  if (st == CQ_OK) {
    st = cq_dynamic_op_run(op, x->data, rows, p->in_features, y->data, p->out_features, ws);
    if (st != CQ_OK) st = cq_fail_context(st, "%s", m->type->name);
  }
  cq_qgemm_dynamic_destroy(op);
  if (st != CQ_OK) return st;
  out[0] = y;
  return CQ_OK;
}

static void dyn_linear_extra_repr(const cq_module *m, cq_strbuf *sb) {
  const dyn_linear_impl *p = m->impl;
  const cq_tensor *w = m->tensors[0].tensor;
  cq_strbuf_appendf(sb, "in_features=%lld, out_features=%lld, dtype=torch.qint8, qscheme=torch.%s",
                    (long long)p->in_features, (long long)p->out_features,
                    cq_qscheme_name(w->qparams->qscheme));
}

static const cq_module_type dyn_linear_type = {
    .name = "DynamicQuantizedLinear",
    .forward = dyn_linear_forward,
    .extra_repr = dyn_linear_extra_repr,
    .destroy_impl = dyn_linear_destroy,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static const cq_module_type dyn_linear_relu_type = {
    .name = "DynamicQuantizedLinearReLU",
    .forward = dyn_linear_forward,
    .extra_repr = dyn_linear_extra_repr,
    .destroy_impl = dyn_linear_destroy,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

cq_status cq_qmodule_dynamic_linear(cq_module **out, int64_t in_features, int64_t out_features,
                                    const float *weight, const float *bias, const cq_qparams *wq,
                                    int relu, cq_backend engine) {
  *out = NULL;
  const char *name = relu ? dyn_linear_relu_type.name : dyn_linear_type.name;
  if (!weight || !wq) return cq_fail(CQ_EINVAL, "%s: weight or its qparams are NULL", name);
  if (in_features < 1 || out_features < 1) {
    return cq_fail(CQ_EINVAL, "%s: in_features %lld and out_features %lld must be >= 1", name,
                   (long long)in_features, (long long)out_features);
  }
  if ((unsigned)engine >= CQ_BACKEND_COUNT) {
    return cq_fail(CQ_EINVAL, "%s: unknown quantized engine %d", name, (int)engine);
  }
  cq_tensor *qw = NULL, *b = NULL;
  cq_status st = cq_dynamic_weight_quantize(weight, out_features, in_features, wq, engine, &qw);
  if (st != CQ_OK) return cq_fail_context(st, "%s", name);
  if (bias) {
    st = cq_tensor_create(&b, CQ_F32, 1, &out_features);
    if (st != CQ_OK) {
      cq_tensor_free(qw);
      return st;
    }
    memcpy(b->data, bias, sizeof(float) * (size_t)out_features);
  }
  dyn_linear_impl *p = cq_calloc_for(1, sizeof *p, name);
  if (!p) {
    cq_tensor_free(qw);
    cq_tensor_free(b);
    return CQ_ENOMEM;
  }
  p->in_features = in_features;
  p->out_features = out_features;
  p->relu = relu ? 1 : 0;
  p->engine = engine;
  st = cq_dynamic_weight_pack(qw, bias, &p->packed);
  if (st != CQ_OK) {
    cq_tensor_free(qw);
    cq_tensor_free(b);
    dyn_linear_destroy(p);
    return cq_fail_context(st, "%s", name);
  }
  cq_module *m;
  st = cq_module_new_weighted(relu ? &dyn_linear_relu_type : &dyn_linear_type, p, qw, b, &m);
  if (st != CQ_OK) return st;
  m->training = 0; /* inference only */
  *out = m;
  return CQ_OK;
}

int cq_qmodule_describe_dynamic_linear(const cq_module *m, cq_qmodule_info *info) {
  if (m->type != &dyn_linear_type && m->type != &dyn_linear_relu_type) return 0;
  const dyn_linear_impl *p = m->impl;
  *info = (cq_qmodule_info){0};
  info->has_engine = 1;
  info->engine = p->engine;
  info->relu = p->relu;
  info->in_features = p->in_features;
  info->out_features = p->out_features;
  return 1;
}

/* The demo's variants of a model, each made from the committed float weights the way the seed
 * teaches: quantize_dynamic; fuse, stubs, qconfig, prepare, calibrate, convert; and fuse_qat,
 * prepare_qat, fine-tune, convert. */
#include <string.h>

#include "demo.h"

static const struct {
  const char *key, *label;
} variant_names[DEMO_VARIANT_COUNT] = {
    [DEMO_FLOAT] = {"float", "float32"},
    [DEMO_DYNAMIC] = {"dynamic", "dynamic int8"},
    [DEMO_STATIC_MINMAX_TENSOR] = {"static_minmax_per_tensor", "static minmax per-tensor"},
    [DEMO_STATIC_MINMAX_CHANNEL] = {"static_minmax_per_channel", "static minmax per-channel"},
    [DEMO_STATIC_HIST_TENSOR] = {"static_histogram_per_tensor", "static histogram per-tensor"},
    [DEMO_STATIC_HIST_CHANNEL] = {"static_histogram_per_channel", "static histogram per-channel"},
    [DEMO_QAT] = {"qat", "QAT"},
};

const char *demo_variant_key(demo_variant v) { return variant_names[v].key; }
const char *demo_variant_label(demo_variant v) { return variant_names[v].label; }

const char *demo_variant_int8_part(demo_model_kind kind, demo_variant v) {
  if (v == DEMO_FLOAT) return "-";
  if (kind == DEMO_CNN) return v == DEMO_DYNAMIC ? "linear (conv float)" : "conv, linear";
  return v == DEMO_DYNAMIC ? "LSTM, linear" : "linear head (LSTM float)";
}

/* Builds the float model and loads the committed weights. */
static cq_status load_float(demo_model_kind kind, const char *path, cq_module **out) {
  cq_module *m = NULL;
  cq_status st = demo_build_model(kind, &m);
  if (st == CQ_OK) st = cq_load_safetensors(m, path, 1);
  if (st != CQ_OK) {
    cq_module_free(m);
    return st;
  }
  *out = m;
  return CQ_OK;
}

/* The qconfig of each static row. Activations as PyTorch's x86 defaults (quint8, reduce_range);
 * weights qint8 symmetric, per tensor or per output channel. */
static cq_status static_qconfig(demo_variant v, cq_qconfig *qc) {
  const char *act = v == DEMO_STATIC_MINMAX_TENSOR || v == DEMO_STATIC_MINMAX_CHANNEL
                        ? "default_observer"
                        : "default_histogram_observer";
  const char *weight = v == DEMO_STATIC_MINMAX_TENSOR || v == DEMO_STATIC_HIST_TENSOR
                           ? "default_weight_observer"
                           : "default_per_channel_weight_observer";
  memset(qc, 0, sizeof *qc);
  cq_status st = cq_qspec_preset(act, &qc->activation);
  if (st == CQ_OK) st = cq_qspec_preset(weight, &qc->weight);
  return st;
}

/* Post-training static quantization: fuse, qconfig, prepare, run the calibration images, convert. */
static cq_status make_static(demo_model_kind kind, demo_variant v, const demo_inputs *in,
                             cq_ctx *ctx, cq_module *m) {
  cq_qconfig qc;
  cq_module_train(m, 0);
  cq_status st = static_qconfig(v, &qc);
  if (st == CQ_OK) st = demo_fuse(kind, m, 0);
  if (st == CQ_OK) st = demo_set_qconfig(kind, m, &qc);
  if (st == CQ_OK) st = cq_prepare(m);
  if (st != CQ_OK) return st;
  demo_progress_stage(in->progress, "%s: %s: calibrating on %lld images", demo_model_name(kind),
                      demo_variant_label(v), (long long)in->calib->n);
  double unused;
  st = demo_accuracy(kind, m, ctx, in->calib, 100, demo_progress_update, in->progress, &unused);
  if (st == CQ_OK) st = cq_convert(m);
  return st;
}

/* Quantization-aware training: fuse for QAT, PyTorch's default x86 QAT qconfig (fused moving-average
 * fake-quant, per-channel weights), a short fine-tune with BatchNorm statistics frozen (the float
 * model's, from the full training set), then convert. */
static cq_status make_qat(demo_model_kind kind, const demo_inputs *in, cq_ctx *ctx, cq_module *m) {
  const demo_options *o = in->options;
  cq_qconfig qc;
  cq_optimizer *opt = NULL;
  uint64_t shuffle_state = 2024;
  cq_module_train(m, 1);
  cq_status st = cq_get_default_qat_qconfig(CQ_BACKEND_X86, 1, &qc);
  if (st == CQ_OK) st = demo_fuse(kind, m, 1);
  if (st == CQ_OK) st = demo_set_qconfig(kind, m, &qc);
  if (st == CQ_OK) st = cq_prepare_qat(m);
  if (st == CQ_OK) cq_freeze_bn_stats(m, 1);
  if (st == CQ_OK) st = cq_adam(&opt, m, 1e-5f, 0.9f, 0.999f, 1e-8f, 0.0f);
  if (st == CQ_OK) {
    demo_progress_stage(in->progress, "%s: QAT: fine-tuning %lld steps of %lld images",
                        demo_model_name(kind), (long long)o->qat_steps, (long long)o->qat_batch);
    st = demo_train(kind, m, ctx, opt, in->qat_train, o->qat_batch, o->qat_steps, &shuffle_state,
                    demo_progress_update, in->progress, NULL);
  }
  cq_optimizer_free(opt);
  cq_module_train(m, 0);
  if (st == CQ_OK) st = cq_convert(m);
  return st;
}

cq_status demo_make_variant(demo_model_kind kind, demo_variant v, const demo_inputs *in,
                            cq_ctx *ctx, cq_module **out) {
  cq_module *m = NULL;
  *out = NULL;
  demo_progress_stage(in->progress, "%s: %s", demo_model_name(kind), demo_variant_label(v));
  cq_status st = load_float(kind, in->weights_path, &m);
  if (st != CQ_OK) return st;
  switch (v) {
    case DEMO_FLOAT:
      break;
    case DEMO_DYNAMIC: /* quantize_dynamic(m, {nn.Linear, nn.LSTM}, dtype=torch.qint8) */
      cq_module_train(m, 0);
      st = cq_quantize_dynamic(m, 2, (const char *const[]){"Linear", "LSTM"}, CQ_QINT8);
      break;
    case DEMO_QAT:
      st = make_qat(kind, in, ctx, m);
      break;
    default:
      st = make_static(kind, v, in, ctx, m);
      break;
  }
  if (st != CQ_OK) {
    cq_fail_context(st, "%s model, %s", demo_model_name(kind), demo_variant_label(v));
    cq_module_free(m);
    return st;
  }
  cq_module_train(m, 0);
  *out = m;
  return CQ_OK;
}

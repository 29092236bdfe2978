/* QConfig: which observer (or fake-quantize module) to attach to a module's activation and weight.
 *
 * As in PyTorch, a QConfig holds factories, not instances: cq_qspec describes what to create
 * (cq_observer_create on spec.observer gives a fresh observer each time). The presets reproduce
 * PyTorch 1.13's definitions exactly (torch-1.13-semantics.md section 3), including the details that
 * surprise people: default_observer is quint8 with a custom [0, 127] range, the fbgemm/x86 activation
 * uses reduce_range, weight fake-quants use averaging_constant 0.01. */
#ifndef CQUANT_QCONFIG_H
#define CQUANT_QCONFIG_H

#include "cquant/observer.h"
#include "cquant/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cq_fake_quant_kind {
  CQ_FQ_NONE = 0,         /* the observer itself: post-training calibration */
  CQ_FQ_FAKE_QUANTIZE,    /* FakeQuantize(observer): qparams by the observer's Python rule */
  CQ_FQ_FUSED_MOVING_AVG, /* FusedMovingAvgObsFakeQuantize: qparams by ChooseQuantizationParams */
  CQ_FQ_FIXED_QPARAMS,    /* FixedQParamsFakeQuantize */
  CQ_FQ_LEARNABLE,        /* _LearnableFakeQuantize (LSQ) */
  CQ_FQ_KIND_COUNT
} cq_fake_quant_kind;

/* One factory. present == 0 means None / Identity: nothing is attached. */
typedef struct cq_qspec {
  int present;
  cq_fake_quant_kind fake_quant;
  cq_observer_config observer;
} cq_qspec;

typedef struct cq_qconfig {
  cq_qspec activation;
  cq_qspec weight;
} cq_qconfig;

/* PyTorch's quantized engines: "x86", "fbgemm", "qnnpack", "onednn". */
typedef enum cq_backend {
  CQ_BACKEND_X86 = 0,
  CQ_BACKEND_FBGEMM,
  CQ_BACKEND_QNNPACK,
  CQ_BACKEND_ONEDNN,
  CQ_BACKEND_COUNT
} cq_backend;

CQ_API const char *cq_backend_name(cq_backend backend);
CQ_API cq_status cq_backend_parse(const char *name, cq_backend *out);

/* torch.backends.quantized.engine, process-wide: CQ_BACKEND_X86 (default), FBGEMM, QNNPACK or
 * ONEDNN. convert reads it; converted modules keep the engine's rounding rules. */
CQ_API void cq_set_quantized_engine(cq_backend engine);
CQ_API cq_backend cq_quantized_engine(void);

/* get_default_qconfig(backend, version=0) for post-training static quantization. Only version 0
 * exists (CQ_EINVAL otherwise). */
CQ_API cq_status cq_get_default_qconfig(cq_backend backend, int version, cq_qconfig *out);

/* get_default_qat_qconfig(backend, version): version 1 (PyTorch's default) uses the fused
 * moving-average fake-quant, version 0 the plain FakeQuantize. */
CQ_API cq_status cq_get_default_qat_qconfig(cq_backend backend, int version, cq_qconfig *out);

/* A named preset from torch.ao.quantization.qconfig: "default_qconfig",
 * "default_per_channel_qconfig", "default_dynamic_qconfig", "per_channel_dynamic_qconfig",
 * "float16_dynamic_qconfig", "float16_static_qconfig", "float_qparams_weight_only_qconfig",
 * "float_qparams_weight_only_qconfig_4bit", "default_qat_qconfig", "default_qat_qconfig_v2",
 * "default_dynamic_qat_qconfig", "default_weight_only_qconfig",
 * "default_activation_only_qconfig", "default_symmetric_qnnpack_qconfig",
 * "default_per_channel_symmetric_qnnpack_qconfig", "default_symmetric_qnnpack_qat_qconfig",
 * "default_per_channel_symmetric_qnnpack_qat_qconfig". CQ_EINVAL for an unknown name. */
CQ_API cq_status cq_qconfig_preset(const char *name, cq_qconfig *out);

/* The names accepted by cq_qconfig_preset, NULL-terminated. */
CQ_API const char *const *cq_qconfig_preset_names(void);

/* A named observer or fake-quant factory from torch.ao.quantization ("default_observer",
 * "default_weight_observer", "default_histogram_observer", "default_per_channel_weight_observer",
 * "weight_observer_range_neg_127_to_127", "per_channel_weight_observer_range_neg_127_to_127",
 * "default_dynamic_quant_observer", "default_float_qparams_observer",
 * "default_float_qparams_observer_4bit", "default_placeholder_observer",
 * "default_fixed_qparams_range_0to1_observer", "default_fixed_qparams_range_neg1to1_observer",
 * "default_fake_quant", "default_weight_fake_quant", "default_per_channel_weight_fake_quant",
 * "default_dynamic_fake_quant", "default_histogram_fake_quant", "default_fused_act_fake_quant",
 * "default_fused_wt_fake_quant", "default_fused_per_channel_wt_fake_quant",
 * "fused_wt_fake_quant_range_neg_127_to_127",
 * "fused_per_channel_wt_fake_quant_range_neg_127_to_127", "default_embedding_fake_quant",
 * "default_embedding_fake_quant_4bit", "default_fixed_qparams_range_0to1_fake_quant",
 * "default_fixed_qparams_range_neg1to1_fake_quant"). */
CQ_API cq_status cq_qspec_preset(const char *name, cq_qspec *out);

#ifdef __cplusplus
}
#endif
#endif

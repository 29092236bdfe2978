/* PyTorch 1.13's observer / fake-quant factories and QConfig presets as data
 * (torch/ao/quantization/{observer,fake_quantize,qconfig}.py; torch-1.13-semantics.md 1.8 and 3). */
#include "cquant/qconfig.h"

#include <string.h>

static const char *const backend_names[CQ_BACKEND_COUNT] = {
    [CQ_BACKEND_X86] = "x86",
    [CQ_BACKEND_FBGEMM] = "fbgemm",
    [CQ_BACKEND_QNNPACK] = "qnnpack",
    [CQ_BACKEND_ONEDNN] = "onednn",
};

const char *cq_backend_name(cq_backend b) {
  return (unsigned)b < CQ_BACKEND_COUNT ? backend_names[b] : "invalid";
}

cq_status cq_backend_parse(const char *name, cq_backend *out) {
  for (int i = 0; i < CQ_BACKEND_COUNT; i++) {
    if (strcmp(name, backend_names[i]) == 0) {
      *out = (cq_backend)i;
      return CQ_OK;
    }
  }
  return cq_fail(CQ_EINVAL, "unknown backend '%s' (expected x86, fbgemm, qnnpack or onednn)",
                 name);
}

#define EPS_2_POW_M12 (1.0f / 4096.0f)

static cq_observer_config with_range(cq_observer_config c, int64_t lo, int64_t hi) {
  c.has_quant_range = 1;
  c.quant_min = lo;
  c.quant_max = hi;
  return c;
}

static cq_observer_config obs(cq_observer_kind kind, cq_qdtype dtype, cq_qscheme qscheme) {
  cq_observer_config c = cq_observer_defaults(kind);
  c.dtype = dtype;
  c.qscheme = qscheme;
  return c;
}

static cq_qspec spec(cq_fake_quant_kind fq, cq_observer_config c) {
  cq_qspec s;
  s.present = 1;
  s.fake_quant = fq;
  s.observer = c;
  return s;
}

static cq_qspec none_spec(void) {
  cq_qspec s;
  memset(&s, 0, sizeof s);
  return s;
}

static cq_observer_config fixed(float scale, int32_t zp) {
  cq_observer_config c = cq_observer_defaults(CQ_OBSERVER_FIXED_QPARAMS);
  c.fixed_scale = scale;
  c.fixed_zero_point = zp;
  return c;
}

static cq_observer_config placeholder(cq_qdtype dtype, int has_compute, cq_qdtype compute) {
  cq_observer_config c = cq_observer_defaults(CQ_OBSERVER_PLACEHOLDER);
  c.dtype = dtype;
  c.has_compute_dtype = has_compute;
  c.compute_dtype = compute;
  return c;
}

/* Fake-quant factories as FakeQuantize.__init__ builds them: quant_min/max are forwarded to the
 * observer, where reduce_range then halves them. */
static cq_qspec fake_quant(cq_fake_quant_kind fq, cq_observer_kind kind, int64_t lo, int64_t hi,
                           cq_qdtype dtype, cq_qscheme qscheme, int reduce_range) {
  cq_observer_config c = with_range(obs(kind, dtype, qscheme), lo, hi);
  c.reduce_range = reduce_range;
  return spec(fq, c);
}

typedef struct named_spec {
  const char *name;
  cq_qspec (*make)(void);
} named_spec;

static cq_qspec default_observer(void) {
  return spec(CQ_FQ_NONE, with_range(obs(CQ_OBSERVER_MINMAX, CQ_QUINT8, CQ_PER_TENSOR_AFFINE), 0,
                                     127));
}
static cq_qspec default_weight_observer(void) {
  return spec(CQ_FQ_NONE, obs(CQ_OBSERVER_MINMAX, CQ_QINT8, CQ_PER_TENSOR_SYMMETRIC));
}
static cq_qspec weight_observer_range_neg_127_to_127(void) {
  cq_observer_config c =
      with_range(obs(CQ_OBSERVER_MINMAX, CQ_QINT8, CQ_PER_TENSOR_SYMMETRIC), -127, 127);
  c.eps = EPS_2_POW_M12;
  return spec(CQ_FQ_NONE, c);
}
static cq_qspec default_histogram_observer(void) {
  return spec(CQ_FQ_NONE,
              with_range(obs(CQ_OBSERVER_HISTOGRAM, CQ_QUINT8, CQ_PER_TENSOR_AFFINE), 0, 127));
}
static cq_qspec default_per_channel_weight_observer(void) {
  return spec(CQ_FQ_NONE,
              obs(CQ_OBSERVER_PER_CHANNEL_MINMAX, CQ_QINT8, CQ_PER_CHANNEL_SYMMETRIC));
}
static cq_qspec per_channel_weight_observer_range_neg_127_to_127(void) {
  cq_observer_config c = with_range(
      obs(CQ_OBSERVER_PER_CHANNEL_MINMAX, CQ_QINT8, CQ_PER_CHANNEL_SYMMETRIC), -127, 127);
  c.eps = EPS_2_POW_M12;
  return spec(CQ_FQ_NONE, c);
}
static cq_qspec default_dynamic_quant_observer(void) {
  return spec(CQ_FQ_NONE, placeholder(CQ_QUINT8, 1, CQ_QUINT8));
}
static cq_qspec default_float_qparams_observer(void) {
  return spec(CQ_FQ_NONE, obs(CQ_OBSERVER_PER_CHANNEL_MINMAX, CQ_QUINT8,
                              CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS));
}
static cq_qspec default_float_qparams_observer_4bit(void) {
  return spec(CQ_FQ_NONE, obs(CQ_OBSERVER_PER_CHANNEL_MINMAX, CQ_QUINT4X2,
                              CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS));
}
static cq_qspec default_placeholder_observer(void) {
  return spec(CQ_FQ_NONE, placeholder(CQ_QFLOAT32, 0, CQ_QUINT8));
}
static cq_qspec fp16_placeholder_observer(void) {
  return spec(CQ_FQ_NONE, placeholder(CQ_QFLOAT16, 0, CQ_QUINT8));
}
static cq_qspec fp16_dynamic_placeholder_observer(void) {
  return spec(CQ_FQ_NONE, placeholder(CQ_QFLOAT16, 1, CQ_QFLOAT16));
}
static cq_qspec fixed_0to1_observer(void) { return spec(CQ_FQ_NONE, fixed(1.0f / 256, 0)); }
static cq_qspec fixed_neg1to1_observer(void) { return spec(CQ_FQ_NONE, fixed(2.0f / 256, 128)); }

static cq_qspec default_fake_quant(void) {
  return fake_quant(CQ_FQ_FAKE_QUANTIZE, CQ_OBSERVER_MOVING_AVERAGE_MINMAX, 0, 255, CQ_QUINT8,
                    CQ_PER_TENSOR_AFFINE, 1);
}
static cq_qspec default_weight_fake_quant(void) {
  return fake_quant(CQ_FQ_FAKE_QUANTIZE, CQ_OBSERVER_MOVING_AVERAGE_MINMAX, -128, 127, CQ_QINT8,
                    CQ_PER_TENSOR_SYMMETRIC, 0);
}
static cq_qspec default_per_channel_weight_fake_quant(void) {
  return fake_quant(CQ_FQ_FAKE_QUANTIZE, CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX, -128, 127,
                    CQ_QINT8, CQ_PER_CHANNEL_SYMMETRIC, 0);
}
static cq_qspec default_dynamic_fake_quant(void) {
  cq_qspec s = fake_quant(CQ_FQ_FAKE_QUANTIZE, CQ_OBSERVER_MOVING_AVERAGE_MINMAX, 0, 255,
                          CQ_QUINT8, CQ_PER_TENSOR_AFFINE, 0);
  s.observer.averaging_constant = 1.0f;
  return s;
}
static cq_qspec default_histogram_fake_quant(void) {
  return fake_quant(CQ_FQ_FAKE_QUANTIZE, CQ_OBSERVER_HISTOGRAM, 0, 255, CQ_QUINT8,
                    CQ_PER_TENSOR_AFFINE, 1);
}
static cq_qspec default_fused_act_fake_quant(void) {
  return fake_quant(CQ_FQ_FUSED_MOVING_AVG, CQ_OBSERVER_MOVING_AVERAGE_MINMAX, 0, 255, CQ_QUINT8,
                    CQ_PER_TENSOR_AFFINE, 0);
}
static cq_qspec default_fused_wt_fake_quant(void) {
  return fake_quant(CQ_FQ_FUSED_MOVING_AVG, CQ_OBSERVER_MOVING_AVERAGE_MINMAX, -128, 127,
                    CQ_QINT8, CQ_PER_TENSOR_SYMMETRIC, 0);
}
static cq_qspec default_fused_per_channel_wt_fake_quant(void) {
  return fake_quant(CQ_FQ_FUSED_MOVING_AVG, CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX, -128,
                    127, CQ_QINT8, CQ_PER_CHANNEL_SYMMETRIC, 0);
}
static cq_qspec fused_wt_fake_quant_range_neg_127_to_127(void) {
  cq_qspec s = fake_quant(CQ_FQ_FUSED_MOVING_AVG, CQ_OBSERVER_MOVING_AVERAGE_MINMAX, -127, 127,
                          CQ_QINT8, CQ_PER_TENSOR_SYMMETRIC, 0);
  s.observer.eps = EPS_2_POW_M12;
  return s;
}
static cq_qspec fused_per_channel_wt_fake_quant_range_neg_127_to_127(void) {
  cq_qspec s = fake_quant(CQ_FQ_FUSED_MOVING_AVG, CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX,
                          -127, 127, CQ_QINT8, CQ_PER_CHANNEL_SYMMETRIC, 0);
  s.observer.eps = EPS_2_POW_M12;
  return s;
}
static cq_qspec default_embedding_fake_quant(void) {
  cq_qspec s = fake_quant(CQ_FQ_FAKE_QUANTIZE, CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX, 0,
                          255, CQ_QUINT8, CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS, 0);
  s.observer.averaging_constant = 1.0f;
  return s;
}
static cq_qspec default_embedding_fake_quant_4bit(void) {
  cq_qspec s = fake_quant(CQ_FQ_FAKE_QUANTIZE, CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX, 0,
                          15, CQ_QUINT4X2, CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS, 0);
  s.observer.averaging_constant = 1.0f;
  return s;
}
static cq_qspec fixed_0to1_fake_quant(void) {
  return spec(CQ_FQ_FIXED_QPARAMS, fixed(1.0f / 256, 0));
}
static cq_qspec fixed_neg1to1_fake_quant(void) {
  return spec(CQ_FQ_FIXED_QPARAMS, fixed(2.0f / 256, 128));
}

static const named_spec spec_table[] = {
    {"default_observer", default_observer},
    {"default_weight_observer", default_weight_observer},
    {"weight_observer_range_neg_127_to_127", weight_observer_range_neg_127_to_127},
    {"default_histogram_observer", default_histogram_observer},
    {"default_per_channel_weight_observer", default_per_channel_weight_observer},
    {"per_channel_weight_observer_range_neg_127_to_127",
     per_channel_weight_observer_range_neg_127_to_127},
    {"default_dynamic_quant_observer", default_dynamic_quant_observer},
    {"default_float_qparams_observer", default_float_qparams_observer},
    {"default_float_qparams_observer_4bit", default_float_qparams_observer_4bit},
    {"default_placeholder_observer", default_placeholder_observer},
    {"default_fixed_qparams_range_0to1_observer", fixed_0to1_observer},
    {"default_fixed_qparams_range_neg1to1_observer", fixed_neg1to1_observer},
    {"default_fake_quant", default_fake_quant},
    {"default_weight_fake_quant", default_weight_fake_quant},
    {"default_per_channel_weight_fake_quant", default_per_channel_weight_fake_quant},
    {"default_dynamic_fake_quant", default_dynamic_fake_quant},
    {"default_histogram_fake_quant", default_histogram_fake_quant},
    {"default_fused_act_fake_quant", default_fused_act_fake_quant},
    {"default_fused_wt_fake_quant", default_fused_wt_fake_quant},
    {"default_fused_per_channel_wt_fake_quant", default_fused_per_channel_wt_fake_quant},
    {"fused_wt_fake_quant_range_neg_127_to_127", fused_wt_fake_quant_range_neg_127_to_127},
    {"fused_per_channel_wt_fake_quant_range_neg_127_to_127",
     fused_per_channel_wt_fake_quant_range_neg_127_to_127},
    {"default_embedding_fake_quant", default_embedding_fake_quant},
    {"default_embedding_fake_quant_4bit", default_embedding_fake_quant_4bit},
    {"default_fixed_qparams_range_0to1_fake_quant", fixed_0to1_fake_quant},
    {"default_fixed_qparams_range_neg1to1_fake_quant", fixed_neg1to1_fake_quant},
};

cq_status cq_qspec_preset(const char *name, cq_qspec *out) {
  for (size_t i = 0; i < sizeof spec_table / sizeof spec_table[0]; i++) {
    if (strcmp(name, spec_table[i].name) == 0) {
      *out = spec_table[i].make();
      return CQ_OK;
    }
  }
  return cq_fail(CQ_EINVAL, "unknown observer or fake-quant preset '%s'", name);
}

static cq_qspec histogram_activation(int reduce_range) {
  cq_observer_config c = obs(CQ_OBSERVER_HISTOGRAM, CQ_QUINT8, CQ_PER_TENSOR_AFFINE);
  c.reduce_range = reduce_range;
  return spec(CQ_FQ_NONE, c);
}

cq_status cq_get_default_qconfig(cq_backend backend, int version, cq_qconfig *out) {
  if (version != 0) {
    return cq_fail(CQ_EINVAL, "get_default_qconfig: version %d does not exist (only 0)", version);
  }
  switch (backend) {
    case CQ_BACKEND_FBGEMM:
    case CQ_BACKEND_X86:
      out->activation = histogram_activation(1);
      out->weight = default_per_channel_weight_observer();
      return CQ_OK;
    case CQ_BACKEND_QNNPACK:
      out->activation = histogram_activation(0);
      out->weight = default_weight_observer();
      return CQ_OK;
    case CQ_BACKEND_ONEDNN:
      out->activation = histogram_activation(0);
      out->weight = default_per_channel_weight_observer();
      return CQ_OK;
    default:
      return cq_fail(CQ_EINVAL, "invalid backend %d", (int)backend);
  }
}

cq_status cq_get_default_qat_qconfig(cq_backend backend, int version, cq_qconfig *out) {
  if (version != 0 && version != 1) {
    return cq_fail(CQ_EINVAL, "get_default_qat_qconfig: version %d does not exist (0 or 1)",
                   version);
  }
  if ((unsigned)backend >= CQ_BACKEND_COUNT) {
    return cq_fail(CQ_EINVAL, "invalid backend %d", (int)backend);
  }
  const int reduce = backend == CQ_BACKEND_FBGEMM || backend == CQ_BACKEND_X86;
  const int per_channel = backend != CQ_BACKEND_QNNPACK;
  if (version == 1) {
    out->activation = fake_quant(CQ_FQ_FUSED_MOVING_AVG, CQ_OBSERVER_MOVING_AVERAGE_MINMAX, 0, 255,
                                 CQ_QUINT8, CQ_PER_TENSOR_AFFINE, reduce);
    out->weight = per_channel ? default_fused_per_channel_wt_fake_quant()
                              : default_fused_wt_fake_quant();
  } else {
    out->activation = fake_quant(CQ_FQ_FAKE_QUANTIZE, CQ_OBSERVER_MOVING_AVERAGE_MINMAX, 0, 255,
                                 CQ_QUINT8, CQ_PER_TENSOR_AFFINE, reduce);
    out->weight = per_channel ? default_per_channel_weight_fake_quant()
                              : default_weight_fake_quant();
  }
  return CQ_OK;
}

/* A signed-activation qconfig for XNNPACK-style qnnpack kernels. */
static cq_qspec symmetric_qnnpack_activation(void) {
  cq_observer_config c = obs(CQ_OBSERVER_HISTOGRAM, CQ_QINT8, CQ_PER_TENSOR_AFFINE);
  c.eps = EPS_2_POW_M12;
  return spec(CQ_FQ_NONE, c);
}

static cq_qspec symmetric_qnnpack_qat_activation(void) {
  cq_qspec s = fake_quant(CQ_FQ_FUSED_MOVING_AVG, CQ_OBSERVER_MOVING_AVERAGE_MINMAX, -128, 127,
                          CQ_QINT8, CQ_PER_TENSOR_AFFINE, 0);
  s.observer.eps = EPS_2_POW_M12;
  return s;
}

static const char *const preset_names[] = {
    "default_qconfig",
    "default_per_channel_qconfig",
    "default_dynamic_qconfig",
    "per_channel_dynamic_qconfig",
    "float16_dynamic_qconfig",
    "float16_static_qconfig",
    "float_qparams_weight_only_qconfig",
    "float_qparams_weight_only_qconfig_4bit",
    "default_qat_qconfig",
    "default_qat_qconfig_v2",
    "default_dynamic_qat_qconfig",
    "default_weight_only_qconfig",
    "default_activation_only_qconfig",
    "default_symmetric_qnnpack_qconfig",
    "default_per_channel_symmetric_qnnpack_qconfig",
    "default_symmetric_qnnpack_qat_qconfig",
    "default_per_channel_symmetric_qnnpack_qat_qconfig",
    NULL,
};

const char *const *cq_qconfig_preset_names(void) { return preset_names; }

cq_status cq_qconfig_preset(const char *name, cq_qconfig *out) {
  cq_qconfig q;
  if (!strcmp(name, "default_qconfig")) {
    q.activation = default_observer();
    q.weight = default_weight_observer();
  } else if (!strcmp(name, "default_per_channel_qconfig")) {
    q.activation = default_observer();
    q.weight = default_per_channel_weight_observer();
  } else if (!strcmp(name, "default_dynamic_qconfig")) {
    q.activation = default_dynamic_quant_observer();
    q.weight = default_weight_observer();
  } else if (!strcmp(name, "per_channel_dynamic_qconfig")) {
    q.activation = default_dynamic_quant_observer();
    q.weight = default_per_channel_weight_observer();
  } else if (!strcmp(name, "float16_dynamic_qconfig")) {
    q.activation = fp16_dynamic_placeholder_observer();
    q.weight = fp16_placeholder_observer();
  } else if (!strcmp(name, "float16_static_qconfig")) {
    q.activation = fp16_placeholder_observer();
    q.weight = fp16_placeholder_observer();
  } else if (!strcmp(name, "float_qparams_weight_only_qconfig")) {
    q.activation = default_placeholder_observer();
    q.weight = default_float_qparams_observer();
  } else if (!strcmp(name, "float_qparams_weight_only_qconfig_4bit")) {
    q.activation = default_placeholder_observer();
    q.weight = default_float_qparams_observer_4bit();
  } else if (!strcmp(name, "default_qat_qconfig")) {
    q.activation = default_fake_quant();
    q.weight = default_weight_fake_quant();
  } else if (!strcmp(name, "default_qat_qconfig_v2")) {
    q.activation = default_fused_act_fake_quant();
    q.weight = default_fused_wt_fake_quant();
  } else if (!strcmp(name, "default_dynamic_qat_qconfig")) {
    q.activation = default_dynamic_fake_quant();
    q.weight = default_weight_fake_quant();
  } else if (!strcmp(name, "default_weight_only_qconfig")) {
    q.activation = none_spec();
    q.weight = default_weight_fake_quant();
  } else if (!strcmp(name, "default_activation_only_qconfig")) {
    q.activation = default_fake_quant();
    q.weight = none_spec();
  } else if (!strcmp(name, "default_symmetric_qnnpack_qconfig")) {
    q.activation = symmetric_qnnpack_activation();
    q.weight = weight_observer_range_neg_127_to_127();
  } else if (!strcmp(name, "default_per_channel_symmetric_qnnpack_qconfig")) {
    q.activation = symmetric_qnnpack_activation();
    q.weight = per_channel_weight_observer_range_neg_127_to_127();
  } else if (!strcmp(name, "default_symmetric_qnnpack_qat_qconfig")) {
    q.activation = symmetric_qnnpack_qat_activation();
    q.weight = fused_wt_fake_quant_range_neg_127_to_127();
  } else if (!strcmp(name, "default_per_channel_symmetric_qnnpack_qat_qconfig")) {
    q.activation = symmetric_qnnpack_qat_activation();
    q.weight = fused_per_channel_wt_fake_quant_range_neg_127_to_127();
  } else {
    return cq_fail(CQ_EINVAL, "unknown qconfig preset '%s'", name);
  }
  *out = q;
  return CQ_OK;
}

static cq_backend quantized_engine = CQ_BACKEND_X86;

void cq_set_quantized_engine(cq_backend engine) {
  if ((unsigned)engine < CQ_BACKEND_COUNT) quantized_engine = engine;
}

cq_backend cq_quantized_engine(void) { return quantized_engine; }

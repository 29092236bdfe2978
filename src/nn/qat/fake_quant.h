/* Internal: the fake-quantize modules of torch.ao.quantization.fake_quantize (PyTorch 1.13) and the
 * "post-process" protocol shared by observers and fake-quants.
 *
 * Four module types, printed with PyTorch's class names (torch-1.13-semantics.md 2.5-2.7, 6.2):
 *
 *  FakeQuantize                  observer (any computing kind) + qparams by the observer's Python
 *                                rule copied into the `scale` / `zero_point` buffers, then
 *                                fake_quantize_per_tensor/per_channel_affine with the observer's
 *                                [quant_min, quant_max]; straight-through estimator backward.
 *  FusedMovingAvgObsFakeQuantize a moving-average (per-channel) min/max observer whose qparams come
 *                                from the C++ ChooseQuantizationParams (preserve_sparsity for
 *                                symmetric schemes, scale floor 6.1e-5, zero range -> 0.1); the
 *                                buffers are only refreshed while fake quant is enabled.
 *  FixedQParamsFakeQuantize      a FixedQParamsObserver's scale / zero point, never changed.
 *  _LearnableFakeQuantize        scale and zero_point are float32 *parameters* (LSQ): static
 *                                estimates from the observer while static_enabled, else learned;
 *                                backward gives PyTorch's exact per-element gradients for X, scale
 *                                and zero point (the per-tensor backward rounds the zero point with
 *                                "+0.5 then truncate", the forward with rne), summed per channel.
 *
 * The observer is the module's "activation_post_process" as PyTorch prints it, but it is held by the
 * module (not a child): a child of that name would be run after the module's forward by
 * cq_module_forward. Buffers and parameters are registered in PyTorch's state-dict order
 * (FakeQuantize: fake_quant_enabled, observer_enabled, scale, zero_point; the learnable one:
 * parameters scale, zero_point, then fake_quant_enabled, observer_enabled, static_enabled,
 * learning_enabled, eps). The enable flags are uint8 buffers except in the fused module (int64).
 *
 * A "post-process" is what PyTorch attaches as activation_post_process or weight_fake_quant: an
 * observer module (cq_observer_module: observes, passes its input through unchanged) or one of the
 * fake-quant modules. cq_post_process_run / cq_post_process_grad apply one outside the tape, which
 * is how the QAT modules fake-quantize their weights. */
#ifndef CQ_NN_QAT_FAKE_QUANT_H
#define CQ_NN_QAT_FAKE_QUANT_H

#include "cquant/qconfig.h"
#include "cquant/quantization.h"
#include "nn/module_impl.h"

/* _LearnableFakeQuantize's own constructor arguments (the observer's come in a cq_observer_config). */
typedef struct cq_learnable_options {
  float scale;          /* initial scale, default 1.0 */
  float zero_point;     /* initial zero point (a float parameter), default 0.0 */
  int64_t channel_len;  /* -1 (default): one scale and zero point; else their length (> 0) */
  int use_grad_scaling; /* scale gradients by 1/sqrt(numel * quant_max); default 0 */
} cq_learnable_options;

cq_learnable_options cq_learnable_defaults(void);

/* Creates what a QConfig factory describes: an observer module when spec->fake_quant is CQ_FQ_NONE,
 * otherwise the fake-quant module of that kind around an observer made from spec->observer (the
 * learnable kind with cq_learnable_defaults() and quant range 0..255 unless the spec gives one).
 * Validates as the PyTorch constructors do: CQ_EINVAL naming the rule (quant range outside the
 * dtype, fused kind with an observer other than the moving-average ones, fixed-qparams kind without
 * a FixedQParamsObserver, ...). spec->present must be 1. */
cq_status cq_qspec_module(const cq_qspec *spec, cq_module **out);

/* _LearnableFakeQuantize(observer, quant_min, quant_max, scale, zero_point, channel_len,
 * use_grad_scaling): quant_min/quant_max are taken from observer->quant_min/quant_max when
 * observer->has_quant_range, else 0 and 255, and passed on to the observer. */
cq_status cq_learnable_fake_quant_module(const cq_observer_config *observer,
                                         const cq_learnable_options *options, cq_module **out);

/* 1 for the four fake-quant module types. */
int cq_is_fake_quant(const cq_module *m);
/* The kind of a fake-quant module, CQ_FQ_NONE for anything else. */
cq_fake_quant_kind cq_fake_quant_kind_of(const cq_module *m);
/* The observer inside a fake-quant module or an observer module (NULL for other modules). */
cq_observer *cq_post_process_observer(cq_module *m);
/* 1 for observer modules and fake-quant modules. */
int cq_is_post_process(const cq_module *m);

/* calculate_qparams() of an observer module or fake-quant module, with quant_min / quant_max set to
 * the range PyTorch clamps converted weights to (the observer's, or the learnable module's own).
 * Fixed-qparams: the fixed values; learnable: clamps the scale parameter to >= eps in place and
 * returns the zero point rounded (rne) and clamped. CQ_ESTATE for placeholder-like observers and
 * other modules. `out` is initialised by the call (release with cq_qparams_release). */
cq_status cq_post_process_qparams(cq_module *m, cq_qparams *out);
/* The quantized dtype the post-process stands for (the observer's dtype). */
cq_qdtype cq_post_process_dtype(cq_module *m);

/* enable_observer / enable_fake_quant of FakeQuantizeBase (the learnable module's observer switch
 * is static_enabled). No effect on other modules. */
void cq_fake_quant_enable_observer(cq_module *m, int enabled);
void cq_fake_quant_enable_fake_quant(cq_module *m, int enabled);
int cq_fake_quant_observer_enabled(const cq_module *m);
int cq_fake_quant_fake_quant_enabled(const cq_module *m);

/* _LearnableFakeQuantize's modes (CQ_EINVAL for another module):
 *  param learning:     learning on (scale and zero point get gradients), fake quant on, static off;
 *  static estimate:    learning off, fake quant on, static on;
 *  static observation: learning off, fake quant off, static on.
 * toggle_qparam_learning sets learning_enabled and whether the parameters take gradients (they do
 * from construction on, as PyTorch's Parameters require grad until toggled). */
cq_status cq_learnable_enable_param_learning(cq_module *m);
cq_status cq_learnable_enable_static_estimate(cq_module *m);
cq_status cq_learnable_enable_static_observation(cq_module *m);
cq_status cq_learnable_toggle_qparam_learning(cq_module *m, int enabled);
/* The module's use_grad_scaling attribute (a QConfig entry cannot carry it: set it after
 * prepare_qat, as Python code sets fq.use_grad_scaling). */
cq_status cq_learnable_set_grad_scaling(cq_module *m, int enabled);

/* The current scale / zero point buffers (parameters for the learnable kind): their length, and
 * pointers into the module (zero points as int32 except for float-qparams and learnable modules,
 * whose zero points are floats: then *zero_point is NULL and *zero_point_float is set). */
int64_t cq_fake_quant_buffers(cq_module *m, const float **scale, const int32_t **zero_point,
                              const float **zero_point_float);

/* ---- applying a post-process outside the tape (the weight path of QAT modules) ---------------- */

typedef struct cq_pp_state cq_pp_state;

/* Runs the post-process `pp` on the float32 tensor x (observer: update, then y = x; fake-quant:
 * forward as the module's), writing x's numel values to y. When `state` is non-NULL it receives what
 * cq_post_process_grad needs (free with cq_pp_state_free). pp == NULL copies x. */
cq_status cq_post_process_run(cq_module *pp, const cq_tensor *x, float *y, cq_pp_state **state);
/* Backward of that run: dx = dy * (straight-through mask), and for a learnable module whose
 * parameters take gradients, the scale / zero-point gradients are accumulated into its parameters'
 * grad tensors. x must be the tensor the run saw. dx may alias dy. */
cq_status cq_post_process_grad(cq_module *pp, const cq_pp_state *state, const cq_tensor *x,
                               const float *dy, float *dx);
void cq_pp_state_free(cq_pp_state *state);

#endif

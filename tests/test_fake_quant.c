/* The fake-quantize modules against PyTorch 1.13 (tools/golden/gen_qat.py, cases fq/... and
 * lfq/...): FakeQuantize, FusedMovingAvgObsFakeQuantize, FixedQParamsFakeQuantize and
 * _LearnableFakeQuantize fed a stream of batches with their switches toggled between steps.
 * Outputs, input gradients (straight-through estimator), scale / zero-point buffers and reprs match
 * bit for bit; the learnable module's scale and zero-point gradients (sums over the tensor, whose
 * summation order differs from ATen's) within 2e-5 relative.
 *
 * Also: creation errors PyTorch raises, the post-process protocol on observers, and out-of-memory
 * handling of forward and backward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cquant/cquant.h"
#include "golden.h"
#include "nn/qat/fake_quant.h"

#define DIR CQ_TEST_DATA_DIR "/golden/qat/"

static int details = 0; /* printed mismatches so far */

static void unescape(const char *in, char *out) {
  for (; *in; in++) {
    if (in[0] == '\\' && in[1] == 'n') {
      *out++ = '\n';
      in++;
    } else if (in[0] == '\\' && in[1] == '\\') {
      *out++ = '\\';
      in++;
    } else {
      *out++ = *in;
    }
  }
  *out = '\0';
}

static cq_tensor *load(const golden_file *g, const golden_case *c, const char *key) {
  const char *rel = golden_get(c, key);
  if (!rel) {
    check_report(__FILE__, __LINE__, "case %s: no key %s", c->name, key);
    return NULL;
  }
  char path[1024];
  cq_tensor *t = NULL;
  if (cq_npy_load(golden_path(g, rel, path, sizeof path), &t) != CQ_OK) {
    check_report(__FILE__, __LINE__, "case %s: %s", c->name, cq_last_error());
    return NULL;
  }
  return t;
}

/* A view of step k of a stacked [steps, ...] tensor (borrowed data). */
static cq_tensor *step_view(const cq_tensor *t, int k) {
  const int64_t per = cq_tensor_numel(t) / t->shape[0];
  const size_t esize = cq_dtype_get(t->dtype)->size;
  cq_tensor *v = NULL;
  cq_tensor_wrap(&v, t->dtype, t->ndim - 1, t->shape + 1, (char *)t->data + esize * per * k);
  return v;
}

/* Builds the module a case describes. */
static cq_status make_module(const golden_case *c, cq_module **out) {
  const char *preset = golden_get(c, "preset");
  if (preset) {
    cq_qspec spec;
    cq_status st = cq_qspec_preset(preset, &spec);
    return st == CQ_OK ? cq_qspec_module(&spec, out) : st;
  }
  const char *kind = golden_get(c, "fake_quant");
  char config[512];
  snprintf(config, sizeof config, "%s", golden_get(c, "config"));
  cq_observer_config cfg;
  memset(&cfg, 0, sizeof cfg);
  for (char *tok = strtok(config, " "); tok; tok = strtok(NULL, " ")) {
    char *eq = strchr(tok, '=');
    if (!eq) return cq_fail(CQ_EINVAL, "bad config token %s", tok);
    *eq = '\0';
    cq_status st = cq_observer_config_set(&cfg, tok, eq + 1);
    if (st != CQ_OK) return st;
  }
  if (strcmp(kind, "learnable") == 0) {
    cq_learnable_options o = cq_learnable_defaults();
    const char *v;
    if ((v = golden_get(c, "lfq_scale"))) o.scale = (float)strtod(v, NULL);
    if ((v = golden_get(c, "lfq_zero_point"))) o.zero_point = (float)strtod(v, NULL);
    if ((v = golden_get(c, "lfq_channel_len"))) o.channel_len = strtoll(v, NULL, 10);
    if ((v = golden_get(c, "lfq_use_grad_scaling"))) o.use_grad_scaling = atoi(v);
    return cq_learnable_fake_quant_module(&cfg, &o, out);
  }
  cq_qspec spec;
  spec.present = 1;
  spec.observer = cfg;
  if (strcmp(kind, "fake_quantize") == 0) {
    spec.fake_quant = CQ_FQ_FAKE_QUANTIZE;
  } else if (strcmp(kind, "fused") == 0) {
    spec.fake_quant = CQ_FQ_FUSED_MOVING_AVG;
  } else {
    spec.fake_quant = CQ_FQ_FIXED_QPARAMS;
  }
  return cq_qspec_module(&spec, out);
}

static void set_values(cq_module *m, const char *name, const char *list) {
  cq_named_tensor *t = cq_module_find_tensor(m, name);
  float *d = t->tensor->data;
  char buf[256];
  snprintf(buf, sizeof buf, "%s", list);
  int64_t i = 0;
  for (char *tok = strtok(buf, "/"); tok && i < cq_tensor_numel(t->tensor); tok = strtok(NULL, "/")) {
    d[i++] = (float)strtod(tok, NULL);
  }
}

static void apply_ops(cq_module *m, const char *ops) {
  if (strcmp(ops, "-") == 0) return;
  char buf[512];
  snprintf(buf, sizeof buf, "%s", ops);
  char *save = NULL;
  for (char *op = strtok_r(buf, ",", &save); op; op = strtok_r(NULL, ",", &save)) {
    if (!strcmp(op, "disable_observer")) {
      cq_fake_quant_enable_observer(m, 0);
    } else if (!strcmp(op, "enable_observer")) {
      cq_fake_quant_enable_observer(m, 1);
    } else if (!strcmp(op, "disable_fake_quant")) {
      cq_fake_quant_enable_fake_quant(m, 0);
    } else if (!strcmp(op, "enable_fake_quant")) {
      cq_fake_quant_enable_fake_quant(m, 1);
    } else if (!strcmp(op, "enable_param_learning")) {
      CHECK_OK(cq_learnable_enable_param_learning(m));
    } else if (!strcmp(op, "enable_static_estimate")) {
      CHECK_OK(cq_learnable_enable_static_estimate(m));
    } else if (!strcmp(op, "enable_static_observation")) {
      CHECK_OK(cq_learnable_enable_static_observation(m));
    } else if (!strncmp(op, "set_qparams:", 12)) {
      char *s = op + 12, *z = strchr(s, ':');
      *z++ = '\0';
      set_values(m, "scale", s);
      set_values(m, "zero_point", z);
    } else {
      check_report(__FILE__, __LINE__, "unknown op %s", op);
    }
  }
}

/* Bitwise equality of two float arrays; reports up to 3 differences. */
static int same_bits(const char *what, const char *name, int step, const float *got,
                     const float *want, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; i++) {
    if (check_f32_bits(got[i]) != check_f32_bits(want[i])) {
      if (bad < 3 && details < 60) {
        printf("  %s step %d %s[%lld]: got %.9g, want %.9g\n", name, step, what, (long long)i,
               got[i], want[i]);
        details++;
      }
      bad++;
    }
  }
  return bad;
}

static double worst_grad = 0.0;

static void run_case(const golden_file *g, const golden_case *c) {
  cq_module *m = NULL;
  cq_status st = make_module(c, &m);
  CHECK_MSG(st == CQ_OK, "case %s: creating the module: %s", c->name, cq_last_error());
  if (st != CQ_OK) return;
  const int learnable = cq_fake_quant_kind_of(m) == CQ_FQ_LEARNABLE;
  const int steps = atoi(golden_get(c, "steps"));
  char ops_buf[1024];
  snprintf(ops_buf, sizeof ops_buf, "%s", golden_get(c, "ops"));
  char *ops[32];
  int nops = 0;
  for (char *tok = strtok(ops_buf, " "); tok && nops < 32; tok = strtok(NULL, " ")) ops[nops++] = tok;
  CHECK(nops == steps);
  cq_tensor *x = load(g, c, "x"), *gy = load(g, c, "gy"), *y = load(g, c, "y");
  cq_tensor *gx = load(g, c, "gx"), *scale = load(g, c, "scale"), *zp = load(g, c, "zero_point");
  cq_tensor *gscale = learnable ? load(g, c, "grad_scale") : NULL;
  cq_tensor *gzp = learnable ? load(g, c, "grad_zero_point") : NULL;
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_ctx_set_grad(ctx, 1);
  int bad = 0;
  for (int k = 0; k < steps && x && gy && y && gx && scale && zp && ctx; k++) {
    apply_ops(m, ops[k]);
    cq_module_zero_grad(m);
    cq_tensor *xk = step_view(x, k), *gyk = step_view(gy, k), *yk = step_view(y, k);
    cq_tensor *gxk = step_view(gx, k);
    cq_tensor *out = NULL, *gin = NULL;
    st = cq_module_forward1(m, ctx, xk, &out);
    CHECK_MSG(st == CQ_OK, "case %s step %d forward: %s", c->name, k, cq_last_error());
    if (st == CQ_OK) {
      st = cq_ctx_backward(ctx, out, gyk, xk, &gin);
      CHECK_MSG(st == CQ_OK && gin, "case %s step %d backward: %s", c->name, k, cq_last_error());
    }
    if (st == CQ_OK && gin) {
      const int64_t n = cq_tensor_numel(xk);
      bad += same_bits("y", c->name, k, out->data, yk->data, n);
      bad += same_bits("grad_x", c->name, k, gin->data, gxk->data, n);
      const float *s = NULL, *zf = NULL;
      const int32_t *zi = NULL;
      const int64_t count = cq_fake_quant_buffers(m, &s, &zi, &zf);
      const int64_t want_count = scale->shape[1];
      CHECK_MSG(count == want_count, "case %s step %d: %lld qparams, want %lld", c->name, k,
                (long long)count, (long long)want_count);
      if (count == want_count) {
        bad += same_bits("scale", c->name, k, s, (const float *)scale->data + k * count, count);
        for (int64_t i = 0; i < count; i++) {
          if (zi) {
            if (zp->dtype != CQ_S32 || zi[i] != ((const int32_t *)zp->data)[k * count + i]) bad++;
          } else if (zp->dtype != CQ_F32 ||
                     check_f32_bits(zf[i]) !=
                         check_f32_bits(((const float *)zp->data)[k * count + i])) {
            bad++;
          }
        }
      }
      if (learnable && gscale && gzp && count == want_count) {
        const cq_named_tensor *ps = cq_module_find_tensor(m, "scale");
        const cq_named_tensor *pz = cq_module_find_tensor(m, "zero_point");
        for (int64_t i = 0; i < count; i++) {
          const float pairs[2][2] = {
              {((const float *)ps->grad->data)[i], ((const float *)gscale->data)[k * count + i]},
              {((const float *)pz->grad->data)[i], ((const float *)gzp->data)[k * count + i]}};
          for (int j = 0; j < 2; j++) {
            const double got = pairs[j][0], want = pairs[j][1];
            const double err = fabs(got - want) / fmax(fabs(want), 1e-3);
            if (err > worst_grad) worst_grad = err;
            if (err > 2e-5) {
              if (details++ < 60) {
                printf("  %s step %d grad_%s[%lld]: got %.9g, want %.9g\n", c->name, k,
                       j ? "zero_point" : "scale", (long long)i, got, want);
              }
              bad++;
            }
          }
        }
      }
    }
    cq_ctx_reset(ctx);
    cq_tensor_free(xk);
    cq_tensor_free(gyk);
    cq_tensor_free(yk);
    cq_tensor_free(gxk);
  }
  CHECK_MSG(bad == 0, "case %s: %d mismatching values", c->name, bad);
  const char *want_repr = golden_get(c, "repr");
  if (want_repr) {
    char *want = malloc(strlen(want_repr) + 1);
    char *got = cq_module_repr_alloc(m);
    if (want && got) {
      unescape(want_repr, want);
      CHECK_MSG(strcmp(got, want) == 0, "case %s repr:\n  got:  %s\n  want: %s", c->name, got,
                want);
    }
    free(want);
    free(got);
  }
  cq_ctx_free(ctx);
  cq_tensor_free(x);
  cq_tensor_free(gy);
  cq_tensor_free(y);
  cq_tensor_free(gx);
  cq_tensor_free(scale);
  cq_tensor_free(zp);
  cq_tensor_free(gscale);
  cq_tensor_free(gzp);
  cq_module_free(m);
}

/* ---- behaviour beyond the golden streams ------------------------------------------------------ */

static void test_errors(void) {
  cq_module *m = NULL;
  cq_qspec spec;
  /* the fused module only takes the moving-average observers */
  CHECK_OK(cq_qspec_preset("default_fused_act_fake_quant", &spec));
  spec.observer.kind = CQ_OBSERVER_HISTOGRAM;
  CHECK_STATUS(cq_qspec_module(&spec, &m), CQ_EINVAL);
  CHECK(m == NULL);
  /* a quant range outside the dtype */
  CHECK_OK(cq_qspec_preset("default_fake_quant", &spec));
  spec.observer.quant_max = 300;
  CHECK_STATUS(cq_qspec_module(&spec, &m), CQ_EINVAL);
  /* fixed qparams need a FixedQParamsObserver */
  CHECK_OK(cq_qspec_preset("default_fake_quant", &spec));
  spec.fake_quant = CQ_FQ_FIXED_QPARAMS;
  CHECK_STATUS(cq_qspec_module(&spec, &m), CQ_EINVAL);
  /* learnable: quant_min < quant_max, channel_len > 0 */
  cq_observer_config c = cq_observer_defaults(CQ_OBSERVER_MOVING_AVERAGE_MINMAX);
  c.has_quant_range = 1;
  c.quant_min = 5;
  c.quant_max = 5;
  CHECK_STATUS(cq_learnable_fake_quant_module(&c, NULL, &m), CQ_EINVAL);
  c.quant_min = 0;
  cq_learnable_options o = cq_learnable_defaults();
  o.channel_len = 0;
  CHECK_STATUS(cq_learnable_fake_quant_module(&c, &o, &m), CQ_EINVAL);
  /* an absent entry is not a module */
  memset(&spec, 0, sizeof spec);
  CHECK_STATUS(cq_qspec_module(&spec, &m), CQ_EINVAL);

  /* fused fake quant before any observation: ChooseQuantizationParams(inf, -inf) fails */
  CHECK_OK(cq_qspec_preset("default_fused_act_fake_quant", &spec));
  CHECK_OK(cq_qspec_module(&spec, &m));
  cq_fake_quant_enable_observer(m, 0);
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  float data[4] = {0.5f, -1.0f, 2.0f, 0.25f};
  const int64_t shape[1] = {4};
  cq_tensor *x = NULL, *y = NULL;
  CHECK_OK(cq_tensor_wrap(&x, CQ_F32, 1, shape, data));
  CHECK_STATUS(cq_module_forward1(m, ctx, x, &y), CQ_EVALUE);
  /* a non-float input */
  cq_tensor *xi = NULL;
  int32_t idata[4] = {1, 2, 3, 4};
  CHECK_OK(cq_tensor_wrap(&xi, CQ_S32, 1, shape, idata));
  CHECK_STATUS(cq_module_forward1(m, ctx, xi, &y), CQ_EINVAL);
  cq_module_free(m);
  /* per-channel fused fake quant only on axis 0 */
  CHECK_OK(cq_qspec_preset("default_fused_per_channel_wt_fake_quant", &spec));
  spec.observer.ch_axis = 1;
  CHECK_OK(cq_qspec_module(&spec, &m));
  float d2[6] = {1, 2, 3, 4, 5, 6};
  const int64_t s2[2] = {2, 3};
  cq_tensor *x2 = NULL;
  CHECK_OK(cq_tensor_wrap(&x2, CQ_F32, 2, s2, d2));
  CHECK_STATUS(cq_module_forward1(m, ctx, x2, &y), CQ_EUNSUPPORTED);
  cq_module_free(m);
  /* learnable per-channel observer into a one-element scale: needs channel_len */
  c = cq_observer_defaults(CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX);
  CHECK_OK(cq_learnable_fake_quant_module(&c, NULL, &m));
  CHECK_STATUS(cq_module_forward1(m, ctx, x2, &y), CQ_ESHAPE);
  cq_module_free(m);
  cq_tensor_free(x);
  cq_tensor_free(xi);
  cq_tensor_free(x2);
  cq_ctx_free(ctx);
}

/* Observers as post-processes: they pass values and gradients through unchanged. */
static void test_observer_post_process(void) {
  cq_qspec spec;
  CHECK_OK(cq_qspec_preset("default_per_channel_weight_observer", &spec));
  cq_module *m = NULL;
  CHECK_OK(cq_qspec_module(&spec, &m));
  CHECK(cq_is_post_process(m));
  CHECK(!cq_is_fake_quant(m));
  float w[6] = {-1.0f, 0.5f, 0.25f, 2.0f, -0.75f, 0.125f};
  const int64_t shape[2] = {2, 3};
  cq_tensor *t = NULL;
  CHECK_OK(cq_tensor_wrap(&t, CQ_F32, 2, shape, w));
  float y[6], dx[6];
  const float dy[6] = {1, 2, 3, 4, 5, 6};
  cq_pp_state *s = NULL;
  CHECK_OK(cq_post_process_run(m, t, y, &s));
  CHECK(memcmp(y, w, sizeof y) == 0);
  CHECK_OK(cq_post_process_grad(m, s, t, dy, dx));
  CHECK(memcmp(dx, dy, sizeof dx) == 0);
  cq_qparams qp;
  CHECK_OK(cq_post_process_qparams(m, &qp));
  CHECK_INT_EQ(qp.count, 2);
  CHECK_INT_EQ(qp.quant_min, -128);
  CHECK_INT_EQ(qp.quant_max, 127);
  CHECK_F32_BITS(qp.scale[0], 1.0f / 127.5f);
  CHECK_F32_BITS(qp.scale[1], 2.0f / 127.5f);
  cq_qparams_release(&qp);
  CHECK_INT_EQ(cq_post_process_dtype(m), CQ_QINT8);
  cq_pp_state_free(s);
  cq_tensor_free(t);
  cq_module_free(m);
}

/* Every allocation of forward and backward may fail: the calls report it and leak nothing. */
static void test_out_of_memory(void) {
  static const char *const presets[] = {"default_fake_quant", "default_fused_per_channel_wt_fake_quant"};
  float data[24];
  for (int i = 0; i < 24; i++) data[i] = (float)(i % 7) * 0.3f - 0.8f;
  const int64_t shape[2] = {4, 6};
  for (int p = 0; p < 3; p++) {
    int succeeded = 0;
    for (long fail = 0; fail < 200 && !succeeded; fail++) {
      cq_module *m = NULL;
      cq_status st;
      if (p < 2) {
        cq_qspec spec;
        cq_qspec_preset(presets[p], &spec);
        st = cq_qspec_module(&spec, &m);
      } else {
        cq_observer_config c = cq_observer_defaults(CQ_OBSERVER_MOVING_AVERAGE_MINMAX);
        st = cq_learnable_fake_quant_module(&c, NULL, &m);
      }
      if (st != CQ_OK) break;
      cq_ctx *ctx = NULL;
      cq_tensor *x = NULL, *y = NULL, *gx = NULL;
      cq_tensor_wrap(&x, CQ_F32, 2, shape, data);
      cq_ctx_create(&ctx);
      cq_ctx_set_grad(ctx, 1);
      cq_debug_fail_alloc_after(fail);
      st = cq_module_forward1(m, ctx, x, &y);
      if (st == CQ_OK) st = cq_ctx_backward(ctx, y, y, x, &gx);
      cq_debug_fail_alloc_after(-1);
      CHECK(st == CQ_OK || st == CQ_ENOMEM);
      succeeded = st == CQ_OK;
      cq_ctx_free(ctx);
      cq_tensor_free(x);
      cq_module_free(m);
    }
    CHECK_MSG(succeeded, "preset %d never succeeded under the failing allocator", p);
  }
}

int main(void) {
  golden_file g;
  if (golden_load(DIR "cases.txt", &g) != 0) return 1;
  int ran = 0;
  for (int i = 0; i < g.count; i++) {
    if (strncmp(g.cases[i].name, "fq/", 3) != 0 && strncmp(g.cases[i].name, "lfq/", 4) != 0) {
      continue;
    }
    run_case(&g, &g.cases[i]);
    ran++;
  }
  CHECK(ran >= 20);
  test_errors();
  test_observer_post_process();
  test_out_of_memory();
  printf("test_fake_quant: %d golden streams, worst learnable gradient error %.3g\n", ran,
         worst_grad);
  golden_free(&g);
  return check_summary("test_fake_quant");
}

/* Quantized linear against PyTorch 1.13 (tests/data/golden/qlinear, tools/golden/gen_qlinear.py):
 * quantized::linear / linear_relu on the qnnpack and onednn engines must match bit for bit on
 * every ISA path (spec 5.1, 5.2); linear_dynamic / linear_relu_dynamic must match exactly on
 * qnnpack and within a few float32 ulps of the accumulator term on onednn (spec 5.4: oneDNN's
 * internal order of the dequantization differs by 1-2 ulp). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/cpu.h"
#include "cquant/cquant.h"
#include "golden.h"
#include "kernels/gemm/qgemm.h"

static cq_isa isas[CQ_ISA_COUNT];
static int n_isas;

static cq_tensor *load(const golden_file *g, const golden_case *c, const char *key, cq_dtype dt) {
  const char *name = golden_get(c, key);
  if (!name) return NULL;
  char path[1024];
  cq_tensor *t = NULL;
  cq_status st = cq_npy_load(golden_path(g, name, path, sizeof path), &t);
  CHECK_MSG(st == CQ_OK, "case %s: loading %s: %s", c->name, path, cq_last_error());
  if (t && t->dtype != dt) {
    check_report(__FILE__, __LINE__, "case %s: %s has dtype %d, expected %d", c->name, key,
                 (int)t->dtype, (int)dt);
    cq_tensor_free(t);
    return NULL;
  }
  return t;
}

static int64_t get_int(const golden_case *c, const char *key) {
  const char *v = golden_get(c, key);
  CHECK_MSG(v != NULL, "case %s: missing %s", c->name, key);
  return v ? strtoll(v, NULL, 10) : 0;
}

static float get_f32(const golden_case *c, const char *key) {
  const char *v = golden_get(c, key);
  CHECK_MSG(v != NULL, "case %s: missing %s", c->name, key);
  return v ? (float)strtod(v, NULL) : 0.0f;
}

typedef struct stats {
  long cases, outputs, mismatches, not_identical;
  double max_rel;
} stats;

static stats static_stats[2], dynamic_stats[2];

static void run_case(const golden_file *g, const golden_case *c) {
  const char *op = golden_get(c, "op"), *engine = golden_get(c, "engine");
  if (!op || !engine) {
    check_report(__FILE__, __LINE__, "case %s: missing op/engine", c->name);
    return;
  }
  cq_requant_rule rule;
  CHECK_OK(cq_requant_rule_parse(engine, &rule));
  const int64_t m = get_int(c, "m"), k = get_int(c, "k"), n = get_int(c, "n");
  const int per_channel = (int)get_int(c, "per_channel");
  const int dynamic = strstr(op, "dynamic") != NULL, relu = strstr(op, "relu") != NULL;
  float *w_scales = NULL;
  int64_t *zps64 = NULL;
  const int ns = golden_parse_floats(golden_get(c, "w_scales"), &w_scales);
  const int nz = golden_parse_ints(golden_get(c, "w_zps"), &zps64);
  int32_t *zps = calloc((size_t)n, sizeof(int32_t));
  for (int i = 0; i < nz && i < n; i++) zps[i] = (int32_t)zps64[i];
  cq_tensor *x = load(g, c, "input", dynamic ? CQ_F32 : CQ_U8);
  cq_tensor *w = load(g, c, "weight", CQ_S8);
  cq_tensor *b = load(g, c, "bias", CQ_F32);
  cq_tensor *y = load(g, c, "output", dynamic ? CQ_F32 : CQ_U8);
  cq_qgemm_packed *p = NULL;
  if (!x || !w || !y || ns != (per_channel ? n : 1) || nz != ns) {
    check_report(__FILE__, __LINE__, "case %s: incomplete data", c->name);
    goto done;
  }
  CHECK_OK(cq_qgemm_pack(w->data, n, k, w_scales, zps, per_channel, b ? b->data : NULL, &p));
  if (!p) goto done;
  stats *st = dynamic ? &dynamic_stats[rule == CQ_RULE_ONEDNN] : &static_stats[rule == CQ_RULE_ONEDNN];
  st->cases++;
  for (int i = 0; i < n_isas; i++) {
    if (!dynamic) {
      cq_qgemm_quant q = {get_f32(c, "x_scale"), (int32_t)get_int(c, "x_zp"), get_f32(c, "y_scale"),
                          (int32_t)get_int(c, "y_zp"), relu, rule, 0, 0, 0};
      cq_qgemm_op *o = NULL;
      uint8_t *out = malloc((size_t)(m * n));
      CHECK_OK(cq_qgemm_create_isa(p, &q, isas[i], &o));
      CHECK_OK(cq_qgemm_run(o, x->data, m, k, out, n, NULL));
      long bad = 0;
      const uint8_t *want = y->data;
      for (int64_t j = 0; j < m * n; j++) bad += out[j] != want[j];
      CHECK_MSG(bad == 0, "case %s on %s: %ld of %lld outputs differ from PyTorch", c->name,
                cq_isa_name(isas[i]), bad, (long long)(m * n));
      if (i == 0) {
        st->outputs += m * n;
        st->mismatches += bad;
      }
      cq_qgemm_destroy(o);
      free(out);
    } else {
      const int reduce_range = (int)get_int(c, "reduce_range");
      cq_qgemm_dynamic *o = NULL;
      float *out = malloc((size_t)(m * n) * sizeof(float));
      CHECK_OK(cq_qgemm_dynamic_create_isa(p, rule, reduce_range, relu, isas[i], &o));
      void *ws = malloc(cq_qgemm_dynamic_workspace_size(o, m) + 1);
      CHECK_OK(cq_qgemm_dynamic_run(o, x->data, m, k, out, n, ws, NULL, NULL, NULL));
      const float *want = y->data;
      long bad = 0, not_identical = 0;
      double max_rel = 0;
      for (int64_t r = 0; r < m; r++) {
        for (int64_t j = 0; j < n; j++) {
          const float gv = out[r * n + j], wv = want[r * n + j];
          if (check_f32_bits(gv) == check_f32_bits(wv)) continue;
          not_identical++;
          /* the error budget: a few ulps of the larger of the two terms acc*scale and bias */
          const float bias = b ? ((const float *)b->data)[j] : 0.0f;
          const double mag = fmax(fabs((double)wv - bias), fabs((double)bias)) + 1e-30;
          const double rel = fabs((double)gv - wv) / mag;
          if (rel > max_rel) max_rel = rel;
          if (rule == CQ_RULE_QNNPACK || rel > 4 * 1.1920929e-07) bad++;
        }
      }
      CHECK_MSG(bad == 0, "case %s on %s: %ld of %lld outputs outside tolerance (max rel %.3g)",
                c->name, cq_isa_name(isas[i]), bad, (long long)(m * n), max_rel);
      if (i == 0) {
        st->outputs += m * n;
        st->mismatches += bad;
        st->not_identical += not_identical;
        if (max_rel > st->max_rel) st->max_rel = max_rel;
      }
      free(ws);
      cq_qgemm_dynamic_destroy(o);
      free(out);
    }
  }
done:
  cq_qgemm_packed_destroy(p);
  cq_tensor_free(x);
  cq_tensor_free(w);
  cq_tensor_free(b);
  cq_tensor_free(y);
  free(w_scales);
  free(zps64);
  free(zps);
}

int main(void) {
  for (int i = 0; i < CQ_ISA_COUNT; i++) {
    if (cq_isa_supported((cq_isa)i)) {
      isas[n_isas++] = (cq_isa)i;
    } else {
      printf("qlinear golden %s path: skipped (%s)\n", cq_isa_name((cq_isa)i),
             cq_isa_missing_reason((cq_isa)i));
    }
  }
  golden_file g;
  if (golden_load(CQ_TEST_DATA_DIR "/golden/qlinear/cases.txt", &g) != 0) {
    check_report(__FILE__, __LINE__, "cannot load golden/qlinear/cases.txt");
    return check_summary("test_qlinear_golden");
  }
  for (int i = 0; i < g.count; i++) run_case(&g, &g.cases[i]);
  golden_free(&g);
  static const char *const engines[2] = {"qnnpack", "onednn"};
  for (int e = 0; e < 2; e++) {
    printf("quantized::linear(_relu) on %s: %ld cases, %ld outputs, %ld differ from PyTorch "
           "(every ISA path checked)\n", engines[e], static_stats[e].cases, static_stats[e].outputs,
           static_stats[e].mismatches);
    printf("quantized::linear(_relu)_dynamic on %s: %ld cases, %ld outputs, %ld not bit-identical, "
           "%ld outside tolerance, max relative difference %.3g\n", engines[e],
           dynamic_stats[e].cases, dynamic_stats[e].outputs, dynamic_stats[e].not_identical,
           dynamic_stats[e].mismatches, dynamic_stats[e].max_rel);
  }
  return check_summary("test_qlinear_golden");
}

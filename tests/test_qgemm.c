/* Quantized GEMM (src/kernels/gemm): every ISA path this machine supports against the naive
 * reference (reference.c + the scalar requantization stage), bit for bit, over the shapes that
 * break kernels (M, N, K below / at / above every tile size, K not a multiple of 4, N not a
 * multiple of 16), zero points 0/128/255, nonzero weight zero points, per-channel scales, ReLU,
 * the three engine rules, strided inputs and outputs (bytes outside [0, N) untouched), 1, 2 and 3
 * threads giving identical bytes, int32 wrap-around, the dynamic op, the CQ_ISA override, argument
 * errors and allocation failures. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "clamp_ref.h"
#include "core/cpu.h"
#include "core/threadpool.h"
#include "cquant/cquant.h"
#include "kernels/gemm/qgemm.h"
#include "kernels/quantize/quantize.h"
#include "quant/qmath.h"

static uint64_t rng_state = 0x243f6a8885a308d3ull;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}
static float rnd_unit(void) { return (float)(rnd() & 0xffffff) / 16777216.0f; }

static cq_isa isas[CQ_ISA_COUNT];
static int n_isas;
static long cases_per_isa[CQ_ISA_COUNT];
static cq_threadpool *pool2, *pool3;

typedef struct gemm_case {
  int64_t m, n, k;
  int64_t ldx, ldy;
  int32_t x_zp, y_zp;
  int per_channel;
  int w_zp_mode; /* 0: none, 1: one nonzero per-tensor value, 2: random per channel */
  int has_bias;
  int relu;
  int clamp;     /* cq_qgemm_quant's output clamp [clamp_lo, clamp_hi] (a folded ReLU6) */
  int32_t clamp_lo, clamp_hi;
  cq_requant_rule rule;
  int extreme;   /* 1: x = 255 and w = -128 everywhere (maximal products, int32 wrap for big K) */
} gemm_case;

typedef struct case_data {
  uint8_t *x;
  int8_t *w;
  float *w_scale, *bias;
  int32_t *w_zp;
  cq_qgemm_packed *packed;
} case_data;

static int make_data(const gemm_case *c, case_data *d) {
  memset(d, 0, sizeof *d);
  d->x = malloc((size_t)(c->m ? c->m : 1) * (size_t)c->ldx);
  d->w = malloc((size_t)c->n * (size_t)c->k);
  d->w_scale = malloc((size_t)c->n * sizeof(float));
  d->bias = malloc((size_t)c->n * sizeof(float));
  d->w_zp = malloc((size_t)c->n * sizeof(int32_t));
  for (int64_t i = 0; i < (c->m ? c->m : 1) * c->ldx; i++) {
    d->x[i] = c->extreme ? 255 : (uint8_t)rnd();
  }
  for (int64_t i = 0; i < c->n * c->k; i++) d->w[i] = c->extreme ? -128 : (int8_t)rnd();
  for (int64_t i = 0; i < c->n; i++) {
    d->w_scale[i] = 0.0005f + rnd_unit() * 0.01f;
    d->bias[i] = (rnd_unit() - 0.5f) * 10.0f;
    d->w_zp[i] = c->w_zp_mode == 2 ? (int32_t)(rnd() % 256) - 128 : c->w_zp_mode == 1 ? -37 : 0;
  }
  if (c->w_zp_mode == 2) d->w_zp[0] = 127;
  cq_status st = cq_qgemm_pack(d->w, c->n, c->k, d->w_scale, c->w_zp_mode ? d->w_zp : NULL,
                               c->per_channel, c->has_bias ? d->bias : NULL, &d->packed);
  CHECK_OK(st);
  return st == CQ_OK;
}

static void free_data(case_data *d) {
  cq_qgemm_packed_destroy(d->packed);
  free(d->x);
  free(d->w);
  free(d->w_scale);
  free(d->bias);
  free(d->w_zp);
}

static void describe(const gemm_case *c, char *buf, size_t cap) {
  snprintf(buf, cap, "M=%lld N=%lld K=%lld ldx=%lld ldy=%lld zx=%d zy=%d pc=%d wzp=%d bias=%d "
           "relu=%d clamp=%d [%d, %d] rule=%s extreme=%d", (long long)c->m, (long long)c->n,
           (long long)c->k, (long long)c->ldx, (long long)c->ldy, c->x_zp, c->y_zp,
           c->per_channel, c->w_zp_mode, c->has_bias, c->relu, c->clamp, c->clamp_lo,
           c->clamp_hi, cq_requant_rule_name(c->rule), c->extreme);
}

static void run_static_case(const gemm_case *c) {
  case_data d;
  if (!make_data(c, &d)) return;
  const float x_scale = 0.01f + rnd_unit() * 0.05f;
  const float y_scale = 0.05f + rnd_unit() * 0.5f * (float)sqrt((double)c->k) * 0.1f;
  const size_t ysize = (size_t)(c->m ? c->m : 1) * (size_t)c->ldy;
  uint8_t *want = malloc(ysize), *got = malloc(ysize);
  int32_t *acc = malloc((size_t)(c->m ? c->m : 1) * (size_t)c->n * sizeof(int32_t));
  memset(want, 0xa5, ysize);
  cq_qgemm_reference_acc(d.x, c->m, c->ldx, c->x_zp, d.w, c->n, c->k, c->w_zp_mode ? d.w_zp : NULL,
                         c->per_channel, acc);
  cq_requant_params rq;
  CHECK_OK(cq_requant_params_create(c->n, &rq));
  CHECK_OK(cq_requant_params_set_static(&rq, c->rule, x_scale, d.w_scale, c->per_channel,
                                        c->has_bias ? d.bias : NULL, y_scale, c->y_zp, c->relu));
  const cq_status rst = tb_clamp_reference(c->clamp, c->clamp_lo, c->clamp_hi, c->rule, &rq);
  if (rst == CQ_OK) {
    cq_requant__scalar((size_t)c->m, (size_t)c->n, acc, (size_t)c->n, &rq, 0, want,
                       (size_t)c->ldy);
  }
  cq_requant_params_release(&rq);

  cq_qgemm_quant q = {x_scale, c->x_zp, y_scale, c->y_zp, c->relu, c->rule,
                      c->clamp, c->clamp_lo, c->clamp_hi};
  for (int i = 0; i < n_isas; i++) {
    cq_qgemm_op *op = NULL;
    CHECK_INT_EQ(cq_qgemm_create_isa(d.packed, &q, isas[i], &op), rst); /* same refusals */
    if (!op) continue;
    cq_threadpool *pools[3] = {NULL, pool2, pool3};
    for (int t = 0; t < 3; t++) {
      if (t == 2 && rnd() % 4) continue; /* three threads on a sample */
      memset(got, 0xa5, ysize);
      CHECK_OK(cq_qgemm_run(op, d.x, c->m, c->ldx, got, c->ldy, pools[t]));
      if (memcmp(want, got, ysize) != 0) {
        char buf[256];
        describe(c, buf, sizeof buf);
        size_t at = 0;
        while (want[at] == got[at]) at++;
        check_report(__FILE__, __LINE__, "%s with %d thread(s) differs from the reference: %s; "
                     "first at row %zu col %zu: %d != %d", cq_isa_name(isas[i]), t + 1, buf,
                     at / (size_t)c->ldy, at % (size_t)c->ldy, got[at], want[at]);
      } else {
        check_passed++;
      }
    }
    cases_per_isa[isas[i]]++;
    cq_qgemm_destroy(op);
  }
  free(acc);
  free(want);
  free(got);
  free_data(&d);
}

static const int64_t m_edges[] = {1, 2, 3, 5, 6, 7, 12, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 97};
static const int64_t n_edges[] = {1, 2, 5, 15, 16, 17, 31, 32, 33, 47, 48, 63, 64, 65, 80, 96,
                                  127, 128, 129, 200};
static const int64_t k_edges[] = {1, 2, 3, 4, 5, 7, 8, 15, 31, 63, 64, 65, 100, 127, 128, 129,
                                  191, 192, 256, 300};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void random_case(gemm_case *c) {
  memset(c, 0, sizeof *c);
  c->m = m_edges[rnd() % COUNT(m_edges)];
  c->n = n_edges[rnd() % COUNT(n_edges)];
  c->k = k_edges[rnd() % COUNT(k_edges)];
  c->ldx = c->k + (rnd() % 3 == 0 ? (int64_t)(rnd() % 70) : 0);
  c->ldy = c->n + (rnd() % 3 == 0 ? (int64_t)(rnd() % 40) : 0);
  static const int32_t zps[] = {0, 128, 255};
  c->x_zp = rnd() % 4 ? zps[rnd() % 3] : (int32_t)(rnd() % 256);
  c->y_zp = rnd() % 4 ? zps[rnd() % 3] : (int32_t)(rnd() % 256);
  c->per_channel = (int)(rnd() % 2);
  c->w_zp_mode = rnd() % 4 == 0 ? (int)(1 + rnd() % 2) : 0;
  if (c->w_zp_mode == 2 && !c->per_channel) c->w_zp_mode = 1;
  c->has_bias = rnd() % 4 != 0;
  c->relu = (int)(rnd() % 2);
  c->rule = (cq_requant_rule)(rnd() % CQ_RULE_COUNT);
  if (rnd() % 3 == 0) { /* a folded ReLU6: from the zero point (or another byte) to a bound */
    c->clamp = 1;
    c->clamp_lo = rnd() % 2 ? c->y_zp : (int32_t)(rnd() % 200);
    c->clamp_hi = c->clamp_lo + (int32_t)(rnd() % (256 - (uint32_t)c->clamp_lo));
    if (rnd() % 4 == 0) c->clamp_hi = 255;
  }
}

/* strides for a case whose shape was changed after random_case */
static void fix_strides(gemm_case *c, int64_t x_extra) {
  c->ldx = c->k + x_extra;
  c->ldy = c->n + (rnd() % 3 == 0 ? (int64_t)(rnd() % 40) : 0);
}

static void test_static_edges(void) {
  /* every K edge against a few M/N pairs around the tiles, then a random sample of the grid */
  gemm_case c;
  for (size_t ki = 0; ki < COUNT(k_edges); ki++) {
    for (int variant = 0; variant < 3; variant++) {
      random_case(&c);
      c.k = k_edges[ki];
      c.m = variant == 0 ? 1 : variant == 1 ? 33 : 7;
      c.n = variant == 0 ? 129 : variant == 1 ? 65 : 16;
      fix_strides(&c, variant);
      run_static_case(&c);
    }
  }
  for (size_t mi = 0; mi < COUNT(m_edges); mi++) {
    for (size_t ni = 0; ni < COUNT(n_edges); ni += 3) {
      random_case(&c);
      c.m = m_edges[mi];
      c.n = n_edges[ni];
      c.k = 64 + (int64_t)(rnd() % 3) - 1;
      fix_strides(&c, 0);
      run_static_case(&c);
    }
  }
  for (int i = 0; i < 250; i++) {
    random_case(&c);
    run_static_case(&c);
  }
  /* zero points 0/128/255 x every rule x relu on one odd shape, with and without weight zp */
  static const int32_t zps[] = {0, 128, 255};
  for (int zi = 0; zi < 3; zi++) {
    for (int r = 0; r < CQ_RULE_COUNT; r++) {
      for (int relu = 0; relu < 2; relu++) {
        random_case(&c);
        c.m = 19, c.n = 37, c.k = 70, c.ldx = 70, c.ldy = 40;
        c.x_zp = zps[zi];
        c.y_zp = zps[(zi + r) % 3];
        c.rule = (cq_requant_rule)r;
        c.relu = relu;
        c.w_zp_mode = relu ? 2 : 0;
        c.per_channel = 1;
        run_static_case(&c);
      }
    }
  }
}

static void test_large_and_wrapping(void) {
  gemm_case c;
  random_case(&c);
  c.m = 130, c.n = 300, c.k = 1100, c.ldx = 1100, c.ldy = 300; /* > one AMX / VNNI block */
  run_static_case(&c);
  /* maximal products: 255 * -128 * 70000 does not fit in int32; everything wraps identically */
  random_case(&c);
  c.m = 3, c.n = 17, c.k = 70000, c.ldx = 70000, c.ldy = 17;
  c.extreme = 1;
  c.x_zp = 0;
  c.w_zp_mode = 0;
  run_static_case(&c);
  c.k = 40000, c.ldx = 40000, c.x_zp = 255; /* zero after the zero-point correction */
  run_static_case(&c);
}

/* ---- dynamic op ------------------------------------------------------------------------------ */

static void run_dynamic_case(int64_t m, int64_t n, int64_t k, int64_t ldx, int64_t ldy,
                             cq_requant_rule rule, int reduce_range, int relu, int per_channel,
                             int has_bias, int x_kind) {
  float *x = malloc((size_t)(m ? m : 1) * (size_t)ldx * sizeof(float));
  int8_t *w = malloc((size_t)n * (size_t)k);
  float *ws = malloc((size_t)n * sizeof(float)), *bias = malloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < (m ? m : 1) * ldx; i++) {
    float v = (rnd_unit() - 0.5f) * 6.0f;
    if (x_kind == 1) v = fabsf(v) + 0.25f;  /* all positive */
    if (x_kind == 2) v = -fabsf(v) - 0.25f; /* all negative */
    if (x_kind == 3) v = 1.75f;             /* constant */
    if (x_kind == 4) v = 0.0f;              /* zeros: scale falls back to 0.1 */
    x[i] = v;
  }
  for (int64_t i = 0; i < n * k; i++) w[i] = (int8_t)rnd();
  for (int64_t i = 0; i < n; i++) {
    ws[i] = 0.001f + rnd_unit() * 0.01f;
    bias[i] = (rnd_unit() - 0.5f) * 2.0f;
  }
  cq_qgemm_packed *p = NULL;
  CHECK_OK(cq_qgemm_pack(w, n, k, ws, NULL, per_channel, has_bias ? bias : NULL, &p));
  /* reference: ChooseQuantizationParams over the valid elements, quantize, naive GEMM, float
   * output stage */
  float lo = x[0], hi = x[0];
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < k; j++) {
      const float v = x[i * ldx + j];
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
  }
  if (m == 0) lo = hi = 0.0f;
  double sd;
  int32_t zp;
  CHECK_OK(cq_choose_qparams(lo, hi, 0, 255, 0, 0, reduce_range && rule != CQ_RULE_QNNPACK, &sd,
                             &zp));
  const float sx = (float)sd;
  uint8_t *xq = malloc((size_t)(m ? m : 1) * (size_t)k);
  for (int64_t i = 0; i < m; i++) {
    for (int64_t j = 0; j < k; j++) {
      xq[i * k + j] = (uint8_t)cq_quantize_val(x[i * ldx + j], 1.0f / sx, zp, 0, 255);
    }
  }
  int32_t *acc = malloc((size_t)(m ? m : 1) * (size_t)n * sizeof(int32_t));
  cq_qgemm_reference_acc(xq, m, k, zp, w, n, k, NULL, per_channel, acc);
  cq_requant_params rq;
  CHECK_OK(cq_requant_params_create(n, &rq));
  CHECK_OK(cq_requant_params_set_dynamic(&rq, rule, sx, ws, per_channel, has_bias ? bias : NULL,
                                         relu));
  const size_t ysize = (size_t)(m ? m : 1) * (size_t)ldy;
  float *want = malloc(ysize * sizeof(float)), *got = malloc(ysize * sizeof(float));
  memset(want, 0x7f, ysize * sizeof(float));
  cq_requant__scalar((size_t)m, (size_t)n, acc, (size_t)n, &rq, 0, want, (size_t)ldy);
  cq_requant_params_release(&rq);
  for (int i = 0; i < n_isas; i++) {
    cq_qgemm_dynamic *op = NULL;
    CHECK_OK(cq_qgemm_dynamic_create_isa(p, rule, reduce_range, relu, isas[i], &op));
    if (!op) continue;
    void *wsp = malloc(cq_qgemm_dynamic_workspace_size(op, m) + 1);
    for (int t = 0; t < 2; t++) {
      memset(got, 0x7f, ysize * sizeof(float));
      float got_scale = 0;
      int32_t got_zp = -1;
      CHECK_OK(cq_qgemm_dynamic_run(op, x, m, ldx, got, ldy, wsp, &got_scale, &got_zp,
                                    t ? pool2 : NULL));
      CHECK_F32_BITS(got_scale, sx);
      CHECK_INT_EQ(got_zp, zp);
      CHECK_MSG(memcmp(want, got, ysize * sizeof(float)) == 0,
                "dynamic %s (%d thread(s)) differs: M=%lld N=%lld K=%lld rule=%s rr=%d relu=%d "
                "pc=%d bias=%d x_kind=%d", cq_isa_name(isas[i]), t + 1, (long long)m,
                (long long)n, (long long)k, cq_requant_rule_name(rule), reduce_range, relu,
                per_channel, has_bias, x_kind);
    }
    free(wsp);
    cq_qgemm_dynamic_destroy(op);
  }
  cq_qgemm_packed_destroy(p);
  free(x);
  free(w);
  free(ws);
  free(bias);
  free(xq);
  free(acc);
  free(want);
  free(got);
}

static void test_dynamic(void) {
  for (int i = 0; i < 80; i++) {
    const int64_t m = m_edges[rnd() % COUNT(m_edges)], n = n_edges[rnd() % COUNT(n_edges)];
    const int64_t k = k_edges[rnd() % COUNT(k_edges)];
    run_dynamic_case(m, n, k, k + (i % 3 == 0 ? 5 : 0), n + (i % 4 == 0 ? 3 : 0),
                     (cq_requant_rule)(i % CQ_RULE_COUNT), i % 2, (i / 2) % 2, (i / 4) % 2,
                     (i / 3) % 2, i % 5);
  }
  run_dynamic_case(0, 16, 32, 32, 16, CQ_RULE_ONEDNN, 1, 0, 0, 1, 0); /* empty input */
  /* large enough for the activation passes to split over the pool's threads */
  run_dynamic_case(130, 70, 600, 607, 70, CQ_RULE_ONEDNN, 1, 1, 1, 1, 0);
  run_dynamic_case(257, 33, 300, 300, 40, CQ_RULE_FBGEMM, 1, 0, 0, 1, 2);
  /* a NaN or infinite input has no quantization parameters */
  cq_qgemm_packed *p = NULL;
  int8_t w[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  float s = 0.1f, x[4] = {1.0f, NAN, 2.0f, 3.0f}, y[2];
  uint8_t wsp[8];
  CHECK_OK(cq_qgemm_pack(w, 2, 4, &s, NULL, 0, NULL, &p));
  for (int i = 0; i < n_isas; i++) {
    cq_qgemm_dynamic *op = NULL;
    CHECK_OK(cq_qgemm_dynamic_create_isa(p, CQ_RULE_QNNPACK, 0, 0, isas[i], &op));
    x[1] = NAN;
    CHECK_STATUS(cq_qgemm_dynamic_run(op, x, 1, 4, y, 2, wsp, NULL, NULL, NULL), CQ_EVALUE);
    x[1] = -INFINITY;
    CHECK_STATUS(cq_qgemm_dynamic_run(op, x, 1, 4, y, 2, wsp, NULL, NULL, NULL), CQ_EVALUE);
    x[1] = 0.5f;
    CHECK_OK(cq_qgemm_dynamic_run(op, x, 1, 4, y, 2, wsp, NULL, NULL, NULL));
    CHECK_STATUS(cq_qgemm_dynamic_run(op, x, 1, 4, y, 2, NULL, NULL, NULL, NULL), CQ_EINVAL);
    cq_qgemm_dynamic_destroy(op);
  }
  CHECK_STATUS(cq_qgemm_dynamic_create_isa(p, (cq_requant_rule)7, 0, 0, CQ_ISA_SCALAR, NULL),
               CQ_EINVAL);
  cq_qgemm_packed_destroy(p);
}

/* ---- API behaviour --------------------------------------------------------------------------- */

static void test_errors_and_override(void) {
  int8_t w[6] = {1, -2, 3, -4, 5, -6};
  float s[2] = {0.1f, 0.2f}, bad_s[2] = {0.1f, NAN}, bias[2] = {0.5f, INFINITY};
  int32_t zp_bad[2] = {0, 128};
  cq_qgemm_packed *p = NULL;
  CHECK_STATUS(cq_qgemm_pack(w, 2, 3, bad_s, NULL, 1, NULL, &p), CQ_EVALUE);
  CHECK(p == NULL);
  CHECK_STATUS(cq_qgemm_pack(w, 2, 3, s, zp_bad, 1, NULL, &p), CQ_EINVAL);
  CHECK_STATUS(cq_qgemm_pack(w, 2, 3, s, NULL, 1, bias, &p), CQ_EVALUE);
  CHECK_STATUS(cq_qgemm_pack(w, 0, 3, s, NULL, 1, NULL, &p), CQ_EINVAL);
  CHECK_STATUS(cq_qgemm_pack(NULL, 2, 3, s, NULL, 1, NULL, &p), CQ_EINVAL);
  CHECK_OK(cq_qgemm_pack(w, 2, 3, s, NULL, 1, NULL, &p));
  CHECK(p->k_padded == 64 && p->panels == 1 && p->col_sums[0] == 2 && p->col_sums[1] == -5);

  cq_qgemm_quant q = {0.05f, 300, 0.1f, 0, 0, CQ_RULE_QNNPACK, 0, 0, 0};
  cq_qgemm_op *op = NULL;
  CHECK_STATUS(cq_qgemm_create_isa(p, &q, CQ_ISA_SCALAR, &op), CQ_EINVAL);
  q.x_zp = 3;
  q.y_scale = 0.0f;
  CHECK_STATUS(cq_qgemm_create_isa(p, &q, CQ_ISA_SCALAR, &op), CQ_EVALUE);
  q.y_scale = 0.1f;
  CHECK_STATUS(cq_qgemm_create_isa(p, &q, (cq_isa)9, &op), CQ_EINVAL);
  CHECK_OK(cq_qgemm_create_isa(p, &q, CQ_ISA_SCALAR, &op));
  uint8_t x[6] = {1, 2, 3, 4, 5, 6}, y[4];
  CHECK_STATUS(cq_qgemm_run(op, x, 2, 2, y, 2, NULL), CQ_EINVAL); /* ldx < K */
  CHECK_STATUS(cq_qgemm_run(op, x, 2, 3, y, 1, NULL), CQ_EINVAL); /* ldy < N */
  CHECK_STATUS(cq_qgemm_run(op, x, -1, 3, y, 2, NULL), CQ_EINVAL);
  CHECK_STATUS(cq_qgemm_run(op, NULL, 2, 3, y, 2, NULL), CQ_EINVAL);
  CHECK_OK(cq_qgemm_run(op, NULL, 0, 3, NULL, 2, NULL)); /* M = 0: nothing to do */
  cq_qgemm_destroy(op);

  /* CQ_ISA picks the path; a bad name or an ISA the CPU lacks is an error, never a fallback */
  const char *saved = getenv("CQ_ISA");
  char *saved_copy = saved ? strdup(saved) : NULL;
  setenv("CQ_ISA", "scalar", 1);
  CHECK_OK(cq_qgemm_create(p, &q, &op));
  CHECK(op && cq_qgemm_isa(op) == CQ_ISA_SCALAR);
  cq_qgemm_destroy(op);
  setenv("CQ_ISA", "avx9000", 1);
  CHECK_STATUS(cq_qgemm_create(p, &q, &op), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "CQ_ISA") != NULL);
  for (int i = 0; i < CQ_ISA_COUNT; i++) {
    setenv("CQ_ISA", cq_isa_name((cq_isa)i), 1);
    if (cq_isa_supported((cq_isa)i)) {
      CHECK_OK(cq_qgemm_create(p, &q, &op));
      CHECK(op && cq_qgemm_isa(op) == (cq_isa)i);
      cq_qgemm_destroy(op);
    } else {
      CHECK_STATUS(cq_qgemm_create(p, &q, &op), CQ_EUNSUPPORTED);
      CHECK_STATUS(cq_qgemm_create_isa(p, &q, (cq_isa)i, &op), CQ_EUNSUPPORTED);
    }
  }
  if (saved_copy) {
    setenv("CQ_ISA", saved_copy, 1);
    free(saved_copy);
  } else {
    unsetenv("CQ_ISA");
  }

  /* allocation failures leave nothing behind */
  for (long n = 0; n < 4; n++) {
    cq_qgemm_packed *p2 = NULL;
    cq_debug_fail_alloc_after(n);
    cq_status st = cq_qgemm_pack(w, 2, 3, s, NULL, 1, NULL, &p2);
    cq_debug_fail_alloc_after(-1);
    CHECK(st == CQ_OK || st == CQ_ENOMEM);
    CHECK((st == CQ_OK) == (p2 != NULL));
    cq_qgemm_packed_destroy(p2);
    cq_debug_fail_alloc_after(n);
    st = cq_qgemm_create_isa(p, &q, CQ_ISA_SCALAR, &op);
    cq_debug_fail_alloc_after(-1);
    CHECK(st == CQ_OK || st == CQ_ENOMEM);
    CHECK((st == CQ_OK) == (op != NULL));
    cq_qgemm_destroy(op);
    cq_qgemm_dynamic *dop = NULL;
    cq_debug_fail_alloc_after(n);
    st = cq_qgemm_dynamic_create_isa(p, CQ_RULE_ONEDNN, 1, 0, CQ_ISA_SCALAR, &dop);
    cq_debug_fail_alloc_after(-1);
    CHECK(st == CQ_OK || st == CQ_ENOMEM);
    cq_qgemm_dynamic_destroy(dop);
  }
  cq_qgemm_packed_destroy(p);
}

/* The input matrix ends right before an inaccessible page: a kernel that reads one byte past row
 * M-1, column K-1 (a whole-tile or whole-vector load at the tails) crashes the test. */
static void test_no_overread(void) {
  const long page = sysconf(_SC_PAGESIZE);
  static const int64_t shapes[][3] = {{1, 5, 17}, {3, 63, 20}, {17, 65, 33}, {33, 100, 64},
                                      {40, 1, 16}, {16, 130, 48}, {5, 64, 16}, {50, 7, 70}};
  for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
    const int64_t m = shapes[si][0], k = shapes[si][1], n = shapes[si][2];
    const size_t bytes = (size_t)(m * k);
    const size_t span = (bytes + (size_t)page - 1) / (size_t)page * (size_t)page;
    uint8_t *map = mmap(NULL, span + (size_t)page, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(map != MAP_FAILED);
    if (map == MAP_FAILED) continue;
    CHECK(mprotect(map + span, (size_t)page, PROT_NONE) == 0);
    uint8_t *x = map + span - bytes;
    int8_t *w = malloc((size_t)(n * k));
    for (size_t i = 0; i < bytes; i++) x[i] = (uint8_t)rnd();
    for (int64_t i = 0; i < n * k; i++) w[i] = (int8_t)rnd();
    const float ws = 0.01f;
    cq_qgemm_packed *p = NULL;
    CHECK_OK(cq_qgemm_pack(w, n, k, &ws, NULL, 0, NULL, &p));
    cq_qgemm_quant q = {0.02f, 128, 0.5f, 100, 0, CQ_RULE_ONEDNN, 0, 0, 0};
    uint8_t *ref = malloc((size_t)(m * n)), *y = malloc((size_t)(m * n));
    for (int i = 0; i < n_isas; i++) {
      cq_qgemm_op *op = NULL;
      CHECK_OK(cq_qgemm_create_isa(p, &q, isas[i], &op));
      CHECK_OK(cq_qgemm_run(op, x, m, k, i == 0 ? ref : y, n, NULL));
      if (i > 0) CHECK_MSG(memcmp(ref, y, (size_t)(m * n)) == 0, "%s differs", cq_isa_name(isas[i]));
      cq_qgemm_destroy(op);
    }
    free(ref);
    free(y);
    free(w);
    cq_qgemm_packed_destroy(p);
    munmap(map, span + (size_t)page);
  }
}

/* The range scan of every ISA against the scalar form: min, max and the non-finite flag, over
 * shapes around the vector widths and blocks, row strides, and NaN / infinities anywhere. */
static void test_range_kernels(void) {
  static const size_t cols_list[] = {1, 7, 15, 16, 17, 63, 64, 65, 127, 128, 129, 200, 256, 300};
  float *x = malloc(sizeof(float) * 3 * 400);
  for (int i = 0; i < n_isas; i++) {
    const cq_quantize_kernels k = cq_quantize_kernels_for(isas[i]);
    for (int trial = 0; trial < 600; trial++) {
      const size_t rows = 1 + rnd() % 3, cols = cols_list[rnd() % COUNT(cols_list)];
      const size_t ld = cols + (rnd() % 2 ? rnd() % 50 : 0);
      for (size_t j = 0; j < 3 * 400; j++) x[j] = (rnd_unit() - 0.4f) * 100.0f;
      const int kind = (int)(rnd() % 4); /* 0: all finite; 1: NaN; 2: +inf; 3: -inf */
      if (kind) {
        const size_t at = (rnd() % rows) * ld + rnd() % cols;
        x[at] = kind == 1 ? NAN : kind == 2 ? INFINITY : -INFINITY;
      }
      float lo, hi, want_lo, want_hi;
      int bad = -1, want_bad = -1;
      cq_f32_range__scalar(x, rows, cols, ld, &want_lo, &want_hi, &want_bad);
      k.range(x, rows, cols, ld, &lo, &hi, &bad);
      CHECK_MSG(bad == want_bad && (bad || (lo == want_lo && hi == want_hi)),
                "%s range of %zux%zu (ld %zu, kind %d): [%g, %g] nonfinite %d, want [%g, %g] %d",
                cq_isa_name(isas[i]), rows, cols, ld, kind, lo, hi, bad, want_lo, want_hi,
                want_bad);
    }
  }
  free(x);
}

int main(void) {
  for (int i = 0; i < CQ_ISA_COUNT; i++) {
    if (cq_isa_supported((cq_isa)i)) {
      isas[n_isas++] = (cq_isa)i;
    } else {
      printf("qgemm %s path: skipped (%s)\n", cq_isa_name((cq_isa)i),
             cq_isa_missing_reason((cq_isa)i));
    }
  }
  CHECK_OK(cq_threadpool_create(2, &pool2));
  CHECK_OK(cq_threadpool_create(3, &pool3));
  test_range_kernels();
  test_errors_and_override();
  test_static_edges();
  test_large_and_wrapping();
  test_no_overread();
  test_dynamic();
  for (int i = 0; i < n_isas; i++) {
    printf("qgemm %s path: %ld static cases bit-exact with the reference (1/2/3 threads), "
           "dynamic cases too\n", cq_isa_name(isas[i]), cases_per_isa[isas[i]]);
  }
  cq_threadpool_destroy(pool2);
  cq_threadpool_destroy(pool3);
  return check_summary("test_qgemm");
}

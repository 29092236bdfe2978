/* Requantization (src/kernels/requant): the per-channel constants of the three engine rules against
 * the spec's formulas written out independently here, the output stages against literal
 * step-by-step forms (QNNPACK's int16 saturation chain, x86 conversion of out-of-range values),
 * against a double-precision ideal (off by at most one step, exact where float is exact), ties,
 * saturation at the int32 limits, and every vector kernel against the scalar one bit for bit. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "core/cpu.h"
#include "cquant/cquant.h"
#include "kernels/requant/requant.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 16);
}
static float rnd_unit(void) { return (float)(rnd() & 0xffffff) / 16777216.0f; }
static int32_t rnd_acc(void) {
  switch (rnd() % 4) {
    case 0: return (int32_t)(rnd() % 2001) - 1000;
    case 1: return (int32_t)(rnd() % 200001) - 100000;
    case 2: return (int32_t)rnd();
    default: return (int32_t)(rnd() % 20000001) - 10000000;
  }
}

/* ---- literal forms of the spec ----------------------------------------------------------- */

/* x86 cvtss2si with round-to-nearest-even: "integer indefinite" for NaN and out-of-range. */
static int32_t x86_cvt(float f) {
  if (isnan(f)) return INT32_MIN;
  double r = nearbyint((double)f);
  if (r < -2147483648.0 || r > 2147483647.0) return INT32_MIN;
  return (int32_t)r;
}
static int32_t sat16(int64_t v) { return v > 32767 ? 32767 : v < -32768 ? -32768 : (int32_t)v; }

static uint8_t spec_qnnpack(int32_t acc, int32_t bq, float m, int32_t zy, int relu) {
  int32_t sum = (int32_t)((uint32_t)acc + (uint32_t)bq); /* int32 wrap, as the kernel's add */
  float f = (float)sum * m;
  int32_t r = sat16(x86_cvt(f));      /* _mm_packs_epi32 */
  r = sat16((int64_t)r + zy);          /* _mm_adds_epi16 with the zero point */
  if (r < 0) r = 0;                    /* _mm_packus_epi16 */
  if (r > 255) r = 255;
  const int32_t lo = relu ? zy : 0;
  return (uint8_t)(r < lo ? lo : r);
}

static uint8_t spec_float_rule(int32_t acc, float s, float b, float m, int32_t zy, int relu) {
  float v = ((float)acc * s + b) * m;
  double r = nearbyint((double)v) + zy;
  const double lo = relu ? zy : 0;
  if (r < lo) r = lo;
  if (r > 255) r = 255;
  return (uint8_t)r;
}

/* ---- parameters ------------------------------------------------------------------------------ */

static void test_rule_names(void) {
  cq_requant_rule r;
  CHECK_OK(cq_requant_rule_parse("onednn", &r));
  CHECK(r == CQ_RULE_ONEDNN);
  CHECK_STATUS(cq_requant_rule_parse("fbgemmx", &r), CQ_EINVAL);
  CHECK_STR_EQ(cq_requant_rule_name(CQ_RULE_QNNPACK), "qnnpack");
  CHECK_STR_EQ(cq_requant_rule_name(CQ_RULE_FBGEMM), "fbgemm");
}

static void test_params_formulas(void) {
  enum { N = 37 };
  float sw[N], bias[N];
  for (int i = 0; i < N; i++) {
    sw[i] = 0.0005f + rnd_unit() * 0.02f;
    bias[i] = (rnd_unit() - 0.5f) * 8.0f;
  }
  const float sx = 0.0372f, sy = 0.0913f;
  cq_requant_params p;
  CHECK_OK(cq_requant_params_create(N, &p));
  CHECK_INT_EQ(p.padded, 48);
  for (int per_channel = 0; per_channel < 2; per_channel++) {
    CHECK_OK(cq_requant_params_set_static(&p, CQ_RULE_QNNPACK, sx, sw, per_channel, bias, sy, 7, 0));
    CHECK(p.kind == CQ_OUT_U8_INT);
    int exact = 1;
    for (int c = 0; c < N; c++) {
      const float s = sw[per_channel ? c : 0];
      /* 5.1: M = f32(f32(sw*sx) * f32(1/sy)); bq = rne(b * f32(1/f32(double(sx)*double(sw)))) */
      const float m = (float)((float)(s * sx) * (float)(1.0f / sy));
      const float inv = 1.0f / (float)((double)sx * (double)s);
      const int32_t bq = (int32_t)nearbyintf(bias[c] * inv);
      exact &= check_f32_bits(p.mult[c]) == check_f32_bits(m) && p.ibias[c] == bq;
    }
    CHECK_MSG(exact, "QNNPACK constants (per_channel=%d)", per_channel);
    CHECK_INT_EQ(p.y_min, 0);

    CHECK_OK(cq_requant_params_set_static(&p, CQ_RULE_ONEDNN, sx, sw, per_channel, bias, sy, 7, 1));
    CHECK(p.kind == CQ_OUT_U8_FLOAT);
    CHECK_INT_EQ(p.y_min, 7);
    exact = 1;
    for (int c = 0; c < N; c++) {
      const float s = sw[per_channel ? c : 0];
      exact &= check_f32_bits(p.scale[c]) == check_f32_bits((float)((double)sx * s)) &&
               check_f32_bits(p.fbias[c]) == check_f32_bits(bias[c]) &&
               check_f32_bits(p.mult[c]) == check_f32_bits(1.0f / sy);
    }
    CHECK_MSG(exact, "oneDNN constants (per_channel=%d)", per_channel);

    CHECK_OK(cq_requant_params_set_static(&p, CQ_RULE_FBGEMM, sx, sw, per_channel, bias, sy, 7, 0));
    exact = 1;
    for (int c = 0; c < N; c++) {
      const float ats = sx * sw[per_channel ? c : 0];
      const float fb = per_channel ? bias[c] / ats : bias[c] * (1.0f / ats);
      exact &= p.scale[c] == 1.0f && check_f32_bits(p.fbias[c]) == check_f32_bits(fb) &&
               check_f32_bits(p.mult[c]) == check_f32_bits(ats / sy);
    }
    CHECK_MSG(exact, "FBGEMM constants (per_channel=%d)", per_channel);

    CHECK_OK(cq_requant_params_set_dynamic(&p, CQ_RULE_QNNPACK, sx, sw, per_channel, NULL, 1));
    CHECK(p.kind == CQ_OUT_F32 && p.relu == 1);
    exact = 1;
    for (int c = 0; c < N; c++) {
      exact &= check_f32_bits(p.scale[c]) == check_f32_bits(sw[per_channel ? c : 0] * sx) &&
               p.mult[c] == 1.0f && p.fbias[c] == 0.0f && p.obias[c] == 0.0f;
    }
    CHECK_MSG(exact, "dynamic QNNPACK constants");
    CHECK_OK(cq_requant_params_set_dynamic(&p, CQ_RULE_FBGEMM, sx, sw, per_channel, bias, 0));
    exact = 1;
    for (int c = 0; c < N; c++) {
      exact &= p.scale[c] == sx && p.mult[c] == sw[per_channel ? c : 0] && p.fbias[c] == 0.0f &&
               p.obias[c] == bias[c];
    }
    CHECK_MSG(exact, "dynamic FBGEMM constants");
    CHECK_OK(cq_requant_params_set_dynamic(&p, CQ_RULE_ONEDNN, sx, sw, per_channel, bias, 0));
    exact = 1;
    for (int c = 0; c < N; c++) {
      /* reciprocal scales: p = f32(f32(1/sx) * f32(1/sw)), bias * p before, 1/p after */
      const float prod = (float)((float)(1.0f / sx) * (float)(1.0f / sw[per_channel ? c : 0]));
      exact &= p.scale[c] == 1.0f && check_f32_bits(p.fbias[c]) == check_f32_bits(bias[c] * prod) &&
               check_f32_bits(p.mult[c]) == check_f32_bits(1.0f / prod) && p.obias[c] == 0.0f;
    }
    CHECK_MSG(exact, "dynamic oneDNN constants");
  }
  /* padding is neutral */
  CHECK(p.scale[N] == 1.0f && p.mult[47] == 1.0f && p.fbias[40] == 0.0f && p.ibias[47] == 0 &&
        p.obias[45] == 0.0f);

  /* a bias that quantizes beyond int32 saturates; one whose float product overflows to inf gives
   * INT32_MIN, as x86's float->int64 conversion inside PyTorch's quantize_val does */
  float big_bias[N];
  for (int i = 0; i < N; i++) big_bias[i] = i == 3 ? 1e7f : (i == 4 ? -1e7f : i == 6 ? 1e38f : 0.0f);
  CHECK_OK(cq_requant_params_set_static(&p, CQ_RULE_QNNPACK, 1e-3f, sw, 0, big_bias, 1.0f, 0, 0));
  CHECK_INT_EQ(p.ibias[3], INT32_MAX);
  CHECK_INT_EQ(p.ibias[4], INT32_MIN);
  CHECK_INT_EQ(p.ibias[6], INT32_MIN);
  big_bias[5] = NAN;
  CHECK_STATUS(cq_requant_params_set_static(&p, CQ_RULE_ONEDNN, sx, sw, 1, big_bias, sy, 0, 0),
               CQ_EVALUE);
  CHECK(strstr(cq_last_error(), "channel 5") != NULL);
  CHECK_STATUS(cq_requant_params_set_static(&p, CQ_RULE_QNNPACK, sx, sw, 0, NULL, sy, 256, 0),
               CQ_EVALUE);
  CHECK_STATUS(cq_requant_params_set_static(&p, CQ_RULE_QNNPACK, 0.0f, sw, 0, NULL, sy, 0, 0),
               CQ_EVALUE);
  CHECK_STATUS(cq_requant_params_set_static(&p, CQ_RULE_QNNPACK, sx, sw, 0, NULL, INFINITY, 0, 0),
               CQ_EVALUE);
  /* a subnormal multiplier is refused by QNNPACK (PyTorch errors out) */
  const float tiny[1] = {1e-30f};
  CHECK_STATUS(cq_requant_params_set_static(&p, CQ_RULE_QNNPACK, 1e-10f, tiny, 0, NULL, 1e3f, 0, 0),
               CQ_EVALUE);
  CHECK_STATUS(cq_requant_params_set_static(&p, (cq_requant_rule)9, sx, sw, 0, NULL, sy, 0, 0),
               CQ_EINVAL);
  cq_requant_params_release(&p);
  CHECK_STATUS(cq_requant_params_create(0, &p), CQ_EINVAL);
  CHECK_STATUS(cq_requant_params_set_static(&p, CQ_RULE_QNNPACK, sx, sw, 0, NULL, sy, 0, 0),
               CQ_ESTATE);
  cq_debug_fail_alloc_after(0);
  CHECK_STATUS(cq_requant_params_create(4, &p), CQ_ENOMEM);
  cq_debug_fail_alloc_after(-1);
}

/* ---- output stages ------------------------------------------------------------------------- */

static void test_stages_vs_literal_forms(void) {
  long mismatches = 0;
  for (int i = 0; i < 200000; i++) {
    const int32_t acc = rnd_acc(), bq = (int32_t)(rnd() % 4001) - 2000;
    const float m = ldexpf(0.5f + rnd_unit() * 0.5f, -(int)(rnd() % 24));
    const int32_t zy = (int32_t)(rnd() % 256);
    const int relu = (int)(rnd() & 1);
    const int32_t lo = relu ? zy : 0;
    uint8_t got = cq_requant_u8_int((int32_t)((uint32_t)acc + (uint32_t)bq), m, zy, lo, 255);
    if (got != spec_qnnpack(acc, bq, m, zy, relu)) mismatches++;
    const float s = ldexpf(0.5f + rnd_unit(), -(int)(rnd() % 16));
    const float b = (rnd_unit() - 0.5f) * 4.0f;
    got = cq_requant_u8_float(acc, s, b, m, zy, (float)(lo - zy), (float)(255 - zy));
    if (got != spec_float_rule(acc, s, b, m, zy, relu)) mismatches++;
  }
  CHECK_INT_EQ(mismatches, 0);
}

static void test_ties_and_limits(void) {
  /* multiplier 0.5: odd accumulators land exactly on .5 and round to even */
  CHECK_INT_EQ(cq_requant_u8_int(1, 0.5f, 10, 0, 255), 10);   /* 0.5 -> 0 */
  CHECK_INT_EQ(cq_requant_u8_int(3, 0.5f, 10, 0, 255), 12);   /* 1.5 -> 2 */
  CHECK_INT_EQ(cq_requant_u8_int(5, 0.5f, 10, 0, 255), 12);   /* 2.5 -> 2 */
  CHECK_INT_EQ(cq_requant_u8_int(-1, 0.5f, 10, 0, 255), 10);  /* -0.5 -> 0 */
  CHECK_INT_EQ(cq_requant_u8_int(-3, 0.5f, 10, 0, 255), 8);   /* -1.5 -> -2 */
  CHECK_INT_EQ(cq_requant_u8_float(5, 1.0f, 0.0f, 0.5f, 10, -10.0f, 245.0f), 12);
  CHECK_INT_EQ(cq_requant_u8_float(7, 1.0f, 0.0f, 0.5f, 10, -10.0f, 245.0f), 14);
  /* ReLU clamps at the zero point, not at 0 */
  CHECK_INT_EQ(cq_requant_u8_int(-100, 0.5f, 30, 30, 255), 30);
  CHECK_INT_EQ(cq_requant_u8_float(-100, 1.0f, 0.0f, 0.5f, 30, 0.0f, 225.0f), 30);

  /* int32 limits. QNNPACK: f32(INT32_MAX) = 2^31, times 1 is out of range for cvtps2dq, which
   * returns INT32_MIN, so the output is 0 -- PyTorch's qnnpack gives the same. Times 0.5 fits. */
  CHECK_INT_EQ(cq_requant_u8_int(INT32_MAX, 1.0f, 0, 0, 255), 0);
  CHECK_INT_EQ(cq_requant_u8_int(INT32_MAX, 0.5f, 0, 0, 255), 255);
  CHECK_INT_EQ(cq_requant_u8_int(INT32_MIN, 1.0f, 0, 0, 255), 0);
  CHECK_INT_EQ(cq_requant_u8_int(INT32_MIN, 1e-9f, 128, 0, 255), 126); /* -2.147 -> -2 */
  /* wrap of acc + bias in int32, as the vector add does */
  CHECK_INT_EQ(cq_requant_u8_int((int32_t)((uint32_t)INT32_MAX + 2u), 1e-9f, 128, 0, 255), 126);
  /* the float rules saturate instead */
  CHECK_INT_EQ(cq_requant_u8_float(INT32_MAX, 1.0f, 0.0f, 1.0f, 0, 0.0f, 255.0f), 255);
  CHECK_INT_EQ(cq_requant_u8_float(INT32_MIN, 1.0f, 0.0f, 1.0f, 0, 0.0f, 255.0f), 0);
  CHECK_INT_EQ(cq_requant_u8_float(INT32_MAX, 1e30f, 1e30f, 1e30f, 3, -3.0f, 252.0f), 255);
  CHECK_INT_EQ(cq_requant_u8_float(INT32_MIN, 1e30f, 0.0f, 1e30f, 3, -3.0f, 252.0f), 0);
  CHECK_INT_EQ(cq_requant_u8_float(INT32_MIN, 1e30f, 0.0f, 1e30f, 3, 0.0f, 252.0f), 3);
  /* exact powers of two */
  for (int e = 0; e < 20; e++) {
    const float m = ldexpf(1.0f, -e);
    const int32_t acc = 100 << e;
    CHECK_INT_EQ(cq_requant_u8_int(acc, m, 5, 0, 255), 105);
    CHECK_INT_EQ(cq_requant_u8_float(acc, 1.0f, 0.0f, m, 5, -5.0f, 250.0f), 105);
  }
  /* dynamic stage: ((acc * scale + fbias) * mult) + obias */
  CHECK_F32_BITS(cq_requant_f32(-4, 0.25f, 0.0f, 1.0f, 0.5f, 1), 0.0f);
  CHECK_F32_BITS(cq_requant_f32(-4, 0.25f, 0.0f, 1.0f, 0.5f, 0), -0.5f);
  CHECK_F32_BITS(cq_requant_f32(6, 0.25f, 0.0f, 2.0f, 0.5f, 1), 3.5f);
  CHECK_F32_BITS(cq_requant_f32(6, 1.0f, 2.0f, 0.25f, 0.0f, 0), 2.0f);
}

/* |y - ideal| <= 1 step against the real-number result in double. */
static void test_vs_double_reference(void) {
  cq_requant_params p;
  CHECK_OK(cq_requant_params_create(1, &p));
  long off_by_more = 0, off_by_one = 0, total = 0;
  for (int rule = 0; rule < CQ_RULE_COUNT; rule++) {
    for (int i = 0; i < 30000; i++) {
      const float sx = 0.001f + rnd_unit() * 0.1f, sw = 0.0001f + rnd_unit() * 0.01f;
      const float sy = 0.01f + rnd_unit() * 0.5f, b = (rnd_unit() - 0.5f) * 10.0f;
      const int32_t zy = (int32_t)(rnd() % 256);
      const int32_t acc = (int32_t)(rnd() % 2000001) - 1000000;
      CHECK_OK(cq_requant_params_set_static(&p, (cq_requant_rule)rule, sx, &sw, 0, &b, sy, zy, 0));
      uint8_t y;
      cq_requant__scalar(1, 1, &acc, 1, &p, 0, &y, 1);
      double ideal = nearbyint(((double)acc * sx * sw + b) / sy) + zy;
      ideal = ideal < 0 ? 0 : ideal > 255 ? 255 : ideal;
      const double d = fabs((double)y - ideal);
      off_by_more += d > 1;
      off_by_one += d == 1;
      total++;
    }
  }
  CHECK_INT_EQ(off_by_more, 0);
  CHECK_MSG(off_by_one * 100 < total, "%ld of %ld results off by one step", off_by_one, total);
  printf("requant vs double: %ld of %ld differ by one step (float rounding), none by more\n",
         off_by_one, total);
  cq_requant_params_release(&p);
}

/* ---- vector kernels against the scalar kernel -------------------------------------------- */

static void test_kernels(void) {
  enum { CH = 45, ROWS = 5, STRIDE = 53 };
  float sw[CH], bias[CH];
  int32_t acc[ROWS * STRIDE];
  uint8_t want_u8[ROWS * STRIDE], got_u8[ROWS * STRIDE];
  float want_f[ROWS * STRIDE], got_f[ROWS * STRIDE];
  cq_requant_params p;
  CHECK_OK(cq_requant_params_create(CH, &p));
  /* every vector ISA of the ladder (the ones of the other architecture say why they are skipped) */
  for (int isa = CQ_ISA_SCALAR + 1; isa < CQ_ISA_COUNT; isa++) {
    const cq_requant_fn fn = cq_requant_kernel((cq_isa)isa);
    if (!cq_isa_supported((cq_isa)isa)) {
      printf("requant %s kernel: skipped (%s)\n", cq_isa_name((cq_isa)isa),
             cq_isa_missing_reason((cq_isa)isa));
      continue;
    }
    CHECK_MSG(fn != cq_requant__scalar, "no requant kernel of its own for %s",
              cq_isa_name((cq_isa)isa));
    long bad = 0, cases = 0;
    for (int iter = 0; iter < 400; iter++) {
      for (int c = 0; c < CH; c++) {
        sw[c] = 0.0001f + rnd_unit() * 0.01f;
        bias[c] = (rnd_unit() - 0.5f) * 20.0f;
      }
      for (int i = 0; i < ROWS * STRIDE; i++) acc[i] = rnd_acc();
      acc[0] = INT32_MAX;
      acc[1] = INT32_MIN;
      const int rule = iter % CQ_RULE_COUNT, relu = (iter / 3) % 2, dynamic = iter % 7 == 6;
      const int per_channel = (iter / 2) % 2;
      const float sx = 0.002f + rnd_unit() * 0.05f;
      /* every tenth case a tiny output scale: multipliers ~1e4 push f32(acc) * M past 2^31, where
       * the kernels must all give x86's conversion result (ARM's FCVTNS saturates instead) */
      const float sy = iter % 10 == 9 ? 1e-7f + rnd_unit() * 1e-7f : 0.005f + rnd_unit();
      if (dynamic) {
        CHECK_OK(cq_requant_params_set_dynamic(&p, (cq_requant_rule)rule, sx, sw, per_channel,
                                               iter % 2 ? bias : NULL, relu));
      } else {
        CHECK_OK(cq_requant_params_set_static(&p, (cq_requant_rule)rule, sx, sw, per_channel,
                                              iter % 2 ? bias : NULL, sy, (int32_t)(rnd() % 256),
                                              relu));
      }
      const size_t c0 = rnd() % 8 == 0 ? rnd() % 20 : 0;
      const size_t channels = 1 + rnd() % (CH - c0);
      void *want = dynamic ? (void *)want_f : (void *)want_u8;
      void *got = dynamic ? (void *)got_f : (void *)got_u8;
      const size_t esize = dynamic ? 4 : 1;
      memset(want, 0xa5, ROWS * STRIDE * esize);
      memset(got, 0xa5, ROWS * STRIDE * esize);
      cq_requant__scalar(ROWS, channels, acc, STRIDE, &p, c0, want, STRIDE);
      fn(ROWS, channels, acc, STRIDE, &p, c0, got, STRIDE);
      bad += memcmp(want, got, ROWS * STRIDE * esize) != 0;
      cases++;
    }
    CHECK_MSG(bad == 0, "%s requant kernel differs from scalar in %ld of %ld cases",
              cq_isa_name((cq_isa)isa), bad, cases);
    printf("requant %s kernel: %ld cases bit-exact with scalar\n", cq_isa_name((cq_isa)isa),
           cases);
  }
  cq_requant_params_release(&p);
}

int main(void) {
  test_rule_names();
  test_params_formulas();
  test_stages_vs_literal_forms();
  test_ties_and_limits();
  test_vs_double_reference();
  test_kernels();
  return check_summary("test_requant");
}

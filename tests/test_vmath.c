/* kernels/vmath: the vector sigmoid / tanh of every ISA equal the scalar definition bit for bit,
 * and the definition is within 2 ulp of the exact functions (double-precision libm as the
 * reference) over a sweep of the float range, with the special values right. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "kernels/vmath/vmath.h"
#include "support/check.h"

static float from_bits(uint32_t b) {
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

/* ulps between two finite floats of one sign region (monotone integer mapping) */
static int64_t ulps(float a, float b) {
  int32_t ia, ib;
  memcpy(&ia, &a, 4);
  memcpy(&ib, &b, 4);
  const int64_t ka = ia < 0 ? (int64_t)INT32_MIN - ia : ia;
  const int64_t kb = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
  return ka > kb ? ka - kb : kb - ka;
}

/* inputs: a dense sweep of [-20, 20], every 4999th bit pattern of the float range, specials */
static size_t make_inputs(float **out) {
  const size_t dense = 200001, sparse = (size_t)(UINT32_MAX / 4999u) + 1, special = 12;
  float *x = malloc(sizeof *x * (dense + sparse + special));
  size_t n = 0;
  for (size_t i = 0; i < dense; i++) x[n++] = -20.0f + 40.0f * (float)i / (float)(dense - 1);
  for (uint64_t b = 0; b <= UINT32_MAX; b += 4999u) x[n++] = from_bits((uint32_t)b);
  const float sp[12] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 0.55f, -0.55f, 0.5499999f,
                        9.0f, -87.5f, 88.5f, 1e-30f};
  for (int i = 0; i < 12; i++) x[n++] = sp[i];
  *out = x;
  return n;
}

static void test_isas_agree(const float *x, size_t n) {
  float *want = malloc(sizeof *want * n), *got = malloc(sizeof *got * n);
  const cq_vmath_kernels *ref = cq_vmath_kernels_for(CQ_ISA_SCALAR);
  for (int f = 0; f < 2; f++) {
    (f ? ref->tanh : ref->sigmoid)(x, want, n);
    for (int isa = 0; isa < CQ_ISA_COUNT; isa++) {
      if (!cq_isa_supported((cq_isa)isa)) continue;
      const cq_vmath_kernels *k = cq_vmath_kernels_for((cq_isa)isa);
      /* odd lengths and offsets exercise the tails */
      for (size_t len = 0; len < 40; len++) {
        memset(got, 0, sizeof *got * len);
        (f ? k->tanh : k->sigmoid)(x + 3, got, len);
        CHECK_MSG(!memcmp(got, want + 3, sizeof *got * len), "%s %s: length %zu differs",
                  cq_isa_name((cq_isa)isa), f ? "tanh" : "sigmoid", len);
      }
      (f ? k->tanh : k->sigmoid)(x, got, n);
      size_t bad = 0;
      for (size_t i = 0; i < n; i++) bad += memcmp(&got[i], &want[i], sizeof *got) != 0;
      CHECK_MSG(bad == 0, "%s %s: %zu of %zu values differ from the scalar definition",
                cq_isa_name((cq_isa)isa), f ? "tanh" : "sigmoid", bad, n);
      /* in place */
      memcpy(got, x, sizeof *got * n);
      (f ? k->tanh : k->sigmoid)(got, got, n);
      CHECK(!memcmp(got, want, sizeof *got * n));
    }
  }
  free(want);
  free(got);
}

static void test_accuracy(const float *x, size_t n) {
  int64_t worst[2] = {0, 0};
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(x[i])) continue;
    const float s = cq_sigmoid_f32(x[i]), t = cq_tanh_f32(x[i]);
    const float es = (float)(1.0 / (1.0 + exp(-(double)x[i])));
    const float et = (float)tanh((double)x[i]);
    /* sigmoid below 2^-126 (x < -87) is flushed towards the clamp's value: absolute check */
    if (x[i] > -87.0f) {
      const int64_t u = ulps(s, es);
      if (u > worst[0]) worst[0] = u;
    } else {
      CHECK(s >= 0.0f && s < 1e-37f);
    }
    const int64_t u = ulps(t, et);
    if (u > worst[1]) worst[1] = u;
  }
  CHECK_MSG(worst[0] <= 2, "sigmoid: %lld ulp from the exact value", (long long)worst[0]);
  CHECK_MSG(worst[1] <= 2, "tanh: %lld ulp from the exact value", (long long)worst[1]);
  printf("vmath: worst error sigmoid %lld ulp, tanh %lld ulp over %zu inputs\n",
         (long long)worst[0], (long long)worst[1], n);
}

static void test_specials(void) {
  CHECK(isnan(cq_sigmoid_f32(NAN)) && isnan(cq_tanh_f32(NAN)));
  CHECK(cq_tanh_f32(INFINITY) == 1.0f && cq_tanh_f32(-INFINITY) == -1.0f);
  CHECK(cq_sigmoid_f32(INFINITY) == 1.0f && cq_sigmoid_f32(-INFINITY) < 1e-37f);
  CHECK(cq_sigmoid_f32(0.0f) == 0.5f);
  CHECK(cq_tanh_f32(0.0f) == 0.0f && !signbit(cq_tanh_f32(0.0f)));
  CHECK(cq_tanh_f32(-0.0f) == 0.0f && signbit(cq_tanh_f32(-0.0f)));
  CHECK(cq_tanh_f32(1e-30f) == 1e-30f);
  for (float v = -10.0f; v <= 10.0f; v += 0.125f) {
    CHECK(cq_tanh_f32(-v) == -cq_tanh_f32(v));
  }
}

int main(void) {
  float *x = NULL;
  const size_t n = make_inputs(&x);
  test_isas_agree(x, n);
  test_accuracy(x, n);
  test_specials();
  free(x);
  return check_summary("test_vmath");
}

/* The TensorRT-style calibrators (observer kinds percentile, mse, entropy) against an independent
 * re-implementation of NVIDIA pytorch-quantization's HistogramCalibrator.
 *
 * Golden cases (tests/data/golden/calibrators/cases.txt, from tools/golden/gen_calibrators.py) feed
 * a stream of batches through the public observer API, then compare bit for bit: the histogram
 * length, last edge and counts (by fingerprint), the running min/max, the threshold amax (through the internal hook
 * cq_calibrator_amax), and the scale and zero point of cq_observer_qparams. Every comparison is
 * exact (float bits, integers): the library reproduces the reference's float32 arithmetic, so no
 * tolerance is needed. Each stream is also run a second time after cq_observer_reset (checking
 * everything but the separate amax call, which qparams repeats anyway).
 *
 * Direct checks cover: no data, empty batches, NaN rejection, the all-zero restart, reset,
 * option validation, the histogram size limit, float32 overflow, allocation failures, the
 * memory bound over many batches, the sign switch of the clipping range, and the repr. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cquant/npy.h"
#include "cquant/observer.h"
#include "cquant/qparams.h"
#include "cquant/status.h"
#include "cquant/tensor.h"
#include "quant/observer_calibrators.h"
#include "support/check.h"
#include "support/golden.h"

#define GOLDEN_FILE CQ_TEST_DATA_DIR "/golden/calibrators/cases.txt"

static const cq_observer_kind METHODS[3] = {CQ_OBSERVER_PERCENTILE, CQ_OBSERVER_MSE,
                                            CQ_OBSERVER_ENTROPY};

static int warnings_seen;
static void count_warning(const char *message, void *user) {
  (void)message;
  (void)user;
  warnings_seen++;
}

/* --- golden cases ----------------------------------------------------------------------------- */

static cq_status config_from_string(const char *text, cq_observer_config *cfg) {
  *cfg = cq_observer_defaults(CQ_OBSERVER_PERCENTILE);
  char *copy = strdup(text);
  if (!copy) return CQ_ENOMEM;
  cq_status st = CQ_OK;
  char *save = NULL;
  for (char *tok = strtok_r(copy, " ", &save); tok && st == CQ_OK;
       tok = strtok_r(NULL, " ", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq) {
      st = cq_fail(CQ_EINVAL, "config token '%s' has no '='", tok);
      break;
    }
    *eq = '\0';
    st = cq_observer_config_set(cfg, tok, eq + 1);
  }
  free(copy);
  return st;
}

/* Feeds every batch (the first axis of `in`) to the observer. */
static cq_status feed_batches(cq_observer *obs, const cq_tensor *in) {
  const int64_t nb = in->shape[0];
  const int64_t per = nb ? cq_tensor_numel(in) / nb : 0;
  for (int64_t b = 0; b < nb; b++) {
    cq_status st = cq_observer_update(obs, (const float *)in->data + b * per, in->ndim - 1,
                                      in->shape + 1);
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

static float golden_float(const golden_case *c, const char *key, int *ok) {
  const char *v = golden_get(c, key);
  if (!v) {
    *ok = 0;
    return 0.0f;
  }
  return (float)strtod(v, NULL);
}

static long long golden_int(const golden_case *c, const char *key, int *ok) {
  const char *v = golden_get(c, key);
  if (!v) {
    *ok = 0;
    return 0;
  }
  return strtoll(v, NULL, 10);
}

/* FNV-1a (64-bit) of the integer counts as little-endian int32 bytes, as the generator writes it. */
static uint64_t histogram_fnv1a(const float *counts, int64_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (int64_t j = 0; j < n; j++) {
    const uint32_t v = (uint32_t)(int32_t)counts[j];
    for (int b = 0; b < 4; b++) {
      h ^= (v >> (8 * b)) & 0xffu;
      h *= 0x100000001b3ull;
    }
  }
  return h;
}

/* Compares the observer's state and results with the case; returns 1 if everything matched. */
static int compare_case(const golden_case *c, cq_observer *obs, const char *pass,
                        int check_amax) {
  int ok = 1, keys = 1;
  const float want_amax = golden_float(c, "amax", &keys);
  const float want_scale = golden_float(c, "scale", &keys);
  const float want_last = golden_float(c, "last_edge", &keys);
  const float want_min = golden_float(c, "min_val", &keys);
  const float want_max = golden_float(c, "max_val", &keys);
  const long long want_zp = golden_int(c, "zero_point", &keys);
  const long long want_bins = golden_int(c, "num_bins", &keys);
  const long long want_qmin = golden_int(c, "quant_min", &keys);
  const long long want_qmax = golden_int(c, "quant_max", &keys);
  if (!keys) {
    CHECK_MSG(0, "%s: case is missing a key", c->name);
    return 0;
  }

  const float *counts;
  int64_t nbins;
  float last;
  CHECK_OK(cq_calibrator_histogram(obs, &counts, &nbins, &last));
  if (nbins != want_bins || check_f32_bits(last) != check_f32_bits(want_last)) {
    CHECK_MSG(0, "%s (%s): histogram has %lld bins up to %.9g, want %lld up to %.9g", c->name, pass,
              (long long)nbins, last, want_bins, want_last);
    ok = 0;
  }
  const char *fnv = golden_get(c, "hist_fnv1a");
  if (!fnv || histogram_fnv1a(counts, nbins) != strtoull(fnv, NULL, 10)) {
    CHECK_MSG(0, "%s (%s): histogram counts differ (fingerprint %llu, want %s)", c->name, pass,
              (unsigned long long)histogram_fnv1a(counts, nbins), fnv ? fnv : "missing");
    ok = 0;
  }
  float mn, mx;
  cq_observer_min_max(obs, &mn, &mx, 1);
  if (check_f32_bits(mn) != check_f32_bits(want_min) ||
      check_f32_bits(mx) != check_f32_bits(want_max)) {
    CHECK_MSG(0, "%s (%s): min/max %.9g %.9g, want %.9g %.9g", c->name, pass, mn, mx, want_min,
              want_max);
    ok = 0;
  }
  cq_status st;
  if (check_amax) { /* the search is the expensive part: once per case is enough */
    float amax = NAN;
    st = cq_calibrator_amax(obs, &amax);
    if (st != CQ_OK || check_f32_bits(amax) != check_f32_bits(want_amax)) {
      CHECK_MSG(0, "%s (%s): amax %.9g (%s), want %.9g", c->name, pass, amax, cq_status_str(st),
                want_amax);
      ok = 0;
    }
  }
  cq_qparams qp;
  st = cq_observer_qparams(obs, &qp);
  if (st != CQ_OK) {
    CHECK_MSG(0, "%s (%s): qparams failed: %s", c->name, pass, cq_last_error());
    return 0;
  }
  if (check_f32_bits(qp.scale[0]) != check_f32_bits(want_scale) || qp.zero_point[0] != want_zp ||
      qp.quant_min != want_qmin || qp.quant_max != want_qmax) {
    CHECK_MSG(0, "%s (%s): scale %.9g zp %d range [%d, %d], want %.9g %lld [%lld, %lld]", c->name,
              pass, qp.scale[0], qp.zero_point[0], qp.quant_min, qp.quant_max, want_scale, want_zp,
              want_qmin, want_qmax);
    ok = 0;
  }
  cq_qparams_release(&qp);
  if (ok) check_passed++;
  return ok;
}

static void test_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN_FILE, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN_FILE);
    return;
  }
  int matched = 0, methods[3] = {0, 0, 0};
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    cq_observer_config cfg;
    cq_status st = config_from_string(golden_get(c, "config") ? golden_get(c, "config") : "", &cfg);
    if (st != CQ_OK) {
      CHECK_MSG(0, "%s: config: %s", c->name, cq_last_error());
      continue;
    }
    char path[1024];
    cq_tensor *in = NULL;
    const char *input = golden_get(c, "input");
    if (!input || cq_npy_load(golden_path(&g, input, path, sizeof path), &in) != CQ_OK) {
      CHECK_MSG(0, "%s: cannot load input: %s", c->name, cq_last_error());
      continue;
    }
    cq_observer *obs = NULL;
    st = cq_observer_create(&cfg, &obs);
    if (st != CQ_OK) {
      CHECK_MSG(0, "%s: create: %s", c->name, cq_last_error());
      cq_tensor_free(in);
      continue;
    }
    int ok = 1;
    st = feed_batches(obs, in);
    if (st != CQ_OK) {
      CHECK_MSG(0, "%s: update: %s", c->name, cq_last_error());
      ok = 0;
    } else {
      ok = compare_case(c, obs, "fresh", 1);
      cq_observer_reset(obs);
      st = feed_batches(obs, in);
      CHECK_MSG(st == CQ_OK, "%s: update after reset: %s", c->name, cq_last_error());
      ok = st == CQ_OK && compare_case(c, obs, "after reset", 0) && ok;
    }
    if (ok) {
      matched++;
      for (int m = 0; m < 3; m++) methods[m] += cfg.kind == METHODS[m];
    }
    cq_observer_free(obs);
    cq_tensor_free(in);
  }
  printf("golden: %d of %d cases match bit for bit (percentile %d, mse %d, entropy %d): amax, "
         "scale, zero point, histogram length, last edge and counts, min/max\n",
         matched, g.count, methods[0], methods[1], methods[2]);
  CHECK(g.count >= 200);
  golden_free(&g);
}

/* --- direct checks ---------------------------------------------------------------------------- */

static cq_observer *make(cq_observer_kind kind) {
  cq_observer_config cfg = cq_observer_defaults(kind);
  cq_observer *obs = NULL;
  CHECK_OK(cq_observer_create(&cfg, &obs));
  return obs;
}

static cq_status update1(cq_observer *obs, const float *x, int64_t n) {
  return cq_observer_update(obs, x, 1, &n);
}

static float amax_of(const cq_observer *obs) {
  float a = NAN;
  CHECK_OK(cq_calibrator_amax(obs, &a));
  return a;
}

/* Deterministic pseudo-random data (xorshift), roughly normal (sum of uniforms). */
static void fill_data(float *x, int64_t n, unsigned seed, float scale, int relu) {
  unsigned s = seed * 2654435761u + 1u;
  for (int64_t i = 0; i < n; i++) {
    float acc = 0.0f;
    for (int k = 0; k < 4; k++) {
      s ^= s << 13;
      s ^= s >> 17;
      s ^= s << 5;
      acc += (float)(s & 0xffffff) / 16777216.0f - 0.5f;
    }
    x[i] = acc * scale;
    if (relu && x[i] < 0.0f) x[i] = 0.0f;
  }
}

static int same_histogram(const cq_observer *a, const cq_observer *b) {
  const float *ca, *cb;
  int64_t na, nb;
  float la, lb;
  CHECK_OK(cq_calibrator_histogram(a, &ca, &na, &la));
  CHECK_OK(cq_calibrator_histogram(b, &cb, &nb, &lb));
  if (na != nb || check_f32_bits(la) != check_f32_bits(lb)) return 0;
  return na == 0 || memcmp(ca, cb, sizeof(float) * (size_t)na) == 0;
}

static void test_no_data_and_empty(void) {
  for (int m = 0; m < 3; m++) {
    cq_observer *obs = make(METHODS[m]);
    if (!obs) continue;
    float a;
    CHECK_STATUS(cq_calibrator_amax(obs, &a), CQ_ESTATE);
    warnings_seen = 0;
    cq_qparams qp;
    CHECK_OK(cq_observer_qparams(obs, &qp));
    CHECK(qp.scale[0] == 1.0f && qp.zero_point[0] == 0);
    CHECK_INT_EQ(warnings_seen, 1);
    cq_qparams_release(&qp);
    int64_t zero = 0;
    CHECK_OK(cq_observer_update(obs, NULL, 1, &zero)); /* empty: ignored */
    CHECK(!cq_observer_has_data(obs));
    const float *counts;
    int64_t nbins;
    float last;
    CHECK_OK(cq_calibrator_histogram(obs, &counts, &nbins, &last));
    CHECK(counts == NULL && nbins == 0);
    cq_observer_free(obs);
  }
  /* The hooks refuse other kinds. */
  cq_observer *mm = make(CQ_OBSERVER_MINMAX);
  float a;
  CHECK(!cq_observer_is_calibrator(mm));
  CHECK_STATUS(cq_calibrator_amax(mm, &a), CQ_EINVAL);
  cq_observer_free(mm);
}

static void test_nan_leaves_state(void) {
  float x[300];
  fill_data(x, 300, 1, 2.0f, 0);
  for (int m = 0; m < 3; m++) {
    cq_observer *obs = make(METHODS[m]);
    cq_observer *ref = make(METHODS[m]);
    CHECK_OK(update1(obs, x, 300));
    CHECK_OK(update1(ref, x, 300));
    float bad[300];
    fill_data(bad, 300, 2, 50.0f, 0);
    bad[123] = NAN;
    CHECK_STATUS(update1(obs, bad, 300), CQ_EVALUE);
    bad[123] = INFINITY;
    CHECK_STATUS(update1(obs, bad, 300), CQ_EVALUE);
    CHECK(same_histogram(obs, ref));
    CHECK_F32_BITS(amax_of(obs), amax_of(ref));
    cq_observer_free(obs);
    cq_observer_free(ref);
  }
}

/* Zeros first (bin width 0; the reference would divide by it), then data: cquant starts the grid
 * afresh and keeps the zeros in bin 0, i.e. the same as one batch holding both. */
static void test_zero_restart(void) {
  float z[100] = {0};
  float x[400], both[500];
  fill_data(x, 400, 3, 3.0f, 0);
  memcpy(both, z, sizeof z);
  memcpy(both + 100, x, sizeof x);
  for (int m = 0; m < 3; m++) {
    cq_observer *a = make(METHODS[m]);
    cq_observer *b = make(METHODS[m]);
    CHECK_OK(update1(a, z, 100));
    CHECK_F32_BITS(amax_of(a), 0.0f);
    cq_qparams qp;
    CHECK_OK(cq_observer_qparams(a, &qp));
    CHECK_F32_BITS(qp.scale[0], 1.1920928955078125e-07f); /* eps: range (0, 0) */
    CHECK_INT_EQ(qp.zero_point[0], 0);
    cq_qparams_release(&qp);
    CHECK_OK(update1(a, z, 100)); /* still zero: no growth */
    CHECK_OK(update1(a, x, 400));
    CHECK_OK(update1(b, both, 500));
    CHECK_OK(update1(b, z, 100));
    const float *ca, *cb;
    int64_t na, nb;
    float la, lb;
    CHECK_OK(cq_calibrator_histogram(a, &ca, &na, &la));
    CHECK_OK(cq_calibrator_histogram(b, &cb, &nb, &lb));
    CHECK(na == nb && la == lb && na == 2048);
    CHECK(na == nb && memcmp(ca, cb, sizeof(float) * (size_t)na) == 0);
    CHECK_F32_BITS(amax_of(a), amax_of(b));
    cq_observer_free(a);
    cq_observer_free(b);
  }
}

static void test_reset(void) {
  float x[500], y[500];
  fill_data(x, 500, 4, 10.0f, 0);
  fill_data(y, 500, 5, 1.0f, 1);
  for (int m = 0; m < 3; m++) {
    cq_observer *a = make(METHODS[m]);
    cq_observer *b = make(METHODS[m]);
    CHECK_OK(update1(a, x, 500));
    cq_observer_reset(a);
    CHECK(!cq_observer_has_data(a));
    float mn, mx;
    cq_observer_min_max(a, &mn, &mx, 1);
    CHECK(mn == INFINITY && mx == -INFINITY);
    CHECK_OK(update1(a, y, 500));
    CHECK_OK(update1(b, y, 500));
    CHECK(same_histogram(a, b));
    CHECK_F32_BITS(amax_of(a), amax_of(b));
    cq_qparams qa, qb;
    CHECK_OK(cq_observer_qparams(a, &qa));
    CHECK_OK(cq_observer_qparams(b, &qb));
    CHECK_F32_BITS(qa.scale[0], qb.scale[0]);
    CHECK_INT_EQ(qa.zero_point[0], 0); /* the negative values before the reset are forgotten */
    CHECK_INT_EQ(qb.zero_point[0], 0);
    cq_qparams_release(&qa);
    cq_qparams_release(&qb);
    cq_observer_free(a);
    cq_observer_free(b);
  }
}

static void test_validation(void) {
  cq_observer *obs = NULL;
  cq_observer_config c = cq_observer_defaults(CQ_OBSERVER_MSE);
  c.bins = 100; /* start_bin 128 leaves no candidate */
  CHECK_STATUS(cq_observer_create(&c, &obs), CQ_EINVAL);
  CHECK(obs == NULL);
  c.start_bin = 99;
  CHECK_OK(cq_observer_create(&c, &obs));
  cq_observer_free(obs);
  obs = NULL;

  c = cq_observer_defaults(CQ_OBSERVER_ENTROPY);
  c.bins = 1;
  c.start_bin = 1;
  CHECK_STATUS(cq_observer_create(&c, &obs), CQ_EINVAL);
  c.bins = 127;
  c.start_bin = 128;
  CHECK_STATUS(cq_observer_create(&c, &obs), CQ_EINVAL);
  c.start_bin = 127;
  CHECK_OK(cq_observer_create(&c, &obs));
  cq_observer_free(obs);
  obs = NULL;

  c = cq_observer_defaults(CQ_OBSERVER_PERCENTILE);
  c.qscheme = CQ_PER_CHANNEL_AFFINE;
  CHECK_STATUS(cq_observer_create(&c, &obs), CQ_EINVAL);
  c = cq_observer_defaults(CQ_OBSERVER_PERCENTILE);
  c.percentile = 100.5;
  CHECK_STATUS(cq_observer_create(&c, &obs), CQ_EINVAL);
  c = cq_observer_defaults(CQ_OBSERVER_ENTROPY);
  c.stride = 0;
  CHECK_STATUS(cq_observer_create(&c, &obs), CQ_EINVAL);
  CHECK(obs == NULL);

  /* The defaults are pytorch-quantization's. */
  for (int m = 0; m < 3; m++) {
    c = cq_observer_defaults(METHODS[m]);
    CHECK(c.bins == 2048 && c.percentile == 99.99 && c.start_bin == 128 && c.stride == 1);
    CHECK(c.dtype == CQ_QUINT8 && c.qscheme == CQ_PER_TENSOR_AFFINE);
  }
}

/* A later batch whose max|x| needs more than 2^24 bins of the first batch's width is refused and
 * leaves the observer as it was; so is one whose grid end would overflow float32. */
static void test_limits(void) {
  float x[64];
  fill_data(x, 64, 6, 1e-3f, 0);
  for (int m = 0; m < 3; m++) {
    cq_observer *obs = make(METHODS[m]);
    CHECK_OK(update1(obs, x, 64));
    float before = amax_of(obs);
    float far[2] = {1.0f, 1e6f};
    CHECK_STATUS(update1(obs, far, 2), CQ_EUNSUPPORTED);
    CHECK_F32_BITS(amax_of(obs), before);
    float mn, mx;
    cq_observer_min_max(obs, &mn, &mx, 1);
    CHECK(mx < 1.0f);
    cq_observer_free(obs);

    /* Values up to FLT_MAX are fine in a first batch (histc divides before it multiplies); a
     * later batch whose max plus the bin width overflows is refused. */
    obs = make(METHODS[m]);
    float big[3] = {1.0f, -3e38f, 2.0f};
    CHECK_OK(update1(obs, big, 3));
    float huge[3] = {1.0f, -FLT_MAX, 2.0f};
    CHECK_STATUS(update1(obs, huge, 3), CQ_EVALUE);
    cq_observer_min_max(obs, &mn, &mx, 1);
    CHECK(mn == -3e38f);
    cq_observer_free(obs);
    obs = make(METHODS[m]);
    CHECK_OK(update1(obs, huge, 3));
    float a = amax_of(obs);
    CHECK(a > 0.0f && a <= FLT_MAX);
    cq_observer_free(obs);
  }
}

static void test_alloc_failures(void) {
  float x[256], y[256];
  fill_data(x, 256, 7, 1.0f, 0);
  fill_data(y, 256, 8, 3.0f, 0); /* grows the grid */
  for (int m = 0; m < 3; m++) {
    cq_observer *ref = make(METHODS[m]);
    CHECK_OK(update1(ref, x, 256));
    CHECK_OK(update1(ref, y, 256));
    const float want = amax_of(ref);
    int failures = 0;
    for (long n = 0; n < 8; n++) {
      cq_observer *obs = make(METHODS[m]);
      CHECK_OK(update1(obs, x, 256));
      cq_debug_fail_alloc_after(n);
      cq_status st = update1(obs, y, 256);
      cq_debug_fail_alloc_after(-1);
      if (st != CQ_OK) {
        failures++;
        CHECK_INT_EQ(st, CQ_ENOMEM);
        CHECK_OK(update1(obs, y, 256)); /* unchanged by the failure: retry gives the same */
      }
      CHECK(same_histogram(obs, ref));
      cq_debug_fail_alloc_after(n);
      float a = NAN;
      st = cq_calibrator_amax(obs, &a);
      cq_debug_fail_alloc_after(-1);
      if (st != CQ_OK) {
        failures++;
        CHECK_INT_EQ(st, CQ_ENOMEM);
      } else {
        CHECK_F32_BITS(a, want);
      }
      cq_observer_free(obs);
    }
    CHECK(failures >= 1);
    cq_observer_free(ref);
  }
}

/* Memory does not grow with the number of batches: 500 batches inside the first range keep 2048
 * bins, and the counts add up. */
static void test_many_batches(void) {
  float first[1000], x[1000];
  fill_data(first, 1000, 9, 1.0f, 0);
  first[0] = 5.0f; /* every later batch stays below */
  cq_observer *obs = make(CQ_OBSERVER_PERCENTILE);
  CHECK_OK(update1(obs, first, 1000));
  for (unsigned b = 0; b < 500; b++) {
    fill_data(x, 1000, 100 + b, 1.0f, 0);
    CHECK_OK(update1(obs, x, 1000));
  }
  const float *counts;
  int64_t nbins;
  float last;
  CHECK_OK(cq_calibrator_histogram(obs, &counts, &nbins, &last));
  CHECK_INT_EQ(nbins, 2048);
  CHECK_F32_BITS(last, 5.0f);
  double total = 0.0;
  for (int64_t j = 0; j < nbins; j++) total += counts[j];
  CHECK(total == 501000.0);
  cq_observer_free(obs);
}

/* Non-negative data gives [0, amax]; once a negative value arrives the range is [-amax, amax] and
 * MSE/entropy switch to the signed quantizer. The qparams are PyTorch's rule on that range. */
static void test_sign_switch(void) {
  float relu[800], neg[4] = {-0.5f, 0.25f, -1.0f, 0.0f};
  fill_data(relu, 800, 11, 2.0f, 1);
  for (int m = 0; m < 3; m++) {
    cq_observer *obs = make(METHODS[m]);
    CHECK_OK(update1(obs, relu, 800));
    float a = amax_of(obs);
    cq_qparams qp;
    CHECK_OK(cq_observer_qparams(obs, &qp));
    CHECK_F32_BITS(qp.scale[0], a / 255.0f);
    CHECK_INT_EQ(qp.zero_point[0], 0);
    cq_qparams_release(&qp);

    CHECK_OK(update1(obs, neg, 4));
    a = amax_of(obs);
    cq_qparam_rule rule = {CQ_QUINT8, CQ_PER_TENSOR_AFFINE, 0, 255, 0, 1.1920928955078125e-07f};
    float want_scale;
    int32_t want_zp;
    CHECK_OK(cq_calculate_qparams(&rule, -a, a, &want_scale, &want_zp, NULL));
    CHECK_OK(cq_observer_qparams(obs, &qp));
    CHECK_F32_BITS(qp.scale[0], want_scale);
    CHECK_INT_EQ(qp.zero_point[0], want_zp);
    CHECK(want_zp == 127 || want_zp == 128);
    cq_qparams_release(&qp);
    cq_observer_free(obs);
  }
}

static void test_repr(void) {
  char buf[256];
  static const char *const fresh[3] = {
      "HistogramCalibrator(method=percentile, percentile=99.99, num_bins=2048, min_val=inf, "
      "max_val=-inf)",
      "HistogramCalibrator(method=mse, start_bin=128, stride=1, num_bins=2048, min_val=inf, "
      "max_val=-inf)",
      "HistogramCalibrator(method=entropy, start_bin=128, stride=1, num_bins=2048, min_val=inf, "
      "max_val=-inf)",
  };
  float x[4] = {-1.5f, 0.25f, 2.0f, 0.0f};
  float y[2] = {4.0f, 1.0f}; /* twice the range: 4096 bins of the same width */
  for (int m = 0; m < 3; m++) {
    cq_observer *obs = make(METHODS[m]);
    size_t n = cq_observer_repr(obs, buf, sizeof buf);
    CHECK_STR_EQ(buf, fresh[m]);
    CHECK_INT_EQ(n, strlen(fresh[m]));
    CHECK_OK(update1(obs, x, 4));
    CHECK_OK(update1(obs, y, 2));
    cq_observer_repr(obs, buf, sizeof buf);
    char want[256];
    const char *head = m == 0 ? "percentile=99.99" : "start_bin=128, stride=1";
    snprintf(want, sizeof want,
             "HistogramCalibrator(method=%s, %s, num_bins=4096, min_val=-1.5, max_val=4.0)",
             cq_observer_kind_name(METHODS[m]), head);
    CHECK_STR_EQ(buf, want);
    cq_observer_free(obs);
  }
  cq_observer_config c = cq_observer_defaults(CQ_OBSERVER_PERCENTILE);
  c.percentile = 99.9;
  c.bins = 512;
  cq_observer *obs = NULL;
  CHECK_OK(cq_observer_create(&c, &obs));
  cq_observer_repr(obs, buf, sizeof buf);
  CHECK_STR_EQ(buf, "HistogramCalibrator(method=percentile, percentile=99.9, num_bins=512, "
                    "min_val=inf, max_val=-inf)");
  cq_observer_free(obs);
}

int main(void) {
  cq_set_warning_handler(count_warning, NULL);
  test_golden();
  test_no_data_and_empty();
  test_nan_leaves_state();
  test_zero_restart();
  test_reset();
  test_validation();
  test_limits();
  test_alloc_failures();
  test_many_batches();
  test_sign_switch();
  test_repr();
  return check_summary("test_calibrators");
}

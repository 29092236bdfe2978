/* HistogramObserver against PyTorch 1.13.
 *
 * Golden cases (tests/data/golden/histogram/cases.txt, from tools/golden/gen_histogram.py):
 *  - observer: a stream of batches fed through cq_observer_update; the running range, a hash and
 *    the exact sum of the histogram, the range the L2 search picks, the qparams (scale bit for bit,
 *    zero point exactly) and the repr must equal PyTorch's. Streams on which PyTorch raised must
 *    fail at the same batch and leave the observer as it was before that batch.
 *  - torch_sum / aminmax: the reduction orders the observer reproduces.
 * Direct checks: a deliberately naive reference of forward() (materialised upsampled grid and
 * sequential double cumulative sum) against the optimised merge on random streams chosen to make
 * the closed-form run sums fall back; reset; empty and non-finite batches; errors leaving the state
 * unchanged; allocation failures.
 *
 * Every kernel set the CPU can run (scalar, AVX2, AVX-512) and 1, 2 and 3 threads of the default
 * pool: the golden and reference checks run under each (with a grain small enough that even short
 * batches are split among the threads), and large batches, bin-edge values and non-finite elements
 * at part boundaries must give the same bits, errors and messages under all of them. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu.h"
#include "cquant/npy.h"
#include "cquant/observer.h"
#include "cquant/tensor.h"
#include "cquant/threads.h"
#include "quant/observer_histogram.h"
#include "support/check.h"
#include "support/golden.h"

#define GOLDEN_FILE CQ_TEST_DATA_DIR "/golden/histogram/cases.txt"

static int detail_budget = 60;

static void detail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void detail(const char *fmt, ...) {
  static int budget_read;
  if (!budget_read) { /* CQ_TEST_DETAILS=N prints up to N mismatch details */
    budget_read = 1;
    const char *env = getenv("CQ_TEST_DETAILS");
    if (env) detail_budget = atoi(env);
  }
  if (detail_budget <= 0) return;
  detail_budget--;
  va_list ap;
  va_start(ap, fmt);
  fputs("  ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static void ignore_warning(const char *message, void *user) {
  (void)message;
  (void)user;
}

static int same_f32(float a, float b) { return check_f32_bits(a) == check_f32_bits(b); }

static float parse_f32(const char *s) { return s ? (float)strtod(s, NULL) : NAN; }

static uint64_t fnv1a_f32(const float *v, int n) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (int i = 0; i < n; i++) {
    uint32_t u = check_f32_bits(v[i]);
    for (int b = 0; b < 4; b++) {
      h ^= (u >> (8 * b)) & 0xff;
      h *= 0x100000001b3ULL;
    }
  }
  return h;
}

/* Compensated (Neumaier) sum of the histogram, printed beside the golden exact sum when a histogram
 * differs, to tell a small rounding difference from a gross one. */
static double accurate_sum(const float *v, int n) {
  double s = 0.0, c = 0.0;
  for (int i = 0; i < n; i++) {
    double x = v[i], t = s + x;
    c += fabs(s) >= fabs(x) ? (s - t) + x : (x - t) + s;
    s = t;
  }
  return s + c;
}

static cq_status config_from_string(const char *text, cq_observer_config *cfg) {
  *cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
  char *copy = strdup(text);
  if (!copy) return CQ_ENOMEM;
  cq_status st = CQ_OK;
  char *save = NULL;
  for (char *tok = strtok_r(copy, " ", &save); tok && st == CQ_OK;
       tok = strtok_r(NULL, " ", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq) {
      st = CQ_EINVAL;
      break;
    }
    *eq = '\0';
    st = cq_observer_config_set(cfg, tok, eq + 1);
  }
  free(copy);
  return st;
}

/* --- golden: observer streams ------------------------------------------------------------------ */

static int check_observer_case(const golden_file *g, const golden_case *c) {
  int problems = 0;
  cq_observer_config cfg;
  cq_observer *obs = NULL;
  cq_tensor *in = NULL;
  char path[1024];
  if (config_from_string(golden_get(c, "config"), &cfg) != CQ_OK ||
      cq_observer_create(&cfg, &obs) != CQ_OK) {
    detail("%s: config rejected: %s", c->name, cq_last_error());
    return 1;
  }
  const char *input = golden_get(c, "input");
  if (!input || cq_npy_load(golden_path(g, input, path, sizeof path), &in) != CQ_OK) {
    detail("%s: cannot load input: %s", c->name, cq_last_error());
    cq_observer_free(obs);
    return 1;
  }
  const char *eb = golden_get(c, "error_batch");
  const int64_t error_batch = eb ? strtoll(eb, NULL, 10) : -1;
  const int64_t nb = in->shape[0];
  int64_t per = 1;
  for (int d = 1; d < in->ndim; d++) per *= in->shape[d];
  for (int64_t b = 0; b < nb; b++) {
    float before_min, before_max;
    cq_observer_min_max(obs, &before_min, &before_max, 1);
    cq_status st = cq_observer_update(obs, (const float *)in->data + b * per, in->ndim - 1,
                                      in->shape + 1);
    if (b == error_batch) {
      float after_min, after_max;
      cq_observer_min_max(obs, &after_min, &after_max, 1);
      if (st == CQ_OK) {
        detail("%s: batch %lld accepted, PyTorch raised %s", c->name, (long long)b,
               golden_get(c, "error"));
        problems++;
      } else if (!same_f32(before_min, after_min) || !same_f32(before_max, after_max)) {
        detail("%s: failed batch %lld changed the range", c->name, (long long)b);
        problems++;
      }
      break;
    }
    if (st != CQ_OK) {
      detail("%s: batch %lld: %s", c->name, (long long)b, cq_last_error());
      problems++;
      break;
    }
  }

  float mn, mx;
  cq_observer_min_max(obs, &mn, &mx, 1);
  const float want_min = parse_f32(golden_get(c, "min_val"));
  const float want_max = parse_f32(golden_get(c, "max_val"));
  if (!same_f32(mn, want_min) || !same_f32(mx, want_max)) {
    detail("%s: range [%.9g, %.9g], want [%.9g, %.9g]", c->name, mn, mx, want_min, want_max);
    problems++;
  }
  int bins = 0;
  const float *hist = cq_histogram_observer_histogram(obs, &bins);
  char hash[32];
  snprintf(hash, sizeof hash, "%016llx", (unsigned long long)fnv1a_f32(hist, bins));
  const char *want_hash = golden_get(c, "histogram_fnv1a");
  if (!want_hash || strcmp(hash, want_hash) != 0) {
    detail("%s: histogram hash %s, want %s (sum %.17g, want %s)", c->name, hash,
           want_hash ? want_hash : "?", accurate_sum(hist, bins), golden_get(c, "histogram_sum"));
    problems++;
  }
  const char *smin = golden_get(c, "search_min");
  if (smin) {
    float got_lo = 0, got_hi = 0;
    const float want_lo = parse_f32(smin), want_hi = parse_f32(golden_get(c, "search_max"));
    if (cq_histogram_observer_search(obs, &got_lo, &got_hi) != CQ_OK ||
        !same_f32(got_lo, want_lo) || !same_f32(got_hi, want_hi)) {
      detail("%s: search range [%.9g, %.9g], want [%.9g, %.9g]", c->name, got_lo, got_hi, want_lo,
             want_hi);
      problems++;
    }
  }
  cq_qparams qp;
  if (cq_observer_qparams(obs, &qp) != CQ_OK) {
    detail("%s: qparams failed: %s", c->name, cq_last_error());
    problems++;
  } else {
    const float want_scale = parse_f32(golden_get(c, "scale"));
    const long want_zp = strtol(golden_get(c, "zero_point"), NULL, 10);
    if (!same_f32(qp.scale[0], want_scale) || qp.zero_point[0] != want_zp) {
      detail("%s: qparams (%.9g, %d), want (%.9g, %ld)", c->name, qp.scale[0], qp.zero_point[0],
             want_scale, want_zp);
      problems++;
    }
    cq_qparams_release(&qp);
  }
  char repr[256];
  cq_observer_repr(obs, repr, sizeof repr);
  const char *want_repr = golden_get(c, "repr");
  if (!want_repr || strcmp(repr, want_repr) != 0) {
    detail("%s: repr %s, want %s", c->name, repr, want_repr ? want_repr : "?");
    problems++;
  }
  cq_tensor_free(in);
  cq_observer_free(obs);
  return problems;
}

static int check_sum_case(const golden_file *g, const golden_case *c) {
  cq_tensor *in = NULL;
  char path[1024];
  if (cq_npy_load(golden_path(g, golden_get(c, "input"), path, sizeof path), &in) != CQ_OK) {
    detail("%s: cannot load input: %s", c->name, cq_last_error());
    return 1;
  }
  const float got = cq_torch_sum_f32(in->data, cq_tensor_numel(in));
  const float want = parse_f32(golden_get(c, "sum"));
  cq_tensor_free(in);
  if (!same_f32(got, want)) {
    detail("%s: sum %.9g, want %.9g", c->name, got, want);
    return 1;
  }
  return 0;
}

/* torch.aminmax is what the first batch's range comes from. */
static int check_aminmax_case(const golden_file *g, const golden_case *c) {
  cq_tensor *in = NULL;
  char path[1024];
  if (cq_npy_load(golden_path(g, golden_get(c, "input"), path, sizeof path), &in) != CQ_OK) {
    detail("%s: cannot load input: %s", c->name, cq_last_error());
    return 1;
  }
  cq_observer_config cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
  cq_observer *obs = NULL;
  int problems = 0;
  float mn = 0, mx = 0;
  if (cq_observer_create(&cfg, &obs) != CQ_OK ||
      cq_observer_update(obs, in->data, in->ndim, in->shape) != CQ_OK) {
    detail("%s: %s", c->name, cq_last_error());
    problems++;
  } else {
    cq_observer_min_max(obs, &mn, &mx, 1);
    const float want_min = parse_f32(golden_get(c, "min_val"));
    const float want_max = parse_f32(golden_get(c, "max_val"));
    if (!same_f32(mn, want_min) || !same_f32(mx, want_max)) {
      detail("%s: aminmax (%g, %g), want (%g, %g)", c->name, mn, mx, want_min, want_max);
      problems++;
    }
  }
  cq_observer_free(obs);
  cq_tensor_free(in);
  return problems;
}

static void test_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN_FILE, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN_FILE);
    return;
  }
  int counts[3] = {0, 0, 0}, passed[3] = {0, 0, 0};
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    const char *check = golden_get(c, "check");
    int kind, problems;
    if (check && strcmp(check, "observer") == 0) {
      kind = 0;
      problems = check_observer_case(&g, c);
    } else if (check && strcmp(check, "torch_sum") == 0) {
      kind = 1;
      problems = check_sum_case(&g, c);
    } else if (check && strcmp(check, "aminmax") == 0) {
      kind = 2;
      problems = check_aminmax_case(&g, c);
    } else {
      CHECK_MSG(0, "%s: unknown check '%s'", c->name, check ? check : "");
      continue;
    }
    counts[kind]++;
    passed[kind] += problems == 0;
    CHECK_MSG(problems == 0, "golden case %s: %d mismatches", c->name, problems);
  }
  printf("  golden: observer %d/%d, torch_sum %d/%d, aminmax %d/%d cases match PyTorch\n", passed[0],
         counts[0], passed[1], counts[1], passed[2], counts[2]);
  CHECK(counts[0] >= 200);
  CHECK(counts[1] > 0 && counts[2] > 0);
  golden_free(&g);
}

/* --- naive reference of forward() --------------------------------------------------------------- */

typedef struct ref_observer {
  int bins, up;
  float min_val, max_val;
  float *hist;
} ref_observer;

/* torch.histc as the observer calls it, counting in float32 one element at a time. */
static void ref_histc(const float *x, int64_t n, int bins, float range_min, float range_max,
                      float *out) {
  double lo = trunc(range_min), hi = trunc(range_max);
  if (lo == hi) {
    float mn = x[0], mx = x[0];
    for (int64_t i = 0; i < n; i++) {
      if (x[i] < mn) mn = x[i];
      if (x[i] > mx) mx = x[i];
    }
    lo = mn;
    hi = mx;
    if (lo == hi) {
      lo -= 1;
      hi += 1;
    }
  }
  const float l = (float)lo, h = (float)hi;
  for (int b = 0; b < bins; b++) out[b] = 0.0f;
  for (int64_t i = 0; i < n; i++) {
    if (!(x[i] >= l && x[i] <= h)) continue;
    const float frac = (x[i] - l) / (h - l);
    int64_t k = (int64_t)(frac * (float)bins);
    if (k == bins) k = bins - 1;
    out[k] += 1.0f;
  }
}

/* Spec 1.6.2 literally: upsampled grid in memory, sequential double cumsum. Data must be free of
 * zeros of both signs (the reference does not reproduce aminmax's lane order). Returns 0 when the
 * grid would be too large for the test. */
static int ref_update(ref_observer *r, const float *x, int64_t n) {
  float mn = x[0], mx = x[0];
  for (int64_t i = 0; i < n; i++) {
    if (x[i] < mn) mn = x[i];
    if (x[i] > mx) mx = x[i];
  }
  float *fresh = malloc(sizeof(float) * (size_t)r->bins);
  if ((r->min_val == INFINITY && r->max_val == -INFINITY) || r->min_val == r->max_val) {
    ref_histc(x, n, r->bins, mn, mx, fresh);
    memcpy(r->hist, fresh, sizeof(float) * (size_t)r->bins);
    r->min_val = mn;
    r->max_val = mx;
    free(fresh);
    return 1;
  }
  const float cmin = fminf(mn, r->min_val);
  float cmax = fmaxf(mx, r->max_val);
  const float w = (r->max_val - r->min_val) / (float)(r->bins * r->up);
  const int64_t d = (int64_t)ceilf((cmax - cmin) / ((float)r->bins * w));
  const float e = (float)d * ((float)r->bins * w) - (cmax - cmin);
  cmax = cmax + e;
  const int64_t start = (int64_t)nearbyintf((r->min_val - cmin) / w);
  ref_histc(x, n, r->bins, cmin, cmax, fresh);
  if (cmin == r->min_val && cmax == r->max_val) {
    for (int b = 0; b < r->bins; b++) fresh[b] += r->hist[b];
  } else {
    const int64_t cells = (int64_t)r->bins * d;
    if (cells > ((int64_t)1 << 26)) {
      free(fresh);
      return 0;
    }
    float *grid = calloc((size_t)cells, sizeof(float));
    double *integral = malloc(sizeof(double) * (size_t)cells);
    for (int64_t i = 0; i < (int64_t)r->bins * r->up; i++) grid[start + i] = r->hist[i / r->up];
    double acc = 0.0;
    for (int64_t i = 0; i < cells; i++) {
      acc += (double)grid[i];
      integral[i] = acc;
    }
    float prev = 0.0f;
    for (int b = 0; b < r->bins; b++) {
      const double sample = integral[(int64_t)(b + 1) * d - 1];
      fresh[b] = fresh[b] + (float)((sample - (double)prev) / r->up);
      prev = (float)sample;
    }
    free(grid);
    free(integral);
  }
  memcpy(r->hist, fresh, sizeof(float) * (size_t)r->bins);
  r->min_val = cmin;
  r->max_val = cmax;
  free(fresh);
  return 1;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static double uniform01(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (double)(rng_state >> 11) * (1.0 / 9007199254740992.0);
}
static double gaussian(void) {
  const double u = uniform01() + 1e-300, v = uniform01();
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

static void test_against_reference(void) {
  const int configs[][2] = {{2048, 128}, {256, 16}, {100, 7}, {1000, 128}, {64, 1}};
  rng_state = 0x9e3779b97f4a7c15ULL;
  int streams = 0, compared = 0, mismatches = 0;
  for (int ci = 0; ci < 5; ci++) {
    for (int s = 0; s < 12; s++) {
      cq_observer_config cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
      cfg.bins = configs[ci][0];
      cfg.upsample_rate = configs[ci][1];
      cq_observer *obs = NULL;
      CHECK_OK(cq_observer_create(&cfg, &obs));
      if (!obs) return;
      ref_observer ref = {cfg.bins, cfg.upsample_rate, INFINITY, -INFINITY,
                          calloc((size_t)cfg.bins, sizeof(float))};
      /* large batches make the cumulative sums big while interpolation makes the counts
       * fractional: the mix that forces one-at-a-time run sums */
      const int64_t n = s % 3 == 0 ? 30000 : 500 + 97 * s;
      float *x = malloc(sizeof(float) * (size_t)n);
      for (int b = 0; b < 8; b++) {
        const double scale = 1.0 + 0.37 * ((b * 5 + s) % 7), shift = 0.21 * ((b + s) % 4);
        for (int64_t i = 0; i < n; i++) {
          double v = gaussian() * scale + shift;
          if (s % 4 == 1) v = exp(v);
          if (v == 0.0) v = 1e-3;
          x[i] = (float)v;
        }
        int64_t shape[1] = {n};
        CHECK_OK(cq_observer_update(obs, x, 1, shape));
        if (!ref_update(&ref, x, n)) break;
        int bins = 0;
        const float *hist = cq_histogram_observer_histogram(obs, &bins);
        float mn, mx;
        cq_observer_min_max(obs, &mn, &mx, 1);
        compared++;
        if (memcmp(hist, ref.hist, sizeof(float) * (size_t)bins) != 0 ||
            !same_f32(mn, ref.min_val) || !same_f32(mx, ref.max_val)) {
          if (mismatches++ < 5) {
            detail("reference: bins %d up %d stream %d batch %d differs", cfg.bins,
                   cfg.upsample_rate, s, b);
          }
        }
      }
      streams++;
      free(x);
      free(ref.hist);
      cq_observer_free(obs);
    }
  }
  printf("  naive reference: %d streams, %d histograms compared, %d differ\n", streams, compared,
         mismatches);
  CHECK_INT_EQ(mismatches, 0);
  CHECK(compared > 200);
}

/* --- direct checks ------------------------------------------------------------------------------ */

static cq_observer *make(int bins, int up) {
  cq_observer_config cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
  cfg.bins = bins;
  cfg.upsample_rate = up;
  cq_observer *obs = NULL;
  CHECK_OK(cq_observer_create(&cfg, &obs));
  return obs;
}

static void test_defaults_and_repr(void) {
  cq_observer_config cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
  CHECK_INT_EQ(cfg.bins, 2048);
  CHECK_INT_EQ(cfg.upsample_rate, 128);
  cq_observer *obs = make(2048, 128);
  if (!obs) return;
  char buf[128];
  cq_observer_repr(obs, buf, sizeof buf);
  CHECK_STR_EQ(buf, "HistogramObserver(min_val=inf, max_val=-inf)");
  int bins = 0;
  const float *h = cq_histogram_observer_histogram(obs, &bins);
  CHECK_INT_EQ(bins, 2048);
  CHECK(h[0] == 0.0f && h[2047] == 0.0f);
  cq_qparams qp;
  CHECK_OK(cq_observer_qparams(obs, &qp)); /* no data: PyTorch's (1.0, 0) with a warning */
  CHECK(qp.scale[0] == 1.0f && qp.zero_point[0] == 0);
  cq_qparams_release(&qp);
  float lo, hi;
  CHECK_STATUS(cq_histogram_observer_search(obs, &lo, &hi), CQ_ESTATE);
  const float x[3] = {-1.5f, 0.3f, 2.25f};
  int64_t shape[1] = {3};
  CHECK_OK(cq_observer_update(obs, x, 1, shape));
  cq_observer_repr(obs, buf, sizeof buf);
  CHECK_STR_EQ(buf, "HistogramObserver(min_val=-1.5, max_val=2.25)");
  cq_observer_free(obs);

  cq_observer_config mm = cq_observer_defaults(CQ_OBSERVER_MINMAX);
  cq_observer *other = NULL;
  CHECK_OK(cq_observer_create(&mm, &other));
  CHECK(cq_histogram_observer_histogram(other, NULL) == NULL);
  CHECK_STATUS(cq_histogram_observer_search(other, &lo, &hi), CQ_EINVAL);
  cq_observer_free(other);
}

/* One batch inside [trunc(min), trunc(max)]: every element is counted once. */
static void test_single_batch_counts(void) {
  cq_observer *obs = make(256, 128);
  if (!obs) return;
  float x[1000];
  for (int i = 0; i < 1000; i++) x[i] = (float)((i * 37) % 1000) / 100.0f - 3.0f; /* [-3, 6.99] */
  x[17] = 7.0f;
  int64_t shape[2] = {10, 100};
  CHECK_OK(cq_observer_update(obs, x, 2, shape));
  int bins;
  const float *h = cq_histogram_observer_histogram(obs, &bins);
  float total = 0;
  for (int b = 0; b < bins; b++) total += h[b];
  CHECK(total == 1000.0f);
  CHECK(h[0] > 0.0f && h[255] > 0.0f);
  cq_observer_free(obs);

  /* [-3.7, 5.2] is binned over [-3, 5]: the values outside are dropped */
  obs = make(2048, 128);
  if (!obs) return;
  const float y[5] = {-3.7f, -3.0f, 0.0f, 5.0f, 5.2f};
  int64_t s5[1] = {5};
  CHECK_OK(cq_observer_update(obs, y, 1, s5));
  h = cq_histogram_observer_histogram(obs, &bins);
  total = 0;
  for (int b = 0; b < bins; b++) total += h[b];
  CHECK(total == 3.0f);
  CHECK(h[0] == 1.0f && h[2047] == 1.0f && h[768] == 1.0f);
  float mn, mx;
  cq_observer_min_max(obs, &mn, &mx, 1);
  CHECK(mn == -3.7f && mx == 5.2f);
  cq_observer_free(obs);
}

static void test_reset_and_reuse(void) {
  cq_observer *a = make(512, 32), *b = make(512, 32);
  if (!a || !b) return;
  float x[400], y[400];
  for (int i = 0; i < 400; i++) {
    x[i] = (float)(gaussian() * 4.0);
    y[i] = (float)(gaussian() * 0.5 + 1.0);
  }
  int64_t shape[1] = {400};
  CHECK_OK(cq_observer_update(a, x, 1, shape));
  CHECK_OK(cq_observer_update(a, y, 1, shape));
  cq_observer_reset(a);
  CHECK(!cq_observer_has_data(a));
  float mn, mx;
  cq_observer_min_max(a, &mn, &mx, 1);
  CHECK(mn == INFINITY && mx == -INFINITY);
  int bins;
  const float *h = cq_histogram_observer_histogram(a, &bins);
  int nonzero = 0;
  for (int i = 0; i < bins; i++) nonzero += h[i] != 0.0f;
  CHECK_INT_EQ(nonzero, 0);
  CHECK_OK(cq_observer_update(a, y, 1, shape));
  CHECK_OK(cq_observer_update(b, y, 1, shape));
  const float *ha = cq_histogram_observer_histogram(a, &bins);
  const float *hb = cq_histogram_observer_histogram(b, NULL);
  CHECK(memcmp(ha, hb, sizeof(float) * (size_t)bins) == 0);
  cq_qparams qa, qb;
  CHECK_OK(cq_observer_qparams(a, &qa));
  CHECK_OK(cq_observer_qparams(b, &qb));
  CHECK_F32_BITS(qa.scale[0], qb.scale[0]);
  CHECK_INT_EQ(qa.zero_point[0], qb.zero_point[0]);
  cq_qparams_release(&qa);
  cq_qparams_release(&qb);
  cq_observer_free(a);
  cq_observer_free(b);
}

/* Empty and non-finite batches, and batches PyTorch raises on, leave the observer as it was. */
static void test_rejected_batches(void) {
  cq_observer *obs = make(2048, 128);
  if (!obs) return;
  const float x[4] = {-1.0f, 0.5f, 2.0f, 1.25f};
  int64_t s4[1] = {4}, s0[1] = {0};
  CHECK_OK(cq_observer_update(obs, x, 1, s4));
  int bins;
  float *saved = malloc(sizeof(float) * 2048);
  memcpy(saved, cq_histogram_observer_histogram(obs, &bins), sizeof(float) * 2048);
  CHECK_OK(cq_observer_update(obs, x, 1, s0));
  const float bad[3] = {1.0f, NAN, 2.0f};
  int64_t s3[1] = {3};
  CHECK_STATUS(cq_observer_update(obs, bad, 1, s3), CQ_EVALUE);
  const float huge[2] = {1.0f, 3e19f}; /* PyTorch's int() of the merged range overflows */
  int64_t s2[1] = {2};
  CHECK_STATUS(cq_observer_update(obs, huge, 1, s2), CQ_EVALUE);
  float mn, mx;
  cq_observer_min_max(obs, &mn, &mx, 1);
  CHECK(mn == -1.0f && mx == 2.0f);
  CHECK(memcmp(saved, cq_histogram_observer_histogram(obs, NULL), sizeof(float) * 2048) == 0);
  free(saved);
  cq_observer_free(obs);

  /* the same on the first batch: int(max) overflows int64 */
  obs = make(2048, 128);
  if (!obs) return;
  CHECK_STATUS(cq_observer_update(obs, huge, 1, s2), CQ_EVALUE);
  CHECK(strstr(cq_last_error(), "2^63") != NULL);
  CHECK(!cq_observer_has_data(obs));
  cq_observer_min_max(obs, &mn, &mx, 1);
  CHECK(mn == INFINITY && mx == -INFINITY);
  cq_observer_free(obs);

  /* a bin width that underflows to zero: PyTorch's int(inf) raises */
  obs = make(2048, 128);
  if (!obs) return;
  const float d1[2] = {0.0f, 1e-44f}, d2[2] = {0.0f, 1e-43f};
  CHECK_OK(cq_observer_update(obs, d1, 1, s2));
  CHECK_STATUS(cq_observer_update(obs, d2, 1, s2), CQ_EVALUE);
  cq_observer_min_max(obs, &mn, &mx, 1);
  CHECK(mn == 0.0f && mx == 1e-44f);
  cq_observer_free(obs);
}

/* Merges whose grid PyTorch could not allocate are computed all the same, without memory growth. */
static void test_large_downsample_rate(void) {
  cq_observer *obs = make(2048, 128);
  if (!obs) return;
  const float a[3] = {1.0f, 1.0000001f, 1.00000012f}, b[3] = {1.0f, 3.0f, 5.0f};
  int64_t s3[1] = {3};
  CHECK_OK(cq_observer_update(obs, a, 1, s3));
  CHECK_OK(cq_observer_update(obs, b, 1, s3));
  float mn, mx;
  cq_observer_min_max(obs, &mn, &mx, 1);
  CHECK(mn == 1.0f && mx >= 5.0f);
  int bins;
  const float *h = cq_histogram_observer_histogram(obs, &bins);
  double total = 0;
  for (int i = 0; i < bins; i++) total += h[i];
  CHECK(fabs(total - 6.0) < 1e-3);
  cq_qparams qp;
  CHECK_OK(cq_observer_qparams(obs, &qp));
  CHECK(qp.scale[0] > 0.0f);
  cq_qparams_release(&qp);
  cq_observer_free(obs);
}

static void test_allocation_failures(void) {
  cq_observer_config cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
  int failures = 0;
  for (long n = 0; n < 20; n++) {
    cq_observer *obs = NULL;
    cq_debug_fail_alloc_after(n);
    cq_status st = cq_observer_create(&cfg, &obs);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      CHECK(obs != NULL);
      cq_observer_free(obs);
      break;
    }
    CHECK_INT_EQ(st, CQ_ENOMEM);
    CHECK(obs == NULL);
    failures++;
  }
  CHECK(failures >= 2);
}

/* --- kernel sets and threads ------------------------------------------------------------------- */

static const cq_isa test_isas[3] = {CQ_ISA_SCALAR, CQ_ISA_AVX2, CQ_ISA_AVX512VNNI};

/* The observer's complete state after a stream, to compare runs bit for bit. */
typedef struct observed {
  cq_status status[8]; /* of each batch */
  char message[8][160];
  float min_val, max_val, search_min, search_max, scale;
  int32_t zero_point;
  float *hist;
  int bins;
} observed;

static void observe(const cq_observer_config *cfg, const float *x, int nbatches, int64_t per,
                    observed *out) {
  memset(out, 0, sizeof *out);
  cq_observer *obs = NULL;
  CHECK_OK(cq_observer_create(cfg, &obs));
  if (!obs) return;
  for (int b = 0; b < nbatches; b++) {
    int64_t shape[1] = {per};
    out->status[b] = cq_observer_update(obs, x + b * per, 1, shape);
    if (out->status[b] != CQ_OK) {
      snprintf(out->message[b], sizeof out->message[b], "%s", cq_last_error());
    }
  }
  cq_observer_min_max(obs, &out->min_val, &out->max_val, 1);
  const float *h = cq_histogram_observer_histogram(obs, &out->bins);
  out->hist = malloc(sizeof(float) * (size_t)out->bins);
  memcpy(out->hist, h, sizeof(float) * (size_t)out->bins);
  if (cq_observer_has_data(obs)) {
    cq_qparams qp;
    CHECK_OK(cq_histogram_observer_search(obs, &out->search_min, &out->search_max));
    CHECK_OK(cq_observer_qparams(obs, &qp));
    out->scale = qp.scale[0];
    out->zero_point = qp.zero_point[0];
    cq_qparams_release(&qp);
  }
  cq_observer_free(obs);
}

static int same_observed(const observed *a, const observed *b, int nbatches) {
  for (int i = 0; i < nbatches; i++) {
    if (a->status[i] != b->status[i] || strcmp(a->message[i], b->message[i]) != 0) return 0;
  }
  return a->bins == b->bins && same_f32(a->min_val, b->min_val) &&
         same_f32(a->max_val, b->max_val) && same_f32(a->search_min, b->search_min) &&
         same_f32(a->search_max, b->search_max) && same_f32(a->scale, b->scale) &&
         a->zero_point == b->zero_point &&
         memcmp(a->hist, b->hist, sizeof(float) * (size_t)a->bins) == 0;
}

/* Runs the stream under every kernel set and 1, 2 and 3 threads (with the automatic grain, and
 * with the smallest one) and compares each run with the scalar one-thread run. Returns the number
 * of runs that differ. */
static int compare_everywhere(const char *what, const cq_observer_config *cfg, const float *x,
                              int nbatches, int64_t per) {
  observed ref, got;
  setenv("CQ_ISA", "scalar", 1);
  CHECK_OK(cq_set_num_threads(1));
  observe(cfg, x, nbatches, per, &ref);
  int differ = 0;
  for (int i = 0; i < 3; i++) {
    if (!cq_isa_supported(test_isas[i])) continue;
    setenv("CQ_ISA", cq_isa_name(test_isas[i]), 1);
    for (int threads = 1; threads <= 3; threads++) {
      CHECK_OK(cq_set_num_threads(threads));
      for (int g = 0; g < 2; g++) {
        if (threads == 1 && g == 1) continue;
        cq_histogram_observer_set_grain(g ? 8 : 0);
        observe(cfg, x, nbatches, per, &got);
        if (!same_observed(&ref, &got, nbatches)) {
          differ++;
          detail("%s: kernels %s, %d threads, grain %s differ from scalar, 1 thread", what,
                 cq_isa_name(test_isas[i]), threads, g ? "8" : "auto");
        }
        free(got.hist);
      }
    }
  }
  free(ref.hist);
  cq_histogram_observer_set_grain(0);
  CHECK_OK(cq_set_num_threads(1));
  unsetenv("CQ_ISA");
  return differ;
}

/* Large batches (split among threads with the automatic grain too): ReLU'd activations with exact
 * zeros of both signs, and wide normal data that leaves elements outside the truncated bounds. */
static void test_large_batches_everywhere(void) {
  const int64_t per = 150001; /* an odd length: a partial last vector */
  const int nb = 4;
  float *x = malloc(sizeof(float) * (size_t)(per * nb));
  rng_state = 0x1234567887654321ULL;
  for (int64_t i = 0; i < per * nb; i++) {
    const double v = gaussian() * (1.0 + 0.2 * (double)(i / per));
    x[i] = v < 0.0 ? ((i & 1) ? 0.0f : -0.0f) : (float)v;
  }
  cq_observer_config cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
  CHECK_INT_EQ(compare_everywhere("relu stream", &cfg, x, nb, per), 0);
  for (int64_t i = 0; i < per * nb; i++) x[i] = (float)(gaussian() * 3.3 + 0.7);
  cfg.bins = 1000; /* not a power of two: the bracket's products round */
  cfg.upsample_rate = 16;
  CHECK_INT_EQ(compare_everywhere("normal stream", &cfg, x, nb, per), 0);
  free(x);
}

/* Elements on and next to every bin edge (lo + k (hi - lo) / bins and its neighbours), where the
 * vector kernels' division-free bracket must defer to the division. The batch holds the integral
 * bounds themselves, so histc bins [lo, hi] exactly; the result must equal a one-element-at-a-time
 * torch.histc as well. */
static void test_bin_edges(void) {
  const struct {
    float lo, hi;
    int bins;
  } cases[] = {{0.0f, 11.0f, 2048}, {-3.0f, 5.0f, 1000}, {-7.0f, 3.0f, 3}, {1.0f, 2.0f, 4096},
               {-100.0f, 100.0f, 777}, {0.0f, 1.0f, 262144}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const float lo = cases[c].lo, hi = cases[c].hi;
    const int bins = cases[c].bins;
    const int edges = bins > 4096 ? 4096 : bins;
    const int64_t n = 2 + (int64_t)edges * 5;
    float *x = malloc(sizeof(float) * (size_t)n);
    x[0] = lo;
    x[1] = hi;
    for (int k = 0; k < edges; k++) {
      const int kk = bins > 4096 ? (int)(((int64_t)k * 4093) % bins) : k;
      const float e = lo + (float)((double)(hi - lo) * kk / bins);
      x[2 + 5 * k] = e;
      x[3 + 5 * k] = nextafterf(e, -INFINITY);
      x[4 + 5 * k] = nextafterf(e, INFINITY);
      x[5 + 5 * k] = nextafterf(nextafterf(e, INFINITY), INFINITY);
      x[6 + 5 * k] = lo + (hi - lo) * ((float)kk / (float)bins);
    }
    for (int64_t i = 2; i < n; i++) { /* keep inside [lo, hi], away from the zeros' signs */
      if (x[i] < lo) x[i] = lo;
      if (x[i] > hi) x[i] = hi;
    }
    cq_observer_config cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
    cfg.bins = bins;
    char what[64];
    snprintf(what, sizeof what, "bin edges [%g, %g] / %d", lo, hi, bins);
    CHECK_MSG(compare_everywhere(what, &cfg, x, 1, n) == 0, "%s", what);
    float *want = malloc(sizeof(float) * (size_t)bins);
    ref_histc(x, n, bins, lo, hi, want);
    observed got;
    observe(&cfg, x, 1, n, &got);
    CHECK_MSG(got.hist && memcmp(got.hist, want, sizeof(float) * (size_t)bins) == 0,
              "%s: differs from the one-at-a-time histc", what);
    free(got.hist);
    free(want);
    free(x);
  }
}

/* NaN and infinities anywhere (in a vector, in the partial last vector, at the first element of a
 * thread's part): the batch is rejected with the message every observer gives, naming the first
 * one, and the observer keeps its state, under every kernel set and thread count. */
static void test_nonfinite_everywhere(void) {
  const int64_t per = 20001;
  /* the first element, inside a vector, the first element of the second of 2 or 3 parts (grain
   * 8), the partial last vector; a later NaN is not the one reported */
  const struct {
    int64_t at;
    float value;
  } cases[] = {{0, NAN}, {5, INFINITY}, {10000, -INFINITY}, {6664, NAN}, {20000, INFINITY},
               {19999, NAN}};
  float *x = malloc(sizeof(float) * (size_t)(3 * per));
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    rng_state = 0x5555 + c;
    for (int64_t i = 0; i < 3 * per; i++) x[i] = (float)gaussian();
    x[per + cases[c].at] = cases[c].value;
    if (cases[c].at < per - 1) x[per + per - 1] = NAN;
    cq_observer_config cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
    char what[64];
    snprintf(what, sizeof what, "%g at %lld", (double)cases[c].value, (long long)cases[c].at);
    CHECK_MSG(compare_everywhere(what, &cfg, x, 3, per) == 0, "%s", what);
    observed got;
    observe(&cfg, x, 3, per, &got);
    CHECK_INT_EQ(got.status[0], CQ_OK);
    CHECK_INT_EQ(got.status[1], CQ_EVALUE);
    CHECK_INT_EQ(got.status[2], CQ_OK);
    /* the message of the generic scan, as a MinMaxObserver gives it */
    cq_observer_config mm = cq_observer_defaults(CQ_OBSERVER_MINMAX);
    cq_observer *other = NULL;
    CHECK_OK(cq_observer_create(&mm, &other));
    int64_t shape[1] = {per};
    if (other) {
      CHECK_STATUS(cq_observer_update(other, x + per, 1, shape), CQ_EVALUE);
      CHECK_STR_EQ(got.message[1], cq_last_error());
      cq_observer_free(other);
    }
    free(got.hist);
  }
  /* the other kinds' scan (in cq_observer_update) splits large batches among the threads: the
   * first non-finite element is reported whichever part it is in */
  const int64_t big = 3 * 65536 + 5;
  float *y = calloc((size_t)big, sizeof(float));
  int64_t big_shape[1] = {big};
  char want[128];
  for (int threads = 1; threads <= 3 && y; threads++) {
    CHECK_OK(cq_set_num_threads(threads));
    for (int k = 0; k < 3; k++) {
      const int64_t at = k == 0 ? 1 : (k == 1 ? big / 2 + 3 : big - 1);
      for (int64_t i = 0; i < big; i++) y[i] = (float)(i % 97) * 0.5f;
      y[at] = k == 1 ? -INFINITY : NAN;
      y[big - 1] = NAN;
      cq_observer_config mm = cq_observer_defaults(CQ_OBSERVER_MINMAX);
      cq_observer *other = NULL;
      CHECK_OK(cq_observer_create(&mm, &other));
      if (!other) continue;
      CHECK_STATUS(cq_observer_update(other, y, 1, big_shape), CQ_EVALUE);
      snprintf(want, sizeof want, "element %lld is %s; observers need finite values",
               (long long)at, k == 1 ? "-Inf" : "NaN");
      CHECK_STR_EQ(cq_last_error(), want);
      CHECK(!cq_observer_has_data(other));
      y[at] = 1.0f;
      y[big - 1] = 2.0f;
      CHECK_OK(cq_observer_update(other, y, 1, big_shape));
      cq_observer_free(other);
    }
  }
  CHECK_OK(cq_set_num_threads(1));
  free(y);

  /* the rejected batch left the observer as it was: same as a stream without it */
  cq_observer_config cfg = cq_observer_defaults(CQ_OBSERVER_HISTOGRAM);
  rng_state = 0x77;
  for (int64_t i = 0; i < 3 * per; i++) x[i] = (float)gaussian();
  observed skip, rejected;
  memcpy(x + per, x + 2 * per, sizeof(float) * (size_t)per);
  observe(&cfg, x, 2, per, &skip); /* batches 0 and 2 */
  rng_state = 0x77;
  for (int64_t i = 0; i < 3 * per; i++) x[i] = (float)gaussian();
  x[per + 123] = NAN;
  CHECK_OK(cq_set_num_threads(2));
  cq_histogram_observer_set_grain(8);
  observe(&cfg, x, 3, per, &rejected);
  cq_histogram_observer_set_grain(0);
  CHECK_OK(cq_set_num_threads(1));
  CHECK(rejected.status[1] == CQ_EVALUE);
  CHECK(memcmp(skip.hist, rejected.hist, sizeof(float) * (size_t)skip.bins) == 0);
  CHECK(same_f32(skip.min_val, rejected.min_val) && same_f32(skip.max_val, rejected.max_val));
  free(skip.hist);
  free(rejected.hist);
  free(x);
}

/* Room for more threads' counters is made on the first batch that needs it; when that fails, the
 * batch is rejected and the observer keeps its state. */
static void test_thread_scratch_allocation(void) {
  CHECK_OK(cq_set_num_threads(2));
  cq_histogram_observer_set_grain(8);
  cq_observer *obs = make(2048, 128);
  float x[64];
  for (int i = 0; i < 64; i++) x[i] = (float)i * 0.25f - 3.0f;
  int64_t s7[1] = {7}, s64[1] = {64};
  if (obs) {
    CHECK_OK(cq_observer_update(obs, x, 1, s7)); /* too short to split: one part */
    cq_debug_fail_alloc_after(0);
    CHECK_STATUS(cq_observer_update(obs, x, 1, s64), CQ_ENOMEM);
    cq_debug_fail_alloc_after(-1);
    float mn, mx;
    cq_observer_min_max(obs, &mn, &mx, 1);
    CHECK(mn == -3.0f && mx == -1.5f);
    CHECK_OK(cq_observer_update(obs, x, 1, s64));
    cq_observer_min_max(obs, &mn, &mx, 1);
    CHECK(mn == -3.0f && mx >= 12.75f);
    cq_observer_free(obs);
  }
  cq_histogram_observer_set_grain(0);
  CHECK_OK(cq_set_num_threads(1));
}

/* The golden and reference checks once per kernel set the CPU can run (CQ_ISA selects it) and
 * thread count: one thread, then 2 (and for the golden cases 3) with the smallest grain, so that
 * every batch of at least 16 elements is split among the threads. */
static void test_kernel_paths(void) {
  for (int i = 0; i < 3; i++) {
    const char *name = cq_isa_name(test_isas[i]);
    if (!cq_isa_supported(test_isas[i])) {
      printf("kernels %s: skipped, %s\n", name, cq_isa_missing_reason(test_isas[i]));
      continue;
    }
    setenv("CQ_ISA", name, 1);
    for (int threads = 1; threads <= 3; threads++) {
      CHECK_OK(cq_set_num_threads(threads));
      cq_histogram_observer_set_grain(threads > 1 ? 8 : 0);
      printf("kernels %s, %d thread%s:\n", name, threads, threads > 1 ? "s" : "");
      if (threads < 3) test_against_reference();
      test_golden();
    }
  }
  cq_histogram_observer_set_grain(0);
  CHECK_OK(cq_set_num_threads(1));
  unsetenv("CQ_ISA");
}

int main(void) {
  cq_set_warning_handler(ignore_warning, NULL);
  test_defaults_and_repr();
  test_single_batch_counts();
  test_reset_and_reuse();
  test_rejected_batches();
  test_large_downsample_rate();
  test_allocation_failures();
  test_thread_scratch_allocation();
  test_kernel_paths();
  test_large_batches_everywhere();
  test_bin_edges();
  test_nonfinite_everywhere();
  return check_summary("test_histogram_observer");
}

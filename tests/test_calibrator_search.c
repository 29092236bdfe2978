/* The MSE and entropy calibrators' threshold searches (src/quant/observer_calibrator_search.c)
 * against a naive transcription of pytorch-quantization's loops that visits every bin for every
 * candidate (dense arrays, numpy's pairwise sum written out over the whole vector).
 *
 * The library skips the bins that cannot change the result; these checks hold it to the naive
 * search bit for bit (same winning index) on histograms the golden data does not cover: very
 * sparse ones, empty leading bins, a tail in an empty last bin, MSE grids whose error terms
 * overflow float32 (last edge far above 1e18, where empty bins matter), fewer centres than counts,
 * every start_bin/stride combination. Then the work budget: a 131072-bin histogram searched with
 * a fine stride must still answer, with a threshold among the configured candidates. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cquant/status.h"
#include "cquant/tensor.h"
#include "quant/observer_calibrator_search.h"
#include "support/check.h"

/* --- the naive searches ----------------------------------------------------------------------- */

static double naive_pairwise(const double *a, int64_t n) {
  if (n < 8) {
    double res = 0.0;
    for (int64_t i = 0; i < n; i++) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (int k = 0; k < 8; k++) r[k] = a[k];
    int64_t i;
    for (i = 8; i < n - n % 8; i += 8) {
      for (int k = 0; k < 8; k++) r[k] += a[i + k];
    }
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; i++) res += a[i];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  return naive_pairwise(a, n2) + naive_pairwise(a + n2, n - n2);
}

static double naive_np_sum(const double *a, int64_t n) {
  double res = 0.0;
  for (int64_t off = 0; off < n; off += 8192) {
    res += naive_pairwise(a + off, n - off < 8192 ? n - off : 8192);
  }
  return res;
}

static double naive_rel_entr(double x, double y) {
  if (isnan(x) || isnan(y)) return NAN;
  if (x > 0.0 && y > 0.0) return x * log(x / y);
  if (x == 0.0 && y >= 0.0) return 0.0;
  return INFINITY;
}

/* _compute_amax_entropy: for each candidate i, build P and Q over all i bins. */
static int64_t naive_entropy(const float *hist, int64_t n, int is_unsigned, int start, int stride) {
  if (n < 2) return -1;
  const int64_t nq = is_unsigned ? 256 : 128;
  int64_t *bins = malloc(sizeof(int64_t) * (size_t)n);
  double *q = malloc(sizeof(double) * (size_t)n), *vec = malloc(sizeof(double) * (size_t)n);
  double gsum[256];
  int64_t gcount[256];
  for (int64_t j = 0; j < n; j++) bins[j] = (int64_t)hist[j];
  bins[0] = bins[1];
  int64_t total = 0;
  for (int64_t j = 0; j < n; j++) total += bins[j];
  int64_t best_i = -1;
  double best = INFINITY;
  for (int64_t i = start; i <= n; i += stride) {
    for (int k = 0; k < nq; k++) gsum[k] = 0.0, gcount[k] = 0;
    int64_t head = 0;
    for (int64_t j = 0; j < i; j++) {
      const int64_t k = j * nq / i;
      head += bins[j];
      if (bins[j] != 0) gsum[k] += (double)bins[j], gcount[k]++;
    }
    for (int k = 0; k < nq; k++) {
      if (gcount[k] != 0) gsum[k] /= (double)gcount[k];
    }
    for (int64_t j = 0; j < i; j++) {
      q[j] = bins[j] != 0 ? gsum[j * nq / i] : 0.0;
    }
    const double q_total = naive_np_sum(q, i);
    for (int64_t j = 0; j < i; j++) {
      const int64_t p = j == i - 1 ? bins[j] + total - head : bins[j];
      vec[j] = naive_rel_entr((double)p / (double)total, q[j] / q_total);
    }
    double d = naive_np_sum(vec, i);
    if (isnan(d)) d = INFINITY;
    if (best_i < 0 || d <= best) best = d, best_i = i;
  }
  free(bins);
  free(q);
  free(vec);
  return best_i;
}

/* _compute_amax_mse: every bin's float32 error term, added in order in double. */
static int64_t naive_mse(const float *centers, int64_t nc, const float *hist, int64_t nbins,
                         int is_unsigned, int start, int stride) {
  const int64_t m = nc < nbins ? nc : nbins;
  const float bound = is_unsigned ? 255.0f : 127.0f, lower = is_unsigned ? 0.0f : -127.0f;
  int64_t best_i = -1;
  double best = INFINITY;
  for (int64_t i = start; i < nc; i += stride) {
    const float a = centers[i], scale = bound / a;
    double err = 0.0;
    for (int64_t j = 0; j < m; j++) {
      float fq = 0.0f;
      if (!(a <= 1.0f / 16777216.0f)) {
        float q = rintf(centers[j] * scale);
        q = q < lower ? lower : q > bound ? bound : q;
        fq = q / scale;
      }
      const float d = fq - centers[j];
      const float d2 = d * d;
      err += (double)(d2 * (float)(int64_t)hist[j]);
    }
    if (isnan(err)) err = INFINITY;
    if (best_i < 0 || err < best) best = err, best_i = i;
  }
  return best_i;
}

/* --- histograms ------------------------------------------------------------------------------- */

static uint64_t rng_state;
static uint32_t rnd(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(rng_state >> 33);
}

/* Shapes: 0 dense noise, 1 a bump, 2 a few isolated bins, 3 only bins 0 and 1, 4 a bump plus a
 * far outlier, 5 empty except the last bin. */
static void fill_hist(float *h, int64_t n, int shape) {
  memset(h, 0, sizeof(float) * (size_t)n);
  switch (shape) {
    case 0:
      for (int64_t j = 0; j < n; j++) h[j] = (float)(rnd() % 40);
      break;
    case 1:
      for (int64_t j = 0; j < n; j++) {
        const double z = ((double)j - (double)n / 5.0) / ((double)n / 12.0);
        h[j] = (float)floor(900.0 * exp(-z * z / 2.0) + (rnd() % 3));
      }
      break;
    case 2:
      for (int k = 0; k < 9; k++) h[rnd() % (uint32_t)n] += (float)(1 + rnd() % 5);
      break;
    case 3:
      h[0] = 7.0f;
      h[1] = 3.0f;
      break;
    case 4:
      for (int64_t j = 0; j < n / 8; j++) h[j] = (float)(50 + rnd() % 50);
      h[n - 2] = 1.0f;
      break;
    default:
      h[n - 1] = 5.0f;
      break;
  }
}

static void check_entropy_against_naive(void) {
  static const int64_t sizes[] = {2, 3, 9, 130, 300, 700};
  static const int starts[][2] = {{128, 1}, {1, 1}, {1, 3}, {2, 7}, {200, 2}};
  int compared = 0;
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    const int64_t n = sizes[s];
    float *h = malloc(sizeof(float) * (size_t)n);
    for (int shape = 0; shape < 6; shape++) {
      fill_hist(h, n, shape);
      for (size_t c = 0; c < sizeof starts / sizeof starts[0]; c++) {
        if (starts[c][0] > n) continue;
        for (int u = 0; u < 2; u++) {
          int64_t got = -1;
          CHECK_OK(cq_calibrator_entropy_search(h, n, u, starts[c][0], starts[c][1], &got));
          const int64_t want = naive_entropy(h, n, u, starts[c][0], starts[c][1]);
          CHECK_MSG(got == want, "entropy n=%lld shape %d start %d stride %d unsigned %d: %lld, "
                    "naive %lld", (long long)n, shape, starts[c][0], starts[c][1], u,
                    (long long)got, (long long)want);
          compared++;
        }
      }
    }
    free(h);
  }
  printf("entropy: %d searches equal to the naive loop\n", compared);
}

static void check_mse_against_naive(void) {
  static const int64_t sizes[] = {1, 2, 129, 517};
  /* bin widths: ordinary, sub-epsilon (every fq is 0), and grids past 1e18 where some or all
   * error terms overflow float32 */
  static const float widths[] = {1e-3f, 1e-10f, 3e15f, 2e16f, 4e17f, 1e25f, 1e34f};
  static const int starts[][2] = {{128, 1}, {0, 1}, {1, 3}, {5, 64}};
  int compared = 0;
  for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
    const int64_t n = sizes[s];
    float *h = malloc(sizeof(float) * (size_t)(n + 1));
    float *centers = malloc(sizeof(float) * (size_t)(n + 1));
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
      for (int64_t j = 0; j <= n; j++) centers[j] = ((float)j + 0.5f) * widths[w];
      const float last_edge = (float)n * widths[w];
      for (int shape = 0; shape < 6; shape++) {
        fill_hist(h, n + 1, shape);
        for (size_t c = 0; c < sizeof starts / sizeof starts[0]; c++) {
          for (int extra = 0; extra < 2; extra++) { /* ncenters == nbins, or one more */
            const int64_t nc = n + extra;
            if (starts[c][0] >= nc) continue;
            for (int u = 0; u < 2; u++) {
              int64_t got = -1;
              CHECK_OK(cq_calibrator_mse_search(centers, nc, h, n, last_edge, u, starts[c][0],
                                                starts[c][1], &got));
              const int64_t want = naive_mse(centers, nc, h, n, u, starts[c][0], starts[c][1]);
              CHECK_MSG(got == want, "mse n=%lld width %g shape %d start %d stride %d: %lld, "
                        "naive %lld", (long long)n, (double)widths[w], shape, starts[c][0],
                        starts[c][1], (long long)got, (long long)want);
              compared++;
            }
          }
        }
      }
    }
    free(h);
    free(centers);
  }
  printf("mse: %d searches equal to the naive loop\n", compared);
}

/* No candidate at or above start_bin: CQ_ESTATE with a message. */
static void check_no_candidate(void) {
  float h[4] = {1, 2, 3, 4}, centers[4] = {0.5f, 1.5f, 2.5f, 3.5f};
  int64_t best = -1;
  CHECK_STATUS(cq_calibrator_mse_search(centers, 4, h, 4, 4.0f, 1, 4, 1, &best), CQ_ESTATE);
  CHECK(strstr(cq_last_error(), "start_bin 4") != NULL);
  CHECK_STATUS(cq_calibrator_entropy_search(h, 4, 1, 5, 1, &best), CQ_ESTATE);
  CHECK(strstr(cq_last_error(), "start_bin 5") != NULL);
}

/* A histogram far beyond the budget (131072 dense bins at stride 5: 1.7e9 entropy terms, 3.4e9
 * MSE terms) still answers, with one of the configured candidates. */
static void check_budget(void) {
  const int64_t n = 131072;
  float *h = malloc(sizeof(float) * (size_t)n), *centers = malloc(sizeof(float) * (size_t)n);
  CHECK(h && centers);
  if (!h || !centers) goto done;
  fill_hist(h, n, 0);
  for (int64_t j = 0; j < n; j++) centers[j] = ((float)j + 0.5f) * 1e-3f;
  const int start = 3, stride = 5;
  int64_t a = -1;
  CHECK_OK(cq_calibrator_entropy_search(h, n, 0, start, stride, &a));
  CHECK(a >= start && a <= n && (a - start) % stride == 0);
  a = -1;
  CHECK_OK(cq_calibrator_mse_search(centers, n, h, n, (float)n * 1e-3f, 0, start, stride, &a));
  CHECK(a >= start && a < n && (a - start) % stride == 0);
  /* under the budget the dense search is exact (a bump over 2048 bins, stride 1) */
  fill_hist(h, 2048, 1);
  int64_t got = -1;
  CHECK_OK(cq_calibrator_entropy_search(h, 2048, 1, 128, 1, &got));
  CHECK_INT_EQ(got, naive_entropy(h, 2048, 1, 128, 1));
done:
  free(h);
  free(centers);
}

/* Scratch allocation failures are CQ_ENOMEM and leak nothing. */
static void check_alloc_failures(void) {
  float h[300], centers[300];
  fill_hist(h, 300, 1);
  for (int j = 0; j < 300; j++) centers[j] = (float)j + 0.5f;
  for (long k = 0; k < 6; k++) {
    int64_t best = -1;
    cq_debug_fail_alloc_after(k);
    cq_status se = cq_calibrator_entropy_search(h, 300, 1, 128, 1, &best);
    cq_debug_fail_alloc_after(k);
    cq_status sm = cq_calibrator_mse_search(centers, 300, h, 300, 300.0f, 1, 128, 1, &best);
    cq_debug_fail_alloc_after(-1);
    CHECK(se == CQ_OK || se == CQ_ENOMEM);
    CHECK(sm == CQ_OK || sm == CQ_ENOMEM);
    if (k == 0) CHECK(se == CQ_ENOMEM && sm == CQ_ENOMEM);
  }
}

int main(void) {
  rng_state = 20240613u;
  check_entropy_against_naive();
  check_mse_against_naive();
  check_no_candidate();
  check_budget();
  check_alloc_failures();
  return check_summary("test_calibrator_search");
}

/* The MSE and entropy calibrators' threshold searches (pytorch-quantization's _compute_amax_mse and
 * _compute_amax_entropy; the arithmetic each candidate follows is described at the top of
 * observer_calibrators.c).
 *
 * Both searches try every candidate threshold against the whole histogram, so written as the
 * reference writes them they cost O(bins^2 / stride), and a histogram grows up to 2^24 bins when a
 * later batch is much wider than the first. Two things keep them bounded:
 *
 * 1. Work that cannot change the result is skipped, so results stay bit for bit the reference's:
 *    - MSE: an empty bin adds +0 to the error unless its squared error overflows float32, and any
 *      overflowing term (empty or not) makes the total +inf or NaN, which counts as +inf. So when
 *      no term can overflow (last edge <= 1e18) only non-empty bins are visited; otherwise every
 *      bin is, the search stops at the first non-finite term, and a candidate whose last bin
 *      already overflows is +inf without a visit.
 *    - Entropy: P and Q are zero outside the non-empty bins (and P's last element, which holds the
 *      tail), rel_entr(0, q) is 0, and adding +0 leaves a floating-point sum unchanged (no partial
 *      sum here is -0). So each candidate visits the non-empty bins only: the quantized bins are
 *      runs of consecutive non-empty bins, and numpy's pairwise sums are replayed over the same
 *      tree shape with the all-zero subtrees left out. A tail landing in an empty last bin makes
 *      rel_entr(p > 0, 0) = +inf, and the divergence +inf, directly.
 *
 * 2. A work budget. When the terms the search would still evaluate (counted per candidate in
 *    advance: MSE bins visited, entropy non-empty bins) exceed CQ_CALIB_MSE_BUDGET or
 *    CQ_CALIB_ENTROPY_BUDGET, the stride becomes stride * k, k >= 2 growing until the search fits;
 *    the candidates are then a subset of the configured ones, starting at start_bin. This is the
 *    one place where cquant can pick another threshold than the reference: only for histograms
 *    with many thousands of non-empty bins searched at a fine stride (every golden case in
 *    tests/data/golden/calibrators, the largest 39833 bins, is within budget and exact). */
#include "quant/observer_calibrator_search.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "core/alloc.h"

/* Largest last edge for which no MSE error term can overflow float32 (|error| <= 2 * edge). */
#define MSE_SPARSE_MAX_EDGE 1e18f
/* fake_tensor_quant treats amax at or below this as zero. */
#define CALIB_AMAX_EPSILON (1.0f / 16777216.0f)
/* numpy reduces in buffers of this many elements, pairwise inside each. */
#define NUMPY_BUFSIZE 8192
/* numpy's pairwise summation: a leaf below this length is summed with 8 accumulators. */
#define NUMPY_PW_BLOCKSIZE 128

/* --- the budget ------------------------------------------------------------------------------- */

/* The terms a search evaluates for candidates first, first + step, ... below end; may stop adding
 * once past limit. */
typedef int64_t (*search_cost_fn)(const void *ctx, int64_t first, int64_t end, int64_t step,
                                  int64_t limit);

/* The stride the search runs with: `stride` when the cost fits the budget, else the smallest
 * stride * k in the sequence k = total/budget + 1, then k + k/8 + 1, ... that fits (or that leaves
 * start_bin as the only candidate). */
static int64_t bounded_stride(search_cost_fn cost, const void *ctx, int64_t first, int64_t end,
                              int64_t stride, int64_t budget) {
  const int64_t total = cost(ctx, first, end, stride, INT64_MAX);
  if (total <= budget) return stride;
  const int64_t ncand = (end - first + stride - 1) / stride;
  int64_t k = total / budget + 1;
  while (k < ncand && cost(ctx, first, end, stride * k, budget) > budget) k += k / 8 + 1;
  if (k > ncand) k = ncand;
  return stride * k;
}

/* --- MSE -------------------------------------------------------------------------------------- */

typedef struct mse_search {
  const float *centers;
  int64_t m;        /* bins that enter the error: min(centres, counts) */
  int dense;        /* 1: empty bins can turn the error into NaN, so every bin is visited */
  int64_t nvisit;   /* bins visited per candidate */
  float *vc, *vn;   /* their centres and counts */
  float bound, lower;
} mse_search;

/* f32((fq(c) - c)^2) for the candidate threshold a, as fake_tensor_quant computes fq. */
static float mse_sq_error(float c, float a, float scale, float lower, float bound) {
  float fq = 0.0f;
  if (!(a <= CALIB_AMAX_EPSILON)) {
    float q = rintf(c * scale);
    if (q < lower) q = lower;
    if (q > bound) q = bound;
    fq = q / scale;
  }
  const float d = fq - c;
  return d * d;
}

/* 1 when the last bin's squared error at threshold a is not finite: then the error is +inf or
 * NaN whatever the other bins hold. Only meaningful for a dense search. */
static int mse_last_overflows(const mse_search *ms, float a) {
  const float d2 = mse_sq_error(ms->centers[ms->m - 1], a, ms->bound / a, ms->lower, ms->bound);
  return !(d2 <= FLT_MAX);
}

static int64_t mse_cost(const void *ctx, int64_t first, int64_t end, int64_t step, int64_t limit) {
  const mse_search *ms = ctx;
  int64_t sum = 0;
  for (int64_t i = first; i < end && sum <= limit; i += step) {
    sum += 1 + (ms->dense && mse_last_overflows(ms, ms->centers[i]) ? 0 : ms->nvisit);
  }
  return sum;
}

/* The error of candidate threshold a: the float32 terms added in order in double; +inf for an
 * error that overflowed to inf or NaN. */
static double mse_error(const mse_search *ms, float a) {
  if (ms->dense && mse_last_overflows(ms, a)) return INFINITY;
  const float scale = ms->bound / a;
  double err = 0.0;
  if (ms->dense) {
    for (int64_t u = 0; u < ms->nvisit; u++) {
      const float t = mse_sq_error(ms->vc[u], a, scale, ms->lower, ms->bound) * ms->vn[u];
      if (!(t <= FLT_MAX)) return INFINITY; /* the total would be +inf or NaN */
      err += (double)t;
    }
  } else {
    for (int64_t u = 0; u < ms->nvisit; u++) {
      err += (double)(mse_sq_error(ms->vc[u], a, scale, ms->lower, ms->bound) * ms->vn[u]);
    }
  }
  return isnan(err) ? INFINITY : err;
}

cq_status cq_calibrator_mse_search(const float *centers, int64_t ncenters, const float *hist,
                                   int64_t nbins, float last_edge, int is_unsigned, int start_bin,
                                   int stride, int64_t *best) {
  if (start_bin >= ncenters) {
    return cq_fail(CQ_ESTATE, "mse calibrator: no candidate bin at or above start_bin %d among "
                   "%lld", start_bin, (long long)ncenters);
  }
  mse_search ms;
  memset(&ms, 0, sizeof ms);
  ms.centers = centers;
  ms.m = ncenters < nbins ? ncenters : nbins;
  ms.dense = !(last_edge <= MSE_SPARSE_MAX_EDGE);
  ms.bound = is_unsigned ? 255.0f : 127.0f;
  ms.lower = is_unsigned ? 0.0f : -127.0f;
  for (int64_t j = 0; j < ms.m; j++) {
    if (ms.dense || (int64_t)hist[j] != 0) ms.nvisit++;
  }
  const size_t alloc = (size_t)(ms.nvisit > 0 ? ms.nvisit : 1);
  ms.vc = cq_malloc_for(sizeof(float) * alloc, "MSE calibrator centres");
  ms.vn = cq_malloc_for(sizeof(float) * alloc, "MSE calibrator counts");
  if (!ms.vc || !ms.vn) {
    cq_free(ms.vc);
    cq_free(ms.vn);
    return CQ_ENOMEM;
  }
  int64_t u = 0;
  for (int64_t j = 0; j < ms.m; j++) {
    const float count = (float)(int64_t)hist[j];
    if (ms.dense || count != 0.0f) {
      ms.vc[u] = centers[j];
      ms.vn[u] = count;
      u++;
    }
  }

  const int64_t step =
      bounded_stride(mse_cost, &ms, start_bin, ncenters, stride, CQ_CALIB_MSE_BUDGET);
  double best_err = INFINITY;
  int64_t best_i = -1;
  for (int64_t i = start_bin; i < ncenters; i += step) {
    const double err = mse_error(&ms, centers[i]);
    if (best_i < 0 || err < best_err) { /* the first minimum */
      best_err = err;
      best_i = i;
    }
  }
  cq_free(ms.vc);
  cq_free(ms.vn);
  *best = best_i;
  return CQ_OK;
}

/* --- entropy ---------------------------------------------------------------------------------- */

/* First t in [0, m) with pos[t] >= x, or m. */
static int64_t lower_bound(const int64_t *pos, int64_t m, int64_t x) {
  int64_t lo = 0, hi = m;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (pos[mid] < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* numpy's pairwise summation (pairwise_sum in numpy/core/src/umath/loops_utils.h) of the n
 * elements starting at index base of an array that is zero except val[t] at pos[t] (m of them,
 * increasing, all inside). numpy sums n < 8 elements in order; n <= 128 with 8 accumulators r[k] =
 * a[k], r[k] += a[i + k] for each full group of 8, combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)),
 * then the rest in order; larger n as the sum of its halves split at n/2 rounded down to a multiple
 * of 8. The same tree here: zeros only ever add +0, so leaving them out keeps every partial sum,
 * and an accumulator that starts at a zero a[k] is the same as one that starts at 0. */
static double sparse_pairwise_sum(const int64_t *pos, const double *val, int64_t m, int64_t base,
                                  int64_t n) {
  if (m == 0) return 0.0;
  if (m == 1) return val[0]; /* one value among zeros sums to itself, whatever the tree */
  if (n < 8) {
    double res = 0.0;
    for (int64_t t = 0; t < m; t++) res += val[t];
    return res;
  }
  if (n <= NUMPY_PW_BLOCKSIZE) {
    double r[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
    const int64_t main_end = base + n - n % 8;
    int64_t t = 0;
    for (; t < m && pos[t] < main_end; t++) r[(pos[t] - base) & 7] += val[t];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; t < m; t++) res += val[t];
    return res;
  }
  int64_t n2 = n / 2;
  n2 -= n2 % 8;
  const int64_t split = lower_bound(pos, m, base + n2);
  return sparse_pairwise_sum(pos, val, split, base, n2) +
         sparse_pairwise_sum(pos + split, val + split, m - split, base + n2, n - n2);
}

/* np.sum of a float64 array of length n that is zero except val[t] at pos[t]: pairwise within
 * buffers of NUMPY_BUFSIZE, buffers added in order (an all-zero buffer adds +0). */
static double sparse_numpy_sum(const int64_t *pos, const double *val, int64_t m, int64_t n) {
  double res = 0.0;
  int64_t t = 0;
  for (int64_t off = 0; off < n && t < m; off += NUMPY_BUFSIZE) {
    const int64_t len = n - off < NUMPY_BUFSIZE ? n - off : NUMPY_BUFSIZE;
    const int64_t u = t + lower_bound(pos + t, m - t, off + len);
    res += sparse_pairwise_sum(pos + t, val + t, u - t, off, len);
    t = u;
  }
  return res;
}

/* scipy.special.rel_entr. */
static double rel_entr(double x, double y) {
  if (isnan(x) || isnan(y)) return NAN;
  if (x > 0.0 && y > 0.0) return x * log(x / y);
  if (x == 0.0 && y >= 0.0) return 0.0;
  return INFINITY;
}

/* The histogram as _compute_amax_entropy sees it (integer counts, bins[0] replaced by bins[1]),
 * kept as its non-empty bins. */
typedef struct entropy_search {
  int64_t nnz;
  int64_t *pos;  /* the non-empty bins, increasing */
  int64_t *cnt;  /* their counts */
  double *q;     /* scratch: Q at each non-empty bin */
  double *vec;   /* scratch: the rel_entr terms */
  double *p;     /* count / total of each non-empty bin (P / sum(P) before the tail is added) */
  int64_t total; /* sum of all counts */
  double p_total;
  int64_t nq;    /* quantized bins: 128, or 256 when unsigned */
} entropy_search;

/* One per candidate (its setup) plus one per non-empty bin below it. */
static int64_t entropy_cost(const void *ctx, int64_t first, int64_t end, int64_t step,
                            int64_t limit) {
  const entropy_search *es = ctx;
  int64_t sum = 0, below = 0;
  for (int64_t i = first; i < end && sum <= limit; i += step) {
    while (below < es->nnz && es->pos[below] < i) below++;
    sum += 1 + below;
  }
  return sum;
}

/* scipy.stats.entropy(P, Q) for candidate i (the first i bins, of which the first nzi are
 * non-empty); NaN when Q is all zero. */
static double entropy_divergence(entropy_search *es, int64_t i, int64_t nzi) {
  const int64_t *pos = es->pos, *cnt = es->cnt;
  /* Q: source bin j falls in quantized bin k = floor(j * nq / i), nondecreasing in j, so the
   * non-empty bins of one quantized bin are consecutive here (those below ceil((k + 1) * i / nq));
   * each gets the run's mean count. */
  int64_t head = 0;
  for (int64_t t = 0; t < nzi;) {
    const int64_t k = pos[t] * es->nq / i;
    const int64_t limit = ((k + 1) * i + es->nq - 1) / es->nq;
    double sum = 0.0;
    int64_t u = t;
    for (; u < nzi && pos[u] < limit; u++) {
      sum += (double)cnt[u];
      head += cnt[u];
    }
    const double mean = sum / (double)(u - t);
    for (; t < u; t++) es->q[t] = mean;
  }
  const double q_total = sparse_numpy_sum(pos, es->q, nzi, i);
  if (q_total == 0.0) return NAN; /* every Q / sum(Q) is 0 / 0 */
  /* P = bins[:i] with the tail added to its last element; if that element is an empty bin, its
   * term is rel_entr(p > 0, 0) = +inf and every other term is finite. */
  const int64_t tail = es->total - head;
  const int ends_nonempty = pos[nzi - 1] == i - 1;
  if (tail != 0 && !ends_nonempty) return INFINITY;
  double q_prev = -1.0, y = 0.0;
  for (int64_t t = 0; t < nzi; t++) {
    if (es->q[t] != q_prev) { /* Q is constant along a run: one division per run */
      q_prev = es->q[t];
      y = q_prev / q_total;
    }
    const double x =
        t == nzi - 1 && ends_nonempty ? (double)(cnt[t] + tail) / es->p_total : es->p[t];
    es->vec[t] = rel_entr(x, y);
  }
  return sparse_numpy_sum(pos, es->vec, nzi, i);
}

static void entropy_search_free(entropy_search *es) {
  cq_free(es->pos);
  cq_free(es->cnt);
  cq_free(es->q);
  cq_free(es->vec);
  cq_free(es->p);
}

cq_status cq_calibrator_entropy_search(const float *hist, int64_t nbins, int is_unsigned,
                                       int start_bin, int stride, int64_t *best) {
  if (start_bin > nbins) {
    return cq_fail(CQ_ESTATE, "entropy calibrator: no candidate bin at or above start_bin %d "
                   "among %lld", start_bin, (long long)nbins);
  }
  entropy_search es;
  memset(&es, 0, sizeof es);
  es.nq = is_unsigned ? 256 : 128;
  /* bins[0] is replaced by bins[1] (nbins >= 2) */
#define ENTROPY_BIN(j) ((int64_t)hist[(j) == 0 ? 1 : (j)])
  for (int64_t j = 0; j < nbins; j++) {
    if (ENTROPY_BIN(j) != 0) es.nnz++;
  }
  const size_t alloc = (size_t)(es.nnz > 0 ? es.nnz : 1);
  es.pos = cq_malloc_for(sizeof(int64_t) * alloc, "entropy calibrator bin list");
  es.cnt = cq_malloc_for(sizeof(int64_t) * alloc, "entropy calibrator counts");
  es.q = cq_malloc_for(sizeof(double) * alloc, "entropy calibrator Q");
  es.vec = cq_malloc_for(sizeof(double) * alloc, "entropy calibrator terms");
  es.p = cq_malloc_for(sizeof(double) * alloc, "entropy calibrator P");
  if (!es.pos || !es.cnt || !es.q || !es.vec || !es.p) {
    entropy_search_free(&es);
    return CQ_ENOMEM;
  }
  int64_t t = 0;
  for (int64_t j = 0; j < nbins; j++) {
    const int64_t b = ENTROPY_BIN(j);
    if (b == 0) continue;
    es.pos[t] = j;
    es.cnt[t] = b;
    es.total += b;
    t++;
  }
#undef ENTROPY_BIN
  es.p_total = (double)es.total;
  for (t = 0; t < es.nnz; t++) es.p[t] = (double)es.cnt[t] / es.p_total;

  const int64_t step =
      bounded_stride(entropy_cost, &es, start_bin, nbins + 1, stride, CQ_CALIB_ENTROPY_BUDGET);
  /* the last minimum (numpy argmin over the reversed list); NaN counts as +inf, see
   * observer_calibrators.c */
  int64_t best_i = -1, nzi = 0;
  double best_d = INFINITY;
  for (int64_t i = start_bin; i <= nbins; i += step) {
    while (nzi < es.nnz && es.pos[nzi] < i) nzi++;
    double d = nzi > 0 ? entropy_divergence(&es, i, nzi) : NAN;
    if (isnan(d)) d = INFINITY;
    if (best_i < 0 || d <= best_d) {
      best_d = d;
      best_i = i;
    }
  }
  entropy_search_free(&es);
  *best = best_i;
  return CQ_OK;
}

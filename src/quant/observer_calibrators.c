/* TensorRT-style calibrators: the PERCENTILE, MSE and ENTROPY observer kinds.
 *
 * Reference: NVIDIA's pytorch-quantization (NVIDIA/TensorRT, tools/pytorch-quantization), class
 * HistogramCalibrator (pytorch_quantization/calib/histogram.py) with its defaults num_bins=2048,
 * skip_zeros=False, torch_hist=True, and its compute_amax(method) for "percentile", "mse" and
 * "entropy"; the MSE search quantizes with fake_tensor_quant (tensor_quant.py, the CPU "legacy"
 * path). torch-1.13-semantics.md section 7.2 summarises it. The golden data in
 * tests/data/golden/calibrators/ comes from an independent NumPy/torch re-implementation of that
 * source, tools/golden/gen_calibrators.py, run on Debian's PyTorch 1.13 CPU build.
 *
 * 1. Collection (every batch; memory is the histogram alone, whatever the number of batches).
 *    a = |x| (float32). A batch contains a negative value when some x < 0 (-0.0 is not negative).
 *    - First batch: M = max(a); counts = torch.histc(a, bins, min=0, max=M); the bin edges are
 *      torch.linspace(0, M, bins + 1).
 *    - Later batch with M = max(a) above the last edge: width = edges[1] - edges[0] (float32);
 *      n = ceil(f32(M / width)); edges = torch.arange(0, f32(M + width), width), whose length is
 *      ceil(f64(M + width) / width) (usually n + 1, one more or less when M / width is within a
 *      rounding error of an integer); counts = histc(a, n, 0, edges[-1]) + old counts in the first
 *      bins. Bins never get coarser, so a much wider later batch makes the histogram long (it is
 *      limited to 2^24 bins: CQ_EUNSUPPORTED beyond).
 *    - Later batch within the last edge: counts += histc(a, len(counts), 0, edges[-1]).
 *    torch.histc over [0, hi] with B bins counts every v in [e0, eB] (e0, eB = first and last
 *    element of torch.linspace(0, hi, B + 1)) into bin trunc(f32(f32(v / eB) * B)), clamped to
 *    B - 1 (dividing first: multiplying first differs when B is not a power of two);
 *    counts are float32 incremented by 1 (exact below 2^24 per bin and batch). When hi == 0 (all
 *    of a batch is 0) histc bins over [-1, 1] instead, as torch does.
 *    Edges are float32 and reproduce torch 1.13's CPU kernels bit for bit as built by Debian (AVX2
 *    dispatch: 8-lane vectors in blocks of 16, FMA-contracted second half of linspace, one thread).
 *    Another torch build (AVX-512, CUDA) can differ in the last bit of an edge.
 *    Deviations where the reference raises instead: if every value seen so far was 0 (bin width 0),
 *    a batch with a larger max starts a fresh grid as a first batch would, and the earlier counts
 *    go to bin 0 (the reference divides by the zero width and fails); a grid never shrinks (the
 *    reference fails if rounding made n smaller than the current length); a threshold index past
 *    the last edge takes the last edge; a later batch whose max + bin width overflows float32
 *    (|x| within a bin width of FLT_MAX) is rejected with CQ_EVALUE (torch.arange refuses the
 *    infinite end).
 *
 * 2. amax = compute_amax(method), on the counts truncated to integers (int64 here; the reference's
 *    int32 would wrap at 2^31 in one bin):
 *    - percentile (config.percentile, default 99.99): cdf = cumsum(count / total) in double;
 *      idx = first index with cdf[idx] >= percentile / 100 (numpy searchsorted, side left), or the
 *      number of bins if none; amax = edges[idx].
 *    - mse (config.start_bin, default 128; config.stride, default 1): centres
 *      c_j = f32(f32(e_j + e_j+1) / 2); for each candidate i = start_bin, start_bin + stride, ...
 *      below the number of centres: s = f32(bound / c_i), fq(c) = f32(clamp(rint(f32(c * s)),
 *      lower, bound) / s) (every fq is 0 when c_i <= 2^-24), error = sum over bins of
 *      f32(f32((fq(c_j) - c_j)^2) * count_j); the first minimum wins, an error that overflowed to
 *      NaN (data beyond ~1e19) counts as +inf (the reference's argmin would pick it); amax = c_i. The reference takes a float32 mean (on CUDA); cquant adds the float32 terms in
 *      order in double, so where the error curve is flat the two can pick neighbouring bins.
 *    - entropy (start_bin, stride as above): bins = counts with bins[0] replaced by bins[1];
 *      nq = 128 (256 when unsigned); for i = start_bin, start_bin + stride, ..., len(bins)
 *      inclusive: source bin j < i falls in quantized bin floor(j * nq / i) (numpy digitize over
 *      linspace(0, i, nq + 1), exact because nq is a power of two); Q spreads each quantized bin's
 *      count evenly over its non-empty source bins; P = bins[:i] with sum(bins[i:]) added to its
 *      last element; divergence = scipy.stats.entropy(P, Q) = sum rel_entr(P / sum P, Q / sum Q),
 *      with numpy's blocked pairwise summation and libm log, so values match bit for bit. The
 *      pick is the last minimum (numpy's argmin over the reversed list). Deviation from the
 *      reference: a NaN divergence (Q all zero, when the first i bins are empty) counts as +inf;
 *      the reference's argmin picks NaN and then clips below every observed value. amax = edges[i].
 *    num_bits is 8. "unsigned" (for mse: bound 255, lower 0, else bound 127, lower -127; for
 *    entropy: nq) is 1 when no negative value has been observed since creation or reset.
 *
 * 3. qparams: the clipping range is [0, amax] when no negative value was observed, else
 *    [-amax, amax]; it goes through PyTorch's rule (cq_observer_qparams_from_range) with the
 *    observer's dtype, qscheme, quant range and eps (defaults quint8, per_tensor_affine). So
 *    [0, amax] gives scale amax/255 and zero point 0, and [-amax, amax] gives scale 2*amax/255 and
 *    zero point 127 or 128 depending on the last bit of amax.
 *
 * The observer's min_val/max_val are the real running min and max, as in MinMaxObserver. No
 * PyTorch class exists to copy a repr from; it prints as
 * "HistogramCalibrator(method=percentile, percentile=99.99, num_bins=2048, min_val=-1.5,
 * max_val=2.25)" (mse/entropy show "start_bin=128, stride=1" instead of the percentile; num_bins is
 * the current histogram length; floats as Python prints them).
 * Cost per qparams call: percentile O(bins); mse and entropy visit, per candidate, only the bins
 * that can change the result (observer_calibrator_search.c), and a work budget caps the whole
 * search (CQ_CALIB_MSE_BUDGET / CQ_CALIB_ENTROPY_BUDGET terms, well under a second): past it the
 * stride is raised to a multiple of the configured one, the only case where the pick can differ
 * from the reference's (never for the golden cases). */
#include <math.h>
#include <string.h>

#include "core/alloc.h"
#include "core/pyformat.h"
#include "quant/observer_calibrator_search.h"
#include "quant/observer_calibrators.h"
#include "quant/observer_impl.h"

/* Longest histogram a calibrator grows to (same limit as config.bins). */
#define CALIB_MAX_BINS ((int64_t)1 << 24)

/* --- torch 1.13 float32 range factories (CPU, AVX2 build, one thread) ------------------------- */

/* Element j of torch.linspace(0, end, n), n >= 2. The kernel writes blocks of 16 with two 8-lane
 * vectors, each lane = base + k * step (not fused); a vector's base is step * idx in the first
 * half and fma(-step, n - idx - 1, end) in the second; the remaining n % 16 elements use the
 * scalar formulas (step * j, fma(-step, n - j - 1, end)). */
static float linspace0_edge(float end, int64_t n, int64_t j) {
  const float step = end / (float)(n - 1);
  const int64_t half = n / 2;
  if (j < n - n % 16) {
    const int64_t idx = j & ~(int64_t)7;
    const float base = idx < half ? step * (float)idx : fmaf(-step, (float)(n - idx - 1), end);
    const float lane = (float)(j & 7) * step;
    return base + lane;
  }
  return j < half ? step * (float)j : fmaf(-step, (float)(n - j - 1), end);
}

/* Last element of torch.linspace(start, end, n): end itself unless it is lane 7 of a vector. */
static float linspace_last(float start, float end, int64_t n) {
  if (n % 16 != 0) return end;
  const float step = (end - start) / (float)(n - 1);
  const float base = fmaf(-step, 7.0f, end);
  const float lane = 7.0f * step;
  return base + lane;
}

/* Element j of torch.arange(0, end, width) with n elements (float32 output, double arithmetic):
 * vector lanes are f32(f32(width * idx) + k * width), the scalar tail f32(width * j). */
static float arange0_edge(float width, int64_t n, int64_t j) {
  const double w = width;
  if (j < n - n % 16) {
    const int64_t idx = j & ~(int64_t)7;
    const float base = (float)(w * (double)idx);
    return (float)((double)base + (double)(j & 7) * w);
  }
  return (float)(w * (double)j);
}

/* --- state ------------------------------------------------------------------------------------ */

/* The bin edges, kept as the call that made them rather than as an array. */
typedef struct calib_grid {
  int is_arange;  /* 0: linspace(0, param, count); 1: arange(0, ..., param) with count elements */
  float param;    /* linspace end or arange step */
  int64_t count;  /* number of edges (>= 2) */
} calib_grid;

typedef struct calib_state {
  float *hist; /* float32 counts like torch.histc's; NULL before data */
  int64_t nbins;
  calib_grid grid;
  int saw_negative;
} calib_state;

static float grid_edge(const calib_grid *g, int64_t j) {
  return g->is_arange ? arange0_edge(g->param, g->count, j) : linspace0_edge(g->param, g->count, j);
}

static float grid_last_edge(const calib_grid *g) { return grid_edge(g, g->count - 1); }

static const char *method_name(cq_observer_kind kind) {
  switch (kind) {
    case CQ_OBSERVER_PERCENTILE: return "percentile";
    case CQ_OBSERVER_MSE: return "mse";
    default: return "entropy";
  }
}

/* --- collection ------------------------------------------------------------------------------- */

/* Adds torch.histc(|x|, bins, min=0, max=hi) to h. Values outside [e0, eB] are dropped, as torch
 * does (after a grid extension eB can round to just below the batch's max). hi == 0 only when
 * every |x| is 0. */
static void histc_abs(const float *x, int64_t n, int64_t bins, float hi, float *h) {
  float lo = 0.0f;
  if (hi == 0.0f) { /* histc's min == max rule */
    lo = -1.0f;
    hi = 1.0f;
  }
  const float e0 = lo;
  const float eb = linspace_last(lo, hi, bins + 1);
  const float fbins = (float)bins;
  const float span = eb - e0;
  for (int64_t i = 0; i < n; i++) {
    const float v = fabsf(x[i]);
    if (v < e0 || v > eb) continue;
    int64_t pos = (int64_t)((v - e0) / span * fbins);
    if (pos == bins) pos = bins - 1;
    h[pos] += 1.0f;
  }
}

static cq_status calib_update(cq_observer *obs, const float *x, int ndim, const int64_t *shape,
                              int64_t n) {
  (void)ndim;
  (void)shape;
  calib_state *s = obs->state;
  float bmin = x[0], bmax = x[0], amax = fabsf(x[0]);
  for (int64_t i = 1; i < n; i++) {
    if (x[i] < bmin) bmin = x[i];
    if (x[i] > bmax) bmax = x[i];
    const float a = fabsf(x[i]);
    if (a > amax) amax = a;
  }

  calib_grid grid;
  int64_t nb;
  float hist_hi;
  int merge = 0, fold = 0;
  int first = s->hist == NULL;
  if (!first) {
    const float last = grid_last_edge(&s->grid);
    if (amax <= last) {
      grid = s->grid;
      nb = s->nbins;
      hist_hi = last;
      merge = 1;
    } else {
      const float width = grid_edge(&s->grid, 1) - grid_edge(&s->grid, 0);
      if (!(width > 0.0f)) {
        first = 1; /* everything so far was 0: start a grid, the old counts go to bin 0 */
        fold = 1;
      } else {
        const float ratio = amax / width;
        if (!(ratio <= (float)CALIB_MAX_BINS)) {
          return cq_fail(CQ_EUNSUPPORTED,
                         "%s calibrator: max |x| = %g needs %g histogram bins of width %g "
                         "(limit %lld); the bins are set by the first batch's range",
                         method_name(obs->cfg.kind), (double)amax, ceil((double)ratio),
                         (double)width, (long long)CALIB_MAX_BINS);
        }
        const float end = amax + width;
        if (isinf(end)) {
          return cq_fail(CQ_EVALUE, "%s calibrator: max |x| = %g is too large for the histogram",
                         method_name(obs->cfg.kind), (double)amax);
        }
        nb = (int64_t)ceilf(ratio);
        if (nb < s->nbins) nb = s->nbins;
        grid.is_arange = 1;
        grid.param = width;
        grid.count = (int64_t)ceil((double)end / (double)width);
        hist_hi = grid_last_edge(&grid);
        merge = 1;
      }
    }
  }
  if (first) {
    nb = obs->cfg.bins;
    grid.is_arange = 0;
    grid.param = amax;
    grid.count = nb + 1;
    hist_hi = amax;
  }

  float *h = cq_calloc_for((size_t)nb, sizeof(float), "calibrator histogram");
  if (!h) return CQ_ENOMEM;
  histc_abs(x, n, nb, hist_hi, h);
  if (merge) {
    for (int64_t j = 0; j < s->nbins; j++) h[j] += s->hist[j];
  } else if (fold) {
    float total = 0.0f;
    for (int64_t j = 0; j < s->nbins; j++) total += s->hist[j];
    h[0] += total;
  }
  cq_free(s->hist);
  s->hist = h;
  s->nbins = nb;
  s->grid = grid;
  if (bmin < 0.0f) s->saw_negative = 1;
  if (bmin < obs->min_val) obs->min_val = bmin;
  if (bmax > obs->max_val) obs->max_val = bmax;
  return CQ_OK;
}

/* --- compute_amax ----------------------------------------------------------------------------- */

/* The edge at index idx, or the last edge when idx is past it. */
static float edge_at(const calib_state *s, int64_t idx) {
  if (idx > s->grid.count - 1) idx = s->grid.count - 1;
  return grid_edge(&s->grid, idx);
}

static float amax_percentile(const calib_state *s, double percentile) {
  int64_t total = 0;
  for (int64_t j = 0; j < s->nbins; j++) total += (int64_t)s->hist[j];
  const double target = percentile / 100.0;
  const double dtotal = (double)total;
  double cdf = 0.0;
  int64_t idx = s->nbins;
  for (int64_t j = 0; j < s->nbins; j++) {
    cdf += (double)(int64_t)s->hist[j] / dtotal;
    if (cdf >= target) {
      idx = j;
      break;
    }
  }
  return edge_at(s, idx);
}

static cq_status amax_mse(const calib_state *s, int is_unsigned, int start_bin, int stride,
                          float *amax) {
  const int64_t ncenters = s->grid.count - 1;
  float *centers = cq_malloc_for(sizeof(float) * (size_t)ncenters, "MSE calibrator centres");
  if (!centers) return CQ_ENOMEM;
  float prev = grid_edge(&s->grid, 0);
  for (int64_t j = 0; j < ncenters; j++) {
    const float next = grid_edge(&s->grid, j + 1);
    centers[j] = (prev + next) / 2.0f;
    prev = next;
  }
  int64_t best;
  cq_status st = cq_calibrator_mse_search(centers, ncenters, s->hist, s->nbins,
                                          grid_last_edge(&s->grid), is_unsigned, start_bin,
                                          stride, &best);
  if (st == CQ_OK) *amax = centers[best];
  cq_free(centers);
  return st;
}

static cq_status amax_entropy(const calib_state *s, int is_unsigned, int start_bin, int stride,
                              float *amax) {
  int64_t best;
  cq_status st =
      cq_calibrator_entropy_search(s->hist, s->nbins, is_unsigned, start_bin, stride, &best);
  if (st == CQ_OK) *amax = edge_at(s, best);
  return st;
}

int cq_observer_is_calibrator(const cq_observer *obs) {
  return obs->cfg.kind == CQ_OBSERVER_PERCENTILE || obs->cfg.kind == CQ_OBSERVER_MSE ||
         obs->cfg.kind == CQ_OBSERVER_ENTROPY;
}

cq_status cq_calibrator_amax(const cq_observer *obs, float *amax) {
  if (!cq_observer_is_calibrator(obs)) {
    return cq_fail(CQ_EINVAL, "%s is not a histogram calibrator",
                   cq_observer_kind_name(obs->cfg.kind));
  }
  const calib_state *s = obs->state;
  if (!s->hist) {
    return cq_fail(CQ_ESTATE, "%s calibrator has not observed any data",
                   method_name(obs->cfg.kind));
  }
  const int is_unsigned = !s->saw_negative;
  switch (obs->cfg.kind) {
    case CQ_OBSERVER_PERCENTILE:
      *amax = amax_percentile(s, obs->cfg.percentile);
      return CQ_OK;
    case CQ_OBSERVER_MSE:
      return amax_mse(s, is_unsigned, obs->cfg.start_bin, obs->cfg.stride, amax);
    default:
      return amax_entropy(s, is_unsigned, obs->cfg.start_bin, obs->cfg.stride, amax);
  }
}

cq_status cq_calibrator_histogram(const cq_observer *obs, const float **counts, int64_t *nbins,
                                  float *last_edge) {
  if (!cq_observer_is_calibrator(obs)) {
    return cq_fail(CQ_EINVAL, "%s is not a histogram calibrator",
                   cq_observer_kind_name(obs->cfg.kind));
  }
  const calib_state *s = obs->state;
  *counts = s->hist;
  *nbins = s->hist ? s->nbins : 0;
  *last_edge = s->hist ? grid_last_edge(&s->grid) : 0.0f;
  return CQ_OK;
}

/* --- vtable ----------------------------------------------------------------------------------- */

static cq_status calib_init(cq_observer *obs) {
  const cq_observer_config *c = &obs->cfg;
  if (cq_qscheme_is_per_channel(c->qscheme)) {
    return cq_fail(CQ_EINVAL, "%s calibrator: qscheme %s is not supported (per-tensor only)",
                   method_name(c->kind), cq_qscheme_name(c->qscheme));
  }
  if (c->bins < 1 || (int64_t)c->bins > CALIB_MAX_BINS) {
    return cq_fail(CQ_EINVAL, "%s calibrator: bins %d must be in [1, %lld]", method_name(c->kind),
                   c->bins, (long long)CALIB_MAX_BINS);
  }
  if (c->kind == CQ_OBSERVER_PERCENTILE && !(c->percentile >= 0.0 && c->percentile <= 100.0)) {
    return cq_fail(CQ_EINVAL, "percentile calibrator: percentile %g must be in [0, 100]",
                   c->percentile);
  }
  if (c->kind == CQ_OBSERVER_MSE || c->kind == CQ_OBSERVER_ENTROPY) {
    if (c->stride < 1) {
      return cq_fail(CQ_EINVAL, "%s calibrator: stride %d must be >= 1", method_name(c->kind),
                     c->stride);
    }
    /* The histogram only grows, so a candidate that exists at creation always exists. */
    if (c->kind == CQ_OBSERVER_MSE && (c->start_bin < 0 || c->start_bin >= c->bins)) {
      return cq_fail(CQ_EINVAL, "mse calibrator: start_bin %d must be in [0, bins %d) so that "
                     "there is a candidate threshold", c->start_bin, c->bins);
    }
    if (c->kind == CQ_OBSERVER_ENTROPY &&
        (c->bins < 2 || c->start_bin < 1 || c->start_bin > c->bins)) {
      return cq_fail(CQ_EINVAL, "entropy calibrator: needs bins >= 2 and 1 <= start_bin <= bins "
                     "(got bins %d, start_bin %d)", c->bins, c->start_bin);
    }
  }
  calib_state *s = cq_calloc_for(1, sizeof *s, "calibrator state");
  if (!s) return CQ_ENOMEM;
  obs->state = s;
  return CQ_OK;
}

static cq_status calib_qparams(cq_observer *obs, cq_qparams *out) {
  float amax;
  cq_status st = cq_calibrator_amax(obs, &amax);
  if (st != CQ_OK) return st;
  const calib_state *s = obs->state;
  return cq_observer_qparams_from_range(obs, s->saw_negative ? -amax : 0.0f, amax, out);
}

static void calib_repr(const cq_observer *obs, cq_strbuf *sb) {
  const calib_state *s = obs->state;
  const cq_observer_config *c = &obs->cfg;
  cq_strbuf_appendf(sb, "HistogramCalibrator(method=%s, ", method_name(c->kind));
  if (c->kind == CQ_OBSERVER_PERCENTILE) {
    cq_strbuf_append(sb, "percentile=");
    cq_strbuf_append_pyfloat(sb, c->percentile);
  } else {
    cq_strbuf_appendf(sb, "start_bin=%d, stride=%d", c->start_bin, c->stride);
  }
  cq_strbuf_appendf(sb, ", num_bins=%lld, min_val=", (long long)(s->hist ? s->nbins : c->bins));
  cq_strbuf_append_pyfloat(sb, obs->min_val);
  cq_strbuf_append(sb, ", max_val=");
  cq_strbuf_append_pyfloat(sb, obs->max_val);
  cq_strbuf_append(sb, ")");
}

static void calib_reset(cq_observer *obs) {
  calib_state *s = obs->state;
  cq_free(s->hist);
  memset(s, 0, sizeof *s);
}

static void calib_destroy(cq_observer *obs) {
  calib_state *s = obs->state;
  if (s) cq_free(s->hist);
  cq_free(s);
  obs->state = NULL;
}

#define CALIBRATOR_VTABLE                                                                          \
  {                                                                                                \
    .init = calib_init, .update = calib_update, .qparams = calib_qparams, .repr = calib_repr,      \
    .reset = calib_reset, .destroy = calib_destroy,                                                \
  }

const cq_observer_vtable cq_percentile_calibrator_vtable = CALIBRATOR_VTABLE;
const cq_observer_vtable cq_mse_calibrator_vtable = CALIBRATOR_VTABLE;
const cq_observer_vtable cq_entropy_calibrator_vtable = CALIBRATOR_VTABLE;

/* HistogramObserver: PyTorch 1.13's torch.ao.quantization.HistogramObserver, bit for bit
 * (torch-1.13-semantics.md 1.6).
 *
 * forward() keeps a float32 histogram of `bins` bins over [min_val, max_val]. The first batch (or
 * any batch after data whose min equalled its max) starts a fresh histogram; later batches widen
 * the range to a multiple of the old bin width and merge the old histogram in by PyTorch's
 * upsample / cumulative-sum / interpolate scheme. calculate_qparams() searches the histogram for the
 * clipping range with the least L2 quantization error (greedy, stopping at the first increase) and
 * applies rule 1.2 to it.
 *
 * Every float operation below is the one PyTorch performs, in the same precision and order, with
 * these PyTorch kernels reproduced exactly rather than approximated:
 *  - torch.histc: only elements inside [trunc(lo), trunc(hi)] are counted (the observer passes
 *    Python int()s of its float range; equal bounds fall back to the batch's min/max, then to
 *    min - 1, max + 1), bin = trunc(f32(f32(v - lo) / f32(hi - lo)) * bins): the division comes
 *    first, which matters when bins is not a power of two;
 *  - torch.aminmax: 8 float lanes with MINPS/MAXPS semantics and a tree reduction, which decides the
 *    sign of a zero minimum or maximum;
 *  - torch.sum: the AVX2 vectorised cascade sum (8 lanes, 4 interleaved rows, 4 levels);
 *  - torch.cumsum of float32: accumulated in double, each prefix rounded to float32;
 *  - torch.div(rounding_mode='floor'): fmod-based, i.e. the exact floor of the real quotient.
 * The merge's cumulative sum over bins * downsample_rate cells is evaluated without materialising
 * it: runs of equal cells are summed in closed form when every partial sum is exact in double
 * (which the code proves per run) and one addition at a time otherwise, so the result is that of
 * PyTorch's sequential double cumsum.
 *
 * Where PyTorch raises instead of producing a result, update() returns CQ_EVALUE and leaves the
 * observer unchanged (PyTorch may already have overwritten min_val/max_val): a range endpoint at or
 * beyond +-2^63 (int() overflow), a bin width that underflows to zero, and a merged range whose
 * grid cannot hold the old histogram. Merges whose grid PyTorch cannot allocate (a range growing
 * by a factor of thousands in one batch) are computed all the same, up to 2^52 grid cells. Counts
 * are exact integers rounded to float32; PyTorch accumulates them in float32 per thread, which
 * differs only when one bin receives more than 2^24 elements of a single batch.
 *
 * The batch scans (min/max, bin indices) have AVX2 versions, chosen through cq_isa_active(), which
 * give the same bits as the portable ones. */
#include "quant/observer_histogram.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/cpu.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_KERNELS 1
#define AVX2_TARGET __attribute__((target("avx2")))
#else
#define HAVE_AVX2_KERNELS 0
#endif

/* Float lanes of PyTorch's CPU kernels on the AVX2 build the golden data come from. */
#define TORCH_LANES 8
/* Interleaved copies of the bin counters, so that runs of elements falling into the same bin do
 * not serialise on one counter. */
#define COUNT_COPIES 4
/* Elements whose bin indices are computed before they are counted. */
#define COUNT_CHUNK 1024
/* Largest merged grid (bins * downsample rate cells) accepted; PyTorch materialises the grid (12
 * bytes a cell) and runs out of memory long before, cquant never materialises it. */
#define MAX_GRID_CELLS 4503599627370496.0 /* 2^52 */

typedef struct histogram_state {
  int bins;
  int upsample_rate;
  double dst_nbins;  /* 2^bits of the dtype: 256, or 2^32 for qint32 */
  float *histogram;  /* [bins] the running histogram */
  float *incoming;   /* [bins] histc of the batch being observed */
  float *cumsum;     /* [bins] calculate_qparams: float32 cumulative sum */
  float *density;    /* [bins] calculate_qparams: histogram / bin width */
  float *norm;       /* [bins] calculate_qparams: per-bin L2 error of one candidate */
  uint64_t *totals;  /* [bins] exact counts of the batch */
  uint32_t *counts;  /* [COUNT_COPIES * (bins + 1)]; slot `bins` collects dropped elements */
} histogram_state;

/* --- torch.aminmax ------------------------------------------------------------------------------ */

/* MINPS / MAXPS: the second operand when the first does not win (ties, and so zeros of either
 * sign, go to the second). */
static inline float minps(float a, float b) { return a < b ? a : b; }
static inline float maxps(float a, float b) { return a > b ? a : b; }

/* The partial last vector (merged into the first lanes), then lane 0 of torch's vec_reduce_all
 * tree: v = f(v, swap halves); v = f(v, swap pairs); v = f(v, swap neighbours). */
static void finish_min_max(float mn[TORCH_LANES], float mx[TORCH_LANES], const float *tail,
                           int64_t count, float *mn_out, float *mx_out) {
  for (int64_t k = 0; k < count; k++) {
    mn[k] = minps(mn[k], tail[k]);
    mx[k] = maxps(mx[k], tail[k]);
  }
  float a[4], b[4];
  for (int k = 0; k < 4; k++) {
    a[k] = minps(mn[k], mn[k + 4]);
    b[k] = maxps(mx[k], mx[k + 4]);
  }
  *mn_out = minps(minps(a[0], a[2]), minps(a[1], a[3]));
  *mx_out = maxps(maxps(b[0], b[2]), maxps(b[1], b[3]));
}

/* Minimum and maximum of a non-empty batch, including the sign of a zero result, as
 * torch.aminmax computes them with 8-float vectors: lanewise accumulation, a partial last vector
 * merged into its first lanes, then a halves / pairs / neighbours tree. Fewer than 8 elements are
 * folded left to right. Each lane's fold keeps the last of equal extremes (MINPS gives the second
 * operand on ties), so folding contiguous blocks separately and then folding the block results in
 * order gives the same lanes: the AVX2 kernel uses that to run four independent chains. */
static void batch_min_max__scalar(const float *x, int64_t n, float *mn_out, float *mx_out) {
  if (n < TORCH_LANES) {
    float mn = x[0], mx = x[0];
    for (int64_t i = 1; i < n; i++) {
      mn = minps(mn, x[i]);
      mx = maxps(mx, x[i]);
    }
    *mn_out = mn;
    *mx_out = mx;
    return;
  }
  float mn[TORCH_LANES], mx[TORCH_LANES];
  for (int k = 0; k < TORCH_LANES; k++) mn[k] = mx[k] = x[k];
  const int64_t full = n - n % TORCH_LANES;
  int64_t d = TORCH_LANES;
  for (; d < full; d += TORCH_LANES) {
    for (int k = 0; k < TORCH_LANES; k++) {
      mn[k] = minps(mn[k], x[d + k]);
      mx[k] = maxps(mx[k], x[d + k]);
    }
  }
  finish_min_max(mn, mx, x + d, n - d, mn_out, mx_out);
}


#if HAVE_AVX2_KERNELS
AVX2_TARGET static void batch_min_max__avx2(const float *x, int64_t n, float *mn_out,
                                            float *mx_out) {
  if (n < TORCH_LANES) {
    batch_min_max__scalar(x, n, mn_out, mx_out);
    return;
  }
  const int64_t vecs = n / TORCH_LANES;
  __m256 mn, mx;
  if (vecs >= 64) {
    /* four contiguous blocks of vectors, each folded from its own first vector */
    const int64_t q = vecs / 4;
    const float *p1 = x + q * TORCH_LANES, *p2 = x + 2 * q * TORCH_LANES;
    const float *p3 = x + 3 * q * TORCH_LANES;
    __m256 mn0 = _mm256_loadu_ps(x), mn1 = _mm256_loadu_ps(p1);
    __m256 mn2 = _mm256_loadu_ps(p2), mn3 = _mm256_loadu_ps(p3);
    __m256 mx0 = mn0, mx1 = mn1, mx2 = mn2, mx3 = mn3;
    for (int64_t i = 1; i < q; i++) {
      const int64_t o = i * TORCH_LANES;
      const __m256 v0 = _mm256_loadu_ps(x + o), v1 = _mm256_loadu_ps(p1 + o);
      const __m256 v2 = _mm256_loadu_ps(p2 + o), v3 = _mm256_loadu_ps(p3 + o);
      mn0 = _mm256_min_ps(mn0, v0);
      mx0 = _mm256_max_ps(mx0, v0);
      mn1 = _mm256_min_ps(mn1, v1);
      mx1 = _mm256_max_ps(mx1, v1);
      mn2 = _mm256_min_ps(mn2, v2);
      mx2 = _mm256_max_ps(mx2, v2);
      mn3 = _mm256_min_ps(mn3, v3);
      mx3 = _mm256_max_ps(mx3, v3);
    }
    for (int64_t i = q; i < vecs - 3 * q; i++) {
      const __m256 v3 = _mm256_loadu_ps(p3 + i * TORCH_LANES);
      mn3 = _mm256_min_ps(mn3, v3);
      mx3 = _mm256_max_ps(mx3, v3);
    }
    mn = _mm256_min_ps(_mm256_min_ps(_mm256_min_ps(mn0, mn1), mn2), mn3);
    mx = _mm256_max_ps(_mm256_max_ps(_mm256_max_ps(mx0, mx1), mx2), mx3);
  } else {
    mn = mx = _mm256_loadu_ps(x);
    for (int64_t i = 1; i < vecs; i++) {
      const __m256 v = _mm256_loadu_ps(x + i * TORCH_LANES);
      mn = _mm256_min_ps(mn, v);
      mx = _mm256_max_ps(mx, v);
    }
  }
  float lmn[TORCH_LANES], lmx[TORCH_LANES];
  _mm256_storeu_ps(lmn, mn);
  _mm256_storeu_ps(lmx, mx);
  finish_min_max(lmn, lmx, x + vecs * TORCH_LANES, n - vecs * TORCH_LANES, mn_out, mx_out);
}
#endif

/* --- torch.sum ---------------------------------------------------------------------------------- */

static int64_t ceil_log2(int64_t x) {
  if (x <= 2) return 1;
  int64_t bits = 0;
  for (uint64_t v = (uint64_t)(x - 1); v; v >>= 1) bits++;
  return bits;
}

/* c10's multi_row_sum with 4 rows of `width` floats: row i, part k is p[(i * 4 + k) * width ..].
 * Partial sums cascade through 4 levels every level_step rows. acc0 receives the 4 row sums. */
static void multi_row_sum(const float *p, int64_t size, int width, float acc0[4][TORCH_LANES]) {
  enum { LEVELS = 4, ROWS = 4 };
  const int64_t power = ceil_log2(size) / LEVELS > 4 ? ceil_log2(size) / LEVELS : 4;
  const int64_t step = (int64_t)1 << power;
  const int64_t mask = step - 1;
  float acc[LEVELS][ROWS][TORCH_LANES];
  memset(acc, 0, sizeof acc);
  int64_t i = 0;
  while (i + step <= size) {
    for (int64_t j = 0; j < step; j++, i++) {
      for (int k = 0; k < ROWS; k++) {
        const float *row = p + (i * ROWS + k) * width;
        for (int l = 0; l < width; l++) acc[0][k][l] += row[l];
      }
    }
    for (int j = 1; j < LEVELS; j++) {
      for (int k = 0; k < ROWS; k++) {
        for (int l = 0; l < width; l++) {
          acc[j][k][l] += acc[j - 1][k][l];
          acc[j - 1][k][l] = 0.0f;
        }
      }
      if ((i & (mask << (j * power))) != 0) break;
    }
  }
  for (; i < size; i++) {
    for (int k = 0; k < ROWS; k++) {
      const float *row = p + (i * ROWS + k) * width;
      for (int l = 0; l < width; l++) acc[0][k][l] += row[l];
    }
  }
  for (int j = 1; j < LEVELS; j++) {
    for (int k = 0; k < ROWS; k++) {
      for (int l = 0; l < width; l++) acc[0][k][l] += acc[j][k][l];
    }
  }
  memcpy(acc0, acc[0], sizeof acc[0]);
}

/* row_sum: the vector (or scalar) rows summed as a (-1, 4) array, the leftover rows added to part
 * 0, then parts 1..3 added to part 0. */
static void row_sum(const float *p, int64_t nrows, int width, float out[TORCH_LANES]) {
  float acc[4][TORCH_LANES];
  const int64_t size_ilp = nrows / 4;
  multi_row_sum(p, size_ilp, width, acc);
  for (int64_t i = size_ilp * 4; i < nrows; i++) {
    for (int l = 0; l < width; l++) acc[0][l] += p[i * width + l];
  }
  for (int k = 1; k < 4; k++) {
    for (int l = 0; l < width; l++) acc[0][l] += acc[k][l];
  }
  memcpy(out, acc[0], sizeof(float) * (size_t)width);
}

float cq_torch_sum_f32(const float *x, int64_t n) {
  float lanes[TORCH_LANES];
  if (n < TORCH_LANES) {
    /* scalar_inner_sum: the same cascade over single floats */
    row_sum(x, n, 1, lanes);
    return lanes[0];
  }
  const int64_t vecs = n / TORCH_LANES;
  row_sum(x, vecs, TORCH_LANES, lanes);
  float total = 0.0f;
  for (int64_t k = vecs * TORCH_LANES; k < n; k++) total += x[k];
  for (int l = 0; l < TORCH_LANES; l++) total += lanes[l];
  return total;
}

/* --- torch.histc ------------------------------------------------------------------------------- */

/* True if Python's int() of v fits the int64 that torch.histc's min/max arguments are converted
 * to (PyTorch raises "Overflow when unpacking long" otherwise). */
static int int64_convertible(float v) {
  return v >= -9223372036854775808.0f && v < 9223372036854775808.0f;
}

/* Bin index of each element of x[0..len): trunc(f32((v - lo) / width) * bins), bins - 1 for
 * v == hi, and `bins` (a slot that is discarded) for elements outside [lo, hi]. */
static void bin_indices__scalar(const float *x, int len, float lo, float hi, int bins,
                                int32_t *idx) {
  const float width = hi - lo;
  const float fbins = (float)bins;
  for (int i = 0; i < len; i++) {
    const float v = x[i];
    /* clamping first keeps the conversion defined for dropped elements */
    float cv = v < lo ? lo : v;
    cv = cv > hi ? hi : cv;
    int32_t k = (int32_t)(((cv - lo) / width) * fbins);
    k = k >= bins ? bins - 1 : k;
    idx[i] = (v >= lo && v <= hi) ? k : bins;
  }
}

#if HAVE_AVX2_KERNELS
AVX2_TARGET static void bin_indices__avx2(const float *x, int len, float lo, float hi, int bins,
                                          int32_t *idx) {
  const __m256 vlo = _mm256_set1_ps(lo), vhi = _mm256_set1_ps(hi);
  const __m256 vwidth = _mm256_set1_ps(hi - lo), vbins = _mm256_set1_ps((float)bins);
  const __m256i dropped = _mm256_set1_epi32(bins), last = _mm256_set1_epi32(bins - 1);
  int i = 0;
  for (; i + 8 <= len; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    /* a zero clamped to the other zero's sign gives the same quotient 0 */
    const __m256 cv = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi);
    const __m256 q = _mm256_mul_ps(_mm256_div_ps(_mm256_sub_ps(cv, vlo), vwidth), vbins);
    const __m256i k = _mm256_min_epi32(_mm256_cvttps_epi32(q), last);
    const __m256 inside = _mm256_and_ps(_mm256_cmp_ps(v, vlo, _CMP_GE_OQ),
                                        _mm256_cmp_ps(v, vhi, _CMP_LE_OQ));
    _mm256_storeu_si256((__m256i *)(idx + i),
                        _mm256_blendv_epi8(dropped, k, _mm256_castps_si256(inside)));
  }
  bin_indices__scalar(x + i, len - i, lo, hi, bins, idx + i);
}
#endif

typedef void (*bin_indices_fn)(const float *x, int len, float lo, float hi, int bins,
                               int32_t *idx);
typedef void (*min_max_fn)(const float *x, int64_t n, float *mn, float *mx);

/* The kernels for the ISA cq_isa_active() picks (CQ_ISA=scalar forces the portable ones). */
typedef struct histogram_kernels {
  bin_indices_fn bin_indices;
  min_max_fn min_max;
} histogram_kernels;

static histogram_kernels select_kernels(void) {
  histogram_kernels k = {bin_indices__scalar, batch_min_max__scalar};
#if HAVE_AVX2_KERNELS
  cq_isa isa;
  if (cq_isa_active(&isa) == CQ_OK && isa >= CQ_ISA_AVX2) {
    k.bin_indices = bin_indices__avx2;
    k.min_max = batch_min_max__avx2;
  }
#endif
  return k;
}

/* Counts the elements of x inside [lo, hi] into st->totals. */
static void count_bins(histogram_state *st, const histogram_kernels *kern, const float *x,
                       int64_t n, float lo, float hi) {
  const int bins = st->bins;
  const int64_t stride = (int64_t)bins + 1;
  uint32_t *c = st->counts;
  memset(st->totals, 0, sizeof(uint64_t) * (size_t)bins);
  if (hi - lo == 0.0f) {
    /* Edges that round to the same float: PyTorch's index is trunc(0/0), which on x86 lands in
     * bin 0 for every element equal to the edge. */
    uint64_t hits = 0;
    for (int64_t i = 0; i < n; i++) hits += x[i] == lo;
    st->totals[0] = hits;
    return;
  }
  int32_t idx[COUNT_CHUNK];
  /* Counters are flushed into the 64-bit totals every 2^30 elements, so none can overflow. */
  const int64_t flush_every = (int64_t)1 << 30;
  for (int64_t base = 0; base < n; base += flush_every) {
    const int64_t end = n - base < flush_every ? n : base + flush_every;
    memset(c, 0, sizeof(uint32_t) * (size_t)(COUNT_COPIES * stride));
    for (int64_t i0 = base; i0 < end; i0 += COUNT_CHUNK) {
      const int len = end - i0 < COUNT_CHUNK ? (int)(end - i0) : COUNT_CHUNK;
      kern->bin_indices(x + i0, len, lo, hi, bins, idx);
      int i = 0;
      for (; i + COUNT_COPIES <= len; i += COUNT_COPIES) {
        c[idx[i]]++;
        c[stride + idx[i + 1]]++;
        c[2 * stride + idx[i + 2]]++;
        c[3 * stride + idx[i + 3]]++;
      }
      for (; i < len; i++) c[idx[i]]++;
    }
    for (int b = 0; b < bins; b++) {
      uint64_t t = 0;
      for (int k = 0; k < COUNT_COPIES; k++) t += c[k * stride + b];
      st->totals[b] += t;
    }
  }
}

/* torch.histc(x, bins, min=int(range_min), max=int(range_max)) into st->incoming. xmin/xmax are the
 * batch's own extremes, which histc falls back to when the truncated bounds coincide. */
static cq_status histc(histogram_state *st, const histogram_kernels *kern, const float *x,
                       int64_t n, float range_min, float range_max, float xmin, float xmax) {
  if (!int64_convertible(range_min) || !int64_convertible(range_max)) {
    return cq_fail(CQ_EVALUE,
                   "HistogramObserver: range [%.9g, %.9g] reaches beyond +-2^63, where PyTorch's "
                   "int() of the histogram bounds overflows",
                   (double)range_min, (double)range_max);
  }
  /* Python int()s: truncated, and + 0.0 turns a -0.0 into the 0 an int has */
  double lo = trunc((double)range_min) + 0.0, hi = trunc((double)range_max) + 0.0;
  if (lo == hi) {
    lo = xmin;
    hi = xmax;
    if (lo == hi) {
      lo -= 1.0;
      hi += 1.0;
    }
  }
  count_bins(st, kern, x, n, (float)lo, (float)hi);
  for (int b = 0; b < st->bins; b++) st->incoming[b] = (float)st->totals[b];
  return CQ_OK;
}

/* --- merging (_adjust_min_max, _combine_histograms) -------------------------------------------- */

/* Exponent of the lowest set bit of a finite nonzero double. */
static int lowest_bit_exponent(double v) {
  uint64_t u;
  memcpy(&u, &v, sizeof u);
  int e = (int)((u >> 52) & 0x7ff);
  uint64_t mant = u & 0xfffffffffffffULL;
  if (e != 0) {
    mant |= 1ULL << 52;
  } else {
    e = 1;
  }
  return e - 1075 + __builtin_ctzll(mant);
}

/* 2^e for a normal exponent e in [-1022, 1023]. */
static double power_of_two(int e) {
  const uint64_t u = (uint64_t)(e + 1023) << 52;
  double v;
  memcpy(&v, &u, sizeof v);
  return v;
}

/* acc + h + h + ... (t additions, each rounded to double), the way torch.cumsum accumulates a run of
 * t equal cells. When acc and h are multiples of 2^q and every partial sum stays below 2^(53+q) in
 * magnitude, no addition rounds and the result is acc + t*h, computed exactly. */
static double add_run(double acc, double h, int64_t t) {
  if (h == 0.0 || t <= 0) return acc;
  int q = lowest_bit_exponent(h);
  if (acc != 0.0) {
    const int qa = lowest_bit_exponent(acc);
    if (qa < q) q = qa;
  }
  /* bound overestimates |acc| + t|h| by at most two roundings, so 2^(52+q) leaves room for them */
  const double bound = fabs(acc) + (double)t * fabs(h);
  if (q + 52 <= 1023 && bound < power_of_two(q + 52)) return acc + (double)t * h;
  for (int64_t i = 0; i < t; i++) acc += h;
  return acc;
}

/* _combine_histograms with the old histogram upsampled (each bin repeated upsample_rate times with
 * its full count) onto a grid of bins * rate cells from cell `start`, cumulatively summed in double,
 * sampled every `rate` cells, differenced against the previous sample rounded to float32, divided
 * by upsample_rate and added to the batch's histogram (st->incoming, updated in place). */
static void combine_histograms(histogram_state *st, int64_t rate, int64_t start) {
  const int bins = st->bins;
  const int64_t up = st->upsample_rate;
  const float *old = st->histogram;
  float *out = st->incoming;
  double acc = 0.0;  /* cumulative sum through every old bin before bin j */
  int64_t j = 0;     /* first old bin not yet fully summed */
  float prev = 0.0f; /* previous sample, stored in float32 as PyTorch's shifted copy is */
  for (int k = 0; k < bins; k++) {
    const int64_t p = ((int64_t)k + 1) * rate - 1; /* cell sampled for output bin k */
    while (j < bins && start + (j + 1) * up - 1 <= p) {
      acc = add_run(acc, (double)old[j], up);
      j++;
    }
    double sample = acc;
    if (j < bins && start + j * up <= p) {
      sample = add_run(acc, (double)old[j], p - (start + j * up) + 1);
    }
    const float interp = (float)((sample - (double)prev) / (double)up);
    prev = (float)sample;
    out[k] = out[k] + interp;
  }
}

/* Makes the batch histogram (st->incoming) the running one; the old buffer becomes scratch. */
static void adopt_incoming(histogram_state *st) {
  float *t = st->histogram;
  st->histogram = st->incoming;
  st->incoming = t;
}

static cq_status histogram_update(cq_observer *obs, const float *x, int ndim, const int64_t *shape,
                                  int64_t n) {
  (void)ndim;
  (void)shape;
  histogram_state *st = obs->state;
  const int bins = st->bins;
  const histogram_kernels kern = select_kernels();
  float xmin, xmax;
  kern.min_max(x, n, &xmin, &xmax);
  const float old_min = obs->min_val, old_max = obs->max_val;
  const int uninitialized = old_min == INFINITY && old_max == -INFINITY;
  if (uninitialized || old_min == old_max) {
    /* first data, or the previous data were constant: start over from this batch */
    cq_status status = histc(st, &kern, x, n, xmin, xmax, xmin, xmax);
    if (status != CQ_OK) return status;
    adopt_incoming(st);
    obs->min_val = xmin;
    obs->max_val = xmax;
    return CQ_OK;
  }
  /* torch.min(new_min, min_val) / torch.max(new_max, max_val): std::min/std::max keep the first
   * argument on ties */
  const float cmin = old_min < xmin ? old_min : xmin;
  float cmax = xmax < old_max ? old_max : xmax;

  /* _adjust_min_max, all in float32 */
  const int64_t up = st->upsample_rate;
  const float cell = (old_max - old_min) / (float)((int64_t)bins * up);
  const float grid = (float)bins * cell;
  const float rate_f = ceilf((cmax - cmin) / grid);
  const float extra = rate_f * grid - (cmax - cmin);
  const float start_f = nearbyintf((old_min - cmin) / cell);
  if (!(rate_f >= 1.0f && (double)rate_f * bins <= MAX_GRID_CELLS && start_f >= 0.0f &&
        (double)start_f <= MAX_GRID_CELLS)) {
    /* a bin width that underflows to 0 makes the rate inf (PyTorch: int() overflow) */
    return cq_fail(CQ_EVALUE,
                   "HistogramObserver: cannot merge range [%.9g, %.9g] into [%.9g, %.9g]: the "
                   "downsample rate %.9g is not a positive integer with bins * rate <= 2^52 "
                   "(PyTorch fails here too)",
                   (double)xmin, (double)xmax, (double)old_min, (double)old_max, (double)rate_f);
  }
  const int64_t rate = (int64_t)rate_f;
  const int64_t start = (int64_t)start_f;
  cmax = cmax + extra;

  cq_status status = histc(st, &kern, x, n, cmin, cmax, xmin, xmax);
  if (status != CQ_OK) return status;
  if (cmin == old_min && cmax == old_max) {
    for (int b = 0; b < bins; b++) st->histogram[b] = st->incoming[b] + st->histogram[b];
  } else {
    if (start + (int64_t)bins * up > (int64_t)bins * rate) {
      return cq_fail(CQ_EVALUE,
                     "HistogramObserver: the old histogram does not fit the merged grid (start "
                     "%lld + %lld cells > %lld); PyTorch raises a shape error here",
                     (long long)start, (long long)((int64_t)bins * up),
                     (long long)((int64_t)bins * rate));
    }
    combine_histograms(st, rate, start);
    adopt_incoming(st);
  }
  obs->min_val = cmin;
  obs->max_val = cmax;
  return CQ_OK;
}

/* --- calculate_qparams (_non_linear_param_search) ---------------------------------------------- */

/* torch.div(a, b, rounding_mode='floor') for float32, literally (fmod, correction, rounding of the
 * quotient). */
static float torch_floor_divide(float a, float b) {
  if (b == 0.0f) return a / b;
  const float mod = fmodf(a, b);
  float div = (a - mod) / b;
  if (mod != 0.0f && ((b < 0.0f) != (mod < 0.0f))) div -= 1.0f;
  if (div == 0.0f) return copysignf(0.0f, a / b);
  float floordiv = floorf(div);
  if (div - floordiv > 0.5f) floordiv += 1.0f;
  return floordiv;
}

/* torch.clamp(x, 0, top) as PyTorch computes it in float32: std::min(std::max(x, 0), top). */
static inline float clamp_bin(float v, float top) {
  v = v < 0.0f ? 0.0f : v;
  return top < v ? top : v;
}

/* Per-candidate constants of _compute_quantization_error. */
typedef struct l2_params {
  float bin_width; /* f32 of the double source bin width */
  float dst_width; /* f32 of the double destination bin width */
  float half;      /* f32(dst_width / 2) */
  float half3;     /* half^3 in float32 */
  float full;      /* _get_norm(-half, half) without density: (half^3 - (-half)^3) / 3 */
  float top;       /* dst_nbins - 1 in float32 */
} l2_params;

/* E_j of spec 1.6.3 for source bin j, with begin = f32(j - start) * bin_width. kb, ke are the
 * clamped destination bins of the bin's begin and end. */
static inline float l2_bin_error(const l2_params *p, float density, float begin, float end,
                                 float kb, float ke) {
  const float dst_width = p->dst_width, half = p->half;
  const float cb = (kb + 0.5f) * dst_width;
  const float db = begin - cb;
  const float first = density * ((p->half3 - db * db * db) / 3.0f);
  const float middle = (ke - kb - 1.0f) * (density * p->full);
  const float ce = ke * dst_width + half;
  const float de = end - ce;
  const float nhalf = -half;
  const float last = density * ((de * de * de - nhalf * nhalf * nhalf) / 3.0f);
  return ((0.0f + first) + middle) + last;
}

/* _compute_quantization_error(start, end): the float32 sum (torch.sum's order) of the per-bin
 * errors, returned as the double PyTorch's .item() gives. */
static double l2_error(histogram_state *st, float min_val, float max_val, int64_t start,
                       int64_t end) {
  const int bins = st->bins;
  const double bin_width = ((double)max_val - (double)min_val) / bins;
  const double dst_width = bin_width * (double)(end - start + 1) / st->dst_nbins;
  if (dst_width == 0.0) return 0.0;
  l2_params p;
  p.bin_width = (float)bin_width;
  p.dst_width = (float)dst_width;
  p.half = (float)(dst_width / 2);
  p.half3 = p.half * p.half * p.half;
  const float nhalf = (float)(-dst_width / 2);
  p.full = (p.half3 - nhalf * nhalf * nhalf) / 3.0f;
  p.top = (float)(st->dst_nbins - 1);
  const float *density = st->density;
  float *norm = st->norm;
  if (st->dst_nbins <= 65536.0 && p.dst_width > 0.0f) {
    /* Quotients below 2^29 floor exactly through a double division (a and b carry 24 bits, so a
     * non-integral quotient is at least 2^-24 away from an integer), and larger ones clamp to the
     * top bin either way: the result equals PyTorch's floor division followed by the clamp. */
    const double dw = p.dst_width, top = p.top;
    for (int j = 0; j < bins; j++) {
      const float begin = (float)((int64_t)j - start) * p.bin_width;
      const float fin = begin + p.bin_width;
      const double qb = (double)begin / dw, qe = (double)fin / dw;
      const float kb = qb < 0.0 ? 0.0f : (qb >= top ? p.top : (float)(int64_t)qb);
      const float ke = qe < 0.0 ? 0.0f : (qe >= top ? p.top : (float)(int64_t)qe);
      norm[j] = l2_bin_error(&p, density[j], begin, fin, kb, ke);
    }
  } else {
    for (int j = 0; j < bins; j++) {
      const float begin = (float)((int64_t)j - start) * p.bin_width;
      const float fin = begin + p.bin_width;
      const float kb = clamp_bin(torch_floor_divide(begin, p.dst_width), p.top);
      const float ke = clamp_bin(torch_floor_divide(fin, p.dst_width), p.top);
      norm[j] = l2_bin_error(&p, density[j], begin, fin, kb, ke);
    }
  }
  return (double)cq_torch_sum_f32(norm, bins);
}

/* _non_linear_param_search: the greedy quantile walk of spec 1.6.3. */
static void search_range(histogram_state *st, float min_val, float max_val, float *new_min,
                         float *new_max) {
  const int bins = st->bins;
  const float *hist = st->histogram;
  const float bin_width = (max_val - min_val) / (float)bins;
  const double total = (double)cq_torch_sum_f32(hist, bins);
  double run = 0.0; /* torch.cumsum accumulates float32 in double */
  for (int b = 0; b < bins; b++) {
    run += (double)hist[b];
    st->cumsum[b] = (float)run;
  }
  const float *csum = st->cumsum;
  /* density = histogram / bin_width with the double width of _compute_quantization_error */
  const float density_width = (float)(((double)max_val - (double)min_val) / bins);
  for (int b = 0; b < bins; b++) st->density[b] = hist[b] / density_width;

  const double step = 1e-5;
  double alpha = 0.0, beta = 1.0, norm_min = INFINITY;
  int64_t start = 0, end = bins - 1;
  while (alpha < beta) {
    const double next_alpha = alpha + step, next_beta = beta - step;
    const float lo_mass = (float)(next_alpha * total), hi_mass = (float)(next_beta * total);
    int64_t l = start, r = end;
    while (l < end && csum[l] < lo_mass) l++;
    while (r > start && csum[r] > hi_mass) r--;
    int64_t next_start = start, next_end = end;
    if (l - start > end - r) {
      next_start = l;
      alpha = next_alpha;
    } else {
      next_end = r;
      beta = next_beta;
    }
    if (next_start == start && next_end == end) continue;
    const double norm = l2_error(st, min_val, max_val, next_start, next_end);
    if (norm > norm_min) break;
    norm_min = norm;
    start = next_start;
    end = next_end;
  }
  *new_min = min_val + bin_width * (float)start;
  *new_max = min_val + bin_width * (float)(end + 1);
}

cq_status cq_histogram_observer_search(const cq_observer *obs, float *new_min, float *new_max) {
  if (obs->vt != &cq_histogram_observer_vtable) {
    return cq_fail(CQ_EINVAL, "not a HistogramObserver");
  }
  if (!obs->has_data) return cq_fail(CQ_ESTATE, "HistogramObserver has not observed any data");
  search_range(obs->state, obs->min_val, obs->max_val, new_min, new_max);
  return CQ_OK;
}

static cq_status histogram_qparams(cq_observer *obs, cq_qparams *out) {
  float new_min, new_max;
  search_range(obs->state, obs->min_val, obs->max_val, &new_min, &new_max);
  return cq_observer_qparams_from_range(obs, new_min, new_max, out);
}

/* --- lifecycle ---------------------------------------------------------------------------------- */

static cq_status histogram_init(cq_observer *obs) {
  const int bins = obs->cfg.bins;
  if (bins < 1) return cq_fail(CQ_EINVAL, "HistogramObserver: bins %d must be >= 1", bins);
  if (obs->cfg.upsample_rate < 1) {
    return cq_fail(CQ_EINVAL, "HistogramObserver: upsample_rate %d must be >= 1",
                   obs->cfg.upsample_rate);
  }
  histogram_state *st = cq_calloc_for(1, sizeof *st, "histogram observer");
  if (!st) return CQ_ENOMEM;
  st->bins = bins;
  st->upsample_rate = obs->cfg.upsample_rate;
  st->dst_nbins = obs->cfg.dtype == CQ_QINT32 ? 4294967296.0 : 256.0;
  const size_t nb = (size_t)bins;
  st->histogram = cq_calloc_for(nb, sizeof(float), "histogram");
  st->incoming = cq_calloc_for(nb, sizeof(float), "batch histogram");
  st->cumsum = cq_calloc_for(nb, sizeof(float), "histogram cumulative sum");
  st->density = cq_calloc_for(nb, sizeof(float), "histogram density");
  st->norm = cq_calloc_for(nb, sizeof(float), "histogram errors");
  st->totals = cq_calloc_for(nb, sizeof(uint64_t), "histogram counts");
  st->counts = cq_calloc_for((size_t)COUNT_COPIES * (nb + 1), sizeof(uint32_t),
                             "histogram counters");
  obs->state = st;
  if (!st->histogram || !st->incoming || !st->cumsum || !st->density || !st->norm ||
      !st->totals || !st->counts) {
    return CQ_ENOMEM; /* cq_observer_create frees through destroy */
  }
  return CQ_OK;
}

static void histogram_reset(cq_observer *obs) {
  histogram_state *st = obs->state;
  memset(st->histogram, 0, sizeof(float) * (size_t)st->bins);
}

static void histogram_destroy(cq_observer *obs) {
  histogram_state *st = obs->state;
  if (!st) return;
  cq_free(st->histogram);
  cq_free(st->incoming);
  cq_free(st->cumsum);
  cq_free(st->density);
  cq_free(st->norm);
  cq_free(st->totals);
  cq_free(st->counts);
  cq_free(st);
  obs->state = NULL;
}

const float *cq_histogram_observer_histogram(const cq_observer *obs, int *bins) {
  if (obs->vt != &cq_histogram_observer_vtable) return NULL;
  const histogram_state *st = obs->state;
  if (bins) *bins = st->bins;
  return st->histogram;
}

/* repr: the generic "HistogramObserver(min_val=.., max_val=..)" with Python float reprs. */
const cq_observer_vtable cq_histogram_observer_vtable = {
    .init = histogram_init,
    .update = histogram_update,
    .qparams = histogram_qparams,
    .repr = NULL,
    .reset = histogram_reset,
    .destroy = histogram_destroy,
};

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
 * (which the code proves per block of bins, or per run) and otherwise by following the roundings,
 * a binade at a time (add_repeated), so the result is that of PyTorch's sequential double cumsum.
 *
 * Where PyTorch raises instead of producing a result, update() returns CQ_EVALUE and leaves the
 * observer unchanged (PyTorch may already have overwritten min_val/max_val): a range endpoint at or
 * beyond +-2^63 (int() overflow), a bin width that underflows to zero, and a merged range whose
 * grid cannot hold the old histogram. Merges whose grid PyTorch cannot allocate (a range growing
 * by a factor of thousands in one batch) are computed all the same, up to 2^52 grid cells. Counts
 * are exact integers rounded to float32; PyTorch accumulates them in float32 per thread, which
 * differs only when one bin receives more than 2^24 elements of a single batch.
 *
 * The batch scans (min/max, bin indices) have AVX2 versions and the bin indices and the L2 search
 * AVX-512 ones, chosen through cq_isa_active(), which give the same bits as the portable ones (the
 * AVX-512 kernels replace divisions by multiplications whose error is bounded, deferring to the
 * division where the bound leaves the result open). forward() splits each batch among the threads
 * of the default pool (cq_set_num_threads) in contiguous parts of whole vectors: every thread
 * folds its part's min/max lanes and counts its part into its own integer counters, and the lanes
 * are folded and the counts added in a fixed order, so the result is the same for any number of
 * threads. Its min/max scan also looks for NaN and Inf, which cq_observer_update leaves to it. */
#include "quant/observer_histogram.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core/alloc.h"
#include "core/cpu.h"
#include "core/threadpool.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_AVX2_KERNELS 1
#define AVX2_TARGET __attribute__((target("avx2")))
#define AVX512_TARGET __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512dq,popcnt")))
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
/* Room after the indices for a kernel's last full-vector store. */
#define COUNT_SLACK 16
/* Most threads one batch is split among, and the default fewest elements per thread. */
#define MAX_PARTS 64
#define DEFAULT_GRAIN 32768
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
  double *prefix;    /* [bins + 1] merge: cumulative sums at the old bins' edges */
  uint8_t *exact;    /* [bins / MERGE_BLOCK + 1] merge: blocks whose sums are exact */
  /* Per thread t < parts_cap: exact counts of its part of the batch at totals + t * totals_stride
   * ([bins]), and its counters at counts + t * counts_stride ([COUNT_COPIES * (bins + 1)]; slot
   * `bins` of each copy collects dropped elements). The strides keep the threads' rows on separate
   * cache lines. */
  uint64_t *totals;
  uint32_t *counts;
  int parts_cap;
  size_t totals_stride;
  size_t counts_stride;
} histogram_state;

/* The elements per thread set by cq_histogram_observer_set_grain (0: automatic). */
static int64_t grain_setting;

int64_t cq_histogram_observer_set_grain(int64_t elements) {
  const int64_t old = grain_setting;
  grain_setting = elements <= 0 ? 0 : (elements < TORCH_LANES ? TORCH_LANES : elements);
  return old;
}

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

/* torch.aminmax computes the minimum and maximum of a batch (including the sign of a zero result)
 * with 8-float vectors: lanewise accumulation over the full vectors, a partial last vector merged
 * into the first lanes, then a halves / pairs / neighbours tree; fewer than 8 elements are folded
 * left to right. Each lane's fold keeps the last of equal extremes (MINPS gives the second operand
 * on ties), so folding contiguous blocks of vectors separately and then folding the block results
 * in order gives the same lanes: the AVX2 kernel uses that to run four independent chains, and
 * forward() to give each thread a contiguous block of whole vectors.
 *
 * The lane kernels fold `vecs` >= 1 full vectors of x, lane k taking x[8 i + k] for i = 0, 1, ...
 * in order, and return nonzero if any of those elements is a NaN (which the fold would lose; an
 * infinity shows in the lanes). */
static int lanes_min_max__scalar(const float *x, int64_t vecs, float mn[TORCH_LANES],
                                 float mx[TORCH_LANES]) {
  int nan = 0;
  for (int k = 0; k < TORCH_LANES; k++) {
    mn[k] = mx[k] = x[k];
    nan |= x[k] != x[k];
  }
  for (int64_t i = 1; i < vecs; i++) {
    const float *v = x + i * TORCH_LANES;
    for (int k = 0; k < TORCH_LANES; k++) {
      mn[k] = minps(mn[k], v[k]);
      mx[k] = maxps(mx[k], v[k]);
      nan |= v[k] != v[k];
    }
  }
  return nan;
}

#if HAVE_AVX2_KERNELS
AVX2_TARGET static int lanes_min_max__avx2(const float *x, int64_t vecs, float lmn[TORCH_LANES],
                                           float lmx[TORCH_LANES]) {
  __m256 mn, mx, nan; /* nan: an unordered compare of any two elements seen was true */
  if (vecs >= 64) {
    /* four contiguous blocks of vectors, each folded from its own first vector */
    const int64_t q = vecs / 4;
    const float *p1 = x + q * TORCH_LANES, *p2 = x + 2 * q * TORCH_LANES;
    const float *p3 = x + 3 * q * TORCH_LANES;
    __m256 mn0 = _mm256_loadu_ps(x), mn1 = _mm256_loadu_ps(p1);
    __m256 mn2 = _mm256_loadu_ps(p2), mn3 = _mm256_loadu_ps(p3);
    __m256 mx0 = mn0, mx1 = mn1, mx2 = mn2, mx3 = mn3;
    nan = _mm256_or_ps(_mm256_cmp_ps(mn0, mn1, _CMP_UNORD_Q),
                       _mm256_cmp_ps(mn2, mn3, _CMP_UNORD_Q));
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
      nan = _mm256_or_ps(nan, _mm256_or_ps(_mm256_cmp_ps(v0, v1, _CMP_UNORD_Q),
                                           _mm256_cmp_ps(v2, v3, _CMP_UNORD_Q)));
    }
    for (int64_t i = q; i < vecs - 3 * q; i++) {
      const __m256 v3 = _mm256_loadu_ps(p3 + i * TORCH_LANES);
      mn3 = _mm256_min_ps(mn3, v3);
      mx3 = _mm256_max_ps(mx3, v3);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v3, v3, _CMP_UNORD_Q));
    }
    mn = _mm256_min_ps(_mm256_min_ps(_mm256_min_ps(mn0, mn1), mn2), mn3);
    mx = _mm256_max_ps(_mm256_max_ps(_mm256_max_ps(mx0, mx1), mx2), mx3);
  } else {
    mn = mx = _mm256_loadu_ps(x);
    nan = _mm256_cmp_ps(mn, mn, _CMP_UNORD_Q);
    for (int64_t i = 1; i < vecs; i++) {
      const __m256 v = _mm256_loadu_ps(x + i * TORCH_LANES);
      mn = _mm256_min_ps(mn, v);
      mx = _mm256_max_ps(mx, v);
      nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    }
  }
  _mm256_storeu_ps(lmn, mn);
  _mm256_storeu_ps(lmx, mx);
  return _mm256_movemask_ps(nan) != 0;
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

/* One torch.histc count: elements inside [lo, hi] fall into `bins` bins. */
typedef struct bin_params {
  float lo, hi;
  int bins;
  /* A bin the vector kernels count apart instead of scattering each element into it: the bin of
   * 0.0 when lo <= 0 <= hi (the exact zeros of ReLU'd or padded activations all land there, and
   * would otherwise serialise on one counter), -1 when there is none. */
  int hot;
  /* Division-free bracket of the bin position t = f32(f32(d / width) * bins), d = f32(v - lo):
   * f32(d * scale_lo) <= t <= f32(d * scale_hi) (see bin_params_init); 0 when unusable. */
  float scale_lo, scale_hi;
  /* Whether the batch may hold elements below lo / above hi (kernels may skip the test if not). */
  int check_lo, check_hi;
} bin_params;

/* Sets up p for [lo, hi] (hi - lo > 0) and `bins` bins.
 *
 * The bracket: with u = 2^-24, t = (d / w) * bins * (1 + e1)(1 + e2), |e1|, |e2| <= u (two float32
 * roundings of positive normal or zero values; d <= w, so d / w <= 1). scale_lo is the float32
 * rounding of bins / w * (1 - 2^-21) and f32(d * scale_lo) adds one more rounding, so
 * f32(d * scale_lo) <= (d / w) * bins * (1 - 2^-21)(1 + u)^2 < (d / w) * bins * (1 - u)^2 <= t,
 * as 2^-21 = 8u exceeds the 4u + O(u^2) the four roundings can take; scale_hi mirrors it. Where
 * d * scale underflows to a subnormal its absolute error is below 2^-149 while t < 2^-125 there,
 * so both ends still truncate to bin 0 like t. Truncation is monotonic, so when both ends truncate
 * to the same integer, that is trunc(t); and it is below bins, as the low end is below t <= bins
 * (or 0), so it needs no capping: an element whose t rounds up to bins (v = hi, or just below) has
 * its high end at bins and is ambiguous. Only elements within about t * 2^-19 of a bin edge are
 * ambiguous, and those vectors are recomputed with the division. The bracket is used only when
 * both scales are normal floats (w not tiny), so that no product can overflow:
 * d * scale_hi <= bins * (1 + 2^-20). */
static void bin_params_init(bin_params *p, float lo, float hi, int bins, float xmin, float xmax) {
  p->lo = lo;
  p->hi = hi;
  p->bins = bins;
  p->check_lo = !(xmin >= lo);
  p->check_hi = !(xmax <= hi);
  const double ratio = (double)bins / (double)(hi - lo);
  const float slo = (float)(ratio * (1.0 - 0x1p-21)), shi = (float)(ratio * (1.0 + 0x1p-21));
  const int usable = isfinite(shi) && slo >= FLT_MIN;
  p->scale_lo = usable ? slo : 0.0f;
  p->scale_hi = usable ? shi : 0.0f;
  p->hot = -1;
  if (lo <= 0.0f && 0.0f <= hi) {
    /* the bin of zero, as the scalar kernel computes it */
    const float width = hi - lo;
    const int32_t k = (int32_t)(((0.0f - lo) / width) * (float)bins);
    p->hot = k >= bins ? bins - 1 : k;
  }
}

/* The bin-index kernels write the bin index of each element of x[0..len) (len <= COUNT_CHUNK),
 * trunc(f32(f32(v - lo) / width) * bins) and bins - 1 for v == hi, to idx and return how many they
 * wrote. Elements outside [lo, hi] get the discarded index `bins` or are left out, elements of
 * bin p->hot may be left out and added to *hot instead; the order of the indices is irrelevant.
 * They may store up to COUNT_SLACK indices past the ones they return. */
static int bin_indices__scalar(const float *x, int len, const bin_params *p, int32_t *idx,
                               uint64_t *hot) {
  (void)hot;
  const float lo = p->lo, hi = p->hi;
  const int bins = p->bins;
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
  return len;
}

#if HAVE_AVX2_KERNELS
AVX2_TARGET static int bin_indices__avx2(const float *x, int len, const bin_params *p,
                                         int32_t *idx, uint64_t *hot) {
  const __m256 vlo = _mm256_set1_ps(p->lo), vhi = _mm256_set1_ps(p->hi);
  const __m256 vwidth = _mm256_set1_ps(p->hi - p->lo), vbins = _mm256_set1_ps((float)p->bins);
  const __m256i dropped = _mm256_set1_epi32(p->bins), last = _mm256_set1_epi32(p->bins - 1);
  int i = 0;
  for (; i + 8 <= len; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    /* a zero clamped to the other zero's sign gives the same quotient 0 */
    const __m256 cv = _mm256_min_ps(_mm256_max_ps(v, vlo), vhi);
    const __m256 q = _mm256_mul_ps(_mm256_div_ps(_mm256_sub_ps(cv, vlo), vwidth), vbins);
    const __m256i k = _mm256_min_epi32(_mm256_cvttps_epi32(q), last);
    /* v (finite) is inside [lo, hi] exactly when clamping leaves it equal */
    const __m256 inside = _mm256_cmp_ps(v, cv, _CMP_EQ_OQ);
    _mm256_storeu_si256((__m256i *)(idx + i),
                        _mm256_blendv_epi8(dropped, k, _mm256_castps_si256(inside)));
  }
  return i + bin_indices__scalar(x + i, len - i, p, idx + i, hot);
}

/* The exact bin indices of 16 floats, with the division. */
AVX512_TARGET static inline __m512i bins_of16_div(__m512 v, __m512 vlo, __m512 vwidth,
                                                  __m512 vbins, __m512i last) {
  const __m512 q = _mm512_mul_ps(_mm512_div_ps(_mm512_sub_ps(v, vlo), vwidth), vbins);
  return _mm512_min_epi32(_mm512_cvttps_epi32(q), last);
}

/* The constants of bin_indices__avx512. */
typedef struct bins16 {
  __m512 lo, hi, width, bins, scale_lo, scale_hi;
  __m512i last, hot;
  int bracket;
} bins16;

/* One vector of bin_indices__avx512: the indices of the elements of v in `valid` (all of them but
 * in the last, partial vector) that are inside [lo, hi] and not in the hot bin, stored compressed
 * at idx; returns how many, and adds the hot bin's elements to *hits. check_lo, check_hi are
 * constants: the bound tests the batch range makes unnecessary are compiled out. */
AVX512_TARGET static inline __attribute__((always_inline)) int bins_of16(
    const bins16 *c, __m512 v, __mmask16 valid, int32_t *idx, uint64_t *hits, const int check_lo,
    const int check_hi) {
  /* elements outside [lo, hi] are masked off, so they need no clamping (the conversion of an
   * out-of-range float gives 0x80000000, never a trap) */
  __mmask16 inside = valid;
  if (check_lo) inside = _mm512_mask_cmp_ps_mask(inside, v, c->lo, _CMP_GE_OQ);
  if (check_hi) inside = _mm512_mask_cmp_ps_mask(inside, v, c->hi, _CMP_LE_OQ);
  __m512i k;
  if (c->bracket) {
    const __m512 d = _mm512_sub_ps(v, c->lo);
    k = _mm512_cvttps_epi32(_mm512_mul_ps(d, c->scale_lo));
    const __m512i k_hi = _mm512_cvttps_epi32(_mm512_mul_ps(d, c->scale_hi));
    if (_mm512_mask_cmpneq_epi32_mask(inside, k, k_hi)) {
      k = bins_of16_div(v, c->lo, c->width, c->bins, c->last);
    }
  } else {
    k = bins_of16_div(v, c->lo, c->width, c->bins, c->last);
  }
  const __mmask16 keep = _mm512_mask_cmpneq_epi32_mask(inside, k, c->hot);
  const int kept = __builtin_popcount(keep);
  *hits += (uint64_t)(__builtin_popcount(inside) - kept);
  _mm512_storeu_si512(idx, _mm512_maskz_compress_epi32(keep, k));
  return kept;
}

/* 16 floats a vector: the dropped elements and those of the hot bin are left out (compressed
 * away), the latter counted in *hot. The indices come from the division-free bracket of
 * bin_params_init where it decides them, from the division otherwise. */
AVX512_TARGET static inline __attribute__((always_inline)) int bin_indices_avx512_body(
    const float *x, int len, const bin_params *p, int32_t *idx, uint64_t *hot, const int check_lo,
    const int check_hi) {
  bins16 c;
  c.lo = _mm512_set1_ps(p->lo);
  c.hi = _mm512_set1_ps(p->hi);
  c.width = _mm512_set1_ps(p->hi - p->lo);
  c.bins = _mm512_set1_ps((float)p->bins);
  c.scale_lo = _mm512_set1_ps(p->scale_lo);
  c.scale_hi = _mm512_set1_ps(p->scale_hi);
  c.last = _mm512_set1_epi32(p->bins - 1);
  c.hot = _mm512_set1_epi32(p->hot);
  c.bracket = p->scale_lo > 0.0f;
  int out = 0, i = 0;
  uint64_t hits = 0;
  for (; i + 16 <= len; i += 16) {
    out += bins_of16(&c, _mm512_loadu_ps(x + i), (__mmask16)0xffff, idx + out, &hits, check_lo,
                     check_hi);
  }
  if (i < len) { /* the last vector loads only the elements left */
    const __mmask16 valid = (__mmask16)((1u << (len - i)) - 1);
    out += bins_of16(&c, _mm512_maskz_loadu_ps(valid, x + i), valid, idx + out, &hits, check_lo,
                     check_hi);
  }
  *hot += hits;
  return out;
}

AVX512_TARGET static int bin_indices__avx512(const float *x, int len, const bin_params *p,
                                             int32_t *idx, uint64_t *hot) {
  if (p->check_lo && p->check_hi) return bin_indices_avx512_body(x, len, p, idx, hot, 1, 1);
  if (p->check_lo) return bin_indices_avx512_body(x, len, p, idx, hot, 1, 0);
  if (p->check_hi) return bin_indices_avx512_body(x, len, p, idx, hot, 0, 1);
  return bin_indices_avx512_body(x, len, p, idx, hot, 0, 0);
}
#endif

/* Lane kernel: see the top of the torch.aminmax section. */
typedef int (*lanes_min_max_fn)(const float *x, int64_t vecs, float mn[TORCH_LANES],
                                float mx[TORCH_LANES]);
typedef int (*bin_indices_fn)(const float *x, int len, const bin_params *p, int32_t *idx,
                              uint64_t *hot);
typedef struct l2_params l2_params;
typedef void (*l2_norms_fn)(const l2_params *p, const float *density, int64_t start, int bins,
                            float *norm);

/* The kernels for the ISA cq_isa_active() picks (CQ_ISA=scalar forces the portable ones): AVX2 for
 * avx2, AVX-512 bin indices from avx512vnni up. All give the same counts and bits. */
typedef struct histogram_kernels {
  bin_indices_fn bin_indices;
  lanes_min_max_fn lanes_min_max;
  l2_norms_fn l2_norms;
} histogram_kernels;

static void l2_norms__scalar(const l2_params *p, const float *density, int64_t start, int bins,
                             float *norm);
#if HAVE_AVX2_KERNELS
static void l2_norms__avx512(const l2_params *p, const float *density, int64_t start, int bins,
                             float *norm);
#endif

static histogram_kernels select_kernels(void) {
  histogram_kernels k = {bin_indices__scalar, lanes_min_max__scalar, l2_norms__scalar};
#if HAVE_AVX2_KERNELS
  cq_isa isa;
  if (cq_isa_active(&isa) == CQ_OK && isa >= CQ_ISA_AVX2) {
    k.bin_indices = bin_indices__avx2;
    k.lanes_min_max = lanes_min_max__avx2;
    if (isa >= CQ_ISA_AVX512VNNI) {
      k.bin_indices = bin_indices__avx512;
      k.l2_norms = l2_norms__avx512;
    }
  }
#endif
  return k;
}

/* --- one batch, split among threads ------------------------------------------------------------ */

/* The work of one forward() on a batch of n elements, split into `parts` contiguous parts of whole
 * vectors (the last part also takes the n % 8 elements after the last full vector), one per thread
 * of the default pool. The same split serves both passes, so each thread counts the elements that
 * its min/max scan has just brought into its core's cache. */
typedef struct batch_job {
  histogram_kernels kern;
  cq_threadpool *tp;
  const float *x;
  int64_t n;
  int64_t vecs; /* full 8-float vectors */
  int parts;
  /* pass 1 (torch.aminmax): each part's lanes and NaN flag */
  float mn[MAX_PARTS][TORCH_LANES];
  float mx[MAX_PARTS][TORCH_LANES];
  int nan[MAX_PARTS];
  /* pass 2 (torch.histc): each part counts into its own rows of the state's scratch */
  bin_params bins;
  histogram_state *st;
} batch_job;

/* Elements [*begin, *end) of part t. */
static void part_range(const batch_job *job, int t, int64_t *begin, int64_t *end) {
  int64_t b, e;
  cq_partition(job->vecs, job->parts, t, &b, &e);
  *begin = b * TORCH_LANES;
  *end = t == job->parts - 1 ? job->n : e * TORCH_LANES;
}

/* Runs fn over the parts, on the pool when there is more than one. */
static void run_parts(batch_job *job, cq_parallel_fn fn) {
  if (job->parts == 1) {
    fn(job, 0, 0, 1);
  } else {
    cq_parallel_for(job->tp, job->parts, job->parts, fn, job);
  }
}

/* The number of parts for a batch of n elements: one per thread, at least `grain` elements each. */
static int batch_parts(const histogram_state *st, cq_threadpool *tp, int64_t n) {
  int64_t grain = grain_setting;
  if (grain == 0) grain = st->bins > DEFAULT_GRAIN / 8 ? 8 * (int64_t)st->bins : DEFAULT_GRAIN;
  int64_t parts = n / grain; /* grain >= 8, so every part has a full vector */
  if (parts > cq_threadpool_threads(tp)) parts = cq_threadpool_threads(tp);
  if (parts > MAX_PARTS) parts = MAX_PARTS;
  return parts < 1 ? 1 : (int)parts;
}

/* Makes room for `parts` threads' counters; CQ_ENOMEM (and the state as it was) if it cannot. */
static cq_status reserve_parts(histogram_state *st, int parts) {
  if (parts <= st->parts_cap) return CQ_OK;
  uint64_t *totals = cq_calloc_for((size_t)parts * st->totals_stride, sizeof(uint64_t),
                                   "histogram counts");
  uint32_t *counts = cq_calloc_for((size_t)parts * st->counts_stride, sizeof(uint32_t),
                                   "histogram counters");
  if (!totals || !counts) {
    cq_free(totals);
    cq_free(counts);
    return CQ_ENOMEM;
  }
  cq_free(st->totals);
  cq_free(st->counts);
  st->totals = totals;
  st->counts = counts;
  st->parts_cap = parts;
  return CQ_OK;
}

static void min_max_part(void *ctx, int thread, int64_t begin, int64_t end) {
  (void)thread;
  batch_job *job = ctx;
  for (int64_t t = begin; t < end; t++) {
    int64_t b, e;
    cq_partition(job->vecs, job->parts, (int)t, &b, &e);
    job->nan[t] = job->kern.lanes_min_max(job->x + b * TORCH_LANES, e - b, job->mn[t], job->mx[t]);
  }
}

/* torch.aminmax of the batch into *mn_out, *mx_out. Returns nonzero if the batch holds a NaN or an
 * infinity (the results are meaningless then). */
static int batch_min_max(batch_job *job, float *mn_out, float *mx_out) {
  const float *x = job->x;
  const int64_t n = job->n;
  int bad = 0;
  if (job->vecs == 0) {
    float mn = x[0], mx = x[0];
    bad |= !isfinite(x[0]);
    for (int64_t i = 1; i < n; i++) {
      mn = minps(mn, x[i]);
      mx = maxps(mx, x[i]);
      bad |= !isfinite(x[i]);
    }
    *mn_out = mn;
    *mx_out = mx;
    return bad;
  }
  run_parts(job, min_max_part);
  float mn[TORCH_LANES], mx[TORCH_LANES];
  memcpy(mn, job->mn[0], sizeof mn);
  memcpy(mx, job->mx[0], sizeof mx);
  bad |= job->nan[0];
  for (int t = 1; t < job->parts; t++) {
    for (int k = 0; k < TORCH_LANES; k++) {
      mn[k] = minps(mn[k], job->mn[t][k]);
      mx[k] = maxps(mx[k], job->mx[t][k]);
    }
    bad |= job->nan[t];
  }
  const int64_t full = job->vecs * TORCH_LANES;
  for (int64_t i = full; i < n; i++) bad |= !isfinite(x[i]);
  finish_min_max(mn, mx, x + full, n - full, mn_out, mx_out);
  /* without NaNs, an infinity is the extreme of its lane and so of the batch */
  return bad || !isfinite(*mn_out) || !isfinite(*mx_out);
}

/* Counts the elements of x[0..n) into totals[0..bins) (exact), with the counters c. */
static void count_range(const histogram_kernels *kern, const float *x, int64_t n,
                        const bin_params *p, uint32_t *c, uint64_t *totals) {
  const int bins = p->bins;
  const int64_t stride = (int64_t)bins + 1;
  memset(totals, 0, sizeof(uint64_t) * (size_t)bins);
  int32_t idx[COUNT_CHUNK + COUNT_SLACK];
  /* Counters are flushed into the 64-bit totals every 2^30 elements, so none can overflow. */
  const int64_t flush_every = (int64_t)1 << 30;
  for (int64_t base = 0; base < n; base += flush_every) {
    const int64_t end = n - base < flush_every ? n : base + flush_every;
    memset(c, 0, sizeof(uint32_t) * (size_t)(COUNT_COPIES * stride));
    uint64_t hot = 0;
    for (int64_t i0 = base; i0 < end; i0 += COUNT_CHUNK) {
      const int len = end - i0 < COUNT_CHUNK ? (int)(end - i0) : COUNT_CHUNK;
      const int m = kern->bin_indices(x + i0, len, p, idx, &hot);
      int i = 0;
      for (; i + COUNT_COPIES <= m; i += COUNT_COPIES) {
        c[idx[i]]++;
        c[stride + idx[i + 1]]++;
        c[2 * stride + idx[i + 2]]++;
        c[3 * stride + idx[i + 3]]++;
      }
      for (; i < m; i++) c[idx[i]]++;
    }
    for (int b = 0; b < bins; b++) {
      uint64_t t = 0;
      for (int k = 0; k < COUNT_COPIES; k++) t += c[k * stride + b];
      totals[b] += t;
    }
    if (hot > 0) totals[p->hot] += hot;
  }
}

static void count_part(void *ctx, int thread, int64_t begin, int64_t end) {
  (void)thread;
  batch_job *job = ctx;
  histogram_state *st = job->st;
  for (int64_t t = begin; t < end; t++) {
    int64_t b, e;
    part_range(job, (int)t, &b, &e);
    count_range(&job->kern, job->x + b, e - b, &job->bins, st->counts + t * st->counts_stride,
                st->totals + t * st->totals_stride);
  }
}

/* Counts the batch's elements inside [lo, hi] into st->incoming; xmin, xmax are its extremes. */
static void count_bins(histogram_state *st, batch_job *job, float lo, float hi, float xmin,
                       float xmax) {
  const int bins = st->bins;
  if (hi - lo == 0.0f) {
    /* Edges that round to the same float: PyTorch's index is trunc(0/0), which on x86 lands in
     * bin 0 for every element equal to the edge. */
    uint64_t hits = 0;
    for (int64_t i = 0; i < job->n; i++) hits += job->x[i] == lo;
    memset(st->incoming, 0, sizeof(float) * (size_t)bins);
    st->incoming[0] = (float)hits;
    return;
  }
  bin_params_init(&job->bins, lo, hi, bins, xmin, xmax);
  job->st = st;
  run_parts(job, count_part);
  for (int b = 0; b < bins; b++) {
    uint64_t total = st->totals[b];
    for (int t = 1; t < job->parts; t++) total += st->totals[t * st->totals_stride + b];
    st->incoming[b] = (float)total;
  }
}

/* torch.histc(x, bins, min=int(range_min), max=int(range_max)) into st->incoming. xmin/xmax are the
 * batch's own extremes, which histc falls back to when the truncated bounds coincide. */
static cq_status histc(histogram_state *st, batch_job *job, float range_min, float range_max,
                       float xmin, float xmax) {
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
  count_bins(st, job, (float)lo, (float)hi, xmin, xmax);
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

/* acc + h + h + ... (t >= 0 additions, each rounded to nearest-even double) when they may round,
 * a stretch of additions at a time. By symmetry acc > 0 here (a negative acc is negated with h),
 * normal in the binade [2^(e-1), 2^e), whose doubles are the multiples of U = 2^(e-53):
 * acc = A U with an integer A in [2^52, 2^53), |h| = r U. While the exact sums stay inside the
 * binade, every addition rounds A +- r to the nearest integer, i.e. adds or subtracts the same
 * D = round(r) units: a tie (r an odd multiple of 1/2) goes to the even one, which from an even A
 * is A +- the even one of floor(r) and floor(r) + 1 every time (and A stays even); from an odd A
 * the first addition is done alone. Addition k of a stretch (k = 1, 2, ...) starts from A +- (k - 1) D:
 *  - growing (h > 0): its exact sum stays below 2^53 units exactly when
 *    (k - 1) D <= 2^53 - floor(r) - 1 - A; only its result may reach 2^e itself, which is exact;
 *  - shrinking (h < 0): its exact sum stays at or above 2^52 units, where the binade's grid still
 *    rounds it, exactly when (k - 1) D <= A - 2^52 - ceil(r).
 * So a stretch is one exact product; the addition that leaves the binade, and zero, subnormal or
 * extreme values, are done one at a time. */
static double add_repeated(double acc, double h, int64_t t) {
  while (t > 0) {
    const int neg = acc < 0.0;
    const double a = neg ? -acc : acc, g = neg ? -h : h; /* g > 0 grows |acc|, g < 0 shrinks it */
    if (!(a >= 0x1p-900 && a < 0x1p900 && g != 0.0)) {
      acc += h;
      t--;
      continue;
    }
    int e;
    (void)frexp(a, &e);
    const double unit = ldexp(1.0, e - 53);
    const double r = fabs(g) / unit; /* exact: a power-of-two scaling far from the limits */
    if (!(r < 0x1p52)) {
      acc += h;
      t--;
      continue;
    }
    const double whole = floor(r), frac = r - whole;
    const int64_t units = (int64_t)(a / unit); /* A */
    const int64_t w = (int64_t)whole;
    const int64_t room = g > 0.0 ? ((int64_t)1 << 53) - w - 1 - units
                                 : units - ((int64_t)1 << 52) - w - (frac > 0.0);
    const int tie = frac == 0.5;
    if (room < 0 || (tie && (units & 1))) {
      acc += h;
      t--;
      continue;
    }
    const int64_t step = tie ? w + (w & 1) : w + (frac > 0.5); /* D */
    int64_t k = step == 0 ? t : room / step + 1;
    if (k > t) k = t;
    /* within [2^52, 2^53] units: exact */
    const double next = (double)(g > 0.0 ? units + k * step : units - k * step) * unit;
    acc = neg ? -next : next;
    t -= k;
  }
  return acc;
}

/* acc + h + h + ... (t additions, each rounded to double), the way torch.cumsum accumulates a run of
 * t equal cells. When acc and h are multiples of 2^q and every partial sum stays below 2^(53+q) in
 * magnitude, no addition rounds and the result is acc + t*h, computed exactly; otherwise
 * add_repeated follows the roundings. */
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
  return add_repeated(acc, h, t);
}

/* Old bins whose run sums are checked for exactness together. */
#define MERGE_BLOCK 16

/* The cumulative sums of the upsampled old histogram at the edges of its bins: prefix[j] = the sum
 * through every cell before old bin j, as torch.cumsum accumulates it (add_run bin after bin).
 * Checked a block of bins at a time like add_run checks one run: when the block's values and the
 * sum before it are multiples of 2^q and |sum| + upsample_rate * (sum of |values|) stays below
 * 2^(52+q), no partial sum inside the block (nor any sample taken inside it) rounds, and
 * exact[block] is set; otherwise each run goes through add_run. */
static void merge_prefix_sums(const float *old, int bins, int64_t up, double *prefix,
                              uint8_t *exact) {
  prefix[0] = 0.0;
  for (int j0 = 0; j0 < bins; j0 += MERGE_BLOCK) {
    const int j1 = bins - j0 < MERGE_BLOCK ? bins : j0 + MERGE_BLOCK;
    int q = INT32_MAX;
    double mass = 0.0;
    for (int j = j0; j < j1; j++) {
      if (old[j] == 0.0f) continue;
      const int qj = lowest_bit_exponent((double)old[j]);
      if (qj < q) q = qj;
      mass += fabs((double)old[j]);
    }
    const double acc = prefix[j0];
    if (q != INT32_MAX && acc != 0.0) {
      const int qa = lowest_bit_exponent(acc);
      if (qa < q) q = qa;
    }
    /* the rounding in `bound` is far below the factor 2 between 2^(52+q) and 2^(53+q) */
    const double bound = fabs(acc) + mass * (double)up;
    const int ok = q == INT32_MAX || (q + 52 <= 1023 && bound < power_of_two(q + 52));
    exact[j0 / MERGE_BLOCK] = (uint8_t)ok;
    for (int j = j0; j < j1; j++) {
      prefix[j + 1] = ok ? prefix[j] + (double)up * (double)old[j]
                         : add_run(prefix[j], (double)old[j], up);
    }
  }
}

/* _combine_histograms with the old histogram upsampled (each bin repeated upsample_rate times with
 * its full count) onto a grid of bins * rate cells from cell `start`, cumulatively summed in double,
 * sampled every `rate` cells, differenced against the previous sample rounded to float32, divided
 * by upsample_rate and added to the batch's histogram (st->incoming, updated in place). The
 * samples inside an old bin continue from its prefix sum independently of one another. */
static void combine_histograms(histogram_state *st, int64_t rate, int64_t start) {
  const int bins = st->bins;
  const int64_t up = st->upsample_rate;
  const float *old = st->histogram;
  float *out = st->incoming;
  const double *prefix = st->prefix;
  const uint8_t *exact = st->exact;
  merge_prefix_sums(old, bins, up, st->prefix, st->exact);
  /* x / up is x * (1 / up), rounded once, when 1 / up is exact */
  const int up_pow2 = (up & (up - 1)) == 0;
  const double inv_up = 1.0 / (double)up;
  /* Output bin k samples cell p = (k + 1) rate - 1, which is preceded by n = p + 1 - start cells of
   * the old histogram: floor(n / up) full old bins (clamped to [0, bins]) and n mod up cells of the
   * next one. n grows by `rate` a bin; its quotient and remainder are carried along. */
  const int64_t rate_q = rate / up, rate_r = rate % up;
  const int64_t n0 = rate - start;
  int64_t q = n0 >= 0 ? n0 / up : -((up - 1 - n0) / up); /* floor(n / up) */
  int64_t r = n0 - q * up;                               /* n mod up, in [0, up) */
  float prev = 0.0f; /* previous sample, stored in float32 as PyTorch's shifted copy is */
  for (int k = 0; k < bins; k++) {
    double sample;
    if (q < 0) {
      sample = 0.0;
    } else if (q >= bins) {
      sample = prefix[bins];
    } else {
      sample = prefix[q];
      if (r > 0) {
        sample = exact[q / MERGE_BLOCK] ? sample + (double)r * (double)old[q]
                                        : add_run(sample, (double)old[q], r);
      }
    }
    q += rate_q;
    r += rate_r;
    const int64_t carry = r >= up;
    q += carry;
    r -= carry * up;
    const double diff = sample - (double)prev;
    const float interp = (float)(up_pow2 ? diff * inv_up : diff / (double)up);
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
  batch_job job;
  job.kern = select_kernels();
  job.tp = cq_default_threadpool();
  job.x = x;
  job.n = n;
  job.vecs = n / TORCH_LANES;
  job.parts = batch_parts(st, job.tp, n);
  cq_status status = reserve_parts(st, job.parts);
  if (status != CQ_OK) return status;
  /* pass 1; cq_observer_update leaves the NaN / Inf check of this kind's batches to it */
  float xmin, xmax;
  if (batch_min_max(&job, &xmin, &xmax)) {
    status = cq_observer_nonfinite_error(x, n); /* finds the first one */
    if (status != CQ_OK) return status;
  }
  const float old_min = obs->min_val, old_max = obs->max_val;
  const int uninitialized = old_min == INFINITY && old_max == -INFINITY;
  if (uninitialized || old_min == old_max) {
    /* first data, or the previous data were constant: start over from this batch */
    status = histc(st, &job, xmin, xmax, xmin, xmax);
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

  status = histc(st, &job, cmin, cmax, xmin, xmax);
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
struct l2_params {
  float bin_width; /* f32 of the double source bin width */
  float dst_width; /* f32 of the double destination bin width */
  float half;      /* f32(dst_width / 2) */
  float half3;     /* half^3 in float32 */
  float full;      /* _get_norm(-half, half) without density: (half^3 - (-half)^3) / 3 */
  float top;       /* dst_nbins - 1 in float32 */
};

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

/* The per-bin errors norm[j] of one candidate when dst_nbins <= 65536 and dst_width > 0.
 * Quotients below 2^29 floor exactly through a double division (a and b carry 24 bits, so a
 * non-integral quotient is at least 2^-24 away from an integer), and larger ones clamp to the top
 * bin either way: the result equals PyTorch's floor division followed by the clamp. */
static void l2_norms__scalar(const l2_params *p, const float *density, int64_t start, int bins,
                             float *norm) {
  const double dw = p->dst_width, top = p->top;
  for (int j = 0; j < bins; j++) {
    const float begin = (float)((int64_t)j - start) * p->bin_width;
    const float fin = begin + p->bin_width;
    const double qb = (double)begin / dw, qe = (double)fin / dw;
    const float kb = qb < 0.0 ? 0.0f : (qb >= top ? p->top : (float)(int64_t)qb);
    const float ke = qe < 0.0 ? 0.0f : (qe >= top ? p->top : (float)(int64_t)qe);
    norm[j] = l2_bin_error(p, density[j], begin, fin, kb, ke);
  }
}

#if HAVE_AVX2_KERNELS
/* The clamped destination bin of 8 bin edges a (floats widened to double) without the division:
 * trunc(clamp(q, 0, top)) with q = f64(f64(a * f64(1 / dw)) + 2^-30). With a = A 2^i and
 * dw = D 2^k (integers A, D < 2^24), a non-integral quotient a / dw > 0 is at least 2^-25 from any
 * integer n >= 1: its fractional part is a multiple of 1 / D when i >= k, and of 1 / (D 2^(k-i))
 * otherwise, where a / dw >= 1 means D 2^(k-i) <= A < 2^24, and a / dw < 1 is either below 1/2 or
 * at least 1 / (D 2^(k-i)) >= 2^-25 from 1. Below 2^16 > top, a * f64(1 / dw) is within 2^-36 of
 * a / dw and the addition rounds by at most 2^-37, so q lies in (a / dw, a / dw + 2^-29): q >= top
 * exactly when a / dw >= top, and below that trunc(q) = floor(a / dw) for a / dw >= 0, while a
 * negative a / dw gives q < 2^-29, clamped or truncated to 0: the scalar kernel's bin in every
 * case. Quotients from 2^16 up, and products that overflow to inf, clamp to top as well. */
AVX512_TARGET static inline __m256 l2_dst_bin8(__m512d a, __m512d inv, __m512d eps, __m512d top) {
  __m512d q = _mm512_add_pd(_mm512_mul_pd(a, inv), eps);
  q = _mm512_min_pd(_mm512_max_pd(q, _mm512_setzero_pd()), top);
  return _mm256_cvtepi32_ps(_mm512_cvttpd_epi32(q));
}

AVX512_TARGET static inline __m512 l2_dst_bin16(__m512 a, __m512d inv, __m512d eps, __m512d top) {
  const __m256 lo = l2_dst_bin8(_mm512_cvtps_pd(_mm512_castps512_ps256(a)), inv, eps, top);
  const __m256 hi = l2_dst_bin8(
      _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1))), inv, eps,
      top);
  return _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
}

/* l2_norms__scalar 16 bins at a time: the same float32 operations in the same order (no
 * contraction), and the destination bins of l2_dst_bin8. */
AVX512_TARGET static void l2_norms__avx512(const l2_params *p, const float *density, int64_t start,
                                           int bins, float *norm) {
  const __m512 bw = _mm512_set1_ps(p->bin_width), dstw = _mm512_set1_ps(p->dst_width);
  const __m512 half = _mm512_set1_ps(p->half), half3 = _mm512_set1_ps(p->half3);
  const __m512 full = _mm512_set1_ps(p->full);
  const float nhalf = -p->half;
  const __m512 nhalf3 = _mm512_set1_ps(nhalf * nhalf * nhalf);
  const __m512 three = _mm512_set1_ps(3.0f), one = _mm512_set1_ps(1.0f);
  const __m512 point5 = _mm512_set1_ps(0.5f), zero = _mm512_setzero_ps();
  const __m512d inv = _mm512_set1_pd(1.0 / (double)p->dst_width);
  const __m512d eps = _mm512_set1_pd(0x1p-30), top = _mm512_set1_pd((double)p->top);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  int j = 0;
  for (; j + 16 <= bins; j += 16) {
    const __m512i rel = _mm512_add_epi32(_mm512_set1_epi32((int32_t)((int64_t)j - start)), lane);
    const __m512 begin = _mm512_mul_ps(_mm512_cvtepi32_ps(rel), bw);
    const __m512 fin = _mm512_add_ps(begin, bw);
    const __m512 kb = l2_dst_bin16(begin, inv, eps, top);
    const __m512 ke = l2_dst_bin16(fin, inv, eps, top);
    const __m512 dens = _mm512_loadu_ps(density + j);
    const __m512 db = _mm512_sub_ps(begin, _mm512_mul_ps(_mm512_add_ps(kb, point5), dstw));
    const __m512 first = _mm512_mul_ps(
        dens, _mm512_div_ps(_mm512_sub_ps(half3, _mm512_mul_ps(_mm512_mul_ps(db, db), db)), three));
    const __m512 middle =
        _mm512_mul_ps(_mm512_sub_ps(_mm512_sub_ps(ke, kb), one), _mm512_mul_ps(dens, full));
    const __m512 de = _mm512_sub_ps(fin, _mm512_add_ps(_mm512_mul_ps(ke, dstw), half));
    const __m512 de3 = _mm512_mul_ps(_mm512_mul_ps(de, de), de);
    const __m512 last = _mm512_mul_ps(dens, _mm512_div_ps(_mm512_sub_ps(de3, nhalf3), three));
    _mm512_storeu_ps(norm + j,
                     _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(zero, first), middle), last));
  }
  l2_norms__scalar(p, density + j, start - j, bins - j, norm + j);
}
#endif

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
    select_kernels().l2_norms(&p, density, start, bins, norm);
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
  st->prefix = cq_calloc_for(nb + 1, sizeof(double), "histogram merge sums");
  st->exact = cq_calloc_for(nb / MERGE_BLOCK + 1, 1, "histogram merge flags");
  /* rows rounded up to 64 bytes, plus 64 bytes between the threads' rows */
  st->totals_stride = (nb + 7) / 8 * 8 + 8;
  st->counts_stride = ((size_t)COUNT_COPIES * (nb + 1) + 15) / 16 * 16 + 16;
  obs->state = st;
  if (!st->histogram || !st->incoming || !st->cumsum || !st->density || !st->norm ||
      !st->prefix || !st->exact) {
    return CQ_ENOMEM; /* cq_observer_create frees through destroy */
  }
  return reserve_parts(st, 1);
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
  cq_free(st->prefix);
  cq_free(st->exact);
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

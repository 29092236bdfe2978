/* libFuzzer harness for `cquant observe`'s whole path: options -> observer config -> .npy batch ->
 * forward() -> calculate_qparams() -> the values the command prints (min/max, repr), then the batch
 * quantized and dequantized with the parameters found.
 *
 * Input: 4 option bytes, then the bytes of a .npy file (fuzz/make_corpus.py writes seeds this way).
 *   byte 0: bits 0-2 observer (minmax, moving_average_minmax, histogram, per_channel_minmax,
 *           moving_average_per_channel_minmax, percentile, mse, entropy); bits 3-4 the custom
 *           quant range used when byte 1 bit 7 is set; bits 5-7 --averaging-constant / --eps
 *   byte 1: bits 0-2 --dtype, bits 3-5 --qscheme, bit 6 --reduce-range, bit 7 custom range
 *   byte 2: bits 0-2 --bins, bits 3-5 --ch-axis, bits 6-7 --upsample-rate
 *   byte 3: bits 0-1 --percentile, bits 2-3 --start-bin, bits 4-5 --stride, bits 6-7 a second batch
 *           (none, the same batch again, the batch times 64, the batch times 2^-20)
 * Each choice includes "not given" (PyTorch's default) and values at and beyond the edges; the
 * strings go through cq_observer_config_set exactly as the command's flags do.
 *
 * Checks, besides crashes, leaks and undefined behaviour: every failure is a known status with a
 * one-line message; cq_observer_repr and cq_observer_min_max keep their snprintf-like contracts. */
#include "fuzz_common.h"

static const char *const cq_fuzz_obs_kinds[8] = {
    "minmax", "moving_average_minmax", "histogram", "per_channel_minmax",
    "moving_average_per_channel_minmax", "percentile", "mse", "entropy"};
static const char *const cq_fuzz_obs_dtypes[8] = {NULL, "quint8", "qint8", "qint32", "quint4x2",
                                                  NULL, "qint8", "quint8"};
static const char *const cq_fuzz_obs_qschemes[8] = {
    NULL, "per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
    "per_channel_symmetric", "per_channel_affine_float_qparams", NULL, NULL};
static const char *const cq_fuzz_obs_ranges[4][2] = {
    {"0", "255"}, {"-128", "127"}, {"0", "15"}, {"-1", "1"}};
static const char *const cq_fuzz_obs_avg_eps[8][2] = {
    {NULL, NULL}, {"1", NULL}, {"0.5", NULL}, {"1e-30", NULL},
    {NULL, "0"}, {NULL, "1e-45"}, {NULL, "1000"}, {"0.25", "1e-3"}};
static const char *const cq_fuzz_obs_bins[8] = {NULL, "1", "2", "3", "16", "256", "2049", "0"};
static const char *const cq_fuzz_obs_axes[8] = {NULL, "0", "1", "-1", "2", "7", "-9", NULL};
static const char *const cq_fuzz_obs_upsample[4] = {NULL, "1", "2", "16"};
static const char *const cq_fuzz_obs_percentiles[4] = {NULL, "50", "100", "0.001"};
static const char *const cq_fuzz_obs_start_bins[4] = {NULL, "0", "1", "4096"};
static const char *const cq_fuzz_obs_strides[4] = {NULL, "1", "3", "1000"};

/* Applies one option; returns 0 when the config rejected it (a clean, checked failure). */
static int cq_fuzz_obs_set(cq_observer_config *cfg, const char *key, const char *value) {
  if (!value) return 1;
  cq_status st = cq_observer_config_set(cfg, key, value);
  if (st == CQ_OK) return 1;
  cq_fuzz_check_failure("cq_observer_config_set", st);
  return 0;
}

static int cq_fuzz_obs_config(const uint8_t *opt, cq_observer_config *cfg) {
  if (!cq_fuzz_obs_set(cfg, "observer", cq_fuzz_obs_kinds[opt[0] & 7])) {
    cq_fuzz_violation("observer name '%s' rejected: %s", cq_fuzz_obs_kinds[opt[0] & 7],
                      cq_last_error());
    return 0;
  }
  const char *const *range = cq_fuzz_obs_ranges[(opt[0] >> 3) & 3];
  const char *const *avg_eps = cq_fuzz_obs_avg_eps[opt[0] >> 5];
  return cq_fuzz_obs_set(cfg, "dtype", cq_fuzz_obs_dtypes[opt[1] & 7]) &&
         cq_fuzz_obs_set(cfg, "qscheme", cq_fuzz_obs_qschemes[(opt[1] >> 3) & 7]) &&
         cq_fuzz_obs_set(cfg, "reduce_range", (opt[1] & 0x40) ? "1" : NULL) &&
         cq_fuzz_obs_set(cfg, "quant_min", (opt[1] & 0x80) ? range[0] : NULL) &&
         cq_fuzz_obs_set(cfg, "quant_max", (opt[1] & 0x80) ? range[1] : NULL) &&
         cq_fuzz_obs_set(cfg, "averaging_constant", avg_eps[0]) &&
         cq_fuzz_obs_set(cfg, "eps", avg_eps[1]) &&
         cq_fuzz_obs_set(cfg, "bins", cq_fuzz_obs_bins[opt[2] & 7]) &&
         cq_fuzz_obs_set(cfg, "ch_axis", cq_fuzz_obs_axes[(opt[2] >> 3) & 7]) &&
         cq_fuzz_obs_set(cfg, "upsample_rate", cq_fuzz_obs_upsample[opt[2] >> 6]) &&
         cq_fuzz_obs_set(cfg, "percentile", cq_fuzz_obs_percentiles[opt[3] & 3]) &&
         cq_fuzz_obs_set(cfg, "start_bin", cq_fuzz_obs_start_bins[(opt[3] >> 2) & 3]) &&
         cq_fuzz_obs_set(cfg, "stride", cq_fuzz_obs_strides[(opt[3] >> 4) & 3]);
}

/* What the command prints besides scale and zero point: min/max state and the repr. */
static void cq_fuzz_obs_report(const cq_observer *obs) {
  int64_t n = cq_observer_min_max(obs, NULL, NULL, 0);
  if (n < 0) {
    cq_fuzz_violation("cq_observer_min_max counts %lld values", (long long)n);
    return;
  }
  float *mn = malloc(sizeof(float) * (size_t)(n ? n : 1));
  float *mx = malloc(sizeof(float) * (size_t)(n ? n : 1));
  if (mn && mx && cq_observer_min_max(obs, mn, mx, n) != n) {
    cq_fuzz_violation("cq_observer_min_max changed its count between calls");
  }
  free(mn);
  free(mx);
  size_t len = cq_observer_repr(obs, NULL, 0);
  char *repr = malloc(len + 1);
  if (repr) {
    size_t again = cq_observer_repr(obs, repr, len + 1);
    if (again != len || strlen(repr) != len) {
      cq_fuzz_violation("cq_observer_repr: length %zu, then %zu, string %zu", len, again,
                        strlen(repr));
    }
    char small[8];
    if (cq_observer_repr(obs, small, sizeof small) != len || strlen(small) >= sizeof small) {
      cq_fuzz_violation("cq_observer_repr into 8 bytes broke the snprintf contract");
    }
    free(repr);
  }
}

static void cq_fuzz_obs_quantize(const cq_tensor *x, const cq_qparams *qp) {
  cq_tensor *q = NULL, *back = NULL;
  cq_status st = cq_quantize_tensor(x, qp, &q);
  if (st != CQ_OK) {
    cq_fuzz_check_failure("cq_quantize_tensor", st);
  } else {
    st = cq_dequantize_tensor(q, &back);
    if (st != CQ_OK) cq_fuzz_check_failure("cq_dequantize_tensor", st);
  }
  cq_tensor_free(back);
  cq_tensor_free(q);
}

int cq_fuzz_observe_one(const uint8_t *data, size_t size) {
  if (size < 4) return 0;
  const uint8_t *opt = data;
  cq_observer_config cfg;
  memset(&cfg, 0, sizeof cfg);
  cq_observer *obs = NULL;
  cq_tensor *batch = NULL, *x = NULL;
  cq_qparams qp;
  memset(&qp, 0, sizeof qp);
  if (!cq_fuzz_obs_config(opt, &cfg)) goto done;
  cq_status st = cq_observer_create(&cfg, &obs);
  if (st != CQ_OK) {
    cq_fuzz_check_failure("cq_observer_create", st);
    obs = NULL;
    goto done;
  }
  st = cq_npy_load_buffer(data + 4, size - 4, &batch);
  if (st != CQ_OK) {
    cq_fuzz_check_failure("cq_npy_load_buffer", st);
    goto done;
  }
  st = cq_observer_update_tensor(obs, batch);
  if (st != CQ_OK) {
    cq_fuzz_check_failure("cq_observer_update_tensor", st);
    goto done;
  }
  st = cq_tensor_to_f32(batch, &x);
  if (st != CQ_OK) {
    cq_fuzz_check_failure("cq_tensor_to_f32", st);
    goto done;
  }
  int second = opt[3] >> 6;
  if (second) {
    static const float factors[4] = {1.0f, 1.0f, 64.0f, 0x1p-20f};
    float *xd = x->data;
    for (int64_t i = 0; i < cq_tensor_numel(x); i++) xd[i] *= factors[second];
    st = cq_observer_update_tensor(obs, x);
    if (st != CQ_OK) {
      cq_fuzz_check_failure("cq_observer_update_tensor (second batch)", st);
      goto done;
    }
  }
  st = cq_observer_qparams(obs, &qp);
  if (st != CQ_OK) {
    cq_fuzz_check_failure("cq_observer_qparams", st);
    goto done;
  }
  cq_fuzz_obs_report(obs);
  cq_fuzz_obs_quantize(x, &qp);
done:
  cq_qparams_release(&qp);
  cq_tensor_free(x);
  cq_tensor_free(batch);
  cq_observer_free(obs);
  return 0;
}

CQ_FUZZ_ENTRY_POINTS(cq_fuzz_observe_one)

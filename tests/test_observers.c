/* MinMax, MovingAverageMinMax, PerChannelMinMax and MovingAveragePerChannelMinMax observers against
 * PyTorch 1.13.
 *
 * Golden cases (tests/data/golden/observers/cases.txt, from tools/golden/gen_observers.py) feed a
 * stream of batches to an observer configured through cq_observer_config_set, then compare the
 * running min/max and calculate_qparams() bit for bit and str(observer) exactly. Each stream is run
 * twice (cq_observer_update, then after cq_observer_reset through cq_observer_update_tensor). Direct
 * checks cover defaults, names, option parsing, NaN/Inf rejection and the repr buffer contract. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/check.h"
#include "cquant/npy.h"
#include "cquant/observer.h"
#include "cquant/qparams.h"
#include "cquant/status.h"
#include "cquant/tensor.h"
#include "support/golden.h"

#define GOLDEN_FILE CQ_TEST_DATA_DIR "/golden/observers/cases.txt"

static int detail_budget = 120;
static int warnings_seen;

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

static void count_warning(const char *message, void *user) {
  (void)message;
  (void)user;
  warnings_seen++;
}

static int same_f32(float a, float b) { return check_f32_bits(a) == check_f32_bits(b); }

/* Undoes the generator's escaping of repr strings ("\\n" -> newline, "\\\\" -> backslash). */
static char *unescape(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(n + 1), *o = out;
  if (!out) return NULL;
  for (size_t i = 0; i < n; i++) {
    if (s[i] == '\\' && i + 1 < n) {
      i++;
      *o++ = s[i] == 'n' ? '\n' : s[i];
    } else {
      *o++ = s[i];
    }
  }
  *o = '\0';
  return out;
}

/* Builds the config from "observer=NAME key=value ..." with cq_observer_config_set. Returns the
 * status of the first failing call (and its key in *bad_key). */
static cq_status config_from_string(const char *text, cq_observer_config *cfg, char *bad_key,
                                    size_t cap) {
  *cfg = cq_observer_defaults(CQ_OBSERVER_MINMAX);
  char *copy = strdup(text);
  if (!copy) return CQ_ENOMEM;
  cq_status st = CQ_OK;
  char *save = NULL;
  for (char *tok = strtok_r(copy, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
    char *eq = strchr(tok, '=');
    if (!eq) {
      snprintf(bad_key, cap, "%s", tok);
      st = CQ_EINVAL;
      break;
    }
    *eq = '\0';
    st = cq_observer_config_set(cfg, tok, eq + 1);
    if (st != CQ_OK) {
      snprintf(bad_key, cap, "%s=%s", tok, eq + 1);
      break;
    }
  }
  free(copy);
  return st;
}

static int in_list(const int64_t *list, int n, int64_t v) {
  for (int i = 0; i < n; i++) {
    if (list[i] == v) return 1;
  }
  return 0;
}

/* Feeds batches [nbatches, ...] of `in` (plus empty batches) to the observer. */
static cq_status feed(cq_observer *obs, const cq_tensor *in, const int64_t *empty_before,
                      int n_empty, int use_tensor_api) {
  int64_t nb = in->shape[0];
  int bndim = in->ndim - 1;
  const int64_t *bshape = in->shape + 1;
  int64_t bnumel = 1;
  for (int d = 0; d < bndim; d++) bnumel *= bshape[d];
  /* torch feeds zeros((0,) + batch_shape[1:]) */
  int64_t eshape[CQ_MAX_DIMS];
  int endim = bndim > 0 ? bndim : 1;
  eshape[0] = 0;
  for (int d = 1; d < endim; d++) eshape[d] = bshape[d];
  static float dummy[1];
  for (int64_t b = 0; b <= nb; b++) {
    cq_status st;
    if (in_list(empty_before, n_empty, b)) {
      st = cq_observer_update(obs, dummy, endim, eshape);
      if (st != CQ_OK) return st;
    }
    if (b == nb) break;
    float *data = (float *)in->data + b * bnumel;
    if (use_tensor_api) {
      cq_tensor *t = NULL;
      st = cq_tensor_wrap(&t, CQ_F32, bndim, bshape, data);
      if (st == CQ_OK) st = cq_observer_update_tensor(obs, t);
      cq_tensor_free(t);
    } else {
      st = cq_observer_update(obs, data, bndim, bshape);
    }
    if (st != CQ_OK) return st;
  }
  return CQ_OK;
}

/* Compares the observer's state, qparams and repr with the case; returns the number of problems. */
static int compare_state(const golden_case *c, cq_observer *obs, const char *pass) {
  int bad = 0;
  float *want_min = NULL, *want_max = NULL, *want_scale = NULL, *want_zpf = NULL;
  int64_t *want_zp = NULL;
  float *got_min = NULL, *got_max = NULL;
  char *want_repr = NULL, *got_repr = NULL;
  cq_qparams qp;
  memset(&qp, 0, sizeof qp);
  int nmin = golden_parse_floats(golden_get(c, "min_val") ? golden_get(c, "min_val") : "",
                                 &want_min);
  int nmax = golden_parse_floats(golden_get(c, "max_val") ? golden_get(c, "max_val") : "",
                                 &want_max);
  int nscale = golden_parse_floats(golden_get(c, "scale") ? golden_get(c, "scale") : "x",
                                   &want_scale);
  int is_float_zp = golden_get(c, "zero_point_float") != NULL;
  int nzp = is_float_zp ? golden_parse_floats(golden_get(c, "zero_point_float"), &want_zpf)
                        : golden_parse_ints(golden_get(c, "zero_point") ? golden_get(c, "zero_point")
                                                                         : "x",
                                            &want_zp);
  if (nmin < 0 || nmax < 0 || nscale < 0 || nzp < 0 || nmin != nmax || nscale != nzp) {
    CHECK_MSG(0, "case %s: malformed expected values", c->name);
    bad++;
    goto done;
  }

  /* running min / max */
  int64_t cap = nmin + 1;
  got_min = calloc((size_t)cap, sizeof *got_min);
  got_max = calloc((size_t)cap, sizeof *got_max);
  if (!got_min || !got_max) goto done;
  int64_t n = cq_observer_min_max(obs, got_min, got_max, cap);
  /* PyTorch's per-tensor state before data is (inf, -inf): one value */
  if (n != nmin) {
    detail("%s [%s]: cq_observer_min_max gave %lld values, want %d", c->name, pass, (long long)n,
           nmin);
    bad++;
  } else {
    for (int i = 0; i < nmin; i++) {
      if (!same_f32(got_min[i], want_min[i]) || !same_f32(got_max[i], want_max[i])) {
        if (bad < 4) {
          detail("%s [%s]: channel %d: min/max got (%.9g, %.9g) want (%.9g, %.9g)", c->name, pass,
                 i, got_min[i], got_max[i], want_min[i], want_max[i]);
        }
        bad++;
      }
    }
  }
  int64_t nb_data = 0;
  for (int i = 0; i < nmin; i++) nb_data += isfinite(want_min[i]) != 0;
  int expect_data = nmin > 0 && nb_data > 0;
  if (cq_observer_has_data(obs) != expect_data) {
    detail("%s [%s]: cq_observer_has_data %d, want %d", c->name, pass, cq_observer_has_data(obs),
           expect_data);
    bad++;
  }

  /* calculate_qparams */
  int warn_before = warnings_seen;
  cq_status st = cq_observer_qparams(obs, &qp);
  if (st != CQ_OK) {
    detail("%s [%s]: cq_observer_qparams: %s: %s", c->name, pass, cq_status_str(st),
           cq_last_error());
    bad++;
    memset(&qp, 0, sizeof qp);
  } else {
    if (!expect_data && warnings_seen == warn_before) {
      detail("%s [%s]: no warning for an observer that saw no data", c->name, pass);
      bad++;
    }
    int32_t qmin = 0, qmax = 0;
    cq_observer_quant_range(obs, &qmin, &qmax);
    if (qp.count != nscale) {
      detail("%s [%s]: qparams count %lld, want %d", c->name, pass, (long long)qp.count, nscale);
      bad++;
    } else {
      for (int i = 0; i < nscale; i++) {
        int zp_ok = is_float_zp ? (qp.zero_point_float && same_f32(qp.zero_point_float[i],
                                                                   want_zpf[i]))
                                : qp.zero_point[i] == want_zp[i];
        if (!same_f32(qp.scale[i], want_scale[i]) || !zp_ok) {
          if (bad < 4) {
            if (is_float_zp) {
              detail("%s [%s]: channel %d: got scale %.9g zp %.9g, want scale %.9g zp %.9g",
                     c->name, pass, i, qp.scale[i],
                     qp.zero_point_float ? qp.zero_point_float[i] : NAN, want_scale[i],
                     want_zpf[i]);
            } else {
              detail("%s [%s]: channel %d: got scale %.9g (0x%08x) zp %d, want scale %.9g "
                     "(0x%08x) zp %lld", c->name, pass, i, qp.scale[i],
                     check_f32_bits(qp.scale[i]), qp.zero_point[i], want_scale[i],
                     check_f32_bits(want_scale[i]), (long long)want_zp[i]);
            }
          }
          bad++;
        }
      }
    }
  }

  /* repr */
  const char *r = golden_get(c, "repr");
  want_repr = r ? unescape(r) : NULL;
  size_t len = cq_observer_repr(obs, NULL, 0);
  got_repr = malloc(len + 1);
  if (want_repr && got_repr) {
    size_t len2 = cq_observer_repr(obs, got_repr, len + 1);
    if (len2 != len || strlen(got_repr) != len) {
      detail("%s [%s]: cq_observer_repr length %zu / %zu / %zu", c->name, pass, len, len2,
             strlen(got_repr));
      bad++;
    } else if (strcmp(got_repr, want_repr) != 0) {
      detail("%s [%s]: repr\n    got:  %s\n    want: %s", c->name, pass, got_repr, want_repr);
      bad++;
    }
  } else {
    bad++;
  }
done:
  cq_qparams_release(&qp);
  free(want_min);
  free(want_max);
  free(want_scale);
  free(want_zpf);
  free(want_zp);
  free(got_min);
  free(got_max);
  free(want_repr);
  free(got_repr);
  return bad;
}

static void golden_case_run(const golden_file *g, const golden_case *c, int *n_error_cases) {
  const char *config = golden_get(c, "config");
  CHECK_MSG(config != NULL, "case %s: no config", c->name);
  if (!config) return;
  const char *expect_error = golden_get(c, "expect_error");
  cq_observer_config cfg;
  char bad_key[128] = "";
  cq_status st = config_from_string(config, &cfg, bad_key, sizeof bad_key);
  cq_observer *obs = NULL;
  cq_tensor *in = NULL;
  int64_t *empty = NULL;
  int n_empty = 0;

  if (st == CQ_OK) st = cq_observer_create(&cfg, &obs);
  if (expect_error && strcmp(expect_error, "create") == 0) {
    (*n_error_cases)++;
    CHECK_MSG(st != CQ_OK, "case %s: config '%s' accepted; torch raises %s", c->name, config,
              golden_get(c, "error"));
    CHECK_MSG(st == CQ_OK || strlen(cq_last_error()) > 0, "case %s: no error message", c->name);
    goto done;
  }
  CHECK_MSG(st == CQ_OK, "case %s: config '%s' (%s): %s: %s", c->name, config, bad_key,
            cq_status_str(st), cq_last_error());
  if (st != CQ_OK) goto done;

  const char *input = golden_get(c, "input");
  char path[1024];
  if (!input || cq_npy_load(golden_path(g, input, path, sizeof path), &in) != CQ_OK) {
    CHECK_MSG(0, "case %s: cannot load input: %s", c->name, cq_last_error());
    goto done;
  }
  CHECK_MSG(in->dtype == CQ_F32 && in->ndim >= 1, "case %s: input is not float32 [nbatches, ...]",
            c->name);
  if (in->dtype != CQ_F32 || in->ndim < 1) goto done;
  if (golden_get(c, "empty_before")) n_empty = golden_parse_ints(golden_get(c, "empty_before"), &empty);
  if (n_empty < 0) n_empty = 0;

  st = feed(obs, in, empty, n_empty, 0);
  if (expect_error) {
    (*n_error_cases)++;
    CHECK_MSG(st != CQ_OK, "case %s: update accepted; torch raises %s", c->name,
              golden_get(c, "error"));
    goto done;
  }
  CHECK_MSG(st == CQ_OK, "case %s: cq_observer_update: %s: %s", c->name, cq_status_str(st),
            cq_last_error());
  if (st != CQ_OK) goto done;

  int32_t qmin = 0, qmax = 0;
  cq_observer_quant_range(obs, &qmin, &qmax);
  int64_t want_qmin = golden_get(c, "quant_min") ? strtoll(golden_get(c, "quant_min"), NULL, 10) : 0;
  int64_t want_qmax = golden_get(c, "quant_max") ? strtoll(golden_get(c, "quant_max"), NULL, 10) : 0;
  CHECK_MSG(qmin == want_qmin && qmax == want_qmax, "case %s: quant range [%d, %d], want [%lld, %lld]",
            c->name, qmin, qmax, (long long)want_qmin, (long long)want_qmax);
  const cq_observer_config *got_cfg = cq_observer_config_of(obs);
  CHECK(got_cfg != NULL && got_cfg->kind == cfg.kind && got_cfg->dtype == cfg.dtype &&
        got_cfg->qscheme == cfg.qscheme);

  int bad = compare_state(c, obs, "update");
  CHECK_MSG(bad == 0, "case %s: %d mismatches after cq_observer_update", c->name, bad);

  /* reset forgets everything; the same stream through the tensor API gives the same answers */
  cq_observer_reset(obs);
  CHECK_MSG(!cq_observer_has_data(obs), "case %s: has data after reset", c->name);
  CHECK_MSG(cq_observer_channels(obs) == 0, "case %s: channels after reset", c->name);
  st = feed(obs, in, empty, n_empty, 1);
  CHECK_MSG(st == CQ_OK, "case %s: cq_observer_update_tensor: %s", c->name, cq_last_error());
  if (st == CQ_OK) {
    bad = compare_state(c, obs, "reset+update_tensor");
    CHECK_MSG(bad == 0, "case %s: %d mismatches after reset and cq_observer_update_tensor",
              c->name, bad);
  }
done:
  cq_observer_free(obs);
  cq_tensor_free(in);
  free(empty);
}

static void test_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN_FILE, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN_FILE);
    return;
  }
  int n_error_cases = 0, kinds[4] = {0};
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    long failed_before = check_failed;
    golden_case_run(&g, c, &n_error_cases);
    if (check_failed != failed_before) fprintf(stderr, "FAILED case %s\n", c->name);
    const char *cfg = golden_get(c, "config");
    if (cfg) {
      if (!strncmp(cfg, "observer=minmax", 15)) kinds[0]++;
      else if (!strncmp(cfg, "observer=moving_average_minmax", 30)) kinds[1]++;
      else if (!strncmp(cfg, "observer=per_channel_minmax", 27)) kinds[2]++;
      else if (!strncmp(cfg, "observer=moving_average_per_channel_minmax", 42)) kinds[3]++;
    }
  }
  printf("golden %s: %d cases (minmax %d, moving_average_minmax %d, per_channel_minmax %d, "
         "moving_average_per_channel_minmax %d; %d expect an error)\n", GOLDEN_FILE, g.count,
         kinds[0], kinds[1], kinds[2], kinds[3], n_error_cases);
  CHECK(g.count > 500);
  CHECK(kinds[0] > 0 && kinds[1] > 0 && kinds[2] > 0 && kinds[3] > 0 && n_error_cases > 0);
  golden_free(&g);
}

/* --- direct checks ------------------------------------------------------------------------- */

static void test_defaults_and_names(void) {
  cq_observer_config c = cq_observer_defaults(CQ_OBSERVER_MINMAX);
  CHECK_INT_EQ(c.kind, CQ_OBSERVER_MINMAX);
  CHECK_INT_EQ(c.dtype, CQ_QUINT8);
  CHECK_INT_EQ(c.qscheme, CQ_PER_TENSOR_AFFINE);
  CHECK_INT_EQ(c.reduce_range, 0);
  CHECK_INT_EQ(c.has_quant_range, 0);
  CHECK_F32_BITS(c.eps, FLT_EPSILON);
  c = cq_observer_defaults(CQ_OBSERVER_MOVING_AVERAGE_MINMAX);
  CHECK_F32_BITS(c.averaging_constant, 0.01f);
  CHECK_INT_EQ(c.qscheme, CQ_PER_TENSOR_AFFINE);
  c = cq_observer_defaults(CQ_OBSERVER_PER_CHANNEL_MINMAX);
  CHECK_INT_EQ(c.qscheme, CQ_PER_CHANNEL_AFFINE);
  CHECK_INT_EQ(c.ch_axis, 0);
  CHECK_INT_EQ(c.dtype, CQ_QUINT8);
  c = cq_observer_defaults(CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX);
  CHECK_INT_EQ(c.qscheme, CQ_PER_CHANNEL_AFFINE);
  CHECK_F32_BITS(c.averaging_constant, 0.01f);

  static const struct {
    cq_observer_kind kind;
    const char *cli, *cls;
  } names[] = {
      {CQ_OBSERVER_MINMAX, "minmax", "MinMaxObserver"},
      {CQ_OBSERVER_MOVING_AVERAGE_MINMAX, "moving_average_minmax", "MovingAverageMinMaxObserver"},
      {CQ_OBSERVER_PER_CHANNEL_MINMAX, "per_channel_minmax", "PerChannelMinMaxObserver"},
      {CQ_OBSERVER_MOVING_AVERAGE_PER_CHANNEL_MINMAX, "moving_average_per_channel_minmax",
       "MovingAveragePerChannelMinMaxObserver"},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    CHECK_STR_EQ(cq_observer_kind_name(names[i].kind), names[i].cli);
    CHECK_STR_EQ(cq_observer_class_name(names[i].kind), names[i].cls);
    cq_observer_kind k = CQ_OBSERVER_KIND_COUNT;
    CHECK_OK(cq_observer_kind_parse(names[i].cli, &k));
    CHECK_INT_EQ(k, names[i].kind);
    k = CQ_OBSERVER_KIND_COUNT;
    CHECK_OK(cq_observer_kind_parse(names[i].cls, &k));
    CHECK_INT_EQ(k, names[i].kind);
  }
  cq_observer_kind k;
  CHECK_STATUS(cq_observer_kind_parse("min_max", &k), CQ_EINVAL);
}

static void test_config_set(void) {
  cq_observer_config c = cq_observer_defaults(CQ_OBSERVER_MINMAX);
  CHECK_OK(cq_observer_config_set(&c, "observer", "per_channel_minmax"));
  CHECK_INT_EQ(c.kind, CQ_OBSERVER_PER_CHANNEL_MINMAX);
  CHECK_INT_EQ(c.qscheme, CQ_PER_CHANNEL_AFFINE);
  CHECK_OK(cq_observer_config_set(&c, "dtype", "qint8"));
  CHECK_INT_EQ(c.dtype, CQ_QINT8);
  CHECK_OK(cq_observer_config_set(&c, "qscheme", "per_channel_symmetric"));
  CHECK_INT_EQ(c.qscheme, CQ_PER_CHANNEL_SYMMETRIC);
  CHECK_OK(cq_observer_config_set(&c, "reduce_range", "1"));
  CHECK_INT_EQ(c.reduce_range, 1);
  CHECK_OK(cq_observer_config_set(&c, "reduce_range", "0"));
  CHECK_INT_EQ(c.reduce_range, 0);
  CHECK_OK(cq_observer_config_set(&c, "quant_min", "-127"));
  CHECK_OK(cq_observer_config_set(&c, "quant_max", "127"));
  CHECK(c.has_quant_range && c.quant_min == -127 && c.quant_max == 127);
  CHECK_OK(cq_observer_config_set(&c, "eps", "0.000244140625"));
  CHECK_F32_BITS(c.eps, 0x1p-12f);
  CHECK_OK(cq_observer_config_set(&c, "ch_axis", "-1"));
  CHECK_INT_EQ(c.ch_axis, -1);
  CHECK_OK(cq_observer_config_set(&c, "averaging_constant", "0.1"));
  CHECK_F32_BITS(c.averaging_constant, 0.1f);

  CHECK_STATUS(cq_observer_config_set(&c, "no_such_option", "1"), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "no_such_option") != NULL);
  CHECK_STATUS(cq_observer_config_set(&c, "dtype", "int8"), CQ_EINVAL);
  CHECK_STATUS(cq_observer_config_set(&c, "reduce_range", "maybe"), CQ_EINVAL);
  CHECK_STATUS(cq_observer_config_set(&c, "eps", "abc"), CQ_EINVAL);
  CHECK_STATUS(cq_observer_config_set(&c, "quant_min", "1.5"), CQ_EINVAL);
  CHECK_STATUS(cq_observer_config_set(&c, "ch_axis", ""), CQ_EINVAL);
  CHECK_STATUS(cq_observer_config_set(&c, "observer", "nope"), CQ_EINVAL);
}

static cq_observer *make(cq_observer_kind kind, const char *k1, const char *v1) {
  cq_observer_config c = cq_observer_defaults(kind);
  if (k1) CHECK_OK(cq_observer_config_set(&c, k1, v1));
  cq_observer *o = NULL;
  CHECK_OK(cq_observer_create(&c, &o));
  return o;
}

static void test_create_validation(void) {
  cq_observer *o = NULL;
  cq_observer_config c = cq_observer_defaults(CQ_OBSERVER_MINMAX);
  c.qscheme = CQ_PER_CHANNEL_AFFINE;
  CHECK(cq_observer_create(&c, &o) != CQ_OK && o == NULL);
  c = cq_observer_defaults(CQ_OBSERVER_PER_CHANNEL_MINMAX);
  c.qscheme = CQ_PER_TENSOR_SYMMETRIC;
  CHECK(cq_observer_create(&c, &o) != CQ_OK && o == NULL);
  c = cq_observer_defaults(CQ_OBSERVER_MINMAX);
  c.qscheme = CQ_PER_TENSOR_SYMMETRIC;
  c.reduce_range = 1;
  CHECK(cq_observer_create(&c, &o) != CQ_OK && o == NULL);
  CHECK(strlen(cq_last_error()) > 0);
  c = cq_observer_defaults(CQ_OBSERVER_MINMAX);
  c.dtype = CQ_QFLOAT32;
  CHECK(cq_observer_create(&c, &o) != CQ_OK && o == NULL);
  c = cq_observer_defaults(CQ_OBSERVER_MINMAX);
  c.has_quant_range = 1;
  c.quant_min = 5;
  c.quant_max = 10;
  CHECK_STATUS(cq_observer_create(&c, &o), CQ_EINVAL);
  CHECK(o == NULL);
}

/* Spec 1.3 / 1.4 examples and the NaN/Inf rejection that cquant adds. */
static void test_update_semantics(void) {
  int64_t shape2[1] = {2};
  cq_observer *o = make(CQ_OBSERVER_MOVING_AVERAGE_MINMAX, NULL, NULL);
  const float b1[2] = {-1.0f, 1.0f}, b2[2] = {-3.0f, 5.0f};
  CHECK_OK(cq_observer_update(o, b1, 1, shape2));
  CHECK_OK(cq_observer_update(o, b2, 1, shape2));
  float mn = 0, mx = 0;
  CHECK_INT_EQ(cq_observer_min_max(o, &mn, &mx, 1), 1);
  const float c = 0.01f;
  CHECK_F32_BITS(mn, -1.0f + c * (-3.0f - -1.0f));
  CHECK_F32_BITS(mx, 1.0f + c * (5.0f - 1.0f));
  CHECK(fabsf(mn - -1.02f) < 1e-6f && fabsf(mx - 1.04f) < 1e-6f);

  /* a non-finite batch is rejected and leaves the state unchanged */
  const float bad[3] = {0.5f, NAN, 2.0f};
  int64_t shape3[1] = {3};
  CHECK_STATUS(cq_observer_update(o, bad, 1, shape3), CQ_EVALUE);
  CHECK(strstr(cq_last_error(), "1") != NULL); /* names the element index */
  const float inf[2] = {INFINITY, 0.0f};
  CHECK_STATUS(cq_observer_update(o, inf, 1, shape2), CQ_EVALUE);
  const float ninf[2] = {0.0f, -INFINITY};
  CHECK_STATUS(cq_observer_update(o, ninf, 1, shape2), CQ_EVALUE);
  float mn2 = 0, mx2 = 0;
  CHECK_INT_EQ(cq_observer_min_max(o, &mn2, &mx2, 1), 1);
  CHECK_F32_BITS(mn2, mn);
  CHECK_F32_BITS(mx2, mx);
  cq_observer_free(o);

  /* rejected as the first batch: still no data */
  o = make(CQ_OBSERVER_MINMAX, NULL, NULL);
  CHECK_STATUS(cq_observer_update(o, bad, 1, shape3), CQ_EVALUE);
  CHECK(!cq_observer_has_data(o));
  char buf[128];
  cq_observer_repr(o, buf, sizeof buf);
  CHECK_STR_EQ(buf, "MinMaxObserver(min_val=inf, max_val=-inf)");
  /* empty batches are ignored */
  int64_t empty_shape[2] = {0, 4};
  CHECK_OK(cq_observer_update(o, bad, 2, empty_shape));
  CHECK(!cq_observer_has_data(o));
  CHECK_INT_EQ(cq_observer_channels(o), 0);
  CHECK_OK(cq_observer_update(o, b2, 1, shape2));
  CHECK(cq_observer_has_data(o));
  CHECK_INT_EQ(cq_observer_channels(o), 1);
  cq_observer_free(o);

  /* per-channel: ch_axis must be < ndim, and the channel count comes from the data */
  o = make(CQ_OBSERVER_PER_CHANNEL_MINMAX, "ch_axis", "2");
  const float x6[6] = {1, 2, 3, 4, 5, 6};
  int64_t s23[2] = {2, 3};
  CHECK(cq_observer_update(o, x6, 2, s23) != CQ_OK);
  CHECK(!cq_observer_has_data(o));
  cq_observer_free(o);
  o = make(CQ_OBSERVER_PER_CHANNEL_MINMAX, "ch_axis", "-1");
  CHECK_OK(cq_observer_update(o, x6, 2, s23));
  CHECK_INT_EQ(cq_observer_channels(o), 3);
  float mins[3], maxs[3];
  CHECK_INT_EQ(cq_observer_min_max(o, mins, maxs, 3), 3);
  CHECK(mins[0] == 1 && maxs[0] == 4 && mins[2] == 3 && maxs[2] == 6);
  /* too small a buffer: the count is returned and nothing is written */
  float m1[1] = {-7.0f}, x1[1] = {-7.0f};
  CHECK_INT_EQ(cq_observer_min_max(o, m1, x1, 1), 3);
  CHECK(m1[0] == -7.0f && x1[0] == -7.0f);
  cq_observer_free(o);

  /* update_tensor converts other dtypes to float32 first */
  o = make(CQ_OBSERVER_MINMAX, NULL, NULL);
  cq_tensor *t = NULL;
  int32_t ints[4] = {-5, 7, 300, 2};
  int64_t s4[1] = {4};
  CHECK_OK(cq_tensor_wrap(&t, CQ_S32, 1, s4, ints));
  CHECK_OK(cq_observer_update_tensor(o, t));
  CHECK_INT_EQ(cq_observer_min_max(o, &mn, &mx, 1), 1);
  CHECK(mn == -5.0f && mx == 300.0f);
  cq_tensor_free(t);
  double dbl[2] = {0.1, -1e-3};
  int64_t s2[1] = {2};
  CHECK_OK(cq_tensor_wrap(&t, CQ_F64, 1, s2, dbl));
  CHECK_OK(cq_observer_update_tensor(o, t));
  CHECK_INT_EQ(cq_observer_min_max(o, &mn, &mx, 1), 1);
  CHECK(mn == -5.0f && mx == 300.0f);
  cq_tensor_free(t);
  cq_observer_free(o);
}

static void test_repr_buffer(void) {
  cq_observer *o = make(CQ_OBSERVER_MINMAX, NULL, NULL);
  const float x[3] = {-1.5f, 0.0f, 2.25f};
  int64_t s3[1] = {3};
  CHECK_OK(cq_observer_update(o, x, 1, s3));
  const char *want = "MinMaxObserver(min_val=-1.5, max_val=2.25)";
  char buf[128];
  CHECK_INT_EQ(cq_observer_repr(o, buf, sizeof buf), strlen(want));
  CHECK_STR_EQ(buf, want);
  char small[8];
  memset(small, 'x', sizeof small);
  CHECK_INT_EQ(cq_observer_repr(o, small, sizeof small), strlen(want));
  CHECK(small[7] == '\0' && strncmp(small, want, 7) == 0);
  CHECK_INT_EQ(cq_observer_repr(o, NULL, 0), strlen(want));
  cq_observer_free(o);

  o = make(CQ_OBSERVER_PER_CHANNEL_MINMAX, NULL, NULL);
  CHECK_INT_EQ(cq_observer_repr(o, buf, sizeof buf),
               strlen("PerChannelMinMaxObserver(min_val=tensor([]), max_val=tensor([]))"));
  CHECK_STR_EQ(buf, "PerChannelMinMaxObserver(min_val=tensor([]), max_val=tensor([]))");
  /* never run: one default scale/zero point, shape [1] */
  cq_qparams qp;
  int warn_before = warnings_seen;
  CHECK_OK(cq_observer_qparams(o, &qp));
  CHECK(warnings_seen > warn_before);
  CHECK(qp.count == 1 && qp.scale[0] == 1.0f && qp.zero_point[0] == 0);
  cq_qparams_release(&qp);
  cq_observer_free(o);
}

int main(void) {
  cq_set_warning_handler(count_warning, NULL);
  test_defaults_and_names();
  test_config_set();
  test_create_validation();
  test_update_semantics();
  test_repr_buffer();
  test_golden();
  cq_set_warning_handler(NULL, NULL);
  return check_summary("test_observers");
}

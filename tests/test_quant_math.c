/* Quantization math against PyTorch 1.13: the observers' qparam rule (cq_calculate_qparams,
 * cq_quant_range_resolve), quantize / dequantize per tensor and per channel, fake-quantize forward
 * and backward, and ChooseQuantizationParams (cq_choose_qparams).
 *
 * Golden cases come from tests/data/golden/quant_math/cases.txt (tools/golden/gen_quant_math.py);
 * everything is compared bit for bit. Direct checks cover the worked examples and edge cases of
 * torch-1.13-semantics.md sections 1.1, 1.2, 2.1-2.4 and 2.6, and argument validation. */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/check.h"
#include "cquant/npy.h"
#include "cquant/qparams.h"
#include "cquant/quantize.h"
#include "cquant/status.h"
#include "cquant/tensor.h"
#include "support/golden.h"

#define GOLDEN_FILE CQ_TEST_DATA_DIR "/golden/quant_math/cases.txt"

/* Mismatch details printed in total, so a badly broken build still gives a readable log. */
static int detail_budget = 120;
static int cases_run;

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

static int same_f32(float a, float b) { return check_f32_bits(a) == check_f32_bits(b); }

static int same_f64(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* --- reading cases ------------------------------------------------------------------------- */

static const char *need(const golden_case *c, const char *key) {
  const char *v = golden_get(c, key);
  CHECK_MSG(v != NULL, "case %s: missing key '%s'", c->name, key);
  return v;
}

static int64_t get_int(const golden_case *c, const char *key) {
  const char *v = need(c, key);
  return v ? strtoll(v, NULL, 10) : 0;
}

static float get_f32(const golden_case *c, const char *key) {
  const char *v = need(c, key);
  return v ? (float)strtod(v, NULL) : 0.0f;
}

/* Float / int lists; the count is returned through n (-1 on error, reported). */
static float *get_floats(const golden_case *c, const char *key, int *n) {
  float *out = NULL;
  const char *v = need(c, key);
  *n = v ? golden_parse_floats(v, &out) : -1;
  CHECK_MSG(*n >= 0, "case %s: cannot parse '%s'", c->name, key);
  return *n >= 0 ? out : NULL;
}

static int64_t *get_ints(const golden_case *c, const char *key, int *n) {
  int64_t *out = NULL;
  const char *v = need(c, key);
  *n = v ? golden_parse_ints(v, &out) : -1;
  CHECK_MSG(*n >= 0, "case %s: cannot parse '%s'", c->name, key);
  return *n >= 0 ? out : NULL;
}

static int parse_doubles(const char *value, double **out) {
  int n = 0, cap = 16;
  double *v = malloc(sizeof *v * (size_t)cap);
  if (!v) return -1;
  const char *p = value;
  for (;;) {
    while (*p == ' ') p++;
    if (!*p) break;
    char *end;
    double d = strtod(p, &end);
    if (end == p) {
      free(v);
      return -1;
    }
    if (n == cap) {
      cap *= 2;
      double *nv = realloc(v, sizeof *v * (size_t)cap);
      if (!nv) {
        free(v);
        return -1;
      }
      v = nv;
    }
    v[n++] = d;
    p = end;
  }
  *out = v;
  return n;
}

static cq_qdtype get_qdtype(const golden_case *c) {
  cq_qdtype d = CQ_QUINT8;
  const char *v = need(c, "dtype");
  if (v) CHECK_OK(cq_qdtype_parse(v, &d));
  return d;
}

/* Loads the .npy named by `key` and checks its dtype; NULL (reported) on failure. */
static cq_tensor *load_npy(const golden_file *g, const golden_case *c, const char *key,
                           cq_dtype want) {
  const char *name = need(c, key);
  if (!name) return NULL;
  char path[1024];
  cq_tensor *t = NULL;
  cq_status st = cq_npy_load(golden_path(g, name, path, sizeof path), &t);
  CHECK_MSG(st == CQ_OK, "case %s: cq_npy_load(%s): %s: %s", c->name, path, cq_status_str(st),
            cq_last_error());
  if (st != CQ_OK) return NULL;
  CHECK_MSG(t->dtype == want, "case %s: %s has dtype %d, expected %d", c->name, name,
            (int)t->dtype, (int)want);
  if (t->dtype != want) {
    cq_tensor_free(t);
    return NULL;
  }
  return t;
}

static cq_dtype storage_of(cq_qdtype d) {
  cq_dtype s = CQ_U8;
  CHECK_OK(cq_qdtype_storage(d, &s));
  return s;
}

static int64_t storage_get(const void *data, cq_dtype dt, int64_t i) {
  switch (dt) {
    case CQ_U8: return ((const uint8_t *)data)[i];
    case CQ_S8: return ((const int8_t *)data)[i];
    case CQ_S32: return ((const int32_t *)data)[i];
    default: return 0;
  }
}

/* Compares quantized integers element by element; reports the first few differences. */
static int compare_q(const char *what, const golden_case *c, const cq_tensor *x, const void *got,
                     const void *want, cq_dtype dt, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; i++) {
    int64_t a = storage_get(got, dt, i), b = storage_get(want, dt, i);
    if (a != b) {
      if (bad < 4) {
        detail("%s %s[%lld]: x=%.9g got %lld want %lld", c->name, what, (long long)i,
               x ? ((const float *)x->data)[i] : 0.0, (long long)a, (long long)b);
      }
      bad++;
    }
  }
  CHECK_MSG(bad == 0, "case %s: %s: %d of %lld values differ", c->name, what, bad, (long long)n);
  return bad;
}

static int compare_f32(const char *what, const golden_case *c, const float *x, const float *got,
                       const float *want, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; i++) {
    if (!same_f32(got[i], want[i])) {
      if (bad < 4) {
        detail("%s %s[%lld]: x=%.9g got %.9g (0x%08x) want %.9g (0x%08x)", c->name, what,
               (long long)i, x ? x[i] : 0.0, got[i], check_f32_bits(got[i]), want[i],
               check_f32_bits(want[i]));
      }
      bad++;
    }
  }
  CHECK_MSG(bad == 0, "case %s: %s: %d of %lld floats differ", c->name, what, bad, (long long)n);
  return bad;
}

static int compare_u8(const char *what, const golden_case *c, const float *x, const uint8_t *got,
                      const uint8_t *want, int64_t n) {
  int bad = 0;
  for (int64_t i = 0; i < n; i++) {
    if (got[i] != want[i]) {
      if (bad < 4) {
        detail("%s %s[%lld]: x=%.9g got %u want %u", c->name, what, (long long)i,
               x ? x[i] : 0.0, got[i], want[i]);
      }
      bad++;
    }
  }
  CHECK_MSG(bad == 0, "case %s: %s: %d of %lld bytes differ", c->name, what, bad, (long long)n);
  return bad;
}

/* [outer, channels, inner] of a tensor split at `axis` (negative counts from the end). */
static int split_axis(const cq_tensor *t, int axis, int64_t *outer, int64_t *channels,
                      int64_t *inner) {
  if (axis < 0) axis += t->ndim;
  if (axis < 0 || axis >= t->ndim) return -1;
  *outer = 1;
  *inner = 1;
  for (int d = 0; d < axis; d++) *outer *= t->shape[d];
  for (int d = axis + 1; d < t->ndim; d++) *inner *= t->shape[d];
  *channels = t->shape[axis];
  return axis;
}

/* --- golden: calculate_qparams ------------------------------------------------------------- */

static void golden_calculate_qparams(const golden_file *g, const golden_case *c) {
  cq_qdtype dtype = get_qdtype(c);
  cq_qscheme qscheme = CQ_PER_TENSOR_AFFINE;
  const char *qs = need(c, "qscheme");
  if (qs) CHECK_OK(cq_qscheme_parse(qs, &qscheme));
  int rr = (int)get_int(c, "reduce_range");
  int custom = (int)get_int(c, "custom_range");
  int64_t cmin = custom ? get_int(c, "custom_quant_min") : 0;
  int64_t cmax = custom ? get_int(c, "custom_quant_max") : 0;
  int32_t want_qmin = (int32_t)get_int(c, "quant_min"), want_qmax = (int32_t)get_int(c, "quant_max");
  int32_t qmin = 0, qmax = 0;
  cq_status st = cq_quant_range_resolve(dtype, rr, custom, cmin, cmax, &qmin, &qmax);
  CHECK_MSG(st == CQ_OK && qmin == want_qmin && qmax == want_qmax,
            "case %s: cq_quant_range_resolve: %s [%d, %d], want [%d, %d] (%s)", c->name,
            cq_status_str(st), qmin, qmax, want_qmin, want_qmax,
            st == CQ_OK ? "" : cq_last_error());

  /* the rule itself is checked with torch's resolved range, independently of the above */
  cq_qparam_rule rule = {dtype, qscheme, want_qmin, want_qmax, custom, get_f32(c, "eps")};
  cq_tensor *ranges = load_npy(g, c, "ranges", CQ_F32);
  int ns = 0, nz = 0;
  float *scales = get_floats(c, "scale", &ns);
  int is_float_zp = qscheme == CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS;
  float *zpf = is_float_zp ? get_floats(c, "zero_point_float", &nz) : NULL;
  int64_t *zpi = is_float_zp ? NULL : get_ints(c, "zero_point", &nz);
  if (!ranges || !scales || (!zpf && !zpi)) goto done;
  int64_t npairs = ranges->shape[0];
  CHECK_MSG(ranges->ndim == 2 && ranges->shape[1] == 2 && ns == npairs && nz == npairs,
            "case %s: malformed case (%lld pairs, %d scales, %d zero points)", c->name,
            (long long)npairs, ns, nz);
  if (ns != npairs || nz != npairs) goto done;
  const float *mm = ranges->data;
  int bad = 0;
  for (int64_t i = 0; i < npairs; i++) {
    float scale = -1.0f, zp_float = -1.0f;
    int32_t zp = -1;
    st = cq_calculate_qparams(&rule, mm[2 * i], mm[2 * i + 1], &scale, &zp,
                              is_float_zp ? &zp_float : NULL);
    int ok = st == CQ_OK && same_f32(scale, scales[i]) &&
             (is_float_zp ? same_f32(zp_float, zpf[i]) : zp == zpi[i]);
    if (!ok) {
      if (bad < 4) {
        if (st != CQ_OK) {
          detail("%s: (min %.9g, max %.9g): %s: %s", c->name, mm[2 * i], mm[2 * i + 1],
                 cq_status_str(st), cq_last_error());
        } else if (is_float_zp) {
          detail("%s: (min %.9g, max %.9g): got scale %.9g zp %.9g, want %.9g zp %.9g", c->name,
                 mm[2 * i], mm[2 * i + 1], scale, zp_float, scales[i], zpf[i]);
        } else {
          detail("%s: (min %.9g, max %.9g): got scale %.9g (0x%08x) zp %d, want %.9g (0x%08x) "
                 "zp %lld", c->name, mm[2 * i], mm[2 * i + 1], scale, check_f32_bits(scale), zp,
                 scales[i], check_f32_bits(scales[i]), (long long)zpi[i]);
        }
      }
      bad++;
    }
  }
  CHECK_MSG(bad == 0, "case %s: %d of %lld (min, max) pairs differ", c->name, bad,
            (long long)npairs);
done:
  cq_tensor_free(ranges);
  free(scales);
  free(zpf);
  free(zpi);
}

static void golden_quant_range_error(const golden_case *c) {
  int32_t qmin = 0, qmax = 0;
  cq_status st = cq_quant_range_resolve(get_qdtype(c), (int)get_int(c, "reduce_range"), 1,
                                        get_int(c, "custom_quant_min"),
                                        get_int(c, "custom_quant_max"), &qmin, &qmax);
  CHECK_MSG(st == CQ_EINVAL, "case %s: cq_quant_range_resolve returned %s (range [%d, %d]), "
            "expected invalid argument (torch: %s)", c->name, cq_status_str(st), qmin, qmax,
            golden_get(c, "error"));
  CHECK_MSG(st == CQ_OK || cq_last_error()[0] != '\0', "case %s: no error message", c->name);
}

/* --- golden: quantize / dequantize --------------------------------------------------------- */

static void golden_quantize_per_tensor(const golden_file *g, const golden_case *c) {
  cq_qdtype dtype = get_qdtype(c);
  cq_dtype sd = storage_of(dtype);
  float scale = get_f32(c, "scale");
  int32_t zp = (int32_t)get_int(c, "zero_point");
  cq_tensor *x = load_npy(g, c, "input", CQ_F32);
  cq_tensor *want_q = load_npy(g, c, "output", sd);
  cq_tensor *want_dq = load_npy(g, c, "dequant", CQ_F32);
  void *q = NULL;
  float *dq = NULL;
  cq_tensor *qt = NULL, *dqt = NULL;
  cq_qparams qp;
  memset(&qp, 0, sizeof qp);
  if (!x || !want_q || !want_dq) goto done;
  int64_t n = cq_tensor_numel(x);
  CHECK_MSG(cq_tensor_numel(want_q) == n && cq_tensor_numel(want_dq) == n,
            "case %s: sizes differ", c->name);
  if (cq_tensor_numel(want_q) != n || cq_tensor_numel(want_dq) != n) goto done;
  q = calloc((size_t)n + 1, cq_dtype_get(sd)->size);
  dq = calloc((size_t)n + 1, sizeof *dq);
  if (!q || !dq) goto done;

  /* Flat API. */
  CHECK_OK(cq_quantize_per_tensor(x->data, n, scale, zp, dtype, q));
  compare_q("quantize", c, x, q, want_q->data, sd, n);
  CHECK_OK(cq_dequantize_per_tensor(want_q->data, n, scale, zp, dtype, dq));
  compare_f32("dequantize", c, NULL, dq, want_dq->data, n);

  /* Tensor API with a qparams record. */
  if (cq_qparams_init(&qp, dtype, CQ_PER_TENSOR_AFFINE, 1, -1) != CQ_OK) {
    CHECK_MSG(0, "case %s: cq_qparams_init: %s", c->name, cq_last_error());
    goto done;
  }
  qp.scale[0] = scale;
  qp.zero_point[0] = zp;
  cq_status st = cq_quantize_tensor(x, &qp, &qt);
  CHECK_MSG(st == CQ_OK, "case %s: cq_quantize_tensor: %s", c->name, cq_last_error());
  if (st != CQ_OK) goto done;
  CHECK_INT_EQ(qt->dtype, sd);
  CHECK_INT_EQ(qt->ndim, x->ndim);
  CHECK(qt->qparams != NULL && qt->qparams->count == 1 && same_f32(qt->qparams->scale[0], scale) &&
        qt->qparams->zero_point[0] == zp);
  if (qt->dtype == sd) compare_q("quantize_tensor", c, x, qt->data, want_q->data, sd, n);
  st = cq_dequantize_tensor(qt, &dqt);
  CHECK_MSG(st == CQ_OK, "case %s: cq_dequantize_tensor: %s", c->name, cq_last_error());
  if (st == CQ_OK && dqt->dtype == CQ_F32 && cq_tensor_numel(dqt) == n) {
    /* qt may differ from the golden integers (reported above); dequantize what we produced */
    CHECK_OK(cq_dequantize_per_tensor(qt->data, n, scale, zp, dtype, dq));
    compare_f32("dequantize_tensor", c, NULL, dqt->data, dq, n);
  } else {
    CHECK_MSG(0, "case %s: cq_dequantize_tensor gave no float32 tensor of %lld values", c->name,
              (long long)n);
  }
done:
  cq_qparams_release(&qp);
  cq_tensor_free(qt);
  cq_tensor_free(dqt);
  cq_tensor_free(x);
  cq_tensor_free(want_q);
  cq_tensor_free(want_dq);
  free(q);
  free(dq);
}

static void golden_quantize_per_channel(const golden_file *g, const golden_case *c) {
  cq_qdtype dtype = get_qdtype(c);
  cq_dtype sd = storage_of(dtype);
  int axis = (int)get_int(c, "axis");
  int ns = 0, nz = 0;
  float *scales = get_floats(c, "scales", &ns);
  int is_float_zp = golden_get(c, "zero_points_float") != NULL;
  float *zpf = is_float_zp ? get_floats(c, "zero_points_float", &nz) : NULL;
  int64_t *zp64 = is_float_zp ? NULL : get_ints(c, "zero_points", &nz);
  int32_t *zp = NULL;
  cq_tensor *x = load_npy(g, c, "input", CQ_F32);
  cq_tensor *want_q = load_npy(g, c, "output", sd);
  cq_tensor *want_dq = load_npy(g, c, "dequant", CQ_F32);
  cq_tensor *qt = NULL, *dqt = NULL;
  void *q = NULL;
  float *dq = NULL;
  cq_qparams qp;
  memset(&qp, 0, sizeof qp);
  if (!x || !want_q || !want_dq || !scales || (!zpf && !zp64)) goto done;
  int64_t outer, channels, inner;
  int ax = split_axis(x, axis, &outer, &channels, &inner);
  CHECK_MSG(ax >= 0 && channels == ns && channels == nz, "case %s: malformed case", c->name);
  if (ax < 0 || channels != ns || channels != nz) goto done;
  int64_t n = cq_tensor_numel(x);
  q = calloc((size_t)n + 1, cq_dtype_get(sd)->size);
  dq = calloc((size_t)n + 1, sizeof *dq);
  if (!is_float_zp) {
    zp = malloc(sizeof *zp * (size_t)nz);
    if (zp) {
      for (int i = 0; i < nz; i++) zp[i] = (int32_t)zp64[i];
    }
  }
  if (!q || !dq || (!is_float_zp && !zp)) goto done;

  CHECK_OK(cq_quantize_per_channel(x->data, outer, channels, inner, scales, zp, zpf, dtype, q));
  compare_q("quantize", c, x, q, want_q->data, sd, n);
  CHECK_OK(cq_dequantize_per_channel(want_q->data, outer, channels, inner, scales, zp, zpf, dtype,
                                     dq));
  compare_f32("dequantize", c, NULL, dq, want_dq->data, n);

  /* Tensor API. */
  cq_qscheme qs = is_float_zp ? CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS : CQ_PER_CHANNEL_AFFINE;
  if (cq_qparams_init(&qp, dtype, qs, channels, ax) != CQ_OK) {
    CHECK_MSG(0, "case %s: cq_qparams_init: %s", c->name, cq_last_error());
    goto done;
  }
  CHECK_MSG(!is_float_zp || qp.zero_point_float != NULL,
            "case %s: cq_qparams_init gave no zero_point_float for float qparams", c->name);
  if (is_float_zp && !qp.zero_point_float) goto done;
  for (int64_t i = 0; i < channels; i++) {
    qp.scale[i] = scales[i];
    if (is_float_zp) {
      qp.zero_point_float[i] = zpf[i];
      qp.zero_point[i] = (int32_t)nearbyintf(zpf[i]);
    } else {
      qp.zero_point[i] = zp[i];
    }
  }
  cq_status st = cq_quantize_tensor(x, &qp, &qt);
  CHECK_MSG(st == CQ_OK, "case %s: cq_quantize_tensor: %s", c->name, cq_last_error());
  if (st != CQ_OK) goto done;
  CHECK(qt->qparams != NULL && qt->qparams->count == channels && qt->qparams->axis == ax);
  if (qt->dtype == sd) {
    compare_q("quantize_tensor", c, x, qt->data, want_q->data, sd, n);
  } else {
    CHECK_MSG(0, "case %s: cq_quantize_tensor gave dtype %d", c->name, (int)qt->dtype);
  }
  st = cq_dequantize_tensor(qt, &dqt);
  CHECK_MSG(st == CQ_OK, "case %s: cq_dequantize_tensor: %s", c->name, cq_last_error());
  if (st == CQ_OK && dqt->dtype == CQ_F32 && cq_tensor_numel(dqt) == n && qt->dtype == sd) {
    CHECK_OK(cq_dequantize_per_channel(qt->data, outer, channels, inner, scales, zp, zpf, dtype,
                                       dq));
    compare_f32("dequantize_tensor", c, NULL, dqt->data, dq, n);
  }
done:
  cq_qparams_release(&qp);
  cq_tensor_free(qt);
  cq_tensor_free(dqt);
  cq_tensor_free(x);
  cq_tensor_free(want_q);
  cq_tensor_free(want_dq);
  free(scales);
  free(zpf);
  free(zp64);
  free(zp);
  free(q);
  free(dq);
}

/* --- golden: fake quantize ----------------------------------------------------------------- */

static void golden_fake_quantize(const golden_file *g, const golden_case *c, int per_channel) {
  int32_t qmin = (int32_t)get_int(c, "quant_min"), qmax = (int32_t)get_int(c, "quant_max");
  cq_tensor *x = load_npy(g, c, "input", CQ_F32);
  cq_tensor *want_y = load_npy(g, c, "output", CQ_F32);
  cq_tensor *want_mask = load_npy(g, c, "mask", CQ_U8);
  cq_tensor *dy = load_npy(g, c, "grad_output", CQ_F32);
  cq_tensor *want_dx = load_npy(g, c, "grad_input", CQ_F32);
  float *scales = NULL, *y = NULL, *dx = NULL;
  int64_t *zp64 = NULL;
  int32_t *zp = NULL;
  uint8_t *mask = NULL;
  if (!x || !want_y || !want_mask || !dy || !want_dx) goto done;
  int64_t n = cq_tensor_numel(x);
  y = calloc((size_t)n + 1, sizeof *y);
  dx = calloc((size_t)n + 1, sizeof *dx);
  mask = calloc((size_t)n + 1, 1);
  if (!y || !dx || !mask) goto done;
  if (per_channel) {
    int ns = 0, nz = 0;
    scales = get_floats(c, "scales", &ns);
    zp64 = get_ints(c, "zero_points", &nz);
    int64_t outer, channels, inner;
    if (!scales || !zp64 || split_axis(x, (int)get_int(c, "axis"), &outer, &channels, &inner) < 0 ||
        channels != ns || channels != nz) {
      CHECK_MSG(0, "case %s: malformed case", c->name);
      goto done;
    }
    zp = malloc(sizeof *zp * (size_t)nz);
    if (!zp) goto done;
    for (int i = 0; i < nz; i++) zp[i] = (int32_t)zp64[i];
    CHECK_OK(cq_fake_quantize_per_channel(x->data, outer, channels, inner, scales, zp, qmin, qmax,
                                          y, mask));
  } else {
    CHECK_OK(cq_fake_quantize_per_tensor(x->data, n, get_f32(c, "scale"),
                                         (int32_t)get_int(c, "zero_point"), qmin, qmax, y, mask));
  }
  compare_f32("forward", c, x->data, y, want_y->data, n);
  compare_u8("mask", c, x->data, mask, want_mask->data, n);
  /* backward through the golden mask (isolates the estimator from the forward) */
  cq_fake_quantize_backward(dy->data, want_mask->data, n, dx);
  compare_f32("backward", c, NULL, dx, want_dx->data, n);
  /* in place (dx aliasing dy) through our own mask */
  memcpy(dx, dy->data, sizeof *dx * (size_t)n);
  cq_fake_quantize_backward(dx, mask, n, dx);
  compare_f32("backward_in_place", c, NULL, dx, want_dx->data, n);
  /* forward without a mask */
  if (!per_channel) {
    memset(y, 0, sizeof *y * (size_t)n);
    CHECK_OK(cq_fake_quantize_per_tensor(x->data, n, get_f32(c, "scale"),
                                         (int32_t)get_int(c, "zero_point"), qmin, qmax, y, NULL));
    compare_f32("forward_no_mask", c, x->data, y, want_y->data, n);
  }
done:
  cq_tensor_free(x);
  cq_tensor_free(want_y);
  cq_tensor_free(want_mask);
  cq_tensor_free(dy);
  cq_tensor_free(want_dx);
  free(scales);
  free(zp64);
  free(zp);
  free(y);
  free(dx);
  free(mask);
}

/* --- golden: ChooseQuantizationParams ------------------------------------------------------ */

static void golden_choose_qparams(const golden_file *g, const golden_case *c) {
  const char *source = need(c, "source");
  int fused = source && strcmp(source, "fused_moving_avg_obs_fake_quant") == 0;
  int32_t qmin = (int32_t)get_int(c, "quant_min"), qmax = (int32_t)get_int(c, "quant_max");
  int ps = (int)get_int(c, "preserve_sparsity"), rr = (int)get_int(c, "reduce_range");
  cq_tensor *ranges = load_npy(g, c, "ranges", CQ_F32);
  cq_tensor *x = fused ? load_npy(g, c, "input", CQ_F32) : NULL;
  cq_tensor *want_y = fused ? load_npy(g, c, "output", CQ_F32) : NULL;
  cq_tensor *want_mask = fused ? load_npy(g, c, "mask", CQ_U8) : NULL;
  int ns = -1, nz = 0;
  float *scales_f = NULL, *y = NULL;
  double *scales_d = NULL;
  uint8_t *mask = NULL;
  int64_t *zps = get_ints(c, "zero_point", &nz);
  if (fused) {
    scales_f = get_floats(c, "scale", &ns);
  } else {
    const char *v = need(c, "scale_double");
    ns = v ? parse_doubles(v, &scales_d) : -1;
  }
  if (!ranges || !zps || ns < 0 || (fused && (!x || !want_y || !want_mask))) goto done;
  int64_t npairs = ranges->shape[0];
  CHECK_MSG(ns == npairs && nz == npairs, "case %s: malformed case", c->name);
  if (ns != npairs || nz != npairs) goto done;
  int64_t n = x ? cq_tensor_numel(x) : 0;
  if (fused) {
    y = calloc((size_t)n + 1, sizeof *y);
    mask = calloc((size_t)n + 1, 1);
    if (!y || !mask) goto done;
  }
  const float *mm = ranges->data;
  int bad = 0;
  for (int64_t i = 0; i < npairs; i++) {
    double scale = -1.0;
    int32_t zp = -1;
    cq_status st = cq_choose_qparams(mm[2 * i], mm[2 * i + 1], qmin, qmax, ps, 0, rr, &scale, &zp);
    int ok = st == CQ_OK && zp == zps[i] &&
             (fused ? same_f32((float)scale, scales_f[i]) : same_f64(scale, scales_d[i]));
    if (!ok) {
      if (bad < 4) {
        detail("%s: (min %.9g, max %.9g): %s got scale %.17g zp %d, want %.17g zp %lld", c->name,
               mm[2 * i], mm[2 * i + 1], cq_status_str(st), scale, zp,
               fused ? (double)scales_f[i] : scales_d[i], (long long)zps[i]);
      }
      bad++;
      continue;
    }
    if (fused) {
      /* the fused op then fake-quantizes its input with the float32 scale */
      char what[64];
      snprintf(what, sizeof what, "fused_forward[pair %lld]", (long long)i);
      CHECK_OK(cq_fake_quantize_per_tensor(x->data, n, (float)scale, zp, qmin, qmax, y, mask));
      compare_f32(what, c, x->data, y, (const float *)want_y->data + i * n, n);
      snprintf(what, sizeof what, "fused_mask[pair %lld]", (long long)i);
      compare_u8(what, c, x->data, mask, (const uint8_t *)want_mask->data + i * n, n);
    }
  }
  CHECK_MSG(bad == 0, "case %s: %d of %lld (min, max) pairs differ", c->name, bad,
            (long long)npairs);
done:
  cq_tensor_free(ranges);
  cq_tensor_free(x);
  cq_tensor_free(want_y);
  cq_tensor_free(want_mask);
  free(scales_f);
  free(scales_d);
  free(zps);
  free(y);
  free(mask);
}

static void test_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN_FILE, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN_FILE);
    return;
  }
  int counts[7] = {0};
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    const char *op = golden_get(c, "op");
    long failed_before = check_failed;
    if (!op) {
      CHECK_MSG(0, "case %s has no op", c->name);
    } else if (!strcmp(op, "calculate_qparams")) {
      golden_calculate_qparams(&g, c);
      counts[0]++;
    } else if (!strcmp(op, "quant_range_error")) {
      golden_quant_range_error(c);
      counts[1]++;
    } else if (!strcmp(op, "quantize_per_tensor")) {
      golden_quantize_per_tensor(&g, c);
      counts[2]++;
    } else if (!strcmp(op, "quantize_per_channel")) {
      golden_quantize_per_channel(&g, c);
      counts[3]++;
    } else if (!strcmp(op, "fake_quantize_per_tensor")) {
      golden_fake_quantize(&g, c, 0);
      counts[4]++;
    } else if (!strcmp(op, "fake_quantize_per_channel")) {
      golden_fake_quantize(&g, c, 1);
      counts[5]++;
    } else if (!strcmp(op, "choose_qparams")) {
      golden_choose_qparams(&g, c);
      counts[6]++;
    } else {
      CHECK_MSG(0, "case %s: unknown op '%s'", c->name, op);
    }
    if (check_failed != failed_before) fprintf(stderr, "FAILED case %s\n", c->name);
    cases_run++;
  }
  printf("golden %s: %d cases (calculate_qparams %d, quant_range_error %d, quantize_per_tensor %d, "
         "quantize_per_channel %d, fake_quantize_per_tensor %d, fake_quantize_per_channel %d, "
         "choose_qparams %d)\n", GOLDEN_FILE, g.count, counts[0], counts[1], counts[2], counts[3],
         counts[4], counts[5], counts[6]);
  CHECK(g.count > 500);
  CHECK(counts[0] > 0 && counts[1] > 0 && counts[2] > 0 && counts[3] > 0 && counts[4] > 0 &&
        counts[5] > 0 && counts[6] > 0);
  golden_free(&g);
}

/* --- direct checks: names, ranges, records ------------------------------------------------- */

static void test_names(void) {
  CHECK_STR_EQ(cq_qdtype_name(CQ_QUINT8), "quint8");
  CHECK_STR_EQ(cq_qdtype_name(CQ_QINT8), "qint8");
  CHECK_STR_EQ(cq_qdtype_name(CQ_QINT32), "qint32");
  CHECK_STR_EQ(cq_qdtype_name(CQ_QUINT4X2), "quint4x2");
  CHECK_STR_EQ(cq_qscheme_name(CQ_PER_TENSOR_AFFINE), "per_tensor_affine");
  CHECK_STR_EQ(cq_qscheme_name(CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS),
               "per_channel_affine_float_qparams");
  cq_qdtype d = CQ_QUINT8;
  CHECK_OK(cq_qdtype_parse("torch.qint8", &d));
  CHECK_INT_EQ(d, CQ_QINT8);
  CHECK_OK(cq_qdtype_parse("quint4x2", &d));
  CHECK_INT_EQ(d, CQ_QUINT4X2);
  CHECK_STATUS(cq_qdtype_parse("int8", &d), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "int8") != NULL);
  CHECK_STATUS(cq_qdtype_parse("", &d), CQ_EINVAL);
  cq_qscheme q = CQ_PER_TENSOR_AFFINE;
  CHECK_OK(cq_qscheme_parse("torch.per_channel_symmetric", &q));
  CHECK_INT_EQ(q, CQ_PER_CHANNEL_SYMMETRIC);
  CHECK_STATUS(cq_qscheme_parse("per_tensor", &q), CQ_EINVAL);
  CHECK(cq_qscheme_is_per_channel(CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS));
  CHECK(!cq_qscheme_is_per_channel(CQ_PER_TENSOR_SYMMETRIC));
  CHECK(cq_qscheme_is_symmetric(CQ_PER_TENSOR_SYMMETRIC));
  CHECK(cq_qscheme_is_symmetric(CQ_PER_CHANNEL_SYMMETRIC));
  CHECK(!cq_qscheme_is_symmetric(CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS));
  CHECK(!cq_qscheme_is_symmetric(CQ_PER_TENSOR_AFFINE));

  int64_t lo = 1, hi = 1;
  CHECK_OK(cq_qdtype_range(CQ_QUINT8, &lo, &hi));
  CHECK(lo == 0 && hi == 255);
  CHECK_OK(cq_qdtype_range(CQ_QINT8, &lo, &hi));
  CHECK(lo == -128 && hi == 127);
  CHECK_OK(cq_qdtype_range(CQ_QINT32, &lo, &hi));
  CHECK(lo == INT32_MIN && hi == INT32_MAX);
  CHECK_OK(cq_qdtype_range(CQ_QUINT4X2, &lo, &hi));
  CHECK(lo == 0 && hi == 15);
  CHECK_STATUS(cq_qdtype_range(CQ_QFLOAT16, &lo, &hi), CQ_EINVAL);
  CHECK_STATUS(cq_qdtype_range(CQ_QFLOAT32, &lo, &hi), CQ_EINVAL);

  cq_dtype s = CQ_F32;
  CHECK_OK(cq_qdtype_storage(CQ_QUINT8, &s));
  CHECK_INT_EQ(s, CQ_U8);
  CHECK_OK(cq_qdtype_storage(CQ_QINT8, &s));
  CHECK_INT_EQ(s, CQ_S8);
  CHECK_OK(cq_qdtype_storage(CQ_QINT32, &s));
  CHECK_INT_EQ(s, CQ_S32);
  CHECK_OK(cq_qdtype_storage(CQ_QUINT4X2, &s));
  CHECK_INT_EQ(s, CQ_U8);
  CHECK_STATUS(cq_qdtype_storage(CQ_QFLOAT32, &s), CQ_EINVAL);
}

static void test_qparams_record(void) {
  cq_qparams qp, copy;
  memset(&qp, 0, sizeof qp);
  memset(&copy, 0, sizeof copy);
  CHECK_OK(cq_qparams_init(&qp, CQ_QINT8, CQ_PER_CHANNEL_SYMMETRIC, 3, 1));
  CHECK_INT_EQ(qp.count, 3);
  CHECK_INT_EQ(qp.axis, 1);
  CHECK_INT_EQ(qp.quant_min, -128);
  CHECK_INT_EQ(qp.quant_max, 127);
  CHECK(qp.scale && qp.zero_point && !qp.zero_point_float);
  if (qp.scale && qp.zero_point) {
    for (int i = 0; i < 3; i++) {
      CHECK_F32_BITS(qp.scale[i], 1.0f);
      CHECK_INT_EQ(qp.zero_point[i], 0);
    }
    qp.scale[2] = 0.25f;
    qp.zero_point[1] = -7;
    CHECK_OK(cq_qparams_copy(&copy, &qp));
    CHECK(copy.scale != qp.scale && copy.count == 3 && copy.axis == 1);
    if (copy.scale) {
      CHECK_F32_BITS(copy.scale[2], 0.25f);
      CHECK_INT_EQ(copy.zero_point[1], -7);
    }
  }
  cq_qparams_release(&copy);
  cq_qparams_release(&qp);

  CHECK_OK(cq_qparams_init(&qp, CQ_QUINT8, CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS, 2, 0));
  CHECK(qp.zero_point_float != NULL);
  cq_qparams_release(&qp);
  CHECK_OK(cq_qparams_init(&qp, CQ_QUINT8, CQ_PER_TENSOR_AFFINE, 1, -1));
  CHECK_INT_EQ(qp.quant_min, 0);
  CHECK_INT_EQ(qp.quant_max, 255);
  cq_qparams_release(&qp);

  memset(&qp, 0, sizeof qp);
  CHECK_STATUS(cq_qparams_init(&qp, CQ_QUINT8, CQ_PER_TENSOR_AFFINE, 0, -1), CQ_EINVAL);
  CHECK_STATUS(cq_qparams_init(&qp, CQ_QUINT8, CQ_PER_CHANNEL_AFFINE, -1, 0), CQ_EINVAL);
  CHECK_STATUS(cq_qparams_init(&qp, CQ_QUINT8, CQ_PER_TENSOR_AFFINE, 2, -1), CQ_EINVAL);
  CHECK_STATUS(cq_qparams_init(&qp, CQ_QFLOAT32, CQ_PER_TENSOR_AFFINE, 1, -1), CQ_EINVAL);
}

/* Spec 1.1: quant_min / quant_max resolution. */
static void test_quant_range_resolve(void) {
  static const struct {
    cq_qdtype dtype;
    int rr, custom;
    int64_t cmin, cmax;
    int32_t qmin, qmax;
  } ok[] = {
      {CQ_QUINT8, 0, 0, 0, 0, 0, 255},
      {CQ_QUINT8, 1, 0, 0, 0, 0, 127},
      {CQ_QINT8, 0, 0, 0, 0, -128, 127},
      {CQ_QINT8, 1, 0, 0, 0, -64, 63},
      {CQ_QINT32, 0, 0, 0, 0, INT32_MIN, INT32_MAX},
      {CQ_QINT32, 1, 0, 0, 0, INT32_MIN, INT32_MAX},
      {CQ_QUINT4X2, 0, 0, 0, 0, 0, 15},
      {CQ_QUINT4X2, 1, 0, 0, 0, 0, 15},
      {CQ_QUINT8, 0, 1, 0, 127, 0, 127},
      {CQ_QUINT8, 1, 1, 0, 255, 0, 127},
      {CQ_QINT8, 1, 1, -127, 127, -64, 63}, /* floor division: -127 // 2 = -64 */
      {CQ_QINT8, 1, 1, -128, 127, -64, 63},
      {CQ_QINT8, 1, 1, -3, 5, -2, 2},
      {CQ_QINT8, 0, 1, 0, 255, 0, 255},     /* qint8 only checks the length */
      {CQ_QUINT8, 0, 1, -64, 63, -64, 63},  /* quint8 has no length check */
      {CQ_QINT32, 0, 1, -(1LL << 30), (1LL << 30) - 1, -(1 << 30), (1 << 30) - 1},
      {CQ_QINT32, 1, 1, -(1LL << 30), (1LL << 30) - 1, -(1 << 29), (1 << 29) - 1},
      {CQ_QUINT4X2, 0, 1, -8, 7, -8, 7},
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    int32_t lo = 12345, hi = 12345;
    cq_status st = cq_quant_range_resolve(ok[i].dtype, ok[i].rr, ok[i].custom, ok[i].cmin,
                                          ok[i].cmax, &lo, &hi);
    CHECK_MSG(st == CQ_OK && lo == ok[i].qmin && hi == ok[i].qmax,
              "range resolve #%zu (%s rr=%d custom=%d [%lld, %lld]): %s [%d, %d], want [%d, %d]",
              i, cq_qdtype_name(ok[i].dtype), ok[i].rr, ok[i].custom, (long long)ok[i].cmin,
              (long long)ok[i].cmax, cq_status_str(st), lo, hi, ok[i].qmin, ok[i].qmax);
  }
  static const struct {
    cq_qdtype dtype;
    int rr;
    int64_t cmin, cmax;
  } bad[] = {
      {CQ_QUINT8, 0, 1, 10},  {CQ_QUINT8, 0, -10, -1}, {CQ_QUINT8, 0, 0, 0},
      {CQ_QINT8, 0, 4, -4},   {CQ_QINT8, 0, -128, 128}, {CQ_QINT8, 1, -200, 100},
      {CQ_QINT32, 0, INT32_MIN, INT32_MAX}, {CQ_QINT32, 0, 0, (1LL << 31)},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int32_t lo, hi;
    cq_status st = cq_quant_range_resolve(bad[i].dtype, bad[i].rr, 1, bad[i].cmin, bad[i].cmax,
                                          &lo, &hi);
    CHECK_MSG(st == CQ_EINVAL, "range resolve of bad %s [%lld, %lld] returned %s",
              cq_qdtype_name(bad[i].dtype), (long long)bad[i].cmin, (long long)bad[i].cmax,
              cq_status_str(st));
    CHECK(st == CQ_OK || strlen(cq_last_error()) > 0);
  }
}

static cq_qparam_rule rule_for(cq_qdtype dtype, cq_qscheme qscheme, int rr, int custom, int64_t cmin,
                               int64_t cmax) {
  cq_qparam_rule r = {dtype, qscheme, 0, 0, custom, FLT_EPSILON};
  CHECK_OK(cq_quant_range_resolve(dtype, rr, custom, cmin, cmax, &r.quant_min, &r.quant_max));
  return r;
}

static void expect_qparams(const char *what, cq_qparam_rule r, float mn, float mx, float scale,
                           int32_t zp) {
  float s = -1.0f;
  int32_t z = -12345;
  cq_status st = cq_calculate_qparams(&r, mn, mx, &s, &z, NULL);
  CHECK_MSG(st == CQ_OK && same_f32(s, scale) && z == zp,
            "%s (min %g, max %g): %s scale %.9g zp %d, want %.9g zp %d", what, mn, mx,
            cq_status_str(st), s, z, scale, zp);
}

/* Spec 1.2: the worked example [-1, 0.5, 2] and the listed edge cases. */
static void test_calculate_qparams_spec(void) {
  const float eps = FLT_EPSILON;
  cq_qparam_rule r;
  r = rule_for(CQ_QUINT8, CQ_PER_TENSOR_AFFINE, 0, 0, 0, 0);
  expect_qparams("quint8 affine", r, -1.0f, 2.0f, 3.0f / 255.0f, 85);
  CHECK_F32_BITS(3.0f / 255.0f, 0.0117647061f);
  r = rule_for(CQ_QUINT8, CQ_PER_TENSOR_AFFINE, 1, 0, 0, 0);
  expect_qparams("quint8 affine reduce_range", r, -1.0f, 2.0f, 3.0f / 127.0f, 42);
  r = rule_for(CQ_QINT8, CQ_PER_TENSOR_AFFINE, 0, 0, 0, 0);
  expect_qparams("qint8 affine", r, -1.0f, 2.0f, 3.0f / 255.0f, -43);
  r = rule_for(CQ_QINT8, CQ_PER_TENSOR_AFFINE, 1, 0, 0, 0);
  expect_qparams("qint8 affine reduce_range", r, -1.0f, 2.0f, 3.0f / 127.0f, -22);
  r = rule_for(CQ_QINT8, CQ_PER_TENSOR_SYMMETRIC, 0, 0, 0, 0);
  expect_qparams("qint8 symmetric", r, -1.0f, 2.0f, 2.0f / 127.5f, 0);
  CHECK_F32_BITS(2.0f / 127.5f, 0.0156862754f);
  r = rule_for(CQ_QINT8, CQ_PER_TENSOR_SYMMETRIC, 1, 0, 0, 0);
  expect_qparams("qint8 symmetric reduce_range", r, -1.0f, 2.0f, 2.0f / 63.5f, 0);
  r = rule_for(CQ_QUINT8, CQ_PER_TENSOR_SYMMETRIC, 0, 0, 0, 0);
  expect_qparams("quint8 symmetric", r, -1.0f, 2.0f, 2.0f / 127.5f, 128);
  r = rule_for(CQ_QUINT8, CQ_PER_TENSOR_SYMMETRIC, 1, 0, 0, 0);
  expect_qparams("quint8 symmetric default range [0,127]", r, -1.0f, 2.0f, 2.0f / 63.5f, 128);
  r = rule_for(CQ_QUINT8, CQ_PER_TENSOR_SYMMETRIC, 0, 1, 0, 127);
  expect_qparams("quint8 symmetric custom [0,127]", r, -1.0f, 2.0f, 2.0f / 63.5f, 63);
  r = rule_for(CQ_QUINT8, CQ_PER_TENSOR_SYMMETRIC, 0, 1, 0, 255);
  expect_qparams("quint8 symmetric custom [0,255]", r, -1.0f, 2.0f, 2.0f / 127.5f, 127);
  r = rule_for(CQ_QINT32, CQ_PER_TENSOR_AFFINE, 0, 0, 0, 0);
  expect_qparams("qint32 affine", r, -1.0f, 2.0f, eps, -2139095040);
  r = rule_for(CQ_QUINT4X2, CQ_PER_TENSOR_AFFINE, 0, 0, 0, 0);
  expect_qparams("quint4x2 affine", r, -1.0f, 2.0f, 3.0f / 15.0f, 5);
  CHECK_F32_BITS(3.0f / 15.0f, 0.2f);

  /* edge cases */
  r = rule_for(CQ_QUINT8, CQ_PER_TENSOR_AFFINE, 0, 0, 0, 0);
  expect_qparams("all zeros quint8 affine", r, 0.0f, 0.0f, eps, 0);
  expect_qparams("constant +3", r, 3.0f, 3.0f, 3.0f / 255.0f, 0);
  expect_qparams("constant -3", r, -3.0f, -3.0f, 3.0f / 255.0f, 255);
  expect_qparams("positive only", r, 2.0f, 5.0f, 5.0f / 255.0f, 0);
  expect_qparams("negative only quint8", r, -5.0f, -2.0f, 5.0f / 255.0f, 255);
  expect_qparams("tie -0.5 -> 0", r, -0.5f, 254.5f, 1.0f, 0);
  expect_qparams("tie -1.5 -> -2", r, -1.5f, 253.5f, 1.0f, 2);
  expect_qparams("tie -2.5 -> -2", r, -2.5f, 252.5f, 1.0f, 2);
  r = rule_for(CQ_QINT8, CQ_PER_TENSOR_AFFINE, 0, 0, 0, 0);
  expect_qparams("all zeros qint8 affine", r, 0.0f, 0.0f, eps, -128);
  expect_qparams("negative only qint8", r, -5.0f, -2.0f, 5.0f / 255.0f, 127);
  r = rule_for(CQ_QINT8, CQ_PER_TENSOR_SYMMETRIC, 0, 0, 0, 0);
  expect_qparams("all zeros qint8 symmetric", r, 0.0f, 0.0f, eps, 0);
  r = rule_for(CQ_QUINT8, CQ_PER_TENSOR_SYMMETRIC, 0, 0, 0, 0);
  expect_qparams("all zeros quint8 symmetric", r, 0.0f, 0.0f, eps, 128);

  /* the narrow [-127, 127] weight range with eps 2^-12 */
  r = rule_for(CQ_QINT8, CQ_PER_CHANNEL_SYMMETRIC, 0, 1, -127, 127);
  r.eps = 0x1p-12f;
  expect_qparams("narrow qint8", r, -0.5f, 0.25f, 0.5f / 127.0f, 0);
  expect_qparams("narrow qint8 eps floor", r, -1e-4f, 1e-4f, 0x1p-12f, 0);
  /* the eps floor is a max() in the affine and symmetric rules */
  r = rule_for(CQ_QUINT8, CQ_PER_TENSOR_AFFINE, 0, 0, 0, 0);
  r.eps = 0.5f;
  expect_qparams("eps 0.5", r, -1.0f, 2.0f, 0.5f, 2);

  /* float qparams: raw min/max, where(scale > eps, scale, 1), unrounded -min/scale */
  r = rule_for(CQ_QUINT8, CQ_PER_CHANNEL_AFFINE_FLOAT_QPARAMS, 0, 0, 0, 0);
  float s = 0.0f, zf = 0.0f;
  int32_t z = 0;
  CHECK_OK(cq_calculate_qparams(&r, 4.0f, 4.0f, &s, &z, &zf));
  CHECK_F32_BITS(s, 1.0f);
  CHECK_F32_BITS(zf, -4.0f);
  CHECK_OK(cq_calculate_qparams(&r, 1.0f, 4.0f, &s, &z, &zf));
  CHECK_F32_BITS(s, 3.0f / 255.0f);
  CHECK_F32_BITS(zf, -1.0f / (3.0f / 255.0f));
  CHECK_OK(cq_calculate_qparams(&r, -1.0f, 2.0f, &s, &z, &zf));
  CHECK_F32_BITS(s, 3.0f / 255.0f);
  CHECK_F32_BITS(zf, 1.0f / (3.0f / 255.0f));

  /* invalid ranges: min > max, NaN, Inf */
  r = rule_for(CQ_QUINT8, CQ_PER_TENSOR_AFFINE, 0, 0, 0, 0);
  CHECK_STATUS(cq_calculate_qparams(&r, 2.0f, 1.0f, &s, &z, NULL), CQ_EVALUE);
  CHECK(strlen(cq_last_error()) > 0);
  CHECK_STATUS(cq_calculate_qparams(&r, NAN, 1.0f, &s, &z, NULL), CQ_EVALUE);
  CHECK_STATUS(cq_calculate_qparams(&r, -1.0f, NAN, &s, &z, NULL), CQ_EVALUE);
  CHECK_STATUS(cq_calculate_qparams(&r, -INFINITY, 1.0f, &s, &z, NULL), CQ_EVALUE);
  CHECK_STATUS(cq_calculate_qparams(&r, -1.0f, INFINITY, &s, &z, NULL), CQ_EVALUE);
  CHECK_STATUS(cq_calculate_qparams(&r, INFINITY, -INFINITY, &s, &z, NULL), CQ_EVALUE);
}

/* Spec 2.1 / 2.3: ties, reciprocal multiply, zero point after rounding, non-finite inputs. */
static void test_quantize_spec(void) {
  const float ties[5] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f};
  uint8_t q[8];
  CHECK_OK(cq_quantize_per_tensor(ties, 5, 1.0f, 10, CQ_QUINT8, q));
  CHECK(q[0] == 10 && q[1] == 12 && q[2] == 12 && q[3] == 10 && q[4] == 8);
  CHECK_OK(cq_quantize_per_tensor(ties, 1, 1.0f, 1, CQ_QUINT8, q));
  CHECK_INT_EQ(q[0], 1); /* rne(0.5) + 1, not rne(0.5 + 1) */

  const float v = 0.273939937f;
  CHECK_OK(cq_quantize_per_tensor(&v, 1, 0.00214854861f, 0, CQ_QUINT8, q));
  CHECK_INT_EQ(q[0], 128); /* v * f32(1/scale) = 127.5 -> 128; v / scale would give 127 */
  int8_t qs[8];
  CHECK_OK(cq_quantize_per_tensor(&v, 1, 0.00214854861f, 0, CQ_QINT8, qs));
  CHECK_INT_EQ(qs[0], 127);

  const float big[4] = {1e10f, -1e10f, 255.4f, -0.0f};
  CHECK_OK(cq_quantize_per_tensor(big, 4, 1.0f, 0, CQ_QUINT8, q));
  CHECK(q[0] == 255 && q[1] == 0 && q[2] == 255 && q[3] == 0);
  CHECK_OK(cq_quantize_per_tensor(big, 4, 1.0f, 0, CQ_QINT8, qs));
  CHECK(qs[0] == 127 && qs[1] == -128 && qs[2] == 127 && qs[3] == 0);
  int32_t q32[4];
  CHECK_OK(cq_quantize_per_tensor(big, 4, 1.0f, 0, CQ_QINT32, q32));
  CHECK(q32[0] == INT32_MAX && q32[1] == INT32_MIN && q32[2] == 255 && q32[3] == 0);

  /* NaN and +-Inf give the dtype minimum (x86) */
  const float nf[3] = {NAN, INFINITY, -INFINITY};
  CHECK_OK(cq_quantize_per_tensor(nf, 3, 0.5f, 7, CQ_QUINT8, q));
  CHECK(q[0] == 0 && q[1] == 0 && q[2] == 0);
  CHECK_OK(cq_quantize_per_tensor(nf, 3, 0.5f, 7, CQ_QINT8, qs));
  CHECK(qs[0] == -128 && qs[1] == -128 && qs[2] == -128);
  CHECK_OK(cq_quantize_per_tensor(nf, 3, 0.5f, 7, CQ_QINT32, q32));
  CHECK(q32[0] == INT32_MIN && q32[1] == INT32_MIN && q32[2] == INT32_MIN);

  /* dequantize: f32(scale) * f32(q - zp), not an FMA */
  const uint8_t qd[3] = {0, 85, 255};
  float d[3];
  CHECK_OK(cq_dequantize_per_tensor(qd, 3, 3.0f / 255.0f, 85, CQ_QUINT8, d));
  CHECK_F32_BITS(d[0], (3.0f / 255.0f) * -85.0f);
  CHECK_F32_BITS(d[1], 0.0f);
  CHECK_F32_BITS(d[2], (3.0f / 255.0f) * 170.0f);

  /* quint4x2 saturates at 15 */
  const float f4[3] = {20.0f, -3.0f, 7.5f};
  CHECK_OK(cq_quantize_per_tensor(f4, 3, 1.0f, 0, CQ_QUINT4X2, q));
  CHECK(q[0] == 15 && q[1] == 0 && q[2] == 8);

  /* per channel with float zero points: zp added before rounding; scale 0 -> reciprocal 1 */
  const float x2[4] = {0.25f, 1.0f, 0.5f, 2.0f}; /* [2 channels, 2 inner] */
  const float sc2[2] = {0.5f, 0.0f};
  const float zf2[2] = {0.5f, 1.5f};
  CHECK_OK(cq_quantize_per_channel(x2, 1, 2, 2, sc2, NULL, zf2, CQ_QUINT8, q));
  /* rne(0.25*2 + 0.5) = 1, rne(1*2 + 0.5) = 2, rne(0.5*1 + 1.5) = 2, rne(2 + 1.5) = 4 */
  CHECK(q[0] == 1 && q[1] == 2 && q[2] == 2 && q[3] == 4);
}

/* Spec 2.4: fake-quantize forward/backward on hand-computed values. */
static void test_fake_quantize_spec(void) {
  /* scale 0.5, zp 2, [0, 7]: representable [-1, 2.5] */
  const float x[8] = {-1.0f, -1.25f, -1.26f, 2.5f, 2.75f, 2.76f, 0.3f, NAN};
  float y[8];
  uint8_t m[8];
  CHECK_OK(cq_fake_quantize_per_tensor(x, 8, 0.5f, 2, 0, 7, y, m));
  CHECK_F32_BITS(y[0], -1.0f);
  CHECK_INT_EQ(m[0], 1);
  CHECK_F32_BITS(y[1], -1.0f); /* -2.5 -> rne -2 -> q 0: inside, gradient passes */
  CHECK_INT_EQ(m[1], 1);
  CHECK_F32_BITS(y[2], -1.0f); /* -2.52 -> -3 -> q -1: clipped */
  CHECK_INT_EQ(m[2], 0);
  CHECK_F32_BITS(y[3], 2.5f);
  CHECK_INT_EQ(m[3], 1);
  CHECK_F32_BITS(y[4], 2.5f); /* 5.5 -> 6 -> q 8: clipped */
  CHECK_INT_EQ(m[4], 0);
  CHECK_F32_BITS(y[5], 2.5f);
  CHECK_INT_EQ(m[5], 0);
  CHECK_F32_BITS(y[6], 0.5f); /* 0.6 -> 1 */
  CHECK_INT_EQ(m[6], 1);
  CHECK_F32_BITS(y[7], -1.0f); /* NaN -> (qmin - zp) * scale, no gradient */
  CHECK_INT_EQ(m[7], 0);

  const float dy[4] = {1.5f, -2.0f, 3.0f, -4.0f};
  const uint8_t mk[4] = {1, 1, 0, 0};
  float dx[4];
  cq_fake_quantize_backward(dy, mk, 4, dx);
  CHECK_F32_BITS(dx[0], 1.5f);
  CHECK_F32_BITS(dx[1], -2.0f);
  CHECK_F32_BITS(dx[2], 0.0f);
  CHECK_F32_BITS(dx[3], -0.0f); /* dy * 0 keeps the sign, as torch's dY * mask does */

  /* per channel: [outer 1, channels 2, inner 2] */
  const float xc[4] = {1.0f, 100.0f, -1.0f, 0.26f};
  const float sc[2] = {0.25f, 0.5f};
  const int32_t zc[2] = {0, 3};
  CHECK_OK(cq_fake_quantize_per_channel(xc, 1, 2, 2, sc, zc, -8, 7, y, m));
  CHECK_F32_BITS(y[0], 1.0f);
  CHECK_INT_EQ(m[0], 1);
  CHECK_F32_BITS(y[1], 1.75f);
  CHECK_INT_EQ(m[1], 0);
  CHECK_F32_BITS(y[2], -1.0f);
  CHECK_INT_EQ(m[2], 1);
  CHECK_F32_BITS(y[3], 0.5f);
  CHECK_INT_EQ(m[3], 1);
}

/* Spec 2.6: ChooseQuantizationParams on hand-computed values. */
static void test_choose_qparams_spec(void) {
  double s = 0.0;
  int32_t z = -1;
  CHECK_OK(cq_choose_qparams(-1.0f, 2.0f, 0, 255, 0, 0, 0, &s, &z));
  CHECK(same_f64(s, 3.0 / 255.0) && z == 85);
  CHECK_OK(cq_choose_qparams(-1.0f, 2.0f, 0, 255, 0, 0, 1, &s, &z));
  CHECK(same_f64(s, 3.0 / 127.0) && z == 42);
  /* symmetric (preserve_sparsity): max(|min|/128, max/127), zp = rne(-0.5) = 0 */
  CHECK_OK(cq_choose_qparams(-1.0f, 2.0f, -128, 127, 1, 0, 0, &s, &z));
  CHECK_F32_BITS((float)s, 0.0157480314f);
  CHECK_INT_EQ(z, 0);
  /* zero range -> 0.1 */
  CHECK_OK(cq_choose_qparams(0.0f, 0.0f, 0, 255, 0, 0, 0, &s, &z));
  CHECK(same_f64(s, 0.1) && z == 0);
  /* below the 6.1e-5 floor */
  CHECK_OK(cq_choose_qparams(1e-7f, 2e-7f, 0, 255, 0, 0, 0, &s, &z));
  CHECK(same_f64(s, (double)6.1e-5f) && z == 0);
  CHECK_OK(cq_choose_qparams(-1e-4f, 0.0f, 0, 255, 0, 0, 0, &s, &z));
  CHECK(same_f64(s, (double)6.1e-5f) && z == 255);
}

/* Argument validation of the kernels. */
static void test_validation(void) {
  const float x[2] = {1.0f, 2.0f};
  uint8_t q[2];
  float y[2];
  uint8_t m[2];
  CHECK_STATUS(cq_quantize_per_tensor(x, 2, 0.0f, 0, CQ_QUINT8, q), CQ_EINVAL);
  CHECK(strlen(cq_last_error()) > 0);
  CHECK_STATUS(cq_quantize_per_tensor(x, 2, -1.0f, 0, CQ_QUINT8, q), CQ_EINVAL);
  CHECK_STATUS(cq_quantize_per_tensor(x, 2, NAN, 0, CQ_QUINT8, q), CQ_EINVAL);
  CHECK_STATUS(cq_quantize_per_tensor(x, 2, INFINITY, 0, CQ_QUINT8, q), CQ_EINVAL);
  CHECK_STATUS(cq_quantize_per_tensor(x, 2, 1.0f, 256, CQ_QUINT8, q), CQ_EINVAL);
  CHECK_STATUS(cq_quantize_per_tensor(x, 2, 1.0f, -1, CQ_QUINT8, q), CQ_EINVAL);
  CHECK_STATUS(cq_quantize_per_tensor(x, 2, 1.0f, 128, CQ_QINT8, q), CQ_EINVAL);
  CHECK_STATUS(cq_quantize_per_tensor(x, 2, 1.0f, 16, CQ_QUINT4X2, q), CQ_EINVAL);
  CHECK_STATUS(cq_quantize_per_tensor(x, 2, 1.0f, 0, CQ_QFLOAT32, q), CQ_EINVAL);
  CHECK_STATUS(cq_dequantize_per_tensor(q, 2, 0.0f, 0, CQ_QUINT8, y), CQ_EINVAL);
  CHECK_STATUS(cq_dequantize_per_tensor(q, 2, 1.0f, 300, CQ_QUINT8, y), CQ_EINVAL);
  CHECK_OK(cq_quantize_per_tensor(x, 0, 1.0f, 0, CQ_QUINT8, q)); /* empty is fine */

  const float sc[2] = {1.0f, 0.0f};
  const int32_t zp[2] = {0, 0};
  const int32_t zp_bad[2] = {0, 300};
  const float sc_ok[2] = {1.0f, 2.0f};
  CHECK_STATUS(cq_quantize_per_channel(x, 1, 2, 1, sc_ok, zp_bad, NULL, CQ_QUINT8, q), CQ_EINVAL);
  CHECK_OK(cq_quantize_per_channel(x, 1, 2, 1, sc_ok, zp, NULL, CQ_QUINT8, q));
  CHECK(q[0] == 1 && q[1] == 1);

  CHECK_STATUS(cq_fake_quantize_per_tensor(x, 2, 1.0f, 0, 5, 4, y, m), CQ_EINVAL);
  CHECK_STATUS(cq_fake_quantize_per_tensor(x, 2, 1.0f, 9, 0, 8, y, m), CQ_EINVAL);
  CHECK_STATUS(cq_fake_quantize_per_tensor(x, 2, 1.0f, -1, 0, 8, y, m), CQ_EINVAL);
  CHECK_STATUS(cq_fake_quantize_per_tensor(x, 2, 0.0f, 0, 0, 8, y, m), CQ_EINVAL);
  CHECK_STATUS(cq_fake_quantize_per_tensor(x, 2, -0.5f, 0, 0, 8, y, m), CQ_EINVAL);
  CHECK_STATUS(cq_fake_quantize_per_channel(x, 1, 2, 1, sc_ok, zp_bad, 0, 255, y, m), CQ_EINVAL);
  CHECK_STATUS(cq_fake_quantize_per_channel(x, 1, 2, 1, sc, zp, 0, 255, y, m), CQ_EINVAL);

  /* tensor forms: per-channel qparams must match the tensor's channel count */
  cq_tensor *t = NULL, *out = NULL;
  int64_t shape[2] = {2, 3};
  float data[6] = {0};
  CHECK_OK(cq_tensor_wrap(&t, CQ_F32, 2, shape, data));
  cq_qparams qp;
  CHECK_OK(cq_qparams_init(&qp, CQ_QINT8, CQ_PER_CHANNEL_AFFINE, 4, 1));
  CHECK(cq_quantize_tensor(t, &qp, &out) != CQ_OK);
  CHECK(out == NULL);
  cq_qparams_release(&qp);
  CHECK_OK(cq_qparams_init(&qp, CQ_QINT8, CQ_PER_CHANNEL_AFFINE, 3, 2));
  CHECK(cq_quantize_tensor(t, &qp, &out) != CQ_OK);
  CHECK(out == NULL);
  cq_qparams_release(&qp);
  CHECK_OK(cq_qparams_init(&qp, CQ_QINT8, CQ_PER_CHANNEL_AFFINE, 3, 1));
  CHECK_OK(cq_quantize_tensor(t, &qp, &out));
  cq_tensor_free(out);
  out = NULL;
  cq_qparams_release(&qp);
  /* dequantizing a tensor without qparams is an error */
  CHECK(cq_dequantize_tensor(t, &out) != CQ_OK);
  cq_tensor_free(t);
}

int main(void) {
  test_names();
  test_qparams_record();
  test_quant_range_resolve();
  test_calculate_qparams_spec();
  test_quantize_spec();
  test_fake_quantize_spec();
  test_choose_qparams_spec();
  test_validation();
  test_golden();
  printf("test_quant_math: %d golden cases\n", cases_run);
  return check_summary("test_quant_math");
}

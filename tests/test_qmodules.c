/* Static quantized modules and float modules on quantized tensors against PyTorch 1.13.
 *
 * Golden cases (tests/data/golden/qmodules/cases.txt, from tools/golden/gen_qmodules.py), recorded
 * under PyTorch's qnnpack and onednn engines. Each case builds the cquant module the way convert
 * would (cq_qmodule_linear / _conv / _quantize / _dequantize / _functional with the recorded float
 * weights and qparams, or a float module fed quantized tensors), checks str(module), the quantized
 * weight integers, and the output integers:
 *   qnnpack cases, engine CQ_BACKEND_QNNPACK   bit for bit
 *   onednn cases,  engine CQ_BACKEND_ONEDNN    bit for bit
 *   onednn cases of Linear / Conv, engine CQ_BACKEND_X86 (FBGEMM's published rule, which PyTorch's
 *                  x86 engine would run and this build cannot): within 1 LSB of oneDNN on at least
 *                  99.9% of the elements; the exact-match rate is printed
 * Memory format: the modules assume channels-last 4-D activations (qops.h, CQ_QLAYOUT_DEFAULT);
 * cases recorded on NCHW-contiguous inputs call the layout-dependent kernels with
 * CQ_QLAYOUT_NCHW directly, so both layouts are checked. Linear and Conv cases also run on every
 * instruction set this CPU supports (CQ_ISA).
 *
 * Direct checks: misuse (wrong dtype, shape, qparams, engine; ONEDNN's weight zero points; add on
 * unconverted FloatFunctional; training-mode dropout), the weight/bias buffers, and allocation
 * failures in construction and forward. CQ_TEST_DETAILS=N prints up to N mismatch details (20). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cquant/modules.h"
#include "cquant/nn.h"
#include "cquant/npy.h"
#include "cquant/qconfig.h"
#include "cquant/quantize.h"
#include "cquant/threads.h"
#include "cquant/status.h"
#include "cquant/tensor.h"
#include "core/cpu.h"
#include "nn/quantized/qmodules.h"
#include "nn/quantized/qops.h"
#include "support/check.h"
#include "support/golden.h"

#define GOLDEN_FILE CQ_TEST_DATA_DIR "/golden/qmodules/cases.txt"

/* --- statistics --------------------------------------------------------------------------------- */

typedef struct stat_row {
  char label[48]; /* "qnnpack", "onednn", "x86 rule vs onednn" */
  char group[48]; /* op */
  long cases, elems, exact, within1;
  long max_diff;
} stat_row;

static stat_row stats[128];
static int nstats;

static stat_row *stat_for(const char *label, const char *group) {
  for (int i = 0; i < nstats; i++) {
    if (strcmp(stats[i].label, label) == 0 && strcmp(stats[i].group, group) == 0) return &stats[i];
  }
  if (nstats == (int)(sizeof stats / sizeof stats[0])) return NULL;
  stat_row *s = &stats[nstats++];
  memset(s, 0, sizeof *s);
  snprintf(s->label, sizeof s->label, "%s", label);
  snprintf(s->group, sizeof s->group, "%s", group);
  return s;
}

static long details_left = -1;

static int detail_budget(void) {
  if (details_left < 0) {
    const char *env = getenv("CQ_TEST_DETAILS");
    details_left = env ? atol(env) : 20;
  }
  return details_left-- > 0;
}

/* --- reading cases ------------------------------------------------------------------------------ */

static const char *need(const golden_case *c, const char *key) {
  const char *v = golden_get(c, key);
  CHECK_MSG(v != NULL, "case %s: missing key '%s'", c->name, key);
  return v;
}

static int64_t get_int(const golden_case *c, const char *key) {
  const char *v = need(c, key);
  return v ? strtoll(v, NULL, 10) : 0;
}

static float get_float(const golden_case *c, const char *key) {
  const char *v = need(c, key);
  return v ? (float)strtod(v, NULL) : 0.0f;
}

static int get_ints(const golden_case *c, const char *key, int64_t *out, int max) {
  const char *v = need(c, key);
  if (!v) return 0;
  int64_t *vals = NULL;
  int n = golden_parse_ints(v, &vals);
  CHECK_MSG(n >= 1 && n <= max, "case %s: bad '%s'", c->name, key);
  for (int i = 0; i < n && i < max; i++) out[i] = vals[i];
  free(vals);
  return n;
}

static int is(const char *a, const char *b) { return a && strcmp(a, b) == 0; }

static cq_tensor *load_npy_file(const golden_file *g, const golden_case *c, const char *file) {
  char path[1024];
  cq_tensor *t = NULL;
  cq_status st = cq_npy_load(golden_path(g, file, path, sizeof path), &t);
  CHECK_MSG(st == CQ_OK, "case %s: loading %s: %s", c->name, file, cq_last_error());
  return st == CQ_OK ? t : NULL;
}

static cq_tensor *load_npy(const golden_file *g, const golden_case *c, const char *key) {
  const char *v = need(c, key);
  return v ? load_npy_file(g, c, v) : NULL;
}

static void unescape(char *s) {
  char *w = s;
  for (const char *r = s; *r; r++) {
    if (r[0] == '\\' && r[1] == 'n') {
      *w++ = '\n';
      r++;
    } else if (r[0] == '\\' && r[1] == '\\') {
      *w++ = '\\';
      r++;
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
}

static void check_repr(const golden_case *c, const cq_module *m) {
  const char *want_raw = golden_get(c, "repr");
  if (!want_raw || !m) return;
  char *want = strdup(want_raw);
  char *got = cq_module_repr_alloc(m);
  if (want && got) {
    unescape(want);
    CHECK_MSG(strcmp(got, want) == 0, "case %s: repr\n  got:  %s\n  want: %s", c->name, got, want);
  } else {
    CHECK_MSG(0, "case %s: out of memory formatting the repr", c->name);
  }
  free(want);
  free(got);
}

static cq_backend engine_of(const golden_case *c) {
  return is(golden_get(c, "engine"), "qnnpack") ? CQ_BACKEND_QNNPACK : CQ_BACKEND_ONEDNN;
}

static cq_qlayout layout_of(const golden_case *c) {
  return is(golden_get(c, "layout"), "nchw") ? CQ_QLAYOUT_NCHW : CQ_QLAYOUT_NHWC;
}

static cq_qdtype qdtype_of(const char *name) {
  cq_qdtype d = CQ_QUINT8;
  if (name) CHECK_OK(cq_qdtype_parse(name, &d));
  return d;
}

/* Per-tensor qparams. */
static cq_status per_tensor(cq_qparams *qp, cq_qdtype dtype, float scale, int32_t zp) {
  cq_status st = cq_qparams_init(qp, dtype, CQ_PER_TENSOR_AFFINE, 1, -1);
  if (st != CQ_OK) return st;
  qp->scale[0] = scale;
  qp->zero_point[0] = zp;
  return CQ_OK;
}

/* The quantized inputs of a case (integers + x_scale / x_zero_point lists). Returns the count. */
static int load_inputs(const golden_file *g, const golden_case *c, cq_tensor **in, int max) {
  float *scales = NULL;
  int64_t *zps = NULL;
  const int ns = golden_parse_floats(need(c, "x_scale") ? golden_get(c, "x_scale") : "", &scales);
  const int nz = golden_parse_ints(need(c, "x_zero_point") ? golden_get(c, "x_zero_point") : "",
                                   &zps);
  const cq_qdtype d = qdtype_of(golden_get(c, "x_dtype"));
  int n = 0;
  for (; n < max; n++) {
    const char *file = golden_get_nth(c, "input", n);
    if (!file) break;
    CHECK_MSG(n < ns && n < nz, "case %s: qparams of input %d missing", c->name, n);
    if (n >= ns || n >= nz) break;
    in[n] = load_npy_file(g, c, file);
    if (!in[n]) break;
    cq_qparams qp;
    CHECK_OK(per_tensor(&qp, d, scales[n], (int32_t)zps[n]));
    CHECK_OK(cq_tensor_set_qparams(in[n], &qp));
    cq_qparams_release(&qp);
  }
  free(scales);
  free(zps);
  return n;
}

static void free_inputs(cq_tensor **in, int n) {
  for (int i = 0; i < n; i++) cq_tensor_free(in[i]);
}

/* --- comparing ---------------------------------------------------------------------------------- */

static int32_t q_at(const cq_tensor *t, int64_t i) {
  return t->dtype == CQ_U8 ? ((const uint8_t *)t->data)[i] : ((const int8_t *)t->data)[i];
}

/* Compares quantized integers (and the output's qparams); records the statistics. Returns the
 * number of elements that differ. */
static long compare_q(const golden_case *c, const char *label, const char *group,
                      const cq_tensor *got, const cq_tensor *want, int exact_required) {
  if (!got || !want) {
    CHECK_MSG(0, "case %s (%s): no output", c->name, label);
    return -1;
  }
  int same_shape = got->ndim == want->ndim && got->dtype == want->dtype;
  for (int i = 0; same_shape && i < got->ndim; i++) same_shape = got->shape[i] == want->shape[i];
  CHECK_MSG(same_shape, "case %s (%s): output shape/dtype differs", c->name, label);
  if (!same_shape) return -1;
  if (golden_get(c, "y_scale")) {
    CHECK_MSG(got->qparams != NULL, "case %s: output has no qparams", c->name);
    if (got->qparams) {
      CHECK_F32_BITS(got->qparams->scale[0], get_float(c, "y_scale"));
      CHECK_INT_EQ(got->qparams->zero_point[0], get_int(c, "y_zero_point"));
      CHECK_INT_EQ(got->qparams->dtype, qdtype_of(golden_get(c, "y_dtype")));
    }
  }
  stat_row *s = stat_for(label, group);
  const int64_t n = cq_tensor_numel(want);
  long diff = 0, within1 = 0, shown = 0, maxd = 0;
  for (int64_t i = 0; i < n; i++) {
    const long d = labs((long)q_at(got, i) - (long)q_at(want, i));
    if (d) diff++;
    if (d <= 1) within1++;
    if (d > maxd) maxd = d;
    if (d && exact_required && shown < 4 && detail_budget()) {
      fprintf(stderr, "  case %s (%s): element %lld: got %d want %d\n", c->name, label,
              (long long)i, (int)q_at(got, i), (int)q_at(want, i));
      shown++;
    }
  }
  if (s) {
    s->cases++;
    s->elems += n;
    s->exact += n - diff;
    s->within1 += within1;
    if (maxd > s->max_diff) s->max_diff = maxd;
  }
  if (exact_required) {
    CHECK_MSG(diff == 0, "FAILED case %s (%s): %ld of %lld elements differ (max %ld)", c->name,
              label, diff, (long long)n, maxd);
  }
  return diff;
}

/* --- weighted modules --------------------------------------------------------------------------- */

static cq_status weight_qparams(const golden_case *c, int64_t rows, cq_qparams *wq) {
  cq_qscheme qs = CQ_PER_TENSOR_AFFINE;
  CHECK_OK(cq_qscheme_parse(need(c, "w_qscheme"), &qs));
  float *scales = NULL;
  int64_t *zps = NULL;
  const int n = golden_parse_floats(need(c, "w_scale"), &scales);
  const int nz = golden_parse_ints(need(c, "w_zero_point"), &zps);
  const int per_channel = cq_qscheme_is_per_channel(qs);
  CHECK_INT_EQ(n, per_channel ? rows : 1);
  CHECK_INT_EQ(nz, n);
  cq_status st = cq_qparams_init(wq, CQ_QINT8, qs, n > 0 ? n : 1, per_channel ? 0 : -1);
  if (st == CQ_OK) {
    for (int i = 0; i < n && i < nz; i++) {
      wq->scale[i] = scales[i];
      wq->zero_point[i] = (int32_t)zps[i];
    }
    wq->quant_min = (int32_t)get_int(c, "w_quant_min");
    wq->quant_max = (int32_t)get_int(c, "w_quant_max");
  }
  free(scales);
  free(zps);
  return st;
}

static cq_status build_weighted(const golden_file *g, const golden_case *c, cq_backend engine,
                                cq_module **m) {
  *m = NULL;
  cq_tensor *w = load_npy(g, c, "weight");
  cq_tensor *b = golden_get(c, "bias") ? load_npy(g, c, "bias") : NULL;
  if (!w) {
    cq_tensor_free(b);
    return CQ_EFORMAT;
  }
  const int64_t rows = w->shape[0];
  cq_qparams wq, yq;
  memset(&wq, 0, sizeof wq);
  memset(&yq, 0, sizeof yq);
  cq_status st = weight_qparams(c, rows, &wq);
  if (st == CQ_OK) st = per_tensor(&yq, CQ_QUINT8, get_float(c, "y_scale"), (int32_t)get_int(c, "y_zero_point"));
  const int relu = (int)get_int(c, "relu");
  if (st == CQ_OK && is(golden_get(c, "op"), "linear")) {
    st = cq_qmodule_linear(m, get_int(c, "in_features"), get_int(c, "out_features"), w->data,
                           b ? b->data : NULL, &wq, &yq, relu, engine);
  } else if (st == CQ_OK) {
    const int dims = (int)get_int(c, "dims");
    cq_conv_options o = cq_conv_defaults(get_int(c, "in_channels"), get_int(c, "out_channels"), 1,
                                         1);
    CHECK_INT_EQ(get_ints(c, "kernel_size", o.kernel_size, 2), dims);
    CHECK_INT_EQ(get_ints(c, "stride", o.stride, 2), dims);
    CHECK_INT_EQ(get_ints(c, "padding", o.padding, 2), dims);
    CHECK_INT_EQ(get_ints(c, "dilation", o.dilation, 2), dims);
    o.groups = get_int(c, "groups");
    o.bias = b != NULL;
    st = cq_qmodule_conv(m, &o, dims, w->data, b ? b->data : NULL, &wq, &yq, relu, engine);
  }
  cq_qparams_release(&wq);
  cq_qparams_release(&yq);
  cq_tensor_free(w);
  cq_tensor_free(b);
  return st;
}

static cq_tensor *forward1(cq_module *m, cq_ctx *ctx, cq_tensor *x, const golden_case *c,
                           const char *label) {
  cq_tensor *y = NULL;
  cq_status st = cq_module_forward1(m, ctx, x, &y);
  CHECK_MSG(st == CQ_OK, "case %s (%s): forward: %s", c->name, label, cq_last_error());
  return st == CQ_OK ? y : NULL;
}


static void run_weighted(const golden_file *g, const golden_case *c, cq_ctx *ctx) {
  const char *op = golden_get(c, "op");
  const char *group = is(op, "linear") ? "linear" : (get_int(c, "dims") == 1 ? "conv1d" : "conv2d");
  const cq_backend engine = engine_of(c);
  cq_tensor *x = NULL, *want = load_npy(g, c, "output"), *wint = load_npy(g, c, "weight_int");
  load_inputs(g, c, &x, 1);
  cq_module *m = NULL;
  cq_status st = build_weighted(g, c, engine, &m);
  CHECK_MSG(st == CQ_OK, "case %s: building: %s", c->name, cq_last_error());
  if (m && x && want) {
    check_repr(c, m);
    cq_named_tensor *wt = cq_module_find_tensor(m, "weight");
    CHECK_MSG(wt && wint && cq_tensor_nbytes(wt->tensor) == cq_tensor_nbytes(wint) &&
                  memcmp(wt->tensor->data, wint->data, cq_tensor_nbytes(wint)) == 0,
              "case %s: quantized weight differs from PyTorch's", c->name);
    if (wt) CHECK_INT_EQ(cq_dtype_get(wt->tensor->dtype)->size, 1);
    CHECK_INT_EQ(cq_module_find_tensor(m, "bias") != NULL, golden_get(c, "bias") != NULL);
    /* every instruction set this CPU has: the same bytes */
    const char *saved = getenv("CQ_ISA");
    char *saved_copy = saved ? strdup(saved) : NULL;
    for (int isa = 0; isa < CQ_ISA_COUNT; isa++) {
      if (!cq_isa_supported((cq_isa)isa)) continue;
      setenv("CQ_ISA", cq_isa_name((cq_isa)isa), 1);
      cq_tensor *y = forward1(m, ctx, x, c, cq_isa_name((cq_isa)isa));
      char label[64];
      snprintf(label, sizeof label, "%s", engine == CQ_BACKEND_QNNPACK ? "qnnpack" : "onednn");
      if (isa == 0) {
        compare_q(c, label, group, y, want, 1);
      } else if (y) {
        compare_q(c, cq_isa_name((cq_isa)isa), "isa agreement", y, want, 1);
      }
      cq_ctx_reset(ctx);
    }
    if (saved_copy) {
      setenv("CQ_ISA", saved_copy, 1);
    } else {
      unsetenv("CQ_ISA");
    }
    free(saved_copy);
  }
  cq_module_free(m);
  /* the data must tell the rules apart: QNNPACK's numbers through oneDNN's rule (weights with
   * zero points are refused by ONEDNN and skipped) */
  if (engine == CQ_BACKEND_QNNPACK && x && want && strstr(c->name, "aff") == NULL) {
    st = build_weighted(g, c, CQ_BACKEND_ONEDNN, &m);
    CHECK_MSG(st == CQ_OK, "case %s: building for onednn: %s", c->name, cq_last_error());
    if (st == CQ_OK) {
      cq_tensor *y = forward1(m, ctx, x, c, "onednn rule");
      compare_q(c, "onednn rule vs qnnpack", group, y, want, 0);
      cq_ctx_reset(ctx);
    }
    cq_module_free(m);
  }
  /* the x86 engine (FBGEMM's rule) against oneDNN's numbers */
  if (engine == CQ_BACKEND_ONEDNN && x && want) {
    st = build_weighted(g, c, CQ_BACKEND_X86, &m);
    CHECK_MSG(st == CQ_OK, "case %s: building for x86: %s", c->name, cq_last_error());
    if (st == CQ_OK) {
      cq_tensor *y = forward1(m, ctx, x, c, "x86");
      compare_q(c, "x86 rule vs onednn", group, y, want, 0);
      cq_ctx_reset(ctx);
    }
    cq_module_free(m);
  }
  cq_tensor_free(x);
  cq_tensor_free(want);
  cq_tensor_free(wint);
}

/* --- Quantize / DeQuantize ---------------------------------------------------------------------- */

static void run_quantize(const golden_file *g, const golden_case *c, cq_ctx *ctx) {
  cq_module *m = NULL;
  CHECK_OK(cq_qmodule_quantize(&m, get_float(c, "scale"), (int32_t)get_int(c, "zero_point"),
                               qdtype_of(golden_get(c, "dtype"))));
  cq_tensor *x = load_npy(g, c, "input"), *want = load_npy(g, c, "output");
  if (m && x && want) {
    check_repr(c, m);
    cq_tensor *y = forward1(m, ctx, x, c, "quantize");
    compare_q(c, engine_of(c) == CQ_BACKEND_QNNPACK ? "qnnpack" : "onednn", "quantize", y, want, 1);
  }
  cq_ctx_reset(ctx);
  cq_module_free(m);
  cq_tensor_free(x);
  cq_tensor_free(want);
}

static void run_dequantize(const golden_file *g, const golden_case *c, cq_ctx *ctx) {
  cq_module *m = NULL;
  CHECK_OK(cq_qmodule_dequantize(&m));
  cq_tensor *x = NULL, *want = load_npy(g, c, "output");
  load_inputs(g, c, &x, 1);
  if (m && x && want) {
    check_repr(c, m);
    cq_tensor *y = forward1(m, ctx, x, c, "dequantize");
    if (y) {
      CHECK_INT_EQ(y->dtype, CQ_F32);
      CHECK_INT_EQ(cq_tensor_numel(y), cq_tensor_numel(want));
      long bad = 0;
      const float *a = y->data, *b = want->data;
      for (int64_t i = 0; i < cq_tensor_numel(want); i++) bad += check_f32_bits(a[i]) != check_f32_bits(b[i]);
      CHECK_MSG(bad == 0, "FAILED case %s: %ld dequantized values differ", c->name, bad);
      stat_row *s = stat_for(engine_of(c) == CQ_BACKEND_QNNPACK ? "qnnpack" : "onednn", "dequantize");
      if (s) {
        s->cases++;
        s->elems += cq_tensor_numel(want);
        s->exact += cq_tensor_numel(want) - bad;
        s->within1 += cq_tensor_numel(want) - bad;
      }
    }
  }
  cq_ctx_reset(ctx);
  cq_module_free(m);
  cq_tensor_free(x);
  cq_tensor_free(want);
}

/* --- QFunctional -------------------------------------------------------------------------------- */

static void run_functional(const golden_file *g, const golden_case *c, cq_ctx *ctx) {
  const char *fn = golden_get(c, "fn");
  const cq_backend engine = engine_of(c);
  cq_qfunctional_op op = is(fn, "add") ? CQ_QF_ADD
                         : is(fn, "add_relu") ? CQ_QF_ADD_RELU
                         : is(fn, "mul") ? CQ_QF_MUL : CQ_QF_CAT;
  const int dim = (int)get_int(c, "cat_dim");
  cq_qparams yq;
  CHECK_OK(per_tensor(&yq, qdtype_of(golden_get(c, "y_dtype")), get_float(c, "y_scale"),
                      (int32_t)get_int(c, "y_zero_point")));
  cq_module *m = NULL;
  CHECK_OK(cq_qmodule_functional(&m, op, dim, &yq, engine));
  cq_tensor *in[CQ_MAX_IO] = {0};
  const int n = load_inputs(g, c, in, CQ_MAX_IO);
  cq_tensor *want = load_npy(g, c, "output");
  const char *label = engine == CQ_BACKEND_QNNPACK ? "qnnpack" : "onednn";
  char group[48];
  snprintf(group, sizeof group, "QFunctional.%s", fn ? fn : "?");
  if (m && n >= 1 && want) {
    check_repr(c, m);
    cq_tensor *y = NULL;
    cq_status st;
    if (in[0]->ndim == 4 && layout_of(c) == CQ_QLAYOUT_NCHW) {
      /* recorded on NCHW tensors: the kernels with that layout (the module assumes NHWC) */
      if (op == CQ_QF_CAT) {
        st = cq_qop_cat(m, ctx, n, in, dim, yq.scale[0], yq.zero_point[0], CQ_QLAYOUT_NCHW, &y);
      } else if (op == CQ_QF_MUL) {
        st = cq_qop_mul(m, ctx, in[0], in[1], yq.scale[0], yq.zero_point[0], 0, &y);
      } else {
        st = cq_qop_add(m, ctx, in[0], in[1], yq.scale[0], yq.zero_point[0],
                        op == CQ_QF_ADD_RELU, engine, CQ_QLAYOUT_NCHW, &y);
      }
    } else {
      cq_tensor *outs[1] = {NULL};
      st = cq_module_forward(m, ctx, n, in, 1, outs);
      y = outs[0];
    }
    CHECK_MSG(st == CQ_OK, "case %s: forward: %s", c->name, cq_last_error());
    compare_q(c, label, group, y, want, 1);
  }
  cq_ctx_reset(ctx);
  cq_qparams_release(&yq);
  cq_module_free(m);
  free_inputs(in, n);
  cq_tensor_free(want);
}

/* --- float modules on quantized tensors --------------------------------------------------------- */

static int warnings_seen;

static void count_warning(const char *message, void *user) {
  (void)message;
  (void)user;
  warnings_seen++;
}

static cq_pool_options pool_options(const golden_case *c) {
  cq_pool_options o = cq_pool_defaults(1, 1);
  CHECK_INT_EQ(get_ints(c, "kernel_size", o.kernel_size, 2), 2);
  CHECK_INT_EQ(get_ints(c, "stride", o.stride, 2), 2);
  CHECK_INT_EQ(get_ints(c, "padding", o.padding, 2), 2);
  CHECK_INT_EQ(get_ints(c, "dilation", o.dilation, 2), 2);
  o.ceil_mode = (int)get_int(c, "ceil_mode");
  o.count_include_pad = (int)get_int(c, "count_include_pad");
  o.divisor_override = get_int(c, "divisor_override");
  return o;
}

static cq_qpool2d qpool_of(const cq_pool_options *o) {
  cq_qpool2d g;
  for (int d = 0; d < 2; d++) {
    g.kernel[d] = o->kernel_size[d];
    g.stride[d] = o->stride[d] ? o->stride[d] : o->kernel_size[d];
    g.padding[d] = o->padding[d];
    g.dilation[d] = o->dilation[d];
  }
  g.ceil_mode = o->ceil_mode;
  g.count_include_pad = o->count_include_pad;
  g.divisor_override = o->divisor_override;
  return g;
}

static cq_status build_passthrough(const golden_case *c, const char *op, cq_module **m) {
  *m = NULL;
  if (is(op, "relu")) return cq_relu(m);
  if (is(op, "relu6")) return cq_relu6(m);
  if (is(op, "qrelu6")) return cq_qmodule_relu6(m);
  if (is(op, "hardtanh")) return cq_hardtanh(m, get_float(c, "min_val"), get_float(c, "max_val"));
  if (is(op, "sigmoid")) return cq_sigmoid(m);
  if (is(op, "tanh")) return cq_tanh(m);
  if (is(op, "identity")) return cq_identity(m);
  if (is(op, "qdropout")) return cq_qmodule_dropout(m, get_float(c, "p"));
  if (is(op, "dropout")) {
    cq_status st = cq_dropout(m, get_float(c, "p"));
    if (st == CQ_OK) cq_module_train(*m, 0);
    return st;
  }
  if (is(op, "flatten")) {
    return cq_flatten(m, (int)get_int(c, "start_dim"), (int)get_int(c, "end_dim"));
  }
  if (is(op, "maxpool2d") || is(op, "avgpool2d")) {
    cq_pool_options o = pool_options(c);
    return is(op, "maxpool2d") ? cq_maxpool2d(m, &o) : cq_avgpool2d(m, &o);
  }
  if (is(op, "adaptive_avgpool2d")) {
    int64_t size[2] = {1, 1};
    get_ints(c, "output_size", size, 2);
    return cq_adaptive_avgpool2d(m, size[0], size[1]);
  }
  if (is(op, "cat")) return cq_cat(m, (int)get_int(c, "dim"));
  return cq_fail(CQ_EINVAL, "unknown op %s", op ? op : "(null)");
}

/* The layout-dependent kernels called directly with the case's layout (NCHW inputs). */
static cq_status run_with_layout(const golden_case *c, const char *op, cq_ctx *ctx, int n,
                                 cq_tensor *const *in, cq_backend engine, cq_tensor **y) {
  if (is(op, "avgpool2d")) {
    cq_pool_options o = pool_options(c);
    cq_qpool2d g = qpool_of(&o);
    return cq_qop_avgpool2d(NULL, ctx, in[0], &g, engine, CQ_QLAYOUT_NCHW, y);
  }
  if (is(op, "adaptive_avgpool2d")) {
    int64_t size[2] = {1, 1};
    get_ints(c, "output_size", size, 2);
    return cq_qop_adaptive_avgpool2d(NULL, ctx, in[0], size[0], size[1], engine, CQ_QLAYOUT_NCHW,
                                     y);
  }
  if (is(op, "sigmoid")) return cq_qop_sigmoid(NULL, ctx, in[0], engine, CQ_QLAYOUT_NCHW, y);
  if (is(op, "tanh")) return cq_qop_tanh(NULL, ctx, in[0], engine, CQ_QLAYOUT_NCHW, y);
  /* cat: the first input's qparams */
  return cq_qop_cat(NULL, ctx, n, in, (int)get_int(c, "dim"), in[0]->qparams->scale[0],
                    in[0]->qparams->zero_point[0], CQ_QLAYOUT_NCHW, y);
}

static void run_passthrough(const golden_file *g, const golden_case *c, cq_ctx *ctx) {
  const char *op = golden_get(c, "op");
  const cq_backend engine = engine_of(c);
  cq_module *m = NULL;
  cq_status st = build_passthrough(c, op, &m);
  CHECK_MSG(st == CQ_OK, "case %s: building: %s", c->name, cq_last_error());
  cq_tensor *in[CQ_MAX_IO] = {0};
  const int n = load_inputs(g, c, in, CQ_MAX_IO);
  cq_tensor *want = load_npy(g, c, "output");
  const char *label = engine == CQ_BACKEND_QNNPACK ? "qnnpack" : "onednn";
  if (m && n >= 1 && want) {
    if (!is(op, "cat")) check_repr(c, m);
    cq_set_quantized_engine(engine);
    const int layout_dependent = is(op, "avgpool2d") || is(op, "adaptive_avgpool2d") ||
                                 is(op, "sigmoid") || is(op, "tanh") || is(op, "cat");
    cq_tensor *y = NULL;
    if (layout_dependent && in[0]->ndim == 4 && layout_of(c) == CQ_QLAYOUT_NCHW) {
      st = run_with_layout(c, op, ctx, n, in, engine, &y);
    } else {
      cq_tensor *outs[1] = {NULL};
      st = cq_module_forward(m, ctx, n, in, 1, outs);
      y = outs[0];
    }
    CHECK_MSG(st == CQ_OK, "case %s: forward: %s", c->name, cq_last_error());
    compare_q(c, label, op, y, want, 1);
    if (is(op, "identity") || is(op, "dropout") || is(op, "qdropout")) CHECK(y == in[0]);
    cq_set_quantized_engine(CQ_BACKEND_X86);
  }
  cq_ctx_reset(ctx);
  cq_module_free(m);
  free_inputs(in, n);
  cq_tensor_free(want);
}

/* --- a whole converted model ------------------------------------------------------------------- */

/* The entries of c whose keys start with `prefix`, with the prefix removed (strings borrowed). */
static int sub_case(const golden_case *c, const char *prefix, golden_case *view) {
  const size_t len = strlen(prefix);
  view->name = c->name;
  view->count = 0;
  view->entries = calloc((size_t)(c->count ? c->count : 1), sizeof *view->entries);
  if (!view->entries) return -1;
  for (int i = 0; i < c->count; i++) {
    if (strncmp(c->entries[i].key, prefix, len) == 0) {
      view->entries[view->count].key = c->entries[i].key + len;
      view->entries[view->count].value = c->entries[i].value;
      view->count++;
    }
  }
  return 0;
}

static void run_model(const golden_file *g, const golden_case *c, cq_ctx *ctx) {
  const cq_backend engine = engine_of(c);
  const int n = (int)get_int(c, "layers");
  cq_module *children[32] = {0};
  int built = 0;
  for (int k = 0; k < n && k < 32; k++) {
    char prefix[16];
    snprintf(prefix, sizeof prefix, "l%d.", k);
    golden_case view;
    if (sub_case(c, prefix, &view) != 0) break;
    const char *op = golden_get(&view, "op");
    cq_status st;
    if (is(op, "quantize")) {
      st = cq_qmodule_quantize(&children[k], get_float(&view, "scale"),
                               (int32_t)get_int(&view, "zero_point"),
                               qdtype_of(golden_get(&view, "dtype")));
    } else if (is(op, "dequantize")) {
      st = cq_qmodule_dequantize(&children[k]);
    } else if (is(op, "conv") || is(op, "linear")) {
      st = build_weighted(g, &view, engine, &children[k]);
    } else {
      st = build_passthrough(&view, op, &children[k]);
    }
    CHECK_MSG(st == CQ_OK, "case %s: layer %d (%s): %s", c->name, k, op ? op : "?",
              cq_last_error());
    free(view.entries);
    if (st != CQ_OK) break;
    built++;
  }
  cq_module *model = NULL;
  if (built == n) {
    CHECK_OK(cq_sequential(&model, n, children));
  } else {
    for (int k = 0; k < built; k++) cq_module_free(children[k]);
  }
  cq_tensor *x = load_npy(g, c, "input"), *want_q = load_npy(g, c, "output");
  cq_tensor *want_f = load_npy(g, c, "output_float");
  if (model && x && want_q && want_f) {
    check_repr(c, model);
    cq_set_quantized_engine(engine);
    /* layer by layer: the integers before DeQuantize, then the float output */
    cq_tensor *h = x;
    for (int k = 0; k < n && h; k++) {
      cq_tensor *next = NULL;
      cq_status st = cq_module_forward1(cq_module_child(model, k), ctx, h, &next);
      CHECK_MSG(st == CQ_OK, "case %s: layer %d: %s", c->name, k, cq_last_error());
      if (k == n - 2) compare_q(c, engine == CQ_BACKEND_QNNPACK ? "qnnpack" : "onednn", "model",
                                next, want_q, 1);
      h = next;
    }
    cq_tensor *y = NULL;
    CHECK_OK(cq_module_forward1(model, ctx, x, &y));
    if (y && h) {
      CHECK_INT_EQ(cq_tensor_numel(y), cq_tensor_numel(want_f));
      long bad = 0;
      for (int64_t i = 0; i < cq_tensor_numel(want_f) && i < cq_tensor_numel(y); i++) {
        bad += check_f32_bits(((float *)y->data)[i]) != check_f32_bits(((float *)want_f->data)[i]);
        bad += check_f32_bits(((float *)y->data)[i]) != check_f32_bits(((float *)h->data)[i]);
      }
      CHECK_MSG(bad == 0, "FAILED case %s: %ld float outputs differ", c->name, bad);
    }
    cq_set_quantized_engine(CQ_BACKEND_X86);
  }
  cq_ctx_reset(ctx);
  cq_module_free(model);
  cq_tensor_free(x);
  cq_tensor_free(want_q);
  cq_tensor_free(want_f);
}

static void run_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN_FILE, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN_FILE);
    return;
  }
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  int ran = 0;
  for (int i = 0; ctx && i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    const char *op = golden_get(c, "op");
    if (is(op, "linear") || is(op, "conv")) {
      run_weighted(&g, c, ctx);
    } else if (is(op, "quantize")) {
      run_quantize(&g, c, ctx);
    } else if (is(op, "dequantize")) {
      run_dequantize(&g, c, ctx);
    } else if (is(op, "functional")) {
      run_functional(&g, c, ctx);
    } else if (is(op, "model")) {
      run_model(&g, c, ctx);
    } else {
      run_passthrough(&g, c, ctx);
    }
    ran++;
  }
  CHECK(ran > 300);
  printf("golden: %d cases\n", ran);
  cq_ctx_free(ctx);
  golden_free(&g);
}

static void print_stats(void) {
  printf("%-20s %-22s %6s %9s %9s %9s %5s\n", "engine", "op", "cases", "elements", "exact%",
         "within1%", "max");
  long x86_elems = 0, x86_within = 0, x86_exact = 0, cross_elems = 0, cross_exact = 0;
  for (int i = 0; i < nstats; i++) {
    const stat_row *s = &stats[i];
    printf("%-20s %-22s %6ld %9ld %9.4f %9.4f %5ld\n", s->label, s->group, s->cases, s->elems,
           s->elems ? 100.0 * (double)s->exact / (double)s->elems : 100.0,
           s->elems ? 100.0 * (double)s->within1 / (double)s->elems : 100.0, s->max_diff);
    if (strncmp(s->label, "onednn rule", 11) == 0) {
      cross_elems += s->elems;
      cross_exact += s->exact;
    }
    if (strncmp(s->label, "x86", 3) == 0) {
      x86_elems += s->elems;
      x86_within += s->within1;
      x86_exact += s->exact;
    }
  }
  CHECK(x86_elems > 0);
  /* the golden data discriminates the engines' rounding rules (the "ties" cases) */
  CHECK_MSG(cross_elems > 0 && cross_exact < cross_elems,
            "QNNPACK's golden outputs all agree with oneDNN's rule: the data cannot tell them apart");
  printf("oneDNN rule vs QNNPACK: %ld elements, %ld differ\n", cross_elems,
         cross_elems - cross_exact);
  if (x86_elems) {
    const double within = (double)x86_within / (double)x86_elems;
    printf("x86 (FBGEMM rule) vs oneDNN: %ld elements, %.4f%% exact, %.4f%% within 1 LSB\n",
           x86_elems, 100.0 * (double)x86_exact / (double)x86_elems, 100.0 * within);
    CHECK_MSG(within >= 0.999, "x86 rule within 1 LSB of oneDNN on %.4f%% < 99.9%%",
              100.0 * within);
  }
}

/* --- direct checks ------------------------------------------------------------------------------ */

static cq_tensor *qtensor(cq_dtype dtype, int ndim, const int64_t *shape, float scale, int32_t zp,
                          int fill) {
  cq_tensor *t = NULL;
  if (cq_tensor_create(&t, dtype, ndim, shape) != CQ_OK) return NULL;
  cq_qparams qp;
  if (per_tensor(&qp, dtype == CQ_U8 ? CQ_QUINT8 : CQ_QINT8, scale, zp) != CQ_OK) {
    cq_tensor_free(t);
    return NULL;
  }
  if (cq_tensor_set_qparams(t, &qp) != CQ_OK) {
    cq_tensor_free(t);
    t = NULL;
  }
  cq_qparams_release(&qp);
  if (t) {
    for (int64_t i = 0; i < cq_tensor_numel(t); i++) {
      if (dtype == CQ_U8) {
        ((uint8_t *)t->data)[i] = (uint8_t)((i * 37 + fill) % 256);
      } else {
        ((int8_t *)t->data)[i] = (int8_t)((i * 37 + fill) % 256 - 128);
      }
    }
  }
  return t;
}

static cq_status make_linear(cq_module **m, int64_t in, int64_t out, int per_channel, int32_t wzp,
                             cq_backend engine) {
  float *w = malloc(sizeof(float) * (size_t)(in * out));
  float *b = malloc(sizeof(float) * (size_t)out);
  cq_qparams wq, yq;
  memset(&wq, 0, sizeof wq);
  memset(&yq, 0, sizeof yq);
  cq_status st = (w && b) ? CQ_OK : CQ_ENOMEM;
  for (int64_t i = 0; st == CQ_OK && i < in * out; i++) w[i] = (float)((i * 7) % 13 - 6) * 0.05f;
  for (int64_t i = 0; st == CQ_OK && i < out; i++) b[i] = (float)i * 0.1f - 0.2f;
  if (st == CQ_OK) {
    st = cq_qparams_init(&wq, CQ_QINT8, per_channel ? CQ_PER_CHANNEL_SYMMETRIC
                                                    : CQ_PER_TENSOR_SYMMETRIC,
                         per_channel ? out : 1, per_channel ? 0 : -1);
  }
  if (st == CQ_OK) {
    for (int64_t i = 0; i < wq.count; i++) {
      wq.scale[i] = 0.01f;
      wq.zero_point[i] = wzp;
    }
    st = per_tensor(&yq, CQ_QUINT8, 0.05f, 100);
  }
  if (st == CQ_OK) st = cq_qmodule_linear(m, in, out, w, b, &wq, &yq, 0, engine);
  cq_qparams_release(&wq);
  cq_qparams_release(&yq);
  free(w);
  free(b);
  return st;
}

static void test_misuse(void) {
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_module *m = NULL;
  /* ONEDNN refuses weight zero points, as PyTorch's prepack does; the other engines take them */
  CHECK_STATUS(make_linear(&m, 4, 3, 0, 2, CQ_BACKEND_ONEDNN), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "ONEDNN only supports symmetric") != NULL);
  CHECK(m == NULL);
  CHECK_OK(make_linear(&m, 4, 3, 1, 2, CQ_BACKEND_QNNPACK));
  cq_module_free(m);
  CHECK_STATUS(make_linear(&m, 0, 3, 0, 0, CQ_BACKEND_QNNPACK), CQ_EINVAL);
  CHECK_STATUS(make_linear(&m, 4, 3, 0, 0, (cq_backend)17), CQ_EINVAL);
  CHECK_OK(make_linear(&m, 4, 3, 0, 0, CQ_BACKEND_X86));
  if (m) {
    const int64_t shape[2] = {2, 4}, bad_shape[2] = {2, 5};
    cq_tensor *x = qtensor(CQ_U8, 2, shape, 0.1f, 128, 0);
    cq_tensor *xs8 = qtensor(CQ_S8, 2, shape, 0.1f, 0, 0);
    cq_tensor *xbad = qtensor(CQ_U8, 2, bad_shape, 0.1f, 128, 0);
    cq_tensor *xf = NULL;
    CHECK_OK(cq_tensor_create(&xf, CQ_F32, 2, shape));
    cq_tensor *y = NULL;
    CHECK_OK(cq_module_forward1(m, ctx, x, &y));
    CHECK_STATUS(cq_module_forward1(m, ctx, xs8, &y), CQ_EINVAL);
    CHECK(strstr(cq_last_error(), "QuantizedLinear") != NULL);
    CHECK_STATUS(cq_module_forward1(m, ctx, xbad, &y), CQ_ESHAPE);
    CHECK_STATUS(cq_module_forward1(m, ctx, xf, &y), CQ_EINVAL);
    CHECK(strstr(cq_last_error(), "quantized tensor") != NULL);
    /* an input scale that makes QNNPACK's multiplier subnormal is refused, not computed */
    cq_tensor_free(x);
    x = qtensor(CQ_U8, 2, shape, 1e-38f, 128, 0);
    CHECK_STATUS(cq_module_forward1(m, ctx, x, &y), CQ_EVALUE);
    /* buffers */
    cq_named_tensor *w = cq_module_find_tensor(m, "weight");
    CHECK(w && w->tensor->dtype == CQ_S8 && w->tensor->qparams &&
          w->tensor->qparams->qscheme == CQ_PER_TENSOR_AFFINE && !w->is_parameter);
    CHECK(cq_module_find_tensor(m, "bias") != NULL);
    CHECK_STR_EQ(cq_module_type_name(m), "QuantizedLinear");
    cq_tensor_free(x);
    cq_tensor_free(xs8);
    cq_tensor_free(xbad);
    cq_tensor_free(xf);
    cq_module_free(m);
  }
  /* bad weight / output qparams */
  {
    float w[6] = {0.1f, -0.2f, 0.3f, 0.4f, 0.5f, -0.6f};
    cq_qparams wq, yq;
    CHECK_OK(cq_qparams_init(&wq, CQ_QINT8, CQ_PER_TENSOR_AFFINE, 1, -1));
    CHECK_OK(per_tensor(&yq, CQ_QUINT8, 0.1f, 10));
    wq.scale[0] = 0.0f;
    CHECK_STATUS(cq_qmodule_linear(&m, 3, 2, w, NULL, &wq, &yq, 0, CQ_BACKEND_QNNPACK), CQ_EVALUE);
    wq.scale[0] = 0.01f;
    yq.zero_point[0] = 300;
    CHECK_STATUS(cq_qmodule_linear(&m, 3, 2, w, NULL, &wq, &yq, 0, CQ_BACKEND_QNNPACK), CQ_EVALUE);
    yq.zero_point[0] = 10;
    wq.dtype = CQ_QUINT8;
    CHECK_STATUS(cq_qmodule_linear(&m, 3, 2, w, NULL, &wq, &yq, 0, CQ_BACKEND_QNNPACK), CQ_EINVAL);
    wq.dtype = CQ_QINT8;
    w[2] = NAN;
    CHECK_STATUS(cq_qmodule_linear(&m, 3, 2, w, NULL, &wq, &yq, 0, CQ_BACKEND_QNNPACK), CQ_EVALUE);
    w[2] = 0.3f;
    /* per-channel qparams along the wrong axis / with the wrong count */
    cq_qparams pc;
    CHECK_OK(cq_qparams_init(&pc, CQ_QINT8, CQ_PER_CHANNEL_SYMMETRIC, 3, 1));
    CHECK_STATUS(cq_qmodule_linear(&m, 3, 2, w, NULL, &pc, &yq, 0, CQ_BACKEND_QNNPACK), CQ_EINVAL);
    cq_qparams_release(&pc);
    /* conv options */
    cq_conv_options o = cq_conv_defaults(3, 2, 1, 1);
    o.groups = 2;
    CHECK_STATUS(cq_qmodule_conv(&m, &o, 2, w, NULL, &wq, &yq, 0, CQ_BACKEND_QNNPACK), CQ_EINVAL);
    o.groups = 1;
    CHECK_STATUS(cq_qmodule_conv(&m, &o, 3, w, NULL, &wq, &yq, 0, CQ_BACKEND_QNNPACK), CQ_EINVAL);
    o.stride[0] = 0;
    CHECK_STATUS(cq_qmodule_conv(&m, &o, 2, w, NULL, &wq, &yq, 0, CQ_BACKEND_QNNPACK), CQ_EINVAL);
    o.stride[0] = 1;
    CHECK_OK(cq_qmodule_conv(&m, &o, 2, w, NULL, &wq, &yq, 1, CQ_BACKEND_ONEDNN));
    if (m) {
      CHECK_STR_EQ(cq_module_type_name(m), "QuantizedConvReLU2d");
      CHECK(cq_module_find_tensor(m, "bias") == NULL);
      const int64_t s3[3] = {3, 4, 4}, s4[4] = {1, 3, 2, 2}, s4c[4] = {1, 2, 4, 4};
      cq_tensor *x3 = qtensor(CQ_U8, 3, s3, 0.1f, 3, 1), *x4 = qtensor(CQ_U8, 4, s4, 0.1f, 3, 1);
      cq_tensor *xc = qtensor(CQ_U8, 4, s4c, 0.1f, 3, 1);
      cq_tensor *y = NULL;
      CHECK_STATUS(cq_module_forward1(m, ctx, x3, &y), CQ_ESHAPE); /* unbatched, as PyTorch */
      CHECK_OK(cq_module_forward1(m, ctx, x4, &y));
      CHECK(y && y->ndim == 4 && y->shape[1] == 2 && y->shape[2] == 2);
      CHECK_STATUS(cq_module_forward1(m, ctx, xc, &y), CQ_ESHAPE);
      cq_tensor_free(x3);
      cq_tensor_free(x4);
      cq_tensor_free(xc);
      cq_module_free(m);
    }
    cq_qparams_release(&wq);
    cq_qparams_release(&yq);
  }
  CHECK_STATUS(cq_qmodule_dequantize(NULL), CQ_EINVAL);
  CHECK_STATUS(cq_qmodule_quantize(NULL, 0.1f, 0, CQ_QUINT8), CQ_EINVAL);
  /* Quantize / QFunctional arguments */
  CHECK_STATUS(cq_qmodule_quantize(&m, 0.0f, 0, CQ_QUINT8), CQ_EVALUE);
  CHECK_STATUS(cq_qmodule_quantize(&m, 0.1f, 256, CQ_QUINT8), CQ_EVALUE);
  CHECK_STATUS(cq_qmodule_quantize(&m, 0.1f, 0, CQ_QFLOAT16), CQ_EINVAL);
  {
    cq_qparams yq;
    CHECK_OK(per_tensor(&yq, CQ_QUINT8, 0.1f, 10));
    CHECK_STATUS(cq_qmodule_functional(&m, (cq_qfunctional_op)9, 0, &yq, CQ_BACKEND_X86),
                 CQ_EINVAL);
    CHECK_OK(cq_qmodule_functional(&m, CQ_QF_ADD, 0, &yq, CQ_BACKEND_QNNPACK));
    if (m) {
      const int64_t s1[2] = {2, 3}, s2[2] = {3, 2};
      cq_tensor *a = qtensor(CQ_U8, 2, s1, 0.1f, 3, 1), *b = qtensor(CQ_U8, 2, s2, 0.1f, 3, 2);
      cq_tensor *s8 = qtensor(CQ_S8, 2, s1, 0.1f, 3, 2);
      cq_tensor *ins[2] = {a, b}, *outs[1];
      CHECK_STATUS(cq_module_forward(m, ctx, 2, ins, 1, outs), CQ_ESHAPE);
      ins[1] = s8;
      CHECK_STATUS(cq_module_forward(m, ctx, 2, ins, 1, outs), CQ_EINVAL);
      /* QNNPACK refuses scale ratios outside [2^-14, 2^8) */
      cq_tensor *big = qtensor(CQ_U8, 2, s1, 1000.0f, 3, 1);
      ins[1] = big;
      CHECK_STATUS(cq_module_forward(m, ctx, 2, ins, 1, outs), CQ_EVALUE);
      cq_tensor_free(big);
      cq_tensor_free(a);
      cq_tensor_free(b);
      cq_tensor_free(s8);
      cq_module_free(m);
    }
    cq_qparams_release(&yq);
  }
  /* unconverted FloatFunctional add on quantized tensors; cat warns about differing qparams;
   * training-mode dropout */
  {
    const int64_t s1[2] = {2, 3};
    cq_tensor *a = qtensor(CQ_U8, 2, s1, 0.1f, 3, 1), *b = qtensor(CQ_U8, 2, s1, 0.2f, 3, 2);
    cq_tensor *ins[2] = {a, b}, *outs[1];
    CHECK_OK(cq_add(&m));
    CHECK_STATUS(cq_module_forward(m, ctx, 2, ins, 1, outs), CQ_EUNSUPPORTED);
    CHECK(strstr(cq_last_error(), "QFunctional") != NULL);
    cq_module_free(m);
    CHECK_OK(cq_cat(&m, 0));
    warnings_seen = 0;
    CHECK_OK(cq_module_forward(m, ctx, 2, ins, 1, outs));
    CHECK_INT_EQ(warnings_seen, 1);
    CHECK(outs[0] && outs[0]->shape[0] == 4 && outs[0]->qparams->scale[0] == 0.1f);
    cq_module_free(m);
    CHECK_OK(cq_dropout(&m, 0.5f));
    CHECK_STATUS(cq_module_forward1(m, ctx, a, &outs[0]), CQ_EUNSUPPORTED);
    cq_module_train(m, 0);
    CHECK_OK(cq_module_forward1(m, ctx, a, &outs[0]));
    CHECK(outs[0] == a);
    cq_module_free(m);
    /* a quantized ReLU keeps its qparams; qint8 works too */
    CHECK_OK(cq_relu(&m));
    cq_tensor *s8 = qtensor(CQ_S8, 2, s1, 0.1f, -3, 5);
    CHECK_OK(cq_module_forward1(m, ctx, s8, &outs[0]));
    if (outs[0]) {
      CHECK_INT_EQ(outs[0]->dtype, CQ_S8);
      for (int i = 0; i < 6; i++) CHECK(((int8_t *)outs[0]->data)[i] >= -3);
    }
    cq_module_free(m);
    cq_tensor_free(s8);
    cq_tensor_free(a);
    cq_tensor_free(b);
  }
  cq_ctx_free(ctx);
}

/* Every allocation of construction and forward failing in turn: a status, no leak, no crash. */
static void test_alloc_failures(void) {
  const int64_t xs[4] = {1, 4, 5, 5};
  cq_tensor *x = qtensor(CQ_U8, 4, xs, 0.05f, 120, 3);
  float w[4 * 4 * 3 * 3]; /* groups 1 uses all of it, groups 2 half */
  for (int i = 0; i < 4 * 4 * 3 * 3; i++) w[i] = (float)(i % 9 - 4) * 0.03f;
  const float b[4] = {0.1f, -0.1f, 0.2f, 0.0f};
  int failures = 0, successes = 0;
  for (int groups = 1; groups <= 2; groups++) {
    for (long n = 0; n < 200; n++) {
      cq_qparams wq, yq;
      memset(&wq, 0, sizeof wq);
      memset(&yq, 0, sizeof yq);
      cq_debug_fail_alloc_after(-1);
      CHECK_OK(cq_qparams_init(&wq, CQ_QINT8, CQ_PER_CHANNEL_SYMMETRIC, 4, 0));
      for (int i = 0; i < 4; i++) wq.scale[i] = 0.01f * (float)(i + 1);
      CHECK_OK(per_tensor(&yq, CQ_QUINT8, 0.1f, 7));
      cq_ctx *ctx = NULL;
      CHECK_OK(cq_ctx_create(&ctx));
      cq_conv_options o = cq_conv_defaults(4, 4, 3, 3);
      o.groups = groups;
      o.padding[0] = o.padding[1] = 1;
      cq_debug_fail_alloc_after(n);
      cq_module *m = NULL;
      cq_status st = cq_qmodule_conv(&m, &o, 2, w, b, &wq, &yq, 0, CQ_BACKEND_QNNPACK);
      cq_tensor *y = NULL;
      if (st == CQ_OK) st = cq_module_forward1(m, ctx, x, &y);
      cq_debug_fail_alloc_after(-1);
      if (st == CQ_OK) {
        successes++;
      } else {
        CHECK_INT_EQ(st, CQ_ENOMEM);
        failures++;
      }
      cq_module_free(m);
      cq_ctx_free(ctx);
      cq_qparams_release(&wq);
      cq_qparams_release(&yq);
      if (st == CQ_OK) break;
    }
  }
  CHECK(failures > 10);
  CHECK_INT_EQ(successes, 2);
  cq_tensor_free(x);
}

/* The Quantize module's vector path (quint8, finite inputs) gives quantize_val's bytes; inputs with
 * NaN or infinities take the scalar definition (PyTorch's results for them), also when they sit
 * in a later chunk than the first and on another thread. Every ISA; 1 and 2 threads. */
static void test_quantize_paths(void) {
  const int sizes[2] = {1031, 70001}; /* the second: 18 chunks of 4096, split between threads */
  for (int si = 0; si < 2; si++) {
    for (int threads = 1; threads <= 2; threads++) {
      CHECK_OK(cq_set_num_threads(threads));
      const int N = sizes[si];
      float *x = malloc(sizeof *x * (size_t)N);
      uint8_t *want = malloc((size_t)N);
      const float scales[3] = {0.0137f, 1.0f / 255.0f, 3.5f};
      const int32_t zps[3] = {0, 128, 255};
      /* pass 0: moderate values (the vector path); 1: some past int64 after scaling; 2: NaN, inf
       * towards the end */
      for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < N; i++) {
          const float v = (float)sin(0.731 * i) * (i % 7 == 0 ? 1e3f : 2.5f);
          x[i] = (pass == 1 && i % 97 == 5) ? 1e30f * (i % 2 ? 1.0f : -1.0f) : v;
          /* exact ties of x * inv for the rounding */
          if (i % 11 == 0) x[i] = (float)(i % 23 - 11) * 0.5f * scales[i % 3];
        }
        if (pass == 2) {
          x[N - 3] = NAN;
          x[N / 3] = NAN;
          x[N / 2] = INFINITY;
          x[N - 1] = -INFINITY;
        }
        for (int s = 0; s < 3; s++) {
          for (int z = 0; z < 3; z++) {
            CHECK_OK(cq_quantize_per_tensor(x, N, scales[s], zps[z], CQ_QUINT8, want));
            cq_module *m = NULL;
            CHECK_OK(cq_qmodule_quantize(&m, scales[s], zps[z], CQ_QUINT8));
            cq_ctx *ctx = NULL;
            CHECK_OK(cq_ctx_create(&ctx));
            const int64_t shape[2] = {1, N};
            cq_tensor *t = NULL, *y = NULL;
            CHECK_OK(cq_tensor_wrap(&t, CQ_F32, 2, shape, x));
            CHECK_OK(cq_module_forward1(m, ctx, t, &y));
            CHECK_MSG(y && !memcmp(y->data, want, (size_t)N), "Quantize(scale %g, zp %d) of %d "
                      "values on %d thread(s), pass %d, differs from quantize_per_tensor",
                      scales[s], (int)zps[z], N, threads, pass);
            cq_tensor_free(t);
            cq_ctx_free(ctx);
            cq_module_free(m);
          }
        }
      }
      free(x);
      free(want);
    }
  }
  CHECK_OK(cq_set_num_threads(1));
}

int main(void) {
  cq_set_warning_handler(count_warning, NULL);
  test_quantize_paths();
  run_golden();
  print_stats();
  test_misuse();
  test_alloc_failures();
  cq_set_warning_handler(NULL, NULL);
  cq_set_quantized_engine(CQ_BACKEND_X86);
  return check_summary("test_qmodules");
}

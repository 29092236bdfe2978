/* The float ops imported ONNX graphs use (LeakyReLU, Hardsigmoid, Hardswish, FloatFunctional.mul,
 * BinaryConst, MatMul, Reshape, Permute, Squeeze, Unsqueeze, ConvTranspose2d) and their quantized
 * forms, against PyTorch 1.13.
 *
 * Golden cases (tests/data/golden/nn_ops_extra/cases.txt, from tools/golden/gen_nn_ops_extra.py):
 *  - float: build the module from the `module` line, check str(module) where PyTorch has a class,
 *    load PyTorch's parameters, run forward and backward, compare the output, every input gradient
 *    and the parameter gradients. Cases marked `exact` (activations, shape ops) bit for bit; the
 *    others (sums: broadcast reductions, GEMMs) within |got - want| <= 1e-4 * max(|want|, 1% of
 *    the tensor's largest magnitude).
 *  - quantized: the module or op on the recorded integers and qparams; output integers and
 *    qparams bit for bit. onednn cases run under cquant's ONEDNN and X86 engines (both use ATen's
 *    native kernels for these ops), qnnpack cases under QNNPACK.
 *  - convert: QuantStub -> LeakyReLU -> Hardswish -> Hardsigmoid -> DeQuantStub through prepare,
 *    calibration and convert: the printed tree and the float output bit for bit.
 *
 * Direct checks: reprs of the ops without a PyTorch class, describe accessors, bad arguments and
 * inputs (one-line messages naming the module, no crash), quantized inputs where only float is
 * supported, and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cquant/graph.h"
#include "cquant/modules.h"
#include "cquant/nn.h"
#include "cquant/npy.h"
#include "cquant/qconfig.h"
#include "cquant/quantization.h"
#include "cquant/status.h"
#include "cquant/tensor.h"
#include "nn/layers.h"
#include "nn/quantized/qmodules.h"
#include "support/check.h"
#include "support/golden.h"

#define GOLDEN_FILE CQ_TEST_DATA_DIR "/golden/nn_ops_extra/cases.txt"
#define REL_TOL 1e-4
#define FLOOR_FRACTION 1e-2

/* --- helpers ------------------------------------------------------------------------------------- */

static cq_tensor *load_file(const golden_file *g, const golden_case *c, const char *file) {
  char path[1024];
  cq_tensor *t = NULL;
  if (!file) {
    CHECK_MSG(0, "case %s: a file name is missing", c->name);
    return NULL;
  }
  cq_status st = cq_npy_load(golden_path(g, file, path, sizeof path), &t);
  CHECK_MSG(st == CQ_OK, "case %s: loading %s: %s", c->name, file, cq_last_error());
  return st == CQ_OK ? t : NULL;
}

static const char *split_key(const char *value, char *key, size_t cap) {
  const char *sp = strchr(value, ' ');
  size_t n = sp ? (size_t)(sp - value) : strlen(value);
  if (n >= cap) n = cap - 1;
  memcpy(key, value, n);
  key[n] = '\0';
  return sp ? sp + 1 : "";
}

static void unescape(char *s) {
  char *w = s;
  for (const char *r = s; *r; r++) {
    if (r[0] == '\\' && (r[1] == 'n' || r[1] == '\\')) {
      *w++ = r[1] == 'n' ? '\n' : '\\';
      r++;
    } else {
      *w++ = *r;
    }
  }
  *w = '\0';
}

static int count_key(const golden_case *c, const char *key) {
  int n = 0;
  while (golden_get_nth(c, key, n)) n++;
  return n;
}

static int same_shape(const cq_tensor *a, const cq_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] != b->shape[i]) return 0;
  }
  return 1;
}

static void check_repr_text(const cq_module *m, const char *escaped, const char *label) {
  char *want = strdup(escaped);
  char *got = cq_module_repr_alloc(m);
  if (want && got) {
    unescape(want);
    CHECK_MSG(strcmp(got, want) == 0, "%s: repr\n  got:  %s\n  want: %s", label, got, want);
  }
  free(want);
  free(got);
}

/* Returns the worst relative error (0 for exact comparisons). */
static double compare(const golden_case *c, const char *what, const cq_tensor *got,
                      const cq_tensor *want, int exact) {
  char sg[128], sw[128];
  if (!got || !want) {
    CHECK_MSG(0, "case %s: %s missing", c->name, what);
    return 0;
  }
  if (!same_shape(got, want) || got->dtype != want->dtype) {
    CHECK_MSG(0, "case %s: %s has shape %s dtype %d, expected %s dtype %d", c->name, what,
              cq_shape_str(got->ndim, got->shape, sg, sizeof sg), got->dtype,
              cq_shape_str(want->ndim, want->shape, sw, sizeof sw), want->dtype);
    return 0;
  }
  const int64_t n = cq_tensor_numel(want);
  const float *g = got->data, *w = want->data;
  if (exact) {
    int64_t bad = -1;
    for (int64_t i = 0; i < n && bad < 0; i++) {
      if (check_f32_bits(g[i]) != check_f32_bits(w[i])) bad = i;
    }
    CHECK_MSG(bad < 0, "case %s: %s[%lld] = %.9g, expected %.9g bit for bit", c->name, what,
              (long long)bad, bad >= 0 ? (double)g[bad] : 0.0, bad >= 0 ? (double)w[bad] : 0.0);
    return 0;
  }
  double maxabs = 0;
  for (int64_t i = 0; i < n; i++) maxabs = fmax(maxabs, fabs((double)w[i]));
  double worst = 0;
  int64_t worst_i = 0;
  for (int64_t i = 0; i < n; i++) {
    const double denom = fmax(fabs((double)w[i]), FLOOR_FRACTION * maxabs);
    const double diff = fabs((double)g[i] - (double)w[i]);
    const double rel = denom > 0 ? diff / denom : (diff > 0 ? INFINITY : 0);
    if (rel > worst || isnan(rel)) {
      worst = isnan(rel) ? INFINITY : rel;
      worst_i = i;
    }
  }
  CHECK_MSG(worst <= REL_TOL, "case %s: %s[%lld] = %.9g, expected %.9g (relative error %.3g)",
            c->name, what, (long long)worst_i, n ? (double)g[worst_i] : 0.0,
            n ? (double)w[worst_i] : 0.0, worst);
  return worst;
}

/* Parses up to CQ_MAX_DIMS integers. */
static int parse_ints(const char *s, int64_t *v) {
  int n = 0;
  char *end;
  while (n < CQ_MAX_DIMS) {
    const long long x = strtoll(s, &end, 10);
    if (end == s) break;
    v[n++] = x;
    s = end;
  }
  return n;
}

static cq_status parse_binary_op(const char *name, cq_binary_op *op) {
  static const char *const names[] = {"add", "sub", "mul", "div"};
  for (int i = 0; i < 4; i++) {
    if (strcmp(name, names[i]) == 0) {
      *op = (cq_binary_op)i;
      return CQ_OK;
    }
  }
  return cq_fail(CQ_EINVAL, "unknown binary op '%s'", name);
}

/* --- float cases --------------------------------------------------------------------------------- */

typedef struct err_stat {
  const char *kind;
  double fwd, grad;
  int cases, exact;
} err_stat;

static err_stat stats[] = {
    {"LeakyReLU", 0, 0, 0, 0},  {"Hardsigmoid", 0, 0, 0, 0}, {"Hardswish", 0, 0, 0, 0},
    {"Mul", 0, 0, 0, 0},        {"BinaryConst", 0, 0, 0, 0}, {"MatMul", 0, 0, 0, 0},
    {"Reshape", 0, 0, 0, 0},    {"Permute", 0, 0, 0, 0},     {"Squeeze", 0, 0, 0, 0},
    {"Unsqueeze", 0, 0, 0, 0},  {"ConvTranspose2d", 0, 0, 0, 0},
};

static err_stat *stat_for(const char *kind) {
  for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++) {
    if (strcmp(stats[i].kind, kind) == 0) return &stats[i];
  }
  return NULL;
}

static cq_status build_module(const golden_file *g, const golden_case *c, const char *spec,
                              char *kind, size_t cap, cq_module **m) {
  *m = NULL;
  const char *args = split_key(spec, kind, cap);
  int64_t v[CQ_MAX_DIMS * 2];
  if (strcmp(kind, "LeakyReLU") == 0) return cq_leaky_relu(m, (float)strtod(args, NULL));
  if (strcmp(kind, "Hardsigmoid") == 0) return cq_hardsigmoid(m);
  if (strcmp(kind, "Hardswish") == 0) return cq_hardswish(m);
  if (strcmp(kind, "Mul") == 0) return cq_mul(m);
  if (strcmp(kind, "MatMul") == 0) return cq_matmul(m);
  if (strcmp(kind, "BinaryConst") == 0) {
    char opname[16];
    const char *first = split_key(args, opname, sizeof opname);
    cq_binary_op op = CQ_BINARY_ADD;
    cq_status st = parse_binary_op(opname, &op);
    if (st != CQ_OK) return st;
    cq_tensor *k = load_file(g, c, golden_get(c, "constant"));
    if (!k) return CQ_EIO;
    st = cq_binary_const(m, op, k, atoi(first));
    cq_tensor_free(k);
    return st;
  }
  const int n = parse_ints(args, v);
  if (strcmp(kind, "Reshape") == 0) return cq_reshape(m, n, v);
  int a[CQ_MAX_DIMS];
  for (int i = 0; i < n; i++) a[i] = (int)v[i];
  if (strcmp(kind, "Permute") == 0) return cq_permute(m, n, a);
  if (strcmp(kind, "Squeeze") == 0) return cq_squeeze(m, n, a);
  if (strcmp(kind, "Unsqueeze") == 0) return cq_unsqueeze(m, n, a);
  if (strcmp(kind, "ConvTranspose2d") == 0) {
    int64_t t[14];
    char *end;
    const char *s = args;
    for (int i = 0; i < 14; i++) {
      t[i] = strtoll(s, &end, 10);
      s = end;
    }
    cq_conv_transpose_options o = cq_conv_transpose_defaults(t[0], t[1], t[2], t[3]);
    o.stride[0] = t[4];
    o.stride[1] = t[5];
    o.padding[0] = t[6];
    o.padding[1] = t[7];
    o.output_padding[0] = t[8];
    o.output_padding[1] = t[9];
    o.dilation[0] = t[10];
    o.dilation[1] = t[11];
    o.groups = t[12];
    o.bias = (int)t[13];
    return cq_conv_transpose2d(m, &o);
  }
  return cq_fail(CQ_EINVAL, "unknown module kind '%s'", kind);
}

static void load_params(const golden_file *g, const golden_case *c, cq_module *m) {
  const char *v;
  for (int i = 0; (v = golden_get_nth(c, "set", i)) != NULL; i++) {
    char key[128];
    const char *file = split_key(v, key, sizeof key);
    cq_named_tensor *nt = cq_module_find_tensor(m, key);
    cq_tensor *t = load_file(g, c, file);
    const int ok = nt && t && same_shape(nt->tensor, t) && nt->tensor->dtype == t->dtype;
    CHECK_MSG(ok, "case %s: parameter '%s' missing or of another shape", c->name, key);
    if (ok) memcpy(nt->tensor->data, t->data, cq_tensor_nbytes(t));
    cq_tensor_free(t);
  }
}

static void run_float_case(const golden_file *g, const golden_case *c) {
  char kind[64];
  cq_module *m = NULL;
  cq_status st = build_module(g, c, golden_get(c, "module"), kind, sizeof kind, &m);
  CHECK_MSG(st == CQ_OK, "case %s: building: %s", c->name, cq_last_error());
  if (st != CQ_OK) return;
  const char *v = golden_get(c, "exact");
  const int exact = v && atoi(v);
  if ((v = golden_get(c, "repr")) != NULL) check_repr_text(m, v, c->name);
  load_params(g, c, m);
  const int nin = count_key(c, "input");
  cq_tensor *in[2] = {0}, *gy = NULL, *out = NULL;
  int ok = nin >= 1 && nin <= 2;
  for (int i = 0; ok && i < nin; i++) {
    ok = (in[i] = load_file(g, c, golden_get_nth(c, "input", i))) != NULL;
  }
  if (ok) ok = (gy = load_file(g, c, golden_get(c, "grad_output"))) != NULL;
  cq_ctx *ctx = NULL;
  if (ok) ok = cq_ctx_create(&ctx) == CQ_OK;
  if (ok) {
    cq_ctx_set_grad(ctx, 1);
    st = cq_module_forward(m, ctx, nin, in, 1, &out);
    CHECK_MSG(st == CQ_OK, "case %s: forward: %s", c->name, cq_last_error());
    ok = st == CQ_OK;
  }
  cq_tensor *gin[2] = {0};
  if (ok) {
    st = cq_ctx_backward_multi(ctx, 1, &out, (const cq_tensor *const *)&gy, nin, in, gin);
    CHECK_MSG(st == CQ_OK, "case %s: backward: %s", c->name, cq_last_error());
    ok = st == CQ_OK;
  }
  if (ok) {
    double fwd = 0, grad = 0;
    cq_tensor *want = load_file(g, c, golden_get(c, "output"));
    fwd = compare(c, "output", out, want, exact);
    cq_tensor_free(want);
    for (int i = 0; i < nin; i++) {
      want = load_file(g, c, golden_get_nth(c, "grad_input", i));
      grad = fmax(grad, compare(c, "grad_input", gin[i], want, exact));
      cq_tensor_free(want);
    }
    for (int i = 0; (v = golden_get_nth(c, "grad", i)) != NULL; i++) {
      char key[128];
      const char *file = split_key(v, key, sizeof key);
      cq_named_tensor *nt = cq_module_find_tensor(m, key);
      want = load_file(g, c, file);
      if (nt && nt->grad) grad = fmax(grad, compare(c, key, nt->grad, want, exact));
      CHECK_MSG(nt && nt->grad, "case %s: no gradient for %s", c->name, key);
      cq_tensor_free(want);
    }
    err_stat *es = stat_for(kind);
    if (es) {
      es->fwd = fmax(es->fwd, fwd);
      es->grad = fmax(es->grad, grad);
      es->cases++;
      es->exact = exact;
    }
  }
  cq_ctx_free(ctx);
  for (int i = 0; i < 2; i++) cq_tensor_free(in[i]);
  cq_tensor_free(gy);
  cq_module_free(m);
}

/* --- quantized cases ----------------------------------------------------------------------------- */

static cq_status attach_qparams(cq_tensor *t, cq_qdtype dtype, float scale, int32_t zp) {
  cq_qparams qp;
  cq_status st = cq_qparams_init(&qp, dtype, CQ_PER_TENSOR_AFFINE, 1, -1);
  if (st != CQ_OK) return st;
  qp.scale[0] = scale;
  qp.zero_point[0] = zp;
  st = cq_tensor_set_qparams(t, &qp);
  cq_qparams_release(&qp);
  return st;
}

static cq_qdtype qdtype_of(const char *name) {
  return name && strcmp(name, "qint8") == 0 ? CQ_QINT8 : CQ_QUINT8;
}

/* The module a quantized case runs. */
static cq_status build_qmodule(const golden_case *c, cq_backend engine, cq_module **m) {
  const char *op = golden_get(c, "qop");
  const float slope = golden_get(c, "slope") ? (float)strtod(golden_get(c, "slope"), NULL) : 0.0f;
  cq_qparams yq;
  cq_status st = cq_qparams_init(&yq, qdtype_of(golden_get(c, "y_dtype")), CQ_PER_TENSOR_AFFINE,
                                 1, -1);
  if (st != CQ_OK) return st;
  yq.scale[0] = (float)strtod(golden_get(c, "y_scale"), NULL);
  yq.zero_point[0] = (int32_t)strtol(golden_get(c, "y_zero_point"), NULL, 10);
  int64_t v[CQ_MAX_DIMS];
  int a[CQ_MAX_DIMS];
  const int n = golden_get(c, "args") ? parse_ints(golden_get(c, "args"), v) : 0;
  for (int i = 0; i < n; i++) a[i] = (int)v[i];
  if (strcmp(op, "leaky_relu") == 0) {
    st = cq_leaky_relu(m, slope);
  } else if (strcmp(op, "qleaky_relu") == 0) {
    st = cq_qmodule_leaky_relu(m, slope, &yq);
  } else if (strcmp(op, "qhardswish") == 0) {
    st = cq_qmodule_hardswish(m, &yq, engine);
  } else if (strcmp(op, "hardsigmoid") == 0) {
    st = cq_hardsigmoid(m);
  } else if (strcmp(op, "qmul") == 0) {
    st = cq_qmodule_functional(m, CQ_QF_MUL, 0, &yq, engine);
  } else if (strcmp(op, "reshape") == 0) {
    st = cq_reshape(m, n, v);
  } else if (strcmp(op, "permute") == 0) {
    st = cq_permute(m, n, a);
  } else if (strcmp(op, "squeeze") == 0) {
    st = cq_squeeze(m, n, a);
  } else if (strcmp(op, "unsqueeze") == 0) {
    st = cq_unsqueeze(m, n, a);
  } else {
    st = cq_fail(CQ_EINVAL, "unknown qop '%s'", op);
  }
  cq_qparams_release(&yq);
  if (st == CQ_OK) cq_module_train(*m, 0);
  return st;
}

typedef struct qstat {
  int cases, failed;
  int64_t elements, mismatched;
} qstat;

static void run_quantized_case(const golden_file *g, const golden_case *c, cq_backend engine,
                               qstat *qs) {
  const cq_qdtype xd = qdtype_of(golden_get(c, "x_dtype"));
  float xs[2] = {0};
  int64_t xz[2] = {0};
  const char *s = golden_get(c, "x_scale");
  char *end;
  for (int i = 0; i < 2 && s; i++, s = end) xs[i] = (float)strtod(s, &end);
  parse_ints(golden_get(c, "x_zero_point"), xz);
  const int nin = count_key(c, "input");
  cq_tensor *in[2] = {0}, *want = NULL, *out = NULL;
  int ok = nin >= 1 && nin <= 2;
  for (int i = 0; ok && i < nin; i++) {
    in[i] = load_file(g, c, golden_get_nth(c, "input", i));
    ok = in[i] && attach_qparams(in[i], xd, xs[i], (int32_t)xz[i]) == CQ_OK;
  }
  if (ok) ok = (want = load_file(g, c, golden_get(c, "output"))) != NULL;
  cq_module *m = NULL;
  cq_ctx *ctx = NULL;
  if (ok) {
    cq_status st = build_qmodule(c, engine, &m);
    CHECK_MSG(st == CQ_OK, "case %s: building: %s", c->name, cq_last_error());
    ok = st == CQ_OK && cq_ctx_create(&ctx) == CQ_OK;
  }
  const char *label = cq_backend_name(engine);
  if (ok) {
    if (golden_get(c, "repr")) check_repr_text(m, golden_get(c, "repr"), c->name);
    cq_set_quantized_engine(engine);
    cq_status st = cq_module_forward(m, ctx, nin, in, 1, &out);
    cq_set_quantized_engine(CQ_BACKEND_X86);
    CHECK_MSG(st == CQ_OK, "case %s [%s]: forward: %s", c->name, label, cq_last_error());
    ok = st == CQ_OK;
  }
  qs->cases++;
  if (ok) {
    const float ys = (float)strtod(golden_get(c, "y_scale"), NULL);
    const int32_t yz = (int32_t)strtol(golden_get(c, "y_zero_point"), NULL, 10);
    const int qp_ok = out->qparams && out->qparams->scale[0] == ys &&
                      out->qparams->zero_point[0] == yz &&
                      out->qparams->dtype == qdtype_of(golden_get(c, "y_dtype"));
    CHECK_MSG(qp_ok, "case %s [%s]: output qparams (%.9g, %d), want (%.9g, %d)", c->name, label,
              out->qparams ? (double)out->qparams->scale[0] : 0.0,
              out->qparams ? out->qparams->zero_point[0] : -1, (double)ys, yz);
    const int shape_ok = same_shape(out, want) && out->dtype == want->dtype;
    CHECK_MSG(shape_ok, "case %s [%s]: output shape or dtype differs", c->name, label);
    if (shape_ok) {
      const int64_t n = cq_tensor_numel(out);
      int64_t bad = 0, first = -1;
      for (int64_t i = 0; i < n; i++) {
        const int a = out->dtype == CQ_U8 ? ((uint8_t *)out->data)[i] : ((int8_t *)out->data)[i];
        const int b = want->dtype == CQ_U8 ? ((uint8_t *)want->data)[i] : ((int8_t *)want->data)[i];
        if (a != b) {
          bad++;
          if (first < 0) first = i;
        }
      }
      qs->elements += n;
      qs->mismatched += bad;
      if (bad) qs->failed++;
      CHECK_MSG(bad == 0, "case %s [%s]: %lld of %lld integers differ (first at %lld)", c->name,
                label, (long long)bad, (long long)n, (long long)first);
    }
  } else {
    qs->failed++;
  }
  cq_ctx_free(ctx);
  cq_module_free(m);
  for (int i = 0; i < 2; i++) cq_tensor_free(in[i]);
  cq_tensor_free(want);
}

/* --- convert cases ------------------------------------------------------------------------------- */

static void run_convert_case(const golden_file *g, const golden_case *c) {
  cq_module *mods[5] = {0}, *m = NULL;
  cq_status st = cq_quant_stub(&mods[0]);
  if (st == CQ_OK) st = cq_leaky_relu(&mods[1], 0.1f);
  if (st == CQ_OK) st = cq_hardswish(&mods[2]);
  if (st == CQ_OK) st = cq_hardsigmoid(&mods[3]);
  if (st == CQ_OK) st = cq_dequant_stub(&mods[4]);
  if (st == CQ_OK) {
    st = cq_sequential(&m, 5, mods);
  } else {
    for (int i = 0; i < 5; i++) cq_module_free(mods[i]);
  }
  CHECK_OK(st);
  if (st != CQ_OK) return;
  cq_module_train(m, 0);
  cq_backend qb, engine;
  cq_qconfig qc;
  CHECK_OK(cq_backend_parse(golden_get(c, "qconfig"), &qb));
  CHECK_OK(cq_backend_parse(golden_get(c, "engine"), &engine));
  CHECK_OK(cq_get_default_qconfig(qb, 0, &qc));
  CHECK_OK(cq_module_set_qconfig(m, &qc));
  st = cq_prepare(m);
  CHECK_MSG(st == CQ_OK, "case %s: prepare: %s", c->name, cq_last_error());
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  for (int i = 0; ctx && st == CQ_OK && golden_get_nth(c, "calib", i); i++) {
    cq_tensor *x = load_file(g, c, golden_get_nth(c, "calib", i)), *y = NULL;
    if (x) st = cq_module_forward1(m, ctx, x, &y);
    CHECK_MSG(st == CQ_OK, "case %s: calibration: %s", c->name, cq_last_error());
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
  }
  cq_set_quantized_engine(engine);
  if (st == CQ_OK) {
    st = cq_convert(m);
    CHECK_MSG(st == CQ_OK, "case %s: convert: %s", c->name, cq_last_error());
  }
  if (st == CQ_OK) {
    check_repr_text(m, golden_get(c, "repr_converted"), c->name);
    cq_tensor *x = load_file(g, c, golden_get(c, "input"));
    cq_tensor *want = load_file(g, c, golden_get(c, "output"));
    cq_tensor *y = NULL;
    if (x && want) {
      st = cq_module_forward1(m, ctx, x, &y);
      CHECK_MSG(st == CQ_OK, "case %s: forward: %s", c->name, cq_last_error());
      if (st == CQ_OK) compare(c, "converted output", y, want, 1);
    }
    cq_tensor_free(x);
    cq_tensor_free(want);
  }
  cq_set_quantized_engine(CQ_BACKEND_X86);
  cq_ctx_free(ctx);
  cq_module_free(m);
}

static void test_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN_FILE, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN_FILE);
    return;
  }
  int nfloat = 0, nconvert = 0;
  qstat qs[3] = {{0, 0, 0, 0}, {0, 0, 0, 0}, {0, 0, 0, 0}};
  for (int i = 0; i < g.count; i++) {
    const golden_case *c = &g.cases[i];
    if (golden_get(c, "module")) {
      run_float_case(&g, c);
      nfloat++;
    } else if (golden_get(c, "qop")) {
      if (strcmp(golden_get(c, "engine"), "qnnpack") == 0) {
        run_quantized_case(&g, c, CQ_BACKEND_QNNPACK, &qs[0]);
      } else {
        run_quantized_case(&g, c, CQ_BACKEND_ONEDNN, &qs[1]);
        run_quantized_case(&g, c, CQ_BACKEND_X86, &qs[2]);
      }
    } else if (golden_get(c, "convert")) {
      run_convert_case(&g, c);
      nconvert++;
    }
  }
  CHECK(nfloat >= 60);
  CHECK(qs[0].cases >= 30 && qs[1].cases >= 30);
  CHECK(nconvert == 2);
  printf("golden: %d float cases, %d convert cases\n", nfloat, nconvert);
  printf("  %-16s %5s  %-10s %-10s\n", "kind", "cases", "output", "gradients");
  for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++) {
    const err_stat *s = &stats[i];
    CHECK_MSG(s->cases > 0, "no golden case for %s", s->kind);
    if (s->exact) {
      printf("  %-16s %5d  bit-exact\n", s->kind, s->cases);
    } else {
      printf("  %-16s %5d  %-10.3g %-10.3g\n", s->kind, s->cases, s->fwd, s->grad);
    }
  }
  static const char *const engines[3] = {"qnnpack", "onednn", "x86"};
  for (int e = 0; e < 3; e++) {
    printf("  quantized [%s]: %d cases, %d with differences, %lld of %lld integers differ\n",
           engines[e], qs[e].cases, qs[e].failed, (long long)qs[e].mismatched,
           (long long)qs[e].elements);
  }
  golden_free(&g);
}

/* --- direct checks ------------------------------------------------------------------------------- */

static void expect_repr(cq_status st, cq_module *m, const char *want) {
  CHECK_MSG(st == CQ_OK, "constructor for %s failed: %s", want, cq_last_error());
  if (st != CQ_OK) return;
  char *got = cq_module_repr_alloc(m);
  if (got) CHECK_STR_EQ(got, want);
  free(got);
  cq_module_free(m);
}

static void test_reprs(void) {
  cq_module *m = NULL;
  const int64_t shape[2] = {0, -1};
  const int perm[3] = {0, 2, 1}, ax1[1] = {1}, ax2[2] = {0, -1};
  cq_status st = cq_reshape(&m, 2, shape);
  expect_repr(st, m, "Reshape(shape=(0, -1))");
  st = cq_permute(&m, 3, perm);
  expect_repr(st, m, "Permute(dims=(0, 2, 1))");
  st = cq_permute(&m, 0, NULL);
  expect_repr(st, m, "Permute()");
  st = cq_squeeze(&m, 1, ax1);
  expect_repr(st, m, "Squeeze(dims=(1,))");
  st = cq_squeeze(&m, 0, NULL);
  expect_repr(st, m, "Squeeze()");
  st = cq_unsqueeze(&m, 2, ax2);
  expect_repr(st, m, "Unsqueeze(dims=(0, -1))");
  st = cq_matmul(&m);
  expect_repr(st, m, "MatMul()");
  st = cq_leaky_relu(&m, 0.01f);
  expect_repr(st, m, "LeakyReLU(negative_slope=0.01)");
  st = cq_mul(&m);
  expect_repr(st, m, "FloatFunctional(\n  (activation_post_process): Identity()\n)");
  cq_conv_transpose_options o = cq_conv_transpose_defaults(3, 8, 3, 3);
  o.stride[0] = o.stride[1] = 2;
  st = cq_conv_transpose2d(&m, &o);
  expect_repr(st, m, "ConvTranspose2d(3, 8, kernel_size=(3, 3), stride=(2, 2))");
  cq_tensor *k = NULL;
  const int64_t ks[3] = {3, 1, 1};
  CHECK_OK(cq_tensor_create(&k, CQ_F32, 3, ks));
  st = cq_binary_const(&m, CQ_BINARY_MUL, k, 0);
  expect_repr(st, m, "BinaryConst(op=mul, constant_shape=(3, 1, 1))");
  st = cq_binary_const(&m, CQ_BINARY_SUB, k, 1);
  expect_repr(st, m, "BinaryConst(op=sub, constant_shape=(3, 1, 1), constant_first=True)");
  cq_tensor_free(k);
  CHECK_OK(cq_mul(&m));
  int dim = -5;
  const char *op = cq_functional_op(m, &dim);
  CHECK(op && strcmp(op, "mul") == 0);
  cq_module_free(m);
}

/* A forward that must fail with `want` and a one-line message naming `who`. */
static void expect_forward_error(cq_module *m, int nin, cq_tensor **in, cq_status want,
                                 const char *who) {
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_tensor *y = NULL;
  cq_status st = ctx ? cq_module_forward(m, ctx, nin, in, 1, &y) : CQ_ENOMEM;
  CHECK_MSG(st == want, "%s: got %s, want %s (%s)", who, cq_status_str(st), cq_status_str(want),
            cq_last_error());
  const char *msg = cq_last_error();
  CHECK_MSG(strstr(msg, who) != NULL && strchr(msg, '\n') == NULL,
            "message should name %s on one line: %s", who, msg);
  cq_ctx_free(ctx);
}

static cq_tensor *tensor(int nd, const int64_t *shape) {
  cq_tensor *t = NULL;
  if (cq_tensor_create(&t, CQ_F32, nd, shape) != CQ_OK) return NULL;
  float *d = t->data;
  for (int64_t i = 0; i < cq_tensor_numel(t); i++) d[i] = (float)(i % 7) - 3.0f;
  return t;
}

static cq_tensor *qtensor(int nd, const int64_t *shape) {
  cq_tensor *t = NULL;
  if (cq_tensor_create(&t, CQ_U8, nd, shape) != CQ_OK) return NULL;
  if (attach_qparams(t, CQ_QUINT8, 0.1f, 128) != CQ_OK) {
    cq_tensor_free(t);
    return NULL;
  }
  return t;
}

static void test_bad_arguments(void) {
  cq_module *m = NULL;
  const int64_t two_infer[3] = {-1, 2, -1}, bad_entry[2] = {-2, 3};
  CHECK_STATUS(cq_reshape(&m, 3, two_infer), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "Reshape") != NULL);
  CHECK_STATUS(cq_reshape(&m, 2, bad_entry), CQ_EINVAL);
  CHECK_STATUS(cq_reshape(&m, 9, two_infer), CQ_EINVAL);
  const int notperm[3] = {0, 0, 1}, outside[2] = {0, 2};
  CHECK_STATUS(cq_permute(&m, 3, notperm), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "Permute") != NULL);
  CHECK_STATUS(cq_permute(&m, 2, outside), CQ_EINVAL);
  const int dup[2] = {1, 1}, far[1] = {9};
  CHECK_STATUS(cq_squeeze(&m, 2, dup), CQ_EINVAL);
  CHECK_STATUS(cq_unsqueeze(&m, 1, far), CQ_EINVAL);
  CHECK_STATUS(cq_unsqueeze(&m, 0, NULL), CQ_EINVAL);
  CHECK_STATUS(cq_leaky_relu(&m, NAN), CQ_EINVAL);
  CHECK_STATUS(cq_binary_const(&m, CQ_BINARY_ADD, NULL, 0), CQ_EINVAL);
  CHECK_STATUS(cq_binary_const(&m, (cq_binary_op)7, NULL, 0), CQ_EINVAL);
  cq_conv_transpose_options o = cq_conv_transpose_defaults(4, 6, 3, 3);
  o.groups = 4;
  CHECK_STATUS(cq_conv_transpose2d(&m, &o), CQ_EINVAL);
  o = cq_conv_transpose_defaults(4, 6, 3, 3);
  o.output_padding[1] = 1; /* stride 1, dilation 1 */
  CHECK_STATUS(cq_conv_transpose2d(&m, &o), CQ_EINVAL);
  CHECK(strstr(cq_last_error(), "output padding") != NULL);
  CHECK_STATUS(cq_conv_transpose2d(&m, NULL), CQ_EINVAL);
  CHECK(m == NULL);

  /* errors that depend on the input */
  const int64_t s234[3] = {2, 3, 4}, s5[1] = {5}, s32[2] = {3, 2}, s4[1] = {4};
  cq_tensor *x = tensor(3, s234), *x5 = tensor(1, s5), *x32 = tensor(2, s32), *x4 = tensor(1, s4);
  const int64_t five[2] = {5, -1}, zeros[4] = {0, 0, 0, 0}, seven[2] = {7, 3};
  CHECK_OK(cq_reshape(&m, 2, five));
  expect_forward_error(m, 1, &x, CQ_ESHAPE, "Reshape");
  cq_module_free(m);
  CHECK_OK(cq_reshape(&m, 4, zeros));
  expect_forward_error(m, 1, &x, CQ_ESHAPE, "Reshape");
  cq_module_free(m);
  CHECK_OK(cq_reshape(&m, 2, seven));
  expect_forward_error(m, 1, &x, CQ_ESHAPE, "Reshape");
  cq_module_free(m);
  const int p2[2] = {1, 0}, a3[1] = {3}, a0[1] = {0}, a_neg[1] = {-5};
  CHECK_OK(cq_permute(&m, 2, p2));
  expect_forward_error(m, 1, &x, CQ_ESHAPE, "Permute");
  cq_module_free(m);
  CHECK_OK(cq_squeeze(&m, 1, a3));
  expect_forward_error(m, 1, &x, CQ_ESHAPE, "Squeeze");
  cq_module_free(m);
  CHECK_OK(cq_squeeze(&m, 1, a0)); /* dimension 0 has size 2 */
  expect_forward_error(m, 1, &x, CQ_ESHAPE, "Squeeze");
  cq_module_free(m);
  CHECK_OK(cq_unsqueeze(&m, 1, a_neg));
  expect_forward_error(m, 1, &x, CQ_ESHAPE, "Unsqueeze");
  cq_module_free(m);
  cq_tensor *pair[2] = {x, x5};
  CHECK_OK(cq_mul(&m));
  expect_forward_error(m, 2, pair, CQ_ESHAPE, "FloatFunctional");
  cq_module_free(m);
  CHECK_OK(cq_binary_const(&m, CQ_BINARY_DIV, x32, 0));
  expect_forward_error(m, 1, &x, CQ_ESHAPE, "BinaryConst");
  cq_module_free(m);
  CHECK_OK(cq_matmul(&m));
  cq_tensor *mm[2] = {x, x5};
  expect_forward_error(m, 2, mm, CQ_ESHAPE, "MatMul");
  cq_tensor *mm2[2] = {x4, x4};
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_tensor *y = NULL;
  CHECK_OK(cq_module_forward(m, ctx, 2, mm2, 1, &y)); /* dot product: 0-d */
  CHECK(y && y->ndim == 0);
  cq_ctx_free(ctx);
  cq_module_free(m);

  /* float-only ops on quantized tensors */
  const int64_t s1344[4] = {1, 3, 4, 4};
  cq_tensor *q = qtensor(4, s1344), *qv = qtensor(1, s4);
  CHECK_OK(cq_matmul(&m));
  cq_tensor *qq[2] = {qv, qv};
  expect_forward_error(m, 2, qq, CQ_EUNSUPPORTED, "MatMul");
  cq_module_free(m);
  CHECK_OK(cq_binary_const(&m, CQ_BINARY_ADD, x4, 0));
  expect_forward_error(m, 1, &qv, CQ_EUNSUPPORTED, "BinaryConst");
  cq_module_free(m);
  CHECK_OK(cq_conv_transpose2d(&m, &(cq_conv_transpose_options){
                                       .in_channels = 3, .out_channels = 2,
                                       .kernel_size = {2, 2}, .stride = {1, 1},
                                       .dilation = {1, 1}, .groups = 1, .bias = 1}));
  expect_forward_error(m, 1, &q, CQ_EUNSUPPORTED, "ConvTranspose2d");
  expect_forward_error(m, 1, &x, CQ_ESHAPE, "ConvTranspose2d");
  cq_module_free(m);
  CHECK_OK(cq_hardswish(&m));
  expect_forward_error(m, 1, &q, CQ_EUNSUPPORTED, "Hardswish");
  cq_module_free(m);
  CHECK_OK(cq_mul(&m));
  expect_forward_error(m, 2, qq, CQ_EUNSUPPORTED, "FloatFunctional");
  cq_module_free(m);
  cq_tensor_free(q);
  cq_tensor_free(qv);
  cq_tensor_free(x);
  cq_tensor_free(x5);
  cq_tensor_free(x32);
  cq_tensor_free(x4);
}

static void test_describe(void) {
  cq_module *m = NULL;
  const int64_t shape[3] = {0, -1, 2};
  CHECK_OK(cq_reshape(&m, 3, shape));
  int nd = 0;
  int64_t got[CQ_MAX_DIMS];
  CHECK_OK(cq_reshape_describe(m, &nd, got));
  CHECK(nd == 3 && got[0] == 0 && got[1] == -1 && got[2] == 2);
  int perm[CQ_MAX_DIMS], unsq = -1, naxes = -1;
  CHECK_STATUS(cq_permute_describe(m, &nd, perm), CQ_EINVAL);
  cq_module_free(m);
  const int axes[2] = {-1, 0};
  CHECK_OK(cq_unsqueeze(&m, 2, axes));
  CHECK_OK(cq_squeeze_describe(m, &unsq, &naxes, perm));
  CHECK(unsq == 1 && naxes == 2 && perm[0] == -1 && perm[1] == 0);
  cq_module_free(m);
  cq_conv_transpose_options o = cq_conv_transpose_defaults(2, 4, 3, 1), back;
  o.output_padding[0] = 1;
  o.stride[0] = 2;
  CHECK_OK(cq_conv_transpose2d(&m, &o));
  CHECK_OK(cq_conv_transpose_describe(m, &back));
  CHECK(memcmp(&o, &back, sizeof o) == 0);
  CHECK(strcmp(cq_module_type_name(m), "ConvTranspose2d") == 0);
  cq_module_free(m);
  const int64_t s2[1] = {2};
  cq_tensor *k = tensor(1, s2);
  CHECK_OK(cq_binary_const(&m, CQ_BINARY_DIV, k, 1));
  cq_binary_op op;
  int first = 0;
  const cq_tensor *kc = NULL;
  CHECK_OK(cq_binary_const_describe(m, &op, &first, &kc));
  CHECK(op == CQ_BINARY_DIV && first == 1 && kc && kc != k && kc->shape[0] == 2);
  CHECK(cq_module_find_tensor(m, "constant") != NULL);
  cq_module_free(m);
  cq_tensor_free(k);
  CHECK_OK(cq_leaky_relu(&m, 0.25f));
  float slope = 0;
  CHECK_OK(cq_leaky_relu_describe(m, &slope));
  CHECK(slope == 0.25f);
  cq_module_free(m);
}

/* Quantized shape ops keep qparams; an int64 tensor passes through Reshape unchanged. */
static void test_dtypes(void) {
  cq_module *m = NULL;
  const int64_t s[2] = {2, 3}, to[1] = {-1};
  cq_tensor *t = NULL;
  CHECK_OK(cq_tensor_create(&t, CQ_I64, 2, s));
  int64_t *d = t->data;
  for (int i = 0; i < 6; i++) d[i] = (int64_t)1 << (40 + i);
  CHECK_OK(cq_reshape(&m, 1, to));
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_tensor *y = NULL;
  CHECK_OK(cq_module_forward(m, ctx, 1, &t, 1, &y));
  CHECK(y && y->dtype == CQ_I64 && y->ndim == 1 && y->shape[0] == 6 &&
        memcmp(y->data, t->data, 48) == 0);
  cq_module_free(m);
  const int p[2] = {1, 0};
  CHECK_OK(cq_permute(&m, 2, p));
  CHECK_OK(cq_module_forward(m, ctx, 1, &t, 1, &y));
  CHECK(y && ((int64_t *)y->data)[1] == d[3] && ((int64_t *)y->data)[2] == d[1]);
  cq_module_free(m);
  cq_ctx_free(ctx);
  cq_tensor_free(t);
}

/* FloatFunctional.mul in a graph: prepare observes it, convert makes it a QFunctional that
 * multiplies quantized tensors (with broadcasting). */
static void test_convert_mul(void) {
  cq_module *g = NULL, *qa = NULL, *qb = NULL, *mul = NULL, *dq = NULL;
  CHECK_OK(cq_graph(&g, 2));
  CHECK_OK(cq_quant_stub(&qa));
  CHECK_OK(cq_quant_stub(&qb));
  CHECK_OK(cq_mul(&mul));
  CHECK_OK(cq_dequant_stub(&dq));
  if (!g || !qa || !qb || !mul || !dq) return;
  int in0 = 0, in1 = 1, a = 0, b = 0, y = 0, out = 0;
  CHECK_OK(cq_graph_add_node(g, "quant_a", qa, 1, &in0, 1, &a));
  CHECK_OK(cq_graph_add_node(g, "quant_b", qb, 1, &in1, 1, &b));
  const int ab[2] = {a, b};
  CHECK_OK(cq_graph_add_node(g, "mul", mul, 2, ab, 1, &y));
  CHECK_OK(cq_graph_add_node(g, "dequant", dq, 1, &y, 1, &out));
  CHECK_OK(cq_graph_set_outputs(g, 1, &out));
  cq_module_train(g, 0);
  cq_qconfig qc;
  CHECK_OK(cq_get_default_qconfig(CQ_BACKEND_QNNPACK, 0, &qc));
  CHECK_OK(cq_module_set_qconfig(g, &qc));
  CHECK_OK(cq_prepare(g));
  const int64_t sa[3] = {2, 3, 4}, sb[2] = {3, 1};
  cq_tensor *x[2] = {tensor(3, sa), tensor(2, sb)};
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  cq_tensor *r = NULL;
  CHECK_OK(cq_module_forward(g, ctx, 2, x, 1, &r)); /* calibration */
  cq_ctx_reset(ctx);
  CHECK_OK(cq_convert(g));
  cq_module *converted = cq_module_find(g, "mul");
  CHECK(converted && strcmp(cq_module_type_name(converted), "QFunctional") == 0);
  CHECK_OK(cq_module_forward(g, ctx, 2, x, 1, &r));
  if (r && r->ndim == 3 && r->dtype == CQ_F32) {
    const float *xa = x[0]->data, *xb = x[1]->data, *rd = r->data;
    double worst = 0;
    for (int i = 0; i < 24; i++) worst = fmax(worst, fabs(rd[i] - xa[i] * xb[(i / 4) % 3]));
    CHECK_MSG(worst < 0.1, "quantized mul is off by %g", worst);
  } else {
    CHECK_MSG(0, "converted graph gave no [2, 3, 4] float output");
  }
  cq_ctx_free(ctx);
  cq_tensor_free(x[0]);
  cq_tensor_free(x[1]);
  cq_module_free(g);
}

/* Every allocation of a constructor and a forward + backward fails in turn: a status, no crash,
 * no leak (the sanitizer build checks the last part). */
static void test_alloc_failures(void) {
  int failures = 0, successes = 0;
  for (long n = 0; n < 64; n++) {
    cq_debug_fail_alloc_after(n);
    cq_module *m = NULL;
    cq_conv_transpose_options o = cq_conv_transpose_defaults(2, 4, 3, 3);
    o.stride[0] = o.stride[1] = 2;
    cq_status st = cq_conv_transpose2d(&m, &o);
    const int64_t s[4] = {1, 2, 3, 3};
    cq_tensor *x = NULL;
    cq_ctx *ctx = NULL;
    cq_tensor *y = NULL, *gx = NULL;
    if (st == CQ_OK) st = cq_tensor_create(&x, CQ_F32, 4, s);
    if (st == CQ_OK) st = cq_ctx_create(&ctx);
    if (st == CQ_OK) {
      cq_ctx_set_grad(ctx, 1);
      st = cq_module_forward(m, ctx, 1, &x, 1, &y);
    }
    if (st == CQ_OK) st = cq_ctx_backward(ctx, y, y, x, &gx);
    cq_debug_fail_alloc_after(-1);
    if (st == CQ_OK) {
      successes++;
    } else {
      failures++;
      CHECK_MSG(st == CQ_ENOMEM, "allocation failure %ld gave %s", n, cq_status_str(st));
    }
    cq_ctx_free(ctx);
    cq_tensor_free(x);
    cq_module_free(m);
  }
  CHECK(failures > 0 && successes > 0);
}

/* Reshape entries whose product passes INT64_MAX (an ONNX file can hold any int64) are a shape
 * error, not an overflow; with an empty dimension the product is 0 whatever the others are. */
static void test_reshape_huge_entries(void) {
  const int64_t xs[3] = {2, 2, 1}, empty_xs[3] = {0, 3, 5};
  const int64_t huge[2] = {(int64_t)1 << 40, (int64_t)1 << 40};
  const int64_t huge_infer[3] = {(int64_t)1 << 62, 4, -1};
  const int64_t huge_empty[3] = {0, (int64_t)1 << 40, (int64_t)1 << 40};
  const int64_t *shapes[3] = {huge, huge_infer, huge_empty};
  const int counts[3] = {2, 3, 3};
  for (int i = 0; i < 3; i++) {
    cq_module *m = NULL;
    cq_ctx *ctx = NULL;
    cq_tensor *x = NULL, *y = NULL;
    CHECK_STATUS(cq_reshape(&m, counts[i], shapes[i]), CQ_OK);
    CHECK_STATUS(cq_ctx_create(&ctx), CQ_OK);
    CHECK_STATUS(cq_tensor_create(&x, CQ_F32, 3, i == 2 ? empty_xs : xs), CQ_OK);
    if (m && ctx && x) {
      const cq_status st = cq_module_forward1(m, ctx, x, &y);
      if (i < 2) {
        CHECK_STATUS(st, CQ_ESHAPE);
        CHECK_MSG(strstr(cq_last_error(), "more elements than any tensor") != NULL, "got: %s",
                  cq_last_error());
      } else {
        /* an empty input fits: the leading 0 copies its dimension, 0 elements either way */
        CHECK_STATUS(st, CQ_OK);
        CHECK(y && cq_tensor_numel(y) == 0 && y->shape[1] == ((int64_t)1 << 40));
      }
    }
    cq_tensor_free(x);
    cq_ctx_free(ctx);
    cq_module_free(m);
  }
}

int main(void) {
  test_golden();
  test_reprs();
  test_bad_arguments();
  test_reshape_huge_entries();
  test_describe();
  test_dtypes();
  test_convert_mul();
  test_alloc_failures();
  return check_summary("test_nn_ops_extra");
}

/* Float BatchNorm1d/2d, ReLU6, Hardtanh, Sigmoid, Tanh, Softmax, Flatten, Dropout, Identity and
 * the functional add / cat (FloatFunctional) against PyTorch 1.13.
 *
 * Golden cases (tests/data/golden/nn_layers/cases.txt, from tools/golden/gen_nn_layers.py; the
 * graph/... cases there belong to test_nn_graph.c): each builds the module from its `module` line,
 * checks its repr against str(module), loads PyTorch's state dict into it, runs forward and
 * backward `steps` times through a cq_ctx (gradients accumulate as in PyTorch), and compares the
 * outputs, the gradient of every input, the parameter gradients and the buffers afterwards
 * (running statistics, num_batches_tracked).
 *
 * Tolerance: cases marked `exact` (ReLU6, Hardtanh, Flatten, Identity, Dropout with PyTorch's own
 * mask, add, cat: no rounding beyond one float operation per element) are compared bit for bit.
 * The others: |got - want| <= 1e-4 * max(|want|, 0.01 * max|want|) per element (relative, with a
 * floor of 1% of the tensor's largest magnitude where values cancel to almost nothing), and the
 * running statistics within 1e-5 of the same measure. The largest errors seen are printed.
 *
 * Direct checks: reprs of the defaults, parameter/buffer order and dtypes, train/eval behaviour of
 * BatchNorm and Dropout, the empty batch, 0-d inputs, bad arguments and inputs (status and message,
 * nothing aborts) and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cquant/graph.h"
#include "cquant/modules.h"
#include "cquant/nn.h"
#include "cquant/npy.h"
#include "cquant/status.h"
#include "cquant/tensor.h"
#include "support/check.h"
#include "support/golden.h"

#define GOLDEN_FILE CQ_TEST_DATA_DIR "/golden/nn_layers/cases.txt"

#define REL_TOL 1e-4
#define STAT_TOL 1e-5
#define FLOOR_FRACTION 1e-2

/* Largest error per module kind, for the summary. */
typedef struct err_stat {
  const char *kind;
  double fwd, gin, gparam, buffers;
  int cases, exact;
} err_stat;

static err_stat stats[] = {
    {"BatchNorm1d", 0, 0, 0, 0, 0, 0}, {"BatchNorm2d", 0, 0, 0, 0, 0, 0},
    {"ReLU6", 0, 0, 0, 0, 0, 0},       {"Hardtanh", 0, 0, 0, 0, 0, 0},
    {"Sigmoid", 0, 0, 0, 0, 0, 0},     {"Tanh", 0, 0, 0, 0, 0, 0},
    {"Softmax", 0, 0, 0, 0, 0, 0},     {"Flatten", 0, 0, 0, 0, 0, 0},
    {"Dropout", 0, 0, 0, 0, 0, 0},     {"Identity", 0, 0, 0, 0, 0, 0},
    {"Add", 0, 0, 0, 0, 0, 0},         {"Cat", 0, 0, 0, 0, 0, 0},
};

static err_stat *stat_for(const char *kind) {
  for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++) {
    if (strcmp(stats[i].kind, kind) == 0) return &stats[i];
  }
  return NULL;
}

static int contains(const char *haystack, const char *needle) {
  return strstr(haystack, needle) != NULL;
}

/* --- reading cases ------------------------------------------------------------------------------- */

static cq_tensor *load_file(const golden_file *g, const golden_case *c, const char *file) {
  char path[1024];
  cq_tensor *t = NULL;
  cq_status st = cq_npy_load(golden_path(g, file, path, sizeof path), &t);
  CHECK_MSG(st == CQ_OK, "case %s: loading %s: %s", c->name, file, cq_last_error());
  return st == CQ_OK ? t : NULL;
}

/* Splits "KEY FILE" into key (copied into buf) and the file. */
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

static int count_key(const golden_case *c, const char *key) {
  int n = 0;
  while (golden_get_nth(c, key, n)) n++;
  return n;
}

/* --- comparing ----------------------------------------------------------------------------------- */

static int same_shape(const cq_tensor *a, const cq_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++) {
    if (a->shape[i] != b->shape[i]) return 0;
  }
  return 1;
}

/* Compares got with want; returns the largest relative error (by the measure above), or 0 for
 * exact comparisons that pass; reports failures. */
static double compare(const golden_case *c, const char *what, const cq_tensor *got,
                      const cq_tensor *want, int exact, double tol) {
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
  if (want->dtype == CQ_I64) {
    CHECK_MSG(memcmp(got->data, want->data, cq_tensor_nbytes(want)) == 0, "case %s: %s differs",
              c->name, what);
    return 0;
  }
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
  const double floor_v = FLOOR_FRACTION * maxabs;
  double worst = 0;
  int64_t worst_i = -1;
  for (int64_t i = 0; i < n; i++) {
    const double denom = fmax(fabs((double)w[i]), floor_v);
    const double diff = fabs((double)g[i] - (double)w[i]);
    double rel = denom > 0 ? diff / denom : (diff > 0 ? INFINITY : 0);
    if (isnan(g[i]) != isnan(w[i])) rel = INFINITY;
    if (isnan(g[i]) && isnan(w[i])) rel = 0;
    if (rel > worst || worst_i < 0) {
      worst = rel;
      worst_i = i;
    }
  }
  CHECK_MSG(worst <= tol, "case %s: %s[%lld] = %.9g, expected %.9g (relative error %.3g > %.0e)",
            c->name, what, (long long)worst_i, (double)g[worst_i], (double)w[worst_i], worst, tol);
  return worst;
}

/* --- building modules ---------------------------------------------------------------------------- */

static cq_status build_module(const char *spec, char *kind, size_t kind_cap, cq_module **m) {
  *m = NULL;
  char args[256];
  const char *rest = split_key(spec, kind, kind_cap);
  snprintf(args, sizeof args, "%s", rest);
  char *end = args;
  if (strcmp(kind, "BatchNorm1d") == 0) return cq_batchnorm1d(m, strtoll(args, NULL, 10));
  if (strcmp(kind, "BatchNorm2d") == 0) return cq_batchnorm2d(m, strtoll(args, NULL, 10));
  if (strcmp(kind, "ReLU6") == 0) return cq_relu6(m);
  if (strcmp(kind, "Hardtanh") == 0) {
    float lo = (float)strtod(args, &end);
    float hi = (float)strtod(end, NULL);
    return cq_hardtanh(m, lo, hi);
  }
  if (strcmp(kind, "Sigmoid") == 0) return cq_sigmoid(m);
  if (strcmp(kind, "Tanh") == 0) return cq_tanh(m);
  if (strcmp(kind, "Softmax") == 0) return cq_softmax(m, (int)strtol(args, NULL, 10));
  if (strcmp(kind, "Flatten") == 0) {
    int s = (int)strtol(args, &end, 10);
    int e = (int)strtol(end, NULL, 10);
    return cq_flatten(m, s, e);
  }
  if (strcmp(kind, "Dropout") == 0) return cq_dropout(m, (float)strtod(args, NULL));
  if (strcmp(kind, "Identity") == 0) return cq_identity(m);
  if (strcmp(kind, "Add") == 0) return cq_add(m);
  if (strcmp(kind, "Cat") == 0) return cq_cat(m, (int)strtol(args, NULL, 10));
  return cq_fail(CQ_EINVAL, "unknown module kind '%s'", kind);
}

/* --- running a case ------------------------------------------------------------------------------ */

/* Forward, then one backward pass from every output to every input; input gradients accumulate
 * over the steps into gin_total (float32 tensors shaped like the inputs). */
static int run_steps(const golden_case *c, cq_module *m, int nin, cq_tensor **in, int nout,
                     cq_tensor **gy, cq_tensor **gin_total, int steps, cq_ctx *ctx,
                     cq_tensor **out) {
  for (int step = 0; step < steps; step++) {
    cq_ctx_reset(ctx);
    cq_ctx_set_grad(ctx, 1);
    cq_status st = cq_module_forward(m, ctx, nin, in, nout, out);
    CHECK_MSG(st == CQ_OK, "case %s: forward: %s", c->name, cq_last_error());
    if (st != CQ_OK) return 0;
    cq_tensor *gi[8] = {0};
    st = cq_ctx_backward_multi(ctx, nout, out, (const cq_tensor *const *)gy, nin, in, gi);
    CHECK_MSG(st == CQ_OK, "case %s: backward: %s", c->name, cq_last_error());
    if (st != CQ_OK) return 0;
    for (int i = 0; i < nin; i++) {
      if (!gi[i] || in[i]->dtype != CQ_F32) continue;
      /* the first step is copied, so that -0.0 stays -0.0 as in PyTorch */
      float *acc = gin_total[i]->data;
      const float *src = gi[i]->data;
      for (int64_t j = 0; j < cq_tensor_numel(gi[i]); j++) acc[j] = step ? acc[j] + src[j] : src[j];
    }
  }
  return 1;
}

static cq_status load_state(const golden_file *g, const golden_case *c, cq_module *m) {
  const char *v;
  for (int i = 0; (v = golden_get_nth(c, "set", i)) != NULL; i++) {
    char key[256];
    const char *file = split_key(v, key, sizeof key);
    cq_named_tensor *nt = cq_module_find_tensor(m, key);
    CHECK_MSG(nt != NULL, "case %s: no tensor '%s': %s", c->name, key, cq_last_error());
    cq_tensor *t = load_file(g, c, file);
    if (nt && t) {
      CHECK_MSG(same_shape(nt->tensor, t) && nt->tensor->dtype == t->dtype,
                "case %s: '%s' has another shape or dtype than PyTorch's", c->name, key);
      if (same_shape(nt->tensor, t) && nt->tensor->dtype == t->dtype) {
        memcpy(nt->tensor->data, t->data, cq_tensor_nbytes(t));
      }
    }
    cq_tensor_free(t);
  }
  return CQ_OK;
}

static void run_case(const golden_file *g, const golden_case *c) {
  const char *spec = golden_get(c, "module");
  CHECK_MSG(spec != NULL, "case %s: no module", c->name);
  if (!spec) return;
  char kind[64];
  cq_module *m = NULL;
  cq_status st = build_module(spec, kind, sizeof kind, &m);
  CHECK_MSG(st == CQ_OK, "case %s: building %s: %s", c->name, spec, cq_last_error());
  if (st != CQ_OK) return;
  err_stat *es = stat_for(kind);
  const char *v = golden_get(c, "exact");
  const int exact = v && atoi(v);
  v = golden_get(c, "steps");
  const int steps = v ? atoi(v) : 1;
  v = golden_get(c, "training");
  cq_module_train(m, v ? atoi(v) : 1);
  load_state(g, c, m);

  /* repr */
  v = golden_get(c, "repr");
  if (v) {
    char *want = strdup(v);
    char *got = cq_module_repr_alloc(m);
    if (want && got) {
      unescape(want);
      CHECK_STR_EQ(got, want);
    }
    free(want);
    free(got);
  }

  const int nin = count_key(c, "input"), nout = count_key(c, "output");
  CHECK(nin >= 1 && nin <= 8 && nout >= 1 && nout <= 8 && count_key(c, "grad_output") == nout);
  cq_tensor *in[8] = {0}, *gy[8] = {0}, *gin[8] = {0}, *out[8] = {0};
  int ok = nin >= 1 && nin <= 8 && nout >= 1 && nout <= 8;
  for (int i = 0; ok && i < nin; i++) {
    in[i] = load_file(g, c, golden_get_nth(c, "input", i));
    ok = in[i] != NULL && cq_tensor_create(&gin[i], CQ_F32, in[i]->ndim, in[i]->shape) == CQ_OK;
  }
  for (int k = 0; ok && k < nout; k++) {
    gy[k] = load_file(g, c, golden_get_nth(c, "grad_output", k));
    ok = gy[k] != NULL;
  }
  cq_ctx *ctx = NULL;
  if (ok) ok = cq_ctx_create(&ctx) == CQ_OK;
  v = golden_get(c, "seed");
  if (v) cq_manual_seed(strtoull(v, NULL, 10));
  if (ok) ok = run_steps(c, m, nin, in, nout, gy, gin, steps, ctx, out);
  if (ok) {
    double fwd = 0, gi = 0, gp = 0, bufs = 0;
    for (int k = 0; k < nout; k++) {
      cq_tensor *want = load_file(g, c, golden_get_nth(c, "output", k));
      fwd = fmax(fwd, compare(c, "output", out[k], want, exact, REL_TOL));
      cq_tensor_free(want);
    }
    for (int i = 0; i < nin; i++) {
      cq_tensor *want = load_file(g, c, golden_get_nth(c, "grad_input", i));
      gi = fmax(gi, compare(c, "grad_input", gin[i], want, exact, REL_TOL));
      cq_tensor_free(want);
    }
    for (int i = 0; (v = golden_get_nth(c, "grad", i)) != NULL; i++) {
      char key[256], what[300];
      const char *file = split_key(v, key, sizeof key);
      cq_named_tensor *nt = cq_module_find_tensor(m, key);
      CHECK_MSG(nt != NULL && nt->grad != NULL, "case %s: no gradient for '%s'", c->name, key);
      cq_tensor *want = load_file(g, c, file);
      snprintf(what, sizeof what, "grad %s", key);
      if (nt && nt->grad) gp = fmax(gp, compare(c, what, nt->grad, want, exact, REL_TOL));
      cq_tensor_free(want);
    }
    for (int i = 0; (v = golden_get_nth(c, "after", i)) != NULL; i++) {
      char key[256], what[300];
      const char *file = split_key(v, key, sizeof key);
      cq_named_tensor *nt = cq_module_find_tensor(m, key);
      CHECK_MSG(nt != NULL, "case %s: no buffer '%s'", c->name, key);
      cq_tensor *want = load_file(g, c, file);
      snprintf(what, sizeof what, "buffer %s", key);
      if (nt) bufs = fmax(bufs, compare(c, what, nt->tensor, want, exact, STAT_TOL));
      cq_tensor_free(want);
    }
    if (es) {
      es->fwd = fmax(es->fwd, fwd);
      es->gin = fmax(es->gin, gi);
      es->gparam = fmax(es->gparam, gp);
      es->buffers = fmax(es->buffers, bufs);
      es->cases++;
      es->exact = exact;
    }
  }
  cq_ctx_free(ctx);
  for (int i = 0; i < 8; i++) {
    cq_tensor_free(in[i]);
    cq_tensor_free(gy[i]);
    cq_tensor_free(gin[i]);
  }
  cq_module_free(m);
}

static void test_golden(void) {
  golden_file g;
  if (golden_load(GOLDEN_FILE, &g) != 0) {
    CHECK_MSG(0, "cannot load %s", GOLDEN_FILE);
    return;
  }
  int ran = 0;
  for (int i = 0; i < g.count; i++) {
    if (!golden_get(&g.cases[i], "module")) continue; /* graph cases: test_nn_graph.c */
    run_case(&g, &g.cases[i]);
    ran++;
  }
  CHECK(ran >= 50);
  printf("golden: %d module cases\n", ran);
  printf("  %-12s %5s  %-10s %-10s %-10s %-10s\n", "kind", "cases", "output", "grad_in",
         "grad_param", "buffers");
  for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++) {
    const err_stat *s = &stats[i];
    CHECK_MSG(s->cases > 0, "no golden case for %s", s->kind);
    if (s->exact) {
      printf("  %-12s %5d  bit-exact\n", s->kind, s->cases);
    } else {
      printf("  %-12s %5d  %-10.3g %-10.3g %-10.3g %-10.3g\n", s->kind, s->cases, s->fwd, s->gin,
             s->gparam, s->buffers);
    }
  }
  golden_free(&g);
}

/* --- direct checks ------------------------------------------------------------------------------- */

/* m is read after the constructor ran (argument evaluation order is unspecified). */
static void check_repr(cq_status st, cq_module **pm, const char *want) {
  cq_module *m = *pm;
  *pm = NULL;
  CHECK_MSG(st == CQ_OK, "constructor for %s failed: %s", want, cq_last_error());
  if (st != CQ_OK) return;
  char *got = cq_module_repr_alloc(m);
  CHECK(got != NULL);
  if (got) CHECK_STR_EQ(got, want);
  free(got);
  cq_module_free(m);
}

static void test_reprs(void) {
  cq_module *m = NULL;
  check_repr(cq_batchnorm2d(&m, 64), &m,
             "BatchNorm2d(64, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  check_repr(cq_batchnorm1d(&m, 5), &m,
             "BatchNorm1d(5, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");
  check_repr(cq_relu6(&m), &m, "ReLU6()");
  check_repr(cq_hardtanh(&m, -1.0f, 1.0f), &m, "Hardtanh(min_val=-1.0, max_val=1.0)");
  check_repr(cq_hardtanh(&m, -0.1f, 0.3f), &m, "Hardtanh(min_val=-0.1, max_val=0.3)");
  check_repr(cq_hardtanh(&m, -2.0f, 1e-7f), &m, "Hardtanh(min_val=-2.0, max_val=1e-07)");
  check_repr(cq_sigmoid(&m), &m, "Sigmoid()");
  check_repr(cq_tanh(&m), &m, "Tanh()");
  check_repr(cq_softmax(&m, 1), &m, "Softmax(dim=1)");
  check_repr(cq_softmax(&m, -1), &m, "Softmax(dim=-1)");
  check_repr(cq_flatten(&m, 1, -1), &m, "Flatten(start_dim=1, end_dim=-1)");
  check_repr(cq_flatten(&m, 0, 2), &m, "Flatten(start_dim=0, end_dim=2)");
  check_repr(cq_dropout(&m, 0.5f), &m, "Dropout(p=0.5, inplace=False)");
  check_repr(cq_dropout(&m, 0.1f), &m, "Dropout(p=0.1, inplace=False)");
  check_repr(cq_dropout(&m, 0.0f), &m, "Dropout(p=0.0, inplace=False)");
  check_repr(cq_identity(&m), &m, "Identity()");
  check_repr(cq_add(&m), &m, "FloatFunctional(\n  (activation_post_process): Identity()\n)");
  check_repr(cq_cat(&m, 1), &m, "FloatFunctional(\n  (activation_post_process): Identity()\n)");

  /* inside a Sequential, as the seed prints its models */
  cq_module *kids[4] = {0};
  CHECK_OK(cq_batchnorm2d(&kids[0], 8));
  CHECK_OK(cq_relu6(&kids[1]));
  CHECK_OK(cq_flatten(&kids[2], 1, -1));
  CHECK_OK(cq_dropout(&kids[3], 0.25f));
  cq_module *seq = NULL;
  CHECK_OK(cq_sequential(&seq, 4, kids));
  if (seq) {
    char *s = cq_module_repr_alloc(seq);
    CHECK_STR_EQ(s ? s : "",
                 "Sequential(\n"
                 "  (0): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, "
                 "track_running_stats=True)\n"
                 "  (1): ReLU6()\n"
                 "  (2): Flatten(start_dim=1, end_dim=-1)\n"
                 "  (3): Dropout(p=0.25, inplace=False)\n"
                 ")");
    free(s);
  }
  cq_module_free(seq);
}

typedef struct key_list {
  char keys[16][64];
  int params[16];
  int n;
} key_list;

static cq_status collect_keys(const char *key, cq_named_tensor *t, void *user) {
  key_list *k = user;
  if (k->n < 16) {
    snprintf(k->keys[k->n], sizeof k->keys[0], "%s", key);
    k->params[k->n] = t->is_parameter;
    k->n++;
  }
  return CQ_OK;
}

static void test_batchnorm_state(void) {
  cq_module *bn = NULL;
  CHECK_OK(cq_batchnorm2d(&bn, 3));
  if (!bn) return;
  CHECK_STR_EQ(cq_module_type_name(bn), "BatchNorm2d");
  CHECK_INT_EQ(cq_module_num_tensors(bn), 5);
  const char *names[5] = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"};
  const float init[4] = {1.0f, 0.0f, 0.0f, 1.0f};
  for (int i = 0; i < 5 && i < cq_module_num_tensors(bn); i++) {
    cq_named_tensor *t = cq_module_tensor(bn, i);
    CHECK_STR_EQ(t->name, names[i]);
    CHECK_INT_EQ(t->is_parameter, i < 2);
    CHECK_INT_EQ(t->grad != NULL, i < 2);
    if (i < 4) {
      CHECK_INT_EQ(t->tensor->dtype, CQ_F32);
      CHECK_INT_EQ(t->tensor->ndim, 1);
      CHECK_INT_EQ(t->tensor->shape[0], 3);
      const float *d = t->tensor->data;
      for (int j = 0; j < 3; j++) CHECK_F32_BITS(d[j], init[i]);
    } else {
      CHECK_INT_EQ(t->tensor->dtype, CQ_I64);
      CHECK_INT_EQ(t->tensor->ndim, 0);
      CHECK_INT_EQ(*(int64_t *)t->tensor->data, 0);
    }
  }
  /* state-dict keys inside a Sequential: own parameters, then buffers, children in order */
  cq_module *relu = NULL;
  CHECK_OK(cq_relu(&relu));
  cq_module *kids[2] = {relu, bn};
  cq_module *seq = NULL;
  CHECK_OK(cq_sequential(&seq, 2, kids));
  if (!seq) return;
  key_list k = {{{0}}, {0}, 0};
  CHECK_OK(cq_module_visit_tensors(seq, collect_keys, &k));
  CHECK_INT_EQ(k.n, 5);
  if (k.n == 5) {
    CHECK_STR_EQ(k.keys[0], "1.weight");
    CHECK_STR_EQ(k.keys[1], "1.bias");
    CHECK_STR_EQ(k.keys[2], "1.running_mean");
    CHECK_STR_EQ(k.keys[3], "1.running_var");
    CHECK_STR_EQ(k.keys[4], "1.num_batches_tracked");
  }
  CHECK(cq_module_find_tensor(seq, "1.running_var") != NULL);
  CHECK(cq_module_find_tensor(seq, "1.running_varx") == NULL);
  CHECK(contains(cq_last_error(), "running_varx"));
  cq_module_free(seq);
}

static cq_tensor *tensor_of(int ndim, const int64_t *shape, float start, float step) {
  cq_tensor *t = NULL;
  if (cq_tensor_create(&t, CQ_F32, ndim, shape) != CQ_OK) return NULL;
  float *d = t->data;
  for (int64_t i = 0; i < cq_tensor_numel(t); i++) d[i] = start + step * (float)((i * 7) % 13);
  return t;
}

static void test_batchnorm_modes(void) {
  cq_module *bn = NULL;
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_batchnorm2d(&bn, 2));
  CHECK_OK(cq_ctx_create(&ctx));
  if (!bn || !ctx) return;
  const int64_t shape[4] = {3, 2, 2, 2};
  cq_tensor *x = tensor_of(4, shape, -1.0f, 0.25f);
  cq_tensor *y = NULL;
  int64_t *nbt = cq_module_find_tensor(bn, "num_batches_tracked")->tensor->data;
  const float *rmean = cq_module_find_tensor(bn, "running_mean")->tensor->data;
  const float *rvar = cq_module_find_tensor(bn, "running_var")->tensor->data;

  /* training without gradients still updates the running statistics */
  CHECK_OK(cq_module_forward1(bn, ctx, x, &y));
  CHECK_INT_EQ(*nbt, 1);
  CHECK(rmean[0] != 0.0f && rvar[0] != 1.0f);
  /* the batch-normalized output has mean ~0 and biased variance ~1 per channel */
  if (y) {
    const float *d = y->data;
    for (int c = 0; c < 2; c++) {
      double s = 0, s2 = 0;
      for (int n = 0; n < 3; n++) {
        for (int j = 0; j < 4; j++) {
          double v = d[(n * 2 + c) * 4 + j];
          s += v;
          s2 += v * v;
        }
      }
      CHECK(fabs(s / 12) < 1e-6);
      CHECK(fabs(s2 / 12 - 1.0) < 1e-3);
    }
  }

  /* eval: no update, output uses the running statistics */
  const float m0 = rmean[0], v0 = rvar[0];
  cq_module_train(bn, 0);
  CHECK_OK(cq_module_forward1(bn, ctx, x, &y));
  CHECK_INT_EQ(*nbt, 1);
  CHECK_F32_BITS(rmean[0], m0);
  CHECK_F32_BITS(rvar[0], v0);
  if (y) {
    const float *xd = x->data, *d = y->data;
    float invstd = 1.0f / sqrtf(v0 + 1e-5f);
    CHECK(fabsf(d[0] - (xd[0] - m0) * invstd) < 1e-6f);
  }
  /* eval with a single value per channel is fine */
  const int64_t one[4] = {1, 2, 1, 1};
  cq_tensor *x1 = tensor_of(4, one, 0.5f, 1.0f);
  CHECK_OK(cq_module_forward1(bn, ctx, x1, &y));

  /* training with a single value per channel is refused, nothing changes */
  cq_module_train(bn, 1);
  CHECK_STATUS(cq_module_forward1(bn, ctx, x1, &y), CQ_ESHAPE);
  CHECK(contains(cq_last_error(), "Expected more than 1 value per channel when training"));
  CHECK(contains(cq_last_error(), "[1, 2, 1, 1]"));
  CHECK_INT_EQ(*nbt, 1);

  /* the empty batch: empty output, statistics untouched, the batch is counted (as PyTorch) */
  const int64_t empty[4] = {0, 2, 3, 3};
  cq_tensor *x0 = NULL;
  CHECK_OK(cq_tensor_create(&x0, CQ_F32, 4, empty));
  cq_ctx_set_grad(ctx, 1);
  CHECK_OK(cq_module_forward1(bn, ctx, x0, &y));
  if (y) CHECK_INT_EQ(cq_tensor_numel(y), 0);
  CHECK_INT_EQ(*nbt, 2);
  CHECK_F32_BITS(rmean[0], m0);
  if (y) {
    cq_tensor *gy = NULL, *gx = NULL;
    CHECK_OK(cq_tensor_create(&gy, CQ_F32, 4, empty));
    CHECK_OK(cq_ctx_backward(ctx, y, gy, x0, &gx));
    CHECK(gx != NULL && cq_tensor_numel(gx) == 0);
    cq_tensor_free(gy);
  }

  /* two values per channel, the smallest training batch: outputs are +-weight (up to eps), the
   * running variance takes the unbiased variance (n - 1 = 1), the input gradient vanishes */
  cq_module *bn2 = NULL;
  CHECK_OK(cq_batchnorm1d(&bn2, 2));
  if (bn2) {
    const int64_t s22[2] = {2, 2};
    cq_tensor *xp = tensor_of(2, s22, 0.0f, 0.0f), *gp = tensor_of(2, s22, 0.0f, 0.0f);
    float *xv = xp->data, *gv = gp->data;
    xv[0] = 1.0f;
    xv[1] = 3.0f;
    xv[2] = 2.0f;
    xv[3] = 7.0f;
    gv[0] = 0.5f;
    gv[1] = -1.0f;
    gv[2] = 2.0f;
    gv[3] = 0.25f;
    cq_tensor *gx = NULL;
    cq_ctx_reset(ctx);
    cq_ctx_set_grad(ctx, 1);
    CHECK_OK(cq_module_forward1(bn2, ctx, xp, &y));
    if (y) {
      const float *d = y->data;
      CHECK(fabsf(d[0] + 1.0f) < 1e-4f && fabsf(d[2] - 1.0f) < 1e-4f);
      CHECK(fabsf(d[1] + 1.0f) < 1e-4f && fabsf(d[3] - 1.0f) < 1e-4f);
      const float *rv = cq_module_find_tensor(bn2, "running_var")->tensor->data;
      const float *rm = cq_module_find_tensor(bn2, "running_mean")->tensor->data;
      CHECK(fabsf(rv[0] - (0.9f + 0.1f * 0.5f)) < 1e-6f);
      CHECK(fabsf(rv[1] - (0.9f + 0.1f * 8.0f)) < 1e-6f);
      CHECK(fabsf(rm[0] - 0.15f) < 1e-6f && fabsf(rm[1] - 0.5f) < 1e-6f);
      CHECK_OK(cq_ctx_backward(ctx, y, gp, xp, &gx));
      /* zero but for eps / (var + eps) terms (~1e-4 here) */
      for (int i = 0; gx && i < 4; i++) CHECK(fabsf(((float *)gx->data)[i]) < 1e-3f);
      const float *gw = cq_module_find_tensor(bn2, "weight")->grad->data;
      const float *gb = cq_module_find_tensor(bn2, "bias")->grad->data;
      CHECK(fabsf(gw[0] - (-0.5f + 2.0f)) < 1e-4f && fabsf(gb[0] - 2.5f) < 1e-6f);
    }
    cq_tensor_free(xp);
    cq_tensor_free(gp);
    cq_module_free(bn2);
  }

  /* bad inputs */
  const int64_t s3[3] = {2, 2, 4};
  cq_tensor *x3 = tensor_of(3, s3, 0.0f, 1.0f);
  CHECK_STATUS(cq_module_forward1(bn, ctx, x3, &y), CQ_ESHAPE);
  CHECK(contains(cq_last_error(), "BatchNorm2d: expected 4D input (got 3D input)"));
  const int64_t wrongc[4] = {2, 3, 2, 2};
  cq_tensor *xc = tensor_of(4, wrongc, 0.0f, 1.0f);
  CHECK_STATUS(cq_module_forward1(bn, ctx, xc, &y), CQ_ESHAPE);
  CHECK(contains(cq_last_error(), "3 channels"));
  cq_tensor *xi = NULL;
  CHECK_OK(cq_tensor_create(&xi, CQ_S32, 4, shape));
  CHECK_STATUS(cq_module_forward1(bn, ctx, xi, &y), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "float32"));

  cq_module *bn1 = NULL;
  CHECK_OK(cq_batchnorm1d(&bn1, 2));
  if (bn1) {
    CHECK_STATUS(cq_module_forward1(bn1, ctx, x, &y), CQ_ESHAPE);
    CHECK(contains(cq_last_error(), "BatchNorm1d: expected 2D or 3D input (got 4D input)"));
    const int64_t s2[2] = {1, 2};
    cq_tensor *xb = tensor_of(2, s2, 0.0f, 1.0f);
    CHECK_STATUS(cq_module_forward1(bn1, ctx, xb, &y), CQ_ESHAPE);
    CHECK(contains(cq_last_error(), "got input size [1, 2]"));
    cq_tensor_free(xb);
    cq_module_free(bn1);
  }
  CHECK_STATUS(cq_batchnorm1d(&bn1, -1), CQ_EINVAL);
  CHECK(bn1 == NULL);
  CHECK(contains(cq_last_error(), "num_features"));

  cq_tensor_free(x);
  cq_tensor_free(x0);
  cq_tensor_free(x1);
  cq_tensor_free(x3);
  cq_tensor_free(xc);
  cq_tensor_free(xi);
  cq_ctx_free(ctx);
  cq_module_free(bn);
}

static void test_dropout(void) {
  cq_module *d = NULL;
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_dropout(&d, 0.3f));
  CHECK_OK(cq_ctx_create(&ctx));
  if (!d || !ctx) return;
  const int64_t shape[2] = {100, 100};
  cq_tensor *x = tensor_of(2, shape, 0.5f, 0.1f);
  cq_tensor *y = NULL, *gy = NULL, *gx = NULL;
  cq_ctx_set_grad(ctx, 1);
  cq_manual_seed(7);
  CHECK_OK(cq_module_forward1(d, ctx, x, &y));
  CHECK_OK(cq_tensor_create(&gy, CQ_F32, 2, shape));
  if (y && gy) {
    float *g = gy->data;
    for (int i = 0; i < 10000; i++) g[i] = (float)(i % 5) - 2.0f;
    CHECK_OK(cq_ctx_backward(ctx, y, gy, x, &gx));
    const float scale = 1.0f / 0.7f;
    const float *xd = x->data, *yd = y->data, *gd = gx ? gx->data : NULL;
    int kept = 0, consistent = 1;
    for (int i = 0; i < 10000; i++) {
      const int keep = yd[i] != 0.0f;
      kept += keep;
      if (keep && yd[i] != xd[i] * scale) consistent = 0;
      if (gd && gd[i] != (keep ? g[i] * scale : 0.0f)) consistent = 0;
    }
    CHECK(consistent);
    CHECK_MSG(kept > 6800 && kept < 7200, "kept %d of 10000 at p=0.3", kept);
  }
  /* the same seed gives the same mask */
  cq_tensor *y2 = NULL;
  cq_manual_seed(7);
  CHECK_OK(cq_module_forward1(d, ctx, x, &y2));
  if (y && y2) CHECK(memcmp(y->data, y2->data, cq_tensor_nbytes(y)) == 0);

  /* eval: the input itself; gradients pass unchanged */
  cq_module_train(d, 0);
  cq_ctx_reset(ctx);
  cq_ctx_set_grad(ctx, 1);
  CHECK_OK(cq_module_forward1(d, ctx, x, &y));
  CHECK(y == x);
  if (y == x && gy) {
    CHECK_OK(cq_ctx_backward(ctx, y, gy, x, &gx));
    CHECK(gx != NULL && memcmp(gx->data, gy->data, cq_tensor_nbytes(gy)) == 0);
  }
  /* errors */
  cq_module *bad = NULL;
  CHECK_STATUS(cq_dropout(&bad, 1.5f), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "between 0 and 1, but got 1.5"));
  CHECK_STATUS(cq_dropout(&bad, -0.1f), CQ_EINVAL);
  CHECK_STATUS(cq_dropout(&bad, NAN), CQ_EINVAL);
  CHECK(bad == NULL);
  cq_module_train(d, 1);
  cq_tensor *xi = NULL;
  CHECK_OK(cq_tensor_create(&xi, CQ_U8, 2, shape));
  CHECK_STATUS(cq_module_forward1(d, ctx, xi, &y), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "Dropout: input 0 must be float32, got uint8"));
  cq_tensor_free(xi);
  cq_tensor_free(x);
  cq_tensor_free(gy);
  cq_ctx_free(ctx);
  cq_module_free(d);
}

static void test_activation_edges(void) {
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  if (!ctx) return;
  cq_module *m = NULL;
  cq_tensor *y = NULL;
  /* Hardtanh lets NaN through; bounds validated */
  CHECK_OK(cq_hardtanh(&m, -1.0f, 1.0f));
  const int64_t s4[1] = {4};
  cq_tensor *x = tensor_of(1, s4, 0.0f, 0.0f);
  float *xd = x->data;
  xd[0] = NAN;
  xd[1] = -INFINITY;
  xd[2] = INFINITY;
  xd[3] = -0.0f;
  CHECK_OK(cq_module_forward1(m, ctx, x, &y));
  if (y) {
    const float *d = y->data;
    CHECK(isnan(d[0]));
    CHECK_F32_BITS(d[1], -1.0f);
    CHECK_F32_BITS(d[2], 1.0f);
    CHECK_F32_BITS(d[3], -0.0f);
  }
  cq_module_free(m);
  m = NULL;
  CHECK_STATUS(cq_hardtanh(&m, 1.0f, 1.0f), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "max_val"));
  CHECK_STATUS(cq_hardtanh(&m, NAN, 1.0f), CQ_EINVAL);
  CHECK(m == NULL);

  /* Softmax: dims wrap, out-of-range dims fail at forward, 0-d input gives 1 */
  CHECK_OK(cq_softmax(&m, 3));
  const int64_t s23[2] = {2, 3};
  cq_tensor *x2 = tensor_of(2, s23, 0.0f, 1.0f);
  CHECK_STATUS(cq_module_forward1(m, ctx, x2, &y), CQ_ESHAPE);
  CHECK(contains(cq_last_error(),
                 "Dimension out of range (expected to be in range of [-2, 1], but got 3)"));
  cq_module_free(m);
  CHECK_OK(cq_softmax(&m, -1));
  cq_tensor *x0 = NULL;
  CHECK_OK(cq_tensor_create(&x0, CQ_F32, 0, NULL));
  CHECK_OK(cq_module_forward1(m, ctx, x0, &y));
  if (y) CHECK_F32_BITS(*(float *)y->data, 1.0f);
  cq_tensor *xi = NULL;
  CHECK_OK(cq_tensor_create(&xi, CQ_I64, 2, s23));
  CHECK_STATUS(cq_module_forward1(m, ctx, xi, &y), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "Softmax: input must be float32, got int64"));
  cq_module_free(m);
  CHECK_STATUS(cq_softmax(&m, 99), CQ_EINVAL);

  /* the other activations refuse non-float input */
  cq_status (*ctors[3])(cq_module **) = {cq_relu6, cq_sigmoid, cq_tanh};
  for (int i = 0; i < 3; i++) {
    CHECK_OK(ctors[i](&m));
    if (!m) continue;
    CHECK_STATUS(cq_module_forward1(m, ctx, xi, &y), CQ_EINVAL);
    CHECK(contains(cq_last_error(), cq_module_type_name(m)));
    cq_module_free(m);
  }
  /* Sigmoid / Tanh saturate without NaN */
  CHECK_OK(cq_sigmoid(&m));
  xd[0] = -100.0f;
  xd[1] = 100.0f;
  xd[2] = -INFINITY;
  xd[3] = INFINITY;
  CHECK_OK(cq_module_forward1(m, ctx, x, &y));
  if (y) {
    const float *d = y->data;
    CHECK_F32_BITS(d[0], 0.0f);
    CHECK_F32_BITS(d[1], 1.0f);
    CHECK_F32_BITS(d[2], 0.0f);
    CHECK_F32_BITS(d[3], 1.0f);
  }
  cq_module_free(m);
  cq_tensor_free(x);
  cq_tensor_free(x0);
  cq_tensor_free(x2);
  cq_tensor_free(xi);
  cq_ctx_free(ctx);
}

static void test_shape_op_edges(void) {
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  if (!ctx) return;
  cq_module *m = NULL;
  cq_tensor *y = NULL;
  const int64_t s234[3] = {2, 3, 4};
  cq_tensor *x = tensor_of(3, s234, 0.0f, 1.0f);

  /* Flatten: bad dims, 0-d input, integer input keeps its dtype */
  CHECK_OK(cq_flatten(&m, 2, 1));
  CHECK_STATUS(cq_module_forward1(m, ctx, x, &y), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "start_dim cannot come after end_dim"));
  cq_module_free(m);
  CHECK_OK(cq_flatten(&m, 1, 5));
  CHECK_STATUS(cq_module_forward1(m, ctx, x, &y), CQ_ESHAPE);
  CHECK(contains(cq_last_error(),
                 "Dimension out of range (expected to be in range of [-3, 2], but got 5)"));
  cq_module_free(m);
  CHECK_OK(cq_flatten(&m, 0, -1));
  cq_tensor *x0 = NULL;
  CHECK_OK(cq_tensor_create(&x0, CQ_F32, 0, NULL));
  CHECK_OK(cq_module_forward1(m, ctx, x0, &y));
  if (y) CHECK(y->ndim == 1 && y->shape[0] == 1);
  cq_tensor *xi = NULL;
  CHECK_OK(cq_tensor_create(&xi, CQ_I64, 3, s234));
  if (xi) ((int64_t *)xi->data)[5] = 42;
  CHECK_OK(cq_module_forward1(m, ctx, xi, &y));
  if (y) {
    CHECK_INT_EQ(y->dtype, CQ_I64);
    CHECK(y->ndim == 1 && y->shape[0] == 24);
    CHECK_INT_EQ(((int64_t *)y->data)[5], 42);
  }
  cq_module_free(m);
  m = NULL;
  CHECK_STATUS(cq_flatten(&m, 9, -1), CQ_EINVAL);

  /* Identity returns its input, whatever the dtype */
  CHECK_OK(cq_identity(&m));
  CHECK_OK(cq_module_forward1(m, ctx, xi, &y));
  CHECK(y == xi);
  cq_module_free(m);

  /* add / cat: shapes and dtypes */
  CHECK_OK(cq_add(&m));
  const char *op = cq_functional_op(m, NULL);
  CHECK(op && strcmp(op, "add") == 0);
  const int64_t s243[3] = {2, 4, 3};
  cq_tensor *xt = tensor_of(3, s243, 0.0f, 1.0f);
  cq_tensor *ins[3] = {x, xt, x};
  CHECK_STATUS(cq_module_forward(m, ctx, 2, ins, 1, &y), CQ_ESHAPE);
  CHECK(contains(cq_last_error(), "[2, 3, 4] and [2, 4, 3]"));
  CHECK_STATUS(cq_module_forward(m, ctx, 1, ins, 1, &y), CQ_EINVAL);
  CHECK_STATUS(cq_module_forward(m, ctx, 3, ins, 1, &y), CQ_EINVAL);
  cq_tensor *mixed[2] = {x, xi};
  CHECK_STATUS(cq_module_forward(m, ctx, 2, mixed, 1, &y), CQ_EINVAL);
  CHECK(contains(cq_last_error(), "input 1 must be float32"));
  CHECK(cq_module_find(m, "activation_post_process") != NULL);
  cq_module_free(m);

  CHECK_OK(cq_cat(&m, 1));
  int dim = 0;
  op = cq_functional_op(m, &dim);
  CHECK(op && strcmp(op, "cat") == 0 && dim == 1);
  CHECK_STATUS(cq_module_forward(m, ctx, 2, ins, 1, &y), CQ_ESHAPE);
  CHECK(contains(cq_last_error(), "Expected size 4 but got size 3 for tensor number 1"));
  const int64_t s23[2] = {2, 3};
  cq_tensor *x2 = tensor_of(2, s23, 0.0f, 1.0f);
  cq_tensor *nd[2] = {x, x2};
  CHECK_STATUS(cq_module_forward(m, ctx, 2, nd, 1, &y), CQ_ESHAPE);
  CHECK(contains(cq_last_error(), "same number of dimensions: got 3 and 2"));
  cq_tensor *zero[1] = {x0};
  CHECK_STATUS(cq_module_forward(m, ctx, 1, zero, 1, &y), CQ_ESHAPE);
  cq_tensor *three[3] = {x, x, x};
  CHECK_OK(cq_module_forward(m, ctx, 3, three, 1, &y));
  if (y) CHECK(y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 9 && y->shape[2] == 4);
  cq_module_free(m);
  CHECK_STATUS(cq_cat(&m, 8), CQ_EINVAL);
  CHECK(cq_functional_op(NULL, NULL) == NULL);
  cq_module *relu = NULL;
  CHECK_OK(cq_relu(&relu));
  CHECK(cq_functional_op(relu, &dim) == NULL);
  cq_module_free(relu);

  cq_tensor_free(x);
  cq_tensor_free(x0);
  cq_tensor_free(x2);
  cq_tensor_free(xi);
  cq_tensor_free(xt);
  cq_ctx_free(ctx);
}

/* Gradients through add: the same tensor on both sides gets twice the gradient, and a value that
 * reaches an add by two paths receives the sum (the add's two input gradients must not alias). */
static void test_add_gradients(void) {
  cq_ctx *ctx = NULL;
  cq_module *add = NULL, *add2 = NULL, *tanh_m = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  CHECK_OK(cq_add(&add));
  CHECK_OK(cq_add(&add2));
  CHECK_OK(cq_tanh(&tanh_m));
  if (!ctx || !add || !add2 || !tanh_m) return;
  const int64_t s[1] = {5};
  cq_tensor *x = tensor_of(1, s, -1.0f, 0.3f), *g = tensor_of(1, s, 1.0f, 0.5f);
  cq_tensor *y = NULL, *gx = NULL;
  cq_ctx_set_grad(ctx, 1);
  cq_tensor *xx[2] = {x, x};
  CHECK_OK(cq_module_forward(add, ctx, 2, xx, 1, &y));
  CHECK_OK(cq_ctx_backward(ctx, y, g, x, &gx));
  if (gx) {
    for (int i = 0; i < 5; i++) CHECK_F32_BITS(((float *)gx->data)[i], 2.0f * ((float *)g->data)[i]);
  }
  /* s = x + t(x); out = s + t(x)... with t = tanh: d out / dx = 1 + 2 (1 - t^2) */
  cq_ctx_reset(ctx);
  cq_ctx_set_grad(ctx, 1);
  cq_tensor *t = NULL, *s1 = NULL, *out = NULL;
  CHECK_OK(cq_module_forward1(tanh_m, ctx, x, &t));
  cq_tensor *a[2] = {x, t};
  CHECK_OK(cq_module_forward(add, ctx, 2, a, 1, &s1));
  cq_tensor *b[2] = {s1, t};
  CHECK_OK(cq_module_forward(add2, ctx, 2, b, 1, &out));
  if (out) {
    CHECK_OK(cq_ctx_backward(ctx, out, g, x, &gx));
    const float *xd = x->data, *gd = g->data;
    for (int i = 0; gx && i < 5; i++) {
      const double th = tanh((double)xd[i]);
      const double want = gd[i] * (1.0 + 2.0 * (1.0 - th * th));
      CHECK_MSG(fabs(((float *)gx->data)[i] - want) < 1e-5, "grad %d: %g vs %g", i,
                (double)((float *)gx->data)[i], want);
    }
  }
  cq_tensor_free(x);
  cq_tensor_free(g);
  cq_module_free(add);
  cq_module_free(add2);
  cq_module_free(tanh_m);
  cq_ctx_free(ctx);
}

/* Every allocation of construction and of a forward/backward pass failing in turn: a status, no
 * crash, no leak (run under valgrind). */
static void test_alloc_failures(void) {
  const int64_t shape[4] = {3, 2, 3, 2};
  cq_tensor *x = tensor_of(4, shape, -1.0f, 0.2f);
  cq_tensor *g = tensor_of(4, shape, 0.5f, 0.1f);
  if (!x || !g) return;
  int succeeded = 0;
  for (long n = 0; n < 200 && !succeeded; n++) {
    cq_module *kids[6] = {0};
    cq_module *seq = NULL;
    cq_ctx *ctx = NULL;
    cq_debug_fail_alloc_after(n);
    cq_status st = cq_batchnorm2d(&kids[0], 2);
    if (st == CQ_OK) st = cq_relu6(&kids[1]);
    if (st == CQ_OK) st = cq_dropout(&kids[2], 0.5f);
    if (st == CQ_OK) st = cq_flatten(&kids[3], 1, -1);
    if (st == CQ_OK) st = cq_softmax(&kids[4], 1);
    if (st == CQ_OK) st = cq_sigmoid(&kids[5]);
    if (st == CQ_OK) {
      st = cq_sequential(&seq, 6, kids);
    } else {
      for (int i = 0; i < 6; i++) cq_module_free(kids[i]);
    }
    if (st == CQ_OK) st = cq_ctx_create(&ctx);
    cq_tensor *y = NULL, *gx = NULL;
    if (st == CQ_OK) {
      cq_ctx_set_grad(ctx, 1);
      st = cq_module_forward1(seq, ctx, x, &y);
    }
    if (st == CQ_OK) {
      cq_tensor *gy = NULL;
      st = cq_tensor_create(&gy, CQ_F32, y->ndim, y->shape);
      if (st == CQ_OK) st = cq_ctx_backward(ctx, y, gy, x, &gx);
      cq_tensor_free(gy);
    }
    cq_debug_fail_alloc_after(-1);
    CHECK(st == CQ_OK || st == CQ_ENOMEM);
    if (st == CQ_OK) succeeded = 1;
    cq_ctx_free(ctx);
    cq_module_free(seq);
  }
  CHECK(succeeded);
  cq_tensor_free(x);
  cq_tensor_free(g);
}

int main(void) {
  test_golden();
  test_reprs();
  test_batchnorm_state();
  test_batchnorm_modes();
  test_dropout();
  test_activation_edges();
  test_shape_op_edges();
  test_add_gradients();
  test_alloc_failures();
  return check_summary("test_nn_layers");
}

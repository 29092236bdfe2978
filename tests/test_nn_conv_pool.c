/* Float Conv1d, Conv2d, MaxPool2d, AvgPool2d and AdaptiveAvgPool2d against PyTorch 1.13.
 *
 * Golden cases (tests/data/golden/nn_conv_pool/cases.txt, from tools/golden/gen_nn_conv_pool.py):
 * each builds the module from the recorded options, checks its repr against str(module), loads
 * PyTorch's weights into it, runs forward and backward through a cq_ctx and compares the output,
 * grad_input and the parameter gradients. Tolerance: |got - want| <= 1e-4 * max(|want|, 0.01 *
 * max|want|) per element: relative, with a floor of 1% of the tensor's largest magnitude for
 * elements that cancel to almost nothing (there PyTorch's own float32 result is ~6e-5 of the floor
 * away from the float64 truth, so a tighter floor would measure rounding, not correctness; a wrong
 * or missing term is off by far more). MaxPool2d's output and grad_input are compared bit for bit:
 * its arithmetic is exact. The largest errors seen are printed.
 *
 * Direct checks: default initialisation bounds and parameter order, reprs of defaults and inside a
 * Sequential, gradient accumulation over two backward passes, batch 0, unbatched inputs, and bad
 * options / inputs (status and message, nothing aborts), and allocation failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cquant/modules.h"
#include "cquant/nn.h"
#include "cquant/npy.h"
#include "cquant/status.h"
#include "cquant/tensor.h"
#include "support/check.h"
#include "support/golden.h"

#define GOLDEN_FILE CQ_TEST_DATA_DIR "/golden/nn_conv_pool/cases.txt"

#define REL_TOL 1e-4
#define FLOOR_FRACTION 1e-2

/* Largest error per module kind and quantity, for the summary. */
typedef struct err_stat {
  const char *kind;
  double fwd, gin, gparam;
  int cases, exact;
} err_stat;

static err_stat stats[] = {
    {"Conv2d", 0, 0, 0, 0, 0},    {"Conv1d", 0, 0, 0, 0, 0},
    {"MaxPool2d", 0, 0, 0, 0, 1}, {"AvgPool2d", 0, 0, 0, 0, 0},
    {"AdaptiveAvgPool2d", 0, 0, 0, 0, 0},
};

static err_stat *stat_for(const char *kind) {
  for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++) {
    if (strcmp(stats[i].kind, kind) == 0) return &stats[i];
  }
  return NULL;
}

/* --- reading cases ------------------------------------------------------------------------------- */

static const char *need(const golden_case *c, const char *key) {
  const char *v = golden_get(c, key);
  CHECK_MSG(v != NULL, "case %s: missing key '%s'", c->name, key);
  return v;
}

static int64_t get_int(const golden_case *c, const char *key) {
  const char *v = need(c, key);
  return v ? strtoll(v, NULL, 10) : 0;
}

/* Reads up to `max` integers of `key` into out; returns the count. */
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

static cq_tensor *load_npy(const golden_file *g, const golden_case *c, const char *key) {
  const char *v = need(c, key);
  if (!v) return NULL;
  char path[1024];
  cq_tensor *t = NULL;
  cq_status st = cq_npy_load(golden_path(g, v, path, sizeof path), &t);
  CHECK_MSG(st == CQ_OK, "case %s: loading %s: %s", c->name, key, cq_last_error());
  return st == CQ_OK ? t : NULL;
}

/* Undoes the \n and \\ escapes of a repr value (in place). */
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

/* --- building modules ---------------------------------------------------------------------------- */

static cq_status build_module(const golden_case *c, const char *kind, cq_module **m) {
  *m = NULL;
  if (strcmp(kind, "Conv2d") == 0 || strcmp(kind, "Conv1d") == 0) {
    const int dims = kind[4] == '2' ? 2 : 1;
    cq_conv_options o = cq_conv_defaults(get_int(c, "in_channels"), get_int(c, "out_channels"), 1,
                                         1);
    CHECK_INT_EQ(get_ints(c, "kernel_size", o.kernel_size, 2), dims);
    CHECK_INT_EQ(get_ints(c, "stride", o.stride, 2), dims);
    CHECK_INT_EQ(get_ints(c, "padding", o.padding, 2), dims);
    CHECK_INT_EQ(get_ints(c, "dilation", o.dilation, 2), dims);
    o.groups = get_int(c, "groups");
    o.bias = (int)get_int(c, "use_bias");
    return dims == 2 ? cq_conv2d(m, &o) : cq_conv1d(m, &o);
  }
  if (strcmp(kind, "AdaptiveAvgPool2d") == 0) {
    int64_t out[2] = {0, 0};
    get_ints(c, "output_size", out, 2);
    return cq_adaptive_avgpool2d(m, out[0], out[1]);
  }
  cq_pool_options o = cq_pool_defaults(1, 1);
  get_ints(c, "kernel_size", o.kernel_size, 2);
  get_ints(c, "stride", o.stride, 2);
  get_ints(c, "padding", o.padding, 2);
  o.ceil_mode = (int)get_int(c, "ceil_mode");
  if (strcmp(kind, "MaxPool2d") == 0) {
    get_ints(c, "dilation", o.dilation, 2);
    return cq_maxpool2d(m, &o);
  }
  o.count_include_pad = (int)get_int(c, "count_include_pad");
  o.divisor_override = get_int(c, "divisor_override");
  return cq_avgpool2d(m, &o);
}

/* Copies PyTorch's parameter `name` into the module (shapes must agree). */
static void load_parameter(const golden_file *g, const golden_case *c, cq_module *m,
                           const char *name) {
  cq_named_tensor *nt = cq_module_find_tensor(m, name);
  CHECK_MSG(nt != NULL, "case %s: module has no '%s': %s", c->name, name, cq_last_error());
  cq_tensor *t = load_npy(g, c, name);
  if (nt && t) {
    int same = nt->tensor->ndim == t->ndim;
    for (int i = 0; same && i < t->ndim; i++) same = nt->tensor->shape[i] == t->shape[i];
    char a[128], b[128];
    CHECK_MSG(same, "case %s: %s shape %s, PyTorch has %s", c->name, name,
              cq_shape_str(nt->tensor->ndim, nt->tensor->shape, a, sizeof a),
              cq_shape_str(t->ndim, t->shape, b, sizeof b));
    if (same) memcpy(nt->tensor->data, t->data, cq_tensor_nbytes(t));
  }
  cq_tensor_free(t);
}

/* --- comparing ----------------------------------------------------------------------------------- */

/* Compares got with want; returns the largest scaled error (0 when exact is requested and met). */
static double compare(const char *case_name, const char *what, const cq_tensor *got,
                      const cq_tensor *want, int exact) {
  char a[128], b[128];
  int same = got && want && got->ndim == want->ndim;
  for (int i = 0; same && i < got->ndim; i++) same = got->shape[i] == want->shape[i];
  CHECK_MSG(same, "case %s: %s shape %s, want %s", case_name, what,
            got ? cq_shape_str(got->ndim, got->shape, a, sizeof a) : "(none)",
            want ? cq_shape_str(want->ndim, want->shape, b, sizeof b) : "(none)");
  if (!same) return INFINITY;
  const float *g = got->data, *w = want->data;
  const int64_t n = cq_tensor_numel(want);
  double maxabs = 0.0;
  for (int64_t i = 0; i < n; i++) {
    if (isfinite(w[i]) && fabs(w[i]) > maxabs) maxabs = fabs(w[i]);
  }
  const double floor = FLOOR_FRACTION * maxabs;
  double worst = 0.0;
  int64_t bad = 0, first_bad = -1;
  for (int64_t i = 0; i < n; i++) {
    double err;
    if (exact || !isfinite(w[i])) {
      err = check_f32_bits(g[i]) == check_f32_bits(w[i]) ? 0.0 : INFINITY;
      if (!exact && isnan(w[i]) && isnan(g[i])) err = 0.0;
    } else {
      const double scale = fabs(w[i]) > floor ? fabs(w[i]) : floor;
      err = g[i] == w[i] ? 0.0 : fabs((double)g[i] - (double)w[i]) / (scale > 0 ? scale : 1.0);
      if (err <= REL_TOL) {
        if (err > worst) worst = err;
        continue;
      }
    }
    if (err > 0.0) {
      if (first_bad < 0) first_bad = i;
      bad++;
    }
  }
  CHECK_MSG(bad == 0, "case %s: %s: %lld of %lld elements off (first at %lld: got %.9g, want %.9g)",
            case_name, what, (long long)bad, (long long)n, (long long)first_bad,
            first_bad >= 0 ? g[first_bad] : 0.0, first_bad >= 0 ? w[first_bad] : 0.0);
  return bad ? INFINITY : worst;
}

static void run_case(const golden_file *g, const golden_case *c) {
  const char *kind = need(c, "module");
  err_stat *es = kind ? stat_for(kind) : NULL;
  CHECK_MSG(es != NULL, "case %s: unknown module '%s'", c->name, kind ? kind : "");
  if (!es) return;
  es->cases++;
  cq_module *m = NULL;
  cq_status st = build_module(c, kind, &m);
  CHECK_MSG(st == CQ_OK, "case %s: building the module: %s", c->name, cq_last_error());
  if (st != CQ_OK) return;

  const char *want_repr = need(c, "repr");
  char *repr = cq_module_repr_alloc(m);
  if (want_repr && repr) {
    char *w = malloc(strlen(want_repr) + 1);
    if (w) {
      strcpy(w, want_repr);
      unescape(w);
      CHECK_MSG(strcmp(repr, w) == 0, "case %s: repr\n  got:  %s\n  want: %s", c->name, repr, w);
    }
    free(w);
  }
  free(repr);

  const int nparams = cq_module_num_tensors(m);
  for (int i = 0; i < nparams; i++) load_parameter(g, c, m, cq_module_tensor(m, i)->name);
  CHECK_INT_EQ(nparams, (golden_get(c, "weight") ? 1 : 0) + (golden_get(c, "bias") ? 1 : 0));

  cq_tensor *x = load_npy(g, c, "input");
  cq_tensor *want_y = load_npy(g, c, "output");
  cq_tensor *gy = load_npy(g, c, "grad_output");
  cq_tensor *want_gx = load_npy(g, c, "grad_input");
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  if (x && want_y && gy && want_gx && ctx) {
    cq_ctx_set_grad(ctx, 1);
    cq_tensor *y = NULL, *gx = NULL;
    st = cq_module_forward1(m, ctx, x, &y);
    CHECK_MSG(st == CQ_OK, "case %s: forward: %s", c->name, cq_last_error());
    if (st == CQ_OK) {
      double e = compare(c->name, "output", y, want_y, es->exact);
      if (e > es->fwd) es->fwd = e;
      st = cq_ctx_backward(ctx, y, gy, x, &gx);
      CHECK_MSG(st == CQ_OK, "case %s: backward: %s", c->name, cq_last_error());
    }
    if (st == CQ_OK) {
      double e = compare(c->name, "grad_input", gx, want_gx, es->exact);
      if (e > es->gin) es->gin = e;
      for (int i = 0; i < nparams; i++) {
        cq_named_tensor *nt = cq_module_tensor(m, i);
        char key[64];
        snprintf(key, sizeof key, "grad_%s", nt->name);
        cq_tensor *want = load_npy(g, c, key);
        e = compare(c->name, key, nt->grad, want, 0);
        if (e > es->gparam) es->gparam = e;
        cq_tensor_free(want);
      }
    }
  }
  cq_ctx_free(ctx);
  cq_tensor_free(x);
  cq_tensor_free(want_y);
  cq_tensor_free(gy);
  cq_tensor_free(want_gx);
  cq_module_free(m);
}

static void test_golden(void) {
  golden_file g;
  CHECK_MSG(golden_load(GOLDEN_FILE, &g) == 0, "cannot load %s", GOLDEN_FILE);
  if (!g.cases) return;
  for (int i = 0; i < g.count; i++) run_case(&g, &g.cases[i]);
  CHECK(g.count >= 40);
  printf("golden: %d cases from %s\n", g.count, GOLDEN_FILE);
  for (size_t i = 0; i < sizeof stats / sizeof stats[0]; i++) {
    const err_stat *s = &stats[i];
    printf("  %-18s %2d cases, max scaled error: output %.3g, grad_input %.3g, grad_params %.3g%s\n",
           s->kind, s->cases, s->fwd, s->gin, s->gparam, s->exact ? " (output/grad_input bit-exact)" : "");
    CHECK_MSG(s->cases > 0, "no golden cases for %s", s->kind);
  }
  golden_free(&g);
}

/* --- direct checks ------------------------------------------------------------------------------- */

static void check_repr(cq_module *m, const char *want) {
  char *got = cq_module_repr_alloc(m);
  CHECK(got != NULL);
  if (got) CHECK_STR_EQ(got, want);
  free(got);
}

static void test_init_and_params(void) {
  cq_manual_seed(7);
  cq_conv_options o = cq_conv_defaults(4, 6, 3, 3);
  o.groups = 2;
  cq_module *m = NULL;
  CHECK_OK(cq_conv2d(&m, &o));
  if (!m) return;
  CHECK_STR_EQ(cq_module_type_name(m), "Conv2d");
  CHECK_INT_EQ(cq_module_num_tensors(m), 2);
  cq_named_tensor *w = cq_module_tensor(m, 0), *b = cq_module_tensor(m, 1);
  CHECK_STR_EQ(w->name, "weight");
  CHECK_STR_EQ(b->name, "bias");
  CHECK(w->is_parameter && b->is_parameter);
  CHECK_INT_EQ(w->tensor->ndim, 4);
  CHECK_INT_EQ(w->tensor->shape[0], 6);
  CHECK_INT_EQ(w->tensor->shape[1], 2);
  CHECK_INT_EQ(w->tensor->shape[2], 3);
  CHECK_INT_EQ(w->tensor->shape[3], 3);
  CHECK_INT_EQ(b->tensor->ndim, 1);
  CHECK_INT_EQ(b->tensor->shape[0], 6);
  /* kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = 4/2 * 3 * 3 = 18. */
  const float bound = (float)(1.0 / sqrt(18.0));
  float wmax = 0.0f, bmax = 0.0f;
  const float *wd = w->tensor->data, *bd = b->tensor->data;
  for (int64_t i = 0; i < cq_tensor_numel(w->tensor); i++) wmax = fmaxf(wmax, fabsf(wd[i]));
  for (int64_t i = 0; i < 6; i++) bmax = fmaxf(bmax, fabsf(bd[i]));
  CHECK(wmax <= bound && wmax > 0.8f * bound);
  CHECK(bmax <= bound && bmax > 0.0f);
  CHECK(cq_module_find_tensor(m, "weight") == w);
  cq_module_free(m);

  o = cq_conv_defaults(3, 5, 4, 99); /* Conv1d reads [0] only */
  o.bias = 0;
  CHECK_OK(cq_conv1d(&m, &o));
  if (!m) return;
  CHECK_INT_EQ(cq_module_num_tensors(m), 1);
  w = cq_module_tensor(m, 0);
  CHECK_INT_EQ(w->tensor->ndim, 3);
  CHECK_INT_EQ(w->tensor->shape[2], 4);
  check_repr(m, "Conv1d(3, 5, kernel_size=(4,), stride=(1,), bias=False)");
  cq_module_free(m);

  /* Pools have no parameters. */
  cq_pool_options po = cq_pool_defaults(2, 2);
  CHECK_OK(cq_maxpool2d(&m, &po));
  if (m) CHECK_INT_EQ(cq_module_num_tensors(m), 0);
  cq_module_free(m);
}

static void test_reprs(void) {
  cq_module *m = NULL;
  cq_conv_options o = cq_conv_defaults(2, 64, 3, 3);
  CHECK_OK(cq_conv2d(&m, &o));
  if (m) check_repr(m, "Conv2d(2, 64, kernel_size=(3, 3), stride=(1, 1))");
  cq_module *relu = NULL;
  CHECK_OK(cq_relu(&relu));
  cq_module *children[2] = {m, relu};
  cq_module *seq = NULL;
  if (m && relu) {
    CHECK_OK(cq_sequential(&seq, 2, children));
    if (seq) {
      check_repr(seq, "Sequential(\n  (0): Conv2d(2, 64, kernel_size=(3, 3), stride=(1, 1))\n"
                      "  (1): ReLU()\n)");
    }
    cq_module_free(seq);
  } else {
    cq_module_free(m);
    cq_module_free(relu);
  }

  cq_pool_options po = cq_pool_defaults(2, 2);
  CHECK_OK(cq_maxpool2d(&m, &po));
  if (m) check_repr(m, "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  cq_module_free(m);
  CHECK_OK(cq_avgpool2d(&m, &po));
  if (m) check_repr(m, "AvgPool2d(kernel_size=2, stride=2, padding=0)");
  cq_module_free(m);
  po = cq_pool_defaults(3, 2);
  po.stride[0] = 1;
  po.stride[1] = 1;
  po.padding[0] = 1;
  po.ceil_mode = 1;
  CHECK_OK(cq_maxpool2d(&m, &po));
  if (m) {
    check_repr(m, "MaxPool2d(kernel_size=(3, 2), stride=1, padding=(1, 0), dilation=1, "
                  "ceil_mode=True)");
  }
  cq_module_free(m);
  CHECK_OK(cq_adaptive_avgpool2d(&m, 1, 1));
  if (m) check_repr(m, "AdaptiveAvgPool2d(output_size=(1, 1))");
  cq_module_free(m);
}

/* Fills t with a deterministic pattern. */
static void fill(cq_tensor *t, float scale) {
  float *d = t->data;
  for (int64_t i = 0; i < cq_tensor_numel(t); i++) d[i] = scale * (float)((i * 37 % 23) - 11);
}

static void test_accumulation_and_batches(void) {
  cq_manual_seed(1);
  cq_conv_options o = cq_conv_defaults(3, 4, 3, 2);
  o.padding[0] = 1;
  cq_module *m = NULL;
  CHECK_OK(cq_conv2d(&m, &o));
  if (!m) return;
  cq_ctx *ctx = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  if (!ctx) {
    cq_module_free(m);
    return;
  }
  cq_ctx_set_grad(ctx, 1);
  int64_t shape[4] = {2, 3, 5, 4};
  cq_tensor *x = NULL, *y = NULL, *gy = NULL, *gx = NULL;
  CHECK_OK(cq_tensor_create(&x, CQ_F32, 4, shape));
  fill(x, 0.25f);
  /* Two forward/backward rounds without zeroing: parameter gradients add up, as in PyTorch. */
  float first[2] = {0, 0};
  for (int round = 0; round < 2 && x; round++) {
    CHECK_OK(cq_module_forward1(m, ctx, x, &y));
    if (!y) break;
    CHECK_INT_EQ(y->shape[2], 5);
    CHECK_INT_EQ(y->shape[3], 3);
    if (!gy) {
      CHECK_OK(cq_tensor_create(&gy, CQ_F32, y->ndim, y->shape));
      fill(gy, 0.5f);
    }
    CHECK_OK(cq_ctx_backward(ctx, y, gy, x, &gx));
    const float *gw = cq_module_tensor(m, 0)->grad->data, *gb = cq_module_tensor(m, 1)->grad->data;
    if (round == 0) {
      first[0] = gw[5];
      first[1] = gb[1];
    } else {
      CHECK_F32_BITS(gw[5], 2.0f * first[0]);
      CHECK_F32_BITS(gb[1], 2.0f * first[1]);
    }
    cq_ctx_reset(ctx);
  }
  cq_module_zero_grad(m);
  CHECK_F32_BITS(((const float *)cq_module_tensor(m, 0)->grad->data)[5], 0.0f);

  /* Batch 0 gives an empty output of the right shape and zero gradients. */
  cq_tensor *x0 = NULL;
  shape[0] = 0;
  CHECK_OK(cq_tensor_create(&x0, CQ_F32, 4, shape));
  if (x0) {
    y = NULL;
    CHECK_OK(cq_module_forward1(m, ctx, x0, &y));
    if (y) {
      CHECK_INT_EQ(y->ndim, 4);
      CHECK_INT_EQ(y->shape[0], 0);
      CHECK_INT_EQ(y->shape[1], 4);
    }
  }
  cq_ctx_reset(ctx);
  cq_tensor_free(x0);
  cq_tensor_free(x);
  cq_tensor_free(gy);
  cq_ctx_free(ctx);
  cq_module_free(m);
}

/* Runs m on a tensor of `shape` and `dtype`, expecting `want` and a message mentioning `needle`. */
static void expect_forward_error(cq_module *m, cq_dtype dtype, int ndim, const int64_t *shape,
                                 cq_status want, const char *needle) {
  cq_ctx *ctx = NULL;
  cq_tensor *x = NULL, *y = NULL;
  CHECK_OK(cq_ctx_create(&ctx));
  CHECK_OK(cq_tensor_create(&x, dtype, ndim, shape));
  if (ctx && x) {
    cq_ctx_set_grad(ctx, 1);
    CHECK_STATUS(cq_module_forward1(m, ctx, x, &y), want);
    CHECK(y == NULL);
    const char *msg = cq_last_error();
    CHECK_MSG(strstr(msg, cq_module_type_name(m)) && strstr(msg, needle),
              "message \"%s\" should name %s and contain \"%s\"", msg, cq_module_type_name(m),
              needle);
  }
  cq_tensor_free(x);
  cq_ctx_free(ctx);
}

static void expect_create_error(cq_status st, const char *needle) {
  CHECK_STATUS(st, CQ_EINVAL);
  CHECK_MSG(strstr(cq_last_error(), needle) != NULL, "message \"%s\" should contain \"%s\"",
            cq_last_error(), needle);
}

static void test_bad_options(void) {
  cq_module *m = (cq_module *)&m; /* must be reset to NULL on failure */
  cq_conv_options o = cq_conv_defaults(4, 6, 3, 3);
  o.groups = 0;
  expect_create_error(cq_conv2d(&m, &o), "groups");
  CHECK(m == NULL);
  o.groups = 3;
  expect_create_error(cq_conv2d(&m, &o), "in_channels 4 must be divisible by groups 3");
  o = cq_conv_defaults(4, 6, 3, 3);
  o.groups = 4;
  expect_create_error(cq_conv2d(&m, &o), "out_channels 6 must be divisible by groups 4");
  o = cq_conv_defaults(4, 6, 3, 0);
  expect_create_error(cq_conv2d(&m, &o), "kernel_size[1]");
  o = cq_conv_defaults(4, 6, 3, 3);
  o.stride[0] = 0;
  expect_create_error(cq_conv2d(&m, &o), "stride[0]");
  o = cq_conv_defaults(4, 6, 3, 3);
  o.padding[1] = -1;
  expect_create_error(cq_conv2d(&m, &o), "padding[1]");
  o = cq_conv_defaults(4, 6, 3, 3);
  o.dilation[0] = 0;
  expect_create_error(cq_conv1d(&m, &o), "Conv1d: dilation");
  o = cq_conv_defaults(0, 6, 3, 3);
  expect_create_error(cq_conv2d(&m, &o), "in_channels 0");
  expect_create_error(cq_conv2d(&m, NULL), "NULL");

  cq_pool_options p = cq_pool_defaults(0, 2);
  expect_create_error(cq_maxpool2d(&m, &p), "kernel_size[0]");
  p = cq_pool_defaults(3, 3);
  p.padding[0] = 2;
  expect_create_error(cq_maxpool2d(&m, &p), "at most half");
  p = cq_pool_defaults(3, 3);
  p.stride[0] = 2;
  expect_create_error(cq_avgpool2d(&m, &p), "both 0");
  p = cq_pool_defaults(3, 3);
  p.dilation[1] = 2;
  expect_create_error(cq_avgpool2d(&m, &p), "AvgPool2d: has no dilation");
  p = cq_pool_defaults(3, 3);
  p.dilation[1] = 0;
  expect_create_error(cq_maxpool2d(&m, &p), "dilation[1]");
  expect_create_error(cq_adaptive_avgpool2d(&m, 0, 2), "output_size");
  CHECK(m == NULL);
}

static void test_bad_inputs(void) {
  cq_module *conv = NULL, *conv1 = NULL, *maxp = NULL, *avgp = NULL, *adap = NULL;
  cq_conv_options o = cq_conv_defaults(2, 4, 3, 3);
  CHECK_OK(cq_conv2d(&conv, &o));
  CHECK_OK(cq_conv1d(&conv1, &o));
  cq_pool_options p = cq_pool_defaults(3, 3);
  CHECK_OK(cq_maxpool2d(&maxp, &p));
  CHECK_OK(cq_avgpool2d(&avgp, &p));
  CHECK_OK(cq_adaptive_avgpool2d(&adap, 2, 2));
  if (!conv || !conv1 || !maxp || !avgp || !adap) goto done;

  const int64_t wrong_channels[4] = {1, 3, 8, 8};
  expect_forward_error(conv, CQ_F32, 4, wrong_channels, CQ_ESHAPE, "[1, 3, 8, 8]");
  const int64_t flat[2] = {2, 8};
  expect_forward_error(conv, CQ_F32, 2, flat, CQ_ESHAPE, "expected 3D (unbatched) or 4D");
  const int64_t good[4] = {1, 2, 8, 8};
  expect_forward_error(conv, CQ_F64, 4, good, CQ_EINVAL, "float32");
  const int64_t tiny[4] = {1, 2, 2, 8};
  expect_forward_error(conv, CQ_F32, 4, tiny, CQ_ESHAPE, "padded input size");
  const int64_t empty[4] = {1, 2, 0, 8};
  expect_forward_error(conv, CQ_F32, 4, empty, CQ_ESHAPE, "empty");
  expect_forward_error(conv1, CQ_F32, 4, good, CQ_ESHAPE, "expected 2D (unbatched) or 3D");
  const int64_t short_seq[3] = {1, 2, 2};
  expect_forward_error(conv1, CQ_F32, 3, short_seq, CQ_ESHAPE, "padded input size");

  expect_forward_error(maxp, CQ_F32, 2, flat, CQ_ESHAPE, "[2, 8]");
  expect_forward_error(maxp, CQ_F32, 4, tiny, CQ_ESHAPE, "too small");
  expect_forward_error(avgp, CQ_S8, 4, good, CQ_EINVAL, "float32");
  expect_forward_error(avgp, CQ_F32, 4, empty, CQ_ESHAPE, "non-zero");
  expect_forward_error(adap, CQ_F32, 2, flat, CQ_ESHAPE, "[2, 8]");
  expect_forward_error(adap, CQ_F32, 4, empty, CQ_ESHAPE, "non-zero");

  /* Two inputs where one is expected. */
  {
    cq_ctx *ctx = NULL;
    cq_tensor *x = NULL, *y = NULL;
    CHECK_OK(cq_ctx_create(&ctx));
    CHECK_OK(cq_tensor_create(&x, CQ_F32, 4, good));
    if (ctx && x) {
      cq_tensor *two[2] = {x, x};
      CHECK_STATUS(cq_module_forward(conv, ctx, 2, two, 1, &y), CQ_EINVAL);
    }
    cq_tensor_free(x);
    cq_ctx_free(ctx);
  }
done:
  cq_module_free(conv);
  cq_module_free(conv1);
  cq_module_free(maxp);
  cq_module_free(avgp);
  cq_module_free(adap);
}

/* Construction, forward and backward with the Nth allocation failing: a status, never a crash or a
 * leak (valgrind). */
static cq_status one_run(int which) {
  cq_module *m = NULL;
  cq_ctx *ctx = NULL;
  cq_tensor *x = NULL, *gy = NULL;
  cq_status st;
  if (which == 0) {
    cq_conv_options o = cq_conv_defaults(2, 4, 3, 3);
    o.groups = 2;
    o.padding[0] = o.padding[1] = 1;
    st = cq_conv2d(&m, &o);
  } else {
    cq_pool_options p = cq_pool_defaults(2, 2);
    st = cq_maxpool2d(&m, &p);
  }
  if (st == CQ_OK) st = cq_ctx_create(&ctx);
  const int64_t shape[4] = {2, 2, 5, 5};
  if (st == CQ_OK) st = cq_tensor_create(&x, CQ_F32, 4, shape);
  cq_tensor *y = NULL, *gx = NULL;
  if (st == CQ_OK) {
    fill(x, 0.1f);
    cq_ctx_set_grad(ctx, 1);
    st = cq_module_forward1(m, ctx, x, &y);
  }
  if (st == CQ_OK) st = cq_tensor_create(&gy, CQ_F32, y->ndim, y->shape);
  if (st == CQ_OK) {
    fill(gy, 1.0f);
    st = cq_ctx_backward(ctx, y, gy, x, &gx);
  }
  if (st == CQ_OK && !gx) st = CQ_ESTATE;
  cq_tensor_free(gy);
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(m);
  return st;
}

static void test_alloc_failures(void) {
  for (int which = 0; which < 2; which++) {
    int succeeded = 0;
    for (long n = 0; n < 200 && !succeeded; n++) {
      cq_debug_fail_alloc_after(n);
      cq_status st = one_run(which);
      cq_debug_fail_alloc_after(-1);
      if (st == CQ_OK) {
        succeeded = 1;
      } else {
        CHECK_MSG(st == CQ_ENOMEM, "allocation failure %ld gave %s (%s)", n, cq_status_str(st),
                  cq_last_error());
      }
    }
    CHECK_MSG(succeeded, "run %d never succeeded within 200 allocations", which);
  }
}

int main(void) {
  test_golden();
  test_init_and_params();
  test_reprs();
  test_accumulation_and_batches();
  test_bad_options();
  test_bad_inputs();
  test_alloc_failures();
  return check_summary("test_nn_conv_pool");
}

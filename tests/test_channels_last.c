/* Channels-last activations inside a model run: a quantized conv whose consumer is another conv
 * writes its output channels-last (cq_tensor.channels_last) and the next conv reads it as it is;
 * modules that do not read that layout get contiguous copies from cq_module_forward; every tensor
 * a caller receives (the result of the outermost forward, the outputs a graph visitor sees) is
 * contiguous.
 *
 * References: the same converted model with channels-last turned off (cq_debug_channels_last(0):
 * every conv writes NCHW, as the golden tests check against PyTorch), and the model run one node at
 * a time from the outside (every node then gets and gives contiguous tensors). All three runs must
 * give the same bytes. The layout conversion itself is checked against a naive loop. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "cquant/cquant.h"
#include "kernels/conv/qconv.h"
#include "nn/module_impl.h"
#include "support/build.h"
#include "support/check.h"

#define OK(expr) CHECK_MSG((expr) == CQ_OK, "%s: %s", #expr, cq_last_error())

static cq_tensor *ramp(int64_t n, int64_t c, int64_t h, int64_t w, float step) {
  int64_t shape[4] = {n, c, h, w};
  cq_tensor *t = NULL;
  OK(cq_tensor_create(&t, CQ_F32, 4, shape));
  float *p = t->data;
  for (int64_t i = 0; i < n * c * h * w; i++) p[i] = sinf((float)i * step) + 0.3f * cosf((float)i);
  return t;
}

static cq_module *conv(int64_t in, int64_t out, int64_t k, int64_t pad, int64_t stride,
                       int64_t groups) {
  cq_conv_options o = cq_conv_defaults(in, out, k, k);
  o.padding[0] = o.padding[1] = pad;
  o.stride[0] = o.stride[1] = stride;
  o.groups = groups;
  cq_module *m = NULL;
  return tb_made(cq_conv2d(&m, &o), &m);
}

static cq_module *maxpool(int64_t k) {
  cq_pool_options o = cq_pool_defaults(k, k);
  cq_module *m = NULL;
  return tb_made(cq_maxpool2d(&m, &o), &m);
}

static cq_module *flatten(void) {
  cq_module *m = NULL;
  return tb_made(cq_flatten(&m, 1, -1), &m);
}

/* conv chains with every conv path (small-C implicit, implicit, depthwise, strided im2col), a
 * module that does not read channels-last (max pool) between convs, and a flatten + linear head */
static cq_module *model(int variant) {
  cq_manual_seed(11 + (uint64_t)variant);
  if (variant == 0) {
    /* the depthwise conv has 64 channels: on AVX-512 VNNI it reads channels-last in place */
    cq_module *c[] = {conv(3, 16, 3, 1, 1, 1), tb_simple(cq_relu), conv(16, 64, 3, 1, 1, 1),
                      tb_simple(cq_relu), conv(64, 64, 3, 1, 1, 64), conv(64, 24, 1, 0, 1, 1),
                      conv(24, 16, 3, 1, 2, 1)};
    return tb_seq(7, c);
  }
  if (variant == 3) {
    /* MobileNet-style blocks: the elementwise ReLU6 / Hardtanh between the convs keep their
     * input's layout, so the depthwise convs (32 channels: two positions per vector; 64) read
     * channels-last too */
    cq_module *ht = NULL;
    OK(cq_hardtanh(&ht, -1.0f, 1.5f));
    cq_module *c[] = {conv(3, 32, 3, 1, 1, 1), tb_simple(cq_relu6), conv(32, 32, 3, 1, 1, 32),
                      ht, conv(32, 64, 1, 0, 1, 1), tb_simple(cq_relu6),
                      conv(64, 64, 3, 1, 2, 64), tb_simple(cq_relu6), conv(64, 16, 1, 0, 1, 1)};
    return tb_seq(9, c);
  }
  cq_module *c[] = {conv(3, 8, 3, 1, 1, 1), tb_simple(cq_relu), maxpool(2),
                    conv(8, 16, 3, 0, 1, 1), tb_simple(cq_relu), flatten(),
                    tb_linear(16 * 4 * 4, 10)};
  return tb_seq(7, c);
}

/* a residual block: conv_a -> relu -> conv_b; add(conv_b, relu) -> conv_c: the add's inputs and
 * output stay channels-last (QFunctional add reads that layout when its consumer does) */
static cq_module *residual(void) {
  cq_manual_seed(21);
  cq_module *g = NULL, *add = NULL;
  OK(cq_graph(&g, 1));
  OK(cq_add(&add));
  int x = 0, a, r, b, s, y;
  OK(cq_graph_add_node(g, "conv_a", conv(3, 8, 3, 1, 1, 1), 1, &x, 1, &a));
  OK(cq_graph_add_node(g, "relu", tb_simple(cq_relu), 1, &a, 1, &r));
  OK(cq_graph_add_node(g, "conv_b", conv(8, 8, 3, 1, 1, 1), 1, &r, 1, &b));
  int ai[2] = {b, r};
  OK(cq_graph_add_node(g, "add", add, 2, ai, 1, &s));
  OK(cq_graph_add_node(g, "conv_c", conv(8, 4, 1, 0, 1, 1), 1, &s, 1, &y));
  OK(cq_graph_set_outputs(g, 1, &y));
  return g;
}

/* Calibrates on inputs of `channels` channels and converts. */
static void quantize_with(cq_module *g, cq_backend engine, int64_t channels) {
  cq_graph_quant_options o = cq_graph_quant_defaults();
  o.backend = engine;
  OK(cq_prepare_graph(g, &o));
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  for (int i = 0; i < 3; i++) {
    cq_tensor *x = ramp(2, channels, 12, 12, 0.11f + 0.07f * (float)i), *y = NULL;
    OK(cq_module_forward1(g, ctx, x, &y));
    cq_ctx_reset(ctx);
    cq_tensor_free(x);
  }
  OK(cq_convert_graph(g, &o));
  cq_ctx_free(ctx);
}

static void quantize(cq_module *g, cq_backend engine) { quantize_with(g, engine, 3); }

typedef struct seen {
  int tensors, channels_last;
} seen;

static cq_status visit(const char *name, cq_module *m, int nout, cq_tensor *const *out, void *user) {
  (void)name;
  (void)m;
  seen *s = user;
  for (int i = 0; i < nout; i++) {
    s->tensors++;
    s->channels_last += out[i]->channels_last;
  }
  return CQ_OK;
}

static int same_bytes(const cq_tensor *a, const cq_tensor *b) {
  return a && b && a->dtype == b->dtype && a->ndim == b->ndim &&
         !memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim) &&
         cq_tensor_nbytes(a) == cq_tensor_nbytes(b) &&
         !memcmp(a->data, b->data, cq_tensor_nbytes(a));
}

/* Runs g one node at a time from the outside (every node gets and gives contiguous tensors, and
 * nothing is folded); returns its first output. */
static cq_tensor *node_by_node(cq_module *g, cq_ctx *ctx, cq_tensor *x) {
  cq_tensor *values[64] = {x};
  CHECK(cq_graph_num_values(g) <= 64);
  for (int i = 0; i < cq_graph_num_nodes(g); i++) {
    cq_graph_node_info node;
    OK(cq_graph_node(g, i, &node));
    cq_tensor *args[CQ_MAX_IO], *res[CQ_MAX_IO] = {NULL};
    for (int k = 0; k < node.nin; k++) args[k] = values[node.inputs[k]];
    OK(cq_module_forward(node.module, ctx, node.nin, args, node.nout, res));
    CHECK_MSG(res[0] && !res[0]->channels_last, "node %s: a caller got a channels-last tensor",
              node.name);
    for (int k = 0; k < node.nout; k++) values[node.outputs[k]] = res[k];
  }
  int nouts;
  const int *outs;
  OK(cq_graph_outputs(g, &nouts, &outs));
  return values[outs[0]];
}

static void test_model(int variant, cq_backend engine) {
  cq_module *g = variant != 2 ? model(variant) : residual();
  cq_module_train(g, 0);
  quantize(g, engine);
  if (variant == 2) {
    char *text = cq_module_repr_alloc(g);
    CHECK_MSG(text && strstr(text, "QFunctional"), "the residual add is not quantized:\n%s",
              text ? text : "");
    free(text);
  }
  CHECK(cq_is_graph(g));
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = variant == 2 ? ramp(2, 3, 11, 11, 0.23f) /* 968 elements a plane: an ATen tail */
                              : ramp(2, 3, 12, 12, 0.23f);

  /* whole model at once: channels-last between the convs */
  cq_tensor *whole = NULL, *plain = NULL;
  OK(cq_module_forward1(g, ctx, x, &whole));
  CHECK(whole && !whole->channels_last);
  cq_debug_channels_last(0);
  OK(cq_module_forward1(g, ctx, x, &plain));
  cq_debug_channels_last(1);
  CHECK_MSG(same_bytes(whole, plain), "variant %d (%s): channels-last run differs from the NCHW "
            "run", variant, cq_backend_name(engine));

  /* node by node from the outside, in execution order */
  const int nodes = cq_graph_num_nodes(g);
  cq_tensor *y = node_by_node(g, ctx, x);
  CHECK_MSG(same_bytes(whole, y), "variant %d: whole-model output differs from the node-by-node "
            "run", variant);

  /* a profiled run gives the same bytes and a time for every node, accumulated over runs */
  double seconds[64] = {0};
  cq_tensor *profiled = NULL;
  OK(cq_graph_forward_profile(g, ctx, 1, &x, 1, &profiled, seconds));
  CHECK(same_bytes(whole, profiled));
  double first = 0, second = 0;
  for (int i = 0; i < nodes; i++) {
    CHECK(seconds[i] >= 0.0);
    first += seconds[i];
  }
  OK(cq_graph_forward_profile(g, ctx, 1, &x, 1, &profiled, seconds));
  for (int i = 0; i < nodes; i++) second += seconds[i];
  CHECK(first > 0.0 && second > first);
  CHECK(seconds[nodes] == 0.0);
  CHECK(cq_graph_forward_profile(g, ctx, 1, &x, 1, &profiled, NULL) == CQ_EINVAL);

  /* a visitor sees contiguous tensors only */
  seen s = {0, 0};
  cq_tensor *visited = NULL;
  OK(cq_graph_forward_visit(g, ctx, 1, &x, 1, &visited, visit, &s));
  CHECK_INT_EQ(s.tensors, nodes);
  CHECK_INT_EQ(s.channels_last, 0);
  CHECK(same_bytes(whole, visited));

  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(g);
}

/* Inside a run the layout is really channels-last: a module type of this test that runs a
 * quantized conv and looks at what it got back. */
typedef struct probe {
  cq_module *conv; /* borrowed */
  cq_module *next; /* borrowed, may be NULL: run on the conv's output */
  int inner_channels_last;
} probe;

static cq_status probe_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in, int nout,
                               cq_tensor **out) {
  (void)nin;
  (void)nout;
  probe *p = m->impl;
  cq_ctx_hint_channels_last(ctx, 1); /* as a container does when a conv comes next */
  cq_status st = cq_module_forward1(p->conv, ctx, in[0], &out[0]);
  if (st == CQ_OK) p->inner_channels_last = out[0]->channels_last;
  /* a module that does not read channels-last gets a contiguous copy from cq_module_forward */
  if (st == CQ_OK && p->next) st = cq_module_forward1(p->next, ctx, out[0], &out[0]);
  return st;
}

static const cq_module_type probe_type = {
    .name = "Probe",
    .forward = probe_forward,
    .nin_min = 1, .nin_max = 1, .nout_min = 1, .nout_max = 1,
};

static void test_inside_a_run(void) {
  /* 8 input channels: the implicit path, whose native output is channels-last (a conv of <= 4
   * input channels may take the direct path, which writes NCHW planes) */
  cq_module *c[] = {conv(8, 16, 3, 1, 1, 1)};
  cq_module *g = tb_seq(1, c);
  cq_module_train(g, 0);
  quantize_with(g, CQ_BACKEND_X86, 8);
  cq_module *quant = cq_module_find(g, "input_quant"), *qconv = NULL;
  for (int i = 0; i < g->nchildren; i++) {
    if (strstr(cq_module_type_name(g->children[i]), "QuantizedConv")) qconv = g->children[i];
  }
  CHECK(quant != NULL && qconv != NULL);
  if (!quant || !qconv) {
    cq_module_free(g);
    return;
  }
  probe *pi = cq_calloc_for(1, sizeof *pi, "probe");
  cq_module *pm = NULL;
  OK(cq_module_new(&probe_type, pi, &pm));
  pi->conv = qconv;
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = ramp(1, 8, 9, 9, 0.3f), *q = NULL, *y = NULL, *direct = NULL;
  OK(cq_module_forward1(quant, ctx, x, &q));
  OK(cq_module_forward1(pm, ctx, q, &y));
  CHECK_INT_EQ(pi->inner_channels_last, 1); /* what the conv wrote, seen inside the run */
  CHECK(y && !y->channels_last);             /* what the caller got */
  OK(cq_module_forward1(qconv, ctx, q, &direct));
  CHECK(same_bytes(direct, y));
  /* conv (channels-last inside) -> max pool (reads contiguous) */
  cq_module *pool = maxpool(2);
  cq_tensor *pooled = NULL, *pooled_direct = NULL;
  pi->next = pool;
  OK(cq_module_forward1(pm, ctx, q, &pooled));
  CHECK_INT_EQ(pi->inner_channels_last, 1);
  OK(cq_module_forward1(pool, ctx, direct, &pooled_direct));
  CHECK(same_bytes(pooled_direct, pooled));
  cq_module_free(pool);
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(pm);
  cq_module_free(g);
}

static void test_conversion(void) {
  const int64_t dims[][4] = {{1, 1, 1, 1}, {2, 3, 5, 7}, {1, 64, 4, 16}, {2, 70, 3, 17},
                             {1, 130, 2, 33}, {3, 16, 16, 1}};
  for (size_t t = 0; t < sizeof dims / sizeof dims[0]; t++) {
    const int64_t n = dims[t][0], c = dims[t][1], h = dims[t][2], w = dims[t][3];
    const size_t bytes = (size_t)(n * c * h * w);
    uint8_t *x = cq_malloc_for(bytes, "x"), *y = cq_malloc_for(bytes, "y");
    for (size_t i = 0; i < bytes; i++) x[i] = (uint8_t)(i * 131u + 7u);
    cq_u8_nhwc_to_nchw(x, n, c, h, w, y);
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
      for (int64_t ch = 0; ch < c; ch++)
        for (int64_t r = 0; r < h; r++)
          for (int64_t col = 0; col < w; col++)
            bad += y[((i * c + ch) * h + r) * w + col] != x[((i * h + r) * w + col) * c + ch];
    CHECK_MSG(bad == 0, "NHWC -> NCHW of %lldx%lldx%lldx%lld: %d bytes wrong", (long long)n,
              (long long)c, (long long)h, (long long)w, bad);
    cq_free(x);
    cq_free(y);
  }
}

/* Eager-mode static quantization of Sequential(c): the engine's default qconfig, prepare, three
 * calibration runs on x, convert with that quantized engine. */
static cq_module *eager_static(int n, cq_module **c, cq_backend engine, cq_ctx *ctx,
                               cq_tensor *x) {
  cq_module *seq = tb_seq(n, c);
  cq_module_train(seq, 0);
  cq_qconfig qc;
  OK(cq_get_default_qconfig(engine, 0, &qc));
  OK(cq_module_set_qconfig(seq, &qc));
  OK(cq_prepare(seq));
  for (int i = 0; i < 3; i++) {
    cq_tensor *y = NULL;
    OK(cq_module_forward1(seq, ctx, x, &y));
  }
  const cq_backend outer = cq_quantized_engine();
  cq_set_quantized_engine(engine);
  OK(cq_convert(seq));
  cq_set_quantized_engine(outer);
  return seq;
}

/* A Sequential of more children than its layout plan keeps on the stack: conv, 68 Identity,
 * conv; eager-mode static quantization; channels-last through the Identities. */
static void test_long_sequential(void) {
  cq_manual_seed(5);
  enum { N = 72 };
  cq_module *c[N];
  c[0] = tb_simple(cq_quant_stub);
  c[1] = conv(3, 8, 3, 1, 1, 1);
  for (int i = 2; i < N - 2; i++) c[i] = tb_simple(cq_identity);
  c[N - 2] = conv(8, 4, 3, 1, 1, 1);
  c[N - 1] = tb_simple(cq_dequant_stub);
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = ramp(2, 3, 9, 9, 0.17f), *whole = NULL, *plain = NULL;
  cq_module *seq = eager_static(N, c, CQ_BACKEND_X86, ctx, x);
  OK(cq_module_forward1(seq, ctx, x, &whole));
  cq_debug_channels_last(0);
  OK(cq_module_forward1(seq, ctx, x, &plain));
  cq_debug_channels_last(1);
  CHECK(whole && !whole->channels_last && same_bytes(whole, plain));
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(seq);
}

/* Clamp folds (graph.c): a ReLU6 and a Hardtanh after quantized convs run in the convs' output
 * stages and are skipped - except a ReLU6 whose conv output is also read by an add, and, with
 * QNNPACK's integer output stage, a clamp that cuts below 255 (the 0.05 of the Hardtanh). The
 * folded run gives the bytes of the node-by-node run. */
static void test_clamp_folds(cq_backend engine) {
  cq_manual_seed(31);
  cq_module *g = NULL, *add = NULL, *ht = NULL;
  OK(cq_graph(&g, 1));
  OK(cq_add(&add));
  OK(cq_hardtanh(&ht, 0.0f, 0.05f));
  int x = 0, a, r, b, h, c, r2, s, y;
  OK(cq_graph_add_node(g, "conv_a", conv(3, 8, 3, 1, 1, 1), 1, &x, 1, &a));
  OK(cq_graph_add_node(g, "relu6_a", tb_simple(cq_relu6), 1, &a, 1, &r));
  OK(cq_graph_add_node(g, "conv_b", conv(8, 8, 3, 1, 1, 1), 1, &r, 1, &b));
  OK(cq_graph_add_node(g, "ht", ht, 1, &b, 1, &h));
  OK(cq_graph_add_node(g, "conv_c", conv(8, 8, 1, 0, 1, 1), 1, &h, 1, &c));
  OK(cq_graph_add_node(g, "relu6_c", tb_simple(cq_relu6), 1, &c, 1, &r2));
  int ai[2] = {c, r2};
  OK(cq_graph_add_node(g, "add", add, 2, ai, 1, &s));
  OK(cq_graph_add_node(g, "conv_d", conv(8, 4, 1, 0, 1, 1), 1, &s, 1, &y));
  OK(cq_graph_set_outputs(g, 1, &y));
  cq_module_train(g, 0);
  quantize(g, engine);
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *in = ramp(2, 3, 12, 12, 0.19f), *whole = NULL;
  double seconds[16] = {0};
  const int nodes = cq_graph_num_nodes(g);
  CHECK(nodes <= 16);
  OK(cq_graph_forward_profile(g, ctx, 1, &in, 1, &whole, seconds));
  for (int i = 0; i < nodes; i++) {
    cq_graph_node_info node;
    OK(cq_graph_node(g, i, &node));
    const int folded = !strcmp(node.name, "relu6_a") ||
                       (!strcmp(node.name, "ht") && engine != CQ_BACKEND_QNNPACK);
    if (folded) {
      CHECK_MSG(seconds[i] == 0.0, "%s (%s) was not folded", node.name, cq_backend_name(engine));
    } else if (!strcmp(node.name, "ht") || !strcmp(node.name, "relu6_c")) {
      CHECK_MSG(seconds[i] > 0.0, "%s (%s) was folded", node.name, cq_backend_name(engine));
    }
  }
  CHECK_MSG(same_bytes(whole, node_by_node(g, ctx, in)),
            "the folded run differs from the node-by-node run");
  cq_tensor_free(in);
  cq_ctx_free(ctx);
  cq_module_free(g);
}

/* Clamp folds in an eager-mode Sequential: the clamp children (ReLU6 / Hardtanh / ReLU, whatever
 * types convert leaves them) are wrapped to count their forwards. After conv -> ReLU6, conv ->
 * Hardtanh(0, 0.05) (not with QNNPACK: it cuts below 255), linear -> ReLU6 and linear -> ReLU no
 * clamp runs; the bytes equal those of the children run one by one from the outside. */
enum { COUNTED_TYPES = 4 };
static cq_module_type counted_types[COUNTED_TYPES];
static const cq_module_type *counted_origins[COUNTED_TYPES];
static int counted_calls;

static cq_status counted_forward(cq_module *m, cq_ctx *ctx, int nin, cq_tensor *const *in,
                                 int nout, cq_tensor **out) {
  counted_calls++;
  return counted_origins[m->type - counted_types]->forward(m, ctx, nin, in, nout, out);
}

static void count_forwards(cq_module *m) {
  for (int t = 0; t < COUNTED_TYPES; t++) {
    if (counted_origins[t] == m->type) {
      m->type = &counted_types[t];
      return;
    }
    if (!counted_origins[t]) {
      counted_origins[t] = m->type;
      counted_types[t] = *m->type;
      counted_types[t].forward = counted_forward;
      m->type = &counted_types[t];
      return;
    }
  }
  CHECK_MSG(0, "more clamp types than the test counts");
}

static void test_sequential_clamp_folds(cq_backend engine) {
  cq_manual_seed(41);
  cq_module *ht = NULL;
  OK(cq_hardtanh(&ht, 0.0f, 0.05f));
  cq_module *c[] = {tb_simple(cq_quant_stub), conv(3, 8, 3, 1, 1, 1), tb_simple(cq_relu6),
                    conv(8, 8, 3, 1, 1, 1), ht, flatten(), tb_linear(8 * 9 * 9, 16),
                    tb_simple(cq_relu6), tb_linear(16, 10), tb_simple(cq_relu),
                    tb_simple(cq_dequant_stub)};
  cq_ctx *ctx = NULL;
  OK(cq_ctx_create(&ctx));
  cq_tensor *x = ramp(2, 3, 9, 9, 0.17f);
  cq_module *seq = eager_static((int)(sizeof c / sizeof c[0]), c, engine, ctx, x);
  int clamps = 0;
  for (int i = 0; i < seq->nchildren; i++) {
    if (seq->children[i]->type->clamp_of) {
      count_forwards(seq->children[i]);
      clamps++;
    }
  }
  CHECK_INT_EQ(clamps, 4);
  counted_calls = 0;
  cq_tensor *whole = NULL;
  OK(cq_module_forward1(seq, ctx, x, &whole));
  CHECK_MSG(counted_calls == (engine == CQ_BACKEND_QNNPACK), "%d clamps ran (%s)", counted_calls,
            cq_backend_name(engine));
  cq_tensor *v = x;
  for (int i = 0; i < seq->nchildren; i++) OK(cq_module_forward1(seq->children[i], ctx, v, &v));
  CHECK_INT_EQ(counted_calls, clamps + (engine == CQ_BACKEND_QNNPACK));
  CHECK_MSG(whole && v && whole->dtype == CQ_F32 && same_bytes(whole, v),
            "the folded Sequential differs from its children run one by one (%s)",
            cq_backend_name(engine));
  cq_tensor_free(x);
  cq_ctx_free(ctx);
  cq_module_free(seq);
}

int main(void) {
  test_conversion();
  const cq_backend engines[2] = {CQ_BACKEND_X86, CQ_BACKEND_QNNPACK};
  for (int e = 0; e < 2; e++) {
    for (int variant = 0; variant < 4; variant++) test_model(variant, engines[e]);
  }
  test_inside_a_run();
  test_clamp_folds(CQ_BACKEND_X86);
  test_clamp_folds(CQ_BACKEND_ONEDNN);
  test_clamp_folds(CQ_BACKEND_QNNPACK);
  test_long_sequential();
  test_sequential_clamp_folds(CQ_BACKEND_X86);
  test_sequential_clamp_folds(CQ_BACKEND_ONEDNN);
  test_sequential_clamp_folds(CQ_BACKEND_QNNPACK);
  return check_summary("test_channels_last");
}

/* Whole models print exactly as PyTorch 1.13 prints them (tools/golden/gen_nn_print.py): the seed's
 * models, the demo's CNN, RNNs in a Sequential, and unusual layer options. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "cquant/cquant.h"
#include "golden.h"

#define OK(expr) CHECK_OK(expr)

static cq_module *seq(int n, cq_module **children) {
  cq_module *m = NULL;
  OK(cq_sequential(&m, n, children));
  return m;
}

static cq_module *conv(int64_t in, int64_t out, int64_t k) {
  cq_conv_options o = cq_conv_defaults(in, out, k, k);
  cq_module *m = NULL;
  OK(cq_conv2d(&m, &o));
  return m;
}

static cq_module *relu(void) {
  cq_module *m = NULL;
  OK(cq_relu(&m));
  return m;
}

static cq_module *linear(int64_t in, int64_t out) {
  cq_module *m = NULL;
  OK(cq_linear(&m, in, out, 1));
  return m;
}

static cq_module *conv_block(int64_t in, int64_t out) {
  cq_conv_options o = cq_conv_defaults(in, out, 3, 3);
  o.padding[0] = o.padding[1] = 1;
  cq_pool_options p = cq_pool_defaults(2, 2);
  cq_module *c[4] = {NULL};
  OK(cq_conv2d(&c[0], &o));
  OK(cq_batchnorm2d(&c[1], out));
  c[2] = relu();
  OK(cq_maxpool2d(&c[3], &p));
  return seq(4, c);
}

static cq_module *build(const char *name) {
  if (!strcmp(name, "seed_static")) {
    cq_module *c[4] = {conv(2, 64, 3), relu(), conv(64, 128, 3), relu()};
    return seq(4, c);
  }
  if (!strcmp(name, "seed_qat")) {
    cq_module *c[4] = {conv(2, 64, 8), relu(), conv(64, 128, 8), relu()};
    return seq(4, c);
  }
  if (!strcmp(name, "fashion_cnn")) {
    cq_module *flatten = NULL;
    OK(cq_flatten(&flatten, 1, -1));
    cq_module *c[6] = {conv_block(1, 16), conv_block(16, 32), flatten, linear(32 * 7 * 7, 128),
                       relu(), linear(128, 10)};
    return seq(6, c);
  }
  if (!strcmp(name, "rnn_mix")) {
    cq_rnn_options l = cq_rnn_defaults(10, 10), g = cq_rnn_defaults(10, 20);
    g.num_layers = 2;
    g.bidirectional = 1;
    cq_module *c[3] = {linear(16, 10), NULL, NULL};
    OK(cq_lstm(&c[1], &l));
    OK(cq_gru(&c[2], &g));
    return seq(3, c);
  }
  if (!strcmp(name, "odd_convs")) {
    cq_conv_options a = cq_conv_defaults(3, 16, 3, 5);
    a.stride[0] = a.stride[1] = 2;
    a.padding[0] = 1;
    a.padding[1] = 2;
    a.dilation[0] = a.dilation[1] = 2;
    a.bias = 0;
    cq_conv_options b = cq_conv_defaults(16, 16, 3, 3);
    b.groups = 16;
    b.padding[0] = b.padding[1] = 1;
    cq_conv_options d = cq_conv_defaults(4, 8, 3, 1);
    d.stride[0] = 2;
    cq_pool_options p = cq_pool_defaults(3, 3);
    p.stride[0] = p.stride[1] = 2;
    p.padding[0] = p.padding[1] = 1;
    cq_module *c[13] = {NULL};
    OK(cq_conv2d(&c[0], &a));
    OK(cq_conv2d(&c[1], &b));
    OK(cq_conv1d(&c[2], &d));
    OK(cq_avgpool2d(&c[3], &p));
    OK(cq_adaptive_avgpool2d(&c[4], 1, 1));
    OK(cq_dropout(&c[5], 0.25f));
    OK(cq_identity(&c[6]));
    OK(cq_sigmoid(&c[7]));
    OK(cq_tanh(&c[8]));
    OK(cq_relu6(&c[9]));
    OK(cq_hardtanh(&c[10], -2.0f, 2.0f));
    OK(cq_softmax(&c[11], 1));
    OK(cq_batchnorm1d(&c[12], 8));
    return seq(13, c);
  }
  return NULL;
}

/* Undo the \n and \\ escapes of the golden file. */
static char *unescape(const char *s) {
  char *out = malloc(strlen(s) + 1), *o = out;
  for (; *s; s++) {
    if (*s == '\\' && s[1] == 'n') {
      *o++ = '\n';
      s++;
    } else if (*s == '\\' && s[1] == '\\') {
      *o++ = '\\';
      s++;
    } else {
      *o++ = *s;
    }
  }
  *o = '\0';
  return out;
}

int main(void) {
  golden_file g;
  if (golden_load(CQ_TEST_DATA_DIR "/golden/nn_print/cases.txt", &g) != 0) return 1;
  for (int i = 0; i < g.count; i++) {
    cq_module *m = build(g.cases[i].name);
    CHECK_MSG(m != NULL, "%s: cannot build", g.cases[i].name);
    if (!m) continue;
    char *got = cq_module_repr_alloc(m);
    char *want = unescape(golden_get(&g.cases[i], "repr"));
    CHECK_STR_EQ(got, want);
    free(got);
    free(want);
    cq_module_free(m);
  }
  golden_free(&g);
  return check_summary("test_nn_print");
}

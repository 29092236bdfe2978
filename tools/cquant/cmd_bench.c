/* cquant bench: time one quantized operator on random data and print the median.
 *
 *   cquant bench --op linear --shape M,K,N [--threads T]
 *   cquant bench --op conv2d --shape N,C,H,W,OC,KH,KW[,STRIDE,PAD,GROUPS] [--threads T]
 *                [--reps R] [--min-ms MS] [--engine x86|fbgemm|qnnpack|onednn] [--relu]
 *                [--layout nchw|nhwc]
 *
 * The convolution is the one a converted QuantizedConv2d / QuantizedConvReLU2d runs (packed once,
 * bound to the input's quantization once, then run repeatedly; NCHW in and out by default, the
 * layout of cquant's activations, so layout conversions are inside the time). Each repetition
 * times a batch of calls lasting at least --min-ms; the result is the median (and minimum) time
 * per call over the repetitions, and GOP/s = 2 * multiply-adds / time. Comparisons with oneDNN
 * live in bench/bench_qconv.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_timing.h"
#include "cli.h"
#include "core/cpu.h"
#include "core/threadpool.h"
#include "kernels/conv/qconv.h"

static const char bench_help[] =
    "usage: cquant bench --op linear --shape M,K,N [OPTIONS]\n"
    "       cquant bench MODEL.onnx --input X.npy [--against OTHER.onnx]   (cquant bench MODEL --help)\n"
    "       cquant bench --op conv2d --shape N,C,H,W,OC,KH,KW[,STRIDE,PAD,GROUPS] [OPTIONS]\n"
    "\n"
    "Times the quantized operator on random data (weights packed once) and prints JSON with the\n"
    "median milliseconds per call and GOP/s (2 x multiply-adds per second).\n"
    "\n"
    "options:\n"
    "  --threads T        threads of the library's pool (1)\n"
    "  --reps R           timed repetitions; the median is reported (9)\n"
    "  --min-ms MS        each repetition calls the operator for at least MS ms (20)\n"
    "  --engine NAME      x86, fbgemm, qnnpack or onednn: the requantization rule (onednn)\n"
    "  --relu             the fused ConvReLU2d\n"
    "  --layout L         nchw (cquant's activations, default) or nhwc, input and output\n"
    "\n"
    "output: {\"op\", \"shape\", \"out_shape\", \"threads\", \"isa\", \"path\", \"engine\",\n"
    "         \"layout\", \"reps\", \"median_ms\", \"min_ms\", \"gops\"}\n";

typedef struct conv_bench {
  const cq_qconv_op *op;
  const uint8_t *x;
  uint8_t *y;
  int64_t n, h, w;
  cq_conv_layout layout;
  void *ws;
  size_t ws_bytes;
  cq_threadpool *tp;
  cq_status st;
} conv_bench;

static void conv_call(void *ctx) {
  conv_bench *b = ctx;
  cq_status st = cq_qconv_run(b->op, b->x, b->layout, b->n, b->h, b->w, b->y, b->layout, b->ws,
                              b->ws_bytes, b->tp);
  if (st != CQ_OK) b->st = st;
}

typedef struct linear_bench {
  const cq_qgemm_op *op;
  const uint8_t *x;
  uint8_t *y;
  int64_t m, k, n;
  cq_threadpool *tp;
  cq_status st;
} linear_bench;

static void linear_call(void *ctx) {
  linear_bench *b = ctx;
  cq_status st = cq_qgemm_run(b->op, b->x, b->m, b->k, b->y, b->n, b->tp);
  if (st != CQ_OK) b->st = st;
}

static cq_requant_rule engine_rule(cq_backend engine) {
  return engine == CQ_BACKEND_QNNPACK  ? CQ_RULE_QNNPACK
         : engine == CQ_BACKEND_ONEDNN ? CQ_RULE_ONEDNN
                                       : CQ_RULE_FBGEMM;
}

/* Parses up to 10 comma-separated sizes; returns how many (-1 when malformed or a size is out of
 * range: every size >= 1 except PAD, the 9th, which may be 0). Missing conv fields take their
 * defaults (stride 1, pad 0, groups 1). */
static int parse_shape(const char *s, long long v[10]) {
  const long long defaults[10] = {0, 0, 0, 0, 0, 0, 0, 1, 0, 1};
  memcpy(v, defaults, sizeof defaults);
  char tail;
  int got = sscanf(s, "%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld%c", &v[0], &v[1], &v[2],
                   &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &tail);
  if (got < 1 || got > 10) return -1;
  for (int i = 0; i < 10; i++) {
    if (v[i] < (i == 8 ? 0 : 1) && i < got) return -1;
  }
  return got;
}

static int bench_conv2d(const long long v[10], int threads, int reps, double min_ms,
                        cq_backend engine, int relu, cq_conv_layout layout) {
  const cq_conv_geom g = {.in_channels = v[1], .out_channels = v[4], .groups = v[9],
                          .kernel = {v[5], v[6]}, .stride = {v[7], v[7]}, .padding = {v[8], v[8]},
                          .dilation = {1, 1}};
  cq_status st = cq_qconv_check_geom(&g);
  if (st != CQ_OK) return cli_error("%s", cq_last_error());
  const int64_t n = v[0], c = v[1], h = v[2], w = v[3], oc = v[4];
  const int64_t ho = cq_qconv_out_size(h, g.kernel[0], g.stride[0], g.padding[0], 1);
  const int64_t wo = cq_qconv_out_size(w, g.kernel[1], g.stride[1], g.padding[1], 1);
  if (ho < 1 || wo < 1) {
    return cli_error("the %lldx%lld kernel does not fit the %lldx%lld input with padding %lld",
                     v[5], v[6], v[2], v[3], v[8]);
  }
  const int64_t kdim = c / g.groups * g.kernel[0] * g.kernel[1];
  const double xn = (double)n * (double)c * (double)h * (double)w;
  const double yn = (double)n * (double)oc * (double)ho * (double)wo;
  if (xn > 1e9 || yn > 1e9 || (double)oc * (double)kdim > 1e9) {
    return cli_error("shape too large for a benchmark (more than 10^9 elements)");
  }
  st = cq_set_num_threads(threads);
  if (st != CQ_OK) return cli_error("%s", cq_last_error());
  cq_threadpool *tp = cq_default_threadpool();
  uint8_t *x = malloc((size_t)xn), *y = malloc((size_t)yn);
  int8_t *wt = malloc((size_t)(oc * kdim));
  float *w_scale = malloc(sizeof(float) * (size_t)oc), *bias = malloc(sizeof(float) * (size_t)oc);
  cq_qconv_packed *packed = NULL;
  cq_qconv_op *op = NULL;
  void *ws = NULL;
  int rc = CLI_FAILED;
  if (!x || !y || !wt || !w_scale || !bias) {
    cli_error("out of memory for the benchmark's tensors");
    goto done;
  }
  uint32_t r = 12345;
  for (size_t i = 0; i < (size_t)xn; i++) x[i] = (uint8_t)((r = r * 1103515245u + 12345u) >> 16);
  for (int64_t i = 0; i < oc * kdim; i++) {
    wt[i] = (int8_t)((int)((r = r * 1103515245u + 12345u) >> 16) % 255 - 127);
  }
  for (int64_t o = 0; o < oc; o++) {
    w_scale[o] = 0.003f + 0.001f * (float)(o % 7);
    bias[o] = 0.01f * (float)(o % 11) - 0.05f;
  }
  const float x_scale = 0.02f;
  const float y_scale = x_scale * 0.004f * 72.0f * (float)sqrt((double)kdim);
  const cq_qgemm_quant q = {x_scale, 0, y_scale, relu ? 0 : 128, relu, engine_rule(engine),
                            0, 0, 0};
  st = cq_qconv_pack(&g, wt, w_scale, NULL, 1, bias, &packed);
  if (st == CQ_OK) st = cq_qconv_create(packed, &q, &op);
  if (st != CQ_OK) {
    cli_error("%s", cq_last_error());
    goto done;
  }
  const size_t ws_bytes = cq_qconv_workspace_size(op, h, w, layout, layout,
                                                 cq_threadpool_threads(tp));
  ws = malloc(ws_bytes ? ws_bytes : 1);
  if (!ws) {
    cli_error("out of memory for the workspace (%zu bytes)", ws_bytes);
    goto done;
  }
  conv_bench b = {op, x, y, n, h, w, layout, ws, ws_bytes, tp, CQ_OK};
  double med = 0, min_ms_seen = 0;
  long calls = 0;
  if (bench_loop(conv_call, &b, &b.st, reps, min_ms, &med, &min_ms_seen, &calls) != CQ_OK) {
    cli_error("%s", cq_last_error());
    goto done;
  }
  const double ops = 2.0 * yn * (double)kdim;
  cq_strbuf sb;
  cq_strbuf_init(&sb);
  cq_strbuf_appendf(&sb, "{\"op\": \"conv2d\", \"shape\": {\"n\": %lld, \"c\": %lld, \"h\": %lld, "
                    "\"w\": %lld, \"oc\": %lld, \"kh\": %lld, \"kw\": %lld, \"stride\": %lld, "
                    "\"pad\": %lld, \"groups\": %lld}, \"out_shape\": [%lld, %lld, %lld, %lld], "
                    "\"threads\": %d, \"isa\": ",
                    v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], (long long)n,
                    (long long)oc, (long long)ho, (long long)wo, cq_threadpool_threads(tp));
  json_string(&sb, cq_isa_name(cq_qconv_isa(op)));
  cq_strbuf_append(&sb, ", \"path\": ");
  json_string(&sb, cq_qconv_path_name(op));
  cq_strbuf_append(&sb, ", \"engine\": ");
  json_string(&sb, cq_backend_name(engine));
  cq_strbuf_appendf(&sb, ", \"relu\": %s, \"layout\": \"%s\", \"reps\": %d, \"calls_per_rep\": %ld, "
                    "\"median_ms\": ", relu ? "true" : "false",
                    layout == CQ_CONV_NCHW ? "nchw" : "nhwc", reps, calls);
  json_float(&sb, med);
  cq_strbuf_append(&sb, ", \"min_ms\": ");
  json_float(&sb, min_ms_seen);
  cq_strbuf_append(&sb, ", \"gops\": ");
  json_float(&sb, ops / med * 1e-6);
  cq_strbuf_append(&sb, "}");
  rc = json_emit(&sb);
  cq_strbuf_release(&sb);
done:
  free(ws);
  cq_qconv_destroy(op);
  cq_qconv_packed_destroy(packed);
  free(x);
  free(y);
  free(wt);
  free(w_scale);
  free(bias);
  return rc;
}

/* quantized::linear on random data: x uint8 [M, K], weights int8 [N, K] prepacked once. */
static int bench_linear(const long long v[3], int threads, int reps, double min_ms,
                        cq_backend engine, int relu) {
  const int64_t m = v[0], k = v[1], n = v[2];
  if ((double)m * (double)k > 1e9 || (double)n * (double)k > 1e9 || (double)m * (double)n > 1e9) {
    return cli_error("shape too large for a benchmark (more than 10^9 elements)");
  }
  cq_status st = cq_set_num_threads(threads);
  if (st != CQ_OK) return cli_error("%s", cq_last_error());
  cq_threadpool *tp = cq_default_threadpool();
  uint8_t *x = malloc((size_t)(m * k)), *y = malloc((size_t)(m * n));
  int8_t *wt = malloc((size_t)(n * k));
  float *bias = malloc(sizeof(float) * (size_t)n);
  const float w_scale = 0.004f;
  cq_qgemm_packed *packed = NULL;
  cq_qgemm_op *op = NULL;
  int rc = CLI_FAILED;
  if (!x || !y || !wt || !bias) {
    cli_error("out of memory for the benchmark's tensors");
    goto done;
  }
  uint32_t r = 12345;
  for (int64_t i = 0; i < m * k; i++) x[i] = (uint8_t)((r = r * 1103515245u + 12345u) >> 16);
  for (int64_t i = 0; i < n * k; i++) {
    wt[i] = (int8_t)((int)((r = r * 1103515245u + 12345u) >> 16) % 255 - 127);
  }
  for (int64_t o = 0; o < n; o++) bias[o] = 0.01f * (float)(o % 11) - 0.05f;
  const float x_scale = 0.02f;
  const float y_scale = x_scale * w_scale * 72.0f * (float)sqrt((double)k);
  const cq_qgemm_quant q = {x_scale, 0, y_scale, relu ? 0 : 128, relu, engine_rule(engine),
                            0, 0, 0};
  st = cq_qgemm_pack(wt, n, k, &w_scale, NULL, 0, bias, &packed);
  if (st == CQ_OK) st = cq_qgemm_create(packed, &q, &op);
  if (st != CQ_OK) {
    cli_error("%s", cq_last_error());
    goto done;
  }
  linear_bench b = {op, x, y, m, k, n, tp, CQ_OK};
  double med = 0, min_seen = 0;
  long calls = 0;
  if (bench_loop(linear_call, &b, &b.st, reps, min_ms, &med, &min_seen, &calls) != CQ_OK) {
    cli_error("%s", cq_last_error());
    goto done;
  }
  cq_strbuf sb;
  cq_strbuf_init(&sb);
  cq_strbuf_appendf(&sb, "{\"op\": \"linear\", \"shape\": {\"m\": %lld, \"k\": %lld, \"n\": %lld}, "
                    "\"threads\": %d, \"isa\": ", v[0], v[1], v[2], cq_threadpool_threads(tp));
  json_string(&sb, cq_isa_name(cq_qgemm_isa(op)));
  cq_strbuf_append(&sb, ", \"engine\": ");
  json_string(&sb, cq_backend_name(engine));
  cq_strbuf_appendf(&sb, ", \"relu\": %s, \"reps\": %d, \"calls_per_rep\": %ld, \"median_ms\": ",
                    relu ? "true" : "false", reps, calls);
  json_float(&sb, med);
  cq_strbuf_append(&sb, ", \"min_ms\": ");
  json_float(&sb, min_seen);
  cq_strbuf_append(&sb, ", \"gops\": ");
  json_float(&sb, 2.0 * (double)m * (double)n * (double)k / med * 1e-6);
  cq_strbuf_append(&sb, "}");
  rc = json_emit(&sb);
  cq_strbuf_release(&sb);
done:
  cq_qgemm_destroy(op);
  cq_qgemm_packed_destroy(packed);
  free(x);
  free(y);
  free(wt);
  free(bias);
  return rc;
}

int bench_model(int argc, char **argv); /* bench_model.c */

int cmd_bench(int argc, char **argv) {
  if (argc > 1 && argv[1][0] != '-') return bench_model(argc, argv);
  const char *op = NULL, *shape = NULL;
  int relu = 0, rc;
  bench_timing timing = {1, 9, 20.0};
  cq_backend engine = CQ_BACKEND_ONEDNN;
  cq_conv_layout layout = CQ_CONV_NCHW;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const int has_value = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(bench_help, stdout);
      return CLI_OK;
    } else if (!strcmp(a, "--op") && has_value) {
      op = argv[++i];
    } else if (!strcmp(a, "--shape") && has_value) {
      shape = argv[++i];
    } else if ((rc = bench_timing_option(argc, argv, &i, &timing)) >= 0) {
      if (rc != CLI_OK) return rc;
    } else if (!strcmp(a, "--engine") && has_value) {
      if (cq_backend_parse(argv[++i], &engine) != CQ_OK) {
        return cli_usage_error("bench", "unknown engine '%s' (x86, fbgemm, qnnpack, onednn)",
                               argv[i]);
      }
    } else if (!strcmp(a, "--relu")) {
      relu = 1;
    } else if (!strcmp(a, "--layout") && has_value) {
      const char *l = argv[++i];
      if (!strcmp(l, "nchw")) {
        layout = CQ_CONV_NCHW;
      } else if (!strcmp(l, "nhwc")) {
        layout = CQ_CONV_NHWC;
      } else {
        return cli_usage_error("bench", "--layout must be nchw or nhwc, got '%s'", l);
      }
    } else {
      return cli_usage_error("bench", "unexpected argument '%s'", a);
    }
  }
  if (!op) return cli_usage_error("bench", "--op is required (linear or conv2d)");
  if (!strcmp(op, "linear")) {
    long long v[10];
    if (!shape || parse_shape(shape, v) != 3) {
      return cli_usage_error("bench", "--shape M,K,N with positive sizes is required for linear");
    }
    return bench_linear(v, timing.threads, timing.reps, timing.min_ms, engine, relu);
  }
  if (strcmp(op, "conv2d") != 0) {
    return cli_usage_error("bench", "unknown --op '%s' (linear or conv2d)", op);
  }
  long long v[10];
  if (!shape || parse_shape(shape, v) < 7) {
    return cli_usage_error("bench", "--shape N,C,H,W,OC,KH,KW[,STRIDE,PAD,GROUPS] with positive "
                           "sizes (PAD >= 0) is required");
  }
  return bench_conv2d(v, timing.threads, timing.reps, timing.min_ms, engine, relu, layout);
}

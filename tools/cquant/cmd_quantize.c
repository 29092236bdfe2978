/* cquant quantize MODEL.onnx -o OUT.onnx --mode static|dynamic|qat ...: graph-mode quantization
 * of an ONNX model (graph_mode.h), written back as ONNX in QDQ form.
 *
 *  static:  prepare, run the calibration rows in batches, convert;
 *  dynamic: Linear / LSTM / GRU weights to int8, no calibration;
 *  qat:     prepare_qat, fine-tune on the calibration rows and labels with cross-entropy, convert.
 *
 * Nothing is written unless everything succeeded: the ONNX file and the optional report are both
 * written atomically, the report committed only after the model was saved (and the model removed
 * again if that commit fails). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_model.h"
#include "io/atomic_file.h"
#include "report_html.h"

static const char quantize_help[] =
    "usage: cquant quantize MODEL.onnx -o OUT.onnx --mode static|dynamic|qat [OPTIONS]\n"
    "\n"
    "  --calib X.npy          [N, ...] rows: calibration data (static), training data (qat)\n"
    "  --labels Y.npy         integer class labels of the rows (qat)\n"
    "  --batch-size N         rows per forward pass (32)\n"
    "  --observer NAME        activation observer (static): minmax, moving_average_minmax,\n"
    "                         histogram, percentile, mse, entropy (default: the backend's)\n"
    "  --backend NAME         x86 (default), fbgemm, qnnpack, onednn\n"
    "  --per-channel | --per-tensor   weight scheme (default: the backend's)\n"
    "  --exclude NODE         leave a node (name or PyTorch class) in float; repeatable\n"
    "  --epochs N             qat: passes over the data (1)\n"
    "  --lr LR                qat: learning rate (1e-4)\n"
    "  --optimizer adam|sgd   qat: Adam (default) or SGD with momentum 0.9\n"
    "  --report OUT.html      a self-contained HTML page per quantized layer: activation\n"
    "                         histogram, clipping range, scale / zero point, SQNR\n"
    "  --threads N            worker threads (0: one per CPU)\n"
    "\n"
    "The ONNX input shape comes from the calibration data, else from MODEL.onnx.\n"
    "output: {\"output\", \"mode\", \"backend\", \"quantized_nodes\", \"float_nodes\",\n"
    "         \"size_bytes\": {\"float\", \"quantized\"}} (+ \"report\", qat: \"optimizer\",\n"
    "         \"epochs\", \"lr\", \"final_loss\")\n";

enum { MODE_STATIC, MODE_DYNAMIC, MODE_QAT };

typedef struct quantize_args {
  const char *model, *out, *calib, *labels, *report, *observer;
  int mode, have_mode;
  cq_graph_quant_options opts;
  const char **exclude;
  long batch, epochs, threads;
  double lr;
  int sgd;
} quantize_args;

static int parse_args(int argc, char **argv, quantize_args *q) {
  q->opts = cq_graph_quant_defaults();
  q->batch = 32;
  q->epochs = 1;
  q->threads = -1;
  q->lr = 1e-4;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(quantize_help, stdout);
      return -1;
    }
    static const char *const with_value[] = {"-o", "--output", "--mode", "--calib", "--labels",
                                             "--report", "--observer", "--backend", "--exclude",
                                             "--batch-size", "--epochs", "--lr", "--optimizer",
                                             "--threads"};
    int needs = 0;
    for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++) {
      needs |= !strcmp(a, with_value[k]);
    }
    if (needs && !v) return cli_usage_error("quantize", "%s needs a value", a);
    if (needs) i++;
    if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      q->out = v;
    } else if (!strcmp(a, "--mode")) {
      q->have_mode = 1;
      if (!strcmp(v, "static")) q->mode = MODE_STATIC;
      else if (!strcmp(v, "dynamic")) q->mode = MODE_DYNAMIC;
      else if (!strcmp(v, "qat")) q->mode = MODE_QAT;
      else return cli_usage_error("quantize", "--mode must be static, dynamic or qat, not '%s'", v);
    } else if (!strcmp(a, "--calib")) {
      q->calib = v;
    } else if (!strcmp(a, "--labels")) {
      q->labels = v;
    } else if (!strcmp(a, "--report")) {
      q->report = v;
    } else if (!strcmp(a, "--observer")) {
      cq_observer_kind kind;
      if (cq_observer_kind_parse(v, &kind) != CQ_OK) {
        return cli_usage_error("quantize", "%s", cq_last_error());
      }
      q->observer = v;
    } else if (!strcmp(a, "--backend")) {
      if (cq_backend_parse(v, &q->opts.backend) != CQ_OK) {
        return cli_usage_error("quantize", "--backend must be x86, fbgemm, qnnpack or onednn, "
                               "not '%s'", v);
      }
    } else if (!strcmp(a, "--exclude")) {
      q->exclude[q->opts.nexclude++] = v;
    } else if (!strcmp(a, "--batch-size")) {
      if (cli_parse_int(v, 1, 1L << 30, &q->batch)) {
        return cli_usage_error("quantize", "--batch-size needs a positive integer, not '%s'", v);
      }
    } else if (!strcmp(a, "--epochs")) {
      if (cli_parse_int(v, 1, 1000000, &q->epochs)) {
        return cli_usage_error("quantize", "--epochs needs a positive integer, not '%s'", v);
      }
    } else if (!strcmp(a, "--lr")) {
      if (cli_parse_positive(v, &q->lr)) {
        return cli_usage_error("quantize", "--lr needs a positive number, not '%s'", v);
      }
    } else if (!strcmp(a, "--optimizer")) {
      if (strcmp(v, "adam") && strcmp(v, "sgd")) {
        return cli_usage_error("quantize", "--optimizer must be adam or sgd, not '%s'", v);
      }
      q->sgd = !strcmp(v, "sgd");
    } else if (!strcmp(a, "--threads")) {
      if (cli_parse_int(v, 0, 1024, &q->threads)) {
        return cli_usage_error("quantize", "--threads needs an integer in 0..1024");
      }
    } else if (!strcmp(a, "--per-channel") || !strcmp(a, "--per-tensor")) {
      q->opts.per_channel = !strcmp(a, "--per-channel");
    } else if (a[0] == '-' && a[1]) {
      return cli_usage_error("quantize", "unknown option '%s'", a);
    } else if (!q->model) {
      q->model = a;
    } else {
      return cli_usage_error("quantize", "unexpected argument '%s'", a);
    }
  }
  if (!q->model) return cli_usage_error("quantize", "MODEL.onnx is required");
  if (!q->out) return cli_usage_error("quantize", "-o OUT.onnx is required");
  if (!q->have_mode) return cli_usage_error("quantize", "--mode static|dynamic|qat is required");
  if (q->mode == MODE_STATIC && !q->calib) {
    return cli_usage_error("quantize", "--mode static needs --calib X.npy");
  }
  if (q->mode == MODE_QAT && (!q->calib || !q->labels)) {
    return cli_usage_error("quantize", "--mode qat needs --calib X.npy and --labels Y.npy");
  }
  if (q->mode != MODE_QAT && q->labels) {
    return cli_usage_error("quantize", "--labels applies to --mode qat only");
  }
  if (q->observer && q->mode != MODE_STATIC) {
    return cli_usage_error("quantize", "--observer applies to --mode static only");
  }
  if (q->report && !q->calib) {
    return cli_usage_error("quantize", "--report needs --calib X.npy (the activations it shows)");
  }
  q->opts.observer = q->observer;
  q->opts.exclude = q->exclude;
  return CLI_OK;
}

/* The calibration rows as batch views (caller frees each and the array). */
static int make_batches(const cq_tensor *x, long batch, cq_tensor ***out, int *n) {
  const int64_t rows = x->shape[0];
  int64_t nb = (rows + batch - 1) / batch;
  if (nb > (1 << 30)) return cli_error("too many batches");
  cq_tensor **b = calloc((size_t)nb, sizeof *b);
  if (!b) return cli_error("out of memory");
  for (int64_t k = 0; k < nb; k++) {
    int64_t start = k * batch, count = rows - start < batch ? rows - start : batch;
    if (cli_rows_view(x, start, count, &b[k]) != CLI_OK) {
      for (int64_t j = 0; j < k; j++) cq_tensor_free(b[j]);
      free(b);
      return CLI_FAILED;
    }
  }
  *out = b;
  *n = (int)nb;
  return CLI_OK;
}

static int calibrate(cq_module *m, cq_tensor **batches, int nb, const char *calib_path) {
  cq_ctx *ctx = NULL;
  if (cq_ctx_create(&ctx) != CQ_OK) return cli_error("%s", cq_last_error());
  int rc = CLI_OK;
  cli_progress bar;
  cli_progress_begin(&bar, "calibrating", nb);
  for (int k = 0; k < nb && rc == CLI_OK; k++) {
    cq_tensor *y = NULL;
    if (cq_module_forward1(m, ctx, batches[k], &y) != CQ_OK) {
      rc = cli_error("%s: calibration batch %d: %s", calib_path, k, cq_last_error());
    }
    cq_ctx_reset(ctx);
    cli_progress_update(&bar, k + 1);
  }
  cli_progress_end(&bar);
  cq_ctx_free(ctx);
  return rc;
}

/* Fine-tunes the QAT-prepared model; *final_loss is the mean loss of the last epoch. */
static int train(cq_module *m, cq_tensor **batches, int nb, const cq_tensor *labels,
                 const quantize_args *q, double *final_loss) {
  cq_optimizer *opt = NULL;
  cq_module *loss = NULL;
  cq_ctx *ctx = NULL;
  cq_tensor *one = NULL;
  cq_status st = q->sgd ? cq_sgd(&opt, m, (float)q->lr, 0.9f, 0.0f, 0.0f, 0)
                        : cq_adam(&opt, m, (float)q->lr, 0.9f, 0.999f, 1e-8f, 0.0f);
  if (st == CQ_OK) st = cq_cross_entropy_loss(&loss);
  if (st == CQ_OK) st = cq_ctx_create(&ctx);
  if (st == CQ_OK) st = cq_tensor_create(&one, CQ_F32, 0, NULL);
  int rc = st == CQ_OK ? CLI_OK : cli_error("%s", cq_last_error());
  if (rc == CLI_OK) *(float *)one->data = 1.0f;
  if (ctx) cq_ctx_set_grad(ctx, 1);
  cli_progress bar;
  cli_progress_begin(&bar, "training", rc == CLI_OK ? (int64_t)q->epochs * nb : 0);
  int64_t offset_rows = 0;
  for (long e = 0; e < q->epochs && rc == CLI_OK; e++) {
    double sum = 0;
    offset_rows = 0;
    for (int k = 0; k < nb && rc == CLI_OK; k++) {
      const int64_t rows = batches[k]->shape[0];
      cq_tensor *target = NULL, *y = NULL, *l = NULL;
      st = cq_tensor_wrap(&target, CQ_I64, 1, &batches[k]->shape[0],
                          (int64_t *)labels->data + offset_rows);
      if (st == CQ_OK) st = cq_module_forward1(m, ctx, batches[k], &y);
      if (st == CQ_OK) {
        cq_tensor *args[2] = {y, target};
        st = cq_module_forward(loss, ctx, 2, args, 1, &l);
      }
      if (st == CQ_OK) {
        cq_optimizer_zero_grad(opt);
        st = cq_ctx_backward(ctx, l, one, NULL, NULL);
      }
      if (st == CQ_OK) st = cq_optimizer_step(opt);
      if (st == CQ_OK) sum += *(const float *)l->data;
      if (st != CQ_OK) {
        rc = cli_error("%s: epoch %ld, batch %d: %s", q->calib, e + 1, k, cq_last_error());
      }
      cq_tensor_free(target);
      cq_ctx_reset(ctx);
      offset_rows += rows;
      cli_progress_update(&bar, (int64_t)e * nb + k + 1);
    }
    *final_loss = sum / nb;
  }
  cli_progress_end(&bar);
  cq_tensor_free(one);
  cq_ctx_free(ctx);
  cq_module_free(loss);
  cq_optimizer_free(opt);
  return rc;
}

/* Quantized and float nodes of the converted graph; stubs and Identity (fused away) not counted.
 * A node counts as quantized when its module is a quantized one or, when a batch is given, when its
 * output is a quantized tensor (ReLU, pools, ... running on int8). */
typedef struct node_count {
  cq_module *g;
  int next, quantized, floating;
} node_count;

static int counted(const cq_module *m) {
  return !cli_is_stub_module(m) && strcmp(cq_module_type_name(m), "Identity") != 0;
}

static cq_status count_visit(const char *name, cq_module *module, int nout,
                             cq_tensor *const *outputs, void *user) {
  (void)name;
  node_count *c = user;
  if (!counted(module)) return CQ_OK;
  const int q = cli_is_quantized_module(module) || (nout > 0 && outputs[0]->qparams);
  c->quantized += q;
  c->floating += !q;
  return CQ_OK;
}

static void count_nodes(cq_module *g, cq_tensor *batch, int *quantized, int *floating) {
  node_count c = {g, 0, 0, 0};
  cq_ctx *ctx = NULL;
  cq_tensor *out = NULL;
  if (batch && cq_ctx_create(&ctx) == CQ_OK &&
      cq_graph_forward_visit(g, ctx, 1, &batch, 1, &out, count_visit, &c) == CQ_OK) {
    cq_ctx_free(ctx);
    *quantized = c.quantized;
    *floating = c.floating;
    return;
  }
  cq_ctx_free(ctx);
  c.quantized = c.floating = 0;
  for (int k = 0; k < cq_graph_num_nodes(g); k++) {
    cq_graph_node_info info;
    cq_graph_node(g, k, &info);
    if (!counted(info.module)) continue;
    if (cli_is_quantized_module(info.module)) c.quantized++;
    else c.floating++;
  }
  *quantized = c.quantized;
  *floating = c.floating;
}

static const char *mode_name(int mode) {
  return mode == MODE_STATIC ? "static" : mode == MODE_DYNAMIC ? "dynamic" : "qat";
}

static int run_quantize(quantize_args *q) {
  cq_module *model = NULL, *float_model = NULL;
  cq_tensor *x = NULL, *labels = NULL;
  cq_tensor **batches = NULL;
  int nb = 0;
  double final_loss = 0;
  cq_atomic_file report;
  int report_open = 0, saved = 0;
  int rc = cli_load_model(q->model, &model);
  if (rc == CLI_OK && q->report) rc = cli_load_model(q->model, &float_model);
  if (rc == CLI_OK && q->calib) rc = cli_load_rows(q->calib, "calibration data", &x);
  if (rc == CLI_OK && q->labels) rc = cli_load_labels(q->labels, x->shape[0], &labels);
  if (rc == CLI_OK && x) rc = make_batches(x, q->batch, &batches, &nb);
  /* the input shape written into the ONNX file */
  int ndim = 0;
  int64_t shape[CQ_MAX_DIMS];
  if (rc == CLI_OK && x) {
    ndim = x->ndim;
    memcpy(shape, x->shape, sizeof shape);
  } else if (rc == CLI_OK) {
    rc = cli_onnx_input_shape(q->model, &ndim, shape);
    for (int d = 1; rc == CLI_OK && d < ndim; d++) {
      if (shape[d] < 0) {
        rc = cli_error("%s: input dimension %d is dynamic; give --calib X.npy so that the "
                       "quantized model's input shape is known", q->model, d);
      }
    }
    if (ndim > 0) shape[0] = 1;
  }
  cq_status st = CQ_OK;
  if (rc == CLI_OK) {
    if (q->mode == MODE_STATIC) {
      st = cq_prepare_graph(model, &q->opts);
    } else if (q->mode == MODE_QAT) {
      cq_module_train(model, 1);
      st = cq_prepare_qat_graph(model, &q->opts);
    } else {
      st = cq_quantize_dynamic_graph(model, &q->opts);
    }
    if (st != CQ_OK) rc = cli_error("%s: %s", q->model, cq_last_error());
  }
  if (rc == CLI_OK && q->mode == MODE_STATIC) rc = calibrate(model, batches, nb, q->calib);
  if (rc == CLI_OK && q->mode == MODE_QAT) {
    rc = train(model, batches, nb, labels, q, &final_loss);
    cq_module_train(model, 0);
  }
  if (rc == CLI_OK && q->mode != MODE_DYNAMIC && cq_convert_graph(model, &q->opts) != CQ_OK) {
    rc = cli_error("%s: convert: %s", q->model, cq_last_error());
  }
  if (rc == CLI_OK && q->report) {
    cli_report_options ro = {q->opts.backend, NULL, q->model, q->out};
    if (cq_atomic_open(&report, q->report) != CQ_OK) {
      rc = cli_error("%s", cq_last_error());
    } else {
      report_open = 1;
      if (cli_report_write(report.f, float_model, model, batches, nb, &ro) != CQ_OK) {
        rc = cli_error("%s: %s", q->report, cq_last_error());
      }
    }
  }
  if (rc == CLI_OK) {
    if (cq_onnx_save(model, ndim, shape, q->out) != CQ_OK) rc = cli_error("%s", cq_last_error());
    else saved = 1;
  }
  if (report_open) {
    if (rc == CLI_OK) {
      report_open = 0;
      if (cq_atomic_commit(&report) != CQ_OK) rc = cli_error("%s", cq_last_error());
    }
    if (report_open) cq_atomic_abort(&report);
  }
  if (rc == CLI_OK) {
    int nq = 0, nf = 0;
    count_nodes(model, nb ? batches[0] : NULL, &nq, &nf);
    cq_strbuf sb;
    cq_strbuf_init(&sb);
    cq_strbuf_append(&sb, "{\"output\": ");
    json_string(&sb, q->out);
    cq_strbuf_appendf(&sb, ", \"mode\": \"%s\", \"backend\": \"%s\"", mode_name(q->mode),
                      cq_backend_name(q->opts.backend));
    cq_strbuf_appendf(&sb, ", \"quantized_nodes\": %d, \"float_nodes\": %d", nq, nf);
    cq_strbuf_appendf(&sb, ", \"size_bytes\": {\"float\": %lld, \"quantized\": %lld}",
                      (long long)cli_file_size(q->model), (long long)cli_file_size(q->out));
    if (q->report) {
      cq_strbuf_append(&sb, ", \"report\": ");
      json_string(&sb, q->report);
    }
    if (q->mode == MODE_QAT) {
      cq_strbuf_appendf(&sb, ", \"optimizer\": \"%s\", \"epochs\": %ld, \"lr\": ",
                        q->sgd ? "sgd_momentum_0.9" : "adam", q->epochs);
      json_float(&sb, q->lr);
      cq_strbuf_append(&sb, ", \"final_loss\": ");
      json_float(&sb, final_loss);
    }
    cq_strbuf_append(&sb, "}");
    rc = json_emit(&sb);
    cq_strbuf_release(&sb);
  }
  if (rc != CLI_OK && saved) unlink(q->out);
  for (int k = 0; k < nb; k++) cq_tensor_free(batches[k]);
  free(batches);
  cq_tensor_free(labels);
  cq_tensor_free(x);
  cq_module_free(float_model);
  cq_module_free(model);
  return rc;
}

int cmd_quantize(int argc, char **argv) {
  quantize_args q;
  memset(&q, 0, sizeof q);
  q.exclude = calloc((size_t)argc + 1, sizeof *q.exclude);
  if (!q.exclude) return cli_error("out of memory");
  int rc = parse_args(argc, argv, &q);
  if (rc == -1) {
    rc = CLI_OK;
  } else if (rc == CLI_OK) {
    if (q.threads >= 0 && cq_set_num_threads((int)q.threads) != CQ_OK) {
      rc = cli_error("%s", cq_last_error());
    } else {
      rc = run_quantize(&q);
    }
  }
  free(q.exclude);
  return rc;
}

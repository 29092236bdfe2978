/* cquant eval MODEL.onnx --input X.npy --labels Y.npy: top-1 accuracy.
 *
 * The rows of X run through the model in batches; a row is correct when the argmax of the first
 * output over its last dimension (the first maximum on ties, as torch.argmax) equals its label. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"

static const char eval_help[] =
    "usage: cquant eval MODEL.onnx --input X.npy --labels Y.npy [--batch-size N] [--threads N]\n"
    "\n"
    "Top-1 accuracy of the model on labelled data: X is [N, ...] (float32; float64 and integer\n"
    "arrays are converted), Y holds N integer class indices (any integer dtype, [N] or [N, 1]).\n"
    "Rows run in batches of --batch-size (32).\n"
    "\n"
    "output: {\"accuracy\", \"correct\", \"count\"}\n";

/* Counts the correct rows of one batch output [rows, ..., C] (C = last dimension). */
static int count_correct(const char *model_path, const cq_tensor *y, const int64_t *labels,
                         int64_t rows, int64_t *correct) {
  cq_tensor *owned = NULL;
  const cq_tensor *f = y;
  if (y->qparams || y->dtype != CQ_F32) {
    cq_status st = y->qparams ? cq_dequantize_tensor(y, &owned) : cq_tensor_to_f32(y, &owned);
    if (st != CQ_OK) return cli_error("%s: %s", model_path, cq_last_error());
    f = owned;
  }
  const int64_t n = cq_tensor_numel(f);
  const int64_t classes = f->ndim >= 1 ? f->shape[f->ndim - 1] : 1;
  if (f->ndim < 2 || classes < 1 || f->shape[0] != rows || n != rows * classes) {
    char buf[96];
    cq_tensor_free(owned);
    return cli_error("%s: the model output %s is not one row of class scores per input row (%lld "
                     "rows)", model_path, cq_shape_str(f->ndim, f->shape, buf, sizeof buf),
                     (long long)rows);
  }
  const float *p = f->data;
  for (int64_t r = 0; r < rows; r++) {
    int64_t best = 0;
    for (int64_t c = 1; c < classes; c++) {
      float v = p[r * classes + c], b = p[r * classes + best];
      if (v > b || (isnan(v) && !isnan(b))) best = c;
    }
    *correct += best == labels[r];
  }
  cq_tensor_free(owned);
  return CLI_OK;
}

int cmd_eval(int argc, char **argv) {
  const char *model_path = NULL, *input_path = NULL, *labels_path = NULL;
  long batch = 32, threads = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(eval_help, stdout);
      return CLI_OK;
    }
    const int has_value = i + 1 < argc;
    if (!strcmp(a, "--input") || !strcmp(a, "--labels")) {
      if (!has_value) return cli_usage_error("eval", "%s needs a path", a);
      if (!strcmp(a, "--input")) input_path = argv[++i];
      else labels_path = argv[++i];
    } else if (!strcmp(a, "--batch-size")) {
      if (!has_value || cli_parse_int(argv[i + 1], 1, 1L << 30, &batch)) {
        return cli_usage_error("eval", "--batch-size needs a positive integer");
      }
      i++;
    } else if (!strcmp(a, "--threads")) {
      if (!has_value || cli_parse_int(argv[i + 1], 0, 1024, &threads)) {
        return cli_usage_error("eval", "--threads needs an integer in 0..1024");
      }
      i++;
    } else if (a[0] == '-' && a[1]) {
      return cli_usage_error("eval", "unknown option '%s'", a);
    } else if (!model_path) {
      model_path = a;
    } else {
      return cli_usage_error("eval", "unexpected argument '%s'", a);
    }
  }
  if (!model_path) return cli_usage_error("eval", "MODEL.onnx is required");
  if (!input_path || !labels_path) {
    return cli_usage_error("eval", "--input X.npy and --labels Y.npy are required");
  }
  if (threads >= 0 && cq_set_num_threads((int)threads) != CQ_OK) {
    return cli_error("%s", cq_last_error());
  }
  cq_module *model = NULL;
  cq_tensor *x = NULL, *labels = NULL;
  cq_ctx *ctx = NULL;
  int rc = cli_load_model(model_path, &model);
  if (rc == CLI_OK) rc = cli_load_rows(input_path, "input", &x);
  if (rc == CLI_OK) rc = cli_load_labels(labels_path, x->shape[0], &labels);
  if (rc == CLI_OK && cq_ctx_create(&ctx) != CQ_OK) rc = cli_error("%s", cq_last_error());
  int64_t correct = 0;
  const int64_t rows = x ? x->shape[0] : 0;
  const int nout = model ? cli_model_num_outputs(model) : 1;
  cli_progress bar;
  cli_progress_begin(&bar, "eval", rc == CLI_OK ? rows : 0);
  for (int64_t start = 0; rc == CLI_OK && start < rows; start += batch) {
    int64_t count = rows - start < batch ? rows - start : batch;
    cq_tensor *view = NULL;
    rc = cli_rows_view(x, start, count, &view);
    if (rc != CLI_OK) break;
    cq_tensor *outs[8] = {0};
    if (cq_module_forward(model, ctx, 1, &view, nout > 8 ? 8 : nout, outs) != CQ_OK) {
      rc = cli_error("%s: rows %lld..%lld: %s", model_path, (long long)start,
                     (long long)(start + count - 1), cq_last_error());
    } else {
      rc = count_correct(model_path, outs[0], (const int64_t *)labels->data + start, count,
                         &correct);
    }
    cq_tensor_free(view);
    cq_ctx_reset(ctx);
    cli_progress_update(&bar, start + count);
  }
  cli_progress_end(&bar);
  if (rc == CLI_OK) {
    cq_strbuf sb;
    cq_strbuf_init(&sb);
    cq_strbuf_append(&sb, "{\"accuracy\": ");
    json_float(&sb, (double)correct / (double)rows);
    cq_strbuf_appendf(&sb, ", \"correct\": %lld, \"count\": %lld}", (long long)correct,
                      (long long)rows);
    rc = json_emit(&sb);
    cq_strbuf_release(&sb);
  }
  cq_ctx_free(ctx);
  cq_tensor_free(labels);
  cq_tensor_free(x);
  cq_module_free(model);
  return rc;
}

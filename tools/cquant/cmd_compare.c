/* cquant compare FLOAT.onnx QUANT.onnx --input X.npy [--table]: per-layer SQNR of a quantized model
 * against its float original (layer_compare.h says how layers are paired and measured). */
#include <math.h>
#include <string.h>

#include "cli_model.h"
#include "layer_compare.h"

static const char compare_help[] =
    "usage: cquant compare FLOAT.onnx QUANT.onnx --input X.npy [--table]\n"
    "\n"
    "Runs both models on X.npy (one batch) and pairs every quantized layer with the float layer\n"
    "of the same name (a fused ConvReLU with the float ReLU after the conv). For each layer:\n"
    "  sqnr_db             the layer's own error: float and quantized layer fed the same input\n"
    "                      (torch.ao.ns Shadow); 10*log10(sum(ref^2) / sum((ref - q)^2))\n"
    "  max_abs_error, mean_abs_error   of the same pair\n"
    "  cumulative_sqnr_db  the quantized model against the float model at that layer\n"
    "Layers are sorted by sqnr_db, worst first; SQNR of identical outputs is null (infinite).\n"
    "  --table   a human-readable table instead of JSON\n"
    "\n"
    "output: {\"layers\": [{\"name\", \"type\", \"sqnr_db\", \"max_abs_error\", \"mean_abs_error\",\n"
    "         \"cumulative_sqnr_db\", \"reference\"}, ...], \"output_sqnr_db\"}\n";

static void emit_json(cq_strbuf *sb, const lc_result *r) {
  cq_strbuf_append(sb, "{\"layers\": [");
  for (int i = 0; i < r->nlayers; i++) {
    const lc_layer *L = &r->layers[i];
    cq_strbuf_append(sb, i ? ", {\"name\": " : "{\"name\": ");
    json_string(sb, L->name);
    cq_strbuf_append(sb, ", \"type\": ");
    json_string(sb, L->type);
    cq_strbuf_append(sb, ", \"sqnr_db\": ");
    json_float(sb, L->sqnr_db);
    cq_strbuf_append(sb, ", \"max_abs_error\": ");
    json_float(sb, L->max_abs_error);
    cq_strbuf_append(sb, ", \"mean_abs_error\": ");
    json_float(sb, L->mean_abs_error);
    cq_strbuf_append(sb, ", \"cumulative_sqnr_db\": ");
    json_float(sb, L->cumulative_sqnr_db);
    cq_strbuf_append(sb, ", \"reference\": ");
    json_string(sb, L->ref_name);
    cq_strbuf_append(sb, "}");
  }
  cq_strbuf_append(sb, "], \"output_sqnr_db\": ");
  json_float(sb, r->output_sqnr_db);
  cq_strbuf_append(sb, "}");
}

static void fmt_db(char *buf, size_t cap, double v) {
  if (isinf(v) && v > 0) snprintf(buf, cap, "inf");
  else snprintf(buf, cap, "%.2f", v);
}

static void emit_table(cq_strbuf *sb, const lc_result *r) {
  cq_strbuf_appendf(sb, "%-24s %-26s %10s %12s %12s %12s\n", "layer", "type", "SQNR(dB)",
                    "max|err|", "mean|err|", "cumul.(dB)");
  for (int i = 0; i < r->nlayers; i++) {
    const lc_layer *L = &r->layers[i];
    char a[32], c[32];
    fmt_db(a, sizeof a, L->sqnr_db);
    fmt_db(c, sizeof c, L->cumulative_sqnr_db);
    cq_strbuf_appendf(sb, "%-24s %-26s %10s %12.5g %12.5g %12s\n", L->name, L->type, a,
                      L->max_abs_error, L->mean_abs_error, c);
  }
  char o[32];
  fmt_db(o, sizeof o, r->output_sqnr_db);
  cq_strbuf_appendf(sb, "output SQNR: %s dB", o);
}

int cmd_compare(int argc, char **argv) {
  const char *pos[2] = {NULL, NULL};
  int npos = 0, table = 0;
  const char *input_path = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(compare_help, stdout);
      return CLI_OK;
    }
    if (!strcmp(a, "--input")) {
      if (i + 1 >= argc) return cli_usage_error("compare", "--input needs a path");
      input_path = argv[++i];
    } else if (!strcmp(a, "--table")) {
      table = 1;
    } else if (a[0] == '-' && a[1]) {
      return cli_usage_error("compare", "unknown option '%s'", a);
    } else if (npos < 2) {
      pos[npos++] = a;
    } else {
      return cli_usage_error("compare", "unexpected argument '%s'", a);
    }
  }
  if (npos < 2) return cli_usage_error("compare", "FLOAT.onnx and QUANT.onnx are required");
  if (!input_path) return cli_usage_error("compare", "--input X.npy is required");
  cq_module *fm = NULL, *qm = NULL;
  cq_tensor *x = NULL;
  lc_result r;
  memset(&r, 0, sizeof r);
  int rc = cli_load_model(pos[0], &fm);
  if (rc == CLI_OK) rc = cli_load_model(pos[1], &qm);
  if (rc == CLI_OK) rc = cli_load_rows(input_path, "input", &x);
  if (rc == CLI_OK && lc_compare(fm, qm, x, &r) != CQ_OK) {
    rc = cli_error("%s vs %s: %s", pos[0], pos[1], cq_last_error());
  }
  if (rc == CLI_OK && r.nlayers == 0) {
    rc = cli_error("%s: no quantized layer has a float layer of the same name in %s", pos[1],
                   pos[0]);
  }
  if (rc == CLI_OK) {
    lc_sort_worst_first(&r);
    cq_strbuf sb;
    cq_strbuf_init(&sb);
    if (table) emit_table(&sb, &r);
    else emit_json(&sb, &r);
    rc = json_emit(&sb);
    cq_strbuf_release(&sb);
  }
  lc_result_release(&r);
  cq_tensor_free(x);
  cq_module_free(qm);
  cq_module_free(fm);
  return rc;
}

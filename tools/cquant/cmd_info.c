/* cquant info MODEL.onnx [--json]: the model as PyTorch prints it, or a JSON summary. */
#include <stdlib.h>
#include <string.h>

#include "cli_model.h"

static const char info_help[] =
    "usage: cquant info MODEL.onnx [--json]\n"
    "\n"
    "Prints the model as print(model) does in PyTorch 1.13. With --json, prints instead\n"
    "{\"repr\", \"class\", \"inputs\", \"outputs\", \"nodes\", \"op_counts\": {TYPE: n, ...},\n"
    " \"parameters\", \"quantized_nodes\", \"input_shape\"}; parameters counts the elements of\n"
    "every parameter and buffer (quantized weights included).\n";

static cq_status count_elements(const char *key, cq_named_tensor *t, void *user) {
  (void)key;
  *(int64_t *)user += cq_tensor_numel(t->tensor);
  return CQ_OK;
}

static void emit_summary(cq_strbuf *sb, cq_module *m, const char *repr, int ndim,
                         const int64_t *shape) {
  cq_strbuf_append(sb, "{\"repr\": ");
  json_string(sb, repr);
  cq_strbuf_append(sb, ", \"class\": ");
  json_string(sb, cq_module_type_name(m));
  const int nnodes = cq_is_graph(m) ? cq_graph_num_nodes(m) : cq_module_num_children(m);
  cq_strbuf_appendf(sb, ", \"inputs\": %d, \"outputs\": %d, \"nodes\": %d",
                    cq_is_graph(m) ? cq_graph_num_inputs(m) : 1, cli_model_num_outputs(m),
                    nnodes);
  /* op counts in order of first appearance */
  cq_strbuf_append(sb, ", \"op_counts\": {");
  int quantized = 0, first = 1;
  for (int k = 0; k < nnodes; k++) {
    cq_module *c = cq_is_graph(m) ? NULL : cq_module_child(m, k);
    if (!c) {
      cq_graph_node_info info;
      cq_graph_node(m, k, &info);
      c = info.module;
    }
    quantized += cli_is_quantized_module(c);
    const char *t = cq_module_type_name(c);
    int seen = 0, count = 0;
    for (int j = 0; j < nnodes; j++) {
      cq_module *o = cq_is_graph(m) ? NULL : cq_module_child(m, j);
      if (!o) {
        cq_graph_node_info info;
        cq_graph_node(m, j, &info);
        o = info.module;
      }
      if (strcmp(cq_module_type_name(o), t) == 0) {
        if (j < k) seen = 1;
        count++;
      }
    }
    if (seen) continue;
    if (!first) cq_strbuf_append(sb, ", ");
    first = 0;
    json_string(sb, t);
    cq_strbuf_appendf(sb, ": %d", count);
  }
  int64_t params = 0;
  cq_module_visit_tensors(m, count_elements, &params);
  cq_strbuf_appendf(sb, "}, \"parameters\": %lld, \"quantized_nodes\": %d", (long long)params,
                    quantized);
  cq_strbuf_append(sb, ", \"input_shape\": [");
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) cq_strbuf_appendf(sb, "%snull", d ? ", " : "");
    else cq_strbuf_appendf(sb, "%s%lld", d ? ", " : "", (long long)shape[d]);
  }
  cq_strbuf_append(sb, "]}");
}

int cmd_info(int argc, char **argv) {
  const char *path = NULL;
  int as_json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(info_help, stdout);
      return CLI_OK;
    }
    if (!strcmp(a, "--json")) {
      as_json = 1;
    } else if (a[0] == '-' && a[1]) {
      return cli_usage_error("info", "unknown option '%s'", a);
    } else if (!path) {
      path = a;
    } else {
      return cli_usage_error("info", "unexpected argument '%s'", a);
    }
  }
  if (!path) return cli_usage_error("info", "MODEL.onnx is required");
  cq_module *m = NULL;
  int rc = cli_load_model(path, &m);
  if (rc != CLI_OK) return rc;
  char *repr = cq_module_repr_alloc(m);
  int ndim = 0;
  int64_t shape[CQ_MAX_DIMS];
  if (!repr) rc = cli_error("out of memory");
  if (rc == CLI_OK && as_json) rc = cli_onnx_input_shape(path, &ndim, shape);
  if (rc == CLI_OK) {
    cq_strbuf sb;
    cq_strbuf_init(&sb);
    if (as_json) emit_summary(&sb, m, repr, ndim, shape);
    else cq_strbuf_append(&sb, repr);
    rc = json_emit(&sb);
    cq_strbuf_release(&sb);
  }
  free(repr);
  cq_module_free(m);
  return rc;
}

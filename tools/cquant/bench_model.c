/* cquant bench MODEL.onnx --input X.npy [--against OTHER.onnx]: the latency of a whole model.
 *
 * The model runs on the input batch as `cquant run` would (each call: forward, then the outputs
 * are released); the median over the repetitions is reported. With --against, the other model
 * (typically the float original of a quantized model) is timed on the same input in the same
 * process, and the ratio of the two medians is the speedup. With --profile, the model then runs
 * as many times again node by node under cq_graph_forward_profile, and each node's mean time per
 * run is reported. */
#include <stdlib.h>
#include <string.h>

#include "bench_timing.h"
#include "cli.h"

int bench_model(int argc, char **argv);

static const char bench_model_help[] =
    "usage: cquant bench MODEL.onnx --input X.npy [--against OTHER.onnx] [OPTIONS]\n"
    "\n"
    "Times the model on the input batch and prints JSON with the median milliseconds per run;\n"
    "with --against, the other model is timed on the same input and \"speedup\" is its median\n"
    "divided by MODEL's.\n"
    "\n"
    "options:\n"
    "  --threads T        threads of the library's pool (1)\n"
    "  --reps R           timed repetitions; the median is reported (9)\n"
    "  --min-ms MS        each repetition runs the model for at least MS ms (50)\n"
    "  --profile          also the mean milliseconds per run of every node (layer), in order\n"
    "\n"
    "output: {\"model\", \"input_shape\", \"threads\", \"reps\", \"median_ms\", \"min_ms\"[,\n"
    "         \"against\", \"against_median_ms\", \"against_min_ms\", \"speedup\"][,\n"
    "         \"profile\": {\"runs\", \"nodes_ms\",\n"
    "                     \"nodes\": [{\"node\", \"type\", \"ms\"}, ...]}]}\n";

typedef struct model_call {
  cq_module *model;
  cq_ctx *ctx;
  cq_tensor *x;
  cq_status st;
} model_call;

static void run_model(void *p) {
  model_call *c = p;
  cq_tensor *y = NULL;
  cq_status st = cq_module_forward1(c->model, c->ctx, c->x, &y);
  cq_ctx_reset(c->ctx);
  if (st != CQ_OK && c->st == CQ_OK) c->st = st;
}

/* Runs the model `runs` times node by node and appends the "profile" member to sb. */
static cq_status profile_model(model_call *c, long runs, cq_strbuf *sb) {
  const int n = cq_graph_num_nodes(c->model);
  double *seconds = calloc((size_t)n + 1, sizeof *seconds);
  if (!seconds) return cq_fail(CQ_ENOMEM, "out of memory for the profile");
  cq_status st = CQ_OK;
  for (long r = 0; r < runs && st == CQ_OK; r++) {
    cq_tensor *y = NULL;
    st = cq_graph_forward_profile(c->model, c->ctx, 1, &c->x, 1, &y, seconds);
    cq_ctx_reset(c->ctx);
  }
  if (st == CQ_OK) {
    double total = 0;
    for (int k = 0; k < n; k++) total += seconds[k];
    cq_strbuf_appendf(sb, ", \"profile\": {\"runs\": %ld, \"nodes_ms\": ", runs);
    json_float(sb, total * 1e3 / (double)runs);
    cq_strbuf_append(sb, ", \"nodes\": [");
    for (int k = 0; k < n && st == CQ_OK; k++) {
      cq_graph_node_info info;
      st = cq_graph_node(c->model, k, &info);
      if (st != CQ_OK) break;
      cq_strbuf_append(sb, k ? ", {\"node\": " : "{\"node\": ");
      json_string(sb, info.name);
      cq_strbuf_append(sb, ", \"type\": ");
      json_string(sb, cq_module_type_name(info.module));
      cq_strbuf_append(sb, ", \"ms\": ");
      json_float(sb, seconds[k] * 1e3 / (double)runs);
      cq_strbuf_append(sb, "}");
    }
    cq_strbuf_append(sb, "]}");
  }
  free(seconds);
  return st;
}

/* Times one model (and profiles it when profile is not NULL: the JSON member is appended there);
 * CLI_OK or CLI_FAILED (message printed). */
static int time_model(const char *path, cq_tensor *x, int reps, double min_ms, double *median,
                      double *minimum, cq_strbuf *profile) {
  cq_module *model = NULL;
  if (cq_onnx_load(path, &model) != CQ_OK) return cli_error("%s", cq_last_error());
  if (profile && !cq_is_graph(model)) {
    cq_module_free(model);
    return cli_error("%s: --profile needs a graph model", path);
  }
  model_call c = {model, NULL, x, CQ_OK};
  if (cq_ctx_create(&c.ctx) != CQ_OK) {
    cq_module_free(model);
    return cli_error("%s", cq_last_error());
  }
  long calls = 0;
  cq_status st = bench_loop(run_model, &c, &c.st, reps, min_ms, median, minimum, &calls);
  if (st == CQ_OK && profile) st = profile_model(&c, calls < 10 ? 10 : calls, profile);
  cq_ctx_free(c.ctx);
  cq_module_free(model);
  if (st != CQ_OK) return cli_error("%s: %s", path, cq_last_error());
  return CLI_OK;
}

int bench_model(int argc, char **argv) {
  const char *model = NULL, *input = NULL, *against = NULL;
  int rc, profile = 0;
  bench_timing timing = {1, 9, 50.0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const int has_value = i + 1 < argc;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(bench_model_help, stdout);
      return CLI_OK;
    } else if (!strcmp(a, "--input") && has_value) {
      input = argv[++i];
    } else if (!strcmp(a, "--against") && has_value) {
      against = argv[++i];
    } else if (!strcmp(a, "--profile")) {
      profile = 1;
    } else if ((rc = bench_timing_option(argc, argv, &i, &timing)) >= 0) {
      if (rc != CLI_OK) return rc;
    } else if (a[0] != '-' && !model) {
      model = a;
    } else {
      return cli_usage_error("bench", "unexpected argument '%s'", a);
    }
  }
  if (!model) return cli_usage_error("bench", "a MODEL.onnx is required");
  if (!input) return cli_usage_error("bench", "--input X.npy is required with a model");
  cq_tensor *x = NULL;
  if (cq_npy_load(input, &x) != CQ_OK) return cli_error("%s", cq_last_error());
  if (x->dtype != CQ_F32) {
    cq_tensor *f = NULL;
    cq_status st = cq_tensor_to_f32(x, &f);
    cq_tensor_free(x);
    if (st != CQ_OK) return cli_error("%s: %s", input, cq_last_error());
    x = f;
  }
  cq_set_num_threads(timing.threads);
  double med = 0, mn = 0, amed = 0, amn = 0;
  cq_strbuf prof;
  cq_strbuf_init(&prof);
  rc = time_model(model, x, timing.reps, timing.min_ms, &med, &mn, profile ? &prof : NULL);
  if (rc == CLI_OK && against) {
    rc = time_model(against, x, timing.reps, timing.min_ms, &amed, &amn, NULL);
  }
  if (rc == CLI_OK) {
    cq_strbuf sb;
    cq_strbuf_init(&sb);
    cq_strbuf_append(&sb, "{\"model\": ");
    json_string(&sb, model);
    cq_strbuf_append(&sb, ", \"input_shape\": [");
    for (int d = 0; d < x->ndim; d++) {
      cq_strbuf_appendf(&sb, d ? ", %lld" : "%lld", (long long)x->shape[d]);
    }
    cq_strbuf_appendf(&sb, "], \"threads\": %d, \"reps\": %d, \"median_ms\": ", timing.threads,
                      timing.reps);
    json_float(&sb, med);
    cq_strbuf_append(&sb, ", \"min_ms\": ");
    json_float(&sb, mn);
    if (against) {
      cq_strbuf_append(&sb, ", \"against\": ");
      json_string(&sb, against);
      cq_strbuf_append(&sb, ", \"against_median_ms\": ");
      json_float(&sb, amed);
      cq_strbuf_append(&sb, ", \"against_min_ms\": ");
      json_float(&sb, amn);
      cq_strbuf_append(&sb, ", \"speedup\": ");
      json_float(&sb, med > 0 ? amed / med : 0.0);
    }
    if (profile) cq_strbuf_append(&sb, cq_strbuf_str(&prof));
    cq_strbuf_append(&sb, "}");
    rc = json_emit(&sb);
    cq_strbuf_release(&sb);
  }
  cq_strbuf_release(&prof);
  cq_tensor_free(x);
  return rc;
}

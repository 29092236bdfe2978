/* cquant run MODEL.onnx INPUT.npy -o OUTPUT.npy: one forward pass over the whole input.
 *
 * A model with one output writes it to OUTPUT.npy. A model with several writes OUTPUT_0.npy,
 * OUTPUT_1.npy, ... (the suffix goes before a ".npy" extension, or at the end of a name without
 * one). Quantized outputs are written as their float values. Every file is written atomically;
 * when one fails, those already written are removed. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli_model.h"

#define RUN_MAX_OUTPUTS 8 /* a graph has at most 8 outputs (graph.h) */

static const char run_help[] =
    "usage: cquant run MODEL.onnx INPUT.npy -o OUTPUT.npy [--threads N]\n"
    "\n"
    "Runs the model once on INPUT.npy (float32; float64 and integer arrays are converted) and\n"
    "writes the output as float32 .npy. A model with several outputs writes OUTPUT_0.npy,\n"
    "OUTPUT_1.npy, ...\n"
    "\n"
    "output: {\"outputs\": [{\"path\", \"shape\", \"dtype\"}, ...]}\n";

/* OUT with "_i" before its ".npy" extension. */
static char *output_path(const char *out, int i, int n) {
  size_t len = strlen(out);
  char *p = malloc(len + 16);
  if (!p) return NULL;
  if (n == 1) {
    memcpy(p, out, len + 1);
    return p;
  }
  size_t stem = len >= 4 && strcmp(out + len - 4, ".npy") == 0 ? len - 4 : len;
  snprintf(p, len + 16, "%.*s_%d%s", (int)stem, out, i, out + stem);
  return p;
}

int cmd_run(int argc, char **argv) {
  const char *pos[2] = {NULL, NULL};
  int npos = 0;
  const char *out_path = NULL;
  long threads = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(run_help, stdout);
      return CLI_OK;
    }
    if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
      if (i + 1 >= argc) return cli_usage_error("run", "%s needs a path", a);
      out_path = argv[++i];
    } else if (!strcmp(a, "--threads")) {
      if (i + 1 >= argc || cli_parse_int(argv[i + 1], 0, 1024, &threads)) {
        return cli_usage_error("run", "--threads needs an integer in 0..1024");
      }
      i++;
    } else if (a[0] == '-' && a[1]) {
      return cli_usage_error("run", "unknown option '%s'", a);
    } else if (npos < 2) {
      pos[npos++] = a;
    } else {
      return cli_usage_error("run", "unexpected argument '%s'", a);
    }
  }
  if (npos < 2) return cli_usage_error("run", "MODEL.onnx and INPUT.npy are required");
  if (!out_path) return cli_usage_error("run", "-o OUTPUT.npy is required");
  if (threads >= 0 && cq_set_num_threads((int)threads) != CQ_OK) {
    return cli_error("%s", cq_last_error());
  }

  cq_module *model = NULL;
  cq_tensor *x = NULL;
  cq_ctx *ctx = NULL;
  char *paths[RUN_MAX_OUTPUTS] = {0};
  int written = 0;
  cq_strbuf sb;
  cq_strbuf_init(&sb);
  int rc = cli_load_model(pos[0], &model);
  if (rc == CLI_OK) rc = cli_load_rows(pos[1], "input", &x);
  if (rc == CLI_OK && cq_ctx_create(&ctx) != CQ_OK) rc = cli_error("%s", cq_last_error());
  int nout = model ? cli_model_num_outputs(model) : 0;
  if (nout > RUN_MAX_OUTPUTS) nout = RUN_MAX_OUTPUTS;
  cq_tensor *outs[RUN_MAX_OUTPUTS] = {0};
  if (rc == CLI_OK && cq_module_forward(model, ctx, 1, &x, nout, outs) != CQ_OK) {
    rc = cli_error("%s: %s", pos[0], cq_last_error());
  }
  if (rc == CLI_OK) cq_strbuf_append(&sb, "{\"outputs\": [");
  for (int i = 0; rc == CLI_OK && i < nout; i++) {
    cq_tensor *y = outs[i], *yf = NULL;
    paths[i] = output_path(out_path, i, nout);
    if (!paths[i]) {
      rc = cli_error("out of memory");
      break;
    }
    cq_status st = CQ_OK;
    if (y->qparams) {
      st = cq_dequantize_tensor(y, &yf);
    } else if (y->dtype != CQ_F32) {
      st = cq_tensor_to_f32(y, &yf);
    }
    if (st == CQ_OK) st = cq_npy_save(paths[i], yf ? yf : y);
    cq_tensor_free(yf);
    if (st != CQ_OK) {
      rc = cli_error("%s", cq_last_error());
      break;
    }
    written++;
    char shape[128];
    cq_strbuf_append(&sb, i ? ", {\"path\": " : "{\"path\": ");
    json_string(&sb, paths[i]);
    cq_strbuf_appendf(&sb, ", \"shape\": %s, \"dtype\": \"float32\"}",
                      cq_shape_str(y->ndim, y->shape, shape, sizeof shape));
  }
  if (rc == CLI_OK) {
    cq_strbuf_append(&sb, "]}");
    rc = json_emit(&sb);
  }
  if (rc != CLI_OK) {
    for (int i = 0; i < written; i++) unlink(paths[i]);
  }
  for (int i = 0; i < RUN_MAX_OUTPUTS; i++) free(paths[i]);
  cq_strbuf_release(&sb);
  cq_ctx_free(ctx);
  cq_tensor_free(x);
  cq_module_free(model);
  return rc;
}

/* cquant observe: feed .npy batches to one observer and print what calculate_qparams gives.
 *
 *   cquant observe --observer NAME [--dtype quint8|qint8|qint32|quint4x2] [--qscheme SCHEME]
 *                  [--reduce-range] [--ch-axis N] [--averaging-constant C] [--bins N]
 *                  [--upsample-rate N] [--quant-min N --quant-max N] [--eps E]
 *                  [--percentile P] [--start-bin N] [--stride N] BATCH.npy...
 *
 * Each file is one batch (one forward() call), in the order given. */
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char observe_help[] =
    "usage: cquant observe --observer NAME [OPTIONS] BATCH.npy...\n"
    "\n"
    "Runs one observer over the batches (each .npy file is one forward() call, in order) and\n"
    "prints the quantization parameters PyTorch 1.13 would compute, as JSON.\n"
    "\n"
    "observers: minmax, moving_average_minmax, histogram, per_channel_minmax,\n"
    "           moving_average_per_channel_minmax, percentile, mse, entropy\n"
    "options (defaults are PyTorch's constructor defaults):\n"
    "  --dtype quint8|qint8|qint32|quint4x2   (quint8)\n"
    "  --qscheme per_tensor_affine|per_tensor_symmetric|per_channel_affine|\n"
    "            per_channel_symmetric|per_channel_affine_float_qparams\n"
    "  --reduce-range                         halve the integer range\n"
    "  --quant-min N --quant-max N            custom integer range (give both)\n"
    "  --eps E                                scale floor (1.1920928955078125e-07)\n"
    "  --ch-axis N                            per-channel axis (0)\n"
    "  --averaging-constant C                 moving-average observers (0.01)\n"
    "  --bins N                               histogram bins (2048)\n"
    "  --upsample-rate N                      histogram upsample rate (128)\n"
    "  --percentile P                         percentile calibrator (99.99)\n"
    "  --start-bin N --stride N               mse/entropy candidate thresholds (128, 1)\n"
    "\n"
    "output: {\"observer\", \"dtype\", \"qscheme\", \"quant_min\", \"quant_max\", \"batches\",\n"
    "         \"scale\": [...], \"zero_point\": [...], \"min_val\": [...], \"max_val\": [...],\n"
    "         \"repr\"}\n";

/* Command-line flag -> observer config key; `flag_only` options take no value. */
typedef struct option_map {
  const char *flag;
  const char *key;
  int flag_only;
} option_map;

static const option_map options[] = {
    {"--dtype", "dtype", 0},
    {"--qscheme", "qscheme", 0},
    {"--reduce-range", "reduce_range", 1},
    {"--quant-min", "quant_min", 0},
    {"--quant-max", "quant_max", 0},
    {"--eps", "eps", 0},
    {"--ch-axis", "ch_axis", 0},
    {"--averaging-constant", "averaging_constant", 0},
    {"--bins", "bins", 0},
    {"--upsample-rate", "upsample_rate", 0},
    {"--percentile", "percentile", 0},
    {"--start-bin", "start_bin", 0},
    {"--stride", "stride", 0},
};

static void emit_result(cq_strbuf *sb, const cq_observer *obs, const cq_qparams *qp, int batches) {
  const cq_observer_config *cfg = cq_observer_config_of(obs);
  int32_t qmin, qmax;
  cq_observer_quant_range(obs, &qmin, &qmax);
  cq_strbuf_append(sb, "{\"observer\": ");
  json_string(sb, cq_observer_kind_name(cfg->kind));
  cq_strbuf_append(sb, ", \"dtype\": ");
  json_string(sb, cq_qdtype_name(cfg->dtype));
  cq_strbuf_append(sb, ", \"qscheme\": ");
  json_string(sb, cq_qscheme_name(cfg->qscheme));
  cq_strbuf_appendf(sb, ", \"quant_min\": %d, \"quant_max\": %d, \"batches\": %d", qmin, qmax,
                    batches);
  cq_strbuf_append(sb, ", \"scale\": ");
  json_float_array(sb, qp->scale, qp->count);
  cq_strbuf_append(sb, ", \"zero_point\": ");
  if (qp->zero_point_float) {
    json_float_array(sb, qp->zero_point_float, qp->count);
  } else {
    json_int_array(sb, qp->zero_point, qp->count);
  }
  int64_t n = cq_observer_min_max(obs, NULL, NULL, 0);
  float *mn = malloc(sizeof(float) * (size_t)(n ? n : 1));
  float *mx = malloc(sizeof(float) * (size_t)(n ? n : 1));
  if (mn && mx) {
    cq_observer_min_max(obs, mn, mx, n);
    cq_strbuf_append(sb, ", \"min_val\": ");
    json_float_array(sb, mn, n);
    cq_strbuf_append(sb, ", \"max_val\": ");
    json_float_array(sb, mx, n);
  } else {
    sb->failed = 1;
  }
  free(mn);
  free(mx);
  size_t len = cq_observer_repr(obs, NULL, 0);
  char *repr = malloc(len + 1);
  if (repr) {
    cq_observer_repr(obs, repr, len + 1);
    cq_strbuf_append(sb, ", \"repr\": ");
    json_string(sb, repr);
    free(repr);
  } else {
    sb->failed = 1;
  }
  cq_strbuf_append(sb, "}");
}

int cmd_observe(int argc, char **argv) {
  const char *observer_name = NULL;
  const char **files = calloc((size_t)argc, sizeof *files);
  int nfiles = 0;
  int have_min = 0, have_max = 0;
  cq_observer_config cfg;
  /* Options may come in any order, so collect them first and apply after --observer. */
  const char **keys = calloc((size_t)argc, sizeof *keys);
  const char **values = calloc((size_t)argc, sizeof *values);
  int nopts = 0;
  int rc = CLI_OK;
  cq_observer *obs = NULL;
  cq_qparams qp;
  memset(&qp, 0, sizeof qp);
  cq_strbuf sb;
  cq_strbuf_init(&sb);
  if (!files || !keys || !values) {
    rc = cli_error("out of memory");
    goto done;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(observe_help, stdout);
      goto done;
    }
    if (!strcmp(a, "--observer")) {
      if (i + 1 >= argc) {
        rc = cli_usage_error("observe", "--observer needs a value");
        goto done;
      }
      observer_name = argv[++i];
      continue;
    }
    if (!strncmp(a, "--", 2)) {
      const option_map *m = NULL;
      for (size_t k = 0; k < sizeof options / sizeof options[0]; k++) {
        if (!strcmp(a, options[k].flag)) m = &options[k];
      }
      if (!m) {
        rc = cli_usage_error("observe", "unknown option '%s'", a);
        goto done;
      }
      keys[nopts] = m->key;
      if (m->flag_only) {
        values[nopts++] = "1";
      } else {
        if (i + 1 >= argc) {
          rc = cli_usage_error("observe", "%s needs a value", a);
          goto done;
        }
        values[nopts++] = argv[++i];
      }
      if (!strcmp(m->key, "quant_min")) have_min = 1;
      if (!strcmp(m->key, "quant_max")) have_max = 1;
      continue;
    }
    files[nfiles++] = a;
  }
  if (!observer_name) {
    rc = cli_usage_error("observe", "--observer NAME is required");
    goto done;
  }
  if (have_min != have_max) {
    rc = cli_usage_error("observe", "--quant-min and --quant-max must be given together");
    goto done;
  }
  if (nfiles == 0) {
    rc = cli_usage_error("observe", "no batch files given");
    goto done;
  }
  if (cq_observer_config_set(&cfg, "observer", observer_name) != CQ_OK) {
    rc = cli_usage_error("observe", "%s", cq_last_error());
    goto done;
  }
  for (int k = 0; k < nopts; k++) {
    if (cq_observer_config_set(&cfg, keys[k], values[k]) != CQ_OK) {
      rc = cli_usage_error("observe", "%s", cq_last_error());
      goto done;
    }
  }
  if (cq_observer_create(&cfg, &obs) != CQ_OK) {
    rc = cli_error("%s", cq_last_error());
    goto done;
  }
  for (int f = 0; f < nfiles; f++) {
    cq_tensor *batch = NULL;
    if (cq_npy_load(files[f], &batch) != CQ_OK) {
      rc = cli_error("%s", cq_last_error());
      goto done;
    }
    cq_status st = cq_observer_update_tensor(obs, batch);
    cq_tensor_free(batch);
    if (st != CQ_OK) {
      rc = cli_error("%s: %s", files[f], cq_last_error());
      goto done;
    }
  }
  if (cq_observer_qparams(obs, &qp) != CQ_OK) {
    rc = cli_error("%s", cq_last_error());
    goto done;
  }
  emit_result(&sb, obs, &qp, nfiles);
  rc = json_emit(&sb);
done:
  cq_strbuf_release(&sb);
  cq_qparams_release(&qp);
  cq_observer_free(obs);
  free(files);
  free(keys);
  free(values);
  return rc;
}

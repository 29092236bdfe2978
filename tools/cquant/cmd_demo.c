/* cquant demo: the seed's examples computed by cquant, then a real model on real images quantized
 * the three ways the seed teaches.
 *
 * Part 1 is the seed's observer example: two 3x4 batches through MinMaxObserver,
 * MovingAverageMinMaxObserver and HistogramObserver, printed as PyTorch prints
 * `obs.__class__.__name__, obs.calculate_qparams()`, beside what the seed printed.
 *
 * Part 2 takes the two models of demo_models.h with their committed float weights (models/,
 * trained by examples/train_demo_models.c) and measures, on the Fashion-MNIST images in the data
 * folder, each variant of demo.h: accuracy, size, and batch-1 / batch-16 latency with the speedup
 * over float. The exit status is 1 if anything fails or an observer line differs from the seed's. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <unistd.h>

#include "core/pyformat.h"
#include "demo.h"
#include "report_html.h"

/* ---- part 1: the seed's observer example ------------------------------------------------------- */

/* The two inputs exactly as the seed prints them (torch.distributions.normal samples, 4 decimals). */
static const float seed_inputs[2][12] = {
    {-0.0590f, 1.1674f, 0.7119f, -1.1270f, -1.3974f, 0.5077f, -0.5601f, 0.0683f, -0.0929f, 0.9473f,
     0.7159f, -0.4574f},
    {-0.0236f, -0.7599f, 1.0290f, 0.8914f, -1.1727f, -1.2556f, -0.2271f, 0.9568f, -0.2500f, 1.4579f,
     1.4707f, 0.4043f},
};

/* What the seed prints for each observer. */
static const struct {
  cq_observer_kind kind;
  const char *seed_line;
} seed_observers[] = {
    {CQ_OBSERVER_MINMAX, "MinMaxObserver (tensor([0.0112]), tensor([124], dtype=torch.int32))"},
    {CQ_OBSERVER_MOVING_AVERAGE_MINMAX,
     "MovingAverageMinMaxObserver (tensor([0.0101]), tensor([139], dtype=torch.int32))"},
    {CQ_OBSERVER_HISTOGRAM,
     "HistogramObserver (tensor([0.0100]), tensor([106], dtype=torch.int32))"},
};

/* Formats "Name (tensor([scale]), tensor([zp], dtype=torch.int32))" as the seed's print does. */
static void format_qparams_line(cq_strbuf *sb, cq_observer_kind kind, const cq_qparams *qp) {
  cq_strbuf_appendf(sb, "%s (", cq_observer_class_name(kind));
  cq_format_torch_tensor_1d(sb, qp->scale, qp->count);
  cq_strbuf_append(sb, ", ");
  int64_t zp[1] = {qp->zero_point[0]};
  cq_format_torch_int_tensor_1d(sb, zp, 1, "torch.int32");
  cq_strbuf_append(sb, ")");
}

/* Runs the example; prints it (text mode) and/or appends it to *json as
 * {"matches_seed": B, "lines": [{"cquant": ..., "seed": ..., "repr": ...}, ...]}. */
static int observer_example(int print_text, cq_strbuf *json) {
  int64_t shape[2] = {3, 4};
  int mismatches = 0;
  cq_strbuf lines;
  cq_strbuf_init(&lines);
  if (print_text) {
    printf("The seed's observer example: two 3x4 batches, default observers\n\n");
    printf("  %-74s %s\n", "cquant", "matches the seed");
  }
  for (size_t i = 0; i < sizeof seed_observers / sizeof seed_observers[0]; i++) {
    cq_observer_config cfg = cq_observer_defaults(seed_observers[i].kind);
    cq_observer *obs = NULL;
    cq_qparams qp;
    memset(&qp, 0, sizeof qp);
    cq_status st = cq_observer_create(&cfg, &obs);
    for (int b = 0; b < 2 && st == CQ_OK; b++) {
      st = cq_observer_update(obs, seed_inputs[b], 2, shape);
    }
    if (st == CQ_OK) st = cq_observer_qparams(obs, &qp);
    if (st != CQ_OK) {
      cq_observer_free(obs);
      cq_strbuf_release(&lines);
      return cli_error("demo: %s", cq_last_error());
    }
    cq_strbuf line;
    cq_strbuf_init(&line);
    format_qparams_line(&line, seed_observers[i].kind, &qp);
    int same = strcmp(cq_strbuf_str(&line), seed_observers[i].seed_line) == 0;
    mismatches += !same;
    char repr[256];
    cq_observer_repr(obs, repr, sizeof repr);
    if (print_text) printf("  %-74s %s\n      %s\n", cq_strbuf_str(&line), same ? "yes" : "NO", repr);
    cq_strbuf_append(&lines, i ? ", {\"cquant\": " : "{\"cquant\": ");
    json_string(&lines, cq_strbuf_str(&line));
    cq_strbuf_append(&lines, ", \"seed\": ");
    json_string(&lines, seed_observers[i].seed_line);
    cq_strbuf_append(&lines, ", \"repr\": ");
    json_string(&lines, repr);
    cq_strbuf_append(&lines, "}");
    cq_strbuf_release(&line);
    cq_qparams_release(&qp);
    cq_observer_free(obs);
  }
  if (print_text) printf("\n");
  cq_strbuf_appendf(json, "{\"matches_seed\": %s, \"lines\": [%s]}", mismatches ? "false" : "true",
                    cq_strbuf_str(&lines));
  cq_strbuf_release(&lines);
  if (mismatches) return cli_error("demo: %d observer(s) differ from the seed", mismatches);
  return CLI_OK;
}

/* ---- part 2: the models ------------------------------------------------------------------------- */

/* The float baseline's GEMM is OpenBLAS, which runs its own threads (one per core unless told
 * otherwise) outside cq_set_num_threads. The demo gives it the same --threads, so float and int8
 * are timed on the same number of cores. Weak: with another BLAS the call is simply absent. */
extern void openblas_set_num_threads(int n) __attribute__((weak));

/* A forward allocates every intermediate tensor and frees it at cq_ctx_reset. With glibc's default
 * settings, blocks over 128 KiB come from mmap and go back to the system on free, so every batch-16
 * forward would pay page faults for its activations, more than its arithmetic on a busy machine.
 * The demo keeps freed memory in the heap instead, as a serving process would; this changes the
 * timings of float and int8 alike, never a result. */
static void keep_freed_memory(void) {
#ifdef __GLIBC__
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
#endif
}

static const char usage_text[] =
    "usage: cquant demo [--json] [--threads N] [--data DIR] [--models DIR] [--model cnn|lstm]\n"
    "                   [--test-images N] [--calib-images N] [--qat-steps N] [--reps N] [--quick]\n"
    "                   [--report OUT.html]\n"
    "\n"
    "Runs the seed's observer example, then quantizes two Fashion-MNIST models (a CNN and an LSTM\n"
    "row classifier, float weights from models/) the three ways the seed teaches and prints, for\n"
    "each variant, the test accuracy, the model's size and its batch-1 and batch-16 latency with the\n"
    "speedup over float. The table goes to stdout; a progress line goes to stderr on a terminal.\n"
    "\n"
    "Variants: float; dynamic int8 (quantize_dynamic of Linear and LSTM); static int8 calibrated with\n"
    "MinMax or Histogram activation observers, per-tensor or per-channel weights (eager mode: fuse,\n"
    "stubs, prepare, calibrate, convert; the LSTM has no static int8 form, only its Linear head is\n"
    "quantized); QAT (PyTorch's default x86 QAT qconfig, a short fine-tune, convert).\n"
    "\n"
    "  --json            the same numbers as one JSON object instead of the table\n"
    "  --threads N       worker threads (default 1: single-thread latency)\n"
    "  --data DIR        Fashion-MNIST IDX files (default: the subset shipped in data/fashion-mnist;\n"
    "                    /usr/share/datasets/fashion-mnist is the full set)\n"
    "  --models DIR      demo_cnn.safetensors and demo_lstm.safetensors (default: models)\n"
    "  --model NAME      only this model (cnn or lstm)\n"
    "  --test-images N   accuracy on the first N test images (default: all in DIR)\n"
    "  --calib-images N  calibration images, the first of the training split (default 1000)\n"
    "  --qat-steps N     QAT fine-tune steps of 32 images (default 100)\n"
    "  --reps N          latency repetitions, the median is reported (default 15)\n"
    "  --quick           a reduced workload for tests: --reps 3\n"
    "  --report OUT.html the quantization report of the CNN's static int8 model (histogram\n"
    "                    observers, per-channel weights): per layer, the activation histogram with\n"
    "                    the clipping range the observer chose, and the SQNR (`make demo` writes\n"
    "                    build/demo-report.html)\n";

static int is_dir(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

/* The default location of a folder of the repository: relative to the current directory (make demo
 * runs from the repository root), else beside the build folder holding this executable. */
static const char *repo_path(const char *rel, char *buf, size_t cap) {
  if (is_dir(rel)) return rel;
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n > 0) {
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) {
      *slash = '\0';
      int k = snprintf(buf, cap, "%s/../%s", exe, rel);
      if (k > 0 && (size_t)k < cap && is_dir(buf)) return buf;
    }
  }
  return rel; /* reported as missing when its files are read */
}

static int parse_count(const char *opt, const char *text, int64_t min, int64_t max, int64_t *out) {
  char *end = NULL;
  long long v = strtoll(text, &end, 10);
  if (!*text || *end || v < min || v > max) {
    return cli_usage_error("demo", "%s must be an integer in [%lld, %lld], got '%s'", opt,
                           (long long)min, (long long)max, text);
  }
  *out = v;
  return CLI_OK;
}

static int parse_options(int argc, char **argv, demo_options *o, char *buf_data, char *buf_models,
                         size_t cap) {
  memset(o, 0, sizeof *o);
  o->threads = 1;
  o->calib_images = 1000;
  o->qat_images = 4000;
  o->qat_steps = 100;
  o->qat_batch = 32;
  o->reps = 15;
  o->models_mask = (1 << DEMO_MODEL_COUNT) - 1;
  o->data_dir = NULL;
  o->models_dir = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *val = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t n = 0;
    int rc = CLI_OK;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(usage_text, stdout);
      return -1;
    } else if (!strcmp(a, "--json")) {
      o->json = 1;
      continue;
    } else if (!strcmp(a, "--quick")) {
      o->reps = 3;
      continue;
    }
    static const char *const valued[] = {"--data", "--models", "--model", "--threads",
                                         "--test-images", "--calib-images", "--qat-steps",
                                         "--reps", "--report"};
    int known = 0;
    for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++) known |= !strcmp(a, valued[k]);
    if (!known) return cli_usage_error("demo", "unknown argument '%s'", a);
    if (!val) return cli_usage_error("demo", "%s needs a value", a);
    i++;
    if (!strcmp(a, "--data")) {
      o->data_dir = val;
    } else if (!strcmp(a, "--report")) {
      o->report_path = val;
    } else if (!strcmp(a, "--models")) {
      o->models_dir = val;
    } else if (!strcmp(a, "--model")) {
      if (!strcmp(val, "cnn")) o->models_mask = 1 << DEMO_CNN;
      else if (!strcmp(val, "lstm")) o->models_mask = 1 << DEMO_LSTM;
      else return cli_usage_error("demo", "--model must be cnn or lstm, got '%s'", val);
    } else if (!strcmp(a, "--threads")) {
      if ((rc = parse_count(a, val, 1, 1024, &n)) == CLI_OK) o->threads = (int)n;
    } else if (!strcmp(a, "--test-images")) {
      if ((rc = parse_count(a, val, 16, INT64_C(1) << 40, &n)) == CLI_OK) o->test_images = n;
    } else if (!strcmp(a, "--calib-images")) {
      if ((rc = parse_count(a, val, 1, INT64_C(1) << 40, &n)) == CLI_OK) o->calib_images = n;
    } else if (!strcmp(a, "--qat-steps")) {
      if ((rc = parse_count(a, val, 1, INT64_C(1) << 30, &n)) == CLI_OK) o->qat_steps = n;
    } else if (!strcmp(a, "--reps")) {
      if ((rc = parse_count(a, val, 1, 100000, &n)) == CLI_OK) o->reps = (int)n;
    }
    if (rc != CLI_OK) return rc;
  }
  if (!o->data_dir) o->data_dir = repo_path("data/fashion-mnist", buf_data, cap);
  if (!o->models_dir) o->models_dir = repo_path("models", buf_models, cap);
  return CLI_OK;
}

/* The HTML report (report_html.h) of the static int8 model with histogram observers and
 * per-channel weights against the float model, both as graphs (the Sequential made a graph, node
 * names "0", "1", ... in both), on up to 8 calibration batches of 32 images. */
static cq_status write_report(demo_model_kind kind, const demo_inputs *in, cq_ctx *ctx) {
  cq_module *fm = NULL, *qm = NULL;
  cq_tensor *batches[8] = {NULL};
  int nb = 0;
  cq_status st = demo_make_variant(kind, DEMO_FLOAT, in, ctx, &fm);
  if (st == CQ_OK) st = demo_make_variant(kind, DEMO_STATIC_HIST_CHANNEL, in, ctx, &qm);
  if (st == CQ_OK && !cq_is_graph(fm)) st = cq_graph_from_sequential(fm);
  if (st == CQ_OK && !cq_is_graph(qm)) st = cq_graph_from_sequential(qm);
  const int64_t per = 32;
  for (int64_t start = 0; st == CQ_OK && nb < 8 && start + per <= in->calib->n; start += per) {
    const int64_t shape[4] = {per, 1, 28, 28};
    st = cq_tensor_create(&batches[nb], CQ_F32, 4, shape);
    if (st == CQ_OK) {
      memcpy(batches[nb]->data, in->calib->images + start * DEMO_PIXELS,
             sizeof(float) * (size_t)(per * DEMO_PIXELS));
      nb++;
    }
  }
  if (st == CQ_OK && nb == 0) {
    st = cq_fail(CQ_EINVAL, "the report needs at least %lld calibration images", (long long)per);
  }
  if (st == CQ_OK) {
    cli_report_options ro = {CQ_BACKEND_X86, "cquant demo: Fashion-MNIST CNN, static int8",
                             "float CNN", "static int8 (histogram, per-channel)"};
    st = cli_report_html(fm, qm, batches, nb, &ro, in->options->report_path);
  }
  for (int i = 0; i < nb; i++) cq_tensor_free(batches[i]);
  cq_module_free(fm);
  cq_module_free(qm);
  return st;
}

/* Measures every variant of one model into *mr. */
static int run_model(demo_model_kind kind, const demo_options *o, const demo_split *test,
                     const demo_split *calib, const demo_split *qat_train, demo_progress *progress,
                     cq_ctx *ctx, demo_model_results *mr) {
  char weights[4096];
  int k = snprintf(weights, sizeof weights, "%s/demo_%s.safetensors", o->models_dir,
                   demo_model_name(kind));
  if (k < 0 || (size_t)k >= sizeof weights) return cli_error("demo: --models path too long");
  demo_inputs in = {o, weights, calib, qat_train, progress};
  for (int v = 0; v < DEMO_VARIANT_COUNT; v++) {
    demo_result *r = &mr->rows[v];
    cq_module *m = NULL;
    cq_status st = demo_make_variant(kind, (demo_variant)v, &in, ctx, &m);
    if (st == CQ_OK) {
      demo_progress_stage(progress, "%s: %s: accuracy on %lld test images", demo_model_name(kind),
                          demo_variant_label((demo_variant)v), (long long)test->n);
      st = demo_accuracy(kind, m, ctx, test, 100, demo_progress_update, progress, &r->accuracy);
    }
    if (st == CQ_OK) {
      demo_progress_stage(progress, "%s: %s: latency", demo_model_name(kind),
                          demo_variant_label((demo_variant)v));
      st = demo_latency_ms(kind, m, ctx, test, 1, o->reps, &r->latency_ms[0]);
    }
    if (st == CQ_OK) st = demo_latency_ms(kind, m, ctx, test, 16, o->reps, &r->latency_ms[1]);
    if (st == CQ_OK) r->size_bytes = demo_model_bytes(m);
    cq_module_free(m);
    if (st != CQ_OK) {
      demo_progress_clear(progress);
      return cli_error("demo: %s", cq_last_error());
    }
    r->done = 1;
  }
  if (kind == DEMO_CNN && o->report_path) {
    demo_progress_stage(progress, "%s: report %s", demo_model_name(kind), o->report_path);
    cq_status st = write_report(kind, &in, ctx);
    if (st != CQ_OK) {
      demo_progress_clear(progress);
      return cli_error("demo: %s", cq_last_error());
    }
  }
  return CLI_OK;
}

static int run_models(const demo_options *o, demo_report *report) {
  demo_split test = {0}, train = {0};
  demo_progress progress;
  cq_ctx *ctx = NULL;
  demo_progress_init(&progress);
  if (o->json) progress.enabled = 0; /* --json: stdout and stderr stay machine-readable */
  int64_t train_needed = o->calib_images > o->qat_images ? o->calib_images : o->qat_images;
  demo_progress_stage(&progress, "loading Fashion-MNIST from %s", o->data_dir);
  cq_status st = demo_load_split(o->data_dir, "t10k", o->test_images, &test);
  if (st == CQ_OK && test.n < 16) {
    st = cq_fail(CQ_EINVAL, "%s: %lld test images, the batch-16 latency needs 16", o->data_dir,
                 (long long)test.n);
  }
  if (st == CQ_OK) st = demo_load_split(o->data_dir, "train", train_needed, &train);
  if (st == CQ_OK) st = cq_set_num_threads(o->threads);
  if (st == CQ_OK && openblas_set_num_threads) openblas_set_num_threads(o->threads);
  keep_freed_memory();
  if (st == CQ_OK) st = cq_ctx_create(&ctx);
  int rc = CLI_OK;
  if (st != CQ_OK) {
    demo_progress_clear(&progress);
    rc = cli_error("demo: %s", cq_last_error());
  }
  demo_split calib = demo_split_view(&train, 0, o->calib_images);
  demo_split qat_train = demo_split_view(&train, 0, o->qat_images);
  report->test_images = test.n;
  report->calib_images = calib.n;
  report->qat_images = qat_train.n;
  if (rc == CLI_OK && qat_train.n < o->qat_batch) {
    rc = cli_error("demo: %s: %lld training images, QAT needs at least %lld", o->data_dir,
                   (long long)qat_train.n, (long long)o->qat_batch);
  }
  for (int k = 0; k < DEMO_MODEL_COUNT && rc == CLI_OK; k++) {
    if (!(o->models_mask & (1 << k))) continue;
    rc = run_model((demo_model_kind)k, o, &test, &calib, &qat_train, &progress, ctx,
                   &report->models[k]);
  }
  demo_progress_clear(&progress);
  cq_ctx_free(ctx);
  demo_split_release(&test);
  demo_split_release(&train);
  return rc;
}

/* The test split and the weights, checked before anything is printed, so that a demo pointed at a
 * wrong folder leaves stdout empty (a malformed file is found when it is read). */
static int check_inputs(const demo_options *o) {
  static const char *const data[] = {"t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
  char path[8600];
  for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) {
    snprintf(path, sizeof path, "%s/%s", o->data_dir, data[i]);
    if (access(path, R_OK) != 0) return cli_error("demo: cannot read %s: %s", path, strerror(errno));
  }
  for (int k = 0; k < DEMO_MODEL_COUNT; k++) {
    if (!(o->models_mask & (1 << k))) continue;
    snprintf(path, sizeof path, "%s/demo_%s.safetensors", o->models_dir,
             demo_model_name((demo_model_kind)k));
    if (access(path, R_OK) != 0) return cli_error("demo: cannot read %s: %s", path, strerror(errno));
  }
  return CLI_OK;
}

int cmd_demo(int argc, char **argv) {
  demo_options o;
  char data_buf[4200], models_buf[4200];
  int rc = parse_options(argc, argv, &o, data_buf, models_buf, sizeof data_buf);
  if (rc < 0) return CLI_OK; /* --help */
  if (rc != CLI_OK) return rc;
  cq_strbuf observers;
  cq_strbuf_init(&observers);
  demo_report report;
  memset(&report, 0, sizeof report);
  report.options = &o;
  rc = check_inputs(&o);
  if (rc == CLI_OK) rc = observer_example(!o.json, &observers);
  if (rc == CLI_OK) rc = run_models(&o, &report);
  if (rc == CLI_OK) rc = o.json ? demo_print_json(&report, &observers) : demo_print_table(&report);
  cq_strbuf_release(&observers);
  return rc;
}

/* The demo's output: the progress line (stderr, only on a terminal), the table (stdout) and the
 * same numbers as JSON (--json). */
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "demo.h"

/* ---- progress ------------------------------------------------------------------------------------ */

void demo_progress_init(demo_progress *p) {
  memset(p, 0, sizeof *p);
  p->enabled = isatty(STDERR_FILENO);
}

void demo_progress_stage(demo_progress *p, const char *fmt, ...) {
  if (!p) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->stage, sizeof p->stage, fmt, ap);
  va_end(ap);
  if (p->enabled) {
    fprintf(stderr, "\r\033[K%s", p->stage);
    fflush(stderr);
  }
}

void demo_progress_update(void *progress, int64_t done, int64_t total) {
  demo_progress *p = progress;
  if (!p || !p->enabled || total <= 0) return;
  enum { WIDTH = 24 };
  int filled = (int)(WIDTH * done / total);
  char bar[WIDTH + 1];
  for (int i = 0; i < WIDTH; i++) bar[i] = i < filled ? '#' : '.';
  bar[WIDTH] = '\0';
  fprintf(stderr, "\r\033[K[%s] %3d%% %s", bar, (int)(100 * done / total), p->stage);
  fflush(stderr);
}

void demo_progress_clear(demo_progress *p) {
  if (p && p->enabled) {
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
  }
}

/* ---- table --------------------------------------------------------------------------------------- */

static double speedup(const demo_result *flt, const demo_result *r, int b) {
  return r->latency_ms[b] > 0 ? flt->latency_ms[b] / r->latency_ms[b] : 0.0;
}

static void print_model_table(demo_model_kind kind, const demo_model_results *mr) {
  const demo_result *flt = &mr->rows[DEMO_FLOAT];
  printf("%s\n", demo_model_summary(kind));
  printf("  %-29s %-25s %8s %6s %10s %10s %7s %10s %7s\n", "", "int8 part", "accuracy", "vs fp",
         "size (B)", "batch 1", "speedup", "batch 16", "speedup");
  for (int v = 0; v < DEMO_VARIANT_COUNT; v++) {
    const demo_result *r = &mr->rows[v];
    if (!r->done) continue;
    char delta[16] = "";
    if (v != DEMO_FLOAT) {
      snprintf(delta, sizeof delta, "%+.2f", 100.0 * (r->accuracy - flt->accuracy));
    }
    printf("  %-29s %-25s %7.2f%% %6s %10lld %7.3f ms %6.2fx %7.3f ms %6.2fx\n",
           demo_variant_label((demo_variant)v), demo_variant_int8_part(kind, (demo_variant)v),
           100.0 * r->accuracy, delta, (long long)r->size_bytes, r->latency_ms[0],
           speedup(flt, r, 0), r->latency_ms[1], speedup(flt, r, 1));
  }
  printf("\n");
}

int demo_print_table(const demo_report *r) {
  const demo_options *o = r->options;
  printf("Fashion-MNIST from %s: accuracy on %lld test images; calibration on the first %lld "
         "training images;\nQAT fine-tune: %lld steps of %lld from the first %lld training images. "
         "Latency: median of %d runs, %s.\n\n",
         o->data_dir, (long long)r->test_images, (long long)r->calib_images,
         (long long)o->qat_steps, (long long)o->qat_batch, (long long)r->qat_images, o->reps,
         o->threads == 1 ? "1 thread, its CPU time (--threads N for more)" : "wall clock");
  for (int k = 0; k < DEMO_MODEL_COUNT; k++) {
    if (o->models_mask & (1 << k)) print_model_table((demo_model_kind)k, &r->models[k]);
  }
  if (o->report_path && (o->models_mask & (1 << DEMO_CNN))) {
    printf("\nQuantization report of the CNN (activation histograms, clipping ranges, SQNR per "
           "layer): %s\n", o->report_path);
  }
  if (fflush(stdout) != 0) return cli_error("cannot write the table to standard output");
  return CLI_OK;
}

/* ---- JSON ---------------------------------------------------------------------------------------- */

static void json_row(cq_strbuf *sb, demo_model_kind kind, demo_variant v, const demo_result *r,
                     const demo_result *flt) {
  cq_strbuf_append(sb, "{\"variant\": ");
  json_string(sb, demo_variant_key(v));
  cq_strbuf_append(sb, ", \"label\": ");
  json_string(sb, demo_variant_label(v));
  cq_strbuf_append(sb, ", \"int8\": ");
  json_string(sb, demo_variant_int8_part(kind, v));
  cq_strbuf_append(sb, ", \"accuracy\": ");
  json_float(sb, r->accuracy);
  cq_strbuf_appendf(sb, ", \"size_bytes\": %lld, \"latency_ms\": {\"batch1\": ", (long long)r->size_bytes);
  json_float(sb, r->latency_ms[0]);
  cq_strbuf_append(sb, ", \"batch16\": ");
  json_float(sb, r->latency_ms[1]);
  cq_strbuf_append(sb, "}, \"speedup\": {\"batch1\": ");
  json_float(sb, speedup(flt, r, 0));
  cq_strbuf_append(sb, ", \"batch16\": ");
  json_float(sb, speedup(flt, r, 1));
  cq_strbuf_append(sb, "}}");
}

int demo_print_json(const demo_report *r, const cq_strbuf *observer_json) {
  const demo_options *o = r->options;
  cq_strbuf sb;
  cq_strbuf_init(&sb);
  cq_strbuf_append(&sb, "{\"observer_example\": ");
  cq_strbuf_append(&sb, cq_strbuf_str(observer_json));
  cq_strbuf_append(&sb, ", \"data\": ");
  json_string(&sb, o->data_dir);
  if (o->report_path && (o->models_mask & (1 << DEMO_CNN))) {
    cq_strbuf_append(&sb, ", \"report\": ");
    json_string(&sb, o->report_path);
  }
  cq_strbuf_appendf(&sb,
                    ", \"test_images\": %lld, \"calibration_images\": %lld, \"qat_images\": %lld, "
                    "\"qat_steps\": %lld, \"qat_batch\": %lld, \"threads\": %d, "
                    "\"latency_reps\": %d, \"latency_clock\": \"%s\", \"models\": {",
                    (long long)r->test_images, (long long)r->calib_images,
                    (long long)r->qat_images, (long long)o->qat_steps, (long long)o->qat_batch,
                    o->threads, o->reps, demo_latency_clock_name());
  int first_model = 1;
  for (int k = 0; k < DEMO_MODEL_COUNT; k++) {
    if (!(o->models_mask & (1 << k))) continue;
    const demo_model_results *mr = &r->models[k];
    cq_strbuf_appendf(&sb, "%s\"%s\": {\"summary\": ", first_model ? "" : ", ",
                      demo_model_name((demo_model_kind)k));
    json_string(&sb, demo_model_summary((demo_model_kind)k));
    cq_strbuf_append(&sb, ", \"rows\": [");
    for (int v = 0; v < DEMO_VARIANT_COUNT; v++) {
      if (v) cq_strbuf_append(&sb, ", ");
      json_row(&sb, (demo_model_kind)k, (demo_variant)v, &mr->rows[v], &mr->rows[DEMO_FLOAT]);
    }
    cq_strbuf_append(&sb, "]}");
    first_model = 0;
  }
  cq_strbuf_append(&sb, "}}");
  int rc = json_emit(&sb);
  cq_strbuf_release(&sb);
  return rc;
}

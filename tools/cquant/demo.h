/* `cquant demo`, internal: the variants of each model, their measured results, and the output.
 *
 *   demo_variants.c  builds each variant (float, dynamic, static with four calibrations, QAT)
 *   demo_timing.c    batch-1 / batch-16 latency (median of repetitions) and model size
 *   demo_table.c     the table (stdout), the JSON (--json) and the progress line (stderr, tty only)
 *   cmd_demo.c       options, the seed's observer example, and the run itself */
#ifndef CQ_TOOL_DEMO_H
#define CQ_TOOL_DEMO_H

#include "cli.h"
#include "demo_models.h"

/* The rows of a model's table, in order. */
typedef enum demo_variant {
  DEMO_FLOAT = 0,
  DEMO_DYNAMIC,
  DEMO_STATIC_MINMAX_TENSOR,
  DEMO_STATIC_MINMAX_CHANNEL,
  DEMO_STATIC_HIST_TENSOR,
  DEMO_STATIC_HIST_CHANNEL,
  DEMO_QAT,
  DEMO_VARIANT_COUNT
} demo_variant;

/* What the run uses; the defaults are the documented demo (cmd_demo.c). */
typedef struct demo_options {
  const char *data_dir, *models_dir;
  int json, threads;
  int64_t test_images;  /* 0: every image of the t10k split in data_dir */
  int64_t calib_images; /* calibration: the first images of the training split */
  int64_t qat_images;   /* QAT fine-tune: the first images of the training split */
  int64_t qat_steps, qat_batch;
  int reps; /* latency repetitions per measurement (the median is reported) */
  int models_mask; /* bit k: run model kind k */
  const char *report_path; /* --report: the HTML quantization report of the CNN, or NULL */
} demo_options;

/* One measured row. */
typedef struct demo_result {
  int done;
  double accuracy;         /* top-1 on the test images, 0..1 */
  int64_t size_bytes;      /* state dict: tensor data plus quantization parameters */
  double latency_ms[2];    /* median, batch 1 and batch 16 */
} demo_result;

typedef struct demo_model_results {
  demo_result rows[DEMO_VARIANT_COUNT];
} demo_model_results;

/* The variant's names: "float", "dynamic", "static_minmax_per_tensor", ... (JSON keys) and the
 * table's label. */
const char *demo_variant_key(demo_variant v);
const char *demo_variant_label(demo_variant v);
/* What the variant runs in int8 for this model ("conv, linear", "linear head; LSTM float", ...). */
const char *demo_variant_int8_part(demo_model_kind kind, demo_variant v);

/* ---- progress (demo_table.c) --------------------------------------------------------------------- */

/* A one-line progress bar on stderr, drawn only when stderr is a terminal. */
typedef struct demo_progress {
  int enabled;
  char stage[160];
} demo_progress;

void demo_progress_init(demo_progress *p);
/* Names the current stage ("cnn: static histogram per-channel: calibrating"). */
void demo_progress_stage(demo_progress *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* demo_progress_fn: redraws the bar for done / total. */
void demo_progress_update(void *progress, int64_t done, int64_t total);
/* Erases the line. */
void demo_progress_clear(demo_progress *p);

/* ---- variants (demo_variants.c) ----------------------------------------------------------------- */

/* Everything a variant needs: the float weights file, calibration and QAT data, the run's options. */
typedef struct demo_inputs {
  const demo_options *options;
  const char *weights_path;
  const demo_split *calib, *qat_train;
  demo_progress *progress;
} demo_inputs;

/* Builds the model of `kind` with the float weights and turns it into variant v (calibrating or
 * fine-tuning as the variant needs). The result is in eval mode, owned by the caller. */
cq_status demo_make_variant(demo_model_kind kind, demo_variant v, const demo_inputs *in,
                            cq_ctx *ctx, cq_module **out);

/* ---- measurements (demo_timing.c) --------------------------------------------------------------- */

/* Median latency in milliseconds of one forward on the first `batch` images of s (warm-up runs
 * first, then `reps` timed runs), on the clock demo_latency_clock_name() names: "thread_cpu" (the
 * calling thread's CPU time) with one thread, "wall" with more. */
const char *demo_latency_clock_name(void);
cq_status demo_latency_ms(demo_model_kind kind, cq_module *model, cq_ctx *ctx, const demo_split *s,
                          int64_t batch, int reps, double *ms);
/* Bytes of the model's state: every parameter and buffer's data plus, for quantized tensors, a
 * float32 scale and an int32 zero point per channel (or one pair per tensor). */
int64_t demo_model_bytes(cq_module *model);

/* ---- output (demo_table.c) ---------------------------------------------------------------------- */

/* Everything the run measured, for printing. */
typedef struct demo_report {
  const demo_options *options;
  int64_t test_images, calib_images, qat_images;
  int observers_match; /* the seed's observer example agreed with the seed */
  demo_model_results models[DEMO_MODEL_COUNT];
} demo_report;

/* The table on stdout. */
int demo_print_table(const demo_report *r);
/* The same numbers as one JSON object on stdout. */
int demo_print_json(const demo_report *r, const cq_strbuf *observer_json);

#endif

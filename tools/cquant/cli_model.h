/* Shared pieces of the ONNX commands (quantize, run, eval, compare, info): loading a model and its
 * .npy inputs with one-line errors, running a model over rows of an input in batches, and the
 * progress bar. Functions returning int return a CLI exit code (CLI_OK, or CLI_FAILED after
 * printing one line on stderr). */
#ifndef CQ_TOOL_CLI_MODEL_H
#define CQ_TOOL_CLI_MODEL_H

#include <stdint.h>

#include "cli.h"

/* cq_onnx_load with the error printed. */
int cli_load_model(const char *path, cq_module **out);

/* The shape of the first graph input as the ONNX file declares it: -1 for a dynamic dimension.
 * CLI_FAILED (printed) when the file cannot be read. */
int cli_onnx_input_shape(const char *path, int *ndim, int64_t *shape);

/* A .npy file as a new float32 tensor of at least one dimension (the rows); float64 and integer
 * files are converted. `what` names the role in messages ("input", "calibration data"). */
int cli_load_rows(const char *path, const char *what, cq_tensor **out);

/* Integer class labels as a new int64 tensor [n]: any integer dtype, shape [n] or [n, 1]; n must
 * equal `rows`. */
int cli_load_labels(const char *path, int64_t rows, cq_tensor **out);

/* A tensor (not owning its data) viewing rows [start, start + count) of x. */
int cli_rows_view(const cq_tensor *x, int64_t start, int64_t count, cq_tensor **out);

/* Number of outputs the model gives (graph outputs; 1 for other modules). */
int cli_model_num_outputs(const cq_module *m);

/* Nonzero for the modules a quantization pass makes (QuantizedConv2d, QFunctional,
 * DynamicQuantizedLinear, ...), not counting Quantize / DeQuantize. */
int cli_is_quantized_module(const cq_module *m);
/* Nonzero for Quantize / DeQuantize / QuantStub / DeQuantStub. */
int cli_is_stub_module(const cq_module *m);

/* File size in bytes, -1 when it cannot be read. */
int64_t cli_file_size(const char *path);

/* A progress bar on stderr, drawn only when stderr is a terminal. */
typedef struct cli_progress {
  int active;
  const char *label;
  int64_t total;
  int last_permille;
} cli_progress;

void cli_progress_begin(cli_progress *p, const char *label, int64_t total);
void cli_progress_update(cli_progress *p, int64_t done);
/* Clears the bar's line. */
void cli_progress_end(cli_progress *p);

/* Parses a whole decimal integer in [lo, hi]; 0 on success. */
int cli_parse_int(const char *s, long lo, long hi, long *out);
/* Parses a finite double > 0; 0 on success. */
int cli_parse_positive(const char *s, double *out);

#endif

/* The quantization report: one self-contained HTML page (inline CSS and SVG, no scripts, nothing
 * fetched), viewable in a browser with no network.
 *
 * For every layer of the quantized model that outputs a quantized tensor (paired with the float
 * model as layer_compare.h describes) the page shows: the histogram of the float model's activation
 * at that layer over all calibration batches (counts on a log scale), the clipping range the
 * observer chose, [(quant_min - zero_point) * scale, (quant_max - zero_point) * scale], as two
 * vertical lines with the clipped values shaded (the seed's picture of calibration: values outside
 * [alpha, beta] are clamped), the share of values clipped, scale and zero point, and the layer's
 * SQNR (its own and the cumulative one) on the first calibration batch. A summary table comes
 * first. quant_min / quant_max are those of the activation observer of `backend`'s default
 * qconfig (x86 / fbgemm: [0, 127], reduce_range; qnnpack / onednn: [0, 255]); layers whose dtype
 * differs use the dtype's full range. */
#ifndef CQ_TOOL_REPORT_HTML_H
#define CQ_TOOL_REPORT_HTML_H

#include <stdio.h>

#include "cquant/cquant.h"

typedef struct cli_report_options {
  cq_backend backend;
  const char *title;        /* NULL: "cquant quantization report" */
  const char *float_label;  /* what the float model is called on the page (NULL: "float model") */
  const char *quant_label;  /* (NULL: "quantized model") */
} cli_report_options;

/* Writes the page to f. float_model and quant_model are graphs taking one input; batches are float32
 * calibration batches (nbatches >= 1) the float model accepts. The models are only run, not
 * changed. Returns the status of a failed forward pass or write (CQ_EIO), with the message set. */
cq_status cli_report_write(FILE *f, cq_module *float_model, cq_module *quant_model,
                           cq_tensor *const *batches, int nbatches,
                           const cli_report_options *options);

/* The same into `path`, written atomically: the file appears whole or not at all. */
cq_status cli_report_html(cq_module *float_model, cq_module *quant_model,
                          cq_tensor *const *batches, int nbatches,
                          const cli_report_options *options, const char *path);

#endif
